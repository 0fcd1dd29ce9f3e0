"""Run fMRIPrep on every (or selected) participant of a BIDS dataset.

One command per participant is built for Docker, Apptainer/Singularity or a
local ``fmriprep``; participants whose report ``sub-<label>.html`` exists in
the output folder are skipped; each run writes its own log; a failure does
not stop the other participants; :func:`format_summary` gives the final
table. :func:`write_slurm_script` emits a SLURM array job instead.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nmflow.bids_io import strip_prefix, with_prefix
from nmflow.errors import NmflowInputError
from nmflow.fileio import atomic_write_text, check_apart, table_text
from nmflow.slurm import sbatch_header

ENGINES = ("docker", "apptainer", "singularity", "local")
DEFAULT_IMAGE = "nipreps/fmriprep:24.1.1"
#: What runs fMRIPrep when ``--engine`` is not given: Docker on this machine, Apptainer in a SLURM script
#: (clusters offer Apptainer/Singularity, not Docker).
DEFAULT_ENGINE = {"run": "docker", "slurm": "apptainer"}
DEFAULT_SPACES = ("MNI152NLin6Asym:res-2",)
IN_CONTAINER = {"bids": "/data", "out": "/out", "work": "/work",
                "license": "/opt/freesurfer/license.txt"}
SUMMARY_COLUMNS = ["participant", "status", "exit_code", "seconds", "log", "note"]
_SUBJECT = "NMFLOWSUBJECTLABEL"


@dataclass(frozen=True)
class FmriprepOptions:
    """How to call fMRIPrep (paths are host paths)."""

    fs_license_file: Path
    work_dir: Path
    engine: str = "docker"
    image: str | None = None
    output_spaces: tuple[str, ...] = DEFAULT_SPACES
    nthreads: int | None = None
    omp_nthreads: int | None = None
    mem_mb: int | None = None
    skip_bids_validation: bool = False
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubjectResult:
    """Outcome for one participant: ``done`` (already), ``ok``, ``failed``, ``planned`` (dry run) or
    ``skipped`` (its data cannot go through fMRIPrep; ``note`` says why)."""

    participant: str
    status: str
    returncode: int | None = None
    seconds: float | None = None
    log: Path | None = None
    note: str = ""


def check_options(options: FmriprepOptions) -> None:
    """Reject an unknown engine, a missing license or a missing Apptainer image.

    Raises
    ------
    NmflowInputError
        With the offending option or file.
    """
    if options.engine not in ENGINES:
        raise NmflowInputError(None, f"--engine must be one of {', '.join(ENGINES)}")
    if not options.fs_license_file.is_file():
        raise NmflowInputError(options.fs_license_file, "FreeSurfer license file not found "
                               "(--fs-license-file or $FS_LICENSE)")
    if options.engine in ("apptainer", "singularity") and not options.image:
        raise NmflowInputError(None, f"--image must name the fMRIPrep .sif file for --engine {options.engine} "
                               f"(build it once with: {options.engine} build fmriprep.sif docker://{DEFAULT_IMAGE})")


def check_folders(bids_dir: Path, deriv_dir: Path, work_dir: Path) -> None:
    """Refuse an output or work folder that would write into the BIDS dataset (``derivatives/`` is allowed for
    the output, as fMRIPrep suggests) or that contains it."""
    check_apart(bids_dir, deriv_dir, "DERIV_DIR", allowed="derivatives")
    check_apart(bids_dir, work_dir, "--work-dir")


def missing_data(bids_dir: Path, participant: str) -> str:
    """Why fMRIPrep cannot process ``participant`` (no T1w image, no BOLD run), or ``""``."""
    subject = bids_dir / with_prefix(participant)
    for datatype, suffix, what in (("anat", "T1w", "no T1w image"), ("func", "bold", "no BOLD run")):
        if not any(subject.glob(f"{datatype}/*_{suffix}.nii*")) and not any(
                subject.glob(f"ses-*/{datatype}/*_{suffix}.nii*")):
            return what
    return ""


def skipped(bids_dir: Path, participants: list[str] | None = None) -> list[SubjectResult]:
    """The selected participants (default: all) that lack data fMRIPrep needs, as ``skipped`` results."""
    return [SubjectResult(p, "skipped", note=why) for p in find_participants(bids_dir, participants)
            if (why := missing_data(bids_dir, p))]


def _fmriprep_args(bids: str, out: str, work: str, license_file: str, participant: str,
                   options: FmriprepOptions) -> list[str]:
    args = [bids, out, "participant", "--participant-label", participant,
            "--output-spaces", *options.output_spaces, "--fs-license-file", license_file,
            "-w", f"{work}/{with_prefix(participant)}"]
    for flag, value in (("--nthreads", options.nthreads), ("--omp-nthreads", options.omp_nthreads),
                        ("--mem-mb", options.mem_mb)):
        if value is not None:
            args += [flag, str(value)]
    if options.skip_bids_validation:
        args.append("--skip-bids-validation")
    return args + list(options.extra_args)


def build_command(bids_dir: Path, deriv_dir: Path, participant: str,
                  options: FmriprepOptions) -> list[str]:
    """The exact argument list that runs fMRIPrep for one participant.

    Parameters
    ----------
    bids_dir, deriv_dir : Path
        BIDS input and fMRIPrep output folders (host paths).
    participant : str
        Label without ``sub-``.
    options : FmriprepOptions
        Engine, image and fMRIPrep options.

    Returns
    -------
    list of str
        For containers, host folders are bound to ``/data`` (read-only),
        ``/out``, ``/work`` and the license to ``/opt/freesurfer/license.txt``.
    """
    host = {"bids": bids_dir.resolve(), "out": deriv_dir.resolve(),
            "work": options.work_dir.resolve(), "license": options.fs_license_file.resolve()}
    if options.engine == "local":
        return ["fmriprep", *_fmriprep_args(*map(str, host.values()), participant, options)]
    read_only = {"bids", "license"}
    binds = [f"{host[k]}:{IN_CONTAINER[k]}{':ro' if k in read_only else ''}" for k in host]
    args = _fmriprep_args(*IN_CONTAINER.values(), participant, options)
    if options.engine == "docker":
        flags = ["--rm", "--user", f"{os.getuid()}:{os.getgid()}"]
        mounts = [item for bind in binds for item in ("-v", bind)]
        return ["docker", "run", *flags, *mounts, options.image or DEFAULT_IMAGE, *args]
    mounts = [item for bind in binds for item in ("-B", bind)]
    return [options.engine, "run", "--cleanenv", *mounts, str(options.image), *args]


def find_participants(bids_dir: Path, selected: list[str] | None = None) -> list[str]:
    """Participant labels to process: the selected ones, or every ``sub-*`` folder.

    Raises
    ------
    NmflowInputError
        No such folder, no participant, or a selected label not in the dataset.
    """
    if not bids_dir.is_dir():
        raise NmflowInputError(bids_dir, "BIDS folder does not exist")
    present = sorted(strip_prefix(p.name) for p in bids_dir.glob("sub-*") if p.is_dir())
    wanted = [strip_prefix(label) for label in selected] if selected else present
    missing = [label for label in wanted if label not in present]
    if missing:
        raise NmflowInputError(bids_dir, f"no folder for participant(s) "
                               f"{', '.join(with_prefix(m) for m in missing)}")
    if not wanted:
        raise NmflowInputError(bids_dir, "no sub-* folder found")
    return wanted


def is_done(deriv_dir: Path, participant: str) -> bool:
    """True when fMRIPrep's final report for the participant exists."""
    return (deriv_dir / f"{with_prefix(participant)}.html").is_file()


def run_participant(cmd: list[str], log: Path) -> tuple[int, float]:
    """Run one command, sending its output to ``log``; return (exit code, seconds)."""
    start = time.monotonic()
    with open(log, "w") as handle:
        handle.write(f"# {shlex.join(cmd)}\n")
        handle.flush()
        try:
            code = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT,
                                  check=False).returncode
        except OSError as exc:
            handle.write(f"nmflow: cannot start {cmd[0]}: {exc}\n")
            code = 127
    return code, round(time.monotonic() - start, 1)


def run_all(bids_dir: Path, deriv_dir: Path, options: FmriprepOptions, log_dir: Path,
            participants: list[str] | None = None, dry_run: bool = False, rerun: bool = False,
            echo: Callable[[str], None] = print) -> list[SubjectResult]:
    """Run fMRIPrep participant by participant.

    Parameters
    ----------
    bids_dir, deriv_dir : Path
        BIDS input and fMRIPrep output folders.
    options : FmriprepOptions
        Engine and fMRIPrep options.
    log_dir : Path
        One ``sub-<label>.log`` per participant and ``fmriprep_summary.tsv``.
    participants : list of str, optional
        Labels to process (default: every ``sub-*`` folder).
    dry_run : bool
        Only print the commands (nothing is created or run).
    rerun : bool
        Also run participants whose report already exists.
    echo : callable
        Receives each command line in dry-run mode and progress lines.

    Returns
    -------
    list of SubjectResult
        One per participant, in order.
    """
    check_options(options)
    check_folders(bids_dir, deriv_dir, options.work_dir)
    labels = find_participants(bids_dir, participants)
    lacking = {r.participant: r for r in skipped(bids_dir, labels)}
    todo = [p for p in labels if p not in lacking and (rerun or not is_done(deriv_dir, p))]
    commands = {p: build_command(bids_dir, deriv_dir, p, options) for p in todo}
    if dry_run:
        for participant in todo:
            echo(shlex.join(commands[participant]))
    elif todo and shutil.which(commands[todo[0]][0]) is None:
        raise NmflowInputError(None, f"{commands[todo[0]][0]} not found on PATH "
                               f"(--engine {options.engine})")
    if not dry_run:
        for folder in (deriv_dir, options.work_dir, log_dir):
            folder.mkdir(parents=True, exist_ok=True)
    results = []
    for participant in labels:
        if participant in lacking:
            results.append(lacking[participant])
        elif participant not in commands:
            results.append(SubjectResult(participant, "done"))
        elif dry_run:
            results.append(SubjectResult(participant, "planned"))
        else:
            echo(f"fmriprep: running {with_prefix(participant)}")
            log = log_dir / f"{with_prefix(participant)}.log"
            code, seconds = run_participant(commands[participant], log)
            results.append(SubjectResult(participant, "ok" if code == 0 else "failed",
                                         code, seconds, log))
    if not dry_run:
        atomic_write_text(log_dir / "fmriprep_summary.tsv",
                          table_text(_summary_rows(results), SUMMARY_COLUMNS, delimiter="\t"))
    return results


def _summary_rows(results: list[SubjectResult]) -> list[dict[str, str]]:
    return [{"participant": with_prefix(r.participant), "status": r.status,
             "exit_code": "" if r.returncode is None else str(r.returncode),
             "seconds": "" if r.seconds is None else f"{r.seconds:g}",
             "log": "" if r.log is None else str(r.log), "note": r.note} for r in results]


def format_summary(results: list[SubjectResult], dry_run: bool = False) -> str:
    """A plain-text table of the results, followed by a one-line verdict.

    The verdict lists the failed participants (``failed: none`` when all
    ran), or after a dry run the planned ones; skipped participants follow.
    """
    rows = [dict(zip(SUMMARY_COLUMNS, SUMMARY_COLUMNS))] + _summary_rows(results)
    widths = {c: max(len(row[c]) for row in rows) for c in SUMMARY_COLUMNS}
    lines = ["  ".join(row[c].ljust(widths[c]) for c in SUMMARY_COLUMNS).rstrip() for row in rows]
    status = "planned" if dry_run else "failed"
    verdict = f"{status}: {', '.join(with_prefix(r.participant) for r in results if r.status == status) or 'none'}"
    if dry_run:
        verdict += " (dry run: nothing was run)"
    skipped = [f"{with_prefix(r.participant)} ({r.note})" for r in results if r.status == "skipped"]
    lines.append(verdict + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    return "\n".join(lines)


def _shell_word(arg: str) -> str:
    """Quote ``arg`` for bash, leaving the participant placeholder expandable."""
    return '"${SUBJECT}"'.join(shlex.quote(part) if part else "" for part in arg.split(_SUBJECT))


def slurm_script(bids_dir: Path, deriv_dir: Path, participants: list[str],
                 options: FmriprepOptions, log_dir: Path, time_limit: str = "24:00:00",
                 max_parallel: int | None = None) -> str:
    """Text of a SLURM array script running one participant per array task.

    Parameters
    ----------
    bids_dir, deriv_dir : Path
        BIDS input and fMRIPrep output folders.
    participants : list of str
        Labels, one array task each (must not be empty).
    options : FmriprepOptions
        Engine and fMRIPrep options (``nthreads``/``mem_mb`` also size the job).
    log_dir : Path
        Where each task writes ``sub-<label>.log``.
    time_limit : str
        ``--time`` of each task.
    max_parallel : int, optional
        Maximum number of tasks running at once.

    Returns
    -------
    str
        A bash script for ``sbatch``.
    """
    cmd = build_command(bids_dir, deriv_dir, _SUBJECT, options)
    array = f"0-{len(participants) - 1}" + (f"%{max_parallel}" if max_parallel else "")
    log = shlex.quote(str(log_dir.resolve()))
    header = sbatch_header("fmriprep", options.nthreads or 8, {"mem": options.mem_mb or 32000, "time": time_limit},
                           log_dir.resolve() / "slurm-%A_%a.out", [f"#SBATCH --array={array}"])
    return "\n".join([
        *header,
        "set -euo pipefail",
        f"SUBJECTS=({' '.join(shlex.quote(p) for p in participants)})",
        'SUBJECT="${SUBJECTS[$SLURM_ARRAY_TASK_ID]}"',
        f"mkdir -p {shlex.quote(str(options.work_dir.resolve()))} "
        f"{shlex.quote(str(deriv_dir.resolve()))} {log}",
        f"{' '.join(_shell_word(arg) for arg in cmd)} > {log}/sub-\"${{SUBJECT}}\".log 2>&1",
        "",
    ])


def write_slurm_script(path: Path, bids_dir: Path, deriv_dir: Path, options: FmriprepOptions,
                       log_dir: Path, participants: list[str] | None = None, rerun: bool = False,
                       time_limit: str = "24:00:00", max_parallel: int | None = None) -> list[str]:
    """Write the SLURM array script for the participants not done yet.

    Returns
    -------
    list of str
        Participant labels in the array (empty: nothing written); participants
        lacking a T1w image or a BOLD run are left out (:func:`missing_data`).
    """
    check_options(options)
    check_folders(bids_dir, deriv_dir, options.work_dir)
    lacking = {r.participant for r in skipped(bids_dir, participants)}
    labels = [p for p in find_participants(bids_dir, participants)
              if p not in lacking and (rerun or not is_done(deriv_dir, p))]
    if labels:
        log_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, slurm_script(bids_dir, deriv_dir, labels, options, log_dir,
                                             time_limit, max_parallel))
        path.chmod(0o755)
    return labels
