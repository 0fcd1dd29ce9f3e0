"""File helpers for every level: atomic writes, staged folders, CSV/TSV text, tables that fail with the file's name.

"Nothing partial" is the rule for every output: a single file goes through a
temporary file in its folder (:func:`atomic_write_text`); a set of files is
written into a staging folder inside the destination and moved into place only
when all of them exist (:func:`staged_folder`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from nmflow.errors import NmflowInputError


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


@contextlib.contextmanager
def staged_folder(destination: str | Path) -> Iterator[Path]:
    """A hidden temporary folder inside ``destination`` (beside it when it does not exist yet) whose
    content is moved into it on success.

    Files written into the yielded folder replace their namesakes in
    ``destination`` only when the ``with`` block ends without an exception.
    On an exception the staging folder is removed, and so are the folders
    this call had to create: ``destination`` is left as it was.
    """
    destination = Path(destination).absolute()
    created = [p for p in [destination, *destination.parents] if not p.exists()]
    home = destination if destination.exists() else destination.parent  # same file system: moves are renames
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=home))
    try:
        yield staging
        for item in sorted(p for p in staging.rglob("*") if not p.is_dir()):
            target = destination / item.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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


def read_tsv(path: str | Path, what: str, **kwargs) -> pd.DataFrame:
    """Read a TSV (``n/a`` as missing); an unreadable file is a one-line :class:`NmflowInputError`.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        What the file should be, for the message (e.g. ``"participants table"``).
    **kwargs
        Passed to :func:`pandas.read_csv`.
    """
    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"], **kwargs)
    except FileNotFoundError:
        raise NmflowInputError(path, f"{what} not found") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise NmflowInputError(path, f"cannot read {what} ({type(exc).__name__}: {exc})") from None
