"""Where the wall time of one ``nmflow ... participant`` process goes, from ``exec`` to exit.

Used by ``benchmarks/participant.py`` and ``benchmarks/throughput.py``. The
call runs as a new Python process whose body is the ``nmflow`` script's
(``nmflow.cli.main.run``), with the participant level's steps wrapped to
record their wall time:

- start-up: from ``exec`` to the first line of the script (interpreter, ``site``);
- imports: every module the call loads up front (the CLI, the workflow, PyBIDS, the
  modules run_workflow preloads for the nodes);
- indexing: :func:`nmflow.bids_io.collect_runs` (PyBIDS layout and queries, TRs);
- inputs: the rest of :func:`find_participant_inputs` (strategies, atlases, grid check);
- build: the Nipype workflow and its methods text;
- nodes: the summed run time of the nodes but ``derivatives`` (Nipype's result files);
- publish: the ``derivatives`` nodes (tables, sidecars, the move into OUT_DIR);
- Nipype: the rest of ``run_workflow`` (hashing, result pickles, scheduling);
- other: the rest of the call (dataset description, summary, saved call);
- exit: from the end of ``main`` to the process' exit.

Times are read from ``time.monotonic``, one clock for the parent and the child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import node_times

PHASES = ("start-up", "imports", "indexing", "inputs", "build", "nodes", "publish", "Nipype", "other", "exit")

DRIVER = r"""
import json, os, sys, time
marks = {"start": time.monotonic()}
import importlib
import nmflow.cli.main
import nmflow.cli.run
import nmflow.workflows.participant as wp
import bids
figures = "--reports" not in sys.argv or sys.argv[sys.argv.index("--reports") + 1] == "full"
for module in wp.NODE_IMPORTS + (getattr(wp, "FIGURE_IMPORTS", ("matplotlib.pyplot",)) if figures else ()):
    importlib.import_module(module)
marks["imports"] = time.monotonic()
spans = {}

def timed(name, fn):
    def wrapper(*args, **kwargs):
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            spans[name] = spans.get(name, 0.0) + time.monotonic() - start
    return wrapper

for name, attribute in (("indexing", "collect_runs"), ("inputs", "find_participant_inputs"),
                        ("build", "init_participant_wf"), ("build", "citation_boilerplate"),
                        ("run", "run_workflow")):
    setattr(wp, attribute, timed(name, getattr(wp, attribute)))
main = nmflow.cli.main.main

def recorded_main():
    code = main()
    marks["main"] = time.monotonic()
    with open(os.environ["NMFLOW_SPLIT_FILE"], "w") as f:
        json.dump({"marks": marks, "spans": spans}, f)
    return code

nmflow.cli.main.main = recorded_main
if hasattr(nmflow.cli.main, "run"):
    nmflow.cli.main.run()
sys.exit(recorded_main())  # a checkout from before run(): its script's body
"""


def process_split(argv: list[str], work: Path, checkout: Path | None = None) -> dict[str, float]:
    """Run ``nmflow ARGV`` (a participant call with ``-w work``) as a new process, with the nmflow of
    ``checkout`` first on ``PYTHONPATH`` if given; seconds per phase of :data:`PHASES` and ``total``, the wall
    time from ``exec`` to exit (their sum)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as record:
        env = dict(os.environ, NMFLOW_SPLIT_FILE=record.name)
        if checkout is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])])
        start = time.monotonic()
        # -P: not the current folder first on sys.path (run from a checkout, it would shadow ``checkout``),
        # the nmflow found as the ``nmflow`` script finds it
        proc = subprocess.run([sys.executable, "-P", "-c", DRIVER, *argv], env=env, capture_output=True, text=True)
        end = time.monotonic()
        if proc.returncode != 0:
            raise SystemExit(f"participant call failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        data = json.loads(Path(record.name).read_text())
    marks, spans = data["marks"], data["spans"]
    nodes = node_times(work)
    busy = sum(nodes.values())
    split = {
        "start-up": marks["start"] - start, "imports": marks["imports"] - marks["start"],
        "indexing": spans["indexing"], "inputs": spans["inputs"] - spans["indexing"], "build": spans["build"],
        "nodes": busy - nodes.get("derivatives", 0.0), "publish": nodes.get("derivatives", 0.0),
        "Nipype": spans["run"] - busy,
        "other": marks["main"] - marks["imports"] - spans["inputs"] - spans["build"] - spans["run"],
        "exit": end - marks["main"],
    }
    split["total"] = end - start
    return split


def format_split(split: dict[str, float]) -> str:
    """``start-up 0.05  imports 2.10 ...`` (s)."""
    return "  ".join(f"{name} {split[name]:.2f}" for name in PHASES)
