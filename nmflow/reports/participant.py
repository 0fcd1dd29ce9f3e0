"""Per-run figures and HTML report (in the spirit of fMRIPrep's reports).

Figures: raw vs cleaned carpet plots with FD (the "Fig. 1" of the method),
FC matrices per atlas and strategy, a connectome of the strongest
connections, and a QC table (mean FD, % volumes censored, tSNR, coverage).
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nmflow.participant.atlas import Atlas, region_centres  # noqa: E402

DPI = 80


def _zscore_rows(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=1, keepdims=True)
    return (x - x.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1)


def carpet_figure(path: Path, raw: np.ndarray, cleaned: np.ndarray, labels: np.ndarray,
                  fd: np.ndarray, kept: np.ndarray, strategy: str) -> Path:
    """Raw ``(n_voxels, n_volumes)`` vs cleaned ``(n_voxels, n_kept)`` carpets, voxels sorted by region."""
    order = np.argsort(labels, kind="stable")
    fig, axes = plt.subplots(3, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [1, 3, 3]})
    axes[0].plot(np.nan_to_num(fd), color="k", lw=0.8)
    axes[0].set_ylabel("FD (mm)")
    axes[1].imshow(_zscore_rows(raw[order]), aspect="auto", cmap="gray", vmin=-2, vmax=2, interpolation="none")
    axes[1].set_ylabel("raw voxels")
    full = np.full((cleaned.shape[0], raw.shape[1]), np.nan)
    full[:, kept] = _zscore_rows(cleaned)
    axes[2].imshow(full[order], aspect="auto", cmap="gray", vmin=-2, vmax=2, interpolation="none")
    axes[2].set_ylabel(f"cleaned ({strategy})")
    axes[2].set_xlabel("volume")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def matrices_figure(path: Path, matrices: dict[str, np.ndarray], title: str) -> Path:
    """One panel per strategy: the FC matrix of one atlas and metric."""
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(2.8 * n, 2.8), squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.92, bottom=0.03, top=0.82, wspace=0.45)  # tight_layout is slow
    for ax, (name, mat) in zip(axes[0], matrices.items()):
        shown = mat.copy()
        np.fill_diagonal(shown, np.nan)
        lim = np.nanmax(np.abs(shown)) if np.isfinite(shown).any() else 1
        im = ax.imshow(shown, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def connectome_figure(path: Path, matrix: np.ndarray, atlas: Atlas, title: str, top: float = 0.1) -> Path:
    """Connectome of the strongest ``top`` fraction of connections in three projections.

    Nodes sit at the region centres (mm); the grey outline is the atlas' extent
    projected on each plane; red edges are positive, blue negative.
    """
    import nibabel as nib

    centres = region_centres(atlas)
    img = nib.load(atlas.image)
    labelled = np.argwhere(np.asarray(img.dataobj) > 0)
    xyz = nib.affines.apply_affine(img.affine, labelled)
    mat = np.where(np.isfinite(matrix), matrix, 0.0)
    rows, cols = np.triu_indices(mat.shape[0], k=1)
    strength = np.abs(mat[rows, cols])
    keep = strength >= np.quantile(strength, 1 - top) if strength.size else np.zeros(0, bool)
    fig, axes = plt.subplots(1, 3, figsize=(8, 2.8))
    for ax, (a, b), label in zip(axes, [(1, 2), (0, 2), (0, 1)], ["sagittal", "coronal", "axial"]):
        ax.scatter(xyz[::7, a], xyz[::7, b], s=1, c="0.88", rasterized=True)
        for i, j, w in zip(rows[keep], cols[keep], mat[rows, cols][keep]):
            ax.plot(centres[[i, j], a], centres[[i, j], b], color="tab:red" if w > 0 else "tab:blue",
                    lw=0.5 + 2.5 * abs(w) / max(strength.max(), 1e-12), alpha=0.8)
        ax.scatter(centres[:, a], centres[:, b], s=18, c="k", zorder=3)
        ax.set_aspect("equal"), ax.axis("off"), ax.set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def qc_table(outliers: dict[str, pd.DataFrame], tsnr: float, coverage: dict[str, np.ndarray],
             min_coverage: float) -> pd.DataFrame:
    """QC numbers: one row per strategy plus run-level values."""
    fd = next(iter(outliers.values()))["framewise_displacement"]
    rows = []
    for strategy, table in outliers.items():
        rows.append({
            "strategy": strategy, "mean FD (mm)": round(float(np.nanmean(fd)), 3),
            "volumes kept": int((table["censored"] == 0).sum()),
            "% censored": round(100 * float(table["censored"].mean()), 1),
            "median tSNR": round(tsnr, 1),
            **{f"regions < {min_coverage:.0%} coverage ({a})": int((c < min_coverage).sum())
               for a, c in coverage.items()},
        })
    return pd.DataFrame(rows)


def write_report(path: Path, title: str, qc: pd.DataFrame, figures: list[Path], notes: list[str]) -> Path:
    """A self-contained HTML page pointing at ``figures`` (in ``sub-X/figures/``)."""
    sub = title.split("_")[0]
    items = "".join(
        f'<figure><img src="{sub}/figures/{f.name}" style="max-width:100%"><figcaption>{html.escape(f.stem)}'
        f"</figcaption></figure>" for f in figures)
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes) or "<li>none</li>"
    path.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px}</style></head><body>"
        f"<h1>nmflow: {html.escape(title)}</h1><h2>Quality control</h2>{qc.to_html(index=False)}"
        f"<h2>Warnings</h2><ul>{note_html}</ul><h2>Figures</h2>{items}</body></html>")
    return path
