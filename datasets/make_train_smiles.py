"""Regenerate ``datasets/train_smiles.csv`` (SMILES source of ``molscore build-dataset etkdg``).

Sources (all offline): the GEOM-DRUGS and GEOM-QM9 standard *test* split molecule
lists (``corrected_smiles`` column) from ``/work/shared/data/benchmarks/``, and the
3D SDF test files shipped in the RDKit wheel (``Contrib/PBF/testData/egfr.sdf``,
``Contrib/Fastcluster/testdata/cdk2.sdf``). Molecules that fail
:func:`molscore.chem.featurize.prepare_mol` or that the dataset builders drop as reserved
(:func:`molscore.data.reserved.build_exclusion_reason`: the molecule or another of its forms on
the reserved list) are left out; duplicates (same canonical isomeric SMILES) are kept once.

Usage: ``python datasets/make_train_smiles.py [SHARED_DATA_DIR]``
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import rdkit
from rdkit import Chem, rdBase

from molscore.chem.featurize import MoleculeError, prepare_mol
from molscore.data.reserved import build_exclusion_reason, load_reserved

HERE = Path(__file__).resolve().parent


def _sources(shared: Path):
    for name, label in (("geom_drugs_test_smiles.csv", "geom_drugs_test_split"),
                        ("geom_qm9_test_smiles.csv", "geom_qm9_test_split")):
        with open(shared / "benchmarks" / name, newline="") as fh:
            for row in csv.DictReader(fh):
                yield row["corrected_smiles"], label
    contrib = Path(rdkit.__file__).parent / "Contrib"
    for rel, label in (("PBF/testData/egfr.sdf", "rdkit_contrib_egfr"),
                       ("Fastcluster/testdata/cdk2.sdf", "rdkit_contrib_cdk2")):
        path = contrib / rel
        if not path.is_file():
            continue
        with rdBase.BlockLogs():
            for mol in Chem.SDMolSupplier(str(path), removeHs=False):
                if mol is not None:
                    yield mol, label


def main(shared: Path, out: Path = HERE / "train_smiles.csv") -> None:
    """Write ``out`` (columns ``smiles,source``, one row per kept molecule) from the sources
    under ``shared`` and print per source how many were kept, dropped as reserved, invalid."""
    reserved = load_reserved()
    seen: set[str] = set()
    counts: dict[str, list[int]] = {}
    rows = []
    for item, label in _sources(shared):
        counts.setdefault(label, [0, 0, 0])  # kept, reserved dropped, invalid
        try:
            mol = prepare_mol(item)
        except MoleculeError:
            counts[label][2] += 1
            continue
        if build_exclusion_reason(mol, reserved):
            counts[label][1] += 1
            continue
        smi = Chem.MolToSmiles(Chem.RemoveHs(mol))
        if smi in seen:
            continue
        seen.add(smi)
        counts[label][0] += 1
        rows.append((smi, label))
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["smiles", "source"])
        writer.writerows(rows)
    for label, (kept, res, bad) in counts.items():
        print(f"{label}: kept {kept}, reserved dropped {res}, invalid {bad}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/data"))
