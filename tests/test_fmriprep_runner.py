"""`nmflow fmriprep`: exact commands per engine, skipping, failures, SLURM script."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest
from helpers.dicom import run_cli

STUB = """#!/bin/sh
# stub fmriprep: fails for participant 02, otherwise writes the report
out="$2"
while [ $# -gt 0 ]; do
  [ "$1" = "--participant-label" ] && label="$2"
  shift
done
echo "$label" >> "$out/../calls.txt"
if [ "$label" = "02" ]; then echo "stub: crash in sub-02" >&2; exit 3; fi
echo "stub: done sub-$label"
touch "$out/sub-$label.html"
"""


@pytest.fixture
def study(tmp_path):
    bids = tmp_path / "bids"
    for label in ("01", "02", "03"):
        for datatype, name in (("anat", "T1w"), ("func", "task-rest_bold")):
            (bids / f"sub-{label}" / datatype).mkdir(parents=True)
            (bids / f"sub-{label}" / datatype / f"sub-{label}_{name}.nii.gz").write_bytes(b"")
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    license_file = tmp_path / "license.txt"
    license_file.write_text("fake license\n")
    return {"bids": bids, "out": tmp_path / "deriv", "license": license_file, "tmp": tmp_path}


def _base(study, *extra):
    return ["fmriprep", str(study["bids"]), str(study["out"]), "--fs-license-file",
            str(study["license"]), "--work-dir", str(study["tmp"] / "work"), *extra]


def _status(out):
    """{participant: status} from the summary table."""
    return {line.split()[0]: line.split()[1] for line in out.splitlines()
            if line.startswith("sub-")}


def _fmriprep_tail(bids, out, work, license_file, label):
    return [bids, out, "participant", "--participant-label", label,
            "--output-spaces", "MNI152NLin6Asym:res-2", "--fs-license-file", license_file,
            "-w", f"{work}/sub-{label}", "--nthreads", "4", "--skip-bids-validation",
            "--fs-no-reconall"]


@pytest.mark.parametrize("engine", ["docker", "apptainer", "singularity", "local"])
def test_dry_run_prints_exact_commands(study, capsys, engine):
    extra = ["--engine", engine, "--nthreads", "4", "--skip-bids-validation", "--dry-run",
             "--participant-label", "01", "sub-03", "--fmriprep-args=--fs-no-reconall"]
    if engine in ("apptainer", "singularity"):
        extra += ["--image", "/images/fmriprep-24.1.1.sif"]
    code, out, err = run_cli(_base(study, *extra), capsys)
    assert code == 0, err
    commands = [shlex.split(line) for line in out.splitlines()
                if line.startswith(("docker ", "apptainer ", "singularity ", "fmriprep "))]
    bids, deriv = str(study["bids"]), str(study["out"])
    work, lic = str(study["tmp"] / "work"), str(study["license"])
    expected = []
    for label in ("01", "03"):
        if engine == "local":
            expected.append(["fmriprep", *_fmriprep_tail(bids, deriv, work, lic, label)])
            continue
        tail = _fmriprep_tail("/data", "/out", "/work", "/opt/freesurfer/license.txt", label)
        binds = [f"{bids}:/data:ro", f"{deriv}:/out", f"{work}:/work",
                 f"{lic}:/opt/freesurfer/license.txt:ro"]
        if engine == "docker":
            expected.append(["docker", "run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}",
                             *[x for b in binds for x in ("-v", b)], "nipreps/fmriprep:24.1.1",
                             *tail])
        else:
            expected.append([engine, "run", "--cleanenv", *[x for b in binds for x in ("-B", b)],
                             "/images/fmriprep-24.1.1.sif", *tail])
    assert commands == expected
    assert _status(out) == {"sub-01": "planned", "sub-03": "planned"}
    assert out.rstrip().endswith("planned: sub-01, sub-03 (dry run: nothing was run)")
    assert not study["out"].exists() and not (study["tmp"] / "work").exists()


def test_done_participants_are_skipped(study, capsys):
    study["out"].mkdir()
    (study["out"] / "sub-02.html").write_text("report")
    code, out, _ = run_cli(_base(study, "--engine", "local", "--dry-run"), capsys)
    assert code == 0
    labels = [shlex.split(line)[5] for line in out.splitlines() if line.startswith("fmriprep ")]
    assert labels == ["01", "03"]
    assert _status(out) == {"sub-01": "planned", "sub-02": "done", "sub-03": "planned"}
    code, out, _ = run_cli(_base(study, "--engine", "local", "--dry-run", "--rerun"), capsys)
    assert sum(line.startswith("fmriprep ") for line in out.splitlines()) == 3


@pytest.fixture
def stub_on_path(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "fmriprep"
    stub.write_text(STUB)
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return stub


def test_failing_participant_does_not_stop_the_others(study, capsys, stub_on_path):
    code, out, err = run_cli(_base(study, "--engine", "local"), capsys)
    assert code == 1
    assert (study["tmp"] / "calls.txt").read_text().split() == ["01", "02", "03"]
    assert (study["out"] / "sub-01.html").exists() and (study["out"] / "sub-03.html").exists()
    assert _status(out) == {"sub-01": "ok", "sub-02": "failed", "sub-03": "ok"}
    assert out.rstrip().endswith("failed: sub-02")
    logs = study["out"] / "logs" / "nmflow"
    assert "stub: crash in sub-02" in (logs / "sub-02.log").read_text()
    assert "stub: done sub-01" in (logs / "sub-01.log").read_text()
    assert (logs / "sub-01.log").read_text().startswith("# fmriprep ")
    rows = [line.split("\t") for line in (logs / "fmriprep_summary.tsv").read_text().splitlines()]
    assert [r[:3] for r in rows] == [["participant", "status", "exit_code"], ["sub-01", "ok", "0"],
                                     ["sub-02", "failed", "3"], ["sub-03", "ok", "0"]]
    # second run: only the failed participant is retried
    code, out, _ = run_cli(_base(study, "--engine", "local"), capsys)
    assert code == 1
    assert (study["tmp"] / "calls.txt").read_text().split() == ["01", "02", "03", "02"]
    assert _status(out) == {"sub-01": "done", "sub-02": "failed", "sub-03": "done"}


def test_slurm_array_script_runs_one_participant_per_task(study, capsys, stub_on_path):
    (study["out"]).mkdir()
    (study["out"] / "sub-02.html").write_text("done before")
    script = study["tmp"] / "fmriprep.sbatch"
    code, out, err = run_cli(_base(study, "--engine", "local", "--slurm-script", str(script),
                                   "--nthreads", "6", "--mem-mb", "24000",
                                   "--slurm-max-parallel", "2"), capsys)
    assert code == 0, err
    assert "for 2 participant(s)" in out
    text = script.read_text()
    assert "#SBATCH --array=0-1%2" in text and "#SBATCH --cpus-per-task=6" in text
    assert "#SBATCH --mem=24000" in text and "SUBJECTS=(01 03)" in text
    assert '--participant-label "${SUBJECT}"' in text
    subprocess.run(["bash", "-n", str(script)], check=True)
    subprocess.run(["bash", str(script)], check=True,
                   env={**os.environ, "SLURM_ARRAY_TASK_ID": "1"})
    assert (study["out"] / "sub-03.html").exists() and not (study["out"] / "sub-01.html").exists()
    assert "stub: done sub-03" in (study["out"] / "logs" / "nmflow" / "sub-03.log").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--participant-label", "07"], "no folder for participant(s) sub-07"),
    (["--engine", "apptainer"], "--image must name the fMRIPrep .sif file"),
])
def test_bad_input_is_one_clear_error(study, capsys, extra, message):
    code, out, err = run_cli(_base(study, "--dry-run", *extra), capsys)
    assert code == 1 and err.startswith("nmflow: error: ") and message in err
    assert out == ""


def test_missing_license_is_reported(study, capsys):
    argv = _base(study, "--dry-run")
    argv[argv.index(str(study["license"]))] = str(study["tmp"] / "nope.txt")
    code, _, err = run_cli(argv, capsys)
    assert code == 1
    assert err == f"nmflow: error: {study['tmp'] / 'nope.txt'}: FreeSurfer license file not " \
                  "found (--fs-license-file or $FS_LICENSE)\n"


def test_labels_are_taken_with_or_without_sub(study):
    from nmflow.bids_io import strip_prefix, with_prefix
    from nmflow.fmriprep_runner import find_participants

    assert find_participants(study["bids"], ["sub-03", "01"]) == ["03", "01"]
    for label in ("01", "sub-01"):
        assert with_prefix(label) == with_prefix(with_prefix(label)) == "sub-01"
        assert strip_prefix(with_prefix(label)) == "01"


def test_slurm_script_defaults_to_apptainer(study, capsys):
    script = study["tmp"] / "fmriprep.sbatch"
    code, _, err = run_cli(_base(study, "--slurm-script", str(script)), capsys)
    assert code == 1 and "--image must name the fMRIPrep .sif file for --engine apptainer" in err
    assert "apptainer build fmriprep.sif docker://nipreps/fmriprep:24.1.1" in err and not script.exists()
    code, _, err = run_cli(_base(study, "--slurm-script", str(script), "--image", "/images/fmriprep.sif"), capsys)
    assert code == 0, err
    command = script.read_text().splitlines()[-1]
    assert command.startswith("apptainer run --cleanenv -B ") and "/images/fmriprep.sif /data /out" in command
    assert "docker" not in script.read_text()
    code, _, err = run_cli(_base(study, "--slurm-script", str(script), "--engine", "singularity", "--image",
                                 "/images/fmriprep.sif"), capsys)
    assert code == 0 and script.read_text().splitlines()[-1].startswith("singularity run --cleanenv ")
