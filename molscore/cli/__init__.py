"""The ``molscore`` command line.

Each subcommand lives in a module of this package that defines
``register(subparsers)``; it adds its parser and sets ``func(args) -> int``.
Errors a user can fix raise :class:`~molscore.errors.UsageError` (or come from argparse) and end
with one line on stderr and exit status 2; no traceback. Ctrl-C (SIGINT) ends a command with
exit status 130 and SIGTERM (a job scheduler's time limit, ``kill``) with 143, each after the
command's clean-up has run (output flushed, worker processes stopped), as :class:`~molscore.errors.Terminated`;
so do they while :func:`main` imports the subcommands' modules (torch, RDKit: seconds).
Importing this module, before :func:`main` runs, takes the standard library only (the
``molscore`` package imports its engine on first use).
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import threading

from ..errors import Terminated, UsageError

__all__ = ["main", "UsageError", "Parser", "Terminated"]

EPILOG = """examples:
  molscore generate "CC(=O)Nc1ccc(O)cc1" -n 10 -o out.sdf
  molscore toy sample --density gmm8 --score exact --sde ve --sampler pc --steps 500 -n 4000 -o s.npy
  molscore train --config configs/smoke.yaml
run 'molscore COMMAND --help' for the options of a command."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _interruption(err: BaseException) -> BaseException | None:
    """The ``KeyboardInterrupt`` or :class:`Terminated` that ``err`` is or was raised from
    (None if neither): a signal while a C extension initialises on import (SciPy's, through
    pybind11) comes out as ``ImportError: initialization failed`` raised from it."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, (KeyboardInterrupt, Terminated)):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (``molscore CMD: error: ...``) and exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> Parser:
    parser = Parser(prog="molscore", description=(
        "Score-based generative modeling: 3D molecular conformers from SMILES, and one SDE "
        "engine for molecules, images, protein C-alpha traces and toy densities."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    modules = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            modules.append(module)
    for module in sorted(modules, key=lambda m: getattr(m, "ORDER", 100)):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (``sys.argv[1:]`` when None); its exit status.

    The parser is built (importing every subcommand's module: torch, RDKit, seconds) and
    the arguments parsed inside the Ctrl-C and SIGTERM handling, so that a signal then ends
    as one later does; argparse's ``--help`` and errors still exit through ``SystemExit``.
    """
    # only where nobody else handles SIGTERM (an embedding application may)
    catch_term = (threading.current_thread() is threading.main_thread()
                  and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    if catch_term:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        try:
            return int(args.func(args) or 0)
        except UsageError as err:
            print(f"molscore {args.command}: error: {err}", file=sys.stderr)
            return 2
    except (KeyboardInterrupt, Terminated, ImportError) as err:
        stop = _interruption(err)
        if stop is None:
            raise
        if isinstance(stop, Terminated):
            print("molscore: terminated", file=sys.stderr)
            return 143
        print("molscore: interrupted", file=sys.stderr)
        return 130
    finally:
        if catch_term:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
