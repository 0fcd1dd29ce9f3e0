"""``nmflow dicom inventory``: DICOM tree -> editable series CSV + private key file.

The CSV holds one row per series with the proposed BIDS destination and never
a PatientID or name; the PatientID -> pseudonym mapping lives only in the key
file, which also makes pseudonyms and session labels stable across runs.
"""

from __future__ import annotations

import csv
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from nmflow.dicom.checks import SeriesFacts, unusable
from nmflow.dicom.classify import Proposal, classify
from nmflow.dicom.files import read_table
from nmflow.dicom.scan import Series, group_series, scan_tree
from nmflow.errors import NmflowInputError
from nmflow.fileio import atomic_write_text, table_text

CSV_COLUMNS = [
    "participant_label", "session_label", "include", "datatype", "suffix", "entities",
    "series_number", "series_description", "protocol_name", "image_type", "n_files",
    "n_volumes", "tr_s", "age", "sex", "date_shift_days", "reason",
    "study_instance_uid", "series_instance_uid", "dicom_root",
]
KEY_COLUMNS = ["patient_id", "participant_label", "date_shift_days",
               "study_instance_uid", "session_label"]


@dataclass
class InventorySummary:
    """What an inventory run found (no identifying values)."""

    n_files: int
    n_series: int
    sessions: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)


def read_key_file(path: Path) -> list[dict[str, str]]:
    """Read an existing key file (empty list if it does not exist yet).

    Raises
    ------
    NmflowInputError
        If the file exists but lacks the key-file columns.
    """
    if not path.exists():
        return []
    try:
        rows = read_table(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NmflowInputError(path, f"cannot read the key file ({type(exc).__name__}: {exc})") from None
    if rows and not set(KEY_COLUMNS) <= set(rows[0]):
        raise NmflowInputError(path, f"not an nmflow key file (columns {KEY_COLUMNS} expected)")
    return rows


def _next_number(labels) -> int:
    numbers = [int(label) for label in labels if label.isdigit()]
    return max(numbers, default=0) + 1


def assign_labels(series: list[Series], key_rows: list[dict[str, str]],
                  warnings: list[str]) -> list[dict[str, str]]:
    """Give every study a (participant, session) label, reusing the key file's.

    Parameters
    ----------
    series : list of Series
        Ordered as returned by :func:`group_series` (study time first).
    key_rows : list of dict
        Existing key-file rows.
    warnings : list of str
        Appended to when a file has no PatientID.

    Returns
    -------
    list of dict
        Updated key rows (existing ones first), one per study.
    """
    rows = list(key_rows)
    subjects = {r["patient_id"]: (r["participant_label"], r["date_shift_days"]) for r in rows}
    studies = {r["study_instance_uid"] for r in rows}
    for item in series:
        head = item.first
        if head.study_uid in studies:
            continue
        patient = head.patient_id or f"no-patient-id:{head.study_uid}"
        if not head.patient_id:
            warnings.append(f"series {head.series_number} of a study has no PatientID; "
                            "that study becomes its own participant")
        if patient not in subjects:
            label = f"{_next_number(r['participant_label'] for r in rows):03d}"
            subjects[patient] = (label, str(secrets.randbelow(3650) + 1))
        label, shift = subjects[patient]
        session = _next_number(r["session_label"] for r in rows if r["participant_label"] == label)
        rows.append({"patient_id": patient, "participant_label": label, "date_shift_days": shift,
                     "study_instance_uid": head.study_uid, "session_label": f"{session:02d}"})
        studies.add(head.study_uid)
    return rows


def _number_runs(rows: list[dict[str, str]]) -> None:
    """Add ``run-N`` to included rows that would otherwise share a BIDS name."""
    groups = defaultdict(list)
    for row in rows:
        if row["include"] == "yes":
            groups[(row["participant_label"], row["session_label"], row["datatype"],
                    row["suffix"], row["entities"])].append(row)
    for same in groups.values():
        if len(same) > 1:
            for run, row in enumerate(same, start=1):
                row["entities"] = "_".join(e for e in (row["entities"], f"run-{run}") if e)


def _exclude_unusable(rows: list[dict], warnings: list[str]) -> None:
    """Propose ``include=no`` (with a warning) for included series :func:`~nmflow.dicom.checks.unusable` flags."""
    included = [row for row in rows if row["include"] == "yes"]
    facts = [SeriesFacts((row["participant_label"], row["session_label"]), row["datatype"], row["suffix"],
                         row["n_volumes"], float(row["age"]) if row["age"] else None) for row in included]
    for index, problem in unusable(facts).items():
        row = included[index]
        row.update(include="no", reason=problem)
        warnings.append(f"sub-{row['participant_label']}/ses-{row['session_label']} series {row['series_number']} "
                        f"({row['series_description'] or row['protocol_name']}): {problem}; proposed include=no")


def _csv_row(item: Series, proposal: Proposal, key: dict[str, str], root: Path) -> dict:
    head = item.first
    age = "" if head.age_years is None else f"{head.age_years:g}"
    return {
        "participant_label": key["participant_label"], "session_label": key["session_label"],
        "include": "yes" if proposal.include else "no", "datatype": proposal.datatype,
        "suffix": proposal.suffix, "entities": proposal.entities,
        "series_number": "" if head.series_number is None else head.series_number,
        "series_description": head.series_description, "protocol_name": head.protocol_name,
        "image_type": "\\".join(head.image_type), "n_files": len(item.headers),
        "n_volumes": item.n_volumes, "tr_s": "" if head.tr_seconds is None else head.tr_seconds,
        "age": age, "sex": head.sex if head.sex in ("M", "F", "O") else "",
        "date_shift_days": key["date_shift_days"], "reason": proposal.reason,
        "study_instance_uid": head.study_uid, "series_instance_uid": head.series_uid,
        "dicom_root": str(root),
    }


def _folder_warnings(series: list[Series], labels: dict[str, str], root: Path) -> list[str]:
    """Warn about folders whose files belong to more than one participant."""
    owners = defaultdict(set)
    for item in series:
        for header in item.headers:
            owners[header.path.parent].add(labels[header.study_uid])
    return [f"folder {folder.relative_to(root)} holds files of "
            f"{len(subs)} participants ({', '.join('sub-' + s for s in sorted(subs))}); "
            "they were split by PatientID"
            for folder, subs in sorted(owners.items()) if len(subs) > 1]


def run_inventory(dicom_root: str | Path, csv_path: str | Path, key_file: str | Path,
                  overwrite: bool = False) -> InventorySummary:
    """Scan ``dicom_root`` and write the series CSV and the key file.

    Parameters
    ----------
    dicom_root : str or Path
        Folder of DICOM files, any layout.
    csv_path : str or Path
        Editable CSV to write (one row per series).
    key_file : str or Path
        Private PatientID -> pseudonym table; created or extended.
    overwrite : bool
        Replace an existing CSV (user edits in it are lost).

    Returns
    -------
    InventorySummary
        Counts, participants/sessions and warnings.

    Raises
    ------
    NmflowInputError
        Bad folder, existing CSV without ``overwrite``, or a bad key file.
    """
    root, csv_path, key_file = Path(dicom_root).resolve(), Path(csv_path), Path(key_file)
    if csv_path.resolve() == key_file.resolve():
        raise NmflowInputError(key_file, "the key file must not be the inventory CSV")
    if csv_path.exists() and not overwrite:
        raise NmflowInputError(csv_path, "already exists (it may hold your edits); "
                               "pass --overwrite to replace it")
    headers, warnings = scan_tree(root)
    series = group_series(headers)
    key_rows = assign_labels(series, read_key_file(key_file), warnings)
    keys = {row["study_instance_uid"]: row for row in key_rows}
    rows = [_csv_row(item, classify(item), keys[item.first.study_uid], root) for item in series]
    _exclude_unusable(rows, warnings)
    _number_runs(rows)
    labels = {uid: row["participant_label"] for uid, row in keys.items()}
    warnings += _folder_warnings(series, labels, root)
    atomic_write_text(key_file, table_text(key_rows, KEY_COLUMNS), private=True)
    atomic_write_text(csv_path, table_text(rows, CSV_COLUMNS), private=True)
    sessions = defaultdict(list)
    for row in rows:
        if row["session_label"] not in sessions[row["participant_label"]]:
            sessions[row["participant_label"]].append(row["session_label"])
    return InventorySummary(len(headers), len(series), dict(sessions), warnings)
