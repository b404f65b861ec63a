"""The generic training loop: one trainer for every space (molecules, images, C-alpha, toy).

It only sees a :class:`~molscore.tasks.TrainTask` (model, datasets, collate, meta) and
:class:`~molscore.tasks.Batch` objects; the config's ``task`` picks the task module.

Config (a plain dict, usually from YAML); defaults in :data:`DEFAULTS`; a key not listed
here (top level, ``optim``, ``ema``) is refused::

    task: conformers          # name in molscore.tasks.TASKS
    data: {...}, model: {...}, sde: {...}   # read by the task module
    objective: {name: dsm, weighting: sigma2}   # extra keys go to the loss function
    optim: {lr, weight_decay, betas, grad_clip, schedule: cosine|constant, warmup, min_lr_ratio}
                              # grad_clip: max gradient norm; 0, false or null: no clipping
    ema: {decay: 0.999}       # or a bare number; 0 (or false): no averaging, the EMA
                              #   weights are the trained ones
    batch_size: 32
    steps: 10000              # or epochs: N; 0 only scores the starting weights; with both,
                              #   steps (molscore train --steps sets it over a config's epochs)
    val_every: 500            # validation loss per noise-level bucket (EMA weights)
    val_bins: 5
    val_batches: null         # cap on validation batches, evenly spread (null: whole val set;
                              #   0: no validation)
    ckpt_every: 1000
    log_every: 10
    seed: 0
    num_workers: 0
    ddp_find_unused: false    # true where some parameters get no gradient (always on for the
                              #   energy parameterisation: -grad_x E never reaches E's output bias)
    init: null                # checkpoint or model file whose (EMA) weights start a new run
    out_dir: runs/NAME        # molscore train's output folder when -o is not given

Outputs in ``out_dir``: ``checkpoint.pt`` (atomic; see :mod:`molscore.checkpoint`),
``metrics.jsonl`` (one JSON record per line, ``kind`` = ``train`` or ``val``),
``config.yaml`` and ``summary.json``.

Exact resume: the data order is a pure function of ``(seed, step, rank)``
(:class:`DataOrder`), and the checkpoint holds the RNG states of every rank, so a
run interrupted and resumed from a checkpoint reproduces the uninterrupted loss
curve, also with ``num_workers`` (worker processes seed their RNGs per batch from
``(seed, rank, step)``; a resumed run changing ``num_workers`` between 0 and more is not
exact). Ctrl-C (SIGINT) in a
single-process run stops after the current step and checkpoints it (a second Ctrl-C
stops at once, without a checkpoint), so the saved weights, optimiser and RNG states are
those between two steps; a signal during the last step lets the run finish (``summary.json``
written) before the interruption is raised.

Distributed: launched by ``torchrun`` (``WORLD_SIZE > 1``), the trainer joins a
process group (NCCL on CUDA, Gloo on CPU), shards every epoch's permutation across
ranks, shares the validation batches out among them, wraps the model in DDP and
writes files from rank 0 only.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .checkpoint import (CHECKPOINT_FORMAT, capture_rng_state, load_checkpoint, load_weights,
                         mismatch_line, restore_rng_state, save_atomic, write_atomic)
from . import locks
from .ema import EMA
from .errors import Terminated, described, message_line
from .objectives import PROJECTIONS, WEIGHTINGS, get_objective
from .paths import resolve_data_path
from .seeds import SEED_MAX
from .tasks import Batch, ConfigError, TrainTask, check_keys, config_number, get_task_module, is_int

__all__ = ["DEFAULTS", "ConfigError", "DataOrder", "Trainer", "train", "resolve_config",
           "lr_factor", "load_config"]

DEFAULTS: dict[str, Any] = {
    "batch_size": 32,
    "steps": None,
    "epochs": None,
    "seed": 0,
    "num_workers": 0,
    "val_every": 500,
    "val_bins": 5,
    "val_batches": None,
    "ckpt_every": 1000,
    "log_every": 10,
    "ddp_find_unused": False,
    "init": None,
    "objective": {"name": "dsm", "weighting": "sigma2"},
    "optim": {"lr": 2e-4, "weight_decay": 0.0, "betas": [0.9, 0.999], "grad_clip": 1.0,
              "schedule": "cosine", "warmup": 0, "min_lr_ratio": 0.0},
    "ema": {"decay": 0.999},
}
# The top-level keys a config may hold: the trainer's (DEFAULTS), the task's sections and the
# CLI's default output folder. Any other key (a typo, an optimiser key outside ``optim``) would
# be ignored silently.
CONFIG_KEYS = frozenset(DEFAULTS) | {"task", "data", "model", "sde", "out_dir"}
SCHEDULES = ("cosine", "constant")
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
LOCK_NAME = ".lock"          # held by the run training in the folder (_only_run_in)


# Config keys a resumed run may change: the length of the run and its bookkeeping. Any other
# change (data, model, SDE, objective, optimiser, batch size, seed) would be ignored by the
# restored optimiser state or break the exact resume, so it is refused.
RESUME_FREE_KEYS = frozenset({"steps", "epochs", "init", "out_dir", "log_every", "val_every",
                              "val_bins", "val_batches", "ckpt_every", "num_workers",
                              "ddp_find_unused"})


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``"key: old -> new"`` for every leaf where two resolved configs differ (dotted keys for
    nested sections, in ``new``'s key order, then keys only ``old`` has)."""
    out = []
    for key in list(new) + [k for k in old if k not in new]:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (``ConfigError``
    naming the key and both lines): YAML keeps the last value, so a second ``optim:`` section
    dropped the first one's learning rate without a word. Merge keys (``<<``) may still be
    overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line
                try:
                    if key in seen:
                        where = (f"line {line + 1}" if seen[key] == line
                                 else f"lines {seen[key] + 1} and {line + 1}")
                        raise ConfigError(f"key {key!r} is given twice ({where}); keep one")
                    seen[key] = line
                except TypeError:   # an unhashable key: SafeLoader's own error follows
                    continue
        return super().construct_mapping(node, deep=deep)


def _unresumable(path: Path, why: str) -> ConfigError:
    """The one-line error of a run checkpoint ``path`` that cannot be resumed, ``why``, with
    the way on."""
    return ConfigError(f"{path}: {why}; use another output dir, or --no-resume to start over in "
                       "this one")


def load_config(path: str | os.PathLike) -> dict:
    """Read a YAML config file into a dict; ``ConfigError`` if it is missing, not UTF-8 text
    (a checkpoint given for the config), not a mapping or holds a key twice in one mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = yaml.load(path.read_text(), Loader=_ConfigLoader)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.MarkedYAMLError as err:   # its first line is the context: "while parsing a
        mark = err.problem_mark or err.context_mark   # flow mapping", with no line number
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path} is not valid YAML: {err.problem or err.context}{where}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from err
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a YAML config: not UTF-8 text") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    return cfg


def resolve_config(cfg: dict) -> dict:
    """Fill defaults and validate the trainer's keys; the task's own sections pass through.

    Raises:
        ConfigError: on a missing ``task``, unknown schedules, non-positive sizes, ...
    """
    if not isinstance(cfg, dict):
        raise ConfigError("config must be a mapping")
    if "task" not in cfg:
        raise ConfigError("config needs a 'task' key (e.g. conformers, images, toy)")
    check_keys(cfg, sorted(CONFIG_KEYS), "config")
    out = copy.deepcopy(cfg)
    for key, default in DEFAULTS.items():
        if isinstance(default, dict):
            given = out.get(key)
            if key == "ema" and isinstance(given, (int, float)):
                given = {"decay": float(given)}
            if key == "objective" and isinstance(given, str):
                given = {"name": given}
            if given is not None and not isinstance(given, dict):
                raise ConfigError(f"'{key}' must be a mapping, got {given!r}")
            if key != "objective":  # the loss function's keys: _check_objective_keys
                check_keys(given or {}, sorted(default), key)
            out[key] = {**default, **(given or {})}
        else:
            out.setdefault(key, default)
    for key in ("data", "model", "sde"):  # the task's sections
        if out.get(key) is not None and not isinstance(out[key], dict):
            raise ConfigError(f"'{key}' must be a mapping, got {out[key]!r}")
    if out["steps"] is None and out["epochs"] is None:
        raise ConfigError("config needs 'steps' or 'epochs'")
    for key in ("batch_size", "val_every", "ckpt_every", "log_every", "val_bins"):
        if not is_int(out[key]) or out[key] < 1:
            raise ConfigError(f"'{key}' must be a positive integer, got {out[key]!r}")
    for key in ("steps", "epochs", "val_batches"):
        if out[key] is not None and (not is_int(out[key]) or out[key] < 0):
            raise ConfigError(f"'{key}' must be a non-negative integer, got {out[key]!r}")
    if not is_int(out["num_workers"]) or out["num_workers"] < 0:
        raise ConfigError(f"'num_workers' must be a non-negative integer, got {out['num_workers']!r}")
    if not isinstance(out["ddp_find_unused"], bool):   # bool("false") is True
        raise ConfigError(f"'ddp_find_unused' must be true or false, got {out['ddp_find_unused']!r}")
    if out["init"] is not None and not isinstance(out["init"], (str, os.PathLike)):
        raise ConfigError(f"'init' must be the path of a checkpoint or model file, got {out['init']!r}")
    if not is_int(out["seed"]) or not 0 <= out["seed"] <= SEED_MAX:
        raise ConfigError(f"'seed' must be an integer 0..{SEED_MAX}, got {out['seed']!r}")
    optim = out["optim"]
    if optim["schedule"] not in SCHEDULES:
        raise ConfigError(f"optim.schedule must be one of {', '.join(SCHEDULES)}, "
                          f"got {optim['schedule']!r}")
    for key in ("lr", "weight_decay", "min_lr_ratio"):
        optim[key] = config_number(optim[key], f"optim.{key}", minimum=0.0)
    optim["grad_clip"] = (None if optim["grad_clip"] in (None, 0, False)
                          else config_number(optim["grad_clip"], "optim.grad_clip", minimum=0.0))
    if not is_int(optim["warmup"]) or optim["warmup"] < 0:   # steps: 2.5 was taken as 2
        raise ConfigError(f"optim.warmup must be a non-negative integer (steps), got {optim['warmup']!r}")
    if optim["lr"] == 0:
        raise ConfigError("optim.lr must be positive, got 0")
    if optim["min_lr_ratio"] > 1:  # a cosine "floor" above 1 makes the LR rise
        raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {optim['min_lr_ratio']:g}")
    betas = optim["betas"]
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise ConfigError(f"optim.betas must be two numbers, got {betas!r}")
    optim["betas"] = [config_number(b, "optim.betas", minimum=0.0) for b in betas]
    if not all(b < 1.0 for b in optim["betas"]):
        raise ConfigError(f"optim.betas must be in [0, 1), got {betas!r}")
    decay = config_number(out["ema"]["decay"], "ema.decay", minimum=0.0)
    if not decay < 1.0:
        raise ConfigError(f"ema.decay must be in [0, 1), got {decay!r}")
    out["ema"]["decay"] = decay
    try:
        loss_fn = get_objective(out["objective"]["name"])
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _check_objective_keys(loss_fn, out["objective"])
    return out


def _check_objective_keys(loss_fn: Any, objective: dict) -> None:
    """``ConfigError`` for an ``objective`` key the loss function does not take, or a value
    of ``weighting``, ``n_proj``, ``projection`` or ``variance_reduced`` it cannot take (else
    each would surface only as a traceback at the first step)."""
    params = inspect.signature(loss_fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        allowed = {k for k, p in params.items()
                   if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in ("t", "noise")}
        unknown = sorted(set(objective) - allowed - {"name"})
        if unknown:
            raise ConfigError(f"objective {objective['name']!r} takes no key {unknown[0]!r}; "
                              f"choose from {', '.join(sorted(allowed)) or 'none'}")
    if objective.get("weighting", WEIGHTINGS[0]) not in WEIGHTINGS:
        raise ConfigError(f"objective.weighting must be one of {', '.join(WEIGHTINGS)}, "
                          f"got {objective['weighting']!r}")
    n_proj = objective.get("n_proj", 1)
    if not is_int(n_proj) or n_proj < 1:
        raise ConfigError(f"objective.n_proj must be a positive integer, got {n_proj!r}")
    if objective.get("projection", PROJECTIONS[0]) not in PROJECTIONS:
        raise ConfigError(f"objective.projection must be one of {', '.join(PROJECTIONS)}, "
                          f"got {objective['projection']!r}")
    if not isinstance(objective.get("variance_reduced", False), bool):
        raise ConfigError(f"objective.variance_reduced must be true or false, got "
                          f"{objective['variance_reduced']!r}")


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Linear warmup over ``warmup`` steps, then constant or a cosine decay from 1 to
    ``min_ratio`` at ``total``.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class DataOrder:
    """Deterministic, resumable, shardable order of training batches.

    Epoch ``e`` uses the permutation ``randperm(n)`` of a generator seeded with
    ``seed + e``; it is padded (by wrapping) to a multiple of ``world_size`` and rank
    ``r`` takes every ``world_size``-th index from ``r`` (as ``DistributedSampler``).
    Each rank's shard is cut into ``batches_per_epoch`` full batches (a last partial
    batch is dropped, unless the shard is smaller than one batch). Batch ``k`` is a
    pure function of ``(seed, k, rank)``, so the only data-order state is the step.

    Args:
        n: dataset size.
        batch_size: items per batch on each rank.
        seed: base seed.
        rank, world_size: this process and the number of processes.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if n < 1:
            raise ValueError("the training set is empty")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.shard_size = math.ceil(n / world_size)
        self.batches_per_epoch = max(1, self.shard_size // batch_size)
        self._cache: tuple[int, Tensor] | None = None

    def _shard(self, epoch: int) -> Tensor:
        if self._cache is None or self._cache[0] != epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.n, generator=g)
            total = self.shard_size * self.world_size
            if total > self.n:          # wrapped as often as needed (n < world_size / 2 too)
                perm = perm.repeat(math.ceil(total / self.n))[:total]
            self._cache = (epoch, perm[self.rank::self.world_size])
        return self._cache[1]

    def position(self, step: int) -> dict:
        """``{"epoch", "batch"}`` of global batch ``step``."""
        return {"epoch": step // self.batches_per_epoch, "batch": step % self.batches_per_epoch}

    def batch(self, step: int) -> list[int]:
        """Dataset indices of batch number ``step`` (0-based) on this rank."""
        pos = self.position(step)
        shard = self._shard(pos["epoch"])
        i = pos["batch"] * self.batch_size
        return shard[i:i + self.batch_size].tolist()

    def iterate(self, start: int, stop: int) -> Iterator[list[int]]:
        """Batches ``start, ..., stop - 1`` (usable as a ``DataLoader`` ``batch_sampler``)."""
        for k in range(start, stop):
            yield self.batch(k)


class _StopRequest:
    """SIGINT and SIGTERM handler of :meth:`Trainer.fit` in a single-process run (main thread
    only).

    The first signal only sets :attr:`requested`: the loop finishes the step it is in (a
    signal handled mid-step would leave a half-updated optimiser or EMA, or RNG states
    already advanced by the next batch's draws, in the checkpoint), writes a checkpoint and
    raises :meth:`exception`: ``KeyboardInterrupt`` for Ctrl-C, :class:`~molscore.errors.Terminated`
    for SIGTERM (a job scheduler's time limit). A second signal raises it at once and sets
    :attr:`forced` (no checkpoint).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested: int | None = None        # the first signal's number
        self.forced = False
        self._previous: dict[int, Any] = {}      # the handlers install() replaced

    def install(self) -> None:
        if self.enabled:
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else
                          signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        self._previous = {}

    def exception(self) -> BaseException:
        """What ends the run for the signal received."""
        return Terminated() if self.requested == signal.SIGTERM else KeyboardInterrupt()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            self.forced = True
            raise self.exception()
        self.requested = signum
        what = "Ctrl-C again" if signum == signal.SIGINT else "a second signal"
        print(f"\nmolscore train: {signal.Signals(signum).name}: stopping after this step "
              f"({what} stops at once, without a checkpoint)", file=sys.stderr)


def _leave_signals_to_main(worker_id: int) -> None:
    """``DataLoader`` workers leave a SIGINT or SIGTERM sent to the whole process group (a
    terminal's Ctrl-C; a job scheduler's time limit, which signals every process of the job)
    to the main process, which stops between steps (see :class:`_StopRequest`), instead of
    dying under it: a worker killed by SIGTERM ended the run with the loader's RuntimeError
    mid-step, no checkpoint and exit status 1. A SIGTERM from the main process itself (the
    loader stopping a worker that does not end) still ends the worker at once, as torch's
    own handler does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "sigwaitinfo"):      # not on macOS: SIGTERM keeps torch's handler there
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})   # threads started later too
        threading.Thread(target=_end_on_sigterm_from, args=(os.getppid(),), daemon=True,
                         name="molscore-sigterm").start()


def _end_on_sigterm_from(parent: int) -> None:
    """Wait for SIGTERMs (blocked in every thread); end the process on one sent by
    ``parent``, ignore the others."""
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(0)          # status 0, as torch's handler: the loader reports no failure


class _BatchSampler:
    """Re-iterable wrapper giving ``DataLoader`` the batches ``start .. stop - 1``: each a list
    of dataset indices, or with ``numbered`` a ``(step, indices)`` pair (for
    :class:`_SeededBatches`), ``step`` the batch's 0-based number."""

    def __init__(self, order: DataOrder, start: int, stop: int, numbered: bool = False):
        self.order, self.start, self.stop, self.numbered = order, start, stop, numbered

    def __iter__(self) -> Iterator[list[int] | tuple[int, list[int]]]:
        if self.numbered:
            return ((k, self.order.batch(k)) for k in range(self.start, self.stop))
        return self.order.iterate(self.start, self.stop)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class _SeededBatches(Dataset):
    """A training set as ``DataLoader`` worker processes read it, batch by batch (the batch
    sampler's ``(step, indices)`` pairs): the worker's torch, numpy and Python ``random`` RNGs
    are seeded from ``(seed, rank, step)`` before the batch's items are read and collated, so
    what they draw (a conformer picked at random, a random crop) is a function of the batch's
    step, as in a resumed run. Seeded once per worker, they drew from a stream that a resumed
    run restarted at its first step: it differed from the uninterrupted run from there on."""

    def __init__(self, dataset: Dataset, seed: int, rank: int):
        self.dataset, self.seed, self.rank = dataset, seed, rank

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, batch: tuple[int, list[int]]) -> list:
        step, indices = batch
        _seed_all(_noise_seed(self.seed, self.rank, step, spawn_key=(1,)))
        return [self.dataset[i] for i in indices]


@dataclass
class DistInfo:
    """Process-group facts read from the ``torchrun`` environment."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> "DistInfo":
        """``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` (0, 0, 1 where unset).

        Raises:
            ConfigError: one is not a non-negative integer, ``WORLD_SIZE`` is 0, ``RANK`` is
                not below ``WORLD_SIZE`` (a stale ``RANK=1`` alone made a run that wrote
                nothing), or a multi-process run lacks ``MASTER_ADDR``/``MASTER_PORT``: set
                wrongly by hand, as ``torchrun`` does not.
        """
        values = {}
        for name, default in (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)):
            text = os.environ.get(name, str(default)).strip()
            if not text.isdigit():
                raise ConfigError(f"environment variable {name} must be a non-negative integer "
                                  f"(torchrun sets it), got {text!r}")
            values[name] = int(text)
        info = cls(values["RANK"], values["LOCAL_RANK"], values["WORLD_SIZE"])
        if info.world_size < 1 or info.rank >= info.world_size:
            raise ConfigError(f"environment variables RANK={info.rank} and WORLD_SIZE="
                              f"{os.environ.get('WORLD_SIZE', '1 (unset)')} do not fit: RANK "
                              "must be below WORLD_SIZE; launch with torchrun, or unset both")
        if info.distributed:
            missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
            if missing:
                raise ConfigError(f"WORLD_SIZE={info.world_size} but {' and '.join(missing)} "
                                  "not set; launch with torchrun, or unset WORLD_SIZE")
        return info

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(device: str, info: DistInfo) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but CUDA is not available")
        if info.distributed:
            return torch.device("cuda", info.local_rank)
    elif device != "cpu":
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def _with_defaults(cfg: dict, defaults: dict) -> dict:
    """``cfg`` with the values of ``defaults`` (a partial config, sections nested) that it does
    not set."""
    out = dict(cfg)
    for key, value in defaults.items():
        if isinstance(value, dict):
            out[key] = _with_defaults(out.get(key) or {}, value)
        else:
            out.setdefault(key, value)
    return out


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _noise_seed(seed: int, rank: int, step: int = 0, spawn_key: tuple[int, ...] = ()) -> int:
    """The seed of one process's training noise: distinct for every ``(run seed, rank, step)``
    (``seed + 1 + rank`` gave rank 1 of seed 0 the stream of rank 0 of seed 1); another
    ``spawn_key`` gives another family of seeds (``(1,)``: the data workers', :class:`_SeededBatches`)."""
    return int(np.random.SeedSequence([seed, rank, step], spawn_key=spawn_key)
               .generate_state(1, np.uint64)[0])


@contextlib.contextmanager
def _fork_numpy_and_random_rng() -> Iterator[None]:
    """Set numpy's and Python's ``random`` RNG states back on leaving to what they were on
    entering (``torch.random.fork_rng`` does this for torch's only)."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


class Trainer:
    """Builds the task from ``cfg`` and trains it; :meth:`fit` runs the loop.

    Args:
        cfg: training config (see the module docstring).
        out_dir: where checkpoints, metrics and the summary go.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists.
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
        progress: show a tqdm progress bar (rank 0 only).
    """

    def __init__(self, cfg: dict, out_dir: str | os.PathLike, *, resume: bool = True,
                 device: str = "auto", progress: bool = True):
        self.cfg = resolve_config(cfg)
        self.out_dir = Path(out_dir)
        self.info = DistInfo.from_env()
        self.device = _pick_device(device, self.info)
        self.progress = progress and self.info.is_main
        if self.info.distributed and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            try:
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            except (RuntimeError, ValueError) as err:  # a MASTER_PORT in use or not a number
                raise ConfigError(f"cannot join the process group at MASTER_ADDR="
                                  f"{os.environ['MASTER_ADDR']} MASTER_PORT="
                                  f"{os.environ['MASTER_PORT']}: {message_line(err)}") from None

        seed = int(self.cfg["seed"])
        _seed_all(seed)  # identical initialisation on every rank
        ckpt_path = self.out_dir / CHECKPOINT_NAME
        ckpt = self._read_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
        try:
            module = get_task_module(self.cfg["task"])
            if ckpt is not None:
                self.cfg = self._resumed_config(ckpt_path, ckpt, module)
            task: TrainTask = module.build_task(self.cfg)
        except ValueError as err:  # unknown task / bad task section
            raise ConfigError(str(err)) from err
        self.task = task
        self.meta = {**task.meta, "task": task.meta.get("task", self.cfg["task"])}
        self.model = task.model.to(self.device)
        self.sde = self.model.sde
        resuming = ckpt is not None
        if self.cfg["init"] is not None and not resuming:  # a resumed run keeps its own
            self.meta["init"] = str(self.cfg["init"])
            self._init_weights(self.cfg["init"], module)
        self.ema = EMA(self.model, self.cfg["ema"]["decay"])
        # frozen: validation runs with autograd on (the sliced and exact objectives differentiate
        # the score in x_t) but builds no graph over these weights
        self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False)

        optim = self.cfg["optim"]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=optim["lr"],
                                           weight_decay=optim["weight_decay"],
                                           betas=tuple(optim["betas"]))
        if len(task.train_set) == 0:
            raise ConfigError(f"the training set is empty (data: {self.cfg.get('data')}); "
                              "too few molecules for the splits, or a filter that drops them all?")
        self.order = DataOrder(len(task.train_set), self.cfg["batch_size"], seed,
                               self.info.rank, self.info.world_size)
        self.total_steps = (self.cfg["steps"] if self.cfg["steps"] is not None
                            else self.cfg["epochs"] * self.order.batches_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total_steps, optim["warmup"],
                                                optim["schedule"], optim["min_lr_ratio"]))
        objective = dict(self.cfg["objective"])
        self.loss_fn = get_objective(objective.pop("name"))
        self.loss_kwargs = objective
        self.step = 0
        self.last_lr = optim["lr"]
        self.resumed_from: int | None = None
        self.loss_window: list[float] = []  # losses of the steps since the last train record
        self.last_records: dict[str, dict] = {}  # kind -> the last record a resumed run kept
        if resuming:
            self._load(ckpt_path, ckpt)
        else:
            _seed_all(_noise_seed(seed, self.info.rank))  # per-rank noise streams
        self.net: nn.Module = self.model
        if self.info.distributed:
            # an energy model's score -grad_x E gives E's output bias (any term not in x) no
            # gradient: DDP waiting for it ended the second step in a RuntimeError traceback
            find_unused = (bool(self.cfg["ddp_find_unused"])
                           or getattr(self.model, "kind", None) == "energy")
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused)

    # -- checkpoints ------------------------------------------------------------------
    def _init_weights(self, init: str | os.PathLike, module: Any) -> None:
        """Start from the (EMA) weights of another run (fine-tuning); optimiser state is new.
        ``init`` is looked for as data paths are (:func:`~molscore.paths.resolve_data_path`),
        so the shipped configs' ``molscore/weights/conformer.pt`` is found from any folder.
        Weights whose meta fixes other config values than this run's (the task module's
        ``meta_config``: conformer features of another version) are a warm start, said on
        stderr."""
        try:
            path = resolve_data_path(init)
            weights, meta = load_weights(path)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"init: {err}") from err
        if meta.get("task") != self.meta["task"]:
            raise ConfigError(f"init: {path} was trained for task {meta.get('task')!r}, "
                              f"config says {self.meta['task']!r}")
        ours, theirs = self.meta.get("parameterisation"), meta.get("parameterisation")
        if ours != theirs:
            raise ConfigError(f"init: {path} has parameterisation {theirs!r}, config says {ours!r}")
        try:
            self.model.load_state_dict(weights)
        except RuntimeError as err:
            raise ConfigError(f"init: {path} does not fit the model of this config: "
                              f"{mismatch_line(err)}") from err
        if hasattr(module, "meta_config"):
            try:
                changed = config_changes(module.meta_config(meta), module.meta_config(self.meta))
            except ValueError as err:   # a version this molscore does not know
                raise ConfigError(f"init: {path}: {err}") from err
            if changed and self.info.is_main:
                print(f"init: {path} was trained with other inputs ({'; '.join(changed)}): its "
                      "weights are a warm start", file=sys.stderr)

    @staticmethod
    def _read_checkpoint(path: Path) -> dict:
        try:
            return load_checkpoint(path)
        except ValueError as err:  # damaged or foreign file: one line, not a traceback
            raise ConfigError(f"{err}; use another output dir, or --no-resume to start over "
                              "in this one") from err

    def _resumed_config(self, path: Path, ckpt: dict, module: Any) -> dict:
        """The config of a run resuming ``ckpt`` (read from ``path``): ``self.cfg`` with the
        values the checkpoint's meta fixes (the task module's ``meta_config``: the conformer
        features' version) where it gives none, so that the run goes on as it began whatever
        the defaults now; :class:`ConfigError` when the checkpoint is another task's or its
        config differs in more than the run's length and logging."""
        if "optimizer" not in ckpt and "config" not in ckpt:   # export_model's file
            raise ConfigError(f"{path} is a model file (weights and meta only), not a training "
                              f"checkpoint; use another output dir, or --init with it to start a "
                              f"run from its weights")
        if not isinstance(ckpt.get("config") or {}, dict):   # a hand-edited file: a traceback
            raise _unresumable(path, "its training state cannot be restored (its 'config' must be "
                                     f"a mapping, got {described(ckpt['config'])})")
        meta = ckpt.get("meta", {})
        if meta.get("task") != self.cfg["task"]:
            raise ConfigError(f"{path} was trained for task {meta.get('task')!r}, "
                              f"config says {self.cfg['task']!r}; use another output dir")
        try:
            fixed = module.meta_config(meta) if hasattr(module, "meta_config") else {}
        except ValueError as err:   # a version this molscore does not know
            raise ConfigError(f"{path}: {err}") from err
        saved, cfg = _with_defaults(ckpt.get("config") or {}, fixed), _with_defaults(self.cfg, fixed)
        changed = config_changes({k: v for k, v in saved.items() if k not in RESUME_FREE_KEYS},
                                 {k: v for k, v in cfg.items() if k not in RESUME_FREE_KEYS})
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise ConfigError(f"{path} was trained with another config ({'; '.join(changed[:3])}{more}); "
                              "a resumed run may change only its length and logging: use another "
                              "output dir, or --init with this run's weights to fine-tune")
        return cfg

    def _load(self, path: Path, ckpt: dict) -> None:
        """Restore the states of checkpoint ``ckpt`` (read from ``path``; its config checked by
        :meth:`_resumed_config`)."""
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as err:
            raise ConfigError(f"{path} does not fit the model of this config "
                              f"(changed architecture?): {mismatch_line(err)}") from err
        if "ema" not in ckpt:   # a hand-edited checkpoint: a KeyError traceback
            raise _unresumable(path, "its training state cannot be restored (it has no 'ema')")
        try:
            self.ema.load_state_dict(ckpt["ema"])
        except ValueError as err:  # a hand-edited checkpoint, or another model's EMA
            raise _unresumable(path, f"its {err}") from err
        self.ema.to(self.device)
        try:
            self._load_training_state(ckpt)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as err:
            reason = message_line(err) or type(err).__name__  # a hand-edited or damaged file
            raise _unresumable(path, f"its training state cannot be restored ({reason})") from err
        if self.cfg["init"] is not None and str(self.cfg["init"]) != ckpt["meta"].get("init") \
                and self.info.is_main:
            print(f"{self.out_dir}: resuming its run from step {self.step}; init "
                  f"{self.cfg['init']} is not used (--no-resume starts over from it)", file=sys.stderr)
        if "init" in ckpt["meta"]:  # where the weights came from, whatever this config's init
            self.meta["init"] = ckpt["meta"]["init"]
        if self.info.is_main:
            for record in self._truncate_metrics(self.step):
                self.last_records[record["kind"]] = record

    def _load_training_state(self, ckpt: dict) -> None:
        """Restore the optimiser, schedule, step, RNG states and loss window of ``ckpt``."""
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        # The restored optimiser holds the learning rate the checkpoint's schedule set for the
        # next step; a run made longer (steps/epochs) has another schedule, so set it anew
        # (the same value, bit for bit, when the length is unchanged).
        for group, base_lr, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                          self.scheduler.lr_lambdas):
            group["lr"] = base_lr * factor(self.scheduler.last_epoch)
        self.step = self.resumed_from = int(ckpt["step"])
        states = ckpt["rng"]
        if len(states) == self.info.world_size:
            restore_rng_state(states[self.info.rank])
            windows = ckpt.get("loss_window")
            if windows is not None and len(windows) == self.info.world_size:
                self.loss_window = [float(v) for v in windows[self.info.rank]]
        else:  # a different number of processes: continue, but not bit-for-bit
            _seed_all(_noise_seed(int(self.cfg["seed"]), self.info.rank, self.step))

    def _truncate_metrics(self, step: int) -> list[dict]:
        """Drop records logged after ``step`` by an interrupted run, and a torn last line
        (the record a crash cut short while it was written); returns the records kept."""
        path = self.out_dir / METRICS_NAME
        if not path.is_file():
            return []
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        keep, records = [], []
        for i, line in enumerate(lines):
            try:
                record = json.loads(line)
            except ValueError:
                if i == len(lines) - 1:
                    break
                raise
            if record.get("step", 0) <= step:
                keep.append(line)
                records.append(record)
        text = "".join(line + "\n" for line in keep)
        write_atomic(path, lambda fh: fh.write(text.encode()))   # a crash keeps the old file
        return records

    def save(self) -> Path | None:
        """Write ``checkpoint.pt`` (rank 0; every rank contributes its RNG state and the
        losses of its steps not yet in a train record)."""
        rng = capture_rng_state()
        states, windows = [rng], [list(self.loss_window)]
        if self.info.distributed:
            gathered = [None] * self.info.world_size
            dist.all_gather_object(gathered, (rng, list(self.loss_window)))
            states, windows = [g[0] for g in gathered], [g[1] for g in gathered]
        if not self.info.is_main:
            return None
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": states,
            "loss_window": windows,
            "data_state": {"seed": self.order.seed, **self.order.position(self.step),
                           "batches_per_epoch": self.order.batches_per_epoch},
            "world_size": self.info.world_size,
            "meta": self.meta,
            "config": self.cfg,
        }
        metrics = self.out_dir / METRICS_NAME
        if metrics.is_file():   # on disk before the checkpoint: a power cut leaves no gap
            with open(metrics, "rb") as fh:
                os.fsync(fh.fileno())
        return save_atomic(ckpt, self.out_dir / CHECKPOINT_NAME)

    # -- logging ------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        """Append ``record`` to ``metrics.jsonl`` (rank 0); an ``OSError`` (a full disk) names
        the file."""
        if self.info.is_main:
            path = self.out_dir / METRICS_NAME
            try:
                with open(path, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
            except OSError as err:   # a failed flush names no file
                raise OSError(err.errno, err.strerror or str(err), str(path)) from err

    def _loader(self, dataset: Dataset, start: int, seed: int) -> DataLoader:
        """The training batches ``start .. total_steps - 1``; with ``num_workers``, read by
        worker processes that seed their RNGs per batch (:class:`_SeededBatches`)."""
        workers = int(self.cfg["num_workers"])
        sampler = _BatchSampler(self.order, start, self.total_steps, numbered=workers > 0)
        if workers:
            dataset = _SeededBatches(dataset, int(self.cfg["seed"]), self.info.rank)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=self.task.collate,
                          num_workers=workers, worker_init_fn=_leave_signals_to_main if workers else None,
                          generator=torch.Generator().manual_seed(seed))

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> dict | None:
        """EMA-weight loss on the validation set per bucket of ``t``.

        Each validation batch is scored once per bucket with ``t ~ U(bucket)`` and
        fixed noise (RNGs seeded by ``seed`` and the batch's number), so values are
        comparable across steps and do not depend on the number of processes: under DDP
        the batches are shared out among the ranks and the sums all-reduced (every rank
        must call this, and every rank gets the result). The states of torch's, numpy's
        and Python's ``random`` RNGs are restored afterwards, so the training RNG streams
        are untouched.

        A loss that is not finite is said on stderr (rank 0). Autograd stays on (not
        ``torch.no_grad``): the sliced and exact objectives differentiate the score with
        respect to ``x_t``; the EMA model's weights are frozen, so DSM builds no graph.

        Returns:
            ``{"val_loss": float, "val_loss_bins": [float] * bins, "t_bins": [[lo, hi]]}``
            or ``None`` without a validation set (or with ``val_batches: 0``).
        """
        val_set = self.task.val_set
        if val_set is None or len(val_set) == 0 or self.cfg["val_batches"] == 0:
            return None
        self.ema.copy_to(self.ema_model)
        bins = int(self.cfg["val_bins"])
        edges = torch.linspace(self.sde.eps, self.sde.T, bins + 1)
        bs = int(self.cfg["batch_size"])
        starts = list(range(0, len(val_set), bs))
        cap = self.cfg["val_batches"]
        if cap is not None and cap < len(starts):  # evenly spread, so every part of a mixture counts
            starts = [starts[i] for i in np.linspace(0, len(starts) - 1, cap).round().astype(int)]
        totals = torch.zeros(bins + 1, dtype=torch.float64)   # per-bin loss sums, then count
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), _fork_numpy_and_random_rng():
            for k in range(self.info.rank, len(starts), self.info.world_size):
                _seed_all(int(self.cfg["seed"]) + 7919 + k)
                i = starts[k]
                batch: Batch = self.task.collate([val_set[j] for j in
                                                  range(i, min(i + bs, len(val_set)))])
                batch = batch.to(self.device)
                n = batch.space.num_samples
                for b in range(bins):
                    u = torch.rand(n, device=self.device, dtype=batch.x.dtype)
                    t = edges[b] + (edges[b + 1] - edges[b]) * u
                    losses = self.loss_fn(self.ema_model, self.sde, batch.x, batch.space,
                                          batch.cond, t=t, **self.loss_kwargs)
                    totals[b] += losses.double().sum().item()
                totals[bins] += n
        if self.info.distributed:
            reduced = totals.to(self.device if self.device.type == "cuda" else "cpu")
            dist.all_reduce(reduced)
            totals = reduced.cpu()
        per_bin = (totals[:bins] / max(float(totals[bins]), 1.0)).tolist()
        if self.info.is_main and not all(math.isfinite(v) for v in per_bin):
            # training checks its own loss and gradient only: a diverged run ended in exit 0
            print(f"warning: validation loss is not finite at step {self.step} (bins "
                  f"{', '.join(f'{v:.4g}' for v in per_bin)}): the EMA weights have diverged or "
                  f"overflow; lower optim.lr", file=sys.stderr)
        return {"val_loss": float(np.mean(per_bin)), "val_loss_bins": per_bin,
                "t_bins": [[float(edges[b]), float(edges[b + 1])] for b in range(bins)]}

    # -- training -----------------------------------------------------------------------
    def train_step(self, batch: Batch) -> tuple[float, float]:
        """One optimiser step; returns ``(loss, grad_norm)`` of this rank's batch.

        Raises:
            FloatingPointError: the loss, or the (all-reduced) gradient norm, is not finite;
                nothing has changed the weights, the optimiser or the EMA then.
        """
        self.net.train()
        batch = batch.to(self.device)
        losses = self.loss_fn(self.net, self.sde, batch.x, batch.space, batch.cond,
                              **self.loss_kwargs)
        loss = losses.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()} at step {self.step + 1}; "
                                     f"lower optim.lr or enable optim.grad_clip")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg["optim"]["grad_clip"]
        params = [p for p in self.model.parameters() if p.grad is not None]
        if clip:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        else:
            grad_norm = torch.linalg.vector_norm(
                torch.stack([p.grad.detach().norm() for p in params])) if params else torch.zeros(())
        if not torch.isfinite(grad_norm):   # the optimiser would make every weight NaN, and the
            #                                 step's checkpoint replace the last good one
            raise FloatingPointError(f"gradient norm is {float(grad_norm)} at step {self.step + 1} "
                                     f"(the loss was finite); the weights are those of step "
                                     f"{self.step}: lower optim.lr, or look for a derivative "
                                     f"that is not finite in the network")
        self.last_lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        self.step += 1
        return float(loss.detach()), float(grad_norm)

    def _mean_across_ranks(self, value: float) -> float:
        if not self.info.distributed:
            return value
        v = torch.tensor([value], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(v)
        return float(v.item()) / self.info.world_size

    def fit(self) -> dict:
        """Train up to ``total_steps``; returns the run summary (also ``summary.json``)."""
        cfg = self.cfg
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.resumed_from is None:  # a new run: the old run's records and checkpoint
                #                            go (a crash before this run's first checkpoint
                #                            would otherwise resume the old run next time)
                (self.out_dir / METRICS_NAME).write_text("")
                (self.out_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
            config = yaml.safe_dump(cfg, sort_keys=False).encode()
            write_atomic(self.out_dir / "config.yaml", lambda fh: fh.write(config))
        start, t0 = self.step, time.time()
        window = self.loss_window  # restored on resume: the next train record averages all
        #                            the steps since the last one, as in an unbroken run
        # a resumed run that logs nothing (rerun when finished) reports the run's last records
        last_loss = self.last_records.get("train", {}).get("loss")
        last_val = self.last_records.get("val", {}).get("val_loss")
        loader = self._loader(self.task.train_set, start,
                              seed=int(cfg["seed"]) * 1_000_003 + start * 101 + self.info.rank)
        bar = tqdm(total=self.total_steps, initial=start, disable=not self.progress,
                   desc="train", dynamic_ncols=True)
        saved_at = None
        stop = _StopRequest(enabled=not self.info.distributed)
        try:
            stop.install()
            for batch in loader:
                loss, grad_norm = self.train_step(batch)
                window.append(loss)
                bar.update(1)
                if self.step % cfg["log_every"] == 0 or self.step == self.total_steps:
                    last_loss = self._mean_across_ranks(float(np.mean(window)))
                    window.clear()
                    self._log({"kind": "train", "step": self.step, "loss": last_loss,
                               "lr": self.last_lr, "grad_norm": grad_norm,
                               "epoch": self.order.position(self.step - 1)["epoch"],
                               "time_s": round(time.time() - t0, 3)})
                    bar.set_postfix(loss=f"{last_loss:.4g}")
                if self.step % cfg["val_every"] == 0 or self.step == self.total_steps:
                    val = self.validate()
                    if val is not None:
                        last_val = val["val_loss"]
                        self._log({"kind": "val", "step": self.step, **val})
                if self.step % cfg["ckpt_every"] == 0 or self.step == self.total_steps:
                    self.save()
                    saved_at = self.step
                if stop.requested is not None and self.step < self.total_steps:
                    raise stop.exception()   # a signal during this step: stop between steps
        except (KeyboardInterrupt, Terminated):
            # only a stop the handler made between two steps: a second signal, or an interrupt
            # raised by other code, may have hit mid-step or after the next batch's draws
            if (stop.requested is not None and not stop.forced and self.step > start
                    and saved_at != self.step):
                self.save()
            raise
        finally:
            stop.uninstall()
            bar.close()
        if self.step == start and (self.resumed_from is None or cfg["steps"] == 0):
            # a run of no steps (``steps: 0``): score the starting weights (a resumed run's:
            # its checkpoint's) and write the checkpoint the summary names
            val = self.validate()
            if val is not None:
                last_val = val["val_loss"]
                self._log({"kind": "val", "step": self.step, **val})
            if self.resumed_from is None:
                self.save()
        elapsed = time.time() - t0
        summary = {
            "out_dir": str(self.out_dir), "checkpoint": str(self.out_dir / CHECKPOINT_NAME),
            "task": self.meta["task"], "steps": self.step, "steps_this_run": self.step - start,
            "resumed_from": self.resumed_from, "final_loss": last_loss, "val_loss": last_val,
            "device": str(self.device), "world_size": self.info.world_size,
            "time_s": round(elapsed, 3),
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
        }
        if self.info.is_main:
            text = (json.dumps(summary, indent=2) + "\n").encode()
            write_atomic(self.out_dir / "summary.json", lambda fh: fh.write(text))
        if stop.requested is not None:  # during the last step (or after it): the run is finished,
            #                             and the command still ends as the signal ends it
            print(f"molscore train: the run is finished (step {self.step} of {self.total_steps}; "
                  f"{self.out_dir / 'summary.json'})", file=sys.stderr)
            raise stop.exception()
        return summary

    def close(self) -> None:
        """Leave the process group if this trainer created one."""
        if self.info.distributed and dist.is_initialized():
            dist.destroy_process_group()


def train(cfg: dict, out_dir: str | os.PathLike, *, resume: bool = True, device: str = "auto",
          progress: bool = True) -> dict:
    """Train the config's task into ``out_dir``; returns the summary dict.

    See the module docstring for the config keys. Raises :class:`ConfigError` for a
    config that cannot work.
    """
    with _only_run_in(Path(out_dir), DistInfo.from_env().is_main):
        trainer = Trainer(cfg, out_dir, resume=resume, device=device, progress=progress)
        try:
            return trainer.fit()
        finally:
            trainer.close()


@contextlib.contextmanager
def _only_run_in(out_dir: Path, lock: bool) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir/.lock`` (``lock``: the main process of a run) while
    training: two runs in one folder would overwrite each other's checkpoint and records. The
    lock ends with this process, whatever children it forked (:mod:`molscore.locks`).

    Raises:
        ConfigError: another process holds the lock.
    """
    if not lock:
        yield
        return
    made = locks.make_folder(out_dir)
    try:
        try:
            fh = locks.acquire(out_dir / LOCK_NAME)
        except BlockingIOError:
            raise ConfigError(f"{out_dir} is in use by another training run (it holds "
                              f"{out_dir / LOCK_NAME}); wait for it to end, or use "
                              "another output dir") from None
        try:
            yield
        finally:
            locks.release(fh)
    finally:
        locks.discard_folder(made, LOCK_NAME)   # a run that wrote nothing (a config error)
                                                # leaves no folder of its own behind
