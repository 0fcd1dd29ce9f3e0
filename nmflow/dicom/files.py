"""Small file helpers shared by the DICOM modules: atomic writes, CSV/TSV I/O."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path


def atomic_write_text(path: str | Path, text: str, private: bool = False) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder.

    Parameters
    ----------
    path : str or Path
        Destination; its folder is created if needed.
    text : str
        Content to write.
    private : bool
        Keep the file readable by its owner only (key file, inventory CSV);
        otherwise it is made world-readable like any dataset file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def table_text(rows: list[dict], columns: list[str], delimiter: str = ",") -> str:
    """Render ``rows`` (dicts) as CSV/TSV text with the given column order.

    Parameters
    ----------
    rows : list of dict
        One dict per row; missing keys are written as empty cells.
    columns : list of str
        Header and column order.
    delimiter : str
        ``","`` for CSV, ``"\\t"`` for TSV.

    Returns
    -------
    str
        The table, header first.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, delimiter=delimiter,
                            extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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
