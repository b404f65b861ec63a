"""Task module for C-alpha traces (protein-like point clouds) on the shared engine.

Config sections read here (see ``configs/ca_traces.yaml``)::

    data:
      npz: datasets/pdb_ca_traces_308.npz   # relative to the working directory or the repo
      structures: []          # extra .pdb / .cif / .pdbx / .bcif files, a list or one path
                              # (bad files are reported, counted and skipped)
      crop_length: 64         # residues per training crop
      coord_scale: 10.0       # Å per model unit
      val_fraction: 0.1       # held-out structures
      split_seed: 0
      crops_per_segment: 1    # training items per chain segment and epoch
    model:
      backbone: painn         # or e3nn; see molscore.models.equivariant
      k: 16                   # spatial nearest neighbours
      max_offset: 3           # sequence neighbours |i - j| <= max_offset
      parameterisation: eps
      hparams: {...}          # backbone sizes, merged into the defaults (rbf_max in model units)
    sde: {name: ve, sigma_min: 0.01, sigma_max: 10.0}   # model units; replaces the default

Coordinates are centred per crop (CoM-free :class:`~molscore.spaces.PointSetSpace`) and
divided by ``coord_scale``; ``meta`` stores it, and samples are multiplied back to Å.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import UsageError
from ..models.chain_graph import ChainGraphNet, chain_batch
from ..models.param import ScoreModel
from ..paths import resolve_data_path
from ..samplers import sample
from ..sde import make_sde
from ..spaces import PointSetSpace
from ..tasks import (Batch, TrainTask, check_meta_int, check_meta_scale, config_number, is_int,
                     sde_from_config)
from .ca_metrics import trace_summary
from .ca_traces import (PDB_MAX_MODELS, PDB_MAX_RESIDUES, CATraceCrops, StructureReadError, Trace,
                        load_npz_traces, read_structure_files, split_by_structure,
                        write_ca_pdb)

__all__ = ["DEFAULTS", "DEFAULT_HPARAMS", "load_traces", "collate", "build_task", "build_model",
           "generate", "sample_command"]

DEFAULT_STEPS = 500

DEFAULTS = {
    "data": {"npz": "datasets/pdb_ca_traces_308.npz", "structures": [], "crop_length": 64,
             "coord_scale": 10.0, "val_fraction": 0.1, "split_seed": 0, "crops_per_segment": 1},
    "model": {"backbone": "painn", "k": 16, "max_offset": 3, "num_freqs": 8,
              "parameterisation": "eps", "hparams": {}},
    "sde": {"name": "ve", "sigma_min": 0.01, "sigma_max": 10.0},
}

DEFAULT_HPARAMS = {
    "painn": {"hidden_scalar": 64, "hidden_vector": 16, "num_layers": 4, "rbf_max": 2.0,
              "num_rbf": 16},
    "e3nn": {"ns": 32, "nv": 8, "num_layers": 3, "rbf_max": 2.0, "num_rbf": 16},
}
"""Backbone sizes used unless ``model.hparams`` overrides them (distances in model units)."""


def _section(cfg: dict, key: str) -> dict:
    given = cfg.get(key) or {}
    if not isinstance(given, dict):
        raise ValueError(f"config section '{key}' must be a mapping, got {given!r}")
    if key == "sde":  # a given SDE section replaces the default one (other SDEs, other keys)
        return dict(given) if given else dict(DEFAULTS["sde"])
    unknown = set(given) - set(DEFAULTS[key])
    if unknown:
        raise ValueError(f"unknown {key} options for ca_traces: {', '.join(sorted(unknown))}; "
                         f"valid: {', '.join(DEFAULTS[key])}")
    return {**DEFAULTS[key], **given}


def _found_or_given(path: str) -> Path:
    """:func:`~molscore.paths.resolve_data_path`, or ``path`` as given when it is nowhere
    (:func:`read_structure_files` then reports it and goes on)."""
    try:
        return resolve_data_path(path)
    except FileNotFoundError:
        return Path(path)


def load_traces(data_cfg: dict, warn: Callable[[str], None] | None = None) -> list[Trace]:
    """All chain segments of the configured sources with at least ``crop_length`` residues.

    ``structures`` is a list of paths or one path. Unreadable structure files are passed
    to ``warn`` (one line each, then ``skipped K of N structure files``) and skipped.

    Raises:
        ValueError: ``npz`` is missing or unreadable (``data.npz: ...``, one line), or no
            chain segment is long enough.
    """
    min_len = int(data_cfg["crop_length"])
    report = warn or (lambda m: print(f"warning: {m}", file=sys.stderr))
    traces = []
    if data_cfg.get("npz"):
        try:
            traces += load_npz_traces(resolve_data_path(data_cfg["npz"]), min_length=min_len)
        except (FileNotFoundError, StructureReadError) as err:
            raise ValueError(f"data.npz: {err}") from None
    given = data_cfg.get("structures") or []
    if isinstance(given, (str, os.PathLike)):  # one path, not a sequence of characters
        given = [given]
    files = [_found_or_given(p) for p in given]
    skipped = ""
    if files:
        more, errors = read_structure_files(files, min_length=min_len)
        for e in errors:
            report(e)
        if errors:
            skipped = f"skipped {len(errors)} of {len(files)} structure files"
            report(skipped)
        traces += more
    if not traces:
        raise ValueError(f"no chain segment of at least {min_len} residues in the configured data"
                         + (f" ({skipped}: see the warnings)" if skipped else ""))
    return traces


def collate(items: Sequence[Tensor]) -> Batch:
    """Crops ``(n_i, 3)`` -> :class:`Batch` with ``x`` ``(sum n_i, 3)``, a CoM-free
    :class:`PointSetSpace` and the chain graph batch as ``cond``."""
    cond = chain_batch([len(x) for x in items])
    return Batch(torch.cat(list(items)), PointSetSpace(cond.batch, len(items)), cond)


def build_model(meta: dict) -> ScoreModel:
    """The :class:`ScoreModel` described by ``meta["net"]``, ``meta["sde"]`` and
    ``meta["parameterisation"]``.

    Raises:
        ValueError: ``coord_scale`` is not a positive number or ``crop_length`` not a positive
            integer (what ``molscore sample`` reads besides the model).
    """
    check_meta_scale(meta, "coord_scale")
    check_meta_int(meta, "crop_length")
    sde_cfg = dict(meta["sde"])
    return ScoreModel(ChainGraphNet(**meta["net"]), make_sde(sde_cfg.pop("name"), **sde_cfg),
                      meta.get("parameterisation", "eps"))


def build_task(cfg: dict) -> TrainTask:
    """Crops of held-in structures for training, fixed crops of held-out structures for
    validation, the chain-graph model and its ``meta``.

    Raises:
        ValueError: an unknown key, a value that cannot work (``data.val_fraction`` outside
            ``[0, 1)``: 2 held out all structures but one; ``data.coord_scale`` not positive:
            0 made the first loss NaN; ``data.crop_length`` / ``crops_per_segment`` not
            integers >= 2 / 1; ``model.parameterisation`` ``energy``, which needs a network
            returning energies), or no usable trace.
    """
    data_cfg, model_cfg = _section(cfg, "data"), _section(cfg, "model")
    sde = sde_from_config(_section(cfg, "sde"))
    val_fraction = config_number(data_cfg["val_fraction"], "data.val_fraction", 0.0)
    if val_fraction >= 1:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction:g}")
    scale = config_number(data_cfg["coord_scale"], "data.coord_scale", 0.0)
    if scale == 0:
        raise ValueError("data.coord_scale must be positive (Å per model unit), got 0")
    for key, least in (("crop_length", 2), ("crops_per_segment", 1)):
        value = data_cfg[key]  # 16.7 was cut to 16; crops_per_segment -2 a traceback
        if not is_int(value) or value < least:
            raise ValueError(f"data.{key} must be an integer >= {least}, got {value!r}")
    if model_cfg["parameterisation"] == "energy":
        # the chain-graph net returns a vector per residue, not an energy per trace: their sum
        # is no rotation-invariant energy, and its gradient no equivariant score
        raise ValueError("model.parameterisation 'energy' needs a network that returns an "
                         "energy per sample; the chain-graph net returns vectors (use eps, "
                         "score or denoiser)")
    traces = load_traces(data_cfg)
    train, val = split_by_structure(traces, val_fraction, int(data_cfg["split_seed"]))
    crop = int(data_cfg["crop_length"])
    train_set = CATraceCrops(train, crop, coord_scale=scale,
                             crops_per_segment=int(data_cfg["crops_per_segment"]))
    val_set = CATraceCrops(val, crop, coord_scale=scale, deterministic=True,
                           seed=int(data_cfg["split_seed"])) if val else None
    net_cfg = {"backbone": model_cfg["backbone"], "k": int(model_cfg["k"]),
               "max_offset": int(model_cfg["max_offset"]), "num_freqs": int(model_cfg["num_freqs"]),
               **DEFAULT_HPARAMS.get(model_cfg["backbone"], {}), **dict(model_cfg["hparams"] or {})}
    meta = {"task": "ca_traces", "net": net_cfg, "sde": sde.config(),
            "parameterisation": str(model_cfg["parameterisation"]), "coord_scale": scale,
            "crop_length": crop,
            "data": {"npz": str(data_cfg["npz"]), "val_fraction": val_fraction,
                     "split_seed": int(data_cfg["split_seed"]),
                     "val_structures": sorted({t.structure for t in val})}}
    return TrainTask(model=build_model(meta), train_set=train_set, collate=collate, meta=meta,
                     val_set=val_set, extras={"train_traces": train, "val_traces": val})


@torch.no_grad()
def generate(model: ScoreModel, meta: dict, n: int, length: int, *, sampler: str = "pc",
             steps: int = DEFAULT_STEPS, generator: torch.Generator | None = None,
             disable: bool = True, **opts) -> tuple[list[np.ndarray], int]:
    """Sample ``n`` traces of ``length`` residues; returns arrays ``(length, 3)`` in Å and the
    number of score evaluations."""
    device = next(model.parameters()).device
    cond = chain_batch([length] * n).to(device)
    space = PointSetSpace(cond.batch, n)
    x = model.sde.prior_sample(space, device=device, generator=generator)
    res = sample(sampler, lambda y, t: model(y, t, space, cond), model.sde, space, x, steps,
                 generator=generator, disable=disable, **opts)
    coords = (res.x * float(meta["coord_scale"])).double().cpu().numpy()
    return list(coords.reshape(n, length, 3)), res.nfe


def sample_command(model: ScoreModel, meta: dict, args: argparse.Namespace) -> int:
    """``molscore sample`` for C-alpha checkpoints: ``-n`` traces of ``--length`` residues
    (default: the training crop length) written to ``-o traces.pdb``, one MODEL each."""
    out = Path(args.output)
    if out.suffix.lower() != ".pdb":
        raise UsageError(f"-o {out}: C-alpha traces are written as .pdb")
    for opt in ("inpaint", "mask", "label", "guidance"):
        if getattr(args, opt, None) is not None:
            raise UsageError(f"--{opt} is for image checkpoints; this one is C-alpha traces")
    length = int(args.length or meta["crop_length"])
    if not 4 <= length <= PDB_MAX_RESIDUES:
        raise UsageError(f"--length must be 4 to {PDB_MAX_RESIDUES} residues (a PDB chain), "
                         f"got {length}")
    if args.n > PDB_MAX_MODELS:
        raise UsageError(f"-n must be at most {PDB_MAX_MODELS} (the models of a PDB file), "
                         f"got {args.n}")
    steps = int(args.steps or DEFAULT_STEPS)
    try:  # before sampling, so that an unwritable -o does not cost the run
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError.cannot_write(err, out) from None
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(int(args.seed))
    torch.manual_seed(int(args.seed))
    traces, nfe = generate(model, meta, int(args.n), length, sampler=args.sampler, steps=steps,
                           generator=gen, disable=not getattr(args, "progress", False))
    try:
        write_ca_pdb(out, traces)
    except ValueError as err:
        raise UsageError(f"samples could not be written: {err}; try more --steps or "
                         "another --sampler") from None
    except OSError as err:
        raise UsageError.cannot_write(err, out) from None
    s = trace_summary(traces)
    print(f"wrote {len(traces)} C-alpha traces of {length} residues to {out}; sampler "
          f"{args.sampler}, {steps} steps, {nfe} score evaluations; consecutive C-alphas within "
          f"3.8 +/- 0.2 A: {100 * s['bond_fraction_3.8pm0.2']:.1f}%, clashing residues: "
          f"{100 * s['clash_residue_fraction']:.1f}%")
    return 0
