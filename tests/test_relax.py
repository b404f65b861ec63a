"""Force-field relaxation and the restrained geometry clean-up."""
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolTransforms

from molscore.chem.checks import check_geometry
from molscore.chem.coords import set_positions
from molscore.chem.metrics import rmsd_matrix
from molscore.chem.relax import STEREO_MARGIN, _side, mmff_properties, relax_conformers, restrained_cleanup
from molscore.chem.stereo import check_stereo


def _distorted(smiles: str, noise: float, seed: int = 7) -> tuple[Chem.Mol, np.ndarray]:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    xyz = mol.GetConformer().GetPositions() + np.random.default_rng(seed).normal(0, noise, (mol.GetNumAtoms(), 3))
    set_positions(mol.GetConformer(), xyz)
    return mol, xyz


def test_restrained_cleanup_repairs_geometry_without_moving_the_conformation():
    mol, before = _distorted("C[C@H](N)C(=O)Nc1ccc(OC)cc1", noise=0.15)
    assert check_geometry(mol) != []                       # the noise breaks some check
    original = Chem.Mol(mol)
    assert restrained_cleanup(mol) is True
    assert check_geometry(mol) == []
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    shift = np.linalg.norm(mol.GetConformer().GetPositions() - before, axis=1)[heavy]
    assert shift.max() < 0.5                                # restrained: about max_displacement
    assert rmsd_matrix(mol, original)[0, 0] < 0.3               # the input noise is 0.15 A


def test_full_relaxation_moves_further_than_restrained_cleanup():
    mol, _ = _distorted("CCCCOc1ccccc1C(=O)N", noise=0.15, seed=3)
    clean, relaxed = Chem.Mol(mol), Chem.Mol(mol)
    restrained_cleanup(clean)
    energies, name = relax_conformers(relaxed)
    assert name == "MMFF94" and len(energies) == 1 and np.isfinite(energies[0])
    assert rmsd_matrix(clean, mol)[0, 0] < rmsd_matrix(relaxed, mol)[0, 0]


def test_restrained_cleanup_without_parameters_changes_nothing():
    mol = Chem.AddHs(Chem.MolFromSmiles("[Gd]"))    # no MMFF94 or UFF type for gadolinium
    AllChem.EmbedMolecule(mol, randomSeed=1)
    before = mol.GetConformer().GetPositions()
    assert restrained_cleanup(mol) is False
    np.testing.assert_array_equal(mol.GetConformer().GetPositions(), before)


@pytest.mark.parametrize("smiles", [
    "FS(F)(F)(F)(F)F",                 # SF6: no MMFF94 type, and RDKit's UFF has no S_6+6
    "FS(F)(F)(F)(F)c1ccc(N)cc1",       # a pentafluorosulfanyl arene
    "COS(F)(F)(F)(F)F",                # on an sp3 O
    "F[P-](F)(F)(F)(F)F"])             # RDKit's UFF types the P as tetrahedral (P_3+5)
def test_restrained_cleanup_shapes_an_octahedral_centre_no_force_field_types(smiles):
    """Where neither MMFF94 nor UFF types an octahedral centre (or UFF types it as
    tetrahedral, as PF6-'s P), the clean-up holds its bonds at one length each (the bounds'
    midpoint, S-F 1.62 Å) and its ligands at the octahedron's angles (other atoms near them
    can push them a little); the old clean-up left such conformers as they were (UFF's
    PF6-: F-P-F angles of 30 deg)."""
    mol, before = _distorted(smiles, noise=0.2, seed=3)
    centre = max(mol.GetAtoms(), key=lambda a: a.GetDegree()).GetIdx()
    ligands = [n.GetIdx() for n in mol.GetAtomWithIdx(centre).GetNeighbors()]
    fluorines = [j for j in ligands if mol.GetAtomWithIdx(j).GetSymbol() == "F"]
    conf = mol.GetConformer()
    assert restrained_cleanup(mol) is True
    lengths = [rdMolTransforms.GetBondLength(conf, centre, j) for j in fluorines]
    assert max(lengths) - min(lengths) < 0.05 and 1.5 < min(lengths) < 1.7
    angles = np.array([rdMolTransforms.GetAngleDeg(conf, a, centre, b)
                       for k, a in enumerate(ligands) for b in ligands[k + 1:]])
    assert np.abs(angles[:, None] - np.array([90, 180])).min(axis=1).max() < 5.0
    assert check_geometry(mol) == []
    held = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1 and a.GetIdx() not in fluorines]
    assert np.linalg.norm(conf.GetPositions() - before, axis=1)[held].max() < 0.5   # restrained: about max_displacement


# hypervalent iodine (IBX, PIDA, Togni reagent II): RDKit's UFF types it, but its energy is
# about 1e9 kcal/mol and minimising in it stretches the bonds to I to 3 A or squeezes them
HYPERVALENT_IODINE = ["O=C1OI(O)(=O)c2ccccc21", "CC(=O)OI(OC(C)=O)c1ccccc1", "CC1(C)OI(C(F)(F)F)c2ccccc21"]


def _sound_etkdg(smiles: str) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert len(AllChem.EmbedMultipleConfs(mol, 2, randomSeed=3)) == 2
    assert all(check_geometry(mol, c.GetId()) == [] for c in mol.GetConformers())
    return mol


@pytest.mark.parametrize("smiles", HYPERVALENT_IODINE)
def test_relaxation_refuses_a_force_field_with_an_implausible_energy(smiles):
    mol = _sound_etkdg(smiles)
    before = [c.GetPositions() for c in mol.GetConformers()]
    with pytest.raises(ValueError, match=r"UFF energy .* kcal/mol after minimisation: its parameters "
                                         "do not describe this molecule"):
        relax_conformers(mol)
    for conf, pos in zip(mol.GetConformers(), before):
        np.testing.assert_array_equal(conf.GetPositions(), pos)


@pytest.mark.parametrize("smiles", HYPERVALENT_IODINE[:1])
def test_restrained_cleanup_leaves_a_conformer_where_the_force_field_is_implausible(smiles):
    mol = _sound_etkdg(smiles)
    before = [c.GetPositions() for c in mol.GetConformers()]
    assert restrained_cleanup(mol) is False
    for conf, pos in zip(mol.GetConformers(), before):
        np.testing.assert_array_equal(conf.GetPositions(), pos)
        assert check_geometry(mol, conf.GetId()) == []


DATA = Path(__file__).parent / "data"


def test_cleanup_keeps_stereo_that_a_plain_restrained_minimisation_loses():
    """Three conformers sampled from the prior (``tests/data/cleanup_stereo.sdf``, provenance
    in the file): each has the right stereo before the clean-up, and the restrained MMFF94
    minimisation without the stereo restraints loses it (the ``plain_cleanup`` property
    says how: a flipped E/Z bond, an inverted and a flattened centre)."""
    mols = list(Chem.SDMolSupplier(str(DATA / "cleanup_stereo.sdf"), removeHs=False))
    assert len(mols) == 3
    for mol in mols:
        assert check_stereo(mol).ok
        plain, kept = Chem.Mol(mol), Chem.Mol(mol)
        assert restrained_cleanup(plain, keep_stereo=False) and restrained_cleanup(kept)
        assert check_stereo(plain).reasons() == [mol.GetProp("plain_cleanup")]
        assert check_stereo(kept).ok
        heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
        start = mol.GetConformer().GetPositions()[heavy]
        moved = [np.linalg.norm(m.GetConformer().GetPositions()[heavy] - start, axis=1).max()
                 for m in (plain, kept)]
        assert moved[1] < moved[0] + 0.1                   # held no further than without them


def test_stereo_restraints_change_nothing_where_stereo_stays_clear():
    mol, _ = _distorted("C/C=C/[C@@H](O)[C@H](N)C(=O)O", noise=0.05)
    plain, kept = Chem.Mol(mol), Chem.Mol(mol)
    restrained_cleanup(plain, keep_stereo=False)
    restrained_cleanup(kept)
    assert check_stereo(plain).ok
    # zero restraint terms change only the force field's float summation order
    np.testing.assert_allclose(kept.GetConformer().GetPositions(), plain.GetConformer().GetPositions(),
                               rtol=0, atol=1e-3)


def _from_record(record: Chem.Mol) -> Chem.Mol:
    """The record's ``smiles`` with its coordinates (RDKit does not read an amine
    nitrogen's handedness from 3D)."""
    mol = Chem.AddHs(Chem.MolFromSmiles(record.GetProp("smiles")))
    mol.AddConformer(Chem.Conformer(record.GetConformer()), assignId=True)
    return mol


def test_relaxation_keeps_stereo_that_a_plain_minimisation_loses():
    """A conformer sampled from the prior (``tests/data/relax_stereo.sdf``, provenance in the
    file) with the right stereo and a nearly flat amine nitrogen: plain MMFF94 inverts it;
    the relaxation holds it on its side, no closer to flat than it started."""
    record = next(iter(Chem.SDMolSupplier(str(DATA / "relax_stereo.sdf"), removeHs=False)))
    mol = _from_record(record)
    assert check_stereo(mol).ok
    plain, kept = Chem.Mol(mol), Chem.Mol(mol)
    plain_energy, _ = relax_conformers(plain, keep_stereo=False)
    kept_energy, name = relax_conformers(kept)
    assert check_stereo(plain).reasons() == [record.GetProp("plain_relax")]
    assert check_stereo(kept).ok and name == "MMFF94"
    assert plain_energy[0] < kept_energy[0] < 1e3     # the force field's energy, no restraints


def test_relaxation_is_the_plain_one_where_stereo_stays_clear():
    mol, _ = _distorted("C/C=C/[C@@H](O)[C@H](N)C(=O)O", noise=0.05)
    plain, kept = Chem.Mol(mol), Chem.Mol(mol)
    plain_energy, _ = relax_conformers(plain, keep_stereo=False)
    kept_energy, _ = relax_conformers(kept)
    assert check_stereo(plain).ok
    # zero restraint terms change only the float summation order: the same minimum
    assert kept_energy == pytest.approx(plain_energy, abs=1e-4)
    assert rmsd_matrix(kept, plain)[0, 0] < 0.01


@pytest.mark.parametrize("angle, bond, expected", [
    (35.0, False, (10.0, 170.0)), (-35.0, False, (-170.0, -10.0)), (5.0, False, None),
    (178.0, False, None), (20.0, True, (-80.0, 80.0)), (-170.0, True, (100.0, 260.0)),
    (150.0, True, (100.0, 260.0)), (85.0, True, None)])
def test_side_keeps_a_dihedral_on_its_side(angle, bond, expected):
    assert _side(angle, STEREO_MARGIN, bond) == expected


@pytest.mark.parametrize("smiles, seed", [("N[C@H]1[C@H]2C[C@]21CO", 1), ("C[C@H]1[C@H]2C[C@@H]12", 1),
                                          # a bridgehead volume of -0.51 at the minimum: within
                                          # the small-ring tolerance of check_stereo
                                          ("C[C@@H]1[C@@H]2O[C@]12C", 7),
                                          ("C[C@]1(O)[C@@H]2C[C@@H]21", 7)])
def test_relaxation_lets_fused_small_ring_bridgeheads_reach_their_minimum(smiles, seed):
    """MMFF94 puts the bicyclobutane bridgeheads just outside their neighbours' tetrahedron
    (one triple's volume changes sign, the handedness does not): holding every triple on the
    side where ETKDG left it kept these conformers 17-21 kcal/mol above the plain minimum."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    ids = list(AllChem.EmbedMultipleConfs(mol, 5, params))
    assert ids
    plain, kept = Chem.Mol(mol), Chem.Mol(mol)
    plain_energy, _ = relax_conformers(plain, keep_stereo=False)
    kept_energy, _ = relax_conformers(kept)
    assert all(check_stereo(plain, i).ok and check_stereo(kept, i).ok for i in ids)
    assert kept_energy == pytest.approx(plain_energy, abs=1e-3)


@pytest.mark.parametrize("smiles", ["N#N", "O=S=O"])
def test_relaxation_uses_uff_where_mmff_gets_a_bond_length_wrong(smiles):
    """MMFF94's tables lack these type pairs; RDKit's empirical rule gives them single-bond
    rest lengths (N#N 1.46 A, S=O 1.66), outside the checks' range (UFF 1.12 and 1.35, each
    +- 0.26): minimised in MMFF94 they failed the checks."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert len(AllChem.EmbedMultipleConfs(mol, 2, randomSeed=3)) == 2
    assert AllChem.MMFFHasAllMoleculeParams(mol)
    energies, name = relax_conformers(mol)
    for conf in mol.GetConformers():
        assert check_geometry(mol, conf.GetId()) == []
    assert name == "UFF" and len(energies) == 2 and mmff_properties(mol) is None
    assert mmff_properties(_sound_etkdg("CC[C@H](N)C(=O)OC")) is not None


def test_restrained_cleanup_keeps_dinitrogen_at_its_length():
    """MMFF94 would stretch N#N to 1.46 A (each atom moving within the restraints' 0.25 A);
    UFF keeps its rest length, 1.12 A (observed 1.10)."""
    mol = _sound_etkdg("N#N")
    assert restrained_cleanup(mol)
    for conf in mol.GetConformers():
        assert rdMolTransforms.GetBondLength(conf, 0, 1) == pytest.approx(1.12, abs=0.005)
        assert check_geometry(mol, conf.GetId()) == []


@pytest.mark.parametrize("smiles, positions, fixed", [
    ("[Cl-]", [(0.0, 0.0, 0.0)], ()),                                  # one atom
    ("[Li+].[F-]", [(0.0, 0.0, 0.0), (0.0, 0.0, 1.5)], ()),            # no term acts
    ("ClC(Cl)(Cl)Cl", None, range(5))])                                 # every atom fixed
def test_minimisation_with_nothing_to_move_leaves_the_conformer(smiles, positions, fixed):
    """Where no atom can move, RDKit's minimiser raised an invariant violation ("bad direction
    in linearSearch") from restrained_cleanup and, with fixed atoms, relax_conformers; now the
    conformer is left as it was."""
    from rdkit.Geometry import Point3D

    mol = Chem.MolFromSmiles(smiles)
    if positions is None:
        assert AllChem.EmbedMolecule(mol, randomSeed=3) == 0
    else:
        conf = Chem.Conformer(mol.GetNumAtoms())
        for i, p in enumerate(positions):
            conf.SetAtomPosition(i, Point3D(*p))
        mol.AddConformer(conf)
    start = mol.GetConformer().GetPositions()
    restrained_cleanup(mol, fixed=fixed)
    assert np.allclose(mol.GetConformer().GetPositions(), start)
    relax_conformers(mol, fixed=fixed)
    assert np.allclose(mol.GetConformer().GetPositions(), start)


@pytest.mark.parametrize("smiles, fixed", [
    ("CCCCO", ()),                      # plain minimisation in relax_conformers
    ("C[C@H](O)CC", ()),                # stereo restraints
    ("CCCCO", (4,))])                   # a fixed atom
def test_a_conformer_with_two_bonded_atoms_at_one_position_is_left_as_it_was(smiles, fixed):
    """RDKit's minimiser raised "bad direction in linearSearch" (a RuntimeError) from a
    conformer with two bonded atoms at one position, as a sampled one can have: out of
    restrained_cleanup, which failed the whole molecule in generate. The clean-up now leaves
    that conformer as it was and cleans the others; relax_conformers leaves every conformer
    and raises the ValueError of its other refusals (generate's "not relaxed")."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    ids = list(AllChem.EmbedMultipleConfs(mol, 2, randomSeed=3))
    conf = mol.GetConformer(ids[1])
    pos = conf.GetPositions()
    pos[1] = pos[0]                                         # bonded atoms 0 and 1 at one position
    set_positions(conf, pos)
    set_positions(mol.GetConformer(ids[0]), mol.GetConformer(ids[0]).GetPositions()
                  + np.random.default_rng(3).normal(0, 0.1, (mol.GetNumAtoms(), 3)))
    start = [c.GetPositions() for c in mol.GetConformers()]
    cleaned = Chem.Mol(mol)
    assert restrained_cleanup(cleaned, fixed=fixed) is True
    assert not np.allclose(cleaned.GetConformer(ids[0]).GetPositions(), start[0])
    np.testing.assert_array_equal(cleaned.GetConformer(ids[1]).GetPositions(), start[1])
    assert restrained_cleanup(cleaned, [ids[1]], fixed=fixed) is False     # nothing changed
    with pytest.raises(ValueError, match=r"^the minimiser cannot start from a conformer \(RDKit: bad"):
        relax_conformers(mol, fixed=fixed)
    for conf, pos in zip(mol.GetConformers(), start):
        np.testing.assert_array_equal(conf.GetPositions(), pos)


def test_restrained_cleanup_flattens_a_urea_nh2_that_mmff94_leaves_pyramidal():
    """The clean-up minimises with MMFF94s: MMFF94 puts a urea's NH2 just past the amide
    flatness check (0.26-0.28 Å), so a clean-up with it could not mend that check."""
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(C)CN(C)C(N)=O"))
    ids = list(AllChem.EmbedMultipleConfs(mol, 12, randomSeed=3))
    twisted = [cid for cid in ids if any("amide" in p for p in check_geometry(mol, cid))]
    assert len(twisted) >= 4                                    # ETKDG turns the NH2
    restrained_cleanup(mol)
    assert [check_geometry(mol, cid) for cid in ids] == [[] for _ in ids]
    plain = Chem.AddHs(Chem.MolFromSmiles("CC(C)CN(C)C(N)=O"))
    AllChem.EmbedMultipleConfs(plain, 12, randomSeed=3)
    AllChem.MMFFOptimizeMoleculeConfs(plain, mmffVariant="MMFF94", maxIters=2000)
    assert sum(any("amide" in p for p in check_geometry(plain, cid)) for cid in ids) >= 4
