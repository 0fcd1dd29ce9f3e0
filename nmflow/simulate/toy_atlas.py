"""A toy atlas directory for unit tests: Yeo's label sets on an 8 mm grid.

The regions are not Yeo's anatomy: the cortex of an ellipsoidal brain is cut
into 17 blobs around fixed random centres ("thick" = two outer voxel layers,
"thin" = the outermost layer), and the 7-network version merges them as Yeo's
17 networks merge into 7.  The files follow the layout of a real atlas
directory, so the package resolves them by name exactly as the real ones.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from nmflow.participant.atlas import YEO_NAMES

SHAPE = (18, 22, 18)
VOXEL_MM = 8.0


def toy_affine() -> np.ndarray:
    """MNI-like affine of the toy grid (8 mm, LAS as the FSL template)."""
    return np.array([
        [-VOXEL_MM, 0, 0, 72.0],
        [0, VOXEL_MM, 0, -104.0],
        [0, 0, VOXEL_MM, -64.0],
        [0, 0, 0, 1],
    ])


def toy_labels() -> dict[tuple[int, str], np.ndarray]:
    """Label volumes keyed by (n_networks, thickness)."""
    from nmflow.simulate.networks import SIMULATED_SYSTEMS

    grid = np.indices(SHAPE).astype(float)
    centre = (np.array(SHAPE) - 1) / 2
    radii = np.array(SHAPE) / 2 - 1
    brain = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
    depth = ndimage.distance_transform_cdt(brain)
    rng = np.random.default_rng(17)
    cortex_idx = np.argwhere((depth >= 1) & (depth <= 2))
    seeds = cortex_idx[rng.choice(len(cortex_idx), 17, replace=False)]
    dist = ((cortex_idx[:, None, :] - seeds[None]) ** 2).sum(-1)
    nearest = dist.argmin(1) + 1
    thick = np.zeros(SHAPE, dtype=np.int16)
    thick[tuple(cortex_idx.T)] = nearest
    thin = np.where(depth == 1, thick, 0).astype(np.int16)
    out = {}
    for name, vol in (("thick", thick), ("thin", thin)):
        out[(17, name)] = vol
        seven = np.zeros_like(vol)
        seven[vol > 0] = SIMULATED_SYSTEMS[vol[vol > 0] - 1]
        out[(7, name)] = seven
    return out


def write_toy_atlas_dir(directory: str | Path) -> Path:
    """Write the four toy Yeo variants (NIfTI + label CSV) to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    res = f"{int(VOXEL_MM)}x{int(VOXEL_MM)}x{int(VOXEL_MM)}"
    for (n, thickness), vol in toy_labels().items():
        stem = f"Yeo-{n}{'-liberal' if thickness == 'thick' else ''}"
        nib.Nifti1Image(vol, toy_affine()).to_filename(directory / f"{stem}_space-MNI152NLin6_res-{res}.nii.gz")
        pd.DataFrame({"index": range(n + 1), "name": ["empty"] + YEO_NAMES[n]}).to_csv(
            directory / f"{stem}.csv", index=False)
    return directory
