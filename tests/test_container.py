"""The container files in docker/ (Dockerfile, Apptainer definition, build-and-test script).

The quick tests read the files; the test marked ``container`` runs ``docker/build-and-test.sh`` (image
build, the demo locally and twice in the image, about 30 min on 2 cores). It is skipped without
podman or a docker daemon, and also with them unless ``NMFLOW_CONTAINER_TESTS=1`` is set, so that
``make test`` stays within its time. ``NMFLOW_CONTAINER_ARGS`` passes options to the script, e.g.
``--ca-bundle FILE`` behind a TLS-intercepting proxy.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nmflow import __version__

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
SCRIPT = DOCKER / "build-and-test.sh"


def test_dockerfile_follows_the_bids_app_conventions():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=debian:bookworm-slim$", text, re.M)
    assert 'ENTRYPOINT ["nmflow"]' in text and "\nWORKDIR /tmp\n" in text
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    for label in ("version", "source", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text
    assert re.search(r'^ARG CA_BUNDLE=""$', text, re.M)  # empty by default
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert "PIP_NO_CACHE_DIR=1" in text and "rm -rf /var/lib/apt/lists/*" in text
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "/tmp/context" not in final_stage  # the CA bundle and the wheel stay in the build stage
    assert "NMFLOW_ATLAS_DIR=/opt/nmflow/atlases" in final_stage


def test_dockerignore_sends_only_the_sources():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in lines and "!nmflow/" in lines and "!docker/context/" in lines
    assert not any(line.startswith("!") and (".venv" in line or ".git" in line) for line in lines)


def test_apptainer_definition_runs_nmflow_from_this_version():
    text = (DOCKER / "nmflow.def").read_text()
    assert re.search(r"^Bootstrap: (docker-daemon|oci-archive)$", text, re.M)
    assert re.search(r"^From: nmflow:(\S+)$", text, re.M).group(1) == __version__
    assert f"org.opencontainers.image.version {__version__}" in text
    sections = dict(re.findall(r"^%(\w+)\n(.*?)(?=^%|\Z)", text, re.M | re.S))
    assert 'exec nmflow "$@"' in sections["runscript"]
    assert sections["test"].strip() == "nmflow --version"
    assert "-B " in sections["help"] and "participant" in sections["help"] and "group" in sections["help"]


def test_script_is_valid_bash_and_documents_its_options():
    assert os.access(SCRIPT, os.X_OK)
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    done = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    for option in ("--base-image", "--ca-bundle", "--atlas-dir", "--torch-wheel", "--skip-readonly"):
        assert option in done.stdout


def _engine() -> str | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:
        return "docker"
    return "podman" if shutil.which("podman") else None


@pytest.mark.container
def test_build_and_test_script():
    engine = _engine()
    if engine is None:
        pytest.skip("neither podman nor a docker daemon here (docker/build-and-test.sh builds with either)")
    if os.environ.get("NMFLOW_CONTAINER_TESTS") != "1":
        pytest.skip("builds the image and runs the demo 3 times (about 30 min): set NMFLOW_CONTAINER_TESTS=1")
    args = shlex.split(os.environ.get("NMFLOW_CONTAINER_ARGS", ""))
    done = subprocess.run([str(SCRIPT), "--engine", engine, *args], capture_output=True, text=True,
                          timeout=3 * 3600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert "OK" in lines
    assert sum(line.strip().startswith("vs local: same:") for line in lines) == 2  # as the caller, read-only
    assert sum(line.strip().startswith("outputs:") and line.endswith(": 0 exceptions") for line in lines) == 2


def test_cli_gives_matplotlib_a_writable_folder_when_home_has_none(tmp_path):
    """As in a read-only container whose $HOME is not writable: no warning, a folder in $TMPDIR."""
    home = tmp_path / "home is a file"
    home.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    env.update(HOME=str(home), TMPDIR=str(tmp_path))
    code = "import os, nmflow.cli.main, matplotlib.pyplot; print(os.environ['MPLCONFIGDIR'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / f"nmflow-matplotlib-{os.getuid()}")
    assert "Matplotlib created a temporary" not in done.stderr
