"""``nmflow FMRIPREP_DIR OUT_DIR {participant,group} --analysis prepost``: the stimulus study."""

from __future__ import annotations

import argparse


from nmflow.cli.common import (
    check_input_dataset, check_one_analysis, check_outputs_apart, read_filters, read_plugin_args, settings_namespace,
)
from nmflow.cli.config import command_line, save_call
from nmflow.errors import NmflowInputError
from nmflow.log import LOG, NIPYPE_VERBOSITY


def run_prepost(args: argparse.Namespace, argv: list[str], stem: str) -> int:
    """Run one level of the stimulus study; returns the exit code (errors are raised).  ``stem`` names the
    call's files in ``OUT_DIR/logs`` (:func:`~nmflow.cli.config.call_stem`)."""
    if args.slurm_array:
        raise NmflowInputError(None, "--slurm-array writes the normative analysis' jobs; run the stimulus study with "
                                     "--nprocs or --plugin")
    _refuse_unused(args)
    check_outputs_apart(args)
    check_one_analysis(args.out_dir, "prepost")
    status = _participant(args, argv) if args.analysis_level == "participant" else _group(args)
    save_call(args.out_dir, args, argv, stem)
    return status


# options of the connectivity analysis that the stimulus study does not read, and what it reads instead
UNUSED = {"denoise": "its GLM regresses the confounds of --glm-confounds",
          "metrics": "it computes its own pre/post measures",
          "standardize": "its GLM scales the signal to percent signal change",
          "low_pass": "its GLM models slow drifts with --high-pass only",
          "reports": "it always writes its single-case reports"}


def _refuse_unused(args: argparse.Namespace) -> None:
    """Refuse an option given with ``--analysis prepost`` that the stimulus study would ignore."""
    from nmflow.participant.settings import ParticipantSettings

    defaults = ParticipantSettings()
    for name, instead in UNUSED.items():
        given = getattr(args, name)
        if (tuple(given) if isinstance(given, list) else given) != getattr(defaults, name):
            raise NmflowInputError(None, f"--{name.replace('_', '-')} is not used by --analysis prepost ({instead}): "
                                         "leave it out")


def _participant(args: argparse.Namespace, argv: list[str]) -> int:
    from nmflow.participant.settings import ParticipantSettings
    from nmflow.prepost.settings import PrepostOptions
    from nmflow.workflows.prepost import run_prepost_participant_level

    read = settings_namespace(args, plugin_args=read_plugin_args(args.plugin_args),
                              bids_filters=read_filters(args.bids_filter_file))
    options = PrepostOptions(args.stimulus_onset, args.stimulus_duration, args.transition, args.alpha,
                             args.min_coverage)
    check_input_dataset(args)
    return run_prepost_participant_level(ParticipantSettings.from_namespace(read, command_line(argv)), options,
                                         args.glm_confounds, args.events_dir)


def _group(args: argparse.Namespace) -> int:
    from nmflow.prepost.settings import PrepostGroupSettings
    from nmflow.workflows.prepost import run_prepost_group

    settings = PrepostGroupSettings(
        out_dir=args.out_dir.absolute(),
        participants=(args.participants or args.bids_dir / "participants.tsv").absolute(),
        participant_label=tuple(args.participant_label or ()), group_column=args.group_column,
        control_label=args.control_label, case_label=tuple(args.case_label or ()), alpha=args.alpha,
        work_dir=args.work_dir.absolute() if args.work_dir else None, plugin=args.plugin,
        plugin_args=read_plugin_args(args.plugin_args), nprocs=args.nprocs, verbose=args.verbose >= NIPYPE_VERBOSITY)
    if not settings.out_dir.is_dir():
        raise NmflowInputError(settings.out_dir, "no participant-level outputs: run 'participant --analysis prepost' "
                                                 "first")
    if not settings.participants.is_file():
        raise NmflowInputError(settings.participants, "participants file not found (give --participants FILE)")
    LOG.info(run_prepost_group(settings))
    return 0
