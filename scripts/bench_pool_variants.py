"""Would a larger or more varied ETKDG pool bring crystal poses closer? Pools without the network.

Writes ``benchmarks/pool_variants.{json,md}``.

At ``-n 50`` the generator's max-min picks from its pool of 200 ETKDGv3 conformers come
within about 0.06 Å of the best conformer of that pool (``benchmarks/pool_scores.md``), so
crystal reproduction at N = 50 is bounded by what the pool holds. This script asks whether a
pool made otherwise holds closer conformers, and whether max-min picks then reach them. Per
molecule of the conformer benchmark's fixed crystal subset (``--limit`` first molecules), for
each pool:

* ``ETKDGv3 200``: the generator's pool at ``-n 50`` (``randomSeed = etkdg_random_seed(0)``);
* ``ETKDGv3 400``: twice as many embeddings (its first 200 are the pool above);
* ``ETKDGv3 100 + KDG 100``: the first 100 of the pool above and 100 embedded without
  ETKDG's experimental torsion preferences (``useExpTorsionAnglePrefs = False``, the next seed),
  for torsions that the CSD-derived preferences make rare;
* ``ETKDGv3 random coords 200``: 200 embedded from random starting coordinates
  (``useRandomCoords = True``) instead of the eigenvector embedding of the distance bounds;

the minimum heavy-atom RMSD to the crystal conformer of the first N = 1 / 10 / 50 max-min picks
(from the pool's medoid, as ``molscore generate --pick max-min``) and of the whole pool (its
ceiling). Medians over molecules, paired 95 % bootstrap intervals against ``ETKDGv3 200``.

    python scripts/bench_pool_variants.py --limit 60
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
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    from bench_conformers import (CRYSTAL, NS, _with_coords, map_molecules, paired_bootstrap,
                                  prepare_inputs, provenance, run_script, save_report, with_diff)
    from molscore.chem.metrics import (_heavy_positions, atom_matches, crystal_summary,
                                       group_rmsd, read_groups)
    from molscore.chem.selection import SELECTION_MAX_MATCHES, max_min_order
    from molscore.generate import GenerateOptions, etkdg_random_seed

BASE = "ETKDGv3 200"
POOLS = (BASE, "ETKDGv3 400", "ETKDGv3 100 + KDG 100", "ETKDGv3 random coords 200")
COLUMNS = tuple(str(n) for n in NS) + ("all",)


def embed(mol: Chem.Mol, n: int, seed: int, torsion_prefs: bool = True,
          random_coords: bool = False) -> list[np.ndarray]:
    """``n`` ETKDGv3 embeddings of ``mol`` (with H) as ``(N, 3)`` arrays, fewer when some fail."""
    work = Chem.Mol(mol)
    work.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    params.useExpTorsionAnglePrefs = torsion_prefs
    params.useRandomCoords = random_coords
    ids = list(AllChem.EmbedMultipleConfs(work, n, params))
    return [work.GetConformer(i).GetPositions() for i in ids]


def pools(mol: Chem.Mol, seed: int) -> dict[str, list[np.ndarray]]:
    """The pools of :data:`POOLS` for one molecule."""
    large = embed(mol, 400, seed)
    return {BASE: large[:200], "ETKDGv3 400": large,
            "ETKDGv3 100 + KDG 100": large[:100] + embed(mol, 100, seed + 1, torsion_prefs=False),
            "ETKDGv3 random coords 200": embed(mol, 200, seed, random_coords=True)}


def pool_row(mol: Chem.Mol, ref: Chem.Mol, ref_xyz: np.ndarray, coords: list[np.ndarray]) -> dict[str, float]:
    """Minimum RMSD to the reference ``(1, N_heavy, 3)`` of the first N max-min picks and of
    the whole pool (``all``)."""
    with_coords = _with_coords(mol, coords)
    xyz = _heavy_positions(with_coords)
    to_ref = group_rmsd(xyz, ref_xyz, atom_matches(with_coords, ref))[:, 0]
    dist = group_rmsd(xyz, xyz, atom_matches(with_coords, with_coords, SELECTION_MAX_MATCHES))
    order = max_min_order(dist, max(NS))
    return {**{str(n): float(to_ref[order[:n]].min()) for n in NS}, "all": float(to_ref.min())}


def _job(args: tuple[str, str, str, np.ndarray, int]) -> tuple[str, dict | None]:
    """Worker: one molecule's rows per pool, or None when a pool is empty."""
    key, block, ref_block, ref_xyz, seed = args
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromMolBlock(block, removeHs=False)
    Chem.AssignStereochemistryFrom3D(mol)
    ref = Chem.MolFromMolBlock(ref_block, removeHs=False)
    made = pools(mol, seed)
    if not all(made.values()):
        return key, None
    return key, {name: pool_row(mol, ref, ref_xyz, coords) for name, coords in made.items()}


def markdown(report: dict) -> str:
    cfg, res = report["config"], report["results"]
    lines = ["# Larger or more varied ETKDG pools: crystal reproduction without the network", "",
             f"{res['molecules']} molecules (the first {cfg['limit']} of the fixed "
             f"{cfg['subset']}-molecule subset of `{cfg['data']}`; {res['failed']} with an empty "
             f"pool left out), max-min picks from each pool's medoid, ETKDG randomSeed "
             f"{cfg['etkdg_seed']}; commit {cfg['commit']}, {cfg['machine']}, {cfg['date']}. "
             "Median over molecules of the minimum heavy-atom RMSD to the crystal conformer (Å); "
             f"in brackets the paired difference to `{BASE}` with its 95 % bootstrap interval.", "",
             "| pool | " + " | ".join(f"N = {n}" for n in NS) + " | whole pool (ceiling) |",
             "|---|" + "---|" * len(COLUMNS)]
    for name in POOLS:
        paired = res["paired"].get(name, {})
        cells = [with_diff(res[name][col], paired.get(col)) for col in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Embedding and RMSD matrices took {res['wall_s'] / 60:.1f} min on "
              f"{cfg['workers']} processes."]
    return "\n".join(lines) + "\n"


def summarise_pools(rows: dict[str, dict]) -> dict:
    """Medians per pool and column, and each pool paired against :data:`BASE`."""
    by_pool = {name: {key: row[name] for key, row in rows.items()} for name in POOLS}
    out: dict = {}
    for name in POOLS:
        summary = crystal_summary([{n: r[str(n)] for n in NS} for r in by_pool[name].values()], NS)
        out[name] = {**{str(n): summary[f"N={n}"]["median"] for n in NS},
                     "all": float(np.median([r["all"] for r in by_pool[name].values()]))}
    out["paired"] = {name: paired_bootstrap(by_pool[name], by_pool[BASE], (name, BASE), COLUMNS)
                     for name in POOLS[1:]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subset", type=int, default=500,
                    help="the fixed random subset of bench_conformers.py (seed 0)")
    ap.add_argument("--limit", type=int, default=60, help="the first LIMIT molecules (default 60)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "pool_variants",
                    help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    seed = etkdg_random_seed(GenerateOptions().seed)
    prov = provenance()                    # the code as the run starts
    inputs = prepare_inputs(read_groups(CRYSTAL, "name"), args.subset, 0)[:args.limit]
    jobs = [(key, Chem.MolToMolBlock(mol), Chem.MolToMolBlock(group.mol), group.xyz[:1], seed)
            for key, mol, group in inputs]
    rows, failed, wall = map_molecules(_job, jobs, args.workers)
    config = {"data": CRYSTAL.name, "subset": args.subset, "limit": args.limit, "pools": POOLS,
              "etkdg_seed": seed, "workers": args.workers, **prov}
    results = {"molecules": len(rows), "failed": failed, "wall_s": wall,
               **summarise_pools(rows), "per_molecule": rows}
    report = {"config": config, "results": results}
    save_report(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
