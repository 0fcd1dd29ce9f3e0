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

With ``--pcntoolkit`` it prints instead (d): nmflow's autoencoder and linear baseline beside PCNtoolkit's
Bayesian linear regression (plain and warped) on the same folds, on ``--pcn-connections`` evenly spaced
connections (:func:`pcntoolkit_side_by_side`; PCNtoolkit is the optional extra ``bench``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, spearmanr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from helpers.group import group_args  # noqa: E402
from helpers.realdata import abide_workspace  # noqa: E402

from nmflow.group.features import collect_timeseries, model_features  # noqa: E402
from nmflow.group.stats import single_case_null_rate  # noqa: E402
from nmflow.stats import qc_fc  # noqa: E402
from nmflow.normative.crossfit import make_folds, preprocess  # noqa: E402
from nmflow.normative.deviations import calibration_table, residual_scale  # noqa: E402
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
          "with a flagged connection; no global shift labelled")
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
              f"controls: {100 * null_rate.loc['autoencoder', 'null_singlecase_rate']:.1f} %; global shift "
              f"(mean FC, Mann-Whitney): p = {stats.global_p.iloc[0]:.2f}, connections labelled with it: "
              f"{int((stats.flagged & stats.with_global_shift).sum())}")


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
    print(f"{'score':60s} AUC (95 % bootstrap interval)  Spearman r with mean FD in controls")
    for name, score in rows.items():
        rho = spearmanr(score[control], fd[control]).statistic
        area, low, high = auc_interval(score, patient)
        print(f"{name:60s} {area:.3f} ({low:.3f}-{high:.3f})     {rho:+.2f}")


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


# ---------------------------------------------------------------------------------------------------------------
# (d) PCNtoolkit side by side
# ---------------------------------------------------------------------------------------------------------------

PCN_CONNECTIONS = 500
PCN_MODELS = {"PCNtoolkit BLR": None, "PCNtoolkit warped BLR": "WarpSinhArcsinh"}
PCN_MISSING = ("PCNtoolkit is not installed: its rows are skipped "
               "(pip install 'pcntoolkit==1.3.0', or the project's optional extra: pip install -e '.[bench]')")
N_BOOTSTRAP = 2000


def pcntoolkit_missing() -> str | None:
    """Why the PCNtoolkit rows cannot be computed (one sentence), or None."""
    return PCN_MISSING if importlib.util.find_spec("pcntoolkit") is None else None


def msll(x: np.ndarray, logp: np.ndarray) -> float:
    """Mean standardised log loss of controls' out-of-sample predictive densities (arrays ``(n, k)``).

    Per connection, the mean negative log density of the model minus that of a Gaussian with the
    controls' own mean and SD (ddof=0) of ``x``, averaged over connections (PCNtoolkit 1.3's MSLL, with
    both densities in the units of ``x``); negative: better than that trivial model.
    """
    mu, sd = x.mean(axis=0), x.std(axis=0)
    baseline = -0.5 * np.log(2 * np.pi * sd ** 2) - (x - mu) ** 2 / (2 * sd ** 2)
    return float(np.mean(-logp.mean(axis=0) + baseline.mean(axis=0)))


def gaussian_logp(z: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Log density of nmflow's Gaussian reading of its deviations: ``x ~ N(x_hat, scale^2)``, so
    ``log p = -log(scale) - log(2 pi) / 2 - z^2 / 2`` with ``z = (x - x_hat) / scale``."""
    return -np.log(scale) - 0.5 * np.log(2 * np.pi) - 0.5 * z ** 2


def auc_interval(score: np.ndarray, positive: np.ndarray, n_boot: int = N_BOOTSTRAP, seed: int = 0
                 ) -> tuple[float, float, float]:
    """AUC of ``score`` for ``positive`` and its 95 % percentile interval over ``n_boot`` stratified
    bootstrap resamples (cases and controls each resampled with replacement, their numbers kept)."""
    from scipy.stats import rankdata

    pos, neg = score[positive], score[~positive]
    rng = np.random.default_rng(seed)

    def area(p, q):
        ranks = rankdata(np.concatenate([p, q]))
        return (ranks[:p.size].sum() - p.size * (p.size + 1) / 2) / (p.size * q.size)

    boots = [area(rng.choice(pos, pos.size), rng.choice(neg, neg.size)) for _ in range(n_boot)]
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(area(pos, neg)), float(low), float(high)


def deviation_row(x, r, z, logp, reference, patients, sites, alpha: float = 0.05) -> dict:
    """Figures of one model: x, r, z, logp ``(n_subjects, k)`` (logp may be None), masks ``(n_subjects,)``.

    EV, SMSE and the per-site share of |z| > 1.96 are nmflow's calibration table over the reference
    controls; the null rates are nmflow's single-case null rate of the signed z (each control against
    the other controls) with the default ``maxt`` rule (about ``alpha`` by construction: each control's
    largest |t| is ranked among the other controls') and with ``fdr`` (Benjamini-Hochberg on the
    Crawford-Howell p, which the tails of z drive); the AUC is of the mean z^2 over the ``k`` connections.
    """
    calib = calibration_table(x, r, z, reference, sites, [str(k) for k in range(z.shape[1])])
    overall = calib[calib.connection == "all"].set_index("scope")["frac_abs_z_gt_1.96"]
    tested = reference | patients
    msq = np.mean(z ** 2, axis=1)
    return {"EV": float(calib.explained_variance.iloc[0]), "SMSE": float(calib.smse.iloc[0]),
            "MSLL": msll(x[reference], logp[reference]) if logp is not None else float("nan"),
            "site_min": 100 * overall.drop("all").min(), "site_max": 100 * overall.drop("all").max(),
            "all": 100 * overall["all"], "null": 100 * single_case_null_rate(z[reference], alpha, "maxt"),
            "null_bh": 100 * single_case_null_rate(z[reference], alpha, "fdr"),
            "auc": auc_interval(msq[tested], patients[tested])}


def print_side_by_side(rows: dict[str, dict], header: str) -> None:
    print(header)
    print(f"{'model':24s} {'EV':>6s} {'SMSE':>6s} {'MSLL':>7s}  {'|z|>1.96 % per site (all)':27s} "
          f"{'null % max-T, BH':16s}  {'AUC mean z^2 [95 % CI]':24s} wall time")
    for name, row in rows.items():
        auc_text = "{:.3f} [{:.3f}, {:.3f}]".format(*row["auc"])
        print(f"{name:24s} {row['EV']:6.3f} {row['SMSE']:6.3f} {row['MSLL']:7.3f}  "
              f"{row['site_min']:4.1f}-{row['site_max']:4.1f} ({row['all']:.1f}){'':14s} "
              f"{row['null']:4.1f}, {row['null_bh']:4.1f}{'':6s}  "
              f"{auc_text:24s} {row['time']}")


def pcn_fit_predict(y_fit: np.ndarray, cov_fit: np.ndarray, site_fit: np.ndarray, y_test: np.ndarray,
                    cov_test: np.ndarray, site_test: np.ndarray, warp: str | None, save_dir: Path
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCNtoolkit 1.3 BLR fitted on one fold's controls, applied to its test rows.

    One model per connection (columns of ``y``): covariates ``cov`` age and sex (0/1; linear basis, standardised),
    site as batch effect in the mean (``fixed_effect``) and in the noise variance (``fixed_effect_var``),
    ``warp`` None (Gaussian) or a BLR warp name (``WarpSinhArcsinh``).  Returns the test rows' z,
    predictive mean and log density ``(n_test, k)``, the log density in the units of ``y`` (PCNtoolkit
    computes it on its standardised responses: its scaler's log SD is subtracted).
    """
    import pcntoolkit as ptk
    from pcntoolkit.util.output import Output
    from threadpoolctl import threadpool_limits

    Output.set_show_messages(False)
    names = [f"c{k}" for k in range(y_fit.shape[1])]

    def norm_data(name, y, cov, site):
        frame = pd.DataFrame(y, columns=names)
        frame["age"], frame["sex"], frame["site"] = cov[:, 0], cov[:, 1], site
        return ptk.NormData.from_dataframe(name, frame, covariates=["age", "sex"], batch_effects=["site"],
                                           response_vars=names)

    model = ptk.NormativeModel(ptk.BLR(fixed_effect=True, fixed_effect_var=True, warp_name=warp),
                               savemodel=False, evaluate_model=False, saveresults=False, saveplots=False,
                               save_dir=str(save_dir))
    test = norm_data("test", y_test, cov_test, site_test)
    with threadpool_limits(1), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(norm_data("fit", y_fit, cov_fit, site_fit))
        model.predict(test)
    log_sd = np.log([float(model.outscalers[n].s) for n in names])
    return (test.Z.sel(response_vars=names).values, test.Yhat.sel(response_vars=names).values,
            test.logp.sel(response_vars=names).values - log_sd)


def pcntoolkit_side_by_side(root: Path, table: pd.DataFrame, ts: Path, n_connections: int = PCN_CONNECTIONS
                            ) -> dict[str, dict]:
    """(d) nmflow's autoencoder and linear baseline beside PCNtoolkit's BLR and warped BLR.

    nmflow runs as in (c) (its work folder kept for the per-subject residuals).  PCNtoolkit gets the same
    folds (each control scored by the fit that did not see it, patients by all fits, their z averaged)
    and the un-harmonised Fisher-z features, NaN imputed by the fit's controls' mean as nmflow does;
    site is its batch effect (it models site itself, so ComBat is not applied), covariates age + sex.
    Every figure is computed on ``n_connections`` evenly spaced modelled connections, for every model.
    """
    from nmflow.group.scoring import Scored
    from nmflow.normative.crossfit import kept_connections

    print(f"## (d) nmflow beside PCNtoolkit (same folds; {n_connections} evenly spaced connections)")
    start = time.perf_counter()
    run(root, "side", table, ts, "-w", str(root / "work"))
    group_time = time.perf_counter() - start
    scored = Scored.load(next((root / "work").rglob("scored.npz")))
    labelled = table.set_index(table.participant_id.str[4:].to_numpy()).sort_index()
    assert list(labelled.index) == list(scored.subjects), "subject order differs from the group run's"
    args = group_args("x", "y", "--covariates", "age", "sex")
    folds = make_folds(labelled, "control", args.folds, args.val_split, args.seed)
    sets, _ = collect_timeseries(ts, ["pearson"], list(labelled.index))
    fs = next(iter(sets.values()))
    raw = model_features(fs)[[fs.subjects.index(s) for s in labelled.index]]
    kept = kept_connections(raw, folds.pool, args.max_missing)
    n_kept = int(kept.sum())
    subset = np.unique(np.linspace(0, n_kept - 1, min(n_connections, n_kept)).astype(int))
    columns = np.flatnonzero(kept)[subset]
    reference, patients = folds.reference, folds.patients
    sites = labelled.site.to_numpy(dtype=str)
    # nmflow's linear baseline again, fold by fold, timed (imputation, ComBat, scaler, linear fit; all
    # modelled connections), and checked against the group run's residuals (same folds, same features)
    start = time.perf_counter()
    lin_res = np.full((len(labelled), subset.size), np.nan)
    for f in range(folds.n_fits):
        prep = preprocess(raw[:, kept], labelled, folds.pool[f], ["age", "sex"], "combat", folds.controls)
        mine = folds.held_out == f
        lin_res[mine] = (prep.features - prep.linear)[mine][:, subset]
    linear_time = time.perf_counter() - start
    gap = np.nanmax(np.abs(lin_res[reference] - scored.scores["linear"].residuals.residual[reference][:, subset]))
    assert gap < 1e-3, f"the linear baseline differs from the group run's by {gap:.2g}: not the same folds"
    rows, full = {}, {}
    for name, model in (("nmflow autoencoder", "autoencoder"), ("nmflow linear baseline", "linear")):
        sc = scored.scores[model]
        scale = residual_scale(np.nan_to_num(sc.residuals.residual), reference)
        logp = gaussian_logp(sc.z, scale)
        x, r = sc.residuals.features, sc.residuals.residual
        rows[name] = deviation_row(x[:, subset], r[:, subset], sc.z[:, subset], logp[:, subset], reference,
                                   patients, sites)
        full[name] = deviation_row(x, r, sc.z, logp, reference, patients, sites)
    rows["nmflow autoencoder"]["time"] = full["nmflow autoencoder"]["time"] = (
        f"{group_time:.0f} s (the whole group run, {n_kept} connections)")
    rows["nmflow linear baseline"]["time"] = full["nmflow linear baseline"]["time"] = (
        f"{linear_time:.0f} s (ComBat + linear fits, {n_kept} connections)")
    missing = pcntoolkit_missing()
    if missing:
        print(missing)
    else:
        sex = labelled.sex.astype(str)
        cov = np.column_stack([labelled.age.to_numpy(float), (sex != sorted(sex.unique())[0]).to_numpy(float)])
        for name, warp in PCN_MODELS.items():
            y = raw[:, columns].astype(float)
            z, r, logp = (np.zeros((len(labelled), subset.size)) for _ in range(3))
            x = np.zeros_like(z)
            wall, cpu = time.perf_counter(), time.process_time()
            for f in range(folds.n_fits):
                pool, mine = folds.pool[f], folds.held_out == f
                yf = np.where(np.isfinite(y), y, np.nanmean(y[pool], axis=0))  # nmflow's imputation rule
                test = mine | patients
                zf, yhat, lp = pcn_fit_predict(yf[pool], cov[pool], sites[pool], yf[test], cov[test], sites[test],
                                               warp, root / "pcn")
                own = mine[test]
                z[mine], r[mine], logp[mine], x[mine] = zf[own], (yf[test] - yhat)[own], lp[own], yf[mine]
                z[patients] += zf[~own] / folds.n_fits
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows[name] = deviation_row(x, r, z, logp, reference, patients, sites)
            rows[name]["time"] = f"{wall:.0f} s ({cpu:.0f} s CPU; {subset.size} connections)"
            print(f"[{name}: {wall:.0f} s]")
    print()
    print_side_by_side(rows, f"{subset.size} of {n_kept} modelled connections (evenly spaced), {int(reference.sum())} "
                             f"controls out of sample, {int(patients.sum())} autism; AUC: mean z^2 over these "
                             f"connections, autism vs controls, {N_BOOTSTRAP} stratified bootstrap resamples")
    print()
    print_side_by_side(full, f"nmflow on all {n_kept} modelled connections (for comparison with the subset)")
    print("MSLL of nmflow: its z read as Gaussian, x ~ N(x_hat, s^2) with s the controls' out-of-sample residual "
          "RMS per connection (log p = -log s - log(2 pi)/2 - z^2/2), minus a Gaussian with the controls' mean "
          "and SD; EV, SMSE and MSLL are against the variance of the features each model sees: ComBat-harmonised "
          "for nmflow, raw (site differences included) for PCNtoolkit; patients' PCNtoolkit z are averaged over "
          "the fits, as nmflow averages their residuals")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pcntoolkit", action="store_true",
                        help="only (d): nmflow beside PCNtoolkit's BLR and warped BLR on the same folds")
    parser.add_argument("--pcn-connections", type=int, default=PCN_CONNECTIONS,
                        help="evenly spaced connections every model of (d) is compared on")
    parser.add_argument("--null", action="store_true", help="only (a), the null cohorts")
    parser.add_argument("--scores", action="store_true", help="only the autism cohort: subject_scores()")
    parser.add_argument("--covariates", nargs="+", default=["age", "sex"], help="with --scores")
    args = parser.parse_args(argv)
    with abide_workspace("nmflow_bench_real_") as (root, table):
        if args.pcntoolkit:
            pcntoolkit_side_by_side(root, table, root / "ts", args.pcn_connections)
            return
        if args.scores:
            subject_scores(run(root, "scores", table, root / "ts", "--covariates", *args.covariates), table)
            return
        null_cohorts(root, table, root / "ts")
        if not args.null:
            autism(root, table, root / "ts")


if __name__ == "__main__":
    main()
