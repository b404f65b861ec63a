"""What training and sampling need from a data space, and the registry of spaces.

A *task* module (toy densities, conformers, images, C-alpha traces) exposes

* ``build_task(config: dict) -> TrainTask``: model, datasets and collate function for training;
* ``build_model(meta: dict) -> ScoreModel``: rebuild the model from a checkpoint's ``meta``
  (``ValueError`` for a meta field its commands read that is of the wrong kind);
* optionally ``meta_config(meta: dict) -> dict``: the config values a checkpoint's ``meta``
  fixes, as a partial config (conformers: ``{"model": {"featurisation": ...}}``). A run
  resuming the checkpoint takes them where its config gives none (so that it goes on as it
  began whatever the defaults now); a run starting from its weights (``init``) with other
  values is told it is a warm start.

``meta`` is a plain, JSON-like dict stored in every checkpoint (task name, network
hyper-parameters, SDE config, parameterisation, ...), so that a checkpoint alone
is enough to sample: no extra flags.
"""
from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .errors import described
from .models.param import ScoreModel
from .sde import SDE, SDE_NAMES, make_sde
from .spaces import Space

__all__ = ["Batch", "TrainTask", "TASKS", "get_task_module", "to_device", "ConfigError",
           "check_keys", "config_number", "is_int", "sde_from_config", "check_meta_int",
           "check_meta_scale"]

# task name -> module implementing build_task / build_model
TASKS = {
    "toy": "molscore.data.toy_task",
    "conformers": "molscore.chem.task",
    "images": "molscore.data.image_task",
    "ca_traces": "molscore.data.ca_task",
}


class ConfigError(ValueError):
    """A training config that cannot work (missing keys, bad values)."""


def check_keys(section: dict, known: Iterable[str], where: str) -> None:
    """:class:`ConfigError` naming the first key (sorted) of config ``section`` not in
    ``known``, and listing ``known`` in the order given: such a key would be ignored silently."""
    known = list(known)
    unknown = sorted(set(section) - set(known), key=str)
    if unknown:
        raise ConfigError(f"{where} has no key {unknown[0]!r}; choose from {', '.join(known)}")


def is_int(value: Any) -> bool:
    """Whether a config value is an integer (YAML's ``true`` / ``false`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def config_number(value: Any, name: str, minimum: float = -math.inf) -> float:
    """``float(value)`` of the config key ``name``, or :class:`ConfigError` when it is not a
    finite number (``>= minimum`` when one is given)."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan    # YAML's yes / no
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < minimum:
        bound = f" >= {minimum:g}" if minimum > -math.inf else ""
        raise ConfigError(f"{name} must be a finite number{bound}, got {value!r}")
    return number


def check_meta_int(meta: dict, key: str, minimum: int = 1) -> None:
    """``ValueError`` (``KeyError`` when missing) unless a checkpoint meta's ``meta[key]`` is
    an integer >= ``minimum``: ``build_model`` checks the numbers its task's commands read."""
    if not is_int(meta[key]) or meta[key] < minimum:
        raise ValueError(f"meta {key!r} must be an integer >= {minimum}, got {described(meta[key])}")


def check_meta_scale(meta: dict, key: str) -> None:
    """``ValueError`` (``KeyError`` when missing) unless a checkpoint meta's ``meta[key]`` is a
    positive finite number (a coordinate scale)."""
    value = meta[key]
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or value <= 0):
        raise ValueError(f"meta {key!r} must be a positive number, got {described(value)}")


def sde_from_config(section: Any) -> SDE:
    """The SDE of a training config's ``sde`` section, ``{name: ve|vp|subvp, <schedule
    options>}``; each option a number (or a string ``float`` reads, as YAML leaves ``1e-3``).

    Raises:
        ConfigError: (one line) the section is not a mapping with a ``name``, the name is
            unknown, an option is not one the SDE takes (``sigma_max`` for ``vp``) or not a
            finite number, or the values are out of range.
    """
    if not isinstance(section, dict) or "name" not in section:
        raise ConfigError(f"sde must be a mapping with a 'name' ({', '.join(SDE_NAMES)}), "
                          f"got {section!r}")
    options = dict(section)
    name = options.pop("name")
    if not isinstance(name, str) or name not in SDE_NAMES:
        raise ConfigError(f"unknown SDE {name!r}; choose from {', '.join(SDE_NAMES)}")
    allowed = list(inspect.signature(SDE_NAMES[name]).parameters)
    unknown = sorted(set(options) - set(allowed), key=str)
    if unknown:
        raise ConfigError(f"sde {name!r} takes no option {unknown[0]!r}; choose from "
                          f"{', '.join(allowed)}")
    values = {key: config_number(value, f"sde.{key}") for key, value in options.items()}
    try:
        return make_sde(name, **values)
    except ValueError as err:       # the SDE's own range checks
        raise ConfigError(f"sde: {err}") from None


def to_device(obj: Any, device: torch.device | str) -> Any:
    """Move tensors (and objects with ``.to``, dicts, lists, tuples of them) to ``device``."""
    if obj is None:
        return None
    if hasattr(obj, "to") and not isinstance(obj, Space):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


@dataclass
class Batch:
    """One training or sampling batch as the engine sees it.

    Attributes:
        x: data rows; ``(B, ...)`` for dense data, ``(N, 3)`` for point sets.
        space: how the rows form samples (see :mod:`molscore.spaces`).
        cond: whatever the network needs besides ``x`` and ``t`` (a PyG graph batch,
            class labels, ...); ``None`` when unconditional.
    """

    x: Tensor
    space: Space
    cond: Any = None

    def to(self, device: torch.device | str) -> "Batch":
        space = self.space.to(device) if hasattr(self.space, "to") else self.space
        return Batch(self.x.to(device), space, to_device(self.cond, device))


@dataclass
class TrainTask:
    """Everything the generic training loop needs for one space.

    Attributes:
        model: the network wrapped in its parameterisation (holds the SDE).
        train_set: a map-style dataset of items that ``collate`` turns into a :class:`Batch`.
        val_set: optional validation dataset.
        collate: ``list[item] -> Batch``.
        meta: JSON-like dict saved in checkpoints; ``build_model(meta)`` rebuilds ``model``.
    """

    model: ScoreModel
    train_set: Dataset
    collate: Callable[[list], Batch]
    meta: dict
    val_set: Dataset | None = None
    extras: dict = field(default_factory=dict)


def get_task_module(name: str):
    """Import the module of task ``name``; unknown names raise ``ValueError`` listing the choices."""
    try:
        return importlib.import_module(TASKS[name])
    except (KeyError, TypeError):   # TypeError: a list or mapping (unhashable)
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None
