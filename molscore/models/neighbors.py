"""Neighbour lists in plain torch: radius and k-nearest-neighbour graphs of batched point sets.

Both functions only compare points of the same graph: graphs of equal size are
processed together as a dense ``(targets, n)`` distance block, in chunks of at most
``max_pairs`` entries, so there is no ``N^2`` matrix over the whole batch and the
memory stays bounded for 5000-residue chains as well as for many molecules.

Convention (PyG's ``flow="source_to_target"``): ``edge_index[0]`` is the
*source* (neighbour) ``j`` and ``edge_index[1]`` the *target* (centre) ``i``; a
message-passing layer aggregates messages ``j -> i`` at ``i``.
``max_num_neighbors`` / ``k`` bound the number of sources per target. Edges are
returned sorted by target, then by distance, then by source.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["radius_graph", "knn_graph"]

DEFAULT_MAX_PAIRS = 1 << 22


def _blocks(batch: Tensor, max_pairs: int):
    """Yield ``(targets (T,), candidates (T, n))``: for each target, all points of its graph.

    Graphs of equal size ``n`` share a block; a block holds at most ``max(max_pairs // n, 1)``
    targets. ``batch`` may be in any order.
    """
    device = batch.device
    order = torch.argsort(batch, stable=True)                  # points grouped by graph
    counts = torch.bincount(batch)
    ptr = torch.cumsum(counts, 0) - counts                     # first slot of each graph in `order`
    for n in torch.unique(counts[counts > 0]).tolist():
        graphs = torch.nonzero(counts == n).flatten()
        slots = ptr[graphs].unsqueeze(-1) + torch.arange(n, device=device)     # (G, n)
        flat = slots.flatten()
        per_chunk = max(max_pairs // n, 1)
        for a in range(0, flat.numel(), per_chunk):
            tgt = order[flat[a:a + per_chunk]]
            yield tgt, order[ptr[batch[tgt]].unsqueeze(-1) + torch.arange(n, device=device)]


def _neighbours(pos: Tensor, batch: Tensor | None, r: float | None, k: int | None, loop: bool,
                max_pairs: int) -> Tensor:
    n_pts = pos.shape[0]
    if batch is None:
        batch = torch.zeros(n_pts, dtype=torch.long, device=pos.device)
    batch = batch.long().to(pos.device)
    pos = pos.detach()
    src_all, dst_all, d2_all = [], [], []
    for tgt, cand in _blocks(batch, max_pairs):
        d2 = (pos[cand] - pos[tgt].unsqueeze(1)).pow(2).sum(-1)               # (T, n)
        valid = torch.ones_like(d2, dtype=torch.bool) if loop else cand != tgt.unsqueeze(-1)
        if r is not None:
            valid &= d2 < r * r
        if k is not None and k < d2.shape[1]:
            d2, idx = d2.masked_fill(~valid, float("inf")).topk(k, dim=1, largest=False)
            cand, valid = cand.gather(1, idx), valid.gather(1, idx)
        rows, cols = torch.nonzero(valid, as_tuple=True)
        src_all.append(cand[rows, cols])
        dst_all.append(tgt[rows])
        d2_all.append(d2[rows, cols])
    if not src_all:
        return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
    src, dst, d2 = torch.cat(src_all), torch.cat(dst_all), torch.cat(d2_all)
    perm = torch.argsort(src, stable=True)                    # sort by (target, distance, source)
    perm = perm[torch.argsort(d2[perm], stable=True)]
    perm = perm[torch.argsort(dst[perm], stable=True)]
    return torch.stack([src[perm], dst[perm]])


def radius_graph(pos: Tensor, r: float, batch: Tensor | None = None, loop: bool = False,
                 max_num_neighbors: int | None = None, max_pairs: int = DEFAULT_MAX_PAIRS) -> Tensor:
    """Edges between points of the same graph closer than ``r`` (strictly).

    Args:
        pos: ``(N, D)`` coordinates.
        r: cutoff radius (``inf``: all pairs of each graph).
        batch: ``(N,)`` graph index per point (any order); ``None`` means one graph.
        loop: include self-loops ``i -> i``.
        max_num_neighbors: keep at most this many sources per target, the nearest ones
            (PyG keeps an arbitrary subset); ``None`` keeps all.
        max_pairs: distances computed per chunk (memory bound).

    Returns:
        ``edge_index`` ``(2, E)`` long, ``[source, target]`` (PyG ``source_to_target``),
        sorted by target, distance, source. Symmetric when ``max_num_neighbors`` is ``None``.
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
        max_pairs: distances computed per chunk (memory bound).

    Returns:
        ``edge_index`` ``(2, E)`` long, ``[source, target]`` (PyG ``source_to_target``:
        ``edge_index[1]`` holds each target ``k`` times), sorted by target, distance, source.
        Among equidistant candidates for the last place, which one is kept is unspecified.
    """
    return _neighbours(pos, batch, None, int(k), loop, max_pairs)
