"""Read the BOLD once and average it inside every region of every atlas.

The only module that touches voxels.  Each atlas becomes a sparse
``(n_regions, n_voxels)`` averaging matrix over the voxels of a region inside
the brain mask (labels resampled to the BOLD grid with nearest neighbour, as
nilearn's ``NiftiLabelsMasker`` does), all atlases are stacked, and one sparse
product with the ``(n_voxels, n_volumes)`` view of the BOLD gives every region
signal.  Voxel-level QC (tSNR, a carpet sample) is computed in the same pass.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import sparse

from nmflow.atlas import Atlas
from nmflow.errors import NmflowInputError

CARPET_VOXELS = 1500


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


def load_bold(bold_path: str | Path, mask_path: str | Path) -> tuple[nib.Nifti1Image, np.ndarray, np.ndarray]:
    """Load a 4D BOLD as float32 and its brain mask, checking both.

    Returns the image, the ``(x, y, z, n_volumes)`` float32 data and the
    boolean mask ``(x, y, z)``.  Raises :class:`NmflowInputError` for a
    non-4D image, a truncated/corrupt file, a mask on another grid, or
    non-finite values inside the mask.
    """
    bold_path, mask_path = Path(bold_path), Path(mask_path)
    img = _load_image(bold_path)
    if img.ndim != 4 or img.shape[3] < 2:
        raise NmflowInputError(bold_path, f"BOLD must be 4D with several volumes, got shape {img.shape}")
    mask_img = _load_image(mask_path)
    if mask_img.shape[:3] != img.shape[:3] or not np.allclose(mask_img.affine, img.affine, atol=1e-3):
        raise NmflowInputError(mask_path, f"brain mask grid {mask_img.shape[:3]} differs from the BOLD grid {img.shape[:3]}")
    try:
        data = img.get_fdata(dtype=np.float32)
        mask = np.asarray(mask_img.dataobj) > 0
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        raise NmflowInputError(bold_path, f"truncated or corrupt image ({type(exc).__name__}: {exc})") from None
    if not mask.any():
        raise NmflowInputError(mask_path, "brain mask is empty")
    flat = data.reshape(-1, data.shape[3], order="F")
    inside = np.flatnonzero(mask.ravel(order="F"))
    for start in range(0, inside.size, 20000):
        block = flat[inside[start : start + 20000]]
        if not np.isfinite(block).all():
            raise NmflowInputError(bold_path, "BOLD has NaN or Inf values inside the brain mask")
    return img, data, mask


def _load_image(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise NmflowInputError(path, "file not found")
    try:
        return nib.load(path)
    except Exception as exc:
        raise NmflowInputError(path, f"cannot read image ({type(exc).__name__}: {exc})") from None


def region_weights(
    atlas: Atlas, bold_img: nib.Nifti1Image, mask: np.ndarray
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Averaging matrix ``(n_regions, n_voxels)`` (Fortran voxel order) and coverage ``(n_regions,)``."""
    from nilearn.image import resample_to_img

    labels_img = nib.load(atlas.image)
    ref = nib.Nifti1Image(np.zeros(bold_img.shape[:3], dtype=np.int8), bold_img.affine)
    if labels_img.shape[:3] != ref.shape or not np.allclose(labels_img.affine, ref.affine, atol=1e-3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels_img = resample_to_img(labels_img, ref, interpolation="nearest",
                                         force_resample=True, copy_header=True)
    labels = np.asarray(labels_img.dataobj).round().astype(np.int64).ravel(order="F")
    inside = mask.ravel(order="F")
    rows, cols, vals = [], [], []
    coverage = np.zeros(len(atlas.indices))
    for r, index in enumerate(atlas.indices):
        in_label = labels == index
        voxels = np.flatnonzero(in_label & inside)
        n_label = in_label.sum()
        coverage[r] = voxels.size / n_label if n_label else 0.0
        if voxels.size:
            rows.append(np.full(voxels.size, r))
            cols.append(voxels)
            vals.append(np.full(voxels.size, 1.0 / voxels.size))
    if rows:
        weights = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(atlas.indices), labels.size),
        )
    else:
        weights = sparse.csr_matrix((len(atlas.indices), labels.size))
    return weights, coverage


def extract_signals(
    bold_path: str | Path, mask_path: str | Path, atlases: list[Atlas], min_coverage: float = 0.5,
) -> ParcelSignals:
    """Region signals of every atlas from one read of the BOLD.

    Parameters
    ----------
    bold_path, mask_path : path
        fMRIPrep ``desc-preproc_bold`` and ``desc-brain_mask`` images.
    atlases : list of Atlas
        Resolved atlases; labels are resampled to the BOLD grid.
    min_coverage : float
        Regions with a smaller fraction of voxels inside the mask become NaN.
    """
    img, data, mask = load_bold(bold_path, mask_path)
    n_volumes = data.shape[3]
    flat = data.reshape(-1, n_volumes, order="F")  # a view, no copy
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
    all_signals = np.asarray((stacked @ flat).T, dtype=float)  # (n_volumes, total regions)
    signals, start = {}, 0
    for atlas in atlases:
        stop = start + len(atlas.indices)
        block = all_signals[:, start:stop].copy()
        block[:, coverage[atlas.name] < min_coverage] = np.nan
        signals[atlas.name] = block
        start = stop
    for note in notes:
        warnings.warn(note, stacklevel=2)
    tsnr, carpet, carpet_labels = _voxel_qc(flat, mask, blocks[0] if blocks else None)
    return ParcelSignals(signals, coverage, tsnr, carpet, carpet_labels, notes)


def _voxel_qc(flat: np.ndarray, mask: np.ndarray, first_weights) -> tuple[float, np.ndarray, np.ndarray]:
    inside = np.flatnonzero(mask.ravel(order="F"))
    tsnr = []
    for start in range(0, inside.size, 20000):
        block = flat[inside[start : start + 20000]]
        std = block.std(axis=1)
        tsnr.append(np.divide(block.mean(axis=1), std, out=np.zeros_like(std), where=std > 0))
    sample = inside[np.linspace(0, inside.size - 1, min(CARPET_VOXELS, inside.size)).astype(int)]
    labels = np.zeros(sample.size, dtype=int)
    if first_weights is not None:
        region_of = np.asarray(first_weights[:, sample].argmax(axis=0)).ravel() + 1
        has = np.asarray(first_weights[:, sample].sum(axis=0)).ravel() > 0
        labels = np.where(has, region_of, 0)
    return float(np.median(np.concatenate(tsnr))), np.array(flat[sample]), labels
