"""Figures of the group report and the patient pages (matplotlib and nilearn, PNG unless interactive)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import PathPatch  # noqa: E402
from matplotlib.path import Path as CurvePath  # noqa: E402

from nmflow.normative.harmonize import site_accuracy  # noqa: E402
from nmflow.networks import MAX_REGIONS_SHOWN, OTHER, YEO7_SYSTEMS, Assignment, pair_means  # noqa: E402
from nmflow.participant.connectivity import from_upper_triangle  # noqa: E402
from nmflow.reports.words import region_label  # noqa: E402

DPI = 90
NETWORK_CELL = 0.55  # inches per cell of a network-pair matrix (a few cells: larger than a region's)


def network_colours(names: list[str]) -> dict[str, str]:
    """A colour (hex) per network: Yeo-7 systems always the same (Set2), other names from tab10 in order
    (tab20 past 10), ``Other`` grey."""
    yeo = {s: matplotlib.colors.to_hex(plt.get_cmap("Set2")(k)) for k, s in enumerate(YEO7_SYSTEMS)}
    rest = [n for n in names if n not in yeo and n != OTHER]
    palette = plt.get_cmap("tab10" if len(rest) <= 10 else "tab20")
    colours = {n: yeo[n] for n in names if n in yeo}
    colours.update({n: matplotlib.colors.to_hex(palette(k % palette.N)) for k, n in enumerate(rest)})
    if OTHER in names:
        colours[OTHER] = "#b3b3b3"
    return colours


def group_colours(groups: list[str]) -> dict[str, str]:
    """A colour (hex) per group, in order (matplotlib's tab10)."""
    return {g: matplotlib.colors.to_hex(plt.get_cmap("tab10")(k % 10)) for k, g in enumerate(groups)}


def _save(fig, path: Path, **kwargs) -> Path:
    fig.savefig(path, dpi=DPI, **kwargs)
    plt.close(fig)
    return Path(path)


def network_matrix(values: np.ndarray, connection: np.ndarray, regions: list[str],
                   networks: Assignment) -> tuple[np.ndarray, list[str]]:
    """Values of the scored connections as a labelled matrix.

    Parameters
    ----------
    values : ndarray, shape (n_scored,) or (n_sets, n_scored)
    connection : ndarray of int, shape (n_scored,)
        Index of each value in the regions' upper triangle.
    regions : list of str, length n_regions
    networks : Assignment
        The network of each region.

    Returns
    -------
    matrix : ndarray, shape (n, n) or (n_sets, n, n)
        Up to :data:`~nmflow.networks.MAX_REGIONS_SHOWN` regions the region x
        region matrix (NaN diagonal); past it the mean per network pair
        (diagonal: within a network).
    labels : list of str
        Tick labels (region or network names).
    """
    n = len(regions)
    if n > MAX_REGIONS_SHOWN:
        return pair_means(values, connection, networks.codes, n), networks.order
    full = np.full(np.shape(values)[:-1] + (n * (n - 1) // 2,), np.nan)
    full[..., connection] = values
    matrices = np.array([from_upper_triangle(f, n, diagonal=np.nan) for f in np.atleast_2d(full)])
    return (matrices if np.ndim(values) == 2 else matrices[0]), [region_label(r) for r in regions]


def matrix_figures(paths: list[Path], matrices: list[np.ndarray], labels: list[str], titles: list[str],
                   limit: float, colorbar_label: str, cell: float = 0.3) -> list[Path]:
    """Draw every ``(n, n)`` matrix with :func:`nilearn.plotting.plot_matrix`, one PNG each.

    The figure (labels, colour bar) is drawn once; each file re-renders only
    the matrix and its title on a copy of it (matplotlib blitting), so a page
    per patient stays cheap.  ``limit``: the colour scale runs from
    ``-limit`` (blue) to ``limit`` (red) in every file; ``cell`` is the side
    of a cell in inches (for at least 8 cells).
    """
    from nilearn import plotting
    from PIL import Image

    side = cell * max(len(labels), 8)  # inches; the canvas leaves room for any label, the files are cropped
    fig = plt.figure(figsize=(side + 6, side + 5), dpi=DPI)
    ax = fig.add_axes((3.5 / (side + 6), 3.5 / (side + 5), (side + 1.2) / (side + 6), side / (side + 5)))
    image = plotting.plot_matrix(matrices[0], labels=labels or None, axes=ax, vmin=-limit, vmax=limit,
                                 cmap="RdBu_r", reorder=False, title=titles[0], auto_fit=False)
    ax.tick_params(labelsize=8)
    ax.title.set_fontsize(11)
    fig.axes[-1].set_ylabel(colorbar_label)
    fig.canvas.draw()
    x0, y0, x1, y1 = fig.get_tightbbox().padded(0.1).transformed(fig.dpi_scale_trans).extents
    height = int(fig.bbox.height)
    crop = (slice(max(0, int(height - y1)), int(height - y0)), slice(max(0, int(x0)), int(x1)))
    image.set_visible(False), ax.title.set_text("")  # (an invisible title would be moved away)
    fig.canvas.draw()
    background = fig.canvas.copy_from_bbox(fig.bbox)
    image.set_visible(True)
    for path, matrix, title in zip(paths, matrices, titles):
        fig.canvas.restore_region(background)
        image.set_data(matrix)
        ax.title.set_text(title)
        for artist in (image, ax.title, *ax.spines.values()):
            ax.draw_artist(artist)
        Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[crop]).save(path)
    plt.close(fig)
    return [Path(p) for p in paths]


def fd_figure(path: Path, fd: np.ndarray, groups: np.ndarray, order: list[str]) -> Path:
    """Mean FD ``(n_subjects,)`` per group: a box and every subject as a dot."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(order), 3.2))
    rng = np.random.default_rng(0)
    data = [fd[(groups == g) & np.isfinite(fd)] for g in order]
    ax.boxplot(data, showfliers=False, widths=0.5)
    for k, values in enumerate(data, start=1):
        ax.scatter(k + rng.uniform(-0.15, 0.15, values.size), values, s=10, alpha=0.6, color="#24323f")
    ax.set_xticks(range(1, len(order) + 1), [f"{g}\n(n={len(v)})" for g, v in zip(order, data)], fontsize=8)
    ax.set_ylabel("mean framewise displacement (mm)", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def qcfc_figure(path: Path, correlations: dict[str, np.ndarray]) -> Path:
    """Distribution of the QC-FC correlations ``(n_features,)`` of each named set of features."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    bins = np.linspace(-1, 1, 41)
    for name, r in correlations.items():
        ax.hist(r[np.isfinite(r)], bins=bins, histtype="step", lw=1.8, label=name)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("correlation of mean FD with a connection's FC, across subjects", fontsize=8)
    ax.set_ylabel("connections", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def spread_labels(y: np.ndarray, gap: float, limit: float) -> np.ndarray:
    """Label heights near ``y`` (sorted top to bottom) at least ``gap`` apart and within ``±limit``."""
    out = np.minimum(np.asarray(y, float), limit)
    for k in range(1, out.size):
        out[k] = min(out[k], out[k - 1] - gap)
    if out.size and out[-1] < -limit:
        out[-1] = -limit
        for k in range(out.size - 2, -1, -1):
            out[k] = max(out[k], out[k + 1] + gap)
    return out


def circle_figure(path: Path, edges: list[tuple[int, int, str, float]], regions: list[str],
                  legend: dict[str, str], networks: Assignment) -> Path:
    """:func:`draw_circle` saved as a PNG."""
    return _save(draw_circle(edges, regions, legend, networks), path, bbox_inches="tight")


def draw_circle(edges: list[tuple[int, int, str, float]], regions: list[str], legend: dict[str, str],
                networks: Assignment):
    """Connections on a circle of regions grouped and coloured by network, labels in two columns that never
    overlap.

    ``edges`` are ``(region_i, region_j, colour, line width)``; ``legend``
    maps a name to its edge colour.  Past
    :data:`~nmflow.networks.MAX_REGIONS_SHOWN` regions only the regions of an
    edge are labelled; the figure grows with the number of labels so they
    stay at 6 points or more.  Returns the figure.
    """
    n = len(regions)
    place = np.empty(n, int)
    place[np.argsort(networks.codes, kind="stable")] = np.arange(n)  # each network an arc
    angle = np.pi / 2 - 2 * np.pi * place / n
    xy = np.column_stack([np.cos(angle), np.sin(angle)])
    shown = sorted({k for e in edges for k in e[:2]}) if n > MAX_REGIONS_SHOWN else list(range(n))
    per_side = max(sum(xy[k, 0] >= 0 for k in shown), sum(xy[k, 0] < 0 for k in shown))
    fig = plt.figure(figsize=(8.4, 6))
    ax = fig.add_axes((0, 0.08, 1, 0.92))
    ax.set_xlim(-2.4, 2.4), ax.set_ylim(-1.4, 1.4), ax.set_aspect("equal"), ax.set_axis_off()

    def unit() -> float:  # points per data unit
        ax.apply_aspect()
        return np.diff(ax.transData.transform([(0, 0), (0, 1)])[:, 1])[0] * 72 / fig.dpi

    # labels fill 2.6 units of height at 1.3 line heights each: grow the figure to keep them at 6 points or more
    fig.set_size_inches(fig.get_size_inches() * max(1.0, 6 * 1.3 * per_side / (2.6 * unit())))
    points_per_unit = unit()
    for i, j, colour, width in edges:
        curve = CurvePath([xy[i], 0.25 * (xy[i] + xy[j]), xy[j]], [CurvePath.MOVETO, CurvePath.CURVE3, CurvePath.CURVE3])
        ax.add_patch(PathPatch(curve, fill=False, edgecolor=colour, lw=width, alpha=0.8))
    colours = network_colours(networks.order)
    ax.scatter(*xy.T, c=[colours[s] for s in networks.networks], s=max(6, 60 - n // 3), zorder=3,
               edgecolors="k", linewidths=0.5 if n <= 120 else 0.2)
    for side in (1, -1):
        ks = sorted((k for k in shown if (xy[k, 0] >= 0) == (side > 0)), key=lambda k: -xy[k, 1])
        if not ks:
            continue
        fontsize = min(8.0, 2.6 * points_per_unit / (1.3 * len(ks)))
        heights = spread_labels(xy[ks, 1], 1.3 * fontsize / points_per_unit, 1.3)
        for k, y in zip(ks, heights):
            ax.plot([xy[k, 0] * 1.03, side * 1.12], [xy[k, 1] * 1.03, y], color="#999", lw=0.5)
            ax.text(side * 1.15, y, region_label(regions[k]), fontsize=fontsize, va="center",
                    ha="left" if side > 0 else "right")
    handles = [plt.Line2D([], [], color=c, lw=2, label=name) for name, c in legend.items()]
    handles += [plt.Line2D([], [], marker="o", ls="", color=colours[s], markeredgecolor="k", label=s)
                for s in networks.order]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
    return fig


def connectome_view(path: Path, weights: np.ndarray, centres: np.ndarray, networks: Assignment, title: str) -> Path:
    """Interactive 3-D view (:func:`nilearn.plotting.view_connectome`) of the non-zero ``(n, n)`` ``weights``
    between region centres ``(n, 3)`` (mm), nodes coloured by network; written as a standalone HTML."""
    from nilearn import plotting

    palette = network_colours(networks.order)
    view = plotting.view_connectome(weights, centres, edge_cmap="RdBu_r", symmetric_cmap=True, linewidth=5,
                                    node_color=[palette[s] for s in networks.networks], node_size=6, colorbar=True,
                                    title=title)
    view.save_as_html(path)
    return Path(path)


def count_figure(path: Path, counts: np.ndarray, totals: np.ndarray, labels: list[str], title: str) -> Path:
    """Flagged connections per network pair ``(k, k)``: colour the share of the pair's ``totals``, each cell
    written as its count."""
    k = len(labels)
    share = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    side = 1.4 + 0.45 * k
    fig, ax = plt.subplots(figsize=(side + 1.6, side))
    image = ax.imshow(100 * share, cmap="Reds", vmin=0, vmax=max(1.0, float(np.nanmax(100 * share, initial=0))))
    for i in range(k):
        for j in range(k):
            if totals[i, j]:
                dark = share[i, j] > 0.6 * np.nanmax(share)
                ax.text(j, i, f"{counts[i, j]}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "#222" if counts[i, j] else "#bbb")
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label("flagged (% of the pair's connections)", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def curves_figure(path: Path, train_loss: np.ndarray, val_loss: np.ndarray, best_epoch: int) -> Path:
    """Training and validation loss per epoch ``(n_epochs,)``."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(train_loss, label="training")
    ax.plot(val_loss, label="validation")
    ax.axvline(best_epoch, color="k", ls=":", label="kept")
    ax.set_xlabel("epoch"), ax.set_ylabel("mean squared error"), ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def combat_figure(path: Path, before: np.ndarray, after: np.ndarray, sites: np.ndarray,
                  train: np.ndarray) -> Path:
    """PCA (first 2 components of ``before``) of controls ``(n, n_features)``, coloured by site,
    before and after ComBat; titles give the site accuracy of held-out controls (fit on ``train``)."""
    from sklearn.utils.extmath import randomized_svd

    centre = before.mean(axis=0)
    # the first 2 components only: a seeded randomized SVD (a full SVD of 79,800 connections took 22 s)
    _, _, vt = randomized_svd(before - centre, n_components=2, n_iter=2, random_state=0)
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2), sharex=True, sharey=True)
    for ax, data, title in ((axes[0], before, "before"), (axes[1], after, "after ComBat")):
        pc = (data - centre) @ vt[:2].T
        acc, chance = site_accuracy(data, sites, train)
        for site in sorted(set(sites)):
            ax.scatter(*pc[sites == site].T, s=12, label=site)
        ax.set_title(f"{title}: site accuracy {acc:.2f} (chance {chance:.2f})", fontsize=8)
        ax.set_xlabel("PC1")
    axes[0].set_ylabel("PC2")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
