"""CSV/TSV reading for the DICOM modules: every cell as the exact string written (writing: :mod:`nmflow.fileio`)."""

from __future__ import annotations

import csv
from pathlib import Path


def read_table(path: str | Path, delimiter: str = ",") -> list[dict[str, str]]:
    """Read a CSV/TSV file into a list of dicts (all values are strings).

    Parameters
    ----------
    path : str or Path
        File to read.
    delimiter : str
        ``","`` for CSV, ``"\\t"`` for TSV.

    Returns
    -------
    list of dict
        One dict per row, keyed by the header.
    """
    with open(path, newline="") as handle:
        return [dict(row) for row in csv.DictReader(handle, delimiter=delimiter)]
