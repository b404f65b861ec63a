"""Geometry metrics of C-alpha traces, generated versus real.

All functions take traces as arrays ``(n, 3)`` in Å (numpy or torch), one row per
residue in sequence order.

Short and empty inputs: a trace of ``n`` residues has ``max(n - 1, 0)`` consecutive
distances, ``max(n - 2, 0)`` virtual bond angles and ``max(n - 3, 0)`` dihedrals, no
clash (``(0, 0)``) below 3 residues and radius of gyration 0 with one residue. A
statistic with nothing to average (no traces, or no trace long enough to have the
quantity) raises ``ValueError`` naming what is missing, as do an empty trace's radius of
gyration and a power-law fit that is not determined.

* **Bonds**: fraction of consecutive C-alpha distances within ``3.8 +/- 0.2`` Å.
* **Clashes**: pairs ``(i, j)`` with ``|i - j| >= 2`` (not sequence neighbours) closer than
  3.0 Å, found with :class:`scipy.spatial.cKDTree` (no dense ``n x n`` matrix). Reported
  as clashing pairs per residue and as the fraction of residues in at least one clash.
* **Radius of gyration** against chain length, compared with a power law
  ``Rg = a N^nu`` fitted by least squares in log-log space to real chains (about
  ``2.2 N^0.38`` for globular proteins).
* **Virtual bond angles** (at residue ``i`` between ``i-1`` and ``i+1``, degrees in
  ``[0, 180]``) compared with the 1-Wasserstein distance of
  :func:`scipy.stats.wasserstein_distance`.
* **Virtual dihedrals** (``i .. i+3``, degrees in ``(-180, 180]``) compared with the
  1-Wasserstein distance *on the circle* (:func:`circular_wasserstein`): angles are
  periodic, so -179° and 179° are 2° apart, not 358°. For empirical measures on a
  circle of circumference ``P`` the distance is
  ``min_alpha int_0^P |F(theta) - G(theta) - alpha| dtheta`` (Rabin, Delon & Gousseau,
  2011), where ``F, G`` are the CDFs from an arbitrary cut point; the optimal
  ``alpha`` is a weighted median of ``F - G``. When both distributions stay within a
  half circle away from the cut it equals the linear distance of scipy.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import wasserstein_distance

from .ca_traces import CA_BOND

__all__ = [
    "consecutive_distances", "fraction_ideal_bonds", "clash_counts", "radius_of_gyration",
    "fit_rg_power_law", "virtual_bond_angles", "virtual_dihedrals", "circular_wasserstein",
    "trace_summary", "compare_traces", "random_walk_traces",
]


def _np(trace) -> np.ndarray:
    """One trace as a float64 array ``(n, 3)``; ``ValueError`` for any other shape."""
    if hasattr(trace, "detach"):
        trace = trace.detach().cpu().numpy()
    x = np.asarray(trace, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"a C-alpha trace must be an array (n, 3), got shape {x.shape}")
    return x


def _pooled(per_trace, traces: Sequence, what: str, need: int, name: str = "traces"
            ) -> np.ndarray:
    """``per_trace(t)`` of every trace, concatenated, without undefined (NaN) values;
    ``ValueError`` when that is empty (``what``: the quantity, which needs ``need`` residues;
    ``name``: the set)."""
    if len(traces) == 0:
        raise ValueError(f"no {what} in the {name}: there are no traces")
    values = np.concatenate([per_trace(t) for t in traces])
    if values.size == 0:
        raise ValueError(f"no {what} in the {name}: every trace has fewer than {need} residues")
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise ValueError(f"no {what} in the {name}: none is defined (coincident C-alphas)")
    return values


def consecutive_distances(trace) -> np.ndarray:
    """Distances between consecutive C-alphas, ``(n - 1,)`` in Å (empty if ``n < 2``)."""
    x = _np(trace)
    return np.linalg.norm(np.diff(x, axis=0), axis=1)


def fraction_ideal_bonds(traces: Sequence, target: float = CA_BOND, tol: float = 0.2) -> float:
    """Fraction of all consecutive distances (pooled over traces) within ``target +/- tol``.

    Raises:
        ValueError: no traces, or none of at least 2 residues.
    """
    return _fraction_within(_bond_lengths(traces), target, tol)


def _bond_lengths(traces: Sequence) -> np.ndarray:
    """All consecutive C-alpha distances of ``traces``, pooled (:func:`_pooled`)."""
    return _pooled(consecutive_distances, traces, "consecutive C-alpha distances", 2)


def _fraction_within(d: np.ndarray, target: float, tol: float) -> float:
    return float(np.mean(np.abs(d - target) <= tol))


def clash_counts(trace, cutoff: float = 3.0, min_separation: int = 2) -> tuple[int, int]:
    """Clashes of one trace: ``(pairs, residues)``.

    ``pairs`` counts residue pairs with ``|i - j| >= min_separation`` closer than ``cutoff``
    Å; ``residues`` counts residues taking part in at least one such pair. Traces of
    fewer than ``min_separation + 1`` residues have none: ``(0, 0)``.
    """
    x = _np(trace)
    pairs = cKDTree(x).query_pairs(cutoff, output_type="ndarray")       # distance <= cutoff
    if pairs.size == 0:
        return 0, 0
    closer = np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=1) < cutoff
    pairs = pairs[closer & (np.abs(pairs[:, 0] - pairs[:, 1]) >= min_separation)]
    return int(len(pairs)), int(np.unique(pairs).size)


def radius_of_gyration(trace) -> float:
    """Radius of gyration (Å) of the C-alphas (unit masses); 0 for one residue.

    Raises:
        ValueError: the trace is empty.
    """
    x = _np(trace)
    if len(x) == 0:
        raise ValueError("radius of gyration of an empty C-alpha trace (0 residues)")
    return float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()))


def fit_rg_power_law(traces: Sequence) -> tuple[float, float]:
    """Fit ``Rg = a N^nu`` to traces by least squares of ``log Rg`` on ``log N``; ``(a, nu)``.

    Raises:
        ValueError: a trace with ``Rg = 0`` (one residue, or all at one point: ``log Rg``
            is undefined), or fewer than two different lengths (``nu`` is undetermined).
    """
    n = np.array([len(_np(t)) for t in traces], dtype=np.float64)
    rg = np.array([radius_of_gyration(t) for t in traces])
    if (rg <= 0).any():
        k = int(n[rg <= 0][0])
        raise ValueError("cannot fit Rg = a N^nu: "
                         + ("a trace of 1 residue" if k == 1 else f"a trace of {k} residues at "
                            "one point") + " has Rg 0, and log Rg is undefined")
    if len(np.unique(n)) < 2:
        raise ValueError("cannot fit Rg = a N^nu: it needs traces of at least two different "
                         f"lengths, got {'none' if n.size == 0 else f'only N = {int(n[0])}'}")
    nu, log_a = np.polyfit(np.log(n), np.log(rg), 1)
    return float(np.exp(log_a)), float(nu)


def virtual_bond_angles(trace) -> np.ndarray:
    """Angles (degrees, ``[0, 180]``) at each inner C-alpha between its two neighbours,
    ``(n - 2,)`` (empty if ``n < 3``); NaN where a neighbour coincides with it (undefined;
    the summary metrics leave those out, :func:`fraction_ideal_bonds` counts the bond)."""
    x = _np(trace)
    u = x[:-2] - x[1:-1]
    v = x[2:] - x[1:-1]
    norms = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
    cos = (u * v).sum(1) / np.where(norms > 0, norms, 1.0)
    return np.where(norms > 0, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), np.nan)


def virtual_dihedrals(trace) -> np.ndarray:
    """Dihedral angles (degrees, ``(-180, 180]``) of each four consecutive C-alphas,
    ``(n - 3,)`` (empty if ``n < 4``); right-handed helices give about +50°. NaN where
    undefined: the middle two C-alphas coincide, or three consecutive ones are collinear."""
    x = _np(trace)
    b0 = x[1:-2] - x[:-3]
    b1 = x[2:-1] - x[1:-2]
    b2 = x[3:] - x[2:-1]
    n1 = np.cross(b0, b1)
    n2 = np.cross(b1, b2)
    length = np.linalg.norm(b1, axis=1, keepdims=True)
    y = (b1 / np.where(length > 0, length, 1.0) * np.cross(n1, n2)).sum(1)
    # undefined where the middle bond has no length or three atoms are collinear
    defined = (length[:, 0] > 0) & (np.linalg.norm(n1, axis=1) > 0) & (np.linalg.norm(n2, axis=1) > 0)
    return np.where(defined, np.degrees(np.arctan2(y, (n1 * n2).sum(1))), np.nan)


def circular_wasserstein(a: np.ndarray, b: np.ndarray, period: float = 360.0) -> float:
    """1-Wasserstein distance between two empirical distributions on a circle of
    circumference ``period`` (exact; see the module docstring).

    Raises:
        ValueError: either sample is empty.
    """
    a = np.sort(np.mod(np.asarray(a, dtype=np.float64), period))
    b = np.sort(np.mod(np.asarray(b, dtype=np.float64), period))
    if a.size == 0 or b.size == 0:
        raise ValueError(f"circular Wasserstein distance of an empty sample "
                         f"({a.size} and {b.size} values)")
    pts = np.sort(np.concatenate([a, b]))
    # On [pts[k], pts[k+1]) the CDF difference is constant; the wrap-around interval
    # [pts[-1], pts[0] + period) has F = G (both 1, then both 0), i.e. D = 0.
    widths = np.append(np.diff(pts), period - (pts[-1] - pts[0]))
    diff = (np.searchsorted(a, pts, side="right") / a.size
            - np.searchsorted(b, pts, side="right") / b.size)
    diff[-1] = 0.0
    order = np.argsort(diff)
    cum = np.cumsum(widths[order])
    alpha = diff[order][np.searchsorted(cum, 0.5 * cum[-1])]
    return float(np.sum(widths * np.abs(diff - alpha)))


def trace_summary(traces: Sequence, rg_law: tuple[float, float] | None = None) -> dict:
    """Per-set summary: bond fraction within 3.8 +/- 0.2 Å, clash rates, mean Rg and (when
    ``rg_law = (a, nu)`` is given) the mean of ``Rg / (a N^nu)``.

    Raises:
        ValueError: no traces, none of at least 2 residues, or an empty one.
    """
    bonds = _bond_lengths(traces)
    n_res = sum(len(_np(t)) for t in traces)
    clashes = [clash_counts(t) for t in traces]
    rg = np.array([radius_of_gyration(t) for t in traces])
    out = {
        "num_traces": len(traces),
        "num_residues": int(n_res),
        "bond_fraction_3.8pm0.2": _fraction_within(bonds, CA_BOND, 0.2),
        "bond_mean": float(np.mean(bonds)),
        "clash_pairs_per_residue": sum(c[0] for c in clashes) / n_res,
        "clash_residue_fraction": sum(c[1] for c in clashes) / n_res,
        "rg_mean": float(rg.mean()),
    }
    if rg_law is not None:
        a, nu = rg_law
        n = np.array([len(_np(t)) for t in traces], dtype=np.float64)
        out["rg_over_law"] = float(np.mean(rg / (a * n ** nu)))
    return out


def compare_traces(generated: Sequence, reference: Sequence,
                   rg_law: tuple[float, float] | None = None) -> dict:
    """Summaries of both sets plus the 1-Wasserstein distances (degrees) of their virtual
    bond-angle (linear) and dihedral (circular) distributions.

    Raises:
        ValueError: either set is empty or has no trace of at least 4 residues (dihedrals),
            or see :func:`trace_summary`.
    """
    ang_g = _pooled(virtual_bond_angles, generated, "virtual bond angles", 3, "generated traces")
    ang_r = _pooled(virtual_bond_angles, reference, "virtual bond angles", 3, "reference traces")
    dih_g = _pooled(virtual_dihedrals, generated, "virtual dihedrals", 4, "generated traces")
    dih_r = _pooled(virtual_dihedrals, reference, "virtual dihedrals", 4, "reference traces")
    return {
        **trace_summary(generated, rg_law),
        "w1_bond_angle_deg": float(wasserstein_distance(ang_g, ang_r)),
        "w1_dihedral_deg": circular_wasserstein(dih_g, dih_r),
    }


def random_walk_traces(lengths: Sequence[int], step: float = CA_BOND, seed: int = 0
                       ) -> list[np.ndarray]:
    """Naive baseline: random walks with isotropic steps of exactly ``step`` Å, ``(n, 3)`` each
    (``ValueError`` for a length below 1)."""
    if any(n < 1 for n in lengths):
        raise ValueError(f"random walk lengths must be >= 1 residue, got {min(lengths)}")
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        d = rng.normal(size=(n - 1, 3))
        d *= step / np.linalg.norm(d, axis=1, keepdims=True)
        out.append(np.concatenate([np.zeros((1, 3)), np.cumsum(d, axis=0)]))
    return out
