"""`nmflow ... group` end to end on feature-level simulated cohorts written as relmat trees."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from group_helpers import group_args, make_cohort, write_tree

from nmflow.errors import NmflowInputError
from nmflow.workflows.group import run_group

VARIANT = "atlas-Yeo2011_seg-17nThick_desc-simple_meas-pearson"
FAST = ("--n-bootstrap", "3", "--epochs", "200", "--patience", "20", "--covariates", "age", "sex")


@pytest.fixture(scope="module")
def cohort():
    return make_cohort(n_controls=80, motion=1.0, seed=0)


@pytest.fixture(scope="module")
def done(cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("group")
    write_tree(cohort, root / "out", root / "bids")
    assert run_group(group_args(root / "bids", root / "out", *FAST)) == 0
    return root


def _auc(score, truth):
    pos, neg = score[truth], score[~truth]
    return ((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def test_outputs_and_training_subjects_never_tested(done):
    group = done / "out" / "group"
    subjects = pd.read_csv(group / "subjects.tsv", sep="\t")
    dev = pd.read_csv(group / f"{VARIANT}_deviations.tsv", sep="\t")
    fitted = set(subjects.participant_id[subjects.split.isin(["train", "val"])])
    assert len(fitted) == 56 and not fitted & set(dev.participant_id)
    assert len(dev) == 130 - 56 and set(dev.split) == {"test", "patient"}
    assert dev.shape[1] == 7 + 136
    ref = dev[dev.split == "test"]
    assert abs(ref.global_z.mean()) < 1e-6  # z-scored against the held-out controls
    single = pd.read_csv(group / f"{VARIANT}_singlecase.tsv", sep="\t")
    patients = dev[dev.split == "patient"]
    assert len(single) == len(patients) * 137 and set(single.participant_id) == set(patients.participant_id)
    # Crawford-Howell t = error z against the n reference controls / sqrt((n + 1) / n)
    n = len(ref)
    wide = single.pivot(index="participant_id", columns="feature", values="t").loc[patients.participant_id]
    expected = patients.set_index("participant_id")[wide.columns.drop("global_error")] / np.sqrt((n + 1) / n)
    np.testing.assert_allclose(wide[expected.columns], expected, rtol=1e-4)
    np.testing.assert_allclose(single.p, 2 * sps.t.sf(np.abs(single.t), n - 1), rtol=1e-4)
    selection = pd.read_csv(group / "selection.tsv", sep="\t")
    assert selection.variant.iloc[0] == VARIANT and selection.selected.iloc[0]
    card = json.loads((group / f"{VARIANT}_model.json").read_text())
    assert card["layer_sizes"] == [136, 68, 23, 68, 136] and card["meas"] == "pearson"
    assert set(card["training_subjects"]) | set(card["validation_subjects"]) == fitted
    html = (group / "group_report.html").read_text()
    assert "Single cases" in html and all(pid in html for pid in patients.participant_id)
    for fig in ("error_heatmaps", "connectome", "training_curves", "combat_sites"):
        assert (group / "figures" / f"{fig}.png").stat().st_size > 1000 and fig in html
    assert not [p for p in group.iterdir() if p.name.startswith(".tmp")]


# the targets: AUC >= 0.9, recall >= 0.8 and false-discovery proportion <= 0.1 at q < 0.05
@pytest.mark.parametrize("model", ["autoencoder", "gaussian"])
def test_planted_connections_recovered(done, cohort, model):
    stats = pd.read_csv(done / "out" / "group" / f"{VARIANT}_stats.tsv", sep="\t")
    stats = stats[stats.model == model]
    planted = cohort.planted
    hits = {"true": 0, "false": 0, "planted": 0}
    for group in ("disorderA", "disorderB"):
        s = stats[stats.group == group].sort_values("connection")
        truth = np.isin(s.connection, planted.connection[planted.group == group])
        assert _auc(-np.log10(s.p.to_numpy()), truth) >= 0.9
        flagged = s.flagged.to_numpy()
        hits["true"] += (flagged & truth).sum()
        hits["false"] += (flagged & ~truth).sum()
        hits["planted"] += truth.sum()
    # over all flagged (group, connection) pairs of the two disorders
    assert hits["true"] / hits["planted"] >= 0.8
    assert hits["false"] / max(hits["true"] + hits["false"], 1) <= 0.1
    shared = planted.connection[planted.kind == "shared"].unique()
    both = stats[stats.connection.isin(shared) & stats.flagged]
    assert (both.sharing == "shared").sum() >= 2  # >= 1 of 4 planted shared connections, in both groups
    specific = stats[stats.flagged & stats.connection.isin(planted.connection[planted.kind == "specific"])]
    assert (specific.sharing == "specific").all()


def test_determinism(done, tmp_path):
    shutil.copytree(done / "out", tmp_path / "out", ignore=shutil.ignore_patterns("group"))
    run_group(group_args(done / "bids", tmp_path / "out", *FAST))
    for name in (f"{VARIANT}_stats.tsv", f"{VARIANT}_deviations.tsv", f"{VARIANT}_model.safetensors",
                 "selection.tsv"):
        assert (tmp_path / "out" / "group" / name).read_bytes() == (done / "out" / "group" / name).read_bytes()


def test_fine_tuning_from_model(done, cohort, tmp_path):
    model = done / "out" / "group" / f"{VARIANT}_model.safetensors"
    shutil.copytree(done / "out", tmp_path / "out", ignore=shutil.ignore_patterns("group"))
    run_group(group_args(done / "bids", tmp_path / "out", *FAST, "--init-model", str(model), "--seed", "1"))
    group = tmp_path / "out" / "group"
    card = json.loads((group / f"{VARIANT}_model.json").read_text())
    original = json.loads(model.with_suffix(".json").read_text())
    assert card["fine_tuned_from"]["weights_sha256"] == original["weights_sha256"]
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
    assert dev.shape[1] == 7 + 136 and np.isfinite(dev.iloc[:, 7:].to_numpy()).all()


def _expect_error(bids, out, match, *extra):
    with pytest.raises(NmflowInputError, match=match):
        run_group(group_args(bids, out, *FAST, *extra))
    assert not (out / "group").exists()


def test_bad_inputs_clear_errors_no_output(done, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(done / "out", out, ignore=shutil.ignore_patterns("group"))
    participants = pd.read_csv(done / "bids" / "participants.tsv", sep="\t")
    bad = tmp_path / "p.tsv"
    participants.assign(group=participants.group.replace("control", "healthy")).to_csv(bad, sep="\t", index=False)
    _expect_error(done / "bids", out, "no controls", "--participants", str(bad))
    few = participants.copy()
    few.loc[few.group == "disorderB", "group"] = ["disorderC"] * 2 + ["disorderB"] * 23
    few.to_csv(bad, sep="\t", index=False)
    _expect_error(done / "bids", out, "fewer than 3 subjects", "--participants", str(bad))
    model = done / "out" / "group" / f"{VARIANT}_model.safetensors"
    corrupt = tmp_path / "m.safetensors"
    corrupt.write_bytes(model.read_bytes()[:-50])
    shutil.copy(model.with_suffix(".json"), corrupt.with_suffix(".json"))
    _expect_error(done / "bids", out, "corrupt", "--init-model", str(corrupt))
    card = json.loads(model.with_suffix(".json").read_text())
    other = tmp_path / "other.safetensors"
    shutil.copy(model, other)
    other.with_suffix(".json").write_text(json.dumps(dict(card, seg="7nThick", weights_file=other.name)))
    _expect_error(done / "bids", out, "no variant .* matches the model", "--init-model", str(other))
    # one subject's relmat with fewer regions: features of mismatched length
    path = next((out / "sub-005" / "func").glob("*desc-simple*relmat.tsv"))
    table = pd.read_csv(path, sep="\t")
    table.iloc[:-1, :-1].to_csv(path, sep="\t", index=False)
    _expect_error(done / "bids", out, "regions differ", "--variants", "*desc-simple*")
