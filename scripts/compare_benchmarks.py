"""Paired comparison of two methods' per-molecule rows from benchmark reports.

Each side is ``REPORT.json:METHOD``: a ``scripts/bench_conformers.py`` report with ``model``
or ``etkdg``, or a ``scripts/bench_pool_selection.py`` report with one of its orders
(``first``, ``k-medoids``, ``max-min``, ``max-min, pool P``; quote the spec for the space).
For every set both reports hold (``crystal``, ``coverage_hexane``, ``coverage_geom_drugs``),
on the molecules both sides have: the median (crystal, minimum RMSD at N = 1 / 10 / 50) or
mean (coverage, COV-R / AMR-R / COV-P / AMR-P) of each side, the difference A minus B with its
95 % paired bootstrap interval (2,000 resamples, seed 0, as in the reports themselves), and the
fraction of molecules where each side is lower. This is how the between-run comparisons
quoted in the READMEs are made.

    python scripts/compare_benchmarks.py benchmarks/conformers.json:model benchmarks/conformers_pool1.json:model
    python scripts/compare_benchmarks.py benchmarks/conformers.json:model benchmarks/pool_selection.json:max-min
    python scripts/compare_benchmarks.py "benchmarks/pool_selection.json:max-min, pool 50" \
        benchmarks/pool_selection.json:max-min
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_conformers import paired_sets  # noqa: E402
from bench_pool_selection import report_orders  # noqa: E402

METHODS = ("model", "etkdg")
"""The methods of a bench_conformers report."""


def per_molecule_rows(spec: str) -> dict[str, dict[str, dict]]:
    """``{set: {molecule key: row}}`` of the method named in ``spec`` (``REPORT.json:METHOD``).
    Raises ``ValueError`` naming the methods the report has when ``METHOD`` is not one."""
    path, sep, method = spec.rpartition(":")
    if not sep or not path or not method:
        raise ValueError(f"expected REPORT.json:METHOD, got {spec!r}")
    report = json.loads(Path(path).read_text())
    results = report["results"]
    if "per_molecule" in results:              # bench_pool_selection: one set, rows per order
        rows = results["per_molecule"]
        by_method = {order: {report["config"]["set"]: {key: row[order] for key, row in rows.items()}}
                     for order in report_orders(report)}
    else:
        by_method = {m: {name: r[m]["per_molecule"] for name, r in results.items()
                         if r.get(m, {}).get("per_molecule")} for m in METHODS}
    if method not in by_method:
        raise ValueError(f"{path} has no method {method!r}; it has "
                         f"{', '.join(map(repr, by_method))}")
    return by_method[method]


def compare(a_spec: str, b_spec: str) -> str:
    """The markdown table of the paired comparison of two ``REPORT.json:METHOD`` sides."""
    a, b = per_molecule_rows(a_spec), per_molecule_rows(b_spec)
    sets = [s for s in a if s in b]
    if not sets:
        raise ValueError(f"no set in both: {', '.join(a)} against {', '.join(b)}")
    lines = [f"A = `{a_spec}`, B = `{b_spec}`", "",
             "| set | molecules | column | statistic | A | B | A - B [95 % interval] | A lower | B lower |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in sets:
        keys = sorted(set(a[name]) & set(b[name]))
        paired = paired_sets(a[name], b[name], ("A", "B"))
        for column, p in paired.items():
            statistic = "median" if "median_diff" in p else "mean"
            centre = np.median if statistic == "median" else np.mean
            va, vb = (centre([rows[k][column] for k in keys]) for rows in (a[name], b[name]))
            label = f"N = {column}" if statistic == "median" else column.upper().replace("_", "-")
            lines.append(f"| {name} | {len(keys)} | {label} | {statistic} | {va:.3f} | {vb:.3f} | "
                         f"{p[f'{statistic}_diff']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}] | "
                         f"{p['A_lower']:.3f} | {p['B_lower']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", metavar="A", help="REPORT.json:METHOD")
    ap.add_argument("b", metavar="B", help="REPORT.json:METHOD")
    args = ap.parse_args(argv)
    try:
        print(compare(args.a, args.b), end="")
    except (ValueError, OSError) as exc:
        ap.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
