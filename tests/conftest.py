"""Shared fixtures: small simulated datasets made by the package's own simulator.

TemplateFlow's home is a throw-away folder with a single template, so that
importing niworkflows (which indexes it) takes a fraction of a second in the
tests and their subprocesses, not the seconds a full home takes.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ["NIPYPE_NO_ET"] = "1"
_TEMPLATEFLOW_HOME = Path(tempfile.mkdtemp(prefix="nmflow-templateflow-"))
atexit.register(shutil.rmtree, _TEMPLATEFLOW_HOME, ignore_errors=True)
(_TEMPLATEFLOW_HOME / "tpl-MNI152NLin6Asym").mkdir()
(_TEMPLATEFLOW_HOME / "tpl-MNI152NLin6Asym" / "template_description.json").write_text(
    '{"Identifier": "MNI152NLin6Asym", "Name": "stand-in for the tests"}\n')
os.environ["TEMPLATEFLOW_HOME"] = str(_TEMPLATEFLOW_HOME)

from hypothesis import HealthCheck, settings  # noqa: E402

from nmflow.simulate import SimulationSettings, simulate_dataset  # noqa: E402

# Fuzz tests (test_fuzz_readers): a few hundred examples each, no example database in the working tree,
# and derandomised in CI (the CI environment variable set), so a CI run is reproducible.
settings.register_profile("nmflow", max_examples=200, deadline=None, database=None,
                          derandomize=bool(os.environ.get("CI")), suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("nmflow")


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
