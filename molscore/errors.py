"""Turning exceptions from other libraries into the one-line reasons molscore reports."""
from __future__ import annotations

__all__ = ["message_line"]


def message_line(err: BaseException) -> str:
    """The first non-blank line of ``err``'s message ("" when it has none): RDKit, torch and
    others put pages of advice after it."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), "")
