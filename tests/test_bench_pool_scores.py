"""The per-conformer scores and orders of ``scripts/bench_pool_scores.py``."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_conformers import _etkdg_job  # noqa: E402
from bench_pool_scores import (denoising_error, minimised_energy, score_orders,  # noqa: E402
                               spearman)
from molscore.chem.coords import add_conformer  # noqa: E402
from molscore.chem.selection import max_min_order  # noqa: E402
from molscore.generate import ConformerGenerator  # noqa: E402


def test_spearman_of_monotone_and_reversed_scores():
    a = np.array([0.3, 1.0, 2.5, 7.0])
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -np.exp(a)) == pytest.approx(-1.0)
    assert np.isnan(spearman(a, np.ones(4)))
    # ties share their average rank: ranks (0, 1.5, 1.5, 3) against (0, 1, 2, 3)
    assert spearman(a, np.array([0.0, 1.0, 1.0, 2.0])) == pytest.approx(np.corrcoef([0, 1.5, 1.5, 3], [0, 1, 2, 3])[0, 1])


def test_score_orders_rank_by_score_and_seed_max_min_with_the_best():
    points = np.random.default_rng(0).normal(size=(20, 2))
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    score = np.random.default_rng(1).normal(size=20)
    orders = score_orders({"s": score}, dist, 5)
    best = int(np.argmin(score))
    assert orders["first"] == [0, 1, 2, 3, 4]
    assert orders["max-min"] == max_min_order(dist, 5)
    assert orders["s"] == [int(i) for i in np.argsort(score)[:5]]
    assert orders["s, then max-min"][0] == best
    assert orders["s, then max-min"] == max_min_order(dist, 5, start=best)


def test_relaxed_etkdg_conformers_are_mmff_minima():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCOC(=O)c1ccccc1"))
    raw = _etkdg_job((Chem.MolToMolBlock(mol), 3, 7, False))
    relaxed = _etkdg_job((Chem.MolToMolBlock(mol), 3, 7, True))
    assert len(raw) == len(relaxed) == 3
    props = AllChem.MMFFGetMoleculeProperties(mol)

    def energy_and_gradient(xyz: np.ndarray) -> tuple[float, float]:
        """MMFF94 energy and largest gradient component (the force field needs its mol alive)."""
        m = Chem.Mol(mol)
        add_conformer(m, xyz)
        ff = AllChem.MMFFGetMoleculeForceField(m, props)
        return ff.CalcEnergy(), float(np.abs(ff.CalcGrad()).max())

    for before, after in zip(raw, relaxed):
        energy, gradient = energy_and_gradient(after)
        assert gradient < 0.5                             # a minimum: the gradient is small
        assert energy < energy_and_gradient(before)[0]


def test_minimised_energy_and_denoising_error_of_an_etkdg_pool():
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
    AllChem.EmbedMultipleConfs(mol, 3, randomSeed=5)
    energy = minimised_energy(mol)
    assert energy.shape == (3,) and np.isfinite(energy).all()
    gen = ConformerGenerator(device="cpu")
    coords = np.stack([c.GetPositions() for c in mol.GetConformers()])
    stretched = coords[:1] * 1.3                       # every bond 30 % too long
    err = denoising_error(gen, mol, np.concatenate([coords, coords[:1], stretched]), 0.3, draws=2)
    assert err.shape == (5,) and np.isfinite(err).all() and (err > 0).all()
    assert err[3] == pytest.approx(err[0], rel=1e-5)   # the same draws for every conformer
    assert err[4] > 2 * err[:3].max()                  # the model sees the distortion
