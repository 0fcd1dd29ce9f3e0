"""FC of the PRE and POST segments and its change, ΔFC = z(POST) - z(PRE), with the participant level's metrics."""

from __future__ import annotations

import numpy as np

from nmflow.participant.connectivity import connectivity, fisher_z

# Pearson, regularised Pearson (Ledoit-Wolf), Spearman, Kendall tau-b
PREPOST_METRICS = ("pearson", "lwcorrelation", "spearman", "kendall")


def segment_fc(timeseries: np.ndarray, metrics: tuple[str, ...] = PREPOST_METRICS) -> dict[str, np.ndarray]:
    """FC ``(n_regions, n_regions)`` of one segment's region signals ``(n_volumes, n_regions)`` per metric."""
    return {m: connectivity(timeseries, m) for m in metrics}


def delta_fc(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """ΔFC ``(n_regions, n_regions)``: Fisher z of POST minus Fisher z of PRE (correlation metrics), diagonal 0."""
    delta = fisher_z(post) - fisher_z(pre)
    np.fill_diagonal(delta, 0.0)
    return delta

