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
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nmflow.participant.connectivity import from_upper_triangle  # noqa: E402
from nmflow.reports.html import (  # noqa: E402
    Section, about_section, esc, figure, methods_sections, paragraph, render_page, table,
)
from nmflow.reports.words import pair_label, region_label  # noqa: E402

DPI = 80
SOFTWARE = ("Nipype", "nilearn", "NumPy", "SciPy")  # the About section's versions
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
    fig, ax = plt.subplots(figsize=(max(4.0, 0.2 * design.shape[1] + 1.5), 5.0))  # 16 px a column at DPI
    ax.imshow(values / np.where(scale > 0, scale, 1), aspect="auto", cmap="gray", vmin=-1, vmax=1,
              interpolation="nearest")
    ax.set_xticks(np.arange(design.shape[1]), [str(c) for c in design.columns], rotation=90, fontsize=8)
    ax.set_ylabel("volume")
    fig.tight_layout()
    return _save(fig, path)


def r_square_range(values: np.ndarray) -> tuple[float, float]:
    """The colour scale of an R² map: the 1st to the 99th percentile of the brain's values ``(n_voxels,)``.

    Fitted to the data because R² sits in a narrow band whose place depends on the data: mostly small in
    resting data (a 0-1 scale shows nothing), near 1 where the confounds explain most of the signal (a 0-1
    scale shows one colour).  A band narrower than 0.001 is widened to 0.001 (one colour means one value).
    """
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, [1, 99]))
    if high - low < 1e-3:
        low = max((low + high) / 2 - 5e-4, 0.0)
        high = low + 1e-3
    return low, high


def r_square_figure(path: Path, r_square) -> Path:
    """Axial slices (every other slice) of the variance explained by the design, on black, coloured from the
    1st to the 99th percentile of R² in the brain (:func:`r_square_range`, written on the colour bar)."""
    volume = np.asarray(r_square.dataobj, dtype=float)
    brain = volume > 0
    low, high = r_square_range(volume[brain])
    slices = [z for z in range(volume.shape[2]) if brain[:, :, z].any()][::2] or [volume.shape[2] // 2]
    columns = min(len(slices), 8)
    rows = int(np.ceil(len(slices) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.7 * columns + 1.4, 1.9 * rows + 0.2), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, z in zip(axes.ravel(), slices):
        ax.imshow(np.zeros(volume[:, :, z].T.shape), origin="lower", cmap="gray", vmin=0, vmax=1)
        im = ax.imshow(np.where(brain[:, :, z], volume[:, :, z], np.nan).T, origin="lower", cmap="viridis",
                       vmin=low, vmax=high)
        ax.set_title(f"slice {z}", fontsize=8)
    bar = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9, extend="both")
    bar.set_label(f"R², {low:.3g} to {high:.3g}\n(1st to 99th percentile in the brain)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
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
    fig, axes = plt.subplots(len(metrics), 3, figsize=(8.5, 2.5 * len(metrics) + 0.6), squeeze=False)
    fig.subplots_adjust(left=0.2, right=0.98)  # room for the network names
    lim = max(max(float(np.nanmax(np.abs(relmats[f"delta|{m}"]))) for m in metrics), 1e-6)
    images = {}
    for row, metric in zip(axes, metrics):
        for ax, segment in zip(row, ("pre", "post", "delta")):
            shown = relmats[f"{segment}|{metric}"].copy()
            np.fill_diagonal(shown, np.nan)
            scale = 1.0 if segment != "delta" else lim
            images[segment] = ax.imshow(shown, cmap="RdBu_r", vmin=-scale, vmax=scale)
            ax.set_title(f"{metric}: {'ΔFC (z)' if segment == 'delta' else segment.upper()}", fontsize=9)
            ax.set_xticks([])  # columns in the order of the rows, named on the first panel of each row
            ax.set_yticks(range(len(regions)) if segment == "pre" else [],
                          [region_label(r) for r in regions] if segment == "pre" else [], fontsize=6)
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
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.1 * rows), squeeze=False)
    brain = bold.mask.any(axis=2).T
    lim = max(float(np.abs(thresholded).max()), 3.0)
    for ax, name, values in zip(axes.ravel(), seeds, thresholded):
        volume = np.asarray(bold.image(values).dataobj)
        strongest = np.take_along_axis(volume, np.abs(volume).argmax(axis=2)[..., None], axis=2)[..., 0].T
        ax.imshow(np.where(brain, 0.0, np.nan), cmap="gray", vmin=-1, vmax=1, origin="lower")
        ax.imshow(np.where(strongest != 0, strongest, np.nan), cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
        ax.set_title(f"{region_label(name)}\n{int((values > 0).sum())} up, {int((values < 0).sum())} down",
                     fontsize=6)
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


def seed_figures(folder: Path, run_key: str, atlas, thresholded: np.ndarray, bold,
                 alpha: float) -> list[tuple[Path, dict]]:
    """The figures of a run's seed maps, each with its BIDS entities: the grid of every seed (:func:`seed_grid`),
    then an interactive view (:func:`seed_view`) of each seed with a voxel at q < ``alpha``.

    ``thresholded`` ``(n_seeds, n_voxels)`` over the voxels of ``bold`` (a
    :class:`~nmflow.prepost.glm.BoldMatrix`); ``atlas`` an
    :class:`~nmflow.participant.atlas.Atlas` whose networks are the seeds.
    """
    stem = f"{run_key}_{'_'.join(f'{k}-{v}' for k, v in atlas.entities.items())}"
    def entities(desc: str) -> dict:
        return {"datatype": "figures", "suffix": "statmap", "desc": desc, "stat": "z", **atlas.entities}

    figures = [(seed_grid(folder / f"{stem}_desc-deltafdr_stat-z_statmap.png", thresholded, bold, atlas.names),
                entities("deltafdr"))]
    changed = np.flatnonzero((thresholded != 0).any(axis=1))
    background = template_on(bold.image(thresholded[0])) if changed.size else None
    for k in changed:
        name = f"seed{k + 1:02d}"
        figures.append((seed_view(folder / f"{stem}_desc-{name}_stat-z_statmap.html", bold.image(thresholded[k]),
                                  f"{atlas.names[k]}: ΔFC z, q < {alpha}", background), entities(name)))
    return figures


def run_report(folder: Path, run_key: str, stimulus, design: Path, segments: Path, r_square: Path, relmats: Path,
               atlas, seed_figures: list[Path], seed_summary: Path, strategy: str, alpha: float,
               methods: str = "") -> tuple[list[tuple[Path, dict]], Path]:
    """The QC figures of a run's split, each with its BIDS entities, and its page (:func:`write_run_report`).

    Reads the design and segment tables (TSV), the variance explained (NIfTI), the FC NPZ
    (:func:`~nmflow.prepost.participant.segment_connectivity`) and the seed summary; ``seed_figures``
    are the seed grid PNG then the interactive views.
    """
    import nibabel as nib

    from nmflow.fileio import load_npz

    table = pd.read_csv(segments, sep="\t", na_values="n/a")
    atlas_part = "_".join(f"{k}-{v}" for k, v in atlas.entities.items())
    figures = {
        "design": (design_figure(folder / f"{run_key}_desc-glm_design.png", pd.read_csv(design, sep="\t")),
                   {"suffix": "design", "desc": "glm"}),
        "r_square": (r_square_figure(folder / f"{run_key}_stat-rsquare_statmap.png", nib.load(r_square)),
                     {"suffix": "statmap", "stat": "rsquare"}),
        "segments": (segments_figure(folder / f"{run_key}_desc-prepost_segments.png", table, stimulus),
                     {"suffix": "segments", "desc": "prepost"}),
        "change": (change_figure(folder / f"{run_key}_{atlas_part}_desc-delta_relmat.png", load_npz(relmats)[0],
                                 atlas.names),
                   {"suffix": "relmat", "desc": "delta", **atlas.entities}),
    }
    page = write_run_report(folder / f"{run_key}_desc-prepost.html", run_key, stimulus, table, strategy,
                            {t: p for t, (p, _) in figures.items()}, Path(seed_figures[0]),
                            pd.read_csv(seed_summary, sep="\t"), [Path(v) for v in seed_figures[1:]], alpha, methods)
    return [(p, {"datatype": "figures", **e}) for p, e in figures.values()], page


def write_run_report(path: Path, key: str, stimulus, segments: pd.DataFrame, strategy: str,
                     figures: dict[str, Path], seed_grid_png: Path, seed_summary: pd.DataFrame,
                     views: list[Path], alpha: float, methods: str = "") -> Path:
    """The participant QC page of the split (figures linked from ``sub-X/figures/``); ``methods`` is the run's
    methods text (Markdown, with its references)."""
    sub = key.split("_")[0]
    counts = segments["segment"].value_counts().reindex(["pre", "transition", "post", "censored"], fill_value=0)
    volumes = pd.DataFrame({"segment": counts.index, "volumes": counts.to_numpy()})
    links = {int(v.name.split("_desc-seed")[1][:2]): f"{sub}/figures/{v.name}" for v in views}
    changed = seed_summary[(seed_summary.voxels_up + seed_summary.voxels_down) > 0]
    view_links = "".join(f'<li><a href="{esc(links[k + 1])}">{esc(region_label(seed_summary.seed[k]))}</a>: '
                         f"{seed_summary.voxels_up[k]} voxels up, {seed_summary.voxels_down[k]} down</li>"
                         for k in changed.index if k + 1 in links)
    source = "the run's events file" if stimulus.source.endswith(".tsv") else stimulus.source
    sections = [
        Section("stimulus", "Stimulus and split").add(
            paragraph(f"{stimulus.trial_type} at {stimulus.onset:g} s for {stimulus.duration:g} s (from {source}: "
                      f"{stimulus.source}); GLM confounds: strategy {strategy}."),
            table(volumes), figure(f"{sub}/figures/{figures['segments'].name}",
                                   "Framewise displacement (mm); PRE, transition, POST and censored volumes shaded, "
                                   "the stimulus in red")),
        Section("glm", "GLM").add(
            figure(f"{sub}/figures/{figures['design'].name}", "Design matrix: stimulus (Glover HRF), confounds, "
                                                               "cosine drift, constant; each column centred and scaled"),
            figure(f"{sub}/figures/{figures['r_square'].name}", "Variance explained by the design (R²), axial "
                   "slices; the colours span the 1st to the 99th percentile of the brain's R² (written on the bar)")),
        Section("fc", "FC change").add(
            figure(f"{sub}/figures/{figures['change'].name}",
                   "Network FC of PRE and POST and ΔFC = Fisher z(POST) − z(PRE), per metric")),
        Section("seeds", "Seed maps").add(
            paragraph(f"Voxels whose correlation with a network changed after the stimulus (Fisher z test with "
                      f"Bartlett's effective samples, Benjamini–Hochberg q < {alpha} over each seed's voxels)."),
            figure(f"{sub}/figures/{seed_grid_png.name}", "FDR-thresholded ΔFC z per seed, axial maximum projection"),
            table(seed_summary.assign(seed=seed_summary.seed.map(region_label)).rename(columns=SEED_COLUMNS),
                  digits=3),
            f"<h3>Interactive views</h3><ul>{view_links}</ul>" if view_links else
            paragraph(f"No voxel passes q < {alpha}: no interactive view.", "none")),
        *methods_sections(methods, "logs/CITATION.md"), about_section(SOFTWARE),
    ]
    return render_page(path, key, sections, lead=[f"nmflow stimulus study · {key}"])


SEED_COLUMNS = {"seed": "Seed network", "voxels_up": "Voxels up", "voxels_down": "Voxels down",
                "max_abs_z": "Largest |z|"}
# the single-case table's columns (nmflow.prepost.singlecase.SINGLECASE_COLUMNS) as the report names them
SINGLE_CASE_COLUMNS = {"meas": "Metric", "connection": "Connection", "case_delta": "Case ΔFC",
                       "controls_mean": "Controls' mean ΔFC", "controls_sd": "Controls' SD", "t": "t", "p": "p",
                       "q": "q (FDR)", "percent_more_extreme": "Controls more extreme (%)", "z_cc": "Z-CC",
                       "z_cc_low": "Z-CC 95 % low", "z_cc_high": "Z-CC 95 % high"}


def significant_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The single-case ``rows`` as the report shows them: :data:`SINGLE_CASE_COLUMNS` named in words, each
    connection as its two networks (``Somatomotor A – Somatomotor B``)."""
    shown = rows[list(SINGLE_CASE_COLUMNS)].assign(connection=rows["connection"].map(pair_label))
    return shown.rename(columns=SINGLE_CASE_COLUMNS)


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
    lim = max(float(np.nanquantile(np.abs(table["t"]), 0.98)), 3.0)  # a few extreme cells saturate
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
        ax.set_yticks(ticks, [f"{region_label(r)} {k + 1}" for k, r in enumerate(regions)] if k_ax % columns == 0
                      else [str(k + 1) for k in ticks], fontsize=6)
    for ax in axes.ravel()[len(metrics):]:
        ax.set_axis_off()
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, extend="both",
                 label="Crawford-Howell t (ΔFC, case vs controls)")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def group_report(folder: Path, singlecase: dict[str, str], regions: list[str], cases: list[str], n_controls: int,
                 alpha: float, methods: str = "") -> Path:
    """The group page (:func:`write_group_report`) from the single-case tables ``{meas: TSV}``, the metrics in the
    order of :data:`~nmflow.prepost.change.PREPOST_METRICS`; ``cases`` without ``sub-``; ``methods`` the call's
    methods text (Markdown, with its references)."""
    from nmflow.prepost.change import PREPOST_METRICS

    order = [m for m in PREPOST_METRICS if m in singlecase] + sorted(set(singlecase) - set(PREPOST_METRICS))
    tables = {m: pd.read_csv(singlecase[m], sep="\t", na_values="n/a") for m in order}
    return write_group_report(folder, tables, regions, [f"sub-{c}" for c in cases], n_controls, alpha, methods)


def write_group_report(folder: Path, tables: dict[str, pd.DataFrame], regions: list[str], cases: list[str],
                       n_controls: int, alpha: float, methods: str = "") -> Path:
    """``folder/prepost_report.html`` and ``folder/figures/prepost_<case>_t.png``; ``tables`` per metric,
    ``methods`` the call's methods text (Markdown, with its references)."""
    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    everything = pd.concat([t.assign(meas=m) for m, t in tables.items()], ignore_index=True)
    sections = [Section("method", "How cases are tested").add(paragraph(
        "Each case's change of connectivity after the stimulus (ΔFC = Fisher z POST − z PRE) is compared with the "
        f"{n_controls} controls' ΔFC, connection by connection, by the Crawford–Howell test (df = {n_controls - 1}); "
        f"Benjamini–Hochberg FDR over a case's connections, per metric; boxed cells: q < {alpha}. Z-CC is the "
        "case's standardised score with its 95 % interval; “controls more extreme” the estimated share of the "
        "control population beyond the case (Crawford & Garthwaite 2002)."))]
    for case in cases:
        rows = everything[everything["participant_id"] == case]
        png = t_heatmaps(figures / f"prepost_{case}_t.png", rows, regions,
                         f"{case} ({rows['group'].iloc[0]}) vs controls")
        significant = rows[rows["significant"]].sort_values(["meas", "p"])
        sections.append(Section(case.replace("-", ""), case).add(
            figure(f"figures/{png.name}", "Crawford–Howell t of the case's ΔFC per network pair and metric"),
            f"<h3>Significant connections ({len(significant)})</h3>",
            table(significant_table(significant), empty=f"None at q < {alpha}.")))
    sections += [*methods_sections(methods, "CITATION.md"), about_section(SOFTWARE)]
    return render_page(folder / "prepost_report.html", "nmflow stimulus study: single cases", sections,
                       lead=[f"{len(cases)} case(s) vs {n_controls} controls"])
