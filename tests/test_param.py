"""Parameterisation wrappers turn a network output into the same score."""
import pytest
import torch
from torch import nn

from molscore.models.param import ScoreModel
from molscore.sde import SubVPSDE, VESDE, VPSDE
from molscore.spaces import DenseSpace



class GaussianOracle(nn.Module):
    """Returns, for N(0, I) data, exactly what each parameterisation should predict."""

    def __init__(self, sde, kind):
        super().__init__()
        self.sde, self.kind = sde, kind

    def forward(self, x, t, cond=None):
        m, s = self.sde.marginal(t)
        m, s = m[:, None], s[:, None]
        var = m ** 2 + s ** 2  # p_t = N(0, var I)
        score = -x / var
        if self.kind == "score":
            return score * s
        if self.kind == "eps":
            return -score * s
        if self.kind == "denoiser":
            # The network sees c_in * y with y = x_t / m = x0 + sigma z and must return
            # F with c_skip y + c_out F = E[x0 | y] = y / (1 + sigma^2) (sigma_data = 1).
            sigma = s / m
            c_in = 1 / (1 + sigma ** 2).sqrt()
            c_skip, c_out = 1 / (1 + sigma ** 2), sigma * c_in
            y = x / c_in
            return (y / (1 + sigma ** 2) - c_skip * y) / c_out
        return 0.5 * (x ** 2).sum(-1) / var.squeeze(-1)  # energy


@pytest.mark.parametrize("sde", [VESDE(0.1, 5.0), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize("kind", ["score", "eps", "denoiser", "energy"])
def test_every_parameterisation_gives_the_exact_gaussian_score(sde, kind):
    torch.manual_seed(0)
    x = torch.randn(6, 3, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64) * 0.9 + 0.05
    model = ScoreModel(GaussianOracle(sde, kind), sde, kind).eval()
    m, s = sde.marginal(t)
    expected = -x / (m ** 2 + s ** 2)[:, None]
    got = model(x, t, DenseSpace(x.shape))
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_unknown_parameterisation_names_the_choices():
    with pytest.raises(ValueError, match="score, eps, denoiser, energy"):
        ScoreModel(nn.Identity(), VESDE(), "velocity")
