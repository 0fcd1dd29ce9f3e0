"""Participant-level workflow: one sub-workflow per BOLD run.

``extract`` (read the BOLD once, all atlases) -> ``denoise`` (all strategies,
on region signals) -> ``connectivity`` (all metrics) -> ``report``; then the
``ds_*`` nodes (:class:`~nmflow.interfaces.derivatives.DerivativesDataSink`)
name every output and write it, with its sidecar, into the run's staging
folder (in the work directory), and ``publish`` copies them all into OUT_DIR
at once.  A run that fails anywhere writes nothing to OUT_DIR; the other runs
go on, and :func:`run_participant_level` returns one line per failed run,
taken from the exception that stopped it.

The workflows are niworkflows' ``LiterateWorkflow``: their ``__desc__`` make
the methods boilerplate (:func:`citation_boilerplate`), written to
``OUT_DIR/logs/CITATION.md``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from nipype import MapNode, Node
from nipype.interfaces.utility import Merge

from nmflow.participant.atlas import Atlas
from nmflow.bids_io import Run
from nmflow.participant.denoise import CleaningSettings, Strategy
from nmflow.fileio import atomic_write_text
from nmflow.interfaces.bids import (
    OUTLIERS_META, PublishDerivatives, RelmatTables, TimeseriesTables, design_meta, sources,
)
from nmflow.interfaces.confounds import Denoise
from nmflow.interfaces.connectivity import Connectivity
from nmflow.interfaces.derivatives import DerivativesDataSink
from nmflow.interfaces.io import atlases_to_json, strategies_to_json
from nmflow.interfaces.parcellate import ExtractSignals
from nmflow.interfaces.reports import RunReport
from nmflow.workflows.boilerplate import participant_desc, references, run_desc
from nmflow.workflows.engine import Workflow, crash_message, crash_node, run_workflow

TABLE_FIELDS = ["in_file", "meta_dict", "desc", "atlas", "seg"]


def _node_name(run: Run) -> str:
    return "run_" + re.sub(r"[^A-Za-z0-9]", "_", run.key) + "_wf"


def _basenames(paths):
    """File names of ``paths`` (a connection function: runs in the node's process)."""
    from pathlib import Path

    return [Path(p).name for p in paths]


def init_run_wf(
    run: Run, atlases: list[Atlas], strategies: list[Strategy], metrics: list[str],
    settings: CleaningSettings, min_coverage: float, out_dir: Path, staging_dir: Path,
) -> Workflow:
    """The sub-workflow of one run.

    Parameters
    ----------
    run : Run
        The BOLD run, its mask, confounds and TR (s).
    atlases, strategies, metrics : list
        Resolved atlases, denoising strategies and FC metric names (one output per combination).
    settings : CleaningSettings
        Filter (Hz) and censoring settings shared by the strategies.
    min_coverage : float
        Fraction (0-1) of a region's voxels that must lie in the brain mask.
    out_dir : Path
        OUT_DIR, where ``publish`` copies the run's files once all its sinks are done.
    staging_dir : Path
        The run's own folder for its sinks (outside OUT_DIR).
    """
    wf = Workflow(name=_node_name(run))
    wf.__desc__ = run_desc(atlases, strategies, metrics, settings, min_coverage)
    atlases_json, strategies_json = atlases_to_json(atlases), strategies_to_json(strategies)
    atlas_names = [a.name for a in atlases]
    names = [s.name for s in strategies]
    uris = sources(run.bold, run.mask, run.confounds)
    no_space = {k: v for k, v in run.entities.items() if k not in ("space", "res")}
    extract = Node(ExtractSignals(bold=run.bold, mask=run.mask, atlases_json=atlases_json,
                                  min_coverage=min_coverage), name="extract")
    denoise = Node(Denoise(confounds=run.confounds, tr=run.tr, atlas_names=atlas_names,
                           strategies_json=strategies_json, settings_json=json.dumps(asdict(settings))),
                   name="denoise")
    fc = Node(Connectivity(strategies=names, atlas_names=atlas_names, metrics=metrics), name="connectivity")
    report = Node(RunReport(run_key=run.key, strategies=names, atlases_json=atlases_json,
                            metric="pearson" if "pearson" in metrics else metrics[0],
                            min_coverage=min_coverage), name="report")
    timeseries = Node(TimeseriesTables(atlases_json=atlases_json, strategies_json=strategies_json, tr=run.tr,
                                       sources=uris), name="timeseries")
    relmats = Node(RelmatTables(atlases_json=atlases_json, strategies=names, metrics=metrics), name="relmats")

    def sink(name: str, iterfield: list[str] | None, **entities) -> Node:
        interface = DerivativesDataSink(base_directory=str(staging_dir), **entities)
        if iterfield:
            return MapNode(interface, iterfield=iterfield, name=name, run_without_submitting=True)
        return Node(interface, name=name, run_without_submitting=True)

    ds_design = sink("ds_design", ["in_file", "meta_dict", "desc"], suffix="design", **no_space)
    ds_design.inputs.trait_set(desc=names, meta_dict=[design_meta(s, uris) for s in strategies])
    ds_outliers = sink("ds_outliers", ["in_file", "desc"], suffix="outliers", meta_dict=OUTLIERS_META, **no_space)
    ds_outliers.inputs.desc = names
    ds_timeseries = sink("ds_timeseries", TABLE_FIELDS, suffix="timeseries", **run.entities)
    ds_relmat = sink("ds_relmat", TABLE_FIELDS + ["meas"], suffix="relmat", **run.entities)
    # figures keep the names RunReport gave them (the report links to them): entities parsed from the name,
    # where pybids' derivatives config also reads seg- as "segmentation"
    ds_figures = sink("ds_figures", ["in_file", "source_file"], subject=run.subject, datatype="figures",
                      dismiss_entities=["segmentation"])
    ds_report = sink("ds_report", None, **no_space)
    merge = Node(Merge(10, ravel_inputs=True), name="merge", run_without_submitting=True)
    publish = Node(PublishDerivatives(staging_dir=str(staging_dir), out_dir=str(out_dir)), name="publish",
                   run_without_submitting=True,
                   overwrite=True)  # always (re)publish: OUT_DIR may have changed since the cached run
    table_links = [("out_files", "in_file"), ("meta", "meta_dict"), ("desc", "desc"), ("atlas", "atlas"),
                   ("seg", "seg")]
    wf.connect([
        (extract, denoise, [("signals", "signals")]),
        (denoise, fc, [("cleaned", "cleaned")]),
        (extract, report, [("signals", "signals")]),
        (denoise, report, [("cleaned", "cleaned"), ("outlier_files", "outlier_files")]),
        (fc, report, [("relmats", "relmats")]),
        (extract, timeseries, [("signals", "signals")]),
        (denoise, timeseries, [("cleaned", "cleaned")]),
        (timeseries, ds_timeseries, table_links),
        (ds_timeseries, relmats, [("out_file", "timeseries")]),
        (fc, relmats, [("relmats", "relmats")]),
        (relmats, ds_relmat, table_links + [("meas", "meas")]),
        (denoise, ds_design, [("design_files", "in_file")]),
        (denoise, ds_outliers, [("outlier_files", "in_file")]),
        (report, ds_figures, [("figures", "in_file"), (("figures", _basenames), "source_file")]),
        (report, ds_report, [("report", "in_file")]),
        (ds_design, merge, [("out_file", "in1"), ("out_meta", "in2")]),
        (ds_outliers, merge, [("out_file", "in3"), ("out_meta", "in4")]),
        (ds_timeseries, merge, [("out_file", "in5"), ("out_meta", "in6")]),
        (ds_relmat, merge, [("out_file", "in7"), ("out_meta", "in8")]),
        (ds_figures, merge, [("out_file", "in9")]),
        (ds_report, merge, [("out_file", "in10")]),
        (merge, publish, [("out", "in_files")]),
    ])
    return wf


def init_participant_wf(
    runs: list[Run], atlases: list[Atlas], strategies: list[Strategy], metrics: list[str],
    settings: CleaningSettings, min_coverage: float, out_dir: Path, work_dir: Path,
) -> Workflow:
    """All runs' sub-workflows in one workflow (cached in ``work_dir``, staging in ``work_dir/staging``)."""
    wf = Workflow(name="nmflow_participant_wf", base_dir=str(work_dir))
    wf.__desc__ = participant_desc()
    wf.add_nodes([init_run_wf(r, atlases, strategies, metrics, settings, min_coverage, out_dir,
                              Path(work_dir) / "staging" / _node_name(r)) for r in runs])
    return wf


def citation_boilerplate(wf: Workflow) -> str:
    """The methods text (Markdown) of a workflow: every distinct ``__desc__`` once, then the references."""
    text = wf.visit_desc()
    return text + references(text)


def run_participant_level(
    runs: list[Run], atlases: list[Atlas], strategies: list[Strategy], metrics: list[str],
    settings: CleaningSettings, min_coverage: float, out_dir: Path, work_dir: Path, nprocs: int = 1,
    plugin: str | None = None, plugin_args: dict | None = None, verbose: bool = False,
) -> dict[str, str]:
    """Run every run's workflow; returns ``{run_key: one-line error}`` for runs that failed.

    ``plugin``/``plugin_args`` are Nipype's (default: MultiProc with ``nprocs`` processes if ``nprocs`` > 1,
    else Linear; MultiProc's ``n_procs`` defaults to ``nprocs``).  Also writes the methods boilerplate to
    ``out_dir/logs/CITATION.md``.
    """
    wf = init_participant_wf(runs, atlases, strategies, metrics, settings, min_coverage, out_dir, work_dir)
    atomic_write_text(Path(out_dir) / "logs" / "CITATION.md", citation_boilerplate(wf))
    _, crashes = run_workflow(wf, Path(work_dir) / "crashes", plugin, plugin_args, nprocs, hash_method="timestamp",
                              verbose=verbose)
    failures: dict[str, str] = {}
    by_node = {_node_name(r): r.key for r in runs}
    for crash in crashes:
        text = crash.read_text(errors="replace")
        node = crash_node(text)
        owner = next((key for name, key in by_node.items() if node and f".{name}." in f".{node}."), None)
        if owner and owner not in failures:
            failures[owner] = crash_message(text)
    return failures
