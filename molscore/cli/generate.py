"""``molscore generate``: 3D conformers from SMILES into an SDF.

Inputs: one SMILES argument, or ``--input`` with a ``.smi`` file (``SMILES [name]`` per
line), a ``.csv`` file (``--smiles-column`` / ``--name-column``) or ``-`` for stdin (``.smi``
lines unless ``--format csv``). Each output record's ``_Name`` is the input name (the SMILES
when there is none; a repeated name ``x`` becomes ``x#2``, ``x#3``, ... and is reported on
stderr), with properties ``smiles``, ``conformer``, ``checks`` and, with ``--relax``,
``energy`` (kcal/mol). Records follow the input order and are written (and flushed) one
molecule at a time.

Stereo: the input's stereocentres and E/Z bonds are kept in every conformer (a mirror image
is reflected, single inverted centres are flipped, others are resampled up to --max-retries
rounds and then dropped). Conformers failing a geometry check (``checks`` property) get a
restrained MMFF94 clean-up (heavy atoms held near the sampled positions; ``--no-cleanup``
turns it off) and are resampled when it does not help. Unspecified stereo: one isomer is
chosen from --seed and recorded in the ``smiles`` property. --batch-size counts atoms
(molecules x conformers per batch).

Records that cannot be done go to ``failures.csv`` next to the output (columns
``name,input,reason``; also molecules that lost conformers to the stereo checks). Exit
status: 0 when every record succeeded, 1 when some failed, 2 for usage errors.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import UsageError

ORDER = 10


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="generate 3D conformers from SMILES",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("smiles", nargs="?", help="a SMILES string (or use --input)")
    p.add_argument("--input", "-i", help=".smi / .csv file, or - for stdin")
    p.add_argument("--format", choices=("smi", "csv"), help="input format (default: from the extension)")
    p.add_argument("--smiles-column", default="smiles", help="CSV column with SMILES (default: smiles)")
    p.add_argument("--name-column", help="CSV column with names")
    p.add_argument("-n", "--num-confs", type=int, default=10, help="conformers per molecule (default 10)")
    p.add_argument("-o", "--output", required=True, help="output SDF (.sdf or .sdf.gz)")
    p.add_argument("--model", help="checkpoint (default: shipped weights molscore/weights/conformer.pt)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default 10 with --init etkdg, 200 with --init prior)")
    p.add_argument("--sampler", default="reverse", help="em | reverse | ancestral | pc | ald | ode")
    p.add_argument("--init", default="etkdg", choices=("prior", "etkdg"),
                   help="etkdg (default): ETKDG conformers noised to --t-start, then corrected by "
                        "the reverse SDE; prior: reverse diffusion from the prior")
    p.add_argument("--t-start", type=float, default=0.3, help="start time of --init etkdg (default 0.3)")
    p.add_argument("--relax", action="store_true", help="MMFF94-minimise every conformer")
    p.add_argument("--dedupe", type=float, metavar="RMSD", help="drop conformers within RMSD (Å) of another")
    p.add_argument("--batch-size", type=int, default=4096, help="atoms per sampling batch (default 4096)")
    p.add_argument("--largest-fragment", action="store_true", help="keep the largest fragment of salts/mixtures")
    p.add_argument("--max-heavy-atoms", type=int, default=100, help="refuse larger molecules (default 100)")
    p.add_argument("--max-retries", type=int, default=3,
                   help="resampling rounds for wrong stereo or failed geometry checks (default 3)")
    p.add_argument("--no-cleanup", dest="cleanup", action="store_false",
                   help="no restrained MMFF94 clean-up of conformers that fail a geometry check")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network: 30-50 s once, then about 1.6x the conformers/s "
                        "on the CPU (long runs; needs a C++ compiler)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _records(args, duplicates: list[str]):
    from ..chem.io import InputFormatError, read_records

    if (args.smiles is None) == (args.input is None):
        raise UsageError("give either a SMILES argument or --input FILE (- for stdin)")
    if args.smiles is not None:
        return [(args.smiles, args.smiles)]
    try:
        return list(read_records(args.input, fmt=args.format, smiles_column=args.smiles_column,
                                 name_column=args.name_column, duplicates=duplicates))
    except InputFormatError as err:
        raise UsageError(str(err)) from None


def run(args) -> int:
    from ..chem.io import FailureLog, InputRecord, SDFStreamWriter
    from ..generate import ConformerGenerator, GenerateOptions

    duplicates: list[str] = []
    records = _records(args, duplicates)
    if duplicates:
        print(f"molscore generate: {len(duplicates)} duplicate name(s) renamed: "
              f"{', '.join(duplicates[:5])}{' ...' if len(duplicates) > 5 else ''}", file=sys.stderr)
    options = GenerateOptions(
        n=args.num_confs, steps=args.steps, sampler=args.sampler, seed=args.seed, relax=args.relax,
        dedupe=args.dedupe, batch_size=args.batch_size, largest_fragment=args.largest_fragment,
        max_heavy_atoms=args.max_heavy_atoms, init=args.init, t_start=args.t_start,
        max_retries=args.max_retries, cleanup=args.cleanup, compile=args.compile)
    try:
        options.validate()
        generator = ConformerGenerator(args.model, device=args.device, options=options)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    out = Path(args.output)
    bad_early = {}
    items = []
    for rec in records:
        if isinstance(rec, InputRecord):
            if rec.error:
                bad_early[rec.index] = rec
            items.append((rec.index, rec.name, rec.smiles))
        else:
            items.append((0, rec[0], rec[1]))
    good = [(name, smi) for idx, name, smi in items if idx not in bad_early]
    results = generator.run(good, progress=not args.no_progress, total=len(good))
    n_ok = n_fail = 0
    with SDFStreamWriter(out) as writer, FailureLog(out.parent / "failures.csv") as failures:
        for idx, name, smi in items:
            if idx in bad_early:
                failures.add(name, smi, bad_early[idx].error)
                n_fail += 1
                continue
            result = next(results)
            if result.mol is not None:
                writer.write(result.mol)
                n_ok += 1
            else:
                failures.add(result.name, result.input, result.error or "failed")
                n_fail += 1
            if result.mol is not None and result.dropped:  # partly done: counts as a failure
                for reason in result.dropped:
                    failures.add(result.name, result.input, reason)
                n_fail += 1
    print(f"molscore generate: {n_ok} molecule(s), {writer.records} conformer(s) -> {out}"
          + (f"; {n_fail} failure(s) in {out.parent / 'failures.csv'}" if n_fail else ""),
          file=sys.stderr)
    return 1 if n_fail else 0
