"""Coordinates in and out of RDKit conformers."""
from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Geometry import Point3D

__all__ = ["set_positions", "add_conformer"]


def set_positions(conf: Chem.Conformer, xyz: np.ndarray) -> None:
    """Overwrite every atom position of ``conf`` with ``xyz`` ``(N, 3)`` (Å)."""
    for i, p in enumerate(np.asarray(xyz, dtype=float)):
        conf.SetAtomPosition(i, Point3D(*p))


def add_conformer(mol: Chem.Mol, xyz: np.ndarray) -> int:
    """Add a 3D conformer with coordinates ``xyz`` ``(N, 3)`` to ``mol``; returns its id."""
    conf = Chem.Conformer(mol.GetNumAtoms())
    set_positions(conf, xyz)
    conf.Set3D(True)
    return mol.AddConformer(conf, assignId=True)
