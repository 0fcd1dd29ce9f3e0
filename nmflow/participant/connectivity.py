"""Functional connectivity (FC) between region time series.

Every function takes a time series array of shape ``(n_volumes, n_regions)``
and returns a symmetric ``(n_regions, n_regions)`` matrix.  Regions whose
time series are all NaN (too little atlas coverage) or constant give NaN rows
and columns.

Feature order
-------------
A connectivity matrix becomes a feature vector by taking its upper triangle
without the diagonal in row-major order (``numpy.triu_indices(n, k=1)``):
``(0,1), (0,2), ..., (0,n-1), (1,2), ...``.  Yeo-17 gives 136 features,
Yeo-7 gives 21.  Feature names are ``"<region_i>__<region_j>"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats

from nmflow.participant.settings import METRIC_NAMES


def upper_triangle(matrix: np.ndarray) -> np.ndarray:
    """Feature vector ``(n*(n-1)/2,)`` of a ``(n, n)`` matrix, in the documented order."""
    rows, cols = np.triu_indices(matrix.shape[0], k=1)
    return matrix[rows, cols]


def from_upper_triangle(vector: np.ndarray, n_regions: int, diagonal: float = 1.0) -> np.ndarray:
    """Inverse of :func:`upper_triangle`: a symmetric ``(n, n)`` matrix."""
    matrix = np.full((n_regions, n_regions), diagonal, dtype=float)
    rows, cols = np.triu_indices(n_regions, k=1)
    matrix[rows, cols] = vector
    matrix[cols, rows] = vector
    return matrix


def connection_names(region_names: list[str]) -> list[str]:
    """Names ``"a__b"`` of the features, in the documented order."""
    rows, cols = np.triu_indices(len(region_names), k=1)
    return [f"{region_names[i]}__{region_names[j]}" for i, j in zip(rows, cols)]


def fisher_z(r: np.ndarray) -> np.ndarray:
    """Fisher's z (``arctanh``) of correlations, clipped to ``|r| <= 1 - 1e-7``."""
    return np.arctanh(np.clip(r, -1 + 1e-7, 1 - 1e-7))


def _valid_columns(timeseries: np.ndarray) -> np.ndarray:
    finite = np.all(np.isfinite(timeseries), axis=0)
    spread = np.zeros(timeseries.shape[1], dtype=bool)
    spread[finite] = np.ptp(timeseries[:, finite], axis=0) > 0
    return spread


def _with_invalid_as_nan(timeseries: np.ndarray, compute) -> np.ndarray:
    """Apply ``compute`` to the valid columns and put NaN rows/cols for the rest."""
    valid = _valid_columns(timeseries)
    n = timeseries.shape[1]
    out = np.full((n, n), np.nan)
    if valid.sum() >= 2:
        out[np.ix_(valid, valid)] = compute(np.asarray(timeseries[:, valid], dtype=float))
    return out


def _pearson(x: np.ndarray) -> np.ndarray:
    r = np.corrcoef(x, rowvar=False)
    np.fill_diagonal(r, 1.0)
    return r


def _spearman(x: np.ndarray) -> np.ndarray:
    return _pearson(stats.rankdata(x, axis=0))


def kendall_tau_b(x: np.ndarray) -> np.ndarray:
    """Exact Kendall tau-b between all columns of ``x`` ``(n_volumes, n_regions)``.

    For every pair of time points ``(s, t)`` the sign ``sign(x[t] - x[s])`` is
    computed once per region; tau-b between regions ``i`` and ``j`` is then
    ``sum(S_i * S_j) / sqrt(n_untied_i * n_untied_j)`` where ``n_untied`` counts
    the non-zero signs.  This equals ``scipy.stats.kendalltau`` (variant "b")
    pair by pair, ties included, at the cost of one matrix product.
    Memory: ``n_regions * n_volumes * (n_volumes - 1) / 2`` float32 values,
    processed in blocks of time-point pairs.
    """
    x = np.asarray(x, dtype=float)
    n_volumes, n_regions = x.shape
    first, second = np.triu_indices(n_volumes, k=1)
    concordance = np.zeros((n_regions, n_regions))
    untied = np.zeros(n_regions)
    block = max(1, 4_000_000 // max(n_regions, 1))
    for start in range(0, first.size, block):
        stop = start + block
        signs = np.sign(x[second[start:stop]] - x[first[start:stop]]).astype(np.float32)
        concordance += (signs.T @ signs).astype(float)
        untied += np.count_nonzero(signs, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = concordance / np.sqrt(np.outer(untied, untied))
    np.fill_diagonal(tau, 1.0)
    return tau


def _covariance(x: np.ndarray) -> np.ndarray:
    return np.cov(x, rowvar=False)


# The three Ledoit-Wolf metrics compute what nilearn's ConnectivityMeasure(kind=..., standardize=False) does
# (its default estimator, then its cov_to_corr / prec_to_partial; tests/test_connectivity.py checks them equal
# to it), without importing nilearn.connectome: it loads scikit-learn's estimator checks and pytest (~0.3 s
# of every participant process).

def _ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrunk covariance ``(n_regions, n_regions)`` of ``x`` ``(n_volumes, n_regions)``."""
    from sklearn.covariance import LedoitWolf

    return LedoitWolf(store_precision=False).fit(x).covariance_


def _unit_diagonal(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` scaled by the square roots of its diagonal (a covariance to a correlation); diagonal 1."""
    scale = np.atleast_2d(1.0 / np.sqrt(np.diag(matrix)))
    out = matrix * scale * scale.T
    np.fill_diagonal(out, 1.0)
    return out


def _lw_correlation(x: np.ndarray) -> np.ndarray:
    return _unit_diagonal(_ledoit_wolf(x))


def _partial(x: np.ndarray) -> np.ndarray:
    """Partial correlations from the inverse of the Ledoit-Wolf covariance (the precision)."""
    from scipy import linalg

    out = -_unit_diagonal(linalg.inv(_ledoit_wolf(x)))
    np.fill_diagonal(out, 1.0)
    return out


@dataclass(frozen=True)
class Metric:
    """One FC metric: how to compute it and how to read it.

    ``is_correlation``: values in [-1, 1], modelled as Fisher z at the group
    level; ``valid_diagonal``: the diagonal carries information (variances).
    """

    name: str
    compute: Callable[[np.ndarray], np.ndarray]
    is_correlation: bool
    valid_diagonal: bool
    description: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("pearson", _pearson, True, False, "Pearson correlation"),
    Metric("spearman", _spearman, True, False, "Spearman rank correlation"),
    Metric("kendall", kendall_tau_b, True, False, "Kendall tau-b rank correlation"),
    Metric("covariance", _covariance, False, True, "sample covariance (percent signal change squared)"),
    Metric("ledoitwolf", _ledoit_wolf, False, True, "Ledoit-Wolf shrunk covariance"),
    Metric("lwcorrelation", _lw_correlation, True, False,
           "Ledoit-Wolf regularised correlation (the shrunk covariance scaled to a unit diagonal)"),
    Metric("partial", _partial, True, False, "partial correlation (Ledoit-Wolf precision)"),
)}
if tuple(METRICS) != METRIC_NAMES:  # the CLI's --metrics choices, read without importing NumPy
    raise RuntimeError(f"METRICS {tuple(METRICS)} and nmflow.participant.settings.METRIC_NAMES {METRIC_NAMES} differ")


def is_correlation(metric: str) -> bool:
    """Whether ``metric`` gives correlations (Fisher z at the group level); unknown names give False."""
    return metric in METRICS and METRICS[metric].is_correlation


def connectivity(timeseries: np.ndarray, metric: str) -> np.ndarray:
    """FC matrix ``(n_regions, n_regions)`` of ``timeseries`` ``(n_volumes, n_regions)``.

    Parameters
    ----------
    timeseries : ndarray, shape (n_volumes, n_regions)
        Cleaned region signals; NaN or constant columns give NaN rows/columns.
    metric : {"pearson", "spearman", "kendall", "covariance", "ledoitwolf", "lwcorrelation", "partial"}
        ``kendall`` is the exact tau-b; ``ledoitwolf`` (shrunk covariance),
        ``lwcorrelation`` (its correlation: regularised Pearson) and
        ``partial`` (partial correlation from the Ledoit-Wolf precision) are
        what nilearn's ``ConnectivityMeasure`` computes.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown FC metric {metric!r}; choose from {', '.join(METRICS)}")
    if timeseries.ndim != 2 or timeseries.shape[0] < 3:
        raise ValueError(f"need (n_volumes >= 3, n_regions) time series, got {timeseries.shape}")
    return _with_invalid_as_nan(timeseries, METRICS[metric].compute)
