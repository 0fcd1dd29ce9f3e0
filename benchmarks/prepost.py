"""Validation of the stimulus study (``--analysis prepost``); prints the figures of the README section.

1. Crawford-Howell against published worked values (4 significant digits) and
   the Z-CC interval against the singcar package's output.
2. The GLM against nilearn's ``FirstLevelModel`` on the same design: largest
   absolute difference of the residuals and of R² (one simulated run).
3. Recall and false-discovery proportion of the single-case test on the
   simulator: every study is 20 controls + 1 patient with 4 planted patient
   changes and 3 changes common to everyone (``nmflow simulate-prepost``
   defaults, seeds ``--seeds``), run through both workflows (``nmflow ...
   participant|group --analysis prepost``) with the defaults; FDR q < 0.05.
   ``--network-seeds N`` adds the same test on N further studies at the network
   level only (no voxels, no GLM: the ceiling the pipeline can reach).

``python benchmarks/prepost.py [--seeds 0 1 2] [--network-seeds 20] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

os.environ.setdefault("NIPYPE_NO_ET", "1")

from nmflow.errors import NmflowInputError  # noqa: E402

WORKED = [  # (case, mean, sd, n, figure, published value as printed)
    (-2.0, 0.0, 1.0, 15, "t", "-1.936"), (-2.0, 0.0, 1.0, 15, "p_less", "0.0366"),
    (0.028149213, 0.1646236, 0.0777695, 28, "t", "-1.7243"), (0.028149213, 0.1646236, 0.0777695, 28, "df", "27"),
    (0.028149213, 0.1646236, 0.0777695, 28, "p_less", "0.0480"),
    (0.028149213, 0.1646236, 0.0777695, 28, "z_cc", "-1.7549"),
]


def worked_values() -> pd.DataFrame:
    """Our values next to the published ones, rounded as they were printed."""
    from nmflow.stats import crawford_howell_summary

    rows = []
    for case, mean, sd, n, figure, published in WORKED:
        value = float(getattr(crawford_howell_summary(case, mean, sd, n), figure))
        decimals = len(published.partition(".")[2])
        rows.append({"case": f"{case:g}", "controls": f"mean {mean:g}, SD {sd:g}, n {n}", "figure": figure,
                     "published": published, "nmflow": f"{value:.6g}",
                     "equal as printed": round(value, decimals) == float(published)})
    result = crawford_howell_summary(0.028149213, 0.1646236, 0.0777695, 28)
    low, high = result.z_cc_ci
    rows.append({"case": "0.0281492", "controls": "mean 0.164624, SD 0.0777695, n 28", "figure": "Z-CC 95 % CI",
                 "published": "[-2.34, -1.15] (singcar)", "nmflow": f"[{low:.4f}, {high:.4f}]",
                 "equal as printed": (round(low, 2), round(high, 2)) == (-2.34, -1.15)})
    return pd.DataFrame(rows)


def glm_against_nilearn(root: Path) -> dict[str, float]:
    """Largest |difference| of residuals and R² between nmflow's GLM and nilearn's FirstLevelModel."""
    from nilearn.glm.first_level import FirstLevelModel

    from nmflow.participant.denoise import PRESETS, CleaningSettings, censoring, read_confounds, select_confounds
    from nmflow.prepost.events import read_stimulus
    from nmflow.prepost.glm import design_matrix, fit_glm, read_bold

    func = root / "sub-21" / "func"
    bold_path = next(func.glob("*desc-preproc_bold.nii.gz"))
    mask_path = next(func.glob("*desc-brain_mask.nii.gz"))
    table = read_confounds(next(func.glob("*desc-confounds_timeseries.tsv")))
    strategy = PRESETS["gsr"]  # the default --glm-confounds: censors high-motion volumes too (sample mask)
    fitted = np.flatnonzero(censoring(table, strategy, CleaningSettings())["censored"].to_numpy() == 0)
    bold = read_bold(bold_path, mask_path)
    tr = float(nib.load(bold_path).header.get_zooms()[3])
    design = design_matrix(np.arange(bold.data.shape[0]) * tr, read_stimulus(next(func.glob("*_events.tsv"))),
                           select_confounds(table, strategy), 0.01)
    fit = fit_glm(bold.data, design.to_numpy(), fitted)
    source = nib.load(bold_path)
    bold64 = nib.Nifti1Image(np.asarray(source.dataobj, dtype=np.float64), source.affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FirstLevelModel(t_r=tr, noise_model="ols", mask_img=str(mask_path), minimize_memory=False).fit(
            bold64, design_matrices=[design], sample_masks=[fitted])
    theirs = np.asarray(model.residuals_[0].dataobj)[bold.mask]  # (n_voxels, n_fitted), C order
    ours = np.asarray(bold.image(fit.residuals).dataobj)[bold.mask]
    r2_theirs = np.asarray(model.r_square_[0].dataobj).reshape(bold.mask.shape)[bold.mask]  # nilearn: (x, y, z, 1)
    r2_ours = np.asarray(bold.image(fit.r_square).dataobj)[bold.mask]
    full = np.zeros((fit.residuals.shape[0], bold.mask.size))  # float64 residuals in nilearn's voxel order
    full[:, bold.mask.ravel(order="F")] = fit.residuals
    ours64 = full.reshape((fit.residuals.shape[0],) + bold.mask.shape[::-1]).transpose(0, 3, 2, 1)[:, bold.mask].T
    return {"voxels": int(bold.mask.sum()), "volumes fitted": int(fitted.size), "regressors": design.shape[1],
            "max |residual difference| (%)": float(np.abs(ours64 - theirs).max()),
            "max |residual difference|, float32 output (%)": float(np.abs(ours - theirs).max()),
            "max |R² difference|": float(np.abs(r2_ours - r2_theirs).max()),
            "residual scale (SD, %)": float(theirs.std())}


def _cli(argv: list) -> None:
    from nmflow.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    if rc != 0:
        raise RuntimeError(f"nmflow {' '.join(map(str, argv))} failed:\n{err.getvalue()}")


def score(table: pd.DataFrame, planted: pd.DataFrame) -> dict[str, float]:
    """Recall and false-discovery proportion of the FDR-significant connections against the planted ones."""
    case = set(planted.loc[planted.kind == "case", "name"])
    common = set(planted.loc[planted.kind == "common", "name"])
    significant = set(table.loc[table.significant.astype(bool), "connection"])
    return {"recall": len(case & significant) / len(case), "false": len(significant - case),
            "discoveries": len(significant), "fdp": len(significant - case) / max(len(significant), 1),
            "common flagged": len(common & significant),
            "median |Z-CC| planted": float(np.median(np.abs(table.set_index("connection").loc[sorted(case), "z_cc"])))}


def voxel_level(out: Path, planted: pd.DataFrame) -> dict[str, str]:
    """Seeds with FDR-significant voxels: the patient's planted networks, its other networks, the controls'."""
    patient_networks = set(planted.loc[planted.kind == "case", ["i", "j"]].to_numpy().ravel())
    flagged = {}
    for path in sorted(out.glob("sub-*/func/*_desc-deltafdr_stat-z_statmap.nii.gz")):
        maps = np.asarray(nib.load(path).dataobj)
        flagged[path.name[:6]] = (maps.reshape(-1, maps.shape[-1]) != 0).any(axis=0)
    patient = flagged.pop(max(flagged))  # the patient is the last subject
    others = sorted(set(range(patient.size)) - patient_networks)
    controls = np.mean([f.mean() for f in flagged.values()])
    return {"seeds planted (patient)": f"{int(patient[sorted(patient_networks)].sum())}/{len(patient_networks)}",
            "seeds other (patient)": f"{int(patient[others].sum())}/{len(others)}",
            "seeds (controls)": f"{100 * controls:.1f} %"}


def pipeline_study(seed: int, root: Path) -> pd.DataFrame:
    """One simulated study through both workflows; one row per metric."""
    from nmflow.simulate.prepost import PrepostSimulationSettings, simulate_prepost_dataset

    data, out = root / f"study{seed}" / "fmriprep", root / f"study{seed}" / "out"
    truth = simulate_prepost_dataset(data, PrepostSimulationSettings(seed=seed))
    simulated = time.perf_counter()
    _cli([data, out, "participant", "--analysis", "prepost", "--atlas-dir", truth / "atlases", "-w",
          root / f"study{seed}" / "work"])
    participant = time.perf_counter()
    _cli([data, out, "group", "--analysis", "prepost"])
    done = time.perf_counter()
    planted = pd.read_csv(truth / "planted_changes.tsv", sep="\t")
    voxels = voxel_level(out, planted)
    rows = []
    for path in sorted((out / "group").glob("*_singlecase.tsv")):
        table = pd.read_csv(path, sep="\t")
        rows.append({"seed": seed, "metric": path.name.split("meas-")[1].split("_")[0], **score(table, planted),
                     **voxels, "participant s (21 runs)": round(participant - simulated, 1),
                     "group s": round(done - participant, 1)})
    return pd.DataFrame(rows)


def network_study(seed: int) -> dict[str, float]:
    """The same test on the simulator's network signals only (no voxels, no GLM), Pearson."""
    from nmflow.group.features import FeatureSet, Variant
    from nmflow.participant.connectivity import connection_names, upper_triangle
    from nmflow.prepost.change import delta_fc, segment_fc
    from nmflow.prepost.singlecase import single_case_changes
    from nmflow.simulate.prepost import PrepostSimulationSettings, network_timeseries, plant_study

    settings = PrepostSimulationSettings(seed=seed)
    rng = np.random.default_rng(seed)
    groups = ["control"] * settings.n_controls + ["patient"]
    study = plant_study(17, groups, settings, rng)
    ts = network_timeseries(study, settings, rng)
    pre, post = settings.segments()
    deltas = [upper_triangle(delta_fc(segment_fc(x[pre], ("pearson",))["pearson"],
                                      segment_fc(x[post], ("pearson",))["pearson"])) for x in ts]
    regions = [f"N{k}" for k in range(1, 18)]
    ids = [f"{k + 1:02d}" for k in range(len(groups))]
    fs = FeatureSet(Variant("toy", None, "delta", "pearson"), ids, regions, np.array(deltas), [1] * len(ids))
    table = single_case_changes(fs, ids[-1:], ids[:-1], pd.Series(dict(zip(ids, groups))))
    planted = study.changes.assign(name=[connection_names(regions)[k] for k in study.changes.connection])
    return {"seed": seed, **score(table, planted)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="studies through the workflows")
    parser.add_argument("--network-seeds", type=int, default=20, help="network-level studies (seeds 100...)")
    parser.add_argument("--keep", type=Path, help="keep the simulated studies and outputs here")
    args = parser.parse_args(argv)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print("1. Crawford-Howell: published worked values\n")
    print(worked_values().to_string(index=False))
    with tempfile.TemporaryDirectory(prefix="nmflow_prepost_") as scratch:
        root = args.keep or Path(scratch)
        tables = [pipeline_study(seed, root) for seed in args.seeds]
        print("\n2. GLM vs nilearn FirstLevelModel (ols, signal_scaling=0, same design and sample mask; "
              f"the patient of seed {args.seeds[0] if args.seeds else 0})\n")
        if not args.seeds:
            from nmflow.simulate.prepost import PrepostSimulationSettings, simulate_prepost_dataset

            simulate_prepost_dataset(root / "study0" / "fmriprep", PrepostSimulationSettings(seed=0))
        first = args.seeds[0] if args.seeds else 0
        for key, value in glm_against_nilearn(root / f"study{first}" / "fmriprep").items():
            print(f"  {key}: {value:.3g}" if isinstance(value, float) else f"  {key}: {value}")
    if tables:
        per_study = pd.concat(tables, ignore_index=True)
        print("\n3a. Through both workflows: 20 controls + 1 patient, 4 planted patient changes of 6 SD, 3 common "
              "changes, FDR q < 0.05\n")
        print(per_study.to_string(index=False))
        pooled = per_study.groupby("metric").agg(recall=("recall", "mean"), min_recall=("recall", "min"),
                                                 false=("false", "sum"), discoveries=("discoveries", "sum"),
                                                 max_fdp=("fdp", "max"), common_flagged=("common flagged", "sum"))
        pooled["pooled fdp"] = pooled["false"] / pooled["discoveries"].clip(lower=1)
        print(f"\nper metric over {len(args.seeds)} studies:\n{pooled.to_string()}")
    if args.network_seeds:
        studies = []
        for k in range(args.network_seeds):
            try:
                studies.append(network_study(100 + k))
            except NmflowInputError as exc:  # the simulator could not plant the layout for this seed
                print(f"seed {100 + k}: {exc}")
        network = pd.DataFrame(studies)
        print(f"\n3b. Network level only (no voxels, no GLM), Pearson, {len(network)} studies: recall mean "
              f"{network.recall.mean():.3f} (min {network.recall.min():.2f}), FDP mean {network.fdp.mean():.3f} "
              f"(max {network.fdp.max():.2f}), pooled FDP {network.false.sum() / max(network.discoveries.sum(), 1):.3f},"
              f" common changes flagged {int(network['common flagged'].sum())}, median |Z-CC| of planted "
              f"{network['median |Z-CC| planted'].median():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
