"""The ``molscore`` command's start-up: a light first import, and Ctrl-C / SIGTERM while it
imports the rest ending as they do later (one line, exit status 130 / 143)."""
import os
import signal
import subprocess
import sys

import pytest

from _processes import REPO
from molscore.errors import Terminated

# The console script (``from molscore.cli import main; sys.exit(main())``) with an import
# hook that sends this process SIGNAL when MODULE is first imported: the signal arrives
# during that import, wherever the command imports it.
_SIGNAL_ON_IMPORT = '''
import os
import signal
import sys

SIGNUM, TRIGGER = getattr(signal, sys.argv[1]), sys.argv[2]


class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == TRIGGER:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), SIGNUM)
        return None                       # the other finders import it


sys.meta_path.insert(0, SignalOnImport())
from molscore.cli import main

sys.exit(main(sys.argv[3:]))
'''


def _python(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("signame, trigger, code, message", [
    ("SIGINT", "torch", 130, "molscore: interrupted"),
    ("SIGTERM", "torch", 143, "molscore: terminated"),
    ("SIGINT", "molscore.cli.toy", 130, "molscore: interrupted")])
def test_a_signal_while_the_command_imports_ends_in_one_line(tmp_path, signame, trigger, code,
                                                            message):
    """``import molscore.cli`` imported torch (``molscore/__init__.py``: the engine), and
    ``main`` built its parser (every subcommand's module) before its Ctrl-C handling: a
    Ctrl-C in these seconds printed a KeyboardInterrupt traceback, a SIGTERM killed the
    process without a word (``-15``). Now both end as later in the run."""
    script = tmp_path / "molscore_signal.py"
    script.write_text(_SIGNAL_ON_IMPORT)
    run = _python(str(script), signame, trigger, "generate", "CCO", "-o", "out.sdf", cwd=tmp_path)
    assert (run.returncode, run.stderr) == (code, message + "\n")
    assert run.stdout == "" and not (tmp_path / "out.sdf").exists()


def test_importing_the_command_line_imports_no_engine():
    """``molscore`` and ``molscore.cli`` import neither torch, RDKit nor numpy (the console
    script imports them before ``main`` can handle a Ctrl-C); the engine's names resolve on
    first use, for ``from molscore import *`` too, and ``dir(molscore)`` lists them."""
    run = _python("-c", """
import sys
import molscore.cli
print(sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in {"torch", "rdkit", "numpy"}}))
import molscore
print(set(molscore.__all__) <= set(dir(molscore)), "generate_conformers" in dir(molscore))
from molscore import *
from molscore import VESDE, generate_conformers
from molscore.sde import VESDE as defined
print(VESDE is defined is molscore.VESDE, PointSetSpace.__module__, generate_conformers.__module__)
print(hasattr(molscore, "nothing"))
""")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["[]", "True True", "True molscore.spaces molscore.generate",
                                       "False"]


def test_main_still_exits_through_argparse_for_help():
    """``--help`` (argparse's ``SystemExit``) passes through the signal handling, which
    also leaves SIGTERM's handler as it found it."""
    from molscore.cli import main

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("stop, code, message", [
    (KeyboardInterrupt(), 130, "molscore: interrupted"),
    (Terminated(), 143, "molscore: terminated")])
def test_import_error_raised_from_a_signal_ends_as_the_signal(monkeypatch, capsys, stop, code,
                                                              message):
    """A Ctrl-C while SciPy's pybind11 extension initialised (``molscore train``, its first
    seconds) came out as ``ImportError: initialization failed``, raised from the
    KeyboardInterrupt: a traceback and exit status 1. Any other ImportError still raises."""
    import molscore.cli as cli

    def fail(args):
        try:
            raise stop
        except BaseException as err:
            raise ImportError("initialization failed") from err

    parser = cli.Parser(prog="molscore")
    command = parser.add_subparsers(dest="command").add_parser("x")
    command.set_defaults(func=fail)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main(["x"]) == code
    assert capsys.readouterr().err == message + "\n"

    def missing(args):
        raise ImportError("No module named 'nothing'")

    command.set_defaults(func=missing)
    with pytest.raises(ImportError):
        cli.main(["x"])
