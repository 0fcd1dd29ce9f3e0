"""Figures of benchmarks/realdata.py's PCNtoolkit side by side (no real data, no PCNtoolkit needed)."""

import sys
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import realdata  # noqa: E402

from nmflow.normative.deviations import residual_scale  # noqa: E402


def test_msll_of_nmflow_gaussian_z_is_half_log_smse():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [1, 2, 3, 4, 5]
    r = 0.5 * x + rng.normal(size=x.shape)  # some residual, in the units of x
    reference = np.ones(len(x), bool)
    scale = residual_scale(r, reference)
    msll = realdata.msll(x, realdata.gaussian_logp(r / scale, scale))
    smse = np.mean(r ** 2, axis=0) / x.var(axis=0)  # ddof=0, as the trivial model's SD
    assert np.isclose(msll, np.mean(0.5 * np.log(smse)))
    # the trivial model itself scores 0, a perfect-ish one far below
    assert np.isclose(realdata.msll(x, realdata.gaussian_logp((x - x.mean(0)) / x.std(0), x.std(0))), 0)


def test_auc_interval_is_the_mann_whitney_auc_with_a_stratified_bootstrap():
    rng = np.random.default_rng(1)
    positive = np.arange(150) < 50
    score = rng.normal(size=150) + 0.8 * positive
    point, low, high = realdata.auc_interval(score, positive, n_boot=500)
    expected = mannwhitneyu(score[positive], score[~positive]).statistic / (50 * 100)
    assert np.isclose(point, expected) and low < point < high and high - low < 0.3
    assert realdata.auc_interval(score, positive, n_boot=500) == (point, low, high)  # seeded


def test_pcntoolkit_rows_are_skipped_with_one_message_when_absent(monkeypatch):
    monkeypatch.setattr(realdata.importlib.util, "find_spec", lambda name: None)
    assert "not installed" in realdata.pcntoolkit_missing()
