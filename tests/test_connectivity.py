"""FC metrics against independent references (numpy, scipy, pandas, nilearn)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nmflow.participant.connectivity import (
    connection_names, connectivity, fisher_z, from_upper_triangle, kendall_tau_b,
    upper_triangle,
)


@pytest.fixture()
def timeseries():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 9)) @ rng.standard_normal((9, 9))
    x[:, 2] = np.round(x[:, 2])  # ties
    x[:, 5] = np.round(x[:, 5] / 2)  # many ties
    return x


def test_pearson_equals_numpy(timeseries):
    np.testing.assert_allclose(connectivity(timeseries, "pearson"), np.corrcoef(timeseries.T), atol=1e-12)


def test_spearman_equals_pandas_and_scipy(timeseries):
    ours = connectivity(timeseries, "spearman")
    np.testing.assert_allclose(ours, pd.DataFrame(timeseries).corr("spearman").to_numpy(), atol=1e-12)
    np.testing.assert_allclose(ours, stats.spearmanr(timeseries).statistic, atol=1e-12)


def test_kendall_tau_b_equals_scipy_pair_by_pair(timeseries):
    ours = connectivity(timeseries, "kendall")
    n = timeseries.shape[1]
    for i in range(n):
        for j in range(n):
            ref = stats.kendalltau(timeseries[:, i], timeseries[:, j], variant="b").statistic
            assert ours[i, j] == pytest.approx(ref, abs=1e-12)


def test_kendall_blocks_do_not_change_values():
    rng = np.random.default_rng(1)
    x = np.round(rng.standard_normal((120, 40)), 1)
    ref = kendall_tau_b(x)
    first = np.array([stats.kendalltau(x[:, 0], x[:, j]).statistic for j in range(40)])
    np.testing.assert_allclose(ref[0], first, atol=1e-12)


def test_covariance_ledoitwolf_partial_equal_nilearn(timeseries):
    from nilearn.connectome import ConnectivityMeasure

    np.testing.assert_allclose(connectivity(timeseries, "covariance"), np.cov(timeseries.T), atol=1e-10)
    for kind, metric in [("covariance", "ledoitwolf"), ("correlation", "lwcorrelation"),
                         ("partial correlation", "partial")]:
        ref = ConnectivityMeasure(kind=kind, standardize=False).fit_transform([timeseries])[0]
        ours = connectivity(timeseries, metric)
        if metric == "partial":
            np.fill_diagonal(ref, 1.0)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)  # the same computation, up to rounding


def test_nan_and_constant_regions_give_nan_rows(timeseries):
    x = timeseries.copy()
    x[:, 1] = np.nan
    x[:, 4] = 3.0
    for metric in ("pearson", "kendall", "partial"):
        fc = connectivity(x, metric)
        assert np.isnan(fc[1]).all() and np.isnan(fc[:, 4]).all()
        keep = [0, 2, 3, 5, 6, 7, 8]
        np.testing.assert_allclose(fc[np.ix_(keep, keep)], connectivity(x[:, keep], metric), atol=1e-12)


def test_feature_order_is_row_major_upper_triangle():
    m = np.arange(16.0).reshape(4, 4)
    m = m + m.T
    assert upper_triangle(m).tolist() == [m[0, 1], m[0, 2], m[0, 3], m[1, 2], m[1, 3], m[2, 3]]
    assert connection_names(["a", "b", "c"]) == ["a__b", "a__c", "b__c"]
    np.testing.assert_array_equal(from_upper_triangle(upper_triangle(m), 4, diagonal=0)[~np.eye(4, dtype=bool)],
                                  m[~np.eye(4, dtype=bool)])


def test_fisher_z_is_arctanh_and_finite_at_one():
    r = np.array([-0.5, 0.0, 0.3, 1.0])
    z = fisher_z(r)
    np.testing.assert_allclose(z[:3], np.arctanh(r[:3]))
    assert np.isfinite(z[3])


def test_unknown_metric_is_rejected(timeseries):
    with pytest.raises(ValueError, match="unknown FC metric"):
        connectivity(timeseries, "mutualinfo")
