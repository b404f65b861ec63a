"""A tiny dense Gaussian task for trainer tests, registered as task ``train_test_gauss``.

Imported by ``tests/test_train.py``, ``tests/test_checkpoint.py`` and ``tests/test_ddp.py``;
it also holds the DDP worker so spawned processes can import it by name.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from molscore.models.param import ScoreModel
from molscore.sde import make_sde
from molscore.spaces import DenseSpace
from molscore.tasks import TASKS, Batch, TrainTask

TASK = "train_test_gauss"
TASKS[TASK] = __name__


class TimeMLP(nn.Module):
    """``net(x (B, D), t (B,), cond) -> (B, D)``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(dim + 1, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        return self.layers(torch.cat([x, t.unsqueeze(-1).to(x)], dim=-1))


class JitteredDataset(TensorDataset):
    """Items ``x + jitter * z``, ``z`` drawn from torch's global RNG at each read (as the
    conformer task draws a conformer): randomness drawn where the data are read."""

    def __init__(self, x: Tensor, jitter: float):
        super().__init__(x)
        self.jitter = jitter

    def __getitem__(self, index: int) -> tuple[Tensor]:
        (x,) = super().__getitem__(index)
        return (x + self.jitter * torch.randn(x.shape),)


def collate(items: list) -> Batch:
    x = torch.stack([item[0] for item in items])
    return Batch(x, DenseSpace(x.shape))


def build_model(meta: dict) -> ScoreModel:
    net = TimeMLP(meta["dim"], meta["hidden"])
    return ScoreModel(net, make_sde(**meta["sde"]), meta["parameterisation"])


def build_task(cfg: dict) -> TrainTask:
    data, model = cfg.get("data", {}), cfg.get("model", {})
    dim, n = int(data.get("dim", 2)), int(data.get("n", 64))
    g = torch.Generator().manual_seed(int(data.get("seed", 123)))
    x = torch.randn(n + 16, dim, generator=g) * 0.5 + 1.0
    sde = make_sde(**cfg.get("sde", {"name": "ve", "sigma_min": 0.01, "sigma_max": 5.0}))
    meta = {"task": TASK, "dim": dim, "hidden": int(model.get("hidden", 16)),
            "parameterisation": model.get("parameterisation", "eps"), "sde": sde.config()}
    jitter = float(data.get("jitter", 0.0))
    train_set = JitteredDataset(x[:n], jitter) if jitter else TensorDataset(x[:n])
    return TrainTask(build_model(meta), train_set, collate, meta,
                     val_set=TensorDataset(x[n:]))


def base_config(**overrides) -> dict:
    """A config that trains in well under a second."""
    cfg = {"task": TASK, "data": {"dim": 2, "n": 40}, "model": {"hidden": 16},
           "batch_size": 8, "steps": 12, "val_every": 4, "ckpt_every": 4, "log_every": 1,
           "seed": 3, "ema": 0.9, "optim": {"lr": 1e-2, "schedule": "cosine", "warmup": 2}}
    cfg.update(overrides)
    return cfg


def ddp_worker(rank: int, world_size: int, port: int, out_dir: str, cfg: dict | None = None) -> None:
    """One process of a Gloo CPU run of ``cfg`` (default: ``base_config`` for 6 steps); saves
    its final parameters, EMA state and validation result (scored by both ranks together) to
    ``rank{r}.pt``."""
    from molscore.train import Trainer

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    if "lo" in {name for _, name in socket.if_nameindex()}:
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"   # Gloo's pairs on loopback, not the host name's
    torch.set_num_threads(1)
    trainer = Trainer(cfg or base_config(steps=6, val_every=3, ckpt_every=3), out_dir,
                      device="cpu", progress=False)
    first = trainer.order.batch(0)
    try:
        summary = trainer.fit()
        val = trainer.validate()
    finally:
        trainer.close()
    torch.save({"params": trainer.model.state_dict(), "first_batch": first, "summary": summary,
                "ema": trainer.ema.state_dict(), "val": val}, Path(out_dir) / f"rank{rank}.pt")
