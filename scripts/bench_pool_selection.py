"""How far can picking starts from an ETKDG pool go? Crystal reproduction and coverage of pool picks.

Writes ``benchmarks/pool_selection.{json,md}`` (``--set crystal``, the default) or
``benchmarks/pool_selection_<set>.{json,md}`` (``--set coverage_hexane`` or
``coverage_geom_drugs``).

``molscore generate`` (``--init etkdg``, the default) embeds a pool of ``--pool`` ETKDGv3
conformers per molecule and starts from ``n`` of them picked by ``--pick`` (max-min by default,
or greedy k-medoids; :mod:`molscore.chem.selection`). The score model then moves each start by
about its noise level (sigma 0.15 Å at the default ``t = 0.3``), so which pool conformers are
picked decides most of the figures of ``benchmarks/conformers.md``. This script measures the
picking alone, without the network, on the same molecules as ``scripts/bench_conformers.py``
and with the generator's pool (ETKDGv3, ``randomSeed = etkdg_random_seed(0)``, the default
generator seed; ``max(pool, n)`` conformers for ``n`` requested; a molecule that ETKDG cannot
embed is left out, where the generator would retry from random coordinates). Per molecule, for
the crystal set (the fixed subset of ``bioactive_dev.sdf.gz``) the minimum heavy-atom RMSD to
the crystal conformer of the first N = 1 / 10 / 50 conformers of each order, and for a coverage
set COV-R / AMR-R / COV-P / AMR-P at 0.75 Å of the first 2K conformers of each order (K
references; with ``pool <= 2K`` the generator picks nothing and every order is ``first``):

* ``first``: ETKDG's own order (what ``--pool 1`` starts from, and the ETKDG baseline of
  ``bench_conformers.py``);
* ``k-medoids``: greedy k-medoids picks (``--pick k-medoids``,
  :func:`~molscore.chem.selection.representative_order`);
* ``max-min``: farthest-point picking from the pool's medoid, the generator's default
  (:func:`~molscore.chem.selection.max_min_order`);

* ``max-min, pool P`` for each smaller pool ``P`` of ``--sub-pools``: what the generator
  picks with ``--pool P`` (RDKit's conformer ``i`` does not depend on how many are embedded,
  so a pool of ``P`` is the first ``P`` of the large one). Unlike the orders above, a run
  with ``n <= P`` picks nothing, so each N (crystal) is scored as its own run with ``n = N``:
  max-min picks of the first ``P`` conformers when ``P > N``, else the first ``N``;

and the whole pool (the minimum RMSD, or COV-R / AMR-R, of all its conformers), the
ceiling of any picking from it. Paired 95 % bootstrap intervals over molecules compare each
order with ``first`` (difference of medians for the crystal set, of means for coverage).

    python scripts/bench_pool_selection.py --subset 500
    python scripts/bench_pool_selection.py --set coverage_hexane
    python scripts/bench_pool_selection.py --limit 20 --out /tmp/pool   # a quick look
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
    from rdkit import Chem

    from bench_conformers import (COVERAGE_METRICS, CRYSTAL, ENSEMBLES, NS, _etkdg_job,
                                  _with_coords, map_molecules, paired_bootstrap, prepare_inputs, provenance, save_report,
                                  run_script, with_diff)
    from molscore.chem.metrics import (_heavy_positions, atom_matches, coverage_metrics,
                                       crystal_summary, group_rmsd, read_groups, summarise)
    from molscore.chem.selection import PICKS, SELECTION_MAX_MATCHES, max_min_order
    from molscore.generate import MAX_DEFAULT_POOL, GenerateOptions, etkdg_random_seed

ORDERS = ("first", "k-medoids", "max-min")
SUB_POOLS = (25, 50, 100)


def sub_pool_name(pool: int) -> str:
    """The order name of max-min picks from the first ``pool`` conformers."""
    return f"max-min, pool {pool}"


def report_orders(report: dict) -> tuple[str, ...]:
    """The orders of a report: :data:`ORDERS` and its smaller pools' (none in reports made
    before ``--sub-pools``)."""
    return ORDERS + tuple(sub_pool_name(p) for p in report["config"].get("sub_pools", ()))


SETS = {"crystal": (CRYSTAL, "name"),
        **{f"coverage_{k}": (path, "ensemble") for k, path in ENSEMBLES.items()}}


def _sub_pool_picks(dist: np.ndarray | None, pool: int, n: int, size: int) -> list[int]:
    """The generator's ``n`` starts at ``--pool pool`` from a larger pool of ``size``
    conformers: max-min picks of its first ``pool`` (``dist``: its ``(size, size)`` distances)
    when ``pool > n``, else its first ``n``."""
    if pool > n:
        return max_min_order(dist[:pool, :pool], n)
    return list(range(min(n, size)))


def _pool_job(args: tuple[str, str, str, np.ndarray, bool, int, tuple[int, ...], int]
              ) -> tuple[str, dict | None]:
    """Worker: one molecule's rows per order (see the module docstring) from its mol block
    (with H), its reference (mol block and heavy-atom coordinates ``(K, N_heavy, 3)``), whether
    the set is the crystal set, the pool size, the smaller pools and the ETKDG seed; None when
    ETKDG fails."""
    key, block, ref_block, ref_xyz, crystal, pool, sub_pools, seed = args
    n = max(NS) if crystal else 2 * len(ref_xyz)
    coords = _etkdg_job((block, max(pool, n), seed, False))
    if not coords:
        return key, None
    mol = _with_coords(Chem.MolFromMolBlock(block, removeHs=False), coords)
    xyz = _heavy_positions(mol)
    to_ref = group_rmsd(xyz, ref_xyz, atom_matches(mol, Chem.MolFromMolBlock(ref_block, removeHs=False)))
    first = list(range(len(coords)))
    smallest = min(NS) if crystal else n       # no picks (and no distances) for a pool <= it
    dist = (group_rmsd(xyz, xyz, atom_matches(mol, mol, SELECTION_MAX_MATCHES))
            if pool > smallest else None)
    if pool > n:
        orders = {"first": first, **{name: PICKS[name](dist, n) for name in ORDERS[1:]}}
    else:
        orders = dict.fromkeys(ORDERS, first)
    if crystal:
        row = {name: {str(k): float(to_ref[order[:k], 0].min()) for k in NS}
               for name, order in orders.items()}
        for p in sub_pools:
            row[sub_pool_name(p)] = {str(k): float(to_ref[_sub_pool_picks(dist, p, k, len(coords)), 0].min())
                                     for k in NS}
        row["all"] = float(to_ref.min())
    else:
        row = {name: coverage_metrics(to_ref[order[:n]]) for name, order in orders.items()}
        for p in sub_pools:
            row[sub_pool_name(p)] = coverage_metrics(to_ref[_sub_pool_picks(dist, p, n, len(coords))])
        row["all"] = {k: v for k, v in coverage_metrics(to_ref).items() if k.endswith("_r")}
        row["references"] = len(ref_xyz)
    row["pool_size"] = len(coords)
    return key, row


def summary_by_order(rows: dict[str, dict], crystal: bool, orders: tuple[str, ...]) -> dict:
    """Per order of ``orders`` (``first`` and the others) the summary over molecules and the
    paired comparison with ``first``."""
    by_order = {order: {key: row[order] for key, row in rows.items()} for order in orders}
    if crystal:
        out: dict = {order: crystal_summary([{n: r[str(n)] for n in NS} for r in by_order[order].values()],
                                            NS) for order in orders}
        out["all"] = crystal_summary([{1: r["all"]} for r in rows.values()], (1,))["N=1"]
        columns, statistic = tuple(str(n) for n in NS), "median"
    else:
        out = {order: {m: summarise(r[m] for r in by_order[order].values()) for m in COVERAGE_METRICS}
               for order in orders}
        out["all"] = {m: summarise(r["all"][m] for r in rows.values()) for m in ("cov_r", "amr_r")}
        columns, statistic = COVERAGE_METRICS, "mean"
    out["paired"] = {order: paired_bootstrap(by_order[order], by_order["first"], (order, "first"),
                                             columns, statistic) for order in orders[1:]}
    return out


def markdown(report: dict) -> str:
    cfg, res = report["config"], report["results"]
    crystal = cfg["set"] == "crystal"
    orders = report_orders(report)
    pool = (f"ETKDGv3 pool of {cfg['pool']} (randomSeed {cfg['etkdg_seed']}), commit {cfg['commit']}, "
            f"{cfg['machine']}, {cfg['date']}.")
    done = f"{res['molecules']} molecules"
    if crystal:
        lines = ["# Picking starts from an ETKDG pool: crystal reproduction without the network", "",
                 f"{done} of the fixed {cfg['subset']}-molecule subset of `{cfg['data']}` "
                 f"({res['failed']} not embedded), {pool} Median over molecules of the minimum "
                 "heavy-atom RMSD to the crystal conformer (Å); in brackets the paired difference "
                 "to `first` with its 95 % bootstrap interval. The `max-min, pool P` rows are "
                 "the generator's starts at `--pool P` with `n = N` (no picking when P <= N).", "",
                 "| order | " + " | ".join(f"N = {n}" for n in NS) + " | under 0.5 / 1 / 2 Å at N = 50 |",
                 "|---|" + "---|" * (len(NS) + 1)]
        for order in orders:
            paired = res["paired"].get(order, {})
            cells = [with_diff(res[order][f"N={n}"]["median"], paired.get(str(n)), "median")
                     for n in NS]
            last = res[order][f"N={max(NS)}"]
            fracs = " / ".join(f"{last[f'frac_below_{c}']:.3f}" for c in (0.5, 1.0, 2.0))
            lines.append(f"| {order} | " + " | ".join(cells) + f" | {fracs} |")
        every = res["all"]
        lines.append(f"| all {cfg['pool']} (ceiling) | {every['median']:.3f} | | | "
                     + " / ".join(f"{every[f'frac_below_{c}']:.3f}" for c in (0.5, 1.0, 2.0)) + " |")
    else:
        picked = sum(r["pool_size"] > 2 * r["references"] for r in res["per_molecule"].values())
        lines = ["# Picking starts from an ETKDG pool: ensemble coverage without the network", "",
                 f"{done} of `{cfg['data']}` ({res['failed']} not embedded), 2K conformers for K "
                 f"references, {pool} For {picked} of them the pool is larger than 2K, so the "
                 "orders differ; for the others every order is `first`. Mean over molecules at "
                 "0.75 Å; in brackets the paired difference to `first` with its 95 % bootstrap "
                 "interval. The `max-min, pool P` rows are the generator's starts at `--pool P` "
                 "(no picking when P <= 2K).", "",
                 "| order | " + " | ".join(m.upper().replace("_", "-") for m in COVERAGE_METRICS) + " |",
                 "|---|" + "---|" * len(COVERAGE_METRICS)]
        for order in orders:
            paired = res["paired"].get(order, {})
            lines.append(f"| {order} | " + " | ".join(
                with_diff(res[order][m]["mean"], paired.get(m), "mean") for m in COVERAGE_METRICS) + " |")
        every = res["all"]
        lines.append(f"| all of each pool (ceiling) | {every['cov_r']['mean']:.3f} | "
                     f"{every['amr_r']['mean']:.3f} | | |")
    lines += ["", f"Embedding and RMSD matrices took {res['wall_s'] / 60:.1f} min on "
              f"{cfg['workers']} processes."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="crystal", choices=tuple(SETS))
    ap.add_argument("--subset", type=int, default=500,
                    help="crystal set: the fixed random subset of bench_conformers.py (seed 0)")
    ap.add_argument("--limit", type=int, default=None, help="only the first LIMIT molecules")
    ap.add_argument("--pool", type=int, default=MAX_DEFAULT_POOL,
                    help=f"the pool to embed (default {MAX_DEFAULT_POOL}, generate's largest default)")
    ap.add_argument("--sub-pools", type=lambda text: tuple(int(p) for p in text.split(",") if p),
                    default=SUB_POOLS, metavar="P,P,...",
                    help="smaller pools to score max-min picks of (those under --pool; default "
                         + ",".join(map(str, SUB_POOLS)) + "; '' for none)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=None,
                    help="writes OUT.json and OUT.md (default benchmarks/pool_selection for the "
                         "crystal set, benchmarks/pool_selection_<set> for a coverage set)")
    args = ap.parse_args()
    crystal = args.set == "crystal"
    out = args.out or REPO / "benchmarks" / ("pool_selection" if crystal else
                                            f"pool_selection_{args.set.removeprefix('coverage_')}")
    seed = etkdg_random_seed(GenerateOptions().seed)
    prov = provenance()                    # the code as the run starts
    sub_pools = tuple(sorted(p for p in set(args.sub_pools) if 1 <= p < args.pool))

    path, group_by = SETS[args.set]
    inputs = prepare_inputs(read_groups(path, group_by), args.subset if crystal else None,
                            0 if crystal else None)[:args.limit]
    jobs = [(key, Chem.MolToMolBlock(mol), Chem.MolToMolBlock(group.mol),
             group.xyz[:1] if crystal else group.xyz, crystal, args.pool, sub_pools, seed)
            for key, mol, group in inputs]
    rows, failed, wall = map_molecules(_pool_job, jobs, args.workers)

    config = {"set": args.set, "data": path.name, "subset": args.subset if crystal else None,
              "limit": args.limit, "pool": args.pool, "sub_pools": sub_pools, "etkdg_seed": seed,
              "workers": args.workers, **prov}
    results = {"molecules": len(rows), "failed": failed, "wall_s": wall,
               **summary_by_order(rows, crystal, report_orders({"config": config})),
               "per_molecule": rows}
    report = {"config": config, "results": results}
    save_report(out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
