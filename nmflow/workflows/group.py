"""Group level: ``nmflow FMRIPREP_DIR OUT_DIR group``.

A plain-function runner rather than a Nipype workflow: the group level is
one in-memory pass whose expensive part (hundreds of small autoencoders) is
trained as one stacked batch across variants and bootstrap resamples; Nipype
nodes would serialise every intermediate array and train model by model.

Steps per variant: features (Fisher z for correlation metrics, runs averaged,
missing values handled) -> ComBat fitted on training controls -> scaler and
autoencoder fitted on training controls (validation controls for early
stopping) -> deviations of the tested subjects (held-out controls and
patients; training and validation controls are never tested) -> statistics
against the held-out controls, for the autoencoder and the mass-univariate
Gaussian baseline.  Everything is written to a temporary folder inside
``OUT_DIR/group`` and moved into place only when the whole run succeeded.
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
from nmflow.errors import NmflowInputError
from nmflow.features import (FeatureSet, check_groups, collect_relmats, collect_timeseries, handle_missing,
                             model_features, read_participants, split_controls)
from nmflow.harmonize import harmonize
from nmflow.normative.deviations import gaussian_z, global_score, z_against
from nmflow.normative.model import (NormativeModel, TrainConfig, TrainResult, check_compatible, fit_scaler,
                                    load_model, model_from_result, save_model, train_models, versions)
from nmflow.selection import select_variants
from nmflow.stats import group_statistics, network_pair_summary, single_case_table


@dataclass
class VariantResult:
    """Everything computed for one variant (arrays over all subjects of the table)."""

    fs: FeatureSet
    names: list[str]
    raw: np.ndarray
    harmonised: np.ndarray
    harmonized_mask: np.ndarray
    model: NormativeModel
    result: TrainResult
    error: np.ndarray
    gauss: np.ndarray
    stats: pd.DataFrame
    networks: pd.DataFrame
    single_case: pd.DataFrame
    messages: list[str] = field(default_factory=list)


def run_group(args: argparse.Namespace) -> int:
    """Run the group level; returns 0, raises :class:`NmflowInputError` on bad input."""
    out_dir = Path(args.out_dir)
    sets, messages = _collect(args)
    participants = read_participants(args.participants or Path(args.bids_dir) / "participants.tsv",
                                     args.group_column, args.site_column, list(args.covariates))
    subjects = sorted(set().union(*(fs.subjects for fs in sets.values())))
    unknown = [s for s in subjects if s not in participants.index]
    if unknown:
        messages.append(f"{len(unknown)} subject(s) with features but not in participants.tsv, left out: "
                        + " ".join(unknown[:10]))
    table = participants.loc[[s for s in subjects if s in participants.index]].copy()
    check_groups(table, args.control_label)
    table["split"] = split_controls(table, args.control_label, args.train_split, args.val_split,
                                    args.seed, args.split_file)
    config = TrainConfig(args.epochs, args.learning_rate, args.weight_decay, args.patience, args.seed)
    base = load_model(args.init_model) if args.init_model else None
    results = {}
    for variant, fs in sets.items():
        if base is not None and any(base.card.get(k) != v for k, v in _keys(variant).items()):
            continue
        results[variant.label] = analyse_variant(fs, table, args, config, base)
    if not results:
        raise NmflowInputError(args.init_model, "no variant of these outputs matches the model "
                               f"({', '.join(f'{k}={base.card.get(k)}' for k in ('atlas', 'seg', 'desc', 'meas'))})")
    selection = None
    if args.n_bootstrap > 1 and base is None:
        selection = _selection(results, table, args, config)
    _write_outputs(out_dir, table, results, selection, messages, args)
    chosen = selection.iloc[0]["variant"] if selection is not None else next(iter(results))
    print(f"nmflow group: {len(results)} variant(s), {len(table)} subjects; selected {chosen} "
          f"-> {out_dir / 'group'}")
    for message in messages + [m for r in results.values() for m in r.messages]:
        print(f"nmflow: note: {message}")
    return 0


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


def analyse_variant(fs: FeatureSet, table: pd.DataFrame, args, config: TrainConfig,
                    base: NormativeModel | None = None) -> VariantResult:
    """Features -> ComBat -> model -> deviations -> statistics for one variant."""
    present = [s for s in table.index if s in fs.subjects]
    missing = sorted(set(table.index) - set(present))
    if missing:
        raise NmflowInputError(None, f"{fs.variant.label}: no features for subject(s) {missing[:10]}")
    rows = [fs.subjects.index(s) for s in table.index]
    split = table["split"].to_numpy()
    train = split == "train"
    raw, kept, n_imputed = handle_missing(model_features(fs)[rows], train, args.max_missing)
    names = [n for n, k in zip(fs.names, kept) if k]
    messages = []
    if n_imputed or not kept.all():
        messages.append(f"{fs.variant.label}: {int((~kept).sum())} connection(s) dropped as mostly missing, "
                        f"{n_imputed} missing value(s) imputed with the training mean")
    if args.harmonize == "combat":
        covariates = table[list(args.covariates)].reset_index(drop=True)
        harmonised, ok, notes = harmonize(raw, table["site"].to_numpy(), covariates, train)
        messages += [f"{fs.variant.label}: {n}" for n in notes]
    else:
        harmonised, ok = raw, np.zeros(len(table), bool)
    fit_rows = np.isin(split, ["train", "val"])
    wt = (split[fit_rows] == "train")[None].astype(float)
    wv = (split[fit_rows] == "val")[None].astype(float)
    card = dict(_keys(fs.variant), strategy=fs.variant.desc, metric=fs.variant.meas,
                atlas_regions=fs.regions, feature_names=names, n_features=len(names),
                fisher_z=fs.variant.meas in ("pearson", "spearman", "kendall", "partial"),
                harmonize=args.harmonize, covariates=list(args.covariates),
                scaler="standard: (x - mean) / sd of the training controls (in the weights file)",
                training_subjects=[f"sub-{s}" for s in table.index[train]],
                validation_subjects=[f"sub-{s}" for s in table.index[split == "val"]],
                config=vars(config), versions=versions())
    if base is not None:
        check_compatible(base.card, names, _keys(fs.variant))
        mean, scale = base.mean, base.scale
        z = (harmonised - mean) / scale
        result = train_models(z[fit_rows], wt, wv, config, init=base.stacked())
        card["fine_tuned_from"] = {"file": str(args.init_model), "weights_sha256": base.card["weights_sha256"],
                                   "training_subjects": base.card.get("training_subjects")}
    else:
        mean, scale = fit_scaler(harmonised[train])
        z = (harmonised - mean) / scale
        result = train_models(z[fit_rows], wt, wv, config)
    card.update(best_epoch=int(result.best_epoch[0]), best_val_loss=float(result.best_loss[0]))
    model = model_from_result(result, 0, mean, scale, card)
    residual = z - model.reconstruct(z)
    error = np.abs(residual)
    gauss = gaussian_z(harmonised, harmonised[train])
    tested = np.isin(split, ["test", "patient"])
    groups = table["group"].to_numpy()[tested]
    score = (lambda v: v) if args.test_score == "signed" else np.abs
    stats = pd.concat([
        group_statistics(score(residual[tested]), groups, args.control_label, names, args.alpha, args.p_rule)
        .assign(model="autoencoder"),
        group_statistics(score(gauss[tested]), groups, args.control_label, names, args.alpha, args.p_rule)
        .assign(model="gaussian"),
    ], ignore_index=True)
    stats["connection"] = np.flatnonzero(kept)[stats["connection"]]
    networks = pd.concat([network_pair_summary(stats[stats.model == m], fs.regions).assign(model=m)
                          for m in ("autoencoder", "gaussian")], ignore_index=True)
    patients, ref = split == "patient", split == "test"
    overall = global_score(error)
    single = single_case_table(np.column_stack([overall[patients], error[patients]]),
                               np.column_stack([overall[ref], error[ref]]),
                               [f"sub-{s}" for s in table.index[patients]], ["global_error", *names],
                               args.alpha, args.p_rule)
    single.insert(1, "group", np.repeat(table["group"].to_numpy()[patients], len(names) + 1))
    return VariantResult(fs, names, raw, harmonised, ok, model, result, error, gauss, stats, networks, single,
                         messages)


def _selection(results: dict[str, VariantResult], table: pd.DataFrame, args, config) -> pd.DataFrame:
    data = {label: r.model.standardize(r.harmonised) for label, r in results.items()}
    return select_variants(data, table["group"].to_numpy(), table["split"].to_numpy(), args.control_label,
                           args.n_bootstrap, config, args.alpha, args.p_rule)


def _tsv(path: Path, frame: pd.DataFrame, description: dict) -> None:
    frame.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
    path.with_suffix(".json").write_text(json.dumps(description, indent=2))


def _write_variant(folder: Path, table: pd.DataFrame, r: VariantResult, args) -> None:
    ents = r.fs.variant.entities
    split = table["split"].to_numpy()
    tested = np.isin(split, ["test", "patient"])
    ref = split == "test"
    error_z = z_against(r.error, r.error[ref])
    glob = global_score(r.error)
    info = pd.DataFrame({"participant_id": [f"sub-{s}" for s in table.index], "group": table["group"].to_numpy(),
                         "site": table["site"].to_numpy(), "split": split, "harmonized": r.harmonized_mask})
    dev = pd.concat([info, pd.DataFrame({"global_error": glob, "global_z": z_against(glob, glob[ref])}),
                     pd.DataFrame(error_z, columns=r.names)], axis=1)[tested]
    _tsv(folder / bids_name(ents, "deviations", ".tsv"), dev, {
        "Description": "Autoencoder deviations of the tested subjects (held-out controls and patients): per "
                       "connection the absolute reconstruction error of the standardised features, z-scored "
                       "against the held-out controls (split == test).",
        "global_error": "mean absolute reconstruction error over connections",
        "global_z": "global_error z-scored against the held-out controls"})
    base = pd.concat([info, pd.DataFrame(r.gauss, columns=r.names)], axis=1)[tested]
    _tsv(folder / bids_name(ents, "gaussianz", ".tsv"), base, {
        "Description": "Mass-univariate normative baseline: (x - mean) / sd of each feature against the "
                       "training controls; its deviation score is |z|."})
    _tsv(folder / bids_name(ents, "stats", ".tsv"), r.stats, {
        "Description": "Per model, patient group and connection: two-sided Mann-Whitney U of the deviation "
                       "scores (autoencoder: reconstruction error; gaussian: |z|) vs the held-out controls.",
        "U": "Mann-Whitney U of the patient sample", "q": "Benjamini-Hochberg q within group and model",
        "effect_size": "rank-biserial correlation 2U/(n_p n_c) - 1 (positive: patients deviate more)",
        "flagged": f"{'q' if args.p_rule == 'fdr' else 'p'} < {args.alpha}",
        "sharing": "shared: flagged in >= 2 groups; specific: flagged in this group only"})
    _tsv(folder / bids_name(ents, "singlecase", ".tsv"), r.single_case, {
        "Description": "Crawford-Howell single-case t-test of each patient's autoencoder reconstruction error "
                       "(per connection, and the global error) against the held-out controls (split == test), "
                       "df = n_reference - 1, two-sided.",
        "q": "Benjamini-Hochberg q over the features of one patient",
        "flagged": f"{'q' if args.p_rule == 'fdr' else 'p'} < {args.alpha}"})
    _tsv(folder / bids_name(ents, "networks", ".tsv"), r.networks, {
        "Description": "Flagged connections per Yeo-7 system pair, group and model."})
    save_model(r.model, folder / bids_name(ents, "model", ".safetensors"))
    curves = pd.DataFrame({"epoch": np.arange(len(r.result.train_loss)), "train_loss": r.result.train_loss[:, 0],
                           "val_loss": r.result.val_loss[:, 0]})
    _tsv(folder / bids_name(ents, "curves", ".tsv"), curves, {"Description": "Training and validation MSE per epoch"})


def _write_outputs(out_dir: Path, table, results, selection, messages, args) -> None:
    from nmflow.reports.group import write_group_report

    group_dir = out_dir / "group"
    group_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=group_dir))
    try:
        subjects = pd.DataFrame({"participant_id": [f"sub-{s}" for s in table.index],
                                 "group": table["group"].to_numpy(), "site": table["site"].to_numpy(),
                                 "split": table["split"].to_numpy()})
        _tsv(tmp / "subjects.tsv", subjects, {"split": "train/val: controls used for fitting (never tested); "
                                              "test: held-out reference controls; patient: tested"})
        for r in results.values():
            _write_variant(tmp, table, r, args)
        if selection is not None:
            _tsv(tmp / "selection.tsv", selection, {
                "Description": "Variants ranked by the stability of their findings over bootstrap models "
                               "(see the README, Group level)",
                "stability": "mean pairwise Jaccard of flagged (group, connection) sets",
                "reproducibility": "mean Dice between the flags of two halves of the tested subjects"})
        write_group_report(tmp, table, results, selection, messages, args)
        for item in sorted(tmp.iterdir()):
            target = group_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
