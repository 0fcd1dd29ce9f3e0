"""The cohort of a group run: who is in it, with which features, and how the controls are split.

:func:`collect_cohort` finds the participant-level outputs (PyBIDS: FC
matrices, motion, and the reports beside them) or external time series,
keeps the variants asked for, and aligns every variant's features to the
subjects of ``participants.tsv``;
:func:`make_split` plans the cross-fitting (:mod:`nmflow.normative.crossfit`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.bids_io import layout, strip_prefix
from nmflow.errors import NmflowInputError
from nmflow.group.external import external_sources, merge_sources
from nmflow.group.features import FeatureSet, Variant, check_groups, collect_relmats, collect_timeseries, \
    model_features, read_participants
from nmflow.group.motion import MEAN_FD, collect_motion, participant_reports, with_mean_fd
from nmflow.group.records import Split, VariantFeatures
from nmflow.group.selection import n_bootstrap
from nmflow.group.settings import GroupSettings
from nmflow.fileio import read_tsv
from nmflow.normative.crossfit import (MIN_TRAIN, TooFewControls, check_covariates, final_fit, make_folds,
                                      too_few_controls)


def find_feature_sets(settings: GroupSettings, lay) -> tuple[dict[Variant, FeatureSet], list[str]]:
    """Feature sets per variant (the relmats of ``lay``, a layout of ``OUT_DIR`` or None, then
    ``--timeseries-dir``, ``--connectivity-dir`` and ``--matrix-dir``: :mod:`nmflow.group.external`) and notes."""
    labels = list(settings.participant_label) or None
    sources = [("OUT_DIR", collect_relmats(lay, labels) if lay is not None else {})]
    messages: list[str] = []
    if settings.timeseries_dir:
        more, messages = collect_timeseries(settings.timeseries_dir, list(settings.metrics), labels)
        sources.append(("--timeseries-dir", more))
    sets = merge_sources(sources + external_sources(settings))
    if settings.variants:
        sets = {v: fs for v, fs in sets.items() if any(fnmatch.fnmatch(v.label, p) for p in settings.variants)}
    if not sets:
        raise NmflowInputError(settings.connectivity_dir or settings.timeseries_dir or settings.out_dir,
                               "no participant-level _relmat.tsv (or time series) found"
                               + (f" matching {list(settings.variants)}" if settings.variants else ""))
    return sets, messages


def load_table(settings: GroupSettings, subjects: list[str], motion: pd.DataFrame | None = None) -> pd.DataFrame:
    """``participants.tsv`` rows of ``subjects`` (labels without ``sub-``), in that order, with ``mean_fd``
    (:func:`nmflow.group.motion.with_mean_fd`; ``motion`` the runs of :func:`collect_motion`, None: from
    the participants file only)."""
    participants = read_participants(settings.participants_file, settings.group_column, settings.site_column,
                                     list(settings.covariates))
    try:
        return with_mean_fd(participants.loc[subjects], motion if motion is not None else collect_motion(None, []))
    except NmflowInputError as exc:
        raise NmflowInputError(settings.participants_file, exc.problem) from None


def check_mean_fd(table: pd.DataFrame) -> None:
    """Raise :class:`NmflowInputError` naming the subjects whose mean FD, a covariate, is unknown."""
    unknown = table.index[table[MEAN_FD].isna()]
    if len(unknown):
        raise NmflowInputError(None, f"covariate {MEAN_FD!r} is unknown for {len(unknown)} subject(s): "
                               + ", ".join(f"sub-{x}" for x in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
                               + f" (no number in the participants file's {MEAN_FD} column and no participant-level "
                               "*_outliers.tsv with framewise_displacement)")


@dataclass
class Collected:
    """What :func:`collect_cohort` found.

    ``features`` one :class:`VariantFeatures` per variant analysed (each with
    the subjects that have it); ``subjects`` the cohort: every labelled
    subject with features of some variant and a participants row, sorted;
    ``missing`` one row per subject and variant it lacks
    (``participant_id``, ``variant``, ``reason``); ``motion`` the participant
    level's motion per run and strategy
    (:func:`nmflow.group.motion.collect_motion`); ``reports`` the
    participant reports of these subjects (names in ``OUT_DIR``).
    """

    features: list[VariantFeatures]
    subjects: list[str]
    messages: list[str]
    missing: list[dict]
    motion: pd.DataFrame
    reports: list[str]


def collect_cohort(settings: GroupSettings, card: dict | None = None) -> Collected:
    """Variants' features, the cohort's subjects, who lacks which variant, notes, motion and participant reports.

    Each variant keeps the subjects that have it; one whose subjects leave
    too few controls for the cross-fitting (or a group of fewer than 3) is
    left out with a note.  ``card``: the card of the ``--init-model``; only
    variants matching its atlas, seg, desc and meas are kept.
    """
    out_dir = Path(settings.out_dir)
    lay = layout(out_dir) if out_dir.is_dir() else None
    sets, messages = find_feature_sets(settings, lay)
    participants = read_participants(settings.participants_file, settings.group_column, settings.site_column,
                                     list(settings.covariates))
    found = sorted(set().union(*(fs.subjects for fs in sets.values())))
    absent = [f"sub-{x}" for x in map(strip_prefix, settings.participant_label) if x not in found]
    if absent:
        raise NmflowInputError(settings.out_dir, f"--participant-label: {len(absent)} participant(s) without features: "
                                          f"{' '.join(absent[:10])}")
    unknown = [x for x in found if x not in participants.index]
    if unknown:
        messages.append(f"{len(unknown)} subject(s) with features but not in participants.tsv, left out: "
                        + " ".join(unknown[:10]))
    subjects = [x for x in found if x in participants.index]
    motion = collect_motion(lay, subjects)
    try:
        table = with_mean_fd(participants.loc[subjects], motion)
        check_groups(table, settings.control_label)
        if MEAN_FD in settings.covariates:
            check_mean_fd(table)
        check_covariates(table, list(settings.covariates))
    except NmflowInputError as exc:
        raise NmflowInputError(settings.participants_file, exc.problem) from None
    if card is not None:
        sets = {v: fs for v, fs in sets.items() if all(card.get(k) == x for k, x in v.card_entities.items())}
        if not sets:
            raise NmflowInputError(settings.init_model, "no variant of these outputs matches the model "
                                   f"({', '.join(f'{k}={card.get(k)}' for k in ('atlas', 'seg', 'desc', 'meas'))})")
    split = make_split(settings, table, card is not None)
    reasons = skipped_strategies(lay, subjects) if lay is not None else {}
    features, missing, problems = [], [], []
    for variant, fs in sets.items():
        have = set(fs.subjects)
        mine = [x for x in subjects if x in have]
        lacking = [x for x in subjects if x not in have]
        problem = _variant_problem(settings, table.loc[mine], split.subset(table.index.get_indexer(mine)))
        if problem:
            problems.append(f"{variant.label}: not analysed: {problem} ({len(lacking)} subject(s) lack it)")
            continue
        why = {x: reasons.get((x, variant.desc), "no participant-level output of this variant") for x in lacking}
        missing += [{"participant_id": f"sub-{x}", "variant": variant.label, "reason": why[x]} for x in lacking]
        if lacking:
            messages.append(f"{variant.label}: analysed without {len(lacking)} subject(s) that lack it: "
                            + ", ".join(f"sub-{x} ({why[x]})" for x in lacking[:10])
                            + (", ..." if len(lacking) > 10 else ""))
        x = model_features(fs)[[fs.subjects.index(x) for x in mine]]
        features.append(VariantFeatures(variant, x, fs.names, fs.regions, mine))
    if not features:
        raise NmflowInputError(settings.timeseries_dir or settings.out_dir,
                               "no variant can be analysed: " + "; ".join(problems))
    messages += problems
    reports = participant_reports(out_dir, subjects) if out_dir.is_dir() else []
    return Collected(features, subjects, messages, missing, motion, reports)


def _variant_problem(settings: GroupSettings, table: pd.DataFrame, split: Split) -> str | None:
    """Why a variant cannot be analysed on its subjects (``table`` and the cohort's ``split`` restricted to
    them), or None."""
    try:
        check_groups(table, settings.control_label)
    except NmflowInputError as exc:
        return exc.problem
    return too_few_controls(split.folds, 0 if settings.no_fine_tune else MIN_TRAIN)


def skipped_strategies(lay, subjects: list[str]) -> dict[tuple[str, str], str]:
    """``{(subject, strategy): reason}`` of the strategies the participant level skipped (its
    ``_strategies.tsv`` files in the layout of ``OUT_DIR``); one reason per subject and strategy."""
    query = {"suffix": "strategies", "extension": ".tsv"}
    if subjects:
        query["subject"] = subjects
    out: dict[tuple[str, str], str] = {}
    for f in lay.get(**query):
        rows = read_tsv(f.path, "strategies table", dtype=str)
        if not {"strategy", "status", "reason"} <= set(rows.columns):
            continue
        for strategy, reason in rows.loc[rows["status"] == "skipped", ["strategy", "reason"]].itertuples(index=False):
            out.setdefault((f.entities["subject"], strategy), reason)
    return out


def make_split(settings: GroupSettings, table: pd.DataFrame, transferring: bool, n_variants: int = 1) -> Split:
    """Cross-fitting plan of the cohort (``table`` from :func:`load_table`) for ``n_variants`` variants.

    ``transferring``: an ``--init-model`` is given (a too-small cohort then
    suggests ``--no-fine-tune``).
    """

    if settings.no_fine_tune and not transferring:
        raise NmflowInputError(None, "--no-fine-tune needs --init-model MODEL.safetensors")
    if settings.no_fine_tune:  # nothing trained: the folds keep ComBat and imputation out of sample
        n_controls = int((table["group"] == settings.control_label).sum())
        folds = make_folds(table, settings.control_label, max(2, min(settings.folds, n_controls)), 0.0,
                           settings.seed, settings.split_file, min_train=0)
    else:
        try:
            folds = make_folds(table, settings.control_label, settings.folds, settings.val_split, settings.seed,
                               settings.split_file)
        except TooFewControls as exc:  # in the participants table (or in the split file)
            hint = ""
            if transferring:
                hint = (f". To use {Path(settings.init_model).name} without fine-tuning, rerun with --no-fine-tune: "
                        "it then scores everyone as it is, with z-scores calibrated on this dataset's controls")
            raise NmflowInputError(exc.path or settings.participants_file, exc.problem + hint) from None
    pool, train, val = final_fit(folds, table["site"].to_numpy(), settings.val_split, settings.seed)
    return Split(folds, pool, train, val, n_bootstrap(settings.n_bootstrap, n_variants, transferring))


def subjects_table(table: pd.DataFrame, split: Split, missing: list[dict]) -> pd.DataFrame:
    """``subjects.tsv``: participant_id, group, site and split label of every subject, and the variants it
    lacks with the reasons (``missing`` rows of :class:`Collected`; n/a when it has them all)."""
    ids = [f"sub-{x}" for x in table.index]
    lacking = pd.DataFrame(missing, columns=["participant_id", "variant", "reason"]).groupby("participant_id")
    variants = lacking["variant"].agg(" ".join)
    reasons = lacking["reason"].agg(lambda r: "; ".join(dict.fromkeys(r)))
    return pd.DataFrame({"participant_id": ids, "group": table["group"].to_numpy(),
                         "site": table["site"].to_numpy(), "split": split.folds.label,
                         "missing_variants": variants.reindex(ids).to_numpy(),
                         "missing_reason": reasons.reindex(ids).to_numpy()})


def reference_groups(table: pd.DataFrame, split: Split, control_label: str) -> np.ndarray:
    """Group of each subject, with every reference control labelled ``control_label``."""
    return np.where(split.folds.reference, control_label, table["group"].to_numpy(dtype=str))
