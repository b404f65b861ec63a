"""Exact log-likelihoods through the probability-flow ODE (instantaneous change of variables).

Integrating ``dx/dt = v(x, t) = f x - g^2 score / 2`` from ``eps`` to ``T`` together with
``d(delta)/dt = div v`` gives ``log p_eps(x) = log p_T(x_T) + delta`` with
``delta = int_eps^T div v dt``; ``log p_T`` is ``sde.prior_logp``, which counts
``space.dim`` degrees of freedom per sample (``3 n - 3`` for CoM-free point sets).

The divergence is taken on the space's legal subspace: the field integrated is
``P v(P x)`` with ``P = space.project``, whose full-coordinate trace equals the trace of the
Jacobian restricted to the subspace. ``divergence="exact"`` loops over coordinates with
autograd (one backward pass per coordinate of the largest sample: small dims only);
``"hutchinson"`` uses ``E[e^T J e]`` with one probe ``e`` per solve drawn on the subspace.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .samplers import solve_ode
from .sde import SDE
from .spaces import Space, index_count

__all__ = ["LikelihoodResult", "log_likelihood", "bits_per_dim", "DIVERGENCES", "PROBES"]

ScoreFn = Callable[[Tensor, Tensor], Tensor]
DIVERGENCES = ("hutchinson", "exact")
PROBES = ("rademacher", "gaussian")
_ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: torchdiffeq's fixed-grid methods: without ``steps`` they take a single step from eps to T.
_FIXED = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams",
          "fixed_adams")


@dataclass
class LikelihoodResult:
    """Per-sample ``logp = prior_logp + delta_logp`` (all ``(B,)``), the number of score
    evaluations, and the latent ``z = x_T`` the data maps to (shaped like ``x``)."""

    logp: Tensor
    prior_logp: Tensor
    delta_logp: Tensor
    nfe: int
    z: Tensor | None = None


def log_likelihood(score_fn: ScoreFn, sde: SDE, space: Space, x: Tensor, *,
                   divergence: str = "hutchinson", noise: str = "rademacher",
                   method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
                   steps: int | None = None, generator: torch.Generator | None = None,
                   disable: bool = True) -> LikelihoodResult:
    """Log-density ``log p_eps(x)`` ``(B,)`` of data ``x`` (shaped ``space.shape``).

    Args:
        score_fn: ``(x, t (B,)) -> like x``, differentiable in ``x`` (its autograd graph kept).
        divergence: ``"exact"`` (autograd per coordinate) or ``"hutchinson"``.
        noise: Hutchinson probe, ``"rademacher"`` or ``"gaussian"`` (on the legal subspace).
        method: a :func:`torchdiffeq.odeint` method; adaptive ones use ``rtol``/``atol``.
        steps: if given, a fixed grid of ``steps`` steps from ``eps`` to ``T``; required by the
            fixed-step methods (``"rk4"``, ``"euler"``, ``"midpoint"``, ...).
        generator: draws the Hutchinson probe (Gaussian or Rademacher).
        disable: ``False`` shows a tqdm bar of the score evaluations.

    Raises:
        ValueError: an unknown ``divergence`` or ``noise``, ``steps <= 0``, a fixed-step
            ``method`` without ``steps``, ``x`` not shaped ``space.shape``, or a score with
            no autograd graph in ``x`` (detached, ``torch.no_grad`` inside ``score_fn``, or
            ``torch.inference_mode``), whose divergence would count as 0.
        FloatingPointError: an adaptive ``method``'s step size underflowed (a non-finite or
            very stiff score).
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; choose from {', '.join(DIVERGENCES)}")
    if noise not in PROBES:
        raise ValueError(f"unknown probe noise {noise!r}; choose from {', '.join(PROBES)}")
    if steps is not None and steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    if steps is None and method in _FIXED:
        raise ValueError(f"method {method!r} is fixed-step and needs steps (without them it "
                         "would take one step from eps to T)")
    space.check_shape(x)
    x = space.project(x.detach())
    if divergence == "exact":
        index = space.entry_index(x)      # probe k: coordinate k of every sample
        probes = [(index == k).to(x.dtype) for k in range(index_count(index))]
    elif noise == "gaussian":
        probes = [space.noise_like(x, generator)]
    else:
        probes = [space.rademacher_like(x, generator)]
    nfe = 0
    bar = tqdm(disable=disable, unit="nfe", desc="likelihood")

    def func(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        nonlocal nfe
        nfe += 1
        bar.update()
        tb = t.expand(space.num_samples)
        with torch.enable_grad():
            y = space.project(state[0].detach().requires_grad_(True))
            score = score_fn(y, tb)
            if not score.requires_grad:   # its divergence would be taken as 0
                raise ValueError("score_fn returned a score with no autograd graph in x "
                                 "(detached, torch.no_grad inside score_fn, or "
                                 "torch.inference_mode): the divergence needs its Jacobian")
            v = space.project(sde.reverse_drift(y, tb, space.project(score), space,
                                                probability_flow=True))
            div = torch.zeros(space.num_samples, device=x.device, dtype=x.dtype)
            for i, e in enumerate(probes):
                (jve,) = torch.autograd.grad((v * e).sum(), y, retain_graph=i < len(probes) - 1)
                div = div + space.per_sample_sum(jve * e)
        return v.detach(), div.detach()

    if steps is None:
        ts = torch.tensor([sde.eps, sde.T], device=x.device, dtype=x.dtype)
        options = {"step_t": ts[-1:]} if method in _ADAPTIVE else None
    else:
        ts = torch.linspace(sde.eps, sde.T, steps + 1, device=x.device, dtype=x.dtype)
        options = None
    zero = torch.zeros(space.num_samples, device=x.device, dtype=x.dtype)
    try:
        xs, deltas = solve_ode(func, (x, zero), ts, method=method, rtol=rtol, atol=atol,
                               options=options)
    finally:
        bar.close()
    prior = sde.prior_logp(xs[-1], space)
    return LikelihoodResult(prior + deltas[-1], prior, deltas[-1], nfe, xs[-1])


def bits_per_dim(logp: Tensor, dim: Tensor | float, log_scale: float = 0.0) -> Tensor:
    """Bits per dimension ``-(logp + log_scale) / (dim ln 2)``, ``(B,)``.

    Args:
        logp: ``(B,)`` log-density in nats of the data as fed to the model.
        dim: degrees of freedom per sample (``space.dim``), ``(B,)`` or a number.
        log_scale: ``log |det|`` of the map from the reported data to the model's data, i.e.
            ``dim * log(a)`` when the model sees ``x_model = a x_data + b``: e.g. for 8-bit
            images scaled ``[0, 256) -> [-1, 1]``, ``a = 2 / 256`` and the result is bits per
            dimension on the 0..255 scale. Dequantisation is the caller's job.
    """
    dim = torch.as_tensor(dim).to(logp)
    return -(logp + log_scale) / (dim * math.log(2))
