"""argparse ``type=`` converters shared by the subcommands (errors become one-line usage errors)."""
from __future__ import annotations

import argparse
import math

from ..seeds import SEED_MAX

__all__ = ["positive_int", "positive_int_or_auto", "positive_float", "nonnegative_float",
           "finite_float", "seed", "SEED_MAX"]



def _number(text: str, cast, what: str):
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_int_or_auto(text: str) -> int | None:
    """An integer >= 1, or ``auto`` (None: the option's default rule)."""
    if text.strip().lower() == "auto":
        return None
    value = _number(text, int, "a positive integer or 'auto'")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float, "a positive number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text, float, "a non-negative number")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """A finite number (not ``nan`` or ``inf``; its range is the option's own check)."""
    return _number(text, float, "a finite number")


def seed(text: str) -> int:
    """A random seed: an integer in ``0..SEED_MAX``."""
    value = _number(text, int, f"a seed (an integer 0..{SEED_MAX})")
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a seed (an integer 0..{SEED_MAX}), "
                                         f"got {text!r}")
    return value
