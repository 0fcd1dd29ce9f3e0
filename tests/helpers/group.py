"""Feature-level cohorts for the group-level tests and benchmark (no images).

Subjects come from the simulator's population model (``nmflow.simulate.population``):
a subject-specific true correlation around its group matrix (control or a patient
group with planted effects given as Cohen's d), a subject-level global signal, age
and sex effects on a few connections, and a site signal with site-specific loadings.
Time series are sampled from it; for the ``none`` strategy a subject-specific motion
artefact (a shared spiky signal whose amplitude varies between subjects) is added,
which denoising would remove.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nmflow.participant.atlas import YEO_NAMES
from nmflow.participant.connectivity import connection_names
from nmflow.simulate import networks as net
from nmflow.simulate import population as pop


@dataclass
class Cohort:
    """``subjects`` (participant_id group site age sex), features per strategy
    ``(n_subjects, n_features)`` (observed Fisher-z FC), planted truth table (group,
    connection, i, j, kind, delta, d, d_realised), region names, time series per strategy
    (lists of ``(n_volumes, n_networks)``, filled with ``keep_timeseries``),
    ``true_features`` ``(n_subjects, n_features)`` (Fisher z of each subject's true
    correlation, without the site artefact), covariate effects table and the model."""

    subjects: pd.DataFrame
    features: dict[str, np.ndarray]
    planted: pd.DataFrame
    regions: list[str]
    timeseries: dict[str, list[np.ndarray]]
    true_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    covariates: pd.DataFrame = field(default_factory=pd.DataFrame)
    model: pop.PopulationModel | None = None
    fd: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def names(self) -> list[str]:
        return connection_names(self.regions)


def make_cohort(n_controls: int = 80, patients: tuple = (("disorderA", 25), ("disorderB", 25)),
                n_sites: int = 2, n_volumes: int = 200, site_strength: float = pop.PopulationParams.site_strength,
                motion: float = 1.5, n_networks: int = 17, seed: int = 0,
                keep_timeseries: bool = False, effect: float | None = None, effect_d: float = 1.0,
                n_specific: int = 6, n_shared: int = 2, estimate_d: bool = True) -> Cohort:
    """Simulate the cohort; strategies ``none`` (motion artefact) and ``simple`` (clean).

    ``effect_d`` is the median subject-level Cohen's d of a planted connection (observed
    Fisher-z feature, relative to the controls' within-site SD); ``effect`` (a change of
    correlation) switches to the delta mode. ``site_strength`` is the SD of the site loadings.
    """
    rng = np.random.default_rng(seed)
    groups = ["control"] * n_controls + [g for g, n in patients for _ in range(n)]
    n_sub = len(groups)
    sites = [f"site{chr(65 + k % n_sites)}" for k in range(n_sub)]
    control = net.control_correlation(n_networks, rng)
    model = pop.build_population(control, [g for g, _ in patients], sites, rng, effect_d=effect_d, effect=effect,
                                 n_specific=n_specific, n_shared=n_shared, n_volumes=n_volumes, tr=2.0,
                                 site_strength=site_strength, estimate_d=estimate_d)
    ages = np.round(rng.uniform(20, 70, n_sub), 1)
    sexes = rng.choice(["F", "M"], n_sub)
    draws = pop.draw_subjects(model, groups, ages, sexes, sites, rng)
    clean = pop.subject_timeseries(draws, n_volumes, 2.0, rng)
    spikes = rng.standard_normal((n_sub, n_volumes)) * (rng.random((n_sub, n_volumes)) < 0.15) * 4.0
    loading = motion * rng.lognormal(0, 0.5, (n_sub, 1)) * rng.uniform(0.2, 1.0, (n_sub, n_networks))
    dirty = clean + spikes[:, :, None] * loading[:, None, :]
    feats = {"none": pop.fisher_features(dirty), "simple": pop.fisher_features(clean)}
    series = {"none": list(dirty) if keep_timeseries else [], "simple": list(clean) if keep_timeseries else []}
    rows, cols = np.triu_indices(n_networks, 1)
    true_features = np.arctanh(np.clip(draws.true_fc[:, rows, cols], -1 + 1e-7, 1 - 1e-7))
    width = max(2, len(str(n_sub)))
    subjects = pd.DataFrame({
        "participant_id": [f"sub-{k + 1:0{width}d}" for k in range(n_sub)],
        "group": groups, "site": sites, "age": ages, "sex": sexes,
    })
    regions = YEO_NAMES[n_networks] if n_networks in YEO_NAMES else [f"R{k}" for k in range(n_networks)]
    fd = 0.05 + 0.1 * np.abs(spikes) * (0.5 + loading.mean(axis=1, keepdims=True))
    return Cohort(subjects, feats, model.planted, list(regions), series, true_features, model.covariates, model, fd)


def planted_mask(planted: pd.DataFrame, group: str, n_features: int) -> np.ndarray:
    """Boolean ``(n_features,)``: connections planted in ``group``."""
    mask = np.zeros(n_features, bool)
    mask[planted.loc[planted.group == group, "connection"].to_numpy()] = True
    return mask


def write_tree(cohort: Cohort, out_dir, bids_dir, strategies=("none", "simple"),
               atlas: dict | None = None, qc: bool = False) -> None:
    """Write participant-level relmats (pearson) of ``cohort`` and ``participants.tsv``; with ``qc`` also each
    subject's ``*_outliers.tsv`` per strategy (FD, first volume n/a, volumes above 0.5 mm censored) and a
    participant report for every subject but the last."""
    from pathlib import Path

    from nmflow.bids_io import derivative_path, write_relmat
    from nmflow.participant.connectivity import from_upper_triangle

    atlas = atlas or {"atlas": "Yeo2011", "segmentation": "17nThick"}
    n = len(cohort.regions)
    for strategy in strategies:
        for k, pid in enumerate(cohort.subjects.participant_id):
            ents = {"subject": pid[4:], "task": "rest", "space": "MNI152NLin6Asym", "res": "2",
                    **atlas, "desc": strategy, "meas": "pearson"}
            path = derivative_path(out_dir, ents, "relmat", ".tsv")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_relmat(path, from_upper_triangle(np.tanh(cohort.features[strategy][k]), n), cohort.regions)
            if qc:
                fd = cohort.fd[k].copy()
                fd[0] = np.nan
                outliers = derivative_path(out_dir, {"subject": pid[4:], "task": "rest", "desc": strategy},
                                           "outliers", ".tsv")
                pd.DataFrame({"framewise_displacement": fd, "censored": (np.nan_to_num(fd) > 0.5).astype(int)}
                             ).to_csv(outliers, sep="\t", index=False, na_rep="n/a")
    if qc:
        for pid in cohort.subjects.participant_id[:-1]:
            (Path(out_dir) / f"{pid}_task-rest.html").write_text("<!DOCTYPE html><title>participant</title>")
    Path(bids_dir).mkdir(parents=True, exist_ok=True)
    cohort.subjects.to_csv(Path(bids_dir) / "participants.tsv", sep="\t", index=False)


def group_args(bids_dir, out_dir, *extra: str):
    """Group-level settings as the CLI would give them (``nmflow BIDS_DIR OUT_DIR group *extra``)."""
    from nmflow.cli.common import read_plugin_args, settings_namespace
    from nmflow.cli.run import build_parser
    from nmflow.group.settings import GroupSettings

    args = build_parser().parse_args([str(bids_dir), str(out_dir), "group", *extra])
    return GroupSettings.from_namespace(settings_namespace(args, plugin_args=read_plugin_args(args.plugin_args)))
