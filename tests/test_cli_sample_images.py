"""`molscore sample` on a tiny image checkpoint: outputs, inpainting, guidance, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from molscore.checkpoint import CHECKPOINT_FORMAT, save_atomic
from molscore.cli import main
from molscore.data.image_task import build_task
from molscore.data.images import read_png, write_png

TINY = {"task": "images", "data": {"source": "digits", "holdout": 0.1},
        "model": {"channels": 8, "ch_mult": [1, 2], "num_res_blocks": 1},
        "sde": {"name": "vp"}}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    task = build_task(TINY)
    with torch.no_grad():  # a non-zero output layer, as after training
        task.model.net.out.weight.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_atomic({"format": CHECKPOINT_FORMAT, "model": task.model.state_dict(),
                 "meta": task.meta}, path)
    return path


def _run(capsys, *argv):
    rc = main(["sample", "--no-progress", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_output_suffixes_in_capitals(ckpt, tmp_path, capsys):
    """``-o grid.PNG`` was refused (and ``S.NPY``) while C-alpha traces took ``.PDB``: the
    suffix's case does not matter, and each file is of the kind its suffix names."""
    rc, _, err = _run(capsys, "--checkpoint", ckpt, "-n", 2, "--sampler", "em", "--steps", 2,
                      "-o", tmp_path / "GRID.PNG")
    assert rc == 0, err
    assert read_png(tmp_path / "GRID.PNG").shape[0] == 1
    rc, _, err = _run(capsys, "--checkpoint", ckpt, "-n", 2, "--sampler", "em", "--steps", 2,
                      "-o", tmp_path / "S.NPY")
    assert rc == 0, err
    assert np.load(tmp_path / "S.NPY").shape == (2, 1, 8, 8)


def test_progress_bar_is_shown_by_default(ckpt, tmp_path, capsys):
    """A long sampling run showed nothing unless --progress was given."""
    assert main(["sample", "--checkpoint", str(ckpt), "-n", "2", "--sampler", "em", "--steps",
                 "3", "-o", str(tmp_path / "s.npy")]) == 0
    assert "3/3" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(ckpt), "-n", "2", "--sampler", "em", "--steps",
                 "3", "--no-progress", "-o", str(tmp_path / "s.npy")]) == 0
    assert capsys.readouterr().err == ""


def test_png_grid_and_npy(ckpt, tmp_path, capsys):
    rc, out, err = _run(capsys, "--checkpoint", ckpt, "-n", 5, "--sampler", "em", "--steps", 3,
                        "-o", tmp_path / "grid.png")
    assert rc == 0, err
    assert "wrote 5 images" in out
    grid = read_png(tmp_path / "grid.png")
    # 3 columns x 2 rows of 8x8 tiles with 1-pixel padding, enlarged 8x
    assert grid.shape == (1, 8 * (2 * 9 + 1), 8 * (3 * 9 + 1))
    rc, _, err = _run(capsys, "--checkpoint", ckpt, "-n", 4, "--sampler", "ode", "--steps", 2,
                      "--label", 3, "--guidance", 1.5, "-o", tmp_path / "s.npy")
    assert rc == 0, err
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape == (4, 1, 8, 8) and arr.dtype == np.uint8 and arr.max() <= 16


def test_inpainting_cli_keeps_known_pixels_and_skips_bad_pairs(ckpt, tmp_path, capsys):
    img = torch.randint(0, 256, (1, 8, 8), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8)
    mask = torch.zeros(1, 8, 8, dtype=torch.uint8)
    mask[:, :4] = 255  # top half known
    write_png(tmp_path / "img.png", img)
    write_png(tmp_path / "mask.png", mask)
    write_png(tmp_path / "big.png", torch.zeros(1, 9, 9, dtype=torch.uint8))
    rc, _, err = _run(capsys, "--checkpoint", ckpt, "-n", 3, "--steps", 3, "--inpaint",
                      tmp_path / "img.png", tmp_path / "big.png", "--mask", tmp_path / "mask.png",
                      "-o", tmp_path / "fill.npy")
    assert rc == 0
    assert err.count("\n") == 1 and "big.png" in err and "expected 1x8x8" in err
    arr = np.load(tmp_path / "fill.npy")
    assert arr.shape == (3, 1, 8, 8)  # the bad image was skipped, the good one processed
    known = (img[:, :4].double() * 16 / 255).round().long().numpy()   # nearest of 17 levels
    assert (arr[:, :, :4] == known[None]).all()


def test_bad_mask_exits_2(ckpt, tmp_path, capsys):
    write_png(tmp_path / "img.png", torch.zeros(1, 8, 8, dtype=torch.uint8))
    write_png(tmp_path / "mask.png", torch.zeros(1, 4, 4, dtype=torch.uint8))
    (tmp_path / "junk.png").write_text("not an image")
    for mask in ("mask.png", "junk.png"):
        rc, _, err = _run(capsys, "--checkpoint", ckpt, "-n", 2, "--steps", 2, "--inpaint",
                          tmp_path / "img.png", "--mask", tmp_path / mask, "-o",
                          tmp_path / "o.png")
        assert rc == 2
        assert err.strip().splitlines()[-1].startswith("molscore sample: error:")
        assert "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_grey_mask_exits_2_instead_of_a_guessed_side(ckpt, tmp_path, capsys):
    """A mask pixel between black and white was taken as known from 128 up, silently."""
    write_png(tmp_path / "img.png", torch.zeros(1, 8, 8, dtype=torch.uint8))
    mask = torch.zeros(1, 8, 8, dtype=torch.uint8)
    mask[:, :4] = 255
    mask[:, 4] = 100  # an anti-aliased edge
    write_png(tmp_path / "mask.png", mask)
    rc, _, err = _run(capsys, "--checkpoint", ckpt, "-n", 2, "--steps", 2, "--inpaint",
                      tmp_path / "img.png", "--mask", tmp_path / "mask.png", "-o",
                      tmp_path / "o.npy")
    assert rc == 2 and "Traceback" not in err
    assert "black (0, to generate) and white (255, known) only; 8 pixels are not, e.g. 100" in err
    assert not (tmp_path / "o.npy").exists()


def test_transparent_mask_exits_2_instead_of_dropping_its_alpha(ckpt, tmp_path, capsys):
    """A white mask whose known region was drawn as opacity read as all known (the alpha
    channel was dropped): the samples were copies of the input."""
    from PIL import Image

    write_png(tmp_path / "img.png", torch.zeros(1, 8, 8, dtype=torch.uint8))
    la = np.full((8, 8, 2), 255, dtype=np.uint8)
    la[4:, :, 1] = 0  # bottom half transparent
    Image.fromarray(la, "LA").save(tmp_path / "mask.png")
    rgba = np.full((8, 8, 4), 255, dtype=np.uint8)  # opaque: a plain white mask
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    rc, _, err = _run(capsys, "--checkpoint", ckpt, "-n", 2, "--steps", 2, "--inpaint",
                      tmp_path / "img.png", "--mask", tmp_path / "mask.png", "-o",
                      tmp_path / "o.npy")
    assert rc == 2 and "mask.png: mask has transparent pixels" in err and "Traceback" not in err
    assert not (tmp_path / "o.npy").exists()
    rc, _, err = _run(capsys, "--checkpoint", ckpt, "-n", 2, "--steps", 2, "--inpaint",
                      tmp_path / "img.png", "--mask", tmp_path / "opaque.png", "-o",
                      tmp_path / "o.npy")
    assert rc == 0, err
    assert (np.load(tmp_path / "o.npy") == 0).all()


def test_diverged_sampling_exits_2_instead_of_writing_zeros(ckpt, tmp_path, capsys):
    """Finite weights whose scores overflow: the NaN samples were written as all-zero
    images (level 0) with exit 0."""
    from molscore.checkpoint import load_checkpoint

    ck = load_checkpoint(ckpt)
    state = dict(ck["model"])
    state["net.out.weight"] = state["net.out.weight"] * 1e37
    save_atomic({**ck, "model": state}, tmp_path / "huge.pt")
    rc, _, err = _run(capsys, "--checkpoint", tmp_path / "huge.pt", "-n", 2, "--steps", 20,
                      "--sampler", "em", "-o", tmp_path / "o.npy")
    assert rc == 2 and err.count("\n") == 1
    assert "sampler em produced non-finite values; try more --steps" in err
    assert not (tmp_path / "o.npy").exists()

@pytest.mark.parametrize("extra,message", [
    (["--label", "12"], "--label must be in 0..9, got 12"),
    (["--label", "10"], "--label must be in 0..9, got 10"),
    (["--label", "-1"], "--label must be in 0..9, got -1"),
    (["--guidance", "2"], "--guidance needs --label"),
    (["--inpaint", "x.png"], "--inpaint and --mask go together"),
    (["--length", "10"], "--length is for C-alpha"),
])
def test_bad_options_exit_2(ckpt, tmp_path, capsys, extra, message):
    rc, _, err = _run(capsys, "--checkpoint", ckpt, "-n", 2, "-o", tmp_path / "o.png", *extra)
    assert rc == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("weight", ["nan", "inf"])
def test_non_finite_guidance_exits_2(ckpt, tmp_path, capsys, weight):
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--checkpoint", str(ckpt), "-n", "2", "--steps", "2", "--label", "3",
              "--guidance", weight, "-o", str(tmp_path / "o.npy")])
    assert exc.value.code == 2
    assert "finite" in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


def test_unwritable_output_exits_2_before_sampling(ckpt, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "dir.png").mkdir()
    for out in (tmp_path / "file" / "o.npy", tmp_path / "dir.png"):
        rc, _, err = _run(capsys, "--checkpoint", ckpt, "-n", 2, "--steps", 2, "-o", out)
        assert rc == 2 and "cannot write" in err and err.count("\n") == 1, err



def test_output_that_is_a_folder_exits_2_before_sampling(ckpt, tmp_path, capsys, monkeypatch):
    """-o naming an existing folder was found only when the samples were written."""
    import molscore.data.image_task as image_task

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled")

    monkeypatch.setattr(image_task, "generate", no_sampling)
    (tmp_path / "grid.png").mkdir()
    rc, _, err = _run(capsys, "--checkpoint", ckpt, "-n", 2, "-o", tmp_path / "grid.png")
    assert rc == 2 and err.count("\n") == 1 and "grid.png: Is a directory" in err

def test_bad_output_and_checkpoint_exit_2(ckpt, tmp_path, capsys):
    rc, _, err = _run(capsys, "--checkpoint", ckpt, "-o", tmp_path / "o.txt")
    assert rc == 2 and ".png (grid) or .npy" in err
    rc, _, err = _run(capsys, "--checkpoint", tmp_path / "missing.pt", "-o", tmp_path / "o.png")
    assert rc == 2 and "not found" in err
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--checkpoint", str(ckpt), "--sampler", "nope", "-o", "x.png"])
    assert exc.value.code == 2



def test_checkpoint_whose_weights_do_not_fit_its_meta_exits_2(ckpt, tmp_path, capsys):
    """The model built from the meta did not take the weights: load_state_dict's (or
    build_model's KeyError) traceback."""
    from molscore.checkpoint import load_checkpoint

    ck = load_checkpoint(ckpt)
    wide = {**ck["meta"], "net": {**ck["meta"]["net"], "channels": 16}}
    save_atomic({**ck, "meta": wide}, tmp_path / "wide.pt")
    save_atomic({**ck, "meta": {k: v for k, v in ck["meta"].items() if k != "shape"}},
                tmp_path / "noshape.pt")
    for name, message in (("wide.pt", "the weights do not fit the model its meta describes "
                                      "(size mismatch for "),
                          ("noshape.pt", "cannot build the model its meta describes "
                                         "(KeyError: 'shape')")):
        rc, _, err = _run(capsys, "--checkpoint", tmp_path / name, "-n", 1, "--steps", 1,
                          "-o", tmp_path / "o.png")
        assert rc == 2 and err.count("\n") == 1 and message in err, err

def test_trainer_checkpoint_samples_with_ema(tmp_path, capsys):
    """End to end: D's trainer on the images task (2 steps), then `molscore sample`."""
    from molscore.train import train

    cfg = {**TINY, "batch_size": 8, "steps": 2, "val_every": 100, "ckpt_every": 100,
           "val_batches": 1, "ema": 0.9}
    summary = train(cfg, tmp_path / "run", device="cpu", progress=False)
    assert summary["steps"] == 2
    rc, out, err = _run(capsys, "--checkpoint", tmp_path / "run" / "checkpoint.pt", "-n", 2,
                        "--sampler", "ancestral", "--steps", 2, "-o", tmp_path / "s.npy")
    assert rc == 0, err
    assert np.load(tmp_path / "s.npy").shape == (2, 1, 8, 8)


def test_more_samples_than_memory_holds_is_a_usage_error(ckpt, tmp_path, capsys):
    """-n beyond the machine's memory ended in torch's allocator traceback."""
    rc, out, err = _run(capsys, "--checkpoint", ckpt, "-n", 2**50, "--steps", 2,
                        "-o", tmp_path / "s.npy")
    assert rc == 2 and out == ""
    assert err.startswith("molscore sample: error: out of memory (an allocation of ")
    assert err.strip().endswith("GiB); lower -n: the samples are drawn in one batch")
    assert len(err.splitlines()) == 1 and not (tmp_path / "s.npy").exists()


def test_model_without_label_dropout_refuses_what_needs_its_untrained_null_label(tmp_path, capsys):
    """With model.label_dropout 0 the null-label embedding never gets a gradient: sampling
    without --label, or with --guidance, silently used an untrained embedding."""
    torch.manual_seed(0)
    task = build_task({**TINY, "model": {**TINY["model"], "label_dropout": 0.0}})
    path = tmp_path / "nodrop.pt"
    save_atomic({"format": CHECKPOINT_FORMAT, "model": task.model.state_dict(),
                 "meta": task.meta}, path)
    for extra, message in (([], "give --label K (0..9)"),
                           (["--label", "3", "--guidance", "1"], "without --guidance")):
        rc, out, err = _run(capsys, "--checkpoint", path, "-n", 2, "--steps", 2,
                            "-o", tmp_path / "s.npy", *extra)
        assert rc == 2 and out == "" and err.count("\n") == 1, err
        assert "model.label_dropout 0" in err and message in err
        assert not (tmp_path / "s.npy").exists()
    rc, out, err = _run(capsys, "--checkpoint", path, "-n", 2, "--steps", 2, "--label", "3",
                        "-o", tmp_path / "s.npy")
    assert rc == 0, err
    assert np.load(tmp_path / "s.npy").shape == (2, 1, 8, 8)


def test_a_class_without_training_images_is_not_sampled(tmp_path, capsys):
    """Labels 0, 1 and 3 make a 4-class model whose class-2 embedding never gets a gradient:
    ``--label 2`` sampled from an untrained embedding, with exit status 0. Training now says so
    and records the class (``classes_without_images``); sampling or scoring it is refused."""
    from molscore.data.image_task import bits_per_dim_of

    labels = np.array([0, 1, 3] * 10)
    np.savez(tmp_path / "gap.npz", labels=labels,
             images=np.random.default_rng(0).integers(0, 256, (30, 8, 8), dtype=np.uint8))
    torch.manual_seed(0)
    task = build_task({**TINY, "data": {"source": str(tmp_path / "gap.npz"), "holdout": 0.0}})
    assert ("no training image has class label 2 (of 0..3): this model cannot sample such a class"
            in capsys.readouterr().err)
    assert task.meta["num_classes"] == 4 and task.meta["classes_without_images"] == [2]
    path = tmp_path / "gap.pt"
    save_atomic({"format": CHECKPOINT_FORMAT, "model": task.model.state_dict(), "meta": task.meta}, path)
    rc, out, err = _run(capsys, "--checkpoint", path, "-n", 2, "--steps", 2, "--label", 2,
                        "-o", tmp_path / "s.npy")
    assert (rc, out) == (2, "") and err.count("\n") == 1
    assert "--label 2: this model was trained on no image of class 2" in err
    assert not (tmp_path / "s.npy").exists()
    rc, _, err = _run(capsys, "--checkpoint", path, "-n", 2, "--steps", 2, "--label", 3,
                      "-o", tmp_path / "s.npy")
    assert rc == 0, err
    images = torch.from_numpy(np.load(tmp_path / "s.npy")).long()
    with pytest.raises(ValueError, match="class label 2: this model was trained on no image"):
        bits_per_dim_of(task.model.eval(), task.meta, images, labels=torch.tensor([3, 2]),
                        steps=2, method="euler")
    build_task(TINY)                     # every class has images: nothing said, nothing recorded
    assert "no training image" not in capsys.readouterr().err
