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
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from .coords import add_conformer
from .rdkit_log import rdkit_quiet
from .stereo import check_stereo, has_specified_stereo, specified_centres

__all__ = ["HYDROGENS", "embedding_skeleton", "embed_conformers"]

HYDROGENS = ("all", "stereo")
"""The ``hydrogens`` choices of :func:`embed_conformers`."""

_ATOM = "_molscore_atom"
_MAX_PLACED_H = 2.5     # Å: a hydrogen AddHs placed further from its atom (H-I: 1.6) was not placed
_MIN_UNSTEREO_EMBEDDINGS = 20   # embeddings without stereo to draw stereo-true ones from
_MODE_FIELDS = ("useRandomCoords", "initialEmbeddingMode", "basinThresh", "maxIterations")
PROBE_MIN_COUNT = 10
"""Smallest ``count`` at which :func:`embed_conformers` probes: a probe costs one conformer
more for every molecule with stereo (``--pool 1 -n 2`` on 10,000 messy records: 13.0 min
against 11.5 with probes at any count) and saves at most ``count - 1`` per attempt."""


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
    gives none, and the conformers it falls short of ``count`` from random coordinates when it
    gives some (:func:`_top_up`). ``"stereo"`` does the same with the skeleton (:func:`embedding_skeleton`) and
    places the other hydrogens afterwards (a conformer whose hydrogens RDKit cannot place, as
    it cannot at an atom whose neighbours lie in line, is left out: :func:`_hydrogens_placed`);
    when neither gives a conformer, ``mol`` itself is
    embedded from random coordinates. Last, for a molecule with specified stereo, a copy
    without it is embedded from random coordinates and the conformers that have ``mol``'s
    stereo (:func:`~molscore.chem.stereo.check_stereo`) are kept: ETKDG's chirality checks
    reject most embeddings of some strained cages (3 of 4 for a bicyclo[2.1.0] oxetane of
    GEOM's QM9) that it builds without them. ``params`` is as before afterwards (RDKit's
    random-coordinate embedding changes some of its fields in place; :func:`_embedding_mode`).

    With specified stereo and ``count >= PROBE_MIN_COUNT``, each attempt is first probed with
    its first conformer alone (ETKDG seeds each conformer by its index, so that is the
    attempt's first conformer). When no probe embeds, and the copy without stereo embeds but none of
    ``2 * count`` of its embeddings (as many as two full attempts make, and cheap: ETKDG
    builds them at the first try) has ``mol``'s stereo (:func:`_stereo_unbuildable`), ``mol``
    is taken as an isomer ETKDG cannot build and none is returned without the full attempts,
    which cost ``count`` probes each (a camphor with an inverted bridgehead: 2 min at
    ``count = 50``, 3 s with the probes). Otherwise the result is that without the probes.

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
    with rdkit_quiet():
        probes_fail = (count >= PROBE_MIN_COUNT and has_specified_stereo(mol)
                       and not any(_first_embeds(work, random, params) for work, random in attempts))
        if probes_fail and _stereo_unbuildable(out, 2 * count, params):
            return out
        for work, from_random in attempts:
            with _embedding_mode(params, from_random):
                ids = _embed(work, count, params)
            if ids:
                if len(ids) < count and not from_random:
                    ids += _top_up(work, count - len(ids), params)
                break
        else:
            return _embed_without_stereo(out, count, params)
    if work is out:
        return out
    full = Chem.AddHs(work, addCoords=True)
    order = _atom_order(full, mol)
    if order is None:
        raise ValueError("the embedding skeleton with its hydrogens does not have the molecule's atoms")
    h_bonds = _hydrogen_bonds(out)
    for cid in ids:
        pos = full.GetConformer(cid).GetPositions()[order]
        if _hydrogens_placed(h_bonds, pos):
            add_conformer(out, pos)
    return out


def _hydrogen_bonds(mol: Chem.Mol) -> np.ndarray:
    """``(K, 2)`` atoms of each bond of ``mol`` to a hydrogen."""
    return np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()
                     if 1 in (b.GetBeginAtom().GetAtomicNum(), b.GetEndAtom().GetAtomicNum())],
                    dtype=np.int64).reshape(-1, 2)


def _hydrogens_placed(h_bonds: np.ndarray, pos: np.ndarray) -> bool:
    """Whether every bond to a hydrogen, ``h_bonds`` ``(K, 2)`` (:func:`_hydrogen_bonds`), is at
    most :data:`_MAX_PLACED_H` Å long in ``pos`` ``(N, 3)``: ``AddHs(addCoords=True)`` leaves at
    the origin the hydrogens of an atom whose neighbours the skeleton's embedding put in line
    (a CH2 of a long PEG chain at 180 degrees: 2 of 6 conformers of a 51-heavy-atom PEG, with
    a C-H of 5.2 and 11.0 Å)."""
    lengths = np.linalg.norm(pos[h_bonds[:, 0]] - pos[h_bonds[:, 1]], axis=-1)
    return bool((lengths <= _MAX_PLACED_H).all())


def _top_up(work: Chem.Mol, missing: int, params: AllChem.EmbedParameters) -> list[int]:
    """Ids of up to ``missing`` conformers embedded from random coordinates (``params``
    otherwise) and added to ``work``, whose embedding from eigenvectors fell short: that fails
    often on long flexible molecules (2 of 50 conformers of an 83-heavy-atom PEG chain of
    ``bioactive_dev``, 50 of 50 from random coordinates), and the pool would be a few
    conformers repeated."""
    extra = Chem.Mol(work)
    extra.RemoveAllConformers()
    with _embedding_mode(params, True):
        got = _embed(extra, missing, params)
    return [work.AddConformer(extra.GetConformer(cid), assignId=True) for cid in got]


def _embed(work: Chem.Mol, count: int, params: AllChem.EmbedParameters) -> list[int]:
    """``EmbedMultipleConfs``; a Ctrl-C that RDKit catches while it embeds is raised as soon
    as it returns (:func:`~molscore.chem.rdkit_log.rdkit_quiet`)."""
    with rdkit_quiet():
        return list(AllChem.EmbedMultipleConfs(work, count, params))


@contextmanager
def _embedding_mode(params: AllChem.EmbedParameters, from_random: bool) -> Iterator[None]:
    """``params`` with ``useRandomCoords = from_random`` inside the block, and as before after
    it: an embedding from random coordinates also sets ``initialEmbeddingMode``,
    ``basinThresh`` and ``maxIterations`` (10 per atom of that molecule) in ``params``, and an
    embedding from eigenvectors with those left in place gives other conformers."""
    saved = {field: getattr(params, field) for field in _MODE_FIELDS}
    params.useRandomCoords = from_random
    try:
        yield
    finally:
        for field, value in saved.items():
            setattr(params, field, value)


def _first_embeds(work: Chem.Mol, from_random: bool, params: AllChem.EmbedParameters) -> bool:
    """Whether ETKDG builds the first of ``work``'s conformers (one conformer, on a copy) with
    ``params`` and ``useRandomCoords = from_random``."""
    with _embedding_mode(params, from_random):
        return bool(_embed(Chem.Mol(work), 1, params))


def _stereo_unbuildable(mol: Chem.Mol, embeddings: int, params: AllChem.EmbedParameters) -> bool:
    """Whether ``mol`` (no conformers) looks like a stereoisomer ETKDG cannot build: the first
    embedding of its copy without stereo (from random coordinates) succeeds, and none of
    ``embeddings`` (at least 20) such embeddings has ``mol``'s stereo. False when that first
    embedding fails: a cage ETKDG hardly builds even without stereo, on which the failing
    embeddings would cost seconds."""
    flat = Chem.Mol(mol)
    Chem.RemoveStereochemistry(flat)
    if not _first_embeds(flat, True, params):
        return False
    return not _embed_without_stereo(Chem.Mol(mol), embeddings, params).GetNumConformers()


def _embed_without_stereo(mol: Chem.Mol, count: int, params: AllChem.EmbedParameters) -> Chem.Mol:
    """``mol`` (no conformers) with up to ``count`` of the embeddings of a copy without
    stereo (``count``, at least 20; from random coordinates) that have ``mol``'s stereo; none
    when ``mol`` has no specified stereo."""
    if not has_specified_stereo(mol):
        return mol
    flat = Chem.Mol(mol)
    Chem.RemoveStereochemistry(flat)
    with _embedding_mode(params, True):
        ids = _embed(flat, max(count, _MIN_UNSTEREO_EMBEDDINGS), params)
    for cid in ids:
        if mol.GetNumConformers() == count:
            break
        kept = add_conformer(mol, flat.GetConformer(cid).GetPositions())
        if not check_stereo(mol, kept).ok:
            mol.RemoveConformer(kept)
    return mol
