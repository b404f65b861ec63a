"""Processes below a test's subprocess (Linux ``/proc``); running one in a session of its own, to
its end or stopped midway by a signal."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]


def _running() -> Iterator[tuple[int, list[str]]]:
    """``(pid, fields)`` of every running process (zombies left out): the fields of its
    ``/proc/PID/stat`` after the command name (state, parent, process group, ...)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:                                    # gone meanwhile
            continue
        if fields[0] != "Z":
            yield int(stat.parent.name), fields


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (zombies left out)."""
    return [kid for kid, fields in _running() if int(fields[1]) == pid]


def group(pgid: int) -> list[int]:
    """Process ids of the process group ``pgid`` (zombies left out)."""
    return [member for member, fields in _running() if int(fields[2]) == pgid]


def _start(cmd: list[str], cwd: Path, env: dict | None, **streams) -> subprocess.Popen:
    """``cmd`` started in a session of its own (a process group, as in a terminal), with
    SIGINT at its default (a shell's background job ignores it), this checkout on PYTHONPATH."""
    return subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                            start_new_session=True, **streams,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def run_alone(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[int, str, str, list[int]]:
    """Run ``cmd`` to its end in a session of its own (a process group, as in a terminal);
    its exit status, stdout, stderr, and the processes of its group still running once it
    exited (up to 30 s later), which are killed then."""
    out, err = cwd / "run_alone.out", cwd / "run_alone.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:   # files: see stop_midway
        run = _start(cmd, cwd, env, stdout=stdout, stderr=stderr)
    try:
        code = run.wait(timeout=240)
        deadline = time.monotonic() + 30
        while (left := group(run.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return code, out.read_text(), err.read_text(), left


def descendants(pid: int) -> list[int]:
    """The running processes below ``pid``: its children, theirs, and so on."""
    kids = children(pid)
    return kids + [grandchild for kid in kids for grandchild in descendants(kid)]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (exists and is no zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_midway(cmd: list[str], how: str, cwd: Path, ready: Callable[[list[int]], bool],
                env: dict | None = None, settle: float = 0.0) -> tuple[int, str, list[int], list[int]]:
    """Run ``cmd`` in its own process group (as in a terminal) until ``ready(processes below
    it)`` (then ``settle`` s more), send Ctrl-C to the group (``how == "ctrl-c"``) or SIGTERM
    to the main process; its exit status, stderr, the processes seen below it and those still
    running a second after it exited. Whatever survives is killed afterwards."""
    err = cwd / "stderr.txt"
    with open(err, "w") as stderr:                # a file: a surviving worker would hold a pipe open
        run = _start(cmd, cwd, env, stdout=subprocess.DEVNULL, stderr=stderr)
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while not ready(seen := descendants(run.pid)):
            assert run.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.2)
        time.sleep(settle)
        seen = sorted(set(seen) | set(descendants(run.pid)))
        if how == "ctrl-c":
            os.killpg(run.pid, signal.SIGINT)
        else:
            run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=60)
        time.sleep(1)
        left = [pid for pid in seen if alive(pid)]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        for pid in seen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return code, err.read_text(), seen, left
