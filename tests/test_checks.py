"""Geometry checks: pass good conformers, flag each kind of defect."""
import math
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolTransforms

from _embedding import pose_syn_pentane

from molscore.chem import checks
from molscore.chem.checks import GIVEN, GeometryChecker, Problems, check_geometry
from molscore.chem.coords import set_positions
from molscore.chem.stereo import mirror_conformer

DRUGS = ["CC(=O)Nc1ccc(O)cc1", "CN1CCC[C@H]1c1cccnc1", "O=C(O)c1ccccc1OC(=O)C",
         "CC(C)Cc1ccc([C@@H](C)C(=O)O)cc1", "c1ccc2[nH]ccc2c1"]
DATA = Path(__file__).parent / "data"


def _mmff(smiles: str, seed: int = 42) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    assert AllChem.EmbedMolecule(mol, params) == 0
    AllChem.MMFFOptimizeMolecule(mol)
    return mol


@pytest.mark.parametrize("smiles", DRUGS)
def test_mmff_conformer_passes(smiles):
    assert check_geometry(_mmff(smiles)) == []


def test_a_ring_of_aromatic_atoms_joined_by_single_bonds_need_not_be_flat():
    """Tetraphenylene's 8-ring is all aromatic atoms but half single bonds, saddle-shaped in
    its MMFF94 minimum (0.49 Å from a plane); its benzene rings are flat and still checked."""
    mol = Chem.AddHs(Chem.MolFromSmiles("c1ccc2c(c1)-c1ccccc1-c1ccccc1-c1ccccc21"))
    assert AllChem.EmbedMolecule(mol, randomSeed=4) == 0
    assert AllChem.MMFFOptimizeMolecule(mol, maxIters=2000) == 0
    assert check_geometry(mol) == []
    assert len(GeometryChecker(mol).rings) == 4


@pytest.mark.parametrize("smiles", ["C1CCC/C=C/CC1", "OC1CCC/C=C/CC1", "C1CCCC/C=C/CC1"])
def test_a_double_bond_trans_in_a_medium_ring_may_be_twisted(smiles):
    """trans-Cyclooctene's ring twists its double bond (0.34 Å from a plane at the MMFF94
    minimum; trans-cyclononene 0.25 Å): not a problem. A cis one in the same ring is still
    checked: bent out of plane, it fails."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=3) == 0
    assert AllChem.MMFFOptimizeMolecule(mol, maxIters=2000) == 0
    assert check_geometry(mol) == []
    cis = _mmff(smiles.replace("/C=C/", "/C=C\\"))
    (row,) = GeometryChecker(cis).ring_neighbours["non-planar double bond"]
    h = next(n.GetIdx() for n in cis.GetAtomWithIdx(int(row[2])).GetNeighbors() if n.GetAtomicNum() == 1)
    bond = np.cross(*(cis.GetConformer().GetPositions()[[int(row[1]), int(row[3])]]
                      - cis.GetConformer().GetPositions()[int(row[2])]))
    assert check_geometry(cis) == []
    bent = _moved(cis, h, 1.0 * bond / np.linalg.norm(bond))
    assert any(p.startswith("non-planar double bond") for p in check_geometry(bent))


def test_a_cis_double_bond_with_wide_angles_in_a_medium_ring_is_not_read_as_trans():
    """Trans is read from the dihedral of the ring neighbours about the bond (more than 90 deg),
    not from their raw bond vectors: ETKDG opens a cis-cyclooctene's C=C-C angles to 140 deg,
    where those vectors point apart at a dihedral of 0 deg; bent out of plane, the cis bond
    fails as in a conformer with narrower angles."""
    mol = Chem.AddHs(Chem.MolFromSmiles("C1CC/C=C\\CCC1"))
    params = AllChem.ETKDGv3()
    params.randomSeed = 1
    mol = Chem.Mol(mol, confId=list(AllChem.EmbedMultipleConfs(mol, 2, params))[1])
    a, i, j, b = mol.GetSubstructMatch(Chem.MolFromSmarts("[C;R][C;R]=[C;R][C;R]"))
    pos = mol.GetConformer().GetPositions()
    assert abs(rdMolTransforms.GetDihedralDeg(mol.GetConformer(), a, i, j, b)) < 10      # cis
    assert rdMolTransforms.GetAngleDeg(mol.GetConformer(), a, i, j) > 135
    assert np.dot(pos[a] - pos[i], pos[b] - pos[j]) < 0                      # the raw vectors
    h = next(n.GetIdx() for n in mol.GetAtomWithIdx(i).GetNeighbors() if n.GetAtomicNum() == 1)
    normal = np.cross(pos[a] - pos[i], pos[j] - pos[i])
    bent = _moved(mol, h, 1.0 * normal / np.linalg.norm(normal))
    assert any(p.startswith("non-planar double bond") for p in check_geometry(bent))


def _moved(mol: Chem.Mol, atom: int, delta) -> Chem.Mol:
    mol = Chem.Mol(mol)
    conf = mol.GetConformer()
    conf.SetAtomPosition(atom, (np.asarray(conf.GetAtomPosition(atom)) + np.asarray(delta)).tolist())
    return mol


def test_stretched_bond_flagged():
    mol = _mmff("CC(=O)Nc1ccc(O)cc1")
    pos = mol.GetConformer().GetPositions()
    direction = (pos[0] - pos[1]) / np.linalg.norm(pos[0] - pos[1])   # methyl C0 away from C1
    bad = Chem.Mol(mol)
    conf = bad.GetConformer()
    for i in [0] + [n.GetIdx() for n in mol.GetAtomWithIdx(0).GetNeighbors() if n.GetIdx() != 1]:
        conf.SetAtomPosition(i, (pos[i] + 0.6 * direction).tolist())
    problems = check_geometry(bad)
    assert len(problems) == 1 and problems[0].startswith("bond length: C0-C1")
    small = _moved(mol, 0, 0.1 * direction)
    assert not any(p.startswith("bond length") for p in check_geometry(small))


def test_clash_flagged():
    mol = _mmff("OCCCCCCO")
    pos = mol.GetConformer().GetPositions()
    # put the last O 1.5 A from the first O (7 bonds apart): a clash, also a geometry break
    target = pos[0] + np.array([1.5, 0.0, 0.0])
    problems = check_geometry(_moved(mol, 7, target - pos[7]))
    assert any(p.startswith("steric clash") and "O0...O7" in p for p in problems)
    assert not any(p.startswith("steric clash") for p in check_geometry(mol))



def _syn_pentane() -> tuple[Chem.Mol, int, int]:
    """Pentane (MMFF94) turned rigidly into its syn conformation (C-C-C-C dihedrals 80 and
    -80 deg, a hydrogen of each methyl pointing at the other's), and those two hydrogens:
    1.53 A apart, as close as the H...H contacts review found in generated conformers;
    bonds, angles and heavy-atom distances stay sound."""
    mol = _mmff("CCCCC", seed=1)
    return (mol, *pose_syn_pentane(mol.GetConformer(), 80.0))


def test_hydrogen_clash_flagged():
    """Two hydrogens 1.53 A apart on atoms four bonds apart clash (the heavy-atom check
    passed such conformers); a fixed pair is the given pose's problem."""
    mol, h0, h4 = _syn_pentane()
    pos = mol.GetConformer().GetPositions()
    assert 1.5 < np.linalg.norm(pos[h0] - pos[h4]) < 1.56
    assert check_geometry(mol) == [f"hydrogen clash: H{h0}...H{h4} 1.53 A (< 1.61)"]
    assert check_geometry(_mmff("CCCCC", seed=1)) == []
    own, given = GeometryChecker(mol, fixed=[h0, h4]).split()
    assert own == [] and given == [f"hydrogen clash{GIVEN}: H{h0}...H{h4} 1.53 A (< 1.61)"]


def test_close_hydrogen_contacts_of_reference_conformers_pass():
    """The closest hydrogen contacts of the reference conformers (hexane ensembles, GEOM-DRUGS
    excerpt): an ammonium H 1.40 A from a phosphonate O and a phenol H 1.46 A from its ortho
    carbonyl O (hydrogen bonds, which a single factor for every pair with a hydrogen would
    fail), and a phosphate OH 1.71 A from a ring CH."""
    mols = list(Chem.SDMolSupplier(str(DATA / "hydrogen_contacts.sdf"), removeHs=False))
    closest = []
    for mol in mols:
        assert check_geometry(mol) == []
        checker = GeometryChecker(mol)
        p, q = checker.pairs[checker.pair_has_h].T
        pos = mol.GetConformer().GetPositions()
        closest.append(float(np.linalg.norm(pos[p] - pos[q], axis=1).min()))
    np.testing.assert_allclose(closest, [1.40, 1.46, 1.71], atol=0.005)
    single = [check_geometry(mol, hbond_clash_factor=0.67) for mol in mols[:2]]
    assert all(len(problems) == 1 and problems[0].startswith("hydrogen clash: ") for problems in single)


def test_chalcogen_bonded_reference_conformers_pass():
    """Two acylimino-thiazolidines of the GEOM-DRUGS excerpt hold their carbonyl O 2.24 and
    2.26 A from the ring S four bonds away (an intramolecular chalcogen bond, 0.68 of the radius
    sum): the single heavy-atom factor 0.7 failed them as clashes. Only S/Se...N/O pairs four
    bonds apart get the lower factor (0.65: 2.16 A for S...O); other pairs keep 0.7."""
    mols = list(Chem.SDMolSupplier(str(DATA / "chalcogen_contacts.sdf"), removeHs=False))
    assert len(mols) == 2
    for mol in mols:
        assert check_geometry(mol) == []
        problems = check_geometry(mol, chalcogen_clash_factor=0.7)
        assert len(problems) == 1 and problems[0].startswith("steric clash: O")
        assert "...S" in problems[0]
        checker = GeometryChecker(mol)
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
        topo = Chem.GetDistanceMatrix(mol)
        p, q = checker.pairs.T
        rvdw = np.array([Chem.GetPeriodicTable().GetRvdw(int(n)) for n in z])
        factor = checker.pair_min / (rvdw[p] + rvdw[q])
        s_o = ((z[p] == 16) & (z[q] == 8)) | ((z[p] == 8) & (z[q] == 16))
        heavy = (z[p] > 1) & (z[q] > 1)
        assert (s_o & (topo[p, q] == 4)).any() and (s_o & (topo[p, q] > 4)).any()
        np.testing.assert_allclose(factor[s_o & (topo[p, q] == 4)], 0.65)
        np.testing.assert_allclose(factor[s_o & (topo[p, q] > 4)], 0.7)
        np.testing.assert_allclose(factor[heavy & ~s_o & ~np.isin(z[p], (16, 34))
                                          & ~np.isin(z[q], (16, 34))], 0.7)


def test_nonplanar_aromatic_ring_flagged():
    mol = _mmff("CC(=O)Nc1ccc(O)cc1")
    ring = [a.GetIdx() for a in mol.GetAtoms() if a.GetIsAromatic()]
    pos = mol.GetConformer().GetPositions()[ring]
    normal = np.linalg.svd(pos - pos.mean(0))[2][-1]
    problems = check_geometry(_moved(mol, ring[2], 0.4 * normal), bond_tol=1.0, angle_tol=90)
    assert problems and all(p.startswith("non-planar aromatic ring") for p in problems)
    assert check_geometry(_moved(mol, ring[2], 0.05 * normal)) == []


def test_wrong_stereo_flagged_and_checker_reusable():
    mol = _mmff("C[C@H](N)[C@@H](O)C=C")
    other = Chem.Mol(mol)
    mirror_conformer(other)
    mol.AddConformer(other.GetConformer(), assignId=True)
    checker = GeometryChecker(mol)
    assert checker(0) == []
    problems = checker(1)
    assert len(problems) == 1 and problems[0].startswith("stereo: inverted stereocentre")
    assert GeometryChecker(mol, stereo=False)(1) == []


def test_nonfinite_coordinates():
    mol = _mmff("CCO")
    mol.GetConformer().SetAtomPosition(0, [float("nan"), 0.0, 0.0])
    assert check_geometry(mol) == ["non-finite coordinates"]


def _twist(mol: Chem.Mol, i: int, j: int, k: int, l: int, degrees: float) -> Chem.Mol:
    """Set the dihedral i-j-k-l (moving k-l's side) without touching bond lengths/angles."""
    from rdkit.Chem import rdMolTransforms

    out = Chem.Mol(mol)
    rw = Chem.RWMol(out)
    rw.GetBondBetweenAtoms(j, k).SetBondType(Chem.BondType.SINGLE)   # SetDihedral refuses double bonds
    conf = rw.GetConformer()
    rdMolTransforms.SetDihedralDeg(conf, i, j, k, l, degrees)
    out.GetConformer().SetPositions(conf.GetPositions())
    return out


def test_twisted_double_bond_flagged():
    mol = _mmff("C/C=C/c1ccccc1")                   # trans-beta-methylstyrene
    assert GeometryChecker(mol).double_bonds.shape == (1, 6)
    assert check_geometry(mol) == []
    flat = _twist(mol, 0, 1, 2, 3, 170.0)            # 10 deg off trans: within tolerance
    assert not any(p.startswith("non-planar double bond") for p in check_geometry(flat, stereo=False))
    twisted = _twist(mol, 0, 1, 2, 3, 120.0)         # 60 deg twist: substituents far from the plane
    problems = check_geometry(twisted, stereo=False)
    assert [p for p in problems if p.startswith("non-planar double bond: C1=C2")], problems
    # aromatic bonds and C=O are not C=C double bonds of the pattern
    assert GeometryChecker(_mmff("CC(=O)Nc1ccc(O)cc1")).double_bonds.shape == (0, 6)


def _open_angle(mol: Chem.Mol, centre: int, end: int, degrees: float) -> Chem.Mol:
    """Rotate the side of bond centre-end that holds ``end`` about the normal of the plane of
    ``end``, ``centre`` and another neighbour of ``centre``, opening that angle by ``degrees``."""
    mol = Chem.Mol(mol)
    conf = mol.GetConformer()
    pos = conf.GetPositions()
    other = next(n.GetIdx() for n in mol.GetAtomWithIdx(centre).GetNeighbors() if n.GetIdx() != end)
    axis = np.cross(pos[other] - pos[centre], pos[end] - pos[centre])
    axis /= np.linalg.norm(axis)
    theta = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k      # Rodrigues
    edit = Chem.RWMol(mol)
    edit.RemoveBond(centre, end)
    side = Chem.GetMolFrags(edit, asMols=False, sanitizeFrags=False)
    moving = next(f for f in side if end in f)
    for i in moving:
        conf.SetAtomPosition(i, (rot @ (pos[i] - pos[centre]) + pos[centre]).tolist())
    return mol


def _angle(mol: Chem.Mol, a: int, c: int, b: int) -> float:
    pos = mol.GetConformer().GetPositions()
    u, v = pos[a] - pos[c], pos[b] - pos[c]
    return float(np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v))))


def test_angles_next_to_phosphorus_get_the_wider_tolerance():
    """An ether C-O-C opened to about 140 deg fails (UFF range 106-113 + 20); a phosphate
    ester P-O-C opened alike passes, as observed P-O-X angles reach 120-140 deg, unless
    ``hetero_angle_tol`` is set to the plain tolerance."""
    ether = _mmff("CCOCC")                       # atoms: C0 C1 O2 C3 C4
    phosphate = _mmff("COP(=O)(OC)OC")           # atoms: C0 O1 P2 ...
    assert check_geometry(ether) == [] and check_geometry(phosphate) == []
    wide_ether = _open_angle(ether, 2, 3, 140 - _angle(ether, 1, 2, 3))
    wide_ester = _open_angle(phosphate, 1, 0, 140 - _angle(phosphate, 0, 1, 2))
    assert _angle(wide_ether, 1, 2, 3) == pytest.approx(140, abs=0.5)
    assert _angle(wide_ester, 0, 1, 2) == pytest.approx(140, abs=0.5)
    problems = check_geometry(wide_ether)
    assert len(problems) == 1 and problems[0].startswith("bond angle: C1-O2-C3 140 deg")
    assert check_geometry(wide_ester) == []
    strict = check_geometry(wide_ester, hetero_angle_tol=20.0)
    assert len(strict) == 1 and strict[0].startswith("bond angle: C0-O1-P2 140 deg")


def test_problems_only_the_fixed_atoms_make_are_kept_apart():
    """An angle (or double bond) that fixed atoms alone already break is the given pose's
    problem, listed after the conformer's own under the GIVEN suffix; one with a free atom
    (or fewer than four fixed atoms off the plane) stays the conformer's."""
    ether = _open_angle(_mmff("CCOCC"), 2, 3, 30.0)            # C1-O2-C3 opened past 130 deg
    assert GeometryChecker(ether).split() == (check_geometry(ether), [])
    own, given = GeometryChecker(ether, fixed=[1, 2, 3]).split()
    assert own == [] and len(given) == 1 and given[0].startswith(f"bond angle{GIVEN}: C1-O2-C3")
    assert GeometryChecker(ether, fixed=[1, 2, 3])() == given
    own, given = GeometryChecker(ether, fixed=[1, 2]).split()
    assert given == [] and own[0].startswith("bond angle: C1-O2-C3")
    styrene = _twist(_mmff("C/C=C/c1ccccc1"), 0, 1, 2, 3, 120.0)
    c, c1, c2, ring = 0, 1, 2, 3                              # the heavy atoms of the C=C group
    own, given = GeometryChecker(styrene, stereo=False, fixed=[c, c1, c2, ring]).split()
    assert own == [] and given[0].startswith(f"non-planar double bond{GIVEN}: C1=C2")
    own, given = GeometryChecker(styrene, stereo=False, fixed=[c, c1, c2]).split()
    assert given == [] and own[0].startswith("non-planar double bond: C1=C2")


@pytest.mark.parametrize("smiles", ["CC1(C)S[C@@H]2[C@H](NC(=O)Cc3ccccc3)C(=O)N2[C@H]1C(=O)O",   # penicillin G
                                    "C[C@@H](O)[C@H]1C(=O)N2C(C(=O)O)=C(SCCN)C[C@H]12",    # thienamycin
                                    "CC(=O)N1CC1", "c1ccccc1N1CC1"])
def test_a_pyramidal_nitrogen_in_a_small_ring_passes(smiles):
    """RDKit's bounds take an amide or aniline N as planar (a penam's exocyclic C-N-C 156-171
    deg); in a 3- or 4-membered ring MMFF94 makes it pyramidal (118-122 deg): a good
    conformer. Closing the angle far below that is still flagged."""
    mol = _mmff(smiles)
    assert check_geometry(mol) == []
    if smiles == "CC(=O)N1CC1":                        # C0 C1 O2 N3 C4 C5
        closed = _open_angle(mol, 3, 1, 75 - _angle(mol, 1, 3, 4))
        assert _angle(closed, 1, 3, 4) == pytest.approx(75, abs=0.5)
        assert any(p.startswith("bond angle: C1-N3-C4 75 deg") for p in check_geometry(closed))


def test_check_counts_every_problem_of_each_kind_beyond_those_listed():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCCCCC"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    pos = mol.GetConformer().GetPositions()
    for i, p in enumerate(1.3 * pos):            # every one of the 19 bonds too long
        mol.GetConformer().SetAtomPosition(i, p.tolist())
    own, given = GeometryChecker(mol).check()
    assert own.lines == check_geometry(mol) and given.lines == [] and given.total == 0
    assert own.lines[0].startswith("bond length: ") and own.lines[0].endswith("(+16 more)")
    assert own.lines[0].count(" A (allowed ") == 3
    assert own.counts["bond length"] == 19
    assert set(own.counts) == {line.split(":")[0] for line in own.lines}
    assert own.total == sum(own.counts.values())
    mol.GetConformer().SetAtomPosition(0, [float("nan")] * 3)
    assert GeometryChecker(mol).check()[0] == Problems(["non-finite coordinates"], {"non-finite coordinates": 1})


def test_check_counts_each_stereo_line_once_and_the_given_problems_apart():
    mol = _mmff("C[C@H](N)C(=O)O")
    assert GeometryChecker(mol).check()[0] == Problems([], {})
    mirror_conformer(mol)                       # the centre inverted
    own, given = GeometryChecker(mol).check()
    assert own == Problems(["stereo: inverted stereocentre(s) at atom(s) 1"], {"stereo": 1}) and own.total == 1
    ether = _open_angle(_mmff("CCOCC"), 2, 3, 30.0)            # C1-O2-C3 opened past 130 deg
    own, given = GeometryChecker(ether, fixed=[1, 2, 3]).check()
    assert own.total == 0 and given.counts == {f"bond angle{GIVEN}": 1} and given.total == 1


def _stretched(mol: Chem.Mol, i: int, j: int, length: float) -> Chem.Mol:
    """``mol`` with atom ``j`` (and nothing else) moved along bond i-j to ``length`` Å."""
    pos = mol.GetConformer().GetPositions()
    u = (pos[j] - pos[i]) / np.linalg.norm(pos[j] - pos[i])
    return _moved(mol, j, pos[i] + length * u - pos[j])


def test_bonds_between_c_n_o_f_are_held_to_mmff94_reference_lengths():
    """A sampled C=O of 1.45 Å (MMFF94's r0 1.22) or a ring C-C of 1.30 Å passed: the UFF
    bounds widened by 0.25 Å allow both. Such bonds are now held within 0.15 Å of MMFF94's
    r0; bonds with heavier elements keep the wider range, which their reference geometries
    need (a C-I bond 0.2 Å long passes)."""
    acid = _mmff("CC(=O)O")                                   # C0 C1 O2 O3
    long_co = _stretched(acid, 1, 2, 1.45)     # also longer than the C-OH: "bond orders swapped"
    assert not [p for p in check_geometry(long_co, first_row_bond_tol=None) if p.startswith("bond length")]
    (line,) = [p for p in check_geometry(long_co) if p.startswith("bond length")]
    assert line.startswith("bond length: C1-O2 1.45 A (allowed 1.") and "-1.37)" in line
    ring = _mmff("C1CC2CCC1C2")                               # norbornane
    short_cc = _stretched(ring, 0, 1, 1.30)
    assert check_geometry(short_cc, first_row_bond_tol=None) == []
    assert check_geometry(short_cc)[0].startswith("bond length: C0-C1 1.30 A")
    iodide = _mmff("CCI")                                     # C0 C1 I2
    r = np.linalg.norm(np.subtract(*iodide.GetConformer().GetPositions()[[1, 2]]))
    assert check_geometry(_stretched(iodide, 1, 2, r + 0.2)) == []


def test_mmff94_reference_lengths_follow_mmff94_aromaticity():
    """MMFF94 perceives aromaticity its own way and looks bond types up in the molecule it
    typed: read from RDKit's aromatic bonds instead, the ring C-C of a pyrimidinone or a
    quinazoline-like ring got a single bond's r0 (1.54 Å), and their own MMFF94 minima
    failed."""
    for smiles in ("Cn1ccc(N)nc1=O", "NC1N=c2ccccc2=N1", "Cc1nc(=O)[nH]c2[nH]cnc12", "c1ccc2ccccc2c1"):
        mol = _mmff(smiles)
        assert check_geometry(mol) == [], smiles


@pytest.mark.parametrize("smiles, dihedral, bond", [
    ("C/C=N/O", (0, 1, 2, 3), "C1=N2"),                  # oxime
    ("CC(C)=[N+](C)C", (0, 1, 3, 4), "C1=N3"),           # iminium
    ("C/N=N/c1ccccc1", (0, 1, 2, 3), "N1=N2")])          # azo
def test_twisted_c_n_and_n_n_double_bonds_flagged(smiles, dihedral, bond):
    """A C=N or N=N double bond twisted by 60 degrees is as broken as a C=C one (passed before:
    only C=C was checked); the MMFF94 minimum passes, and so does a 10 degree twist."""
    from rdkit.Chem import rdMolTransforms

    mol = _mmff(smiles)
    assert check_geometry(mol) == []
    start = rdMolTransforms.GetDihedralDeg(mol.GetConformer(), *dihedral)
    slight = _twist(mol, *dihedral, start + 10.0)
    assert not any(p.startswith("non-planar double bond") for p in check_geometry(slight, stereo=False))
    problems = check_geometry(_twist(mol, *dihedral, start + 60.0), stereo=False)
    assert [p for p in problems if p.startswith(f"non-planar double bond: {bond} ")], problems


def test_a_stretched_bond_to_hydrogen_is_flagged():
    """Bonds to hydrogen were held to RDKit's 1-2 bounds + 0.25 Å only: a sampled hydroxamic
    acid O-H of 1.13 Å (MMFF94 r0 0.97) passed. C-H, N-H and O-H are now held below MMFF94's
    r0 + 0.15 Å; a short one (X-ray hydrogens) is not held to r0."""
    from rdkit.Chem.rdMolTransforms import SetBondLength

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)NO"))
    AllChem.EmbedMolecule(mol, randomSeed=3)
    AllChem.MMFFOptimizeMolecule(mol)
    conf = mol.GetConformer()
    assert check_geometry(mol) == []
    oh = next(b for b in mol.GetBonds() if {b.GetBeginAtom().GetSymbol(), b.GetEndAtom().GetSymbol()} == {"O", "H"})
    o, h = (oh.GetBeginAtomIdx(), oh.GetEndAtomIdx()) if oh.GetBeginAtom().GetSymbol() == "O" else \
        (oh.GetEndAtomIdx(), oh.GetBeginAtomIdx())
    SetBondLength(conf, o, h, 1.13)
    problems = check_geometry(mol)
    assert len(problems) == 1 and problems[0].startswith(f"bond length: O{o}-H{h} 1.13 A (allowed ")
    assert check_geometry(mol, first_row_bond_tol=None) == []          # the 1-2 bounds alone
    SetBondLength(conf, o, h, 0.85)                                     # short: not held to r0
    assert check_geometry(mol) == []


@pytest.mark.parametrize("smiles, dihedral, degrees", [
    ("CC(=O)N(C)C", (2, 1, 3, 4), 60.0),        # tertiary amide twisted about C-N
    ("NC(=O)c1ccccc1", (2, 1, 0, 9), 90.0),     # primary amide: its NH2 turned (ETKDG leaves most so)
    ("CNC(=O)OC", (3, 2, 1, 0), 60.0)])         # carbamate
def test_twisted_amides_flagged(smiles, dihedral, degrees):
    """The C(=O)-N of amides, ureas and carbamates is flat; a twist about it passed every check
    (ETKDGv3 without a force field turns the NH2 of 3 in 4 primary amides of drug-like
    molecules by up to 90 degrees, and the default route kept them). The MMFF94 minimum and a
    10 degree twist pass."""
    from rdkit.Chem import rdMolTransforms

    mol = _mmff(smiles)
    assert check_geometry(mol) == []
    start = rdMolTransforms.GetDihedralDeg(mol.GetConformer(), *dihedral)
    c, n = dihedral[1], dihedral[2]
    assert not any(p.startswith("non-planar amide")
                   for p in check_geometry(_twist(mol, *dihedral, start + 10.0), stereo=False))
    problems = check_geometry(_twist(mol, *dihedral, start + degrees), stereo=False)
    assert [p for p in problems if p.startswith(f"non-planar amide: C{c}(=O") and f")-N{n} and" in p], problems


@pytest.mark.parametrize("smiles, amides", [
    ("CC(=O)N(C)C", 1), ("NC(N)=O", 2), ("CNC(=O)OC", 1),
    ("CC(=O)NN", 0), ("CC(=O)NO", 0),                      # hydrazide, hydroxamic acid: N pyramidal
    ("CN1CCC1=O", 0),                                       # beta-lactam: strained N
    ("O=C1CC2CCN1CC2", 0),                                  # bridged lactam (2-quinuclidone-like)
    ("O=c1cccc[nH]1", 0)])                                  # pyridone: an aromatic ring
def test_which_amides_are_held_flat(smiles, amides):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert len(GeometryChecker(mol).amides) == amides


@pytest.mark.parametrize("smiles", ["C12C3C1C23", "C1C[C@H]2[C@@H]3[C@H]4O[C@@H]3[C@]42C1",
                                    "c1ccc2c(c1)ccc1ccc3ccc4ccccc4c3c12",
                                    "CCOc1cccc(=O)c2c(C)n(Cc3ccco3)c(C)c12"])
def test_strain_that_the_force_field_minimum_shares_is_not_a_problem(smiles):
    """Tetrahedrane's C-C bonds (1.66 Å), a QM9 cage's C-C-C angle across its fused 3- and
    4-membered rings (154 deg), a hexahelicene's inner ring and a fused 7-membered aromatic
    ring leave the ranges and flatness of unstrained groups at the MMFF94s minimum too; a
    conformer near that minimum passes, a distorted one still fails."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = 7
    assert AllChem.EmbedMolecule(mol, params) == 0
    props = AllChem.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94s")
    AllChem.MMFFGetMoleculeForceField(mol, props).Minimize(maxIts=2000)
    checker = GeometryChecker(mol)
    unstrained = GeometryChecker(mol, force_field_minimum=False)       # the ranges alone
    assert any(p.startswith(("bond length", "bond angle", "non-planar")) for p in unstrained())
    assert checker() == []
    pos = mol.GetConformer().GetPositions()
    pos[[0, 1]] += np.array([[0.0, 0.0, 0.02], [0.0, 0.02, 0.0]])      # near the minimum
    set_positions(mol.GetConformer(), pos)
    assert checker() == []
    h = next(n.GetIdx() for n in mol.GetAtomWithIdx(0).GetNeighbors() if n.GetAtomicNum() == 1)
    pos[h] = pos[0] + 1.5 * (pos[h] - pos[0])                          # a C-H of 1.6 Å
    set_positions(mol.GetConformer(), pos)
    assert any(p.startswith("bond length") for p in checker())


@pytest.mark.parametrize("smiles, pattern", [
    ("CC1=C(C)CCCCC1", "[C;R][C;R]=[C;R][C;R]"),            # trans-cycloheptene
    ("O=C1NCCCCC1", "[C;R][C;R](=O)[N;R][C;R]"),             # trans-caprolactam
])
def test_a_small_ring_group_turned_trans_is_not_the_minimums_strain(smiles, pattern):
    """A C=C or amide in a 7-membered ring turned trans is the other isomer, not strain: its
    MMFF94s minimum stays twisted (about 100 deg), but the conformer still fails."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = 3
    assert AllChem.EmbedMolecule(mol, params) == 0
    match = mol.GetSubstructMatch(Chem.MolFromSmarts(pattern))
    a, i, j, b = match if len(match) == 4 else (match[0], match[1], match[3], match[4])
    props = AllChem.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94s")
    start = rdMolTransforms.GetDihedralDeg(mol.GetConformer(), a, i, j, b)
    for target in np.linspace(start, 180.0, 20)[1:]:             # drive the ring bond trans
        ff = AllChem.MMFFGetMoleculeForceField(mol, props)
        ff.MMFFAddTorsionConstraint(a, i, j, b, False, target - 2, target + 2, 500.0)
        ff.Minimize(maxIts=500)
    AllChem.MMFFGetMoleculeForceField(mol, props).Minimize(maxIts=5000)    # its own minimum
    assert abs(rdMolTransforms.GetDihedralDeg(mol.GetConformer(), a, i, j, b)) > 90
    assert any(p.startswith("non-planar") for p in GeometryChecker(mol)())


@pytest.mark.parametrize("smiles, bridgehead", [
    ("C1CC2CCCC(C1)C2", 6),                                  # bicyclo[3.3.1]nonane
    ("C1CC2CCCC(C1)CC2", 6)])                                # bicyclo[3.3.2]decane
def test_an_inverted_bridgehead_is_not_the_minimums_strain(smiles, bridgehead):
    """A bridgehead and its H mirrored through the plane of its three ring neighbours: MMFF94s
    holds the cage there as a local minimum 64-75 kcal/mol above the normal one, with ring
    angles far off (C-C-H 85 deg, C-C-C 141 deg). The SMILES labels no bridgehead, so the
    stereo check has nothing to compare (generate labels them, and its stereo check sees the
    inversion); the exception must not excuse a wrong basin as the molecule's own strain."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = 7
    assert AllChem.EmbedMolecule(mol, params) == 0
    props = AllChem.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94s")
    ff = AllChem.MMFFGetMoleculeForceField(mol, props)
    assert ff.Minimize(maxIts=5000) == 0
    normal = ff.CalcEnergy()
    assert GeometryChecker(mol)() == []
    atom = mol.GetAtomWithIdx(bridgehead)
    ring = [n.GetIdx() for n in atom.GetNeighbors() if n.GetAtomicNum() > 1]
    moved = [bridgehead] + [n.GetIdx() for n in atom.GetNeighbors() if n.GetAtomicNum() == 1]
    pos = mol.GetConformer().GetPositions()
    centre = pos[ring].mean(0)
    normal_vec = np.linalg.svd(pos[ring] - centre)[2][-1]
    pos[moved] -= 2 * ((pos[moved] - centre) @ normal_vec)[:, None] * normal_vec
    set_positions(mol.GetConformer(), pos)
    ff = AllChem.MMFFGetMoleculeForceField(mol, props)
    assert ff.Minimize(maxIts=5000) == 0 and ff.CalcEnergy() > normal + 40       # a wrong basin
    assert any(p.startswith("bond angle") for p in GeometryChecker(mol, force_field_minimum=False)())
    assert any(p.startswith("bond angle") for p in GeometryChecker(mol)())


def test_a_conformer_the_minimiser_cannot_start_from_is_checked():
    """Two bonded atoms at one position: RDKit's minimiser raises ("bad direction in
    linearSearch"); the conformer fails on the bond instead of the check raising."""
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)N"))
    assert AllChem.EmbedMolecule(mol, randomSeed=1) == 0
    pos = mol.GetConformer().GetPositions()
    pos[1] = pos[0]
    set_positions(mol.GetConformer(), pos)
    assert any(p.startswith("bond length: C0-C1 0.00 A") for p in GeometryChecker(mol)())


def test_the_force_field_minimum_excuses_only_what_a_ring_can_strain(monkeypatch):
    """Open-chain groups are twisted, not strained: a turned urea NH2 fails whatever the
    minimum says, and costs no minimisation; a ring's strain is asked of the minimum."""
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(C)CN(C)C(N)=O"))
    ids = list(AllChem.EmbedMultipleConfs(mol, 12, randomSeed=3))
    calls = []
    # a "minimum" that shares every problem, at an energy no other minimum is below
    monkeypatch.setattr(GeometryChecker, "_minimum", lambda self, pos: calls.append(1) or (pos, -math.inf))
    checker = GeometryChecker(mol)
    assert any(any("amide" in p for p in checker(cid)) for cid in ids) and calls == []
    ring = Chem.AddHs(Chem.MolFromSmiles("c1ccc2ccccc2c1"))
    AllChem.EmbedMolecule(ring, randomSeed=7)
    pos = ring.GetConformer().GetPositions()
    pos[0, 2] += 0.3                                          # out of the ring's plane
    set_positions(ring.GetConformer(), pos)
    assert any("aromatic ring" in p for p in GeometryChecker(ring, force_field_minimum=False)())
    assert GeometryChecker(ring)() == [] and calls


def test_a_minimisation_that_does_not_converge_excuses_nothing(monkeypatch):
    """The exception is for what the minimum shares: a minimisation stopped short of it (RDKit's
    Minimize returns 1 after its iterations, as 1,000 leave a cyclosporin from an ETKDG start)
    is no minimum. Near a hexahelicene's MMFF94s minimum, whose inner ring leaves the
    flatness tolerance, the conformer passes; one iteration does not converge from it, and the
    ring stays a problem."""
    mol = Chem.AddHs(Chem.MolFromSmiles("c1ccc2c(c1)ccc1ccc3ccc4ccccc4c3c12"))
    params = AllChem.ETKDGv3()
    params.randomSeed = 7
    assert AllChem.EmbedMolecule(mol, params) == 0
    props = AllChem.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94s")
    assert AllChem.MMFFGetMoleculeForceField(mol, props).Minimize(maxIts=2000) == 0
    pos = mol.GetConformer().GetPositions()
    pos[[0, 1]] += np.array([[0.0, 0.0, 0.02], [0.0, 0.02, 0.0]])      # near the minimum
    set_positions(mol.GetConformer(), pos)
    assert any("aromatic ring" in p for p in GeometryChecker(mol, force_field_minimum=False)())
    assert GeometryChecker(mol)() == []
    monkeypatch.setattr(checks, "MINIMUM_MAX_ITERS", 1)
    assert AllChem.MMFFGetMoleculeForceField(Chem.Mol(mol), props).Minimize(maxIts=1) == 1
    assert any("aromatic ring" in p for p in GeometryChecker(mol)())


@pytest.mark.parametrize("smiles, double, single", [
    ("CC(=O)O", (1, 2), (1, 3)),                  # carboxylic acid: C1=O2, C1-O3(H)
    ("CS(=O)(=O)O", (1, 2), (1, 4)),              # sulfonic acid: S1=O2, S1-O4(H)
    ("COP(=O)(O)OC", (2, 3), (2, 4)),             # phosphate diester: P2=O3, P2-O4(H)
    ("CC(=N)N", (1, 2), (1, 3)),                  # acetamidine: C1=N2, C1-N3(H2)
    ("NC(=N)NC(=O)C", (1, 2), (1, 3)),            # acylguanidine: C1=N2, C1-N3(H)C(=O)
    ("CC(N)=NO", (1, 3), (1, 2)),                 # amidoxime: C1=N3(OH), C1-N2(H2)
    ("CC1=NCCN1", (1, 2), (1, 5)),                # 2-imidazoline: ring C1=N2, C1-N5(H)
    ("CSC(=N)N", (2, 3), (2, 4)),                 # S-methylisothiourea: C2=N3, C2-N4(H2)
    ("CC(=O)NC", (1, 2), (1, 3)),                 # N-methylacetamide: C1=O2, C1-N3
    ("O=C1CCCN1", (1, 0), (1, 5)),                # 2-pyrrolidinone: C1=O0, C1-N5
    ("CNC(=O)OC", (2, 3), (2, 1))])               # carbamate: C2=O3, C2-N1
def test_a_double_bond_no_shorter_than_its_single_bond_twin_is_flagged(smiles, double, single):
    """The default route gave 20 % of the conformers of five carboxylic acids (10 of 50), 5 of
    10 of a sulfonic acid's, their C=O or S=O longer than the C-OH or S-OH beside it (glycine:
    C=O 1.35 Å, C-OH 1.23 Å), the geometry of the other tautomer, whose hydrogen sits on the
    carbonyl oxygen. Each bond lay within the tolerance of its own length, so they passed.
    Now a double bond to a terminal O or S that is not shorter than a single bond from the
    same atom to a neutral O or S is a problem; the MMFF94 minimum and a conformer with
    the two bonds nearly equal but in order pass.

    The same for amidines, guanidines and amidoximes (29 of 130 default-route conformers of
    13 of them had a C=N longer than the C-N from the same carbon, guanabenz by 0.20 Å; in
    GFN2-xTB minima of 25 neutral ones the C=N is 0.033-0.16 Å the shorter) and amides (an
    independent audit found 6 of 400 amide groups of 770 default-route conformers with the
    C=O no shorter than the C-N; in the 730 of the reference conformers the C-N is
    0.080-0.20 Å the longer)."""
    mol = _mmff(smiles)
    assert check_geometry(mol) == []
    conf = mol.GetConformer()
    d_double, d_single = (rdMolTransforms.GetBondLength(conf, *b) for b in (double, single))
    close = _stretched(_stretched(mol, *double, (d_double + d_single) / 2 - 0.01), *single,
                       (d_double + d_single) / 2 + 0.01)
    assert not any(p.startswith("bond orders swapped") for p in check_geometry(close))
    swapped = _stretched(_stretched(mol, *double, d_single - 0.02), *single, d_double + 0.02)
    problems = check_geometry(swapped)
    a, x = double
    assert [p for p in problems if p.startswith(f"bond orders swapped: {mol.GetAtomWithIdx(a).GetSymbol()}{a}="
                                                f"{mol.GetAtomWithIdx(x).GetSymbol()}{x} ")], problems


@pytest.mark.parametrize("smiles, double, twin", [
    ("CC(=O)[O-]", (1, 2), (1, 3)),               # carboxylate
    ("COP(=O)([O-])OC", (2, 3), (2, 4)),          # phosphate anion
    ("CC(N)=[NH2+]", (1, 3), (1, 2)),             # amidinium
    ("NC(N)=[NH2+]", (1, 3), (1, 0))])            # guanidinium
def test_the_resonance_twins_of_an_ion_may_take_any_lengths(smiles, double, twin):
    """A carboxylate's and a phosphate's charged O is the double-bonded O's resonance twin, and
    an amidinium's or guanidinium's C-N bonds are too (which of them the charged N's drawn
    double bond is, is arbitrary): their lengths are not ordered."""
    mol = _mmff(smiles)
    conf = mol.GetConformer()
    d_double, d_twin = (rdMolTransforms.GetBondLength(conf, *b) for b in (double, twin))
    turned = _stretched(_stretched(mol, *double, max(d_double, d_twin) + 0.03), *twin,
                        min(d_double, d_twin) - 0.03)
    assert not any(p.startswith("bond orders swapped") for p in check_geometry(turned))


@pytest.mark.parametrize("smiles, bond, length", [
    ("Clc1ccccc1", (0, 1), 2.00),                  # C-Cl (MMFF94 r0 1.73)
    ("Brc1ccccc1", (0, 1), 2.10),                  # C-Br (r0 1.89)
    ("CS(=O)(=O)[O-]", (1, 4), 1.68),              # sulfonate S-O (r0 1.46)
    ("C[S+]([O-])c1ccccc1", (0, 1), 1.57)])        # sulfoxide S-C (r0 1.81)
def test_bonds_of_s_cl_and_br_are_held_to_mmff94_reference_lengths(smiles, bond, length):
    """Generated conformers passed with a C-Cl of 2.00 Å, a sulfonate S-O of 1.68 Å and a
    sulfoxide S-C of 1.57 Å: the UFF bounds widened by 0.25 Å allow them. Bonds between two
    of C, N, O, F, S, Cl and Br are now held within 0.15 Å of MMFF94's r0 (the reference
    conformers of the hexane ensembles and the GEOM-DRUGS excerpt have theirs within 0.09 Å)."""
    mol = _mmff(smiles)
    assert check_geometry(mol) == []
    a, b = bond
    problems = check_geometry(_stretched(mol, a, b, length))
    assert [p for p in problems if p.startswith(f"bond length: {mol.GetAtomWithIdx(a).GetSymbol()}{a}-"
                                                f"{mol.GetAtomWithIdx(b).GetSymbol()}{b} {length:.2f} A")], problems


def _posed(smiles: str, pos: np.ndarray) -> Chem.Mol:
    """``smiles`` (explicit hydrogens, none expected) with one conformer at ``pos`` ``(N, 3)``."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    conf = Chem.Conformer(mol.GetNumAtoms())
    set_positions(conf, pos)
    mol.AddConformer(conf, assignId=True)
    return mol


_OCTAHEDRON = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)


@pytest.mark.parametrize("smiles, length", [("FS(F)(F)(F)(F)F", 1.56), ("F[P-](F)(F)(F)(F)F", 1.60)])
def test_equivalent_bonds_without_a_force_field_reference_are_held_to_one_length(smiles, length):
    """MMFF94 types neither SF6 nor PF6- (nor SF5-aryl compounds), so their bonds were held only
    to the UFF-derived bounds widened by 0.25 Å (S-F 1.21-2.03 Å): the default route gave SF6
    S-F bonds of 1.31 and 1.91 Å in one conformer (their spread 0.45 Å in the median
    conformer, 10 of 10 passing). Now the lengths of equivalent heavy-atom bonds without an
    MMFF94 reference length (the same pair of symmetry classes) may differ by at most 0.15 Å."""
    centre = [a.GetIdx() for a in Chem.MolFromSmiles(smiles).GetAtoms() if a.GetSymbol() != "F"][0]
    pos = np.zeros((7, 3))
    pos[[k for k in range(7) if k != centre]] = length * _OCTAHEDRON
    mol = _posed(smiles, pos)
    assert check_geometry(mol) == []
    pos[0] *= (length + 0.25) / length                           # F0 0.25 Å further out
    problems = check_geometry(_posed(smiles, pos))
    centre_symbol = mol.GetAtomWithIdx(centre).GetSymbol()
    assert [p for p in problems if p.startswith("unequal equivalent bonds: ")
            and f"F0-{centre_symbol}{centre} {length + 0.25:.2f} A (differ by 0.25, allowed 0.15)" in p], problems
    assert check_geometry(_posed(smiles, pos), equivalent_bond_tol=None) == []


def test_equivalent_bonds_may_differ_as_a_trigonal_bipyramid_s_axial_and_equatorial_ones_do():
    """PCl5's axial P-Cl bonds (2.12 Å) are 0.10 Å longer than its equatorial ones (2.02 Å),
    though all five are equivalent in its graph: that passes."""
    eq = [[np.cos(a), np.sin(a), 0.0] for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)]
    pos = np.vstack([[[0.0, 0.0, 2.12]], [[0.0, 0.0, 0.0]], 2.02 * np.array(eq), [[0.0, 0.0, -2.12]]])
    assert check_geometry(_posed("ClP(Cl)(Cl)(Cl)Cl", pos)) == []


@pytest.mark.parametrize("smiles", ["FS(F)(F)(F)(F)F", "F[P-](F)(F)(F)(F)F", "ClP(Cl)(Cl)(Cl)Cl"])
def test_ligands_of_an_octahedron_or_trigonal_bipyramid_are_at_least_90_degrees_apart(smiles):
    """RDKit's 1-3 bounds say nothing at a five- or six-coordinate centre (F...F 1.0-3.56 Å in
    SF6): an F-P-F angle of 30 deg passed in the default route's PF6-. Now the ligands of such
    a centre may come no closer than 90 deg (less the hetero-atom angle tolerance, 35)."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    centre = 1
    ligands = [n.GetIdx() for n in mol.GetAtomWithIdx(centre).GetNeighbors()]
    length = 2.06 if "Cl" in smiles else 1.60
    if len(ligands) == 6:
        directions = _OCTAHEDRON
    else:
        directions = np.array([[0, 0, 1], [1, 0, 0], [-0.5, 0.866, 0], [-0.5, -0.866, 0], [0, 0, -1]])
    pos = np.zeros((mol.GetNumAtoms(), 3))
    pos[ligands] = length * directions
    assert check_geometry(_posed(smiles, pos)) == []
    second = directions[1]                        # in the xy plane: the first turned to 45 deg from it
    pos[ligands[0]] = length * (second + np.cross(second, [0, 0, 1])) / np.sqrt(2)
    problems = check_geometry(_posed(smiles, pos))
    assert any(p.startswith("bond angle: ") and " 45 deg (expected 90-180)" in p for p in problems), problems
