"""PaiNN-style scalar + vector message passing with cross-product (handedness) terms.

Each atom carries scalars ``s`` ``(N, F_s)`` and vectors ``v`` ``(N, 3, F_v)`` (Cartesian
axis before channels, so every elementwise vector operation runs over contiguous channel
rows: the network is about 15 % faster on the CPU than with ``(N, F_v, 3)``, for the same
arithmetic and results).
Messages use only relative vectors, so the network is translation invariant
and rotation equivariant. Cross products (``v_j x u_ij`` in messages,
``U v x V v`` in updates) are pseudovectors: mixing them into the vector
channels deliberately breaks parity, so the network can tell a molecule from its
mirror image (the chiral tags and neighbour ranks then say which one is right).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .edges import GraphEdges, GraphInputs, weighted_mean
from .embeddings import mlp

__all__ = ["PaiNNScoreNet", "PaiNNLayer", "VectorLinear", "VectorNorm"]


class VectorLinear(nn.Module):
    """Channel mixing of vector features without bias: ``(N, 3, F_in) -> (N, 3, F_out)``."""

    def __init__(self, f_in: int, f_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(f_out, f_in) / f_in ** 0.5)

    def forward(self, v: Tensor) -> Tensor:
        return v @ self.weight.t()


class VectorNorm(nn.Module):
    """Rotation-equivariant RMS norm of vector channels: ``v / sqrt(mean_f |v_f|^2 + eps) * gamma``."""

    def __init__(self, channels: int, eps: float = 1e-4):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, v: Tensor) -> Tensor:
        rms = (v.pow(2).sum(1).mean(-1, keepdim=True) + self.eps).sqrt()    # (N, 1)
        return v / rms.unsqueeze(-1) * self.gamma


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """Cross product over axis 1 (size 3) with broadcasting, ``(E, 3, F) x (E, 3, 1)``; on the
    CPU about 1.5x faster than ``torch.linalg.cross`` for the products here."""
    a0, a1, a2 = a.unbind(1)
    b0, b1, b2 = b.unbind(1)
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim=1)


class PaiNNLayer(nn.Module):
    """One message + update block.

    Args:
        ns: scalar channels ``F_s``.
        nv: vector channels ``F_v``.
        edge_emb_dim: size of the edge embedding that filters the messages.
    """

    def __init__(self, ns: int, nv: int, edge_emb_dim: int):
        super().__init__()
        self.ns, self.nv = ns, nv
        self.phi = mlp([ns, ns, ns + 3 * nv])
        self.filt = nn.Linear(edge_emb_dim, ns + 3 * nv)
        self.U, self.V = VectorLinear(nv, nv), VectorLinear(nv, nv)
        self.upd = mlp([ns + nv, ns, ns + 3 * nv])
        self.sv = nn.Linear(nv, ns, bias=False)
        self.norm_s, self.norm_v = nn.LayerNorm(ns), VectorNorm(nv)

    def forward(self, s: Tensor, v: Tensor | None, edges: GraphEdges,
                edge_emb: Tensor) -> tuple[Tensor, Tensor]:
        """``s`` ``(N, F_s)``, ``v`` ``(N, 3, F_v)`` (``None``: all zero, as before the first
        layer; the terms in ``v`` are then skipped, same result) -> updated ``(s, v)``."""
        n = s.shape[0]
        src = edges.index[0]
        m = self.phi(s)[src] * self.filt(edge_emb)
        ms, mvv, mvr, mvc = torch.split(m, [self.ns, self.nv, self.nv, self.nv], dim=-1)
        u = (edges.vec / edges.dist.unsqueeze(-1)).unsqueeze(-1)             # (E, 3, 1)
        dv = mvr.unsqueeze(1) * u                                            # (E, 3, F_v)
        if v is not None:
            vj = v[src]
            dv = mvv.unsqueeze(1) * vj + dv + mvc.unsqueeze(1) * _cross(vj, u)
        s = s + weighted_mean(ms, edges, n)
        v = weighted_mean(dv, edges, n) if v is None else v + weighted_mean(dv, edges, n)

        uv, vv = self.U(v), self.V(v)
        vnorm = (vv.pow(2).sum(1) + 1e-8).sqrt()
        a_ss, a_vv, a_vc, a_sv = torch.split(self.upd(torch.cat([s, vnorm], dim=-1)),
                                             [self.ns, self.nv, self.nv, self.nv], dim=-1)
        s = s + a_ss + self.sv(a_sv * (uv * vv).sum(1))
        v = v + a_vv.unsqueeze(1) * uv + a_vc.unsqueeze(1) * _cross(uv, vv)
        return self.norm_s(s), self.norm_v(v)


class PaiNNScoreNet(nn.Module):
    """Chirality-aware PaiNN score network: ``net(x (N, 3), t (B,), cond) -> (N, 3)``.

    ``cond`` is a PyG batch with ``atom_feat`` ``(N, atom_dim)``, ``edge_index``
    ``(2, E)`` topological edges, ``edge_attr`` ``(E, edge_dim)``, ``batch`` ``(N,)`` and
    ``num_graphs`` (missing fields: one graph, no features, spatial edges only).
    The output is a gated sum of the last vector channels, of order 1 at
    initialisation (suits the ``eps`` and ``score`` parameterisations).

    Args:
        atom_dim: node feature size.
        edge_dim: topological edge feature size.
        hidden_scalar: scalar channels.
        hidden_vector: vector channels.
        num_layers: message-passing blocks (at least 1).
        cutoff: radius (in units of ``x``, Å) of the spatial graph rebuilt at each call;
            ``None`` connects all atoms of a graph; ``0`` adds no spatial edges (``cond``'s
            edges are the whole graph).
        num_rbf: Gaussian distance basis size.
        rbf_max: largest distance the basis resolves.
        time_dim: sinusoidal time embedding size.
    """

    name = "painn"

    def __init__(self, atom_dim: int, edge_dim: int, hidden_scalar: int = 128, hidden_vector: int = 32,
                 num_layers: int = 4, cutoff: float | None = 5.0, num_rbf: int = 32,
                 rbf_max: float = 10.0, time_dim: int = 32):
        super().__init__()
        if num_layers < 1:  # the output reads the vector channels of the last layer
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.hparams = dict(hidden_scalar=hidden_scalar, hidden_vector=hidden_vector, num_layers=num_layers,
                            cutoff=cutoff, num_rbf=num_rbf, rbf_max=rbf_max, time_dim=time_dim)
        self.atom_dim, self.edge_dim = atom_dim, edge_dim
        self.nv = hidden_vector
        self.inputs = GraphInputs(atom_dim, edge_dim, hidden_scalar, hidden_scalar, cutoff, num_rbf,
                                  rbf_max, time_dim)
        self.layers = nn.ModuleList(PaiNNLayer(hidden_scalar, hidden_vector, hidden_scalar)
                                    for _ in range(num_layers))
        self.gate = mlp([hidden_scalar, hidden_scalar, hidden_vector])

    def config(self) -> dict:
        """Arguments of :func:`molscore.models.equivariant.build_backbone` that rebuild this net."""
        return dict(name=self.name, atom_dim=self.atom_dim, edge_dim=self.edge_dim, **self.hparams)

    def forward(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        """``x`` ``(N, 3)`` coordinates, ``t`` ``(B,)`` times -> ``(N, 3)``."""
        s, _, edges, edge_emb = self.inputs(x, t, cond)
        v = None                      # zero vectors before the first layer
        for layer in self.layers:
            s, v = layer(s, v, edges, edge_emb)
        return torch.einsum("nf,ncf->nc", self.gate(s), v) / self.nv ** 0.5
