"""Conformer metrics: symmetry-aware heavy-atom RMSD, ensemble coverage, crystal reproduction.

RMSD follows :func:`rdkit.Chem.rdMolAlign.GetBestRMS` after removing every hydrogen: the
minimum over graph automorphisms (atom mappings) of the RMSD after optimal rigid
superposition, over heavy atoms alone. (``Chem.RemoveHs`` keeps some hydrogens: isotopes and
those that define a double bond's stereo, e.g. the imine H of ``[H]/N=C(/N)c1ccccc1``;
``GetBestRMS`` after it counts them as atoms, so for such molecules the two differ.) Atom mappings are found once per molecule pair with RDKit
substructure matching on the heavy-atom graph with elements, bond types and formal
charges, as ``GetBestRMS`` does, with its default ``symmetrizeConjugatedTerminalGroups``
(a carboxylate's or nitro group's terminal O / N: bond order and charge ignored, so
they swap); only where the two molecules differ in bond orders or charges (tautomers,
charge forms: ``GetBestRMS`` finds no mapping) are elements and connectivity alone
matched. Groups of interchangeable terminal atoms (a CF3 group's F, a phosphate's O) are
matched in one order and their permutations generated afterwards, so RDKit enumerates only
the mappings of the rest (inositol hexakisphosphate: 12 instead of 559,872). Then all
conformer pairs are superposed under blocks of mappings at once (batched Kabsch in
float64), which is what makes the 2K x K RMSD matrices of the GEOM protocol cheap. With
more than ``max_matches`` mappings (default 10^6, as ``GetBestRMS``) the first
``max_matches`` RDKit enumerates are taken, as ``GetBestRMS`` takes them, and the RMSD is
an upper bound.
``tests/test_metrics.py`` checks agreement with ``GetBestRMS``.

Protocols:

* coverage (torsional diffusion, GEOM): with K reference and (usually 2K) generated
  conformers of one molecule, COV-R = fraction of references with a generated
  conformer strictly below ``threshold`` Å (``<``, as torsional diffusion's
  ``evaluate_confs.py``), AMR-R = mean over references of the minimum RMSD;
  COV-P / AMR-P the same with roles swapped. Mean and median over molecules.
* crystal reproduction: per molecule the minimum RMSD of the first N generated
  conformers to its one reference conformer, N = 1, 10, 50; median over molecules and
  fractions strictly under 0.5 / 1 / 2 Å.

Means, medians and fractions are over the molecules scored, those of the reference with
generated conformers: a reference molecule without any (``missing``) is left out of them,
not counted as a failure. (Torsional diffusion's ``evaluate_confs.py`` counts a molecule
the model failed on as COV 0 in the COV mean and median, and leaves it out of the AMR; with
``missing`` molecules its COV would be lower than the one here.)
"""
from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from rdkit import Chem, rdBase
from tqdm.auto import tqdm

from .io import InputFormatError, read_sdf_mols

__all__ = ["MAX_MATCHES", "SKIP_REASONS", "AtomMappings", "ConformerGroup", "Groups", "atom_matches",
           "rmsd_matrix", "group_rmsd", "coverage_metrics", "read_groups", "describe_skipped",
           "evaluate_coverage", "evaluate_crystal", "summarise", "crystal_summary"]

MAX_MATCHES = 1_000_000          # as rdMolAlign.GetBestRMS
_LABEL_STEP = 4096               # leaf-group labels: isotope + _LABEL_STEP * rank (RDKit: 16 bits)
# RDKit's symmetrizeTerminalAtoms (MolAlign): terminal O / N of a conjugated pair, and its bond
_TERMINAL = Chem.MolFromSmarts("[O,N;D1;$([O,N;D1]-[*]=[O,N;D1]),$([O,N;D1]=[*]-[O,N;D1])]~[*]")


def _skeleton(mol: Chem.Mol, bond_orders: bool = True) -> Chem.Mol:
    """Heavy-atom graph for atom mappings: elements and connectivity, and with ``bond_orders``
    bond types and formal charges as ``GetBestRMS`` matches them (conjugated terminal O / N
    groups made single-bonded and neutral, so that they swap)."""
    rw = Chem.RWMol(mol)
    # every H, deuterium and tritium included (RemoveHs, and so GetBestRMS after it, keeps
    # isotopes and some other H: a deuterated molecule's RMSD differs from GetBestRMS's);
    # the heavy atoms' order kept
    for atom in reversed(list(rw.GetAtoms())):
        if atom.GetAtomicNum() == 1:
            rw.RemoveAtom(atom.GetIdx())
    for atom in rw.GetAtoms():
        if not bond_orders:
            atom.SetIsAromatic(False)
            atom.SetFormalCharge(0)
        atom.SetNoImplicit(True)
        atom.SetNumExplicitHs(0)
        atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    for bond in rw.GetBonds():
        if not bond_orders:
            bond.SetBondType(Chem.BondType.SINGLE)
            bond.SetIsAromatic(False)
        bond.SetStereo(Chem.BondStereo.STEREONONE)
    rw.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(rw)
    if bond_orders:
        for terminal, centre in rw.GetSubstructMatches(_TERMINAL):
            rw.GetAtomWithIdx(terminal).SetFormalCharge(0)
            rw.GetBondBetweenAtoms(terminal, centre).SetBondType(Chem.BondType.SINGLE)
    out = rw.GetMol()
    out.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(out)
    return out


def _heavy_positions(mol: Chem.Mol, conf_ids: Sequence[int] | None = None) -> np.ndarray:
    """Heavy-atom coordinates ``(K, n, 3)`` in the order of ``_skeleton(mol)`` (every atom
    but hydrogens: dummy atoms, atomic number 0, count as ``_skeleton`` and ``GetBestRMS``
    count them)."""
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() != 1]
    confs = ([mol.GetConformer(c) for c in conf_ids] if conf_ids is not None
             else list(mol.GetConformers()))
    return np.stack([np.asarray(c.GetPositions())[heavy] for c in confs]) if confs else \
        np.zeros((0, len(heavy), 3))


def _label_leaf_groups(skeleton: Chem.Mol) -> list[np.ndarray]:
    """Interchangeable leaves of a heavy-atom skeleton (in place): the degree-1 atoms of one
    neighbour with one element, charge, isotope, radical count and bond type (a CF3 group's F,
    a tert-butyl's methyls, a phosphate's O after :func:`_skeleton`'s symmetrisation). Each
    such group of two or more gets isotope labels ``isotope + _LABEL_STEP * rank`` (rank 1, 2, ... in
    atom order), so that substructure matching maps a group's atoms in one fixed order.
    Returns the groups' atom indices, ``[(k,)]``."""
    groups: dict[tuple, list[int]] = {}
    for atom in skeleton.GetAtoms():
        if atom.GetDegree() == 1:
            bond = atom.GetBonds()[0]
            key = (bond.GetOtherAtomIdx(atom.GetIdx()), atom.GetAtomicNum(), atom.GetFormalCharge(),
                   atom.GetIsotope(), atom.GetNumRadicalElectrons(), bond.GetBondType())
            groups.setdefault(key, []).append(atom.GetIdx())
    out = []
    for members in groups.values():
        if len(members) > 1:
            for rank, idx in enumerate(members, start=1):
                atom = skeleton.GetAtomWithIdx(idx)
                atom.SetIsotope(atom.GetIsotope() + _LABEL_STEP * rank)
            out.append(np.asarray(members, dtype=np.int64))
    return out


def _factorisable(probe: Chem.Mol, ref: Chem.Mol) -> bool:
    """Whether every mapping between two skeletons takes leaf groups onto leaf groups of the
    same labels: RDKit matches a query atom's charge, isotope and radical count only where
    they are nonzero (a neutral O on an O-), a dummy atom's charge never, and an unspecified
    bond to any bond; with equal sorted ``(charge, isotope, radicals)``, no dummy atom, no
    isotope the labels could reach (:data:`_LABEL_STEP`), no atom of over 15 neighbours (a
    label past 16 bits) and no unspecified bond every mapping keeps them all."""
    def properties(mol: Chem.Mol) -> list[tuple[int, int, int]]:
        return sorted((a.GetFormalCharge(), a.GetIsotope(), a.GetNumRadicalElectrons())
                      for a in mol.GetAtoms())

    wildcards = any(a.GetAtomicNum() == 0 or a.GetIsotope() >= _LABEL_STEP or a.GetDegree() > 15
                    for mol in (probe, ref) for a in mol.GetAtoms()) or \
        any(b.GetBondType() == Chem.BondType.UNSPECIFIED for mol in (probe, ref) for b in mol.GetBonds())
    return not wildcards and properties(probe) == properties(ref)


@dataclass(frozen=True)
class AtomMappings:
    """Heavy-atom mappings probe -> reference, factorised: every mapping is a ``core`` row
    with the atoms of each leaf group permuted among themselves in any order.

    Attributes:
        core: ``(m, n)``; row ``k`` maps probe heavy atom ``i`` to reference heavy atom
            ``core[k, i]`` (indices among heavy atoms), each leaf group in one fixed order.
        groups: probe indices of each group of interchangeable leaves, ``[(k_g,)]``.
    """

    core: np.ndarray
    groups: tuple[np.ndarray, ...] = ()

    @property
    def per_core(self) -> int:
        """Leaf permutations per core row: the product of the groups' ``k_g!``."""
        return math.prod(math.factorial(len(g)) for g in self.groups)

    def __len__(self) -> int:
        return len(self.core) * self.per_core

    def blocks(self, size: int) -> Iterator[np.ndarray]:
        """The mappings, ``(<= size, n)`` at a time in core-major order, built as needed."""
        perms = [np.asarray(list(itertools.permutations(range(len(g)))), dtype=np.int64)
                 for g in self.groups]
        for start in range(0, len(self), size):
            rows, combo = np.divmod(np.arange(start, min(start + size, len(self))), self.per_core)
            out = self.core[rows]
            for group, perm in zip(self.groups, perms):
                combo, digit = np.divmod(combo, len(perm))
                out[:, group] = np.take_along_axis(out[:, group], perm[digit], axis=1)
            yield out

    def expand(self) -> np.ndarray:
        """Every mapping, ``(len(self), n)``."""
        return np.concatenate(list(self.blocks(max(1, len(self)))))


def atom_matches(probe: Chem.Mol, ref: Chem.Mol, max_matches: int = MAX_MATCHES) -> AtomMappings:
    """All heavy-atom mappings probe -> reference. Bond types and charges count as in
    ``GetBestRMS``; where they differ between the two (tautomers, charge forms) the mappings
    of the heavy-atom graph alone. Groups of interchangeable leaves (CF3, tert-butyl,
    phosphate) are matched in one order and permuted afterwards, so RDKit enumerates ``m``
    mappings instead of ``m * prod(k_g!)`` (where the two agree in charges, isotopes and
    radicals and have no dummy atom or unspecified bond; else all are enumerated). With more
    than ``max_matches`` mappings, the first ``max_matches`` that RDKit enumerates, as
    ``GetBestRMS`` takes them.

    Raises:
        ValueError: the heavy-atom graphs differ (different molecules).
    """
    for bond_orders in (True, False):
        p, r = _skeleton(probe, bond_orders), _skeleton(ref, bond_orders)
        if p.GetNumAtoms() != r.GetNumAtoms() or p.GetNumBonds() != r.GetNumBonds():
            raise ValueError("molecules differ (heavy-atom or bond counts)")
        p_labelled, r_labelled, groups = p, r, []
        if max_matches > 1 and _factorisable(p, r):     # one mapping: no permutations to skip
            p_labelled, r_labelled = Chem.Mol(p), Chem.Mol(r)
            groups = _label_leaf_groups(p_labelled)
            _label_leaf_groups(r_labelled)
        core = r_labelled.GetSubstructMatches(p_labelled, uniquify=False, useChirality=False,
                                              maxMatches=max_matches)
        if not core:
            continue
        mappings = AtomMappings(np.asarray(core, dtype=np.int64), tuple(groups))
        if len(mappings) > max_matches:
            first = r.GetSubstructMatches(p, uniquify=False, useChirality=False,
                                          maxMatches=max_matches)
            mappings = AtomMappings(np.asarray(first, dtype=np.int64))
        return mappings
    raise ValueError("molecules differ (heavy-atom graphs do not match)")


def _sym3_max_eigval(m: dict[str, torch.Tensor]) -> torch.Tensor:
    """Largest eigenvalue of symmetric 3x3 matrices given by their six entries (``"00"``,
    ``"01"``, ... each ``(...)``), ``(...)``, in closed form (trigonometric solution of the
    characteristic cubic; much faster than batched LAPACK)."""
    q = (m["00"] + m["11"] + m["22"]) / 3
    d0, d1, d2 = m["00"] - q, m["11"] - q, m["22"] - q
    p1 = m["01"] ** 2 + m["02"] ** 2 + m["12"] ** 2
    p = ((d0 * d0 + d1 * d1 + d2 * d2 + 2 * p1) / 6).sqrt()
    det = (d0 * (d1 * d2 - m["12"] ** 2) - m["01"] * (m["01"] * d2 - m["12"] * m["02"])
           + m["02"] * (m["01"] * m["12"] - d1 * m["02"]))       # det(M - q I)
    p3 = p ** 3
    r = torch.where(p3 > 0, det / (2 * p3), 0.0).clamp(-1, 1)   # p = 0: M = q I
    return q + 2 * p * torch.cos(torch.acos(r) / 3)


def _kabsch_rmsd(p: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """RMSD after optimal superposition of every ``p`` ``(P, n, 3)`` on every ``r`` ``(R, n, 3)``
    (both centred), ``(P, R)``: ``E = |p|^2 + |r|^2 - 2 (s1 + s2 + sign(det H) s3)`` with ``s``
    the singular values of the covariance ``H`` (Kabsch with reflection correction).

    Only ``s1`` comes from the eigenvalues of ``H^T H``; ``s2 + sign(det H) s3`` is
    ``sqrt(|H|^2 - s1^2 + 2 det(H) / s1)``, which stays accurate where ``s2`` and ``s3`` are
    near zero (collinear atoms), unlike the square roots of small eigenvalues. ``H`` is held
    entry by entry, ``(P, R)`` each, so that every step runs over contiguous memory."""
    h = torch.einsum("pni,rnj->ijpr", p, r).contiguous()        # (3, 3, P, R)
    hth = {f"{a}{b}": (h[:, a] * h[:, b]).sum(0) for a in range(3) for b in range(a, 3)}
    s1_sq = _sym3_max_eigval(hth).clamp(min=0)
    s1 = s1_sq.sqrt()
    det = (h[0, 0] * (h[1, 1] * h[2, 2] - h[1, 2] * h[2, 1])
           - h[0, 1] * (h[1, 0] * h[2, 2] - h[1, 2] * h[2, 0])
           + h[0, 2] * (h[1, 0] * h[2, 1] - h[1, 1] * h[2, 0]))
    norm_sq = hth["00"] + hth["11"] + hth["22"]                  # |H|^2 = trace(H^T H)
    rest = norm_sq - s1_sq + 2 * det / s1.clamp(min=1e-300)
    trace = s1 + rest.clamp(min=0).sqrt()
    e = (p * p).sum((1, 2))[:, None] + (r * r).sum((1, 2))[None, :] - 2 * trace
    return (e.clamp(min=0) / p.shape[1]).sqrt()


def group_rmsd(probe_xyz: np.ndarray, ref_xyz: np.ndarray, mappings: AtomMappings,
               chunk: int = 65_536) -> np.ndarray:
    """Minimum-over-mappings RMSD matrix ``(P, R)`` of heavy-atom coordinates
    ``probe_xyz`` ``(P, n, 3)`` and ``ref_xyz`` ``(R, n, 3)`` under ``mappings``.

    Mappings are evaluated in blocks of about ``chunk`` (probe, reference, mapping)
    triples, all of a block's superpositions at once."""
    p = torch.as_tensor(probe_xyz, dtype=torch.float64)
    r = torch.as_tensor(ref_xyz, dtype=torch.float64)
    p = p - p.mean(1, keepdim=True)
    r = r - r.mean(1, keepdim=True)
    n_p, n_r = p.shape[0], r.shape[0]
    best = torch.full((n_p, n_r), float("inf"), dtype=torch.float64)
    maps = max(1, chunk // max(1, n_p * n_r))            # mappings per block
    rows = max(1, chunk // max(1, n_r * min(maps, len(mappings))))   # probe conformers per block
    for block in mappings.blocks(maps):
        rm = r[:, torch.from_numpy(block)].reshape(-1, *r.shape[1:])  # (R * mappings, n, 3)
        for j in range(0, n_p, rows):
            pj = p[j:j + rows]
            rmsd = _kabsch_rmsd(pj, rm).view(len(pj), n_r, len(block)).amin(-1)   # n_r may be 0
            best[j:j + rows] = torch.minimum(best[j:j + rows], rmsd)
    return best.numpy()


def rmsd_matrix(probe: Chem.Mol, ref: Chem.Mol, probe_ids: Sequence[int] | None = None,
                ref_ids: Sequence[int] | None = None,
                max_matches: int = MAX_MATCHES) -> np.ndarray:
    """Heavy-atom best RMSD (Å) between conformers of two molecules, ``(P, R)``.

    Same value as ``GetBestRMS(probe, ref, pid, rid)`` for every pair with every hydrogen
    removed (``RemoveHs`` with ``removeDefiningBondStereo`` and isotopes too: plain
    ``RemoveHs`` keeps those hydrogens, and ``GetBestRMS`` after it counts them); the atom
    orders of the two molecules may differ.
    """
    matches = atom_matches(probe, ref, max_matches)
    return group_rmsd(_heavy_positions(probe, probe_ids), _heavy_positions(ref, ref_ids), matches)


def coverage_metrics(rmsd: np.ndarray, threshold: float = 0.75) -> dict[str, float]:
    """COV-R, AMR-R, COV-P, AMR-P from a generated x reference RMSD matrix ``(G, R)``."""
    ref_min, gen_min = rmsd.min(axis=0), rmsd.min(axis=1)
    return {"cov_r": float((ref_min < threshold).mean()), "amr_r": float(ref_min.mean()),
            "cov_p": float((gen_min < threshold).mean()), "amr_p": float(gen_min.mean())}


@dataclass
class ConformerGroup:
    """All conformers of one molecule read from an SDF.

    Attributes:
        key: grouping key (canonical SMILES, name or property value).
        mol: first record kept (its heavy-atom order defines ``xyz``).
        xyz: heavy-atom coordinates of every record kept, ``(K, n, 3)``.
        names: ``_Name`` of each record kept.
        skipped: records of the group left out, ``{reason: records}`` (:data:`SKIP_REASONS`).
    """

    key: str
    mol: Chem.Mol
    xyz: np.ndarray
    names: list[str]
    skipped: dict[str, int] = field(default_factory=dict)


OTHER_MOLECULE, UNREADABLE, NO_HEAVY, NOT_3D, NO_PROPERTY = (
    "other_molecule", "unreadable", "no_heavy_atoms", "not_3d", "no_property")
SKIP_REASONS = {OTHER_MOLECULE: "not the molecule of their group",
                UNREADABLE: "unreadable by RDKit",
                NO_HEAVY: "without heavy atoms (no heavy-atom RMSD)",
                NOT_3D: "without 3D coordinates (2D)",
                NO_PROPERTY: "without the grouping property"}


class Groups(OrderedDict):
    """:func:`read_groups`' conformer groups ``{key: ConformerGroup}``, in file order, and
    the records it left out.

    Attributes:
        records: records in the file.
        ungrouped: records of no group, ``{reason: records}``: those RDKit cannot read (it
            gives none of their properties), those without heavy atoms, those with 2D coordinates (a depiction, no
            conformer) and, grouped by a property, those without it.
        dropped: groups none of whose records was kept, ``{key: {reason: records}}``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.records = 0
        self.ungrouped: dict[str, int] = {}
        self.dropped: dict[str, dict[str, int]] = {}

    def skipped(self) -> dict:
        """The records left out, for a report: ``{"records": records in the file,
        "skipped": {reason: records}, "groups": {key: {"kept": records, reason: records}}}``
        (``groups``: those with records left out, dropped ones with ``kept`` 0)."""
        groups = {key: {"kept": len(g.xyz), **g.skipped} for key, g in self.items() if g.skipped}
        groups.update({key: {"kept": 0, **why} for key, why in self.dropped.items()})
        total = dict(self.ungrouped)
        for row in groups.values():
            for reason, n in row.items():
                if reason != "kept":
                    total[reason] = total.get(reason, 0) + n
        return {"records": self.records, "skipped": total, "groups": groups}


def describe_skipped(summary: dict, examples: int = 3) -> str:
    """One line of :meth:`Groups.skipped`: ``"S of R records skipped: ..."``, with the
    groups that lost most records (at most ``examples``) as ``key: skipped of records``."""
    total = sum(summary["skipped"].values())
    text = f"{total} of {summary['records']} records skipped"
    if not total:
        return text
    lost = {key: sum(row.values()) - row["kept"] for key, row in summary["groups"].items()}
    worst = sorted(lost, key=lost.get, reverse=True)
    shown = [f"{key!r}: {lost[key]} of {lost[key] + summary['groups'][key]['kept']}"
             for key in worst[:examples]]
    if len(worst) > examples:
        more = len(worst) - examples
        shown.append(f"{more} more group{'s' if more > 1 else ''}")
    parts = [f"{n} {SKIP_REASONS.get(reason, reason)}" for reason, n in summary["skipped"].items()]
    return text + ": " + ", ".join(parts) + (f" ({', '.join(shown)})" if shown else "")


def _canonical(smiles: str, isomeric: bool = True) -> str:
    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(mol, isomericSmiles=isomeric) if mol is not None else smiles


def _conformer_rank(mol: Chem.Mol, path: str | Path) -> int:
    """The record's ``conformer`` property as an integer (its rank in its molecule)."""
    value = mol.GetProp("conformer")
    try:
        return int(value)
    except ValueError:
        raise InputFormatError(f"{path}: the 'conformer' property must be an integer "
                               f"(the conformer's rank), got {value!r}") from None


def _is_its_smiles(mol: Chem.Mol) -> bool:
    """Whether a record is the molecule its ``smiles`` property says (one heavy-atom graph,
    :func:`atom_matches`); true without the property, or where RDKit cannot read it."""
    claimed = Chem.MolFromSmiles(mol.GetProp("smiles")) if mol.HasProp("smiles") else None
    if claimed is None:
        return True
    try:
        atom_matches(claimed, mol, max_matches=1)
    except ValueError:
        return False
    return True


def read_groups(path: str | Path, group_by: str = "smiles") -> Groups:
    """Read an SDF (``.sdf`` / ``.sdf.gz``) into conformer groups, in file order.

    ``group_by``: ``smiles`` (canonical isomeric SMILES of the ``smiles`` property, or of
    the record itself when absent), ``name`` (``_Name``) or any record property. Within a
    group records are ordered by their ``conformer`` property when every record has one and
    no two share it, else by file order (repeated ranks: several runs of one molecule, e.g.
    two inputs with one SMILES, kept run after run).

    A group is led by its first record that is the molecule its ``smiles`` property says
    (heavy-atom graph; the first record where records carry none). Records left out are
    counted (:class:`Groups`, :attr:`ConformerGroup.skipped`): those RDKit cannot read;
    those without heavy atoms (H2, an empty record); those whose coordinates RDKit reads as 2D (the molfile says 2D, or no dimension and every
    z is 0: a depiction, whose RMSDs would be scored as a conformer's); grouped by a property,
    those without it; and those that are not the molecule of their
    group, whose heavy-atom graph differs from the leader's. A group none of whose records
    is the molecule its ``smiles`` property says is dropped (:attr:`Groups.dropped`): a
    record of another molecule is no reference for it.

    Raises:
        InputFormatError: a missing file, or a truncated or non-gzip ``.gz``
            (:func:`molscore.chem.io.read_sdf_mols`); a ``conformer`` property that is not
            an integer.
    """
    out = Groups()
    groups: OrderedDict[str, list[Chem.Mol]] = OrderedDict()
    with rdBase.BlockLogs():
        for mol in read_sdf_mols(path):
            out.records += 1
            if mol is None or mol.GetNumConformers() == 0:
                out.ungrouped[UNREADABLE] = out.ungrouped.get(UNREADABLE, 0) + 1
                continue
            if mol.GetNumHeavyAtoms() == 0:
                out.ungrouped[NO_HEAVY] = out.ungrouped.get(NO_HEAVY, 0) + 1
                continue
            if not mol.GetConformer().Is3D():
                out.ungrouped[NOT_3D] = out.ungrouped.get(NOT_3D, 0) + 1
                continue
            if group_by == "smiles":
                key = _canonical(mol.GetProp("smiles")) if mol.HasProp("smiles") else \
                    Chem.MolToSmiles(Chem.RemoveHs(mol))
            elif group_by == "name":
                key = mol.GetProp("_Name")
            else:
                if not mol.HasProp(group_by):
                    out.ungrouped[NO_PROPERTY] = out.ungrouped.get(NO_PROPERTY, 0) + 1
                    continue
                key = mol.GetProp(group_by)
            groups.setdefault(key, []).append(mol)
    for key, mols in groups.items():
        if all(m.HasProp("conformer") for m in mols):
            ranks = [_conformer_rank(m, path) for m in mols]
            if len(set(ranks)) == len(ranks):        # repeated ranks: several runs, file order
                mols = [m for _, m in sorted(zip(ranks, mols), key=lambda pair: pair[0])]
        lead = next((m for m in mols if _is_its_smiles(m)), None)
        if lead is None:
            out.dropped[key] = {OTHER_MOLECULE: len(mols)}
            continue
        xyz, names = [], []
        for m in mols:
            try:
                match = atom_matches(lead, m, max_matches=1).expand()[0]
            except ValueError:
                continue
            xyz.append(_heavy_positions(m)[0][match])
            names.append(m.GetProp("_Name") if m.HasProp("_Name") else "")
        skipped = {OTHER_MOLECULE: len(mols) - len(xyz)} if len(xyz) < len(mols) else {}
        out[key] = ConformerGroup(key, lead, np.stack(xyz), names, skipped)
    return out


def _pair_groups(gen: dict, ref: dict, group_by: str) -> list[tuple[str, str]]:
    """Match generated to reference group keys: exact, then (SMILES) ignoring stereo where
    that is unambiguous (one generated key left unpaired and one reference key, itself not
    paired exactly): a SMILES without stereo with one with it, but also an enantiomer or
    another stereoisomer with the reference molecule (scored as it is, its RMSDs those of
    the other stereoisomer; ``paired_ignoring_stereo`` of the result names such pairs).
    Each reference key is paired at most once."""
    pairs = {key: key for key in gen if key in ref}
    if group_by == "smiles":
        loose_gen: dict[str, list[str]] = {}
        loose_ref: dict[str, list[str]] = {}
        for key in gen:
            if key not in pairs:
                loose_gen.setdefault(_canonical(key, isomeric=False), []).append(key)
        for key in ref:
            loose_ref.setdefault(_canonical(key, isomeric=False), []).append(key)
        for flat, gkeys in loose_gen.items():
            rkeys = loose_ref.get(flat, [])
            if len(gkeys) == 1 and len(rkeys) == 1 and rkeys[0] not in gen:
                pairs[gkeys[0]] = rkeys[0]
    return [(key, pairs[key]) for key in gen if key in pairs]


def _unpaired(gen: dict, paired: list[tuple[str, str]]) -> dict[str, int]:
    """``{key: records}`` of the generated groups paired with no reference molecule."""
    done = {gkey for gkey, _ in paired}
    return {key: len(group.xyz) for key, group in gen.items() if key not in done}


class _Pairs:
    """The generated and reference molecules of two SDF files that an evaluation scores:
    iterating gives ``(reference key, generated group, reference group, atom mappings)`` for
    each pair (:func:`_pair_groups`; ``progress``: a bar named ``desc``), and notes the pairs
    whose atoms differ in :attr:`mismatched` ``{generated key: why}``, left out."""

    def __init__(self, generated: str | Path, reference: str | Path, group_by: str,
                 max_matches: int, progress: bool, desc: str) -> None:
        self.gen, self.ref = read_groups(generated, group_by), read_groups(reference, group_by)
        self.paired = _pair_groups(self.gen, self.ref, group_by)
        self.max_matches, self.progress, self.desc = max_matches, progress, desc
        self.mismatched: dict[str, str] = {}

    def __iter__(self) -> Iterator[tuple[str, ConformerGroup, ConformerGroup, AtomMappings]]:
        for gkey, rkey in tqdm(self.paired, disable=not (self.progress and self.paired),
                               unit="mol", desc=self.desc):
            g, r = self.gen[gkey], self.ref[rkey]
            try:
                mappings = atom_matches(g.mol, r.mol, self.max_matches)
            except ValueError as err:
                self.mismatched[gkey] = str(err)
                continue
            yield rkey, g, r, mappings

    def report(self, rows: list[dict]) -> dict:
        """``missing`` (reference keys without a row of ``rows``), ``unpaired_generated``,
        ``mismatched``, ``paired_ignoring_stereo`` (``{generated key: reference key}`` of the
        pairs scored whose SMILES differ in stereo alone) and ``skipped_records`` of an
        evaluation's result."""
        done = {row["key"] for row in rows}
        return {"missing": [k for k in self.ref if k not in done],
                "unpaired_generated": _unpaired(self.gen, self.paired),
                "mismatched": self.mismatched,
                "paired_ignoring_stereo": {gkey: rkey for gkey, rkey in self.paired
                                           if gkey != rkey and gkey not in self.mismatched},
                "skipped_records": {"generated": self.gen.skipped(), "reference": self.ref.skipped()}}


def summarise(values: Iterable[float]) -> dict[str, float]:
    """Mean and median of a sequence (NaN when empty)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "median": float("nan")}
    return {"mean": float(v.mean()), "median": float(np.median(v))}


def evaluate_coverage(generated: str | Path, reference: str | Path, threshold: float = 0.75,
                      group_by: str = "smiles", max_matches: int = MAX_MATCHES,
                      progress: bool = False) -> dict:
    """GEOM coverage protocol between two SDF files; see the module docstring (``progress``:
    a progress bar over the paired molecules).

    Returns ``{"threshold", "n_molecules", "missing": [ref keys without generated],
    "unpaired_generated": {generated key paired with no reference: its records},
    "mismatched": {generated key paired with a reference molecule of other atoms (left out): why},
    "paired_ignoring_stereo": {generated key scored against a reference key of other stereo},
    "skipped_records": {"generated": ..., "reference": ...} (the records :func:`read_groups`
    left out of each file, :meth:`Groups.skipped`),
    "per_molecule": [{key, n_generated, n_reference, cov_r, amr_r, cov_p, amr_p}],
    "cov_r": {mean, median}, "amr_r": ..., "cov_p": ..., "amr_p": ...}``.
    """
    rows = []
    pairs = _Pairs(generated, reference, group_by, max_matches, progress, "coverage")
    for rkey, g, r, mappings in pairs:
        rmsd = group_rmsd(g.xyz, r.xyz, mappings)
        rows.append({"key": rkey, "n_generated": len(g.xyz), "n_reference": len(r.xyz),
                     **coverage_metrics(rmsd, threshold)})
    out = {"threshold": threshold, "n_molecules": len(rows), **pairs.report(rows),
           "per_molecule": rows}
    for name in ("cov_r", "amr_r", "cov_p", "amr_p"):
        out[name] = summarise(row[name] for row in rows)
    return out


def evaluate_crystal(generated: str | Path, reference: str | Path,
                     ns: Sequence[int] = (1, 10, 50), group_by: str = "smiles",
                     max_matches: int = MAX_MATCHES, progress: bool = False) -> dict:
    """Crystal-conformer reproduction between two SDF files; see the module docstring
    (``progress``: a progress bar over the paired molecules).

    The reference's first record per molecule is the crystal conformer. For each N the
    minimum RMSD over the first N generated conformers (fewer when fewer exist).
    Returns ``{"n_molecules", "missing", "unpaired_generated", "mismatched",
    "paired_ignoring_stereo", "skipped_records"
    (as :func:`evaluate_coverage`),
    "per_molecule": [{key, n_generated, n_reference (reference records kept; only the first
    is scored), min_rmsd: {N: v}}],
    "N=1": {median, frac_below_0.5, frac_below_1.0, frac_below_2.0}, ...}``.
    """
    rows = []
    pairs = _Pairs(generated, reference, group_by, max_matches, progress, "crystal")
    for rkey, g, r, mappings in pairs:
        rmsd = group_rmsd(g.xyz[:max(ns)], r.xyz[:1], mappings)[:, 0]
        rows.append({"key": rkey, "n_generated": len(g.xyz), "n_reference": len(r.xyz),
                     "min_rmsd": {int(n): float(rmsd[:n].min()) for n in ns}})
    out = {"n_molecules": len(rows), **pairs.report(rows), "per_molecule": rows}
    out.update(crystal_summary([row["min_rmsd"] for row in rows], ns))
    return out


def crystal_summary(min_rmsd: Sequence[dict[int, float]], ns: Sequence[int] = (1, 10, 50)) -> dict:
    """Median and fractions under 0.5 / 1 / 2 Å of per-molecule minimum RMSDs, per N."""
    out = {}
    for n in ns:
        v = np.array([row[n] for row in min_rmsd], dtype=np.float64)
        out[f"N={n}"] = {"median": float(np.median(v)) if v.size else float("nan"),
                         **{f"frac_below_{c}": float((v < c).mean()) if v.size else float("nan")
                            for c in (0.5, 1.0, 2.0)}}
    return out
