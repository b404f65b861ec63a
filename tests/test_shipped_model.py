"""The shipped conformer model: loads offline with weights_only, and its samples are sound.

These tests use the real weights in ``molscore/weights/conformer.pt`` (what ``molscore
generate`` uses by default), so they check trained behaviour, not just the pipeline.
"""
import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from molscore.chem.checks import check_geometry
from molscore.chem.stereo import check_stereo
from molscore.checkpoint import load_checkpoint_model
from molscore.generate import default_model_path, generate_conformers

ALANINE = "C[C@H](N)C(=O)O"


@pytest.fixture(scope="module")
def shipped():
    path = default_model_path()
    raw = torch.load(path, weights_only=True)   # plain tensors and dicts: no pickled code
    assert raw["meta"]["task"] == "conformers"
    return load_checkpoint_model(path, device="cpu")


def test_shipped_weights_load_and_are_finite(shipped):
    model, meta = shipped
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert meta["sde"]["name"] in ("ve", "vp", "subvp")


@pytest.mark.parametrize("init", ["prior", "etkdg"])
def test_shipped_model_makes_sound_alanine(init):
    mol = generate_conformers(ALANINE, n=4, init=init, seed=7, device="cpu")
    assert mol.GetNumConformers() == 4
    assert mol.GetNumAtoms() == Chem.AddHs(Chem.MolFromSmiles(ALANINE)).GetNumAtoms()
    for conf in mol.GetConformers():
        assert check_stereo(mol, conf.GetId()).ok
    ok = [not check_geometry(mol, conf.GetId()) for conf in mol.GetConformers()]
    assert sum(ok) >= 3, [check_geometry(mol, c.GetId()) for c in mol.GetConformers()]


def test_shipped_model_denoises_toward_real_geometry(shipped):
    """At a small noise level the learned score points back to the clean conformer:
    one Tweedie step removes most of the added noise (an untrained net removes none)."""
    from torch_geometric.data import Batch

    from molscore.chem.featurize import meta_featurisation, mol_to_graph, prepare_mol
    from molscore.spaces import PointSetSpace

    model, meta = shipped
    mol = prepare_mol("CC(=O)Nc1ccc(O)cc1")
    AllChem.EmbedMolecule(mol, randomSeed=11)
    AllChem.MMFFOptimizeMolecule(mol)
    graph = mol_to_graph(mol, featurisation=meta_featurisation(meta))
    batch = Batch.from_data_list([graph] * 16)
    space = PointSetSpace(batch.batch, batch.num_graphs)
    x0 = space.project(batch.pos.float()) / meta["coord_scale"]
    t = torch.full((16,), 0.25)
    m, s = model.sde.marginal(t)
    torch.manual_seed(0)
    xt = space.expand(m) * x0 + space.expand(s) * space.noise_like(x0)
    with torch.no_grad():
        score = model(xt, t, space, batch)
    x0_hat = (xt + space.expand(s) ** 2 * score) / space.expand(m)
    before = space.norm_sq(xt - x0).mean()
    after = space.norm_sq(x0_hat - x0).mean()
    assert after < 0.5 * before, (float(before), float(after))
    assert np.isfinite(float(after))


def test_shipped_model_reads_version_2_features(shipped):
    """The shipped weights (retrained 2026-12-07) read version 2 features (molscore.chem.featurize),
    which their meta names, and generation builds version 2 graphs for them."""
    from molscore.chem.featurize import meta_featurisation
    from molscore.generate import ConformerGenerator

    model, meta = shipped
    assert meta["featurisation"] == 2 and meta_featurisation(meta) == 2
    assert ConformerGenerator(device="cpu").featurisation == 2


def test_shipped_model_symmetries_in_float64(shipped):
    """The shipped weights in float64 on a batch of three molecules of different sizes: each
    molecule rotated and translated on its own gives its score rotated; renumbering a
    molecule's atoms (RDKit, features rebuilt) permutes its score; reordering the molecules
    or scoring one alone changes nothing."""
    import copy

    from torch_geometric.data import Batch

    from molscore.chem.featurize import meta_featurisation, mol_to_graph, prepare_mol
    from molscore.spaces import PointSetSpace

    model, meta = shipped
    model = copy.deepcopy(model).double()
    version = meta_featurisation(meta)

    def graph(mol):
        g = mol_to_graph(mol, featurisation=version)
        g.atom_feat, g.edge_attr, g.pos = g.atom_feat.double(), g.edge_attr.double(), g.pos.double()
        return g

    def score(gs, xs, t):
        b = Batch.from_data_list(gs)
        with torch.no_grad():
            return model(torch.cat(xs), t, PointSetSpace(b.batch, len(gs)), b).split([g.num_nodes for g in gs])

    mols = []
    for smiles in (ALANINE, "CC(C)Cc1ccc(cc1)[C@H](C)C(=O)O", "CCO"):
        mol = prepare_mol(smiles)
        assert AllChem.EmbedMolecule(mol, randomSeed=5) == 0
        mols.append(mol)
    gs = [graph(m) for m in mols]
    gen = torch.Generator().manual_seed(0)
    xs = [g.pos + 0.3 * torch.randn(g.pos.shape, generator=gen, dtype=torch.float64) for g in gs]
    t = torch.tensor([0.2, 0.5, 0.35], dtype=torch.float64)
    out = score(gs, xs, t)
    assert min(float(o.norm()) for o in out) > 1.0
    rots = []
    for i in range(3):
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
        rots.append(q * torch.sign(torch.det(q)))
    moved = score(gs, [x @ R.T + 25.0 * torch.randn(3, generator=gen, dtype=torch.float64)
                       for x, R in zip(xs, rots)], t)
    order = [2, 0, 1]
    reordered = score([gs[i] for i in order], [xs[i] for i in order], t[order])
    for i in range(3):
        torch.testing.assert_close(moved[i], out[i] @ rots[i].T, atol=1e-9, rtol=0)
        torch.testing.assert_close(reordered[order.index(i)], out[i], atol=1e-9, rtol=0)
        torch.testing.assert_close(score([gs[i]], [xs[i]], t[i:i + 1])[0], out[i], atol=1e-9, rtol=0)
    perm = torch.randperm(gs[1].num_nodes, generator=gen).tolist()
    renumbered = graph(Chem.RenumberAtoms(mols[1], perm))
    got = score([gs[0], renumbered, gs[2]], [xs[0], xs[1][perm], xs[2]], t)[1]
    torch.testing.assert_close(got, out[1][perm], atol=1e-9, rtol=0)
