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
