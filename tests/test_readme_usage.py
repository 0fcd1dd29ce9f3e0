"""The README's usage block, run as written (simulate -> participant -> group) in a fresh folder."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
from helpers.participant import run_cli

README = Path(__file__).parents[1] / "README.md"


def usage_commands() -> list[list[str]]:
    """The commands of the code block after "Usage in short", one argv each (``nmflow`` dropped)."""
    text = README.read_text()
    block = re.search(r"Usage in short.*?```\n(.*?)```", text, re.S).group(1)
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split("#")[0].strip()
        if line:
            argv = shlex.split(line)
            assert argv[0] == "nmflow", line
            commands.append(argv[1:])
    return commands


def test_readme_usage_block_runs_as_written(tmp_path, monkeypatch, capsys):
    commands = usage_commands()
    assert [c[0] for c in commands[:1]] == ["simulate"] and [c[2] for c in commands[1:]] == ["participant", "group"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NMFLOW_ATLAS_DIR", raising=False)
    outputs = []
    for argv in commands:
        rc, stdout, stderr = run_cli(argv, capsys)
        assert rc == 0, f"nmflow {' '.join(argv)}\n{stderr}"
        assert "Traceback" not in stderr
        outputs.append(stdout)
    n_runs = len(pd.read_csv(tmp_path / "sim" / "fmriprep" / "participants.tsv", sep="\t"))
    assert re.search(rf"^\[{n_runs}/{n_runs} runs, \d+:\d\d elapsed\] sub-\d+_task-rest done", outputs[1], re.M)
    assert re.search(r"^\[10/10 stages, \d+:\d\d elapsed\] group report done", outputs[2], re.M)
    out = tmp_path / "out"
    assert len(list(out.glob("sub-*_task-rest.html"))) == n_runs
    assert (out / "group" / "group_report.html").is_file()
    logs = sorted(p.name.split("-")[1] for p in (out / "logs").glob("nmflow-*.yml"))
    assert logs == ["group", "participant"]
    assert sorted(p.with_suffix(".yml").name for p in (out / "logs").glob("nmflow-*.log")) == \
        sorted(p.name for p in (out / "logs").glob("nmflow-*.yml"))  # each call's log beside its options
    # what the README says to expect: the selected variant flags planted connections, and only those
    planted = pd.read_csv(tmp_path / "sim" / "fmriprep_truth" / "planted_connections.tsv", sep="\t")
    selection = pd.read_csv(out / "group" / "selection.tsv", sep="\t")
    stats = pd.read_csv(out / "group" / f"{selection.variant[selection.selected].iloc[0]}_stats.tsv", sep="\t")
    flagged = stats[(stats.model == "autoencoder") & stats.flagged].connection
    assert len(planted) == 8 and flagged.isin(planted.connection).all() and len(flagged) == 3
