"""Dataset builders: conformer sources -> processed datasets (:mod:`molscore.data.processed`).

Three sources:

* :func:`etkdg_conformers`: RDKit ETKDGv3 embedding, MMFF94 optimisation, energy window,
  heavy-atom RMSD de-duplication and Boltzmann weights at 298.15 K, from SMILES.
* :func:`ccd_components`: experimental conformations (``model_Cartn_*``, taken from a PDB
  entry) of the PDB Chemical Component Dictionary shipped in biotite, with CCD bond orders;
  model coordinates flagged missing, that name no PDB entry or that copy the computed ideal
  ones are failures.
* :func:`sdf_groups`: existing multi-conformer SDF files.

SMILES files are read by :func:`smiles_inputs`, which is ``molscore generate``'s reader
(:func:`molscore.chem.io.read_records`): the same formats, names and ``#2`` renaming of a
repeated name.

:func:`run_build` drives any of them: inputs already stored or recorded as failed in
the output folder are skipped (resume), the rest go through a process pool
(``workers``), reserved molecules (:mod:`molscore.data.reserved`: the shipped list, and
another one if given; a molecule is reserved when its InChIKey block, or that of one of its
tautomers, of its neutral form or of that form with a proton more or fewer, is listed:
:func:`~molscore.data.reserved.build_exclusion_reason`)
are dropped and counted, and failures land in ``failures.csv``.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import math
import multiprocessing as mp
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem, rdMolAlign
from rdkit.Numerics import rdAlignment
from tqdm import tqdm

from ..chem.coords import add_conformer
from ..chem.embedding import embed_conformers
from ..chem.featurize import MoleculeError, prepare_mol
from ..chem.io import disambiguate, read_records
from ..chem.relax import MAX_REST_LENGTH_GAP, mmff_properties
from ..chem.stereo import etkdg_failure_reason, isomer_choices
from ..pool_watch import WorkerDied, init_worker, start_pool, stop, watch
from .conformers import ConformerSet, check_coordinates, conformer_set_from_mols, group_sdf_records, mol_weights
from .processed import build_writer, encode_record, read_failures
from .reserved import RESERVED_REASON, build_exclusion_reason, is_reserved_reason, reserved_keys

__all__ = [
    "KCAL_PER_MOL_K", "RESERVED_REASON", "BuildSummary", "boltzmann_weights", "etkdg_conformers",
    "smiles_inputs", "ccd_components", "ccd_conformer_set", "sdf_groups", "run_build", "WorkerDied",
]

KCAL_PER_MOL_K = 0.0019872043  # gas constant R in kcal/(mol K)
CCD_MIN_HEAVY, CCD_MAX_HEAVY = 5, 100
# A PDB entry ID: four characters, a digit 1-9 first, or the extended form pdb_0000xxxx.
PDB_ID = re.compile(r"(pdb_0000)?[1-9][A-Za-z0-9]{3}", re.IGNORECASE)
# CCD coordinates have three decimals: in biotite 1.6's CCD, model coordinates that copy the ideal
# ones (as they are or moved as a rigid body) are within 0.0012 A RMSD of them after superposition,
# the next closest 0.009 A.
CCD_IDEAL_COPY_RMSD = 0.005
MMFF_MAX_ITERS = 2000  # MMFF94 minimisation steps per ETKDG conformer


# ----------------------------------------------------------------------------------------
# ETKDG
# ----------------------------------------------------------------------------------------

def boltzmann_weights(energies: Sequence[float], temperature: float = 298.15) -> np.ndarray:
    """Normalised Boltzmann weights of energies in kcal/mol, ``(K,)`` float64."""
    e = np.asarray(energies, dtype=np.float64)
    w = np.exp(-(e - e.min()) / (KCAL_PER_MOL_K * temperature))
    return w / w.sum()


def _molecule_seed(seed: int, key: str) -> int:
    """A non-zero 31-bit seed from the global seed and the molecule (ETKDG seed 0 repeats conformers)."""
    return (zlib.crc32(f"{seed}:{key}".encode()) % (2**31 - 2)) + 1


def etkdg_conformers(smiles: str, *, n_confs: int = 30, energy_window: float = 10.0, rmsd: float = 0.5,
                     seed: int = 42, oversample: int = 2, max_heavy_atoms: int | None = 100,
                     name: str | None = None, largest_fragment: bool = False) -> ConformerSet:
    """Generate an MMFF94-optimised, de-duplicated, Boltzmann-weighted conformer ensemble.

    Steps: validate (:func:`prepare_mol`); fix unspecified stereo to an isomer ETKDG builds
    (:func:`~molscore.chem.stereo.isomer_choices` with ``seed=None``: that of an ETKDG
    embedding, else the first embeddable one in RDKit's enumeration order, else up to three
    others that embeddings have); embed
    ``oversample * n_confs`` ETKDGv3 conformers (non-zero per-molecule seed;
    :func:`~molscore.chem.embedding.embed_conformers`, as ``generate``'s pool: random-coordinate
    retry, stereo-true embeddings without stereo for strained cages, one-conformer probes that
    find an isomer ETKDG cannot build in seconds); optimise each with MMFF94
    (:data:`MMFF_MAX_ITERS` iterations) and drop those not converged (not minima: their
    energies are no conformer energies); keep those within ``energy_window`` kcal/mol of the minimum; walk them by
    energy and keep a conformer only if its symmetry-aware heavy-atom RMSD to every kept one
    is at least ``rmsd`` Angstrom, up to ``n_confs``; weights ``exp(-dE / RT)`` at 298.15 K.

    Raises:
        MoleculeError: invalid molecule, embedding failure, missing or wrong MMFF94
            parameters (:func:`~molscore.chem.relax.mmff_properties`), or no conformer whose
            MMFF94 minimisation converged.
    """
    given = prepare_mol(smiles, largest_fragment=largest_fragment, max_heavy_atoms=max_heavy_atoms)
    if not AllChem.MMFFHasAllMoleculeParams(given):
        raise MoleculeError("no MMFF94 parameters for this molecule")
    if mmff_properties(given) is None:
        raise MoleculeError(f"MMFF94 puts a bond's rest length more than {MAX_REST_LENGTH_GAP} Å from "
                            "UFF's (its tables lack the atom types: N#N, O=S=O), so its minima are wrong")
    params = AllChem.ETKDGv3()
    params.randomSeed = _molecule_seed(seed, smiles)
    params.numThreads = 1
    params.maxIterations = 1000
    first: Chem.Mol | None = None
    for isomer in isomer_choices(given, seed=None):
        if first is None:
            first = isomer
        mol = embed_conformers(isomer, oversample * n_confs, params)
        if mol.GetNumConformers():
            break
    else:
        raise MoleculeError(etkdg_failure_reason(first))
    with rdBase.BlockLogs():
        results = AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=MMFF_MAX_ITERS)
    converged = np.array([flag == 0 for flag, _ in results])
    if not converged.any():
        raise MoleculeError(f"MMFF94 minimisation converged for none of {len(results)} conformers "
                            f"in {MMFF_MAX_ITERS} iterations")
    energies = np.array([e if ok else np.inf for ok, (_, e) in zip(converged, results)], dtype=np.float64)
    conf_ids = [c.GetId() for c in mol.GetConformers()]
    order = [i for i in np.argsort(energies, kind="stable") if energies[i] - energies.min() <= energy_window]
    heavy = Chem.RemoveHs(mol)
    kept: list[int] = []
    for i in order:
        if all(rdMolAlign.GetBestRMS(heavy, heavy, conf_ids[i], conf_ids[j]) >= rmsd for j in kept):
            kept.append(int(i))
        if len(kept) == n_confs:
            break
    singles = [Chem.Mol(mol, confId=conf_ids[i]) for i in kept]
    return conformer_set_from_mols(singles, name or smiles, weights=boltzmann_weights(energies[kept]))


def smiles_inputs(path: str | Path, *, smiles_column: str = "smiles", name_column: str | None = None,
                  limit: int | None = None, duplicates: list[str] | None = None,
                  failures: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """``(name, SMILES)`` inputs of :func:`run_build` ``"etkdg"`` from a file, read as
    ``molscore generate`` reads it (:func:`molscore.chem.io.read_records`): ``.smi`` (``SMILES
    [name]`` per line, the name being the rest of the line, or its second field where the
    title line names more columns; a CXSMILES extension ``|...|``
    stays with the SMILES; ``#`` comments; a first line whose first field holds ``SMILES`` is a title line),
    ``.csv`` / ``.tsv`` (named columns; a ``;``-separated export too), ``.sdf``; gzipped or
    not; UTF-8 (a byte-order mark is dropped).

    A CSV molecule's name is in column ``name_column``, else in a column ``name``, else
    ``id`` (in any case; :data:`~molscore.chem.io.DEFAULT_NAME_COLUMNS`); without a name it
    is named by its SMILES. A repeated name ``x`` becomes ``x#2``, ``x#3``, ... (each appended
    to ``duplicates``), so no molecule is lost.
    A record that cannot be used (an empty SMILES cell or line, an SDF record RDKit cannot
    read) is appended to ``failures`` as ``(name, reason)`` instead of being returned.

    Args:
        limit: read the first ``limit`` records only (the unusable ones included).

    Raises:
        InputFormatError: (a ``ValueError``) a missing file or column, text that is not
            UTF-8, a malformed CSV.
    """
    path = str(path)
    items: list[tuple[str, str]] = []
    records = read_records(path, smiles_column=smiles_column, name_column=name_column, duplicates=duplicates)
    with contextlib.closing(records):
        for record in itertools.islice(records, limit):
            if record.error is not None:
                if failures is not None:
                    failures.append((record.name, record.error))
            else:
                items.append((record.name, record.smiles))
    return items


# ----------------------------------------------------------------------------------------
# PDB Chemical Component Dictionary (biotite)
# ----------------------------------------------------------------------------------------

_CCD_BOND_ORDER = {"SING": Chem.BondType.SINGLE, "DOUB": Chem.BondType.DOUBLE, "TRIP": Chem.BondType.TRIPLE}


def _column(category, name: str, dtype=None) -> np.ndarray:
    col = category[name]
    return col.as_array(dtype) if dtype is not None else col.as_array()


def _spans(comp_ids: np.ndarray) -> dict[str, tuple[int, int]]:
    """``{comp_id: (start, stop)}`` of the contiguous rows of each component."""
    if len(comp_ids) == 0:
        return {}
    starts = np.concatenate(([0], np.nonzero(comp_ids[1:] != comp_ids[:-1])[0] + 1, [len(comp_ids)]))
    return {str(comp_ids[s]): (int(s), int(e)) for s, e in zip(starts[:-1], starts[1:])}


def _xyz(atoms, pattern: str) -> np.ndarray:
    """``(N, 3)`` float64 coordinates of the columns ``pattern.format(axis)``; NaN where missing."""
    xyz = []
    for axis in "xyz":
        col = atoms[pattern.format(axis)]
        values = col.as_array(np.float64).copy()
        if col.mask is not None:
            values[np.asarray(col.mask.array) != 0] = np.nan  # '?' / '.' -> missing
        xyz.append(values)
    return np.stack(xyz, axis=1)


@functools.cache
def _ccd_tables() -> dict:
    """The CCD columns the builder needs, as numpy arrays (read once per process)."""
    from biotite.structure.info.ccd import get_ccd

    ccd = get_ccd()
    comp, atoms, bonds = ccd["chem_comp"], ccd["chem_comp_atom"], ccd["chem_comp_bond"]
    tables = {
        "id": _column(comp, "id"), "status": _column(comp, "pdbx_release_status"),
        "missing": _column(comp, "pdbx_model_coordinates_missing_flag"),
        "entry": _column(comp, "pdbx_model_coordinates_db_code"),
        "a_name": _column(atoms, "atom_id"), "a_sym": _column(atoms, "type_symbol"),
        "a_charge": _column(atoms, "charge"), "coords": _xyz(atoms, "model_Cartn_{}"),
        "ideal": _xyz(atoms, "pdbx_model_Cartn_{}_ideal"),
        "b_a1": _column(bonds, "atom_id_1"), "b_a2": _column(bonds, "atom_id_2"),
        "b_order": _column(bonds, "value_order"),
    }
    tables["atom_spans"] = _spans(_column(atoms, "comp_id"))
    tables["bond_spans"] = _spans(_column(bonds, "comp_id"))
    return tables


def ccd_components(limit: int | None = None) -> Iterator[tuple[str, dict]]:
    """Released components of biotite's CCD, as plain payloads.

    Only released components (``pdbx_release_status == "REL"``) with atoms are listed, in CCD
    order; ``limit`` caps how many. Those whose model coordinates are flagged missing are
    listed too, so that a build counts them and names the reason (``missing_flag``);
    whether the model coordinates are there and experimental is :func:`ccd_conformer_set`'s check.

    Yields:
        ``(comp_id, payload)`` with ``symbols`` (list[str]), ``charges`` (list[int]),
        ``coords`` ``(N, 3)`` float64 (``model_Cartn_*``; NaN where missing),
        ``ideal_coords`` ``(N, 3)`` float64 (``pdbx_model_Cartn_*_ideal``, computed; NaN where
        missing), ``bonds`` (list of ``(i, j, value_order)``), ``pdb_entry`` (str,
        ``pdbx_model_coordinates_db_code``), ``missing_flag`` (bool,
        ``pdbx_model_coordinates_missing_flag == "Y"``).
    """
    t = _ccd_tables()
    n = 0
    for k, cid in enumerate(t["id"]):
        cid = str(cid)
        if t["status"][k] != "REL" or cid not in t["atom_spans"]:
            continue
        if limit is not None and n >= limit:
            return
        n += 1
        s, e = t["atom_spans"][cid]
        index = {str(a): i for i, a in enumerate(t["a_name"][s:e])}
        bond_rows = []
        if cid in t["bond_spans"]:
            bs, be = t["bond_spans"][cid]
            bond_rows = [(index.get(str(x)), index.get(str(y)), str(o))
                         for x, y, o in zip(t["b_a1"][bs:be], t["b_a2"][bs:be], t["b_order"][bs:be])]
        charges = [int(c) if str(c).lstrip("-").isdigit() else 0 for c in t["a_charge"][s:e]]
        yield cid, {"symbols": [str(x) for x in t["a_sym"][s:e]], "charges": charges,
                    "coords": t["coords"][s:e], "ideal_coords": t["ideal"][s:e], "bonds": bond_rows,
                    "pdb_entry": str(t["entry"][k]), "missing_flag": bool(t["missing"][k] == "Y")}


def ccd_conformer_set(comp_id: str, payload: dict) -> ConformerSet:
    """Build and validate the RDKit molecule (explicit H, model coordinates) of one CCD component.

    Only experimental model coordinates are kept: ``pdb_entry`` must name a PDB entry
    (:data:`PDB_ID`; the CCD has ``?`` and a few placeholders such as ``UNDEFINED``), and the
    coordinates must not be the computed ideal ones (``ideal_coords``), which some components
    repeat as their model coordinates, as they are or moved as a rigid body.

    Raises:
        MoleculeError: model coordinates flagged missing (``missing_flag``; most are incomplete,
            the rest not vouched for), naming no PDB entry, incomplete coordinates, unknown
            element, unsupported bond order, fewer than 5 or more than 100 heavy atoms, model
            coordinates within :data:`CCD_IDEAL_COPY_RMSD` of the ideal ones after superposition,
            or anything :func:`prepare_mol` refuses.
    """
    if payload.get("missing_flag"):
        raise MoleculeError("model coordinates flagged missing (pdbx_model_coordinates_missing_flag Y)")
    entry = payload["pdb_entry"]
    if not any(PDB_ID.fullmatch(code.strip()) for code in entry.split(",")):
        raise MoleculeError(f"model coordinates name no PDB entry (pdbx_model_coordinates_db_code {entry!r})")
    coords = np.asarray(payload["coords"], dtype=np.float64)
    if not np.isfinite(coords).all():
        raise MoleculeError("incomplete model coordinates")
    table = Chem.GetPeriodicTable()
    rw = Chem.RWMol()
    for sym, charge in zip(payload["symbols"], payload["charges"]):
        symbol = sym.capitalize()
        try:
            z = table.GetAtomicNumber(symbol)
        except RuntimeError:
            raise MoleculeError(f"unknown element {sym!r}") from None
        atom = Chem.Atom(z)
        atom.SetFormalCharge(charge)
        atom.SetNoImplicit(True)  # the CCD lists every hydrogen
        rw.AddAtom(atom)
    for i, j, order in payload["bonds"]:
        if i is None or j is None:
            raise MoleculeError("bond to an atom not in the component")
        if order not in _CCD_BOND_ORDER:
            raise MoleculeError(f"unsupported bond order {order}")
        rw.AddBond(i, j, _CCD_BOND_ORDER[order])
    mol = rw.GetMol()
    add_conformer(mol, coords)
    n_heavy = sum(1 for a in mol.GetAtoms() if a.GetAtomicNum() > 1)
    if n_heavy < CCD_MIN_HEAVY:
        raise MoleculeError(f"too small: {n_heavy} heavy atoms (minimum {CCD_MIN_HEAVY})")
    ideal = np.asarray(payload["ideal_coords"], dtype=np.float64)
    if np.isfinite(ideal).all():
        rmsd = math.sqrt(rdAlignment.GetAlignmentTransform(ideal, coords)[0] / len(coords))
        if rmsd < CCD_IDEAL_COPY_RMSD:
            raise MoleculeError(f"model coordinates are the computed ideal ones "
                                f"(RMSD {rmsd:.4f} A after superposition), not experimental")
    reason = check_coordinates(mol)
    if reason is not None:
        raise MoleculeError(reason)
    mol = prepare_mol(mol, max_heavy_atoms=CCD_MAX_HEAVY)
    with rdBase.BlockLogs():
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
    return ConformerSet(smiles=smiles, mol=mol, weights=None, name=comp_id)


# ----------------------------------------------------------------------------------------
# SDF
# ----------------------------------------------------------------------------------------

def sdf_groups(path: str | Path, group_by: str | None = "smiles",
               failures: list | None = None) -> Iterator[tuple[str, dict]]:
    """``(name, payload)`` per molecule of a multi-conformer SDF, for :func:`sdf_conformer_set`."""
    for key, mols in group_sdf_records(path, group_by=group_by, failures=failures).items():
        yield key, {"mols": mols, "smiles": key if group_by == "smiles" else None, "weights": mol_weights(mols)}


def sdf_conformer_set(name: str, payload: dict, failures: list | None = None, *,
                      largest_fragment: bool = False, max_heavy_atoms: int | None = None) -> ConformerSet:
    """Validate and merge the records of one SDF molecule (see :func:`conformer_set_from_mols`;
    ``largest_fragment``: keep each record's largest fragment instead of refusing a salt;
    ``max_heavy_atoms``: refuse larger records)."""
    return conformer_set_from_mols(payload["mols"], name, smiles=payload["smiles"],
                                   weights=payload["weights"], failures=failures,
                                   largest_fragment=largest_fragment, max_heavy_atoms=max_heavy_atoms)


# ----------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------

@dataclass
class BuildSummary:
    """What one :func:`run_build` call did, and the dataset's totals afterwards."""

    root: str
    inputs: int = 0
    retried: int = 0
    skipped_done: int = 0
    duplicates: int = 0          # inputs whose name an earlier input had: renamed (``renamed``)
    stored: int = 0
    conformers: int = 0
    failed: int = 0              # molecules not built (not counting reserved ones)
    unreadable: int = 0          # input records that could not be read (input_failures)
    partly_failed: int = 0       # molecules stored without some of their conformer records
    reserved_dropped: int = 0
    total_molecules: int = 0
    total_reserved_dropped: int = 0
    splits: dict | None = None
    renamed: list[str] = field(default_factory=list)

    @property
    def has_failures(self) -> bool:
        """Whether this call wrote ``failures.csv`` rows other than reserved molecules (a
        molecule not built, an unreadable input record, a conformer record left out); inputs
        skipped as done in an earlier run are not counted, failures of earlier runs retried
        (``retry_failed``) and failing again are."""
        return bool(self.failed or self.unreadable or self.partly_failed)


_WORKER_RESERVED: frozenset[str] | None = None


def _init_worker(reserved: frozenset[str]) -> None:
    global _WORKER_RESERVED
    _WORKER_RESERVED = reserved
    rdBase.DisableLog("rdApp.*")


def _start_worker(reserved: frozenset[str]) -> None:
    """A pool worker's set-up: :func:`~molscore.pool_watch.init_worker`, then :func:`_init_worker`."""
    init_worker()
    _init_worker(reserved)


def _process(item: tuple[str, object], make: Callable,
             featurisation: int) -> tuple[str, dict | None, list, bool]:
    """Worker: ``(name, payload)`` -> ``(name, encoded or None, failures, reserved?)``, the
    features of version ``featurisation``."""
    name, payload = item
    failures: list[tuple[str, str]] = []
    try:
        record = make(name, payload, failures)
    except MoleculeError as err:
        return name, None, failures + [(name, str(err))], False
    except Exception as err:  # a bug or RDKit crash on one molecule must not end a long build
        return name, None, failures + [(name, f"unexpected error: {type(err).__name__}: {err}")], False
    reason = build_exclusion_reason(record.mol, _WORKER_RESERVED)
    if reason:
        return name, None, [(name, reason)], is_reserved_reason(reason)
    return name, encode_record(record, featurisation=featurisation), failures, False


def _process_chunk(items: list[tuple[str, object]], worker: Callable) -> list[tuple[str, dict | None, list, bool]]:
    """Worker: :func:`_process` (as ``worker``) on consecutive items, one pool task."""
    return [worker(item) for item in items]


def _make_etkdg(name: str, smiles: str, failures: list, **kw) -> ConformerSet:
    return etkdg_conformers(smiles, name=name, **kw)


def _make_ccd(name: str, payload: dict, failures: list) -> ConformerSet:
    return ccd_conformer_set(name, payload)


def _make_sdf(name: str, payload: dict, failures: list, **kw) -> ConformerSet:
    return sdf_conformer_set(name, payload, failures, **kw)


MAKERS: dict[str, Callable] = {"etkdg": _make_etkdg, "ccd": _make_ccd, "sdf": _make_sdf}


def run_build(kind: str, items: Iterable[tuple[str, object]], root: str | Path, *, workers: int = 1,
              maker_kwargs: dict | None = None, reserved_path: str | Path | None = None,
              meta: dict | None = None, shard_size: int = 256, fractions: Sequence[float] = (0.8, 0.1, 0.1),
              split_seed: int = 0, input_failures: list | None = None, progress: bool = True,
              retry_failed: bool = False, featurisation: int | None = None) -> BuildSummary:
    """Build (or resume) a processed dataset from ``(name, payload)`` items.

    Args:
        kind: ``"etkdg"`` (payload: SMILES), ``"ccd"`` (payload from :func:`ccd_components`) or
            ``"sdf"`` (payload from :func:`sdf_groups`).
        items: inputs; names already stored or failed in ``root`` are skipped. A name that an
            earlier item has (``x``) becomes ``x#2``, ``x#3``, ... as in
            :func:`smiles_inputs` (``summary.renamed``).
        root: output folder.
        workers: processes (``<= 1``: run in this process).
        maker_kwargs: extra keyword arguments of the builder (e.g. ETKDG settings).
        reserved_path: another reserved InChIKey list, whose molecules are dropped as well as
            those of the shipped list (which always are), with their tautomers and charge forms
            (:func:`~molscore.data.reserved.build_exclusion_reason`).
        meta: build description stored in the index; ``reserved_match`` (the rule,
            :data:`~molscore.data.reserved.MATCH_RULE`) is added to it. A resume keeps the
            earlier build's but for ``input`` (the input file's identity, which
            ``molscore build-dataset`` compares with the recorded one): this one's replaces it,
            so that a grown input, or the first one a folder records, is compared next time.
        shard_size, fractions, split_seed: see :class:`~molscore.data.processed.DatasetWriter` and
            :func:`~molscore.data.processed.scaffold_split`.
        input_failures: failures found while listing inputs (e.g. unreadable SDF records).
        progress: show a tqdm progress bar.
        retry_failed: first drop the failures of earlier runs from ``failures.csv`` (reserved
            molecules stay dropped), so those inputs are tried again.
        featurisation: version of the features; ``None``: the folder's own when resuming, else
            the default (:class:`~molscore.data.processed.DatasetWriter`).

    Raises:
        WorkerDied: a worker process died (killed, out of memory, a crash in native code); what
            was done before is kept, and a rerun resumes.
        ValueError: ``root`` holds a build begun under another reserved-molecule rule, or by a
            molscore that recorded none (:func:`~molscore.data.reserved.check_match_rule`), or
            another build is writing it (its lock, :class:`~molscore.data.processed.DatasetWriter`).
    """
    reserved = reserved_keys(reserved_path)
    with build_writer(root, shard_size=shard_size, meta=meta, featurisation=featurisation) as writer:
        if meta and "input" in meta:
            writer.index["meta"]["input"] = meta["input"]
        summary = BuildSummary(root=str(root))
        if retry_failed:
            summary.retried = writer.forget_failures(keep=is_reserved_reason)
        todo, seen = [], {}
        for name, payload in items:
            summary.inputs += 1
            unique = disambiguate(name, seen)
            if unique != name:
                summary.renamed.append(unique)
            if writer.is_done(unique):
                summary.skipped_done += 1
            else:
                todo.append((unique, payload))
        summary.duplicates = len(summary.renamed)
        unreadable = [f for f in input_failures or [] if not writer.is_done(f[0])]
        summary.unreadable = len(unreadable)
        writer.add_failures(unreadable)
        worker = functools.partial(_process, make=functools.partial(MAKERS[kind], **(maker_kwargs or {})),
                                   featurisation=writer.featurisation)
        pool = None
        if workers > 1 and len(todo) > 1:
            # fork (like torch's DataLoader) avoids re-importing torch/RDKit in every worker
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            pool = start_pool(method, workers, _start_worker, (reserved,))
            # chunks made here: imap with a chunksize above 1 returns a generator watch cannot poll
            size = max(1, min(16, math.ceil(len(todo) / (8 * workers))))
            chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
            done = watch(pool, pool.imap(functools.partial(_process_chunk, worker=worker), chunks),
                         "the molecules done are kept (rerun the command to resume)")
            results = itertools.chain.from_iterable(done)
        else:
            _init_worker(reserved)
            results = map(worker, todo)
        # disable=None: tqdm shows the bar only on a terminal
        bar = tqdm(total=len(todo), desc=f"build-dataset {kind}", unit="mol",
                   disable=None if progress else True)
        try:
            for name, encoded, failures, was_reserved in results:
                writer.add_failures(failures)
                if was_reserved:
                    summary.reserved_dropped += 1
                elif encoded is None:
                    summary.failed += 1
                else:
                    writer.add(encoded)
                    summary.stored += 1
                    summary.partly_failed += bool(failures)   # conformer records left out
                    summary.conformers += int(encoded["pos"].shape[0])
                bar.update(1)
            if pool is not None:
                pool.close()
                pool.join()
        finally:
            bar.close()
            if pool is not None:
                stop(pool)  # not pool.terminate(): it hangs on a lock a killed worker held
            writer.flush()  # keep what was done, so an interrupted build resumes
        index = writer.finalize(fractions, split_seed)
        summary.total_molecules = len(index["molecules"])
        summary.total_reserved_dropped = sum(1 for _, reason in read_failures(root)
                                             if is_reserved_reason(reason))
        summary.splits = {k: len(v) for k, v in index["splits"].items()}
        return summary

