"""The one-line errors molscore reports: a user's mistake (:class:`UsageError`), the first
line of another library's exception (:func:`message_line`), a value of the wrong kind in a
file (:func:`described`), an allocation that failed (:func:`out_of_memory`), and SIGTERM
(:class:`Terminated`)."""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

__all__ = ["UsageError", "Terminated", "message_line", "described", "is_out_of_memory",
           "out_of_memory"]


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


def described(value: object) -> str:
    """``value`` as a one-line message shows it: the ``repr`` of a number, string or ``None``
    (cut to 60 characters), else what it is (``a list``, ``a Tensor``): a file's value found
    where another kind was expected."""
    if value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


_ASKED = (re.compile(r"allocate (\d+) bytes"),             # torch's CPU allocator
          re.compile(r"[Tt]ried to allocate ([\d.]+ ?[KMGTP]i?B)"))   # torch.OutOfMemoryError (GPU)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation that failed: ``MemoryError``, torch's
    ``OutOfMemoryError`` (a GPU's) or the ``RuntimeError`` of torch's CPU allocator."""
    return (isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError"
            or (isinstance(err, RuntimeError) and "can't allocate memory" in str(err)))


@contextmanager
def out_of_memory(hint: str) -> Iterator[None]:
    """Turn an allocation that fails in the block (:func:`is_out_of_memory`) into a one-line
    :class:`UsageError`, ``out of memory (an allocation of 2.1 GiB); HINT``: an option asked
    for more samples than the machine holds, and torch's error is a traceback."""
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        size = ""
        for pattern in _ASKED:
            if (found := pattern.search(str(err))):
                text = found.group(1)
                size = (f" (an allocation of {int(text) / 2**30:.1f} GiB)" if text.isdigit()
                        else f" (an allocation of {text})")
                break
        raise UsageError(f"out of memory{size}; {hint}") from None
