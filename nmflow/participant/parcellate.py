"""Read the BOLD once and average it inside every region of every atlas.

The only module that touches voxels.  Each atlas becomes a sparse
``(n_regions, n_voxels)`` averaging matrix over the voxels of a region inside
the brain mask (labels resampled to the BOLD grid with nearest neighbour, as
nilearn's ``NiftiLabelsMasker`` does), all atlases are stacked, and one sparse
mat-vec per volume gives every region signal.  The BOLD is streamed volume by
volume from the (gzipped) file, so the 4D array is never held in memory;
voxel-level QC (tSNR, a carpet sample), the finite-value and constancy checks
and the gzip CRC (:mod:`nmflow.images`) are done in the same pass.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import sparse

from nmflow.participant.atlas import Atlas
from nmflow.images import load_header, read_image, read_volumes
from nmflow.errors import NmflowInputError

CARPET_VOXELS = 300


@dataclass
class ParcelSignals:
    """Raw region signals of one run.

    Attributes
    ----------
    signals : dict of str -> ndarray, shape (n_volumes, n_regions)
        Mean BOLD in each region, per atlas name; NaN columns for regions
        whose coverage inside the brain mask is below ``min_coverage``.
    coverage : dict of str -> ndarray, shape (n_regions,)
        Fraction of each region's voxels (on the BOLD grid) inside the mask.
    tsnr : float
        Median temporal SNR (mean / std over time) over brain voxels.
    carpet : ndarray, shape (n_carpet_voxels, n_volumes)
        Raw signal of a fixed sample of brain voxels (for the report).
    carpet_labels : ndarray, shape (n_carpet_voxels,)
        Region index (0 = none) of the carpet voxels in the first atlas.
    """

    signals: dict[str, np.ndarray]
    coverage: dict[str, np.ndarray]
    tsnr: float
    carpet: np.ndarray
    carpet_labels: np.ndarray
    warnings: list[str] = field(default_factory=list)


def open_bold(bold_path: str | Path, mask_path: str | Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Check a 4D BOLD and its brain mask (headers, grids, the whole mask file); return the image and the mask."""
    bold_path, mask_path = Path(bold_path), Path(mask_path)
    img = load_header(bold_path)
    if img.ndim != 4 or img.shape[3] < 2:
        raise NmflowInputError(bold_path, f"BOLD must be 4D with several volumes, got shape {img.shape}")
    mask_img, values = read_image(mask_path)
    if mask_img.shape[:3] != img.shape[:3] or not np.allclose(mask_img.affine, img.affine, atol=1e-3):
        raise NmflowInputError(mask_path, f"brain mask grid {mask_img.shape[:3]} differs from the BOLD grid {img.shape[:3]}")
    if values.size != np.prod(img.shape[:3]):
        raise NmflowInputError(mask_path, f"brain mask must be 3D, got shape {mask_img.shape}")
    mask = values.reshape(img.shape[:3], order="F") > 0
    if not mask.any():
        raise NmflowInputError(mask_path, "brain mask is empty")
    return img, mask


def region_weights(
    atlas: Atlas, bold_img: nib.Nifti1Image, mask: np.ndarray
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Averaging matrix ``(n_regions, n_voxels)`` (Fortran voxel order) and coverage ``(n_regions,)``."""
    labels_img = nib.load(atlas.image)
    ref = nib.Nifti1Image(np.zeros(bold_img.shape[:3], dtype=np.int8), bold_img.affine)
    if labels_img.shape[:3] != ref.shape or not np.allclose(labels_img.affine, ref.affine, atol=1e-3):
        from nilearn.image import resample_to_img

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels_img = resample_to_img(labels_img, ref, interpolation="nearest",
                                         force_resample=True, copy_header=True)
    labels = np.asarray(labels_img.dataobj).round().astype(np.int64).ravel(order="F")
    row_of = np.full(max(max(atlas.indices), int(labels.max())) + 1, -1)
    row_of[atlas.indices] = np.arange(len(atlas.indices))
    labelled = np.flatnonzero((labels > 0) & (row_of[np.maximum(labels, 0)] >= 0))
    rows_all = row_of[labels[labelled]]
    inside = mask.ravel(order="F")[labelled]
    n_label = np.bincount(rows_all, minlength=len(atlas.indices))
    n_inside = np.bincount(rows_all[inside], minlength=len(atlas.indices))
    coverage = np.divide(n_inside, n_label, out=np.zeros(len(atlas.indices)), where=n_label > 0)
    rows, cols = rows_all[inside], labelled[inside]
    weights = sparse.csr_matrix((1.0 / n_inside[rows], (rows, cols)), shape=(len(atlas.indices), labels.size))
    return weights, coverage


def extract_signals(
    bold_path: str | Path, mask_path: str | Path, atlases: list[Atlas], min_coverage: float = 0.5,
) -> ParcelSignals:
    """Region signals of every atlas from one streamed read of the BOLD.

    Parameters
    ----------
    bold_path, mask_path : path
        fMRIPrep ``desc-preproc_bold`` and ``desc-brain_mask`` images.
    atlases : list of Atlas
        Resolved atlases; labels are resampled to the BOLD grid.
    min_coverage : float
        Regions with a smaller fraction of voxels inside the mask become NaN.
    """
    img, mask = open_bold(bold_path, mask_path)
    n_volumes = img.shape[3]
    blocks, coverage, notes = [], {}, []
    for atlas in atlases:
        weights, cov = region_weights(atlas, img, mask)
        coverage[atlas.name] = cov
        blocks.append(weights)
        low = [atlas.names[i] for i in np.flatnonzero(cov < min_coverage)]
        if low:
            notes.append(f"{Path(bold_path).name}: atlas {atlas.name}: {len(low)} region(s) below "
                         f"{min_coverage:.0%} coverage set to NaN ({', '.join(low[:5])})")
    stacked = sparse.vstack(blocks).tocsr()
    inside = np.flatnonzero(mask.ravel(order="F"))
    sample = inside[np.linspace(0, inside.size - 1, min(CARPET_VOXELS, inside.size)).astype(int)]
    all_signals = np.empty((n_volumes, stacked.shape[0]))  # (n_volumes, total regions)
    carpet = np.empty((sample.size, n_volumes))
    total, total_sq = np.zeros(inside.size), np.zeros(inside.size)
    first, varies = None, False
    for t, volume in enumerate(read_volumes(img, bold_path)):
        brain = volume[inside]
        if not np.isfinite(brain).all():
            raise NmflowInputError(bold_path, f"BOLD has NaN or Inf values inside the brain mask (volume {t})")
        if first is None:
            first = brain
        varies = varies or bool((brain != first).any())
        all_signals[t] = stacked @ volume
        carpet[:, t] = volume[sample]
        total += brain
        total_sq += brain * brain
    if not varies:
        raise NmflowInputError(bold_path, "BOLD is constant over time inside the brain mask"
                               + (" (all zero)" if not first.any() else "") + ": no signal to analyse")
    signals, start = {}, 0
    for atlas in atlases:
        stop = start + len(atlas.indices)
        block = all_signals[:, start:stop].copy()
        block[:, coverage[atlas.name] < min_coverage] = np.nan
        signals[atlas.name] = block
        start = stop
    for note in notes:
        warnings.warn(note, stacklevel=2)
    mean = total / n_volumes
    std = np.sqrt(np.maximum(total_sq / n_volumes - mean**2, 0))
    tsnr = float(np.median(np.divide(mean, std, out=np.zeros_like(std), where=std > 0)))
    first = blocks[0][:, sample]
    has = np.asarray(first.sum(axis=0)).ravel() > 0
    carpet_labels = np.where(has, np.asarray(first.argmax(axis=0)).ravel() + 1, 0)
    return ParcelSignals(signals, coverage, tsnr, carpet, carpet_labels, notes)
