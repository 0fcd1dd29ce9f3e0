"""Stimulus study, participant science: events, GLM (against nilearn's FirstLevelModel), split, seed-map test."""

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers.participant import run_files

from nmflow.errors import NmflowInputError
from nmflow.participant.denoise import PRESETS, CleaningSettings, censoring, read_confounds, select_confounds
from nmflow.prepost.events import Stimulus, check_within_run, read_stimulus, stimulus_for_run
from nmflow.prepost.glm import design_matrix, fit_glm, read_bold
from nmflow.prepost.seedmaps import effective_samples, seed_change
from nmflow.prepost.split import check_segments, segment_labels
from nmflow.simulate.population import bandlimited_batch

TR = 2.0  # the tiny dataset's


@pytest.fixture(scope="module")
def run(tiny_dataset):
    files = run_files(tiny_dataset["fmriprep"], "01")
    table = read_confounds(files["confounds"])
    strategy = PRESETS["scrubbing"]  # censors non-steady-state and high-motion volumes
    censored = censoring(table, strategy, CleaningSettings(fd_threshold=0.3))["censored"].to_numpy() == 1
    bold = read_bold(files["bold"], files["mask"])
    times = np.arange(bold.data.shape[0]) * TR
    design = design_matrix(times, Stimulus(80.0, 10.0), select_confounds(table, strategy), 0.01)
    return {**files, "bold_matrix": bold, "design": design, "fitted": np.flatnonzero(~censored)}


def test_glm_residuals_and_r_square_equal_nilearn_first_level_model(run):
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.maskers import NiftiMasker

    assert 5 < run["fitted"].size < 100  # some volumes are censored
    fit = fit_glm(run["bold_matrix"].data, run["design"].to_numpy(), run["fitted"])
    source = nib.load(run["bold"])  # float32 on disk: nilearn would compute in float32 (1e-5 differences)
    bold64 = nib.Nifti1Image(np.asarray(source.dataobj, dtype=np.float64), source.affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FirstLevelModel(t_r=TR, noise_model="ols", mask_img=str(run["mask"]), minimize_memory=False,
                                signal_scaling=0).fit(bold64, design_matrices=[run["design"]],
                                                      sample_masks=[run["fitted"]])
        masker = NiftiMasker(str(run["mask"])).fit()
        residuals = masker.transform(model.residuals_[0])
        r_square = masker.transform(model.r_square_[0])[0]
    mask = run["bold_matrix"].mask
    ours, ours_r2 = _c_order(fit.residuals, mask), _c_order(fit.r_square[None], mask)[0]
    assert residuals.shape == ours.shape == (run["fitted"].size, run["bold_matrix"].data.shape[1])
    assert np.abs(residuals - ours).max() < 1e-6
    np.testing.assert_allclose(ours_r2, r_square, atol=1e-6)
    assert list(run["design"].columns[:1]) == ["stimulus"] and "constant" in run["design"].columns


def _c_order(values, mask):
    """``(k, n_voxels)`` values in our (Fortran) voxel order -> nilearn's masker (C) order, in float64."""
    full = np.zeros((values.shape[0], mask.size))
    full[:, mask.ravel(order="F")] = values
    volumes = full.reshape((values.shape[0],) + mask.shape[::-1]).transpose(0, 3, 2, 1)
    return volumes[:, mask]


def test_image_round_trip_keeps_voxel_positions(run):
    bold = run["bold_matrix"]
    img = bold.image(bold.data[:3])
    data = np.asarray(img.dataobj)
    first = np.asarray(nib.load(run["bold"]).dataobj)[..., :3]
    np.testing.assert_allclose(data[bold.mask], first[bold.mask], rtol=1e-6)
    assert (data[~bold.mask] == 0).all()


def test_segments_exclude_the_transition_window_and_censored_volumes():
    times = np.arange(100) * 2.0
    censored = np.zeros(100, bool)
    censored[[0, 1, 70]] = True
    labels = segment_labels(times, Stimulus(90.0, 10.0), 20.0, censored)
    # PRE: t < 70 s (volumes 0-34), POST: t >= 120 s (volumes 60-99)
    assert (labels[2:35] == "pre").all() and labels[35] == "transition" and (labels[35:60] == "transition").all()
    assert (labels[60:] != "pre").all() and labels[70] == "censored" and (labels[[0, 1]] == "censored").all()
    assert check_segments(labels, 30, "x") == {"pre": 33, "transition": 25, "post": 39, "censored": 3}
    with pytest.raises(NmflowInputError, match=r"segment too short: PRE has 33 .*--min-volumes 35"):
        check_segments(labels, 35, "bold.nii.gz")


def test_events_file_checks(tmp_path):
    good = tmp_path / "sub-01_task-rest_events.tsv"
    good.write_text("onset\tduration\ttrial_type\n120.5\t8\theat\n")
    assert read_stimulus(good) == Stimulus(120.5, 8.0, "heat", good.name)
    bad = {"onset\ttrial_type\n3\tx\n": "lacks the column",
           "onset\tduration\n3\t1\n50\t1\n": "has 2 events",
           "onset\tduration\nsoon\t1\n": "onset 'soon' is not a number",
           "onset\tduration\n10\tn/a\n": "duration",
           "onset\tduration\n10\t-1\n": "negative",
           "": "cannot read"}
    for text, message in bad.items():
        path = tmp_path / "bad_events.tsv"
        path.write_text(text)
        with pytest.raises(NmflowInputError, match=message) as err:
            read_stimulus(path)
        assert "bad_events.tsv" in str(err.value)
    assert stimulus_for_run(None, 30.0, 5.0, "sub-01") == Stimulus(30.0, 5.0)
    with pytest.raises(NmflowInputError, match="no events.tsv found and no --stimulus-onset"):
        stimulus_for_run(None, None, 0.0, "sub-01_task-rest")
    check_within_run(Stimulus(190.0, 10.0), 100, 2.0, "bold")
    for stimulus in (Stimulus(195.0, 10.0), Stimulus(-1.0, 0.0)):
        with pytest.raises(NmflowInputError, match="outside the run"):
            check_within_run(stimulus, 100, 2.0, "bold")


def _segments(rng, n, n_voxels, rho):
    """Band-limited seed (n, 1) and voxels (n, n_voxels) with true correlation ``rho``, plus white noise."""
    s = bandlimited_batch(1, n, 1 + n_voxels, 2.0, rng)[0]
    seed, other = s[:, :1], s[:, 1:]
    voxels = rho * seed + np.sqrt(1 - rho ** 2) * other
    return seed + 0.3 * rng.normal(size=seed.shape), voxels + 0.3 * rng.normal(size=voxels.shape)


def test_seed_change_test_holds_its_level_and_finds_a_planted_change():
    rng = np.random.default_rng(0)
    pre_seed, pre_vox = _segments(rng, 120, 4000, 0.0)
    post_seed, post_vox = _segments(rng, 140, 4000, 0.0)
    change = seed_change(pre_seed, pre_vox, post_seed, post_vox)
    false_positive = np.mean(change.p < 0.05)
    assert 0.03 <= false_positive <= 0.075  # autocorrelated samples: the plain n - 3 gives about 0.27
    n = np.array([[120.0]])
    assert (effective_samples(pre_seed, pre_vox) < n).mean() > 0.9
    # planted: 200 voxels whose correlation with the seed goes from 0 to 0.8 after the stimulus
    post_seed2, post_vox2 = _segments(rng, 140, 4000, 0.0)
    _, coupled = _segments(rng, 140, 200, 0.8)
    post_vox2[:, :200] = 0.8 * (post_seed2 - post_seed2.mean()) / post_seed2.std() + 0.6 * coupled
    change = seed_change(pre_seed, pre_vox, post_seed2, post_vox2)
    found = change.significant(0.05)[0] != 0
    assert found[:200].mean() > 0.8 and found[200:].mean() < 0.01
    assert (change.z[0, :200] > 0).all()
    assert pd.Series(change.r_post[0, :200]).median() > 0.7
