"""The messy input file and the output audit of ``scripts/bench_bad_inputs.py``."""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_bad_inputs import CATEGORIES, audit, make_inputs, reason_kind  # noqa: E402

SOURCES = ["CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O", "C/C=C/c1ccccc1", "OCC[C@@H](F)Cl", "c1ccncc1CCO"]


def test_the_file_mixes_every_category_deterministically():
    rows = make_inputs(3000, 0, SOURCES)
    assert rows == make_inputs(3000, 0, SOURCES) and rows != make_inputs(3000, 1, SOURCES)
    counts = {cat: sum(r[0] == cat for r in rows) for cat in CATEGORIES}
    for cat, share in CATEGORIES.items():
        assert abs(counts[cat] / 3000 - share) < 0.03, (cat, counts[cat])
    by = {cat: [r for r in rows if r[0] == cat] for cat in CATEGORIES}
    assert all(smi in SOURCES for _, smi, _ in by["valid"])
    assert all(not re.search(r"[@/\\]", smi) for _, smi, _ in by["no stereo"])
    assert all(not smi.strip() for _, smi, _ in by["empty"])
    assert all("." in smi for _, smi, _ in by["salt or mixture"])
    earlier = {name for _, _, name in rows[:-1]}
    assert all(name in earlier for _, _, name in by["duplicate name"][1:])
    assert sum(Chem.MolFromSmiles(smi) is None for _, smi, _ in by["mutated"]) > len(by["mutated"]) / 3


def test_reason_kinds_mask_numbers_and_quotes():
    assert reason_kind("invalid SMILES 'C1CC': unclosed ring 1") == "invalid SMILES '...': unclosed ring N"
    assert reason_kind("too large: 140 heavy atoms (limit 100)") == "too large: N heavy atoms (limit N)"


def _record(writer: Chem.SDWriter, smiles: str, name: str, *, mirror: bool = False, checks: str = "ok") -> None:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=7)
    if mirror:
        conf = mol.GetConformer()
        conf.SetPositions(conf.GetPositions() * np.array([-1.0, 1.0, 1.0]))
    mol.SetProp("_Name", name)
    mol.SetProp("smiles", Chem.MolToSmiles(Chem.MolFromSmiles(smiles)))
    mol.SetProp("checks", checks)
    writer.write(mol)


def test_the_audit_accounts_for_every_record_and_reads_stereo_from_3d(tmp_path):
    rows = [("valid", "CCO", "a"), ("duplicate name", "CCN", "a"), ("garbage", "N/A", "b"),
            ("valid", "C[C@H](N)O", "c"), ("empty", "", "d"), ("valid", "CCCC", "e"),
            ("no stereo", "CC(N)O", "f"), ("valid", "C[C@H](N)O", "g")]
    sdf = tmp_path / "out.sdf"
    with Chem.SDWriter(str(sdf)) as writer:
        _record(writer, "CCO", "a")
        _record(writer, "CCO", "a", checks="bond angle: ...")
        _record(writer, "CCN", "a#2")
        _record(writer, "C[C@H](N)O", "c", mirror=True)        # the other enantiomer
        _record(writer, "C[C@H](N)O", "f")                      # two isomers of one molecule
        _record(writer, "C[C@H](N)O", "f", mirror=True)
        _record(writer, "C[C@@H](N)OC", "g")                    # not the input's atoms
    with open(tmp_path / "failures.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["name", "input", "reason"])
        w.writerow(["b", "N/A", "invalid SMILES 'N/A': could not be parsed"])
        w.writerow(["c", "C[C@H](N)O", "1 of 2 conformers dropped after 3 resampling rounds"])
        w.writerow(["d", "", "empty SMILES"])
    got = audit(rows, sdf, tmp_path / "failures.csv")
    assert got["records"] == 8 and got["missing"] == ["e"]
    assert (got["conformers"], got["molecules_written"], got["failures_listed"]) == (7, 5, 3)
    assert got["unreadable_records"] == 0
    assert got["checks_ok"] == 6
    # the record of g has other atoms than its input: counted as not checked (it counted as
    # a molecule with no stereo), not read against the wrong atoms
    assert got["input_stereo_elements"] == 1 and got["input_stereo_missed"] == {"centre": 1}
    assert got["input_stereo_unchecked_conformers"] == 1
    assert got["molecules_with_several_isomers"] == ["f"]
    assert got["several_isomers_beyond_small_rings_and_nitrogen"] == ["f"]
    per = got["per_category"]
    assert (per["valid"]["generated"], per["valid"]["failed"], per["valid"]["both"]) == (2, 0, 1)
    assert per["duplicate name"]["generated"] == 1
    assert per["garbage"]["reasons"] == {"invalid SMILES '...': could not be parsed": 1}
    assert per["empty"]["failed"] == 1 and got["internal_errors"] == []
