"""Molecule validation and graph featurisation (molscore.chem.featurize)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from molscore.chem.featurize import (
    ATOM_FEAT_DIM, EDGE_FEAT_DIM, SUPPORTED_ELEMENTS, MoleculeError, atoms_match, chiral_neighbour_ranks,
    graph_signature, mol_to_graph, prepare_mol,
)

# edge_attr layout: hop(3) | bond type(4) | conjugated | in ring | stereo(5) | chiral rank(4)
HOP, BOND, STEREO, RANK = slice(0, 3), slice(3, 7), slice(9, 14), slice(14, 18)


def _edges(g, hop: int) -> set[tuple[int, int]]:
    mask = g.edge_attr[:, HOP][:, hop - 1] == 1
    return {tuple(e) for e in g.edge_index[:, mask].t().tolist()}


def test_dims_and_dtypes():
    assert EDGE_FEAT_DIM == 18 and len(SUPPORTED_ELEMENTS) == 13
    g = mol_to_graph(prepare_mol("CC(=O)Nc1ccc(O)cc1"))
    n = 20  # C8H9NO2
    assert g.num_nodes == n and g.atom_feat.shape == (n, ATOM_FEAT_DIM) and g.atom_feat.dtype == torch.float32
    assert g.edge_index.dtype == torch.long and g.edge_index.shape[0] == 2
    assert g.edge_attr.shape == (g.edge_index.shape[1], EDGE_FEAT_DIM)
    assert g.z.tolist().count(6) == 8 and g.z.tolist().count(1) == 9
    assert "pos" not in g and g.smiles == "CC(=O)Nc1ccc(O)cc1"
    # every edge has exactly one hop order, every atom exactly one element
    assert torch.all(g.edge_attr[:, HOP].sum(1) == 1)
    assert torch.all(g.atom_feat[:, :len(SUPPORTED_ELEMENTS) + 1].sum(1) == 1)


def test_butane_hop_orders():
    g = mol_to_graph(Chem.MolFromSmiles("CCCC"))  # heavy atoms only: a path 0-1-2-3
    both = lambda pairs: pairs | {(j, i) for i, j in pairs}  # noqa: E731
    assert _edges(g, 1) == both({(0, 1), (1, 2), (2, 3)})
    assert _edges(g, 2) == both({(0, 2), (1, 3)})
    assert _edges(g, 3) == both({(0, 3)})
    assert g.edge_index.shape[1] == 12
    bonded = g.edge_attr[:, HOP][:, 0] == 1
    assert torch.all(g.edge_attr[bonded, BOND][:, 0] == 1)          # single bonds
    assert torch.all(g.edge_attr[~bonded, 3:13] == 0)  # no bond type/conjugation/ring/E-Z on 2/3-hop pairs
    assert torch.all(g.edge_attr[~bonded, 13] == 1)    # bond stereo: none
    # with hydrogens: 13 bonds -> 26 directed bonded edges
    gh = mol_to_graph(prepare_mol("CCCC"))
    assert len(_edges(gh, 1)) == 26 and gh.num_nodes == 14


def test_bond_types_and_stereo():
    g = mol_to_graph(Chem.MolFromSmiles("c1ccccc1C#N"))
    bonded = g.edge_attr[:, 0] == 1
    types = g.edge_attr[bonded, 3:7].sum(0)
    assert types.tolist() == [2.0, 0.0, 2.0, 12.0]  # 1 single, 1 triple, 6 aromatic (both directions)
    e = mol_to_graph(Chem.MolFromSmiles("C/C=C/C"))
    z = mol_to_graph(Chem.MolFromSmiles("C/C=C\\C"))
    assert not torch.equal(e.edge_attr[:, STEREO], z.edge_attr[:, STEREO])
    assert e.edge_attr[:, STEREO][:, :4].sum() == 2  # the double bond, both directions


def _signed_volumes(mol: Chem.Mol) -> list[float]:
    """Signed volume of the neighbours of each stereocentre taken in feature-rank order."""
    pos = mol.GetConformer().GetPositions()
    vols = []
    ranks = chiral_neighbour_ranks(mol)
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        nbrs = sorted((r, j) for (c, j), r in ranks.items() if c == i)
        if len(nbrs) == 4:
            p = [pos[j] for _, j in nbrs]
            vols.append(float(np.linalg.det(np.stack([p[1] - p[0], p[2] - p[0], p[3] - p[0]]))))
    return vols


def test_chiral_ranks_differ_between_enantiomers_and_fix_handedness():
    r = prepare_mol("C[C@H](N)C(=O)O")
    s = prepare_mol("C[C@@H](N)C(=O)O")
    gr, gs = mol_to_graph(r), mol_to_graph(s)
    assert torch.equal(gr.edge_index, gs.edge_index)
    assert not torch.equal(gr.edge_attr[:, RANK], gs.edge_attr[:, RANK])
    assert gr.edge_attr[:, RANK].sum() == 4  # the four bonds leaving the stereocentre
    # ranks are CCW-normalised: the rank-ordered neighbours have the same handedness in 3D
    # for both enantiomers (and any other stereocentre)
    signs = []
    for smi in ("C[C@H](N)C(=O)O", "C[C@@H](N)C(=O)O", "F[C@](Cl)(Br)O", "F[C@@](Cl)(Br)O"):
        mol = prepare_mol(smi)
        AllChem.EmbedMolecule(mol, randomSeed=7)
        signs += [np.sign(v) for v in _signed_volumes(mol)]
    assert len(signs) == 4 and len(set(signs)) == 1
    achiral = mol_to_graph(prepare_mol("CC(N)C"))
    assert achiral.edge_attr[:, RANK].sum() == 0


def test_pos_from_conformer():
    mol = prepare_mol("CCO")
    cids = list(AllChem.EmbedMultipleConfs(mol, 2, randomSeed=3))
    g = mol_to_graph(mol, conf_id=cids[1])
    assert g.pos.shape == (9, 3) and g.pos.dtype == torch.float32
    assert np.allclose(g.pos.numpy(), mol.GetConformer(cids[1]).GetPositions(), atol=1e-5)


@pytest.mark.parametrize("smiles, kwargs, reason", [
    ("C1CC(", {}, "invalid SMILES"),
    ("CN(C)(C)(C)C", {}, "invalid SMILES"),            # valence
    ("", {}, "invalid SMILES"),
    ("CC[Fe]CC", {}, "unsupported element(s): Fe"),
    ("[Pt](Cl)(Cl)(N)N", {}, "unsupported element(s): Pt"),
    ("C[CH2]", {}, "radical electrons on atom 1"),
    ("CC(=O)[O-].[Na+]", {}, "2 fragments (salt or mixture); use --largest-fragment"),
    ("C" * 30, {"max_heavy_atoms": 25}, "too large: 30 heavy atoms (limit 25)"),
    # RDKit reads 'CC' and takes 'O' for a title: ethane, silently (a CSV cell with a blank)
    ("CC O", {}, "invalid SMILES 'CC O': a blank inside it (RDKit would read 'CC'"),
    ("CC\nO", {}, "a blank inside it"),
    # parses, but its molfile does not read back: an output record nobody could read
    ("Cc1cc(C)cc(C)c#1OC", {}, "RDKit cannot read it back from an SDF record (Explicit valence "
                              "for atom # 1 C, 5, is greater than permitted)"),
])
def test_bad_inputs_have_specific_reasons(smiles, kwargs, reason):
    with pytest.raises(MoleculeError) as info:
        prepare_mol(smiles, **kwargs)
    assert reason in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("smiles", ["C[P@](CC)c1ccccc1", "C[P@@](CC)c1ccccc1", "C[N@]1C[C@H]1C",
                                    "C[N@@]1C[C@H]1C", "Cc1ccc2c(c1)C[N@]1Cc3cc(C)ccc3N(C2)C1"])
def test_a_3d_record_keeps_its_pyramidal_centres(smiles):
    """RDKit does not read the handedness of three-coordinate P and N centres from 3D (it
    left them unspecified, so generate chose a hand from --seed); prepare_mol does."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=3) == 0
    record = Chem.MolFromMolBlock(Chem.MolToMolBlock(mol), removeHs=False)
    plain = Chem.Mol(record)
    Chem.AssignStereochemistryFrom3D(plain)
    expected = Chem.MolToSmiles(Chem.RemoveHs(mol))
    assert Chem.MolToSmiles(Chem.RemoveHs(plain)) != expected        # RDKit alone loses it
    assert Chem.MolToSmiles(Chem.RemoveHs(prepare_mol(record))) == expected


def test_a_cxsmiles_extension_may_follow_a_blank():
    assert prepare_mol("C[C@H](O)F |&1:1|").GetNumAtoms() == prepare_mol("C[C@H](O)F").GetNumAtoms() == 9


@pytest.mark.parametrize("smarts", ["[#6]~[#7]", "[#6]-,=[#7]", "CCO"])
def test_query_molecules_are_refused(smarts):
    """A SMARTS pattern is not a molecule, even when RDKit can sanitise it ('~' became a
    single bond and the atoms got implicit hydrogens, silently)."""
    with pytest.raises(MoleculeError, match=r"invalid molecule: query atoms or bonds \(a SMARTS"):
        prepare_mol(Chem.MolFromSmarts(smarts))


def test_a_molfile_with_only_a_query_bond_is_refused():
    """Plain atoms, one 'any' bond (molfile bond type 8): the bond alone makes it a query."""
    block = ("\n  test\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\n"
             "    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\n"
             "    1.5000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\n"
             "  1  2  8  0\nM  END\n")
    mol = Chem.MolFromMolBlock(block, sanitize=False)
    assert not any(a.HasQuery() for a in mol.GetAtoms())
    with pytest.raises(MoleculeError, match="query atoms or bonds"):
        prepare_mol(mol)


def test_charged_zwitterion_fragments_and_coordinates():
    z = prepare_mol("C[N+](C)(C)CC(=O)[O-]")  # betaine
    assert sum(a.GetFormalCharge() for a in z.GetAtoms()) == 0 and z.GetNumAtoms() == 19
    salt = prepare_mol("CC(=O)[O-].[Na+]", largest_fragment=True)
    assert Chem.MolToSmiles(Chem.RemoveHs(salt)) == "CC(=O)[O-]"
    # a heavy-atom Mol with coordinates: H added with coordinates, stereo assigned from 3D
    ref = prepare_mol("C[C@@H](N)C(=O)O")
    AllChem.EmbedMolecule(ref, randomSeed=11)
    heavy = Chem.RemoveHs(ref)
    for atom in heavy.GetAtoms():
        atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    out = prepare_mol(heavy)
    assert out.GetNumAtoms() == ref.GetNumAtoms() and out.GetNumConformers() == 1
    assert np.allclose(out.GetConformer().GetPositions()[:heavy.GetNumAtoms()],
                       heavy.GetConformer().GetPositions())
    assert Chem.MolToSmiles(Chem.RemoveHs(out)) == "C[C@@H](N)C(=O)O"


def test_graph_signature():
    a = prepare_mol("OCC(N)=O")
    b = Chem.MolFromSmiles("NC(=O)CO")
    assert graph_signature(a) == graph_signature(b)
    assert atoms_match(a, "NC(=O)CO") and not atoms_match(a, "NC(=O)CCO") and not atoms_match(a, "NC(=O)C[O-]")
    assert not atoms_match(a, "not a smiles")


def test_smiles_stereo_is_perceived_as_rdkit_parses_it():
    """E/Z from the bond directions (the double bond's own label, which every stereo check
    reads) and chiral tags only on real centres, as ``Chem.MolFromSmiles`` gives them."""
    z = prepare_mol("C/C=C\\c1ccccc1")
    assert [b.GetStereo() for b in z.GetBonds() if b.GetBondType() == Chem.BondType.DOUBLE] == \
        [Chem.BondStereo.STEREOZ]
    imine = prepare_mol("[H]/N=C1\\OCC1")
    assert Chem.BondStereo.STEREOZ in [b.GetStereo() for b in imine.GetBonds()]
    assert all(a.GetChiralTag() == Chem.ChiralType.CHI_UNSPECIFIED for a in prepare_mol("C[C@H](C)O").GetAtoms())
    assert prepare_mol("C[C@H](N)O").GetAtomWithIdx(1).GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED


@pytest.mark.parametrize("smiles", ["CCO", "CC(=O)Nc1ccc(O)cc1", "[NH3+]CC(=O)[O-]", "C/C=C/C(=O)O",
                                    "N[C@@H](Cc1ccccc1)C(=O)O"])
def test_a_smiles_and_its_3d_record_featurise_alike(smiles):
    """Generation featurises the SMILES (hydrogens added by ``prepare_mol``), training a 3D
    record read with its hydrogens: every atom and edge feature must agree (the hydrogens'
    hybridisation was UNSPECIFIED, the "other" slot, from a SMILES and S from a record)."""
    from_smiles = prepare_mol(smiles)
    ref = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(ref, randomSeed=5) == 0
    record = Chem.MolFromMolBlock(Chem.MolToMolBlock(ref), removeHs=False, sanitize=False)
    from_3d = prepare_mol(record)
    g_s, g_d = mol_to_graph(from_smiles), mol_to_graph(from_3d)
    match = from_3d.GetSubstructMatch(from_smiles)           # atom i of the SMILES -> match[i]
    assert len(match) == from_smiles.GetNumAtoms() == from_3d.GetNumAtoms()
    assert torch.equal(g_s.atom_feat, g_d.atom_feat[list(match)])
    hyb = slice(len(SUPPORTED_ELEMENTS) + 1 + 6 + 1, len(SUPPORTED_ELEMENTS) + 1 + 6 + 1 + 7)
    assert torch.all(g_s.atom_feat[g_s.z == 1, hyb][:, 0] == 1)     # hydrogens: S
    edges_d = {(match.index(i), match.index(j)): a
               for (i, j), a in zip(g_d.edge_index.t().tolist(), g_d.edge_attr)}
    for (i, j), a in zip(g_s.edge_index.t().tolist(), g_s.edge_attr):
        assert torch.equal(a, edges_d[(i, j)]), (i, j)


@pytest.mark.parametrize("smiles", ["CCO.COC", "COC.CCO", "c1ccccc1.C1CCCCC1", "C1CCCCC1.c1ccccc1"])
def test_largest_fragment_ties_do_not_depend_on_order_or_hydrogens(smiles):
    """Fragments of equal heavy-atom counts: the SMILES and its 3D record with hydrogens keep
    the same one, in either order (the record's explicit hydrogens had broken the tie the
    other way: benzene from the SMILES, cyclohexane from the record)."""
    expected = {"CCO.COC": "COC", "COC.CCO": "COC", "c1ccccc1.C1CCCCC1": "C1CCCCC1",
                "C1CCCCC1.c1ccccc1": "C1CCCCC1"}[smiles]
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=1) == 0
    record = Chem.MolFromMolBlock(Chem.MolToMolBlock(mol), removeHs=False)
    for given in (smiles, record):
        assert Chem.MolToSmiles(Chem.RemoveHs(prepare_mol(given, largest_fragment=True))) == expected
