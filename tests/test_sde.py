"""SDE marginals against their moment ODEs and a simulated forward SDE; priors; drifts."""
from __future__ import annotations

import math

import pytest
import torch

from molscore.sde import make_sde
from molscore.spaces import DenseSpace

SDES = ("ve", "vp", "subvp")


def _moments_by_ode(sde, t_end: float, n: int = 4000) -> tuple[float, float]:
    """Integrate dm/dt = f m, d(s^2)/dt = 2 f s^2 + g^2 from m = 1, s^2 = 0 with RK4."""
    def rhs(t: float, y: torch.Tensor) -> torch.Tensor:
        tt = torch.tensor([t], dtype=torch.float64)
        f, g = sde.drift_coef(tt)[0], sde.diffusion(tt)[0]
        return torch.stack([f * y[0], 2 * f * y[1] + g ** 2])

    y, h = torch.tensor([1.0, 0.0], dtype=torch.float64), t_end / n
    for i in range(n):
        t = i * h
        k1 = rhs(t, y)
        k2 = rhs(t + h / 2, y + h / 2 * k1)
        k3 = rhs(t + h / 2, y + h / 2 * k2)
        k4 = rhs(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return float(y[0]), float(y[1].sqrt())


@pytest.mark.parametrize("name", SDES)
def test_marginal_matches_moment_ode(name):
    sde = make_sde(name)
    for t_end in (0.3, 1.0):
        m_ode, s_ode = _moments_by_ode(sde, t_end, n=400)
        m, s = sde.marginal(torch.tensor([t_end], dtype=torch.float64))
        assert m.item() == pytest.approx(m_ode, rel=1e-6)
        assert s.item() == pytest.approx(s_ode, rel=1e-6)


@pytest.mark.parametrize("name", SDES)
def test_marginal_matches_simulated_forward_sde(name):
    """Euler-Maruyama on 8000 1-D paths from x0 = 1.5: mean and variance at t = 0.5 and 1
    agree with m x0 and s^2 within 4 standard errors (plus the O(dt) scheme error)."""
    sde = make_sde(name, **({"sigma_max": 5.0} if name == "ve" else {}))
    n, steps, x0 = 8000, 400, 1.5
    g = torch.Generator().manual_seed(0)
    x = torch.full((n,), x0, dtype=torch.float64)
    h = 1.0 / steps
    for i in range(steps):
        t = torch.full((n,), i * h, dtype=torch.float64)
        x = x + sde.drift_coef(t) * x * h + sde.diffusion(t) * math.sqrt(h) * torch.randn(
            n, generator=g, dtype=torch.float64)
        if i + 1 in (steps // 2, steps):
            m, s = sde.marginal(torch.tensor([(i + 1) * h], dtype=torch.float64))
            var = s.item() ** 2
            assert abs(x.mean().item() - m.item() * x0) < 4 * math.sqrt(var / n) + 0.01
            assert abs(x.var().item() - var) < 4 * var * math.sqrt(2 / n) + 0.01 * var


@pytest.mark.parametrize("name", SDES)
def test_prior_std_matches_marginal_at_T(name):
    sde = make_sde(name)
    _, s = sde.marginal(torch.tensor([sde.T], dtype=torch.float64))
    expected = math.sqrt(50.0 ** 2 - 0.01 ** 2) if name == "ve" else 1.0
    assert sde.prior_std == pytest.approx(expected)
    assert s.item() == pytest.approx(expected, rel=1e-4)
    space = DenseSpace((20000, 2))
    x = sde.prior_sample(space, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert x.std().item() == pytest.approx(expected, rel=4 * math.sqrt(2 / x.numel()) * 2)


@pytest.mark.parametrize("name", SDES)
def test_reverse_drift_formula(name):
    sde = make_sde(name)
    g = torch.Generator().manual_seed(2)
    space = DenseSpace((5, 3))
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    score = torch.randn(5, 3, generator=g, dtype=torch.float64)
    t = torch.rand(5, generator=g, dtype=torch.float64)
    f, g2 = sde.drift_coef(t)[:, None], sde.diffusion(t)[:, None] ** 2
    torch.testing.assert_close(sde.reverse_drift(x, t, score, space), f * x - g2 * score)
    torch.testing.assert_close(sde.reverse_drift(x, t, score, space, probability_flow=True),
                               f * x - 0.5 * g2 * score)


@pytest.mark.parametrize("name", SDES)
@pytest.mark.parametrize("eps", [0.0, -1e-3, 1.0, 2.0])
def test_eps_outside_the_time_range_is_refused(name, eps):
    """eps = 0 ends sampling at s(0) = 0, where a network's score (-out / s) is infinite;
    eps < 0 sampled to negative times and eps >= T gave a time grid that does not go down."""
    with pytest.raises(ValueError, match=rf"^eps must be in \(0, 1.0\), got {eps}$"):
        make_sde(name, eps=eps)


@pytest.mark.parametrize("name", SDES)
def test_float32_marginal_std_and_step_near_t0_are_accurate(name):
    """Near t = 0 the marginal std in float32 matches float64 to 1e-5 relative, and so does
    ``discretize``'s std of a small forward step: VE's ``sigma(t)^2 - sigma_min^2`` and
    ``sigma(t + dt)^2 - sigma(t)^2`` cancelled (relative errors up to 8e-4)."""
    sde = make_sde(name, sigma_min=0.02, sigma_max=15.0) if name == "ve" else make_sde(name)
    space = DenseSpace((3, 2))
    x = torch.zeros(3, 2)
    for t0 in (1e-5, 1e-4, 1e-3):
        t32, t64 = torch.full((3,), t0), torch.full((3,), t0, dtype=torch.float64)
        torch.testing.assert_close(sde.marginal(t32)[1].double(), sde.marginal(t64)[1],
                                   rtol=1e-5, atol=0)
        for dt in (1e-4, 0.5 * t0):
            g32 = sde.discretize(x, t32, dt, space)[1].double()
            g64 = sde.discretize(x.double(), t64, dt, space)[1]
            torch.testing.assert_close(g32, g64, rtol=1e-5, atol=0)
