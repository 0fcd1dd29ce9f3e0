"""Region extraction and cleaning against nilearn's NiftiLabelsMasker + signal.clean."""

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn import signal
from nilearn.maskers import NiftiLabelsMasker

from nmflow.participant.atlas import resolve_atlas
from nmflow.participant.denoise import PRESETS, CleaningSettings, censoring, clean_run, read_confounds, select_confounds
from nmflow.participant.parcellate import extract_signals


def _run_files(dataset, sub="sub-01"):
    func = dataset["fmriprep"] / sub / "func"
    bold = next(func.glob("*desc-preproc_bold.nii.gz"))
    mask = next(func.glob("*desc-brain_mask.nii.gz"))
    confounds = next(func.glob("*desc-confounds_timeseries.tsv"))
    return bold, mask, confounds


@pytest.mark.parametrize("strategy", ["simple", "scrubbing", "gsr", "compcor", "none"])
def test_timeseries_equal_nilearn_masker_and_clean(tiny_dataset, strategy):
    bold, mask, confounds_path = _run_files(tiny_dataset)
    atlases = [resolve_atlas(a, tiny_dataset["atlas_dir"]) for a in ("yeo17thick", "yeo7thin")]
    raw = extract_signals(bold, mask, atlases)
    table = read_confounds(confounds_path)
    settings = CleaningSettings()
    chosen = PRESETS[strategy]
    ours = clean_run(raw.signals, table, 2.0, chosen, settings)

    # nilearn averages in the image's dtype; give it float64 so both sides accumulate alike
    img = nib.load(bold)
    bold64 = nib.Nifti1Image(img.get_fdata(dtype=np.float64), img.affine, img.header)
    design = select_confounds(table, chosen)
    kept = np.flatnonzero(censoring(table, chosen, settings)["censored"].to_numpy() == 0)
    for atlas in atlases:
        masker = NiftiLabelsMasker(labels_img=str(atlas.image), mask_img=str(mask), strategy="mean")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            region_means = masker.fit_transform(bold64)
        ref = signal.clean(
            region_means, confounds=design.to_numpy() if design.shape[1] else None, sample_mask=kept,
            t_r=2.0, detrend=chosen.filter, filter="butterworth" if chosen.filter else False,
            low_pass=0.1 if chosen.filter else None, high_pass=0.01 if chosen.filter else None,
            standardize="psc", standardize_confounds=True)
        assert ours.timeseries[atlas.name].shape == ref.shape
        np.testing.assert_allclose(ours.timeseries[atlas.name], ref, atol=1e-6, rtol=1e-6)


def test_scrubbing_censors_high_fd_and_non_steady_state(tiny_dataset):
    table = read_confounds(_run_files(tiny_dataset)[2])
    out = censoring(table, PRESETS["scrubbing"], CleaningSettings(min_segment=1))
    fd = table["framewise_displacement"].fillna(0).to_numpy()
    dvars = table["std_dvars"].fillna(0).to_numpy()
    expected = (fd > 0.5) | (dvars > 3.0)
    expected[:2] = True  # the simulator's two non-steady-state volumes
    np.testing.assert_array_equal(out["censored"].to_numpy().astype(bool), expected)
    no_scrub = censoring(table, PRESETS["simple"], CleaningSettings())
    assert no_scrub["censored"].sum() == 2


def test_short_segments_between_censored_volumes_are_dropped(tiny_dataset):
    table = read_confounds(_run_files(tiny_dataset)[2]).copy()
    table["framewise_displacement"] = 0.0
    table["std_dvars"] = 1.0
    table.loc[[20, 23], "framewise_displacement"] = 2.0  # leaves a 2-volume segment 21-22
    out = censoring(table, PRESETS["scrubbing"], CleaningSettings(min_segment=5))
    assert out["censored"].iloc[20:24].tolist() == [1, 1, 1, 1]
    assert out["censored"].iloc[24] == 0


def test_low_coverage_region_becomes_nan(tiny_copy):
    bold, mask, _ = _run_files(tiny_copy)
    atlas = resolve_atlas("yeo17thick", tiny_copy["atlas_dir"])
    labels = np.asarray(nib.load(atlas.image).dataobj)
    mask_img = nib.load(mask)
    cut = np.asarray(mask_img.dataobj).copy()
    cut[labels == 5] = 0  # region 5 entirely outside the mask
    nib.Nifti1Image(cut, mask_img.affine).to_filename(mask)
    with pytest.warns(UserWarning, match="below 50% coverage"):
        raw = extract_signals(bold, mask, [atlas])
    assert raw.coverage[atlas.name][4] == 0
    assert np.isnan(raw.signals[atlas.name][:, 4]).all()
    assert np.isfinite(np.delete(raw.signals[atlas.name], 4, axis=1)).all()


@pytest.mark.parametrize("standardize", ["zscore_sample", "psc", None])
def test_region_the_confounds_explain_is_a_strategy_error(standardize):
    """A region equal to a confound regressed out: nothing but rounding is left, which z-scoring would blow up
    to unit variance; it is reported by name as a problem of that strategy."""
    from nmflow.errors import StrategyError
    from nmflow.participant.denoise import Strategy

    rng = np.random.default_rng(0)
    confounds = pd.DataFrame({"csf": rng.normal(size=80), "white_matter": rng.normal(size=80)})
    signals = {"toy": np.column_stack([1000 + rng.normal(size=80), 1000 + 5 * confounds["csf"].to_numpy()])}
    strategy = Strategy("csfonly", ("csf",), filter=False)
    settings = CleaningSettings(standardize=standardize, min_volumes=10)
    with pytest.raises(StrategyError, match=r"c.tsv: atlas toy: region\(s\) B are left constant by the cleaning "
                                            r"of strategy 'csfonly'"):
        clean_run(signals, confounds, 2.0, strategy, settings, "c.tsv", {"toy": ["A", "B"]}, "bold.nii.gz")
    kept = clean_run({"toy": signals["toy"][:, :1]}, confounds, 2.0, strategy, settings, "c.tsv")
    assert np.isfinite(kept.timeseries["toy"]).all() and kept.timeseries["toy"].std() > 0


@pytest.mark.parametrize("low_pass, high_pass", [(0.1, 0.01), (0.1, None), (None, 0.01)])
def test_a_run_too_short_for_the_filter_is_a_strategy_error(low_pass, high_pass):
    """The fewest volumes nilearn's filter accepts: one fewer fails inside nilearn, which is reported as a
    one-line problem of that strategy (the strategies that do not filter go on)."""
    from nilearn.signal import clean

    from nmflow.errors import StrategyError
    from nmflow.participant.denoise import Strategy, filter_min_volumes

    settings = CleaningSettings(low_pass=low_pass, high_pass=high_pass, min_volumes=5, standardize=None)
    shortest = filter_min_volumes(2.0, settings)
    rng = np.random.default_rng(0)
    for n, fails in ((shortest, False), (shortest - 1, True)):  # against nilearn itself
        run = lambda: clean(rng.normal(size=(n, 2)), t_r=2.0, detrend=True, filter="butterworth",  # noqa: E731
                            low_pass=low_pass, high_pass=high_pass, standardize=None)
        if fails:
            with pytest.raises(ValueError, match="padlen"):
                run()
        else:
            run()
    confounds = pd.DataFrame({"csf": rng.normal(size=shortest - 1)})
    signals = {"toy": 1000 + rng.normal(size=(shortest - 1, 2))}
    with pytest.raises(StrategyError, match=rf"c.tsv: only {shortest - 1} volumes: the Butterworth filter of "
                                            rf"strategy 'csfonly'.* needs at least {shortest}"):
        clean_run(signals, confounds, 2.0, Strategy("csfonly", ("csf",)), settings, "c.tsv")
    unfiltered = clean_run(signals, confounds, 2.0, Strategy("csfonly", ("csf",), filter=False), settings, "c.tsv")
    assert np.isfinite(unfiltered.timeseries["toy"]).all()
