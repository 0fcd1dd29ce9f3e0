"""Participant-level workflow: one sub-workflow per BOLD run.

``extract`` (read the BOLD once, all atlases) -> ``denoise`` (all strategies,
on region signals) -> ``connectivity`` (all metrics) -> ``report`` ->
``write`` (BIDS derivatives, atomically).  A run that fails anywhere writes
nothing; the other runs go on, and :func:`run_participant_level` returns one
line per failed run, taken from the exception that stopped it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from nipype import Node, Workflow

from nmflow.atlas import Atlas
from nmflow.bids_io import Run
from nmflow.denoise import CleaningSettings, Strategy
from nmflow.interfaces.bids import WriteDerivatives
from nmflow.interfaces.confounds import Denoise
from nmflow.interfaces.connectivity import Connectivity
from nmflow.interfaces.io import atlases_to_json, strategies_to_json
from nmflow.interfaces.parcellate import ExtractSignals
from nmflow.interfaces.reports import RunReport


def _node_name(run: Run) -> str:
    return "run_" + re.sub(r"[^A-Za-z0-9]", "_", run.key) + "_wf"


def init_run_wf(
    run: Run, atlases: list[Atlas], strategies: list[Strategy], metrics: list[str],
    settings: CleaningSettings, min_coverage: float, out_dir: Path,
) -> Workflow:
    """The sub-workflow of one run."""
    wf = Workflow(name=_node_name(run))
    atlases_json, strategies_json = atlases_to_json(atlases), strategies_to_json(strategies)
    atlas_names = [a.name for a in atlases]
    names = [s.name for s in strategies]
    extract = Node(ExtractSignals(bold=run.bold, mask=run.mask, atlases_json=atlases_json,
                                  min_coverage=min_coverage), name="extract")
    denoise = Node(Denoise(confounds=run.confounds, tr=run.tr, atlas_names=atlas_names,
                           strategies_json=strategies_json, settings_json=json.dumps(asdict(settings))),
                   name="denoise")
    fc = Node(Connectivity(strategies=names, atlas_names=atlas_names, metrics=metrics), name="connectivity")
    report = Node(RunReport(run_key=run.key, strategies=names, atlases_json=atlases_json,
                            metric="pearson" if "pearson" in metrics else metrics[0],
                            min_coverage=min_coverage), name="report")
    write = Node(WriteDerivatives(
        out_dir=str(out_dir), entities_json=json.dumps(run.entities), tr=run.tr,
        sources_json=json.dumps({"bold": run.bold, "mask": run.mask, "confounds": run.confounds}),
        atlases_json=atlases_json, strategies_json=strategies_json, metrics=metrics),
        name="write", overwrite=True)  # always (re)write: OUT_DIR may have changed since the cached run
    wf.connect([
        (extract, denoise, [("signals", "signals")]),
        (denoise, fc, [("cleaned", "cleaned")]),
        (extract, report, [("signals", "signals")]),
        (denoise, report, [("cleaned", "cleaned"), ("outlier_files", "outlier_files")]),
        (fc, report, [("relmats", "relmats")]),
        (extract, write, [("signals", "signals")]),
        (denoise, write, [("cleaned", "cleaned"), ("design_files", "design_files"),
                          ("outlier_files", "outlier_files")]),
        (fc, write, [("relmats", "relmats")]),
        (report, write, [("figures", "figures"), ("report", "report")]),
    ])
    return wf


def init_participant_wf(
    runs: list[Run], atlases: list[Atlas], strategies: list[Strategy], metrics: list[str],
    settings: CleaningSettings, min_coverage: float, out_dir: Path, work_dir: Path,
) -> Workflow:
    """All runs' sub-workflows in one workflow (cached in ``work_dir``)."""
    wf = Workflow(name="nmflow_participant_wf", base_dir=str(work_dir))
    wf.add_nodes([init_run_wf(r, atlases, strategies, metrics, settings, min_coverage, out_dir) for r in runs])
    return wf


def _crash_message(text: str) -> str:
    """The last line of the traceback in a Nipype text crash file: ``Error: message``."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    tb_end = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception)\b.*:", ln)]
    message = tb_end[-1] if tb_end else lines[-1]
    return re.sub(r"^nmflow\.errors\.NmflowInputError: ", "", message)


def run_participant_level(
    runs: list[Run], atlases: list[Atlas], strategies: list[Strategy], metrics: list[str],
    settings: CleaningSettings, min_coverage: float, out_dir: Path, work_dir: Path, nprocs: int = 1,
    plugin: str | None = None, plugin_args: dict | None = None,
) -> dict[str, str]:
    """Run every run's workflow; returns ``{run_key: one-line error}`` for runs that failed.

    ``plugin``/``plugin_args`` are Nipype's (default: MultiProc with ``nprocs`` processes if ``nprocs`` > 1,
    else Linear; MultiProc's ``n_procs`` defaults to ``nprocs``).
    """
    wf = init_participant_wf(runs, atlases, strategies, metrics, settings, min_coverage, out_dir, work_dir)
    crash_dir = Path(work_dir) / "crashes"
    if crash_dir.exists():
        for old in crash_dir.glob("crash-*.txt"):
            old.unlink()
    wf.config["execution"].update({
        "crashfile_format": "txt", "crashdump_dir": str(crash_dir), "stop_on_first_crash": False,
        "remove_unnecessary_outputs": False, "hash_method": "timestamp",
    })
    plugin = plugin or ("MultiProc" if nprocs > 1 else "Linear")
    if plugin == "MultiProc":
        plugin_args = {"n_procs": nprocs, "raise_insufficient": False, **(plugin_args or {})}
    try:
        wf.run(plugin=plugin, plugin_args=plugin_args or {})
    except RuntimeError:
        pass  # failures are read from the crash files below
    failures: dict[str, str] = {}
    by_node = {_node_name(r): r.key for r in runs}
    for crash in sorted(crash_dir.glob("crash-*.txt")) if crash_dir.exists() else []:
        text = crash.read_text(errors="replace")
        node = re.search(r"Node: (\S+)", text)
        owner = next((key for name, key in by_node.items() if node and f".{name}." in f".{node.group(1)}."), None)
        if owner and owner not in failures:
            failures[owner] = _crash_message(text)
    return failures
