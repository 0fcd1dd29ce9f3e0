"""Transfer of a trained normative model to a new dataset.

A model's card fixes its feature set (``feature_names``, in order).  The new
dataset's features are mapped onto it by name (:func:`map_features`):
connections the new data lack, or that are missing in more than
``--max-missing`` of its controls (:func:`nmflow.normative.crossfit.kept_connections`),
are *unscored*: their inputs are held at the model's training mean (0 after
standardisation), their errors are left out of the fine-tuning loss, and
they get no deviation.  Connections of the new data that the model does not
know are ignored.  Both counts are reported as a note and in the card.  A
model whose atlas, metric or strategy differ, or whose regions do not
contain the data's regions in the same order, is refused by
:func:`check_transferable` (regions the data lack are allowed: their
connections are unscored).

Two ways to use a model on a new dataset B:

* fine-tuning (``--init-model``): every cross-fitting fit starts from the
  model's weights (and keeps its scaler and covariate coding) and trains on
  B's pool of controls; B's controls are scored out of sample, so the
  calibration is B's own;
* no fine-tuning (``--init-model ... --no-fine-tune``), for a dataset with too
  few controls to fine-tune: the model scores everyone as it is and the
  residual scale of the z-scores is computed from *all* of B's controls
  (which the model never saw) — never A's calibration.  The cross-fitting
  folds still keep ComBat and imputation out of sample: a control harmonised
  by a ComBat fitted on itself would look more typical than a patient
  (on ABIDE that alone raised the global score's AUC from about 0.54 to 0.75).
"""

from __future__ import annotations

import numpy as np

from nmflow.errors import NmflowInputError


def map_features(features: np.ndarray, names: list[str], model_names: list[str]) -> tuple[np.ndarray, int]:
    """Features ``(n_subjects, n_model_features)`` in the model's order; NaN where the data lack one.

    Returns the mapped array and the number of the data's connections the model does not know.
    """
    index = {name: k for k, name in enumerate(names)}
    out = np.full((features.shape[0], len(model_names)), np.nan)
    for j, name in enumerate(model_names):
        if name in index:
            out[:, j] = features[:, index[name]]
    return out, len(set(names) - set(model_names))


def check_transferable(card: dict, regions: list[str], variant: dict, path) -> None:
    """Refuse a model of another atlas, metric or strategy, or whose regions do not contain ``regions`` in order."""
    for key in ("atlas", "seg", "desc", "meas"):
        if card.get(key) != variant.get(key):
            raise NmflowInputError(path, f"model is for {key}={card.get(key)!r}, features have "
                                   f"{key}={variant.get(key)!r}")
    model_regions = list(card.get("atlas_regions", []))
    unknown = [r for r in regions if r not in model_regions]
    if unknown:
        raise NmflowInputError(path, f"the data have {len(unknown)} region(s) the model does not know "
                               f"({', '.join(unknown[:5])}): another atlas or labelling")
    if [r for r in model_regions if r in regions] != list(regions):
        raise NmflowInputError(path, "the data's regions are in another order than the model's (card "
                               "atlas_regions): connection names and features would not match")
