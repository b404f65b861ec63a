"""``molscore generate``: 3D conformers from SMILES into an SDF.

Inputs: one SMILES argument, or ``--input`` with a ``.smi`` file (``SMILES [name]`` per
line), a ``.csv`` file (``--smiles-column`` / ``--name-column``, whose default is a column
``name``, else ``id``, as for ``build-dataset etkdg``), an ``.sdf`` file (2D or 3D
records: their atoms, hydrogens and stereo are kept, named by the title line or the
``--name-column`` property) or ``-`` for stdin (``.smi`` lines unless ``--format csv|sdf``).
Each output record's ``_Name`` is the input name (the SMILES when there is none; a repeated
name ``x`` becomes ``x#2``, ``x#3``, ... and is reported on stderr), with properties
``smiles``, ``conformer``, ``checks`` and, with ``--relax``, ``energy`` (kcal/mol) and
``forcefield`` (MMFF94, or UFF where MMFF94 has no parameters); an SDF
record's other properties are passed on. Records follow the input order; molecules are
sampled in batches of --batch-size atoms, and each is written (and flushed; a .sdf.gz
output gets one gzip member per molecule) as soon as it is finished: an interrupted run
loses only the batch in progress.

Stereo: the input's stereocentres and E/Z bonds are kept in every conformer (with --init
prior the sampler is steered to them, --stereo-guidance; a mirror image is reflected, single
inverted centres are flipped, a centre too close to planar gets the clean-up below, others
are resampled up to --max-retries rounds and then dropped). Conformers failing a geometry
check (``checks`` property) get a restrained MMFF94s clean-up (heavy atoms held near the
sampled positions, stereo held on its side; ``--no-cleanup`` turns it off) and are resampled
when it does not help. A resampled conformer starts from the ETKDG pool's next pick, a start
no other conformer has (from its own start again when the pool has no more). Unspecified stereo:
one isomer is chosen from --seed (another when ETKDG cannot build it) and recorded in the
``smiles`` property. --batch-size counts
atoms (molecules x conformers per batch).

Records that cannot be done go to ``failures.csv`` next to the output (columns
``name,input,reason``; also molecules that lost conformers to the stereo checks). Exit
status: 0 when every record succeeded, 1 when some failed, 2 for usage errors (also an
input without records, an output that cannot be written, a disk that fills up mid-run:
--resume continues).

The settings of a run (options, model file and its SHA-256, a digest of the input records'
names and SMILES, and of SDF records' atoms, coordinates and properties, molscore version) are
written to ``OUTPUT.json`` beside the output (``out.sdf.json`` for ``-o out.sdf``).
--resume continues an interrupted run: it keeps the records the output and ``failures.csv``
hold up to the end of a sampling batch written whole (recorded in ``OUTPUT.json`` at most
every 10 s, so a resume redoes up to some 10 s of work besides the batch in progress),
redoes the molecules after it (one may be incomplete) and appends the rest, sampling the
batches the interrupted run did. It refuses another molscore version, other settings or
another input. A molecule's conformers depend only on its input, the options and --seed, so
the resumed output is the one an uninterrupted run writes (another --batch-size, --device
or --workers changes float rounding only; not with --sampler pc or ald, whose Langevin step
is pooled over each batch, so a molecule's conformers there depend on the molecules sampled
with it).

Fixed atoms: --core CORE.sdf holds a posed core (e.g. a series' scaffold from a crystal
structure) in place. Its heavy atoms are matched in each molecule as a substructure (stereo
included, hydrogen counts not; among symmetric matches, the one that puts the file's
hydrogens, if it has them, on the molecule's), and those atoms keep the file's coordinates
in every conformer, which is then in the core's frame: the ETKDG pool is embedded
with them as a coordinate map, the sampler pins them (inpainting), the clean-up and --relax
hold them fixed; the ``core_atoms`` property lists those atoms (0-based indices, in the
core's atom order). A molecule without the core is a failure with that reason, and so is one
that holds it at two places no symmetry of the molecule relates (a phenyl core in a molecule
with two different phenyl rings: cut the core larger, or with its hydrogens). Not with
--init prior (its inpainting leaves the core's neighbours with stretched bonds).

--workers W generates on W CPU processes (``molscore.parallel``), each with one torch and one
ETKDG thread, for large inputs on a many-core machine; records are still written in input
order as they complete.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from . import UsageError
from .argtypes import finite_float, positive_int, positive_int_or_auto

if TYPE_CHECKING:                     # --help stays free of the RDKit / PyG imports
    from ..generate import GenerateOptions

ORDER = 10


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="generate 3D conformers from SMILES",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("smiles", nargs="?", help="a SMILES string (or use --input)")
    p.add_argument("--input", "-i", help=".smi / .csv / .sdf file (also gzipped), or - for stdin")
    p.add_argument("--format", choices=("smi", "csv", "sdf"),
                   help="input format (default: from the extension; smi for stdin)")
    p.add_argument("--smiles-column", default="smiles", help="CSV column with SMILES (default: smiles)")
    p.add_argument("--name-column", help="CSV column with names (default: 'name', else 'id', else "
                                         "the SMILES); SDF: the property that names a molecule "
                                         "(default: its title line)")
    p.add_argument("-n", "--num-confs", type=int, default=10, help="conformers per molecule (default 10)")
    p.add_argument("-o", "--output", required=True, help="output SDF (.sdf or .sdf.gz)")
    p.add_argument("--model", help="checkpoint (default: shipped weights molscore/weights/conformer.pt)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--workers", type=positive_int, default=1, metavar="W",
                   help="CPU processes generating in parallel (default 1; about the number of "
                        "cores for large runs; each loads the model once; the conformers are "
                        "those of one process; not with --device cuda)")
    p.add_argument("--seed", type=int, default=0, help="random seed, 0..2147483646 (default 0)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default 10 with --init etkdg, 200 with --init prior)")
    p.add_argument("--sampler", default="reverse", help="em | reverse | ancestral | pc | ald | ode "
                   "(pc and ald: results depend on the batch, see --resume)")
    p.add_argument("--init", default="etkdg", choices=("prior", "etkdg"),
                   help="etkdg (default): ETKDG conformers noised to --t-start, then corrected by "
                        "the reverse SDE; prior: reverse diffusion from the prior")
    p.add_argument("--t-start", type=float, default=0.3, help="start time of --init etkdg (default 0.3)")
    p.add_argument("--pool", type=positive_int_or_auto, default=None, metavar="P|auto",
                   help="--init etkdg: embed P ETKDG conformers per molecule and start from n "
                        "representatives of them (--pick). Default auto: 50 for n <= 10, 100 for "
                        "n <= 20, 200 above (a larger pool costs ETKDG time and picks the same "
                        "starts); --pool 1: the first n ETKDG conformers")
    p.add_argument("--pick", default="max-min", choices=("max-min", "k-medoids"),
                   help="how the n starts are picked from the pool by RMSD: max-min (default; "
                        "farthest-point from the pool's medoid, the better coverage of "
                        "conformer ensembles) or k-medoids (fewer outlying conformers)")
    p.add_argument("--pool-hydrogens", default="all", choices=("all", "stereo"),
                   help="the hydrogens ETKDG embeds the pool with: all (default), or only those "
                        "on stereocentres, the others placed afterwards (about twice as fast; "
                        "a worse first conformer: benchmarks/pool_hydrogens)")
    p.add_argument("--core", metavar="SDF",
                   help="hold a 3D core in place: the first record of this SDF/molfile (heavy "
                        "atoms); every molecule must contain it, at one place up to symmetry, "
                        "and its atoms keep these coordinates in every conformer")
    p.add_argument("--relax", action="store_true", help="MMFF94-minimise every conformer")
    p.add_argument("--dedupe", type=finite_float, metavar="RMSD", help="drop conformers within RMSD (Å) of another")
    p.add_argument("--batch-size", type=int, default=4096, help="atoms per sampling batch (default 4096)")
    p.add_argument("--largest-fragment", action="store_true", help="keep the largest fragment of salts/mixtures")
    p.add_argument("--max-heavy-atoms", type=int, default=100, help="refuse larger molecules (default 100)")
    p.add_argument("--max-retries", type=int, default=3,
                   help="resampling rounds for wrong stereo or failed geometry checks (default 3)")
    p.add_argument("--stereo-guidance", type=finite_float, default=None, metavar="STRENGTH",
                   help="steer sampling towards the input's stereo: chirality and E/Z restraints "
                        "on the denoised estimate at every step (molscore.chem.guidance); 0 turns "
                        "it off (default 1.0 with --init prior, 0 with --init etkdg)")
    p.add_argument("--no-cleanup", dest="cleanup", action="store_false",
                   help="no restrained MMFF94s clean-up of conformers that fail a geometry check")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network: 30-50 s once, then about 1.4x the conformers/s "
                        "on the CPU at --pool 1, 1.1x with a pool of 200 (long runs; needs a C++ "
                        "compiler)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run into the same output (same input and settings)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (by default one over molecules goes to stderr, also "
                        "when that is a file or pipe, which then gets every update)")
    p.set_defaults(func=run)


def generate_options(args: argparse.Namespace) -> GenerateOptions:
    """The :class:`~molscore.generate.GenerateOptions` of parsed ``generate`` arguments. The
    parser spells its defaults out so that ``--help`` does not import RDKit or PyG;
    ``tests/test_cli_generate.py`` checks that they are the dataclass's."""
    from itertools import islice

    from ..chem.core import Core
    from ..chem.io import read_sdf_mols
    from ..generate import GenerateOptions

    core = None
    if args.core is not None:
        try:
            core = Core.from_file(args.core).text
        except ValueError as err:
            raise UsageError(f"--core {args.core}: {err}") from None
        if len(list(islice(read_sdf_mols(args.core), 2))) > 1:   # a series' poses, say
            print(f"molscore generate: --core {args.core} holds more than one record; its first "
                  "is the core", file=sys.stderr)
    return GenerateOptions(
        n=args.num_confs, steps=args.steps, sampler=args.sampler, seed=args.seed, relax=args.relax,
        dedupe=args.dedupe, batch_size=args.batch_size, largest_fragment=args.largest_fragment,
        max_heavy_atoms=args.max_heavy_atoms, init=args.init, t_start=args.t_start, pool=args.pool,
        pick=args.pick, pool_hydrogens=args.pool_hydrogens,
        max_retries=args.max_retries, cleanup=args.cleanup, compile=args.compile,
        stereo_guidance=args.stereo_guidance, core=core)


def _records(args, duplicates: list[str]):
    from ..chem.io import InputFormatError, guess_format, read_records

    if (args.smiles is None) == (args.input is None):
        raise UsageError("give either a SMILES argument or --input FILE (- for stdin)")
    if args.smiles is not None:     # named by itself; a blank one as read_records names it
        return [(args.smiles if args.smiles.strip() else "record_1", args.smiles)]
    try:
        records = list(read_records(args.input, fmt=args.format, smiles_column=args.smiles_column,
                                    name_column=args.name_column, duplicates=duplicates))
    except InputFormatError as err:
        raise UsageError(str(err)) from None
    tabular = guess_format(args.input, args.format) != "sdf"   # (an unreadable SDF record has no SMILES)
    if not records or tabular and not any(rec.smiles for rec in records):    # a slip, not a run
        where = "stdin" if args.input == "-" else args.input
        raise UsageError(f"no records in {where}" + (
            f" (only {len(records)} empty line(s) or SMILES cell(s))" if records else ""))
    return records


# Options that do not change the output, so a resumed run may change them.
_FREE_OPTIONS = ("batch_size", "compile")
RESUME_AT = "resume_at"      # key of OUTPUT.json: where --resume continues (_write_settings)
# Seconds between two records of it: each is an atomic write with two fsyncs (47 ms measured on
# a 2-core VM), too slow for every --workers chunk of 4 molecules on many cores.
RESUME_RECORD_S = 10.0


def _sdf_content(mol) -> str:
    """SHA-256 (hex) of what of an SDF input record ``mol`` changes the output beyond its name
    and SMILES: its molfile as read (the atom order and explicit hydrogens the output keeps;
    the coordinates, from which the stereo of a centre its SMILES leaves unspecified, such as
    a phosphine's, is taken) and its properties, which the output records carry. A digest, so
    that a large SDF input's settings digest does not hold every record's text at once."""
    from rdkit import Chem

    content = [Chem.MolToMolBlock(mol), [[key, mol.GetProp(key)] for key in mol.GetPropNames()]]
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode("utf-8")).hexdigest()


def _run_settings(options, model: Path, inputs: list[tuple]) -> dict:
    """The settings a resumed run must share: version, model, options and ``input_sha256``,
    a digest of ``inputs``, per input record in order its ``(name, SMILES)`` and, for an SDF
    record, its :func:`_sdf_content` (so the same names with other molecules, or with the
    same SMILES but other atoms, coordinates or properties, are another input)."""
    from .. import __version__

    digest = hashlib.sha256(model.read_bytes()).hexdigest() if model.is_file() else None
    kept = {k: v for k, v in asdict(options).items() if k not in _FREE_OPTIONS}
    return {"molscore": __version__, "model": str(model), "model_sha256": digest, "options": kept,
            "input_sha256": _input_sha256(inputs)}


def _input_sha256(inputs: list[tuple]) -> str:
    """SHA-256 (hex) of the input records' ``(name, SMILES[, SDF content])`` tuples, in order."""
    return hashlib.sha256(json.dumps(inputs, ensure_ascii=False).encode("utf-8")).hexdigest()


def _settings_path(out: Path) -> Path:
    """``OUTPUT.json`` beside the output ``OUTPUT``: the run's settings."""
    return Path(str(out) + ".json")


def _write_settings(out: Path, settings: dict, resume_at: int) -> None:
    """Write ``OUTPUT.json``: the run's ``settings`` and ``resume_at``, the input index up to
    which every record is in the output or ``failures.csv`` and after which a sampling batch
    (with ``--workers``, a chunk) begins, where ``--resume`` continues, sampling the batches
    this run did (so the output is the uninterrupted run's, byte for byte).

    Raises:
        OutputWriteError: the file cannot be written (a full disk)."""
    from ..chem.io import OutputWriteError, replace_atomically

    path = _settings_path(out)
    try:
        replace_atomically(path, [json.dumps({**settings, RESUME_AT: resume_at}, indent=2) + "\n"])
    except OSError as err:
        raise OutputWriteError(err.errno, err.strerror or str(err), str(path)) from err


def _resume_point(out: Path, failures: Path, settings: dict, names: list[str],
                  smiles_named_sha256: str | None = None) -> tuple[int, int, int, int]:
    """Where an interrupted run into ``out`` continues: ``(first record to do, records before
    it that failed, molecules and conformers of the output before it)``; cuts the output and
    ``failures.csv`` back to the records before it.

    ``smiles_named_sha256``: for a CSV input without ``--name-column``, the ``input_sha256``
    of its records named by their SMILES, as molscore named them before a ``name`` / ``id``
    column did by default: a run started so is refused with that reason (its records' names
    are not this run's)."""
    from ..chem.io import failure_names, keep_first_records, sdf_record_names

    record = _settings_path(out)
    if not record.is_file():
        raise UsageError(f"cannot resume: {record} (the settings of the run) is missing")
    try:
        before = json.loads(record.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:  # hand-edited, damaged or unreadable
        before = err
    if not isinstance(before, dict):
        raise UsageError(f"cannot resume: {record} is not the settings file of a molscore run "
                         f"({before if isinstance(before, Exception) else type(before).__name__}); "
                         "run without --resume to start afresh")
    if before.get("molscore") != settings["molscore"]:   # one output, two versions' conformers
        was = before.get("molscore")
        raise UsageError(f"cannot resume {out}, written by molscore "
                         f"{'(version not recorded)' if was is None else was}, with molscore "
                         f"{settings['molscore']}; run without --resume to start afresh")
    for key in ("model_sha256", "options"):
        if before.get(key) != settings[key]:
            old, new = before.get(key), settings[key]
            if key == "options":
                diff = [k for k in new if old is None or old.get(k) != new[k]]
                what = ", ".join(f"{k} {old.get(k) if old else None!r} -> {new[k]!r}" for k in diff)
            else:
                what = "another model file"
            raise UsageError(f"cannot resume {out} with other settings ({what}); "
                             "run without --resume to start afresh")
    if smiles_named_sha256 not in (None, settings["input_sha256"]) and \
            before.get("input_sha256") == smiles_named_sha256:
        raise UsageError(f"cannot resume {out}: its records are named by their SMILES, as an "
                         "earlier molscore named CSV records without --name-column, and this one "
                         "names them by the CSV's 'name' or 'id' column; run without --resume to "
                         "start afresh")
    index = {name: i for i, name in enumerate(names)}
    written, failed = sdf_record_names(out), failure_names(failures)
    for path, held, note in ((out, written, ""),
                             (failures, failed, " (failures.csv is shared by the outputs of its "
                                                "folder: did a run into another output write it?)")):
        unknown = [n for n in held if n not in index]
        if unknown:
            raise UsageError(f"cannot resume: {path} holds {unknown[0]!r}, which is not a record "
                             f"of this input{note}")
    if before.get("input_sha256", settings["input_sha256"]) != settings["input_sha256"]:
        raise UsageError(f"cannot resume {out} with another input (records' names, SMILES or "
                         "SDF records differ from the run's); run without --resume to start "
                         "afresh")
    done = set(written) | set(failed)
    start = next((i for i, name in enumerate(names) if name not in done), len(names))
    resume_at = before.get(RESUME_AT)
    if isinstance(resume_at, int) and not isinstance(resume_at, bool) and resume_at >= 0:
        start = min(start, resume_at)    # after the last batch written whole
    elif written:                        # the last molecule written may be incomplete
        start = min(start, index[written[-1]])
    kept_failed = [n for n in failed if index[n] < start]
    kept_written = [n for n in written if index[n] < start]
    keep_first_records(out, len(kept_written), failures, len(kept_failed))
    return start, len(set(kept_failed)), len(set(kept_written)), len(kept_written)


def run(args) -> int:
    from ..chem.io import (FailureLog, InputRecord, OutputWriteError, SDFStreamWriter,
                           guess_format, smiles_names)
    from ..generate import ConformerGenerator, default_model_path
    from ..parallel import WorkerDied, generate_in_processes

    duplicates: list[str] = []
    records = _records(args, duplicates)
    if duplicates:
        print(f"molscore generate: {len(duplicates)} duplicate name(s) renamed: "
              f"{', '.join(duplicates[:5])}{' ...' if len(duplicates) > 5 else ''}", file=sys.stderr)
    options = generate_options(args)
    if args.workers > 1 and args.device == "cuda":
        raise UsageError("--workers runs CPU processes; use --workers 1 with --device cuda")
    try:
        options.validate()
        generator = ConformerGenerator(args.model, device="cpu" if args.workers > 1 else args.device,
                                       options=options)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    out = Path(args.output)
    if out.is_dir():
        raise UsageError(f"output {out} is a folder; give a file, e.g. {out / 'conformers.sdf'}")
    if not out.name.lower().endswith((".sdf", ".sdf.gz")):   # SDF was written whatever the name
        raise UsageError(f"output {out} must be an SDF file, its name ending in .sdf or .sdf.gz")
    failures_path = out.parent / "failures.csv"
    if args.input not in (None, "-"):       # read already, but the file must not be replaced
        for path in (out, failures_path, _settings_path(out)):
            if path.exists() and path.samefile(args.input):
                raise UsageError(f"the input {args.input} would be overwritten by {path} (the "
                                 "output, its failures.csv or settings); write the output elsewhere")
    bad_early = {}
    items, inputs = [], []
    for rec in records:
        if isinstance(rec, InputRecord):
            if rec.error:
                bad_early[rec.index] = rec
            items.append((rec.index, rec.name, rec.smiles if rec.mol is None else rec.mol))
            inputs.append((rec.name, rec.smiles) if rec.mol is None else
                          (rec.name, rec.smiles, _sdf_content(rec.mol)))
        else:
            items.append((0, rec[0], rec[1]))
            inputs.append((rec[0], rec[1]))
    settings = _run_settings(options, Path(args.model) if args.model else default_model_path(),
                             inputs)
    start, n_fail, n_ok, n_conformers = 0, 0, 0, 0        # counts of the whole run
    resuming = args.resume and out.exists()
    if resuming:
        smiles_named = None
        if args.input is not None and args.name_column is None and \
                guess_format(args.input, args.format) == "csv":
            smiles_named = _input_sha256([[name, smiles] for name, (_, smiles)
                                          in zip(smiles_names(records), inputs)])
        try:
            start, n_fail, n_ok, n_conformers = _resume_point(out, failures_path, settings,
                                                             [name for _, name, _ in items],
                                                             smiles_named)
        except OSError as err:     # reading the output, or cutting it back (a full disk)
            raise UsageError(f"cannot resume {out}: {err.filename or out}: "
                             f"{err.strerror or err}") from None
        print(f"molscore generate: resuming {out} after {start} of {len(items)} record(s)",
              file=sys.stderr)
    outputs = ExitStack()
    try:
        if not resuming:
            out.parent.mkdir(parents=True, exist_ok=True)
            _write_settings(out, settings, 0)
        writer = outputs.enter_context(SDFStreamWriter(out, append=start > 0))
        failures = outputs.enter_context(FailureLog(failures_path, append=start > 0))
    except OSError as err:
        outputs.close()
        raise UsageError.cannot_write(err, out) from None
    items = items[start:]
    good = [(name, item) for idx, name, item in items if idx not in bad_early]
    if args.workers > 1 and good:
        results = generate_in_processes(good, args.workers, model=args.model, options=options,
                                        progress=not args.no_progress, total=len(good))
    else:
        results = generator.run(good, progress=not args.no_progress, total=len(good))
    next_record = 0.0                 # when the next batch end is recorded in OUTPUT.json
    try:
        with outputs:
            for position, (idx, name, _) in enumerate(items):
                if idx in bad_early:
                    failures.add(name, bad_early[idx].smiles, bad_early[idx].error)
                    n_fail += 1
                    continue
                result = next(results)
                if result.mol is not None:
                    writer.write(result.mol)
                    n_ok += 1
                else:
                    failures.add(result.name, result.input, result.error or "failed")
                    n_fail += 1
                if result.mol is not None and result.dropped:  # partly done: a failure too
                    for reason in result.dropped:
                        failures.add(result.name, result.input, reason)
                    n_fail += 1
                if result.batch_end and time.monotonic() >= next_record:
                    _write_settings(out, settings, start + position + 1)
                    next_record = time.monotonic() + RESUME_RECORD_S
    except WorkerDied as err:          # what was written stays; --resume continues
        print(f"molscore generate: error: {err}", file=sys.stderr)
        return 1
    except OutputWriteError as err:    # a full disk: what was written stays
        raise UsageError(f"{UsageError.cannot_write(err, out)}; the molecules before are kept "
                         "(generate --resume continues)") from None
    finally:
        results.close()                # stops the worker processes of --workers
    n_conformers += writer.records
    print(f"molscore generate: {n_ok} molecule(s), {n_conformers} conformer(s) -> {out}"
          + (f"; {n_fail} failure(s) in {failures_path}" if n_fail else ""),
          file=sys.stderr)
    return 1 if n_fail else 0
