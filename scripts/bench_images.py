"""Image benchmark: sample quality and bits/dim versus score evaluations, per sampler.

    python scripts/bench_images.py [--quick] [--run-dir runs/bench_images] [--device auto]

For scikit-learn's 8x8 digits (CPU; always) and the bundled 5k MNIST (only when a
CUDA device is present):

1. trains the config's class-conditional U-Net with ``molscore.train.train`` (resumes /
   reuses a finished run in ``--run-dir``), and the small feature classifier
   (:mod:`molscore.models.classifier`) on the same training split, saved next to the
   checkpoint as ``feature_classifier.pt``;
2. Fréchet distance (classifier features) between unconditional samples (null label) and
   the held-out images, for every sampler at three budgets of score evaluations; the
   reference floor is the distance between held-out and an equal number of training images;
3. dequantised bits/dim of held-out images through the probability-flow ODE (Hutchinson
   divergence) versus score evaluations: fixed-step RK4 and adaptive dopri5;
4. classifier accuracy on class-guided samples for guidance weights 0, 1, 3.

Writes ``benchmarks/images.json`` and ``benchmarks/images.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

from script_signals import signals_end_quietly

ROOT = Path(__file__).resolve().parents[1]

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import torch
    import yaml

    from bench_conformers import provenance, run_script
    from molscore.checkpoint import load_checkpoint_model
    from molscore.data.image_metrics import frechet_distance
    from molscore.data.image_task import bits_per_dim_of, generate, load_task_data
    from molscore.data.images import to_model_space
    from molscore.models.classifier import (load_classifier, save_classifier,
                                            train_classifier)
    from molscore.train import train

SAMPLERS = ("em", "reverse", "ancestral", "pc", "ald", "ode")
ALD_CORRECTOR = 5
BOOTSTRAP = 30


def steps_for(sampler: str, nfe: int) -> int:
    """Steps that spend about ``nfe`` score evaluations."""
    per_step = {"pc": 2, "ode": 4, "ald": ALD_CORRECTOR}.get(sampler, 1)  # ode: rk4
    return max(1, round(nfe / per_step))


def feature_classifier(run_dir: Path, train_set, device) -> tuple:
    path = run_dir / "feature_classifier.pt"
    if path.is_file():
        try:
            return load_classifier(path, device)
        except ValueError as err:  # damaged or foreign: one line, not a traceback
            raise SystemExit(f"{Path(sys.argv[0]).name}: {err}; delete it to train the "
                             "classifier again") from None
    t0 = time.time()
    clf = train_classifier(to_model_space(train_set.images, train_set.levels), train_set.labels,
                           int(train_set.labels.max()) + 1, seed=0, device=device)
    info = {"levels": train_set.levels, "train_time_s": round(time.time() - t0, 1)}
    save_classifier(clf.cpu(), path, info)
    return clf.to(device), info


def _rel(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def bench_dataset(config: Path, run_dir: Path, device: torch.device, quick: bool) -> dict:
    cfg = yaml.safe_load(config.read_text())
    if quick:
        cfg["steps"] = min(int(cfg["steps"]), 300)
    t0 = time.time()
    summary = train(cfg, run_dir, resume=True, device=str(device), progress=False)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_time = max((m["time_s"] for m in metrics if m["kind"] == "train"), default=0.0)
    model, meta = load_checkpoint_model(run_dir / "checkpoint.pt", device=device)
    train_set, held = load_task_data(cfg["data"])
    clf, clf_info = feature_classifier(run_dir, train_set, device)
    x_held = to_model_space(held.images, held.levels).to(device)
    clf_acc = float((clf.predict(x_held).cpu() == held.labels).float().mean())
    feats_held = clf.embed(x_held).cpu()
    n = len(held) if not quick else min(len(held), 100)
    g = torch.Generator().manual_seed(1)
    ref_idx = torch.randperm(len(train_set), generator=g)[:n]

    def fd_of(images: torch.Tensor) -> tuple[float, float]:
        """FD to the held-out set and its bootstrap standard error (both sets resampled)."""
        feats = clf.embed(to_model_space(images, meta["levels"]).to(device)).cpu()
        gb = torch.Generator().manual_seed(2)
        boot = [frechet_distance(feats[torch.randint(0, len(feats), (len(feats),), generator=gb)],
                                 feats_held[torch.randint(0, len(feats_held), (len(feats_held),),
                                                          generator=gb)])
                for _ in range(BOOTSTRAP)]
        return frechet_distance(feats, feats_held), float(torch.tensor(boot).std())

    floor, floor_se = fd_of(train_set.images[ref_idx])
    budgets = (20, 60) if quick else (20, 60, 200)
    rows = []
    for sampler in SAMPLERS:
        for budget in budgets:
            steps = steps_for(sampler, budget)
            opts = {"n_corrector": ALD_CORRECTOR} if sampler == "ald" else {}
            gen = torch.Generator(device=device).manual_seed(0)
            t1 = time.time()
            images, nfe = generate(model, meta, n, sampler=sampler, steps=steps, generator=gen,
                                   device=device, **opts)
            fd, fd_se = fd_of(images)
            rows.append({"sampler": sampler, "steps": steps, "nfe": nfe, "fd": fd,
                         "fd_se": fd_se, "time_s": round(time.time() - t1, 2)})
            print(f"  {sampler:9s} steps {steps:4d} nfe {nfe:4d} FD {fd:.2f} +- {fd_se:.2f}",
                  flush=True)

    n_bpd = 32 if quick else 64
    imgs = held.images[:n_bpd].to(device)
    bpd_rows = []
    settings = [("rk4", {"method": "rk4", "steps": s}) for s in ((5,) if quick else (5, 25))]
    settings += [("dopri5", {"method": "dopri5", "rtol": tol, "atol": tol})
                 for tol in ((1e-2,) if quick else (1e-2, 1e-3, 1e-4))]
    for name, opts in settings:
        torch.manual_seed(0)
        t1 = time.time()
        bpd, nfe = bits_per_dim_of(model, meta, imgs, generator=torch.Generator().manual_seed(0),
                                   **opts)
        bpd = bpd.cpu()
        bpd_rows.append({"method": name, **{k: v for k, v in opts.items() if k != "method"},
                         "nfe": nfe, "bpd": float(bpd.mean()),
                         "bpd_sem": float(bpd.std() / math.sqrt(len(bpd))),
                         "time_s": round(time.time() - t1, 2)})
        print(f"  bpd {name} {opts} nfe {nfe} -> {bpd_rows[-1]['bpd']:.3f}", flush=True)

    guided = []
    num_classes = meta.get("num_classes") or 0
    # as many samples as the unconditional rows' FD uses (the FD's bias shrinks with the count)
    per_label = max(1, n // num_classes) if num_classes else 0
    for w in (0.0, 1.0, 3.0) if num_classes else ():
        correct, total = 0, 0
        gen = torch.Generator(device=device).manual_seed(0)
        all_imgs = []
        for label in range(num_classes):
            images, _ = generate(model, meta, per_label, sampler="pc", steps=30, label=label,
                                 guidance=w, generator=gen, device=device)
            pred = clf.predict(to_model_space(images, meta["levels"]).to(device)).cpu()
            correct += int((pred == label).sum())
            total += per_label
            all_imgs.append(images)
        fd, fd_se = fd_of(torch.cat(all_imgs))
        guided.append({"guidance": w, "sampler": "pc", "steps": 30, "accuracy": correct / total,
                       "n": total, "fd_all_labels": fd, "fd_all_labels_se": fd_se})
        print(f"  guidance {w}: accuracy {correct / total:.3f}", flush=True)

    return {"config": str(config.relative_to(ROOT)), "image_shape": meta["shape"],
            "levels": meta["levels"], "train_steps": summary["steps"],
            "train_time_s": train_time, "num_parameters": summary.get("num_parameters"),
            "final_train_loss": summary.get("final_loss"), "val_loss": summary.get("val_loss"),
            "held_out": len(held), "fd_samples": n,
            "classifier": {"held_out_accuracy": clf_acc, **clf_info,
                           "path": _rel(run_dir / "feature_classifier.pt")},
            "fd_floor_train_vs_held_out": floor, "fd_floor_se": floor_se, "sampling": rows,
            "bits_per_dim": bpd_rows,
            "bpd_uniform_reference": math.log2(meta["levels"]), "bpd_images": n_bpd,
            "guided": guided,
            "bench_time_s": round(time.time() - t0, 1)}


def markdown(result: dict) -> str:
    lines = ["# Image benchmark", "",
             f"Device: {result['device']}; torch {result['torch']}; "
             f"{'quick run' if result['quick'] else 'full run'}; "
             f"{result.get('machine', str(result['cpu_count']) + ' CPUs')}, commit "
             f"{result.get('commit') or 'not recorded'}, {result.get('date', 'date not recorded')}; "
             f"load average {result['load_average_start'][0]} at the start and "
             f"{result['load_average_end'][0]} at the end (times are wall-clock and inflated "
             f"when the machine is shared).", ""]
    for name, r in result["datasets"].items():
        if "skipped" in r:
            lines += [f"## {name}", "", f"Skipped: {r['skipped']}", ""]
            continue
        lines += [f"## {name} ({'x'.join(map(str, r['image_shape']))}, {r['levels']} levels)", "",
                  f"U-Net with {r['num_parameters']:,} parameters, {r['train_steps']} training "
                  f"steps in {r['train_time_s']:.0f} s. Feature classifier held-out accuracy "
                  f"{r['classifier']['held_out_accuracy']:.3f}. Fréchet distance (FD) of "
                  f"{r['fd_samples']} unconditional samples to the {r['held_out']} held-out "
                  f"images in the classifier's 64-d feature space; floor (training vs held-out "
                  f"images): {r['fd_floor_train_vs_held_out']:.1f} ± {r['fd_floor_se']:.1f}.", "",
                  "FD ± bootstrap standard error (both sets resampled):", "",
                  "| sampler | steps | score evals | FD | time (s) |", "|---|---|---|---|---|"]
        lines += [f"| {s['sampler']} | {s['steps']} | {s['nfe']} | {s['fd']:.1f} ± "
                  f"{s['fd_se']:.1f} | {s['time_s']:.1f} |" for s in r["sampling"]]
        lines += ["", f"Bits/dim of {r['bpd_images']} held-out images (one uniform "
                      f"dequantisation draw each, probability-flow ODE, Hutchinson divergence; "
                      f"a uniform model scores {r['bpd_uniform_reference']:.3f}). Only the ODE "
                      f"defines a likelihood; too coarse a solver gives meaningless (even "
                      f"negative) values.", "",
                  "| ODE solver | setting | score evals | bits/dim ± standard error of the mean |",
                  "|---|---|---|---|"]
        for b in r["bits_per_dim"]:
            setting = f"{b['steps']} steps" if "steps" in b else f"tol {b['rtol']:g}"
            lines.append(f"| {b['method']} | {setting} | {b['nfe']} | "
                         f"{b['bpd']:.3f} ± {b['bpd_sem']:.3f} |")
        if r["guided"]:
            lines += ["", f"Classifier-free guidance (pc, 30 steps): label accuracy of the "
                          f"feature classifier on {r['guided'][0]['n']} guided samples (as many "
                          f"of each label), and their FD.", "",
                      "| guidance w | accuracy | FD (all labels) |", "|---|---|---|"]
            lines += [f"| {g['guidance']:g} | {g['accuracy']:.3f} | {g['fd_all_labels']:.1f} ± "
                      f"{g['fd_all_labels_se']:.1f} |" for g in r["guided"]]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and samples")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_images"))
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "images"))
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(0)
    result = {"device": str(device), "torch": torch.__version__,
              "python": platform.python_version(),
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average_start": [round(v, 1) for v in os.getloadavg()], **provenance(),
              "quick": args.quick, "datasets": {}}
    run_dir = Path(args.run_dir)
    t0 = time.time()
    print("digits", flush=True)
    result["datasets"]["digits"] = bench_dataset(ROOT / "configs" / "digits.yaml",
                                                 run_dir / "digits", device, args.quick)
    if device.type == "cuda":
        print("mnist", flush=True)
        result["datasets"]["mnist"] = bench_dataset(ROOT / "configs" / "mnist.yaml",
                                                    run_dir / "mnist", device, args.quick)
    else:
        result["datasets"]["mnist"] = {"skipped": "no CUDA GPU available for this run; MNIST "
                                                  "(configs/mnist.yaml) is GPU-sized"}
    result["total_time_s"] = round(time.time() - t0, 1)
    result["load_average_end"] = [round(v, 1) for v in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
