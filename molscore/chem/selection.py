"""Choosing representative conformers from a larger pool.

:func:`representative_order` is greedy k-medoids (the greedy algorithm for the
facility-location / k-median objective): it picks, one at a time, the conformer that most
lowers the pool's summed distance to its nearest pick. The first pick is the pool's medoid;
every prefix of the order is the greedy solution for its own size, so the first ``k`` of ``n``
picks are exactly the greedy selection of ``k``. Unlike max-min (farthest-point)
picking it does not spend picks on isolated outliers. ``molscore generate`` uses it to choose
its ETKDG starts from a larger pool (``--pool``; ``benchmarks/conformers.md``).
"""
from __future__ import annotations

import numpy as np
from rdkit import Chem

from .metrics import rmsd_matrix

__all__ = ["representative_order", "representative_conformers", "SELECTION_MAX_MATCHES"]

# Atom mappings enumerated for the pool's RMSD matrix: enough for the usual symmetric groups,
# and a bound on the cost for highly symmetric molecules (see molscore.chem.metrics).
SELECTION_MAX_MATCHES = 64


def representative_order(dist: np.ndarray, n: int) -> list[int]:
    """Greedy k-medoids order of ``n`` items from a symmetric distance matrix.

    Args:
        dist: ``(P, P)`` distances between the pool's items (zero diagonal).
        n: picks wanted; at most ``P`` are returned.

    Returns:
        ``min(n, P)`` distinct indices: each minimises ``sum_j min_{s in picks} dist[s, j]``
        given the earlier picks (ties go to the lowest index).
    """
    dist = np.asarray(dist, dtype=np.float64)
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"distance matrix must be square, got shape {dist.shape}")
    nearest = np.full(dist.shape[0], np.inf)
    picks: list[int] = []
    for _ in range(min(n, dist.shape[0])):
        cost = np.minimum(nearest[None, :], dist).sum(axis=1)
        cost[picks] = np.inf
        best = int(np.argmin(cost))
        picks.append(best)
        nearest = np.minimum(nearest, dist[best])
    return picks


def representative_conformers(mol: Chem.Mol, n: int) -> list[int]:
    """Conformer ids of ``n`` representatives of ``mol``'s conformers, in pick order, by
    heavy-atom best RMSD (symmetry-aware, at most :data:`SELECTION_MAX_MATCHES` mappings)."""
    ids = [conf.GetId() for conf in mol.GetConformers()]
    if len(ids) <= 1:
        return ids[:n]
    dist = rmsd_matrix(mol, mol, max_matches=SELECTION_MAX_MATCHES)
    return [ids[i] for i in representative_order(dist, n)]
