"""Network-level simulation: control FC, planted disorder effects, site effects.

All matrices are ``(n_networks, n_networks)`` correlation matrices; time
series are ``(n_volumes, n_networks)`` and band-limited to 0.01-0.08 Hz so
that a 0.01-0.1 Hz band-pass keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nmflow.connectivity import upper_triangle

# Yeo-17 network -> Yeo-7 system, in the order of the atlas labels 1..17 of
# the shipped Yeo-17 label table (Visual, SomMot, DorsAttn/TempPar, SalVentAttn,
# Control, Default, Limbic).
YEO17_TO_YEO7 = np.array([1, 1, 2, 2, 7, 6, 3, 4, 4, 6, 6, 6, 7, 7, 7, 5, 5])

# Correlation between the 7 systems' shared signals (Visual, SomMot, DorsAttn,
# SalVentAttn, Limbic, Control, Default); Default is anti-correlated with the
# task-positive systems, as in resting-state data.
_SYSTEM_CORR = np.array(
    [
        [1.00, 0.35, 0.30, 0.05, 0.00, 0.00, -0.15],
        [0.35, 1.00, 0.30, 0.30, 0.00, -0.05, -0.15],
        [0.30, 0.30, 1.00, 0.25, 0.00, 0.20, -0.30],
        [0.05, 0.30, 0.25, 1.00, 0.05, 0.25, -0.20],
        [0.00, 0.00, 0.00, 0.05, 1.00, 0.10, 0.20],
        [0.00, -0.05, 0.20, 0.25, 0.10, 1.00, 0.15],
        [-0.15, -0.15, -0.30, -0.20, 0.20, 0.15, 1.00],
    ]
)


def nearest_correlation(matrix: np.ndarray, min_eig: float = 0.05) -> np.ndarray:
    """Symmetric positive-definite correlation matrix closest to ``matrix`` (eigenvalue clipping)."""
    sym = (matrix + matrix.T) / 2
    values, vectors = np.linalg.eigh(sym)
    fixed = (vectors * np.maximum(values, min_eig)) @ vectors.T
    d = np.sqrt(np.diag(fixed))
    out = fixed / np.outer(d, d)
    np.fill_diagonal(out, 1.0)
    return out


def control_correlation(n_networks: int, rng: np.random.Generator) -> np.ndarray:
    """A realistic healthy-control network correlation matrix.

    Networks of one Yeo-7 system share a system signal (within-system r ~ 0.5-0.7);
    systems correlate as in ``_SYSTEM_CORR``; a small random jitter makes every
    connection distinct.
    """
    if n_networks == 17:
        system = YEO17_TO_YEO7 - 1
    elif n_networks == 7:
        system = np.arange(7)
    else:
        system = np.arange(n_networks) % 7
    loading = rng.uniform(0.75, 0.85, n_networks)
    corr = np.outer(loading, loading) * _SYSTEM_CORR[np.ix_(system, system)]
    jitter = rng.normal(0, 0.04, (n_networks, n_networks))
    corr = corr + (jitter + jitter.T) / 2
    np.fill_diagonal(corr, 1.0)
    return nearest_correlation(corr)


@dataclass
class PlantedEffects:
    """Connections altered in patient groups.

    ``table`` has one row per (group, connection): ``group``, ``connection``
    (feature index in the documented upper-triangle order), ``i``, ``j``
    (network indices, 0-based), ``kind`` ("specific" or "shared") and ``delta``
    (change of the correlation).
    """

    table: pd.DataFrame
    group_corr: dict[str, np.ndarray] = field(default_factory=dict)


def plant_effects(
    control: np.ndarray,
    groups: list[str],
    rng: np.random.Generator,
    n_specific: int = 6,
    n_shared: int = 4,
    delta: float = 0.35,
    min_eig: float = 0.05,
) -> PlantedEffects:
    """Alter ``n_specific`` connections per group and ``n_shared`` common to all groups.

    Each altered connection moves by exactly ``delta`` away from its control
    value (down when the control value is above 0.25, else up) and no other
    connection changes: candidate connections are taken in random order and a
    candidate is skipped when the altered matrix would lose positive
    definiteness (smallest eigenvalue below ``min_eig``), so no projection
    spreads the effect onto unplanted connections.
    """
    n = control.shape[0]
    rows, cols = np.triu_indices(n, k=1)
    n_needed = n_shared + n_specific * len(groups)
    if n_needed > rows.size:
        raise ValueError(f"cannot plant {n_needed} connections among {rows.size}")
    candidates = list(rng.permutation(rows.size))

    def altered(base: np.ndarray, k: int) -> np.ndarray:
        i, j = rows[k], cols[k]
        out = base.copy()
        out[i, j] = out[j, i] = control[i, j] + (-delta if control[i, j] > 0.25 else delta)
        return out

    def take(bases: list[np.ndarray], count: int) -> tuple[list[int], list[np.ndarray]]:
        chosen = []
        for k in list(candidates):
            if len(chosen) == count:
                break
            trial = [altered(b, k) for b in bases]
            if all(np.linalg.eigvalsh(m).min() >= min_eig for m in trial):
                chosen.append(k)
                candidates.remove(k)
                bases = trial
        if len(chosen) < count:
            raise ValueError(f"cannot plant {count} connections of size {delta} and keep the matrix positive definite")
        return chosen, bases

    shared, shared_bases = take([control] * len(groups), n_shared)
    records, group_corr = [], {"control": control}
    for name, base in zip(groups, shared_bases):
        specific, (corr,) = take([base], n_specific)
        group_corr[name] = corr
        for kind, idx in [("shared", shared), ("specific", specific)]:
            for k in idx:
                i, j = int(rows[k]), int(cols[k])
                records.append({"group": name, "connection": int(k), "i": i, "j": j, "kind": kind,
                                "delta": round(float(corr[i, j] - control[i, j]), 4)})
    table = pd.DataFrame.from_records(records, columns=["group", "connection", "i", "j", "kind", "delta"])
    return PlantedEffects(table=table, group_corr=group_corr)


def bandlimited_noise(
    n_volumes: int, n_signals: int, tr: float, rng: np.random.Generator,
    low: float = 0.01, high: float = 0.08,
) -> np.ndarray:
    """Unit-variance Gaussian noise ``(n_volumes, n_signals)`` with power only in [low, high] Hz."""
    n_fft = 2 * n_volumes
    freqs = np.fft.rfftfreq(n_fft, d=tr)
    spectrum = rng.standard_normal((freqs.size, n_signals)) + 1j * rng.standard_normal(
        (freqs.size, n_signals)
    )
    spectrum[(freqs < low) | (freqs > high)] = 0
    signal = np.fft.irfft(spectrum, n=n_fft, axis=0)[:n_volumes]
    signal -= signal.mean(axis=0)
    return signal / signal.std(axis=0)


def correlated_timeseries(
    corr: np.ndarray, n_volumes: int, tr: float, rng: np.random.Generator
) -> np.ndarray:
    """Band-limited time series ``(n_volumes, n_networks)`` whose population correlation is ``corr``."""
    latent = bandlimited_noise(n_volumes, corr.shape[0], tr, rng)
    return latent @ np.linalg.cholesky(corr).T


def subject_correlation(
    group_corr: np.ndarray, rng: np.random.Generator, weight: float = 0.1, dof: int = 5
) -> np.ndarray:
    """One subject's true correlation: ``(1 - weight) * group + weight * W``.

    ``W`` is the sample correlation of ``dof`` independent Gaussian draws
    (off-diagonal sd about ``1 / sqrt(dof)``), so subjects vary around the
    group matrix without any projection: the mix of two positive-definite
    matrices stays positive definite, and every connection's expected value is
    the group's shrunk by the same factor ``1 - weight`` (a planted change of
    ``delta`` appears as ``(1 - weight) * delta`` and leaks nowhere).
    """
    draws = rng.standard_normal((max(dof, 2), group_corr.shape[0]))
    return (1 - weight) * group_corr + weight * np.corrcoef(draws, rowvar=False)


def site_effect(
    n_networks: int, n_volumes: int, tr: float, strength: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A site's scanner artefact: weights ``(n_networks,)`` and per-subject signal maker.

    Returns the site's network weights and its band-limited shared signal
    ``(n_volumes,)``: added to the network signals it shifts every connection
    by about ``w_i * w_j`` (an additive site effect in FC space).
    """
    weights = strength * rng.uniform(0.2, 1.0, n_networks)
    return weights, bandlimited_noise(n_volumes, 1, tr, rng)[:, 0]


def true_fc_features(corr: np.ndarray) -> np.ndarray:
    """Feature vector of a true correlation matrix, in the documented order."""
    return upper_triangle(corr)
