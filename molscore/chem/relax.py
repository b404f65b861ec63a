"""Force-field relaxation of conformers (MMFF94, UFF where MMFF has no parameters).

* :func:`relax_conformers`: full minimisation of every conformer (``--relax``);
* :func:`restrained_cleanup`: a short minimisation with every heavy atom held by a flat-bottom
  harmonic restraint to where it is, which repairs local geometry (bond lengths, angles,
  hydrogens, ring planarity, close contacts) without moving the conformation: no heavy atom
  ends more than about ``max_displacement`` Å from its input position.
"""
from __future__ import annotations

from typing import Sequence

from rdkit import Chem, rdBase
from rdkit.Chem import AllChem

__all__ = ["relax_conformers", "restrained_cleanup"]


def relax_conformers(mol: Chem.Mol, max_iters: int = 500, num_threads: int = 1) -> tuple[list[float], str]:
    """Minimise every conformer of ``mol`` in place (explicit hydrogens needed).

    MMFF94 when RDKit has parameters for every atom, else UFF.

    Returns:
        ``(energies, forcefield)``: one energy in kcal/mol per conformer, in conformer order,
        and ``"MMFF94"`` or ``"UFF"``.

    Raises:
        ValueError: neither force field has parameters for this molecule.
    """
    with rdBase.BlockLogs():
        if AllChem.MMFFHasAllMoleculeParams(mol):
            out = AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=num_threads, maxIters=max_iters)
            name = "MMFF94"
        elif AllChem.UFFHasAllMoleculeParams(mol):
            out = AllChem.UFFOptimizeMoleculeConfs(mol, numThreads=num_threads, maxIters=max_iters)
            name = "UFF"
        else:
            raise ValueError("no MMFF94 or UFF parameters for this molecule")
    return [float(energy) for _, energy in out], name


class _ForceFields:
    """Builds an MMFF94 (else UFF) force field for one conformer of ``mol``; the MMFF
    parameters are typed once per molecule."""

    def __init__(self, mol: Chem.Mol):
        self.mol = mol
        with rdBase.BlockLogs():
            self.mmff = (AllChem.MMFFGetMoleculeProperties(mol)
                         if AllChem.MMFFHasAllMoleculeParams(mol) else None)
            self.uff = self.mmff is None and AllChem.UFFHasAllMoleculeParams(mol)

    @property
    def available(self) -> bool:
        return self.mmff is not None or self.uff

    def __call__(self, conf_id: int, restrained: Sequence[int], max_displacement: float,
                 force_constant: float):
        with rdBase.BlockLogs():
            if self.mmff is not None:
                ff = AllChem.MMFFGetMoleculeForceField(self.mol, self.mmff, confId=conf_id)
                add = ff.MMFFAddPositionConstraint
            else:
                ff = AllChem.UFFGetMoleculeForceField(self.mol, confId=conf_id)
                add = ff.UFFAddPositionConstraint
        for i in restrained:
            add(int(i), max_displacement, force_constant)
        return ff


def restrained_cleanup(mol: Chem.Mol, conf_ids: Sequence[int] | None = None, *,
                       max_displacement: float = 0.25, force_constant: float = 100.0,
                       max_iters: int = 200) -> bool:
    """Repair the local geometry of conformers of ``mol`` in place (explicit hydrogens needed).

    MMFF94 (UFF where MMFF has no parameters) minimisation for at most ``max_iters``
    iterations, with every heavy atom restrained by a flat-bottom harmonic potential
    (``force_constant`` kcal/mol/Å², free within ``max_displacement`` Å of its input
    position); hydrogens move freely.

    Args:
        mol: the molecule; conformers are changed in place.
        conf_ids: conformers to clean (default all).

    Returns:
        False when neither force field has parameters for ``mol`` (nothing changed), else True.
    """
    fields = _ForceFields(mol)
    if not fields.available:
        return False
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    ids = [c.GetId() for c in mol.GetConformers()] if conf_ids is None else conf_ids
    for cid in ids:
        ff = fields(cid, heavy, max_displacement, force_constant)
        ff.Initialize()
        ff.Minimize(maxIts=max_iters)
        # Minimize updates the force field's own coordinates; write them back.
        pos = ff.Positions()
        conf = mol.GetConformer(cid)
        for i in range(mol.GetNumAtoms()):
            conf.SetAtomPosition(i, pos[3 * i:3 * i + 3])
    return True
