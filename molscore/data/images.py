"""Image data: scikit-learn digits, MNIST npz, any ``.npz`` of uint8 images, PNG folders.

Images are kept as integers ``(N, C, H, W)`` with values in ``{0, ..., L-1}``, where
``L = levels`` is the number of intensity levels of the source (17 for scikit-learn's
8x8 digits, whose values are 0..16; 256 for 8-bit images). The model works on
floats in ``[-1, 1]`` through the dequantising map

    ``y = 2 (x + u) / L - 1``,  ``u in [0, 1)``

(:func:`to_model_space`): ``u ~ U[0, 1)`` during training (uniform dequantisation, the
same map the bits/dim evaluation uses), ``u = 1/2`` (bin centres) for fixed
images such as inpainting observations and classifier inputs. :func:`to_levels`
inverts it (bin index of ``y``, clipped; exact except for float rounding within
about ``1e-6`` of a bin edge).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..paths import resolve_data_path
from .npz import NpzError, read_npz

__all__ = ["ImageSet", "ImageError", "load_digits_images", "load_npz_images", "load_png_folder",
           "load_image_source", "read_png", "read_mask", "write_png", "save_grid", "to_model_space",
           "to_levels", "levels_to_8bit", "levels_from_8bit", "split_holdout", "DEFAULT_MNIST"]

DEFAULT_MNIST = "datasets/mnist_5k.npz"
IMAGE_KEYS = ("images", "x", "arr_0")
LABEL_KEYS = ("labels", "y")


class ImageError(ValueError):
    """An image file that cannot be read or does not fit: its message is one line."""


@dataclass
class ImageSet:
    """Integer images and optional labels.

    Attributes:
        images: ``(N, C, H, W)`` uint8/int tensor, values in ``[0, levels)``.
        labels: ``(N,)`` long tensor or ``None``.
        levels: number of intensity levels ``L``.
        name: where the images came from.
    """

    images: Tensor
    labels: Tensor | None
    levels: int
    name: str

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: Tensor) -> "ImageSet":
        """The images (and labels) at ``index``."""
        labels = None if self.labels is None else self.labels[index]
        return ImageSet(self.images[index], labels, self.levels, self.name)


def to_model_space(images: Tensor, levels: int, u: Tensor | float = 0.5) -> Tensor:
    """Integer images ``(..., C, H, W)`` -> floats ``2 (x + u) / L - 1`` in ``(-1, 1)``
    (float32, or the images' dtype when they are already floating point)."""
    x = images if images.is_floating_point() else images.float()
    return 2.0 * (x + u) / levels - 1.0


def to_levels(y: Tensor, levels: int) -> Tensor:
    """Floats in ``[-1, 1]`` -> integer bins ``floor((y + 1) L / 2)`` clipped to ``[0, L)``."""
    return torch.floor((y.float() + 1.0) * levels / 2.0).clamp(0, levels - 1).long()


def levels_to_8bit(images: Tensor, levels: int) -> Tensor:
    """Integer images in ``[0, levels)`` -> uint8 ``round(k 255 / (L - 1))`` (0 and 255 at
    the ends), as PNG files are written."""
    return (images.float() * 255.0 / max(levels - 1, 1)).round().clamp(0, 255).to(torch.uint8)


def levels_from_8bit(images: Tensor, levels: int) -> Tensor:
    """8-bit values -> the nearest of ``levels`` levels, ``round(v (L - 1) / 255)`` (long):
    the inverse of :func:`levels_to_8bit` for every ``levels``."""
    return (images.float() * (levels - 1) / 255.0).round().clamp(0, levels - 1).long()


def _to_nchw(arr: np.ndarray, source: str) -> np.ndarray:
    """Accept ``(N, H, W)``, ``(N, H, W, C)`` (C in 1, 3, 4) or ``(N, C, H, W)``."""
    if arr.ndim == 3:
        return arr[:, None]
    if arr.ndim == 4:
        c_last, c_first = arr.shape[-1], arr.shape[1]
        if c_last in (1, 3, 4) and (c_first not in (1, 3, 4) or c_first > c_last):
            return arr.transpose(0, 3, 1, 2)
        if c_first in (1, 3, 4):
            return arr
    raise ImageError(f"{source}: expected images (N, H, W), (N, H, W, C) or (N, C, H, W) with C "
                     f"1, 3 or 4, got shape {arr.shape}")


def load_digits_images() -> ImageSet:
    """scikit-learn's 1,797 8x8 digits (embedded, no download): ``(1797, 1, 8, 8)``, 17 levels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.images.astype(np.uint8)).reshape(-1, 1, 8, 8)
    return ImageSet(images, torch.from_numpy(d.target).long(), 17, "digits")


def _image_and_label_keys(names: Sequence[str]) -> list[str]:
    """The names of an archive's image array and labels: the first of :data:`IMAGE_KEYS` and
    of ``LABEL_KEYS`` it has (none where it has none)."""
    firsts = (next((k for k in keys if k in names), None) for keys in (IMAGE_KEYS, LABEL_KEYS))
    return [k for k in firsts if k is not None]


def load_npz_images(path: str | Path, levels: int | None = None) -> ImageSet:
    """Images from an ``.npz`` with key ``images`` (or ``x``/``arr_0``) and optional ``labels``
    ``(N,)`` (or ``y``), one class index per image.

    Integer arrays only; ``levels`` defaults to 256 for uint8 and ``max + 1`` otherwise.
    """
    path = Path(path)
    try:
        found = read_npz(path, _image_and_label_keys)
    except NpzError as err:
        raise ImageError(str(err)) from None
    key = next((k for k in IMAGE_KEYS if k in found), None)
    if key is None:
        raise ImageError(f"{path}: no image array (looked for {', '.join(IMAGE_KEYS)})")
    arr = found[key]
    labels = next((found[k] for k in LABEL_KEYS if k in found), None)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ImageError(f"{path}: images must be integers (uint8), got {arr.dtype}")
    if arr.size == 0:
        raise ImageError(f"{path}: the image array is empty, shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ImageError(f"{path}: negative pixel values")
    arr = _to_nchw(arr, str(path))
    if levels is None:
        levels = 256 if arr.dtype == np.uint8 else int(arr.max()) + 1
    if arr.size and arr.max() >= levels:
        raise ImageError(f"{path}: pixel values up to {arr.max()} exceed levels={levels}")
    lab = None
    if labels is not None:
        if labels.ndim != 1:  # e.g. one-hot rows: one class index per image is needed
            raise ImageError(f"{path}: labels must be one class index per image, shape "
                             f"({len(arr)},), got {labels.shape}")
        if len(labels) != len(arr):
            raise ImageError(f"{path}: {len(labels)} labels for {len(arr)} images")
        numeric = labels.dtype.kind in "biuf"  # bool, integer or float
        whole = numeric and bool(np.all((labels >= 0) & (labels == np.round(labels))
                                        & np.isfinite(labels)))
        if not whole:
            got = (f"values {labels.min()}..{labels.max()}" if numeric
                   else f"dtype {labels.dtype}")
            raise ImageError(f"{path}: labels must be class indices 0, 1, 2, ... (whole numbers "
                             f">= 0), got {got}")
        lab = torch.from_numpy(np.asarray(labels).astype(np.int64))
    return ImageSet(torch.from_numpy(np.ascontiguousarray(arr)), lab, levels, path.name)


def read_png(path: str | Path, shape: Sequence[int] | None = None) -> Tensor:
    """Read one 8-bit image file as ``(C, H, W)`` uint8.

    Args:
        path: an image file PIL can read (PNG, ...).
        shape: required ``(C, H, W)``. Grey images (also grey stored as RGB) have one
            channel, colour images three; grey is accepted where three are expected.
            Any other channel or size mismatch raises.

    Raises:
        ImageError: unreadable file, wrong size, or pixels of more than 8 bits (16-bit or
            float; one-line message).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if shape is not None and shape[0] not in (1, 3):
        raise ImageError(f"{path}: only 1- or 3-channel images can be read from files, "
                         f"the model expects {shape[0]}")
    try:
        with Image.open(path) as im:
            if im.mode.startswith(("I", "F")):  # convert() would clip the values to 255
                raise ImageError(f"{path}: {im.mode} pixels (16-bit or float) are not read; "
                                 "save the image with 8 bits per channel")
            grey = im.mode in ("1", "L", "LA")
            arr = np.asarray(im.convert("L" if grey else "RGB"), dtype=np.uint8)
    except ImageError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise ImageError(f"{path}: cannot read image ({err.__class__.__name__})") from None
    if arr.ndim == 3 and (arr == arr[..., :1]).all():
        arr = arr[..., 0]  # grey stored as RGB
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    img = torch.from_numpy(arr.copy())
    return img if shape is None else _fit_shape(path, img, shape)


def _fit_shape(path: str | Path, image: Tensor, shape: Sequence[int]) -> Tensor:
    """``image`` ``(C, H, W)`` as ``shape``: grey is repeated where three channels are
    expected (a valid colour image); any other mismatch raises :class:`ImageError`."""
    if shape[0] == 3 and image.shape[0] == 1:
        image = image.repeat(3, 1, 1)
    if tuple(image.shape) != tuple(shape):
        raise ImageError(f"{path}: image is {image.shape[0]}x{image.shape[1]}x{image.shape[2]} "
                         f"(CxHxW), expected {'x'.join(map(str, shape))}")
    return image


def read_mask(path: str | Path, size: Sequence[int]) -> Tensor:
    """Read an inpainting mask: a black-and-white image of ``size`` ``(H, W)``.

    Returns:
        ``(1, H, W)`` float, 1 where the mask is white (known pixel), 0 where it is black.

    Raises:
        ImageError: unreadable file (see :func:`read_png`), a colour image or another size,
            a transparent pixel, or a pixel neither black (0) nor white (255): the side of
            either would be a guess.
    """
    from PIL import Image

    mask = read_png(path)
    h, w = size
    if mask.shape[0] != 1 or tuple(mask.shape[1:]) != (h, w):
        raise ImageError(f"{path}: mask must be a grey {h}x{w} image, got "
                         f"{mask.shape[0]}x{mask.shape[1]}x{mask.shape[2]} (CxHxW)")
    with Image.open(path) as im:  # read_png drops the alpha channel
        if (("A" in im.getbands() or "transparency" in im.info)
                and im.convert("RGBA").getchannel("A").getextrema()[0] < 255):
            raise ImageError(f"{path}: mask has transparent pixels; use an opaque image, "
                             "black (to generate) and white (known)")
    grey = (mask != 0) & (mask != 255)
    if grey.any():
        raise ImageError(f"{path}: mask must be black (0, to generate) and white (255, known) "
                         f"only; {int(grey.sum())} pixels are not, e.g. {int(mask[grey][0])}")
    return (mask == 255).float()


def load_png_folder(path: str | Path, shape: Sequence[int] | None = None,
                    warn=None) -> ImageSet:
    """All PNG files of a folder (recursively), 256 levels.

    Sub-folders named by integers become labels (``folder/3/x.png`` -> label 3),
    otherwise there are none. Files that cannot be read or whose size differs
    from ``shape`` are skipped and reported through ``warn(message)`` (one line
    each); the rest are loaded. The default ``shape`` is the first readable file's
    height and width, with three channels if any readable image of that size is in
    colour (grey images are then repeated, as :func:`read_png` does), else one.
    """
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".png")
    if not files:
        raise ImageError(f"{path}: no .png files")
    read: list[tuple[Path, Tensor]] = []
    for f in files:
        try:
            read.append((f, read_png(f, shape)))
        except ImageError as err:
            if warn is not None:
                warn(str(err))
    if not read:
        raise ImageError(f"{path}: none of the {len(files)} .png files could be read")
    if shape is None:
        h, w = read[0][1].shape[1:]
        shape = (3 if any(tuple(img.shape) == (3, h, w) for _, img in read) else 1, h, w)
    images, labels = [], []
    for f, img in read:
        try:
            images.append(_fit_shape(f, img, shape))
        except ImageError as err:
            if warn is not None:
                warn(str(err))
            continue
        parent = f.parent.name
        labels.append(int(parent) if parent.isdigit() and f.parent != path else -1)
    lab = torch.tensor(labels) if all(v >= 0 for v in labels) else None
    return ImageSet(torch.stack(images), lab, 256, path.name)


def load_image_source(source: str, warn=None) -> ImageSet:
    """``digits``, ``mnist`` (the bundled 5k npz), an ``.npz`` path or a folder of PNGs.

    Paths are looked for as :func:`molscore.paths.resolve_data_path` says (the working
    directory, the repository root, ``$MOLSCORE_DATA_ROOT``).
    """
    if source == "digits":
        return load_digits_images()
    if source == "mnist":
        source = DEFAULT_MNIST
    try:
        p = resolve_data_path(source)
    except FileNotFoundError:
        raise ImageError(f"{source}: no such file or folder (use digits, mnist, an .npz or "
                         "a folder of .png files)") from None
    if p.is_dir():
        return load_png_folder(p, warn=warn)
    if p.suffix == ".npz":
        return load_npz_images(p)
    raise ImageError(f"{source}: unsupported image source (use an .npz or a folder of .png)")


def split_holdout(data: ImageSet, fraction: float, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Seeded random split into ``(train, held_out)``; ``held_out`` has ``round(fraction N)``."""
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data), generator=g)
    n_hold = int(round(fraction * len(data)))
    return data.subset(perm[n_hold:]), data.subset(perm[:n_hold])


def write_png(path: str | Path, image: Tensor) -> None:
    """Write ``(C, H, W)`` uint8 (C in 1, 3) or ``(H, W)`` as an 8-bit PNG, atomically
    (:func:`molscore.checkpoint.write_atomic`)."""
    from PIL import Image

    from ..checkpoint import write_atomic

    arr = image.detach().cpu().numpy().astype(np.uint8)
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    write_atomic(path, lambda fh: Image.fromarray(arr).save(fh, format="PNG"))


def save_grid(path: str | Path, images: Tensor, levels: int, nrow: int | None = None,
              pad: int = 1, scale: int = 1) -> None:
    """Tile integer images ``(N, C, H, W)`` in ``[0, levels)`` into one 8-bit PNG grid.

    Values are rescaled to 0..255; ``scale`` enlarges each pixel (nearest).
    """
    n, c, h, w = images.shape
    nrow = nrow or max(1, int(np.ceil(np.sqrt(n))))
    ncol = int(np.ceil(n / nrow))
    img8 = levels_to_8bit(images, levels)
    grid = torch.zeros(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, y0:y0 + h, x0:x0 + w] = img8[i]
    if scale > 1:
        grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    write_png(path, grid)
