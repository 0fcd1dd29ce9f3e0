"""Deviation scores of one variant from its trained models, and their calibration on the controls.

Each reference control is scored by the cross-fitting fit that never saw it,
patients by every fit (averaged) (:func:`nmflow.normative.crossfit.combine`);
residuals become signed z by the controls' out-of-sample residual scale
(:mod:`nmflow.normative.deviations`).  The same is done for the linear
baseline.  The global component (each subject's mean FC against its
covariates, cross-fitted the same way) is the same for both models; the
autoencoder's focal score and the combined score join it
(:func:`nmflow.normative.deviations.focal_and_global`).  The model fitted
on all controls is returned for saving, with its card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.participant.connectivity import connection_names, is_correlation
from nmflow.group.records import Prepared, Split, arrays_frame, frame_arrays, load_npz, save_npz
from nmflow.group.settings import GroupSettings
from nmflow.group.motion import FD_SOURCES, MEAN_FD
from nmflow.normative.crossfit import Preprocessed, Residuals, combine, mean_fc_residuals, model_input, predict
from nmflow.normative.deviations import calibration_table, focal_and_global, global_scores, residual_scale, rms
from nmflow.normative.model import NormativeModel, TrainResult, model_from_result, versions
from nmflow.group.selection import deviation_stability
from nmflow.group.stats import single_case_null_rate

MODELS = ("autoencoder", "linear")
GLOBAL_NAMES = ("global_score", "mean_sq_z", "n_extreme", "mean_abs_error")
# per-subject columns of each model: the global FC component is the same for both, the focal and combined
# scores are the autoencoder's (the linear baseline's residuals keep the global shift)
SUBJECT_COLUMNS = {"autoencoder": GLOBAL_NAMES + ("focal_z", "global_fc_z", "combined_score"),
                   "linear": GLOBAL_NAMES + ("global_fc_z",)}


@dataclass
class ModelScores:
    """Deviations of one model over all subjects of the cohort.

    ``z`` ``(n_subjects, n_features)`` signed residual z (NaN for subjects not
    tested), ``globals`` the per-subject global scores, ``calibration`` its
    table, ``null_rate`` the share of controls flagged against the others.
    """

    residuals: Residuals
    z: np.ndarray
    globals: pd.DataFrame
    calibration: pd.DataFrame
    null_rate: float


@dataclass
class Scored:
    """Everything scored for one variant (see :func:`score_variant`); rows are ``subjects``, the subjects
    that have the variant."""

    label: str
    subjects: list[str]
    names: list[str]
    regions: list[str]
    connection: np.ndarray
    scores: dict[str, ModelScores]
    val_beats_mean: bool
    stability: float = float("nan")
    messages: list[str] = field(default_factory=list)

    def save(self, path: str | Path) -> str:
        """Full-precision record for the statistics, selection and report nodes."""
        arrays = {"connection": self.connection, "subjects": np.array(self.subjects, dtype=str)}
        for m, sc in self.scores.items():
            arrays.update({f"{m}/z": sc.z, f"{m}/residual": sc.residuals.residual,
                           f"{m}/abs_error": sc.residuals.abs_error, f"{m}/features": sc.residuals.features})
            arrays.update({f"{m}/global/{c}": sc.globals[c].to_numpy(float) for c in SUBJECT_COLUMNS[m]})
            arrays.update(frame_arrays(f"{m}/calibration", sc.calibration))
        meta = {"label": self.label, "names": self.names, "regions": self.regions,
                "val_beats_mean": self.val_beats_mean, "stability": self.stability, "messages": self.messages,
                "null_rate": {m: sc.null_rate for m, sc in self.scores.items()},
                "calibration_columns": list(self.scores["autoencoder"].calibration.columns)}
        return save_npz(path, arrays, meta)

    @classmethod
    def load(cls, path: str | Path) -> "Scored":
        a, meta = load_npz(path)
        scores = {}
        for m in MODELS:
            res = Residuals(a[f"{m}/residual"], a[f"{m}/abs_error"], a[f"{m}/features"])
            glob = pd.DataFrame({c: a[f"{m}/global/{c}"] for c in SUBJECT_COLUMNS[m]})
            calib = arrays_frame(f"{m}/calibration", a, meta["calibration_columns"])
            scores[m] = ModelScores(res, a[f"{m}/z"], glob, calib, meta["null_rate"][m])
        return cls(meta["label"], a["subjects"].tolist(), meta["names"], meta["regions"], a["connection"], scores,
                   meta["val_beats_mean"], meta["stability"], meta["messages"])


def scored_messages(path: str | Path) -> list[str]:
    """The notes of a :class:`Scored` record, read without its arrays."""
    return load_npz(path, skip=lambda key: True)[1]["messages"]


def _slice(res: TrainResult, m: int) -> TrainResult:
    return TrainResult([p[m:m + 1] for p in res.params], res.train_loss[:, [m]], res.val_loss[:, [m]],
                       res.best_epoch[[m]], res.best_loss[[m]])


def score_variant(p: Prepared, result: TrainResult, index: pd.DataFrame, table: pd.DataFrame, split: Split,
                  settings: GroupSettings, base: NormativeModel | None, dataset: str
                  ) -> tuple[Scored, NormativeModel, TrainResult]:
    """Score one variant with its trained models.

    Parameters
    ----------
    p : Prepared
    result, index : TrainResult, DataFrame
        The stacked models of this variant's width and their index
        (:func:`nmflow.group.fitting.train_width`).
    dataset : str
        Name of the input dataset, for the model card.

    Returns
    -------
    scored : Scored
    model : NormativeModel
        The model fitted on all fitting controls, with its card and residual scale.
    final : TrainResult
        That model's learning curves.
    """
    folds = split.folds
    label = p.features.variant.label
    mine = index[index.variant == label]
    fits = mine[mine.kind == "fit"].sort_values("fit")
    boots = mine[mine.kind == "boot"].sort_values("fit")
    sites = table["site"].to_numpy(dtype=str)
    scored = p.kept[p.inputs]
    regions = list(base.card["atlas_regions"]) if base is not None else p.features.regions
    position = {name: k for k, name in enumerate(connection_names(regions))}
    model_names = list(base.card["feature_names"]) if base is not None else p.features.names
    connection = np.array([position[n] for n in model_names])[p.kept]  # scored -> index in the regions' triangle
    fold_models = fits.model.to_numpy()[:folds.n_fits]
    cross = range(folds.n_fits)  # each pass over the fits reads one fit's arrays at a time (Prepared.fit)

    def autoencoder(k: int) -> tuple[Preprocessed, np.ndarray]:  # fit k and its prediction in feature units
        prep = p.fit(k, ("features",))
        pred = predict(result, int(fold_models[k]), model_input(prep, p.kept, p.inputs), prep.cond,
                       settings.mask_fraction, settings.torch_device)[:, scored]
        return prep, pred * prep.scale.astype(np.float32) + prep.mean.astype(np.float32)

    def linear(k: int) -> tuple[Preprocessed, np.ndarray]:
        prep = p.fit(k)
        return prep, prep.linear

    residuals = {"autoencoder": combine(folds, (autoencoder(k) for k in cross)),
                 "linear": combine(folds, (linear(k) for k in cross))}
    tested = folds.tested
    mean_fc = mean_fc_residuals(folds, (p.fit(k, ("features",)) for k in cross))
    fd = table[MEAN_FD].to_numpy(float)
    scores = {}
    for name, res in residuals.items():
        scale = residual_scale(np.nan_to_num(res.residual), folds.reference, sites, settings.z_scale == "site")
        z = res.residual / scale
        glob = global_scores(np.nan_to_num(z), folds.reference, np.nan_to_num(res.abs_error))
        glob.loc[~tested] = np.nan
        glob = pd.concat([glob, focal_and_global(glob.mean_sq_z.to_numpy(), mean_fc, folds.reference)], axis=1)
        glob = glob[list(SUBJECT_COLUMNS[name])]
        score = z if settings.test_score == "signed" else np.abs(z)
        calib = calibration_table(res.features, res.residual, z, folds.reference, sites, p.names, fd)
        null = single_case_null_rate(score[folds.reference], settings.alpha, settings.single_case_rule)
        scores[name] = ModelScores(res, z, glob, calib, null)
    ae = scores["autoencoder"]
    m_final = int(fits.model.to_numpy()[-1])
    final = _slice(result, m_final)
    mean_loss = [_mean_loss(p.fit(k, ("features",)), folds.val[k]) for k in cross if folds.val[k].any()]
    fold_loss = [float(result.best_loss[m]) for m in fold_models]
    if mean_loss:
        val_beats_mean = float(np.mean(fold_loss)) < float(np.mean(mean_loss))
    else:  # not trained here (--no-fine-tune): judge by the controls' out-of-sample explained variance
        val_beats_mean = bool(ae.calibration.iloc[0]["explained_variance"] > 0)
    card = _card(p, table, split, settings, base, dataset, final, regions, fold_loss, mean_loss)
    messages = [f"{label}: {m}" for prep in p.preps for m in prep.messages]
    if base is not None:
        unscored = card["transfer"]["unscored"]
        messages.append(f"{label}: model features mapped by name: {int(p.kept.sum())} of {p.kept.size} "
                        f"scored, {len(unscored)} absent or mostly missing here (held at the model's mean, left "
                        f"out of the loss, no deviation), {p.n_unknown} connection(s) of these data unknown to the "
                        "model ignored")
    mean_full = base.mean if base is not None else p.final.mean
    scale_full = base.scale if base is not None else p.final.scale
    model = model_from_result(result, m_final, mean_full, scale_full, card)
    model.residual_sd = np.full(p.kept.size if base is not None else len(p.names), np.nan)  # NaN: not scored
    model.residual_sd[scored] = rms(ae.residuals.residual[folds.reference])
    if (~p.kept).any():
        messages.append(f"{label}: {int((~p.kept).sum())} connection(s) dropped as mostly missing in the controls")
    out = Scored(label, p.features.subjects, p.names, regions, connection, scores, val_beats_mean,
                 messages=messages)
    if len(boots):
        out.stability = _stability(p, result, boots.model.to_numpy(), split, settings)
    return out, model, final


def _mean_loss(prep: Preprocessed, val: np.ndarray) -> float:
    """Validation loss of the mean predictor (0 in standardised units) on the ``val`` subjects of a fit."""
    return float(np.mean(((prep.features[val] - prep.mean) / prep.scale) ** 2))


def _card(p: Prepared, table, split: Split, settings: GroupSettings, base, dataset: str, final: TrainResult, regions,
          fold_loss, mean_loss) -> dict:
    variant = p.features.variant
    names = p.names
    card = dict(variant.card_entities, strategy=variant.desc, metric=variant.meas, atlas_regions=regions,
                feature_names=names, n_features=len(names), fisher_z=is_correlation(variant.meas),
                harmonize=settings.harmonize, covariates=list(settings.covariates),
                covariate_coding=p.final.coder.to_dict(), covariate_columns=p.final.coder.column_names,
                scaler="standard: (x - mean) / sd of the fitting controls (in the weights file)",
                residual_sd="cross-fitted out-of-sample residual root mean square of the controls per connection, "
                            "feature units (calibration.residual_sd in the weights file)",
                training_subjects=[f"sub-{x}" for x in table.index[split.final_train]],
                validation_subjects=[f"sub-{x}" for x in table.index[split.final_val]],
                cross_fitting={"folds": split.folds.n_fits,
                               "mean_best_val_loss": float(np.mean(fold_loss)) if mean_loss else None,
                               "mean_predictor_val_loss": float(np.mean(mean_loss)) if mean_loss else None},
                dataset=dataset, config=vars(settings.train_config), versions=versions(),
                **({"mean_fd_source": _fd_sources(table)} if MEAN_FD in settings.covariates else {}),
                best_epoch=int(final.best_epoch[0]),
                best_val_loss=float(final.best_loss[0]) if np.isfinite(final.best_loss[0]) else None)
    if base is not None:
        unscored = [n for n, k in zip(base.card["feature_names"], p.kept) if not k]
        card["transfer"] = {"model_features": int(p.kept.size), "scored": int(p.kept.sum()),
                            "unscored": unscored, "data_connections_unknown_to_model": int(p.n_unknown),
                            "fine_tuned": not settings.no_fine_tune}
        card["fine_tuned_from"] = {"file": str(settings.init_model), "weights_sha256": base.card["weights_sha256"],
                                   "dataset": base.card.get("dataset"),
                                   "training_subjects": base.card.get("training_subjects")}
        card.update(feature_names=list(base.card["feature_names"]), n_features=int(p.kept.size),
                    covariate_columns=base.card.get("covariate_columns"))
        if settings.no_fine_tune:
            card.update(training_subjects=base.card.get("training_subjects"),
                        validation_subjects=base.card.get("validation_subjects"))
    return card


def _fd_sources(table: pd.DataFrame) -> dict:
    """Where the subjects' mean FD came from: ``{description: number of subjects}``."""
    counts = table["mean_fd_source"].value_counts()
    return {FD_SOURCES[k]: int(n) for k, n in counts.items()}


STABILITY_CONNECTIONS = 8192  # at most this many connections, evenly spaced, enter the stability


def _stability(p: Prepared, result: TrainResult, models: np.ndarray, split: Split, settings: GroupSettings) -> float:
    """Mean pairwise correlation of the bootstrap models' out-of-bag residuals of controls.

    A mean over connections: above ``STABILITY_CONNECTIONS`` it is taken over
    that many evenly spaced ones, so the bootstrap models' residuals held
    at once stay ``(n_bootstrap, n_controls, 8192)`` whatever the atlas.
    """
    from nmflow.group.fitting import bootstrap_plan

    rows = np.flatnonzero(split.folds.controls)
    z = model_input(p.fit(split.folds.n_fits, ("features",)), p.kept, p.inputs)[rows]
    cond = p.final.cond[rows]
    scored = np.flatnonzero(p.kept[p.inputs])
    scored = scored[np.unique(np.linspace(0, scored.size - 1, min(scored.size, STABILITY_CONNECTIONS)).astype(int))]
    res = np.stack([z[:, scored] - predict(result, int(m), z, cond, settings.mask_fraction,
                                           settings.torch_device)[:, scored]
                    for m in models])
    return deviation_stability(res, bootstrap_plan(split, settings) == 0)


def dataset_name(bids_dir: str | Path) -> str:
    """``Name`` of the input dataset's ``dataset_description.json``, else its folder name."""
    path = Path(bids_dir) / "dataset_description.json"
    try:
        return str(json.loads(path.read_text()).get("Name") or Path(bids_dir).name)
    except (OSError, ValueError):
        return Path(bids_dir).name
