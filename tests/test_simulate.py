"""The simulator: planted truth is recoverable, denoising matters, output is deterministic."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from nmflow.participant.atlas import resolve_atlas
from nmflow.participant.connectivity import connectivity, fisher_z, upper_triangle
from nmflow.participant.denoise import PRESETS, CleaningSettings, clean_run, read_confounds
from nmflow.participant.parcellate import extract_signals
from nmflow.simulate import SimulationSettings, simulate_dataset
from nmflow.simulate.networks import control_correlation, nearest_correlation


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


def test_control_matrix_is_a_positive_definite_correlation():
    control = control_correlation(17, np.random.default_rng(0))
    np.testing.assert_allclose(np.diag(control), 1.0)
    assert np.linalg.eigvalsh(control).min() > 0
    np.testing.assert_allclose(np.diag(nearest_correlation(control - 0.3 * np.eye(17))), 1.0)


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


# -- the population model: realism, Cohen's d, no leakage, impossible layouts ---------------------

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers.group import make_cohort  # noqa: E402

from nmflow.simulate import population as pop  # noqa: E402


def _within_site(features, sites):
    df = pd.DataFrame(features)
    sd = float(np.median(df.groupby(sites).std().to_numpy()))
    site_ratio = float(np.median(df.groupby(sites).mean().std())) / sd
    centred = (df - df.groupby(sites).transform("mean")).to_numpy()
    power = np.linalg.svd(centred - centred.mean(axis=0), compute_uv=False) ** 2
    return sd, site_ratio, power[0] / power.sum()


@pytest.mark.parametrize("n_volumes", [120, 200])
def test_controls_vary_like_real_data(n_volumes):
    """Real controls: within-site SD 0.184, PC1 31 %, site-means SD 0.39 x within-site SD."""
    cohort = make_cohort(n_controls=266, patients=(), n_sites=14, n_volumes=n_volumes, motion=0, seed=3,
                         estimate_d=False)
    sd, site_ratio, pc1 = _within_site(cohort.features["simple"], cohort.subjects.site.to_numpy())
    assert 0.16 <= sd <= 0.22, sd
    assert 0.20 <= pc1 <= 0.36, pc1
    assert 0.25 <= site_ratio <= 0.55, site_ratio
    assert cohort.true_features.shape == cohort.features["simple"].shape
    # the true FC explains much of the observed FC but not all (sampling noise of the scan)
    r = np.corrcoef(cohort.true_features.ravel(), cohort.features["simple"].ravel())[0, 1]
    assert 0.6 < r < 0.99


@pytest.fixture(scope="module")
def big_cohort():
    return make_cohort(n_controls=500, patients=(("disorderA", 500), ("disorderB", 500)), motion=0, seed=5,
                       estimate_d=False)


def test_realised_d_matches_target_and_nothing_leaks(big_cohort):
    c = big_cohort
    groups, sites, x = c.subjects.group.to_numpy(), c.subjects.site.to_numpy(), c.features["simple"]
    assert (c.planted.groupby("group").size() == 8).all()
    assert (c.planted.groupby("group").kind.value_counts().unstack()[["specific", "shared"]] == [6, 2]).all().all()
    for group in ("disorderA", "disorderB"):
        d = pop.cohens_d(x, groups, sites, group)
        planted = c.planted[c.planted.group == group]
        realised = d[planted.connection.to_numpy()]
        assert np.all(np.abs(realised - planted.d.to_numpy()) <= 0.25), (realised, planted.d.to_numpy())
        assert np.abs(planted.d).median() == pytest.approx(1.0, abs=0.35)
        unplanted = np.setdiff1d(np.arange(x.shape[1]), planted.connection)
        assert np.abs(d[unplanted]).mean() < 0.2
        assert np.abs(d[unplanted]).max() < 0.35
    # group matrices differ from the controls' only on the planted connections
    model = c.model
    for group, corr in model.group_corr.items():
        off = np.ones_like(corr, bool)
        for row in model.planted[model.planted.group == group].itertuples():
            off[row.i, row.j] = off[row.j, row.i] = False
        assert np.abs(corr - model.control)[off].max() == 0
        assert np.linalg.eigvalsh(corr).min() >= model.params.min_eig


def test_global_factor_and_covariates():
    c = make_cohort(n_controls=400, patients=(("disorderA", 400),), n_sites=1, motion=0, seed=8, estimate_d=False)
    x, s = c.true_features, c.subjects
    # subject-level global factor: a subject's mean true FC varies, with the same spread in every group
    spread = pd.Series(x.mean(axis=1)).groupby(s.group.to_numpy()).std()
    assert spread.min() > 0.05 and spread.max() / spread.min() < 1.3
    # age effects appear on their documented connections with the documented sign
    for row in c.covariates[c.covariates.covariate == "age"].itertuples():
        slope = np.polyfit(s.age, x[:, row.connection], 1)[0] * 10
        assert np.sign(slope) == np.sign(row.delta)


def test_delta_mode_plants_exact_delta_on_group_matrices():
    rng = np.random.default_rng(1)
    control = control_correlation(17, rng)
    model = pop.build_population(control, ["a", "b"], ["s1", "s2"], rng, effect=0.3, n_specific=5, n_shared=3,
                                 estimate_d=False)
    assert np.allclose(model.planted.delta.abs(), 0.3)
    for row in model.planted.itertuples():
        assert model.group_corr[row.group][row.i, row.j] - control[row.i, row.j] == pytest.approx(row.delta, abs=1e-12)
    assert (model.planted.groupby("group").size() == 8).all()


def test_subjects_stay_positive_definite_without_projection():
    rng = np.random.default_rng(2)
    control = control_correlation(17, rng)
    model = pop.build_population(control, ["a"], ["s"], rng, estimate_d=False)
    draws = pop.draw_subjects(model, ["a"] * 200, rng.uniform(20, 70, 200), rng.choice(["F", "M"], 200),
                              ["s"] * 200, rng)
    assert np.linalg.eigvalsh(draws.corr).min() > 0
    np.testing.assert_allclose(np.einsum("sii->si", draws.true_fc), 1.0)


@pytest.mark.parametrize("flags, says", [
    (["--n-specific", "60"], "lower --n-specific"),
    (["--effect-d", "8"], "effect size"),
    (["--n-sites", "0"], "--n-sites"),
    (["--n-volumes", "5"], "--n-volumes"),
])
def test_impossible_layout_is_one_line_error(tmp_path, capsys, flags, says):
    from nmflow.cli.main import main

    rc = main(["simulate", str(tmp_path / "ds"), "--n-controls", "2", "--patients", "a=1", "b=1", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("nmflow: error: ") and says in err[0], err
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds_truth").exists()


def test_truth_tables(tiny_dataset):
    truth = tiny_dataset["truth"]
    planted = pd.read_csv(truth / "planted_connections.tsv", sep="\t")
    assert {"group", "connection", "name", "i", "j", "kind", "delta", "d", "d_realised"} <= set(planted.columns)
    assert set(planted.kind) == {"specific", "shared"} and (planted.groupby("group").size() == 8).all()
    covariates = pd.read_csv(truth / "covariate_effects.tsv", sep="\t")
    assert set(covariates.covariate) == {"age", "sex"}
    assert not set(covariates.connection) & set(planted.connection)
    true_fc = pd.read_csv(truth / "subject_true_fc.tsv", sep="\t", index_col=0)
    assert true_fc.shape[1] == 136 and np.abs(true_fc.to_numpy()).max() < 1
