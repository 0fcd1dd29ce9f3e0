"""Statistics used by every analysis: Benjamini-Hochberg q, the Crawford-Howell single-case test and
QC-FC (the correlation of head motion with each connection across subjects).

The group level (:mod:`nmflow.group.stats`, :mod:`nmflow.group.motion`), the
normative calibration (:mod:`nmflow.normative.deviations`) and the stimulus
study (:mod:`nmflow.prepost.singlecase`) use these functions; they depend on
NumPy and SciPy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q) of a 1-D array; NaN stays NaN.

    ``q_(k) = min_{j >= k} min(1, p_(j) m / j)`` over the ``m`` finite values
    sorted ascending (:func:`scipy.stats.false_discovery_control` on them).
    """
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        q[finite] = sps.false_discovery_control(p[finite])
    return q


@dataclass(frozen=True)
class CrawfordHowellResult:
    """Result of :func:`crawford_howell`; every array has the shape of ``t`` (a float for one value).

    Attributes
    ----------
    t : float or ndarray
        Modified t, ``(x* - mean) / (sd * sqrt((n + 1) / n))``.
    df : int
        Degrees of freedom, ``n - 1``.
    p_two_sided, p_less, p_greater : float or ndarray
        p-values of the case differing from the control population, lying below it, lying above it.
    percent_more_extreme : float or ndarray
        Estimated percentage (0-100) of the control population beyond the case on the case's side of the
        mean: ``100 * min(p_less, p_greater)`` (Crawford & Garthwaite, 2002).
    z_cc : float or ndarray
        Standardised case score ``(x* - mean) / sd`` (Z-CC).
    z_cc_ci : tuple of (float or ndarray)
        Lower and upper limits of Z-CC's confidence interval (non-central t, Crawford & Garthwaite,
        2002); NaN when the interval was not asked for.
    """

    t: float | np.ndarray
    df: int
    p_two_sided: float | np.ndarray
    p_less: float | np.ndarray
    p_greater: float | np.ndarray
    percent_more_extreme: float | np.ndarray
    z_cc: float | np.ndarray
    z_cc_ci: tuple


def crawford_howell(case, controls, confidence: float | None = 0.95) -> CrawfordHowellResult:
    """Crawford-Howell (1998) single-case t-test of a case against a small control sample.

    ``t = (x* - mean) / (sd * sqrt((n + 1) / n))`` with ``sd`` the sample
    standard deviation (ddof=1) of the ``n`` controls, ``df = n - 1``.

    Parameters
    ----------
    case : float or ndarray, shape (n_connections,) or (n_cases, n_connections)
        The case's score(s), in the controls' units (broadcast against the controls' per-connection mean).
    controls : ndarray, shape (n_controls,) or (n_controls, n_connections)
        The control sample.
    confidence : float or None
        Level of the interval of Z-CC (default 0.95); None skips it (``z_cc_ci`` is NaN), for callers
        that do not report it.

    Returns
    -------
    CrawfordHowellResult
        See :func:`crawford_howell_summary`.
    """
    controls = np.asarray(controls, dtype=float)
    n = controls.shape[0]
    if n < 2:
        raise ValueError("Crawford-Howell needs at least 2 controls")
    return crawford_howell_summary(case, controls.mean(axis=0), controls.std(axis=0, ddof=1), n, confidence)


def crawford_howell_summary(case, mean, sd, n: int, confidence: float | None = 0.95) -> CrawfordHowellResult:
    """:func:`crawford_howell` from the controls' summary statistics (as published worked examples give them).

    Parameters
    ----------
    case : float or ndarray
        The case's score(s).
    mean, sd : float or ndarray
        The controls' mean and sample standard deviation (ddof=1), per connection.
    n : int
        Number of controls (>= 2).
    confidence : float or None
        Level of Z-CC's interval (None: not computed).

    Notes
    -----
    The interval of Z-CC: ``c = z_cc * sqrt(n)`` is the observed value of a
    non-central t with ``n - 1`` degrees of freedom and non-centrality
    ``delta * sqrt(n)``; the limits are the non-centralities whose
    ``1 - alpha/2`` and ``alpha/2`` quantiles equal ``c``, divided by
    ``sqrt(n)`` (Crawford & Garthwaite, 2002), found with SciPy's elementwise
    bracketing root finder.
    """
    df = int(n) - 1
    if df < 1:
        raise ValueError("Crawford-Howell needs at least 2 controls")
    with np.errstate(divide="ignore", invalid="ignore"):
        z_cc = (np.asarray(case, dtype=float) - mean) / sd
        t = (np.asarray(case, dtype=float) - mean) / (sd * np.sqrt((n + 1) / n))
    p_less, p_greater = sps.t.cdf(t, df), sps.t.sf(t, df)
    if confidence is None:
        ci = (np.full(t.shape, np.nan), np.full(t.shape, np.nan))
    else:
        ci = _z_cc_interval(z_cc, n, confidence)
    scalar = t.ndim == 0

    def out(x):
        return float(x) if scalar else x

    return CrawfordHowellResult(
        t=out(t), df=df, p_two_sided=out(2 * sps.t.sf(np.abs(t), df)), p_less=out(p_less),
        p_greater=out(p_greater), percent_more_extreme=out(100 * np.minimum(p_less, p_greater)), z_cc=out(z_cc),
        z_cc_ci=(out(ci[0]), out(ci[1])))


def _z_cc_interval(z_cc: np.ndarray, n: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Limits of Z-CC's interval (Crawford & Garthwaite, 2002), elementwise; NaN where ``z_cc`` is not finite."""
    from scipy.optimize import elementwise

    alpha = 1 - confidence
    c = z_cc * np.sqrt(n)
    finite = np.isfinite(c)
    limits = []
    for quantile in (1 - alpha / 2, alpha / 2):
        limit = np.full(c.shape, np.nan)
        if finite.any():
            def gap(delta, x, q=quantile):  # x: the elements still searched (the finder passes a subset)
                cdf = sps.nct.cdf(x, n - 1, delta)  # NaN far in the tails (few df): its limit, 1 below x, 0 above
                return np.where(np.isnan(cdf), (delta < x).astype(float), cdf) - q

            x = c[finite]
            bracket = elementwise.bracket_root(gap, x, args=(x,))
            limit[finite] = elementwise.find_root(gap, bracket.bracket, args=(x,)).x / np.sqrt(n)
        limits.append(limit)
    return limits[0], limits[1]


def qc_fc(fd: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson correlation across subjects of mean FD with every connection.

    Parameters
    ----------
    fd : ndarray, shape (n_subjects,)
        Mean framewise displacement (mm); NaN leaves the subject out.
    features : ndarray, shape (n_subjects, n_features)
        FC per connection (e.g. Fisher z); NaN leaves that subject out of that connection.

    Returns
    -------
    r, p, n : ndarray, shape (n_features,)
        Correlation, two-sided p (t-test with ``n - 2`` df, as
        :func:`scipy.stats.pearsonr`) and the number of subjects used; NaN
        where fewer than 3 subjects or a constant column.
    """
    x = np.asarray(features, float)
    valid = np.isfinite(x) & np.isfinite(np.asarray(fd, float))[:, None]
    n = valid.sum(axis=0)
    f = np.where(valid, np.asarray(fd, float)[:, None], 0.0)
    x = np.where(valid, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fc, xc = f - f.sum(axis=0) / n, x - x.sum(axis=0) / n
        fc, xc = np.where(valid, fc, 0.0), np.where(valid, xc, 0.0)
        r = (fc * xc).sum(axis=0) / np.sqrt((fc ** 2).sum(axis=0) * (xc ** 2).sum(axis=0))
        r = np.where(n >= 3, np.clip(r, -1, 1), np.nan)
        t = r * np.sqrt((n - 2) / (1 - r ** 2))
    p = 2 * sps.t.sf(np.abs(t), np.maximum(n - 2, 1))
    return r, np.where(np.isfinite(r), p, np.nan), n


def qc_fc_summary(r: np.ndarray, p: np.ndarray, alpha: float = 0.05) -> dict:
    """``pct_significant`` (% of connections with p < alpha, uncorrected) and ``median_abs_r``."""
    finite = np.isfinite(r)
    if not finite.any():
        return {"pct_significant": np.nan, "median_abs_r": np.nan}
    return {"pct_significant": 100.0 * float(np.mean(p[finite] < alpha)),
            "median_abs_r": float(np.median(np.abs(r[finite])))}
