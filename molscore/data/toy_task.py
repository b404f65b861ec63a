"""The ``toy`` task: MLP score / energy models on the 2-D and N-D toy densities.

* :func:`build_task` / :func:`build_model`: the task interface of :mod:`molscore.tasks`, so
  the generic trainer (``molscore train --config configs/toy_checkerboard.yaml``) can train
  toy models and any checkpoint with ``meta["task"] == "toy"`` can be sampled.
* :func:`train_toy`: a small self-contained loop (fresh samples of the density every
  step, Adam, gradient clipping) used by ``molscore toy train`` and the benchmark.

``meta`` (stored in checkpoints) holds ``task``, ``density`` (and its options),
``dim``, ``net`` (MLP hyper-parameters), ``energy``, ``parameterisation``,
``sigma_data`` and ``sde`` (``sde.config()``).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..ema import EMA
from ..errors import described
from ..models.mlp import MLPEnergyNet, MLPScoreNet
from ..models.param import ScoreModel
from ..objectives import get_objective
from ..sde import make_sde
from ..spaces import DenseSpace
from ..tasks import Batch, TrainTask, check_keys, check_meta_int, is_int, sde_from_config
from .toy import get_density

__all__ = ["NET_KEYS", "ToyDataset", "collate", "make_meta", "build_model", "build_task",
           "train_toy"]

NET_KEYS = ("hidden", "depth", "time_embed", "embed_dim")
DATA_KEYS = ("density", "options", "n", "seed")


class ToyDataset(Dataset):
    """A fixed pool of ``n`` samples ``(n, D)`` of a toy density; items are rows ``(D,)``."""

    def __init__(self, samples: Tensor):
        self.samples = samples

    def __len__(self) -> int:
        return self.samples.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.samples[i]


def collate(items: list[Tensor]) -> Batch:
    """Stack rows ``(D,)`` into a dense :class:`~molscore.tasks.Batch` ``(B, D)``."""
    x = torch.stack(items)
    return Batch(x, DenseSpace(x.shape))


def make_meta(density: str, sde_config: dict, *, density_options: dict | None = None,
              energy: bool = False, parameterisation: str | None = None,
              net: dict | None = None, sigma_data: float | None = None,
              seed: int = 0) -> dict:
    """The JSON-like ``meta`` of a toy model.

    ``parameterisation`` defaults to ``energy`` for energy models and ``denoiser`` (EDM
    preconditioning, good at every noise level of every SDE) otherwise. ``sigma_data``
    defaults to the std of 10,000 samples of the density drawn with ``seed``.
    """
    opts = dict(density_options or {})
    dens = get_density(density, **opts)
    if sigma_data is None:
        g = torch.Generator().manual_seed(seed)
        sigma_data = float(dens.sample(10_000, generator=g).std())
    param = parameterisation or ("energy" if energy else "denoiser")
    if energy != (param == "energy"):
        raise ValueError("energy models need parameterisation 'energy' and vice versa")
    net = dict(net or {})
    unknown = set(net) - set(NET_KEYS)
    if unknown:
        raise ValueError(f"unknown toy model options {', '.join(sorted(unknown))}; "
                         f"valid: {', '.join(NET_KEYS)}")
    for key in ("hidden", "depth", "embed_dim"):
        value = net.get(key, 1)
        if not is_int(value) or value < 1:
            raise ValueError(f"toy model option {key} must be a positive integer, got {value!r}")
    return {"task": "toy", "density": density, "density_options": opts, "dim": int(dens.dim),
            "net": net, "energy": bool(energy), "parameterisation": param,
            "sigma_data": float(sigma_data), "sde": dict(sde_config)}


def build_model(meta: dict) -> ScoreModel:
    """Rebuild the :class:`ScoreModel` (MLP + SDE + parameterisation) from ``meta``.

    Raises:
        ValueError: ``density``, ``density_options`` or ``dim`` (what ``molscore toy`` reads
            besides the model) is not a known density's name, its options, a positive integer.
    """
    if not isinstance(meta["density"], str) or not isinstance(meta["density_options"], dict):
        raise ValueError(f"meta 'density' must be a name and 'density_options' a dict, got "
                         f"{described(meta['density'])} and {described(meta['density_options'])}")
    get_density(meta["density"], **meta["density_options"])     # an unknown name or option
    check_meta_int(meta, "dim")
    sde_cfg = dict(meta["sde"])
    sde = make_sde(sde_cfg.pop("name"), **sde_cfg)
    sigma_data = float(meta.get("sigma_data", 1.0))
    if meta.get("energy", False):
        net = MLPEnergyNet(meta["dim"], **meta["net"], sde=sde, sigma_data=sigma_data)
    else:
        net = MLPScoreNet(meta["dim"], **meta["net"])
    return ScoreModel(net, sde, meta["parameterisation"], sigma_data=sigma_data)


def build_task(cfg: dict) -> TrainTask:
    """Task for the generic trainer.

    Config keys: ``data: {density, options, n (pool size, default 100000), seed}``,
    ``model: {hidden, depth, time_embed, embed_dim, energy, parameterisation}``,
    ``sde: {name, ...}``.

    Raises:
        ValueError: a ``data`` key other than these (a misspelt ``density`` trained on the
            default checkerboard), or a value that cannot work (``n`` not a positive
            integer, ``energy`` not ``true`` / ``false``).
    """
    data = dict(cfg.get("data") or {})
    model_cfg = dict(cfg.get("model") or {})
    check_keys(data, DATA_KEYS, "data")
    n = data.get("n", 100_000)
    if not is_int(n) or n < 1:  # -5 was a RuntimeError traceback, 2.5 trained on 2 samples
        raise ValueError(f"data.n must be a positive integer (training samples), got {n!r}")
    energy = model_cfg.pop("energy", False)
    if not isinstance(energy, bool):  # the string "false" was read as true
        raise ValueError(f"model.energy must be true or false, got {energy!r}")
    sde = sde_from_config(cfg.get("sde") or {"name": "ve"})
    seed = int(data.get("seed", cfg.get("seed", 0)))
    param = model_cfg.pop("parameterisation", None)
    meta = make_meta(str(data.get("density", "checkerboard")), sde.config(),
                     density_options=data.get("options"), energy=energy,
                     parameterisation=param, net=model_cfg, seed=seed)
    dens = get_density(meta["density"], **meta["density_options"])
    g = torch.Generator().manual_seed(seed)
    train = ToyDataset(dens.sample(n, generator=g))
    val = ToyDataset(dens.sample(max(n // 10, 1), generator=g))
    return TrainTask(model=build_model(meta), train_set=train, collate=collate, meta=meta,
                     val_set=val)


def train_toy(meta: dict, *, objective: str = "dsm", steps: int = 4000, batch_size: int = 256,
              lr: float = 2e-3, seed: int = 0, grad_clip: float = 1.0, ema_decay: float = 0.999,
              objective_options: dict | None = None, progress: bool = False,
              callback: Callable[[int, float], Any] | None = None) -> tuple[ScoreModel, list[float]]:
    """Train the model of ``meta`` on fresh samples of its density.

    Args:
        meta: from :func:`make_meta`.
        objective: a name in :data:`molscore.objectives.OBJECTIVES`.
        steps, batch_size, lr, grad_clip: Adam with a cosine learning-rate decay.
        ema_decay: the returned weights are this exponential moving average (with warm-up,
            see :class:`molscore.ema.EMA`); ``0`` returns the last iterate.
        seed: seeds the initialisation, the data and the noise.
        objective_options: extra keywords for the loss (``weighting``, ``n_proj``, ...).
        progress: show a tqdm bar.
        callback: called as ``callback(step, loss)`` after every step.

    Returns:
        ``(model with the EMA weights, in eval mode; per-step mean losses)``.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    loss_fn = get_objective(objective)
    opts = dict(objective_options or {})
    torch.manual_seed(seed)
    model = build_model(meta)
    dens = get_density(meta["density"], **meta["density_options"])
    g = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ema = EMA(model, ema_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    space = DenseSpace((batch_size, meta["dim"]))
    losses: list[float] = []
    model.train()
    bar = tqdm(range(steps), disable=not progress, desc=f"toy {objective}", unit="step")
    for step in bar:
        x0 = dens.sample(batch_size, generator=g)
        loss = loss_fn(model, model.sde, x0, space, None, **opts).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step + 1}; lower the lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        ema.update(model)
        losses.append(float(loss.detach()))
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if callback is not None:
            callback(step, losses[-1])
    bar.close()
    ema.copy_to(model)
    return model.eval(), losses
