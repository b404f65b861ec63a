"""Stereochemistry of generated conformers: check, repair, and choose unspecified stereo.

The reference is the molecule's own stereo annotation (what the SMILES specified):
tetrahedral chiral tags ``CHI_TETRAHEDRAL_CW/CCW`` and double-bond labels
``STEREOE/Z`` (or ``STEREOCIS/TRANS`` relative to the bond's stereo atoms). A centre's
tag is read from the conformer directly (:func:`centre_tag`): with the neighbours in
RDKit's reference order (the atom's bond order), CCW means a positive signed volume
``det(u0, u1, u2)`` of the unit vectors to the first three, for three-coordinate centres
(lone pair) and four-coordinate ones alike. A four-coordinate centre has four such triples,
and with the sign each takes in a regular CCW centre (:func:`centre_volumes`) all four are
positive; the tag is the sign of their sum, so that one triple near zero (a centre close to
a face of its neighbours' tetrahedron, as at the bridgeheads of fused three-membered rings)
does not decide it. This agrees with RDKit's
:func:`rdkit.Chem.AssignAtomChiralTagsFromStructure` at regular centres (near a face RDKit
reads the first three neighbours and can get the tag that ETKDG embedded wrong), and also
covers centres RDKit does not perceive from 3D (three-coordinate P, and quaternary N, whose
tag :func:`rdkit.Chem.AssignStereochemistryFrom3D` clears). E/Z bonds are read with
``AssignStereochemistryFrom3D`` on a copy. Each specified centre must in addition be clearly
non-planar: every signed volume must reach ``flat_tol`` (0.77 for an ideal tetrahedron, 0
when flat) with the tag's sign, except that for a four-coordinate centre in a three- or
four-membered ring, whose correct geometry can put one or two triples near zero or past it
(bridgeheads of fused small rings), their sum must reach ``4 flat_tol`` and none may fall
below ``-3.5 flat_tol``. Centres and bonds that come out wrong one by one but together
give the specified isomer (the same canonical isomeric SMILES: a symmetry of the molecule
inverts them together, as the two centres of a 1,4-disubstituted cyclohexane, or all
centres of a meso compound's mirror image) are correct. An atropisomer axis (a single bond
labelled ``STEREOATROPCW/CCW``, which RDKit reads from a molfile's or CXSMILES's wedge next to
it, and from 3D where a wedge marks it) is read from the sign of the dihedral of RDKit's
reference atoms (:func:`axis_atoms`): CCW when it is negative.

Repair (:func:`fix_stereo`): a conformer whose specified centres are *all* inverted is
the mirror image, so reflecting it (``x -> -x``) restores every centre and leaves
E/Z untouched. Otherwise single inverted centres are flipped locally ("umbrella
inversion": the centre and one terminal neighbour are reflected through the plane
of the other three neighbours, which keeps every bond length to those neighbours).
A conformer whose centres and axes are all wrong is mirrored too
(a mirror image turns every axis); a single wrong axis is not repaired.
Whatever cannot be fixed is reported; :mod:`molscore.generate` resamples such
conformers a bounded number of times and then drops them with the reason.

Unspecified stereo (:func:`assign_unspecified_stereo`; the elements of
:func:`potential_stereo`, a protonated amine N included): one stereoisomer is chosen
deterministically from the seed, the one that an ETKDG embedding without the unspecified
stereo has when ETKDG builds it again, passing over an isomer whose force-field minimum lies
more than :data:`ISOMER_ENERGY_WINDOW` above the lowest of a few such embeddings (else the
first that RDKit's seeded enumeration,
:mod:`rdkit.Chem.EnumerateStereoisomers`, can embed); the chosen isomer becomes the
reference, and its SMILES is what generation records. The isomers that more embeddings
without the unspecified stereo have (:func:`isomers_of_embeddings`) are the alternatives
when ETKDG cannot build the chosen one (:func:`isomer_choices`).
When ETKDG cannot embed a molecule at all, :func:`etkdg_failure_reason` tells whether its
specified stereo is to blame (a copy without stereo embeds).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem
from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

from .coords import set_positions
from .rdkit_log import rdkit_quiet

__all__ = ["StereoReport", "bond_order_neighbours", "stereo_bond_atoms", "centre_tag", "check_stereo",
           "fix_stereo", "mirror_conformer", "invert_centre", "assign_unspecified_stereo",
           "specified_centres", "specified_double_bonds", "has_specified_stereo", "centre_volumes",
           "volume_triples", "dihedral",
           "etkdg_failure_reason", "isomers_of_embeddings", "enumerated_isomer", "unspecified_stereo",
           "isomer_choices", "potential_stereo", "MAX_OTHER_ISOMERS", "OTHER_ISOMER_EMBEDDINGS",
           "ISOMER_ENERGY_WINDOW", "ISOMER_REFERENCE_EMBEDDINGS", "ISOMER_MAX_ITERS",
           "ETKDG_FAILED", "ETKDG_STEREO_FAILED", "assign_pyramidal_centres_from_3d", "reread_centres_from_3d",
           "assign_stereo_from_3d", "non_tetrahedral_centres", "unkept_smiles_stereo", "specified_axes",
           "axis_atoms", "axis_tag"]

ETKDG_FAILED = "ETKDG embedding failed"   # etkdg_failure_reason when the stereo is not to blame
MAX_OTHER_ISOMERS = 3          # isomer_choices: isomers tried after the chosen one ...
OTHER_ISOMER_EMBEDDINGS = 20   # ... read from this many embeddings without the stereo
# kcal/mol: assign_unspecified_stereo passes over an isomer whose force-field minimum lies more
# than this above the lowest reached from 1 + ISOMER_REFERENCE_EMBEDDINGS embeddings without
# the stereo. MMFF94s puts trans-fused bicyclo[4.1.0]heptanes (norcarane, carane) 23.8-28.7
# kcal/mol above cis, while the diastereomers of hydrindane, decalin-like and drug-like
# molecules lie within a few (measured 2026-12-08, docs/generate.md "Unspecified stereo").
ISOMER_ENERGY_WINDOW = 15.0
ISOMER_REFERENCE_EMBEDDINGS = 4
ISOMER_MAX_ITERS = 1000        # minimiser iterations per embedding (as the geometry checks')
ETKDG_STEREO_FAILED = ("ETKDG cannot embed the specified stereo (it embeds without it): "
                       "an impossible or highly strained isomer?")   # ... when it is

_TETRA = (Chem.ChiralType.CHI_TETRAHEDRAL_CW, Chem.ChiralType.CHI_TETRAHEDRAL_CCW)
_EZ = (Chem.BondStereo.STEREOE, Chem.BondStereo.STEREOZ)
_CISTRANS = (Chem.BondStereo.STEREOCIS, Chem.BondStereo.STEREOTRANS)
_CIS = (Chem.BondStereo.STEREOCIS, Chem.BondStereo.STEREOZ)   # labels of a cis dihedral of the stereo atoms
_ATROP = (Chem.BondStereo.STEREOATROPCW, Chem.BondStereo.STEREOATROPCCW)


@dataclass
class StereoReport:
    """Per-conformer stereo verdict (atom / bond indices refer to the molecule).

    Attributes:
        correct_centres: specified tetrahedral centres whose 3D handedness matches.
        inverted_centres: specified centres with the opposite handedness in 3D.
        flat_centres: specified centres too close to planar to carry a handedness.
        flipped_bonds: specified double bonds whose E/Z (or cis/trans) is wrong in 3D.
        wrong_axes: atropisomer axes (bond indices) turned the other way in 3D.
        mirrored: :func:`fix_stereo` reflected the conformer.
        inverted_locally: centres :func:`fix_stereo` flipped one by one.
    """

    correct_centres: list[int] = field(default_factory=list)
    inverted_centres: list[int] = field(default_factory=list)
    flat_centres: list[int] = field(default_factory=list)
    flipped_bonds: list[int] = field(default_factory=list)
    wrong_axes: list[int] = field(default_factory=list)
    mirrored: bool = False
    inverted_locally: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.inverted_centres or self.flat_centres or self.flipped_bonds or self.wrong_axes)

    def reasons(self) -> list[str]:
        """One short string per problem (empty when :attr:`ok`)."""
        out = []
        if self.inverted_centres:
            out.append("inverted stereocentre(s) at atom(s) " + _join(self.inverted_centres))
        if self.flat_centres:
            out.append("near-planar stereocentre(s) at atom(s) " + _join(self.flat_centres))
        if self.flipped_bonds:
            out.append("wrong E/Z at bond(s) " + _join(self.flipped_bonds))
        if self.wrong_axes:
            out.append("wrong atropisomer axis at bond(s) " + _join(self.wrong_axes))
        return out


def _join(idx: list[int]) -> str:
    return ",".join(str(i) for i in idx)


def specified_centres(mol: Chem.Mol) -> dict[int, Chem.ChiralType]:
    """Atoms with a specified tetrahedral chiral tag -> tag."""
    return {a.GetIdx(): a.GetChiralTag() for a in mol.GetAtoms() if a.GetChiralTag() in _TETRA}


def specified_double_bonds(mol: Chem.Mol) -> dict[int, Chem.BondStereo]:
    """Double bonds with a specified E/Z or cis/trans label -> label."""
    return {b.GetIdx(): b.GetStereo() for b in mol.GetBonds()
            if b.GetBondType() == Chem.BondType.DOUBLE and b.GetStereo() in _EZ + _CISTRANS}


def specified_axes(mol: Chem.Mol) -> dict[int, Chem.BondStereo]:
    """Atropisomer axes: single bonds labelled ``STEREOATROPCW`` / ``STEREOATROPCCW`` -> label."""
    return {b.GetIdx(): b.GetStereo() for b in mol.GetBonds() if b.GetStereo() in _ATROP}


def axis_atoms(mol: Chem.Mol, bond_idx: int) -> tuple[int, int, int, int]:
    """``(a, begin, end, d)`` of atropisomer axis ``bond_idx``: RDKit's reference atoms for its
    label (``Atropisomers::getAtropisomerAtomsAndBonds``), the lowest-indexed neighbour of each
    end other than the other end. Looking from ``begin`` to ``end``, ``STEREOATROPCCW`` turns
    ``a``'s direction counter-clockwise into ``d``'s: a negative :func:`dihedral`."""
    bond = mol.GetBondWithIdx(bond_idx)
    begin, end = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
    a = min(n.GetIdx() for n in mol.GetAtomWithIdx(begin).GetNeighbors() if n.GetIdx() != end)
    d = min(n.GetIdx() for n in mol.GetAtomWithIdx(end).GetNeighbors() if n.GetIdx() != begin)
    return a, begin, end, d


def axis_tag(pos: np.ndarray, mol: Chem.Mol, bond_idx: int) -> Chem.BondStereo:
    """Label of atropisomer axis ``bond_idx`` in coordinates ``pos`` ``(N, 3)``, in RDKit's
    convention: ``STEREOATROPCCW`` when the :func:`dihedral` of its :func:`axis_atoms` is
    negative, ``CW`` otherwise (RDKit's own reading from 3D, where it reads one)."""
    negative = dihedral(pos[list(axis_atoms(mol, bond_idx))]) < 0
    return Chem.BondStereo.STEREOATROPCCW if negative else Chem.BondStereo.STEREOATROPCW


def non_tetrahedral_centres(mol: Chem.Mol) -> list[int]:
    """Atoms with a chiral tag that is neither unspecified nor tetrahedral CW / CCW: the
    square-planar, trigonal-bipyramidal and octahedral stereo of a SMILES's ``@SP``, ``@TB``
    and ``@OH`` (which RDKit also reads from the 3D coordinates of a record so tagged or so
    shaped), which neither :func:`check_stereo` nor the restraints know."""
    return [a.GetIdx() for a in mol.GetAtoms()
            if a.GetChiralTag() not in (Chem.ChiralType.CHI_UNSPECIFIED, *_TETRA)]


def unkept_smiles_stereo(smiles: str) -> str | None:
    """Why stereo that the SMILES ``smiles`` writes would not be kept in 3D, or None.

    RDKit's SMILES parser (its legacy stereo perception, molscore's) drops two kinds of
    stereo without a word, whose conformers would then come out with either configuration:

    - the axial stereo of cumulated double bonds: an allene's ``@`` (``CC=[C@]=CC``) and a
      cumulene's E/Z marks (``C/C=C=C=C/C``), which no RDKit perception keeps; marks on a
      chain with two alike substituents at an end (``CC(C)=[C@]=CC``) are no stereo, and
      ignored as RDKit ignores them;
    - stereo that the new perception keeps and the legacy one drops: a spiro centre between
      two disubstituted rings, an alkylidene ring's double bond (``C/C=C1/C[C@H](C)C1``), an
      exocyclic imine's on an aromatic ring with a mark on the ring closure
      (``[H]/N=c/1/ccc(CC)no1``, whose marks the legacy one reads as conflicting); where the new
      perception's reading is not its own fixed point (its SMILES read again loses a centre,
      as a tag on a ring atom that only another, meaningless tag made a centre, as in
      ``CC1(C)CC(N[C@H]2CC(C)(C)N[C@@](C)(C)C2)CC(C)(C)N1``), nothing is said.

    The SMILES is assumed to parse. Returns a one-line reason naming the atoms (0-based, as
    written) and the double bonds (their atoms) that carry such stereo.
    """
    with rdBase.BlockLogs():        # RDKit's warnings on the marks it drops
        raw = Chem.MolFromSmiles(smiles, sanitize=False)
        legacy = Chem.MolFromSmiles(smiles)          # same atoms, same order
        ranks = list(Chem.CanonicalRankAtoms(legacy, breakTies=False))
        axial = [f"{ends[0]}-{ends[1]}" for chain, ends in _cumulated_chains(legacy)
                 if _marked(raw, chain, ends)
                 and all(_stereogenic_end(legacy, end, chain, ranks) for end in ends)]
        if axial:
            return (f"axial stereo of cumulated double bonds (from atom to atom: {', '.join(axial)}) is "
                    f"not kept in 3D (RDKit reads none): give the molecule without it")
        with _legacy_stereo_perception(False):
            new = Chem.MolFromSmiles(smiles)
            written = Chem.MolToSmiles(new)
            if Chem.MolToSmiles(Chem.MolFromSmiles(written)) != written:
                return None     # not the new perception's fixed point: its reading is no firmer
        centres = sorted(set(specified_centres(new)) - set(specified_centres(legacy)))
        bonds = [new.GetBondWithIdx(idx) for idx in
                 sorted(set(specified_double_bonds(new)) - set(specified_double_bonds(legacy)))]
        if not centres and not bonds:
            return None
        where = ([f"atom(s) {','.join(map(str, centres))}"] if centres else []) + (
            [f"double bond(s) {','.join(f'{b.GetBeginAtomIdx()}-{b.GetEndAtomIdx()}' for b in bonds)}"]
            if bonds else [])
        return (f"stereo at {' and '.join(where)} is dropped by RDKit's legacy stereo perception "
                f"(molscore's; its new one keeps it), so it would not be kept in 3D: give the "
                f"molecule without it")


def _cumulated_chains(mol: Chem.Mol) -> list[tuple[set[int], tuple[int, int]]]:
    """Each chain of cumulated double bonds of ``mol`` (an allene's three atoms, a
    butatriene's four): its atoms and its two ends."""
    inner = [a.GetIdx() for a in mol.GetAtoms() if len(_double_bonded(mol, a.GetIdx())) == 2]
    chains, seen = [], set()
    for start in inner:
        if start in seen:
            continue
        chain, todo = {start}, [start]
        while todo:
            for nbr in _double_bonded(mol, todo.pop()):
                if nbr not in chain:
                    chain.add(nbr)
                    if len(_double_bonded(mol, nbr)) == 2:
                        todo.append(nbr)
        seen |= chain
        ends = tuple(sorted(i for i in chain if len(_double_bonded(mol, i)) == 1))
        if len(ends) == 2:                                  # not a ring of double bonds
            chains.append((chain, ends))
    return chains


def _marked(raw: Chem.Mol, chain: set[int], ends: tuple[int, int]) -> bool:
    """Whether the unsanitised SMILES parse ``raw`` gives the chain stereo: a chiral tag on an
    inner atom or an up/down bond at an end."""
    return any(raw.GetAtomWithIdx(i).GetChiralTag() in _TETRA for i in chain - set(ends)) or any(
        b.GetBondDir() in (Chem.BondDir.ENDUPRIGHT, Chem.BondDir.ENDDOWNRIGHT)
        for end in ends for b in raw.GetAtomWithIdx(end).GetBonds())


def _stereogenic_end(mol: Chem.Mol, end: int, chain: set[int], ranks: list[int]) -> bool:
    """Whether chain end ``end`` has two unlike substituents (by canonical rank without ties
    broken; a hydrogen and a heavy atom are unlike)."""
    atom = mol.GetAtomWithIdx(end)
    heavy = [ranks[n.GetIdx()] for n in atom.GetNeighbors() if n.GetIdx() not in chain]
    return len(heavy) + atom.GetTotalNumHs() == 2 and (len(heavy) == 1 or heavy[0] != heavy[1])


def _double_bonded(mol: Chem.Mol, idx: int) -> list[int]:
    """The atoms that atom ``idx`` of ``mol`` has a double bond to."""
    return [b.GetOtherAtomIdx(idx) for b in mol.GetAtomWithIdx(idx).GetBonds()
            if b.GetBondType() == Chem.BondType.DOUBLE]


@contextmanager
def _legacy_stereo_perception(legacy: bool) -> Iterator[None]:
    """RDKit's (process-wide) choice of stereo perception set to ``legacy`` inside, restored after."""
    before = Chem.GetUseLegacyStereoPerception()
    Chem.SetUseLegacyStereoPerception(legacy)
    try:
        yield
    finally:
        Chem.SetUseLegacyStereoPerception(before)


def has_specified_stereo(mol: Chem.Mol) -> bool:
    """Whether ``mol`` specifies a tetrahedral centre or a double bond's stereo. Atropisomer
    axes (:func:`specified_axes`) do not count: its callers ask whether ETKDG may fail for the
    stereo and whether a copy without stereo (``Chem.RemoveStereochemistry``, which keeps the
    axes) embeds, and ETKDG builds an axis it is given (BINOL: 30 of 30 right); RDKit labels
    acyclic bonds only, so the isomers of a molecule whose only stereo is its axes differ by
    rotations about single bonds, which ETKDG builds whenever it builds the molecule."""
    return bool(specified_centres(mol) or specified_double_bonds(mol))


def _positions(mol: Chem.Mol, conf_id: int) -> np.ndarray:
    return np.asarray(mol.GetConformer(conf_id).GetPositions(), dtype=np.float64)


def centre_volumes(pos: np.ndarray, centre: int, neighbours: list[int]) -> np.ndarray:
    """Signed volumes of the unit vectors ``u`` from ``centre`` to its ``neighbours``.

    ``pos`` is ``(N, 3)``; ``neighbours`` in the atom's bond order (RDKit's reference order
    for its chiral tag). Three neighbours: ``[det(u0, u1, u2)]``. Four: one volume per triple,
    the one without neighbour ``m`` times ``(-1)^(m + 1)``, so that all four are positive
    (0.77 each for an ideal tetrahedron) in a CCW centre and negative in a CW one; they agree
    in sign while the centre lies inside the tetrahedron of its neighbours' directions.
    """
    if len(neighbours) not in (3, 4):
        raise ValueError(f"a stereocentre has 3 or 4 neighbours, atom {centre} has {len(neighbours)}")
    u = pos[neighbours] - pos[centre]
    u = u / np.linalg.norm(u, axis=1, keepdims=True).clip(min=1e-8)
    return np.array([sign * np.linalg.det(u[list(trio)]) for trio, sign in volume_triples(len(neighbours))])


def volume_triples(num_neighbours: int) -> list[tuple[tuple[int, int, int], int]]:
    """The neighbour triples (positions in bond order) of :func:`centre_volumes` and the sign
    each volume gets, so that all are positive in a CCW centre: ``[((0, 1, 2), 1)]`` for three
    neighbours; for four, the triple without neighbour ``m`` with ``(-1)^(m + 1)``."""
    if num_neighbours == 3:
        return [((0, 1, 2), 1)]
    return [(tuple(k for k in range(4) if k != m), (-1) ** (m + 1)) for m in range(4)]


def bond_order_neighbours(mol: Chem.Mol, centre: int) -> list[int]:
    """The neighbours of atom ``centre`` in its bond order: RDKit's reference order for its
    chiral tag, the order :func:`centre_volumes` takes."""
    return [b.GetOtherAtomIdx(centre) for b in mol.GetAtomWithIdx(centre).GetBonds()]


def stereo_bond_atoms(mol: Chem.Mol, bond_idx: int) -> tuple[int, int, int, int] | None:
    """``(stereo atom, begin, end, stereo atom)`` of double bond ``bond_idx``: their dihedral
    is below 90 degrees for cis, above for trans (for ``STEREOE`` / ``STEREOZ`` the stereo
    atoms are the CIP-highest neighbours, so Z is cis). None when the bond has no stereo atoms."""
    bond = mol.GetBondWithIdx(bond_idx)
    stereo_atoms = list(bond.GetStereoAtoms())
    if len(stereo_atoms) != 2:
        return None
    return stereo_atoms[0], bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), stereo_atoms[1]


def centre_tag(pos: np.ndarray, mol: Chem.Mol, centre: int) -> Chem.ChiralType:
    """Chiral tag of atom ``centre`` in coordinates ``pos`` ``(N, 3)``, in RDKit's convention:
    ``CHI_TETRAHEDRAL_CCW`` when the :func:`centre_volumes` sum to a positive number (for
    three neighbours, ``det(u0, u1, u2) > 0``), ``CW`` otherwise."""
    return _tag(centre_volumes(pos, centre, bond_order_neighbours(mol, centre)))


def assign_stereo_from_3d(mol: Chem.Mol, conf_id: int = -1) -> None:
    """Every stereo element of ``mol`` read from conformer ``conf_id``, in place, as
    :func:`~molscore.chem.featurize.prepare_mol` reads a 3D record: RDKit's
    ``Chem.AssignStereochemistryFrom3D``, four-coordinate centres again from all four signed
    volumes (:func:`reread_centres_from_3d`), and pyramidal P and N centres
    (:func:`assign_pyramidal_centres_from_3d`)."""
    Chem.AssignStereochemistryFrom3D(mol, confId=conf_id)
    reread_centres_from_3d(mol, conf_id)
    assign_pyramidal_centres_from_3d(mol, conf_id)


def assign_pyramidal_centres_from_3d(mol: Chem.Mol, conf_id: int = -1,
                                     flat_tol: float = 0.2) -> list[int]:
    """Chiral tags, from conformer ``conf_id``, of the three-coordinate centres that
    ``Chem.AssignStereochemistryFrom3D`` leaves unspecified although RDKit counts them as
    stereocentres (a phosphine's P, the nitrogen of an aziridine or of Tröger's base); in
    place, after that function. A centre is tagged only when it is clearly pyramidal (signed
    volume of its unit bond vectors at least ``flat_tol``) and RDKit keeps the tag.

    Returns:
        the atoms tagged.
    """
    pos = _positions(mol, conf_id)
    tagged = []
    for si in Chem.FindPotentialStereo(mol):
        # a double bond's centeredOn is a bond index: read it as an atom only for a centre
        if si.type != Chem.StereoType.Atom_Tetrahedral or si.specified != Chem.StereoSpecified.Unspecified:
            continue
        atom = mol.GetAtomWithIdx(si.centeredOn)
        if atom.GetDegree() != 3:
            continue
        vols = centre_volumes(pos, atom.GetIdx(), bond_order_neighbours(mol, atom.GetIdx()))
        if abs(float(vols[0])) >= flat_tol:
            atom.SetChiralTag(_tag(vols))
            tagged.append(atom.GetIdx())
    if tagged:
        Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    return [i for i in tagged if mol.GetAtomWithIdx(i).GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED]


def reread_centres_from_3d(mol: Chem.Mol, conf_id: int = -1) -> list[int]:
    """The chiral tags of the four-coordinate centres of ``mol`` read again from conformer
    ``conf_id`` with :func:`centre_tag` (the sign of the sum of their four signed volumes), in
    place, after ``Chem.AssignStereochemistryFrom3D``. RDKit reads a centre from its first three
    neighbours only, so a centre whose four volumes do not share one sign (close to a face of
    its neighbours' tetrahedron: bridgeheads of fused three-membered rings, distorted centres
    of experimental structures) got the tag that the neighbour last in its bond order gave,
    another for the same coordinates in another atom order.

    Returns:
        the atoms whose tag changed.
    """
    pos = _positions(mol, conf_id)
    changed = []
    for idx, tag in specified_centres(mol).items():
        if mol.GetAtomWithIdx(idx).GetDegree() == 4 and (read := centre_tag(pos, mol, idx)) != tag:
            mol.GetAtomWithIdx(idx).SetChiralTag(read)
            changed.append(idx)
    if changed:
        Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    return changed


def _tag(vols: np.ndarray) -> Chem.ChiralType:
    return Chem.ChiralType.CHI_TETRAHEDRAL_CCW if vols.sum() > 0 else Chem.ChiralType.CHI_TETRAHEDRAL_CW


def _clearly_handed(vols: np.ndarray, small_ring: bool, tol: float) -> bool:
    """Every signed volume at least ``tol`` with the sign of their sum. A four-coordinate
    centre in a three- or four-membered ring needs only their sum to reach ``4 tol`` and
    none below ``-3.5 tol``: that sum is the signed volume of the tetrahedron of its
    neighbours' directions, the handedness whatever the centre's place, and the bridgeheads of
    fused small rings lie just outside that tetrahedron, so one or two of their volumes are
    small or of the other sign (in ETKDG's own embeddings of GEOM's QM9 cages: -0.38 and
    +0.10 beside 0.73 and 0.62; at the MMFF94 minimum of bicyclobutanes -0.43 to -0.51), but
    not far past it (all bonds in one hemisphere)."""
    signed = vols * np.sign(vols.sum())
    if bool((signed >= tol).all()):
        return True
    return (small_ring and len(vols) == 4 and float(signed.sum()) >= 4 * tol
            and float(signed.min()) >= -3.5 * tol)


def dihedral(p: np.ndarray) -> float:
    """Dihedral angle (degrees) of four points ``(4, 3)``."""
    b0, b1, b2 = p[0] - p[1], p[2] - p[1], p[3] - p[2]
    b1 = b1 / max(np.linalg.norm(b1), 1e-8)
    v = b0 - b0.dot(b1) * b1
    w = b2 - b2.dot(b1) * b1
    return float(np.degrees(np.arctan2(np.cross(b1, v).dot(w), v.dot(w))))


def check_stereo(mol: Chem.Mol, conf_id: int = -1, *, flat_tol: float = 0.2) -> StereoReport:
    """Compare the stereo of conformer ``conf_id`` with the molecule's own annotation.

    Args:
        mol: molecule with explicit hydrogens, stereo assigned, and conformers.
        conf_id: conformer to check.
        flat_tol: smallest acceptable :func:`centre_volumes` of a specified centre (with
            the tag's sign; see the module docstring for centres in small rings).

    Inverted centres and flipped bonds that, all together, leave the specified isomer
    (:func:`_same_isomer`) count as correct. An atropisomer axis is wrong when its
    :func:`axis_tag` is not its label.
    """
    centres = specified_centres(mol)
    bonds = specified_double_bonds(mol)
    axes = specified_axes(mol)
    report = StereoReport()
    if not centres and not bonds and not axes:
        return report
    conf_id = mol.GetConformer(conf_id).GetId()
    pos = _positions(mol, conf_id)
    rings = mol.GetRingInfo()
    for idx, tag in centres.items():
        nbrs = bond_order_neighbours(mol, idx)
        small_ring = rings.IsAtomInRingOfSize(idx, 3) or rings.IsAtomInRingOfSize(idx, 4)
        vols = centre_volumes(pos, idx, nbrs) if len(nbrs) in (3, 4) else None
        if vols is None or not _clearly_handed(vols, small_ring, flat_tol):
            report.flat_centres.append(idx)
        elif _tag(vols) == tag:
            report.correct_centres.append(idx)
        else:
            report.inverted_centres.append(idx)
    if bonds:
        copy = Chem.Mol(mol, False, conf_id)
        Chem.AssignStereochemistryFrom3D(copy, confId=conf_id)
    for idx, label in bonds.items():
        got = copy.GetBondWithIdx(idx).GetStereo()
        # cis/trans, or E/Z read back as cis/trans (RDKit's perception switched since mol was
        # parsed): the dihedral of the stereo atoms, which for E/Z are the CIP-highest
        if label in _EZ and got in _EZ:
            ok = got == label
        else:
            quad = pos[list(stereo_bond_atoms(mol, idx))]
            ok = (abs(dihedral(quad)) < 90) == (label in _CIS)
        if not ok:
            report.flipped_bonds.append(idx)
    report.wrong_axes = [idx for idx, label in axes.items() if axis_tag(pos, mol, idx) != label]
    if (report.inverted_centres or report.flipped_bonds) and _same_isomer(mol, report):
        report.correct_centres = [idx for idx in centres if idx not in report.flat_centres]
        report.inverted_centres, report.flipped_bonds = [], []
    return report


_FLIPPED = {Chem.BondStereo.STEREOE: Chem.BondStereo.STEREOZ, Chem.BondStereo.STEREOZ: Chem.BondStereo.STEREOE,
            Chem.BondStereo.STEREOCIS: Chem.BondStereo.STEREOTRANS,
            Chem.BondStereo.STEREOTRANS: Chem.BondStereo.STEREOCIS}


def _same_isomer(mol: Chem.Mol, report: StereoReport) -> bool:
    """Whether ``mol`` with the ``report``'s inverted centres and flipped bonds as the conformer
    has them is still the isomer ``mol`` specifies (the same canonical isomeric SMILES): they
    are then a relabelling by a symmetry of the molecule, not wrong stereo. The two centres of
    a cis- or trans-1,4-disubstituted cyclohexane, a meso compound's centres (the mirror image
    of a conformer of cis-1,2-dimethylcyclopropane or of meso-2,3,4-trihydroxyglutaric acid,
    pseudo-asymmetric centre included) invert together without changing the isomer: the ring
    neighbours (or the chains) that the tags order are equivalent.

    The SMILES must agree both with the molecule's explicit hydrogens and without them:
    RDKit's canonical SMILES with them wrote one string for two diastereomers of a cage
    (``CN1C[C@]12[C@@H]1[C@H]3C[C@@H]1[C@H]32`` with its four CH centres inverted, which
    the form without hydrogens and the centres read from 3D tell apart); a molecule whose
    hydrogens RDKit cannot remove is not the same isomer."""
    seen = Chem.Mol(mol, True)
    for idx in report.inverted_centres:
        seen.GetAtomWithIdx(idx).InvertChirality()
    for idx in report.flipped_bonds:
        bond = seen.GetBondWithIdx(idx)
        bond.SetStereo(_FLIPPED[bond.GetStereo()])
    reference = Chem.Mol(mol, True)
    try:
        pairs = [(seen, reference), (Chem.RemoveHs(seen), Chem.RemoveHs(reference))]
    except Exception:  # noqa: BLE001 - RDKit raises several sanitisation errors
        return False
    return all(_isomer_smiles(a) == _isomer_smiles(b) for a, b in pairs)


def _isomer_smiles(mol: Chem.Mol) -> str:
    """Canonical isomeric SMILES of ``mol`` (changed in place) with its double bonds written
    from their stereo labels, not from the bond directions they were parsed with."""
    Chem.SetDoubleBondNeighborDirections(mol)
    return Chem.MolToSmiles(mol)


def mirror_conformer(mol: Chem.Mol, conf_id: int = -1) -> None:
    """Reflect conformer ``conf_id`` in place (``x -> -x``): every centre inverts, E/Z stays."""
    conf = mol.GetConformer(conf_id)
    pos = np.asarray(conf.GetPositions())
    pos[:, 0] *= -1
    set_positions(conf, pos)


def invert_centre(mol: Chem.Mol, atom_idx: int, conf_id: int = -1) -> bool:
    """Umbrella-flip one stereocentre in place; returns False when no local flip exists.

    The centre and (for four neighbours) its lightest terminal neighbour are reflected
    through the plane of the other three neighbours; distances to those three are
    unchanged. Needs three non-moving neighbours, so only centres with three
    neighbours, or four of which at least one is terminal, can be flipped.
    """
    atom = mol.GetAtomWithIdx(atom_idx)
    nbrs = list(atom.GetNeighbors())
    if len(nbrs) == 4:
        terminal = [n for n in nbrs if n.GetDegree() == 1]
        if not terminal:
            return False
        moving = [atom_idx, min(terminal, key=lambda n: n.GetMass()).GetIdx()]
        plane = [n.GetIdx() for n in nbrs if n.GetIdx() != moving[1]]
    elif len(nbrs) == 3:
        moving, plane = [atom_idx], [n.GetIdx() for n in nbrs]
    else:
        return False
    conf = mol.GetConformer(conf_id)
    pos = np.asarray(conf.GetPositions())
    normal = np.cross(pos[plane[1]] - pos[plane[0]], pos[plane[2]] - pos[plane[0]])
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        return False
    normal /= norm
    for i in moving:
        p = pos[i] - 2 * (pos[i] - pos[plane[0]]).dot(normal) * normal
        conf.SetAtomPosition(i, p.tolist())
    return True


def fix_stereo(mol: Chem.Mol, conf_id: int = -1, *, flat_tol: float = 0.2) -> StereoReport:
    """Check conformer ``conf_id`` and repair it in place where possible.

    All specified centres inverted and all atropisomer axes wrong (one of the two kinds may be
    absent) -> mirror the conformer. Otherwise each centre still
    inverted is umbrella-flipped (:func:`invert_centre`), in atom order; a flip is kept only if
    the centre comes out correct. (A centre that an earlier flip made right, as a pair
    that :func:`check_stereo` accepts inverted together, is left alone.) Flat centres, wrong E/Z
    bonds and axes wrong beside right ones or right centres are not repaired here.
    Returns the report after repair (``mirrored`` / ``inverted_locally`` say what was done).
    """
    report = check_stereo(mol, conf_id, flat_tol=flat_tol)
    if not report.inverted_centres and not report.wrong_axes:
        return report
    if not report.correct_centres and not report.flat_centres \
            and len(report.wrong_axes) == len(specified_axes(mol)):
        mirror_conformer(mol, conf_id)
        after = check_stereo(mol, conf_id, flat_tol=flat_tol)
        after.mirrored = True
        return after
    if not report.inverted_centres:
        return report
    conf = mol.GetConformer(conf_id)
    flipped = []
    for idx in report.inverted_centres:
        if idx not in check_stereo(mol, conf_id, flat_tol=flat_tol).inverted_centres:
            continue            # right since an earlier flip (the rest of a symmetric pair)
        before = np.asarray(conf.GetPositions())
        if invert_centre(mol, idx, conf_id):
            if idx in check_stereo(mol, conf_id, flat_tol=flat_tol).correct_centres:
                flipped.append(idx)
                continue
            set_positions(conf, before)
    after = check_stereo(mol, conf_id, flat_tol=flat_tol)
    after.inverted_locally = flipped
    return after


def assign_unspecified_stereo(mol: Chem.Mol, seed: int | None = 0,
                              window: float | None = ISOMER_ENERGY_WINDOW) -> Chem.Mol:
    """Return ``mol`` with every unspecified stereocentre / stereo double bond assigned (those
    of :func:`potential_stereo`, which RDKit also reads from 3D, a ring's cis/trans pair and
    a spiro atom's included; not the E/Z of a cumulene or an alkylidenecycloalkane's axial
    chirality). A protonated amine N with three different substituents (``[NH+]``) is such a
    centre and gets one configuration like any other: it inverts only by losing its proton,
    which generation does not model (the protonation state is the input's), and GEOM's SMILES
    write one (``[N@H+]``); for both, give both isomers. A neutral amine N is no centre (but
    for the aziridine and bridgehead nitrogens RDKit counts), so it takes either hand in each
    conformer.

    The isomer is the one an ETKDGv3 embedding of ``mol`` from random coordinates has
    (:func:`_isomer_of_an_embedding`, ``randomSeed`` ``seed + 1``; ``seed=None`` counts as
    0), unless its force-field minimum lies more than ``window`` kcal/mol above the lowest of
    ``1 +`` :data:`ISOMER_REFERENCE_EMBEDDINGS` such embeddings (where an unspecified element
    lies in a ring; then the first of them whose isomer lies within; ``window=None``: no such
    check, the rule until 2026-12-08), when ETKDG embeds that isomer again with its stereo
    (:func:`_embeds`): a choice
    drawn from the seed among the isomers the molecule can take, where enumerating them
    would try impossible ones too (the inverted bridgehead nitrogen of a fused aziridine or
    azetidine, an inverted adamantane bridgehead: each failed embedding costs seconds).
    Otherwise (strained cages: 21 of 300 stereo-stripped GEOM and training SMILES in a
    development check, nearly all QM9), the
    first isomer that RDKit's enumeration in seeded random order can embed
    (:func:`enumerated_isomer`); when that embeds none (it starts from eigenvector
    coordinates, which fail for some cages), the isomer of the embedding all the same; the
    molecule comes back unassigned only when that did not embed either. The centres that
    RDKit's enumeration misses (those :func:`potential_stereo` finds only without hydrogens)
    the enumerated isomer takes from an embedding of it, when one embeds. Specified stereo and
    the atom order are kept. A molecule without unspecified stereo is returned unchanged
    (same object).
    """
    if not unspecified_stereo(mol):
        return mol
    with rdkit_quiet():
        embedded = _isomer_of_an_embedding(mol, seed, window)
        if embedded is not None and _embeds(embedded, seed):
            return embedded
        enumerated = enumerated_isomer(mol, seed)
        if enumerated is not None and unspecified_stereo(enumerated):
            enumerated = _isomer_of_an_embedding(enumerated, seed) or enumerated
        return enumerated or embedded or mol


def isomer_choices(mol: Chem.Mol, seed: int | None, others: int = MAX_OTHER_ISOMERS,
                   embeddings: int = OTHER_ISOMER_EMBEDDINGS) -> Iterator[Chem.Mol]:
    """The isomers to try for ``mol``'s unspecified stereo, best first, for a caller that
    takes the first ETKDG builds: :func:`assign_unspecified_stereo`'s, then up to ``others``
    more, those that ``embeddings`` ETKDG embeddings without that stereo have, the most
    frequent first (:func:`isomers_of_embeddings`, run only when the first is refused).
    Only ``mol`` itself (same object) when it has no unspecified stereo."""
    chosen = assign_unspecified_stereo(mol, seed)
    yield chosen
    if chosen is mol:
        return
    tried = {Chem.MolToSmiles(chosen)}
    for other in isomers_of_embeddings(mol, seed, embeddings):
        if len(tried) > others:
            return
        if (smiles := Chem.MolToSmiles(other)) not in tried:
            tried.add(smiles)
            yield other


def unspecified_stereo(mol: Chem.Mol) -> list[Chem.StereoInfo]:
    """The potential stereo elements of ``mol`` (:func:`potential_stereo`) left
    unspecified, those marked unknown included (a molfile's wavy bond at a centre or crossed
    double bond: ``StereoSpecified.Unknown``), so that they too get one isomer."""
    return [si for si in potential_stereo(mol) if si.specified in _OPEN]


_OPEN = (Chem.StereoSpecified.Unspecified, Chem.StereoSpecified.Unknown)
_INDEX = "_molscore_index"


def potential_stereo(mol: Chem.Mol) -> list[Chem.StereoInfo]:
    """RDKit's ``FindPotentialStereo`` of ``mol`` and, for a molecule with explicit hydrogens,
    the tetrahedral centres it finds only in the copy without them (``Chem.RemoveHs``), with
    their atom indices those of ``mol`` (their ``controllingAtoms`` without hydrogens).

    With explicit hydrogens RDKit 2026.09 misses the cis/trans pair of a spiro atom and the
    atom across a four- or six-membered ring from it when the spiro atom's other ring has five
    or seven atoms (of the sizes tried; three, four and six are found), which its legacy
    perception reads from 3D all the same: atoms 1 and 4 of ``OC1CCC2(CC1)NC(=O)NC2=O``, the
    spiro C and the N of GEOM-DRUGS's
    ``CC(C)N1C(=O)CC2(CC[NH+](CCOC(=O)C(O)(c3ccccc3)c3ccccc3)CC2)C1=O``. Without them it
    misses the nitrogen of an N-H aziridine. Of 2,000 GEOM test SMILES (drugs and QM9), the
    2,395 training SMILES and 4,480 crystal, hexane and GEOM-DRUGS molecules without their
    stereo, only such pairs (in 2 GEOM-DRUGS molecules) are added.
    """
    found = list(Chem.FindPotentialStereo(mol))
    if not any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()):
        return found
    heavy = Chem.Mol(mol)
    for atom in heavy.GetAtoms():
        atom.SetIntProp(_INDEX, atom.GetIdx())
    heavy = Chem.RemoveHs(heavy)
    index = [atom.GetIntProp(_INDEX) for atom in heavy.GetAtoms()]
    seen = {si.centeredOn for si in found if si.type == Chem.StereoType.Atom_Tetrahedral}
    for si in Chem.FindPotentialStereo(heavy):
        if si.type == Chem.StereoType.Atom_Tetrahedral and index[si.centeredOn] not in seen:
            si.centeredOn = index[si.centeredOn]
            si.controllingAtoms[:] = [index[i] if i < len(index) else i for i in si.controllingAtoms]
            found.append(si)
    return found


def _forget_unknown_stereo(mol: Chem.Mol) -> None:
    """Clear, in place, RDKit's marks of stereo declared unknown (a wavy bond's
    ``_UnknownStereo`` and bond direction, a crossed double bond's ``STEREOANY``), which would
    otherwise keep the stereo assigned to those elements unknown."""
    for bond in mol.GetBonds():
        if bond.HasProp("_UnknownStereo"):
            bond.ClearProp("_UnknownStereo")
        if bond.GetBondDir() in (Chem.BondDir.UNKNOWN, Chem.BondDir.EITHERDOUBLE):
            bond.SetBondDir(Chem.BondDir.NONE)
        if bond.GetStereo() == Chem.BondStereo.STEREOANY:
            bond.SetStereo(Chem.BondStereo.STEREONONE)


def enumerated_isomer(mol: Chem.Mol, seed: int | None) -> Chem.Mol | None:
    """The first isomer of ``mol``'s unspecified stereo, in RDKit's enumeration in seeded
    random order (``rand = seed + 1``; enumeration order with ``seed=None``), that one ETKDG
    embedding builds (``EnumerateStereoisomers(onlyUnassigned=True, tryEmbedding=True)``);
    None when none does. Each impossible isomer tried first costs a failed embedding."""
    opts = StereoEnumerationOptions(onlyUnassigned=True, unique=True, maxIsomers=1, tryEmbedding=True,
                                    rand=None if seed is None else int(seed) + 1)
    mol = Chem.Mol(mol)
    _forget_unknown_stereo(mol)
    with rdkit_quiet():                     # tryEmbedding: EmbedMolecule
        for isomer in EnumerateStereoisomers(mol, options=opts):
            Chem.AssignStereochemistry(isomer, cleanIt=True, force=True)
            return isomer
    return None


def _embeds(mol: Chem.Mol, seed: int | None) -> bool:
    """Whether one ETKDGv3 embedding of ``mol`` with its stereo succeeds (``randomSeed``
    ``seed + 1``)."""
    probe = Chem.AddHs(mol) if not any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()) else Chem.Mol(mol)
    with rdkit_quiet():
        return AllChem.EmbedMolecule(probe, _etkdg_params(seed, random_coords=False)) == 0


def _etkdg_params(seed: int | None, random_coords: bool) -> AllChem.EmbedParameters:
    """ETKDGv3 parameters with ``randomSeed`` ``seed + 1`` (``seed=None`` counts as 0; never
    seed 0, with which RDKit's ``EmbedMultipleConfs`` returns identical conformers)."""
    params = AllChem.ETKDGv3()
    params.randomSeed = (0 if seed is None else int(seed)) + 1
    params.useRandomCoords = random_coords
    return params


def _isomer_of_an_embedding(mol: Chem.Mol, seed: int | None, window: float | None = None) -> Chem.Mol | None:
    """``mol`` with its unspecified centres and double bonds as one ETKDGv3 embedding
    (random coordinates, ``randomSeed`` ``seed + 1``, never 0) has them; None when it does
    not embed. Without ``window``, or where no unspecified element lies in a ring (whose
    isomers differ by conformations, not strain), the first embedding
    (:func:`isomers_of_embeddings` with one embedding). With ``window`` (kcal/mol), the first of
    ``1 +`` :data:`ISOMER_REFERENCE_EMBEDDINGS` embeddings (the first is the same) whose
    isomer's force-field minimum lies at most ``window`` above the lowest of all: an isomer
    far above the molecule's lowest (trans-fused bicyclo[4.1.0]heptane, 28.7 kcal/mol above
    cis in MMFF94s) is passed over. An isomer's minimum is the lowest reached from its
    embeddings (:func:`_minimum_energies`); one that seems out of the window is given
    :data:`ISOMER_REFERENCE_EMBEDDINGS` more, with its stereo (:func:`_lowest_minimum`), so
    that one embedding's high conformer does not exclude it. Energies of stereoisomers of one
    constitution are comparable (the same atom types and terms); an isomer none of whose
    minimisations converged counts as within."""
    if window is not None and not any(_in_ring(mol, si) for si in unspecified_stereo(mol)):
        window = None
    probe, isomers = _embedded_isomers(mol, seed, 1 if window is None else 1 + ISOMER_REFERENCE_EMBEDDINGS)
    if not isomers or window is None:
        return isomers[0] if isomers else None
    keys = [Chem.MolToSmiles(isomer) for isomer in isomers]
    lowest: dict[str, float] = {}           # isomer SMILES -> lowest minimum of its embeddings
    for key, energy in zip(keys, _minimum_energies(probe)):
        if energy is not None:
            lowest[key] = min(energy, lowest.get(key, energy))
    if not lowest:
        return isomers[0]
    bound = min(lowest.values()) + window
    rechecked = set()
    for key, isomer in zip(keys, isomers):
        if key not in rechecked and lowest.get(key, bound) > bound:
            rechecked.add(key)
            if (again := _lowest_minimum(isomer, seed)) is not None:
                lowest[key] = min(lowest[key], again)
        if lowest.get(key, bound) <= bound:
            return isomer
    return isomers[0]


def _in_ring(mol: Chem.Mol, si: Chem.StereoInfo) -> bool:
    """Whether stereo element ``si`` of ``mol`` (a centre or a double bond) lies in a ring."""
    if si.type == Chem.StereoType.Atom_Tetrahedral:
        return mol.GetAtomWithIdx(si.centeredOn).IsInRing()
    return mol.GetBondWithIdx(si.centeredOn).IsInRing()


def _lowest_minimum(isomer: Chem.Mol, seed: int | None) -> float | None:
    """The lowest force-field minimum (kcal/mol, :func:`_minimum_energies`) reached from
    :data:`ISOMER_REFERENCE_EMBEDDINGS` ETKDGv3 embeddings of ``isomer`` with its stereo
    (random coordinates, ``randomSeed`` ``seed + 1``); None when none embeds or converges."""
    probe = Chem.Mol(isomer) if any(a.GetAtomicNum() == 1 for a in isomer.GetAtoms()) else Chem.AddHs(isomer)
    with rdkit_quiet():
        AllChem.EmbedMultipleConfs(probe, ISOMER_REFERENCE_EMBEDDINGS, _etkdg_params(seed, random_coords=True))
    energies = [energy for energy in _minimum_energies(probe) if energy is not None]
    return min(energies) if energies else None


def _minimum_energies(probe: Chem.Mol) -> list[float | None]:
    """Energy (kcal/mol) of the force-field minimum reached from each conformer of ``probe``
    (explicit hydrogens), in conformer order, minimising the conformers in place: MMFF94s
    (:data:`~molscore.chem.relax.CLEANUP_VARIANT`, typed once; UFF where
    :func:`~molscore.chem.relax.mmff_properties` has none), as the geometry checks' minimum.
    None for a conformer whose minimisation does not converge in :data:`ISOMER_MAX_ITERS`
    iterations or cannot start, and for every conformer without either force field."""
    from .relax import local_minimum, minimiser_properties  # relax imports stereo

    with rdkit_quiet():
        props = minimiser_properties(probe)
        found = [local_minimum(probe, conf.GetId(), props, ISOMER_MAX_ITERS) for conf in probe.GetConformers()]
    return [None if minimum is None else minimum[1] for minimum in found]


def isomers_of_embeddings(mol: Chem.Mol, seed: int | None, embeddings: int) -> list[Chem.Mol]:
    """The distinct isomers that ``embeddings`` ETKDGv3 embeddings of ``mol`` (random
    coordinates, ``randomSeed`` ``seed + 1``, never 0) give its unspecified centres (read with
    :func:`centre_tag`) and double bonds (as ``AssignStereochemistryFrom3D`` reads them), the
    most frequent first (ties: the first embedded first). Specified stereo and the atom
    order are kept; ``[]`` when none embeds, or when ``mol`` has no unspecified stereo."""
    found: dict[str, list] = {}                 # SMILES -> [count, isomer], in embedding order
    for isomer in _embedded_isomers(mol, seed, embeddings)[1]:
        entry = found.setdefault(Chem.MolToSmiles(isomer), [0, isomer])
        entry[0] += 1
    ranked = sorted(found.values(), key=lambda entry: -entry[0])    # stable: ties keep order
    return [isomer for _, isomer in ranked]


def _embedded_isomers(mol: Chem.Mol, seed: int | None, embeddings: int) -> tuple[Chem.Mol, list[Chem.Mol]]:
    """``(probe, isomers)``: ``probe``, a copy of ``mol`` with explicit hydrogens holding the
    conformers of ``embeddings`` ETKDGv3 embeddings without its unspecified stereo (random
    coordinates, ``randomSeed`` ``seed + 1``), and per conformer, in order, the isomer it
    gives ``mol`` (:func:`_isomer_of_conformer`; without explicit hydrogens where ``mol`` has
    none). ``isomers`` is ``[]`` when none embeds or ``mol`` has no unspecified stereo."""
    explicit = any(a.GetAtomicNum() == 1 for a in mol.GetAtoms())
    probe = Chem.Mol(mol) if explicit else Chem.AddHs(mol)
    unspecified = unspecified_stereo(probe)
    if not unspecified:
        return probe, []
    _forget_unknown_stereo(probe)
    with rdkit_quiet():
        ids = list(AllChem.EmbedMultipleConfs(probe, embeddings, _etkdg_params(seed, random_coords=True)))
    isomers = []
    for cid in ids:
        isomer = _isomer_of_conformer(probe, cid, unspecified)
        isomers.append(isomer if explicit else Chem.RemoveHs(isomer))
    return probe, isomers


def _isomer_of_conformer(probe: Chem.Mol, conf_id: int, unspecified: list[Chem.StereoInfo]) -> Chem.Mol:
    """A copy of ``probe`` (no conformers) with the ``unspecified`` stereo elements
    (``Chem.StereoInfo``) as its conformer ``conf_id`` has them."""
    pos = _positions(probe, conf_id)
    perceived = Chem.Mol(probe)
    Chem.AssignStereochemistryFrom3D(perceived, confId=conf_id)
    isomer = Chem.Mol(probe)
    isomer.RemoveAllConformers()
    for si in unspecified:
        if si.type == Chem.StereoType.Atom_Tetrahedral:
            isomer.GetAtomWithIdx(si.centeredOn).SetChiralTag(centre_tag(pos, isomer, si.centeredOn))
        elif si.type == Chem.StereoType.Bond_Double:
            seen = perceived.GetBondWithIdx(si.centeredOn)
            if seen.GetStereo() in _EZ + _CISTRANS:     # CIS / TRANS: RDKit's new perception
                bond = isomer.GetBondWithIdx(si.centeredOn)
                bond.SetStereoAtoms(*seen.GetStereoAtoms())
                bond.SetStereo(seen.GetStereo())
    Chem.SetDoubleBondNeighborDirections(isomer)         # as EnumerateStereoisomers does, so
    isomer.ClearComputedProps(includeRings=False)        # that the new labels are kept
    Chem.AssignStereochemistry(isomer, cleanIt=True, force=True, flagPossibleStereoCenters=True)
    return isomer


def etkdg_failure_reason(mol: Chem.Mol) -> str:
    """The one-line reason for a molecule that ETKDG could not embed.

    If ``mol`` has specified stereo and a copy without it embeds (one ETKDGv3 attempt from
    random coordinates, seed 1), the specified stereoisomer is what ETKDG cannot build (an
    impossible or highly strained isomer, e.g. an inverted bridgehead of a fused small ring),
    and the reason is :data:`ETKDG_STEREO_FAILED`; otherwise it is :data:`ETKDG_FAILED`.
    """
    if not has_specified_stereo(mol):
        return ETKDG_FAILED
    flat = Chem.Mol(mol)
    Chem.RemoveStereochemistry(flat)
    with rdkit_quiet():
        embeds = AllChem.EmbedMolecule(flat, _etkdg_params(0, random_coords=True)) == 0
    if embeds:
        return ETKDG_STEREO_FAILED
    return ETKDG_FAILED
