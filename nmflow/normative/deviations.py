"""Deviation scores of subjects from a normative model, and their calibration.

Signed residual z (the default deviation)
-----------------------------------------
A model predicts each connection of a subject, ``x_hat``, from what it was
given (the autoencoder: the subject's connectivity and covariates; the linear
baseline: the covariates only).  The residual ``r = x - x_hat`` is in the
features' own units (Fisher z for correlation metrics).  It is standardised by
the reference controls' *out-of-sample* residual scale of that connection::

    z = r / sqrt(mean(r_ref ** 2))

(the root mean square, so that controls' ``z ** 2`` average 1), pooled over
sites or, with ``per_site``, within the subject's site when that site has at
least ``min_site`` reference controls.  Controls' residuals come from models
that never saw them (cross-fitting, :mod:`nmflow.normative.crossfit`), so
this scale is the one a new subject meets.  ``|z|`` (absolute deviation) is
kept as an option for the tests.

Global scores per subject
-------------------------
* ``mean_sq_z``: mean of ``z ** 2`` over connections (chi-square-like; a
  few focal extreme deviations raise it, unlike a mean absolute error);
* ``global_score``: the percentile of ``mean_sq_z`` among the reference
  controls (a control against the *other* controls), 0-100;
* ``n_extreme``: connections with ``|z| > 2.6`` (two-sided p < 0.01);
* ``mean_abs_error``: mean ``|x - x_hat|`` in standardised units (the
  global reconstruction error).

Global and focal deviations
---------------------------
The autoencoder predicts each connection from the subject's others, so a
shift shared by all connections (lower FC overall, or head motion) is
largely predicted from the other, equally shifted connections and mostly
missing from its z.  That *global* component is scored apart
(:func:`focal_and_global`):

* ``global_fc_z``: the subject's mean FC over connections minus what its
  covariates predict (a cross-fitted OLS on the controls,
  :func:`nmflow.normative.crossfit.mean_fc_residuals`), over the reference
  controls' out-of-sample residual root mean square (signed);
* ``focal_z``: ``log(mean_sq_z)`` standardised by the reference controls'
  mean and SD (the focal part the autoencoder sees);
* ``combined_score``: the percentile among the reference controls of
  ``focal_z ** 2 + global_fc_z ** 2``, 0-100 (a control among the others).

Calibration
-----------
Beside PCNtoolkit's explained variance and standardised MSE and the moments
of ``z``, :func:`calibration_table` gives the QC-FC of the deviations: the
correlation across the reference controls of each connection's ``z`` with
mean FD (:func:`nmflow.stats.qc_fc`), summarised by the median
``|r|`` (target <= 0.1) and the % of connections with p < 0.05 (uncorrected;
about 5 % when the deviations carry no motion).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from nmflow.stats import qc_fc, qc_fc_summary

EXTREME_Z = 2.6


def z_against(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(scores - mean_ref) / sd_ref`` per column; sd (ddof=1) 0 is replaced by 1.

    Parameters
    ----------
    scores : ndarray, shape (n_subjects, n_features) or (n_subjects,)
    reference : ndarray, shape (n_reference, n_features) or (n_reference,)
    """
    mean, sd = reference.mean(axis=0), reference.std(axis=0, ddof=1)
    return (scores - mean) / np.where(sd > 0, sd, 1.0)


def rms(values: np.ndarray) -> np.ndarray:
    """Root mean square per column ``(n_features,)``; 0 becomes 1."""
    out = np.sqrt(np.mean(np.asarray(values, float) ** 2, axis=0))
    return np.where(out > 0, out, 1.0)


def residual_scale(residuals: np.ndarray, reference: np.ndarray, sites: np.ndarray | None = None,
                   per_site: bool = False, min_site: int = 8) -> np.ndarray:
    """Scale ``(n_subjects, n_features)`` that standardises every subject's residuals (in their float dtype).

    Parameters
    ----------
    residuals : ndarray, shape (n_subjects, n_features)
        Out-of-sample residuals for the reference rows.
    reference : ndarray of bool, shape (n_subjects,)
        The reference controls.
    sites : ndarray, shape (n_subjects,), optional
    per_site : bool
        Scale of the subject's own site (>= ``min_site`` reference controls),
        else the pooled one.
    """
    pooled = rms(residuals[reference])
    scale = np.broadcast_to(pooled, residuals.shape).astype(np.result_type(residuals.dtype, np.float32))
    if per_site and sites is not None:
        sites = np.asarray(sites, dtype=str)
        for site in np.unique(sites):
            ref = reference & (sites == site)
            if ref.sum() >= min_site:
                scale[sites == site] = rms(residuals[ref])
    return scale


def percentile_among(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Percentile (0-100) of each value among the reference rows' values ``(n_subjects,)``.

    Ties count half; a reference row is ranked among the *other* reference
    rows.  NaN stays NaN.

    Parameters
    ----------
    values : ndarray, shape (n_subjects,)
    reference : ndarray of bool, shape (n_subjects,)
    """
    values = np.asarray(values, float)
    ref = np.sort(values[reference])
    below = np.searchsorted(ref, values, side="left").astype(float)
    ties = np.searchsorted(ref, values, side="right") - below
    n = np.full(values.shape, ref.size, dtype=float)
    ties[reference] -= 1  # a reference row is itself one of the ties: remove it
    n[reference] -= 1
    return np.where(np.isfinite(values), 100.0 * (below + 0.5 * ties) / np.maximum(n, 1), np.nan)


def global_scores(z: np.ndarray, reference: np.ndarray, abs_error: np.ndarray) -> pd.DataFrame:
    """Per-subject global scores (see the module docstring).

    Parameters
    ----------
    z : ndarray, shape (n_subjects, n_features)
        Signed deviations.
    reference : ndarray of bool, shape (n_subjects,)
    abs_error : ndarray, shape (n_subjects, n_features)
        ``|x - x_hat|`` in standardised units.

    Returns
    -------
    DataFrame with ``global_score mean_sq_z n_extreme mean_abs_error``.
    """
    msq = np.mean(z ** 2, axis=1)
    return pd.DataFrame({"global_score": percentile_among(msq, reference), "mean_sq_z": msq,
                         "n_extreme": (np.abs(z) > EXTREME_Z).sum(axis=1),
                         "mean_abs_error": abs_error.mean(axis=1)})


def focal_and_global(mean_sq_z: np.ndarray, mean_fc_residual: np.ndarray, reference: np.ndarray) -> pd.DataFrame:
    """``focal_z``, ``global_fc_z`` and ``combined_score`` per subject (see the module docstring).

    Parameters
    ----------
    mean_sq_z : ndarray, shape (n_subjects,)
        The autoencoder's mean ``z ** 2`` (NaN for subjects not tested).
    mean_fc_residual : ndarray, shape (n_subjects,)
        Out-of-sample residual of the mean FC over connections, feature units
        (NaN for subjects not tested).
    reference : ndarray of bool, shape (n_subjects,)
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        log_msq = np.log(np.asarray(mean_sq_z, float))
    focal = z_against(log_msq, log_msq[reference])
    glob = np.asarray(mean_fc_residual, float) / rms(mean_fc_residual[reference])
    return pd.DataFrame({"focal_z": focal, "global_fc_z": glob,
                         "combined_score": percentile_among(focal ** 2 + glob ** 2, reference)})


def qc_fc_columns(z: np.ndarray, fd: np.ndarray | None) -> dict:
    """QC-FC of deviations ``(n, k)`` against mean FD ``(n,)``: ``qcfc_median_abs_r`` (median over the
    columns of ``|r|``) and ``qcfc_pct_p05`` (% of columns with p < 0.05); NaN when FD is unknown."""
    if fd is None or not np.isfinite(fd).any():
        return {"qcfc_median_abs_r": np.nan, "qcfc_pct_p05": np.nan}
    summary = qc_fc_summary(*qc_fc(fd, z)[:2])
    return {"qcfc_median_abs_r": summary["median_abs_r"], "qcfc_pct_p05": summary["pct_significant"]}


def calibration_summary(x: np.ndarray, r: np.ndarray, z: np.ndarray, fd: np.ndarray | None = None) -> dict:
    """Calibration figures of reference rows (arrays ``(n, k)``, pooled over columns; ``fd`` ``(n,)`` mean FD
    in mm for the QC-FC columns)."""
    var_x = x.var(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ev = 1 - r.var(axis=0, ddof=1) / var_x
        smse = np.mean(r ** 2, axis=0) / var_x
    flat = z.ravel()
    return {"n_subjects": x.shape[0], "explained_variance": float(np.nanmean(ev)), "smse": float(np.nanmean(smse)),
            "z_mean": float(flat.mean()), "z_sd": float(flat.std(ddof=1)),
            "z_skewness": float(sps.skew(flat)), "z_excess_kurtosis": float(sps.kurtosis(flat)),
            "frac_abs_z_gt_1.96": float((np.abs(flat) > 1.96).mean()), **qc_fc_columns(z, fd)}


def calibration_table(features: np.ndarray, residuals: np.ndarray, z: np.ndarray, reference: np.ndarray,
                      sites: np.ndarray, names: list[str], fd: np.ndarray | None = None) -> pd.DataFrame:
    """Calibration of the reference controls' out-of-sample deviations.

    PCNtoolkit's explained variance ``EV = 1 - var(r) / var(x)`` and
    standardised MSE ``SMSE = mean(r^2) / var(x)``, the moments of ``z``
    with the fraction ``|z| > 1.96`` (nominal 5 %), and the QC-FC of ``z``
    (:func:`qc_fc_columns`; over one connection the median ``|r|`` is its
    ``|r|`` and the % is 0 or 100).  Rows: ``scope="all"`` and
    ``connection="all"`` (over every connection), one row per site
    (``scope=site``, its reference controls), and one row per connection
    (``scope="all"``).

    Parameters
    ----------
    features, residuals, z : ndarray, shape (n_subjects, n_features)
        Modelled features (after harmonisation), out-of-sample residuals and
        deviations.
    reference : ndarray of bool, shape (n_subjects,)
    sites : ndarray, shape (n_subjects,)
    names : list of str, length n_features
    fd : ndarray, shape (n_subjects,), optional
        Mean FD (mm); NaN or None: unknown (QC-FC columns NaN).
    """
    sites = np.asarray(sites, dtype=str)
    fd = np.full(len(sites), np.nan) if fd is None else np.asarray(fd, float)
    rows = [{"scope": "all", "connection": "all", **calibration_summary(features[reference], residuals[reference],
                                                                        z[reference], fd[reference])}]
    for site in np.unique(sites[reference]):
        ref = reference & (sites == site)
        if ref.sum() >= 3:
            rows.append({"scope": site, "connection": "all",
                         **calibration_summary(features[ref], residuals[ref], z[ref], fd[ref])})
    x, r, zr = features[reference], residuals[reference], z[reference]
    var_x = x.var(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_connection = pd.DataFrame({
            "scope": "all", "connection": names, "n_subjects": x.shape[0],
            "explained_variance": 1 - r.var(axis=0, ddof=1) / var_x, "smse": np.mean(r ** 2, axis=0) / var_x,
            "z_mean": zr.mean(axis=0), "z_sd": zr.std(axis=0, ddof=1), "z_skewness": sps.skew(zr, axis=0),
            "z_excess_kurtosis": sps.kurtosis(zr, axis=0), "frac_abs_z_gt_1.96": (np.abs(zr) > 1.96).mean(axis=0)})
    if np.isfinite(fd[reference]).any():
        r_fd, p_fd, _ = qc_fc(fd[reference], zr)
        per_connection["qcfc_median_abs_r"] = np.abs(r_fd)
        per_connection["qcfc_pct_p05"] = np.where(np.isfinite(p_fd), 100.0 * (p_fd < 0.05), np.nan)
    else:
        per_connection["qcfc_median_abs_r"] = per_connection["qcfc_pct_p05"] = np.nan
    return pd.concat([pd.DataFrame(rows), per_connection], ignore_index=True)
