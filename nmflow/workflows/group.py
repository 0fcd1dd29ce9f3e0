"""Group level: ``nmflow FMRIPREP_DIR OUT_DIR group``.

A plain-function runner rather than a Nipype workflow: the expensive part
(many small autoencoders: cross-fitting folds, a final model and bootstrap
models, for every variant) is trained as one stacked batch per feature
count; Nipype nodes would serialise every intermediate array and train model
by model.

Steps: features per variant (Fisher z for correlation metrics, runs
averaged) -> cross-fitting plan over the controls
(:mod:`nmflow.normative.crossfit`) -> per fit, from its controls only:
imputation, ComBat, scaler, covariate coding, linear baseline and the
conditional autoencoder -> out-of-sample signed residual z of every control,
fold-averaged residual z of patients (:mod:`nmflow.normative.deviations`)
-> group tests and single-case tests against all controls
(:mod:`nmflow.stats`) -> calibration and control-only variant selection
(:mod:`nmflow.selection`).  Everything is written to a temporary folder
inside ``OUT_DIR/group`` and moved into place only when the whole run
succeeded.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.bids_io import bids_name
from nmflow.connectivity import connection_names, is_correlation
from nmflow.errors import NmflowInputError
from nmflow.features import FeatureSet, check_groups, collect_relmats, collect_timeseries, model_features, \
    read_participants
from nmflow.normative.covariates import CovariateCoder
from nmflow.normative.crossfit import (Folds, Preprocessed, Residuals, combine, check_covariates,
                                       final_fit, kept_connections, make_folds, model_input, predict, preprocess,
                                       train_stacked)
from nmflow.normative.transfer import check_transferable, map_features
from nmflow.normative.deviations import calibration_table, global_scores, residual_scale, rms
from nmflow.normative.model import (NormativeModel, TrainConfig, TrainResult, load_model, model_from_result,
                                    save_model, versions)
from nmflow.selection import bootstrap_weights, deviation_stability, rank_variants
from nmflow.stats import (group_statistics, network_pair_summary, single_case_null_rate,
                          single_case_table)

MODELS = ("autoencoder", "linear")
BOOTSTRAP_SEED = 1000


@dataclass
class ModelScores:
    """Deviations of one model (autoencoder or linear) over all subjects of the table.

    ``z`` ``(n, F)`` signed residual z (NaN for subjects not tested),
    ``globals`` the per-subject global scores, ``calibration`` its table.
    """

    residuals: Residuals
    z: np.ndarray
    globals: pd.DataFrame
    stats: pd.DataFrame
    calibration: pd.DataFrame
    null_rate: float


@dataclass
class VariantResult:
    """Everything computed for one variant."""

    fs: FeatureSet
    names: list[str]
    kept: np.ndarray
    raw: np.ndarray
    preps: list[Preprocessed]
    final: Preprocessed
    model: NormativeModel
    result: TrainResult
    scores: dict[str, ModelScores]
    networks: pd.DataFrame
    single_case: pd.DataFrame
    val_beats_mean: bool
    regions: list[str]
    connection: np.ndarray
    stability: float = float("nan")
    messages: list[str] = field(default_factory=list)

    @property
    def stats(self) -> pd.DataFrame:
        return pd.concat([s.stats.assign(model=m) for m, s in self.scores.items()], ignore_index=True)


def run_group(args: argparse.Namespace) -> int:
    """Run the group level; returns 0, raises :class:`NmflowInputError` on bad input."""
    out_dir = Path(args.out_dir)
    sets, messages = _collect(args)
    participants_path = args.participants or Path(args.bids_dir) / "participants.tsv"
    participants = read_participants(participants_path, args.group_column, args.site_column,
                                     list(args.covariates))
    subjects = sorted(set().union(*(fs.subjects for fs in sets.values())))
    unknown = [s for s in subjects if s not in participants.index]
    if unknown:
        messages.append(f"{len(unknown)} subject(s) with features but not in participants.tsv, left out: "
                        + " ".join(unknown[:10]))
    table = participants.loc[[s for s in subjects if s in participants.index]].copy()
    try:
        check_groups(table, args.control_label)
        check_covariates(table, list(args.covariates))
    except NmflowInputError as exc:
        raise NmflowInputError(participants_path, exc.problem) from None
    base = load_model(args.init_model) if args.init_model else None
    if args.no_fine_tune and base is None:
        raise NmflowInputError(None, "--no-fine-tune needs --init-model MODEL.safetensors")
    if args.no_fine_tune:  # nothing trained: the folds keep ComBat and imputation out of sample
        n_controls = int((table["group"] == args.control_label).sum())
        folds = make_folds(table, args.control_label, max(2, min(args.folds, n_controls)), 0.0, args.seed,
                           args.split_file, min_train=0)
    else:
        try:
            folds = make_folds(table, args.control_label, args.folds, args.val_split, args.seed, args.split_file)
        except NmflowInputError as exc:
            if base is None or "too few" not in exc.problem:
                raise
            raise NmflowInputError(exc.path, f"{exc.problem}. To use {Path(args.init_model).name} without "
                                   "fine-tuning, rerun with --no-fine-tune: it then scores everyone as it is, with "
                                   "z-scores calibrated on this dataset's controls") from None
    table["split"] = folds.label
    config = TrainConfig(args.epochs, args.learning_rate, args.weight_decay, args.patience, args.seed,
                         args.mask_fraction)
    if base is not None:
        sets = {v: fs for v, fs in sets.items() if all(base.card.get(k) == x for k, x in _keys(v).items())}
        if not sets:
            raise NmflowInputError(args.init_model, "no variant of these outputs matches the model "
                                   f"({', '.join(f'{k}={base.card.get(k)}' for k in ('atlas', 'seg', 'desc', 'meas'))})")
    n_bootstrap = args.n_bootstrap if base is None and args.n_bootstrap > 1 else 0
    results = analyse(sets, table, folds, args, config, base, n_bootstrap)
    selection = _selection(results) if n_bootstrap else None
    _write_outputs(out_dir, table, folds, results, selection, messages, args)
    chosen = _chosen(results, selection)
    print(f"nmflow group: {len(results)} variant(s), {len(table)} subjects "
          f"({int(folds.reference.sum())} reference controls, {int(folds.patients.sum())} patients); "
          + (f"selected {chosen}" if selection is None or selection.selected.any()
             else "no variant gives stable findings") + f" -> {out_dir / 'group'}")
    for message in dict.fromkeys(messages + [m for r in results.values() for m in r.messages]):
        print(f"nmflow: note: {message}")
    return 0


def _chosen(results: dict, selection: pd.DataFrame | None) -> str:
    return selection.iloc[0]["variant"] if selection is not None else next(iter(results))


def _dataset_name(args) -> str:
    """``Name`` of the input dataset's ``dataset_description.json``, else its folder name."""
    path = Path(args.bids_dir) / "dataset_description.json"
    try:
        return str(json.loads(path.read_text()).get("Name") or Path(args.bids_dir).name)
    except (OSError, ValueError):
        return Path(args.bids_dir).name


def _keys(variant) -> dict:
    return {"atlas": variant.atlas, "seg": variant.seg, "desc": variant.desc, "meas": variant.meas}


def _collect(args) -> tuple[dict, list[str]]:
    labels = getattr(args, "participant_label", None)
    out_dir = Path(args.out_dir)
    sets = collect_relmats(out_dir, labels) if out_dir.is_dir() else {}
    messages = []
    if args.timeseries_dir:
        more, messages = collect_timeseries(args.timeseries_dir, list(getattr(args, "metrics", None) or ["pearson"]),
                                            labels)
        sets.update(more)
    if args.variants:
        sets = {v: fs for v, fs in sets.items() if any(fnmatch.fnmatch(v.label, p) for p in args.variants)}
    if not sets:
        raise NmflowInputError(args.timeseries_dir or out_dir, "no participant-level _relmat.tsv (or time series) "
                               "found" + (f" matching {args.variants}" if args.variants else ""))
    return sets, messages


def _variant_features(fs: FeatureSet, table: pd.DataFrame) -> np.ndarray:
    missing = sorted(set(table.index) - set(fs.subjects))
    if missing:
        raise NmflowInputError(None, f"{fs.variant.label}: no features for subject(s) {missing[:10]}")
    return model_features(fs)[[fs.subjects.index(s) for s in table.index]]


def analyse(sets: dict, table: pd.DataFrame, folds: Folds, args, config: TrainConfig,
            base: NormativeModel | None, n_bootstrap: int) -> dict[str, VariantResult]:
    """Fit, score and test every variant (models of one feature count trained as one batch).

    With ``base`` (``--init-model``) the data are mapped onto the model's features
    (:mod:`nmflow.normative.transfer`) and every fit fine-tunes it, or, with
    ``--no-fine-tune``, the model scores everyone as it is.
    """
    no_training = base is not None and args.no_fine_tune
    controls = folds.controls
    rows = np.flatnonzero(controls)
    pool_all, train_all, val_all = final_fit(folds, table["site"].to_numpy(), args.val_split, args.seed)
    boot = bootstrap_weights(rows.size, n_bootstrap, np.random.default_rng(args.seed + BOOTSTRAP_SEED))
    scaler = (base.mean, base.scale) if base is not None else None
    coder = CovariateCoder.from_dict(base.card["covariate_coding"]) if base is not None else None
    covariates = list(args.covariates)
    prepared, jobs = {}, {}
    pools = np.vstack([folds.pool, pool_all[None]])
    for variant, fs in sets.items():
        raw = _variant_features(fs, table)
        if base is not None:
            check_transferable(base.card, fs.regions, _keys(variant), args.init_model)
            raw, n_unknown = map_features(raw, fs.names, list(base.card["feature_names"]))
            model_names = list(base.card["feature_names"])
        else:
            model_names, n_unknown = fs.names, 0
        kept = kept_connections(raw, pools, args.max_missing)
        names = [n for n, k in zip(model_names, kept) if k]
        inputs = np.ones(kept.size, bool) if base is not None else kept
        scaler = (base.mean[kept], base.scale[kept]) if base is not None else None
        preps = [preprocess(raw[:, kept], table, folds.pool[k], covariates, args.harmonize, controls, scaler, coder)
                 for k in range(folds.n_fits)]
        final = preps[0] if folds.n_fits == 1 else preprocess(raw[:, kept], table, pool_all, covariates,
                                                              args.harmonize, controls, scaler, coder)
        prepared[variant] = (fs, raw, kept, inputs, names, n_unknown, preps, final)
        if no_training:
            continue
        width = (int(inputs.sum()), final.cond.shape[1])
        counted = kept[inputs]
        specs = [(p, folds.train[k], folds.val[k], config.seed + k) for k, p in enumerate(preps)]
        specs.append((final, train_all, val_all, config.seed + folds.n_fits))
        z_final = model_input(final, kept, inputs)[rows]
        for b in range(n_bootstrap):
            jobs.setdefault(width, []).append((variant, "boot", b, (z_final, final.cond[rows], boot[b],
                                                                    (boot[b] == 0).astype(float), counted),
                                               config.seed + BOOTSTRAP_SEED + b))
        for k, (p, wt, wv, seed) in enumerate(specs):
            z = model_input(p, kept, inputs)[rows]
            jobs.setdefault(width, []).append((variant, "fit", k, (z, p.cond[rows], wt[rows], wv[rows], counted),
                                               seed))
    trained: dict = {}
    if no_training:
        fixed = TrainResult(base.stacked(), np.zeros((0, 1)), np.zeros((0, 1)), np.zeros(1, int), np.full(1, np.nan))
        trained = {variant: {"fit": [(k, 0, fixed) for k in range(folds.n_fits + 1)]} for variant in sets}
    for width, items in jobs.items():
        res = train_stacked([it[3] for it in items], config, [it[4] for it in items],
                            init=base.stacked() if base is not None else None)
        for m, (variant, kind, k, _, _) in enumerate(items):
            trained.setdefault(variant, {}).setdefault(kind, []).append((k, m, res))
    return {variant.label: _score_variant(*prepared[variant], trained[variant], table, folds, args, config, base,
                                          rows, boot, (train_all, val_all))
            for variant in sets}


def _model_slice(res: TrainResult, m: int) -> TrainResult:
    return TrainResult([p[m:m + 1] for p in res.params], res.train_loss[:, [m]], res.val_loss[:, [m]],
                       res.best_epoch[[m]], res.best_loss[[m]])


def _score_variant(fs, raw, kept, inputs, names, n_unknown, preps, final, trained, table, folds: Folds, args,
                   config, base, rows, boot, final_sets) -> VariantResult:
    fits = sorted(trained["fit"])
    sites = table["site"].to_numpy(dtype=str)
    scored = kept[inputs]
    regions = list(base.card["atlas_regions"]) if base is not None else fs.regions
    position = {name: k for k, name in enumerate(connection_names(regions))}
    model_names = list(base.card["feature_names"]) if base is not None else fs.names
    connection = np.array([position[n] for n in model_names])[kept]  # scored -> index in the regions' triangle
    ae_pred = [predict(res, m, model_input(p, kept, inputs), p.cond, config.mask_fraction)[:, scored] * p.scale
               + p.mean for (k, m, res), p in zip(fits[:folds.n_fits], preps)]
    residuals = {"autoencoder": combine(folds, preps, ae_pred),
                 "linear": combine(folds, preps, [p.linear for p in preps])}
    groups = table["group"].to_numpy(dtype=str)
    tested = folds.tested
    scores = {}
    for name, res in residuals.items():
        scale = residual_scale(np.nan_to_num(res.residual), folds.reference, sites, args.z_scale == "site")
        z = res.residual / scale
        glob = global_scores(np.nan_to_num(z), folds.reference, np.nan_to_num(res.abs_error))
        glob.loc[~tested] = np.nan
        score = z if args.test_score == "signed" else np.abs(z)
        stats = group_statistics(score[tested], np.where(folds.reference, args.control_label, groups)[tested],
                                 args.control_label, names, args.alpha, args.p_rule)
        stats["connection"] = connection[stats["connection"]]
        calib = calibration_table(res.features, res.residual, z, folds.reference, sites, names)
        null = single_case_null_rate(score[folds.reference], args.alpha, args.single_case_rule)
        scores[name] = ModelScores(res, z, glob, stats, calib, null)
    ae = scores["autoencoder"]
    single = _single_case(ae, table, folds, names, args)
    networks = pd.concat([network_pair_summary(s.stats, regions).assign(model=m) for m, s in scores.items()],
                         ignore_index=True)
    _, m_final, res_final = fits[-1]
    result = _model_slice(res_final, m_final)
    mean_loss = [float(np.mean(((p.features - p.mean) / p.scale)[folds.val[k]] ** 2))
                 for k, p in enumerate(preps) if folds.val[k].any()]
    fold_loss = [float(res.best_loss[m]) for k, m, res in fits[:folds.n_fits]]
    if mean_loss:
        val_beats_mean = float(np.mean(fold_loss)) < float(np.mean(mean_loss))
    else:  # not trained here (--no-fine-tune): judge by the controls' out-of-sample explained variance
        val_beats_mean = bool(ae.calibration.iloc[0]["explained_variance"] > 0)
    card = dict(_keys(fs.variant), strategy=fs.variant.desc, metric=fs.variant.meas, atlas_regions=regions,
                feature_names=names, n_features=len(names), fisher_z=is_correlation(fs.variant.meas),
                harmonize=args.harmonize, covariates=list(args.covariates), covariate_coding=final.coder.to_dict(),
                covariate_columns=final.coder.column_names,
                scaler="standard: (x - mean) / sd of the fitting controls (in the weights file)",
                residual_sd="cross-fitted out-of-sample residual root mean square of the controls per connection, "
                            "feature units (calibration.residual_sd in the weights file)",
                training_subjects=[f"sub-{s}" for s in table.index[final_sets[0]]],
                validation_subjects=[f"sub-{s}" for s in table.index[final_sets[1]]],
                cross_fitting={"folds": folds.n_fits,
                               "mean_best_val_loss": float(np.mean(fold_loss)) if mean_loss else None,
                               "mean_predictor_val_loss": float(np.mean(mean_loss)) if mean_loss else None},
                dataset=_dataset_name(args), config=vars(config), versions=versions(),
                best_epoch=int(result.best_epoch[0]),
                best_val_loss=float(result.best_loss[0]) if np.isfinite(result.best_loss[0]) else None)
    messages = [f"{fs.variant.label}: {m}" for p in preps for m in p.messages]
    if base is not None:
        unscored = [n for n, k in zip(base.card["feature_names"], kept) if not k]
        card["transfer"] = {"model_features": int(kept.size), "scored": int(kept.sum()),
                            "unscored": unscored, "data_connections_unknown_to_model": int(n_unknown),
                            "fine_tuned": not args.no_fine_tune}
        card["fine_tuned_from"] = {"file": str(args.init_model), "weights_sha256": base.card["weights_sha256"],
                                   "dataset": base.card.get("dataset"),
                                   "training_subjects": base.card.get("training_subjects")}
        card.update(feature_names=list(base.card["feature_names"]), n_features=int(kept.size),
                    covariate_columns=base.card.get("covariate_columns"))
        if args.no_fine_tune:
            card.update(training_subjects=base.card.get("training_subjects"),
                        validation_subjects=base.card.get("validation_subjects"))
        messages.append(f"{fs.variant.label}: model features mapped by name: {int(kept.sum())} of {kept.size} "
                        f"scored, {len(unscored)} absent or mostly missing here (held at the model's mean, left "
                        f"out of the loss, no deviation), {n_unknown} connection(s) of these data unknown to the "
                        "model ignored")
    mean_full = base.mean if base is not None else final.mean
    scale_full = base.scale if base is not None else final.scale
    model = model_from_result(res_final, m_final, mean_full, scale_full, card)
    model.residual_sd = np.full(kept.size if base is not None else len(names), np.nan)  # NaN: not scored here
    model.residual_sd[kept[inputs]] = rms(ae.residuals.residual[folds.reference])
    out = VariantResult(fs, names, kept, raw, preps, final, model, result, scores, networks, single,
                        val_beats_mean, regions, connection, messages=messages)
    if (~kept).any():
        out.messages.append(f"{fs.variant.label}: {int((~kept).sum())} connection(s) dropped as mostly missing "
                            "in the controls")
    if "boot" in trained:
        out.stability = _stability(final, trained["boot"], rows, boot, config.mask_fraction, kept, inputs)
    return out


def _stability(final: Preprocessed, boots, rows, weights, mask_fraction: float, kept, inputs) -> float:
    z = model_input(final, kept, inputs)[rows]
    cond = final.cond[rows]
    scored = kept[inputs]
    res = np.stack([(z - predict(r, m, z, cond, mask_fraction))[:, scored] for _, m, r in sorted(boots)])
    return deviation_stability(res, weights == 0)


def _single_case(ae: ModelScores, table, folds: Folds, names, args) -> pd.DataFrame:
    """Crawford-Howell of each patient's deviations against all reference controls.

    The connections form one family (``--single-case-rule``); the global
    row tests the log mean z^2 on its own (``flagged``: p < alpha).
    """
    score = ae.z if args.test_score == "signed" else np.abs(ae.z)
    ids = [f"sub-{s}" for s in table.index[folds.patients]]
    single = single_case_table(score[folds.patients], score[folds.reference], ids, names, args.alpha,
                               args.single_case_rule)
    log_global = np.log(ae.globals["mean_sq_z"].to_numpy())[:, None]
    overall = single_case_table(log_global[folds.patients], log_global[folds.reference], ids, ["global"],
                                args.alpha, "raw")
    single = pd.concat([overall, single]).sort_values("participant_id", kind="stable", ignore_index=True)
    single.insert(1, "group", table["group"].reindex([i[4:] for i in single.participant_id]).to_numpy())
    return single


def _selection(results: dict[str, VariantResult]) -> pd.DataFrame:
    rows = []
    for label, r in results.items():
        overall = r.scores["autoencoder"].calibration.iloc[0]
        rows.append({"variant": label, "n_features": len(r.names), "stability": r.stability,
                     "frac_abs_z_gt_1.96": overall["frac_abs_z_gt_1.96"],
                     "z_excess_kurtosis": overall["z_excess_kurtosis"],
                     "explained_variance": overall["explained_variance"],
                     "val_beats_mean": r.val_beats_mean})
    return rank_variants(pd.DataFrame(rows))


def _tsv(path: Path, frame: pd.DataFrame, description: dict) -> None:
    frame.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
    path.with_suffix(".json").write_text(json.dumps(description, indent=2))


GLOBAL_COLUMNS = {
    "global_score": "percentile (0-100) of mean_sq_z among the reference controls (a control among the others)",
    "mean_sq_z": "mean of z^2 over connections",
    "n_extreme": "connections with |z| > 2.6",
    "mean_abs_error": "mean |x - x_hat| in standardised units (the original global reconstruction error)",
}


def _write_variant(folder: Path, table: pd.DataFrame, folds: Folds, r: VariantResult, args) -> None:
    ents = r.fs.variant.entities
    tested = folds.tested
    info = pd.DataFrame({"participant_id": [f"sub-{s}" for s in table.index], "group": table["group"].to_numpy(),
                         "site": table["site"].to_numpy(), "split": table["split"].to_numpy(),
                         "harmonized": np.mean([p.harmonized for p in r.preps], axis=0) > 0})
    descriptions = {
        "autoencoder": ("deviations", "Conditional autoencoder"),
        "linear": ("linearz", "Covariate-aware linear baseline (per-connection regression on the covariates)"),
    }
    for model, (suffix, what) in descriptions.items():
        s = r.scores[model]
        table_z = pd.concat([info, s.globals, pd.DataFrame(s.z, columns=r.names)], axis=1)[tested]
        _tsv(folder / bids_name(ents, suffix, ".tsv"), table_z, {
            "Description": f"{what}: signed residual z (x - x_hat) / s per connection, s = the reference "
                          "controls' out-of-sample residual root mean square "
                          f"({'per site' if args.z_scale == 'site' else 'pooled over sites'}). Controls are "
                          "scored by the cross-fitting fold that never saw them, patients by all folds (averaged).",
            **GLOBAL_COLUMNS})
    stats = r.stats
    _tsv(folder / bids_name(ents, "stats", ".tsv"), stats, {
        "Description": "Per model, patient group and connection: two-sided Mann-Whitney U of the "
                       f"{args.test_score} deviation z of the patients vs all reference controls.",
        "U": "Mann-Whitney U of the patient sample", "q": "Benjamini-Hochberg q within group and model",
        "effect_size": "rank-biserial correlation 2U/(n_p n_c) - 1 (positive: patients higher)",
        "flagged": f"{'q' if args.p_rule == 'fdr' else 'p'} < {args.alpha}",
        "sharing": "shared: flagged in >= 2 groups; specific: flagged in this group only"})
    _tsv(folder / bids_name(ents, "singlecase", ".tsv"), r.single_case, {
        "Description": f"Crawford-Howell single-case t-test of each patient's {args.test_score} autoencoder "
                       "deviation z per connection (and of the log mean z^2, feature 'global') against all "
                       "reference controls: t = (x - mean) / (sd sqrt((n + 1) / n)), df = n - 1, two-sided.",
        "q": "Benjamini-Hochberg q over the connections of one patient",
        "p_fwe": "family-wise adjusted p over the connections of one patient, calibrated on the controls "
                 "(max-T: each control tested against the others)",
        "flagged": f"{ {'maxt': 'p_fwe', 'fdr': 'q', 'raw': 'p'}[args.single_case_rule]} < {args.alpha} "
                   f"(global: p < {args.alpha})"})
    calib = pd.concat([s.calibration.assign(model=m) for m, s in r.scores.items()], ignore_index=True)
    calib["null_singlecase_rate"] = np.where(calib.scope.eq("all") & calib.connection.eq("all"),
                                             calib.model.map({m: s.null_rate for m, s in r.scores.items()}), np.nan)
    _tsv(folder / bids_name(ents, "calibration", ".tsv"), calib, {
        "Description": "Calibration of the reference controls' out-of-sample deviations, overall, per site and "
                       "per connection (see the README, Group level).",
        "explained_variance": "1 - var(residual) / var(x) (PCNtoolkit's EV)",
        "smse": "mean(residual^2) / var(x) (standardised MSE)",
        "frac_abs_z_gt_1.96": "fraction of |z| > 1.96 (nominal 0.05)",
        "null_singlecase_rate": "fraction of controls with >= 1 flagged connection when each is tested against "
                                "the other controls (Crawford-Howell, BH); nominal about alpha"})
    _tsv(folder / bids_name(ents, "networks", ".tsv"), r.networks, {
        "Description": "Flagged connections per Yeo-7 system pair, group and model."})
    save_model(r.model, folder / bids_name(ents, "model", ".safetensors"))
    curves = pd.DataFrame({"epoch": np.arange(len(r.result.train_loss)), "train_loss": r.result.train_loss[:, 0],
                           "val_loss": r.result.val_loss[:, 0]})
    _tsv(folder / bids_name(ents, "curves", ".tsv"), curves,
         {"Description": "Training and validation MSE per epoch of the saved model (fit on all controls)"})


def _write_outputs(out_dir: Path, table, folds: Folds, results, selection, messages, args) -> None:
    from nmflow.reports.group import write_group_report

    group_dir = out_dir / "group"
    group_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=group_dir))
    try:
        subjects = pd.DataFrame({"participant_id": [f"sub-{s}" for s in table.index],
                                 "group": table["group"].to_numpy(), "site": table["site"].to_numpy(),
                                 "split": table["split"].to_numpy()})
        _tsv(tmp / "subjects.tsv", subjects, {
            "split": "fold-<k>: control scored out of sample by cross-fitting fold k (fitted on the other folds); "
                     "with --split-file train/val: fitting controls (never tested), test: reference controls; "
                     "patient: tested, scored by every fold"})
        for r in results.values():
            _write_variant(tmp, table, folds, r, args)
        if selection is not None:
            _tsv(tmp / "selection.tsv", selection, {
                "Description": "Variants judged on controls only (see the README, Group level): a variant "
                               "qualifies with stability >= 0.8, 3-8 % of controls' |z| > 1.96 and |excess "
                               "kurtosis| <= 1; qualifying variants are ranked by explained variance, then "
                               "stability. No row selected: no variant gives stable findings.",
                "stability": "mean pairwise correlation of bootstrap models' out-of-bag residuals of controls"})
        write_group_report(tmp, table, folds, results, selection, messages, args)
        for item in sorted(tmp.iterdir()):
            target = group_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
