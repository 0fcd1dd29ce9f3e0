"""Group-level figures on feature-level simulated cohorts (python benchmarks/group.py).

Cohorts come from ``tests/group_helpers.make_cohort`` (nmflow.simulate.networks:
control FC, planted effects, site artefact; the ``none`` strategy adds a motion
artefact).  Prints: planted-connection recovery (autoencoder vs Gaussian
baseline), ComBat site accuracy, variant selection, fine-tuning, determinism,
and the speed of the selection grid against a one-model-at-a-time loop.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from group_helpers import group_args, make_cohort, write_tree  # noqa: E402

from nmflow.connectivity import CORRELATION_METRICS, METRICS, connectivity, fisher_z, upper_triangle  # noqa: E402
from nmflow.features import split_controls  # noqa: E402
from nmflow.harmonize import harmonize, site_accuracy  # noqa: E402
from nmflow.normative.deviations import reconstruction_error  # noqa: E402
from nmflow.normative.model import TrainConfig, fit_scaler, model_from_result, train_models  # noqa: E402
from nmflow.selection import bootstrap_weights, select_variants  # noqa: E402
from nmflow.workflows.group import run_group  # noqa: E402

VARIANT = "atlas-Yeo2011_seg-17nThick_desc-simple_meas-pearson"


def auc(score, truth):
    pos, neg = score[truth], score[~truth]
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def recovery(root: Path, seeds=range(8)) -> None:
    print("## Planted connections (80 controls / 2 sites, 2 disorders x 25, Yeo-17; held-out reference 24)")
    print("recall and FDP at q < 0.05 over all flagged (group, connection) pairs of both disorders; "
          "AUC per disorder")
    print("seed score    model        AUC(A)  AUC(B)  recall  FDP   n_flagged shared")
    summary = []
    for seed in seeds:
        cohort = make_cohort(n_controls=80, motion=1.0, seed=seed)
        for score in ("absolute", "signed"):
            out = root / f"rec{seed}{score}"
            write_tree(cohort, out / "out", out / "bids", strategies=("simple",))
            with contextlib.redirect_stdout(io.StringIO()):
                run_group(group_args(out / "bids", out / "out", "--n-bootstrap", "0", "--covariates", "age", "sex",
                                     "--test-score", score))
            stats = pd.read_csv(out / "out" / "group" / f"{VARIANT}_stats.tsv", sep="\t")
            for model, s in stats.groupby("model"):
                aucs, tp, fp, n_planted = [], 0, 0, 0
                for group, g in s.groupby("group"):
                    truth = np.isin(g.connection, cohort.planted.connection[cohort.planted.group == group])
                    f = g.flagged.to_numpy()
                    aucs.append(auc(-np.log10(g.p.to_numpy()), truth))
                    tp, fp, n_planted = tp + (f & truth).sum(), fp + (f & ~truth).sum(), n_planted + truth.sum()
                recall, fdp = tp / n_planted, fp / max(tp + fp, 1)
                planted_shared = set(cohort.planted.connection[cohort.planted.kind == "shared"])
                called = s[s.flagged & (s.sharing == "shared")].connection
                shared = len(planted_shared & set(called))
                summary.append((score, model, min(aucs), recall, fdp, shared))
                print(f"{seed:4d} {score:8s} {model:12s} {aucs[0]:.3f}   {aucs[1]:.3f}  {recall:6.2f} {fdp:5.2f} "
                      f"{tp + fp:5d}      {shared}/4")
    table = pd.DataFrame(summary, columns=["score", "model", "auc", "recall", "fdp", "shared"])
    print("\nover seeds: min AUC, recall min/mean, FDP mean/max, seeds with recall >= 0.8 and FDP <= 0.1, "
          "planted shared connections reported shared")
    for (score, model), t in table.groupby(["score", "model"], sort=False):
        ok = ((t.recall >= 0.8) & (t.fdp <= 0.1)).sum()
        print(f"{score:8s} {model:12s} AUC >= {t.auc.min():.3f}  recall {t.recall.min():.2f}/{t.recall.mean():.2f}  "
              f"FDP {t.fdp.mean():.3f}/{t.fdp.max():.2f}  both targets met in {ok}/{len(t)} seeds  "
              f"shared {t.shared.sum()}/{4 * len(t)}")


def combat() -> None:
    print("\n## ComBat (fit on training controls; site classifier fit on training, scored on held-out controls)")
    for seed in (0, 1, 2):
        cohort = make_cohort(n_controls=80, motion=0.0, site_strength=0.8, seed=seed)
        s = cohort.subjects
        table = s.set_index(s.participant_id.str[4:])
        split = split_controls(table, "control", 0.5, 0.2, seed).to_numpy()
        x = cohort.features["simple"]
        train = split == "train"
        out, _, _ = harmonize(x, s.site.to_numpy(), s[["age", "sex"]], train)
        ctrl = split != "patient"
        before, chance = site_accuracy(x[ctrl], s.site[ctrl], train[ctrl])
        after, _ = site_accuracy(out[ctrl], s.site[ctrl], train[ctrl])
        print(f"seed {seed}: site accuracy before {before:.2f}, after {after:.2f}, chance {chance:.2f}")


def grid_features(n_controls: int = 100):
    cohort = make_cohort(n_controls=n_controls, motion=1.0, seed=5, keep_timeseries=True)
    strategies = {"none": 1.0, "scrubbing": 0.4, "compcor": 0.25, "gsr": 0.1, "simple": 0.0}
    data = {}
    for name, level in strategies.items():
        for metric in METRICS:
            feats = []
            for clean, dirty in zip(cohort.timeseries["simple"], cohort.timeseries["none"]):
                fc = upper_triangle(connectivity(clean + level * (dirty - clean), metric))
                feats.append(fisher_z(fc) if metric in CORRELATION_METRICS else fc)
            data[f"desc-{name}_meas-{metric}"] = np.array(feats)
    return cohort, data


def selection_and_speed() -> None:
    print("\n## Selection grid: 5 strategies x 6 metrics = 30 variants x 20 bootstrap models, 100 controls")
    cohort, raw = grid_features()
    table = cohort.subjects.set_index(cohort.subjects.participant_id.str[4:])
    split = split_controls(table, "control", 0.5, 0.2, 0).to_numpy()
    data = {}
    for label, x in raw.items():
        mean, scale = fit_scaler(x[split == "train"])
        data[label] = (x - mean) / scale
    config = TrainConfig()
    start = time.perf_counter()
    ranking = select_variants(data, table.group.to_numpy(), split, "control", 20, config)
    batched = time.perf_counter() - start
    print(ranking.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"batched selection (training + scoring + statistics): {batched:.1f} s")
    fit = np.isin(split, ["train", "val"])
    wt = bootstrap_weights(split[fit] == "train", 20, np.random.default_rng(0))
    wv = (split[fit] == "val").astype(float)[None]
    labels = list(data)[:3]
    start = time.perf_counter()
    for label in labels:
        train_models(data[label][fit], wt, np.repeat(wv, 20, 0), config)
    stacked = time.perf_counter() - start
    start = time.perf_counter()
    for label in labels:
        for b in range(20):
            train_models(data[label][fit], wt[b:b + 1], wv, config, seeds=[config.seed + b])
    loop = time.perf_counter() - start
    print(f"training only, {len(labels)} variants x 20 models: stacked {stacked:.1f} s, one-at-a-time loop "
          f"{loop:.1f} s, ratio {loop / stacked:.1f}x")


def fine_tuning() -> None:
    print("\n## Fine-tuning (train on sites A+B, new site C with a strong site artefact)")
    cohort = make_cohort(n_controls=120, n_sites=3, site_strength=1.2, motion=0.0, seed=7)
    s = cohort.subjects
    x = cohort.features["simple"]
    ctrl = (s.group == "control").to_numpy()
    site_c = (s.site == "siteC").to_numpy()
    idx_old = np.flatnonzero(ctrl & ~site_c)
    idx_new = np.flatnonzero(ctrl & site_c)
    old_train, old_val = idx_old[: int(0.75 * len(idx_old))], idx_old[int(0.75 * len(idx_old)):]
    new_train, new_val, new_test = idx_new[:16], idx_new[16:24], idx_new[24:]
    mean, scale = fit_scaler(x[old_train])
    z = (x - mean) / scale

    def weights(rows):
        w = np.zeros((1, len(x)))
        w[0, rows] = 1
        return w

    base_res = train_models(z, weights(old_train), weights(old_val), TrainConfig())
    base = model_from_result(base_res, 0, mean, scale, {})
    tuned_res = train_models(z, weights(new_train), weights(new_val), TrainConfig(lr=1e-3), init=base.stacked())
    tuned = model_from_result(tuned_res, 0, mean, scale, {})
    before = reconstruction_error(base, x[new_test]).mean()
    after = reconstruction_error(tuned, x[new_test]).mean()
    print(f"held-out site-C controls (n={len(new_test)}): mean abs error un-tuned {before:.3f}, "
          f"fine-tuned {after:.3f} ({100 * (after - before) / before:+.1f} %)")


def determinism(root: Path) -> None:
    print("\n## Determinism (two full group runs, 2 variants, 5 bootstrap models)")
    cohort = make_cohort(n_controls=60, patients=(("disorderA", 20), ("disorderB", 20)), motion=1.0)
    write_tree(cohort, root / "det" / "out", root / "det" / "bids")
    digests = []
    for k in range(2):
        out = root / f"det{k}"
        shutil.copytree(root / "det" / "out", out)
        run_group(group_args(root / "det" / "bids", out, "--n-bootstrap", "5"))
        files = sorted(p for p in (out / "group").iterdir() if p.suffix in (".tsv", ".safetensors"))
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    print(f"{len(digests[0])} TSV/safetensors files; identical: {digests[0] == digests[1]}")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="nmflow_bench_group_"))
    try:
        recovery(root)
        combat()
        selection_and_speed()
        fine_tuning()
        determinism(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
