"""Edges the graph score networks pass messages along: topological plus spatial.

At every call the spatial graph is rebuilt from the current (noisy) coordinates
and merged with the molecule's topological edges (bonds, 2- and 3-hop pairs):

* a pair that is topological keeps its features and gets ``spatial = 0``;
* a pair that is only spatial gets zero topological features and ``spatial = 1``,
  and its messages are multiplied by a cosine envelope that reaches 0 at the
  cutoff, so the network is continuous in the coordinates.

Each edge also sees the features of its reverse edge: the featuriser puts the
chiral neighbour rank on ``centre -> neighbour`` edges only, and with
``source -> target`` aggregation the centre receives along the reverse edges.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from ..spaces import index_count
from .embeddings import CosineCutoff, GaussianSmearing, SinusoidalTimeEmbedding, mlp
from .neighbors import radius_graph

__all__ = ["GraphEdges", "merge_edges", "reverse_edge_attr", "build_edges", "graph_fields", "GraphInputs",
           "weighted_mean"]


@dataclass
class GraphEdges:
    """Edges of one network call.

    Attributes:
        index: ``(2, E)`` long, ``[source j, target i]``.
        attr: ``(E, 2 * (edge_dim + 1))`` features of the edge and of its reverse edge
            (each: topological features, then the ``spatial`` flag).
        vec: ``(E, 3)`` ``x_j - x_i`` (from target to source).
        dist: ``(E,)`` ``|x_j - x_i|``.
        weight: ``(E,)`` message envelope (1 on topological edges).
    """

    index: Tensor
    attr: Tensor
    vec: Tensor
    dist: Tensor
    weight: Tensor


def merge_edges(topo_index: Tensor, topo_attr: Tensor, spatial_index: Tensor,
                num_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Union of topological and spatial edges.

    Args:
        topo_index: ``(2, Et)`` topological edges.
        topo_attr: ``(Et, F)`` their features.
        spatial_index: ``(2, Es)`` spatial edges.
        num_nodes: ``N``.

    Returns:
        ``(index (2, E), attr (E, F + 1), spatial_only (E,) bool)``: topological edges first,
        in their order, then spatial edges that are not topological; the last feature
        column is the ``spatial`` flag.
    """
    topo_key = topo_index[0] * num_nodes + topo_index[1]
    sp_key = spatial_index[0] * num_nodes + spatial_index[1]
    new = ~torch.isin(sp_key, topo_key)
    sp_index = spatial_index[:, new]
    f = topo_attr.shape[1]
    attr = torch.cat([
        torch.cat([topo_attr, topo_attr.new_zeros(topo_attr.shape[0], 1)], dim=1),
        torch.cat([topo_attr.new_zeros(sp_index.shape[1], f), topo_attr.new_ones(sp_index.shape[1], 1)], dim=1),
    ])
    spatial_only = torch.cat([torch.zeros(topo_index.shape[1], dtype=torch.bool, device=attr.device),
                              torch.ones(sp_index.shape[1], dtype=torch.bool, device=attr.device)])
    return torch.cat([topo_index, sp_index], dim=1), attr, spatial_only


def reverse_edge_attr(index: Tensor, attr: Tensor, num_nodes: int) -> Tensor:
    """Features of each edge's reverse edge ``(E, F)`` (zeros where there is none)."""
    key = index[0] * num_nodes + index[1]
    rev = index[1] * num_nodes + index[0]
    sorted_key, order = torch.sort(key)
    pos = torch.searchsorted(sorted_key, rev).clamp(max=max(key.numel() - 1, 0))
    found = sorted_key[pos] == rev if key.numel() else torch.zeros_like(rev, dtype=torch.bool)
    out = attr[order[pos]] if key.numel() else attr
    return out * found.unsqueeze(-1).to(attr.dtype)


def weighted_mean(msg: Tensor, edges: GraphEdges, num_nodes: int) -> Tensor:
    """Aggregate edge messages ``(E, ...)`` at their targets: ``sum_e w_e m_e / max(sum_e w_e, 1)``.

    Returns ``(num_nodes, ...)``. Continuous in the envelope weights ``w`` (an edge that
    enters at the cutoff with ``w = 0`` changes nothing), unlike a plain mean.
    """
    target, weight = edges.index[1], edges.weight
    shape = (-1, *([1] * (msg.ndim - 1)))
    total = scatter(msg * weight.reshape(shape), target, dim=0, dim_size=num_nodes, reduce="sum")
    norm = scatter(weight, target, dim=0, dim_size=num_nodes, reduce="sum").clamp(min=1.0)
    return total / norm.reshape(shape)


def graph_fields(cond: Any, x: Tensor) -> tuple[Tensor, int, Tensor, Tensor | None, Tensor | None]:
    """``(batch, num_graphs, atom_feat, edge_index, edge_attr)`` from a PyG batch (or ``None``).

    Missing fields default to one graph, ``(N, 0)`` node features and no topological edges.
    """
    n = x.shape[0]
    batch = getattr(cond, "batch", None)
    batch = torch.zeros(n, dtype=torch.long, device=x.device) if batch is None else batch.to(x.device)
    num_graphs = getattr(cond, "num_graphs", None)
    if num_graphs is None:      # only then read batch.max(): a host sync on a GPU
        num_graphs = index_count(batch)
    atom_feat = getattr(cond, "atom_feat", None)
    if atom_feat is None:
        atom_feat = x.new_zeros(n, 0)
    return (batch, num_graphs, atom_feat.to(x), getattr(cond, "edge_index", None),
            getattr(cond, "edge_attr", None))


def build_edges(x: Tensor, batch: Tensor, edge_index: Tensor | None, edge_attr: Tensor | None,
                edge_dim: int, cutoff: float | None) -> GraphEdges:
    """Merge topological edges with the radius graph of ``x`` (all within-graph pairs if ``cutoff`` is None).

    Args:
        x: ``(N, 3)`` current coordinates.
        batch: ``(N,)`` graph index.
        edge_index: ``(2, Et)`` topological edges or ``None``.
        edge_attr: ``(Et, edge_dim)`` their features or ``None``.
        edge_dim: topological feature size (used when there are no topological edges).
        cutoff: radius in the units of ``x``; ``0`` adds no spatial edges (the caller's
            edges are the whole graph).
    """
    n = x.shape[0]
    if edge_index is None:
        edge_index = torch.zeros(2, 0, dtype=torch.long, device=x.device)
    if edge_attr is None:
        edge_attr = x.new_zeros(edge_index.shape[1], edge_dim)
    if edge_attr.shape[1] != edge_dim:
        raise ValueError(f"edge_attr has {edge_attr.shape[1]} features, the network expects {edge_dim}")
    if cutoff is not None and cutoff <= 0:
        spatial = torch.zeros(2, 0, dtype=torch.long, device=x.device)
    else:
        spatial = radius_graph(x, float("inf") if cutoff is None else cutoff, batch)
    index, attr, spatial_only = merge_edges(edge_index.to(x.device), edge_attr.to(x), spatial, n)
    attr = torch.cat([attr, reverse_edge_attr(index, attr, n)], dim=1)
    vec = x[index[0]] - x[index[1]]
    dist = vec.pow(2).sum(-1).clamp(min=1e-12).sqrt()
    weight = torch.ones_like(dist)
    if cutoff is not None and cutoff > 0:
        weight = torch.where(spatial_only, CosineCutoff(cutoff)(dist), weight)
    return GraphEdges(index, attr, vec, dist, weight)


class GraphInputs(nn.Module):
    """Shared input stage: initial node scalars, merged edges and their embedding.

    Node scalars embed the atom features and the diffusion time; edge embeddings
    embed the distance (Gaussian basis and ``log(1 + d)``), the edge features of
    both directions and the time of the edge's graph.

    Args:
        atom_dim: node feature size.
        edge_dim: topological edge feature size.
        node_dim: size of the initial node scalars.
        edge_emb_dim: size of the edge embedding.
        cutoff: radius of the spatial graph (``None``: all pairs within a graph; ``0``: none).
        num_rbf: Gaussians of the distance basis, centred on ``[0, rbf_max]``.
        rbf_max: last Gaussian centre.
        time_dim: size of the sinusoidal time embedding.
    """

    def __init__(self, atom_dim: int, edge_dim: int, node_dim: int, edge_emb_dim: int,
                 cutoff: float | None, num_rbf: int, rbf_max: float, time_dim: int):
        super().__init__()
        self.atom_dim, self.edge_dim, self.cutoff = atom_dim, edge_dim, cutoff
        self.time_embed = SinusoidalTimeEmbedding(time_dim)
        self.time_mlp = mlp([time_dim, node_dim, node_dim], last_act=True)
        self.node_mlp = mlp([atom_dim + node_dim, node_dim, node_dim])
        self.rbf = GaussianSmearing(0.0, rbf_max, num_rbf)
        self.edge_mlp = mlp([num_rbf + 1 + 2 * (edge_dim + 1) + node_dim, edge_emb_dim, edge_emb_dim])

    def forward(self, x: Tensor, t: Tensor, cond: Any) -> tuple[Tensor, Tensor, GraphEdges, Tensor]:
        """``x`` ``(N, 3)``, ``t`` ``(B,)`` -> node scalars ``(N, node_dim)``, ``batch`` ``(N,)``,
        edges, edge embedding ``(E, edge_emb_dim)``.

        Raises:
            ValueError: ``x`` is not ``(N, 3)`` or the atom features are not ``(N, atom_dim)``
                (also when ``cond`` has none and the network expects some).
        """
        if x.ndim != 2 or x.shape[1] != 3:
            raise ValueError(f"coordinates must be (N, 3), got {tuple(x.shape)}")
        batch, num_graphs, atom_feat, edge_index, edge_attr = graph_fields(cond, x)
        if tuple(atom_feat.shape) != (x.shape[0], self.atom_dim):
            raise ValueError(f"atom_feat is {tuple(atom_feat.shape)}, the network expects "
                             f"({x.shape[0]}, {self.atom_dim}): one row of {self.atom_dim} "
                             "features per point")
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1)
        if t.numel() == 1 and num_graphs != 1:
            t = t.expand(num_graphs)
        temb = self.time_mlp(self.time_embed(t).to(x.dtype))           # (B, node_dim)
        s = self.node_mlp(torch.cat([atom_feat, temb[batch]], dim=-1))
        edges = build_edges(x, batch, edge_index, edge_attr, self.edge_dim, self.cutoff)
        target = edges.index[1]
        e = torch.cat([self.rbf(edges.dist), torch.log1p(edges.dist).unsqueeze(-1), edges.attr,
                       temb[batch[target]]], dim=-1)
        return s, batch, edges, self.edge_mlp(e)
