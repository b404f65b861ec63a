"""Conformer generation from SMILES with a trained conformer score model.

Pipeline per molecule: :func:`~molscore.chem.featurize.prepare_mol` (validation, explicit
hydrogens appended after the input's atoms), unspecified stereo chosen from the seed
(:func:`~molscore.chem.stereo.assign_unspecified_stereo`; when ETKDG cannot build it, up to
:data:`~molscore.chem.stereo.MAX_OTHER_ISOMERS` others, those of embeddings without stereo,
:func:`~molscore.chem.stereo.isomer_choices`; the isomer taken is what the ``smiles``
property records), featurisation, then reverse-time sampling with the engine's
samplers on a :class:`~molscore.spaces.PointSetSpace` holding many molecules x conformers per
batch (``batch_size`` atoms per batch).

Two routes (``init``); the conformer benchmarks chose the default, ``etkdg`` with a pool of
ETKDG conformers that grows with ``n`` (:func:`default_pool`) and max-min picks
(``benchmarks/conformers.md``; ``benchmarks/conformers_kmedoids.md`` with k-medoids picks,
``benchmarks/conformers_pool1.md`` without the pool):

* ``prior``: reverse diffusion from the prior at ``t = T``;
* ``etkdg`` (default): RDKit ETKDGv3 conformers (``randomSeed = seed + 1``), noised to ``t_start``
  with the forward marginal, then the reverse SDE from ``t_start`` (the learned score
  corrects them; the SDE is truncated to ``[eps, t_start]``). With ``pool > n`` the starts
  are ``n`` of ``pool`` ETKDG conformers picked by ``pick`` (farthest-point by default;
  :mod:`~molscore.chem.selection`), in pick order, and the pool's next picks are spare
  starts: a rejected conformer is resampled from the next spare (from its own start again
  when there is none), so that a start ETKDG distorted is not tried again and a
  replacement does not repeat another conformer's start.

With ``stereo_guidance`` (the default from the prior) the sampler is steered towards the
input's stereo at every step (:mod:`~molscore.chem.guidance`). Every conformer then goes
through :func:`~molscore.chem.stereo.fix_stereo` (a mirror image
is reflected, single inverted centres are flipped locally; with ``cleanup``, a conformer
whose only stereo problem is a centre too close to planar gets the restrained clean-up
below and is checked again); conformers whose stereo is still wrong are resampled, up to
``max_retries`` rounds, and then dropped with the reason (never returned). Conformers
failing a :mod:`~molscore.chem.checks` geometry check get a
:func:`~molscore.chem.relax.restrained_cleanup` (``cleanup``, default on: a short MMFF94s
minimisation with heavy atoms free within 0.25 Å of the sampled positions and restrained
beyond; one that leaves as many problems is undone); those
still failing are resampled too, and after the last round kept with their problems listed
(a core's own problems, :data:`~molscore.chem.checks.GIVEN`, are listed but not resampled).
Optional MMFF94 relaxation (``energy`` in kcal/mol per conformer) and RMSD de-duplication
follow; each conformer carries ``conformer`` (index) and ``checks``
(``ok`` or the :func:`~molscore.chem.checks.check_geometry` problems) properties.

With ``core`` (:mod:`~molscore.chem.core`) the matched atoms of a posed core keep its
coordinates in every conformer: in the ETKDG starts (a coordinate map), in the sampler (the
engine's inpainting mask and known values, on point sets that are not centred, so the
conformers are in the core's frame), and in the clean-up and relaxation (fixed atoms).

Sampling noise: every conformer draw (resampling rounds included) has its own generator,
seeded from ``seed``, the input text (an input Mol's SMILES with its hydrogens) and the
draw's number (:func:`draw_generator`). So a
molecule's conformers depend only on its input, the options and the seed: not on the
other molecules of the run or their order, the number of processes, or an interrupted run
being resumed. Another batch size or device changes only the network's float rounding.
Except with the ``pc`` and ``ald`` samplers: their Langevin step size is pooled over each
sampling batch (:func:`~molscore.samplers.langevin_correct`, as in score_sde), so there a
molecule's conformers also depend on the draws sampled with it.
"""
from __future__ import annotations

import copy
import hashlib
import numbers
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem
from torch_geometric.data import Batch as GraphBatch
from tqdm.auto import tqdm

from .chem.checks import GeometryChecker
from .chem.coords import add_conformer, set_positions
from .chem.core import CORE_RMSD_TOL, Core, CoreMatch
from .chem.embedding import HYDROGENS, embed_conformers
from .chem.featurize import MoleculeError, meta_featurisation, mol_to_graph, prepare_mol
from .chem.guidance import StereoRestraints, guided_score
from .chem.io import record_smiles
from .chem.metrics import rmsd_matrix
from .chem.relax import relax_conformers, restrained_cleanup
from .chem.selection import pick_order, representative_conformers
from .chem.stereo import (ETKDG_FAILED, ETKDG_STEREO_FAILED, MAX_OTHER_ISOMERS, check_stereo,
                          etkdg_failure_reason, fix_stereo, isomer_choices, non_tetrahedral_centres,
                          unkept_smiles_stereo)
from .errors import message_line
from .models.param import ScoreModel
from .samplers import SAMPLERS, sample
from .spaces import PointSetSpace

__all__ = ["DEFAULT_STEPS", "DEFAULT_STEREO_GUIDANCE", "GenerateOptions", "GenerationResult",
           "ConformerGenerator", "generate_conformers", "default_model_path", "default_pool",
           "draw_generator", "etkdg_random_seed", "INITS"]

INITS = ("prior", "etkdg")
# Properties generation writes; an input Mol's own (e.g. from an SDF) are dropped, its
# other properties are kept in the output.
OUTPUT_PROPERTIES = ("smiles", "conformer", "checks", "energy", "forcefield", "dropped", "core_atoms")
# Default sampler steps per route: the ETKDG route only integrates [eps, t_start].
DEFAULT_STEPS = {"prior": 200, "etkdg": 10}
# Default stereo guidance strength per route (benchmarks/stereo_guidance): the prior's samples
# come out with wrong or flat stereo often; ETKDG starts have the input's stereo already.
DEFAULT_STEREO_GUIDANCE = {"prior": 1.0, "etkdg": 0.0}
# Default ETKDG pool of the etkdg route: (largest n, pool) steps, then MAX_DEFAULT_POOL.
DEFAULT_POOLS = ((10, 50), (20, 100))
MAX_DEFAULT_POOL = 200
# Largest seed: RDKit's randomSeed (ETKDG, stereo enumeration) is seed + 1, a C int; a seed of
# -1 would make it 0, with which ETKDG returns identical conformers.
MAX_SEED = 2**31 - 2
DEDUPE_MAX_MATCHES = 1000      # symmetric atom mappings per --dedupe RMSD matrix
# The input text (failures.csv) of an input Mol whose SMILES RDKit cannot write.
UNWRITABLE = "<unwritable Mol>"


def default_pool(n: int) -> int:
    """The ETKDG pool of the ``etkdg`` route for ``n`` conformers when none is given: 50 for
    ``n <= 10``, 100 for ``n <= 20``, 200 above.

    A pool helps only when it is several times ``n``: picking 10 starts from 50 scores as
    picking them from 200 (the starts alone: ``benchmarks/pool_selection*.md``; with the
    network: ``benchmarks/conformers_n10.md`` and the ensemble part of
    ``benchmarks/conformers.md`` against ``benchmarks/conformers_maxmin_pool200.md``) at
    about a third of the time (``benchmarks/generate_speed_auto.md``): ETKDG dominates the
    run on a CPU.
    """
    for largest_n, pool in DEFAULT_POOLS:
        if n <= largest_n:
            return pool
    return MAX_DEFAULT_POOL


def default_model_path() -> Path:
    """The shipped weights, ``molscore/weights/conformer.pt`` (found with importlib.resources;
    the package directory itself where an editable install hides it from resources)."""
    try:
        return Path(str(resources.files("molscore") / "weights" / "conformer.pt"))
    except (NotADirectoryError, TypeError):
        return Path(__file__).resolve().parent / "weights" / "conformer.pt"


@dataclass
class GenerateOptions:
    """Options of :class:`ConformerGenerator` (the CLI flags of ``molscore generate``).

    Attributes:
        n: conformers per molecule.
        steps: sampler steps (from ``T``, or from ``t_start`` with ``init="etkdg"``); ``None``
            takes :data:`DEFAULT_STEPS` of the route (10 from ETKDG, 200 from the prior).
        sampler: a name of :data:`molscore.samplers.SAMPLERS`.
        seed: seed of the sampling noise, ETKDG and the stereoisomer choice.
        relax: MMFF94 minimisation of every conformer (UFF when MMFF lacks parameters).
        dedupe: drop conformers within this heavy-atom RMSD (Å) of an earlier one; None = keep.
        batch_size: atoms per sampling batch.
        largest_fragment: keep the largest fragment of salts / mixtures instead of failing.
        max_heavy_atoms: refuse larger molecules (None = no limit).
        init: ``prior`` or ``etkdg`` (see module docstring).
        t_start: start time of the ``etkdg`` route, in ``(0, T]``.
        pool: ETKDG conformers embedded per molecule (``etkdg`` route); ``None`` (default)
            takes :func:`default_pool` of ``n`` (50, 100 or 200). With ``pool > n`` the ``n``
            starts are the first ``n`` picks of ``pick`` on the ``pool`` embeddings: the first
            is the pool's medoid and every prefix is spread over the pool, so at a fixed pool
            the first ``k`` starts are the same for any ``n >= k``. ``pool <= n`` embeds
            ``n``, no pick.
        pick: how the starts are picked from the pool, a key of
            :data:`molscore.chem.selection.PICKS`: ``max-min`` (farthest-point from the
            medoid; the default, for its coverage of reference ensembles) or ``k-medoids``
            (greedy k-medoids: fewer outlying conformers, lower coverage).
        pool_hydrogens: the hydrogens ETKDG embeds the pool with, a key of
            :data:`molscore.chem.embedding.HYDROGENS`: ``all`` (default) or ``stereo`` (only
            those on tetrahedral stereocentres, the others placed afterwards: about twice the
            conformers/s on the CPU for drug-like molecules at ``n = 10``, with a first
            conformer 0.1 Å further from crystal poses and slightly lower ensemble coverage:
            ``benchmarks/pool_hydrogens/``).
        max_retries: resampling rounds for conformers with wrong stereo or failed geometry.
        cleanup: restrained MMFF94s clean-up of conformers that fail a geometry check.
        compile: run the network through ``torch.compile(dynamic=True)``: a one-off
            compilation (30-50 s on 2 CPU cores; needs a C++ compiler on the CPU), then about
            twice the network's speed: 1.4x the conformers/s on the CPU at ``pool=1``, 1.1x
            at a pool of 200, where ETKDG takes most of the time
            (``benchmarks/generate_speed.md``); conformers agree with the eager network's
            to float32 rounding. Worth it for long runs only.
        core: a 3D core to hold in place, as :attr:`Core.text <molscore.chem.core.Core.text>`
            (a :class:`~molscore.chem.core.Core`, an RDKit ``Mol`` with a 3D conformer, or
            the path of an SDF or molfile, whose first record is taken as by ``--core``, is
            turned into it by :meth:`validate`). Every molecule must contain it, at one
            place up to the molecule's symmetry (:meth:`~molscore.chem.core.Core.match`), with
            stereo that agrees with the core's coordinates (unspecified stereo that the core
            holds takes the core's, :meth:`~molscore.chem.core.Core.choose_stereo`; the rest is
            chosen as without a core),
            and its matched atoms keep the core's coordinates exactly in every conformer: the
            ETKDG pool is embedded with them as a coordinate map, aligned on them and kept
            where its core lies within :data:`~molscore.chem.core.CORE_RMSD_TOL`; the sampler
            pins them (inpainting, on point sets that are not centred); the clean-up and
            ``relax`` fix them. Conformers are then in the core's frame. Only with
            ``init="etkdg"`` and ``pool_hydrogens="all"``: from the prior the engine's
            replacement inpainting (the core's atoms set to their noised known positions
            after every step) leaves the atoms next to the core with bonds stretched to
            1.7-2.9 Å (no conformer of a phenyl-amide ligand passed the checks, against 8 of 8
            without the core); from ETKDG starts at the default ``t_start`` it is sound (5 of
            6 at 0.3 and 0.4 without clean-up, 3 of 6 at 0.5).
        stereo_guidance: strength of the stereo guidance (:mod:`molscore.chem.guidance`:
            the input's chirality and E/Z as a restraint on the denoised estimate at every
            sampler step): the size of its Polyak steps (1 halves a single violation per
            step); 0 turns it off. ``None`` (default) takes :data:`DEFAULT_STEREO_GUIDANCE`
            of the route: 1.0 from the prior, where it raises the conformers that pass the
            checks in the first round from about 60 to about 95 %
            (``benchmarks/stereo_guidance``), off from ETKDG starts.
    """

    n: int = 10
    steps: int | None = None
    sampler: str = "reverse"
    seed: int = 0
    relax: bool = False
    dedupe: float | None = None
    batch_size: int = 4096
    largest_fragment: bool = False
    max_heavy_atoms: int | None = 100
    init: str = "etkdg"
    t_start: float = 0.3
    pool: int | None = None
    pick: str = "max-min"
    pool_hydrogens: str = "all"
    max_retries: int = 3
    cleanup: bool = True
    compile: bool = False
    stereo_guidance: float | None = None
    core: str | os.PathLike | Core | Chem.Mol | None = None

    @property
    def etkdg_pool(self) -> int:
        """The pool size in use: ``pool``, or :func:`default_pool` of ``n``."""
        return default_pool(self.n) if self.pool is None else self.pool

    def validate(self) -> None:
        """Raise ``ValueError`` with a one-line reason for an invalid option."""
        for name in ("n", "seed", "steps", "pool", "batch_size", "max_heavy_atoms", "max_retries"):
            value = getattr(self, name)        # a float seed 1.5 drew seed 1's noise; n 2.0 failed
            if not (value is None and name in ("steps", "pool", "max_heavy_atoms")) and \
                    (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer 0..{MAX_SEED}, got {self.seed}")
        if self.steps is None:
            self.steps = DEFAULT_STEPS.get(self.init, 200)
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose from {', '.join(INITS)}")
        if not 0 < self.t_start <= 1:
            raise ValueError(f"t_start must be in (0, 1], got {self.t_start}")
        if self.pool is not None and self.pool < 1:
            raise ValueError(f"pool must be >= 1, got {self.pool}")
        pick_order(self.pick)                              # unknown names raise ValueError
        if self.pool_hydrogens not in HYDROGENS:
            raise ValueError(f"unknown pool_hydrogens {self.pool_hydrogens!r}; choose from "
                             f"{', '.join(HYDROGENS)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.dedupe is not None and not self.dedupe >= 0:          # NaN too
            raise ValueError(f"dedupe RMSD must be >= 0, got {self.dedupe}")
        if self.max_heavy_atoms is not None and self.max_heavy_atoms < 1:   # all "too large"
            raise ValueError(f"max_heavy_atoms must be >= 1, got {self.max_heavy_atoms}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.stereo_guidance is None:
            self.stereo_guidance = DEFAULT_STEREO_GUIDANCE.get(self.init, 0.0)
        if not self.stereo_guidance >= 0:
            raise ValueError(f"stereo_guidance must be >= 0, got {self.stereo_guidance}")
        if self.core is not None:                 # an unusable core raises ValueError
            core = self.core
            if isinstance(core, os.PathLike) or (isinstance(core, str) and "\n" not in core.strip()):
                core = Core.from_file(core)          # a Core.text has its coordinate lines
            elif isinstance(core, str):
                core = Core.from_text(core)
            elif isinstance(core, Chem.Mol):
                core = Core.from_mol(core)
            elif not isinstance(core, Core):
                raise ValueError(f"core must be an SDF or molfile path, an RDKit Mol with a 3D "
                                 f"conformer, a Core or its text, got {type(core).__name__}")
            self.core = core.text
            if self.pool_hydrogens != "all":
                raise ValueError("a core needs pool_hydrogens 'all'")
            if self.init != "etkdg":
                raise ValueError("a core is held on the etkdg route only (init 'etkdg'): from "
                                 "the prior, replacement inpainting leaves the atoms next to "
                                 "the core with stretched bonds")


@dataclass
class GenerationResult:
    """Outcome for one input molecule.

    Attributes:
        name: the record's name.
        input: the input as text (SMILES).
        mol: the molecule with its conformers, or None when it failed.
        error: one-line reason when ``mol`` is None.
        dropped: reasons of conformers that were dropped (wrong stereo after all retries).
        batch_end: whether it is the last molecule of a sampling batch of
            :meth:`ConformerGenerator.run` (of a chunk of
            :func:`~molscore.parallel.generate_in_processes`): a run of the molecules after it
            samples the batches that the run it ends did.
    """

    name: str
    input: str
    mol: Chem.Mol | None = None
    error: str | None = None
    dropped: list[str] = field(default_factory=list)
    batch_end: bool = False

    @property
    def ok(self) -> bool:
        return self.mol is not None


@dataclass
class _Job:
    """A prepared molecule in flight."""

    result: GenerationResult
    mol: Chem.Mol
    graph: object
    key: str                                # the text its draws are seeded with (draw_generator)
    etkdg: np.ndarray | None = None         # (k, N, 3) Å starts, then spares; init="etkdg" only
    next_spare: int = 0                     # index in etkdg of the next spare start
    restraints: StereoRestraints | None = None   # stereo_guidance > 0 only
    fixed: CoreMatch | None = None          # the atoms a core holds, options.core only
    coords: list[np.ndarray] = field(default_factory=list)   # accepted conformers (N, 3) Å
    checks: list[list[str]] = field(default_factory=list)    # their checker problems (checker(cid))
    rejected: list[list[str]] = field(default_factory=list)  # reasons, latest round
    draws: int = 0                          # conformers sampled so far (numbers the generators)
    checker: GeometryChecker = field(init=False)   # of a copy of mol, the core's atoms fixed

    def __post_init__(self) -> None:
        self.checker = GeometryChecker(Chem.Mol(self.mol), fixed=self.fixed_atoms)

    @property
    def fixed_atoms(self) -> np.ndarray | tuple:
        """The atoms the core holds (``()`` without a core)."""
        return self.fixed.atoms if self.fixed is not None else ()

    def replacement_slot(self, slot: int) -> int:
        """The ETKDG start of the draw that replaces a rejected one from ``slot``: the next
        spare start when one is left, else ``slot`` again."""
        if self.etkdg is not None and self.next_spare < len(self.etkdg):
            self.next_spare += 1
            return self.next_spare - 1
        return slot


# A sampling request: (molecule, ETKDG start slot, generator of this draw's noise).
_Request = tuple[_Job, int, torch.Generator]


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose from auto, cpu, cuda")
    return torch.device(device)


class ConformerGenerator:
    """A loaded model plus options; turns molecules into conformers.

    Args:
        model: checkpoint path, an already built ``ScoreModel`` (then ``meta`` is needed
            for ``coord_scale``, default 1, and ``featurisation``, default 1), or None for the
            shipped weights.
        meta: checkpoint meta when ``model`` is a module.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        options: a :class:`GenerateOptions`, or keyword overrides of its fields.
        etkdg_threads: RDKit's ``numThreads`` for the ETKDG pool (0: all cores; the
            conformers do not depend on it). :mod:`molscore.parallel` workers use 1.
    """

    def __init__(self, model: str | Path | ScoreModel | None = None, *, meta: dict | None = None,
                 device: str = "auto", options: GenerateOptions | None = None,
                 etkdg_threads: int = 0, **overrides):
        self.options = replace(options or GenerateOptions(), **overrides)
        self.etkdg_threads = etkdg_threads
        self.options.validate()
        self.device = _pick_device(device)
        if model is None or isinstance(model, (str, Path)):
            from .checkpoint import load_checkpoint_model

            path = Path(model) if model is not None else default_model_path()
            if not path.exists():
                raise FileNotFoundError(f"model weights not found: {path}" + (
                    "" if model is not None else " (no shipped weights; pass --model PATH)"))
            model, meta = load_checkpoint_model(path, ema=True, device=self.device, task="conformers")
        self.model = model.to(self.device).eval()
        self._net = torch.compile(self.model, dynamic=True) if self.options.compile else self.model
        self.meta = dict(meta or {})
        self.coord_scale = float(self.meta.get("coord_scale", 1.0))
        self.featurisation = meta_featurisation(self.meta)     # the features the model reads
        self.sde = self.model.sde
        if self.options.init == "etkdg" and not self.sde.eps < self.options.t_start <= self.sde.T:
            raise ValueError(f"t_start must be in ({self.sde.eps:g}, {self.sde.T:g}] for this model "
                             f"(its SDE's time range), got {self.options.t_start:g}")
        self.core = Core.from_text(self.options.core) if self.options.core is not None else None

    # -- preparation -----------------------------------------------------------------
    def _prepare(self, name: str | None, smiles_or_mol: str | Chem.Mol) -> _Job | GenerationResult:
        """A job for the molecule, or its result with the reason it cannot be done (``name``
        None: its input text, or :func:`_unwritable_name`). An unexpected error in RDKit
        (writing an input Mol's SMILES included) or featurisation fails this molecule only, so
        that one odd input cannot stop (or, resumed, stop again) a long run.

        Raises:
            TypeError: ``smiles_or_mol`` is neither a string nor a Mol (a caller's mistake).
        """
        if isinstance(smiles_or_mol, str):
            text = key = smiles_or_mol
        elif not isinstance(smiles_or_mol, Chem.Mol):
            raise TypeError(f"expected a SMILES string or an RDKit Mol, got {type(smiles_or_mol).__name__}")
        else:
            try:
                text, key = _mol_text(smiles_or_mol), _mol_key(smiles_or_mol)
            except Exception as err:  # noqa: BLE001 - see the docstring
                return GenerationResult(
                    name=_unwritable_name(smiles_or_mol) if name is None else name,
                    input=UNWRITABLE, error=_internal_error("writing the input Mol's SMILES", err))
        result = GenerationResult(name=text if name is None else name, input=text)
        try:
            return self._prepare_job(result, smiles_or_mol, key)
        except MoleculeError as err:
            result.error = str(err)
        except Exception as err:  # noqa: BLE001 - see the docstring
            result.error = _internal_error("preparing the molecule", err)
        return result

    def _prepare_job(self, result: GenerationResult, smiles_or_mol: str | Chem.Mol,
                     key: str) -> _Job | GenerationResult:
        opts = self.options
        mol = prepare_mol(smiles_or_mol, add_hs=True, largest_fragment=opts.largest_fragment,
                          max_heavy_atoms=opts.max_heavy_atoms)
        for prop in OUTPUT_PROPERTIES:      # an input Mol's own would describe other coordinates
            mol.ClearProp(prop)
        if isinstance(smiles_or_mol, str) and (unkept := unkept_smiles_stereo(smiles_or_mol.strip())):
            raise MoleculeError(unkept)             # parsed without it: refused, not lost
        if odd := non_tetrahedral_centres(mol):     # neither checked nor kept: refused, not lost
            raise MoleculeError(f"non-tetrahedral stereo (@SP, @TB or @OH) at atom(s) "
                                f"{','.join(map(str, odd))} is not kept in 3D: give the molecule without it")
        if quadruple := [f"{b.GetBeginAtomIdx()}-{b.GetEndAtomIdx()}" for b in mol.GetBonds()
                         if b.GetBondType() == Chem.BondType.QUADRUPLE]:
            raise MoleculeError(f"quadruple bond(s) between atoms {','.join(quadruple)}: an SDF has "
                                "no such bond order (RDKit writes it as 0, no bond)")
        if self.core is not None:
            mol = self.core.choose_stereo(mol)
        failed: list[str] = []
        for isomer in isomer_choices(mol, opts.seed, MAX_OTHER_ISOMERS):
            job = self._job(result, isomer, key)
            if isinstance(job, _Job):
                return job
            failed.append(job)
            if isomer is mol or failed[0] != ETKDG_STEREO_FAILED:
                break           # the input's own stereo, or not the stereo's fault: no other isomer
        result.error = failed[0]
        if isomer is not mol and failed[0] == ETKDG_STEREO_FAILED:
            result.error += (f" (unspecified stereo in the input was chosen: ETKDG embeds none of the "
                             f"{len(failed)} isomer(s) tried; give the isomer)")
        if failed[0] == ETKDG_STEREO_FAILED and self.core is None:
            # a strained isomer ETKDG's probes missed ((E,E)-cyclonona-1,3-diene) can come from
            # the prior; an impossible one then fails the checks
            result.error += " (try --init prior)"
        return result

    def _job(self, result: GenerationResult, mol: Chem.Mol, key: str) -> _Job | str:
        """The job for ``mol`` (its stereo as generation keeps it), or why ETKDG gives it no start."""
        opts = self.options
        fixed = self.core.match(mol) if self.core is not None else None
        mol.RemoveAllConformers()
        graph = mol_to_graph(mol, featurisation=self.featurisation)
        if hasattr(graph, "pos"):
            del graph.pos
        job = _Job(result, mol, graph, key, fixed=fixed)
        if opts.stereo_guidance > 0:
            job.restraints = StereoRestraints.from_mol(mol)
        if opts.init == "etkdg":
            job.etkdg = _etkdg(mol, opts.n, opts.seed, opts.etkdg_pool, opts.pick,
                               opts.pool_hydrogens, self.etkdg_threads, fixed,
                               spares=opts.n * opts.max_retries)
            job.next_spare = opts.n
            if job.etkdg is not None and not len(job.etkdg):
                return (f"ETKDG placed the core's atoms nowhere within {CORE_RMSD_TOL} Å "
                        "of the core")
            if job.etkdg is None:       # (the prior route takes no core)
                reason = etkdg_failure_reason(mol)
                return reason + " (try --init prior)" if reason == ETKDG_FAILED and fixed is None \
                    else reason
        return job

    # -- sampling ------------------------------------------------------------------
    def _requests(self, job: _Job, slots: Sequence[int]) -> list[_Request]:
        """The job's next draws, one from each ETKDG start ``slots``, each with its own
        generator."""
        reqs = [(job, slot, draw_generator(self.options.seed, job.key, job.draws + k))
                for k, slot in enumerate(slots)]
        job.draws += len(reqs)
        return reqs

    def _sample(self, requests: list[_Request]) -> list[np.ndarray]:
        """Sample one conformer per request; returns ``(N, 3)`` Å arrays."""
        out: list[np.ndarray] = []
        opts = self.options
        batch: list[_Request] = []
        atoms = 0
        for req in requests + [None]:
            n_atoms = req[0].mol.GetNumAtoms() if req is not None else 0
            if batch and (req is None or atoms + n_atoms > opts.batch_size):
                out.extend(self._sample_batch(batch))
                batch, atoms = [], 0
            if req is not None:
                batch.append(req)
                atoms += n_atoms
        return out

    def _sample_batch(self, batch: list[_Request]) -> list[np.ndarray]:
        opts = self.options
        graph = GraphBatch.from_data_list([job.graph for job, _, _ in batch]).to(self.device)
        space = PointSetSpace(graph.batch, graph.num_graphs, com_free=self.core is None)
        generator = [g for _, _, g in batch]
        sde = self.sde
        pinned = self._pinned(batch) if self.core is not None else {}
        if opts.init == "etkdg":
            x0 = torch.cat([torch.as_tensor(job.etkdg[slot % len(job.etkdg)], dtype=torch.float32)
                            for job, slot, _ in batch]).to(self.device) / self.coord_scale
            if pinned:
                x0 = torch.where(pinned["mask"].bool(), pinned["x_known"], x0)
            t0 = torch.full((space.num_samples,), opts.t_start, device=self.device)
            m, s = sde.marginal(t0)
            noise = space.noise_like(x0, generator)
            x = space.expand(m) * space.project(x0) + space.expand(s) * noise
            sde = copy.copy(sde)
            sde.T = opts.t_start
        else:
            x = sde.prior_sample(space, device=self.device, generator=generator)

        def score_fn(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self._net(xt, t, space, graph)

        if opts.stereo_guidance > 0:
            restraints = StereoRestraints.batch([job.restraints for job, _, _ in batch],
                                                [job.mol.GetNumAtoms() for job, _, _ in batch])
            restraints = restraints.to(self.device)
            if not restraints.empty:
                score_fn = guided_score(score_fn, sde, space, restraints,
                                        strength=opts.stereo_guidance, scale=self.coord_scale)
        with torch.no_grad():
            res = sample(opts.sampler, score_fn, sde, space, x, opts.steps, generator=generator,
                         **pinned)
        pos = (res.x * self.coord_scale).double().cpu().numpy()
        counts = space.counts.cpu().numpy()
        return np.split(pos, np.cumsum(counts)[:-1])

    def _pinned(self, batch: list[_Request]) -> dict[str, torch.Tensor]:
        """The samplers' ``mask`` and ``x_known`` ``(N, 3)`` (model units) of the batch's core
        atoms."""
        x_known = torch.zeros(sum(job.mol.GetNumAtoms() for job, _, _ in batch), 3)
        mask = torch.zeros_like(x_known)
        offset = 0
        for job, _, _ in batch:
            rows = torch.as_tensor(job.fixed.atoms) + offset
            x_known[rows] = torch.as_tensor(job.fixed.positions, dtype=torch.float32) / self.coord_scale
            mask[rows] = 1.0
            offset += job.mol.GetNumAtoms()
        return {"mask": mask.to(self.device), "x_known": x_known.to(self.device)}

    # -- post-processing -----------------------------------------------------------
    def _accept(self, job: _Job, pos: np.ndarray, last_round: bool) -> bool:
        """Stereo repair, geometry check and clean-up of one sampled conformer; keep it
        (True) or record why not (geometry problems other than stereo are kept, and listed,
        in the last round)."""
        rejected = len(job.rejected)
        if not np.isfinite(pos).all():
            job.rejected.append(["non-finite coordinates"])
            return False
        if job.fixed is not None:                 # exactly the core's (float64) coordinates
            pos[job.fixed.atoms] = job.fixed.positions
        mol = job.checker.mol
        cid = add_conformer(mol, pos)
        try:
            self._check_and_keep(job, mol, cid, last_round)
        except Exception as err:  # noqa: BLE001 - one conformer must not stop the run
            job.rejected.append([_internal_error("checking a conformer", err)])
        finally:
            mol.RemoveConformer(cid)
        return len(job.rejected) == rejected

    def _check_and_keep(self, job: _Job, mol: Chem.Mol, cid: int, last_round: bool) -> None:
        """:meth:`_accept` on conformer ``cid`` of ``mol`` (the checker's molecule)."""
        fixed = job.fixed_atoms
        report = fix_stereo(mol, cid)
        if report.flat_centres and not (report.inverted_centres or report.flipped_bonds) \
                and self.options.cleanup and restrained_cleanup(mol, [cid], fixed=fixed):
            report = fix_stereo(mol, cid)       # MMFF puts a centre that is nearly flat (a
            # bridgehead ETKDG distorted) back in shape, on either side: check it again
        if not report.ok:
            job.rejected.append(report.reasons())
            return
        if len(fixed) and not np.allclose(mol.GetConformer(cid).GetPositions()[fixed],
                                          job.fixed.positions, rtol=0, atol=1e-6):
            job.rejected.append(["stereo repair would move the core"])
            return
        found, given = job.checker.check(cid)   # the core's own problems cannot be mended
        if found.total and self.options.cleanup:
            sampled = mol.GetConformer(cid).GetPositions()
            if restrained_cleanup(mol, [cid], fixed=fixed):
                cleaned, cleaned_given = job.checker.check(cid)
                if "stereo" in cleaned.counts or cleaned.total < found.total:
                    found, given = cleaned, cleaned_given
                else:   # a clean-up that leaves as many problems is undone (last round)
                    set_positions(mol.GetConformer(cid), sampled)
        # the clean-up can move a marginal centre through its plane: wrong stereo is
        # rejected in every round, other problems only before the last
        if found.total and (not last_round or "stereo" in found.counts):
            job.rejected.append(list(found.counts))    # its kinds, each once
            return
        job.coords.append(np.asarray(mol.GetConformer(cid).GetPositions()))
        job.checks.append(found.lines + given.lines)     # what job.checker(cid) says of them

    def _finish_safely(self, job: _Job) -> GenerationResult:
        """:meth:`_finish`; an unexpected error fails this molecule only."""
        try:
            return self._finish(job)
        except Exception as err:  # noqa: BLE001 - one molecule must not stop the run
            job.result.mol, job.result.error = None, _internal_error("finishing the molecule", err)
            return job.result

    def _finish(self, job: _Job) -> GenerationResult:
        result, opts = job.result, self.options
        if job.rejected:
            counts = Counter(r for reasons in job.rejected for r in reasons)
            summary = "; ".join(f"{r} (x{k})" for r, k in counts.most_common())
            if job.coords:
                result.dropped = [f"{len(job.rejected)} of {opts.n} conformers dropped after "
                                  f"{opts.max_retries} resampling rounds: {summary}"]
            else:
                result.error = (f"no conformer passed the checks after "
                                f"{opts.max_retries} resampling rounds: {summary}")
                return result
        mol = Chem.Mol(job.mol)
        mol.RemoveAllConformers()
        for pos in job.coords:
            add_conformer(mol, pos)
        energies: list[float] | None = None
        # the checks of the conformers as accepted (the checker's verdict on these very
        # coordinates); None after the relaxation, which moves them: checked again below
        checks: list[list[str]] | None = list(job.checks)
        if opts.relax:
            checks = None
            try:
                energies, forcefield = relax_conformers(mol, fixed=job.fixed_atoms)
                mol.SetProp("forcefield", forcefield)
            except ValueError as err:
                result.dropped.append(f"not relaxed: {err}")
            else:      # the relaxation holds the stereo; a conformer it still lost is dropped
                keep = [k for k, conf in enumerate(mol.GetConformers())
                        if check_stereo(mol, conf.GetId()).ok]
                if len(keep) < mol.GetNumConformers():
                    if not keep:
                        result.error = "every conformer lost its stereo in the force-field relaxation"
                        return result
                    result.dropped.append(f"{mol.GetNumConformers() - len(keep)} of {opts.n} "
                                          "conformers dropped: stereo lost in the force-field relaxation")
                    energies = [energies[k] for k in keep]
                    mol = _subset(mol, keep)
        if opts.dedupe is not None and mol.GetNumConformers() > 1:
            keep = _dedupe(mol, opts.dedupe)
            energies = [energies[i] for i in keep] if energies is not None else None
            checks = [checks[i] for i in keep] if checks is not None else None
            mol = _subset(mol, keep)
        if checks is None:
            checker = GeometryChecker(mol, fixed=job.fixed_atoms)
            checks = [checker(conf.GetId()) for conf in mol.GetConformers()]
        for k, conf in enumerate(mol.GetConformers()):
            conf.SetIntProp("conformer", k)
            if energies is not None:
                conf.SetDoubleProp("energy", energies[k])
            conf.SetProp("checks", "; ".join(checks[k]) if checks[k] else "ok")
        with rdBase.BlockLogs():
            mol.SetProp("smiles", record_smiles(mol))
        if job.fixed is not None:
            mol.SetProp("core_atoms", " ".join(str(int(i)) for i in job.fixed.atoms))
        mol.SetProp("_Name", result.name)
        result.mol = mol
        return result

    # -- driver --------------------------------------------------------------------
    def run(self, items: Iterable[tuple[str, str | Chem.Mol]], *, progress: bool = False,
            total: int | None = None) -> Iterator[GenerationResult]:
        """Generate conformers for ``(name, smiles_or_mol)`` items (``name`` None: the input
        text); yields results in input order.

        Molecules are gathered until their ``n`` conformers fill a batch of ``batch_size``
        atoms, sampled together, post-processed, and yielded (so output can be streamed).
        """
        bar = tqdm(total=total, unit="mol", disable=not progress)
        pending: list[_Job | GenerationResult] = []
        atoms = 0
        try:
            for name, item in items:
                prepared = self._prepare(name, item)
                pending.append(prepared)
                if isinstance(prepared, _Job):
                    atoms += prepared.mol.GetNumAtoms() * self.options.n
                if atoms >= self.options.batch_size:
                    yield from self._flush(pending, bar)
                    pending, atoms = [], 0
            yield from self._flush(pending, bar)
        finally:
            bar.close()

    def _flush(self, pending: list, bar) -> Iterator[GenerationResult]:
        jobs = [p for p in pending if isinstance(p, _Job)]
        requests = [req for job in jobs for req in self._requests(job, range(self.options.n))]
        rounds = self.options.max_retries + 1          # first round + resampling rounds
        for r in range(rounds):
            last = r == rounds - 1
            for job in {id(j): j for j, _, _ in requests}.values():
                job.rejected = []
            again: dict[int, list[int]] = {id(job): [] for job in jobs}
            for (job, slot, _), pos in zip(requests, self._sample(requests)):
                if not self._accept(job, pos, last_round=last) and not last:
                    again[id(job)].append(job.replacement_slot(slot))
            requests = [req for job in jobs for req in self._requests(job, again[id(job)])]
            if not requests:
                break
        for i, p in enumerate(pending, 1):
            result = self._finish_safely(p) if isinstance(p, _Job) else p
            result.batch_end = i == len(pending)
            bar.update(1)
            yield result

    def generate(self, smiles_or_mol: str | Chem.Mol, name: str | None = None) -> GenerationResult:
        """One molecule; see :meth:`run` (no ``name``: its input text)."""
        return next(self.run([(name or None, smiles_or_mol)]))


def _internal_error(stage: str, err: Exception) -> str:
    """One-line reason for an unexpected exception: where, its type and first line."""
    first = message_line(err)
    return f"internal error while {stage}: {type(err).__name__}" + (f": {first}" if first else "")


def _mol_text(mol: Chem.Mol) -> str:
    """An input Mol as text, its :func:`~molscore.chem.io.record_smiles` (hydrogens implicit):
    its name when it has none and its ``input`` in ``failures.csv`` (:data:`UNWRITABLE` where
    RDKit cannot write it)."""
    with rdBase.BlockLogs():
        return record_smiles(mol)


def _unwritable_name(mol: Chem.Mol) -> str:
    """The name of an input Mol whose SMILES cannot be written (:func:`_mol_text`) when none
    is given: its own (``_Name``), else :data:`UNWRITABLE`."""
    return (mol.GetProp("_Name").strip() if mol.HasProp("_Name") else "") or UNWRITABLE


def _mol_key(mol: Chem.Mol) -> str:
    """The text an input Mol's draws are seeded with (:func:`draw_generator`): its canonical
    SMILES as RDKit writes it, hydrogens and all, as since the first release (so that an SDF
    input's conformers stay those of earlier versions at the same seed)."""
    with rdBase.BlockLogs():
        return Chem.MolToSmiles(mol)


def draw_generator(seed: int, text: str, draw: int) -> torch.Generator:
    """The CPU generator of the noise of conformer draw ``draw`` (0, 1, ...) of the molecule
    whose input is ``text``, seeded with a 64-bit hash of ``(seed, text, draw)``."""
    key = f"{int(seed)}\x1f{text}\x1f{int(draw)}".encode()
    value = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
    return torch.Generator().manual_seed(value)


def etkdg_random_seed(seed: int) -> int:
    """ETKDG ``randomSeed`` of the ``etkdg`` route for generator seed ``seed`` (never 0, which
    makes RDKit return identical conformers)."""
    return int(seed) + 1


def _etkdg(mol: Chem.Mol, n: int, seed: int, pool: int, pick: str, hydrogens: str = "all",
           threads: int = 0, fixed: CoreMatch | None = None, spares: int = 0) -> np.ndarray | None:
    """ETKDGv3 conformers ``(k, N, 3)`` Å (``randomSeed = etkdg_random_seed(seed)``;
    :func:`~molscore.chem.embedding.embed_conformers` with ``hydrogens``), or None: the
    first ``n`` (fewer when ETKDG embeds fewer). With ``pool > n``, ``pool`` are embedded and
    up to ``n + spares`` representatives kept, in ``pick`` order
    (:func:`~molscore.chem.selection.representative_conformers`; the first ``n`` are the
    same whatever ``spares``). ``threads``: RDKit's
    ``numThreads`` (0: all cores; the conformers do not depend on it). With ``fixed`` its
    atoms are ETKDG's coordinate map, and the conformers are aligned on them and kept only
    where they lie within :data:`~molscore.chem.core.CORE_RMSD_TOL` of their positions
    (:meth:`~molscore.chem.core.CoreMatch.align`): then an empty ``(0, N, 3)`` array when
    ETKDG embeds conformers but none with the core in place (None: it embeds none)."""
    params = AllChem.ETKDGv3()
    params.randomSeed = etkdg_random_seed(seed)
    params.numThreads = threads
    if fixed is not None:
        fixed.constrain(params)
    work = embed_conformers(mol, max(n, pool), params, hydrogens)
    if not work.GetNumConformers():
        return None
    if fixed is not None and not fixed.align(work):
        return np.empty((0, mol.GetNumAtoms(), 3))
    ids = [conf.GetId() for conf in work.GetConformers()]
    if pool > n:
        ids = representative_conformers(work, n + spares, pick)
    return np.stack([work.GetConformer(i).GetPositions() for i in ids])


def _dedupe(mol: Chem.Mol, threshold: float) -> list[int]:
    """Indices (conformer order) kept by greedy RMSD de-duplication (RMSDs over at most
    :data:`DEDUPE_MAX_MATCHES` atom mappings: upper bounds beyond, so a near-duplicate of a
    very symmetric molecule may stay)."""
    rmsd = rmsd_matrix(mol, mol, max_matches=DEDUPE_MAX_MATCHES)
    keep: list[int] = []
    for i in range(rmsd.shape[0]):
        if all(rmsd[i, j] >= threshold for j in keep):
            keep.append(i)
    return keep


def _subset(mol: Chem.Mol, keep: Sequence[int]) -> Chem.Mol:
    confs = list(mol.GetConformers())
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    for i in keep:
        out.AddConformer(Chem.Conformer(confs[i]), assignId=True)
    return out


def generate_conformers(smiles_or_mol: str | Chem.Mol, n: int = 10, *,
                        model: str | Path | ScoreModel | None = None, meta: dict | None = None,
                        device: str = "auto", **options) -> Chem.Mol:
    """Generate ``n`` conformers of one molecule.

    Args:
        smiles_or_mol: SMILES, or an RDKit ``Mol`` (its atom order is kept; hydrogens are
            added after its atoms).
        n: number of conformers (fewer only when ``dedupe`` removes some or conformers
            with wrong stereo remain after all retries; the ``dropped`` reasons are then in
            the molecule's ``dropped`` property).
        model / meta / device: see :class:`ConformerGenerator`.
        options: fields of :class:`GenerateOptions` (``steps``, ``sampler``, ``seed``,
            ``relax``, ``dedupe``, ``batch_size``, ``largest_fragment``,
            ``max_heavy_atoms``, ``init``, ``t_start``, ``pool``, ``pick``,
            ``pool_hydrogens``, ``max_retries``, ``cleanup``, ``compile``,
            ``stereo_guidance``, ``core``).

    Returns:
        ``Mol`` with explicit hydrogens and the conformers.

    Raises:
        MoleculeError: the molecule cannot be handled or no conformer survived the checks.
    """
    gen = ConformerGenerator(model, meta=meta, device=device, n=n, **options)
    result = gen.generate(smiles_or_mol)
    if result.mol is None:
        raise MoleculeError(result.error or "generation failed")
    if result.dropped:
        result.mol.SetProp("dropped", " | ".join(result.dropped))
    return result.mol
