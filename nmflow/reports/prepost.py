"""Figures and HTML pages of the stimulus study: the participant QC of the split and the group single-case report.

Participant page (``sub-X_..._desc-prepost.html``, figures in ``sub-X/figures/``):
the stimulus, volumes per segment, the design matrix, the variance explained,
framewise displacement with the split marked, FC before/after and ΔFC per
metric, the FDR-thresholded seed maps and links to their interactive views.
Group page (``group/prepost_report.html``, figures in ``group/figures/``): per
case, the Crawford-Howell t of every network pair per metric with the
FDR-significant cells marked, and the table of significant connections.
"""

from __future__ import annotations

import functools
import html
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nmflow.participant.connectivity import from_upper_triangle  # noqa: E402

DPI = 80
STYLE = ("<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}</style>")
SEGMENT_COLOURS = {"pre": "tab:blue", "post": "tab:orange", "transition": "0.85", "censored": "tab:red"}


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def design_figure(path: Path, design: pd.DataFrame) -> Path:
    """The GLM design matrix ``(n_volumes, n_regressors)``, each column centred and scaled to [-1, 1]
    (the constant stays 1)."""
    values = design.to_numpy(float)
    varying = values.std(axis=0) > 0
    values[:, varying] -= values[:, varying].mean(axis=0)
    scale = np.abs(values).max(axis=0)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.16 * design.shape[1] + 1.5), 4.5))
    ax.imshow(values / np.where(scale > 0, scale, 1), aspect="auto", cmap="gray", vmin=-1, vmax=1,
              interpolation="nearest")
    ax.set_xticks(np.arange(design.shape[1]), [str(c) for c in design.columns], rotation=90, fontsize=6)
    ax.set_ylabel("volume")
    fig.tight_layout()
    return _save(fig, path)


def r_square_figure(path: Path, r_square) -> Path:
    """Axial slices (every other slice) of the variance explained by the design, 0 (black) to 1 (white)."""
    volume = np.asarray(r_square.dataobj, dtype=float)
    brain = volume > 0
    slices = [z for z in range(volume.shape[2]) if brain[:, :, z].any()][::2] or [volume.shape[2] // 2]
    columns = min(len(slices), 8)
    rows = int(np.ceil(len(slices) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns + 0.8, 1.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, z in zip(axes.ravel(), slices):
        im = ax.imshow(np.where(brain[:, :, z], volume[:, :, z], np.nan).T, origin="lower", cmap="hot", vmin=0, vmax=1)
        ax.set_title(f"slice {z}", fontsize=6)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="R²")
    return _save(fig, path)


def segments_figure(path: Path, segments: pd.DataFrame, stimulus) -> Path:
    """Framewise displacement (mm) against time (s), every volume coloured by its segment, the stimulus in red."""
    fig, ax = plt.subplots(figsize=(8, 2.6))
    time = segments["time"].to_numpy()
    step = np.median(np.diff(time)) if len(time) > 1 else 1.0
    labels = segments["segment"].to_numpy()
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    for first, last in zip(starts, np.r_[starts[1:], len(labels)]):
        ax.axvspan(time[first], time[last - 1] + step, color=SEGMENT_COLOURS[labels[first]], alpha=0.25, lw=0)
    ax.plot(time, segments["framewise_displacement"].to_numpy(), color="k", lw=0.8)
    ax.axvspan(stimulus.onset, stimulus.onset + max(stimulus.duration, step / 4), color="red", alpha=0.8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.4) for c in SEGMENT_COLOURS.values()]
    ax.legend(handles + [plt.Rectangle((0, 0), 1, 1, color="red")], [*SEGMENT_COLOURS, "stimulus"], fontsize=7,
              loc="upper right", ncol=5)
    ax.set_xlabel("time (s)"), ax.set_ylabel("FD (mm)")
    fig.tight_layout()
    return _save(fig, path)


def change_figure(path: Path, relmats: dict[str, np.ndarray], regions: list[str]) -> Path:
    """Rows: metrics; columns: FC PRE, FC POST, ΔFC (``relmats['segment|metric']``, ``(n, n)``)."""
    metrics = list(dict.fromkeys(k.split("|")[1] for k in relmats))
    fig, axes = plt.subplots(len(metrics), 3, figsize=(7.5, 2.3 * len(metrics) + 0.6), squeeze=False)
    lim = max(max(float(np.nanmax(np.abs(relmats[f"delta|{m}"]))) for m in metrics), 1e-6)
    images = {}
    for row, metric in zip(axes, metrics):
        for ax, segment in zip(row, ("pre", "post", "delta")):
            shown = relmats[f"{segment}|{metric}"].copy()
            np.fill_diagonal(shown, np.nan)
            scale = 1.0 if segment != "delta" else lim
            images[segment] = ax.imshow(shown, cmap="RdBu_r", vmin=-scale, vmax=scale)
            ax.set_title(f"{metric}: {'ΔFC (z)' if segment == 'delta' else segment.upper()}", fontsize=9)
            ax.set_xticks([]), ax.set_yticks([])
    for column, segment in enumerate(("pre", "post", "delta")):
        fig.colorbar(images[segment], ax=axes[:, column].tolist(), orientation="horizontal", fraction=0.03,
                     pad=0.02, label="ΔFC (Fisher z)" if segment == "delta" else "FC")
    fig.suptitle(f"{len(regions)} networks", fontsize=9)
    return _save(fig, path)


def seed_grid(path: Path, thresholded: np.ndarray, bold, seeds: list[str]) -> Path:
    """Per seed, the axial maximum-|z| projection of its FDR-thresholded ΔFC map over the brain outline.

    ``thresholded`` ``(n_seeds, n_voxels)``, voxels of ``bold`` (a :class:`~nmflow.prepost.glm.BoldMatrix`).
    """
    columns = 6
    rows = int(np.ceil(len(seeds) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 2.0 * rows), squeeze=False)
    brain = bold.mask.any(axis=2).T
    lim = max(float(np.abs(thresholded).max()), 3.0)
    for ax, name, values in zip(axes.ravel(), seeds, thresholded):
        volume = np.asarray(bold.image(values).dataobj)
        strongest = np.take_along_axis(volume, np.abs(volume).argmax(axis=2)[..., None], axis=2)[..., 0].T
        ax.imshow(np.where(brain, 0.0, np.nan), cmap="gray", vmin=-1, vmax=1, origin="lower")
        ax.imshow(np.where(strongest != 0, strongest, np.nan), cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
        ax.set_title(f"{name}\n{int((values > 0).sum())} up, {int((values < 0).sum())} down", fontsize=6)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle("ΔFC seed maps, FDR-thresholded z (axial maximum projection; red: stronger after the stimulus)",
                 fontsize=8)
    return _save(fig, path)


def seed_view(path: Path, image, title: str, background) -> Path:
    """An interactive view (nilearn ``view_img``) of one thresholded seed map over ``background``."""
    from nilearn.plotting import view_img

    data = np.asarray(image.dataobj)
    top = max(float(np.abs(data).max()), 1e-6)
    with warnings.catch_warnings():  # nilearn's percentiles of a masked array: the mask is not needed there
        warnings.filterwarnings("ignore", message=".*'partition' will ignore the 'mask'")
        view = view_img(image, bg_img=background, threshold=min(float(np.abs(data[data != 0]).min()), top) * 0.999,
                        title=title, cmap="RdBu_r", symmetric_cmap=True, vmax=top)
    view.save_as_html(str(path))
    return path


def template_on(grid_image):
    """nilearn's MNI152 template resampled once to ``grid_image``'s grid (the views' background)."""
    from nilearn.image import resample_to_img

    return resample_to_img(_template(), grid_image, force_resample=True, copy_header=True)


@functools.lru_cache(maxsize=1)
def _template():
    """nilearn's 2 mm MNI152 template, loaded once per process."""
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=2)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0)


def write_run_report(path: Path, key: str, stimulus, segments: pd.DataFrame, strategy: str,
                     figures: dict[str, Path], seed_grid_png: Path, seed_summary: pd.DataFrame,
                     views: list[Path], alpha: float) -> Path:
    """The participant QC page of the split (figures linked from ``sub-X/figures/``)."""
    sub = key.split("_")[0]
    counts = segments["segment"].value_counts().reindex(["pre", "transition", "post", "censored"], fill_value=0)
    volumes = pd.DataFrame({"segment": counts.index, "volumes": counts.to_numpy()})
    links = {v.name.split("_desc-seed")[1][:2]: v.name for v in views}
    seed_summary = seed_summary.assign(view=[
        f"<a href='{sub}/figures/{links[f'{k + 1:02d}']}'>interactive</a>" if f"{k + 1:02d}" in links else ""
        for k in range(len(seed_summary))])
    parts = [f"<h1>nmflow stimulus study: {html.escape(key)}</h1>",
             f"<p>Stimulus <b>{html.escape(stimulus.trial_type)}</b> at {stimulus.onset:g} s for "
             f"{stimulus.duration:g} s (from {html.escape(stimulus.source)}); GLM confounds: strategy "
             f"<b>{html.escape(strategy)}</b>.</p><h2>Volumes per segment</h2>{_table(volumes)}"]
    for title, figure in figures.items():
        parts.append(f"<h2>{html.escape(title)}</h2><img src='{sub}/figures/{figure.name}' style='max-width:100%'>")
    parts.append(f"<h2>Seed maps: voxels whose correlation with the network changed (FDR q &lt; {alpha})</h2>"
                 f"<img src='{sub}/figures/{seed_grid_png.name}' style='max-width:100%'>"
                 + seed_summary.to_html(index=False, escape=False, float_format=lambda v: f"{v:.3g}", border=0))
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(key)} pre/post</title>"
                    f"{STYLE}</head><body>{''.join(parts)}</body></html>")
    return path


def t_heatmaps(path: Path, table: pd.DataFrame, regions: list[str], title: str) -> Path:
    """Crawford-Howell t per network pair, one panel per metric; FDR-significant cells boxed.

    ``table``: the single-case rows of one case (``meas``, ``t``, ``significant`` in connection order).
    """
    metrics = list(dict.fromkeys(table["meas"]))
    columns = min(2, len(metrics))
    grid = int(np.ceil(len(metrics) / columns))
    fig, axes = plt.subplots(grid, columns, figsize=(5.2 * columns + 1.2, 4.6 * grid), squeeze=False)
    n = len(regions)
    rows, cols = np.triu_indices(n, k=1)
    lim = max(float(np.nanmax(np.abs(table["t"]))), 3.0)
    for k_ax, (ax, metric) in enumerate(zip(axes.ravel(), metrics)):
        part = table[table["meas"] == metric]
        matrix = from_upper_triangle(part["t"].to_numpy(float), n, diagonal=np.nan)
        im = ax.imshow(matrix, cmap="RdBu_r", vmin=-lim, vmax=lim)
        for k in np.flatnonzero(part["significant"].to_numpy(bool)):
            for i, j in ((rows[k], cols[k]), (cols[k], rows[k])):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="k", lw=1.8))
        ax.set_title(f"{metric}: {int(part['significant'].sum())} significant", fontsize=9)
        ticks = np.arange(n)
        ax.set_xticks(ticks, [str(k + 1) for k in ticks], fontsize=6)
        ax.set_yticks(ticks, [f"{r[:22]} {k + 1}" for k, r in enumerate(regions)] if k_ax % columns == 0
                      else [str(k + 1) for k in ticks], fontsize=6)
    for ax in axes.ravel()[len(metrics):]:
        ax.set_axis_off()
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="Crawford-Howell t (ΔFC, case vs controls)")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def write_group_report(folder: Path, tables: dict[str, pd.DataFrame], regions: list[str], cases: list[str],
                       n_controls: int, alpha: float) -> Path:
    """``folder/prepost_report.html`` and ``folder/figures/prepost_<case>_t.png``; ``tables`` per metric."""
    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    everything = pd.concat([t.assign(meas=m) for m, t in tables.items()], ignore_index=True)
    parts = [f"<h1>nmflow stimulus study: single cases vs {n_controls} controls</h1>",
             "<p>Each case's change of connectivity after the stimulus (ΔFC = Fisher z POST − z PRE) is compared "
             f"with the controls' ΔFC, connection by connection, by the Crawford–Howell test (df = {n_controls - 1});"
             f" Benjamini–Hochberg FDR over a case's connections, per metric; cells boxed: q &lt; {alpha}.</p>"]
    columns = ["meas", "connection", "case_delta", "controls_mean", "controls_sd", "t", "p", "q",
               "percent_more_extreme", "z_cc", "z_cc_low", "z_cc_high"]
    for case in cases:
        rows = everything[everything["participant_id"] == case]
        png = t_heatmaps(figures / f"prepost_{case}_t.png", rows, regions,
                         f"{case} ({rows['group'].iloc[0]}) vs controls")
        significant = rows[rows["significant"]].sort_values(["meas", "p"])
        parts.append(f"<h2>{html.escape(case)}</h2><img src='figures/{png.name}' style='max-width:100%'>"
                     f"<h3>Significant connections ({len(significant)})</h3>"
                     + (_table(significant[columns]) if len(significant) else "<p>None at this FDR level.</p>"))
    out = folder / "prepost_report.html"
    out.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>nmflow pre/post single cases</title>"
                   f"{STYLE}</head><body>{''.join(parts)}</body></html>")
    return out
