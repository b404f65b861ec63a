"""The one-line errors molscore reports: a user's mistake (:class:`UsageError`) and the first
line of another library's exception (:func:`message_line`)."""
from __future__ import annotations

__all__ = ["UsageError", "message_line"]


class UsageError(Exception):
    """A mistake in the user's input: the command line reports it in one line, exit status 2."""

    @classmethod
    def cannot_write(cls, err: OSError, path: object) -> "UsageError":
        """``cannot write PATH: REASON`` for an ``OSError`` met writing ``path`` (the file
        the error names, when it names one)."""
        return cls(f"cannot write {err.filename or path}: {err.strerror or err}")


def message_line(err: BaseException) -> str:
    """The first non-blank line of ``err``'s message ("" when it has none): RDKit, torch and
    others put pages of advice after it."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), "")
