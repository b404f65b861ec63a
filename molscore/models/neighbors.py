"""Neighbour lists in plain torch: radius and k-nearest-neighbour graphs of batched point sets.

Both functions only compare points of the same graph. They enumerate the
``n_g^2`` within-graph pairs explicitly (no ``N^2`` matrix over the whole batch),
in chunks of target points whose pairs fit ``max_pairs``, so memory stays bounded
even for 500-residue chains or many molecules at once.

Convention (PyG's ``flow="source_to_target"``): ``edge_index[0]`` is the
*source* (neighbour) ``j`` and ``edge_index[1]`` the *target* (centre) ``i``; a
message-passing layer aggregates messages ``j -> i`` at ``i``.
``max_num_neighbors`` / ``k`` bound the number of sources per target. Edges are
returned sorted by target, then by distance (ties by source index).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["radius_graph", "knn_graph", "within_graph_pairs"]

DEFAULT_MAX_PAIRS = 1 << 22


def _sorted_batch(pos: Tensor, batch: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Batch vector (long) and, when ``batch`` is not sorted, the sorting permutation."""
    if batch is None:
        return torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device), None
    batch = batch.long().to(pos.device)
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        perm = torch.argsort(batch, stable=True)
        return batch[perm], perm
    return batch, None


def within_graph_pairs(batch: Tensor, max_pairs: int = DEFAULT_MAX_PAIRS):
    """Yield all ordered pairs ``(source, target)`` of points in the same graph, in chunks.

    Args:
        batch: ``(N,)`` sorted graph index per point.
        max_pairs: soft bound on the pairs per chunk (a single target's pairs are
            never split).

    Yields:
        ``(src, dst)``, two ``(P,)`` long tensors; chunks cover consecutive targets and
        within a chunk pairs are grouped by target in increasing order.
    """
    n = batch.numel()
    if n == 0:
        return
    device = batch.device
    counts = torch.bincount(batch)
    ptr = torch.cumsum(counts, 0) - counts                # first point of each graph
    per_target = counts[batch]                            # (N,) pairs per target
    ends = torch.cumsum(per_target, 0)
    # chunk boundaries: consecutive targets whose cumulative pair count fits max_pairs
    chunk_id = torch.div(ends - 1, max(int(max_pairs), 1), rounding_mode="floor")
    bounds = torch.nonzero(torch.diff(chunk_id, prepend=chunk_id[:1] - 1)).flatten().tolist() + [n]
    for a, b in zip(bounds[:-1], bounds[1:]):
        rows = per_target[a:b]
        dst = torch.repeat_interleave(torch.arange(a, b, device=device), rows)
        start = torch.cumsum(rows, 0) - rows
        local = torch.arange(dst.numel(), device=device) - torch.repeat_interleave(start, rows)
        src = ptr[batch[dst]] + local
        yield src, dst


def _rank_within_target(dst: Tensor, key: Tensor) -> Tensor:
    """Order pairs by ``(dst, key)``; return the permutation and each pair's rank inside its target."""
    order = torch.argsort(key, stable=True)
    order = order[torch.argsort(dst[order], stable=True)]
    d = dst[order]
    first = torch.ones_like(d, dtype=torch.bool)
    first[1:] = d[1:] != d[:-1]
    pos = torch.arange(d.numel(), device=d.device)
    seg_start = torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values
    return order, pos - seg_start


def _neighbours(pos: Tensor, batch: Tensor | None, r: float | None, k: int | None, loop: bool,
                max_pairs: int) -> Tensor:
    sbatch, perm = _sorted_batch(pos, batch)
    spos = pos if perm is None else pos[perm]
    spos = spos.detach()
    out = []
    for src, dst in within_graph_pairs(sbatch, max_pairs):
        d2 = (spos[src] - spos[dst]).pow(2).sum(-1)
        keep = torch.ones_like(d2, dtype=torch.bool) if loop else src != dst
        if r is not None:
            keep &= d2 < r * r
        src, dst, d2 = src[keep], dst[keep], d2[keep]
        # sort by (target, distance, source); source order is already ascending per target
        order, rank = _rank_within_target(dst, d2)
        if k is not None:
            order = order[rank < k]
        out.append(torch.stack([src[order], dst[order]]))
    if not out:
        return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
    edge_index = torch.cat(out, dim=1)
    if perm is None:
        return edge_index
    edge_index = perm[edge_index]
    return edge_index[:, torch.argsort(edge_index[1], stable=True)]


def radius_graph(pos: Tensor, r: float, batch: Tensor | None = None, loop: bool = False,
                 max_num_neighbors: int | None = None, max_pairs: int = DEFAULT_MAX_PAIRS) -> Tensor:
    """Edges between points of the same graph closer than ``r`` (strictly).

    Args:
        pos: ``(N, D)`` coordinates.
        r: cutoff radius.
        batch: ``(N,)`` graph index per point (any order); ``None`` means one graph.
        loop: include self-loops ``i -> i``.
        max_num_neighbors: keep at most this many sources per target, the nearest ones
            (PyG keeps an arbitrary subset); ``None`` keeps all.
        max_pairs: pairs examined per chunk (memory bound).

    Returns:
        ``edge_index`` ``(2, E)`` long, ``[source, target]`` (PyG ``source_to_target``),
        sorted by target then distance. Symmetric when ``max_num_neighbors`` is ``None``.
    """
    return _neighbours(pos, batch, float(r), max_num_neighbors, loop, max_pairs)


def knn_graph(pos: Tensor, k: int, batch: Tensor | None = None, loop: bool = False,
              max_pairs: int = DEFAULT_MAX_PAIRS) -> Tensor:
    """Each point's ``k`` nearest points of the same graph as its sources.

    Args:
        pos: ``(N, D)`` coordinates.
        k: neighbours per target (fewer when its graph is smaller).
        batch: ``(N,)`` graph index per point (any order); ``None`` means one graph.
        loop: count the point itself as a neighbour (at distance 0).
        max_pairs: pairs examined per chunk (memory bound).

    Returns:
        ``edge_index`` ``(2, E)`` long, ``[source, target]`` (PyG ``source_to_target``:
        ``edge_index[1]`` holds each target ``k`` times), sorted by target then distance;
        ties are broken by the lower source index.
    """
    return _neighbours(pos, batch, None, int(k), loop, max_pairs)
