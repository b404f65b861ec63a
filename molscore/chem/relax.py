"""Force-field relaxation of conformers (MMFF94, UFF where MMFF has no parameters).

* :func:`relax_conformers`: full minimisation of every conformer (``--relax``);
* :func:`restrained_cleanup`: a short minimisation with every heavy atom held by a flat-bottom
  harmonic restraint to where it is, which repairs local geometry (bond lengths, angles,
  hydrogens, ring planarity, close contacts) without moving the conformation: no heavy atom
  ends more than about ``max_displacement`` Å from its input position.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem

from .coords import set_positions

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


def restrained_cleanup(mol: Chem.Mol, conf_ids: Sequence[int] | None = None, *,
                       max_displacement: float = 0.25, force_constant: float = 100.0,
                       max_iters: int = 200) -> bool:
    """Repair the local geometry of conformers of ``mol`` in place (explicit hydrogens needed).

    MMFF94 (UFF where MMFF has no parameters) minimisation for at most ``max_iters``
    iterations, with every heavy atom restrained by a flat-bottom harmonic potential
    (``force_constant`` kcal/mol/Å², free within ``max_displacement`` Å of its input
    position); hydrogens move freely. The MMFF parameters are typed once per call.

    Args:
        mol: the molecule; conformers are changed in place.
        conf_ids: conformers to clean (default all).

    Returns:
        False when neither force field has parameters for ``mol`` (nothing changed), else True.
    """
    with rdBase.BlockLogs():
        mmff = AllChem.MMFFGetMoleculeProperties(mol) if AllChem.MMFFHasAllMoleculeParams(mol) else None
        if mmff is None and not AllChem.UFFHasAllMoleculeParams(mol):
            return False
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    ids = [c.GetId() for c in mol.GetConformers()] if conf_ids is None else conf_ids
    for cid in ids:
        with rdBase.BlockLogs():
            if mmff is not None:
                ff = AllChem.MMFFGetMoleculeForceField(mol, mmff, confId=cid)
                restrain = ff.MMFFAddPositionConstraint
            else:
                ff = AllChem.UFFGetMoleculeForceField(mol, confId=cid)
                restrain = ff.UFFAddPositionConstraint
        for i in heavy:
            restrain(i, max_displacement, force_constant)
        ff.Initialize()
        ff.Minimize(maxIts=max_iters)
        # Minimize moves the force field's own copy of the coordinates; write them back.
        set_positions(mol.GetConformer(cid), np.reshape(ff.Positions(), (-1, 3)))
    return True
