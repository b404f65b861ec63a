"""``molscore sample``: draw samples from a trained checkpoint of any space.

The checkpoint's ``meta["task"]`` picks the task module; its
``sample_command(model, meta, args) -> int`` does the rest (images write a PNG grid
or an ``.npy``; C-alpha traces write a multi-model PDB).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import out_of_memory
from . import UsageError
from .argtypes import finite_float, positive_int, seed

ORDER = 25

SAMPLER_CHOICES = ("pc", "ode", "em", "ald", "reverse", "ancestral")

DESCRIPTION = """Draw samples from a checkpoint written by 'molscore train' (EMA weights).
The checkpoint's task decides what is written:
  images     -o grid.png (a grid of samples) or -o samples.npy (integer images N x C x H x W);
             --label/--guidance for classifier-free guidance, --inpaint/--mask to fill in
             the unknown pixels of images (mask: white = known, black = to generate)
  ca_traces  -o traces.pdb (C-alpha-only models, one per sample); --length residues"""

EPILOG = """examples:
  molscore sample --checkpoint runs/digits/checkpoint.pt -n 64 --sampler pc --steps 500 -o grid.png
  molscore sample --checkpoint runs/digits/checkpoint.pt -n 16 --label 3 --guidance 2.0 -o threes.png
  molscore sample --checkpoint runs/digits/checkpoint.pt -n 8 --inpaint img.png --mask mask.png -o fill.png
  molscore sample --checkpoint runs/ca/checkpoint.pt -n 16 --length 128 -o traces.pdb"""


def register(subparsers) -> None:
    p = subparsers.add_parser("sample", help="sample from a trained checkpoint (images, C-alpha)",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint.pt to load")
    p.add_argument("-n", type=positive_int, default=16, metavar="N",
                   help="number of samples (per inpainting image) (default 16)")
    p.add_argument("--sampler", choices=SAMPLER_CHOICES, default="pc",
                   help="pc: predictor-corrector (default); ode: probability flow; em: "
                        "Euler-Maruyama; ald: annealed Langevin; reverse/ancestral predictors")
    p.add_argument("--steps", type=positive_int, metavar="N",
                   help="time steps (noise levels for ald); default chosen by the task")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when available (default)")
    p.add_argument("-o", "--output", required=True, metavar="PATH",
                   help="output file: .png or .npy for images, .pdb for C-alpha traces")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar (default: yes)")
    img = p.add_argument_group("images")
    img.add_argument("--inpaint", nargs="+", metavar="PNG",
                     help="image(s) whose masked pixels are kept; n samples fill in each")
    img.add_argument("--mask", nargs="+", metavar="PNG",
                     help="mask PNG(s), one for all images or one per image; white = known, "
                          "black = to generate (no other value)")
    img.add_argument("--label", type=int, metavar="K", help="class label to generate")
    img.add_argument("--guidance", type=finite_float, metavar="W",
                     help="classifier-free guidance weight w: (1+w) s(x|y) - w s(x) (default 0)")
    ca = p.add_argument_group("C-alpha traces")
    ca.add_argument("--length", type=positive_int, metavar="N", help="residues per trace")
    p.set_defaults(func=run)


def _device(name: str):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_checkpoint_model
    from ..tasks import get_task_module

    if Path(args.output).is_dir():  # found before sampling, not when the samples are written
        raise UsageError(f"cannot write {args.output}: Is a directory")
    device = _device(args.device)
    try:
        model, meta = load_checkpoint_model(args.checkpoint, ema=True, device=device)
        module = get_task_module(meta["task"])
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err).splitlines()[0]) from None
    if not hasattr(module, "sample_command"):
        hint = {"conformers": f"molscore generate SMILES --model {args.checkpoint}",
                "toy": f"molscore toy sample --score {args.checkpoint} -o samples.npy"
                }.get(meta["task"], "molscore --help")
        raise UsageError(f"checkpoint task {meta['task']!r} cannot be sampled with "
                         f"'molscore sample' (see '{hint}')")
    with out_of_memory("lower -n: the samples are drawn in one batch"):
        return int(module.sample_command(model, meta, args) or 0)
