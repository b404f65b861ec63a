"""``molscore evaluate``: compare generated conformers with reference conformers.

  coverage  GEOM protocol (torsional diffusion): COV-R / AMR-R / COV-P / AMR-P at a threshold
            (covered: RMSD < threshold, strictly), mean and median over molecules (generate 2K
            conformers for K references).
  crystal   minimum heavy-atom RMSD of the first N generated conformers to the single reference
            (crystal) conformer per molecule, N = 1, 10, 50: median and fraction under 0.5/1/2 Å.

Means, medians and fractions are over the molecules scored: reference molecules without
generated conformers are left out of them and counted on the first line of the output
(torsional diffusion counts a molecule the model failed on as COV 0).

RMSD: heavy atoms, symmetry-aware, after optimal superposition (as RDKit's GetBestRMS);
at most --max-matches atom mappings per molecule (an upper bound for more symmetric ones).
Molecules are paired by canonical SMILES (the ``smiles`` property; then ignoring stereo where
that is unambiguous, an enantiomer included: a note counts such pairs), by ``_Name``
(``--group-by name``) or by any record property. Records RDKit cannot read, records with 2D
coordinates (a depiction), and records that are not the molecule of their group (another
heavy-atom graph than the group's first record that is the molecule its ``smiles`` property
says), are left out: one note per file on stderr, ``skipped_records`` in --json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from . import UsageError
from .argtypes import positive_float, positive_int

ORDER = 40


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="coverage / crystal-reproduction metrics of generated conformers",
                              description=__doc__.split("\n\n", 1)[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="metric", metavar="METRIC", required=True,
                           parser_class=type(p))
    for name, helptext, description in (
            ("coverage", "ensemble coverage (COV/AMR)",
             "Ensemble coverage against reference ensembles (GEOM protocol of torsional "
             "diffusion): COV-R / AMR-R over the reference conformers, COV-P / AMR-P over the "
             "generated ones, per molecule, their means and medians over molecules."),
            ("crystal", "crystal conformer reproduction",
             "Crystal conformer reproduction: the minimum heavy-atom RMSD of the first N "
             "generated conformers to each molecule's first reference record, the median and "
             "the fractions under 0.5, 1.0 and 2.0 Å over molecules, for each N.")):
        q = sub.add_parser(name, help=helptext, description=description)
        q.add_argument("--generated", required=True, help="generated conformers (.sdf / .sdf.gz)")
        q.add_argument("--reference", required=True, help="reference conformers (.sdf / .sdf.gz)")
        q.add_argument("--group-by", default="smiles", help="smiles | name | PROPERTY (default smiles)")
        q.add_argument("--max-matches", type=positive_int,
                       help="atom mappings per molecule (default 1,000,000, as RDKit's "
                            "GetBestRMS)")
        q.add_argument("--json", dest="json_out", help="also write the full result (per molecule) as JSON")
        q.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                       help="show a progress bar over molecules (default: yes)")
        if name == "coverage":
            q.add_argument("--threshold", type=positive_float, default=0.75,
                           help="RMSD threshold in Å (default 0.75); a conformer is covered "
                                "where an RMSD is below it (<, as torsional diffusion)")
        else:
            q.add_argument("--n", type=positive_int, nargs="+", default=[1, 10, 50],
                           help="N values, rows in this order (default 1 10 50; a repeated "
                                "N gives one row)")
        q.set_defaults(func=run)


def run(args) -> int:
    from ..checkpoint import write_atomic
    from ..chem.io import InputFormatError
    from ..chem.metrics import MAX_MATCHES, evaluate_coverage, evaluate_crystal
    max_matches = args.max_matches or MAX_MATCHES

    for path in (args.generated, args.reference):
        if Path(path).is_dir():
            raise UsageError(f"{path} is a directory, not an SDF file")
        if not Path(path).is_file():
            raise UsageError(f"file not found: {path}")
    if args.json_out:                     # found before the RMSDs, not after them
        out = Path(args.json_out)
        if out.is_dir():
            raise UsageError(f"cannot write {out}: Is a directory")
        if not out.parent.is_dir():
            raise UsageError(f"cannot write {out}: no folder {out.parent}")
        try:                              # a folder that takes no files (read-only, /proc)
            tempfile.TemporaryFile(dir=out.parent).close()
        except OSError as err:
            raise UsageError(f"cannot write {out}: {err.strerror or err}") from None
    if args.metric == "crystal":          # --n 10 10: one row, not two
        args.n = list(dict.fromkeys(args.n))
    try:
        if args.metric == "coverage":
            res = evaluate_coverage(args.generated, args.reference, args.threshold,
                                    args.group_by, max_matches, progress=args.progress)
        else:
            res = evaluate_crystal(args.generated, args.reference, args.n, args.group_by,
                                   max_matches, progress=args.progress)
    except InputFormatError as err:        # e.g. a truncated .sdf.gz
        raise UsageError(str(err)) from None
    paths = {"generated": args.generated, "reference": args.reference}
    if res["n_molecules"] == 0:
        _explain_no_pairs(args, res["mismatched"], res["skipped_records"], paths)
    _note_skipped(res["skipped_records"], paths)
    _note_unpaired(res["unpaired_generated"], args.group_by)
    _note_mismatched(res["mismatched"], args.group_by)
    _note_paired_ignoring_stereo(res["paired_ignoring_stereo"])
    if args.metric == "coverage":
        print(f"molecules: {res['n_molecules']} ({_missing_text(res['missing'])}); "
              f"threshold {res['threshold']} A (covered: RMSD < threshold)")
        print(f"{'metric':8s} {'mean':>8s} {'median':>8s}")
        for key in ("cov_r", "amr_r", "cov_p", "amr_p"):
            print(f"{key.upper().replace('_', '-'):8s} {res[key]['mean']:8.3f} {res[key]['median']:8.3f}")
    else:
        print(f"molecules: {res['n_molecules']} ({_missing_text(res['missing'])})")
        print(f"{'N':>4s} {'median':>8s} {'<0.5A':>7s} {'<1A':>7s} {'<2A':>7s}")
        for n in args.n:
            row = res[f"N={n}"]
            print(f"{n:4d} {row['median']:8.3f} {row['frac_below_0.5']:7.3f} "
                  f"{row['frac_below_1.0']:7.3f} {row['frac_below_2.0']:7.3f}")
    if args.json_out:
        try:
            write_atomic(args.json_out, lambda fh: fh.write(json.dumps(res, indent=1).encode()))
        except OSError as err:
            raise UsageError.cannot_write(err, args.json_out) from None
    if args.metric == "crystal":          # after the output, so that an error stays one line
        _note_fewer_than_n(res["per_molecule"], args.n)
        _note_several_references(res["per_molecule"], args.group_by)
    else:
        _note_fewer_than_2k(res["per_molecule"])
    return 0


def _missing_text(missing: list[str]) -> str:
    """What the first line of the output says of the reference molecules without generated
    conformers (``missing`` of the result): how many, and that they are left out."""
    return f"reference molecules without generated conformers, left out: {len(missing)}"


def _note_fewer_than_n(rows: list[dict], ns: list[int]) -> None:
    """Say on stderr for which N some molecules have fewer generated conformers than N (their
    minimum is over all they have, so that row is not what N conformers would score)."""
    short = [(n, sum(row["n_generated"] < n for row in rows)) for n in ns]
    short = [f"N = {n}: {k} of {len(rows)}" for n, k in short if k]
    if short:
        print(f"note: molecules with fewer generated conformers than N ({', '.join(short)}) "
              "count the minimum over all they have", file=sys.stderr)


def _note_fewer_than_2k(rows: list[dict]) -> None:
    """Say on stderr how many molecules have fewer generated conformers than twice their
    reference conformers (``rows``: ``per_molecule`` of the result): the metrics are computed
    all the same, but that is not the protocol's 2K samples for K references."""
    short = [row["key"] for row in rows if row["n_generated"] < 2 * row["n_reference"]]
    if short:
        print(f"note: {len(short)} of {len(rows)} molecules have fewer generated conformers than "
              f"2K for their K reference conformers (the GEOM protocol's), e.g. {short[0]!r}",
              file=sys.stderr)


def _note_several_references(rows: list[dict], group_by: str) -> None:
    """Say on stderr how many reference molecules hold several records, of which crystal
    scores the first alone (``rows``: ``per_molecule`` of the result)."""
    several = [row["key"] for row in rows if row["n_reference"] > 1]
    if several:
        hint = "; --group-by name pairs records by name" if group_by != "name" else ""
        print(f"note: {len(several)} of {len(rows)} reference molecules have several records, "
              f"each scored against its first alone, e.g. {several[0]!r}{hint}", file=sys.stderr)


def _note_skipped(skipped: dict[str, dict], paths: dict[str, str]) -> None:
    """Say on stderr, one line per file, which records were left out as they were read
    (``skipped``: ``skipped_records`` of the result; ``paths``: the files by the same keys)."""
    from ..chem.metrics import describe_skipped

    for what, summary in skipped.items():
        if summary["skipped"]:
            print(f"note: {what} file {paths[what]}: {describe_skipped(summary)}", file=sys.stderr)


def _note_unpaired(unpaired: dict[str, int], group_by: str) -> None:
    """Say on stderr which generated records were left out for want of a reference molecule."""
    if not unpaired:
        return
    key = next(iter(unpaired))
    hint = (" (a record without a 'smiles' property is grouped by the stereo of its 3D "
            "coordinates, so a conformer with an inverted centre forms a group of its own)"
            if group_by == "smiles" else "")
    print(f"note: {sum(unpaired.values())} generated records in {len(unpaired)} groups match no "
          f"reference molecule and are left out, e.g. {key!r}{hint}", file=sys.stderr)


def _note_mismatched(mismatched: dict[str, str], group_by: str) -> None:
    """Say on stderr which generated groups share their key with a reference molecule of
    other atoms, and were left out."""
    if mismatched:
        key, why = next(iter(mismatched.items()))
        print(f"note: {len(mismatched)} generated groups share their {group_by} with a reference "
              f"molecule of other atoms and are left out, e.g. {key!r} ({why})", file=sys.stderr)


def _note_paired_ignoring_stereo(pairs: dict[str, str]) -> None:
    """Say on stderr which generated groups were scored against a reference molecule whose
    SMILES differs from theirs in stereo alone (``pairs``: ``paired_ignoring_stereo`` of the
    result): one side unspecified, or another stereoisomer (an enantiomer), scored as it is."""
    if pairs:
        gkey, rkey = next(iter(pairs.items()))
        print(f"note: {len(pairs)} generated groups are scored against a reference molecule whose "
              f"SMILES differs in stereo alone (unspecified on one side, or another stereoisomer), "
              f"e.g. {gkey!r} against {rkey!r}", file=sys.stderr)


def _explain_no_pairs(args, mismatched: dict[str, str], skipped: dict[str, dict],
                      paths: dict[str, str]) -> None:
    """Raise a :class:`UsageError` saying why the two files share no molecule (``mismatched``:
    the generated groups paired with a reference molecule of other atoms, and why;
    ``skipped``: ``skipped_records`` of the result; ``paths``: the files by the same keys)."""
    from ..chem.metrics import NOT_3D, OTHER_MOLECULE, describe_skipped

    if mismatched:
        key, why = next(iter(mismatched.items()))
        raise UsageError(f"no molecule in common between the two files: each {args.group_by} they "
                         f"share names other atoms in each, e.g. {key!r} ({why})")
    for what, summary in skipped.items():
        if summary["records"] > sum(summary["skipped"].values()):
            continue                                  # some records were kept
        if summary["skipped"].get(OTHER_MOLECULE) or summary["skipped"].get(NOT_3D):
            raise UsageError(f"no record of the {what} file {paths[what]} is kept: "
                             f"{describe_skipped(summary)}")
        if args.group_by in ("smiles", "name"):
            raise UsageError(f"no 3D conformer records read from the {what} file {paths[what]} "
                             "(not an SDF?)")
        raise UsageError(f"no record of the {what} file {paths[what]} has the property "
                         f"{args.group_by!r} (--group-by)")
    lost = "".join(f"; {what} file: {describe_skipped(summary)}" for what, summary in skipped.items()
                   if summary["skipped"])
    raise UsageError(f"no molecule in common between the two files (grouped by {args.group_by}){lost}")
