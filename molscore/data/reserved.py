"""Molecules reserved for held-out evaluation, excluded from every training set.

The list holds InChIKey connectivity blocks (the first 14 characters of the
InChIKey: the skeleton, without stereo, isotopes or protonation), one per line,
``#`` comments allowed (a list whose entries are not InChIKeys or their blocks is refused:
it would leave nothing out). It ships as ``datasets/reserved_inchikeys.txt``, linked into the
package as ``molscore/data/reserved_inchikeys.txt`` (package data: an installed wheel holds it);
builds record its version (:func:`shipped_identity`); every
dataset builder and training set drops the molecules it lists (:func:`reserved_keys`:
another list given there adds to it, never replaces it), and those it cannot check: a
molecule RDKit makes no InChIKey for (over 1,023 atoms, InChI's limit) might be a reserved
one (:func:`exclusion_reason`).

Standard InChI merges many tautomers and protonation states, but not all: a keto and its enol
form, some NH tautomers of fused heterocycles, a protonated amine such as ``[NH3+]O-R`` and
anions such as a deprotonated sulfonamide or hydroxamic acid have blocks of their own (the
shipped list holds 117 such anions of CCD components: ligands bound to a metal). The list
holds keys only, so dataset builders check the molecule's other forms instead
(:func:`form_blocks`, :func:`build_exclusion_reason`, the rule :data:`MATCH_RULE`): the blocks
of its RDKit tautomers, of its neutral form, of that form's tautomers and of that form with
one proton more or fewer (:func:`charge_forms`). This is conservative: a molecule is
dropped when any of these forms is reserved, so a few that are not the same compound (a ketose
sharing an enediol tautomer with a reserved aldose) are left out too, which costs training
data only. Training on a processed dataset checks the stored block alone
(:func:`exclusion_reason`), since enumerating the forms of every molecule at each start would
be slow; the builders did the rest, so a dataset built under another rule is not trained on
(:func:`check_match_rule`).
"""
from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from rdkit import Chem, rdBase
from rdkit.Chem.MolStandardize import rdMolStandardize

__all__ = ["DEFAULT_RESERVED_PATH", "RESERVED_REASON", "NO_INCHIKEY_REASON", "BLOCK", "MAX_TAUTOMERS",
           "MAX_TRANSFORMS", "MAX_CHARGE_SITES", "MATCH_RULE", "load_reserved", "reserved_keys",
           "inchikey_block", "exclusion_reason", "charge_forms", "form_blocks",
           "build_exclusion_reason", "is_reserved_reason", "check_match_rule", "list_identity",
           "shipped_identity"]

# package data: a link to datasets/reserved_inchikeys.txt in the source tree, the file in a wheel
DEFAULT_RESERVED_PATH = Path(__file__).resolve().parent / "reserved_inchikeys.txt"
RESERVED_REASON = "reserved for held-out evaluation"  # the failures.csv reason of a dropped one
NO_INCHIKEY_REASON = "RDKit makes no InChIKey for it, so it cannot be checked against the reserved list"
BLOCK = re.compile(r"[A-Z]{14}")  # an InChIKey connectivity block
MAX_TAUTOMERS = 200     # tautomers enumerated per form of a molecule (RDKit's default: 1000)
MAX_TRANSFORMS = 1000   # tautomer transforms applied per form (RDKit's default)
MAX_CHARGE_SITES = 40   # atoms given or relieved of a proton per molecule (charge_forms)
# How builders match molecules with the list; recorded in a dataset's meta (``reserved_match``),
# so that a build is resumed only under the rule it began with (:func:`check_match_rule`).
MATCH_RULE = (f"InChIKey first block of the molecule, its tautomers, its neutral form, that "
              f"form's tautomers (at most {MAX_TAUTOMERS} tautomers, {MAX_TRANSFORMS} transforms each) "
              f"and that form with one proton more on an N or one fewer on an N, O or S "
              f"(at most {MAX_CHARGE_SITES} atoms)")
FORM_REASON = RESERVED_REASON + " (tautomer or charge form of {block})"  # another form reserved


@functools.lru_cache(maxsize=8)
def _load(path: str) -> frozenset[str]:
    blocks = set()
    with open(path, encoding="utf-8-sig") as fh:  # -sig: a byte-order mark is no part of a key
        for number, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            block = line[:14].upper()
            if not BLOCK.fullmatch(block):
                raise ValueError(f"{path}, line {number}: {line[:40]!r} is not an InChIKey or its first "
                                 "block (14 letters); a list of other keys would leave nothing out")
            blocks.add(block)
    return frozenset(blocks)


def load_reserved(path: str | Path | None = None) -> frozenset[str]:
    """The reserved InChIKey connectivity blocks (14 characters each).

    Args:
        path: a text file, one InChIKey (or its first block) per line; defaults to
            the shipped list (:data:`DEFAULT_RESERVED_PATH`).

    Raises:
        FileNotFoundError: the list does not exist.
        ValueError: a line that is not an InChIKey nor its first block (a SMILES list, a CSV
            with a header), with its number; or the shipped list holds no key (another list
            may be empty: it adds nothing).
    """
    path = Path(path) if path is not None else DEFAULT_RESERVED_PATH
    if not path.is_file():
        raise FileNotFoundError(f"reserved InChIKey list not found: {path}")
    blocks = _load(str(path.resolve()))
    if not blocks and path.resolve() == DEFAULT_RESERVED_PATH.resolve():
        raise ValueError(f"{path} holds no InChIKey: the shipped reserved list is empty (damaged or "
                         "truncated), so it would leave nothing out; restore it")
    return blocks


def reserved_keys(extra: str | Path | None = None) -> frozenset[str]:
    """The blocks a dataset or training set leaves out: the shipped list's, and ``extra``'s
    (another list, e.g. development-benchmark molecules) as well.

    Raises:
        FileNotFoundError: the shipped list or ``extra`` does not exist.
        ValueError: ``extra`` or the shipped list holds a line that is not an InChIKey, or the
            shipped list holds none (:func:`load_reserved`).
    """
    shipped = load_reserved()
    return shipped if extra is None else shipped | load_reserved(extra)


def inchikey_block(mol: Chem.Mol) -> str:
    """First 14 characters of the InChIKey of ``mol`` (``""`` when RDKit cannot make one)."""
    with rdBase.BlockLogs():
        key = Chem.MolToInchiKey(mol) or ""
    return key[:14]


def exclusion_reason(block: str, reserved: frozenset[str]) -> str | None:
    """Why a molecule whose InChIKey connectivity block is ``block`` (:func:`inchikey_block`)
    stays out of every training set: :data:`RESERVED_REASON` (``block`` is in ``reserved``),
    :data:`NO_INCHIKEY_REASON` (``block`` is ``""``: unknown, so possibly reserved) or ``None``
    (it may be trained on)."""
    if not block:
        return NO_INCHIKEY_REASON
    return RESERVED_REASON if block in reserved else None


@functools.cache
def _standardizers() -> tuple[rdMolStandardize.TautomerEnumerator, rdMolStandardize.Uncharger]:
    enumerator = rdMolStandardize.TautomerEnumerator()
    enumerator.SetMaxTautomers(MAX_TAUTOMERS)
    enumerator.SetMaxTransforms(MAX_TRANSFORMS)
    return enumerator, rdMolStandardize.Uncharger()


def _blocks_of(mols) -> set[str]:
    """The non-empty :func:`inchikey_block` of each molecule; one RDKit cannot make is skipped."""
    out = set()
    for mol in mols:
        try:
            block = inchikey_block(mol)
        except Exception:  # a form RDKit cannot write out is no form to match
            block = ""
        if block:
            out.add(block)
    return out


def charge_forms(mol: Chem.Mol) -> list[Chem.Mol]:
    """``mol`` with one proton added or removed: each N atom without a formal charge given one
    more hydrogen and a charge of +1 (``[NH3+]O-R`` from ``NH2-O-R``), each uncharged N, O or S
    atom with a hydrogen given one fewer and a charge of -1 (a hydroxamate ``C(=O)N[O-]``, a
    sulfonamide ``S(=O)(=O)[NH-]``), one atom per symmetry class, at most
    :data:`MAX_CHARGE_SITES` atoms in atom order; forms RDKit cannot sanitise are left out.
    Standard InChI gives most such forms (amines, carboxylic acids, phenols) the block of
    ``mol``, but not these, which reserved lists made from bound ligands hold.

    Args:
        mol: a molecule without explicit hydrogens (implicit ones are counted).

    Returns:
        New molecules, each with ``mol``'s atoms, one of them protonated or deprotonated.
    """
    ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
    seen: set[tuple[int, int]] = set()
    forms = []
    for atom in mol.GetAtoms():
        if atom.GetFormalCharge() or atom.GetSymbol() not in ("N", "O", "S"):
            continue
        hydrogens = atom.GetTotalNumHs()
        for change in (+1, -1):
            if (change > 0 and atom.GetSymbol() != "N") or hydrogens + change < 0:
                continue
            if (ranks[atom.GetIdx()], change) in seen:
                continue
            if len(seen) == MAX_CHARGE_SITES:
                return forms
            seen.add((ranks[atom.GetIdx()], change))
            form = Chem.RWMol(mol)
            site = form.GetAtomWithIdx(atom.GetIdx())
            site.SetFormalCharge(change)
            site.SetNumExplicitHs(hydrogens + change)
            site.SetNoImplicit(True)
            try:
                Chem.SanitizeMol(form)
            except Exception:  # a valence RDKit refuses: no such form
                continue
            forms.append(form.GetMol())
    return forms


def form_blocks(mol: Chem.Mol) -> frozenset[str]:
    """InChIKey first blocks of ``mol``'s forms: its own, its tautomers', its neutral form's
    (``rdMolStandardize.Uncharger``; ``mol`` itself when it has none), that form's tautomers'
    (``TautomerEnumerator``, at most :data:`MAX_TAUTOMERS` tautomers and
    :data:`MAX_TRANSFORMS` transforms per form) and those of that form with one proton more or
    fewer (:func:`charge_forms`: a reserved anion or cation whose neutral form InChI gives
    another block). Never raises: forms RDKit cannot make are left out, so a molecule whose
    forms cannot be computed gives its own block only, and one without an InChIKey gives none
    (an empty set). Explicit hydrogens, isotopes (a deuterium is a hydrogen that tautomers and
    charge forms move) and conformers of ``mol`` are ignored."""
    return _form_blocks(mol, inchikey_block(mol))


def _form_blocks(mol: Chem.Mol, own: str) -> frozenset[str]:
    """:func:`form_blocks` of ``mol``, whose own block is ``own``."""
    if not own:
        return frozenset()
    blocks = {own}
    enumerator, uncharger = _standardizers()
    with rdBase.BlockLogs():
        try:
            heavy = Chem.Mol(mol)
            heavy.RemoveAllConformers()
            for atom in heavy.GetAtoms():  # the block ignores isotopes; a D or T is a proton that
                atom.SetIsotope(0)         # moves, which RemoveHs would keep as an atom
            heavy = Chem.RemoveHs(heavy)
        except Exception:  # an odd molecule: its own block only
            return frozenset(blocks)
        forms = [heavy]
        try:
            neutral = uncharger.uncharge(heavy)
            if Chem.MolToSmiles(neutral) != Chem.MolToSmiles(heavy):
                forms.append(neutral)
        except Exception:  # no neutral form: the molecule's own forms only
            pass
        blocks |= _blocks_of(forms[1:])
        for form in forms:
            try:
                blocks |= _blocks_of(enumerator.Enumerate(form))
            except Exception:  # no tautomers of this form
                pass
        try:
            blocks |= _blocks_of(charge_forms(forms[-1]))
        except Exception:  # no charge forms
            pass
    return frozenset(blocks)


def build_exclusion_reason(mol: Chem.Mol, reserved: frozenset[str], block: str | None = None) -> str | None:
    """Why a dataset builder drops ``mol`` (``None``: it may be trained on): its own block
    reserved or missing, as :func:`exclusion_reason` says; else, when the block of another of its
    forms (:func:`form_blocks`) is reserved, ``"reserved for held-out evaluation (tautomer or
    charge form of BLOCK)"`` naming the (alphabetically first) reserved block. ``block``: the
    molecule's own :func:`inchikey_block` when the caller has it (computed here otherwise)."""
    own = inchikey_block(mol) if block is None else block
    reason = exclusion_reason(own, reserved)
    if reason:
        return reason
    hits = _form_blocks(mol, own) & reserved
    return FORM_REASON.format(block=min(hits)) if hits else None


def is_reserved_reason(reason: str) -> bool:
    """Whether a ``failures.csv`` reason is that of a reserved molecule (its own block or
    another form's), a row that ``--retry-failed`` keeps and the summary counts as reserved."""
    return reason == RESERVED_REASON or reason.startswith(FORM_REASON.split("{")[0])


def check_match_rule(meta: dict, root: str | Path) -> None:
    """Refuse to add to, or train on, the dataset at ``root`` (its index's ``meta``) when it was
    built under another rule than :data:`MATCH_RULE` (``reserved_match``; none recorded: an older
    molscore, which compared the molecule's own InChIKey block only, or an index made by hand),
    since its stored molecules were checked under that rule: training compares their stored
    block alone, so the tautomers and charge forms of reserved molecules such a build stored
    would be trained on.

    Raises:
        ValueError: one line naming the setting and both rules.
    """
    held = meta.get("reserved_match")
    if held != MATCH_RULE:
        older = " (none recorded: an older molscore, which compared the InChIKey first block only)"
        raise ValueError(f"{root} was built under another reserved-molecule rule: reserved_match "
                         f"{held!r}{older if held is None else ''}, this molscore's {MATCH_RULE!r}; "
                         "build it again in a new folder")


def list_identity(path: str | Path | None) -> str | None:
    """How a build records its extra reserved list (``--reserved``, the index meta's
    ``reserved``): the file's name and the SHA-256 of its content (the same list moved or
    copied elsewhere is the same setting; an edited one not). ``None`` for no list."""
    if path is None:
        return None
    path = Path(path)
    try:
        return f"{path.name} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:16]})"
    except OSError:                 # reported where the list is read
        return str(path)


def shipped_identity() -> str:
    """:func:`list_identity` of the shipped list (:data:`DEFAULT_RESERVED_PATH`): what a build
    records as ``reserved_shipped``, so that a build begun under another version of the list is
    not resumed and training on it says that its molecules' forms were compared with another list."""
    return list_identity(DEFAULT_RESERVED_PATH)
