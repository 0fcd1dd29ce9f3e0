"""Shared fixtures: small simulated datasets made by the package's own simulator."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["NIPYPE_NO_ET"] = "1"

from nmflow.simulate import SimulationSettings, simulate_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> dict[str, Path]:
    """3 controls + 1 patient, toy 8 mm atlas, 100 volumes. Treat as read-only: copy it to modify."""
    root = tmp_path_factory.mktemp("tiny")
    truth = simulate_dataset(root / "fmriprep", SimulationSettings(
        n_controls=3, patients=(("disorderA", 1),), n_volumes=100, seed=3))
    return {"fmriprep": root / "fmriprep", "truth": truth, "atlas_dir": truth / "atlases"}


@pytest.fixture()
def tiny_copy(tiny_dataset, tmp_path) -> dict[str, Path]:
    """A private, writable copy of :func:`tiny_dataset`."""
    dst = tmp_path / "fmriprep"
    shutil.copytree(tiny_dataset["fmriprep"], dst)
    return {**tiny_dataset, "fmriprep": dst}


@pytest.fixture(scope="session")
def real_atlas_dir() -> Path:
    """The real atlas folder from NMFLOW_ATLAS_DIR (skips when unset)."""
    value = os.environ.get("NMFLOW_ATLAS_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("NMFLOW_ATLAS_DIR not set: real-atlas tests need the Yeo atlas folder")
    return Path(value)
