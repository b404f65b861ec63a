"""ETKDG embedding with all hydrogens or with the stereocentres' only (molscore.chem.embedding)."""
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from molscore.chem import embedding
from molscore.chem.embedding import embed_conformers, embedding_skeleton
from molscore.chem.stereo import check_stereo

SMILES = ["C/C=C/[C@@H](O)[C@H](N)C(=O)O", "CN[C@@]12C[C@]1(O)CC2=O", "C[S@@](=O)c1ccccc1",
          "CC(C)(C)c1ccc(cc1)C(=O)N"]


def _params(seed: int = 7) -> AllChem.EmbedParameters:
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    return params


def _shuffled(smiles: str, seed: int = 0) -> Chem.Mol:
    """``smiles`` with explicit hydrogens in a random atom order (hydrogens among the heavy
    atoms, as an SDF may have them)."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    order = np.random.default_rng(seed).permutation(mol.GetNumAtoms()).tolist()
    return Chem.RenumberAtoms(mol, order)


def test_skeleton_keeps_hydrogens_on_tetrahedral_stereocentres_only():
    mol = _shuffled("C/C=C/[C@@H](O)[C@H](N)C(=O)O")
    skeleton = embedding_skeleton(mol)
    hydrogens = [a for a in skeleton.GetAtoms() if a.GetAtomicNum() == 1]
    assert len(hydrogens) == 2
    assert {a.GetNeighbors()[0].GetChiralTag() for a in hydrogens} <= {
        Chem.ChiralType.CHI_TETRAHEDRAL_CW, Chem.ChiralType.CHI_TETRAHEDRAL_CCW}
    for atom in skeleton.GetAtoms():                  # every heavy atom knows its index in mol
        if atom.GetAtomicNum() > 1:
            assert mol.GetAtomWithIdx(atom.GetIntProp("_molscore_atom")).GetSymbol() == atom.GetSymbol()
    assert Chem.MolToSmiles(Chem.RemoveHs(skeleton)) == Chem.MolToSmiles(Chem.RemoveHs(mol))


@pytest.mark.parametrize("smiles", SMILES)
def test_conformers_are_in_the_molecules_atom_order_with_its_stereo(smiles):
    mol = _shuffled(smiles)
    out = embed_conformers(mol, 6, _params(), hydrogens="stereo")
    assert out.GetNumConformers() == 6
    assert [a.GetAtomicNum() for a in out.GetAtoms()] == [a.GetAtomicNum() for a in mol.GetAtoms()]
    for conf in out.GetConformers():
        xyz = conf.GetPositions()
        assert check_stereo(out, conf.GetId()).ok
        for bond in out.GetBonds():                   # every hydrogen sits on its own atom
            length = np.linalg.norm(xyz[bond.GetBeginAtomIdx()] - xyz[bond.GetEndAtomIdx()])
            if 1 in (bond.GetBeginAtom().GetAtomicNum(), bond.GetEndAtom().GetAtomicNum()):
                assert 0.95 < length < 1.15
            else:
                assert 1.1 < length < 1.9


def test_whole_molecule_is_embedded_when_its_skeleton_is_not(monkeypatch):
    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@H](N)C(=O)O"))
    embed = AllChem.EmbedMultipleConfs
    tries = []

    def skeleton_fails(work, count, params):
        tries.append((work.GetNumAtoms(), params.useRandomCoords))
        return [] if work.GetNumAtoms() < mol.GetNumAtoms() else embed(work, count, params)

    monkeypatch.setattr(embedding.AllChem, "EmbedMultipleConfs", skeleton_fails)
    params = _params()
    out = embed_conformers(mol, 3, params, hydrogens="stereo")
    skeleton_atoms = embedding_skeleton(mol).GetNumAtoms()
    assert tries == [(skeleton_atoms, False), (skeleton_atoms, True), (mol.GetNumAtoms(), True)]
    assert out.GetNumConformers() == 3 and all(check_stereo(out, c.GetId()).ok for c in out.GetConformers())
    assert params.useRandomCoords is False                    # restored

    monkeypatch.setattr(embedding.AllChem, "EmbedMultipleConfs", lambda *args: [])
    assert embed_conformers(mol, 3, params, hydrogens="stereo").GetNumConformers() == 0


def test_all_hydrogens_is_plain_etkdg():
    mol = _shuffled("CC(C)(C)c1ccc(cc1)C(=O)N[C@@H](C)CO")
    out = embed_conformers(mol, 4, _params())
    plain = Chem.Mol(mol)
    assert list(AllChem.EmbedMultipleConfs(plain, 4, _params())) == [0, 1, 2, 3]
    for k in range(4):
        np.testing.assert_array_equal(out.GetConformer(k).GetPositions(),
                                      plain.GetConformer(k).GetPositions())
    with pytest.raises(ValueError, match="unknown hydrogens 'none'; choose from all, stereo"):
        embed_conformers(mol, 4, _params(), hydrogens="none")
