"""Folder locks (:mod:`molscore.locks`): exclusive, and ending with the process that took them."""
from __future__ import annotations

import os

import pytest

from molscore import locks


def _holds(pid: int, path) -> bool:
    """Whether process ``pid`` has ``path`` open."""
    fds = f"/proc/{pid}/fd"
    return any(os.path.realpath(os.path.join(fds, fd)) == os.path.realpath(path) for fd in os.listdir(fds))


def test_a_held_lock_refuses_a_second_holder_until_released(tmp_path):
    path = tmp_path / ".lock"
    fh = locks.acquire(path)
    with pytest.raises(BlockingIOError):
        locks.acquire(path)
    locks.release(fh)
    locks.release(fh)                       # again: nothing
    locks.release(locks.acquire(path))


def test_a_forked_child_lets_go_of_the_lock_file(tmp_path):
    """A child shares its parent's open files, and with them the flock: it must not keep the
    lock after the parent ends (a killed build's workers held the folder)."""
    path = tmp_path / ".lock"
    fh = locks.acquire(path)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                            # the child: report whether it holds the file open
        os.write(write, b"1" if _holds(os.getpid(), path) else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"0" and _holds(os.getpid(), path)
    with pytest.raises(BlockingIOError):    # the parent still holds it
        locks.acquire(path)
    locks.release(fh)


def test_a_lock_file_removed_by_its_holder_is_not_taken(tmp_path, monkeypatch):
    """A build that refuses its own new folder removes the lock file (holding its lock) and the
    folder; a process that opened the file just before took the lock once it was let go, on a
    file no path names any more, and a third one would lock a new file: two holders. Such a
    lock is refused."""
    path = tmp_path / ".lock"
    real = locks.fcntl.flock

    class Removing:                          # the holder removes the file between open and flock
        LOCK_EX, LOCK_NB = locks.fcntl.LOCK_EX, locks.fcntl.LOCK_NB

        @staticmethod
        def flock(fh, op):
            os.unlink(path)
            real(fh, op)

    monkeypatch.setattr(locks, "fcntl", Removing)
    with pytest.raises(BlockingIOError, match="was removed by the process that held it"):
        locks.acquire(path)
    assert locks._HELD == set()
    monkeypatch.undo()
    fh = locks.acquire(path)                # a file of its own again: taken
    with pytest.raises(BlockingIOError):
        locks.acquire(path)
    locks.release(fh)


def test_make_folder_names_only_the_folders_it_created(tmp_path):
    made = locks.make_folder(tmp_path / "a" / "b" / "c")
    assert made == [tmp_path / "a" / "b" / "c", tmp_path / "a" / "b", tmp_path / "a"]
    assert locks.make_folder(tmp_path / "a" / "b") == []          # existed
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        locks.make_folder(tmp_path / "file" / "x")                # a file in the way
    with pytest.raises(OSError):
        locks.make_folder(tmp_path / "new" / ("x" * 300))          # name too long: "new" undone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "file"]


def test_discard_folder_removes_only_what_wrote_nothing_and_no_one_holds(tmp_path):
    made = locks.make_folder(tmp_path / "out" / "run")
    (tmp_path / "out" / "run" / ".lock").write_text("")
    held = locks.acquire(tmp_path / "out" / "run" / ".lock")      # another run holds it
    locks.discard_folder(made, ".lock")
    assert (tmp_path / "out" / "run" / ".lock").is_file()
    locks.release(held)
    (tmp_path / "out" / "run" / "checkpoint.pt").write_text("x")   # something was written
    locks.discard_folder(made, ".lock")
    assert (tmp_path / "out" / "run" / "checkpoint.pt").is_file()
    (tmp_path / "out" / "run" / "checkpoint.pt").unlink()
    (tmp_path / "out" / "keep").mkdir()                            # a parent holds another folder
    locks.discard_folder(made, ".lock")
    assert not (tmp_path / "out" / "run").exists() and (tmp_path / "out" / "keep").is_dir()
    made = locks.make_folder(tmp_path / "x" / "y")
    locks.discard_folder(made, ".lock")                            # empty: all it made goes
    assert not (tmp_path / "x").exists()
    locks.discard_folder(locks.make_folder(tmp_path), ".lock")     # existed: kept
    assert tmp_path.is_dir()
