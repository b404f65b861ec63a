"""Readers of multi-conformer molecule files into one record type, :class:`ConformerSet`.

Formats:

* GEOM ``rdkit_folder``: a summary JSON (``{smiles: {"pickle_path": ..., ...}}``) next to
  per-molecule pickles ``{"conformers": [{"rd_mol": Mol, "boltzmannweight": w, ...}], ...}``
  (:func:`read_geom_rdkit_folder`).
* Multi-conformer SDF, plain or ``.gz``, grouped into molecules by a record property such
  as ``smiles`` or ``ensemble``, or by the canonical SMILES of each record (:func:`read_sdf`).
* torsional-diffusion style pickles ``{smiles: [Mol, ...]}`` (:func:`read_smiles_pickle`).

**Security:** unpickling can run code stored in the file. The pickle readers load only
the files whose paths a user names explicitly (a GEOM summary's ``pickle_path`` must lie in
the summary's folder), and by default with a restricted unpickler that builds nothing but
plain containers, numbers, strings, RDKit molecules and numpy scalars and arrays
(:data:`SAFE_PICKLE_GLOBALS`): a pickle naming any other callable (``os.system``, ``exec``)
is refused before it runs, a failure row that says so. ``trust=True`` lifts the restriction,
for pickles of one's own making that hold other objects; never pass it for untrusted files.

Bad input never stops a reader: an unreadable or truncated file, a pickle of another
layout or holding something other than RDKit molecules, a record without
coordinates, a record whose atoms do not match its SMILES graph, or a conformer whose
stereochemistry differs from the molecule's is skipped, and ``(name, reason)`` is
appended to the ``failures`` list the caller passes in.
"""
from __future__ import annotations

import gzip
import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from rdkit import Chem, rdBase

from ..chem.featurize import MoleculeError, atoms_match, prepare_mol
from ..chem.io import is_gzip

__all__ = [
    "ConformerSet", "Failures", "conformer_set_from_mols", "read_geom_rdkit_folder", "read_sdf",
    "read_smiles_pickle", "read_conformers", "check_coordinates", "group_sdf_records", "mol_weights",
    "SAFE_PICKLE_GLOBALS",
]

Failures = list[tuple[str, str]]  # (record name, reason)

_MIN_BOND, _MAX_BOND = 0.5, 3.0  # Angstrom; bonded distances outside this are not a conformer
# Angstrom; atoms not bonded to each other closer than this are broken coordinates (the
# closest intramolecular H...H contacts of real structures are about 1.7 A)
_MIN_NONBONDED = 0.9


@dataclass
class ConformerSet:
    """All conformers of one molecule.

    Attributes:
        smiles: canonical isomeric SMILES (stereo assigned from the 3D coordinates).
        mol: sanitised ``Mol`` with explicit hydrogens and ``K >= 1`` conformers, all in
            the same atom order.
        weights: ``(K,)`` float64 Boltzmann weights summing to 1, or ``None`` when unknown.
        name: identifier from the source (ensemble name, GEOM SMILES key, file record).
    """

    smiles: str
    mol: Chem.Mol
    weights: np.ndarray | None
    name: str

    @property
    def num_conformers(self) -> int:
        return self.mol.GetNumConformers()

    def coordinates(self) -> np.ndarray:
        """All conformers' coordinates, ``(K, N, 3)`` float64 (Angstrom)."""
        return np.stack([c.GetPositions() for c in self.mol.GetConformers()])


def check_coordinates(mol: Chem.Mol, conf_id: int = -1) -> str | None:
    """Why conformer ``conf_id`` of ``mol`` is not a usable 3D structure, or ``None`` if it is."""
    if mol.GetNumConformers() == 0:
        return "missing coordinates"
    conf = mol.GetConformer(conf_id)
    pos = conf.GetPositions()
    if not np.isfinite(pos).all():
        return "non-finite coordinates"
    if mol.GetNumAtoms() > 1 and np.abs(pos).max() == 0.0:
        return "missing coordinates (all zero)"
    if not conf.Is3D() and mol.GetNumAtoms() > 2 and np.abs(pos[:, 2]).max() == 0.0:
        return "2D coordinates only"
    if mol.GetNumBonds():
        ij = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()])
        d = np.linalg.norm(pos[ij[:, 0]] - pos[ij[:, 1]], axis=1)
        if d.min() < _MIN_BOND or d.max() > _MAX_BOND:
            return f"implausible bond length {d.min():.2f}-{d.max():.2f} A (coordinates do not fit the bonds)"
    dist = np.linalg.norm(pos[:, None] - pos[None, :], axis=-1)
    path = Chem.GetDistanceMatrix(mol)      # bonds between atoms; 1e8 across fragments
    nonbonded = (path >= 2) & (path < len(pos))     # in one fragment (a salt's ions may overlap)
    close = np.argwhere(np.triu(nonbonded & (dist < _MIN_NONBONDED)))
    if len(close):
        i, j = close[np.argmin(dist[close[:, 0], close[:, 1]])]
        sym = [mol.GetAtomWithIdx(int(k)).GetSymbol() for k in (i, j)]
        return (f"atoms {sym[0]}{i + 1} and {sym[1]}{j + 1}, not bonded, {dist[i, j]:.2f} A apart "
                f"(clashing coordinates)")
    return None


def _same_order(a: Chem.Mol, b: Chem.Mol) -> bool:
    if a.GetNumAtoms() != b.GetNumAtoms() or a.GetNumBonds() != b.GetNumBonds():
        return False
    if any(x.GetAtomicNum() != y.GetAtomicNum() for x, y in zip(a.GetAtoms(), b.GetAtoms())):
        return False
    return all(b.GetBondBetweenAtoms(bd.GetBeginAtomIdx(), bd.GetEndAtomIdx()) is not None
               for bd in a.GetBonds())


def _isomeric(mol: Chem.Mol) -> str:
    with rdBase.BlockLogs():
        return Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))


def _reference(smiles: str | None, largest_fragment: bool) -> str | Chem.Mol | None:
    """What a record's graph is checked against: ``smiles``, or with ``largest_fragment`` the
    fragment of it that :func:`prepare_mol` keeps of a record (the SMILES itself when that
    fails, so the check fails as before)."""
    if smiles is None or not largest_fragment:
        return smiles
    try:
        return prepare_mol(smiles, add_hs=False, largest_fragment=True)
    except MoleculeError:
        return smiles


def _weight(value: object) -> float:
    """A record's weight as a float; NaN (so the set gets no weights) for ``None`` or text
    that is not a number, as a hand-made GEOM-style pickle can hold."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def conformer_set_from_mols(mols: Sequence[Chem.Mol], name: str, *, smiles: str | None = None,
                            weights: Sequence[float] | None = None, failures: Failures | None = None,
                            largest_fragment: bool = False,
                            max_heavy_atoms: int | None = None) -> ConformerSet:
    """Validate and merge single-conformer records of one molecule into a :class:`ConformerSet`.

    Each record is checked (coordinates present and plausible, atoms match ``smiles`` when
    given, stereo from 3D equal to the first kept record's); failing records are dropped and
    reported in ``failures`` as ``(name, f"conformer {k}: {reason}")``. Hydrogens missing from a
    record are added with computed coordinates. Records in another atom order are renumbered to
    the first kept record's order.

    Args:
        mols: ``K`` RDKit molecules, each with one conformer (the first is used).
        name: identifier for failure reports.
        smiles: the molecule's SMILES in the source (checked against each record's graph; its
            largest fragment with ``largest_fragment``).
        weights: ``(K,)`` weights of the records (renormalised over the kept ones).
        failures: list to append ``(name, reason)`` to.
        largest_fragment, max_heavy_atoms: passed to :func:`prepare_mol`.

    Raises:
        MoleculeError: no record survives (``"no usable conformer (<first record's reason>)"``).
    """
    failures = failures if failures is not None else []
    reference = _reference(smiles, largest_fragment)
    base: Chem.Mol | None = None
    base_smiles = ""
    kept_weights: list[float] = []
    first_reason = None
    for k, raw in enumerate(mols):
        reason = None
        mol = None
        if raw is None:
            reason = "record could not be parsed"
        elif not isinstance(raw, Chem.Mol):  # a hand-made or damaged pickle
            reason = f"not an RDKit molecule but {type(raw).__name__}"
        else:  # prepare_mol first: its size limit spares check_coordinates' (N, N) matrices
            try:   # of a huge record (a protein: gigabytes)
                mol = prepare_mol(raw, largest_fragment=largest_fragment, max_heavy_atoms=max_heavy_atoms)
            except MoleculeError as err:
                reason = str(err)
            if reason is None:
                reason = check_coordinates(raw)
        if reason is None and reference is not None and not atoms_match(mol, reference):
            reason = "3D atoms do not match the SMILES graph"
        if reason is None and base is not None:
            if not _same_order(base, mol):
                # a record with more atoms (an extra hydrogen) can hold the base as a part
                match = mol.GetSubstructMatch(base) if mol.GetNumAtoms() == base.GetNumAtoms() else ()
                if len(match) != base.GetNumAtoms():
                    reason = "atoms do not match the other conformers"
                else:
                    mol = Chem.RenumberAtoms(mol, list(match))
            if reason is None and _isomeric(mol) != base_smiles:   # isotopes are in it too
                relabelled = [a.GetIsotope() for a in mol.GetAtoms()] != [a.GetIsotope() for a in base.GetAtoms()]
                reason = ("isotope labels differ from the first conformer's" if relabelled
                          else "stereochemistry from 3D differs from the first conformer")
        if reason is not None:
            failures.append((name, f"conformer {k}: {reason}"))
            first_reason = first_reason or reason
            continue
        if base is None:
            base = Chem.Mol(mol)
            base.RemoveAllConformers()
            base_smiles = _isomeric(mol)
        conf = Chem.Conformer(mol.GetConformer())
        conf.Set3D(True)
        base.AddConformer(conf, assignId=True)
        if weights is not None:
            kept_weights.append(_weight(weights[k]))
    if base is None:
        raise MoleculeError(f"no usable conformer ({first_reason})" if first_reason else "no conformers")
    w = None
    if weights is not None:
        arr = np.asarray(kept_weights, dtype=np.float64)
        if np.isfinite(arr).all() and (arr >= 0).all() and arr.sum() > 0:
            w = arr / arr.sum()
    return ConformerSet(smiles=base_smiles, mol=base, weights=w, name=name)


def _emit(mols, name, failures, **kw) -> Iterator[ConformerSet]:
    try:
        yield conformer_set_from_mols(mols, name, failures=failures, **kw)
    except MoleculeError as err:
        failures.append((name, str(err)))


# (module, name) of the callables a GEOM or torsional-diffusion pickle needs: RDKit molecules,
# numpy scalars and arrays (numpy 1 and 2 module names), protocol 2's bytes, and sets and
# complex numbers (``__builtin__``: protocol 2's name of the module); none runs code.
SAFE_PICKLE_GLOBALS = frozenset(
    [("rdkit.Chem.rdchem", "Mol"), ("_codecs", "encode"), ("numpy", "dtype"), ("numpy", "ndarray")]
    + [(f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("scalar", "_reconstruct")]
    + [(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")]
    + [(module, name) for module in ("builtins", "__builtin__") for name in ("set", "frozenset", "complex")])


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`SAFE_PICKLE_GLOBALS`; any other global (the
    callable a code-running pickle needs) raises ``pickle.UnpicklingError`` before it is called."""

    def find_class(self, module: str, name: str):
        if (module, name) not in SAFE_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which molscore does not unpickle from a file not "
                "trusted (it could run code); pass trust=True only for a file you trust")
        return super().find_class(module, name)


def _load_pickle(path: Path, trust: bool):
    """Unpickle ``path``: with :class:`_SafeUnpickler` unless ``trust``."""
    with open(path, "rb") as fh:
        return pickle.load(fh) if trust else _SafeUnpickler(fh).load()


def read_geom_rdkit_folder(summary: str | Path, *, failures: Failures | None = None,
                           limit: int | None = None, trust: bool = False, **kw) -> Iterator[ConformerSet]:
    """Read GEOM's ``rdkit_folder`` layout (pickles: see the module's security note).

    Args:
        summary: ``summary_drugs.json`` / ``summary_qm9.json``; each entry's
            ``pickle_path`` is resolved relative to the JSON's folder (one that is absolute or
            holds ``..`` is not loaded: a failure row).
        failures: list to append ``(name, reason)`` to.
        limit: read at most this many molecules.
        trust: unpickle any object; else a pickle naming a global other than
            :data:`SAFE_PICKLE_GLOBALS` is not loaded (a failure row).
        kw: passed to :func:`conformer_set_from_mols` (``largest_fragment``, ``max_heavy_atoms``).

    Yields:
        One :class:`ConformerSet` per readable molecule, weights from ``boltzmannweight``.
    """
    failures = failures if failures is not None else []
    summary = Path(summary)
    try:
        with open(summary, encoding="utf-8") as fh:
            index = json.load(fh)
    except (OSError, ValueError) as err:
        failures.append((str(summary), f"unreadable summary: {err}"))
        return
    if not isinstance(index, dict):  # another JSON file: GEOM's summary maps SMILES to entries
        failures.append((str(summary), f"unreadable summary: a JSON {type(index).__name__}, "
                                       "not an object of SMILES -> {'pickle_path': ...}"))
        return
    for n, (smiles, entry) in enumerate(index.items()):
        if limit is not None and n >= limit:
            break
        rel = entry.get("pickle_path") if isinstance(entry, dict) else None
        if not rel or not isinstance(rel, str):
            failures.append((smiles, "no pickle_path in summary"))
            continue
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            failures.append((smiles, f"pickle_path {rel} is outside the summary's folder; not loaded "
                                     "(unpickling runs code: only the named folder's files are read)"))
            continue
        try:
            confs = _load_pickle(summary.parent / rel, trust)["conformers"]
            if not isinstance(confs, list) or not all(isinstance(c, dict) for c in confs):
                raise TypeError("'conformers' is not a list of dicts")
        except Exception as err:  # truncated pickle, missing file, wrong layout
            failures.append((smiles, f"unreadable pickle {rel}: {type(err).__name__}: {err}"))
            continue
        mols = [c.get("rd_mol") for c in confs]
        weights = [c.get("boltzmannweight", np.nan) for c in confs]
        yield from _emit(mols, smiles, failures, smiles=smiles, weights=weights, **kw)


def read_smiles_pickle(path: str | Path, *, failures: Failures | None = None,
                       limit: int | None = None, trust: bool = False, **kw) -> Iterator[ConformerSet]:
    """Read a torsional-diffusion style pickle ``{smiles: [Mol, ...]}`` (see the module's
    security note; ``trust``: as :func:`read_geom_rdkit_folder`'s).

    Weights come from a ``boltzmannweight`` / ``weight`` double property on the molecules
    when every one has it, else ``None``. A molecule holding several conformers gives each
    its own record, its weight shared equally among them.
    """
    failures = failures if failures is not None else []
    try:
        data = _load_pickle(Path(path), trust)
        items = list(data.items())
    except Exception as err:
        failures.append((str(path), f"unreadable pickle: {type(err).__name__}: {err}"))
        return
    for n, (smiles, mols) in enumerate(items):
        if limit is not None and n >= limit:
            break
        mols = list(mols) if isinstance(mols, (list, tuple)) else [mols]
        singles, weights = _one_conformer_each(mols, mol_weights(mols))
        yield from _emit(singles, str(smiles), failures, smiles=str(smiles), weights=weights, **kw)


def _one_conformer_each(mols: list, weights: list[float] | None
                        ) -> tuple[list, list[float] | None]:
    """``mols`` with every molecule of several conformers split into one molecule per
    conformer, and ``weights`` to match (a molecule's weight divided among its conformers)."""
    singles, shared = [], []
    for i, mol in enumerate(mols):
        k = mol.GetNumConformers() if isinstance(mol, Chem.Mol) else 0
        if k > 1:
            singles += [Chem.Mol(mol, confId=conf.GetId()) for conf in mol.GetConformers()]
        else:
            singles.append(mol)
        if weights is not None:
            shared += [weights[i] / max(k, 1)] * max(k, 1)
    return singles, (shared if weights is not None else None)


def mol_weights(mols: Sequence[Chem.Mol | None]) -> list[float] | None:
    """Per-record weights from a ``boltzmannweight`` or ``weight`` property, when all records have it."""
    for key in ("boltzmannweight", "weight"):
        if mols and all(isinstance(m, Chem.Mol) and m.HasProp(key) for m in mols):
            try:
                return [float(m.GetProp(key)) for m in mols]
            except ValueError:          # not numbers: the other property may be
                continue
    return None


def _sdf_blocks(path: Path) -> Iterator[bytes]:
    """Raw SDF records, each ending with ``$$$$``.

    A last record without ``$$$$`` is yielded when its molfile is complete (it has an
    ``M  END`` line, as RDKit's own readers accept); one that stops before ``M  END`` raises
    ``EOFError``.
    """
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as fh:
        lines: list[bytes] = []
        for line in fh:
            lines.append(line)
            if line.startswith(b"$$$$"):
                yield b"".join(lines)
                lines = []
        if any(x.startswith(b"M  END") for x in lines):
            yield b"".join(lines)
        elif any(x.strip() for x in lines):
            raise EOFError("file ends inside a record")


def _sdf_records(path: Path, failures: Failures) -> Iterator[tuple[int, Chem.Mol | None]]:
    """``(record number, unsanitised Mol or None)``; read errors end the file with one failure row."""
    n = 0
    try:
        for block in _sdf_blocks(path):
            with rdBase.BlockLogs():
                supplier = Chem.ForwardSDMolSupplier(io.BytesIO(block), removeHs=False, sanitize=False)
                mol = next(supplier, None)
            yield n, mol
            n += 1
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        failures.append((str(path),
                         f"truncated or unreadable file ({n} records read): {type(err).__name__}: {err}"))


def group_sdf_records(path: str | Path, *, group_by: str | None = "smiles",
                      failures: Failures | None = None) -> dict[str, list[Chem.Mol]]:
    """Group the (unsanitised) records of an SDF by molecule, without validating them.

    Args:
        path: ``.sdf`` or ``.sdf.gz``; a truncated or unreadable file yields what was read
            before the error and one failure row.
        group_by: record property naming the molecule; records lacking it (or whose value is
            blank), or every record when ``None``, are grouped by their own canonical isomeric
            SMILES. With ``"smiles"`` the values are compared as canonical SMILES (``OCCCC``
            joins the ``CCCCO`` group; the key is the first spelling met), and so is a record's
            own SMILES (one without the property joins the ``c1ccccc1CCO`` group of the records
            that have it). Records need not be contiguous.
        failures: list to append ``(name, reason)`` to.

    Returns:
        ``{key: [Mol, ...]}`` in order of first appearance.
    """
    failures = failures if failures is not None else []
    path = Path(path)
    groups: dict[str, list[Chem.Mol]] = {}
    spellings: dict[str, str] = {}   # canonical SMILES -> the first spelling of it met
    for i, mol in _sdf_records(path, failures):
        if mol is None:
            failures.append((f"{path.name}:record{i}", "record could not be parsed"))
            continue
        key = mol.GetProp(group_by).strip() if group_by and mol.HasProp(group_by) else ""
        if key and group_by == "smiles":
            with rdBase.BlockLogs():
                parsed = Chem.MolFromSmiles(key)
            key = spellings.setdefault(Chem.MolToSmiles(parsed) if parsed is not None else key, key)
        if not key:  # no property, or an empty one: it names no molecule
            try:
                probe = Chem.Mol(mol)
                with rdBase.BlockLogs():
                    Chem.SanitizeMol(probe)
                    Chem.AssignStereochemistryFrom3D(probe)
                key = _isomeric(probe)
            except Exception as err:  # RDKit sanitisation errors
                failures.append((f"{path.name}:record{i}", f"invalid record: {err}"))
                continue
            if group_by == "smiles":  # a canonical SMILES too: it joins the records spelling it otherwise
                key = spellings.setdefault(key, key)
        groups.setdefault(key, []).append(mol)
    return groups


def read_sdf(path: str | Path, *, group_by: str | None = "smiles", failures: Failures | None = None,
             limit: int | None = None, **kw) -> Iterator[ConformerSet]:
    """Read a multi-conformer SDF (``.sdf`` or ``.sdf.gz``) into one record per molecule.

    Args:
        path: the SDF file.
        group_by: see :func:`group_sdf_records`.
        failures: list to append ``(name, reason)`` to.
        limit: yield at most this many molecules.
        kw: passed to :func:`conformer_set_from_mols`.

    When ``group_by == "smiles"`` the property is also checked against each record's graph.
    Weights come from ``boltzmannweight``/``weight`` properties when all records have one.
    """
    failures = failures if failures is not None else []
    groups = group_sdf_records(path, group_by=group_by, failures=failures)
    for n, (key, mols) in enumerate(groups.items()):
        if limit is not None and n >= limit:
            break
        ref = key if group_by == "smiles" else None
        yield from _emit(mols, key, failures, smiles=ref, weights=mol_weights(mols), **kw)


def read_conformers(path: str | Path, *, fmt: str | None = None, **kw) -> Iterator[ConformerSet]:
    """Dispatch on format: ``sdf`` (``.sdf``, ``.sdf.gz``), ``geom`` (``.json`` summary) or
    ``pickle`` (``.pkl``, ``.pickle``); ``fmt`` overrides the guess from the file name; ``kw``
    go to the reader (``trust`` to the pickle readers only)."""
    name = Path(path).name.lower()
    if fmt is None:
        if name.endswith((".sdf", ".sdf.gz")):
            fmt = "sdf"
        elif name.endswith(".json"):
            fmt = "geom"
        elif name.endswith((".pkl", ".pickle")):
            fmt = "pickle"
        else:
            raise ValueError(f"cannot tell the format of {path}; expected .sdf[.gz], .json or .pkl")
    readers = {"sdf": read_sdf, "geom": read_geom_rdkit_folder, "pickle": read_smiles_pickle}
    if fmt not in readers:
        raise ValueError(f"unknown conformer format {fmt!r}; choose from {', '.join(readers)}")
    if fmt == "sdf":
        kw.pop("trust", None)
    return readers[fmt](path, **kw)

