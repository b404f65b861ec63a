"""The space objects: broadcasting, per-sample reductions, CoM-free projection, degrees of freedom."""
import math

import pytest
import torch

from molscore.spaces import DenseSpace, PointSetSpace, index_count


def test_dense_space_broadcast_and_sums():
    space = DenseSpace((4, 3, 5, 5))
    t = torch.arange(4.0)
    assert space.expand(t).shape == (4, 1, 1, 1)
    x = torch.ones(4, 3, 5, 5) * space.expand(t)
    assert torch.equal(space.per_sample_sum(x), 75 * t)
    assert torch.equal(space.dim, torch.full((4,), 75.0))
    assert space.noise().shape == (4, 3, 5, 5)
    assert space.expand(torch.tensor(2.0)).shape == (4, 1, 1, 1)


def test_pointset_space_noise_is_com_free_per_graph():
    torch.manual_seed(0)
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    space = PointSetSpace(batch)
    z = space.noise(dtype=torch.float64)
    assert z.shape == (9, 3)
    assert torch.allclose(space.mean(z), torch.zeros(3, 3, dtype=torch.float64), atol=1e-12)
    assert torch.equal(space.dim, torch.tensor([6.0, 3.0, 9.0]))


def test_pointset_sum_and_expand_follow_the_batch_index():
    batch = torch.tensor([1, 0, 1, 1])
    space = PointSetSpace(batch, num_samples=3)
    v = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [3.0, 1, 0], [4.0, 0, 0]])
    assert torch.equal(space.per_sample_sum(v), torch.tensor([2.0, 9.0, 0.0]))
    t = torch.tensor([10.0, 20.0, 30.0])
    assert torch.equal(space.expand(t).squeeze(-1), torch.tensor([20.0, 10.0, 20.0, 20.0]))


def test_projected_noise_has_unit_variance_on_the_subspace():
    # A CoM-free Gaussian on n points has E||z||^2 = 3n - 3, the space's dim.
    torch.manual_seed(1)
    batch = torch.repeat_interleave(torch.arange(2000), 4)
    space = PointSetSpace(batch)
    z = space.noise(dtype=torch.float64)
    mean_sq = space.norm_sq(z).mean()
    # std of ||z||^2 for chi^2_9 is sqrt(18); standard error over 2000 samples ~0.095
    assert abs(mean_sq - 9.0) < 0.5


def test_projection_is_idempotent_and_can_be_disabled():
    batch = torch.tensor([0, 0, 1, 1, 1])
    x = torch.randn(5, 3, dtype=torch.float64)
    space = PointSetSpace(batch)
    p = space.project(x)
    assert torch.allclose(space.project(p), p)
    assert torch.equal(PointSetSpace(batch, com_free=False).project(x), x)
    assert torch.equal(PointSetSpace(batch, com_free=False).dim, torch.tensor([6.0, 9.0]))


@pytest.mark.parametrize("space", [DenseSpace((3, 2)), PointSetSpace(torch.tensor([0, 0, 1, 1, 1, 2, 2]))])
def test_rademacher_probes_live_on_the_subspace(space):
    z = space.rademacher_like(torch.zeros(space.shape))
    assert torch.allclose(space.project(z), z)


def _gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_per_sample_generators_make_a_samples_noise_independent_of_its_batch():
    # sample "a" (3 points, seed 11) alone, then after a 2-point sample and before a 4-point one
    alone = PointSetSpace(torch.zeros(3, dtype=torch.long))
    mixed = PointSetSpace(torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2]))
    za = alone.noise(generator=_gens(11))
    z = mixed.noise(generator=_gens(5, 11, 7))
    torch.testing.assert_close(z[2:5], za, rtol=0, atol=0)
    torch.testing.assert_close(mixed.mean(z), torch.zeros(3, 3), rtol=0, atol=1e-6)  # still CoM-free
    assert not torch.equal(z[0:2], mixed.noise(generator=_gens(6, 11, 7))[0:2])
    dense = DenseSpace((3, 2))
    x = torch.empty(3, 2, dtype=torch.float64)
    d = dense.noise_like(x, _gens(4, 11, 9))
    assert d.dtype == torch.float64
    torch.testing.assert_close(d[1], DenseSpace((1, 2)).noise_like(x[:1], _gens(11))[0], rtol=0, atol=0)


def test_per_sample_generators_are_checked():
    space = PointSetSpace(torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="3 generators for 2 samples"):
        space.noise(generator=_gens(1, 2, 3))
    with pytest.raises(ValueError, match="consecutive"):
        PointSetSpace(torch.tensor([0, 1, 0, 1])).noise(generator=_gens(1, 2))


def test_a_sample_without_points_has_no_degrees_of_freedom():
    """Sample 1 has no rows: 0 degrees of freedom (it was -3), so its prior log-density is
    log 1 = 0 (it was +1.5 log(2 pi s^2)) and Langevin's pooled dimension counts only the
    others."""
    from molscore.sde import make_sde

    space = PointSetSpace(torch.tensor([0, 0, 2, 2, 2]), num_samples=3)
    assert torch.equal(space.dim, torch.tensor([3.0, 0.0, 6.0]))
    assert torch.equal(PointSetSpace(torch.tensor([0, 0, 2]), num_samples=3,
                                     com_free=False).dim, torch.tensor([6.0, 0.0, 3.0]))
    x = space.noise(dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sde = make_sde("ve")
    logp = sde.prior_logp(x, space)
    s2 = sde.prior_std ** 2
    expected = -0.5 * space.norm_sq(x) / s2 - 0.5 * space.dim.double() * math.log(2 * math.pi * s2)
    torch.testing.assert_close(logp, expected)
    assert logp[1].item() == 0.0


def test_entry_index_numbers_each_samples_entries_from_zero():
    dense = DenseSpace((3, 2, 2))
    index = dense.entry_index(torch.zeros(3, 2, 2))
    assert index.shape == (3, 2, 2) and index.dtype == torch.long
    for b in range(3):
        assert index[b].flatten().tolist() == [0, 1, 2, 3]
    assert index_count(index) == 4
    # Point sets whose rows interleave: each sample counts its own rows in row order.
    batch = torch.tensor([1, 0, 1, 2, 0, 1])
    space = PointSetSpace(batch, num_samples=4)
    index = space.entry_index(torch.zeros(6, 3))
    assert index.tolist() == [[0, 1, 2], [0, 1, 2], [3, 4, 5], [0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert index_count(index) == 9 and index_count(batch) == 3   # the largest sample's entries
    empty = PointSetSpace(torch.zeros(0, dtype=torch.long))
    assert empty.num_samples == 0
    assert empty.entry_index(torch.zeros(0, 3)).shape == (0, 3)
    assert index_count(empty.entry_index(torch.zeros(0, 3))) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_entry_index_follows_x_to_its_device_whatever_the_batch_index_is_on():
    space = PointSetSpace(torch.tensor([0, 0, 1]))      # batch index on the CPU
    index = space.entry_index(torch.zeros(3, 3, device="cuda"))
    assert index.device.type == "cuda"
    assert index.cpu().tolist() == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]
