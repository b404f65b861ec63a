"""Chain graphs for C-alpha traces on top of the equivariant molecule backbones.

A batch of chains is a PyG batch of :func:`chain_data` items: rows of one chain are
contiguous and in sequence order, ``res_id`` ``(N,)`` is the residue's position in
its chain (0-based; not named ``*index``, which PyG would offset when batching) and ``chain_len`` ``(N,)`` the chain's length. :class:`ChainGraphNet` turns it
into the graph the backbone of :func:`molscore.models.equivariant.build_backbone`
expects and runs it:

* **node features** (:func:`residue_features`): sines and cosines of the residue index at
  geometric wavelengths, the relative position ``i / (n - 1)`` and ``log n``;
* **edges** (:func:`chain_edges`), rebuilt from the current coordinates at every call:
  sequence neighbours ``1 <= |i - j| <= max_offset`` with the signed offset one-hot as
  features, plus the ``k`` nearest residues of each residue (plain-torch
  :func:`molscore.models.neighbors.knn_graph`, blockwise per chain) flagged by a last
  feature column. At most ``(k + 2 max_offset) N`` edges, so memory is linear in the
  chain length (a 500-residue chain is cheap).

The edges go to the backbone as its "topological" edges; its own radius graph is
switched off (cutoff :data:`NO_RADIUS`, 0), so the kNN graph is the only
spatial graph. The kNN set is invariant under rotations and translations, hence the
network stays SE(3)-equivariant and translation invariant (the backbone sees only
relative vectors); its output is projected CoM-free by the score wrapper.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch as GraphBatch
from torch_geometric.data import Data

from .equivariant import build_backbone
from .neighbors import knn_graph

__all__ = ["NO_RADIUS", "chain_data", "chain_batch", "residue_features", "chain_edges",
           "ChainGraphNet"]

NO_RADIUS = 0.0     # a backbone cutoff of 0 builds no radius graph (no all-pairs pass)
"""Backbone radius cutoff (in units of ``x``) that yields no radius edges: the chain graph
supplies all edges."""


def chain_data(length: int) -> Data:
    """Graph item of one chain of ``length`` residues (no coordinates)."""
    idx = torch.arange(length)
    return Data(res_id=idx, chain_len=torch.full((length,), length), num_nodes=length)


def chain_batch(lengths: Sequence[int]) -> GraphBatch:
    """PyG batch of chains (``batch``, ``num_graphs``, ``res_id``, ``chain_len``)."""
    return GraphBatch.from_data_list([chain_data(int(n)) for n in lengths])


def residue_features(res_id: Tensor, chain_len: Tensor, num_freqs: int = 8,
                     max_wavelength: float = 1000.0) -> Tensor:
    """Residue position features ``(N, 2 num_freqs + 2)``.

    ``[sin(i w_f), cos(i w_f)]`` for wavelengths ``2 pi / w_f`` from 2 to ``max_wavelength``
    residues, the relative position ``i / max(n - 1, 1)`` and ``log n``.
    """
    i = res_id.to(torch.float32).unsqueeze(-1)
    n = chain_len.to(torch.float32).unsqueeze(-1)
    wavelengths = torch.exp(torch.linspace(math.log(2.0), math.log(max_wavelength), num_freqs,
                                           device=i.device))
    arg = i * (2 * math.pi / wavelengths)
    return torch.cat([arg.sin(), arg.cos(), i / (n - 1).clamp(min=1), n.log()], dim=-1)


def chain_edges(x: Tensor, batch: Tensor, res_id: Tensor, k: int, max_offset: int
                ) -> tuple[Tensor, Tensor]:
    """Sequence-neighbour and spatial kNN edges of a batch of chains.

    Args:
        x: ``(N, 3)`` current coordinates (only used to pick the kNN set, no gradient).
        batch: ``(N,)`` chain index; rows of a chain contiguous, in sequence order.
        res_id: ``(N,)`` residue index within the chain.
        k: spatial neighbours per residue.
        max_offset: sequence neighbours ``1 <= |i - j| <= max_offset`` are always connected.

    Returns:
        ``edge_index`` ``(2, E)`` ``[source, target]`` (both directions) and ``edge_attr``
        ``(E, 2 max_offset + 1)``: one-hot of the signed offset ``i_source - i_target`` for
        sequence neighbours (zeros otherwise), then 1 if the edge is a kNN edge.
        ``E <= (k + 2 max_offset) N``.
    """
    n = x.shape[0]
    rows = torch.arange(n, device=x.device)
    seq = []
    for d in range(1, max_offset + 1):
        same = batch[d:] == batch[:-d]
        a = rows[:-d][same]
        seq += [torch.stack([a, a + d]), torch.stack([a + d, a])]
    seq_index = torch.cat(seq, dim=1) if seq else rows.new_zeros(2, 0)
    knn_index = knn_graph(x.detach(), k, batch)
    keys = torch.cat([seq_index[0] * n + seq_index[1], knn_index[0] * n + knn_index[1]])
    keys = torch.unique(keys)
    edge_index = torch.stack([keys // n, keys % n])
    offset = res_id[edge_index[0]] - res_id[edge_index[1]]
    is_seq = (offset.abs() <= max_offset) & (offset != 0)
    slot = torch.where(offset < 0, offset + max_offset, offset + max_offset - 1)
    attr = x.new_zeros(keys.numel(), 2 * max_offset + 1)
    attr[is_seq, slot[is_seq]] = 1.0
    attr[:, -1] = torch.isin(keys, knn_index[0] * n + knn_index[1]).to(x.dtype)
    return edge_index, attr


@dataclass
class _BackboneInput:
    """The fields the backbone reads from its ``cond`` (see :mod:`molscore.models.edges`)."""

    atom_feat: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    batch: Tensor
    num_graphs: int


class ChainGraphNet(nn.Module):
    """``net(x (N, 3), t (B,), cond) -> (N, 3)`` for C-alpha traces.

    ``cond`` is a :func:`chain_batch`. The backbone is one of
    :data:`molscore.models.equivariant.BACKBONES`, built with the chain feature sizes and
    :data:`NO_RADIUS`.

    Args:
        backbone: backbone name (``"painn"`` or ``"e3nn"``).
        k: spatial nearest neighbours per residue.
        max_offset: sequence-neighbour range.
        num_freqs: frequencies of the residue-index encoding.
        **hparams: backbone hyper-parameters (channels, layers, ``rbf_max`` in units of ``x``).
    """

    def __init__(self, backbone: str = "painn", k: int = 16, max_offset: int = 3,
                 num_freqs: int = 8, **hparams: Any):
        super().__init__()
        if k < 1 or max_offset < 1:
            raise ValueError(f"need k >= 1 and max_offset >= 1, got k={k}, max_offset={max_offset}")
        if "cutoff" in hparams:
            raise ValueError("the chain graph sets the backbone cutoff itself; use k instead")
        self.k, self.max_offset, self.num_freqs = int(k), int(max_offset), int(num_freqs)
        self.backbone_name = backbone
        self.hparams = dict(hparams)
        self.backbone = build_backbone(backbone, atom_dim=2 * num_freqs + 2,
                                       edge_dim=2 * max_offset + 1, cutoff=NO_RADIUS, **hparams)

    def config(self) -> dict:
        """Keyword arguments that rebuild this network: ``ChainGraphNet(**net.config())``."""
        return dict(backbone=self.backbone_name, k=self.k, max_offset=self.max_offset,
                    num_freqs=self.num_freqs, **self.hparams)

    def graph(self, x: Tensor, cond: Any) -> _BackboneInput:
        """The backbone's input graph for coordinates ``x`` ``(N, 3)``."""
        batch = cond.batch.to(x.device)
        res_id = cond.res_id.to(x.device)
        feat = residue_features(res_id, cond.chain_len.to(x.device), self.num_freqs).to(x.dtype)
        edge_index, edge_attr = chain_edges(x, batch, res_id, self.k, self.max_offset)
        return _BackboneInput(feat, edge_index, edge_attr, batch, int(cond.num_graphs))

    def forward(self, x: Tensor, t: Tensor, cond: Any) -> Tensor:
        """``x`` ``(N, 3)``, ``t`` ``(B,)`` -> ``(N, 3)``."""
        return self.backbone(x, t, self.graph(x, cond))
