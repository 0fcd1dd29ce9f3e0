"""Covariate-aware mass-univariate baseline: the classic normative model.

Every connection is regressed, on the training controls, on an intercept and
the coded covariates (:mod:`nmflow.normative.covariates`: age, sex, site
when not harmonised) by ordinary least squares; a subject's prediction is the
expected connectivity of a control with its covariates.  Its deviation is the
residual ``x - x_hat``, standardised like the autoencoder's (see
:mod:`nmflow.normative.deviations`).  This is the homoscedastic Gaussian
special case of the normative models of Marquand et al. (2016) and
PCNtoolkit's Bayesian linear regression.
"""

from __future__ import annotations

import numpy as np


def design(coded: np.ndarray) -> np.ndarray:
    """Intercept + coded covariates ``(n_subjects, 1 + n_columns)``."""
    return np.column_stack([np.ones(len(coded)), coded])


def fit_linear(features: np.ndarray, coded: np.ndarray) -> np.ndarray:
    """OLS coefficients ``(1 + n_columns, n_features)`` (minimum-norm when rank deficient).

    Parameters
    ----------
    features : ndarray, shape (n_train, n_features)
    coded : ndarray, shape (n_train, n_columns)
    """
    return np.linalg.lstsq(design(coded), features, rcond=None)[0]


def predict_linear(beta: np.ndarray, coded: np.ndarray) -> np.ndarray:
    """Expected features ``(n_subjects, n_features)`` given the coded covariates."""
    return design(coded) @ beta
