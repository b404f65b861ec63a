"""The range of random seeds that molscore's commands and training configs accept."""
from __future__ import annotations

__all__ = ["SEED_MAX"]

SEED_MAX = 2 ** 32 - 1
"""Largest random seed (numpy's limit; torch's generators take the seeds derived from it)."""
