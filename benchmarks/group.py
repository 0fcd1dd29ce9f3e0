"""Group-level figures on the realistic simulator (python benchmarks/group.py).

Cohorts come from ``tests/helpers.group.make_cohort`` (the simulator's population
model, whose between-subject, global and site variability is calibrated on real
control FC: ``benchmarks/simulator.py``).  Prints: the realism table; planted-
connection recovery for the default model (cross-fitted conditional autoencoder,
signed deviations), the covariate-aware linear baseline, a plain Mann-Whitney test
of the observed features and the oracle (the same test on the subjects' true FC) at
median d = 0.5, 0.8, 1.0, 1.2; ComBat site accuracy; the speed of cross-fitting +
selection on 30 variants against a one-model-at-a-time loop; determinism.
Real-data figures: ``benchmarks/realdata.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from helpers.group import group_args, make_cohort, write_tree  # noqa: E402

from nmflow.participant.connectivity import METRICS, connectivity, fisher_z, is_correlation, upper_triangle  # noqa: E402
from nmflow.group.features import FeatureSet, Variant  # noqa: E402
from nmflow.normative.harmonize import harmonize, site_accuracy  # noqa: E402
from nmflow.normative.config import TrainConfig  # noqa: E402
from nmflow.normative.crossfit import make_folds  # noqa: E402
from nmflow.normative.model import train_models  # noqa: E402
from nmflow.group.stats import group_statistics  # noqa: E402
from nmflow.workflows.group import run_group  # noqa: E402

VARIANT = "atlas-Yeo2011_seg-17nThick_desc-simple_meas-pearson"
PATIENTS = (("disorderA", 20), ("disorderB", 20))


def auc(score: np.ndarray, truth: np.ndarray) -> float:
    pos, neg = score[truth], score[~truth]
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def realism() -> None:
    from simulator import realism_table

    print("## Simulator vs real control FC (benchmarks/simulator.py)")
    print(realism_table().to_string(float_format=lambda v: f"{v:.3f}"))


def _scores(stats: pd.DataFrame, planted: pd.DataFrame) -> list[dict]:
    rows = []
    for (model, group), s in stats.groupby(["model", "group"]):
        truth = np.isin(s.connection, planted.connection[planted.group == group])
        flagged = s.flagged.to_numpy()
        shared = set(planted.connection[planted.kind == "shared"])
        rows.append({"model": model, "group": group, "auc": auc(-np.log10(s.p.to_numpy()), truth),
                     "recall": (flagged & truth).sum() / truth.sum(),
                     "fdp": (flagged & ~truth).sum() / max(flagged.sum(), 1),
                     "shared_called_shared": int(((s.sharing == "shared") & s.connection.isin(shared)).sum())})
    return rows


def recovery(root: Path, effects=(0.5, 0.8, 1.0, 1.2), seeds=range(8)) -> None:
    print("\n## Planted connections: 60 controls / 2 sites, 2 disorders x 20, 8 planted of 136 per disorder "
          "(6 specific + 2 shared), q < 0.05")
    print("autoencoder = default (5-fold cross-fitted conditional autoencoder, signed z, age+sex, ComBat); "
          "linear = covariate-aware baseline; plain = Mann-Whitney of the observed features vs controls; "
          "oracle = the same test on the subjects' true FC")
    rows = []
    for d in effects:
        for seed in seeds:
            cohort = make_cohort(n_controls=60, patients=PATIENTS, motion=1.0, seed=seed, effect_d=d,
                                 estimate_d=False)
            out = root / f"rec{d}_{seed}"
            write_tree(cohort, out / "out", out / "bids", strategies=("simple",))
            with contextlib.redirect_stdout(io.StringIO()):
                run_group(group_args(out / "bids", out / "out", "--n-bootstrap", "0", "--covariates", "age", "sex"))
            stats = pd.read_csv(out / "out" / "group" / f"{VARIANT}_stats.tsv", sep="\t")
            groups = cohort.subjects.group.to_numpy()
            for name, x in (("oracle", cohort.true_features), ("plain", cohort.features["simple"])):
                stats = pd.concat([stats, group_statistics(x, groups, "control", cohort.names).assign(model=name)])
            rows += [dict(r, d=d, seed=seed) for r in _scores(stats, cohort.planted)]
            shutil.rmtree(out)
    table = pd.DataFrame(rows)
    summary = table.groupby(["d", "model"], sort=False).agg(
        auc_min=("auc", "min"), recall_mean=("recall", "mean"), recall_min=("recall", "min"),
        fdp_mean=("fdp", "mean"), fdp_max=("fdp", "max"),
        targets_met=("recall", lambda r: int(((r >= 0.8) & (table.loc[r.index, "fdp"] <= 0.1)).sum())),
        cases=("recall", "size"))
    print("per disorder x seed (8 seeds x 2 disorders = 16 cases); targets: recall >= 0.8 and FDP <= 0.1")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    ae = table[(table.model == "autoencoder") & (table.d == 1.0)]
    print(f"d = 1: planted shared connections reported shared in both groups: "
          f"{ae.shared_called_shared.sum() // 2} of {len(ae)}")


def combat() -> None:
    print("\n## ComBat (fit on 60 % of the controls; site classifier fit on them, scored on the other controls)")
    for seed in (0, 1, 2):
        cohort = make_cohort(n_controls=80, motion=0.0, seed=seed, estimate_d=False)
        s = cohort.subjects
        x = cohort.features["simple"]
        controls = (s.group == "control").to_numpy()
        train = controls & (np.arange(len(x)) % 10 < 6)
        out, _, _ = harmonize(x, s.site.to_numpy(), s[["age", "sex"]], train)
        before, chance = site_accuracy(x[controls], s.site[controls], train[controls])
        after, _ = site_accuracy(out[controls], s.site[controls], train[controls])
        print(f"seed {seed}: site accuracy before {before:.2f}, after {after:.2f}, chance {chance:.2f}")


def grid_sets(n_controls: int = 100) -> tuple[dict, pd.DataFrame]:
    """30 variants (5 strategies x 6 metrics) from one cohort's clean and motion-corrupted signals."""
    cohort = make_cohort(n_controls=n_controls, patients=PATIENTS, motion=1.0, seed=5, keep_timeseries=True,
                         estimate_d=False)
    strategies = {"none": 1.0, "scrubbing": 0.4, "compcor": 0.25, "gsr": 0.1, "simple": 0.0}
    subjects = [p[4:] for p in cohort.subjects.participant_id]
    sets = {}
    for name, level in strategies.items():
        for metric in METRICS:
            feats = np.array([upper_triangle(connectivity(clean + level * (dirty - clean), metric))
                              for clean, dirty in zip(cohort.timeseries["simple"], cohort.timeseries["none"])])
            variant = Variant("Yeo2011", "17nThick", name, metric)
            sets[variant] = FeatureSet(variant, subjects, cohort.regions, feats, [1] * len(subjects))
    table = cohort.subjects.set_index(pd.Index(subjects))
    return sets, table


def write_sets(sets: dict, table: pd.DataFrame, out_dir: Path, bids_dir: Path) -> None:
    """Participant-level relmats of every variant of ``sets`` and ``participants.tsv``."""
    from nmflow.bids_io import derivative_path, write_relmat
    from nmflow.participant.connectivity import from_upper_triangle

    for variant, fs in sets.items():
        for subject, feats in zip(fs.subjects, fs.features):
            ents = {"subject": subject, "task": "rest", "atlas": variant.atlas, "segmentation": variant.seg,
                    "desc": variant.desc, "meas": variant.meas}
            path = derivative_path(out_dir, ents, "relmat", ".tsv")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_relmat(path, from_upper_triangle(feats, len(fs.regions)), fs.regions)
    bids_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(bids_dir / "participants.tsv", sep="\t", index=False)


def speed(root: Path) -> None:
    print("\n## Group workflow: cross-fitting (5 folds + final model) + selection (10 bootstrap models) on 30 "
          "variants, 100 controls + 40 patients")
    sets, table = grid_sets()
    folds = make_folds(table, "control", 5, 0.2, 0)
    write_sets(sets, table, root / "speed" / "out", root / "speed" / "bids")
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        run_group(group_args(root / "speed" / "bids", root / "speed" / "out", "--covariates", "age", "sex",
                             "-w", str(root / "speed" / "work")))
    total = time.perf_counter() - start
    print(f"30 variants, {30 * (folds.n_fits + 1 + 10)} autoencoders trained and every statistic computed and "
          f"written in {total:.1f} s (the previous split-sample selection grid, 30 variants x 20 models, took 35 s "
          f"on this machine: ratio {total / 35:.2f}, target <= 2)")
    ranking = pd.read_csv(root / "speed" / "out" / "group" / "selection.tsv", sep="\t")
    print(ranking[["variant", "stability", "frac_abs_z_gt_1.96", "z_excess_kurtosis", "explained_variance",
                   "qualifies", "rank"]].head(8).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("... last:", ", ".join(ranking.variant.tail(3)))
    config = TrainConfig()
    x = {v: fisher_z(fs.features) if is_correlation(v.meas) else fs.features for v, fs in sets.items()}
    labels = list(x)[:3]
    controls = (table.group == "control").to_numpy()
    z = {v: (x[v][controls] - x[v][controls].mean(0)) / x[v][controls].std(0) for v in labels}
    wt = np.array([folds.train[k][controls] for k in range(folds.n_fits)], float)
    wv = np.array([folds.val[k][controls] for k in range(folds.n_fits)], float)
    start = time.perf_counter()
    train_models(np.stack([z[v] for v in labels for _ in range(folds.n_fits)]), np.tile(wt, (3, 1)),
                 np.tile(wv, (3, 1)), config, seeds=list(range(folds.n_fits)) * 3)
    stacked = time.perf_counter() - start
    start = time.perf_counter()
    for v in labels:
        for k in range(folds.n_fits):
            train_models(z[v], wt[k:k + 1], wv[k:k + 1], config, seeds=[k])
    loop = time.perf_counter() - start
    print(f"training only, 3 variants x 5 folds: stacked {stacked:.1f} s, one-at-a-time loop {loop:.1f} s, "
          f"ratio {loop / stacked:.1f}x")


def determinism(root: Path) -> None:
    print("\n## Determinism (two full group runs, 2 variants, 10 bootstrap models)")
    cohort = make_cohort(n_controls=60, patients=PATIENTS, motion=1.0, estimate_d=False)
    write_tree(cohort, root / "det" / "out", root / "det" / "bids")
    digests = []
    for k in range(2):
        out = root / f"det{k}"
        shutil.copytree(root / "det" / "out", out)
        with contextlib.redirect_stdout(io.StringIO()):
            run_group(group_args(root / "det" / "bids", out, "--covariates", "age", "sex"))
        files = sorted(p for p in (out / "group").iterdir() if p.suffix in (".tsv", ".safetensors"))
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    print(f"{len(digests[0])} TSV/safetensors files; identical: {digests[0] == digests[1]}")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="nmflow_bench_group_"))
    try:
        realism()
        recovery(root)
        combat()
        speed(root)
        determinism(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
