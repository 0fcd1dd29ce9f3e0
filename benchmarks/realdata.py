"""The group level on real data: ABIDE I development subset (python benchmarks/realdata.py).

Reads ``../shared/realdata/abide-dev`` beside the repository (real ROI time series, Harvard-Oxford
111 regions, 499 subjects over 14 sites; never copied into the project), writes it as a BEP017
``*_timeseries.tsv`` folder in a temporary directory and runs ``nmflow ... group --timeseries-dir``
exactly as a user would (5-fold cross-fitting, ComBat, age + sex, signed deviations).  Prints:

(a) null cohorts: each site's controls split at random into "pseudo-patients" and controls (two
    splits): connections flagged by the group test per model, and the share of pseudo-patients with
    any connection flagged by the single-case test (default max-T rule, and BH for comparison);
(b) calibration of the controls' out-of-sample z per site (share of |z| > 1.96, nominal 5 %);
(c) autism vs controls: AUC of the per-subject ``global_score`` against, under the same protocol
    (same folds, same features), the mean |z| of the covariate-aware linear baseline and the
    reconstruction error of a PCA with 50 components; beside them the AUC of head motion (mean FD)
    alone and each score's correlation with motion in controls.

``--scores [--covariates age sex mean_fd]`` runs only the autism-vs-controls cohort with those
covariates and prints :func:`subject_scores`: the QC-FC and per-site calibration of the deviations,
and the subject-level AUC of each per-subject score with a bootstrap 95 % interval.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from helpers.group import group_args  # noqa: E402
from helpers.realdata import abide_workspace  # noqa: E402

from nmflow.group.features import collect_timeseries, model_features  # noqa: E402
from nmflow.stats import qc_fc  # noqa: E402
from nmflow.normative.crossfit import make_folds, preprocess  # noqa: E402
from nmflow.workflows.group import run_group  # noqa: E402

VARIANT = "atlas-HO_meas-pearson"


def run(root: Path, name: str, participants: pd.DataFrame, ts: Path, *extra: str) -> Path:
    folder = root / name
    folder.mkdir()
    participants.to_csv(folder / "participants.tsv", sep="\t", index=False)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        run_group(group_args(folder, folder / "out", "--timeseries-dir", str(ts), "--participant-label",
                             *participants.participant_id, "--covariates", "age", "sex", "--n-bootstrap", "0",
                             *extra))
    print(f"[{name}: {len(participants)} subjects, {time.perf_counter() - start:.0f} s]")
    return folder / "out" / "group"


def read(group: Path, suffix: str) -> pd.DataFrame:
    return pd.read_csv(group / f"{VARIANT}_{suffix}.tsv", sep="\t")


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    return float(mannwhitneyu(score[positive], score[~positive]).statistic / (positive.sum() * (~positive).sum()))


def null_cohorts(root: Path, table: pd.DataFrame, ts: Path, seeds=(0, 1)) -> None:
    print("## (a) Null cohorts: ABIDE controls only, each site's controls split in two at random")
    print("targets: <= 2 connections flagged by the group test per model; <= 10 % of pseudo-patients "
          "with a flagged connection")
    for seed in seeds:
        controls = table[table.group == "control"].copy()
        rng = np.random.default_rng(seed)
        for _, rows in controls.groupby("site"):
            idx = rng.permutation(rows.index.to_numpy())
            controls.loc[idx[: len(idx) // 2], "group"] = "pseudo"
        group = run(root, f"null{seed}", controls, ts)
        stats = read(group, "stats")
        flagged = stats.groupby("model").flagged.sum()
        single = read(group, "singlecase")
        conn = single[single.feature != "global"]
        maxt = conn.groupby("participant_id").flagged.any().mean()
        bh = (conn.q < 0.05).groupby(conn.participant_id).any().mean()
        calib = read(group, "calibration")
        null_rate = calib[(calib.scope == "all") & (calib.connection == "all")].set_index("model")
        print(f"split {seed}: {int((controls.group == 'pseudo').sum())} pseudo-patients vs "
              f"{int((controls.group == 'control').sum())} controls; group test flags autoencoder "
              f"{int(flagged['autoencoder'])}, linear {int(flagged['linear'])} of 5995 connections; "
              f"pseudo-patients with a flagged connection: max-T {100 * maxt:.1f} % "
              f"(BH on Crawford-Howell p would give {100 * bh:.1f} %); controls tested against the other "
              f"controls: {100 * null_rate.loc['autoencoder', 'null_singlecase_rate']:.1f} %")


def pca_error(table: pd.DataFrame, ts: Path, k: int = 50) -> np.ndarray:
    """Cross-fitted PCA-k reconstruction error per subject under the group level's own protocol.

    ``table`` is indexed by subject label in the group level's (sorted) order, so the folds are
    the same as those of the group run.
    """
    sets, _ = collect_timeseries(ts, ["pearson"], list(table.index))
    fs = next(iter(sets.values()))
    args = group_args("x", "y", "--covariates", "age", "sex")
    folds = make_folds(table, "control", args.folds, args.val_split, args.seed)
    raw = model_features(fs)[[fs.subjects.index(s) for s in table.index]]
    from nmflow.normative.crossfit import kept_connections

    kept = kept_connections(raw, folds.pool, args.max_missing)
    error = np.zeros(len(table))
    for f in range(folds.n_fits):
        prep = preprocess(raw[:, kept], table, folds.pool[f], ["age", "sex"], "combat", folds.controls)
        z = (prep.features - prep.mean) / prep.scale
        centre = z[folds.pool[f]].mean(axis=0)
        _, _, vt = np.linalg.svd(z[folds.pool[f]] - centre, full_matrices=False)
        recon = (z - centre) @ vt[:k].T @ vt[:k] + centre
        err = np.mean((z - recon) ** 2, axis=1)
        error[folds.held_out == f] = err[folds.held_out == f]
        error[folds.patients] += err[folds.patients] / folds.n_fits
    return error


def autism(root: Path, table: pd.DataFrame, ts: Path) -> None:
    group = run(root, "autism", table, ts)
    dev, lin = read(group, "deviations"), read(group, "linearz")
    calib = read(group, "calibration")
    print("\n## (b) Calibration of the controls' out-of-sample z per site (target: 3-8 % beyond +-1.96)")
    sites = calib[(calib.connection == "all")].pivot(index="scope", columns="model", values="frac_abs_z_gt_1.96")
    print((100 * sites).round(1).to_string())
    overall = calib[(calib.scope == "all") & (calib.connection == "all")].set_index("model")
    print(overall[["explained_variance", "smse", "z_sd", "z_skewness", "z_excess_kurtosis",
                   "null_singlecase_rate"]].to_string(float_format=lambda v: f"{v:.3f}"))
    stats = read(group, "stats")
    print("connections flagged autism vs controls (q < 0.05): "
          + ", ".join(f"{m} {int(n)}" for m, n in stats.groupby("model").flagged.sum().items()))
    print("\n## (c) Autism vs controls, subject-level AUC (same folds and features for every score)")
    patient = (dev.group == "autism").to_numpy()
    ids = dev.participant_id.str[4:]
    labelled = table.set_index(table.participant_id.str[4:].to_numpy()).sort_index()  # the group level's order
    pca = pd.Series(pca_error(labelled, ts), index=labelled.index)
    mean_abs_lin = np.abs(lin.filter(like="__").to_numpy()).mean(axis=1)
    rows = {"global_score (autoencoder, percentile of mean z^2)": dev.global_score.to_numpy(),
            "n_extreme (autoencoder, |z| > 2.6)": dev.n_extreme.to_numpy(),
            "mean |z| (linear baseline)": mean_abs_lin,
            "global_score (linear baseline)": lin.global_score.to_numpy(),
            "PCA-50 reconstruction error": pca.loc[ids].to_numpy()}
    fd = table.set_index(table.participant_id.str[4:]).loc[ids, "mean_fd"].to_numpy()
    rows["mean framewise displacement (head motion, not a deviation)"] = fd
    control = ~patient
    print(f"{'score':60s} AUC    Spearman r with mean FD in controls")
    for name, score in rows.items():
        rho = spearmanr(score[control], fd[control]).statistic
        print(f"{name:60s} {auc(score, patient):.3f}  {rho:+.2f}")


def subject_scores(group: Path, table: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> None:
    """QC-FC and per-site calibration of the deviations, then the subject-level AUC (autism vs controls,
    Mann-Whitney U / (n1 n2)) of each per-subject score with a 95 % interval from ``n_boot`` bootstrap
    resamples of subjects within each group, and its Spearman correlation with mean FD in controls."""
    calib = read(group, "calibration")
    overall = calib[(calib.scope == "all") & (calib.connection == "all")].set_index("model")
    sites = calib[(calib.scope != "all") & (calib.connection == "all")].groupby("model")["frac_abs_z_gt_1.96"]
    dev = read(group, "deviations")
    fd = table.set_index("participant_id").loc[dev.participant_id, "mean_fd"].to_numpy()
    patient = (dev.group == "autism").to_numpy()
    print("model        QC-FC median |r| (median r)  % p<0.05  |z|>1.96 % all (sites min-max)  explained variance")
    for (model, row), suffix in zip(overall.loc[["autoencoder", "linear"]].iterrows(), ("deviations", "linearz")):
        z = read(group, suffix).filter(like="__").to_numpy()[~patient]
        signed = np.nanmedian(qc_fc(fd[~patient], z)[0])  # the direction: motion left (+) or overcorrected (-)
        print(f"{model:12s} {row.qcfc_median_abs_r:16.3f} ({signed:+.3f})  {row.qcfc_pct_p05:8.1f}  "
              f"{100 * row['frac_abs_z_gt_1.96']:9.1f} ({100 * sites.min()[model]:.1f}-{100 * sites.max()[model]:.1f})"
              f"{row.explained_variance:21.3f}")
    rows = {"global_score": dev.global_score, "n_extreme": dev.n_extreme, "|global_fc_z|": dev.global_fc_z.abs(),
            "global_fc_z (signed)": dev.global_fc_z, "combined_score": dev.combined_score}
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(patient), np.flatnonzero(~patient)
    draws = [(rng.choice(pos, pos.size), rng.choice(neg, neg.size)) for _ in range(n_boot)]
    print(f"\n{'score':22s} AUC    95 % interval ({n_boot} resamples)  Spearman r with mean FD in controls")
    for name, values in rows.items():
        x = values.to_numpy(float)
        boot = [mannwhitneyu(x[p], x[n]).statistic / (p.size * n.size) for p, n in draws]
        low, high = np.percentile(boot, [2.5, 97.5])
        rho = spearmanr(x[~patient], fd[~patient]).statistic
        print(f"{name:22s} {auc(x, patient):.3f}  {low:.3f}-{high:.3f}{'':20s}{rho:+.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", action="store_true", help="only the autism cohort: subject_scores()")
    parser.add_argument("--covariates", nargs="+", default=["age", "sex"], help="with --scores")
    args = parser.parse_args()
    with abide_workspace("nmflow_bench_real_") as (root, table):
        if args.scores:
            subject_scores(run(root, "scores", table, root / "ts", "--covariates", *args.covariates), table)
            return
        null_cohorts(root, table, root / "ts")
        autism(root, table, root / "ts")


if __name__ == "__main__":
    main()
