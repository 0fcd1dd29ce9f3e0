"""Variant selection on control-only criteria.

The subjects whose statistics are reported (patients against the controls)
never enter the criterion: a variant is judged only by how well its
normative model describes *controls* it did not see.

* ``stability``: the autoencoder is retrained on ``B`` bootstrap resamples
  of all controls (out-of-bag controls stop it early).  Each model scores its
  out-of-bag controls.  Stability is the mean, over pairs of models and
  connections, of the Pearson correlation between the two models' residuals
  of the controls both left out: how much a control's deviation is the
  control's own rather than an accident of training.
* ``frac_abs_z_gt_1.96`` and ``explained_variance`` come from the
  cross-fitted calibration (:func:`nmflow.normative.deviations.calibration_table`).

A variant *qualifies* when ``stability >= STABILITY_MIN``, its model explains
some of the controls' out-of-sample variance (``explained_variance > 0``: a
model worse than the controls' mean describes nothing), its controls'
fraction ``|z| > 1.96`` lies in ``CALIBRATION_BAND`` (nominal 5 %) and their
z are close to normal (``|excess kurtosis| <= KURTOSIS_MAX``; the
single-case test and the z thresholds assume it: heavy tails, e.g. from
motion spikes left in the data, make extreme deviations common in controls).
Qualifying variants are ranked by explained variance (higher: the model
removes more of the controls' normal variability, so deviations stand out),
then stability; rank 1 is selected.  Stability alone would favour a model
that learnt nothing (its residuals are the features minus their mean, the
same for every bootstrap model).  The criterion judges how well a variant
can be *modelled*, not how well it was denoised: choose the denoising
strategy on its own evidence (e.g. QC-FC) and restrict with ``--variants``.  When no variant qualifies none is
selected and the report says that no variant gives stable findings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STABILITY_MIN = 0.8
CALIBRATION_BAND = (0.03, 0.08)
KURTOSIS_MAX = 1.0


def n_bootstrap(n_bootstrap_setting: int, n_variants: int, transferring: bool) -> int:
    """Bootstrap models per variant: ``--n-bootstrap`` when two or more variants are ranked; none for a
    single variant (nothing to rank: at 400 regions its 10 models would be most of the training time),
    a transferred model (``--init-model``) or ``--n-bootstrap`` <= 1."""
    return n_bootstrap_setting if n_variants > 1 and not transferring and n_bootstrap_setting > 1 else 0


def bootstrap_weights(n_rows: int, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap counts ``(n_bootstrap, n_rows)`` (resampling rows with replacement)."""
    out = np.zeros((n_bootstrap, n_rows))
    for b in range(n_bootstrap):
        out[b] = np.bincount(rng.integers(0, n_rows, n_rows), minlength=n_rows)
    return out


def deviation_stability(residuals: np.ndarray, oob: np.ndarray) -> float:
    """Mean pairwise correlation of bootstrap models' out-of-bag residuals.

    For each pair of models and each connection, the Pearson correlation of
    the two models' residuals over the controls both left out; averaged
    over connections, then over pairs.

    Parameters
    ----------
    residuals : ndarray, shape (n_models, n_rows, n_features)
    oob : ndarray of bool, shape (n_models, n_rows)
        Rows each model did not train on.

    Returns
    -------
    float
        NaN with fewer than two models or no pair sharing 3 out-of-bag rows.
    """
    values = []
    for a in range(len(residuals)):
        for b in range(a + 1, len(residuals)):
            both = oob[a] & oob[b]
            if both.sum() >= 3:
                ra = residuals[a][both] - residuals[a][both].mean(axis=0)
                rb = residuals[b][both] - residuals[b][both].mean(axis=0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    r = (ra * rb).sum(axis=0) / np.sqrt((ra ** 2).sum(axis=0) * (rb ** 2).sum(axis=0))
                values.append(np.nanmean(r))
    return float(np.mean(values)) if values else float("nan")


def rank_variants(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``qualifies``, ``rank`` and ``selected`` to a per-variant table.

    ``table`` has ``variant stability frac_abs_z_gt_1.96 z_excess_kurtosis explained_variance``.
    """
    out = table.copy()
    lo, hi = CALIBRATION_BAND
    out["qualifies"] = ((out["stability"] >= STABILITY_MIN) & out["frac_abs_z_gt_1.96"].between(lo, hi)
                        & (out["z_excess_kurtosis"].abs() <= KURTOSIS_MAX) & (out["explained_variance"] > 0))
    out = out.sort_values(["qualifies", "explained_variance", "stability"], ascending=[False, False, False],
                          ignore_index=True)
    out["rank"] = np.arange(1, len(out) + 1)
    out["selected"] = (out["rank"] == 1) & out["qualifies"]
    return out
