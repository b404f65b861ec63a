"""On-disk format of conformer datasets, scaffold splits, and the training ``Dataset``.

A processed dataset is a folder::

    index.json          format tag, featuriser dims and version, per-molecule entries (and
                        their SHA-256, ``molecules_sha256``), splits, the rows failures.csv
                        holds (``failure_rows``, the last of them ``failures_pending``)
    shard_00000.pt ...  plain tensors (torch.save; loaded with weights_only=True)
    failures.csv        name,reason of every record a builder skipped
    .build.lock         held (:mod:`molscore.locks`) by the build writing the folder: a
                        second build into it is refused while the first runs

Each shard holds ``M`` molecules as concatenated tensors with offsets:

* ``atom_ptr``, ``edge_ptr``, ``conf_ptr``, ``pos_ptr``: ``(M + 1,)`` long offsets;
* ``atom_feat`` ``(sum N, ATOM_FEAT_DIM)`` uint8 (0/1 features; float32 once loaded), ``z`` ``(sum N,)`` long;
* ``edge_index`` ``(2, sum E)`` long (indices local to each molecule),
  ``edge_attr`` ``(sum E, EDGE_FEAT_DIM)`` uint8 (float32 once loaded);
* ``pos`` ``(sum K*N, 3)`` float32 (each molecule's ``K`` conformers, ``N`` rows each);
* ``weights`` ``(sum K,)`` float32 (uniform when the source had none; see ``has_weights``).

The features are those of ``index.json``'s ``featurisation`` version
(:mod:`molscore.chem.featurize`; version 1 where the index records none, as in datasets
written before there were versions): a dataset is read only by a run of its version, and a
build resumed in its folder keeps it.

Strings (SMILES, names, scaffolds, InChIKey blocks) live in ``index.json`` only, so shards
contain no pickled objects. Every file is written to a temporary name and moved into place with
``os.replace``, so an interrupted build leaves a consistent dataset that a rerun resumes. A
shard is written before the index that names it, and the index before ``failures.csv``; the
index records the failure rows of its molecules that the file is to get next
(``failures_pending``), which a build killed before it wrote them leaves for the rerun to add.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import random
from pathlib import Path
from typing import IO, Callable, Iterable, Sequence

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem.Scaffolds import MurckoScaffold
from torch.utils.data import Dataset
from torch_geometric.data import Data

from .. import locks
from ..checkpoint import save_atomic
from ..chem.featurize import (ATOM_FEAT_DIM, DEFAULT_FEATURISATION, EDGE_FEAT_DIM,
                               LEGACY_FEATURISATION, check_featurisation, mol_to_graph)
from ..chem.io import replace_atomically
from .conformers import ConformerSet
from .reserved import (BLOCK, MATCH_RULE, build_exclusion_reason, check_match_rule, exclusion_reason, inchikey_block,
                       reserved_keys, shipped_identity)

__all__ = [
    "FORMAT", "encode_record", "murcko_scaffold", "scaffold_split", "DatasetWriter", "build_writer", "write_dataset",
    "LOCK_FILE", "load_index", "index_featurisation", "read_failures", "molecules_digest", "ConformerDataset",
]

FORMAT = "molscore-conformers/1"
INDEX_FILE = "index.json"
FAILURES_FILE = "failures.csv"
LOCK_FILE = ".build.lock"
FAILURE_COLUMNS = ("name", "reason")
SPLITS = ("train", "val", "test")
_TENSOR_KEYS = ("atom_feat", "z", "edge_index", "edge_attr", "pos", "weights")
_BINARY_KEYS = ("atom_feat", "edge_attr")  # stored as uint8
MOLECULES_DIGEST = "molecules_sha256"
FAILURE_ROWS = "failure_rows"            # index keys: the rows of failures.csv once those
FAILURES_PENDING = "failures_pending"    # pending (written after the index) are in it


def murcko_scaffold(mol: Chem.Mol) -> str:
    """Bemis-Murcko scaffold SMILES of ``mol`` (``""`` for acyclic molecules)."""
    with rdBase.BlockLogs():
        return MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.RemoveHs(mol), includeChirality=False)


def encode_record(record: ConformerSet, *, featurisation: int) -> dict:
    """Featurise one :class:`ConformerSet` (features of version ``featurisation``) into the
    tensors and strings the writer stores.

    Returns:
        dict with ``name``, ``smiles``, ``scaffold``, ``inchikey`` (the connectivity block that
        the reserved list holds), ``has_weights`` and tensors
        ``atom_feat`` ``(N, F)``, ``z`` ``(N,)``, ``edge_index`` ``(2, E)``, ``edge_attr`` ``(E, Fe)``,
        ``pos`` ``(K, N, 3)`` float32, ``weights`` ``(K,)`` float32.
    """
    graph = mol_to_graph(record.mol, featurisation=featurisation)
    coords = torch.from_numpy(record.coordinates().astype(np.float32))
    k = coords.shape[0]
    if record.weights is not None:
        weights = torch.as_tensor(record.weights, dtype=torch.float32)
    else:
        weights = torch.full((k,), 1.0 / k)
    return {
        "name": record.name, "smiles": record.smiles, "scaffold": murcko_scaffold(record.mol),
        "inchikey": inchikey_block(record.mol), "has_weights": record.weights is not None,
        "atom_feat": graph.atom_feat, "z": graph.z, "edge_index": graph.edge_index,
        "edge_attr": graph.edge_attr, "pos": coords, "weights": weights,
    }


def _merge_by_block(groups: dict[str, list[int]], scaffolds: Sequence[str],
                    blocks: Sequence[str]) -> dict[str, list[int]]:
    """``groups`` (scaffold -> ids) with the groups whose molecules share an InChIKey block
    joined, under the smallest of their scaffolds; blank blocks join nothing."""
    parent = {key: key for key in groups}

    def root(key: str) -> str:
        while parent[key] != key:
            key = parent[key]
        return key

    first: dict[str, str] = {}
    for scaffold, block in zip(scaffolds, blocks):
        if block:
            a, b = root(first.setdefault(block, scaffold)), root(scaffold)
            parent[max(a, b)] = min(a, b)
    merged: dict[str, list[int]] = {}
    for key in sorted(groups):
        merged.setdefault(root(key), []).extend(groups[key])
    return {key: sorted(ids) for key, ids in merged.items()}


def scaffold_split(scaffolds: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                   seed: int = 0, blocks: Sequence[str] | None = None) -> dict[str, list[int]]:
    """Split molecules so that no Bemis-Murcko scaffold, nor InChIKey connectivity block, is in
    two splits.

    With ``blocks``, scaffolds whose molecules share a block (forms of one molecule with other
    scaffolds: pyridine and pyridinium, 2-pyridone and 2-hydroxypyridine) are one group; the
    split is otherwise the same.

    Scaffold groups larger than half the validation size go first (so big groups tend to
    land in train), the rest follow; within both tiers the order is shuffled with ``seed``.
    In that order each group goes to train if it fits train's quota, else to val if it fits
    val's, else to test. A group larger than train's whole quota (e.g. the ``""`` scaffold
    of acyclic molecules when they are over 80 %) is taken first and goes to train, which
    then exceeds its fraction while val and test share the rest (with several such groups,
    only the first in shuffled order; none with a train fraction of 0). The result depends
    on the multiset of scaffolds and the seed, not on the order molecules were written in
    beyond their ids.

    Args:
        scaffolds: scaffold string per molecule id.
        fractions: train/val/test fractions (sum to 1).
        seed: shuffling seed.
        blocks: InChIKey connectivity block per molecule id (``""``: none).

    Returns:
        ``{"train": ids, "val": ids, "test": ids}``, ids sorted.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(scaffolds):
        groups.setdefault(s, []).append(i)
    if blocks is not None:
        groups = _merge_by_block(groups, scaffolds, blocks)
    n = len(scaffolds)
    n_train, n_val = int(fractions[0] * n), int(fractions[1] * n)
    keys = sorted(groups)
    big = [k for k in keys if len(groups[k]) > n_val / 2]
    small = [k for k in keys if len(groups[k]) <= n_val / 2]
    rng = random.Random(seed)
    rng.shuffle(big)
    rng.shuffle(small)
    # a group too big for train's quota goes to train all the same, ahead of the others (it
    # went to val or test, leaving train with the few molecules of the other scaffolds)
    order = ([k for k in big + small if len(groups[k]) > n_train]
             + [k for k in big + small if len(groups[k]) <= n_train])
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for key in order:
        ids = groups[key]
        if (len(out["train"]) + len(ids) <= n_train
                or (not out["train"] and len(ids) > n_train and fractions[0] > 0)):
            out["train"] += ids
        elif len(out["val"]) + len(ids) <= n_val:
            out["val"] += ids
        else:
            out["test"] += ids
    return {s: sorted(v) for s, v in out.items()}


def load_index(root: str | Path) -> dict:
    """The parsed ``index.json`` of a processed dataset (raises ``FileNotFoundError``/``ValueError``)."""
    path = Path(root) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no processed dataset at {root} (missing {INDEX_FILE})")
    index = json.loads(path.read_text(encoding="utf-8"))
    found = index.get("format") if isinstance(index, dict) else type(index).__name__
    if found != FORMAT:
        raise ValueError(f"{path}: unknown format {found!r}, expected {FORMAT!r}")
    return index


def molecules_digest(entries: list) -> str:
    """SHA-256 of an index's molecule entries (as canonical JSON), which the writer records as
    ``molecules_sha256``: a reader tells an index that molscore wrote from one edited since
    (or written by a molscore before 2026-12-07, which recorded none)."""
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def index_featurisation(index: dict, root: str | Path) -> int:
    """The featurisation version of a dataset's parsed ``index.json``
    (:data:`~molscore.chem.featurize.LEGACY_FEATURISATION` when it records none);
    ``ValueError`` naming ``root`` for an unknown one."""
    try:
        return check_featurisation(index.get("featurisation", LEGACY_FEATURISATION))
    except ValueError as err:
        raise ValueError(f"{root}: {err}") from None


def _check_featurisation(root: str | Path, index: dict, wanted: int | None, remedy: str) -> int:
    """The version of the dataset at ``root`` (parsed ``index``) when ``wanted`` is None or
    that version; else ``ValueError`` ending with ``remedy`` (``{held}``, ``{wanted}``
    filled in)."""
    held = index_featurisation(index, root)
    if wanted is not None and check_featurisation(wanted) != held:
        raise ValueError(f"{root} holds featurisation {held} features, not {wanted}; "
                         + remedy.format(held=held, wanted=wanted))
    return held


def read_failures(root: str | Path) -> list[tuple[str, str]]:
    """``(name, reason)`` rows of ``failures.csv`` (empty when absent).

    Raises:
        ValueError: a file that is not empty lacks the ``name`` or ``reason`` column.
    """
    path = Path(root) / FAILURES_FILE
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is not None and not set(FAILURE_COLUMNS) <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected the columns {','.join(FAILURE_COLUMNS)}, found "
                             f"{','.join(reader.fieldnames)}; restore them or remove the file")
        return [(r["name"], r["reason"]) for r in reader]


def _lock_folder(root: Path) -> IO[str]:
    """Hold the lock of ``root``'s :data:`LOCK_FILE` (:func:`molscore.locks.acquire`), the
    holder's process number written in it.

    Raises:
        ValueError: another writer, in this or another process, holds the folder.
    """
    try:
        handle = locks.acquire(root / LOCK_FILE)
    except BlockingIOError:
        try:
            holder = (root / LOCK_FILE).read_text(encoding="utf-8").strip()
        except OSError:     # removed by its holder meanwhile (locks.discard_folder)
            holder = ""
        holder = holder or "another process"
        raise ValueError(f"{root} is being written by another build ({holder}); wait for it to end, "
                         "or build into another folder") from None
    handle.truncate(0)
    handle.write(f"process {os.getpid()}\n")
    handle.flush()
    return handle


class DatasetWriter:
    """Append molecules to a processed dataset in shards; resumes an existing one.

    Molecules are buffered and written ``shard_size`` at a time; after each shard the
    index and ``failures.csv`` are updated, so :meth:`is_done` after a crash tells which
    inputs to skip. The index lists the failure rows that ``failures.csv`` is to get after it
    (those of its molecules): a writer opening a folder whose ``failures.csv`` lacks them (a
    build killed between the two writes) adds them. :meth:`finalize` writes the scaffold split.

    The writer holds the folder's lock (:data:`LOCK_FILE`) from its creation until
    :meth:`close` (or the end of its ``with`` block, or of the process): two builds into one
    folder would write shards of the same number and each replace the other's index.

    Args:
        root: output folder (created if needed).
        shard_size: molecules per shard.
        meta: JSON-like description of how the data was made (stored in the index; kept
            from the first run when resuming).
        featurisation: version of the features (:mod:`molscore.chem.featurize`); ``None``:
            the folder's own when resuming, else :data:`~molscore.chem.featurize.DEFAULT_FEATURISATION`.
            :attr:`featurisation` is the one :func:`encode_record` must use.

    Raises:
        ValueError: the folder holds features of other sizes or another version, or another
            writer holds it.
    """

    def __init__(self, root: str | Path, *, shard_size: int = 256, meta: dict | None = None,
                 featurisation: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_folder(self.root)
        try:
            self._open(shard_size, meta, featurisation)
        except BaseException:
            self.close()
            raise

    def _open(self, shard_size: int, meta: dict | None, featurisation: int | None) -> None:
        """Read (or start) the folder's index and failures; see the class."""
        self.shard_size = shard_size
        if (self.root / INDEX_FILE).is_file():
            self.index = load_index(self.root)
        else:
            self.index = {"format": FORMAT, "atom_feat_dim": ATOM_FEAT_DIM, "edge_feat_dim": EDGE_FEAT_DIM,
                          "featurisation": DEFAULT_FEATURISATION if featurisation is None else featurisation,
                          "meta": meta or {}, "shards": [], "molecules": [], "splits": {}}
        if self.index["atom_feat_dim"] != ATOM_FEAT_DIM or self.index["edge_feat_dim"] != EDGE_FEAT_DIM:
            raise ValueError(f"{self.root} was written with other feature sizes; use a new folder")
        self.featurisation = _check_featurisation(self.root, self.index, featurisation,
                                                  "resume it with --featurisation {held}, or use a new folder")
        # every failure row: those in failures.csv, then the queued ones; the file is
        # rewritten whole from this list, so a write interrupted after its rows reached the
        # file and written again leaves each row once
        self._failure_rows: list[tuple[str, str]] = read_failures(self.root)
        pending = [(name, reason) for name, reason in self.index.get(FAILURES_PENDING, [])]
        if pending and len(self._failure_rows) + len(pending) == self.index.get(FAILURE_ROWS):
            self._failure_rows += pending  # killed after the index's write, before the file's
            self._write_failures(self._failure_rows)
        self._failures_written = len(self._failure_rows)  # leading rows known to be in the file
        self._done = {m["name"] for m in self.index["molecules"]}
        self._done.update(name for name, _ in self._failure_rows)
        self._buffer: list[dict] = []

    def close(self) -> None:
        """Release the folder's lock (again: nothing); buffered molecules are not written
        (:meth:`flush` first)."""
        locks.release(self._lock)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def is_done(self, name: str) -> bool:
        """Whether a molecule of this name was stored or recorded as failed (also in earlier runs)."""
        return name in self._done

    def forget_failures(self, keep: Callable[[str], bool]) -> int:
        """Drop the ``failures.csv`` rows whose reason ``keep`` rejects, so that those inputs are
        built again (e.g. after a builder fix); rows of stored molecules (a conformer of
        theirs that was left out) stay, since those are not built again. Returns how many
        inputs will be built again. The file is rewritten atomically; rows still queued for it
        are not touched."""
        written = self._failures_written
        rows, queued = self._failure_rows[:written], self._failure_rows[written:]
        stored = {m["name"] for m in self.index["molecules"]} | {e["name"] for e in self._buffer}
        kept = [(name, reason) for name, reason in rows if keep(reason) or name in stored]
        if len(kept) == len(rows):
            return 0
        self._write_index(len(kept))  # before the file: killed between the two, nothing is forgotten
        self._failures_written = 0  # until the list below is in place, a flush rewrites all
        self._write_failures(kept)
        self._failure_rows = kept + queued
        self._failures_written = len(kept)
        self._done = stored | {name for name, _ in kept} | {name for name, _ in queued}
        return len({name for name, _ in rows} - self._done)

    def add(self, encoded: dict) -> None:
        """Queue one :func:`encode_record` result."""
        self._buffer.append(encoded)
        self._done.add(encoded["name"])
        if len(self._buffer) >= self.shard_size:
            self.flush()

    def add_failures(self, failures: Iterable[tuple[str, str]]) -> None:
        """Queue ``(name, reason)`` rows for ``failures.csv`` (written with the next shard)."""
        for name, reason in failures:
            self._failure_rows.append((name, reason))
            self._done.add(name)

    def flush(self) -> None:
        """Write buffered molecules as a new shard, then the index (listing the queued failures
        as pending), then queued failures."""
        if self._buffer:
            shard_id = len(self.index["shards"])
            fname = f"shard_{shard_id:05d}.pt"
            tensors = {key: [] for key in _TENSOR_KEYS}
            ptrs = {key: [0] for key in ("atom_ptr", "edge_ptr", "conf_ptr", "pos_ptr")}
            entries = []  # indexed once the shard is written (a failed write is retried whole)
            for row, enc in enumerate(self._buffer):
                k, n = enc["pos"].shape[:2]
                for key in _TENSOR_KEYS:
                    tensors[key].append(enc[key].reshape(-1, 3) if key == "pos" else enc[key])
                ptrs["atom_ptr"].append(ptrs["atom_ptr"][-1] + n)
                ptrs["edge_ptr"].append(ptrs["edge_ptr"][-1] + enc["edge_index"].shape[1])
                ptrs["conf_ptr"].append(ptrs["conf_ptr"][-1] + k)
                ptrs["pos_ptr"].append(ptrs["pos_ptr"][-1] + k * n)
                entries.append({
                    "name": enc["name"], "smiles": enc["smiles"], "scaffold": enc["scaffold"],
                    "inchikey": enc["inchikey"], "shard": shard_id, "row": row, "num_atoms": int(n),
                    "num_conformers": int(k), "has_weights": bool(enc["has_weights"])})
            blob = {key: torch.cat(v, dim=1 if key == "edge_index" else 0) for key, v in tensors.items()}
            for key in _BINARY_KEYS:
                if not torch.all((blob[key] == 0) | (blob[key] == 1)):
                    raise ValueError(f"{key} is not binary; the shard format stores 0/1 features")
                blob[key] = blob[key].to(torch.uint8)
            blob.update({key: torch.tensor(v, dtype=torch.long) for key, v in ptrs.items()})
            save_atomic(blob, self.root / fname)      # on disk before the index that names it
            self.index["molecules"] += entries
            self.index["shards"].append(fname)
            self._buffer = []
        self._write_index(self._failures_written, self._failure_rows[self._failures_written:])
        if self._failures_written < len(self._failure_rows):
            rows = list(self._failure_rows)
            self._write_failures(rows)
            self._failures_written = len(rows)

    def _write_failures(self, rows: list[tuple[str, str]]) -> None:
        """Replace ``failures.csv`` by ``rows`` atomically (a rerun writes the same file)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(FAILURE_COLUMNS)
        writer.writerows(rows)
        replace_atomically(self.root / FAILURES_FILE, [buffer.getvalue()])

    def _write_index(self, failure_rows: int, pending: Sequence[tuple[str, str]] = ()) -> None:
        """Replace ``index.json`` atomically, recording that ``failures.csv`` holds
        ``failure_rows`` rows and is to get ``pending`` after them."""
        self.index[FAILURE_ROWS] = failure_rows + len(pending)
        self.index[FAILURES_PENDING] = [list(row) for row in pending]
        self.index[MOLECULES_DIGEST] = molecules_digest(self.index["molecules"])
        replace_atomically(self.root / INDEX_FILE, [json.dumps(self.index, indent=1)])

    def finalize(self, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict:
        """Flush, compute the scaffold split over all molecules (those sharing an InChIKey block
        kept together), write the index; return it."""
        self.flush()
        scaffolds = [m["scaffold"] for m in self.index["molecules"]]
        blocks = [_inchikey_block_of(m) for m in self.index["molecules"]]
        self.index["splits"] = scaffold_split(scaffolds, fractions, seed, blocks)
        self.index["split_config"] = {"method": "bemis_murcko_scaffold", "fractions": list(fractions),
                                      "seed": seed}
        self._write_index(self._failures_written)
        return self.index


def build_writer(root: str | Path, *, shard_size: int = 256, meta: dict | None = None,
                 featurisation: int | None = None) -> DatasetWriter:
    """A :class:`DatasetWriter` for a build that drops reserved molecules by
    :data:`~molscore.data.reserved.MATCH_RULE`: the rule and the shipped list's version go into
    a new dataset's ``meta`` (``reserved_match``, ``reserved_shipped``:
    :func:`~molscore.data.reserved.shipped_identity`), and a dataset begun under another rule, by
    a molscore that recorded none, or under another version of the list, is not added to.

    Raises:
        ValueError: as :class:`DatasetWriter`, or the folder's rule is another
            (:func:`~molscore.data.reserved.check_match_rule`), or so is its version of the
            shipped list (one that recorded none is resumed).
    """
    shipped = shipped_identity()
    writer = DatasetWriter(root, shard_size=shard_size, featurisation=featurisation,
                           meta={**(meta or {}), "reserved_match": MATCH_RULE, "reserved_shipped": shipped})
    try:
        check_match_rule(writer.index["meta"], root)
        held = writer.index["meta"].get("reserved_shipped", shipped)  # none recorded: not compared
        if held != shipped:
            raise ValueError(f"{root} was built under another version of the shipped reserved list "
                             f"({held}, now {shipped}): its stored molecules' forms were compared "
                             "with that one; build it again in a new folder")
    except ValueError:
        writer.close()
        raise
    return writer


def write_dataset(records: Iterable[ConformerSet], root: str | Path, *, shard_size: int = 256,
                  fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                  failures: Iterable[tuple[str, str]] = (), meta: dict | None = None,
                  reserved_path: str | Path | None = None, featurisation: int | None = None) -> dict:
    """Featurise and store ``records`` (skipping names already in ``root``); return the index.
    ``featurisation``: see :class:`DatasetWriter`.

    Reserved molecules (:mod:`molscore.data.reserved`: the shipped list's, and
    ``reserved_path``'s as well; those whose tautomer, neutral form or charge form is listed too,
    :func:`~molscore.data.reserved.build_exclusion_reason`) and those without an InChIKey are
    dropped, as by every dataset builder, and listed in ``failures.csv``.
    ``failures`` (e.g. the list a reader filled, consumed after ``records``) go there too, but
    for the rows ``failures.csv`` already holds: a resumed read reports an earlier run's
    failures again, which are written once.
    ``meta`` gets the rule (``reserved_match``: :data:`~molscore.data.reserved.MATCH_RULE`).

    Raises:
        ValueError: ``root`` holds a dataset written under another reserved-molecule rule or
            by a molscore that recorded none (:func:`~molscore.data.reserved.check_match_rule`).
    """
    reserved = reserved_keys(reserved_path)
    with build_writer(root, shard_size=shard_size, meta=meta, featurisation=featurisation) as writer:
        earlier = set(read_failures(root))
        for record in records:
            if writer.is_done(record.name):
                continue
            reason = build_exclusion_reason(record.mol, reserved)
            if reason:
                writer.add_failures([(record.name, reason)])
            else:
                writer.add(encode_record(record, featurisation=writer.featurisation))
        writer.add_failures(row for row in failures if tuple(row) not in earlier)
        return writer.finalize(fractions, seed)


def _smiles_block(entry: dict) -> str:
    """The InChIKey connectivity block of an index entry's stored SMILES (``""``: none)."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(entry["smiles"]) if isinstance(entry.get("smiles"), str) else None
    return inchikey_block(mol) if mol is not None else ""


def _inchikey_block_of(entry: dict) -> str:
    """The reserved-list key of an index entry: the first 14 characters of its stored
    ``inchikey`` (a whole InChIKey too, in any case, as a hand-made index may hold) when they
    are a connectivity block; ``""`` stored (RDKit made none for the molecule with its
    hydrogens); else computed from its SMILES (``""`` if none)."""
    stored = entry.get("inchikey")
    if stored == "":
        return ""
    if isinstance(stored, str) and BLOCK.fullmatch(block := stored.strip()[:14].upper()):
        return block
    return _smiles_block(entry)


class ConformerDataset(Dataset):
    """Molecules of one split of a processed dataset, each as a PyG graph with one conformer.

    Args:
        root: processed dataset folder.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        conformers: ``"random"``: one item per molecule, a conformer drawn at each access
            (uses torch's global RNG, so DataLoader workers draw independently);
            ``"all"``: one item per (molecule, conformer) pair.
        weighting: for ``"random"``, ``"uniform"`` over conformers or ``"boltzmann"`` (the stored
            weights; uniform for molecules without weights).
        reserved: InChIKey connectivity blocks (:func:`molscore.data.reserved.reserved_keys`) of
            molecules to leave out of the split, so that a dataset written with another list
            (or holding molecules added by hand) trains on none of them, nor on a molecule
            without an InChIKey (which cannot be checked); ``reserved_dropped`` then names
            those left out. The block is read from the index (datasets written since
            2026-12-06; the first 14 characters of a whole InChIKey stored there by hand) or,
            where the index holds none that looks like one, computed from the stored SMILES.
            An index whose entries do not match the ``molecules_sha256`` it records, or that
            records none (edited by hand, or written before 2026-12-07), has the block of each
            stored SMILES compared as well (:attr:`index_unverified`; about 0.5 ms a molecule).
            Only that block is compared (enumerating tautomers and charge forms of every
            molecule at each training start would be slow): the builders left those out, so
            a dataset whose index records another rule than
            :data:`~molscore.data.reserved.MATCH_RULE`, or none, is refused
            (:func:`~molscore.data.reserved.check_match_rule`).
            ``None``: keep every molecule.
        exclude: blocks of other molecules to leave out (the training molecules of every
            dataset a run mixes, kept out of this validation split, and the validation
            molecules of the datasets before it); :attr:`excluded` lists their blocks.
        featurisation: the version of the features the reader's model takes: a dataset of
            another version is refused. ``None``: any (see :attr:`featurisation`).

    Attributes:
        blocks: the InChIKey connectivity block of each molecule kept (``""`` where RDKit
            makes none), in :attr:`mol_ids` order.
        index_unverified: with ``reserved``, whether the index's entries did not match the
            digest it records (or it records none), so that each molecule's block was also
            computed from its stored SMILES.
        featurisation: the version of the dataset's features.

    Raises:
        ValueError: the dataset was written with other feature sizes (by another featuriser) or
            another featurisation version than ``featurisation``, an unknown split, a split
            of a build that was not finalised, or (with ``reserved``) under another
            reserved-molecule rule.

    Items are ``Data`` with ``atom_feat`` ``(N, ATOM_FEAT_DIM)``, ``edge_index`` ``(2, E)``,
    ``edge_attr`` ``(E, EDGE_FEAT_DIM)``, ``z`` ``(N,)``, ``pos`` ``(N, 3)`` float32 (Angstrom, as
    stored, not centred), ``smiles`` (str), ``mol_id`` and ``conf_id`` (ints), ``num_nodes``.
    """

    def __init__(self, root: str | Path, split: str = "train", conformers: str = "random",
                 weighting: str = "uniform", reserved: frozenset[str] | None = None,
                 exclude: frozenset[str] | None = None, featurisation: int | None = None):
        if conformers not in ("random", "all"):
            raise ValueError(f"conformers must be 'random' or 'all', got {conformers!r}")
        if weighting not in ("uniform", "boltzmann"):
            raise ValueError(f"weighting must be 'uniform' or 'boltzmann', got {weighting!r}")
        self.root = Path(root)
        self.index = load_index(self.root)
        if reserved is not None:  # the stored block alone is compared: the builder did the rest
            meta = self.index.get("meta")
            check_match_rule(meta if isinstance(meta, dict) else {}, self.root)
        dims = (self.index.get("atom_feat_dim"), self.index.get("edge_feat_dim"))
        if dims != (ATOM_FEAT_DIM, EDGE_FEAT_DIM):
            raise ValueError(f"{root} holds features of other sizes (atom {dims[0]}, edge {dims[1]}; "
                             f"this featuriser: {ATOM_FEAT_DIM}, {EDGE_FEAT_DIM}); build it again")
        self.featurisation = _check_featurisation(
            root, self.index, featurisation, "build it again (molscore build-dataset "
            "--featurisation {wanted}), or train with model.featurisation: {held}")
        if split == "all":
            ids = list(range(len(self.index["molecules"])))
        elif split in SPLITS:
            if split not in self.index["splits"]:
                raise ValueError(f"{root} has no splits; the build was not finalised")
            unsplit = len(self.index["molecules"]) - sum(map(len, self.index["splits"].values()))
            if unsplit:     # extended after its split, then stopped before finalising again
                raise ValueError(f"{root}: {unsplit} molecule(s) were added after its split and "
                                 "are in none; rerun the build to finish it")
            ids = list(self.index["splits"][split])
        else:
            raise ValueError(f"split must be one of train, val, test, all; got {split!r}")
        self.conformers, self.weighting = conformers, weighting
        self.reserved_dropped: list[str] = []
        self.excluded: list[str] = []
        self.mol_ids, self.blocks = [], []
        self.index_unverified = (reserved is not None and self.index.get(MOLECULES_DIGEST)
                                 != molecules_digest(self.index["molecules"]))
        for i in ids:
            block = _inchikey_block_of(self.index["molecules"][i])
            if reserved is not None and (exclusion_reason(block, reserved) or self.index_unverified
                                         and exclusion_reason(_smiles_block(self.index["molecules"][i]),
                                                              reserved)):
                self.reserved_dropped.append(self.index["molecules"][i]["name"])
            elif exclude and block and block in exclude:
                self.excluded.append(block)
            else:
                self.mol_ids.append(i)
                self.blocks.append(block)
        entries = [self.index["molecules"][i] for i in self.mol_ids]
        shards: dict[int, dict] = {}
        for shard in sorted({e["shard"] for e in entries}):
            blob = torch.load(self.root / self.index["shards"][shard], weights_only=True)
            for key in _BINARY_KEYS:
                blob[key] = blob[key].float()
            shards[shard] = blob
        self._mols = [self._slice(shards[e["shard"]], e["row"]) for e in entries]
        self.smiles = [e["smiles"] for e in entries]
        if conformers == "all":
            self._pairs = [(m, k) for m, e in enumerate(entries) for k in range(e["num_conformers"])]

    @staticmethod
    def _slice(blob: dict, row: int) -> dict:
        a0, a1 = int(blob["atom_ptr"][row]), int(blob["atom_ptr"][row + 1])
        e0, e1 = int(blob["edge_ptr"][row]), int(blob["edge_ptr"][row + 1])
        c0, c1 = int(blob["conf_ptr"][row]), int(blob["conf_ptr"][row + 1])
        p0, p1 = int(blob["pos_ptr"][row]), int(blob["pos_ptr"][row + 1])
        n = a1 - a0
        return {"atom_feat": blob["atom_feat"][a0:a1], "z": blob["z"][a0:a1],
                "edge_index": blob["edge_index"][:, e0:e1], "edge_attr": blob["edge_attr"][e0:e1],
                "pos": blob["pos"][p0:p1].reshape(c1 - c0, n, 3), "weights": blob["weights"][c0:c1]}

    def __len__(self) -> int:
        return len(self._pairs) if self.conformers == "all" else len(self._mols)

    def conformer_coordinates(self, i: int) -> torch.Tensor:
        """All stored conformers of the ``i``-th molecule of the split, ``(K, N, 3)``."""
        return self._mols[i]["pos"]

    def __getitem__(self, i: int) -> Data:
        if self.conformers == "all":
            m, k = self._pairs[i]
        else:
            m = i
            w = self._mols[m]["weights"]
            if self.weighting == "boltzmann":
                k = int(torch.multinomial(w, 1))
            else:
                k = int(torch.randint(len(w), (1,)))
        mol = self._mols[m]
        return Data(atom_feat=mol["atom_feat"], edge_index=mol["edge_index"], edge_attr=mol["edge_attr"],
                    z=mol["z"], pos=mol["pos"][k], num_nodes=mol["z"].shape[0], smiles=self.smiles[m],
                    mol_id=self.mol_ids[m], conf_id=k)
