"""Stereo guidance: a molecule's specified stereo as a restraint on the denoised estimate.

A score network that has learned chirality only approximately produces, from the prior,
many conformers whose stereocentres come out flat or inverted, or whose double bonds come
out with the wrong E/Z; the generator then has to resample them (``benchmarks/prior_steps``:
about half of the first round). The stereo the input specifies is known exactly, so it can
steer the sampler instead, much as a classifier guides a conditional sampler.

:class:`StereoRestraints` holds, for a batch of molecules, every signed volume and every
double-bond dihedral that the specified stereo fixes, with a flat-bottomed energy that is
zero when the stereo is clear:

* a tetrahedral centre contributes each triple of unit vectors to its neighbours that
  :func:`molscore.chem.stereo.centre_volumes` uses (one for three neighbours, four for four),
  as ``relu(margin - sign * det(u_a, u_b, u_c))^2`` with the sign its chiral tag asks for
  (``margin`` :data:`VOLUME_MARGIN`, :data:`PYRAMID_MARGIN` for three neighbours). A
  centre in a three- or four-membered ring, whose correct geometry can have one triple near
  zero, contributes the sum of its four volumes (with ``4 * margin``) instead;
* a double bond with specified E/Z (or cis/trans) contributes
  ``relu(margin - s * cos(phi))^2`` for the dihedral ``phi`` between its stereo
  atoms, with ``s = +1`` for cis (RDKit's ``STEREOZ`` and ``STEREOCIS``: the stereo atoms of a ``Z``
  bond are its CIP-highest neighbours, which are cis) and ``-1`` for trans. ``margin`` is
  :data:`COSINE_MARGIN`, or :data:`RING_COSINE_MARGINS` for a bond whose smallest ring has
  8 or 9 atoms: such a ring twists a trans bond far from flat (MMFF94 minima of the stereo
  atoms' dihedral: 124 deg in the cyclopropane-fused trans-cyclooctene
  ``C1C[C@H]2C[C@H]2CC/C=C/1``, 131-133 in trans-cyclooctenes, 143-155 in trans-cyclononenes,
  157-165 in trans-cyclodecene), where :data:`COSINE_MARGIN` asks for at least 154 deg
  (the margins' dihedrals lie below those minima: 120 and 139 deg).

:func:`guided_score` wraps a score function: at every call it forms Tweedie's denoised
estimate ``x0 = (x + s(t)^2 score) / m(t)``, lowers the energy of ``x0`` (in Å) by ``steps``
Polyak steps per molecule (:meth:`StereoRestraints.correct`: no step size to tune; each step
moves no atom further than :data:`MAX_MOVE` Å), and
returns the score of the corrected estimate, ``score + m(t) (x0' - x0) / s(t)^2``. Each
reverse step then moves towards the corrected estimate by the fraction of the noise it
removes, so the correction has the same size in Å at every noise level, and it is exactly
zero where the stereo is already clear (ETKDG starts, for example). Nothing here knows
which sampler runs. ``benchmarks/stereo_guidance/`` measures it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from rdkit import Chem
from torch import Tensor

from ..sde import SDE
from ..spaces import Space
from .stereo import (bond_order_neighbours, specified_centres, specified_double_bonds, stereo_bond_atoms,
                     volume_triples)

__all__ = ["StereoRestraints", "guided_score", "VOLUME_MARGIN", "PYRAMID_MARGIN", "COSINE_MARGIN",
           "RING_COSINE_MARGINS", "MAX_MOVE"]

VOLUME_MARGIN = 0.5    # signed volume of unit vectors: 0.77 ideal, 0.2 the stereo check's bound
PYRAMID_MARGIN = 0.3   # the same for a three-coordinate centre (a sulfoxide S: about 0.45)
COSINE_MARGIN = 0.9     # |cos| of the stereo atoms' dihedral: within 26 deg of cis / trans
RING_COSINE_MARGINS = {8: 0.5, 9: 0.75}   # the same by the size of the bond's smallest ring
MAX_MOVE = 0.3          # Å: the largest move of any atom in one Polyak step (a wrong double bond
                        # sampled planar sits where the gradient vanishes but the energy does not)

_CIS = (Chem.BondStereo.STEREOZ, Chem.BondStereo.STEREOCIS)


@dataclass
class StereoRestraints:
    """Stereo restraints of a batch of molecules, as rows of atom indices into ``x`` ``(N, 3)``.

    Attributes:
        volumes: ``(K, 4)`` long, ``[centre, a, b, c]``: one signed volume
            ``det(u_a, u_b, u_c)`` of the unit vectors from the centre.
        volume_sign: ``(K,)`` float, ``+1`` or ``-1``: the sign the stereo asks for.
        volume_group: ``(K,)`` long: rows of one group are summed before the margin (a
            small-ring centre's four triples form one group, every other row its own).
        group_margin: ``(G,)`` float: the margin of each group.
        group_atom: ``(G,)`` long: each group's centre atom.
        dihedrals: ``(D, 4)`` long, ``[a, b, c, d]``: stereo atom, double bond, stereo atom.
        cis: ``(D,)`` float, ``+1`` for cis and ``-1`` for trans.
        dihedral_margin: ``(D,)`` float: the cosine margin of each dihedral.
    """

    volumes: Tensor
    volume_sign: Tensor
    volume_group: Tensor
    group_margin: Tensor
    group_atom: Tensor
    dihedrals: Tensor
    cis: Tensor
    dihedral_margin: Tensor

    @classmethod
    def from_mol(cls, mol: Chem.Mol) -> "StereoRestraints":
        """The restraints of ``mol``'s specified tetrahedral centres and double bonds
        (atom indices of ``mol``, hydrogens explicit; margins :data:`VOLUME_MARGIN`,
        :data:`PYRAMID_MARGIN` for three neighbours; :data:`COSINE_MARGIN`, or by the size
        of a double bond's smallest ring :data:`RING_COSINE_MARGINS`)."""
        volumes, signs, groups, margins, centres = [], [], [], [], []
        rings = mol.GetRingInfo()
        for centre, tag in specified_centres(mol).items():
            nbrs = bond_order_neighbours(mol, centre)
            handed = 1.0 if tag == Chem.ChiralType.CHI_TETRAHEDRAL_CCW else -1.0
            if len(nbrs) not in (3, 4):
                continue
            margin = PYRAMID_MARGIN if len(nbrs) == 3 else VOLUME_MARGIN
            triples = [([nbrs[k] for k in trio], handed * sign) for trio, sign in volume_triples(len(nbrs))]
            summed = len(triples) == 4 and (rings.IsAtomInRingOfSize(centre, 3)
                                            or rings.IsAtomInRingOfSize(centre, 4))
            if summed:                                  # one group of four rows
                margins.append(4 * margin)
                centres.append(centre)
            for trio, sign in triples:
                if not summed:                          # a group of its own
                    margins.append(margin)
                    centres.append(centre)
                volumes.append([centre, *trio])
                signs.append(sign)
                groups.append(len(margins) - 1)
        dihedrals, cis, cos_margins = [], [], []
        for idx, label in specified_double_bonds(mol).items():
            quad = stereo_bond_atoms(mol, idx)
            if quad is not None:
                dihedrals.append(list(quad))
                cis.append(1.0 if label in _CIS else -1.0)
                cos_margins.append(RING_COSINE_MARGINS.get(rings.MinBondRingSize(idx), COSINE_MARGIN))
        return cls(torch.tensor(volumes, dtype=torch.long).reshape(-1, 4),
                   torch.tensor(signs, dtype=torch.float32),
                   torch.tensor(groups, dtype=torch.long),
                   torch.tensor(margins, dtype=torch.float32),
                   torch.tensor(centres, dtype=torch.long),
                   torch.tensor(dihedrals, dtype=torch.long).reshape(-1, 4),
                   torch.tensor(cis, dtype=torch.float32),
                   torch.tensor(cos_margins, dtype=torch.float32))

    @classmethod
    def batch(cls, parts: Sequence["StereoRestraints"], counts: Sequence[int]) -> "StereoRestraints":
        """The restraints of molecules stacked in one ``x``: part ``k``'s atom indices are
        shifted by the atoms ``counts[:k]`` before it, its groups by the groups before it."""
        atom_offsets = torch.cumsum(torch.tensor([0, *counts[:-1]]), 0).tolist()
        group_offsets = torch.cumsum(torch.tensor([0, *[p.group_margin.numel() for p in parts[:-1]]]),
                                     0).tolist()
        return cls(torch.cat([p.volumes + o for p, o in zip(parts, atom_offsets)]),
                   torch.cat([p.volume_sign for p in parts]),
                   torch.cat([p.volume_group + g for p, g in zip(parts, group_offsets)]),
                   torch.cat([p.group_margin for p in parts]),
                   torch.cat([p.group_atom + o for p, o in zip(parts, atom_offsets)]),
                   torch.cat([p.dihedrals + o for p, o in zip(parts, atom_offsets)]),
                   torch.cat([p.cis for p in parts]),
                   torch.cat([p.dihedral_margin for p in parts]))

    def to(self, device: torch.device | str) -> "StereoRestraints":
        return StereoRestraints(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    @property
    def empty(self) -> bool:
        return self.volumes.shape[0] == 0 and self.dihedrals.shape[0] == 0

    def residuals(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """How far each restraint is from its flat bottom (0 when satisfied): ``(G,)`` for the
        volume groups and ``(D,)`` for the dihedrals, of coordinates ``x`` ``(N, 3)``."""
        groups = x.new_zeros(0)
        if self.volumes.shape[0]:
            u = x[self.volumes[:, 1:]] - x[self.volumes[:, :1]]                    # (K, 3, 3)
            u = u / u.norm(dim=-1, keepdim=True).clamp(min=1e-6)
            vol = (u[:, 0] * torch.linalg.cross(u[:, 1], u[:, 2])).sum(-1) * self.volume_sign.to(x)
            summed = torch.zeros_like(self.group_margin, dtype=x.dtype).index_add(0, self.volume_group, vol)
            groups = torch.relu(self.group_margin.to(x) - summed)
        p = x[self.dihedrals]                                                         # (D, 4, 3)
        b1 = p[:, 2] - p[:, 1]
        b1 = b1 / b1.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        v = p[:, 0] - p[:, 1]
        w = p[:, 3] - p[:, 2]
        v = v - (v * b1).sum(-1, keepdim=True) * b1
        w = w - (w * b1).sum(-1, keepdim=True) * b1
        cos = (v * w).sum(-1) / (v.norm(dim=-1) * w.norm(dim=-1)).clamp(min=1e-6)
        return groups, torch.relu(self.dihedral_margin.to(x) - self.cis.to(x) * cos)

    def energy(self, x: Tensor, sample: Tensor | None = None, num_samples: int = 1) -> Tensor:
        """Restraint energy (sum of squared residuals) of coordinates ``x`` ``(N, 3)``: a
        scalar, or per sample ``(num_samples,)`` when ``sample`` ``(N,)`` gives each atom's."""
        groups, dihedrals = self.residuals(x)
        if sample is None:
            return groups.pow(2).sum() + dihedrals.pow(2).sum()
        out = x.new_zeros(num_samples).index_add(0, sample[self.group_atom], groups.pow(2))
        return out.index_add(0, sample[self.dihedrals[:, 1]], dihedrals.pow(2))

    def correct(self, x: Tensor, steps: int, strength: float = 1.0, sample: Tensor | None = None,
                num_samples: int = 1, max_move: float = MAX_MOVE) -> Tensor:
        """Lower the energy of ``x`` ``(N, 3)`` by ``steps`` Polyak steps per sample,
        ``x <- x - strength * E / |grad E|^2 * grad E`` (``sample`` ``(N,)``: each atom's
        sample, default all one). The step is scale-free: for one violated restraint it
        halves the residual (``strength = 1``) in the linear regime, whatever the atoms' units.
        It is shortened where it would move an atom of its sample further than ``max_move``
        (in the units of ``x``; Å as :func:`guided_score` calls it): at a double bond exactly
        cis where trans is asked (or the reverse) the gradient vanishes while the energy is at
        its largest, and the plain Polyak step would throw atoms tens of Å.
        Returns a new tensor; samples with zero energy do not move."""
        x = x.detach()
        if self.empty:
            return x.clone()
        if sample is None:
            sample = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        for _ in range(steps):
            with torch.enable_grad():
                y = x.requires_grad_(True)
                energy = self.energy(y, sample, num_samples)
                (grad,) = torch.autograd.grad(energy.sum(), y)
            atom_norm2 = grad.pow(2).sum(-1)                                          # (N,)
            norm2 = x.new_zeros(num_samples).index_add(0, sample, atom_norm2)
            largest = x.new_zeros(num_samples).scatter_reduce(0, sample, atom_norm2.sqrt(), "amax")
            step = strength * energy.detach() / norm2.clamp(min=1e-12)
            step = torch.minimum(step, max_move / largest.clamp(min=1e-12))
            x = (y - step[sample].unsqueeze(-1) * grad).detach()
        return x


def guided_score(score_fn: Callable[[Tensor, Tensor], Tensor], sde: SDE, space: Space,
                 restraints: StereoRestraints, *, strength: float = 1.0, steps: int = 5,
                 scale: float = 1.0) -> Callable[[Tensor, Tensor], Tensor]:
    """``score_fn`` with stereo guidance (module docstring).

    Args:
        score_fn: ``(x (N, 3), t (B,)) -> score (N, 3)``.
        sde: the SDE being sampled (for ``m(t)``, ``s(t)``).
        space: the batch's point-set space (per-sample times to rows).
        restraints: of the molecules in ``x``, indices into its rows.
        strength: size of the Polyak steps on the denoised estimate
            (:meth:`StereoRestraints.correct`; 1 halves a single residual per step).
        steps: Polyak steps per call.
        scale: Å per unit of ``x`` (the model's ``coord_scale``).
    """
    def guided(x: Tensor, t: Tensor) -> Tensor:
        score = score_fn(x, t)
        mean, std = sde.marginal(t)
        m, s2 = space.expand(mean).to(x), space.expand(std).to(x) ** 2
        x0 = (x + s2 * score) / m
        shift = restraints.correct(x0 * scale, steps, strength, space.batch,
                                   space.num_samples) / scale - x0
        return score + m * shift / s2

    return guided
