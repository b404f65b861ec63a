"""Parameterisation wrappers turn a network output into the same score."""
import pytest
import torch
from torch import nn

from molscore.models.mlp import MLPEnergyNet
from molscore.models.param import ScoreModel
from molscore.sde import SubVPSDE, VESDE, VPSDE
from molscore.spaces import DenseSpace


class GaussianOracle(nn.Module):
    """Returns, for N(0, data_std^2 I) data, exactly what each parameterisation should predict
    (``sigma_data``: the one the wrapper preconditions the denoiser with)."""

    def __init__(self, sde, kind, data_std=1.0, sigma_data=1.0):
        super().__init__()
        self.sde, self.kind, self.data_std, self.sigma_data = sde, kind, data_std, sigma_data

    def forward(self, x, t, cond=None):
        m, s = self.sde.marginal(t)
        m, s = m[:, None], s[:, None]
        var = m ** 2 * self.data_std ** 2 + s ** 2  # p_t = N(0, var I)
        score = -x / var
        if self.kind == "score":
            return score * s
        if self.kind == "eps":
            return -score * s
        if self.kind == "denoiser":
            # The network sees c_in * y with y = x_t / m = x0 + sigma z and must return
            # F with c_skip y + c_out F = E[x0 | y] = y data_std^2 / (data_std^2 + sigma^2)
            # (EDM, Karras et al. 2022, table 1).
            sigma, sd2 = s / m, self.sigma_data ** 2
            c_in = 1 / (sd2 + sigma ** 2).sqrt()
            c_skip, c_out = sd2 / (sd2 + sigma ** 2), sigma * self.sigma_data * c_in
            y = x / c_in
            return (y * self.data_std ** 2 / (self.data_std ** 2 + sigma ** 2) - c_skip * y) / c_out
        return 0.5 * (x ** 2).sum(-1) / var.squeeze(-1)  # energy


@pytest.mark.parametrize("sde", [VESDE(0.1, 5.0), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize("kind", ["score", "eps", "denoiser", "energy"])
@pytest.mark.parametrize("data_std, sigma_data", [(1.0, 1.0), (2.0, 0.5)], ids=["unit", "sd0.5"])
def test_every_parameterisation_gives_the_exact_gaussian_score(sde, kind, data_std, sigma_data):
    """With sigma_data = data std = 1 a factor sigma_data misplaced in c_skip / c_out / c_in
    would go unnoticed; the second case (data std 2, sigma_data 0.5) tells them apart."""
    torch.manual_seed(0)
    x = torch.randn(6, 3, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64) * 0.9 + 0.05
    model = ScoreModel(GaussianOracle(sde, kind, data_std, sigma_data), sde, kind, sigma_data=sigma_data).eval()
    m, s = sde.marginal(t)
    expected = -x / (m ** 2 * data_std ** 2 + s ** 2)[:, None]
    got = model(x, t, DenseSpace(x.shape))
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_energy_score_is_minus_the_gradient_of_the_energy():
    """The energy parameterisation's score is -grad_x E of the preconditioned MLP energy
    (central differences), its Jacobian (the negative Hessian) is symmetric, and in training
    mode it keeps the graph so that a loss on the score reaches the parameters."""
    sde = VESDE(0.1, 5.0)
    torch.manual_seed(0)
    model = ScoreModel(MLPEnergyNet(3, hidden=16, depth=2, sde=sde), sde, "energy").double().eval()
    space = DenseSpace((4, 3))
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=torch.float64)
    got = model(x, t, space)
    h, fd = 1e-5, torch.zeros_like(x)
    for k in range(3):
        step = torch.zeros_like(x)
        step[:, k] = h
        fd[:, k] = -(model.energy(x + step, t, space) - model.energy(x - step, t, space)) / (2 * h)
    assert float(got.abs().max()) > 1e-3
    torch.testing.assert_close(got, fd, rtol=1e-6, atol=1e-8)
    jac = torch.autograd.functional.jacobian(lambda y: model(y, t, space)[0], x)[:, 0]   # (3, 3) of sample 0
    torch.testing.assert_close(jac, jac.T, rtol=1e-9, atol=1e-10)
    model.train()
    model(x, t, space).pow(2).sum().backward()
    first = model.net.body.layers[0].weight.grad   # (the output bias has no gradient: a constant in E)
    assert first is not None and float(first.abs().max()) > 0


def test_unknown_parameterisation_names_the_choices():
    with pytest.raises(ValueError, match="score, eps, denoiser, energy"):
        ScoreModel(nn.Identity(), VESDE(), "velocity")
