"""Bench scripts stopped by Ctrl-C or SIGTERM leave no worker process running."""
from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from test_parallel import _children

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
DRUG = "CC(=O)Nc1ccc(OCC(O)CNC(C)C)cc1"      # slow enough to embed that the run is mid-pool

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    """The running processes below ``pid``: its children, theirs, and so on."""
    kids = _children(pid)
    return kids + [grandchild for kid in kids for grandchild in _descendants(kid)]


def _stop_midway(cmd: list[str], how: str, tmp_path: Path, workers: int, env: dict | None = None
                 ) -> tuple[int, str, list[int], list[int]]:
    """Run ``cmd`` in its own process group until ``workers`` processes run below it (and 2 s
    more), send Ctrl-C to the group or SIGTERM to the main process; its exit status, stderr,
    the processes seen below it and those still running a second after it exited."""
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:                # a file: a surviving worker would hold a pipe open
        run = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr,
                               env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                               start_new_session=True,     # its own process group, as in a terminal
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    children: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while len(children) < workers:
            assert run.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.2)
            children = _descendants(run.pid)
        time.sleep(2)
        children = sorted(set(children) | set(_descendants(run.pid)))
        if how == "ctrl-c":
            os.killpg(run.pid, signal.SIGINT)
        else:
            run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=60)
        time.sleep(1)
        left = [pid for pid in children if _alive(pid)]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return code, err.read_text(), children, left


def _crystal_root(root: Path) -> Path:
    """A data root whose ``benchmarks/bioactive_dev.sdf.gz`` holds two 3D molecules."""
    (root / "benchmarks").mkdir(parents=True)
    with gzip.open(root / "benchmarks" / "bioactive_dev.sdf.gz", "wt") as fh:
        for i in range(2):
            mol = Chem.AddHs(Chem.MolFromSmiles(DRUG))
            AllChem.EmbedMolecule(mol, randomSeed=1 + i)
            mol.SetProp("_Name", f"lig{i}")
            fh.write(Chem.MolToMolBlock(mol) + "$$$$\n")
    return root


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_ends_a_bench_script_and_its_etkdg_pool(tmp_path, how):
    """``bench_generate_speed.py`` first times ETKDG on a forked pool of every core
    (``etkdg_all``). SIGTERM ended its main process alone and left both workers embedding;
    now the pool is stopped, with one line and exit status 143 (130 for Ctrl-C), no worker
    traceback and no leaked semaphore."""
    root = _crystal_root(tmp_path / "data")
    cmd = [sys.executable, str(SCRIPTS / "bench_generate_speed.py"), "--molecules", "2",
           "-n", "20000", "--devices", "cpu", "--eager-only", "--out", str(tmp_path / "speed")]
    code, stderr, children, left = _stop_midway(cmd, how, tmp_path, os.cpu_count() or 1,
                                                {"MOLSCORE_DATA_ROOT": str(root)})
    assert children and left == [], stderr
    message = "interrupted" if how == "ctrl-c" else "terminated"
    assert (code, stderr.strip().splitlines()[-1]) == ({"ctrl-c": 130, "sigterm": 143}[how],
                                                       f"bench_generate_speed.py: {message}")
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_ends_a_spawned_bench_pool(tmp_path, how):
    """``map_molecules(..., spawn=True)``, the path of the bench scripts that load the model
    in every worker: stopped with its workers and the resource tracker, no semaphore leaked."""
    block = Chem.MolToMolBlock(Chem.AddHs(Chem.MolFromSmiles(DRUG)))
    code = (f"import sys; sys.path.insert(0, {str(SCRIPTS)!r})\n"
            "from bench_conformers import _etkdg_job, map_molecules, run_script\n"
            f"jobs = [({block!r}, 20000, 1, False)] * 4\n"
            "sys.exit(run_script(lambda: map_molecules(_etkdg_job, jobs, 2, spawn=True)[1]))\n")
    code, stderr, children, left = _stop_midway([sys.executable, "-c", code], how, tmp_path, 3)
    assert len(children) == 3 and left == [], stderr      # two workers and the resource tracker
    message = "interrupted" if how == "ctrl-c" else "terminated"
    assert (code, stderr.strip().splitlines()[-1]) == ({"ctrl-c": 130, "sigterm": 143}[how],
                                                       f"-c: {message}")
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_ends_the_generate_run_of_bench_bad_inputs(tmp_path, how):
    """``bench_bad_inputs.py`` runs ``molscore generate --workers 2``: SIGTERM ended the bench
    alone and left generate and its workers running; Ctrl-C printed the bench's traceback.
    ``run_command`` passes the stop on to generate, which stops its workers."""
    from test_generate import make_tiny_checkpoint

    model = make_tiny_checkpoint(tmp_path / "tiny.pt")
    (tmp_path / "in.smi").write_text("".join(f"CC(=O)Nc1ccc(O)cc1 m{i}\n" for i in range(400)))
    command = [sys.executable, "-m", "molscore", "generate", "--input", "in.smi", "-n", "2",
               "--steps", "2", "--pool", "1", "--workers", "2", "--model", str(model),
               "--no-progress", "-o", "out.sdf"]
    code = (f"import sys; sys.path.insert(0, {str(SCRIPTS)!r})\n"
            "from bench_bad_inputs import run_command\n"
            "from bench_conformers import run_script\n"
            f"sys.exit(run_script(lambda: run_command({command!r}).returncode))\n")
    # generate, its two workers and its resource tracker
    code, stderr, children, left = _stop_midway([sys.executable, "-c", code], how, tmp_path, 4)
    assert len(children) == 4 and left == [], stderr
    message = "interrupted" if how == "ctrl-c" else "terminated"
    assert (code, stderr.strip()) == ({"ctrl-c": 130, "sigterm": 143}[how], f"-c: {message}")
