"""Molecule validation and graph featurisation (molscore.chem.featurize)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from molscore.chem.featurize import (
    ATOM_FEAT_DIM, DEFAULT_FEATURISATION, EDGE_FEAT_DIM, FEATURISATIONS, SUPPORTED_ELEMENTS, MoleculeError,
    atoms_match, chiral_neighbour_ranks, cis_trans_pairs, graph_signature, meta_featurisation, mol_to_graph, prepare_mol,
)
from molscore.chem.stereo import (bond_order_neighbours, centre_tag, centre_volumes, dihedral, specified_centres,
                                  specified_double_bonds)

# edge_attr layout: hop(3) | bond type(4) | conjugated | in ring | stereo(5) | chiral rank(4)
HOP, BOND, STEREO, RANK = slice(0, 3), slice(3, 7), slice(9, 14), slice(14, 18)
TAG = slice(ATOM_FEAT_DIM - 4, ATOM_FEAT_DIM)   # atom_feat's chiral-tag one-hot
V2 = DEFAULT_FEATURISATION


def _edges(g, hop: int) -> set[tuple[int, int]]:
    mask = g.edge_attr[:, HOP][:, hop - 1] == 1
    return {tuple(e) for e in g.edge_index[:, mask].t().tolist()}


def test_dims_and_dtypes():
    assert EDGE_FEAT_DIM == 18 and len(SUPPORTED_ELEMENTS) == 13
    g = mol_to_graph(prepare_mol("CC(=O)Nc1ccc(O)cc1"), featurisation=V2)
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
    g = mol_to_graph(Chem.MolFromSmiles("CCCC"), featurisation=V2)  # heavy atoms only: a path 0-1-2-3
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
    gh = mol_to_graph(prepare_mol("CCCC"), featurisation=V2)
    assert len(_edges(gh, 1)) == 26 and gh.num_nodes == 14


def test_bond_types_and_stereo():
    g = mol_to_graph(Chem.MolFromSmiles("c1ccccc1C#N"), featurisation=V2)
    bonded = g.edge_attr[:, 0] == 1
    types = g.edge_attr[bonded, 3:7].sum(0)
    assert types.tolist() == [2.0, 0.0, 2.0, 12.0]  # 1 single, 1 triple, 6 aromatic (both directions)
    for featurisation in FEATURISATIONS:
        e = mol_to_graph(Chem.MolFromSmiles("C/C=C/C"), featurisation=featurisation)
        z = mol_to_graph(Chem.MolFromSmiles("C/C=C\\C"), featurisation=featurisation)
        assert not torch.equal(e.edge_attr[:, STEREO], z.edge_attr[:, STEREO])
        # v1: the double bond's label, both directions; v2: the bond's "specified" and the
        # 1-4 pair across it ("trans"), both directions
        assert e.edge_attr[:, STEREO][:, :4].sum() == 2 * featurisation


def _rank_order_volumes(mol: Chem.Mol, featurisation: int) -> list[float]:
    """Per stereocentre, the sum of :func:`centre_volumes` of its neighbours taken in
    feature-rank order: positive when that order turns counter-clockwise in 3D (in RDKit's
    sense of a CCW tag, for three neighbours as for four)."""
    pos = mol.GetConformer().GetPositions()
    ranks = chiral_neighbour_ranks(mol, featurisation=featurisation)
    vols = []
    for i in specified_centres(mol):
        nbrs = [j for _, j in sorted((r, j) for (c, j), r in ranks.items() if c == i)]
        assert sorted(nbrs) == sorted(bond_order_neighbours(mol, i))    # every neighbour, once
        vols.append(float(centre_volumes(pos, i, nbrs).sum()))
    return vols


# stereocentres with all neighbours distinct, with two constitutionally equivalent ones (the
# ring neighbours of the centres of cis- and trans-1,4-disubstituted cyclohexanes, last in
# symmetry-class order, or not, beside SiMe3 and SO2Me; those of the pseudo-asymmetric middle
# carbon of a trihydroxyglutaric acid), and a three-coordinate one
STEREO_SMILES = ["C[C@H](N)C(=O)O", "C[C@@H](N)C(=O)O", "F[C@](Cl)(Br)O", "F[C@@](Cl)(Br)O",
                 "C[C@H]1CC[C@@H](C)CC1", "C[C@H]1CC[C@H](C)CC1", "C[Si](C)(C)[C@H]1CC[C@@H](C)CC1",
                 "CS(=O)(=O)[C@@H]1CC[C@@H](C)CC1",
                 "O=C(O)[C@H](O)[C@@H](O)[C@H](O)C(=O)O", "C[S@](=O)c1ccccc1", "C[S@@](=O)c1ccccc1",
                 "C/C=C/C(=O)N[C@@H](Cc1ccccc1)C(=O)O[C@H](C)CC", "C[C@H](F)/C=C\\[C@@](C)(Cl)CO"]


@pytest.mark.parametrize("featurisation", FEATURISATIONS)
def test_chiral_ranks_differ_between_enantiomers_and_fix_handedness(featurisation):
    r = prepare_mol("C[C@H](N)C(=O)O")
    s = prepare_mol("C[C@@H](N)C(=O)O")
    gr, gs = mol_to_graph(r, featurisation=featurisation), mol_to_graph(s, featurisation=featurisation)
    assert torch.equal(gr.edge_index, gs.edge_index)
    assert not torch.equal(gr.edge_attr[:, RANK], gs.edge_attr[:, RANK])
    assert gr.edge_attr[:, RANK].sum() == 4  # the four bonds leaving the stereocentre
    # ranks are CCW-normalised: the rank-ordered neighbours turn counter-clockwise in 3D for
    # both enantiomers and any other stereocentre (ties and three-coordinate centres included)
    vols = []
    for smi in STEREO_SMILES:
        mol = prepare_mol(smi)
        assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
        vols += _rank_order_volumes(mol, featurisation)
    assert len(vols) == 21 and min(vols) > 0.5, vols
    achiral = mol_to_graph(prepare_mol("CC(N)C"), featurisation=featurisation)
    assert achiral.edge_attr[:, RANK].sum() == 0


def _embedded(smiles: str) -> Chem.Mol:
    mol = prepare_mol(smiles)
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    return mol


def _read_back(block: str) -> Chem.Mol:
    """A molfile read as a 3D record (stereo from its coordinates), as training data is read."""
    return prepare_mol(Chem.MolFromMolBlock(block, removeHs=False))


def _rewritten(mol: Chem.Mol, rng: np.random.Generator) -> tuple[Chem.Mol, list[int]]:
    """``mol`` (3D) written as a molfile with its atoms in a random order and its bonds listed
    in a random order, each with its two atoms in a random order, read back: the same molecule
    with other atom and neighbour orders. Atom ``k`` of the result is atom ``perm[k]`` of ``mol``."""
    perm = rng.permutation(mol.GetNumAtoms()).tolist()
    lines = Chem.MolToMolBlock(Chem.RenumberAtoms(mol, perm)).splitlines()
    n_atoms, n_bonds = int(lines[3][:3]), int(lines[3][3:6])
    first = 4 + n_atoms
    bonds = [lines[first + k] for k in rng.permutation(n_bonds)]
    bonds = [b[3:6] + b[:3] + b[6:] if rng.random() < 0.5 else b for b in bonds]
    return _read_back("\n".join(lines[:first] + bonds + lines[first + n_bonds:])), perm


def _is_renumbered(g, other, perm: list[int]) -> bool:
    """Whether graph ``other`` is graph ``g`` with atom ``perm[k]`` numbered ``k``: the same node
    features, and the same edges with the same features."""
    def edges(graph, index):
        return {(index[a], index[b]): tuple(attr.tolist())
                for (a, b), attr in zip(graph.edge_index.t().tolist(), graph.edge_attr)}
    return (torch.equal(other.atom_feat, g.atom_feat[perm]) and torch.equal(other.z, g.z[perm])
            and edges(other, perm) == edges(g, range(g.num_nodes)))


@pytest.mark.parametrize("smiles", STEREO_SMILES)
def test_v2_graph_does_not_depend_on_the_atom_order(smiles):
    """The same molecule with its atoms and bonds in other orders gives, in version 2, the
    same graph renumbered: RDKit's tags change with the order (the test would be empty
    otherwise), the features do not. Ties too: the equivalent ring neighbours of
    1,4-dimethylcyclohexane's centres, and of the trihydroxyglutaric acid's middle carbon."""
    mol = _embedded(smiles)
    ref = _read_back(Chem.MolToMolBlock(mol))
    g = mol_to_graph(ref, featurisation=2)
    rng = np.random.default_rng(0)
    tags_changed = 0
    for _ in range(6):
        other, perm = _rewritten(mol, rng)
        assert _is_renumbered(g, mol_to_graph(other, featurisation=2), perm)
        tags_changed += any(other.GetAtomWithIdx(k).GetChiralTag() != ref.GetAtomWithIdx(perm[k]).GetChiralTag()
                            for k in range(len(perm)))
    assert tags_changed


@pytest.mark.parametrize("smiles", ["C[C@H]1CC[C@@H](C)CC1", "C[Si](C)(C)[C@H]1CC[C@@H](C)CC1",
                                    "CS(=O)(=O)[C@@H]1CC[C@@H](C)CC1",
                                    "O=C(O)[C@H](O)[C@@H](O)[C@H](O)C(=O)O"])
def test_v2_orders_two_equivalent_neighbours_by_the_configuration(smiles, monkeypatch):
    """Two equivalent neighbours of a centre are ordered by its configuration, not by RDKit's
    tie breaking: with a tie breaker that follows the atom order, the graph still does not
    depend on it (a transposition anywhere but in the pair, here between the pair's second
    atom and the SiMe3 or SO2Me carbon, would leave the pair in the tie breaker's order)."""
    real = Chem.CanonicalRankAtoms

    def atom_order_ties(mol, breakTies=True, **kwargs):
        return list(range(mol.GetNumAtoms())) if breakTies else real(mol, breakTies=False, **kwargs)

    monkeypatch.setattr(Chem, "CanonicalRankAtoms", atom_order_ties)
    mol = _embedded(smiles)
    g = mol_to_graph(_read_back(Chem.MolToMolBlock(mol)), featurisation=2)
    rng = np.random.default_rng(1)
    for _ in range(6):
        other, perm = _rewritten(mol, rng)
        assert _is_renumbered(g, mol_to_graph(other, featurisation=2), perm)


def test_v1_features_follow_the_input_atom_order():
    """Version 1, the shipped model's features, as they always were: the tag one-hot is RDKit's
    tag, which refers to the order of the centre's bonds, and the ranks follow that order (the
    last two swapped for CW), so the same centre written in another order can get other
    features."""
    mol = _embedded("C[C@H](N)C(=O)O")
    g = mol_to_graph(_read_back(Chem.MolToMolBlock(mol)), featurisation=1)
    rng = np.random.default_rng(0)
    renumbered = []
    for _ in range(6):
        other, perm = _rewritten(mol, rng)
        g_other = mol_to_graph(other, featurisation=1)
        (centre, tag), = specified_centres(other).items()
        order = bond_order_neighbours(other, centre)
        if tag == Chem.ChiralType.CHI_TETRAHEDRAL_CW:
            order[2:] = order[3], order[2]
        assert chiral_neighbour_ranks(other, featurisation=1) == {(centre, j): r for r, j in enumerate(order)}
        assert g_other.atom_feat[centre, TAG].tolist() == [tag == Chem.ChiralType.CHI_TETRAHEDRAL_CW,
                                                          tag == Chem.ChiralType.CHI_TETRAHEDRAL_CCW, 0, 0]
        renumbered.append(_is_renumbered(g, g_other, perm))
    assert not all(renumbered) and any(renumbered)


@pytest.mark.parametrize("smiles", ["C[C@H](N)C(=O)O", "F[C@](Cl)(Br)O", "C[S@](=O)c1ccccc1",
                                    "C/C=C/C(=O)N[C@@H](Cc1ccccc1)C(=O)O[C@H](C)CC",
                                    "C[C@H](F)/C=C\\[C@@](C)(Cl)CO"])
def test_v2_mirror_images_differ_in_the_ranks_of_every_centre(smiles):
    """The mirror image (same atom order, every centre inverted, E/Z kept): in version 2 the
    same atom features (the tag says only "specified") and the same bond features, and at every
    centre another rank order, which tells the enantiomers apart."""
    mol = _embedded(smiles)
    ref = _read_back(Chem.MolToMolBlock(mol))
    conf = mol.GetConformer()
    for k in range(mol.GetNumAtoms()):
        p = conf.GetAtomPosition(k)
        conf.SetAtomPosition(k, (-p.x, p.y, p.z))
    mirror = _read_back(Chem.MolToMolBlock(mol))
    assert Chem.MolToSmiles(mirror) != Chem.MolToSmiles(ref)            # the enantiomer
    g, gm = mol_to_graph(ref, featurisation=2), mol_to_graph(mirror, featurisation=2)
    assert torch.equal(g.atom_feat, gm.atom_feat) and torch.equal(g.edge_index, gm.edge_index)
    assert torch.equal(g.edge_attr[:, :RANK.start], gm.edge_attr[:, :RANK.start])
    centres = specified_centres(ref)
    assert centres and set(centres) == set(specified_centres(mirror))
    assert torch.all(g.atom_feat[list(centres), TAG] == torch.tensor([1.0, 0, 0, 0]))
    ranks, mirror_ranks = (chiral_neighbour_ranks(m, featurisation=2) for m in (ref, mirror))
    for i in centres:
        assert {j: r for (c, j), r in ranks.items() if c == i} != \
            {j: r for (c, j), r in mirror_ranks.items() if c == i}
    # version 1 told them apart by the tag as well (CW / CCW in the same atom order)
    assert not torch.equal(mol_to_graph(ref, featurisation=1).atom_feat,
                           mol_to_graph(mirror, featurisation=1).atom_feat)


def test_v2_cis_and_trans_ring_stereo_differ():
    """cis- and trans-1,4-dimethylcyclohexane: each centre's ring neighbours are equivalent, so
    only the configuration orders them; the two graphs differ in those ranks alone."""
    cis, trans = (mol_to_graph(prepare_mol(s), featurisation=2)
                  for s in ("C[C@H]1CC[C@@H](C)CC1", "C[C@H]1CC[C@H](C)CC1"))
    assert torch.equal(cis.atom_feat, trans.atom_feat) and torch.equal(cis.edge_index, trans.edge_index)
    assert torch.equal(cis.edge_attr[:, :RANK.start], trans.edge_attr[:, :RANK.start])
    assert not torch.equal(cis.edge_attr, trans.edge_attr)


EZ_SMILES = ["C/C=C/C", "C/C=C\\C", "CC(C)/C=C(/F)Cl", "F/C(Cl)=C(/Br)C(C)C", "CC/C=N/O",
             "COc1cc(C)c2occ(/C(C)=N\\O)c2c1", "C/C=C/C=C\\CO"]


@pytest.mark.parametrize("smiles", EZ_SMILES)
def test_v2_cis_trans_pairs_are_those_of_3d(smiles):
    """Every pair across a stereo double bond is labelled cis exactly when its dihedral in an
    ETKDG conformer (which keeps the E/Z) is under 90 degrees, on the 3-hop edges of the
    version-2 graph, both directions; the bond itself says only "specified"."""
    mol = _embedded(smiles)
    pairs = cis_trans_pairs(mol)
    pos = mol.GetConformer().GetPositions()
    expected = {}
    for idx in specified_double_bonds(mol):
        bond = mol.GetBondWithIdx(idx)
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        for a in (n.GetIdx() for n in mol.GetAtomWithIdx(i).GetNeighbors() if n.GetIdx() != j):
            for b in (n.GetIdx() for n in mol.GetAtomWithIdx(j).GetNeighbors() if n.GetIdx() != i):
                expected[(a, b)] = expected[(b, a)] = abs(dihedral(pos[[a, i, j, b]])) < 90
    assert expected and pairs == expected
    g = mol_to_graph(mol, featurisation=2)
    cis_slot, trans_slot, none_slot = STEREO.start + 2, STEREO.start + 3, STEREO.stop - 1
    for e, (a, b) in enumerate(g.edge_index.t().tolist()):
        attr = g.edge_attr[e]
        if (a, b) in pairs:
            assert attr[HOP].tolist() == [0, 0, 1]
            assert (attr[cis_slot], attr[trans_slot], attr[none_slot]) == (pairs[(a, b)], not pairs[(a, b)], 0)
        elif attr[HOP][0] == 0:
            assert attr[STEREO].tolist() == [0, 0, 0, 0, 1]
    for bond in specified_double_bonds(mol):
        b = mol.GetBondWithIdx(bond)
        e = ((g.edge_index[0] == b.GetBeginAtomIdx()) & (g.edge_index[1] == b.GetEndAtomIdx())).nonzero().item()
        assert g.edge_attr[e, STEREO].tolist() == [1, 0, 0, 0, 0]


def test_v2_e_and_z_differ_in_the_pairs_across_the_bond_alone():
    """E- and Z-but-2-ene: version 2 gives the same graph but for the cis / trans slots of the
    pairs across the double bond (version 1: the bond's own E / Z label)."""
    e, z = (mol_to_graph(prepare_mol(s), featurisation=2) for s in ("C/C=C/C", "C/C=C\\C"))
    assert torch.equal(e.atom_feat, z.atom_feat) and torch.equal(e.edge_index, z.edge_index)
    differ = (e.edge_attr != z.edge_attr).any(dim=1)
    assert differ.any() and torch.all(e.edge_attr[differ][:, HOP][:, 2] == 1)


def test_v2_double_bond_features_ignore_atom_maps():
    """RDKit labels this oxime's bond E with atom maps on every atom and Z without (other
    stereo atoms, same configuration): version 1's feature changes with the maps, version 2's
    does not."""
    plain = prepare_mol("COc1cc(C)c2occ(/C(C)=N\\O)c2c1")
    mapped = Chem.Mol(plain)
    for atom in mapped.GetAtoms():
        atom.SetAtomMapNum(atom.GetIdx() + 1)
    Chem.AssignStereochemistry(mapped, cleanIt=True, force=True)
    labels = {m.GetBondWithIdx(i).GetStereo() for m in (plain, mapped) for i in specified_double_bonds(m)}
    assert len(labels) == 2                       # RDKit's labels differ: the case this is about
    assert not torch.equal(mol_to_graph(plain, featurisation=1).edge_attr,
                           mol_to_graph(mapped, featurisation=1).edge_attr)
    assert torch.equal(mol_to_graph(plain, featurisation=2).edge_attr,
                       mol_to_graph(mapped, featurisation=2).edge_attr)


@pytest.mark.parametrize("smiles, mapped", [
    ("CC(C)O", "[CH3:1][C@H:2]([CH3:3])[OH:4]"),                   # two methyls: no centre
    ("CC=C(C)C", "[CH3:1]/[CH:2]=[C:3](/[CH3:4])[CH3:5]"),         # two methyls: no E/Z
    ("CC[C@H](C)CC", "[CH3:1][CH2:2][C@H:3]([CH3:4])[CH2:5][CH3:6]"),
    ("C[C@H](N)C(=O)O", "[CH3:1][C@H:2]([NH2:3])[C:4](=[O:5])[OH:6]"),  # a centre: kept
])
def test_atom_maps_change_no_stereo(smiles, mapped):
    """RDKit's stereo perception counts atom-map numbers as if they were atom properties: with
    them it keeps a chiral tag on an isopropyl CH and E/Z on a bond with two methyls at one end
    (and, reading 3D, tags every methyl whose hydrogens are mapped). prepare_mol removes the map
    numbers, so a mapped SMILES or 3D record has the molecule's own stereo and graph."""
    plain, from_mapped = prepare_mol(smiles), prepare_mol(mapped)
    assert specified_centres(from_mapped) == specified_centres(plain)
    assert specified_double_bonds(from_mapped) == specified_double_bonds(plain)
    assert not any(a.GetAtomMapNum() for a in from_mapped.GetAtoms())
    assert Chem.MolToSmiles(from_mapped) == Chem.MolToSmiles(plain)
    for featurisation in FEATURISATIONS:                        # same atom order: same graph
        g, g_mapped = (mol_to_graph(m, featurisation=featurisation) for m in (plain, from_mapped))
        assert torch.equal(g.atom_feat, g_mapped.atom_feat) and torch.equal(g.edge_attr, g_mapped.edge_attr)
    # a 3D record with every atom mapped, hydrogens included
    block = Chem.MolToMolBlock(_embedded(smiles))
    record = Chem.MolFromMolBlock(block, removeHs=False)
    for atom in record.GetAtoms():
        atom.SetAtomMapNum(atom.GetIdx() + 1)
    expected = _read_back(block)
    got = prepare_mol(record)
    assert specified_centres(got) == specified_centres(expected)
    assert torch.equal(mol_to_graph(got, featurisation=2).edge_attr, mol_to_graph(expected, featurisation=2).edge_attr)


# CCD component HBE (an epoxy-cyclohexane tetrol, model coordinates from PDB 6IBR): the epoxide
# carbon 4 lies next to a face of its neighbours' tetrahedron, one of its four signed volumes has
# the other sign
HBE_ELEMENTS = "CCCCCCOOOCOO" + "H" * 12
HBE_BONDS = [(10, 9), (9, 5), (5, 2), (5, 3), (11, 3), (2, 1), (2, 6), (3, 4), (1, 7), (1, 0), (4, 0),
             (0, 8), (0, 12), (1, 13), (2, 14), (3, 15), (4, 16), (5, 17), (6, 18), (7, 19), (8, 20),
             (9, 21), (9, 22), (10, 23), (4, 11)]
HBE_XYZ = [(-28.506, 17.894, -1.860), (-29.070, 18.666, -3.054), (-27.904, 19.355, -3.720),
           (-26.935, 16.974, -3.655), (-27.291, 16.999, -2.185), (-26.997, 18.309, -4.383),
           (-27.177, 20.140, -2.737), (-29.983, 19.668, -2.619), (-29.536, 17.116, -1.294),
           (-25.608, 18.898, -4.576), (-24.800, 18.002, -5.325), (-27.883, 16.039, -4.151),
           (-28.173, 18.636, -1.119), (-29.547, 17.968, -3.757), (-28.292, 20.022, -4.504),
           (-25.919, 16.566, -3.762), (-26.920, 16.246, -1.474), (-27.409, 18.114, -5.384),
           (-27.762, 20.777, -2.344), (-30.727, 19.257, -2.195), (-29.196, 16.632, -0.551),
           (-25.146, 19.070, -3.593), (-25.689, 19.853, -5.116), (-23.935, 18.377, -5.441)]


def hbe_record() -> Chem.Mol:
    """CCD HBE as a 3D record without stereo tags (RDKit perceives them from the coordinates)."""
    rw = Chem.RWMol()
    for symbol in HBE_ELEMENTS:
        rw.AddAtom(Chem.Atom(symbol))
    for i, j in HBE_BONDS:
        rw.AddBond(i, j, Chem.BondType.SINGLE)
    conf = Chem.Conformer(rw.GetNumAtoms())
    for k, xyz in enumerate(HBE_XYZ):
        conf.SetAtomPosition(k, xyz)
    rw.AddConformer(conf)
    record = rw.GetMol()
    Chem.SanitizeMol(record)
    return record


def test_a_3d_record_has_the_same_stereo_in_any_atom_order():
    """RDKit reads a centre's tag from 3D with its first three neighbours: at a centre whose four
    signed volumes do not share a sign (55 of the CCD's 43,367 components with model coordinates)
    the same coordinates gave either tag, by the atom order; prepare_mol reads all four (the tag
    of the sum, :func:`centre_tag`), so every order gives one molecule and one renumbered graph."""
    record = hbe_record()
    volumes = centre_volumes(np.array(HBE_XYZ), 4, bond_order_neighbours(record, 4))
    assert (volumes > 0).any() and (volumes < 0).any()              # the case this is about
    mol = prepare_mol(record)
    g = mol_to_graph(mol, featurisation=2)
    pos = mol.GetConformer().GetPositions()
    assert all(tag == centre_tag(pos, mol, i) for i, tag in specified_centres(mol).items())
    rng = np.random.default_rng(0)
    for _ in range(12):                         # atoms and bonds in other orders
        other, perm = _rewritten(mol, rng)
        assert Chem.MolToSmiles(other) == Chem.MolToSmiles(mol)
        assert _is_renumbered(g, mol_to_graph(other, featurisation=2), perm)


def test_featurisation_versions():
    mol = prepare_mol("C[C@H](N)O")
    with pytest.raises(ValueError, match=r"^unknown featurisation version 3 \(this molscore knows 1 and 2\)$"):
        mol_to_graph(mol, featurisation=3)
    assert meta_featurisation({}) == 1 and meta_featurisation({"featurisation": 2}) == 2
    with pytest.raises(ValueError, match="unknown featurisation version '2'"):
        meta_featurisation({"featurisation": "2"})
    unspecified = mol_to_graph(prepare_mol("CC(N)O"), featurisation=2).atom_feat[:, TAG]
    assert torch.all(unspecified == torch.tensor([0.0, 0, 1, 0]))


def test_pos_from_conformer():
    mol = prepare_mol("CCO")
    cids = list(AllChem.EmbedMultipleConfs(mol, 2, randomSeed=3))
    g = mol_to_graph(mol, conf_id=cids[1], featurisation=V2)
    assert g.pos.shape == (9, 3) and g.pos.dtype == torch.float32
    assert np.allclose(g.pos.numpy(), mol.GetConformer(cids[1]).GetPositions(), atol=1e-5)


@pytest.mark.parametrize("smiles, kwargs, reason", [
    ("C1CC(", {}, "invalid SMILES"),
    ("CN(C)(C)(C)C", {}, "invalid SMILES"),            # valence
    ("", {}, "invalid SMILES"),
    ("CC[Fe]CC", {}, "unsupported element(s): Fe"),
    ("[Pt](Cl)(Cl)(N)N", {}, "unsupported element(s): Pt"),
    ("C[CH2]", {}, "radical electrons on atom 1"),
    # the option by both its names: the CLI's flag and the Python keyword
    ("CC(=O)[O-].[Na+]", {}, "2 fragments (salt or mixture); use --largest-fragment "
                             "(largest_fragment=True in Python)"),
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
    # atom-map numbers are no part of the graph
    assert atoms_match(a, "[NH2:1][C:2](=[O:3])[CH2:4][OH:5]")
    assert graph_signature(Chem.MolFromSmiles("[CH3:7]C(N)=O")) == graph_signature(Chem.MolFromSmiles("CC(N)=O"))


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


@pytest.mark.parametrize("featurisation", FEATURISATIONS)
@pytest.mark.parametrize("smiles", ["CCO", "CC(=O)Nc1ccc(O)cc1", "[NH3+]CC(=O)[O-]", "C/C=C/C(=O)O",
                                    "N[C@@H](Cc1ccccc1)C(=O)O"])
def test_a_smiles_and_its_3d_record_featurise_alike(smiles, featurisation):
    """Generation featurises the SMILES (hydrogens added by ``prepare_mol``), training a 3D
    record read with its hydrogens: every atom and edge feature must agree (the hydrogens'
    hybridisation was UNSPECIFIED, the "other" slot, from a SMILES and S from a record)."""
    from_smiles = prepare_mol(smiles)
    ref = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(ref, randomSeed=5) == 0
    record = Chem.MolFromMolBlock(Chem.MolToMolBlock(ref), removeHs=False, sanitize=False)
    from_3d = prepare_mol(record)
    g_s, g_d = (mol_to_graph(m, featurisation=featurisation) for m in (from_smiles, from_3d))
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
