"""Forward SDEs with affine drift: VE, VP and sub-VP (Song et al., 2021).

Every SDE here has the form ``dx = f(t) x dt + g(t) dw`` on ``t in [0, T]``, so its
marginal given ``x(0)`` is Gaussian, ``x(t) = m(t) x(0) + s(t) z``. All
per-time quantities are ``(B,)`` tensors (one time per sample); the space
broadcasts them to rows. Nothing here knows the shape of the data.

Conventions (exact, no approximations):

* VE: ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, ``g(t)^2 = d sigma(t)^2 / dt``,
  ``m = 1``, ``s(t)^2 = sigma(t)^2 - sigma_min^2``; prior ``N(0, sigma_max^2 - sigma_min^2)``.
* VP: ``beta(t) = beta_min + t (beta_max - beta_min)``, ``f = -beta / 2``, ``g^2 = beta``,
  ``m = exp(-B(t) / 2)`` with ``B(t) = int_0^t beta``, ``s^2 = 1 - m^2``; prior ``N(0, 1)``.
* sub-VP: same drift as VP, ``g^2 = beta (1 - exp(-2 B(t)))``, ``s = 1 - m^2``; prior ``N(0, 1)``.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import Tensor

from .spaces import Generators, Space

__all__ = ["SDE", "VESDE", "VPSDE", "SubVPSDE", "make_sde", "SDE_NAMES"]

ScoreFn = Callable[[Tensor, Tensor], Tensor]


class SDE(ABC):
    """An SDE ``dx = f(t) x dt + g(t) dw`` with a Gaussian transition kernel.

    Attributes:
        T: final time.
        eps: smallest time used by training and sampling (avoids the singular ``t = 0``).
    """

    name: str
    T: float = 1.0

    def __init__(self, eps: float = 1e-5):
        if not 0 < eps < self.T:
            raise ValueError(f"eps must be in (0, {self.T}), got {eps}")
        self.eps = eps

    # -- coefficients, all (B,) -> (B,) ------------------------------------------
    @abstractmethod
    def drift_coef(self, t: Tensor) -> Tensor:
        """``f(t)`` of the affine drift ``f(t) x``."""

    @abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t)``."""

    @abstractmethod
    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean coefficient ``m(t)`` and std ``s(t)`` of ``x(t) | x(0)``."""

    @property
    @abstractmethod
    def prior_std(self) -> float:
        """Std of the isotropic Gaussian prior at ``t = T``."""

    def config(self) -> dict:
        """Constructor arguments, for checkpoints (``make_sde(**config)`` rebuilds it)."""
        return {"name": self.name, "eps": self.eps}

    # -- data-level operations through the space ------------------------------------
    def drift(self, x: Tensor, t: Tensor, space: Space) -> Tensor:
        """Forward drift ``f(t) x``, shaped like ``x``."""
        return space.expand(self.drift_coef(t)).to(x) * x

    def marginal_sample(self, x0: Tensor, t: Tensor, space: Space,
                        noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``x(t) | x(0)``; returns ``(x_t, z)`` with ``x_t = m x0 + s z``."""
        m, s = self.marginal(t)
        z = space.noise_like(x0) if noise is None else noise
        return space.expand(m).to(x0) * x0 + space.expand(s).to(x0) * z, z

    def prior_sample(self, space: Space, device=None, dtype=torch.float32,
                     generator: Generators = None) -> Tensor:
        """A sample of the prior, shaped ``space.shape``."""
        return self.prior_std * space.noise(device=device, dtype=dtype, generator=generator)

    def prior_logp(self, x: Tensor, space: Space) -> Tensor:
        """Log-density of the prior on the space's legal subspace, ``(B,)``."""
        d = space.dim.to(x)
        s2 = self.prior_std ** 2
        return -0.5 * space.norm_sq(x) / s2 - 0.5 * d * math.log(2 * math.pi * s2)

    def reverse_drift(self, x: Tensor, t: Tensor, score: Tensor, space: Space,
                      probability_flow: bool = False) -> Tensor:
        """Drift of the reverse-time SDE (``f x - g^2 score``) or the probability-flow ODE
        (``f x - g^2 score / 2``), shaped like ``x``; integrate it backwards in time."""
        g2 = space.expand(self.diffusion(t) ** 2).to(x)
        return self.drift(x, t, space) - (0.5 if probability_flow else 1.0) * g2 * score

    def discretize(self, x: Tensor, t: Tensor, dt: float, space: Space) -> tuple[Tensor, Tensor]:
        """One forward step of size ``dt`` as ``x_{t+dt} = x + F + G z``; returns ``(F, G)``
        with ``G`` per sample ``(B,)``. Euler-Maruyama by default; subclasses may be exact."""
        return self.drift(x, t, space) * dt, self.diffusion(t) * math.sqrt(dt)

    def time_grid(self, steps: int, device=None) -> Tensor:
        """``steps + 1`` times from ``T`` down to ``eps``, ``(steps + 1,)``."""
        return torch.linspace(self.T, self.eps, steps + 1, device=device)


class VESDE(SDE):
    """Variance-exploding SDE (NCSN / SMLD)."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, eps: float = 1e-5):
        super().__init__(eps)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(sigma_max / sigma_min)

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = sigma_min (sigma_max / sigma_min)^t``."""
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_coef(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.sigma(t) * math.sqrt(2 * self._log_ratio)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        # sigma(t)^2 - sigma_min^2 without the cancellation of the difference near t = 0
        var = self.sigma_min ** 2 * torch.expm1(2 * self._log_ratio * t).clamp(min=0)
        return torch.ones_like(t), var.sqrt()

    @property
    def prior_std(self) -> float:
        return math.sqrt(self.sigma_max ** 2 - self.sigma_min ** 2)

    def discretize(self, x, t, dt, space):
        # Exact transition variance of the VE SDE over [t + dt, t] (dt < 0 in reverse):
        # |sigma(t)^2 - sigma(t + dt)^2|, as sigma(lower)^2 expm1(2 log_ratio |dt|)
        lower = torch.minimum(t, t + dt)
        var = self.sigma(lower) ** 2 * math.expm1(2 * self._log_ratio * abs(dt))
        return torch.zeros_like(x), var.sqrt()

    def config(self) -> dict:
        return {**super().config(), "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class VPSDE(SDE):
    """Variance-preserving SDE (DDPM in continuous time)."""

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-5):
        super().__init__(eps)
        if not 0 < beta_min < beta_max:
            raise ValueError(f"need 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integrated_beta(self, t: Tensor) -> Tensor:
        """``B(t) = int_0^t beta(s) ds``."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2

    def drift_coef(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.beta(t).sqrt()

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        B = self.integrated_beta(t)
        return torch.exp(-0.5 * B), (-torch.expm1(-B)).clamp(min=0).sqrt()

    @property
    def prior_std(self) -> float:
        return 1.0

    def config(self) -> dict:
        return {**super().config(), "beta_min": self.beta_min, "beta_max": self.beta_max}


class SubVPSDE(VPSDE):
    """Sub-variance-preserving SDE: VP drift, smaller diffusion (better likelihoods)."""

    name = "subvp"

    def diffusion(self, t: Tensor) -> Tensor:
        return (self.beta(t) * -torch.expm1(-2 * self.integrated_beta(t))).clamp(min=0).sqrt()

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        B = self.integrated_beta(t)
        return torch.exp(-0.5 * B), -torch.expm1(-B)


SDE_NAMES = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}


def make_sde(name: str, **kwargs) -> SDE:
    """Build an SDE by name (``ve``, ``vp``, ``subvp``) with its schedule parameters."""
    try:
        cls = SDE_NAMES[name]
    except KeyError:
        raise ValueError(f"unknown SDE {name!r}; choose from {', '.join(SDE_NAMES)}") from None
    return cls(**kwargs)
