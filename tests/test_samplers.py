"""Samplers with exact scores: recover known densities, conditionals, NFE bookkeeping."""
from __future__ import annotations

import math

import pytest
import torch

from molscore.data.toy import exact_score_fn, get_density
from molscore.samplers import SAMPLERS, SampleResult, sample
from molscore.sde import make_sde
from molscore.spaces import DenseSpace, PointSetSpace

SDES = ("ve", "vp", "subvp")
# (steps, options) per sampler: modest sizes that still resolve gmm8.
CONFIGS = {
    "em": (500, {}),
    "reverse": (500, {}),
    "ancestral": (500, {}),
    "pc": (200, {"predictor": "reverse", "n_corrector": 1}),
    "ald": (100, {"n_corrector": 10}),
    "ode": (100, {"method": "rk4"}),
}


def _gmm8_checks(x: torch.Tensor) -> None:
    """Mode weights ~1/8, per-mode means at the centres and stds ~0.5, within 4 standard
    errors of the sample size (plus 0.02 for discretisation bias in the std)."""
    d = get_density("gmm8")
    n = x.shape[0]
    assert torch.isfinite(x).all()
    k = d.responsibilities(x).argmax(1)
    counts = torch.bincount(k, minlength=8)
    w = counts.double() / n
    assert (w - 1 / 8).abs().max() < 4 * math.sqrt(1 / 8 * 7 / 8 / n)
    dev = x - d.means[k]
    assert (dev.norm(dim=1) > 2.5).double().mean() < 2e-3        # nothing between modes
    for j in range(8):
        dj = dev[k == j]
        nj = dj.shape[0]
        assert dj.mean(0).abs().max() < 4 * 0.5 / math.sqrt(nj)
        assert abs(dj.std().item() - 0.5) < 4 * 0.5 / math.sqrt(2 * dj.numel()) + 0.02


@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_exact_score_recovers_gmm8(name, sde_name):
    sde = make_sde(sde_name)
    space = DenseSpace((2000, 2))
    g = torch.Generator().manual_seed(0)
    x = sde.prior_sample(space, dtype=torch.float64, generator=g)
    steps, opts = CONFIGS[name]
    res = sample(name, exact_score_fn(get_density("gmm8"), sde), sde, space, x, steps,
                 generator=g, **opts)
    assert isinstance(res, SampleResult) and res.x.shape == (2000, 2)
    _gmm8_checks(res.x)


def test_adaptive_ode_recovers_gmm8_with_few_evaluations():
    sde = make_sde("vp")
    space = DenseSpace((2000, 2))
    x = sde.prior_sample(space, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    res = sample("ode", exact_score_fn(get_density("gmm8"), sde), sde, space, x, 20,
                 method="dopri5")
    _gmm8_checks(res.x)
    assert 20 < res.nfe < 400
    fixed = sample("ode", exact_score_fn(get_density("gmm8"), sde), sde, space, x, 200,
                   method="rk4")
    assert (res.x - fixed.x).abs().max() < 1e-2                 # same deterministic map


def test_annealed_langevin_recovers_gmm2_weights_plain_langevin_does_not():
    """NCSN's motivating failure: Langevin at one small noise level keeps the 0.5/0.5 split of
    a uniform start; annealing from the prior finds the 0.2/0.8 weights."""
    d = get_density("gmm2")
    sde = make_sde("vp")
    n = 2000
    space = DenseSpace((n, 2))
    score = exact_score_fn(d, sde)
    se = math.sqrt(0.16 / n)
    g = torch.Generator().manual_seed(0)
    x = sde.prior_sample(space, dtype=torch.float64, generator=g)
    annealed = sample("ald", score, sde, space, x, 100, n_corrector=10, generator=g).x
    assert abs((annealed[:, 0] > 0).double().mean().item() - 0.8) < 4 * se
    uniform = torch.rand(n, 2, generator=g, dtype=torch.float64) * 16 - 8
    plain = sample("ald", score, sde, space, uniform, 1, n_corrector=300, generator=g).x
    right = plain[:, 0] > 0
    assert abs(right.double().mean().item() - 0.5) < 4 * math.sqrt(0.25 / n)
    # ... although within each mode the chain has equilibrated (std ~1 around +-5).
    assert abs(plain[right, 0].mean().item() - 5) < 0.2
    assert abs((plain[right] - plain[right].mean(0)).std().item() - 1) < 0.1


def _correlated_gaussian_score(sde, rho: float):
    """Exact score of N(0, [[1, rho], [rho, 1]]) noised by ``sde``."""
    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m, s = sde.marginal(t)
        a, c = (m ** 2 + s ** 2)[:, None], (m ** 2 * rho)[:, None]
        return -(a * x - c * x.flip(1)) / (a ** 2 - c ** 2)
    return score


@pytest.mark.parametrize("name", list(CONFIGS))
def test_inpainting_keeps_known_entries(name):
    sde = make_sde("vp")
    space = DenseSpace((50, 2))
    x_known = torch.tensor([[1.5, -7.0]], dtype=torch.float64).expand(50, 2)
    mask = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = sde.prior_sample(space, dtype=torch.float64, generator=g)
    res = sample(name, _correlated_gaussian_score(sde, 0.8), sde, space, x, 20, mask=mask,
                 x_known=x_known, generator=g)
    assert (res.x[:, 0] == 1.5).all()
    assert (res.x[:, 1] != -7.0).all() and torch.isfinite(res.x).all()


@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("sampler, kw", [("ald", {}), ("pc", {"n_corrector": 20})])
def test_inpainting_samples_gaussian_conditional(sde_name, sampler, kw):
    """x ~ N(0, [[1, .8], [.8, 1]]) with x_1 = 1.5 known: x_2 | x_1 ~ N(1.2, 0.36). PC with
    many corrector steps too: its corrector scored states whose known entries its own steps
    had moved off the observation, so more steps forgot the conditioning (20 per level: a
    mean of about 1.03); it now sees the known entries replaced, as ALD's does."""
    rho, a, n = 0.8, 1.5, 2000
    sde = make_sde(sde_name)
    space = DenseSpace((n, 2))
    g = torch.Generator().manual_seed(0)
    x = sde.prior_sample(space, dtype=torch.float64, generator=g)
    res = sample(sampler, _correlated_gaussian_score(sde, rho), sde, space, x, 100, **kw,
                 mask=torch.tensor([[1.0, 0.0]], dtype=torch.float64),
                 x_known=torch.tensor([[a, 0.0]], dtype=torch.float64), generator=g)
    var = 1 - rho ** 2
    assert (res.x[:, 0] == a).all()
    assert abs(res.x[:, 1].mean().item() - rho * a) < 4 * math.sqrt(var / n)
    assert abs(res.x[:, 1].var().item() - var) < 4 * var * math.sqrt(2 / n) + 0.02


@pytest.mark.parametrize("sde_name", SDES)
def test_inpainting_a_pinned_point_far_from_the_origin_with_a_translation_invariant_score(sde_name):
    """Two 1-D points whose offset ``x_1 - x_0 ~ N(d, v)``, scored as a CoM-free model does
    (zero along the CoM), ``x_0`` pinned at 30 as a core in its crystal frame is: ALD gives
    ``x_1 - 30 ~ N(d, v)``. Its chain was not rescaled between levels, so under VP and sub-VP
    the free point lagged behind the known one's level ``m(t) 30`` (offset mean -15.4 for the
    true -3 with three points)."""
    d, v, a, n = -3.0, 0.5, 30.0, 500
    sde = make_sde(sde_name)
    space = PointSetSpace(torch.arange(n).repeat_interleave(2), n, point_dim=1, com_free=False)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m, s = sde.marginal(t)
        pair = x.reshape(n, 2)
        u = (pair[:, 1] - pair[:, 0] - m * d) / (m ** 2 * v + 2 * s ** 2)
        return torch.stack([u, -u], 1).reshape(-1, 1)

    g = torch.Generator().manual_seed(0)
    x = sde.prior_sample(space, dtype=torch.float64, generator=g)
    mask = torch.tensor([[1.0], [0.0]], dtype=torch.float64).repeat(n, 1)
    res = sample("ald", score, sde, space, x, 100, mask=mask, x_known=mask * a, generator=g)
    pair = res.x.reshape(n, 2)
    assert (pair[:, 0] == a).all()
    offset = pair[:, 1] - a
    assert abs(offset.mean().item() - d) < 4 * math.sqrt(v / n)
    assert abs(offset.var().item() - v) < 4 * v * math.sqrt(2 / n) + 0.02


def test_nfe_counts_callback_and_denoise():
    sde = make_sde("vp")
    space = DenseSpace((8, 2))
    score = exact_score_fn(get_density("gmm8"), sde)
    x = sde.prior_sample(space, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    steps = 7
    assert sample("em", score, sde, space, x, steps).nfe == steps
    assert sample("reverse", score, sde, space, x, steps).nfe == steps
    assert sample("ancestral", score, sde, space, x, steps).nfe == steps
    assert sample("pc", score, sde, space, x, steps, n_corrector=2).nfe == 3 * steps
    assert sample("pc", score, sde, space, x, steps, corrector="none").nfe == steps
    assert sample("ald", score, sde, space, x, steps, n_corrector=3).nfe == 3 * steps
    for method, per_step in (("euler", 1), ("heun", 2), ("rk4", 4)):
        assert sample("ode", score, sde, space, x, steps, method=method).nfe == per_step * steps
    seen = []
    res = sample("ode", score, sde, space, x, steps, method="euler", disable=False,
                 callback=lambda info: seen.append(float(info["t"][0])))
    assert len(seen) == steps and seen[-1] == pytest.approx(sde.eps)
    den = sample("ode", score, sde, space, x, steps, method="euler", denoise=True)
    assert den.nfe == steps + 1
    t = torch.full((8,), sde.eps, dtype=torch.float64)
    m, s = sde.marginal(t)
    torch.testing.assert_close(den.x, (res.x + s[:, None] ** 2 * score(res.x, t)) / m[:, None])


def test_generator_makes_sampling_reproducible():
    sde = make_sde("ve")
    space = DenseSpace((16, 2))
    score = exact_score_fn(get_density("gmm8"), sde)
    x = sde.prior_sample(space, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = sample("pc", score, sde, space, x, 10, generator=torch.Generator().manual_seed(1)).x
    b = sample("pc", score, sde, space, x, 10, generator=torch.Generator().manual_seed(1)).x
    c = sample("pc", score, sde, space, x, 10, generator=torch.Generator().manual_seed(2)).x
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_bad_input():
    sde = make_sde("vp")
    space = DenseSpace((4, 2))
    x = torch.zeros(4, 2)
    score = exact_score_fn(get_density("gmm8"), sde)
    with pytest.raises(ValueError, match="em, reverse, ancestral, pc, ald, ode"):
        sample("ddim", score, sde, space, x, 10)
    for steps in (0, -3):
        with pytest.raises(ValueError, match="steps"):
            sample("em", score, sde, space, x, steps)
    with pytest.raises(ValueError, match="euler, heun, rk4, dopri5"):
        sample("ode", score, sde, space, x, 10, method="rk45")
    with pytest.raises(ValueError, match="em, reverse, ancestral"):
        sample("pc", score, sde, space, x, 10, predictor="ddim")
    with pytest.raises(ValueError, match="langevin, none"):
        sample("pc", score, sde, space, x, 10, corrector="hmc")
    with pytest.raises(ValueError, match="together"):
        sample("em", score, sde, space, x, 10, mask=torch.ones(4, 2))
    with pytest.raises(ValueError, match="shape"):
        sample("em", score, sde, space, torch.zeros(3, 2), 10)
    assert set(SAMPLERS) == {"em", "reverse", "ancestral", "pc", "ald", "ode"}


@pytest.mark.parametrize("sde_name", SDES)
def test_known_path_rate_is_time_derivative(sde_name):
    """The ODE sampler moves known entries along d/dt [m x_known + s z]."""
    from molscore.samplers import _path_rate

    sde = make_sde(sde_name)
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    space = DenseSpace((2, 1))
    xk, z = torch.ones(2, 1, dtype=torch.float64), torch.full((2, 1), 2.0, dtype=torch.float64)
    h = 1e-6
    (m1, s1), (m0, s0) = sde.marginal(t + h), sde.marginal(t - h)
    fd = ((m1 - m0) + 2 * (s1 - s0)) / (2 * h)
    torch.testing.assert_close(_path_rate(sde, space, t, z, xk, z)[:, 0], fd, rtol=1e-6,
                               atol=1e-8)


def test_sampling_keeps_no_graph_but_allows_gradient_scores():
    """Samplers run without autograd; an energy-style score that needs gradients still works."""
    sde = make_sde("vp")
    space = DenseSpace((16, 2))
    w = torch.ones(2, dtype=torch.float64, requires_grad=True)

    def energy_score(x, t):
        m, s = sde.marginal(t)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            e = 0.5 * (w * xg ** 2).sum(1) / (m ** 2 + s ** 2)
            (grad,) = torch.autograd.grad(e.sum(), xg)
        return -grad

    x = sde.prior_sample(space, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for name in SAMPLERS:
        res = sample(name, energy_score, sde, space, x, 5)
        assert not res.x.requires_grad and torch.isfinite(res.x).all()
    mask = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    xk = torch.zeros(1, 2, dtype=torch.float64)
    assert (sample("ode", energy_score, sde, space, x, 5, mask=mask, x_known=xk).x[:, 0] == 0).all()


def test_langevin_corrector_takes_no_step_on_a_zero_score():
    from molscore.samplers import langevin_correct
    from molscore.spaces import DenseSpace

    x = torch.randn(5, 2, dtype=torch.float64)
    space = DenseSpace(x.shape)
    out, mean = langevin_correct(lambda y, t: torch.zeros_like(y), space, x,
                                 torch.full((5,), 0.5, dtype=torch.float64), 3, 0.16)
    assert torch.equal(out, x) and torch.equal(mean, x)


def test_langevin_corrector_sizes_its_step_by_the_free_entries():
    """With a mask, ``gamma`` counts neither the known entries' score nor their degrees of
    freedom: a score of 100 on the known column and 1 on the free one gives ``gamma = 1``,
    the step ``2 snr^2``, not ``2 snr^2 / ((100^2 + 1) / 2)``. All entries known: no step."""
    from molscore.samplers import langevin_correct

    x = torch.randn(4, 2, dtype=torch.float64)
    space, t, snr = DenseSpace(x.shape), torch.full((4,), 0.5, dtype=torch.float64), 0.16
    grad = torch.tensor([[100.0, 1.0]], dtype=torch.float64).expand(4, 2)
    _, mean = langevin_correct(lambda y, t: grad, space, x, t, 1, snr,
                               mask=torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(mean[:, 1], x[:, 1] + 2 * snr ** 2)
    _, mean = langevin_correct(lambda y, t: grad, space, x, t, 1, snr)
    torch.testing.assert_close(mean[:, 1], x[:, 1] + 2 * snr ** 2 / ((100 ** 2 + 1) / 2))
    out, _ = langevin_correct(lambda y, t: grad, space, x, t, 2, snr, mask=torch.ones(1, 2))
    assert torch.equal(out, x)
