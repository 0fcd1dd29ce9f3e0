"""Cross-fitting plan, per-fit preprocessing and the masked prediction of the autoencoder."""

import weakref
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from nmflow.errors import NmflowInputError
from nmflow.normative.covariates import fit_coder
from nmflow.normative.crossfit import combine, kept_connections, make_folds, mean_fc_residuals, preprocess
from nmflow.normative.deviations import calibration_table, focal_and_global, global_scores, residual_scale
from nmflow.normative.linear import fit_linear, predict_linear
from nmflow.normative.model import forward, init_params, masked_forward, param_shapes


def _table(n_controls=40, n_patients=10, n_sites=2, seed=0):
    rng = np.random.default_rng(seed)
    n = n_controls + n_patients
    return pd.DataFrame({"group": ["control"] * n_controls + ["patient"] * n_patients,
                         "site": [f"s{k % n_sites}" for k in range(n)], "age": rng.uniform(20, 70, n),
                         "sex": rng.choice(["F", "M"], n)}, index=[f"{k:03d}" for k in range(n)])


def test_folds_stratified_by_site_and_disjoint():
    table = _table(43, 7, n_sites=3)
    folds = make_folds(table, "control", n_folds=5, val_split=0.2, seed=3)
    controls = (table.group == "control").to_numpy()
    assert (folds.held_out[controls] >= 0).all() and (folds.held_out[~controls] == -1).all()
    for k in range(5):
        assert not (folds.pool[k] & (folds.held_out == k)).any()  # a fold's controls never fit its models
        assert (folds.pool[k] == (controls & (folds.held_out != k))).all()
        assert not (folds.train[k] & folds.val[k]).any() and (folds.train[k] | folds.val[k] == folds.pool[k]).all()
        assert not folds.pool[k][~controls].any()  # patients fit nothing
    per_site = pd.crosstab(folds.held_out[controls], table.site[controls])
    assert per_site.max().max() - per_site.min().min() <= 1  # sites spread evenly over folds
    assert folds.reference.sum() == 43 and folds.patients.sum() == 7
    again = make_folds(table, "control", n_folds=5, val_split=0.2, seed=3)
    assert (again.held_out == folds.held_out).all() and (again.val == folds.val).all()
    with pytest.raises(NmflowInputError, match="too few"):
        make_folds(_table(8, 4), "control", n_folds=5)


def test_kept_connections_decided_in_every_pool():
    x = np.ones((10, 3))
    x[:3, 1] = np.nan  # 30 % missing overall
    x[:, 2] = np.nan
    pools = np.array([np.arange(10) >= 3, np.arange(10) < 6])
    # column 1: 0 % missing in pool 0, 50 % in pool 1 -> dropped; column 2 never observed
    assert kept_connections(x, pools, 0.2).tolist() == [True, False, False]


def test_linear_baseline_equals_numpy_lstsq_and_recovers_slopes():
    rng = np.random.default_rng(2)
    age = rng.uniform(20, 70, 200)
    y = 0.5 + 0.02 * age[:, None] * np.array([1.0, -2.0]) + 0.01 * rng.normal(size=(200, 2))
    coder = fit_coder(pd.DataFrame({"age": age}))
    coded = coder.transform(pd.DataFrame({"age": age}))
    beta = fit_linear(y, coded)
    sd = age.std(ddof=1)
    np.testing.assert_allclose(beta[1] / sd, [0.02, -0.04], rtol=0.02)  # slope per year
    np.testing.assert_allclose(predict_linear(beta, coded), np.column_stack([np.ones(200), coded]) @ beta)


def test_preprocess_fits_on_the_pool_only():
    table = _table()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    pool = np.zeros(50, bool)
    pool[:20] = True
    controls = (table.group == "control").to_numpy()
    prep = preprocess(x, table, pool, ["age", "sex"], "none", controls)
    np.testing.assert_allclose(prep.mean, x[:20].mean(0))
    assert prep.coder.numeric["age"][0] == pytest.approx(table.age[:20].mean())
    assert prep.coder.column_names == ["age", "sex=M", "site=s1"]  # site conditions the unharmonised model
    changed = x.copy()
    changed[20:] += 100  # everything outside the pool
    again = preprocess(changed, table, pool, ["age", "sex"], "none", controls)
    np.testing.assert_array_equal(again.mean, prep.mean)
    np.testing.assert_allclose(again.linear, prep.linear)


def test_combine_own_fold_for_controls_mean_for_patients():
    table = _table(10, 2)
    folds = make_folds(table, "control", n_folds=2, val_split=0.0, seed=0)
    held = []

    def fit(prediction):  # a fit's features and prediction, made when asked (as read from a record)
        pair = SimpleNamespace(features=np.zeros((12, 1)), scale=np.ones(1)), np.full((12, 1), prediction)
        held.extend(weakref.ref(a) for a in (pair[0].features, pair[1]))
        return pair

    def fits():
        for prediction in (1.0, 3.0):
            assert all(ref() is None for ref in held), "combine holds a fit while the next one is made"
            yield fit(prediction)

    res = combine(folds, fits())
    np.testing.assert_allclose(res.residual[folds.held_out == 0], -1.0)
    np.testing.assert_allclose(res.residual[folds.held_out == 1], -3.0)
    np.testing.assert_allclose(res.residual[folds.patients], -2.0)


def test_residual_scale_and_global_scores_hand_computed():
    r = np.array([[1.0, 2.0], [-1.0, -2.0], [3.0, 0.0]])
    ref = np.array([True, True, False])
    np.testing.assert_allclose(residual_scale(r, ref)[0], [1.0, 2.0])  # root mean square of the reference
    z = r / residual_scale(r, ref)
    scores = global_scores(z, ref, np.abs(z))
    np.testing.assert_allclose(scores.mean_sq_z, [1.0, 1.0, 4.5])
    # subject 3 is above both controls; each control is tied with the other one
    np.testing.assert_allclose(scores.global_score, [50.0, 50.0, 100.0])
    assert scores.n_extreme.tolist() == [0, 0, 1]


def test_masked_forward_hides_each_feature_from_its_own_prediction():
    params = init_params(param_shapes(10, 0), [0])
    x = torch.randn(4, 10)
    out = masked_forward(params, x, None, 0.2)
    changed = x.clone()
    changed[:, 3] += 5.0  # feature 3 is in block 3 of 5
    out2 = masked_forward(params, changed, None, 0.2)
    assert torch.equal(out[..., 3], out2[..., 3])  # its prediction never sees it
    assert not torch.equal(out[..., 4], out2[..., 4])  # the others' predictions do
    hidden = (torch.arange(10) % 5 == 3).float()
    torch.testing.assert_close(out[..., 3], forward(params, x * (1 - hidden))[..., 3])
    assert torch.equal(masked_forward(params, x, None, 0.0), forward(params, x))


def test_global_score_responds_to_focal_deviations():
    rng = np.random.default_rng(7)
    z = rng.normal(size=(201, 136))
    ref = np.arange(201) < 200
    z[200] = rng.normal(size=136)
    z[200, :3] = [6.0, -5.5, 5.5]  # three extreme connections, the other 133 ordinary (100 of 100 seeds: >= 99)
    scores = global_scores(z, ref, np.abs(z))
    assert scores.global_score.iloc[200] >= 99 and scores.n_extreme.iloc[200] >= 3
    assert scores.global_score[ref].between(0, 100).all() and abs(scores.global_score[ref].mean() - 50) < 1


def test_qc_fc_of_deviations_equals_scipy_on_planted_motion():
    rng = np.random.default_rng(11)
    n, k = 120, 40
    fd = rng.gamma(2.0, 0.08, n)  # mm
    z = rng.normal(size=(n, k))
    z[:, :10] += 3.0 * (fd - fd.mean())[:, None] / fd.std()  # 10 connections built to follow motion
    reference = np.arange(n) < 100
    sites = np.where(np.arange(n) % 2, "a", "b")
    calib = calibration_table(z, z, z, reference, sites, [f"c{j}" for j in range(k)], fd)
    r, p = np.array([sps.pearsonr(fd[reference], z[reference, j]) for j in range(k)]).T
    overall = calib.iloc[0]
    assert overall.qcfc_median_abs_r == pytest.approx(np.median(np.abs(r)), rel=1e-9)
    assert overall.qcfc_pct_p05 == pytest.approx(100 * np.mean(p < 0.05))
    assert overall.qcfc_pct_p05 >= 25  # the 10 planted connections at least
    site_a = reference & (sites == "a")
    r_a = [sps.pearsonr(fd[site_a], z[site_a, j])[0] for j in range(k)]
    assert calib.set_index("scope").loc["a"].qcfc_median_abs_r == pytest.approx(np.median(np.abs(r_a)), rel=1e-9)
    per_connection = calib[calib.connection != "all"]
    np.testing.assert_allclose(per_connection.qcfc_median_abs_r, np.abs(r), rtol=1e-9)
    np.testing.assert_array_equal(per_connection.qcfc_pct_p05, 100.0 * (p < 0.05))
    unknown = calibration_table(z, z, z, reference, sites, [f"c{j}" for j in range(k)], np.full(n, np.nan))
    assert unknown[["qcfc_median_abs_r", "qcfc_pct_p05"]].isna().all().all()


def test_mean_fc_residuals_are_cross_fitted_ols_by_hand():
    table = _table(60, 15, seed=3)
    folds = make_folds(table, "control", n_folds=3, val_split=0.2, seed=0)
    rng = np.random.default_rng(3)
    planted = 0.05 * rng.normal(size=75)  # each subject's own global shift
    x = 0.3 + 0.004 * table.age.to_numpy()[:, None] + planted[:, None] + 0.02 * rng.normal(size=(75, 30))
    controls = (table.group == "control").to_numpy()
    preps = [preprocess(x, table, folds.pool[k], ["age", "sex"], "none", controls) for k in range(3)]
    residual = mean_fc_residuals(folds, preps)
    patients_sum = np.zeros(15)
    for k, prep in enumerate(preps):
        design = np.column_stack([np.ones(75), prep.cond])
        y = prep.features.astype(float).mean(axis=1)
        beta = np.linalg.lstsq(design[folds.pool[k]], y[folds.pool[k]], rcond=None)[0]
        mine = folds.held_out == k
        np.testing.assert_allclose(residual[mine], (y - design @ beta)[mine], atol=1e-6)
        patients_sum += (y - design @ beta)[folds.patients]
    np.testing.assert_allclose(residual[folds.patients], patients_sum / 3, atol=1e-6)
    # the planted shift is what is left: age and sex explained, the connections' own noise averaged out
    assert np.corrcoef(residual, planted)[0, 1] > 0.95


def test_focal_global_and_combined_scores_hand_computed():
    msq = np.array([1.0, 0.5, 2.0, 1.0, 8.0, np.nan])
    residual = np.array([0.1, -0.1, 0.2, -0.2, 0.0, 0.4])
    reference = np.array([True, True, True, True, False, False])
    out = focal_and_global(msq, residual, reference)
    log_ref = np.log(msq[:4])
    np.testing.assert_allclose(out.focal_z[:5], (np.log(msq[:5]) - log_ref.mean()) / log_ref.std(ddof=1))
    np.testing.assert_allclose(out.global_fc_z[:6], residual / np.sqrt(np.mean(residual[:4] ** 2)))
    combined = out.focal_z ** 2 + out.global_fc_z ** 2
    # a control among the 3 others; the patient among all 4
    expected = [100 * np.mean(np.delete(combined[:4], i) < combined[i]) for i in range(4)]
    expected.append(100 * np.mean(combined[:4] < combined[4]))
    np.testing.assert_allclose(out.combined_score[:5], expected)
    assert np.isnan(out.combined_score[5]) and np.isnan(out.focal_z[5])
