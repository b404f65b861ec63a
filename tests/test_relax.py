"""Force-field relaxation and the restrained geometry clean-up."""
import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from molscore.chem.checks import check_geometry
from molscore.chem.coords import set_positions
from molscore.chem.metrics import rmsd_matrix
from molscore.chem.relax import relax_conformers, restrained_cleanup


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
