"""Training throughput and peak memory of the conformer score model.

For each backbone (painn, e3nn) and molecule size (a ~20-atom and a ~56-atom molecule,
hydrogens included) and device (CPU; CUDA when present), one child process builds the
trainer from a config like ``configs/conformers_etkdg.yaml`` (same network sizes), then
times full optimiser steps (DSM loss, backward, clipping, AdamW, EMA update) on batches
of real conformers. Reports molecules per second and peak memory: on CPU the growth of
the process's peak RSS during training (``resource``), on CUDA
``torch.cuda.max_memory_allocated``; on CPU also the process CPU time per step.

    python scripts/bench_train.py            # writes benchmarks/train.json and train.md
    python scripts/bench_train.py --steps 3 --batch-size 8   # quicker
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from script_signals import signals_end_quietly

REPO = Path(__file__).resolve().parents[1]

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    from bench_conformers import provenance, run_script

EXCERPT = REPO.parent / "shared" / "data" / "conformers" / "geom_drugs_excerpt.sdf.gz"
SMALL_SMILES = "CCOC(=O)c1ccccn1"  # ethyl picolinate, 20 atoms with H (ETKDG conformers)
LARGE_SMILES = "Cc1ccccc1NC(=O)c1ccc(NC(=O)[C@H]2CC(=O)OC23CCCCC3)cc1"  # GEOM excerpt, 56 atoms
HPARAMS = {
    "painn": {"hidden_scalar": 128, "hidden_vector": 32, "num_layers": 5, "cutoff": 5.0},
    "e3nn": {"ns": 32, "nv": 8, "num_layers": 4, "sh_lmax": 2, "cutoff": 5.0},
}


def _write_sdf(size: str, path: Path) -> int:
    """Write conformers of the benchmark molecule to ``path``; return its atom count."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    if size == "small":
        mol = Chem.AddHs(Chem.MolFromSmiles(SMALL_SMILES))
        AllChem.EmbedMultipleConfs(mol, numConfs=8, randomSeed=7)
        mols = []
        for conf in mol.GetConformers():
            m = Chem.Mol(mol, confId=conf.GetId())
            m.SetProp("smiles", SMALL_SMILES)
            mols.append(m)
    else:
        with gzip.open(EXCERPT, "rb") as fh:
            mols = [m for m in Chem.ForwardSDMolSupplier(fh, removeHs=False)
                    if m is not None and m.GetProp("smiles") == LARGE_SMILES][:8]
    with Chem.SDWriter(str(path)) as writer:
        for m in mols:
            writer.write(m)
    return mols[0].GetNumAtoms()


def run_one(backbone: str, size: str, device: str, steps: int, batch_size: int) -> dict:
    """Benchmark one setting in this process; returns a result row."""
    import torch

    from molscore.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        sdf = Path(tmp) / "mol.sdf"
        atoms = _write_sdf(size, sdf)
        cfg = {"task": "conformers", "seed": 0, "steps": steps + 2, "batch_size": batch_size,
               "data": {"sdf": str(sdf), "val_fraction": 0, "conformers": "random"},
               "sde": {"name": "ve", "sigma_min": 0.02, "sigma_max": 15.0},
               "model": {"backbone": backbone, "hparams": HPARAMS[backbone]},
               "optim": {"lr": 3e-4, "grad_clip": 1.0}, "ema": 0.999}
        trainer = Trainer(cfg, Path(tmp) / "run", device=device, progress=False)
        item_set = trainer.task.train_set
        batch = trainer.task.collate([item_set[0] for _ in range(batch_size)])
        cuda = trainer.device.type == "cuda"
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train_step(batch)  # warm-up (allocator, lazy init); counts towards the peak
        if cuda:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            trainer.train_step(batch)
        if cuda:
            torch.cuda.synchronize()
        elapsed, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        row = {"backbone": backbone, "size": size, "atoms": atoms, "device": str(trainer.device),
               "batch_size": batch_size, "steps": steps,
               "parameters": sum(p.numel() for p in trainer.model.parameters()),
               "step_s": elapsed / steps, "molecules_per_s": batch_size * steps / elapsed,
               "cpu_s_per_step": cpu_s / steps}
        if cuda:
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
            row["peak_mem_kind"] = "cuda max_memory_allocated"
        else:
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
            row["peak_rss_mb"] = rss1 / 1024
            row["peak_mem_mb"] = (rss1 - rss0) / 1024
            row["peak_mem_kind"] = "growth of peak RSS during training"
        return row


def markdown(result: dict) -> str:
    """The report's ``train.md`` text. Its header names the commit that was timed, or says that
    the run was not from a git checkout (``commit`` None), or that the report predates the
    field (no ``commit`` key)."""
    first = result["rows"][0]           # every row has the run's batch size and steps
    commit = ((result["commit"] or "unknown (not run from a git checkout)") if "commit" in result
              else "not recorded")
    lines = ["# Conformer training throughput", "",
             f"Commit {commit}, {result.get('date', 'date not recorded')}, "
             f"{result.get('machine', result['cpu'])}.", "",
             f"torch {result['torch']}, torch CPU threads: {result['threads']}, on "
             f"{result['cpu_count']} cores (1-min load average {result['load_average_1min']:.1f} at the end: the "
             f"machine was shared); batch of {first['batch_size']} conformers, {first['steps']} timed "
             f"steps after one warm-up. Memory: CPU = growth of peak RSS during training, "
             f"CUDA = max_memory_allocated. CPU s/step is the process's CPU time (all "
             f"threads) per step, less sensitive to other load than the wall-clock columns.", "",
             "| device | backbone | atoms | params | step (s) | CPU s/step | molecules/s "
             "| peak memory (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['device']} | {r['backbone']} | {r['atoms']} | {r['parameters']:,} | "
                     f"{r['step_s']:.3f} | {r['cpu_s_per_step']:.3f} | {r['molecules_per_s']:.1f} | "
                     f"{r['peak_mem_mb']:.0f} |")
    lines += ["", "Produced by `python scripts/bench_train.py`."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting")
    parser.add_argument("--batch-size", type=int, default=16, help="molecules per step")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: CPU time then excludes thread spin-waits)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "train")
    parser.add_argument("--one", nargs=3, metavar=("BACKBONE", "SIZE", "DEVICE"),
                        help=argparse.SUPPRESS)  # child mode: print one JSON row
    args = parser.parse_args()
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(run_one(*args.one, steps=args.steps, batch_size=args.batch_size)))
        return 0

    import torch

    prov = provenance()                    # the code as the run starts
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for backbone in ("painn", "e3nn"):
            for size in ("small", "large"):
                cmd = [sys.executable, __file__, "--one", backbone, size, device,
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                       "--threads", str(args.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                if out.returncode:
                    sys.stderr.write(out.stderr[-2000:])
                    return out.returncode
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{device} {backbone:5s} {row['atoms']:3d} atoms: "
                      f"{row['molecules_per_s']:.1f} mol/s, {row['peak_mem_mb']:.0f} MB", flush=True)
    result = {
        "benchmark": "conformer training step (DSM loss, backward, clip, AdamW, EMA)",
        "hparams": HPARAMS, "torch": torch.__version__, "threads": args.threads,
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "rows": rows, **prov,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
