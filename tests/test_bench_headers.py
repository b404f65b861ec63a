"""The toy, image, point-cloud and training benchmark reports name the commit, machine and date."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_images  # noqa: E402
import bench_pointclouds  # noqa: E402
import bench_conformers  # noqa: E402
import bench_toy  # noqa: E402
import bench_train  # noqa: E402

PROVENANCE = {"commit": "abc1234", "date": "2026-12-07", "machine": "Some CPU, 2 CPUs"}


def _with_provenance(name: str, report: dict) -> dict:
    """``report`` as the script now writes it: provenance at the top (toy, images) or under
    ``host`` (point clouds)."""
    if name == "pointclouds":
        return {**report, "host": {**report["host"], **PROVENANCE}}
    return {**report, **PROVENANCE}


@pytest.mark.parametrize("name, module", [("toy", bench_toy), ("images", bench_images),
                                          ("pointclouds", bench_pointclouds)])
def test_the_header_names_commit_machine_and_date(name, module):
    report = json.loads((ROOT / "benchmarks" / f"{name}.json").read_text())
    header = module.markdown(_with_provenance(name, report)).split("\n\n")[1]
    assert all(v in header for v in PROVENANCE.values()) and "commit abc1234" in header
    old = module.markdown(report).split("\n\n")[1]          # a report from before: said so
    assert "commit not recorded" in old


def test_training_report_names_the_commit_and_says_when_there_is_none():
    """``train.md`` named no commit. The report of before is rewritten as it was, with a header
    line saying so; a run names its commit, or says that it was not run from a git checkout."""
    report = json.loads((ROOT / "benchmarks" / "train.json").read_text())
    old = (ROOT / "benchmarks" / "train.md").read_text().split("\n\n", 1)
    header = f"Commit not recorded, date not recorded, {report['cpu']}."
    assert bench_train.markdown(report) == f"{old[0]}\n\n{header}\n\n{old[1]}"
    header = bench_train.markdown({**report, **PROVENANCE}).split("\n\n")[1]
    assert header == "Commit abc1234, 2026-12-07, Some CPU, 2 CPUs."
    header = bench_train.markdown({**report, **PROVENANCE, "commit": None}).split("\n\n")[1]
    assert header == "Commit unknown (not run from a git checkout), 2026-12-07, Some CPU, 2 CPUs."


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_provenance_commit_of_a_checkout_and_none_outside_one(tmp_path, monkeypatch):
    """What bench_train (and the other benchmarks) record: the checkout's short commit, with
    ``+dirty`` for changed tracked files, and None (not a failure) outside a git checkout."""
    monkeypatch.setattr(bench_conformers, "REPO", tmp_path)
    assert bench_conformers.provenance()["commit"] is None
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], check=True)
    (tmp_path / "a.txt").write_text("a\n")
    subprocess.run(git + ["add", "a.txt"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "a"], check=True)
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    assert bench_conformers.provenance()["commit"] == head
    (tmp_path / "a.txt").write_text("b\n")
    assert bench_conformers.provenance()["commit"] == head + "+dirty"


def test_point_cloud_floor_at_the_generated_sets_size():
    """W1 distances of a small set to the reference are larger than those of a large set from
    the same distribution, so the generated sets (``-n``) need a floor of their own size."""
    from molscore.data.ca_metrics import compare_traces, random_walk_traces

    real = random_walk_traces([12] * 8, seed=1)
    ref = random_walk_traces([12] * 4, seed=2)
    rows = bench_pointclouds.reference_rows(real, ref, (2.0, 0.4), 2, 12, draws=3)
    small = "real crops (training structures), 2: mean of 3 draws"
    assert [(name, row["num_traces"]) for name, row in rows.items()] == [
        ("real crops (training structures), 8", 8), (small, 2), ("random walk 3.8 Å", 2)]
    rng = np.random.default_rng(0)
    draws = [compare_traces([real[i] for i in rng.choice(8, 2, replace=False)], ref, (2.0, 0.4))
             for _ in range(3)]
    w1 = [d["w1_dihedral_deg"] for d in draws]
    assert rows[small]["w1_dihedral_deg"] == pytest.approx(np.mean(w1))
    assert rows[small]["w1_dihedral_deg_range"] == [min(w1), max(w1)]
    report = json.loads((ROOT / "benchmarks" / "pointclouds.json").read_text())
    generated = {k: v for k, v in report["metrics"].items() if k.startswith("generated")}
    text = bench_pointclouds.markdown({**report, "metrics": {**rows, **generated}})
    assert f"| {small} | 2 | " in text and "over the 3 draws of 2 real crops" in text
