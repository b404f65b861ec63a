"""The paired bootstrap of the benchmark scripts and ``scripts/compare_benchmarks.py``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_conformers import COVERAGE_METRICS, NS, paired_bootstrap  # noqa: E402
from bench_pool_selection import _sub_pool_picks  # noqa: E402
from compare_benchmarks import compare, main, per_molecule_rows  # noqa: E402
from molscore.chem.selection import max_min_order  # noqa: E402


def _crystal_rows(rng: np.random.Generator, shift: float = 0.0, keys: int = 40) -> dict:
    return {f"m{i}": {str(n): float(v) + shift for n, v in zip(NS, rng.uniform(0.2, 3.0, len(NS)))}
            for i in range(keys)}


def test_paired_bootstrap_of_a_constant_shift_is_that_shift_with_a_zero_width_interval():
    a = _crystal_rows(np.random.default_rng(1))
    b = {k: {c: v + 0.25 for c, v in row.items()} for k, row in a.items()}
    out = paired_bootstrap(a, b, ("a", "b"))
    for n in NS:
        r = out[str(n)]
        assert r["median_diff"] == pytest.approx(-0.25)
        assert r["ci95"] == pytest.approx([-0.25, -0.25])
        assert (r["a_lower"], r["b_lower"]) == (1.0, 0.0)


def test_paired_bootstrap_uses_only_shared_molecules_and_the_mean_when_asked():
    a = {"x": {"cov_r": 1.0}, "y": {"cov_r": 0.5}, "only_a": {"cov_r": 100.0}}
    b = {"x": {"cov_r": 0.0}, "y": {"cov_r": 0.5}}
    r = paired_bootstrap(a, b, ("a", "b"), ("cov_r",), "mean")["cov_r"]
    assert r["mean_diff"] == pytest.approx(0.5)
    assert 0.0 <= r["ci95"][0] <= 0.5 <= r["ci95"][1] <= 1.0
    assert (r["a_lower"], r["b_lower"]) == (0.0, 0.5)


def _write_reports(tmp_path: Path) -> tuple[Path, Path]:
    """A bench_conformers-style report (crystal and one coverage set) and a
    bench_pool_selection-style report (crystal), sharing the molecules m0..m39."""
    rng = np.random.default_rng(0)
    model, etkdg = _crystal_rows(rng), _crystal_rows(rng, shift=0.1)
    cover = {f"h{i}": dict(zip(COVERAGE_METRICS, rng.uniform(0, 1, 4))) for i in range(10)}
    conformers = {"config": {}, "results": {
        "crystal": {"model": {"per_molecule": model}, "etkdg": {"per_molecule": etkdg}},
        "coverage_hexane": {"model": {"per_molecule": cover}, "etkdg": {"per_molecule": cover}}}}
    pool = {"config": {"set": "crystal", "sub_pools": [50]}, "results": {"per_molecule": {
        k: {"first": etkdg[k], "k-medoids": model[k], "max-min": etkdg[k],
            "max-min, pool 50": model[k], "all": 0.1, "pool_size": 200} for k in model}}}
    paths = tmp_path / "conformers.json", tmp_path / "pool.json"
    for path, report in zip(paths, (conformers, pool)):
        path.write_text(json.dumps(report))
    return paths


def test_compare_reads_both_report_kinds_and_pairs_the_shared_sets(tmp_path):
    conformers, pool = _write_reports(tmp_path)
    rows = per_molecule_rows(f"{pool}:k-medoids")
    assert list(rows) == ["crystal"] and len(rows["crystal"]) == 40
    assert per_molecule_rows(f"{conformers}:model")["crystal"] == rows["crystal"]
    assert per_molecule_rows(f"{pool}:max-min, pool 50") == rows
    # the same rows on both sides: every difference and interval is exactly zero
    table = compare(f"{conformers}:model", f"{pool}:k-medoids")
    body = [line for line in table.splitlines() if line.startswith("| crystal")]
    assert len(body) == len(NS) and all("+0.000 [+0.000, +0.000]" in line for line in body)
    # model against etkdg of one report: both sets, crystal as medians, coverage as means
    table = compare(f"{conformers}:model", f"{conformers}:etkdg")
    assert table.count("| crystal |") == len(NS) and table.count("| coverage_hexane |") == 4
    assert "| median |" in table and "| mean |" in table


def test_compare_names_the_methods_a_report_has(tmp_path, capsys):
    conformers, pool = _write_reports(tmp_path)
    with pytest.raises(ValueError, match="has no method 'kmedoids'; it has 'first', 'k-medoids', "
                                         "'max-min', 'max-min, pool 50'"):
        per_molecule_rows(f"{pool}:kmedoids")
    with pytest.raises(ValueError, match="expected REPORT.json:METHOD"):
        per_molecule_rows(str(pool))
    with pytest.raises(SystemExit) as exit_info:
        main([f"{conformers}:modl", f"{pool}:first"])
    assert exit_info.value.code == 2
    assert "has no method 'modl'; it has 'model', 'etkdg'" in capsys.readouterr().err


def test_a_smaller_pool_picks_from_its_first_conformers_and_only_when_larger_than_n():
    points = np.random.default_rng(3).normal(size=(30, 2))
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    picks = _sub_pool_picks(dist, 12, 5, 30)
    assert picks == max_min_order(dist[:12, :12], 5)
    assert max(picks) < 12 and picks != max_min_order(dist, 5)
    # pool <= n: the generator embeds n conformers and picks nothing
    assert _sub_pool_picks(dist, 12, 12, 30) == list(range(12))
    assert _sub_pool_picks(None, 5, 20, 30) == list(range(20))
    assert _sub_pool_picks(None, 5, 20, 8) == list(range(8))     # ETKDG embedded fewer


def test_runs_with_another_crystal_n_are_paired_on_the_n_both_have(tmp_path):
    """A ``--crystal-n 10`` run has no N = 50 column; either way round, the comparison with
    an ``-n 50`` run pairs N = 1 and 10 only."""
    conformers, _ = _write_reports(tmp_path)
    report = json.loads(conformers.read_text())
    for method in ("model", "etkdg"):
        rows = report["results"]["crystal"][method]["per_molecule"]
        for row in rows.values():
            row["1"] += 0.5
            del row["50"]
    short = tmp_path / "n10.json"
    short.write_text(json.dumps(report))
    for a, b, sign in ((short, conformers, "+"), (conformers, short, "-")):
        body = [line for line in compare(f"{a}:model", f"{b}:model").splitlines()
                if line.startswith("| crystal")]
        assert [line.split(" | ")[2] for line in body] == ["N = 1", "N = 10"]
        assert f"{sign}0.500 [{sign}0.500, {sign}0.500]" in body[0]
        assert "+0.000 [+0.000, +0.000]" in body[1]
