"""Stereo guidance: restraint energy against the stereo check, its repair, batching, and the
guided score on an analytic (point-mass) score."""
import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolTransforms

from _embedding import embed

from molscore.chem.checks import check_geometry
from molscore.chem.guidance import COSINE_MARGIN, MAX_MOVE, RING_COSINE_MARGINS, StereoRestraints, guided_score
from molscore.chem.stereo import (check_stereo, mirror_conformer, specified_centres, specified_double_bonds,
                                  stereo_bond_atoms)
from molscore.sde import VESDE
from molscore.spaces import PointSetSpace

# two centres + an E bond; a Z bond whose stereo atoms are CIP-ranked (F > C); a sulfoxide
# (three neighbours); a bridgehead of a fused three-membered ring (one volume near zero)
SMILES = ["C/C=C/[C@@H](O)[C@H](N)C(=O)O", "OC/C(=C\\F)C", "C[S@@](=O)c1ccccc1",
          "CN[C@@]12C[C@]1(O)CC2=O"]
# trans double bonds that their 8-, 9- or 10-membered ring twists: the ring's carbons are the
# stereo atoms, MMFF94 puts their dihedral at 124 deg (cyclopropane-fused trans-cyclooctene),
# 132 (trans-cyclooctene), 144-155 (trans-cyclononenes), 157 (trans-cyclodecene)
TWISTED = ["C1C[C@H]2C[C@H]2CC/C=C/1", "C1CCC/C=C/CC1", "C1CCCC/C=C/CC1", "c1ccc2c(c1)CC/C=C/CCC2",
           "C1CCCCC/C=C/CC1"]


def _embed(smiles: str, n: int = 4) -> Chem.Mol:
    return embed(smiles, n, seed=11)


def _x(mol: Chem.Mol, conf_id: int = 0) -> torch.Tensor:
    return torch.tensor(mol.GetConformer(conf_id).GetPositions(), dtype=torch.float64)


@pytest.mark.parametrize("smiles", SMILES)
def test_energy_is_zero_on_correct_stereo_and_positive_on_its_mirror_or_flip(smiles):
    mol = _embed(smiles)
    restraints = StereoRestraints.from_mol(mol)
    assert not restraints.empty
    for conf in mol.GetConformers():
        assert check_stereo(mol, conf.GetId()).ok
        assert restraints.energy(_x(mol, conf.GetId())) == 0
    if specified_centres(mol):
        mirror_conformer(mol, 0)
        assert not check_stereo(mol, 0).ok and restraints.energy(_x(mol)) > 0.5
    else:                                           # the E/Z bond only: make it the other isomer
        bond = next(b for b in mol.GetBonds() if b.GetStereo() != Chem.BondStereo.STEREONONE)
        a, d = bond.GetStereoAtoms()
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        angle = rdMolTransforms.GetDihedralDeg(mol.GetConformer(), a, i, j, d)
        rdMolTransforms.SetDihedralDeg(mol.GetConformer(), a, i, j, d, angle + 180)
        assert check_stereo(mol).flipped_bonds and restraints.energy(_x(mol)) > 1.0


def test_energy_is_invariant_to_rigid_motion():
    mol = _embed(SMILES[0], 1)
    mirror_conformer(mol)
    restraints = StereoRestraints.from_mol(mol)
    x = _x(mol)
    gen = torch.Generator().manual_seed(0)
    rot, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=gen))
    rot = rot * torch.sign(torch.det(rot))          # proper rotation (det(-R) = -det(R) in 3-D)
    torch.testing.assert_close(restraints.energy(x @ rot.T + torch.tensor([1.0, -2.0, 3.0])),
                               restraints.energy(x))


@pytest.mark.parametrize("damage", ["flat centre", "cis-trans at 90 degrees"])
def test_correct_restores_the_stereo_the_molecule_asks_for(damage):
    mol = _embed(SMILES[0], 1)
    conf = mol.GetConformer()
    if damage == "flat centre":                     # each centre onto its heavy neighbours' plane
        for centre in specified_centres(mol):
            heavy = [n.GetIdx() for n in mol.GetAtomWithIdx(centre).GetNeighbors() if n.GetAtomicNum() > 1]
            conf.SetAtomPosition(centre, conf.GetPositions()[heavy].mean(0).tolist())
        assert sorted(check_stereo(mol).flat_centres) == sorted(specified_centres(mol))
    else:
        rdMolTransforms.SetDihedralDeg(conf, 0, 1, 2, 3, 95.0)     # E wants 180
    restraints = StereoRestraints.from_mol(mol)
    before = _x(mol)
    assert restraints.energy(before) > 0
    after = restraints.correct(before, steps=10)
    assert restraints.energy(after) < 1e-3 * restraints.energy(before)
    for i, p in enumerate(after.tolist()):
        conf.SetAtomPosition(i, p)
    assert check_stereo(mol).ok
    assert (after - before).norm(dim=1).max() < 1.0                 # a local repair


@pytest.mark.parametrize("dihedral", [0.1, 1.0, 5.0])
def test_correct_of_a_planar_wrong_double_bond_moves_atoms_boundedly(dihedral):
    """An E bond sampled planar cis: the gradient of cos(phi) vanishes there while the energy
    is at its largest, so a plain Polyak step threw atoms 88 Å (1 deg) to 125 Å (0.1 deg).
    Each step moves no atom further than MAX_MOVE and the steps still repair the bond."""
    mol = _embed(SMILES[0], 1)
    rdMolTransforms.SetDihedralDeg(mol.GetConformer(), 0, 1, 2, 3, dihedral)   # E wants 180
    restraints = StereoRestraints.from_mol(mol)
    x = _x(mol)
    energies = [float(restraints.energy(x))]
    assert energies[0] > 3.5
    for _ in range(10):
        after = restraints.correct(x, steps=1)
        assert (after - x).norm(dim=1).max() <= MAX_MOVE + 1e-9
        x = after
        energies.append(float(restraints.energy(x)))
    assert all(b < a for a, b in zip(energies, energies[1:]))
    assert energies[-1] < 0.01 * energies[0]
    for i, p in enumerate(x.tolist()):
        mol.GetConformer().SetAtomPosition(i, p)
    assert check_stereo(mol).ok


def _mmff_minimum(smiles: str) -> Chem.Mol:
    """The lowest of ten MMFF94-minimised ETKDG conformers of ``smiles``, alone."""
    mol = _embed(smiles, 10)
    energies = [e for _, e in AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)]
    best = Chem.Conformer(mol.GetConformer(int(np.argmin(energies))))
    best.SetId(0)
    mol.RemoveAllConformers()
    mol.AddConformer(best)
    return mol


def _turn_stereo_atom(mol: Chem.Mol, degrees: float) -> tuple[int, int, int, int]:
    """Rotate the first stereo atom of ``mol``'s one E/Z bond about that bond so that the
    stereo atoms' dihedral becomes ``degrees`` (ring bonds stretch); returns the four atoms."""
    (idx,) = specified_double_bonds(mol)
    quad = stereo_bond_atoms(mol, idx)
    conf = mol.GetConformer()
    pos = conf.GetPositions()
    axis = pos[quad[2]] - pos[quad[1]]
    axis /= np.linalg.norm(axis)
    turn = np.radians(rdMolTransforms.GetDihedralDeg(conf, *quad) - degrees)
    v = pos[quad[0]] - pos[quad[1]]     # Rodrigues: turning a about b->c lowers the dihedral
    v = v * np.cos(turn) + np.cross(axis, v) * np.sin(turn) + axis * (axis @ v) * (1 - np.cos(turn))
    conf.SetAtomPosition(quad[0], (pos[quad[1]] + v).tolist())
    assert rdMolTransforms.GetDihedralDeg(conf, *quad) == pytest.approx(degrees, abs=1e-6)
    return quad


@pytest.mark.parametrize("smiles", TWISTED)
def test_a_trans_bond_twisted_by_its_ring_is_left_at_its_mmff_minimum(smiles):
    """COSINE_MARGIN asks for a trans dihedral of at least 154 deg; the restraint of a bond in
    an 8- or 9-membered ring asks only for its side, with a margin below the twisted MMFF94
    minimum, so guidance leaves a sound conformer where it is instead of flattening it."""
    mol = _mmff_minimum(smiles)
    assert check_geometry(mol) == []
    restraints = StereoRestraints.from_mol(mol)
    assert restraints.energy(_x(mol)) == 0
    torch.testing.assert_close(restraints.correct(_x(mol), steps=5), _x(mol), rtol=0, atol=0)


@pytest.mark.parametrize("smiles, size", [("C1CCC/C=C/CC1", 8), ("C1CCCC/C=C/CC1", 9), ("C1CCCCC/C=C/CC1", 10),
                                          ("C/C=C/C", 0)])
def test_the_dihedral_restraint_of_a_twisted_ring_still_asks_for_its_side(smiles, size):
    """Energy ``relu(margin + cos(phi))^2`` of a trans bond at dihedral ``phi`` on either
    side, with the margin of its smallest ring; guidance brings one turned to the cis
    side back past the margin."""
    margin = RING_COSINE_MARGINS.get(size, COSINE_MARGIN)
    mol = _embed(smiles, 1)
    restraints = StereoRestraints.from_mol(mol)
    for phi in (60.0, 100.0, 115.0, 125.0, 150.0, 170.0):
        _turn_stereo_atom(mol, phi)
        expected = max(0.0, margin + np.cos(np.radians(phi))) ** 2
        assert float(restraints.energy(_x(mol))) == pytest.approx(expected, abs=1e-6)  # float32 margins
    quad = _turn_stereo_atom(mol, 60.0)
    assert check_stereo(mol).flipped_bonds
    after = restraints.correct(_x(mol), steps=20)
    for i, p in enumerate(after.tolist()):
        mol.GetConformer().SetAtomPosition(i, p)
    assert check_stereo(mol).ok
    assert -np.cos(np.radians(rdMolTransforms.GetDihedralDeg(mol.GetConformer(), *quad))) > margin - 0.01


def test_batched_restraints_index_each_molecule_in_its_rows():
    mols = [_embed(s, 1) for s in SMILES + TWISTED[1:2]]
    for mol in mols[::2]:
        mirror_conformer(mol)
    _turn_stereo_atom(mols[-1], 110.0)         # short of its ring margin's 120 deg
    parts = [StereoRestraints.from_mol(m) for m in mols]
    xs = [_x(m) for m in mols]
    batched = StereoRestraints.batch(parts, [x.shape[0] for x in xs])
    expected = [float(p.energy(x)) for p, x in zip(parts, xs)]
    assert expected[0] > 0 and expected[1] == 0 and expected[-1] > 0
    assert float(batched.energy(torch.cat(xs))) == pytest.approx(sum(expected), rel=1e-12)
    sample = torch.cat([torch.full((x.shape[0],), k) for k, x in enumerate(xs)])
    per_sample = batched.energy(torch.cat(xs), sample, len(xs))
    assert per_sample.tolist() == pytest.approx(expected, rel=1e-6)


def test_guided_score_of_a_point_mass_denoises_to_the_corrected_conformer():
    """For data that is one conformer ``c`` (the exact VE score ``(c - x) / s^2``), Tweedie's
    estimate is ``c`` at every ``x`` and ``t``; the guided score's estimate must be the
    corrected ``c``, and equal the plain score's where ``c`` already has the right stereo."""
    good = _embed(SMILES[0], 1)
    bad = Chem.Mol(good)
    mirror_conformer(bad)
    restraints = StereoRestraints.from_mol(good)
    sde = VESDE(sigma_min=0.02, sigma_max=15.0)
    n = good.GetNumAtoms()
    space = PointSetSpace(torch.zeros(n, dtype=torch.long), 1)
    x = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for mol in (good, bad):
        c = _x(mol)

        def score_fn(xt, t, c=c):
            return (c - xt) / space.expand(sde.marginal(t)[1]).to(xt) ** 2

        guided = guided_score(score_fn, sde, space, restraints, strength=0.5, steps=4)
        for t in (0.05, 0.3, 0.9):
            tt = torch.full((1,), t, dtype=torch.float64)
            s2 = sde.marginal(tt)[1].item() ** 2
            estimate = x + s2 * guided(x, tt)
            torch.testing.assert_close(estimate, restraints.correct(c, 4, 0.5))
            if mol is good:
                torch.testing.assert_close(guided(x, tt), score_fn(x, tt), rtol=0, atol=0)
    assert restraints.energy(restraints.correct(_x(bad), 4, 0.5)) < restraints.energy(_x(bad))


def test_molecule_without_specified_stereo_has_no_restraints():
    mol = _embed("CCOC(=O)c1ccccc1", 1)
    restraints = StereoRestraints.from_mol(mol)
    assert restraints.empty and restraints.energy(_x(mol)) == 0
    np.testing.assert_array_equal(restraints.correct(_x(mol), 3, 1.0).numpy(), _x(mol).numpy())
