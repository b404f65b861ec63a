"""SE(3)-equivariant, chirality-aware graph score networks for point sets (molecules).

Two backbones with the same contract ``net(x (N, 3), t (B,), cond) -> (N, 3)``:

* ``"painn"`` -- :class:`molscore.models.painn.PaiNNScoreNet`, plain-torch scalar/vector
  message passing with cross-product terms (fast default);
* ``"e3nn"`` -- :class:`molscore.models.tensor_product.TensorProductScoreNet`, e3nn
  tensor-product convolutions with ``0e/1o/1e/0o`` irreps (more expressive).

Both rebuild a radius graph from the current coordinates at each call and merge it with
the topological edges of ``cond`` (see :mod:`molscore.models.edges`). They rotate with the
input, ignore translations, are permutation equivariant and are *not* mirror
equivariant, so they can tell enantiomers apart.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

from torch import nn

from .painn import PaiNNScoreNet
from .tensor_product import TensorProductScoreNet

__all__ = ["BACKBONES", "build_backbone", "count_parameters", "PaiNNScoreNet", "TensorProductScoreNet"]

BACKBONES: dict[str, type[nn.Module]] = {"painn": PaiNNScoreNet, "e3nn": TensorProductScoreNet}


def build_backbone(name: str, atom_dim: int, edge_dim: int, **hparams) -> nn.Module:
    """Build backbone ``name`` (``"painn"`` or ``"e3nn"``) for the given feature sizes.

    ``hparams`` are the backbone's keyword arguments (channel counts, layers, cutoff, ...);
    ``build_backbone(**net.config())`` rebuilds a network.

    Raises:
        ValueError: unknown ``name`` (the message lists the choices), unknown hyper-parameter,
            or a size that is not a positive integer or a length that is not a positive number
            (``cutoff`` may be 0, no radius edges, or ``None``, all pairs).
    """
    try:
        cls = BACKBONES[name]
    except (KeyError, TypeError):   # TypeError: a list or mapping (unhashable)
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}") from None
    _check_hparams(name, cls, hparams)
    try:
        return cls(atom_dim, edge_dim, **hparams)
    except TypeError as err:
        raise ValueError(f"bad hyper-parameters for backbone {name!r}: {err}") from None


def _check_hparams(name: str, cls: type[nn.Module], hparams: dict[str, Any]) -> None:
    """``ValueError`` for a hyper-parameter whose default is an integer (a size, a count) and
    whose value is not an integer >= 1, or whose default is a float (a length) and whose value
    is not a positive finite number (``cutoff``: >= 0, and ``None`` where the annotation allows
    it). Hidden size 0 trained a network of no channels, -1 was a traceback, ``rbf_max: 0`` a
    ZeroDivisionError."""
    params = inspect.signature(cls).parameters
    for key, value in hparams.items():
        param = params.get(key)
        if param is None or isinstance(param.default, bool):
            continue                    # an unknown key: the constructor's TypeError names it
        if value is None and "None" in str(param.annotation):
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(param.default, int) and not (number and isinstance(value, int) and value >= 1):
            raise ValueError(f"backbone {name!r}: {key} must be an integer >= 1, got {value!r}")
        if isinstance(param.default, float):
            zero = key == "cutoff"      # 0: no radius edges (models.edges.build_edges)
            if not (number and math.isfinite(value) and (value >= 0 if zero else value > 0)):
                kind = "a number >= 0" if zero else "a positive number"
                raise ValueError(f"backbone {name!r}: {key} must be {kind}, got {value!r}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
