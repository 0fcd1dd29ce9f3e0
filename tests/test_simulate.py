"""The simulator: planted truth is recoverable, denoising matters, output is deterministic."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from nmflow.atlas import resolve_atlas
from nmflow.connectivity import connectivity, fisher_z, upper_triangle
from nmflow.denoise import PRESETS, CleaningSettings, clean_run, read_confounds
from nmflow.parcellate import extract_signals
from nmflow.simulate import SimulationSettings, simulate_dataset
from nmflow.simulate.networks import control_correlation, nearest_correlation, plant_effects


@pytest.fixture(scope="module")
def controls(tmp_path_factory):
    out = tmp_path_factory.mktemp("truth") / "fmriprep"
    truth = simulate_dataset(out, SimulationSettings(n_controls=8, patients=(), n_volumes=150, seed=11,
                                                     site_strength=0.0))
    return out, truth


def _group_fc(out, truth, strategy):
    atlas = resolve_atlas("yeo17thick", truth / "atlases")
    fcs = []
    for func in sorted(out.glob("sub-*/func")):
        bold = next(func.glob("*preproc_bold.nii.gz"))
        raw = extract_signals(bold, next(func.glob("*brain_mask.nii.gz")), [atlas])
        cleaned = clean_run(raw.signals, read_confounds(next(func.glob("*confounds_timeseries.tsv"))),
                            2.0, PRESETS[strategy], CleaningSettings())
        fcs.append(fisher_z(upper_triangle(connectivity(cleaned.timeseries[atlas.name], "pearson"))))
    return np.mean(fcs, axis=0)


def test_denoised_fc_recovers_planted_control_fc_and_none_does_not(controls):
    out, truth = controls
    planted = upper_triangle(pd.read_csv(truth / "control_fc.tsv", sep="\t", index_col=0).to_numpy())
    r = {s: np.corrcoef(_group_fc(out, truth, s), planted)[0, 1] for s in ("none", "simple", "gsr")}
    assert r["gsr"] >= 0.9, r
    assert r["simple"] >= 0.9, r
    assert r["none"] <= r["gsr"] - 0.1, r


def test_planted_effects_are_in_the_group_matrices():
    rng = np.random.default_rng(0)
    control = control_correlation(17, rng)
    planted = plant_effects(control, ["a", "b"], rng, n_specific=6, n_shared=4, delta=0.35)
    table = planted.table
    assert (table.groupby("group").size() == 10).all()
    shared = table[table.kind == "shared"]
    assert set(shared[shared.group == "a"].connection) == set(shared[shared.group == "b"].connection)
    for row in table.itertuples():
        assert abs(row.delta) == pytest.approx(0.35, abs=1e-4)  # exactly the planted size
    off = np.ones((17, 17), bool)
    for row in table[table.group == "a"].itertuples():
        off[row.i, row.j] = off[row.j, row.i] = False
    np.fill_diagonal(off, False)
    assert np.abs(planted.group_corr["a"] - control)[off].max() == 0  # nothing leaks to unplanted connections
    assert np.linalg.eigvalsh(planted.group_corr["a"]).min() >= 0.05
    np.testing.assert_allclose(np.diag(nearest_correlation(control)), 1.0)


def test_same_seed_same_files_and_truth_beside_not_inside(tmp_path):
    digests = []
    for name in ("a", "b"):
        out = tmp_path / name / "fmriprep"
        truth = simulate_dataset(out, SimulationSettings(n_controls=1, patients=(("x", 1),), n_volumes=40, seed=5))
        assert truth.parent == out.parent and not (out / "planted_connections.tsv").exists()
        assert (truth / "planted_connections.tsv").exists()
        files = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix != ".gz")
        files += sorted(out.rglob("*.nii.gz"))
        digests.append([(p.relative_to(out).as_posix(), hashlib.sha256(
            __import__("nibabel").load(p).get_fdata().tobytes() if p.suffix == ".gz" else p.read_bytes()
        ).hexdigest()) for p in files])
    assert digests[0] == digests[1]


def test_confounds_use_fmriprep_column_names(tiny_dataset):
    import importlib.resources

    table = read_confounds(next((tiny_dataset["fmriprep"] / "sub-01" / "func").glob("*confounds_timeseries.tsv")))
    real = importlib.resources.files("nilearn.interfaces.fmriprep") / "data" / "test-v21_desc-confounds_timeseries.tsv"
    real_cols = set(pd.read_csv(real, sep="\t", nrows=1).columns)
    ours = set(table.columns)
    core = {c for c in real_cols if not c.startswith(("motion_outlier", "c_comp", "w_comp", "a_comp", "t_comp",
                                                      "cosine", "non_steady", "csf_wm", "tcompcor"))}
    assert core <= ours, sorted(core - ours)
    assert np.isnan(table["framewise_displacement"].iloc[0])
