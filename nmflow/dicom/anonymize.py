"""Remove identifying information from converted BIDS files.

* JSON sidecars: names, IDs, birth date, institution/station/operator and
  free-text fields are dropped; dates are removed or shifted (``date_policy``).
* ``*_scans.tsv``: the ``operator``/``randstr`` columns are dropped and
  ``acq_time`` is removed (``n/a``) or shifted.
* NIfTI headers: ``descrip``, ``aux_file``, ``db_name`` and any header
  extension are blanked in place; the image data bytes are left untouched.

:func:`find_leaks` then checks that none of the identifying DICOM values of
the session appears in any output file.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from datetime import date, timedelta
from pathlib import Path

import nibabel as nib

from nmflow.dicom.files import read_table
from nmflow.fileio import atomic_write_text, table_text

DATE_POLICIES = ("remove", "shift")
REMOVED_KEYS = {
    "OtherPatientIDs", "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "StationName", "DeviceSerialNumber", "OperatorsName", "ReferringPhysicianName",
    "PerformingPhysicianName", "RequestingPhysician", "AccessionNumber", "StudyID",
    "StudyDescription", "ProcedureStepDescription", "ImageComments", "StudyInstanceUID",
    "SeriesInstanceUID", "FrameOfReferenceUID",
}
KEPT_PATIENT_KEYS = {"PatientPosition"}
TIME_OF_DAY_KEYS = {"AcquisitionTime", "StudyTime", "SeriesTime", "ContentTime"}
_ISO_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})")


def shift_date(value: str, days: int) -> str | None:
    """Move the leading date of ``value`` back by ``days``; None if there is none.

    Parameters
    ----------
    value : str
        ``YYYY-MM-DD...`` or ``YYYYMMDD...`` (the rest, e.g. a time, is kept).
    days : int
        Days to subtract.

    Returns
    -------
    str or None
        Shifted value in the same format, or None if no date was found.
    """
    match = _ISO_DATE.match(value)
    if not match:
        return None
    try:
        moved = date(*map(int, match.groups())) - timedelta(days=days)
    except ValueError:
        return None
    dash = "-" if "-" in match.group(0) else ""
    return moved.strftime(f"%Y{dash}%m{dash}%d") + value[match.end():]


def _scrub_date(value, policy: str, days: int | None):
    return shift_date(str(value), days) if policy == "shift" else None


def scrub_metadata(meta: dict, policy: str, days: int | None) -> dict:
    """Return a copy of a sidecar dict without identifying keys.

    Parameters
    ----------
    meta : dict
        Sidecar content.
    policy : {"remove", "shift"}
        Drop dates and times of day, or move dates back by ``days``.
    days : int or None
        Date shift (required for ``"shift"``).

    Returns
    -------
    dict
        Cleaned sidecar.
    """
    out = {}
    for key, value in meta.items():
        if key in REMOVED_KEYS or (key.startswith("Patient") and key not in KEPT_PATIENT_KEYS):
            continue
        if key.endswith(("Date", "DateTime")):
            value = _scrub_date(value, policy, days)
        elif key in TIME_OF_DAY_KEYS and policy == "remove":
            value = None
        if value is not None:
            out[key] = value
    return out


def scrub_sidecar(path: Path, policy: str, days: int | None) -> None:
    """Rewrite a JSON sidecar through :func:`scrub_metadata`."""
    meta = json.loads(path.read_text())
    atomic_write_text(path, json.dumps(scrub_metadata(meta, policy, days), indent=2) + "\n")


def scrub_scans_tsv(path: Path, policy: str, days: int | None) -> None:
    """Keep only ``filename`` and a removed/shifted ``acq_time`` in a scans file."""
    rows = read_table(path, delimiter="\t")
    for row in rows:
        time = row.get("acq_time") or "n/a"
        row["acq_time"] = (_scrub_date(time, policy, days) if time != "n/a" else None) or "n/a"
    atomic_write_text(path, table_text(rows, ["filename", "acq_time"], delimiter="\t"))


def _read_nifti(path: Path) -> tuple[bytearray, int, type]:
    """Raw bytes of a .nii/.nii.gz, the data offset and the header class."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = bytearray(handle.read())
    nifti2 = 540 in (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big"))
    header_class = nib.Nifti2Header if nifti2 else nib.Nifti1Header
    size = header_class.template_dtype.itemsize
    header = header_class.from_fileobj(io.BytesIO(bytes(raw[:size])), check=False)
    return raw, max(int(header["vox_offset"]), size + 4), header_class


def scrub_nifti_header(path: Path) -> None:
    """Blank ``descrip``/``aux_file``/``db_name`` and extensions, keeping the data bytes."""
    raw, offset, header_class = _read_nifti(path)
    fields = header_class.template_dtype.fields
    size = header_class.template_dtype.itemsize
    for name in ("descrip", "aux_file", "db_name"):
        if name in fields:
            dtype, start = fields[name][:2]
            raw[start:start + dtype.itemsize] = bytes(dtype.itemsize)
    raw[size:offset] = bytes(offset - size)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as packed:
                packed.write(raw)
        else:
            handle.write(raw)
    tmp.chmod(0o644)
    tmp.replace(path)


def scrub_tree(folder: Path, policy: str, days: int | None) -> None:
    """Scrub every sidecar, scans file and NIfTI header under ``folder``.

    Parameters
    ----------
    folder : Path
        Converted session folder.
    policy : {"remove", "shift"}
        Date policy.
    days : int or None
        Date shift for ``"shift"``.
    """
    for path in sorted(folder.rglob("*")):
        if path.name.endswith(".json"):
            scrub_sidecar(path, policy, days)
        elif path.name.endswith("_scans.tsv"):
            scrub_scans_tsv(path, policy, days)
        elif path.name.endswith((".nii", ".nii.gz")):
            scrub_nifti_header(path)


def _searchable_text(path: Path) -> str:
    """Text to search: whole text files, only the header of NIfTI files."""
    if path.name.endswith((".nii", ".nii.gz")):
        raw, offset, _ = _read_nifti(path)
        return bytes(raw[:offset]).decode("latin-1")
    return path.read_bytes().decode("latin-1")


def _patterns(identifiers) -> list[tuple[str, re.Pattern]]:
    """Whole-word patterns for each value, its name parts and, for dates, ISO form."""
    out = []
    for tag, value in identifiers:
        forms = {value, value.replace("^", " "), *value.split("^")}
        if tag.endswith("Date") and len(value) == 8 and value.isdigit():
            forms.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
        for text in (form.strip() for form in forms):
            if len(text) >= (6 if text.isdigit() else 4):
                edge = "A-Za-z0-9." if text.isdigit() else "A-Za-z0-9"  # 7731 is not in 0.7731
                out.append((tag, re.compile(rf"(?<![{edge}]){re.escape(text)}(?![{edge}])",
                                            re.IGNORECASE)))
    return out


def find_leaks(folder: Path, identifiers) -> list[str]:
    """List output files that still contain an identifying DICOM value.

    Parameters
    ----------
    folder : Path
        Folder to check recursively.
    identifiers : iterable of (str, str)
        (DICOM keyword, value) pairs; values shorter than 4 characters (6 for
        digits-only values) are not searched, to avoid false alarms.

    Returns
    -------
    list of str
        ``"<relative file>: <keyword>"`` per hit (the value itself is never
        included).
    """
    patterns = _patterns(identifiers)
    hits = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = _searchable_text(path)
        for tag in sorted({tag for tag, pattern in patterns if pattern.search(text)}):
            hits.append(f"{path.relative_to(folder)}: {tag}")
    return hits
