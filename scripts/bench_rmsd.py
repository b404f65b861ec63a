"""Symmetric heavy-atom RMSD (``molscore.chem.metrics``): time, mapping counts and agreement
with RDKit's ``rdMolAlign.GetBestRMS``.

Workloads, on ETKDGv3 conformers (``randomSeed`` 1, never 0), one torch thread, each timed
as the best of ``--repeats``:

* ``pool``: the 200 x 200 RMSD matrix from which ``generate`` picks its starts
  (:func:`~molscore.chem.selection.representative_conformers`: at most
  ``SELECTION_MAX_MATCHES`` mappings) of three drug-like molecules;
* ``symmetric``: 50 conformers against one reference conformer of inositol
  hexakisphosphate, under all of its 559,872 mappings (the crystal protocol's N = 50);
* ``exact``: 4 x 3 conformers of molecules with more than 1,000 mappings, against
  ``GetBestRMS`` pair by pair (the largest difference).

``--baseline REV`` times the same workloads, in the same run, with ``metrics.py`` as it was
at git revision ``REV`` (its ``atom_matches`` and ``group_rmsd``).

    python scripts/bench_rmsd.py                      # writes benchmarks/rmsd.json and rmsd.md
    python scripts/bench_rmsd.py --baseline 1b174fd   # and the code of 1b174fd beside it
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

from script_signals import signals_end_quietly

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import numpy as np
    import torch
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdMolAlign

    from bench_conformers import REPO, provenance, run_script, save_report

    import molscore.chem.metrics as metrics
    from molscore.chem.selection import SELECTION_MAX_MATCHES

POOL = {"paracetamol": "CC(=O)Nc1ccc(O)cc1",
        "imatinib": "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",
        "tBu / CF3 amine": "CC(C)(C)c1ccc(C(F)(F)F)cc1OCCN(C)C"}
SYMMETRIC = {"inositol hexakisphosphate": "O=P(O)(O)O[C@H]1[C@H](OP(=O)(O)O)[C@@H](OP(=O)(O)O)"
                                          "[C@H](OP(=O)(O)O)[C@@H](OP(=O)(O)O)[C@H]1OP(=O)(O)O"}
EXACT = {"1,3,5-tris(CF3)benzene": "FC(F)(F)c1cc(C(F)(F)F)cc(C(F)(F)F)c1",
         "1,3,5-tri-tert-butylbenzene": "CC(C)(C)c1cc(C(C)(C)C)cc(C(C)(C)C)c1"}


def conformers(smiles: str, n: int, seed: int = 1) -> Chem.Mol:
    """``n`` ETKDGv3 conformers of ``smiles`` with hydrogens (``randomSeed`` ``seed``, not 0)."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if len(AllChem.EmbedMultipleConfs(mol, n, params)) != n:
        raise RuntimeError(f"ETKDGv3 embedded fewer than {n} conformers of {smiles}")
    return mol


def _best_time(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def metrics_at(rev: str) -> types.ModuleType:
    """``molscore/chem/metrics.py`` as it was at git revision ``rev``, as a module."""
    source = subprocess.run(["git", "show", f"{rev}:molscore/chem/metrics.py"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType(f"metrics_{rev}")
    sys.modules[module.__name__] = module          # (dataclasses look their module up)
    exec(compile(source.replace("from .io import", "from molscore.chem.io import"),
                 f"metrics.py@{rev}", "exec"), module.__dict__)
    return module


def time_matrix(code: types.ModuleType, probe: Chem.Mol, ref: Chem.Mol, ref_ids: list[int] | None,
                max_matches: int, repeats: int) -> dict:
    """Mappings and the seconds (finding them, and the superpositions) of one RMSD matrix with
    ``code``'s ``atom_matches`` and ``group_rmsd``."""
    def run():
        mappings = code.atom_matches(probe, ref, max_matches)
        code.group_rmsd(metrics._heavy_positions(probe), metrics._heavy_positions(ref, ref_ids),
                        mappings)
    mappings = code.atom_matches(probe, ref, max_matches)
    core = getattr(mappings, "core", mappings)          # the baseline's: all mappings
    return {"mappings": len(mappings), "core_mappings": len(core),
            "seconds": _best_time(run, repeats)}


def largest_difference(smiles: str) -> dict:
    """Largest |RMSD - GetBestRMS| over 4 x 3 conformer pairs (the reference in another atom
    order), and the mapping count."""
    probe = conformers(smiles, 4, seed=7)
    ref = conformers(Chem.MolToSmiles(Chem.MolFromSmiles(smiles), doRandom=True), 3, seed=11)
    mappings = metrics.atom_matches(probe, ref)
    ours = metrics.group_rmsd(metrics._heavy_positions(probe), metrics._heavy_positions(ref), mappings)
    p, r = Chem.RemoveHs(probe), Chem.RemoveHs(ref)
    theirs = np.array([[rdMolAlign.GetBestRMS(p, r, i, j) for j in range(3)] for i in range(4)])
    return {"mappings": len(mappings), "max_abs_difference": float(np.abs(ours - theirs).max())}


def markdown(report: dict) -> str:
    """The report as two short markdown tables."""
    base = report.get("baseline")
    lines = ["# Symmetric heavy-atom RMSD", "",
             f"Commit {report['commit'] or 'unknown'}, {report['date']}, {report['machine']}, "
             f"torch {report['torch']} with 1 thread; best of {report['repeats']} runs"
             + (f"; baseline: `metrics.py` of {base}, in the same run." if base else "."), "",
             "| workload | molecule | conformers | mappings (RDKit enumerated) | seconds |"
             + (f" seconds at {base} |" if base else ""),
             "|---|---|---|---|---|" + ("---|" if base else "")]
    for row in report["timed"]:
        line = (f"| {row['workload']} | {row['molecule']} | {row['conformers']} | "
                f"{row['mappings']:,} ({row['core_mappings']:,}) | {row['seconds']:.3f} |")
        if base:
            old = row["baseline"]
            line += f" {old['seconds']:.3f} ({old['mappings']:,} mappings) |"
        lines.append(line)
    lines += ["", "| molecule | mappings | largest difference from GetBestRMS (Å) |", "|---|---|---|"]
    for name, row in report["exact"].items():
        lines.append(f"| {name} | {row['mappings']:,} | {row['max_abs_difference']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", metavar="REV", help="also time metrics.py of this git revision")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "rmsd"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    report = {**provenance(), "torch": torch.__version__, "repeats": args.repeats,
              "baseline": args.baseline, "timed": [], "exact": {}}
    codes = {"now": metrics, **({"baseline": metrics_at(args.baseline)} if args.baseline else {})}
    cases = []
    for name, smiles in POOL.items():
        mol = conformers(smiles, 200)
        cases.append(({"workload": "pool 200 x 200", "molecule": name, "conformers": 200},
                      (mol, mol, None, SELECTION_MAX_MATCHES)))
    for name, smiles in SYMMETRIC.items():
        mol = conformers(smiles, 51)
        probe = Chem.Mol(mol)
        probe.RemoveConformer(0)
        cases.append(({"workload": "symmetric 50 x 1", "molecule": name, "conformers": 50},
                      (probe, mol, [0], 10**6)))
    for row, case in cases:
        row.update(time_matrix(codes["now"], *case, args.repeats))
        if args.baseline:
            row["baseline"] = time_matrix(codes["baseline"], *case, args.repeats)
        report["timed"].append(row)
    for name, smiles in EXACT.items():
        report["exact"][name] = largest_difference(smiles)
    save_report(Path(args.out), report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
