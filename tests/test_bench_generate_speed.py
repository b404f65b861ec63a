"""``scripts/bench_generate_speed.py``: what its markdown says of the settings a report recorded."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_generate_speed as speed  # noqa: E402
from molscore.generate import DEFAULT_STEPS, default_pool, etkdg_random_seed  # noqa: E402


def _report(config: dict, row: dict, etkdg: dict) -> dict:
    return {"config": {"molecules": 2, "n": 10, "batch_size": 8192, "cpu": "cpu", "cpu_count": 2,
                       "torch": "2.13.0+cpu", "torch_threads": 2, "gpu": None, "commit": "abc1234",
                       **config},
            "runs": [{"device": "cpu", "compile": False, "warmup_s": 1.0, "wall_s": 2.0,
                      "conformers": 20, "failed_molecules": 0, "conformers_per_s": 10.0, **row}],
            "compiled_vs_eager": {},
            "etkdg": {"processes": 2, "wall_s": 1.0, "conformers": 20, "conformers_per_s": 20.0,
                      **etkdg}}


def test_settings_an_old_report_did_not_record_are_shown_as_not_recorded(tmp_path, monkeypatch):
    """A report made before the route, its steps, the size of an ``auto`` pool and the ETKDG
    seed were recorded (``generate_speed_workers.json``, 120585e): its markdown printed
    today's defaults (``ETKDG route (10 steps ...)``, ``auto (50)``) as the run's settings.
    ``--render`` rewrites OUT.md from OUT.json."""
    old = _report({"pools": [None], "workers": [1]}, {"pool": None, "workers": 1}, {})
    out = tmp_path / "speed"
    out.with_suffix(".json").write_text(json.dumps(old))
    monkeypatch.setattr(sys, "argv", ["bench_generate_speed.py", "--render", "--out", str(out)])
    assert speed.main() == 0
    text = out.with_suffix(".md").read_text()
    assert text == speed.markdown(old)
    assert ("the default route of its commit (route and steps not recorded) with an ETKDG pool "
            "of auto (size not recorded), 8192 atoms") in text
    assert "| molscore, eager network | cpu | 1.0 | 10.0 | 0.50x |" in text
    assert "| RDKit ETKDGv3 (randomSeed not recorded), 2 processes | cpu |" in text
    assert "10 steps" not in text and "auto (50)" not in text
    before_pools = _report({"pool": 200}, {}, {})           # before ``pools``, one pool
    assert "with an ETKDG pool of 200, " in speed.markdown(before_pools)
    assert "with an ETKDG pool of not recorded, " in speed.markdown(_report({}, {}, {}))


def test_a_run_records_the_settings_its_markdown_shows():
    """The row of a timed run holds the steps and the pool size the ``auto`` rule gave; the
    report holds the ETKDG seed; the markdown shows them."""
    row, coords = speed.time_generator([("a", "CCO"), ("b", "CCN")], 2, "cpu", False, 8192, None)
    assert (row["pool"], row["pool_size"], row["steps"], row["init"]) == (
        None, default_pool(2), DEFAULT_STEPS["etkdg"], "etkdg")
    assert [c.shape for c in coords] == [(2, 9, 3), (2, 10, 3)]
    report = _report({"n": 2, "init": "etkdg", "steps": None, "pools": [None, 25]},
                     {}, {"random_seed": etkdg_random_seed(0)})
    report["runs"] = [row, dict(row, pool=25, pool_size=25)]
    text = speed.markdown(report)
    assert (f"ETKDG route ({DEFAULT_STEPS['etkdg']} steps from `t_start`) with an ETKDG pool of "
            f"auto ({default_pool(2)}) / 25, ") in text
    assert f"| molscore, eager network, pool auto ({default_pool(2)}) | cpu |" in text
    assert "| RDKit ETKDGv3 (randomSeed 1), 2 processes | cpu |" in text
