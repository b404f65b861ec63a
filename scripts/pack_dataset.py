"""Pack a processed conformer dataset into a small ``.tar.xz`` for a device machine.

A device call carries at most 64 MiB (repository included). The low mantissa bits of a
processed dataset's float32 coordinates (``pos``) are noise to a compressor, so this rounds
every coordinate to a multiple of ``2**-bits`` Å (default ``2**-10``, about 0.001 Å: an error
of at most 0.0005 Å, the precision of the CCD's own coordinates and 40 times below the SDE's
smallest noise, sigma_min = 0.02 Å). On the ETKDG ensembles (about 5 conformers per molecule,
so mostly coordinates) that shrinks the archive from 5.1 to 2.9 MB; on the CCD set (one
conformer each, so mostly graph tensors) from 36.1 to 33.6 MB. Every other tensor and
``index.json`` travel unchanged, except that ``index.json``'s ``meta`` records ``pos_quantum``
(Å). The archive unpacks to a folder named like the source, readable by
:class:`molscore.data.processed.ConformerDataset`.

    python scripts/pack_dataset.py runs/data/ccd .device/train/ccd.tar.xz
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from molscore.data.processed import FAILURES_FILE, INDEX_FILE, load_index  # noqa: E402


def quantise_positions(pos: torch.Tensor, bits: int) -> torch.Tensor:
    """``pos`` rounded to the nearest multiple of ``2**-bits`` (exact in float32 for
    coordinates below ``2**(23 - bits)`` Å)."""
    scale = float(2 ** bits)
    return torch.round(pos * scale) / scale


def quantise_dataset(src: Path, dst: Path, bits: int = 10) -> None:
    """Copy the processed dataset ``src`` to the new folder ``dst`` with quantised ``pos``."""
    index = load_index(src)
    dst.mkdir(parents=True)
    for shard in index["shards"]:
        tensors = torch.load(src / shard, weights_only=True)
        tensors["pos"] = quantise_positions(tensors["pos"], bits)
        torch.save(tensors, dst / shard)
    index["meta"] = {**index.get("meta", {}), "pos_quantum": 2.0 ** -bits}
    (dst / INDEX_FILE).write_text(json.dumps(index))
    if (src / FAILURES_FILE).is_file():
        shutil.copy2(src / FAILURES_FILE, dst / FAILURES_FILE)


def pack(src: Path, archive: Path, bits: int = 10) -> int:
    """Write ``archive`` (``.tar.xz``, one folder named ``src.name``); returns its size in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        quantise_dataset(src, Path(tmp) / src.name, bits)
        archive.parent.mkdir(parents=True, exist_ok=True)
        with open(archive, "wb") as out:
            tar = subprocess.Popen(["tar", "-C", tmp, "-cf", "-", src.name], stdout=subprocess.PIPE)
            subprocess.run(["xz", "-T0", "-6"], stdin=tar.stdout, stdout=out, check=True)
            if tar.wait() != 0:
                raise RuntimeError(f"tar failed on {src}")
    return archive.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="processed dataset folder (with index.json)")
    ap.add_argument("archive", type=Path, help="output .tar.xz")
    ap.add_argument("--bits", type=int, default=10, help="round coordinates to 2**-BITS Å (default 10)")
    args = ap.parse_args()
    if not (args.src / INDEX_FILE).is_file():
        ap.error(f"{args.src} is not a processed dataset (no {INDEX_FILE})")
    size = pack(args.src, args.archive, args.bits)
    print(f"{args.archive}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
