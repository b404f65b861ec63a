"""Conformer benchmark: the score model against RDKit ETKDGv3 on the same molecules.

Writes ``benchmarks/conformers.json`` and ``benchmarks/conformers.md``.

* crystal reproduction on ``bioactive_dev.sdf.gz``: a fixed random subset (``--subset``,
  seed 0) of the PDB ligands; 50 conformers per molecule per method (``--crystal-n``); minimum
  heavy-atom RMSD of the first N = 1 / 10 / 50 to the crystal conformer (median, fraction
  < 0.5/1/2 Å). The default pool grows with ``n`` (``generate --pool``), so the N = 1 and 10
  rows of an ``-n 50`` run are not what ``-n 1`` or ``-n 10`` gives: ``--crystal-n 10`` scores
  those (the first start of a pool is the same for every ``n`` of that pool);
* ensemble coverage at 0.75 Å on ``solution_ensembles_hexane.sdf.gz`` and
  ``geom_drugs_excerpt.sdf.gz``: 2K conformers for K references (COV-R/AMR-R/COV-P/AMR-P,
  mean and median over molecules);
* fraction of conformers with correct stereo and fraction passing every geometry check
  (:mod:`molscore.chem.checks`), and how many of the requested conformers were returned;
* speed: model conformers/s on all CPU cores (``--workers`` spawned processes, one torch
  thread each) or on CUDA (``--device``), ETKDG conformers/s on all CPU cores (one process per
  core, ``multiprocessing``);
* per set the reference conformers scored against and the records of its file left out as
  they were read (:func:`molscore.chem.metrics.read_groups`: unreadable, or not the molecule
  of their group);
* per molecule rows in the JSON, and per set a paired comparison of the model with ETKDG
  (fraction of molecules where each method is lower; bootstrap interval of the difference of
  medians for the crystal set, of means for the coverage sets).

A run can be split over sets (``--sets``) and joined with ``--merge``.

Every molecule is given to both methods as its reference record (hydrogens added with
coordinates), so both produce the reference's stereoisomer with the same atoms. ETKDG:
``EmbedMultipleConfs`` with ETKDGv3, no force-field clean-up, ``randomSeed`` = ``--etkdg-seed``
(default 1: the seed of the model route's own ETKDG starts, so with ``--init etkdg`` the
baseline's conformers are the first of the model's ETKDG pool, and at ``--pool 1`` both
methods start from the same conformers and the paired differences are what the score model
changes, free of ETKDG's seed-to-seed variance).
Molecules that either method cannot handle (metals, failed embedding) are reported and left
out of both. When PoseBusters imports (``pip install ".[bench]"``), its ``mol`` checks (bond
lengths and angles, internal clashes, ring and double-bond flatness, internal energy) are run
on the first conformer of every molecule of both methods, as an independent reference for
our own geometry check; the package itself never needs it.

    python scripts/bench_conformers.py --model molscore/weights/conformer.pt --subset 500
    python scripts/bench_conformers.py --model runs/smoke/checkpoint.pt --quick
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.pool import Pool
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Callable, Sequence

from script_signals import signals_end_quietly

REPO = Path(__file__).resolve().parents[1]

with signals_end_quietly():  # Ctrl-C / SIGTERM while importing: one line, 130 / 143
    import numpy as np
    import torch
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem
    from tqdm.auto import tqdm

    from molscore.chem.checks import GeometryChecker
    from molscore.chem.coords import add_conformer
    from molscore.chem.embedding import HYDROGENS
    from molscore.chem.featurize import MoleculeError, prepare_mol
    from molscore.chem.metrics import (Groups, atom_matches, coverage_metrics, crystal_summary,
                                       describe_skipped, group_rmsd, read_groups, summarise,
                                       _heavy_positions)
    from molscore.chem.relax import relax_conformers
    from molscore.chem.selection import PICKS
    from molscore.chem.stereo import assign_stereo_from_3d, check_stereo
    from molscore.cli.argtypes import positive_int, positive_int_or_auto
    from molscore.generate import (DEFAULT_POOLS, MAX_DEFAULT_POOL, ConformerGenerator,
                                   GenerateOptions, default_model_path, etkdg_random_seed)
    from molscore.pool_watch import init_worker, start_pool, stop, watch

DATA = Path(os.environ.get("MOLSCORE_DATA_ROOT", REPO.parent / "shared" / "data"))
CRYSTAL = DATA / "benchmarks" / "bioactive_dev.sdf.gz"
ENSEMBLES = {"hexane": DATA / "conformers" / "solution_ensembles_hexane.sdf.gz",
             "geom_drugs": DATA / "conformers" / "geom_drugs_excerpt.sdf.gz"}
NS = (1, 10, 50)
COVERAGE_METRICS = ("cov_r", "amr_r", "cov_p", "amr_p")
MODEL_SEED = 0          # the generator's seed; its ETKDG starts use etkdg_random_seed(MODEL_SEED)


_STARTED: Barrier | None = None


def _start_worker(initializer: Callable | None, initargs: tuple, started: Barrier | None) -> None:
    """A bench pool worker's set-up: :func:`~molscore.pool_watch.init_worker`, then
    ``initializer``; keeps ``started`` for :func:`_wait_started`."""
    global _STARTED
    init_worker()
    if initializer is not None:
        initializer(*initargs)
    _STARTED = started


def _wait_started(_: int) -> None:
    """Worker task: wait until every worker of the pool has taken one of these (each after
    its initializer), so that no worker takes two."""
    _STARTED.wait()


@contextmanager
def worker_pool(workers: int, *, spawn: bool = False, initializer: Callable | None = None,
                initargs: tuple = (), started: bool = False) -> Iterator[Pool]:
    """A pool of ``workers`` processes (forked where the platform can, unless ``spawn``),
    started as ``generate --workers`` starts its own (:func:`~molscore.pool_watch.start_pool`:
    the workers ignore Ctrl-C) and ended at once on an error, Ctrl-C or, under
    :func:`run_script`, SIGTERM (:func:`~molscore.pool_watch.stop`), so that no worker
    outlives the script. Wait on it with :func:`~molscore.pool_watch.watch`. With
    ``started``, given once every worker has run ``initializer`` (a worker takes tasks after
    it, but one worker could take every task of a plain wait while the others still ran it)."""
    method = "spawn" if spawn or "fork" not in mp.get_all_start_methods() else "fork"
    barrier = mp.get_context(method).Barrier(workers) if started else None
    pool = start_pool(method, workers, _start_worker, (initializer, initargs, barrier))
    try:
        if started:
            list(watch(pool, pool.imap(_wait_started, range(workers)), "nothing was done yet"))
        yield pool
        pool.close()
        pool.join()
    finally:
        stop(pool)


def run_script(main: Callable[[], int]) -> int:
    """A bench script's ``main()`` (its exit status) inside
    :func:`~script_signals.signals_end_quietly`, as the script's imports: SIGTERM (a job
    scheduler's time limit, ``kill``) is raised as :class:`~molscore.errors.Terminated` in the
    main thread, as Ctrl-C raises ``KeyboardInterrupt``, so that :func:`worker_pool` stops its
    workers (the default action ended the main process alone and left every worker running);
    either then ends the script with one line and ``SystemExit`` 130 (Ctrl-C) or 143
    (SIGTERM), as ``molscore`` does."""
    with signals_end_quietly():
        return main()


def _etkdg_job(args: tuple[str, int, int, bool]) -> list[np.ndarray]:
    """Worker: ETKDGv3 conformers of a mol block (with H), as (N, 3) arrays; with the last
    item true, each minimised as ``generate --relax`` does (:func:`relax_conformers`). The
    stereo is read from the block's 3D coordinates as :func:`prepare_mol` reads it
    (:func:`~molscore.chem.stereo.assign_stereo_from_3d`: pyramidal P and N centres included,
    and a centre close to a face of its neighbours' tetrahedron from all four signed volumes),
    so ETKDG keeps the stereo the model is asked to keep."""
    block, n, seed, relax = args
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromMolBlock(block, removeHs=False)
    if mol.GetNumConformers() and mol.GetConformer().Is3D():
        assign_stereo_from_3d(mol)
    else:
        Chem.AssignStereochemistryFrom3D(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    ids = list(AllChem.EmbedMultipleConfs(mol, n, params))
    if relax and ids:
        try:
            relax_conformers(mol)
        except ValueError:          # no force-field parameters: kept as embedded, as generate does
            pass
    return [mol.GetConformer(i).GetPositions() for i in ids]


def etkdg_all(mols: list[Chem.Mol], counts: list[int], workers: int,
              seed: int, relax: bool = False) -> tuple[list[Chem.Mol], float]:
    """ETKDG conformers (``randomSeed = seed``, never 0; MMFF94-minimised with ``relax``) for
    every molecule on ``workers`` processes; returns mols and wall s."""
    if seed == 0:
        raise ValueError("ETKDG randomSeed 0 returns identical conformers; use another seed")
    jobs = [(Chem.MolToMolBlock(m), n, seed, relax) for m, n in zip(mols, counts)]
    with worker_pool(workers) as pool:
        t0 = time.perf_counter()
        coords = list(watch(pool, pool.imap(_etkdg_job, jobs), "no ETKDG conformers kept"))
        wall = time.perf_counter() - t0
    return [_with_coords(m, c) for m, c in zip(mols, coords)], wall


def _with_coords(mol: Chem.Mol, coords: list[np.ndarray]) -> Chem.Mol:
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    for xyz in coords:
        add_conformer(out, xyz)
    return out


def quality(mol: Chem.Mol, fixed: Sequence[int] = ()) -> tuple[int, int, int]:
    """Over the conformers of ``mol``: how many have the right stereo, how many pass the
    geometry checks (stereo included; with ``fixed`` atoms, the problems those make by
    themselves aside, :meth:`GeometryChecker.split <molscore.chem.checks.GeometryChecker.split>`),
    and how many carry such problems of the fixed atoms (0 without)."""
    checker = GeometryChecker(mol, stereo=False, fixed=fixed)
    stereo = geom = given = 0
    for conf in mol.GetConformers():
        ok_stereo = check_stereo(mol, conf.GetId()).ok
        own, theirs = checker.split(conf.GetId())
        stereo += ok_stereo
        geom += ok_stereo and not own
        given += bool(theirs)
    return stereo, geom, given


def map_molecules(job: Callable[[tuple], tuple[str, dict | None]], jobs: list[tuple], workers: int, *,
                  spawn: bool = False, initializer: Callable | None = None,
                  initargs: tuple = ()) -> tuple[dict[str, dict], int, float]:
    """``job`` over ``jobs`` on ``workers`` processes (forked where the platform can, unless
    ``spawn``), with a progress bar; each job returns ``(key, row or None)``. Returns the rows
    that are not None ``{key: row}``, how many were None, and the wall time (s)."""
    t0 = time.perf_counter()
    with worker_pool(workers, spawn=spawn, initializer=initializer, initargs=initargs) as pool:
        done = list(tqdm(watch(pool, pool.imap(job, jobs), "no rows kept"), total=len(jobs),
                         desc="pools", unit="mol"))
    rows = {key: row for key, row in done if row is not None}
    return rows, len(done) - len(rows), time.perf_counter() - t0


def prepare_inputs(groups, limit: int | None, seed: int | None,
                   unsupported: list[tuple[str, str]] | None = None) -> list[tuple[str, Chem.Mol, object]]:
    """(key, prepared mol with H and the reference's stereo, group) for usable molecules;
    ``unsupported`` (if given) gets ``(key, reason)`` of each molecule passed over as one
    ``generate`` does not take (an unsupported element, a radical, ...)."""
    keys = list(groups)
    if seed is not None:
        keys = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    out, skipped = [], 0
    for key in keys:
        if limit is not None and len(out) >= limit:
            break
        try:
            mol = prepare_mol(groups[key].mol, add_hs=True, max_heavy_atoms=100)
        except MoleculeError as err:
            skipped += 1
            if unsupported is not None:
                unsupported.append((key, str(err)))
            continue
        out.append((key, mol, groups[key]))
    print(f"  {len(out)} molecules ({skipped} skipped: unsupported)", file=sys.stderr)
    return out


_WORKER_GEN: ConformerGenerator | None = None


def _model_worker_init(kwargs: dict) -> None:
    global _WORKER_GEN
    torch.set_num_threads(1)
    RDLogger.DisableLog("rdApp.*")
    _WORKER_GEN = ConformerGenerator(**kwargs)


def _model_job(args: tuple[list[tuple[str, Chem.Mol]], int]) -> list[tuple[str, Chem.Mol | None]]:
    """Worker: model conformers of a chunk of ``(key, mol)`` items, ``n`` per molecule."""
    items, n = args
    _WORKER_GEN.options.n = n
    return [(res.name, res.mol) for res in _WORKER_GEN.run(items)]


def run_model(gen_kwargs: dict, inputs, counts: list[int], workers: int,
              chunk: int = 2) -> tuple[dict, float]:
    """Model conformers per key (None when failed) and wall seconds, on ``workers``
    processes (spawned, one torch thread each) given chunks of ``chunk`` molecules. As with
    ``generate --workers``, several processes embed their ETKDG pools on one thread each
    (one process: on all cores). Timed from when every worker has loaded the model."""
    jobs = [([(key, mol) for (key, mol, _), c in zip(inputs, counts) if c == n][a:a + chunk], n)
            for n in sorted(set(counts))
            for a in range(0, sum(c == n for c in counts), chunk)]
    results: dict[str, Chem.Mol | None] = {}
    gen_kwargs = dict(gen_kwargs, etkdg_threads=1 if workers > 1 else 0)
    with worker_pool(workers, spawn=True, initializer=_model_worker_init,     # loads the model
                     initargs=(gen_kwargs,), started=True) as pool:
        t0 = time.perf_counter()
        with tqdm(total=len(inputs), unit="mol", file=sys.stderr) as bar:
            for out in watch(pool, pool.imap_unordered(_model_job, jobs), "no model conformers kept"):
                results.update(out)
                bar.update(len(out))
        wall = time.perf_counter() - t0
    return results, wall


def failed_molecules(keys: list[str], method_mols: dict[str, dict[str, Chem.Mol | None]]
                     ) -> dict[str, int]:
    """Per method (``{method: {key: mol or None}}``), how many of ``keys`` it returned no
    conformer for: the molecules left out of every method's rows."""
    return {method: sum(mols.get(k) is None or mols[k].GetNumConformers() == 0 for k in keys)
            for method, mols in method_mols.items()}


def _left_out(r: dict) -> str:
    """``""``, or ``"; L left out: ..."`` for the molecules of a set's result ``r`` that are
    not in both methods' rows (per method where the report recorded it)."""
    left = r.get("molecules_in_set", r["molecules_both"]) - r["molecules_both"]
    if not left:
        return ""
    failed = r.get("failed")
    why = (", ".join(f"{m} returned no conformer for {k}" for m, k in failed.items() if k) if failed
           else "a method returned no conformer")
    return f"; {left} left out: {why}"


def reference_used(path: Path, groups: Groups, inputs, kind: str) -> dict:
    """What a set was scored against: its ``file``, the reference ``conformers`` of the
    molecules of ``inputs`` (each one's first in a crystal set, all in a coverage set) and
    the ``skipped_records`` of the whole file (:meth:`~molscore.chem.metrics.Groups.skipped`)."""
    return {"file": path.name,
            "conformers": sum(1 if kind == "crystal" else len(g.xyz) for _, _, g in inputs),
            "skipped_records": groups.skipped()}


def _reference_text(r: dict) -> str:
    """A set's reference conformers and the records of its file left out, as the markdown
    shows them (``reference`` of a set's result; "not recorded" in reports from before it)."""
    ref = r.get("reference")
    if ref is None:
        return f"reference conformers {NOT_RECORDED}, skipped records {NOT_RECORDED}"
    passed = r.get("unsupported") or []
    over = (f"; {len(passed)} molecule(s) of the file passed over as generate does not take them "
            f"(e.g. {passed[0]['key']!r}: {passed[0]['reason']})" if passed else "")
    return (f"{ref['conformers']} reference conformers of the {r['molecules_both']} molecules; "
            f"{ref['file']}: {describe_skipped(ref['skipped_records'])}{over}")


def evaluate(method_mols: dict[str, Chem.Mol | None], inputs, requested: dict[str, int],
             kind: str, threshold: float = 0.75, ns: tuple[int, ...] = NS) -> dict:
    """Per-set summary of one method; crystal rows at each N of ``ns``."""
    rows, n_conf, n_req, n_stereo, n_geom, failed = [], 0, 0, 0, 0, 0
    per_molecule: dict[str, dict] = {}
    for key, _, group in inputs:
        mol = method_mols.get(key)
        n_req += requested[key]
        if mol is None or mol.GetNumConformers() == 0:
            failed += 1
            continue
        s, g, _ = quality(mol)
        n_conf += mol.GetNumConformers()
        n_stereo += s
        n_geom += g
        matches = atom_matches(mol, group.mol)
        rmsd = group_rmsd(_heavy_positions(mol), group.xyz[:1] if kind == "crystal" else group.xyz,
                          matches)
        if kind == "crystal":
            rows.append({n: float(rmsd[:n, 0].min()) for n in ns})
        else:
            rows.append(coverage_metrics(rmsd, threshold))
        per_molecule[key] = {str(k): v for k, v in rows[-1].items()}   # the keys JSON keeps
    out = {"molecules": len(rows), "failed_molecules": failed, "conformers": n_conf,
           "requested": n_req, "frac_returned": n_conf / max(n_req, 1),
           "frac_stereo_correct": n_stereo / max(n_conf, 1),
           "frac_geometry_ok": n_geom / max(n_conf, 1)}
    if kind == "crystal":
        out.update(crystal_summary(rows, ns))
    else:
        for k in COVERAGE_METRICS:
            out[k] = summarise(r[k] for r in rows)
    out["per_molecule"] = per_molecule          # for paired comparisons between runs
    return out


def _cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` for uncommitted changes), or None outside git."""
    import subprocess

    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("+dirty" if dirty else "")


def provenance() -> dict[str, str | None]:
    """``commit``, ``date`` and ``machine`` (CPU model and count) for a report's config."""
    return {"commit": _git_commit(), "date": time.strftime("%Y-%m-%d"),
            "machine": f"{_cpu_name()}, {os.cpu_count()} CPUs"}


def save_report(out: Path, report: dict, text: str) -> None:
    """Write ``report`` to ``OUT.json`` and its markdown ``text`` to ``OUT.md``; print ``text``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(text)
    print(text)


def posebusters_version() -> str | None:
    """The installed PoseBusters version, or None when it does not import."""
    try:
        import posebusters
    except Exception:  # not installed, or a broken install
        return None
    return posebusters.__version__


def _first_conformer(mol: Chem.Mol) -> Chem.Mol:
    """``mol`` with only its first conformer, renumbered 0 (PoseBusters reads conformer 0)."""
    single = Chem.Mol(mol)
    single.RemoveAllConformers()
    conf = Chem.Conformer(mol.GetConformers()[0])
    conf.SetId(0)
    single.AddConformer(conf, assignId=False)
    return single


def _posebusters_job(mols: list[Chem.Mol]) -> list[dict]:
    import logging

    from posebusters import PoseBusters

    logging.disable(logging.WARNING)                 # "module failed" lines, counted below
    table = PoseBusters(config="mol").bust(mols, None, None, full_report=False)
    keep = [c for c in table.columns if c not in ("mol_pred_loaded",)]
    return [{k: (None if v != v else bool(v)) for k, v in row.items()}     # NaN -> None
            for row in table[keep].to_dict("records")]


def posebusters_checks(method_mols: dict[str, Chem.Mol | None], keys: list[str],
                       workers: int) -> dict:
    """PoseBusters ``mol`` checks on the first conformer of each molecule in ``keys``: pass
    rate per check (over conformers where it ran), the fraction passing every check (a check
    that could not run counts as not passed) and how many checks could not run."""
    mols = [_first_conformer(method_mols[k]) for k in keys]
    chunks = [mols[a:a + 8] for a in range(0, len(mols), 8)]
    with worker_pool(workers) as pool:
        rows = [r for part in watch(pool, pool.imap(_posebusters_job, chunks), "no PoseBusters rows kept")
                for r in part]
    checks = list(rows[0]) if rows else []
    out = {"conformers": len(rows),
           "frac_all_pass": float(np.mean([all(r[c] is True for c in checks) for r in rows])) if rows else None,
           "not_run": {c: sum(r[c] is None for r in rows) for c in checks if any(r[c] is None for r in rows)},
           "pass_rate": {}}
    for c in checks:
        ran = [r[c] for r in rows if r[c] is not None]
        out["pass_rate"][c] = float(np.mean(ran)) if ran else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint (default: shipped weights)")
    ap.add_argument("--init", default="etkdg", choices=("prior", "etkdg"))
    ap.add_argument("--t-start", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=None, help="default: the route's default")
    ap.add_argument("--pool", type=positive_int_or_auto, default=GenerateOptions.pool,
                    help="ETKDG conformers embedded per molecule to pick the starts from "
                         "(generate --pool; default auto: 50 / 100 / 200 by n)")
    ap.add_argument("--pick", default=GenerateOptions.pick, choices=tuple(PICKS),
                    help="how the starts are picked from the pool (generate --pick)")
    ap.add_argument("--pool-hydrogens", default=GenerateOptions.pool_hydrogens, choices=HYDROGENS,
                    help="the hydrogens ETKDG embeds the pool with (generate --pool-hydrogens)")
    ap.add_argument("--no-cleanup", action="store_true", help="no restrained clean-up of failing conformers")
    ap.add_argument("--relax", action="store_true",
                    help="MMFF94 minimisation of every conformer (generate --relax), and of "
                         "ETKDG's too, so that the baseline stays like for like")
    ap.add_argument("--sampler", default="reverse")
    ap.add_argument("--stereo-guidance", type=float, default=None,
                    help="strength of the stereo guidance (0: off; default the route's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=8192)
    ap.add_argument("--subset", type=int, default=500, help="crystal molecules (default 500)")
    ap.add_argument("--crystal-n", type=int, default=max(NS), choices=NS,
                    help="conformers per crystal molecule (default 50); the table's N up to it")
    ap.add_argument("--max-ensemble", type=int, default=None,
                    help="molecules per ensemble set (default all)")
    ap.add_argument("--quick", action="store_true",
                    help="development run: 20 crystal molecules, 5 per ensemble set, 50 steps")
    ap.add_argument("--sets", default="crystal,coverage_hexane,coverage_geom_drugs",
                    help="comma-separated sets to run (to split the benchmark over processes)")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="only merge reports of runs split with --sets into --out")
    ap.add_argument("--render", action="store_true",
                    help="only recompute the paired comparisons of OUT.json and rewrite OUT.md")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--no-posebusters", action="store_true",
                    help="skip the PoseBusters checks even when it imports (its internal-energy "
                         "check embeds reference conformers: slow on the crystal set)")
    ap.add_argument("--etkdg-seed", type=positive_int, default=etkdg_random_seed(MODEL_SEED),
                    help="ETKDG baseline randomSeed (default 1, the model route's ETKDG start seed; not 0)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "conformers"))
    args = ap.parse_args()
    if args.quick:
        args.subset = min(args.subset, 20)
        args.max_ensemble = min(args.max_ensemble or 5, 5)
        args.steps = min(args.steps or 50, 50)
    if args.merge:
        return merge_reports([Path(p) for p in args.merge], Path(args.out))
    if args.render:
        return render(Path(args.out))
    RDLogger.DisableLog("rdApp.*")
    model = args.model or str(default_model_path())
    gen_kwargs = dict(model=model, device=args.device, steps=args.steps, sampler=args.sampler,
                      init=args.init, t_start=args.t_start, pool=args.pool, pick=args.pick,
                      pool_hydrogens=args.pool_hydrogens, batch_size=args.batch_size,
                      seed=MODEL_SEED, cleanup=not args.no_cleanup, relax=args.relax,
                      stereo_guidance=args.stereo_guidance)
    gen = ConformerGenerator(**gen_kwargs)           # validates the options; reports the device
    args.steps = gen.options.steps
    args.stereo_guidance = gen.options.stereo_guidance
    pb_version = None if args.no_posebusters else posebusters_version()
    shown = Path(model).resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown
    report = {"config": {**{k: v for k, v in vars(args).items() if k != "out"}, "model": str(shown),
                         "etkdg": f"ETKDGv3 randomSeed={args.etkdg_seed}, "
                                  + ("MMFF94-minimised as generate --relax" if args.relax else "no force field"),
                         "pool_rule": _pool_rule(),
                         "device": str(gen.device), "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
                         "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                         "gpu": torch.cuda.get_device_name() if gen.device.type == "cuda" else None,
                         "posebusters": (
                             f"PoseBusters {pb_version} 'mol' checks on the first conformer of each molecule"
                             if pb_version else "not used (--no-posebusters or not installed)"), "commit": _git_commit()},
              "results": {}, "speed": {}}
    sets = [("crystal", CRYSTAL, "name", args.subset, 0)] + \
        [(f"coverage_{k}", p, "ensemble", args.max_ensemble, None) for k, p in ENSEMBLES.items()]
    wanted = args.sets.split(",")
    unknown = set(wanted) - {name for name, *_ in sets}
    if unknown:
        ap.error(f"unknown set(s) {', '.join(sorted(unknown))}; choose from "
                 f"{', '.join(name for name, *_ in sets)}")
    sets = [s for s in sets if s[0] in wanted]
    crystal_ns = tuple(n for n in NS if n <= args.crystal_n)
    model_confs = model_wall = etkdg_confs = etkdg_wall = 0.0
    for name, path, group_by, limit, seed in sets:
        print(f"{name}: reading {path.name}", file=sys.stderr)
        groups = read_groups(path, group_by)
        unsupported: list[tuple[str, str]] = []
        inputs = prepare_inputs(groups, limit, seed, unsupported)
        counts = [args.crystal_n if name == "crystal" else 2 * len(g.xyz) for _, _, g in inputs]
        requested = {key: c for (key, _, _), c in zip(inputs, counts)}
        model_mols, wall = run_model(gen_kwargs, inputs, counts,
                                     1 if gen.device.type == "cuda" else args.workers)
        model_wall += wall
        model_confs += sum(m.GetNumConformers() for m in model_mols.values() if m is not None)
        ekd, wall_e = etkdg_all([m for _, m, _ in inputs], counts, args.workers,
                                args.etkdg_seed, args.relax)
        etkdg_wall += wall_e
        etkdg_confs += sum(m.GetNumConformers() for m in ekd)
        etkdg_mols = {key: m for (key, _, _), m in zip(inputs, ekd)}
        both = [x for x in inputs if model_mols.get(x[0]) is not None
                and etkdg_mols[x[0]].GetNumConformers() > 0]
        kind = "crystal" if name == "crystal" else "coverage"
        report["results"][name] = {
            "molecules_in_set": len(inputs), "molecules_both": len(both),
            "unsupported": [{"key": k, "reason": r} for k, r in unsupported],
            "reference": reference_used(path, groups, both, kind),
            "failed": failed_molecules([key for key, _, _ in inputs],
                                       {"model": model_mols, "etkdg": etkdg_mols}),
            "model": evaluate(model_mols, both, requested, kind, ns=crystal_ns),
            "etkdg": evaluate(etkdg_mols, both, requested, kind, ns=crystal_ns)}
        if pb_version:
            keys = [key for key, _, _ in both]
            for method, mols in (("model", model_mols), ("etkdg", etkdg_mols)):
                report["results"][name][method]["posebusters"] = posebusters_checks(mols, keys, args.workers)
    report["speed"] = {
        f"model_conformers_per_s_{gen.device.type}": model_confs / max(model_wall, 1e-9),
        "model_processes": 1 if gen.device.type == "cuda" else args.workers,
        "model_note": "all of generate: featurisation, ETKDG start, sampling, stereo repair, "
                      "checks and clean-up (one torch thread per process)",
        "etkdg_conformers_per_s_all_cores": etkdg_confs / max(etkdg_wall, 1e-9),
        "etkdg_processes": args.workers}
    _write(report, Path(args.out))
    return 0


def _write(report: dict, out: Path) -> None:
    """OUT.json and OUT.md of a report, with each set's paired comparison (re)computed."""
    for r in report["results"].values():
        r["paired"] = paired_sets(r["model"].get("per_molecule"), r["etkdg"].get("per_molecule"),
                                  ("model", "etkdg"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def render(out: Path) -> int:
    """Rewrite OUT.md and the paired comparisons of OUT.json from OUT.json's results."""
    _write(json.loads(out.with_suffix(".json").read_text()), out)
    return 0


def _per_part(reports: list[dict], text: Callable[[dict], str]) -> str:
    """``"SETS: TEXT; ..."``, ``text`` of the config of each report (of a merge)."""
    return "; ".join(f"{', '.join(r['results'])}: {text(r['config'])}" for r in reports)


def merge_reports(paths: list[Path], out: Path) -> int:
    """Join the ``results`` of reports from runs split with ``--sets`` (a set in a later
    report replaces the same set in an earlier one); speeds are kept per part, since they
    depend on the molecules of each part."""
    reports = [json.loads(p.read_text()) for p in paths]
    config = dict(reports[0]["config"])
    # what the markdown shows of the configuration is shown per part where the parts differ
    # (reports from before --pool used pool 1)
    for key, default, show in (("posebusters", None, str),
                               ("model", None, str), ("init", None, str), ("sampler", None, str),
                               ("steps", None, str), ("t_start", None, str),
                               ("pick", "k-medoids", str), ("pool_hydrogens", "all", str),
                               ("no_cleanup", False, _cleanup_text),
                               ("stereo_guidance", None, lambda v: v or "off"),
                               ("device", None, str), ("etkdg", None, str)):
        if len({str(r["config"].get(key, default)) for r in reports}) > 1:
            config[key] = _per_part(reports, lambda cfg: show(cfg.get(key, default)))
    if len({_pool_text(r["config"]) for r in reports}) > 1:
        config["pool"] = _per_part(reports, _pool_text)
    for r in reports:                       # the crystal set's conformers per molecule: its run's
        if "crystal" in r["results"]:
            config["crystal_n"] = r["config"].get("crystal_n", max(NS))
    merged = {"config": config, "results": {}, "speed": {},
              "parts": [{"file": p.name, "config": r["config"], "sets": list(r["results"]),
                         "speed": r["speed"]} for p, r in zip(paths, reports)]}
    for p, r in zip(paths, reports):
        merged["results"].update(r["results"])
        for k, v in r["speed"].items():
            merged["speed"].setdefault(k, {})[f"{p.name} ({', '.join(r['results'])})"] = v
    _write(merged, out)
    return 0


def paired_bootstrap(a: dict[str, dict], b: dict[str, dict], names: tuple[str, str],
                     columns: tuple[str, ...] = tuple(str(n) for n in NS),
                     statistic: str = "median", seed: int = 0, resamples: int = 2000) -> dict:
    """Paired comparison of two methods' per-molecule rows (``{key: {column: value}}``) over
    the molecules both have. Per column: the fraction of molecules where each is strictly
    lower (``<name>_lower``), and the difference of the ``statistic`` (``"median"`` or
    ``"mean"``) over molecules, a minus b (``<statistic>_diff``), with a 95 % bootstrap
    interval (``ci95``; the same resampled molecule sets for every column)."""
    centre = {"median": np.median, "mean": np.mean}[statistic]
    keys = sorted(set(a) & set(b))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(keys), size=(resamples, len(keys)))
    out = {}
    for col in columns:
        va, vb = (np.array([rows[k][col] for k in keys]) for rows in (a, b))
        boot = centre(va[idx], axis=1) - centre(vb[idx], axis=1)
        out[col] = {f"{names[0]}_lower": float((va < vb).mean()),
                    f"{names[1]}_lower": float((vb < va).mean()),
                    f"{statistic}_diff": float(centre(va) - centre(vb)),
                    "ci95": [float(v) for v in np.percentile(boot, [2.5, 97.5])]}
    return out


def with_diff(value: float, paired: dict | None, statistic: str = "median") -> str:
    """A table cell: ``value`` and, when ``paired`` (one column of :func:`paired_bootstrap`) is
    given, its difference of ``statistic`` with the 95 % interval, ``"v (+d [lo, hi])"``."""
    cell = f"{value:.3f}"
    if paired:
        cell += (f" ({paired[f'{statistic}_diff']:+.3f} "
                 f"[{paired['ci95'][0]:+.3f}, {paired['ci95'][1]:+.3f}])")
    return cell


def paired_sets(a: dict | None, b: dict | None, names: tuple[str, str]) -> dict:
    """:func:`paired_bootstrap` of two methods' per-molecule rows on one set: medians of the
    minimum RMSD at each N both have for a crystal set (rows keyed by N; runs with another
    ``--crystal-n`` have other N), means of :data:`COVERAGE_METRICS` for a coverage set; empty
    when either has no rows."""
    if not a or not b:
        return {}
    first_a, first_b = next(iter(a.values())), next(iter(b.values()))
    if "cov_r" in first_a:
        return paired_bootstrap(a, b, names, COVERAGE_METRICS, "mean")
    return paired_bootstrap(a, b, names, tuple(n for n in first_a if n in first_b))


NOT_RECORDED = "not recorded"


def _pool_name(pool: int | str | None, auto: int | str | None, what: str = "size") -> str:
    """``P``, or ``auto (A)`` for the generator's default pool, ``A`` what the report recorded
    of it (its ``what``: the size, or the rule); None: a report made before it was recorded
    (the ``auto`` rule may have changed since)."""
    if pool is not None:
        return str(pool)
    return f"auto ({auto if auto is not None else what + ' ' + NOT_RECORDED})"


def _pool_rule() -> str:
    """Today's ``auto`` pool rule (:func:`~molscore.generate.default_pool`), as a report records it."""
    return ", ".join(f"{p} for n <= {n}" for n, p in DEFAULT_POOLS) + f", {MAX_DEFAULT_POOL} above"


def _pool_text(cfg: dict) -> str:
    """A report's ETKDG pool as the markdown shows it: its ``pool`` (1 in reports from before
    ``--pool``; a merged report's text per part as is), or ``auto`` with the rule the report
    recorded (``pool_rule``)."""
    return _pool_name(cfg.get("pool", 1), cfg.get("pool_rule"), "rule")


def _cleanup_text(no_cleanup: bool | str | None) -> str:
    """A report's ``no_cleanup`` as the markdown shows it (a merged report's text per part as is)."""
    return no_cleanup if isinstance(no_cleanup, str) else "off" if no_cleanup else "on"


def markdown(report: dict) -> str:
    cfg, res, speed = report["config"], report["results"], report["speed"]
    lines = ["# Conformer benchmark", "",
             f"model `{cfg['model']}`, init `{cfg['init']}`, sampler `{cfg['sampler']}`, "
             f"{cfg['steps']} steps, t_start {cfg['t_start']}, ETKDG pool {_pool_text(cfg)} "
             f"(pick {cfg.get('pick', 'k-medoids')}, hydrogens {cfg.get('pool_hydrogens', 'all')}), clean-up "
             f"{_cleanup_text(cfg.get('no_cleanup'))}, stereo guidance "
             f"{cfg.get('stereo_guidance') or 'off'}, device {cfg['device']}"
             + (f" ({cfg['cpu']}, {cfg['cpu_count']} cores)" if "cpu" in cfg else "")
             + f"; ETKDG: {cfg['etkdg']}; "
             f"posebusters: {cfg['posebusters']}.", ""]
    if "parts" in report:
        lines += ["Merged from runs of " + "; ".join(
            f"{', '.join(p['sets'])} (`{p['file']}`, commit {p['config'].get('commit') or 'not recorded'})"
            for p in report["parts"]) + "; a set in a later run replaces the earlier one.", ""]
    if "crystal" in res:
        c = res["crystal"]
        lines += [f"## Crystal conformer reproduction ({c['molecules_both']} molecules of a fixed "
                  f"random subset of {c.get('molecules_in_set', c['molecules_both'])} of "
                  f"bioactive_dev, seed 0{_left_out(c)}; {cfg.get('crystal_n', max(NS))} "
                  "conformers per molecule)", "",
                  "| method | N | median RMSD (Å) | < 0.5 Å | < 1 Å | < 2 Å |", "|---|---|---|---|---|---|"]
        for method in ("model", "etkdg"):
            for n in (n for n in NS if f"N={n}" in c[method]):
                r = c[method][f"N={n}"]
                lines.append(f"| {method} | {n} | {r['median']:.3f} | {r['frac_below_0.5']:.3f} | "
                             f"{r['frac_below_1.0']:.3f} | {r['frac_below_2.0']:.3f} |")
        lines.append("")
        paired = c.get("paired")
        if paired:
            lines += ["Paired per molecule (model against ETKDG on the same molecule; 95 % bootstrap "
                      "interval of the difference of medians, model minus ETKDG, 2,000 resamples):", "",
                      "| N | model lower | ETKDG lower | median difference (Å) |", "|---|---|---|---|"]
            for n, r in paired.items():
                lines.append(f"| {n} | {r['model_lower']:.3f} | {r['etkdg_lower']:.3f} | "
                             f"{r['median_diff']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] |")
            lines.append("")
    cov = [k for k in res if k.startswith("coverage_")]
    if cov:
        lines += ["## Ensemble coverage at 0.75 Å (2K samples for K references; mean / median)", ""]
        lines += [f"- {k[9:]}: {_reference_text(res[k])}" for k in cov] + [""]
        lines += ["| set | molecules | method | COV-R | AMR-R | COV-P | AMR-P |", "|---|---|---|---|---|---|---|"]
        for k in cov:
            for method in ("model", "etkdg"):
                r = res[k][method]
                cells = " | ".join(f"{r[m]['mean']:.3f} / {r[m]['median']:.3f}"
                                   for m in COVERAGE_METRICS)
                lines.append(f"| {k[9:]} | {res[k]['molecules_both']}{_left_out(res[k])} | {method} | {cells} |")
        lines.append("")
        paired = {k: res[k].get("paired") for k in cov}
        if all(paired.values()):
            lines += ["Paired per molecule (95 % bootstrap interval of the difference of means, "
                      "model minus ETKDG, 2,000 resamples):", "",
                      "| set | " + " | ".join(m.upper().replace("_", "-") for m in COVERAGE_METRICS)
                      + " |", "|---|" + "---|" * len(COVERAGE_METRICS)]
            for k, p in paired.items():
                lines.append(f"| {k[9:]} | " + " | ".join(
                    f"{p[m]['mean_diff']:+.3f} [{p[m]['ci95'][0]:+.3f}, {p[m]['ci95'][1]:+.3f}]"
                    for m in COVERAGE_METRICS) + " |")
            lines.append("")
    lines += ["## Validity and speed", "",
              "| set | method | returned / requested | stereo correct | geometry checks pass | "
              "PoseBusters mol checks pass (first conformer) |",
              "|---|---|---|---|---|---|"]
    for k, r in res.items():
        for method in ("model", "etkdg"):
            m = r[method]
            pb = m.get("posebusters")
            pb_cell = f"{pb['frac_all_pass']:.3f} of {pb['conformers']}" if pb else "not run"
            lines.append(f"| {k} | {method} | {m['frac_returned']:.3f} | {m['frac_stereo_correct']:.3f} | "
                         f"{m['frac_geometry_ok']:.3f} | {pb_cell} |")
    pb_rows = [(k, method, r[method]["posebusters"]) for k, r in res.items() for method in ("model", "etkdg")
               if r[method].get("posebusters")]
    if pb_rows:
        checks = list(pb_rows[0][2]["pass_rate"])
        lines += ["", "PoseBusters pass rate per check (first conformer of each molecule):", "",
                  "| set | method | " + " | ".join(c.replace("_", " ") for c in checks) + " |",
                  "|---|---|" + "---|" * len(checks)]
        for k, method, pb in pb_rows:
            lines.append(f"| {k} | {method} | " + " | ".join(
                "n/a" if pb["pass_rate"].get(c) is None else f"{pb['pass_rate'][c]:.3f}" for c in checks) + " |")
    def fmt(v) -> str:
        if isinstance(v, dict):                      # per part of a merged report
            if len({json.dumps(x) for x in v.values()}) == 1:
                return fmt(next(iter(v.values())))
            return "; ".join(f"{fmt(x)} in {part}" for part, x in v.items())
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines += [""] + [f"- {k}: {fmt(v)}" for k, v in speed.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(run_script(main))
