"""Cross-fitted normative models: every control is scored by models that never saw it.

Plan (:func:`make_folds`)
-------------------------
The controls of each site are shuffled (seeded) and dealt into ``K`` folds
(default 5), so every fold holds about ``1/K`` of each site.  Fold ``k``'s
models are fitted on the other folds' controls (the *pool*); a seeded
``val_split`` share of the pool (per site) is kept for early stopping.  Each
control is then scored out of sample by its own fold's models; patients are
scored by all ``K`` models and their residuals averaged (the averaged
prediction is slightly less noisy than one model's; the reference scale stays
the controls' single-model one, so this errs on the conservative side).
The reference distribution of the deviations is *all* controls.

With a split file (``participant_id``, ``split`` in train/val/test) there is
one fit: train/val controls fit it, test controls are the reference, and
train/val controls are never tested.

What each fit learns, from its pool of controls only (never a patient):
which connections are kept (a connection missing in more than
``max_missing`` of any pool's controls is dropped everywhere, so all folds
model the same features), imputation means, ComBat, the scaler, the
covariate coding, the linear baseline and the autoencoder.  A final model fit
on all controls is trained beside the folds; it is the one saved for reuse
(:func:`nmflow.normative.model.save_model`), carrying the cross-fitted
residual scale.

All fits of all variants with one feature count are trained stacked, in
chunks of models beyond a memory budget
(:func:`nmflow.normative.model.train_models`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from nmflow.errors import NmflowInputError
from nmflow.fileio import read_tsv
from nmflow.normative.config import TrainConfig
from nmflow.normative.covariates import CovariateCoder, fit_coder, is_numeric
from nmflow.normative.harmonize import harmonize
from nmflow.normative.linear import fit_linear, predict_linear
from nmflow.normative.model import TrainResult, fit_scaler, masked_forward, train_models

MIN_TRAIN = 5
SPLITS = ("train", "val", "test")  # the labels of --split-file


@dataclass
class Folds:
    """The fits of a cross-fitting plan over the ``n`` subjects of the subject table.

    Attributes
    ----------
    pool, train, val : ndarray of bool, shape (n_fits, n_subjects)
        Controls fitting each fit (``pool = train | val``); ``train`` fits
        the autoencoder, ``val`` stops it early.
    held_out : ndarray of int, shape (n_subjects,)
        Fit that scores a reference control out of sample; -1 for others.
    reference : ndarray of bool, shape (n_subjects,)
        Controls that form the reference distribution (all controls in
        K-fold mode; the test split with a split file).
    patients : ndarray of bool, shape (n_subjects,)
    label : ndarray of str, shape (n_subjects,)
        ``fold-<k>``, ``train``/``val``/``test`` (split file) or ``patient``.
    """

    pool: np.ndarray
    train: np.ndarray
    val: np.ndarray
    held_out: np.ndarray
    reference: np.ndarray
    patients: np.ndarray
    label: np.ndarray

    @property
    def n_fits(self) -> int:
        return self.pool.shape[0]

    @property
    def tested(self) -> np.ndarray:
        """Subjects with deviations: reference controls and patients."""
        return self.reference | self.patients

    @property
    def controls(self) -> np.ndarray:
        return self.pool.any(axis=0) | self.reference


def inner_validation(pool: np.ndarray, sites: np.ndarray, val_split: float, rng) -> np.ndarray:
    """Early-stopping controls: a seeded ``val_split`` share of ``pool`` per site ``(n_subjects,)`` bool."""
    val = np.zeros(pool.size, bool)
    for site in np.unique(sites[pool]):
        ids = rng.permutation(np.flatnonzero(pool & (sites == site)))
        val[ids[:round(val_split * ids.size)]] = True
    return val


def make_folds(table: pd.DataFrame, control_label: str, n_folds: int = 5, val_split: float = 0.2,
               seed: int = 0, split_file=None, min_train: int = MIN_TRAIN) -> Folds:
    """Cross-fitting plan, stratified by site (see the module docstring).

    Parameters
    ----------
    table : DataFrame
        Subject table with ``group`` and ``site`` columns, indexed by label.
    min_train : int
        Training controls every fit needs (0 when nothing is trained, e.g. a
        model used without fine-tuning: the folds then only keep ComBat and
        imputation out of sample).
    """
    groups = table["group"].to_numpy(dtype=str)
    sites = table["site"].to_numpy(dtype=str)
    controls = groups == control_label
    patients = ~controls
    n = len(table)
    rng = np.random.default_rng(seed)
    if split_file:
        split = _read_split_file(split_file, table, controls)
        train, val, ref = split == "train", split == "val", split == "test"
        label = np.where(patients, "patient", split)
        folds = Folds((train | val)[None], train[None], val[None], np.where(ref, 0, -1), ref, patients, label)
    else:
        if not 0 <= val_split < 1:
            raise NmflowInputError(None, f"--val-split must be in [0, 1), got {val_split}")
        if n_folds < 2:
            raise NmflowInputError(None, f"--folds must be >= 2, got {n_folds}")
        held_out = np.full(n, -1)
        offset = 0
        for site in sorted(set(sites[controls])):
            ids = rng.permutation(np.flatnonzero(controls & (sites == site)))
            held_out[ids] = (offset + np.arange(ids.size)) % n_folds
            offset += ids.size
        pool = np.array([controls & (held_out != k) for k in range(n_folds)])
        val = np.array([inner_validation(p, sites, val_split, rng) for p in pool])
        label = np.where(patients, "patient", np.char.add("fold-", (held_out + 1).astype(str)))
        folds = Folds(pool, pool & ~val, val, held_out, controls.copy(), patients, label)
    problem = too_few_controls(folds, min_train)
    if problem:
        raise TooFewControls(split_file, problem + " (use more controls, fewer --folds, or a smaller --val-split)")
    return folds


class TooFewControls(NmflowInputError):
    """The cohort (or the split file) has too few controls for the plan of fits."""


def too_few_controls(folds: Folds, min_train: int = MIN_TRAIN) -> str | None:
    """Why the plan cannot fit its models (a fit with fewer than ``min_train`` training controls, a reference
    of fewer than 3), or None."""
    too_small = [k + 1 for k in range(folds.n_fits) if folds.train[k].sum() < min_train]
    if too_small or folds.reference.sum() < 3:
        return (f"{int(folds.controls.sum())} controls are too few: every fit needs >= {min_train} training controls "
                "and the reference >= 3")
    return None


def final_fit(folds: Folds, sites: np.ndarray, val_split: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool, train and val masks ``(n_subjects,)`` of the model fitted on all fitting controls.

    With a split file this is the single fit itself.
    """
    if folds.n_fits == 1:
        return folds.pool[0], folds.train[0], folds.val[0]
    pool = folds.pool.any(axis=0)
    val = inner_validation(pool, np.asarray(sites, dtype=str), val_split, np.random.default_rng(seed + 1))
    return pool, pool & ~val, val


def _read_split_file(path, table: pd.DataFrame, controls: np.ndarray) -> np.ndarray:
    from nmflow.bids_io import strip_prefix

    given = read_tsv(path, "split file", dtype=str)
    if not {"participant_id", "split"} <= set(given.columns) or not set(given["split"]) <= set(SPLITS):
        raise NmflowInputError(path, f"needs columns participant_id and split in {SPLITS}")
    split = pd.Series(given["split"].to_numpy(), index=[strip_prefix(p) for p in given["participant_id"]])
    bad = [s for s in table.index[~controls] if split.get(s, "test") != "test"]
    if bad:
        raise NmflowInputError(path, f"patients cannot be in train/val: {bad}")
    unlisted = sorted(set(table.index[controls]) - set(split.index))
    if unlisted:
        raise NmflowInputError(path, f"controls not listed: {unlisted}")
    return np.array([split.get(s, "test") if c else "patient" for s, c in zip(table.index, controls)])


def kept_connections(features: np.ndarray, pools: np.ndarray, max_missing: float) -> np.ndarray:
    """Connections modelled by every fit ``(n_features,)``: missing in at most
    ``max_missing`` of each pool's controls and observed in at least one."""
    kept = np.ones(features.shape[1], bool)
    for pool in pools:
        missing = ~np.isfinite(features[pool])
        kept &= (missing.mean(axis=0) <= max_missing) & ~missing.all(axis=0)
    return kept


@dataclass
class Preprocessed:
    """One fit's view of one variant (every array over all subjects of the table).

    ``features`` are imputed and harmonised ``(n, F)``, ``cond`` the coded
    covariates ``(n, C)``, ``linear`` the baseline's prediction ``(n, F)``
    (both ``(n, F)`` arrays float32: they are the big ones; the scaler
    ``mean``, ``scale`` ``(F,)`` is float64).
    """

    features: np.ndarray
    harmonized: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coder: CovariateCoder
    cond: np.ndarray
    linear: np.ndarray
    messages: list[str] = field(default_factory=list)


def covariate_frame(table: pd.DataFrame, covariates: list[str], harmonized: bool) -> pd.DataFrame:
    """The covariates the models condition on: ``covariates`` (+ ``site`` unless harmonised)."""
    frame = table[list(covariates)].reset_index(drop=True).copy()
    if not harmonized and table["site"].nunique() > 1:
        frame["site"] = table["site"].astype(str).to_numpy()
    return frame


def preprocess(features: np.ndarray, table: pd.DataFrame, pool: np.ndarray, covariates: list[str],
               harmonize_method: str, controls: np.ndarray, scaler=None, coder=None) -> Preprocessed:
    """Impute, harmonise, standardise and code covariates, all fitted on ``pool`` controls.

    Parameters
    ----------
    features : ndarray, shape (n_subjects, n_features)
        Kept connections (may hold NaN).
    pool : ndarray of bool, shape (n_subjects,)
    controls : ndarray of bool, shape (n_subjects,)
        All controls: their sorted categorical levels fix the coded columns
        (so every fit has the same number of inputs); no value is learnt
        from them.
    scaler, coder : optional
        ``(mean, scale)`` and :class:`CovariateCoder` of a model being
        fine-tuned (kept instead of refitted).
    """
    x = np.array(features, dtype=np.float32)
    miss = ~np.isfinite(x)
    if miss.any():
        x[miss] = np.broadcast_to(np.nanmean(x[pool], axis=0, dtype=np.float64).astype(np.float32), x.shape)[miss]
    del miss
    messages = []
    if harmonize_method == "combat":
        sites = table["site"].to_numpy()
        cov = table[list(covariates)].reset_index(drop=True)
        x, harmonized, messages = harmonize(x, sites, cov, pool)
        done = bool(harmonized.any())
    else:
        harmonized, done = np.zeros(len(x), bool), False
    frame = covariate_frame(table, covariates, done)
    if coder is None:
        coder = fit_coder(frame[pool])
        for name in coder.categorical:
            coder.categorical[name] = sorted(frame.loc[controls, name].astype(str).unique())
    cond = coder.transform(frame)
    mean, scale = scaler if scaler is not None else fit_scaler(x[pool])
    linear = predict_linear(fit_linear(x[pool], cond[pool]), cond).astype(np.float32)
    return Preprocessed(x, harmonized, mean, scale, coder, cond, linear, messages)


def train_stacked(jobs: list[tuple], config: TrainConfig, seeds: list[int],
                  init: list[torch.Tensor] | None = None, device: str = "cpu",
                  mem_bytes: float | None = None) -> TrainResult:
    """Train one model per job ``(z, cond, train_weights, val_weights, loss_mask)``, stacked.

    ``z`` ``(n_rows, F)``, ``cond`` ``(n_rows, C)`` and the weights
    ``(n_rows,)`` of every job cover the same rows (the controls); jobs may
    share one ``z`` array (it is not copied); ``loss_mask`` ``(F,)`` marks
    the features that count in the loss.  ``device`` and ``mem_bytes``: see
    :func:`nmflow.normative.model.train_models` (they change no number).
    """
    wt = np.stack([j[2] for j in jobs]).astype(float)
    wv = np.stack([j[3] for j in jobs]).astype(float)
    counted = np.stack([j[4] for j in jobs])
    if init is not None:
        init = [p.expand(len(jobs), *p.shape[1:]) for p in init]
    return train_models([j[0] for j in jobs], wt, wv, config, init=init, seeds=seeds, cond=[j[1] for j in jobs],
                        loss_mask=None if counted.all() else counted, device=device, mem_bytes=mem_bytes)


def model_input(prep: Preprocessed, kept: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """Standardised model input ``(n_subjects, inputs.sum())`` (float32).

    ``kept`` marks the connections the data provide, ``inputs`` the model's
    inputs (both over one feature list); an input the data lack is held at
    the model's training mean (0).
    """
    z = np.zeros((prep.features.shape[0], int(inputs.sum())), np.float32)
    z[:, kept[inputs]] = (prep.features - prep.mean.astype(np.float32)) / prep.scale.astype(np.float32)
    return z


PREDICT_ROWS = 256  # subjects predicted at once (bounds the masked passes' memory)


def predict(result: TrainResult, index: int, z: np.ndarray, cond: np.ndarray, mask_fraction: float,
            device: str = "cpu") -> np.ndarray:
    """Prediction ``(n_subjects, F)`` float32 by model ``index`` of a stacked result
    (each feature predicted with itself hidden, see :func:`masked_forward`), ``PREDICT_ROWS`` subjects at a time."""
    params = [p[index:index + 1].to(device) for p in result.params]
    out = np.empty(z.shape, np.float32)
    with torch.no_grad():
        for lo in range(0, len(z), PREDICT_ROWS):
            rows = slice(lo, lo + PREDICT_ROWS)
            out[rows] = masked_forward(params, torch.as_tensor(z[rows], dtype=torch.float32, device=device),
                                       torch.as_tensor(cond[rows], dtype=torch.float32, device=device),
                                       mask_fraction)[0].cpu().numpy()
    return out


@dataclass
class Residuals:
    """Out-of-sample residuals of one model over all subjects.

    ``residual`` ``(n, F)`` in feature units (x - x_hat; NaN for subjects not
    tested), ``abs_error`` ``(n, F)`` ``|z - z_hat|`` in standardised units,
    ``features`` the harmonised features the fit saw ``(n, F)``.
    """

    residual: np.ndarray
    abs_error: np.ndarray
    features: np.ndarray


def combine(folds: Folds, fits) -> Residuals:
    """Residuals of reference controls from their own fold and of patients averaged over fits.

    ``fits`` yields each fit's :class:`Preprocessed` (``features``, ``scale``) and its prediction
    ``(n, F)`` in feature units, in the order of the fits (an iterator: one fit and its prediction are
    held at a time).  The outputs are float32.
    """
    patients = folds.patients
    k = 0  # counted by hand: enumerate() would hold the previous fit while the next one is made
    for prep, pred in fits:
        if k == 0:
            n, f = prep.features.shape
            residual, abs_error, features = (np.full((n, f), np.nan, np.float32) for _ in range(3))
            acc = np.zeros((3, int(patients.sum()), f))
        r = prep.features - pred
        err = np.abs(r) / prep.scale.astype(np.float32)
        mine = folds.held_out == k
        residual[mine], abs_error[mine], features[mine] = r[mine], err[mine], prep.features[mine]
        acc += np.stack([r[patients], err[patients], prep.features[patients]])
        del prep, pred, r, err  # the next fit's arrays replace these, not join them
        k += 1
    acc /= k
    residual[patients], abs_error[patients], features[patients] = acc
    return Residuals(residual, abs_error, features)


def mean_fc_residuals(folds: Folds, preps) -> np.ndarray:
    """Out-of-sample residual of each subject's mean FC over connections ``(n_subjects,)``, feature units.

    The mean is over the fit's features as the linear baseline sees them
    (imputed and harmonised, before scaling); each fit regresses it on the
    coded covariates by OLS on its pool's controls.  Like :func:`combine`:
    reference controls take their own fold's residual, patients the mean over
    fits, others NaN.  ``preps`` yields the fits (``features``, ``cond``) in
    order (an iterator: one fit is held at a time).
    """
    out = np.full(folds.held_out.size, np.nan)
    patients = folds.patients
    acc = np.zeros(int(patients.sum()))
    k = 0  # counted by hand, as in combine
    for prep in preps:
        mean_fc = prep.features.mean(axis=1, dtype=np.float64)
        pool = folds.pool[k]
        r = mean_fc - predict_linear(fit_linear(mean_fc[pool, None], prep.cond[pool]), prep.cond)[:, 0]
        mine = folds.held_out == k
        out[mine] = r[mine]
        acc += r[patients]
        del prep
        k += 1
    out[patients] = acc / k
    return out


def check_covariates(table: pd.DataFrame, covariates: list[str]) -> None:
    """Raise :class:`NmflowInputError` for a covariate with missing values among the subjects."""
    for name in covariates:
        column = table[name]
        if column.isna().any():
            raise NmflowInputError(None, f"covariate {name!r} is missing for "
                                   f"{', '.join('sub-' + s for s in table.index[column.isna()][:5])}")
        if not is_numeric(column) and column.nunique() < 2:
            raise NmflowInputError(None, f"covariate {name!r} has one value only")
        as_number = pd.to_numeric(column, errors="coerce")
        if not is_numeric(column) and as_number.notna().mean() >= 0.5:  # a number column with a few words in it
            words = column[as_number.isna()]
            raise NmflowInputError(None, f"covariate {name!r} holds numbers but also " + ", ".join(
                f"{value!r} (sub-{label})" for label, value in list(words.items())[:5])
                + ": give a number for each subject (a category column must hold labels only)")
