"""Which hydrogens does ETKDG need? Pools embedded with fewer hydrogens, without the network.

Writes ``benchmarks/pool_hydrogens/pools.{json,md}``.

Most of ``molscore generate``'s CPU time at ``-n 10`` is the ETKDG pool (50 embeddings per
molecule), and ETKDG's cost grows faster than the atom count; about half of a drug-like
molecule's atoms are hydrogens. Per molecule of the conformer benchmark's fixed crystal
subset (``--limit`` first molecules), a pool of 50 ETKDGv3 conformers
(``randomSeed = etkdg_random_seed(0)``) is embedded with

* ``all``: every hydrogen (plain ETKDGv3; ``generate --pool-hydrogens all``, the default);
* ``stereo``: the hydrogens of tetrahedral stereocentres only
  (``generate --pool-hydrogens stereo``, :func:`molscore.chem.embedding.embed_conformers`);
* ``sp3``: also those of sp3 atoms other than methyl carbons (no aromatic, sp2 or methyl H);
* ``non-aromatic``: all but the hydrogens of aromatic atoms;
* ``polar``: those of stereocentres and of atoms other than carbon (N-H, O-H, S-H);

and the others placed afterwards (``AddHs(addCoords=True)``). Reported per variant: ETKDG's
seconds, the median over molecules of the minimum heavy-atom RMSD to the crystal conformer of
the first N = 1 / 10 max-min picks (from the pool's medoid, as the generator picks its starts)
and of the whole pool, each paired against ``all`` with its 95 % bootstrap interval.

    python scripts/bench_pool_hydrogens.py --limit 150
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from script_signals import signals_end_quietly

REPO = Path(__file__).resolve().parents[1]

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import numpy as np
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    from bench_conformers import (CRYSTAL, map_molecules, paired_bootstrap, prepare_inputs, provenance,
                                  run_script, save_report, with_diff)
    from bench_pool_variants import pool_row
    from molscore.chem.embedding import embedding_skeleton
    from molscore.chem.metrics import read_groups
    from molscore.chem.stereo import specified_centres
    from molscore.generate import GenerateOptions, etkdg_random_seed

BASE = "all"


def _sp3(atom: Chem.Atom) -> bool:
    return (atom.GetHybridization() == Chem.HybridizationType.SP3 and not atom.GetIsAromatic()
            and not (atom.GetAtomicNum() == 6 and atom.GetDegree() == 1))


KEEP = {"sp3": _sp3, "non-aromatic": lambda atom: not atom.GetIsAromatic(),
        "polar": lambda atom: atom.GetAtomicNum() != 6}
"""The extra variants: which heavy atoms keep their hydrogens (besides stereocentres')."""
VARIANTS = (BASE, "stereo", *KEEP)
COLUMNS = ("1", "10", "all", "seconds")


def embedded(mol: Chem.Mol, variant: str) -> Chem.Mol:
    """The molecule ETKDG embeds for ``variant`` (``mol`` has every hydrogen explicit)."""
    if variant == BASE:
        return Chem.Mol(mol)
    if variant == "stereo":
        return embedding_skeleton(mol)
    skeleton = Chem.RemoveHs(mol)
    centres = specified_centres(skeleton)
    keep = [a.GetIdx() for a in skeleton.GetAtoms() if a.GetIdx() in centres or KEEP[variant](a)]
    return Chem.AddHs(skeleton, onlyOnAtoms=keep) if keep else skeleton


def _job(args: tuple[str, str, str, np.ndarray, int, int, tuple[str, ...]]) -> tuple[str, dict | None]:
    """Worker: one molecule's row per variant, or None when a pool is empty."""
    key, block, ref_block, ref_xyz, seed, size, variants = args
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromMolBlock(block, removeHs=False)
    Chem.AssignStereochemistryFrom3D(mol)
    mol.RemoveAllConformers()
    ref = Chem.MolFromMolBlock(ref_block, removeHs=False)
    row = {}
    for variant in variants:
        work = embedded(mol, variant)
        params = AllChem.ETKDGv3()
        params.randomSeed = seed
        params.numThreads = 1
        start = time.perf_counter()
        ids = list(AllChem.EmbedMultipleConfs(work, size, params))
        seconds = time.perf_counter() - start
        if not ids:
            return key, None
        full = Chem.AddHs(work, addCoords=True)
        coords = [full.GetConformer(i).GetPositions() for i in ids]
        row[variant] = {**pool_row(full, ref, ref_xyz, coords), "seconds": seconds,
                        "atoms": work.GetNumAtoms()}
    return key, row


def summarise(rows: dict[str, dict], variants: tuple[str, ...]) -> dict:
    """Medians and total seconds per variant, and each variant paired against ``all``."""
    by_variant = {v: {key: row[v] for key, row in rows.items()} for v in variants}
    out: dict = {}
    for v in variants:
        values = list(by_variant[v].values())
        out[v] = {**{col: float(np.median([r[col] for r in values])) for col in ("1", "10", "all")},
                  "seconds": float(sum(r["seconds"] for r in values)),
                  "atoms": int(sum(r["atoms"] for r in values))}
    out["paired"] = {v: paired_bootstrap(by_variant[v], by_variant[BASE], (v, BASE), ("1", "10", "all"))
                     for v in variants if v != BASE}
    return out


def markdown(report: dict) -> str:
    cfg, res = report["config"], report["results"]
    base_seconds = res[BASE]["seconds"]
    lines = ["# ETKDG pools with fewer hydrogens: crystal reproduction without the network", "",
             f"{res['molecules']} molecules (the first {cfg['limit']} of the fixed "
             f"{cfg['subset']}-molecule subset of `{cfg['data']}`; {res['failed']} with an empty "
             f"pool left out), pools of {cfg['pool']} ETKDGv3 conformers (randomSeed "
             f"{cfg['etkdg_seed']}), the hydrogens not embedded placed by "
             "`AddHs(addCoords=True)`, max-min picks from each pool's medoid; commit "
             f"{cfg['commit']}, {cfg['machine']}, {cfg['date']}. Median over molecules of the "
             "minimum heavy-atom RMSD to the crystal conformer (Å); in brackets the paired "
             f"difference to `{BASE}` with its 95 % bootstrap interval. ETKDG time: one thread "
             "per process, summed over molecules.", "",
             "| hydrogens embedded | atoms embedded | ETKDG time | N = 1 | N = 10 | whole pool (ceiling) |",
             "|---|---|---|---|---|---|"]
    for v in cfg["variants"]:
        paired = res["paired"].get(v, {})
        cells = [with_diff(res[v][col], paired.get(col)) for col in ("1", "10", "all")]
        lines.append(f"| {v} | {res[v]['atoms']:,} | {res[v]['seconds']:.0f} s "
                     f"({base_seconds / res[v]['seconds']:.1f}x) | " + " | ".join(cells) + " |")
    lines += ["", f"The run took {res['wall_s'] / 60:.1f} min on {cfg['workers']} processes."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subset", type=int, default=500,
                    help="the fixed random subset of bench_conformers.py (seed 0)")
    ap.add_argument("--limit", type=int, default=150, help="the first LIMIT molecules (default 150)")
    ap.add_argument("--pool", type=int, default=50, help="conformers per pool (default 50, generate -n 10's)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated, from {', '.join(VARIANTS)} (default all; {BASE} is always run)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "pool_hydrogens" / "pools",
                    help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    variants = (BASE, *(v for v in args.variants.split(",") if v != BASE))
    if unknown := set(variants) - set(VARIANTS):
        ap.error(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    seed = etkdg_random_seed(GenerateOptions().seed)
    prov = provenance()                    # the code as the run starts
    inputs = prepare_inputs(read_groups(CRYSTAL, "name"), args.subset, 0)[:args.limit]
    jobs = [(key, Chem.MolToMolBlock(mol), Chem.MolToMolBlock(group.mol), group.xyz[:1], seed, args.pool,
             variants) for key, mol, group in inputs]
    rows, failed, wall = map_molecules(_job, jobs, args.workers)
    config = {"data": CRYSTAL.name, "subset": args.subset, "limit": args.limit, "pool": args.pool,
              "variants": variants, "etkdg_seed": seed, "workers": args.workers, **prov}
    results = {"molecules": len(rows), "failed": failed, "wall_s": wall,
               **summarise(rows, variants), "per_molecule": rows}
    report = {"config": config, "results": results}
    save_report(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
