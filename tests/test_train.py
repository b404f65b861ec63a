"""Trainer: exact resume, EMA, LR schedule, data order, validation buckets, config errors."""
from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from _train_tasks import TASK, base_config
from molscore.ema import EMA
from molscore.errors import Terminated
from molscore.train import ConfigError, DataOrder, Trainer, lr_factor, resolve_config, train


def _records(path, kind):
    lines = (path / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _interrupted_run(out, exc: type[BaseException], at_step: int, device: str = "cpu",
                     cfg: dict | None = None, resume: bool = True):
    """Train ``cfg`` (default ``base_config()``) on ``device`` but raise ``exc`` when step
    ``at_step`` would start."""
    trainer = Trainer(cfg or base_config(), out, resume=resume, device=device, progress=False)
    step = trainer.train_step

    def dying_step(batch):
        if trainer.step == at_step - 1:
            raise exc("simulated interruption")
        return step(batch)

    trainer.train_step = dying_step
    with pytest.raises(exc):
        trainer.fit()


def _assert_identical(a, b, where: str) -> None:
    """Nested dicts/lists of tensors and numbers equal bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_resume_reproduces_uninterrupted_loss_curve(tmp_path, exc):
    """An interruption raised by code (not a signal, which stops between steps: see the next
    test) or a crash resumes from the last periodic checkpoint (ckpt_every=4) and drops the
    metrics logged after it."""
    resumed_from = 4
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(base_config(), straight, device="cpu", progress=False)
    _interrupted_run(split, exc, at_step=7)
    resumed = train(base_config(), split, device="cpu", progress=False)
    assert resumed["resumed_from"] == resumed_from and resumed["steps"] == 12

    a, b = _records(straight, "train"), _records(split, "train")
    assert [r["step"] for r in a] == list(range(1, 13)) == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-6, rel=0)
        assert ra["lr"] == pytest.approx(rb["lr"], rel=1e-12)
    va, vb = _records(straight, "val"), _records(split, "val")
    assert [r["step"] for r in va] == [4, 8, 12] == [r["step"] for r in vb]
    assert [r["val_loss"] for r in va] == pytest.approx([r["val_loss"] for r in vb], abs=1e-6)

    ca = torch.load(straight / "checkpoint.pt", weights_only=True)
    cb = torch.load(split / "checkpoint.pt", weights_only=True)
    for k, v in ca["model"].items():
        torch.testing.assert_close(v, cb["model"][k], rtol=0, atol=1e-6)
    for k, v in ca["ema"]["shadow"].items():
        torch.testing.assert_close(v, cb["ema"]["shadow"][k], rtol=0, atol=1e-6)
    assert ca["data_state"] == cb["data_state"] == {"seed": 3, "epoch": 2, "batch": 2,
                                                     "batches_per_epoch": 5}


def test_resume_with_data_workers_draws_their_randomness_as_the_uninterrupted_run(tmp_path):
    """Randomness drawn where the items are read (``num_workers: 2``): each worker's RNGs were
    seeded once, so a run resumed at step 4 drew other jitter from there on; they are seeded
    per batch from its step, and the resumed run equals the uninterrupted one bit for bit."""
    cfg = base_config(num_workers=2, data={"dim": 2, "n": 40, "jitter": 0.3})
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(cfg, straight, device="cpu", progress=False)
    _interrupted_run(split, RuntimeError, 7, cfg=cfg)
    assert train(cfg, split, device="cpu", progress=False)["resumed_from"] == 4
    untimed = [[{**r, "time_s": None} for r in _records(out, "train")] for out in (straight, split)]
    assert untimed[0] == untimed[1]
    ca = torch.load(straight / "checkpoint.pt", weights_only=True)
    cb = torch.load(split / "checkpoint.pt", weights_only=True)
    for part in ("model", "ema", "optimizer"):
        _assert_identical(ca[part], cb[part], part)


@pytest.mark.parametrize("sig, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_signal_mid_step_stops_after_the_step_and_resumes_exactly(tmp_path, sig, raised):
    """A real Ctrl-C (or SIGTERM, a scheduler's time limit) that lands mid-step (after the
    step drew its noise) lets the step finish and checkpoints it, so the resumed run matches
    the uninterrupted one bit for bit; a checkpoint written where the signal landed would
    hold RNG states already advanced by that step and a step count that misses it. A second
    signal stops at once, unsaved."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(base_config(), straight, device="cpu", progress=False)
    trainer = Trainer(base_config(), split, device="cpu", progress=False)
    loss_fn = trainer.loss_fn

    def interrupted_loss(*args, **kwargs):
        losses = loss_fn(*args, **kwargs)
        if trainer.step == 6:  # during step 7, after its t and noise were drawn
            os.kill(os.getpid(), sig)
        return losses

    trainer.loss_fn = interrupted_loss
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # as the shell set them
    with pytest.raises(raised):
        trainer.fit()
    assert {s: signal.getsignal(s) for s in handlers} == handlers           # restored
    resumed = train(base_config(), split, device="cpu", progress=False)
    assert resumed["resumed_from"] == 7 and resumed["steps"] == 12
    untimed = [[{**r, "time_s": None} for r in _records(out, "train")] for out in (straight, split)]
    assert untimed[0] == untimed[1]
    ca = torch.load(straight / "checkpoint.pt", weights_only=True)
    cb = torch.load(split / "checkpoint.pt", weights_only=True)
    for part in ("model", "ema", "optimizer", "scheduler", "rng", "data_state"):
        _assert_identical(ca[part], cb[part], part)

    twice = Trainer(base_config(), tmp_path / "twice", device="cpu", progress=False)
    loss_fn2 = twice.loss_fn

    def twice_interrupted(*args, **kwargs):
        if twice.step == 6:
            os.kill(os.getpid(), sig)
            os.kill(os.getpid(), sig)
        return loss_fn2(*args, **kwargs)

    twice.loss_fn = twice_interrupted
    with pytest.raises(raised):
        twice.fit()
    assert torch.load(tmp_path / "twice" / "checkpoint.pt", weights_only=True)["step"] == 4


def test_rerunning_a_finished_run_keeps_its_final_losses_in_the_summary(tmp_path):
    """A finished run run again (a job script relaunched) logs nothing; its summary.json was
    rewritten with final_loss and val_loss null. They are the run's last records now."""
    first = train(base_config(), tmp_path, device="cpu", progress=False)
    again = train(base_config(), tmp_path, device="cpu", progress=False)
    assert (again["resumed_from"], again["steps_this_run"]) == (12, 0)
    assert (again["final_loss"], again["val_loss"]) == (first["final_loss"], first["val_loss"])
    assert again["final_loss"] == _records(tmp_path, "train")[-1]["loss"]
    assert again["val_loss"] == _records(tmp_path, "val")[-1]["val_loss"]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert (saved["final_loss"], saved["val_loss"]) == (first["final_loss"], first["val_loss"])


def test_no_resume_starts_over(tmp_path):
    train(base_config(steps=4), tmp_path, device="cpu", progress=False)
    out = train(base_config(steps=4), tmp_path, resume=False, device="cpu", progress=False)
    assert out["resumed_from"] is None and out["steps_this_run"] == 4
    assert [r["step"] for r in _records(tmp_path, "train")] == [1, 2, 3, 4]


def test_a_second_run_in_a_folder_in_use_is_refused_and_changes_nothing(tmp_path):
    """Two runs in one output folder overwrote each other's checkpoint and records."""
    train(base_config(steps=2), tmp_path, device="cpu", progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    held = {}
    trainer_init = Trainer.__init__

    def second_run_meanwhile(self, *args, **kwargs):   # while the first run holds the folder
        with pytest.raises(ConfigError) as err:
            train(base_config(steps=4), tmp_path, resume=False, device="cpu", progress=False)
        held["message"] = str(err.value)
        held["files"] = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        trainer_init(self, *args, **kwargs)

    Trainer.__init__ = second_run_meanwhile
    try:
        train(base_config(steps=2), tmp_path, device="cpu", progress=False)
    finally:
        Trainer.__init__ = trainer_init
    assert held["message"] == (f"{tmp_path} is in use by another training run (it holds "
                               f"{tmp_path / '.lock'}); wait for it to end, or use another output dir")
    assert held["files"] == before
    train(base_config(steps=3), tmp_path, device="cpu", progress=False)   # free again


def test_a_run_started_over_that_crashes_before_its_first_checkpoint_is_not_resumed_from_the_old_one(tmp_path):
    """``resume=False`` (``--no-resume``) empties metrics.jsonl at once but kept the old run's
    checkpoint.pt until its own first one; crashed before that (step 2 of ckpt_every 4), the
    next run resumed the old run's step 8 under the new run's metrics. Now the old checkpoint
    goes with the old metrics, so the next run starts the new one again."""
    train(base_config(steps=8), tmp_path, device="cpu", progress=False)
    _interrupted_run(tmp_path, RuntimeError, 3, resume=False)
    assert not (tmp_path / "checkpoint.pt").exists()
    out = train(base_config(), tmp_path, device="cpu", progress=False)
    assert out["resumed_from"] is None and out["steps"] == 12
    assert [r["step"] for r in _records(tmp_path, "train")] == list(range(1, 13))


def test_training_reduces_validation_loss_and_logs_buckets(tmp_path):
    cfg = base_config(steps=150, val_every=150, log_every=50, ema=0.0,
                      optim={"lr": 1e-2, "schedule": "constant"})
    trainer = Trainer(cfg, tmp_path, device="cpu", progress=False)
    before = trainer.validate()
    summary = trainer.fit()
    (val,) = _records(tmp_path, "val")
    assert len(val["val_loss_bins"]) == 5 and len(val["t_bins"]) == 5
    assert val["t_bins"][0][0] == pytest.approx(trainer.sde.eps)
    assert val["t_bins"][-1][1] == pytest.approx(1.0)
    assert val["val_loss"] == pytest.approx(sum(val["val_loss_bins"]) / 5)
    assert summary["val_loss"] < 0.8 * before["val_loss"]
    # validation draws from a forked RNG: calling it twice gives the same numbers
    assert trainer.validate()["val_loss_bins"] == pytest.approx(val["val_loss_bins"], rel=1e-6)


@pytest.mark.parametrize("objective", ["ssm", "ssm-vr", "exact"])
def test_objectives_with_a_jacobian_trace_are_validated(tmp_path, objective):
    """Sliced and exact score matching differentiate the score with respect to x_t, in
    validation too: under ``torch.no_grad`` the first validation raised a RuntimeError
    traceback (no grad_fn) and the run ended without the step's checkpoint. The EMA weights
    still build no graph: a DSM validation loss holds none."""
    summary = train(base_config(objective={"name": objective}), tmp_path, device="cpu",
                    progress=False)
    val = _records(tmp_path, "val")
    assert [r["step"] for r in val] == [4, 8, 12] and summary["steps"] == 12
    assert all(math.isfinite(v) for r in val for v in r["val_loss_bins"])
    trainer = Trainer(base_config(), tmp_path / "dsm", device="cpu", progress=False)
    graphs, loss_fn = [], trainer.loss_fn

    def recording_loss(*args, **kwargs):
        losses = loss_fn(*args, **kwargs)
        graphs.append(losses.requires_grad)
        return losses

    trainer.loss_fn = recording_loss
    assert math.isfinite(trainer.validate()["val_loss"]) and graphs and not any(graphs)


def test_a_validation_loss_that_is_not_finite_is_said(tmp_path, capsys):
    """Training checks its own loss and gradient; a run whose EMA weights gave a NaN
    validation loss (``optim.lr: 2.5``) ended with exit status 0 and ``val_loss: NaN`` in the
    summary without a word. Now stderr says so."""
    trainer = Trainer(base_config(), tmp_path, device="cpu", progress=False)
    assert math.isfinite(trainer.validate()["val_loss"])
    assert "validation loss is not finite" not in capsys.readouterr().err
    loss_fn = trainer.loss_fn
    trainer.loss_fn = lambda *a, **k: loss_fn(*a, **k) * float("nan")
    val = trainer.validate()
    assert math.isnan(val["val_loss"])
    err = capsys.readouterr().err
    assert err.startswith("warning: validation loss is not finite at step 0 (bins nan, nan")
    assert err.endswith("the EMA weights have diverged or overflow; lower optim.lr\n")


def test_capped_validation_spreads_batches_over_the_whole_set(tmp_path):
    """16 validation items in batches of 2 (8 batches), capped at 3: the first, a middle and
    the last batch are scored, so every part of a concatenated validation set counts."""
    trainer = Trainer(base_config(batch_size=2, val_batches=3), tmp_path, device="cpu", progress=False)
    seen = []

    class Recording(torch.utils.data.Dataset):
        def __init__(self, base):
            self.base = base

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            seen.append(i)
            return self.base[i]

    trainer.task.val_set = Recording(trainer.task.val_set)
    trainer.validate()
    assert seen == [0, 1, 8, 9, 14, 15]


def test_grad_clip_bounds_the_update(tmp_path):
    cfg = base_config(steps=1, optim={"lr": 1.0, "grad_clip": 1e-3, "schedule": "constant"})
    trainer = Trainer(cfg, tmp_path, device="cpu", progress=False)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    batch = trainer.task.collate([trainer.task.train_set[i] for i in range(8)])
    trainer.train_step(batch)
    grads = torch.cat([p.grad.flatten() for p in trainer.model.parameters()])
    assert grads.norm() <= 1e-3 * (1 + 1e-5)
    # Adam normalises the step size, so check the clipped gradient drove a finite update
    moved = [(p - b).abs().max() for p, b in zip(trainer.model.parameters(), before)]
    assert all(torch.isfinite(m) for m in moved)


def test_lr_schedule_warmup_and_cosine():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine", min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(80, 100, 10, "constant") == 1.0


def test_ema_tracks_weights_with_warmup():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.99)
    with torch.no_grad():
        model.weight.fill_(1.0)
    d0 = ema.current_decay()
    assert d0 == pytest.approx(0.1)
    old = ema.shadow["weight"].clone()
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], d0 * old + (1 - d0) * 1.0)
    for _ in range(2000):
        ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], torch.ones(1, 2))
    assert ema.current_decay() == pytest.approx(0.99)


def test_ema_refuses_a_state_of_other_keys_or_shapes_and_keeps_its_own():
    """A shadow of another shape was broadcast into the model's by ``copy_`` without a word."""
    ema = EMA(torch.nn.Linear(2, 3), decay=0.9)
    before = {k: v.clone() for k, v in ema.shadow.items()}
    state = {"decay": 0.5, "num_updates": 7,
             "shadow": {"weight": torch.ones(1, 2), "bias": torch.ones(3)}}
    with pytest.raises(ValueError, match=r"^EMA state does not match the model: 'weight' has "
                                         r"shape \(1, 2\), the model's \(3, 2\)$"):
        ema.load_state_dict(state)
    state["shadow"] = {"renamed": torch.ones(3, 2), "bias": torch.ones(3)}
    with pytest.raises(ValueError, match=r"^EMA state does not match the model: missing keys "
                                         r"\['weight'\], unexpected keys \['renamed'\]$"):
        ema.load_state_dict(state)
    _assert_identical(ema.shadow, before, "shadow")
    assert (ema.decay, ema.num_updates) == (0.9, 0)


def test_data_order_is_deterministic_epoch_permutation_and_shards():
    order = DataOrder(10, batch_size=3, seed=5)
    assert order.batches_per_epoch == 3
    epoch0 = sum((order.batch(k) for k in range(3)), [])
    assert len(set(epoch0)) == 9 and set(epoch0) <= set(range(10))
    epoch1 = sum((order.batch(k) for k in range(3, 6)), [])
    assert epoch0 != epoch1
    assert DataOrder(10, 3, seed=5).batch(4) == order.batch(4)  # a pure function of the step
    r0, r1 = DataOrder(10, 2, 5, rank=0, world_size=2), DataOrder(10, 2, 5, rank=1, world_size=2)
    e0 = sum((r0.batch(k) for k in range(r0.batches_per_epoch)), [])
    e1 = sum((r1.batch(k) for k in range(r1.batches_per_epoch)), [])
    assert set(e0).isdisjoint(e1) and len(e0) + len(e1) == 8
    assert DataOrder(2, 8).batch(0) and len(DataOrder(2, 8).batch(0)) == 2


def test_epochs_set_the_number_of_steps(tmp_path):
    cfg = base_config(epochs=2)
    del cfg["steps"]
    out = train(cfg, tmp_path, device="cpu", progress=False)
    assert out["steps"] == 2 * (40 // 8)


@pytest.mark.parametrize("ema", [0, False, {"decay": 0}])
def test_ema_zero_keeps_no_average(tmp_path, ema):
    """``ema: 0`` / ``false`` (docs/training.md): the EMA weights are the trained ones."""
    train({**base_config(), "ema": ema}, tmp_path, device="cpu", progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["ema"]["decay"] == 0.0
    for k, v in ckpt["model"].items():
        assert torch.equal(v, ckpt["ema"]["shadow"][k]), k


@pytest.mark.parametrize("off", [0, False, None])
def test_grad_clip_off_values(off):
    assert resolve_config({**base_config(), "optim": {"grad_clip": off}})["optim"]["grad_clip"] is None
    assert resolve_config({**base_config(), "optim": {"grad_clip": 0.5}})["optim"]["grad_clip"] == 0.5


def test_steps_win_over_epochs(tmp_path):
    out = train(base_config(steps=3, epochs=2), tmp_path, device="cpu", progress=False)
    assert out["steps"] == 3


@pytest.mark.parametrize("bad, message", [
    ({"task": None}, "task"),
    ({"steps": None}, "'steps' or 'epochs'"),
    ({"batch_size": 0}, "batch_size"),
    ({"optim": {"schedule": "linear"}}, "schedule"),
    ({"ema": 1.5}, "ema.decay"),
    ({"objective": "nope"}, "unknown objective"),
    ({"optim": {"lr": "fast"}}, "optim.lr must be a number"),
    ({"optim": {"lr": 0}}, "optim.lr must be positive"),
    ({"optim": {"min_lr_ratio": 1.5}}, r"optim.min_lr_ratio must be in \[0, 1\], got 1.5"),
    ({"optim": {"min_lr_ratio": -0.1}}, "optim.min_lr_ratio must be a finite number >= 0"),
    ({"optim": {"grad_clip": -1}}, "optim.grad_clip"),
    ({"optim": {"betas": [0.9]}}, "optim.betas"),
    ({"ema": "slow"}, "'ema' must be a mapping"),
    ({"num_workers": -1}, "'num_workers' must be a non-negative integer"),
    ({"num_workers": "two"}, "'num_workers' must be a non-negative integer"),
    ({"seed": "abc"}, "'seed' must be an integer"),
    ({"seed": 10 ** 14}, r"'seed' must be an integer 0..4294967295, got 100000000000000"),
    ({"seed": -1}, r"'seed' must be an integer 0..4294967295, got -1"),
    ({"batch_size": True}, "batch_size"),
    ({"optim": {"betas": [0.9, 1.5]}}, r"optim.betas must be in \[0, 1\)"),
    ({"objective": {"name": "dsm", "weighting": "nope"}}, "objective.weighting must be one of"),
    ({"objective": {"name": "dsm", "n_proj": 2}}, "objective 'dsm' takes no key 'n_proj'"),
    ({"objective": {"name": "ssm", "n_proj": 0}}, "objective.n_proj must be a positive integer, "
                                                  "got 0"),
    ({"objective": {"name": "ssm-vr", "n_proj": "two"}}, "objective.n_proj must be a positive"),
    ({"objective": {"name": "ssm", "projection": "sphere"}},
     "objective.projection must be one of rademacher, gaussian, got 'sphere'"),
    ({"objective": {"name": "ssm", "variance_reduced": 3}},
     "objective.variance_reduced must be true or false, got 3"),
    ({"data": [1, 2]}, "'data' must be a mapping"),
    ({"init": 5}, "'init' must be the path of a checkpoint or model file, got 5"),
    # a key the trainer does not read was ignored: lr outside optim trained at the default lr
    ({"lr": 0.1}, "config has no key 'lr'; choose from batch_size, ckpt_every, data, "),
    ({"optim": {"learning_rate": 0.1}}, "optim has no key 'learning_rate'; choose from betas, "
                                        "grad_clip, lr, min_lr_ratio, schedule, warmup, weight_decay$"),
    ({"ema": {"decay": 0.9, "rate": 0.5}}, "ema has no key 'rate'; choose from decay$"),
    # warmup counts steps: 2.5 was taken as 2 without a word
    ({"optim": {"warmup": 2.5}}, r"optim.warmup must be a non-negative integer \(steps\), got 2.5"),
    ({"optim": {"warmup": -1}}, r"optim.warmup must be a non-negative integer \(steps\), got -1"),
    # bool("false") is True: a DDP run looked for unused parameters when told not to
    ({"ddp_find_unused": "false"}, "'ddp_find_unused' must be true or false, got 'false'$"),
    ({"ddp_find_unused": 0}, "'ddp_find_unused' must be true or false, got 0$"),
    # a list was a TypeError traceback (unhashable)
    ({"objective": {"name": ["dsm"]}}, r"unknown objective \['dsm'\]; choose from dsm"),
])
def test_bad_configs_raise_config_error(bad, message):
    cfg = base_config(**bad)
    if cfg["task"] is None:
        del cfg["task"]
    with pytest.raises(ConfigError, match=message):
        resolve_config(cfg)


def test_unknown_task_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown task"):
        Trainer(base_config(task="nope"), tmp_path, device="cpu")


def test_resume_with_other_task_refused(tmp_path):
    train(base_config(steps=2), tmp_path, device="cpu", progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    ckpt["meta"]["task"] = "images"
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match="trained for task"):
        Trainer(base_config(), tmp_path, device="cpu")


def test_empty_training_set_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"the training set is empty \(data: \{'dim': 2, 'n': 0\}\)"):
        Trainer(base_config(data={"dim": 2, "n": 0}), tmp_path, device="cpu")


def test_resume_refuses_other_settings_but_not_a_longer_run(tmp_path):
    """The restored optimiser would keep the checkpoint's learning rate whatever the config
    said, and another batch size or data changes the data order: such a resume is refused,
    naming the keys; a longer run with other logging resumes."""
    train(base_config(steps=2), tmp_path, device="cpu", progress=False)
    other = base_config(steps=2)
    other["optim"] = {**other.get("optim", {}), "lr": 0.123}
    other["batch_size"] = 3
    with pytest.raises(ConfigError, match=r"another config \(batch_size: 8 -> 3; optim.lr: .* -> 0.123\)"):
        Trainer(other, tmp_path, device="cpu")
    longer = base_config(steps=4, log_every=1, ckpt_every=1, val_every=1)
    out = train(longer, tmp_path, device="cpu", progress=False)
    assert out["resumed_from"] == 2 and out["steps"] == 4


def test_init_starts_from_other_weights_but_resume_wins(tmp_path):
    """``init`` copies the (EMA) weights of another run into a fresh run; the optimiser,
    step count and data order start over. A run that has its own checkpoint resumes it."""
    first = tmp_path / "first"
    train(base_config(steps=4), first, device="cpu", progress=False)
    ema = torch.load(first / "checkpoint.pt", weights_only=True)["ema"]["shadow"]
    cfg = base_config(steps=3, init=str(first / "checkpoint.pt"))
    trainer = Trainer(cfg, tmp_path / "tuned", device="cpu", progress=False)
    assert trainer.step == 0 and trainer.meta["init"] == str(first / "checkpoint.pt")
    for k, v in trainer.model.state_dict().items():
        torch.testing.assert_close(v, ema[k], rtol=0, atol=0)
    trainer.fit()
    trainer.close()
    tuned = torch.load(tmp_path / "tuned" / "checkpoint.pt", weights_only=True)
    assert tuned["meta"]["init"] == str(first / "checkpoint.pt")
    again = Trainer(cfg, tmp_path / "tuned", device="cpu", progress=False)
    assert again.resumed_from == 3
    for k, v in again.model.state_dict().items():
        torch.testing.assert_close(v, tuned["model"][k], rtol=0, atol=0)


def test_a_resumed_run_keeps_the_init_its_weights_came_from_in_meta(tmp_path):
    """A resumed run ignores the config's ``init`` (it keeps its own weights), but its meta
    named the new ``init`` (or none, when the config dropped it): checkpoints and exported
    model files claimed weights from a file they never saw."""
    for name in ("a", "b"):
        train(base_config(steps=2), tmp_path / name, device="cpu", progress=False)
    a, b = str(tmp_path / "a" / "checkpoint.pt"), str(tmp_path / "b" / "checkpoint.pt")
    train(base_config(steps=2, init=a), tmp_path / "tuned", device="cpu", progress=False)
    for steps, init in ((4, b), (6, None)):
        out = train(base_config(steps=steps, init=init), tmp_path / "tuned", device="cpu",
                    progress=False)
        assert out["resumed_from"] == steps - 2
        assert torch.load(tmp_path / "tuned" / "checkpoint.pt", weights_only=True)["meta"]["init"] == a


def test_init_refuses_other_tasks_and_missing_files(tmp_path):
    train(base_config(steps=2), tmp_path / "a", device="cpu", progress=False)
    ckpt = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    ckpt["meta"]["task"] = "images"
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="init: .* trained for task 'images'"):
        Trainer(base_config(init=str(tmp_path / "other.pt")), tmp_path / "b", device="cpu")
    with pytest.raises(ConfigError, match="init: '.*none.pt' not found"):
        Trainer(base_config(init=str(tmp_path / "none.pt")), tmp_path / "c", device="cpu")


def test_init_of_another_architecture_says_which_weight_does_not_fit(tmp_path):
    """The message ended at torch's header, ``Error(s) in loading state_dict for
    ScoreModel:``, naming no weight."""
    train(base_config(steps=2), tmp_path / "a", device="cpu", progress=False)
    wide = base_config(init=str(tmp_path / "a" / "checkpoint.pt"), model={"hidden": 32})
    with pytest.raises(ConfigError) as err:
        Trainer(wide, tmp_path / "b", device="cpu")
    assert str(err.value).startswith(
        f"init: {tmp_path / 'a' / 'checkpoint.pt'} does not fit the model of this config: "
        "size mismatch for net.layers.0.weight: copying a param with shape torch.Size([16, 3])")


def test_init_is_looked_for_as_data_paths_are(tmp_path, monkeypatch):
    """A relative ``init:`` not under the working directory is looked for under the repository
    root and ``$MOLSCORE_DATA_ROOT``, as data paths are (it was only tried against the working
    directory, so the shipped fine-tuning configs failed from any other folder)."""
    train(base_config(steps=2), tmp_path / "root" / "first", device="cpu", progress=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setenv("MOLSCORE_DATA_ROOT", str(tmp_path / "root"))
    trainer = Trainer(base_config(steps=2, init="first/checkpoint.pt"), tmp_path / "tuned",
                      device="cpu", progress=False)
    ema = torch.load(tmp_path / "root" / "first" / "checkpoint.pt", weights_only=True)["ema"]
    for k, v in trainer.model.state_dict().items():
        torch.testing.assert_close(v, ema["shadow"][k], rtol=0, atol=0)


def test_nan_loss_stops_training(tmp_path):
    trainer = Trainer(base_config(), tmp_path, device="cpu", progress=False)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(math.nan)
    batch = trainer.task.collate([trainer.task.train_set[i] for i in range(8)])
    with pytest.raises(FloatingPointError, match="step 1"):
        trainer.train_step(batch)


def test_meta_records_task(tmp_path):
    trainer = Trainer(base_config(), tmp_path, device="cpu")
    assert trainer.meta["task"] == TASK


def _write_yaml(path, cfg):
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_cli_trains_and_resumes(tmp_path, capsys):
    from molscore.cli import main

    config = _write_yaml(tmp_path / "c.yaml", base_config(steps=50))
    out = tmp_path / "run"
    assert main(["train", "--config", config, "-o", str(out), "--device", "cpu", "--steps", "3",
                 "-q"]) == 0
    assert "to step 3" in capsys.readouterr().out
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "--steps", "5",
                 "-q"]) == 0
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == 3
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "--steps", "2",
                 "--no-resume", "-q"]) == 0
    assert json.loads((out / "summary.json").read_text())["resumed_from"] is None


def test_cli_zero_steps_scores_the_init_weights(tmp_path, capsys):
    """``--steps 0 --init PATH``: the validation loss of PATH's EMA weights under the
    config's protocol, and a step-0 checkpoint holding exactly those weights."""
    from molscore.cli import main

    first = tmp_path / "first"
    train(base_config(steps=6), first, device="cpu", progress=False)
    config = _write_yaml(tmp_path / "c.yaml", base_config(steps=50))
    out = tmp_path / "score"
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "--steps", "0",
                 "--init", str(first / "checkpoint.pt"), "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    direct = Trainer(base_config(init=str(first / "checkpoint.pt")), tmp_path / "direct",
                     device="cpu", progress=False).validate()
    assert summary["steps"] == 0 and summary["val_loss"] == direct["val_loss"]
    assert _records(out, "val")[0]["val_loss_bins"] == direct["val_loss_bins"]
    assert f"val {direct['val_loss']:.4g}" in capsys.readouterr().out
    ema = torch.load(first / "checkpoint.pt", weights_only=True)["ema"]["shadow"]
    ckpt = torch.load(summary["checkpoint"], weights_only=True)
    assert ckpt["step"] == 0 and ckpt["meta"]["init"] == str(first / "checkpoint.pt")
    for k, v in ckpt["model"].items():
        torch.testing.assert_close(v, ema[k], rtol=0, atol=0)


@pytest.mark.parametrize("text, message", [
    (None, "config file not found"),
    ("- a\n- b\n", "must hold a mapping"),
    ("task: [unclosed\n", "not valid YAML"),
    # "while parsing a flow mapping" / "while scanning for the next token": PyYAML's context,
    # neither the problem nor where it is
    ("task: toy\nsteps: 3\noptim: {lr: 0.01\n",
     "not valid YAML: expected ',' or '}', but got '<stream end>' (line 4, column 1)"),
    ("task: toy\n\tsteps: 3\n",
     "not valid YAML: found character '\\t' that cannot start any token (line 2, column 1)"),
    ("steps: 3\n", "needs a 'task'"),
    ("task: nope\nsteps: 3\n", "unknown task"),
    (f"task: {TASK}\nsteps: 3\noptim: {{schedule: step}}\n", "optim.schedule"),
    (f"task: {TASK}\nsteps: 3\nval_evry: 1\n", "config has no key 'val_evry'"),
    # each was a TypeError traceback (exit status 1)
    ("task: [toy]\nsteps: 3\n", "unknown task ['toy']; choose from"),
    (f"task: {TASK}\nsteps: 3\nout_dir: 5\n", "out_dir must be a path, got 5"),
])
def test_cli_bad_config_is_one_line_exit_2(tmp_path, capsys, text, message):
    from molscore.cli import main

    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    assert main(["train", "--config", str(path), "-o", str(tmp_path / "o"), "--device",
                 "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("molscore train: error:")


def test_cli_conformer_data_missing_is_one_line(tmp_path, capsys):
    from molscore.cli import main

    config = _write_yaml(tmp_path / "c.yaml", {"task": "conformers", "steps": 2,
                                               "data": {"sdf": "no/such.sdf"}})
    assert main(["train", "-c", config, "-o", str(tmp_path / "o"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err


def test_logged_lr_is_the_one_each_step_used(tmp_path):
    train(base_config(), tmp_path, device="cpu", progress=False)
    lrs = [r["lr"] for r in _records(tmp_path, "train")]
    expected = [1e-2 * lr_factor(k, 12, 2, "cosine") for k in range(12)]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_longer_resumed_run_uses_its_own_schedule_from_the_first_step(tmp_path):
    """Extending a finished run (steps 4 -> 8): the first resumed step uses the 8-step
    schedule's learning rate, not the one the 4-step schedule left in the optimiser (0 at
    its end, so that step was lost)."""
    train(base_config(steps=4), tmp_path, device="cpu", progress=False)
    train(base_config(steps=8), tmp_path, device="cpu", progress=False)
    lrs = [r["lr"] for r in _records(tmp_path, "train")]
    expected = [1e-2 * lr_factor(k, 8, 2, "cosine") for k in range(4, 8)]
    assert lrs[4:] == pytest.approx(expected, rel=1e-9)


def test_resume_between_train_records_logs_the_uninterrupted_mean_loss(tmp_path):
    """A train record averages the losses since the previous one: a run stopped by Ctrl-C
    between two records (log_every=4, stopped after step 6) and resumed logs the same mean
    at step 8 as the unbroken run (it averaged steps 7-8 only)."""
    cfg = base_config(log_every=4, ckpt_every=100)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(cfg, straight, device="cpu", progress=False)
    trainer = Trainer(cfg, split, device="cpu", progress=False)
    loss_fn = trainer.loss_fn

    def interrupted_loss(*args, **kwargs):
        if trainer.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return loss_fn(*args, **kwargs)

    trainer.loss_fn = interrupted_loss
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert train(cfg, split, device="cpu", progress=False)["resumed_from"] == 6
    untimed = [[{**r, "time_s": None} for r in _records(out, "train")] for out in (straight, split)]
    assert [r["step"] for r in untimed[0]] == [4, 8, 12]
    assert untimed[0] == untimed[1]


def test_cli_zero_steps_in_a_folder_with_a_run_scores_that_run_and_says_init_is_unused(tmp_path, capsys):
    """``--steps 0 --init B`` where ``-o`` already holds a run resumes that run (as any run
    there does): it scored nothing ('val -') and said nothing of B; now it scores the run's
    weights and says that B was not used."""
    from molscore.cli import main

    config = _write_yaml(tmp_path / "c.yaml", base_config(steps=50))
    other, out = tmp_path / "other", tmp_path / "run"
    train(base_config(steps=2), other, device="cpu", progress=False)
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "--steps", "4", "-q"]) == 0
    capsys.readouterr()
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "--steps", "0",
                 "--init", str(other / "checkpoint.pt"), "-q"]) == 0
    captured = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    direct = Trainer(base_config(steps=50), out, device="cpu", progress=False).validate()
    assert summary["resumed_from"] == 4 and summary["val_loss"] == direct["val_loss"]
    assert f"val {direct['val_loss']:.4g}" in captured.out
    assert f"resuming its run from step 4; init {other / 'checkpoint.pt'} is not used" in captured.err


def test_val_batches_zero_scores_nothing_instead_of_logging_zero_loss(tmp_path):
    """``val_batches: 0`` scores no validation batch: no val record and no val_loss (it
    logged a val_loss of 0.0, a perfect score, from an empty sum)."""
    out = train(base_config(steps=4, val_batches=0), tmp_path, device="cpu", progress=False)
    assert out["val_loss"] is None and _records(tmp_path, "val") == []


def test_cli_damaged_checkpoint_to_resume_is_one_line_exit_2(tmp_path, capsys):
    """A checkpoint.pt in the output dir that cannot be read is a one-line error naming it
    (it was load_checkpoint's ValueError as a traceback); --no-resume starts over."""
    from molscore.cli import main

    config = _write_yaml(tmp_path / "c.yaml", base_config(steps=2))
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read checkpoint" in err and "--no-resume" in err
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "-q", "--no-resume"]) == 0


def test_cli_a_model_file_as_the_checkpoint_to_resume_is_named_so(tmp_path, capsys):
    """An exported model file (weights and meta only) as the output dir's checkpoint.pt was
    refused as "trained with another config (task: None -> ...)", every key listed as changed;
    the line says what the file is and that --init takes it."""
    from molscore.checkpoint import export_model
    from molscore.cli import main

    config = _write_yaml(tmp_path / "c.yaml", base_config(steps=2))
    train(base_config(steps=2), tmp_path / "first", device="cpu", progress=False)
    out = tmp_path / "run"
    export_model(tmp_path / "first" / "checkpoint.pt", out / "checkpoint.pt")
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a model file" in err and "--init" in err
    assert "another config" not in err


def test_cli_checkpoint_whose_ema_does_not_fit_the_model_is_one_line_exit_2(tmp_path, capsys):
    """A checkpoint whose EMA weights have other keys than its model (hand-edited, or another
    model's EMA) ended in EMA.load_state_dict's ValueError traceback."""
    from molscore.cli import main

    config = _write_yaml(tmp_path / "c.yaml", base_config(steps=2))
    out = tmp_path / "run"
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "-q"]) == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["ema"]["shadow"]["renamed"] = ckpt["ema"]["shadow"].pop("net.layers.0.weight")
    torch.save(ckpt, out / "checkpoint.pt")
    capsys.readouterr()
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "-q", "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert err == (f"molscore train: error: {out / 'checkpoint.pt'}: its EMA state does not match "
                   "the model: missing keys ['net.layers.0.weight'], unexpected keys ['renamed']; "
                   "use another output dir, or --no-resume to start over in this one\n")
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "-q", "--no-resume"]) == 0


def test_resume_drops_a_torn_last_metrics_line(tmp_path):
    """A machine crash can leave the last metrics.jsonl line half written; resuming drops
    it (the record the crash cut short) and goes on (it was a JSONDecodeError traceback)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(base_config(), straight, device="cpu", progress=False)
    _interrupted_run(split, RuntimeError, at_step=7)
    path = split / "metrics.jsonl"
    path.write_text(path.read_text() + '{"kind": "train", "step": 7, "lo')
    assert train(base_config(), split, device="cpu", progress=False)["resumed_from"] == 4
    untimed = [[{**r, "time_s": None} for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]
               for out in (straight, split)]
    assert untimed[0] == untimed[1]


def test_validation_leaves_numpy_and_python_random_streams_untouched(tmp_path):
    """validate() seeds numpy and Python ``random`` for its fixed noise; torch's fork_rng
    restored only torch's RNG, so training draws from those two RNGs after a validation
    differed from a run without one (val_batches: 0)."""
    import random

    import numpy as np

    draws = {}
    for name, val_batches in (("with_val", None), ("without_val", 0)):
        trainer = Trainer(base_config(steps=8, val_every=2, val_batches=val_batches), tmp_path / name,
                          device="cpu", progress=False)
        step, seen = trainer.train_step, []

        def drawing_step(batch, step=step, seen=seen):
            seen.append((float(np.random.rand()), random.random()))
            return step(batch)

        trainer.train_step = drawing_step
        trainer.fit()
        assert (_records(tmp_path / name, "val") != []) == (val_batches is None)
        draws[name] = seen
    assert draws["with_val"] == draws["without_val"]


@pytest.mark.parametrize("n,world_size", [(1, 3), (2, 5), (3, 8)])
def test_data_order_gives_every_rank_a_batch_when_ranks_outnumber_items(n, world_size):
    """The epoch permutation was padded by wrapping it once, so with fewer than half as many
    items as ranks the last ranks got empty shards (an empty batch, while the others waited
    for them in the gradient all-reduce). Now every rank gets one item, the permutation
    wrapped round as often as needed."""
    orders = [DataOrder(n, 1, seed=5, rank=r, world_size=world_size) for r in range(world_size)]
    firsts = [order.batch(0) for order in orders]
    assert all(len(b) == 1 for b in firsts)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(5)).tolist()
    assert sum(firsts, []) == [perm[r % n] for r in range(world_size)]


def test_metrics_reach_the_disk_before_the_checkpoint_that_follows_them(tmp_path, monkeypatch):
    """A power cut after a checkpoint's rename but before the metrics' data left the page
    cache gave a resumed run a permanent gap in metrics.jsonl."""
    events = []
    fsync, replace = os.fsync, os.replace

    def logged_fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        fsync(fd)

    def logged_replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", logged_fsync)
    monkeypatch.setattr(os, "replace", logged_replace)
    train(base_config(steps=2, ckpt_every=1), tmp_path, device="cpu", progress=False)
    saves = [i for i, e in enumerate(events) if e == ("replace", "checkpoint.pt")]
    assert len(saves) == 2
    previous = -1
    for i in saves:
        assert ("fsync", "metrics.jsonl") in events[previous + 1:i]
        previous = i


def test_noise_streams_of_runs_and_ranks_are_all_distinct():
    """Per-rank noise was seeded ``seed + 1 + rank``: rank 1 of a run with seed 0 drew the
    noise of rank 0 of the run with seed 1, correlating runs meant to be independent."""
    from molscore.train import _noise_seed

    seeds = [_noise_seed(seed, rank, step) for seed in range(10) for rank in range(8)
             for step in (0, 1, 100)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2 ** 64 for s in seeds)
    assert _noise_seed(3, 1) == _noise_seed(3, 1)        # a pure function of its keys


def test_cli_diverged_training_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    """A NaN loss (the config's lr or clipping) ended ``molscore train`` with a traceback;
    ``molscore toy train`` reports the same as one line, exit 2."""
    from molscore.cli import main

    def nan_step(self, batch):
        raise FloatingPointError(f"training loss is nan at step {self.step + 1}; lower "
                                 "optim.lr or enable optim.grad_clip")

    monkeypatch.setattr(Trainer, "train_step", nan_step)
    config = _write_yaml(tmp_path / "c.yaml", base_config())
    assert main(["train", "--config", str(config), "-o", str(tmp_path / "o"), "-q",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == ("molscore train: error: training diverged: training loss is nan at step 1; "
                   "lower optim.lr or enable optim.grad_clip\n")


def test_sigterm_to_the_whole_process_group_stops_a_run_with_workers_after_the_step(tmp_path):
    """A job scheduler's time limit signals every process of the job: with ``num_workers``,
    the DataLoader workers died of the SIGTERM and the loader's RuntimeError ("worker exited
    unexpectedly") ended the run mid-step, exit status 1, without the checkpoint of the step
    in flight. Now the workers leave it to the main process, which finishes the step,
    checkpoints it and exits 143; the run resumes from there exactly, and no worker is left."""
    import sys

    import yaml

    from _processes import REPO, run_alone

    cfg = base_config(num_workers=1)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code = f"""
import os, subprocess, sys
sys.path.insert(0, {str(REPO / "tests")!r})
import _train_tasks
from molscore.train import Trainer
step = Trainer.train_step
def signalled_step(self, batch):   # step 7: the scheduler's SIGTERM to the group, from outside it
    if self.step == 6:
        subprocess.run([sys.executable, "-c", "import os, signal; os.killpg({{}}, signal.SIGTERM)"
                        .format(os.getpgid(0))], start_new_session=True, check=True)
    return step(self, batch)
Trainer.train_step = signalled_step
from molscore.cli import main
sys.exit(main(sys.argv[1:]))
"""
    status, _, err, left = run_alone([sys.executable, "-c", code, "train", "-c", str(tmp_path / "c.yaml"),
                                      "-o", str(tmp_path / "split"), "--device", "cpu", "-q"], tmp_path)
    assert (status, left) == (143, []), err
    assert "SIGTERM: stopping after this step" in err and "Traceback" not in err
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["step"] == 7
    resumed = train(base_config(), tmp_path / "split", device="cpu", progress=False)  # no workers
    assert (resumed["resumed_from"], resumed["steps"]) == (7, 12)
    train(base_config(), tmp_path / "straight", device="cpu", progress=False)
    ca, cb = (torch.load(tmp_path / out / "checkpoint.pt", weights_only=True) for out in ("straight", "split"))
    for part in ("model", "ema", "optimizer", "scheduler", "rng"):
        _assert_identical(ca[part], cb[part], part)


@pytest.mark.parametrize("sig, status, said", [(signal.SIGINT, 130, "interrupted"),
                                              (signal.SIGTERM, 143, "terminated")])
def test_cli_a_signal_during_the_last_step_finishes_the_run_with_its_summary(tmp_path, capsys,
                                                                             monkeypatch, sig,
                                                                             status, said):
    """Ctrl-C or SIGTERM during the last step (12 of 12) stopped the run after it with the
    step's checkpoint but no summary.json, which the same run unsignalled writes. The run is
    finished then: summary.json is written as by an unbroken run, stderr says so, and the exit
    status still answers the signal (130 / 143); a rerun trains nothing."""
    from molscore.cli import main

    config = _write_yaml(tmp_path / "c.yaml", base_config())
    assert main(["train", "-c", config, "-o", str(tmp_path / "straight"), "--device", "cpu", "-q"]) == 0
    step = Trainer.train_step

    def signalled_step(self, batch):
        if self.step == 11:
            os.kill(os.getpid(), sig)
        return step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", signalled_step)
    capsys.readouterr()
    out = tmp_path / "split"
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "-q"]) == status
    err = capsys.readouterr().err
    assert err.endswith(f"molscore train: the run is finished (step 12 of 12; {out / 'summary.json'})\n"
                        f"molscore: {said}\n"), err
    untimed = [{**json.loads((tmp_path / name / "summary.json").read_text()), "time_s": None,
                "out_dir": None, "checkpoint": None} for name in ("straight", "split")]
    assert untimed[0] == untimed[1] and untimed[1]["steps"] == 12
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 12
    monkeypatch.setattr(Trainer, "train_step", step)
    again = train(base_config(), out, device="cpu", progress=False)
    assert (again["resumed_from"], again["steps_this_run"]) == (12, 0)


def test_a_run_with_workers_killed_hard_frees_its_folder_for_the_resume_at_once(tmp_path):
    """``kill -9`` of a run's main process (``num_workers: 2``): its DataLoader workers,
    forked from it, shared the open file of ``OUT/.lock`` and with it the flock, and held it
    until they noticed their parent gone (torch looks every 5 s), so a resume right after was
    refused ('in use by another training run'). Now a forked child lets go of the lock file,
    so the lock ends with the main process; the workers themselves still linger."""
    import subprocess
    import sys

    from _processes import REPO, children

    cfg = base_config(steps=100_000, num_workers=2, ckpt_every=1, val_every=100_000)
    config = _write_yaml(tmp_path / "c.yaml", cfg)
    out = tmp_path / "run"
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); import _train_tasks; "
            "from molscore.cli import main; sys.exit(main(sys.argv[1:]))")
    with open(tmp_path / "stderr.txt", "w") as stderr:
        run = subprocess.Popen([sys.executable, "-c", code, "train", "-c", config, "-o", str(out),
                                "--device", "cpu", "-q"], stdout=subprocess.DEVNULL, stderr=stderr,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    workers: list[int] = []
    try:
        metrics, deadline = out / "metrics.jsonl", time.monotonic() + 240
        # two steps logged: each worker has made a batch (round robin), so is well past its start
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
            assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.txt").read_text()
            time.sleep(0.1)
        workers = children(run.pid)
        assert len(workers) == 2
        for pid in workers:   # no worker has the lock file open
            fds = Path(f"/proc/{pid}/fd")
            assert [f for f in fds.iterdir() if os.path.realpath(f) == os.path.realpath(out / ".lock")] == []
        run.kill()
        run.wait()
        ckpt_step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
        resumed = train({**cfg, "steps": ckpt_step + 1, "num_workers": 0}, out, device="cpu",
                        progress=False)
        assert (resumed["resumed_from"], resumed["steps"]) == (ckpt_step, ckpt_step + 1)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_non_finite_gradient_of_a_finite_loss_stops_before_the_weights_change(tmp_path):
    """A gradient that is inf or NaN while the loss is finite (a norm's derivative at 0) made
    every weight NaN (clipping scales by max_norm / inf), and the checkpoint of that step
    (ckpt_every=1) replaced the last good one with NaN weights and EMA; the NaN loss of the
    next step only then stopped the run. Now the step stops before the optimiser moves."""
    trainer = Trainer(base_config(ckpt_every=1), tmp_path, device="cpu", progress=False)
    weight = next(trainer.model.parameters())
    weight.register_hook(lambda grad: grad * math.inf if trainer.step == 2 else grad)
    with pytest.raises(FloatingPointError, match=r"^gradient norm is (inf|nan) at step 3 \(the "
                                                 r"loss was finite\); the weights are those of step 2"):
        trainer.fit()
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2
    for weights in (ckpt["model"], ckpt["ema"]["shadow"], trainer.model.state_dict()):
        assert all(torch.isfinite(v).all() for v in weights.values())


def test_cli_a_checkpoint_that_cannot_be_written_is_one_line_and_keeps_the_last_one(tmp_path):
    """A full disk (here a file-size limit, as in test_cli_atomic_outputs) while the
    checkpoint of step 8 was written ended ``molscore train`` in an OSError traceback, exit 1,
    where the other commands say 'cannot write PATH: REASON', exit 2. The checkpoint of step 4
    is kept whole, with no temporary file, and the rerun resumes from it."""
    import resource
    import subprocess
    import sys

    from _processes import REPO

    config = _write_yaml(tmp_path / "c.yaml", base_config(steps=8))
    out = tmp_path / "run"
    train(base_config(steps=4), out, device="cpu", progress=False)
    before = (out / "checkpoint.pt").read_bytes()
    limit = len(before) // 2        # the checkpoint no longer fits, metrics.jsonl still does

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    code = (f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); import _train_tasks; "
            "from molscore.cli import main; sys.exit(main(sys.argv[1:]))")
    run = subprocess.run([sys.executable, "-c", code, "train", "-c", config, "-o", str(out),
                          "--device", "cpu", "-q"], capture_output=True, text=True,
                         preexec_fn=limit_file_size, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (run.returncode, run.stderr) == (2, (
        f"molscore train: error: cannot write {out / 'checkpoint.pt'}: File too large; "
        f"{out / 'checkpoint.pt'}, the last checkpoint written, is kept: a rerun resumes from it\n"))
    assert (out / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoint.pt", "config.yaml",
                                                     "metrics.jsonl", "summary.json"]
    assert train(base_config(steps=8), out, device="cpu", progress=False)["resumed_from"] == 4


_ABSENT = object()   # a checkpoint part deleted


@pytest.mark.parametrize("part, value", [("rng", [1]), ("optimizer", [1]), ("step", "x"),
                                         ("scheduler", None), ("config", [1]), ("config", "x"),
                                         ("ema", _ABSENT)],
                         ids=["rng", "optimizer", "step", "scheduler", "config-list",
                              "config-str", "no-ema"])
def test_cli_checkpoint_whose_training_state_is_damaged_is_one_line_exit_2(tmp_path, capsys,
                                                                           part, value):
    """A resumed checkpoint whose optimiser, schedule, step or RNG states are not what the
    trainer wrote (hand-edited, damaged) ended in a TypeError / ValueError traceback; one
    whose ``config`` is a list, or that has no ``ema``, in a TypeError / KeyError traceback,
    and a string ``config`` in "dictionary update sequence element #0 has length 1"."""
    from molscore.cli import main

    config = _write_yaml(tmp_path / "c.yaml", base_config(steps=2))
    out = tmp_path / "run"
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "-q"]) == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    if value is _ABSENT:
        del ckpt[part]
    else:
        ckpt[part] = value
    torch.save(ckpt, out / "checkpoint.pt")
    capsys.readouterr()
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "-q", "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"molscore train: error: {out / 'checkpoint.pt'}: its training state "
                          "cannot be restored (")
    assert err.endswith("use another output dir, or --no-resume to start over in this one\n")
    assert main(["train", "-c", config, "-o", str(out), "--device", "cpu", "-q", "--no-resume"]) == 0
