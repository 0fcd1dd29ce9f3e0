"""Which deviations are real: group tests, single-case tests, and the choice of variant.

Group tests compare each patient group's deviations with all reference
controls (Mann-Whitney U, BH within group and model); single cases are
Crawford-Howell tests of each patient against the reference controls with a
family-wise rule calibrated on the controls; variants are ranked on controls
only (:mod:`nmflow.group.selection`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nmflow.group.cohort import reference_groups
from nmflow.group.records import Split
from nmflow.group.scoring import Scored
from nmflow.group.settings import GroupSettings
from nmflow.group.selection import rank_variants
from nmflow.group.stats import group_statistics, network_pair_summary, single_case_table, with_global_shift
from nmflow.normative.deviations import calibration_summary


def _score(z: np.ndarray, test_score: str) -> np.ndarray:
    return z if test_score == "signed" else np.abs(z)


def group_tests(sc: Scored, table: pd.DataFrame, split: Split, settings: GroupSettings
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per model, patient group and connection: Mann-Whitney U of patients vs reference controls.

    Returns the statistics (column ``connection`` = index in the regions'
    upper triangle) and their summary per Yeo-7 system pair.
    """
    tested = split.folds.tested
    groups = reference_groups(table, split, settings.control_label)[tested]
    frames = []
    for model, scores in sc.scores.items():
        stats = group_statistics(_score(scores.z, settings.test_score)[tested], groups, settings.control_label,
                                 sc.names, settings.alpha, settings.p_rule)
        stats["connection"] = sc.connection[stats["connection"]]
        stats = with_global_shift(stats, scores.globals["global_fc_z"].to_numpy()[tested], groups,
                                  settings.control_label,
                                  settings.alpha if settings.test_score == "signed" else 0.0)  # |z|: no sign
        frames.append(stats.assign(model=model))
    stats = pd.concat(frames, ignore_index=True)
    networks = pd.concat([network_pair_summary(stats[stats.model == m].drop(columns="model").reset_index(drop=True),
                                               sc.regions).assign(model=m) for m in sc.scores],
                         ignore_index=True)
    return stats, networks


def single_cases(sc: Scored, table: pd.DataFrame, split: Split, settings: GroupSettings) -> pd.DataFrame:
    """Crawford-Howell of each patient's autoencoder deviations against all reference controls.

    The connections form one family (``--single-case-rule``); the ``global``
    row tests the log mean z^2 on its own (``flagged``: p < alpha).
    """
    folds = split.folds
    ae = sc.scores["autoencoder"]
    score = _score(ae.z, settings.test_score)
    ids = [f"sub-{x}" for x in table.index[folds.patients]]
    single = single_case_table(score[folds.patients], score[folds.reference], ids, sc.names, settings.alpha,
                               settings.single_case_rule)
    log_global = np.log(ae.globals["mean_sq_z"].to_numpy())[:, None]
    overall = single_case_table(log_global[folds.patients], log_global[folds.reference], ids, ["global"],
                                settings.alpha, "raw")
    features = ["global", *sc.names]
    for frame in (overall, single):  # one set of categories: the concatenation stays categorical
        frame["feature"] = frame["feature"].cat.set_categories(features)
    n_cases, n_features = len(ids), len(sc.names)
    order = np.empty((n_cases, n_features + 1), dtype=np.int64)  # each patient: its global row, then its features
    order[:, 0] = np.arange(n_cases)
    order[:, 1:] = n_cases + np.arange(n_cases * n_features).reshape(n_cases, n_features)
    single = pd.concat([overall, single], ignore_index=True).iloc[order.ravel()].reset_index(drop=True)
    groups = table["group"].to_numpy(dtype=str)[folds.patients]
    single.insert(1, "group", pd.Categorical(np.repeat(groups, n_features + 1)))
    return single


def selection_rows(scored: list[Scored], table: pd.DataFrame, split: Split) -> list[dict]:
    """What variant selection needs of each variant, on controls only.

    Calibration and explained variance are taken over the reference controls
    that every variant has (``n_reference``), so that variants missing
    different subjects are compared on the same people; the bootstrap
    stability is each variant's own.  ``table`` and ``split`` are the
    whole cohort's.
    """
    common = set(table.index[split.folds.reference]).intersection(*(sc.subjects for sc in scored))
    rows = []
    for sc in scored:
        ref = np.array([x in common for x in sc.subjects])
        ae = sc.scores["autoencoder"]
        overall = calibration_summary(ae.residuals.features[ref], ae.residuals.residual[ref], ae.z[ref])
        rows.append({"variant": sc.label, "n_features": len(sc.names), "n_reference": int(ref.sum()),
                     "stability": sc.stability, "frac_abs_z_gt_1.96": overall["frac_abs_z_gt_1.96"],
                     "z_excess_kurtosis": overall["z_excess_kurtosis"],
                     "explained_variance": overall["explained_variance"], "val_beats_mean": sc.val_beats_mean})
    return rows


def select_variants(rows: list[dict]) -> pd.DataFrame:
    """Variants ranked on controls only (:func:`nmflow.group.selection.rank_variants`)."""
    return rank_variants(pd.DataFrame(rows))
