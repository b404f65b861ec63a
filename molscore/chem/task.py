"""The ``conformers`` task: 3D conformers of molecular graphs as CoM-free point sets.

Config sections read here (see ``configs/smoke.yaml``)::

    data:
      sdf: ../shared/data/conformers/geom_drugs_excerpt.sdf.gz   # read + featurised in memory
      # or processed: datasets/processed/ccd    (ConformerDataset from `molscore build-dataset`)
      #   or a list of them, each a path or {path: ..., repeat: k} (k copies per epoch), e.g.
      #   processed: [runs/data/ccd, {path: runs/data/etkdg, repeat: 4}]
      #   (validation leaves out molecules whose skeleton any of their training splits holds,
      #   and scores a molecule in several of their validation splits from the first only)
      conformers: random        # random | boltzmann (one item per molecule, conformer drawn
                                #   per access) | all (one item per conformer) | first (sdf only)
      val_fraction: 0.15        # sdf only: molecules held out for validation (by InChIKey
                                #   skeleton: groups of one molecule under two SMILES go together;
                                #   at least one when > 0 and the file holds two or more)
      split_seed: 0             # sdf only: seed of that molecule split
      max_molecules: null       # sdf only
      max_heavy_atoms: null     # sdf only
      train_split: train        # processed only: the split trained on
      val_split: val            # processed only: the split validated on (null or false: none)
      reserved: null            # another reserved InChIKey list: its molecules are left
                                #   out as well as the shipped list's (always), of sdf and
                                #   processed data alike
    model:
      featurisation: 2          # version of the graph features (molscore.chem.featurize): 2,
                                #   atom-order independent stereo (the default), or 1, the
                                #   shipped model's; a resumed run keeps its checkpoint's
      backbone: painn           # painn | e3nn (molscore.models.equivariant.build_backbone)
      hparams: {hidden_scalar: 64, ...}
      parameterisation: eps
      sigma_data: 1.0           # denoiser parameterisation only
      coord_scale: null         # Å per model unit; default 1 for VE, 2.5 for VP / sub-VP
    sde: {name: ve, sigma_min: 0.02, sigma_max: 15.0}

A key these sections do not list (for ``data``: for its source, sdf or processed) is refused.
Relative paths are resolved against the working directory, then the repository root,
then ``$MOLSCORE_DATA_ROOT`` (:func:`molscore.paths.resolve_data_path`).

The featurisation version is ``meta["featurisation"]`` of every checkpoint (a meta without
it, written before there were versions, is version 1); processed datasets of another
version are refused.

Model coordinates are ``pos / coord_scale`` (Å / coord_scale); the backbone is wrapped
in :class:`CoordScaled` so it always sees Å. Samples of a checkpoint are in model
units: multiply by ``meta["coord_scale"]`` to get Å.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, Dataset
from torch_geometric.data import Batch as GraphBatch
from torch_geometric.data import Data

from ..models.param import ScoreModel
from ..paths import resolve_data_path
from ..sde import make_sde
from ..spaces import PointSetSpace
from ..tasks import (Batch, TrainTask, check_keys, check_meta_scale, config_number, is_int,
                     sde_from_config)
from .featurize import (ATOM_FEAT_DIM, DEFAULT_FEATURISATION, EDGE_FEAT_DIM, MoleculeError,
                        check_featurisation, meta_featurisation, mol_to_graph)

__all__ = ["TASK", "CoordScaled", "InMemoryConformers", "collate",
           "build_task", "build_model", "meta_config", "DEFAULT_SDE", "CONFORMER_CHOICES"]

TASK = "conformers"
DEFAULT_SDE = {"name": "ve", "sigma_min": 0.02, "sigma_max": 15.0}
CONFORMER_CHOICES = ("random", "boltzmann", "all", "first")
# the keys each section takes (``data`` by its source); any other key would be ignored silently
DATA_KEYS = {"sdf": ("sdf", "conformers", "val_fraction", "split_seed", "max_molecules",
                     "max_heavy_atoms", "reserved"),
             "processed": ("processed", "conformers", "train_split", "val_split", "reserved")}
MODEL_KEYS = ("backbone", "hparams", "parameterisation", "sigma_data", "coord_scale", "featurisation")


class CoordScaled(nn.Module):
    """Feeds a backbone coordinates in Å: ``net(x * coord_scale, t, cond)``.

    ``x`` is ``(N, 3)`` in model units; the output ``(N, 3)`` is left as is (the
    parameterisations use unit-free outputs).
    """

    def __init__(self, net: nn.Module, coord_scale: float = 1.0):
        super().__init__()
        self.net, self.coord_scale = net, float(coord_scale)

    def forward(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        return self.net(x * self.coord_scale, t, cond)


def _centre(pos: Tensor) -> Tensor:
    return pos - pos.mean(dim=0, keepdim=True)


class InMemoryConformers(Dataset):
    """Molecules held in memory, one item per molecule (a conformer drawn per access) or
    per conformer.

    Args:
        graphs: ``M`` featurised graphs (``atom_feat``, ``edge_index``, ``edge_attr``, ``z``).
        coords: ``M`` float32 tensors ``(K_m, N_m, 3)`` (Å).
        weights: ``M`` Boltzmann weights ``(K_m,)`` or ``None`` (uniform).
        conformers: ``random`` (uniform, torch RNG), ``boltzmann`` (by weight, torch RNG),
            ``first``, or ``all`` (one item per (molecule, conformer) pair).

    Items are ``Data`` with ``pos`` ``(N, 3)`` centred at the origin.
    """

    def __init__(self, graphs: list[Data], coords: list[Tensor],
                 weights: list[Tensor | None] | None = None, conformers: str = "random"):
        if conformers not in CONFORMER_CHOICES:
            raise ValueError(f"data.conformers must be one of {', '.join(CONFORMER_CHOICES)}, "
                             f"got {conformers!r}")
        self.graphs, self.coords, self.mode = graphs, coords, conformers
        self.weights = weights if weights is not None else [None] * len(graphs)
        self._pairs = [(m, k) for m, c in enumerate(coords) for k in range(int(c.shape[0]))]

    def __len__(self) -> int:
        return len(self._pairs) if self.mode == "all" else len(self.graphs)

    @property
    def num_conformers(self) -> int:
        return sum(int(c.shape[0]) for c in self.coords)

    def _pick(self, i: int) -> int:
        k = int(self.coords[i].shape[0])
        if self.mode == "first" or k == 1:
            return 0
        w = self.weights[i]
        if self.mode == "boltzmann" and w is not None:
            return int(torch.multinomial(w, 1))
        return int(torch.randint(k, ()))

    def __getitem__(self, i: int) -> Data:
        m, k = self._pairs[i] if self.mode == "all" else (i, self._pick(i))
        data = self.graphs[m].clone()
        data.pos = _centre(self.coords[m][k])
        return data


def collate(items: list[Data], coord_scale: float = 1.0) -> Batch:
    """Graphs with ``pos`` -> :class:`~molscore.tasks.Batch` of CoM-free coordinates.

    Returns ``Batch(x (N, 3) = pos / coord_scale, PointSetSpace(batch), cond=PyG batch)``;
    ``cond`` keeps the graph (features, edges, ``batch``) but not the clean ``pos``.
    """
    graph = GraphBatch.from_data_list(items)
    space = PointSetSpace(graph.batch, graph.num_graphs)
    x = space.project(graph.pos / coord_scale)
    del graph.pos
    return Batch(x=x, space=space, cond=graph)


class _Collate:
    """Picklable ``collate`` with a fixed ``coord_scale`` (for DataLoader workers)."""

    def __init__(self, coord_scale: float):
        self.coord_scale = coord_scale

    def __call__(self, items: list[Data]) -> Batch:
        return collate(items, self.coord_scale)


def _reserved(data: dict) -> frozenset[str]:
    """The reserved InChIKey blocks: the shipped list's and ``data.reserved``'s."""
    from ..data.reserved import reserved_keys

    path = data.get("reserved")
    return reserved_keys(resolve_data_path(path) if path else None)


def _load_sdf(data: dict, featurisation: int) -> tuple[Dataset, Dataset | None, dict]:
    from ..data.conformers import read_sdf
    from ..data.reserved import build_exclusion_reason, inchikey_block

    path = resolve_data_path(data["sdf"])
    reserved = _reserved(data)
    graphs, coords, weights, dropped = [], [], [], 0
    members: dict[str, list[int]] = {}  # InChIKey block (skeleton) -> its SDF groups
    for cs in read_sdf(path, max_heavy_atoms=data.get("max_heavy_atoms"),
                       limit=data.get("max_molecules")):
        block = inchikey_block(cs.mol)
        if build_exclusion_reason(cs.mol, reserved, block):  # as a builder: tautomers, charge forms
            dropped += 1
            continue
        try:
            graph = mol_to_graph(cs.mol, featurisation=featurisation)
        except MoleculeError:
            dropped += 1
            continue
        del graph.pos
        members.setdefault(block or cs.smiles, []).append(len(graphs))
        graphs.append(graph)
        coords.append(torch.as_tensor(cs.coordinates(), dtype=torch.float32))
        weights.append(None if cs.weights is None else torch.as_tensor(cs.weights,
                                                                       dtype=torch.float64))
    if not graphs:
        raise ValueError(f"no usable molecules in {path}")
    # the split draws molecules (skeletons), so that one under two SMILES spellings, two
    # SDF groups, is not in train and val at once
    groups = list(members.values())
    order = np.random.default_rng(data.get("split_seed") or 0).permutation(len(groups))
    fraction = float(data.get("val_fraction", 0.15))
    n_val = int(round(fraction * len(groups)))
    if fraction > 0:   # 0.1 of 4 molecules rounded to none: no validation, without a word
        n_val = max(n_val, 1)
    n_val = min(n_val, len(groups) - 1)
    val_idx = [i for g in order[:n_val] for i in groups[g]]
    train_idx = [i for g in order[n_val:] for i in groups[g]]
    mode = data.get("conformers", "random")

    def subset(idx: list[int]) -> InMemoryConformers:
        return InMemoryConformers([graphs[i] for i in idx], [coords[i] for i in idx],
                                  [weights[i] for i in idx], mode)

    info = {"source": str(path), "molecules": len(graphs), "reserved_or_bad_dropped": dropped}
    return subset(train_idx), (subset(val_idx) if n_val else None), info


def _processed_sources(spec: Any) -> list[tuple[Path, int]]:
    """``data.processed`` as ``[(root, repeat), ...]``."""
    out = []
    for item in spec if isinstance(spec, list) else [spec]:
        path, repeat = (item.get("path"), item.get("repeat", 1)) if isinstance(item, dict) else (item, 1)
        if (not isinstance(path, str) or not path or not is_int(repeat) or repeat < 1
                or isinstance(item, dict) and not set(item) <= {"path", "repeat"}):
            raise ValueError(f"data.processed entries must be a path or {{path: ..., repeat: k >= 1}}, "
                             f"got {item!r}")
        out.append((resolve_data_path(path), repeat))
    if not out:
        raise ValueError("data.processed is an empty list")
    return out


def _load_processed(data: dict, featurisation: int) -> tuple[Dataset, Dataset | None, dict]:
    from ..data.processed import ConformerDataset
    from ..data.reserved import list_identity, shipped_identity

    mode = data.get("conformers", "random")
    if mode not in ("random", "boltzmann", "all"):
        raise ValueError(f"data.conformers for processed datasets must be random, boltzmann "
                         f"or all, got {mode!r}")
    kw = {"conformers": "all" if mode == "all" else "random",
          "weighting": "boltzmann" if mode == "boltzmann" else "uniform", "reserved": _reserved(data),
          "featurisation": featurisation}
    val_split = data.get("val_split", "val")
    trains = [(root, repeat, ConformerDataset(root, data.get("train_split", "train"), **kw))
              for root, repeat in _processed_sources(data["processed"])]
    # a molecule (skeleton) trained on from any dataset is no validation molecule of another
    # (each dataset's own split keeps its splits apart; mixed datasets may share molecules)
    trained = frozenset(b for _, _, train_set in trains for b in train_set.blocks if b)
    validated: set[str] = set()  # the blocks of the validation splits read so far: a molecule
    #                              in several datasets' validation splits is scored once
    train_parts, val_parts, sources = [], [], []
    extra = list_identity(resolve_data_path(data["reserved"])) if data.get("reserved") else None
    shipped = shipped_identity()
    for root, repeat, train_set in trains:
        train_parts += [train_set] * repeat
        source = {"source": str(root), "molecules": len(train_set.mol_ids), "repeat": repeat}
        built = train_set.index.get("meta") or {}
        unchecked = []  # lists whose molecules' tautomers and charge forms the build did not compare
        if extra is not None and built.get("reserved") != extra:
            unchecked.append(f"the extra reserved list {extra} (built with {built.get('reserved') or 'none'})")
        if built.get("reserved_shipped") != shipped:
            unchecked.append(f"the shipped reserved list {shipped} (built with "
                             f"{built.get('reserved_shipped') or 'no version recorded'})")
        if unchecked:  # the builder compared the forms; here each stored block only
            source["reserved_forms_unchecked"] = True
            print(f"{root}: the molecules of {' and '.join(unchecked)} are left out by their own "
                  f"InChIKey block only, not their tautomers and charge forms (build the dataset "
                  f"again, with --reserved for an extra list, for those)", file=sys.stderr)
        if train_set.index_unverified:
            source["index_unverified"] = True
            print(f"{root}: its index.json records no digest of its molecules, or one they do not "
                  f"match (written before 2026-12-07, or edited by hand): each molecule's InChIKey "
                  f"block was also computed from its stored SMILES and compared", file=sys.stderr)
        dropped = list(train_set.reserved_dropped)
        if val_split:
            val_set = ConformerDataset(root, val_split, exclude=trained | validated, **kw)
            if len(val_set):
                val_parts.append(val_set)
            validated.update(b for b in val_set.blocks if b)
            dropped += val_set.reserved_dropped
            n_trained = sum(b in trained for b in val_set.excluded)
            if n_trained:
                source["val_trained_dropped"] = n_trained
                print(f"{root}: left out of validation {n_trained} molecule(s) whose "
                      f"skeleton (InChIKey block) a training split holds", file=sys.stderr)
            if len(val_set.excluded) > n_trained:
                source["val_duplicates_dropped"] = len(val_set.excluded) - n_trained
                print(f"{root}: left out of validation {len(val_set.excluded) - n_trained} "
                      f"molecule(s) whose skeleton an earlier dataset's validation split holds "
                      f"(each molecule is scored once)", file=sys.stderr)
        if dropped:
            source["reserved_dropped"] = len(dropped)
            print(f"{root}: left out {len(dropped)} reserved molecule(s) the dataset holds "
                  f"(e.g. {dropped[0]!r})", file=sys.stderr)
        sources.append(source)
    train = train_parts[0] if len(train_parts) == 1 else ConcatDataset(train_parts)
    val = None if not val_parts else val_parts[0] if len(val_parts) == 1 else ConcatDataset(val_parts)
    info = sources[0] if len(sources) == 1 else {"sources": sources}
    return train, val, info


def _centred(dataset: Dataset) -> Dataset:
    return dataset if isinstance(dataset, InMemoryConformers) else _CentredView(dataset)


class _CentredView(Dataset):
    """Items of another conformer dataset with ``pos`` moved to the origin."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Data:
        data = self.base[i]
        data.pos = _centre(data.pos.float())
        return data


def _check_sections(data: dict, model_cfg: dict) -> None:
    """``ValueError`` (one line) for a key the ``data`` or ``model`` section does not take (a
    typo, or an sdf-only key such as ``val_fraction`` with processed data) or a value that
    cannot work: each was ignored, or failed later with a message that did not name it."""
    source = "sdf" if "sdf" in data else "processed"
    check_keys(data, DATA_KEYS[source], f"conformers task: data ({source})")
    check_keys(model_cfg, MODEL_KEYS, "conformers task: model")
    # a path of another type was a TypeError traceback; reserved: 0 or [] was no list, silently
    for key, optional in (("sdf", False), ("reserved", True)):
        if key in data and not (isinstance(data[key], str) and data[key]
                                or optional and data[key] is None):
            raise ValueError(f"data.{key} must be a file path, got {data[key]!r}")
    for key in ("train_split", "val_split"):   # val_split: null (or false) validates on none
        value = data.get(key, "")
        if not (isinstance(value, str) or key == "val_split" and (value is None or value is False)):
            raise ValueError(f"data.{key} must be a split name, got {value!r}")
    if model_cfg.get("hparams") is not None and not isinstance(model_cfg["hparams"], dict):
        raise ValueError(f"model.hparams must be a mapping, got {model_cfg['hparams']!r}")
    fraction = config_number(data.get("val_fraction", 0.15), "data.val_fraction")
    if not 0 <= fraction < 1:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {data['val_fraction']!r}")
    for key, minimum in (("split_seed", 0), ("max_molecules", 1), ("max_heavy_atoms", 1)):
        value = data.get(key)
        if value is not None and (not is_int(value) or value < minimum):
            raise ValueError(f"data.{key} must be an integer >= {minimum}, got {value!r}")
    for key in ("sigma_data", "coord_scale"):
        if model_cfg.get(key) is not None and not config_number(model_cfg[key], f"model.{key}") > 0:
            raise ValueError(f"model.{key} must be positive, got {model_cfg[key]!r}")
    try:
        check_featurisation(model_cfg.get("featurisation", DEFAULT_FEATURISATION))
    except ValueError as err:
        raise ValueError(f"model.featurisation: {err}") from None


def build_model(meta: dict) -> ScoreModel:
    """Rebuild the conformer :class:`ScoreModel` from a checkpoint's ``meta``.

    Raises:
        ValueError: the backbone reads node or edge features of other sizes than
            :func:`~molscore.chem.featurize.mol_to_graph` makes (another featuriser's model),
            or the meta records a featurisation version this molscore does not know, or
            its ``coord_scale`` is not a positive number.
    """
    from ..models.equivariant import build_backbone

    meta_featurisation(meta)
    check_meta_scale(meta, "coord_scale")
    backbone = dict(meta["backbone"])
    dims = (backbone.get("atom_dim"), backbone.get("edge_dim"))
    if dims != (ATOM_FEAT_DIM, EDGE_FEAT_DIM):
        raise ValueError(f"the model reads features of other sizes (atom {dims[0]}, edge {dims[1]}; "
                         f"this featuriser: {ATOM_FEAT_DIM}, {EDGE_FEAT_DIM})")
    net = build_backbone(backbone.pop("name"), backbone.pop("atom_dim"), backbone.pop("edge_dim"),
                         **backbone)
    return ScoreModel(CoordScaled(net, meta["coord_scale"]), make_sde(**meta["sde"]),
                      meta["parameterisation"], float(meta.get("sigma_data", 1.0)))


def build_task(cfg: dict) -> TrainTask:
    """Datasets, model and collate function of the ``conformers`` task (see module docstring).

    Raises:
        ValueError: a bad ``data``/``model``/``sde`` section (one-line message).
        FileNotFoundError: a data path that does not exist.
    """
    from ..models.equivariant import build_backbone

    data, model_cfg = dict(cfg.get("data") or {}), dict(cfg.get("model") or {})
    if ("sdf" in data) == ("processed" in data):
        raise ValueError("conformers task: data needs exactly one of 'sdf' or 'processed'")
    _check_sections(data, model_cfg)
    sde = sde_from_config(cfg.get("sde") or DEFAULT_SDE)
    coord_scale = model_cfg.get("coord_scale")
    if coord_scale is None:
        coord_scale = 1.0 if sde.name == "ve" else 2.5
    featurisation = model_cfg.get("featurisation", DEFAULT_FEATURISATION)
    if "sdf" in data:
        train_set, val_set, info = _load_sdf(data, featurisation)
    else:
        train_set, val_set, info = _load_processed(data, featurisation)
    net = build_backbone(model_cfg.get("backbone", "painn"), ATOM_FEAT_DIM, EDGE_FEAT_DIM,
                         **(model_cfg.get("hparams") or {}))
    meta = {"task": TASK, "backbone": net.config(), "sde": sde.config(),
            "parameterisation": model_cfg.get("parameterisation", "eps"),
            "sigma_data": float(model_cfg.get("sigma_data") or 1.0),
            "coord_scale": float(coord_scale), "units": "angstrom / coord_scale",
            "featurisation": featurisation, "atom_feat_dim": ATOM_FEAT_DIM, "edge_feat_dim": EDGE_FEAT_DIM,
            "data": info}
    model = ScoreModel(CoordScaled(net, coord_scale), sde, meta["parameterisation"],
                       meta["sigma_data"])
    return TrainTask(model=model, train_set=_centred(train_set), collate=_Collate(float(coord_scale)),
                     meta=meta, val_set=None if val_set is None else _centred(val_set))


def meta_config(meta: dict) -> dict:
    """The config values a checkpoint's ``meta`` fixes (see :mod:`molscore.tasks`): the
    version of the features its model reads (version 1 for a checkpoint from before there were
    versions), so that a resumed run goes on with the features it was trained on whatever the
    default for new runs.

    Raises:
        ValueError: the checkpoint records a featurisation version this molscore does not know.
    """
    return {"model": {"featurisation": meta_featurisation(meta)}}
