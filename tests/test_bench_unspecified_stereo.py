"""The inputs, rules and summary of ``scripts/bench_unspecified_stereo.py``."""
from __future__ import annotations

import sys
from pathlib import Path

from rdkit import Chem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_unspecified_stereo import (RULES, SETS, _job, has_unspecified_stereo, inputs,  # noqa: E402
                                      markdown, summarise)
from molscore.chem.stereo import enumerated_isomer  # noqa: E402


def test_inputs_are_stereo_free_smiles_with_stereo_to_choose_from_each_set():
    rows = inputs(2, 0)
    assert [set_name for set_name, _, _ in rows] == [name for name in SETS for _ in range(2)]
    assert len({key for _, key, _ in rows}) == 4
    for _, _, smiles in rows:
        assert not set("@/\\") & set(smiles)
        assert has_unspecified_stereo(Chem.MolFromSmiles(smiles))


def test_every_rule_assigns_every_element_and_the_summary_counts_them():
    # the fused azetidine: one of its two bridgehead-N assignments cannot close both rings
    key, row = _job(("GEOM-QM9", "k", "N#CCC1C2CCN1C2", 0, 4))
    assert key == "k"
    for rule in RULES:
        assert row[rule]["assigned"] and row[rule]["conformers"] >= 1
        iso = Chem.MolFromSmiles(row[rule]["isomer"])
        assert "@" in row[rule]["isomer"] and not has_unspecified_stereo(iso)
    assert not has_unspecified_stereo(enumerated_isomer(Chem.AddHs(Chem.MolFromSmiles("CC(O)C=CC")), 3))
    summary = summarise({key: row})
    assert list(summary) == ["GEOM-QM9"] and summary["GEOM-QM9"]["molecules"] == 1
    for rule in RULES:
        assert summary["GEOM-QM9"][rule]["built"] == 1.0
        assert summary["GEOM-QM9"][rule]["choose_max_s"] == row[rule]["choose_s"]
    report = {"config": {"limit": 1, "subset_seed": 0, "seed": 0, "pool": 4, "workers": 1, "commit": "x",
                         "machine": "m", "date": "d"}, "results": {"sets": summary}}
    text = markdown(report)
    assert all(f"| GEOM-QM9 | 1 | {rule} |" in text for rule in RULES)


def _row(assigned: tuple[bool, ...], pool_s: tuple[float, ...], isomers: tuple) -> dict:
    return {"set": "GEOM-QM9", "smiles": "x",
            **{rule: {"choose_s": 0.1, "assigned": a, "isomer": iso, "pool_s": p, "conformers": int(a)}
               for rule, a, p, iso in zip(RULES, assigned, pool_s, isomers)}}


def test_pool_times_and_same_isomer_are_over_molecules_both_rules_have():
    """A cage only the second rule builds (30 s) must not raise that rule's pool mean above
    the first's, and two molecules left unassigned by both are not 'the same isomer'."""
    rows = {"a": _row((True, True, True), (1.0, 2.0, 3.0), ("C[C@H]", "C[C@H]", "C[C@@H]")),
            "cage": _row((False, True, True), (0.0, 30.0, 30.0), (None, "C[C@@H]", "C[C@@H]")),
            "open": _row((False, False, False), (0.0, 0.0, 0.0), (None, None, None))}
    per = summarise(rows)["GEOM-QM9"]
    assert [per[rule]["pool_mean_s"] for rule in RULES] == [1.0, 2.0, 3.0]
    assert per["pool_molecules"] == 1
    assert per["same_isomer"] == {"enumeration / embedding first": {"fraction": 1.0, "of": 1},
                                  "embedding first / energy window": {"fraction": 0.5, "of": 2}}
    assert per[RULES[0]]["assigned"] == 1 / 3 and per[RULES[1]]["built"] == 2 / 3
    report = {"config": {"limit": 3, "subset_seed": 0, "seed": 0, "pool": 4, "workers": 1, "commit": "x",
                         "machine": "m", "date": "d"}, "results": {"sets": {"GEOM-QM9": per}}}
    text = markdown(report)
    assert "by enumeration / embedding first, of the molecules both assign one: GEOM-QM9 1.000 of 1." in text
    assert "by embedding first / energy window, of the molecules both assign one: GEOM-QM9 0.500 of 2." in text
