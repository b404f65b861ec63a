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


def test_save_atomic_syncs_the_data_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    """Without an fsync before ``os.replace`` a machine crash can leave an empty file in place
    of the last good checkpoint (the rename reaches the disk before the data); without one of
    the folder after it, the old file can come back after the records were cut to the new."""
    import molscore.checkpoint as checkpoint

    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: (
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), fsync(fd))[1])
    monkeypatch.setattr(checkpoint.os, "replace", lambda a, b: (
        events.append(("replace", str(b))), replace(a, b))[1])
    save_atomic({"a": 1}, tmp_path / "c.pt")
    assert events == [("fsync", str(tmp_path / "c.pt.tmp")), ("replace", str(tmp_path / "c.pt")),
                      ("fsync", str(tmp_path))]
    assert torch.load(tmp_path / "c.pt", weights_only=True) == {"a": 1}


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
