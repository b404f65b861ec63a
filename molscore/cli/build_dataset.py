"""``molscore build-dataset``: make a processed conformer dataset (ETKDG, PDB CCD, or SDF files)."""
from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import sys
from pathlib import Path

from . import UsageError
from .argtypes import nonnegative_float, positive_int

ORDER = 30

DEFAULT_SMILES = Path(__file__).resolve().parents[2] / "datasets" / "train_smiles.csv"

EPILOG = """examples:
  molscore build-dataset etkdg --smiles mols.csv -o data/etkdg --n-confs 30 --workers 2
  molscore build-dataset ccd -o data/ccd --limit 5000
  molscore build-dataset sdf --input ensembles.sdf.gz --group-by smiles -o data/ens
SMILES files are read as `molscore generate` reads them (.smi, .csv, .tsv, .sdf, gzipped or not):
a repeated name x becomes x#2, x#3, ... (reported); an empty SMILES is a failures.csv row.
A rerun with the same -o, settings and input resumes: molecules already stored or listed in
failures.csv are skipped (--retry-failed tries the failed ones again, e.g. after a molscore update).
The input is its file's content (moved or copied, the same input); an etkdg SMILES file may have
records added at its end, which the resume builds, an SDF not.
Molecules on the reserved list (datasets/reserved_inchikeys.txt) are always dropped, and so are
those whose tautomer, neutral form or that form with a proton more or fewer is on it (InChIKey
first blocks compared). A build begun under another such rule is not resumed: build it again.
Exit status: 0 when every input this run tried was stored or dropped as reserved, 1 when some
failed (failures.csv rows of this run: molecules not built, unreadable input records, conformer
records left out; the rest is stored) or a worker process died, 2 for usage errors."""


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated fractions, got {text!r}") from None
    if len(parts) != 3 or any(not math.isfinite(p) or p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(f"expected three non-negative fractions summing to 1, got {text!r}")
    return parts  # type: ignore[return-value]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder (resumed if it exists)")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes (default 1)")
    p.add_argument("--limit", type=positive_int, default=None, help="use at most this many input molecules")
    p.add_argument("--reserved", type=Path, default=None,
                   help="another InChIKey list to exclude, as well as the shipped "
                        "datasets/reserved_inchikeys.txt (always excluded); a resumed build needs the same")
    p.add_argument("--split", type=_fractions, default=None, metavar="TRAIN,VAL,TEST",
                   help="scaffold split fractions (default: a resumed folder's, else 0.8,0.1,0.1)")
    p.add_argument("--split-seed", type=int, default=None,
                   help="seed of the scaffold split (default: a resumed folder's, else 0)")
    p.add_argument("--shard-size", type=positive_int, default=256, help="molecules per shard file (default 256)")
    p.add_argument("--featurisation", type=int, default=None, metavar="VERSION",
                   help="version of the stored features, that of the models to train on them: 2 "
                        "(atom-order independent stereo, the default of a new folder) or 1 (the "
                        "shipped model's); a resumed build keeps its folder's")
    p.add_argument("--retry-failed", action="store_true",
                   help="try the inputs listed in failures.csv again (reserved molecules stay dropped)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "build-dataset", help="build a processed conformer dataset (ETKDG, PDB CCD, SDF)",
        description="Build a processed conformer dataset for training: shards of plain tensors, "
                    "index.json with SMILES and scaffold splits, failures.csv.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", metavar="SOURCE", parser_class=type(parser))
    sub.required = True

    p = sub.add_parser("etkdg", help="RDKit ETKDGv3 + MMFF94 ensembles from SMILES",
                       description="ETKDGv3 embedding, MMFF94 optimisation, energy window, heavy-atom RMSD "
                                   "de-duplication, Boltzmann weights at 298.15 K.")
    p.add_argument("--smiles", type=Path, default=None,
                   help="CSV/TSV with a 'smiles' column (optional 'name' or 'id'), .smi or .sdf file, "
                        "read as generate reads it "
                        f"(default: the shipped {DEFAULT_SMILES.parent.name}/{DEFAULT_SMILES.name})")
    p.add_argument("--smiles-column", default="smiles", help="CSV column with SMILES (default: smiles)")
    p.add_argument("--name-column", default=None,
                   help="CSV column with names (default: 'name', else 'id', else the SMILES)")
    p.add_argument("--n-confs", type=positive_int, default=30, help="conformers kept per molecule (default 30)")
    p.add_argument("--energy-window", type=nonnegative_float, default=10.0,
                   help="kcal/mol above the minimum (default 10)")
    p.add_argument("--rmsd", type=nonnegative_float, default=0.5,
                   help="heavy-atom RMSD de-duplication threshold, A (default 0.5)")
    p.add_argument("--seed", type=int, default=42, help="embedding seed (default 42)")
    p.add_argument("--max-heavy-atoms", type=positive_int, default=100,
                   help="skip larger molecules (default 100)")
    p.add_argument("--largest-fragment", action="store_true", help="keep the largest fragment of salts/mixtures")
    _common(p)
    p.set_defaults(func=run)

    p = sub.add_parser("ccd", help="experimental conformations from the PDB Chemical Component Dictionary",
                       description="Model coordinates (from PDB entries) of the CCD shipped in biotite, with CCD "
                                   "bond orders; 5-100 heavy atoms, supported elements, single fragment. "
                                   "Components whose model coordinates are flagged missing, name no PDB entry "
                                   "(pdbx_model_coordinates_db_code '?') or repeat the computed ideal "
                                   "coordinates are failures.csv rows.")
    _common(p)
    p.set_defaults(func=run)

    p = sub.add_parser("sdf", help="convert multi-conformer SDF files",
                       description="Group SDF records into molecules and store them.")
    p.add_argument("--input", type=Path, required=True, help=".sdf or .sdf.gz")
    p.add_argument("--group-by", default="smiles",
                   help="record property naming the molecule (default smiles, compared as canonical SMILES: "
                        "OCCCC joins CCCCO); 'none': each record's SMILES")
    p.add_argument("--max-heavy-atoms", type=positive_int, default=100,
                   help="skip larger molecules (default 100)")
    p.add_argument("--largest-fragment", action="store_true", help="keep the largest fragment of salts/mixtures")
    _common(p)
    p.set_defaults(func=run)


def _limited(items, limit):
    for n, item in enumerate(items):
        if limit is not None and n >= limit:
            return
        yield item


DEFAULT_SPLIT = (0.8, 0.1, 0.1)   # train, val, test fractions of a new folder
# The meta keys of settings that change what is built: a resumed build must keep them
# (``reserved``: the molecules of another list, left out of what the earlier run stored).
_SETTINGS = ("n_confs", "energy_window", "rmsd", "seed", "max_heavy_atoms", "largest_fragment", "group_by",
             "reserved")


def _changed_settings(previous: dict, meta: dict) -> list[str]:
    """``key old -> new`` of each setting in ``meta`` that the earlier build's ``previous``
    differs in (a setting that build did not record is not compared)."""
    return [f"{key} {previous[key]!r} -> {meta[key]!r}" for key in _SETTINGS
            if key in previous and key in meta and previous[key] != meta[key]]


def _split_settings(args: argparse.Namespace, recorded: dict) -> tuple[tuple[float, ...], int]:
    """The split fractions and seed of this run: those given, else those the folder was split
    with (``recorded``: its index's ``split_config``), else 0.8,0.1,0.1 and 0. A rerun without
    ``--split`` then keeps its folder's split; one given another says on stderr that it splits
    the folder again."""
    before = (tuple(recorded.get("fractions", DEFAULT_SPLIT)), recorded.get("seed", 0))
    fractions = before[0] if args.split is None else tuple(args.split)
    seed = before[1] if args.split_seed is None else args.split_seed
    if recorded and (fractions, seed) != before:
        print(f"molscore build-dataset: note: splitting {args.output} again with --split "
              f"{','.join(f'{f:g}' for f in fractions)} --split-seed {seed} (it was split with "
              f"{','.join(f'{f:g}' for f in before[0])}, seed {before[1]}): molecules move between "
              "train, val and test", file=sys.stderr)
    return fractions, seed


def _input_identity(path: Path, head_bytes: int = 0) -> tuple[dict, str]:
    """What a build records of its input file (the index meta's ``input``): ``{"name", "bytes",
    "sha256"}`` of ``path``'s content; and the SHA-256 of its first ``head_bytes`` bytes."""
    whole, head, size = hashlib.sha256(), hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            whole.update(chunk)
            head.update(chunk[:max(0, head_bytes - size)])
            size += len(chunk)
    return {"name": path.name, "bytes": size, "sha256": whole.hexdigest()}, head.hexdigest()


def run(args: argparse.Namespace) -> int:
    from ..chem.featurize import check_featurisation
    from ..data.builders import WorkerDied, ccd_components, run_build, sdf_groups, smiles_inputs
    from ..data.processed import LOCK_FILE, load_index
    from ..locks import discard_folder, make_folder
    from ..data.reserved import list_identity, load_reserved

    kind = args.source
    if args.featurisation is not None:
        try:
            check_featurisation(args.featurisation)
        except ValueError as err:
            raise UsageError(f"--featurisation: {err}") from None
    meta: dict = {"builder": kind, "reserved": list_identity(args.reserved)}
    maker_kwargs: dict = {}
    input_failures: list = []
    renamed: list[str] = []
    try:  # the shipped list: missing, damaged or emptied, it would end the build in a traceback
        load_reserved()
    except (OSError, ValueError) as err:
        raise UsageError(str(err)) from None
    if args.reserved is not None:
        if not args.reserved.is_file():
            raise UsageError(f"reserved list not found: {args.reserved}")
        try:
            load_reserved(args.reserved)
        except (OSError, ValueError) as err:  # not UTF-8, unreadable, or lines that are no InChIKeys
            raise UsageError(f"--reserved: {err}") from None
    if kind == "etkdg":
        path = args.smiles or DEFAULT_SMILES
        if not path.is_file():
            raise UsageError(f"SMILES file not found: {path}")
        try:
            items = smiles_inputs(path, smiles_column=args.smiles_column, name_column=args.name_column,
                                  limit=args.limit, duplicates=renamed, failures=input_failures)
        except ValueError as err:  # InputFormatError: a missing column, text not UTF-8, ...
            raise UsageError(str(err)) from None
        if renamed:
            print(f"molscore build-dataset: {len(renamed)} duplicate name(s) renamed: "
                  f"{', '.join(renamed[:5])}{' ...' if len(renamed) > 5 else ''}", file=sys.stderr)
        maker_kwargs = {"n_confs": args.n_confs, "energy_window": args.energy_window, "rmsd": args.rmsd,
                        "seed": args.seed, "max_heavy_atoms": args.max_heavy_atoms,
                        "largest_fragment": args.largest_fragment}
        meta.update(maker_kwargs, source=str(path))
        source, grows = path, True      # records added at its end are new molecules
    elif kind == "ccd":
        items = ccd_components(limit=args.limit)
        source, grows = None, False
        meta["source"] = "PDB Chemical Component Dictionary (biotite), model_Cartn coordinates"
    else:
        if not args.input.is_file():
            raise UsageError(f"input file not found: {args.input}")
        group_by = None if args.group_by.lower() == "none" else args.group_by
        groups = iter(sdf_groups(args.input, group_by=group_by, failures=input_failures))
        first = next(groups, None)
        if first is None:
            reason = "; ".join(r for _, r in input_failures[:2]) or "no conformer records"
            raise UsageError(f"nothing to build from {args.input}: {reason} (not an SDF?)")
        items = _limited(itertools.chain([first], groups), args.limit)
        maker_kwargs = {"largest_fragment": args.largest_fragment, "max_heavy_atoms": args.max_heavy_atoms}
        meta.update(maker_kwargs, source=str(args.input), group_by=group_by)
        source, grows = args.input, False   # records added may be conformers of a stored molecule
    before: dict = {}
    split_config: dict = {}
    if (args.output / "index.json").is_file():
        try:
            index = load_index(args.output)
        except ValueError as err:
            raise UsageError(str(err)) from None
        before, split_config = index.get("meta", {}), index.get("split_config") or {}
        previous = before.get("builder")
        if previous not in (None, kind):
            raise UsageError(f"{args.output} holds a dataset built with '{previous}'; use another --output")
        changed = _changed_settings(before, meta)
        if changed:
            raise UsageError(f"{args.output} was built with other settings ({', '.join(changed)}); "
                             "resume it with those, or use another --output")
    if source is not None:
        # none recorded (a folder begun by a molscore that recorded none): resumed as it was then
        recorded = before.get("input") if isinstance(before.get("input"), dict) else None
        held = recorded.get("bytes") if recorded is not None and grows else 0
        meta["input"], head = _input_identity(source, held if isinstance(held, int) else 0)
        if recorded is not None and recorded.get("sha256") not in (meta["input"]["sha256"], head if grows else None):
            raise UsageError(f"{args.output} was built from another input ({recorded.get('name')}, sha256 "
                             f"{str(recorded.get('sha256'))[:16]}); resume it with that file"
                             f"{' (records may be added at its end)' if grows else ''}, or use another --output")
    fractions, split_seed = _split_settings(args, split_config)
    try:
        made = make_folder(args.output)
    except OSError as err:
        raise UsageError(f"cannot create the output folder {args.output}: {err.strerror or err}") from None
    try:
        summary = run_build(kind, items, args.output, workers=args.workers, maker_kwargs=maker_kwargs,
                            reserved_path=args.reserved, meta=meta, shard_size=args.shard_size,
                            fractions=fractions, split_seed=split_seed, input_failures=input_failures,
                            progress=not args.no_progress, retry_failed=args.retry_failed,
                            featurisation=args.featurisation)
    except WorkerDied as err:  # what was done is stored; a rerun resumes
        print(f"molscore build-dataset: error: {err}", file=sys.stderr)
        return 1
    except BaseException as err:
        # refused (e.g. another build holds the folder, which is then left alone) or interrupted
        # before anything was stored: no folder of this command's own is left behind
        discard_folder(made, LOCK_FILE)
        if isinstance(err, ValueError):  # e.g. an existing folder written with other feature sizes or version
            raise UsageError(str(err)) from None
        raise
    s = summary
    renamed += s.renamed
    if args.retry_failed:
        print(f"retrying {s.retried} earlier failures")
    print(f"inputs {s.inputs}: stored {s.stored} molecules ({s.conformers} conformers), failed {s.failed}, "
          f"dropped {s.reserved_dropped} reserved, skipped {s.skipped_done} already done"
          + (f", {len(renamed)} inputs with a repeated name (renamed: {', '.join(renamed[:3])}"
             f"{' ...' if len(renamed) > 3 else ''})" if renamed else "")
          + (f"; {s.unreadable} unreadable input records" if s.unreadable else "")
          + (f"; {s.partly_failed} stored molecules lost conformer records" if s.partly_failed else ""))
    print(f"dataset {args.output}: {s.total_molecules} molecules, splits "
          + ", ".join(f"{k} {v}" for k, v in (s.splits or {}).items())
          + f"; {s.total_reserved_dropped} reserved molecules dropped in total"
          + (f"; failures in {args.output / 'failures.csv'}"
             if (args.output / "failures.csv").is_file() else ""))
    return 1 if s.has_failures else 0
