"""``molscore toy``: sample, evaluate likelihoods and train score models on toy densities.

Subcommands::

    molscore toy sample --density gmm8 --score exact --sde ve --sampler pc --steps 500 -n 4000 -o s.npy
    molscore toy likelihood --density gmm8 --score exact --sde vp -n 500 -o logp.npz
    molscore toy train --density checkerboard --objective dsm --sde ve -o run/

``--score`` is ``exact`` (the analytic noised score of a Gaussian-mixture density) or
the path of a checkpoint written by ``toy train`` (or by ``molscore train`` with
``task: toy``); a checkpoint carries its own density and SDE.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..checkpoint import CHECKPOINT_FORMAT, load_checkpoint_model, save_atomic, write_atomic
from ..data.toy import DENSITIES, GaussianMixture, exact_score_fn, get_density
from ..data.toy_task import make_meta, train_toy
from ..errors import out_of_memory
from ..models.param import ScoreModel
from ..objectives import OBJECTIVES, WEIGHTINGS
from ..samplers import ODE_METHODS, SAMPLERS, sample
from ..sde import SDE, SDE_NAMES, make_sde
from ..spaces import DenseSpace
from . import UsageError
from .argtypes import positive_float, positive_int, seed

ORDER = 50
LIKELIHOOD_METHODS = ("dopri5", "rk4", "midpoint", "euler")
MIXTURES = tuple(name for name in DENSITIES if name.startswith("gmm"))


class ScoreSource:
    """A score function ``(x (B, D), t (B,)) -> (B, D)`` with its SDE and density."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], sde: SDE, density: str,
                 density_options: dict, model: ScoreModel | None = None):
        self.fn, self.sde, self.density, self.density_options = fn, sde, density, density_options
        self.model = model

    @property
    def exact(self) -> bool:
        return self.model is None


def _load_score(score: str, density: str | None, sde_name: str | None,
                dim: int | None) -> ScoreSource:
    """Resolve ``--score``: ``exact`` or a checkpoint path (errors become UsageError)."""
    if score == "exact":
        density = density or "gmm8"
        if density not in MIXTURES:
            raise UsageError(f"--score exact needs a Gaussian-mixture density "
                             f"({', '.join(MIXTURES)}), got {density!r}")
        if dim is not None and density != "gmmnd":
            raise UsageError(f"--dim is for --density gmmnd, not {density}")
        opts = {"dim": dim} if (density == "gmmnd" and dim) else {}
        dens = get_density(density, **opts)
        sde = make_sde(sde_name or "ve")
        fn64 = exact_score_fn(dens, sde)
        return ScoreSource(lambda x, t: fn64(x.double(), t.double()).to(x.dtype), sde,
                           density, opts)
    try:
        model, meta = load_checkpoint_model(score)
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as err:
        raise UsageError(f"--score must be 'exact' or a toy checkpoint: {err}") from None
    if meta.get("task") != "toy":
        raise UsageError(f"{score} is a checkpoint of task {meta.get('task')!r}, not 'toy'")
    if sde_name is not None and sde_name != meta["sde"]["name"]:
        raise UsageError(f"{score} was trained with --sde {meta['sde']['name']}, not {sde_name}")
    if density is not None and density != meta["density"]:
        raise UsageError(f"{score} was trained on --density {meta['density']}, not {density}")
    if dim is not None and dim != meta["dim"]:
        raise UsageError(f"{score} was trained on {meta['dim']}-D data, not --dim {dim}")

    def fn(x: Tensor, t: Tensor) -> Tensor:
        return model(x, t, DenseSpace(x.shape)).detach()

    return ScoreSource(fn, model.sde, meta["density"], meta.get("density_options", {}), model)


def _out_path(path: str, suffix: str) -> Path:
    out = Path(path)
    if out.suffix != suffix:
        raise UsageError(f"-o must end in {suffix}, got {path!r}")
    if out.is_dir():
        raise UsageError(f"-o {path} is a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError.cannot_write(err, path) from None
    return out


def _write(out: Path, write: Callable) -> None:
    """:func:`~molscore.checkpoint.write_atomic`; an ``OSError`` is a usage error."""
    try:
        write_atomic(out, write)
    except OSError as err:
        raise UsageError.cannot_write(err, out) from None


# -- toy sample ----------------------------------------------------------------------------
SAMPLER_OPTIONS = {"predictor": ("pc",), "snr": ("pc", "ald"), "n_corrector": ("pc", "ald"),
                   "method": ("ode",), "rtol": ("ode",), "atol": ("ode",)}
"""The samplers each sampler option of ``toy sample`` is for."""


def _sampler_options(args: argparse.Namespace) -> dict:
    """The sampler keywords of the given options (the sampler's defaults for the others);
    an option the sampler (or ODE method) does not use is a usage error."""
    opts: dict = {"disable": not args.progress}
    for name, samplers in SAMPLER_OPTIONS.items():
        value = getattr(args, name)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if args.sampler not in samplers:
            raise UsageError(f"{flag} is for --sampler {' or '.join(samplers)}, "
                             f"not {args.sampler}")
        if name in ("rtol", "atol") and (args.method or "rk4") != "dopri5":
            raise UsageError(f"{flag} is for the adaptive --method dopri5, not "
                             f"{args.method or 'rk4 (the default)'}")
        opts[name] = value
    if args.denoise:
        opts["denoise"] = True
    return opts


def draw_samples(src: ScoreSource, sampler: str, n: int, steps: int, seed: int,
                 **opts) -> tuple[Tensor, int]:
    """``n`` samples ``(n, D)`` from the reverse process of ``src``; returns ``(x, nfe)``."""
    dim = get_density(src.density, **src.density_options).dim
    space = DenseSpace((n, dim))
    g = torch.Generator().manual_seed(seed)
    x = src.sde.prior_sample(space, generator=g)
    with torch.no_grad():
        res = sample(sampler, src.fn, src.sde, space, x, steps, generator=g, **opts)
    return res.x, res.nfe


def _cmd_sample(args: argparse.Namespace) -> int:
    out = _out_path(args.output, ".npy")
    src = _load_score(args.score, args.density, args.sde, args.dim)
    torch.manual_seed(args.seed)
    try:
        with out_of_memory("lower -n: the samples are drawn in one batch"):
            x, nfe = draw_samples(src, args.sampler, args.n, args.steps, args.seed,
                                  **_sampler_options(args))
    except FloatingPointError as err:
        raise UsageError(f"{err}; try more --steps or another --sampler") from None
    arr = x.double().numpy()
    if not np.isfinite(arr).all():
        raise UsageError("sampling produced non-finite values; try more --steps or another "
                         "--sampler")
    _write(out, lambda fh: np.save(fh, arr))
    print(f"wrote {arr.shape[0]} samples of {src.density} ({args.sampler}, {src.sde.name}, "
          f"{nfe} score evaluations) to {out}")
    return 0


# -- toy likelihood ------------------------------------------------------------------------
def _cmd_likelihood(args: argparse.Namespace) -> int:
    from ..likelihood import log_likelihood

    if args.method != "dopri5" and args.steps is None:
        raise UsageError(f"--method {args.method} is fixed-step and needs --steps")
    if args.method == "dopri5" and args.steps is not None:
        raise UsageError("--steps is for a fixed-step --method (rk4, midpoint, euler), not "
                         "dopri5, whose steps follow --rtol/--atol")
    tolerances = {k: v for k, v in (("rtol", args.rtol), ("atol", args.atol)) if v is not None}
    if args.method != "dopri5" and tolerances:
        raise UsageError(f"--{next(iter(tolerances))} is for the adaptive --method dopri5, "
                         f"not {args.method}")
    out = _out_path(args.output, ".npz")
    src = _load_score(args.score, args.density, args.sde, args.dim)
    dens = get_density(src.density, **src.density_options)
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    dtype = torch.float64 if src.exact else torch.float32
    if src.exact:
        score_fn = exact_score_fn(dens, src.sde)
    else:  # the divergence needs the graph of the learned score
        model = src.model
        score_fn = lambda y, t: model(y, t, DenseSpace(y.shape))  # noqa: E731
    try:
        with out_of_memory("lower -n: the samples are scored in one batch"):
            x = dens.sample(args.n, generator=g, dtype=dtype)
            res = log_likelihood(score_fn, src.sde, DenseSpace(x.shape), x,
                                 divergence=args.divergence, method=args.method,
                                 steps=args.steps, disable=not args.progress, **tolerances)
    except FloatingPointError as err:
        raise UsageError(f"{err}; try a fixed-step --method with --steps") from None
    logp = res.logp.detach().double().numpy()
    if not np.isfinite(logp).all():
        raise UsageError(f"the log-likelihood of {int((~np.isfinite(logp)).sum())} of the "
                         f"{args.n} samples is not finite; try more --steps or another --method")
    arrays = {"x": x.double().numpy(), "logp": logp}
    line = (f"mean logp {logp.mean():.4f} over {args.n} samples of {src.density} "
            f"({src.sde.name}, {args.divergence} divergence, {res.nfe} evaluations)")
    if isinstance(dens, GaussianMixture):
        analytic = dens.log_prob(x.double()).numpy()
        arrays["analytic"] = analytic
        line += (f"; analytic {analytic.mean():.4f}, mean |error| "
                 f"{np.abs(logp - analytic).mean():.4f}")
    _write(out, lambda fh: np.savez(fh, **arrays))
    print(line)
    return 0


# -- toy train ---------------------------------------------------------------------------------
def time_for_noise(sde: SDE, ratio: float) -> float:
    """The time ``t`` in ``[eps, T]`` whose noise-to-signal ratio ``s(t) / m(t)`` is closest
    to ``ratio`` (the ratio grows with ``t`` for every SDE here)."""
    t = torch.linspace(sde.eps, sde.T, 2001, dtype=torch.float64)
    m, s = sde.marginal(t)
    return float(t[((s / m).log() - math.log(ratio)).abs().argmin()])


def ve_sigma_max(density: str, seed: int = 0, n: int = 2000) -> float:
    """Song & Ermon (2020), technique 1: ``sigma_max`` = the largest distance between two
    of ``n`` data samples, so the VE prior covers the data."""
    x = get_density(density).sample(n, generator=torch.Generator().manual_seed(seed))
    return float(torch.cdist(x, x).max())


def plot_run(path: Path, data: Tensor, samples: Tensor, model: ScoreModel, t: float,
             title: str) -> None:
    """Three panels: data, model samples and the learned score field at time ``t`` (quiver),
    written to ``path`` atomically (:func:`~molscore.checkpoint.write_atomic`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = float(torch.quantile(data.abs().max(1).values, 0.995)) * 1.15
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    for ax, pts, name in ((axes[0], data, "data"), (axes[1], samples, "samples")):
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.5, lw=0)
        ax.set_title(f"{name} (n={pts.shape[0]})")
    grid = torch.linspace(-lim, lim, 21)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    xy = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    tt = torch.full((xy.shape[0],), t)
    score = model(xy, tt, DenseSpace(xy.shape)).detach()
    norm = score.norm(dim=1, keepdim=True).clamp(min=1e-12)
    axes[2].quiver(xy[:, 0], xy[:, 1], score[:, 0] / norm[:, 0] * norm[:, 0].log1p(),
                   score[:, 1] / norm[:, 0] * norm[:, 0].log1p(), norm[:, 0].log(), cmap="viridis")
    axes[2].scatter(data[:1000, 0], data[:1000, 1], s=2, c="tab:red", alpha=0.3, lw=0)
    axes[2].set_title(f"learned score at t={t:g} (length log(1+|s|))")
    for ax in axes:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
    fig.suptitle(title)
    fig.tight_layout()
    try:
        write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=90))
    finally:
        plt.close(fig)


def _cmd_train(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o must be a directory, {out} is a file")
    sde_kw = {}
    if args.sde == "ve":
        sde_kw["sigma_max"] = args.sigma_max or ve_sigma_max(args.density, args.seed)
    elif args.sigma_max is not None:
        raise UsageError(f"--sigma-max is for --sde ve, not {args.sde}")
    try:
        sde = make_sde(args.sde, **sde_kw)
    except ValueError as err:  # --sigma-max at or below the VE sigma_min
        raise UsageError(f"--sigma-max {args.sigma_max:g}: {err}") from None
    net = {"hidden": args.hidden, "depth": args.depth}
    meta = make_meta(args.density, sde.config(), energy=args.energy, net=net, seed=args.seed)
    if meta["dim"] > 2:
        raise UsageError("toy train plots 2-D densities; use the benchmark for gmmnd")
    opts = {"weighting": args.weighting}
    if args.n_proj is not None:
        if args.objective not in ("ssm", "ssm-vr"):
            raise UsageError(f"--n-proj is for --objective ssm or ssm-vr, not {args.objective}")
        opts["n_proj"] = args.n_proj
    try:  # before training, so that an unusable -o does not cost the run
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError.cannot_write(err, out) from None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLPs: one thread is fastest and reproducible
    try:
        with out_of_memory("lower --batch-size or --plot-samples"):
            _train_and_report(args, meta, opts, out)
    except OSError as err:  # checkpoint.pt or toy.png (a full disk)
        raise UsageError.cannot_write(err, out) from None
    finally:
        torch.set_num_threads(threads)
    return 0


def _train_and_report(args: argparse.Namespace, meta: dict, opts: dict, out: Path) -> None:
    try:
        model, losses = train_toy(meta, objective=args.objective, steps=args.steps,
                                  batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                  objective_options=opts, progress=not args.quiet)
    except FloatingPointError as err:
        raise UsageError(f"training diverged: {err}") from None
    state = model.state_dict()
    ckpt = {"format": CHECKPOINT_FORMAT, "step": args.steps, "meta": meta, "state_dict": state,
            "model": state, "objective": args.objective, "losses": torch.tensor(losses)}
    save_atomic(ckpt, out / "checkpoint.pt")
    src = ScoreSource(lambda x, t: model(x, t, DenseSpace(x.shape)).detach(), model.sde,
                      meta["density"], meta["density_options"], model)
    samples, nfe = draw_samples(src, args.plot_sampler, args.plot_samples, args.plot_steps,
                                args.seed)
    data = get_density(args.density).sample(args.plot_samples,
                                            generator=torch.Generator().manual_seed(args.seed))
    kind = "energy" if args.energy else "score"
    final = float(np.mean(losses[-100:]))
    plot_run(out / "toy.png", data, samples, model, time_for_noise(model.sde, args.plot_noise),
             f"{args.density}: {kind} MLP, {args.objective}, {args.sde} SDE, {args.steps} steps "
             f"(final loss {final:.3g}); samples: {args.plot_sampler}, {nfe} evaluations")
    print(f"wrote {out / 'checkpoint.pt'} and {out / 'toy.png'} (final loss {final:.4g})")


# -- parsers ------------------------------------------------------------------------------
def _add_score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--density", choices=DENSITIES, default=None,
                   help="toy density (default gmm8 for --score exact; a checkpoint's own)")
    p.add_argument("--dim", type=positive_int, default=None,
                   help="dimension of gmmnd (default 16 for --score exact; a checkpoint's own)")
    p.add_argument("--score", default="exact",
                   help="'exact' (analytic score of a mixture) or a toy checkpoint path "
                        "(default %(default)s)")
    p.add_argument("--sde", choices=tuple(SDE_NAMES), default=None,
                   help="forward SDE (default ve for --score exact; a checkpoint's own)")
    p.add_argument("-n", type=positive_int, default=1000, help="number of samples (default %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default %(default)s)")


def _add_tolerance_args(p: argparse.ArgumentParser) -> None:
    """``--rtol`` / ``--atol`` of the adaptive ODE solver (``toy sample``, ``toy likelihood``)."""
    p.add_argument("--rtol", type=positive_float, default=None,
                   help="relative tolerance of --method dopri5 (default 1e-5)")
    p.add_argument("--atol", type=positive_float, default=None,
                   help="absolute tolerance of --method dopri5 (default 1e-5)")


def register(subparsers: argparse._SubParsersAction) -> None:
    toy = subparsers.add_parser("toy", help="sample, likelihoods and training on toy 2-D/N-D "
                                "densities", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = toy.add_subparsers(dest="toy_command", metavar="SUBCOMMAND", required=True,
                             parser_class=type(toy))

    p = sub.add_parser("sample", help="draw samples with any sampler, exact or learned score")
    _add_score_args(p)
    p.add_argument("--sampler", choices=tuple(SAMPLERS), default="pc", help="default %(default)s")
    p.add_argument("--steps", type=positive_int, default=500, help="time steps (noise levels; default %(default)s)")
    p.add_argument("--predictor", choices=("em", "reverse", "ancestral"), default=None,
                   help="predictor of --sampler pc (default reverse)")
    p.add_argument("--snr", type=positive_float, default=None,
                   help="Langevin signal-to-noise of --sampler pc or ald (default 0.16)")
    p.add_argument("--n-corrector", type=positive_int, default=None,
                   help="Langevin steps per noise level (default: 1 for pc, 10 for ald)")
    p.add_argument("--method", choices=ODE_METHODS, default=None,
                   help="ODE solver of --sampler ode (default rk4)")
    _add_tolerance_args(p)
    p.add_argument("--denoise", action="store_true", help="final Tweedie denoising step")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar (default: yes)")
    p.add_argument("-o", "--output", required=True, help="output .npy, an (n, D) array")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("likelihood", help="log-density of data through the probability-flow ODE")
    _add_score_args(p)
    p.add_argument("--divergence", choices=("exact", "hutchinson"), default="exact",
                   help="divergence of the score: exact (autograd) or Hutchinson's estimate "
                        "(default %(default)s)")
    p.add_argument("--method", choices=LIKELIHOOD_METHODS, default="dopri5",
                   help="ODE solver: adaptive dopri5 (--rtol/--atol) or fixed-step (--steps); "
                        "default %(default)s")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="number of steps of a fixed-step --method")
    _add_tolerance_args(p)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar of the score evaluations (default: yes)")
    p.add_argument("-o", "--output", required=True, help="output .npz with arrays x and logp")
    p.set_defaults(func=_cmd_likelihood)

    p = sub.add_parser("train", help="train an MLP score (or energy) model, write checkpoint "
                       "and figure")
    p.add_argument("--density", choices=DENSITIES, default="checkerboard", help="default %(default)s")
    p.add_argument("--objective", choices=tuple(OBJECTIVES), default="dsm", help="default %(default)s")
    p.add_argument("--weighting", choices=WEIGHTINGS, default="sigma2", help="default %(default)s")
    p.add_argument("--n-proj", type=positive_int, default=None,
                   help="projections of --objective ssm or ssm-vr (default 1)")
    p.add_argument("--sde", choices=tuple(SDE_NAMES), default="ve", help="default %(default)s")
    p.add_argument("--sigma-max", type=positive_float, default=None,
                   help="VE sigma_max (default: largest distance between data points)")
    p.add_argument("--steps", type=positive_int, default=4000, help="optimiser steps (default %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="default %(default)s")
    p.add_argument("--lr", type=positive_float, default=2e-3, help="learning rate (default %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default %(default)s)")
    p.add_argument("--energy", action="store_true", help="MLP energy model (score = -grad E)")
    p.add_argument("--hidden", type=positive_int, default=128, help="MLP width (default %(default)s)")
    p.add_argument("--depth", type=positive_int, default=3, help="MLP hidden layers (default %(default)s)")
    p.add_argument("--plot-samples", type=positive_int, default=2000,
                   help="samples in the figure (default %(default)s)")
    p.add_argument("--plot-sampler", choices=tuple(SAMPLERS), default="ode",
                   help="sampler of the figure's sample panel (default %(default)s)")
    p.add_argument("--plot-steps", type=positive_int, default=100,
                   help="steps of --plot-sampler (default %(default)s)")
    p.add_argument("--plot-noise", type=positive_float, default=0.2,
                   help="noise-to-signal ratio s(t)/m(t) at which the score field is plotted "
                        "(default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.set_defaults(func=_cmd_train)
