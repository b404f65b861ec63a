"""`molscore generate` / `molscore evaluate` end to end (tiny random model)."""
import csv
import gzip
import io
import os
import re
import sys

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from molscore.cli import build_parser, main
from molscore.cli.generate import generate_options
from molscore.generate import GenerateOptions
from test_generate import make_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def _records(path):
    return [m for m in Chem.SDMolSupplier(str(path), removeHs=False)]


def test_bad_records_reported_good_ones_in_order(tiny_model, tmp_path, capsys):
    inp = tmp_path / "mols.csv"
    inp.write_text("name,smiles\nethanol,CCO\niron,C[Fe]C\nempty,\nacid,CC(=O)O\nethanol,OCCN\n"
                   "broken,C1CC\nsalt,[Na+].[O-]C(=O)C\nradical,C[CH2]\n")
    out = tmp_path / "out" / "gen.sdf"
    rc = main(["generate", "--input", str(inp), "--smiles-column", "smiles", "--name-column", "name",
               "-n", "2", "-o", str(out), "--model", tiny_model, "--steps", "2", "--device", "cpu",
               "--init", "etkdg", "--t-start", "0.05", "--no-progress"])
    assert rc == 1
    recs = _records(out)
    assert [m.GetProp("_Name") for m in recs] == ["ethanol", "ethanol", "acid", "acid",
                                                   "ethanol#2", "ethanol#2"]
    assert [m.GetProp("conformer") for m in recs] == ["0", "1"] * 3
    assert recs[4].GetProp("smiles") == "NCCO" and recs[0].GetNumAtoms() == 9
    with open(out.parent / "failures.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    reasons = {r["name"]: r["reason"] for r in rows}
    assert list(reasons) == ["iron", "empty", "broken", "salt", "radical"]
    assert "unsupported element" in reasons["iron"] and reasons["empty"] == "empty SMILES (line 4)"
    assert "invalid SMILES" in reasons["broken"] and "--largest-fragment" in reasons["salt"]
    assert "radical" in reasons["radical"]
    assert "duplicate" in capsys.readouterr().err


def test_all_good_exit_zero_and_relax_energy(tiny_model, tmp_path):
    out = tmp_path / "one.sdf"
    rc = main(["generate", "CC(=O)Nc1ccc(O)cc1", "-n", "2", "-o", str(out), "--model", tiny_model,
               "--steps", "2", "--device", "cpu", "--init", "etkdg", "--t-start", "0.05",
               "--relax", "--no-progress"])
    assert rc == 0
    recs = _records(out)
    assert len(recs) == 2 and recs[0].GetProp("_Name") == "CC(=O)Nc1ccc(O)cc1"
    assert all(float(m.GetProp("energy")) < 1e3 for m in recs)
    with open(tmp_path / "failures.csv") as fh:
        assert fh.read().strip() == "name,input,reason"


def test_csv_without_column_is_usage_error(tiny_model, tmp_path, capsys):
    inp = tmp_path / "mols.csv"
    inp.write_text("name,smi\na,CCO\n")
    rc = main(["generate", "--input", str(inp), "-o", str(tmp_path / "x.sdf"), "--model", tiny_model])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "no column 'smiles'" in err


@pytest.mark.parametrize("name, text, extra", [
    ("empty.smi", "", ""), ("title.smi", "SMILES Name\n# nothing yet\n", ""),
    ("blank.smi", "\n  \n\n", " (only 3 empty line(s) or SMILES cell(s))"),
    ("header.csv", "smiles,name\n", ""), ("empty.sdf", "\n", ""), ("-", "", "")])
def test_an_input_without_records_is_a_usage_error(tiny_model, tmp_path, monkeypatch, capsys,
                                                   name, text, extra):
    """An empty input (a file, a title line or comments alone, blank lines alone, empty stdin)
    ran as a job of no molecules: exit status 0, "0 molecule(s)", an empty output and its
    settings written. It is a slip (a wrong file, an upstream step that wrote nothing), so it
    is a usage error now, and nothing is written: an earlier run's output in that place stays."""
    if name == "-":
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    else:
        (tmp_path / name).write_text(text)
    out = tmp_path / "run" / "x.sdf"
    out.parent.mkdir()
    (out.parent / "failures.csv").write_text("name,input,reason\n")     # an earlier run's
    for resume in ([], ["--resume"]):
        rc = main(["generate", "--input", name if name == "-" else str(tmp_path / name), "-n", "1",
                   "-o", str(out), "--model", tiny_model, "--no-progress"] + resume)
        where = "stdin" if name == "-" else str(tmp_path / name)
        assert rc == 2 and capsys.readouterr().err.strip() == (
            f"molscore generate: error: no records in {where}{extra}")
        assert sorted(p.name for p in out.parent.iterdir()) == ["failures.csv"]


def test_records_that_all_fail_are_no_usage_error(tiny_model, tmp_path):
    """Unlike an empty input, records that are there but all fail (an unreadable SDF record,
    empty SMILES cells beside a good one) are a run: exit status 1, each in failures.csv."""
    sdf = tmp_path / "bad.sdf"
    sdf.write_text("broken\n  x\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n$$$$\n")
    out = tmp_path / "x.sdf"
    assert main(["generate", "--input", str(sdf), "-n", "1", "-o", str(out), "--model", tiny_model,
                 "--no-progress"]) == 1
    with open(tmp_path / "failures.csv") as fh:
        assert [row["name"] for row in csv.DictReader(fh)] == ["broken"]
    assert out.read_text() == ""


def test_stdin_smi_input(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("CCO first\n\nc1ccccc1 benzene\n"))
    out = tmp_path / "stdin.sdf"
    rc = main(["generate", "--input", "-", "-n", "1", "-o", str(out), "--model", tiny_model,
               "--steps", "2", "--device", "cpu", "--init", "etkdg", "--t-start", "0.05",
               "--no-progress"])
    assert rc == 1                                     # the empty line is a failed record
    assert [m.GetProp("_Name") for m in _records(out)] == ["first", "benzene"]


def _write_sdf_input(path, with_bad_record=True):
    """Two 3D records whose stereo lives only in the coordinates, a 2D one with a wedge,
    and a record RDKit cannot read; each with a vendor id and a stale energy."""
    mols = []
    for smiles, name in (("C[C@H](N)C(=O)O", "L-alanine"), ("F/C=C/F", "E-difluoroethene"),
                         ("C[C@@H](O)CC", "R-2-butanol")):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        if name.startswith("R-"):
            mol = Chem.RemoveHs(mol)
            AllChem.Compute2DCoords(mol)
        else:
            AllChem.EmbedMolecule(mol, randomSeed=3)
        mol.SetProp("_Name", name)
        mol.SetProp("vendor_id", f"V-{name}")
        mol.SetProp("energy", "999")
        mols.append(mol)
    with Chem.SDWriter(str(path)) as writer:
        for mol in mols:
            writer.write(mol)
    if with_bad_record:
        path.write_text(path.read_text() + "not a molfile\n$$$$\n")
    return mols


def test_sdf_input_keeps_names_stereo_and_properties(tiny_model, tmp_path):
    inp = tmp_path / "in.sdf"
    mols = _write_sdf_input(inp)
    out = tmp_path / "out.sdf"
    rc = main(["generate", "--input", str(inp), "-n", "2", "-o", str(out), "--model", tiny_model,
               "--steps", "2", "--device", "cpu", "--t-start", "0.05", "--no-progress"])
    assert rc == 1                                     # the unreadable record
    recs = _records(out)
    assert [m.GetProp("_Name") for m in recs] == [n for n in ("L-alanine", "E-difluoroethene",
                                                                "R-2-butanol") for _ in range(2)]
    for rec in recs:
        ref = next(m for m in mols if m.GetProp("_Name") == rec.GetProp("_Name"))
        expected = Chem.MolToSmiles(Chem.RemoveHs(ref))
        assert "@" in expected or "/" in expected
        Chem.AssignStereochemistryFrom3D(rec)
        assert Chem.MolToSmiles(Chem.RemoveHs(rec)) == expected == rec.GetProp("smiles")
        assert rec.GetProp("vendor_id") == f"V-{rec.GetProp('_Name')}"
        assert not rec.HasProp("energy")                # the input's, not of these coordinates
    with open(tmp_path / "failures.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [{"name": "not a molfile", "input": "", "reason": "SDF record 4 cannot be read by RDKit"}]


def test_an_sdf_record_whose_smiles_rdkit_cannot_write_fails_alone(tmp_path, monkeypatch):
    """An RDKit error while writing one record's SMILES is that record's reason, not the end
    of reading the file (it stopped the whole run)."""
    from molscore.chem import io as chem_io

    inp = tmp_path / "in.sdf"
    with Chem.SDWriter(str(inp)) as writer:
        for smiles, name in (("CCO", "ethanol"), ("CCN", "ethylamine"), ("CCC", "propane")):
            mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
            AllChem.EmbedMolecule(mol, randomSeed=7)
            mol.SetProp("_Name", name)
            writer.write(mol)
    writes = chem_io.record_smiles

    def record_smiles(mol):
        if mol.GetProp("_Name") == "ethylamine":
            raise RuntimeError("Invariant Violation\n\tsomething odd")
        return writes(mol)

    monkeypatch.setattr(chem_io, "record_smiles", record_smiles)
    records = list(chem_io.read_records(str(inp)))
    assert [(r.name, r.smiles, r.error is None) for r in records] == [
        ("ethanol", "CCO", True), ("ethylamine", "", False), ("propane", "CCC", True)]
    assert records[1].mol is None
    assert records[1].error == "SDF record 2: RDKit cannot write its SMILES (Invariant Violation)"


def test_sdf_records_with_hydrogens_are_named_and_reported_by_their_plain_smiles(tiny_model, tmp_path):
    """A failure row's input (and the Python API's default name) is the record's SMILES with
    the hydrogens implicit, as its ``smiles`` property, not ``[H]C([H])([H])...``."""
    inp = tmp_path / "in.sdf"
    with Chem.SDWriter(str(inp)) as writer:
        for smiles, name in (("CC(=O)[O-].[Na+]", "salt"), ("[CH2]O", "radical")):
            mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
            AllChem.EmbedMolecule(mol, randomSeed=7)
            mol.SetProp("_Name", name)
            writer.write(mol)
    out = tmp_path / "out.sdf"
    rc = main(["generate", "--input", str(inp), "-n", "1", "-o", str(out), "--model", tiny_model,
               "--steps", "2", "--device", "cpu", "--no-progress"])
    assert rc == 1
    with open(tmp_path / "failures.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["name"], r["input"]) for r in rows] == [("salt", "CC(=O)[O-].[Na+]"), ("radical", "[CH2]O")]
    from molscore.generate import ConformerGenerator
    mol = Chem.AddHs(Chem.MolFromSmiles("[CH2]O"))
    result = ConformerGenerator(tiny_model, device="cpu", options=GenerateOptions(n=1, steps=2)).generate(mol)
    assert (result.name, result.input) == ("[CH2]O", "[CH2]O") and result.error


def test_sdf_records_from_stdin_named_by_a_property(tmp_path, monkeypatch):
    import gzip

    from molscore.chem.io import read_records

    _write_sdf_input(tmp_path / "in.sdf", with_bad_record=False)
    data = (tmp_path / "in.sdf").read_bytes()
    (tmp_path / "in.sdf.gz").write_bytes(gzip.compress(data))
    recs = list(read_records(str(tmp_path / "in.sdf.gz"), name_column="vendor_id"))
    assert [r.name for r in recs] == ["V-L-alanine", "V-E-difluoroethene", "V-R-2-butanol"]
    assert [r.mol.GetNumAtoms() for r in recs] == [13, 6, 5]          # hydrogens as given
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    recs = list(read_records("-", fmt="sdf"))
    assert [(r.name, r.smiles, r.error) for r in recs] == [
        ("L-alanine", "C[C@H](N)C(=O)O", None), ("E-difluoroethene", "F/C=C/F", None),
        ("R-2-butanol", "CC[C@@H](C)O", None)]


@pytest.mark.parametrize("name, text", [("in.smi.gz", "".join(f"CCO n{i}\n" for i in range(5000))),
                                        ("in.sdf.gz", None)])
def test_truncated_gzip_input_is_usage_error(tiny_model, tmp_path, capsys, name, text):
    import gzip

    if text is None:
        _write_sdf_input(tmp_path / "in.sdf", with_bad_record=False)
        text = (tmp_path / "in.sdf").read_text()
    data = gzip.compress(text.encode())
    inp = tmp_path / name
    inp.write_bytes(data[:len(data) // 2])
    rc = main(["generate", "--input", str(inp), "-o", str(tmp_path / "x.sdf"), "--model", tiny_model])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"cannot read {inp}: Compressed file ended before the end-of-stream marker" in err


def test_missing_model_is_usage_error(tmp_path, capsys):
    rc = main(["generate", "CCO", "-o", str(tmp_path / "x.sdf"), "--model", str(tmp_path / "no.pt")])
    assert rc == 2 and "not found" in capsys.readouterr().err


def test_a_model_of_another_task_or_a_folder_is_a_usage_error(tmp_path, capsys, tiny_model):
    """``--model`` given an image or toy model built it and ran it on molecular graphs (a
    traceback from inside the network, exit 1); a folder was "not found". Both are one line."""
    import torch

    ckpt = torch.load(tiny_model, weights_only=True)
    other = tmp_path / "toy.pt"
    torch.save({**ckpt, "meta": {**ckpt["meta"], "task": "toy"}}, other)
    rc = main(["generate", "CCO", "-o", str(tmp_path / "x.sdf"), "--model", str(other)])
    assert rc == 2 and capsys.readouterr().err == (
        f"molscore generate: error: {other} is a model of task 'toy', not 'conformers'\n")
    rc = main(["generate", "CCO", "-o", str(tmp_path / "x.sdf"), "--model", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and "not found" not in err and str(tmp_path) in err
    assert not (tmp_path / "x.sdf").exists()


def test_cli_defaults_are_the_generator_defaults():
    """The parser spells its defaults out (``--help`` does not import RDKit or PyG); they
    must stay those of GenerateOptions."""
    args = build_parser().parse_args(["generate", "CCO", "-o", "x.sdf"])
    assert generate_options(args) == GenerateOptions()


@pytest.mark.parametrize("value, pool", [("auto", None), ("AUTO", None), ("50", 50)])
def test_pool_flag(value, pool):
    args = build_parser().parse_args(["generate", "CCO", "-o", "x.sdf", "--pool", value])
    assert generate_options(args).pool == pool


def test_pool_hydrogens_flag():
    args = build_parser().parse_args(["generate", "CCO", "-o", "x.sdf", "--pool-hydrogens", "stereo"])
    assert generate_options(args).pool_hydrogens == "stereo"


@pytest.mark.parametrize("flag, value, reason", [
    ("--pool", "0", "argument --pool: expected a positive integer or 'auto', got '0'"),
    ("--pool", "big", "argument --pool: expected a positive integer or 'auto', got 'big'"),
    ("--steps", "0", "steps must be >= 1"),
    ("--stereo-guidance", "-0.5", "stereo_guidance must be >= 0, got -0.5"),
    ("--max-heavy-atoms", "0", "max_heavy_atoms must be >= 1, got 0"),
    ("--max-heavy-atoms", "-5", "max_heavy_atoms must be >= 1, got -5"),
    ("--pool-hydrogens", "none", "argument --pool-hydrogens: invalid choice: 'none'")])
def test_bad_option_is_usage_error(tmp_path, capsys, flag, value, reason):
    with pytest.raises(SystemExit) as exit_info:     # argparse's errors exit; main returns 2
        raise SystemExit(main(["generate", "CCO", "-o", str(tmp_path / "x.sdf"), flag, value]))
    rc = exit_info.value.code
    err = capsys.readouterr().err
    assert rc == 2 and reason in err and not (tmp_path / "x.sdf").exists()


def test_evaluate_cli(tmp_path, capsys):
    mol = Chem.AddHs(Chem.MolFromSmiles("CCOC(=O)c1ccccc1"))
    params = AllChem.ETKDGv3()
    params.randomSeed = 42
    AllChem.EmbedMultipleConfs(mol, 2, params)
    mol.SetProp("smiles", "CCOC(=O)c1ccccc1")
    w = Chem.SDWriter(str(tmp_path / "ref.sdf"))
    for c in mol.GetConformers():
        w.write(mol, confId=c.GetId())
    w.close()
    rc = main(["evaluate", "coverage", "--generated", str(tmp_path / "ref.sdf"),
               "--reference", str(tmp_path / "ref.sdf")])
    out = capsys.readouterr().out
    assert rc == 0 and "COV-R       1.000    1.000" in out
    rc = main(["evaluate", "crystal", "--generated", str(tmp_path / "ref.sdf"),
               "--reference", str(tmp_path / "ref.sdf"), "--n", "1", "2"])
    assert rc == 0 and "   1    0.000   1.000" in capsys.readouterr().out
    assert main(["evaluate", "crystal", "--generated", "nope.sdf", "--reference", "x.sdf"]) == 2
    capsys.readouterr()
    (tmp_path / "mols.csv").write_text("smiles\nCCO\n")
    other = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(other, randomSeed=7)
    with Chem.SDWriter(str(tmp_path / "other.sdf")) as w:
        w.write(other)
    import gzip

    packed = gzip.compress((tmp_path / "ref.sdf").read_bytes())
    (tmp_path / "cut.sdf.gz").write_bytes(packed[:len(packed) // 2])
    (tmp_path / "plain.sdf.gz").write_bytes((tmp_path / "ref.sdf").read_bytes())
    for generated, extra, reason in (
            ("cut.sdf.gz", [], "cannot read .*cut.sdf.gz: Compressed file ended before"),
            ("plain.sdf.gz", [], "cannot read .*plain.sdf.gz: Not a gzipped file"),
            ("mols.csv", [], "no 3D conformer records read from the generated file"),
            ("ref.sdf", ["--group-by", "batch"], "no record of the generated file .* has the property 'batch'"),
            ("other.sdf", [], r"no molecule in common between the two files \(grouped by smiles\)")):
        rc = main(["evaluate", "crystal", "--generated", str(tmp_path / generated),
                   "--reference", str(tmp_path / "ref.sdf"), *extra])
        out, err = capsys.readouterr()
        assert rc == 2 and out == "" and re.search(reason, err) and len(err.splitlines()) == 1, err


def test_read_sdf_mols_streams_records_then_reports_a_cut_gzip(tmp_path):
    """``read_sdf_mols`` yields every record before the point where a cut ``.gz`` ends, then
    raises one ``InputFormatError``; an unreadable record is ``None`` in its place."""
    import gzip

    from molscore.chem.io import InputFormatError, read_sdf_mols

    blocks = []
    for i, smiles in enumerate(["CCO", "c1ccccc1O", "CC(=O)N"] * 40):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=i + 1)
        mol.SetProp("_Name", f"m{i}")
        blocks.append(Chem.MolToMolBlock(mol) + "$$$$\n")
    blocks[1] = "broken\n\n\n  9  9  0  0  0  0  0  0  0  0999 V2000\nM  END\n$$$$\n"
    (tmp_path / "all.sdf").write_text("".join(blocks))
    mols = list(read_sdf_mols(tmp_path / "all.sdf"))
    assert len(mols) == 120 and mols[1] is None
    assert [m.GetProp("_Name") for m in mols[::50]] == ["m0", "m50", "m100"]
    assert mols[0].GetNumAtoms() == 9                       # hydrogens kept
    packed = gzip.compress("".join(blocks).encode())
    (tmp_path / "cut.sdf.gz").write_bytes(packed[:len(packed) // 2])
    seen = []
    with pytest.raises(InputFormatError, match="cannot read .*cut.sdf.gz: Compressed file ended"):
        for mol in read_sdf_mols(tmp_path / "cut.sdf.gz"):
            seen.append(mol)
    assert 10 < len(seen) < 120 and all(m is not None for m in seen[2:])
    with pytest.raises(InputFormatError, match="input file not found"):
        next(read_sdf_mols(tmp_path / "none.sdf"))


def test_generate_says_in_one_line_when_the_input_cannot_be_opened(tmp_path, capsys, monkeypatch):
    """A SMILES or CSV input without read permission raised PermissionError from ``open`` (a
    traceback); now ``cannot read PATH: REASON`` and exit status 2, as for SDF input.
    (Permissions do not bind root, so the refusal is made by ``open`` itself.)"""
    import builtins

    import molscore.chem.io as chem_io

    for name in ("in.smi", "in.csv"):
        path = tmp_path / name
        path.write_text("smiles\nCCO\n")

        def refuse(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return builtins.open(file, *args, **kwargs)

        monkeypatch.setattr(chem_io, "open", refuse, raising=False)
        assert main(["generate", "--input", str(path), "-n", "1", "--no-progress",
                     "-o", str(tmp_path / "out" / "x.sdf")]) == 2
        assert capsys.readouterr().err == (f"molscore generate: error: cannot read {path}: "
                                           "Permission denied\n")


@pytest.mark.parametrize("fmt", ["smi", "csv", "sdf"])
def test_generate_says_that_a_folder_given_as_input_is_one(tmp_path, capsys, fmt):
    """``--input FOLDER`` said "input file not found: FOLDER", which is there."""
    folder = tmp_path / f"mols.{fmt}"
    folder.mkdir()
    assert main(["generate", "--input", str(folder), "-n", "1", "--no-progress",
                 "-o", str(tmp_path / "out" / "x.sdf")]) == 2
    assert capsys.readouterr().err == f"molscore generate: error: input {folder} is a folder; give a file\n"


@pytest.mark.parametrize("smiles", ["", "  "])
def test_a_blank_smiles_argument_fails_named_as_a_blank_record_is(tiny_model, tmp_path, smiles):
    """A blank SMILES argument was its own name: failures.csv got a row with an empty name
    (or blanks). It is named ``record_1``, as read_records names a blank record."""
    out = tmp_path / "out" / "x.sdf"
    assert main(["generate", smiles, "-n", "1", "--no-progress", "-o", str(out), "--model", tiny_model]) == 1
    with open(out.parent / "failures.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["name"], r["input"]) for r in rows] == [("record_1", smiles)]
    assert rows[0]["reason"].startswith("invalid SMILES")


def test_read_records_smi_and_duplicates(tmp_path):
    from molscore.chem.io import InputFormatError, read_records

    path = tmp_path / "in.smi"
    path.write_text("# comment\nCCO ethyl alcohol\nc1ccccc1\n\nCCN ethyl alcohol\n")
    dups = []
    recs = list(read_records(str(path), duplicates=dups))
    assert [(r.name, r.smiles, r.error) for r in recs] == [
        ("ethyl alcohol", "CCO", None), ("c1ccccc1", "c1ccccc1", None),
        ("record_3", "", "empty SMILES (line 4)"), ("ethyl alcohol#2", "CCN", None)]
    assert dups == ["ethyl alcohol#2"]
    # a semicolon- or tab-separated .csv (a spreadsheet's export in some locales)
    for sep in (";", "\t"):
        semi = tmp_path / "in.csv"
        semi.write_text(f'smiles{sep}name\r\nCCO{sep}"eth{sep}anol"\r\n')
        assert [(r.name, r.smiles) for r in read_records(str(semi), name_column="name")] == [
            (f"eth{sep}anol", "CCO")]
    # columns named in another case or with blanks (ChEMBL's "Smiles", "name, smiles"), and
    # blank lines before the header
    for text in ("\n\nID,Smiles\nx,CCO\n", "id, smiles\nx,CCO\n", "ID;SMILES\nx;CCO\n"):
        semi.write_text(text)
        assert [(r.name, r.smiles) for r in read_records(str(semi), name_column="id")] == [("x", "CCO")]
    semi.write_text("Smiles,smiles\nCCO,CCN\n")         # two loose matches: the exact one
    assert [r.smiles for r in read_records(str(semi))] == ["CCN"]
    semi.write_text("SMILES,Smiles\nCCO,CCN\n")         # two loose matches, no exact one
    with pytest.raises(InputFormatError, match="no column 'smiles'"):
        list(read_records(str(semi)))
    # the header line RDKit's SmilesWriter writes is not a record
    path.write_text("SMILES Name\nCCO ethanol\n")
    assert [(r.name, r.smiles) for r in read_records(str(path))] == [("ethanol", "CCO")]


def test_a_smi_title_line_naming_the_column_otherwise_is_no_record(tmp_path):
    """A title line ``canonical_smiles<tab>chembl_id`` (ChEMBL's column name) was a record, the
    invalid SMILES 'canonical_smiles', so a file of good molecules ended with exit status 1."""
    from molscore.chem.io import read_records

    path = tmp_path / "in.smi"
    for title in ("canonical_smiles\tchembl_id", "SMILES_string ID", "Smiles"):
        path.write_text(f"{title}\nCCO\tCHEMBL545\n")
        assert [(r.name, r.smiles) for r in read_records(str(path))] == [("CHEMBL545", "CCO")]
    path.write_text("CCO smiles\n")             # a molecule named so is no title
    assert [(r.name, r.smiles) for r in read_records(str(path))] == [("smiles", "CCO")]


def test_csv_records_are_named_by_a_name_or_id_column_by_default(tiny_model, tmp_path,
                                                                  monkeypatch):
    """generate named CSV records by their SMILES unless --name-column was given, while
    build-dataset etkdg took a 'name', else an 'id' column: one file, two sets of names."""
    from molscore.chem.io import read_records
    from molscore.data.builders import smiles_inputs

    inp = tmp_path / "mols.csv"
    for text, smiles_column, names in (
            ("smiles,name\nCCO,ethanol\nCCN,\n", "smiles", ["ethanol", "CCN"]),
            ("ID,Smiles\nethanol,CCO\n,CCN\n", "smiles", ["ethanol", "CCN"]),
            ("id,Name,smiles\n7,ethanol,CCO\n8, ,CCN\n", "smiles", ["ethanol", "CCN"]),
            ("smiles,label\nCCO,ethanol\n", "smiles", ["CCO"]),
            ("name,id\nCCO,Z1\n", "name", ["Z1"])):          # not the SMILES column itself
        inp.write_text(text)
        assert [r.name for r in read_records(str(inp), smiles_column=smiles_column)] == names, text
        assert [n for n, _ in smiles_inputs(inp, smiles_column=smiles_column)] == names, text
    monkeypatch.setattr(sys, "stdin", io.StringIO("smiles,id\nCCO,Z1\n"))
    assert [r.name for r in read_records("-", fmt="csv")] == ["Z1"]
    inp.write_text("smiles,name,id\nCCO,ethanol,Z1\nCCN,,Z2\n")
    out = tmp_path / "gen.sdf"
    assert main(["generate", "--input", str(inp), "--smiles-column", "smiles", "-n", "1",
                 "-o", str(out), "--model", tiny_model, "--steps", "1", "--pool", "1",
                 "--device", "cpu", "--no-progress"]) == 0
    assert [m.GetProp("_Name") for m in _records(out)] == ["ethanol", "CCN"]
    assert main(["generate", "--input", str(inp), "--name-column", "id", "-n", "1",
                 "-o", str(out), "--model", tiny_model, "--steps", "1", "--pool", "1",
                 "--device", "cpu", "--no-progress"]) == 0
    assert [m.GetProp("_Name") for m in _records(out)] == ["Z1", "Z2"]


def test_an_empty_record_names_its_line(tmp_path):
    """An empty line or SMILES cell failed as 'empty SMILES' under the name record_N, N its
    place among the records, which comments, a title line, blank lines before a CSV header
    and cells over several lines shift off the file's line numbers: it could not be found.
    Blank lines before a CSV header also shifted the line an open quote was reported at."""
    from molscore.chem.io import InputFormatError, read_records

    smi = tmp_path / "in.smi"
    smi.write_text("# made by hand\nSMILES Name\nCCO a\n\n# more\nCCN b\n   \n")
    assert [(r.name, r.error) for r in read_records(str(smi)) if r.error] == [
        ("record_2", "empty SMILES (line 4)"), ("record_4", "empty SMILES (line 7)")]
    inp = tmp_path / "in.csv"
    inp.write_text('\n\nsmiles,name\r\nCCO,"two\r\nlines"\r\n\r\n,gap\r\n  ,blank\r\n')
    assert [(r.name, r.error) for r in read_records(str(inp))] == [
        ("two lines", None), ("gap", "empty SMILES (line 7)"), ("blank", "empty SMILES (line 8)")]
    inp.write_text('\n\nsmiles,name\nCCO,a\n"CCN,b\nCCC,c\n')
    with pytest.raises(InputFormatError, match="the quote opened near line 5 is not closed"):
        list(read_records(str(inp)))


def test_a_cxsmiles_extension_in_a_smi_line_is_part_of_the_smiles(tiny_model, tmp_path):
    """A ``.cxsmiles`` line (an Enamine REAL file's ``SMILES |&1:1|<tab>ID``) was split at its
    first blank: the extension became the record's name (``|&1:1|\tZ1``, or ``|&1:1|`` alone),
    and the molecule lost it."""
    from molscore.chem.io import read_records

    path = tmp_path / "real.cxsmiles"
    path.write_text("smiles\tidnumber\nC[C@H](O)F |&1:1|\tZ1\nC[C@H](O)Cl |&1:1|\nCCO\tZ3\n"
                    "CCN |a name\n")
    assert [(r.name, r.smiles) for r in read_records(str(path))] == [
        ("Z1", "C[C@H](O)F |&1:1|"), ("C[C@H](O)Cl |&1:1|", "C[C@H](O)Cl |&1:1|"),
        ("Z3", "CCO"), ("|a name", "CCN")]
    out = tmp_path / "out.sdf"
    assert main(["generate", "--input", str(path), "-o", str(out), "--model", tiny_model, "-n", "1",
                 "--steps", "1", "--pool", "1", "--device", "cpu", "--no-progress"]) == 0
    assert [(m.GetProp("_Name"), m.GetProp("smiles")) for m in _records(out)] == [
        ("Z1", "C[C@H](O)F |&1:1|"), ("C[C@H](O)Cl |&1:1|", "C[C@H](O)Cl |&1:1|"), ("Z3", "CCO"),
        ("|a name", "CCN")]          # the racemate stays one in the smiles property


def test_a_cxsmiles_extension_with_blanks_inside_stays_with_its_smiles(tmp_path):
    """An extension whose atom labels hold a blank (``|$R 1;;$|``, which RDKit reads) was
    cut at it: the molecule lost its labels and was named ``|$R 1;;$| Z1``."""
    from molscore.chem.io import read_records

    path = tmp_path / "labels.smi"
    path.write_text("*CC |$R 1;;$| Z1\nC[C@H](N)O |&1:1,$;;NH 2;$|\tZ2 racemic\n")
    records = [(r.name, r.smiles) for r in read_records(str(path))]
    assert records == [("Z1", "*CC |$R 1;;$|"), ("Z2 racemic", "C[C@H](N)O |&1:1,$;;NH 2;$|")]
    labels = [[a.GetPropsAsDict().get("atomLabel") for a in Chem.MolFromSmiles(smiles).GetAtoms()]
              for _, smiles in records]
    assert labels == [["R 1", None, None], [None, None, "NH 2", None]]


def test_unwritable_output_is_usage_error(tiny_model, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for out, reason in ((blocker / "out.sdf", "cannot write"), (tmp_path, "is a folder")):
        rc = main(["generate", "CCO", "-o", str(out), "--model", tiny_model, "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and f"{reason}" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    assert not (tmp_path.parent / f"{tmp_path.name}.json").exists()


def test_sample_points_conformer_models_to_generate(tiny_model, tmp_path, capsys):
    rc = main(["sample", "--checkpoint", tiny_model, "-o", str(tmp_path / "x.npy")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.endswith(f"(see 'molscore generate SMILES --model {tiny_model}')")


def test_read_records_drops_byte_order_mark(tmp_path, monkeypatch):
    """Spreadsheet programs start UTF-8 CSV files with a byte-order mark; it must not become
    part of the first column's name (files, gzipped files and stdin)."""
    import gzip

    from molscore.chem.io import read_records

    text = "\ufeffsmiles,name\nCCO,ethanol\n"
    plain, packed = tmp_path / "in.csv", tmp_path / "in.csv.gz"
    plain.write_text(text, encoding="utf-8")
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    for path in (plain, packed):
        recs = list(read_records(str(path), name_column="name"))
        assert [(r.name, r.smiles) for r in recs] == [("ethanol", "CCO")]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8"))))
    recs = list(read_records("-", fmt="csv", name_column="name"))
    assert [(r.name, r.smiles) for r in recs] == [("ethanol", "CCO")]
    assert not sys.stdin.closed                      # reading stdin leaves it open


def test_sdf_input_drops_byte_order_mark(tmp_path, monkeypatch):
    """A UTF-8 byte-order mark (as a Windows editor saves the file) became part of the first
    SDF record's title line: the molecule was named '\ufeffethanol'."""
    import gzip

    from molscore.chem.io import read_records

    mol = Chem.MolFromSmiles("CCO")
    mol.SetProp("_Name", "ethanol")
    data = b"\xef\xbb\xbf" + (Chem.MolToMolBlock(mol) + "$$$$\n").encode() * 2
    plain, packed = tmp_path / "in.sdf", tmp_path / "in.sdf.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    for path in (plain, packed):
        assert [r.name for r in read_records(str(path))] == ["ethanol", "ethanol#2"]
    for stdin in (io.BufferedReader(io.BytesIO(data)), io.BytesIO(data)):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
        assert [r.name for r in read_records("-", fmt="sdf")] == ["ethanol", "ethanol#2"]


@pytest.mark.parametrize("rest", ["C" * 200_000 + ",x\n", "CCN,amine\nCCC,propane\n"])
def test_malformed_csv_is_usage_error(tiny_model, tmp_path, capsys, rest):
    """A quote left open would make the rest of the file one cell: in a small file the records
    after it were lost (one failed record instead), in a large one the file was refused only
    by csv's field size limit."""
    inp = tmp_path / "big.csv"
    inp.write_text("smiles,name\nCCO,ethanol\n\"" + rest)                 # unclosed quote
    rc = main(["generate", "--input", str(inp), "-o", str(tmp_path / "x.sdf"), "--model", tiny_model])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("molscore generate: error: malformed CSV: the quote opened near "
                               "line 3 is not closed (the rest of the file would be one cell)")


def test_read_records_reads_cells_lines_and_properties_of_any_length(tmp_path):
    """A CSV cell over csv.field_size_limit() (131072 characters) refused the whole file
    ('malformed CSV near line 5002: field larger than field limit'); .smi lines and SDF
    properties had no such limit. csv's limit is raised only while a row is parsed."""
    import csv

    from molscore.chem.io import read_records

    limit = csv.field_size_limit()
    rows = [f"CCO,ethanol_{i}" for i in range(10_000)]
    rows[5000] = '"' + "C" * 200_000 + '",giant'
    rows[7000] = "c1ccccc1" * 20_000 + ",giant_unquoted"
    inp = tmp_path / "big.csv"
    inp.write_text("smiles,name\n" + "\n".join(rows) + "\n")
    records = read_records(str(inp), name_column="name")
    first = next(records)
    assert (first.name, first.smiles) == ("ethanol_0", "CCO")
    assert csv.field_size_limit() == limit              # not while the reader is paused
    records = [first, *records]
    assert len(records) == 10_000 and csv.field_size_limit() == limit
    assert [(r.index, r.name, len(r.smiles)) for r in records if len(r.smiles) > 3] == [
        (5000, "giant", 200_000), (7000, "giant_unquoted", 160_000)]
    smi = tmp_path / "big.smi"
    smi.write_text("CCO a\n" + "C" * 300_000 + " giant\nCCN b\n")
    assert [(r.name, len(r.smiles)) for r in read_records(str(smi))] == [
        ("a", 3), ("giant", 300_000), ("b", 3)]
    mol = Chem.MolFromSmiles("CCO")
    mol.SetProp("note", "N" * 300_000)
    with Chem.SDWriter(str(tmp_path / "big.sdf")) as writer:
        writer.write(mol)
    [record] = read_records(str(tmp_path / "big.sdf"))
    assert len(record.mol.GetProp("note")) == 300_000


def test_a_csv_cell_over_the_field_size_limit_fails_as_its_record(tiny_model, tmp_path, capsys):
    """The record of a giant cell fails with its reason and the run goes on; --resume reads
    its failures.csv row (over csv's limit too) back."""
    import csv

    from molscore.chem.io import failure_names

    giant = "C(" * 70_000                            # 140,000 characters, not a SMILES
    inp, out = tmp_path / "mols.csv", tmp_path / "gen.sdf"
    inp.write_text(f'name,smiles\nethanol,CCO\ngiant,"{giant}"\namine,CCN\n')
    assert _generate(inp, out, tiny_model) == 1
    assert "2 molecule(s), 4 conformer(s)" in capsys.readouterr().err
    assert [m.GetProp("_Name") for m in _records(out)] == ["ethanol"] * 2 + ["amine"] * 2
    failures = tmp_path / "failures.csv"
    assert failure_names(failures) == ["giant"]
    assert f"giant,{giant},invalid SMILES 'C(C(C(" in failures.read_text()
    before = out.read_text(), failures.read_text()
    assert _generate(inp, out, tiny_model, "--resume") == 1
    assert (out.read_text(), failures.read_text()) == before
    assert csv.field_size_limit() == 131072


def test_non_utf8_input_is_usage_error_naming_the_line(tiny_model, tmp_path, capsys):
    inp = tmp_path / "latin1.smi"
    inp.write_bytes("".join(f"CCO n{i}\n" for i in range(3000)).encode() + "CCN \xe9thyl\n".encode("latin-1"))
    out = tmp_path / "x.sdf"
    rc = main(["generate", "--input", str(inp), "-o", str(out), "--model", tiny_model])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"not UTF-8 text ({inp}, line 3001: byte 0xe9); save it as UTF-8" in err
    assert not out.exists()


@pytest.mark.parametrize("title, note, line", [("caf\xe9", "ok", 1), ("cafe", "caf\xe9", 12)])
def test_sdf_text_not_utf8_is_usage_error_naming_the_line(tiny_model, tmp_path, capsys, title,
                                                          note, line):
    """A title line or property that is not UTF-8 was a UnicodeDecodeError traceback: from
    RDKit's GetProp while reading (the title), or from the SDF writer once the run had started
    (a property passed on to the output)."""
    record = "{}" + Chem.MolToMolBlock(Chem.MolFromSmiles("CCN")) + ">  <note>\n{}\n\n$$$$\n"
    inp = tmp_path / "latin1.sdf"            # (a molblock's first line is its empty title)
    inp.write_bytes(record.format(title, note).encode("latin-1") + record.format("a", "ok").encode())
    out = tmp_path / "x.sdf"
    rc = main(["generate", "--input", str(inp), "-o", str(out), "--model", tiny_model, "-n", "1",
               "--steps", "1", "--pool", "1", "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"not UTF-8 text ({inp}, line {line}: byte 0xe9); save it as UTF-8" in err
    assert not out.exists()


RESUME_INPUT = ("name,smiles\nethanol,CCO\niron,C[Fe]C\nacid,CC(=O)O\nphenol,c1ccccc1O\n"
                "broken,C1CC\nalanine,C[C@H](N)C(=O)O\n")


def _generate(inp, out, model, *extra) -> int:
    return main(["generate", "--input", str(inp), "--name-column", "name", "-o", str(out),
                 "--model", model, "-n", "2", "--steps", "2", "--device", "cpu", "--t-start", "0.05",
                 "--batch-size", "64", "--no-progress", *extra])


def _sdf_text(path) -> str:
    import gzip

    return (gzip.open(path, "rt") if path.suffix.lower() == ".gz" else open(path)).read()


def _ctrl_c_before(k: int):
    """A ``ConformerGenerator.run`` that raises Ctrl-C before the ``k + 1``-th molecule's
    result is written."""
    from molscore.generate import ConformerGenerator

    real_run = ConformerGenerator.run

    def dying_run(self, items, **kwargs):
        for done, result in enumerate(real_run(self, items, **kwargs)):
            if done == k:
                raise KeyboardInterrupt
            yield result
    return dying_run


@pytest.mark.parametrize("suffix", [".sdf", ".sdf.gz", ".SDF.GZ"])
def test_resume_after_an_interruption_writes_the_uninterrupted_output(tiny_model, tmp_path,
                                                                       monkeypatch, capsys, suffix):
    import gzip

    from molscore.chem.io import sdf_record_names
    from molscore.generate import ConformerGenerator

    def summary(folder) -> str:        # the run's last line, whatever its folder
        return capsys.readouterr().err.strip().splitlines()[-1].replace(str(folder), "DIR")

    inp = tmp_path / "mols.csv"
    inp.write_text(RESUME_INPUT)
    full, cut = tmp_path / "full" / f"gen{suffix}", tmp_path / "cut" / f"gen{suffix}"
    assert _generate(inp, full, tiny_model) == 1
    full_summary = summary(full.parent)
    assert "4 molecule(s), 8 conformer(s)" in full_summary and "2 failure(s)" in full_summary
    if suffix.lower().endswith(".gz"):        # gzip whatever the case of the suffix
        assert full.read_bytes()[:2] == b"\x1f\x8b"

    monkeypatch.setattr(ConformerGenerator, "run", _ctrl_c_before(3))   # the 4th molecule
    assert _generate(inp, cut, tiny_model) == 130
    monkeypatch.undo()
    assert sdf_record_names(cut) == ["ethanol"] * 2 + ["acid"] * 2
    # and a kill in the middle of writing: a torn record and a torn failures row
    torn = _sdf_text(full).split("$$$$\n")[4][:300]
    with open(cut, "ab") as fh:
        fh.write(gzip.compress(torn.encode())[:40] if suffix.lower().endswith(".gz") else torn.encode())
    with open(cut.parent / "failures.csv", "a") as fh:
        fh.write("phen")

    capsys.readouterr()
    assert _generate(inp, cut, tiny_model, "--resume") == 1
    assert summary(cut.parent) == full_summary       # counts of the whole run, not the rest
    assert _sdf_text(cut) == _sdf_text(full)
    assert (cut.parent / "failures.csv").read_text() == (full.parent / "failures.csv").read_text()
    assert not list(cut.parent.glob("*.tmp"))


def test_resume_samples_the_batches_of_the_uninterrupted_run(tiny_model, tmp_path, monkeypatch):
    """A resumed run continues after the last sampling batch written whole (OUTPUT.json's
    ``resume_at``), so its molecules share the network's batches as in the uninterrupted run
    (float32 rounding depends on them). It redid the last molecule written, which started
    batches one molecule earlier: 1-3 of 34 drug-like molecules then differed by 0.0001 Å
    in a printed coordinate from the uninterrupted run's."""
    from molscore.generate import ConformerGenerator

    inp = tmp_path / "mols.csv"
    inp.write_text("name,smiles\na,CCO\nb,CCN\nc,CCC\nd,OCO\ne,CCF\nf,CCCl\n")
    batches: list[tuple[str, ...]] = []
    real_sample_batch = ConformerGenerator._sample_batch

    def spy(self, batch):
        batches.append(tuple(job.result.name for job, _, _ in batch))
        return real_sample_batch(self, batch)

    monkeypatch.setattr(ConformerGenerator, "_sample_batch", spy)
    full, cut = tmp_path / "full" / "gen.sdf", tmp_path / "cut" / "gen.sdf"
    assert _generate(inp, full, tiny_model, "--batch-size", "30") == 0   # 2 molecules a batch
    full_batches, batches[:] = batches[:], []
    with monkeypatch.context() as patch:
        patch.setattr(ConformerGenerator, "run", _ctrl_c_before(2))    # after a's and b's batch
        assert _generate(inp, cut, tiny_model, "--batch-size", "30") == 130
    batches[:] = []
    assert _generate(inp, cut, tiny_model, "--batch-size", "30", "--resume") == 0
    first = next(i for i, names in enumerate(full_batches) if "c" in names)
    assert batches == full_batches[first:]
    assert _sdf_text(cut) == _sdf_text(full)


def test_a_full_disk_mid_run_is_one_line_exit_2_and_resumable(tiny_model, tmp_path, monkeypatch,
                                                               capsys):
    """A write that fails mid-run (a full disk) ended in an OSError traceback with exit status
    1, which says "some records failed, the rest is written"; now one line naming the output,
    exit status 2, the molecules before kept, and --resume continues."""
    import errno
    import os

    from molscore.chem import io as chem_io
    from molscore.chem.io import sdf_record_names

    inp = tmp_path / "mols.csv"
    inp.write_text(RESUME_INPUT)
    full, cut = tmp_path / "full" / "gen.sdf", tmp_path / "cut" / "gen.sdf"
    assert _generate(inp, full, tiny_model) == 1
    syncs, real_fsync = [], os.fsync

    def fsync(fd: int) -> None:            # the output's 3rd molecule meets a full disk
        if cut.exists() and os.path.samestat(os.fstat(fd), os.stat(cut)):
            syncs.append(fd)
            if len(syncs) == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)
    monkeypatch.setattr(chem_io.os, "fsync", fsync)
    capsys.readouterr()
    assert _generate(inp, cut, tiny_model) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"molscore generate: error: cannot write {cut}: No space left on device; "
                       "the molecules before are kept (generate --resume continues)")
    assert "Traceback" not in "\n".join(err)
    assert sdf_record_names(cut)[:4] == ["ethanol"] * 2 + ["acid"] * 2
    monkeypatch.undo()
    assert _generate(inp, cut, tiny_model, "--resume") == 1
    assert _sdf_text(cut) == _sdf_text(full)
    assert (cut.parent / "failures.csv").read_text() == (full.parent / "failures.csv").read_text()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_an_output_on_a_full_device_is_one_line_exit_2(tiny_model, tmp_path, capsys):
    """The real write path: an output that cannot take a byte (``/dev/full``) was a traceback
    (and, with the buffered writer, the error again when the file was closed)."""
    inp = tmp_path / "mols.csv"
    inp.write_text(RESUME_INPUT)
    out = tmp_path / "gen.sdf"
    out.symlink_to("/dev/full")
    assert _generate(inp, out, tiny_model) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"molscore generate: error: cannot write {out}: No space left")
    assert "Traceback" not in "\n".join(err)


def test_a_gzip_output_is_valid_after_each_molecule(tmp_path):
    """A ``.sdf.gz`` run killed (SIGKILL, out of memory) between molecules left a gzip stream
    without its end: ``zcat`` and Python's ``gzip`` stopped with "unexpected end of file" and
    RDKit's reader of it lost the last record. Each molecule is a complete gzip member now,
    and the bytes do not depend on the time of the run."""
    from molscore.chem.io import SDFStreamWriter

    mols = []
    for smiles in ("CCO", "c1ccccc1O"):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMultipleConfs(mol, 2, randomSeed=7)
        mols.append(mol)
    written = []
    for name in ("a.sdf.gz", "b.sdf.gz"):
        writer = SDFStreamWriter(tmp_path / name)
        for mol in mols:
            writer.write(mol)
        # what a killed process leaves on disk: the writer is never closed
        text = gzip.decompress((tmp_path / name).read_bytes()).decode()
        assert text.count("$$$$\n") == 4
        assert len(list(Chem.ForwardSDMolSupplier(gzip.open(tmp_path / name), removeHs=False))) == 4
        writer.close()
        written.append((tmp_path / name).read_bytes())
    assert written[0] == written[1]


def test_resume_names_a_failures_csv_that_another_run_wrote(tiny_model, tmp_path, capsys):
    """Two outputs in one folder share its failures.csv: the resume of the first, after the
    second ran, was refused saying that the first's SDF held the second's failure."""
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    one.write_text("name,smiles\nethanol,CCO\nbroken,C1CC\n")
    two.write_text("name,smiles\npropane,CCC\niron,C[Fe]C\n")
    assert _generate(one, tmp_path / "out" / "one.sdf", tiny_model) == 1
    assert _generate(two, tmp_path / "out" / "two.sdf", tiny_model) == 1
    capsys.readouterr()
    assert _generate(one, tmp_path / "out" / "one.sdf", tiny_model, "--resume") == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out' / 'failures.csv'} holds 'iron'" in err and "another output" in err


def test_resume_refuses_other_settings_or_another_input(tiny_model, tmp_path, capsys):
    inp, other = tmp_path / "mols.csv", tmp_path / "other.csv"
    inp.write_text(RESUME_INPUT)
    other.write_text("name,smiles\nmethanol,CO\n")
    out = tmp_path / "gen.sdf"
    assert _generate(inp, out, tiny_model) == 1
    capsys.readouterr()
    assert _generate(inp, out, tiny_model, "--resume", "--seed", "3") == 2
    assert "seed 0 -> 3" in capsys.readouterr().err
    assert _generate(other, out, tiny_model, "--resume") == 2
    assert "not a record of this input" in capsys.readouterr().err
    # a finished run resumes to itself; batch size and device may change
    before = out.read_text()
    assert _generate(inp, out, tiny_model, "--resume", "--batch-size", "4096") == 1
    assert out.read_text() == before


def test_workers_write_the_one_process_output(tiny_model, tmp_path):
    """``--workers 2`` writes the records, properties and failures of a one-process run, in
    input order (no clean-up: its minimisation of the random-weight model's conformers
    amplifies float rounding)."""
    inp = tmp_path / "in.smi"
    inp.write_text("CCO ethanol\nC1CC broken\nOC(=O)c1ccccc1 benzoic\nC[Fe] iron\nCCN amine\n")
    outs = {}
    for workers in ("1", "2"):
        out = tmp_path / workers / "gen.sdf"
        rc = main(["generate", "--input", str(inp), "-n", "2", "-o", str(out), "--model", tiny_model,
                   "--steps", "2", "--device", "cpu", "--t-start", "0.05", "--no-cleanup",
                   "--no-progress", "--workers", workers])
        assert rc == 1
        outs[workers] = out
    one, two = (_records(outs[w]) for w in ("1", "2"))
    assert [m.GetProp("_Name") for m in two] == ["ethanol"] * 2 + ["benzoic"] * 2 + ["amine"] * 2
    for a, b in zip(one, two):
        assert a.GetPropsAsDict() == b.GetPropsAsDict()
        assert abs(a.GetConformer().GetPositions() - b.GetConformer().GetPositions()).max() < 1e-3
    assert (outs["1"].parent / "failures.csv").read_text() == (outs["2"].parent / "failures.csv").read_text()


def test_workers_with_cuda_is_usage_error(tmp_path, capsys):
    rc = main(["generate", "CCO", "-o", str(tmp_path / "x.sdf"), "--workers", "2", "--device", "cuda"])
    assert rc == 2 and "use --workers 1 with --device cuda" in capsys.readouterr().err


def test_names_are_one_line_and_unique(tiny_model, tmp_path):
    """A name with a line break (a quoted CSV cell, a multi-line SDF property) would tear the
    SDF title line; a literal ``x#2`` before a second ``x`` must not give two ``x#2``."""
    from molscore.chem.io import read_records, sdf_record_names

    inp = tmp_path / "in.csv"
    inp.write_text('smiles,name\nCCO,"eth\r\nanol"\nCO,x#2\nCCN,x\nCCC,x\nCCCC,x#2\n')
    recs = list(read_records(str(inp), name_column="name"))
    assert [r.name for r in recs] == ["eth anol", "x#2", "x", "x#3", "x#2#2"]
    out = tmp_path / "gen.sdf"
    assert _generate(inp, out, tiny_model, "-n", "1") == 0
    names = [m.GetProp("_Name") for m in _records(out)]
    assert names == sdf_record_names(out) == [r.name for r in recs]
    # a finished run resumes to itself (with two "x#2" it cut records away)
    before = out.read_text()
    assert _generate(inp, out, tiny_model, "-n", "1", "--resume") == 0
    assert out.read_text() == before


def test_resume_reads_failure_rows_with_line_breaks(tiny_model, tmp_path):
    """A failures.csv cell holding a line break (a quoted CSV SMILES cell) is one row."""
    from molscore.chem.io import failure_names

    inp = tmp_path / "in.csv"
    inp.write_text('name,smiles\nweird,"C1CC\nX"\nethanol,CCO\nbad,"C1C""C"\n')
    out = tmp_path / "gen.sdf"
    assert _generate(inp, out, tiny_model) == 1
    failures = out.parent / "failures.csv"
    assert failure_names(failures) == ["weird", "bad"]
    before = (out.read_text(), failures.read_text())
    assert _generate(inp, out, tiny_model, "--resume") == 1
    assert (out.read_text(), failures.read_text()) == before
    with open(failures, "a", newline="") as fh:          # a torn row, cut inside its quotes
        fh.write('later,"C1\nC')
    assert failure_names(failures) == ["weird", "bad"]


def test_resume_reads_a_record_named_like_the_sdf_delimiter(tiny_model, tmp_path, capsys):
    """A molecule named ``$$$$`` has that title line, which RDKit reads as its name; the
    resume took it for the end of a record and refused the run ('holds ' RDKit 3D'...)."""
    from molscore.chem.io import sdf_record_names

    inp = tmp_path / "in.csv"
    inp.write_text("name,smiles\n$$$$,CCO\nethanol,OCC\n")
    out = tmp_path / "gen.sdf"
    assert _generate(inp, out, tiny_model) == 0
    assert sdf_record_names(out) == ["$$$$"] * 2 + ["ethanol"] * 2
    before = out.read_text()
    assert _generate(inp, out, tiny_model, "--resume") == 0
    assert out.read_text() == before and "error" not in capsys.readouterr().err


def test_sdf_name_property_in_no_record_is_usage_error(tiny_model, tmp_path, capsys):
    inp = tmp_path / "in.sdf"
    _write_sdf_input(inp, with_bad_record=False)
    out = tmp_path / "gen.sdf"
    rc = main(["generate", "--input", str(inp), "--name-column", "vendorid", "-o", str(out),
               "--model", tiny_model, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "'vendorid'" in err and "--name-column" in err
    assert not out.exists()


def test_every_sdf_record_is_read_or_failed_by_name_whatever_its_line_ends(tiny_model, tmp_path):
    """RDKit's stream reader lost records without a word: a last property without its closing
    blank line took the next record into its value, a record without ``M  END`` the record
    after it, and a file with lone CR line ends (classic Mac OS) gave no record at all (exit
    0); blank lines after the last record were a record it cannot read (exit 1), a record it
    cannot read was named ``record_N``, not by its title, and a UTF-16 file was one such
    record."""
    from molscore.chem.io import InputFormatError, read_records

    def block(smiles, name):
        mol = Chem.MolFromSmiles(smiles)
        mol.SetProp("_Name", name)
        return Chem.MolToMolBlock(mol)

    text = (block("CCO", "ethanol") + ">  <ID>\nZ1\n$$$$\n"
            + block("CCN", "ethylamine").replace("M  END\n", "") + "$$$$\n"
            + block("CCC", "propane") + "$$$$\n" + block("CCCl", "chloroethane") + "$$$$\n\n\n")
    inp = tmp_path / "in.sdf"
    want = [("ethanol", "CCO", None), ("ethylamine", "", "SDF record 2 cannot be read by RDKit"),
            ("propane", "CCC", None), ("chloroethane", "CCCl", None)]
    for line_end in ("\n", "\r\n", "\r"):
        inp.write_bytes(text.replace("\n", line_end).encode())
        records = list(read_records(str(inp)))
        assert [(r.name, r.smiles, r.error) for r in records] == want, repr(line_end)
        assert records[0].mol.GetProp("ID") == "Z1"
    assert [r.name for r in read_records(str(inp), name_column="ID")] == [
        "Z1", "record_2", "CCC", "CCCl"]
    out = tmp_path / "out" / "gen.sdf"
    assert main(["generate", "--input", str(inp), "-o", str(out), "--model", tiny_model, "-n", "1",
                 "--steps", "1", "--pool", "1", "--device", "cpu", "--no-progress"]) == 1
    assert [m.GetProp("_Name") for m in _records(out)] == ["ethanol", "propane", "chloroethane"]
    with open(out.parent / "failures.csv", newline="") as fh:
        assert [(r["name"], r["reason"]) for r in csv.DictReader(fh)] == [want[1][::2]]
    inp.write_text(block("CCO", "ethanol") + "$$$$\n\n")
    assert main(["generate", "--input", str(inp), "-o", str(out), "--model", tiny_model, "-n", "1",
                 "--steps", "1", "--pool", "1", "--device", "cpu", "--no-progress"]) == 0
    inp.write_text(text, encoding="utf-16")
    with pytest.raises(InputFormatError, match="not UTF-8 text .*line 1: byte 0xff"):
        list(read_records(str(inp)))


@pytest.mark.parametrize("flag", ["--dedupe", "--stereo-guidance"])
def test_nan_option_is_usage_error(tmp_path, capsys, flag):
    """NaN passed validation (NaN < 0 is false): --dedupe nan kept one conformer, and a
    resume was refused as 'dedupe nan -> nan'."""
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "CCO", "-o", str(tmp_path / "x.sdf"), flag, "nan"])
    assert exit_info.value.code == 2 and "got 'nan'" in capsys.readouterr().err


def test_resume_refuses_an_edited_input(tiny_model, tmp_path, capsys):
    """The same names with another SMILES are another input: the resumed output would mix both."""
    inp, edited = tmp_path / "mols.csv", tmp_path / "edited.csv"
    inp.write_text(RESUME_INPUT)
    edited.write_text(RESUME_INPUT.replace("acid,CC(=O)O", "acid,CC(=O)N"))
    out = tmp_path / "gen.sdf"
    assert _generate(inp, out, tiny_model) == 1
    capsys.readouterr()
    assert _generate(edited, out, tiny_model, "--resume") == 2
    assert "another input" in capsys.readouterr().err
    assert _generate(inp, out, tiny_model, "--resume") == 1


def test_resume_refuses_an_sdf_input_with_the_same_smiles_but_other_records(tiny_model, tmp_path,
                                                                           capsys):
    """input_sha256 covered an SDF record's name and SMILES only, but its coordinates (the
    stereo of a phosphine's P, which its SMILES leaves unspecified), atom order and properties
    change the output too: such an edited input was resumed into one output with the old."""
    from molscore.chem.io import read_records

    phosphine = Chem.AddHs(Chem.MolFromSmiles("CCP(C)c1ccccc1"))
    AllChem.EmbedMolecule(phosphine, randomSeed=7)
    phosphine.SetProp("_Name", "phosphine")
    mirrored = Chem.Mol(phosphine)
    conf = mirrored.GetConformer()
    for i in range(mirrored.GetNumAtoms()):
        x, y, z = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, (-x, y, z))
    reversed_atoms = Chem.RenumberAtoms(phosphine, list(range(phosphine.GetNumAtoms()))[::-1])
    reversed_atoms.SetProp("_Name", "phosphine")
    other_property = Chem.Mol(phosphine)
    other_property.SetProp("vendor_id", "V-2")
    ethanol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(ethanol, randomSeed=1)
    ethanol.SetProp("_Name", "ethanol")

    def sdf(path, first):
        with Chem.SDWriter(str(path)) as writer:
            for mol in (first, ethanol):
                writer.write(mol)
        return [(r.name, r.smiles) for r in read_records(str(path))]

    def generate(path, *extra) -> int:
        return main(["generate", "--input", str(path), "-o", str(out), "--model", tiny_model,
                     "-n", "1", "--steps", "1", "--pool", "1", "--device", "cpu", "--no-progress",
                     *extra])

    inp, edited, out = tmp_path / "in.sdf", tmp_path / "edited.sdf", tmp_path / "gen.sdf"
    names_and_smiles = sdf(inp, phosphine)
    assert generate(inp) == 0
    capsys.readouterr()
    for first in (mirrored, reversed_atoms, other_property):
        assert sdf(edited, first) == names_and_smiles
        assert generate(edited, "--resume") == 2
        assert "with another input" in capsys.readouterr().err
    assert generate(inp, "--resume") == 0


def test_resume_by_another_molscore_version_is_usage_error(tiny_model, tmp_path, capsys,
                                                         monkeypatch):
    """The molscore version in OUTPUT.json was not compared: a run resumed by another version
    (or from a settings file without one) mixed two versions' conformers in one output."""
    import json

    import molscore

    inp, out = tmp_path / "mols.csv", tmp_path / "gen.sdf"
    inp.write_text(RESUME_INPUT)
    assert _generate(inp, out, tiny_model) == 1
    before, settings = out.read_text(), tmp_path / "gen.sdf.json"
    recorded = json.loads(settings.read_text())["molscore"]
    assert recorded == molscore.__version__
    monkeypatch.setattr(molscore, "__version__", "99.0")
    capsys.readouterr()
    assert _generate(inp, out, tiny_model, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"molscore generate: error: cannot resume {out}, written by molscore "
                   f"{recorded}, with molscore 99.0; run without --resume to start afresh")
    monkeypatch.undo()
    settings.write_text(json.dumps({k: v for k, v in json.loads(settings.read_text()).items()
                                    if k != "molscore"}))
    assert _generate(inp, out, tiny_model, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "written by molscore (version not recorded), with " \
        f"molscore {recorded}; run without --resume" in err, err
    assert out.read_text() == before


def test_resume_of_a_run_that_named_csv_records_by_their_smiles_is_refused(tiny_model, tmp_path,
                                                                          capsys, monkeypatch):
    """A CSV with a 'name' column and no --name-column: molscore named its records by their
    SMILES, now by that column. Its interrupted run (output, failures.csv and settings as
    that version wrote them: a CSV whose name column it did not read, 'label' here, gives
    the same) must not be resumed into one output with two kinds of names."""
    from molscore.chem.io import sdf_record_names
    from molscore.generate import ConformerGenerator

    inp, unnamed = tmp_path / "mols.csv", tmp_path / "unnamed.csv"
    inp.write_text(RESUME_INPUT)
    unnamed.write_text(RESUME_INPUT.replace("name,smiles", "label,smiles", 1))
    out = tmp_path / "gen.sdf"
    dying_run = _ctrl_c_before(1)                # the 2nd molecule

    def generate(path, *extra) -> int:
        return main(["generate", "--input", str(path), "-o", str(out), "--model", tiny_model,
                     "-n", "1", "--steps", "1", "--pool", "1", "--device", "cpu",
                     "--no-progress", *extra])

    monkeypatch.setattr(ConformerGenerator, "run", dying_run)
    assert generate(unnamed) == 130
    monkeypatch.undo()
    before = out.read_text(), (tmp_path / "failures.csv").read_text()
    assert sdf_record_names(out) == ["CCO"]
    capsys.readouterr()
    assert generate(inp, "--resume") == 2
    assert capsys.readouterr().err.strip() == (
        f"molscore generate: error: cannot resume {out}: its records are named by their SMILES, "
        "as an earlier molscore named CSV records without --name-column, and this one names "
        "them by the CSV's 'name' or 'id' column; run without --resume to start afresh")
    assert (out.read_text(), (tmp_path / "failures.csv").read_text()) == before
    # started afresh, the run names them by the name column and resumes to itself
    assert generate(inp) == 1 and generate(inp, "--resume") == 1
    assert sdf_record_names(out) == ["ethanol", "acid", "phenol", "alanine"]


def test_resume_with_a_damaged_settings_file_is_usage_error(tiny_model, tmp_path, capsys):
    inp, out = tmp_path / "mols.csv", tmp_path / "gen.sdf"
    inp.write_text(RESUME_INPUT)
    assert _generate(inp, out, tiny_model) == 1
    settings = tmp_path / "gen.sdf.json"
    for text in ('{"model_sha256": "ab', "[1, 2]"):
        settings.write_text(text)
        capsys.readouterr()
        assert _generate(inp, out, tiny_model, "--resume") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is not the settings file of a molscore run" in err, err


def test_output_not_named_as_an_sdf_file_is_usage_error(tiny_model, tmp_path, capsys):
    """SDF was written into ``out.xyz`` (or over the run's own ``failures.csv``) whatever the
    name said."""
    inp = tmp_path / "mols.csv"
    inp.write_text(RESUME_INPUT)
    for name in ("failures.csv", "out.xyz", "out.sdf.zip"):
        assert _generate(inp, tmp_path / name, tiny_model) == 2
        assert capsys.readouterr().err.strip().endswith(
            f"output {tmp_path / name} must be an SDF file, its name ending in .sdf or .sdf.gz")
        assert not (tmp_path / name).exists()
    assert not (tmp_path / "failures.csv").exists()


def test_input_that_the_run_would_overwrite_is_usage_error(tiny_model, tmp_path, capsys):
    """Retrying a run's failures.csv in its folder (or -o the input) replaced the input."""
    failures = tmp_path / "failures.csv"
    failures.write_text("name,input,reason\nsalt,[Na+].[Cl-],2 fragments\n")
    before = failures.read_text()
    for out, reason in ((tmp_path / "retry.sdf", "would be overwritten"),
                        (failures, "must be an SDF file")):
        rc = main(["generate", "--input", str(failures), "--smiles-column", "input", "--name-column",
                   "name", "-o", str(out), "--model", tiny_model, "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and reason in err, err
        assert failures.read_text() == before and not (tmp_path / "retry.sdf").exists()


def test_a_dead_worker_ends_the_run_with_one_line_and_keeps_what_was_written(tiny_model, tmp_path,
                                                                              capsys, monkeypatch):
    import molscore.parallel as parallel
    from molscore.generate import ConformerGenerator

    def dies_after_one(items, workers, *, model=None, options=None, **_):
        gen = ConformerGenerator(model, device="cpu", options=options)
        yield from gen.run(items[:1])
        raise parallel.WorkerDied("a worker process died (exit code -9: killed, out of memory or "
                                  "crashed)")

    monkeypatch.setattr(parallel, "generate_in_processes", dies_after_one)
    inp, out = tmp_path / "in.smi", tmp_path / "gen.sdf"
    inp.write_text("CCO ethanol\nCCN amine\nCCC propane\n")
    args = ["generate", "--input", str(inp), "-n", "2", "-o", str(out), "--model", tiny_model,
            "--steps", "2", "--device", "cpu", "--no-cleanup", "--no-progress", "--workers", "2"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("molscore generate: error: a worker process died"), err
    assert [m.GetProp("_Name") for m in Chem.SDMolSupplier(str(out))] == ["ethanol", "ethanol"]


def test_a_t_start_at_or_below_the_models_eps_is_a_usage_error(tiny_model, tmp_path, capsys):
    """The ETKDG route integrates [eps, t_start]: a t_start at or below the SDE's eps ran the
    time grid upwards."""
    from molscore.generate import ConformerGenerator

    with pytest.raises(ValueError, match=r"t_start must be in \(1e-05, 1\] for this model"):
        ConformerGenerator(tiny_model, device="cpu", t_start=1e-6)
    rc = main(["generate", "CCO", "-o", str(tmp_path / "out.sdf"), "--model", tiny_model,
               "--device", "cpu", "--t-start", "1e-5", "--no-progress"])
    assert rc == 2 and "t_start must be in (1e-05, 1] for this model (its SDE's time range), got 1e-05" \
        in capsys.readouterr().err
    assert not (tmp_path / "out.sdf").exists()


def test_gzip_on_stdin_says_so(tiny_model, tmp_path, monkeypatch, capsys):
    """A gzip stream piped in was 'not UTF-8 text (stdin: byte 0x8b); save it as UTF-8'."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(b"CCO a\n"))))
    out = tmp_path / "x.sdf"
    rc = main(["generate", "--input", "-", "-o", str(out), "--model", tiny_model])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "input on stdin is gzip-compressed; unpack it (zcat FILE.gz | molscore ...)" in err
    assert not out.exists()


@pytest.mark.parametrize("name", ["mols.csv", "mols.smi"])
def test_a_gzip_file_without_gz_in_its_name_says_so(tiny_model, tmp_path, capsys, name):
    """A gzipped input whose name does not end in .gz was 'input is not UTF-8 text (...,
    line 1: byte 0x8b); save it as UTF-8', which sent the user to re-encode a text file."""
    inp = tmp_path / name
    inp.write_bytes(gzip.compress(b"smiles,name\nCCO,a\n"))
    out = tmp_path / "x.sdf"
    rc = main(["generate", "--input", str(inp), "-o", str(out), "--model", tiny_model])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"{inp} is gzip-compressed, but its name does not end in .gz; rename it ({name}.gz) or unpack it" in err
    assert not out.exists()


def test_a_gzip_sdf_on_stdin_or_under_a_plain_name_says_so(tiny_model, tmp_path, monkeypatch, capsys):
    """A gzipped SDF piped in with --format sdf, or saved without .gz, was one failed record
    ('SDF record 1 cannot be read by RDKit', exit 1); a gzipped --core was 'no readable molecule'."""
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    packed = gzip.compress(Chem.MolToMolBlock(mol).encode() + b"$$$$\n")
    out = tmp_path / "x.sdf"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(packed)))
    rc = main(["generate", "--input", "-", "--format", "sdf", "-o", str(out), "--model", tiny_model])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "input on stdin is gzip-compressed; unpack it (zcat FILE.gz | molscore ...)" in err
    plain = tmp_path / "mols.sdf"
    plain.write_bytes(packed)
    for args in (["--input", str(plain)], ["CCO", "--core", str(plain)]):
        rc = main(["generate", *args, "-o", str(out), "--model", tiny_model, "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1
        assert f"{plain} is gzip-compressed, but its name does not end in .gz; rename it (mols.sdf.gz)" in err
    assert not out.exists()


def test_columns_asked_of_smi_lines_are_a_usage_error(tiny_model, tmp_path, capsys):
    """A tab-separated table saved as .txt is read as .smi lines: --smiles-column and
    --name-column were ignored without a word, and every record failed as the invalid
    SMILES of its first cell ('Z1'), exit 1."""
    inp = tmp_path / "mols.txt"
    inp.write_text("ID\tSMILES\nZ1\tCCO\nZ2\tCCN\n")
    out = tmp_path / "out" / "x.sdf"
    base = ["generate", "--input", str(inp), "-o", str(out), "--model", tiny_model, "-n", "1",
            "--steps", "1", "--pool", "1", "--device", "cpu", "--no-progress"]
    for extra in (["--smiles-column", "SMILES"], ["--name-column", "ID"]):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.endswith(
            "which have no column " + repr(extra[1]) + "; for a table, name the file .csv or .tsv "
            "or use --format csv"), err
        assert not out.parent.exists()
    assert main(base + ["--format", "csv", "--smiles-column", "SMILES", "--name-column", "ID"]) == 0
    assert [m.GetProp("_Name") for m in _records(out)] == ["Z1", "Z2"]


def test_a_csv_named_smi_gets_a_hint(tiny_model, tmp_path):
    """Every line of a CSV saved as .smi failed as "invalid SMILES 'CCO,a'" with no hint."""
    inp = tmp_path / "mols.smi"
    inp.write_text("CCO,a\n")
    out = tmp_path / "x.sdf"
    assert main(["generate", "--input", str(inp), "-o", str(out), "--model", tiny_model]) == 1
    rows = list(csv.DictReader((tmp_path / "failures.csv").open()))
    assert rows[0]["reason"] == ("invalid SMILES 'CCO,a': could not be parsed (SMILES hold no "
                                 "comma: a CSV file? name it .csv or use --format csv)")


def test_smi_property_columns_after_the_name_are_not_part_of_it(tmp_path):
    """A ``.smi`` file with property columns after the name, as RDKit's ``SmilesWriter`` writes
    them (``SMILES Name logP``), named its molecules 'eth 0.1': the name was the rest of the
    line. With a title of more than two columns the name is the second field alone."""
    from rdkit import Chem

    from molscore.chem.io import read_records

    path = tmp_path / "in.smi"
    writer = Chem.SmilesWriter(str(path), nameHeader="Name")
    writer.SetProps(["logP"])
    for smiles, name in (("CCO", "eth"), ("CCN", "amine")):
        mol = Chem.MolFromSmiles(smiles)
        mol.SetProp("_Name", name)
        mol.SetProp("logP", "0.1")
        writer.write(mol)
    writer.close()
    assert path.read_text().splitlines()[0].split() == ["SMILES", "Name", "logP"]
    assert [(r.name, r.smiles) for r in read_records(str(path))] == [("eth", "CCO"), ("amine", "CCN")]
    path.write_text("SMILES\tName\tlogP\nCCO\tmy eth\t0.1\nCCN\t\t0.2\nC[C@H](N)O |&1:1|\tlab\t0\n")
    assert [(r.name, r.smiles) for r in read_records(str(path))] == [
        ("my eth", "CCO"), ("CCN", "CCN"), ("lab", "C[C@H](N)O |&1:1|")]
    path.write_text("SMILES Name\nCCO my ethanol\n")     # two columns: the rest of the line
    assert [r.name for r in read_records(str(path))] == ["my ethanol"]
