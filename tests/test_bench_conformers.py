"""``scripts/bench_conformers.py``: the ETKDG baseline's stereo, and merged reports."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_conformers import (COVERAGE_METRICS, NS, _etkdg_job, _with_coords, merge_reports,  # noqa: E402
                              quality)
from molscore.chem.featurize import prepare_mol  # noqa: E402


@pytest.mark.parametrize("smiles", ["CP(CC)c1ccccc1", "C[C@@H]1C[NH]1"])
def test_the_etkdg_baseline_keeps_the_pyramidal_centres_of_the_reference(smiles):
    """A 3D reference's P or N pyramid (which ``AssignStereochemistryFrom3D`` leaves
    unspecified; ``prepare_mol`` tags it for the model) is kept by the baseline too, instead of
    being embedded at random and counted as wrong stereo."""
    record = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(record, randomSeed=3)
    mol = prepare_mol(Chem.RemoveHs(record), add_hs=True)      # what the benchmark gives both
    pyramids = [a.GetIdx() for a in mol.GetAtoms()
                if a.GetSymbol() in "NP" and a.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED]
    assert pyramids, "the reference's pyramidal centre is tagged for the model"
    coords = _etkdg_job((Chem.MolToMolBlock(mol), 12, 1, False))
    assert len(coords) == 12
    stereo, _, _ = quality(_with_coords(mol, coords))
    assert stereo == 12


def test_the_etkdg_baseline_reads_a_centre_from_all_four_volumes_as_the_model_input_does():
    """At a centre close to a face of its neighbours' tetrahedron (CCD HBE's epoxide carbon in
    its PDB pose) RDKit's reading from three neighbours and ``prepare_mol``'s from all four
    disagree; the baseline read RDKit's, so ETKDG built the other epimer than the model was
    asked for and its conformers counted as wrong stereo (crystal set at ``-n 10``: 99.2 %
    of ETKDG's conformers stereo-correct, 100 % before ``prepare_mol`` read all four)."""
    from test_featurize import hbe_record

    mol = prepare_mol(hbe_record())
    rdkit_read = Chem.MolFromMolBlock(Chem.MolToMolBlock(mol), removeHs=False)
    Chem.AssignStereochemistryFrom3D(rdkit_read)
    assert Chem.MolToSmiles(rdkit_read) != Chem.MolToSmiles(mol)      # the case this is about
    coords = _etkdg_job((Chem.MolToMolBlock(mol), 5, 1, False))
    assert len(coords) == 5
    stereo, _, _ = quality(_with_coords(mol, coords))
    assert stereo == 5


def _part(sets: list[str], **config) -> dict:
    """A bench_conformers report of ``sets`` (two molecules each) with ``config`` overrides."""
    base = {"model": "molscore/weights/conformer.pt", "init": "etkdg", "sampler": "reverse", "steps": 10,
            "t_start": 0.3, "pool": None, "pick": "max-min", "pool_hydrogens": "all", "no_cleanup": False,
            "stereo_guidance": 0.0, "device": "cpu", "crystal_n": 50, "posebusters": "not used",
            "etkdg": "ETKDGv3 randomSeed=1, no force field"}
    results = {}
    for name in sets:
        results[name] = {"molecules_in_set": 2, "molecules_both": 2}
        for method in ("model", "etkdg"):
            if name == "crystal":
                ns = [n for n in NS if n <= config.get("crystal_n", 50)]
                rows = {k: {str(n): 1.0 for n in ns} for k in ("a", "b")}
                summary = {f"N={n}": {"median": 1.0, "frac_below_0.5": 0.0, "frac_below_1.0": 0.0,
                                      "frac_below_2.0": 1.0} for n in ns}
            else:
                rows = {k: dict.fromkeys(COVERAGE_METRICS, 0.5) for k in ("a", "b")}
                summary = {m: {"mean": 0.5, "median": 0.5} for m in COVERAGE_METRICS}
            results[name][method] = {**summary, "per_molecule": rows, "frac_returned": 1.0,
                                     "frac_stereo_correct": 1.0, "frac_geometry_ok": 1.0}
    return {"config": {**base, **config}, "results": results, "speed": {"model_conformers_per_s_cpu": 1.0}}


def test_a_merge_of_runs_with_other_settings_shows_each_runs_settings(tmp_path, capsys):
    """The header of a merged report showed the first run's settings for every set: a crystal
    run with another checkpoint, 20 steps, no clean-up and ``--crystal-n 10`` merged after a
    coverage run read as the shipped weights, 10 steps, clean-up on, 50 conformers."""
    cov = tmp_path / "cov.json"
    cov.write_text(json.dumps(_part(["coverage_hexane"])))
    cry = tmp_path / "cry.json"
    cry.write_text(json.dumps(_part(["crystal"], model="runs/x.pt", steps=20, no_cleanup=True, crystal_n=10)))
    merge_reports([cov, cry], tmp_path / "merged")
    capsys.readouterr()
    md = (tmp_path / "merged.md").read_text()
    assert "model `coverage_hexane: molscore/weights/conformer.pt; crystal: runs/x.pt`" in md
    assert "coverage_hexane: 10; crystal: 20 steps" in md
    assert "clean-up coverage_hexane: on; crystal: off" in md
    assert "of bioactive_dev, seed 0; 10 conformers per molecule" in md
    # runs with the same settings: shown once, as before
    same = tmp_path / "same.json"
    same.write_text(json.dumps(_part(["crystal"])))
    merge_reports([cov, same], tmp_path / "merged_same")
    md = (tmp_path / "merged_same.md").read_text()
    assert "model `molscore/weights/conformer.pt`, init `etkdg`, sampler `reverse`, 10 steps" in md
    assert "clean-up on, stereo guidance off" in md and "50 conformers per molecule" in md


@pytest.mark.parametrize("seed", ["0", "-1"])
def test_an_etkdg_seed_below_1_is_refused_before_the_model_runs(seed, monkeypatch, capsys):
    """``--etkdg-seed 0`` (identical conformers) was refused only by ``etkdg_all``, with a
    traceback after the model had run on the first set; -1 (RDKit's "random") ran, not
    reproducible. Both are now a one-line usage error before anything runs."""
    import bench_conformers

    def ran(**_):
        raise AssertionError("the benchmark started")

    monkeypatch.setattr(bench_conformers, "ConformerGenerator", ran)
    monkeypatch.setattr(sys, "argv", ["bench_conformers.py", "--etkdg-seed", seed])
    with pytest.raises(SystemExit) as stop:
        bench_conformers.main()
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"bench_conformers.py: error: argument --etkdg-seed: expected a positive integer, got '{seed}'")


def test_molecules_left_out_of_a_set_are_counted_and_shown():
    """A crystal run of the 500-molecule subset where a method returned nothing for 2 read
    "498 molecules of bioactive_dev": the subset's size and the molecules left out (of both
    methods' rows) were not said. Now both, and per method which failed."""
    from bench_conformers import failed_molecules, markdown

    ok = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(ok, randomSeed=1)
    empty = Chem.Mol(ok)
    empty.RemoveAllConformers()
    failed = failed_molecules(["a", "b", "c", "d"], {"model": {"a": ok, "b": None, "c": empty, "d": ok},
                                                     "etkdg": {"a": ok, "b": ok, "c": ok, "d": empty}})
    assert failed == {"model": 2, "etkdg": 1}
    report = _part(["crystal", "coverage_hexane"])
    report["results"]["crystal"].update(molecules_in_set=5, molecules_both=2, failed=failed)
    report["results"]["coverage_hexane"].update(molecules_in_set=3)        # an older report
    md = markdown(report)
    assert ("## Crystal conformer reproduction (2 molecules of a fixed random subset of 5 of "
            "bioactive_dev, seed 0; 3 left out: model returned no conformer for 2, etkdg "
            "returned no conformer for 1; 50 conformers per molecule)") in md
    assert "| hexane | 2; 1 left out: a method returned no conformer | model |" in md
    report["results"]["crystal"].update(molecules_in_set=2)
    assert "(2 molecules of a fixed random subset of 2 of bioactive_dev, seed 0; 50 conformers" in markdown(report)


def _mark_started(folder: str) -> None:
    """A pool worker's initializer: the first worker to run it takes 2 s (a slow model load),
    then each writes ``started-PID`` in ``folder``."""
    import os
    import time

    try:
        (Path(folder) / "first").open("x").close()
        time.sleep(2)
    except FileExistsError:
        pass
    (Path(folder) / f"started-{os.getpid()}").touch()


def test_a_started_pool_is_given_once_every_worker_ran_its_initializer(tmp_path):
    """``run_model`` started its clock once ``pool.imap(int, range(workers))`` had returned,
    which the workers that had loaded the model could answer alone while another still
    loaded it: its loading was timed. ``worker_pool(started=True)``, which ``run_model``
    uses, is given once every worker has run its initializer."""
    from bench_conformers import worker_pool

    with worker_pool(3, initializer=_mark_started, initargs=(str(tmp_path),), started=True):
        assert len(list(tmp_path.glob("started-*"))) == 3


def test_an_auto_pool_shows_the_rule_the_report_recorded(tmp_path, capsys):
    """A report of ``--pool auto`` (``pool`` None) was shown with today's ``auto`` rule, one
    the report never recorded (the rule has changed before). Now the rule it recorded
    (``pool_rule``, which a run records), else "rule not recorded"; merged per part where
    the parts differ."""
    from bench_conformers import markdown
    from molscore.generate import default_pool

    old = _part(["crystal"])                                  # before pool_rule
    assert "ETKDG pool auto (rule not recorded) (pick" in markdown(old)
    assert f"auto ({default_pool(1)} for n" not in markdown(old)
    recorded = _part(["coverage_hexane"], pool_rule="30 for n <= 5, 60 above")
    assert "ETKDG pool auto (30 for n <= 5, 60 above) (pick" in markdown(recorded)
    assert "ETKDG pool 25 (pick" in markdown(_part(["crystal"], pool=25, pool_rule="30 for n <= 5, 60 above"))
    paths = tmp_path / "cov.json", tmp_path / "cry.json"
    for path, report in zip(paths, (recorded, old)):
        path.write_text(json.dumps(report))
    merge_reports(list(paths), tmp_path / "merged")
    capsys.readouterr()
    assert ("ETKDG pool coverage_hexane: auto (30 for n <= 5, 60 above); crystal: auto (rule "
            "not recorded) (pick") in (tmp_path / "merged.md").read_text()


def test_each_coverage_set_states_its_reference_conformers_and_skipped_records(tmp_path):
    """The GEOM-DRUGS coverage set scored two of its 12 molecules against one reference
    conformer each (the other records of their ensembles are other molecules, which
    ``read_groups`` skips), and neither the JSON nor the markdown said so. Now each set records
    its reference conformers and the records of its file left out; older reports say
    "not recorded"."""
    from bench_conformers import markdown, reference_used
    from molscore.chem.metrics import read_groups

    records = []
    for smiles, ensemble, n, seed in (("CCOC(=O)c1ccccc1", "a", 2, 1), ("CCCCOc1ccccc1C(=O)N", "a", 1, 2),
                                      ("CCCCOc1ccccc1C(=O)N", "b", 2, 3)):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        params = AllChem.ETKDGv3()
        params.randomSeed = seed
        AllChem.EmbedMultipleConfs(mol, n, params)
        records += [(mol, i, smiles, ensemble) for i in range(n)]
    path = tmp_path / "ref.sdf"
    with Chem.SDWriter(str(path)) as writer:
        for mol, conf, smiles, ensemble in records:
            mol.SetProp("smiles", "CCOC(=O)c1ccccc1" if ensemble == "a" else smiles)
            mol.SetProp("ensemble", ensemble)
            writer.write(mol, confId=conf)
    groups = read_groups(path, "ensemble")
    inputs = [(key, group.mol, group) for key, group in groups.items()]
    ref = reference_used(path, groups, inputs, "coverage")
    assert ref == {"file": "ref.sdf", "conformers": 4,
                   "skipped_records": {"records": 5, "skipped": {"other_molecule": 1},
                                       "groups": {"a": {"kept": 2, "other_molecule": 1}}}}
    assert reference_used(path, groups, inputs, "crystal")["conformers"] == 2
    report = json.loads(json.dumps(_part(["coverage_hexane", "coverage_geom_drugs"])))
    report["results"]["coverage_geom_drugs"]["reference"] = json.loads(json.dumps(ref))
    md = markdown(report)
    assert ("- geom_drugs: 4 reference conformers of the 2 molecules; ref.sdf: 1 of 5 records "
            "skipped: 1 not the molecule of their group ('a': 1 of 3)\n") in md
    assert "- hexane: reference conformers not recorded, skipped records not recorded\n" in md


def test_molecules_generate_does_not_take_are_named_in_the_report(tmp_path):
    """The hexane set has 90 ensembles, of which 83 were scored: the 7 others (radicals written
    into the file's SMILES, e.g. a P=S as [P][S]) were passed over with a count on stderr only,
    so the report's "83 molecules" did not say why. They are recorded (``unsupported``) and
    the set's line names how many and the first reason."""
    from bench_conformers import _reference_text, prepare_inputs

    from molscore.chem.metrics import read_groups

    path = tmp_path / "ref.sdf"
    with Chem.SDWriter(str(path)) as writer:
        for smiles in ("CCO[P]([S])(Cl)OCC", "CCCCOc1ccccc1C(=O)N"):
            mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
            AllChem.EmbedMolecule(mol, randomSeed=3)
            mol.SetProp("smiles", smiles)
            writer.write(mol)
    unsupported: list = []
    inputs = prepare_inputs(read_groups(path, "smiles"), None, None, unsupported)
    assert [key for key, _, _ in inputs] == [Chem.CanonSmiles("CCCCOc1ccccc1C(=O)N")]
    assert len(unsupported) == 1 and "radical" in unsupported[0][1]
    result = {"molecules_both": 1, "unsupported": [{"key": k, "reason": r} for k, r in unsupported],
              "reference": {"file": "ref.sdf", "conformers": 1,
                            "skipped_records": {"records": 2, "skipped": {}, "groups": {}}}}
    text = _reference_text(result)
    assert text.endswith(f"; 1 molecule(s) of the file passed over as generate does not take them "
                         f"(e.g. {unsupported[0][0]!r}: {unsupported[0][1]})")
    del result["unsupported"]                                   # a report from before it
    assert "passed over" not in _reference_text(result)
