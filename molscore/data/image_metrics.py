"""Image metrics: Fréchet distance in a classifier's feature space, and bits/dim.

Bits per dimension with uniform dequantisation, for any bit depth
------------------------------------------------------------------
Data are integers ``x in {0, ..., L-1}^D``. Uniform dequantisation gives
``v = x + u``, ``u ~ U[0, 1)^D``, and ``E_u log p(x + u) <= log P(x)``, so the
negative dequantised log-density is an upper bound on the discrete code length.
The model sees ``y = 2 v / L - 1 = v / a - 1`` with ``a = L / 2``, and a change of
variables gives ``log p_v(v) = log p_y(y) - D log a``. Hence

    ``bpd = -(log p_y(y) - D log(L / 2)) / (D ln 2)``,

in bits per *discrete* dimension. Sanity check: a uniform density on ``[-1, 1]^D``
(``log p_y = -D log 2``) gives ``log2 L`` bits/dim, i.e. 8 for 8-bit data and
``log2 17 ~ 4.09`` for scikit-learn's digits.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..likelihood import bits_per_dim, log_likelihood
from ..sde import SDE
from ..spaces import DenseSpace
from .images import to_model_space

__all__ = ["frechet_distance", "dequantized_bits_per_dim", "image_bits_per_dim",
           "gaussian_stats"]


def gaussian_stats(features: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and covariance ``(F, F)`` of features ``(N, F)`` in float64."""
    f = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features,
                   dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features (N >= 2, F), got shape {f.shape}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))  # np.cov gives () for F = 1


def frechet_distance(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to features ``a (N, F)`` and ``b (M, F)``:
    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})``."""
    mu1, s1 = gaussian_stats(a)
    mu2, s2 = gaussian_stats(b)
    # tr (S1 S2)^{1/2} = sum sqrt(eig(S1^{1/2} S2 S1^{1/2})), a symmetric PSD matrix.
    w, v = np.linalg.eigh(s1)
    s1_half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(s1_half @ s2 @ s1_half), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def dequantized_bits_per_dim(logp_y: Tensor, dim: int | float, levels: int) -> Tensor:
    """Bits per discrete dimension from the log-density of ``y = 2 (x + u) / L - 1``.

    Args:
        logp_y: ``(B,)`` log-density (nats) of the dequantised images in model space.
        dim: number of dimensions ``D`` per image (``C H W``).
        levels: intensity levels ``L`` of the integer data.

    Returns:
        ``(B,)`` ``-(logp_y - D log(L/2)) / (D ln 2)``.
    """
    return bits_per_dim(logp_y, dim, log_scale=dim * math.log(2.0 / levels))


def image_bits_per_dim(score_fn: Callable[[Tensor, Tensor], Tensor], sde: SDE, images: Tensor,
                       levels: int, *, generator: torch.Generator | None = None,
                       **likelihood_opts) -> tuple[Tensor, int]:
    """Dequantised bits/dim of integer-valued images ``(B, C, H, W)`` (any integer dtype, or a
    floating dtype to compute in) through the probability-flow ODE.

    One uniform dequantisation draw per image, then the Hutchinson probe, both from
    ``generator`` and drawn on its device (a CUDA generator for CUDA images; a CPU one gives
    the CPU's draws anywhere); ``likelihood_opts`` go to :func:`molscore.likelihood.log_likelihood`
    (divergence estimator, tolerances).

    Returns:
        ``(bpd (B,), nfe)``.
    """
    dtype = images.dtype if images.is_floating_point() else torch.float32
    where = images.device if generator is None else generator.device
    u = torch.rand(images.shape, generator=generator, device=where, dtype=dtype).to(images.device)
    y = to_model_space(images, levels, u)
    space = DenseSpace(y.shape)
    res = log_likelihood(score_fn, sde, space, y, generator=generator, **likelihood_opts)
    dim = math.prod(images.shape[1:])
    return dequantized_bits_per_dim(res.logp, dim, levels), int(res.nfe)
