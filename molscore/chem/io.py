"""Input readers (``.smi``, ``.csv``, ``.sdf``, stdin) and a streaming SDF writer for
``molscore generate``.

Input records keep their file order. A record's name is the rest of a ``.smi`` line after
its SMILES, a CSV's name column (``--name-column``, else a column ``name``, else ``id``:
:data:`DEFAULT_NAME_COLUMNS`), an SDF record's title line (or ``--name-column`` property),
or its SMILES when there is none. SDF records are passed on as molecules: their atom order and stereo (from the 3D
coordinates, or from the wedges of 2D ones) are what generation keeps. A name is one line
(line breaks, as a quoted CSV cell or a multi-line SDF property can hold, become spaces:
the name is the output record's title line). Duplicate names are
allowed: the second occurrence of ``aspirin`` becomes ``aspirin#2``, the third ``aspirin#3``
(:func:`disambiguate`), and the reader reports them in ``duplicates``, so every
output record and every ``failures.csv`` row has a unique name.

Empty lines / empty SMILES cells become records with ``error`` set ("empty SMILES (line
N)", N the line's number in the file) so that they are reported and the run goes on.

For resuming an interrupted run, :func:`sdf_record_names` and :func:`failure_names` read
what the output SDF and ``failures.csv`` hold (ignoring a record torn by the interruption,
also in a truncated gzip stream), and :func:`keep_first_records` cuts both back to a prefix
(atomically), which the writers then extend (``append=True``).
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import os
import re
import sys
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

from rdkit import Chem, rdBase

from ..errors import message_line

__all__ = ["InputRecord", "DEFAULT_NAME_COLUMNS", "smiles_names", "InputFormatError", "read_records", "read_sdf_mols", "first_undecodable_line",
           "disambiguate", "SDFStreamWriter", "FailureLog", "OutputWriteError", "FORMATS", "sdf_record_names",
           "failure_names", "keep_first_records", "replace_atomically", "is_gzip", "is_smiles_title",
           "guess_format", "record_smiles"]

FORMATS = ("smi", "csv", "sdf")
_SDF_SUFFIXES = (".sdf", ".sd", ".mol")
FAILURE_COLUMNS = ["name", "input", "reason"]
# The CSV columns that name the records when no name column is asked for, in this order
# (found as :func:`_column` finds a column: ``Name``, ``ID`` too).
DEFAULT_NAME_COLUMNS = ("name", "id")


# A row of an input file: SMILES, name, molecule (SDF) and a reason it cannot be used.
_Row = tuple[str, str | None, Chem.Mol | None, str | None]


class InputFormatError(ValueError):
    """The input file as a whole cannot be read as asked (e.g. a missing CSV column)."""


@dataclass
class InputRecord:
    """One input molecule.

    Attributes:
        index: 0-based position among the records.
        name: unique name (see module docstring).
        smiles: the SMILES text as given (stripped); for an SDF record, the SMILES of its
            molecule.
        error: a reason when the record is unusable before generation (empty line,
            unreadable SDF record), else None.
        mol: the molecule of an SDF record (None for SMILES input).
    """

    index: int
    name: str
    smiles: str
    error: str | None = None
    mol: Chem.Mol | None = None


def guess_format(path: str, fmt: str | None = None) -> str:
    """The input format of ``path`` (one of :data:`FORMATS`): ``fmt`` when given, else by the
    suffix (``.csv`` / ``.tsv`` are ``csv``, ``.sdf`` / ``.sd`` / ``.mol`` are ``sdf``, a
    ``.gz`` after either is looked through; anything else and ``-``, standard input, ``smi``).

    Raises:
        InputFormatError: ``fmt`` is not one of :data:`FORMATS`.
    """
    if fmt:
        if fmt not in FORMATS:
            raise InputFormatError(f"unknown input format {fmt!r}; choose from {', '.join(FORMATS)}")
        return fmt
    if path == "-":
        return "smi"
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in (".csv", ".tsv"):
        return "csv"
    return "sdf" if suffixes and suffixes[-1] in _SDF_SUFFIXES else "smi"


def is_gzip(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a gzip file: it ends in ``.gz``, in any case (``OUT.SDF.GZ``)."""
    return str(path).lower().endswith(".gz")


def _open_bytes(path: str) -> IO[bytes]:
    """Input file ``path`` opened for reading bytes, decompressed when it is gzip.

    Raises:
        InputFormatError: the file does not exist, is a folder or cannot be opened."""
    if os.path.isdir(path):
        raise InputFormatError(f"input {path} is a folder; give a file")
    if not os.path.isfile(path):
        raise InputFormatError(f"input file not found: {path}")
    try:
        return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")
    except OSError as err:            # no permission to read, say
        raise InputFormatError(f"cannot read {path}: {err.strerror or err}") from None


def _open_text(path: str) -> IO[str]:
    """The input as text; UTF-8 with or without the byte-order mark spreadsheet programs
    write (``utf-8-sig``), which would otherwise become part of the first column's name.

    Raises:
        InputFormatError: the file does not exist or cannot be opened."""
    if path == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        return sys.stdin if buffer is None else io.TextIOWrapper(buffer, encoding="utf-8-sig",
                                                                 newline="")
    return io.TextIOWrapper(_open_bytes(path), encoding="utf-8-sig", newline="")


def first_undecodable_line(path: str) -> int:
    """1-based number of the first line of file ``path`` that is not UTF-8 (0: none)."""
    with _open_bytes(path) as fh:
        for number, line in enumerate(fh, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


_CX_FIELDS = Chem.CXSmilesFields.CX_ENHANCEDSTEREO | Chem.CXSmilesFields.CX_BOND_ATROPISOMER


def record_smiles(mol: Chem.Mol) -> str:
    """Canonical isomeric SMILES of ``mol`` without its explicit hydrogens (with them where
    RDKit cannot remove them), and its enhanced stereo groups and atropisomer axes, if any, as
    CXSMILES (``C[C@H](O)F |&1:1|``: a racemate, whose conformers have the tags' handedness,
    stays one; ``Oc1ccc2ccccc2c1-c1c(O)ccc2ccccc12 |wU:10.11|``: the wedge that marks an axis). The tags are
    ``mol``'s own, those of its conformers: where RDKit's CXSMILES writer inverts a group's
    tags to its canonical form (``C[C@@H](O)F |&1:1|`` as ``C[C@H](O)F |&1:1|``, the same
    racemate but the other enantiomer as drawn), the SMILES is written from ``mol``'s atoms in
    ``Chem.MolToSmiles``'s canonical output order instead, without that step (the same text
    but for the ring closures' numbering, which can differ). It is written from a copy without
    conformers: RDKit writes an axis's wedge from the first conformer's coordinates where there
    is one, and none where it cannot read the axis there (a distorted conformer), from its
    label otherwise."""
    mol = Chem.Mol(mol, True)           # quick copy: no conformers (nor properties)
    try:
        mol = Chem.RemoveHs(mol)
    except Exception:  # RDKit raises several sanitisation errors
        pass
    smiles = Chem.MolToCXSmiles(mol, Chem.SmilesWriteParams(), _CX_FIELDS)
    plain = Chem.MolToSmiles(mol)               # sets the canonical output order
    if smiles.split(" ")[0] == plain:
        return smiles
    order = mol.GetPropsAsDict(includePrivate=True, includeComputed=True)["_smilesAtomOutputOrder"]
    params = Chem.SmilesWriteParams()
    params.canonical = False           # already in canonical order; keeps the groups' tags
    return Chem.MolToCXSmiles(Chem.RenumberAtoms(mol, list(order)), params, _CX_FIELDS)


_GZIP_MAGIC = b"\x1f\x8b"
_STDIN_GZIP = ("input on stdin is gzip-compressed; unpack it (zcat FILE.gz | molscore ...) or pass "
               "the file itself with --input FILE.gz")


def read_sdf_mols(path: str | os.PathLike) -> Iterator[Chem.Mol | None]:
    """The records of an SDF (``.sdf``, gzipped ``.gz``, or ``-`` for stdin) as sanitised
    molecules, in file order, streamed, hydrogens and properties kept; ``None`` for a record
    RDKit cannot read (records as :func:`_sdf_texts` splits them). (Training data is read by
    the more lenient :func:`molscore.data.conformers.read_sdf`.)

    Raises:
        InputFormatError: the file does not exist, cannot be opened (no permission to read
            it), is gzip-compressed where it is not read as such (stdin, a name without
            ``.gz``), or cannot be read on (a truncated or non-gzip ``.gz``), raised where it
            is met, after the records before it.
    """
    return (mol for _, mol in _read_sdf(path))


def _read_sdf(path: str | os.PathLike) -> Iterator[tuple[bytes, Chem.Mol | None]]:
    """``(record's text, molecule or None)`` per record of :func:`read_sdf_mols`, each record
    read by RDKit on its own.

    Raises:
        InputFormatError: as :func:`read_sdf_mols`.
    """
    path = str(path)
    if path == "-":                           # a text-only stdin (no buffer) is read whole
        handle = getattr(sys.stdin, "buffer", None) or io.BytesIO(sys.stdin.read().encode("utf-8"))
    else:
        handle = _open_bytes(path)
    try:
        _skip_byte_order_mark(handle)
        if _peek(handle, 2) == _GZIP_MAGIC:     # else one unreadable record, no word why
            raise InputFormatError(_STDIN_GZIP if path == "-" else _misnamed_gzip(path))
        for text in _sdf_texts(handle):
            with rdBase.BlockLogs():
                yield text, next(Chem.ForwardSDMolSupplier(io.BytesIO(text), removeHs=False), None)
    except (EOFError, OSError, zlib.error) as err:
        raise InputFormatError(f"cannot read {path}: {err}") from None
    finally:
        if path != "-":
            handle.close()


def _sdf_texts(handle: IO[bytes]) -> Iterator[bytes]:
    """The text of each record of the binary SDF stream ``handle``, streamed, without the
    ``$$$$`` line that ends it (the last record may lack one). A ``$$$$`` line ends a record
    also where the property before it lacks its closing blank line (RDKit's
    ``ForwardSDMolSupplier`` read on into the next record, which was lost without a word, and
    made the rest of it the property's value); a record's first line is its
    title whatever it holds (a molecule named ``$$$$``, as RDKit reads it). Blank lines after
    the last record are no record (they were one RDKit cannot read), and lone CR line ends
    (classic Mac OS) become LF (RDKit read no record at all in such a file)."""
    lines: list[bytes] = []
    for line in handle:
        for piece in line.splitlines(keepends=True) if b"\r" in line.rstrip(b"\r\n") else [line]:
            if lines and piece.rstrip() == b"$$$$":
                yield b"".join(lines)
                lines = []
            else:
                lines.append(piece[:-1] + b"\n" if piece.endswith(b"\r") else piece)
    if any(line.strip() for line in lines):
        yield b"".join(lines)


def _skip_byte_order_mark(handle: IO[bytes]) -> None:
    """Read past a UTF-8 byte-order mark at the start of binary ``handle`` (which RDKit would
    make part of the first record's title line, its name)."""
    bom = codecs.BOM_UTF8
    if _peek(handle, len(bom)).startswith(bom):
        handle.read(len(bom))


def _peek(handle: IO[bytes], size: int) -> bytes:
    """Up to ``size`` bytes (perhaps more with ``peek``) at the position of binary ``handle``,
    which stays where it is."""
    if hasattr(handle, "peek"):                   # files, gzip streams, sys.stdin.buffer
        return handle.peek(size)[:size]
    head = handle.read(size)                      # io.BytesIO
    handle.seek(-len(head), io.SEEK_CUR)
    return head


def _sdf_rows(path: str, name_prop: str | None) -> Iterator[_Row]:
    """A row per SDF record (:func:`read_sdf_mols`); a record RDKit cannot read, or whose
    SMILES it cannot write, gets a reason instead of a molecule (the one RDKit cannot read is
    named by its title line, if it has one, unless ``name_prop`` names the records).

    Raises:
        UnicodeDecodeError: a record's title line or a property, or the text of a record RDKit
            cannot read (a UTF-16 file), is not UTF-8 text.
        InputFormatError: after the last record, when no record has the property
            ``name_prop`` (a misspelt ``--name-column``, which would name every molecule by
            its SMILES, as a missing CSV column is refused).
    """
    prop = name_prop or "_Name"
    properties, named = None, False
    for number, (text, mol) in enumerate(_read_sdf(path), 1):
        if mol is None:
            title = text.decode("utf-8").split("\n", 1)[0].strip()
            yield "", (None if name_prop else title or None), None, \
                f"SDF record {number} cannot be read by RDKit"
            continue
        for key in ["_Name", *mol.GetPropNames()]:   # RDKit's str of text not UTF-8 raises
            mol.GetProp(key)       # UnicodeDecodeError: here, not when the output is written
        if properties is None:
            properties = list(mol.GetPropNames())
        named = named or mol.HasProp(prop)
        name = mol.GetProp(prop).strip() if mol.HasProp(prop) else ""
        try:
            smiles = record_smiles(mol)
        except Exception as err:  # noqa: BLE001 - an RDKit error fails this record, not the file
            yield "", (name or None), None, (f"SDF record {number}: RDKit cannot write its SMILES "
                                             f"({message_line(err) or type(err).__name__})")
            continue
        yield smiles, (name or None), mol, None
    if name_prop is not None and properties is not None and not named:
        raise InputFormatError(f"no SDF record has the property {name_prop!r} (first record's: "
                               f"{', '.join(properties) or 'none'}); use --name-column")


def is_smiles_title(fields: Sequence[str]) -> bool:
    """Whether the fields of a ``.smi`` file's first line make it a title line: the first
    holds ``SMILES`` in any case, as RDKit's ``SmilesWriter`` writes it and databases name
    the column (``canonical_smiles``, ``SMILES_string``; no SMILES holds it)."""
    return bool(fields) and "smiles" in fields[0].lower()


# A CXSMILES extension (``|&1:1|``, also with blanks inside, as atom labels ``|$R 1;;$|`` may
# hold) after the blank that ends a SMILES, then the name.
_CX_EXTENSION = re.compile(r"(\|[^|]*\|)(?:\s+(.*))?\Z", re.S)


def _smi_rows(handle: IO[str]) -> Iterator[tuple[str, str | None, int]]:
    """``(SMILES, name, line number)`` per line; ``#`` comments and a title line
    (:func:`is_smiles_title`) are skipped. A CXSMILES extension ``|...|`` after the SMILES (a
    ``.cxsmiles`` file) is part of the SMILES, not the name. The name is the rest of the line,
    unless the title line names more than two columns (``SMILES Name logP``, as RDKit's
    ``SmilesWriter`` writes properties): then it is the second field alone, the fields split
    at tabs where the title is (an empty name cell is no name), else at blanks."""
    first, extra, sep = True, False, None
    for number, line in enumerate(handle, 1):
        line = line.strip()
        if line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if first and is_smiles_title(parts):
            first = False
            sep = "\t" if "\t" in line else None
            extra = len(line.split(sep)) > 2     # property columns after the name
            continue
        first = first and not parts
        if extra and sep:                       # a tab-separated table: cells as they are
            cells = [cell.strip() for cell in line.split(sep)]
            yield cells[0], (cells[1] if len(cells) > 1 and cells[1] else None), number
            continue
        if len(parts) > 1 and (cx := _CX_EXTENSION.match(parts[1])):
            parts = [f"{parts[0]} {cx.group(1)}", *filter(None, [cx.group(2)])]
        name = parts[1].strip() if len(parts) > 1 else None
        if name and extra:
            name = name.split(None, 1)[0]
        yield (parts[0] if parts else ""), name, number


def _column(header: Sequence[str], wanted: str) -> str | None:
    """The header's column ``wanted``: exactly, else the one column that equals it ignoring
    case and surrounding blanks (``SMILES``, `` smiles``); ``None`` when there is none."""
    if wanted in header:
        return wanted
    loose = [col for col in header if col.strip().casefold() == wanted.strip().casefold()]
    return loose[0] if len(loose) == 1 else None


# csv's field size limit while a CSV input is parsed: the largest a C long holds everywhere,
# so that a cell over csv's default (131072 characters, a giant SMILES) is read and fails as
# its record instead of the whole file.
_CSV_FIELD_LIMIT = 2**31 - 1

# A line read after a CSV input's last: a row of its own, unless a quote left open takes it
# into its cell (which would hold the rest of the file). No NUL: Python 3.10's csv refuses it.
_CSV_END = "\uffffmolscore: end of input\uffff"


@contextmanager
def _csv_field_limit() -> Iterator[None]:
    """csv's field size limit raised to :data:`_CSV_FIELD_LIMIT`, then restored (it is the
    module's, so it is raised only while parsing, never while a row is yielded)."""
    limit = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(limit)


def _next_row(reader: Iterator[list[str]]) -> list[str] | None:
    """The next row of a ``csv.reader`` of lines that end with :data:`_CSV_END` (``[]`` for a
    blank line), parsed with :func:`_csv_field_limit`; None after the last.

    Raises:
        InputFormatError: a quote is not closed.
    """
    start = reader.line_num + 1
    with _csv_field_limit():
        cells = next(reader)
    if cells == [_CSV_END]:
        return None
    if cells and cells[-1].endswith(_CSV_END):
        raise InputFormatError(f"malformed CSV: the quote opened near line {start} is not "
                               "closed (the rest of the file would be one cell)")
    return cells


def _csv_rows(handle: IO[str], smiles_column: str, name_column: str | None,
              delimiter: str) -> Iterator[tuple[str, str | None, int]]:
    """``(SMILES, name, number of the row's first line)`` per row; blank lines before the
    header and blank rows are skipped. A column is found as :func:`_column` says (of columns
    of the same name, the last, as ``csv.DictReader`` takes it); without ``name_column`` the
    names are in the first of :data:`DEFAULT_NAME_COLUMNS` the header has (other than the
    SMILES column), if any. When the header has no ``smiles_column`` with ``delimiter`` but
    has it with ``;`` or a tab (a spreadsheet's export in some locales), that delimiter is
    used. A cell may be of any length (:data:`_CSV_FIELD_LIMIT`)."""
    blank, first = [], handle.readline()
    while first and not first.strip():
        blank.append(first)
        first = handle.readline()
    with _csv_field_limit():
        header_line = next(csv.reader([first], delimiter=delimiter), [])
        if _column(header_line, smiles_column) is None:
            delimiter = next((d for d in (";", "\t") if d != delimiter and _column(
                next(csv.reader([first], delimiter=d), []), smiles_column) is not None),
                delimiter)
    reader = csv.reader(itertools.chain(blank, [first], handle, [_CSV_END]), delimiter=delimiter)
    try:
        for _ in blank:                        # read, so that line numbers count them
            next(reader)
        header = (_next_row(reader) or []) if first else []
        found = _column(header, smiles_column)
        if found is None:
            raise InputFormatError(f"CSV has no column {smiles_column!r} (columns: "
                                   f"{', '.join(header) or 'none'}); use --smiles-column")
        position = {column: i for i, column in enumerate(header)}
        smiles_at, name_at = position[found], None
        if name_column is not None:
            found = _column(header, name_column)
            if found is None:
                raise InputFormatError(f"CSV has no column {name_column!r} (columns: "
                                       f"{', '.join(header)}); use --name-column")
            name_at = position[found]
        else:
            name_at = next((position[col] for col in (_column(header, wanted) for wanted in
                                                      DEFAULT_NAME_COLUMNS)
                            if col is not None and position[col] != smiles_at), None)
        while True:
            start = reader.line_num + 1
            if (cells := _next_row(reader)) is None:
                break
            if not cells:
                continue
            smiles = cells[smiles_at].strip() if smiles_at < len(cells) else ""
            name = cells[name_at].strip() if name_at is not None and name_at < len(cells) else ""
            yield smiles, (name or None), start
    except csv.Error as err:                   # e.g. a cell over _CSV_FIELD_LIMIT characters
        raise InputFormatError(f"malformed CSV near line {reader.line_num + 1}: {err}") from None


def disambiguate(name: str, seen: dict[str, int]) -> str:
    """``name`` the first time, ``name#k`` the k-th time (``seen`` is updated); ``k`` is
    raised past a name already given (an input name ``x#2`` before a second ``x`` makes it
    ``x#3``), so every name returned is new."""
    seen[name] = k = seen.get(name, 0) + 1
    if k == 1:
        return name
    while f"{name}#{k}" in seen:
        k += 1
    unique = f"{name}#{k}"
    seen[unique] = 1
    return unique


def _one_line(name: str) -> str:
    """``name`` with each line break (and the blanks around it) made one space."""
    return re.sub(r"\s*[\r\n]+\s*", " ", name)


def read_records(path: str, *, fmt: str | None = None, smiles_column: str = "smiles",
                 name_column: str | None = None,
                 duplicates: list[str] | None = None) -> Iterator[InputRecord]:
    """Read molecules from a ``.smi`` file (``SMILES [name]`` per line, ``#`` comments),
    a ``.csv``/``.tsv`` file (named columns; ``name_column`` default: a column ``name``, else
    ``id``, else none), an ``.sdf`` file (``name_column``: the record
    property that names a molecule, default its title line) or stdin (``path == "-"``,
    ``.smi`` unless ``fmt`` says otherwise). Gzipped files work too.

    Text must be UTF-8 (a leading byte-order mark is dropped).

    Args:
        duplicates: when given, the renamed duplicate names are appended to it.

    Raises:
        InputFormatError: missing file, missing CSV column (raised on the first ``next``),
            columns asked of ``.smi`` lines (a ``smiles_column`` other than ``smiles`` or a
            ``name_column``: a table saved as ``.txt``, whose every line would fail as an
            invalid SMILES), text that is not UTF-8, malformed CSV (a quote left open) or a
            truncated gzip stream (raised where it is met, naming the line).
    """
    fmt = guess_format(path, fmt)
    if fmt == "smi" and (smiles_column != "smiles" or name_column is not None):
        asked = " / ".join(repr(c) for c in (smiles_column, name_column) if c not in (None, "smiles"))
        raise InputFormatError(f"{'stdin' if path == '-' else path} is read as .smi lines (SMILES, "
                               f"then the name), which have no column {asked}; for a table, name "
                               "the file .csv or .tsv or use --format csv")
    if fmt == "sdf":
        try:
            yield from _numbered(_sdf_rows(path, name_column), duplicates)
        except UnicodeDecodeError as err:
            raise _not_utf8(path, err) from None
        return
    handle = _open_text(path)
    try:
        if fmt == "csv":
            delimiter = "\t" if ".tsv" in Path(path).suffixes else ","
            rows = _csv_rows(handle, smiles_column, name_column, delimiter)
        else:
            rows = _smi_rows(handle)
        yield from _numbered(((smiles, name, None, None if smiles else
                               f"empty SMILES (line {line})") for smiles, name, line in rows),
                             duplicates)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise InputFormatError(f"cannot read {path}: {err}") from None
    finally:
        if path != "-":
            handle.close()
        elif handle is not sys.stdin:
            handle.detach()                 # leave sys.stdin itself open


def _misnamed_gzip(path: str) -> str:
    """The message for a gzip file ``path`` whose name does not end in ``.gz``."""
    return (f"{path} is gzip-compressed, but its name does not end in .gz; rename it "
            f"({Path(path).name}.gz) or unpack it")


def _not_utf8(path: str, err: UnicodeDecodeError) -> InputFormatError:
    """The error for input ``path`` that is not UTF-8, naming its first such line (a gzip
    stream on stdin, which is not unpacked, or in a file whose name lacks ``.gz``, told as such)."""
    if path == "-" and err.object[:2] == _GZIP_MAGIC:
        return InputFormatError(_STDIN_GZIP)
    if path != "-" and not is_gzip(path):
        with open(path, "rb") as fh:
            if fh.read(2) == _GZIP_MAGIC:
                return InputFormatError(_misnamed_gzip(path))
    where = "stdin" if path == "-" else f"{path}, line {first_undecodable_line(path)}"
    return InputFormatError(f"input is not UTF-8 text ({where}: byte "
                            f"0x{err.object[err.start]:02x}); save it as UTF-8")


def _numbered(rows: Iterable[_Row], duplicates: list[str] | None) -> Iterator[InputRecord]:
    """Input records, with unique names, from rows."""
    seen: dict[str, int] = {}
    for index, (smiles, name, mol, error) in enumerate(rows):
        base = _one_line(name or smiles or f"record_{index + 1}")
        unique = disambiguate(base, seen)
        if unique != base and duplicates is not None:
            duplicates.append(unique)
        yield InputRecord(index, unique, smiles, error, mol)


def smiles_names(records: Iterable[InputRecord]) -> list[str]:
    """The unique names ``records`` get when none has a name of its own: each its SMILES
    (``record_N`` when empty), as :func:`read_records` names them without a name column."""
    return [record.name for record in _numbered(
        ((record.smiles, None, record.mol, record.error) for record in records), None)]


def _mol_block_records(mol: Chem.Mol) -> str:
    """SDF text of every conformer of ``mol``; conformer properties become record properties."""
    buf = io.StringIO()
    writer = Chem.SDWriter(buf)
    for conf in mol.GetConformers():
        rec = Chem.Mol(mol)
        for key, value in conf.GetPropsAsDict(includePrivate=False, includeComputed=False).items():
            if isinstance(value, float):
                rec.SetDoubleProp(key, value)
            elif isinstance(value, int) and not isinstance(value, bool):
                rec.SetIntProp(key, value)
            else:
                rec.SetProp(key, str(value))
        writer.write(rec, confId=conf.GetId())
    writer.close()
    return buf.getvalue()


class SDFStreamWriter:
    """Append molecules to an SDF (``.sdf`` or ``.sdf.gz``) one at a time.

    Each molecule's records are rendered in memory first and written, unbuffered, with
    ``write`` calls that leave nothing pending, then ``fsync``: a run that dies leaves every
    finished molecule on disk and no half-written record from RDKit. A ``.sdf.gz`` gets one
    complete gzip member per molecule (as ``cat a.gz b.gz`` makes, which ``zcat`` and Python's
    ``gzip`` read as one stream; header time 0, so a run's bytes are its records'), so a run
    killed between molecules leaves a valid gzip file, not a stream without its end. An
    ``OSError`` (a full disk) is an :class:`OutputWriteError` naming the output, and
    :meth:`close` does not repeat it.
    """

    def __init__(self, path: str | os.PathLike, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._gz = is_gzip(self.path)
        self._fh = open(self.path, "ab" if append else "wb", buffering=0)
        self.records = 0

    def write(self, mol: Chem.Mol) -> int:
        """Write all conformers of ``mol``; returns the number of records written."""
        data = _mol_block_records(mol).encode("utf-8")
        if self._gz:
            data = gzip.compress(data, mtime=0)
        _write_all(self._fh, data, self.path, sync=True)
        n = mol.GetNumConformers()
        self.records += n
        return n

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "SDFStreamWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OutputWriteError(OSError):
    """An ``OSError`` met writing an output file (a full disk), naming the file."""


def _write_all(fh: IO[bytes], data: bytes, path: Path, sync: bool = False) -> None:
    """Write ``data`` whole to the unbuffered file ``fh`` of ``path`` (a raw ``write`` may take
    part of it), with ``sync`` then ``fsync``.

    Raises:
        OutputWriteError: the write failed (a full disk, whose error names no file)."""
    try:
        view = memoryview(data)
        while view:
            view = view[fh.write(view):]
        if sync:
            os.fsync(fh.fileno())
    except OSError as err:
        raise OutputWriteError(err.errno, err.strerror or str(err), str(path)) from err


class FailureLog:
    """``failures.csv`` (columns ``name,input,reason``), one row per failure, each written
    whole, unbuffered (``append=True`` extends an existing file); a failed write is an
    :class:`OutputWriteError`."""

    def __init__(self, path: str | os.PathLike, append: bool = False):
        self.path = Path(path)
        append = append and self.path.is_file() and self.path.stat().st_size > 0
        self._fh = open(self.path, "ab" if append else "wb", buffering=0)
        if not append:
            self._write(FAILURE_COLUMNS)
        self.count = 0

    def _write(self, row: list[str]) -> None:
        text = io.StringIO(newline="")
        csv.writer(text).writerow(row)
        _write_all(self._fh, text.getvalue().encode("utf-8"), self.path)

    def add(self, name: str, input_text: str, reason: str) -> None:
        self._write([name, input_text, reason])
        self.count += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "FailureLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _sdf_records(path: Path) -> Iterator[str]:
    """The complete records (through their ``$$$$`` line) of an SDF, in order; a torn last
    record, or the rest of a gzip stream cut off mid-write, is left out. A record's first
    line is its title whatever it holds (as RDKit reads it: a molecule named ``$$$$``)."""
    fh = gzip.open(path, "rt", encoding="utf-8") if is_gzip(path) else \
        open(path, encoding="utf-8")
    lines: list[str] = []
    with fh:
        try:
            for line in fh:
                lines.append(line)
                if line == "$$$$\n" and len(lines) > 1:
                    yield "".join(lines)
                    lines = []
        except (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError):
            return


def _failure_rows(path: Path) -> list[str]:
    """The complete rows of a ``failures.csv`` as written (header and a torn last row left
    out); a row whose quoted cell holds a line break spans several lines."""
    if not path.is_file():
        return []
    rows, row = [], ""
    with open(path, encoding="utf-8", newline="") as fh:
        for line in fh:
            row += line
            if row.endswith("\n") and row.count('"') % 2 == 0:   # not inside quotes
                rows.append(row)
                row = ""
    return rows[1:] if rows and rows[0].startswith(FAILURE_COLUMNS[0] + ",") else rows


def sdf_record_names(path: str | os.PathLike) -> list[str]:
    """Title line (``_Name``) of every complete record of an SDF (``.sdf`` / ``.sdf.gz``)."""
    return [record.split("\n", 1)[0] for record in _sdf_records(Path(path))]


def failure_names(path: str | os.PathLike) -> list[str]:
    """``name`` of every complete row of a ``failures.csv`` (none when it does not exist)."""
    with _csv_field_limit():             # a row may hold a giant input record
        return [next(csv.reader(io.StringIO(row, newline="")))[0]
                for row in _failure_rows(Path(path))]


def keep_first_records(sdf: str | os.PathLike, n_records: int,
                       failures: str | os.PathLike, n_failures: int) -> None:
    """Cut an SDF back to its first ``n_records`` complete records and a ``failures.csv``
    to its header and first ``n_failures`` rows; each file is replaced atomically."""
    sdf, failures = Path(sdf), Path(failures)
    replace_atomically(sdf, islice(_sdf_records(sdf), n_records) if sdf.is_file() else [])
    header = ",".join(FAILURE_COLUMNS) + "\r\n"        # as csv.writer writes it
    replace_atomically(failures, [header] + _failure_rows(failures)[:n_failures])


def replace_atomically(path: str | os.PathLike, chunks: Iterable[str]) -> None:
    """Write text ``chunks`` (UTF-8, gzip for ``.gz``) to ``path`` with
    :func:`molscore.checkpoint.write_atomic`: a crash leaves the old file or the new one,
    never a torn one; an ``OSError`` names ``path`` and leaves no temporary file."""
    from ..checkpoint import write_atomic      # torch: imported when a file is written

    path = Path(path)

    def write(fh: IO[bytes]) -> None:
        raw = gzip.GzipFile(fileobj=fh, mode="wb") if is_gzip(path) else fh
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        text.writelines(chunks)
        text.flush()
        text.detach()                         # fh stays open for write_atomic
        if raw is not fh:
            raw.close()                       # the gzip trailer

    write_atomic(path, write)
