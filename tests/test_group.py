"""`nmflow ... group` end to end on feature-level simulated cohorts written as relmat trees."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers.group import group_args, make_cohort, write_tree

from nmflow.stats import crawford_howell
from nmflow.workflows.group import run_group

VARIANT = "atlas-Yeo2011_seg-17nThick_desc-simple_meas-pearson"
FAST = ("--n-bootstrap", "4", "--epochs", "200", "--patience", "20", "--covariates", "age", "sex")


@pytest.fixture(scope="module")
def cohort():
    # the realistic set-up: 60 controls over 2 sites, 20 patients per disorder, median d = 1
    return make_cohort(n_controls=60, patients=(("disorderA", 20), ("disorderB", 20)), motion=1.0, seed=1)


@pytest.fixture(scope="module")
def done(cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("group")
    write_tree(cohort, root / "out", root / "bids")
    assert run_group(group_args(root / "bids", root / "out", *FAST)) == 0
    return root


def _read(done, suffix, variant=VARIANT):
    return pd.read_csv(done / "out" / "group" / f"{variant}_{suffix}.tsv", sep="\t")


def test_every_control_is_scored_out_of_sample_and_is_the_reference(done):
    group = done / "out" / "group"
    subjects = pd.read_csv(group / "subjects.tsv", sep="\t")
    controls = subjects[subjects.group == "control"]
    assert set(controls.split) == {f"fold-{k}" for k in range(1, 6)}
    # stratified by site: each fold holds 6 controls of each of the 2 sites
    assert (controls.groupby(["split", "site"]).size() == 6).all()
    dev = _read(done, "deviations")
    assert len(dev) == 100 and dev.shape[1] == 12 + 136
    ref = dev[dev.group == "control"]
    z = ref.filter(like="__").to_numpy()
    # z is standardised by the controls' own out-of-sample residual root mean square
    np.testing.assert_allclose(np.mean(z ** 2, axis=0), 1.0, rtol=1e-4)
    # global_score: the percentile of mean z^2 among the controls
    patients = dev[dev.group != "control"]
    expected = [100 * (ref.mean_sq_z < m).mean() for m in patients.mean_sq_z]
    np.testing.assert_allclose(patients.global_score, expected, atol=1e-3)
    card = json.loads((group / f"{VARIANT}_model.json").read_text())
    assert card["layer_sizes"] == [136, 68, 23, 68, 136] and card["n_covariates"] == 2  # age, sex=M
    assert card["covariate_columns"] == ["age", "sex=M"] and card["cross_fitting"]["folds"] == 5
    fitted = set(card["training_subjects"]) | set(card["validation_subjects"])
    assert fitted == set(controls.participant_id)  # the saved model is fitted on all controls
    assert not [p for p in group.iterdir() if p.name.startswith(".tmp")]


def test_single_case_table_is_crawford_howell_on_signed_z(done):
    dev = _read(done, "deviations")
    single = _read(done, "singlecase")
    ref = dev[dev.group == "control"].filter(like="__").to_numpy()
    patient = dev[dev.group != "control"].iloc[0]
    rows = single[(single.participant_id == patient.participant_id) & (single.feature != "global")]
    result = crawford_howell(patient.filter(like="__").to_numpy(float), ref)
    t, p, df = result.t, result.p_two_sided, result.df
    np.testing.assert_allclose(rows.t, t, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rows.p, p, rtol=1e-3, atol=1e-7)
    assert df == 59 and (rows.n_controls == 60).all() and (rows.df == 59).all()
    assert set(single.group) == {"disorderA", "disorderB"} and (single.feature == "global").sum() == 40


# the targets at q < 0.05: connection AUC >= 0.9, recall >= 0.8, false-discovery proportion <= 0.1
def test_signed_deviations_find_planted_connections(done, cohort):
    stats = _read(done, "stats")
    planted = cohort.planted
    hits = {}
    for (model, group), s in stats.groupby(["model", "group"]):
        truth = np.isin(s.connection, planted.connection[planted.group == group])
        score = -np.log10(s.p.to_numpy())
        assert (score[truth][:, None] > score[~truth][None]).mean() >= 0.9, (model, group)
        flagged = s.flagged.to_numpy()
        hits[model] = hits.get(model, 0) + np.array([(flagged & truth).sum(), (flagged & ~truth).sum(), truth.sum()])
    # pooled over both disorders (per disorder and over seeds: benchmarks/group.py, in the README)
    tp, fp, n_planted = hits["autoencoder"]
    assert tp / n_planted >= 0.75 and fp / (tp + fp) <= 0.1, hits
    assert tp >= hits["linear"][0]  # the autoencoder finds at least what the covariate-aware baseline finds
    shared = planted.connection[planted.kind == "shared"].unique()
    called = stats[(stats.model == "autoencoder") & stats.connection.isin(shared) & stats.flagged]
    assert (called.sharing == "shared").sum() >= 2  # a planted shared connection reported shared in both groups


def test_calibration_written_and_in_the_nominal_band(done):
    calib = _read(done, "calibration")
    overall = calib[(calib.scope == "all") & (calib.connection == "all")].set_index("model")
    assert set(overall.index) == {"autoencoder", "linear"}
    assert overall.loc["autoencoder", "explained_variance"] > 0.1  # the model explains controls' variability
    assert overall.loc["linear", "explained_variance"] < overall.loc["autoencoder", "explained_variance"]
    for model in ("autoencoder", "linear"):
        assert 0.03 <= overall.loc[model, "frac_abs_z_gt_1.96"] <= 0.08
        assert overall.loc[model, "null_singlecase_rate"] <= 0.1
    per_site = calib[(calib.scope != "all") & (calib.connection == "all")]
    assert set(per_site.scope) == {"siteA", "siteB"} and len(calib[calib.connection != "all"]) == 2 * 136
    html = (done / "out" / "group" / "group_report.html").read_text()
    assert "Calibration on held-out controls" in html and "beyond ±1.96" in html


def test_null_cohort_of_controls_flags_almost_nothing(tmp_path):
    # controls only, half of them relabelled: no true difference anywhere
    null = make_cohort(n_controls=100, patients=(), motion=1.0, seed=6)
    rng = np.random.default_rng(0)
    null.subjects.loc[rng.permutation(100)[:40], "group"] = "pseudo"
    write_tree(null, tmp_path / "out", tmp_path / "bids", strategies=("simple",))
    run_group(group_args(tmp_path / "bids", tmp_path / "out", *FAST, "--n-bootstrap", "0"))
    stats = pd.read_csv(tmp_path / "out" / "group" / f"{VARIANT}_stats.tsv", sep="\t")
    assert stats.groupby("model").flagged.sum().max() <= 2
    single = pd.read_csv(tmp_path / "out" / "group" / f"{VARIANT}_singlecase.tsv", sep="\t")
    any_flag = single[single.feature != "global"].groupby("participant_id").flagged.any()
    assert len(any_flag) == 40 and any_flag.mean() <= 0.1


def test_no_patient_data_in_any_fitted_quantity(done, cohort, tmp_path):
    """Patients' features changed wholesale: every fitted quantity and every control's score is unchanged."""
    other = make_cohort(n_controls=60, patients=(("disorderA", 20), ("disorderB", 20)), motion=1.0, seed=9)
    patients = (cohort.subjects.group != "control").to_numpy()
    for strategy in cohort.features:
        cohort_copy = cohort.features[strategy].copy()
        cohort_copy[patients] = other.features[strategy][patients] + 0.5
        other.features[strategy] = cohort_copy
    other.subjects = cohort.subjects
    write_tree(other, tmp_path / "out", tmp_path / "bids")
    run_group(group_args(tmp_path / "bids", tmp_path / "out", *FAST))
    new, old = tmp_path / "out" / "group", done / "out" / "group"
    for name in (f"{VARIANT}_model.safetensors", f"{VARIANT}_calibration.tsv", f"{VARIANT}_curves.tsv",
                 "selection.tsv", "subjects.tsv"):
        assert (new / name).read_bytes() == (old / name).read_bytes(), name
    a, b = (pd.read_csv(g / f"{VARIANT}_deviations.tsv", sep="\t") for g in (new, old))
    pd.testing.assert_frame_equal(a[a.group == "control"], b[b.group == "control"])
    assert not np.allclose(a[a.group != "control"].filter(like="__"), b[b.group != "control"].filter(like="__"))


def test_determinism(done, tmp_path):
    shutil.copytree(done / "out", tmp_path / "out", ignore=shutil.ignore_patterns("group"))
    run_group(group_args(done / "bids", tmp_path / "out", *FAST))
    for name in (f"{VARIANT}_stats.tsv", f"{VARIANT}_deviations.tsv", f"{VARIANT}_model.safetensors",
                 "selection.tsv"):
        assert (tmp_path / "out" / "group" / name).read_bytes() == (done / "out" / "group" / name).read_bytes()


def test_selection_on_controls_only(done):
    selection = pd.read_csv(done / "out" / "group" / "selection.tsv", sep="\t")
    assert selection.qualifies.all() and selection.selected.tolist() == [True, False]
    assert selection.explained_variance.is_monotonic_decreasing
    # the autoencoder learns part of the motion artefact left in 'none' (more variance explained), and
    # both variants' deviations are reproducible across bootstrap models
    none = selection[selection.variant.str.contains("desc-none")].iloc[0]
    assert none["rank"] == 1 and (selection.stability > 0.8).all()


def test_split_file_and_covariates_without_harmonisation(done, cohort, tmp_path):
    subjects = cohort.subjects
    controls = subjects[subjects.group == "control"].participant_id.to_numpy()
    split = pd.DataFrame({"participant_id": controls,
                          "split": np.resize(["train", "train", "val", "test"], controls.size)})
    split.to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    shutil.copytree(done / "out", tmp_path / "out", ignore=shutil.ignore_patterns("group"))
    run_group(group_args(done / "bids", tmp_path / "out", *FAST, "--split-file", str(tmp_path / "split.tsv"),
                         "--harmonize", "none", "--variants", "*desc-simple*"))
    dev = pd.read_csv(tmp_path / "out" / "group" / f"{VARIANT}_deviations.tsv", sep="\t")
    assert set(dev.split) == {"test", "patient"} and (dev.split == "test").sum() == 15
    card = json.loads((tmp_path / "out" / "group" / f"{VARIANT}_model.json").read_text())
    assert card["covariate_columns"] == ["age", "sex=M", "site=siteB"]  # site conditions the model


def test_fine_tuning_from_model(done, tmp_path):
    model = done / "out" / "group" / f"{VARIANT}_model.safetensors"
    shutil.copytree(done / "out", tmp_path / "out", ignore=shutil.ignore_patterns("group"))
    run_group(group_args(done / "bids", tmp_path / "out", *FAST, "--init-model", str(model), "--seed", "1"))
    group = tmp_path / "out" / "group"
    card = json.loads((group / f"{VARIANT}_model.json").read_text())
    original = json.loads(model.with_suffix(".json").read_text())
    assert card["fine_tuned_from"]["weights_sha256"] == original["weights_sha256"]
    assert card["covariate_coding"] == original["covariate_coding"]
    assert not (group / "selection.tsv").exists()
    assert not list(group.glob("*desc-none*"))  # only the model's variant


def _timeseries_tree(cohort, root):
    rng = np.random.default_rng(0)
    for k, pid in enumerate(cohort.subjects.participant_id):
        ts = cohort.timeseries["simple"][k][: 150 + (k % 3) * 20]  # differing scan lengths
        table = pd.DataFrame(ts, columns=cohort.regions)
        if k == 0:
            table[cohort.regions[3]] = 1.0  # constant region
        if k == 1:
            table = table.drop(columns=cohort.regions[5])  # missing region
        folder = root / pid / "func"
        folder.mkdir(parents=True)
        table.to_csv(folder / f"{pid}_task-rest_seg-Yeo17_desc-denoiseSimple_timeseries.tsv", sep="\t",
                     index=False, na_rep="n/a")
        pd.DataFrame({"a": rng.normal(size=10)}).to_csv(
            folder / f"{pid}_task-rest_desc-confounds_timeseries.tsv", sep="\t", index=False)


def test_timeseries_dir_from_other_tools(tmp_path):
    small = make_cohort(n_controls=30, patients=(("disorderA", 10),), motion=0, keep_timeseries=True, seed=2)
    _timeseries_tree(small, tmp_path / "xcpd")
    small.subjects.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    args = group_args(tmp_path, tmp_path / "out", "--timeseries-dir", str(tmp_path / "xcpd"),
                      "--n-bootstrap", "0", "--epochs", "50", "--harmonize", "none")
    assert run_group(args) == 0
    dev = pd.read_csv(tmp_path / "out" / "group" / "seg-Yeo17_desc-denoiseSimple_meas-pearson_deviations.tsv",
                      sep="\t")
    assert dev.shape == (40, 12 + 136) and np.isfinite(dev.filter(like="__").to_numpy()).all()
