"""Bench scripts stopped by Ctrl-C or SIGTERM leave no worker process running."""
from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from _processes import REPO, stop_midway

SCRIPTS = REPO / "scripts"
DRUG = "CC(=O)Nc1ccc(OCC(O)CNC(C)C)cc1"      # slow enough to embed that the run is mid-pool

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def _stop_midway(cmd: list[str], how: str, tmp_path: Path, workers: int, env: dict | None = None
                 ) -> tuple[int, str, list[int], list[int]]:
    """:func:`stop_midway` once ``workers`` processes run below ``cmd`` (and 2 s more)."""
    return stop_midway(cmd, how, tmp_path, lambda seen: len(seen) >= workers, env, settle=2)


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
