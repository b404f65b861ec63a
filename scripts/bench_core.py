"""Conformers around a fixed core: ``generate --core`` against RDKit's coordinate-map embedding.

Writes ``benchmarks/core.{json,md}``.

Per molecule of the conformer benchmark's fixed crystal subset (``--limit`` first usable
molecules; seed 0), the core is the molecule's largest ring system (fused or spiro rings;
at least 5 atoms, at least 3 heavy atoms outside it) at its crystal coordinates, as a
chemist would fix a series' scaffold from a crystal structure; molecules of at most 50 heavy
atoms without macrocycles (rings of at most 12 atoms). Both methods get the molecule
(hydrogens added, the crystal's stereo) and the core, ``n`` conformers each:

* ``model``: :class:`~molscore.generate.ConformerGenerator` with ``core`` (default route,
  shipped weights): the core atoms keep the given coordinates exactly;
* ``ETKDGv3 coordMap``: ``EmbedMultipleConfs`` (ETKDGv3, ``randomSeed`` 1, never 0) with the
  core atoms as ``coordMap`` (and the generator's ``CORE_EMBED_TIMEOUT``), each conformer aligned on the core atoms (what RDKit's
  ``ConstrainedEmbed`` does, without its force-field step);
* ``ETKDGv3 coordMap, core kept``: the same with the pool ``generate`` embeds for this ``n``,
  keeping the first ``n`` whose core lies within ``CORE_RMSD_TOL`` of the given one (the
  model route's starts before picking and the network).

Reported: the minimum heavy-atom RMSD to the crystal conformer of the first N = 1 / 10
conformers *in place* (no re-alignment, symmetry-aware ``rdMolAlign.CalcRMS``: the core
fixes the frame, so this is how well the rest of the molecule is placed around it), median
over molecules and paired 95 % bootstrap intervals; how far each method's core atoms are
from the given core (RMSD after alignment); the stereo and geometry checks (problems the
core's atoms make by themselves counted apart); seconds per conformer (one process each,
all of generate against the embedding alone).

    python scripts/bench_core.py --limit 300 --workers 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from script_signals import signals_end_quietly

REPO = Path(__file__).resolve().parents[1]

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import numpy as np
    import torch
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem, rdMolAlign

    from bench_conformers import (CRYSTAL, map_molecules, paired_bootstrap, prepare_inputs,
                                  provenance, quality, run_script, save_report, with_diff)
    from molscore.chem.core import CORE_RMSD_TOL, Core
    from molscore.chem.metrics import read_groups
    from molscore.chem.featurize import MoleculeError
    from molscore.generate import (ConformerGenerator, GenerateOptions, default_model_path,
                                   default_pool)

METHODS = ("model", "ETKDGv3 coordMap", "ETKDGv3 coordMap, core kept")
NS = (1, 10)
MAX_HEAVY = 50      # drug-like molecules: ETKDG with a coordinate map is slow on large ones
MAX_RING = 12       # and on macrocycles (a 68-atom macrolide: 4 s a conformer, 0.6 s without)
ETKDG_SEED = 1
_GEN: ConformerGenerator | None = None


def largest_ring_system(mol: Chem.Mol) -> list[int]:
    """Atom indices of the largest ring system (rings sharing atoms merged), [] without rings."""
    systems: list[set[int]] = []
    for ring in mol.GetRingInfo().AtomRings():
        ring = set(ring)
        for other in [s for s in systems if s & ring]:
            ring |= other
            systems.remove(other)
        systems.append(ring)
    return sorted(max(systems, key=len)) if systems else []


def cut_core(mol: Chem.Mol, atoms: list[int]) -> Chem.Mol:
    """The atoms ``atoms`` of ``mol`` with their hydrogens and the atoms double-bonded to them
    (so that an aromatic [nH] keeps its hydrogen and a pyridone its oxygen), with the
    coordinates of ``mol``'s first conformer, as a molecule."""
    keep = set(atoms)
    for i in atoms:
        for bond in mol.GetAtomWithIdx(i).GetBonds():
            other = bond.GetOtherAtom(mol.GetAtomWithIdx(i))
            if other.GetAtomicNum() == 1 or bond.GetBondType() == Chem.BondType.DOUBLE:
                keep.add(other.GetIdx())
    em = Chem.RWMol(mol)
    for i in sorted((a.GetIdx() for a in mol.GetAtoms() if a.GetIdx() not in keep), reverse=True):
        em.RemoveAtom(i)
    return em.GetMol()


def in_place_rmsd(mol: Chem.Mol, ref: Chem.Mol) -> np.ndarray:
    """Heavy-atom RMSD of every conformer of ``mol`` to ``ref``'s first conformer, without
    alignment (symmetry-aware)."""
    probe, target = Chem.RemoveHs(mol), Chem.RemoveHs(ref)
    return np.array([rdMolAlign.CalcRMS(probe, target, prbId=c.GetId(), maxMatches=1000)
                     for c in probe.GetConformers()])


def core_rmsd(mol: Chem.Mol, core: Core) -> np.ndarray:
    """Per conformer of ``mol``: RMSD of its core atoms to the core after alignment on them."""
    return np.array(list(core.match(mol).align(Chem.Mol(mol), tol=float("inf")).values()))


def etkdg_with_core(mol: Chem.Mol, core: Core, n: int, tol: float = float("inf"),
                    pool: int | None = None) -> Chem.Mol:
    """ETKDGv3 conformers with the core atoms as coordinate map, aligned on them: ``pool``
    (default ``n``) embedded, the first ``n`` whose core is within ``tol`` Å kept."""
    found = core.match(mol)
    work = Chem.Mol(mol)
    work.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = ETKDG_SEED
    found.constrain(params)      # the generator's coordinate map and timeout
    AllChem.EmbedMultipleConfs(work, pool or n, params)
    for cid in list(found.align(work, tol=tol))[n:]:
        work.RemoveConformer(cid)
    return work


def _worker_init(model: str | None) -> None:
    global _GEN
    torch.set_num_threads(1)
    RDLogger.DisableLog("rdApp.*")
    _GEN = ConformerGenerator(model, device="cpu", etkdg_threads=1)


def _job(args: tuple[str, str, str, int]) -> tuple[str, dict | None]:
    """Worker: both methods on one molecule; None when either returns no conformer."""
    key, block, core_text, n = args
    mol = Chem.MolFromMolBlock(block, removeHs=False)
    Chem.AssignStereochemistryFrom3D(mol)
    core = Core.from_text(core_text)
    gen = ConformerGenerator(_GEN.model, meta=_GEN.meta, device="cpu", etkdg_threads=1,
                             options=replace(_GEN.options, n=n, core=core_text))
    t0 = time.perf_counter()
    result = gen.generate(Chem.Mol(mol), key)
    t_model = time.perf_counter() - t0
    made, seconds = {"model": result.mol}, {"model": t_model}
    for name, kwargs in ((METHODS[1], {}), (METHODS[2], {"tol": CORE_RMSD_TOL, "pool": default_pool(n)})):
        t0 = time.perf_counter()
        made[name] = etkdg_with_core(mol, core, n, **kwargs)
        seconds[name] = time.perf_counter() - t0
    if any(m is None or m.GetNumConformers() == 0 for m in made.values()):
        return key, None
    row = {}
    for name, out in made.items():
        rmsd = in_place_rmsd(out, mol)
        stereo, geom, given = quality(out, core.match(out).atoms)
        row[name] = {**{str(k): float(rmsd[:k].min()) for k in NS},
                     "core_rmsd": core_rmsd(out, core).tolist(), "conformers": out.GetNumConformers(),
                     "stereo": stereo, "geometry": geom, "given_problems": given,
                     "seconds": seconds[name]}
    return key, row


def summarise(rows: dict[str, dict]) -> dict:
    out: dict = {}
    for name in METHODS:
        per = [r[name] for r in rows.values()]
        confs = sum(p["conformers"] for p in per)
        cores = np.concatenate([p["core_rmsd"] for p in per])
        out[name] = {**{str(k): float(np.median([p[str(k)] for p in per])) for k in NS},
                     **{f"under_{t}_N10": float(np.mean([p["10"] < t for p in per])) for t in (1.0, 2.0)},
                     "conformers": confs,
                     "core_rmsd_mean": float(cores.mean()), "core_rmsd_max": float(cores.max()),
                     "frac_core_over_tol": float((cores > CORE_RMSD_TOL).mean()),
                     "frac_stereo_correct": sum(p["stereo"] for p in per) / confs,
                     "frac_geometry_ok": sum(p["geometry"] for p in per) / confs,
                     "frac_given_problems": sum(p["given_problems"] for p in per) / confs,
                     "seconds_per_conformer": sum(p["seconds"] for p in per) / confs}
    def table(name: str) -> dict[str, dict]:
        return {k: {str(n): r[name][str(n)] for n in NS} for k, r in rows.items()}
    out["paired"] = {name: paired_bootstrap(table("model"), table(name), ("model", name),
                                            tuple(str(n) for n in NS)) for name in METHODS[1:]}
    return out


def _flip(paired: dict | None) -> dict | None:
    """A paired model-minus-other difference as other minus model."""
    if paired is None:
        return None
    lo, hi = paired["ci95"]
    return {**paired, "median_diff": -paired["median_diff"], "ci95": [-hi, -lo]}


def markdown(report: dict) -> str:
    cfg, res = report["config"], report["results"]
    lines = ["# Conformers around a fixed core (`generate --core`)", "",
             f"{res['molecules']} molecules of the fixed {cfg['subset']}-molecule subset of "
             f"`{cfg['data']}` (the first {cfg['limit']} of at most {MAX_HEAVY} heavy atoms, rings "
             f"of at most {MAX_RING} atoms, a ring system of at least 5 atoms and 3 heavy atoms "
             f"outside it, whose match is its own atoms, in place: "
             f"{res['ambiguous_cores']} were not; {res['failed']} left out where a method "
             f"returned nothing), the largest ring system fixed at its crystal coordinates, {cfg['n']} "
             f"conformers each; model `{cfg['model']}` at the default settings; ETKDGv3 with "
             f"the core as coordMap (randomSeed {ETKDG_SEED}), aligned on the core; commit "
             f"{cfg['commit']}, {cfg['machine']}, {cfg['date']}. Minimum heavy-atom RMSD to "
             "the crystal conformer without re-alignment (the core fixes the frame), median over "
             "molecules; in brackets each ETKDG row minus the model, paired 95 % bootstrap "
             "interval. The third row embeds the pool `generate` embeds for this n and keeps the "
             f"first n whose core lies within {CORE_RMSD_TOL} Å of the given one (no picks, no "
             "network).", "",
             "| method | N = 1 | N = 10 | < 1 / 2 Å at N = 10 | core RMSD mean / max (Å) | "
             f"core > {CORE_RMSD_TOL} Å | stereo / geometry ok | core's own problems | s per conformer |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in METHODS:
        r = res[name]
        paired = res["paired"].get(name, {})
        cells = [with_diff(r[str(n)], _flip(paired.get(str(n)))) for n in NS]
        lines.append(f"| {name} | " + " | ".join(cells) +
                     f" | {r['under_1.0_N10']:.3f} / {r['under_2.0_N10']:.3f} | "
                     f"{r['core_rmsd_mean']:.4f} / {r['core_rmsd_max']:.3f} | "
                     f"{r['frac_core_over_tol']:.3f} | {r['frac_stereo_correct']:.3f} / "
                     f"{r['frac_geometry_ok']:.3f} | {r['frac_given_problems']:.3f} | "
                     f"{r['seconds_per_conformer']:.3f} |")
    lines += ["", "Geometry: the conformer's own problems; a problem the core's atoms make by "
              "themselves (a strained angle or a bent double bond of the crystal pose: "
              "`GeometryChecker.split`) is the core's own, counted in its column.", "",
              f"Both methods, checks and RMSDs took {res['wall_s'] / 60:.1f} min on "
              f"{cfg['workers']} processes (model and ETKDG times are per process)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subset", type=int, default=500,
                    help="the fixed random subset of bench_conformers.py (seed 0)")
    ap.add_argument("--limit", type=int, default=300, help="the first LIMIT usable molecules")
    ap.add_argument("-n", type=int, default=10, help="conformers per molecule (default 10)")
    ap.add_argument("--model", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "core", help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    prov = provenance()
    jobs, ambiguous = [], 0
    for key, mol, _ in prepare_inputs(read_groups(CRYSTAL, "name"), args.subset, 0):
        atoms = largest_ring_system(mol)
        heavy = sum(a.GetAtomicNum() > 1 for a in mol.GetAtoms())
        largest_ring = max((len(r) for r in mol.GetRingInfo().AtomRings()), default=0)
        if len(atoms) < 5 or heavy - len(atoms) < 3 or heavy > MAX_HEAVY or largest_ring > MAX_RING:
            continue
        core = Core.from_mol(cut_core(mol, atoms))
        try:                         # the chosen match must be its own atoms, in place
            found = core.match(mol)
        except MoleculeError:        # the core fits two places (Core.match refuses it, 173c45d)
            ambiguous += 1
            continue
        if np.abs(mol.GetConformer().GetPositions()[found.atoms] - core.positions).max() > 1e-6:
            ambiguous += 1
            continue
        jobs.append((key, Chem.MolToMolBlock(mol), core.text, args.n))
        if len(jobs) == args.limit:
            break
    rows, failed, wall = map_molecules(_job, jobs, args.workers, spawn=True, initializer=_worker_init,
                                       initargs=(args.model,))
    model = Path(args.model) if args.model else default_model_path()
    config = {"data": CRYSTAL.name, "subset": args.subset, "limit": args.limit, "n": args.n,
              "model": str(model.resolve().relative_to(REPO) if model.resolve().is_relative_to(REPO) else model),
              "etkdg_seed": ETKDG_SEED, "workers": args.workers, "options": repr(GenerateOptions()), **prov}
    results = {"molecules": len(rows), "failed": failed, "ambiguous_cores": ambiguous,
               "wall_s": wall, **summarise(rows),
               "per_molecule": rows}
    report = {"config": config, "results": results}
    save_report(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
