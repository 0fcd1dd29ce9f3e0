"""Statistics: BH, Mann-Whitney/rank-biserial, flags and sharing, networks, Crawford-Howell."""

import numpy as np
import pytest
from scipy import stats

from nmflow.participant.atlas import YEO_NAMES
from nmflow.group.stats import (benjamini_hochberg, crawford_howell, crawford_howell_loo, group_statistics,
                          mann_whitney, network_pair_summary, rank_biserial, single_case_null_rate,
                          single_case_table)
from nmflow.networks import region_systems


def test_benjamini_hochberg_hand_computed():
    # sorted p 0.01 0.03 0.04 0.5, m=4: p*m/k = 0.04 0.06 0.0533 0.5 -> running min from the top
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, np.nan, 0.5]))
    np.testing.assert_allclose(q[[0, 1, 2, 4]], [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert np.isnan(q[3])


def _reference_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg written out (the function nmflow had before it used SciPy's)."""
    q = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m:
        order = finite[np.argsort(p[finite], kind="stable")]
        scaled = p[order] * m / np.arange(1, m + 1)
        q[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return q


@pytest.mark.parametrize("seed", range(20))
def test_benjamini_hochberg_matches_scipy_with_ties_and_nans(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 300))
    p = rng.uniform(0, 1, m) ** rng.uniform(0.3, 3)
    p = np.round(p, 2) if seed % 2 else p  # ties
    p[rng.random(m) < 0.15] = np.nan
    p[rng.random(m) < 0.05] = 1.0
    q = benjamini_hochberg(p)
    np.testing.assert_array_equal(np.isnan(q), np.isnan(p))
    np.testing.assert_allclose(q, _reference_bh(p), rtol=0, atol=1e-12)
    finite = ~np.isnan(p)
    if finite.any():
        np.testing.assert_allclose(q[finite], stats.false_discovery_control(p[finite]), rtol=0, atol=1e-12)


def test_benjamini_hochberg_without_finite_values():
    assert np.isnan(benjamini_hochberg(np.array([np.nan, np.inf]))).all()
    assert benjamini_hochberg(np.array([])).shape == (0,)


def test_mann_whitney_and_rank_biserial_hand_computed():
    patients = np.array([[5.0, 1.0], [6.0, 2.0], [7.0, 3.5]])
    controls = np.array([[1.0, 3.0], [2.0, 4.0], [3.0, 5.0], [4.0, 6.0]])
    u, p = mann_whitney(patients, controls)
    # column 0: every patient above every control, U = 12, exact p = 2 / C(7,3)
    # column 1: pairs patient > control: 3.5 > 3 only -> U = 1
    np.testing.assert_allclose(u, [12, 1])
    assert p[0] == pytest.approx(2 / 35)
    np.testing.assert_allclose(rank_biserial(u, 3, 4), [1.0, 2 / 12 - 1])


def test_group_statistics_flags_and_sharing():
    rng = np.random.default_rng(0)
    n = 15
    scores = rng.normal(size=(3 * n, 4))
    groups = np.array(["control"] * n + ["A"] * n + ["B"] * n)
    scores[groups == "A", 0] += 3  # shared
    scores[groups == "B", 0] += 3
    scores[groups == "A", 1] += 3  # specific to A
    table = group_statistics(scores, groups, "control", ["c0", "c1", "c2", "c3"])
    flagged = table[table.flagged]
    assert set(zip(flagged.group, flagged.connection)) == {("A", 0), ("B", 0), ("A", 1)}
    assert set(flagged[flagged.connection == 0].sharing) == {"shared"}
    assert flagged[flagged.connection == 1].sharing.item() == "specific"
    assert (table[~table.flagged].sharing == "").all()
    assert (table.effect_size[table.flagged] > 0.8).all()
    # raw rule flags at least what FDR flags
    raw = group_statistics(scores, groups, "control", ["c0", "c1", "c2", "c3"], p_rule="raw")
    assert raw.flagged.sum() >= table.flagged.sum()
    np.testing.assert_allclose(raw.q, table.q)


def test_network_pairs_yeo17():
    systems = region_systems(YEO_NAMES[17])
    assert systems[:4] == ["Visual", "Visual", "SomMot", "SomMot"]
    assert region_systems(["7Networks_LH_Vis_1", "7Networks_RH_Default_PFC_2", "x"]) == [
        "Visual", "Default", "Other"]
    n = 17
    table = group_statistics(np.zeros((6, n * (n - 1) // 2)), np.array(["control"] * 3 + ["A"] * 3),
                             "control", [str(k) for k in range(136)])
    table.loc[0, "flagged"] = True  # connection 0 = 1_Visual_A - 2_Visual_B
    summary = network_pair_summary(table, YEO_NAMES[17])
    vis = summary[(summary.system_a == "Visual") & (summary.system_b == "Visual")].iloc[0]
    assert (vis.n_connections, vis.n_flagged) == (1, 1)
    assert summary.n_connections.sum() == 136


def test_crawford_howell_worked_example():
    controls = np.array([[10.0], [12.0], [14.0], [16.0], [18.0]])  # mean 14, sd sqrt(10)
    result = crawford_howell(np.array([[20.0]]), controls)
    t, p, df = result.t, result.p_two_sided, result.df
    # t = 6 / (sqrt(10) * sqrt(6/5)) = sqrt(3); df = 4
    assert df == 4
    assert t[0, 0] == pytest.approx(np.sqrt(3))
    # t CDF for df=4: 1/2 + 3/8 * x * (1 - t^2 / (12 (1 + t^2/4))), x = t / sqrt(1 + t^2/4)
    x = np.sqrt(3) / np.sqrt(1.75)
    assert p[0, 0] == pytest.approx(2 * (0.5 - 3 / 8 * x * (1 - 3 / (12 * 1.75))), rel=1e-9)


def test_single_case_table_long_format_and_flags():
    controls = np.array([[10.0, 1.0], [12.0, 2.0], [14.0, 3.0], [16.0, 4.0], [18.0, 5.0]])
    cases = np.array([[20.0, 3.0], [14.0, 30.0]])
    table = single_case_table(cases, controls, ["sub-a", "sub-b"], ["x", "y"], alpha=0.05, rule="raw")
    assert list(table.participant_id) == ["sub-a", "sub-a", "sub-b", "sub-b"]
    assert table.t.iloc[0] == pytest.approx(np.sqrt(3))  # the worked example above
    assert table.t.iloc[1] == pytest.approx(0.0) and table.t.iloc[2] == pytest.approx(0.0)
    assert list(table.flagged) == [False, False, False, True]
    q = single_case_table(cases, controls, ["sub-a", "sub-b"], ["x", "y"], rule="fdr").q.to_numpy()
    np.testing.assert_allclose(q[2:], benjamini_hochberg(table.p.to_numpy()[2:]))
    assert (table.n_controls == 5).all() and (table.df == 4).all()


def test_leave_one_out_crawford_howell_equals_explicit_loop():
    x = np.random.default_rng(3).normal(size=(9, 4))
    t, p, df = crawford_howell_loo(x)
    assert df == 7
    for i in range(9):
        single = crawford_howell(x[i], np.delete(x, i, axis=0))
        ti, pi = single.t, single.p_two_sided
        np.testing.assert_allclose(t[i], ti, rtol=1e-10)
        np.testing.assert_allclose(p[i], pi, rtol=1e-10)


def test_max_t_family_wise_p_counts_control_maxima():
    rng = np.random.default_rng(4)
    controls = rng.normal(size=(19, 30))
    maxima = np.sort(np.nanmax(np.abs(crawford_howell_loo(controls)[0]), axis=1))
    case = np.zeros((1, 30))
    case[0, 0] = 100.0  # beyond every control's maximum: the smallest possible p_fwe
    case[0, 1] = 1e-9  # |t| ~ 0: every control's maximum is larger
    table = single_case_table(case, controls, ["sub-x"], [f"c{k}" for k in range(30)], rule="maxt")
    assert table.p_fwe.iloc[0] == pytest.approx(1 / 20) and not table.flagged.iloc[0]  # 0.05 is not < 0.05
    assert table.p_fwe.iloc[1] == pytest.approx(1.0)
    t_mid = table.t.iloc[2:].abs()
    expected = (1 + (maxima[None] >= t_mid.to_numpy()[:, None]).sum(1)) / 20
    np.testing.assert_allclose(table.p_fwe.iloc[2:], expected)


def test_single_case_null_rate_near_alpha_for_dependent_heavy_tailed_scores():
    # 400 controls x 200 connections driven by 5 shared factors with Student-t(4) tails:
    # Benjamini-Hochberg on the parametric p over-flags, max-T stays at its level
    rng = np.random.default_rng(5)
    factors = rng.standard_t(4, size=(400, 5)) @ rng.normal(size=(5, 200))
    scores = factors + rng.standard_t(4, size=(400, 200))
    maxt = single_case_null_rate(scores, 0.05, "maxt")
    assert 0.03 <= maxt <= 0.07
    assert single_case_null_rate(scores, 0.05, "fdr") > 0.1


@pytest.mark.parametrize("rule", ["maxt", "fdr", "raw"])
def test_single_case_null_rate_in_column_blocks_equals_all_at_once(rule, monkeypatch):
    from nmflow.group import stats

    scores = np.random.default_rng(3).standard_t(4, size=(40, 300))
    whole = single_case_null_rate(scores, 0.05, rule)
    t, p, _ = crawford_howell_loo(scores)
    maxima = np.abs(t).max(axis=1)
    monkeypatch.setattr(stats, "NULL_COLUMNS", 7)  # 43 blocks, the last one of 6 columns
    assert single_case_null_rate(scores, 0.05, rule) == whole
    np.testing.assert_array_equal(stats.null_maxima(scores), maxima)
