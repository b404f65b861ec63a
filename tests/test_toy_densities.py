"""Toy densities: exact noised log-densities and scores, samplers, the name registry."""
from __future__ import annotations

import math

import pytest
import torch

from molscore.data.toy import DENSITIES, GaussianMixture, exact_score_fn, get_density
from molscore.sde import make_sde


def test_registry_and_errors():
    assert set(DENSITIES) == {"gmm8", "gmm2", "gmmnd", "checkerboard", "swissroll", "moons",
                              "rings", "spirals"}
    with pytest.raises(ValueError, match="gmm8.*spirals"):
        get_density("nope")
    with pytest.raises(ValueError):
        get_density("moons", dim=3)
    with pytest.raises(ValueError):
        GaussianMixture(torch.zeros(2, 2), torch.ones(3), torch.ones(2))


@pytest.mark.parametrize("name", DENSITIES)
def test_samples_shape_and_scale(name):
    d = get_density(name)
    x = d.sample(3000, torch.Generator().manual_seed(0))
    assert x.shape == (3000, d.dim) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert 0.8 < x.std(0).mean().item() < 4.5
    again = d.sample(3000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, again)


def test_named_mixture_parameters():
    g8 = get_density("gmm8")
    assert g8.means.norm(dim=1).allclose(torch.full((8,), 4.0, dtype=torch.float64))
    angles = torch.atan2(g8.means[:, 1], g8.means[:, 0]) % (2 * math.pi)
    assert angles.allclose(2 * math.pi * torch.arange(8, dtype=torch.float64) / 8, atol=1e-12)
    assert g8.stds.eq(0.5).all()
    assert g8.weights.allclose(torch.full((8,), 1 / 8, dtype=torch.float64))
    g2 = get_density("gmm2")
    assert g2.weights.tolist() == pytest.approx([0.2, 0.8])
    gnd = get_density("gmmnd", dim=16)
    assert gnd.dim == 16
    torch.testing.assert_close(gnd.means, get_density("gmmnd", dim=16).means)
    x = gnd.sample(20000, torch.Generator().manual_seed(1), dtype=torch.float64)
    mean = (gnd.weights[:, None] * gnd.means).sum(0)
    assert (x.mean(0) - mean).abs().max() < 4 * x.std(0).max() / math.sqrt(20000)


def test_component_frequencies_match_weights():
    g2 = get_density("gmm2")
    x = g2.sample(20000, torch.Generator().manual_seed(3))
    frac = (x[:, 0] > 0).double().mean().item()
    assert abs(frac - 0.8) < 4 * math.sqrt(0.16 / 20000)


@pytest.mark.parametrize("name", ["gmm8", "gmm2", "gmmnd"])
def test_score_is_gradient_of_noised_log_prob(name):
    d = get_density(name, **({"dim": 5} if name == "gmmnd" else {}))
    g = torch.Generator().manual_seed(4)
    x = 3 * torch.randn(64, d.dim, generator=g, dtype=torch.float64)
    m, s = torch.rand(64, generator=g, dtype=torch.float64), torch.rand(64, generator=g,
                                                                         dtype=torch.float64)
    for mc, sd in ((m, s), (None, None)):
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(d.log_prob(xg, mc, sd).sum(), xg)
        torch.testing.assert_close(d.score(x, mc, sd), grad, rtol=1e-10, atol=1e-10)


def test_noised_log_prob_is_normalised_and_matches_convolution():
    """gmm2 noised with m = 0.7, s = 0.9: integrates to 1 on a grid, and equals a mixture
    with the analytic means m mu_k and variances m^2 sigma_k^2 + s^2."""
    d = get_density("gmm2")
    grid = torch.linspace(-14, 14, 561, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    lp = d.log_prob(pts, torch.tensor(0.7), torch.tensor(0.9))
    h = (grid[1] - grid[0]).item()
    assert lp.exp().sum().item() * h * h == pytest.approx(1.0, abs=1e-8)
    v = 0.49 + 0.81
    ref = torch.logsumexp(torch.stack([
        math.log(w) - ((pts - 0.7 * torch.tensor(mu, dtype=torch.float64)) ** 2).sum(1) / (2 * v)
        - math.log(2 * math.pi * v) for w, mu in ((0.2, (-5.0, 0.0)), (0.8, (5.0, 0.0)))]), 0)
    torch.testing.assert_close(lp, ref)


def test_log_prob_far_from_modes_is_finite():
    d = get_density("gmm8")
    x = torch.tensor([[300.0, -200.0]], dtype=torch.float64)
    assert torch.isfinite(d.log_prob(x)).all() and torch.isfinite(d.score(x)).all()


@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
def test_exact_score_fn_uses_sde_marginal(sde_name):
    sde = make_sde(sde_name)
    d = get_density("gmm8")
    t = torch.tensor([0.01, 0.5, 1.0], dtype=torch.float64)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    m, s = sde.marginal(t)
    torch.testing.assert_close(exact_score_fn(d, sde)(x, t), d.score(x, m, s))
