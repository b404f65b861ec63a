"""Embeddings shared by the graph score networks: diffusion time, distances, smooth cutoffs."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SinusoidalTimeEmbedding", "GaussianSmearing", "CosineCutoff", "mlp"]


class SinusoidalTimeEmbedding(nn.Module):
    """Sines and cosines of ``t`` at geometrically spaced frequencies.

    ``t`` in ``[0, 1]`` (diffusion time) -> ``(B, dim)``; frequencies run from 1 to
    ``max_freq`` (radians per unit time), so both the coarse and the fine end of the
    noise schedule are resolved.

    Args:
        dim: embedding size (even).
        max_freq: highest angular frequency.
    """

    def __init__(self, dim: int = 32, max_freq: float = 1000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim must be even, got {dim}")
        freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        """``t`` ``(B,)`` -> ``(B, dim)``."""
        arg = t.reshape(-1, 1).to(self.freqs.dtype) * self.freqs
        return torch.cat([arg.sin(), arg.cos()], dim=-1)


class GaussianSmearing(nn.Module):
    """Radial basis: Gaussians of width equal to their spacing, centred on ``[start, stop]``.

    Args:
        start: first centre.
        stop: last centre.
        num: number of Gaussians.
    """

    def __init__(self, start: float = 0.0, stop: float = 5.0, num: int = 32):
        super().__init__()
        centres = torch.linspace(start, stop, num)
        self.register_buffer("centres", centres, persistent=False)
        self.coeff = -0.5 / float(centres[1] - centres[0]) ** 2 if num > 1 else -0.5
        self.num = num

    def forward(self, d: Tensor) -> Tensor:
        """Distances ``(E,)`` -> ``(E, num)``."""
        return torch.exp(self.coeff * (d.unsqueeze(-1) - self.centres.to(d.dtype)) ** 2)


class CosineCutoff(nn.Module):
    """Smooth envelope ``0.5 (cos(pi d / c) + 1)`` for ``d < c``, 0 beyond.

    Multiplying messages of radius-graph edges by it makes the network continuous in
    the coordinates although edges appear and vanish at the cutoff.
    """

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, d: Tensor) -> Tensor:
        """Distances ``(E,)`` -> weights ``(E,)`` in ``[0, 1]``."""
        w = 0.5 * (torch.cos(d * (math.pi / self.cutoff)) + 1.0)
        return w * (d < self.cutoff).to(d.dtype)


def mlp(dims: list[int], act: type[nn.Module] = nn.SiLU, last_act: bool = False) -> nn.Sequential:
    """Linear layers of sizes ``dims[0] -> dims[1] -> ...`` with ``act`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2 or last_act:
            layers.append(act())
    return nn.Sequential(*layers)
