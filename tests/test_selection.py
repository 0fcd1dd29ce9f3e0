"""Variant selection on control-only criteria: bootstrap, deviation stability, ranking gates."""

import numpy as np
import pandas as pd
import pytest

from nmflow.group.selection import bootstrap_weights, deviation_stability, rank_variants


def test_bootstrap_weights_resample_every_row():
    w = bootstrap_weights(15, 4, np.random.default_rng(0))
    assert w.shape == (4, 15) and (w.sum(1) == 15).all() and (w >= 0).all()
    assert len({tuple(r) for r in w}) == 4 and ((w == 0).sum(1) > 0).all()  # every resample leaves rows out


def test_deviation_stability_hand_computed():
    rng = np.random.default_rng(1)
    signal = rng.normal(size=(30, 8))
    oob = np.ones((3, 30), bool)
    same = np.stack([signal, 2 * signal, signal])  # per-connection scaling does not matter
    assert deviation_stability(same, oob) == pytest.approx(1.0)
    noisy = np.stack([signal + rng.normal(size=signal.shape) for _ in range(3)])
    # two models' residuals share the signal (variance 1) and add independent noise (variance 1): r = 1/2
    assert deviation_stability(noisy, oob) == pytest.approx(0.5, abs=0.08)
    # only rows out of bag in both models count
    oob2 = np.zeros((2, 30), bool)
    oob2[0, :20], oob2[1, 10:] = True, True
    a, b = signal.copy(), signal.copy()
    b[:10] = -signal[:10]  # disagreement on rows 0-9, which model 1 trained on
    assert deviation_stability(np.stack([a, b]), oob2) == pytest.approx(1.0)
    assert np.isnan(deviation_stability(same[:1], oob[:1]))


def test_rank_variants_gates_then_explained_variance():
    table = pd.DataFrame({
        "variant": ["a", "b", "c", "d"], "stability": [0.95, 0.9, 0.99, 0.5],
        "frac_abs_z_gt_1.96": [0.05, 0.05, 0.12, 0.05], "z_excess_kurtosis": [0.1, 0.2, 0.1, 0.1],
        "explained_variance": [0.1, 0.4, 0.5, 0.6]})
    ranked = rank_variants(table)
    assert list(ranked.variant[:2]) == ["b", "a"]  # d explains more but is unstable, c is miscalibrated
    assert ranked.selected.tolist() == [True, False, False, False]
    assert ranked.qualifies.tolist()[:2] == [True, True] and not ranked.qualifies.iloc[2:].any()
    heavy = rank_variants(table.assign(z_excess_kurtosis=3.0))
    assert not heavy.selected.any() and not heavy.qualifies.any()  # no variant gives stable findings
    worse = rank_variants(table.assign(explained_variance=[-0.01, 0.4, 0.5, 0.6]))
    assert worse.set_index("variant").qualifies.to_dict() == {"a": False, "b": True, "c": False, "d": False}
