"""A chemist's messy file: ``molscore generate`` on thousands of real, broken and odd inputs.

Writes ``benchmarks/bad_inputs.json`` and ``benchmarks/bad_inputs.md``.

Builds a CSV (``smiles,name``; ``--lines``, default 10,000, seeded) of SMILES from the
GEOM test lists and molscore's training SMILES, mixed as a large screening file is:

* ``valid``: as they are; ``no stereo``: their ``@``, ``/`` and ``\\`` removed;
* ``mutated``: one to three character edits (deletions, insertions of SMILES tokens, swaps,
  repeats): mostly invalid, some valid and odd;
* ``salt or mixture``: a counter-ion, water or a second molecule after a ``.``;
* ``charged or radical``: charged groups, zwitterions, radical centres;
* ``element``: an atom replaced by a metal or another element (some supported: B, Si, Se);
* ``huge``: chains of 50 to 400 heavy atoms (over and under ``--max-heavy-atoms``);
* ``empty``: empty or blank SMILES cells; ``garbage``: text that is not SMILES (names,
  InChI, ``N/A``, Unicode, a 5,000-character string);
* ``duplicate name``: a valid SMILES under an earlier line's name.

Runs ``molscore generate --input FILE --smiles-column smiles --name-column name -n N
--pool 1`` (one ETKDG start per conformer, so the run is about the input handling, not the
pool) over ``--workers`` processes, then audits the output against the input:

* every output record reads back with RDKit (``unreadable_records``: 0);
* every record is accounted for: in the SDF (by name, duplicates renamed ``name#k`` as the
  reader does), in ``failures.csv``, or both (a molecule that lost conformers);
* the exit status (1 when some failed), reasons per category (numbers masked), and the
  count of ``internal error`` reasons (unexpected exceptions caught per molecule: the
  target is 0);
* per output conformer: its ``checks`` property (``ok``), and its stereo perceived by RDKit
  from the 3D coordinates (``AssignStereochemistryFrom3D``) against every centre and double
  bond the input SMILES specifies, as RDKit parses it (:func:`stereo_against_input`); per
  molecule, whether its conformers are all one isomer (unspecified stereo is chosen once per
  molecule): an audit independent of molscore's own stereo code;
* wall time, molecules and conformers per second.

    python scripts/bench_bad_inputs.py --lines 10000 --workers 2
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from script_signals import signals_end_quietly

REPO = Path(__file__).resolve().parents[1]

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import numpy as np
    from rdkit import Chem, RDLogger

    from bench_conformers import provenance, run_script, save_report
    from molscore.chem.io import disambiguate
    from molscore.chem.stereo import specified_centres, specified_double_bonds

SOURCES = (Path(REPO).parent / "shared" / "data" / "benchmarks" / "geom_drugs_test_smiles.csv",
           Path(REPO).parent / "shared" / "data" / "benchmarks" / "geom_qm9_test_smiles.csv",
           REPO / "datasets" / "train_smiles.csv")
CATEGORIES = {            # name: share of the lines
    "valid": 0.37, "no stereo": 0.06, "mutated": 0.25, "salt or mixture": 0.07,
    "charged or radical": 0.06, "element": 0.05, "huge": 0.02, "empty": 0.03,
    "garbage": 0.03, "duplicate name": 0.06,
}
TOKENS = ["C", "c", "N", "n", "O", "o", "S", "F", "Cl", "Br", "(", ")", "=", "#", "1", "2", "3",
          "[", "]", "@", "@@", "+", "-", "/", "\\", ".", "%10", "*", "H", "[nH]", "[C@H]"]
COUNTER_IONS = ["[Na+]", "[Cl-]", "O", "[K+].[K+]", "CC(=O)[O-]", "Cl", "OS(=O)(=O)O", "[Br-]",
                "O.O", "C(=O)(C(F)(F)F)O"]
CHARGED = ["C[N+](C)(C)C", "[O-]C(=O)c1ccccc1", "C[NH3+]", "[NH3+]CC(=O)[O-]", "C[S+](C)C",
           "c1cc[n+](C)cc1", "[CH3]", "C[CH2]", "[O]c1ccccc1", "[N]=O", "C[C](C)C", "[O-][O-]",
           "C1=CC=C[CH]1", "[C-]#[O+]", "[NH4+]", "C[N-]S(=O)(=O)C", "[O-][n+]1ccccc1"]
ELEMENTS = ["[Fe]", "[Pt]", "[Se]", "[Si]", "[B]", "[As]", "[Sn]", "[Gd]", "[U]", "[Hg]", "[Li]",
            "[Cu+2]", "[Mg]", "[Te]", "[Ge]", "[Al]", "[Xe]"]
GARBAGE = ["N/A", "nan", "NULL", "aspirin", "InChI=1S/CH4/h1H4", "C→C", "β-carotene", "12345",
           "SMILES", "Cc1ccccc1 toluene", "C(C(C(C", "))))", "[[[", "c1ccccc", "C1CC",
           "=C", "C==C", "[Zz]", "[C@@@H]", "\t", "C" * 5000]


def run_command(cmd: list[str], wait_s: float = 30.0) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)``, except when this script is
    stopped while ``cmd`` runs: ``subprocess.run`` then killed ``cmd`` at once (SIGKILL),
    which leaves ``molscore generate --workers``'s worker processes running. Now ``cmd`` gets
    SIGTERM (after a Ctrl-C, which reaches it too, only if it has not ended within ``wait_s``
    seconds) and is waited for, so it stops its workers itself; the script's exception goes on."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            stdout, stderr = proc.communicate()
        except BaseException as stop:
            if isinstance(stop, KeyboardInterrupt):        # a terminal's Ctrl-C reached cmd too
                try:
                    proc.communicate(timeout=wait_s)
                except subprocess.TimeoutExpired:
                    pass
            if proc.poll() is None:
                proc.terminate()
                proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _source_smiles() -> list[str]:
    out: list[str] = []
    for path in SOURCES:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                out.append(row.get("corrected_smiles") or row["smiles"])
    return out


def _mutate(smiles: str, rng: np.random.Generator) -> str:
    s = list(smiles)
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.integers(4)
        at = int(rng.integers(len(s) + 1))
        if kind == 0 and s:                                     # delete
            del s[min(at, len(s) - 1)]
        elif kind == 1:                                         # insert a token
            s[at:at] = list(TOKENS[int(rng.integers(len(TOKENS)))])
        elif kind == 2 and len(s) > 1:                          # swap neighbours
            i = min(at, len(s) - 2)
            s[i], s[i + 1] = s[i + 1], s[i]
        else:                                                   # repeat a span
            j = min(len(s), at + int(rng.integers(1, 6)))
            s[at:at] = s[at:j]
    return "".join(s)


def _replace_first_carbon(smiles: str, atom: str) -> str:
    """``smiles`` with its first aliphatic carbon outside brackets replaced by ``atom``."""
    depth = 0
    for i, ch in enumerate(smiles):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "C" and depth == 0 and smiles[i + 1:i + 2] not in ("l",):
            return smiles[:i] + atom + smiles[i + 1:]
    return smiles + atom


def make_inputs(lines: int, seed: int, sources: list[str]) -> list[tuple[str, str, str]]:
    """``(category, smiles, name)`` per line, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    names = list(CATEGORIES)
    shares = np.array([CATEGORIES[c] for c in names])
    stereo = [s for s in sources if re.search(r"[@/\\]", s)]
    rows: list[tuple[str, str, str]] = []
    for i in range(lines):
        cat = names[int(rng.choice(len(names), p=shares / shares.sum()))]
        src = sources[int(rng.integers(len(sources)))]
        name = f"m{i:05d}"
        if cat == "valid":
            smi = src
        elif cat == "no stereo":
            smi = re.sub(r"[@/\\]", "", stereo[int(rng.integers(len(stereo)))])
        elif cat == "mutated":
            smi = _mutate(src, rng)
        elif cat == "salt or mixture":
            other = COUNTER_IONS + [sources[int(rng.integers(len(sources)))]]
            smi = f"{src}.{other[int(rng.integers(len(other)))]}"
        elif cat == "charged or radical":
            smi = (CHARGED[int(rng.integers(len(CHARGED)))] if rng.random() < 0.5
                   else _replace_first_carbon(src, "[CH2]"))
        elif cat == "element":
            smi = _replace_first_carbon(src, ELEMENTS[int(rng.integers(len(ELEMENTS)))])
        elif cat == "huge":
            unit, atoms = [("C", 1), ("NCC(=O)", 4), ("OCC", 3), ("c1ccc(cc1)", 6)][int(rng.integers(4))]
            smi = unit * max(1, int(rng.integers(50, 401)) // atoms)
        elif cat == "empty":
            smi = ["", " ", "   "][int(rng.integers(3))]
        elif cat == "garbage":
            smi = GARBAGE[int(rng.integers(len(GARBAGE)))]
        else:                                                   # duplicate name
            smi = src
            name = f"m{int(rng.integers(max(i, 1))):05d}"
        rows.append((cat, smi, name))
    return rows


def write_csv(rows: list[tuple[str, str, str]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["smiles", "name"])
        writer.writerows((smi, name) for _, smi, name in rows)


def reason_kind(reason: str) -> str:
    """A failure reason with its numbers, atom lists and quoted parts masked (for counting)."""
    kind = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", reason)
    kind = re.sub(r"\d+(\.\d+)?", "N", kind)
    return re.sub(r"(N, )+N", "N", kind)[:120]


def _unreliable_centre(mol: Chem.Mol, i: int) -> str | None:
    """Why RDKit's perception from 3D does not read atom ``i``'s handedness reliably:
    ``nitrogen`` (a bridgehead nitrogen it does not perceive), ``small ring`` (a centre in a
    3- or 4-membered ring, read from its first three neighbours only), or None."""
    rings = mol.GetRingInfo()
    if mol.GetAtomWithIdx(i).GetAtomicNum() == 7:
        return "nitrogen"
    return "small ring" if rings.IsAtomInRingOfSize(i, 3) or rings.IsAtomInRingOfSize(i, 4) else None


def stereo_against_input(record: Chem.Mol, smiles: str) -> tuple[int, list[str]] | None:
    """``(stereo elements the input SMILES specifies, those the record's coordinates do not
    have)``, as RDKit perceives them from 3D (``AssignStereochemistryFrom3D``), each missed
    one named by its kind: :func:`_unreliable_centre`'s, else ``centre`` or ``double bond``.
    The record's atoms are the input's, hydrogens appended, as ``generate`` writes them;
    ``None`` (not checked) when the record has another number of atoms."""
    ref = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if ref.GetNumAtoms() != record.GetNumAtoms():
        return None
    seen = Chem.Mol(record)
    Chem.AssignStereochemistryFrom3D(seen)
    centres, bonds = specified_centres(ref), specified_double_bonds(ref)
    missed = [_unreliable_centre(ref, i) or "centre" for i, tag in centres.items()
              if seen.GetAtomWithIdx(i).GetChiralTag() != tag]
    missed += ["double bond" for i, label in bonds.items() if seen.GetBondWithIdx(i).GetStereo() != label]
    return len(centres) + len(bonds), missed


def _without_ambiguous_centres(smiles: str) -> str:
    """``smiles`` without the chiral tags of the centres :func:`_unreliable_centre` names."""
    mol = Chem.MolFromSmiles(smiles)
    for atom in mol.GetAtoms():
        if _unreliable_centre(mol, atom.GetIdx()):
            atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    return Chem.MolToSmiles(mol)


def audit(rows: list[tuple[str, str, str]], sdf: Path, failures: Path) -> dict:
    """Match the run's output and failures to the input lines (see the module notes)."""
    seen: dict[str, int] = {}
    expected = [(cat, disambiguate(name, seen), smi) for cat, smi, name in rows]
    inputs = {name: smi for _, name, smi in expected}
    made: dict[str, int] = Counter()
    checks_ok = conformers = unreadable = elements = unchecked = 0
    missed: Counter = Counter()
    isomers: dict[str, set[str]] = {}
    with Chem.SDMolSupplier(str(sdf), removeHs=False) as supplier:
        for mol in supplier:
            if mol is None:
                unreadable += 1
                continue
            name = mol.GetProp("_Name")
            conformers += 1
            made[name] += 1
            checks_ok += mol.GetProp("checks") == "ok"
            stereo = stereo_against_input(mol, inputs[name])
            if stereo is None:
                unchecked += 1
            else:
                elements += stereo[0]
                missed.update(stereo[1])
            perceived = Chem.Mol(mol)
            Chem.AssignStereochemistryFrom3D(perceived)
            isomers.setdefault(name, set()).add(Chem.MolToSmiles(Chem.RemoveHs(perceived)))
    with open(failures, newline="", encoding="utf-8") as handle:
        failed = {row["name"]: row["reason"] for row in csv.DictReader(handle)}
    per: dict[str, dict] = {}
    missing = []
    for cat, name, _ in expected:
        entry = per.setdefault(cat, {"lines": 0, "generated": 0, "failed": 0, "both": 0,
                                     "reasons": Counter()})
        entry["lines"] += 1
        got, reason = made.get(name, 0) > 0, failed.get(name)
        entry["generated"] += got and reason is None
        entry["failed"] += reason is not None and not got
        entry["both"] += got and reason is not None
        if reason is not None:
            entry["reasons"][reason_kind(reason)] += 1
        if not got and reason is None:
            missing.append(name)
    internal = [r for r in failed.values() if "internal error" in r]
    return {"records": len(expected), "missing": missing, "conformers": conformers,
            "unreadable_records": unreadable,
            "molecules_written": len(made), "failures_listed": len(failed),
            "checks_ok": checks_ok, "input_stereo_elements": elements, "input_stereo_missed": dict(missed),
            "input_stereo_unchecked_conformers": unchecked,
            "molecules_with_several_isomers": sorted(k for k, v in isomers.items() if len(v) > 1),
            "several_isomers_beyond_small_rings_and_nitrogen": sorted(
                k for k, v in isomers.items() if len({_without_ambiguous_centres(i) for i in v}) > 1),
            "internal_errors": internal,
            "per_category": {c: {**e, "reasons": dict(e["reasons"].most_common())} for c, e in per.items()}}


def _unchecked(audit_result: dict) -> str:
    """The stereo sentence's note of conformers whose atoms are not the input's (none: none)."""
    n = audit_result.get("input_stereo_unchecked_conformers", 0)
    return f"; not checked: {n} conformers whose atoms are not the input's" if n else ""


def markdown(report: dict) -> str:
    cfg, res = report["config"], report["results"]
    a = res["audit"]
    lines = ["# A messy input file: `molscore generate` on broken and odd records", "",
             f"{a['records']:,} CSV records (seed {cfg['seed']}: GEOM test and training SMILES, "
             "as they are and broken in the ways of the categories below; "
             "`scripts/bench_bad_inputs.py`), `molscore generate --input ... --smiles-column smiles "
             f"--name-column name -n {cfg['n']} --pool 1 --workers {cfg['workers']}`, shipped "
             f"weights; commit {cfg['commit']}, {cfg['machine']}, {cfg['date']}.", "",
             f"Exit status {res['exit_status']}; {res['wall_s'] / 60:.1f} min "
             f"({a['records'] / res['wall_s']:.1f} records/s, {a['conformers'] / res['wall_s']:.1f} "
             f"conformers/s). Records in neither the output nor `failures.csv`: "
             f"{len(a['missing'])}; `internal error` reasons: {len(a['internal_errors'])}; "
             f"output records RDKit cannot read back: {a['unreadable_records']}. "
             f"Of the {a['conformers']:,} conformers written ({a['molecules_written']:,} molecules), "
             f"{a['checks_ok'] / max(a['conformers'], 1):.2%} pass the geometry checks "
             f"(`checks` = ok). Stereo as RDKit perceives it from the 3D coordinates: of the "
             f"{a['input_stereo_elements']:,} stereo elements the inputs specify (summed over "
             f"conformers{_unchecked(a)}), {sum(a['input_stereo_missed'].values())} read otherwise "
             f"({', '.join(f'{k}: {v}' for k, v in a['input_stereo_missed'].items()) or 'none'}; "
             "RDKit does not perceive bridgehead nitrogens from 3D and reads centres in 3- and "
             "4-membered rings from three neighbours); molecules whose conformers are not all "
             f"one isomer: {len(a['molecules_with_several_isomers'])}, of them "
             f"{len(a['several_isomers_beyond_small_rings_and_nitrogen'])} at other centres than "
             "those.",
             "", "| category | records | generated | failed | generated, some conformers dropped | "
             "most frequent reasons |", "|---|---|---|---|---|---|"]
    for cat in CATEGORIES:
        e = a["per_category"].get(cat)
        if e is None:
            continue
        top = "; ".join(f"{r} ({k})" for r, k in list(e["reasons"].items())[:3]).replace("|", "\\|")
        lines.append(f"| {cat} | {e['lines']} | {e['generated']} | {e['failed']} | {e['both']} | {top} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-n", type=int, default=2, help="conformers per molecule (default 2)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bad_inputs",
                    help="folder for the input, output and failures (default runs/bad_inputs)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "bad_inputs",
                    help="writes OUT.json and OUT.md")
    ap.add_argument("--reaudit", action="store_true",
                    help="audit the run already in --work again and rewrite OUT (same --lines/--seed)")
    args = ap.parse_args()
    RDLogger.DisableLog("rdApp.*")
    prov = provenance()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = make_inputs(args.lines, args.seed, _source_smiles())
    src, sdf = args.work / "input.csv", args.work / "out.sdf"
    if args.reaudit:
        report = json.loads(args.out.with_suffix(".json").read_text())
        report["results"]["audit"] = audit(rows, sdf, args.work / "failures.csv")
        save_report(args.out, report, markdown(report))
        return 0
    write_csv(rows, src)
    cmd = [sys.executable, "-m", "molscore", "generate", "--input", str(src), "--smiles-column",
           "smiles", "--name-column", "name", "-n", str(args.n), "--pool", "1", "--workers",
           str(args.workers), "-o", str(sdf), "--no-progress"]
    t0 = time.perf_counter()
    proc = run_command(cmd)
    wall = time.perf_counter() - t0
    (args.work / "stderr.txt").write_text(proc.stderr)
    if proc.returncode not in (0, 1):
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    results = {"exit_status": proc.returncode, "wall_s": wall,
               "audit": audit(rows, sdf, args.work / "failures.csv")}
    config = {"lines": args.lines, "seed": args.seed, "n": args.n, "workers": args.workers,
              "command": " ".join(cmd[1:]), **prov}
    save_report(args.out, {"config": config, "results": results}, markdown({"config": config, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
