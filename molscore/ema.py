"""Exponential moving average of a model's weights (the weights used for sampling)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    """Shadow copy of a model's ``state_dict``: floating-point entries are averaged,
    the rest (integer buffers) copied.

    The effective decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n``
    updates, so early weights are not stuck near the initialisation.

    Args:
        model: the module whose weights are tracked (unwrapped, not DDP).
        decay: target decay in ``[0, 1)``; ``0`` keeps the shadow equal to the model.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {k: v.detach().clone()
                                          for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """Decay used by the next :meth:`update`."""
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``shadow <- d * shadow + (1 - d) * weights`` for every floating-point entry."""
        d = self.current_decay()
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                s.copy_(v)
        self.num_updates += 1

    def state_dict(self) -> dict:
        """Plain dict (tensors, numbers) safe for ``torch.load(weights_only=True)``."""
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output; ``ValueError`` (one line, nothing changed) when
        its shadow has other keys or shapes than the model's (``copy_`` would broadcast)."""
        theirs = state["shadow"]
        missing, unexpected = sorted(set(self.shadow) - set(theirs)), sorted(set(theirs) - set(self.shadow))
        if missing or unexpected:
            raise ValueError(f"EMA state does not match the model: missing keys {missing[:3]}, "
                             f"unexpected keys {unexpected[:3]}")
        for k, v in theirs.items():
            if v.shape != self.shadow[k].shape:
                raise ValueError(f"EMA state does not match the model: {k!r} has shape "
                                 f"{tuple(v.shape)}, the model's {tuple(self.shadow[k].shape)}")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for k, v in theirs.items():
            self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model``."""
        model.load_state_dict(self.shadow)

    def to(self, device: torch.device | str) -> "EMA":
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self
