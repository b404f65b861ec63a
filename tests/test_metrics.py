"""RMSD against RDKit GetBestRMS, coverage and crystal metrics with known answers."""
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign

from molscore.chem.io import InputFormatError
from molscore.chem.metrics import (_heavy_positions, _skeleton, atom_matches, coverage_metrics, crystal_summary,
                                   describe_skipped, evaluate_coverage, evaluate_crystal, read_groups,
                                   rmsd_matrix)
from molscore.cli import main


def _embed(smiles: str, n: int, seed: int, random_order: bool = False) -> Chem.Mol:
    mol = Chem.MolFromSmiles(smiles)
    if random_order:
        mol = Chem.MolFromSmiles(Chem.MolToSmiles(mol, doRandom=True))
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    assert len(AllChem.EmbedMultipleConfs(mol, n, params)) == n
    return mol


@pytest.mark.parametrize("smiles", ["CC(C)(C)c1ccc(C(=O)[O-])cc1", "OC(=O)CCc1ccccc1[N+](=O)[O-]",
                                    "CN1CCC[C@H]1c1cccnc1",
                                    # symmetric only without bond orders: no extra mappings
                                    "c1ccc2c(c1)CCCC2", "C=CCCCCC", "CC1=CC[C@@H](C(C)=C)CC1=O",
                                    # 1,296 mappings: over the old cap of 1,000 (off by 0.25 A)
                                    "FC(F)(F)c1cc(C(F)(F)F)cc(C(F)(F)F)c1"])
def test_rmsd_matches_getbestrms(smiles):
    probe = _embed(smiles, 4, 7)
    ref = _embed(smiles, 3, 11, random_order=True)
    got = rmsd_matrix(probe, ref)
    p, r = Chem.RemoveHs(probe), Chem.RemoveHs(ref)
    want = np.array([[rdMolAlign.GetBestRMS(p, r, i, j) for j in range(3)] for i in range(4)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.min() > 0


def test_rmsd_counts_dummy_atoms_as_getbestrms_does(tmp_path):
    """A dummy atom (``*``, an SDF ``R``) is a heavy atom of the atom mappings but was left
    out of the coordinates (atomic number > 1): every mapping indexed past them (IndexError)."""
    smi = "*CCOc1ccc(C(F)(F)F)cc1"
    probe, ref = _embed(smi, 3, 7), _embed(smi, 2, 11, random_order=True)
    got = rmsd_matrix(probe, ref)
    p, r = Chem.RemoveHs(probe), Chem.RemoveHs(ref)
    want = np.array([[rdMolAlign.GetBestRMS(p, r, i, j) for j in range(2)] for i in range(3)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    _write(tmp_path / "ref.sdf", [(Chem.Mol(ref), i, {"smiles": smi}) for i in range(2)])
    _write(tmp_path / "gen.sdf", [(Chem.Mol(probe), i, {"smiles": smi}) for i in range(3)])
    row = evaluate_coverage(tmp_path / "gen.sdf", tmp_path / "ref.sdf")["per_molecule"][0]
    assert row["amr_r"] == pytest.approx(want.min(0).mean(), abs=1e-3)


def _svd_rmsd(probe: np.ndarray, ref: np.ndarray) -> float:
    """Kabsch RMSD of two ``(n, 3)`` point sets by a full SVD (proper rotations only)."""
    p, r = probe - probe.mean(0), ref - ref.mean(0)
    u, s, vt = np.linalg.svd(p.T @ r)
    e = (p * p).sum() + (r * r).sum() - 2 * (s[0] + s[1] + np.sign(np.linalg.det(u @ vt)) * s[2])
    return float(np.sqrt(max(e, 0.0) / len(p)))


@pytest.mark.parametrize("smiles", ["N#CC#N", "CC#CC#CC#CC", "CS", "O=C=O"])
def test_rmsd_of_collinear_heavy_atoms_matches_a_full_svd(smiles):
    """Collinear heavy atoms (two near-zero singular values of the covariance): the square
    roots of the closed-form small eigenvalues were off by up to 0.05 A, and gave 0 for
    conformers that differ. (GetBestRMS itself is off by up to 2e-4 A here.)"""
    probe, ref = _embed(smiles, 4, 3), _embed(smiles, 3, 5)
    got = rmsd_matrix(probe, ref)
    xp, xr = _heavy_positions(probe), _heavy_positions(ref)
    want = np.array([[min(_svd_rmsd(xp[i], xr[j][m]) for m in atom_matches(probe, ref).expand())
                      for j in range(3)] for i in range(4)])
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert want.min() > 1e-4


@pytest.mark.parametrize("smiles", ["CC(C)(C)c1ccc(C(F)(F)F)cc1", "O=S(=O)(O)c1ccc(P(=O)(O)O)cc1",
                                    "CC(C)C(C)(C)C", "OC(=O)C(F)(F)C(=O)[O-]"])
def test_leaf_groups_factorise_the_mappings_exactly(smiles):
    """Interchangeable terminal atoms matched in one order and permuted afterwards give the
    same set of mappings as RDKit enumerating all of them (tert-butyl x CF3: 6 x 6 x 2)."""
    probe, ref = _embed(smiles, 3, 7), _embed(smiles, 2, 11, random_order=True)
    got = atom_matches(probe, ref)
    assert got.groups and len(got.core) < len(got)
    p, r = _skeleton(probe), _skeleton(ref)
    want = r.GetSubstructMatches(p, uniquify=False, useChirality=False, maxMatches=10**6)
    assert sorted(map(tuple, got.expand().tolist())) == sorted(want)
    pr, rr = Chem.RemoveHs(probe), Chem.RemoveHs(ref)
    np.testing.assert_allclose(rmsd_matrix(probe, ref),
                               [[rdMolAlign.GetBestRMS(pr, rr, i, j) for j in range(2)]
                                for i in range(3)], atol=1e-5)


@pytest.mark.parametrize("probe_smiles, ref_smiles", [
    ("C=CC(O)(O)CC", "C=CC(O)([O-])CC"),   # neutral probe O on the reference's O-: 2 mappings, not 4
    ("CC(C)(C)C", "[13CH3]C(C)(C)C"),       # the probe's methyls on a 13C methyl: raised
    ("C[C]([CH2])C", "C[C](C)[CH2]")])      # a radical CH2 beside two methyls: raised
def test_leaf_groups_where_charges_isotopes_or_radicals_differ(probe_smiles, ref_smiles):
    """RDKit matches a probe atom's charge, isotope and radical count only where they are
    nonzero, so a mapping need not take a leaf group onto a leaf group of the same labels: the
    factorised mappings missed some (the bond-order-free fallback then added wrong ones)."""
    probe, ref = _embed(probe_smiles, 2, 7), _embed(ref_smiles, 2, 11)
    pr, rr = Chem.RemoveHs(probe), Chem.RemoveHs(ref)
    np.testing.assert_allclose(rmsd_matrix(probe, ref),
                               [[rdMolAlign.GetBestRMS(pr, rr, i, j) for j in range(2)]
                                for i in range(2)], atol=1e-5)


def _unspecified(smiles: str, bond: int) -> Chem.Mol:
    mol = Chem.RWMol(Chem.MolFromSmiles(smiles))
    mol.GetBondWithIdx(bond).SetBondType(Chem.BondType.UNSPECIFIED)
    return mol.GetMol()


@pytest.mark.parametrize("probe, ref", [
    # RDKit ignores a dummy atom's charge: 72 mappings, not 48
    (Chem.MolFromSmiles("*C(*)(*)C(*)(*)[*-]"), Chem.MolFromSmiles("[*-]C(*)(*)C(*)(*)*")),
    # an unspecified bond matches any bond: 6 mappings, not 2
    (_unspecified("FC(F)(F)C", 2), Chem.MolFromSmiles("FC(F)(F)C"))])
def test_dummy_atoms_and_unspecified_bonds_keep_every_mapping(probe, ref):
    want = _skeleton(ref).GetSubstructMatches(_skeleton(probe), uniquify=False, useChirality=False)
    assert sorted(map(tuple, atom_matches(probe, ref).expand().tolist())) == sorted(want)


def test_mappings_over_max_matches_are_rdkits_first():
    mol = _embed("FC(F)(F)c1ccc(C(F)(F)F)cc1", 1, 3)
    full = atom_matches(mol, mol)
    assert len(full) == 2 * 6 * 6 * 2              # ring flip x CF3 x CF3 x swap of the ends
    blocks = list(full.blocks(7))
    assert [len(b) for b in blocks] == [7] * 20 + [4]
    np.testing.assert_array_equal(np.concatenate(blocks), full.expand())
    some = atom_matches(mol, mol, max_matches=50)   # as GetBestRMS(maxMatches=50)
    skeleton = _skeleton(mol)
    want = skeleton.GetSubstructMatches(skeleton, uniquify=False, useChirality=False, maxMatches=50)
    np.testing.assert_array_equal(some.expand(), np.asarray(want))


def test_rmsd_matrix_without_reference_conformers_is_empty():
    mol = _embed("CC(C)(C)O", 3, 5)
    assert rmsd_matrix(mol, mol, None, []).shape == (3, 0)
    assert rmsd_matrix(mol, mol, [], None).shape == (0, 3)


def test_different_molecules_raise():
    with pytest.raises(ValueError):
        atom_matches(_embed("CCO", 1, 1), _embed("CCN", 1, 1))


def test_coverage_metrics_known_matrix():
    rmsd = np.array([[0.5, 2.0, 3.0],
                     [1.0, 0.7, 3.0]])       # 2 generated x 3 references
    m = coverage_metrics(rmsd, 0.75)
    assert m["cov_r"] == pytest.approx(2 / 3) and m["amr_r"] == pytest.approx((0.5 + 0.7 + 3.0) / 3)
    assert m["cov_p"] == pytest.approx(1.0) and m["amr_p"] == pytest.approx(0.6)


def _write(path, mols_with_props):
    w = Chem.SDWriter(str(path))
    for mol, conf_id, props in mols_with_props:
        for k, v in props.items():
            mol.SetProp(k, str(v))
        w.write(mol, confId=conf_id)
    w.close()


def test_coverage_reference_equals_generated(tmp_path):
    recs = []
    for smi in ["CCOC(=O)c1ccccc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"]:
        mol = _embed(smi, 3, 5)
        recs += [(Chem.Mol(mol), c.GetId(), {"smiles": smi, "conformer": c.GetId()})
                 for c in mol.GetConformers()]
    _write(tmp_path / "ref.sdf", recs)
    res = evaluate_coverage(tmp_path / "ref.sdf", tmp_path / "ref.sdf", 0.75)
    assert res["n_molecules"] == 2 and res["missing"] == []
    for key in ("cov_r", "cov_p"):
        assert res[key]["mean"] == 1.0 and res[key]["median"] == 1.0
    for key in ("amr_r", "amr_p"):
        assert res[key]["mean"] < 1e-6


def test_crystal_first_n(tmp_path):
    smi = "CCCCOc1ccccc1C(=O)N"
    ref = _embed(smi, 1, 3)
    gen = _embed(smi, 3, 9, random_order=True)
    # generated record 2 is the crystal conformer itself (rotated and in another atom order)
    crystal = Chem.Mol(ref)
    AllChem.TransformMol(crystal, np.array([[0, -1, 0, 1.0], [1, 0, 0, 2.0], [0, 0, 1, -3.0],
                                            [0, 0, 0, 1.0]]))
    _write(tmp_path / "ref.sdf", [(crystal, 0, {"smiles": smi})])
    recs = [(Chem.Mol(gen), 0, {"smiles": smi}), (Chem.Mol(gen), 1, {"smiles": smi}),
            (Chem.Mol(ref), 0, {"smiles": smi})]
    _write(tmp_path / "gen.sdf", recs)
    res = evaluate_crystal(tmp_path / "gen.sdf", tmp_path / "ref.sdf", ns=(1, 2, 3, 50))
    row = res["per_molecule"][0]["min_rmsd"]
    first = rmsd_matrix(gen, ref, [0], [0])[0, 0]
    assert row[1] == pytest.approx(first, abs=1e-3) and first > 0.1   # SDF keeps 4 decimals
    assert row[3] < 1e-3 and row[50] < 1e-3 and row[2] >= row[3]
    assert res["N=50"]["frac_below_0.5"] == 1.0


def test_crystal_summary():
    rows = [{1: 0.3, 10: 0.2}, {1: 1.5, 10: 0.8}, {1: 2.5, 10: 1.2}]
    s = crystal_summary(rows, (1, 10))
    assert s["N=1"]["median"] == 1.5 and s["N=1"]["frac_below_0.5"] == pytest.approx(1 / 3)
    assert s["N=1"]["frac_below_2.0"] == pytest.approx(2 / 3)
    assert s["N=10"]["frac_below_1.0"] == pytest.approx(2 / 3) and s["N=10"]["median"] == 0.8


def test_bond_orders_count_but_tautomers_still_pair():
    # tetralin: the naphthalene graph has 4 automorphisms, with bond orders only 2
    assert len(atom_matches(_embed("c1ccc2c(c1)CCCC2", 1, 1), _embed("c1ccc2c(c1)CCCC2", 1, 2))) == 2
    # carboxylate / nitro oxygens still swap; an imidazolium's charged N does not
    assert len(atom_matches(_embed("CC(=O)[O-]", 1, 1), _embed("CC(=O)[O-]", 1, 2))) == 2
    assert len(atom_matches(_embed("Cc1c[nH+]c[nH]1", 1, 1), _embed("Cc1c[nH+]c[nH]1", 1, 2))) == 1
    # other bond orders or charges (tautomer, charge form): mapped on the heavy-atom graph
    assert len(atom_matches(_embed("Oc1ccccn1", 1, 1), _embed("O=c1cccc[nH]1", 1, 2))) == 1
    assert len(atom_matches(_embed("CCC(=O)O", 1, 1), _embed("CCC(=O)[O-]", 1, 2))) == 2


def test_each_reference_is_paired_once(tmp_path):
    r_smi, s_smi = "C[C@H](NC(=O)CCC)c1ccccc1", "C[C@@H](NC(=O)CCC)c1ccccc1"
    ref, gen_r, gen_s = _embed(r_smi, 2, 1), _embed(r_smi, 4, 2), _embed(s_smi, 4, 3)
    _write(tmp_path / "ref.sdf", [(Chem.Mol(ref), i, {"smiles": r_smi}) for i in range(2)])
    _write(tmp_path / "gen.sdf", [(Chem.Mol(gen_r), i, {"smiles": r_smi}) for i in range(4)]
           + [(Chem.Mol(gen_s), i, {"smiles": s_smi}) for i in range(4)])
    res = evaluate_coverage(tmp_path / "gen.sdf", tmp_path / "ref.sdf")
    assert res["n_molecules"] == 1 and res["per_molecule"][0]["n_generated"] == 4
    assert evaluate_crystal(tmp_path / "gen.sdf", tmp_path / "ref.sdf")["n_molecules"] == 1
    # a generated stereoisomer alone still pairs with the reference's ignoring stereo
    _write(tmp_path / "gen_s.sdf", [(Chem.Mol(gen_s), i, {"smiles": s_smi}) for i in range(4)])
    assert evaluate_coverage(tmp_path / "gen_s.sdf", tmp_path / "ref.sdf")["n_molecules"] == 1


def test_non_integer_conformer_property_is_an_input_error(tmp_path):
    mol = _embed("CCO", 2, 1)
    _write(tmp_path / "x.sdf", [(Chem.Mol(mol), i, {"conformer": f"{i}.0"}) for i in range(2)])
    with pytest.raises(InputFormatError, match="conformer"):
        read_groups(tmp_path / "x.sdf")


@pytest.mark.parametrize("extra", [["crystal", "--n", "0"], ["crystal", "--n", "-1"],
                                   ["coverage", "--max-matches", "-5"], ["coverage", "--threshold", "-1"],
                                   ["coverage", "--json", "/nonexistent_dir/x.json"]])
def test_evaluate_cli_bad_options_are_one_line_errors(tmp_path, capsys, extra):
    mol = _embed("CCOC(=O)c1ccccc1", 2, 1)
    _write(tmp_path / "ref.sdf", [(Chem.Mol(mol), i, {"smiles": "CCOC(=O)c1ccccc1"}) for i in range(2)])
    try:
        rc = main(["evaluate", extra[0], "--generated", str(tmp_path / "ref.sdf"),
                   "--reference", str(tmp_path / "ref.sdf"), *extra[1:]])
    except SystemExit as exc:        # argparse
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err


def test_evaluate_cli_finds_an_unwritable_json_before_the_rmsds(tmp_path, capsys, monkeypatch):
    """``--json`` naming a folder, or a file in a missing folder, is a usage error before any
    RMSD is computed (it was found only when the result was written)."""
    import molscore.chem.metrics as metrics

    def never(*args, **kwargs):
        raise AssertionError("computed before the output was checked")

    monkeypatch.setattr(metrics, "evaluate_crystal", never)
    mol = _embed("CCO", 1, 1)
    _write(tmp_path / "ref.sdf", [(Chem.Mol(mol), 0, {"smiles": "CCO"})])
    (tmp_path / "folder.json").mkdir()
    for out, reason in ((tmp_path / "folder.json", "Is a directory"),
                        (tmp_path / "none" / "x.json", "no folder")):
        assert main(["evaluate", "crystal", "--generated", str(tmp_path / "ref.sdf"),
                     "--reference", str(tmp_path / "ref.sdf"), "--json", str(out)]) == 2
        assert reason in capsys.readouterr().err
    # a folder that takes no files (read-only, which root's tests cannot make: its refusal)
    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refused)
    out = tmp_path / "x.json"
    assert main(["evaluate", "crystal", "--generated", str(tmp_path / "ref.sdf"),
                 "--reference", str(tmp_path / "ref.sdf"), "--json", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"molscore evaluate: error: cannot write {out}: Permission denied"


def test_evaluate_cli_shows_a_progress_bar_unless_told_not_to(tmp_path, capsys):
    mol = _embed("CCO", 2, 1)
    _write(tmp_path / "ref.sdf", [(Chem.Mol(mol), i, {"smiles": "CCO"}) for i in range(2)])
    args = ["evaluate", "coverage", "--generated", str(tmp_path / "ref.sdf"),
            "--reference", str(tmp_path / "ref.sdf")]
    assert main(args) == 0
    assert "coverage: 100%" in capsys.readouterr().err
    assert main([*args, "--no-progress"]) == 0
    assert "coverage" not in capsys.readouterr().err


def test_generated_records_paired_with_no_reference_are_reported(tmp_path, capsys):
    """Without a ``smiles`` property a conformer with an inverted centre forms its own group
    (stereo read from 3D), pairs with no reference molecule, and evaluate says so."""
    smi = "C[C@H](NC(=O)CCC)c1ccccc1"
    ref, gen = _embed(smi, 1, 1), _embed(smi, 3, 2)
    mirror = Chem.Mol(gen)
    conf = mirror.GetConformer(0)
    for i in range(mirror.GetNumAtoms()):
        p = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, (-p.x, p.y, p.z))
    _write(tmp_path / "ref.sdf", [(Chem.Mol(ref), 0, {})])
    _write(tmp_path / "gen.sdf", [(Chem.Mol(gen), i, {}) for i in (0, 1)] + [(mirror, 0, {})])
    res = evaluate_crystal(tmp_path / "gen.sdf", tmp_path / "ref.sdf", ns=(1, 10))
    assert res["n_molecules"] == 1 and res["per_molecule"][0]["n_generated"] == 2
    assert list(res["unpaired_generated"].values()) == [1]
    assert Chem.MolFromSmiles(next(iter(res["unpaired_generated"]))).HasSubstructMatch(
        Chem.MolFromSmiles("C[C@@H](NC(=O)CCC)c1ccccc1"), useChirality=True)
    assert main(["evaluate", "crystal", "--generated", str(tmp_path / "gen.sdf"),
                 "--reference", str(tmp_path / "ref.sdf"), "--n", "1"]) == 0
    err = capsys.readouterr().err
    assert "note: 1 generated records in 1 groups match no reference molecule" in err and "inverted" in err
    assert evaluate_coverage(tmp_path / "ref.sdf", tmp_path / "ref.sdf")["unpaired_generated"] == {}


def test_crystal_says_when_molecules_have_fewer_conformers_than_n(tmp_path, capsys):
    """generate's default -n 10 against the default N = 1, 10, 50: the N = 50 row was printed
    without a word, though it is the N = 10 row again."""
    smi = "CCCCOc1ccccc1C(=O)N"
    _write(tmp_path / "ref.sdf", [(_embed(smi, 1, 3), 0, {"smiles": smi})])
    gen = _embed(smi, 3, 9)
    _write(tmp_path / "gen.sdf", [(Chem.Mol(gen), i, {"smiles": smi}) for i in range(3)])
    args = ["evaluate", "crystal", "--generated", str(tmp_path / "gen.sdf"),
            "--reference", str(tmp_path / "ref.sdf"), "--no-progress"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err == ("note: molecules with fewer generated conformers than N (N = 10: 1 of 1, "
                   "N = 50: 1 of 1) count the minimum over all they have\n")
    assert main(args + ["--n", "1", "3"]) == 0
    assert capsys.readouterr().err == ""


def test_coverage_says_when_molecules_have_fewer_than_2k_conformers(tmp_path, capsys):
    """K reference conformers want 2K generated ones (the GEOM protocol); fewer were scored
    without a word. The metrics are the same; stderr says how many molecules fell short."""
    smi = "CCCCOc1ccccc1C(=O)N"
    _write(tmp_path / "ref.sdf", [(_embed(smi, 2, 3), i, {"smiles": smi}) for i in range(2)])
    gen = _embed(smi, 4, 9)
    _write(tmp_path / "gen.sdf", [(Chem.Mol(gen), i, {"smiles": smi}) for i in range(3)])
    args = ["evaluate", "coverage", "--generated", str(tmp_path / "gen.sdf"),
            "--reference", str(tmp_path / "ref.sdf"), "--no-progress"]
    assert main(args) == 0
    assert capsys.readouterr().err == (
        f"note: 1 of 1 molecules have fewer generated conformers than 2K for their K reference "
        f"conformers (the GEOM protocol's), e.g. {Chem.CanonSmiles(smi)!r}\n")
    _write(tmp_path / "gen.sdf", [(Chem.Mol(gen), i, {"smiles": smi}) for i in range(4)])
    assert main(args) == 0
    assert capsys.readouterr().err == ""


def test_a_name_shared_by_other_molecules_is_reported(tmp_path, capsys):
    """--group-by name pairs a generated and a reference molecule of other atoms when their
    names agree: the pair was left out without a word, counted only among the reference
    molecules without generated conformers."""
    ethanol, amide = _embed("CCO", 2, 1), _embed("CCCCOc1ccccc1C(=O)N", 2, 3)
    _write(tmp_path / "gen.sdf", [(Chem.Mol(ethanol), i, {"_Name": "m1"}) for i in (0, 1)]
           + [(Chem.Mol(amide), i, {"_Name": "m2"}) for i in (0, 1)])
    _write(tmp_path / "ref.sdf", [(Chem.Mol(amide), 0, {"_Name": "m1"}), (Chem.Mol(amide), 1, {"_Name": "m2"})])
    _write(tmp_path / "ref_m1.sdf", [(Chem.Mol(amide), 0, {"_Name": "m1"})])
    why = "molecules differ (heavy-atom or bond counts)"
    res = evaluate_crystal(tmp_path / "gen.sdf", tmp_path / "ref.sdf", ns=(1,), group_by="name")
    assert res["mismatched"] == {"m1": why} and res["n_molecules"] == 1 and res["missing"] == ["m1"]
    args = ["evaluate", "crystal", "--generated", str(tmp_path / "gen.sdf"), "--group-by", "name",
            "--no-progress", "--n", "1", "--reference"]
    assert main(args + [str(tmp_path / "ref.sdf")]) == 0
    assert capsys.readouterr().err == (f"note: 1 generated groups share their name with a reference "
                                       f"molecule of other atoms and are left out, e.g. 'm1' ({why})\n")
    assert main(args + [str(tmp_path / "ref_m1.sdf")]) == 2
    assert capsys.readouterr().err == ("molscore evaluate: error: no molecule in common between the two "
                                       f"files: each name they share names other atoms in each, e.g. 'm1' ({why})\n")


def test_first_n_of_two_runs_of_one_molecule_is_the_first_run_in_file_order(tmp_path):
    """Two outputs of one molecule in one file (two inputs with one SMILES, or a file
    appended to) repeat the ranks 0, 1, 2 of the ``conformer`` property. Sorting by rank
    interleaved the runs, so that N = 2 reached the second run's first conformer (here the
    crystal conformer itself); ranks that repeat in a group now leave the file order."""
    smi = "CCCCOc1ccccc1C(=O)N"
    ref, gen = _embed(smi, 1, 3), _embed(smi, 3, 9)
    _write(tmp_path / "ref.sdf", [(Chem.Mol(ref), 0, {"smiles": smi})])
    first_run = [(Chem.Mol(gen), i, {"smiles": smi, "conformer": i}) for i in range(3)]
    second_run = [(Chem.Mol(ref), 0, {"smiles": smi, "conformer": 0})] + \
        [(Chem.Mol(gen), i, {"smiles": smi, "conformer": i}) for i in (1, 2)]
    _write(tmp_path / "gen.sdf", first_run + second_run)
    row = evaluate_crystal(tmp_path / "gen.sdf", tmp_path / "ref.sdf", ns=(2, 4))["per_molecule"][0]
    want = rmsd_matrix(gen, ref, [0, 1], [0]).min()
    assert row["min_rmsd"][2] == pytest.approx(want, abs=1e-3) and want > 0.1
    assert row["min_rmsd"][4] < 1e-3
    # ranks out of file order but unique: still sorted by rank
    _write(tmp_path / "gen_shuffled.sdf", [(Chem.Mol(ref), 0, {"smiles": smi, "conformer": 2})]
           + [(Chem.Mol(gen), i, {"smiles": smi, "conformer": i}) for i in (0, 1)])
    row = evaluate_crystal(tmp_path / "gen_shuffled.sdf", tmp_path / "ref.sdf", ns=(2, 3))["per_molecule"][0]
    assert row["min_rmsd"][2] == pytest.approx(want, abs=1e-3) and row["min_rmsd"][3] < 1e-3


@pytest.mark.parametrize("probe_smiles, ref_smiles", [
    ("[1000CH3]C(C)(C)C", "CC(C)(C)[1000CH3]"),          # labels were isotope + 1000 * rank
    ("[5000CH3]C(C)(C)C", "CC(C)(C)[5000CH3]")])        # past the label step: not factorised
def test_heavy_isotope_labels_do_not_collide_with_the_leaf_labels(probe_smiles, ref_smiles):
    probe, ref = _embed(probe_smiles, 1, 3), _embed(ref_smiles, 1, 5)
    p, r = _skeleton(probe), _skeleton(ref)
    want = r.GetSubstructMatches(p, uniquify=False, useChirality=False, maxMatches=10**6)
    assert len(want) == 6
    assert sorted(map(tuple, atom_matches(probe, ref).expand().tolist())) == sorted(want)


def _unreadable_record() -> str:
    """An SDF record RDKit cannot read (a carbon of six bonds), ``smiles`` CCO."""
    mol = Chem.MolFromSmiles("CC(C)(C)(C)(C)C", sanitize=False)
    mol.UpdatePropertyCache(strict=False)
    return Chem.MolToMolBlock(mol, kekulize=False) + "> <smiles>\nCCO\n\n$$$$\n"


def test_records_of_another_molecule_are_counted_and_left_out(tmp_path, capsys):
    """A reference group holding a record of another molecule (as GEOM-DRUGS excerpt
    ensembles do: 47 of geom_drugs_10's 48) and a record RDKit cannot read: both were left
    out without a word. Now counted, by reason, per group and per file, in the result and in
    one note per file; the metrics are those of the file without the two records."""
    smi, other = "CCCCOc1ccccc1C(=O)N", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"
    ref, wrong, gen = _embed(smi, 3, 3), _embed(other, 1, 4), _embed(smi, 4, 9)
    own = [(Chem.Mol(ref), i, {"smiles": smi, "conformer": c}) for i, c in ((0, 0), (1, 2), (2, 3))]
    _write(tmp_path / "clean.sdf", own)
    _write(tmp_path / "ref.sdf", own[:1] + [(Chem.Mol(wrong), 0, {"smiles": smi, "conformer": 1})] + own[1:])
    with open(tmp_path / "ref.sdf", "a") as fh:
        fh.write(_unreadable_record())
    _write(tmp_path / "gen.sdf", [(Chem.Mol(gen), i, {"smiles": smi}) for i in range(4)])
    key = Chem.MolToSmiles(Chem.MolFromSmiles(smi))

    groups = read_groups(tmp_path / "ref.sdf")
    assert groups.records == 5 and groups.ungrouped == {"unreadable": 1} and groups.dropped == {}
    assert groups[key].skipped == {"other_molecule": 1} and len(groups[key].xyz) == 3
    res = evaluate_coverage(tmp_path / "gen.sdf", tmp_path / "ref.sdf")
    clean = evaluate_coverage(tmp_path / "gen.sdf", tmp_path / "clean.sdf")
    assert res["skipped_records"] == {
        "generated": {"records": 4, "skipped": {}, "groups": {}},
        "reference": {"records": 5, "skipped": {"unreadable": 1, "other_molecule": 1},
                      "groups": {key: {"kept": 3, "other_molecule": 1}}}}
    assert clean["skipped_records"]["reference"] == {"records": 3, "skipped": {}, "groups": {}}
    assert res["per_molecule"] == clean["per_molecule"] and res["per_molecule"][0]["n_reference"] == 3
    assert [res[m] for m in ("cov_r", "amr_r", "cov_p", "amr_p")] == \
        [clean[m] for m in ("cov_r", "amr_r", "cov_p", "amr_p")]
    crystal = evaluate_crystal(tmp_path / "gen.sdf", tmp_path / "ref.sdf", ns=(1, 4))
    assert crystal["skipped_records"] == res["skipped_records"]

    args = ["evaluate", "coverage", "--generated", str(tmp_path / "gen.sdf"), "--no-progress", "--reference"]
    assert main(args + [str(tmp_path / "ref.sdf")]) == 0
    assert capsys.readouterr().err.startswith(
        f"note: reference file {tmp_path / 'ref.sdf'}: 2 of 5 records skipped: 1 unreadable by "
        f"RDKit, 1 not the molecule of their group ({key!r}: 1 of 4)\nnote: 1 of 1 molecules have "
        "fewer generated conformers than 2K")   # 3 of the 4 references kept: 6 wanted
    assert main(args + [str(tmp_path / "clean.sdf")]) == 0
    err = capsys.readouterr().err                           # no record skipped: the 2K note alone
    assert err.count("\n") == 1 and err.startswith("note: 1 of 1 molecules have fewer generated")
    _write(tmp_path / "gen_other.sdf", [(Chem.Mol(wrong), 0, {"smiles": other})])
    args[3] = str(tmp_path / "gen_other.sdf")
    assert main(args + [str(tmp_path / "ref.sdf")]) == 2         # an error stays one line
    assert capsys.readouterr().err == (
        "molscore evaluate: error: no molecule in common between the two files (grouped by smiles); "
        f"reference file: 2 of 5 records skipped: 1 unreadable by RDKit, 1 not the molecule of their "
        f"group ({key!r}: 1 of 4)\n")


@pytest.mark.parametrize("group_by", ["smiles", "ensemble"])
def test_a_group_whose_first_record_is_another_molecule_is_led_by_its_own(tmp_path, capsys, group_by):
    """A group's first record (rank 0) of another molecule than its ``smiles`` property
    says became the group's molecule: its own records were all skipped, and the generated
    conformers of the right molecule were "mismatched" with it, the molecule left unscored.
    Now the first record that is the molecule it says leads the group; a group of which no
    record is, is dropped and counted."""
    smi, other = "CCCCOc1ccccc1C(=O)N", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"
    ref, wrong, gen = _embed(smi, 3, 3), _embed(other, 2, 4), _embed(smi, 2, 9)
    props = {"smiles": smi, "ensemble": "e1"}
    own = [(Chem.Mol(ref), i, {**props, "conformer": i + 1, "_Name": f"own{i}"}) for i in range(3)]
    _write(tmp_path / "ref.sdf", [(Chem.Mol(wrong), 0, {**props, "conformer": 0, "_Name": "other"})] + own)
    _write(tmp_path / "clean.sdf", own)
    _write(tmp_path / "gen.sdf", [(Chem.Mol(gen), i, {**props, "conformer": i}) for i in range(2)])
    key = Chem.MolToSmiles(Chem.MolFromSmiles(smi)) if group_by == "smiles" else "e1"

    group = read_groups(tmp_path / "ref.sdf", group_by)[key]
    assert group.names == ["own0", "own1", "own2"] and group.skipped == {"other_molecule": 1}
    assert Chem.MolToSmiles(Chem.RemoveHs(group.mol)) == Chem.MolToSmiles(Chem.MolFromSmiles(smi))
    res = evaluate_crystal(tmp_path / "gen.sdf", tmp_path / "ref.sdf", ns=(1, 2), group_by=group_by)
    clean = evaluate_crystal(tmp_path / "gen.sdf", tmp_path / "clean.sdf", ns=(1, 2), group_by=group_by)
    assert res["n_molecules"] == 1 and res["mismatched"] == {}
    assert res["per_molecule"] == clean["per_molecule"]
    want = rmsd_matrix(gen, ref, [0, 1], [0]).min()
    assert res["per_molecule"][0]["min_rmsd"][2] == pytest.approx(want, abs=1e-3)

    # no record is the molecule its smiles property says: no reference for it, dropped
    _write(tmp_path / "wrong.sdf", [(Chem.Mol(wrong), i, {**props, "conformer": i}) for i in range(2)])
    groups = read_groups(tmp_path / "wrong.sdf", group_by)
    assert key not in groups and groups.dropped == {key: {"other_molecule": 2}}
    assert groups.skipped() == {"records": 2, "skipped": {"other_molecule": 2},
                                "groups": {key: {"kept": 0, "other_molecule": 2}}}
    assert main(["evaluate", "crystal", "--generated", str(tmp_path / "gen.sdf"), "--reference",
                 str(tmp_path / "wrong.sdf"), "--group-by", group_by, "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"molscore evaluate: error: no record of the reference file {tmp_path / 'wrong.sdf'} is kept: "
        f"2 of 2 records skipped: 2 not the molecule of their group ({key!r}: 2 of 2)\n")


def test_records_with_2d_coordinates_are_left_out_not_scored(tmp_path, capsys):
    """A 2D record (a depiction: the molfile says 2D, every z is 0) was scored as a conformer:
    a 2D SDF given as the generated file printed COV 0 and an AMR of over 1 A, exit status 0.
    Now such records are counted and left out; a file of nothing else is a one-line error."""
    smi = "CCCCOc1ccccc1C(=O)N"
    ref = _embed(smi, 2, 3)
    flat = Chem.MolFromSmiles(smi)
    AllChem.Compute2DCoords(flat)
    assert not flat.GetConformer().Is3D()
    _write(tmp_path / "ref.sdf", [(Chem.Mol(ref), i, {"smiles": smi}) for i in range(2)])
    _write(tmp_path / "flat.sdf", [(Chem.Mol(flat), 0, {"smiles": smi})] * 2)
    _write(tmp_path / "mixed.sdf", [(Chem.Mol(flat), 0, {"smiles": smi})]
           + [(Chem.Mol(ref), i, {"smiles": smi}) for i in range(2)])
    assert read_groups(tmp_path / "flat.sdf").skipped() == {
        "records": 2, "skipped": {"not_3d": 2}, "groups": {}}
    res = evaluate_coverage(tmp_path / "mixed.sdf", tmp_path / "ref.sdf")
    assert res["per_molecule"][0]["n_generated"] == 2 and res["cov_r"]["mean"] == 1.0
    args = ["evaluate", "coverage", "--reference", str(tmp_path / "ref.sdf"), "--no-progress", "--generated"]
    assert main(args + [str(tmp_path / "mixed.sdf")]) == 0
    assert capsys.readouterr().err.startswith(f"note: generated file {tmp_path / 'mixed.sdf'}: 1 of 3 "
                                              "records skipped: 1 without 3D coordinates (2D)\nnote: 1 "
                                              "of 1 molecules have fewer generated conformers than 2K")
    assert main(args + [str(tmp_path / "flat.sdf")]) == 2
    assert capsys.readouterr().err == (
        f"molscore evaluate: error: no record of the generated file {tmp_path / 'flat.sdf'} is kept: "
        "2 of 2 records skipped: 2 without 3D coordinates (2D)\n")


def test_records_without_heavy_atoms_are_named_as_such(tmp_path):
    """A record of H2 ended ``read_groups`` in a ValueError (``np.stack`` of no heavy-atom
    positions) and an empty record was counted as 2D; both are now left out as records
    without heavy atoms, which a heavy-atom RMSD cannot score."""
    h2 = Chem.AddHs(Chem.MolFromSmiles("[H][H]"))
    conf = Chem.Conformer(2)
    conf.SetAtomPosition(1, (0.0, 0.0, 0.74))
    conf.Set3D(True)
    h2.AddConformer(conf)
    empty = Chem.RWMol()
    empty_conf = Chem.Conformer(0)
    empty_conf.Set3D(True)
    empty.AddConformer(empty_conf)
    ethanol = _embed("CCO", 1, 1)
    _write(tmp_path / "gen.sdf", [(h2, 0, {"smiles": "[H][H]"}), (empty.GetMol(), 0, {}),
                                  (Chem.Mol(ethanol), 0, {"smiles": "CCO"})])
    summary = read_groups(tmp_path / "gen.sdf").skipped()
    assert summary["skipped"] == {"no_heavy_atoms": 2}
    assert describe_skipped(summary) == "2 of 3 records skipped: 2 without heavy atoms (no heavy-atom RMSD)"


def test_evaluate_cli_says_in_one_line_when_a_file_cannot_be_opened(tmp_path, capsys, monkeypatch):
    """A file without read permission raised PermissionError from ``read_sdf_mols`` (a
    traceback); now ``cannot read PATH: REASON`` and exit status 2. (Permissions do not bind
    root, so the refusal is made by ``open`` itself.)"""
    import builtins

    import molscore.chem.io as chem_io

    mol = _embed("CCO", 2, 1)
    _write(tmp_path / "ref.sdf", [(Chem.Mol(mol), i, {"smiles": "CCO"}) for i in range(2)])
    _write(tmp_path / "gen.sdf", [(Chem.Mol(mol), i, {"smiles": "CCO"}) for i in range(2)])

    def refuse(path, *args, **kwargs):
        if str(path) == str(tmp_path / "gen.sdf"):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(chem_io, "open", refuse, raising=False)
    assert main(["evaluate", "coverage", "--generated", str(tmp_path / "gen.sdf"),
                 "--reference", str(tmp_path / "ref.sdf"), "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"molscore evaluate: error: cannot read {tmp_path / 'gen.sdf'}: "
                                       "Permission denied\n")


def test_coverage_is_strictly_below_the_threshold_and_over_the_molecules_scored(tmp_path, capsys):
    """COV counts RMSD < threshold (torsional diffusion's ``<``), and the means are over the
    molecules with generated conformers; the output says how many reference molecules have
    none and that they are left out (it said only "without generated")."""
    m = coverage_metrics(np.array([[0.75, 0.5], [2.0, 0.75]]), 0.75)
    assert m == {"cov_r": 0.5, "amr_r": 0.625, "cov_p": 0.5, "amr_p": 0.625}
    a, b = "CCCCOc1ccccc1C(=O)N", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"
    mol_a, mol_b = _embed(a, 2, 3), _embed(b, 1, 4)
    _write(tmp_path / "ref.sdf", [(Chem.Mol(mol_a), i, {"smiles": a}) for i in range(2)]
           + [(Chem.Mol(mol_b), 0, {"smiles": b})])
    _write(tmp_path / "gen.sdf", [(Chem.Mol(mol_a), 0, {"smiles": a})])
    res = evaluate_coverage(tmp_path / "gen.sdf", tmp_path / "ref.sdf")
    cov_r = res["per_molecule"][0]["cov_r"]
    assert res["n_molecules"] == 1 and len(res["missing"]) == 1 and res["cov_r"]["mean"] == cov_r
    assert main(["evaluate", "coverage", "--generated", str(tmp_path / "gen.sdf"), "--reference",
                 str(tmp_path / "ref.sdf"), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "molecules: 1 (reference molecules without generated conformers, left out: 1); "
        "threshold 0.75 A (covered: RMSD < threshold)")


def test_crystal_says_when_a_reference_molecule_has_several_records(tmp_path, capsys):
    """A reference molecule of several records (bioactive_dev repeats 540 SMILES) is scored
    against its first record alone: the others were passed over without a word."""
    smi = "CCCCOc1ccccc1C(=O)N"
    ref, gen = _embed(smi, 2, 3), _embed(smi, 2, 9)
    _write(tmp_path / "ref.sdf", [(Chem.Mol(ref), i, {"smiles": smi}) for i in range(2)])
    _write(tmp_path / "ref1.sdf", [(Chem.Mol(ref), 0, {"smiles": smi})])
    _write(tmp_path / "gen.sdf", [(Chem.Mol(gen), i, {"smiles": smi}) for i in range(2)])
    res = evaluate_crystal(tmp_path / "gen.sdf", tmp_path / "ref.sdf", ns=(2,))
    assert res["per_molecule"][0]["n_reference"] == 2
    assert res["per_molecule"][0]["min_rmsd"][2] == pytest.approx(rmsd_matrix(gen, ref, None, [0]).min(), abs=1e-3)
    args = ["evaluate", "crystal", "--generated", str(tmp_path / "gen.sdf"), "--n", "2", "--no-progress",
            "--reference"]
    assert main(args + [str(tmp_path / "ref.sdf")]) == 0
    key = Chem.MolToSmiles(Chem.MolFromSmiles(smi))
    assert capsys.readouterr().err == (
        f"note: 1 of 1 reference molecules have several records, each scored against its first alone, "
        f"e.g. {key!r}; --group-by name pairs records by name\n")
    assert main(args + [str(tmp_path / "ref1.sdf")]) == 0
    assert capsys.readouterr().err == ""


def test_rmsd_leaves_out_the_hydrogen_that_defines_an_imine_stereo():
    """``RemoveHs`` keeps the imine H of ``[H]/N=C``; the RMSD is over heavy atoms alone, as
    ``GetBestRMS`` with every hydrogen removed, not as ``GetBestRMS`` after a plain ``RemoveHs``."""
    smiles = "[H]/N=C(/N)c1ccc(OCC)cc1"
    probe = _embed(smiles, 3, 7)
    ref = _embed(smiles, 2, 11)                  # seeded, in the SMILES order: deterministic
    kept = Chem.RemoveHs(probe), Chem.RemoveHs(ref)
    assert [m.GetNumAtoms() for m in kept] == [probe.GetNumHeavyAtoms() + 1] * 2
    params = Chem.RemoveHsParameters()
    params.removeDefiningBondStereo = True
    p, r = Chem.RemoveHs(probe, params), Chem.RemoveHs(ref, params)
    got = rmsd_matrix(probe, ref)
    want = np.array([[rdMolAlign.GetBestRMS(Chem.Mol(p), r, i, j) for j in range(2)] for i in range(3)])
    with_h = np.array([[rdMolAlign.GetBestRMS(Chem.Mol(kept[0]), kept[1], i, j) for j in range(2)]
                       for i in range(3)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - with_h).max() > 1e-3


def test_a_stereoisomer_scored_against_the_reference_is_named(tmp_path, capsys):
    """Pairing by SMILES falls back to ignoring stereo, so a generated enantiomer of the
    reference molecule is scored against it (its RMSDs those of the other enantiomer); that
    was silent. Now ``paired_ignoring_stereo`` names the pair and a note on stderr says so."""
    r_smi, s_smi = "C[C@H](NC(=O)CCC)c1ccccc1", "C[C@@H](NC(=O)CCC)c1ccccc1"
    _write(tmp_path / "ref.sdf", [(_embed(r_smi, 1, 1), 0, {"smiles": r_smi})])
    gen_s, gen_r = _embed(s_smi, 3, 2), _embed(r_smi, 3, 2)
    _write(tmp_path / "gen_s.sdf", [(Chem.Mol(gen_s), i, {"smiles": s_smi}) for i in range(3)])
    _write(tmp_path / "gen_r.sdf", [(Chem.Mol(gen_r), i, {"smiles": r_smi}) for i in range(3)])
    res = evaluate_crystal(tmp_path / "gen_s.sdf", tmp_path / "ref.sdf", ns=(1, 3))
    r_key, s_key = (Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in (r_smi, s_smi))
    assert res["n_molecules"] == 1 and res["paired_ignoring_stereo"] == {s_key: r_key}
    assert evaluate_coverage(tmp_path / "gen_r.sdf", tmp_path / "ref.sdf")["paired_ignoring_stereo"] == {}
    for gen, noted in (("gen_s.sdf", True), ("gen_r.sdf", False)):
        assert main(["evaluate", "crystal", "--generated", str(tmp_path / gen), "--reference",
                     str(tmp_path / "ref.sdf"), "--n", "1", "--no-progress"]) == 0
        err = capsys.readouterr().err
        assert ("note: 1 generated groups are scored against a reference molecule whose SMILES "
                "differs in stereo alone" in err) == noted, err
        assert (f"{s_key!r} against {r_key!r}" in err) == noted


def test_evaluate_cli_repeated_n_is_one_row_and_a_directory_is_no_file(tmp_path, capsys):
    """``--n 1 1`` printed the N = 1 row twice; a directory given as an input file was
    reported as ``file not found``."""
    mol = _embed("CCOC(=O)c1ccccc1", 2, 1)
    _write(tmp_path / "ref.sdf", [(Chem.Mol(mol), i, {"smiles": "CCOC(=O)c1ccccc1"}) for i in range(2)])
    args = ["evaluate", "crystal", "--generated", str(tmp_path / "ref.sdf"), "--no-progress"]
    assert main(args + ["--reference", str(tmp_path / "ref.sdf"), "--n", "2", "1", "2"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]]
    assert rows == ["2", "1"]
    assert main(args + ["--reference", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"molscore evaluate: error: {tmp_path} is a directory, not an SDF file\n"
