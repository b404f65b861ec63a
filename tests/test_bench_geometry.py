"""The deviations and summary of ``scripts/bench_geometry.py``."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Chem import rdMolTransforms as transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_geometry import KINDS, TERMS, deviations, etkdg, first_conformers, markdown, summarise  # noqa: E402


def _propane(c_c: float, c_c_c: float) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles("CCC"))
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    conf = mol.GetConformer()
    transforms.SetBondLength(conf, 0, 1, c_c)
    transforms.SetAngleDeg(conf, 0, 1, 2, c_c_c)
    return mol


def test_deviations_are_measured_against_mmff94_reference_values():
    """Propane: 2 C-C and 8 C-H bonds, 1 C-C-C and 17 angles with a hydrogen; the C-C bond
    and C-C-C angle set by hand deviate from MMFF94's r0 = 1.508 Å and theta0 by exactly
    what was set."""
    mol = _propane(1.6, 125.0)
    props = AllChem.MMFFGetMoleculeProperties(mol)
    theta0 = props.GetMMFFAngleBendParams(mol, 0, 1, 2)[2]
    d = deviations(mol)
    assert {t: {k: v.size for k, v in d[t].items()} for t in TERMS} == {
        "bond": {"with H": 8, "heavy": 2}, "angle": {"with H": 17, "heavy": 1}}
    assert np.isclose(d["bond"]["heavy"][0], 1.6 - 1.508, atol=1e-6)
    assert np.isclose(d["angle"]["heavy"][0], 125.0 - theta0, atol=1e-6)
    assert 100 < theta0 < 115


def test_summary_takes_means_over_every_conformer_of_every_molecule():
    parts = [deviations(_propane(1.6, 125.0)), deviations(_propane(1.4, 125.0))]
    table = summarise(parts)
    assert list(table) == [f"{t} {k}" for t in TERMS for k in KINDS]
    heavy = table["bond heavy"]
    others = parts[0]["bond"]["heavy"][1] + parts[1]["bond"]["heavy"][1]     # the C-C not set
    assert heavy["count"] == 4
    assert np.isclose(heavy["mean"], (0.092 - 0.108 + others) / 4, atol=1e-6)
    assert heavy["mean_abs"] >= abs(heavy["mean"])
    report = {"config": {"data": "x.sdf", "limit": 2, "n": 1, "etkdg_seed": 1, "commit": "c",
                         "machine": "m", "date": "d"},
              "results": {"molecules": 2, "model": table, "etkdg": table}}
    text = markdown(report)
    assert "| bond heavy (4) |" in text and text.count("\n|") == 2 + len(table)


def test_etkdg_baseline_keeps_the_molecule_and_refuses_seed_0():
    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@H](N)O"))
    made = etkdg(mol, 3, 1)
    assert made.GetNumConformers() == 3 and Chem.MolToSmiles(made) == Chem.MolToSmiles(mol)
    with pytest.raises(ValueError, match="randomSeed 0"):
        etkdg(mol, 3, 0)


def test_a_molecule_whose_mmff_bond_length_is_wrong_is_left_out():
    """RDKit's MMFF94 gives N#N the rest length 1.46 A (its empirical rule, blind to the
    bond order; observed 1.10): no reference for it."""
    mol = Chem.AddHs(Chem.MolFromSmiles("N#N"))
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    assert AllChem.MMFFGetMoleculeProperties(mol).GetMMFFBondStretchParams(mol, 0, 1)[2] == pytest.approx(1.46)
    assert deviations(mol) is None


def test_both_methods_are_scored_on_the_first_k_conformers_of_each_molecule():
    """ETKDG can return fewer conformers than asked (a long PEG chain: 1 of 10), and then the
    model's extra conformers would weigh that molecule more in its column than in ETKDG's."""
    two = etkdg(Chem.AddHs(Chem.MolFromSmiles("CCCO")), 2, 1)
    four = etkdg(two, 4, 2)
    kept = first_conformers({"model": four, "etkdg": two})
    assert [m.GetNumConformers() for m in kept.values()] == [2, 2]
    assert four.GetNumConformers() == 4                                 # copies, not trimmed in place
    for a, b in zip(kept["model"].GetConformers(), four.GetConformers()):
        assert np.array_equal(a.GetPositions(), b.GetPositions())      # the first two, in order
    counts = {m: summarise([deviations(kept[m])])["bond heavy"]["count"] for m in kept}
    assert counts == {"model": 2 * 3, "etkdg": 2 * 3}
    table = summarise([deviations(kept["model"])])
    report = {"config": {"data": "x.sdf", "limit": 1, "n": 4, "etkdg_seed": 1, "commit": "c",
                         "machine": "m", "date": "d"},
              "results": {"molecules": 1, "trimmed": 1, "model": table, "etkdg": table}}
    assert "fewer than 4 for 1 molecules" in markdown(report)
