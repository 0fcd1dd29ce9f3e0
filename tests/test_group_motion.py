"""Head motion in the normative models (mean FD as a covariate, QC-FC of the deviations) and the global FC
component the autoencoder does not see (global_fc_z, combined_score)."""

import json
from types import SimpleNamespace

import lxml.html
import numpy as np
import pandas as pd
import pytest
from helpers.group import group_args, make_cohort, write_tree
from scipy import stats as sps

from nmflow.bids_io import layout
from nmflow.errors import NmflowInputError
from nmflow.group.motion import FD_SOURCES, collect_motion, with_mean_fd
from nmflow.reports.group import qc_fc_deviation_words
from nmflow.workflows.group import run_group

VARIANT = "atlas-Yeo2011_seg-17nThick_desc-simple_meas-pearson"
SHIFT = 0.15  # added to every connection (Fisher z) of every patient: a global FC shift, nothing focal


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    cohort = make_cohort(n_controls=60, patients=(("shifted", 20),), motion=1.0, seed=3, effect_d=0.0, n_specific=0,
                         n_shared=0, estimate_d=False)
    patients = (cohort.subjects.group != "control").to_numpy()
    cohort.features["simple"][patients] += SHIFT
    write_tree(cohort, root / "out", root / "bids", strategies=("simple",), qc=True)
    assert run_group(group_args(root / "bids", root / "out", "--covariates", "age", "sex", "mean_fd",
                                "--n-bootstrap", "0", "--epochs", "200", "--patience", "20")) == 0
    return root


def _read(root, suffix):
    return pd.read_csv(root / "out" / "group" / f"{VARIANT}_{suffix}.tsv", sep="\t")


def _fd_by_hand(root) -> pd.Series:
    """Mean FD of each subject from its *_outliers.tsv (one scan each), indexed by participant_id."""
    files = sorted((root / "out").glob("sub-*/func/*_desc-simple_outliers.tsv"))
    return pd.Series({f.name.split("_")[0]: pd.read_csv(f, sep="\t", na_values="n/a").framewise_displacement.mean()
                      for f in files})


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    return sps.mannwhitneyu(score[positive], score[~positive]).statistic / (positive.sum() * (~positive).sum())


def test_mean_fd_covariate_read_from_the_outliers_and_recorded_in_the_card(shifted):
    card = json.loads((shifted / "out" / "group" / f"{VARIANT}_model.json").read_text())
    assert card["covariate_columns"] == ["age", "mean_fd", "sex=M"]
    assert card["mean_fd_source"] == {FD_SOURCES["outliers"]: 80}
    # the saved model is fitted on all controls: its coding centres mean FD on their mean
    fd = _fd_by_hand(shifted)
    controls = pd.read_csv(shifted / "bids" / "participants.tsv", sep="\t").query("group == 'control'")
    mean, sd = card["covariate_coding"]["numeric"]["mean_fd"]
    assert mean == pytest.approx(fd[controls.participant_id].mean(), rel=1e-9)
    assert sd == pytest.approx(fd[controls.participant_id].std(ddof=1), rel=1e-9)


def test_qc_fc_of_the_deviations_equals_scipy_and_is_reported(shifted):
    calib = _read(shifted, "calibration")
    fd = _fd_by_hand(shifted)
    for model, suffix in (("autoencoder", "deviations"), ("linear", "linearz")):
        dev = _read(shifted, suffix)
        ref = dev[dev.group == "control"]
        z = ref.filter(like="__").to_numpy()
        r, p = np.array([sps.pearsonr(fd[ref.participant_id].to_numpy(), z[:, j]) for j in range(z.shape[1])]).T
        row = calib[(calib.model == model) & (calib.scope == "all") & (calib.connection == "all")].iloc[0]
        assert row.qcfc_median_abs_r == pytest.approx(np.median(np.abs(r)), rel=1e-4)  # 6 digits in the TSV
        assert row.qcfc_pct_p05 == pytest.approx(100 * np.mean(p < 0.05), abs=1e-3)
    text = lxml.html.fromstring((shifted / "out" / "group" / "group_report.html").read_text()).text_content()
    assert "QC-FC of the deviations: across the 60 held-out controls, the median |r|" in text
    assert "from the participant level's *_outliers.tsv" in text


def test_a_global_fc_shift_is_seen_by_global_fc_z_more_than_by_the_autoencoder(shifted):
    dev, lin = _read(shifted, "deviations"), _read(shifted, "linearz")
    patients = (dev.group == "shifted").to_numpy()
    glob = dev.global_fc_z.to_numpy()
    # controls, out of sample: centred, unit root mean square
    assert abs(glob[~patients].mean()) < 0.1
    assert np.sqrt(np.mean(glob[~patients] ** 2)) == pytest.approx(1.0, abs=1e-5)
    assert np.median(glob[patients]) > 1 and _auc(glob, patients) > 0.8
    assert _auc(glob, patients) > _auc(dev.focal_z.to_numpy(), patients) + 0.1
    # the autoencoder predicts each connection from the (shifted) others: its z keep less of the shift than
    # the linear baseline's, which sees only the covariates
    ae_mean, linear_mean = (t.filter(like="__")[patients].to_numpy().mean() for t in (dev, lin))
    assert ae_mean < 0.7 * linear_mean
    np.testing.assert_allclose(lin.global_fc_z, glob)  # one global component for both models
    # combined_score: percentile of focal_z^2 + global_fc_z^2 among the controls (a control among the others)
    combined = (dev.focal_z ** 2 + dev.global_fc_z ** 2).to_numpy()
    ref = combined[~patients]
    expected = [100 * np.mean(np.delete(ref, k) < c) for k, c in enumerate(ref)]
    expected += [100 * np.mean(ref < c) for c in combined[patients]]
    got = np.concatenate([dev.combined_score[~patients], dev.combined_score[patients]])
    np.testing.assert_allclose(got, expected, atol=1e-3)
    page = lxml.html.fromstring((shifted / "out" / "group" / "patients" / "sub-61.html").read_text()).text_content()
    assert f"(global_fc_z = {dev.global_fc_z[dev.participant_id == 'sub-61'].iloc[0]:+.2f})" in page


def test_mean_fd_from_the_participants_file_first_then_the_outliers(shifted):
    runs = collect_motion(None, [])
    table = pd.DataFrame({"mean_fd": [0.2, np.nan, "0.3 mm"]}, index=["01", "02", "03"])
    with pytest.raises(NmflowInputError, match=r"mean_fd is not a number for sub-03 \('0.3 mm'\)"):
        with_mean_fd(table, runs)
    runs = collect_motion(layout(shifted / "out"), ["01", "02", "03"])
    fd = _fd_by_hand(shifted)
    out = with_mean_fd(pd.DataFrame({"mean_fd": [0.2, np.nan, np.nan]}, index=["01", "02", "03"]), runs)
    np.testing.assert_allclose(out.mean_fd, [0.2, fd["sub-02"], fd["sub-03"]])
    assert out.mean_fd_source.tolist() == ["participants.tsv", "outliers", "outliers"]
    alone = with_mean_fd(pd.DataFrame({"age": [30, 40]}, index=["01", "99"]), runs)
    assert alone.mean_fd.iloc[0] == pytest.approx(fd["sub-01"]) and np.isnan(alone.mean_fd.iloc[1])


def _report_data(ae: float, linear: float, covariates: tuple) -> SimpleNamespace:
    """What :func:`qc_fc_deviation_words` reads: each model's overall calibration row and the covariates."""
    scores = {m: SimpleNamespace(calibration=pd.DataFrame([{"n_subjects": 50, "qcfc_median_abs_r": r,
                                                             "qcfc_pct_p05": 30.0}]))
              for m, r in (("autoencoder", ae), ("linear", linear))}
    return SimpleNamespace(variant=SimpleNamespace(scored=SimpleNamespace(scores=scores)),
                           settings=SimpleNamespace(covariates=covariates))


def test_report_warns_when_motion_remains_in_the_deviations_and_says_what_to_do():
    assert [kind for _, kind in qc_fc_deviation_words(_report_data(0.08, 0.09, ("age",)))] == [None]
    (text, kind), = qc_fc_deviation_words(_report_data(0.08, 0.14, ("age",)))[1:]
    assert kind == "warn" and "deviations of the linear baseline (median |r| above 0.1)" in text
    assert "add mean FD as a covariate (--covariates ... mean_fd)" in text and "stricter denoising" in text
    (text, kind), = qc_fc_deviation_words(_report_data(0.12, 0.01, ("age", "mean_fd")))[1:]
    assert kind == "warn" and "deviations of the autoencoder (" in text
    assert "as a covariate" not in text and "stricter denoising strategy" in text
    assert "not computed: mean FD is unknown" in qc_fc_deviation_words(_report_data(np.nan, np.nan, ()))[0][0]


def test_flags_made_by_a_global_shift_are_labelled_as_one(shifted):
    """The linear baseline flags many connections of a group whose every connection moved by +0.15: the
    stats table ties them to the group's global FC shift (tested by scipy on global_fc_z) and the notes say
    that they are one shift, not focal findings."""
    from nmflow.group.stats import GLOBAL_SHARE, global_shift_notes

    stats = _read(shifted, "stats")
    dev = _read(shifted, "linearz")
    glob = dev.set_index("group").global_fc_z
    u, p = sps.mannwhitneyu(glob.loc["shifted"], glob.loc["control"], alternative="two-sided")
    linear = stats[stats.model == "linear"]
    assert linear.global_p.iloc[0] == pytest.approx(p, rel=1e-5) and p < 0.05  # 6 digits in the TSV
    assert linear.global_effect_size.iloc[0] == pytest.approx(2 * u / (20 * 60) - 1, rel=1e-5)
    assert linear.global_effect_size.iloc[0] > 0
    flagged = linear[linear.flagged]
    assert len(flagged) >= 10 and linear.with_global_shift.mean() >= GLOBAL_SHARE  # every connection moved
    notes = global_shift_notes(stats)
    assert any(n.startswith("linear, shifted: ") and "mean FC higher" in n for n in notes)
    page = (shifted / "out" / "group" / "group_report.html").read_text()
    assert "Global shift: linear, shifted" in page
    # no shift, no note: the same table with the global test made non-significant
    assert global_shift_notes(stats.assign(with_global_shift=False)) == []
    # focal changes move the mean FC too, but only their own connections go its way: no note
    two_focal = stats.index.isin(stats[stats.flagged].index[:2])
    assert global_shift_notes(stats.assign(with_global_shift=two_focal)) == []
