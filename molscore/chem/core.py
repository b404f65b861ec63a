"""Fixed-atom constraints: a 3D core whose atoms every generated conformer keeps in place.

A core is a molecule fragment with 3D coordinates (its heavy atoms; hydrogens are ignored),
typically the common scaffold of a series posed as in a crystal structure or a docking pose.
It is kept as a substructure query (elements, charges, bond orders with aromatic bonds as
aromatic; a charged core atom needs its charge, a neutral one matches any, so a core matches
protonated forms; not hydrogen counts, so a core cut out of a ligand, its cut bonds left open,
matches the molecules that carry it), the positions of its atoms and, when the core was given
with hydrogens, how many each atom carries. :meth:`Core.match` finds it in a molecule: of
the matches whose stereo agrees with the core's coordinates (the molecule's specified
centres, double bonds and atropisomer axes that the core holds), the one whose atoms carry the core's
hydrogen counts most often (so a ring is not placed rotated or flipped, its substituents
where the core has hydrogens), the first of those; it returns the molecule's atoms with
the positions they must take. When those matches lie at two places of the molecule that no
symmetry of it relates (a phenyl core in 4-chlorobibenzyl, not in biphenyl), the molecule
is refused with a reason that asks for a core that fits one place. ``molscore generate --core``
then embeds the ETKDG pool with those atoms as an RDKit coordinate map, aligns every pool
conformer on them and drops those whose core lies further than :data:`CORE_RMSD_TOL` from
the given one (:meth:`CoreMatch.align`), holds them at the given positions while sampling
(the engine's inpainting mask; the point sets are then not centred) and fixes them in every
force-field step.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign
from rdkit.Geometry import Point3D

from .coords import add_conformer
from .featurize import MoleculeError
from .io import read_sdf_mols
from .stereo import (axis_atoms, axis_tag, bond_order_neighbours, dihedral, specified_axes, specified_centres,
                     specified_double_bonds, stereo_bond_atoms, unspecified_stereo, volume_triples)

__all__ = ["CORE_RMSD_TOL", "CORE_EMBED_TIMEOUT", "Core", "CoreMatch"]

CORE_RMSD_TOL = 0.25
"""Å: ETKDG pool conformers whose core atoms, aligned on the given core, are further (RMSD)
are not used as starts (RDKit's coordinate map holds most within 0.05 Å, and puts some
with a flipped core torsion 1 Å or more away)."""

CORE_EMBED_TIMEOUT = 60
"""Seconds RDKit may spend on one molecule's coordinate-map embedding (``EmbedParameters.timeout``,
which ends the whole ``EmbedMultipleConfs`` call and keeps the conformers made so far): for
some cores it retries without end (a penam's crystal pose: over a minute for 5 conformers,
against 0.2 s without the map)."""

_MAX_MATCHES = 1000
_H_PROP = "_molscore_core_hydrogens"
_FLAT = 0.2    # a core centre's signed volume (unit vectors) below this decides no handedness


@dataclass(frozen=True)
class CoreMatch:
    """The atoms of one molecule that a core fixes.

    Attributes:
        atoms: ``(k,)`` atom indices in the molecule, in the core's atom order.
        positions: ``(k, 3)`` float64 Å, the positions those atoms must take.
    """

    atoms: np.ndarray
    positions: np.ndarray

    def constrain(self, params: AllChem.EmbedParameters) -> None:
        """Set the core atoms as ``params``' coordinate map, with :data:`CORE_EMBED_TIMEOUT`."""
        params.SetCoordMap({int(i): Point3D(*p) for i, p in zip(self.atoms, self.positions)})
        params.timeout = CORE_EMBED_TIMEOUT

    def align(self, mol: Chem.Mol, tol: float = CORE_RMSD_TOL) -> dict[int, float]:
        """Align every conformer of ``mol`` on the core atoms (in place) and remove those
        whose core atoms are then further than ``tol`` Å (RMSD) from :attr:`positions`;
        returns ``{id: core RMSD}`` of the conformers kept, in conformer order."""
        ref = Chem.RWMol()
        for _ in self.atoms:
            ref.AddAtom(Chem.Atom(6))
        ref = ref.GetMol()
        add_conformer(ref, self.positions)
        atom_map = [(int(i), k) for k, i in enumerate(self.atoms)]
        kept = {}
        for cid in [c.GetId() for c in mol.GetConformers()]:
            rmsd = rdMolAlign.AlignMol(mol, ref, prbCid=cid, atomMap=atom_map)
            if rmsd <= tol:
                kept[cid] = rmsd
            else:
                mol.RemoveConformer(cid)
        return kept


class Core:
    """A 3D core: a substructure query ``query`` (``k`` atoms, no hydrogens), the
    positions ``(k, 3)`` float64 Å of its atoms and ``hydrogens``, ``(k,)`` the number of
    hydrogens bonded to each atom where the core was given with hydrogens (else None; used
    only to choose among matches). Build it with :meth:`from_mol`, :meth:`from_file` or
    :meth:`from_text` (:attr:`text` is its exact, lossless form, which
    :class:`~molscore.generate.GenerateOptions` keeps)."""

    def __init__(self, query: Chem.Mol, positions: np.ndarray, hydrogens: np.ndarray | None = None):
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (query.GetNumAtoms(), 3):
            raise ValueError(f"the core has {query.GetNumAtoms()} atoms but positions of shape "
                             f"{positions.shape}")
        if hydrogens is not None:
            hydrogens = np.asarray(hydrogens, dtype=np.int64)
            if hydrogens.shape != (query.GetNumAtoms(),) or (hydrogens < 0).any():
                raise ValueError(f"the core has {query.GetNumAtoms()} atoms but hydrogen counts "
                                 f"{hydrogens.tolist()}")
        if query.GetNumAtoms() < 3:
            raise ValueError(f"the core has {query.GetNumAtoms()} heavy atoms; it needs at least "
                             "3 to fix a pose")
        if not np.isfinite(positions).all():
            raise ValueError("the core's coordinates are not all finite")
        self.query = query
        self.positions = positions
        self.hydrogens = hydrogens

    @classmethod
    def from_mol(cls, mol: Chem.Mol) -> "Core":
        """The heavy atoms of ``mol``, in its atom order (the core's atom order, that of
        :attr:`CoreMatch.atoms`), at its first conformer's (3D) coordinates, with their
        hydrogen counts when ``mol`` has hydrogen atoms.

        Raises:
            ValueError: no conformer, 2D coordinates, or fewer than 3 heavy atoms.
        """
        if mol.GetNumConformers() == 0:
            raise ValueError("the core has no coordinates")
        conf = mol.GetConformer()
        xyz = np.asarray(conf.GetPositions())
        if not conf.Is3D() and np.ptp(xyz[:, 2]) < 1e-4:
            raise ValueError("the core's coordinates are 2D; it needs a 3D pose")
        if any(a.GetAtomicNum() == 0 for a in mol.GetAtoms()):
            raise ValueError("the core has attachment points ('*' or R atoms, element 0): remove "
                             "them (a core's cut bonds are left open anyway)")
        with_hs = any(a.GetAtomicNum() == 1 for a in mol.GetAtoms())
        mol = Chem.Mol(mol, confId=conf.GetId())
        for atom in mol.GetAtoms():
            atom.SetIntProp(_H_PROP, sum(n.GetAtomicNum() == 1 for n in atom.GetNeighbors()))
        heavy = Chem.RWMol(mol)     # every hydrogen (RemoveHs keeps isotopes, unbonded ones)
        for i in sorted((a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 1), reverse=True):
            heavy.RemoveAtom(i)
        for atom in heavy.GetAtoms():     # hydrogen counts, radicals (cut bonds) and stereo
            atom.SetNumRadicalElectrons(0)      # labels are left open: the coordinates say
            atom.SetNoImplicit(True)            # the stereo (see match); isotopes too (13C)
            atom.SetIsotope(0)
            atom.SetNumExplicitHs(0)
            atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
        for bond in heavy.GetBonds():
            bond.SetStereo(Chem.BondStereo.STEREONONE)
        heavy.UpdatePropertyCache(strict=False)
        for atom in heavy.GetAtoms():           # the SMARTS writes its atoms in its own order:
            atom.SetAtomMapNum(atom.GetIdx() + 1)   # the map numbers carry the core's
        query = _in_map_order(Chem.MolFromSmarts(Chem.MolToSmarts(heavy)))
        if query is None or len(heavy.GetSubstructMatch(query)) != heavy.GetNumAtoms():
            raise ValueError("the core cannot be written as a substructure query")
        hydrogens = [atom.GetIntProp(_H_PROP) for atom in heavy.GetAtoms()] if with_hs else None
        return cls(query, np.asarray(heavy.GetConformer().GetPositions()), hydrogens)

    @classmethod
    def from_file(cls, path: str | Path) -> "Core":
        """The first record of an SDF or molfile (``.sdf``, ``.mol``, also gzipped).

        Raises:
            ValueError: as :meth:`from_mol`, or the file holds no readable record
                (:class:`~molscore.chem.io.InputFormatError`, a ``ValueError``, when it is
                missing or unreadable).
        """
        first = next(iter(read_sdf_mols(path)), None)
        if first is None:
            raise ValueError(f"no readable molecule in the core file {path}")
        return cls.from_mol(first)

    @property
    def text(self) -> str:
        """The core as text: its query's SMARTS, then one ``x y z`` line per atom (exact),
        ``x y z h`` with its hydrogen count where :attr:`hydrogens` is known."""
        lines = [" ".join(repr(float(v)) for v in p) for p in self.positions]
        if self.hydrogens is not None:
            lines = [f"{line} {h}" for line, h in zip(lines, self.hydrogens.tolist())]
        return "\n".join([Chem.MolToSmarts(self.query)] + lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> "Core":
        """The core of :attr:`text`.

        Raises:
            ValueError: not such a text.
        """
        lines = text.strip().splitlines()
        query = _in_map_order(Chem.MolFromSmarts(lines[0])) if lines else None
        if query is None:
            raise ValueError("not a core: its first line is not a SMARTS")
        rows = [line.split() for line in lines[1:]]
        width = {len(row) for row in rows}
        if not width <= {3} and width != {4}:
            raise ValueError("not a core: its coordinate lines are not all 'x y z' or all 'x y z h'")
        try:
            positions = np.array([[float(v) for v in row[:3]] for row in rows]).reshape(-1, 3)
            hydrogens = [int(row[3]) for row in rows] if width == {4} else None
        except ValueError:
            raise ValueError("not a core: its coordinate lines are not numbers") from None
        return cls(query, positions, hydrogens)

    def _matches(self, mol: Chem.Mol) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
        """``(every substructure match, those whose stereo agrees)`` in RDKit's order."""
        found = mol.GetSubstructMatches(self.query, uniquify=False, maxMatches=_MAX_MATCHES)
        return list(found), [m for m in found if _stereo_agrees(mol, m, self.positions)]

    def match(self, mol: Chem.Mol) -> CoreMatch:
        """The atoms of ``mol`` the core fixes. Of the substructure matches whose stereo
        agrees with the core's coordinates (every specified centre of ``mol`` that the core
        holds with at least three of its neighbours, every specified double bond it holds
        with a substituent of each of its atoms, every atropisomer axis it holds with its
        reference atoms), the first (in RDKit's order) of those whose
        atoms carry the core's :attr:`hydrogens` counts most often: a core cut out of a ligand
        with its hydrogens then sits on its ligand as it was cut, not rotated or flipped onto
        another symmetric match with substituents where the core has hydrogens. Without
        hydrogen counts, the first agreeing match. Those matches must all lie on the same atoms
        or on atoms that a symmetry of ``mol`` (its stereo kept) maps onto them
        (:func:`_other_place`; a phenyl core in biphenyl), where either gives the same
        conformers: a core that fits two different places is refused rather than put on the
        first that RDKit finds.

        Raises:
            MoleculeError: ``mol`` does not contain the core, or only with other stereo, or at
                two places that are not symmetry-equivalent, or the core holds one of its
                specified stereocentres nearly flat.
        """
        found, agree = self._matches(mol)
        if found and not agree:
            raise MoleculeError("contains the core only with other stereo")
        if not found:
            raise MoleculeError("does not contain the core" + (
                "" if not _skeleton(mol).HasSubstructMatch(_skeleton(self.query)) else
                " (its atoms and bonds are there, with other bond orders, aromaticity or "
                "charges: a ring cut out of an aromatic system can be non-aromatic by itself, "
                "so keep ring substituents such as a C=O in the core; a charged core atom "
                "needs its charge)"))
        if self.hydrogens is not None and len(agree) > 1:
            hits = [sum(mol.GetAtomWithIdx(i).GetTotalNumHs(includeNeighbors=True) == h
                        for i, h in zip(m, self.hydrogens.tolist())) for m in agree]
            agree = [m for m, k in zip(agree, hits) if k == max(hits)]
        best = agree[0]
        other = _other_place(mol, agree)
        if other is not None:
            raise MoleculeError(f"contains the core at two places that are not symmetry-equivalent "
                                f"(atoms {_join(best)} and {_join(other)}): cut the core so that "
                                "it fits one only (larger, or with its hydrogens)")
        flat = [c for c, _, handed in _held_centres(mol, best, self.positions) if abs(handed) < _FLAT]
        if flat:        # held flat, no conformer can have its stereo
            atom = mol.GetAtomWithIdx(flat[0])
            raise MoleculeError(f"the core holds the stereocentre {atom.GetSymbol()}{flat[0]} "
                                "nearly flat, so no conformer can keep its stereo")
        return CoreMatch(np.asarray(best, dtype=np.int64), self.positions.copy())

    def choose_stereo(self, mol: Chem.Mol) -> Chem.Mol:
        """``mol`` with the unspecified stereo elements the core holds assigned as the core's
        coordinates have them: a centre held with at least three of its neighbours and not
        flat there, a double bond held with a substituent of each of its atoms (the elements
        :meth:`match` checks, on the match it picks). Every other element stays unspecified,
        for :func:`~molscore.chem.stereo.isomer_choices` (which tries isomers ETKDG can
        build). ``mol`` itself when the core holds none of them or ``mol`` does not contain
        the core."""
        open_elements = unspecified_stereo(mol)
        if not open_elements:
            return mol
        try:
            match = self.match(mol)
        except MoleculeError:
            return mol
        atoms, held = tuple(match.atoms.tolist()), set(match.atoms.tolist())
        isomer = Chem.Mol(mol)
        assigned = False
        for si in open_elements:
            if si.type == Chem.StereoType.Atom_Tetrahedral and si.centeredOn in held:
                atom = isomer.GetAtomWithIdx(si.centeredOn)
                choices, unset, put = _TAGS, Chem.ChiralType.CHI_UNSPECIFIED, atom.SetChiralTag
            elif si.type == Chem.StereoType.Bond_Double:
                bond = isomer.GetBondWithIdx(si.centeredOn)
                ends = _stereo_atom_choice(isomer, bond, held)
                if ends is None:
                    continue
                bond.SetStereoAtoms(*ends)
                choices, unset, put = _CIS_TRANS, Chem.BondStereo.STEREONONE, bond.SetStereo
            else:
                continue
            agree = []
            for choice in choices:
                put(choice)
                agree.append(_stereo_agrees(isomer, atoms, self.positions))
            put(choices[agree.index(True)] if agree.count(True) == 1 else unset)
            assigned |= agree.count(True) == 1
        if not assigned:
            return mol
        Chem.SetDoubleBondNeighborDirections(isomer)    # as EnumerateStereoisomers does, so
        isomer.ClearComputedProps(includeRings=False)   # that the new labels are kept
        Chem.AssignStereochemistry(isomer, cleanIt=True, force=True, flagPossibleStereoCenters=True)
        return isomer


_TAGS = (Chem.ChiralType.CHI_TETRAHEDRAL_CCW, Chem.ChiralType.CHI_TETRAHEDRAL_CW)
_CIS_TRANS = (Chem.BondStereo.STEREOCIS, Chem.BondStereo.STEREOTRANS)


def _stereo_atom_choice(mol: Chem.Mol, bond: Chem.Bond, held: set[int]) -> tuple[int, int] | None:
    """Stereo atoms for double ``bond`` whose atoms are both in ``held``: a substituent of
    each of its atoms, a held one where there is one; None when an atom is not held or has
    no substituent."""
    i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
    if not {i, j} <= held:
        return None
    ends = []
    for atom, partner in ((i, j), (j, i)):
        subs = sorted((n.GetIdx() for n in mol.GetAtomWithIdx(atom).GetNeighbors() if n.GetIdx() != partner),
                      key=lambda k: k not in held)
        if not subs:
            return None
        ends.append(subs[0])
    return ends[0], ends[1]


def _other_place(mol: Chem.Mol, matches: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The first of ``matches`` (core atom indices in ``mol``) whose atoms no automorphism of
    ``mol`` that keeps its stereo maps onto those of ``matches[0]``, or None. Two sets of atoms
    are so related when ``mol`` with either set marked (atom map number 1) has the same
    canonical isomeric SMILES. Places that only a mirror relates (the halves of a meso
    compound) count as different, which they are for a core fixed in space unless its own
    pose is achiral (a flat ring): then the molecule is refused although either would do."""
    seen = {frozenset(matches[0])}
    first = None
    for match in matches[1:]:
        if frozenset(match) in seen:
            continue
        seen.add(frozenset(match))
        first = first or _marked_smiles(mol, matches[0])
        if _marked_smiles(mol, match) != first:
            return match
    return None


def _marked_smiles(mol: Chem.Mol, atoms: tuple[int, ...]) -> str:
    """Canonical isomeric SMILES of ``mol`` with map number 1 on ``atoms`` and none elsewhere."""
    marked = Chem.Mol(mol)
    for atom in marked.GetAtoms():
        atom.SetAtomMapNum(0)
    for i in atoms:
        marked.GetAtomWithIdx(i).SetAtomMapNum(1)
    return Chem.MolToSmiles(marked)


def _join(atoms: tuple[int, ...]) -> str:
    return ",".join(str(i) for i in sorted(atoms))


def _skeleton(mol: Chem.Mol) -> Chem.Mol:
    """``mol``'s (or a query's) graph of elements joined by single bonds: no charges,
    aromaticity or bond orders, so a match tells whether only those differ."""
    plain = Chem.RWMol()
    for atom in mol.GetAtoms():
        plain.AddAtom(Chem.Atom(atom.GetAtomicNum()))
    for bond in mol.GetBonds():
        plain.AddBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), Chem.BondType.SINGLE)
    plain.UpdatePropertyCache(strict=False)
    return plain.GetMol()


def _in_map_order(query: Chem.Mol | None) -> Chem.Mol | None:
    """``query`` (from a SMARTS, whose atoms come in the order it writes them) with its atoms
    in the order of their map numbers ``1..k`` when they all carry those, the core's atom
    order; the map numbers are then cleared where that order is the SMARTS's own (so
    :attr:`Core.text` has them only where they are needed) and kept otherwise, for the
    SMARTS that :attr:`Core.text` writes. Any other query is returned as it is."""
    if query is None:
        return None
    maps = [atom.GetAtomMapNum() for atom in query.GetAtoms()]
    if sorted(maps) != list(range(1, len(maps) + 1)):
        return query
    order = [int(i) for i in np.argsort(maps)]                 # new atom k = old atom order[k]
    if order == list(range(len(maps))):
        query = Chem.Mol(query)
        for atom in query.GetAtoms():
            atom.SetAtomMapNum(0)
        return query
    return Chem.RenumberAtoms(query, order)


def _held_centres(mol: Chem.Mol, match: tuple[int, ...],
                  positions: np.ndarray) -> list[tuple[int, Chem.ChiralType, float]]:
    """``(centre, tag, handedness)`` of every specified centre of ``mol`` that the core holds
    with at least three of its neighbours: the signed volume of unit vectors to three held
    neighbours in the core's ``positions`` (of the atoms ``match``), positive for a CCW tag's
    handedness; below :data:`_FLAT` in size the centre is near-flat there."""
    pos = np.full((mol.GetNumAtoms(), 3), np.nan)
    pos[list(match)] = positions
    held = set(match)
    out = []
    for centre, tag in specified_centres(mol).items():
        nbrs = bond_order_neighbours(mol, centre)
        known = [k for k, j in enumerate(nbrs) if j in held]
        if centre not in held or len(known) < 3 or len(nbrs) not in (3, 4):
            continue
        trio, sign = next((t, s) for t, s in volume_triples(len(nbrs)) if set(t) <= set(known))
        u = pos[[nbrs[k] for k in trio]] - pos[centre]
        out.append((centre, tag, float(sign * np.linalg.det(
            u / np.linalg.norm(u, axis=1, keepdims=True).clip(min=1e-8)))))
    return out


def _stereo_agrees(mol: Chem.Mol, match: tuple[int, ...], positions: np.ndarray) -> bool:
    """Whether the core's ``positions`` (of the atoms ``match`` of ``mol``) have the
    specified stereo of ``mol`` wherever they decide it (a near-flat centre decides nothing,
    as in :func:`~molscore.chem.stereo.check_stereo`; an atropisomer axis is decided where
    the core holds its four :func:`~molscore.chem.stereo.axis_atoms`)."""
    for _, tag, handed in _held_centres(mol, match, positions):
        if abs(handed) >= _FLAT and (handed > 0) != (tag == Chem.ChiralType.CHI_TETRAHEDRAL_CCW):
            return False
    pos = np.full((mol.GetNumAtoms(), 3), np.nan)
    pos[list(match)] = positions
    held = set(match)
    for bond, label in specified_double_bonds(mol).items():
        quad = stereo_bond_atoms(mol, bond)
        if quad is None or not held.issuperset(quad[1:3]):
            continue
        ends, flips = _held_substituents(mol, quad, held)
        if ends is None:
            continue
        cis = abs(dihedral(pos[[ends[0], quad[1], quad[2], ends[1]]])) < 90
        if (cis != flips) != (label in (Chem.BondStereo.STEREOZ, Chem.BondStereo.STEREOCIS)):
            return False
    return all(axis_tag(pos, mol, bond) == label for bond, label in specified_axes(mol).items()
               if held.issuperset(axis_atoms(mol, bond)))


def _held_substituents(mol: Chem.Mol, quad: tuple[int, int, int, int],
                       held: set[int]) -> tuple[tuple[int, int] | None, bool]:
    """For the double bond of ``quad`` (``stereo_bond_atoms``), a substituent of each of its
    atoms among ``held`` (the stereo atom where held, else the atom's other substituent, which
    lies on the other side) and whether the two together lie on the other side of the stereo
    atoms' (an odd number of other substituents); ``(None, False)`` when an atom has none held."""
    ends, flips = [], False
    for stereo_atom, atom, partner in ((quad[0], quad[1], quad[2]), (quad[3], quad[2], quad[1])):
        if stereo_atom in held:
            ends.append(stereo_atom)
            continue
        others = [n.GetIdx() for n in mol.GetAtomWithIdx(atom).GetNeighbors()
                  if n.GetIdx() not in (partner, stereo_atom)]
        if len(others) != 1 or others[0] not in held:
            return None, False
        ends.append(others[0])
        flips = not flips
    return (ends[0], ends[1]), flips
