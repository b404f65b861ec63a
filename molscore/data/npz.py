"""Reading the arrays of an ``.npz`` archive (what ``numpy.savez`` writes) with one-line errors.

``numpy.load`` reads whatever it is given: a text file or a pickle is refused with advice to
load it unsafely ("This file contains pickled (object) data..."), naming no file; a single
``.npy`` array is returned as an array; an empty or truncated file raises ``EOFError`` or
``zipfile.BadZipFile``. :func:`read_npz` checks the file first and names it in every error.
Nothing is unpickled (``allow_pickle=False``).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import message_line

__all__ = ["NpzError", "read_npz"]

_NPY_MAGIC = b"\x93NUMPY"


class NpzError(ValueError):
    """An ``.npz`` archive that cannot be read: its message is one line naming the file."""


def _not_npz_reason(path: Path) -> str | None:
    """Why ``path`` is not an ``.npz`` archive (``None`` when it is a zip archive)."""
    if path.is_dir():
        return "it is a folder"
    if zipfile.is_zipfile(path):
        return None
    with open(path, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if not head:
        return "it is empty (0 bytes)"
    if head.startswith(b"PK\x03\x04"):
        return "it is truncated (a zip archive without its end: written or copied only in part?)"
    if head == _NPY_MAGIC:
        return "it is a single .npy array; numpy.savez writes an archive of named arrays"
    return "it is not a zip archive, which numpy.savez writes"


def read_npz(path: str | os.PathLike,
             select: Callable[[Sequence[str]], Iterable[str]] | None = None
             ) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` archive ``path``: ``{name: array}`` in the archive's order.

    Args:
        select: the names to read, given the archive's names (default: all of them); arrays
            not selected are not read.

    Raises:
        NpzError: ``path`` is missing, a folder, or not an ``.npz`` archive (``PATH is not an
            .npz archive: WHY``), or an array cannot be read (a damaged member, Python
            objects, which are never unpickled): one line naming the file.
    """
    path = Path(path)
    try:
        reason = _not_npz_reason(path)
    except OSError as err:
        raise NpzError(f"cannot read {path}: {err.strerror or err}") from None
    if reason is not None:
        raise NpzError(f"{path} is not an .npz archive: {reason}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise NpzError(f"{path} is not an .npz archive: numpy: {message_line(err)}") from None
    out: dict[str, np.ndarray] = {}
    with archive:
        names = list(archive.files)
        for name in (names if select is None else select(names)):
            try:
                out[name] = archive[name]
            except Exception as err:  # zipfile, zlib, numpy's format errors: many types
                reason = message_line(err) or type(err).__name__
                if "allow_pickle" in reason:  # numpy's advice to unpickle: not taken here
                    reason = "it holds Python objects (dtype object), which are never unpickled"
                raise NpzError(f"{path}: cannot read array {name!r}: {reason}") from None
    return out
