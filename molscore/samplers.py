"""Samplers for the reverse-time SDE and the probability-flow ODE (k-diffusion style).

Every sampler is a free function with one signature::

    sample_xxx(score_fn, sde, space, x, steps, *, mask=None, x_known=None, callback=None,
               disable=True, generator=None, denoise=False, **opts) -> SampleResult

* ``score_fn(x, t) -> tensor like x`` with ``t`` of shape ``(B,)`` (one time per sample).
* ``x``: the initial state at ``t = T``, usually ``sde.prior_sample(space)``; shaped
  ``space.shape``.
* ``steps``: number of time steps from ``T`` down to ``sde.eps`` (noise levels for ALD).
* ``callback(info)`` is called after every step with a dict ``{"i", "t", "x"}`` (``t`` the
  new time, ``(B,)``).
* ``generator`` makes the noise reproducible (one per sample, :data:`~molscore.spaces.Generators`,
  makes each sample's noise independent of its batch; its result too, for a score that treats
  samples separately, except with ``pc`` and ``ald``, whose Langevin step size is pooled over
  the batch, see :func:`langevin_correct`, and ``ode`` with ``method="dopri5"``, whose
  adaptive step the batch shares); ``disable=False`` shows a tqdm bar.
* ``denoise=True`` ends with one Tweedie step ``x0 = (x + s^2 score) / m`` at ``t = eps``
  (one extra function evaluation).

Sampling runs under :func:`torch.no_grad` (a network's graph is not kept across steps);
score functions that need gradients, such as energy models, enable them themselves.

The stochastic samplers add no noise in their last step (they return the step's mean,
as score_sde's ``noise_removal``). States are kept on the space's legal subspace with
``space.project`` and ``space.noise_like`` (centre-of-mass free point sets stay CoM-free).

Inpainting / conditioning: ``mask`` (like ``x``, 1 = known) and ``x_known`` (like ``x``).
After every step the known entries are replaced by the forward-noised observation
``m(t) x_known + s(t) z`` at the new time, and by ``x_known`` exactly at the end. For point
sets with pinned atoms use a :class:`~molscore.spaces.PointSetSpace` with ``com_free=False``
(a space that projects is refused): with CoM projection the replacement would be undone by
re-centring (and a CoM-free prior cannot hold atoms at given absolute positions). A
translation-invariant score (zero along the CoM) then samples the conditional of the
relative coordinates, the pinned atoms fixing the frame (nothing else pulls the free
entries after the known ones' level ``m(t) x_known``: the ``reverse`` predictor's VP Euler
step follows ``m(t)`` to first order only, so ``pc`` lags behind atoms pinned far from the
origin, by 0.28 in an offset of variance 2.4 for a 1-D point pinned at 30 at 100 steps, 0.08 at
400; ``ancestral`` and ``ald`` follow it exactly). For the ODE sampler the known
entries follow the deterministic path ``m(t) x_known + s(t) z`` with one fixed ``z``. Replacement is the
score_sde heuristic, not exact conditioning: the unknown part is only pulled to the right
conditional by Langevin mixing at small noise, so use ``ald`` (or ``pc`` with several
corrector steps). Predictor-only and ODE samplers are biased towards the unconditional
distribution (for a 2-D Gaussian with correlation 0.8 the ODE gives a conditional mean of
about 0.4 of the true one, ALD the true one within sampling error).

:data:`SAMPLERS` maps names to functions; :func:`sample` dispatches by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor
from torchdiffeq import odeint
from tqdm.auto import tqdm

from .sde import SDE
from .spaces import Generators, Space

__all__ = ["SampleResult", "sample_em", "sample_reverse", "sample_ancestral", "sample_pc",
           "sample_ald", "sample_ode", "langevin_correct", "SAMPLERS", "sample",
           "PREDICTORS", "ODE_METHODS", "solve_ode"]

ScoreFn = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict], Any]


def solve_ode(func: Callable, y0: Any, t: Tensor, **kwargs) -> Any:
    """:func:`torchdiffeq.odeint`, whose adaptive step-size underflow (an ``assert``, met with
    a non-finite or very stiff field) is raised as ``FloatingPointError``."""
    try:
        return odeint(func, y0, t, **kwargs)
    except AssertionError as err:
        if "underflow in dt" not in str(err):
            raise
        raise FloatingPointError(f"the adaptive ODE solver's step size underflowed ({err}): "
                                 "the score is not finite or too stiff") from None


@dataclass
class SampleResult:
    """Final samples ``x`` (shaped ``space.shape``) and the number of score evaluations."""

    x: Tensor
    nfe: int


class _Counted:
    """Counts calls of a score function and keeps its output on the legal subspace."""

    def __init__(self, score_fn: ScoreFn, space: Space):
        self.fn, self.space, self.nfe = score_fn, space, 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        return self.space.project(self.fn(x, t))


def _tvec(t: Tensor, space: Space) -> Tensor:
    """A scalar time as a ``(B,)`` vector."""
    return t.expand(space.num_samples)


def _ex(v: Tensor, space: Space, x: Tensor) -> Tensor:
    """Per-sample ``(B,)`` -> broadcastable against ``x``."""
    return space.expand(v).to(x)


class _Conditioner:
    """Replacement-based conditioning on the known entries (no-op without a mask)."""

    def __init__(self, sde: SDE, space: Space, x: Tensor, mask: Tensor | None,
                 x_known: Tensor | None, generator: Generators):
        if (mask is None) != (x_known is None):
            raise ValueError("mask and x_known must be given together")
        if mask is not None and space.projects:
            raise ValueError(f"mask and x_known need a space without projection, not {space!r}: "
                             "re-centring would move the known entries (pin atoms with "
                             "PointSetSpace(..., com_free=False))")
        self.sde, self.space, self.generator = sde, space, generator
        self.mask = None if mask is None else mask.to(x).expand(x.shape)
        self.x_known = None if x_known is None else x_known.to(x).expand(x.shape)

    def noised(self, x: Tensor, t: Tensor, z: Tensor | None = None) -> Tensor:
        """Replace the known part by ``m(t) x_known + s(t) z`` (fresh ``z`` unless given)."""
        if self.mask is None:
            return x
        m, s = self.sde.marginal(t)
        z = self.space.noise_like(x, self.generator) if z is None else z
        obs = _ex(m, self.space, x) * self.x_known + _ex(s, self.space, x) * z
        return self.mask * obs + (1 - self.mask) * x

    def scored(self, score: ScoreFn) -> ScoreFn:
        """``score`` evaluated with the known part replaced by :meth:`noised` (for Langevin
        correctors, whose steps would otherwise move the known entries off the observation
        and forget it)."""
        if self.mask is None:
            return score
        return lambda x, t: score(self.noised(x, t), t)

    def final(self, x: Tensor) -> Tensor:
        if self.mask is None:
            return x
        return self.mask * self.x_known + (1 - self.mask) * x


def _check(sde: SDE, space: Space, x: Tensor, steps: int) -> None:
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    space.check_shape(x)


def _tweedie(score: _Counted, sde: SDE, space: Space, x: Tensor) -> Tensor:
    """``x0 = (x + s^2 score(x, eps)) / m`` at ``t = eps``."""
    t = torch.full((space.num_samples,), sde.eps, device=x.device, dtype=x.dtype)
    m, s = sde.marginal(t)
    return space.project((x + _ex(s ** 2, space, x) * score(x, t)) / _ex(m, space, x))


# -- predictors: one step from t to t_next < t; return (x, x_mean) -------------------------
def _em_step(score: _Counted, sde: SDE, space: Space, x: Tensor, t: Tensor,
             t_next: Tensor, generator: Generators
             ) -> tuple[Tensor, Tensor]:
    """Euler-Maruyama on the reverse SDE."""
    dt = t_next - t                                                 # (B,), negative
    x_mean = x + sde.reverse_drift(x, t, score(x, t), space) * _ex(dt, space, x)
    g = sde.diffusion(t) * (-dt).sqrt()
    return x_mean + _ex(g, space, x) * space.noise_like(x, generator), x_mean


def _reverse_step(score: _Counted, sde: SDE, space: Space, x: Tensor, t: Tensor,
                  t_next: Tensor, generator: Generators
                  ) -> tuple[Tensor, Tensor]:
    """Reverse diffusion through ``sde.discretize``.

    Inverts the forward step ``x_t = x_{t'} + F + G z`` taken from ``t' = t_next`` to ``t``:
    ``x_{t'} = x_t - F + G^2 score + G z``.
    """
    h = float(t[0] - t_next[0])
    f, g = sde.discretize(x, t_next, h, space)
    x_mean = x - f + _ex(g ** 2, space, x) * score(x, t)
    return x_mean + _ex(g, space, x) * space.noise_like(x, generator), x_mean


def _ancestral_step(score: _Counted, sde: SDE, space: Space, x: Tensor, t: Tensor,
                    t_next: Tensor, generator: Generators
                    ) -> tuple[Tensor, Tensor]:
    """Exact Gaussian posterior ``q(x_{t'} | x_t, x_0)`` with Tweedie's ``x_0``.

    With ``a = m_t / m_{t'}`` and ``b^2 = s_t^2 - a^2 s_{t'}^2`` the mean is
    ``(x + b^2 score) / a`` and the variance ``b^2 s_{t'}^2 / s_t^2``: the NCSN/SMLD step for
    VE (``a = 1``) and the DDPM step for VP (``a = sqrt(1 - beta)``, ``b^2 = beta``).
    """
    m_t, s_t = sde.marginal(t)
    m_n, s_n = sde.marginal(t_next)
    a = m_t / m_n
    b2 = (s_t ** 2 - a ** 2 * s_n ** 2).clamp(min=0)
    x_mean = (x + _ex(b2, space, x) * score(x, t)) / _ex(a, space, x)
    std = (b2 * s_n ** 2 / s_t ** 2).sqrt()
    return x_mean + _ex(std, space, x) * space.noise_like(x, generator), x_mean


PREDICTORS: dict[str, Callable] = {"em": _em_step, "reverse": _reverse_step,
                                   "ancestral": _ancestral_step}


def langevin_correct(score_fn: ScoreFn, space: Space, x: Tensor, t: Tensor, n_steps: int,
                     snr: float, generator: Generators = None, mask: Tensor | None = None
                     ) -> tuple[Tensor, Tensor]:
    """Langevin MCMC on ``p_t`` with a signal-to-noise step size (score_sde's corrector).

    ``x <- x + eps score + sqrt(2 eps) z`` with ``eps = 2 snr^2 / gamma``, where
    ``gamma = sum_b ||score_b||^2 / sum_b dim_b`` is the squared score per degree of freedom
    pooled over the batch (``dim`` = ``space.dim``, the expected ``||z_b||^2``), so that
    ``||eps score_b|| / ||sqrt(2 eps) z_b|| ~ snr`` for every sample whatever its size. The
    step is returned per sample but equal across the batch: a per-sample ``||score_b||^2``
    is heavy-tailed in low dimensions (``1 / chi^2_2`` in 2-D) and makes rare huge jumps.
    So a sample's result depends on its batch. Measured against the batch-independent
    alternatives (exact scores; Gaussians, CoM-free point sets of 2-60 points, the toy gmm8
    rows of ``benchmarks/toy.md``): the per-sample step over-disperses (variance +0.35 to +3.9
    relative on 2-point sets, +20 and more on gmm8), and NCSN's ``eps = 2 snr^2 sigma_t^2``
    (the Fisher-information bound of the pooled step) barely moves once the data's spread
    exceeds ``sigma_t`` (VP ``ald`` on gmm8, 300 levels: variance +1.28 against +0.081).
    An all-zero score (e.g. an untrained network with a zero-initialised output) gives a
    zero step instead of an infinite one. score_sde also scales VP and sub-VP steps by its
    discrete ``alpha_i = 1 - beta(t_i) / N`` (at least 0.98 at its defaults); that factor is
    left out, so the step does not depend on the SDE (the corrector sees only the score).

    With ``mask`` (like ``x``, 1 = known: entries the caller replaces after every step, as
    the samplers' conditioning does; for a space without projection) both sums run over the
    free entries only, the ones the step moves. In equilibrium that changes little, but
    counting the known entries slowed a lagging chain: a pinned atom's score carries most of
    the free atoms' offset from it, so a chain behind its level took ever smaller steps and
    fell further behind (VE ``ald``, one of 4 points pinned, 100 levels: free-atom variance
    5.4-10.6 for the exact 2).

    Args:
        x: state shaped ``space.shape``; ``t``: ``(B,)`` times; ``mask``: ``None`` or
            broadcastable to ``x``.
    Returns:
        ``(x, x_mean)``: the new state and the last step's noise-free mean (the known
        entries moved too: the caller replaces them).
    """
    x_mean = x
    free = None if mask is None else 1 - mask.to(x).expand(x.shape)
    dim = space.dim.to(x).sum() if free is None else free.sum()
    for _ in range(n_steps):
        grad = score_fn(x, t)
        gamma = space.norm_sq(grad if free is None else free * grad).sum() / dim
        # A zero score carries no information: take no step rather than an infinite one.
        step = torch.where(gamma > 0, 2 * snr ** 2 / gamma.clamp(min=torch.finfo(x.dtype).tiny),
                           torch.zeros_like(gamma)).expand(space.num_samples)
        x_mean = x + _ex(step, space, x) * grad
        x = x_mean + _ex((2 * step).sqrt(), space, x) * space.noise_like(x, generator)
    return x, x_mean


def _run_steps(step_fn: Callable, sde: SDE, space: Space, x: Tensor, steps: int, *,
               cond: _Conditioner | None, callback: Callback | None, disable: bool,
               last_mean: bool = True) -> Tensor:
    """Shared loop: ``x, x_mean = step_fn(x, t, t_next)`` over the time grid, then the
    conditioning replacement (if ``cond``); the last step keeps ``x_mean`` when
    ``last_mean``."""
    ts = sde.time_grid(steps, device=x.device).to(x.dtype)
    for i in tqdm(range(steps), disable=disable):
        t, t_next = _tvec(ts[i], space), _tvec(ts[i + 1], space)
        x, x_mean = step_fn(x, t, t_next)
        x = space.project(x_mean if last_mean and i == steps - 1 else x)
        if cond is not None:
            x = cond.noised(x, t_next)
        if callback is not None:
            callback({"i": i, "t": t_next, "x": x})
    return x


def _finish(x: Tensor, score: _Counted, sde: SDE, space: Space, cond: _Conditioner,
            denoise: bool) -> SampleResult:
    """Optional Tweedie denoising, then the known entries set exactly."""
    if denoise:
        x = _tweedie(score, sde, space, x)
    return SampleResult(cond.final(x), score.nfe)


def _predictor_sampler(name: str) -> Callable[..., SampleResult]:
    predictor = PREDICTORS[name]

    @torch.no_grad()
    def sampler(score_fn: ScoreFn, sde: SDE, space: Space, x: Tensor, steps: int, *,
                mask: Tensor | None = None, x_known: Tensor | None = None,
                callback: Callback | None = None, disable: bool = True,
                generator: Generators = None, denoise: bool = False) -> SampleResult:
        _check(sde, space, x, steps)
        score = _Counted(score_fn, space)
        cond = _Conditioner(sde, space, x, mask, x_known, generator)
        x = _run_steps(lambda x, t, tn: predictor(score, sde, space, x, t, tn, generator),
                       sde, space, space.project(x), steps, cond=cond, callback=callback,
                       disable=disable)
        return _finish(x, score, sde, space, cond, denoise)

    sampler.__name__ = f"sample_{name}"
    sampler.__doc__ = (f"Predictor-only sampler with the ``{name}`` step "
                       f"({predictor.__doc__.splitlines()[0].rstrip('.')}). See the module docstring.")
    return sampler


sample_em = _predictor_sampler("em")
sample_reverse = _predictor_sampler("reverse")
sample_ancestral = _predictor_sampler("ancestral")


@torch.no_grad()
def sample_pc(score_fn: ScoreFn, sde: SDE, space: Space, x: Tensor, steps: int, *,
              mask: Tensor | None = None, x_known: Tensor | None = None,
              callback: Callback | None = None, disable: bool = True,
              generator: Generators = None, denoise: bool = False,
              predictor: str = "reverse", corrector: str = "langevin", snr: float = 0.16,
              n_corrector: int = 1) -> SampleResult:
    """Predictor-corrector sampling: at every time, ``n_corrector`` Langevin steps on ``p_t``
    (``corrector="langevin"``, step size from ``snr``; ``"none"`` to skip), then one predictor
    step (``predictor`` in :data:`PREDICTORS`) to the next time."""
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; choose from {', '.join(PREDICTORS)}")
    if corrector not in ("langevin", "none"):
        raise ValueError(f"unknown corrector {corrector!r}; choose from langevin, none")
    _check(sde, space, x, steps)
    n_corr = n_corrector if corrector == "langevin" else 0
    score = _Counted(score_fn, space)
    cond = _Conditioner(sde, space, x, mask, x_known, generator)
    pred = PREDICTORS[predictor]

    corrector_score = cond.scored(score)

    def step(x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        x, _ = langevin_correct(corrector_score, space, x, t, n_corr, snr, generator, cond.mask)
        x = cond.noised(x, t)
        return pred(score, sde, space, x, t, t_next, generator)

    x = _run_steps(step, sde, space, space.project(x), steps, cond=cond, callback=callback,
                   disable=disable)
    return _finish(x, score, sde, space, cond, denoise)


@torch.no_grad()
def sample_ald(score_fn: ScoreFn, sde: SDE, space: Space, x: Tensor, steps: int, *,
               mask: Tensor | None = None, x_known: Tensor | None = None,
               callback: Callback | None = None, disable: bool = True,
               generator: Generators = None, denoise: bool = False,
               snr: float = 0.16, n_corrector: int = 10) -> SampleResult:
    """Annealed Langevin dynamics (NCSN): corrector-only over ``steps`` decreasing noise levels.

    The levels are the times ``sde.time_grid(steps)[1:]`` (from just below ``T`` down to
    ``eps``; for VE a geometric sequence of sigmas); at each, ``n_corrector`` Langevin steps
    on the noised density ``p_t``. The SNR step size of :func:`langevin_correct` is about
    ``2 snr^2`` times the squared width of ``p_t``, i.e. NCSN's ``alpha_i ~ sigma_i^2``, for
    every SDE. ``steps = 1`` is plain (non-annealed) Langevin at ``t = eps``. The result is
    the chain's last state (a noise-free last step would shrink it by ``2 snr^2`` relative to
    the width of ``p_eps``); use ``denoise=True`` for a Tweedie step.

    The SNR rule sizes a step by the score at the chain's state, so a chain wider than
    ``p_t`` (variance ``V`` against ``v``) takes steps of only ``2 snr^2 v^2 / V`` and falls
    further behind: levels must be close enough for ``n_corrector`` steps to follow them. On
    VE (sigma 0.01-50) with the defaults, a Gaussian target of variance 0.49 came out with
    variance 0.51 at 100 levels, 53 at 50 and about 1,100 at 20.

    With ``mask``, the state is scaled by ``m(t_next) / m(t)`` before each level's steps (a
    no-op for VE), as the known entries' level ``m(t) x_known`` is: with a score that is zero
    along some direction (a CoM-free model on pinned point sets) nothing else moves the chain
    there, and under VP it lagged behind pinned atoms far from the origin (one 1-D point
    pinned at 30, two free: their offsets' mean -15.4 for the true -3; now -3.02).
    """
    _check(sde, space, x, steps)
    score = _Counted(score_fn, space)
    cond = _Conditioner(sde, space, x, mask, x_known, generator)

    corrector_score = cond.scored(score)

    def step(x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        if cond.mask is not None:
            x = x * _ex(sde.marginal(t_next)[0] / sde.marginal(t)[0], space, x)
        return langevin_correct(corrector_score, space, x, t_next, n_corrector, snr, generator,
                                cond.mask)

    x = _run_steps(step, sde, space, space.project(x), steps, cond=cond, callback=callback,
                   disable=disable, last_mean=False)
    return _finish(x, score, sde, space, cond, denoise)


ODE_METHODS = ("euler", "heun", "rk4", "dopri5")


@torch.no_grad()
def sample_ode(score_fn: ScoreFn, sde: SDE, space: Space, x: Tensor, steps: int, *,
               mask: Tensor | None = None, x_known: Tensor | None = None,
               callback: Callback | None = None, disable: bool = True,
               generator: Generators = None, denoise: bool = False,
               method: str = "rk4", rtol: float = 1e-5, atol: float = 1e-5) -> SampleResult:
    """Probability-flow ODE ``dx/dt = f x - g^2 score / 2`` integrated from ``T`` to ``eps``.

    ``method``: fixed-step ``euler`` (1 evaluation per step), ``heun`` (2), ``rk4`` (4) on
    ``sde.time_grid(steps)``, or adaptive ``dopri5`` through :func:`torchdiffeq.odeint`
    with ``rtol``/``atol`` (``steps`` then sets the first step size ``(T - eps) / steps``;
    ``callback`` is called after every function evaluation). Deterministic given ``x``
    (and, with a mask, the one ``z`` drawn for the known path).
    """
    if method not in ODE_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose from {', '.join(ODE_METHODS)}")
    _check(sde, space, x, steps)
    score = _Counted(score_fn, space)
    cond = _Conditioner(sde, space, x, mask, x_known, generator)
    z_known = None if cond.mask is None else space.noise_like(x, generator)

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        if cond.mask is None:
            return space.project(sde.reverse_drift(x, t, score(x, t), space, True))
        x = cond.noised(x, t, z_known)
        v = sde.reverse_drift(x, t, score(x, t), space, True)
        return space.project((1 - cond.mask) * v + cond.mask * _path_rate(sde, space, t, x,
                                                                          cond.x_known, z_known))

    x = space.project(x)
    if method == "dopri5":
        bar = tqdm(disable=disable, unit="nfe")

        def func(t: Tensor, y: Tensor) -> Tensor:
            v = velocity(y, _tvec(t, space))
            bar.update()
            if callback is not None:
                callback({"i": score.nfe - 1, "t": _tvec(t, space), "x": y})
            return v

        span = torch.tensor([sde.T, sde.eps], device=x.device, dtype=x.dtype)
        try:
            x = solve_ode(func, x, span, method="dopri5", rtol=rtol, atol=atol,
                          options={"first_step": (sde.T - sde.eps) / steps,
                                   "step_t": span[-1:]})[-1]
        finally:  # not after the error message, when the bar is garbage-collected
            bar.close()
        x = cond.noised(space.project(x), _tvec(span[-1], space), z_known)
    else:
        def step(x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
            h = _ex(t_next - t, space, x)
            k1 = velocity(x, t)
            if method == "euler":
                x = x + h * k1
            elif method == "heun":
                x = x + h / 2 * (k1 + velocity(x + h * k1, t_next))
            else:
                tm = (t + t_next) / 2
                k2 = velocity(x + h / 2 * k1, tm)
                k3 = velocity(x + h / 2 * k2, tm)
                k4 = velocity(x + h * k3, t_next)
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            x = cond.noised(x, t_next, z_known)
            return x, x

        x = _run_steps(step, sde, space, x, steps, cond=None, callback=callback,
                       disable=disable)
    return _finish(x, score, sde, space, cond, denoise)


def _path_rate(sde: SDE, space: Space, t: Tensor, x: Tensor, x_known: Tensor,
               z: Tensor) -> Tensor:
    """``d/dt [m(t) x_known + s(t) z]`` (``dm/dt``, ``ds/dt`` by autograd; times are per
    sample, so the gradient of the sum is the per-sample derivative), like ``x``."""
    with torch.enable_grad():
        tt = t.detach().clone().requires_grad_(True)
        rates = [torch.autograd.grad(c.sum(), tt, retain_graph=True)[0] if c.requires_grad
                 else torch.zeros_like(tt) for c in sde.marginal(tt)]
    return _ex(rates[0], space, x) * x_known + _ex(rates[1], space, x) * z


SAMPLERS: dict[str, Callable[..., SampleResult]] = {
    "em": sample_em, "reverse": sample_reverse, "ancestral": sample_ancestral,
    "pc": sample_pc, "ald": sample_ald, "ode": sample_ode}


def sample(name: str, score_fn: ScoreFn, sde: SDE, space: Space, x: Tensor, steps: int,
           **opts) -> SampleResult:
    """Run the sampler ``name`` (a key of :data:`SAMPLERS`) with its keyword options."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return SAMPLERS[name](score_fn, sde, space, x, steps, **opts)
