"""Participant-level workflow: one sub-workflow per BOLD run.

``extract`` (read the BOLD once, all atlases) -> ``denoise`` (all strategies,
on region signals) -> ``connectivity`` (all metrics) -> ``report`` (left out
with ``--reports none``) -> ``derivatives``, which names every output with niworkflows'
``DerivativesDataSink`` (:class:`~nmflow.interfaces.bids.RunDerivatives`) and
moves them all into OUT_DIR at once.  A run that fails anywhere writes
nothing to OUT_DIR; the other runs go on, and :func:`run_participant_level`
returns one line per failed run, taken from the exception that stopped it.

The workflows are niworkflows' ``LiterateWorkflow``: their ``__desc__`` make
the methods boilerplate (:func:`citation_boilerplate`), written to
``OUT_DIR/logs/CITATION.md``.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from nipype import Node

from nmflow.bids_io import CIFTI_SPACE, Run, collect_runs, write_dataset_description
from nmflow.errors import NmflowInputError
from nmflow.fileio import atomic_write_text, recover_staged
from nmflow.interfaces.bids import RunDerivatives
from nmflow.interfaces.confounds import Denoise
from nmflow.interfaces.connectivity import Connectivity
from nmflow.interfaces.io import atlas_records, strategy_records
from nmflow.interfaces.parcellate import ExtractSignals
from nmflow.interfaces.reports import RunReport
from nmflow.log import LOG, open_call_log
from nmflow.participant.atlas import Atlas, check_atlas_kind, grid_mismatches, resolve_atlas, run_resolution
from nmflow.participant.denoise import load_strategy
from nmflow.participant.settings import CleaningSettings, ParticipantSettings, Strategy
from nmflow.participant.tables import sources
from nmflow.workflows.boilerplate import methods_text, participant_desc, references, run_desc
from nmflow.workflows.engine import Progress, Workflow, blas_threads, failed_runs, run_workflow

# imported by the nodes when they run (see run_workflow's ``preload``); the report's figures need pyplot too
NODE_IMPORTS = ("nilearn.signal", "sklearn.covariance", "nmflow.interfaces.derivatives")
FIGURE_IMPORTS = ("matplotlib.pyplot",)


def _node_name(run: Run) -> str:
    return "run_" + re.sub(r"[^A-Za-z0-9]", "_", run.key) + "_wf"


def init_run_wf(
    run: Run, atlases: list[Atlas], strategies: list[Strategy], metrics: list[str],
    settings: CleaningSettings, min_coverage: float, out_dir: Path, command: str = "", reports: str = "full",
    figure_procs: int = 1,
) -> Workflow:
    """The sub-workflow of one run: ``extract`` -> ``denoise`` -> ``connectivity`` -> ``report`` -> ``derivatives``.

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
        OUT_DIR, where ``derivatives`` publishes the run's files, all at once.
    command : str
        The command line of the call, shown in the report.
    reports : {"full", "light", "none"}
        The run's report with its figures, without them, or none (no ``report`` node).
    figure_procs : int
        Processes the report draws its figures with (its ``n_procs`` for MultiProc's accounting too).
    """
    wf = Workflow(name=_node_name(run))
    wf.__desc__ = run_desc(atlases, strategies, metrics, settings, min_coverage)
    atlas_list, strategy_list = atlas_records(atlases), strategy_records(strategies)
    atlas_names = [a.name for a in atlases]
    mask = {"mask": run.mask} if run.mask else {}  # a CIFTI run has none
    extract = Node(ExtractSignals(bold=run.bold, **mask, atlases=atlas_list, min_coverage=min_coverage),
                   name="extract")
    denoise = Node(Denoise(confounds=run.confounds, tr=run.tr, atlas_names=atlas_names, strategies=strategy_list,
                           settings=asdict(settings)), name="denoise")
    fc = Node(Connectivity(atlas_names=atlas_names, metrics=metrics), name="connectivity")
    derivatives = Node(RunDerivatives(entities=run.entities, atlases=atlas_list, strategies=strategy_list,
                                      metrics=metrics, tr=run.tr, sources=sources(run.bold, run.mask, run.confounds),
                                      settings=asdict(settings), bold=run.bold,
                                      out_dir=str(out_dir)),
                       name="derivatives", overwrite=True)  # always (re)publish: OUT_DIR may have changed
    wf.connect([
        (extract, denoise, [("signals", "signals")]),
        (denoise, fc, [("cleaned", "cleaned"), ("strategies", "strategies")]),
        (extract, derivatives, [("signals", "signals")]),
        (denoise, derivatives, [("cleaned", "cleaned"), ("design_files", "design_files"),
                                ("outlier_files", "outlier_files"), ("strategies", "done"),
                                ("skipped", "skipped")]),
        (fc, derivatives, [("relmats", "relmats")]),
    ])
    if reports == "none":
        return wf
    report = Node(RunReport(run_key=run.key, entities=run.entities, bold=Path(run.bold).name, tr=run.tr,
                            atlases=atlas_list, metrics=metrics, min_coverage=min_coverage,
                            fd_threshold=settings.fd_threshold, methods=methods_text(wf.__desc__),
                            command=command, draw_figures=reports == "full", n_procs=figure_procs),
                  name="report", n_procs=figure_procs)
    wf.connect([
        (extract, report, [("signals", "signals")]),
        (denoise, report, [("cleaned", "cleaned"), ("outlier_files", "outlier_files"), ("strategies", "strategies"),
                           ("skipped", "skipped"), ("design_files", "design_files")]),
        (fc, report, [("relmats", "relmats")]),
        (report, derivatives, [("figures", "figures"), ("report", "report")]),
    ])
    return wf


def init_participant_wf(
    runs: list[Run], atlases: list[Atlas], strategies: list[Strategy], metrics: list[str],
    settings: CleaningSettings, min_coverage: float, out_dir: Path, work_dir: Path, command: str = "",
    reports: str = "full", figure_procs: int = 1,
) -> Workflow:
    """All runs' sub-workflows in one workflow (cached in ``work_dir``); ``command`` is shown in the reports,
    ``reports`` and ``figure_procs`` as :func:`init_run_wf`'s."""
    wf = Workflow(name="nmflow_participant_wf", base_dir=str(work_dir))
    wf.__desc__ = participant_desc()
    wf.add_nodes([init_run_wf(r, atlases, strategies, metrics, settings, min_coverage, out_dir, command, reports,
                              figure_procs) for r in runs])
    return wf


def citation_boilerplate(wf: Workflow) -> str:
    """The methods text (Markdown) of a workflow: every distinct ``__desc__`` once, then the references."""
    text = wf.visit_desc()
    return text + references(text)


def run_participant_level(
    runs: list[Run], atlases: list[Atlas], strategies: list[Strategy], metrics: list[str],
    settings: CleaningSettings, min_coverage: float, out_dir: Path, work_dir: Path, nprocs: int = 1,
    plugin: str | None = None, plugin_args: dict | None = None, verbose: bool = False, command: str = "",
    reports: str = "full", figure_procs: int = 1,
) -> dict[str, str]:
    """Run every run's workflow; returns ``{run_key: one-line error}`` for runs that failed.

    ``plugin``/``plugin_args`` are Nipype's (default: MultiProc with ``nprocs`` processes if ``nprocs`` > 1,
    else Linear; MultiProc's ``n_procs`` defaults to ``nprocs``); ``reports`` and ``figure_procs`` are
    :func:`init_run_wf`'s.  Also
    writes the methods boilerplate to ``out_dir/logs/CITATION.md``.
    """
    LOG.info(f"building the workflow: {len(runs)} run(s) of {len({r.subject for r in runs})} participant(s) ...")
    wf = init_participant_wf(runs, atlases, strategies, metrics, settings, min_coverage, out_dir, work_dir, command,
                             reports, figure_procs)
    atomic_write_text(Path(out_dir) / "logs" / "CITATION.md", citation_boilerplate(wf))
    by_node = {_node_name(r): r.key for r in runs}
    progress = Progress(by_node, last_node="derivatives")
    preload = NODE_IMPORTS + (FIGURE_IMPORTS if reports == "full" else ())
    _, crashes = run_workflow(wf, Path(work_dir) / "crashes", plugin, plugin_args, nprocs, hash_method="timestamp",
                              verbose=verbose, preload=preload, progress=progress)
    return failed_runs(crashes, by_node)


@dataclass
class ParticipantInputs:
    """What a participant-level call works on: the runs found, the problems found while looking for
    them (one line each), the atlases resolved at the runs' resolution and the denoising strategies."""

    runs: list[Run]
    problems: list[str]
    atlases: list[Atlas]
    strategies: list[Strategy]


def find_participant_inputs(settings: ParticipantSettings) -> ParticipantInputs:
    """Finish the publications of a killed call, check the strategies and atlases, find the runs (PyBIDS)
    and resolve the atlases; raises :class:`~nmflow.errors.NmflowInputError` when nothing can run."""
    if Path(settings.out_dir).is_dir():
        recover_staged(settings.out_dir)  # runs a killed call was moving into place
    strategies = [load_strategy(name) for name in settings.denoise]
    cifti = settings.space == CIFTI_SPACE
    check_atlas_kind(list(settings.atlas), cifti)
    LOG.info(f"indexing BIDS dataset {settings.bids_dir} ...")
    runs, problems = collect_runs(settings.bids_dir, list(settings.participant_label) or None, settings.bids_filters,
                                  settings.space)
    for run in runs:
        LOG.debug(f"{run.key}: {run.bold} (TR {run.tr} s), {run.confounds}")
    if not runs and not problems:
        kind = "bold.dtseries.nii" if cifti else "desc-preproc_bold"
        raise NmflowInputError(settings.bids_dir, f"no {kind} runs found in space {settings.space}"
                               + (f" for {' '.join(settings.participant_label)}" if settings.participant_label else ""))
    if not runs:
        return ParticipantInputs(runs, problems, [], strategies)
    res = run_resolution(runs)
    atlases = [resolve_atlas(name, settings.atlas_dir, res) for name in settings.atlas]
    for atlas in atlases:
        LOG.debug(f"atlas {atlas.name}: {atlas.image}")
    for line in [] if cifti else grid_mismatches(atlases, [r.bold for r in runs]):
        LOG.warning(f"nmflow: warning: {line}")
    return ParticipantInputs(runs, problems, atlases, strategies)


def run_participant(settings: ParticipantSettings, found: ParticipantInputs) -> int:
    """Run the participant level on ``found`` (:func:`find_participant_inputs`), print its summary and
    return the exit code: 1 when a run failed, a strategy was skipped or a run could not be read."""
    if not found.runs:
        return print_summary(settings.out_dir, 0, found.problems, {})
    # first: an OUT_DIR that cannot be written is named by this file
    write_dataset_description(settings.out_dir, settings.bids_dir)
    open_call_log()
    with tempfile.TemporaryDirectory(prefix="nmflow_work_") as scratch:  # removed unless -w is given
        work_dir = Path(settings.work_dir or scratch).absolute()
        with blas_threads(settings.blas_threads):
            failures = run_participant_level(found.runs, found.atlases, found.strategies, list(settings.metrics),
                                             settings.cleaning, settings.min_coverage,
                                             Path(settings.out_dir).absolute(), work_dir, settings.nprocs,
                                             settings.plugin, settings.engine_args, settings.verbose, settings.command,
                                             settings.reports, settings.blas_threads)
        skipped = skipped_strategies(found.runs, work_dir, failures)
    return print_summary(settings.out_dir, len(found.runs) - len(failures), found.problems, failures, skipped)


def print_summary(out_dir: Path, n_done: int, problems: list[str], failures: dict[str, str],
                  skipped: dict[str, list[str]] | None = None) -> int:
    """Print the problems found while collecting runs, the count of runs done, the strategies skipped and the
    failed runs; return the exit code."""
    skipped = skipped or {}
    for problem in problems:
        LOG.error(f"nmflow: error: {problem}")
    n_skipped = sum(len(v) for v in skipped.values())
    LOG.info(f"nmflow participant: {n_done} of {n_done + len(failures) + len(problems)} run(s) done"
             + (f", {n_skipped} strategy output(s) skipped in {len(skipped)} run(s)" if skipped else "")
             + f" -> {out_dir}")
    for reason, keys in skip_reasons(skipped).items():
        LOG.warning(f"nmflow: warning: strategy skipped in {len(keys)} run(s) ({', '.join(keys[:5])}"
                    f"{', ...' if len(keys) > 5 else ''}): {reason}")
    for key, message in failures.items():
        LOG.error(f"nmflow: error: {key}: {message}")
    return 1 if failures or problems or skipped else 0


def skip_reasons(skipped: dict[str, list[str]]) -> dict[str, list[str]]:
    """``{reason: [run_key, ...]}``: one line per distinct reason, whatever the number of runs (a strategy
    whose confounds fMRIPrep did not write is skipped in every run for the same reason).  The reason is the
    skip line without the run's file name."""
    out: dict[str, list[str]] = {}
    for key, lines in skipped.items():
        for line in lines:
            reason = re.sub(r"^\S*\.(tsv|json|nii(\.gz)?): ", "", line)
            out.setdefault(reason, []).append(key)
    return out


def skipped_strategies(runs: list[Run], work_dir: Path, failed: dict[str, str]) -> dict[str, list[str]]:
    """``{run_key: [one line per strategy skipped]}`` of the runs that did not fail, read from the
    ``denoise`` results of the last call in ``work_dir``."""
    from nipype.pipeline.engine.utils import load_resultfile

    out = {}
    for run in runs:
        result = Path(work_dir) / "nmflow_participant_wf" / _node_name(run) / "denoise" / "result_denoise.pklz"
        if run.key not in failed and result.exists():
            skipped = list(load_resultfile(result).outputs.skipped or [])
            if skipped:
                out[run.key] = skipped
    return out
