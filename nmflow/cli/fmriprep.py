"""``nmflow fmriprep BIDS_DIR DERIV_DIR``: batch fMRIPrep (or a SLURM array script)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from nmflow.cli.config import parse_with_config
from nmflow.errors import NmflowInputError


def build_parser() -> argparse.ArgumentParser:
    """The ``nmflow fmriprep`` argument parser."""
    from nmflow.fmriprep_runner import DEFAULT_ENGINE, DEFAULT_IMAGE, DEFAULT_SPACES, ENGINES

    parser = argparse.ArgumentParser(prog="nmflow fmriprep",
                                     description="Run fMRIPrep for every participant.")
    parser.add_argument("bids_dir", type=Path, help="BIDS dataset")
    parser.add_argument("deriv_dir", type=Path, help="fMRIPrep output folder")
    parser.add_argument("--participant-label", nargs="+", help="labels (default: all sub-*)")
    parser.add_argument("--engine", choices=ENGINES,
                        help=f"how fMRIPrep is started (default: {DEFAULT_ENGINE['run']}; "
                             f"{DEFAULT_ENGINE['slurm']} with --slurm-script)")
    parser.add_argument("--image", help=f"Docker image (default {DEFAULT_IMAGE}) or the "
                                        ".sif file for apptainer/singularity")
    parser.add_argument("--fs-license-file", type=Path, default=os.environ.get("FS_LICENSE"),
                        help="FreeSurfer license (default: $FS_LICENSE)")
    parser.add_argument("--output-spaces", nargs="+", default=list(DEFAULT_SPACES))
    parser.add_argument("--nthreads", type=int)
    parser.add_argument("--omp-nthreads", type=int)
    parser.add_argument("--mem-mb", type=int)
    parser.add_argument("--work-dir", type=Path, help="default: DERIV_DIR_work next to DERIV_DIR")
    parser.add_argument("--log-dir", type=Path, help="default: DERIV_DIR/logs/nmflow")
    parser.add_argument("--skip-bids-validation", action="store_true")
    parser.add_argument("--fmriprep-args", default="",
                        help='extra fMRIPrep arguments, given with "=": '
                             '--fmriprep-args="--fs-no-reconall --cifti-output"')
    parser.add_argument("--rerun", action="store_true",
                        help="also run participants whose sub-<label>.html exists")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--slurm-script", type=Path,
                        help="write a SLURM array script here instead of running")
    parser.add_argument("--slurm-time", default="24:00:00")
    parser.add_argument("--slurm-max-parallel", type=int)
    parser.add_argument("--config", help="YAML/TOML file whose keys are these flag names")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``nmflow fmriprep``; returns the exit code (1 if a run failed; errors are raised)."""
    from nmflow import fmriprep_runner as runner

    args = parse_with_config(build_parser(), argv)
    if args.fs_license_file is None:
        raise NmflowInputError(None, "--fs-license-file is required (or set $FS_LICENSE)")
    deriv = args.deriv_dir
    options = runner.FmriprepOptions(
        fs_license_file=Path(args.fs_license_file),
        work_dir=Path(args.work_dir or deriv.with_name(deriv.name + "_work")),
        engine=args.engine or runner.DEFAULT_ENGINE["slurm" if args.slurm_script else "run"],
        image=args.image, output_spaces=tuple(args.output_spaces),
        nthreads=args.nthreads, omp_nthreads=args.omp_nthreads, mem_mb=args.mem_mb,
        skip_bids_validation=args.skip_bids_validation,
        extra_args=tuple(shlex.split(args.fmriprep_args)))
    log_dir = Path(args.log_dir or deriv / "logs" / "nmflow")
    if args.slurm_script:
        labels = runner.write_slurm_script(
            args.slurm_script, args.bids_dir, deriv, options, log_dir,
            args.participant_label, args.rerun, args.slurm_time, args.slurm_max_parallel)
        _warn_skipped(runner.skipped(args.bids_dir, args.participant_label))
        print(f"wrote {args.slurm_script} for {len(labels)} participant(s); "
              f"submit it with: sbatch {args.slurm_script}" if labels
              else "nothing to do: every participant is already processed")
        return 0
    results = runner.run_all(args.bids_dir, deriv, options, log_dir,
                             args.participant_label, args.dry_run, args.rerun)
    _warn_skipped(results)
    print(runner.format_summary(results, args.dry_run))
    return 1 if any(r.status in ("failed", "skipped") for r in results) else 0


def _warn_skipped(results) -> None:
    for result in results:
        if result.status == "skipped":
            print(f"nmflow: warning: skipped sub-{result.participant}: {result.note}", file=sys.stderr)
