"""RDKit's log while molscore calls RDKit: kept off the terminal, and read for a Ctrl-C that
RDKit caught itself.

RDKit's conformer embedding (``EmbedMultipleConfs``, ``EmbedMolecule``) installs its own
SIGINT handler while it runs: a Ctrl-C then cancels the embedding, which returns what it has
(usually no conformer) and logs one warning, and Python never sees the interrupt (RDKit
2026.09's wrapper does not raise it). A run would go on with that molecule's conformers
silently changed. :func:`rdkit_quiet` is ``rdBase.BlockLogs`` for such calls, except that it
raises a Ctrl-C RDKit caught as ``KeyboardInterrupt`` when the block ends. From its first use
on, RDKit's log goes through Python's ``logging`` (logger ``"rdkit"``, as
``rdBase.LogToPythonLogger`` sets it); inside the block RDKit's warnings are on (to the
block's collector only), whatever the process set, and after it as they were.
"""
from __future__ import annotations

import logging
import signal
from contextlib import contextmanager
from typing import Iterator

from rdkit import rdBase

__all__ = ["rdkit_quiet", "RDKIT_INTERRUPTED"]

RDKIT_INTERRUPTED = "Interrupted, cancelling conformer generation"   # RDKit's warning


class _Collector(logging.Handler):
    """Swallows every record; notes whether one said that RDKit caught a Ctrl-C."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.interrupted = False

    def emit(self, record: logging.LogRecord) -> None:
        self.interrupted = self.interrupted or RDKIT_INTERRUPTED in record.getMessage()


@contextmanager
def rdkit_quiet() -> Iterator[None]:
    """No RDKit log output inside the block; ``KeyboardInterrupt`` when it ends if RDKit caught
    a Ctrl-C inside it and this process does not ignore Ctrl-C (see the module docstring)."""
    channels = dict(line.split(":") for line in rdBase.LogStatus().splitlines())
    rdBase.LogToPythonLogger()              # (it turns every channel on)
    for channel in ("rdApp.debug", "rdApp.info"):
        rdBase.DisableLog(channel)
    rdBase.EnableLog("rdApp.warning")       # the interrupt's line (off in a dataset build)
    logger = logging.getLogger("rdkit")
    collector = _Collector()
    saved = logger.handlers, logger.propagate, logger.level
    logger.handlers, logger.propagate = [collector], False
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
        for channel, state in channels.items():  # as the process had them
            (rdBase.EnableLog if state == "enabled" else rdBase.DisableLog)(channel)
    if collector.interrupted and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        raise KeyboardInterrupt     # (a pool worker ignores Ctrl-C: its parent stops the run)
