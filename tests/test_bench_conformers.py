"""``scripts/bench_conformers.py``: the ETKDG baseline gets the stereo the model gets."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_conformers import _etkdg_job, _with_coords, quality  # noqa: E402
from molscore.chem.featurize import prepare_mol  # noqa: E402


@pytest.mark.parametrize("smiles", ["CP(CC)c1ccccc1", "C[C@@H]1C[NH]1"])
def test_the_etkdg_baseline_keeps_the_pyramidal_centres_of_the_reference(smiles):
    """A 3D reference's P or N pyramid (which ``AssignStereochemistryFrom3D`` leaves
    unspecified; ``prepare_mol`` tags it for the model) is kept by the baseline too, instead of
    being embedded at random and counted as wrong stereo."""
    record = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(record, randomSeed=3)
    mol = prepare_mol(Chem.RemoveHs(record), add_hs=True)      # what the benchmark gives both
    pyramids = [a.GetIdx() for a in mol.GetAtoms()
                if a.GetSymbol() in "NP" and a.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED]
    assert pyramids, "the reference's pyramidal centre is tagged for the model"
    coords = _etkdg_job((Chem.MolToMolBlock(mol), 12, 1, False))
    assert len(coords) == 12
    stereo, _, _ = quality(_with_coords(mol, coords))
    assert stereo == 12
