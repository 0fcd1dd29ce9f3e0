"""The stimulus study as two Nipype workflows: ``participant --analysis prepost`` and ``group --analysis prepost``.

Participant level, one sub-workflow per run: ``glm`` (:class:`GLMPrePostSplit`:
the stimulus, the voxel-wise GLM, the residuals split into PRE and POST) ->
``extract`` (the participant level's :class:`ExtractSignals` on each
segment's residuals: network time series) -> ``connectivity`` (FC by every
metric and ΔFC) and ``seedmaps`` (seed-to-voxel maps and their change) ->
``report``; the sinks write into the run's staging folder and ``publish``
copies them into OUT_DIR at once (a failing run writes nothing).

Group level: ``collect`` (ΔFC relmats, PyBIDS) -> ``split`` (cases and
controls) -> ``crawford_howell`` (per metric) -> ``report`` -> sinks, staged
inside OUT_DIR and moved into ``OUT_DIR/group`` only on success.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from dataclasses import asdict
from pathlib import Path

from nipype import MapNode, Node
from nipype.interfaces.utility import Merge

from nmflow.bids_io import CIFTI_SPACE, Run, collect_runs, warn_other_version, write_dataset_description
from nmflow.errors import NmflowInputError
from nmflow.fileio import atomic_write_text, recover_staged
from nmflow.interfaces.derivatives import VariantDerivativesSink
from nmflow.interfaces.group_report import CopyGroupReport
from nmflow.interfaces.io import atlas_records, strategy_records
from nmflow.interfaces.parcellate import ExtractSignals
from nmflow.interfaces.prepost_group import CollectDeltaFC, CrawfordHowell, PrepostGroupReport, SplitCases
from nmflow.interfaces.prepost_participant import (
    GLMPrePostSplit, PrepostDerivatives, PrepostRunReport, SeedMaps, SegmentConnectivity,
)
from nmflow.log import LOG, open_call_log
from nmflow.participant.atlas import Atlas, resolve_atlas, run_resolution
from nmflow.participant.connectivity import METRICS
from nmflow.participant.denoise import load_strategy
from nmflow.participant.settings import CleaningSettings, ParticipantSettings, Strategy
from nmflow.participant.tables import sources
from nmflow.prepost.change import PREPOST_METRICS
from nmflow.prepost.events import find_events
from nmflow.prepost.settings import PrepostGroupSettings, PrepostOptions
from nmflow.workflows.boilerplate import methods_text, participant_desc, references
from nmflow.workflows.engine import Progress, Workflow, blas_threads, failed_runs, run_group_workflow, run_workflow

# imported by the nodes when they run (see run_workflow's ``preload``)
NODE_IMPORTS = ("nilearn.glm.first_level", "sklearn.covariance", "nmflow.interfaces.derivatives",
                "nmflow.prepost.participant", "nmflow.reports.prepost")


def _name(run: Run) -> str:
    return "prepost_" + re.sub(r"[^A-Za-z0-9]", "_", run.key) + "_wf"


def prepost_desc(atlas: Atlas, strategy: Strategy, settings: CleaningSettings, options: PrepostOptions) -> str:
    """Methods paragraph of the per-run workflow."""
    metrics = ", ".join(METRICS[m].description for m in PREPOST_METRICS)
    return (
        "### Stimulus study (pre/post)\n\n"
        "For each BOLD run preprocessed with *fMRIPrep* (Esteban et al., 2019), a general linear model was fitted "
        "to every voxel inside the brain mask by ordinary least squares (signal scaled to percent of its mean): "
        "the stimulus (from the run's events file or given onset and duration) convolved with the Glover "
        f"haemodynamic response (Glover, 1999), the confounds of strategy *{strategy.name}* "
        f"({strategy.description}), a cosine drift basis (high-pass {settings.high_pass} Hz) and a constant; volumes "
        "flagged as non-steady-state" + (" or as high-motion" if strategy.scrub else "") + " were left out. The "
        f"residuals were split into a PRE segment (before the onset minus {options.transition:g} s) and a POST "
        f"segment (from the end of the stimulus plus {options.transition:g} s); runs with fewer than "
        f"{settings.min_volumes} volumes in a segment were excluded. The mean residual of every network of the "
        f"{len(atlas.names)}-network parcellation of Yeo et al. (2011) gave each segment's time series; "
        f"functional connectivity was estimated as {metrics} (Ledoit & Wolf, 2004), and its change as the Fisher z "
        "of POST minus that of PRE. For every network as a seed, the correlation with every voxel was computed in "
        "both segments and their difference tested with Fisher's z, the variance using each segment's effective "
        "number of samples (Bartlett, 1946); p-values were Benjamini-Hochberg adjusted over the voxels of a seed "
        f"(Benjamini & Hochberg, 1995), q < {options.alpha:g}.\n\n")


def init_prepost_run_wf(run: Run, events: str | None, atlas: Atlas, strategy: Strategy, settings: CleaningSettings,
                        options: PrepostOptions, out_dir: Path) -> Workflow:
    """The sub-workflow of one run (``events``: its ``events.tsv``, None to use ``options.onset``)."""
    wf = Workflow(name=_name(run))
    wf.__desc__ = prepost_desc(atlas, strategy, settings, options)
    atlases = atlas_records([atlas])
    uris = sources(run.bold, run.mask, run.confounds)
    space = {k: v for k, v in run.entities.items() if k in ("space", "res")}
    glm = Node(GLMPrePostSplit(
        bold=run.bold, mask=run.mask, confounds=run.confounds, tr=run.tr, options=asdict(options),
        strategy=strategy_records([strategy])[0], settings=asdict(settings), sources=uris, space=space), name="glm")
    if events:
        glm.inputs.events = events
    segments = Node(Merge(2), name="segments", run_without_submitting=True)
    extract = MapNode(ExtractSignals(mask=run.mask, atlases=atlases, min_coverage=options.min_coverage),
                      iterfield=["bold"], name="extract")
    fc = Node(SegmentConnectivity(atlases=atlases, tr=run.tr, sources=uris, space=space), name="connectivity")
    seeds = Node(SeedMaps(mask=run.mask, atlases=atlases, alpha=options.alpha, run_key=run.key, space=space),
                 name="seedmaps")
    report = Node(PrepostRunReport(run_key=run.key, atlases=atlases, strategy=strategy.name, alpha=options.alpha,
                                   methods=methods_text(wf.__desc__)), name="report")
    files, metas, entities, figures, figure_entities = (
        Node(Merge(n, ravel_inputs=True), name=name, run_without_submitting=True)
        for n, name in ((3, "files"), (3, "metas"), (3, "entities"), (2, "figures"), (2, "figure_entities")))
    derivatives = Node(PrepostDerivatives(entities=run.entities, bold=run.bold, out_dir=str(out_dir)),
                       name="derivatives", overwrite=True)  # always (re)publish: OUT_DIR may have changed
    wf.connect([
        (glm, segments, [("pre_bold", "in1"), ("post_bold", "in2")]),
        (segments, extract, [("out", "bold")]),
        (extract, fc, [("signals", "signals")]),
        (glm, seeds, [("pre_bold", "pre_bold"), ("post_bold", "post_bold")]),
        (extract, seeds, [("signals", "signals")]),
        (glm, report, [("stimulus", "stimulus"), ("design", "design"), ("segments", "segments"),
                       ("r_square", "r_square")]),
        (fc, report, [("relmats", "relmats")]),
        (seeds, report, [("summary", "seed_summary"), ("figures", "seed_figures")]),
        (glm, files, [("out_files", "in1")]), (fc, files, [("out_files", "in2")]), (seeds, files, [("out_files", "in3")]),
        (glm, metas, [("meta", "in1")]), (fc, metas, [("meta", "in2")]), (seeds, metas, [("meta", "in3")]),
        (glm, entities, [("entities", "in1")]), (fc, entities, [("entities", "in2")]),
        (seeds, entities, [("entities", "in3")]),
        (seeds, figures, [("figures", "in1")]), (report, figures, [("figures", "in2")]),
        (seeds, figure_entities, [("figure_entities", "in1")]), (report, figure_entities, [("figure_entities", "in2")]),
        (files, derivatives, [("out", "files")]), (metas, derivatives, [("out", "metas")]),
        (entities, derivatives, [("out", "file_entities")]),
        (figures, derivatives, [("out", "figures")]), (figure_entities, derivatives, [("out", "figure_entities")]),
        (report, derivatives, [("report", "report")]),
    ])
    return wf


def run_prepost_participant(runs: list[Run], events: dict[str, str | None], atlas: Atlas, strategy: Strategy,
                            settings: CleaningSettings, options: PrepostOptions, out_dir: Path, work_dir: Path,
                            nprocs: int = 1, plugin: str | None = None, plugin_args: dict | None = None,
                            verbose: bool = False) -> dict[str, str]:
    """Run every run's sub-workflow; returns ``{run_key: one-line error}`` of the runs that failed.

    Prints a progress line per run and writes the methods text to ``out_dir/logs/CITATION.md``.
    """
    wf = Workflow(name="nmflow_prepost_participant_wf", base_dir=str(work_dir))
    wf.__desc__ = participant_desc()
    wf.add_nodes([init_prepost_run_wf(r, events.get(r.key), atlas, strategy, settings, options, out_dir)
                  for r in runs])
    text = wf.visit_desc()
    atomic_write_text(Path(out_dir) / "logs" / "CITATION.md", text + references(text))
    owners = {_name(r): r.key for r in runs}
    _, crashes = run_workflow(wf, Path(work_dir) / "crashes", plugin, plugin_args, nprocs, hash_method="timestamp",
                              verbose=verbose, preload=NODE_IMPORTS, progress=Progress(owners, last_node="derivatives"))
    return failed_runs(crashes, owners)


def run_prepost_participant_level(settings: ParticipantSettings, options: PrepostOptions, glm_confounds: str,
                                  events_dir: Path | None) -> int:
    """The stimulus study's participant level: find the runs and their events, run them, print the summary;
    returns the exit code (1 when a run failed or could not be read).

    ``glm_confounds`` names the strategy whose confounds enter the GLM; the
    events come from ``events_dir`` (default: the input dataset).
    """
    if Path(settings.out_dir).is_dir():
        recover_staged(settings.out_dir)  # runs a killed call was moving into place
    if settings.space == CIFTI_SPACE:
        raise NmflowInputError(None, "--analysis prepost reads volumes (its GLM writes NIfTI maps): --space "
                                     f"{CIFTI_SPACE} is for the connectivity analysis")
    if len(settings.atlas) != 1:
        raise NmflowInputError(None, f"--analysis prepost takes one --atlas, got {len(settings.atlas)}")
    strategy = load_strategy(glm_confounds)
    runs, problems = collect_runs(settings.bids_dir, list(settings.participant_label) or None, settings.bids_filters,
                                  settings.space)
    if not runs and not problems:
        raise NmflowInputError(settings.bids_dir, f"no desc-preproc_bold runs found in space {settings.space}")
    atlas = resolve_atlas(settings.atlas[0], settings.atlas_dir, run_resolution(runs))
    cleaning = dataclasses.replace(settings.cleaning, standardize=None)  # the GLM scales to percent signal change
    events = find_events(events_dir or settings.bids_dir, runs)
    # first: an OUT_DIR that cannot be written is named by this file
    write_dataset_description(settings.out_dir, settings.bids_dir)
    open_call_log()
    with tempfile.TemporaryDirectory(prefix="nmflow_work_") as scratch:  # removed unless -w is given
        with blas_threads(settings.blas_threads):
            failures = run_prepost_participant(runs, events, atlas, strategy, cleaning, options,
                                               Path(settings.out_dir).absolute(),
                                               Path(settings.work_dir or scratch).absolute(), settings.nprocs,
                                               settings.plugin, settings.engine_args, settings.verbose)
    for problem in problems:
        LOG.error(f"nmflow: error: {problem}")
    LOG.info(f"nmflow participant (prepost): {len(runs) - len(failures)} of {len(runs) + len(problems)} run(s) "
             f"done -> {settings.out_dir}")
    for key, message in sorted(failures.items()):
        LOG.error(f"nmflow: error: {key}: {message}")
    return 1 if failures or problems else 0


GROUP_DESC = (
    "### Single cases vs controls (stimulus study)\n\n"
    "Each case's change of connectivity (ΔFC) was compared with the controls' ΔFC connection by connection with the "
    "Crawford-Howell modified t-test (Crawford & Howell, 1998), t = (x - mean) / (sd sqrt((n + 1) / n)), df = n - 1; "
    "the estimated percentage of the control population more extreme than the case and the standardised case score "
    "Z-CC with its 95 % interval (non-central t) follow Crawford & Garthwaite (2002). p-values were Benjamini-Hochberg "
    "adjusted over a case's connections (Benjamini & Hochberg, 1995).\n\n")


GROUP_STAGES = {  # node -> the words of its progress line
    "collect": "ΔFC of the cohort", "split": "cases and controls", "crawford_howell": "Crawford-Howell tests",
    "report": "single-case report"}


def init_prepost_group_wf(settings: PrepostGroupSettings, staging: Path) -> Workflow:
    """The group workflow; its sinks write ``staging/group/...`` (``staging`` stands for OUT_DIR)."""
    wf = Workflow(name="nmflow_prepost_group_wf")
    wf.__desc__ = GROUP_DESC
    collect = Node(CollectDeltaFC(out_dir=str(settings.out_dir),
                                  participant_label=list(settings.participant_label)), name="collect", overwrite=True)
    split = Node(SplitCases(participants=str(settings.participants), group_column=settings.group_column,
                            control_label=settings.control_label, case_label=list(settings.case_label)),
                 name="split")
    crawford = MapNode(CrawfordHowell(alpha=settings.alpha), iterfield=["delta"], name="crawford_howell")
    report = Node(PrepostGroupReport(alpha=settings.alpha, methods=GROUP_DESC + references(GROUP_DESC)), name="report")
    ds_singlecase = MapNode(VariantDerivativesSink(base_directory=str(staging), suffix="singlecase", desc="prepost"),
                            iterfield=["in_file", "meta_dict", "entities"], name="ds_singlecase")
    ds_subjects = Node(VariantDerivativesSink(base_directory=str(staging), suffix="subjects", desc="prepost"),
                       name="ds_subjects")
    ds_report = Node(CopyGroupReport(base_directory=str(staging)), name="ds_report")
    wf.connect([
        (collect, split, [("deltas", "deltas")]),
        (collect, crawford, [("deltas", "delta")]),
        (split, crawford, [("cases", "cases"), ("controls", "controls"), ("groups", "groups")]),
        (crawford, report, [("singlecase", "singlecase")]),
        (collect, report, [("entities", "entities"), ("deltas", "deltas")]),
        (split, report, [("cases", "cases"), ("controls", "controls")]),
        (crawford, ds_singlecase, [("singlecase", "in_file"), ("singlecase_meta", "meta_dict")]),
        (collect, ds_singlecase, [("entities", "entities")]),
        (split, ds_subjects, [("subjects", "in_file"), ("subjects_meta", "meta_dict")]),
        (report, ds_report, [("report_dir", "report_dir")]),
    ])
    return wf


def run_prepost_group(settings: PrepostGroupSettings) -> str:
    """Run the group level; returns its summary line; :class:`~nmflow.errors.NmflowInputError` on bad input or a
    failed step."""
    warn_other_version(settings.out_dir)

    def finish(graph, group: Path):
        split = next(n for n in graph.nodes() if n.name == "split").result.outputs
        return split, _count_significant(group)

    split, significant = run_group_workflow(lambda staging: init_prepost_group_wf(settings, staging), settings,
                                            "crashes_prepost", finish, preload=NODE_IMPORTS,
                                            progress=Progress(GROUP_STAGES, noun="stages", announce=True))
    return (f"nmflow group (prepost): {len(split.cases)} case(s) vs {len(split.controls)} controls; "
            f"{significant} -> {Path(settings.out_dir) / 'group'}")


def _count_significant(folder: Path) -> str:
    """``meas: n significant connections`` of every single-case table, in one line."""
    import pandas as pd

    counts = []
    for path in sorted(folder.glob("*desc-prepost_meas-*_singlecase.tsv")):
        meas = re.search(r"meas-([A-Za-z0-9]+)", path.name).group(1)
        table = pd.read_csv(path, sep="\t")
        counts.append(f"{meas} {int(table['significant'].sum())}")
    return "significant connections (all cases): " + ", ".join(counts)
