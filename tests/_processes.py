"""Processes below a test's subprocess (Linux ``/proc``), and stopping one midway by a signal."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (zombies left out)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:                                    # gone meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


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
        run = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=stderr,
                               env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                               start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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
