"""Spaces: the only thing the engine knows about the data.

A batch is a tensor ``x`` whose first dimension indexes rows, plus a *space*
that says how rows group into samples and which noise is legal:

* :class:`DenseSpace` -- one row per sample: vectors ``(B, D)``, images
  ``(B, C, H, W)``.
* :class:`PointSetSpace` -- one row per point (atom, residue), ``(N, 3)``, with a
  node-to-sample index ``batch`` of shape ``(N,)``. Noise and states are kept
  centre-of-mass free per sample, so a point set of ``n`` points has
  ``3 n - 3`` degrees of freedom.

SDEs, objectives, samplers and likelihoods use only the methods of
:class:`Space`; nothing in them knows which space they work in.

Noise comes from a ``generator``: one ``torch.Generator`` for the whole batch, or a
sequence of them, one per sample, when each sample's noise must not depend on the batch
it is in (see :data:`Generators`).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["Space", "DenseSpace", "PointSetSpace", "Generators", "index_count"]

#: Where noise comes from: the global RNG (None), one generator for the whole batch, or one
#: generator per sample. With one per sample, sample ``i``'s rows are drawn from
#: ``generator[i]`` (on that generator's device, then moved to the batch's), so a sample's
#: noise is the same whatever else is batched with it and on whichever device it runs.
Generators = torch.Generator | Sequence[torch.Generator] | None


def index_count(index: Tensor) -> int:
    """How many values a 0-based index tensor counts, ``index.max() + 1`` (0 when empty): the
    samples of a node-to-sample index, or the entries of the largest sample for
    :meth:`Space.entry_index`."""
    return int(index.max()) + 1 if index.numel() else 0


class Space(ABC):
    """How the rows of a batch tensor form samples.

    Attributes:
        shape: full shape of the batch tensor ``x``.
        num_samples: number of samples ``B`` in the batch.
    """

    shape: torch.Size
    num_samples: int

    @abstractmethod
    def expand(self, t: Tensor) -> Tensor:
        """Broadcast a per-sample quantity ``(B,)`` to a tensor that broadcasts against ``x``."""

    @abstractmethod
    def per_sample_sum(self, v: Tensor) -> Tensor:
        """Sum everything that belongs to one sample: ``v`` shaped like ``x`` -> ``(B,)``."""

    @abstractmethod
    def project(self, x: Tensor) -> Tensor:
        """Project ``x`` onto the legal subspace (identity for dense data)."""

    @property
    @abstractmethod
    def dim(self) -> Tensor:
        """Degrees of freedom per sample, ``(B,)`` float (e.g. ``3n - 3`` for a CoM-free point set)."""

    @abstractmethod
    def sample_rows(self) -> list[int]:
        """Rows per sample, in row order (samples must occupy consecutive rows)."""

    @property
    def projects(self) -> bool:
        """Whether :meth:`project` may change a tensor (the legal subspace is a proper one)."""
        return False

    def check_shape(self, x: Tensor) -> None:
        """``ValueError`` (naming both shapes) unless ``x`` is shaped :attr:`shape`."""
        if tuple(x.shape) != tuple(self.shape):
            raise ValueError(f"x has shape {tuple(x.shape)}, the space {tuple(self.shape)}")

    def noise_like(self, x: Tensor, generator: Generators = None) -> Tensor:
        """Standard Gaussian noise on the legal subspace, shaped like ``x``."""
        return self.project(self._randn(x.shape, generator, x.device, x.dtype))

    def noise(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
              generator: Generators = None) -> Tensor:
        """Fresh standard Gaussian noise of the batch's full :attr:`shape`."""
        return self.project(self._randn(self.shape, generator, device, dtype))

    def _randn(self, shape: torch.Size, generator: Generators, device, dtype: torch.dtype) -> Tensor:
        if generator is None:
            return torch.randn(shape, device=device, dtype=dtype)
        if isinstance(generator, torch.Generator):     # drawn where the generator is, as below
            return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)
        rows = self.sample_rows()
        if len(generator) != len(rows):
            raise ValueError(f"{len(generator)} generators for {len(rows)} samples")
        blocks = [torch.randn((n, *shape[1:]), generator=g, device=g.device, dtype=dtype)
                  for g, n in zip(generator, rows)]
        return torch.cat(blocks).to(device)

    def rademacher_like(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Random signs on the legal subspace (for Hutchinson estimators), shaped like ``x``
        (drawn on ``generator``'s device, so a CPU generator gives the same signs on any device)."""
        where = x.device if generator is None else generator.device
        signs = torch.randint(0, 2, x.shape, generator=generator, device=where).to(x.device)
        return self.project(signs.to(x.dtype) * 2 - 1)

    def sample_time(self, t_min: float, t_max: float, device=None, dtype=torch.float32) -> Tensor:
        """Uniform times in ``[t_min, t_max]``, one per sample, ``(B,)``."""
        return t_min + (t_max - t_min) * torch.rand(self.num_samples, device=device, dtype=dtype)

    def norm_sq(self, v: Tensor) -> Tensor:
        """Per-sample squared norm ``||v||^2``, ``(B,)``."""
        return self.per_sample_sum(v * v)

    def entry_index(self, x: Tensor) -> Tensor:
        """The number of each entry of ``x`` within its own sample, a long tensor shaped like
        ``x``: a sample's entries are ``0 .. n_b - 1`` (``n_b`` its rows times the entries per
        row) in row-major order, whichever rows the sample holds and on ``x``'s device.

        The basis of per-coordinate loops (exact Jacobian traces): ``index == k`` selects
        the ``k``-th coordinate of every sample at once, for ``k`` below
        :func:`index_count` of the result.
        """
        rows = x.shape[0]
        per_row = x[0].numel() if rows else 0
        owner = self.expand(torch.arange(self.num_samples, device=x.device)).to(x.device)
        owner = owner.reshape(rows)
        counts = torch.bincount(owner, minlength=self.num_samples)
        starts = torch.cumsum(counts, 0) - counts
        order = torch.argsort(owner, stable=True)
        rank = torch.empty_like(owner)
        rank[order] = torch.arange(rows, device=x.device) - starts[owner[order]]
        cols = torch.arange(per_row, device=x.device)
        return (rank.unsqueeze(1) * per_row + cols).reshape(x.shape)


class DenseSpace(Space):
    """One row per sample; ``x`` has shape ``(B, *event_shape)``.

    Args:
        shape: full batch shape, e.g. ``(B, 2)`` or ``(B, C, H, W)``.
    """

    def __init__(self, shape: Sequence[int]):
        self.shape = torch.Size(shape)
        self.num_samples = int(self.shape[0])
        self._event_ndim = len(self.shape) - 1
        self._dim = float(math.prod(self.shape[1:]))

    def expand(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        if t.ndim == 0:
            t = t.expand(self.num_samples)
        return t.reshape(-1, *([1] * self._event_ndim))

    def per_sample_sum(self, v: Tensor) -> Tensor:
        return v.reshape(v.shape[0], -1).sum(dim=1)

    def project(self, x: Tensor) -> Tensor:
        return x

    def sample_rows(self) -> list[int]:
        return [1] * self.num_samples

    @property
    def dim(self) -> Tensor:
        return torch.full((self.num_samples,), self._dim)

    def __repr__(self) -> str:
        return f"DenseSpace(shape={tuple(self.shape)})"


class PointSetSpace(Space):
    """Graph-batched point sets: ``x`` is ``(N, 3)`` with sample index ``batch`` ``(N,)``.

    Args:
        batch: ``(N,)`` long tensor, the sample each row belongs to (values in ``[0, B)``).
        num_samples: ``B``; inferred as ``batch.max() + 1`` when omitted.
        point_dim: coordinates per point (3 for molecules and C-alpha traces).
        com_free: keep noise and states centre-of-mass free per sample.
    """

    def __init__(self, batch: Tensor, num_samples: int | None = None, point_dim: int = 3,
                 com_free: bool = True):
        self.batch = batch.long()
        self.num_samples = int(num_samples if num_samples is not None else index_count(batch))
        self.point_dim = point_dim
        self.com_free = com_free
        self.shape = torch.Size((batch.numel(), point_dim))
        self.counts = torch.bincount(self.batch, minlength=self.num_samples)
        self._rows: list[int] | None = None

    def expand(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, device=self.batch.device)
        if t.ndim == 0:
            return t.expand(self.batch.numel()).unsqueeze(-1)
        return t[self.batch].unsqueeze(-1)

    def per_sample_sum(self, v: Tensor) -> Tensor:
        rows = v.reshape(v.shape[0], -1).sum(dim=1)
        out = torch.zeros(self.num_samples, device=v.device, dtype=v.dtype)
        return out.index_add_(0, self.batch.to(v.device), rows)

    def mean(self, x: Tensor) -> Tensor:
        """Per-sample centroid, ``(B, point_dim)``."""
        out = torch.zeros(self.num_samples, x.shape[1], device=x.device, dtype=x.dtype)
        out.index_add_(0, self.batch.to(x.device), x)
        return out / self.counts.to(x.device).clamp(min=1).unsqueeze(-1).to(x.dtype)

    def project(self, x: Tensor) -> Tensor:
        if not self.com_free:
            return x
        return x - self.mean(x)[self.batch.to(x.device)]

    @property
    def projects(self) -> bool:
        return self.com_free

    def sample_rows(self) -> list[int]:
        if self._rows is None:          # once per space: every sampler step draws noise
            if self.batch.numel() > 1 and bool((self.batch[1:] < self.batch[:-1]).any()):
                raise ValueError("per-sample noise needs the rows of each sample consecutive and "
                                 "in sample order (as in a PyG batch)")
            self._rows = self.counts.tolist()
        return self._rows

    @property
    def dim(self) -> Tensor:
        n = self.counts.to(torch.float32) * self.point_dim
        # CoM-free: one point has none, a sample without points none either (not -point_dim).
        return (n - self.point_dim).clamp(min=0) if self.com_free else n

    def to(self, device) -> "PointSetSpace":
        return PointSetSpace(self.batch.to(device), self.num_samples, self.point_dim, self.com_free)

    def __repr__(self) -> str:
        return (f"PointSetSpace(points={self.shape[0]}, samples={self.num_samples}, "
                f"com_free={self.com_free})")
