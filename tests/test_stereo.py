"""Stereo checker and repair on hand-built conformers."""
import re

import numpy as np
import pytest
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem, rdMolTransforms
from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

from _embedding import embed

from molscore.chem.embedding import embed_conformers
from molscore.chem.stereo import (_etkdg_params, _isomer_of_an_embedding, _legacy_stereo_perception, assign_unspecified_stereo, axis_atoms, axis_tag,
                                  check_stereo, dihedral, etkdg_failure_reason, fix_stereo, invert_centre,
                                  isomers_of_embeddings, mirror_conformer, specified_axes, specified_centres,
                                  specified_double_bonds, unkept_smiles_stereo, unspecified_stereo)

SMILES = "C/C=C/[C@@H](O)[C@H](N)C(=O)O"   # E double bond + two centres


def _rdkit_tags(mol: Chem.Mol, conf_id: int = 0) -> dict:
    copy = Chem.Mol(mol, False, conf_id)
    Chem.AssignStereochemistryFrom3D(copy, confId=conf_id)
    return {i: copy.GetAtomWithIdx(i).GetChiralTag() for i in specified_centres(mol)}


def test_embedded_conformers_pass():
    mol = embed(SMILES, 3)
    for conf in mol.GetConformers():
        report = check_stereo(mol, conf.GetId())
        assert report.ok and sorted(report.correct_centres) == sorted(specified_centres(mol))


def test_inverted_centre_is_caught_and_fixed_locally():
    mol = embed(SMILES)
    centres = sorted(specified_centres(mol))
    assert invert_centre(mol, centres[0])
    # the flip really inverted it (RDKit's own perception agrees)
    assert _rdkit_tags(mol)[centres[0]] != mol.GetAtomWithIdx(centres[0]).GetChiralTag()
    report = check_stereo(mol)
    assert report.inverted_centres == [centres[0]] and report.correct_centres == [centres[1]]
    assert not report.ok and "inverted stereocentre" in report.reasons()[0]
    fixed = fix_stereo(mol)
    assert fixed.ok and fixed.inverted_locally == [centres[0]] and not fixed.mirrored


def test_mirror_image_is_reflected_back():
    mol = embed(SMILES)
    before = mol.GetConformer().GetPositions()
    mirror_conformer(mol)
    report = check_stereo(mol)
    assert sorted(report.inverted_centres) == sorted(specified_centres(mol))
    assert not report.flipped_bonds  # reflection keeps E/Z
    fixed = fix_stereo(mol)
    assert fixed.ok and fixed.mirrored
    after = mol.GetConformer().GetPositions()
    np.testing.assert_allclose(after, before, atol=1e-9)  # reflected twice


def test_flipped_double_bond_is_caught_and_not_hidden():
    mol = embed(SMILES)
    conf = mol.GetConformer()
    # C0-C1=C2-C3: E means the methyl and C3 are trans; make them cis
    rdMolTransforms.SetDihedralDeg(conf, 0, 1, 2, 3, 0.0)
    report = check_stereo(mol)
    bond = mol.GetBondBetweenAtoms(1, 2).GetIdx()
    assert report.flipped_bonds == [bond] and not report.inverted_centres
    assert not fix_stereo(mol).ok
    assert any("E/Z" in r for r in report.reasons())


def test_flat_centre_is_caught():
    mol = embed(SMILES)
    centre = sorted(specified_centres(mol))[0]
    pos = mol.GetConformer().GetPositions()
    nbrs = [n.GetIdx() for n in mol.GetAtomWithIdx(centre).GetNeighbors()]
    heavy = [i for i in nbrs if mol.GetAtomWithIdx(i).GetAtomicNum() > 1][:3]
    mol.GetConformer().SetAtomPosition(centre, pos[heavy].mean(0).tolist())
    assert centre in check_stereo(mol).flat_centres


def test_three_coordinate_centre_sulfoxide():
    mol = embed("C[S@@](=O)c1ccccc1")
    assert check_stereo(mol).ok
    assert invert_centre(mol, 1)
    assert check_stereo(mol).inverted_centres == [1]


def test_unspecified_stereo_assigned_deterministically():
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(O)C=CC[C@H](N)F"))
    chosen = [Chem.MolToSmiles(Chem.RemoveHs(assign_unspecified_stereo(mol, s))) for s in range(6)]
    again = [Chem.MolToSmiles(Chem.RemoveHs(assign_unspecified_stereo(mol, s))) for s in range(6)]
    assert chosen == again
    for smi, seed in zip(chosen, range(6)):
        iso = assign_unspecified_stereo(mol, seed)
        assert [a.GetAtomicNum() for a in iso.GetAtoms()] == [a.GetAtomicNum() for a in mol.GetAtoms()]
        assert len(specified_centres(iso)) == 2
        assert iso.GetAtomWithIdx(6).GetChiralTag() == mol.GetAtomWithIdx(6).GetChiralTag()
        assert "/" in smi or "\\" in smi
    assert len(set(chosen)) > 1
    specified = Chem.AddHs(Chem.MolFromSmiles("C[C@H](N)O"))
    assert assign_unspecified_stereo(specified, 3) is specified


def test_unspecified_stereo_passes_over_an_isomer_far_above_the_lowest():
    """Norcarane without stereo: the first ETKDG embedding of seeds 2, 3, 14 and 15 is
    trans-fused bicyclo[4.1.0]heptane, 28.7 kcal/mol above cis at its MMFF94s minimum, which
    ETKDG builds again, and was chosen. Hydrindane's cis and trans (0.5 kcal/mol apart) both
    stay possible."""
    def ring_fusion(smiles: str, seeds: range) -> set[str]:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        fused = set()
        for seed in seeds:
            iso = assign_unspecified_stereo(mol, seed)
            AllChem.EmbedMolecule(iso, _etkdg_params(seed, random_coords=True))
            pos = iso.GetConformer().GetPositions()
            a, b = (atom.GetIdx() for atom in iso.GetAtoms()                   # the ring fusion
                    if sum(n.IsInRing() for n in atom.GetNeighbors()) == 3)
            h = [next(n.GetIdx() for n in iso.GetAtomWithIdx(i).GetNeighbors() if n.GetAtomicNum() == 1)
                 for i in (a, b)]
            fused.add("cis" if abs(dihedral(pos[[h[0], a, b, h[1]]])) < 90 else "trans")
        return fused

    assert ring_fusion("C1CCC2CC2C1", range(20)) == {"cis"}
    assert ring_fusion("C1CCC2CCCC2C1", range(20)) == {"cis", "trans"}


def test_assigned_stereo_is_embeddable_with_and_without_a_seed():
    # two assignments of the bridgehead N of this fused azetidine; only one closes both rings
    mol = Chem.AddHs(Chem.MolFromSmiles("N#CC[C@H]1[C@@H]2CCN1C2"))
    isomers = [Chem.Mol(m) for m in EnumerateStereoisomers(mol, options=StereoEnumerationOptions(onlyUnassigned=True))]
    embeds = [AllChem.EmbedMolecule(Chem.Mol(m), randomSeed=7, maxAttempts=20) == 0 for m in isomers]
    assert sorted(embeds) == [False, True]
    for seed in (None, 0, 1, 2, 3):
        chosen = assign_unspecified_stereo(mol, seed)
        assert AllChem.EmbedMolecule(Chem.Mol(chosen), randomSeed=7) == 0
    first = Chem.MolToSmiles(assign_unspecified_stereo(mol, None))
    assert first == Chem.MolToSmiles(assign_unspecified_stereo(mol, None))


def test_unspecified_stereo_is_that_of_an_embedding_when_etkdg_builds_it_again():
    for smiles in ("CC(O)C=CC(N)CC1CCC(C)CC1",                     # centres, E/Z, ring cis/trans
                   "Cc1cc(C)cc(NC(=O)CC23CC4CC(C2)CC(n2nnc(C)n2)(C4)C3)c1"):   # adamantane
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        chosen = [assign_unspecified_stereo(mol, seed) for seed in range(6)]
        for seed, iso in enumerate(chosen):
            assert Chem.MolToSmiles(iso) == Chem.MolToSmiles(_isomer_of_an_embedding(mol, seed))
            assert AllChem.EmbedMolecule(Chem.Mol(iso), randomSeed=7) == 0
            assert not unspecified_stereo(iso)
        if smiles.startswith("CC(O)"):
            assert len({Chem.MolToSmiles(iso) for iso in chosen}) > 1          # the seed decides


@pytest.mark.parametrize("smiles", ["CC=CC(C)O", "CCC(C)=NO", "C1=CCCCCCC1"])
def test_unspecified_double_bonds_get_one_isomer_under_rdkits_new_stereo_perception(smiles):
    """With RDKit's new stereo perception (``RDK_USE_LEGACY_STEREO_PERCEPTION=0``, or
    ``Chem.SetUseLegacyStereoPerception(False)``) a double bond read from 3D is labelled
    STEREOCIS / STEREOTRANS, not E / Z: before, the chosen isomer left such a bond
    unspecified, and the conformers mixed E and Z."""
    with _legacy_stereo_perception(False):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        for seed in (0, 1):
            iso = assign_unspecified_stereo(mol, seed)
            assert not unspecified_stereo(iso)
            assert len(specified_double_bonds(iso)) == 1
            for other in isomers_of_embeddings(mol, seed, 4):
                assert len(specified_double_bonds(other)) == 1


@pytest.mark.parametrize("e_smiles, z_smiles", [("C/C(CC)=N\\O", "C/C(CC)=N/O"),
                                                ("F/C(Cl)=C(/Br)I", "F/C(Cl)=C(\\Br)I")])
def test_e_z_labels_are_checked_after_rdkits_stereo_perception_is_switched(e_smiles, z_smiles):
    """A molecule parsed under RDKit's legacy perception (E / Z labels) and checked after
    ``Chem.SetUseLegacyStereoPerception(False)``, whose 3D read-back labels bonds cis / trans:
    the labels were compared as they were, and every conformer had wrong E/Z (generate
    failed with 'no conformer passed the checks'). E and Z are now judged by the dihedral of
    their stereo atoms, the CIP-highest neighbours; a conformer of the other isomer still fails."""
    e_mol = Chem.AddHs(Chem.MolFromSmiles(e_smiles))
    assert AllChem.EmbedMolecule(e_mol, randomSeed=7) == 0
    z_mol = Chem.AddHs(Chem.MolFromSmiles(z_smiles))
    z_mol.AddConformer(Chem.Conformer(e_mol.GetConformer()), assignId=True)   # E coordinates
    with _legacy_stereo_perception(False):
        assert check_stereo(e_mol).ok
        report = check_stereo(z_mol)
        assert not report.ok and len(report.flipped_bonds) == 1


def test_a_cage_whose_isomers_fail_rdkits_embedding_test_gets_the_isomer_of_an_embedding():
    # a bicyclo[2.1.0] oxetane (GEOM QM9): RDKit's tryEmbedding embeds none of its 8 isomers
    mol = Chem.AddHs(Chem.MolFromSmiles("O=CCC1(O)C2COC21"))
    opts = StereoEnumerationOptions(onlyUnassigned=True, tryEmbedding=True)
    with rdBase.BlockLogs():
        assert list(EnumerateStereoisomers(mol, options=opts)) == []
    chosen = {}
    for seed in (0, 1, 2, None):
        iso = assign_unspecified_stereo(mol, seed)
        assert len(specified_centres(iso)) == 3
        assert [a.GetAtomicNum() for a in iso.GetAtoms()] == [a.GetAtomicNum() for a in mol.GetAtoms()]
        chosen[seed] = Chem.MolToSmiles(Chem.RemoveHs(iso))
        assert chosen[seed] == Chem.MolToSmiles(Chem.RemoveHs(assign_unspecified_stereo(mol, seed)))
        params = AllChem.ETKDGv3()
        params.randomSeed = 5
        made = embed_conformers(iso, 4, params)                 # its strained-cage fallback
        assert made.GetNumConformers() >= 1
        assert all(check_stereo(made, c.GetId()).ok for c in made.GetConformers())
    assert len(set(chosen.values())) > 1
    # the same isomer without explicit hydrogens; double bonds left open are read as embedded
    assert Chem.MolToSmiles(assign_unspecified_stereo(Chem.MolFromSmiles("O=CCC1(O)C2COC21"), 0)) == chosen[0]
    iso = _isomer_of_an_embedding(Chem.AddHs(Chem.MolFromSmiles("CC=CC(O)C=CCC")), 3)
    assert len(specified_centres(iso)) == 1 and len(specified_double_bonds(iso)) == 2
    assert AllChem.EmbedMolecule(iso, randomSeed=9) == 0 and check_stereo(iso).ok


@pytest.mark.parametrize("smiles", ["C[C@H](N)C(=O)O", "C[S@](=O)c1ccccc1", "C[N@+](CC)(CCC)Cc1ccccc1",
                                    "O[C@H]1CCCC[C@@H]1N"])
def test_centre_tag_agrees_with_rdkit_structure_perception(smiles):
    from molscore.chem.stereo import centre_tag

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = 11
    AllChem.EmbedMultipleConfs(mol, 3, params)
    for conf in mol.GetConformers():
        ref = Chem.Mol(mol)
        Chem.AssignAtomChiralTagsFromStructure(ref, confId=conf.GetId())
        for idx, tag in specified_centres(mol).items():
            assert centre_tag(conf.GetPositions(), mol, idx) == ref.GetAtomWithIdx(idx).GetChiralTag() == tag


@pytest.mark.parametrize("smiles", ["O=C=N[P@H]Cl", "C[N@+](CC)(CCC)Cc1ccccc1"])
def test_centres_rdkit_does_not_perceive_from_3d_are_checked_and_repaired(smiles):
    # AssignStereochemistryFrom3D leaves these centres unspecified; a check built on it
    # called every conformer (and its mirror image) inverted
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = 11
    cid = AllChem.EmbedMolecule(mol, params)
    first = check_stereo(mol, cid).ok
    mirror_conformer(mol, cid)
    second = check_stereo(mol, cid).ok
    assert first != second
    if second:
        mirror_conformer(mol, cid)                     # keep the wrong-handed one
    report = fix_stereo(mol, cid)
    assert report.ok and report.mirrored and check_stereo(mol, cid).ok


STRAINED = ["CN[C@@]12C[C@]1(O)CC2=O", "C[C@]12CN3[C@H]1[C@]3(CO)C2", "O=C1[C@H]2CN2[C@H]1[C@H]1CO1"]


@pytest.mark.parametrize("smiles", STRAINED)
def test_bridgeheads_of_fused_small_rings_are_read_from_all_four_volumes(smiles):
    """In ETKDG + MMFF94 conformers these centres lie close to a face of their neighbours'
    tetrahedron (one signed volume near 0, where the flatness test used to fail every
    conformer, and where RDKit's own perception from 3D gets the first molecule's C4 wrong):
    they are correct, their mirror images are inverted, and the mirror is repaired."""
    from molscore.chem.stereo import centre_volumes

    mol = embed(smiles, 5)
    AllChem.MMFFOptimizeMoleculeConfs(mol)
    centres = specified_centres(mol)
    smallest = min(np.abs(centre_volumes(conf.GetPositions(), idx,
                                         [b.GetOtherAtomIdx(idx) for b in mol.GetAtomWithIdx(idx).GetBonds()])).min()
                   for conf in mol.GetConformers() for idx in centres)
    assert smallest < 0.2                        # the case the one weak volume is allowed for
    for conf in mol.GetConformers():
        report = check_stereo(mol, conf.GetId())
        assert report.ok and sorted(report.correct_centres) == sorted(centres)
        mirror_conformer(mol, conf.GetId())
        assert sorted(check_stereo(mol, conf.GetId()).inverted_centres) == sorted(centres)
        repaired = fix_stereo(mol, conf.GetId())
        assert repaired.ok and repaired.mirrored


def test_centre_volumes_of_regular_flat_and_distorted_centres():
    from molscore.chem.stereo import _clearly_handed, centre_volumes

    tetra = np.array([[0, 0, 0], [1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float)
    vols = centre_volumes(tetra, 0, [1, 2, 3, 4])
    assert vols == pytest.approx([vols[0]] * 4) and abs(vols[0]) == pytest.approx(0.7698, abs=1e-4)
    assert centre_volumes(tetra * [-1, 1, 1], 0, [1, 2, 3, 4]) == pytest.approx(-vols)
    assert centre_volumes(tetra, 0, [1, 2, 3]) == pytest.approx([np.linalg.det(tetra[1:4] / np.sqrt(3))])
    for small_ring in (False, True):
        assert _clearly_handed(vols, small_ring, 0.2)
        square = np.array([[0, 0, 0], [1, 0, 0.05], [0, 1, -0.05], [-1, 0, 0.05], [0, -1, -0.05]])
        assert not _clearly_handed(centre_volumes(square, 0, [1, 2, 3, 4]), small_ring, 0.2)
        # three neighbours tipped past the centre towards the fourth: outside the tetrahedron
        tipped = np.array([[0, 0, 0], [0.94, 0, 0.5], [-0.47, 0.82, 0.5], [-0.47, -0.82, 0.5], [0, 0, 1]])
        assert not _clearly_handed(centre_volumes(tipped, 0, [1, 2, 3, 4]), small_ring, 0.2)
    # one volume near zero, the others clear: allowed only in a three- or four-membered ring
    on_face = np.array([[0, 0, 0], [1, 0, 0], [-0.5, 0.87, 0], [-0.5, -0.87, -0.05], [0, 0.3, 1]])
    near_face = centre_volumes(on_face, 0, [1, 2, 3, 4])
    assert (np.abs(near_face) < 0.2).sum() == 1
    assert _clearly_handed(near_face, True, 0.2) and not _clearly_handed(near_face, False, 0.2)
    # a fused small-ring bridgehead just outside its neighbours' tetrahedron (volumes of an
    # ETKDG embedding of a QM9 cage): handed in a small ring only
    bridgehead = np.array([0.73, 0.62, -0.38, 0.10])
    assert _clearly_handed(bridgehead, True, 0.2) and not _clearly_handed(bridgehead, False, 0.2)


def test_etkdg_failure_reason_blames_stereo_only_when_it_is_to_blame():
    impossible = Chem.AddHs(Chem.MolFromSmiles("N#CC[C@H]1[C@@H]2CC[N@]1C2"))
    assert AllChem.EmbedMolecule(Chem.Mol(impossible), randomSeed=3, maxAttempts=20) == -1
    assert etkdg_failure_reason(impossible).startswith("ETKDG cannot embed the specified stereo")
    # no specified stereo: nothing to blame it on
    assert etkdg_failure_reason(Chem.AddHs(Chem.MolFromSmiles("N#CCC1C2CCN1C2"))) == "ETKDG embedding failed"


def test_isomers_of_embeddings_are_distinct_and_most_frequent_first():
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(O)C=CC(N)C"))        # two centres, one double bond
    isomers = isomers_of_embeddings(mol, 4, 20)
    smiles = [Chem.MolToSmiles(Chem.RemoveHs(m)) for m in isomers]
    assert len(set(smiles)) == len(smiles) > 1
    for iso in isomers:
        assert [a.GetAtomicNum() for a in iso.GetAtoms()] == [a.GetAtomicNum() for a in mol.GetAtoms()]
        assert len(specified_centres(iso)) == 2 and len(specified_double_bonds(iso)) == 1
    # the same 20 embeddings read by RDKit's own 3D perception give the same ranking
    probe = Chem.Mol(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed, params.useRandomCoords = 5, True
    seen = []
    for cid in AllChem.EmbedMultipleConfs(probe, 20, params):
        copy = Chem.Mol(probe, confId=cid)
        Chem.AssignStereochemistryFrom3D(copy)
        seen.append(Chem.MolToSmiles(Chem.RemoveHs(copy)))
    counts = [seen.count(s) for s in smiles]
    assert sorted(set(seen)) == sorted(smiles) and counts == sorted(counts, reverse=True)
    assert sum(counts) == 20
    assert isomers_of_embeddings(Chem.AddHs(Chem.MolFromSmiles("C[C@H](N)O")), 4, 5) == []


_WAVY_AND_CROSSED = """
     RDKit          2D

  7  6  0  0  0  0  0  0  0  0999 V2000
   -2.8748   -0.2197    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
   -1.4825    0.3386    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
   -0.3029   -0.5880    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.0893   -0.0297    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    2.2689   -0.9563    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.3020    1.4551    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0
    3.6600   -0.4000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  2  3  2  3
  3  4  1  0
  4  5  1  0
  4  6  1  4
  5  7  1  0
M  END
"""


def test_stereo_a_molfile_marks_unknown_gets_one_isomer_like_unspecified_stereo():
    # a crossed double bond (E/Z unknown) and a wavy bond at a centre: RDKit reads them as
    # StereoSpecified.Unknown; left so, ETKDG gave conformers of several isomers
    mol = Chem.AddHs(Chem.MolFromMolBlock(_WAVY_AND_CROSSED))
    assert {str(si.specified) for si in Chem.FindPotentialStereo(mol)} == {"Unknown"}
    assert len(unspecified_stereo(mol)) == 2
    chosen = []
    for seed in range(4):
        iso = assign_unspecified_stereo(mol, seed)
        assert all(si.specified == Chem.StereoSpecified.Specified for si in Chem.FindPotentialStereo(iso))
        assert list(specified_centres(iso)) == [3] and list(specified_double_bonds(iso)) == [1]
        assert AllChem.EmbedMolecule(Chem.Mol(iso), randomSeed=7) == 0
        chosen.append(Chem.MolToSmiles(Chem.RemoveHs(iso)))
    assert len(set(chosen)) > 1                                      # the seed decides
    for iso in isomers_of_embeddings(mol, 0, 10):
        assert not unspecified_stereo(iso)


# cis/trans pairs of a spiro atom and the ring atom across its six-membered ring, which
# RDKit's FindPotentialStereo misses with explicit hydrogens (and its legacy perception reads
# from 3D): a spirohydantoin, a dimethylspiro[4.5]decane, GEOM-DRUGS's spiro piperidinium
SPIRO_PAIRS = {"OC1CCC2(CC1)NC(=O)NC2=O": [1, 4], "CC1CCC2(CC1)CC(C)CC2": [1, 4, 8],
               "CC(C)N1C(=O)CC2(CC[NH+](CCOC(=O)C(O)(c3ccccc3)c3ccccc3)CC2)C1=O": [7, 10]}


def _perceived_from_3d(mol: Chem.Mol, conf_id: int) -> str:
    """SMILES of conformer ``conf_id`` with its stereo as RDKit reads it from 3D alone."""
    copy = Chem.Mol(mol, False, conf_id)
    for atom in copy.GetAtoms():
        atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    Chem.AssignStereochemistryFrom3D(copy, confId=conf_id)
    return Chem.MolToSmiles(Chem.RemoveHs(copy))


@pytest.mark.parametrize("smiles", list(SPIRO_PAIRS))
def test_a_spiro_atoms_cis_trans_pair_is_chosen_and_every_conformer_has_it(smiles):
    """The chosen isomer left such a pair open, so that its conformers mixed both isomers
    (RDKit read either from them); now it is chosen, and every embedding has it."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert sorted(si.centeredOn for si in unspecified_stereo(mol)) == SPIRO_PAIRS[smiles]
    chosen = assign_unspecified_stereo(mol, 0)
    assert sorted(specified_centres(chosen)) == SPIRO_PAIRS[smiles] and not unspecified_stereo(chosen)
    params = AllChem.ETKDGv3()
    params.randomSeed = 7
    embedded = embed_conformers(chosen, 6, params)
    assert embedded.GetNumConformers() == 6
    for conf in embedded.GetConformers():
        assert check_stereo(embedded, conf.GetId()).ok
        assert _perceived_from_3d(embedded, conf.GetId()) == Chem.MolToSmiles(Chem.RemoveHs(chosen))


def test_stereo_found_only_with_or_only_without_explicit_hydrogens_is_open():
    # an N-H aziridine's N counts with its H explicit only, the spiro pair without: both open
    mol = Chem.AddHs(Chem.MolFromSmiles("NC(=O)C1CN1"))
    assert sorted(si.centeredOn for si in unspecified_stereo(mol)) == [3, 5]
    heavy = Chem.MolFromSmiles("OC1CCC2(CC1)NC(=O)NC2=O")
    assert sorted(si.centeredOn for si in unspecified_stereo(heavy)) == [1, 4]
    # the hydrogens first: the indices are still the molecule's own
    with_hs = Chem.AddHs(heavy)
    order = list(range(heavy.GetNumAtoms(), with_hs.GetNumAtoms())) + list(range(heavy.GetNumAtoms()))
    hydrogens_first = Chem.RenumberAtoms(with_hs, order)
    assert sorted(si.centeredOn for si in unspecified_stereo(hydrogens_first)) == \
        [order.index(1), order.index(4)]


def test_the_enumerated_isomer_takes_the_stereo_rdkits_enumeration_misses(monkeypatch):
    # when ETKDG cannot build the embedding's isomer, the enumeration's is taken; RDKit's
    # enumeration leaves the spiro pair open, which an embedding of its isomer then fills
    import molscore.chem.stereo as stereo_module
    monkeypatch.setattr(stereo_module, "_embeds", lambda mol, seed: False)
    mol = Chem.AddHs(Chem.MolFromSmiles("CC1CCC2(CC1)CC(C)CC2"))
    chosen = assign_unspecified_stereo(mol, 0)
    assert sorted(specified_centres(chosen)) == [1, 4, 8] and not unspecified_stereo(chosen)


@pytest.mark.parametrize("smiles", ["OC1CCC2(CC1)NC(=O)NC2=O", "C[NH+]1CCC2(CC1)CCOC2",
                                    "O[C@H]1CC[C@@]2(CC1)NC(=O)NC2=O", "O[C@H]1CC[C@]2(CC1)NC(=O)NC2=O"])
def test_generated_conformers_of_a_spiro_cis_trans_pair_have_one_isomer(smiles, tmp_path):
    """``generate`` gave the unspecified spirohydantoin 4 conformers of each isomer (seed 1,
    ``n=8``); now one isomer, the ``smiles`` property's, and a specified one is kept."""
    from test_generate import make_tiny_checkpoint
    from molscore.generate import generate_conformers

    mol = generate_conformers(smiles, n=8, model=make_tiny_checkpoint(tmp_path / "tiny.pt"), steps=2,
                              seed=1, t_start=0.05, device="cpu")
    chosen = mol.GetProp("smiles")
    assert "@" in chosen and mol.GetNumConformers() == 8
    if "@" in smiles:
        assert chosen == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
    assert {_perceived_from_3d(mol, conf.GetId()) for conf in mol.GetConformers()} == {chosen}


def _embedded_as(reference: str, smiles: str) -> Chem.Mol:
    """``reference`` (explicit hydrogens) with one ETKDGv3 conformer (randomSeed 1) of
    ``smiles``, which must list the same atoms in the same order."""
    conformer = embed(smiles, seed=1)
    mol = Chem.AddHs(Chem.MolFromSmiles(reference))
    assert [a.GetAtomicNum() for a in mol.GetAtoms()] == [a.GetAtomicNum() for a in conformer.GetAtoms()]
    mol.AddConformer(conformer.GetConformer(), assignId=True)
    return mol


def _rdkit_reads_the_isomer(mol: Chem.Mol) -> bool:
    """Whether RDKit's perception from 3D (with molscore's additions) gives ``mol``'s isomer."""
    from molscore.chem.stereo import assign_stereo_from_3d

    seen = Chem.Mol(mol)
    assign_stereo_from_3d(seen)
    return Chem.MolToSmiles(Chem.RemoveHs(seen)) == Chem.MolToSmiles(Chem.RemoveHs(mol))


# (specified isomer, the same isomer written with its symmetric centres inverted)
SYMMETRIC = [("C[C@H]1C[C@H]1C", "C[C@@H]1C[C@@H]1C"),                       # cis-1,2-dimethylcyclopropane
             ("C[C@@H]1CC[C@@H]1C", "C[C@H]1CC[C@H]1C"),                      # cis-1,2-dimethylcyclobutane
             ("O=C(O)[C@H](O)[C@@H](O)[C@H](O)C(=O)O",                        # meso, pseudo-asymmetric C3
              "O=C(O)[C@@H](O)[C@H](O)[C@@H](O)C(=O)O"),
             ("C[C@H]1CC[C@@H](C)CC1", "C[C@@H]1CC[C@H](C)CC1"),              # cis-1,4
             ("N[C@@H]1CC[C@H](CC1)C(=O)O", "N[C@H]1CC[C@@H](CC1)C(=O)O"),    # trans-1,4 (tranexamic acid)
             ("C[C@@H](O)[C@H]1CC[C@@H](C)CC1", "C[C@@H](O)[C@@H]1CC[C@H](C)CC1")]  # and a true centre


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("smiles,relabelled", SYMMETRIC)
def test_centres_inverted_together_by_a_symmetry_are_the_specified_isomer(smiles, relabelled, legacy):
    """A conformer of the specified isomer in which a symmetry of the molecule inverts
    centres together, as in the mirror image of a meso compound, passes the
    check and is left alone by the repair: RDKit reads the specified isomer from it. Each
    single centre inverted alone is still wrong. Both RDKit stereo perceptions."""
    with _legacy_stereo_perception(legacy):
        _check_symmetric_relabelling(smiles, relabelled)


def _check_symmetric_relabelling(smiles: str, relabelled: str) -> None:
    assert Chem.CanonSmiles(smiles) == Chem.CanonSmiles(relabelled)
    mol = _embedded_as(smiles, relabelled)
    assert _rdkit_reads_the_isomer(mol)
    assert check_stereo(mol).ok
    before = mol.GetConformer().GetPositions()
    report = fix_stereo(mol)
    assert report.ok and not report.mirrored and not report.inverted_locally
    np.testing.assert_array_equal(mol.GetConformer().GetPositions(), before)
    for idx in specified_centres(mol):
        wrong = Chem.Mol(mol)
        assert invert_centre(wrong, idx)
        assert not _rdkit_reads_the_isomer(wrong) and not check_stereo(wrong).ok


@pytest.mark.parametrize("smiles", ["C[C@H]1C[C@@H]1C", "C[C@H]1O[C@@H]1C", "C[C@H]1CCCC[C@@H]1C",
                                    "[2H][C@@H](C)O", "C[S@](=O)c1ccccc1", "C[N@+](CC)(CCC)c1ccccc1",
                                    "C[P@@](=O)(CC)c1ccccc1", "C[C@H]1C[N@@]1C"])
def test_the_mirror_image_of_a_chiral_molecule_still_fails(smiles):
    mol = embed(smiles, seed=1)
    assert check_stereo(mol).ok
    mirror_conformer(mol)
    assert not _rdkit_reads_the_isomer(mol)
    report = check_stereo(mol)
    assert sorted(report.inverted_centres) == sorted(specified_centres(mol))


def test_the_repair_flips_only_the_centre_that_changes_the_isomer():
    # of the true centres 1 and 7, 1 is inverted; the ring's 1,4-pair (3, 6) is inverted by its symmetry
    assert (Chem.CanonSmiles("C[C@@H](O)[C@H]1CC[C@@H]([C@H](C)F)CC1")
            == Chem.CanonSmiles("C[C@@H](O)[C@@H]1CC[C@H]([C@H](C)F)CC1"))
    mol = _embedded_as("C[C@@H](O)[C@H]1CC[C@@H]([C@H](C)F)CC1", "C[C@H](O)[C@@H]1CC[C@H]([C@H](C)F)CC1")
    assert not _rdkit_reads_the_isomer(mol)
    assert check_stereo(mol).inverted_centres == [1, 3, 6]
    report = fix_stereo(mol)
    assert report.ok and report.inverted_locally == [1] and _rdkit_reads_the_isomer(mol)


@pytest.mark.parametrize("smiles, reason", [
    ("CC=[C@]=CC", r"^axial stereo of cumulated double bonds \(from atom to atom: 1-3\) is not kept in 3D"),
    ("CC=[C@@]=C(F)Cl", r"^axial stereo of cumulated double bonds \(from atom to atom: 1-3\)"),
    ("C/C=C=C=C/C", r"^axial stereo of cumulated double bonds \(from atom to atom: 1-4\)"),
    ("C[C@@H]1CC[C@]2(CC1)CC[C@@H](C)CC2", r"^stereo at atom\(s\) 4 is dropped by RDKit's legacy stereo"),
    ("C/C=C1/C[C@H](C)C1", r"^stereo at atom\(s\) 4 and double bond\(s\) 1-2 is dropped by RDKit's legacy"),
    ("[H]/N=c/1/ccc(CC)no1", r"^stereo at double bond\(s\) 1-2 is dropped by RDKit's legacy"),
    # the tag on C(C)(C) is no centre, and atom 6 one only beside it: the new perception's
    # SMILES read again has none (not its fixed point), so it says nothing
    ("CC1(C)CC(N[C@H]2CC(C)(C)N[C@@](C)(C)C2)CC(C)(C)N1", None),
    ("CC(C)=[C@]=CC", None),                    # an end with two methyls: no stereo to keep
    ("C/C=C=C=C(C)C", None),
    ("CC=C=CC", None),
    ("C[C@@H]1CC[C@H](C)CC1", None),            # cis/trans as RDKit's legacy perception keeps it
    ("OC(=O)[C@@H](N)C", None),
    ("C/C=N/O", None),
    ("C[C@H](O)F |&1:1|", None)])
def test_stereo_the_smiles_parser_drops_is_named(smiles, reason):
    """RDKit drops an allene's or cumulene's stereo, and (legacy perception) a spiro centre's
    and an alkylidene ring's, while it reads the SMILES; the conformers then came out with
    either configuration. Marks that are no stereo (alike substituents) are no reason. The
    process-wide perception setting is as it was afterwards."""
    legacy = Chem.GetUseLegacyStereoPerception()
    found = unkept_smiles_stereo(smiles)
    assert Chem.GetUseLegacyStereoPerception() == legacy
    if reason is None:
        assert found is None
    else:
        assert re.match(reason, found), found
        assert found.endswith("give the molecule without it")


def test_a_cage_diastereomer_that_explicit_hydrogens_hide_from_rdkits_canonical_smiles_is_wrong():
    """A conformer ``generate`` wrote (``tests/data/cage_diastereomer.sdf``, provenance in the
    file) has the four CH centres of the cage inverted against its SMILES: another isomer, as
    the centres read from 3D and the canonical SMILES without hydrogens say. RDKit's canonical
    SMILES with explicit hydrogens writes one string for both, which made check_stereo take
    the inversion for a symmetry of the molecule."""
    from pathlib import Path

    record = next(iter(Chem.SDMolSupplier(str(Path(__file__).parent / "data" / "cage_diastereomer.sdf"),
                                          removeHs=False)))
    mol = Chem.AddHs(Chem.MolFromSmiles(record.GetProp("reference_smiles")))
    assert [a.GetAtomicNum() for a in mol.GetAtoms()] == [a.GetAtomicNum() for a in record.GetAtoms()]
    mol.AddConformer(record.GetConformer(), assignId=True)
    flipped = Chem.Mol(mol)
    for idx in (4, 5, 7, 8):
        flipped.GetAtomWithIdx(idx).InvertChirality()
    assert Chem.MolToSmiles(Chem.RemoveHs(flipped)) != Chem.MolToSmiles(Chem.RemoveHs(mol))
    report = check_stereo(mol)
    assert not report.ok and report.inverted_centres == [4, 5, 7, 8]


BINOL = "Oc1ccc2ccccc2c1-c1c(O)ccc2ccccc12"            # axis: bond 10, atoms 10-11
BINOL_ETHER = "CC[C@@H](C)Oc1ccc2ccccc2c1-c1c(O)ccc2ccccc12"   # axis: bond 14, atoms 14-15


def _rdkit_axis(mol: Chem.Mol, bond_idx: int, conf_id: int) -> Chem.BondStereo:
    """RDKit's reading of the axis from conformer ``conf_id`` (on a copy holding only that one:
    RDKit 2026.09 reads axes from the first conformer whatever ``confId``)."""
    copy = Chem.Mol(mol, confId=conf_id)
    Chem.AssignStereochemistryFrom3D(copy)
    return copy.GetBondWithIdx(bond_idx).GetStereo()


@pytest.mark.parametrize("wedge, label", [("wU", Chem.BondStereo.STEREOATROPCCW),
                                          ("wD", Chem.BondStereo.STEREOATROPCW)])
def test_an_atropisomer_axis_is_checked_and_its_mirror_image_reflected_back(wedge, label):
    """RDKit reads an atropisomer axis from a wedge beside it (CXSMILES ``|wU:...|``, a
    molfile's) and ETKDG embeds it; :func:`check_stereo` read no axis, so a conformer with the
    other atropisomer (its mirror image, the prior's samples half the time) passed."""
    mol = embed(f"{BINOL} |{wedge}:10.11|", 3)
    assert specified_axes(mol) == {10: label}
    assert axis_atoms(mol, 10) == (1, 10, 11, 12)
    for conf in mol.GetConformers():
        pos = conf.GetPositions()
        assert axis_tag(pos, mol, 10) == label == _rdkit_axis(mol, 10, conf.GetId())
        assert check_stereo(mol, conf.GetId()).ok
        mirror_conformer(mol, conf.GetId())
        assert _rdkit_axis(mol, 10, conf.GetId()) != label          # RDKit reads the other one
        report = check_stereo(mol, conf.GetId())
        assert report.wrong_axes == [10] and not report.ok
        assert report.reasons() == ["wrong atropisomer axis at bond(s) 10"]
        report = fix_stereo(mol, conf.GetId())
        assert report.ok and report.mirrored
        assert np.allclose(conf.GetPositions(), pos)


def test_a_wrong_axis_beside_a_right_centre_is_reported_and_an_inverted_centre_beside_a_right_axis_flipped():
    """A conformer of the other atropisomer with the right centre is wrong (no repair); its
    mirror image has the right axis but the inverted centre, which is flipped locally: mirroring
    it, as for any conformer whose centres are all inverted, would turn the axis."""
    mol = embed(f"{BINOL_ETHER} |wU:14.15|")
    other = embed(f"{BINOL_ETHER} |wD:14.15|")
    assert specified_axes(mol) == {14: Chem.BondStereo.STEREOATROPCCW}
    mol.RemoveAllConformers()
    mol.AddConformer(other.GetConformer(), assignId=True)
    report = fix_stereo(mol)
    assert report.correct_centres == [2] and report.wrong_axes == [14] and not report.mirrored
    mirror_conformer(mol)
    report = fix_stereo(mol)
    assert report.ok and not report.mirrored and report.inverted_locally == [2]
    assert axis_tag(mol.GetConformer().GetPositions(), mol, 14) == Chem.BondStereo.STEREOATROPCCW
