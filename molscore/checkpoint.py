"""Checkpoints: atomic writes, safe loading, RNG state capture, and model rebuilding.

A training checkpoint (``checkpoint.pt``) is a plain dict loadable with
``torch.load(path, weights_only=True)``::

    {"format": 1, "step": int, "model": state_dict, "ema": EMA.state_dict(),
     "optimizer": ..., "scheduler": ..., "rng": [capture_rng_state() per rank],
     "loss_window": [[float] per rank],   # losses of the steps since the last train record
     "data_state": {...}, "meta": task meta (JSON-like), "config": training config}

An exported model file (:func:`export_model`) holds only ``{"format", "model", "meta"}``.
A conformer model's meta records the version of the graph features it reads
(``meta["featurisation"]``, :mod:`molscore.chem.featurize`; version 1 where it has none).
:func:`load_checkpoint_model` reads either kind. :func:`load_checkpoint` refuses, in one line,
a file whose ``model`` (or ``ema["shadow"]``) is not a mapping of names to tensors or whose
``meta`` is not a dict naming its task, or whose ``format`` (where it has one) is not
:data:`CHECKPOINT_FORMAT`; each task's ``build_model`` checks the meta values its commands read.
"""
from __future__ import annotations

import errno
import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from .errors import described, message_line
from .models.param import ScoreModel
from .tasks import get_task_module

__all__ = ["CHECKPOINT_FORMAT", "write_atomic", "save_atomic", "load_torch_file",
           "load_checkpoint", "capture_rng_state", "restore_rng_state", "check_finite",
           "load_weights", "load_checkpoint_model", "export_model", "mismatch_line"]

CHECKPOINT_FORMAT = 1


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """``write(fh)`` to ``path.tmp``, ``fsync`` it, ``os.replace`` it and ``fsync`` the folder:
    a crash (of the process or of the machine) or a failed write (a full disk) leaves the old
    file or the new one, never a torn one. The temporary file is removed when ``write`` fails, or when
    the file is shorter than what ``write`` wrote (``numpy.save`` ignores a failed write);
    an ``OSError`` names ``path``, not the temporary file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            if os.fstat(fh.fileno()).st_size < fh.tell():
                raise OSError(errno.EIO, "written short (a full disk or a file-size limit?)")
            os.fsync(fh.fileno())  # else the rename can reach the disk before the data
        os.replace(tmp, path)
        _fsync_folder(path.parent)  # the rename itself on disk: a power cut keeps the new file
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _fsync_folder(folder: Path) -> None:
    """``fsync`` a folder (its entries: a rename in it), where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:         # some file systems refuse fsync on a folder: nothing more to do
        pass
    finally:
        os.close(fd)


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` (its folder made if needed) with
    :func:`write_atomic`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda fh: torch.save(obj, fh))


def load_torch_file(path: str | os.PathLike, map_location: Any = "cpu",
                    what: str = "checkpoint") -> Any:
    """What ``torch.save`` wrote to ``path``, loaded with ``weights_only=True``; clear one-line
    errors naming ``what`` (``cannot read classifier PATH: ...``) for missing, foreign or
    damaged files (every member's CRC-32 is checked first: ``torch.load`` reads a file with
    changed bytes silently). Its content is not checked: see :func:`load_checkpoint`."""
    path = Path(path)
    if path.is_dir():  # a run's folder given for its checkpoint: "not found" misled
        raise FileNotFoundError(f"{path} is a folder, not a {what} file" + (
            f" (a training run's checkpoint is {path / 'checkpoint.pt'})"
            if what == "checkpoint" else ""))
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not zipfile.is_zipfile(path):       # what torch.save writes
        with open(path, "rb") as fh:
            head = fh.read(4)
        reason = ("an empty file (0 bytes)" if not head else
                  "truncated (a zip archive without its end: written or copied only in part?)"
                  if head == b"PK\x03\x04" else "not a PyTorch checkpoint (zip) file")
        raise ValueError(f"cannot read {what} {path}: {reason}")
    try:                                   # torch.load does not check the members' CRC-32
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"cannot read {what} {path}: {err}") from err
    if damaged is not None:
        raise ValueError(f"cannot read {what} {path}: damaged (the checksum of its member "
                         f"{damaged} does not match)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # torch's weights_only refusal: a page of advice
        raise ValueError(f"cannot read {what} {path}: it holds pickled objects other than "
                         f"tensors and plain containers, which molscore never unpickles") from err
    except Exception as err:  # a damaged archive
        reason = message_line(err) or type(err).__name__
        raise ValueError(f"cannot read {what} {path}: {reason}") from err


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint dict with :func:`load_torch_file` (one-line errors for missing,
    foreign or damaged files) and check its format and structure (the same)."""
    ckpt = load_torch_file(path, map_location)
    _check_format(ckpt, Path(path))
    _check_structure(ckpt, Path(path))
    return ckpt


def _check_format(ckpt: Any, path: Path) -> None:
    """``ValueError`` when ``ckpt`` records a ``format`` other than :data:`CHECKPOINT_FORMAT`
    (a later molscore's layout would be read as this one's); a file without the key (written
    by hand) is read as this format."""
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        return
    found = ckpt["format"]
    if type(found) is not int or found != CHECKPOINT_FORMAT:   # True == 1: not a format
        raise ValueError(f"{path}: checkpoint format {found!r}, but this molscore reads format "
                         f"{CHECKPOINT_FORMAT} (was it written by a newer molscore?)")


def _check_structure(ckpt: Any, path: Path) -> None:
    """``ValueError``, ``PATH is not a molscore checkpoint (WHY)``, unless ``ckpt`` is a dict
    whose ``model`` (and ``ema["shadow"]``, where it has an ``ema``) map parameter names to
    tensors and whose ``meta`` is a dict naming its ``task``: what every loader reads before
    the task module checks the rest of the meta (``build_model``). A list there was an
    ``AttributeError`` or ``TypeError`` traceback."""
    def refuse(why: str) -> None:
        raise ValueError(f"{path} is not a molscore checkpoint ({why})")

    if not isinstance(ckpt, dict) or "model" not in ckpt or "meta" not in ckpt:
        refuse("needs 'model' and 'meta'")
    ema = ckpt.get("ema")
    if "ema" in ckpt and not (isinstance(ema, dict) and "shadow" in ema):
        refuse(f"its 'ema' must be a dict with a 'shadow', got {described(ema)}")
    states = {"model": ckpt["model"], **({"ema.shadow": ema["shadow"]} if ema else {})}
    for key, weights in states.items():
        if not isinstance(weights, dict):
            refuse(f"its '{key}' must map parameter names to tensors, got {described(weights)}")
        for name, value in weights.items():
            if not isinstance(name, str) or not torch.is_tensor(value):
                entry = (f"{name!r}: {described(value)}" if isinstance(name, str)
                         else f"the key {described(name)}")
                refuse(f"its '{key}' must map parameter names to tensors, got {entry}")
    meta = ckpt["meta"]
    if not isinstance(meta, dict):
        refuse(f"its 'meta' must be a dict, got {described(meta)}")
    if not isinstance(meta.get("task"), str):
        refuse(f"its meta's 'task' must be a task name, got {described(meta['task'])}"
               if "task" in meta else "its meta has no 'task'")


def capture_rng_state() -> dict:
    """RNG states of torch (CPU and CUDA), numpy and python ``random`` as tensors/numbers."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def check_finite(state_dict: dict, what: str = "weights") -> None:
    """Raise ``ValueError`` naming the first tensor with NaN or inf entries."""
    for name, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{what} contain NaN/inf values (first bad tensor: {name!r}); "
                             f"the run diverged -- use an earlier checkpoint or a lower lr")


def _weights(ckpt: dict, ema: bool) -> dict:
    if ema and "ema" in ckpt:
        return ckpt["ema"]["shadow"]
    return ckpt["model"]


def load_weights(path: str | os.PathLike, ema: bool = True) -> tuple[dict, dict]:
    """The (EMA) ``state_dict`` and meta of a checkpoint or exported model file, on CPU.

    Raises:
        FileNotFoundError / ValueError: missing, unreadable, or non-finite checkpoints.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    weights = _weights(ckpt, ema)
    check_finite(weights, f"weights in {path}")
    return weights, ckpt["meta"]


def load_checkpoint_model(path: str | os.PathLike, ema: bool = True,
                          device: torch.device | str = "cpu",
                          task: str | None = None) -> tuple[ScoreModel, dict]:
    """Rebuild the model of a checkpoint (or exported model file) in eval mode.

    Uses ``get_task_module(meta["task"]).build_model(meta)``, so the checkpoint alone
    suffices. ``ema=True`` loads the EMA weights when the file has them. ``task``: the task
    the caller can use (``None``: any); a file of another task is refused before its model
    is built (an image model given to ``generate --model`` was a traceback from inside the
    network, at the first molecule).

    Returns:
        ``(model, meta)``.

    Raises:
        FileNotFoundError / ValueError: missing, unreadable, or non-finite checkpoints, a
            file of another task than ``task``, or a meta the model cannot be built from or
            whose model the weights do not fit.
    """
    weights, meta = load_weights(path, ema)
    if task is not None and meta["task"] != task:
        raise ValueError(f"{path} is a model of task {meta['task']!r}, not {task!r}")
    try:
        module = get_task_module(meta["task"])
    except ValueError as err:   # a name this molscore does not know
        raise ValueError(f"{path}: {err}") from None
    try:
        model = module.build_model(meta)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: cannot build the model its meta describes "
                         f"({type(err).__name__}: {message_line(err)})") from err
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{path}: the weights do not fit the model its meta describes "
                         f"({mismatch_line(err)})") from err
    return model.to(device).eval(), meta


def mismatch_line(err: RuntimeError, shown: int = 3) -> str:
    """The first thing a ``load_state_dict`` error lists (its message is ``Error(s) in loading
    state_dict for ScoreModel:``, then one line each), a list of keys (``Unexpected key(s) in
    state_dict: "a", "b", ...``: every parameter of a missing layer, a thousand characters)
    cut to the first ``shown`` and how many more."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    line = lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__
    head, sep, names = line.partition(": ")
    keys = re.findall(r'"[^"]*"', names)
    if not sep or len(keys) <= shown:
        return line
    return f"{head}: {', '.join(keys[:shown])} and {len(keys) - shown} more"


def export_model(checkpoint: str | os.PathLike, out: str | os.PathLike, ema: bool = True) -> Path:
    """Write a small file with only the (EMA) weights and meta of a training checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    weights = _weights(ckpt, ema)
    check_finite(weights, f"weights in {checkpoint}")
    return save_atomic({"format": CHECKPOINT_FORMAT, "model": weights, "meta": ckpt["meta"]}, out)

