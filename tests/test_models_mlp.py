"""MLP score / energy networks: shapes, conservative field, Jacobian symmetry."""
from __future__ import annotations

import pytest
import torch

from molscore.models.mlp import MLPEnergyNet, MLPScoreNet, TimeEmbedding
from molscore.models.param import ScoreModel
from molscore.sde import make_sde
from molscore.spaces import DenseSpace


def _jacobian(model: ScoreModel, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobians ``(B, D, D)`` of the score field."""
    space = DenseSpace(x.shape)

    def f(xi: torch.Tensor, ti: torch.Tensor) -> torch.Tensor:
        return model(xi.unsqueeze(0), ti.unsqueeze(0), DenseSpace((1, x.shape[1])))[0]

    return torch.stack([torch.autograd.functional.jacobian(lambda v: f(v, t[i]), x[i])
                        for i in range(space.num_samples)])


@pytest.mark.parametrize("kind", ["fourier", "sinusoidal"])
def test_shapes_and_time_embedding(kind):
    torch.manual_seed(0)
    net = MLPScoreNet(3, hidden=16, depth=2, time_embed=kind, embed_dim=8)
    x, t = torch.randn(5, 3), torch.rand(5)
    assert net(x, t).shape == (5, 3)
    emb = TimeEmbedding(8, kind)(t)
    assert emb.shape == (5, 8)
    assert torch.allclose(emb[:, :4] ** 2 + emb[:, 4:] ** 2, torch.ones(5, 4))
    # different times give different outputs for the same x
    assert not torch.allclose(net(x[:1].expand(2, 3), torch.tensor([0.1, 0.9]))[0],
                              net(x[:1].expand(2, 3), torch.tensor([0.1, 0.9]))[1])
    energy = MLPEnergyNet(3, hidden=16, depth=2, time_embed=kind, embed_dim=8)
    assert energy(x, t).shape == (5,)
    with pytest.raises(ValueError, match="fourier, sinusoidal"):
        TimeEmbedding(8, "learned")


@pytest.mark.parametrize("sde_name", ["ve", "vp"])
def test_energy_score_is_minus_gradient_with_symmetric_jacobian(sde_name):
    torch.manual_seed(1)
    sde = make_sde(sde_name)
    net = MLPEnergyNet(3, hidden=32, depth=2, sde=sde, sigma_data=1.5).double()
    model = ScoreModel(net, sde, "energy").double()
    x = torch.randn(6, 3, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64) * 0.9 + 0.05
    score = model(x, t, DenseSpace(x.shape))
    # score = -grad E, checked by central finite differences of the energy
    h = 1e-6
    for d in range(3):
        e = torch.zeros_like(x)
        e[:, d] = h
        fd = -(net(x + e, t) - net(x - e, t)) / (2 * h)
        torch.testing.assert_close(score[:, d], fd, rtol=1e-5, atol=1e-6)
    jac = _jacobian(model, x, t)
    asym = (jac - jac.transpose(1, 2)).flatten(1).norm(dim=1) / jac.flatten(1).norm(dim=1)
    assert float(asym.max()) < 1e-10


def test_unconstrained_mlp_jacobian_is_not_symmetric():
    torch.manual_seed(2)
    sde = make_sde("vp")
    model = ScoreModel(MLPScoreNet(3, hidden=32, depth=2), sde, "eps").double()
    x = torch.randn(6, 3, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64) * 0.9 + 0.05
    jac = _jacobian(model, x, t)
    asym = (jac - jac.transpose(1, 2)).flatten(1).norm(dim=1) / jac.flatten(1).norm(dim=1)
    assert float(asym.min()) > 0.05


def test_energy_preconditioning_gives_score_scale_gradient():
    """With the SDE, E = h(c x, t) / (c s) so -grad_x E = -(grad h)(c x) / s."""
    torch.manual_seed(3)
    sde = make_sde("ve")
    net = MLPEnergyNet(2, hidden=16, depth=1, sde=sde, sigma_data=2.0).double()
    model = ScoreModel(net, sde, "energy").double()
    x = torch.randn(4, 2, dtype=torch.float64)
    t = torch.tensor([1e-3, 0.1, 0.5, 1.0], dtype=torch.float64)
    m, s = sde.marginal(t)
    c = (m ** 2 * 4.0 + s ** 2).rsqrt()
    u = (c[:, None] * x).requires_grad_(True)
    h = net.body(u, t).sum()
    (grad_h,) = torch.autograd.grad(h, u)
    torch.testing.assert_close(model(x, t, DenseSpace(x.shape)), -grad_h / s[:, None])
