"""The pools and rows of ``scripts/bench_pool_variants.py``."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_pool_variants import BASE, POOLS, embed, pool_row, pools  # noqa: E402
from molscore.chem.featurize import prepare_mol  # noqa: E402
from molscore.chem.metrics import _heavy_positions  # noqa: E402
from molscore.chem.coords import add_conformer  # noqa: E402


@pytest.fixture(scope="module")
def mol() -> Chem.Mol:
    return prepare_mol("CCOC(=O)c1ccccc1CCN", add_hs=True)


def test_pools_share_the_generator_pool_and_differ_otherwise(mol):
    made = pools(mol, seed=1)
    assert list(made) == list(POOLS)
    assert [len(made[name]) for name in POOLS] == [200, 400, 200, 200]
    base = np.stack(made[BASE])
    np.testing.assert_array_equal(np.stack(made["ETKDGv3 400"][:200]), base)
    np.testing.assert_array_equal(np.stack(made["ETKDGv3 100 + KDG 100"][:100]), base[:100])
    np.testing.assert_array_equal(base[:5], np.stack(embed(mol, 5, seed=1)))   # the generator's first 5
    assert not np.allclose(np.stack(made["ETKDGv3 100 + KDG 100"][100:105]), np.stack(embed(mol, 5, seed=2)))
    assert not np.allclose(np.stack(made["ETKDGv3 random coords 200"][:5]), base[:5])


def test_pool_row_finds_the_reference_inside_a_pool(mol):
    coords = embed(mol, 60, seed=3)
    ref = Chem.Mol(mol)
    ref.RemoveAllConformers()
    add_conformer(ref, coords[37])
    ref_xyz = _heavy_positions(ref)[:1]
    row = pool_row(mol, ref, ref_xyz, coords)
    assert row["all"] == pytest.approx(0.0, abs=1e-6)
    assert row["1"] >= row["10"] >= row["50"] >= row["all"]
    # without the reference conformer the pool's best is above zero
    rest = pool_row(mol, ref, ref_xyz, coords[:37] + coords[38:])
    assert rest["all"] > 0.01
