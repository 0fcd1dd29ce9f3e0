"""Feature-level cohorts for the group-level tests and benchmark (no images).

Subjects get a true correlation (control or patient group with planted
effects) plus individual jitter; time series are sampled from it with a
site artefact (a site-specific shared signal), and for the ``none`` strategy
also a subject-specific motion artefact (a shared spiky signal whose
amplitude varies between subjects), which denoising would remove.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nmflow.atlas import YEO_NAMES
from nmflow.connectivity import connection_names, connectivity, fisher_z, upper_triangle
from nmflow.simulate import networks as net


@dataclass
class Cohort:
    """``subjects`` (participant_id group site age sex), features per strategy
    ``(n_subjects, n_features)``, planted truth table, region names, time series."""

    subjects: pd.DataFrame
    features: dict[str, np.ndarray]
    planted: pd.DataFrame
    regions: list[str]
    timeseries: dict[str, list[np.ndarray]]

    @property
    def names(self) -> list[str]:
        return connection_names(self.regions)


def make_cohort(n_controls: int = 80, patients: tuple = (("disorderA", 25), ("disorderB", 25)),
                n_sites: int = 2, n_volumes: int = 200, site_strength: float = 0.6,
                motion: float = 1.5, n_networks: int = 17, seed: int = 0,
                keep_timeseries: bool = False, effect: float = 0.35) -> Cohort:
    """Simulate the cohort; strategies ``none`` (motion artefact) and ``simple`` (clean)."""
    rng = np.random.default_rng(seed)
    groups = ["control"] * n_controls + [g for g, n in patients for _ in range(n)]
    n_sub = len(groups)
    control = net.control_correlation(n_networks, rng)
    planted = net.plant_effects(control, [g for g, _ in patients], rng, delta=effect)
    sites = [f"site{chr(65 + k % n_sites)}" for k in range(n_sub)]
    site_w = {s: site_strength * rng.uniform(0.2, 1.0, n_networks) * rng.choice([-1, 1], n_networks)
              for s in sorted(set(sites))}
    feats = {"none": [], "simple": []}
    series = {"none": [], "simple": []}
    for k in range(n_sub):
        corr = net.subject_correlation(planted.group_corr[groups[k]], rng)
        ts = net.correlated_timeseries(corr, n_volumes, 2.0, rng)
        ts = ts + site_w[sites[k]] * net.bandlimited_noise(n_volumes, 1, 2.0, rng)
        artefact = rng.standard_normal(n_volumes) * (rng.random(n_volumes) < 0.15) * 4.0
        loading = motion * rng.lognormal(0, 0.5) * rng.uniform(0.2, 1.0, n_networks)
        for name, data in (("simple", ts), ("none", ts + artefact[:, None] * loading)):
            feats[name].append(fisher_z(upper_triangle(connectivity(data, "pearson"))))
            if keep_timeseries:
                series[name].append(data)
    width = max(2, len(str(n_sub)))
    subjects = pd.DataFrame({
        "participant_id": [f"sub-{k + 1:0{width}d}" for k in range(n_sub)],
        "group": groups, "site": sites,
        "age": np.round(rng.uniform(20, 70, n_sub), 1), "sex": rng.choice(["F", "M"], n_sub),
    })
    regions = YEO_NAMES[n_networks] if n_networks in YEO_NAMES else [f"R{k}" for k in range(n_networks)]
    return Cohort(subjects, {k: np.array(v) for k, v in feats.items()}, planted.table,
                  list(regions), series)


def planted_mask(planted: pd.DataFrame, group: str, n_features: int) -> np.ndarray:
    """Boolean ``(n_features,)``: connections planted in ``group``."""
    mask = np.zeros(n_features, bool)
    mask[planted.loc[planted.group == group, "connection"].to_numpy()] = True
    return mask


def write_tree(cohort: Cohort, out_dir, bids_dir, strategies=("none", "simple"),
               atlas: dict | None = None) -> None:
    """Write participant-level relmats (pearson) of ``cohort`` and ``participants.tsv``."""
    from pathlib import Path

    from nmflow.bids_io import derivative_path, write_relmat
    from nmflow.connectivity import from_upper_triangle

    atlas = atlas or {"atlas": "Yeo2011", "segmentation": "17nThick"}
    n = len(cohort.regions)
    for strategy in strategies:
        for k, pid in enumerate(cohort.subjects.participant_id):
            ents = {"subject": pid[4:], "task": "rest", "space": "MNI152NLin6Asym", "res": "2",
                    **atlas, "desc": strategy, "meas": "pearson"}
            path = derivative_path(out_dir, ents, "relmat", ".tsv")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_relmat(path, from_upper_triangle(np.tanh(cohort.features[strategy][k]), n), cohort.regions)
    Path(bids_dir).mkdir(parents=True, exist_ok=True)
    cohort.subjects.to_csv(Path(bids_dir) / "participants.tsv", sep="\t", index=False)


def group_args(bids_dir, out_dir, *extra: str):
    """Parsed group-level arguments as the CLI would give them."""
    import argparse

    from nmflow.cli.group_options import add_group_arguments

    parser = argparse.ArgumentParser()
    parser.add_argument("bids_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--metrics", nargs="+", default=["pearson"])
    parser.add_argument("--participant-label", nargs="+")
    add_group_arguments(parser)
    return parser.parse_args([str(bids_dir), str(out_dir), *extra])
