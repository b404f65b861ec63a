"""The same behaviour on an accelerator: CUDA parity of the engine, the shipped model,
``generate`` and the trainer.

The device is ``$MOLSCORE_TEST_DEVICE`` (default ``cuda``); without it the tests are skipped.
``MOLSCORE_TEST_DEVICE=cpu`` runs them on the CPU, which checks the tests themselves.
"""
from __future__ import annotations

import os

import pytest
import torch
from rdkit import Chem
from torch_geometric.data import Batch

from _train_tasks import base_config
from molscore.chem.checks import check_geometry
from molscore.chem.featurize import meta_featurisation, mol_to_graph, prepare_mol
from molscore.chem.stereo import check_stereo
from molscore.checkpoint import load_checkpoint_model
from molscore.data.image_metrics import image_bits_per_dim
from molscore.data.toy import exact_score_fn, get_density
from molscore.generate import ConformerGenerator, default_model_path
from molscore.likelihood import log_likelihood
from molscore.samplers import sample
from molscore.sde import make_sde
from molscore.spaces import DenseSpace, PointSetSpace
from molscore.train import train
from test_samplers import CONFIGS, _gmm8_checks
from test_train import _interrupted_run

DEVICE = os.environ.get("MOLSCORE_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                                reason="no CUDA device (set MOLSCORE_TEST_DEVICE=cpu to run these here)")


@pytest.mark.parametrize("name, sde_name", [("pc", "ve"), ("ode", "vp"), ("reverse", "subvp")])
def test_exact_score_samplers_recover_gmm8_on_the_device(name, sde_name):
    sde = make_sde(sde_name)
    space = DenseSpace((2000, 2))
    g = torch.Generator(device=DEVICE).manual_seed(0)
    x = sde.prior_sample(space, device=DEVICE, dtype=torch.float64, generator=g)
    steps, opts = CONFIGS[name]
    res = sample(name, exact_score_fn(get_density("gmm8"), sde), sde, space, x, steps,
                 generator=g, **opts)
    assert res.x.device.type == DEVICE
    _gmm8_checks(res.x.cpu())


def test_image_bits_per_dim_takes_a_generator_of_either_device():
    """The dequantisation draw came from torch's CPU default whatever the generator: a CUDA
    generator for CUDA images raised. Now drawn where the generator is: a CPU generator gives
    the CPU's bits/dim on the device too."""
    sde = make_sde("vp")
    images = torch.randint(0, 4, (3, 1, 4, 4), generator=torch.Generator().manual_seed(1))

    def score_fn(x, t):        # N(0, I) is the VP SDE's stationary law: its score is -x
        return -x

    def bpd(device, generator):
        out, _ = image_bits_per_dim(score_fn, sde, images.to(device, torch.float64), 4,
                                    generator=generator)
        return out

    on_cpu = bpd("cpu", torch.Generator().manual_seed(2))
    torch.testing.assert_close(bpd(DEVICE, torch.Generator().manual_seed(2)).cpu(), on_cpu)
    own = bpd(DEVICE, torch.Generator(device=DEVICE).manual_seed(2))
    assert own.device.type == DEVICE and torch.isfinite(own).all()


def test_a_cpu_generator_draws_the_same_noise_for_the_device():
    """One seeded CPU generator for a batch on the device (as one per sample already did):
    the CPU's noise and Hutchinson signs, moved there, not torch's refusal of a CPU
    generator for a CUDA draw."""
    space = PointSetSpace(torch.tensor([0, 0, 0, 1, 1]), 2)
    x = torch.zeros(5, 3, dtype=torch.float64)
    for draw in (space.noise_like, space.rademacher_like):
        on_cpu = draw(x, torch.Generator().manual_seed(4))
        on_device = draw(x.to(DEVICE), torch.Generator().manual_seed(4))
        assert on_device.device.type == DEVICE
        torch.testing.assert_close(on_device.cpu(), on_cpu, rtol=0, atol=0)


def test_likelihood_on_the_device_equals_the_cpu_one():
    d, sde = get_density("gmm8"), make_sde("vp")
    x = d.sample(30, torch.Generator().manual_seed(3), dtype=torch.float64)
    space, score = DenseSpace(x.shape), exact_score_fn(d, sde)
    cpu = log_likelihood(score, sde, space, x, divergence="exact", method="rk4", steps=50)
    dev = log_likelihood(score, sde, space, x.to(DEVICE), divergence="exact", method="rk4", steps=50)
    assert dev.logp.device.type == DEVICE
    torch.testing.assert_close(dev.logp.cpu(), cpu.logp, rtol=0, atol=1e-8)


def test_shipped_network_gives_the_cpu_score_on_the_device():
    """Same input, same weights: the float32 scores agree to rounding (well under 0.1 % of
    their scale) on a noised batch of two molecules."""
    model, meta = load_checkpoint_model(default_model_path(), device="cpu")
    graphs = []
    for smi in ("CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O"):
        mol = prepare_mol(smi)
        Chem.rdDistGeom.EmbedMolecule(mol, randomSeed=5)
        graphs.append(mol_to_graph(mol, featurisation=meta_featurisation(meta)))
    batch = Batch.from_data_list(graphs)
    space = PointSetSpace(batch.batch, batch.num_graphs)
    g = torch.Generator().manual_seed(1)
    t = torch.tensor([0.3, 0.6])
    _, s = model.sde.marginal(t)
    x = space.project(batch.pos.float()) / meta["coord_scale"]
    x = x + space.expand(s) * space.noise_like(x, generator=g)
    with torch.no_grad():
        ref = model(x, t, space, batch)
        model_dev = load_checkpoint_model(default_model_path(), device=DEVICE)[0]
        out = model_dev(x.to(DEVICE), t.to(DEVICE), space.to(DEVICE), batch.to(DEVICE))
    assert out.device.type == DEVICE
    torch.testing.assert_close(out.cpu(), ref, rtol=0, atol=1e-3 * float(ref.abs().max()))


def test_generate_on_the_device_keeps_stereo_and_geometry():
    smiles = "C/C=C/C(=O)N[C@@H](Cc1ccccc1)C(=O)O[C@H](C)CC"
    gen = ConformerGenerator(device=DEVICE, n=8, seed=4)
    assert gen.device.type == DEVICE
    result = gen.generate(smiles, name="probe")
    assert result.error is None and result.mol.GetNumConformers() == 8
    mol = result.mol
    assert all(check_stereo(mol, conf.GetId()).ok for conf in mol.GetConformers())
    problems = [check_geometry(mol, conf.GetId()) for conf in mol.GetConformers()]
    assert sum(not p for p in problems) >= 7, problems


def test_training_on_the_device_resumes_exactly(tmp_path):
    """An interrupted run on the device resumes to the uninterrupted run's weights (an
    interruption raised by code resumes from the last periodic checkpoint, ckpt_every=4, as
    test_train's test_resume_reproduces_uninterrupted_loss_curve)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    summary = train(base_config(), straight, device=DEVICE, progress=False)
    assert summary["device"].startswith(DEVICE)

    _interrupted_run(split, KeyboardInterrupt, at_step=7, device=DEVICE)
    assert train(base_config(), split, device=DEVICE, progress=False)["resumed_from"] == 4
    ca = torch.load(straight / "checkpoint.pt", weights_only=True)
    cb = torch.load(split / "checkpoint.pt", weights_only=True)
    for k, v in ca["model"].items():
        torch.testing.assert_close(v, cb["model"][k], rtol=0, atol=1e-6)
