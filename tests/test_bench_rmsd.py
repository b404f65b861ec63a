"""``scripts/bench_rmsd.py``: its timing of an RMSD matrix with today's and an older
``metrics.py``, its check against GetBestRMS and its markdown."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_rmsd  # noqa: E402
from molscore.chem import metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_largest_difference_from_getbestrms_is_tiny_over_1000_mappings():
    row = bench_rmsd.largest_difference("FC(F)(F)c1cc(C(F)(F)F)cc(C(F)(F)F)c1")
    assert row["mappings"] == 1296 and row["max_abs_difference"] < 1e-5


@pytest.mark.skipif(subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True)
                    .returncode != 0, reason="not a git checkout")
def test_a_baseline_revision_times_the_same_matrix_with_its_own_code():
    """The code of a revision (here HEAD's) is loaded as a module and gives the same RMSDs."""
    old = bench_rmsd.metrics_at("HEAD")
    assert old is not metrics and old.atom_matches is not metrics.atom_matches
    mol = bench_rmsd.conformers("CC(C)(C)c1ccc(C(F)(F)F)cc1", 5)
    xyz = metrics._heavy_positions(mol)
    np.testing.assert_allclose(old.group_rmsd(xyz, xyz, old.atom_matches(mol, mol)),
                               metrics.group_rmsd(xyz, xyz, metrics.atom_matches(mol, mol)))
    row = bench_rmsd.time_matrix(old, mol, mol, None, 64, repeats=1)
    assert row["mappings"] == 64 and row["seconds"] > 0


def test_markdown_shows_the_baseline_beside_each_timing():
    report = {"commit": "abc1234", "date": "2026-12-06", "machine": "cpu, 2 CPUs",
              "torch": "2.13.0+cpu", "repeats": 3, "baseline": "1b174fd",
              "timed": [{"workload": "symmetric 50 x 1", "molecule": "m", "conformers": 50,
                         "mappings": 559872, "core_mappings": 12, "seconds": 3.1,
                         "baseline": {"mappings": 559872, "core_mappings": 559872, "seconds": 41.0}}],
              "exact": {"x": {"mappings": 1296, "max_abs_difference": 2.6e-13}}}
    text = bench_rmsd.markdown(report)
    assert "baseline: `metrics.py` of 1b174fd, in the same run." in text
    assert "| symmetric 50 x 1 | m | 50 | 559,872 (12) | 3.100 | 41.000 (559,872 mappings) |" in text
    assert "| x | 1,296 | 2.6e-13 |" in text
    report["baseline"] = None
    assert "seconds at" not in bench_rmsd.markdown(report)
