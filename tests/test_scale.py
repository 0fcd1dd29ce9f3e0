"""The scale benchmark's smallest cell through the CLI: a memory budget bounds the run and changes no number."""

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from scale import run_cell, write_cohort  # noqa: E402

from nmflow.normative.model import model_bytes, param_shapes  # noqa: E402


def test_synthetic_cohort_has_network_structure(tmp_path):
    import numpy as np

    ts, participants = write_cohort(tmp_path, 6, 14)
    table = pd.read_csv(participants, sep="\t")
    assert list(table.columns) == ["participant_id", "group", "site", "age", "sex"]
    assert (table.group == "control").sum() == 5  # round(0.8 * 6)
    signal = np.loadtxt(ts / "sub-0001" / "func" / "sub-0001_task-rest_atlas-Synth_timeseries.tsv", skiprows=1)
    fc = np.corrcoef(signal.T)
    same = (np.arange(14)[:, None] % 7) == (np.arange(14)[None] % 7)
    np.fill_diagonal(same, False)
    # regions 0 and 7 share network 0: their correlation is far above that of regions of different networks
    assert fc[same].mean() > fc[~same & ~np.eye(14, dtype=bool)].mean() + 0.2


@pytest.mark.slow
def test_memory_budget_bounds_training_and_keeps_the_numbers(tmp_path):
    n_subjects, n_regions = 100, 100
    one_model = model_bytes(param_shapes(n_regions * (n_regions - 1) // 2, 3), 64) / 2 ** 30
    # two variants ranked: 16 models each (5 folds, the final fit, 10 bootstrap models); 5 epochs: the peak
    # is the same
    quick = ["--epochs", "5", "--metrics", "pearson", "spearman"]
    free = run_cell(tmp_path, n_subjects, n_regions, quick, tmp_path / "free")
    budget = 1.5 + 2 * one_model  # about 1.1 GiB is the process itself before training: 2 to 4 models at a time
    tight = run_cell(tmp_path, n_subjects, n_regions, quick + ["--mem-gb", f"{budget:.3f}"], tmp_path / "tight")
    assert tight["peak_rss_gb"] < budget
    steps = {k: v for k, v in free.items() if k.startswith("rss_")}  # each step's sampled peak
    assert {"rss_train", "rss_score", "rss_harmonize"} <= steps.keys() and min(steps.values()) > 0.1
    assert max(steps.values()) <= free["peak_rss_gb"] * 1.02  # samples never exceed the measured maximum
    assert tight["peak_rss_gb"] < 0.8 * free["peak_rss_gb"]
    for name in ("deviations", "calibration", "singlecase", "model"):
        suffix = ".safetensors" if name == "model" else ".tsv"
        a, b = (next((tmp_path / run / "group").glob(f"*_{name}{suffix}")).read_bytes() for run in ("free", "tight"))
        assert a == b, name


@pytest.mark.parametrize("flags, says", [
    (["--mem-gb", "0"], "--mem-gb must be > 0 GiB, got 0.0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--omp-nthreads", "0"], "--omp-nthreads must be >= 1, got 0"),
    (["--device", "cuda"], "--device cuda: torch sees no CUDA GPU"),
])
def test_resource_flags_checked_before_the_run(flags, says, tmp_path, capsys):
    import torch
    from helpers.dicom import run_cli

    if flags[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    (tmp_path / "in").mkdir()
    code, out, err = run_cli([str(tmp_path / "in"), str(tmp_path / "out"), "group", *flags], capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"nmflow: error: {says}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
