"""The voxel-wise GLM of a stimulus run: design matrix, ordinary least squares, residuals.

The design is nilearn's ``make_first_level_design_matrix``: the stimulus
convolved with the Glover HRF, the confounds of a denoising strategy
(:func:`nmflow.participant.denoise.select_confounds`) and a cosine drift
basis (the high-pass).  The fit is nilearn ``FirstLevelModel``'s
``noise_model="ols"`` with its default ``signal_scaling=0``: each voxel is
scaled to percent signal change of its mean over the fitted volumes, censored
volumes (:func:`nmflow.participant.denoise.censoring`) are left out of the
fit; the residuals are the scaled data minus the fitted values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from nmflow.images import read_volumes
from nmflow.participant.parcellate import open_bold
from nmflow.prepost.events import Stimulus

CHUNK = 50_000  # voxels per least-squares block


@dataclass
class BoldMatrix:
    """The BOLD inside the brain mask.

    Attributes
    ----------
    data : ndarray, shape (n_volumes, n_voxels)
        Voxel values (scanner units), voxels in Fortran order of the mask.
    mask : ndarray of bool, shape (x, y, z)
    affine : ndarray, shape (4, 4)
    """

    data: np.ndarray
    mask: np.ndarray
    affine: np.ndarray

    def image(self, values: np.ndarray) -> nib.Nifti1Image:
        """A float32 image of ``values`` ``(n_voxels,)`` (3D) or ``(k, n_voxels)`` (4D, k volumes); 0 outside."""
        values = np.asarray(values, dtype=np.float32)
        rows = values[None] if values.ndim == 1 else values
        out = np.zeros((rows.shape[0], self.mask.size), dtype=np.float32)
        out[:, self.mask.ravel(order="F")] = rows
        volume = out.reshape((rows.shape[0],) + self.mask.shape[::-1]).transpose(3, 2, 1, 0)
        img = nib.Nifti1Image(volume[..., 0] if values.ndim == 1 else volume, self.affine)
        img.header.set_xyzt_units("mm", "sec")
        return img


def read_bold(bold: str | Path, mask: str | Path) -> BoldMatrix:
    """The brain voxels of a 4D BOLD, read once (checks as the participant level: grids, NaN, truncation)."""
    img, brain = open_bold(bold, mask)
    inside = np.flatnonzero(brain.ravel(order="F"))
    data = np.empty((img.shape[3], inside.size))
    for t, volume in enumerate(read_volumes(img, bold)):
        data[t] = volume[inside]
    if not np.isfinite(data).all():
        from nmflow.errors import NmflowInputError

        raise NmflowInputError(bold, "BOLD has NaN or Inf values inside the brain mask")
    return BoldMatrix(data, brain, img.affine)


def start_time(bold: str | Path) -> float:
    """The sidecar's ``StartTime`` (s; fMRIPrep's slice-timing reference), 0 without one."""
    sidecar = Path(str(bold).replace(".nii.gz", ".json").replace(".nii", ".json"))
    if sidecar.exists():
        try:
            return float(json.loads(sidecar.read_text()).get("StartTime", 0.0))
        except (ValueError, TypeError):
            return 0.0
    return 0.0


def design_matrix(times: np.ndarray, stimulus: Stimulus, confounds: pd.DataFrame,
                  high_pass: float | None) -> pd.DataFrame:
    """The run's design ``(n_volumes, n_regressors)``: stimulus (Glover HRF), confounds, cosine drift, constant.

    Parameters
    ----------
    times : ndarray, shape (n_volumes,)
        Acquisition time of each volume (s).
    stimulus : Stimulus
    confounds : DataFrame, shape (n_volumes, n_confounds)
        Confounds to regress (no NaN).
    high_pass : float or None
        Cut-off (Hz) of the cosine drift basis; None: no drift terms.
    """
    from nilearn.glm.first_level import make_first_level_design_matrix

    return make_first_level_design_matrix(
        times, events=stimulus.table(), hrf_model="glover", drift_model="cosine" if high_pass else None,
        high_pass=high_pass or 0.01, add_regs=confounds.to_numpy() if confounds.shape[1] else None,
        add_reg_names=list(confounds.columns) if confounds.shape[1] else None)


@dataclass
class GLMFit:
    """Least-squares fit of one run.

    Attributes
    ----------
    betas : ndarray, shape (n_regressors, n_voxels)
        Percent signal change per unit of each regressor.
    residuals : ndarray, shape (n_fitted, n_voxels)
        Scaled data minus fitted values, at the fitted volumes (percent signal change).
    r_square : ndarray, shape (n_voxels,)
        Variance explained by the design, ``var(fitted) / var(data)`` (0 for a constant voxel).
    fitted : ndarray of int, shape (n_fitted,)
        Indices of the volumes fitted (the uncensored ones).
    """

    betas: np.ndarray
    residuals: np.ndarray
    r_square: np.ndarray
    fitted: np.ndarray


def fit_glm(data: np.ndarray, design: np.ndarray, fitted: np.ndarray) -> GLMFit:
    """Ordinary least squares of every voxel on ``design`` over the ``fitted`` volumes.

    Parameters
    ----------
    data : ndarray, shape (n_volumes, n_voxels)
        Raw voxel values; each voxel is scaled to ``100 * (y / mean - 1)`` with its mean over the fitted
        volumes (floored at 1, as nilearn's ``mean_scaling``).
    design : ndarray, shape (n_volumes, n_regressors)
    fitted : ndarray of int
        Volumes kept in the fit.
    """
    x = np.asarray(design, dtype=float)[fitted]
    pinv = np.linalg.pinv(x)
    n_voxels = data.shape[1]
    betas = np.empty((x.shape[1], n_voxels))
    residuals = np.empty((fitted.size, n_voxels))
    r_square = np.zeros(n_voxels)
    for start in range(0, n_voxels, CHUNK):
        block = slice(start, start + CHUNK)
        y = data[fitted, block]
        y = 100 * (y / np.maximum(y.mean(axis=0), 1) - 1)
        betas[:, block] = pinv @ y
        prediction = x @ betas[:, block]
        residuals[:, block] = y - prediction
        total = y.var(axis=0)
        np.divide(prediction.var(axis=0), total, out=r_square[block], where=total > 0)
    return GLMFit(betas, residuals, r_square, np.asarray(fitted))
