"""Benchmark: C-alpha traces on the shared engine (CPU).

Trains a small chain-graph model on crops of ``datasets/pdb_ca_traces_308.npz`` with
``configs/ca_traces.yaml`` (sizes reduced for a few minutes of CPU), samples traces of
the crop length, and compares with held-out real crops (structures never trained on):

* generated samples (one row per sampler),
* real crops of training structures (the floor a perfect model would reach), 128 of them
  and, averaged over 20 random draws, as many as each generated set (``-n``): the distances
  between distributions shrink with the sample size (16 real crops: W1 dihedral 2 to 14°,
  against 1.6° for 128), so only the second is the generated sets' floor,
* a naive baseline: random walks with 3.8 Å steps,

using :func:`molscore.data.ca_metrics.compare_traces` (bond fraction within 3.8 +/- 0.2 Å,
clash rates, Rg against the power law fitted on whole training structures, 1-Wasserstein
distances of virtual bond angles and dihedrals, the latter on the circle).

Writes ``benchmarks/pointclouds.json`` and ``benchmarks/pointclouds.md``.

    python scripts/bench_pointclouds.py [--train-steps 3000] [-n 16] [--samplers reverse:500,pc:250]
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import sys
import time
from pathlib import Path

from script_signals import signals_end_quietly

ROOT = Path(__file__).resolve().parents[1]

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import numpy as np
    import torch
    import yaml

    from bench_conformers import provenance, run_script
    from molscore.checkpoint import load_checkpoint_model
    from molscore.data.ca_metrics import compare_traces, fit_rg_power_law, random_walk_traces
    from molscore.data.ca_task import generate, load_traces
    from molscore.data.ca_traces import CATraceCrops, load_npz_traces, split_by_structure
    from molscore.models.chain_graph import chain_batch
    from molscore.spaces import PointSetSpace
    from molscore.train import train

METRICS = [("bond_fraction_3.8pm0.2", "bonds 3.8±0.2 Å", "{:.3f}"),
           ("clash_residue_fraction", "clashing residues", "{:.3f}"),
           ("rg_mean", "mean Rg (Å)", "{:.1f}"),
           ("rg_over_law", "Rg / law", "{:.2f}"),
           ("w1_bond_angle_deg", "W1 angle (°)", "{:.1f}"),
           ("w1_dihedral_deg", "W1 dihedral (°, circular)", "{:.1f}")]


def bench_config(train_steps: int, hidden: int, vector: int, layers: int, k: int) -> dict:
    """``configs/ca_traces.yaml`` with sizes for a few minutes of (shared) CPU."""
    cfg = yaml.safe_load((ROOT / "configs" / "ca_traces.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["data"].update(crop_length=64, crops_per_segment=1)
    cfg["model"].update(k=k)
    cfg["model"]["hparams"].update(hidden_scalar=hidden, hidden_vector=vector, num_layers=layers)
    cfg.update(steps=train_steps, batch_size=8, val_every=train_steps, val_batches=2,
               ckpt_every=max(train_steps // 2, 1), log_every=25)
    cfg["optim"].update(lr=2e-3, warmup=50)
    return cfg


def reference_rows(real: list[np.ndarray], ref: list[np.ndarray], rg_law: tuple[float, float],
                   n: int, crop: int, draws: int = 20, seed: int = 0) -> dict[str, dict]:
    """Metric rows of the sets the generated ones are set against: all ``real`` crops of
    training structures; ``n`` of them (the generated sets' size, whose distances to ``ref``
    carry the same small-sample error), each metric averaged over ``draws`` random subsets
    (seeded), with the range of the W1 distances; and ``n`` random walks of ``crop``
    residues."""
    rng = np.random.default_rng(seed)
    few = [compare_traces([real[i] for i in rng.choice(len(real), min(n, len(real)), replace=False)],
                          ref, rg_law) for _ in range(draws)]
    floor = {key: float(np.mean([row[key] for row in few])) for key in few[0]}
    floor.update(num_traces=few[0]["num_traces"], draws=draws,
                 **{f"{key}_range": [min(row[key] for row in few), max(row[key] for row in few)]
                    for key in ("w1_bond_angle_deg", "w1_dihedral_deg")})
    return {f"real crops (training structures), {len(real)}": compare_traces(real, ref, rg_law),
            f"real crops (training structures), {floor['num_traces']}: mean of {draws} draws": floor,
            "random walk 3.8 Å": compare_traces(random_walk_traces([crop] * n, seed=0), ref, rg_law)}


def forward_500(model) -> dict:
    """Time and peak RSS of one score evaluation on a single 500-residue chain."""
    cond = chain_batch([500])
    space = PointSetSpace(cond.batch, 1)
    x = space.project(torch.randn(500, 3) * 2.0)
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model(x, torch.tensor([0.5]), space, cond)
        dt = time.perf_counter() - t0
        edges = model.net.graph(x, cond).edge_index.shape[1]
    return {"residues": 500, "edges": int(edges), "edges_per_residue": edges / 500,
            "seconds": round(dt, 3), "finite": bool(torch.isfinite(out).all()),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-steps", type=int, default=3000)
    ap.add_argument("--hidden", type=int, default=64, help="scalar channels")
    ap.add_argument("--vector", type=int, default=16, help="vector channels")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("-k", type=int, default=12, help="spatial nearest neighbours")
    ap.add_argument("-n", "--n", type=int, default=16, help="samples per sampler")
    ap.add_argument("--samplers", default="reverse:500,pc:250",
                    help="comma-separated name:steps")
    ap.add_argument("--out-dir", default=str(ROOT / "runs" / "bench_ca"))
    ap.add_argument("--bench-dir", default=str(ROOT / "benchmarks"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 avoids oversubscription on a shared CPU)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    cfg = bench_config(args.train_steps, args.hidden, args.vector, args.layers, args.k)
    out_dir = Path(args.out_dir)
    t0 = time.time()
    summary = train(cfg, out_dir, resume=False, device="cpu", progress=False)
    train_s = time.time() - t0
    model, meta = load_checkpoint_model(out_dir / "checkpoint.pt", device="cpu")
    crop = int(meta["crop_length"])

    # real data: same split as training; Rg law fitted on whole training structures
    traces = load_traces({**cfg["data"], "npz": cfg["data"]["npz"]})
    train_tr, val_tr = split_by_structure(traces, float(cfg["data"]["val_fraction"]),
                                          int(cfg["data"]["split_seed"]))
    val_names = {t.structure for t in val_tr}
    assert val_names == set(meta["data"]["val_structures"])
    whole = [t.coords for t in load_npz_traces(ROOT / cfg["data"]["npz"], max_gap=np.inf)
             if t.structure not in val_names]
    rg_law = fit_rg_power_law(whole)
    n_ref = 128
    held = CATraceCrops(val_tr, crop, coord_scale=1.0, deterministic=True, seed=11)
    ref = [held[i % len(held)].numpy() for i in range(n_ref)] if len(held) >= n_ref else \
        [held[i].numpy() for i in range(len(held))]
    trn = CATraceCrops(train_tr, crop, coord_scale=1.0, deterministic=True, seed=12)
    real_train = [trn[i].numpy() for i in range(0, len(trn), max(len(trn) // n_ref, 1))][:n_ref]

    rows = reference_rows(real_train, ref, rg_law, args.n, crop)
    timing = {}
    gen = torch.Generator().manual_seed(0)
    for spec in args.samplers.split(","):
        name, steps = spec.split(":")
        t1 = time.time()
        samples, nfe = generate(model, meta, args.n, crop, sampler=name, steps=int(steps),
                                generator=gen)
        timing[name] = {"steps": int(steps), "nfe": nfe, "seconds": round(time.time() - t1, 1)}
        rows[f"generated ({name}, {steps} steps)"] = compare_traces(samples, ref, rg_law)

    result = {
        "description": "C-alpha traces: chain-graph PaiNN score model trained on CPU on crops of "
                       "pdb_ca_traces_308.npz; metrics of each set against held-out real crops",
        "device": "cpu", "gpu": "none available in this session",
        "host": {"python": platform.python_version(), "torch": torch.__version__,
                 "threads": args.threads, **provenance()},
        "train": {"steps": summary["steps"], "batch_size": cfg["batch_size"], "crop_length": crop,
                  "seconds": round(train_s, 1), "final_loss": summary["final_loss"],
                  "val_loss": summary["val_loss"], "parameters": summary["num_parameters"],
                  "model": meta["net"], "sde": meta["sde"], "coord_scale": meta["coord_scale"]},
        "reference": {"held_out_structures": len(val_names), "held_out_crops": len(ref),
                      "crop_length": crop},
        "rg_law_whole_training_structures": {"a": rg_law[0], "nu": rg_law[1],
                                             "structures": len(whole)},
        "sampling": timing,
        "forward_500_residues": forward_500(model),
        "metrics": rows,
    }
    bench = Path(args.bench_dir)
    bench.mkdir(parents=True, exist_ok=True)
    (bench / "pointclouds.json").write_text(json.dumps(result, indent=2) + "\n")
    (bench / "pointclouds.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    tr = r["train"]
    law = r["rg_law_whole_training_structures"]
    f5 = r["forward_500_residues"]
    lines = [
        "# C-alpha traces (point clouds) on the shared engine",
        "",
        f"CPU only ({r['host']['threads']} torch thread(s), no GPU this session; "
        f"{r['host'].get('machine', 'machine not recorded')}, commit "
        f"{r['host'].get('commit') or 'not recorded'}, {r['host'].get('date', 'date not recorded')}). "
        "Model: chain graph "
        f"(sequence |i-j|<={tr['model']['max_offset']} + k={tr['model']['k']} nearest neighbours) "
        f"on the `{tr['model']['backbone']}` backbone, {tr['parameters']:,} parameters, "
        f"{tr['sde']['name'].upper()} SDE, trained {tr['steps']} steps x {tr['batch_size']} crops "
        f"of {tr['crop_length']} residues in {tr['seconds']:.0f} s (final loss "
        f"{tr['final_loss']:.3g}, validation {tr['val_loss']:.3g}).",
        "",
        f"Reference: {r['reference']['held_out_crops']} crops of {r['reference']['crop_length']} "
        f"residues from {r['reference']['held_out_structures']} held-out structures. Rg law fitted "
        f"on {law['structures']} whole training structures: Rg = {law['a']:.2f} N^{law['nu']:.3f} Å "
        "(crops of larger proteins are less compact than whole proteins of the same length, so "
        "real crops sit above 1).",
        "",
        "The distances between distributions (W1) grow as the sets get smaller; compare each "
        "generated set with the real crops of its own size"
        + "".join(f" (over the {row['draws']} draws of {row['num_traces']} real crops, W1 angle "
                  f"{row['w1_bond_angle_deg_range'][0]:.1f} to {row['w1_bond_angle_deg_range'][1]:.1f}°, "
                  f"W1 dihedral {row['w1_dihedral_deg_range'][0]:.1f} to "
                  f"{row['w1_dihedral_deg_range'][1]:.1f}°)" for row in r["metrics"].values() if "draws" in row)
        + ".",
        "",
        "| set | traces | " + " | ".join(m[1] for m in METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for name, row in r["metrics"].items():
        vals = " | ".join(fmt.format(row[key]) for key, _, fmt in METRICS)
        lines.append(f"| {name} | {row['num_traces']} | {vals} |")
    lines += ["", "Sampling cost: " + "; ".join(
        f"{k}: {v['steps']} steps, {v['nfe']} score evaluations, {v['seconds']} s for "
        f"{r['metrics'][next(n for n in r['metrics'] if k + ',' in n)]['num_traces']} traces"
        for k, v in r["sampling"].items()),
        "",
        f"One score evaluation on a 500-residue chain: {f5['edges']} edges "
        f"({f5['edges_per_residue']:.1f} per residue), {f5['seconds']} s, peak RSS of the "
        f"benchmark process {f5['peak_rss_mb']} MB.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_script(main))
