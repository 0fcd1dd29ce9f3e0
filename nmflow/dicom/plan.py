"""Read and check the (possibly hand-edited) inventory CSV.

Every problem is reported as ``NmflowInputError(csv, "line N: ...")`` before
anything is converted.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from nmflow.dicom.checks import SeriesFacts, unusable
from nmflow.dicom.files import read_table
from nmflow.errors import NmflowInputError

#: BIDS entities allowed in the ``entities`` column, in filename order.
ENTITY_ORDER = ("task", "acq", "ce", "rec", "dir", "run", "echo", "part")
DATATYPES = ("anat", "func", "fmap", "dwi", "perf")
REQUIRED_COLUMNS = ("participant_label", "session_label", "include", "datatype", "suffix",
                    "entities", "series_instance_uid", "dicom_root", "age", "sex",
                    "date_shift_days")
YES, NO = {"yes", "y", "true", "1"}, {"no", "n", "false", "0", ""}
_LABEL = re.compile(r"^[A-Za-z0-9]+$")


@dataclass(frozen=True)
class PlannedSeries:
    """One included series and its BIDS destination."""

    line: int
    participant: str
    session: str
    datatype: str
    suffix: str
    entities: tuple[tuple[str, str], ...]
    series_uid: str
    dicom_root: Path
    age: float | None
    sex: str
    date_shift_days: int | None
    n_volumes: int | None = None

    @property
    def stem(self) -> str:
        """BIDS file name without extension, e.g. ``sub-001_ses-01_task-rest_bold``."""
        parts = [f"sub-{self.participant}", f"ses-{self.session}"]
        parts += [f"{key}-{value}" for key, value in self.entities]
        return "_".join(parts + [self.suffix])

    @property
    def relpath(self) -> str:
        """Path relative to the BIDS root, without extension."""
        return f"sub-{self.participant}/ses-{self.session}/{self.datatype}/{self.stem}"


def _label(value: str, prefix: str, where: str) -> str:
    value = value.strip().removeprefix(prefix)
    if not _LABEL.match(value):
        raise ValueError(f"{where} {value!r} must be letters and digits only")
    return value


def _entities(value: str, datatype: str) -> tuple[tuple[str, str], ...]:
    pairs = {}
    for item in filter(None, value.strip().split("_")):
        key, _, label = item.partition("-")
        if key not in ENTITY_ORDER or not _LABEL.match(label):
            raise ValueError(f"entity {item!r} is not one of "
                             f"{', '.join(k + '-<label>' for k in ENTITY_ORDER)}")
        if key in pairs:
            raise ValueError(f"entity {key!r} given twice")
        pairs[key] = label
    if datatype == "func" and "task" not in pairs:
        raise ValueError("func series need a task-<label> entity")
    return tuple((key, pairs[key]) for key in ENTITY_ORDER if key in pairs)


def _number(value: str, kind, what: str):
    if not value.strip():
        return None
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a number") from None


def _parse_row(line: int, row: dict[str, str]) -> PlannedSeries | None:
    include = row["include"].strip().lower()
    if include not in YES | NO:
        raise ValueError(f"include must be yes or no, not {row['include']!r}")
    if include in NO:
        return None
    datatype = row["datatype"].strip()
    if datatype not in DATATYPES:
        raise ValueError(f"datatype must be one of {', '.join(DATATYPES)}, not {datatype!r}")
    sex = row["sex"].strip().upper()
    if sex not in ("", "M", "F", "O"):
        raise ValueError(f"sex must be M, F, O or empty, not {row['sex']!r}")
    if not row["series_instance_uid"].strip() or not row["dicom_root"].strip():
        raise ValueError("series_instance_uid and dicom_root must not be empty")
    return PlannedSeries(
        line=line,
        participant=_label(row["participant_label"], "sub-", "participant_label"),
        session=_label(row["session_label"], "ses-", "session_label"),
        datatype=datatype,
        suffix=_label(row["suffix"], "", "suffix"),
        entities=_entities(row["entities"], datatype),
        series_uid=row["series_instance_uid"].strip(),
        dicom_root=Path(row["dicom_root"].strip()),
        age=_number(row["age"], float, "age"),
        sex=sex,
        date_shift_days=_number(row["date_shift_days"], int, "date_shift_days"),
        n_volumes=_number(row.get("n_volumes", ""), int, "n_volumes"),
    )


def read_plan(csv_path: str | Path) -> list[PlannedSeries]:
    """Read the inventory CSV and return the included series.

    Parameters
    ----------
    csv_path : str or Path
        CSV written by ``nmflow dicom inventory`` and possibly edited.

    Returns
    -------
    list of PlannedSeries
        Rows with ``include=yes``, in file order.

    Raises
    ------
    NmflowInputError
        Missing file or columns, bad values, two series with the same BIDS name,
        or nothing to convert.
    """
    csv_path = Path(csv_path)
    try:
        rows = read_table(csv_path)
    except FileNotFoundError:
        raise NmflowInputError(csv_path, "inventory CSV not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NmflowInputError(csv_path, f"cannot read the inventory CSV ({type(exc).__name__}: {exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if not rows or c not in rows[0]]
    if missing:
        raise NmflowInputError(csv_path, f"missing column(s) {', '.join(missing)} "
                               "(write it with `nmflow dicom inventory`)")
    planned, seen_uid, seen_path = [], {}, {}
    for line, row in enumerate(rows, start=2):
        try:
            item = _parse_row(line, {k: v if isinstance(v, str) else "" for k, v in row.items()})
        except ValueError as exc:
            raise NmflowInputError(csv_path, f"line {line}: {exc}") from None
        if item is None:
            continue
        for seen, key, what in ((seen_uid, item.series_uid, "series"),
                                (seen_path, item.relpath, "BIDS name")):
            if key in seen:
                raise NmflowInputError(csv_path, f"line {line}: same {what} as line "
                                       f"{seen[key]} ({key}); add run-<n> or acq-<label>")
            seen[key] = line
        planned.append(item)
    if not planned:
        raise NmflowInputError(csv_path, "no series has include=yes; nothing to convert")
    return planned


def plan_warnings(csv_path: Path, planned: list[PlannedSeries]) -> list[str]:
    """One line per included series :func:`~nmflow.dicom.checks.unusable` flags (converted all the same:
    the CSV's ``include=yes`` wins)."""
    facts = [SeriesFacts((p.participant, p.session), p.datatype, p.suffix, p.n_volumes, p.age) for p in planned]
    return [f"{csv_path.name}: line {planned[index].line}: {planned[index].relpath}: {problem} "
            "(converted: the CSV says include=yes)" for index, problem in unusable(facts).items()]
