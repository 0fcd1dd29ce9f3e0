"""ComBat harmonisation fitted on training controls and applied to everyone.

The fit is :func:`neuroCombat.neuroCombat` (empirical Bayes, parametric) on
the training controls only, with the covariates (e.g. age, sex) in the design
so their effects are kept; the diagnosis is never in the model (there are only
controls in the fit).

neuroCombat 0.2.12's ``neuroCombatFromTraining`` fails on NumPy 2 (``int()``
of a one-element array) and replaces every subject's covariate effect by the
training average.  We apply the returned estimates ourselves:

``s = (x - grand_mean - c @ B) / sqrt(var_pooled)``,
``x* = (s - gamma*_site) / sqrt(delta*_site) * sqrt(var_pooled) + grand_mean + c @ B``

where ``c`` is the subject's covariate row (categorical covariates one-hot
coded without the first sorted training level) and ``B`` the covariate
coefficients, recovered from neuroCombat's ``mod.mean``.  Applied to the
training controls this equals neuroCombat's own output.

Fallbacks (each reported as one message):

* a site with fewer than 2 training controls cannot be fitted (no variance
  estimate); it is left out of the fit and treated as unseen;
* subjects of unseen sites are left unharmonised (``harmonized = False``);
* fewer than 2 fittable sites: ComBat is skipped, nothing is changed.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nmflow.errors import NmflowInputError


@dataclass
class ComBatFit:
    """ComBat estimates for applying to new subjects.

    Attributes
    ----------
    sites : list of str, length n_sites
    grand_mean, var_pooled : ndarray, shape (n_features,)
    gamma_star, delta_star : ndarray, shape (n_sites, n_features)
    covariate_beta : ndarray, shape (n_covariate_columns, n_features)
    levels : dict
        Sorted training levels of each categorical covariate.
    continuous : list of str
    """

    sites: list[str]
    grand_mean: np.ndarray
    var_pooled: np.ndarray
    gamma_star: np.ndarray
    delta_star: np.ndarray
    covariate_beta: np.ndarray
    levels: dict
    continuous: list[str]


def _categorical(series: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(series)


def covariate_design(covariates: pd.DataFrame, levels: dict, continuous: list[str]) -> np.ndarray:
    """Covariate columns ``(n_subjects, n_columns)`` as neuroCombat codes them (float32)."""
    columns = []
    for name, lev in levels.items():
        values = covariates[name].astype(str).to_numpy()
        unknown = sorted(set(values) - set(lev))
        if unknown:
            raise NmflowInputError(None, f"covariate {name!r} has values {unknown} not seen in training controls")
        columns += [(values == level).astype(float) for level in lev[1:]]
    columns += [covariates[name].to_numpy(dtype=float) for name in continuous]
    if not columns:
        return np.zeros((len(covariates), 0), dtype=np.float32)
    return np.column_stack(columns).astype(np.float32)


def fit_combat(features: np.ndarray, sites: np.ndarray, covariates: pd.DataFrame) -> ComBatFit:
    """Fit ComBat with neuroCombat.

    Parameters
    ----------
    features : ndarray, shape (n_subjects, n_features)
        Training controls only.
    sites : ndarray, shape (n_subjects,)
    covariates : DataFrame, n_subjects rows
        Columns to preserve; non-numeric columns are categorical.
    """
    from neuroCombat import neuroCombat

    if covariates.isna().any().any():
        raise NmflowInputError(None, "covariates have missing values in training controls: "
                               + ", ".join(covariates.columns[covariates.isna().any()]))
    levels = {c: sorted(covariates[c].astype(str).unique()) for c in covariates if _categorical(covariates[c])}
    continuous = [c for c in covariates if not _categorical(covariates[c])]
    design = covariate_design(covariates, levels, continuous)
    onehot = (np.asarray(sites, dtype=str)[:, None] == np.unique(np.asarray(sites, dtype=str))[None]).astype(float)
    full = np.hstack([onehot, design])
    if np.linalg.matrix_rank(full) < full.shape[1]:
        raise NmflowInputError(None, "ComBat design is singular: a covariate is constant or "
                               "confounded with site among training controls")
    names = [f"cov{k}" for k in range(design.shape[1])]
    covars = pd.DataFrame(design, columns=names)
    covars.insert(0, "site", np.asarray(sites, dtype=str))
    with contextlib.redirect_stdout(io.StringIO()):
        out = neuroCombat(np.asarray(features, float).T, covars, "site", continuous_cols=names)
    est = out["estimates"]
    n_batch = out["info"]["n_batch"]
    cov_design = out["info"]["design"][:, n_batch:]
    mod_mean = np.broadcast_to(est["mod.mean"], (features.shape[1], features.shape[0]))
    beta = (np.linalg.lstsq(cov_design, mod_mean.T, rcond=None)[0] if cov_design.shape[1]
            else np.zeros((0, features.shape[1])))
    return ComBatFit(
        sites=[str(s) for s in est["batches"]], grand_mean=est["stand.mean"][:, 0].copy(),
        var_pooled=est["var.pooled"][:, 0].copy(), gamma_star=np.asarray(est["gamma.star"], float),
        delta_star=np.asarray(est["delta.star"], float), covariate_beta=beta, levels=levels,
        continuous=continuous,
    )


def apply_combat(fit: ComBatFit, features: np.ndarray, sites: np.ndarray,
                 covariates: pd.DataFrame) -> np.ndarray:
    """Harmonise subjects of fitted sites ``(n_subjects, n_features)``, in the dtype of ``features``
    (computed in float64 one site at a time); others unchanged."""
    sites = np.asarray(sites, dtype=str)
    design = covariate_design(covariates, fit.levels, fit.continuous)
    scale = np.sqrt(fit.var_pooled)
    out = np.array(features)
    for k, site in enumerate(fit.sites):
        rows = sites == site
        centre = fit.grand_mean + design[rows] @ fit.covariate_beta
        s = (out[rows] - centre) / scale
        s = (s - fit.gamma_star[k]) / np.sqrt(fit.delta_star[k])
        out[rows] = s * scale + centre
    return out


def harmonize(features: np.ndarray, sites: np.ndarray, covariates: pd.DataFrame,
              train: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Fit on ``train`` subjects, apply to all, with the documented fallbacks.

    Parameters
    ----------
    features : ndarray, shape (n_subjects, n_features)
    sites : ndarray, shape (n_subjects,)
    covariates : DataFrame, n_subjects rows
    train : ndarray of bool, shape (n_subjects,)
        Training controls.

    Returns
    -------
    harmonised : ndarray, shape (n_subjects, n_features)
    harmonized : ndarray of bool, shape (n_subjects,)
        False for subjects left unchanged (fallback).
    messages : list of str
    """
    sites = np.asarray(sites, dtype=str)
    messages = []
    counts = pd.Series(sites[train]).value_counts()
    fittable = sorted(counts.index[counts >= 2])
    for site in sorted(counts.index[counts < 2]):
        messages.append(f"ComBat: site {site!r} has 1 training control; left out of the fit, "
                        "its subjects are not harmonised")
    for site in sorted(set(sites.tolist()) - set(counts.index)):
        messages.append(f"ComBat: site {site!r} has no training controls (unseen); "
                        "its subjects are not harmonised")
    if len(fittable) < 2:
        messages.append("ComBat skipped: fewer than 2 sites with >= 2 training controls")
        return np.array(features), np.zeros(len(sites), bool), messages
    rows = train & np.isin(sites, fittable)
    fit = fit_combat(features[rows], sites[rows], covariates.loc[rows].reset_index(drop=True))
    return apply_combat(fit, features, sites, covariates), np.isin(sites, fittable), messages


def site_accuracy(features: np.ndarray, sites: np.ndarray, train: np.ndarray) -> tuple[float, float]:
    """Accuracy of predicting the site of held-out subjects, and the chance level.

    Logistic regression on standardised features, fitted on the ``train``
    rows and scored on the others (cross-validation inside harmonised data
    is biased below chance, because ComBat equalises the site means of the
    very subjects it was fitted on).  Chance is the largest site's share of
    the scored subjects.

    Parameters
    ----------
    features : ndarray, shape (n_subjects, n_features)
    sites : ndarray, shape (n_subjects,)
    train : ndarray of bool, shape (n_subjects,)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sites = np.asarray(sites, dtype=str)
    if len(set(sites[train])) < 2 or train.all():
        return float("nan"), float("nan")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    clf.fit(features[train], sites[train])
    test = sites[~train]
    chance = pd.Series(test).value_counts().max() / test.size
    return float((clf.predict(features[~train]) == test).mean()), float(chance)
