"""Plain-torch radius / knn graphs against brute force, and the edge merging of the score networks."""
from __future__ import annotations

import pytest
import torch

from molscore.models.edges import build_edges, merge_edges, reverse_edge_attr
from molscore.models.neighbors import knn_graph, radius_graph


def _cloud(sizes: list[int], seed: int = 0, shuffle: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    pos = torch.randn(batch.numel(), 3, generator=g, dtype=torch.float64) * 2.0
    if shuffle:
        perm = torch.randperm(batch.numel(), generator=g)
        pos, batch = pos[perm], batch[perm]
    return pos, batch


def _brute_radius(pos, batch, r, loop) -> set[tuple[int, int]]:
    d = torch.cdist(pos, pos)
    same = batch[:, None] == batch[None, :]
    ok = same & (d < r)
    if not loop:
        ok &= ~torch.eye(len(pos), dtype=torch.bool)
    tgt, src = torch.nonzero(ok, as_tuple=True)   # row = target i, col = source j
    return set(zip(src.tolist(), tgt.tolist()))


def _edges(edge_index: torch.Tensor) -> list[tuple[int, int]]:
    return list(zip(edge_index[0].tolist(), edge_index[1].tolist()))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("loop", [False, True])
def test_radius_graph_matches_brute_force(shuffle: bool, loop: bool) -> None:
    pos, batch = _cloud([7, 1, 12, 7, 5], seed=1, shuffle=shuffle)
    ei = radius_graph(pos, 2.5, batch, loop=loop)
    got = _edges(ei)
    assert len(got) == len(set(got))
    want = _brute_radius(pos, batch, 2.5, loop)
    assert set(got) == want and len(want) > 10
    # sorted by target, then by distance
    d = (pos[ei[0]] - pos[ei[1]]).norm(dim=-1)
    key = ei[1].double() * 1e3 + d
    assert bool((key[1:] >= key[:-1]).all())
    # all pairs with an infinite radius
    assert radius_graph(pos, float("inf"), batch).shape[1] == sum(n * (n - 1) for n in (7, 1, 12, 7, 5))


def test_radius_graph_chunking_and_max_neighbours() -> None:
    pos, batch = _cloud([30, 9, 20, 9], seed=2)
    full = radius_graph(pos, 3.0, batch)
    chunked = radius_graph(pos, 3.0, batch, max_pairs=17)
    assert torch.equal(full, chunked)
    capped = radius_graph(pos, 3.0, batch, max_num_neighbors=3)
    counts = torch.bincount(capped[1], minlength=len(pos))
    assert int(counts.max()) <= 3
    # the kept sources are the nearest ones of each target
    d = torch.cdist(pos, pos)
    for i in range(len(pos)):
        src = capped[0][capped[1] == i]
        cand = full[0][full[1] == i]
        if cand.numel():
            kth = d[i, cand].sort().values[min(3, cand.numel()) - 1]
            assert bool((d[i, src] <= kth + 1e-12).all())
            assert src.numel() == min(3, cand.numel())


def test_knn_graph_matches_brute_force_and_pyg_convention() -> None:
    # points on a line: 0 -- 1 ---- 3; target 0's nearest is 1, target 2's nearest is 1
    line = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]])
    assert knn_graph(line, 1).tolist() == [[1, 0, 1], [0, 1, 2]]   # [source, target]
    pos, batch = _cloud([6, 2, 11, 6], seed=3, shuffle=True)
    k = 4
    for loop in (False, True):
        ei = knn_graph(pos, k, batch, loop=loop, max_pairs=23)
        d = torch.cdist(pos, pos)
        d[batch[:, None] != batch[None, :]] = float("inf")
        if not loop:
            d.fill_diagonal_(float("inf"))
        for i in range(len(pos)):
            n_avail = int(torch.isfinite(d[i]).sum())
            want = set(torch.topk(d[i], min(k, n_avail), largest=False).indices.tolist())
            assert set(ei[0][ei[1] == i].tolist()) == want


def test_exact_cutoff_ties_and_empty_graphs_on_a_grid() -> None:
    """Points on an integer grid (many pairs exactly at the cutoff, many equidistant
    candidates), graph ids with gaps (empty graphs in the middle and after the last point),
    unsorted: the radius graph is brute force's with the cutoff strict, chunked or not, and
    every kNN target has min(k, others in its graph) sources among its nearest."""
    g = torch.Generator().manual_seed(5)
    pos = torch.randint(-2, 3, (40, 3), generator=g).double()
    batch = torch.tensor([0, 2, 2, 5, 5, 5, 7, 7, 7, 7] * 4)[torch.randperm(40, generator=g)]
    for r in (1.0, 2.0, 3.0):
        want = _brute_radius(pos, batch, r, loop=False)
        assert bool((torch.cdist(pos, pos)[batch[:, None] == batch[None, :]] == r).any())   # pairs at r
        for max_pairs in (1, 7, 1 << 22):
            assert set(_edges(radius_graph(pos, r, batch, max_pairs=max_pairs))) == want
    d = torch.cdist(pos, pos)
    d[batch[:, None] != batch[None, :]] = float("inf")
    d.fill_diagonal_(float("inf"))
    ei = knn_graph(pos, 3, batch, max_pairs=5)
    for i in range(len(pos)):
        src = ei[0][ei[1] == i]
        n_avail = int(torch.isfinite(d[i]).sum())
        assert src.numel() == len(set(src.tolist())) == min(3, n_avail)
        assert bool((d[i, src] <= d[i].sort().values[min(3, n_avail) - 1]).all())


def test_empty_and_single_point_graphs() -> None:
    assert radius_graph(torch.zeros(0, 3), 1.0).shape == (2, 0)
    assert knn_graph(torch.zeros(1, 3), 3).shape == (2, 0)
    assert knn_graph(torch.zeros(1, 3), 3, loop=True).tolist() == [[0], [0]]


def test_merge_edges_keeps_topological_features_and_flags_spatial_ones() -> None:
    topo = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    attr = torch.arange(8.0).reshape(4, 2) + 1
    spatial = torch.tensor([[1, 0, 3, 2, 0], [0, 1, 2, 3, 3]])
    index, merged, spatial_only = merge_edges(topo, attr, spatial, num_nodes=4)
    assert _edges(index) == [(0, 1), (1, 0), (1, 2), (2, 1), (3, 2), (2, 3), (0, 3)]
    assert torch.equal(merged[:4, :2], attr) and bool((merged[:4, 2] == 0).all())
    assert bool((merged[4:, :2] == 0).all()) and bool((merged[4:, 2] == 1).all())
    assert spatial_only.tolist() == [False] * 4 + [True] * 3
    rev = reverse_edge_attr(index, merged, 4)
    assert torch.equal(rev[0], merged[1]) and torch.equal(rev[2], merged[3])
    assert bool((rev[6] == 0).all())   # 0 -> 3 has no reverse edge


def test_build_edges_envelope_and_all_pairs() -> None:
    pos, batch = _cloud([5, 4], seed=4)
    topo = torch.tensor([[0, 1], [1, 0]])
    attr = torch.ones(2, 3, dtype=torch.float64)
    edges = build_edges(pos, batch, topo, attr, 3, cutoff=2.0)
    assert edges.attr.shape[1] == 2 * (3 + 1)
    assert bool((edges.weight[:2] == 1).all())
    sp = edges.weight[2:]
    assert bool(((sp > 0) & (sp <= 1)).all()) and bool((edges.dist[2:] < 2.0).all())
    assert torch.allclose(edges.vec, pos[edges.index[0]] - pos[edges.index[1]])
    full = build_edges(pos, batch, topo, attr, 3, cutoff=None)
    assert full.index.shape[1] == 5 * 4 + 4 * 3 and bool((full.weight == 1).all())
    none = build_edges(pos, batch, topo, attr, 3, cutoff=0.0)
    assert none.index.tolist() == topo.tolist() and bool((none.weight == 1).all())
    with pytest.raises(ValueError):
        build_edges(pos, batch, topo, attr, 5, cutoff=2.0)
