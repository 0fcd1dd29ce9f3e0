"""ComBat: equals neuroCombat on the training data, removes site, keeps effects, fallbacks."""

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
from helpers.group import make_cohort, planted_mask

from nmflow.normative.harmonize import apply_combat, fit_combat, harmonize, site_accuracy
from nmflow.group.stats import group_statistics


def _toy(n=40, f=12, seed=0):
    rng = np.random.default_rng(seed)
    site = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    age = rng.uniform(20, 70, n)
    sex = rng.choice(["F", "M"], n)
    x = (rng.normal(size=(n, f)) + (site == "b")[:, None] * 1.5 + (site == "c")[:, None] * rng.normal(0, 1, f)
         + 0.03 * age[:, None] + 0.5 * (sex == "M")[:, None])
    x[site == "c"] *= 1.7
    return x, site, pd.DataFrame({"age": age, "sex": sex})


def test_fit_then_apply_equals_neurocombat_on_training_data():
    from neuroCombat import neuroCombat

    x, site, cov = _toy()
    fit = fit_combat(x, site, cov)
    ours = apply_combat(fit, x, site, cov)
    covars = cov.assign(site=site)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = neuroCombat(x.T, covars, "site", categorical_cols=["sex"], continuous_cols=["age"])["data"].T
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    assert np.abs(ours - x).max() > 0.5  # it did change the data


def test_apply_to_new_subjects_keeps_their_own_covariates():
    x, site, cov = _toy(n=60)
    fit = fit_combat(x[:40], site[:40], cov.iloc[:40])
    new = apply_combat(fit, x[40:], site[40:], cov.iloc[40:].reset_index(drop=True))
    # applying subject by subject gives the same as in a batch (no use of batch statistics)
    one = np.vstack([apply_combat(fit, x[k:k + 1], site[k:k + 1], cov.iloc[k:k + 1]) for k in range(40, 60)])
    np.testing.assert_allclose(new, one)
    # the age slope survives harmonisation of new subjects (true slope 0.03 per feature)
    slope = np.polyfit(cov.age[40:], new.mean(axis=1), 1)[0]
    assert slope == pytest.approx(0.03, abs=0.015)


def test_site_removed_effects_kept_on_simulated_cohort():
    cohort = make_cohort(n_controls=80, motion=0.0, site_strength=0.8, seed=1, effect=0.35)
    subjects = cohort.subjects
    x = cohort.features["simple"]
    controls = (subjects.group == "control").to_numpy()
    train = controls & (np.arange(len(x)) % 10 < 6)
    out, ok, messages = harmonize(x, subjects.site.to_numpy(), subjects[["age", "sex"]], train)
    assert ok.all() and messages == []
    before, chance = site_accuracy(x[controls], subjects.site[controls], train[controls])
    after, _ = site_accuracy(out[controls], subjects.site[controls], train[controls])
    assert before > 0.9
    assert abs(after - chance) <= 0.1
    tested = ~train
    table = group_statistics(out[tested], subjects.group.to_numpy()[tested], "control", cohort.names)
    for group in ("disorderA", "disorderB"):
        truth = planted_mask(cohort.planted, group, x.shape[1])
        flagged = table[table.group == group].flagged.to_numpy()
        assert (flagged & truth).sum() / truth.sum() >= 0.8


def test_fallbacks_single_subject_and_unseen_sites():
    x, site, cov = _toy(n=40)
    site = site.astype(object)
    site[0] = "lonely"
    site[1] = "unseen"
    train = np.ones(40, bool)
    train[1] = False
    out, ok, messages = harmonize(x, site, cov, train)
    assert not ok[0] and not ok[1] and ok[2:].all()
    np.testing.assert_array_equal(out[:2], x[:2])
    assert any("'lonely' has 1 training control" in m for m in messages)
    assert any("'unseen' has no training controls" in m for m in messages)
    one_site = np.array(["a"] * 40)
    out, ok, messages = harmonize(x, one_site, cov, train)
    assert not ok.any() and "skipped" in messages[-1]
    np.testing.assert_array_equal(out, x)


def test_constant_covariate_is_a_clear_error():
    from nmflow.errors import NmflowInputError

    x, site, cov = _toy()
    with pytest.raises(NmflowInputError, match="singular"):
        fit_combat(x, site, cov.assign(age=30.0))
