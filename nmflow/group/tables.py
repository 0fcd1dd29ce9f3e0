"""The group level's output tables and the descriptions in their JSON sidecars.

Every function returns ``(frame, description)``: the frame is written as a
TSV (``n/a`` for missing, 6 significant digits) and the description becomes
the sidecar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.fileio import write_tsv
from nmflow.group.records import Split, arrays_frame, frame_arrays, load_npz, save_npz
from nmflow.group.scoring import Scored
from nmflow.group.settings import GroupSettings
from nmflow.normative.model import TrainResult

GLOBAL_COLUMNS = {
    "global_score": "percentile (0-100) of mean_sq_z among the reference controls (a control among the others)",
    "mean_sq_z": "mean of z^2 over connections",
    "n_extreme": "connections with |z| > 2.6",
    "mean_abs_error": "mean |x - x_hat| in standardised units (the global reconstruction error)",
    "focal_z": "log(mean_sq_z) standardised by the reference controls' mean and SD: the focal deviation the "
               "autoencoder sees",
    "global_fc_z": "global FC component (signed): the subject's mean FC over connections (feature units, as the "
                   "linear baseline sees them: imputed, harmonised, not scaled) minus what its covariates predict "
                   "(OLS on each cross-fitting fold's controls; controls scored by the fold that never saw them, "
                   "patients by all folds averaged), over the reference controls' out-of-sample residual root mean "
                   "square. A shift shared by every connection, invisible to the autoencoder's per-connection z",
    "combined_score": "percentile (0-100) of focal_z^2 + global_fc_z^2 among the reference controls (a control "
                      "among the others): focal and global deviation in one number",
}
DEVIATION_MODELS = {
    "autoencoder": ("deviations", "Conditional autoencoder"),
    "linear": ("linearz", "Covariate-aware linear baseline (per-connection regression on the covariates)"),
}


def write_table(stem: str, frame: pd.DataFrame) -> tuple[str, str]:
    """Write ``stem.tsv`` (the output format: ``n/a``, 6 significant digits) and ``stem.npz`` (full
    precision, for the report); returns both absolute paths."""
    tsv = write_tsv(Path(f"{stem}.tsv").absolute(), frame)
    return tsv, save_npz(f"{stem}.npz", frame_arrays("table", frame), {"columns": list(frame.columns)})


def read_table(path: str | Path) -> pd.DataFrame:
    """A table written by :func:`write_table`, from its ``.npz``."""
    arrays, meta = load_npz(path)
    return arrays_frame("table", arrays, meta["columns"])


def subjects_description() -> dict:
    return {"split": "fold-<k>: control scored out of sample by cross-fitting fold k (fitted on the other folds); "
                     "with --split-file train/val: fitting controls (never tested), test: reference controls; "
                     "patient: tested, scored by every fold",
            "missing_variants": "variants (atlas-_seg-_desc-_meas-) this subject lacks: it is left out of their "
                                "models and statistics (n/a: it has every variant analysed)",
            "missing_reason": "why, from the participant level's _strategies.tsv (e.g. too few volumes left after "
                              "censoring), else 'no participant-level output of this variant'"}


def deviation_table(sc: Scored, model: str, table: pd.DataFrame, split: Split, harmonized: np.ndarray,
                    settings: GroupSettings) -> tuple[pd.DataFrame, dict]:
    """Signed residual z of every tested subject for ``model`` (autoencoder or linear).

    ``harmonized`` ``(n_subjects,)`` bool: ComBat changed the subject's features in some fit.
    """
    info = pd.DataFrame({"participant_id": [f"sub-{x}" for x in table.index], "group": table["group"].to_numpy(),
                         "site": table["site"].to_numpy(), "split": split.folds.label, "harmonized": harmonized})
    scores = sc.scores[model]
    frame = pd.concat([info, scores.globals, pd.DataFrame(scores.z, columns=sc.names)], axis=1)[split.folds.tested]
    what = DEVIATION_MODELS[model][1]
    columns = {c: GLOBAL_COLUMNS[c] for c in scores.globals.columns}
    return frame, {
        "Description": f"{what}: signed residual z (x - x_hat) / s per connection, s = the reference "
                       "controls' out-of-sample residual root mean square "
                       f"({'per site' if settings.z_scale == 'site' else 'pooled over sites'}). Controls are "
                       "scored by the cross-fitting fold that never saw them, patients by all folds (averaged).",
        **columns}


def stats_description(settings: GroupSettings) -> dict:
    return {
        "Description": "Per model, patient group and connection: two-sided Mann-Whitney U of the "
                       f"{settings.test_score} deviation z of the patients vs all reference controls.",
        "U": "Mann-Whitney U of the patient sample", "q": "Benjamini-Hochberg q within group and model",
        "effect_size": "rank-biserial correlation 2U/(n_p n_c) - 1 (positive: patients higher)",
        "flagged": f"{'q' if settings.p_rule == 'fdr' else 'p'} < {settings.alpha}",
        "sharing": "shared: flagged in >= 2 groups; specific: flagged in this group only",
        "global_effect_size": "rank-biserial correlation of the group's global FC component (global_fc_z) vs the "
                              "reference controls (positive: patients' mean FC higher than their covariates "
                              "predict)",
        "global_p": "two-sided Mann-Whitney p of that global FC shift",
        "with_global_shift": f"global_p < {settings.alpha} and this connection's effect has the shift's sign: when "
                             "most flagged connections do, the findings are one shift of the whole connectome, not "
                             "focal differences"}


def singlecase_description(settings: GroupSettings) -> dict:
    return {
        "Description": f"Crawford-Howell single-case t-test of each patient's {settings.test_score} autoencoder "
                       "deviation z per connection (and of the log mean z^2, feature 'global') against all "
                       "reference controls: t = (x - mean) / (sd sqrt((n + 1) / n)), df = n - 1, two-sided.",
        "q": "Benjamini-Hochberg q over the connections of one patient",
        "p_fwe": "family-wise adjusted p over the connections of one patient, calibrated on the controls "
                 "(max-T: each control tested against the others)",
        "flagged": f"{ {'maxt': 'p_fwe', 'fdr': 'q', 'raw': 'p'}[settings.single_case_rule]} < {settings.alpha} "
                   f"(global: p < {settings.alpha})"}


def networks_description() -> dict:
    return {"Description": "Flagged connections per Yeo-7 system pair, group and model."}


def calibration(sc: Scored) -> tuple[pd.DataFrame, dict]:
    """Calibration of both models (overall, per site, per connection) with the null single-case rate."""
    calib = pd.concat([x.calibration.assign(model=m) for m, x in sc.scores.items()], ignore_index=True)
    calib["null_singlecase_rate"] = np.where(calib.scope.eq("all") & calib.connection.eq("all"),
                                             calib.model.map({m: x.null_rate for m, x in sc.scores.items()}), np.nan)
    return calib, {
        "Description": "Calibration of the reference controls' out-of-sample deviations, overall, per site and "
                       "per connection (see the README, Group level).",
        "explained_variance": "1 - var(residual) / var(x) (PCNtoolkit's EV)",
        "smse": "mean(residual^2) / var(x) (standardised MSE)",
        "frac_abs_z_gt_1.96": "fraction of |z| > 1.96 (nominal 0.05)",
        "qcfc_median_abs_r": "QC-FC of the deviations: median over connections of |r|, r the Pearson correlation "
                             "across the row's reference controls of a connection's z with mean framewise "
                             "displacement (per connection: its |r|); target <= 0.1; n/a when mean FD is unknown",
        "qcfc_pct_p05": "QC-FC of the deviations: % of connections whose correlation with mean FD has p < 0.05 "
                        "(uncorrected; about 5 when the deviations carry no motion; per connection: 0 or 100)",
        "null_singlecase_rate": "fraction of controls with >= 1 flagged connection when each is tested against "
                                "the other controls (Crawford-Howell, BH); nominal about alpha"}


def curves(final: TrainResult) -> tuple[pd.DataFrame, dict]:
    """Learning curves of the saved model."""
    frame = pd.DataFrame({"epoch": np.arange(len(final.train_loss)), "train_loss": final.train_loss[:, 0],
                          "val_loss": final.val_loss[:, 0]})
    return frame, {"Description": "Training and validation MSE per epoch of the saved model (fit on all controls)"}


def selection_description() -> dict:
    return {
        "Description": "Variants judged on controls only (see the README, Group level): a variant "
                       "qualifies with stability >= 0.8, 3-8 % of controls' |z| > 1.96 and |excess "
                       "kurtosis| <= 1; qualifying variants are ranked by explained variance, then "
                       "stability. No row selected: no variant gives stable findings.",
        "stability": "mean pairwise correlation of bootstrap models' out-of-bag residuals of controls "
                     "(each variant's own controls)",
        "n_reference": "reference controls the calibration columns and explained_variance are computed on: "
                       "those that every variant has, so variants lacking different subjects are compared on "
                       "the same people"}
