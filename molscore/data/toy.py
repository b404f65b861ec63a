"""Toy densities for testing the engine: Gaussian mixtures with exact (noised) scores and
the usual sample-only 2-D shapes.

A :class:`GaussianMixture` of isotropic components is closed under the forward kernels of
every SDE in :mod:`molscore.sde`: if ``x_t = m x_0 + s z`` then
``p_t = sum_k w_k N(m mu_k, (m^2 sigma_k^2 + s^2) I)``, so its noised log-density and score
are exact (use float64 inputs for exactness to round-off). The 2-D shapes (checkerboard,
swissroll, moons, rings, spirals) only support :meth:`sample`.

Named densities (:data:`DENSITIES`, built by :func:`get_density`):

* ``gmm8``: 8 equal-weight Gaussians, std 0.5, centres on the radius-4 circle at angles
  ``2 pi k / 8``.
* ``gmm2``: std 1, centres ``(-5, 0)`` and ``(5, 0)`` with weights 0.2 and 0.8.
* ``gmmnd``: a fixed seeded mixture in ``dim`` dimensions (keywords ``dim``, ``n_components``,
  ``seed``).
* ``checkerboard``, ``swissroll``, ``moons``, ``rings``, ``spirals``: sample-only 2-D shapes,
  scaled to a std of about 1 to 3.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
from torch import Tensor

from ..sde import SDE

__all__ = ["GaussianMixture", "SampledDensity", "DENSITIES", "get_density", "exact_score_fn"]


class GaussianMixture:
    """Mixture of isotropic Gaussians ``sum_k w_k N(mu_k, sigma_k^2 I)``.

    Args:
        means: ``(K, D)`` component centres.
        stds: ``(K,)`` isotropic component stds.
        weights: ``(K,)`` non-negative weights (normalised here).
    """

    def __init__(self, means: Tensor, stds: Tensor, weights: Tensor):
        means = torch.as_tensor(means, dtype=torch.float64)
        stds = torch.as_tensor(stds, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if means.ndim != 2 or stds.shape != (means.shape[0],) or weights.shape != stds.shape:
            raise ValueError("need means (K, D), stds (K,) and weights (K,)")
        if (stds <= 0).any() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("stds must be positive and weights non-negative, not all zero")
        self.means, self.stds, self.weights = means, stds, weights / weights.sum()

    @property
    def dim(self) -> int:
        """Dimension ``D`` of the data."""
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
        """``n`` samples ``(n, D)`` of the given dtype (drawn in float64)."""
        k = self.sample_components(n, generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k, None] * z).to(dtype)

    def sample_components(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Component indices ``(n,)`` drawn with the mixture weights."""
        return torch.multinomial(self.weights, n, replacement=True, generator=generator)

    def _component_log_probs(self, x: Tensor, mean_coef: Tensor | None,
                             std: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component ``log w_k + log N(x; m mu_k, v_k I)`` ``(B, K)``, the noised means
        ``(B, K, D)`` and variances ``(B, K)``."""
        mu, sig, w = (a.to(x.device, x.dtype) for a in (self.means, self.stds, self.weights))
        B = x.shape[0]
        m = torch.ones(B, device=x.device, dtype=x.dtype) if mean_coef is None else \
            torch.as_tensor(mean_coef).to(x).expand(B)
        s = torch.zeros(B, device=x.device, dtype=x.dtype) if std is None else \
            torch.as_tensor(std).to(x).expand(B)
        means = m[:, None, None] * mu[None]                       # (B, K, D)
        var = m[:, None] ** 2 * sig[None] ** 2 + s[:, None] ** 2   # (B, K)
        d2 = ((x[:, None, :] - means) ** 2).sum(-1)                 # (B, K)
        logn = -0.5 * d2 / var - 0.5 * self.dim * torch.log(2 * math.pi * var)
        return torch.log(w)[None] + logn, means, var

    def log_prob(self, x: Tensor, mean_coef: Tensor | None = None,
                 std: Tensor | None = None) -> Tensor:
        """Log-density ``(B,)`` of ``x`` ``(B, D)`` under ``p_t`` for ``x_t = m x_0 + s z``.

        Args:
            mean_coef: ``m``, ``(B,)`` (or scalar); ``None`` for the clean density.
            std: ``s``, ``(B,)`` (or scalar); ``None`` for the clean density.
        """
        lp, _, _ = self._component_log_probs(x, mean_coef, std)
        return torch.logsumexp(lp, dim=1)

    def score(self, x: Tensor, mean_coef: Tensor | None = None,
              std: Tensor | None = None) -> Tensor:
        """Score ``grad_x log p_t(x)`` ``(B, D)`` of the noised density (see :meth:`log_prob`)."""
        lp, means, var = self._component_log_probs(x, mean_coef, std)
        resp = torch.softmax(lp, dim=1)                             # (B, K)
        return -(resp[:, :, None] * (x[:, None, :] - means) / var[:, :, None]).sum(1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities ``(B, K)`` under the clean density."""
        return torch.softmax(self._component_log_probs(x, None, None)[0], dim=1)


class SampledDensity:
    """A 2-D density known only through a sampler ``fn(n, generator) -> (n, 2)``."""

    dim = 2

    def __init__(self, name: str, fn: Callable[[int, torch.Generator | None], Tensor]):
        self.name, self._fn = name, fn

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
        """``n`` samples ``(n, 2)`` of the given dtype (drawn in float64)."""
        return self._fn(n, generator).to(dtype)

    def __repr__(self) -> str:
        return f"SampledDensity({self.name!r})"


def _rand(n: int, g: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64)


def _randn(*shape: int, g: torch.Generator | None) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _checkerboard(n: int, g: torch.Generator | None) -> Tensor:
    """Uniform on the 8 black squares of a 4x4 board on ``[-4, 4]^2``."""
    x1 = _rand(n, g) * 4 - 2
    x2 = _rand(n, g) - torch.randint(0, 2, (n,), generator=g).double() * 2
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], 1) * 2


def _swissroll(n: int, g: torch.Generator | None) -> Tensor:
    """2-D swiss roll (sklearn's with noise 1, divided by 5)."""
    t = 1.5 * math.pi * (1 + 2 * _rand(n, g))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) + _randn(n, 2, g=g)
    return x / 5


def _moons(n: int, g: torch.Generator | None) -> Tensor:
    """Two interleaved half circles (sklearn's with noise 0.1), scaled by 2 and centred."""
    theta = math.pi * _rand(n, g)
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(upper, torch.cos(theta), 1 - torch.cos(theta))
    y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
    pts = torch.stack([x, y], 1) + 0.1 * _randn(n, 2, g=g)
    return pts * 2 + torch.tensor([-1.0, -0.2], dtype=torch.float64)


def _rings(n: int, g: torch.Generator | None) -> Tensor:
    """Four concentric circles of radii 0.75, 1.5, 2.25, 3 with noise 0.08."""
    r = 0.75 * (1 + torch.randint(0, 4, (n,), generator=g).double())
    theta = 2 * math.pi * _rand(n, g)
    pts = r[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    return pts + 0.08 * _randn(n, 2, g=g)


def _spirals(n: int, g: torch.Generator | None) -> Tensor:
    """Two interleaved spirals (FFJORD's ``2spirals``)."""
    r = torch.sqrt(_rand(n, g)) * 540 * 2 * math.pi / 360
    d = torch.stack([-torch.cos(r) * r, torch.sin(r) * r], 1) + 0.5 * torch.rand(
        n, 2, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0).double()
    return sign[:, None] * d / 3 + 0.1 * _randn(n, 2, g=g)


def _gmm8() -> GaussianMixture:
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    means = 4 * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    return GaussianMixture(means, torch.full((8,), 0.5), torch.full((8,), 1 / 8))


def _gmm2() -> GaussianMixture:
    return GaussianMixture(torch.tensor([[-5.0, 0.0], [5.0, 0.0]]), torch.ones(2),
                           torch.tensor([0.2, 0.8]))


def _gmmnd(dim: int = 16, n_components: int = 4, seed: int = 0) -> GaussianMixture:
    """Fixed mixture in ``dim`` dimensions: centres ``N(0, 2^2 I)``, stds in ``[0.5, 1]``,
    weights in ``[0.5, 1.5]`` (normalised), all drawn from ``seed``."""
    if dim < 1 or n_components < 1:
        raise ValueError(f"need dim >= 1 and n_components >= 1, got {dim}, {n_components}")
    g = torch.Generator().manual_seed(seed)
    means = 2 * torch.randn(n_components, dim, generator=g, dtype=torch.float64)
    stds = 0.5 + 0.5 * torch.rand(n_components, generator=g, dtype=torch.float64)
    weights = 0.5 + torch.rand(n_components, generator=g, dtype=torch.float64)
    return GaussianMixture(means, stds, weights)


_SHAPES = {"checkerboard": _checkerboard, "swissroll": _swissroll, "moons": _moons,
           "rings": _rings, "spirals": _spirals}
_MIXTURES = {"gmm8": _gmm8, "gmm2": _gmm2, "gmmnd": _gmmnd}

DENSITIES: tuple[str, ...] = (*_MIXTURES, *_SHAPES)


def get_density(name: str, **kw) -> GaussianMixture | SampledDensity:
    """Build a named toy density (see :data:`DENSITIES`); ``kw`` (integers) go to ``gmmnd``.

    Raises:
        ValueError: an unknown name, or an option the density does not take or not an integer.
    """
    if name in _MIXTURES:
        allowed = inspect.signature(_MIXTURES[name]).parameters
        unknown = sorted(set(kw) - set(allowed))
        if unknown:
            raise ValueError(f"density {name!r} takes no option {unknown[0]!r}; valid: "
                             f"{', '.join(allowed) or 'none'}")
        for key, value in kw.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"density option {key!r} must be an integer, got {value!r}")
        return _MIXTURES[name](**kw)
    if name in _SHAPES:
        if kw:
            raise ValueError(f"density {name!r} takes no options, got {sorted(kw)}")
        return SampledDensity(name, _SHAPES[name])
    raise ValueError(f"unknown density {name!r}; choose from {', '.join(DENSITIES)}")


def exact_score_fn(density: GaussianMixture, sde: SDE) -> Callable[[Tensor, Tensor], Tensor]:
    """The exact score of the noised mixture under ``sde``: ``(x (B, D), t (B,)) -> (B, D)``."""

    def score_fn(x: Tensor, t: Tensor) -> Tensor:
        m, s = sde.marginal(torch.as_tensor(t, device=x.device, dtype=x.dtype))
        return density.score(x, m, s)

    return score_fn
