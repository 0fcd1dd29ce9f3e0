"""One error wrapper for every entry point: a user error is one ``nmflow: error:`` line and exit code 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nmflow
from helpers.dicom import run_cli

# argv of each subcommand, its config file appended as --config
SUBCOMMANDS = {
    "simulate": ["simulate", "{tmp}/ds"],
    "dicom inventory": ["dicom", "inventory", "{tmp}/dicom", "{tmp}/inventory.csv", "--key-file", "{tmp}/key.csv"],
    "dicom convert": ["dicom", "convert", "{tmp}/inventory.csv", "{tmp}/bids"],
    "fmriprep": ["fmriprep", "{tmp}/bids", "{tmp}/deriv", "--fs-license-file", "{tmp}/license.txt"],
    "participant": ["{tmp}/fmriprep", "{tmp}/out", "participant"],
    "group": ["{tmp}/fmriprep", "{tmp}/out", "group"],
}
BAD_CONFIGS = {  # file name, content, words of the message
    "missing": ("missing.yml", None, "config file not found"),
    "binary": ("binary.yml", b"\xff\xfe\x00", "cannot read config file (not UTF-8 text)"),
    "yaml": ("broken.yml", b"a: [\n", "not valid YAML: expected the node content"),
    "toml": ("broken.toml", b"a = \n", "not valid TOML: Invalid value (at line 1"),
    "unknown key": ("unknown.yml", b"no-such-flag: 1\n", "unknown option 'no-such-flag'"),
}


def _argv(command: str, tmp: Path, config: Path) -> list[str]:
    return [a.format(tmp=tmp) for a in SUBCOMMANDS[command]] + ["--config", str(config)]


def _config(tmp: Path, problem: str) -> tuple[Path, str]:
    name, content, says = BAD_CONFIGS[problem]
    if content is not None:
        (tmp / name).write_bytes(content)
    return tmp / name, says


@pytest.mark.parametrize("problem", BAD_CONFIGS)
@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_bad_config_file_is_one_line(command, problem, tmp_path, capsys):
    config, says = _config(tmp_path, problem)
    code, out, err = run_cli(_argv(command, tmp_path, config), capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"nmflow: error: {config}: ") and err.count("\n") == 1 and says in err, err
    assert not any(tmp_path.glob("ds*")) and not (tmp_path / "out").exists()


def test_list_for_a_single_value_flag_is_an_error(tmp_path, capsys):
    config = tmp_path / "c.yml"
    config.write_text("n-controls: [1, 2]\n")
    code, _, err = run_cli(_argv("simulate", tmp_path, config), capsys)
    assert code == 1 and err == f"nmflow: error: {config}: option 'n-controls': expected one value, got a list\n"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_usage_error_keeps_exit_code_2(command, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in SUBCOMMANDS[command]] + ["--no-such-flag"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "unrecognized arguments: --no-such-flag" in err


def test_file_system_error_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code, _, err = run_cli(["simulate", str(tmp_path / "file" / "ds"), "--n-controls", "2",
                            "--patients", "a=1"], capsys)
    assert code == 1 and err.startswith("nmflow: error: ") and err.count("\n") == 1, err
    assert "Not a directory" in err


@pytest.mark.parametrize("launcher", [
    pytest.param([sys.executable, "-m", "nmflow.cli.main"], id="python -m nmflow.cli.main"),
    pytest.param([str(Path(sys.executable).with_name("nmflow"))], id="console script"),
])
def test_entry_points_print_no_traceback(launcher, tmp_path):
    config, says = _config(tmp_path, "binary")
    proc = subprocess.run([*launcher, *_argv("simulate", tmp_path, config)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "NIPYPE_NO_ET": "1"})
    assert proc.returncode == 1 and proc.stderr == f"nmflow: error: {config}: {says}\n", proc.stderr


def test_demo_reports_a_failed_step_in_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "NMFLOW_ATLAS_DIR"}
    proc = subprocess.run([sys.executable, "-m", "nmflow.demo", str(tmp_path / "file" / "demo")],
                          capture_output=True, text=True, timeout=120, env={**env, "NIPYPE_NO_ET": "1"})
    assert proc.returncode == 1 and proc.stderr.startswith("nmflow: error: "), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Not a directory" in proc.stderr, proc.stderr


def test_participant_label_spellings_and_a_label_not_found(tiny_dataset, tmp_path, capsys):
    """The BIDS-Apps spelling ``--participant_label`` is accepted; a label not in the dataset stops the call
    with one line naming it (as fMRIPrep does), before anything is written."""
    from nmflow.cli.run import build_parser

    for flag in ("--participant_label", "--participant-label"):
        args = build_parser().parse_args(["in", "out", "participant", flag, "01", "sub-02"])
        assert args.participant_label == ["01", "sub-02"]
    out = tmp_path / "out"
    code, printed, err = run_cli([str(tiny_dataset["fmriprep"]), str(out), "participant", "--participant_label",
                                  "01", "sub-99", "98"], capsys)
    assert code == 1 and printed == (f"nmflow {nmflow.__version__}, participant level: loading Nipype ...\n"
                                     f"indexing BIDS dataset {tiny_dataset['fmriprep']} ...\n")
    assert err == (f"nmflow: error: {tiny_dataset['fmriprep']}: --participant-label: 2 participant(s) not found: "
                   "sub-99 sub-98\n")
    assert not out.exists()


@pytest.mark.parametrize("level, flags, says", [
    ("group", ["--alpha", "2"], "--alpha must be in (0, 1), got 2.0"),
    ("group", ["--n-bootstrap", "-1"], "--n-bootstrap must be >= 0, got -1"),
    ("group", ["--folds", "1"], "--folds must be >= 2, got 1"),
    ("group", ["--val-split", "1.5"], "--val-split must be in [0, 1), got 1.5"),
    ("group", ["--mask-fraction", "1"], "--mask-fraction must be in [0, 1), got 1.0"),
    ("participant", ["--nprocs", "0"], "--nprocs must be >= 1, got 0"),
    ("participant", ["--low-pass", "-1"], "--low-pass must be >= 0 Hz (0: none), got -1.0"),
    ("participant", ["--high-pass", "0.2"], "--high-pass (0.2 Hz) must be below --low-pass (0.1 Hz)"),
    ("participant", ["--min-coverage", "1.5"], "--min-coverage must be in [0, 1], got 1.5"),
])
def test_numbers_out_of_range_stop_at_parse_time(level, flags, says, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    code, out, err = run_cli([str(tmp_path / "in"), str(tmp_path / "out"), level, *flags], capsys)
    assert code == 1 and out == ""
    assert err == f"nmflow: error: {says}\n"
    assert not (tmp_path / "out").exists()


def test_a_mistyped_entity_in_the_bids_filter_file_is_named(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    filters = tmp_path / "filter.json"
    filters.write_text('{"bold": {"tsk": "rest", "session": "1"}}')
    code, out, err = run_cli([str(tmp_path / "in"), str(tmp_path / "out"), "participant", "--bids-filter-file",
                              str(filters)], capsys)
    assert code == 1
    assert err.startswith(f"nmflow: error: {filters}: query 'bold': unknown BIDS entity 'tsk'") and err.count("\n") == 1


@pytest.mark.parametrize("flags, says", [
    (["--denoise", "simple"], "--denoise is not used by --analysis prepost (its GLM regresses the confounds of "
                              "--glm-confounds): leave it out"),
    (["--metrics", "kendall"], "--metrics is not used by --analysis prepost"),
    (["--low-pass", "0.08"], "--low-pass is not used by --analysis prepost (its GLM models slow drifts with "
                             "--high-pass only)"),
    (["--reports", "none"], "--reports is not used by --analysis prepost (it always writes its single-case reports)"),
])
def test_options_the_stimulus_study_would_ignore_are_refused(flags, says, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    code, out, err = run_cli([str(tmp_path / "in"), str(tmp_path / "out"), "participant", "--analysis", "prepost",
                              *flags], capsys)
    assert code == 1 and err.startswith(f"nmflow: error: {says}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
