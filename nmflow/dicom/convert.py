"""``nmflow dicom convert``: inventory CSV -> anonymised BIDS with heudiconv + dcm2niix.

Each participant/session is converted in a private temporary folder, scrubbed,
checked for leftover identifying values, and only then moved into the BIDS
folder, so an interrupted or failed run never leaves a half-written session.
Sessions already present are skipped unless ``overwrite`` is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from nmflow.dicom.anonymize import DATE_POLICIES, find_leaks, scrub_tree
from nmflow.dicom.bidsfiles import set_intended_for, write_dataset_files
from nmflow.dicom.heuristic import write_heuristic
from nmflow.dicom.plan import PlannedSeries, plan_warnings, read_plan
from nmflow.dicom.scan import DicomHeader, scan_tree
from nmflow.errors import NmflowInputError
from nmflow.fileio import check_apart


@dataclass
class ConvertSummary:
    """Sessions converted and skipped (``sub-X/ses-Y``), and scan warnings."""

    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _tool_env() -> dict[str, str]:
    """Environment for heudiconv: this Python's bin folder first on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "NIPYPE_NO_ET": "1"}


def locate_series(csv_path: Path, planned: list[PlannedSeries]
                  ) -> tuple[dict[str, list[DicomHeader]], list[str]]:
    """Find the DICOM files of every planned series under its ``dicom_root``.

    Returns
    -------
    files : dict
        SeriesInstanceUID -> headers of its files.
    warnings : list of str
        Files skipped while scanning.

    Raises
    ------
    NmflowInputError
        If a planned series has no file under its root.
    """
    files, warnings = defaultdict(list), []
    for root in sorted({item.dicom_root for item in planned}):
        headers, skipped = scan_tree(root)
        warnings += skipped
        for header in headers:
            files[header.series_uid].append(header)
    for item in planned:
        if item.series_uid not in files:
            raise NmflowInputError(csv_path, f"line {item.line}: series "
                                   f"{item.series_uid} not found under {item.dicom_root}")
    return dict(files), warnings


def run_heudiconv(dicom_dir: Path, heuristic: Path, participant: str, session: str,
                  out_dir: Path) -> subprocess.CompletedProcess:
    """Run the heudiconv CLI (dcm2niix converter, no top-level BIDS files).

    Parameters
    ----------
    dicom_dir : Path
        Folder holding (links to) the session's DICOM files only.
    heuristic : Path
        Heuristic file from :func:`nmflow.dicom.heuristic.write_heuristic`.
    participant, session : str
        BIDS labels without prefixes.
    out_dir : Path
        Output folder (temporary).

    Returns
    -------
    subprocess.CompletedProcess
        With captured text output.
    """
    cmd = [sys.executable, "-m", "heudiconv.cli.run", "--files", str(dicom_dir),
           "-s", participant, "-ss", session, "-f", str(heuristic), "-c", "dcm2niix",
           "-b", "notop", "--minmeta", "-g", "all", "--overwrite", "-o", str(out_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=_tool_env(), check=False)


def _place(source: Path, target: Path) -> None:
    """Copy ``source`` next to ``target`` then swap it in (replacing ``target``).

    The session folder is swapped whole, not filled file by file as with
    :func:`nmflow.fileio.staged_folder`: it appears only once complete (an
    existing one marks the session as converted) and no file of an earlier
    conversion survives ``--overwrite``.
    """
    staging = target.parent / f".nmflow-partial-{target.name}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def convert_session(items: list[PlannedSeries], files: dict[str, list[DicomHeader]],
                    bids_dir: Path, csv_path: Path, date_policy: str) -> None:
    """Convert, scrub and place one participant/session.

    Parameters
    ----------
    items : list of PlannedSeries
        Included series of one participant/session.
    files : dict
        SeriesInstanceUID -> DICOM headers, from :func:`locate_series`.
    bids_dir : Path
        BIDS root; the session lands in ``sub-X/ses-Y``.
    csv_path : Path
        Inventory CSV (named in errors; failed heudiconv logs go next to it).
    date_policy : {"remove", "shift"}
        See :mod:`nmflow.dicom.anonymize`.

    Raises
    ------
    NmflowInputError
        heudiconv failed, a series produced no image, or identifying values
        survived the scrubbing; nothing is written to ``bids_dir`` then.
    """
    participant, session = items[0].participant, items[0].session
    label = f"sub-{participant}/ses-{session}"
    with tempfile.TemporaryDirectory(prefix="nmflow-convert-") as tmp:
        tmp = Path(tmp)
        for index, item in enumerate(items):
            (tmp / "dicom" / str(index)).mkdir(parents=True)
            for number, header in enumerate(files[item.series_uid]):
                (tmp / "dicom" / str(index) / f"{number:05d}.dcm").symlink_to(header.path.resolve())
        heuristic = write_heuristic(items, csv_path.name, tmp)
        result = run_heudiconv(tmp / "dicom", heuristic, participant, session, tmp / "out")
        if result.returncode != 0:
            log = csv_path.parent / f"{csv_path.stem}_logs" / f"sub-{participant}_ses-{session}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(result.stdout + result.stderr)
            raise NmflowInputError(csv_path, f"heudiconv failed for {label} "
                                   f"(exit {result.returncode}); see {log}")
        for item in items:
            if not list((tmp / "out").glob(item.relpath + "*.nii*")):
                raise NmflowInputError(csv_path, f"line {item.line}: dcm2niix produced no "
                                       f"image for {item.relpath}")
        converted = tmp / "out" / f"sub-{participant}" / f"ses-{session}"
        scrub_tree(converted, date_policy, items[0].date_shift_days)
        set_intended_for(converted)
        leaks = find_leaks(converted, {pair for item in items
                                       for header in files[item.series_uid]
                                       for pair in header.identifiers})
        if leaks:
            raise NmflowInputError(csv_path, f"{label}: identifying DICOM values remain "
                                   f"after scrubbing ({'; '.join(leaks[:5])}); not written")
        _place(converted, bids_dir / f"sub-{participant}" / f"ses-{session}")


def run_convert(csv_path: str | Path, bids_dir: str | Path, date_policy: str = "remove",
                overwrite: bool = False, dataset_name: str = "nmflow DICOM conversion",
                ) -> ConvertSummary:
    """Convert every session of the inventory CSV into ``bids_dir``.

    Parameters
    ----------
    csv_path : str or Path
        Inventory CSV (after the user's edits).
    bids_dir : str or Path
        BIDS root, created if needed.
    date_policy : {"remove", "shift"}
        Remove acquisition dates/times, or shift dates back by the CSV's
        per-participant ``date_shift_days``.
    overwrite : bool
        Re-convert sessions that already exist.
    dataset_name : str
        ``Name`` in a newly written ``dataset_description.json``.

    Returns
    -------
    ConvertSummary
        Converted and skipped sessions.

    Raises
    ------
    NmflowInputError
        Bad CSV, missing DICOMs or tools, or a failed session (sessions
        converted before it are complete and kept).
    """
    csv_path, bids_dir = Path(csv_path), Path(bids_dir)
    if date_policy not in DATE_POLICIES:
        raise NmflowInputError(None, f"--date-policy must be one of {', '.join(DATE_POLICIES)}")
    planned = read_plan(csv_path)
    if date_policy == "shift":
        for item in planned:
            if item.date_shift_days is None:
                raise NmflowInputError(csv_path, f"line {item.line}: date_shift_days is "
                                       "empty but --date-policy shift needs it")
    if shutil.which("dcm2niix", path=_tool_env()["PATH"]) is None:
        raise NmflowInputError(None, "dcm2niix not found on PATH (pip install dcm2niix)")
    for root in sorted({item.dicom_root for item in planned}):
        check_apart(root, bids_dir, "BIDS_DIR")
    files, warnings = locate_series(csv_path, planned)
    warnings += plan_warnings(csv_path, planned)
    sessions = defaultdict(list)
    for item in planned:
        sessions[(item.participant, item.session)].append(item)
    summary = ConvertSummary(warnings=warnings)
    bids_dir.mkdir(parents=True, exist_ok=True)
    for (participant, session), items in sorted(sessions.items()):
        label = f"sub-{participant}/ses-{session}"
        if (bids_dir / label).exists() and not overwrite:
            summary.skipped.append(label)
            continue
        convert_session(items, files, bids_dir, csv_path, date_policy)
        summary.converted.append(label)
    write_dataset_files(bids_dir, planned, dataset_name, date_policy)
    return summary
