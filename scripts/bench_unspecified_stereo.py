"""How fast is the isomer chosen for a molecule given without stereo, and can ETKDG build it?

Writes ``benchmarks/unspecified_stereo.{json,md}``.

``molscore generate`` gives each unspecified stereocentre and double bond one assignment
(:func:`molscore.chem.stereo.assign_unspecified_stereo`) before it embeds the ETKDG pool.
Per molecule of the GEOM-DRUGS and GEOM-QM9 test lists (``../shared/data/benchmarks``, their
SMILES with ``@``, ``/`` and ``\\`` removed; the first ``--limit`` of each in a seeded random
order that still have unspecified stereo after parsing), two rules choose the isomer with
the generator's seed (0):

* ``enumeration``: the rule until 2026-12-05 (before its fall-back for cages),
  :func:`~molscore.chem.stereo.enumerated_isomer`: RDKit's
  ``EnumerateStereoisomers(onlyUnassigned=True, tryEmbedding=True, maxIsomers=1)`` in seeded
  random order (``rand = seed + 1``), the first isomer of which one ETKDG embedding succeeds;
  each impossible isomer tried first costs a failed embedding;
* ``embedding first``: the rule until 2026-12-08, ``assign_unspecified_stereo(window=None)``:
  the isomer of one ETKDGv3 embedding without the unspecified stereo, when ETKDG embeds it
  again with it; else the rule above;
* ``energy window``: ``assign_unspecified_stereo``: as ``embedding first``, but the isomer of
  the first of five such embeddings whose force-field minimum lies within
  :data:`~molscore.chem.stereo.ISOMER_ENERGY_WINDOW` of the lowest (where an unspecified
  element lies in a ring).

Reported per set and rule: the seconds to choose (median, mean, 90th percentile, largest;
one process per CPU core, each timing one molecule at a time), the fraction of molecules for
which the rule returns an isomer (``assigned``; an element RDKit flags as potential stereo
may stay open where the choice of the others makes it no stereocentre, as a ring carbon
between two equal ring arcs), and whether ETKDG builds the chosen isomer: the fraction of
molecules for which
:func:`~molscore.chem.embedding.embed_conformers` (``randomSeed = etkdg_random_seed(0)``,
as ``generate``'s pool) returns at least one of ``--pool`` conformers, and the seconds it
takes (mean over the molecules for which every rule's isomer is built, one set for all
rules), to set the choice against the pool's cost; and how often ``enumeration`` and
``embedding first``, and ``embedding first`` and ``energy window``, choose the same isomer,
of the molecules both assign one.

    python scripts/bench_unspecified_stereo.py --limit 200
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from pathlib import Path

from script_signals import signals_end_quietly

REPO = Path(__file__).resolve().parents[1]

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import numpy as np
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    from bench_conformers import map_molecules, provenance, run_script, save_report
    from molscore.chem.embedding import embed_conformers
    from molscore.chem.featurize import MoleculeError, prepare_mol
    from molscore.chem.stereo import assign_unspecified_stereo, enumerated_isomer, unspecified_stereo
    from molscore.generate import GenerateOptions, etkdg_random_seed

DATA = REPO.parent / "shared" / "data" / "benchmarks"
SETS = {"GEOM-DRUGS": DATA / "geom_drugs_test_smiles.csv", "GEOM-QM9": DATA / "geom_qm9_test_smiles.csv"}
RULES = ("enumeration", "embedding first", "energy window")
COMPARED = ((RULES[0], RULES[1]), (RULES[1], RULES[2]))   # pairs whose isomers are compared


def has_unspecified_stereo(mol: Chem.Mol) -> bool:
    return bool(unspecified_stereo(mol))


def inputs(limit: int, seed: int) -> list[tuple[str, str, str]]:
    """``(set, name, SMILES without stereo)``: per set the first ``limit`` molecules, in seeded
    random order, that parse and have unspecified stereo."""
    out = []
    for name, path in SETS.items():
        with open(path, newline="") as handle:
            rows = [row.get("corrected_smiles") or row["smiles"] for row in csv.DictReader(handle)]
        taken = 0
        for i in np.random.default_rng(seed).permutation(len(rows)):
            if taken == limit:
                break
            smiles = re.sub(r"[@/\\]", "", rows[i])
            try:
                mol = prepare_mol(smiles, add_hs=True, max_heavy_atoms=100)
            except MoleculeError:
                continue
            if has_unspecified_stereo(mol):
                out.append((name, f"{name}:{i}", smiles))
                taken += 1
    return out


def _job(item: tuple[str, str, str, int, int]) -> tuple[str, dict | None]:
    set_name, key, smiles, seed, pool = item
    RDLogger.DisableLog("rdApp.*")
    mol = prepare_mol(smiles, add_hs=True, max_heavy_atoms=100)
    row: dict = {"set": set_name, "smiles": smiles}
    for rule, choose in zip(RULES, (lambda m: enumerated_isomer(m, seed),
                                    lambda m: assign_unspecified_stereo(m, seed, window=None),
                                    lambda m: assign_unspecified_stereo(m, seed))):
        work = Chem.Mol(mol)
        t0 = time.perf_counter()
        isomer = choose(work)
        row[rule] = {"choose_s": time.perf_counter() - t0}
        assigned = isomer is not None and isomer is not work     # the molecule itself: unassigned
        row[rule]["assigned"] = assigned
        row[rule]["isomer"] = Chem.MolToSmiles(Chem.RemoveHs(isomer)) if assigned else None
        params = AllChem.ETKDGv3()
        params.randomSeed = etkdg_random_seed(seed)
        t0 = time.perf_counter()
        built = embed_conformers(isomer, pool, params).GetNumConformers() if assigned else 0
        row[rule].update(pool_s=time.perf_counter() - t0, conformers=built)
    return key, row


def summarise(rows: dict[str, dict]) -> dict:
    out: dict = {}
    for set_name in SETS:
        sub = [row for row in rows.values() if row["set"] == set_name]
        if not sub:
            continue
        per: dict = {"molecules": len(sub)}
        # pools of the molecules every rule builds, so that the rules' means are over one set
        built_by_both = [row for row in sub if all(row[rule]["conformers"] for rule in RULES)]
        for rule in RULES:
            t = np.array([row[rule]["choose_s"] for row in sub])
            pool = np.array([row[rule]["pool_s"] for row in built_by_both])
            per[rule] = {"choose_median_s": float(np.median(t)), "choose_mean_s": float(t.mean()),
                         "choose_p90_s": float(np.quantile(t, 0.9)), "choose_max_s": float(t.max()),
                         "choose_total_s": float(t.sum()),
                         "assigned": float(np.mean([row[rule]["assigned"] for row in sub])),
                         "built": float(np.mean([row[rule]["conformers"] > 0 for row in sub])),
                         "pool_mean_s": float(pool.mean()) if pool.size else None}
        per["pool_molecules"] = len(built_by_both)
        # of the molecules both rules assign: two unassigned molecules are not one isomer
        per["same_isomer"] = {}
        for first, second in COMPARED:
            both = [row for row in sub if row[first]["assigned"] and row[second]["assigned"]]
            per["same_isomer"][f"{first} / {second}"] = {
                "fraction": float(np.mean([row[first]["isomer"] == row[second]["isomer"] for row in both]))
                if both else None, "of": len(both)}
        out[set_name] = per
    return out


def markdown(report: dict) -> str:
    cfg, res = report["config"], report["results"]
    lines = ["# Choosing the isomer of a molecule given without stereo", "",
             f"GEOM-DRUGS and GEOM-QM9 test SMILES with their stereo removed (the first {cfg['limit']} "
             f"of each, seed {cfg['subset_seed']}, with unspecified stereo), isomer chosen with seed "
             f"{cfg['seed']}; ETKDG pool of {cfg['pool']} (`embed_conformers`, as `generate`'s); "
             f"{cfg['workers']} processes; commit {cfg['commit']}, {cfg['machine']}, {cfg['date']} "
             "(`scripts/bench_unspecified_stereo.py`).", "",
             "| set | molecules | rule | choice: median / mean / p90 / largest (s) | assigned | "
             "ETKDG builds it | pool (s, mean over the molecules every rule builds) |",
             "|---|---|---|---|---|---|---|"]
    for set_name, per in res["sets"].items():
        for rule in RULES:
            r = per[rule]
            pool = f"{r['pool_mean_s']:.2f}" if r["pool_mean_s"] is not None else "-"
            lines.append(f"| {set_name} | {per['molecules']} | {rule} | {r['choose_median_s']:.3f} / "
                         f"{r['choose_mean_s']:.3f} / {r['choose_p90_s']:.3f} / {r['choose_max_s']:.2f} | "
                         f"{r['assigned']:.3f} | {r['built']:.3f} | {pool} |")
    lines.append("")
    for first, second in COMPARED:
        pair = f"{first} / {second}"
        lines.append(f"Same isomer chosen by {pair}, of the molecules both assign one: " + "; ".join(
            f"{name} {same['fraction']:.3f} of {same['of']}" if (same := per["same_isomer"][pair])["fraction"]
            is not None else f"{name} none" for name, per in res["sets"].items()) + ".")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=200, help="molecules per set (default 200)")
    ap.add_argument("--subset-seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=50, help="ETKDG pool (default 50, generate's at -n 10)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "unspecified_stereo")
    args = ap.parse_args()
    RDLogger.DisableLog("rdApp.*")
    prov = provenance()
    seed = GenerateOptions().seed
    jobs = [(set_name, key, smiles, seed, args.pool) for set_name, key, smiles in inputs(args.limit, args.subset_seed)]
    rows, failed, wall = map_molecules(_job, jobs, args.workers)
    config = {"sets": {k: str(v.relative_to(REPO.parent)) for k, v in SETS.items()}, "limit": args.limit,
              "subset_seed": args.subset_seed, "seed": seed, "pool": args.pool, "workers": args.workers, **prov}
    report = {"config": config, "results": {"failed": failed, "wall_s": wall, "sets": summarise(rows),
                                            "per_molecule": rows}}
    save_report(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
