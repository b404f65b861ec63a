"""The toy, image and point-cloud benchmark reports name the commit, machine and date."""
from __future__ import annotations

import json
import sys
from pathlib import Path

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
