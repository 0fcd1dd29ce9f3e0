"""Deviation scores of subjects from the normative model.

* ``error``: per connection ``|z - z_hat|``, the absolute reconstruction error
  of the standardised features ``z`` (training-control mean and sd).
* ``error_z``: that error z-scored against the held-out (reference) controls'
  errors of the same connection (mean, sd with ddof=1).
* ``global``: per subject the mean absolute error over connections;
  ``global_z`` z-scores it against the reference controls.
* ``gaussian_z``: the mass-univariate baseline, ``(x - mean) / sd`` of each
  feature against the training controls; its deviation score is ``|z|``.
"""

from __future__ import annotations

import numpy as np

from nmflow.normative.model import NormativeModel


def reconstruction_error(model: NormativeModel, features: np.ndarray) -> np.ndarray:
    """Absolute reconstruction error ``(n_subjects, n_features)`` in standardised units."""
    z = model.standardize(features)
    return np.abs(z - model.reconstruct(z))


def z_against(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(scores - mean_ref) / sd_ref`` per column; sd (ddof=1) 0 is replaced by 1.

    Parameters
    ----------
    scores : ndarray, shape (n_subjects, n_features) or (n_subjects,)
    reference : ndarray, shape (n_reference, n_features) or (n_reference,)
    """
    mean, sd = reference.mean(axis=0), reference.std(axis=0, ddof=1)
    return (scores - mean) / np.where(sd > 0, sd, 1.0)


def global_score(error: np.ndarray) -> np.ndarray:
    """Mean absolute error over connections, ``(n_subjects,)``."""
    return error.mean(axis=1)


def gaussian_z(features: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """Mass-univariate normative z ``(n_subjects, n_features)`` against ``controls``."""
    return z_against(features, controls)
