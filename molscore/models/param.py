"""Parameterisations: how a network's output becomes a score (EDM-style preconditioning).

The architecture is a plain ``nn.Module`` ``net(x, t, cond) -> tensor like x`` (or a
per-sample scalar for energies); :class:`ScoreModel` turns it into a score
``s(x, t) ~ grad_x log p_t(x)`` using only the SDE's marginal and the space:

* ``score``:    ``s = net(x, t) / std``  (output scaled by the noise level, as NCSN++)
* ``eps``:      ``s = -net(x, t) / std`` (the network predicts the added noise ``z``)
* ``denoiser``: ``s = (m D - x) / std^2`` with ``D = c_skip x + c_out net(c_in x, t)`` (EDM)
* ``energy``:   ``s = -grad_x E(x, t)``, ``E = net(x, t, cond)`` of shape ``(B,)``; conservative
  by construction.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..sde import SDE
from ..spaces import Space

__all__ = ["ScoreModel", "PARAMETERISATIONS"]

PARAMETERISATIONS = ("score", "eps", "denoiser", "energy")


class ScoreModel(nn.Module):
    """Wraps ``net(x, t, cond)`` into ``forward(x, t, space, cond) -> score`` (shaped like ``x``).

    Args:
        net: the architecture. ``t`` it receives is ``(B,)``, one time per sample.
        sde: supplies ``m(t)`` and ``std(t)`` for the preconditioning.
        parameterisation: one of :data:`PARAMETERISATIONS`.
        sigma_data: data std for the ``denoiser`` preconditioning.
    """

    def __init__(self, net: nn.Module, sde: SDE, parameterisation: str = "eps",
                 sigma_data: float = 1.0):
        super().__init__()
        if parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"unknown parameterisation {parameterisation!r}; "
                             f"choose from {', '.join(PARAMETERISATIONS)}")
        self.net, self.sde, self.kind, self.sigma_data = net, sde, parameterisation, sigma_data

    def energy(self, x: Tensor, t: Tensor, space: Space, cond: Any = None) -> Tensor:
        """Per-sample energy ``(B,)`` (``energy`` parameterisation only)."""
        if self.kind != "energy":
            raise ValueError("energy() needs the 'energy' parameterisation")
        return self.net(x, t, cond)

    def forward(self, x: Tensor, t: Tensor, space: Space, cond: Any = None) -> Tensor:
        m, std = self.sde.marginal(t)
        m, std = space.expand(m).to(x), space.expand(std).to(x)
        if self.kind == "energy":
            with torch.enable_grad():
                xg = x if x.requires_grad else x.detach().requires_grad_(True)
                e = self.net(xg, t, cond).sum()
                (grad,) = torch.autograd.grad(e, xg, create_graph=self.training or x.requires_grad)
            return space.project(-grad)
        if self.kind == "denoiser":
            # Denoise y = x / m, whose noise level is sigma = std / m.
            sigma = std / m
            c_in = 1 / (self.sigma_data ** 2 + sigma ** 2).sqrt()
            c_skip = self.sigma_data ** 2 / (self.sigma_data ** 2 + sigma ** 2)
            c_out = sigma * self.sigma_data * c_in
            y = x / m
            d = c_skip * y + c_out * self.net(c_in * y, t, cond)
            return space.project((m * d - x) / std ** 2)
        out = self.net(x, t, cond)
        return space.project(out / std if self.kind == "score" else -out / std)
