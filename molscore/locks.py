"""Exclusive locks on files (``flock``) that end with the process holding them.

A training run holds its output folder's ``.lock`` (:mod:`molscore.train`) and a dataset build
its folder's ``.build.lock`` (:class:`molscore.data.processed.DatasetWriter`): two of either
in one folder would overwrite each other's files. An ``flock`` belongs to the open file, which
a forked child (a ``DataLoader`` or build worker; any ``os.fork``) shares, and lasts until
every descriptor of it is closed: a holder killed with ``kill -9`` stayed locked until its
workers noticed, about 5 s later. So a child forked while a lock is held lets go of its copy
(:func:`_drop_locks_in_child`), and the lock ends with the process that took it.

A lock file may be removed by the process holding its lock (a run refused or interrupted
before it wrote anything removes the folder it created, :func:`discard_folder`): a process
that opened the file before and locks it after is refused, since the path no longer names the
file it locked (:func:`acquire`).
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import IO, Sequence

__all__ = ["acquire", "release", "make_folder", "discard_folder"]

_HELD: set[int] = set()  # descriptors of the lock files this process holds (or is taking)


def acquire(path: str | os.PathLike) -> IO[str]:
    """Open ``path`` (created if missing) and take an exclusive lock on it, without waiting.

    Returns:
        the open file; :func:`release` it (or end the process) to let go.

    Raises:
        BlockingIOError: another open file of ``path``, in this process or another, holds
            the lock, or the file was removed (or replaced) by its holder between this call's
            opening and locking it.
    """
    fh = open(Path(path), "a+", encoding="utf-8")
    _HELD.add(fh.fileno())      # before the lock: a child forked from now on must not share it
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        opened = os.fstat(fh.fileno())
        try:
            named = os.stat(path)
        except FileNotFoundError:
            named = None
        if named is None or (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
            raise BlockingIOError(errno.EWOULDBLOCK, f"{path} was removed by the process that held it")
    except BaseException:
        release(fh)
        raise
    return fh


def release(fh: IO[str]) -> None:
    """Let go of a lock :func:`acquire` took (closing its file); again: nothing."""
    if not fh.closed:
        _HELD.discard(fh.fileno())
        fh.close()


def make_folder(root: str | os.PathLike) -> list[Path]:
    """Create the folder ``root`` and its missing parents (as ``mkdir -p``), and say which
    this call created: those :func:`discard_folder` may remove. A folder that exists, or that
    another process creates meanwhile, is not among them.

    Returns:
        the folders created, ``root`` (absolute) first if it was, then its parents, innermost
        first; ``[]`` when ``root`` existed.

    Raises:
        OSError: a folder cannot be created (or ``root`` is a file); the folders this call
            created before are removed again.
    """
    made: list[Path] = []

    def make(folder: Path) -> None:
        try:
            os.mkdir(folder)
        except FileNotFoundError:
            if folder.parent == folder or folder.parent.is_dir():  # /proc/x: retrying loops
                raise
            make(folder.parent)
            make(folder)
        except OSError:
            if not folder.is_dir():
                raise
        else:
            made.append(folder)

    try:
        make(Path(os.path.abspath(root)))   # abspath: ``a/../b`` would name ``a/..`` a folder of its own
    except OSError:
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return made[::-1]


def discard_folder(made: Sequence[Path], lock_name: str) -> None:
    """Remove the folders ``made`` (:func:`make_folder`'s list) when the run that made them
    wrote nothing: its folder holds no file but its lock file ``lock_name``, or nothing. Call
    it when the run was refused or interrupted, or has ended; a folder that existed before is
    never in ``made``. Another run holding the folder's lock, or any other file in it, leaves
    every folder as it is; so does a parent that is not empty.

    The lock file is removed while this process holds its lock, so another run that opened it
    meanwhile is refused (:func:`acquire`) instead of writing into a removed folder.
    """
    if not made:
        return
    root = made[0]
    try:
        handle = acquire(root / lock_name)
    except OSError:         # BlockingIOError: another run holds the folder; or it is gone
        return
    try:
        if [p.name for p in root.iterdir()] != [lock_name]:
            return
        (root / lock_name).unlink()
        for folder in made:
            folder.rmdir()
    except OSError:         # a file appeared meanwhile, or a parent holds other folders
        return
    finally:
        release(handle)


def _drop_locks_in_child() -> None:
    """In a child just forked, point the descriptors of the held locks at ``/dev/null``.
    ``dup2`` rather than ``close``: the child's copy of the lock's file object, should it ever
    close, then closes ``/dev/null``, not a file the child opened later under the same number."""
    if not _HELD:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for fd in _HELD:
            os.dup2(null, fd, inheritable=False)
    finally:
        os.close(null)
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_locks_in_child)
