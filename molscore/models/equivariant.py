"""SE(3)-equivariant, chirality-aware graph score networks for point sets (molecules).

Two backbones with the same contract ``net(x (N, 3), t (B,), cond) -> (N, 3)``:

* ``"painn"`` -- :class:`molscore.models.painn.PaiNNScoreNet`, plain-torch scalar/vector
  message passing with cross-product terms (fast default);
* ``"e3nn"`` -- :class:`molscore.models.tensor_product.TensorProductScoreNet`, e3nn
  tensor-product convolutions with ``0e/1o/1e/0o`` irreps (more expressive).

Both rebuild a radius graph from the current coordinates at each call and merge it with
the topological edges of ``cond`` (see :mod:`molscore.models.edges`). They rotate with the
input, ignore translations, are permutation equivariant and are *not* mirror
equivariant, so they can tell enantiomers apart.
"""
from __future__ import annotations

from torch import nn

from .painn import PaiNNScoreNet
from .tensor_product import TensorProductScoreNet

__all__ = ["BACKBONES", "build_backbone", "count_parameters", "PaiNNScoreNet", "TensorProductScoreNet"]

BACKBONES: dict[str, type[nn.Module]] = {"painn": PaiNNScoreNet, "e3nn": TensorProductScoreNet}


def build_backbone(name: str, atom_dim: int, edge_dim: int, **hparams) -> nn.Module:
    """Build backbone ``name`` (``"painn"`` or ``"e3nn"``) for the given feature sizes.

    ``hparams`` are the backbone's keyword arguments (channel counts, layers, cutoff, ...);
    ``build_backbone(**net.config())`` rebuilds a network.

    Raises:
        ValueError: unknown ``name`` (the message lists the choices) or unknown hyper-parameter.
    """
    try:
        cls = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}") from None
    try:
        return cls(atom_dim, edge_dim, **hparams)
    except TypeError as err:
        raise ValueError(f"bad hyper-parameters for backbone {name!r}: {err}") from None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
