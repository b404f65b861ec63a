"""The ``images`` task: U-Net score models on integer images, through the shared engine.

Config (``configs/digits.yaml``, ``configs/mnist.yaml``)::

    task: images
    data:  {source: digits | mnist | path.npz | png_folder, holdout: 0.1, split_seed: 0,
            dequantize: true}
    model: {channels: 32, ch_mult: [1, 2], num_res_blocks: 1, dropout: 0.0,
            conditional: true, label_dropout: 0.1, parameterisation: eps}
    sde:   {name: vp, beta_min: 0.1, beta_max: 20.0}

Images are integers in ``{0..L-1}``; the model sees ``y = 2 (x + u) / L - 1`` with
``u ~ U[0, 1)`` when ``dequantize`` is true (default; the same map as the
bits/dim evaluation) and ``u = 1/2`` otherwise; see :mod:`molscore.data.images`.
The held-out split (``holdout`` fraction, seeded) is the validation set and the
reference set of the image metrics.

Sampling (``molscore sample``) handles class labels with classifier-free guidance,
``s = (1 + w) s(x | y) - w s(x | null)``, and inpainting through the samplers'
``mask`` / ``x_known`` conditioning; both are plain score-function closures, so
the engine stays image-agnostic.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import UsageError, described
from ..models.param import ScoreModel
from ..models.unet import UNet
from ..sde import make_sde
from ..spaces import DenseSpace
from ..tasks import (Batch, TrainTask, check_keys, check_meta_int, config_number, is_int,
                     sde_from_config)
from .images import (ImageError, ImageSet, levels_from_8bit, load_image_source, read_mask,
                     read_png, save_grid, split_holdout, to_levels, to_model_space)

__all__ = ["ImageDataset", "build_task", "build_model", "make_collate", "load_task_data",
           "guided_score_fn", "read_inpaint_pairs", "generate", "sample_command",
           "bits_per_dim_of", "DEFAULT_STEPS"]

DEFAULT_STEPS = 500
NET_KEYS = ("channels", "ch_mult", "num_res_blocks", "attn_heads", "dropout", "label_dropout")
DATA_KEYS = ("source", "holdout", "split_seed", "dequantize")


class ImageDataset(Dataset):
    """Map-style dataset of ``(image (C, H, W) uint8, label int)`` items (label -1 if none)."""

    def __init__(self, data: ImageSet):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        label = -1 if self.data.labels is None else int(self.data.labels[i])
        return self.data.images[i], label


def make_collate(levels: int, dequantize: bool, conditional: bool
                 ) -> Callable[[list[tuple[Tensor, int]]], Batch]:
    """Collate ``list[(image, label)]`` into
    ``Batch(x (B, C, H, W) in [-1, 1], DenseSpace, labels (B,) or None)``."""

    def collate(items: list[tuple[Tensor, int]]) -> Batch:
        images = torch.stack([im for im, _ in items])
        u = torch.rand(images.shape) if dequantize else 0.5
        x = to_model_space(images, levels, u)
        cond = torch.tensor([lab for _, lab in items], dtype=torch.long) if conditional else None
        return Batch(x, DenseSpace(x.shape), cond)

    return collate


def load_task_data(data_cfg: dict, warn=None) -> tuple[ImageSet, ImageSet]:
    """``(train, held_out)`` image sets for a config's ``data`` section."""
    data = load_image_source(str(data_cfg.get("source", "digits")), warn=warn)
    return split_holdout(data, float(data_cfg.get("holdout", 0.1)),
                         int(data_cfg.get("split_seed", 0)))


def build_model(meta: dict) -> ScoreModel:
    """Rebuild the :class:`ScoreModel` (U-Net + SDE + parameterisation) from checkpoint ``meta``.

    Raises:
        ValueError: ``shape`` is not ``[C, H, W]`` (positive integers), ``levels`` not an
            integer >= 2 or ``num_classes`` (where given) not a positive integer: what
            ``molscore sample`` reads besides the model.
    """
    shape = meta["shape"]
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3
            and all(is_int(v) and v >= 1 for v in shape)):
        got = (f"[{', '.join(map(described, shape))}]" if isinstance(shape, (list, tuple))
               else described(shape))
        raise ValueError(f"meta 'shape' must be [C, H, W], positive integers, got {got}")
    check_meta_int(meta, "levels", 2)
    if meta.get("num_classes") is not None:
        check_meta_int(meta, "num_classes")
    c, h, w = shape
    net = UNet(in_channels=c, num_classes=meta.get("num_classes"), **meta["net"])
    sde_cfg = dict(meta["sde"])
    sde = make_sde(sde_cfg.pop("name"), **sde_cfg)
    return ScoreModel(net, sde, meta.get("parameterisation", "eps"))


def _check_switch(section: dict, key: str, where: str) -> None:
    """``ValueError`` unless ``section[key]``, when given, is ``true`` or ``false`` (any other
    value, such as the string ``"no"``, was read as true)."""
    if key in section and not isinstance(section[key], bool):
        raise ValueError(f"{where}.{key} must be true or false, got {section[key]!r}")


def _check_net_options(model_cfg: dict) -> None:
    """``ValueError`` (one line) for U-Net options that cannot work or would be misread:
    ``channels`` / ``attn_heads`` not positive integers (0 heads raised ZeroDivisionError),
    ``num_res_blocks`` not an integer >= 0,
    ``ch_mult`` not a non-empty list of positive integers (an empty one built a network
    without resolution levels), ``label_dropout`` outside ``[0, 1]`` (above 1 every label
    was dropped: a "conditional" model that never saw one)."""
    for key in ("channels", "attn_heads"):
        value = model_cfg.get(key, 1)
        if not is_int(value) or value < 1:
            raise ValueError(f"model.{key} must be a positive integer, got {value!r}")
    blocks = model_cfg.get("num_res_blocks", 1)
    if not is_int(blocks) or blocks < 0:  # 1.5 / "2": TypeError traceback; -1 read as 0
        raise ValueError(f"model.num_res_blocks must be an integer >= 0, got {blocks!r}")
    mult = model_cfg.get("ch_mult", [1])
    if (not isinstance(mult, (list, tuple)) or not mult
            or not all(is_int(v) and v >= 1 for v in mult)):
        raise ValueError(f"model.ch_mult must be a list of positive integers, one per "
                         f"resolution level, got {mult!r}")
    drop = config_number(model_cfg.get("label_dropout", 0.0), "model.label_dropout", 0.0)
    if drop > 1:
        raise ValueError(f"model.label_dropout must be in [0, 1], got {drop:g}")


def build_task(cfg: dict) -> TrainTask:
    """Datasets, collate function, U-Net score model and ``meta`` for training on images.

    Raises:
        ValueError: a key of ``data`` or ``model`` this task does not read (it would be
            ignored), a value that cannot work, or unusable images.
    """
    data_cfg = dict(cfg.get("data") or {})
    model_cfg = dict(cfg.get("model") or {})
    check_keys(data_cfg, DATA_KEYS, "data")
    _check_switch(data_cfg, "dequantize", "data")
    unknown = set(model_cfg) - set(NET_KEYS) - {"conditional", "parameterisation"}
    if unknown:
        raise ValueError(f"unknown model options for images: {', '.join(sorted(unknown))}; "
                         f"valid: {', '.join(NET_KEYS + ('conditional', 'parameterisation'))}")
    _check_switch(model_cfg, "conditional", "model")
    _check_net_options(model_cfg)
    sde = sde_from_config(cfg.get("sde") or {"name": "vp"})
    holdout = config_number(data_cfg.get("holdout", 0.1), "data.holdout")
    train, held = load_task_data(data_cfg, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    if not len(train):  # holdout 0.9999 rounds to all images: a RuntimeError traceback
        raise ValueError(f"{train.name}: data.holdout {holdout:g} holds out all {len(held)} "
                         "images, leaving none to train on")
    conditional = bool(model_cfg.pop("conditional", train.labels is not None))
    if conditional and train.labels is None:
        raise ValueError(f"{train.name}: model.conditional needs labels, the data has none")
    num_classes = int(train.labels.max()) + 1 if conditional else None
    if conditional and len(held) and int(held.labels.max()) >= num_classes:
        raise ValueError(f"{train.name}: held-out images have class label "
                         f"{int(held.labels.max())}, but the training split's classes are only "
                         f"0..{num_classes - 1}; change data.split_seed or data.holdout")
    param = model_cfg.pop("parameterisation", "eps")
    meta = {"task": "images", "shape": list(train.shape), "levels": train.levels,
            "num_classes": num_classes, "net": model_cfg, "sde": sde.config(),
            "parameterisation": param,
            "data": {"source": str(data_cfg.get("source", "digits")),
                     "holdout": holdout,
                     "split_seed": int(data_cfg.get("split_seed", 0))}}
    if conditional:
        missing = sorted(set(range(num_classes)) - set(train.labels.unique().tolist()))
        if missing:  # their label embeddings never get a gradient: no class to sample
            meta["classes_without_images"] = missing
            print(f"warning: {train.name}: no training image has class label "
                  f"{', '.join(map(str, missing))} (of 0..{num_classes - 1}): this model cannot "
                  f"sample such a class", file=sys.stderr)
    model = build_model(meta)
    _, h, w = train.shape
    factor = model.net.factor                   # 2 ** (resolution levels - 1)
    if h % factor or w % factor:  # found here, not as the first training step's error
        raise ValueError(f"{h}x{w} images do not fit model.ch_mult: its {factor.bit_length()} "
                         f"resolution levels need height and width divisible by {factor}")
    collate = make_collate(train.levels, bool(data_cfg.get("dequantize", True)), conditional)
    return TrainTask(model=model, train_set=ImageDataset(train), collate=collate, meta=meta,
                     val_set=ImageDataset(held) if len(held) else None,
                     extras={"held_out": held})


# -- sampling ------------------------------------------------------------------------------

def guided_score_fn(model: ScoreModel, space: DenseSpace, labels: Tensor | None = None,
                    guidance: float = 0.0) -> Callable[[Tensor, Tensor], Tensor]:
    """Score closure ``(x, t (B,)) -> like x``.

    ``labels`` ``(B,)`` (or ``None``: unconditional / null label). With ``guidance = w > 0``
    it returns the classifier-free guided score ``(1 + w) s(x | y) - w s(x | null)``.
    """
    if labels is None or guidance == 0.0:
        return lambda x, t: model(x, t, space, labels)

    def score(x: Tensor, t: Tensor) -> Tensor:
        both = model(torch.cat([x, x]), torch.cat([t, t]), DenseSpace((2 * x.shape[0],
                                                                       *x.shape[1:])),
                     torch.cat([labels, torch.full_like(labels, -1)]))
        cond, uncond = both.chunk(2)
        return (1.0 + guidance) * cond - guidance * uncond

    return score


def generate(model: ScoreModel, meta: dict, n: int, *, sampler: str = "pc",
             steps: int = DEFAULT_STEPS, label: int | None = None, guidance: float = 0.0,
             x_known: Tensor | None = None, mask: Tensor | None = None,
             generator: torch.Generator | None = None, device: str | torch.device = "cpu",
             **opts) -> tuple[Tensor, int]:
    """Draw ``n`` images; returns ``(levels (n, C, H, W) long, number of score evaluations)``.

    Args:
        label / guidance: class label for all samples and guidance weight ``w``.
        x_known, mask: ``(C, H, W)`` model-space image and 0/1 mask (1 = known) for inpainting;
            known pixels of the result equal ``x_known``'s exactly.
        opts: passed to the sampler (``snr``, ``method``, ...).

    Raises:
        FloatingPointError: the sampler diverged (a NaN or infinite entry in the result).
    """
    from ..samplers import sample

    shape = (n, *meta["shape"])
    space = DenseSpace(shape)
    labels = None if label is None else torch.full((n,), int(label), dtype=torch.long,
                                                   device=device)
    score_fn = guided_score_fn(model, space, labels, guidance)
    x = model.sde.prior_sample(space, device=device, generator=generator)
    cond_opts: dict[str, Any] = {}
    if mask is not None:
        cond_opts = {"mask": mask.to(device).expand(shape).float(),
                     "x_known": x_known.to(device).expand(shape).float()}
    with torch.no_grad():
        res = sample(sampler, score_fn, model.sde, space, x, steps, generator=generator,
                     **cond_opts, **opts)
    if not torch.isfinite(res.x).all():  # to_levels would turn NaN into level 0
        raise FloatingPointError(f"sampler {sampler} produced non-finite values")
    return to_levels(res.x, meta["levels"]).cpu(), int(res.nfe)


def read_inpaint_pairs(images: list[str], masks: list[str], meta: dict, warn
                       ) -> list[tuple[str, Tensor, Tensor]]:
    """Read ``(name, x_known (C, H, W) model space, mask (C, H, W) 0/1)`` for each usable pair.

    One mask for all images, or one per image: black (0) = to generate, white (255) = known,
    no other value (see :func:`~molscore.data.images.read_mask`). Unreadable or mismatched
    files are reported through ``warn`` and skipped.
    """
    if len(masks) not in (1, len(images)):
        raise UsageError(f"give one --mask for all images or one per image "
                         f"({len(images)} images, {len(masks)} masks)")
    c, h, w = meta["shape"]
    pairs = []
    for i, path in enumerate(images):
        mpath = masks[0] if len(masks) == 1 else masks[i]
        try:
            img = read_png(path, (c, h, w))
            msk = read_mask(mpath, (h, w))
        except ImageError as err:
            warn(f"skipping {path}: {err}")
            continue
        # 8-bit file -> the model's nearest levels, then bin centres in model space.
        levels = meta["levels"]
        ints = levels_from_8bit(img, levels)
        pairs.append((path, to_model_space(ints, levels), msk.expand(c, h, w).clone()))
    return pairs


def _write(path: Path, images: Tensor, levels: int) -> None:
    """An ``.npy`` of the integer images or a PNG grid of them, written atomically."""
    from ..checkpoint import write_atomic

    if path.suffix.lower() == ".npy":
        arr = images.numpy().astype(np.uint8 if levels <= 256 else np.int32)
        write_atomic(path, lambda fh: np.save(fh, arr))
    else:
        save_grid(path, images, levels, scale=max(1, 64 // images.shape[-1]))


def _untrained_null_label(model: ScoreModel, meta: dict) -> bool:
    """Whether ``model`` is conditional and was trained with ``label_dropout`` 0: its null-label
    embedding never received a gradient, so its "unconditional" score is that of an untrained
    embedding (samples are noise and likelihoods meaningless, whatever the weights)."""
    return meta.get("num_classes") is not None and model.net.label_dropout == 0


def sample_command(model: ScoreModel, meta: dict, args: argparse.Namespace) -> int:
    """``molscore sample`` for image checkpoints: write a PNG grid or an ``.npy`` of integer
    images ``(N, C, H, W)`` (values in ``[0, levels)``)."""
    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".npy"):
        raise UsageError(f"-o {out}: image samples are written as .png (grid) or .npy")
    if args.length is not None:
        raise UsageError("--length is for C-alpha trace checkpoints; this one is images")
    label = args.label
    num_classes = meta.get("num_classes")
    if label is not None and (num_classes is None or not 0 <= label < num_classes):
        raise UsageError(f"--label {label}: this model is unconditional" if num_classes is None
                         else f"--label must be in 0..{num_classes - 1}, got {label}")
    guidance = args.guidance if args.guidance is not None else 0.0
    if guidance and label is None:
        raise UsageError("--guidance needs --label")
    if guidance < 0:
        raise UsageError(f"--guidance must be >= 0, got {guidance}")
    if label in meta.get("classes_without_images", ()):
        raise UsageError(f"--label {label}: this model was trained on no image of class {label}, "
                         "so its label embedding is untrained")
    if _untrained_null_label(model, meta) and (label is None or guidance):
        raise UsageError("this model was trained with model.label_dropout 0, so it has no "
                         "unconditional score; " + (
                             f"give --label K (0..{num_classes - 1})" if label is None
                             else "sample with --label and without --guidance"))
    if bool(args.inpaint) != bool(args.mask):
        raise UsageError("--inpaint and --mask go together")
    steps = args.steps if args.steps is not None else DEFAULT_STEPS
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(args.seed)
    torch.manual_seed(args.seed)
    warn = lambda m: print(f"molscore sample: warning: {m}", file=sys.stderr)  # noqa: E731
    jobs: list[tuple[str, Tensor | None, Tensor | None]] = [("", None, None)]
    if args.inpaint:
        jobs = [(name, xk, m) for name, xk, m in read_inpaint_pairs(args.inpaint, args.mask,
                                                                     meta, warn)]
        if not jobs:
            raise UsageError("no usable --inpaint/--mask pair (see warnings above)")
    try:  # before sampling, so that an unwritable -o does not cost the run
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError.cannot_write(err, out) from None
    results, nfe = [], 0
    for _, x_known, mask in jobs:
        try:
            imgs, k = generate(model, meta, args.n, sampler=args.sampler, steps=steps,
                               label=label, guidance=guidance, x_known=x_known, mask=mask,
                               generator=gen, device=device,
                               disable=not getattr(args, "progress", False))
        except FloatingPointError as err:
            raise UsageError(f"{err}; try more --steps or another --sampler") from None
        results.append(imgs)
        nfe += k
    images = torch.cat(results)
    try:
        _write(out, images, meta["levels"])
    except OSError as err:
        raise UsageError.cannot_write(err, out) from None
    c, h, w = meta["shape"]
    print(f"wrote {len(images)} images ({c}x{h}x{w}, {meta['levels']} levels) to {out}; "
          f"sampler {args.sampler}, {steps} steps, {nfe} score evaluations"
          + (" (2 network passes each: guidance)" if guidance else ""))
    return 0


def bits_per_dim_of(model: ScoreModel, meta: dict, images: Tensor, *, labels: Tensor | None = None,
                    generator: torch.Generator | None = None, **opts) -> tuple[Tensor, int]:
    """Dequantised bits/dim ``(B,)`` of integer images under ``model`` (null label unless
    ``labels``), and the number of score evaluations.

    ``images`` may have any integer or floating dtype (whole values) and device: the
    computation runs in the model's dtype on its device (float64 images raised a dtype
    mismatch inside the network).

    Raises:
        ValueError: ``images`` are not ``(B, *meta["shape"])`` or hold values outside
            ``[0, levels)`` or that are not whole numbers; or no ``labels`` for a conditional
            model trained without label dropout (its null-label embedding is untrained), or a
            label of a class the model saw no training image of (``classes_without_images``).
    """
    from .image_metrics import image_bits_per_dim

    shape, levels = tuple(meta["shape"]), int(meta["levels"])
    if images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise ValueError(f"images must be (B, {', '.join(map(str, shape))}) for this model, "
                         f"got {tuple(images.shape)}")
    whole = not images.is_floating_point() or torch.equal(images, images.round())
    if images.numel() and (not whole or images.min() < 0 or images.max() >= levels):
        raise ValueError(f"image values must be integers in [0, {levels}), got "
                         f"{'' if whole else 'fractional values in '}"
                         f"{images.min().item()}..{images.max().item()}")
    if labels is None and _untrained_null_label(model, meta):
        raise ValueError("this model was trained with model.label_dropout 0, so it has no "
                         "unconditional score: give labels")
    if labels is not None:
        untrained = set(meta.get("classes_without_images", ())) & set(labels.tolist())
        if untrained:
            raise ValueError(f"class label {min(untrained)}: this model was trained on no image "
                             "of that class, so its label embedding is untrained")
    weight = next(model.parameters())
    images = images.to(device=weight.device, dtype=weight.dtype)
    space = DenseSpace(images.shape)
    score_fn = guided_score_fn(model, space, labels)
    return image_bits_per_dim(score_fn, model.sde, images, meta["levels"],
                              generator=generator, **opts)

