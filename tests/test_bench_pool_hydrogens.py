"""The embedded molecules and rows of ``scripts/bench_pool_hydrogens.py``."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from rdkit import Chem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from _embedding import embed  # noqa: E402
from bench_pool_hydrogens import VARIANTS, _job, embedded  # noqa: E402
from molscore.chem.metrics import _heavy_positions  # noqa: E402

SMILES = "C[C@H](N)c1ccc(CC(=O)O)cc1"     # methyl, stereocentre, aromatic, CH2, NH2, OH


def _hydrogens_on(mol: Chem.Mol) -> list[str]:
    """The symbol and hybridisation (and aromaticity) of each hydrogen's heavy atom, sorted."""
    return sorted(f"{n.GetSymbol()}{n.GetHybridization()}{'ar' if n.GetIsAromatic() else ''}{n.GetDegree()}"
                  for h in mol.GetAtoms() if h.GetAtomicNum() == 1 for n in h.GetNeighbors())


def test_each_variant_embeds_the_hydrogens_it_names():
    mol = embed(SMILES)
    assert embedded(mol, "all").GetNumAtoms() == mol.GetNumAtoms()
    assert _hydrogens_on(embedded(mol, "stereo")) == ["CSP34"]                   # the centre's H
    sp3 = _hydrogens_on(embedded(mol, "sp3"))
    assert sp3 == sorted(["CSP34", "CSP34", "CSP34", "NSP33", "NSP33"])           # CH, CH2, NH2
    non_aromatic = _hydrogens_on(embedded(mol, "non-aromatic"))
    assert len(non_aromatic) == mol.GetNumAtoms() - mol.GetNumHeavyAtoms() - 4   # 4 aromatic H
    assert not any("ar" in h for h in non_aromatic)
    assert _hydrogens_on(embedded(mol, "polar")) == sorted(["CSP34", "NSP33", "NSP33", "OSP22"])


def test_rows_of_every_variant_reach_the_reference():
    mol = embed(SMILES, seed=5)
    block = Chem.MolToMolBlock(mol)
    key, row = _job(("m", block, block, _heavy_positions(mol)[:1], 1, 12, VARIANTS))
    assert key == "m" and list(row) == list(VARIANTS)
    for r in row.values():
        assert r["seconds"] > 0 and r["1"] >= r["10"] >= r["all"] >= 0
        assert r["all"] < 1.0                      # 12 conformers of a small molecule come close
    assert row["all"]["atoms"] == mol.GetNumAtoms() > row["stereo"]["atoms"]
    assert np.isfinite([r["all"] for r in row.values()]).all()
