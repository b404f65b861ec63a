"""The toy, image and point-cloud benchmark reports name the commit, machine and date."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_images  # noqa: E402
import bench_pointclouds  # noqa: E402
import bench_toy  # noqa: E402

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
