"""Geometry sanity checks of 3D conformers (independent of how they were made).

Expectations come from RDKit's distance-geometry bounds matrix
(:func:`rdkit.Chem.rdDistGeom.GetMoleculeBoundsMatrix`, the UFF-derived 1-2 and 1-3
distance ranges ETKDG itself uses) and MMFF94's reference bond lengths, with no force-field
run but for a conformer that fails (the strain exception below):

* bond lengths: every bond (hydrogens included) within ``[lower - bond_tol, upper + bond_tol]`` Å
  of its 1-2 bounds; and every bond between two of C, N, O, F, S, Cl and Br within
  ``first_row_bond_tol`` Å of its MMFF94 reference length ``r0`` (where MMFF94 types the
  molecule). The UFF-derived
  bounds are too far off for some bonds of heavier elements (C-I, S-P: quantum-chemical
  reference conformers lie up to 0.29 Å outside them) to be held more tightly than 0.25 Å,
  which let a sampled C=O of 1.51 Å or an aromatic C-C of 1.59 Å pass. The tighter range
  fails none of the 3,442 reference conformers of the hexane ensembles that passed before and
  1 of the 569 of the GEOM-DRUGS excerpt (a record of another molecule than its group's, an
  azide drawn ``[N-][N+]#N``), against 6.6 % of the default route's conformers of 59 drug-like
  crystal-set molecules given as SMILES (10 each, shipped weights; the clean-up then fixes
  them) and 0.8 % of ETKDGv3's (measured 2026-12-07). Bonds from C, N and O to hydrogen are held
  below ``r0 + first_row_bond_tol`` as well (not above ``r0 - first_row_bond_tol``: X-ray
  hydrogens sit up to 0.25 Å short): a sampled O-H of 1.13 Å (MMFF94 0.97) passed the 1-2
  bounds, 1 of the 560 default-route conformers of 57 crystal-set molecules (2026-12-07); no
  reference conformer of the hexane ensembles, the GEOM-DRUGS excerpt or ``bioactive_dev``
  has such a bond more than 0.11 Å over its ``r0``. S, Cl and Br joined C, N, O and F on
  2026-12-07: the default route had given 22 of 130 conformers of 13 molecules with such
  bonds (``-n 10 --seed 1``: sulfonates, sulfoxides, aryl and alkyl chlorides, ...) one more
  than 0.15 Å off its ``r0`` (a C-Cl of 2.00 Å, a sulfonate S-O of 1.68 Å), all passing;
  now none is (the clean-up mends them; all 130 pass). Their bonds in the reference
  conformers of the hexane ensembles and the GEOM-DRUGS excerpt (about 630) lie within
  0.09 Å of ``r0``, and the reference conformers that fail stay the same 6 of 4,011; of the
  5,095 crystal poses of ``bioactive_dev`` (hydrogens added) 996 have a bond-length problem
  instead of 861. C-I, P and Si bonds are left to the bounds: the reference conformers
  have C-I up to 0.28 Å, P=O 0.18 Å and P-S 0.34 Å from MMFF94's ``r0``;
* bond orders: a double bond to a terminal O or S shorter than a single bond from the same
  atom to a neutral O or S (the C=O and C-OH of a carboxylic acid, the S=O and S-OH of a
  sulfonic acid, the P=O and P-OR of a phosphate): each of the two can lie within its own
  tolerance while the two are swapped, the geometry of the other tautomer, whose hydrogen
  sits on the carbonyl O. The default route gave that to 10 of 50 conformers of five
  carboxylic acids (glycine: C=O 1.35 Å, C-OH 1.23 Å) and 5 of 10 of p-toluenesulfonic
  acid's (``-n 10 --seed 1``; the clean-up then mends them: none of 130 is left). In the
  1,421 such pairs of the reference conformers of the hexane ensembles and the GEOM-DRUGS
  excerpt the single bond is 0.076-0.19 Å longer (median 0.128); in the crystal poses of
  ``bioactive_dev``, which cannot tell which O carries the hydrogen, the two are nearly equal
  (median 0.022 Å) and 1,266 of the 5,095 poses have a pair in the other order (measured
  2026-12-07). A charged O (carboxylate, phosphate anion) is the double-bonded O's resonance
  twin and is left out. Likewise, since 2026-12-08, a C=N to a neutral two-coordinate N and
  a C-N from the same carbon to a neutral three-coordinate N, none of the three aromatic
  (amidines, guanidines, amidoximes, isoureas, isothioureas, in rings or not): the default
  route gave 29 of 130 conformers of 13 such drug-like molecules (``-n 10``: metformin,
  famotidine, guanabenz, DBU, ...) a C=N that long (guanabenz: 0.20 Å longer); none now
  (the clean-up mends them; all 130 pass). The reference conformers of the hexane ensembles
  and the GEOM-DRUGS excerpt have two such pairs (acylimino-thiazolidines, C=N 0.033 and
  0.042 Å shorter), GFN2-xTB minima (tblite, gas phase) of 25 neutral drug-like ones 84, all
  0.037-0.16 Å shorter (median 0.099), MMFF94's 0.049-0.095. Crystal poses do not see
  the order, as with the acids: most amidines and guanidines are protonated there, which
  makes the two bonds resonance twins. Of the 2,498 pairs of neutrally drawn components of
  the PDB's Chemical Component Dictionary (experimental model coordinates, 1,639
  components) 69 % have the C=N shorter (open-chain amidines and guanidines 60-64 %,
  median 0.004-0.007 Å), of ``bioactive_dev``'s 358 61 %, and 61 more of its 5,095 poses
  fail (2,655 instead of 2,594 without the stereo check; measured 2026-12-08). The
  reference conformers that fail stay the same 6 of 4,011. A charged N (amidinium,
  guanidinium) is left out, and so is a radical N, which has a neighbour too few (the
  hexane ensembles' tetrazinyl radical has its C=N 0.02 Å the longer). And an amide's C=O
  and C-N (lactams, ureas, carbamates and imides too; the N not aromatic): an independent
  audit of 770 default-route conformers of 154 molecules found 6 of 400 amide groups with
  the C=O no shorter (C=O 1.35 Å, C-N 1.34 Å); none now (``-n 5`` of their 7 molecules:
  the clean-up mends them). In the reference conformers of the hexane ensembles and the
  GEOM-DRUGS excerpt (730 amide groups) the C-N is 0.080-0.20 Å the longer, and they fail
  as before; in ``bioactive_dev``'s crystal poses 90 of 3,121 have the two the other way
  round (the amide flips of crystallography, which cannot tell O from N; measured
  2026-12-08);
* equivalent bonds (since 2026-12-08): the lengths of bonds between two of B, C, N, O, F, Si,
  P, S, Cl, Se, Br and I without an MMFF94 ``r0`` whose atoms have the same pair of symmetry
  classes (canonical ranks, ties not broken) within ``equivalent_bond_tol`` Å of each other.
  MMFF94 types neither SF6, PF6- nor SF5-aryl compounds, and RDKit's UFF has no octahedral
  S (``S_6+6``), so such bonds were held only to the UFF-derived bounds widened by
  ``bond_tol`` (S-F 1.21-2.03 Å): the default route gave SF6 and three SF5 compounds S-F
  bonds 0.37-0.48 Å apart in the median conformer (1.31 and 1.91 Å in one), all passing
  (``-n 10``). PF6-, BF4-, PCl5 and PhI(OAc)2 (UFF) are now cleaned up or resampled (largest
  spread 0.37, 0.25, 0.32, 0.43 Å before; 0.13, 0.13, 0.12, 0.34 after, all passing but 4 of
  the last's 10); SF6 and the SF5 compounds, which no force field types, 1 of their 40
  conformers passing, until the clean-up held their octahedra
  (:func:`molscore.chem.relax.restrained_cleanup`: 10 of 10 each). Topologically equivalent bonds
  may differ in a real geometry, as PCl5's axial (2.12 Å) and equatorial (2.02 Å) ones do:
  hence 0.15 Å. In the reference conformers of the hexane ensembles (11,809 such groups over
  its conformers, boronates and molecules MMFF94 does not type among them; the GEOM-DRUGS
  excerpt has none) they differ by at most 0.06 Å, and the check fails no reference
  conformer and 2 more of ``bioactive_dev``'s 5,095 crystal poses (two protein-bound
  phosphates, P-O 0.16 and 0.23 Å apart; measured 2026-12-08). Bonds to metals, whose
  coordination sphere sets their lengths, are left out;
* bond angles: each angle i-j-k within ``angle_tol`` degrees of the range implied by the 1-3
  bounds and the two reference bond lengths (law of cosines); ``hetero_angle_tol`` for angles
  with boron or an element of period 3 or later (P, S, Si, Cl, ...) among their three atoms.
  The UFF angles are narrow and biased for some centres (ether/ester O: 104.5 deg vs 110-118
  observed), hence the wide default of 20 deg, and they ignore the opening of O and N angles
  next to P, S, Si and B (P-O-P 125-140 deg in pyrophosphates, B-O-C and P-N-C 120-140 deg:
  UFF expects 106-113). On the reference conformers of the hexane solution ensembles (3,442
  conformers, 231,526 angles) and of the GEOM-DRUGS excerpt (569 conformers) no other angle
  leaves its range by more than 20 deg (99.9 % within 9-10 deg), while 26 of the 28,635
  angles with such atoms leave it by 20-35 deg and none by more. With 20 deg for every angle
  29 of the hexane conformers (0.84 %) failed the checks, 26 on such angles; with
  ``hetero_angle_tol`` 3 (0.09 %), on bond lengths. RDKit's bounds take a conjugated
  three-coordinate N as planar; in a 3- or 4-membered ring the strain makes it pyramidal
  (penams and carbapenems: MMFF94 puts the lactam N's exocyclic C-N-C at 118-122 deg where
  a planar N's bounds give 156-171), so its angles may lie in the range of a planar or of a
  pyramidal (sp3) N. At a five- or six-coordinate centre with no lone pair (RDKit's SP3D or
  SP3D2; a trigonal bipyramid or an octahedron) of :data:`_EQUAL_BOND_ELEMENTS` whose
  ligands are all of them too, the angles between ligands are at least 90 deg (since
  2026-12-08): RDKit's 1-3 bounds there say nothing (F...F 1.0-3.56 Å in SF6), so
  F-P-F angles of 30 deg in PF6- and F-S-F of 48 deg in an SF5 arene passed (the default
  route, ``-n 10``). No reference conformer of the hexane ensembles or the GEOM-DRUGS excerpt
  and no crystal pose of ``bioactive_dev`` has such a centre (its six-coordinate S, Co, Ru
  and five-coordinate V are bonded to or are metals);
* steric clashes: heavy-atom pairs at least three bonds apart closer than
  ``clash_factor`` times the sum of their van der Waals radii, and ``chalcogen_clash_factor``
  (0.65: S...O 2.16 Å) for an S or Se four bonds from an N or O, which an intramolecular
  chalcogen bond brings close: two acylimino-thiazolidines of the GEOM-DRUGS excerpt hold their
  carbonyl O 2.24 and 2.26 Å from the ring S (O=C-N=C-S; 0.68 of the radius sum), the only
  reference conformers of the hexane ensembles and the GEOM-DRUGS excerpt (4,011) the single
  factor failed besides two GEOM artefacts (a C...N 1,5 contact of 2.23 Å, a P...C 1.86 Å of a
  fragmented record; measured 2026-12-07);
* hydrogen clashes: pairs with a hydrogen (H...H and H...heavy atom) at least three bonds
  apart closer than ``hydrogen_clash_factor`` (0.67: H...H 1.61 Å, H...C 1.94 Å) times that
  sum, and ``hbond_clash_factor`` (0.45: H...O 1.24 Å) for a hydrogen on N or O with an N, O
  or F, which a hydrogen bond brings close (an ammonium H 1.40 Å from a phosphonate O, a
  phenol H 1.46 Å from its ortho carbonyl O in the reference conformers). PoseBusters leaves
  hydrogens out of its internal clash check by default. The closest such contacts in the
  reference conformers of the hexane ensembles and the GEOM-DRUGS excerpt (4,011
  conformers) are at 0.71 of the radius sum (H...H 1.71 Å) and 0.51 for hydrogen-bond pairs,
  in ETKDGv3's conformers of 50 drug-like molecules (10 each) at 0.69 and 0.64: the factors
  fail none of them, while the default route's output, whose hydrogens were not checked
  before, had H...H contacts of 1.51 and 1.60 Å and a C-H...O of 1.84 Å (3 of 500
  conformers; the clean-up moves such hydrogens apart; measured 2026-12-07);
* planarity: every aromatic ring's atoms within ``planarity_tol`` Å of their best plane, and
  every C=C double bond between two trigonal sp2 carbons flat with its four substituents
  (the six atoms within ``double_bond_tol`` Å of their best plane; PoseBusters' "double bond
  flatness" pattern and tolerance), except a double bond trans in an 8- or 9-membered ring
  (trans-cyclooctene: its ring twists it, 0.34 Å at the MMFF94 minimum; trans or cis is
  read from the conformer, whose E/Z the stereo check judges: its ring neighbours more than
  90 deg apart about the bond, in its smallest ring, which must be that 8- or 9-membered
  one); likewise, since 2026-12-07, every
  C=N and N=N double bond between trigonal (sp2) atoms (imines, oximes, hydrazones, amidines,
  guanidines, iminiums, azo compounds; no medium-ring exception), which a 60 deg twist had left
  passing. Their reference conformers lie within 0.09 Å (hexane ensembles, 29 C=N) and
  0.18 Å (GEOM-DRUGS excerpt, 13) of their plane; of the 246 such bonds of ``bioactive_dev``
  12 leave it by more than 0.25 Å, which fails 7 more of its 5,095 crystal poses (guanidines,
  amidines and a quinoid iminium whose drawn tautomer or placed hydrogens do not fit the
  density model). Since 2026-12-07 also every amide, urea and carbamate C(=O)-N with the
  substituents of C and N (the six atoms within ``double_bond_tol`` Å of their plane; not for
  an N in a 3- or 4-membered ring, in three ring bonds, bonded to N or O, or aromatic):
  ETKDGv3 without a force field turns the NH2 of most primary amides and twists some tertiary
  ones, and the default route kept that (of 10 conformers each of 59 amide-bearing molecules of
  ``bioactive_dev`` given as SMILES, 84 of its 590 and 83 of ETKDGv3's 600 failed on amides
  alone; with the check the clean-up flattens them: 589 of 590 pass). It fails none of the
  reference conformers of the hexane ensembles and the GEOM-DRUGS excerpt (whose hydrazides,
  left out, reach 0.33 Å) and 29 more of ``bioactive_dev``'s 5,095 crystal poses (without
  the stereo check 4,049 passed before, 4,020 now; twisted tertiary amides of protein-bound
  poses).
  The aromatic-ring tolerance of 0.1 Å is stricter than
  PoseBusters' 0.25 Å: in the reference conformers of the hexane ensembles and the GEOM-DRUGS
  excerpt (1,703 aromatic rings in 1,100 conformers) no ring deviates by more than 0.041 Å,
  while of the 3,572 experimental crystal poses of ``bioactive_dev`` with an aromatic ring 45
  (1.3 %) have one beyond 0.1 Å and 7 beyond 0.25 Å (measured 2026-12-05);
* stereo: :func:`molscore.chem.stereo.check_stereo` against the molecule's annotation.

What the molecule's own strain makes (``force_field_minimum``, since 2026-12-07): a ring bond
outside its range, an angle at a ring atom outside its range, or an aromatic ring, a ring
double bond or a ring amide off its plane, is not a problem when the force-field minimum
reached from the conformer (MMFF94s, UFF where MMFF94 has no parameters; computed only for a
conformer that fails one of these: open-chain groups are twisted, not strained, and left out,
so that the many ETKDG conformers with a turned primary amide cost no minimisation) has it too
and the conformer is near that minimum: within ``first_row_bond_tol`` Å of its bond length, the angle
tolerance of its angle, or the flatness tolerance above its deviation. A minimisation that
has not converged in :data:`MINIMUM_MAX_ITERS` iterations (since 2026-12-07: MMFF94s leaves
6 of 40 ETKDG conformers of 11 large ring systems, cyclodextrin, cucurbituril, cyclosporin,
calix[8]arene and bioactive_dev ligands of up to 96 heavy atoms, unconverged after 1,000
iterations, which take 0.3-4.7 s) stopped short of the minimum and excuses nothing; no
conformer of the sets above needed one (no verdict changed). The ranges are those of
unstrained bonds and angles and the flatness of unstrained groups, which the minimum itself
leaves in cages and fused, twisted ring systems: tetrahedrane's C-C (1.66 Å), the C-C-C
angle across a QM9 cage's fused 3- and 4-membered rings (154 deg), a hexahelicene's inner
ring (0.11 Å), the 7-membered ring of a cyclohepta[b]pyrrol-8-one (0.30 Å) or the imide of a
dibenzazepinedione (0.38 Å). A conformer whose problem the minimum does not share, as a C-C of
1.23 Å or a twisted urea, still fails, and so does a double bond or amide of a ring of at most
7 atoms turned trans in it (its ring neighbours more than 90 deg apart about the bond, in its
smallest ring, in the conformer or at the minimum): MMFF94s holds trans-cycloheptene and a
trans-caprolactam as strained minima of the other isomer, which the stereo check does not
see. Nor is a minimum more than :data:`MINIMUM_ENERGY_WINDOW` (20) kcal/mol above the lowest
of those reached from :data:`REFERENCE_STARTS` (4) ETKDGv3 embeddings of the molecule (random
coordinates, its specified stereo kept; computed once per checker, where a minimum would
first excuse a problem), since 2026-12-08: a wrong basin, not the molecule's own strain. A
bridgehead of bicyclo[3.3.1]nonane or bicyclo[3.3.2]decane mirrored through the plane of its
ring neighbours, or trans-bicyclo[3.1.0]hexane, lies in an MMFF94s minimum 41-149 kcal/mol
above the normal one with ring angles 30-50 deg off (C-C-H 85 deg), which passed where the
SMILES labels no bridgehead (``generate`` labels them, and its stereo check sees the
inversion); none of the default route's, ETKDGv3's or random-coordinate ETKDGv3's conformers
of nine such bicyclics (360, 540, 540) lay in such a basin. Of the default route's conformers of the 908
molecules of GEOM's QM9 test split it takes as input (2 each) 27 of 1,816 failed without
the exception and 11 with it, of its 1,000 drug-like molecules of GEOM's DRUGS test split 13 of 2,000
and 8 (fused 7-membered aromatic rings); of the 5,095 crystal poses of ``bioactive_dev``
(without the stereo check) 3 more pass and 9 lose a problem (7-membered aromatic rings, a
strained triazole, a magnesium porphyrin's trans N-Mg-N), and no reference conformer of the
hexane ensembles or the GEOM-DRUGS excerpt changes (measured 2026-12-07).

:class:`GeometryChecker` precomputes the per-molecule tables once for many conformers;
:func:`check_geometry` is the one-shot form. Each returns a list of one-line problems, one
per kind, listing at most three of its problems; empty means the conformer passed.
:meth:`GeometryChecker.check` also counts the problems of each kind (:class:`Problems`).

Atoms held at given positions (``fixed``: a core, :mod:`molscore.chem.core`) can fail a
check by themselves, as a crystal pose may (a strained ring's angle, a dienone bent out of
plane): a bond, angle or clash all of whose atoms are fixed, and a ring or double bond whose
fixed atoms (at least four) already leave the plane, is the given pose's problem, not the
conformer's. :meth:`GeometryChecker.split` keeps those apart; their kind is then suffixed
:data:`GIVEN`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem, rdDistGeom

from .coords import add_conformer
from .relax import local_minimum, minimiser_properties, mmff_properties
from .stereo import check_stereo

__all__ = ["GIVEN", "GeometryChecker", "Problems", "check_geometry"]

GIVEN = " (fixed atoms as given)"
"""Suffix of a problem's kind when only the fixed atoms' given positions make it."""

_MAX_LISTED = 3
_SMALL_RING, _MEDIUM_RING = (3, 7), (8, 9)   # ring sizes (atoms) where a trans group is the
# other isomer, and where a trans C=C is twisted by its ring (:meth:`GeometryChecker._trans_in_ring`)
MINIMUM_MAX_ITERS = 1000  # minimiser iterations to the force-field minimum reached from a conformer
# (unconverged after them: no minimum, no exception)
MINIMUM_ENERGY_WINDOW = 20.0  # kcal/mol: a minimum further above the lowest one reached from
REFERENCE_STARTS = 4          # this many embeddings is a wrong basin and excuses nothing
_HELD_ELEMENTS = {6, 7, 8, 9, 16, 17, 35}   # C, N, O, F, S, Cl, Br: bonds held to MMFF94's r0
_HYDROGEN_HOSTS = {6, 7, 8}   # C-H, N-H, O-H: held below MMFF94's r0 + the same tolerance
# B, C, N, O, F, Si, P, S, Cl, Se, Br, I (the heavy elements molscore generates): their bonds
# without an MMFF94 r0 are held to the lengths of their equivalent bonds (a bond to a metal
# follows its coordination sphere, not the molecule's graph)
_EQUAL_BOND_ELEMENTS = {5, 6, 7, 8, 9, 14, 15, 16, 17, 34, 35, 53}
# (RDKit's hybridisation, neighbours) of a trigonal bipyramid and an octahedron: no two
# ligands closer than 90 deg
_POLYHEDRA = {(Chem.HybridizationType.SP3D, 5), (Chem.HybridizationType.SP3D2, 6)}
_FLAT_DOUBLE_BOND = Chem.MolFromSmarts("[C;X3;^2](*)(*)=[C;X3;^2](*)(*)")
# C=N and N=N double bonds between trigonal (sp2) atoms, each SMARTS with the index in its
# match of the bond's second atom (the first is atom 0): imines, oximes, hydrazones, amidines,
# guanidines (N two-coordinate); iminiums and nitrones (N three-coordinate); azo compounds
_FLAT_HETERO_DOUBLE_BONDS = [(Chem.MolFromSmarts(smarts), second) for smarts, second in (
    ("[C;X3;^2](*)(*)=[N;X2;^2]*", 3), ("[C;X3;^2](*)(*)=[N;X3;^2](*)*", 3),
    ("[N;X2;^2](*)=[N;X2;^2]*", 2))]
# amides, ureas, carbamates: C(=O)-N with the N's two substituents; the C-N bond's atoms at 0
# and 3. Left out: an N in a 3- or 4-membered ring (pyramidal by strain,
# :func:`_small_ring_trigonal_nitrogens`) or in three ring bonds (bridgehead and ring-fusion
# lactams, which their rings may twist), an N bonded to N or O (hydrazides, acylhydrazones,
# hydroxamic acids: reference conformers pyramidalise it, up to 0.33 Å off the plane), and
# aromatic ones (pyridones: the ring check's)
# a double bond next to a single bond from the same atom, the double bond the shorter, SMARTS
# atoms X (A=X), A, Y (A-Y): to a terminal O or S and a neutral O or S of the same element
# (carboxylic acids and esters, sulfonic and phosphoric acids and esters, thioacids); a
# neutral two-coordinate N's C=N and a neutral three-coordinate N's C-N, none of them
# aromatic (amidines, guanidines, amidoximes, isoureas, isothioureas, in rings or not); and
# an amide's C=O and C-N (amides, lactams, ureas, carbamates, imides; the N not aromatic)
_ORDERED_PAIRS = [Chem.MolFromSmarts(smarts) for smarts in (
    "[#8;X1;+0]=[*]-[#8;+0;!$(*=*)]", "[#16;X1;+0]=[*]-[#16;+0;!$(*=*)]",
    "[N;X2;+0;!a]=[C;X3;+0;!a]-[N;X3;+0;!a]", "[O;X1;+0]=[C;X3;+0;!a]-[N;+0;!a]")]
_FLAT_AMIDE = Chem.MolFromSmarts("[C;X3;!a](=[O;X1])(*)-[N;X3;!a;!r3;!r4;!x3;!$(N-[#7,#8])](*)*")


def _plane_deviation(x: np.ndarray) -> np.ndarray:
    """Largest distance (Å) of points ``(..., k, 3)`` from their least-squares plane, ``(...)``."""
    x = x - x.mean(-2, keepdims=True)
    normal = np.linalg.svd(x, full_matrices=False)[2][..., -1, :]        # (..., 3)
    return np.abs((x * normal[..., None, :]).sum(-1)).max(-1)


def _small_ring_trigonal_nitrogens(mol: Chem.Mol) -> set[int]:
    """Three-coordinate nitrogens in a 3- or 4-membered ring that RDKit types as planar (sp2:
    amide, aniline, enamine). The strain pyramidalises them (the lactam N of penams and
    carbapenems, N-acyl and N-aryl aziridines: MMFF94 puts their exocyclic angle at
    118-122 deg, where the bounds of a planar N expect 145-171)."""
    rings = mol.GetRingInfo()
    return {a.GetIdx() for a in mol.GetAtoms()
            if a.GetAtomicNum() == 7 and a.GetDegree() == 3
            and a.GetHybridization() != Chem.HybridizationType.SP3
            and (rings.IsAtomInRingOfSize(a.GetIdx(), 3) or rings.IsAtomInRingOfSize(a.GetIdx(), 4))}


@dataclass
class Problems:
    """Problems of one conformer, by kind.

    Attributes:
        lines: one line per kind, what users see: ``"kind: item; item; item (+k more)"``,
            a stereo line per stereo problem (``"stereo: ..."``), or ``"non-finite
            coordinates"`` alone.
        counts: kind -> how many single problems of that kind (every stereo line one).
    """

    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """How many single problems of every kind."""
        return sum(self.counts.values())

    def add(self, kind: str, items: list[str]) -> None:
        """Record the problems ``items`` of ``kind`` (none: nothing) as one summary line."""
        if not items:
            return
        more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
        self.lines.append(f"{kind}: {'; '.join(items[:_MAX_LISTED])}{more}")
        self.counts[kind] = self.counts.get(kind, 0) + len(items)


class GeometryChecker:
    """Per-molecule tables for checking many conformers of ``mol`` (explicit hydrogens).

    Args:
        mol: the molecule; its stereo annotation is the reference for the stereo check.
        bond_tol: Å allowed outside the 1-2 distance bounds.
        first_row_bond_tol: Å allowed from MMFF94's reference length for a bond between two
            of C, N, O, F, S, Cl and Br, and above it for a bond from C, N or O to hydrogen (None: not
            checked).
        equivalent_bond_tol: Å by which the lengths of equivalent heavy-atom bonds without an
            MMFF94 reference length may differ (None: not checked).
        angle_tol: degrees allowed outside the angle range from the 1-3 bounds.
        hetero_angle_tol: the same for angles with boron or an element of period 3 or later
            among their three atoms, where the UFF-derived ranges are least reliable.
        clash_factor: fraction of the van der Waals radius sum below which a heavy-atom
            pair three or more bonds apart clashes.
        chalcogen_clash_factor: the same for an S or Se four bonds from an N or O (an
            intramolecular chalcogen bond's pair).
        hydrogen_clash_factor: the same for a pair with a hydrogen (H...H, H...heavy atom).
        hbond_clash_factor: the same for a hydrogen on N or O with an N, O or F (a hydrogen
            bond's pair).
        planarity_tol: largest allowed distance (Å) of an aromatic ring atom from the
            ring's least-squares plane.
        double_bond_tol: largest allowed distance (Å) of a double bond's atoms and their
            substituents from their least-squares plane, and of an amide's C, O, N and their
            substituents.
        stereo: also check stereochemistry.
        fixed: indices of atoms held at given positions (see the module notes).
        force_field_minimum: a bond, angle or flatness problem that the force-field minimum
            reached from the conformer shares is not one (see the module notes).
    """

    def __init__(self, mol: Chem.Mol, *, bond_tol: float = 0.25,
                 first_row_bond_tol: float | None = 0.15, equivalent_bond_tol: float | None = 0.15,
                 angle_tol: float = 20.0,
                 hetero_angle_tol: float = 35.0, clash_factor: float = 0.7,
                 chalcogen_clash_factor: float = 0.65, hydrogen_clash_factor: float = 0.67,
                 hbond_clash_factor: float = 0.45,
                 planarity_tol: float = 0.1, double_bond_tol: float = 0.25, stereo: bool = True,
                 fixed: Sequence[int] = (), force_field_minimum: bool = True):
        self.mol = mol
        self.fixed = np.zeros(mol.GetNumAtoms(), dtype=bool)
        self.fixed[np.asarray(fixed, dtype=np.int64)] = True
        self.planarity_tol, self.double_bond_tol, self.stereo = planarity_tol, double_bond_tol, stereo
        with rdBase.BlockLogs():  # UFF typing warnings for unusual atoms
            bounds = rdDistGeom.GetMoleculeBoundsMatrix(mol)
        upper, lower = np.triu(bounds), np.tril(bounds).T
        self.symbols = [a.GetSymbol() for a in mol.GetAtoms()]
        bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
        self.bonds = np.array(bonds, dtype=np.int64).reshape(-1, 2)
        i, j = np.sort(self.bonds, axis=1).T if len(bonds) else (np.zeros(0, int),) * 2
        # (K,) allowed bond lengths: the bounds widened by bond_tol, narrowed to r0 +- the
        # first-row tolerance where MMFF94 gives an r0 (to r0 + it for X-H)
        self.bond_min, self.bond_max = lower[i, j] - bond_tol, upper[i, j] + bond_tol
        r0 = _mmff_r0(mol, self.bonds)
        known = np.isfinite(r0)
        if first_row_bond_tol is not None:
            heavy = known & (np.array([self.symbols[a] != "H" and self.symbols[b] != "H"
                                       for a, b in self.bonds.tolist()], dtype=bool).reshape(-1))
            self.bond_min[heavy] = np.maximum(self.bond_min, r0 - first_row_bond_tol)[heavy]
            self.bond_max[known] = np.minimum(self.bond_max, r0 + first_row_bond_tol)[known]
        self.equivalent_bond_tol = equivalent_bond_tol
        self.equivalent_bonds = [] if equivalent_bond_tol is None else _equivalent_bonds(mol, self.bonds, ~known)
        ref = {(a, b): 0.5 * (lower[min(a, b), max(a, b)] + upper[min(a, b), max(a, b)])
               for a, b in bonds}
        ref.update({(b, a): v for (a, b), v in list(ref.items())})
        pyramidal = _small_ring_trigonal_nitrogens(mol)
        if pyramidal:       # their angles: the ranges of a planar and of a pyramidal N together
            sp3 = Chem.Mol(mol)
            for i in pyramidal:
                sp3.GetAtomWithIdx(i).SetHybridization(Chem.HybridizationType.SP3)
            with rdBase.BlockLogs():
                bounds3 = rdDistGeom.GetMoleculeBoundsMatrix(sp3)
            upper3, lower3 = np.triu(bounds3), np.tril(bounds3).T
        angles, lo, hi = [], [], []
        for atom in mol.GetAtoms():
            c = atom.GetIdx()
            nb = [n.GetIdx() for n in atom.GetNeighbors()]
            polyhedral = (atom.GetHybridization(), len(nb)) in _POLYHEDRA and all(
                other.GetAtomicNum() in _EQUAL_BOND_ELEMENTS for other in (atom, *atom.GetNeighbors()))
            for x in range(len(nb)):
                for y in range(x + 1, len(nb)):
                    a, b = nb[x], nb[y]
                    p, q = sorted((a, b))
                    ra, rb = ref[(c, a)], ref[(c, b)]
                    angles.append((a, c, b))
                    lo.append(self._angle(ra, rb, lower[p, q]))
                    hi.append(self._angle(ra, rb, upper[p, q]))
                    if c in pyramidal:
                        lo[-1] = min(lo[-1], self._angle(ra, rb, lower3[p, q]))
                        hi[-1] = max(hi[-1], self._angle(ra, rb, upper3[p, q]))
                    if polyhedral:
                        lo[-1] = max(lo[-1], 90.0)
        self.angles = np.array(angles, dtype=np.int64).reshape(-1, 3)
        self.angle_lo, self.angle_hi = np.array(lo), np.array(hi)
        self.force_field_minimum = force_field_minimum
        self.minimum_bond_tol = bond_tol if first_row_bond_tol is None else first_row_bond_tol
        self._minimiser: tuple | None = None      # (copy of mol, its MMFF94s properties or None)
        self._lowest: tuple[float | None] | None = None   # (:meth:`_lowest_energy`,) once computed
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
        hetero = (z == 5) | (z > 10)                                     # B, and periods 3+
        self.angle_tol = np.where(hetero[self.angles].any(axis=1), hetero_angle_tol, angle_tol)
        topo = Chem.GetDistanceMatrix(mol)
        pt = Chem.GetPeriodicTable()
        rvdw = np.array([pt.GetRvdw(int(n)) for n in z])
        # (P, 2) atom pairs three or more bonds apart; (P,) whether a hydrogen is in the pair,
        # and the distance (Å) below which the pair clashes
        self.pairs = np.argwhere(np.triu(topo >= 3, k=1)).reshape(-1, 2)
        p, q = self.pairs.T
        self.pair_has_h = (z[p] == 1) | (z[q] == 1)
        polar_h = np.array([a.GetAtomicNum() == 1 and any(n.GetAtomicNum() in (7, 8)
                                                          for n in a.GetNeighbors())
                            for a in mol.GetAtoms()], dtype=bool)          # H on N or O
        acceptor = np.isin(z, (7, 8, 9))                                     # N, O, F
        hbond = (polar_h[p] & acceptor[q]) | (polar_h[q] & acceptor[p])
        chalcogen, donor = np.isin(z, (16, 34)), np.isin(z, (7, 8))          # S, Se; N, O
        chalcogen_bond = (topo[p, q] == 4) & ((chalcogen[p] & donor[q]) | (chalcogen[q] & donor[p]))
        factor = np.select([hbond, self.pair_has_h, chalcogen_bond],
                           [hbond_clash_factor, hydrogen_clash_factor, chalcogen_clash_factor],
                           clash_factor)
        self.pair_min = factor * (rvdw[p] + rvdw[q])
        ring_info = mol.GetRingInfo()
        # aromatic rings: every bond aromatic (a ring of aromatic atoms joined by single
        # bonds, tetraphenylene's saddle-shaped 8-ring, need not be flat)
        self.rings = [list(atoms) for atoms, bonds in zip(ring_info.AtomRings(), ring_info.BondRings())
                      if all(mol.GetBondWithIdx(b).GetIsAromatic() for b in bonds)]
        # (G, 6) atoms of each flat double bond, SMARTS order: C, two substituents, C, two
        self.double_bonds = np.array(mol.GetSubstructMatches(_FLAT_DOUBLE_BOND, maxMatches=100000),
                                     dtype=np.int64).reshape(-1, 6)
        # per pattern of _FLAT_HETERO_DOUBLE_BONDS: (H, k) atoms of each match, SMARTS order
        # (the double bond's atoms at 0 and ``second``), and ``second``
        self.hetero_double_bonds = [
            (np.array(mol.GetSubstructMatches(pattern, maxMatches=100000), dtype=np.int64).reshape(
                -1, pattern.GetNumAtoms()), second)
            for pattern, second in _FLAT_HETERO_DOUBLE_BONDS]
        # (A, 6) atoms of each amide, SMARTS order: C, O, C's substituent, N, N's two
        self.amides = np.array(mol.GetSubstructMatches(_FLAT_AMIDE, maxMatches=100000),
                               dtype=np.int64).reshape(-1, 6)
        # (O, 3) atoms A, X, Y of each A=X next to an A-Y that must be the longer (_ORDERED_PAIRS)
        self.ordered_pairs = np.array(
            [(a, x, y) for pattern in _ORDERED_PAIRS
             for x, a, y in mol.GetSubstructMatches(pattern, maxMatches=100000)],
            dtype=np.int64).reshape(-1, 3)
        s = self.symbols
        # double bonds: (atoms, index of the second atom of the bond) of each, C=C then C=N, N=N
        doubles = [(g, k) for groups, k in [(self.double_bonds, 3), *self.hetero_double_bonds]
                   for g in groups.tolist()]
        # per flatness kind: (atoms, what the message names) of each group, in the order of
        # :meth:`_deviations`, and the tolerance
        self.flat_groups = {
            "non-planar aromatic ring": ([(ring, f"ring {','.join(map(str, ring))} deviates")
                                          for ring in self.rings], planarity_tol),
            "non-planar double bond": ([(g, f"{s[g[0]]}{g[0]}={s[g[k]]}{g[k]} and substituents deviate")
                                        for g, k in doubles], double_bond_tol),
            "non-planar amide": ([(g, f"{s[g[0]]}{g[0]}(=O{g[1]})-N{g[3]} and substituents deviate")
                                  for g in self.amides.tolist()], double_bond_tol)}
        # per flatness kind: (T, 6) rows of its groups whose bond is a bond of a ring of at
        # most 9 atoms, one per smallest such ring (:func:`_ring_neighbours`), where a bond
        # turned trans (:func:`_trans`) is twisted by its ring (8 or 9 atoms: a C=C's
        # deviation is 0) or the other isomer (at most 7 atoms: not the minimum's strain)
        central = [(g[0], g[k]) for g, k in doubles]
        amide_bonds = [(g[0], g[3]) for g in self.amides.tolist()]
        self.ring_neighbours = {
            "non-planar aromatic ring": np.zeros((0, 6), dtype=np.int64),
            "non-planar double bond": _ring_neighbours(ring_info, central),
            "non-planar amide": _ring_neighbours(ring_info, amide_bonds)}
        # what a ring can strain, the force-field minimum's exception's scope: ring bonds,
        # angles at ring atoms, aromatic rings, double bonds and amide C-N bonds in rings
        # (an open-chain amide or double bond off its plane is twisted, not strained)
        def in_ring(i: int, j: int) -> bool:
            return ring_info.NumBondRings(mol.GetBondBetweenAtoms(i, j).GetIdx()) > 0

        self.ring_bonds = np.array([in_ring(i, j) for i, j in self.bonds.tolist()], dtype=bool)
        self.ring_angles = np.array([ring_info.NumAtomRings(c) > 0 for _, c, _ in self.angles.tolist()],
                                    dtype=bool)
        self.ring_groups = {"non-planar aromatic ring": np.ones(len(self.rings), dtype=bool),
                            "non-planar double bond": np.array([in_ring(i, j) for i, j in central], dtype=bool),
                            "non-planar amide": np.array([in_ring(i, j) for i, j in amide_bonds], dtype=bool)}

    @staticmethod
    def _angle(a: float, b: float, d: float) -> float:
        cos = (a * a + b * b - d * d) / (2 * a * b)
        return math.degrees(math.acos(max(-1.0, min(1.0, cos))))

    def __call__(self, conf_id: int = -1) -> list[str]:
        """Problems of conformer ``conf_id`` (empty list = pass), those of the fixed atoms'
        given positions included (last)."""
        own, given = self.split(conf_id)
        return own + given

    def split(self, conf_id: int = -1) -> tuple[list[str], list[str]]:
        """``(the conformer's problems, those the fixed atoms' given positions make)`` of
        conformer ``conf_id``; the second list is empty without fixed atoms."""
        own, given = self.check(conf_id)
        return own.lines, given.lines

    def check(self, conf_id: int = -1) -> tuple[Problems, Problems]:
        """:meth:`split` with the problems of each kind counted: ``(the conformer's, those
        the fixed atoms' given positions make)`` (kinds of the second suffixed :data:`GIVEN`)."""
        own, given = Problems(), Problems()
        pos = np.asarray(self.mol.GetConformer(conf_id).GetPositions(), dtype=np.float64)
        if not np.isfinite(pos).all():
            own.lines.append("non-finite coordinates")
            own.counts["non-finite coordinates"] = 1
            return own, given
        found: dict[str, list[tuple[str, bool]]] = {}     # kind -> [(item, given)]
        s, fixed = self.symbols, self.fixed
        d, ang = _lengths(pos, self.bonds), _angles(pos, self.angles)
        bad_bond, bad_angle = self._off_range(d, ang)
        flat = self._deviations(pos)
        bad_flat = {kind: dev > self.flat_groups[kind][1] for kind, dev in flat.items()}
        if self.force_field_minimum and ((bad_bond & self.ring_bonds).any() or (bad_angle & self.ring_angles).any()
                                         or any((bad_flat[k] & self.ring_groups[k]).any() for k in bad_flat)):
            reached = self._minimum(pos)
            if reached is not None:    # what the force field's own minimum has is not a problem
                minimum, energy = reached
                d_min, ang_min = _lengths(minimum, self.bonds), _angles(minimum, self.angles)
                bond_min, angle_min = self._off_range(d_min, ang_min)
                still_bond = bad_bond & ~(self.ring_bonds & bond_min & (np.abs(d - d_min) <= self.minimum_bond_tol))
                still_angle = bad_angle & ~(self.ring_angles & angle_min & (np.abs(ang - ang_min) <= self.angle_tol))
                still_flat = {}
                for kind, dev_min in self._deviations(minimum).items():
                    tol = self.flat_groups[kind][1]
                    shared = self.ring_groups[kind] & (dev_min > tol) & (flat[kind] <= dev_min + tol)
                    shared &= ~(self._trans_in_ring(pos, kind, _SMALL_RING)
                                | self._trans_in_ring(minimum, kind, _SMALL_RING))
                    still_flat[kind] = bad_flat[kind] & ~shared
                excuses = (still_bond != bad_bond).any() or (still_angle != bad_angle).any() or any(
                    (still_flat[k] != bad_flat[k]).any() for k in still_flat)
                if excuses and not self._wrong_basin(energy):
                    bad_bond, bad_angle, bad_flat = still_bond, still_angle, still_flat
        i, j = self.bonds.T
        found["bond length"] = [(
            f"{s[i[k]]}{i[k]}-{s[j[k]]}{j[k]} {d[k]:.2f} A "
            f"(allowed {self.bond_min[k]:.2f}-{self.bond_max[k]:.2f})",
            fixed[self.bonds[k]].all()) for k in np.flatnonzero(bad_bond)]
        a, x, y = self.ordered_pairs.T
        d_double, d_single = _lengths(pos, self.ordered_pairs[:, :2]), _lengths(pos, self.ordered_pairs[:, ::2])
        found["bond orders swapped"] = [(
            f"{s[a[k]]}{a[k]}={s[x[k]]}{x[k]} {d_double[k]:.2f} A not shorter than "
            f"{s[a[k]]}{a[k]}-{s[y[k]]}{y[k]} {d_single[k]:.2f} A",
            fixed[self.ordered_pairs[k]].all()) for k in np.flatnonzero(d_double >= d_single)]
        found["unequal equivalent bonds"] = []
        for group in self.equivalent_bonds:
            short, long = group[np.argmin(d[group])], group[np.argmax(d[group])]
            if d[long] - d[short] > self.equivalent_bond_tol:
                found["unequal equivalent bonds"].append((
                    f"{s[i[short]]}{i[short]}-{s[j[short]]}{j[short]} {d[short]:.2f} A, "
                    f"{s[i[long]]}{i[long]}-{s[j[long]]}{j[long]} {d[long]:.2f} A "
                    f"(differ by {d[long] - d[short]:.2f}, allowed {self.equivalent_bond_tol:.2f})",
                    fixed[self.bonds[group]].all()))
        a, c, b = self.angles.T
        found["bond angle"] = [(
            f"{s[a[k]]}{a[k]}-{s[c[k]]}{c[k]}-{s[b[k]]}{b[k]} {ang[k]:.0f} deg "
            f"(expected {self.angle_lo[k]:.0f}-{self.angle_hi[k]:.0f})",
            fixed[self.angles[k]].all()) for k in np.flatnonzero(bad_angle)]
        if len(self.pairs):
            p, q = self.pairs.T
            d = _lengths(pos, self.pairs)
            bad = np.flatnonzero(d < self.pair_min)
            for kind, with_h in (("steric clash", False), ("hydrogen clash", True)):
                found[kind] = [(
                    f"{s[p[k]]}{p[k]}...{s[q[k]]}{q[k]} {d[k]:.2f} A (< {self.pair_min[k]:.2f})",
                    fixed[self.pairs[k]].all()) for k in bad if self.pair_has_h[k] == with_h]
        for kind, (groups, tol) in self.flat_groups.items():
            plane = "its plane" if kind == "non-planar aromatic ring" else "their plane"
            found[kind] = [(f"{named} {flat[kind][k]:.2f} A from {plane}",
                            self._given_off_plane(pos, groups[k][0], tol))
                           for k, (_, named) in enumerate(groups) if bad_flat[kind][k]]
        for kind, items in found.items():
            own.add(kind, [item for item, g in items if not g])
            given.add(kind + GIVEN, [item for item, g in items if g])
        if self.stereo:
            for reason in check_stereo(self.mol, conf_id).reasons():
                own.add("stereo", [reason])
        return own, given

    def _off_range(self, lengths: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whether each bond length ``(K,)`` and each angle ``(A,)`` leaves its allowed range,
        ``((K,), (A,))`` bool."""
        return ((lengths < self.bond_min) | (lengths > self.bond_max),
                (angles < self.angle_lo - self.angle_tol) | (angles > self.angle_hi + self.angle_tol))

    def _minimum(self, pos: np.ndarray) -> tuple[np.ndarray, float] | None:
        """``(positions (N, 3), energy kcal/mol)`` of the force-field minimum reached from
        ``pos`` ``(N, 3)`` (MMFF94s, :data:`~molscore.chem.relax.CLEANUP_VARIANT`, typed once
        per checker; UFF where MMFF94 has no parameters); None without a force field or a
        finite minimum, where the minimiser cannot start from ``pos``, or where it has not
        converged in :data:`MINIMUM_MAX_ITERS` iterations: a partial minimisation stops short
        of the minimum, whose problems are the only ones excused (the conformer's problem
        stays one). A minimum in a wrong basin (:meth:`_wrong_basin`) excuses nothing either."""
        work, _ = self._working_copy()
        return self._minimise(add_conformer(work, pos))

    def _working_copy(self) -> tuple[Chem.Mol, object]:
        """The checker's copy of the molecule, emptied of conformers, to minimise in, and its
        MMFF94s properties (None: UFF), typed once per checker."""
        if self._minimiser is None:
            work = Chem.Mol(self.mol)
            self._minimiser = (work, minimiser_properties(work))
        self._minimiser[0].RemoveAllConformers()
        return self._minimiser

    def _wrong_basin(self, energy: float) -> bool:
        """Whether a minimum of ``energy`` kcal/mol lies more than
        :data:`MINIMUM_ENERGY_WINDOW` above the lowest reached from :data:`REFERENCE_STARTS`
        embeddings of the molecule (:meth:`_lowest_energy`, computed only where a minimum
        would excuse a problem): a wrong basin, not the molecule's own strain."""
        lowest = self._lowest_energy()
        return lowest is not None and energy > lowest + MINIMUM_ENERGY_WINDOW

    def _minimise(self, cid: int) -> tuple[np.ndarray, float] | None:
        """:func:`~molscore.chem.relax.local_minimum` of conformer ``cid`` of the checker's
        working copy (:meth:`_working_copy`) in :data:`MINIMUM_MAX_ITERS` iterations."""
        work, props = self._minimiser
        return local_minimum(work, cid, props, MINIMUM_MAX_ITERS)

    def _lowest_energy(self) -> float | None:
        """The lowest energy (kcal/mol) of the force-field minima reached from
        :data:`REFERENCE_STARTS` ETKDGv3 embeddings of the molecule (random coordinates,
        ``randomSeed`` 1; its specified stereo kept), computed once per checker; None when
        none embeds or converges (then any minimum reached from a conformer is excused)."""
        if self._lowest is None:
            work, _ = self._working_copy()
            params = AllChem.ETKDGv3()
            params.randomSeed, params.useRandomCoords = 1, True
            with rdBase.BlockLogs():
                cids = list(AllChem.EmbedMultipleConfs(work, REFERENCE_STARTS, params))
            energies = [found[1] for found in map(self._minimise, cids) if found is not None]
            self._lowest = (min(energies) if energies else None,)
            work.RemoveAllConformers()
        return self._lowest[0]

    def _trans_in_ring(self, pos: np.ndarray, kind: str, sizes: tuple[int, int]) -> np.ndarray:
        """Whether each group of flatness ``kind`` (``(G,)`` bool, in the order of
        :attr:`flat_groups`) is turned trans (:func:`_trans`) at positions ``pos`` ``(N, 3)``
        in its smallest ring, one of ``sizes[0]`` to ``sizes[1]`` atoms: in 8 or 9 twisted by
        its ring (trans-cyclooctene), in at most 7 the other isomer, which the force field
        can hold as a strained minimum (trans-cycloheptene, a trans-caprolactam), not a
        strain of the molecule's own."""
        trans = np.zeros(len(self.flat_groups[kind][0]), dtype=bool)
        rows = self.ring_neighbours[kind]
        rows = rows[(rows[:, 5] >= sizes[0]) & (rows[:, 5] <= sizes[1])]
        trans[rows[_trans(pos, rows[:, 1:5]), 0]] = True
        return trans

    def _deviations(self, pos: np.ndarray) -> dict[str, np.ndarray]:
        """Largest distance (Å) of each flatness group's atoms from their plane at positions
        ``pos`` ``(N, 3)``, by kind, in the order of :attr:`flat_groups`: aromatic rings
        ``(R,)``, double bonds ``(D,)`` (C=C, then C=N and N=N; a C=C trans in its 8- or
        9-membered ring, twisted by it, 0), amides ``(A,)``."""
        rings = np.array([float(_plane_deviation(pos[ring])) for ring in self.rings])
        double = [_plane_deviation(pos[self.double_bonds]) if len(self.double_bonds) else np.zeros(0)]
        if len(self.double_bonds):                 # a C=C trans in its 8- or 9-membered ring
            medium = self._trans_in_ring(pos, "non-planar double bond", _MEDIUM_RING)
            double[0][medium[:len(self.double_bonds)]] = 0.0
        double += [_plane_deviation(pos[groups]) if len(groups) else np.zeros(0)
                   for groups, _ in self.hetero_double_bonds]
        amides = _plane_deviation(pos[self.amides]) if len(self.amides) else np.zeros(0)
        return {"non-planar aromatic ring": rings.reshape(-1), "non-planar double bond": np.concatenate(double),
                "non-planar amide": amides}

    def _given_off_plane(self, pos: np.ndarray, atoms: Sequence[int], tol: float) -> bool:
        """Whether the fixed ones among ``atoms`` (at least four) already leave their plane by
        more than ``tol`` Å."""
        held = [i for i in atoms if self.fixed[i]]
        return len(held) >= 4 and float(_plane_deviation(pos[held])) > tol


def _ring_neighbours(ring_info: Chem.RingInfo, bonds: Sequence[tuple[int, int]]) -> np.ndarray:
    """``(T, 6)`` rows ``(k, a, i, j, b, n)``: for each bond ``k`` ``(i, j)`` of ``bonds`` and
    each of its smallest rings (of RDKit's ring set; none where that has more than 9 atoms),
    that ring's other neighbours ``a`` of ``i`` and ``b`` of ``j``, and its size ``n``. A bond
    of several rings is judged in its smallest one only: a trigonal ring-fusion bond's
    neighbours in one ring are trans when those in the other ring are."""
    rows = []
    for k, (i, j) in enumerate(bonds):
        found = []
        for ring in ring_info.AtomRings():
            n = len(ring)
            if n > 9 or i not in ring:
                continue
            p = ring.index(i)
            if ring[(p + 1) % n] == j:
                found.append([k, ring[p - 1], i, j, ring[(p + 2) % n], n])
            elif ring[p - 1] == j:
                found.append([k, ring[(p + 1) % n], i, j, ring[p - 2], n])
        rows += [row for row in found if row[5] == min(r[5] for r in found)]
    return np.array(rows, dtype=np.int64).reshape(-1, 6)


def _trans(pos: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Whether ``a`` and ``b`` of each row ``(a, i, j, b)`` of ``quads`` ``(T, 4)`` lie more
    than 90 deg apart about the bond ``i-j`` (the dihedral ``a-i-j-b``: their bond vectors
    projected off the bond's axis point apart) at positions ``pos`` ``(N, 3)``, ``(T,)``."""
    a, i, j, b = quads.T
    axis = pos[j] - pos[i]
    axis /= np.linalg.norm(axis, axis=1, keepdims=True).clip(1e-8)
    u, v = pos[a] - pos[i], pos[b] - pos[j]
    u -= (u * axis).sum(1, keepdims=True) * axis             # across the bond's axis
    v -= (v * axis).sum(1, keepdims=True) * axis
    return (u * v).sum(1) < 0


def _equivalent_bonds(mol: Chem.Mol, bonds: np.ndarray, candidates: np.ndarray) -> list[np.ndarray]:
    """Groups of at least two equivalent ``candidates`` ``(K,)`` bool among ``bonds`` ``(K, 2)``
    (indices into ``bonds``, ``(k,)`` each): bonds between two of :data:`_EQUAL_BOND_ELEMENTS`
    whose atoms have the same pair of canonical ranks (symmetry classes, ties not broken)."""
    ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
    z = [a.GetAtomicNum() for a in mol.GetAtoms()]
    groups: dict[tuple[int, int], list[int]] = {}
    for k, (i, j) in enumerate(bonds.tolist()):
        if candidates[k] and z[i] in _EQUAL_BOND_ELEMENTS and z[j] in _EQUAL_BOND_ELEMENTS:
            groups.setdefault(tuple(sorted((ranks[i], ranks[j]))), []).append(k)
    return [np.array(group, dtype=np.int64) for group in groups.values() if len(group) > 1]


def _lengths(pos: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """Bond lengths (Å) ``(K,)`` of ``bonds`` ``(K, 2)`` at positions ``pos`` ``(N, 3)``."""
    return np.linalg.norm(pos[bonds[:, 0]] - pos[bonds[:, 1]], axis=1)


def _angles(pos: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Bond angles (degrees) ``(A,)`` of ``angles`` ``(A, 3)`` (atoms ``a, c, b``, ``c`` the
    centre) at positions ``pos`` ``(N, 3)``."""
    u, v = pos[angles[:, 0]] - pos[angles[:, 1]], pos[angles[:, 2]] - pos[angles[:, 1]]
    cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)).clip(1e-8)
    return np.degrees(np.arccos(cos.clip(-1, 1)))


def _mmff_r0(mol: Chem.Mol, bonds: np.ndarray) -> np.ndarray:
    """MMFF94 reference length (Å) of each bond ``(K, 2)`` between two of C, N, O, F, S, Cl
    and Br or from
    one of C, N and O to hydrogen; NaN for other bonds, and for all where
    :func:`~molscore.chem.relax.mmff_properties` has no MMFF94 for ``mol`` (as the clean-up and
    ``--relax`` then use UFF)."""
    r0 = np.full(len(bonds), np.nan)
    z = [a.GetAtomicNum() for a in mol.GetAtoms()]
    held = [k for k, (i, j) in enumerate(bonds.tolist())
            if (z[i] in _HELD_ELEMENTS and z[j] in _HELD_ELEMENTS)
            or min(z[i], z[j]) == 1 and max(z[i], z[j]) in _HYDROGEN_HOSTS]
    if not held:
        return r0
    typed = Chem.Mol(mol)     # MMFF94 sets its own aromaticity on the molecule it types, and
    try:                      # reads bond types from it: look up in that copy
        props = mmff_properties(typed)
    except (RuntimeError, ValueError):           # RDKit raises on some unsanitisable input
        props = None
    if props is None:         # no parameters, or RDKit's rule gives a rest length far off
        return r0
    with rdBase.BlockLogs():
        for k in held:
            params = props.GetMMFFBondStretchParams(typed, int(bonds[k, 0]), int(bonds[k, 1]))
            if params:
                r0[k] = params[-1]
    return r0


def check_geometry(mol: Chem.Mol, conf_id: int = -1, **tolerances) -> list[str]:
    """Problems of conformer ``conf_id`` of ``mol`` (empty = pass); see :class:`GeometryChecker`
    for the checks and the keyword tolerances."""
    return GeometryChecker(mol, **tolerances)(conf_id)
