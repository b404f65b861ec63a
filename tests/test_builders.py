"""Dataset builders and the ``molscore build-dataset`` command."""
from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign

from molscore.chem.featurize import SUPPORTED_ELEMENTS, MoleculeError
from molscore.chem.stereo import assign_pyramidal_centres_from_3d
from molscore.cli import main
from molscore.chem.io import InputFormatError
from molscore.data.builders import (
    KCAL_PER_MOL_K, boltzmann_weights, ccd_components, ccd_conformer_set, etkdg_conformers, smiles_inputs,
)
from molscore.data.processed import ConformerDataset, load_index, read_failures

RT = KCAL_PER_MOL_K * 298.15


def test_boltzmann_weights():
    w = boltzmann_weights([5.0, 5.0 + RT * np.log(2.0), 5.0 + 100.0])
    assert np.allclose(w, [2 / 3, 1 / 3, 0.0], atol=1e-12) and w.sum() == pytest.approx(1.0)


def test_etkdg_ensemble_properties():
    smiles = "CCCCOC(=O)CCN"
    a = etkdg_conformers(smiles, n_confs=5, energy_window=10.0, rmsd=0.5, seed=3)
    b = etkdg_conformers(smiles, n_confs=5, energy_window=10.0, rmsd=0.5, seed=3)
    assert 2 <= a.num_conformers <= 5 and a.name == smiles
    assert np.array_equal(a.coordinates(), b.coordinates())  # deterministic for a seed
    assert a.weights.sum() == pytest.approx(1.0) and np.all(np.diff(a.weights) <= 1e-12)  # energy order
    props = AllChem.MMFFGetMoleculeProperties(a.mol)
    energies = np.array([AllChem.MMFFGetMoleculeForceField(a.mol, props, confId=c.GetId()).CalcEnergy()
                         for c in a.mol.GetConformers()])
    assert energies.max() - energies.min() <= 10.0 + 1e-6
    assert np.allclose(a.weights, boltzmann_weights(energies), atol=1e-6)
    heavy = Chem.RemoveHs(a.mol)
    ids = [c.GetId() for c in heavy.GetConformers()]
    for i in range(len(ids)):
        for j in range(i):
            assert rdMolAlign.GetBestRMS(heavy, heavy, ids[i], ids[j]) >= 0.5 - 1e-6
    c = etkdg_conformers(smiles, n_confs=5, seed=4)
    assert not np.array_equal(c.coordinates()[0], a.coordinates()[0])


def test_etkdg_fixes_unspecified_stereo_and_refuses_bad_input():
    r = etkdg_conformers("CC(N)CC(C)O", n_confs=3, seed=1)
    centres = Chem.FindMolChiralCenters(Chem.MolFromSmiles(r.smiles), useLegacyImplementation=False)
    assert len(centres) == 2 and all(label in "RS" for _, label in centres)  # one fixed stereoisomer
    with pytest.raises(MoleculeError, match="unsupported element"):
        etkdg_conformers("CC[Sn]", n_confs=2)


@pytest.mark.parametrize("smiles", ["N#N", "O=S=O"])
def test_etkdg_refuses_a_molecule_whose_mmff94_bond_lengths_are_wrong(smiles):
    """RDKit's MMFF94 lacks these atom-type pairs and rests N#N at 1.46 Å (observed 1.10):
    the ensemble's minima, stored for training, would carry that length."""
    with pytest.raises(MoleculeError, match="MMFF94 puts a bond's rest length more than 0.26 Å from UFF's"):
        etkdg_conformers(smiles, n_confs=2, seed=1)


def test_etkdg_assigns_an_embeddable_bridgehead_nitrogen():
    # RDKit enumerates the inverted (impossible) bridgehead N of this fused azetidine first
    smiles = "N#CC[C@H]1[C@@H]2CCN1C2"
    r = etkdg_conformers(smiles, n_confs=3, seed=42)
    assert r.num_conformers >= 1
    given = dict(Chem.FindMolChiralCenters(Chem.MolFromSmiles(smiles), useLegacyImplementation=False))
    for conf in r.mol.GetConformers():
        from_3d = Chem.Mol(r.mol, confId=conf.GetId())
        Chem.AssignStereochemistryFrom3D(from_3d)
        assign_pyramidal_centres_from_3d(from_3d)      # the N, which RDKit does not read from 3D
        found = dict(Chem.FindMolChiralCenters(from_3d, useLegacyImplementation=False))
        assert {i: found[i] for i in given} == given  # the input's centres, in every conformer
        assert Chem.MolToSmiles(Chem.RemoveHs(from_3d)) == Chem.MolToSmiles(Chem.MolFromSmiles(r.smiles))


def test_etkdg_builds_another_isomer_when_the_chosen_one_does_not_embed(monkeypatch):
    import molscore.chem.stereo as stereo_module
    from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

    staged = []

    def unembeddable(mol, seed):     # stages a chooser that took the impossible bridgehead N
        for isomer in EnumerateStereoisomers(mol, options=StereoEnumerationOptions(onlyUnassigned=True)):
            if AllChem.EmbedMolecule(Chem.AddHs(isomer), randomSeed=7) != 0:
                staged.append(Chem.MolToSmiles(Chem.RemoveHs(isomer)))
                return isomer
        raise AssertionError("every isomer embeds")

    monkeypatch.setattr(stereo_module, "assign_unspecified_stereo", unembeddable)
    embed, calls = AllChem.EmbedMultipleConfs, []

    def recording(mol, count, params):              # the builder's embeddings (its maxIterations)
        if params.maxIterations == 1000:
            calls.append((count, params.useRandomCoords, params.initialEmbeddingMode))
        return embed(mol, count, params)

    monkeypatch.setattr(AllChem, "EmbedMultipleConfs", recording)
    r = etkdg_conformers("N#CCC1C2CCN1C2", n_confs=1, oversample=10, seed=42)
    assert len(staged) == 1 and r.num_conformers >= 1 and r.smiles != staged[0]
    # the staged isomer: one-conformer probes from eigenvectors and random coordinates, then
    # one and 20 embeddings without stereo, none with its stereo; the next: a probe, the 10.
    # Each call starts from eigenvectors unless told otherwise (RDKit's random-coordinate
    # embedding changes the mode in the parameters it is given; the builder's are shared)
    eigen = AllChem.ETKDGv3().initialEmbeddingMode
    assert [c[:2] for c in calls] == [(1, False), (1, True), (1, True), (20, True), (1, False), (10, False)]
    assert all(c[2] == eigen for c in calls)
    # the two carbons and the bridgehead N, whose tag the stored SMILES has from the 3D
    assert len(Chem.FindMolChiralCenters(Chem.MolFromSmiles(r.smiles), useLegacyImplementation=False)) == 3


def test_smiles_inputs(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("id,SMILES\na,CCO\nb,CCN\n,\n")
    failures = []
    assert smiles_inputs(p, failures=failures) == [("a", "CCO"), ("b", "CCN")]
    assert failures == [("record_3", "empty SMILES (line 4)")]      # the empty row is reported, not dropped
    q = tmp_path / "m.smi"
    q.write_text("CCO ethanol\n# comment\nCCN\n")
    assert smiles_inputs(q) == [("ethanol", "CCO"), ("CCN", "CCN")]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,structure\nx,CCO\n")
    with pytest.raises(InputFormatError, match="CSV has no column 'smiles'"):
        smiles_inputs(bad)
    bom = tmp_path / "bom.csv"                        # as spreadsheet programs save UTF-8
    bom.write_text("\ufeffsmiles,name\nCCO,ethanol\n", encoding="utf-8")
    assert smiles_inputs(bom) == [("ethanol", "CCO")]
    blank = tmp_path / "blank.csv"                   # an empty name cell: named by the SMILES
    blank.write_text("smiles,name\nCCCCO,\nCCCCCO, \nCCN,x\n")
    assert smiles_inputs(blank) == [("CCCCO", "CCCCO"), ("CCCCCO", "CCCCCO"), ("x", "CCN")]
    titled = tmp_path / "titled.smi"                 # RDKit's SmilesWriter starts with a title line
    titled.write_text("SMILES Name\nCCO ethanol\n")
    assert smiles_inputs(titled) == [("ethanol", "CCO")]
    latin = tmp_path / "latin.smi"
    latin.write_bytes("CCO ethanol\nCCN \xe9thylamine\n".encode("latin-1"))
    with pytest.raises(InputFormatError, match=r"latin.smi, line 2: byte 0xe9\); save it as UTF-8"):
        smiles_inputs(latin)
    ided = tmp_path / "ided.csv"                     # 'name' before 'id'; or the one asked for
    ided.write_text("id,Name,smiles\n1,ethanol,CCO\n")
    assert smiles_inputs(ided) == [("ethanol", "CCO")]
    assert smiles_inputs(ided, name_column="id") == [("1", "CCO")]
    with pytest.raises(InputFormatError, match="CSV has no column 'label'"):
        smiles_inputs(ided, name_column="label")


def test_smiles_inputs_reads_as_generate_reads(tmp_path):
    """The builders read SMILES files with generate's reader (the builders' own reader lost
    or misread these molecules)."""
    import gzip

    def read(name, text, **kw):
        path = tmp_path / name
        if name.endswith(".gz"):
            with gzip.open(path, "wt", encoding="utf-8") as fh:
                fh.write(text)
        else:
            path.write_text(text, encoding="utf-8")
        duplicates, failures = [], []
        items = smiles_inputs(path, duplicates=duplicates, failures=failures, **kw)
        return items, duplicates, failures

    # a repeated name is renamed (the last of them was the one kept), as generate does
    assert read("dup.csv", "smiles,name\nCCO,x\nCCCN,x\nCCCC,x\n") == (
        [("x", "CCO"), ("x#2", "CCCN"), ("x#3", "CCCC")], ["x#2", "x#3"], [])
    assert read("same.smi", "CCO\nCCO\n")[0] == [("CCO", "CCO"), ("CCO#2", "CCO")]
    # a .smi name is the rest of the line (both of these were 'ethyl': one lost)
    assert read("words.smi", "CCO ethyl alcohol\nCCCO ethyl acetate\n")[0] == [
        ("ethyl alcohol", "CCO"), ("ethyl acetate", "CCCO")]
    # a CXSMILES extension belongs to the SMILES (it was the name)
    assert read("cx.smi", "C[C@H](N)C(C)[C@@H](C)O |&1:1,5| racemic pair\n")[0] == [
        ("racemic pair", "C[C@H](N)C(C)[C@@H](C)O |&1:1,5|")]
    # a title line after a comment (it was read as the molecule 'SMILES' named 'Name')
    assert read("late_title.smi", "# from a tool\nSMILES Name\nCCO ethanol\n")[0] == [("ethanol", "CCO")]
    # an empty SMILES cell or line is a failure named by its row (it vanished without a word)
    assert read("empty.csv", "smiles,name\n,lost\nCCO,ok\n") == ([("ok", "CCO")], [], [("lost", "empty SMILES (line 2)")])
    assert read("gap.smi", "CCO a\n\nCCN b\n")[2] == [("record_2", "empty SMILES (line 2)")]
    # a .tsv is tab-separated columns (it was read as .smi lines: SMILES 'a', named 'CCO')
    assert read("ids.tsv", "id\tsmiles\na\tCCO\n")[0] == [("a", "CCO")]
    # a spreadsheet's ';'-separated export and a blank before a column name (both refused)
    assert read("semi.csv", "name;smiles\na;CCO\n")[0] == [("a", "CCO")]
    assert read("spaced.csv", "name, smiles\na, CCO\n")[0] == [("a", "CCO")]
    # gzipped input (it was 'not UTF-8 text (line 0)')
    assert read("m.smi.gz", "CCO a\n")[0] == [("a", "CCO")]
    assert read("m.csv.gz", "smiles,id\nCCO,a\n")[0] == [("a", "CCO")]
    # a name over two lines (a quoted CSV cell) is one line, as in generate's output
    assert read("lines.csv", 'smiles,name\nCCO,"two\nlines"\n')[0] == [("two lines", "CCO")]
    # --limit counts records, the unusable ones included
    assert read("limit.smi", "CCO a\n\nCCN b\nCCC c\n", limit=2) == ([("a", "CCO")], [],
                                                                      [("record_2", "empty SMILES (line 2)")])


def _index_snapshot(root):
    return json.dumps(load_index(root)["molecules"]), sorted(p.name for p in root.iterdir())


def test_cli_etkdg_end_to_end_with_resume(tmp_path, capsys):
    smi = tmp_path / "in.csv"
    with open(smi, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["smiles", "name"])
        w.writerows([["CCOC(=O)C", "ester"], ["c1ccccc1CCO", "phenethyl"], ["CC(C)CN", "amine"],
                     ["O=C(O)[C@@H](O)c1ccccc1", "mandelic"], ["C1CC", "broken"]])
    out = tmp_path / "ds"
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "3",
            "--workers", "2", "--split", "0.34,0.33,0.33", "--no-progress"]
    assert main(args) == 1      # "broken" failed; the reserved drop is no failure
    text = capsys.readouterr().out
    assert "stored 3 molecules" in text and "dropped 1 reserved" in text and "failed 1" in text
    failures = dict(read_failures(out))
    assert failures["mandelic"] == "reserved for held-out evaluation"
    assert failures["broken"].startswith("invalid SMILES")
    index = load_index(out)
    assert [m["name"] for m in index["molecules"]] == ["ester", "phenethyl", "amine"]
    assert all(1 <= m["num_conformers"] <= 3 and m["has_weights"] for m in index["molecules"])
    assert index["meta"]["builder"] == "etkdg" and index["meta"]["n_confs"] == 3
    assert sorted(sum(index["splits"].values(), [])) == [0, 1, 2]
    before = _index_snapshot(out)
    assert main(args) == 0  # resume: nothing new, nothing tried, so nothing failed
    text = capsys.readouterr().out
    assert "stored 0 molecules" in text and "skipped 5 already done" in text
    assert "1 reserved molecules dropped in total" in text
    assert _index_snapshot(out) == before
    item = ConformerDataset(out, split="all")[0]
    assert item.pos.shape == (item.num_nodes, 3) and item.smiles == "CCOC(C)=O"


def test_cli_featurisation_of_a_build_and_its_resume(tmp_path, capsys):
    """A new folder holds version 2 features unless --featurisation says 1; a resumed build
    keeps its folder's version and refuses another; an unknown version is one line (exit 2)."""
    smi = tmp_path / "in.csv"
    smi.write_text("smiles,name\nC[C@H](N)CC(=O)O,acid\n")
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "--n-confs", "2", "--no-progress",
            "--split", "1,0,0"]
    assert main(args + ["-o", str(tmp_path / "v2")]) == 0
    assert load_index(tmp_path / "v2")["featurisation"] == 2
    out = str(tmp_path / "v1")
    assert main(args + ["-o", out, "--featurisation", "1"]) == 0
    assert main(args + ["-o", out]) == 0                                   # resumed: keeps 1
    assert load_index(out)["featurisation"] == 1 and ConformerDataset(out, "all").featurisation == 1
    capsys.readouterr()
    assert main(args + ["-o", out, "--featurisation", "2"]) == 2
    assert capsys.readouterr().err == (f"molscore build-dataset: error: {out} holds featurisation 1 "
                                       "features, not 2; resume it with --featurisation 1, or use a "
                                       "new folder\n")
    assert main(args + ["-o", str(tmp_path / "v3"), "--featurisation", "3"]) == 2
    assert capsys.readouterr().err == ("molscore build-dataset: error: --featurisation: unknown "
                                       "featurisation version 3 (this molscore knows 1 and 2)\n")
    assert not (tmp_path / "v3").exists()


def test_cli_retry_failed(tmp_path, capsys):
    smi = tmp_path / "in.csv"
    smi.write_text("smiles,name\nCCOC(=O)C,ester\nCC(C)CN,amine\nO=C(O)[C@@H](O)c1ccccc1,mandelic\n")
    out = tmp_path / "ds"
    out.mkdir()
    (out / "failures.csv").write_text("name,reason\nester,ETKDG embedding failed\n"
                                      "mandelic,reserved for held-out evaluation\n")
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "2", "--no-progress"]
    assert main(args) == 0  # resume: the recorded failure is skipped
    assert "stored 1 molecules" in capsys.readouterr().out
    assert [m["name"] for m in load_index(out)["molecules"]] == ["amine"]
    left_out = ("amine", "conformer 2: atoms do not match the other conformers")   # as sdf writes
    with open(out / "failures.csv", "a") as fh:     # a stored molecule's row: it stays
        fh.write(",".join(left_out) + "\n")
    assert main(args + ["--retry-failed"]) == 0
    text = capsys.readouterr().out
    assert "retrying 1 earlier failures" in text and "stored 1 molecules" in text and "skipped 2" in text
    assert [m["name"] for m in load_index(out)["molecules"]] == ["amine", "ester"]
    assert read_failures(out) == [("mandelic", "reserved for held-out evaluation"), left_out]
    assert main(args + ["--retry-failed"]) == 0  # nothing left to retry
    assert "retrying 0 earlier failures" in capsys.readouterr().out


def test_cli_ccd_end_to_end_with_resume(tmp_path, capsys):
    out = tmp_path / "ccd"
    args = ["build-dataset", "ccd", "-o", str(out), "--limit", "20", "--no-progress"]
    assert main(args) == 1      # 003 and others failed
    text = capsys.readouterr().out
    index = load_index(out)
    failures = read_failures(out)
    names = {m["name"] for m in index["molecules"]} | {n for n, _ in failures}
    assert len(names) == 20 and len(index["molecules"]) >= 10
    # 003's model coordinates name no PDB entry: not an experimental conformation
    assert ("003", "model coordinates name no PDB entry (pdbx_model_coordinates_db_code '?')") in failures
    assert f"stored {len(index['molecules'])} molecules" in text
    data = ConformerDataset(out, split="all", conformers="all")
    payloads = dict(ccd_components(limit=20))
    for i, mol in enumerate(index["molecules"]):
        item = data[i]
        symbols = [Chem.GetPeriodicTable().GetElementSymbol(int(z)) for z in item.z]
        assert set(symbols) <= set(SUPPORTED_ELEMENTS)
        assert 5 <= sum(s != "H" for s in symbols) <= 100
        # experimental model coordinates are stored unchanged (the CCD lists every hydrogen)
        assert np.allclose(item.pos.numpy(), payloads[mol["name"]]["coords"], atol=1e-4)
    before = _index_snapshot(out)
    assert main(args) == 0      # the failures of the first run are not tried again
    assert "stored 0 molecules" in capsys.readouterr().out and _index_snapshot(out) == before


def test_cli_workers_build_what_one_process_builds(tmp_path, capsys):
    """More than 8 molecules per worker: the pool's tasks are chunks of several molecules
    (``Pool.imap`` with a chunksize above 1 returned a plain generator, which the worker
    watch could not wait on: an AttributeError traceback)."""
    args = ["build-dataset", "ccd", "--limit", "20", "--no-progress"]
    assert main(args + ["-o", str(tmp_path / "one")]) == 1       # some components fail
    assert main(args + ["-o", str(tmp_path / "two"), "--workers", "2"]) == 1
    one, two = load_index(tmp_path / "one"), load_index(tmp_path / "two")
    assert len(one["molecules"]) >= 10
    assert [m["name"] for m in two["molecules"]] == [m["name"] for m in one["molecules"]]
    assert read_failures(tmp_path / "two") == read_failures(tmp_path / "one")


def test_ccd_component_checks():
    payloads = dict(ccd_components(limit=5))
    name, payload = next(iter(payloads.items()))
    assert ccd_conformer_set(name, payload).num_conformers == 1
    holed = dict(payload, coords=payload["coords"].copy())
    holed["coords"][0, 0] = np.nan
    with pytest.raises(MoleculeError, match="incomplete model coordinates"):
        ccd_conformer_set(name, holed)
    with pytest.raises(MoleculeError, match="too small"):
        ccd_conformer_set("EOH", {"symbols": ["C", "C", "O", "H", "H", "H", "H", "H", "H"], "charges": [0] * 9,
                                  "coords": np.random.default_rng(0).normal(size=(9, 3)),
                                  "ideal_coords": np.full((9, 3), np.nan), "bonds": [], "pdb_entry": "1ABC"})
    with pytest.raises(MoleculeError, match="unknown element"):
        ccd_conformer_set("BAD", dict(payload, symbols=["Xx"] + payload["symbols"][1:]))


def _ccd_payload(smiles: str, seed: int) -> dict:
    """A CCD-like payload of ``smiles``: model coordinates from one ETKDG embedding (``seed``),
    ideal coordinates from another (``seed + 1``), a valid PDB entry."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    cids = list(AllChem.EmbedMultipleConfs(mol, 2, randomSeed=seed))
    assert len(cids) == 2
    order = {Chem.BondType.SINGLE: "SING", Chem.BondType.DOUBLE: "DOUB"}
    return {"symbols": [a.GetSymbol().upper() for a in mol.GetAtoms()], "charges": [0] * mol.GetNumAtoms(),
            "coords": mol.GetConformer(cids[0]).GetPositions(), "ideal_coords": mol.GetConformer(cids[1]).GetPositions(),
            "bonds": [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), order[b.GetBondType()]) for b in mol.GetBonds()],
            "pdb_entry": "1ABC"}


def test_ccd_model_coordinates_must_name_a_pdb_entry():
    """1,707 released CCD components give '?' as the PDB entry of their model coordinates (and a few
    a placeholder): nothing says they are experimental, yet they were built as such."""
    payload = _ccd_payload("CCCCOC(=O)CCN", seed=7)
    for entry in ["1ABC", "2f4o", "1G5L,1G5L0", "pdb_00001abc"]:
        assert ccd_conformer_set("TST", dict(payload, pdb_entry=entry)).num_conformers == 1
    for entry in ["?", "UNDEFINED", "0588", "PDBJ", "rcsb068005"]:
        with pytest.raises(MoleculeError) as err:
            ccd_conformer_set("TST", dict(payload, pdb_entry=entry))
        assert str(err.value) == f"model coordinates name no PDB entry (pdbx_model_coordinates_db_code {entry!r})"


def test_ccd_model_coordinates_copying_the_ideal_ones_are_refused():
    """Hundreds of CCD components repeat the computed ideal coordinates as model coordinates, as
    they are (to the CCD's 0.001 A) or moved as a rigid body: not experimental conformations."""
    payload = _ccd_payload("CCCCOC(=O)CCN", seed=7)
    coords = payload["coords"]
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta), 0.0], [np.sin(theta), np.cos(theta), 0.0], [0.0, 0.0, 1.0]])
    moved = np.round(coords @ rot.T + [12.0, -3.0, 40.0], 3)
    noisy = coords + np.random.default_rng(5).normal(scale=0.01, size=coords.shape)  # RMSD about 0.015 A
    for ideal in [coords, np.round(coords, 3), moved]:
        with pytest.raises(MoleculeError, match=r"model coordinates are the computed ideal ones \(RMSD 0\.000\d A"):
            ccd_conformer_set("TST", dict(payload, ideal_coords=ideal))
    holed = coords.copy()
    holed[0] = np.nan  # no complete ideal coordinates to compare with
    for ideal in [payload["ideal_coords"], noisy, holed]:
        record = ccd_conformer_set("TST", dict(payload, ideal_coords=ideal))
        assert np.allclose(record.mol.GetConformer().GetPositions(), coords, atol=1e-4)


def test_ccd_components_without_experimental_model_coordinates_are_failures():
    """Real components: 000 (model coordinates from PDB entry 3LIN) is built; 003 names no PDB
    entry; 02E's model coordinates (PDB entry 1H8D) are its ideal ones."""
    payloads = dict(ccd_components(limit=90))
    assert ccd_conformer_set("000", payloads["000"]).num_conformers == 1
    with pytest.raises(MoleculeError, match="name no PDB entry"):
        ccd_conformer_set("003", payloads["003"])
    assert payloads["02E"]["pdb_entry"] == "1H8D"
    with pytest.raises(MoleculeError, match="are the computed ideal ones"):
        ccd_conformer_set("02E", payloads["02E"])


def test_ccd_components_whose_model_coordinates_are_flagged_missing_are_failure_rows():
    """1,728 released components flag their model coordinates missing (pdbx_model_coordinates_
    missing_flag Y; 00O: 1,720 have some atoms without them) and were left out of the listing,
    so a build neither counted them nor said why, while the 62 others with incomplete model
    coordinates were failure rows; now they are listed and refused with the flag as the reason."""
    payloads = dict(ccd_components(limit=40))
    assert payloads["00O"]["missing_flag"] and not payloads["000"]["missing_flag"]
    with pytest.raises(MoleculeError) as err:
        ccd_conformer_set("00O", payloads["00O"])
    assert str(err.value) == "model coordinates flagged missing (pdbx_model_coordinates_missing_flag Y)"


def test_cli_sdf_and_usage_errors(tmp_path, capsys):
    sdf = tmp_path / "in.sdf"
    mol = Chem.AddHs(Chem.MolFromSmiles("CCOc1ccccc1"))
    cids = AllChem.EmbedMultipleConfs(mol, 3, randomSeed=9)
    with Chem.SDWriter(str(sdf)) as writer:
        for cid in cids:
            mol.SetProp("ensemble", "phenetole")
            writer.write(mol, confId=cid)
    out = tmp_path / "ds"
    assert main(["build-dataset", "sdf", "--input", str(sdf), "--group-by", "ensemble", "-o", str(out),
                 "--no-progress"]) == 0
    assert "stored 1 molecules (3 conformers)" in capsys.readouterr().out
    assert load_index(out)["molecules"][0]["name"] == "phenetole"
    assert main(["build-dataset", "ccd", "-o", str(out)]) == 2
    assert "built with 'sdf'" in capsys.readouterr().err
    assert main(["build-dataset", "sdf", "--input", str(tmp_path / "none.sdf"), "-o", str(out)]) == 2
    assert "input file not found" in capsys.readouterr().err
    (tmp_path / "mols.csv").write_text("smiles\nCCO\n")
    assert main(["build-dataset", "sdf", "--input", str(tmp_path / "mols.csv"), "-o", str(tmp_path / "y")]) == 2
    assert "nothing to build from" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert main(["build-dataset", "etkdg", "--smiles", str(sdf), "-o", str(tmp_path / "x"), "--reserved",
                 str(tmp_path / "none.txt")]) == 2
    (tmp_path / "smiles.txt").write_text("CCO\n")     # a list of no InChIKeys would leave nothing out
    assert main(["build-dataset", "etkdg", "--smiles", str(sdf), "-o", str(tmp_path / "x"), "--reserved",
                 str(tmp_path / "smiles.txt")]) == 2
    assert "line 1: 'CCO' is not an InChIKey" in capsys.readouterr().err and not (tmp_path / "x").exists()
    smi = tmp_path / "one.smi"
    smi.write_text("CCO\n")
    capsys.readouterr()
    for split in ("nan,0.5,0.5", "inf,-inf,1"):  # refused before any molecule is built
        with pytest.raises(SystemExit) as exit_info:     # argparse's errors exit; main returns 2
            raise SystemExit(main(["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(tmp_path / "z"),
                                   f"--split={split}"]))
        assert exit_info.value.code == 2
        assert "non-negative fractions summing to 1" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()
    (tmp_path / "afile").write_text("")
    assert main(["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(tmp_path / "afile")]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err


def test_cli_sdf_counts_unreadable_records(tmp_path, capsys):
    """An SDF record RDKit cannot parse is a failures.csv row and is counted in the summary."""
    mol = Chem.AddHs(Chem.MolFromSmiles("CCOc1ccccc1"))
    cids = AllChem.EmbedMultipleConfs(mol, 2, randomSeed=9)
    good = [Chem.MolToMolBlock(mol, confId=cid) + "$$$$\n" for cid in cids]
    broken = "broken\n  RDKit\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\nnot an atom line\nM  END\n$$$$\n"
    sdf = tmp_path / "in.sdf"
    sdf.write_text(good[0] + broken + good[1])
    out = tmp_path / "ds"
    assert main(["build-dataset", "sdf", "--input", str(sdf), "-o", str(out), "--no-progress"]) == 1
    assert "stored 1 molecules (2 conformers)" in (text := capsys.readouterr().out)
    assert "; 1 unreadable input records" in text
    assert [name for name, _ in read_failures(out)] == ["in.sdf:record1"]
    assert main(["build-dataset", "sdf", "--input", str(sdf), "-o", str(out), "--no-progress"]) == 0
    assert "unreadable input" not in capsys.readouterr().out  # recorded by the first run


def test_cli_keeps_inputs_with_a_repeated_name(tmp_path, capsys):
    """A repeated name is renamed as generate renames it (the build kept one of them, the
    last, and dropped the others without a word)."""
    smi = tmp_path / "in.csv"
    smi.write_text("smiles,name\nCCO,x\nCCCN,x\nC(,y\n,z\n")
    out = tmp_path / "ds"
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "1", "--no-progress"]
    assert main(args) == 1                           # y and z failed
    captured = capsys.readouterr()
    assert ("inputs 3: stored 2 molecules (2 conformers), failed 1, dropped 0 reserved, skipped 0 already done, "
            "1 inputs with a repeated name (renamed: x#2); 1 unreadable input records") in captured.out
    assert "molscore build-dataset: 1 duplicate name(s) renamed: x#2" in captured.err
    assert [(m["name"], m["smiles"]) for m in load_index(out)["molecules"]] == [("x", "CCO"), ("x#2", "CCCN")]
    assert [(name, reason.split(":")[0]) for name, reason in read_failures(out)] == [
        ("z", "empty SMILES (line 5)"), ("y", "invalid SMILES 'C('")]
    assert main(args) == 0                           # a rerun: the same names, nothing new
    assert "stored 0 molecules" in capsys.readouterr().out


def test_cli_reads_smiles_files_as_generate_does(tmp_path, capsys):
    """A .tsv with an id column and a .smi with names of several words: each molecule stored
    under its own name (the builders' reader misread the first and lost one of the second)."""
    tsv = tmp_path / "in.tsv"
    tsv.write_text("id\tsmiles\nm1\tCCO\nm2\tCCCN\n")
    out = tmp_path / "tsv"
    assert main(["build-dataset", "etkdg", "--smiles", str(tsv), "-o", str(out), "--n-confs", "1",
                 "--no-progress"]) == 0
    assert [(m["name"], m["smiles"]) for m in load_index(out)["molecules"]] == [("m1", "CCO"), ("m2", "CCCN")]
    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethyl alcohol\nCCCO ethyl acetate\n")
    out = tmp_path / "smi"
    assert main(["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "1",
                 "--no-progress"]) == 0
    assert [m["name"] for m in load_index(out)["molecules"]] == ["ethyl alcohol", "ethyl acetate"]
    csv_in = tmp_path / "in.csv"                      # the columns named on the command line
    csv_in.write_text("code,label,structure\nA1,ethanol,CCO\n")
    out = tmp_path / "named"
    assert main(["build-dataset", "etkdg", "--smiles", str(csv_in), "--smiles-column", "structure",
                 "--name-column", "label", "-o", str(out), "--n-confs", "1", "--no-progress"]) == 0
    assert [m["name"] for m in load_index(out)["molecules"]] == ["ethanol"]
    capsys.readouterr()
    assert main(["build-dataset", "etkdg", "--smiles", str(csv_in), "-o", str(tmp_path / "no")]) == 2
    assert "CSV has no column 'smiles'" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_cli_drops_the_shipped_reserved_molecules_with_another_list(tmp_path, capsys):
    """--reserved adds to the shipped list (it replaced it, so a list of other molecules let the
    reserved ones into the dataset)."""
    smi = tmp_path / "in.smi"
    smi.write_text("O=C(O)[C@@H](O)c1ccccc1 mandelic\nCCO ethanol\nCCCN propylamine\n")
    extra = tmp_path / "extra.txt"
    extra.write_text(Chem.MolToInchiKey(Chem.MolFromSmiles("CCCN"))[:14] + "\n")
    out = tmp_path / "ds"
    assert main(["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "1",
                 "--reserved", str(extra), "--no-progress"]) == 0
    assert "dropped 2 reserved" in capsys.readouterr().out
    assert [m["name"] for m in load_index(out)["molecules"]] == ["ethanol"]
    assert read_failures(out) == [("mandelic", "reserved for held-out evaluation"),
                                  ("propylamine", "reserved for held-out evaluation")]


def test_cli_refuses_to_resume_with_other_settings(tmp_path, capsys):
    """A resumed build with other ETKDG settings stored its new molecules with them under the
    first run's settings in the index."""
    smi = tmp_path / "in.smi"
    smi.write_text("CCCCOC(=O)CCN a\nCCCCCOC(=O)CCN b\n")
    out = tmp_path / "ds"
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--no-progress"]
    assert main(args + ["--n-confs", "1", "--limit", "1"]) == 0
    capsys.readouterr()
    assert main(args + ["--n-confs", "6", "--energy-window", "50"]) == 2
    err = capsys.readouterr().err
    assert "built with other settings (n_confs 1 -> 6, energy_window 10.0 -> 50.0)" in err
    assert [m["name"] for m in load_index(out)["molecules"]] == ["a"]
    assert main(args + ["--n-confs", "1", "--workers", "2", "--shard-size", "5"]) == 0   # not settings
    assert [m["name"] for m in load_index(out)["molecules"]] == ["a", "b"]
    sdf = tmp_path / "in.sdf"
    mol = Chem.AddHs(Chem.MolFromSmiles("CCOc1ccccc1"))
    AllChem.EmbedMolecule(mol, randomSeed=9)
    mol.SetProp("ensemble", "phenetole")
    with Chem.SDWriter(str(sdf)) as writer:
        writer.write(mol)
    out = tmp_path / "sdf"
    assert main(["build-dataset", "sdf", "--input", str(sdf), "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["build-dataset", "sdf", "--input", str(sdf), "--group-by", "ensemble", "-o", str(out)]) == 2
    assert "built with other settings (group_by 'smiles' -> 'ensemble')" in capsys.readouterr().err


def test_a_worker_that_dies_ends_the_build_instead_of_hanging(tmp_path, monkeypatch, capsys):
    """A worker process killed mid-build (out of memory, a crash in RDKit's native code):
    multiprocessing's Pool replaced it and waited for its molecule without end."""
    import os
    import signal

    import molscore.data.builders as builders

    build = builders.etkdg_conformers

    def dying(smiles, name=None, **kw):
        if name == "dies":
            os._exit(9)
        return build(smiles, name=name, **kw)

    def hung(*_):
        raise TimeoutError("run_build hung after a worker died")

    monkeypatch.setattr(builders, "etkdg_conformers", dying)     # the forked workers' too
    smi = tmp_path / "in.smi"
    smi.write_text("CCO a\nCCCN dies\nCCCO c\nCCCCO d\n")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        assert main(["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(tmp_path / "ds"), "--n-confs", "1",
                     "--workers", "2", "--no-progress"]) == 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err
    assert "molscore build-dataset: error: a worker process died (exit code 9" in err
    assert "rerun the command to resume" in err
    assert (tmp_path / "ds" / "index.json").is_file()     # what was done is kept


def test_ccd_component_listing_a_stereo_double_bond_last_is_built():
    """CCD components 0BM and 0KV (two rings, a stereo double bond listed last, so its bond
    index equals the atom count) ended in an RDKit Range Error ("unexpected error" rows):
    assign_pyramidal_centres_from_3d read a double bond's ``centeredOn`` (a bond index) as an
    atom index before checking the stereo type. Such a payload is built, E kept."""
    src = Chem.AddHs(Chem.MolFromSmiles("C/C=C/C1CC2CCC1C2"))
    assert AllChem.EmbedMolecule(src, randomSeed=11) == 0
    bonds = sorted(src.GetBonds(), key=lambda b: b.GetBondType() == Chem.BondType.DOUBLE)
    order = {Chem.BondType.SINGLE: "SING", Chem.BondType.DOUBLE: "DOUB"}
    payload = {"symbols": [a.GetSymbol().upper() for a in src.GetAtoms()], "charges": [0] * src.GetNumAtoms(),
               "coords": src.GetConformer().GetPositions(), "pdb_entry": "1ABC",
               "ideal_coords": np.full((src.GetNumAtoms(), 3), np.nan),
               "bonds": [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), order[b.GetBondType()]) for b in bonds]}
    assert src.GetNumBonds() - 1 == src.GetNumAtoms()  # the double bond's index: past the last atom
    record = ccd_conformer_set("TST", payload)
    assert "/C=C/" in record.smiles and record.mol.GetNumAtoms() == src.GetNumAtoms()


def test_cli_refuses_to_resume_with_another_reserved_list(tmp_path, capsys):
    """A build resumed with --reserved X (or without the X it was begun with) kept the molecules
    of X that the other run had stored, or stored new ones: X's molecules in the dataset though
    the command was told to leave them out. The list is a setting of the build now."""
    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethanol\nCCCN propylamine\n")
    extra = tmp_path / "extra.txt"
    extra.write_text(Chem.MolToInchiKey(Chem.MolFromSmiles("CCCN"))[:14] + "\n")
    out = tmp_path / "ds"
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "1", "--no-progress"]
    assert main(args) == 0
    assert "propylamine" in [m["name"] for m in load_index(out)["molecules"]]
    capsys.readouterr()
    assert main(args + ["--reserved", str(extra)]) == 2
    identity = f"extra.txt (sha256 {hashlib.sha256(extra.read_bytes()).hexdigest()[:16]})"
    assert (f"{out} was built with other settings (reserved None -> {identity!r}); resume it "
            "with those, or use another --output") in capsys.readouterr().err
    other = tmp_path / "other"
    assert main(args[:5] + [str(other)] + args[6:] + ["--reserved", str(extra)]) == 0
    assert main(args[:5] + [str(other)] + args[6:]) == 2
    assert f"(reserved {identity!r} -> None)" in capsys.readouterr().err
    assert [m["name"] for m in load_index(other)["molecules"]] == ["ethanol"]
    # the same list elsewhere is the same setting; an edited one is not
    moved = tmp_path / "lists" / "extra.txt"
    moved.parent.mkdir()
    moved.write_bytes(extra.read_bytes())
    assert main(args[:5] + [str(other)] + args[6:] + ["--reserved", str(moved)]) == 0
    moved.write_text("AAAAAAAAAAAAAA\n")
    assert main(args[:5] + [str(other)] + args[6:] + ["--reserved", str(moved)]) == 2


def test_etkdg_keeps_only_conformers_whose_mmff94_minimisation_converged(monkeypatch):
    """``MMFFOptimizeMoleculeConfs`` stops after its iterations whether or not it reached a
    minimum (flag 1); such conformers were stored, their energies weighted as minima. With
    too few iterations for all (100) only converged ones are kept: minimising again moves
    each by little; with too few for any (20) the molecule is a failure."""
    from molscore.chem.featurize import MoleculeError
    from molscore.data import builders

    smiles = "CCCCOC(=O)CCN"
    monkeypatch.setattr(builders, "MMFF_MAX_ITERS", 100, raising=False)
    kept = etkdg_conformers(smiles, n_confs=10, rmsd=0.0, seed=3)
    props = AllChem.MMFFGetMoleculeProperties(kept.mol)
    for conf in kept.mol.GetConformers():
        ff = AllChem.MMFFGetMoleculeForceField(kept.mol, props, confId=conf.GetId())
        before = ff.CalcEnergy()
        assert ff.Minimize(maxIts=2000) == 0 and before - ff.CalcEnergy() < 0.01
    monkeypatch.setattr(builders, "MMFF_MAX_ITERS", 20, raising=False)
    with pytest.raises(MoleculeError, match="MMFF94 minimisation converged for none of 20 conformers"):
        etkdg_conformers(smiles, n_confs=10, seed=3)


def test_cli_drops_tautomers_and_charge_forms_of_reserved_molecules(tmp_path, capsys):
    """Standard InChI gives a keto and its enol form, and O-benzylhydroxylamine and its
    ``[NH3+]`` cation, blocks of their own (as for CCD components 6UN, EN1 and YI1), so a build
    compared the block of the form it was given alone and stored the other form of a reserved
    molecule. The forms are enumerated now; the reason names the reserved block, a retried
    build keeps those rows, and an unrelated molecule is stored."""
    keto, neutral = Chem.MolFromSmiles("O=C1CCCCC1"), Chem.MolFromSmiles("NOCc1ccccc1")
    extra = tmp_path / "extra.txt"
    extra.write_text(Chem.MolToInchiKey(keto) + "\n" + Chem.MolToInchiKey(neutral) + "\n")
    smi = tmp_path / "in.smi"
    smi.write_text("OC1=CCCCC1 enol\n[NH3+]OCc1ccccc1 cation\nCCCCCCCCCCO decanol\n")
    assert Chem.MolToInchiKey(Chem.MolFromSmiles("OC1=CCCCC1"))[:14] != Chem.MolToInchiKey(keto)[:14]
    out = tmp_path / "ds"
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "1",
            "--reserved", str(extra), "--no-progress"]
    assert main(args) == 0
    assert "dropped 2 reserved" in capsys.readouterr().out
    assert [m["name"] for m in load_index(out)["molecules"]] == ["decanol"]
    expected = [("enol", "reserved for held-out evaluation (tautomer or charge form of "
                         f"{Chem.MolToInchiKey(keto)[:14]})"),
                ("cation", "reserved for held-out evaluation (tautomer or charge form of "
                           f"{Chem.MolToInchiKey(neutral)[:14]})")]
    assert read_failures(out) == expected
    assert main(args + ["--retry-failed"]) == 0
    text = capsys.readouterr().out
    assert "retrying 0 earlier failures" in text and "2 reserved molecules dropped in total" in text
    assert read_failures(out) == expected


def test_cli_refuses_to_resume_a_build_begun_under_another_reserved_rule(tmp_path, capsys):
    """A build begun by a molscore that compared the InChIKey block alone (its index records no
    ``reserved_match``) holds the tautomers of reserved molecules it stored; resuming it under
    the new rule would mix the two silently. It is refused (exit 2, one line), before anything
    is added."""
    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethanol\nCCCN propylamine\n")
    out = tmp_path / "ds"
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "1", "--no-progress"]
    assert main(args + ["--limit", "1"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["meta"]["reserved_match"].startswith("InChIKey first block of the molecule, its tautomers")
    del index["meta"]["reserved_match"]                      # as the older molscore wrote it
    (out / "index.json").write_text(json.dumps(index))
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"molscore build-dataset: error: {out} was built under another reserved-molecule "
                          "rule: reserved_match None (none recorded: an older molscore, which compared the "
                          "InChIKey first block only), this molscore's ")
    assert err.endswith("; build it again in a new folder\n") and err.count("\n") == 1
    assert [m["name"] for m in load_index(out)["molecules"]] == ["ethanol"]


def test_cli_refuses_to_resume_a_build_begun_under_another_version_of_the_shipped_list(
        tmp_path, capsys, monkeypatch):
    """Builds record the shipped reserved list's version. Resumed after the list changed, the
    molecules stored before had their tautomers and charge forms compared with the old list
    only, and the index did not say so. Such a resume is refused (exit 2, one line), before
    anything is added; a build that recorded no version (an older molscore) is resumed."""
    import molscore.data.reserved as reserved_module

    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethanol\nCCCN propylamine\nCCCO propanol\n")
    out = tmp_path / "ds"
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "1", "--no-progress"]
    assert main(args + ["--limit", "1"]) == 0
    before = load_index(out)["meta"]["reserved_shipped"]
    assert before == reserved_module.list_identity(reserved_module.DEFAULT_RESERVED_PATH)
    grown = tmp_path / "reserved_inchikeys.txt"
    grown.write_text(reserved_module.DEFAULT_RESERVED_PATH.read_text() + "AAAAAAAAAAAAAA\n")
    monkeypatch.setattr(reserved_module, "DEFAULT_RESERVED_PATH", grown)
    capsys.readouterr()
    assert main(args + ["--limit", "2"]) == 2
    assert capsys.readouterr().err == (
        f"molscore build-dataset: error: {out} was built under another version of the shipped reserved "
        f"list ({before}, now {reserved_module.list_identity(grown)}): its stored molecules' forms were "
        "compared with that one; build it again in a new folder\n")
    assert [m["name"] for m in load_index(out)["molecules"]] == ["ethanol"]
    index = json.loads((out / "index.json").read_text())
    del index["meta"]["reserved_shipped"]                    # as the older molscore wrote it
    (out / "index.json").write_text(json.dumps(index))
    assert main(args + ["--limit", "2"]) == 0
    assert [m["name"] for m in load_index(out)["molecules"]] == ["ethanol", "propylamine"]


def test_cli_sdf_keeps_the_largest_fragment_of_a_salt(tmp_path, capsys):
    """The failure row of a salt's SDF records says "use --largest-fragment", which
    ``build-dataset sdf`` did not accept (argparse: unrecognized arguments, exit status 2)."""
    salt = "CCCC[NH3+].[Cl-]"
    mol = Chem.AddHs(Chem.MolFromSmiles(salt))
    cids = AllChem.EmbedMultipleConfs(mol, 2, randomSeed=7)
    sdf = tmp_path / "salt.sdf"
    with Chem.SDWriter(str(sdf)) as writer:
        for cid in cids:
            mol.SetProp("smiles", salt)
            writer.write(mol, confId=cid)
    out = tmp_path / "ds"
    args = ["build-dataset", "sdf", "--input", str(sdf), "--no-progress"]
    assert main(args + ["-o", str(tmp_path / "plain")]) == 1
    assert "use --largest-fragment" in read_failures(tmp_path / "plain")[-1][1]
    capsys.readouterr()
    assert main(args + ["-o", str(out), "--largest-fragment"]) == 0
    assert "stored 1 molecules (2 conformers)" in capsys.readouterr().out
    entry = load_index(out)["molecules"][0]
    assert (entry["name"], entry["smiles"], entry["num_conformers"]) == (salt, "CCCC[NH3+]", 2)
    assert load_index(out)["meta"]["largest_fragment"] is True
    assert main(args + ["-o", str(out)]) == 2        # a resume keeps the setting
    assert "largest_fragment True -> False" in capsys.readouterr().err


def test_cli_resume_with_a_failures_file_lacking_its_columns_is_one_line(tmp_path, capsys):
    """A failures.csv without its ``reason`` column (edited by hand, saved from a spreadsheet)
    ended a resumed build in a KeyError traceback; it is a usage error naming the file."""
    smi = tmp_path / "in.smi"
    smi.write_text("CCCCO a\n[Fe] b\n")
    out = tmp_path / "ds"
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "1", "--no-progress"]
    assert main(args) == 1                  # [Fe] failed
    (out / "failures.csv").write_text("name\nb\n")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "failures.csv: expected the columns name,reason, found name" in err and "Traceback" not in err


def test_cli_sdf_refuses_records_over_max_heavy_atoms_before_their_distance_matrices(tmp_path, capsys,
                                                                                     monkeypatch):
    """``build-dataset sdf`` had no size limit (``etkdg`` has ``--max-heavy-atoms``), and each
    record's coordinates were checked, with (N, N) distance matrices, before anything looked at
    its size: an SDF holding a protein (tens of thousands of atoms) needed gigabytes per record.
    Now records over ``--max-heavy-atoms`` (default 100, as etkdg and ccd) are failure rows
    whose coordinates are never checked."""
    import molscore.data.conformers as conformers

    def chain(n: int) -> Chem.Mol:   # a zigzag alkane C_n, 3D, hydrogens left to the reader
        mol = Chem.MolFromSmiles("C" * n)
        conf = Chem.Conformer(n)
        for i in range(n):
            conf.SetAtomPosition(i, (1.26 * i, 0.89 * (i % 2), 0.0 if i % 4 < 2 else 0.3))
        conf.Set3D(True)
        mol.AddConformer(conf)
        return mol

    sdf = tmp_path / "in.sdf"
    with Chem.SDWriter(str(sdf)) as writer:
        for n in (120, 8):
            mol = chain(n)
            mol.SetProp("smiles", "C" * n)
            writer.write(mol)
    checked = []
    real = conformers.check_coordinates
    monkeypatch.setattr(conformers, "check_coordinates", lambda m, *a: checked.append(m.GetNumAtoms()) or real(m, *a))
    args = ["build-dataset", "sdf", "--input", str(sdf), "--no-progress"]
    assert main(args + ["-o", str(tmp_path / "default")]) == 1     # the C120 molecule failed
    assert read_failures(tmp_path / "default") == [("C" * 120, "conformer 0: too large: 120 heavy atoms (limit 100)"),
                                                   ("C" * 120, "no usable conformer (too large: 120 heavy atoms "
                                                               "(limit 100))")]
    assert [m["smiles"] for m in load_index(tmp_path / "default")["molecules"]] == ["C" * 8]
    assert checked == [8]
    assert load_index(tmp_path / "default")["meta"]["max_heavy_atoms"] == 100
    assert main(args + ["-o", str(tmp_path / "large"), "--max-heavy-atoms", "150"]) == 0
    assert sorted(m["smiles"] for m in load_index(tmp_path / "large")["molecules"]) == ["C" * 8, "C" * 120]
    capsys.readouterr()
    assert main(args + ["-o", str(tmp_path / "large")]) == 2        # a resume keeps the setting
    assert "max_heavy_atoms 150 -> 100" in capsys.readouterr().err


def test_cli_refuses_a_folder_another_build_is_writing(tmp_path, capsys):
    """Two builds into one folder both wrote shard_00000.pt and each replaced the other's
    index.json: the molecules of one were lost. The folder's writer holds a lock; a second
    build is a usage error naming the holder, and builds once the first has ended."""
    import os

    from molscore.data.processed import DatasetWriter

    smi = tmp_path / "in.smi"
    smi.write_text("CCCCOC(=O)CCN a\nCCCCCOC(=O)CCN b\n")
    out = tmp_path / "ds"
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "1", "--no-progress"]
    first = DatasetWriter(out)                 # a build of another process, running
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{out} is being written by another build (process {os.getpid()})" in err
    assert not (out / "index.json").exists()
    with pytest.raises(ValueError, match="being written by another build"):
        DatasetWriter(out)
    first.close()
    assert main(args) == 0
    assert [m["name"] for m in load_index(out)["molecules"]] == ["a", "b"]
    with DatasetWriter(out) as again:        # the build's lock was released when it ended
        assert again.is_done("b")


def test_cli_exit_status_says_whether_an_input_of_the_run_failed(tmp_path, capsys):
    """``build-dataset`` exited 0 when molecules failed (rows of failures.csv), where ``generate``
    exits 1: now 1 when an input this run tried failed or was unreadable (the rest stored), 0
    when each was stored or dropped as reserved; a resume counts only what it tried."""
    out = tmp_path / "ds"
    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethanol\nC1CC broken\nCCCN propylamine\n")
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "1", "--no-progress"]
    assert main(args) == 1
    assert "stored 2 molecules (2 conformers), failed 1," in capsys.readouterr().out
    assert [m["name"] for m in load_index(out)["molecules"]] == ["ethanol", "propylamine"]
    assert [(name, reason.split(" '")[0]) for name, reason in read_failures(out)] == [("broken", "invalid SMILES")]
    assert main(args) == 0                              # resumed: nothing left to try
    assert main(args + ["--retry-failed"]) == 1         # retried, and failed again
    assert "retrying 1 earlier failures" in capsys.readouterr().out
    smi.write_text("CCO ethanol\nC1CC broken\nCCCN propylamine\n\nCCCCO butanol\n")
    assert main(args) == 1                              # a new input, unreadable (an empty line)
    text = capsys.readouterr().out
    assert "stored 1 molecules" in text and "failed 0" in text and "; 1 unreadable input records" in text
    assert main(args) == 0

    smi.write_text("CCO ethanol\nCCCN propylamine\n")
    assert main(args[:5] + [str(tmp_path / "clean")] + args[6:]) == 0
    reserved = tmp_path / "reserved.smi"                 # mandelic acid is on the shipped list
    reserved.write_text("O=C(O)[C@@H](O)c1ccccc1 mandelic\n")
    capsys.readouterr()
    assert main(["build-dataset", "etkdg", "--smiles", str(reserved), "-o", str(tmp_path / "only_reserved"),
                 "--n-confs", "1", "--no-progress"]) == 0
    assert "failed 0, dropped 1 reserved" in capsys.readouterr().out
    assert read_failures(tmp_path / "only_reserved") == [("mandelic", "reserved for held-out evaluation")]


def test_cli_sdf_molecule_stored_without_some_records_is_a_failure(tmp_path, capsys):
    """A conformer record an SDF molecule is stored without is a failures.csv row, as generate
    counts a molecule that lost conformers: exit status 1, counted in the summary."""
    mol = Chem.AddHs(Chem.MolFromSmiles("CCOc1ccccc1"))
    cids = AllChem.EmbedMultipleConfs(mol, 2, randomSeed=9)
    other = Chem.AddHs(Chem.MolFromSmiles("CCCO"))
    AllChem.EmbedMolecule(other, randomSeed=9)
    sdf = tmp_path / "in.sdf"
    with Chem.SDWriter(str(sdf)) as writer:
        for record, cid in [(mol, cids[0]), (mol, cids[1]), (other, -1)]:
            record.SetProp("ensemble", "phenetole")
            writer.write(record, confId=cid)
    out = tmp_path / "ds"
    args = ["build-dataset", "sdf", "--input", str(sdf), "--group-by", "ensemble", "-o", str(out), "--no-progress"]
    assert main(args) == 1
    text = capsys.readouterr().out
    assert "stored 1 molecules (2 conformers), failed 0" in text
    assert "; 1 stored molecules lost conformer records" in text
    assert [(name, reason.split(":")[0]) for name, reason in read_failures(out)] == [("phenetole", "conformer 2")]
    assert main(args) == 0


def test_cli_refused_build_leaves_no_folder_of_its_own(tmp_path, monkeypatch, capsys):
    """A build refused (or interrupted) after it created its output folder left that folder
    behind, holding nothing but its lock file; the folders it created are removed, those that
    existed are kept."""
    import molscore.data.builders as builders

    def unreadable(limit=None):                     # the CCD is read once the build has begun
        raise ValueError("the CCD cannot be read")
        yield

    monkeypatch.setattr(builders, "ccd_components", unreadable)
    nested = tmp_path / "new" / "deeper" / "ds"
    assert main(["build-dataset", "ccd", "-o", str(nested), "--no-progress"]) == 2
    assert capsys.readouterr().err == "molscore build-dataset: error: the CCD cannot be read\n"
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert main(["build-dataset", "ccd", "-o", str(existing), "--no-progress"]) == 2
    assert existing.is_dir()

    def interrupted(limit=None):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(builders, "ccd_components", interrupted)
    assert main(["build-dataset", "ccd", "-o", str(tmp_path / "ds"), "--no-progress"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


def test_cli_build_refused_by_a_build_that_took_its_new_folder_leaves_that_folder(tmp_path, monkeypatch, capsys):
    """Two builds begun together into a new folder: the one that created it may lose the lock
    to the other, and must then leave the folder and the other's lock file alone."""
    import molscore.data.builders as builders
    from molscore.data.processed import LOCK_FILE, DatasetWriter

    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethanol\n")
    out = tmp_path / "ds"
    real = builders.build_writer
    others = []

    def raced(root, **kw):                          # the other build takes the folder first
        others.append(DatasetWriter(root))
        return real(root, **kw)

    monkeypatch.setattr(builders, "build_writer", raced)
    assert main(["build-dataset", "etkdg", "--smiles", str(smi), "-o", str(out), "--n-confs", "1",
                 "--no-progress"]) == 2
    assert "is being written by another build" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    with pytest.raises(ValueError, match="being written by another build"):
        DatasetWriter(out)                          # the other build still holds it
    others[0].close()


def _two_inputs(tmp_path):
    """Two one-molecule SMILES files (``a.smi``, ``b.smi``), an output folder and the
    ``build-dataset etkdg`` arguments that take the SMILES file last."""
    first, other = tmp_path / "a.smi", tmp_path / "b.smi"
    first.write_text("CCO ethanol\n")
    other.write_text("CCCN propylamine\n")
    out = tmp_path / "ds"
    return first, other, out, ["build-dataset", "etkdg", "-o", str(out), "--n-confs", "1",
                               "--no-progress", "--smiles"]


def test_cli_refuses_to_resume_from_another_input(tmp_path, capsys):
    """A resumed build did not compare its input with the one its folder was begun from: resumed
    with another SMILES file or SDF, it added that file's molecules to the dataset. The index
    records the input's name, size and SHA-256 (``meta.input``); another one is refused (exit
    2), the same content elsewhere is resumed, and so is an ``etkdg`` SMILES file with records
    added at its end (an SDF's added records may belong to a molecule stored already: refused)."""
    first, other, out, args = _two_inputs(tmp_path)
    assert main(args + [str(first)]) == 0
    capsys.readouterr()
    assert main(args + [str(other)]) == 2
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert capsys.readouterr().err == (
        f"molscore build-dataset: error: {out} was built from another input (a.smi, sha256 "
        f"{digest[:16]}); resume it with that file (records may be added at its end), or use "
        "another --output\n")
    assert [m["name"] for m in load_index(out)["molecules"]] == ["ethanol"]
    assert load_index(out)["meta"]["input"] == {"name": "a.smi", "bytes": 12, "sha256": digest}
    moved = tmp_path / "elsewhere" / "c.smi"
    moved.parent.mkdir()
    moved.write_bytes(first.read_bytes())
    assert main(args + [str(moved)]) == 0                   # the same content: resumed
    first.write_text("CCO ethanol\nCCCO propanol\n")
    assert main(args + [str(first)]) == 0                   # records added at the end: built
    assert [m["name"] for m in load_index(out)["molecules"]] == ["ethanol", "propanol"]
    assert load_index(out)["meta"]["input"]["bytes"] == 26
    capsys.readouterr()
    assert main(args + [str(moved)]) == 2                   # what it grew from is another input now
    assert "was built from another input (a.smi, sha256" in capsys.readouterr().err

    def sdf(path, smiles_list):
        with Chem.SDWriter(str(path)) as writer:
            for smiles in smiles_list:
                mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
                AllChem.EmbedMolecule(mol, randomSeed=9)
                writer.write(mol)

    sdf(first := tmp_path / "a.sdf", ["CCOc1ccccc1"])
    sdf(other := tmp_path / "b.sdf", ["CCCCO"])
    out = tmp_path / "sdf"
    args = ["build-dataset", "sdf", "-o", str(out), "--no-progress", "--input"]
    assert main(args + [str(first)]) == 0
    digest = hashlib.sha256(first.read_bytes()).hexdigest()[:16]
    capsys.readouterr()
    assert main(args + [str(other)]) == 2
    assert capsys.readouterr().err == (
        f"molscore build-dataset: error: {out} was built from another input (a.sdf, sha256 "
        f"{digest}); resume it with that file, or use another --output\n")
    with open(first, "ab") as fh:                           # another conformer of the stored molecule
        fh.write(other.read_bytes())
    assert main(args + [str(first)]) == 2
    assert [m["name"] for m in load_index(out)["molecules"]] == ["CCOc1ccccc1"]


def test_cli_resumes_a_build_that_recorded_no_input_and_records_it(tmp_path, capsys):
    """A folder begun by a molscore that recorded no input is resumed with whatever input it is
    given, as that molscore resumed it (refusing it would leave no way but to build it again);
    the input of that resume is recorded, and another one is refused from then on."""
    first, other, out, args = _two_inputs(tmp_path)
    assert main(args + [str(first)]) == 0
    index = json.loads((out / "index.json").read_text())
    del index["meta"]["input"]                              # as an earlier molscore wrote it
    (out / "index.json").write_text(json.dumps(index))
    assert main(args + [str(other)]) == 0
    assert [m["name"] for m in load_index(out)["molecules"]] == ["ethanol", "propylamine"]
    assert load_index(out)["meta"]["input"]["sha256"] == hashlib.sha256(other.read_bytes()).hexdigest()
    capsys.readouterr()
    assert main(args + [str(first)]) == 2
    assert "was built from another input (b.smi, sha256" in capsys.readouterr().err


def _killed_build(args: list[str], at: int) -> int:
    """Exit status of ``main(args)`` run in a forked child killed (``os._exit(9)``, as by
    SIGKILL: no ``finally`` runs) as it begins its ``at``-th file write of the dataset
    (``save_atomic`` of a shard, ``replace_atomically`` of the index or ``failures.csv``)."""
    import contextlib
    import itertools
    import os

    import molscore.data.processed as processed

    pid = os.fork()
    if pid == 0:                                            # the child never returns
        try:
            writes = itertools.count()

            def dying(real):
                def write(*a, **kw):
                    if next(writes) == at:
                        os._exit(9)
                    return real(*a, **kw)
                return write

            processed.save_atomic = dying(processed.save_atomic)
            processed.replace_atomically = dying(processed.replace_atomically)
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
                    contextlib.redirect_stderr(sink):
                main(args)
        finally:
            os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_cli_build_killed_at_any_write_resumes_to_the_uninterrupted_dataset(tmp_path, monkeypatch, capsys):
    """A build killed between a shard's index write and its ``failures.csv`` write lost the
    rows of the molecules of that shard that were stored without some conformer records: the
    resume took them as done, and their rows were never written. Killed before each of its
    writes in turn, a build resumed gives the index, shards and ``failures.csv`` of a build that
    was not interrupted (each row once)."""
    import torch

    import molscore.data.processed as processed

    sdf = tmp_path / "in.sdf"
    records = [("a", "CCOC"), ("b", "CCOCC"), ("b", "CCCO"), ("big", "CCCCCCCCCCCCO"), ("c", "CCNC"),
               ("c", "CCCN"), ("mandelic", "O=C(O)[C@@H](O)c1ccccc1"), ("d", "CCCCO")]
    with Chem.SDWriter(str(sdf)) as writer:                 # b and c: a record of another molecule
        for name, smiles in records:
            mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
            AllChem.EmbedMolecule(mol, randomSeed=7)
            mol.SetProp("ensemble", name)
            writer.write(mol)
    args = ["build-dataset", "sdf", "--input", str(sdf), "--group-by", "ensemble", "--shard-size", "1",
            "--max-heavy-atoms", "11", "--split", "0.5,0.25,0.25", "--no-progress", "-o"]
    writes = []
    for name in ("save_atomic", "replace_atomically"):
        monkeypatch.setattr(processed, name, lambda *a, real=getattr(processed, name), **kw:
                            writes.append(a[0]) or real(*a, **kw))
    reference = tmp_path / "reference"
    assert main(args + [str(reference)]) == 1               # big failed, b and c lost a record
    monkeypatch.undo()
    expected = read_failures(reference)
    assert [(name, reason.split(":")[0]) for name, reason in expected] == [
        ("b", "conformer 1"), ("big", "conformer 0"), ("big", "no usable conformer (too large"),
        ("c", "conformer 1"), ("mandelic", "reserved for held-out evaluation")]
    index = load_index(reference)

    def shards(root):
        return [torch.load(root / name, weights_only=True) for name in load_index(root)["shards"]]

    for at in range(len(writes)):
        out = tmp_path / f"killed{at}"
        assert _killed_build(args + [str(out)], at) == 9
        main(args + [str(out)])
        assert (at, read_failures(out)) == (at, expected)
        assert (at, load_index(out)) == (at, index)
        for got, want in zip(shards(out), shards(reference), strict=True):
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    capsys.readouterr()


def test_cli_rerun_without_split_keeps_the_folders_split(tmp_path, capsys):
    """A rerun left out ``--split``: the folder was split again at 0.8,0.1,0.1 at its end,
    moving molecules between train, val and test without a word (a model could then train on
    molecules it was tested on). A rerun without ``--split`` / ``--split-seed`` now keeps the
    folder's; one given others splits it again and says so."""
    sdf = tmp_path / "mols.sdf"
    with Chem.SDWriter(str(sdf)) as writer:
        for k, smiles in enumerate(["c1ccccc1C", "C1CCCCC1C", "c1ccncc1C", "C1CCOC1C", "c1ccsc1C",
                                    "C1CC1C", "c1ccoc1C", "C1CCNCC1C"]):
            mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
            AllChem.EmbedMolecule(mol, randomSeed=k + 1)
            mol.SetProp("_Name", f"m{k}")
            writer.write(mol)
    out = tmp_path / "ds"
    args = ["build-dataset", "sdf", "--input", str(sdf), "-o", str(out), "--no-progress"]
    assert main(args + ["--split", "0.5,0.25,0.25", "--split-seed", "3"]) == 0
    split = load_index(out)["splits"]
    assert [len(split[k]) for k in ("train", "val", "test")] == [4, 2, 2]
    capsys.readouterr()
    assert main(args) == 0
    assert load_index(out)["splits"] == split
    assert load_index(out)["split_config"]["fractions"] == [0.5, 0.25, 0.25]
    assert "splitting" not in capsys.readouterr().err
    assert main(args + ["--split", "1,0,0"]) == 0
    assert [len(load_index(out)["splits"][k]) for k in ("train", "val", "test")] == [8, 0, 0]
    assert capsys.readouterr().err == (
        f"molscore build-dataset: note: splitting {out} again with --split 1,0,0 --split-seed 3 "
        "(it was split with 0.5,0.25,0.25, seed 3): molecules move between train, val and test\n")
