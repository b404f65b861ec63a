"""Image data, scaling, bits/dim, Fréchet distance, guidance and inpainting through the engine."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from _npz import save_damaged_npz

from molscore.cli import main
from molscore.data.image_metrics import dequantized_bits_per_dim, frechet_distance
from molscore.data.image_task import ImageDataset, bits_per_dim_of, build_model, build_task, \
    generate, guided_score_fn, make_collate
from molscore.data.images import (ImageError, load_digits_images, load_image_source,
                                  load_npz_images, load_png_folder, read_png, save_grid,
                                  split_holdout, to_levels, to_model_space, write_png)
from molscore.models.classifier import load_classifier, save_classifier, train_classifier
from molscore.spaces import DenseSpace

TINY = {"task": "images", "data": {"source": "digits", "holdout": 0.1},
        "model": {"channels": 8, "ch_mult": [1, 2], "num_res_blocks": 1},
        "sde": {"name": "vp"}}


def test_digits_shapes_levels_and_scaling():
    d = load_digits_images()
    assert d.images.shape == (1797, 1, 8, 8) and d.levels == 17
    assert int(d.images.min()) == 0 and int(d.images.max()) == 16
    assert d.labels.shape == (1797,) and set(d.labels.tolist()) == set(range(10))
    for u in (0.0, 0.999):
        y = to_model_space(d.images, 17, u)
        assert float(y.min()) >= -1 and float(y.max()) < 1
    for u in (1e-3, 0.5, 0.999):  # away from the bin edges (float rounding)
        assert torch.equal(to_levels(to_model_space(d.images, 17, u), 17), d.images.long())
    u = torch.rand(d.images.shape, generator=torch.Generator().manual_seed(0)).clamp(1e-3, 0.999)
    y = to_model_space(d.images, 17, u)
    assert torch.equal(to_levels(y, 17), d.images.long())
    assert torch.equal(to_levels(torch.tensor([-5.0, 5.0]), 17), torch.tensor([0, 16]))


def test_holdout_split_is_disjoint_and_seeded():
    d = load_digits_images()
    tr, ho = split_holdout(d, 0.1, seed=3)
    assert len(tr) + len(ho) == len(d) and len(ho) == 180
    tr2, ho2 = split_holdout(d, 0.1, seed=3)
    assert torch.equal(ho.images, ho2.images)
    # no held-out image is the same sample as a training image (same row twice)
    rows = lambda s: {tuple(r) for r in torch.cat([s.images.flatten(1),  # noqa: E731
                                                   s.labels[:, None]], 1).tolist()}
    assert len(rows(ho) & rows(tr)) <= 3  # digits has a few exact duplicates


def test_npz_loader(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=arr, labels=np.arange(5))
    d = load_npz_images(tmp_path / "a.npz")
    assert d.images.shape == (5, 1, 6, 4) and d.levels == 256 and d.labels.tolist() == [0, 1, 2,
                                                                                        3, 4]
    np.savez(tmp_path / "rgb.npz", x=np.zeros((2, 4, 4, 3), np.uint8))
    assert load_npz_images(tmp_path / "rgb.npz").images.shape == (2, 3, 4, 4)
    np.savez(tmp_path / "f.npz", images=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ImageError, match="integers"):
        load_npz_images(tmp_path / "f.npz")
    np.savez(tmp_path / "onehot.npz", images=arr, labels=np.eye(10, dtype=np.int64)[:5])
    with pytest.raises(ImageError, match=re.escape("labels must be one class index per image, "
                                                   "shape (5,), got (5, 10)")):
        load_npz_images(tmp_path / "onehot.npz")     # was loaded; the collate then raised
    np.savez(tmp_path / "grey_alpha.npz", images=np.zeros((2, 8, 8, 2), np.uint8))
    with pytest.raises(ImageError, match=re.escape("C 1, 3 or 4, got shape (2, 8, 8, 2)")):
        load_npz_images(tmp_path / "grey_alpha.npz")  # was read as 8 channels of 8x2 images
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 8, 8), np.uint8))
    with pytest.raises(ImageError, match="empty.npz: the image array is empty"):
        load_npz_images(tmp_path / "empty.npz")      # was numpy's error naming no file
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ImageError, match="bad.npz is not an .npz archive"):
        load_npz_images(tmp_path / "bad.npz")
    mn = load_image_source("mnist")
    assert mn.images.shape == (5000, 1, 28, 28) and mn.levels == 256 and len(mn.labels) == 5000
    with pytest.raises(ImageError, match="no such file"):
        load_image_source("nowhere.npz")


def test_png_folder_skips_bad_files_and_reads_labels(tmp_path):
    for label in (0, 1):
        (tmp_path / str(label)).mkdir()
        for i in range(2):
            write_png(tmp_path / str(label) / f"{i}.png",
                      torch.full((1, 8, 8), 40 * (label + i), dtype=torch.uint8))
    write_png(tmp_path / "1" / "big.png", torch.zeros(1, 9, 9, dtype=torch.uint8))
    (tmp_path / "0" / "broken.png").write_bytes(b"\x89PNG garbage")
    warnings: list[str] = []
    d = load_png_folder(tmp_path, warn=warnings.append)
    assert d.images.shape == (4, 1, 8, 8) and sorted(d.labels.tolist()) == [0, 0, 1, 1]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert any("big.png" in w and "expected 1x8x8" in w for w in warnings)
    assert any("broken.png" in w and "cannot read" in w for w in warnings)


def test_png_folder_is_colour_whatever_file_comes_first(tmp_path):
    """The first file fixed the channel count: a colour folder whose first file was grey
    (stored as RGB) was read as one grey image, the colour ones skipped as 3x8x8."""
    write_png(tmp_path / "a.png", torch.full((3, 8, 8), 90, dtype=torch.uint8))
    for i in range(3):
        img = torch.zeros(3, 8, 8, dtype=torch.uint8)
        img[i] = 200
        write_png(tmp_path / f"b{i}.png", img)
    write_png(tmp_path / "c.png", torch.zeros(3, 9, 9, dtype=torch.uint8))
    warnings: list[str] = []
    d = load_png_folder(tmp_path, warn=warnings.append)
    assert d.images.shape == (4, 3, 8, 8) and d.labels is None
    assert torch.equal(d.images[0], torch.full((3, 8, 8), 90, dtype=torch.uint8))
    assert [int(d.images[1 + i, i, 0, 0]) for i in range(3)] == [200] * 3
    assert len(warnings) == 1 and "c.png" in warnings[0] and "expected 3x8x8" in warnings[0]


def test_read_png_channels(tmp_path):
    rgb = torch.zeros(3, 8, 8, dtype=torch.uint8)
    rgb[0] = 255
    write_png(tmp_path / "rgb.png", rgb)
    write_png(tmp_path / "grey.png", torch.full((1, 8, 8), 7, dtype=torch.uint8))
    with pytest.raises(ImageError, match="is 3x8x8.*expected 1x8x8"):
        read_png(tmp_path / "rgb.png", (1, 8, 8))
    assert torch.equal(read_png(tmp_path / "grey.png", (3, 8, 8)), torch.full((3, 8, 8), 7,
                                                                               dtype=torch.uint8))
    assert torch.equal(read_png(tmp_path / "rgb.png", (3, 8, 8)), rgb)
    save_grid(tmp_path / "grid.png", torch.randint(0, 17, (5, 1, 8, 8)), 17, scale=2)
    assert read_png(tmp_path / "grid.png").shape == (1, 2 * (2 * 9 + 1), 2 * (3 * 9 + 1))



def test_read_png_refuses_16_bit_pixels_instead_of_clipping_them(tmp_path):
    """A 16-bit grey PNG was converted by clipping every value above 255 to 255: a
    mid-grey image (32896 = 128 * 257) read as white."""
    from PIL import Image

    Image.fromarray(np.full((8, 8), 128 * 257, dtype=np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(ImageError, match="deep.png: I;16 pixels .*8 bits per channel"):
        read_png(tmp_path / "deep.png", (1, 8, 8))
    Image.fromarray(np.eye(8, dtype=bool)).save(tmp_path / "bilevel.png")  # mode "1"
    assert torch.equal(read_png(tmp_path / "bilevel.png"),
                       torch.from_numpy(np.eye(8, dtype=np.uint8) * 255)[None])

def test_bits_per_dim_uniform_density_is_log2_levels():
    for levels, dim in ((17, 64), (256, 784), (2, 5)):
        logp_uniform = torch.tensor([-dim * math.log(2.0)])  # uniform on [-1, 1]^D
        bpd = dequantized_bits_per_dim(logp_uniform, dim, levels)
        torch.testing.assert_close(bpd, torch.tensor([math.log2(levels)]))


def test_bits_per_dim_equals_discrete_code_length_for_binwise_constant_density():
    """A density constant on every dequantisation bin: p_y = P_k / (2 / L) on bin k.
    Then E_u[bpd] is exactly -log2 P(x) / D for every u (the dequantisation bound is tight)."""
    levels, dim, n = 17, 3, 6
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(levels, generator=g) + 0.1
    probs = probs / probs.sum()
    x = torch.randint(0, levels, (n, dim), generator=g)
    y = to_model_space(x, levels, torch.rand(n, dim, generator=g))
    k = to_levels(y, levels)
    logp_y = (torch.log(probs[k]) - math.log(2.0 / levels)).sum(1)
    expected = -torch.log2(probs[x]).sum(1) / dim
    torch.testing.assert_close(dequantized_bits_per_dim(logp_y, dim, levels), expected)


def test_frechet_distance_gaussians():
    rng = np.random.default_rng(0)
    n, f = 20000, 4
    a = rng.standard_normal((n, f))
    b = 2.0 * rng.standard_normal((n, f)) + np.array([1.0, 0, 0, 0])
    # ||mu||^2 + tr(I + 4I - 2 * 2I) = 1 + 4
    assert abs(frechet_distance(a, b) - 5.0) < 10 * math.sqrt(f * 16 / n) + 0.05
    assert abs(frechet_distance(a, a)) < 1e-8
    with pytest.raises(ValueError):
        frechet_distance(a[:1], b)


def test_frechet_distance_of_one_feature():
    """``np.cov`` of ``(N, 1)`` features is 0-d: the (F, F) covariance was not, and the
    distance raised LinAlgError. In 1-D it is ``(mu_a - mu_b)^2 + (s_a - s_b)^2``."""
    a = torch.tensor([[0.0], [2.0], [4.0]], dtype=torch.float64)      # mean 2, var 4
    b = torch.tensor([[1.0], [2.0]], dtype=torch.float64)              # mean 1.5, var 0.5
    assert frechet_distance(a, b) == pytest.approx(0.25 + (2.0 - math.sqrt(0.5)) ** 2)


def test_task_collate_and_model_rebuild():
    task = build_task(TINY)
    assert task.meta["shape"] == [1, 8, 8] and task.meta["levels"] == 17
    assert task.meta["num_classes"] == 10 and len(task.val_set) == 180
    batch = task.collate([task.train_set[i] for i in range(7)])
    assert batch.x.shape == (7, 1, 8, 8) and isinstance(batch.space, DenseSpace)
    assert float(batch.x.min()) > -1 and float(batch.x.max()) < 1
    assert batch.cond.dtype == torch.long and batch.cond.shape == (7,)
    rebuilt = build_model(task.meta)
    rebuilt.load_state_dict(task.model.state_dict())
    fixed = make_collate(17, dequantize=False, conditional=False)([task.train_set[0]])
    assert fixed.cond is None
    assert torch.equal(to_levels(fixed.x, 17)[0], task.train_set[0][0].long())
    with pytest.raises(ValueError, match="unknown model options"):
        build_task({**TINY, "model": {"width": 3}})


class _Affine(torch.nn.Module):
    """A fake score model: s(x | y) = -x + y (label as a number), s(x | null) = -x."""

    def __init__(self):
        super().__init__()
        self.sde = None

    def forward(self, x, t, space, cond=None):
        y = torch.zeros(x.shape[0]) if cond is None else torch.where(cond < 0, 0, cond).float()
        return -x + space.expand(y)


def test_image_size_that_the_unet_levels_cannot_halve_is_a_config_error(tmp_path):
    """8x8 digits with five ch_mult levels (divisible by 16 needed) built, then the first
    training step raised a bare ValueError from UNet.forward (a traceback from the CLI)."""
    from molscore.train import ConfigError, train

    cfg = {**TINY, "model": {**TINY["model"], "ch_mult": [1, 2, 2, 2, 2]}, "batch_size": 4,
           "steps": 1}
    with pytest.raises(ConfigError, match=re.escape("8x8 images do not fit model.ch_mult: its 5 "
                                                    "resolution levels need height and width "
                                                    "divisible by 16")):
        train(cfg, tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run").exists()


def test_classifier_free_guidance_formula():
    x, t = torch.randn(3, 1, 2, 2), torch.rand(3)
    space = DenseSpace(x.shape)
    labels = torch.tensor([1, 2, 3])
    w = 2.0
    got = guided_score_fn(_Affine(), space, labels, w)(x, t)
    want = (1 + w) * (-x + labels.float()[:, None, None, None]) - w * (-x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(guided_score_fn(_Affine(), space, None)(x, t), -x)


@pytest.mark.parametrize("sampler", ["pc", "ode", "ald"])
def test_inpainting_keeps_known_pixels_exactly(sampler):
    task = build_task(TINY)
    model, meta = task.model.eval(), task.meta
    with torch.no_grad():  # the output conv starts at zero: a zero score stalls Langevin steps
        model.net.out.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    image = task.train_set[0][0]
    x_known = to_model_space(image, 17)
    mask = torch.zeros(1, 8, 8)
    mask[:, :, :4] = 1  # left half known
    out, nfe = generate(model, meta, 3, sampler=sampler, steps=4, x_known=x_known, mask=mask,
                        generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 8, 8) and nfe > 0
    assert torch.equal(out[:, :, :, :4], image[None, :, :, :4].long().expand(3, 1, 8, 4))
    assert int(out.min()) >= 0 and int(out.max()) <= 16


def test_classifier_learns_digits_and_round_trips(tmp_path):
    d = load_digits_images()
    tr, ho = split_holdout(d, 0.2, seed=0)
    clf = train_classifier(to_model_space(tr.images, 17), tr.labels, 10, epochs=8, seed=0)
    x_ho = to_model_space(ho.images, 17)
    acc = float((clf.predict(x_ho) == ho.labels).float().mean())
    assert acc > 0.9
    save_classifier(clf, tmp_path / "clf.pt", {"levels": 17})
    clf2, info = load_classifier(tmp_path / "clf.pt")
    assert info == {"levels": 17}
    torch.testing.assert_close(clf2.embed(x_ho), clf.embed(x_ho))
    assert clf.embed(x_ho).shape == (len(ho), 64)
    # no images (an empty held-out split): empty results, not torch.cat's error
    none = x_ho[:0]
    assert clf.embed(none).shape == (0, 64)
    assert clf.predict(none).shape == (0,) and clf.predict(none).dtype == torch.long
    # batches of 7: the same as one batch
    torch.testing.assert_close(clf.embed(x_ho, batch_size=7), clf.embed(x_ho))


def test_classifier_training_is_seeded_and_leaves_the_global_rng_alone():
    """The caller's torch random state is as before (it was reset to ``seed``), and the same
    seed gives the same classifier."""
    d = load_digits_images().subset(torch.arange(40))
    x = to_model_space(d.images, 17)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = train_classifier(x, d.labels, 10, epochs=1, batch_size=20, seed=5)
    torch.testing.assert_close(torch.rand(3), expected)
    second = train_classifier(x, d.labels, 10, epochs=1, batch_size=20, seed=5)
    torch.testing.assert_close(first.embed(x), second.embed(x), rtol=0, atol=0)


def test_dataset_items():
    d = load_digits_images()
    ds = ImageDataset(d.subset(torch.arange(3)))
    img, label = ds[1]
    assert img.shape == (1, 8, 8) and label == int(d.labels[1]) and len(ds) == 3


def test_image_bits_per_dim_through_the_ode_matches_analytic_gaussian():
    """Exact score of y ~ N(0, v0 I) under the VP SDE: log p_eps is Gaussian with variance
    m^2 v0 + s^2 at t = eps; the ODE likelihood + dequantisation must reproduce it."""
    from molscore.data.image_metrics import image_bits_per_dim
    from molscore.sde import VPSDE

    sde, v0, levels = VPSDE(), 0.3, 17
    images = torch.randint(0, levels, (3, 1, 2, 2), generator=torch.Generator().manual_seed(1))

    def score(x, t):
        m, s = sde.marginal(t)
        return -x / (m ** 2 * v0 + s ** 2)[:, None, None, None]

    bpd, nfe = image_bits_per_dim(score, sde, images.double(), levels,
                                  generator=torch.Generator().manual_seed(2),
                                  divergence="exact", rtol=1e-7, atol=1e-7)
    u = torch.rand(images.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = to_model_space(images.double(), levels, u)
    m, s = sde.marginal(torch.tensor(sde.eps, dtype=torch.float64))
    var = m ** 2 * v0 + s ** 2
    logp = (-0.5 * y ** 2 / var - 0.5 * torch.log(2 * math.pi * var)).flatten(1).sum(1)
    torch.testing.assert_close(bpd, dequantized_bits_per_dim(logp, 4, levels), atol=1e-4,
                               rtol=0)
    assert nfe > 0


def test_bits_per_dim_of_rejects_images_that_do_not_fit_the_model():
    from molscore.data.image_task import bits_per_dim_of

    task = build_task(TINY)
    model, meta = task.model.eval(), task.meta
    for images, needle in ((torch.randint(0, 17, (2, 1, 16, 16)), "must be (B, 1, 8, 8)"),
                           (torch.randint(0, 17, (1, 8, 8)), "must be (B, 1, 8, 8)"),
                           (torch.full((2, 1, 8, 8), 200), "in [0, 17)"),
                           (torch.full((2, 1, 8, 8), -1), "in [0, 17)"),
                           (torch.full((2, 1, 8, 8), 2.5, dtype=torch.float64),
                            "integers in [0, 17), got fractional values in 2.5..2.5")):
        with pytest.raises(ValueError, match=re.escape(needle)):
            bits_per_dim_of(model, meta, images, method="euler", steps=2)
    images = torch.randint(0, 17, (2, 1, 8, 8))
    bpd, _ = bits_per_dim_of(model, meta, images, method="euler", steps=2,
                             generator=torch.Generator().manual_seed(0))
    assert bpd.shape == (2,) and torch.isfinite(bpd).all()
    # whole-valued float64 images (read from a float array) raised a dtype mismatch in the
    # network; they are the same images
    again, _ = bits_per_dim_of(model, meta, images.double(), method="euler", steps=2,
                               generator=torch.Generator().manual_seed(0))
    assert again.dtype == torch.float32 and torch.equal(again, bpd)


@pytest.mark.parametrize("levels", [2, 17, 100, 256])
def test_8bit_values_read_back_to_the_levels_they_were_written_from(levels):
    """PNGs are written with ``round(k 255 / (L - 1))``; inpainting inputs were read with
    ``floor(v L / 256)``, which at L = 100 read levels 2, 4, 6, 9, ... back one lower."""
    from molscore.data.images import levels_from_8bit, levels_to_8bit

    k = torch.arange(levels)
    v = levels_to_8bit(k, levels)
    assert v[0] == 0 and v[-1] == 255
    assert torch.equal(levels_from_8bit(v, levels), k)
    every = levels_from_8bit(torch.arange(256), levels)          # monotone, onto the levels
    assert (every.diff() >= 0).all() and set(every.tolist()) == set(range(levels))


def test_held_out_class_the_training_split_lacks_is_a_config_error(tmp_path, capsys):
    """A held-out label above the training split's classes was mapped to the null label:
    the validation loss scored those images unconditionally and said nothing."""
    labels = np.zeros(20, dtype=np.int64)
    held_first = int(torch.randperm(20, generator=torch.Generator().manual_seed(0))[0])
    labels[held_first] = 1                                # class 1 lands in the held-out split
    np.savez(tmp_path / "rare.npz", labels=labels,
             images=np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8))
    cfg = {**TINY, "data": {"source": str(tmp_path / "rare.npz"), "holdout": 0.1}}
    with pytest.raises(ValueError, match=re.escape(
            "rare.npz: held-out images have class label 1, but the training split's classes "
            "are only 0..0; change data.split_seed or data.holdout")):
        build_task(cfg)
    assert build_task({**cfg, "data": {**cfg["data"], "holdout": 0.0}}).meta["num_classes"] == 2
    # molscore train: a usage error, exit 2, one line
    (tmp_path / "rare.yaml").write_text(yaml.safe_dump({**cfg, "steps": 1, "batch_size": 4}))
    assert main(["train", "-c", str(tmp_path / "rare.yaml"), "-o", str(tmp_path / "run"),
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "held-out images have class label 1" in err


def test_label_outside_the_models_classes_is_an_error_not_the_null_label():
    task = build_task(TINY)
    images = task.val_set.data.images[:2].long()
    for bad in (10, 11):
        with pytest.raises(ValueError, match=f"class label {bad} is not one of this model's "
                                             "classes 0..9"):
            bits_per_dim_of(task.model.eval(), task.meta, images, labels=torch.tensor([0, bad]),
                            steps=2, method="euler")


@pytest.mark.parametrize("labels,got", [(np.array([0, -1]), "values -1..0"),
                                        (np.array([0.0, 1.5]), "values 0.0..1.5"),
                                        (np.array(["a", "b"]), "dtype <U1")])
def test_npz_labels_must_be_class_indices(tmp_path, labels, got):
    """A negative label was read, then meant 'no label' to the model (the null label)."""
    np.savez(tmp_path / "a.npz", images=np.zeros((2, 4, 4), np.uint8), labels=labels)
    with pytest.raises(ImageError, match=re.escape(
            f"a.npz: labels must be class indices 0, 1, 2, ... (whole numbers >= 0), got {got}")):
        load_npz_images(tmp_path / "a.npz")
    np.savez(tmp_path / "f.npz", images=np.zeros((2, 4, 4), np.uint8), labels=np.array([1.0, 0]))
    assert load_npz_images(tmp_path / "f.npz").labels.tolist() == [1, 0]


@pytest.mark.parametrize("section, message", [
    # a misspelt key was ignored: the run trained with the default it meant to change
    ({"data": {"source": "digits", "holdot": 0.5}},
     "data has no key 'holdot'; choose from source, holdout, split_seed, dequantize"),
    ({"data": {"source": "digits", "dequantize": "no"}},  # the string "no" was read as true
     "data.dequantize must be true or false, got 'no'"),
    ({"data": {"source": "digits", "holdout": "some"}}, "data.holdout must be a number"),
    ({"model": {**TINY["model"], "attn_heads": 0}},  # ZeroDivisionError traceback
     "model.attn_heads must be a positive integer, got 0"),
    ({"model": {**TINY["model"], "ch_mult": []}},    # a U-Net of no resolution level
     "model.ch_mult must be a list of positive integers"),
    ({"model": {**TINY["model"], "label_dropout": 1.5}},   # every label dropped
     "model.label_dropout must be in [0, 1], got 1.5"),
    ({"model": {**TINY["model"], "conditional": "false"}},
     "model.conditional must be true or false, got 'false'"),
    ({"sde": {"name": "vp", "sigma_max": 5}},        # TypeError traceback
     "sde 'vp' takes no option 'sigma_max'; choose from beta_min, beta_max, eps"),
    ({"sde": {"beta_max": 5}}, "sde must be a mapping with a 'name'"),
    ({"data": {"source": "digits", "holdout": 0.9999}},  # RuntimeError traceback
     "digits: data.holdout 0.9999 holds out all 1797 images, leaving none to train on"),
    ({"model": {**TINY["model"], "num_res_blocks": 1.5}},  # TypeError traceback
     "model.num_res_blocks must be an integer >= 0, got 1.5"),
    ({"model": {**TINY["model"], "num_res_blocks": -1}},   # trained as 0
     "model.num_res_blocks must be an integer >= 0, got -1"),
])
def test_bad_image_config_is_one_line_exit_2(tmp_path, capsys, section, message):
    """A training config the images task cannot use as written is a one-line usage error
    (before: silently ignored or misread keys, or a traceback)."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**TINY, **section, "steps": 1, "batch_size": 4}))
    assert main(["train", "--config", str(path), "-q", "--device", "cpu",
                 "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_sde_options_written_as_yaml_strings_are_numbers(tmp_path):
    """PyYAML reads ``1e-3`` (no dot) as a string; the SDE takes it as the number, as the
    trainer's own keys (``optim.lr``) do."""
    cfg = yaml.safe_load("sde: {name: vp, beta_min: 1e-1, beta_max: 2e1}")
    assert cfg["sde"]["beta_min"] == "1e-1"
    task = build_task({**TINY, **cfg})
    assert task.meta["sde"] == {"name": "vp", "eps": 1e-5, "beta_min": 0.1, "beta_max": 20.0}


def test_bits_per_dim_of_a_model_without_label_dropout_needs_labels():
    """Its null-label embedding never got a gradient: bits/dim without labels scored the images
    under an untrained embedding (as ``molscore sample`` without --label did)."""
    task = build_task({**TINY, "model": {**TINY["model"], "label_dropout": 0.0}})
    images = task.val_set.data.images[:2].long()
    with pytest.raises(ValueError, match="trained with model.label_dropout 0, so it has no "
                                         "unconditional score: give labels"):
        bits_per_dim_of(task.model.eval(), task.meta, images, steps=2, method="euler")
    bpd, _ = bits_per_dim_of(task.model.eval(), task.meta, images, labels=torch.tensor([0, 1]),
                             steps=2, method="euler")
    assert bpd.shape == (2,) and torch.isfinite(bpd).all()



def _truncated_npz(path) -> None:
    np.savez(path, images=np.zeros((4, 8, 8), np.uint8))
    path.write_bytes(path.read_bytes()[:200])


def _npy_named_npz(path) -> None:
    """One array as ``numpy.save`` writes it (``np.load`` returns the array, no archive)."""
    with open(path, "wb") as fh:
        np.save(fh, np.zeros((4, 8, 8), np.uint8))


def _damaged_npz(path) -> None:
    """An ``.npz`` whose array ``images`` has a changed byte (its CRC-32 no longer matches)."""
    save_damaged_npz(path, "images", np.full((4, 8, 8), 7, np.uint8))


@pytest.mark.parametrize("write, message", [
    # numpy's message was "This file contains pickled (object) data. If you trust the file
    # you can load it unsafely using the `allow_pickle=` keyword argument ..."
    (lambda p: p.write_text("label,pixels\n3,0 0 0\n"),
     " is not an .npz archive: it is not a zip archive, which numpy.savez writes"),
    (lambda p: p.write_bytes(b""), " is not an .npz archive: it is empty (0 bytes)"),  # EOFError
    (_truncated_npz, " is not an .npz archive: it is truncated"),  # zipfile.BadZipFile
    (_npy_named_npz, " is not an .npz archive: it is a single .npy array"),  # TypeError
    (lambda p: np.savez(p, images=np.array([np.zeros((8, 8)), None], dtype=object)),
     ": cannot read array 'images': it holds Python objects (dtype object), which are never "
     "unpickled"),
    (_damaged_npz, ": cannot read array 'images': Bad CRC-32"),  # zipfile.BadZipFile
])
def test_a_file_that_is_no_npz_archive_is_one_line_exit_2(tmp_path, capsys, write, message):
    """``data.source: FILE.npz`` that numpy cannot read as an archive: a line naming the file
    and what is wrong, exit 2 (a text file gave numpy's advice to unpickle it; an empty,
    truncated or damaged file or a single ``.npy`` array a traceback)."""
    bad = tmp_path / "images.npz"
    write(bad)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "data": {"source": str(bad)}, "steps": 1,
                                   "batch_size": 4}))
    assert main(["train", "--config", str(cfg), "-q", "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}{message}" in err, err
    assert "pickle=" not in err


def test_a_bad_classifier_file_is_one_line_naming_it(tmp_path, monkeypatch):
    """``load_classifier`` read with ``torch.load`` alone: a truncated or foreign file was a
    traceback (torch's ``PytorchStreamReader failed ...``, its page of advice on pickled
    objects, ``KeyError: 'hparams'``); ``scripts/bench_images.py`` ended there on a damaged
    ``feature_classifier.pt``."""
    from molscore.models.classifier import ImageClassifier

    good = tmp_path / "good.pt"
    save_classifier(ImageClassifier(feature_dim=4), good, {"levels": 17})
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:300])
    torch.save({"hparams": {"feature_dim": 4}, "state_dict": {}, "info": {"run": tmp_path}},
               tmp_path / "pickled.pt")
    torch.save({"model": {}, "meta": {"task": "images"}}, tmp_path / "model.pt")
    torch.save({"hparams": {"feature_dim": 8},
                "state_dict": ImageClassifier(feature_dim=4).state_dict()}, tmp_path / "other.pt")
    for name, message in [
            ("cut.pt", "cannot read classifier {}: truncated (a zip archive without its end"),
            ("pickled.pt", "cannot read classifier {}: it holds pickled objects"),
            ("model.pt", "{} is not an image classifier file (it needs 'hparams' and "
                         "'state_dict'"),
            ("other.pt", "{}: the weights do not fit the classifier its hparams describe "
                         "(size mismatch for body.11.weight")]:
        with pytest.raises(ValueError) as err:
            load_classifier(tmp_path / name)
        assert str(err.value).startswith(message.format(tmp_path / name)), err.value
        assert "\n" not in str(err.value)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    monkeypatch.setattr("sys.argv", ["bench_images.py"])
    from bench_images import feature_classifier

    run = tmp_path / "run"
    run.mkdir()
    (run / "feature_classifier.pt").write_bytes(b"")
    with pytest.raises(SystemExit) as ended:
        feature_classifier(run, None, "cpu")
    assert ended.value.code == (f"bench_images.py: cannot read classifier "
                                f"{run / 'feature_classifier.pt'}: an empty file (0 bytes); "
                                "delete it to train the classifier again")
