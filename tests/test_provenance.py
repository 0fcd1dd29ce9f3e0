"""What a call leaves behind about itself: its log file and console verbosity, the warning when OUT_DIR holds
another version's outputs, and the provenance in ``dataset_description.json`` (code address, container)."""

from __future__ import annotations

import json
import re
from email.message import Message
from pathlib import Path

import pytest

import nmflow
from helpers.participant import MINIMAL, participant_argv, run_cli

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")  # each line of the log file starts with its UTC time


def _one_subject(tiny_dataset, tmp_path, *extra) -> list[str]:
    return participant_argv(tiny_dataset["fmriprep"], tmp_path / "out", tmp_path / "work", tiny_dataset["atlas_dir"],
                            "--participant-label", "01", *MINIMAL, *extra)


def _call_files(out: Path) -> tuple[Path, Path]:
    """The one call's log and configuration file."""
    (log,), (config,) = (list((out / "logs").glob(f"nmflow-participant-*.{ext}")) for ext in ("log", "yml"))
    return log, config


def _old_description(out: Path, version: str = "0.0.1") -> None:
    out.mkdir(parents=True)
    (out / "dataset_description.json").write_text(json.dumps({
        "Name": "nmflow derivatives", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "nmflow", "Version": version}]}))


# -- the log file and -q / -v --------------------------------------------------------------------------------------

def test_quiet_shows_the_warning_only_and_the_log_keeps_every_line(tiny_dataset, tmp_path, capsys):
    """-q on an OUT_DIR of another version: the console has that warning alone (one line naming both versions),
    the log file (same name as the saved call) every line of a default call too."""
    out = tmp_path / "out"
    _old_description(out)
    rc, printed, err = run_cli(_one_subject(tiny_dataset, tmp_path, "-q"), capsys)
    assert rc == 0 and printed == ""
    assert err == (f"nmflow: warning: {out / 'dataset_description.json'}: OUT_DIR holds outputs of nmflow 0.0.1; "
                   f"this is nmflow {nmflow.__version__}: rerun every level, or use a new OUT_DIR\n")
    log, config = _call_files(out)
    assert log.stem == config.stem  # nmflow-participant-<time>-<id>
    lines = log.read_text().splitlines()
    assert all(STAMP.match(line) for line in lines)
    text = [STAMP.sub("", line) for line in lines]
    assert text[:3] == [f"nmflow {nmflow.__version__}, participant level: loading Nipype ...",
                        f"indexing BIDS dataset {tiny_dataset['fmriprep']} ...", err.strip()]
    assert re.fullmatch(r"\[1/1 runs, \d+:\d\d elapsed\] sub-01_task-rest done \(\d+\.\d s\)", text[-2])
    assert text[-1] == f"nmflow participant: 1 of 1 run(s) done -> {out}"
    # the description now names this version: the next call does not warn
    assert json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]["Version"] == \
        nmflow.__version__


def test_default_and_verbose_console(tiny_dataset, tmp_path, capsys):
    """Default: the progress lines, no details; -v: the details (files found, atlas, plugin), which the log
    file, INFO and above, leaves out; the same version in OUT_DIR: no warning."""
    rc, default, err = run_cli(_one_subject(tiny_dataset, tmp_path), capsys)
    assert rc == 0 and err == ""
    assert default.splitlines()[:3] == [f"nmflow {nmflow.__version__}, participant level: loading Nipype ...",
                                        f"indexing BIDS dataset {tiny_dataset['fmriprep']} ...",
                                        "building the workflow: 1 run(s) of 1 participant(s) ..."]
    bold = next((tiny_dataset["fmriprep"] / "sub-01" / "func").glob("*_desc-preproc_bold.nii.gz"))
    details = [f"sub-01_task-rest: {bold} (TR 2.0 s)", "atlas yeo7thin: ", "with Nipype's Linear plugin"]
    assert not any(d in default for d in details)
    rc, verbose, err = run_cli(_one_subject(tiny_dataset, tmp_path, "-v"), capsys)
    assert rc == 0 and err == ""  # OUT_DIR of this very version
    assert all(d in verbose for d in details), verbose
    logs = sorted((tmp_path / "out" / "logs").glob("nmflow-participant-*.log"))
    assert len(logs) == 2 and all(not any(d in log.read_text() for d in details) for log in logs)


@pytest.mark.parametrize("flags, nipype", [([], False), (["-v"], False), (["-vv"], True), (["-q"], False)])
def test_counted_verbosity_reaches_the_settings(flags, nipype):
    """-vv (not -v) shows Nipype's workflow log: the settings' ``verbose``; -q and -v exclude each other."""
    from nmflow.cli.common import settings_namespace
    from nmflow.cli.run import build_parser
    from nmflow.participant.settings import ParticipantSettings

    args = build_parser().parse_args(["in", "out", "participant", *flags])
    assert ParticipantSettings.from_namespace(settings_namespace(args)).verbose is nipype
    with pytest.raises(SystemExit):
        build_parser().parse_args(["in", "out", "participant", "-q", "-v"])


def test_the_error_line_ends_the_log_file(tiny_dataset, tmp_path, capsys, monkeypatch):
    """A call that stops after it started writing: the one error line on stderr, exit code 1, the same line
    last in the log file."""
    from nmflow.errors import NmflowInputError

    def fail(*args, **kwargs):
        raise NmflowInputError("somewhere.tsv", "planted failure")

    monkeypatch.setattr("nmflow.workflows.participant.run_participant_level", fail)
    rc, _, err = run_cli(_one_subject(tiny_dataset, tmp_path), capsys)
    assert rc == 1 and err == "nmflow: error: somewhere.tsv: planted failure\n"
    log = next((tmp_path / "out" / "logs").glob("nmflow-participant-*.log"))
    assert STAMP.sub("", log.read_text().splitlines()[-1]) == err.strip()


def test_slurm_array_forwards_the_counted_verbosity():
    from nmflow.cli.run import build_parser
    from nmflow.slurm import forwarded_options

    args = build_parser().parse_args(["in", "out", "participant", "-vv"])
    assert forwarded_options(build_parser(), args).count("--verbose") == 2


# -- the version of OUT_DIR's outputs ---------------------------------------------------------------------------------

def test_dataset_description_warns_on_another_version(tmp_path, capsys):
    """Replaced: one warning naming both versions; kept (the group level, which warns first itself): none."""
    from nmflow.bids_io import warn_other_version, write_dataset_description

    out = tmp_path / "out"
    _old_description(out, "0.0.1")
    write_dataset_description(out, tmp_path / "in", keep=True)
    assert capsys.readouterr().err == ""
    warn_other_version(out)
    (line,) = capsys.readouterr().err.splitlines()
    assert "nmflow 0.0.1" in line and f"this is nmflow {nmflow.__version__}" in line
    assert json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]["Version"] == "0.0.1"
    write_dataset_description(out, tmp_path / "in")
    assert capsys.readouterr().err == line + "\n"
    assert json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]["Version"] == \
        nmflow.__version__
    write_dataset_description(out, tmp_path / "in")  # now of this version: silent
    warn_other_version(out)
    assert capsys.readouterr().err == ""


# -- GeneratedBy: code address, container ------------------------------------------------------------------------------

@pytest.mark.parametrize("environ, marker, expected", [
    ({}, None, None),
    ({}, ".dockerenv", {"Type": "docker"}),
    ({"NMFLOW_CONTAINER": "nmflow:0.1.0"}, ".dockerenv", {"Type": "docker", "Tag": "nmflow:0.1.0"}),
    ({"NMFLOW_CONTAINER": "nmflow:0.1.0"}, "run/.containerenv", {"Type": "podman", "Tag": "nmflow:0.1.0"}),
    ({"APPTAINER_CONTAINER": "/images/nmflow.sif", "NMFLOW_CONTAINER": "nmflow:0.1.0"}, None,
     {"Type": "apptainer", "URI": "/images/nmflow.sif", "Tag": "nmflow:0.1.0"}),
    ({"SINGULARITY_CONTAINER": "/images/nmflow.simg"}, ".dockerenv",
     {"Type": "singularity", "URI": "/images/nmflow.simg"}),
])
def test_container_is_detected(tmp_path, environ, marker, expected):
    from nmflow.bids_io import container

    if marker:
        (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / marker).touch()
    assert container(environ, tmp_path) == expected


def test_generated_by_names_the_container_and_the_code_address(tmp_path, monkeypatch):
    """In nmflow's image (NMFLOW_CONTAINER, APPTAINER_CONTAINER as Apptainer sets them) the description names it;
    CodeURL comes from the package's [project.urls], which this project does not declare yet: left out."""
    import importlib.metadata

    from nmflow.bids_io import code_url, write_dataset_description

    assert not importlib.metadata.metadata("nmflow").get_all("Project-URL")
    assert code_url() is None
    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/nmflow.sif")
    monkeypatch.setenv("NMFLOW_CONTAINER", "nmflow:9.9")
    write_dataset_description(tmp_path / "out", tmp_path / "in")
    entry = json.loads((tmp_path / "out" / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert entry == {"Name": "nmflow", "Version": nmflow.__version__,
                     "Container": {"Type": "apptainer", "URI": "/images/nmflow.sif", "Tag": "nmflow:9.9"}}
    # with a declared address (as pip writes it into the metadata: Project-URL headers) it is the CodeURL
    message = Message()
    message["Project-URL"] = "Documentation, https://example.org/docs"
    message["Project-URL"] = "Source, https://example.org/nmflow"
    monkeypatch.setattr(importlib.metadata, "metadata", lambda name: message)
    assert code_url() == "https://example.org/nmflow"
    write_dataset_description(tmp_path / "out", tmp_path / "in")
    entry = json.loads((tmp_path / "out" / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert entry["CodeURL"] == "https://example.org/nmflow"


def test_the_image_records_its_tag():
    """docker/Dockerfile's final stage sets NMFLOW_CONTAINER (what Container.Tag reads) from its tag."""
    text = (Path(__file__).parents[1] / "docker" / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]
    assert "ARG IMAGE_TAG=nmflow:${VERSION}" in final and "NMFLOW_CONTAINER=${IMAGE_TAG}" in final


def test_cleaning_meta_reports_the_band_that_filters(tmp_path):
    """A cut-off at or above Nyquist (0.25 Hz at TR 2 s) filters nothing and is reported as none."""
    from nmflow.participant.settings import PRESETS, CleaningSettings
    from nmflow.participant.tables import cleaning_meta

    meta = cleaning_meta(PRESETS["simple"], CleaningSettings(low_pass=0.3, high_pass=0.02), 2.0)
    assert (meta["HighPassCutoffHz"], meta["LowPassCutoffHz"]) == (0.02, None)
    meta = cleaning_meta(PRESETS["simple"], CleaningSettings(low_pass=0.3, high_pass=0.02, standardize=None), 1.0)
    assert (meta["HighPassCutoffHz"], meta["LowPassCutoffHz"]) == (0.02, 0.3)
    assert meta["Units"].startswith("BOLD intensity") and meta["Standardization"] == "none"


# -- progress lines ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("done, total, elapsed, expected", [
    (1, 4, 10.0, "1/4 runs, 0:10 elapsed, ~0:30 left"),  # 10 s per run, 3 left
    (3, 16, 42.0, "3/16 runs, 0:42 elapsed, ~3:02 left"),  # 14 s per run, 13 left
    (2, 3, 3600.0, "2/3 runs, 1:00:00 elapsed, ~30:00 left"),
    (4, 4, 61.4, "4/4 runs, 1:01 elapsed"),  # all done: no estimate
])
def test_progress_count(done, total, elapsed, expected):
    from nmflow.log import progress_count

    assert progress_count(done, total, "runs", elapsed) == expected


def test_simulate_prints_a_line_per_subject(tmp_path, capsys):
    from nmflow.cli.main import main

    rc = main(["simulate", str(tmp_path / "ds"), "--n-controls", "3", "--patients", "a=2", "--n-volumes", "60"])
    printed = capsys.readouterr().out
    assert rc == 0
    lines = re.findall(r"^\[(\d)/5 subjects, \d+:\d\d elapsed(, ~\d+:\d\d left)?\] (sub-\d+) \((\w+)\) written$",
                       printed, re.M)
    assert [(k, bool(left), sub, group) for k, left, sub, group in lines] == [
        ("1", True, "sub-01", "control"), ("2", True, "sub-02", "control"), ("3", True, "sub-03", "control"),
        ("4", True, "sub-04", "a"), ("5", False, "sub-05", "a")]
    assert printed.startswith(f"nmflow simulate -> {tmp_path / 'ds'}: loading NumPy and nibabel ...\n")
