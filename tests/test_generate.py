"""Conformer generation with a tiny randomly initialised model (pipeline, not quality)."""
import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

from _embedding import pose_syn_pentane

from molscore.chem.checks import GeometryChecker, Problems, check_geometry
from molscore.chem.embedding import embed_conformers
from molscore.chem.featurize import ATOM_FEAT_DIM, EDGE_FEAT_DIM, MoleculeError
from molscore.chem.metrics import rmsd_matrix
from molscore.chem.stereo import (ETKDG_STEREO_FAILED, axis_tag, check_stereo, specified_axes,
                                  specified_centres)
from molscore.chem.task import build_model
import molscore.chem.stereo as stereo_module
import molscore.generate as generate_module
from molscore.generate import (ConformerGenerator, GenerateOptions, default_pool, etkdg_random_seed,
                               generate_conformers)
from molscore.models.equivariant import build_backbone
from molscore.sde import VESDE

STEREO_SMILES = "C/C=C/[C@@H](O)[C@H](N)C(=O)O"


def make_tiny_checkpoint(path) -> str:
    """A random-weight conformer model checkpoint (the format of molscore.checkpoint)."""
    torch.manual_seed(0)
    net = build_backbone("painn", ATOM_FEAT_DIM, EDGE_FEAT_DIM, hidden_scalar=16, hidden_vector=4,
                         num_layers=1, cutoff=5.0, num_rbf=8, time_dim=8)
    meta = {"task": "conformers", "backbone": net.config(), "sde": VESDE(0.02, 15.0).config(),
            "parameterisation": "eps", "sigma_data": 1.0, "coord_scale": 1.0}
    torch.save({"model": build_model(meta).state_dict(), "meta": meta}, path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def test_prior_route_stereo_always_correct(tiny_model):
    smiles = "C[C@H](N)C(=O)O"
    mol = generate_conformers(smiles, n=4, model=tiny_model, steps=3, seed=3, max_retries=4,
                              device="cpu")
    heavy = Chem.MolFromSmiles(smiles)
    assert [a.GetAtomicNum() for a in mol.GetAtoms()][:heavy.GetNumAtoms()] == \
        [a.GetAtomicNum() for a in heavy.GetAtoms()]
    assert mol.GetNumAtoms() == Chem.AddHs(heavy).GetNumAtoms()   # explicit H
    dropped = mol.GetProp("dropped") if mol.HasProp("dropped") else ""
    assert 1 <= mol.GetNumConformers() <= 4
    assert mol.GetNumConformers() == 4 or dropped.startswith(f"{4 - mol.GetNumConformers()} of 4")
    for conf in mol.GetConformers():
        assert check_stereo(mol, conf.GetId()).ok       # wrong stereo is never returned
        assert conf.HasProp("checks") and conf.GetIntProp("conformer") >= 0
    assert mol.GetProp("smiles") == Chem.MolToSmiles(heavy)


def _binol_molfile_record() -> Chem.Mol:
    """BINOL as a 2D molfile record with a hashed wedge beside its axis (RDKit: STEREOATROPCW)."""
    mol = Chem.MolFromSmiles("Oc1ccc2ccccc2c1-c1c(O)ccc2ccccc12 |wD:10.11|")
    AllChem.Compute2DCoords(mol)
    return Chem.MolFromMolBlock(Chem.MolToMolBlock(mol))


@pytest.mark.parametrize("make", [lambda: "Oc1ccc2ccccc2c1-c1c(O)ccc2ccccc12 |wU:10.11|", _binol_molfile_record])
def test_prior_route_keeps_the_atropisomer_axis(tiny_model, make):
    """An atropisomer axis (RDKit reads it from a CXSMILES's or a molfile's wedge) was not
    checked: from the prior about half the conformers came out as the other atropisomer
    (the shipped model, ``-n 20``: 14 and 9 of 20), returned under the input's label; the
    ``smiles`` property did not write the axis."""
    given = make()
    given = Chem.MolFromSmiles(given) if isinstance(given, str) else given
    label = specified_axes(given)
    assert list(label) == [10]
    mol = generate_conformers(given, n=4, model=tiny_model, steps=3, seed=3, init="prior",
                              max_retries=4, device="cpu")
    assert specified_axes(mol) == label and mol.GetNumConformers() >= 1
    for conf in mol.GetConformers():
        assert axis_tag(conf.GetPositions(), mol, 10) == label[10]
    isomer = Chem.Mol(given)
    isomer.RemoveAllConformers()
    written = Chem.MolFromSmiles(mol.GetProp("smiles"))
    assert "|w" in mol.GetProp("smiles") and _axis_smiles(written) == _axis_smiles(isomer)
    other = Chem.Mol(isomer)
    other.GetBondWithIdx(10).SetStereo(Chem.BondStereo.STEREOATROPCW if label[10] == Chem.BondStereo.STEREOATROPCCW
                                       else Chem.BondStereo.STEREOATROPCCW)
    assert _axis_smiles(other) != _axis_smiles(isomer)


def _axis_smiles(mol: Chem.Mol) -> str:
    """Canonical CXSMILES of ``mol`` with its atropisomer axes (wedges)."""
    return Chem.MolToCXSmiles(mol, Chem.SmilesWriteParams(), Chem.CXSmilesFields.CX_BOND_ATROPISOMER)


def test_enhanced_stereo_groups_are_kept_in_the_smiles_property_and_the_sdf_input(tiny_model, tmp_path):
    """A racemate (``&1``) or a centre of unknown absolute configuration (``o1``) gets the
    tagged enantiomer's conformers, and the ``smiles`` property says what it is: it read as
    plain ``C[C@H](O)F``, one enantiomer. An SDF input's SMILES (its failures.csv text) too."""
    from molscore.chem.io import read_records

    for smiles in ("C[C@H](O)F |&1:1|", "C[C@H](O)F |o1:1|", "C[C@H](O)F"):
        mol = generate_conformers(smiles, n=1, model=tiny_model, steps=2, device="cpu")
        assert mol.GetProp("smiles") == smiles and mol.GetNumConformers() == 1
        with Chem.SDWriter(str(tmp_path / "in.sdf")) as writer:
            writer.write(mol)
        assert [r.smiles for r in read_records(str(tmp_path / "in.sdf"))] == [smiles]


def test_smiles_property_of_enhanced_stereo_is_the_conformers_isomer(tiny_model):
    """RDKit's CXSMILES writer inverts a stereo group's tags to its canonical form (it wrote
    ``C[C@@H](O)F |&1:1|`` as ``C[C@H](O)F |&1:1|``, and the group of 182 of 412 single-group
    variants of hard test molecules so): the ``smiles`` property then read as the other
    enantiomer or epimer than the conformers have. It keeps the tags as drawn."""
    from molscore.chem.io import record_smiles

    for smiles in ("C[C@@H](O)F |&1:1|", "C[C@H](O)[C@H](C)CC |&1:3|",
                   "C[C@H](O)[C@H](C)CC |o1:1,o2:3|", "C[C@@H](O)[C@H](C)CC |o1:1,3|"):
        given = Chem.MolFromSmiles(smiles)
        mol = generate_conformers(smiles, n=1, model=tiny_model, steps=2, device="cpu")
        prop = Chem.MolFromSmiles(mol.GetProp("smiles"))
        assert Chem.MolToSmiles(prop) == Chem.MolToSmiles(given)              # tags as drawn
        assert [len(g.GetAtoms()) for g in prop.GetStereoGroups()] == \
            [len(g.GetAtoms()) for g in given.GetStereoGroups()]
        perceived = Chem.Mol(mol)
        Chem.AssignStereochemistryFrom3D(perceived)
        assert Chem.MolToSmiles(Chem.RemoveHs(perceived)) == Chem.MolToSmiles(prop)
        assert record_smiles(given) == mol.GetProp("smiles")
    assert record_smiles(Chem.MolFromSmiles("OC[C@H](O)F |&1:2|")) == "OC[C@H](O)F |&1:2|"


def test_wrong_stereo_is_dropped_never_returned(tiny_model):
    # random weights: E/Z and two centres rarely come out right; whatever is returned is right
    gen = ConformerGenerator(tiny_model, device="cpu", n=3, steps=3, seed=0, max_retries=1)
    result = gen.generate(STEREO_SMILES)
    if result.mol is None:
        assert result.error.startswith("no conformer passed the checks after 1 ")
    else:
        assert all(check_stereo(result.mol, c.GetId()).ok for c in result.mol.GetConformers())
        assert result.mol.GetNumConformers() == 3 or "dropped" in result.dropped[0]


def test_etkdg_route_mol_input_keeps_atom_order(tiny_model):
    src = Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"), doRandom=True))
    mol = generate_conformers(src, n=4, model=tiny_model, steps=4, seed=1, init="etkdg",
                              t_start=0.05, relax=True, device="cpu")
    assert mol.GetNumConformers() == 4
    assert [a.GetSymbol() for a in mol.GetAtoms()][:src.GetNumAtoms()] == \
        [a.GetSymbol() for a in src.GetAtoms()]
    assert all(a.GetAtomicNum() == 1 for a in list(mol.GetAtoms())[src.GetNumAtoms():])
    for conf in mol.GetConformers():
        assert np.isfinite(conf.GetDoubleProp("energy"))
        assert check_geometry(mol, conf.GetId()) == [] and conf.GetProp("checks") == "ok"


def test_unspecified_stereo_recorded_and_dedupe(tiny_model):
    mol = generate_conformers("CC(O)CC", n=3, model=tiny_model, steps=4, seed=2, init="etkdg",
                              t_start=0.05, dedupe=100.0, device="cpu")
    assert mol.GetNumConformers() == 1                   # everything within 100 A of the first
    assert "@" in mol.GetProp("smiles") and len(specified_centres(mol)) == 1


def test_dedupe_is_greedy_in_conformer_order_over_symmetric_mappings():
    """docs/generate.md: a conformer within RMSD of one kept before it is dropped; RMSD is
    heavy-atom, after alignment, over symmetric mappings (a rotated copy with the two methyls
    of isobutanol's CH swapped counts as the same); ``--dedupe 0`` keeps every conformer."""
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(C)CO"))
    cids = list(AllChem.EmbedMultipleConfs(mol, 2, randomSeed=11))
    assert rmsd_matrix(mol, mol)[0, 1] > 0.2
    copy = Chem.Conformer(mol.GetConformer(cids[0]))
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    pos = copy.GetPositions() @ rot.T + 3.0
    pos[[0, 2]] = pos[[2, 0]]                         # the methyls' coordinates swapped
    for i, p in enumerate(pos):
        copy.SetAtomPosition(i, p.tolist())
    mol.AddConformer(copy, assignId=True)             # conformer 2: conformer 0 again
    assert generate_module._dedupe(mol, 0.1) == [0, 1]
    assert generate_module._dedupe(mol, 0.0) == [0, 1, 2]
    assert generate_module._dedupe(mol, 100.0) == [0]


def test_batched_run_keeps_order_and_reports_failures(tiny_model):
    gen = ConformerGenerator(tiny_model, device="cpu", n=2, steps=3, batch_size=40, seed=0)
    items = [("a", "CCO"), ("bad", "C1CC"), ("b", "c1ccccc1O"), ("metal", "C[Fe]"), ("c", "CCN")]
    results = list(gen.run(items))
    assert [r.name for r in results] == ["a", "bad", "b", "metal", "c"]
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert "invalid SMILES" in results[1].error and "Fe" in results[3].error
    assert results[2].mol.GetNumConformers() == 2


def test_an_impossible_stereoisomer_is_reported_as_such(tiny_model):
    gen = ConformerGenerator(tiny_model, device="cpu", n=2, pool=1, steps=2, seed=0)
    # the bridgehead N of a fused azetidine: only [N@@] closes both rings
    bad, good = gen.generate("N#CC[C@H]1[C@@H]2CC[N@]1C2"), gen.generate("N#CC[C@H]1[C@@H]2CC[N@@]1C2")
    assert bad.error.startswith("ETKDG cannot embed the specified stereo")
    assert "unspecified stereo in the input" not in bad.error
    assert good.ok and good.mol.GetNumConformers() == 2


def test_an_unembeddable_chosen_isomer_is_replaced_by_one_an_embedding_has(tiny_model, monkeypatch):
    """For some QM9 cages given without stereo the chosen isomer passes RDKit's embedding
    test yet ETKDG then builds no conformer of it (10 s per cage here, so the test stages it):
    the chooser takes an isomer of a fused azetidine whose bridgehead N cannot close both rings."""
    smiles = "N#CCC1C2CCN1C2"

    def unembeddable(mol, seed):
        for isomer in EnumerateStereoisomers(mol, options=StereoEnumerationOptions(onlyUnassigned=True)):
            if AllChem.EmbedMolecule(Chem.Mol(isomer), randomSeed=7) != 0:
                return isomer
        raise AssertionError("every isomer embeds")

    monkeypatch.setattr(stereo_module, "assign_unspecified_stereo", unembeddable)
    gen = ConformerGenerator(tiny_model, device="cpu", n=2, pool=1, steps=2, seed=0)
    done = gen.generate(smiles)
    assert done.ok and done.error is None and done.mol.GetNumConformers() == 2
    staged = unembeddable(Chem.AddHs(Chem.MolFromSmiles(smiles)), 0)
    assert done.mol.GetProp("smiles") != Chem.MolToSmiles(Chem.RemoveHs(staged))
    assert len(specified_centres(done.mol)) == 3            # both carbons and the bridgehead N
    assert all(check_stereo(done.mol, c.GetId()).ok for c in done.mol.GetConformers())
    # with no other isomer to try, the reason says what happened
    monkeypatch.setattr(generate_module, "MAX_OTHER_ISOMERS", 0)
    assert gen.generate(smiles).error == (
        ETKDG_STEREO_FAILED + " (unspecified stereo in the input was chosen: "
        "ETKDG embeds none of the 1 isomer(s) tried; give the isomer) (try --init prior)")


def test_an_isomer_etkdg_does_not_build_is_pointed_to_the_prior(tiny_model):
    """(E,E)-cyclonona-1,3-diene: ETKDG's probes build none of it (1 in about 20 full
    random-coordinate embeddings does), so the etkdg route fails it; the reason now points to
    ``--init prior``, which needs no ETKDG start and, with the shipped model, returns
    conformers of the isomer (checked from 3D)."""
    smiles = "C1=C/C=C/CCCCC/1"
    gen = ConformerGenerator(tiny_model, device="cpu", n=2, steps=2, seed=0)
    assert gen.generate(smiles).error == ETKDG_STEREO_FAILED + " (try --init prior)"
    done = ConformerGenerator(device="cpu", n=2, init="prior", steps=50, sampler="ancestral",
                              seed=0).generate(smiles)
    assert done.ok and done.mol.GetNumConformers() == 2
    assert all(check_stereo(done.mol, c.GetId()).ok for c in done.mol.GetConformers())


def test_a_molecules_conformers_do_not_depend_on_batching_or_the_other_molecules(tiny_model):
    """Each conformer draw has its own generator: the same molecule gets the same conformers
    alone in one batch and between others in batches of 40 atoms (so that its draws are
    split over batches), which is what makes resumed and multi-process runs exact."""
    kwargs = dict(device="cpu", n=3, steps=3, seed=2, cleanup=False, max_retries=2)
    alone = ConformerGenerator(tiny_model, **kwargs).generate(STEREO_SMILES, name="x")
    items = [("a", "CCO"), ("x", STEREO_SMILES), ("b", "c1ccccc1O")]
    mixed = list(ConformerGenerator(tiny_model, batch_size=40, **kwargs).run(items))[1]
    assert alone.mol.GetNumConformers() == mixed.mol.GetNumConformers() >= 2   # random weights
    assert alone.dropped == mixed.dropped
    a = np.stack([c.GetPositions() for c in alone.mol.GetConformers()])
    b = np.stack([c.GetPositions() for c in mixed.mol.GetConformers()])
    assert np.abs(a - b).max() < 1e-4
    other = ConformerGenerator(tiny_model, **{**kwargs, "seed": 3}).generate(STEREO_SMILES, name="x")
    assert np.abs(a[0] - other.mol.GetConformer(0).GetPositions()).max() > 0.1


def test_bad_input_raises(tiny_model):
    with pytest.raises(MoleculeError, match="fragments"):
        generate_conformers("CCO.CC", n=1, model=tiny_model, steps=2, device="cpu")
    with pytest.raises(ValueError, match="sampler"):
        generate_conformers("CCO", n=1, model=tiny_model, sampler="nope", device="cpu")
    for wrong in (None, 42):
        with pytest.raises(TypeError, match=f"SMILES string or an RDKit Mol, got {type(wrong).__name__}"):
            generate_conformers(wrong, n=1, model=tiny_model, steps=2, device="cpu")


def _trigonal_bipyramidal_record() -> Chem.Mol:
    """A 3D record of a trigonal-bipyramidal P with five different groups, its tags dropped:
    RDKit reads the @TB stereo from its coordinates again."""
    mol = Chem.AddHs(Chem.MolFromSmiles("C[P@TB1](F)(Cl)(Br)O"))
    assert AllChem.EmbedMolecule(mol, randomSeed=3) == 0
    for atom in mol.GetAtoms():
        atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    return Chem.MolFromMolBlock(Chem.MolToMolBlock(mol), removeHs=False)


@pytest.mark.parametrize("make", [lambda: "C[P@TB1](F)(Cl)(Br)O", lambda: "F[S@OH1](F)(F)(F)(Cl)c1ccccc1",
                                  lambda: "F[Si@SP1](Cl)(Br)I", _trigonal_bipyramidal_record])
def test_non_tetrahedral_stereo_is_refused_not_lost(tiny_model, make):
    """Square-planar, trigonal-bipyramidal and octahedral stereo is neither checked nor held:
    before, the conformers came out with either arrangement while the ``smiles`` property
    claimed the input's."""
    with pytest.raises(MoleculeError, match=r"non-tetrahedral stereo \(@SP, @TB or @OH\) at atom\(s\) 1 "):
        generate_conformers(make(), n=2, model=tiny_model, steps=2, seed=0, device="cpu")


@pytest.mark.parametrize("smiles", ["CC=[C@]=CC", "C/C=C1/C[C@H](C)C1"])
def test_stereo_the_smiles_parser_drops_is_refused_not_lost(tiny_model, smiles):
    """An allene's axial stereo, or an alkylidene ring's that RDKit's legacy perception drops,
    is not in the molecule RDKit reads: before, its conformers came out with either
    configuration while the ``smiles`` property showed none. Such a SMILES is refused with the
    reason, and the same molecule without the stereo is done."""
    with pytest.raises(MoleculeError, match=r"stereo .* give the molecule without it$"):
        generate_conformers(smiles, n=2, model=tiny_model, steps=2, seed=0, device="cpu")
    plain = Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
    assert generate_conformers(plain, n=2, model=tiny_model, steps=2, seed=0, device="cpu").GetNumConformers() == 2


@pytest.mark.parametrize("smiles", ["[C]$[C]", "C$C"])
def test_a_quadruple_bond_is_refused_not_written_as_no_bond(tiny_model, smiles):
    """An SDF has no quadruple bond order: RDKit wrote ``C$C`` with bond order 0, so the
    output read back as two unbonded atoms (its ``checks`` said ok and its ``smiles``
    ``C$C``). Such a molecule is refused with the reason."""
    with pytest.raises(MoleculeError, match=r"^quadruple bond\(s\) between atoms \d-\d: an SDF has no such"):
        generate_conformers(smiles, n=2, model=tiny_model, steps=2, seed=0, device="cpu")


def _zero_score_generator(tiny_model, **options) -> ConformerGenerator:
    """A generator whose network outputs zero: the reverse SDE from noised ETKDG conformers
    only adds noise (about 0.15 A per coordinate from t_start = 0.3), which breaks geometry."""
    from molscore.checkpoint import load_checkpoint_model

    model, meta = load_checkpoint_model(tiny_model, device="cpu")
    for p in model.net.net.gate.parameters():
        torch.nn.init.zeros_(p)
    return ConformerGenerator(model, meta=meta, device="cpu", init="etkdg", t_start=0.3, steps=4,
                              seed=5, **options)


def test_cleanup_repairs_geometry_and_checks_property_is_truthful(tiny_model):
    """The clean-up mends the bonds, angles and clashes of conformers broken by noise alone
    (a network that outputs zero). Their amide it cannot always flatten: the noise (about
    0.26 Å per atom) closes the anilide's C-N-C angle to 95-109 degrees, which the 0.25 Å
    restraints on heavy atoms do not let it reopen enough to bring the N-H into the plane (on
    the shipped model's conformers of 59 amide-bearing molecules it flattened all but 1 of 590;
    docs/generate.md). What is left is said in ``checks``."""
    smiles = "CC(=O)Nc1ccc(OCC)cc1"
    raw = _zero_score_generator(tiny_model, n=6, cleanup=False, max_retries=0).generate(smiles).mol
    fixed = _zero_score_generator(tiny_model, n=6, cleanup=True, max_retries=0).generate(smiles).mol
    for mol in (raw, fixed):
        assert mol.GetNumConformers() == 6            # geometry failures are kept in the last round
        for conf in mol.GetConformers():
            problems = check_geometry(mol, conf.GetId())
            assert conf.GetProp("checks") == ("; ".join(problems) if problems else "ok")
    assert sum(c.GetProp("checks") != "ok" for c in raw.GetConformers()) >= 3
    left = [c.GetProp("checks") for c in fixed.GetConformers() if c.GetProp("checks") != "ok"]
    assert len(left) <= 3 and all(p.startswith("non-planar amide: C1(=O2)-N3") for p in left), left


@pytest.mark.parametrize("smiles", ["FS(F)(F)(F)(F)F", "FS(F)(F)(F)(F)c1ccccc1"])
def test_sf6_and_an_sf5_arene_come_out_octahedral(tiny_model, smiles):
    """Neither MMFF94 nor RDKit's UFF types the octahedral S of SF6 or of an SF5 arene: the
    clean-up did nothing there, and the noise left the S-F bonds unequal (a failing check)
    and F-S-F angles anywhere. Now it holds the S in shape
    (:func:`~molscore.chem.relax.restrained_cleanup`)."""
    mol = _zero_score_generator(tiny_model, n=3, max_retries=0).generate(smiles).mol
    sulfur = next(a for a in mol.GetAtoms() if a.GetSymbol() == "S")
    ligands = [n.GetIdx() for n in sulfur.GetNeighbors()]
    fluorines = [j for j in ligands if mol.GetAtomWithIdx(j).GetSymbol() == "F"]
    assert mol.GetNumConformers() == 3
    for conf in mol.GetConformers():
        assert conf.GetProp("checks") == "ok"
        bonds = conf.GetPositions()[ligands] - conf.GetPositions()[sulfur.GetIdx()]
        lengths = np.linalg.norm(bonds, axis=1)
        assert np.ptp(lengths[np.isin(ligands, fluorines)]) < 0.05
        cos = (bonds / lengths[:, None]) @ (bonds / lengths[:, None]).T
        angles = np.degrees(np.arccos(np.clip(cos[np.triu_indices(6, 1)], -1, 1)))
        assert np.abs(angles[:, None] - np.array([90, 180])).min(axis=1).max() < 5.0


def test_a_cleanup_that_mends_nothing_is_undone_in_the_last_round(tiny_model, monkeypatch):
    """A clean-up that leaves more problems than it found (as UFF did on hypervalent iodine)
    must not replace the sampled conformer: with one that stretches the conformer by 30 %
    (every bond too long, the stereo kept) the conformers are those of no clean-up."""
    from molscore.chem.coords import set_positions

    calls = []

    def stretching_cleanup(mol, conf_ids, fixed=()):
        for cid in conf_ids:
            pos = mol.GetConformer(cid).GetPositions()
            set_positions(mol.GetConformer(cid), 1.3 * (pos - pos.mean(0)) + pos.mean(0))
        calls.append(len(conf_ids))
        return True

    smiles = "CC(=O)Nc1ccc(OCC)cc1"
    raw = _zero_score_generator(tiny_model, n=6, cleanup=False, max_retries=0).generate(smiles).mol
    monkeypatch.setattr(generate_module, "restrained_cleanup", stretching_cleanup)
    kept = _zero_score_generator(tiny_model, n=6, cleanup=True, max_retries=0).generate(smiles).mol
    assert sum(calls) >= 3                       # the sampled conformers had problems
    assert kept.GetNumConformers() == raw.GetNumConformers() == 6
    for a, b in zip(raw.GetConformers(), kept.GetConformers()):
        np.testing.assert_array_equal(a.GetPositions(), b.GetPositions())
        assert a.GetProp("checks") == b.GetProp("checks")


@pytest.mark.parametrize("relax", [False, True])
def test_conformers_are_checked_once_unless_relaxed(tiny_model, monkeypatch, relax):
    """Each accepted conformer's ``checks`` is the verdict the per-conformer check gave on its
    coordinates: the finish does not check it again (it did: a second GeometryChecker and one
    more check of every conformer, the force-field minimum included), but for ``relax``, which
    moves the conformers. Either way ``checks`` is what check_geometry says of the output."""
    real_check, calls = GeometryChecker.check, []

    def counted(self, conf_id=-1):
        calls.append(conf_id)
        return real_check(self, conf_id)

    monkeypatch.setattr(GeometryChecker, "check", counted)
    mol = _zero_score_generator(tiny_model, n=3, cleanup=False, max_retries=0,
                                relax=relax).generate("CC(=O)Nc1ccc(OCC)cc1").mol
    assert mol.GetNumConformers() == 3              # the last round keeps geometry failures
    assert len(calls) == 3 + (3 if relax else 0)    # one per draw, + one per relaxed conformer
    for conf in mol.GetConformers():
        problems = check_geometry(mol, conf.GetId())
        assert conf.GetProp("checks") == ("; ".join(problems) if problems else "ok")


def test_dropped_conformers_are_counted_once_per_kind_of_problem(tiny_model, monkeypatch):
    """The failure reason counts conformers: one with two stereo problems (two summary
    lines) is one 'stereo' rejection, not two."""
    def two_stereo_problems(self, conf_id):
        return Problems(["stereo: inverted centre at atom 1", "stereo: wrong E/Z at bond 3"],
                        {"stereo": 2}), Problems()

    monkeypatch.setattr(GeometryChecker, "check", two_stereo_problems)
    result = _zero_score_generator(tiny_model, n=2, max_retries=0).generate("CC(=O)Nc1ccc(O)cc1")
    assert result.error == "no conformer passed the checks after 0 resampling rounds: stereo (x2)"


def test_compiled_network_gives_the_eager_conformers(tiny_model):
    # same seed, same noise: torch.compile only changes float32 rounding of the network
    kwargs = dict(device="cpu", n=3, steps=4, seed=2, init="etkdg", cleanup=False)
    eager = ConformerGenerator(tiny_model, **kwargs).generate("CC(=O)Nc1ccc(O)cc1").mol
    compiled_gen = ConformerGenerator(tiny_model, compile=True, **kwargs)
    assert compiled_gen._net is not compiled_gen.model
    compiled = compiled_gen.generate("CC(=O)Nc1ccc(O)cc1").mol
    assert compiled.GetNumConformers() == eager.GetNumConformers() == 3
    a = np.stack([c.GetPositions() for c in eager.GetConformers()])
    b = np.stack([c.GetPositions() for c in compiled.GetConformers()])
    assert np.abs(a - b).max() < 1e-3


def test_stereo_broken_by_the_cleanup_is_rejected_in_the_last_round(tiny_model, monkeypatch):
    # a clean-up that mirrors the conformer: its result must never be returned, even in
    # the last round, where other geometry problems are kept and listed
    from molscore.chem.stereo import mirror_conformer

    calls = []

    def mirroring_cleanup(mol, conf_ids, fixed=()):
        for cid in conf_ids:
            mirror_conformer(mol, cid)
        calls.append(len(conf_ids))
        return True

    monkeypatch.setattr(generate_module, "restrained_cleanup", mirroring_cleanup)
    result = _zero_score_generator(tiny_model, n=4, max_retries=0).generate("C[C@H](N)C(=O)O")
    assert calls                       # un-denoised noise breaks geometry: the clean-up ran
    kept = result.mol.GetNumConformers() if result.mol is not None else 0
    assert kept <= 4 - sum(calls)      # every cleaned (mirrored) conformer was dropped
    assert result.mol is None or all(check_stereo(result.mol, c.GetId()).ok
                                     for c in result.mol.GetConformers())
    assert "stereo" in (result.error or result.dropped[0])


def test_pool_starts_from_the_representatives_of_the_etkdg_pool(tiny_model):
    """With ``pool`` > n the starts are picks of the pool: the first conformer comes from
    the pool's medoid, and a run of 2 starts where one of 4 does (here with greedy k-medoids;
    max-min, the default, below)."""
    smiles = "CCCCCCOC(=O)c1ccccc1"
    kwargs = dict(model=tiny_model, device="cpu", steps=2, seed=3, t_start=0.02, pool=12,
                  pick="k-medoids", max_retries=0, cleanup=False)
    four, two = (generate_conformers(smiles, n=n, **kwargs) for n in (4, 2))
    assert four.GetNumConformers() == 4 and two.GetNumConformers() == 2
    for k in range(2):
        assert np.abs(four.GetConformer(k).GetPositions()
                      - two.GetConformer(k).GetPositions()).max() < 1e-5

    params = AllChem.ETKDGv3()
    params.randomSeed = etkdg_random_seed(3)
    ref = embed_conformers(Chem.AddHs(Chem.MolFromSmiles(smiles)), 12, params)   # the pool
    ids = [conf.GetId() for conf in ref.GetConformers()]
    assert len(ids) == 12
    medoid = ids[int(np.argmin(rmsd_matrix(ref, ref).sum(axis=1)))]
    to_pool = rmsd_matrix(four, ref, [0], ids)[0]
    assert to_pool.argmin() == ids.index(medoid) and to_pool.min() < 0.2
    plain = generate_conformers(smiles, n=4, **{**kwargs, "pool": 1})
    assert rmsd_matrix(plain, ref, [0], [ids[0]])[0, 0] < 0.2      # no pool: ETKDG's order

    # max-min picking (the default): the same medoid first, then the pool member farthest from it
    spread = generate_conformers(smiles, n=2, **{k: v for k, v in kwargs.items() if k != "pick"})
    dist = rmsd_matrix(ref, ref)
    farthest = ids[int(np.argmax(dist[ids.index(medoid)]))]
    to_pool = rmsd_matrix(spread, ref, None, ids)
    assert to_pool[0].argmin() == ids.index(medoid) and to_pool[1].argmin() == ids.index(farthest)
    assert to_pool.min(axis=1).max() < 0.2


@pytest.mark.parametrize("n, pool", [(1, 50), (10, 50), (11, 100), (20, 100), (21, 200), (500, 200)])
def test_default_pool_grows_with_n(n, pool):
    assert default_pool(n) == pool
    assert GenerateOptions(n=n).etkdg_pool == pool
    assert GenerateOptions(n=n, pool=7).etkdg_pool == 7          # a given pool is kept


def test_generator_embeds_the_default_pool_of_its_n(tiny_model, monkeypatch):
    """With no pool given, the ETKDG pool follows ``n``, also when ``n`` changes after the
    generator was built (as the benchmark's workers do)."""

    seen = []

    def recording_etkdg(mol, n, seed, pool, pick, hydrogens, threads, fixed, spares):
        seen.append((n, pool))
        return embed(mol, n, seed, 1, pick, hydrogens, threads, fixed, spares)

    embed = generate_module._etkdg
    monkeypatch.setattr(generate_module, "_etkdg", recording_etkdg)
    gen = ConformerGenerator(tiny_model, device="cpu", n=2, steps=1, t_start=0.02, max_retries=0)
    assert gen.generate("CCO").mol.GetNumConformers() == 2
    gen.options.n = 12
    assert gen.generate("CCO").mol.GetNumConformers() == 12
    assert seen == [(2, 50), (12, 100)]


def test_pool_of_stereocentre_hydrogens_keeps_the_stereo(tiny_model):
    smiles = "C/C=C/[C@@H](O)[C@H](N)C(=O)O"
    kwargs = dict(model=tiny_model, device="cpu", steps=2, seed=3, t_start=0.02, pool=8)
    fast = generate_conformers(smiles, n=4, pool_hydrogens="stereo", **kwargs)
    assert fast.GetNumConformers() == 4
    assert all(check_stereo(fast, conf.GetId()).ok for conf in fast.GetConformers())
    plain = generate_conformers(smiles, n=4, **kwargs)            # another pool: other starts
    assert rmsd_matrix(fast, plain, [0], [0])[0, 0] > 0.01
    with pytest.raises(ValueError, match="unknown pool_hydrogens 'some'; choose from all, stereo"):
        GenerateOptions(pool_hydrogens="some").validate()


def test_unexpected_errors_fail_one_molecule_not_the_run(tiny_model, monkeypatch):
    """An exception that is not a MoleculeError (an RDKit or featurisation bug met on one odd
    molecule) fails that molecule, with its type and message as the reason; the others are
    generated. Injected here in preparation, in the per-conformer checks and in the finish."""
    import molscore.generate as gen_module

    real_graph, real_fix, real_relax = (gen_module.mol_to_graph, gen_module.fix_stereo,
                                        gen_module.relax_conformers)

    def graph(mol, *, featurisation):
        if mol.GetNumAtoms() == 12:                    # propanol (C3H8O)
            raise RuntimeError("featurisation bug\nsecond line")
        return real_graph(mol, featurisation=featurisation)

    def fix(mol, cid):
        if mol.GetNumAtoms() == 14:                    # butane
            raise KeyError("atom 3")
        return real_fix(mol, cid)

    def relax(mol, fixed=()):
        if mol.GetNumAtoms() == 9:                     # ethanol
            raise RuntimeError("")
        return real_relax(mol)

    monkeypatch.setattr(gen_module, "mol_to_graph", graph)
    monkeypatch.setattr(gen_module, "fix_stereo", fix)
    monkeypatch.setattr(gen_module, "relax_conformers", relax)
    gen = ConformerGenerator(tiny_model, device="cpu", n=2, steps=2, t_start=0.05, relax=True,
                             max_retries=1)
    results = list(gen.run([(s, s) for s in ("CCCO", "CCCC", "CCO", "CC(=O)O")]))
    assert [r.name for r in results] == ["CCCO", "CCCC", "CCO", "CC(=O)O"]
    assert results[0].error == ("internal error while preparing the molecule: RuntimeError: "
                                "featurisation bug")
    assert results[1].error == ("no conformer passed the checks after 1 resampling rounds: "
                                "internal error while checking a conformer: KeyError: 'atom 3' (x2)")
    assert results[2].error == "internal error while finishing the molecule: RuntimeError"
    assert results[2].mol is None
    assert results[3].ok and results[3].mol.GetNumConformers() == 2


@pytest.mark.parametrize("failing", ["record_smiles", "MolToSmiles"])
def test_an_input_mol_whose_smiles_cannot_be_written_fails_alone(tiny_model, monkeypatch, failing):
    """Writing an input Mol's SMILES (its failures.csv text, record_smiles, and the text its
    draws are seeded with, MolToSmiles) was outside the per-molecule guard: an RDKit error
    there stopped the whole run (and generate() raised it). Now that molecule fails with the
    reason, named by its own name (its _Name when none is given) and ``<unwritable Mol>`` as
    its input; the others are generated."""
    import molscore.generate as gen_module

    real = {"record_smiles": gen_module.record_smiles, "MolToSmiles": Chem.MolToSmiles}[failing]

    def writer(mol, *args, **kwargs):
        if mol.GetNumAtoms() in (4, 14):                # butane, with or without hydrogens
            raise RuntimeError("Pre-condition Violation\ngetNumImplicitHs() called without ...")
        return real(mol, *args, **kwargs)

    if failing == "record_smiles":
        monkeypatch.setattr(gen_module, "record_smiles", writer)
    else:
        monkeypatch.setattr(gen_module.Chem, "MolToSmiles", writer)
    mols = [Chem.MolFromSmiles(s) for s in ("CCO", "CCCC", "c1ccccc1")]
    mols[1].SetProp("_Name", "butane")
    gen = ConformerGenerator(tiny_model, device="cpu", n=1, steps=2, t_start=0.05, cleanup=False)
    results = list(gen.run([("a", mols[0]), ("b", mols[1]), ("c", mols[2])]))
    assert [r.name for r in results] == ["a", "b", "c"]
    assert results[0].ok and results[2].ok
    assert results[1].mol is None and results[1].input == "<unwritable Mol>"
    assert results[1].error == ("internal error while writing the input Mol's SMILES: RuntimeError: "
                                "Pre-condition Violation")
    alone = gen.generate(mols[1])
    assert (alone.name, alone.input, alone.error) == ("butane", "<unwritable Mol>", results[1].error)
    mols[1].ClearProp("_Name")
    assert gen.generate(mols[1]).name == "<unwritable Mol>"
    assert gen.generate(mols[0]).name == "CCO"


class _PointMass(torch.nn.Module):
    """The exact ``score``-parameterised network of data that is one conformer ``c`` ``(N, 3)``
    (each sample of a batch the same molecule): ``std * (c - x) / std^2``."""

    def __init__(self, c: torch.Tensor, sde: VESDE):
        super().__init__()
        self.c, self.sde = c - c.mean(0), sde

    def forward(self, x, t, cond):
        std = self.sde.marginal(t)[1][cond.batch].unsqueeze(-1).to(x)
        return (self.c.to(x).repeat(x.shape[0] // self.c.shape[0], 1) - x) / std


@pytest.mark.parametrize("guidance, returned", [(0.0, 0), (1.0, 3)])
def test_stereo_guidance_steers_the_sampler_to_the_specified_stereo(guidance, returned):
    """Data that is one conformer with a flat stereocentre: without guidance every sample
    ends on it and is rejected; guided, every sample ends with the centre the SMILES asks for."""
    from molscore.models.param import ScoreModel

    mol = Chem.AddHs(Chem.MolFromSmiles(STEREO_SMILES))
    params = AllChem.ETKDGv3()
    params.randomSeed = 5
    assert AllChem.EmbedMolecule(mol, params) == 0
    centre = sorted(specified_centres(mol))[0]
    pos = mol.GetConformer().GetPositions()
    heavy = [n.GetIdx() for n in mol.GetAtomWithIdx(centre).GetNeighbors() if n.GetAtomicNum() > 1]
    pos[centre] = pos[heavy].mean(0)
    mol.GetConformer().SetAtomPosition(centre, pos[centre].tolist())
    assert check_stereo(mol).flat_centres == [centre]
    sde = VESDE(0.02, 15.0)
    model = ScoreModel(_PointMass(torch.tensor(pos, dtype=torch.float32), sde), sde, "score")
    gen = ConformerGenerator(model, meta={"coord_scale": 1.0}, device="cpu", n=3, steps=40,
                             init="prior", max_retries=0, cleanup=False, stereo_guidance=guidance)
    result = gen.generate(STEREO_SMILES)
    if returned == 0:
        assert result.mol is None and "near-planar stereocentre(s) at atom(s) " + str(centre) in result.error
    else:
        assert result.mol is not None, result.error
        assert result.mol.GetNumConformers() == returned
        assert all(check_stereo(result.mol, c.GetId()).ok for c in result.mol.GetConformers())


def test_seed_is_refused_outside_what_rdkit_takes():
    """ETKDG's randomSeed is seed + 1, a C int: seed -1 gave randomSeed 0 (identical
    conformers), and one over 2**31 - 2 failed every molecule with an OverflowError."""
    from molscore.generate import MAX_SEED

    GenerateOptions(seed=MAX_SEED).validate()
    for seed in (-1, MAX_SEED + 1):
        with pytest.raises(ValueError, match=f"seed must be an integer 0..{MAX_SEED}, got {seed}"):
            GenerateOptions(seed=seed).validate()


def test_stereo_guidance_default_follows_the_route():
    for init, strength in (("prior", 1.0), ("etkdg", 0.0)):
        opts = GenerateOptions(init=init)
        opts.validate()
        assert opts.stereo_guidance == strength
    opts = GenerateOptions(init="etkdg", stereo_guidance=0.5)
    opts.validate()
    assert opts.stereo_guidance == 0.5
    with pytest.raises(ValueError, match="stereo_guidance must be >= 0, got -1"):
        GenerateOptions(stereo_guidance=-1).validate()
    with pytest.raises(ValueError, match="stereo_guidance must be >= 0, got nan"):
        GenerateOptions(stereo_guidance=float("nan")).validate()
    with pytest.raises(ValueError, match="dedupe RMSD must be >= 0, got nan"):   # NaN < 0 is False
        GenerateOptions(dedupe=float("nan")).validate()


def test_a_strained_cage_without_stereo_gets_one_isomer_in_every_conformer():
    # ETKDG's chirality checks reject most embeddings of this bicyclo[2.1.0] oxetane: every
    # conformer is still of the one isomer recorded in `smiles` (RDKit's perception from 3D)
    out = generate_conformers("O=CCC1(O)C2COC21", n=4, pool=1, seed=0)
    recorded = Chem.MolFromSmiles(out.GetProp("smiles"))
    assert len(specified_centres(Chem.AddHs(recorded))) == 3
    for conf in out.GetConformers():
        seen = Chem.Mol(out, confId=conf.GetId())
        Chem.AssignStereochemistryFrom3D(seen)
        assert Chem.MolToSmiles(Chem.RemoveHs(seen)) == Chem.MolToSmiles(recorded)


@pytest.mark.parametrize("smiles", ["C/C=C\\c1ccccc1", "C/C=C/c1ccccc1"])
def test_a_double_bonds_e_or_z_from_smiles_is_kept(smiles):
    out = generate_conformers(smiles, n=3, pool=1, seed=0)
    assert Chem.MolToSmiles(Chem.MolFromSmiles(out.GetProp("smiles"))) == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
    for conf in out.GetConformers():
        seen = Chem.Mol(out, confId=conf.GetId())
        Chem.AssignStereochemistryFrom3D(seen)
        assert Chem.MolToSmiles(Chem.RemoveHs(seen)) == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def _starts_as_samples(monkeypatch, slots: list, move=None) -> None:
    """Make the generator's sampler return each request's ETKDG start (after ``move(mol,
    pos)``, if given) and record the start slots of every round in ``slots``."""

    def starts(self, requests):
        slots.append([slot for _, slot, _ in requests])
        out = [job.etkdg[slot % len(job.etkdg)].copy() for job, slot, _ in requests]
        return [move(job.mol, pos) if move else pos for (job, _, _), pos in zip(requests, out)]

    monkeypatch.setattr(ConformerGenerator, "_sample", starts)


@pytest.mark.parametrize("pool, expected_slots, kept_slots", [
    (12, [[0, 1, 2], [3]], [0, 2, 3]),          # the pool's next pick replaces start 1
    (1, [[0, 1, 2], [1], [1]], [0, 2]),         # no spare: start 1 again, then dropped
])
def test_a_rejected_conformer_is_redrawn_from_the_next_spare_start(tiny_model, monkeypatch, pool,
                                                                   expected_slots, kept_slots):
    """A conformer rejected in a round is redrawn from the pool's next pick, a start no other
    conformer has; without spare picks (pool <= n) from its own start again. Staged: every
    conformer drawn from start 1 is rejected."""
    slots: list[list[int]] = []
    _starts_as_samples(monkeypatch, slots)
    real_keep = ConformerGenerator._check_and_keep

    def reject_start_1(self, job, mol, cid, last_round):
        if np.allclose(mol.GetConformer(cid).GetPositions(), job.etkdg[1]):
            job.rejected.append(["staged"])
            return
        real_keep(self, job, mol, cid, last_round)

    monkeypatch.setattr(ConformerGenerator, "_check_and_keep", reject_start_1)
    jobs = []
    real_job = ConformerGenerator._job
    monkeypatch.setattr(ConformerGenerator, "_job",
                        lambda self, result, mol, key: jobs.append(real_job(self, result, mol, key)) or jobs[-1])
    gen = ConformerGenerator(tiny_model, device="cpu", n=3, seed=3, pool=pool, max_retries=2, cleanup=False)
    result = gen.generate("CCCCCCOC(=O)c1ccccc1")
    assert slots == expected_slots
    assert jobs[0].draws == sum(map(len, slots))     # no draw is set up that is not sampled
    got = np.stack([c.GetPositions() for c in result.mol.GetConformers()])
    np.testing.assert_allclose(got, jobs[0].etkdg[kept_slots])
    if pool > 3:     # starts, then spares: the pool's picks in order, the first n as without spares
        assert len(jobs[0].etkdg) == 3 + 3 * 2
        mol = jobs[0].mol
        np.testing.assert_allclose(generate_module._etkdg(mol, 3, 3, pool, "max-min"), jobs[0].etkdg[:3])
    else:
        assert result.dropped == ["1 of 3 conformers dropped after 2 resampling rounds: staged (x1)"]


def test_a_nearly_flat_centre_is_cleaned_up_instead_of_resampled(tiny_model, monkeypatch):
    """A conformer whose only stereo problem is a centre too close to planar (as ETKDG leaves
    some strained bridgeheads) gets the restrained clean-up, which restores the tetrahedral
    centre on its side; without the clean-up it is rejected. Staged: the centre of alanine
    moved 90 % of the way into the plane of its three heavy neighbours."""
    smiles, centre = "C[C@H](N)C(=O)O", 1

    def flatten(mol, pos):
        heavy = [a.GetIdx() for a in mol.GetAtomWithIdx(centre).GetNeighbors() if a.GetAtomicNum() > 1]
        pos[centre] += 0.9 * (pos[heavy].mean(axis=0) - pos[centre])
        return pos

    _starts_as_samples(monkeypatch, [], flatten)
    kwargs = dict(device="cpu", n=4, seed=3, pool=1, max_retries=0)
    raw = ConformerGenerator(tiny_model, cleanup=False, **kwargs).generate(smiles)
    assert raw.mol is None
    assert raw.error == ("no conformer passed the checks after 0 resampling rounds: "
                         f"near-planar stereocentre(s) at atom(s) {centre} (x4)")
    mol = ConformerGenerator(tiny_model, cleanup=True, **kwargs).generate(smiles).mol
    assert mol.GetNumConformers() == 4
    assert all(check_stereo(mol, c.GetId()).ok and c.GetProp("checks") == "ok" for c in mol.GetConformers())


def test_a_hydrogen_clash_is_cleaned_up_or_listed(tiny_model, monkeypatch):
    """Hydrogens that clash are a geometry problem like any other: the restrained clean-up
    (which holds only the heavy atoms) moves them apart; without it the conformer is kept in
    the last round with the clash listed. Staged: every start of pentane turned rigidly
    into its syn conformation (C-C-C-C dihedrals 70 and -70 deg), a hydrogen of each methyl
    pointing at the other's (about 0.6-1.3 A apart)."""
    from molscore.chem.coords import add_conformer

    pairs = []

    def syn(mol, pos):
        mol = Chem.Mol(mol)
        mol.RemoveAllConformers()
        conf = mol.GetConformer(add_conformer(mol, pos))
        pairs.append(pose_syn_pentane(conf, 70.0))
        return conf.GetPositions()

    _starts_as_samples(monkeypatch, [], syn)
    kwargs = dict(device="cpu", n=4, seed=3, pool=1, max_retries=0)
    raw = ConformerGenerator(tiny_model, cleanup=False, **kwargs).generate("CCCCC").mol
    assert raw.GetNumConformers() == 4
    h0, h4 = pairs[0]
    for conf in raw.GetConformers():
        checks = conf.GetProp("checks")
        assert checks.startswith("hydrogen clash: ") and f"H{h0}...H{h4} " in checks
    mol = ConformerGenerator(tiny_model, cleanup=True, **kwargs).generate("CCCCC").mol
    assert mol.GetNumConformers() == 4
    for conf in mol.GetConformers():
        assert conf.GetProp("checks") == "ok"
        pos = conf.GetPositions()
        assert np.linalg.norm(pos[h0] - pos[h4]) > 1.61


def test_a_conformer_the_minimiser_cannot_start_from_is_listed_not_an_internal_error(tiny_model,
                                                                                     monkeypatch):
    """The clean-up's minimiser raised RDKit's "bad direction in linearSearch" on a conformer
    with two bonded atoms at one position, which failed the molecule as an "internal error
    while checking a conformer"; and ``relax`` raised it from the finish. Now the clean-up
    leaves that conformer as it was: the last round keeps it with its problems listed, and
    the relaxation leaves the molecule "not relaxed". Staged: every draw has atoms 0 and 1
    of propanol at one position."""

    def collapse(mol, pos):
        pos[1] = pos[0]
        return pos

    _starts_as_samples(monkeypatch, [], collapse)
    gen = ConformerGenerator(tiny_model, device="cpu", n=2, seed=3, pool=1, max_retries=0, relax=True)
    result = gen.generate("CCCO")
    assert result.ok, result.error
    assert result.dropped == ["not relaxed: the minimiser cannot start from a conformer (RDKit: bad "
                              "direction in linearSearch; two bonded atoms at one position?)"]
    assert result.mol.GetNumConformers() == 2
    for conf in result.mol.GetConformers():
        assert "C0-C1" in conf.GetProp("checks")
        np.testing.assert_array_equal(conf.GetPositions()[0], conf.GetPositions()[1])


def test_a_conformer_whose_stereo_the_relaxation_lost_is_dropped(tiny_model, monkeypatch):
    """The relaxation holds the stereo (``tests/test_relax.py``); should it still lose a
    centre, that conformer is dropped with a reason, never returned."""
    from molscore.chem.stereo import mirror_conformer

    real_relax = generate_module.relax_conformers

    def relax_mirroring_the_first(mol, fixed=()):
        energies, name = real_relax(mol, fixed=fixed)
        mirror_conformer(mol, mol.GetConformers()[0].GetId())
        return energies, name

    monkeypatch.setattr(generate_module, "relax_conformers", relax_mirroring_the_first)
    gen = ConformerGenerator(tiny_model, device="cpu", n=3, seed=1, relax=True)
    result = gen.generate("C[C@H](N)C(=O)O")
    assert result.dropped == ["1 of 3 conformers dropped: stereo lost in the force-field relaxation"]
    assert result.mol.GetNumConformers() == 2
    assert all(check_stereo(result.mol, c.GetId()).ok for c in result.mol.GetConformers())
    assert [c.GetIntProp("conformer") for c in result.mol.GetConformers()] == [0, 1]


def test_max_heavy_atoms_none_means_no_limit():
    """``max_heavy_atoms=None`` is documented as no limit: validate() compared None < 1 and
    raised a TypeError; a molecule over the default limit of 100 is then generated."""
    opts = GenerateOptions(max_heavy_atoms=None)
    opts.validate()
    with pytest.raises(ValueError, match="max_heavy_atoms must be >= 1, got 0"):
        GenerateOptions(max_heavy_atoms=0).validate()
    out = generate_conformers("C" * 101, n=1, pool=1, max_retries=0, max_heavy_atoms=None)
    assert out.GetNumConformers() == 1
    assert sum(a.GetAtomicNum() > 1 for a in out.GetAtoms()) == 101


def test_integer_options_refuse_other_types():
    """The CLI parses these as integers; in Python a float seed 1.5 was taken as seed 1's
    noise (ETKDG's randomSeed truncated too) and n=2.0 failed deep in sampling."""
    for name, value in (("seed", 1.5), ("n", 2.0), ("steps", 2.5), ("pool", 3.0),
                        ("batch_size", 100.0), ("max_heavy_atoms", 50.5), ("max_retries", 1.0),
                        ("n", True), ("seed", None)):
        with pytest.raises(ValueError, match=f"{name} must be an integer, got {value!r}"):
            GenerateOptions(**{name: value}).validate()
    opts = GenerateOptions(n=np.int64(3), seed=np.int32(4), steps=None, pool=None, max_heavy_atoms=None)
    opts.validate()
    assert opts.steps == 10
