"""Conformer readers, reserved list, processed format and scaffold splits."""
from __future__ import annotations

import gzip
import itertools
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from torch_geometric.data import Batch

from molscore.chem.featurize import mol_to_graph, prepare_mol
from molscore.data.conformers import (ConformerSet, check_coordinates, read_conformers, read_geom_rdkit_folder, read_sdf,
                                      read_smiles_pickle)
from molscore.data.processed import (
    ConformerDataset, index_featurisation, load_index, murcko_scaffold, read_failures, scaffold_split,
    write_dataset,
)
from molscore.data.reserved import (MAX_TAUTOMERS, NO_INCHIKEY_REASON, RESERVED_REASON, build_exclusion_reason,
                                    exclusion_reason, form_blocks, inchikey_block, load_reserved)

SHARED_SDF = Path("/work/shared/data/conformers/geom_drugs_excerpt.sdf.gz")


def _confs(smiles: str, k: int, seed: int = 5) -> Chem.Mol:
    mol = prepare_mol(smiles)
    AllChem.EmbedMultipleConfs(mol, k, randomSeed=seed)
    return mol


def _singles(mol: Chem.Mol) -> list[Chem.Mol]:
    return [Chem.Mol(mol, confId=c.GetId()) for c in mol.GetConformers()]


MOLS = {"CCOC(=O)c1ccccc1": 3, "C[C@H](N)Cc1ccncc1": 2}


@pytest.fixture(scope="module")
def ensembles() -> dict[str, Chem.Mol]:
    return {smi: _confs(smi, k) for smi, k in MOLS.items()}


def _coords(mol: Chem.Mol) -> np.ndarray:
    return np.stack([c.GetPositions() for c in mol.GetConformers()])


def test_geom_rdkit_folder_round_trip(tmp_path, ensembles):
    summary = {}
    (tmp_path / "drugs").mkdir()
    for n, (smi, mol) in enumerate(ensembles.items()):
        confs = [{"rd_mol": m, "boltzmannweight": w, "totalenergy": -1.0}
                 for m, w in zip(_singles(mol), np.linspace(1, 2, mol.GetNumConformers()))]
        (tmp_path / "drugs" / f"{n}.pickle").write_bytes(pickle.dumps({"conformers": confs, "smiles": smi}))
        summary[smi] = {"pickle_path": f"drugs/{n}.pickle", "uniqueconfs": len(confs)}
    (tmp_path / "drugs" / "bad.pickle").write_bytes(pickle.dumps({"conformers": []})[:10])
    summary["CCCC"] = {"pickle_path": "drugs/bad.pickle"}
    summary["CCN"] = {"pickle_path": "drugs/missing.pickle"}
    (tmp_path / "summary_drugs.json").write_text(json.dumps(summary))
    failures = []
    records = list(read_geom_rdkit_folder(tmp_path / "summary_drugs.json", failures=failures))
    assert [r.name for r in records] == list(ensembles)
    for r in records:
        src = ensembles[r.name]
        assert np.allclose(r.coordinates(), _coords(src), atol=1e-5)  # RDKit pickles float32
        k = src.GetNumConformers()
        assert np.allclose(r.weights, np.linspace(1, 2, k) / np.linspace(1, 2, k).sum())
    assert records[1].smiles == "C[C@H](N)Cc1ccncc1"
    reasons = dict(failures)
    assert "unreadable pickle" in reasons["CCCC"] and "unreadable pickle" in reasons["CCN"]


def _write_sdf(path: Path, mols_props: list[tuple[Chem.Mol, dict]]) -> None:
    fh = gzip.open(path, "wt") if path.suffix == ".gz" else open(path, "w")
    with fh, Chem.SDWriter(fh) as writer:
        for mol, props in mols_props:
            for key, value in props.items():
                mol.SetProp(key, str(value))
            writer.write(mol)


def test_sdf_grouping_and_bad_records(tmp_path, ensembles):
    (a, ma), (b, mb) = ensembles.items()
    sa, sb = _singles(ma), _singles(mb)
    zero = Chem.Mol(sa[0])
    for i in range(zero.GetNumAtoms()):
        zero.GetConformer().SetAtomPosition(i, (0.0, 0.0, 0.0))
    wrong = _confs("CCOC(=O)c1ccccc1C", 1)  # atoms do not match the "smiles" property
    records = [(sa[0], {"smiles": a}), (sb[0], {"smiles": b}), (sa[1], {"smiles": a}), (zero, {"smiles": a}),
               (sb[1], {"smiles": b}), (sa[2], {"smiles": a}), (wrong, {"smiles": a})]
    path = tmp_path / "ens.sdf.gz"
    _write_sdf(path, records)
    failures = []
    out = {r.name: r for r in read_conformers(path, failures=failures)}
    assert set(out) == {a, b} and out[a].num_conformers == 3 and out[b].num_conformers == 2
    assert np.allclose(out[a].coordinates(), _coords(ma), atol=1e-4)  # SDF keeps 4 decimals
    assert np.allclose(out[b].coordinates(), _coords(mb), atol=1e-4)
    assert out[a].weights is None
    reasons = [r for _, r in failures]
    assert "conformer 2: missing coordinates (all zero)" in reasons  # index within the molecule
    assert "conformer 4: 3D atoms do not match the SMILES graph" in reasons
    # grouping by each record's own SMILES puts the mismatching record in its own molecule
    by_smiles = list(read_sdf(path, group_by=None))
    assert len(by_smiles) == 3


def test_truncated_gzip_keeps_what_was_read(tmp_path, ensembles):
    mol = ensembles["CCOC(=O)c1ccccc1"]
    recs = [(m, {"smiles": "CCOC(=O)c1ccccc1"}) for m in _singles(mol)]
    path = tmp_path / "full.sdf.gz"
    _write_sdf(path, recs * 20)
    cut = tmp_path / "cut.sdf.gz"
    data = path.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    failures = []
    out = list(read_sdf(cut, failures=failures))
    assert len(out) >= 1 and out[0].num_conformers >= 3
    assert any("truncated or unreadable" in r for _, r in failures)
    # not a gzip file at all
    bad = tmp_path / "bad.sdf.gz"
    bad.write_bytes(b"this is not gzip")
    failures = []
    assert list(read_sdf(bad, failures=failures)) == [] and "truncated or unreadable" in failures[0][1]


def test_sdf_whose_last_record_lacks_the_terminator_is_read_whole(tmp_path, ensembles):
    """``$$$$`` after the last record is optional (RDKit reads such files); a cut molfile is not."""
    mol = ensembles["CCOC(=O)c1ccccc1"]
    recs = [(m, {"smiles": "CCOC(=O)c1ccccc1"}) for m in _singles(mol)]
    path = tmp_path / "full.sdf"
    _write_sdf(path, recs)
    text = path.read_text()
    assert text.rstrip().endswith("$$$$")
    open_end = tmp_path / "open_end.sdf"
    open_end.write_text(text.rstrip()[: -len("$$$$")])
    failures = []
    out = list(read_sdf(open_end, failures=failures))
    assert failures == [] and len(out) == 1 and out[0].num_conformers == len(recs)
    # cut inside the last atom block: what came before is kept, and the cut is reported
    last = text.rstrip()[: -len("$$$$")].rstrip().rsplit("$$$$", 1)
    cut = tmp_path / "cut.sdf"
    cut.write_text(last[0] + "$$$$" + last[1].split("M  END")[0][:200])
    failures = []
    out = list(read_sdf(cut, failures=failures))
    assert out[0].num_conformers == len(recs) - 1
    assert any("file ends inside a record" in r for _, r in failures)


def test_torsional_pickle_round_trip(tmp_path, ensembles):
    data = {smi: _singles(mol) for smi, mol in ensembles.items()}
    data["CCO"] = [Chem.MolFromSmiles("CCO")]  # no coordinates
    path = tmp_path / "confs.pkl"
    path.write_bytes(pickle.dumps(data))
    failures = []
    out = {r.name: r for r in read_smiles_pickle(path, failures=failures)}
    assert set(out) == set(ensembles)
    for smi, mol in ensembles.items():
        assert np.allclose(out[smi].coordinates(), _coords(mol), atol=1e-5)
    assert ("CCO", "conformer 0: missing coordinates") in failures


def test_shared_geom_excerpt_rejects_mismatched_records():
    if not SHARED_SDF.is_file():
        pytest.skip("shared GEOM excerpt not available")
    failures = []
    out = list(read_sdf(SHARED_SDF, failures=failures, limit=3))
    assert len(out) == 3 and all(r.num_conformers > 1 for r in out)
    assert all(r.mol.GetNumAtoms() == r.coordinates().shape[1] for r in out)


def test_reserved_list():
    reserved = load_reserved()
    assert len(reserved) > 2000 and all(len(b) == 14 for b in reserved)
    mandelic = Chem.MolFromSmiles("O=C(O)[C@@H](O)c1ccccc1")  # on the shipped list
    for mol in (mandelic, Chem.AddHs(mandelic)):
        assert exclusion_reason(inchikey_block(mol), reserved) == RESERVED_REASON
    assert exclusion_reason(inchikey_block(Chem.MolFromSmiles("CCCCCCCCCCO")), reserved) is None


def test_the_shipped_reserved_list_is_package_data():
    """The list lay in the source tree's ``datasets/`` only, so an installed wheel had none and
    ``build-dataset`` refused to run (a non-editable install). It is package data now (a link
    to that file in the source tree, its bytes in a wheel): inside the package, matched by
    ``pyproject.toml``'s package-data, the same list."""
    import fnmatch

    import molscore
    from molscore.data.reserved import DEFAULT_RESERVED_PATH

    tomllib = pytest.importorskip("tomllib")
    root = Path(molscore.__file__).resolve().parent
    inside = DEFAULT_RESERVED_PATH.relative_to(root).as_posix()  # ValueError: not in the package
    project = tomllib.loads((root.parent / "pyproject.toml").read_text())
    globs = project["tool"]["setuptools"]["package-data"]["molscore"]
    assert any(fnmatch.fnmatch(inside, g) for g in globs), (inside, globs)
    assert DEFAULT_RESERVED_PATH.read_bytes() == (root.parent / "datasets" / "reserved_inchikeys.txt").read_bytes()


def test_reserved_list_override(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("# comment\n" + inchikey_block(Chem.MolFromSmiles("CCO")) + "-XXXX\n")
    reserved = load_reserved(path)
    assert exclusion_reason(inchikey_block(Chem.MolFromSmiles("OCC")), reserved) == RESERVED_REASON
    assert len(reserved) == 1
    with pytest.raises(FileNotFoundError):
        load_reserved(tmp_path / "nope.txt")


def _no_inchikey_record() -> ConformerSet:
    """A 400-carbon alkane with its hydrogens: 1,202 atoms, over InChI's 1,023, so RDKit makes
    no InChIKey for it (one flat conformer: it is dropped before anything reads it)."""
    mol = Chem.AddHs(Chem.MolFromSmiles("C" * 400))
    mol.AddConformer(Chem.Conformer(mol.GetNumAtoms()), assignId=True)
    return ConformerSet(smiles="C" * 400, mol=mol, weights=None, name="C400")


def test_molecule_without_inchikey_is_not_stored(tmp_path, ensembles):
    """Nothing can check a molecule RDKit makes no InChIKey for against the reserved list, so
    it might be reserved: ``write_dataset`` drops it with its reason (it was stored)."""
    record = _no_inchikey_record()
    assert inchikey_block(record.mol) == ""
    records = [ConformerSet(smiles=smi, mol=mol, weights=None, name=smi) for smi, mol in ensembles.items()]
    write_dataset(records[:1] + [record], tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    assert [m["name"] for m in load_index(tmp_path / "ds")["molecules"]] == [records[0].name]
    assert read_failures(tmp_path / "ds") == [("C400", NO_INCHIKEY_REASON)]


def test_dataset_holding_a_molecule_without_inchikey_trains_without_it(tmp_path, ensembles):
    """A dataset to which such a molecule was added by hand (its builder drops them): the
    training split leaves it out when it leaves out reserved molecules."""
    from molscore.data.processed import build_writer, encode_record
    from molscore.data.reserved import reserved_keys

    smi, mol = next(iter(ensembles.items()))
    writer = build_writer(tmp_path / "ds")
    for record in (ConformerSet(smiles=smi, mol=mol, weights=None, name=smi), _no_inchikey_record()):
        writer.add(encode_record(record, featurisation=writer.featurisation))
    writer.finalize((1.0, 0.0, 0.0))
    kept = ConformerDataset(tmp_path / "ds", "all", reserved=reserved_keys())
    assert kept.reserved_dropped == ["C400"] and kept.blocks == [inchikey_block(mol)]
    assert len(ConformerDataset(tmp_path / "ds", "all")) == 2


def test_another_reserved_list_adds_to_the_shipped_one(tmp_path):
    """The list that ``data.reserved``, ``write_dataset(reserved_path=)`` and ``build-dataset
    --reserved`` name is left out as well as the shipped one, never instead of it."""
    from molscore.data.reserved import reserved_keys

    extra = tmp_path / "r.txt"
    extra.write_text(inchikey_block(Chem.MolFromSmiles("CCO")) + "\n")
    assert reserved_keys(extra) == load_reserved() | load_reserved(extra)
    assert reserved_keys() == load_reserved()
    with pytest.raises(FileNotFoundError):
        reserved_keys(tmp_path / "nope.txt")


def test_processed_round_trip(tmp_path, ensembles):
    failures = []
    data = {smi: _singles(mol) for smi, mol in ensembles.items()}
    path = tmp_path / "c.pkl"
    path.write_bytes(pickle.dumps(data))
    records = list(read_smiles_pickle(path, failures=failures))
    records[0].weights = np.array([1.0, 0.0, 0.0])
    index = write_dataset(records, tmp_path / "ds", shard_size=1, fractions=(0.5, 0.0, 0.5),
                          failures=[("x", "a reason")])
    assert len(index["shards"]) == 2 and read_failures(tmp_path / "ds") == [("x", "a reason")]
    assert load_index(tmp_path / "ds")["molecules"][0]["has_weights"] is True
    ds = ConformerDataset(tmp_path / "ds", split="all", conformers="all")
    assert len(ds) == 5
    for i, rec in enumerate(records):
        assert torch.equal(ds.conformer_coordinates(i), torch.from_numpy(rec.coordinates().astype(np.float32)))
    item = ds[4]
    assert item.smiles == records[1].smiles and item.mol_id == 1 and item.conf_id == 1
    assert torch.equal(item.pos, torch.from_numpy(records[1].coordinates()[1].astype(np.float32)))
    graph = mol_to_graph(records[1].mol, featurisation=ds.featurisation)
    for key in ("atom_feat", "edge_index", "edge_attr", "z"):
        assert torch.equal(item[key], graph[key]) and item[key].dtype == graph[key].dtype
    batch = Batch.from_data_list([ds[0], ds[3]])
    assert batch.num_graphs == 2 and int(batch.edge_index.max()) < batch.num_nodes
    # Boltzmann sampling with weights (1, 0, 0) always returns conformer 0
    torch.manual_seed(0)
    first = ConformerDataset(tmp_path / "ds", split="all", weighting="boltzmann")
    assert len(first) == 2 and {first[0].conf_id for _ in range(20)} == {0}
    # the split puts each molecule in exactly one of train/test
    train, test = (ConformerDataset(tmp_path / "ds", split=s) for s in ("train", "test"))
    assert len(train) + len(test) == 2
    # rewriting the same records does nothing new (names already present)
    again = write_dataset(records, tmp_path / "ds", shard_size=1)
    assert len(again["shards"]) == 2 and len(again["molecules"]) == 2
    shard = torch.load(tmp_path / "ds" / index["shards"][0], weights_only=True)
    assert set(shard) >= {"atom_feat", "edge_index", "edge_attr", "z", "pos", "weights", "atom_ptr"}


def test_interrupted_shard_write_does_not_index_its_molecules_twice(tmp_path, ensembles, monkeypatch):
    """Ctrl-C (or a full disk) while a shard is written leaves its molecules buffered; the
    flush that follows (run_build's ``finally``, or the next shard) writes them once. They
    were added to the index before the write and again by the retry: each molecule twice."""
    import molscore.data.processed as processed
    from molscore.data.processed import DatasetWriter, encode_record

    records = [ConformerSet(smiles=smi, mol=mol, weights=None, name=smi) for smi, mol in ensembles.items()]
    writer = DatasetWriter(tmp_path / "ds", shard_size=10)
    for rec in records:
        writer.add(encode_record(rec, featurisation=writer.featurisation))
    real = processed.save_atomic

    def interrupted(obj, path):
        monkeypatch.setattr(processed, "save_atomic", real)
        raise KeyboardInterrupt

    monkeypatch.setattr(processed, "save_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.flush()
    writer.flush()
    index = writer.finalize((1.0, 0.0, 0.0))
    assert [m["name"] for m in load_index(tmp_path / "ds")["molecules"]] == list(MOLS)
    assert index["splits"]["train"] == [0, 1] and len(ConformerDataset(tmp_path / "ds", "train")) == 2


@pytest.mark.parametrize("where", ["rows", "rename"])
def test_interrupted_failures_write_does_not_repeat_rows(tmp_path, monkeypatch, where):
    """Ctrl-C (or an error) while failures.csv is written, after its rows reached the file
    ("rows": the csv writer; "rename": the file's replacement) leaves them queued; the
    flush that follows (run_build's ``finally``) wrote them again: every row twice, and
    a reserved molecule counted twice in ``total_reserved_dropped``."""
    import molscore.data.processed as processed
    from molscore.data.processed import DatasetWriter

    writer = DatasetWriter(tmp_path / "ds")
    writer.add_failures([("old", "a reason")])
    writer.flush()
    writer.add_failures([("a", "reserved for held-out evaluation"), ("b", "bad valence")])
    real_writer, real_replace = processed.csv.writer, processed.replace_atomically

    class DyingWriter:
        def __init__(self, fh):
            self.inner = real_writer(fh)

        def writerow(self, row):
            self.inner.writerow(row)

        def writerows(self, rows):
            self.inner.writerows(rows)
            monkeypatch.setattr(processed.csv, "writer", real_writer)
            raise KeyboardInterrupt

    def dying_replace(path, chunks):
        real_replace(path, chunks)
        if path.name == processed.FAILURES_FILE:
            monkeypatch.setattr(processed, "replace_atomically", real_replace)
            raise KeyboardInterrupt

    if where == "rows":
        monkeypatch.setattr(processed.csv, "writer", DyingWriter)
    else:
        monkeypatch.setattr(processed, "replace_atomically", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        writer.flush()
    writer.flush()
    writer.finalize()
    assert read_failures(tmp_path / "ds") == [("old", "a reason"), ("a", "reserved for held-out evaluation"),
                                              ("b", "bad valence")]


def test_write_dataset_drops_reserved_molecules_of_geom_pickles(tmp_path):
    """GEOM pickles reach training only through ``write_dataset``: it drops reserved
    molecules (mandelic acid is on the shipped list) like the ``build-dataset`` builders."""
    summary = {}
    (tmp_path / "drugs").mkdir()
    for n, smi in enumerate(["OC(=O)C(O)c1ccccc1", "CCCCCCCCCCO"]):
        confs = [{"rd_mol": m, "boltzmannweight": 0.5} for m in _singles(_confs(smi, 2))]
        (tmp_path / "drugs" / f"{n}.pickle").write_bytes(pickle.dumps({"conformers": confs}))
        summary[smi] = {"pickle_path": f"drugs/{n}.pickle"}
    (tmp_path / "summary_drugs.json").write_text(json.dumps(summary))
    index = write_dataset(read_conformers(tmp_path / "summary_drugs.json"), tmp_path / "ds",
                          fractions=(1.0, 0.0, 0.0))
    assert [m["name"] for m in index["molecules"]] == ["CCCCCCCCCCO"]
    assert ConformerDataset(tmp_path / "ds", "train").smiles == ["CCCCCCCCCCO"]
    assert read_failures(tmp_path / "ds") == [("OC(=O)C(O)c1ccccc1", "reserved for held-out evaluation")]
    other = tmp_path / "other.txt"     # another list adds to the shipped one (it replaced it)
    other.write_text(inchikey_block(Chem.MolFromSmiles("CCCCCCCCCCO")) + "\n")
    index = write_dataset(read_conformers(tmp_path / "summary_drugs.json"), tmp_path / "ds2",
                          fractions=(1.0, 0.0, 0.0), reserved_path=other)
    assert index["molecules"] == []
    assert {name for name, _ in read_failures(tmp_path / "ds2")} == {"OC(=O)C(O)c1ccccc1",
                                                                    "CCCCCCCCCCO"}


def _zeroed(mol: Chem.Mol) -> Chem.Mol:
    """A copy of ``mol`` whose coordinates are all zero (a record the readers refuse)."""
    out = Chem.Mol(mol)
    for i in range(out.GetNumAtoms()):
        out.GetConformer().SetAtomPosition(i, (0.0, 0.0, 0.0))
    return out


def test_a_resumed_write_dataset_writes_each_reader_failure_once(tmp_path, ensembles):
    """``write_dataset`` resumed with a reader's failures appended them all again: each rerun
    of a finished build added a copy of every earlier row (3 rows, then 6, then 9). The
    failures of a run stopped after its first shard, resumed, are those of one run."""
    (a, ma), (b, mb) = ensembles.items()
    sa, sb = _singles(ma), _singles(mb)
    path = tmp_path / "ens.sdf"
    _write_sdf(path, [(sa[0], {"smiles": a}), (_zeroed(sa[1]), {"smiles": a}), (sa[2], {"smiles": a}),
                      (sb[0], {"smiles": b}), (sb[1], {"smiles": b}),
                      (_zeroed(_singles(_confs("CCOC", 1))[0]), {"smiles": "CCOC"})])

    def build(root, records=None):
        failures = []
        records = read_sdf(path, failures=failures) if records is None else records(failures)
        return write_dataset(records, root, failures=failures, shard_size=1, fractions=(1.0, 0.0, 0.0))

    whole = build(tmp_path / "whole")
    rows = read_failures(tmp_path / "whole")
    assert rows == [(a, "conformer 1: missing coordinates (all zero)"),
                    ("CCOC", "conformer 0: missing coordinates (all zero)"),
                    ("CCOC", "no usable conformer (missing coordinates (all zero))")]
    assert build(tmp_path / "whole")["molecules"] == whole["molecules"]
    assert read_failures(tmp_path / "whole") == rows

    def stopped(failures):
        yield from itertools.islice(read_sdf(path, failures=failures), 1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "cut", stopped)
    assert [m["name"] for m in load_index(tmp_path / "cut")["molecules"]] == [a]
    resumed = build(tmp_path / "cut")
    assert [m["name"] for m in resumed["molecules"]] == [m["name"] for m in whole["molecules"]]
    assert read_failures(tmp_path / "cut") == rows


def test_scaffold_split_disjoint_and_deterministic():
    smiles = ["c1ccccc1C", "c1ccccc1CC", "c1ccccc1O", "C1CCCCC1N", "C1CCCCC1O", "c1ccncc1C", "c1ccncc1N",
              "CCO", "CCN", "c1ccc2ccccc2c1", "c1ccc2ccccc2c1O", "C1CCNCC1", "C1CCOC1", "C1CCOC1C"] * 3
    scaffolds = [murcko_scaffold(Chem.MolFromSmiles(s)) for s in smiles]
    split = scaffold_split(scaffolds, (0.6, 0.2, 0.2), seed=1)
    assert sorted(sum(split.values(), [])) == list(range(len(smiles)))
    owner = {}
    for name, ids in split.items():
        for i in ids:
            assert owner.setdefault(scaffolds[i], name) == name
    assert len(split["train"]) <= int(0.6 * len(smiles)) and split["val"] and split["test"]
    assert split == scaffold_split(scaffolds, (0.6, 0.2, 0.2), seed=1)
    assert any(scaffold_split(scaffolds, (0.6, 0.2, 0.2), seed=s) != split for s in range(2, 6))
    with pytest.raises(ValueError):
        scaffold_split(scaffolds, (0.5, 0.2, 0.2))
    # pinned: a split of ordinary inputs (no scaffold over train's quota) never moves
    assert split == {"train": [5, 6, 7, 8, 9, 10, 12, 13, 19, 20, 21, 22, 23, 24, 26, 27, 33, 34, 35, 36, 37, 38, 40, 41],
                     "val": [3, 4, 17, 18, 31, 32], "test": [0, 1, 2, 11, 14, 15, 16, 25, 28, 29, 30, 39]}
    # InChIKey blocks that join no two scaffolds leave it as it was
    blocks = [inchikey_block(Chem.MolFromSmiles(s)) for s in smiles]
    assert scaffold_split(scaffolds, (0.6, 0.2, 0.2), seed=1, blocks=blocks) == split


def test_scaffold_group_larger_than_train_quota_goes_to_train():
    """85 % acyclic molecules (one scaffold, "") do not fit train's 80 % quota: that group
    went to test, leaving train 15 molecules and val none; it now goes to train, and val
    and test share the rest. A train fraction of 0 still keeps train empty."""
    scaffolds = [""] * 85 + ["c1ccccc1"] * 5 + ["C1CCCCC1"] * 5 + ["c1ccncc1"] * 5
    for seed in range(4):
        split = scaffold_split(scaffolds, seed=seed)
        assert split["train"] == list(range(85))
        assert len(split["val"]) == 10 and len(split["test"]) == 5
    assert scaffold_split([""] * 2, (0.5, 0.0, 0.5)) == {"train": [0, 1], "val": [], "test": []}
    assert scaffold_split([""] * 2, (0.0, 0.5, 0.5)) == {"train": [], "val": [], "test": [0, 1]}


def test_merge_renumbers_atoms_and_rejects_mirror_images(ensembles):
    from molscore.data.conformers import conformer_set_from_mols

    smi = "C[C@H](N)Cc1ccncc1"
    first, second = _singles(ensembles[smi])
    order = list(range(second.GetNumAtoms()))[::-1]
    shuffled = Chem.RenumberAtoms(second, order)  # same molecule, atoms in reverse order
    mirror = Chem.Mol(first)
    conf = mirror.GetConformer()
    for i in range(mirror.GetNumAtoms()):
        p = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, (-p.x, p.y, p.z))  # the enantiomer's coordinates
    failures = []
    out = conformer_set_from_mols([first, shuffled, mirror], smi, smiles=smi, failures=failures)
    assert out.num_conformers == 2 and out.smiles == smi
    assert np.allclose(out.coordinates()[1], second.GetConformer().GetPositions())  # back in first's order
    assert failures == [(smi, "conformer 2: stereochemistry from 3D differs from the first conformer")]


def test_a_record_with_other_isotope_labels_is_named_as_such(ensembles):
    """A 13C-labelled record grouped with unlabelled ones was dropped as 'stereochemistry from
    3D differs from the first conformer' (the isomeric SMILES compared holds the labels)."""
    from molscore.data.conformers import conformer_set_from_mols

    smi = "C[C@H](N)Cc1ccncc1"
    first, second = _singles(ensembles[smi])
    labelled = Chem.Mol(second)
    labelled.GetAtomWithIdx(0).SetIsotope(13)
    failures = []
    out = conformer_set_from_mols([first, labelled], smi, smiles=smi, failures=failures)
    assert out.num_conformers == 1
    assert failures == [(smi, "conformer 1: isotope labels differ from the first conformer's")]


@pytest.mark.parametrize("text, found", [('{"format": "other"}', "'other'"), ("[1, 2]", "'list'")])
def test_load_index_refuses_what_is_not_a_dataset_index(tmp_path, text, found):
    (tmp_path / "index.json").write_text(text)
    with pytest.raises(ValueError, match=f"unknown format {found}, expected"):
        load_index(tmp_path)


def test_a_record_with_an_extra_hydrogen_is_dropped_not_a_crash(tmp_path):
    """Records grouped by a name property (no SMILES to check them against): a protonated
    one holds the neutral first record as a substructure; renumbering it by that partial
    match raised RDKit's ValueError, which ended the whole read."""
    path = tmp_path / "ens.sdf"
    writer = Chem.SDWriter(str(path))
    for k, (name, smi) in enumerate([("gly", "NCC(=O)O"), ("gly", "[NH3+]CC(=O)O"), ("gly", "NCC(=O)O"),
                                     ("eth", "CCO")]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        assert AllChem.EmbedMolecule(mol, randomSeed=3 + k) == 0
        mol.SetProp("ensemble", name)
        writer.write(mol)
    writer.close()
    failures = []
    out = list(read_sdf(path, group_by="ensemble", failures=failures))
    assert [(c.name, c.num_conformers, c.smiles) for c in out] == [("gly", 2, "NCC(=O)O"), ("eth", 1, "CCO")]
    assert failures == [("gly", "conformer 1: atoms do not match the other conformers")]


def test_largest_fragment_checks_records_against_that_fragment_of_the_smiles(tmp_path):
    """A GEOM salt with ``largest_fragment``: each record is reduced to its largest fragment
    and must match that fragment of the SMILES key (it was checked against the whole SMILES,
    so every record of every salt failed as '3D atoms do not match the SMILES graph')."""
    salt = "CC(=O)Oc1ccccc1C(=O)[O-].[Na+]"
    mol = Chem.AddHs(Chem.MolFromSmiles(salt))
    assert len(AllChem.EmbedMultipleConfs(mol, 2, randomSeed=4)) == 2
    other = Chem.AddHs(Chem.MolFromSmiles("CCC(=O)[O-].[Na+]"))    # another anion, same cation
    assert AllChem.EmbedMolecule(other, randomSeed=4) == 0
    confs = [{"rd_mol": m, "boltzmannweight": w}
             for m, w in zip(_singles(mol) + [other], (0.3, 0.1, 0.6))]
    (tmp_path / "salt.pickle").write_bytes(pickle.dumps({"conformers": confs}))
    (tmp_path / "summary.json").write_text(json.dumps({salt: {"pickle_path": "salt.pickle"}}))
    failures = []
    out = list(read_geom_rdkit_folder(tmp_path / "summary.json", failures=failures, largest_fragment=True))
    assert [(c.smiles, c.num_conformers) for c in out] == [("CC(=O)Oc1ccccc1C(=O)[O-]", 2)]
    assert np.allclose(out[0].weights, [0.75, 0.25])
    assert failures == [(salt, "conformer 2: 3D atoms do not match the SMILES graph")]
    # without the option the salt is refused, with the reason naming it
    failures = []
    assert not list(read_geom_rdkit_folder(tmp_path / "summary.json", failures=failures))
    assert failures[-1] == (salt, "no usable conformer (2 fragments (salt or mixture); use --largest-fragment "
                                    "(largest_fragment=True in Python))")


@pytest.mark.parametrize("group_by", ["smiles", "ensemble"])
def test_a_blank_grouping_property_names_no_molecule(tmp_path, group_by):
    """Records whose grouping property is blank are grouped by their own SMILES, as records
    without it are (they formed one group named '', whose records were all refused against
    the empty SMILES or merged across molecules)."""
    path = tmp_path / "blank.sdf"
    with Chem.SDWriter(str(path)) as writer:
        for k, smi in enumerate(["CCO", "CCO", "CCN"]):
            mol = Chem.AddHs(Chem.MolFromSmiles(smi))
            assert AllChem.EmbedMolecule(mol, randomSeed=5 + k) == 0
            mol.SetProp(group_by, " ")
            writer.write(mol)
    failures = []
    out = list(read_sdf(path, group_by=group_by, failures=failures))
    assert [(c.name, c.smiles, c.num_conformers) for c in out] == [("CCO", "CCO", 2), ("CCN", "CCN", 1)]
    assert failures == []


def test_smiles_grouping_compares_canonical_smiles(tmp_path):
    """``group_by="smiles"`` grouped on the property's text: butanol written ``CCCCO`` and
    ``OCCCC`` became two molecules, each with part of the conformers (the same molecule twice
    in a dataset). The group keeps the first spelling; other molecules stay apart."""
    path = tmp_path / "spellings.sdf"
    with Chem.SDWriter(str(path)) as writer:
        for k, smi in enumerate(["CCCCO", "OCCCC", "C(O)CCC", "CCCCN"]):
            mol = Chem.AddHs(Chem.MolFromSmiles(smi))
            assert AllChem.EmbedMolecule(mol, randomSeed=5 + k) == 0
            mol.SetProp("smiles", smi)
            writer.write(mol)
    failures = []
    out = list(read_sdf(path, failures=failures))
    assert [(c.name, c.num_conformers) for c in out] == [("CCCCO", 3), ("CCCCN", 1)]
    assert failures == []


@pytest.mark.parametrize("bare", [0, 1, 2])
def test_a_record_without_the_smiles_property_joins_its_molecule_however_spelled(tmp_path, bare):
    """A record lacking the ``smiles`` property is grouped by its own canonical SMILES; the
    records that have it, spelled ``c1ccccc1CCO``, formed another group, so the file's one
    molecule was stored twice (``c1ccccc1CCO`` with 2 conformers, ``OCCc1ccccc1`` with 1),
    wherever the bare record stood."""
    mol = Chem.AddHs(Chem.MolFromSmiles("OCCc1ccccc1"))
    assert len(AllChem.EmbedMultipleConfs(mol, 3, randomSeed=5)) == 3
    path = tmp_path / "mixed.sdf"
    with Chem.SDWriter(str(path)) as writer:
        for k in range(3):
            record = Chem.Mol(mol, confId=k)
            if k != bare:
                record.SetProp("smiles", "c1ccccc1CCO")
            writer.write(record)
    failures = []
    (out,) = read_sdf(path, failures=failures)
    assert out.num_conformers == 3 and out.smiles == "OCCc1ccccc1" and failures == []
    assert np.allclose(out.coordinates(), _coords(mol), atol=1e-4)    # in file order


def test_a_dataset_of_other_feature_sizes_is_refused_when_read(tmp_path, ensembles):
    """The writer refuses to extend a dataset of another featuriser; the reader loaded it,
    and training stopped at its first step with a matrix-shape error."""
    from molscore.chem.featurize import ATOM_FEAT_DIM

    records = list(read_smiles_pickle(_pickle(tmp_path, ensembles)))
    write_dataset(records, tmp_path / "ds", fractions=(0.5, 0.0, 0.5))
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    index["atom_feat_dim"] = ATOM_FEAT_DIM - 1
    (tmp_path / "ds" / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=f"features of other sizes \\(atom {ATOM_FEAT_DIM - 1}, edge 18; "
                                         f"this featuriser: {ATOM_FEAT_DIM}, 18\\); build it again"):
        ConformerDataset(tmp_path / "ds", split="train")


def test_a_dataset_is_read_and_resumed_only_with_its_featurisation(tmp_path, ensembles):
    """The featurisation version is part of what a processed dataset is: a new one is written
    with version 2, a dataset of another version is refused by a reader that names its own
    (a run's model), one written before there were versions (no key) is version 1, and a
    resumed build keeps its folder's version."""
    records = list(read_smiles_pickle(_pickle(tmp_path, ensembles)))
    assert index_featurisation(write_dataset(records[:1], tmp_path / "new"), tmp_path) == 2
    write_dataset(records[:1], tmp_path / "ds", fractions=(0.5, 0.0, 0.5), featurisation=1)
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    del index["featurisation"]                            # as datasets were written before
    (tmp_path / "ds" / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path / 'ds'))} holds featurisation 1 "
                                         r"features, not 2; build it again \(molscore build-dataset "
                                         r"--featurisation 2\), or train with model.featurisation: 1$"):
        ConformerDataset(tmp_path / "ds", split="all", featurisation=2)
    with pytest.raises(ValueError, match="holds featurisation 1 features, not 2; resume it with "
                                         "--featurisation 1, or use a new folder$"):
        write_dataset(records[1:], tmp_path / "ds", featurisation=2)
    write_dataset(records[1:], tmp_path / "ds", fractions=(0.5, 0.0, 0.5))     # resumed: version 1
    ds = ConformerDataset(tmp_path / "ds", split="all", featurisation=1)
    assert ds.featurisation == 1 and len(ds) == 2
    for i, rec in enumerate(records):
        v1 = mol_to_graph(rec.mol, featurisation=1)
        assert torch.equal(ds[i].atom_feat, v1.atom_feat) and torch.equal(ds[i].edge_attr, v1.edge_attr)
    chiral = next(i for i, rec in enumerate(records) if "@" in rec.smiles)
    assert not torch.equal(ds[chiral].atom_feat, mol_to_graph(records[chiral].mol, featurisation=2).atom_feat)


def _pickle(tmp_path: Path, ensembles: dict[str, Chem.Mol]) -> Path:
    path = tmp_path / "c.pkl"
    path.write_bytes(pickle.dumps({smi: _singles(mol) for smi, mol in ensembles.items()}))
    return path


def test_unusable_weights_leave_a_set_unweighted_not_the_read_stopped(tmp_path, ensembles):
    """A GEOM-style pickle whose ``boltzmannweight`` is None (a hand-made file) stopped the
    whole read with a TypeError; such a molecule is read without weights and the next one
    still with its own. An SDF whose ``boltzmannweight`` is text takes ``weight`` instead."""
    (tmp_path / "drugs").mkdir()
    summary = {}
    for n, (smi, mol) in enumerate(ensembles.items()):
        weights = [None] * mol.GetNumConformers() if n == 0 else [1.0] * mol.GetNumConformers()
        confs = [{"rd_mol": m, "boltzmannweight": w} for m, w in zip(_singles(mol), weights)]
        (tmp_path / "drugs" / f"{n}.pickle").write_bytes(pickle.dumps({"conformers": confs}))
        summary[smi] = {"pickle_path": f"drugs/{n}.pickle"}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    records = list(read_geom_rdkit_folder(tmp_path / "summary.json"))
    assert [r.name for r in records] == list(ensembles)
    assert records[0].weights is None
    k = records[1].mol.GetNumConformers()
    assert np.allclose(records[1].weights, np.full(k, 1 / k))

    smi, mol = next(iter(ensembles.items()))
    singles = _singles(mol)
    _write_sdf(tmp_path / "w.sdf", [(m, {"smiles": smi, "boltzmannweight": "n/a", "weight": w})
                                    for m, w in zip(singles, range(1, len(singles) + 1))])
    (record,) = read_sdf(tmp_path / "w.sdf")
    expected = np.arange(1, len(singles) + 1, dtype=float)
    assert np.allclose(record.weights, expected / expected.sum())


def test_a_dataset_extended_after_its_split_and_not_finalised_is_refused(tmp_path, ensembles):
    """A finished build resumed with more molecules and stopped before finalising keeps its
    old split, in which the new molecules are in no split: training would silently leave
    them out; reading a split refuses it, and the finished build reads again."""
    from molscore.data.conformers import conformer_set_from_mols
    from molscore.data.processed import ConformerDataset, DatasetWriter, encode_record, write_dataset

    first, second = list(ensembles.items())
    write_dataset([conformer_set_from_mols(_singles(first[1]), first[0])], tmp_path / "d",
                  fractions=(1.0, 0.0, 0.0))
    assert len(ConformerDataset(tmp_path / "d")) == 1
    writer = DatasetWriter(tmp_path / "d")
    writer.add(encode_record(conformer_set_from_mols(_singles(second[1]), second[0]),
                             featurisation=writer.featurisation))
    writer.flush()                                          # stopped before finalize
    with pytest.raises(ValueError, match="1 molecule\\(s\\) were added after its split"):
        ConformerDataset(tmp_path / "d")
    writer.finalize((1.0, 0.0, 0.0))
    assert len(ConformerDataset(tmp_path / "d")) == 2


class _OpensAFile:
    """Unpickling it runs ``open(path, "w")``: proof that a file was unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.mark.parametrize("where", ["absolute", "parent"])
def test_geom_pickle_path_outside_the_summary_folder_is_not_unpickled(tmp_path, where):
    """The reader unpickled whatever file a summary's ``pickle_path`` named, an absolute path or
    ``../`` out of the folder included, though pickles are loaded only from paths the user names
    (unpickling runs code); such an entry is a failure row and its file is never loaded."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "geom").mkdir()
    marker = tmp_path / "ran"
    evil = tmp_path / "elsewhere" / "evil.pickle"
    evil.write_bytes(pickle.dumps(_OpensAFile(marker)))
    rel = str(evil) if where == "absolute" else "../elsewhere/evil.pickle"
    (tmp_path / "geom" / "summary.json").write_text(json.dumps({"CCO": {"pickle_path": rel}}))
    failures = []
    assert not list(read_geom_rdkit_folder(tmp_path / "geom" / "summary.json", failures=failures))
    assert not marker.exists()
    assert failures == [("CCO", f"pickle_path {rel} is outside the summary's folder; not loaded "
                                "(unpickling runs code: only the named folder's files are read)")]


@pytest.mark.parametrize("confs, reason", [
    ({"rd_mol": None}, "unreadable pickle bad.pickle: TypeError: 'conformers' is not a list of dicts"),
    ([1, 2], "unreadable pickle bad.pickle: TypeError: 'conformers' is not a list of dicts"),
    (None, "unreadable pickle bad.pickle: TypeError: 'conformers' is not a list of dicts"),
    ([{"rd_mol": "CCO"}], "no usable conformer (not an RDKit molecule but str)"),
])
def test_a_geom_pickle_of_another_layout_is_a_failure_row_not_a_stopped_read(tmp_path, ensembles, confs, reason):
    """A GEOM pickle whose ``conformers`` was not a list of dicts, or whose ``rd_mol`` was not a
    molecule, stopped the whole read with an AttributeError / TypeError; it is now that
    molecule's failure row, and the next molecule is read."""
    smi, mol = next(iter(ensembles.items()))
    (tmp_path / "bad.pickle").write_bytes(pickle.dumps({"conformers": confs}))
    good = [{"rd_mol": m, "boltzmannweight": 1.0} for m in _singles(mol)]
    (tmp_path / "good.pickle").write_bytes(pickle.dumps({"conformers": good}))
    summary = {"CCO": {"pickle_path": "bad.pickle"}, smi: {"pickle_path": "good.pickle"}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    failures = []
    records = list(read_geom_rdkit_folder(tmp_path / "summary.json", failures=failures))
    assert [r.name for r in records] == [smi]
    assert failures[-1] == ("CCO", reason)


@pytest.mark.parametrize("layout", ["geom", "smiles"])
def test_a_pickle_that_runs_code_is_refused_unless_trusted(tmp_path, layout):
    """The pickle readers called ``pickle.load``, so a crafted file inside the named folder ran
    its code (here ``open(marker, "w")``) with nothing said; unpickling now resolves only RDKit
    molecules, numpy values and plain containers, so the file is a failure row naming the
    callable and ``trust=True``, and runs only when the caller passes ``trust=True``."""
    marker = tmp_path / "ran"
    if layout == "geom":
        (tmp_path / "evil.pickle").write_bytes(pickle.dumps({"conformers": [{"rd_mol": _OpensAFile(marker)}]}))
        path = tmp_path / "summary.json"
        path.write_text(json.dumps({"CCO": {"pickle_path": "evil.pickle"}}))
    else:
        path = tmp_path / "evil.pkl"
        path.write_bytes(pickle.dumps({"CCO": [_OpensAFile(marker)]}))
    failures = []
    assert not list(read_conformers(path, failures=failures))
    assert not marker.exists()
    (row,) = failures
    assert "UnpicklingError" in row[1] and f"{open.__module__}.open" in row[1] and "trust=True" in row[1]
    list(read_conformers(path, failures=[], trust=True))
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_untrusted_pickles_of_molecules_and_numpy_values_are_read(tmp_path, ensembles, protocol):
    """What GEOM and torsional-diffusion pickles hold (RDKit molecules, numpy scalar and array
    weights, nested containers; protocol 2's bytes) passes the restricted unpickler."""
    smi, mol = next(iter(ensembles.items()))
    k = mol.GetNumConformers()
    confs = [{"rd_mol": m, "boltzmannweight": np.float64(w), "energies": np.arange(3.0), "tags": {"a", 1}}
             for m, w in zip(_singles(mol), np.linspace(1, 2, k))]
    (tmp_path / "0.pickle").write_bytes(pickle.dumps({"conformers": confs}, protocol=protocol))
    (tmp_path / "summary.json").write_text(json.dumps({smi: {"pickle_path": "0.pickle"}}))
    failures = []
    (record,) = read_geom_rdkit_folder(tmp_path / "summary.json", failures=failures)
    assert failures == []
    np.testing.assert_allclose(record.weights, np.linspace(1, 2, k) / np.linspace(1, 2, k).sum())
    np.testing.assert_allclose(record.coordinates(), _coords(mol))


def test_a_smiles_pickle_holding_other_objects_drops_them_not_the_read(tmp_path, ensembles):
    """``{smiles: [Mol, 3, "x"]}`` stopped the read with an AttributeError on the ``3``; the
    objects that are not molecules are failure rows and the molecule keeps its conformers."""
    smi, mol = next(iter(ensembles.items()))
    path = tmp_path / "c.pkl"
    path.write_bytes(pickle.dumps({smi: _singles(mol) + [3, "x"]}))
    failures = []
    (record,) = read_smiles_pickle(path, failures=failures)
    k = mol.GetNumConformers()
    assert record.num_conformers == k
    assert failures == [(smi, f"conformer {k}: not an RDKit molecule but int"),
                        (smi, f"conformer {k + 1}: not an RDKit molecule but str")]


def test_forms_of_one_molecule_with_other_scaffolds_share_a_split(tmp_path):
    """Pyridine and pyridinium, 2-pyridone and 2-hydroxypyridine have one InChIKey block (one
    molecule to the reserved list and to training's validation filter) but other Murcko
    scaffolds, so the scaffold split could put one form in train and the other in test; the
    split now keeps each such pair in one split, for every seed."""
    pairs = [("c1ccncc1", "c1cc[nH+]cc1"), ("O=c1cccc[nH]1", "Oc1ccccn1")]
    others = ["c1ccccc1", "C1CCCCC1", "c1ccoc1", "c1ccsc1", "C1CCOC1", "C1CCNCC1", "c1ccc2ccccc2c1", "C1CC1"]
    smiles = [s for pair in pairs for s in pair] + others
    records = [ConformerSet(smiles=s, mol=_confs(s, 1), weights=None, name=f"m{i}") for i, s in enumerate(smiles)]
    assert inchikey_block(records[0].mol) == inchikey_block(records[1].mol)
    assert murcko_scaffold(records[0].mol) != murcko_scaffold(records[1].mol)
    for seed in range(8):
        index = write_dataset(records, tmp_path / str(seed), fractions=(0.5, 0.25, 0.25), seed=seed)
        where = {i: name for name, ids in index["splits"].items() for i in ids}
        assert sorted(where) == list(range(len(smiles)))
        assert where[0] == where[1] and where[2] == where[3], (seed, index["splits"])


def test_clashing_atoms_are_refused_with_the_pair_named():
    """Coordinates with two non-bonded atoms on top of each other (CCD 4TQ has H...H at
    0.41 A) are no conformer; a real one passes."""
    mol = _confs("CCO", 1)
    assert check_coordinates(mol) is None
    conf = mol.GetConformer()
    h_on_c1 = next(n.GetIdx() for n in mol.GetAtomWithIdx(0).GetNeighbors() if n.GetAtomicNum() == 1)
    h_on_o = next(n.GetIdx() for n in mol.GetAtomWithIdx(2).GetNeighbors() if n.GetAtomicNum() == 1)
    target = np.asarray(conf.GetAtomPosition(h_on_c1)) + np.array([0.2, 0.3, 0.0])
    shift = target - np.asarray(conf.GetAtomPosition(h_on_o))
    for i in (2, h_on_o):            # move O and its H together: the O-H bond keeps its length
        conf.SetAtomPosition(i, (np.asarray(conf.GetAtomPosition(i)) + shift).tolist())
    lo, hi = sorted((h_on_c1, h_on_o))
    assert check_coordinates(mol) == (f"atoms H{lo + 1} and H{hi + 1}, not bonded, "
                                      f"{np.hypot(0.2, 0.3):.2f} A apart (clashing coordinates)")


def test_a_pickled_molecule_of_several_conformers_gives_each_conformer(tmp_path):
    """``{smiles: Mol}`` with a Mol of several conformers kept only its first; now every
    conformer is a record, and the Mol's weight is shared among its conformers."""
    many, one = _confs("CCCCOC", 3, seed=7), _confs("CCCCOC", 1, seed=9)
    many.SetDoubleProp("boltzmannweight", 0.6)
    one.SetDoubleProp("boltzmannweight", 0.4)
    old = Chem.GetDefaultPickleProperties()
    Chem.SetDefaultPickleProperties(Chem.PropertyPickleOptions.AllProps)
    try:
        (tmp_path / "a.pkl").write_bytes(pickle.dumps({"CCCCOC": many}))
        (tmp_path / "b.pkl").write_bytes(pickle.dumps({"CCCCOC": [many, one]}))
    finally:
        Chem.SetDefaultPickleProperties(old)
    failures = []
    (single,) = read_smiles_pickle(tmp_path / "a.pkl", failures=failures)
    assert single.num_conformers == 3 and failures == []
    assert np.allclose(single.coordinates(), _coords(many), atol=1e-5)
    (mixed,) = read_smiles_pickle(tmp_path / "b.pkl", failures=failures)
    assert mixed.num_conformers == 4 and failures == []
    assert np.allclose(mixed.weights, [0.2, 0.2, 0.2, 0.4])


@pytest.mark.parametrize("stored", ["full", "lower", "garbage"])
def test_a_hand_made_index_storing_whole_inchikeys_trains_on_no_reserved_molecule(tmp_path, stored):
    """An index written by hand (or by another tool) may store the whole InChIKey, or another
    text, under ``inchikey``: the reserved list holds 14-character blocks, so the stored value
    was compared as it was and the reserved molecule was trained on. Its first block (in any
    case), else the SMILES's, is compared now."""
    from molscore.data.reserved import reserved_keys

    smiles = ["CCCCCCCCCCO", "CCOC(=O)c1ccccc1"]
    records = [ConformerSet(smiles=s, mol=_confs(s, 1), weights=None, name=s) for s in smiles]
    write_dataset(records, tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    index_path = tmp_path / "ds" / "index.json"
    index = json.loads(index_path.read_text())
    for entry in index["molecules"]:
        key = Chem.MolToInchiKey(Chem.MolFromSmiles(entry["smiles"]))
        entry["inchikey"] = {"full": key, "lower": key.lower(), "garbage": "n/a"}[stored]
    index_path.write_text(json.dumps(index))
    extra = tmp_path / "r.txt"
    extra.write_text(inchikey_block(Chem.MolFromSmiles("OCCCCCCCCCC")) + "\n")
    kept = ConformerDataset(tmp_path / "ds", "train", reserved=reserved_keys(extra))
    assert kept.reserved_dropped == ["CCCCCCCCCCO"] and kept.smiles == ["CCOC(=O)c1ccccc1"]
    assert kept.blocks == [inchikey_block(records[1].mol)]


def test_a_reserved_list_that_holds_no_inchikeys_is_refused(tmp_path):
    """A list of SMILES (or of keys after a header line) given as the reserved list left
    nothing out, silently; it is refused, naming the line. A byte-order mark (a list saved by
    a Windows editor) is no part of the first key, which was not left out."""
    from molscore.data.reserved import reserved_keys

    decanol = inchikey_block(Chem.MolFromSmiles("CCCCCCCCCCO"))
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + decanol.encode() + b"\nBSYNRYMUTXBXSQ\n")
    assert load_reserved(bom) == {decanol, "BSYNRYMUTXBXSQ"}
    for text, line in (("CCCCCCCCCCO\n", 1), ("# keys\ninchikey,name\nBSYNRYMUTXBXSQ\n", 2)):
        bad = tmp_path / f"bad{line}.txt"
        bad.write_text(text)
        with pytest.raises(ValueError, match=f"line {line}: .* is not an InChIKey"):
            reserved_keys(bad)


def test_an_empty_or_missing_shipped_reserved_list_is_refused(tmp_path, monkeypatch, capsys):
    """A shipped list emptied (or truncated to its comments) left nothing out, silently: every
    build and training set kept the reserved molecules. A missing one ended ``build-dataset`` in
    a traceback (exit status 1). Both are one-line errors, exit status 2; another list may be
    empty (it adds nothing)."""
    import molscore.data.reserved as reserved_module
    from molscore.cli import main

    nothing = tmp_path / "nothing.txt"
    nothing.write_text("# no molecule reserved\n")
    shipped = tmp_path / "shipped.txt"
    shipped.write_text("# InChIKey connectivity blocks of molecules reserved for held-out evaluation.\n")
    monkeypatch.setattr(reserved_module, "DEFAULT_RESERVED_PATH", shipped)
    with pytest.raises(ValueError, match="holds no InChIKey: the shipped reserved list is empty"):
        reserved_module.reserved_keys(nothing)
    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethanol\n")
    args = ["build-dataset", "etkdg", "--smiles", str(smi), "--n-confs", "1", "--no-progress"]
    assert main(args + ["-o", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err == (f"molscore build-dataset: error: {shipped} holds no InChIKey: the shipped "
                                       "reserved list is empty (damaged or truncated), so it would leave "
                                       "nothing out; restore it\n")
    shipped.unlink()
    assert main(args + ["-o", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err == f"molscore build-dataset: error: reserved InChIKey list not found: {shipped}\n"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    restored = tmp_path / "restored.txt"
    restored.write_text("BSYNRYMUTXBXSQ\n")
    monkeypatch.setattr(reserved_module, "DEFAULT_RESERVED_PATH", restored)
    assert reserved_module.reserved_keys(nothing) == {"BSYNRYMUTXBXSQ"}


# seven ketones in a chain: the tautomer enumeration stops at MAX_TAUTOMERS (InChI merges none)
POLYKETONE = "CC(=O)CC(=O)CC(=O)CC(=O)CC(=O)CC(=O)CC(=O)C"


def test_write_dataset_drops_tautomers_and_charge_forms_of_reserved_molecules(tmp_path):
    """Standard InChI does not merge a keto and its enol form, nor an ``[NH3+]O-R`` cation and
    its neutral amine (CCD 6UN, EN1, YI1): ``write_dataset`` (GEOM and torsional-diffusion
    pickles) compared the record's own block alone and stored them. A molecule whose tautomer,
    neutral form or neutral form's tautomer is reserved is dropped now with a reason naming the
    reserved block (its own block listed: the reason as before); one with many tautomers is
    checked within the bound; an unrelated molecule is stored."""
    from rdkit.Chem.MolStandardize import rdMolStandardize

    enumerator = rdMolStandardize.TautomerEnumerator()
    enumerator.SetMaxTautomers(MAX_TAUTOMERS)
    far = min(Chem.MolToSmiles(t) for t in enumerator.Enumerate(Chem.MolFromSmiles(POLYKETONE)))
    reserved = {smi: inchikey_block(Chem.MolFromSmiles(smi)) for smi in ("O=C1CCCCC1", "NOCc1ccccc1", far)}
    assert inchikey_block(Chem.MolFromSmiles(POLYKETONE)) != reserved[far]
    extra = tmp_path / "extra.txt"
    extra.write_text("".join(block + "\n" for block in reserved.values()))
    names = ["OC1=CCCCC1", "[NH3+]OCc1ccccc1", POLYKETONE, "O=C1CCCCC1", "CCCCCCCCCCO"]
    records = [ConformerSet(smiles=smi, mol=_confs(smi, 1), weights=None, name=smi) for smi in names]
    index = write_dataset(records, tmp_path / "ds", fractions=(1.0, 0.0, 0.0), reserved_path=extra)
    assert [m["name"] for m in index["molecules"]] == ["CCCCCCCCCCO"]
    form = RESERVED_REASON + " (tautomer or charge form of {})"
    assert read_failures(tmp_path / "ds") == [
        ("OC1=CCCCC1", form.format(reserved["O=C1CCCCC1"])),
        ("[NH3+]OCc1ccccc1", form.format(reserved["NOCc1ccccc1"])),
        (POLYKETONE, form.format(reserved[far])), ("O=C1CCCCC1", RESERVED_REASON)]
    assert index["meta"]["reserved_match"].startswith("InChIKey first block of the molecule, its tautomers")


def test_form_blocks_are_bounded_and_never_raise(monkeypatch):
    """``form_blocks``: the molecule's own block and those of its forms, at most
    MAX_TAUTOMERS tautomers per form; a molecule whose forms RDKit cannot make keeps its own
    block; one without an InChIKey has none and stays dropped."""
    import molscore.data.reserved as reserved_module

    mol = Chem.AddHs(Chem.MolFromSmiles(POLYKETONE))
    blocks = form_blocks(mol)
    assert inchikey_block(mol) in blocks and MAX_TAUTOMERS <= len(blocks) <= 2 * MAX_TAUTOMERS + 2
    assert form_blocks(Chem.MolFromSmiles("[NH3+]OCc1ccccc1")) == {  # the cation, neutral, anion
        inchikey_block(Chem.MolFromSmiles(s)) for s in ("[NH3+]OCc1ccccc1", "NOCc1ccccc1", "[NH-]OCc1ccccc1")}

    class Broken:
        def Enumerate(self, mol):
            raise RuntimeError("enumeration failed")

        def uncharge(self, mol):
            raise RuntimeError("uncharging failed")

    monkeypatch.setattr(reserved_module, "_standardizers", lambda: (Broken(), Broken()))
    assert form_blocks(mol) == {inchikey_block(mol)}
    assert build_exclusion_reason(mol, frozenset()) is None
    monkeypatch.undo()
    record = _no_inchikey_record()
    assert form_blocks(record.mol) == frozenset()
    assert build_exclusion_reason(record.mol, load_reserved()) == NO_INCHIKEY_REASON


# The rule before charge forms (builds begun under it are refused: they may hold such molecules)
PREVIOUS_RULE = ("InChIKey first block of the molecule, its tautomers, its neutral form and that "
                 "form's tautomers (at most 200 tautomers, 1000 transforms each)")


def test_a_neutral_molecule_whose_anion_or_cation_is_reserved_is_dropped(tmp_path):
    """The shipped list, made from bound ligands, holds anions whose block standard InChI does
    not give the neutral molecule: acetazolamide's sulfonamide anion (CCD AZM) and a
    hydroxamate (CCD EHM) among the 117 blocks that are single (de)protonations of 122 CCD
    components. A builder compared the molecule's own forms and its neutral form's, so it
    stored the neutral ones; now that form with one proton fewer (or, for a reserved cation such
    as ``[NH3+]O-R``, one more) is compared too, and a build begun under the old rule is
    refused. Common (de)protonations standard InChI merges itself: those blocks are the
    neutral molecule's."""
    from molscore.data.reserved import check_match_rule

    reserved = load_reserved()
    form = RESERVED_REASON + " (tautomer or charge form of {})"
    for smiles, anion in (("CC(=O)Nc1nnc(S(N)(=O)=O)s1", "PPCFSEIOYQJRDN"), ("O=C(NO)C(O)C(O)CO", "FSEZIQFBMVZMNY")):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        assert inchikey_block(mol) not in reserved and anion in reserved
        assert build_exclusion_reason(mol, reserved) == form.format(anion)
    cation = inchikey_block(Chem.MolFromSmiles("[NH3+]OCc1ccccc1"))
    assert build_exclusion_reason(Chem.MolFromSmiles("NOCc1ccccc1"), frozenset({cation})) == form.format(cation)
    for neutral, charged in (("CCN", "CC[NH3+]"), ("CCN(C)C", "CC[NH+](C)C"), ("CC(=O)O", "CC(=O)[O-]"),
                             ("NCC(=O)O", "[NH3+]CC(=O)[O-]"), ("c1ccncc1", "c1cc[nH+]cc1"),
                             ("NC(=N)NCC", "NC(=[NH2+])NCC"), ("Oc1ccccc1", "[O-]c1ccccc1")):
        assert inchikey_block(Chem.MolFromSmiles(neutral)) == inchikey_block(Chem.MolFromSmiles(charged))
    with pytest.raises(ValueError, match="was built under another reserved-molecule rule"):
        check_match_rule({"reserved_match": PREVIOUS_RULE}, tmp_path)


def test_a_deuterated_tautomer_or_charge_form_of_a_reserved_molecule_is_dropped():
    """The InChIKey block ignores isotopes, but ``RemoveHs`` keeps a deuterium as an atom, so
    the tautomers and charge forms did not move it: the hydroxamic acid of CCD EHM with an O-D
    (its O-deprotonated anion is reserved) and the O-D enol of a reserved ketone were kept."""
    reserved = load_reserved()
    form = RESERVED_REASON + " (tautomer or charge form of {})"
    for smiles in ("O=C(NO[2H])C(O)C(O)CO", "O=C(NO[3H])C(O)C(O)CO"):
        for mol in (Chem.MolFromSmiles(smiles), Chem.AddHs(Chem.MolFromSmiles(smiles))):
            assert inchikey_block(mol) not in reserved
            assert build_exclusion_reason(mol, reserved) == form.format("FSEZIQFBMVZMNY")
    ketone = frozenset({inchikey_block(Chem.MolFromSmiles("O=C1CCCCC1"))})
    enol = Chem.AddHs(Chem.MolFromSmiles("[2H]OC1=CCCCC1"))
    assert build_exclusion_reason(enol, ketone) == form.format(min(ketone))


def test_charge_forms_are_one_per_symmetry_class_and_bounded(monkeypatch):
    """``charge_forms``: one proton more on an uncharged N, one fewer on an uncharged N, O or S
    with a hydrogen, one form per symmetry class, at most MAX_CHARGE_SITES atoms."""
    import molscore.data.reserved as reserved_module

    smiles = lambda mols: sorted(Chem.MolToSmiles(m) for m in mols)  # noqa: E731
    assert smiles(reserved_module.charge_forms(Chem.MolFromSmiles("OCCO"))) == ["[O-]CCO"]
    assert smiles(reserved_module.charge_forms(Chem.MolFromSmiles("NOC"))) == ["CO[NH-]", "CO[NH3+]"]
    assert reserved_module.charge_forms(Chem.MolFromSmiles("COC")) == []       # no site
    monkeypatch.setattr(reserved_module, "MAX_CHARGE_SITES", 2)
    assert smiles(reserved_module.charge_forms(Chem.MolFromSmiles("NCC(O)CS"))) == ["[NH-]CC(O)CS", "[NH3+]CC(O)CS"]


def test_write_dataset_refuses_a_folder_written_under_another_reserved_rule(tmp_path, ensembles):
    """A folder written by a molscore that compared the InChIKey block alone records no rule;
    adding to it under the new one would mix the two silently."""
    records = [ConformerSet(smiles=smi, mol=mol, weights=None, name=smi) for smi, mol in ensembles.items()]
    write_dataset(records[:1], tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    del index["meta"]["reserved_match"]
    (tmp_path / "ds" / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="was built under another reserved-molecule rule: reserved_match None"):
        write_dataset(records, tmp_path / "ds")
    assert len(load_index(tmp_path / "ds")["molecules"]) == 1



@pytest.mark.parametrize("content, kind", [([{"pickle_path": "a.pickle"}], "list"), ("drugs", "str"), (3, "int")])
def test_a_geom_summary_that_is_no_json_object_is_a_failure_row(tmp_path, content, kind):
    """A summary JSON that is not an object (a list, a string: another file of the download)
    stopped the read with an AttributeError ('list' object has no attribute 'items'), though
    bad input never stops a reader; it is one failure row naming the file."""
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(content))
    failures = []
    assert list(read_geom_rdkit_folder(summary, failures=failures)) == []
    assert failures == [(str(summary), f"unreadable summary: a JSON {kind}, "
                                       "not an object of SMILES -> {'pickle_path': ...}")]
