"""The one-line errors molscore reports: a user's mistake (:class:`UsageError`), the first
line of another library's exception (:func:`message_line`), and SIGTERM (:class:`Terminated`)."""
from __future__ import annotations

__all__ = ["UsageError", "Terminated", "message_line"]


class UsageError(Exception):
    """A mistake in the user's input: the command line reports it in one line, exit status 2."""

    @classmethod
    def cannot_write(cls, err: OSError, path: object) -> "UsageError":
        """``cannot write PATH: REASON`` for an ``OSError`` met writing ``path`` (the file
        the error names, when it names one)."""
        return cls(f"cannot write {err.filename or path}: {err.strerror or err}")


class Terminated(BaseException):
    """SIGTERM (a job scheduler's time limit, ``kill``), raised in the main thread so that the
    clean-up runs as for Ctrl-C: the command line turns it into exit status 143. A
    ``BaseException``, as ``KeyboardInterrupt``: the per-record ``except Exception`` handlers
    let it through."""


def message_line(err: BaseException) -> str:
    """The first non-blank line of ``err``'s message ("" when it has none): RDKit, torch and
    others put pages of advice after it."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), "")
