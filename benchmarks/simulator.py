"""Realism of the simulator: real control FC (ABIDE development subset) against simulated cohorts.

``python benchmarks/simulator.py`` prints :func:`realism_table`; other benchmarks can
import it (``sys.path`` to this folder, ``from simulator import realism_table``).

Same protocol for every column, controls only, Fisher-z Pearson FC features:

* median within-site SD: median over (site, connection) of the SD (ddof 1) across controls;
* site-means SD ratio: median over connections of the SD of the site means, over the above;
* PC1 / 10 PCs: variance fraction of the leading principal components of the within-site-centred features;
* site accuracy: logistic regression on standardised features, stratified 5-fold CV (shuffled, seed 0);
* mean r: mean of tanh(z).

Connections missing (constant regions) in more than 20 % of the real controls are dropped; other
missing values count as the site mean (centred features) or the column mean (classifier).
Planted effects: realised Cohen's d on a separate large simulated cohort (300 controls and 300 per
disorder, 2 sites) against the target d.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.group import make_cohort  # noqa: E402

from nmflow.simulate.population import cohens_d  # noqa: E402

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "abide-dev"


def realism_metrics(features: np.ndarray, sites: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The realism figures of control features ``(n_subjects, n_features)`` with their ``sites``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sites = np.asarray(sites)
    df = pd.DataFrame(features)
    within = float(np.nanmedian(df.groupby(sites).std().to_numpy()))
    site_sd = float(np.median(df.groupby(sites).mean().std()))
    centred = (df - df.groupby(sites).transform("mean")).fillna(0).to_numpy()
    power = np.linalg.svd(centred - centred.mean(axis=0), compute_uv=False) ** 2
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    n_folds = min(5, int(pd.Series(sites).value_counts().min()))
    acc = cross_val_score(clf, df.fillna(df.mean()).to_numpy(), sites,
                          cv=StratifiedKFold(n_folds, shuffle=True, random_state=seed)).mean()
    return {
        "median within-site SD": within,
        "site-means SD / within-site SD": site_sd / within,
        "PC1 fraction": float(power[0] / power.sum()),
        "10 PCs fraction": float(power[:10].sum() / power.sum()),
        "site accuracy": float(acc),
        "n sites (chance)": f"{len(set(sites))} ({1 / len(set(sites)):.2f})",
        "mean r": float(np.nanmean(np.tanh(features))),
    }


def real_controls(root: Path = REAL) -> tuple[np.ndarray, np.ndarray]:
    """Fisher-z Pearson FC ``(n_controls, n_features)`` of the real controls and their sites."""
    table = pd.read_csv(root / "participants.tsv", sep="\t")
    table = table[table.group == "control"]
    series = np.load(root / "ho_timeseries_f16.npz")
    feats = []
    for pid in table.participant_id:
        x = series[pid].astype(float)
        with np.errstate(all="ignore"):
            r = np.corrcoef(x, rowvar=False)
        rows, cols = np.triu_indices(r.shape[0], 1)
        feats.append(np.arctanh(np.clip(r[rows, cols], -1 + 1e-7, 1 - 1e-7)))
    feats = np.array(feats)
    keep = np.isnan(feats).mean(axis=0) <= 0.2
    return feats[:, keep], table.site.to_numpy()


def planted_d(seed: int = 0, n: int = 300, effect_d: float = 1.0) -> pd.DataFrame:
    """Target vs realised Cohen's d of the planted connections on a large simulated cohort."""
    cohort = make_cohort(n_controls=n, patients=(("disorderA", n), ("disorderB", n)), motion=0, seed=seed,
                         effect_d=effect_d, estimate_d=False)
    s = cohort.subjects
    x = cohort.features["simple"]
    rows = []
    for group in ("disorderA", "disorderB"):
        d = cohens_d(x, s.group.to_numpy(), s.site.to_numpy(), group)
        planted = cohort.planted[cohort.planted.group == group]
        other = np.setdiff1d(np.arange(x.shape[1]), np.concatenate([planted.connection, cohort.covariates.connection]))
        for row in planted.itertuples():
            rows.append({"group": group, "connection": row.connection, "kind": row.kind, "d_target": row.d,
                         "d_realised": d[row.connection]})
        rows.append({"group": group, "connection": -1, "kind": "unplanted mean |d|", "d_target": 0.0,
                     "d_realised": float(np.abs(d[other]).mean())})
    return pd.DataFrame(rows)


def realism_table(seed: int = 0, real_root: Path = REAL) -> pd.DataFrame:
    """Real vs simulated realism figures (rows) for the real controls and two simulated cohorts (columns).

    Simulated: ``make_cohort`` controls, Yeo-17, 200 volumes, default population constants;
    60 controls over 2 sites, and 266 controls over 14 sites (the real cohort's size).
    The last rows summarise the planted effects (:func:`planted_d`).
    """
    columns = {}
    if (real_root / "participants.tsv").exists():
        columns["real (ABIDE, 266 controls, 14 sites, 111 regions)"] = realism_metrics(*real_controls(real_root))
    for n_controls, n_sites in [(60, 2), (266, 14)]:
        cohort = make_cohort(n_controls=n_controls, patients=(), n_sites=n_sites, motion=0, seed=seed,
                             estimate_d=False)
        columns[f"simulated ({n_controls} controls, {n_sites} sites, Yeo-17)"] = realism_metrics(
            cohort.features["simple"], cohort.subjects.site.to_numpy())
    table = pd.DataFrame(columns)
    d = planted_d(seed)
    planted = d[d.connection >= 0]
    err = planted.d_realised - planted.d_target
    summary = {
        "planted: median |d| target": float(planted.d_target.abs().median()),
        "planted: median |d| realised": float(planted.d_realised.abs().median()),
        "planted: max |realised - target|": float(err.abs().max()),
        "unplanted: mean |d|": float(d[d.connection < 0].d_realised.mean()),
    }
    sim = table.columns[-2]
    for key, value in summary.items():
        table.loc[key, :] = ""
        table.loc[key, sim] = value
    return table


def main() -> None:
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)
    table = realism_table()
    cells = table.map(lambda v: f"{v:.3f}" if isinstance(v, float) else v)
    print("| figure | " + " | ".join(cells.columns) + " |")
    print("|---" * (len(cells.columns) + 1) + "|")
    for name, row in cells.iterrows():
        print(f"| {name} | " + " | ".join(row) + " |")
    print()
    print("Planted connections (300 controls and 300 per disorder, 2 sites):")
    print(planted_d().round(3).to_string(index=False))


if __name__ == "__main__":
    main()
