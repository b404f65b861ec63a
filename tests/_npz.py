"""Damaged ``.npz`` archives for the loaders' error tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def save_damaged_npz(path: Path, name: str, arr: np.ndarray) -> None:
    """Save ``arr`` as array ``name`` of an ``.npz`` at ``path``, then change one byte of its
    data, so that its CRC-32 no longer matches."""
    np.savez(path, **{name: arr})
    data = bytearray(path.read_bytes())
    data[data.find(arr.tobytes()) + 5] ^= 0xFF
    path.write_bytes(bytes(data))
