"""Symmetries of the chirality-aware graph score networks (float64, real molecules)."""
from __future__ import annotations

import re

import pytest
import torch
from rdkit.Chem import AllChem
from torch_geometric.data import Batch

from molscore.chem.featurize import (ATOM_FEAT_DIM, DEFAULT_FEATURISATION, EDGE_FEAT_DIM, mol_to_graph,
                                     prepare_mol)
from molscore.models.equivariant import BACKBONES, build_backbone, count_parameters
from molscore.models.param import ScoreModel
from molscore.objectives import dsm_loss
from molscore.sde import VESDE
from molscore.spaces import PointSetSpace

IBUPROFEN_S = "CC(C)Cc1ccc(cc1)[C@H](C)C(=O)O"
IBUPROFEN_R = "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O"
ALANINE_L = "C[C@H](N)C(=O)O"
ALANINE_D = "C[C@@H](N)C(=O)O"
ETHANOL = "CCO"

# small sizes: the symmetries do not depend on width, and the tests stay fast
SMALL = {"painn": dict(hidden_scalar=24, hidden_vector=8, num_layers=3),
         "e3nn": dict(ns=8, nv=4, num_layers=3)}
ATOL = 1e-9


def _graph(smiles: str, seed: int = 11):
    mol = prepare_mol(smiles)
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    g = mol_to_graph(mol, featurisation=DEFAULT_FEATURISATION)
    g.atom_feat, g.edge_attr, g.pos = g.atom_feat.double(), g.edge_attr.double(), g.pos.double()
    return g


@pytest.fixture(scope="module")
def graphs():
    return {s: _graph(s) for s in (IBUPROFEN_S, IBUPROFEN_R, ALANINE_L, ALANINE_D, ETHANOL)}


def _net(name: str, **over):
    torch.manual_seed(0)
    return build_backbone(name, ATOM_FEAT_DIM, EDGE_FEAT_DIM, **{**SMALL[name], **over}).double().eval()


def _rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.det(q))


def _noisy(g, scale: float = 0.3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return g.pos + scale * torch.randn(g.pos.shape, generator=gen, dtype=torch.float64)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", list(BACKBONES))
def test_rotation_and_translation_equivariance(name: str, graphs) -> None:
    net = _net(name)
    b = Batch.from_data_list([graphs[IBUPROFEN_S]])
    x, t = _noisy(graphs[IBUPROFEN_S]), torch.tensor([0.4], dtype=torch.float64)
    with torch.no_grad():
        out = net(x, t, b)
        assert out.shape == x.shape and float(out.norm()) > 1e-3
        for seed in range(3):
            R = _rotation(seed)
            shift = torch.tensor([3.0, -7.0, 1.5], dtype=torch.float64) * seed
            torch.testing.assert_close(net(x @ R.T + shift, t, b), out @ R.T, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_reflection_sensitive_and_enantiomers_differ(name: str, graphs) -> None:
    net = _net(name)
    s_graph, r_graph = graphs[IBUPROFEN_S], graphs[IBUPROFEN_R]
    # the two graphs have the same atoms in the same order but opposite chirality features
    assert torch.equal(s_graph.z, r_graph.z) and torch.equal(s_graph.edge_index, r_graph.edge_index)
    assert not (torch.equal(s_graph.atom_feat, r_graph.atom_feat) and torch.equal(s_graph.edge_attr, r_graph.edge_attr))
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    x, t = _noisy(s_graph), torch.tensor([0.2], dtype=torch.float64)
    bs, br = Batch.from_data_list([s_graph]), Batch.from_data_list([r_graph])
    with torch.no_grad():
        out = net(x, t, bs)
        # same graph, mirrored coordinates: not the mirrored output (an improper rotation too)
        assert _rel(net(x @ M, t, bs), out @ M) > 1e-3
        RM = _rotation(5) @ M
        assert _rel(net(x @ RM.T, t, bs), out @ RM.T) > 1e-3
        # enantiomer graph on mirrored coordinates: not the mirror image of the output either
        assert _rel(net(x @ M, t, br), out @ M) > 1e-3


@pytest.mark.parametrize("name", list(BACKBONES))
def test_permutation_equivariance(name: str, graphs) -> None:
    net = _net(name)
    g = graphs[IBUPROFEN_S]
    x, t = _noisy(g), torch.tensor([0.6], dtype=torch.float64)
    perm = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(3))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(g.num_nodes)
    gp = g.clone()
    gp.atom_feat, gp.z = g.atom_feat[perm], g.z[perm]
    edge_perm = torch.randperm(g.edge_index.shape[1], generator=torch.Generator().manual_seed(4))
    gp.edge_index, gp.edge_attr = inv[g.edge_index][:, edge_perm], g.edge_attr[edge_perm]
    with torch.no_grad():
        out = net(x, t, Batch.from_data_list([g]))
        out_p = net(x[perm], t, Batch.from_data_list([gp]))
    torch.testing.assert_close(out_p, out[perm], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_batch_equals_one_by_one(name: str, graphs) -> None:
    net = _net(name)
    gs = [graphs[ALANINE_L], graphs[IBUPROFEN_S], graphs[ETHANOL]]
    xs = [_noisy(g, seed=i) + 10.0 * i for i, g in enumerate(gs)]   # overlapping boxes would be fine too
    ts = torch.tensor([0.05, 0.5, 0.9], dtype=torch.float64)
    with torch.no_grad():
        batched = net(torch.cat(xs), ts, Batch.from_data_list(gs))
        single = torch.cat([net(x, ts[i:i + 1], Batch.from_data_list([g])) for i, (g, x) in enumerate(zip(gs, xs))])
        torch.testing.assert_close(batched, single, atol=ATOL, rtol=0)
        # the output depends on the time of each graph
        assert _rel(net(torch.cat(xs), ts.flip(0), Batch.from_data_list(gs)), batched) > 1e-3


@pytest.mark.parametrize("name", list(BACKBONES))
def test_batched_molecules_rotated_translated_and_reordered(name: str, graphs) -> None:
    """A batch of molecules of different sizes, each rotated and translated on its own, then
    given in another order: each molecule's output is its own output rotated."""
    net = _net(name)
    gs = [graphs[ALANINE_L], graphs[IBUPROFEN_S], graphs[ETHANOL]]
    xs = [_noisy(g, seed=i) for i, g in enumerate(gs)]
    ts = torch.tensor([0.1, 0.5, 0.8], dtype=torch.float64)
    order = [2, 0, 1]
    with torch.no_grad():
        out = net(torch.cat(xs), ts, Batch.from_data_list(gs)).split([g.num_nodes for g in gs])
        moved = [xs[i] @ _rotation(10 + i).T + torch.tensor([4.0, -2.0, 9.0], dtype=torch.float64) * (i - 1)
                 for i in order]
        got = net(torch.cat(moved), ts[order], Batch.from_data_list([gs[i] for i in order]))
    expected = torch.cat([out[i] @ _rotation(10 + i).T for i in order])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_all_pairs_mode_and_missing_topology(name: str, graphs) -> None:
    g = graphs[ALANINE_L]
    x, t = _noisy(g), torch.tensor([0.3], dtype=torch.float64)
    R = _rotation(9)
    net = _net(name, cutoff=None)
    b = Batch.from_data_list([g])
    with torch.no_grad():
        torch.testing.assert_close(net(x @ R.T, t, b), net(x, t, b) @ R.T, atol=ATOL, rtol=0)
        # a bare point cloud (no features, no bonds) works as well
        bare = build_backbone(name, 0, 0, **SMALL[name]).double()
        out = bare(x, t, None)
        torch.testing.assert_close(bare(x @ R.T, t, None), out @ R.T, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_config_round_trip_and_factory_errors(name: str, graphs) -> None:
    net = _net(name)
    again = build_backbone(**net.config()).double().eval()
    again.load_state_dict(net.state_dict())
    g = graphs[ALANINE_L]
    b, t = Batch.from_data_list([g]), torch.tensor([0.3], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(again(g.pos, t, b), net(g.pos, t, b), atol=0, rtol=0)
    assert count_parameters(net) == sum(p.numel() for p in net.parameters()) > 1000
    with pytest.raises(ValueError, match="painn"):
        build_backbone("nope", 3, 3)
    with pytest.raises(ValueError, match="hyper-parameters"):
        build_backbone(name, 3, 3, no_such_option=1)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_overfits_one_molecule_dsm(name: str, graphs) -> None:
    """A few Adam steps on fixed (t, noise) draws of one molecule lower its DSM loss."""
    torch.manual_seed(1)
    g = graphs[ALANINE_L]
    copies = 4
    b = Batch.from_data_list([g] * copies)
    space = PointSetSpace(b.batch, copies)
    x0 = space.project(b.pos)
    sde = VESDE(sigma_min=0.01, sigma_max=3.0)
    model = ScoreModel(_net(name).train(), sde, "eps")
    t = torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=torch.float64)
    noise = space.noise_like(x0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss = dsm_loss(model, sde, x0, space, b, t=t, noise=noise).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_continuous_when_an_edge_crosses_the_cutoff(name: str) -> None:
    """Spatial edges enter with zero weight, so the output has no jump at the cutoff."""
    net = build_backbone(name, 0, 0, **{**SMALL[name], "cutoff": 2.0}).double().eval()
    base = torch.tensor([[0.0, 0.0, 0.0], [1.2, 0.3, 0.0], [0.2, 1.1, 0.4]], dtype=torch.float64)
    t = torch.tensor([0.5], dtype=torch.float64)

    def out(d: float) -> torch.Tensor:   # fourth point at distance d from the first
        return net(torch.cat([base, torch.tensor([[-d, 0.0, 0.0]], dtype=torch.float64)]), t, None)

    with torch.no_grad():
        jump = (out(2.0 - 1e-7) - out(2.0 + 1e-7)).abs().max()
        change = (out(1.6) - out(2.0 + 1e-7)).abs().max()
    assert float(change) > 1e-4 and float(jump) < 1e-5


def _held_out_loss(name: str, graphs: list, sign, steps: int) -> float:
    """Fit a fresh ``name`` network, at the stereocentre (atom 1) of the alanine graphs
    ``graphs`` (one per copy, all with the same atoms and bonds), to ``sign(k) * u`` on copy
    ``k`` of the L conformer, randomly rotated and, for odd ``k``, mirrored (``u``: the unit
    vector from the centre to its H in that copy), ``steps`` Adam steps at ``t = 0.1``;
    returns the mean squared error on copies drawn with unseen rotations."""
    g = graphs[0]
    centre = 1
    d = (g.pos - g.pos[centre]).norm(dim=-1).masked_fill(g.z != 1, float("inf"))
    hydrogen = int(d.argmin())   # the H bonded to the stereocentre (1.1 A; other H are >= 2 A away)
    assert float(d[hydrogen]) < 1.2
    x = g.pos - g.pos.mean(0)
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    copies = len(graphs)
    b = Batch.from_data_list(graphs)
    rows = torch.arange(copies) * g.num_nodes + centre
    t = torch.full((copies,), 0.1, dtype=torch.float64)

    def draw(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        xs, targets = [], []
        for k in range(copies):
            q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
            R = q * torch.sign(torch.det(q))
            y = x @ (R @ M if k % 2 else R).T
            xs.append(y)
            targets.append(sign(k) * (y[hydrogen] - y[centre]) / (y[hydrogen] - y[centre]).norm())
        return torch.cat(xs), torch.stack(targets)

    net = _net(name).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        xs, targets = draw(gen)
        loss = (net(xs, t, b)[rows] - targets).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    xs, targets = draw(torch.Generator().manual_seed(99))
    with torch.no_grad():
        return (net(xs, t, b)[rows] - targets).pow(2).sum(-1).mean().item()


@pytest.mark.parametrize("name", list(BACKBONES))
def test_learns_a_handedness_dependent_target(name: str, graphs) -> None:
    """Fit, at the stereocentre of L-alanine, ``+u`` on rotated copies of its conformer and
    ``-u`` on rotated mirror images (``u``: unit vector from the centre to its H).

    Any mirror-equivariant network ``f(M y) = M f(y)`` has mean loss >= 1 on this data
    (``|f - u|^2 + |f + u|^2 >= 2``), so a loss well below 1 shows the network uses handedness.
    """
    assert _held_out_loss(name, [graphs[ALANINE_L]] * 8, lambda k: -1 if k % 2 else 1, steps=30) < 0.3


@pytest.mark.parametrize("name", list(BACKBONES))
def test_learns_a_target_set_by_the_stereo_labels(name: str, graphs) -> None:
    """Fit ``+u`` where the coordinates have the handedness the graph's stereo features say
    (L-alanine graph on L coordinates, D graph on mirrored ones) and ``-u`` where they do not.

    The same coordinates come with both targets (one per graph), so a network that ignores
    the stereo features has mean loss >= 1, and the same graph comes with both targets (one
    per handedness), so one that ignores handedness does too: a loss well below 1 shows the
    network combines the two, as a score must to restore the right configuration. (The test
    above, one graph, is passed by a network blind to the stereo features.)
    """
    gl, gd = graphs[ALANINE_L], graphs[ALANINE_D]
    assert torch.equal(gl.z, gd.z) and torch.equal(gl.edge_index, gd.edge_index)
    copies = [gd if k % 4 >= 2 else gl for k in range(8)]   # k % 2: mirrored; k % 4 >= 2: D graph
    assert _held_out_loss(name, copies, lambda k: 1 if (k % 2 == 1) == (k % 4 >= 2) else -1,
                          steps=40) < 0.3


@pytest.mark.parametrize("name", list(BACKBONES))
def test_finite_for_coincident_atoms(name: str, graphs) -> None:
    g = graphs[ALANINE_L]
    x = g.pos.clone()
    x[4] = x[0]   # two atoms on top of each other
    x.requires_grad_(True)
    net = _net(name)
    out = net(x, torch.tensor([0.3], dtype=torch.float64), Batch.from_data_list([g]))
    out.pow(2).sum().backward()
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("name", list(BACKBONES))
def test_inputs_that_do_not_fit_the_network_raise_naming_the_mismatch(name: str, graphs) -> None:
    """Missing atom features (cond=None on a network with atom_dim > 0), a feature row count
    other than the number of points, or 2D points raised bare matmul/cat errors."""
    net = _net(name)
    g = graphs[ALANINE_L]
    n, t = g.num_nodes, torch.tensor([0.3], dtype=torch.float64)
    with pytest.raises(ValueError, match=re.escape(f"atom_feat is ({n}, 0), the network expects "
                                                   f"({n}, {ATOM_FEAT_DIM})")):
        net(g.pos, t, None)
    with pytest.raises(ValueError, match=re.escape(f"atom_feat is ({n}, {ATOM_FEAT_DIM}), the "
                                                   f"network expects ({n - 1}, {ATOM_FEAT_DIM})")):
        net(g.pos[1:], t, Batch.from_data_list([g]))
    with pytest.raises(ValueError, match=re.escape(f"coordinates must be (N, 3), got ({n}, 2)")):
        net(g.pos[:, :2], t, Batch.from_data_list([g]))


@pytest.mark.parametrize("name", list(BACKBONES))
def test_no_message_passing_layers_is_refused(name: str) -> None:
    """num_layers=0 crashed PaiNN's output einsum (no vector channels yet) and made the
    e3nn network a plain 1o vector field, mirror-equivariant against its docstring."""
    with pytest.raises(ValueError, match=re.escape("num_layers must be an integer >= 1, got 0")):
        build_backbone(name, 0, 0, **{**SMALL[name], "num_layers": 0})
