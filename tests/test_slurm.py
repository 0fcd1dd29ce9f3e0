"""The participant level as a Slurm array (``--slurm-array``) and the ``--plugin``/``--plugin-args`` flags.

The script tests need no Slurm: the generated scripts run under bash with
``printf`` in place of nmflow (one argument per line) and a fake ``sbatch``
on ``PATH``.  The test marked ``slurm`` runs 2 subjects through a real array
(``benchmarks/slurm_cluster.sh`` starts a single-node cluster) and is skipped
when ``sbatch``/``squeue`` are absent or the controller does not answer.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nmflow.cli.config import parse_with_config
from nmflow.cli.common import read_plugin_args
from nmflow.cli.run import build_parser
from nmflow.errors import NmflowInputError
from nmflow.slurm import forwarded_options, write_slurm_jobs
from helpers.participant import MINIMAL, copy_subjects, error_lines, participant_argv, read_tsv, run_cli, tree

ECHO = ["printf", "%s\\n"]  # stands for nmflow: prints its arguments, one per line


def _run_task(script: Path, task: int) -> list[str]:
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task)}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, check=True)
    return done.stdout.splitlines()


@pytest.fixture()
def spaced(tmp_path, monkeypatch) -> Path:
    """A folder whose path holds spaces, made the working directory."""
    root = tmp_path / "my study" / "with spaces"
    root.mkdir(parents=True)
    monkeypatch.chdir(root)
    return root


def test_array_task_runs_its_subject_with_the_options(spaced):
    jobs = write_slurm_jobs(["01", "02", "x y"], spaced / "fmri prep", Path("out dir"), spaced / "work dir",
                            ["--denoise", "simple", "gsr", "--atlas-dir", "atlases here"], [], cpus=2,
                            command=ECHO)
    text = jobs.participant_script.read_text()
    assert "#SBATCH --array=0-2\n" in text and "#SBATCH --cpus-per-task=2\n" in text
    for task, subject in enumerate(["01", "02", "x y"]):
        assert _run_task(jobs.participant_script, task) == [
            str(spaced / "fmri prep"), str(spaced / "out dir"), "participant", "--participant-label", subject,
            "-w", str(spaced / "work dir" / f"sub-{subject}"), "--denoise", "simple", "gsr",
            "--atlas-dir", "atlases here"]
    status = (spaced / "work dir" / "slurm" / "participant_status.tsv").read_text().splitlines()
    assert status == ["participant_id\ttask\texit_code", "sub-01\t0\t0", "sub-02\t1\t0", "sub-x y\t2\t0"]
    assert (spaced / "work dir" / "slurm" / "logs").is_dir()  # sbatch does not create it


def test_group_script_lists_failed_tasks_then_runs_the_group_level(spaced):
    jobs = write_slurm_jobs(["01", "02"], spaced / "in", spaced / "out", spaced / "work dir", [],
                            ["--folds", "2"], cpus=1, command=ECHO)
    with open(spaced / "work dir" / "slurm" / "participant_status.tsv", "a") as status:
        status.write("sub-01\t0\t0\nsub-02\t1\t1\n")
    lines = _run_task(jobs.group_script, 0)
    assert lines[0].startswith("nmflow: 1 of 2 participant task(s) succeeded")
    assert lines[1] == "sub-02\t1\t1"
    assert lines[2:] == [str(spaced / "in"), str(spaced / "out"), "group", "-w", str(spaced / "work dir" / "group"),
                         "--folds", "2"]


def _fake_sbatch(folder: Path, monkeypatch) -> Path:
    """An ``sbatch`` on PATH that logs its arguments and answers ``--parsable`` style ids 41, 42..."""
    folder.mkdir()
    fake = folder / "sbatch"
    fake.write_text('#!/bin/bash\necho "$@" >> "$(dirname "$0")/calls"\n'
                    'echo "4$(wc -l < "$(dirname "$0")/calls");cluster"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder / "calls"


@pytest.mark.parametrize("how", ["printed commands", "submit"])
def test_group_job_depends_on_the_array(spaced, monkeypatch, how):
    calls = _fake_sbatch(spaced / "bin", monkeypatch)
    jobs = write_slurm_jobs(["01"], spaced, spaced / "out", spaced / "work dir", [], [], cpus=1,
                            sbatch_args="--partition=short --account='my lab'")
    if how == "submit":
        assert jobs.submit() == ("41", "42")
    else:
        subprocess.run(["bash", "-c", jobs.commands()], check=True)
    first, second = calls.read_text().splitlines()
    assert first == f"--parsable --partition=short --account=my lab {jobs.participant_script}"
    assert second.removeprefix("--parsable ") == (f"--dependency=afterany:41 --partition=short --account=my lab "
                                                  f"{jobs.group_script}")


def test_forwarded_options_keep_what_differs_from_the_defaults(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("denoise: [gsr]\nfolds: 2\n")
    argv = ["in", "out", "participant", "--config", str(config), "--nprocs", "2", "-w", "w", "--slurm-array",
            "--slurm-args=--partition=x", "--participant-label", "01", "--no-fine-tune", "--covariates", "age",
            "--plugin", "MultiProc", "--plugin-args", '{"n_procs": 2}']
    args = parse_with_config(build_parser(), argv)
    assert forwarded_options(build_parser(), args, ["participant_label"]) == [
        "--denoise", "gsr", "--nprocs", "2", "--plugin", "MultiProc", "--plugin-args", '{"n_procs": 2}',
        "--covariates", "age", "--folds", "2", "--no-fine-tune"]


def test_cli_writes_the_scripts_and_prints_the_sbatch_commands(tiny_dataset, tmp_path, capsys):
    work = tmp_path / "work"
    rc, out, err = run_cli(participant_argv(tiny_dataset["fmriprep"], tmp_path / "out", work,
                                            tiny_dataset["atlas_dir"], *MINIMAL, "--nprocs", "2", "--slurm-array"),
                           capsys)
    assert rc == 0, err
    script = (work / "slurm" / "participant.sbatch").read_text()
    assert "SUBJECTS=(01 02 03 04)\n" in script and "#SBATCH --array=0-3\n" in script
    assert f"--denoise simple --atlas yeo7thin --atlas-dir {tiny_dataset['atlas_dir']} --nprocs 2\n" in script
    assert "--dependency=afterany:" in out and str(work / "slurm" / "group.sbatch") in out
    assert not (tmp_path / "out").exists()  # nothing ran
    rc, _, err = run_cli([tiny_dataset["fmriprep"], tmp_path / "out", "participant", "--atlas-dir",
                          tiny_dataset["atlas_dir"], "--slurm-array"], capsys)
    assert rc == 1 and "needs -w" in error_lines(err)[0]


def test_plugin_args_json_or_file(tmp_path):
    assert read_plugin_args('{"n_procs": 3, "memory_gb": 2}') == {"n_procs": 3, "memory_gb": 2}
    (tmp_path / "slurm.yml").write_text("sbatch_args: --mem=2G\n")
    assert read_plugin_args(str(tmp_path / "slurm.yml")) == {"sbatch_args": "--mem=2G"}
    assert read_plugin_args(None) == {}
    for bad, named in [('{"n_procs": ', "--plugin-args"), (str(tmp_path / "missing.json"), "missing.json")]:
        with pytest.raises(NmflowInputError, match=named):
            read_plugin_args(bad)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(NmflowInputError, match="list.json.*mapping"):
        read_plugin_args(str(tmp_path / "list.json"))


def test_multiproc_plugin_gives_the_linear_outputs(tiny_dataset, tmp_path, capsys):
    data = copy_subjects(tiny_dataset["fmriprep"], tmp_path / "in", ["01"])
    for name, extra in [("linear", []), ("multiproc", ["--plugin", "MultiProc", "--plugin-args", '{"n_procs": 2}'])]:
        rc, _, err = run_cli(participant_argv(data, tmp_path / name, tmp_path / f"work_{name}",
                                              tiny_dataset["atlas_dir"], *MINIMAL, *extra), capsys)
        assert rc == 0, err
    assert gc.get_freeze_count() == 0  # the objects frozen for the run are collectable again
    _assert_same_outputs(tmp_path / "linear", tmp_path / "multiproc")


# -- a real Slurm ----------------------------------------------------------------------------------

@pytest.fixture()
def slurm():
    """Skip unless sbatch and squeue exist and the controller answers."""
    missing = [tool for tool in ("sbatch", "squeue") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH: no Slurm here (see benchmarks/slurm_cluster.sh)")
    try:
        done = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=20)
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1] if done.returncode else None
    except (subprocess.SubprocessError, OSError) as exc:
        reason = str(exc)
    if reason:
        pytest.skip(f"the Slurm controller does not answer (squeue: {reason}); start benchmarks/slurm_cluster.sh")


def _assert_same_outputs(a: Path, b: Path) -> None:
    names = tree(a)
    assert names == tree(b)
    for name in names:
        if name.endswith(".tsv"):
            x, y = read_tsv(a / name), read_tsv(b / name)
            assert list(x.columns) == list(y.columns), name
            num = x.select_dtypes("number").columns
            np.testing.assert_allclose(x[num].to_numpy(float), y[num].to_numpy(float), rtol=0, atol=1e-12,
                                       err_msg=name)
        elif name.endswith(".json"):
            assert json.loads((a / name).read_text()) == json.loads((b / name).read_text()), name


@pytest.mark.slurm
def test_slurm_array_equals_a_local_run(slurm, tiny_dataset, tmp_path, capsys):
    data = copy_subjects(tiny_dataset["fmriprep"], tmp_path / "in data", ["01", "02"])
    options = [tiny_dataset["atlas_dir"], *MINIMAL]
    rc, _, err = run_cli(participant_argv(data, tmp_path / "out slurm", tmp_path / "work slurm", *options)
                         + ["--slurm-array"], capsys)
    assert rc == 0, err
    script = tmp_path / "work slurm" / "slurm" / "participant.sbatch"
    done = subprocess.run(["sbatch", "--wait", "--parsable", str(script)], capture_output=True, text=True,
                          timeout=600)
    logs = "\n".join(p.read_text() for p in (script.parent / "logs").glob("*"))
    assert done.returncode == 0, done.stderr + logs
    rc, _, err = run_cli(participant_argv(data, tmp_path / "out local", tmp_path / "work local", *options), capsys)
    assert rc == 0, err
    assert {p.split("/")[0] for p in tree(tmp_path / "out slurm")} >= {"sub-01", "sub-02"}
    _assert_same_outputs(tmp_path / "out slurm", tmp_path / "out local")
