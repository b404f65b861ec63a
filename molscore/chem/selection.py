"""Choosing representative conformers from a larger pool.

Two greedy orders of a pool's distance matrix, both starting from the pool's medoid, so that
every prefix of an order is spread over the pool and the first ``k`` of ``n`` picks do not
depend on ``n``:

* :func:`representative_order`, greedy k-medoids (the greedy algorithm for the
  facility-location / k-median objective): each pick most lowers the pool's summed distance
  to its nearest pick. It follows where the pool is dense and does not spend picks on
  isolated outliers.
* :func:`max_min_order`, farthest-point (max-min) picking: each pick is the pool member
  farthest from every earlier pick. It reaches the pool's edges sooner, which raises recall
  (COV-R, AMR-R) against reference ensembles at the cost of precision (COV-P, AMR-P).

``molscore generate`` uses one of them (``--pick``, max-min by default) to choose its ETKDG
starts from a larger pool (``--pool``); ``benchmarks/pool_selection*.md`` compares them
without the network.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from rdkit import Chem

from .metrics import rmsd_matrix

__all__ = ["representative_order", "max_min_order", "PICKS", "pick_order",
           "representative_conformers", "SELECTION_MAX_MATCHES"]

# Atom mappings enumerated for the pool's RMSD matrix: enough for the usual symmetric groups,
# and a bound on the cost for highly symmetric molecules (see molscore.chem.metrics).
SELECTION_MAX_MATCHES = 64


def _square(dist: np.ndarray) -> np.ndarray:
    dist = np.asarray(dist, dtype=np.float64)
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"distance matrix must be square, got shape {dist.shape}")
    return dist


def representative_order(dist: np.ndarray, n: int) -> list[int]:
    """Greedy k-medoids order of ``n`` items from a symmetric distance matrix.

    Args:
        dist: ``(P, P)`` distances between the pool's items (zero diagonal).
        n: picks wanted; at most ``P`` are returned.

    Returns:
        ``min(n, P)`` distinct indices: each minimises ``sum_j min_{s in picks} dist[s, j]``
        given the earlier picks (ties go to the lowest index).
    """
    dist = _square(dist)
    nearest = np.full(dist.shape[0], np.inf)
    picks: list[int] = []
    for _ in range(min(n, dist.shape[0])):
        cost = np.minimum(nearest[None, :], dist).sum(axis=1)
        cost[picks] = np.inf
        best = int(np.argmin(cost))
        picks.append(best)
        nearest = np.minimum(nearest, dist[best])
    return picks


def max_min_order(dist: np.ndarray, n: int, start: int | None = None) -> list[int]:
    """Farthest-point order of ``n`` items from a symmetric distance matrix, from the medoid.

    Args:
        dist: ``(P, P)`` distances between the pool's items (zero diagonal).
        n: picks wanted; at most ``P`` are returned.
        start: the first pick (default: the medoid).

    Returns:
        ``min(n, P)`` distinct indices: the first is ``start`` or else minimises
        ``sum_j dist[s, j]`` (the medoid, as in :func:`representative_order`), each later one
        maximises ``min_{s in picks} dist[s, j]`` (ties go to the lowest index).
    """
    dist = _square(dist)
    if n < 1 or dist.shape[0] == 0:
        return []
    if start is not None and not 0 <= start < dist.shape[0]:
        raise ValueError(f"start {start} is not an index of a pool of {dist.shape[0]}")
    picks = [int(np.argmin(dist.sum(axis=1))) if start is None else int(start)]
    nearest = dist[picks[0]].copy()
    nearest[picks[0]] = -np.inf
    while len(picks) < min(n, dist.shape[0]):
        best = int(np.argmax(nearest))
        picks.append(best)
        nearest = np.minimum(nearest, dist[best])
        nearest[best] = -np.inf
    return picks


PICKS = {"max-min": max_min_order, "k-medoids": representative_order}
"""The orders :func:`representative_conformers` (and ``molscore generate --pick``) can use."""


def pick_order(pick: str) -> Callable[[np.ndarray, int], list[int]]:
    """The order function of ``pick``, a key of :data:`PICKS`; ``ValueError`` naming the
    choices for any other name."""
    if pick not in PICKS:
        raise ValueError(f"unknown pick {pick!r}; choose from {', '.join(PICKS)}")
    return PICKS[pick]


def representative_conformers(mol: Chem.Mol, n: int, pick: str) -> list[int]:
    """Conformer ids of ``n`` representatives of ``mol``'s conformers, in pick order, by
    heavy-atom best RMSD (symmetry-aware, at most :data:`SELECTION_MAX_MATCHES` mappings),
    picked by ``pick``, a key of :data:`PICKS`."""
    order = pick_order(pick)
    ids = [conf.GetId() for conf in mol.GetConformers()]
    if len(ids) <= 1:
        return ids[:n]
    dist = rmsd_matrix(mol, mol, max_matches=SELECTION_MAX_MATCHES)
    return [ids[i] for i in order(dist, n)]
