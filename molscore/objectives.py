"""Score-matching objectives on noised data, for any space and any SDE.

Model call convention: ``model(x, t, space, cond) -> score`` shaped like ``x`` (a
:class:`molscore.models.param.ScoreModel`). Every loss returns per-sample losses
``(B,)``; the caller takes the mean.

Each loss draws ``t ~ U[eps, T]`` per sample (unless ``t`` is given) and
``x_t = m(t) x0 + s(t) z`` with ``z`` Gaussian noise on the space's legal subspace,
and weights sample ``i`` by ``lambda(t_i)``:

* ``weighting="sigma2"``: ``lambda = s(t)^2`` (the standard choice; the DSM loss is
  ``||s * score + z||^2``);
* ``weighting="likelihood"``: ``lambda = g(t)^2`` (Song et al. 2021, bounds the NLL).

Relation between the objectives, with ``p_t`` the noised data density:

* ``dsm``:   ``lambda ||score + z / s||^2``, whose expectation is
  ``lambda E||score - grad log p_t||^2 + C(t)``;
* ``exact``: ``lambda (tr J + ||score||^2 / 2)`` (Hyvarinen), ``J = d score / d x``, whose
  expectation is ``lambda / 2 E||score - grad log p_t||^2 + C'(t)``;
* ``ssm`` / ``ssm-vr``: unbiased estimates of ``exact`` with random projections ``v``:
  ``lambda (v^T J v + (v^T score)^2 / 2)`` and ``lambda (v^T J v + ||score||^2 / 2)``.

So ``dsm`` is twice the Hyvarinen-type objectives up to a constant; all have the
exact noised score as minimiser. On point sets the trace is over the legal
(centre-of-mass free) subspace: projections and basis vectors go through
``space.project``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from .sde import SDE
from .spaces import Space, index_count

__all__ = ["dsm_loss", "ssm_loss", "exact_sm_loss", "OBJECTIVES", "get_objective",
           "WEIGHTINGS", "PROJECTIONS", "MAX_EXACT_DIM"]

Model = Callable[..., Tensor]
WEIGHTINGS = ("sigma2", "likelihood")
PROJECTIONS = ("rademacher", "gaussian")
# exact_sm_loss costs one backward pass per dimension of a sample; refuse above this.
MAX_EXACT_DIM = 256


def _noised(sde: SDE, x0: Tensor, space: Space, t: Tensor | None,
            noise: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(t (B,), x_t like x0, z like x0, s (B,))`` for a batch of clean data ``x0``.

    Raises:
        ValueError: ``x0`` is not shaped as ``space`` says (one ``t`` per sample would be
            broadcast over other rows).
    """
    space.check_shape(x0)
    if t is None:
        t = space.sample_time(sde.eps, sde.T, device=x0.device, dtype=x0.dtype)
    x_t, z = sde.marginal_sample(x0, t, space, noise=noise)
    _, s = sde.marginal(t)
    return t, x_t, z, s


def _weight(sde: SDE, t: Tensor, s: Tensor, weighting: str) -> Tensor:
    """``lambda(t)``, ``(B,)``."""
    if weighting == "sigma2":
        return s ** 2
    if weighting == "likelihood":
        return sde.diffusion(t) ** 2
    raise ValueError(f"unknown weighting {weighting!r}; choose from {', '.join(WEIGHTINGS)}")


def dsm_loss(model: Model, sde: SDE, x0: Tensor, space: Space, cond: Any = None, *,
             weighting: str = "sigma2", t: Tensor | None = None,
             noise: Tensor | None = None) -> Tensor:
    """Continuous-time denoising score matching (Vincent 2011; Song et al. 2021).

    Args:
        model: ``model(x, t, space, cond) -> score`` shaped like ``x``.
        sde: forward SDE (supplies ``m(t)``, ``s(t)``, ``g(t)``).
        x0: clean data, rows as ``space`` describes (``(B, ...)`` or ``(N, 3)``).
        space: how rows form samples.
        cond: passed through to the model.
        weighting: ``"sigma2"`` (``||s * score + z||^2``) or ``"likelihood"`` (``g^2 ||score + z/s||^2``).
        t: ``(B,)`` times; drawn ``U[eps, T]`` when ``None``.
        noise: the ``z`` to use, shaped like ``x0``; drawn when ``None``.

    Returns:
        ``(B,)`` per-sample losses.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose from {', '.join(WEIGHTINGS)}")
    t, x_t, z, s = _noised(sde, x0, space, t, noise)
    score = model(x_t, t, space, cond)
    s_rows = space.expand(s).to(x0)
    if weighting == "sigma2":
        return space.norm_sq(s_rows * score + z)
    lam = _weight(sde, t, s, weighting)
    return lam.to(x0) * space.norm_sq(score + z / s_rows)


def _projection(space: Space, x: Tensor, projection: str) -> Tensor:
    if projection == "rademacher":
        return space.rademacher_like(x)
    if projection == "gaussian":
        return space.noise_like(x)
    raise ValueError(f"unknown projection {projection!r}; choose from {', '.join(PROJECTIONS)}")


def ssm_loss(model: Model, sde: SDE, x0: Tensor, space: Space, cond: Any = None, *,
             variance_reduced: bool = False, n_proj: int = 1, projection: str = "rademacher",
             weighting: str = "sigma2", t: Tensor | None = None,
             noise: Tensor | None = None) -> Tensor:
    """Sliced score matching on noised data (Song et al. 2019).

    Per sample: ``lambda (mean_v[v^T J v] + Q / 2)`` with ``Q = mean_v[(v^T score)^2]``
    (SSM) or ``Q = ||score||^2`` (SSM-VR), ``J = d score / d x_t`` by double backprop.
    Both are unbiased estimates of :func:`exact_sm_loss` for the same ``t`` and noise.

    Args:
        variance_reduced: use the closed-form ``||score||^2`` (SSM-VR).
        n_proj: projections per sample (averaged).
        projection: ``"rademacher"`` or ``"gaussian"`` vectors ``v`` (``E[v v^T] = I`` on
            the legal subspace).
        Others as :func:`dsm_loss`.

    Returns:
        ``(B,)`` per-sample losses.
    """
    if n_proj < 1:
        raise ValueError(f"n_proj must be >= 1, got {n_proj}")
    t, x_t, _, s = _noised(sde, x0, space, t, noise)
    lam = _weight(sde, t, s, weighting).to(x0)
    x_t = x_t.detach().requires_grad_(True)
    score = model(x_t, t, space, cond)
    vjv = torch.zeros(space.num_samples, device=x0.device, dtype=x0.dtype)
    quad = torch.zeros_like(vjv)
    for _ in range(n_proj):
        v = _projection(space, x_t, projection)
        sv = space.per_sample_sum(score * v)
        (jtv,) = torch.autograd.grad(sv.sum(), x_t, create_graph=True)
        vjv = vjv + space.per_sample_sum(jtv * v)
        if not variance_reduced:
            quad = quad + sv ** 2
    if variance_reduced:
        quad = space.norm_sq(score) * n_proj
    return lam * (vjv + 0.5 * quad) / n_proj


def exact_sm_loss(model: Model, sde: SDE, x0: Tensor, space: Space, cond: Any = None, *,
                  weighting: str = "sigma2", t: Tensor | None = None,
                  noise: Tensor | None = None) -> Tensor:
    """Hyvarinen score matching on noised data: ``lambda (tr J + ||score||^2 / 2)``.

    The trace is exact, one backward pass per entry of a sample (entries ``k`` of all
    samples at once, projected onto the legal subspace, so on point sets it is the
    trace of ``P J P``). Only for low dimension: samples with more than
    :data:`MAX_EXACT_DIM` entries raise ``ValueError``.

    Args: as :func:`dsm_loss`.

    Returns:
        ``(B,)`` per-sample losses.
    """
    space.check_shape(x0)
    index = space.entry_index(x0)
    n_entries = index_count(index)
    if n_entries > MAX_EXACT_DIM:
        raise ValueError(f"exact score matching needs one backward pass per dimension; "
                         f"{n_entries} > MAX_EXACT_DIM={MAX_EXACT_DIM}, use ssm or dsm")
    t, x_t, _, s = _noised(sde, x0, space, t, noise)
    lam = _weight(sde, t, s, weighting).to(x0)
    x_t = x_t.detach().requires_grad_(True)
    score = model(x_t, t, space, cond)
    trace = torch.zeros(space.num_samples, device=x0.device, dtype=x0.dtype)
    for k in range(n_entries):
        e = space.project((index == k).to(x0))
        (jte,) = torch.autograd.grad(space.per_sample_sum(score * e).sum(), x_t,
                                     create_graph=True)
        trace = trace + space.per_sample_sum(jte * e)
    return lam * (trace + 0.5 * space.norm_sq(score))


def _ssm_vr(model: Model, sde: SDE, x0: Tensor, space: Space, cond: Any = None,
            **kwargs) -> Tensor:
    """:func:`ssm_loss` with ``variance_reduced=True``."""
    return ssm_loss(model, sde, x0, space, cond, variance_reduced=True, **kwargs)


OBJECTIVES: dict[str, Callable[..., Tensor]] = {
    "dsm": dsm_loss,
    "ssm": ssm_loss,
    "ssm-vr": _ssm_vr,
    "exact": exact_sm_loss,
}


def get_objective(name: str) -> Callable[..., Tensor]:
    """The loss function called ``name``; unknown names raise ``ValueError`` listing the choices."""
    try:
        return OBJECTIVES[name]
    except (KeyError, TypeError):   # TypeError: a list or mapping (unhashable)
        raise ValueError(f"unknown objective {name!r}; choose from "
                         f"{', '.join(OBJECTIVES)}") from None
