"""Model selection: overlap measures, bootstrap, batched flags, preference for denoised data."""

import numpy as np
from group_helpers import make_cohort

from nmflow.features import split_controls
from nmflow.normative.model import TrainConfig, fit_scaler
from nmflow.selection import _overlap, bootstrap_weights, flag_sets, halves, select_variants, stability
from nmflow.stats import group_statistics


def test_overlap_hand_computed():
    a = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)
    b = np.array([[0, 1, 1, 0], [0, 0, 0, 0]], bool)
    np.testing.assert_allclose(_overlap(a, b, dice=False), [[1 / 3, 0], [0, 0]])  # empty-empty is 0
    np.testing.assert_allclose(_overlap(a, b, dice=True), [[0.5, 0], [0, 0]])
    assert stability(np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0]], bool)) == (1 + 0.5 + 0.5) / 3


def test_bootstrap_and_halves():
    train = np.array([True] * 10 + [False] * 5)
    w = bootstrap_weights(train, 4, np.random.default_rng(0))
    assert w.shape == (4, 15) and (w.sum(1) == 10).all() and (w[:, 10:] == 0).all()
    assert len({tuple(r) for r in w}) == 4
    groups = np.array(["a"] * 6 + ["b"] * 5)
    h = halves(groups, np.random.default_rng(0))
    assert h[:6].sum() == 3 and h[6:].sum() == 2


def test_flag_sets_match_group_statistics():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(3, 30, 5))
    groups = np.array(["control"] * 10 + ["A"] * 10 + ["B"] * 10)
    scores[:, 10:20, 0] += 2
    flags = flag_sets(scores, groups, "control", 0.05)
    for m in range(3):
        table = group_statistics(scores[m], groups, "control", list("abcde"))
        np.testing.assert_array_equal(flags[m], table.flagged.to_numpy())
    assert flags[:, 0].all()


def test_selection_prefers_denoised_variant():
    cohort = make_cohort(n_controls=60, patients=(("disorderA", 20), ("disorderB", 20)), motion=1.0, seed=4)
    table = cohort.subjects.set_index(cohort.subjects.participant_id.str[4:])
    split = split_controls(table, "control", 0.5, 0.2, seed=0).to_numpy()
    data = {}
    for name in ("none", "simple"):
        mean, scale = fit_scaler(cohort.features[name][split == "train"])
        data[name] = (cohort.features[name] - mean) / scale
    ranking = select_variants(data, table.group.to_numpy(), split, "control", 6,
                              TrainConfig(epochs=150, patience=20))
    assert list(ranking.variant) == ["simple", "none"]
    assert ranking.selected.tolist() == [True, False]
    best = ranking.iloc[0]
    assert best.stability > ranking.iloc[1].stability and best.mean_flagged > 3
