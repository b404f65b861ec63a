"""``molscore train``: train any task from a YAML config (the config's ``task`` picks the space)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import UsageError
from .argtypes import seed

ORDER = 20

DESCRIPTION = """Train a score model from a YAML config. The same command trains every space:
the config's 'task' (conformers, images, ca_traces, toy) picks the data and network.
Writes checkpoint.pt (model, EMA weights, optimiser, RNG and data-order state),
metrics.jsonl, config.yaml and summary.json to the output directory; rerunning
the command continues from checkpoint.pt exactly where it stopped (with the same config,
except for a longer run and other logging or checkpoint cadence)."""


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a score model from a YAML config",
                              description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", required=True, metavar="YAML", help="training config file")
    p.add_argument("-o", "--out", metavar="DIR",
                   help="output directory (default: the config's out_dir, else runs/<config name>)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when available (default)")
    p.add_argument("--steps", type=int, metavar="N", help="override the config's total steps")
    p.add_argument("--seed", type=seed, help="override the config's seed")
    p.add_argument("--init", metavar="PATH",
                   help="override the config's init: the checkpoint or model file whose (EMA) "
                        "weights start a fresh run (a resumed run keeps its own, and says so). "
                        "With --steps 0 the run only scores its starting weights on the "
                        "config's validation set")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from DIR/checkpoint.pt if present (default: yes); "
                        "--no-resume starts over, discarding DIR's checkpoint.pt and metrics.jsonl")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads (default: torch's choice; 1 is often fastest on a "
                        "busy machine)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..locks import discard_folder, make_folder
    from ..train import CHECKPOINT_NAME, LOCK_NAME, ConfigError, load_config, train

    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    if args.steps is not None:
        if args.steps < 0:
            raise UsageError(f"--steps must be >= 0, got {args.steps}")
        cfg["steps"], cfg["epochs"] = args.steps, None
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.seed is not None:
        cfg["seed"] = args.seed
    if args.init is not None:
        cfg["init"] = args.init
    if cfg.get("out_dir") is not None and not isinstance(cfg["out_dir"], str):  # Path(5): a traceback
        raise UsageError(f"out_dir must be a path, got {cfg['out_dir']!r}")
    out = Path(args.out or cfg.get("out_dir") or Path("runs") / Path(args.config).stem)
    try:  # before training, so that an unusable output directory does not cost the run
        made = make_folder(out)
    except OSError as err:
        raise UsageError.cannot_write(err, out) from None
    try:
        try:
            summary = train(cfg, out, resume=args.resume, device=args.device,
                            progress=not args.quiet)
        except BaseException:  # refused (a config error) or interrupted before writing:
            discard_folder(made, LOCK_NAME)  # no folder of this command's own is left behind
            raise
    except (ConfigError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    except OSError as err:   # a full disk, a quota: no traceback for writing the run's files
        if err.filename is None or Path(err.filename).parent != out:
            raise
        checkpoint = out / CHECKPOINT_NAME
        kept = (f"{checkpoint}, the last checkpoint written, is kept: a rerun resumes from it"
                if checkpoint.is_file() else "no checkpoint was written")
        raise UsageError(f"{UsageError.cannot_write(err, out)}; {kept}") from None
    except FloatingPointError as err:  # a NaN loss or gradient: the config's lr, as toy train
        raise UsageError(f"training diverged: {err}") from None
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"trained {summary['task']} to step {summary['steps']} on {summary['device']} "
              f"in {summary['time_s']:.1f} s; loss {_fmt(summary['final_loss'])}, "
              f"val {_fmt(summary['val_loss'])} -> {summary['checkpoint']}")
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
