"""Walk a folder tree and read DICOM headers (never the pixel data).

Non-DICOM files are skipped silently; DICOM files that cannot be used
(truncated, no series/study UID) are skipped with a warning naming the file
relative to the root, so nothing disappears without a trace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from nmflow.errors import NmflowInputError

#: DICOM keywords whose values identify a person or a site; used to check
#: that none of them survives in the converted outputs.
IDENTIFYING_TAGS = (
    "PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate",
    "PatientAddress", "InstitutionName", "InstitutionAddress", "OperatorsName",
    "ReferringPhysicianName", "PerformingPhysicianName", "AccessionNumber",
)

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class DicomHeader:
    """What nmflow needs from one DICOM file's header."""

    path: Path
    patient_id: str
    study_uid: str
    series_uid: str
    study_datetime: str
    series_number: int | None
    series_description: str
    protocol_name: str
    image_type: tuple[str, ...]
    modality: str
    is_image: bool
    scanning_sequence: str
    tr_seconds: float | None
    age_years: float | None
    sex: str
    position: tuple[float, ...] | None
    n_frames: int
    identifiers: tuple[tuple[str, str], ...]


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _parse_date(value: str) -> date | None:
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except (ValueError, IndexError):
        return None


def age_in_years(patient_age: str, birth_date: str, study_date: str) -> float | None:
    """Age at the study, from ``PatientAge`` (``036Y``, ``006M``...) or the dates.

    Parameters
    ----------
    patient_age : str
        DICOM AS value, possibly empty.
    birth_date, study_date : str
        DICOM DA values (``YYYYMMDD``), possibly empty.

    Returns
    -------
    float or None
        Whole years when known to the year, fractions of a year for infants,
        None when nothing usable is present.
    """
    units = {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}
    age = patient_age.strip().upper()
    if len(age) >= 2 and age[:-1].isdigit() and age[-1] in units:
        return round(int(age[:-1]) / units[age[-1]], 2)
    born, seen = _parse_date(birth_date), _parse_date(study_date)
    if born and seen and seen >= born:
        return float(seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day)))
    return None


def _identifiers(ds: pydicom.Dataset) -> tuple[tuple[str, str], ...]:
    """Identifying (keyword, value) pairs, except values that merely name the vendor
    (test and phantom data often carry e.g. InstitutionName "TOSHIBA")."""
    vendor = f"{_text(ds, 'Manufacturer')} {_text(ds, 'ManufacturerModelName')}".lower()
    pairs = ((tag, _text(ds, tag)) for tag in IDENTIFYING_TAGS)
    return tuple((tag, value) for tag, value in pairs if value and value.lower() not in vendor)


def _pixel_data_truncated(ds: pydicom.Dataset, header_end: int, size: int) -> bool:
    """True when an uncompressed image's pixel data are shorter than declared."""
    if "Rows" not in ds or "Columns" not in ds:
        return False
    syntax = getattr(ds.file_meta, "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        return False
    expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
                * int(ds.get("BitsAllocated", 16)) // 8 * int(ds.get("NumberOfFrames", 1) or 1))
    return size - header_end < expected


def read_header(path: Path) -> DicomHeader | str | None:
    """Read one file's header.

    Parameters
    ----------
    path : Path
        Any file.

    Returns
    -------
    DicomHeader or str or None
        The header; a problem description when the file is DICOM but unusable;
        None when it is not a DICOM file.
    """
    try:
        with open(path, "rb") as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True)
            header_end = handle.tell()
    except InvalidDicomError:
        return None
    except Exception as exc:  # pydicom raises many types on corrupt headers
        return f"unreadable DICOM header ({type(exc).__name__})"
    if str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "")) == DICOMDIR_CLASS:
        return None
    if not _text(ds, "SeriesInstanceUID") or not _text(ds, "StudyInstanceUID"):
        return "no Study/SeriesInstanceUID (truncated or incomplete header)"
    if _pixel_data_truncated(ds, header_end, path.stat().st_size):
        return "pixel data shorter than the header declares (truncated file)"
    tr = ds.get("RepetitionTime")
    series_number = ds.get("SeriesNumber")
    position = ds.get("ImagePositionPatient")
    return DicomHeader(
        path=path,
        patient_id=_text(ds, "PatientID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        study_datetime=_text(ds, "StudyDate") + _text(ds, "StudyTime"),
        series_number=int(series_number) if series_number not in (None, "") else None,
        series_description=_text(ds, "SeriesDescription"),
        protocol_name=_text(ds, "ProtocolName"),
        image_type=tuple(str(v).upper() for v in (ds.get("ImageType") or ())),
        modality=_text(ds, "Modality"),
        is_image="Rows" in ds,
        scanning_sequence=_text(ds, "ScanningSequence"),
        tr_seconds=round(float(tr) / 1000.0, 4) if tr not in (None, "") else None,
        age_years=age_in_years(_text(ds, "PatientAge"), _text(ds, "PatientBirthDate"),
                               _text(ds, "StudyDate")),
        sex=_text(ds, "PatientSex").upper()[:1],
        position=tuple(round(float(v), 3) for v in position) if position else None,
        n_frames=int(ds.get("NumberOfFrames", 1) or 1),
        identifiers=_identifiers(ds),
    )


def scan_tree(root: str | Path) -> tuple[list[DicomHeader], list[str]]:
    """Read every DICOM header under ``root``.

    Parameters
    ----------
    root : str or Path
        Folder to walk (symbolic links to folders are not followed).

    Returns
    -------
    headers : list of DicomHeader
        Usable DICOM files, in sorted path order.
    warnings : list of str
        One line per skipped DICOM file, naming it relative to ``root``.

    Raises
    ------
    NmflowInputError
        If ``root`` is not a folder or holds no usable DICOM file.
    """
    root = Path(root)
    if not root.is_dir():
        raise NmflowInputError(root, "DICOM folder does not exist")
    headers, warnings = [], []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder, name)
            result = read_header(path)
            if isinstance(result, DicomHeader):
                headers.append(result)
            elif result is not None:
                warnings.append(f"skipped {path.relative_to(root)}: {result}")
    if not headers:
        raise NmflowInputError(root, "no readable DICOM file found")
    return headers, warnings


@dataclass
class Series:
    """All files of one SeriesInstanceUID (headers sorted by path)."""

    headers: list[DicomHeader]

    @property
    def first(self) -> DicomHeader:
        """The header that stands for the series (first file)."""
        return self.headers[0]

    @property
    def n_volumes(self) -> int:
        """Volumes: one per mosaic file, else files per distinct slice position."""
        positions = {h.position for h in self.headers if h.position}
        if "MOSAIC" in self.first.image_type or not positions:
            return len(self.headers)
        return max(1, len(self.headers) // len(positions))


def group_series(headers: list[DicomHeader]) -> list[Series]:
    """Group headers by SeriesInstanceUID, ordered by study time then series number.

    Parameters
    ----------
    headers : list of DicomHeader
        Output of :func:`scan_tree`.

    Returns
    -------
    list of Series
        One entry per SeriesInstanceUID.
    """
    by_uid: dict[str, list[DicomHeader]] = {}
    for header in headers:
        by_uid.setdefault(header.series_uid, []).append(header)
    series = [Series(sorted(group, key=lambda h: str(h.path))) for group in by_uid.values()]
    return sorted(series, key=lambda s: (s.first.study_datetime, s.first.study_uid,
                                         s.first.series_number or 0, s.first.series_uid))
