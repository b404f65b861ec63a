"""How far can picking starts from an ETKDG pool go? Crystal reproduction of pool picks.

Writes ``benchmarks/pool_selection.json`` and ``benchmarks/pool_selection.md``.

``molscore generate`` (``--init etkdg``, the default) embeds a pool of ``--pool`` ETKDGv3
conformers per molecule and starts from ``n`` of them picked by greedy k-medoids
(:mod:`molscore.chem.selection`). The score model then moves each start by about its noise
level (sigma 0.15 Å at the default ``t = 0.3``), so which pool conformers are picked decides
most of the crystal figures of ``benchmarks/conformers.md``. This script measures the picking
alone, without the network, on the same molecules (the fixed subset of
``bioactive_dev.sdf.gz`` of ``scripts/bench_conformers.py``) and with the generator's pool
(ETKDGv3, ``randomSeed = etkdg_random_seed(0)``, the default generator seed; a molecule that
ETKDG cannot embed is left out, where the generator would retry from random coordinates).
Per molecule,
the minimum heavy-atom RMSD to the crystal conformer of the first N = 1 / 10 / 50 conformers
of each order:

* ``first``: ETKDG's own order (what ``--pool 1`` starts from, and the ETKDG baseline of
  ``bench_conformers.py``);
* ``k-medoids``: the generator's picks (:func:`~molscore.chem.selection.representative_order`);
* ``max-min``: farthest-point picking from the pool's medoid, for comparison;

and the minimum over the whole pool, the ceiling of any picking from it. Paired 95 %
bootstrap intervals over molecules compare each order with ``first``.

    python scripts/bench_pool_selection.py --subset 500
    python scripts/bench_pool_selection.py --limit 20 --out /tmp/pool   # a quick look
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
from rdkit import Chem
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_conformers import (CRYSTAL, NS, _etkdg_job, _git_commit, _with_coords,  # noqa: E402
                              paired_medians, prepare_inputs)
from bench_generate_speed import _cpu_name  # noqa: E402
from molscore.chem.metrics import (_heavy_positions, atom_matches, crystal_summary,  # noqa: E402
                                   group_rmsd, read_groups)
from molscore.chem.selection import SELECTION_MAX_MATCHES, representative_order  # noqa: E402
from molscore.generate import GenerateOptions, etkdg_random_seed  # noqa: E402

ORDERS = ("first", "k-medoids", "max-min")


def max_min_order(dist: np.ndarray, n: int) -> list[int]:
    """Farthest-point order of ``min(n, P)`` items of a ``(P, P)`` distance matrix, starting
    from the medoid (the item with the least summed distance)."""
    picks = [int(np.argmin(dist.sum(axis=1)))]
    nearest = dist[picks[0]].copy()
    while len(picks) < min(n, dist.shape[0]):
        best = int(np.argmax(nearest))
        picks.append(best)
        nearest = np.minimum(nearest, dist[best])
    return picks


def _pool_job(args: tuple[str, str, str, int, int]) -> tuple[str, dict | None]:
    """Worker: the per-order minimum RMSDs of one molecule's pool (mol block with H) to its
    crystal conformer (mol block), or None when ETKDG fails."""
    key, block, ref_block, pool, seed = args
    coords = _etkdg_job((block, pool, seed))
    if not coords:
        return key, None
    mol = _with_coords(Chem.MolFromMolBlock(block, removeHs=False), coords)
    ref = Chem.MolFromMolBlock(ref_block, removeHs=False)
    xyz = _heavy_positions(mol)
    dist = group_rmsd(xyz, xyz, atom_matches(mol, mol, SELECTION_MAX_MATCHES))
    to_ref = group_rmsd(xyz, _heavy_positions(ref), atom_matches(mol, ref))[:, 0]
    k = max(NS)
    orders = {"first": list(range(len(coords))), "k-medoids": representative_order(dist, k),
              "max-min": max_min_order(dist, k)}
    row = {name: {str(n): float(to_ref[order[:n]].min()) for n in NS}
           for name, order in orders.items()}
    row["pool_size"] = len(coords)
    row["all"] = float(to_ref.min())
    return key, row


def markdown(report: dict) -> str:
    cfg, res = report["config"], report["results"]
    lines = ["# Picking starts from an ETKDG pool: crystal reproduction without the network",
             "",
             f"{res['molecules']} molecules of the fixed {cfg['subset']}-molecule subset of "
             f"`{cfg['data']}` ({res['failed']} not embedded), ETKDGv3 pool of {cfg['pool']} "
             f"(randomSeed {cfg['etkdg_seed']}), commit {cfg['commit']}, {cfg['machine']}, "
             f"{cfg['date']}. Median over molecules of the minimum heavy-atom RMSD to the "
             "crystal conformer (Å); in brackets the paired difference to `first` with its 95 % "
             "bootstrap interval.",
             "",
             "| order | " + " | ".join(f"N = {n}" for n in NS) + " | under 0.5 / 1 / 2 Å at N = 50 |",
             "|---|" + "---|" * (len(NS) + 1)]
    for order in ORDERS:
        cells = []
        for n in NS:
            cell = f"{res[order][f'N={n}']['median']:.3f}"
            if order != "first":
                p = res["paired"][order][n]
                cell += f" ({p['median_diff']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}])"
            cells.append(cell)
        last = res[order][f"N={max(NS)}"]
        fracs = " / ".join(f"{last[f'frac_below_{c}']:.3f}" for c in (0.5, 1.0, 2.0))
        lines.append(f"| {order} | " + " | ".join(cells) + f" | {fracs} |")
    every = res["all"]
    lines += [f"| all {cfg['pool']} (ceiling) | {every['median']:.3f} | | | "
              + " / ".join(f"{every[f'frac_below_{c}']:.3f}" for c in (0.5, 1.0, 2.0)) + " |",
              "",
              f"Embedding and RMSD matrices took {res['wall_s'] / 60:.1f} min on {cfg['workers']} "
              "processes."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subset", type=int, default=500,
                    help="the fixed random subset of bench_conformers.py (seed 0)")
    ap.add_argument("--limit", type=int, default=None, help="only the first LIMIT of the subset")
    ap.add_argument("--pool", type=int, default=GenerateOptions().pool)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "pool_selection",
                    help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    seed = etkdg_random_seed(GenerateOptions().seed)

    inputs = prepare_inputs(read_groups(CRYSTAL, "name"), args.subset, 0)[:args.limit]
    jobs = [(key, Chem.MolToMolBlock(mol), Chem.MolToMolBlock(group.mol), args.pool, seed)
            for key, mol, group in inputs]
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    t0 = time.perf_counter()
    with ctx.Pool(args.workers) as pool:
        done = list(tqdm(pool.imap(_pool_job, jobs, chunksize=1), total=len(jobs),
                         desc="pools", unit="mol"))
    wall = time.perf_counter() - t0
    rows = {key: row for key, row in done if row is not None}

    results: dict = {"molecules": len(rows), "failed": len(done) - len(rows), "wall_s": wall}
    for order in ORDERS:
        results[order] = crystal_summary([{n: r[order][str(n)] for n in NS} for r in rows.values()],
                                         NS)
    results["all"] = crystal_summary([{1: r["all"]} for r in rows.values()], (1,))["N=1"]
    by_order = {order: {key: row[order] for key, row in rows.items()} for order in ORDERS}
    results["paired"] = {order: paired_medians(by_order[order], by_order["first"], (order, "first"))
                         for order in ORDERS[1:]}
    results["per_molecule"] = rows
    report = {"config": {"data": CRYSTAL.name, "subset": args.subset, "limit": args.limit,
                         "pool": args.pool, "etkdg_seed": seed, "workers": args.workers,
                         "commit": _git_commit(), "date": time.strftime("%Y-%m-%d"),
                         "machine": f"{_cpu_name()}, {os.cpu_count()} CPUs"},
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    text = markdown(report)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
