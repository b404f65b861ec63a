"""Conformer task: SDF loading, reserved filtering, CoM-free collate, model rebuild, training."""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
import torch
from rdkit import Chem

from molscore.chem.featurize import ATOM_FEAT_DIM, DEFAULT_FEATURISATION, meta_featurisation, mol_to_graph
from molscore.chem.task import CoordScaled, InMemoryConformers, build_model, build_task
from molscore.paths import resolve_data_path
from molscore.checkpoint import load_checkpoint_model
from molscore.data.reserved import inchikey_block
from molscore.spaces import PointSetSpace
from molscore.train import train

EXCERPT = Path(__file__).resolve().parents[1] / "../shared/data/conformers/geom_drugs_excerpt.sdf.gz"
TINY_NET = {"hidden_scalar": 8, "hidden_vector": 4, "num_layers": 1, "num_rbf": 8, "time_dim": 8}


# four small excerpt molecules whose records all pass the reader's checks
SMALL = ("S=C(NCc1ccc2c(c1)OCO2)NC1CC1", "CC[C@]1(C)Cc2c(C#N)c(N)n(N)c(=S)c2CO1",
         "O=C(Nc1ccccc1Oc1ccsc1C(=O)O)c1ccccc1", "C[C@H](C(=O)Nc1ccccc1F)N1CC[NH+](C)CC1")


@pytest.fixture(scope="module")
def small_sdf(tmp_path_factory) -> tuple[Path, list[str]]:
    """Three conformers each of the :data:`SMALL` molecules, as an SDF file."""
    keep: dict[str, list[Chem.Mol]] = {s: [] for s in SMALL}
    with gzip.open(EXCERPT, "rb") as fh:
        for mol in Chem.ForwardSDMolSupplier(fh, removeHs=False):
            if mol.GetProp("smiles") in keep:
                keep[mol.GetProp("smiles")].append(mol)
    path = tmp_path_factory.mktemp("sdf") / "small.sdf"
    with Chem.SDWriter(str(path)) as writer:
        for s in SMALL:
            for mol in keep[s][:3]:
                writer.write(mol)
    return path, list(SMALL)


def _cfg(sdf, **data) -> dict:
    return {"task": "conformers", "seed": 1,
            "data": {"sdf": str(sdf), "val_fraction": 0.25, **data},
            "model": {"backbone": "painn", "hparams": TINY_NET},
            "sde": {"name": "ve", "sigma_min": 0.02, "sigma_max": 10.0}}


def test_build_task_splits_molecules_and_collates_com_free(small_sdf):
    task = build_task(_cfg(small_sdf[0]))
    assert len(task.train_set) == 3 and len(task.val_set) == 1
    assert task.train_set.num_conformers == 9
    assert task.meta["task"] == "conformers" and task.meta["coord_scale"] == 1.0
    batch = task.collate([task.train_set[i] for i in range(3)])
    assert isinstance(batch.space, PointSetSpace) and batch.space.num_samples == 3
    assert batch.x.shape == (int(batch.cond.num_nodes), 3)
    torch.testing.assert_close(batch.space.mean(batch.x), torch.zeros(3, 3), atol=1e-5, rtol=0)
    assert batch.cond.atom_feat.shape[1] == ATOM_FEAT_DIM
    assert getattr(batch.cond, "pos", None) is None  # the network never sees clean coordinates
    score = task.model(batch.x, torch.full((3,), 0.5), batch.space, batch.cond)
    assert score.shape == batch.x.shape and torch.isfinite(score).all()


def test_conformer_choice_modes(small_sdf):
    task = build_task(_cfg(small_sdf[0], conformers="first", val_fraction=0))
    ds = task.train_set
    assert task.val_set is None
    assert isinstance(ds, InMemoryConformers)
    torch.testing.assert_close(ds[0].pos, ds[0].pos)  # "first" is deterministic
    ds.mode = "random"
    torch.manual_seed(0)
    drawn = {tuple(ds[0].pos[0].tolist()) for _ in range(30)}
    assert len(drawn) == 3  # all three conformers of the molecule come up
    ds.mode = "all"
    assert len(ds) == 12
    with pytest.raises(ValueError, match="data.conformers"):
        build_task(_cfg(small_sdf[0], conformers="best"))


def test_reserved_molecules_are_excluded(small_sdf, tmp_path):
    path, smiles = small_sdf
    reserved = tmp_path / "reserved.txt"
    reserved.write_text(inchikey_block(Chem.MolFromSmiles(smiles[0])) + "\n")
    task = build_task(_cfg(path, reserved=str(reserved), val_fraction=0))
    assert len(task.train_set) == 3 and task.meta["data"]["reserved_or_bad_dropped"] == 1
    kept = {g.smiles for g in task.train_set.graphs}
    assert Chem.CanonSmiles(smiles[0]) not in {Chem.CanonSmiles(s) for s in kept}


def test_sdf_data_leaves_out_tautomers_of_reserved_molecules(small_sdf, tmp_path):
    """``data.sdf`` is read and checked at each start like a build: a molecule whose tautomer
    is reserved (the aminopyridinethione of SMALL[1] and its mercapto-imine form, which
    standard InChI does not merge) was trained on when only its own block was compared."""
    from rdkit.Chem.MolStandardize import rdMolStandardize

    path, smiles = small_sdf
    own = inchikey_block(Chem.MolFromSmiles(smiles[1]))
    other = {inchikey_block(t) for t in rdMolStandardize.TautomerEnumerator().Enumerate(
        Chem.MolFromSmiles(smiles[1]))} - {own}
    assert len(other) == 1
    reserved = tmp_path / "reserved.txt"
    reserved.write_text(other.pop() + "\n")
    task = build_task(_cfg(path, reserved=str(reserved), val_fraction=0))
    assert len(task.train_set) == 3 and task.meta["data"]["reserved_or_bad_dropped"] == 1
    kept = {Chem.CanonSmiles(g.smiles) for g in task.train_set.graphs}
    assert Chem.CanonSmiles(smiles[1]) not in kept


def test_build_model_from_meta_matches(small_sdf):
    task = build_task(_cfg(small_sdf[0]))
    model = build_model(task.meta)
    model.load_state_dict(task.model.state_dict())
    batch = task.collate([task.train_set[0], task.train_set[1]])
    t = torch.tensor([0.3, 0.7])
    torch.testing.assert_close(model(batch.x, t, batch.space, batch.cond),
                               task.model(batch.x, t, batch.space, batch.cond))


def test_vp_uses_coord_scale(small_sdf):
    cfg = _cfg(small_sdf[0])
    cfg["sde"] = {"name": "vp"}
    task = build_task(cfg)
    assert task.meta["coord_scale"] == 2.5
    assert isinstance(task.model.net, CoordScaled) and task.model.net.coord_scale == 2.5
    item = task.train_set[0]
    batch = task.collate([item])
    torch.testing.assert_close(batch.x * 2.5, item.pos, atol=1e-5, rtol=0)


def test_train_and_reload_checkpoint(small_sdf, tmp_path):
    cfg = {**_cfg(small_sdf[0]), "steps": 3, "batch_size": 2, "val_every": 3, "log_every": 1}
    summary = train(cfg, tmp_path, device="cpu", progress=False)
    assert summary["steps"] == 3 and summary["val_loss"] is not None
    model, meta = load_checkpoint_model(tmp_path / "checkpoint.pt")
    assert meta["backbone"]["name"] == "painn" and meta["sde"]["sigma_max"] == 10.0


def test_bad_sections_raise(small_sdf):
    with pytest.raises(ValueError, match="exactly one of"):
        build_task({"task": "conformers", "data": {}})
    with pytest.raises(ValueError, match="unknown backbone"):
        build_task({**_cfg(small_sdf[0]), "model": {"backbone": "gcn"}})
    with pytest.raises(FileNotFoundError, match="not found"):
        build_task(_cfg("no/such/file.sdf"))
    with pytest.raises(ValueError, match="sde 've' takes no option 'sigma'; choose from sigma_min"):
        build_task({**_cfg(small_sdf[0]), "sde": {"name": "ve", "sigma": 3.0}})
    with pytest.raises(ValueError, match="sde.sigma_max must be a finite number, got True"):
        build_task({**_cfg(small_sdf[0]), "sde": {"name": "ve", "sigma_max": True}})
    with pytest.raises(ValueError, match="sde: need 0 < sigma_min < sigma_max"):
        build_task({**_cfg(small_sdf[0]), "sde": {"name": "ve", "sigma_max": "1e-3"}})


@pytest.mark.parametrize("data, model, message", [
    # a negative fraction sliced the split from the other end: 2 of 12 molecules trained on
    ({"val_fraction": -0.25}, {}, "data.val_fraction must be in [0, 1), got -0.25"),
    ({"val_fraction": "a tenth"}, {}, "data.val_fraction must be a number, got 'a tenth'"),
    ({"max_molecules": "3"}, {}, "data.max_molecules must be an integer >= 1, got '3'"),
    ({"split_seed": -1}, {}, "data.split_seed must be an integer >= 0, got -1"),
    ({"val_fracton": 0.5}, {}, "conformers task: data (sdf) has no key 'val_fracton'; choose from "
                               "sdf, conformers, val_fraction, split_seed, max_molecules, "
                               "max_heavy_atoms, reserved"),
    ({"processed": "runs/data/ccd", "val_fraction": 0.5}, {},
     "conformers task: data (processed) has no key 'val_fraction'; choose from processed, "
     "conformers, train_split, val_split, reserved"),
    ({"processed": [{"path": "runs/data/ccd", "repeats": 4}]}, {},
     "data.processed entries must be a path or {path: ..., repeat: k >= 1}, got "
     "{'path': 'runs/data/ccd', 'repeats': 4}"),
    ({}, {"hparam": TINY_NET}, "conformers task: model has no key 'hparam'; choose from backbone, "
                               "hparams, parameterisation, sigma_data, coord_scale, featurisation"),
    ({}, {"featurisation": 3}, "model.featurisation: unknown featurisation version 3 (this molscore "
                               "knows 1 and 2)"),
    ({}, {"coord_scale": "2.5 A"}, "model.coord_scale must be a number, got '2.5 A'"),
    ({}, {"sigma_data": 0}, "model.sigma_data must be positive, got 0"),
    # each was a TypeError traceback, or (reserved: [], hparams: 0, val_split: 0, repeat: true)
    # read as no list, the default network, no validation and repeat 1 without a word
    ({"sdf": 5}, {}, "data.sdf must be a file path, got 5"),
    ({"reserved": []}, {}, "data.reserved must be a file path, got []"),
    ({"processed": 2.5}, {}, "data.processed entries must be a path or {path: ..., repeat: k >= 1}, "
                             "got 2.5"),
    ({"processed": [{"path": "runs/data/ccd", "repeat": True}]}, {},
     "data.processed entries must be a path or {path: ..., repeat: k >= 1}, got "
     "{'path': 'runs/data/ccd', 'repeat': True}"),
    ({"processed": "runs/data/ccd", "val_split": 0}, {}, "data.val_split must be a split name, got 0"),
    ({"processed": "runs/data/ccd", "train_split": ["train"]}, {},
     "data.train_split must be a split name, got ['train']"),
    ({}, {"hparams": 0}, "model.hparams must be a mapping, got 0"),
    ({}, {"backbone": ["painn"]}, "unknown backbone ['painn']; choose from painn, e3nn"),
    # hidden size 0 trained a network of no channels, -1 and rbf_max 0 were tracebacks, and
    # sh_lmax 0 made an e3nn network whose output is zero whatever its input
    ({}, {"hparams": {**TINY_NET, "hidden_scalar": 0}},
     "backbone 'painn': hidden_scalar must be an integer >= 1, got 0"),
    ({}, {"hparams": {**TINY_NET, "num_rbf": -1}}, "backbone 'painn': num_rbf must be an integer >= 1, got -1"),
    ({}, {"hparams": {**TINY_NET, "rbf_max": 0}}, "backbone 'painn': rbf_max must be a positive number, got 0"),
    ({}, {"hparams": {**TINY_NET, "cutoff": "5"}}, "backbone 'painn': cutoff must be a number >= 0, got '5'"),
    ({}, {"backbone": "e3nn", "hparams": {"sh_lmax": 0}},
     "backbone 'e3nn': sh_lmax must be an integer >= 1, got 0"),
])
def test_bad_data_and_model_keys_and_values_are_named(small_sdf, data, model, message):
    """A key the data or model section does not take (a typo, an sdf-only key with processed
    data, ``repeats`` for ``repeat``) was ignored silently, and a bad value failed later, as a
    traceback or with a message that did not name it; each is now a one-line ValueError."""
    cfg = _cfg(small_sdf[0])
    cfg["data"].update(data)
    if "processed" in data:
        cfg["data"] = data
    cfg["model"] = {**cfg["model"], **model}
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_task(cfg)


def test_null_split_seed_and_sigma_data_are_the_defaults(small_sdf):
    """``split_seed: null`` and ``sigma_data: null`` passed the checks and were TypeError
    tracebacks (``int(None)``, ``float(None)``); they are the defaults, 0 and 1, as
    ``max_molecules: null`` is no limit."""
    cfg = _cfg(small_sdf[0], split_seed=None)
    cfg["model"]["sigma_data"] = None
    task, default = build_task(cfg), build_task(_cfg(small_sdf[0], split_seed=0))
    assert task.meta["sigma_data"] == 1.0
    assert [g.smiles for g in task.val_set.graphs] == [g.smiles for g in default.val_set.graphs]


def test_a_small_positive_val_fraction_holds_out_one_molecule(small_sdf):
    """0.1 of the 4 molecules rounded to none: the run had no validation, without a word."""
    task = build_task(_cfg(small_sdf[0], val_fraction=0.1))
    assert len(task.train_set) == 3 and len(task.val_set) == 1
    assert build_task(_cfg(small_sdf[0], val_fraction=0)).val_set is None


def test_cli_bad_data_value_is_one_line_exit_2(small_sdf, tmp_path, capsys):
    """data.max_molecules: abc was a TypeError traceback from the SDF reader (exit status 1)."""
    import yaml

    from molscore.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**_cfg(small_sdf[0], max_molecules="abc"), "steps": 1}))
    assert main(["train", "-c", str(config), "-o", str(tmp_path / "o"), "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    assert err == "molscore train: error: data.max_molecules must be an integer >= 1, got 'abc'\n"


def test_resolve_data_path_tries_repo_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    found = resolve_data_path("../shared/data/conformers/geom_drugs_excerpt.sdf.gz")
    assert found == EXCERPT.resolve()


def test_processed_dataset_source(small_sdf, tmp_path):
    from molscore.data.conformers import read_sdf
    from molscore.data.processed import write_dataset

    write_dataset(read_sdf(small_sdf[0]), tmp_path / "proc", fractions=(0.5, 0.5, 0.0))
    cfg = _cfg(small_sdf[0])
    cfg["data"] = {"processed": str(tmp_path / "proc"), "conformers": "all"}
    task = build_task(cfg)
    n_train = len(task.train_set)
    assert n_train % 3 == 0 and n_train + len(task.val_set) == 12  # 3 conformers per molecule
    item = task.train_set[0]
    torch.testing.assert_close(item.pos.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    batch = task.collate([task.train_set[i] for i in range(2)])
    assert batch.space.num_samples == 2
    cfg["data"]["conformers"] = "first"
    with pytest.raises(ValueError, match="random, boltzmann or all"):
        build_task(cfg)


@pytest.mark.parametrize("old_index", [False, True])
def test_processed_data_leaves_reserved_molecules_out(small_sdf, tmp_path, old_index):
    """A processed dataset that holds a reserved molecule (written with another list, or by
    ``write_dataset`` before it dropped them: no ``inchikey`` in its index) trains without it."""

    from molscore.data.conformers import read_sdf
    from molscore.data.processed import write_dataset

    path, smiles = small_sdf
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("# no molecule reserved\n")
    write_dataset(read_sdf(path), tmp_path / "proc", fractions=(0.5, 0.5, 0.0), reserved_path=nothing)
    if old_index:
        index_path = tmp_path / "proc" / "index.json"
        index = json.loads(index_path.read_text())
        for entry in index["molecules"]:
            del entry["inchikey"]
        index_path.write_text(json.dumps(index))
    reserved = tmp_path / "reserved.txt"
    reserved.write_text(inchikey_block(Chem.MolFromSmiles(smiles[1])) + "\n")
    cfg = _cfg(path)
    cfg["data"] = {"processed": str(tmp_path / "proc"), "conformers": "all", "reserved": str(reserved)}
    task = build_task(cfg)
    seen = {task.train_set[i].smiles for i in range(len(task.train_set))}
    seen |= {task.val_set[i].smiles for i in range(len(task.val_set))}
    assert len(seen) == 3 and Chem.CanonSmiles(smiles[1]) not in {Chem.CanonSmiles(s) for s in seen}
    assert task.meta["data"]["reserved_dropped"] == 1
    cfg["data"]["reserved"] = str(nothing)
    assert "reserved_dropped" not in build_task(cfg).meta["data"]


def _store(writer, molecules: dict[str, str]) -> None:
    """Embed (ETKDG, seed 3) and add each SMILES of ``molecules`` (name -> SMILES) to the
    processed-dataset ``writer``, then finalise it, all molecules in the training split."""
    from rdkit.Chem import AllChem

    from molscore.chem.featurize import prepare_mol
    from molscore.data.conformers import ConformerSet
    from molscore.data.processed import encode_record

    for name, smi in molecules.items():
        mol = prepare_mol(smi)
        AllChem.EmbedMolecule(mol, randomSeed=3)
        writer.add(encode_record(ConformerSet(smiles=smi, mol=mol, weights=None, name=name),
                                 featurisation=writer.featurisation))
    writer.finalize((1.0, 0.0, 0.0))


def test_a_processed_dataset_built_under_another_reserved_rule_is_not_trained_on(tmp_path, capsys):
    """Training compares a processed molecule's stored InChIKey block alone, trusting the
    builder with the tautomers and charge forms of reserved molecules; a dataset written by a
    molscore that compared the block alone (its index records no ``reserved_match``), or under
    another rule, was trained on as it was: acetazolamide, the neutral form of a reserved anion
    (CCD AZM), was trained on. Such a dataset is refused, in one line with exit status 2."""

    import yaml

    from molscore.cli import main
    from molscore.data.processed import DatasetWriter
    from molscore.data.reserved import MATCH_RULE, build_exclusion_reason, reserved_keys

    acetazolamide = "CC(=O)Nc1nnc(S(N)(=O)=O)s1"
    _store(DatasetWriter(tmp_path / "old"),                 # as an older molscore wrote it
           {smi: smi for smi in (acetazolamide, "CCCCCCCCCCO")})
    assert build_exclusion_reason(Chem.MolFromSmiles(acetazolamide), reserved_keys()) is not None
    cfg = {**_cfg("unused"), "data": {"processed": str(tmp_path / "old"), "conformers": "all"}}
    with pytest.raises(ValueError, match="was built under another reserved-molecule rule: reserved_match None"):
        build_task(cfg)
    index_path = tmp_path / "old" / "index.json"
    index = json.loads(index_path.read_text())
    index["meta"]["reserved_match"] = MATCH_RULE.replace(", that form's tautomers", "")  # another rule
    index_path.write_text(json.dumps(index))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**cfg, "steps": 1}))
    assert main(["train", "-c", str(config), "-o", str(tmp_path / "o"), "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was built under another reserved-molecule rule" in err
    index["meta"]["reserved_match"] = MATCH_RULE    # the rule recorded: the stored blocks are trusted
    index_path.write_text(json.dumps(index))
    assert [m["name"] for m in index["molecules"]] == [acetazolamide, "CCCCCCCCCCO"]
    assert build_task(cfg).train_set.base.smiles == [acetazolamide, "CCCCCCCCCCO"]


def test_an_index_edited_by_hand_has_its_smiles_compared(tmp_path, capsys):
    """Training compared each index entry's stored InChIKey block alone: an entry whose SMILES
    was changed by hand to a reserved molecule's, its old block kept, trained on without a
    word. The writer now records a digest of the entries (``molecules_sha256``); an index that
    does not match it, or records none (an older molscore), has the block of each stored
    SMILES compared too, and training says so; an index as written is trusted."""
    from molscore.data.processed import ConformerDataset, build_writer
    from molscore.data.reserved import reserved_keys

    _store(build_writer(tmp_path / "ds"), {"decanol": "CCCCCCCCCCO", "decylamine": "CCCCCCCCCCN"})
    cfg = {**_cfg("unused"), "data": {"processed": str(tmp_path / "ds"), "conformers": "all",
                                      "val_split": None}}
    capsys.readouterr()
    task = build_task(cfg)
    assert "digest" not in capsys.readouterr().err and "index_unverified" not in task.meta["data"]
    assert task.train_set.base.smiles == ["CCCCCCCCCCO", "CCCCCCCCCCN"]
    index_path = tmp_path / "ds" / "index.json"
    index = json.loads(index_path.read_text())
    index["molecules"][0]["smiles"] = "O=C(O)[C@@H](O)c1ccccc1"     # mandelic acid: reserved
    index_path.write_text(json.dumps(index))
    task = build_task(cfg)
    assert task.train_set.base.smiles == ["CCCCCCCCCCN"] and task.meta["data"]["index_unverified"]
    err = capsys.readouterr().err
    assert (f"{tmp_path / 'ds'}: its index.json records no digest of its molecules, or one they do "
            "not match") in err and "left out 1 reserved molecule(s) the dataset holds (e.g. 'decanol')" in err
    index["molecules"][0]["smiles"] = "CCCCCCCCCCO"                  # as written, digest removed
    del index["molecules_sha256"]
    index_path.write_text(json.dumps(index))
    kept = ConformerDataset(tmp_path / "ds", "all", reserved=reserved_keys())
    assert kept.index_unverified and kept.smiles == ["CCCCCCCCCCO", "CCCCCCCCCCN"]
    assert not ConformerDataset(tmp_path / "ds", "all").index_unverified  # no reserved list: not read


def test_an_extra_reserved_list_the_dataset_was_not_built_with_is_named(tmp_path, capsys):
    """``data.reserved`` given at training leaves its molecules out by their stored InChIKey
    block only; the builder compares tautomers and charge forms too, but only of the list it
    was given (recorded in the index). A list other than that one, or one where the build had
    none, is named on stderr (it was silent: a tautomer of such a list's molecule trained on
    without a word) and recorded in the data summary; the build's own list is not."""
    from molscore.data.processed import build_writer
    from molscore.data.reserved import list_identity

    extra = tmp_path / "extra.txt"
    extra.write_text("VYFYYTLLBUKUHU\n")                       # dopamine's block
    for name, built_with in (("none", None), ("same", extra)):
        _store(build_writer(tmp_path / name, meta={"reserved": list_identity(built_with)}),
               {smi: smi for smi in ("CCCCCCCCCCO", "CCCCCCCCCCN")})
    capsys.readouterr()
    cfg = {**_cfg("unused"), "data": {"processed": [str(tmp_path / "none"), str(tmp_path / "same")],
                                      "conformers": "all", "reserved": str(extra)}}
    info = build_task(cfg).meta["data"]
    err = capsys.readouterr().err
    assert err.count("extra reserved list") == 1
    assert (f"{tmp_path / 'none'}: the molecules of the extra reserved list {list_identity(extra)} "
            f"(built with none) are left out by their own InChIKey block only, not their tautomers "
            f"and charge forms") in err
    assert [s.get("reserved_forms_unchecked", False) for s in info["sources"]] == [True, False]
    build_task({**cfg, "data": {**cfg["data"], "reserved": None}})  # no extra list: nothing said
    assert "extra reserved list" not in capsys.readouterr().err


def test_a_dataset_built_under_another_version_of_the_shipped_list_is_named(tmp_path, capsys, monkeypatch):
    """Builds record the shipped reserved list's version (``reserved_shipped``). Trained on after
    the list changed (molecules added to it), the stored blocks are checked against the new list
    but the new molecules' tautomers and charge forms were never compared: that was silent. Now
    such a dataset, or one whose build recorded no version, is named on stderr and in the data
    summary; one built under the current list is not."""
    import molscore.data.reserved as reserved_module
    from molscore.data.processed import build_writer

    def build(name):
        _store(build_writer(tmp_path / name), {"decanol": "CCCCCCCCCCO"})
        return json.loads((tmp_path / name / "index.json").read_text())

    old = build("old")
    assert old["meta"]["reserved_shipped"] == reserved_module.shipped_identity()
    grown = tmp_path / "reserved_inchikeys.txt"
    grown.write_text(reserved_module.DEFAULT_RESERVED_PATH.read_text() + "VYFYYTLLBUKUHU\n")
    monkeypatch.setattr(reserved_module, "DEFAULT_RESERVED_PATH", grown)
    new = build("new")["meta"]["reserved_shipped"]
    assert new != old["meta"]["reserved_shipped"] and new == reserved_module.list_identity(grown)
    index_path = tmp_path / "unrecorded" / "index.json"
    build("unrecorded")
    unrecorded = json.loads(index_path.read_text())
    del unrecorded["meta"]["reserved_shipped"]
    index_path.write_text(json.dumps(unrecorded))
    capsys.readouterr()
    cfg = {**_cfg("unused"), "data": {"processed": [str(tmp_path / n) for n in ("old", "new", "unrecorded")],
                                      "conformers": "all", "val_split": None}}
    info = build_task(cfg).meta["data"]
    err = capsys.readouterr().err
    assert (f"{tmp_path / 'old'}: the molecules of the shipped reserved list {new} (built with "
            f"{old['meta']['reserved_shipped']}) are left out by their own InChIKey block only") in err
    assert f"{tmp_path / 'unrecorded'}: the molecules of the shipped reserved list {new} (built with " \
           f"no version recorded)" in err
    assert err.count("shipped reserved list") == 2
    assert [s.get("reserved_forms_unchecked", False) for s in info["sources"]] == [True, False, True]


def test_mixed_processed_datasets_validate_on_no_molecule_either_trains_on(small_sdf, tmp_path):
    """Two datasets of the same molecules split with other seeds: each one's validation split
    holds molecules the other trains on; validation leaves them out (a model would otherwise
    be scored on molecules it was trained on) and the run's meta counts them."""
    from molscore.data.conformers import read_sdf
    from molscore.data.processed import ConformerDataset, write_dataset

    write_dataset(read_sdf(small_sdf[0]), tmp_path / "a", fractions=(0.5, 0.5, 0.0), seed=0)
    seed = next(s for s in range(1, 50)
                if set(write_dataset(read_sdf(small_sdf[0]), tmp_path / f"b{s}", fractions=(0.5, 0.5, 0.0),
                                     seed=s)["splits"]["train"]) != set(ConformerDataset(tmp_path / "a").mol_ids))
    cfg = _cfg(small_sdf[0])
    cfg["data"] = {"processed": [str(tmp_path / "a"), str(tmp_path / f"b{seed}")], "conformers": "random"}
    task = build_task(cfg)
    trained = {task.train_set[i].smiles for i in range(len(task.train_set))}
    validated = {task.val_set[i].smiles for i in range(len(task.val_set))} if task.val_set else set()
    assert validated.isdisjoint(trained)
    alone = [ConformerDataset(tmp_path / name, "val") for name in ("a", f"b{seed}")]
    overlap = sum(len(set(ds.smiles) & trained) for ds in alone)
    assert overlap > 0
    assert sum(src.get("val_trained_dropped", 0) for src in task.meta["data"]["sources"]) == overlap


def test_a_molecule_in_the_validation_splits_of_two_mixed_datasets_is_scored_once(small_sdf, tmp_path):
    """Two datasets of the same molecules and split (an ETKDG and a reference set of one list):
    their validation molecules were scored twice each; now validation reads them from the
    first dataset only, so the run's validation loss is that of the first dataset alone."""
    from molscore.data.conformers import read_sdf
    from molscore.data.processed import ConformerDataset, write_dataset
    from molscore.train import Trainer

    for name in ("a", "b"):
        write_dataset(read_sdf(small_sdf[0]), tmp_path / name, fractions=(0.5, 0.5, 0.0), seed=0)
    first = ConformerDataset(tmp_path / "a", "val")
    cfg = {**_cfg(small_sdf[0]), "steps": 1, "batch_size": 8}
    runs = {}
    for key, processed in (("alone", str(tmp_path / "a")), ("mixed", [str(tmp_path / "a"), str(tmp_path / "b")])):
        cfg["data"] = {"processed": processed, "conformers": "random"}
        runs[key] = Trainer(cfg, tmp_path / key, device="cpu", progress=False)
    mixed = runs["mixed"].task
    validated = [mixed.val_set[i].smiles for i in range(len(mixed.val_set))]
    assert sorted(validated) == sorted(first.smiles) and len(first) == 2
    assert [src.get("val_duplicates_dropped") for src in mixed.meta["data"]["sources"]] == [None, 2]
    assert runs["mixed"].validate() == runs["alone"].validate()


def test_an_interrupt_raised_by_code_resumes_bit_for_bit_from_the_last_periodic_checkpoint(small_sdf, tmp_path):
    """A KeyboardInterrupt not from a signal, raised as step 5 starts, came after its batch drew
    its conformers from torch's RNG; the trainer saved step 4 with that RNG state, so the
    resumed run drew other conformers from then on. Only a signal's stop (between steps) is
    saved now; this one resumes from step 3 like a crash, bit for bit."""
    from molscore.train import Trainer

    cfg = {**_cfg(small_sdf[0]), "steps": 6, "batch_size": 2, "ckpt_every": 3, "val_every": 3,
           "log_every": 1}
    straight = Trainer(cfg, tmp_path / "straight", device="cpu", progress=False)
    straight.fit()
    split = Trainer(cfg, tmp_path / "split", device="cpu", progress=False)
    step = split.train_step

    def interrupted_step(batch):
        if split.step == 4:
            raise KeyboardInterrupt
        return step(batch)

    split.train_step = interrupted_step
    with pytest.raises(KeyboardInterrupt):
        split.fit()
    resumed = train(cfg, tmp_path / "split", device="cpu", progress=False)
    a, b = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=True) for name in ("straight", "split"))
    for part in ("model", "optimizer"):
        assert a[part].keys() == b[part].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"]["shadow"][k], b["ema"]["shadow"][k]) for k in a["ema"]["shadow"])
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    assert resumed["resumed_from"] == 3


def test_processed_list_concatenates_with_repeats(small_sdf, tmp_path):
    from molscore.data.conformers import read_sdf
    from molscore.data.processed import write_dataset

    write_dataset(read_sdf(small_sdf[0]), tmp_path / "a", fractions=(0.5, 0.5, 0.0))
    write_dataset(read_sdf(small_sdf[0]), tmp_path / "b", fractions=(0.5, 0.5, 0.0))
    cfg = _cfg(small_sdf[0])
    cfg["data"] = {"processed": str(tmp_path / "a"), "conformers": "random"}
    one = build_task(cfg)
    cfg["data"]["processed"] = [str(tmp_path / "a"), {"path": str(tmp_path / "b"), "repeat": 3}]
    both = build_task(cfg)
    assert len(both.train_set) == 4 * len(one.train_set)
    assert len(both.val_set) == len(one.val_set)   # b's validation molecules are a's
    assert [s["repeat"] for s in both.meta["data"]["sources"]] == [1, 3]
    torch.testing.assert_close(both.train_set[len(both.train_set) - 1].pos.mean(0), torch.zeros(3),
                               atol=1e-5, rtol=0)
    for bad in ([], [{"path": str(tmp_path / "a"), "repeat": 0}], [{"repeat": 2}]):
        cfg["data"]["processed"] = bad
        with pytest.raises(ValueError, match="data.processed"):
            build_task(cfg)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["smoke.yaml", "conformers_ccd.yaml", "conformers_etkdg.yaml",
                                  "conformers_shipped.yaml", "conformers_finetune.yaml",
                                  "conformers_cpu_continue.yaml", "conformers_gpu.yaml"])
def test_shipped_configs_resolve_and_build_their_networks(name):
    import yaml

    from molscore.chem.featurize import EDGE_FEAT_DIM
    from molscore.models.equivariant import build_backbone
    from molscore.sde import make_sde
    from molscore.train import resolve_config

    cfg = resolve_config(yaml.safe_load((CONFIGS / name).read_text()))
    assert cfg["task"] == "conformers"
    assert cfg["model"].get("featurisation", DEFAULT_FEATURISATION) == 2     # new runs: version 2
    build_backbone(cfg["model"]["backbone"], ATOM_FEAT_DIM, EDGE_FEAT_DIM, **cfg["model"]["hparams"])
    assert make_sde(**cfg["sde"]).name == "ve"


def test_smoke_config_trains_from_the_shared_excerpt(tmp_path, monkeypatch):
    from molscore.cli import main

    monkeypatch.chdir(tmp_path)  # the ../shared path must resolve against the repo root
    assert main(["train", "-c", str(CONFIGS / "smoke.yaml"), "-o", "run", "--steps", "2",
                 "--device", "cpu", "-q"]) == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["meta"]["data"]["molecules"] == 12


def test_sdf_split_keeps_one_molecule_under_two_smiles_on_one_side(tmp_path):
    """Records of one molecule whose ``smiles`` properties are spelt differently formed several
    SDF groups, which the split drew apart (ethanol in both sets for some seeds); they are one
    group now (canonical SMILES compared), on one side of the split."""
    from rdkit.Chem import AllChem

    path = tmp_path / "dup.sdf"
    spellings = ["CCO", "OCC", "C(C)O", "CCN", "CCCl", "CC(C)O", "CCS", "CC#N"]
    with Chem.SDWriter(str(path)) as writer:
        for k, smi in enumerate(spellings):
            mol = Chem.AddHs(Chem.MolFromSmiles(smi))
            assert AllChem.EmbedMolecule(mol, randomSeed=10 + k) == 0
            mol.SetProp("smiles", smi)
            writer.write(mol)
    for seed in range(12):
        task = build_task(_cfg(path, val_fraction=0.4, split_seed=seed))
        train_smiles = [g.smiles for g in task.train_set.graphs]
        val_smiles = [g.smiles for g in task.val_set.graphs]
        assert not set(train_smiles) & set(val_smiles), seed
        assert sorted(train_smiles + val_smiles).count("CCO") == 1
        assert len(set(val_smiles)) == 2      # 0.4 of the 6 molecules


def test_a_model_of_other_feature_sizes_is_refused_when_loaded(small_sdf, tmp_path):
    """A model file whose backbone reads another featuriser's node features: its weights fit
    its meta, so it loaded, and generation failed on every molecule with a matrix-shape
    error; now loading names the sizes."""
    from molscore.checkpoint import CHECKPOINT_FORMAT, save_atomic
    from molscore.models.equivariant import build_backbone

    meta = build_task(_cfg(small_sdf[0])).meta
    meta["backbone"] = {**meta["backbone"], "atom_dim": ATOM_FEAT_DIM + 3}
    hparams = {k: v for k, v in meta["backbone"].items() if k not in ("name", "atom_dim", "edge_dim")}
    net = build_backbone("painn", ATOM_FEAT_DIM + 3, meta["backbone"]["edge_dim"], **hparams)
    weights = {f"net.net.{k}": v for k, v in net.state_dict().items()}
    path = save_atomic({"format": CHECKPOINT_FORMAT, "model": weights, "meta": meta}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=f"cannot build the model its meta describes \\(ValueError: the "
                                         f"model reads features of other sizes \\(atom {ATOM_FEAT_DIM + 3}, "
                                         f"edge 18; this featuriser: {ATOM_FEAT_DIM}, 18\\)\\)"):
        load_checkpoint_model(path)


def _tiny_model_file(path: Path, small_sdf, **meta) -> Path:
    """A model file of an untrained tiny conformer model, its meta updated with ``meta``
    (a value None removes the key)."""
    from molscore.checkpoint import CHECKPOINT_FORMAT, save_atomic

    task = build_task(_cfg(small_sdf[0]))
    new = {k: v for k, v in {**task.meta, **meta}.items() if v is not None}
    return save_atomic({"format": CHECKPOINT_FORMAT, "model": task.model.state_dict(), "meta": new}, path)


def test_new_runs_read_version_2_and_record_it(small_sdf):
    """The featurisation of a run's graphs is in its meta; version 2 unless the config says
    otherwise, and the two versions differ only in the stereo features."""
    v2 = build_task(_cfg(small_sdf[0]))
    cfg = _cfg(small_sdf[0])
    cfg["model"]["featurisation"] = 1
    v1 = build_task(cfg)
    assert v2.meta["featurisation"] == 2 and v1.meta["featurisation"] == 1
    tag, rank = slice(ATOM_FEAT_DIM - 4, ATOM_FEAT_DIM), slice(14, 18)
    differ = 0
    for a, b in zip(v1.train_set.graphs + v1.val_set.graphs, v2.train_set.graphs + v2.val_set.graphs):
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.atom_feat[:, :tag.start], b.atom_feat[:, :tag.start])
        assert torch.equal(a.edge_attr[:, :rank.start], b.edge_attr[:, :rank.start])
        differ += not torch.equal(a.atom_feat, b.atom_feat)
    assert differ == 2                                    # the two molecules with a stereocentre


def test_a_model_meta_without_featurisation_is_version_1(small_sdf, tmp_path, monkeypatch):
    """Model files and checkpoints written before there were versions (the shipped model's)
    read version 1 features, in generation too; a version this molscore does not know is
    refused in one line."""
    import molscore.generate as gen_module
    from molscore.generate import ConformerGenerator

    old = _tiny_model_file(tmp_path / "old.pt", small_sdf, featurisation=None)
    new = _tiny_model_file(tmp_path / "new.pt", small_sdf)
    assert meta_featurisation(load_checkpoint_model(old)[1]) == 1
    seen = []

    def graph(mol, *args, featurisation):
        seen.append(featurisation)
        return mol_to_graph(mol, *args, featurisation=featurisation)

    monkeypatch.setattr(gen_module, "mol_to_graph", graph)
    for path, version in ((old, 1), (new, 2)):
        gen = ConformerGenerator(path, device="cpu", n=1, init="prior", steps=2, max_retries=0)
        assert gen.featurisation == version
        gen.generate("C[C@H](N)O")
        assert seen[-1] == version
    bad = _tiny_model_file(tmp_path / "bad.pt", small_sdf, featurisation=3)
    with pytest.raises(ValueError, match=f"^{re.escape(str(bad))}: cannot build the model its meta describes "
                                         r"\(ValueError: unknown featurisation version 3 \(this molscore "
                                         r"knows 1 and 2\)\)$"):
        load_checkpoint_model(bad)


def test_a_resumed_run_keeps_its_featurisation(small_sdf, tmp_path, monkeypatch):
    """A run from before there were versions (no featurisation in its checkpoint's meta or
    config) resumes reading version 1 features, not the default of new runs; a run begun
    under one default keeps its version when the default changes; a config that asks for
    another version than the checkpoint's is refused."""
    import molscore.chem.task as task_module
    from molscore.tasks import ConfigError
    from molscore.train import Trainer

    cfg = {**_cfg(small_sdf[0]), "steps": 2, "batch_size": 2, "val_every": 2, "log_every": 1}
    v1_cfg = {**cfg, "model": {**cfg["model"], "featurisation": 1}}
    train(v1_cfg, tmp_path / "old", device="cpu", progress=False)
    ckpt = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)
    del ckpt["meta"]["featurisation"], ckpt["config"]["model"]["featurisation"]   # as written before
    torch.save(ckpt, tmp_path / "old" / "checkpoint.pt")
    resumed = Trainer({**cfg, "steps": 3}, tmp_path / "old", device="cpu", progress=False)
    assert resumed.meta["featurisation"] == 1 and resumed.cfg["model"]["featurisation"] == 1
    v1_graphs = build_task(v1_cfg).train_set.graphs
    assert all(torch.equal(a.atom_feat, b.atom_feat) and torch.equal(a.edge_attr, b.edge_attr)
               for a, b in zip(resumed.task.train_set.graphs, v1_graphs, strict=True))
    assert resumed.fit()["steps"] == 3
    assert torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)["meta"]["featurisation"] == 1
    with pytest.raises(ConfigError, match=r"was trained with another config \(model.featurisation: 1 -> 2\)"):
        Trainer({**cfg, "steps": 4, "model": {**cfg["model"], "featurisation": 2}}, tmp_path / "old",
                device="cpu", progress=False)

    train(cfg, tmp_path / "new", device="cpu", progress=False)                 # the default: 2
    monkeypatch.setattr(task_module, "DEFAULT_FEATURISATION", 1)                # another default
    assert Trainer({**cfg, "steps": 3}, tmp_path / "new", device="cpu", progress=False).meta["featurisation"] == 2
    assert build_task(cfg).meta["featurisation"] == 1


def test_weights_of_another_featurisation_start_a_run_as_a_warm_start(small_sdf, tmp_path, capsys):
    """``init`` from a model of version 1 features (the shipped model's) in a version 2 run:
    the weights fit (same sizes) and train on, and stderr says they read other inputs; from a
    model of the run's own version, nothing is said."""
    old = _tiny_model_file(tmp_path / "old.pt", small_sdf, featurisation=None)
    new = _tiny_model_file(tmp_path / "new.pt", small_sdf)
    cfg = {**_cfg(small_sdf[0]), "steps": 1, "batch_size": 2, "val_every": 1}
    train({**cfg, "init": str(old)}, tmp_path / "a", device="cpu", progress=False)
    assert capsys.readouterr().err == (f"init: {old} was trained with other inputs (model.featurisation: "
                                       "1 -> 2): its weights are a warm start\n")
    meta = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["featurisation"] == 2 and meta["init"] == str(old)
    train({**cfg, "init": str(new)}, tmp_path / "b", device="cpu", progress=False)
    assert capsys.readouterr().err == ""
