"""Can a per-conformer score pick crystal-like conformers from an ETKDG pool?

Writes ``benchmarks/pool_scores.{json,md}``.

``benchmarks/pool_selection.md`` shows that the generator's max-min picks from its ETKDG pool
of 200 reach, at N = 50, most of what the whole pool can give (its minimum RMSD to the
crystal conformer), while at N = 1 and 10 the pool holds much closer conformers than the
picks. This script asks whether a score of each pool conformer finds them: per molecule of the
crystal set (the fixed subset of ``bioactive_dev.sdf.gz`` of ``scripts/bench_conformers.py``),
the generator's pool (ETKDGv3, ``randomSeed = etkdg_random_seed(0)``, ``--pool`` conformers) is
scored by (lower is better)

* ``energy``: MMFF94 energy (kcal/mol) after MMFF94 minimisation (200 iterations) of the
  conformer (UFF where MMFF94 has no parameters), the classic "low-energy conformers first";
* ``extended``: minus the heavy-atom radius of gyration (bound ligands are often extended);
* ``denoise t=T``: the score model's denoising error at time ``T`` (``--times``),
  ``|s(t) score(m(t) x + s(t) z, t) + z|^2`` per atom, averaged over ``--draws`` noise draws
  ``z`` shared by all conformers of the molecule: how far the model puts the conformer from
  its data (CCD experimental conformations), at the scale of the noise (``t = 0.3``:
  sigma 0.15 Å, the generator's ``t_start``; ``t = 0.6``: about 1 Å);

and each score gives two orders: ``<score>`` (best first) and ``<score>, then max-min``
(the best-scored conformer first, then farthest-point picking as the generator does from its
medoid). Reported per order: the median over molecules of the minimum heavy-atom RMSD to the
crystal conformer of its first N = 1 / 10 / 50 conformers, the paired difference to
``max-min`` (the generator's default) with its 95 % bootstrap interval, and per score the
median over molecules of the Spearman correlation between the score and the RMSD to the
crystal conformer (positive: lower score, closer to the crystal).

    python scripts/bench_pool_scores.py --limit 100
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from script_signals import signals_end_quietly

REPO = Path(__file__).resolve().parents[1]

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import numpy as np
    import torch
    from rdkit import Chem, RDLogger
    from torch_geometric.data import Batch as GraphBatch

    from bench_conformers import (CRYSTAL, NS, _etkdg_job, _with_coords, map_molecules, paired_bootstrap,
                                  prepare_inputs, provenance, run_script, save_report, with_diff)
    from molscore.chem.featurize import mol_to_graph
    from molscore.chem.metrics import (_heavy_positions, atom_matches, crystal_summary,
                                       group_rmsd, read_groups)
    from molscore.chem.relax import relax_conformers
    from molscore.chem.selection import SELECTION_MAX_MATCHES, max_min_order
    from molscore.generate import MAX_DEFAULT_POOL, ConformerGenerator, etkdg_random_seed
    from molscore.spaces import PointSetSpace

BASELINE = "max-min"
_GEN: ConformerGenerator | None = None


def _worker_init(model: str | None) -> None:
    global _GEN
    torch.set_num_threads(1)
    RDLogger.DisableLog("rdApp.*")
    _GEN = ConformerGenerator(model, device="cpu")


def denoising_error(gen: ConformerGenerator, mol: Chem.Mol, coords: np.ndarray, t: float,
                    draws: int, seed: int = 0, chunk: int = 50) -> np.ndarray:
    """Per conformer of ``coords`` ``(P, N, 3)`` Å (atom order of ``mol``): the mean over
    ``draws`` of ``|s score(m x + s z, t) + z|^2 / N`` with ``(m, s)`` the SDE's marginal at
    ``t`` and the same draws ``z`` (centre-of-mass free) for every conformer. ``(P,)``."""
    graph = mol_to_graph(mol, featurisation=gen.featurisation)
    if hasattr(graph, "pos"):
        del graph.pos
    n_atoms = mol.GetNumAtoms()
    one = PointSetSpace(torch.zeros(n_atoms, dtype=torch.long), 1)
    generator = torch.Generator().manual_seed(seed)
    zs = [one.noise_like(torch.zeros(n_atoms, 3), generator) for _ in range(draws)]
    x_all = torch.as_tensor(coords, dtype=torch.float32) / gen.coord_scale
    out = []
    for a in range(0, len(x_all), chunk):
        x0 = x_all[a:a + chunk]
        k = len(x0)
        batch = GraphBatch.from_data_list([graph] * k)
        space = PointSetSpace(batch.batch, k)
        x0 = space.project(x0.reshape(-1, 3))
        tt = torch.full((k,), float(t))
        m, s = (space.expand(v) for v in gen.sde.marginal(tt))
        err = torch.zeros(k)
        for z in zs:
            z = z.repeat(k, 1)
            with torch.no_grad():
                score = gen.model(m * x0 + s * z, tt, space, batch)
            err += space.norm_sq(s * score + z)
        out.append(err / draws / n_atoms)
    return torch.cat(out).numpy()


def minimised_energy(mol: Chem.Mol, iterations: int = 200) -> np.ndarray:
    """Force-field energy (kcal/mol) of each conformer of ``mol`` after minimisation, ``(P,)``:
    MMFF94, or UFF where MMFF94 has no parameters (:func:`relax_conformers`, on a copy);
    ``inf`` where neither has."""
    try:
        energies, _ = relax_conformers(Chem.Mol(mol), max_iters=iterations)
    except ValueError:
        return np.full(mol.GetNumConformers(), np.inf)
    return np.asarray(energies, dtype=np.float64)


def _ranks(v: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties at their average rank, ``(P,)``."""
    v = np.asarray(v)
    return (v[:, None] > v[None]).sum(1) + ((v[:, None] == v[None]).sum(1) - 1) / 2


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties at their average rank); NaN for a constant input."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def score_orders(scores: dict[str, np.ndarray], dist: np.ndarray, n: int) -> dict[str, list[int]]:
    """The first ``n`` of each order of the module docstring, from per-conformer scores
    ``{name: (P,)}`` (lower is better) and the pool's distances ``(P, P)``."""
    orders = {"first": list(range(min(n, len(dist)))), BASELINE: max_min_order(dist, n)}
    for name, score in scores.items():
        rank = np.argsort(score, kind="stable")
        orders[name] = [int(i) for i in rank[:n]]
        orders[f"{name}, then max-min"] = max_min_order(dist, n, start=int(rank[0]))
    return orders


def _job(args: tuple[str, str, str, np.ndarray, int, int, tuple[float, ...], int]
         ) -> tuple[str, dict | None]:
    """Worker: one molecule's row (per order the minimum RMSD at each N, per score its
    Spearman correlation with the RMSD to the crystal conformer), or None when ETKDG fails."""
    key, block, ref_block, ref_xyz, pool, seed, times, draws = args
    coords = _etkdg_job((block, pool, seed, False))
    if not coords:
        return key, None
    mol = _with_coords(Chem.MolFromMolBlock(block, removeHs=False), coords)
    xyz = _heavy_positions(mol)
    to_ref = group_rmsd(xyz, ref_xyz, atom_matches(mol, Chem.MolFromMolBlock(ref_block, removeHs=False)))[:, 0]
    dist = group_rmsd(xyz, xyz, atom_matches(mol, mol, SELECTION_MAX_MATCHES))
    centred = xyz - xyz.mean(1, keepdims=True)
    scores = {"energy": minimised_energy(mol),
              "extended": -np.sqrt((centred ** 2).sum(-1).mean(-1))}
    for t in times:
        scores[f"denoise t={t:g}"] = denoising_error(_GEN, mol, np.stack(coords), t, draws)
    orders = score_orders(scores, dist, max(NS))
    row = {name: {str(k): float(to_ref[order[:k]].min()) for k in NS} for name, order in orders.items()}
    row["all"] = float(to_ref.min())
    row["spearman"] = {name: spearman(score, to_ref) for name, score in scores.items()}
    row["pool_size"] = len(coords)
    return key, row


def summarise_rows(rows: dict[str, dict]) -> dict:
    """Per order the crystal summary and the paired comparison with :data:`BASELINE`; per
    score the median and mean Spearman correlation over molecules."""
    orders = [name for name in next(iter(rows.values())) if name not in ("all", "spearman", "pool_size")]
    by_order = {name: {key: row[name] for key, row in rows.items()} for name in orders}
    out: dict = {name: crystal_summary([{n: r[str(n)] for n in NS} for r in by_order[name].values()], NS)
                 for name in orders}
    out["all"] = crystal_summary([{1: r["all"]} for r in rows.values()], (1,))["N=1"]
    out["paired"] = {name: paired_bootstrap(by_order[name], by_order[BASELINE], (name, BASELINE))
                     for name in orders if name != BASELINE}
    scores = next(iter(rows.values()))["spearman"]
    out["spearman"] = {name: {"median": float(np.nanmedian([r["spearman"][name] for r in rows.values()])),
                              "mean": float(np.nanmean([r["spearman"][name] for r in rows.values()]))}
                       for name in scores}
    out["orders"] = orders
    return out


def markdown(report: dict) -> str:
    cfg, res = report["config"], report["results"]
    lines = ["# Picking pool conformers by a score: crystal reproduction", "",
             f"{res['molecules']} molecules (the first of the fixed {cfg['subset']}-molecule subset of "
             f"`{cfg['data']}`; {res['failed']} not embedded), ETKDGv3 pool of {cfg['pool']} "
             f"(randomSeed {cfg['etkdg_seed']}), model `{cfg['model']}`, denoising error over "
             f"{cfg['draws']} shared draws; commit {cfg['commit']}, {cfg['machine']}, {cfg['date']}. "
             "Median over molecules of the minimum heavy-atom RMSD to the crystal conformer (Å) of "
             f"each order's first N; in brackets the paired difference to `{BASELINE}` (the "
             "generator's picks) with its 95 % bootstrap interval. Scores: lower is better "
             "(`scripts/bench_pool_scores.py`).", "",
             "| order | " + " | ".join(f"N = {n}" for n in NS) + " |", "|---|" + "---|" * len(NS)]
    for name in res["orders"]:
        paired = res["paired"].get(name, {})
        cells = [with_diff(res[name][f"N={n}"]["median"], paired.get(str(n))) for n in NS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"| all {cfg['pool']} (ceiling) | {res['all']['median']:.3f} | | |")
    lines += ["", "Spearman correlation of each score with the RMSD to the crystal conformer over a "
              "molecule's pool (median / mean over molecules; 1 would rank the pool perfectly):", "",
              "| score | median | mean |", "|---|---|---|"]
    for name, v in res["spearman"].items():
        lines.append(f"| {name} | {v['median']:+.3f} | {v['mean']:+.3f} |")
    lines += ["", f"Embedding, scoring and RMSD matrices took {res['wall_s'] / 60:.1f} min on "
              f"{cfg['workers']} processes."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped weights)")
    ap.add_argument("--subset", type=int, default=500,
                    help="the fixed random subset of bench_conformers.py (seed 0)")
    ap.add_argument("--limit", type=int, default=None, help="only its first LIMIT molecules")
    ap.add_argument("--pool", type=int, default=MAX_DEFAULT_POOL)
    ap.add_argument("--times", type=lambda text: tuple(float(t) for t in text.split(",")),
                    default=(0.3, 0.6), metavar="T,T,...", help="denoising-error times (default 0.3,0.6)")
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "pool_scores")
    args = ap.parse_args()
    seed = etkdg_random_seed(0)
    prov = provenance()                    # the code as the run starts
    inputs = prepare_inputs(read_groups(CRYSTAL, "name"), args.subset, 0)[:args.limit]
    jobs = [(key, Chem.MolToMolBlock(mol), Chem.MolToMolBlock(group.mol), group.xyz[:1], args.pool,
             seed, args.times, args.draws) for key, mol, group in inputs]
    rows, failed, wall = map_molecules(_job, jobs, args.workers, spawn=True, initializer=_worker_init,
                                       initargs=(args.model,))
    model = Path(args.model) if args.model else REPO / "molscore" / "weights" / "conformer.pt"
    config = {"data": CRYSTAL.name, "subset": args.subset, "limit": args.limit, "pool": args.pool,
              "times": args.times, "draws": args.draws, "etkdg_seed": seed, "workers": args.workers,
              "model": str(model.resolve().relative_to(REPO) if model.resolve().is_relative_to(REPO) else model),
              **prov}
    results = {"molecules": len(rows), "failed": failed, "wall_s": wall,
               **summarise_rows(rows), "per_molecule": rows}
    report = {"config": config, "results": results}
    save_report(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
