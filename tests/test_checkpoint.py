"""Checkpoints: weights_only round trip, EMA loading, NaN rejection, atomic writes, RNG state."""
from __future__ import annotations

import os
import random
import re

import numpy as np
import pytest
import torch

from _train_tasks import TASK, base_config
from molscore.checkpoint import (capture_rng_state, export_model, load_checkpoint,
                                 load_checkpoint_model, restore_rng_state, save_atomic)
from molscore.spaces import DenseSpace
from molscore.tasks import TASKS
from molscore.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(base_config(steps=8), out, device="cpu", progress=False)
    return out


def test_checkpoint_loads_with_weights_only_and_holds_everything(trained):
    ckpt = torch.load(trained / "checkpoint.pt", weights_only=True)
    assert {"model", "ema", "optimizer", "scheduler", "rng", "data_state", "meta", "config",
            "step"} <= set(ckpt)
    assert ckpt["step"] == 8 and ckpt["meta"]["task"] == TASK
    assert ckpt["config"]["batch_size"] == 8
    assert not (trained / "checkpoint.pt.tmp").exists()


def test_load_checkpoint_model_uses_ema_weights(trained):
    ckpt = load_checkpoint(trained / "checkpoint.pt")
    model, meta = load_checkpoint_model(trained / "checkpoint.pt")
    assert meta["task"] == TASK and not model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ckpt["ema"]["shadow"][k])
    raw, _ = load_checkpoint_model(trained / "checkpoint.pt", ema=False)
    diff = [(raw.state_dict()[k] - v).abs().max() for k, v in ckpt["ema"]["shadow"].items()]
    assert max(diff) > 0  # EMA (decay 0.9) lags the raw weights
    x = torch.randn(5, 2)
    score = model(x, torch.full((5,), 0.5), DenseSpace(x.shape))
    assert score.shape == (5, 2) and torch.isfinite(score).all()


def test_export_model_is_small_and_loadable(trained, tmp_path):
    path = export_model(trained / "checkpoint.pt", tmp_path / "weights.pt")
    exported = torch.load(path, weights_only=True)
    assert set(exported) == {"format", "model", "meta"}
    model, _ = load_checkpoint_model(path)
    ref, _ = load_checkpoint_model(trained / "checkpoint.pt")
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)


def test_a_model_of_another_task_is_refused_before_it_is_built(trained, monkeypatch):
    """``task=``: the task the caller can use. ``generate --model`` of an image or toy model
    built it and ran it on molecular graphs: a traceback from inside the network."""
    import molscore.checkpoint as checkpoint

    def no_build(name):
        raise AssertionError(f"built a {name} model")

    monkeypatch.setattr(checkpoint, "get_task_module", no_build)
    with pytest.raises(ValueError, match=re.escape(
            f"{trained / 'checkpoint.pt'} is a model of task {TASK!r}, not 'conformers'")):
        load_checkpoint_model(trained / "checkpoint.pt", task="conformers")
    monkeypatch.undo()
    model, meta = load_checkpoint_model(trained / "checkpoint.pt", task=TASK)
    assert meta["task"] == TASK and not model.training


def test_weights_of_another_architecture_name_a_few_keys(trained, tmp_path):
    """Weights with layers the meta's model lacks: the message listed every key of them on
    one line (a thousand characters for one PaiNN layer); now the first three and a count."""
    ckpt = torch.load(trained / "checkpoint.pt", weights_only=True)
    extra = {f"net.extra.{i}.weight": torch.zeros(2) for i in range(5)}
    torch.save({"model": {**ckpt["model"], **extra}, "meta": ckpt["meta"]}, tmp_path / "m.pt")
    with pytest.raises(ValueError) as err:
        load_checkpoint_model(tmp_path / "m.pt")
    assert str(err.value) == (
        f"{tmp_path / 'm.pt'}: the weights do not fit the model its meta describes (Unexpected "
        'key(s) in state_dict: "net.extra.0.weight", "net.extra.1.weight", "net.extra.2.weight" '
        "and 2 more)")


def test_nan_weights_are_rejected(trained, tmp_path):
    ckpt = torch.load(trained / "checkpoint.pt", weights_only=True)
    name = next(iter(ckpt["ema"]["shadow"]))
    ckpt["ema"]["shadow"][name][...] = float("nan")
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=f"NaN/inf.*{name}"):
        load_checkpoint_model(tmp_path / "bad.pt")
    load_checkpoint_model(tmp_path / "bad.pt", ema=False)  # the raw weights are fine


def test_missing_and_foreign_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a molscore checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read checkpoint .*junk.pt: not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "run").mkdir()   # was "checkpoint not found: run", with the folder right there
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"{tmp_path / 'run'} is a folder, not a checkpoint file (a training run's "
            f"checkpoint is {tmp_path / 'run' / 'checkpoint.pt'})")):
        load_checkpoint(tmp_path / "run")


def test_damaged_file_is_refused_not_loaded(tmp_path):
    """torch.load reads a checkpoint whose tensor bytes were overwritten without complaint;
    load_checkpoint checks the archive's checksums first."""
    torch.save({"model": {"w": torch.arange(4096.0)}, "meta": {"task": TASK}}, tmp_path / "ok.pt")
    data = bytearray((tmp_path / "ok.pt").read_bytes())
    start = data.find(torch.arange(4096.0).numpy().tobytes()[:64]) + 1024   # inside the tensor
    data[start:start + 64] = bytes(64)
    (tmp_path / "bad.pt").write_bytes(bytes(data))
    assert torch.load(tmp_path / "bad.pt", weights_only=True)["model"]["w"][256:272].eq(0).any()
    with pytest.raises(ValueError, match=r"cannot read checkpoint .*bad.pt: damaged \(the checksum"):
        load_checkpoint(tmp_path / "bad.pt")
    assert load_checkpoint(tmp_path / "ok.pt")["model"]["w"].equal(torch.arange(4096.0))


def test_truncated_and_empty_files_say_so(trained, tmp_path):
    """A checkpoint cut short (a copy or a write that stopped) and a 0-byte file were both
    "not a PyTorch checkpoint (zip) file", as if another kind of file had been given."""
    data = (trained / "checkpoint.pt").read_bytes()
    for name, content, reason in [
            ("half.pt", data[:len(data) // 2], "truncated (a zip archive without its end"),
            ("cut.pt", data[:-10], "truncated (a zip archive without its end"),
            ("empty.pt", b"", "an empty file (0 bytes)")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=re.escape(
                f"cannot read checkpoint {tmp_path / name}: {reason}")):
            load_checkpoint(tmp_path / name)


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"model": {}, "meta": {"task": TASK}, "evil": object()}, tmp_path / "obj.pt")
    with pytest.raises(ValueError, match="cannot read checkpoint .*obj.pt: it holds pickled objects"):
        load_checkpoint(tmp_path / "obj.pt")


def test_save_atomic_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    save_atomic({"a": 1}, path)
    save_atomic({"a": 2}, path)
    assert torch.load(path, weights_only=True) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]


def _spy_on_writes(monkeypatch) -> list[tuple[str, str]]:
    """The ``("fsync", path)`` and ``("replace", target)`` calls of :mod:`molscore.checkpoint`
    from now on, in order (each still done)."""
    import molscore.checkpoint as checkpoint

    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: (
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), fsync(fd))[1])
    monkeypatch.setattr(checkpoint.os, "replace", lambda a, b: (
        events.append(("replace", str(b))), replace(a, b))[1])
    return events


def test_save_atomic_syncs_the_data_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    """Without an fsync before ``os.replace`` a machine crash can leave an empty file in place
    of the last good checkpoint (the rename reaches the disk before the data); without one of
    the folder after it, the old file can come back after the records were cut to the new."""
    events = _spy_on_writes(monkeypatch)
    save_atomic({"a": 1}, tmp_path / "c.pt")
    assert events == [("fsync", str(tmp_path / "c.pt.tmp")), ("replace", str(tmp_path / "c.pt")),
                      ("fsync", str(tmp_path))]
    assert torch.load(tmp_path / "c.pt", weights_only=True) == {"a": 1}


def test_the_image_classifier_file_is_written_as_checkpoints_are(tmp_path, monkeypatch):
    """``save_classifier`` renamed its own temporary file without an fsync (a machine crash
    could leave an empty file in place of the last good one), and left it behind when the
    write failed."""
    from molscore.models.classifier import ImageClassifier, load_classifier, save_classifier

    clf = ImageClassifier(feature_dim=4)
    save_classifier(clf, tmp_path / "clf.pt", {"levels": 17})
    events = _spy_on_writes(monkeypatch)
    save_classifier(clf, tmp_path / "clf.pt", {"levels": 5})
    assert events == [("fsync", str(tmp_path / "clf.pt.tmp")),
                      ("replace", str(tmp_path / "clf.pt")), ("fsync", str(tmp_path))]
    monkeypatch.setattr(torch, "save", lambda obj, fh: (fh.write(b"PK"), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        save_classifier(clf, tmp_path / "clf.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf.pt"]
    assert load_classifier(tmp_path / "clf.pt")[1] == {"levels": 5}


def test_rng_state_round_trip_through_weights_only(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    state = capture_rng_state()
    save_atomic(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random(),
                random.gauss(0, 1))
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random(),
           random.gauss(0, 1))
    torch.testing.assert_close(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2:] == expected[2:]


def _toy_file() -> dict:
    """A toy trainer checkpoint's layout (model, EMA, meta) with a tiny random MLP."""
    from molscore.data.toy_task import build_model, make_meta

    meta = make_meta("checkerboard", {"name": "ve"}, net={"hidden": 8, "depth": 1})
    state = build_model(meta).state_dict()
    return {"format": 1, "model": state, "ema": {"decay": 0.9, "num_updates": 1, "shadow": state},
            "meta": meta}


def _image_file() -> dict:
    """An exported image model file (no EMA) with a tiny random U-Net."""
    from molscore.data.image_task import build_model

    meta = {"task": "images", "shape": [1, 8, 8], "levels": 17, "num_classes": None,
            "net": {"channels": 8, "ch_mult": [1, 2], "num_res_blocks": 1},
            "sde": {"name": "vp"}, "parameterisation": "eps"}
    return {"format": 1, "model": build_model(meta).state_dict(), "meta": meta}


def _conformer_file() -> dict:
    """An exported conformer model file with a tiny random PaiNN."""
    from molscore.chem.featurize import ATOM_FEAT_DIM, EDGE_FEAT_DIM
    from molscore.chem.task import build_model
    from molscore.models.equivariant import build_backbone

    net = build_backbone("painn", ATOM_FEAT_DIM, EDGE_FEAT_DIM, hidden_scalar=8, hidden_vector=2,
                         num_layers=1, cutoff=5.0, num_rbf=4, time_dim=4)
    meta = {"task": "conformers", "backbone": net.config(), "sde": {"name": "ve"},
            "parameterisation": "eps", "sigma_data": 1.0, "coord_scale": 1.0}
    return {"format": 1, "model": build_model(meta).state_dict(), "meta": meta}


def _ca_file() -> dict:
    """An exported C-alpha trace model file with a tiny random chain-graph PaiNN."""
    from molscore.data.ca_task import build_model

    meta = {"task": "ca_traces", "net": {"backbone": "painn", "k": 4, "max_offset": 1,
                                         "num_freqs": 2, "hidden_scalar": 8, "hidden_vector": 2,
                                         "num_layers": 1, "num_rbf": 4, "rbf_max": 2.0},
            "sde": {"name": "ve"}, "parameterisation": "eps", "coord_scale": 10.0,
            "crop_length": 8}
    return {"format": 1, "model": build_model(meta).state_dict(), "meta": meta}


def _command(kind: str, path, out) -> list[str]:
    """The command that loads model file ``path`` of a ``kind`` (writing under ``out``)."""
    return {"toy": ["toy", "sample", "--score", str(path), "-n", "2", "--steps", "2",
                    "-o", str(out / "s.npy")],
            "images": ["sample", "--checkpoint", str(path), "-n", "1", "--steps", "1",
                       "--no-progress", "-o", str(out / "s.png")],
            "ca_traces": ["sample", "--checkpoint", str(path), "-n", "1", "--steps", "1",
                          "--no-progress", "-o", str(out / "s.pdb")],
            "conformers": ["generate", "CCO", "--model", str(path), "--steps", "2",
                           "--no-progress", "-o", str(out / "s.sdf")]}[kind]


_NOT_OURS = "{path} is not a molscore checkpoint ({why})"
_NO_MODEL = "{path}: cannot build the model its meta describes ({why})"
_BAD_FILES = [
    # old: TypeError: unhashable type: 'list' (tasks.get_task_module)
    ("toy", ("meta", "task"), ["toy"], _NOT_OURS, "its meta's 'task' must be a task name, got a list"),
    ("conformers", ("meta", "task"), ["conformers"], _NOT_OURS,
     "its meta's 'task' must be a task name, got a list"),
    # old: the EMA weights were used and 'model' never looked at (exit 0)
    ("toy", ("model",), [1.0], _NOT_OURS,
     "its 'model' must map parameter names to tensors, got a list"),
    # old: AttributeError: 'list' object has no attribute 'items'
    ("images", ("model",), [1.0], _NOT_OURS,
     "its 'model' must map parameter names to tensors, got a list"),
    ("toy", ("ema", "shadow"), [1.0], _NOT_OURS,
     "its 'ema.shadow' must map parameter names to tensors, got a list"),
    ("toy", ("ema", "shadow", "net.extra"), "w", _NOT_OURS,
     "its 'ema.shadow' must map parameter names to tensors, got 'net.extra': 'w'"),
    # old: a non-dict 'ema' was taken for none: the raw weights were sampled (exit 0)
    ("toy", ("ema",), [1.0], _NOT_OURS, "its 'ema' must be a dict with a 'shadow', got a list"),
    # old: "checkpoint meta has no 'task'"
    ("toy", ("meta",), ["toy"], _NOT_OURS, "its 'meta' must be a dict, got a list"),
    # old: read as format 1 (exit 0): a later layout would be taken for this one
    ("toy", ("format",), 2, "{path}: {why}",
     "checkpoint format 2, but this molscore reads format 1 (was it written by a newer molscore?)"),
    ("conformers", ("format",), "1", "{path}: {why}",
     "checkpoint format '1', but this molscore reads format 1 (was it written by a newer "
     "molscore?)"),
    # old: "unknown task 'nope'; ..." without the file's name
    ("toy", ("meta", "task"), "nope", "{path}: {why}",
     f"unknown task 'nope'; choose from {', '.join(TASKS)}"),
    # old: KeyError / TypeError tracebacks in molscore toy after the model was built
    ("toy", ("meta", "density"), None, _NO_MODEL, "KeyError: 'density'"),
    ("toy", ("meta", "density_options"), [1], _NO_MODEL,
     "ValueError: meta 'density' must be a name and 'density_options' a dict, got "
     "'checkerboard' and a list"),
    # old: TypeError in to_levels, after sampling
    ("images", ("meta", "levels"), "17", _NO_MODEL,
     "ValueError: meta 'levels' must be an integer >= 2, got '17'"),
    # old: exit 0, "wrote 1 images (1x8x8, 0 levels)"
    ("images", ("meta", "levels"), 0, _NO_MODEL,
     "ValueError: meta 'levels' must be an integer >= 2, got 0"),
    # old: RuntimeError: Trying to create tensor with negative dimension -8
    ("images", ("meta", "shape"), [1, -8, 8], _NO_MODEL,
     "ValueError: meta 'shape' must be [C, H, W], positive integers, got [1, -8, 8]"),
    # old: conformers generated with the coordinates scaled by -1 (exit 0)
    ("conformers", ("meta", "coord_scale"), -1.0, _NO_MODEL,
     "ValueError: meta 'coord_scale' must be a positive number, got -1.0"),
    # old: traces of all-zero coordinates written (exit 0)
    ("ca_traces", ("meta", "coord_scale"), 0.0, _NO_MODEL,
     "ValueError: meta 'coord_scale' must be a positive number, got 0.0"),
    # old: ValueError: invalid literal for int() (the default --length), after loading
    ("ca_traces", ("meta", "crop_length"), "abc", _NO_MODEL,
     "ValueError: meta 'crop_length' must be an integer >= 1, got 'abc'"),
]


@pytest.mark.parametrize("kind, where, value, message, why", _BAD_FILES,
                         ids=[f"{c[0]}:{'.'.join(c[1])}={c[2]!r}" for c in _BAD_FILES])
def test_malformed_model_files_are_one_line_exit_2(tmp_path, capsys, kind, where, value,
                                                   message, why):
    """A model file of the right layout with one value of the wrong kind (None: deleted)
    is refused by the command that loads it, in one line with exit status 2; it was a
    traceback, or a run that went on with other weights or a meaningless meta value."""
    from molscore.cli import main

    ckpt = {"toy": _toy_file, "images": _image_file, "conformers": _conformer_file,
            "ca_traces": _ca_file}[kind]()
    holder = ckpt
    for key in where[:-1]:
        holder[key] = holder = dict(holder[key])    # a copy: the EMA shares the model's dict
    if value is None:
        del holder[where[-1]]
    else:
        holder[where[-1]] = value
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    assert main(_command(kind, path, tmp_path)) == 2
    err = capsys.readouterr().err
    command = "toy" if kind == "toy" else _command(kind, path, tmp_path)[0]
    expected = message.format(path=path, why=why)
    if kind == "toy":
        expected = f"--score must be 'exact' or a toy checkpoint: {expected}"
    assert err == f"molscore {command}: error: {expected}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]   # nothing written


def test_malformed_init_weights_are_one_line_exit_2(tmp_path, capsys):
    """``molscore train --init`` of a file whose EMA shadow is not a mapping: it was
    ``AttributeError: 'list' object has no attribute 'items'`` (check_finite)."""
    import yaml

    from molscore.cli import main

    ckpt = _toy_file()
    ckpt["ema"] = {**ckpt["ema"], "shadow": [1.0]}
    torch.save(ckpt, tmp_path / "bad.pt")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(base_config(steps=1)))
    assert main(["train", "-c", str(tmp_path / "cfg.yaml"), "--init", str(tmp_path / "bad.pt"),
                 "--quiet", "-o", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (
        f"molscore train: error: init: {tmp_path / 'bad.pt'} is not a molscore checkpoint "
        f"(its 'ema.shadow' must map parameter names to tensors, got a list)\n")
