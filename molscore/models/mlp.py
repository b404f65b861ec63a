"""Small MLP networks for low-dimensional (toy) data: a vector field and an energy.

Both follow the plain architecture convention of :mod:`molscore.models.param`:
``net(x (B, D), t (B,), cond=None)``. Wrap them in
:class:`~molscore.models.param.ScoreModel`:

* :class:`MLPScoreNet` returns ``(B, D)``, an unconstrained vector field (any
  parameterisation but ``energy``; its Jacobian is in general not symmetric);
* :class:`MLPEnergyNet` returns a per-sample energy ``(B,)``; with the ``energy``
  parameterisation the score is ``-grad_x E``, a conservative field whose Jacobian is
  the (symmetric) negative Hessian.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..sde import SDE

__all__ = ["TimeEmbedding", "MLPScoreNet", "MLPEnergyNet", "TIME_EMBEDDINGS"]

TIME_EMBEDDINGS = ("fourier", "sinusoidal")


class TimeEmbedding(nn.Module):
    """Embed times ``t`` ``(B,)`` in ``(B, embed_dim)``.

    * ``fourier``: Gaussian random Fourier features ``[sin 2 pi W t, cos 2 pi W t]`` with
      fixed ``W ~ N(0, scale^2)`` (Tancik et al. 2020; NCSN++);
    * ``sinusoidal``: transformer features of ``1000 t`` at geometric frequencies (DDPM).

    Args:
        embed_dim: output width (even).
        kind: one of :data:`TIME_EMBEDDINGS`.
        scale: std of the Fourier frequencies.
    """

    def __init__(self, embed_dim: int = 64, kind: str = "fourier", scale: float = 16.0):
        super().__init__()
        if kind not in TIME_EMBEDDINGS:
            raise ValueError(f"unknown time embedding {kind!r}; choose from "
                             f"{', '.join(TIME_EMBEDDINGS)}")
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even, got {embed_dim}")
        self.kind = kind
        half = embed_dim // 2
        if kind == "fourier":
            freqs = torch.randn(half) * scale
        else:
            freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / max(half - 1, 1))
        self.register_buffer("freqs", freqs)

    def forward(self, t: Tensor) -> Tensor:
        arg = t.reshape(-1, 1) * self.freqs
        arg = 2 * math.pi * arg if self.kind == "fourier" else 1000.0 * arg
        return torch.cat([arg.sin(), arg.cos()], dim=-1)


class _TimeMLP(nn.Module):
    """``x (B, d_in), t (B,) -> (B, d_out)``: SiLU MLP whose hidden layers all receive the
    time: ``h_{i+1} = SiLU(L_i h_i + T_i e)`` with ``e = SiLU(W embed(t))``.

    Keeping ``x`` and ``t`` in separate input layers (rather than concatenating ``x`` with a
    wide embedding) keeps a low-dimensional ``x`` from being drowned by the time features.
    """

    def __init__(self, d_in: int, d_out: int, hidden: int, depth: int, time_embed: str,
                 embed_dim: int):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.embed = TimeEmbedding(embed_dim, time_embed)
        self.t_in = nn.Sequential(nn.Linear(embed_dim, hidden), nn.SiLU())
        self.layers = nn.ModuleList(nn.Linear(d_in if i == 0 else hidden, hidden)
                                    for i in range(depth))
        self.t_layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, d_out)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype).expand(x.shape[0])
        e = self.t_in(self.embed(t))
        h = x
        for layer, t_layer in zip(self.layers, self.t_layers):
            h = self.act(layer(h) + t_layer(e))
        return self.out(h)


class MLPScoreNet(nn.Module):
    """``x (B, D), t (B,) -> (B, D)``: a SiLU MLP with the time embedding added to every layer.

    Args:
        dim: data dimension ``D``.
        hidden: width of the hidden layers.
        depth: number of hidden layers.
        time_embed: ``"fourier"`` or ``"sinusoidal"``.
        embed_dim: width of the time embedding.
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, time_embed: str = "fourier",
                 embed_dim: int = 64):
        super().__init__()
        self.dim = dim
        self.body = _TimeMLP(dim, dim, hidden, depth, time_embed, embed_dim)

    def forward(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        return self.body(x, t)


class MLPEnergyNet(nn.Module):
    """``x (B, D), t (B,) -> (B,)``: a scalar energy ``E(x, t)`` from an MLP.

    With an ``sde`` the energy is preconditioned so that its gradient has the scale of
    a score at every noise level: with ``c(t) = (m^2 sigma_data^2 + s^2)^(-1/2)``,
    ``E(x, t) = h(c x, t) / (c s)``, hence ``-grad_x E = -grad h / s``, the same scale as
    the ``score`` parameterisation. Without an ``sde``, ``E = h(x, t)``.

    Args:
        dim: data dimension ``D``.
        hidden, depth, time_embed, embed_dim: as :class:`MLPScoreNet`.
        sde: optional SDE for the preconditioning.
        sigma_data: data std used by the preconditioning.
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, time_embed: str = "fourier",
                 embed_dim: int = 64, sde: SDE | None = None, sigma_data: float = 1.0):
        super().__init__()
        self.dim, self.sde, self.sigma_data = dim, sde, sigma_data
        self.body = _TimeMLP(dim, 1, hidden, depth, time_embed, embed_dim)

    def forward(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype).expand(x.shape[0])
        if self.sde is None:
            return self.body(x, t).squeeze(-1)
        m, s = self.sde.marginal(t)
        c = (m ** 2 * self.sigma_data ** 2 + s ** 2).rsqrt()
        return self.body(c.unsqueeze(-1) * x, t).squeeze(-1) / (c * s)
