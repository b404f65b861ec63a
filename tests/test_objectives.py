"""Objectives: unbiasedness of sliced SM, analytic values on Gaussians, DSM training."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from molscore.data.toy import GaussianMixture, exact_score_fn
from molscore.models.mlp import MLPScoreNet
from molscore.models.param import ScoreModel
from molscore.objectives import (MAX_EXACT_DIM, OBJECTIVES, dsm_loss, exact_sm_loss,
                                 get_objective, ssm_loss)
from molscore.sde import make_sde
from molscore.spaces import DenseSpace, PointSetSpace


class GaussianScore(nn.Module):
    """Exact score of ``x0 ~ N(mu, sigma0^2 I)`` noised by the SDE, with an optional scale."""

    def __init__(self, sde, mu: torch.Tensor, sigma0: float, scale: float = 1.0):
        super().__init__()
        self.sde, self.mu, self.sigma0, self.scale = sde, mu, sigma0, scale

    def forward(self, x, t, space, cond=None):
        m, s = self.sde.marginal(t)
        var = space.expand(m ** 2 * self.sigma0 ** 2 + s ** 2)
        return -self.scale * (x - space.expand(m) * self.mu) / var


def _fixed_net(dim: int, sde) -> ScoreModel:
    torch.manual_seed(3)
    return ScoreModel(MLPScoreNet(dim, hidden=32, depth=2), sde, "eps").double()


@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
def test_dsm_floor_is_analytic_for_exact_gaussian_score(sde_name):
    """With the exact score, E||s score + z||^2 = D m^2 sigma0^2 / (m^2 sigma0^2 + s^2)."""
    torch.manual_seed(0)
    sde, dim, n, sigma0 = make_sde(sde_name), 2, 20000, 0.7
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64)
    x0 = mu + sigma0 * torch.randn(n, dim, dtype=torch.float64)
    space = DenseSpace(x0.shape)
    t = torch.full((n,), 0.3, dtype=torch.float64)
    loss = dsm_loss(GaussianScore(sde, mu, sigma0), sde, x0, space, t=t)
    m, s = sde.marginal(t[:1])
    floor = float(dim * m ** 2 * sigma0 ** 2 / (m ** 2 * sigma0 ** 2 + s ** 2))
    se = float(loss.std()) / math.sqrt(n)
    assert abs(float(loss.mean()) - floor) < 4 * se
    # the exact score is the minimiser: scaling it by c costs (c - 1)^2 s^2 D / v on average
    z = torch.randn_like(x0)
    base = dsm_loss(GaussianScore(sde, mu, sigma0), sde, x0, space, t=t, noise=z)
    v = float(m ** 2 * sigma0 ** 2 + s ** 2)
    for scale in (0.8, 1.25):
        worse = dsm_loss(GaussianScore(sde, mu, sigma0, scale), sde, x0, space, t=t, noise=z)
        gap = worse - base
        expected = (scale - 1) ** 2 * float(s ** 2) * dim / v
        gap_se = float(gap.std()) / math.sqrt(n)
        assert float(gap.mean()) > 0
        assert abs(float(gap.mean()) - expected) < 4 * gap_se


def test_dsm_likelihood_weighting_is_g2_times_sigma2_loss_over_s2():
    sde = make_sde("vp")
    x0 = torch.randn(16, 3, dtype=torch.float64)
    space, t, z = DenseSpace(x0.shape), torch.rand(16, dtype=torch.float64) * 0.9 + 0.05, None
    z = torch.randn_like(x0)
    model = _fixed_net(3, sde)
    a = dsm_loss(model, sde, x0, space, t=t, noise=z)
    b = dsm_loss(model, sde, x0, space, t=t, noise=z, weighting="likelihood")
    _, s = sde.marginal(t)
    torch.testing.assert_close(b, a * sde.diffusion(t) ** 2 / s ** 2)


@pytest.mark.parametrize("sde_name", ["ve", "vp"])
def test_hyvarinen_objective_on_exact_gaussian_score(sde_name):
    """tr J + ||s||^2/2 = -D/v + ||x - m mu||^2/(2 v^2) pointwise; mean -> -E||s||^2/2 = -D/(2v)."""
    torch.manual_seed(1)
    sde, dim, n, sigma0 = make_sde(sde_name), 3, 4000, 0.5
    mu = torch.tensor([0.5, 0.0, -1.0], dtype=torch.float64)
    x0 = mu + sigma0 * torch.randn(n, dim, dtype=torch.float64)
    space = DenseSpace(x0.shape)
    t = torch.full((n,), 0.2, dtype=torch.float64)
    z = torch.randn_like(x0)
    m, s = sde.marginal(t)
    v = m ** 2 * sigma0 ** 2 + s ** 2
    x_t = m[:, None] * x0 + s[:, None] * z
    pointwise = -dim / v + 0.5 * ((x_t - m[:, None] * mu) ** 2).sum(1) / v ** 2
    loss = exact_sm_loss(GaussianScore(sde, mu, sigma0), sde, x0, space, t=t, noise=z)
    torch.testing.assert_close(loss, s ** 2 * pointwise)
    raw = (loss / s ** 2).detach()
    analytic = -dim / (2 * float(v[0]))
    assert abs(float(raw.mean()) - analytic) < 4 * float(raw.std()) / math.sqrt(n)


@pytest.mark.parametrize("projection", ["rademacher", "gaussian"])
@pytest.mark.parametrize("variance_reduced", [False, True])
def test_sliced_sm_is_unbiased_for_exact_sm_on_fixed_network(projection, variance_reduced):
    torch.manual_seed(2)
    sde, dim, batch, reps = make_sde("ve"), 4, 32, 150
    model = _fixed_net(dim, sde)
    x0 = torch.randn(batch, dim, dtype=torch.float64)
    space = DenseSpace(x0.shape)
    t = torch.rand(batch, dtype=torch.float64) * 0.5 + 0.05
    z = torch.randn_like(x0)
    exact = exact_sm_loss(model, sde, x0, space, t=t, noise=z).detach()
    est = torch.stack([ssm_loss(model, sde, x0, space, t=t, noise=z, projection=projection,
                                variance_reduced=variance_reduced).detach()
                       for _ in range(reps)])
    diff = est - exact
    se = float(diff.std()) / math.sqrt(diff.numel())
    assert se > 0
    assert abs(float(diff.mean())) < 4 * se
    # per sample the average of many projections also matches (n_proj averages them)
    avg = ssm_loss(model, sde, x0, space, t=t, noise=z, projection=projection,
                   variance_reduced=variance_reduced, n_proj=reps).detach()
    per_sample_se = diff.std(0) / math.sqrt(reps)
    assert bool(((avg - exact).abs() <= 5 * per_sample_se + 1e-12).all())


def test_sliced_and_exact_sm_on_point_sets_use_the_com_free_trace():
    """On a CoM-free point set, SSM averages to tr(P J P) + ||s||^2/2 = exact_sm_loss."""
    torch.manual_seed(4)
    sde = make_sde("vp")
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    space = PointSetSpace(batch)
    x0 = space.project(torch.randn(7, 3, dtype=torch.float64))
    lin = nn.Linear(3, 3).double()

    class Net(nn.Module):
        def forward(self, x, t, cond=None):
            return lin(x)

    model = ScoreModel(Net(), sde, "score")
    t = torch.tensor([0.3, 0.6], dtype=torch.float64)
    z = space.noise_like(x0)
    exact = exact_sm_loss(model, sde, x0, space, t=t, noise=z).detach()
    # linear field: score = P W x / s -> J = P (I_n (x) W) P / s, tr = (n - 1) tr(W) / s
    _, s = sde.marginal(t)
    n = torch.tensor([3.0, 4.0], dtype=torch.float64)
    x_t = sde.marginal_sample(x0, t, space, noise=z)[0]
    score = model(x_t, t, space).detach()
    expected = s ** 2 * ((n - 1) * torch.trace(lin.weight.detach()) / s
                         + 0.5 * space.norm_sq(score))
    torch.testing.assert_close(exact, expected)
    est = torch.stack([ssm_loss(model, sde, x0, space, t=t, noise=z).detach() for _ in range(400)])
    se = est.std(0) / math.sqrt(400)
    assert bool(((est.mean(0) - exact).abs() < 4 * se + 1e-12).all())


def test_dsm_training_on_mixture_approaches_exact_score():
    """A short DSM run on a 2-component mixture cuts the Fisher divergence to the exact score."""
    torch.manual_seed(5)
    sde = make_sde("vp")
    mix = GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), torch.full((2,), 0.5),
                          torch.tensor([0.3, 0.7]))
    exact = exact_score_fn(mix, sde)
    model = ScoreModel(MLPScoreNet(2, hidden=64, depth=2), sde, "eps")
    xe = mix.sample(2000)
    te = torch.rand(2000) * 0.9 + 0.05
    xt = sde.marginal_sample(xe, te, DenseSpace(xe.shape))[0]
    _, se = sde.marginal(te)

    def fisher() -> float:
        with torch.no_grad():
            d = model(xt, te, DenseSpace(xt.shape)) - exact(xt, te)
            return float((se ** 2 * (d ** 2).sum(1)).mean())

    before = fisher()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        x0 = mix.sample(128)
        loss = dsm_loss(model, sde, x0, DenseSpace(x0.shape)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fisher()
    assert after < 0.2 * before
    assert after < 0.15  # sigma^2-weighted Fisher divergence in noise units (D = 2)


def test_exact_sm_refuses_high_dimension_and_registry_names():
    sde = make_sde("ve")
    x0 = torch.zeros(2, MAX_EXACT_DIM + 1)
    model = GaussianScore(sde, torch.zeros(MAX_EXACT_DIM + 1), 1.0)
    with pytest.raises(ValueError, match="MAX_EXACT_DIM"):
        exact_sm_loss(model, sde, x0, DenseSpace(x0.shape))
    assert set(OBJECTIVES) == {"dsm", "ssm", "ssm-vr", "exact"}
    assert get_objective("ssm-vr") is OBJECTIVES["ssm-vr"]
    with pytest.raises(ValueError, match="dsm, ssm, ssm-vr, exact"):
        get_objective("nce")
    with pytest.raises(ValueError, match="sigma2, likelihood"):
        dsm_loss(model, sde, x0[:, :3], DenseSpace((2, 3)), weighting="uniform")


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objectives_refuse_data_of_another_shape_than_the_space(name):
    """A one-sample space with four rows of data broadcast its one time over all four and
    returned a loss; every objective now refuses it, as the samplers and the likelihood do."""
    sde = make_sde("ve", sigma_min=0.01, sigma_max=5.0)
    model = ScoreModel(MLPScoreNet(2, hidden=16, depth=1), sde, "eps")
    with pytest.raises(ValueError, match=r"x has shape \(4, 2\), the space \(1, 2\)"):
        OBJECTIVES[name](model, sde, torch.randn(4, 2), DenseSpace((1, 2)))
