"""Covariates of the normative models, coded as numeric columns.

Both normative models condition on the same coded covariates: the
conditional autoencoder (:mod:`nmflow.normative.model`) feeds them to its
encoder and decoder, the linear baseline (:mod:`nmflow.normative.linear`)
regresses every connection on them.  The coding is fitted on training
controls only and stored in the model card:

* a numeric column (e.g. age) is centred and scaled by the training
  controls' mean and standard deviation;
* a categorical column (e.g. sex, site) becomes one 0/1 column per training
  level except the first (sorted) one; a level unseen in training codes as
  all zeros (the reference level);
* ``site`` is added as a categorical covariate when the data are not
  harmonised (with ComBat the site effect is removed before modelling).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nmflow.errors import NmflowInputError


@dataclass
class CovariateCoder:
    """How covariates become model inputs (fitted on training controls).

    Attributes
    ----------
    numeric : dict
        Column -> ``[mean, sd]``.
    categorical : dict
        Column -> sorted training levels (the first is the reference).
    """

    numeric: dict = field(default_factory=dict)
    categorical: dict = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        """Names of the coded columns, in order."""
        return (list(self.numeric)
                + [f"{c}={level}" for c, levels in self.categorical.items() for level in levels[1:]])

    @property
    def n_columns(self) -> int:
        return len(self.column_names)

    def transform(self, covariates: pd.DataFrame) -> np.ndarray:
        """Coded covariates ``(n_subjects, n_columns)`` (float64).

        Missing numeric values are an error naming the column (a normative
        model cannot score a subject without its covariates).
        """
        columns = []
        for name, (mean, sd) in self.numeric.items():
            values = pd.to_numeric(covariates[name], errors="coerce").to_numpy(dtype=float)
            if not np.isfinite(values).all():
                raise NmflowInputError(None, f"covariate {name!r} is missing or not numeric for "
                                       f"{int((~np.isfinite(values)).sum())} subject(s)")
            columns.append((values - mean) / sd)
        for name, levels in self.categorical.items():
            values = covariates[name].astype(str).to_numpy()
            columns += [(values == level).astype(float) for level in levels[1:]]
        if not columns:
            return np.zeros((len(covariates), 0))
        return np.column_stack(columns)

    def to_dict(self) -> dict:
        return {"numeric": {k: [float(v) for v in mv] for k, mv in self.numeric.items()},
                "categorical": {k: list(v) for k, v in self.categorical.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "CovariateCoder":
        return cls(dict(data.get("numeric", {})), dict(data.get("categorical", {})))


def is_numeric(series: pd.Series) -> bool:
    """True for a numeric column (coded as a centred, scaled number)."""
    return pd.api.types.is_numeric_dtype(series)


def fit_coder(covariates: pd.DataFrame) -> CovariateCoder:
    """Fit the coding on the training controls' covariates (n_train rows)."""
    numeric, categorical = {}, {}
    for name in covariates.columns:
        column = covariates[name]
        if is_numeric(column):
            values = column.to_numpy(dtype=float)
            if not np.isfinite(values).all():
                raise NmflowInputError(None, f"covariate {name!r} has missing values in training controls")
            sd = values.std(ddof=1) if values.size > 1 else 0.0
            numeric[name] = [float(values.mean()), float(sd) if sd > 0 else 1.0]
        else:
            categorical[name] = sorted(column.astype(str).unique())
    return CovariateCoder(numeric, categorical)
