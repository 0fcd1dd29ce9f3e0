"""End to end with the real Yeo atlas (NMFLOW_ATLAS_DIR; skipped without it).

Two subjects are simulated on the 4 mm grid of the real Yeo-17 liberal atlas
and run through the CLI with both atlases, two strategies and two metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.participant import (
    DATA, assert_exactly_expected, error_lines, participant_argv, read_json, read_relmat, read_tsv,
    report_figures, run_cli,
)

from nmflow.networks import YEO_NAMES

pytestmark = pytest.mark.slow

SUBJECTS = ["01", "02"]
ATLASES = {"yeo17thick": ("seg-17nThick", 17), "yeo7thin": ("seg-7nThin", 7)}
STRATEGIES = ["simple", "gsr"]
METRICS = ["pearson", "spearman"]


@pytest.fixture(scope="module")
def e2e(real_atlas_dir, tmp_path_factory):
    from nmflow.simulate import SimulationSettings, simulate_dataset

    root = tmp_path_factory.mktemp("e2e_real_atlas")
    fmriprep, out = root / "fmriprep", root / "out"
    simulate_dataset(fmriprep, SimulationSettings(
        n_controls=1, patients=(("disorderA", 1),), n_volumes=100, grid="4", atlas_dir=str(real_atlas_dir), seed=7))
    rc, stdout, stderr = run_cli(participant_argv(
        fmriprep, out, root / "work", real_atlas_dir, "--atlas", "yeo17thick", "yeo7thin",
        "--denoise", *STRATEGIES, "--metrics", *METRICS))
    assert rc == 0, stderr
    assert error_lines(stderr) == []
    assert "2 of 2 run(s) done" in stdout
    return {"out": out, "atlas_dir": Path(real_atlas_dir)}


def _ts(out: Path, sub: str, atlas: str, desc: str) -> Path:
    return (out / f"sub-{sub}" / "func" /
            f"sub-{sub}_task-rest_space-MNI152NLin6Asym_atlas-Yeo2011_{ATLASES[atlas][0]}_res-4_desc-{desc}_timeseries.tsv")


def test_outputs_are_exactly_the_expected_files(e2e):
    assert_exactly_expected(e2e["out"], DATA / "expected_e2e_outputs.txt", SUBJECTS, 2 * 41 + 5)


@pytest.mark.parametrize("atlas", list(ATLASES))
def test_timeseries_and_relmats(e2e, atlas):
    _, n = ATLASES[atlas]
    names = YEO_NAMES[n]
    for sub in SUBJECTS:
        for desc in STRATEGIES:
            path = _ts(e2e["out"], sub, atlas, desc)
            table = read_tsv(path)
            assert list(table.columns) == names
            meta = read_json(path.with_suffix(".json"))
            assert len(table) == meta["VolumesKept"] >= 50
            x = table.to_numpy(float)
            assert np.isfinite(x).all(), f"{path.name}: NaN region"
            assert (x.std(axis=0) > 0).all()
            if atlas == "yeo17thick":  # the atlas the data were simulated on: every region fully in the mask
                assert min(meta["RegionCoverage"].values()) == pytest.approx(1.0)
            for metric in METRICS:
                nodes, mat = read_relmat(path.with_name(path.name.replace("_timeseries", f"_meas-{metric}_relmat")))
                assert nodes == names and mat.shape == (n, n)
                assert np.isfinite(mat).all()
                np.testing.assert_allclose(mat, mat.T, atol=1e-12)
                np.testing.assert_allclose(np.diag(mat), 1.0, atol=1e-12)
            _, pearson = read_relmat(path.with_name(path.name.replace("_timeseries", "_meas-pearson_relmat")))
            np.testing.assert_allclose(pearson, np.corrcoef(x, rowvar=False), atol=1e-6)


def test_reports_reference_existing_figures(e2e):
    out = e2e["out"]
    for sub in SUBJECTS:
        figures = report_figures(out / f"sub-{sub}_task-rest.html")
        assert len(figures) == 6  # carpet, design and connectome per strategy (matrices are drawn by the page)
        assert {Path(f).name for f in figures} == {p.name for p in (out / f"sub-{sub}" / "figures").iterdir()}
        for fig in figures:
            data = (out / fig).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, fig
