"""ETKDG embedding of a molecule with all its hydrogens, or with those the stereo needs only.

ETKDG's cost grows faster than the atom count, and about half of a drug-like molecule's atoms
are hydrogens. With ``hydrogens="stereo"``, :func:`embed_conformers` embeds the heavy-atom
skeleton with explicit hydrogens kept on the tetrahedral stereocentres only (without those,
ETKDG's chirality checks fail often and it retries: 20 conformers of erythromycin took 33 s
without any hydrogens, 9 s with all, 2 s with the centres' only), then puts every other
hydrogen at its ideal place (``AddHs(addCoords=True)``). That is about four times as fast on
drug-like molecules, but the conformers are not ETKDG's: the pool's first pick is further
from crystal poses, and more of them fail a geometry check (``benchmarks/pool_hydrogens/``).
"""
from __future__ import annotations

from collections import defaultdict

from rdkit import Chem, rdBase
from rdkit.Chem import AllChem

from .coords import add_conformer
from .stereo import check_stereo, specified_centres, specified_double_bonds

__all__ = ["HYDROGENS", "embedding_skeleton", "embed_conformers"]

HYDROGENS = ("all", "stereo")
"""The ``hydrogens`` choices of :func:`embed_conformers`."""

_ATOM = "_molscore_atom"
_MIN_UNSTEREO_EMBEDDINGS = 20   # embeddings without stereo to draw stereo-true ones from


def embedding_skeleton(mol: Chem.Mol) -> Chem.Mol:
    """``mol`` without its hydrogens, but for those on tetrahedral stereocentres (and those
    ``Chem.RemoveHs`` keeps: isotopes, hydrogens that define a double bond's stereo, ...). Each
    atom taken from ``mol`` carries its index there as the int property ``_molscore_atom``."""
    work = Chem.Mol(mol)
    work.RemoveAllConformers()
    for atom in work.GetAtoms():
        atom.SetIntProp(_ATOM, atom.GetIdx())
    skeleton = Chem.RemoveHs(work)
    centres = list(specified_centres(skeleton))
    return Chem.AddHs(skeleton, onlyOnAtoms=centres) if centres else skeleton


def _atom_order(full: Chem.Mol, mol: Chem.Mol) -> list[int] | None:
    """``order[i]``: the atom of ``full`` (the skeleton with ``AddHs``) that is atom ``i`` of
    ``mol``; the added hydrogens of one heavy atom are interchangeable. None when the two do
    not have the same atoms."""
    if full.GetNumAtoms() != mol.GetNumAtoms():
        return None
    order = [-1] * mol.GetNumAtoms()
    added: dict[int, list[int]] = defaultdict(list)      # mol index of a heavy atom -> its new Hs
    for atom in full.GetAtoms():
        if atom.HasProp(_ATOM):
            order[atom.GetIntProp(_ATOM)] = atom.GetIdx()
        else:
            added[atom.GetNeighbors()[0].GetIntProp(_ATOM)].append(atom.GetIdx())
    for i, atom in enumerate(mol.GetAtoms()):
        if order[i] < 0:
            spare = added.get(atom.GetNeighbors()[0].GetIdx()) if atom.GetDegree() == 1 else None
            if not spare:
                return None
            order[i] = spare.pop(0)
    return order


def embed_conformers(mol: Chem.Mol, count: int, params: AllChem.EmbedParameters,
                     hydrogens: str = "all") -> Chem.Mol:
    """Up to ``count`` ETKDG conformers of ``mol`` (hydrogens explicit), in ``mol``'s atom order.

    ``hydrogens="all"`` embeds ``mol`` with ``params``, then from random coordinates when that
    gives none. ``"stereo"`` does the same with the skeleton (:func:`embedding_skeleton`) and
    places the other hydrogens afterwards; when neither gives a conformer, ``mol`` itself is
    embedded from random coordinates. Last, for a molecule with specified stereo, a copy
    without it is embedded from random coordinates and the conformers that have ``mol``'s
    stereo (:func:`~molscore.chem.stereo.check_stereo`) are kept: ETKDG's chirality checks
    reject most embeddings of some strained cages (3 of 4 for a bicyclo[2.1.0] oxetane of
    GEOM's QM9) that it builds without them. ``params.useRandomCoords`` is set for each
    attempt and restored.

    Returns:
        a copy of ``mol`` holding the conformers (none when ETKDG failed).

    Raises:
        ValueError: ``hydrogens`` is not one of :data:`HYDROGENS`, or the skeleton with its
            hydrogens added does not have ``mol``'s atoms.
    """
    if hydrogens not in HYDROGENS:
        raise ValueError(f"unknown hydrogens {hydrogens!r}; choose from {', '.join(HYDROGENS)}")
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    skeleton = embedding_skeleton(mol) if hydrogens == "stereo" else out
    attempts = [(skeleton, False), (skeleton, True)] + ([(out, True)] if skeleton is not out else [])
    random_coords = params.useRandomCoords
    try:
        with rdBase.BlockLogs():
            for work, from_random in attempts:
                params.useRandomCoords = from_random
                ids = list(AllChem.EmbedMultipleConfs(work, count, params))
                if ids:
                    break
            else:
                params.useRandomCoords = True
                return _embed_without_stereo(out, count, params)
    finally:
        params.useRandomCoords = random_coords
    if work is out:
        return out
    full = Chem.AddHs(work, addCoords=True)
    order = _atom_order(full, mol)
    if order is None:
        raise ValueError("the embedding skeleton with its hydrogens does not have the molecule's atoms")
    for cid in ids:
        add_conformer(out, full.GetConformer(cid).GetPositions()[order])
    return out


def _embed_without_stereo(mol: Chem.Mol, count: int, params: AllChem.EmbedParameters) -> Chem.Mol:
    """``mol`` (no conformers) with up to ``count`` of the embeddings of a copy without
    stereo (``count``, at least 20) that have ``mol``'s stereo; none when ``mol`` has no
    specified stereo."""
    if not specified_centres(mol) and not specified_double_bonds(mol):
        return mol
    flat = Chem.Mol(mol)
    Chem.RemoveStereochemistry(flat)
    for cid in AllChem.EmbedMultipleConfs(flat, max(count, _MIN_UNSTEREO_EMBEDDINGS), params):
        if mol.GetNumConformers() == count:
            break
        kept = add_conformer(mol, flat.GetConformer(cid).GetPositions())
        if not check_stereo(mol, kept).ok:
            mol.RemoveConformer(kept)
    return mol
