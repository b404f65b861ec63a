"""Force-field relaxation of conformers (MMFF94, UFF where MMFF has no parameters)."""
from __future__ import annotations

from rdkit import Chem, rdBase
from rdkit.Chem import AllChem

__all__ = ["relax_conformers"]


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
