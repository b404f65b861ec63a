"""How a bench script ends on Ctrl-C or SIGTERM, as ``molscore``'s commands do: one line
``SCRIPT: interrupted`` (exit status 130) or ``SCRIPT: terminated`` (143) on stderr, no
traceback. Light (the standard library and :mod:`molscore.errors`), so that a script imports
it first and its slow imports (torch, RDKit, molscore's engine: seconds) run inside
:func:`signals_end_quietly`, as its ``main`` does (``bench_conformers.run_script``)::

    from script_signals import signals_end_quietly

    with signals_end_quietly():
        import torch
        ...
"""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:          # a checkout's molscore, as the scripts import it
    sys.path.insert(0, str(REPO))

from molscore.errors import Terminated  # noqa: E402

__all__ = ["signals_end_quietly"]


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


@contextmanager
def signals_end_quietly() -> Iterator[None]:
    """Run the block with SIGTERM raised as :class:`~molscore.errors.Terminated` in the main
    thread (as Ctrl-C raises ``KeyboardInterrupt``; the previous handler is back afterwards),
    so that the block's clean-up (a worker pool's stop) runs for either; either then ends the
    script: one line naming it (``sys.argv[0]``'s file name) and ``SystemExit`` 130 (Ctrl-C)
    or 143 (SIGTERM). Blocks may nest: the innermost reports, the others let its
    ``SystemExit`` through. Outside the main thread, where no handler can be set, SIGTERM
    keeps its handler."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        yield
    except KeyboardInterrupt:
        print(f"{Path(sys.argv[0]).name}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Terminated:
        print(f"{Path(sys.argv[0]).name}: terminated", file=sys.stderr)
        raise SystemExit(143) from None
    finally:
        if main_thread:     # None: a handler not set from Python, which SIGTERM had not
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
