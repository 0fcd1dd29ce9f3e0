"""``nmflow FMRIPREP_DIR OUT_DIR {participant,group} --analysis prepost``: the stimulus study."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import yaml

from nmflow.cli.common import check_outputs_apart, read_filters, read_plugin_args
from nmflow.cli.config import save_call
from nmflow.errors import NmflowInputError


def run_prepost(args: argparse.Namespace, argv: list[str]) -> int:
    """Run one level of the stimulus study; returns the exit code (errors are raised)."""
    if args.slurm_array:
        raise NmflowInputError(None, "--slurm-array writes the normative analysis' jobs; run the stimulus study with "
                                     "--nprocs or --plugin")
    check_outputs_apart(args)
    _check_out_dir(args.out_dir)
    status = _participant(args) if args.analysis_level == "participant" else _group(args)
    save_call(args.out_dir, args.analysis_level, args, argv)
    return status


def _check_out_dir(out_dir: Path) -> None:
    """OUT_DIR must not hold the normative analysis' outputs (its group level would read the ΔFC as variants):
    every earlier call saved in ``OUT_DIR/logs`` must be a prepost one."""
    for call in sorted((Path(out_dir) / "logs").glob("nmflow-*.yml")):
        analysis = (yaml.safe_load(call.read_text()) or {}).get("analysis", "normative")
        if analysis != "prepost":
            raise NmflowInputError(out_dir, f"holds the outputs of the {analysis} analysis ({call.name}): give the "
                                            "stimulus study its own OUT_DIR")


def _participant(args: argparse.Namespace) -> int:
    from nmflow.bids_io import CIFTI_SPACE, collect_runs, write_dataset_description
    from nmflow.fileio import recover_staged
    from nmflow.participant.atlas import resolve_atlas, run_resolution
    from nmflow.participant.denoise import CleaningSettings, load_strategy
    from nmflow.prepost.events import find_events
    from nmflow.workflows.prepost import PrepostOptions, run_prepost_participant

    if args.out_dir.is_dir():
        recover_staged(args.out_dir)  # runs a killed call was moving into place
    if args.space == CIFTI_SPACE:
        raise NmflowInputError(None, "--analysis prepost reads volumes (its GLM writes NIfTI maps): --space "
                                     f"{CIFTI_SPACE} is for the connectivity analysis")
    if len(args.atlas) != 1:
        raise NmflowInputError(None, f"--analysis prepost takes one --atlas, got {len(args.atlas)}")
    strategy = load_strategy(args.glm_confounds)
    runs, problems = collect_runs(args.bids_dir, args.participant_label, read_filters(args.bids_filter_file),
                                  args.space)
    if not runs and not problems:
        raise NmflowInputError(args.bids_dir, f"no desc-preproc_bold runs found in space {args.space}")
    atlas = resolve_atlas(args.atlas[0], args.atlas_dir, run_resolution(runs))
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(CleaningSettings)}
    settings = CleaningSettings(**{**values, "standardize": None})  # the GLM scales to percent signal change
    events = find_events(args.events_dir or args.bids_dir, runs)
    options = PrepostOptions(args.stimulus_onset, args.stimulus_duration, args.transition, args.alpha,
                             args.min_coverage)
    plugin_args = read_plugin_args(args.plugin_args)
    write_dataset_description(args.out_dir, args.bids_dir)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="nmflow_work_"))
    failures = run_prepost_participant(runs, events, atlas, strategy, settings, options, args.out_dir.absolute(),
                                       work_dir.absolute(), args.nprocs, args.plugin, plugin_args, args.verbose)
    for problem in problems:
        print(f"nmflow: error: {problem}", file=sys.stderr)
    print(f"nmflow participant (prepost): {len(runs) - len(failures)} of {len(runs) + len(problems)} run(s) done "
          f"-> {args.out_dir}")
    for key, message in sorted(failures.items()):
        print(f"nmflow: error: {key}: {message}", file=sys.stderr)
    return 1 if failures or problems else 0


def _group(args: argparse.Namespace) -> int:
    from nmflow.workflows.prepost import PrepostGroupSettings, run_prepost_group

    s = PrepostGroupSettings(
        out_dir=args.out_dir.absolute(),
        participants=(args.participants or args.bids_dir / "participants.tsv").absolute(),
        participant_label=tuple(args.participant_label or ()), group_column=args.group_column,
        control_label=args.control_label, case_label=tuple(args.case_label or ()), alpha=args.alpha,
        work_dir=args.work_dir.absolute() if args.work_dir else None, plugin=args.plugin,
        plugin_args=read_plugin_args(args.plugin_args), nprocs=args.nprocs, verbose=args.verbose)
    if not s.out_dir.is_dir():
        raise NmflowInputError(s.out_dir, "no participant-level outputs: run 'participant --analysis prepost' first")
    if not s.participants.is_file():
        raise NmflowInputError(s.participants, "participants file not found (give --participants FILE)")
    print(run_prepost_group(s))
    return 0
