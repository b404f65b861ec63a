"""Bench scripts stopped while they import (torch, RDKit, molscore: seconds) end as
``molscore``'s commands do then: one line, exit status 130 (Ctrl-C) or 143 (SIGTERM)."""
import os
import signal
import subprocess
import sys

import pytest

from _processes import REPO

SCRIPTS = REPO / "scripts"
BENCH = sorted(path.name for path in SCRIPTS.glob("bench_*.py"))

# Runs the bench script argv[3] as ``python SCRIPT`` does, with an import hook that sends this
# process the signal argv[1] when the first of the modules argv[2] (comma-separated) is first
# imported: the signal arrives during that import, wherever the script imports it.
_SIGNAL_ON_IMPORT = '''
import os
import runpy
import signal
import sys

SIGNUM, TRIGGERS, SCRIPT = getattr(signal, sys.argv[1]), sys.argv[2].split(","), sys.argv[3]


class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name in TRIGGERS:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), SIGNUM)
        return None                       # the other finders import it


sys.argv = [SCRIPT, "--help"]
sys.path.insert(0, os.path.dirname(SCRIPT))
sys.meta_path.insert(0, SignalOnImport())
runpy.run_path(SCRIPT, run_name="__main__")
'''


def _stopped(tmp_path, signame: str, trigger: str, script: str) -> subprocess.CompletedProcess:
    runner = tmp_path / "signal_on_import.py"
    runner.write_text(_SIGNAL_ON_IMPORT)
    return subprocess.run([sys.executable, str(runner), signame, trigger, str(SCRIPTS / script)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_every_bench_script_is_covered():
    assert len(BENCH) >= 15 and "bench_conformers.py" in BENCH and "bench_train.py" in BENCH


@pytest.mark.parametrize("script", BENCH)
def test_ctrl_c_while_a_bench_script_imports_ends_in_one_line(tmp_path, script):
    """numpy or torch is imported by every bench script, directly or through
    ``bench_conformers`` (``bench_train``: a block inside the script's own). A Ctrl-C there printed a
    KeyboardInterrupt traceback; now one line and exit status 130, nothing on stdout (the
    script did not get to ``--help``)."""
    run = _stopped(tmp_path, "SIGINT", "numpy,torch", script)
    assert (run.returncode, run.stderr, run.stdout) == (130, f"{script}: interrupted\n", "")


@pytest.mark.parametrize("script, trigger", [("bench_conformers.py", "torch"),
                                             ("bench_toy.py", "molscore.sde"),
                                             ("bench_train.py", "rdkit")])
def test_sigterm_while_a_bench_script_imports_ends_in_one_line(tmp_path, script, trigger):
    """SIGTERM killed the script without a word (exit status -15); now one line and 143."""
    run = _stopped(tmp_path, "SIGTERM", trigger, script)
    assert (run.returncode, run.stderr, run.stdout) == (143, f"{script}: terminated\n", "")


def test_the_scripts_run_after_their_imports(tmp_path):
    """The import hook alone (its trigger never imported) changes nothing: ``--help`` is
    printed and the script ends with status 0."""
    run = _stopped(tmp_path, "SIGINT", "no_such_module", "bench_toy.py")
    assert run.returncode == 0 and run.stdout.startswith("usage: bench_toy.py"), run.stderr


@pytest.mark.parametrize("stop, code, line", [(KeyboardInterrupt, 130, "interrupted"),
                                             ("SIGTERM", 143, "terminated")])
def test_the_helper_reports_once_and_restores_sigterm(monkeypatch, capsys, stop, code, line):
    """Nested blocks (a script's imports importing ``bench_conformers``'s): the inner one
    reports, the outer lets its ``SystemExit`` through; SIGTERM's handler is the previous
    one again afterwards."""
    sys.path.insert(0, str(SCRIPTS))
    from script_signals import signals_end_quietly

    monkeypatch.setattr(sys, "argv", ["bench_x.py"])
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info:
        with signals_end_quietly():
            with signals_end_quietly():
                if stop is KeyboardInterrupt:
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signal.SIGTERM)   # the handler raises here
                signal.pause()                          # not reached
    assert info.value.code == code and capsys.readouterr().err == f"bench_x.py: {line}\n"
    assert signal.getsignal(signal.SIGTERM) is before
    with signals_end_quietly():
        pass
    assert signal.getsignal(signal.SIGTERM) is before
