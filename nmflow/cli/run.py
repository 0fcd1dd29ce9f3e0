"""The BIDS-App call: ``nmflow FMRIPREP_DIR OUT_DIR {participant,group} [options]``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


from nmflow import __version__
from nmflow.cli.config import call_stem, command_line, parse_with_config, save_call
from nmflow.cli.common import (
    check_input_dataset, check_numbers, check_one_analysis, check_outputs_apart, read_filters, read_plugin_args,
    settings_namespace,
)
from nmflow.cli.group_options import add_group_arguments, check_group_arguments, check_group_resources
from nmflow.cli.prepost_options import add_prepost_arguments
from nmflow.participant.settings import METRIC_NAMES, PRESETS, REPORT_LEVELS, ParticipantSettings
from nmflow.errors import NmflowInputError
from nmflow.log import LOG, set_verbosity, start_call_log

os.environ.setdefault("NIPYPE_NO_ET", "1")
PLUGINS = ["Linear", "MultiProc", "SLURM", "SGE", "PBS"]


class _DefaultsShown(argparse.HelpFormatter):
    """Help that ends every option with its default, when it has one worth showing (not None/False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """The parser: the single source of every option's default."""
    parser = argparse.ArgumentParser(
        prog="nmflow", usage="nmflow BIDS_DIR OUT_DIR {participant,group} [options]  (nmflow -h: every option)",
        formatter_class=_DefaultsShown,
        description="Yeo-network functional connectivity and normative deviations from fMRIPrep outputs. "
        "Options are grouped by level below. Other commands: nmflow simulate | simulate-prepost | dicom | fmriprep "
        "(see nmflow <command> -h).")
    parser.add_argument("bids_dir", type=Path, help="fMRIPrep derivatives folder")
    parser.add_argument("out_dir", type=Path, help="output folder (BIDS derivatives)")
    parser.add_argument("analysis_level", choices=["participant", "group"])
    parser.add_argument("--version", action="version", version=f"nmflow {__version__}")
    parser.add_argument("--config", help="YAML or TOML file whose keys are these flag names")
    g = parser.add_argument_group("selection")
    g.add_argument("--participant-label", "--participant_label", nargs="+",
                   help="subjects, with or without 'sub-' (a label not found stops the call)")
    g.add_argument("--bids-filter-file", type=Path, help="JSON: {'bold': {entity: value}} added to the BOLD query")
    g.add_argument("--skip-bids-validation", action="store_true",
                   help="participant level: do not check that BIDS_DIR is a BIDS derivatives folder with sub-* "
                        "folders (dataset_description.json read, DatasetType not raw)")
    defaults = ParticipantSettings()
    g.add_argument("--space", default=defaults.space,
                   help="template space of the BOLD runs; fsLR reads fMRIPrep's CIFTI outputs "
                        "(space-fsLR_den-91k_bold.dtseries.nii, --cifti-output) with --atlas yeo7 and/or yeo17")
    p = parser.add_argument_group("participant level")
    p.add_argument("--denoise", nargs="+", default=list(defaults.denoise),
                   help=f"strategies: {', '.join(PRESETS)} or a .yml file")
    p.add_argument("--atlas", nargs="+", default=list(defaults.atlas),
                   help="yeo7thin yeo7thick yeo17thin yeo17thick, or NAME=labels.nii.gz:labels.tsv; "
                        "with --space fsLR: yeo7 yeo17 (networks on the 91k grayordinates)")
    p.add_argument("--atlas-dir", help="folder of atlases (default: $NMFLOW_ATLAS_DIR)")
    p.add_argument("--metrics", nargs="+", default=list(defaults.metrics), choices=list(METRIC_NAMES), help="FC metrics")
    p.add_argument("--low-pass", type=float, default=defaults.low_pass, help="Hz (0: no low-pass)")
    p.add_argument("--high-pass", type=float, default=defaults.high_pass, help="Hz (0: no high-pass)")
    p.add_argument("--fd-threshold", type=float, default=defaults.fd_threshold, help="mm, for scrubbing")
    p.add_argument("--dvars-threshold", type=float, default=defaults.dvars_threshold, help="std DVARS, for scrubbing")
    p.add_argument("--min-segment", type=int, default=defaults.min_segment,
                   help="kept segments shorter than this are censored too")
    p.add_argument("--min-volumes", type=int, default=defaults.min_volumes,
                   help="a run with fewer volumes left fails")
    p.add_argument("--standardize", default=defaults.standardize, choices=["psc", "zscore_sample", "none"],
                   help="scaling of the cleaned time series")
    p.add_argument("--min-coverage", type=float, default=defaults.min_coverage,
                   help="regions with less of their voxels inside the brain mask become NaN")
    p.add_argument("--reports", default=defaults.reports, choices=REPORT_LEVELS,
                   help="the per-run HTML report: full (with its figures), light (tables, FC matrices and "
                        "methods, no figures: about 1 s less per run) or none (no report, no figures)")
    r = parser.add_argument_group("resources")
    r.add_argument("--nprocs", type=int, default=defaults.nprocs, help="parallel processes")
    r.add_argument("--plugin", choices=PLUGINS,
                   help="Nipype execution plugin (default: MultiProc with --nprocs processes if --nprocs > 1, "
                        "else Linear); SLURM/SGE/PBS submit one job per node")
    r.add_argument("--plugin-args",
                   help="the plugin's arguments: a JSON object or a JSON/YAML file, e.g. "
                        "'{\"sbatch_args\": \"--mem=2G\"}' or '{\"n_procs\": 4}'")
    r.add_argument("-w", "--work-dir", type=Path, help="Nipype cache (a re-run resumes from it)")
    m = r.add_mutually_exclusive_group()
    m.add_argument("-v", "--verbose", action="count", default=0,
                   help="-v: nmflow's details too (files found, folders, plugin); -vv: Nipype's workflow log as well")
    m.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only (the log file keeps all)")
    s = parser.add_argument_group("slurm array (participant level)")
    s.add_argument("--slurm-array", action="store_true",
                   help="run nothing: write WORK_DIR/slurm/participant.sbatch (one array task per subject) and "
                        "group.sbatch (the group level, after the array), and print how to submit them; "
                        "needs -w on a folder the nodes share")
    s.add_argument("--slurm-args", default="", help="extra sbatch options for both jobs, written with '=', e.g. "
                   "--slurm-args='--partition=short --time=02:00:00' (they override the scripts' #SBATCH lines)")
    s.add_argument("--slurm-submit", action="store_true", help="with --slurm-array: submit both jobs with sbatch")
    add_group_arguments(parser.add_argument_group("group level"))
    add_prepost_arguments(parser.add_argument_group("stimulus study (--analysis prepost)"))
    return parser


def main(argv: list[str]) -> int:
    """Entry point of the BIDS-App call; returns the exit code (errors are raised)."""
    args = parse_with_config(build_parser(), argv)
    check_numbers(args)
    stem = call_stem(args.analysis_level)
    start_call_log(args.out_dir / "logs" / f"{stem}.log")  # beside <stem>.yml, once the call writes into OUT_DIR
    set_verbosity(args.verbose - args.quiet)
    LOG.debug(f"nmflow {__version__}: {command_line(argv)}")
    if args.analysis == "prepost":
        from nmflow.cli.prepost import run_prepost

        return run_prepost(args, argv, stem)
    if args.analysis_level == "participant":
        return run_participant(args, argv, stem)
    return run_group(args, argv, stem)


def run_participant(args: argparse.Namespace, argv: list[str], stem: str) -> int:
    check_outputs_apart(args)
    check_one_analysis(args.out_dir, "normative")
    LOG.info(f"nmflow {__version__}, participant level: loading Nipype ...")  # seconds of imports
    from nmflow.participant.settings import ParticipantSettings
    from nmflow.workflows.participant import find_participant_inputs, run_participant

    read = settings_namespace(args, plugin_args=read_plugin_args(args.plugin_args),
                              bids_filters=read_filters(args.bids_filter_file))
    settings = ParticipantSettings.from_namespace(read, command_line(argv))
    check_input_dataset(args)
    found = find_participant_inputs(settings)
    if args.slurm_array and found.runs:
        return _slurm_array(args, found.runs, found.problems)
    status = run_participant(settings, found)
    if found.runs:
        save_call(args.out_dir, args, argv, stem)
    return status


def _slurm_array(args: argparse.Namespace, runs: list, problems: list[str]) -> int:
    """Write (and with ``--slurm-submit`` submit) the participant array and its group job."""
    from nmflow.slurm import forwarded_options, write_slurm_jobs

    if args.work_dir is None:
        raise NmflowInputError(None, "--slurm-array needs -w/--work-dir, on a folder the compute nodes share")
    fresh = build_parser()
    jobs = write_slurm_jobs(sorted({r.subject for r in runs}), args.bids_dir, args.out_dir, args.work_dir,
                            forwarded_options(fresh, args, ["participant_label"]), forwarded_options(fresh, args),
                            args.nprocs, args.slurm_args)
    LOG.info(f"nmflow participant: wrote a {jobs.n_tasks}-task Slurm array ({jobs.participant_script.name}) and its "
             f"group job ({jobs.group_script.name}) in {jobs.participant_script.parent}")
    for problem in problems:
        LOG.error(f"nmflow: error: {problem} (left out of the array)")
    if args.slurm_submit:
        array_id, group_id = jobs.submit()
        LOG.info(f"submitted: participant array {array_id}, group job {group_id} (afterany:{array_id})")
    else:
        LOG.info("submit them with:\n" + jobs.commands())
    return 0


def run_group(args: argparse.Namespace, argv: list[str], stem: str) -> int:
    check_group_arguments(args)
    check_outputs_apart(args)
    check_one_analysis(args.out_dir, "normative")
    check_group_resources(args)
    args.plugin_args = read_plugin_args(args.plugin_args)
    LOG.info(f"nmflow {__version__}, group level: loading Nipype and PyTorch ...")  # seconds of imports
    from nmflow.group.settings import GroupSettings
    from nmflow.workflows.group import run_group as run_group_level

    status = run_group_level(GroupSettings.from_namespace(settings_namespace(args)))
    save_call(args.out_dir, args, argv, stem)
    return status
