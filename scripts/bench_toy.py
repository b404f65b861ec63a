"""Benchmark the shared SDE engine on toy densities; writes benchmarks/toy.json and toy.md.

Three parts (all on CPU, one thread):

1. Samplers with the exact score of ``gmm8``: for every SDE (ve, vp, subvp) and sampler (em,
   reverse, ancestral, pc, ald, ode), sample error against the truth vs the number of
   score evaluations (NFE): unbiased MMD^2 to fresh true samples, the relative error of the
   within-mode variance and the total-variation error of the 8 mode weights. Likelihoods through the probability-flow
   ODE (exact divergence) against the analytic log-density vs NFE: fixed-step RK4 and
   adaptive dopri5 at several tolerances.
2. Objectives (dsm, ssm, ssm-vr, exact) vs dimension (2, 8, 32, 64) of a Gaussian mixture
   (``gmmnd``, VP SDE, same steps for all): Fisher divergence of the trained MLP to the
   exact noised score and seconds per training step.
3. Jacobian asymmetry ``||J - J^T||_F / ||J||_F`` of a DSM-trained unconstrained MLP vs an
   MLP energy model on ``gmm8``.

    python scripts/bench_toy.py            # full (~5-10 min on 2 idle CPU cores)
    python scripts/bench_toy.py --quick    # smaller sizes (~1-2 min)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from script_signals import signals_end_quietly

ROOT = Path(__file__).resolve().parents[1]

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import torch
    from bench_conformers import provenance, run_script
    from torch import Tensor

    from molscore.data.toy import GaussianMixture, exact_score_fn, get_density
    from molscore.data.toy_task import make_meta, train_toy
    from molscore.likelihood import log_likelihood
    from molscore.models.param import ScoreModel
    from molscore.objectives import OBJECTIVES
    from molscore.samplers import SAMPLERS, sample
    from molscore.sde import SDE_NAMES, make_sde
    from molscore.spaces import DenseSpace


# -- metrics ----------------------------------------------------------------------------------
def mmd2(a: Tensor, b: Tensor, bandwidths: tuple[float, ...] = (0.5, 2.0)) -> float:
    """Unbiased squared MMD between samples ``(n, D)`` and ``(m, D)`` with a sum of RBF
    kernels (expectation 0 when both come from the same density)."""
    a, b = a.double(), b.double()

    def k(x: Tensor, y: Tensor) -> Tensor:
        d2 = torch.cdist(x, y) ** 2
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)

    n, m = a.shape[0], b.shape[0]
    kaa, kbb = k(a, a), k(b, b)
    return float((kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
                 + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1)) - 2 * k(a, b).mean())


def mode_stats(mix: GaussianMixture, x: Tensor) -> dict:
    """Mode-weight total variation (component by posterior) and the relative error of the
    within-mode variance, ``mean ||x - mu_k||^2 / (D sigma_k^2) - 1`` (0 for exact samples,
    standard error about ``sqrt(2 / (n D))``)."""
    x = x.double()
    k = mix.responsibilities(x).argmax(1)
    w = torch.bincount(k, minlength=mix.n_components).double() / x.shape[0]
    var = ((x - mix.means[k]) ** 2).sum(1) / (mix.dim * mix.stds[k] ** 2)
    return {"mode_tv": float(0.5 * (w - mix.weights).abs().sum()),
            "var_err": float(var.mean() - 1)}


def sample_metrics(mix: GaussianMixture, x: Tensor, truth: Tensor) -> dict:
    if not bool(torch.isfinite(x).all()):
        return {"mmd2": math.inf, "mode_tv": 1.0, "var_err": math.inf}
    return {"mmd2": mmd2(x, truth), **mode_stats(mix, x)}


def steps_for(sampler: str, nfe: int) -> tuple[int, dict]:
    """Steps and options giving about ``nfe`` score evaluations."""
    if sampler == "pc":
        return max(nfe // 2, 1), {"n_corrector": 1}
    if sampler == "ald":
        return max(nfe // 2, 1), {"n_corrector": 2}
    if sampler == "ode":
        return max(nfe // 4, 1), {"method": "rk4"}
    return nfe, {}


# -- part 1 -----------------------------------------------------------------------------------
def bench_samplers(n: int, budgets: list[int]) -> dict:
    mix = get_density("gmm8")
    g = torch.Generator().manual_seed(123)
    truth, truth2 = mix.sample(n, generator=g, dtype=torch.float64), mix.sample(
        n, generator=g, dtype=torch.float64)
    out: dict = {"n": n, "floor": sample_metrics(mix, truth2, truth), "runs": []}
    for sde_name in SDE_NAMES:
        sde = make_sde(sde_name)
        score = exact_score_fn(mix, sde)
        for sampler in SAMPLERS:
            for budget in budgets:
                steps, opts = steps_for(sampler, budget)
                space = DenseSpace((n, 2))
                # common random numbers: every budget starts from the same prior draw
                gen = torch.Generator().manual_seed(0)
                x = sde.prior_sample(space, dtype=torch.float64, generator=gen)
                t0 = time.perf_counter()
                res = sample(sampler, score, sde, space, x, steps, generator=gen, **opts)
                sec = time.perf_counter() - t0
                out["runs"].append({"sde": sde_name, "sampler": sampler, "steps": steps,
                                    "nfe": res.nfe, **sample_metrics(mix, res.x, truth),
                                    "seconds": sec})
    return out


def bench_likelihood(n: int, fixed_steps: list[int], tols: list[float]) -> dict:
    mix = get_density("gmm8")
    x = mix.sample(n, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    analytic = mix.log_prob(x)
    space = DenseSpace(x.shape)
    runs = []
    for sde_name in SDE_NAMES:
        sde = make_sde(sde_name)
        score = exact_score_fn(mix, sde)
        configs = [("rk4", {"method": "rk4", "steps": s}) for s in fixed_steps]
        configs += [(f"dopri5 tol={tol:g}", {"method": "dopri5", "rtol": tol, "atol": tol})
                    for tol in tols]
        for name, kw in configs:
            res = log_likelihood(score, sde, space, x, divergence="exact", **kw)
            err = (res.logp - analytic).abs()
            runs.append({"sde": sde_name, "solver": name, "nfe": res.nfe,
                         "mean_abs_err": float(err.mean()), "max_abs_err": float(err.max())})
    return {"n": n, "analytic_mean_logp": float(analytic.mean()), "runs": runs}


# -- part 2 -----------------------------------------------------------------------------------
def fisher(model: ScoreModel, mix: GaussianMixture, n: int, seed: int = 0) -> dict:
    """sigma^2-weighted Fisher divergence per dimension, ``E_t E[s^2 ||s_theta - s*||^2] / D``
    with ``t ~ U[0.01, 1]``, and the relative error ``E||s_theta - s*||^2 / E||s*||^2``."""
    sde = model.sde
    g = torch.Generator().manual_seed(seed)
    x0 = mix.sample(n, generator=g)
    t = 0.01 + 0.99 * torch.rand(n, generator=g)
    space = DenseSpace(x0.shape)
    xt, _ = sde.marginal_sample(x0, t, space, noise=torch.randn(x0.shape, generator=g))
    exact = exact_score_fn(mix, sde)(xt.double(), t.double())
    with torch.no_grad():
        est = model(xt, t, space).double()
    _, s = sde.marginal(t.double())
    d2 = ((est - exact) ** 2).sum(1)
    return {"fisher_per_dim": float((s ** 2 * d2).mean() / mix.dim),
            "relative": float(d2.mean() / (exact ** 2).sum(1).mean())}


def bench_objectives(dims: list[int], steps: int, batch: int, n_eval: int) -> dict:
    runs = []
    for dim in dims:
        mix = get_density("gmmnd", dim=dim)
        for objective in OBJECTIVES:
            meta = make_meta("gmmnd", make_sde("vp").config(), density_options={"dim": dim},
                             net={"hidden": 128, "depth": 2})
            stamps: dict[int, float] = {}

            def clock(step: int, loss: float) -> None:
                if step in (warm - 1, steps - 1):
                    stamps[step] = time.perf_counter()

            warm = min(5, steps - 1)
            model, _ = train_toy(meta, objective=objective, steps=steps, batch_size=batch,
                                 lr=2e-3, seed=0, callback=clock)
            sec = (stamps[steps - 1] - stamps[warm - 1]) / (steps - warm)
            runs.append({"dim": dim, "objective": objective, "steps": steps,
                         "sec_per_step": sec, **fisher(model, mix, n_eval)})
            print(f"  objectives: dim {dim:3d} {objective:6s} {runs[-1]}", flush=True)
    return {"sde": "vp", "batch_size": batch, "runs": runs}


# -- part 3 -----------------------------------------------------------------------------------
def jacobian_asymmetry(model: ScoreModel, x: Tensor, t: Tensor) -> float:
    """Mean over samples of ``||J - J^T||_F / ||J||_F`` of the score field."""
    x = x.detach().requires_grad_(True)
    space = DenseSpace(x.shape)
    with torch.enable_grad():
        s = model(x, t, space)
        rows = [torch.autograd.grad(s[:, i].sum(), x, retain_graph=True)[0]
                for i in range(x.shape[1])]
    jac = torch.stack(rows, 1)                                   # (B, D, D): J[b, i, j]
    asym = (jac - jac.transpose(1, 2)).flatten(1).norm(dim=1)
    return float((asym / jac.flatten(1).norm(dim=1).clamp(min=1e-30)).mean())


def bench_jacobian(steps: int, n: int) -> dict:
    mix = get_density("gmm8")
    out = {}
    for kind, energy in (("score_mlp", False), ("energy_mlp", True)):
        meta = make_meta("gmm8", make_sde("vp").config(), energy=energy,
                         net={"hidden": 128, "depth": 3})
        model, _ = train_toy(meta, objective="dsm", steps=steps, batch_size=256, seed=0)
        g = torch.Generator().manual_seed(1)
        x0 = mix.sample(n, generator=g)
        res = {}
        for tv in (0.05, 0.2, 0.5):
            t = torch.full((n,), tv)
            xt, _ = model.sde.marginal_sample(x0, t, DenseSpace(x0.shape),
                                              noise=torch.randn(x0.shape, generator=g))
            res[f"t={tv}"] = jacobian_asymmetry(model, xt, t)
        out[kind] = {"asymmetry": res, **fisher(model, mix, 2000)}
    return {"steps": steps, "sde": "vp", **out}


# -- report -----------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    lines = [f"# Toy benchmark ({'quick' if res['quick'] else 'full'})", "",
             f"{res['machine']}; torch {res['torch']}; one thread; total {res['seconds']:.0f} s; "
             f"commit {res.get('commit') or 'not recorded'}, {res.get('date', 'date not recorded')}.",
             "", "## 1a. Samplers, exact gmm8 score", "",
             "Each cell: NFE: 1000 x MMD^2 / within-mode variance error / mode-weight TV "
             "(all 0 for exact samples).", "",
             f"n = {res['samplers']['n']}; the same metrics for a second set of true samples: "
             f"{1000 * res['samplers']['floor']['mmd2']:.2f} / "
             f"{res['samplers']['floor']['var_err']:+.3f} / "
             f"{res['samplers']['floor']['mode_tv']:.3f}.", ""]
    by: dict = {}
    for r in res["samplers"]["runs"]:
        by.setdefault((r["sde"], r["sampler"]), []).append(r)
    n_cols = max(len(v) for v in by.values())
    lines.append("| SDE | sampler | " + " | ".join(f"budget {i + 1}" for i in range(n_cols)) + " |")
    lines.append("|---|---|" + "---|" * n_cols)
    for (sde, sampler), rows in by.items():
        cells = [f"{r['nfe']}: {1000 * r['mmd2']:.2f} / {r['var_err']:+.3f} / {r['mode_tv']:.3f}"
                 for r in rows]
        lines.append(f"| {sde} | {sampler} | " + " | ".join(cells) + " |")
    lines += ["", "## 1b. Probability-flow likelihood (exact divergence) vs analytic log p", "",
              f"n = {res['likelihood']['n']} gmm8 samples; mean analytic log p "
              f"{res['likelihood']['analytic_mean_logp']:.3f}.", "",
              "| SDE | solver | NFE | mean abs err | max abs err |", "|---|---|---|---|---|"]
    for r in res["likelihood"]["runs"]:
        lines.append(f"| {r['sde']} | {r['solver']} | {r['nfe']} | {r['mean_abs_err']:.2e} | "
                     f"{r['max_abs_err']:.2e} |")
    ob = res["objectives"]
    lines += ["", "## 2. Objectives vs dimension (gmmnd, VP SDE, MLP 128x2, "
              f"{ob['runs'][0]['steps']} steps, batch {ob['batch_size']})", "",
              "Fisher = E[s(t)^2 ||s_theta - s*||^2] / D over t ~ U[0.01, 1]; rel = "
              "E||s_theta - s*||^2 / E||s*||^2.", "",
              "| D | objective | Fisher/D | rel | ms/step |", "|---|---|---|---|---|"]
    for r in ob["runs"]:
        lines.append(f"| {r['dim']} | {r['objective']} | {r['fisher_per_dim']:.4f} | "
                     f"{r['relative']:.3f} | {1000 * r['sec_per_step']:.1f} |")
    jb = res["jacobian"]
    lines += ["", f"## 3. Jacobian asymmetry ||J - J^T||/||J|| (gmm8, DSM, VP, {jb['steps']} steps)",
              "", "| model | t=0.05 | t=0.2 | t=0.5 | Fisher/D | rel |", "|---|---|---|---|---|---|"]
    for kind in ("score_mlp", "energy_mlp"):
        a = jb[kind]["asymmetry"]
        lines.append(f"| {kind} | {a['t=0.05']:.2e} | {a['t=0.2']:.2e} | {a['t=0.5']:.2e} | "
                     f"{jb[kind]['fisher_per_dim']:.4f} | {jb[kind]['relative']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (~1-2 min)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks"), help="output folder")
    args = ap.parse_args()
    torch.set_num_threads(1)
    q = args.quick
    t0 = time.perf_counter()
    res: dict = {"quick": q, "torch": torch.__version__, **provenance()}
    print("part 1a: samplers", flush=True)
    res["samplers"] = bench_samplers(n=500 if q else 1000,
                                     budgets=[10, 30, 100] if q else [10, 30, 100, 300, 1000])
    print("part 1b: likelihood", flush=True)
    res["likelihood"] = bench_likelihood(n=100 if q else 200,
                                         fixed_steps=[3, 10, 30] if q else [3, 10, 30, 100],
                                         tols=[1e-2, 1e-4] if q else [1e-2, 1e-3, 1e-4, 1e-5])
    print("part 2: objectives vs dimension", flush=True)
    res["objectives"] = bench_objectives(dims=[2, 8, 32, 64], steps=60 if q else 300,
                                         batch=128, n_eval=1000 if q else 2000)
    print("part 3: Jacobian asymmetry", flush=True)
    res["jacobian"] = bench_jacobian(steps=200 if q else 1500, n=200)
    res["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "toy.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "toy.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    sys.exit(run_script(main))
