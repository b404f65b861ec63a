"""Bond lengths and angles of generated conformers against MMFF94's reference values.

Writes ``benchmarks/geometry.{json,md}`` (``--out``).

For the first ``--limit`` molecules of the conformer benchmark's fixed crystal subset
(``bioactive_dev.sdf.gz``, drug-like PDB ligands; given to the generator as isomeric SMILES,
as a chemist would give them), ``--n`` conformers each from ``molscore generate``'s default
route (shipped weights, seed 0) and from RDKit ETKDGv3 (``randomSeed`` 1, no force field,
the same molecules with the same stereo). Per molecule both methods are scored on the same
number of conformers, the first ``k`` of each with ``k`` the smaller of their counts (ETKDG
returns fewer than asked for some molecules, a long PEG chain among them; unequal counts
would weigh the molecules differently in the two columns). Every bond length and every bond
angle of every kept conformer is compared with MMFF94's reference value for it (``r0`` of the bond-stretch term,
``theta0`` of the angle-bend term; molecules MMFF94 cannot type, or whose bond lengths it
gets wrong, are left out: :func:`molscore.chem.relax.mmff_properties`). Reported per
method, separately for bonds and angles with a hydrogen and those between heavy atoms: the
mean signed deviation (a systematic bias) and the mean absolute deviation.

    python scripts/bench_geometry.py --limit 50
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from script_signals import signals_end_quietly

REPO = Path(__file__).resolve().parents[1]

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import numpy as np
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem
    from rdkit.Chem import rdMolTransforms as transforms

    from bench_conformers import CRYSTAL, prepare_inputs, provenance, run_script, save_report
    from molscore.chem.metrics import read_groups
    from molscore.chem.relax import mmff_properties
    from molscore.generate import ConformerGenerator, GenerateOptions, etkdg_random_seed

METHODS = ("model", "etkdg")
TERMS = ("bond", "angle")
KINDS = ("with H", "heavy")


def deviations(mol: Chem.Mol) -> dict[str, dict[str, np.ndarray]] | None:
    """Deviations of every conformer's bond lengths (Å) and bond angles (degrees) from
    MMFF94's ``r0`` and ``theta0``: ``{term: {kind: (K * terms,)}}``, ``kind`` ``"with H"``
    where a hydrogen takes part, else ``"heavy"``. ``None`` where :func:`mmff_properties`
    has none (MMFF94 cannot type ``mol``, or gives a bond a rest length far from UFF's: N≡N
    1.46 Å)."""
    props = mmff_properties(mol)
    if props is None:
        return None
    is_h = [a.GetAtomicNum() == 1 for a in mol.GetAtoms()]
    out: dict[str, dict[str, list[float]]] = {t: {k: [] for k in KINDS} for t in TERMS}
    confs = list(mol.GetConformers())
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        r0 = props.GetMMFFBondStretchParams(mol, i, j)[2]     # (type, kb, r0)
        kind = KINDS[0] if is_h[i] or is_h[j] else KINDS[1]
        out["bond"][kind] += [transforms.GetBondLength(c, i, j) - r0 for c in confs]
    for centre in mol.GetAtoms():
        k = centre.GetIdx()
        nbrs = [n.GetIdx() for n in centre.GetNeighbors()]
        for a, i in enumerate(nbrs):
            for j in nbrs[a + 1:]:
                params = props.GetMMFFAngleBendParams(mol, i, k, j)  # (type, ka, theta0)
                if params is None:      # no bend term
                    continue
                kind = KINDS[0] if is_h[i] or is_h[j] else KINDS[1]
                out["angle"][kind] += [transforms.GetAngleDeg(c, i, k, j) - params[2] for c in confs]
    return {t: {k: np.asarray(v) for k, v in out[t].items()} for t in TERMS}


def summarise(parts: list[dict[str, dict[str, np.ndarray]]]) -> dict:
    """Mean signed and mean absolute deviation per term and kind over all molecules."""
    table = {}
    for term in TERMS:
        for kind in KINDS:
            d = np.concatenate([p[term][kind] for p in parts])
            table[f"{term} {kind}"] = {"count": int(d.size), "mean": float(d.mean()),
                                      "mean_abs": float(np.abs(d).mean())}
    return table


def etkdg(mol: Chem.Mol, n: int, seed: int) -> Chem.Mol:
    """``n`` ETKDGv3 conformers of ``mol`` (its stereo kept), ``randomSeed`` ``seed``."""
    if seed == 0:
        raise ValueError("ETKDG randomSeed 0 returns identical conformers; use another seed")
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    AllChem.EmbedMultipleConfs(out, n, params)
    return out


def first_conformers(made: dict[str, Chem.Mol]) -> dict[str, Chem.Mol]:
    """Copies of each method's molecule with its first ``k`` conformers, ``k`` the smallest
    conformer count among them, so that every method is scored on as many conformers of
    each molecule."""
    k = min(mol.GetNumConformers() for mol in made.values())
    out = {}
    for name, mol in made.items():
        kept = Chem.Mol(mol)
        for conf in list(kept.GetConformers())[k:]:
            kept.RemoveConformer(conf.GetId())
        out[name] = kept
    return out


def markdown(report: dict) -> str:
    cfg, res = report["config"], report["results"]
    lines = [
        "# Bond lengths and angles against MMFF94's reference values", "",
        f"{res['molecules']} molecules (the first {cfg['limit']} of the crystal benchmark's fixed subset of "
        f"`{cfg['data']}`, given as SMILES), {cfg['n']} conformers each: `molscore generate` default route "
        f"(shipped weights, seed 0) and ETKDGv3 (randomSeed {cfg['etkdg_seed']}, no force field); "
        f"commit {cfg['commit']}, {cfg['machine']}, {cfg['date']}. Deviation of every bond length (Å) "
        "and bond angle (degrees) from MMFF94's `r0` / `theta0`: mean signed / mean absolute"
        + (f"; per molecule both methods' first k conformers, k the smaller count (fewer than "
           f"{cfg['n']} for {res['trimmed']} molecules), so the counts are both methods'"
           if "trimmed" in res else "") + ".", "",
        "| term | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for key in res["model"]:
        cells = [f"{res[m][key]['mean']:+.4f} / {res[m][key]['mean_abs']:.4f}" for m in METHODS]
        lines.append(f"| {key} ({res['model'][key]['count']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=50, help="molecules (default 50)")
    ap.add_argument("-n", "--n", type=int, default=10, help="conformers per molecule (default 10)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "geometry"))
    args = ap.parse_args()
    RDLogger.DisableLog("rdApp.*")
    prov = provenance()
    options = GenerateOptions(n=args.n)
    seed = etkdg_random_seed(options.seed)
    generator = ConformerGenerator(device="cpu", options=options)
    parts: dict[str, list] = {m: [] for m in METHODS}
    molecules = trimmed = 0
    for key, mol, _ in prepare_inputs(read_groups(CRYSTAL, "name"), 500, 0)[:args.limit]:
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
        result = next(generator.run([(key, smiles)]))
        if not result.ok:
            continue
        made = {"model": result.mol, "etkdg": etkdg(result.mol, args.n, seed)}
        if made["etkdg"].GetNumConformers() == 0:
            continue
        kept = first_conformers(made)
        devs = {m: deviations(kept[m]) for m in METHODS}
        if any(d is None for d in devs.values()):
            continue
        molecules += 1
        trimmed += kept["model"].GetNumConformers() < args.n
        for m in METHODS:
            parts[m].append(devs[m])
    config = {"data": CRYSTAL.name, "limit": args.limit, "n": args.n, "etkdg_seed": seed, **prov}
    results = {"molecules": molecules, "trimmed": trimmed, **{m: summarise(parts[m]) for m in METHODS}}
    report = {"config": config, "results": results}
    save_report(Path(args.out), report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
