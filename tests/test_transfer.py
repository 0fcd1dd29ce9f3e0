"""Transfer to a new dataset: feature mapping by name, fine-tuning, the no-fine-tune guard rail."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers.group import group_args, make_cohort

from nmflow.participant.connectivity import connection_names
from nmflow.errors import NmflowInputError
from nmflow.workflows.group import run_group

VARIANT = "seg-Yeo17_desc-denoiseSimple_meas-pearson"
FAST = ("--n-bootstrap", "0", "--epochs", "150", "--patience", "15", "--covariates", "age", "sex")


def _dataset(root, cohort, name, constant_region=None, absent_region=None):
    """A BEP017 time series folder + participants.tsv + dataset_description.json."""
    for k, pid in enumerate(cohort.subjects.participant_id):
        table = pd.DataFrame(cohort.timeseries["simple"][k], columns=cohort.regions)
        if constant_region is not None and k % 3 == 0:  # a third of the subjects: mostly missing connections
            table[cohort.regions[constant_region]] = 1.0
        if absent_region is not None:
            table = table.drop(columns=cohort.regions[absent_region])
        folder = root / "ts" / pid / "func"
        folder.mkdir(parents=True)
        table.to_csv(folder / f"{pid}_task-rest_seg-Yeo17_desc-denoiseSimple_timeseries.tsv", sep="\t", index=False)
    cohort.subjects.to_csv(root / "participants.tsv", sep="\t", index=False)
    (root / "dataset_description.json").write_text(json.dumps({"Name": name, "BIDSVersion": "1.9.0"}))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    a = make_cohort(n_controls=40, patients=(("disorderA", 10),), motion=0, keep_timeseries=True, seed=3,
                    estimate_d=False)
    b = make_cohort(n_controls=30, patients=(("disorderA", 10),), motion=0, keep_timeseries=True, seed=4,
                    estimate_d=False)
    _dataset(root / "A", a, "cohort A", constant_region=3)
    _dataset(root / "B", b, "cohort B", absent_region=5)
    run_group(group_args(root / "A", root / "A" / "out", "--timeseries-dir", str(root / "A" / "ts"), *FAST))
    return root


def _card(root, name):
    return json.loads((root / name / "out" / "group" / f"{VARIANT}_model.json").read_text())


def test_fine_tuning_across_datasets_with_different_missing_regions(datasets, capsys):
    root = datasets
    model = root / "A" / "out" / "group" / f"{VARIANT}_model.safetensors"
    card_a = _card(root, "A")
    assert card_a["n_features"] == 136 - 16 and card_a["dataset"] == "cohort A"  # region 3 dropped in A
    assert run_group(group_args(root / "B", root / "B" / "out", "--timeseries-dir", str(root / "B" / "ts"), *FAST,
                                "--init-model", str(model))) == 0
    note = capsys.readouterr().out
    assert "105 of 120 scored, 15 absent or mostly missing here" in note  # region 5's connections, minus 3-5
    card = _card(root, "B")
    assert card["transfer"]["scored"] == 105 and len(card["transfer"]["unscored"]) == 15
    assert card["transfer"]["data_connections_unknown_to_model"] == 15  # region 3's connections, minus 3-5
    assert card["fine_tuned_from"]["dataset"] == "cohort A" and card["dataset"] == "cohort B"
    assert card["feature_names"] == card_a["feature_names"] and card["layer_sizes"][0] == 120
    dev = pd.read_csv(root / "B" / "out" / "group" / f"{VARIANT}_deviations.tsv", sep="\t")
    scored = dev.filter(like="__")
    assert dev.shape == (40, 12 + 105) and scored.shape[1] == 105 and np.isfinite(scored.to_numpy()).all()
    assert not any(c.startswith("4_") or "__4_" in c for c in scored.columns)  # no region-5 connection scored
    stats = pd.read_csv(root / "B" / "out" / "group" / f"{VARIANT}_stats.tsv", sep="\t")
    # connection indices refer to the model's 17 regions, whose names the stats table repeats
    names = np.array(connection_names(card["atlas_regions"]))
    assert len(card["atlas_regions"]) == 17 and (names[stats.connection] == stats.name).all()
    calib = pd.read_csv(root / "B" / "out" / "group" / f"{VARIANT}_calibration.tsv", sep="\t")
    overall = calib[(calib.scope == "all") & (calib.connection == "all")]
    assert overall["frac_abs_z_gt_1.96"].between(0.03, 0.08).all()  # B's own calibration


def test_too_few_controls_offers_scoring_without_fine_tuning(datasets, tmp_path):
    root = datasets
    model = root / "A" / "out" / "group" / f"{VARIANT}_model.safetensors"
    participants = pd.read_csv(root / "B" / "participants.tsv", sep="\t")
    few = participants[(participants.group != "control") | (participants.index < 6)]
    few.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    args = ("--timeseries-dir", str(root / "B" / "ts"), "--participant-label", *few.participant_id, *FAST,
            "--init-model", str(model))
    with pytest.raises(NmflowInputError, match="too few.*rerun with --no-fine-tune"):
        run_group(group_args(tmp_path, tmp_path / "out", *args))
    assert run_group(group_args(tmp_path, tmp_path / "out", *args, "--no-fine-tune")) == 0
    group = tmp_path / "out" / "group"
    dev = pd.read_csv(group / f"{VARIANT}_deviations.tsv", sep="\t")
    assert (dev.group == "control").sum() == 6 and (dev.split == "patient").sum() == 10
    assert set(dev.split[dev.group == "control"]) == {f"fold-{k}" for k in range(1, 6)}  # ComBat out of sample
    ref = dev[dev.group == "control"].filter(like="__").to_numpy()
    np.testing.assert_allclose(np.mean(ref ** 2, axis=0), 1.0, rtol=1e-4)  # calibrated on B's controls, not A's
    card = json.loads((group / f"{VARIANT}_model.json").read_text())
    assert card["transfer"]["fine_tuned"] is False
    assert card["training_subjects"] == _card(root, "A")["training_subjects"]


def test_model_of_other_region_order_refused(datasets, tmp_path):
    root = datasets
    model = root / "A" / "out" / "group" / f"{VARIANT}_model.safetensors"
    card = json.loads(model.with_suffix(".json").read_text())
    other = tmp_path / "m.safetensors"
    other.write_bytes(model.read_bytes())
    card["atlas_regions"] = card["atlas_regions"][::-1]
    other.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(NmflowInputError, match="another order"):
        run_group(group_args(root / "B", tmp_path / "out", "--timeseries-dir", str(root / "B" / "ts"), *FAST,
                             "--init-model", str(other)))
