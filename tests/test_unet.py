"""U-Net score network: shapes, time and label conditioning, guidance's null label."""
from __future__ import annotations

import re

import pytest
import torch

from molscore.models.param import ScoreModel
from molscore.models.unet import UNet, timestep_embedding
from molscore.sde import VPSDE
from molscore.spaces import DenseSpace


def _randomised(net: UNet, seed: int = 0) -> UNet:
    """The output conv is zero-initialised; give it weights so outputs depend on the input."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (net.out.weight, net.out.bias):
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for block in [m for m in net.modules() if hasattr(m, "conv2")]:
            block.conv2.weight.copy_(0.05 * torch.randn(block.conv2.weight.shape, generator=g))
    return net.eval()


@pytest.mark.parametrize("shape,ch_mult", [((3, 1, 8, 8), (1, 2)), ((2, 1, 28, 28), (1, 2, 2)),
                                            ((2, 3, 16, 12), (1, 2))])
def test_output_shape_matches_input(shape, ch_mult):
    net = UNet(shape[1], channels=8, ch_mult=ch_mult)
    out = net(torch.randn(shape), torch.rand(shape[0]))
    assert out.shape == shape
    assert torch.equal(out, torch.zeros(shape))  # zero-initialised output layer


def test_time_conditioning_per_sample():
    net = _randomised(UNet(1, channels=8, ch_mult=(1, 2)))
    x = torch.randn(1, 1, 8, 8).expand(3, 1, 8, 8)
    out = net(x, torch.tensor([0.1, 0.5, 0.5]))
    assert not torch.allclose(out[0], out[1], atol=1e-5)
    torch.testing.assert_close(out[1], out[2])
    # a 0-d time broadcasts to every sample
    torch.testing.assert_close(net(x, torch.tensor(0.5)), net(x, torch.full((3,), 0.5)))
    emb = timestep_embedding(torch.tensor([0.0, 1.0]), 9)
    assert emb.shape == (2, 9) and torch.isfinite(emb).all()


def test_label_conditioning_and_null_label():
    net = _randomised(UNet(1, channels=8, ch_mult=(1, 2), num_classes=10, label_dropout=0.5))
    x, t = torch.randn(4, 1, 8, 8), torch.full((4,), 0.3)
    y = torch.tensor([0, 1, 2, 3])
    a, b = net(x, t, y), net(x, t, torch.tensor([5, 1, 2, 3]))
    assert not torch.allclose(a[0], b[0], atol=1e-5)
    torch.testing.assert_close(a[1:], b[1:])
    # None and negative labels are the null label (index num_classes)
    torch.testing.assert_close(net(x, t, None), net(x, t, torch.full((4,), -1)))
    # a label the model has no class for is an error, not silently the null label
    with pytest.raises(ValueError, match=re.escape("class label 10 is not one of this model's "
                                                   "classes 0..9 (a negative label means no "
                                                   "label)")):
        net(x, t, torch.tensor([0, 10, 2, 3]))
    # a fractional label was truncated to a class (2.7 -> 2); whole floats are classes
    with pytest.raises(ValueError, match="class labels must be whole numbers"):
        net(x, t, torch.tensor([0.0, 1.0, 2.7, 3.0]))
    torch.testing.assert_close(net(x, t, y.float()), a)
    # eval mode is deterministic (no label dropout) ...
    torch.testing.assert_close(net(x, t, y), a)
    # ... training mode drops labels: with p = 0.5 some of 64 samples must be null
    net.train()
    torch.manual_seed(0)
    xs, ts, ys = x[:1].expand(64, 1, 8, 8), t[:1].expand(64), torch.full((64,), 3)
    out = net(xs, ts, ys)
    net.eval()
    cond, null = net(xs[:1], ts[:1], ys[:1]), net(xs[:1], ts[:1], None)
    is_null = ((out - null).flatten(1).abs().amax(1) < 1e-5)
    is_cond = ((out - cond).flatten(1).abs().amax(1) < 1e-5)
    assert torch.all(is_null | is_cond) and 10 < int(is_null.sum()) < 54


def test_bad_input_shape_raises():
    net = UNet(1, channels=8, ch_mult=(1, 2, 2))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(2, 1, 10, 10), torch.rand(2))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.randn(2, 3, 8, 8), torch.rand(2))


def test_score_model_wrapping_and_gradients():
    sde = VPSDE()
    net = UNet(1, channels=8, ch_mult=(1, 2), num_classes=3)
    model = ScoreModel(net, sde, "eps")
    x, t = torch.randn(5, 1, 8, 8), torch.rand(5) * 0.9 + 0.05
    out = model(x, t, DenseSpace(x.shape), torch.tensor([0, 1, 2, -1, 0]))
    assert out.shape == x.shape
    out.square().sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
