"""Force-field relaxation of conformers (MMFF94, UFF where MMFF has no parameters or gets a
bond's length wrong, :func:`mmff_properties`).

* :func:`relax_conformers`: full minimisation of every conformer (``--relax``), with no
  specified stereocentre or E/Z bond allowed to cross to the other side (the same
  flat-bottom torsion restraints, zero while an element stays on its side: an unrestrained
  MMFF94 minimisation inverted a nearly flat amine nitrogen of a sampled Tröger's base);
* :func:`restrained_cleanup`: a short minimisation (MMFF94s, :data:`CLEANUP_VARIANT`) with
  every heavy atom held by a flat-bottom harmonic restraint to where it is, which repairs
  local geometry (bond lengths, angles, hydrogens, ring and amide planarity, close contacts)
  without moving the conformation: no heavy atom
  ends more than about ``max_displacement`` Å from its input position, and no specified
  stereocentre or E/Z bond leaves its side (flat-bottom torsion restraints; with the heavy
  atoms held, free hydrogens could otherwise flatten a marginal centre or flip a twisted
  double bond). Where neither force field sets up because RDKit's UFF does not type an
  octahedral centre (it has no octahedral S, ``S_6+6``: SF6, the SF5 of pentafluorosulfanyl
  arenes; SeF6), or UFF types it as tetrahedral (PF6-), UFF with the terms it can set up,
  the centre held in shape by distance constraints (:func:`_octahedral_restraints`).

Both refuse a force field whose energy at the minimum is not finite or above
:data:`MAX_ENERGY_PER_ATOM` kcal/mol per atom: RDKit's UFF has "parameters" for the
hypervalent iodine of PIDA, Togni reagent II or IBX, but no term that holds its geometry
(about 1e9 kcal/mol at its minimum, bonds to I stretched to 3 Å or squeezed to 1.5 Å), and
minimising in it breaks a sound conformer. Both leave a conformer that the minimiser cannot
start from (:data:`CANNOT_START`: two bonded atoms at one position, as a sampled conformer
can have) as it was, as for such an energy: the clean-up that conformer alone,
:func:`relax_conformers` every conformer (and it raises).
"""
from __future__ import annotations

import math
from itertools import combinations
from typing import Iterator, Sequence

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem, rdDistGeom, rdForceFieldHelpers, rdMolTransforms

from .coords import set_positions
from .stereo import bond_order_neighbours, specified_centres, specified_double_bonds, stereo_bond_atoms

__all__ = ["relax_conformers", "restrained_cleanup", "mmff_properties", "STEREO_MARGIN",
           "MAX_ENERGY_PER_ATOM", "MAX_REST_LENGTH_GAP", "CLEANUP_VARIANT", "CANNOT_START",
           "OCTAHEDRAL_FORCE_CONSTANT", "minimiser_properties", "local_minimum"]

# Degrees a stereo dihedral is kept from the boundary of its side during the clean-up, and
# the force constant that holds it there (RDKit's torsion restraints: kcal/mol/deg^2).
STEREO_MARGIN = 10.0
STEREO_FORCE_CONSTANT = 100.0
# kcal/mol per atom: no sound force field leaves a minimised molecule this high (MMFF94 and UFF
# minima of drug-like and strained molecules lie within tens of kcal/mol per atom; UFF on
# hypervalent iodine about 1e8).
MAX_ENERGY_PER_ATOM = 1000.0
# Å: the largest gap between a bond's MMFF94 and UFF rest lengths with which MMFF94 is used.
# For a pair of MMFF94 atom types its tables lack, RDKit takes the rest length from an
# empirical rule of single-bond covalent radii, whatever the bond order: N≡N 1.46 Å (UFF
# 1.12, observed 1.10), the C≡N of QM9's C#[N+]CC 1.46 (UFF 1.16), SO2's S=O 1.66 (UFF 1.35,
# observed 1.43). The geometry checks accept a bond within 0.25 Å of UFF's rest length
# +- 0.01 (:mod:`molscore.chem.checks`), so MMFF94 minimised such a molecule into a failing
# conformer. Of the bonds of the 7,000 molecules of bioactive_dev, the GEOM test splits and
# the conformer ensembles (309,295 bonds) only those of N2, SO2 and C#[N+]CC
# are further apart than this; 99.9 % are within 0.14 Å.
MAX_REST_LENGTH_GAP = 0.26
# The clean-up's MMFF variant: MMFF94s, whose out-of-plane and torsion terms keep delocalised
# nitrogens (amides, ureas, anilines) planar as the geometry checks expect. MMFF94 makes a
# urea's NH2 pyramidal just past the amide check's 0.25 Å (0.26-0.28 at its minimum for 28 of
# 30 ETKDG conformers of CC(C)CN(C)C(N)=O, MMFF94s none), so its clean-up could not mend that
# check: 17 of 60 default-route conformers of the urea failed it, and 42 after an MMFF94
# clean-up against none after an MMFF94s one (2026-12-07).
CLEANUP_VARIANT = "MMFF94s"
# Centres the clean-up holds in shape where RDKit's UFF does not type them: (RDKit's
# hybridisation, neighbours) of an octahedron, six electron domains all bonded. MMFF94 types
# neither SF6 nor Ar-SF5, and RDKit's UFF has no octahedral S ("S_6+6"), so the clean-up did
# nothing there: the default route gave SF6 and three SF5 arenes S-F bonds from 0.97 to 2.34 A
# and F-S-F angles from 25 deg (2 of 40 conformers passing the checks, ``-n 10``, 2026-12-08).
# RDKit's UFF types PF6-'s P as tetrahedral (P_3+5): its minimum has F-P-F at 30 deg. (A
# trigonal bipyramid UFF does not type, as the S of C[S+](F)(F)(F)F or AsF5's As, is left
# alone: RDKit's UFF raises building its angle terms.)
_OCTAHEDRAL = (Chem.HybridizationType.SP3D2, 6)
# kcal/mol/A^2: the distance constraints that hold such a centre's bonds and angles, stiffer
# than UFF's S-F bond (664) so that the flat-bottom position restraints of the clean-up
# (force_constant 100) cannot hold a ligand where the network put it.
OCTAHEDRAL_FORCE_CONSTANT = 1000.0
# Why a conformer is not minimised where RDKit's minimiser raises an invariant violation ("bad
# direction in linearSearch") at its start, as it does where two bonded atoms are at one
# position (a sampled conformer can have them).
CANNOT_START = ("the minimiser cannot start from a conformer (RDKit: bad direction in "
                "linearSearch; two bonded atoms at one position?)")


def mmff_properties(mol: Chem.Mol, variant: str = "MMFF94"):
    """MMFF94's typed properties of ``mol`` (explicit hydrogens) for ``variant``
    (``"MMFF94"`` or ``"MMFF94s"``), or None where MMFF94 lacks parameters for it or gives
    a bond a rest length more than :data:`MAX_REST_LENGTH_GAP` Å from UFF's (where UFF has
    that bond's parameters)."""
    with rdBase.BlockLogs():
        props = (AllChem.MMFFGetMoleculeProperties(mol, mmffVariant=variant)
                 if AllChem.MMFFHasAllMoleculeParams(mol) else None)
        if props is None:
            return None
        for bond in mol.GetBonds():
            i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            uff = rdForceFieldHelpers.GetUFFBondStretchParams(mol, i, j)        # (kb, r0)
            if uff is not None and abs(props.GetMMFFBondStretchParams(mol, i, j)[2] - uff[1]) \
                    > MAX_REST_LENGTH_GAP:
                return None
    return props


def minimiser_properties(mol: Chem.Mol):
    """The force field :func:`local_minimum` minimises ``mol`` (explicit hydrogens) in: MMFF94s'
    typed properties (:data:`CLEANUP_VARIANT`, :func:`mmff_properties`), or None for UFF
    (also where RDKit raises typing some unsanitisable input)."""
    try:
        return mmff_properties(mol, CLEANUP_VARIANT)
    except (RuntimeError, ValueError):
        return None


def local_minimum(mol: Chem.Mol, cid: int, props, max_iters: int) -> tuple[np.ndarray, float] | None:
    """``(positions (N, 3), energy kcal/mol)`` of the force-field minimum reached from
    conformer ``cid`` of ``mol``, which the minimiser moves there: MMFF94 with ``props``
    (:func:`minimiser_properties`), UFF where ``props`` is None. None without UFF parameters,
    where the minimisation has not converged in ``max_iters`` iterations or cannot start
    (two bonded atoms at one position), or where the minimum is not finite."""
    with rdBase.BlockLogs():
        if props is None and not AllChem.UFFHasAllMoleculeParams(mol):
            return None
        ff = _force_field(mol, cid, "MMFF94" if props is not None else "UFF", props)
        if ff is None:
            return None
        ff.Initialize()
        try:
            if not _run_minimiser(ff, max_iters):
                return None
        except RuntimeError:   # "bad direction in linearSearch"
            return None
        minimum, energy = np.reshape(ff.Positions(), (-1, 3)), float(ff.CalcEnergy())
    return (minimum, energy) if np.isfinite(minimum).all() and math.isfinite(energy) else None


def _implausible(energy: float, mol: Chem.Mol) -> bool:
    """Whether a force-field ``energy`` (kcal/mol) of ``mol`` at its minimum says that the
    force field does not describe the molecule (:data:`MAX_ENERGY_PER_ATOM`)."""
    return not math.isfinite(energy) or energy > MAX_ENERGY_PER_ATOM * mol.GetNumAtoms()


def relax_conformers(mol: Chem.Mol, max_iters: int = 500, num_threads: int = 1,
                     fixed: Sequence[int] = (), keep_stereo: bool = True) -> tuple[list[float], str]:
    """Minimise every conformer of ``mol`` in place (explicit hydrogens needed).

    MMFF94 where :func:`mmff_properties` has it, else UFF. The atoms ``fixed`` (e.g. a
    core's, :mod:`molscore.chem.core`) do not move. With ``keep_stereo`` no specified
    stereo element crosses to the other side: the dihedrals of :func:`_stereo_quads` are held
    by flat-bottom restraints (:func:`_stereo_restraints`), zero while an element stays
    :data:`STEREO_MARGIN` degrees inside its side (one that starts closer: no closer than
    it starts); where none comes that close, the minimisation is the plain one.

    Returns:
        ``(energies, forcefield)``: one energy in kcal/mol per conformer (the force field's,
        without the restraints), in conformer order, and ``"MMFF94"`` or ``"UFF"``.

    Raises:
        ValueError: neither force field has parameters for this molecule, the minimiser cannot
            start from a conformer (:data:`CANNOT_START`), or the minimised energy of a
            conformer is not finite or implausibly high (:func:`_implausible`); then every
            conformer is left as it was.
    """
    before = [conf.GetPositions() for conf in mol.GetConformers()]
    try:
        energies, name = _minimise(mol, max_iters, num_threads, fixed, keep_stereo)
    except RuntimeError as err:
        if not _cannot_start(err):
            raise
        problem, cause = CANNOT_START, err
    else:
        bad = next((e for e in energies if _implausible(e, mol)), None)
        if bad is None:
            return energies, name
        problem, cause = (f"{name} energy {bad:.3g} kcal/mol after minimisation: its parameters "
                          "do not describe this molecule"), None
    for conf, pos in zip(mol.GetConformers(), before):      # every conformer as it was
        set_positions(conf, pos)
    raise ValueError(problem) from cause


def _minimise(mol: Chem.Mol, max_iters: int, num_threads: int, fixed: Sequence[int],
              keep_stereo: bool) -> tuple[list[float], str]:
    """:func:`relax_conformers` without the plausibility check."""
    fixed = [int(i) for i in fixed]
    centres, bonds = _stereo_quads(mol) if keep_stereo else ([], [])
    mmff = mmff_properties(mol)
    with rdBase.BlockLogs():
        if mmff is not None:
            name, optimise = "MMFF94", AllChem.MMFFOptimizeMoleculeConfs
        elif AllChem.UFFHasAllMoleculeParams(mol):
            name, optimise = "UFF", AllChem.UFFOptimizeMoleculeConfs
        else:
            raise ValueError("no MMFF94 or UFF parameters for this molecule")
        if not fixed and not centres and not bonds:
            out = optimise(mol, numThreads=num_threads, maxIters=max_iters)
            return [float(energy) for _, energy in out], name
        energies = []
        for conf in mol.GetConformers():
            ff = _force_field(mol, conf.GetId(), name, mmff)
            for i in fixed:
                ff.AddFixedPoint(i)
            held = _stereo_restraints(ff, conf, centres, bonds, mmff is not None, hold_all=True)
            ff.Initialize()
            _run_minimiser(ff, max_iters)
            set_positions(conf, np.reshape(ff.Positions(), (-1, 3)))
            plain = _force_field(mol, conf.GetId(), name, mmff) if held else ff   # no restraints
            energies.append(float(plain.CalcEnergy()))
    return energies, name


def _run_minimiser(ff, max_iters: int) -> bool:
    """Minimise the initialised force field ``ff`` for at most ``max_iters`` iterations, unless
    its gradient is zero everywhere (every atom fixed, or no term acts on any atom: a lone ion,
    an ion pair out of reach of each other), where RDKit's minimiser raises an invariant
    violation ("bad direction in linearSearch") instead of returning. Returns whether it
    converged (a zero gradient is converged)."""
    if not np.any(np.asarray(ff.CalcGrad())):
        return True
    return ff.Minimize(maxIts=max_iters) == 0


def _cannot_start(err: RuntimeError) -> bool:
    """Whether ``err``, raised by RDKit's minimiser, says that it cannot start from the
    conformer (:data:`CANNOT_START`)."""
    return "bad direction in linearSearch" in str(err)


def _stereo_restraints(ff, conf: Chem.Conformer, centres: list[tuple[int, ...]],
                       bonds: list[tuple[int, ...]], mmff: bool, hold_all: bool) -> int:
    """Hold each stereo dihedral of ``centres`` and ``bonds`` (:func:`_stereo_quads`) on its
    side in force field ``ff`` (flat-bottom, :data:`STEREO_FORCE_CONSTANT`): at least
    :data:`STEREO_MARGIN` degrees from the boundary of its side (:func:`_side`); one that
    starts closer is left free, or with ``hold_all`` kept from coming any closer. Returns
    how many restraints were added."""
    hold = ff.MMFFAddTorsionConstraint if mmff else ff.UFFAddTorsionConstraint
    held = 0
    for quads, bond in ((centres, False), (bonds, True)):
        for quad in quads:
            angle = rdMolTransforms.GetDihedralDeg(conf, *quad)
            side = _side(angle, STEREO_MARGIN, bond)
            if side is None and hold_all:
                gap = abs(abs(angle) - 90) if bond else min(abs(angle), 180 - abs(angle))
                side = _side(angle, gap, bond)
            if side is not None:
                hold(*quad, False, *side, STEREO_FORCE_CONSTANT)
                held += 1
    return held


def _force_field(mol: Chem.Mol, cid: int, name: str, mmff=None):
    """The MMFF94 (``mmff``: its typed properties, else typed here) or UFF force field of
    conformer ``cid``."""
    if name == "MMFF94":
        return AllChem.MMFFGetMoleculeForceField(mol, mmff or AllChem.MMFFGetMoleculeProperties(mol),
                                                 confId=cid)
    return AllChem.UFFGetMoleculeForceField(mol, confId=cid)


def _stereo_quads(mol: Chem.Mol) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Dihedrals ``(a, b, c, d)`` that tell the specified stereo: per tetrahedral centre, each
    triple of its neighbours with the centre (the sign says on which side of the triple's
    plane the centre lies, as the signed volumes of :func:`~molscore.chem.stereo.centre_volumes`);
    for a four-coordinate centre in a three- or four-membered ring, its four neighbours
    instead (the sign of their tetrahedron is the handedness wherever the centre lies: at
    such a centre :func:`~molscore.chem.stereo.check_stereo` accepts a triple of either sign,
    and MMFF94 puts bridgeheads of fused small rings just outside that tetrahedron, where
    holding every triple's sign kept them strained); per E/Z double bond, its stereo atoms
    and the bond (cis below 90 degrees, trans above)."""
    rings = mol.GetRingInfo()
    centres = []
    for centre in specified_centres(mol):
        nbrs = bond_order_neighbours(mol, centre)
        in_small_ring = rings.IsAtomInRingOfSize(centre, 3) or rings.IsAtomInRingOfSize(centre, 4)
        if len(nbrs) == 4 and in_small_ring:
            centres.append(tuple(nbrs))
        elif len(nbrs) in (3, 4):
            centres += [(*trio, centre) for trio in combinations(nbrs, 3)]
    bonds = [stereo_bond_atoms(mol, idx) for idx in specified_double_bonds(mol)]
    return centres, [quad for quad in bonds if quad is not None]


def _side(angle: float, margin: float, bond: bool) -> tuple[float, float] | None:
    """The dihedral range (degrees) that keeps ``angle`` on its side, ``margin`` away from the
    boundary; None when ``angle`` is within ``margin`` of it. A centre's sides are the signs
    (boundaries 0 and 180); a double bond's are cis and trans (boundary 90; the trans range
    runs through 180, which RDKit's torsion restraints read modulo 360: a range that ended
    at 180 pulled a trans bond back from -179.5 degrees)."""
    if bond:
        if abs(abs(angle) - 90) < margin:
            return None
        return (margin - 90, 90 - margin) if abs(angle) < 90 else (90 + margin, 270 - margin)
    if not margin <= abs(angle) <= 180 - margin:
        return None
    return (margin, 180 - margin) if angle > 0 else (margin - 180, -margin)


def _uff_octahedral_centres(mol: Chem.Mol) -> list[int] | None:
    """The octahedral centres (:data:`_OCTAHEDRAL`) of ``mol`` that RDKit's UFF does not hold
    in shape: those it does not type (the S of SF6 and SF5), and those it types with another
    ideal angle than 90 deg (PF6-'s P, which it takes for a tetrahedral P_3+5: its UFF minimum
    has F-P-F angles of 30 deg). None when UFF does not type another atom (a metal, a
    trigonal bipyramid): then UFF cannot be set up. Call under ``rdBase.BlockLogs`` (UFF
    typing warnings)."""
    centres = []
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        octahedral = (atom.GetHybridization(), atom.GetDegree()) == _OCTAHEDRAL
        if rdForceFieldHelpers.GetUFFVdWParams(mol, i, i) is None:
            if not octahedral:
                return None
            centres.append(i)
        elif octahedral:
            a, b = (n.GetIdx() for n in atom.GetNeighbors()[:2])
            angle = rdForceFieldHelpers.GetUFFAngleBendParams(mol, a, i, b)     # (ka, theta0)
            if angle is None or abs(angle[1] - 90.0) > 1.0:
                centres.append(i)
    return centres


def _perfect_matchings(items: list[int]) -> Iterator[list[tuple[int, int]]]:
    """Every way of splitting ``items`` (an even number) into pairs."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for k, other in enumerate(rest):
        for matching in _perfect_matchings(rest[:k] + rest[k + 1:]):
            yield [(first, other), *matching]


def _octahedron_cosines(unit: np.ndarray) -> np.ndarray:
    """Ideal cosines ``(6, 6)`` of the angles between the ligands of an octahedral centre
    whose bond directions are the unit vectors ``unit`` ``(6, 3)``: -1 (180 deg) for the
    trans pairs, the pairing with the widest angles in sum, 0 (90 deg) for the others, 1 on
    the diagonal."""
    cos = unit @ unit.T
    trans = min(_perfect_matchings(list(range(len(unit)))), key=lambda m: sum(cos[a, b] for a, b in m))
    ideal = np.zeros_like(cos)
    for a, b in trans:
        ideal[a, b] = ideal[b, a] = -1.0
    np.fill_diagonal(ideal, 1.0)
    return ideal


def _octahedral_restraints(ff, mol: Chem.Mol, conf: Chem.Conformer, centres: Sequence[int],
                           bounds: np.ndarray) -> None:
    """Hold the octahedral ``centres`` (:func:`_uff_octahedral_centres`) of conformer
    ``conf`` in shape in the UFF force field ``ff``, which has no term or a wrong one for
    them, by distance
    constraints (:data:`OCTAHEDRAL_FORCE_CONSTANT`): each bond to a centre at the midpoint of
    its 1-2 bounds in ``bounds`` (``(N, N)``, :func:`rdkit.Chem.rdDistGeom.GetMoleculeBoundsMatrix`:
    RDKit's covalent-radius estimate where UFF has no parameters, S-F 1.62 Å, S-C 1.81 Å), so
    that equivalent bonds are equal; each pair of its ligands at the distance of that angle of
    the octahedron (:func:`_octahedron_cosines`, ligands matched to its corners as they
    lie: 90 or 180 deg); and each atom two bonds from a centre through a ligand (the ortho carbons of an
    Ar-SF5) at the midpoint of their 1-3 bounds, which the ligand's own hybridisation sets."""
    def target(i: int, j: int) -> float:
        return 0.5 * (bounds[min(i, j), max(i, j)] + bounds[max(i, j), min(i, j)])

    def hold(i: int, j: int, length: float) -> None:
        ff.UFFAddDistanceConstraint(int(i), int(j), False, length, length, OCTAHEDRAL_FORCE_CONSTANT)

    pos = conf.GetPositions()
    for c in centres:
        ligands = [n.GetIdx() for n in mol.GetAtomWithIdx(c).GetNeighbors()]
        length = np.array([target(c, j) for j in ligands])
        unit = pos[ligands] - pos[c]
        unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-6)
        cos = _octahedron_cosines(unit)
        for a, j in enumerate(ligands):
            hold(c, j, length[a])
            for b in range(a + 1, len(ligands)):
                hold(j, ligands[b], math.sqrt(length[a] ** 2 + length[b] ** 2
                                              - 2 * length[a] * length[b] * cos[a, b]))
            for x in mol.GetAtomWithIdx(j).GetNeighbors():
                if x.GetIdx() != c and x.GetIdx() not in centres:
                    hold(x.GetIdx(), c, target(x.GetIdx(), c))


def restrained_cleanup(mol: Chem.Mol, conf_ids: Sequence[int] | None = None, *,
                       max_displacement: float = 0.25, force_constant: float = 100.0,
                       max_iters: int = 200, keep_stereo: bool = True,
                       fixed: Sequence[int] = ()) -> bool:
    """Repair the local geometry of conformers of ``mol`` in place (explicit hydrogens needed).

    MMFF94s (:data:`CLEANUP_VARIANT`; UFF where :func:`mmff_properties` has none, its
    terms for the atoms it types, with the octahedral centres it does not type or types
    wrongly, :func:`_uff_octahedral_centres`, held by :func:`_octahedral_restraints` and
    their terminal ligands not restrained to where they are) minimisation for at most ``max_iters``
    iterations, with every heavy atom restrained by a flat-bottom harmonic potential
    (``force_constant`` kcal/mol/Å², free within ``max_displacement`` Å of its input
    position); hydrogens move freely. With ``keep_stereo`` each specified stereo element
    stays on the side it starts on: the dihedral of :func:`_stereo_quads` is held
    (flat-bottom, :data:`STEREO_FORCE_CONSTANT` kcal/mol/deg²) at least
    :data:`STEREO_MARGIN` degrees from the boundary of its side (:func:`_side`; an element
    that starts closer is left free). These restraints are zero inside their ranges, so
    where no element comes that close the minimisation is the plain restrained one. The
    MMFF parameters are typed once per call. The atoms ``fixed`` do not move at all. A
    conformer the minimiser cannot start from (:data:`CANNOT_START`) or whose minimised
    energy is not finite or implausibly high (:func:`_implausible`: the force field does not
    describe the molecule) is left as it was.

    Args:
        mol: the molecule; conformers are changed in place.
        conf_ids: conformers to clean (default all).
        fixed: atoms held exactly where they are (a core's, :mod:`molscore.chem.core`).

    Returns:
        False when nothing changed (neither force field has parameters for ``mol`` and it
        has no octahedral centres that alone lack them, or every conformer was left as it
        was), else True.
    """
    mmff = mmff_properties(mol, CLEANUP_VARIANT)
    centres: list[int] | None = []
    if mmff is None:
        with rdBase.BlockLogs():
            centres = _uff_octahedral_centres(mol)
            if centres is None:
                return False
            if centres:
                bounds = rdDistGeom.GetMoleculeBoundsMatrix(mol)
    # a centre's terminal ligands (the F of SF6 and SF5) are placed by its restraints, not held
    # where the network put them: they carry no conformation, and held they would pull the
    # centre out of place
    free = {n.GetIdx() for c in centres for n in mol.GetAtomWithIdx(c).GetNeighbors()
            if n.GetDegree() == 1}
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1 and a.GetIdx() not in free]
    stereo_centres, bonds = _stereo_quads(mol) if keep_stereo else ([], [])
    ids = [c.GetId() for c in mol.GetConformers()] if conf_ids is None else conf_ids
    held = {int(i) for i in fixed}
    changed = False
    for cid in ids:
        with rdBase.BlockLogs():
            ff = _force_field(mol, cid, "MMFF94" if mmff is not None else "UFF", mmff)
        restrain = ff.MMFFAddPositionConstraint if mmff is not None else ff.UFFAddPositionConstraint
        for i in held:
            ff.AddFixedPoint(i)
        for i in heavy:
            if i not in held:
                restrain(i, max_displacement, force_constant)
        _stereo_restraints(ff, mol.GetConformer(cid), stereo_centres, bonds, mmff is not None,
                           hold_all=False)
        if centres:
            _octahedral_restraints(ff, mol, mol.GetConformer(cid), centres, bounds)
        ff.Initialize()
        start = mol.GetConformer(cid).GetPositions()
        try:
            with rdBase.BlockLogs():        # RDKit logs the invariant violation with its stack
                _run_minimiser(ff, max_iters)
        except RuntimeError as err:
            if not _cannot_start(err):
                raise
            set_positions(mol.GetConformer(cid), start)
            continue
        # Minimize moves the conformer's coordinates (the force field points at them) and the
        # force field's own view of them: set the conformer from that view, or back.
        if _implausible(ff.CalcEnergy(), mol):
            set_positions(mol.GetConformer(cid), start)
            continue
        set_positions(mol.GetConformer(cid), np.reshape(ff.Positions(), (-1, 3)))
        changed = True
    return changed
