"""ETKDG embedding with all hydrogens or with the stereocentres' only (molscore.chem.embedding)."""
import numpy as np
import pytest
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem

from molscore.chem import embedding
from molscore.chem.embedding import embed_conformers, embedding_skeleton
from molscore.chem.stereo import check_stereo, specified_centres

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
    attempts = [(skeleton_atoms, False), (skeleton_atoms, True), (mol.GetNumAtoms(), True)]
    assert tries == attempts                                   # too few conformers for probes
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


def test_a_pool_eigenvector_embedding_falls_short_of_is_topped_up_from_random_coordinates():
    """ETKDG's embedding from eigenvectors often fails on long flexible chains: 4 of 6 for this
    51-heavy-atom PEG (2 of 50 for one of 83 in ``bioactive_dev``), and the pool was those few,
    repeated. The missing ones come from random coordinates, after the same first ones."""
    mol = Chem.AddHs(Chem.MolFromSmiles("C" + "COC" * 16 + "CO"))
    eigen = Chem.Mol(mol)
    first = len(AllChem.EmbedMultipleConfs(eigen, 6, _params(1)))
    assert 0 < first < 6                  # the premise: RDKit falls short here
    params = _params(1)
    out = embed_conformers(mol, 6, params)
    assert out.GetNumConformers() == 6
    assert (params.useRandomCoords, params.maxIterations) == (False, 0)      # as before
    pos = np.stack([conf.GetPositions() for conf in out.GetConformers()])
    for k in range(first):                # the eigenvector conformers first, as they were
        np.testing.assert_array_equal(pos[k], eigen.GetConformer(k).GetPositions())
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    spread = [np.abs(pos[i][heavy] - pos[j][heavy]).max() for i in range(6) for j in range(i)]
    assert min(spread) > 1.0              # six different conformers, none repeated
    bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()])
    lengths = np.linalg.norm(pos[:, bonds[:, 0]] - pos[:, bonds[:, 1]], axis=-1)
    assert 0.9 < lengths.min() and lengths.max() < 1.6


def test_a_skeleton_conformer_whose_hydrogens_rdkit_cannot_place_is_left_out():
    """The skeleton's embedding puts two CH2 of this PEG in line (180 degrees) in 2 of 6
    conformers, and ``AddHs(addCoords=True)`` leaves their hydrogens at the origin (C-H 5.2 and
    11.0 Å): such pool conformers were returned, starts with a hydrogen far from its atom."""
    mol = Chem.AddHs(Chem.MolFromSmiles("C" + "COC" * 16 + "CO"))
    out = embed_conformers(mol, 6, _params(1), hydrogens="stereo")
    assert 0 < out.GetNumConformers() < 6
    bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()])
    for conf in out.GetConformers():
        pos = conf.GetPositions()
        lengths = np.linalg.norm(pos[bonds[:, 0]] - pos[bonds[:, 1]], axis=-1)
        assert 0.9 < lengths.min() and lengths.max() < 1.6


def _recorded(monkeypatch) -> list[tuple[int, bool, bool]]:
    """Each ``EmbedMultipleConfs`` call as (count, from random coordinates, with stereo)."""
    embed = AllChem.EmbedMultipleConfs
    calls = []

    def recording(work, count, params):
        calls.append((count, params.useRandomCoords, bool(specified_centres(work))))
        return embed(work, count, params)

    monkeypatch.setattr(embedding.AllChem, "EmbedMultipleConfs", recording)
    return calls


def test_an_isomer_etkdg_cannot_build_costs_probes_not_full_attempts(monkeypatch):
    calls = _recorded(monkeypatch)
    inverted = Chem.AddHs(Chem.MolFromSmiles("C1C[C@H]2CC[C@H]1C2"))     # norbornane, one bridgehead inverted
    out = embed_conformers(inverted, 30, _params())
    assert out.GetNumConformers() == 0
    # one conformer from eigenvectors and one from random coordinates, then one without
    # stereo, then as many as the two attempts would make (none with the stereo)
    assert calls == [(1, False, True), (1, True, True), (1, True, False), (60, True, False)]

    calls.clear()             # when the copy without stereo does not embed either, nothing is
    flat_fails = embedding.AllChem.EmbedMultipleConfs          # concluded: the full attempts run
    monkeypatch.setattr(embedding.AllChem, "EmbedMultipleConfs",
                        lambda work, count, params: flat_fails(work, count, params) if specified_centres(work) else [])
    count = embedding.PROBE_MIN_COUNT
    assert embed_conformers(inverted, count, _params()).GetNumConformers() == 0
    assert calls == [(1, False, True), (1, True, True), (count, False, True), (count, True, True)]
    monkeypatch.setattr(embedding.AllChem, "EmbedMultipleConfs", flat_fails)

    calls.clear()                                    # the real isomer: one probe, then the pool
    out = embed_conformers(Chem.AddHs(Chem.MolFromSmiles("C1C[C@H]2CC[C@@H]1C2")), 30, _params())
    assert out.GetNumConformers() == 30 and calls == [(1, False, True), (30, False, True)]
    calls.clear()                                    # too few conformers to be worth a probe
    out = embed_conformers(Chem.AddHs(Chem.MolFromSmiles("C1C[C@H]2CC[C@@H]1C2")), count - 1, _params())
    assert calls == [(count - 1, False, True)]


def test_a_cage_whose_first_conformer_fails_gets_the_conformers_it_had_without_probes():
    # a GEOM QM9 aziridine cage: ETKDG's first conformer fails from eigenvectors and from
    # random coordinates, but some of the copy without stereo have the stereo and the pool
    # has conformers: the probes change nothing
    mol = Chem.AddHs(Chem.MolFromSmiles("C#C[C@]12C[C@@]1(C)[C@@H]1CN12"))
    params = _params(1)
    params.numThreads = 0
    with rdBase.BlockLogs():
        assert not list(AllChem.EmbedMultipleConfs(Chem.Mol(mol), 1, _params(1)))
        out = embed_conformers(mol, 10, params)
        plain = Chem.Mol(mol)
        ids = list(AllChem.EmbedMultipleConfs(plain, 10, _params(1)))
    assert ids and out.GetNumConformers() == len(ids)
    for k, cid in enumerate(ids):
        np.testing.assert_array_equal(out.GetConformer(k).GetPositions(), plain.GetConformer(cid).GetPositions())


def test_params_are_as_before_after_a_random_coordinate_embedding():
    # RDKit's random-coordinate embedding sets these fields in place; left so, they change
    # the next embedding from eigenvectors (33 of 50 conformers of the QM9 cage
    # CN=C1O[C@H]2[C@@H](O)[C@@]12C from fresh parameters, 40 after one such embedding)
    fields = ("useRandomCoords", "initialEmbeddingMode", "basinThresh", "maxIterations")
    fresh = _params(1)
    params = _params(1)
    inverted = Chem.AddHs(Chem.MolFromSmiles("C1C[C@H]2CC[C@H]1C2"))
    assert embed_conformers(inverted, 4, params).GetNumConformers() == 0    # random coordinates tried
    assert [getattr(params, f) for f in fields] == [getattr(fresh, f) for f in fields]


def test_a_ctrl_c_that_rdkit_catches_while_embedding_is_raised():
    """RDKit's embedding takes SIGINT itself: it cancelled, returned no conformer and logged a
    line, and the caller went on (a generate run did not stop, and the molecule's conformers
    came from the later fallbacks). Now the Ctrl-C is raised when RDKit returns."""
    import os
    import signal
    import threading

    from molscore.chem.featurize import prepare_mol

    mol = prepare_mol("CC(C)Cc1ccc(cc1)C(C)C(=O)NCCCCCCCCCCCCNC(=O)C(C)c1ccc(CC(C)C)cc1")
    params = AllChem.ETKDGv3()
    params.randomSeed = 42
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))  # 2,000: minutes
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            embed_conformers(mol, 2000, params)
    finally:
        timer.cancel()


def test_rdkit_quiet_keeps_the_log_settings_it_found():
    """The interrupt's line is a warning: inside the block warnings are on even where the
    process turned them off (a dataset build's workers do), and after it as they were."""
    from molscore.chem.rdkit_log import rdkit_quiet

    rdBase.DisableLog("rdApp.warning")
    try:
        with rdkit_quiet():
            assert "rdApp.warning:enabled" in rdBase.LogStatus()
        assert "rdApp.warning:disabled" in rdBase.LogStatus()
    finally:
        rdBase.EnableLog("rdApp.warning")
    with rdkit_quiet():
        pass
    assert "rdApp.warning:enabled" in rdBase.LogStatus()
