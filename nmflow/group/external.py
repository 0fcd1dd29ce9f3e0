"""Connectivity computed by other pipelines: XCP-D's relmats and a folder of one matrix per subject.

Two sources feed the same :class:`~nmflow.group.features.FeatureSet` as
nmflow's own relmats:

* :func:`collect_bids_relmats` (``--connectivity-dir``): a BIDS derivatives
  folder of ``*_relmat.tsv`` named with a ``stat-`` entity (XCP-D 0.7-0.14:
  ``..._seg-4S156Parcels_stat-pearsoncorrelation_relmat.tsv``; XCP-D 26:
  ``..._atlas-4S156Parcels_stat-...``; CIFTI-derived ones carry
  ``space-fsLR_den-91k``) or a ``meas-`` entity (nmflow, BEP017), or XCP-D
  0.5-0.6's ``..._atlas-X_measure-pearsoncorrelation_conmat.tsv``.  The
  measure names are mapped to nmflow's metrics (:data:`MEASURES`).
* :func:`collect_matrix_dir` (``--matrix-dir``): ``.tsv``/``.csv``/``.npy``
  files, one per subject, whose values are r, Fisher z or covariances as the
  user states (``--matrix-values``); the subject is the first ``sub-<label>``
  in the file name, else the file name without its extension.

Every matrix is checked (:func:`check_matrix`): square, symmetric, a diagonal
that fits the values, no infinite connection; NaN is a missing connection.
Within one variant every file must have the same regions in the same order.
Each problem is an :class:`~nmflow.errors.NmflowInputError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.bids_io import layout, strip_prefix
from nmflow.errors import NmflowInputError
from nmflow.fileio import read_text
from nmflow.group.features import (FeatureSet, Variant, average_runs, check_matrix, read_participants,
                                   space_label)
from nmflow.group.settings import GroupSettings
from nmflow.participant.connectivity import METRICS, is_correlation, upper_triangle

# stat-/meas- values -> nmflow metric; XCP-D writes stat-pearsoncorrelation (xcp_d/workflows/bold/outputs.py)
MEASURES = {"pearsoncorrelation": "pearson", "spearmancorrelation": "spearman", "partialcorrelation": "partial",
            **{m: m for m in METRICS}}
MATRIX_VALUES = ("r", "z", "covariance")
MATRIX_EXTENSIONS = (".tsv", ".csv", ".npy")
_LABEL = re.compile(r"(?:^|[_/\\.-])sub-([a-zA-Z0-9]+)")


def read_matrix(path: str | Path) -> tuple[list[str] | None, np.ndarray]:
    """Region names (None when the file has none) and the matrix of a ``.tsv``, ``.csv`` or ``.npy`` file.

    A table may have a header row of region names, with or without a first
    column of the same names (XCP-D's ``Node`` column, nmflow's ``node``);
    a first row that is not all numbers, or one row more than columns (names
    that are numbers, e.g. atlas indices), is the header.  ``n/a``, ``NaN``
    and empty cells are NaN.

    Returns
    -------
    names : list of str or None
    matrix : ndarray, shape (n_rows, n_columns), float
        Not yet checked (see :func:`check_matrix`).
    """
    path = Path(path)
    if path.suffix == ".npy":
        try:
            matrix = np.load(path, allow_pickle=False)
        except Exception as exc:  # a corrupt .npy header raises anything from EOFError to tokenize.TokenError
            raise NmflowInputError(path, f"cannot read the matrix ({type(exc).__name__}: {exc})") from None
        if matrix.ndim != 2 or matrix.dtype.kind not in "iuf":  # integers or reals, not complex or records
            raise NmflowInputError(path, f"not a matrix of numbers: array of shape {matrix.shape}, {matrix.dtype}")
        return None, matrix.astype(float)
    sep = "," if path.suffix == ".csv" else "\t"
    try:
        cells = pd.read_csv(path, sep=sep, header=None, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise NmflowInputError(path, f"cannot read the matrix ({type(exc).__name__}: {exc})") from None
    cells = cells.apply(lambda column: column.str.strip())
    numbers = cells.apply(pd.to_numeric, errors="coerce")
    blank = cells.isin(["", "n/a", "NaN", "nan", "NA"])
    names: list[str] | None = None
    numeric_header = cells.shape[0] == cells.shape[1] + 1  # one more row than columns: names that are numbers
    if numeric_header or not (numbers.notna() | blank).iloc[0].all():  # a header row of names
        names = [str(c) for c in cells.iloc[0]]
        cells, numbers, blank = cells.iloc[1:], numbers.iloc[1:], blank.iloc[1:]
        if cells.shape[1] == cells.shape[0] + 1:  # and a first column of the same names (its header anything)
            names = names[1:]
            if [str(c) for c in cells.iloc[:, 0]] != names:
                raise NmflowInputError(path, "the first column's region names are not the header's, in the same order")
            cells, numbers, blank = cells.iloc[:, 1:], numbers.iloc[:, 1:], blank.iloc[:, 1:]
    bad = numbers.isna() & ~blank
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise NmflowInputError(path, f"row {row + 1}, column {col + 1} of the values: {cells.iat[row, col]!r} "
                               "is not a number")
    return names, numbers.to_numpy(float)


def _check_regions(path: Path, names: list[str] | None, n: int, first: tuple[list[str] | None, int, Path],
                   what: str) -> None:
    """Same names in the same order as the first file of ``what`` (same count when either has no names)."""
    first_names, first_n, first_path = first
    if n != first_n:
        raise NmflowInputError(path, f"{n} regions, not the {first_n} of {first_path.name} ({what})")
    if names is not None and first_names is not None and names != first_names:
        k = next(k for k, (a, b) in enumerate(zip(names, first_names)) if a != b)
        raise NmflowInputError(path, f"region order differs from {first_path.name} ({what}): position {k + 1} "
                               f"is {names[k]!r}, there {first_names[k]!r}")


def measure_of(path: str | Path, entities: dict) -> str:
    """The nmflow metric of a relmat from its ``meas-`` or ``stat-`` entity, or the ``measure-`` of XCP-D < 0.7's
    ``_conmat.tsv`` (no PyBIDS entity: read from the name), see :data:`MEASURES`."""
    old_xcpd = re.search(r"_measure-([a-zA-Z0-9]+)", Path(path).name)
    given = entities.get("meas", entities.get("stat", old_xcpd.group(1) if old_xcpd else None))
    if given is None:
        raise NmflowInputError(path, "no meas- or stat- entity in the name: which connectivity measure is it?")
    if str(given).lower() not in MEASURES:
        raise NmflowInputError(path, f"measure {given!r} is not one nmflow models (known: "
                               f"{', '.join(sorted(MEASURES))}); move the file out of the folder")
    return MEASURES[str(given).lower()]


def collect_bids_relmats(conn_dir: str | Path,
                         subjects: list[str] | None = None) -> dict[Variant, FeatureSet]:
    """Feature sets per variant from the ``sub-*/**/*_relmat.tsv`` (``_conmat.tsv``) of a BIDS derivatives folder.

    A variant is (atlas, seg, desc, metric); XCP-D's files without ``desc``
    have none, its ``desc-<N>volumes`` matrices are variants of their own.
    One variant's files must share one ``space``/``den`` (a volumetric and a
    CIFTI-derived matrix of one atlas are refused) and their regions.
    Several runs or sessions of a subject are averaged.

    Parameters
    ----------
    conn_dir : str or Path
        The folder (``--connectivity-dir``).
    subjects : list of str, optional
        Only these subjects (with or without ``sub-``).
    """
    conn_dir = Path(conn_dir)
    if not conn_dir.is_dir():
        raise NmflowInputError(conn_dir, "connectivity directory not found")
    query = {"suffix": ["relmat", "conmat"], "extension": ".tsv"}  # conmat: XCP-D 0.5-0.6
    if subjects:
        query["subject"] = [strip_prefix(s) for s in subjects]
    found: dict[Variant, dict[str, list[np.ndarray]]] = {}
    firsts: dict[Variant, tuple[list[str] | None, int, Path, tuple]] = {}
    for f in layout(conn_dir).get(**query):
        ents, path = f.get_entities(), Path(f.path)
        if "subject" not in ents:
            continue
        metric = measure_of(path, ents)
        variant = Variant(ents.get("atlas"), ents.get("segmentation"), ents.get("desc"), metric)
        names, matrix = read_matrix(path)
        check_matrix(path, matrix, "r" if is_correlation(metric) else "covariance", names)
        space = (ents.get("space"), ents.get("den"))
        first = firsts.setdefault(variant, (names, matrix.shape[0], path, space))
        if space != first[3]:
            raise NmflowInputError(path, f"space {space_label(space)} differs from {space_label(first[3])} of "
                                   f"{first[2].name} (variant {variant.label}): give a folder of one space")
        _check_regions(path, names, matrix.shape[0], first[:3], f"variant {variant.label}")
        found.setdefault(variant, {}).setdefault(ents["subject"], []).append(upper_triangle(matrix))
    return {v: average_runs(v, found[v], _region_names(firsts[v][0], firsts[v][1]))
            for v in sorted(found, key=lambda v: v.label)}


def _region_names(names: list[str] | None, n: int) -> list[str]:
    return list(names) if names is not None else [f"R{k + 1}" for k in range(n)]


def subject_of(path: str | Path) -> str:
    """Subject label of a matrix file: the first ``sub-<label>`` in its name, else its name without extension.

    Raises :class:`NmflowInputError` when that is not a BIDS label (letters and digits).
    """
    path = Path(path)
    match = _LABEL.search(path.name)
    label = match.group(1) if match else path.name[: -len(path.suffix)]
    if not re.fullmatch(r"[a-zA-Z0-9]+", label):
        raise NmflowInputError(path, f"cannot tell the subject: {label!r} is not a label of letters and digits "
                               "(name the file sub-<label>... or <label>.tsv|.csv|.npy)")
    return label


def read_regions(path: str | Path) -> list[str]:
    """Region names of ``--matrix-regions``: one per line, blank lines ignored, no duplicates."""
    names = [line.strip() for line in read_text(path, "regions file").splitlines() if line.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise NmflowInputError(path, f"need one distinct region name per line ({len(names)} names, "
                               f"{len(names) - len(set(names))} repeated)")
    return names


def collect_matrix_dir(matrix_dir: str | Path, values: str, regions_file: str | Path | None = None,
                       subjects: list[str] | None = None,
                       known: list[str] | None = None) -> dict[Variant, FeatureSet]:
    """The one feature set of a folder of ``.tsv``/``.csv``/``.npy`` matrices, one (or one per run) per subject.

    Parameters
    ----------
    matrix_dir : str or Path
        The folder (``--matrix-dir``); other files and sub-folders are ignored.
    values : {"r", "z", "covariance"}
        What the matrices hold.  Fisher z is stored as r (``tanh``) so that
        the features, like nmflow's, are modelled as Fisher z of r; its
        diagonal may be anything (inf, a large number).
    regions_file : str or Path, optional
        Region names, one per line, in the matrices' order: names unnamed
        matrices and must equal the names of named ones.
    subjects : list of str, optional
        Only these subjects.
    known : list of str, optional
        The subjects of ``participants.tsv``: a file of another subject is
        refused (a name that does not give the intended label).

    Returns
    -------
    dict
        ``{Variant(None, None, None, "pearson" or "covariance"): FeatureSet}``.
    """
    matrix_dir = Path(matrix_dir)
    if values not in MATRIX_VALUES:
        raise NmflowInputError(None, f"--matrix-values must be one of {', '.join(MATRIX_VALUES)}, not {values!r}")
    if not matrix_dir.is_dir():
        raise NmflowInputError(matrix_dir, "matrix directory not found")
    regions = read_regions(regions_file) if regions_file else None
    wanted = {strip_prefix(s) for s in subjects} if subjects else None
    skip = Path(regions_file).resolve() if regions_file else None
    files = sorted(p for p in matrix_dir.iterdir() if p.is_file() and p.suffix in MATRIX_EXTENSIONS
                   and not p.name.startswith(".") and p.resolve() != skip)
    if not files:
        raise NmflowInputError(matrix_dir, f"no {'/'.join(MATRIX_EXTENSIONS)} matrix files")
    variant = Variant(None, None, None, "covariance" if values == "covariance" else "pearson")
    per_subject: dict[str, list[np.ndarray]] = {}
    first = (regions, len(regions), Path(regions_file)) if regions else None  # what every file must match
    for path in files:
        label = subject_of(path)
        if wanted is not None and label not in wanted:
            continue
        if known is not None and label not in known:
            raise NmflowInputError(path, f"subject {label!r} (from the file name) is not in participants.tsv")
        names, matrix = read_matrix(path)
        check_matrix(path, matrix, values, names)
        first = first or (names, matrix.shape[0], path)
        _check_regions(path, names, matrix.shape[0], first, "--matrix-regions" if regions else "the first matrix")
        if names is not None and first[0] is None:
            first = (names, matrix.shape[0], path)  # named files name the regions of unnamed ones
        features = upper_triangle(matrix)
        per_subject.setdefault(label, []).append(np.tanh(features) if values == "z" else features)
    if not per_subject:
        raise NmflowInputError(matrix_dir, "no matrix of the subjects asked for (--participant-label)")
    return {variant: average_runs(variant, per_subject, _region_names(first[0], first[1]))}


def external_sources(settings: GroupSettings) -> list[tuple[str, dict[Variant, FeatureSet]]]:
    """The feature sets of ``--connectivity-dir`` and ``--matrix-dir`` (those given), each with its flag."""
    labels = list(settings.participant_label) or None
    sources = []
    if settings.connectivity_dir:
        sources.append(("--connectivity-dir", collect_bids_relmats(settings.connectivity_dir, labels)))
    if settings.matrix_dir:
        known = read_participants(settings.participants_file, settings.group_column, settings.site_column,
                                  list(settings.covariates)).index
        sources.append(("--matrix-dir", collect_matrix_dir(settings.matrix_dir, settings.matrix_values,
                                                          settings.matrix_regions, labels, list(known))))
    return sources


def merge_sources(sources: list[tuple[str, dict[Variant, FeatureSet]]]) -> dict[Variant, FeatureSet]:
    """One dict of the sources' feature sets; a variant found in two sources is refused (which one to model?)."""
    merged: dict[Variant, FeatureSet] = {}
    origin: dict[Variant, str] = {}
    for name, sets in sources:
        for variant, fs in sets.items():
            if variant in merged:
                raise NmflowInputError(None, f"variant {variant.label} found in both {origin[variant]} and {name}: "
                                       "give only one of them")
            merged[variant], origin[variant] = fs, name
    return merged
