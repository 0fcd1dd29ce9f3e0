"""Dataset-level BIDS files and fieldmap ``IntendedFor``."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

from nmflow.bids_io import with_prefix
from nmflow.dicom.files import read_table
from nmflow.dicom.plan import PlannedSeries
from nmflow.fileio import atomic_write_text, table_text

BIDS_VERSION = "1.9.0"
MAX_AGE = 89  # BIDS/HIPAA: ages above 89 are reported as 89
PARTICIPANTS_JSON = {
    "age": {"Description": "Age at the first converted session", "Units": "year",
            "LongName": "age (ages above 89 are written as 89)"},
    "sex": {"Description": "Sex from the DICOM header or the inventory CSV",
            "Levels": {"M": "male", "F": "female", "O": "other"}},
}
README = """# {name}

Raw BIDS dataset converted from DICOM with nmflow {nmflow} (heudiconv {heudiconv}
and dcm2niix). Participants are pseudonymised; names, IDs, birth dates,
institution and operator fields were removed from all sidecars and NIfTI
headers, and acquisition dates were {dates}.
"""


def set_intended_for(session_dir: Path) -> None:
    """Point every fieldmap of a session at the session's BOLD and DWI runs.

    Parameters
    ----------
    session_dir : Path
        ``.../sub-X/ses-Y`` folder; paths are written relative to the
        subject folder (``ses-Y/func/...nii.gz``).
    """
    subject_dir = session_dir.parent
    targets = sorted(str(p.relative_to(subject_dir)) for pattern in
                     ("func/*_bold.nii*", "dwi/*_dwi.nii*") for p in session_dir.glob(pattern))
    for sidecar in sorted(session_dir.glob("fmap/*.json")):
        meta = json.loads(sidecar.read_text())
        meta.pop("IntendedFor", None)
        if targets:
            meta["IntendedFor"] = targets
        atomic_write_text(sidecar, json.dumps(meta, indent=2) + "\n")


def participant_rows(planned: list[PlannedSeries]) -> dict[str, dict[str, str]]:
    """One participants.tsv row per participant (age at the first session, sex).

    Parameters
    ----------
    planned : list of PlannedSeries
        Included series.

    Returns
    -------
    dict
        ``{"sub-X": {"participant_id", "age", "sex"}}``.
    """
    rows = {}
    for item in sorted(planned, key=lambda p: (p.participant, p.session)):
        participant_id = with_prefix(item.participant)
        row = rows.setdefault(participant_id, {"participant_id": participant_id, "age": "n/a", "sex": "n/a"})
        if row["age"] == "n/a" and item.age is not None:
            row["age"] = f"{min(item.age, MAX_AGE):g}"
        if row["sex"] == "n/a" and item.sex:
            row["sex"] = item.sex
    return rows


def write_dataset_files(bids_dir: Path, planned: list[PlannedSeries], name: str,
                        date_policy: str) -> None:
    """Write ``dataset_description.json``/``README`` (if absent) and ``participants.tsv``.

    Rows already in ``participants.tsv`` for participants not in ``planned``
    are kept.

    Parameters
    ----------
    bids_dir : Path
        BIDS root.
    planned : list of PlannedSeries
        Included series.
    name : str
        Dataset name.
    date_policy : {"remove", "shift"}
        Described in the README.
    """
    versions = {"nmflow": version("nmflow"), "heudiconv": version("heudiconv")}
    description = bids_dir / "dataset_description.json"
    if not description.exists():
        atomic_write_text(description, json.dumps({
            "Name": name, "BIDSVersion": BIDS_VERSION, "DatasetType": "raw",
            "GeneratedBy": [{"Name": "nmflow", "Version": versions["nmflow"],
                             "Description": f"heudiconv {versions['heudiconv']} + dcm2niix"}],
        }, indent=2) + "\n")
    if not (bids_dir / "README").exists():
        dates = "removed" if date_policy == "remove" else "shifted back by a per-participant offset"
        atomic_write_text(bids_dir / "README", README.format(name=name, dates=dates, **versions))
    tsv = bids_dir / "participants.tsv"
    existing = read_table(tsv, delimiter="\t") if tsv.exists() else []
    rows = {row["participant_id"]: row for row in existing} | participant_rows(planned)
    atomic_write_text(tsv, table_text([rows[k] for k in sorted(rows)],
                                      ["participant_id", "age", "sex"], delimiter="\t"))
    atomic_write_text(bids_dir / "participants.json",
                      json.dumps(PARTICIPANTS_JSON, indent=2) + "\n")
