"""Molecules reserved for held-out evaluation, excluded from every training set.

The list holds InChIKey connectivity blocks (the first 14 characters of the
InChIKey: the skeleton, without stereo, isotopes or protonation), one per line,
``#`` comments allowed (a list whose entries are not InChIKeys or their blocks is refused:
it would leave nothing out). It ships as ``datasets/reserved_inchikeys.txt``; every
dataset builder and training set drops the molecules it lists (:func:`reserved_keys`:
another list given there adds to it, never replaces it), and those it cannot check: a
molecule RDKit makes no InChIKey for (over 1,023 atoms, InChI's limit) might be a reserved
one (:func:`exclusion_reason`).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from rdkit import Chem, rdBase

__all__ = ["DEFAULT_RESERVED_PATH", "RESERVED_REASON", "NO_INCHIKEY_REASON", "BLOCK", "load_reserved",
           "reserved_keys", "inchikey_block", "exclusion_reason"]

DEFAULT_RESERVED_PATH = Path(__file__).resolve().parents[2] / "datasets" / "reserved_inchikeys.txt"
RESERVED_REASON = "reserved for held-out evaluation"  # the failures.csv reason of a dropped one
NO_INCHIKEY_REASON = "RDKit makes no InChIKey for it, so it cannot be checked against the reserved list"
BLOCK = re.compile(r"[A-Z]{14}")  # an InChIKey connectivity block


@functools.lru_cache(maxsize=8)
def _load(path: str) -> frozenset[str]:
    blocks = set()
    with open(path, encoding="utf-8-sig") as fh:  # -sig: a byte-order mark is no part of a key
        for number, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            block = line[:14].upper()
            if not BLOCK.fullmatch(block):
                raise ValueError(f"{path}, line {number}: {line[:40]!r} is not an InChIKey or its first "
                                 "block (14 letters); a list of other keys would leave nothing out")
            blocks.add(block)
    return frozenset(blocks)


def load_reserved(path: str | Path | None = None) -> frozenset[str]:
    """The reserved InChIKey connectivity blocks (14 characters each).

    Args:
        path: a text file, one InChIKey (or its first block) per line; defaults to
            the list shipped in ``datasets/reserved_inchikeys.txt``.

    Raises:
        FileNotFoundError: the list does not exist.
        ValueError: a line that is not an InChIKey nor its first block (a SMILES list, a CSV
            with a header), with its number.
    """
    path = Path(path) if path is not None else DEFAULT_RESERVED_PATH
    if not path.is_file():
        raise FileNotFoundError(f"reserved InChIKey list not found: {path}")
    return _load(str(path.resolve()))


def reserved_keys(extra: str | Path | None = None) -> frozenset[str]:
    """The blocks a dataset or training set leaves out: the shipped list's, and ``extra``'s
    (another list, e.g. development-benchmark molecules) as well.

    Raises:
        FileNotFoundError: ``extra`` does not exist.
        ValueError: ``extra`` holds a line that is not an InChIKey (:func:`load_reserved`).
    """
    shipped = load_reserved()
    return shipped if extra is None else shipped | load_reserved(extra)


def inchikey_block(mol: Chem.Mol) -> str:
    """First 14 characters of the InChIKey of ``mol`` (``""`` when RDKit cannot make one)."""
    with rdBase.BlockLogs():
        key = Chem.MolToInchiKey(mol) or ""
    return key[:14]


def exclusion_reason(block: str, reserved: frozenset[str]) -> str | None:
    """Why a molecule whose InChIKey connectivity block is ``block`` (:func:`inchikey_block`)
    stays out of every training set: :data:`RESERVED_REASON` (``block`` is in ``reserved``),
    :data:`NO_INCHIKEY_REASON` (``block`` is ``""``: unknown, so possibly reserved) or ``None``
    (it may be trained on)."""
    if not block:
        return NO_INCHIKEY_REASON
    return RESERVED_REASON if block in reserved else None
