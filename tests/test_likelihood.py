"""Probability-flow ODE likelihoods against analytic log-densities of Gaussian mixtures."""
from __future__ import annotations

import math

import pytest
import torch

from molscore.data.toy import exact_score_fn, get_density
from molscore.likelihood import bits_per_dim, log_likelihood
from molscore.sde import make_sde
from molscore.spaces import DenseSpace


def _setup(density: str, sde_name: str, n: int):
    d, sde = get_density(density), make_sde(sde_name)
    x = d.sample(n, torch.Generator().manual_seed(3), dtype=torch.float64)
    full = lambda t: torch.full((n,), t, dtype=torch.float64)  # noqa: E731
    m, s = sde.marginal(full(sde.eps))
    m_T, s_T = sde.marginal(full(sde.T))
    return d, sde, x, d.log_prob(x, m, s), (m_T, s_T)


@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
@pytest.mark.parametrize("density", ["gmm8", "gmm2"])
def test_exact_divergence_matches_analytic_log_density(density, sde_name):
    """With the exact score the flow is exact: ``delta_logp + log p_T(z)`` equals
    ``log p_eps(x)`` to the solver tolerance; with the Gaussian prior in place of ``p_T``
    the error is the prior mismatch, small for VP/sub-VP."""
    d, sde, x, ref, (m_T, s_T) = _setup(density, sde_name, 40)
    res = log_likelihood(exact_score_fn(d, sde), sde, DenseSpace(x.shape), x,
                         divergence="exact", rtol=1e-7, atol=1e-7)
    assert res.logp.shape == (40,) and res.nfe > 0
    torch.testing.assert_close(res.logp, res.prior_logp + res.delta_logp)
    torch.testing.assert_close(res.delta_logp + d.log_prob(res.z, m_T, s_T), ref,
                               rtol=0, atol=5e-5)
    assert (res.logp - ref).abs().max() < (0.3 if sde_name == "ve" else 0.1)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(noise):
    """Averaged over 6 probes per point the Hutchinson estimate agrees with the analytic
    value; the per-point error's mean is within 4 standard errors."""
    d, sde, x, ref, (m_T, s_T) = _setup("gmm8", "vp", 100)
    score, space = exact_score_fn(d, sde), DenseSpace(x.shape)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    errs = []
    for _ in range(6):
        res = log_likelihood(score, sde, space, x, noise=noise, generator=g)
        errs.append(res.delta_logp + d.log_prob(res.z, m_T, s_T) - ref)
    err = torch.stack(errs)                                     # (6, 100)
    assert err.std() > 1e-3                                     # genuinely stochastic
    assert abs(err.mean().item()) < 4 * err.std().item() / math.sqrt(err.numel())
    assert err.mean(0).abs().median() < 0.5


def test_fixed_step_solver_agrees_with_adaptive():
    d, sde, x, ref, _ = _setup("gmm2", "vp", 20)
    space = DenseSpace(x.shape)
    fixed = log_likelihood(exact_score_fn(d, sde), sde, space, x, divergence="exact",
                           method="rk4", steps=200)
    assert fixed.nfe == 4 * 200
    adaptive = log_likelihood(exact_score_fn(d, sde), sde, space, x, divergence="exact")
    torch.testing.assert_close(fixed.logp, adaptive.logp, rtol=0, atol=1e-3)


def test_bits_per_dim():
    logp = torch.tensor([-2.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(bits_per_dim(logp, 2.0),
                               torch.tensor([1 / math.log(2), 0.0], dtype=torch.float64))
    # An 8-bit image of D pixels scaled by a = 2/256: log_scale = D log a.
    D = torch.tensor([3072.0, 3072.0], dtype=torch.float64)
    bpd = bits_per_dim(logp, D, log_scale=3072 * math.log(2 / 256))
    torch.testing.assert_close(bpd, -(logp + 3072 * math.log(2 / 256)) / (3072 * math.log(2)))
    assert bpd[1].item() == pytest.approx(7.0)                 # log2(256) - log2(2)


def test_bad_options():
    d, sde, x, _, _ = _setup("gmm8", "vp", 4)
    space = DenseSpace(x.shape)
    score = exact_score_fn(d, sde)
    with pytest.raises(ValueError, match="hutchinson, exact"):
        log_likelihood(score, sde, space, x, divergence="skilling")
    with pytest.raises(ValueError, match="rademacher, gaussian"):
        log_likelihood(score, sde, space, x, noise="uniform")
    with pytest.raises(ValueError, match="steps"):
        log_likelihood(score, sde, space, x, method="rk4", steps=0)


@pytest.mark.parametrize("method", ["rk4", "euler", "midpoint"])
def test_fixed_step_method_without_steps_is_refused(method):
    """A fixed-grid method without ``steps`` integrated the ODE in one step from eps to T
    (4 score evaluations for rk4) and returned log-densities off by about 1-3 nats."""
    d, sde, x, _, _ = _setup("gmm8", "vp", 4)
    with pytest.raises(ValueError, match=f"method '{method}' is fixed-step and needs steps"):
        log_likelihood(exact_score_fn(d, sde), sde, DenseSpace(x.shape), x, method=method)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_probe_is_drawn_from_the_generator(noise):
    """The same generator seed gives the same Hutchinson estimate whatever the global RNG
    did in between (the Rademacher probe came from the global RNG); another seed another."""
    d, sde, x, _, _ = _setup("gmm8", "ve", 16)
    score_fn, space = exact_score_fn(d, sde), DenseSpace(x.shape)

    def run(seed: int) -> torch.Tensor:
        torch.rand(7)                                   # the global RNG moves on
        return log_likelihood(score_fn, sde, space, x, noise=noise, method="rk4", steps=8,
                              generator=torch.Generator().manual_seed(seed)).logp

    first = run(3)
    assert torch.equal(first, run(3))
    assert not torch.equal(first, run(4))


def test_data_not_shaped_like_the_space_is_refused():
    """(4, 3) data in a (4, 2) space gave log-densities counting 2 dimensions in the prior's
    normaliser and 3 in its norm, without a word."""
    sde = make_sde("vp")
    with pytest.raises(ValueError, match=r"x has shape \(4, 3\), the space \(4, 2\)"):
        log_likelihood(lambda y, t: -y, sde, DenseSpace((4, 2)), torch.randn(4, 3))


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_score_without_an_autograd_graph_is_refused(divergence):
    """A detached score (as sampling closures return) or one computed under inference_mode has
    no Jacobian for the divergence: the log-density counted only the drift's divergence,
    about 10 nats off for gmm8 under VP, without a word (inference_mode: a RuntimeError
    from inside autograd). Under torch.no_grad the likelihood still takes its own graph."""
    d, sde, x, ref, _ = _setup("gmm8", "vp", 8)
    score, space = exact_score_fn(d, sde), DenseSpace(x.shape)

    def run(score_fn) -> torch.Tensor:
        return log_likelihood(score_fn, sde, space, x, divergence=divergence, method="rk4",
                              steps=20, generator=torch.Generator().manual_seed(0)).logp

    with pytest.raises(ValueError, match="score with no autograd graph in x"):
        run(lambda y, t: score(y, t).detach())
    with torch.inference_mode(), pytest.raises(ValueError, match="no autograd graph"):
        run(score)
    with torch.no_grad():
        quiet = run(score)
    torch.testing.assert_close(quiet, run(score), rtol=0, atol=0)
    if divergence == "exact":
        assert (quiet - ref).abs().max() < 0.01
