"""Stimulus-study simulator: planted PRE->POST changes are what the single-case test finds (network level)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.covariance import LedoitWolf

from nmflow.group.features import FeatureSet, Variant
from nmflow.participant.connectivity import connection_names, connectivity, upper_triangle
from nmflow.prepost.change import delta_fc, segment_fc
from nmflow.prepost.singlecase import single_case_changes
from nmflow.simulate.prepost import PrepostSimulationSettings, network_timeseries, plant_study

SETTINGS = PrepostSimulationSettings()  # 20 controls + 1 patient, 600 volumes at TR 1 s, 4 case + 3 common changes
REGIONS = [f"N{k}" for k in range(1, 18)]


def _study(seed: int):
    rng = np.random.default_rng(seed)
    groups = ["control"] * SETTINGS.n_controls + ["patient"]
    study = plant_study(17, groups, SETTINGS, rng)
    ts = network_timeseries(study, SETTINGS, rng)
    ts += 0.3 * rng.normal(size=ts.shape)  # measurement noise on the network signals
    pre, post = SETTINGS.segments()
    deltas = []
    for x in ts:
        before, after = segment_fc(x[pre], ("pearson",)), segment_fc(x[post], ("pearson",))
        deltas.append(upper_triangle(delta_fc(before["pearson"], after["pearson"])))
    ids = [f"{k + 1:02d}" for k in range(len(groups))]
    fs = FeatureSet(Variant("toy", None, "delta", "pearson"), ids, REGIONS, np.array(deltas), [1] * len(ids))
    table = single_case_changes(fs, ids[-1:], ids[:-1], pd.Series(dict(zip(ids, groups))))
    return study, table


def test_planted_changes_are_the_fdr_significant_connections():
    # pooled over six simulated studies (seeds 0-5): recall >= 0.8 and false-discovery proportion <= 0.2
    found = planted = discoveries = false = 0
    for seed in range(6):
        study, table = _study(seed)
        case = set(study.changes.loc[study.changes.kind == "case", "connection"])
        common = set(study.changes.loc[study.changes.kind == "common", "connection"])
        significant = set(np.flatnonzero(table["significant"].to_numpy()))
        assert len(case) == 4 and len(common) == 3
        found += len(case & significant)
        planted += len(case)
        discoveries += len(significant)
        false += len(significant - case)
        assert not significant & common  # the change every control shares is not the patient's
        # the realised size: the patients' Z-CC on the planted connections is near the planted 6 SD
        assert 3.5 < np.median(np.abs(table["z_cc"].to_numpy()[sorted(case)])) < 8
    assert found / planted >= 0.8 and false / max(discoveries, 1) <= 0.2


def test_changes_move_only_the_planted_connections_of_the_carriers():
    rng = np.random.default_rng(4)
    groups = ["control"] * 5 + ["patient"] * 2
    study = plant_study(17, groups, SETTINGS, rng)
    moved = np.abs(study.post_corr - study.draws.corr) > 1e-12
    rows, cols = np.triu_indices(17, 1)
    for s, group in enumerate(groups):
        kinds = {"common", "case"} if group == "patient" else {"common"}
        expected = set(study.changes.loc[study.changes.kind.isin(kinds), "connection"])
        assert {int(k) for k in np.flatnonzero(moved[s][rows, cols])} == expected
        assert np.linalg.eigvalsh(study.post_corr[s]).min() >= 0.02
    assert list(study.changes.columns) == ["connection", "i", "j", "kind", "effect", "sd", "r_before", "r_after"]


def test_lwcorrelation_is_the_ledoit_wolf_covariance_as_a_correlation():
    x = np.random.default_rng(5).normal(size=(60, 6)) @ np.random.default_rng(6).normal(size=(6, 6))
    shrunk = LedoitWolf().fit(x).covariance_
    d = np.sqrt(np.diag(shrunk))
    np.testing.assert_allclose(connectivity(x, "lwcorrelation"), shrunk / np.outer(d, d), atol=1e-10)
    assert connection_names(REGIONS[:3]) == ["N1__N2", "N1__N3", "N2__N3"]


def test_impossible_layout_is_a_clear_error():
    from nmflow.errors import NmflowInputError
    from nmflow.simulate.prepost import simulate_prepost_dataset

    with pytest.raises(NmflowInputError, match="fewer than 10 volumes"):
        simulate_prepost_dataset("unused", PrepostSimulationSettings(n_volumes=40))
