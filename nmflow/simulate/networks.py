"""Network-level simulation: the control FC matrix and band-limited signals.

Subjects, planted effects and site effects: :mod:`nmflow.simulate.population`.

All matrices are ``(n_networks, n_networks)`` correlation matrices; time
series are ``(n_volumes, n_networks)`` and band-limited to 0.01-0.08 Hz so
that a 0.01-0.1 Hz band-pass keeps them.
"""

from __future__ import annotations

import numpy as np

# The system (1-based) whose shared signal each of the 17 simulated networks carries.  This grouping was
# taken, wrongly, from a label table whose Yeo-17 names are out of order (networks 5-17; Yeo's own mapping
# is nmflow.networks.YEO17_TO_YEO7); it is kept because the simulator's calibration on real data and the
# planted-effect benchmarks were made with it, and a simulated study is internally consistent with it
# (the toy Yeo-7 atlas merges the toy Yeo-17 labels the same way).
SIMULATED_SYSTEMS = np.array([1, 1, 2, 2, 7, 6, 3, 4, 4, 6, 6, 6, 7, 7, 7, 5, 5])

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
        system = SIMULATED_SYSTEMS - 1
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
