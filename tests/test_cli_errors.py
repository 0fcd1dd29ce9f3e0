"""One error wrapper for every entry point: a user error is one ``nmflow: error:`` line and exit code 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
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
