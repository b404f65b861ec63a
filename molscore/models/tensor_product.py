"""e3nn tensor-product convolution score network (torsional-diffusion / DiffDock style).

Node features are O(3) irreps that grow layer by layer,
``ns x0e -> + nv x1o -> + nv x1e -> + ns x0o``; each layer convolves them with the
spherical harmonics (``lmax = 2``) of the edge directions through a
:class:`e3nn.o3.FullyConnectedTensorProduct` whose weights are produced per edge
by an MLP of the edge embedding (distance basis, edge features, time) and the
scalars of both endpoints. Internally the network is O(3)-equivariant; the final
layer outputs a vector ``1x1o`` and a pseudovector ``1x1e`` per atom and returns
their sum, which rotates with the input but is *not* mirrored with it (as in
DiffDock), so enantiomers get different scores.
"""
from __future__ import annotations

from typing import Any

import torch
from e3nn import o3
from torch import Tensor, nn

from .edges import GraphEdges, GraphInputs, weighted_mean
from .embeddings import mlp

__all__ = ["TensorProductScoreNet", "TPConv", "IrrepsNorm"]


class IrrepsNorm(nn.Module):
    """Per-node layer norm of irreps features, equivariant under O(3).

    For each block ``mul x ir``: even scalars (``0e``) are centred and scaled to unit
    variance, with a learned scale and bias; other irreps (``0o``, ``1o``, ``1e``, ...)
    are divided by the root-mean-square norm of their ``mul`` copies, with a learned
    scale and no bias (a bias would break their transformation law).

    Args:
        irreps: feature irreps; input ``(N, irreps.dim)``.
        eps: added to the variances.
    """

    def __init__(self, irreps: o3.Irreps, eps: float = 1e-5):
        super().__init__()
        self.irreps, self.eps = o3.Irreps(irreps), eps
        self.scales = nn.ParameterList(nn.Parameter(torch.ones(mul)) for mul, _ in self.irreps)
        n_even = sum(mul for mul, ir in self.irreps if ir.l == 0 and ir.p == 1)
        self.bias = nn.Parameter(torch.zeros(n_even))

    def forward(self, h: Tensor) -> Tensor:
        """``(N, irreps.dim) -> (N, irreps.dim)``."""
        out, b = [], 0
        for (mul, ir), sl, scale in zip(self.irreps, self.irreps.slices(), self.scales):
            x = h[:, sl].reshape(-1, mul, ir.dim)
            if ir.l == 0 and ir.p == 1:
                x = x - x.mean(dim=1, keepdim=True)
            x = x / (x.pow(2).sum(-1).mean(-1, keepdim=True) + self.eps).sqrt().unsqueeze(-1)
            x = x * scale.reshape(1, mul, 1)
            if ir.l == 0 and ir.p == 1:
                x = x + self.bias[b:b + mul].reshape(1, mul, 1)
                b += mul
            out.append(x.reshape(-1, mul * ir.dim))
        return torch.cat(out, dim=-1)


class TPConv(nn.Module):
    """Tensor-product convolution ``h_i' = h_i + mean_j w_ij TP(h_j, Y(u_ij); W(e_ij, s_i, s_j))``.

    Args:
        irreps_in: node irreps in.
        irreps_sh: spherical-harmonics irreps of the edge directions.
        irreps_out: node irreps out; the residual pads ``h_i`` with zeros, so ``irreps_in``
            must be a prefix of ``irreps_out`` when ``residual``.
        weight_in: size of the per-edge input of the weight MLP.
        hidden: hidden size of the weight MLP.
        residual: add the input features.
        norm: finish with :class:`IrrepsNorm` (keeps features of order 1 without batch norm).
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_out: o3.Irreps, weight_in: int,
                 hidden: int, residual: bool = True, norm: bool = True):
        super().__init__()
        self.irreps_in, self.irreps_out, self.residual = o3.Irreps(irreps_in), o3.Irreps(irreps_out), residual
        self.tp = o3.FullyConnectedTensorProduct(irreps_in, irreps_sh, irreps_out, shared_weights=False)
        self.fc = mlp([weight_in, hidden, self.tp.weight_numel])
        self.norm = IrrepsNorm(self.irreps_out) if norm else None

    def forward(self, h: Tensor, edge_sh: Tensor, weight_in: Tensor, edges: GraphEdges) -> Tensor:
        """``h`` ``(N, irreps_in.dim)`` -> ``(N, irreps_out.dim)``."""
        src = edges.index[0]
        out = weighted_mean(self.tp(h[src], edge_sh, self.fc(weight_in)), edges, h.shape[0])
        if self.residual:
            out = out + nn.functional.pad(h, (0, out.shape[-1] - h.shape[-1]))
        return out if self.norm is None else self.norm(out)


class TensorProductScoreNet(nn.Module):
    """Chirality-aware e3nn score network: ``net(x (N, 3), t (B,), cond) -> (N, 3)``.

    Same ``cond`` contract as :class:`molscore.models.painn.PaiNNScoreNet`. The default
    sizes (``ns=16, nv=4``) are meant for CPU training; torsional diffusion's ``ns=32, nv=8``
    costs about 4x more per step (the backward pass of the per-edge tensor products dominates).

    Args:
        atom_dim: node feature size.
        edge_dim: topological edge feature size.
        ns: scalar (``0e`` and ``0o``) multiplicity.
        nv: vector (``1o`` and ``1e``) multiplicity.
        num_layers: convolutions before the output convolution, at least 1 (from 3 on the
            features reach ``0o``).
        sh_lmax: degree of the edge spherical harmonics.
        cutoff: spatial-graph radius (Å); ``None`` connects all atoms of a graph; ``0`` adds no
            spatial edges (``cond``'s edges are the whole graph).
        num_rbf: Gaussian distance basis size.
        rbf_max: largest distance the basis resolves.
        time_dim: sinusoidal time embedding size.
    """

    name = "e3nn"

    def __init__(self, atom_dim: int, edge_dim: int, ns: int = 16, nv: int = 4, num_layers: int = 4,
                 sh_lmax: int = 2, cutoff: float | None = 5.0, num_rbf: int = 32, rbf_max: float = 10.0,
                 time_dim: int = 32):
        super().__init__()
        if num_layers < 1:  # with none the output is a plain 1o vector: mirror-equivariant
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.hparams = dict(ns=ns, nv=nv, num_layers=num_layers, sh_lmax=sh_lmax, cutoff=cutoff,
                            num_rbf=num_rbf, rbf_max=rbf_max, time_dim=time_dim)
        self.atom_dim, self.edge_dim, self.ns = atom_dim, edge_dim, ns
        self.inputs = GraphInputs(atom_dim, edge_dim, ns, ns, cutoff, num_rbf, rbf_max, time_dim)
        self.irreps_sh = o3.Irreps.spherical_harmonics(sh_lmax)
        seq = [o3.Irreps(f"{ns}x0e"), o3.Irreps(f"{ns}x0e + {nv}x1o"),
               o3.Irreps(f"{ns}x0e + {nv}x1o + {nv}x1e"),
               o3.Irreps(f"{ns}x0e + {nv}x1o + {nv}x1e + {ns}x0o")]
        self.convs = nn.ModuleList(
            TPConv(seq[min(i, 3)], self.irreps_sh, seq[min(i + 1, 3)], 3 * ns, 3 * ns)
            for i in range(num_layers))
        last = seq[min(num_layers, 3)]
        self.out_conv = TPConv(last, self.irreps_sh, o3.Irreps("1x1o + 1x1e"), 3 * ns, 3 * ns,
                               residual=False, norm=False)

    def config(self) -> dict:
        """Arguments of :func:`molscore.models.equivariant.build_backbone` that rebuild this net."""
        return dict(name=self.name, atom_dim=self.atom_dim, edge_dim=self.edge_dim, **self.hparams)

    def forward(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        """``x`` ``(N, 3)`` coordinates, ``t`` ``(B,)`` times -> ``(N, 3)``."""
        h, _, edges, edge_emb = self.inputs(x, t, cond)
        src, dst = edges.index
        unit = edges.vec / edges.dist.unsqueeze(-1)          # dist is clamped: finite for coincident atoms
        edge_sh = o3.spherical_harmonics(self.irreps_sh, unit, normalize=False, normalization="component")
        for conv in [*self.convs, self.out_conv]:
            weight_in = torch.cat([edge_emb, h[src, :self.ns], h[dst, :self.ns]], dim=-1)
            h = conv(h, edge_sh, weight_in, edges)
        return h[:, :3] + h[:, 3:]
