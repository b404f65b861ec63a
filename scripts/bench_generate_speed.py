"""Throughput of ``molscore generate``: eager against ``torch.compile``d network in one process,
on the CPU and (when present) on CUDA, and over ``--workers`` processes on the CPU, with RDKit
ETKDGv3 on all CPU cores as the baseline.

Writes ``benchmarks/generate_speed.json`` and ``benchmarks/generate_speed.md``.

* molecules: the first ``--molecules`` usable molecules of the conformer benchmark's fixed
  crystal subset (``bioactive_dev.sdf.gz``, subset seed 0: drug-like PDB ligands), each given
  as its reference record with hydrogens;
* every configuration runs the default route (ETKDG starts picked from a pool of ``--pool``,
  default the generator's ``auto``, or of each of a comma-separated list of pools; ``t = 0.3``, 10
  reverse-SDE steps, stereo repair, checks and clean-up), or with ``--init prior`` the route
  from the prior (200 steps unless ``--steps``; no ETKDG), ``-n`` conformers per molecule,
  seed 0, in one process
  with torch's default threads (all cores) and ETKDG on all cores (``numThreads = 0``);
* before any timed run, one untimed pass over every molecule at ``--pool 1`` on each device,
  so that no configuration pays the process's one-off costs. Repeated runs on a shared
  2-core VM still vary by about 20 % (the pool of 25 at ``-n 10``: 3.6 to 5.1 conformers/s
  in three runs), so compare configurations of one run only;
* then for every configuration a warm-up molecule: its time (``torch.compile``'s compilation
  included) is reported apart and left out of the throughput;
* compiled against eager: per conformer, the largest coordinate difference to the eager
  run's conformer of the same index (same seed, same noise): the fraction that agree within
  0.001 Å, and the median. Rounding differences can flip a stereo or geometry decision;
  the resampled conformers then draw other noise and the molecule's later conformers shift
  by one index, so a few conformers differ by whole conformations;
* ``--workers W`` (CPU, eager): ``generate --workers W`` (:mod:`molscore.parallel`), timed
  from the start of its processes, model loading included, and compared with the one-process
  eager conformers as above;
* baseline: ETKDGv3 (``randomSeed = 1``, no force field) conformers/s for the same molecules
  and counts, one process per CPU core, timed first;
* the report is rewritten after every timed configuration, so a run stopped by a time limit
  (a device machine's) keeps what it measured; ``--render`` rewrites OUT.md from OUT.json,
  showing a setting that an older report did not record (the route, its steps, the size of
  an ``auto`` pool, the ETKDG seed) as not recorded, not as today's default.

The quality of the conformers is the conformer benchmark's (``scripts/bench_conformers.py``);
this script only times.

    python scripts/bench_generate_speed.py --molecules 40 -n 50
    python scripts/bench_generate_speed.py --molecules 20 -n 10 --pool 1,25,50,100,200 --eager-only \
        --out benchmarks/generate_speed_pools
    python scripts/bench_generate_speed.py --molecules 40 -n 10 --workers 1,2 --eager-only \
        --out benchmarks/generate_speed_workers
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from script_signals import signals_end_quietly

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import numpy as np
    import torch
    from rdkit import RDLogger

    from bench_conformers import (CRYSTAL, NOT_RECORDED, REPO, _cpu_name, _git_commit, _pool_name,
                                 etkdg_all, prepare_inputs, run_script)

    from molscore.chem.metrics import read_groups
    from molscore.cli.argtypes import positive_int_or_auto
    from molscore.generate import (DEFAULT_STEPS, ConformerGenerator, GenerateOptions, default_pool,
                                   etkdg_random_seed)
    from molscore.parallel import generate_in_processes


def time_generator(items: list[tuple[str, object]], n: int, device: str, compile: bool,
                   batch_size: int, pool: int | None, workers: int = 1, init: str = "etkdg",
                   steps: int | None = None) -> tuple[dict, list[np.ndarray]]:
    """Run the generator on ``items`` after a warm-up molecule; timings and the conformers
    ``(K, N, 3)`` per molecule. With ``workers > 1`` (CPU, eager): ``generate --workers``,
    timed from the start of its processes, so without a warm-up."""
    options = GenerateOptions(n=n, seed=0, compile=compile, batch_size=batch_size, pool=pool,
                              init=init, steps=steps)
    if workers > 1:
        warm = None
        t0 = time.perf_counter()
        results = list(generate_in_processes(items, workers, options=options))
    else:
        gen = ConformerGenerator(device=device, options=options)
        t0 = time.perf_counter()
        gen.generate(items[0][1], name="warm-up")
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = list(gen.run(items))
    wall = time.perf_counter() - t0
    coords = [np.stack([c.GetPositions() for c in r.mol.GetConformers()]) if r.ok else None
              for r in results]
    confs = sum(len(c) for c in coords if c is not None)
    return {"device": device, "compile": compile, "pool": pool,
            "pool_size": default_pool(n) if pool is None else pool, "workers": workers,
            "init": init, "steps": steps or DEFAULT_STEPS[init],
            "warmup_s": warm, "wall_s": wall,
            "conformers": confs, "failed_molecules": sum(c is None for c in coords),
            "conformers_per_s": confs / wall}, coords


def agreement(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> dict | None:
    """Per-conformer largest coordinate difference (Å) of two runs, over the molecules where
    both gave the same number of conformers: fraction within 0.001 Å, median, largest."""
    diffs = np.concatenate([np.abs(x - y).max(axis=(1, 2)) for x, y in zip(a, b)
                            if x is not None and y is not None and x.shape == y.shape] or [np.zeros(0)])
    if not len(diffs):
        return None
    return {"conformers": len(diffs), "frac_within_0.001": float((diffs < 1e-3).mean()),
            "median": float(np.median(diffs)), "max": float(diffs.max())}


def _pool_sizes(report: dict) -> dict[int | None, int | None]:
    """``{pool: size}`` for the pools the report's runs recorded a size of."""
    return {row["pool"]: row["pool_size"] for row in report["runs"] if "pool_size" in row}


def _pools_text(report: dict) -> str:
    """The pools of a report (``pool`` in reports made before ``pools``)."""
    cfg, sizes = report["config"], _pool_sizes(report)
    pools = cfg.get("pools", [cfg["pool"]] if "pool" in cfg else None)
    if pools is None:
        return NOT_RECORDED
    return " / ".join(_pool_name(p, sizes.get(p)) for p in pools)


def _steps_text(report: dict) -> str:
    """``"S steps"`` as a report's runs recorded them (reports made before ``init`` recorded
    none: ``"steps not recorded"``)."""
    steps = {row["steps"] for row in report["runs"] if "steps" in row}
    if not steps and report["config"].get("steps") is not None:
        steps = {report["config"]["steps"]}
    return " / ".join(map(str, sorted(steps))) + " steps" if steps else f"steps {NOT_RECORDED}"


def _route_text(report: dict) -> str:
    """The sampling route of a report (reports made before ``init`` recorded neither the route
    nor its steps: the generator's default of their commit)."""
    init, steps = report["config"].get("init"), _steps_text(report)
    if init == "prior":
        return f"`--init prior` route ({steps} from the prior)"
    route = (f"ETKDG route ({steps} from `t_start`)" if init == "etkdg"
             else f"the default route of its commit (route and steps {NOT_RECORDED})")
    return f"{route} with an ETKDG pool of {_pools_text(report)}"


def markdown(report: dict) -> str:
    cfg = report["config"]
    lines = [
        "# `molscore generate` throughput", "",
        f"{cfg['molecules']} drug-like molecules of the crystal benchmark subset, {cfg['n']} conformers "
        f"each, {_route_text(report)}, {cfg['batch_size']} atoms per sampling batch; {cfg['cpu']} "
        f"({cfg['cpu_count']} cores), torch {cfg['torch']} with "
        f"{cfg['torch_threads']} threads, GPU: {cfg['gpu'] or 'none'}; commit {cfg['commit']}. "
        "One process, except `--workers W` rows: W processes of one torch and one ETKDG thread, "
        "timed from their start (no warm-up).", "",
        "| method | device | warm-up (s) | conformers/s | vs ETKDG |", "|---|---|---|---|---|"]
    etkdg = report["etkdg"]["conformers_per_s"]
    several = len(cfg.get("pools", ())) > 1
    for row in report["runs"]:
        name = "molscore, compiled network" if row["compile"] else "molscore, eager network"
        if several:
            name += f", pool {_pool_name(row['pool'], row.get('pool_size'))}"
        if row.get("workers", 1) > 1:
            name += f", --workers {row['workers']}"
        warm = "-" if row["warmup_s"] is None else f"{row['warmup_s']:.1f}"
        lines.append(f"| {name} | {row['device']} | {warm} | {row['conformers_per_s']:.1f} | "
                     f"{row['conformers_per_s'] / etkdg:.2f}x |")
    seed = report["etkdg"].get("random_seed", NOT_RECORDED)
    lines.append(f"| RDKit ETKDGv3 (randomSeed {seed}), {report['etkdg']['processes']} processes | cpu | - | "
                 f"{etkdg:.1f} | 1.00x |")
    for label, v in report["compiled_vs_eager"].items():
        if v is not None:
            lines += ["", f"Compiled against eager on {label}, same seed: {100 * v['frac_within_0.001']:.1f} % "
                      f"of {v['conformers']} conformers agree within 0.001 Å (median largest coordinate "
                      f"difference {v['median']:.1e} Å); the rest were resampled differently after a "
                      f"rounding difference flipped a stereo or geometry decision (largest {v['max']:.2f} Å)."]
    for label, v in report.get("workers_vs_one_process", {}).items():
        if v is not None:
            lines += ["", f"`{label}` against one process, same seed: {100 * v['frac_within_0.001']:.1f} % "
                      f"of {v['conformers']} conformers agree within 0.001 Å (median largest coordinate "
                      f"difference {v['median']:.1e} Å, largest {v['max']:.2f} Å)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--molecules", type=int, default=40)
    ap.add_argument("-n", type=int, default=50, help="conformers per molecule (default 50)")
    ap.add_argument("--devices", default=None, help="comma-separated (default: cpu, and cuda when present)")
    ap.add_argument("--batch-size", type=int, default=8192, help="atoms per sampling batch")
    ap.add_argument("--pool", type=lambda text: [positive_int_or_auto(p) for p in text.split(",")],
                    default=[GenerateOptions.pool], metavar="P[,P...]",
                    help="generate --pool (default auto), or several pools to time one after the other")
    ap.add_argument("--workers", type=lambda text: [int(w) for w in text.split(",")], default=[1],
                    metavar="W[,W...]",
                    help="generate --workers to time on the CPU (default 1; above 1 eager only)")
    ap.add_argument("--eager-only", action="store_true", help="skip the torch.compile runs")
    ap.add_argument("--init", choices=("etkdg", "prior"), default="etkdg",
                    help="generate --init: the route to time (default etkdg; --pool is unused with prior)")
    ap.add_argument("--steps", type=int, default=None,
                    help="generate --steps (default: the route's, 10 from ETKDG, 200 from the prior)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "generate_speed"))
    ap.add_argument("--render", action="store_true", help="only rewrite OUT.md from OUT.json")
    args = ap.parse_args()
    out = Path(args.out)
    if args.render:
        out.with_suffix(".md").write_text(markdown(json.loads(out.with_suffix(".json").read_text())))
        return 0
    RDLogger.DisableLog("rdApp.*")
    commit = _git_commit()          # before the run: the code that was timed
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    inputs = prepare_inputs(read_groups(CRYSTAL, group_by="name"), args.molecules, 0)
    items = [(key, mol) for key, mol, _ in inputs]
    workers = os.cpu_count() or 1
    etkdg_seed = etkdg_random_seed(0)
    etkdg_mols, wall = etkdg_all([mol for _, mol in items], [args.n] * len(items), workers, etkdg_seed)
    etkdg_confs = sum(m.GetNumConformers() for m in etkdg_mols)
    runs, diffs, workers_diffs = [], {}, {}
    report = {
        "config": {"molecules": len(items), "n": args.n, "init": args.init, "steps": args.steps,
                   "pools": args.pool, "workers": args.workers,
                   "batch_size": args.batch_size,
                   "cpu": _cpu_name(), "cpu_count": workers,
                   "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                   "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                   "commit": commit},
        "runs": runs,
        "compiled_vs_eager": diffs,
        "workers_vs_one_process": workers_diffs,
        "etkdg": {"processes": workers, "random_seed": etkdg_seed, "wall_s": wall, "conformers": etkdg_confs,
                  "conformers_per_s": etkdg_confs / wall},
    }

    def write() -> None:
        """Write the report so far: a run cut short keeps every configuration it timed."""
        out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
        out.with_suffix(".md").write_text(markdown(report))

    variants = (False,) if args.eager_only else (False, True)
    for device in devices:
        list(ConformerGenerator(device=device, n=args.n, seed=0, batch_size=args.batch_size,
                                pool=1).run(items))          # untimed: the process's one-off costs
        for pool in args.pool:
            pool_text = _pool_name(pool, default_pool(args.n))
            coords = {}
            for compile in variants:
                row, coords[compile] = time_generator(items, args.n, device, compile,
                                                      args.batch_size, pool, init=args.init,
                                                      steps=args.steps)
                print(json.dumps(row), file=sys.stderr)
                runs.append(row)
                write()
            if not args.eager_only:
                label = device if len(args.pool) == 1 else f"{device}, pool {pool_text}"
                diffs[label] = agreement(coords[False], coords[True])
            for n_workers in (w for w in args.workers if w > 1 and device == "cpu"):
                row, spread = time_generator(items, args.n, device, False, args.batch_size, pool,
                                             n_workers, init=args.init, steps=args.steps)
                print(json.dumps(row), file=sys.stderr)
                runs.append(row)
                label = f"--workers {n_workers}" + ("" if len(args.pool) == 1
                                                  else f", pool {pool_text}")
                workers_diffs[label] = agreement(coords[False], spread)
                write()
    write()
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
