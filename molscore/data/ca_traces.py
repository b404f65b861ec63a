"""C-alpha traces: reading, chain splitting, crops and CA-only PDB writing.

A *trace* is a float array ``(n, 3)`` of C-alpha coordinates in Å, one row per
residue in sequence order. Sources:

* the bundled ``datasets/pdb_ca_traces_308.npz`` (one array per structure key,
  all chains of the structure concatenated), see :func:`load_npz_traces`;
* PDB / mmCIF / BinaryCIF files (``.pdb``, ``.cif`` / ``.pdbx``, ``.bcif``, uncompressed)
  read with :mod:`biotite.structure.io`, one trace per chain (first model, first altloc),
  see :func:`read_structure_traces`.

Every source is split into chain segments wherever two consecutive C-alphas are
more than :data:`GAP_CUTOFF` (4.2 Å) apart (chain breaks, missing residues, chain
boundaries; a row of NaN, a missing residue in an ``.npz``, is dropped and splits too), so
that a trace never contains a non-physical "bond".

For training, :class:`CATraceCrops` serves random windows of a fixed number of
consecutive residues, centred (CoM-free) and divided by ``coord_scale`` Å.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence, TextIO

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import message_line
from .npz import NpzError, read_npz

if TYPE_CHECKING:
    from biotite.structure import AtomArray

__all__ = [
    "CA_BOND", "GAP_CUTOFF", "Trace", "StructureReadError", "split_at_gaps",
    "load_npz_traces", "STRUCTURE_FORMATS", "read_structure_traces", "read_structure_files",
    "split_by_structure",
    "CATraceCrops", "write_ca_pdb", "read_ca_pdb_models", "PDB_MAX_RESIDUES", "PDB_MAX_MODELS",
]

CA_BOND = 3.8
"""Ideal distance between consecutive C-alphas (Å, trans peptide)."""

GAP_CUTOFF = 4.2
"""Consecutive C-alphas further apart than this (Å) start a new chain segment."""

PDB_MAX_RESIDUES = 9999
"""Most residues of one chain a PDB file numbers (4-digit residue sequence number)."""

PDB_MAX_MODELS = 9999
"""Most models of a PDB file (4-digit MODEL serial number)."""


@dataclass(frozen=True)
class Trace:
    """One chain segment.

    Attributes:
        structure: identifier of the structure it comes from (held-out splits are by structure).
        chain: chain identifier plus a segment suffix (``"A"``, ``"A.2"`` after a gap, ...).
        coords: ``(n, 3)`` float32 C-alpha coordinates in Å.
    """

    structure: str
    chain: str
    coords: np.ndarray

    def __len__(self) -> int:
        return int(self.coords.shape[0])


class StructureReadError(ValueError):
    """A structure file could not be turned into C-alpha traces (message names the file)."""


def split_at_gaps(coords: np.ndarray, max_gap: float = GAP_CUTOFF) -> list[np.ndarray]:
    """Split a trace ``(n, 3)`` wherever consecutive points are more than ``max_gap`` apart.

    A row with a non-finite coordinate (a missing residue written as NaN) is a gap too:
    it is dropped and the trace split there. Returns the segments in order (views of
    ``coords``); empty input gives ``[]``.
    """
    coords = np.asarray(coords)
    if coords.shape[0] == 0:
        return []
    finite = np.isfinite(coords).all(axis=1)
    steps = np.linalg.norm(np.diff(coords, axis=0), axis=1)
    cuts = np.nonzero((steps > max_gap) | ~finite[:-1] | ~finite[1:])[0] + 1
    return [seg for seg in np.split(coords, cuts) if np.isfinite(seg).all()]  # rows cut alone


def _segments(structure: str, chain: str, coords: np.ndarray, min_length: int,
              max_gap: float) -> list[Trace]:
    segs = split_at_gaps(coords.astype(np.float32), max_gap)
    out = []
    for i, seg in enumerate(segs):
        if len(seg) >= min_length:
            out.append(Trace(structure, chain if i == 0 else f"{chain}.{i + 1}", seg))
    return out


def load_npz_traces(path: str | os.PathLike, *, min_length: int = 1,
                    max_gap: float = GAP_CUTOFF) -> list[Trace]:
    """Read an ``.npz`` of C-alpha arrays ``(n, 3)`` (Å), one key per structure.

    Each array is split at gaps (see :func:`split_at_gaps`); segments shorter than
    ``min_length`` are dropped. Keys are the structure ids, segments are named
    ``"1"``, ``"2"``, ... in order.

    Raises:
        StructureReadError: ``path`` is not an ``.npz`` archive (see
            :func:`~molscore.data.npz.read_npz`), or an array is not ``(n, 3)``.
    """
    try:
        arrays = read_npz(path)
    except NpzError as err:
        raise StructureReadError(str(err)) from None
    out: list[Trace] = []
    for key, data in arrays.items():
        arr = np.asarray(data, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise StructureReadError(f"{path}: array {key!r} has shape {arr.shape}, "
                                     "expected (n, 3)")
        for i, seg in enumerate(split_at_gaps(arr, max_gap)):
            if len(seg) >= min_length:
                out.append(Trace(key, str(i + 1), seg))
    return out


STRUCTURE_FORMATS = {".pdb": "PDB", ".cif": "mmCIF", ".pdbx": "mmCIF", ".bcif": "BinaryCIF"}
"""File name extensions (any case) :func:`read_structure_traces` reads, and their formats."""


def _first_model(path: Path) -> AtomArray:
    """The first model of a PDB / mmCIF / BinaryCIF file as a biotite ``AtomArray``, read
    by the reader of its extension (:data:`STRUCTURE_FORMATS`)."""
    import biotite.structure.io.pdb as pdb
    import biotite.structure.io.pdbx as pdbx

    fmt = STRUCTURE_FORMATS[path.suffix.lower()]
    if fmt == "PDB":
        f = pdb.PDBFile.read(str(path))
        if f.get_model_count() == 0:
            raise ValueError("no ATOM or HETATM records")
        return f.get_structure(model=1)
    f = (pdbx.CIFFile if fmt == "mmCIF" else pdbx.BinaryCIFFile).read(str(path))
    return pdbx.get_structure(f, model=1)


def read_structure_traces(path: str | os.PathLike, *, min_length: int = 1,
                          max_gap: float = GAP_CUTOFF) -> list[Trace]:
    """C-alpha traces of one PDB / mmCIF / BinaryCIF file, one per chain segment.

    The format is that of the file's extension (:data:`STRUCTURE_FORMATS`; a compressed
    file, ``.gz``, is not read). Reads the first model (first altloc) with
    :mod:`biotite.structure.io`, keeps atoms named ``CA`` whose element is carbon (so
    calcium ions are not taken), groups them by chain and splits each chain at gaps
    larger than ``max_gap``.

    Raises:
        StructureReadError: the file is missing, empty, of another format, unreadable,
            malformed, or holds no C-alpha (one line naming the file).
    """
    import biotite.structure as struc

    path = Path(path)
    if not path.is_file():
        raise StructureReadError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in STRUCTURE_FORMATS:  # biotite read .sdf as molecules, without a model 1
        given = f"'{path.suffix}'" if path.suffix else "no file extension"
        hint = "; decompress it first" if suffix == ".gz" else ""
        raise StructureReadError(f"{path}: unsupported format ({given}); structures are read "
                                 f"from PDB (.pdb), mmCIF (.cif, .pdbx) and BinaryCIF (.bcif) "
                                 f"files{hint}")
    if path.stat().st_size == 0:
        raise StructureReadError(f"{path}: an empty file (0 bytes)")
    try:
        atoms = _first_model(path)
    except Exception as err:  # biotite raises many types for broken records
        reason = message_line(err) or type(err).__name__
        raise StructureReadError(f"{path}: cannot read {STRUCTURE_FORMATS[suffix]} structure "
                                 f"({reason})") from err
    ca = atoms[(atoms.atom_name == "CA") & (atoms.element == "C")]
    if ca.array_length() == 0:
        raise StructureReadError(f"{path}: no C-alpha atoms (atom name CA, element C) found")
    out: list[Trace] = []
    for chain in struc.chain_iter(ca):
        out.extend(_segments(path.stem, str(chain.chain_id[0]), chain.coord, min_length,
                             max_gap))
    if not out:
        raise StructureReadError(f"{path}: no chain segment with at least {min_length} "
                                 "C-alpha atoms")
    return out


def read_structure_files(paths: Iterable[str | os.PathLike], *, min_length: int = 1,
                         max_gap: float = GAP_CUTOFF) -> tuple[list[Trace], list[str]]:
    """Read several structure files; bad files are reported, the rest still processed.

    Returns:
        ``(traces, errors)``: all traces of the readable files and one message per file
        that failed (see :class:`StructureReadError`).
    """
    traces: list[Trace] = []
    errors: list[str] = []
    for p in paths:
        try:
            traces.extend(read_structure_traces(p, min_length=min_length, max_gap=max_gap))
        except StructureReadError as err:
            errors.append(str(err))
    return traces, errors


def split_by_structure(traces: Sequence[Trace], val_fraction: float, seed: int = 0
                       ) -> tuple[list[Trace], list[Trace]]:
    """Hold out whole structures: ``(train, val)`` with about ``val_fraction`` of the structures
    (at least one when ``val_fraction > 0``) in ``val``, chosen by a seeded permutation."""
    names = sorted({t.structure for t in traces})
    n_val = int(round(val_fraction * len(names)))
    if val_fraction > 0:
        n_val = min(max(n_val, 1), len(names) - 1)
    perm = np.random.default_rng(seed).permutation(len(names))
    held = {names[i] for i in perm[:n_val]}
    return ([t for t in traces if t.structure not in held],
            [t for t in traces if t.structure in held])


class CATraceCrops(Dataset):
    """Windows of ``crop_length`` consecutive residues, centred and scaled.

    Item ``i`` is a crop of segment ``i % num_segments`` (segments shorter than
    ``crop_length`` are skipped), so one epoch of ``len(self)`` items visits each
    segment ``crops_per_segment`` times. Crop starts are uniform over the segment; with
    ``deterministic=True`` they are drawn from a generator seeded by ``(seed, i)``
    (fixed validation crops), otherwise from torch's global generator (so the trainer's
    RNG state governs them).

    Each item is a float32 tensor ``(crop_length, 3)`` equal to
    ``(coords - coords.mean(0)) / coord_scale``.
    """

    def __init__(self, traces: Sequence[Trace], crop_length: int, *, coord_scale: float = 10.0,
                 crops_per_segment: int = 1, deterministic: bool = False, seed: int = 0):
        if crop_length < 2:
            raise ValueError(f"crop_length must be at least 2, got {crop_length}")
        self.segments = [t for t in traces if len(t) >= crop_length]
        if not self.segments:
            raise ValueError(f"no chain segment has at least {crop_length} residues")
        self.crop_length = int(crop_length)
        self.coord_scale = float(coord_scale)
        self.crops_per_segment = int(crops_per_segment)
        self.deterministic = deterministic
        self.seed = seed

    def __len__(self) -> int:
        return len(self.segments) * self.crops_per_segment

    def __getitem__(self, index: int) -> Tensor:
        seg = self.segments[index % len(self.segments)].coords
        span = len(seg) - self.crop_length + 1
        if self.deterministic:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
            start = int(torch.randint(span, (1,), generator=gen))
        else:
            start = int(torch.randint(span, (1,)))
        x = torch.from_numpy(np.ascontiguousarray(seg[start:start + self.crop_length]))
        return (x - x.mean(dim=0)) / self.coord_scale


def write_ca_pdb(target: str | os.PathLike | TextIO, traces: Sequence[np.ndarray | Tensor],
                 *, chain_id: str = "A", res_name: str = "GLY") -> None:
    """Write C-alpha traces (Å, each ``(n_i, 3)``) as a CA-only PDB file, one MODEL per trace.

    The ATOM records are formatted by :class:`biotite.structure.io.pdb.PDBFile`; each trace
    is wrapped in ``MODEL``/``ENDMDL`` records and the file ends with ``END``. A path is
    written atomically (:func:`molscore.checkpoint.write_atomic`).
    Traces may differ in length. Coordinates must fit the PDB format (|x| < 1000 Å once
    rounded to the 3 decimals written), as must
    the numbers: at most :data:`PDB_MAX_RESIDUES` residues per trace and
    :data:`PDB_MAX_MODELS` traces.
    """
    import biotite.structure as struc
    import biotite.structure.io.pdb as pdb

    if len(traces) > PDB_MAX_MODELS:
        raise ValueError(f"{len(traces)} traces do not fit a PDB file (at most "
                         f"{PDB_MAX_MODELS} models)")
    lines: list[str] = []
    for k, tr in enumerate(traces, start=1):
        coords = np.asarray(tr.detach().cpu() if isinstance(tr, Tensor) else tr, dtype=np.float64)
        if coords.ndim != 2 or coords.shape[1] != 3:
            raise ValueError(f"trace {k} has shape {coords.shape}, expected (n, 3)")
        if coords.shape[0] > PDB_MAX_RESIDUES:
            raise ValueError(f"trace {k} has {coords.shape[0]} residues, more than a PDB chain "
                             f"numbers ({PDB_MAX_RESIDUES})")
        # |x| as written (3 decimals): -999.9996 printed as -1000.000, 9 characters that
        # shifted the columns after it
        if not np.isfinite(coords).all() or np.abs(coords.round(3)).max(initial=0.0) >= 1000:
            raise ValueError(f"trace {k} has coordinates that do not fit a PDB file "
                             "(non-finite or |x| >= 1000 Å)")
        n = coords.shape[0]
        atoms = struc.AtomArray(n)
        atoms.coord = coords
        atoms.atom_name[:] = "CA"
        atoms.element[:] = "C"
        atoms.res_name[:] = res_name
        atoms.res_id[:] = np.arange(1, n + 1)
        atoms.chain_id[:] = chain_id
        atoms.hetero[:] = False
        block = pdb.PDBFile()
        block.set_structure(atoms)
        lines.append(f"MODEL     {k:4d}".ljust(80))
        lines.extend(ln for ln in block.lines if ln.startswith("ATOM"))
        lines.append("ENDMDL".ljust(80))
    lines.append("END".ljust(80))
    text = "\n".join(lines) + "\n"
    if hasattr(target, "write"):
        target.write(text)
    else:
        from ..checkpoint import write_atomic

        write_atomic(target, lambda fh: fh.write(text.encode()))


def read_ca_pdb_models(path: str | os.PathLike) -> list[np.ndarray]:
    """All models of a (multi-model) PDB file as C-alpha arrays ``(n_i, 3)`` (Å), read with
    biotite; models may differ in length."""
    import biotite.structure.io.pdb as pdb

    f = pdb.PDBFile.read(str(path))
    out = []
    for m in range(1, f.get_model_count() + 1):
        atoms = f.get_structure(model=m)
        out.append(atoms[(atoms.atom_name == "CA") & (atoms.element == "C")].coord.copy())
    return out
