"""File helpers for every level: atomic writes, staged folders, CSV/TSV text, tables that fail with the file's name.

"Nothing partial" is the rule for every output: a single file goes through a
temporary file in its folder (:func:`atomic_write_text`); a set of files is
written into a staging folder inside the destination and moved into place only
when all of them exist (:func:`staged_folder`).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from nmflow.errors import NmflowInputError

if TYPE_CHECKING:  # imported where used: the CLI imports this module to parse its options
    import numpy as np
    import pandas as pd


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
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # named after the file meant, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


STAGING, PUBLISHING, NEW = ".staging-", ".publish-", ".nmflow-new-"
LOCK = ".nmflow-lock"
REPLACED = ".nmflow-replaced"  # inside a publish folder: the folders its content replaces whole


@contextlib.contextmanager
def staged_folder(destination: str | Path, replace: tuple[str, ...] = ()) -> Iterator[Path]:
    """A hidden temporary folder inside ``destination`` whose content is moved into it on success.

    Files written into the yielded folder replace their namesakes in
    ``destination`` only when the ``with`` block ends without an exception.
    The subfolders named in ``replace`` are replaced whole (a group run's
    ``group/`` never mixes two calls): the old one moves into the publish
    folder, which is removed at the end.
    On an exception the staging folder is removed, and so are the folders
    this call had to create: ``destination`` is left as it was.

    The folder is locked by this process while it exists, and renamed from
    ``.staging-*`` to ``.publish-*`` once complete, before its files move: a
    process killed while moving them leaves a ``.publish-*`` folder holding
    the rest, which the next :func:`staged_folder` (or
    :func:`recover_staged`) on ``destination`` moves into place.
    """
    destination = Path(destination).absolute()
    created = [p for p in [destination, *destination.parents] if not p.exists()]
    destination.mkdir(parents=True, exist_ok=True)
    recover_staged(destination)
    staging, lock = _locked_folder(destination)
    try:
        yield staging
        publishing = staging.with_name(PUBLISHING + staging.name[len(STAGING):])
        os.rename(staging, publishing)
        staging = publishing
        for name in replace:
            if (staging / name).is_dir() and (destination / name).is_dir():
                (staging / REPLACED).mkdir(exist_ok=True)
                os.rename(destination / name, staging / REPLACED / name)
        _move_into(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(lock)


def recover_staged(destination: str | Path) -> list[Path]:
    """Finish the publications of killed processes in ``destination``; return the folders handled.

    A ``.publish-*`` folder whose lock no process holds is complete: its
    remaining files are moved into place.  A ``.staging-*`` folder whose lock
    no process holds was never complete: it is removed.  Folders of running
    processes (locked) are left alone.
    """
    handled = []
    for folder in sorted(p for p in Path(destination).iterdir() if p.name.startswith((STAGING, PUBLISHING))):
        try:
            lock = os.open(folder / LOCK, os.O_RDWR)
        except OSError:  # gone meanwhile, or not an nmflow staging folder
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a running process owns it
            os.close(lock)
            continue
        try:
            if folder.name.startswith(PUBLISHING):
                _move_into(folder, Path(destination))
            shutil.rmtree(folder, ignore_errors=True)
            handled.append(folder)
        finally:
            os.close(lock)
    return handled


def _locked_folder(home: Path) -> tuple[Path, int]:
    """A new ``.staging-*`` folder in ``home`` and the descriptor of its lock (held until closed).

    The folder gets its lock under a name :func:`recover_staged` ignores, then
    its ``.staging-`` name, so another process never finds it unlocked.
    """
    new = Path(tempfile.mkdtemp(prefix=NEW, dir=home))
    lock = os.open(new / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    staging = new.with_name(STAGING + new.name[len(NEW):])
    os.rename(new, staging)
    return staging, lock


def _move_into(source: Path, destination: Path) -> None:
    """Move every file of ``source`` (but its lock and the folders it replaced) to the same relative path
    in ``destination``.

    All target folders are made before the first file moves, so a folder
    that cannot be made stops the publication before anything is replaced.
    """
    files = sorted(p for p in source.rglob("*")
                   if not p.is_dir() and p != source / LOCK and REPLACED not in p.relative_to(source).parts)
    for folder in sorted({destination / f.parent.relative_to(source) for f in files}):
        folder.mkdir(parents=True, exist_ok=True)
    for item in files:
        os.replace(item, destination / item.relative_to(source))


def save_npz(path: str | Path, arrays: dict[str, np.ndarray], meta: dict | None = None) -> str:
    """Write named arrays (+ ``meta`` as JSON) to an uncompressed NPZ; returns the absolute path.

    The one format of the arrays passed between workflow nodes: no pickled objects, read back by
    :func:`load_npz` with ``allow_pickle=False``."""
    import numpy as np

    payload = {k: np.asarray(v) for k, v in arrays.items()}
    if meta is not None:
        payload["meta"] = np.array(json.dumps(meta))
    np.savez(path, **payload)
    return str(Path(path).absolute())


def load_npz(path: str | Path, skip=None) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays and meta dict of a file written by :func:`save_npz` (arrays whose name ``skip(name)``
    holds are not read)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "meta" and not (skip and skip(k))}
        meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    return arrays, meta


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


WIDE_COLUMNS = 200  # pandas writes narrower frames fast


def write_tsv(path: str | Path, frame: pd.DataFrame, float_format: str | None = "%.6g", na_rep: str = "n/a") -> str:
    """Write ``frame`` to ``path`` as TSV (:func:`tsv_text`: header, no index, missing values as ``n/a``).

    Parameters
    ----------
    path : str or Path
        The ``.tsv`` file (overwritten).
    frame : DataFrame
        The table; put an index worth keeping into a column first.
    float_format : str or None
        ``%`` format of the floats (``"%.8g"``: 8 significant digits); None writes each float's shortest
        repr (full precision).
    na_rep : str
        Text of a missing value.

    Returns
    -------
    str
        ``path``.
    """
    Path(path).write_text(tsv_text(frame, float_format, na_rep), encoding="utf-8")
    return str(path)


def tsv_text(frame: pd.DataFrame, float_format: str | None = "%.6g", na_rep: str = "n/a") -> str:
    """``frame`` as TSV text (header, no index), as ``frame.to_csv(sep="\\t", float_format=...,
    na_rep=...)`` writes it, at any width (``float_format=None``: each float's shortest repr).

    pandas formats a wide frame column by column for every chunk of rows
    (about 6 minutes for 300 subjects x 79,800 connections); here each run of
    float columns is formatted one row at a time by one ``%`` format string,
    and the other columns by pandas.  Narrow frames, and frames written at full precision
    (``float_format=None``), go to pandas whole.
    """
    import numpy as np
    import pandas as pd

    if frame.shape[1] <= WIDE_COLUMNS or float_format is None:
        return frame.to_csv(sep="\t", index=False, na_rep=na_rep, float_format=float_format, lineterminator="\n")
    columns = list(frame.columns)
    is_float = [pd.api.types.is_float_dtype(frame[c]) for c in columns]
    pieces, start = [], 0
    for k in range(1, len(columns) + 1):
        if k == len(columns) or is_float[k] != is_float[start]:
            part = frame.iloc[:, start:k]
            if is_float[start]:
                pieces.append(_float_rows(part.to_numpy(np.float64), float_format, na_rep))
            else:
                text = part.to_csv(sep="\t", index=False, header=False, na_rep=na_rep, lineterminator="\n")
                pieces.append(text.split("\n")[:-1] if len(part) else [])
            start = k
    header = "\t".join(map(str, columns))
    return "\n".join([header, *("\t".join(cells) for cells in zip(*pieces))]) + "\n"


def _float_rows(values: np.ndarray, float_format: str, na_rep: str) -> list[str]:
    """One tab-joined line per row of ``values`` ``(n_rows, n_columns)``; NaN as ``na_rep``."""
    import numpy as np

    line = "\t".join([float_format] * values.shape[1])
    rows = []
    for row in values:
        text = line % tuple(row.tolist())
        rows.append(text.replace("nan", na_rep) if np.isnan(row).any() else text)
    return rows


def read_tsv(path: str | Path, what: str, **kwargs) -> pd.DataFrame:
    """Read a TSV (``n/a`` as missing); an unreadable file is a one-line :class:`NmflowInputError`.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        What the file should be, for the message (e.g. ``"participants table"``).
    **kwargs
        Passed to :func:`pandas.read_csv` (``sep`` defaults to a tab).
    """
    import pandas as pd

    kwargs.setdefault("sep", "\t")
    try:
        return pd.read_csv(path, na_values=["n/a"], **kwargs)
    except FileNotFoundError:
        raise NmflowInputError(path, f"{what} not found") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise NmflowInputError(path, f"cannot read {what} ({type(exc).__name__}: {exc})") from None


def read_text(path: str | Path, what: str) -> str:
    """The text of a file; a missing, unreadable or non-UTF-8 file is a one-line :class:`NmflowInputError`.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        What the file should be, for the message (e.g. ``"sidecar"``).
    """
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise NmflowInputError(path, f"{what} not found") from None
    except OSError as exc:
        raise NmflowInputError(path, f"cannot read {what} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise NmflowInputError(path, f"cannot read {what} (not UTF-8 text)") from None


def read_json(path: str | Path, what: str) -> dict:
    """Read a JSON object; any problem is a one-line :class:`NmflowInputError` naming the file.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        What the file should be, for the message (e.g. ``"sidecar"``).
    """
    text = read_text(path, what)
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise NmflowInputError(path, f"{what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise NmflowInputError(path, f"{what} must be a JSON object, not {type(data).__name__}")
    return data


def check_apart(source: str | Path, target: str | Path, what: str, allowed: str | None = None) -> None:
    """Refuse an output folder ``target`` equal to, inside or containing the input dataset ``source``.

    Parameters
    ----------
    source, target : str or Path
        The input dataset and the output (or work) folder; symbolic links are resolved.
    what : str
        The output's name in the message, e.g. ``"OUT_DIR"`` or ``"-w"``.
    allowed : str, optional
        A sub-folder of ``source`` where ``target`` may be (BIDS ``derivatives``).
    """
    src, dst = Path(source).resolve(), Path(target).resolve()
    if allowed and (src / allowed) in [dst, *dst.parents] and dst != src / allowed:
        return
    if src == dst or src in dst.parents:
        place = "is" if src == dst else "is inside"
        raise NmflowInputError(target, f"{what} {place} the input dataset {source}: choose a folder outside it "
                               "(nmflow never writes into its input)")
    if dst in src.parents:
        raise NmflowInputError(target, f"{what} contains the input dataset {source}: choose a folder beside it")
