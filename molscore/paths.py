"""Where a path given in a config or on the command line is looked for."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "resolve_data_path"]

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The folder holding the ``molscore`` package: the repository root of a source checkout."""


def resolve_data_path(path: str | os.PathLike) -> Path:
    """Find a file or folder named in a config (data, ``init:`` weights, image sources).

    Tries, in order: the path as given (absolute, or relative to the working directory),
    relative to the repository root (:data:`REPO_ROOT`, so that the shipped configs work from
    any folder), relative to ``$MOLSCORE_DATA_ROOT``.

    Raises:
        FileNotFoundError: none exists; the message lists the places tried.
    """
    path = Path(path).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    if not path.is_absolute() and os.environ.get("MOLSCORE_DATA_ROOT"):
        candidates.append(Path(os.environ["MOLSCORE_DATA_ROOT"]) / path)
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    raise FileNotFoundError(f"{str(path)!r} not found (tried "
                            f"{', '.join(str(c) for c in candidates)})")
