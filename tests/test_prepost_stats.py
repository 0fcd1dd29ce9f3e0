"""`nmflow.stats.crawford_howell`: published worked values, the Z-CC interval, shapes."""

import numpy as np
import pytest
from scipy import stats

from nmflow.stats import CrawfordHowellResult, crawford_howell, crawford_howell_summary


def _sample(mean: float, sd: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` controls whose sample mean and SD (ddof 1) are exactly ``mean`` and ``sd``."""
    x = np.random.default_rng(seed).normal(size=n)
    return mean + sd * (x - x.mean()) / x.std(ddof=1)


def test_worked_example_case_minus_2_vs_15_controls():
    # Crawford & Howell (1998) as checked in the singcar package's tests: t = -1.936, one-tailed p = 0.0366
    result = crawford_howell(-2.0, _sample(0.0, 1.0, 15))
    assert isinstance(result, CrawfordHowellResult)
    assert round(result.t, 3) == -1.936 and result.df == 14
    assert round(result.p_less, 4) == 0.0366
    assert result.percent_more_extreme == pytest.approx(100 * result.p_less)
    assert result.p_two_sided == pytest.approx(2 * result.p_less)


def test_worked_example_size_weight_illusion():
    # patient DF vs 28 controls (Hassan et al. 2020, the singcar README): t = -1.7243, df = 27,
    # p (less) = 0.04804, Z-CC = -1.754857, 95 % CI [-2.34, -1.15], proportion below 4.804 % [0.95, 12.47]
    for result in (crawford_howell_summary(0.028149213, 0.1646236, 0.0777695, 28),
                   crawford_howell(0.028149213, _sample(0.1646236, 0.0777695, 28))):
        assert f"{result.t:.5g}" == "-1.7243" and result.df == 27
        assert f"{result.p_less:.3g}" == "0.048" and result.p_less == pytest.approx(0.04804, abs=5e-6)
        assert f"{result.z_cc:.5g}" == "-1.7549"
        assert result.percent_more_extreme == pytest.approx(4.804003, abs=1e-5)
        low, high = result.z_cc_ci
        # singcar searches the non-centrality on a 0.01 grid (0.0019 in Z-CC units) and steps outwards
        assert -2.3452 <= low <= -2.3413 and -1.1553 <= high <= -1.1514


def test_interval_limits_are_the_non_central_t_quantiles():
    # independent check of the definition: c = z_cc sqrt(n) is the 97.5 % (2.5 %) point of nct(n-1, low sqrt(n))
    n, z = 12, np.array([-3.0, -0.4, 0.0, 1.7])
    result = crawford_howell_summary(z, 0.0, 1.0, n, confidence=0.95)
    c = z * np.sqrt(n)
    np.testing.assert_allclose(stats.nct.ppf(0.975, n - 1, result.z_cc_ci[0] * np.sqrt(n)), c, atol=1e-6)
    np.testing.assert_allclose(stats.nct.ppf(0.025, n - 1, result.z_cc_ci[1] * np.sqrt(n)), c, atol=1e-6)
    assert np.all(result.z_cc_ci[0] < z) and np.all(z < result.z_cc_ci[1])
    assert result.z_cc_ci[0][2] == pytest.approx(-result.z_cc_ci[1][2])  # symmetric at 0
    # three controls and an extreme case: SciPy's non-central t gives NaN far in its tails, the limits exist
    extreme = crawford_howell_summary(np.array([11.7, -30.0]), 0.0, 1.0, 3)
    c = np.array([11.7, -30.0]) * np.sqrt(3)
    np.testing.assert_allclose(stats.nct.cdf(c, 2, extreme.z_cc_ci[0] * np.sqrt(3)), 0.975, atol=1e-8)
    np.testing.assert_allclose(stats.nct.cdf(c, 2, extreme.z_cc_ci[1] * np.sqrt(3)), 0.025, atol=1e-8)


def test_connections_and_cases_broadcast_and_match_one_at_a_time():
    rng = np.random.default_rng(1)
    controls = rng.normal(size=(9, 5))
    cases = rng.normal(size=(3, 5)) * 3
    together = crawford_howell(cases, controls)
    assert together.t.shape == (3, 5) and together.z_cc_ci[0].shape == (3, 5)
    for i in range(3):
        for k in range(5):
            alone = crawford_howell(float(cases[i, k]), controls[:, k])
            assert alone.t == pytest.approx(together.t[i, k], rel=1e-12)
            assert alone.p_greater == pytest.approx(together.p_greater[i, k], rel=1e-12)
            assert alone.z_cc_ci[1] == pytest.approx(together.z_cc_ci[1][i, k], rel=1e-8)
    skipped = crawford_howell(cases, controls, confidence=None)
    assert np.isnan(skipped.z_cc_ci[0]).all()
    np.testing.assert_array_equal(skipped.t, together.t)


def test_needs_two_controls():
    with pytest.raises(ValueError, match="at least 2 controls"):
        crawford_howell(1.0, np.array([0.5]))
