"""Group-level inputs: FC features per variant, the subject table, the splits.

A *variant* is one (atlas + seg, desc = denoising strategy, meas = FC metric).
A subject's features are the upper triangle of its connectivity matrix
(:func:`nmflow.participant.connectivity.upper_triangle` order); correlation metrics
(pearson, spearman, kendall, partial) are Fisher-z transformed
(:func:`nmflow.participant.connectivity.fisher_z`) before modelling, covariance metrics
are used as they are.  Several runs or sessions of a subject are averaged
(NaN-aware mean of their features).

Missing values (NaN, e.g. a region without coverage or a region absent from
an external time series file) are handled by the normative models' fits
(:mod:`nmflow.normative.crossfit`), from controls only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.bids_io import layout, read_relmat, strip_prefix
from nmflow.participant.connectivity import connection_names, connectivity, fisher_z, is_correlation, upper_triangle
from nmflow.errors import NmflowInputError
from nmflow.fileio import read_tsv
from nmflow.group.motion import MEAN_FD


TOLERANCE = 1e-6  # symmetry: absolute, plus the same relative to the largest |value|; r: the diagonal's 1


@dataclass(frozen=True)
class Variant:
    """One atlas (+ seg) x strategy x metric combination."""

    atlas: str | None
    seg: str | None
    desc: str | None
    meas: str

    @property
    def card_entities(self) -> dict:
        """``atlas seg desc meas`` as a model card records them (None kept: an atlas without ``seg``)."""
        return {"atlas": self.atlas, "seg": self.seg, "desc": self.desc, "meas": self.meas}

    @property
    def entities(self) -> dict:
        """BIDS entities of the variant (None omitted)."""
        return {k: v for k, v in self.card_entities.items() if v is not None}

    @property
    def label(self) -> str:
        """``atlas-X_seg-Y_desc-Z_meas-W``."""
        return "_".join(f"{k}-{v}" for k, v in self.entities.items())


@dataclass
class FeatureSet:
    """Features of one variant.

    Attributes
    ----------
    subjects : list of str, length n_subjects
        Subject labels without ``sub-``.
    regions : list of str
    features : ndarray, shape (n_subjects, n_features)
        Raw (not Fisher-z) upper triangles, averaged over runs; may hold NaN.
    n_runs : list of int
    """

    variant: Variant
    subjects: list[str]
    regions: list[str]
    features: np.ndarray
    n_runs: list[int]

    @property
    def names(self) -> list[str]:
        return connection_names(self.regions)


def average_runs(variant: Variant, per_subject: dict[str, list[np.ndarray]], regions: list[str]) -> FeatureSet:
    """The feature set of ``per_subject`` (label -> upper triangles of its runs), runs averaged (NaN-aware)."""
    subjects = sorted(per_subject)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        feats = np.array([np.nanmean(np.array(per_subject[s]), axis=0) for s in subjects])
    return FeatureSet(variant, subjects, regions, feats, [len(per_subject[s]) for s in subjects])


def collect_relmats(lay, subjects: list[str] | None = None) -> dict[Variant, FeatureSet]:
    """Participant-level ``_relmat.tsv`` files of a layout of ``OUT_DIR`` (:func:`nmflow.bids_io.layout`), per variant.

    Raises :class:`NmflowInputError` when two files of one variant have
    different regions (features of mismatched length or order).
    """
    query = {"suffix": "relmat", "extension": ".tsv"}
    if subjects:
        query["subject"] = [strip_prefix(s) for s in subjects]
    found: dict[Variant, dict[str, list[np.ndarray]]] = {}
    regions: dict[Variant, tuple[list[str], str]] = {}
    for f in lay.get(**query):
        ents = f.get_entities()
        if "meas" not in ents:
            continue
        variant = Variant(ents.get("atlas"), ents.get("segmentation"), ents.get("desc"), ents["meas"])
        names, matrix = read_relmat(f.path)
        check_matrix(f.path, matrix, None, names)  # e.g. an edited file: no infinite value, symmetric
        first = regions.setdefault(variant, (names, f.path))
        if names != first[0]:
            raise NmflowInputError(f.path, f"{len(names)} regions differ from the {len(first[0])} of "
                                   f"{Path(first[1]).name} (same variant {variant.label})")
        found.setdefault(variant, {}).setdefault(ents["subject"], []).append(upper_triangle(matrix))
    return {v: average_runs(v, found[v], regions[v][0]) for v in sorted(found, key=lambda v: v.label)}


def check_matrix(path: str | Path, matrix: np.ndarray, values: str | None, names: list[str] | None = None) -> None:
    """Refuse a matrix that cannot be connectivity of ``values`` (``r``, ``z``, ``covariance``; None:
    any measure, its diagonal unchecked).

    Square (as many distinct names as rows when named), at least 2 regions;
    no infinite value off the diagonal; symmetric within :data:`TOLERANCE`
    (NaN on both sides or neither); the diagonal is 1 for r (not 1
    everywhere for z), non-negative for covariances; r within [-1, 1].  NaN
    is a missing connection (or region) and always allowed.

    Raises
    ------
    NmflowInputError
        The first problem found, naming ``path``.
    """
    n_rows, n_cols = matrix.shape
    if n_rows != n_cols:
        raise NmflowInputError(path, f"not square: {n_rows} rows x {n_cols} columns")
    if n_rows < 2:
        raise NmflowInputError(path, f"{n_rows} region: need at least 2")
    if names is not None and len(names) != n_rows:
        raise NmflowInputError(path, f"{len(names)} region names for a {n_rows} x {n_rows} matrix")
    if names is not None and len(set(names)) != len(names):
        raise NmflowInputError(path, f"region name(s) repeated: {sorted({n for n in names if names.count(n) > 1})}")

    def label(k: int) -> str:
        return repr(names[k]) if names is not None else str(k + 1)

    off = ~np.eye(n_rows, dtype=bool)
    infinite = np.isinf(matrix) & off
    if infinite.any():
        i, j = np.argwhere(infinite)[0]
        raise NmflowInputError(path, f"infinite value off the diagonal (regions {label(i)}, {label(j)})")
    one_sided = np.isnan(matrix) != np.isnan(matrix.T)
    if one_sided.any():
        i, j = np.argwhere(one_sided)[0]
        raise NmflowInputError(path, f"not symmetric: missing (NaN) at regions {label(i)}, {label(j)} "
                               "but not the other way round")
    with np.errstate(invalid="ignore"):
        asymmetry = np.where(off & ~np.isnan(matrix), np.abs(matrix - matrix.T), 0.0)
    scale = np.nanmax(np.abs(np.where(off, matrix, np.nan)), initial=0.0)
    if asymmetry.max() > TOLERANCE * (1 + scale):
        i, j = np.unravel_index(np.argmax(asymmetry), asymmetry.shape)
        raise NmflowInputError(path, f"not symmetric: largest asymmetry {asymmetry[i, j]:.3g} between regions "
                               f"{label(i)} and {label(j)} ({matrix[i, j]:.6g} vs {matrix[j, i]:.6g})")
    diagonal = np.diag(matrix)[~np.isnan(np.diag(matrix))]
    if values == "r":
        wrong = diagonal[np.abs(diagonal - 1) > TOLERANCE]
        if wrong.size:
            raise NmflowInputError(path, f"diagonal is not 1 (e.g. {wrong[0]:.6g}): not a correlation matrix "
                                   "(covariances? give --matrix-values covariance)")
        outside = np.abs(np.where(off, matrix, 0.0)) > 1 + TOLERANCE
        if outside.any():
            i, j = np.argwhere(outside)[0]
            raise NmflowInputError(path, f"correlation {matrix[i, j]:.6g} outside [-1, 1] (regions {label(i)}, "
                                   f"{label(j)}): Fisher z? (give --matrix-values z)")
    elif values == "z":
        if diagonal.size == n_rows and np.all(diagonal == 1):
            raise NmflowInputError(path, "diagonal is 1: correlations, not Fisher z (give --matrix-values r)")
    elif values == "covariance" and np.any(diagonal < 0):
        raise NmflowInputError(path, f"negative variance {diagonal.min():.6g} on the diagonal of a covariance matrix")


def read_timeseries(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Region names and ``(n_volumes, n_regions)`` values of a BEP017 ``_timeseries.tsv``.

    ``n/a`` is NaN; a file whose header is numeric is read as headerless
    (regions named ``R1..Rn``).
    """
    table = read_tsv(path, "time series")
    if all(_is_number(c) for c in table.columns):
        table = read_tsv(path, "time series", header=None)
        table.columns = [f"R{k + 1}" for k in range(table.shape[1])]
    try:
        values = table.to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise NmflowInputError(path, f"cannot read time series ({type(exc).__name__}: {exc})") from None
    return [str(c) for c in table.columns], values


def _is_number(text) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def space_label(space: tuple[str | None, str | None]) -> str:
    """``space-X_den-Y`` of a ``(space, den)`` pair (absent entities left out) for messages."""
    return "_".join(f"{k}-{v}" for k, v in zip(("space", "den"), space) if v is not None) or "(none)"


def collect_timeseries(ts_dir: str | Path, metrics: list[str],
                       subjects: list[str] | None = None) -> tuple[dict[Variant, FeatureSet], list[str]]:
    """FC features from a folder of BEP017 ``*_timeseries.tsv`` (XCP-D, giga_connectome, ...).

    Files are found with PyBIDS (no validation); confound tables
    (``desc-confounds``) are skipped.  Per variant the regions are the union
    of the files' headers (order of the first file, then new ones): a region
    missing from a file, or constant, gives NaN connections.  One variant's
    files must share one ``space``/``den`` (volumetric and CIFTI-derived
    series of one atlas are refused).  Scan lengths may
    differ; a file with fewer than 3 volumes is skipped with a message.

    Returns the feature sets (one per atlas/seg/desc x metric) and messages.
    """
    ts_dir = Path(ts_dir)
    if not ts_dir.is_dir():
        raise NmflowInputError(ts_dir, "time series directory not found")
    query = {"suffix": "timeseries", "extension": ".tsv"}
    if subjects:
        query["subject"] = [strip_prefix(s) for s in subjects]
    tables: dict[tuple, list[tuple[str, list[str], np.ndarray]]] = {}
    spaces: dict[tuple, tuple[tuple, str]] = {}
    messages = []
    for f in layout(ts_dir).get(**query):
        ents = f.get_entities()
        if "subject" not in ents or "confounds" in str(ents.get("desc", "")):
            continue
        names, values = read_timeseries(f.path)
        if values.shape[0] < 3:
            messages.append(f"{f.path}: fewer than 3 volumes, skipped")
            continue
        key = (ents.get("atlas"), ents.get("segmentation"), ents.get("desc"))
        space = (ents.get("space"), ents.get("den"))
        first = spaces.setdefault(key, (space, f.path))
        if space != first[0]:  # e.g. XCP-D's volumetric and CIFTI-derived series of one atlas
            raise NmflowInputError(f.path, f"space {space_label(space)} differs from {space_label(first[0])} of "
                                   f"{Path(first[1]).name} (same atlas and desc): give a folder of one space")
        tables.setdefault(key, []).append((ents["subject"], names, values))
    out = {}
    for (atlas, seg, desc), items in sorted(tables.items(), key=lambda kv: str(kv[0])):
        regions = list(dict.fromkeys(n for _, names, _ in items for n in names))
        for metric in metrics:
            per_subject: dict[str, list[np.ndarray]] = {}
            for sub, names, values in items:
                full = pd.DataFrame(values, columns=names).reindex(columns=regions).to_numpy(float)
                per_subject.setdefault(sub, []).append(upper_triangle(connectivity(full, metric)))
            variant = Variant(atlas, seg, desc, metric)
            out[variant] = average_runs(variant, per_subject, regions)
    return out, messages


def model_features(fs: FeatureSet) -> np.ndarray:
    """Features for modelling ``(n_subjects, n_features)``: Fisher z for correlation metrics."""
    return fisher_z(fs.features) if is_correlation(fs.variant.meas) else fs.features.copy()


def read_participants(path: str | Path, group_column: str, site_column: str | None,
                      covariates: list[str]) -> pd.DataFrame:
    """``participants.tsv`` indexed by subject label (no ``sub-``), checked columns.

    A ``mean_fd`` covariate may be absent: it can come from the participant
    level's motion files (:func:`nmflow.group.motion.with_mean_fd`).
    """
    path = Path(path)
    if not path.is_file():
        raise NmflowInputError(path, "participants file not found (give --participants FILE)")
    table = read_tsv(path, "participants file", dtype={"participant_id": str})
    needed = ["participant_id", group_column] + [c for c in covariates if c != MEAN_FD]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise NmflowInputError(path, f"missing column(s) {missing}; has {list(table.columns)}")
    table.index = [strip_prefix(str(p)) for p in table["participant_id"]]
    if table.index.duplicated().any():
        raise NmflowInputError(path, f"duplicate participant_id {sorted(table.index[table.index.duplicated()])}")
    table["group"] = table[group_column].astype(str)
    table["site"] = table[site_column].astype(str) if site_column and site_column in table else "all"
    return table


def check_groups(table: pd.DataFrame, control_label: str, min_size: int = 3) -> None:
    """Raise :class:`NmflowInputError` without controls or with a group smaller than ``min_size``."""
    counts = table["group"].value_counts()
    if control_label not in counts:
        raise NmflowInputError(None, f"no controls: no subject has group {control_label!r} "
                               f"(groups: { {str(g): int(n) for g, n in counts.items()} }); see --control-label")
    small = {g: int(n) for g, n in counts.items() if n < min_size}
    if small:
        raise NmflowInputError(None, f"group(s) with fewer than {min_size} subjects: {small}")
