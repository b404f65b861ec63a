"""Molecule validation and graph featurisation for the conformer score network.

Two entry points:

* :func:`prepare_mol` turns a SMILES string or an RDKit ``Mol`` into a sanitised
  molecule with explicit hydrogens, or raises :class:`MoleculeError` with a
  one-line reason a user can act on.
* :func:`mol_to_graph` turns that molecule into a :class:`torch_geometric.data.Data`
  holding node features, a topological edge list with covalent bonds plus 2-hop
  and 3-hop neighbours, edge features, atomic numbers and (when the molecule has
  a conformer) coordinates.

Featurisation versions (``featurisation`` of :func:`mol_to_graph`, recorded as
``meta["featurisation"]`` in every model file and checkpoint and in every processed
dataset's index; :data:`LEGACY_FEATURISATION` where none is recorded). Both have the same
sizes and layout; only the stereo features differ:

* version 1 (the shipped model's): the atom's chiral-tag one-hot (CW, CCW, unspecified,
  other), and neighbour ranks in RDKit's neighbour order. Both depend on the input's atom
  order: CW / CCW refers to the order of the atom's bonds, so renumbering the atoms can
  flip it for the same physical centre, and which neighbour is rank 0 is the first bond's.
* version 2 (:data:`DEFAULT_FEATURISATION`, new training runs and datasets): a function of
  the molecule, not of how it was written. The tag one-hot says only whether tetrahedral
  stereo is specified (slots: specified, -, unspecified, other; the second stays 0, so that
  both versions have one width and a version-2 run can start from version-1 weights); the
  configuration is carried by the ranks, in canonical order (below). Likewise a double
  bond's own stereo slots say only that its stereo is specified (the E slot; Z, cis and
  trans stay 0 on it), and the configuration is on the 3-hop edges ``a -> b`` across it
  (``a`` a neighbour of one end, ``b`` of the other): their bond-stereo slot is cis or
  trans, the relation of ``a`` and ``b`` themselves (dihedral ``a-i=j-b`` under or over 90
  degrees), for every such pair. Version 1 kept RDKit's label (E / Z by CIP priority, or cis
  / trans of its stereo atoms) on the bond alone, which a network can read only by working
  out the priorities, and which RDKit changes with atom-map numbers.

Handedness: an SE(3)-equivariant network sees only distances and directions, so
it cannot tell enantiomers apart from the graph unless the features say which
neighbour is which. For every bonded edge ``i -> j`` whose source ``i`` is a
tetrahedral stereocentre, the edge carries the *rank* of ``j`` among ``i``'s
neighbours, in an order whose handedness is always counter-clockwise: looking from the
rank-0 neighbour, ranks 1, 2, 3 turn counter-clockwise (for a three-coordinate centre, in
the sense RDKit's CCW tag has for three neighbours), so the rank features of two
enantiomers differ. The order is

* version 1: RDKit's neighbour order (the order of ``atom.GetBonds()``, which the CW/CCW
  tag refers to) for CCW centres, and the same order with its last two entries swapped for
  CW centres (a transposition flips the parity);
* version 2: the neighbours sorted by symmetry class (``Chem.CanonicalRankAtoms`` without
  tie breaking and without stereo: constitutionally equivalent atoms share a class), and,
  when that order turns clockwise, with one transposition: of the last two neighbours that
  share a class if two do, else of the last two. With all classes distinct, or one pair of
  equivalent neighbours (the two ring neighbours of a ring stereocentre such as those of
  cis-1,4-dimethylcyclohexane, or of a pseudo-asymmetric centre), the ranks are therefore a
  function of the molecule alone: renumbering its atoms permutes the graph exactly, and
  a pair is ordered by the centre's configuration (its two orders have opposite
  handedness, so exactly one is counter-clockwise). With more ties (two pairs, or three
  equivalent neighbours: rare, e.g. the bridgeheads of a bicyclo[1.1.1]pentane, whose
  meaningless tags RDKit keeps from a SMILES) the order within them is RDKit's tie-broken
  canonical ranking, the same up to the molecule's own symmetry (under which its conformer
  distribution does not change) but not always under every renumbering.
"""
from __future__ import annotations

import numpy as np
import torch
from rdkit import Chem, rdBase
from torch_geometric.data import Data

from ..errors import message_line
from .stereo import (assign_stereo_from_3d, bond_order_neighbours, specified_centres, specified_double_bonds,
                     stereo_bond_atoms)

__all__ = [
    "SUPPORTED_ELEMENTS", "ATOM_FEAT_DIM", "EDGE_FEAT_DIM", "MoleculeError",
    "prepare_mol", "mol_to_graph", "graph_signature", "atoms_match", "chiral_neighbour_ranks",
    "cis_trans_pairs", "FEATURISATIONS", "DEFAULT_FEATURISATION", "LEGACY_FEATURISATION", "check_featurisation",
    "meta_featurisation",
]

FEATURISATIONS: tuple[int, ...] = (1, 2)
DEFAULT_FEATURISATION = 2   # new training runs and datasets
LEGACY_FEATURISATION = 1    # a model file, checkpoint or dataset that records no version

SUPPORTED_ELEMENTS: tuple[str, ...] = ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Br", "I", "Se")

# --- atom feature vocabularies (each one-hot has a trailing "other" slot where noted) ---
_FORMAL_CHARGES = (-2, -1, 0, 1, 2)                      # + other
_HYBRIDISATIONS = (Chem.HybridizationType.S, Chem.HybridizationType.SP, Chem.HybridizationType.SP2,
                   Chem.HybridizationType.SP3, Chem.HybridizationType.SP3D,
                   Chem.HybridizationType.SP3D2)        # + other
_MAX_DEGREE = 6                                          # 0..5, then ">= 6"
_MAX_HS = 4                                              # 0..3, then ">= 4"
_RING_SIZES = (3, 4, 5, 6, 7)                            # then ">= 8"
_CHIRAL_TAGS = (Chem.ChiralType.CHI_TETRAHEDRAL_CW, Chem.ChiralType.CHI_TETRAHEDRAL_CCW,
                Chem.ChiralType.CHI_UNSPECIFIED)         # + other

ATOM_FEAT_DIM: int = (
    len(SUPPORTED_ELEMENTS) + 1          # element (+ other)
    + len(_FORMAL_CHARGES) + 1           # formal charge (+ other)
    + 1                                  # aromatic
    + len(_HYBRIDISATIONS) + 1           # hybridisation (+ other)
    + _MAX_DEGREE + 1                    # total degree (incl. H)
    + _MAX_HS + 1                        # total H count
    + 1 + len(_RING_SIZES) + 1           # in ring, smallest ring size (3..7, >= 8)
    + len(_CHIRAL_TAGS) + 1              # chiral tag (v1: CW, CCW, unspecified, other;
)                                        #   v2: specified, 0, unspecified, other)

# --- edge feature vocabularies ---
_HOPS = (1, 2, 3)
_BOND_TYPES = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC)
_BOND_STEREO = (Chem.BondStereo.STEREOE, Chem.BondStereo.STEREOZ, Chem.BondStereo.STEREOCIS,
                Chem.BondStereo.STEREOTRANS)             # + none (also STEREOANY / atropisomers)
_N_CHIRAL_RANKS = 4

EDGE_FEAT_DIM: int = (
    len(_HOPS)                           # hop order one-hot (1, 2, 3)
    + len(_BOND_TYPES)                   # bond type (zeros for non-bonded pairs)
    + 1                                  # conjugated
    + 1                                  # in ring
    + len(_BOND_STEREO) + 1              # bond stereo (v1: E, Z, cis, trans, none; v2: specified
                                         #   on the bond, cis / trans on pairs across it)
    + _N_CHIRAL_RANKS                    # rank of target among a stereocentre's neighbours
)


class MoleculeError(ValueError):
    """A molecule that molscore cannot handle; ``str(err)`` is a one-line, user-facing reason."""


# ----------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------

def _parse(smiles_or_mol: str | Chem.Mol) -> Chem.Mol:
    if isinstance(smiles_or_mol, Chem.Mol):
        mol = Chem.Mol(smiles_or_mol)
        label = "molecule"
    elif isinstance(smiles_or_mol, str):
        text = smiles_or_mol.strip()
        if not text:
            raise MoleculeError("invalid SMILES '': empty string")
        head, *rest = text.split(None, 1)
        if rest and not rest[0].startswith("|"):     # only a CXSMILES extension may follow
            raise MoleculeError(f"invalid SMILES {text!r}: a blank inside it (RDKit would read "
                                f"{head!r} and take the rest for a title)")
        with rdBase.BlockLogs():
            mol = Chem.MolFromSmiles(text, sanitize=False)
        if mol is None:
            hint = " (SMILES hold no comma: a CSV file? name it .csv or use --format csv)" \
                if "," in head else ""
            raise MoleculeError(f"invalid SMILES {text!r}: could not be parsed{hint}")
        label = f"SMILES {text!r}"
    else:
        raise MoleculeError(f"expected a SMILES string or an RDKit Mol, got {type(smiles_or_mol).__name__}")
    if mol.GetNumAtoms() == 0:
        raise MoleculeError(f"invalid {label}: no atoms")
    if mol.HasQuery():  # any query atom or bond (``mol.GetBonds()`` in Python is O(n^2))
        raise MoleculeError(f"invalid {label}: query atoms or bonds (a SMARTS pattern?)")
    try:
        with rdBase.BlockLogs():
            Chem.SanitizeMol(mol)
    except Exception as err:  # RDKit raises several MolSanitizeException subclasses
        reason = message_line(err) or type(err).__name__
        raise MoleculeError(f"invalid {label}: {reason}") from None
    if isinstance(smiles_or_mol, str):
        # parsed unsanitised above for the reason; RDKit's own parse also perceives the
        # stereo: E/Z from the '/' and '\' bond directions (SanitizeMol alone leaves every
        # double bond STEREONONE) and chiral tags cleaned where a centre is not one
        with rdBase.BlockLogs():
            mol = Chem.MolFromSmiles(text)
        if mol is None:
            raise MoleculeError(f"invalid {label}: could not be parsed")
    if any(atom.GetAtomMapNum() for atom in mol.GetAtoms()):
        # RDKit's stereo perception tells atoms apart by their map numbers: with them an
        # isopropyl CH keeps a chiral tag, C=C(C)C an E/Z label, and a 3D record whose
        # hydrogens are mapped gets a tag on every methyl. Without them, as RDKit perceives
        # the molecule itself (the conformers' stereo is read again in prepare_mol)
        for atom in mol.GetAtoms():
            atom.SetAtomMapNum(0)
        Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    return mol


def _heavy_atom_count(mol: Chem.Mol) -> int:
    return sum(1 for a in mol.GetAtoms() if a.GetAtomicNum() > 1)


def _fragment_size(frag: Chem.Mol) -> tuple[int, int, str]:
    """Order of fragments for ``largest_fragment``: heavy atoms, then all atoms, implicit
    hydrogens included (so a SMILES and a record with explicit hydrogens agree), then the
    canonical SMILES, so that a tie does not depend on which fragment comes first."""
    with rdBase.BlockLogs():
        smiles = Chem.MolToSmiles(Chem.RemoveHs(frag, sanitize=False))
    return _heavy_atom_count(frag), frag.GetNumAtoms(onlyExplicit=False), smiles


def prepare_mol(smiles_or_mol: str | Chem.Mol, *, add_hs: bool = True, largest_fragment: bool = False,
                max_heavy_atoms: int | None = None) -> Chem.Mol:
    """Parse, sanitise and check a molecule; return it with explicit hydrogens.

    Args:
        smiles_or_mol: SMILES string, or an RDKit ``Mol`` (its conformers are kept).
        add_hs: add explicit hydrogens (with coordinates when the input has conformers).
        largest_fragment: keep only the largest fragment (most heavy atoms) instead of
            refusing salts and mixtures.
        max_heavy_atoms: refuse molecules with more heavy atoms than this.

    Returns:
        A new sanitised ``Mol`` without atom-map numbers (RDKit's stereo perception counts
        them). When the input has coordinates, stereochemistry (chiral tags, double-bond
        stereo) is assigned from the first conformer, a four-coordinate centre's tag from all
        four of its signed volumes (:func:`~molscore.chem.stereo.reread_centres_from_3d`), so
        that it does not depend on the atom order.

    Raises:
        MoleculeError: invalid SMILES, unsupported element (metals included),
            radical, several fragments, too many heavy atoms, or a molecule whose molfile
            RDKit cannot read back (so its conformers could not be written).
    """
    mol = _parse(smiles_or_mol)
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    if len(frags) > 1:
        if not largest_fragment:
            raise MoleculeError(f"{len(frags)} fragments (salt or mixture); use --largest-fragment "
                               "(largest_fragment=True in Python)")
        mol = max(frags, key=_fragment_size)
        mol = Chem.Mol(mol)
        Chem.SanitizeMol(mol)
    bad = sorted({a.GetSymbol() for a in mol.GetAtoms() if a.GetSymbol() not in SUPPORTED_ELEMENTS})
    if bad:
        raise MoleculeError(f"unsupported element(s): {', '.join(bad)}")
    for atom in mol.GetAtoms():
        if atom.GetNumRadicalElectrons():
            raise MoleculeError(f"radical electrons on atom {atom.GetIdx()} ({atom.GetSymbol()})")
    n_heavy = _heavy_atom_count(mol)
    if n_heavy == 0:
        raise MoleculeError("no heavy atoms")
    if max_heavy_atoms is not None and n_heavy > max_heavy_atoms:
        raise MoleculeError(f"too large: {n_heavy} heavy atoms (limit {max_heavy_atoms})")
    has_coords = mol.GetNumConformers() > 0
    if add_hs:
        mol = Chem.AddHs(mol, addCoords=has_coords)
        # AddHs leaves the new hydrogens' hybridisation UNSPECIFIED (the "other" feature slot),
        # while a record read with its hydrogens (every training source) is sanitised with
        # them and has S: perceive it, so a SMILES and a 3D record featurise alike
        Chem.SetHybridization(mol)
    if (err := _molfile_round_trip_error(mol)) is not None:
        raise MoleculeError(f"RDKit cannot read it back from an SDF record ({err})")
    if has_coords:
        conf = mol.GetConformer()
        if conf.Is3D():
            assign_stereo_from_3d(mol, conf.GetId())
    return mol


def _molfile_round_trip_error(mol: Chem.Mol) -> str | None:
    """RDKit's error when ``mol`` written as a molfile does not read back sanitised (a
    SMILES such as ``c#1`` in an aromatic ring parses, but its Kekulé form has a
    five-valent carbon), else None."""
    try:
        with rdBase.BlockLogs():
            back = Chem.MolFromMolBlock(Chem.MolToMolBlock(mol), removeHs=False, sanitize=False)
            Chem.SanitizeMol(back)
    except Exception as err:  # noqa: BLE001 - RDKit raises several sanitisation errors
        return str(err).strip() or type(err).__name__
    return None


# ----------------------------------------------------------------------------------------
# graph identity checks
# ----------------------------------------------------------------------------------------

def graph_signature(mol: Chem.Mol) -> str:
    """Coordinate- and stereo-free identity of a molecular graph.

    Canonical non-isomeric SMILES of the hydrogen-suppressed molecule followed by the
    total hydrogen count, so two ``Mol`` objects with the same atoms, bonds, bond
    orders and charges (in any atom order, with or without explicit H or atom-map numbers)
    agree.
    """
    heavy = Chem.RemoveHs(mol, sanitize=False)
    for atom in heavy.GetAtoms():
        atom.SetAtomMapNum(0)
    n_h = sum(a.GetTotalNumHs(includeNeighbors=True) for a in mol.GetAtoms() if a.GetAtomicNum() > 1)
    n_h += sum(1 for a in mol.GetAtoms() if a.GetAtomicNum() == 1 and a.GetDegree() == 0)
    with rdBase.BlockLogs():
        smi = Chem.MolToSmiles(heavy, isomericSmiles=False)
    return f"{smi}|H{n_h}"


def atoms_match(mol: Chem.Mol, reference: str | Chem.Mol) -> bool:
    """Whether ``mol`` (e.g. a 3D record) has the same graph as ``reference`` (SMILES or Mol)."""
    ref = reference
    if isinstance(reference, str):
        with rdBase.BlockLogs():
            ref = Chem.MolFromSmiles(reference)
        if ref is None:
            return False
    try:
        return graph_signature(mol) == graph_signature(ref)
    except Exception:  # unsanitisable record: cannot match
        return False


# ----------------------------------------------------------------------------------------
# featurisation
# ----------------------------------------------------------------------------------------

def _one_hot(value, choices, other: bool) -> list[float]:
    out = [0.0] * (len(choices) + (1 if other else 0))
    try:
        out[choices.index(value)] = 1.0
    except ValueError:
        if other:
            out[-1] = 1.0
    return out


def _bucket(value: int, n: int) -> list[float]:
    out = [0.0] * (n + 1)
    out[min(value, n)] = 1.0
    return out


def _chiral_tag_features(atom: Chem.Atom, featurisation: int) -> list[float]:
    """The chiral-tag one-hot: v1 ``(CW, CCW, unspecified, other)``; v2 ``(specified, 0,
    unspecified, other)`` (see module docstring)."""
    tag = atom.GetChiralTag()
    if featurisation == 1:
        return _one_hot(tag, _CHIRAL_TAGS, other=True)
    specified, unspecified = tag in _CHIRAL_TAGS[:2], tag == Chem.ChiralType.CHI_UNSPECIFIED
    return [float(specified), 0.0, float(unspecified), float(not (specified or unspecified))]


def _atom_features(atom: Chem.Atom, ring_info, featurisation: int) -> list[float]:
    min_ring = ring_info.MinAtomRingSize(atom.GetIdx())
    ring = [float(min_ring > 0)] + ([0.0] * (len(_RING_SIZES) + 1))
    if min_ring > 0:
        ring[1 + (_RING_SIZES.index(min_ring) if min_ring in _RING_SIZES else len(_RING_SIZES))] = 1.0
    return (
        _one_hot(atom.GetSymbol(), SUPPORTED_ELEMENTS, other=True)
        + _one_hot(atom.GetFormalCharge(), _FORMAL_CHARGES, other=True)
        + [float(atom.GetIsAromatic())]
        + _one_hot(atom.GetHybridization(), _HYBRIDISATIONS, other=True)
        + _bucket(atom.GetTotalDegree(), _MAX_DEGREE)
        + _bucket(atom.GetTotalNumHs(includeNeighbors=True), _MAX_HS)
        + ring
        + _chiral_tag_features(atom, featurisation)
    )


def check_featurisation(version: object) -> int:
    """``version`` when it is one of :data:`FEATURISATIONS`, else ``ValueError`` (one line)."""
    if not isinstance(version, int) or isinstance(version, bool) or version not in FEATURISATIONS:
        raise ValueError(f"unknown featurisation version {version!r} (this molscore knows "
                         f"{' and '.join(map(str, FEATURISATIONS))})")
    return version


def meta_featurisation(meta: dict) -> int:
    """The featurisation version a model's ``meta`` (a model file's or checkpoint's) records:
    :data:`LEGACY_FEATURISATION` when it records none; ``ValueError`` for an unknown one."""
    return check_featurisation(meta.get("featurisation", LEGACY_FEATURISATION))


def _odd_permutation(order: list[int], reference: list[int]) -> bool:
    """Whether ``order`` is an odd permutation of ``reference`` (same items)."""
    pos = [reference.index(j) for j in order]
    return sum(a > b for k, a in enumerate(pos) for b in pos[k + 1:]) % 2 == 1


def chiral_neighbour_ranks(mol: Chem.Mol, *, featurisation: int) -> dict[tuple[int, int], int]:
    """Ranks ``{(centre, neighbour): rank}`` for tetrahedral stereocentres, CCW-normalised.

    Version 1: the position of ``neighbour`` in ``centre.GetBonds()`` order, with the last
    two positions swapped for ``CHI_TETRAHEDRAL_CW`` centres. Version 2: the position in
    symmetry-class order, with one transposition where that order turns clockwise (of the
    last two neighbours of one class if there are such, else of the last two). See the
    module docstring.
    """
    check_featurisation(featurisation)
    centres = specified_centres(mol)
    if featurisation == 2 and centres:
        classes = Chem.CanonicalRankAtoms(mol, breakTies=False, includeChirality=False,
                                          includeAtomMaps=False)
        tie_broken = Chem.CanonicalRankAtoms(mol, breakTies=True, includeAtomMaps=False)
    ranks: dict[tuple[int, int], int] = {}
    for i, tag in centres.items():
        bonds = bond_order_neighbours(mol, i)
        order = list(bonds)
        swap = len(order) - 2
        if featurisation == 2:
            order.sort(key=lambda j: (classes[j], tie_broken[j]))
            tied = [k for k in range(len(order) - 1) if classes[order[k]] == classes[order[k + 1]]]
            swap = tied[-1] if tied else swap
        clockwise = (tag == Chem.ChiralType.CHI_TETRAHEDRAL_CW) != _odd_permutation(order, bonds)
        if clockwise and len(order) >= 2:
            order[swap], order[swap + 1] = order[swap + 1], order[swap]
        for rank, j in enumerate(order[:_N_CHIRAL_RANKS]):
            ranks[(i, j)] = rank
    return ranks


def _bond_features(bond: Chem.Bond, featurisation: int) -> list[float]:
    """Bond type, conjugated, in ring, stereo: the bond part of ``edge_attr`` (slots 3..13).
    Stereo: v1 RDKit's label; v2 the E slot for any specified label (see module docstring)."""
    stereo = bond.GetStereo()
    if featurisation == 2 and stereo in _BOND_STEREO:
        stereo = _BOND_STEREO[0]
    return (_one_hot(bond.GetBondType(), _BOND_TYPES, other=False)
            + [float(bond.GetIsConjugated()), float(bond.IsInRing())]
            + _one_hot(stereo, _BOND_STEREO, other=True))


def cis_trans_pairs(mol: Chem.Mol) -> dict[tuple[int, int], bool]:
    """``{(a, b): cis}`` for every specified stereo double bond ``i=j`` and every neighbour
    ``a`` of ``i`` and ``b`` of ``j`` (both orders of each pair): whether ``a`` and ``b`` are
    cis (dihedral ``a-i=j-b`` under 90 degrees). Read from the bond's label and its stereo
    atoms (RDKit: the first one bonded to the bond's begin atom; for E / Z the CIP-highest,
    so Z is cis), so it is the same whatever the atom order or the labels RDKit chose."""
    pairs: dict[tuple[int, int], bool] = {}
    for idx, label in specified_double_bonds(mol).items():
        quad = stereo_bond_atoms(mol, idx)
        if quad is None:
            continue
        s0, i, j, s1 = quad
        cis = label in (Chem.BondStereo.STEREOZ, Chem.BondStereo.STEREOCIS)
        for a in (n.GetIdx() for n in mol.GetAtomWithIdx(i).GetNeighbors() if n.GetIdx() != j):
            for b in (n.GetIdx() for n in mol.GetAtomWithIdx(j).GetNeighbors() if n.GetIdx() != i):
                pairs[(a, b)] = pairs[(b, a)] = cis ^ (a != s0) ^ (b != s1)
    return pairs


def mol_to_graph(mol: Chem.Mol, conf_id: int = -1, *, featurisation: int) -> Data:
    """Featurise a prepared molecule (see :func:`prepare_mol`) as a PyG graph.

    Args:
        mol: sanitised ``Mol``, normally with explicit hydrogens.
        conf_id: conformer to copy into ``pos`` when the molecule has conformers.
        featurisation: version of the features (see module docstring): the one the model
            reads (:func:`meta_featurisation` of its meta).

    Returns:
        ``Data`` with
        ``atom_feat`` ``(N, ATOM_FEAT_DIM)`` float32,
        ``edge_index`` ``(2, E)`` long (pairs at topological distance 1, 2 or 3, both directions,
        sorted by source then target),
        ``edge_attr`` ``(E, EDGE_FEAT_DIM)`` float32,
        ``z`` ``(N,)`` long atomic numbers, ``num_nodes`` ``N``,
        ``pos`` ``(N, 3)`` float32 (only when ``mol`` has a conformer),
        ``smiles`` canonical isomeric SMILES (str).
    """
    check_featurisation(featurisation)
    n = mol.GetNumAtoms()
    ring_info = mol.GetRingInfo()
    atom_feat = np.array([_atom_features(a, ring_info, featurisation) for a in mol.GetAtoms()],
                         dtype=np.float32).reshape(n, ATOM_FEAT_DIM)
    dist = Chem.GetDistanceMatrix(mol) if n > 1 else np.zeros((n, n))
    src, dst = np.nonzero((dist >= 1) & (dist <= 3))
    hop = dist[src, dst].astype(np.int64)
    edge_attr = np.zeros((len(src), EDGE_FEAT_DIM), dtype=np.float32)
    edge_attr[np.arange(len(src)), hop - 1] = 1.0                        # hop order 1, 2, 3
    # bond features of bonded pairs; 2- and 3-hop pairs get zeros and bond stereo "none"
    # (v2: cis / trans for the pairs across a stereo double bond)
    n_bond = len(_BOND_TYPES) + 2 + len(_BOND_STEREO) + 1
    table = np.array([_bond_features(b, featurisation) for b in mol.GetBonds()],
                     dtype=np.float32).reshape(-1, n_bond)
    bond_id = np.full((n, n), -1, dtype=np.int64)
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        bond_id[i, j] = bond_id[j, i] = b.GetIdx()
    bonded = hop == 1
    edge_attr[bonded, 3:3 + n_bond] = table[bond_id[src[bonded], dst[bonded]]]
    edge_attr[~bonded, 3 + n_bond - 1] = 1.0
    if featurisation == 2:                # cis / trans of the pairs across a stereo double bond
        slot = np.full((n, n), -1, dtype=np.int64)        # bond-stereo slot: 2 cis, 3 trans
        for (a, b), cis in cis_trans_pairs(mol).items():
            slot[a, b] = 2 if cis else 3
        edge_slot = slot[src, dst]
        across = np.nonzero((edge_slot >= 0) & ~bonded)[0]
        edge_attr[across, 3 + n_bond - 1] = 0.0
        edge_attr[across, 3 + len(_BOND_TYPES) + 2 + edge_slot[across]] = 1.0
    rank = np.full((n, n), -1, dtype=np.int64)
    for (i, j), r in chiral_neighbour_ranks(mol, featurisation=featurisation).items():
        rank[i, j] = r
    edge_rank = rank[src, dst]
    has_rank = edge_rank >= 0
    edge_attr[np.nonzero(has_rank)[0], 3 + n_bond + edge_rank[has_rank]] = 1.0  # chiral neighbour rank
    edge_index = torch.from_numpy(np.stack([src, dst]).astype(np.int64)).reshape(2, -1)
    z = torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=torch.long)
    with rdBase.BlockLogs():
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))
    data = Data(atom_feat=torch.from_numpy(atom_feat), edge_index=edge_index,
                edge_attr=torch.from_numpy(edge_attr), z=z, num_nodes=n)
    if mol.GetNumConformers():
        data.pos = torch.tensor(mol.GetConformer(conf_id).GetPositions(), dtype=torch.float32)
    data.smiles = smiles
    return data
