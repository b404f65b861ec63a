"""Fixed-atom constraints: a posed core kept in place by the pool, the sampler and the force fields."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Chem.rdMolTransforms import SetAngleDeg, TransformConformer

from molscore.chem.checks import GIVEN, check_geometry
from molscore.chem.core import CORE_RMSD_TOL, Core
from molscore.chem.featurize import MoleculeError, prepare_mol
from molscore.chem.relax import relax_conformers, restrained_cleanup
from molscore.chem.stereo import check_stereo, isomer_choices, specified_axes
from molscore.generate import ConformerGenerator, GenerateOptions, generate_conformers

LIGAND = "C[C@H](N)C(=O)Nc1ccc(OCC)cc1"
CORE_SMARTS = "C[C@H](N)C(=O)Nc1ccccc1"


def posed_core(smiles: str = LIGAND, core: str = CORE_SMARTS, seed: int = 11) -> Chem.Mol:
    """The atoms of ``core`` cut out of an ETKDG pose of ``smiles``, with their coordinates."""
    ref = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(ref, randomSeed=seed) == 0
    query = Chem.MolFromSmiles(core)
    match = ref.GetSubstructMatch(query, useChirality=True)
    keep = set(match)
    em = Chem.RWMol(ref)
    for i in sorted((a.GetIdx() for a in ref.GetAtoms() if a.GetIdx() not in keep), reverse=True):
        em.RemoveAtom(i)
    out = em.GetMol()
    Chem.SanitizeMol(out)
    return out


def test_core_refuses_flat_tiny_and_missing_input(tmp_path):
    flat = Chem.MolFromSmiles("c1ccccc1O")
    AllChem.Compute2DCoords(flat)
    with pytest.raises(ValueError, match="2D"):
        Core.from_mol(flat)
    with pytest.raises(ValueError, match="no coordinates"):
        Core.from_mol(Chem.MolFromSmiles("c1ccccc1O"))
    ethanol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    AllChem.EmbedMolecule(ethanol, randomSeed=1)
    with pytest.raises(ValueError, match="2 heavy atoms; it needs at least 3"):
        Core.from_mol(ethanol)
    with pytest.raises(ValueError, match="not found"):
        Core.from_file(tmp_path / "none.sdf")
    with pytest.raises(ValueError, match="not a SMARTS"):
        Core.from_text("C(((\n")
    with pytest.raises(ValueError, match="3 atoms but positions"):
        Core.from_text("[#6]-[#6]-[#8]\n0 0 0\n1 0 0\n")



def test_a_cores_hydrogens_are_never_core_atoms():
    """Hydrogens RDKit's RemoveHs keeps (unbonded, in H2, deuterium) were core atoms: a core
    of four hydrogens was accepted and matched a molecule's hydrogens, H2 counted as 2 heavy
    atoms, and a deuterium of the core had to be a deuterium of the molecule."""
    hs = Chem.RWMol()
    for _ in range(4):
        hs.AddAtom(Chem.Atom(1))
    hs = hs.GetMol()
    conf = Chem.Conformer(4)
    for i, xyz in enumerate([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]):
        conf.SetAtomPosition(i, xyz)
    conf.Set3D(True)
    hs.AddConformer(conf)
    with pytest.raises(ValueError, match="the core has 0 heavy atoms"):
        Core.from_mol(hs)
    h2 = Chem.AddHs(Chem.MolFromSmiles("[H][H]"))
    assert AllChem.EmbedMolecule(h2, randomSeed=1) == 0
    with pytest.raises(ValueError, match="the core has 0 heavy atoms"):
        Core.from_mol(h2)
    deuterated = Chem.AddHs(Chem.MolFromSmiles("[2H]c1ccccc1N"))
    assert AllChem.EmbedMolecule(deuterated, randomSeed=5) == 0
    core = Core.from_mol(deuterated)
    assert core.query.GetNumAtoms() == 7
    assert all(a.GetAtomicNum() > 1 for a in core.query.GetAtoms())
    assert core.hydrogens.tolist() == [1, 1, 1, 1, 1, 0, 2]    # the deuterium counted
    match = core.match(prepare_mol("Nc1ccccc1", add_hs=True))   # and the protio form matches
    assert len(match.atoms) == 7


def test_a_cores_isotope_labels_are_not_matched():
    """A core matches on elements, charges and bond orders: one cut out of a 13C-labelled
    ligand did not match the unlabelled molecule ('does not contain the core (... other bond
    orders, aromaticity or charges ...)')."""
    labelled = Chem.AddHs(Chem.MolFromSmiles("[13CH3]C(=O)Nc1ccc(O)cc1"))
    assert AllChem.EmbedMolecule(labelled, randomSeed=5) == 0
    core = Core.from_mol(labelled)
    assert all(a.GetIsotope() == 0 for a in core.query.GetAtoms())
    assert core.match(prepare_mol("CC(=O)Nc1ccc(O)cc1")).atoms.tolist() == list(range(11))
    assert core.match(prepare_mol("[13CH3]C(=O)Nc1ccc(O)cc1")).atoms.tolist() == list(range(11))

def test_core_round_trips_exactly_through_its_text_and_through_a_file(tmp_path):
    posed = posed_core()
    core = Core.from_mol(posed)
    again = Core.from_text(core.text)
    np.testing.assert_array_equal(again.positions, core.positions)
    assert Chem.MolToSmarts(again.query) == Chem.MolToSmarts(core.query)
    path = tmp_path / "core.sdf"
    with Chem.SDWriter(str(path)) as w:
        w.write(posed)
    from_file = Core.from_file(path)
    np.testing.assert_allclose(from_file.positions, core.positions, atol=1e-4)  # 4 decimals
    assert Chem.MolToSmarts(from_file.query) == Chem.MolToSmarts(core.query)


def test_core_atoms_follow_the_core_files_atom_order_when_its_smarts_writes_another():
    # atoms in an order the query's SMARTS does not write them in (a crystal ligand's file
    # order, say): match()'s atoms, and so the core_atoms property, are in the file's order,
    # through the text too; a core in SMARTS order keeps its text without atom maps
    posed = posed_core()
    order = [7, 2, 11, 0, 9, 4, 1, 10, 5, 3, 8, 6]
    shuffled = Chem.RenumberAtoms(posed, order)
    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@H](N)C(=O)Nc1ccc(Cl)cc1"))
    for core in (Core.from_mol(shuffled), Core.from_text(Core.from_mol(shuffled).text)):
        np.testing.assert_array_equal(core.positions, shuffled.GetConformer().GetPositions())
        found = core.match(mol)
        assert [mol.GetAtomWithIdx(int(i)).GetSymbol() for i in found.atoms] == \
            [a.GetSymbol() for a in shuffled.GetAtoms()]
    assert ":1]" not in Core.from_mol(posed).text.splitlines()[0]        # no atom maps


def test_a_core_cut_at_an_aromatic_nitrogen_still_matches():
    # the purine of a nucleoside without its sugar: N9 keeps no hydrogen, RDKit cannot
    # kekulize it alone, and hydrogen counts are not part of the query
    nucleoside = "O=c1[nH]cnc2c1ncn2[C@H]1C[C@H](O)[C@@H](CO)O1"
    mol = Chem.AddHs(Chem.MolFromSmiles(nucleoside))
    AllChem.EmbedMolecule(mol, randomSeed=3)
    purine = [a.GetIdx() for a in mol.GetAtoms() if a.GetIsAromatic()] + [0]   # with its O
    em = Chem.RWMol(mol)
    for i in sorted(set(range(mol.GetNumAtoms())) - set(purine), reverse=True):
        em.RemoveAtom(i)
    core = Core.from_text(Core.from_mol(em.GetMol()).text)
    found = core.match(mol)
    np.testing.assert_array_equal(sorted(found.atoms), sorted(purine))
    np.testing.assert_allclose(mol.GetConformer().GetPositions()[found.atoms], core.positions, atol=1e-12)


def test_a_core_given_with_hydrogens_sits_on_its_ligand_as_it_was_cut():
    # the ligand's phenyl ring cut with its four hydrogens, its atoms in another order: the
    # ring's rotations and flips all match the query; the hydrogen counts pick the match
    # with the two substituents where the core has none
    mol = Chem.AddHs(Chem.MolFromSmiles(LIGAND))
    AllChem.EmbedMolecule(mol, randomSeed=7)
    ring = next(r for r in mol.GetRingInfo().AtomRings() if len(r) == 6)
    keep = set(ring) | {n.GetIdx() for i in ring for n in mol.GetAtomWithIdx(i).GetNeighbors()
                        if n.GetAtomicNum() == 1}
    em = Chem.RWMol(mol)
    for i in sorted(set(range(mol.GetNumAtoms())) - keep, reverse=True):
        em.RemoveAtom(i)
    cut = Chem.RenumberAtoms(em.GetMol(), list(range(1, len(keep))) + [0])
    core = Core.from_mol(cut)
    assert sorted(core.hydrogens.tolist()) == [0, 0, 1, 1, 1, 1]
    assert Core.from_text(core.text).hydrogens.tolist() == core.hydrogens.tolist()
    pos = mol.GetConformer().GetPositions()
    found = core.match(mol)
    np.testing.assert_allclose(pos[found.atoms], core.positions, atol=1e-12)
    blind = Core.from_mol(Chem.RemoveHs(cut, sanitize=False))      # the same core without them
    assert blind.hydrogens is None
    assert {len(line.split()) for line in blind.text.splitlines()[1:]} == {3}
    assert np.abs(pos[blind.match(mol).atoms] - blind.positions).max() > 1.0
    with pytest.raises(ValueError, match="all 'x y z' or all 'x y z h'"):
        Core.from_text("[#6]-[#6]-[#8]\n0 0 0 1\n1 0 0\n2 0 0 1\n")


def test_match_finds_the_core_with_its_stereo_and_names_what_is_wrong():
    core = Core.from_mol(posed_core())
    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@H](N)C(=O)Nc1ccc(Cl)cc1"))
    found = core.match(mol)
    assert len(found.atoms) == core.query.GetNumAtoms() == 12
    assert [mol.GetAtomWithIdx(int(i)).GetAtomicNum() for i in found.atoms] == \
        [a.GetAtomicNum() for a in core.query.GetAtoms()]
    np.testing.assert_array_equal(found.positions, core.positions)
    with pytest.raises(MoleculeError, match="only with other stereo"):
        core.match(Chem.AddHs(Chem.MolFromSmiles("C[C@@H](N)C(=O)Nc1ccc(Cl)cc1")))
    with pytest.raises(MoleculeError, match="does not contain the core"):
        core.match(Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(Cl)cc1")))


def test_a_core_holding_an_atropisomer_axis_matches_only_the_molecules_axis():
    """A core posed as the other atropisomer of the molecule's axis (BINOL's, from a CXSMILES
    wedge) matched: ETKDG then embedded the pool, placed the core nowhere near its pose and
    the molecule failed as "ETKDG placed the core's atoms nowhere within 0.25 Å of the core".
    The axis decides the match as centres and double bonds do; an axis whose reference atoms
    the core does not all hold decides nothing."""
    binol = Chem.AddHs(Chem.MolFromSmiles("Oc1ccc2ccccc2c1-c1c(O)ccc2ccccc12 |wU:10.10|"))
    assert specified_axes(binol)
    assert AllChem.EmbedMolecule(binol, randomSeed=3) == 0
    assert check_stereo(binol).ok
    posed = Chem.RemoveHs(binol)
    mirror = Chem.Mol(posed)
    mirror.GetConformer().SetPositions(posed.GetConformer().GetPositions() * np.array([-1.0, 1.0, 1.0]))
    core, mirrored = Core.from_mol(posed), Core.from_mol(mirror)
    assert core.match(binol).atoms.tolist() == list(range(posed.GetNumAtoms()))
    with pytest.raises(MoleculeError, match="only with other stereo"):
        mirrored.match(binol)
    flat = Chem.Mol(binol)
    for bond in flat.GetBonds():
        bond.SetStereo(Chem.BondStereo.STEREONONE)
    mirrored.match(flat)                                     # no axis specified: either pose
    one_side = Chem.RWMol(mirror)                            # the naphthol of atoms 0-10 only
    for i in range(posed.GetNumAtoms() - 1, 10, -1):
        one_side.RemoveAtom(i)
    Core.from_mol(one_side.GetMol()).match(binol)


def test_unspecified_stereo_takes_the_cores_handedness():
    core = Core.from_mol(posed_core())
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(N)C(=O)Nc1ccc(Cl)cc1"))
    with pytest.raises(MoleculeError, match="only with other stereo"):
        core.match(Chem.AddHs(Chem.MolFromSmiles("C[C@@H](N)C(=O)Nc1ccc(Cl)cc1")))
    chosen = core.choose_stereo(mol)
    core.match(chosen)
    assert Chem.MolToSmiles(Chem.RemoveHs(chosen)) == Chem.MolToSmiles(
        Chem.MolFromSmiles("C[C@H](N)C(=O)Nc1ccc(Cl)cc1"))
    specified = Chem.AddHs(Chem.MolFromSmiles("C[C@@H](N)C(=O)Nc1ccc(Cl)cc1"))
    assert core.choose_stereo(specified) is specified         # specified stereo is never changed


def test_a_double_bond_the_core_holds_without_its_stereo_atom_decides_the_match():
    # the core is cut without the fluorine, RDKit's stereo atom of the C=C (CIP-highest): its
    # methyl, on the other side, still fixes E/Z, so the other isomer does not contain the
    # core, and an unspecified bond takes the core's
    ref = Chem.AddHs(Chem.MolFromSmiles("F/C(C)=C/CCO"))
    assert AllChem.EmbedMolecule(ref, randomSeed=1) == 0
    em = Chem.RWMol(ref)
    for i in sorted((a.GetIdx() for a in ref.GetAtoms() if a.GetAtomicNum() not in (6, 8)), reverse=True):
        em.RemoveAtom(i)
    core = Core.from_mol(em.GetMol())
    core.match(Chem.AddHs(Chem.MolFromSmiles("F/C(C)=C/CCO")))
    with pytest.raises(MoleculeError, match="only with other stereo"):
        core.match(Chem.AddHs(Chem.MolFromSmiles("F/C(C)=C\\CCO")))
    chosen = core.choose_stereo(Chem.AddHs(Chem.MolFromSmiles("FC(C)=CCCO")))
    assert Chem.MolToSmiles(Chem.RemoveHs(chosen)) == Chem.MolToSmiles(Chem.MolFromSmiles("F/C(C)=C/CCO"))


CHOLESTEROL = "C[C@H](CCCC(C)C)[C@H]1CC[C@@H]2[C@@]1(CC[C@H]3[C@H]2CC=C4[C@@]3(CC[C@@H](C4)O)C)C"


def test_unspecified_stereo_takes_every_centre_the_core_holds():
    # cholesterol's 8 centres all held: 256 isomers, and the first 64 that RDKit enumerates
    # did not include the core's
    core = Core.from_mol(posed_core(CHOLESTEROL, CHOLESTEROL, seed=3))
    flat = Chem.AddHs(Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromSmiles(CHOLESTEROL),
                                                          isomericSmiles=False)))
    chosen = core.choose_stereo(flat)
    assert Chem.MolToSmiles(Chem.RemoveHs(chosen)) == Chem.MolToSmiles(Chem.MolFromSmiles(CHOLESTEROL))
    core.match(chosen)


def test_unspecified_stereo_outside_the_core_is_left_to_the_isomer_choices():
    # a bridged ring the core does not hold: its stereo is not the core's to decide (the
    # first enumerated isomer of norbornylamine is one that ETKDG cannot build)
    core = Core.from_mol(posed_core("c1ccc(cc1)C(=O)NC", "c1ccc(cc1)C(=O)N"))
    mol = Chem.AddHs(Chem.MolFromSmiles("c1ccc(cc1)C(=O)NC1CC2CCC1C2"))
    assert core.choose_stereo(mol) is mol
    first = next(isomer_choices(mol, 0))
    assert AllChem.EmbedMolecule(Chem.Mol(first), randomSeed=1) == 0
    core.match(first)


def test_align_brings_conformers_onto_the_core_and_drops_distorted_ones():
    core = Core.from_mol(posed_core())
    mol = Chem.AddHs(Chem.MolFromSmiles(LIGAND))
    found = core.match(mol)
    AllChem.EmbedMultipleConfs(mol, 2, randomSeed=5)
    for conf in mol.GetConformers():          # the core's coordinates, moved rigidly
        xyz = conf.GetPositions()
        xyz[found.atoms] = found.positions
        for i, p in enumerate(xyz):
            conf.SetAtomPosition(i, p.tolist())
    turn = np.eye(4)
    turn[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    turn[:3, 3] = [5.0, -2.0, 1.0]
    TransformConformer(mol.GetConformer(0), turn)
    bent = mol.GetConformer(1).GetPositions()
    bent[found.atoms[0]] += [3 * CORE_RMSD_TOL * np.sqrt(len(found.atoms)), 0, 0]
    for i, p in enumerate(bent):
        mol.GetConformer(1).SetAtomPosition(i, p.tolist())
    kept = found.align(mol)
    assert list(kept) == [0] and kept[0] < 1e-6
    assert mol.GetNumConformers() == 1
    np.testing.assert_allclose(mol.GetConformer(0).GetPositions()[found.atoms], found.positions, atol=1e-6)


def test_force_fields_leave_fixed_atoms_where_they_are():
    mol = Chem.AddHs(Chem.MolFromSmiles(LIGAND))
    AllChem.EmbedMultipleConfs(mol, 2, randomSeed=3)
    fixed = [0, 1, 2, 3]
    before = [c.GetPositions() for c in mol.GetConformers()]
    energies, ff = relax_conformers(mol, fixed=fixed)
    assert ff == "MMFF94" and len(energies) == 2
    for conf, old in zip(mol.GetConformers(), before):
        new = conf.GetPositions()
        np.testing.assert_array_equal(new[fixed], old[fixed])
        assert np.abs(new - old).max() > 0.05                  # the rest was minimised
    free = Chem.Mol(mol)
    relaxed, _ = relax_conformers(free)
    assert min(relaxed) <= min(energies) + 1e-6                # constraints cannot lower the minimum
    moved = mol.GetConformer(0).GetPositions()
    moved[fixed] += 0.3
    for i, p in enumerate(moved):
        mol.GetConformer(0).SetAtomPosition(i, p.tolist())
    assert restrained_cleanup(mol, [0], fixed=fixed)
    np.testing.assert_array_equal(mol.GetConformer(0).GetPositions()[fixed], moved[fixed])


def test_generated_conformers_keep_the_core_in_place():
    core = Core.from_mol(posed_core())
    smiles = "CC(N)C(=O)Nc1ccc(OCCN2CCOCC2)cc1"          # unspecified centre: the core's is taken
    out = generate_conformers(smiles, n=4, core=core, seed=2)
    found = core.match(out)
    assert out.GetProp("core_atoms") == " ".join(str(i) for i in found.atoms)
    assert out.GetNumConformers() == 4
    for conf in out.GetConformers():
        np.testing.assert_array_equal(conf.GetPositions()[found.atoms], core.positions)
        assert check_stereo(out, conf.GetId()).ok
        assert check_geometry(out, conf.GetId()) == []
    # conformers differ away from the core
    xyz = np.stack([c.GetPositions() for c in out.GetConformers()])
    assert np.abs(xyz - xyz[:1]).max() > 0.5


def test_the_python_api_takes_a_core_file_as_the_cli_does(tmp_path):
    """``--core FILE`` has a Python counterpart: a path (str or Path) to the SDF or molfile.
    A str path was parsed as a core's text ('not a core: its first line is not a SMARTS'),
    a Path or another type failed with an AttributeError."""
    posed = posed_core()
    path = tmp_path / "core.sdf"
    with Chem.SDWriter(str(path)) as writer:
        writer.write(posed)
    expected = Core.from_file(path).text                      # what --core keeps
    for given in (str(path), path):
        opts = GenerateOptions(core=given)
        opts.validate()
        assert opts.core == expected
    with pytest.raises(ValueError, match="not found"):
        GenerateOptions(core=str(tmp_path / "none.sdf")).validate()
    with pytest.raises(ValueError, match="core must be an SDF or molfile path, an RDKit Mol"):
        GenerateOptions(core=5).validate()


def test_a_core_file_of_several_records_is_named(tmp_path, capsys):
    """``--core`` takes a file's first record; a file of a series' poses gave no word that the
    others were not used."""
    from molscore.cli import build_parser
    from molscore.cli.generate import generate_options

    path = tmp_path / "cores.sdf"
    with Chem.SDWriter(str(path)) as writer:
        writer.write(posed_core())
    args = build_parser().parse_args(["generate", LIGAND, "-o", "x.sdf", "--core", str(path)])
    one = generate_options(args)
    assert capsys.readouterr().err == ""
    with Chem.SDWriter(str(path)) as writer:
        writer.write(posed_core())
        writer.write(posed_core(seed=12))
    assert generate_options(args) == one
    assert capsys.readouterr().err == (f"molscore generate: --core {path} holds more than one record; "
                                       "its first is the core\n")


def test_a_core_is_refused_on_the_prior_route():
    """From the prior, replacement inpainting leaves the core's neighbours with stretched
    bonds: refused up front instead of returning conformers that fail the checks."""
    with pytest.raises(ValueError, match="a core is held on the etkdg route only"):
        generate_conformers("C[C@H](N)C(=O)Nc1ccc(OCC)cc1", n=2, core=Core.from_mol(posed_core()),
                            init="prior")


def test_a_cores_own_bad_angle_is_listed_as_given_and_not_resampled(monkeypatch):
    posed = posed_core()
    amide_n = next(a.GetIdx() for a in posed.GetAtoms() if a.GetSymbol() == "N" and a.GetDegree() == 2)
    ring_c = next(n.GetIdx() for n in posed.GetAtomWithIdx(amide_n).GetNeighbors() if n.GetIsAromatic())
    carbonyl = next(n.GetIdx() for n in posed.GetAtomWithIdx(amide_n).GetNeighbors() if n.GetIdx() != ring_c)
    SetAngleDeg(posed.GetConformer(), carbonyl, amide_n, ring_c, 165.0)   # the core's own strain
    core = Core.from_mol(posed)
    drawn = []
    sample = ConformerGenerator._sample
    monkeypatch.setattr(ConformerGenerator, "_sample",
                        lambda self, requests: drawn.append(len(requests)) or sample(self, requests))
    out = generate_conformers("C[C@H](N)C(=O)Nc1ccc(OCC)cc1", n=3, core=core, seed=1)
    assert drawn == [3]                                          # no resampling round
    found = core.match(out)
    at = {i: int(found.atoms[np.argmin(np.linalg.norm(core.positions - p, axis=1))])   # posed -> out
          for i, p in enumerate(posed.GetConformer().GetPositions())}
    angle = {f"C{at[carbonyl]}-N{at[amide_n]}-C{at[ring_c]}", f"C{at[ring_c]}-N{at[amide_n]}-C{at[carbonyl]}"}
    for conf in out.GetConformers():
        np.testing.assert_array_equal(conf.GetPositions()[found.atoms], core.positions)
        checks = conf.GetProp("checks")                          # listed, and nothing else
        assert checks.startswith(f"bond angle{GIVEN}: ") and checks.split(": ")[1].split()[0] in angle, checks
        assert ";" not in checks


def test_molecules_without_the_core_fail_with_the_reason_and_the_run_goes_on():
    gen = ConformerGenerator(options=None, n=2, core=posed_core())
    results = list(gen.run([("a", "CC(=O)Nc1ccccc1"), ("b", "C[C@@H](N)C(=O)Nc1ccccc1"),
                            ("c", "C[C@H](N)C(=O)Nc1ccccc1")]))
    assert results[0].error == "does not contain the core"
    assert results[1].error == "contains the core only with other stereo"
    assert results[2].ok and results[2].mol.GetNumConformers() == 2


def _phenyl_core(with_hydrogens: bool) -> Core:
    """The ring of an ETKDG pose of toluene, with its five hydrogens or without."""
    toluene = Chem.AddHs(Chem.MolFromSmiles("Cc1ccccc1"))
    assert AllChem.EmbedMolecule(toluene, randomSeed=1) == 0
    ring = {a.GetIdx() for a in toluene.GetAtoms() if a.GetIsAromatic()}
    keep = ring | ({a.GetIdx() for a in toluene.GetAtoms() if a.GetAtomicNum() == 1
                    and a.GetNeighbors()[0].GetIdx() in ring} if with_hydrogens else set())
    em = Chem.RWMol(toluene)
    for i in sorted(set(range(toluene.GetNumAtoms())) - keep, reverse=True):
        em.RemoveAtom(i)
    return Core.from_mol(em.GetMol())


def test_a_core_that_fits_two_different_places_is_refused_and_one_place_up_to_symmetry_is_not():
    # a phenyl core fits both rings of 4-chlorobibenzyl: it used to sit on the first ring
    # RDKit found (the chlorophenyl) without a word
    core = _phenyl_core(with_hydrogens=False)
    mol = Chem.AddHs(Chem.MolFromSmiles("Clc1ccc(CCc2ccccc2)cc1"))
    with pytest.raises(MoleculeError) as err:
        core.match(mol)
    assert str(err.value) == ("contains the core at two places that are not symmetry-equivalent "
                              "(atoms 1,2,3,4,13,14 and 7,8,9,10,11,12): cut the core so that it "
                              "fits one only (larger, or with its hydrogens)")
    assert core.choose_stereo(mol) is mol
    # the core's hydrogens tell the places apart: the ring with five hydrogens
    assert sorted(_phenyl_core(with_hydrogens=True).match(mol).atoms.tolist()) == [7, 8, 9, 10, 11, 12]
    # either ring of biphenyl, or of (R,R)-hydrobenzoin, gives the same conformers up to symmetry
    biphenyl = Chem.AddHs(Chem.MolFromSmiles("c1ccc(cc1)-c1ccccc1"))
    assert sorted(core.match(biphenyl).atoms.tolist()) == [0, 1, 2, 3, 4, 5]
    core.match(Chem.AddHs(Chem.MolFromSmiles("O[C@H](c1ccccc1)[C@H](O)c1ccccc1")))
    # diastereotopic phenyls too: swapping them keeps the stereocentre beside them
    core.match(Chem.AddHs(Chem.MolFromSmiles("C[C@@H](O)C(c1ccccc1)c1ccccc1")))
    # only a mirror relates the halves of meso-hydrobenzoin, which moves a core in general:
    # refused (conservatively: the mirror through this flat core's own plane would keep it)
    with pytest.raises(MoleculeError, match="two places that are not symmetry-equivalent"):
        core.match(Chem.AddHs(Chem.MolFromSmiles("O[C@H](c1ccccc1)[C@@H](O)c1ccccc1")))
    gen = ConformerGenerator(options=None, n=2, core=core)
    result = next(iter(gen.run([("two", "Clc1ccc(CCc2ccccc2)cc1")])))
    assert result.error == str(err.value)


def test_relax_with_a_core_keeps_it(tmp_path):
    core = Core.from_mol(posed_core())
    out = generate_conformers("C[C@H](N)C(=O)Nc1ccc(OC)cc1", n=2, core=core, relax=True, seed=1)
    found = core.match(out)
    for conf in out.GetConformers():
        np.testing.assert_array_equal(conf.GetPositions()[found.atoms], core.positions)
        assert conf.HasProp("energy")


def test_cli_core_writes_the_core_into_the_settings_and_refuses_a_flat_one(tmp_path):
    core_path = tmp_path / "core.sdf"
    with Chem.SDWriter(str(core_path)) as w:
        w.write(posed_core())
    out = tmp_path / "out.sdf"
    cmd = [sys.executable, "-m", "molscore", "generate", "--core", str(core_path), "-n", "2",
           "--no-progress", "-o", str(out)]
    run = subprocess.run(cmd + ["--input", "-"], input="C[C@H](N)C(=O)Nc1ccc(F)cc1 ok\nCCO bad\n",
                         capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    assert "does not contain the core" in (tmp_path / "failures.csv").read_text()
    written = [m for m in Chem.SDMolSupplier(str(out), removeHs=False)]
    assert len(written) == 2 and written[0].GetProp("_Name") == "ok"
    found = Core.from_file(core_path).match(written[0])
    for mol in written:
        np.testing.assert_allclose(mol.GetConformer().GetPositions()[found.atoms],
                                   Core.from_file(core_path).positions, atol=1e-4)
    settings = json.loads((tmp_path / "out.sdf.json").read_text())
    assert Core.from_text(settings["options"]["core"]).query.GetNumAtoms() == 12
    flat = Chem.MolFromSmiles("c1ccccc1N")
    AllChem.Compute2DCoords(flat)
    with Chem.SDWriter(str(tmp_path / "flat.sdf")) as w:
        w.write(flat)
    run = subprocess.run(cmd[:5] + [str(tmp_path / "flat.sdf"), "CCO", "-o", str(tmp_path / "x.sdf")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "--core" in run.stderr and "2D" in run.stderr


def test_a_core_that_matches_only_with_other_bond_orders_says_so():
    """A quinolone core cut at its C=O is not aromatic by itself (RDKit reads its kekulé
    ring with an sp3 carbon), so it cannot match its own ligand's aromatic ring: the reason
    says that the graph is there with other bond orders, and what to do; a molecule without
    the graph gets the plain reason."""
    ligand = Chem.AddHs(Chem.MolFromSmiles("O=c1cc(-c2ccccc2)[nH]c2ccccc12"))
    assert AllChem.EmbedMolecule(ligand, randomSeed=3) == 0
    Chem.Kekulize(ligand, clearAromaticFlags=True)
    cut = Chem.RWMol(ligand)
    for atom in sorted((a.GetIdx() for a in ligand.GetAtoms() if a.GetSymbol() in "OH"), reverse=True):
        cut.RemoveAtom(atom)
    core = Core.from_mol(Chem.MolFromMolBlock(Chem.MolToMolBlock(cut.GetMol())))
    with pytest.raises(MoleculeError, match=r"does not contain the core \(its atoms and bonds are "
                                            r"there, with other bond orders.*keep ring substituents"):
        core.match(prepare_mol("O=c1cc(-c2ccccc2)[nH]c2ccccc12"))
    with pytest.raises(MoleculeError, match=r"^does not contain the core$"):
        core.match(prepare_mol("O=c1cc(C)[nH]c2ccccc12"))


def test_a_core_with_attachment_points_is_refused():
    mol = Chem.AddHs(Chem.MolFromSmiles("[1*]c1ccc(C(N)=O)cc1"))
    assert AllChem.EmbedMolecule(mol, randomSeed=2) == 0
    with pytest.raises(ValueError, match="attachment points"):
        Core.from_mol(mol)


def test_a_core_etkdg_cannot_place_and_a_molecule_etkdg_cannot_embed_get_their_own_reasons(monkeypatch):
    """ETKDG embeds conformers but none with the core in place, or embeds none at all: two
    reasons (the second was given as the first), and no hint to the prior route, which takes
    no core."""
    import molscore.generate as generate_module
    from molscore.chem.core import CoreMatch

    core = Core.from_mol(posed_core())
    smiles = "C[C@H](N)C(=O)Nc1ccc(OCC)cc1"
    def nowhere(self, mol, tol=CORE_RMSD_TOL):      # no conformer has the core in place
        mol.RemoveAllConformers()
        return {}

    monkeypatch.setattr(CoreMatch, "align", nowhere)
    (result,) = ConformerGenerator(n=2, core=core, seed=1).run([("x", smiles)])
    assert result.error == "ETKDG placed the core's atoms nowhere within 0.25 Å of the core"
    monkeypatch.setattr(generate_module, "embed_conformers", lambda mol, *args, **kwargs: Chem.Mol(mol))
    (result,) = ConformerGenerator(n=2, core=core, seed=1).run([("x", smiles)])
    assert "ETKDG" in result.error and "nowhere" not in result.error and "prior" not in result.error


def test_a_core_holding_a_stereocentre_flat_fails_the_molecule_at_once(monkeypatch):
    """A core whose pose holds one of the molecule's specified stereocentres flat (its three
    held neighbours and the centre in one plane): no conformer can keep that stereo, so the
    molecule fails with that reason before any sampling, instead of after every round."""
    posed = posed_core()
    centre = next(a.GetIdx() for a in posed.GetAtoms() if a.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED)
    pos = posed.GetConformer().GetPositions()
    nbrs = [n.GetIdx() for n in posed.GetAtomWithIdx(centre).GetNeighbors()]
    assert len(nbrs) == 3
    posed.GetConformer().SetAtomPosition(centre, pos[nbrs].mean(0).tolist())
    core = Core.from_mol(posed)
    with pytest.raises(MoleculeError, match=r"the core holds the stereocentre C\d+ nearly flat"):
        core.match(prepare_mol(LIGAND))
    drawn = []
    sample = ConformerGenerator._sample
    monkeypatch.setattr(ConformerGenerator, "_sample",
                        lambda self, requests: drawn.append(len(requests)) or sample(self, requests))
    (result,) = ConformerGenerator(n=2, core=core, seed=1).run([("x", LIGAND)])
    assert "nearly flat, so no conformer can keep its stereo" in result.error
    assert sum(drawn) == 0
