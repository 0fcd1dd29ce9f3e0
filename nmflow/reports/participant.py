"""The participant report: one HTML page per BOLD run, in the spirit of fMRIPrep's and XCP-D's.

Sections: Summary, Quality control (per strategy: FD, censoring, tSNR,
DVARS and FD-DVARS correlation before/after cleaning, volumes dropped as
non-steady-state and as high motion, region coverage),
Carpets (raw vs cleaned for every strategy, FD with its threshold and the
censored volumes marked, DVARS and global signal), Confounds (the design
regressed by every strategy), Functional connectivity (every atlas, metric and
strategy: labelled matrices drawn in the browser on one centred colour scale
per metric), Connectome (per strategy), Methods (the boilerplate with references), Errors
(strategies skipped, regions lost), About (versions, command line, date).

The QC numbers are plain functions (:func:`dvars`, :func:`qc_table`);
figures are small PNGs drawn with matplotlib (the FC matrices are data drawn by
a short script in the page: no figure per atlas x metric), imported by the first
figure: a page without figures (``--reports light``) never loads it.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.participant.atlas import Atlas, region_centres
from nmflow.reports.html import (
    Section, about_section, esc, figure, methods_sections, paragraph, render_page, table, tabs,
)

DPI = 100  # the figures are shown at their size: 100 dpi keeps 8-point labels readable (11 px)


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), imported by the first figure drawn (~0.3 s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw(job: tuple[Callable[..., Path], tuple]) -> Path:
    function, args = job
    return function(*args)


def draw_figures(jobs: Sequence[tuple[Callable[..., Path], tuple]], n_procs: int = 1) -> list[Path]:
    """Draw figures, ``function(*args)`` for each job, and return their paths in the order of ``jobs``.

    matplotlib draws in the thread that calls it, holding the GIL: figures are drawn side by side only in
    processes.  With ``n_procs > 1`` (the node's share of the cores) up to that many processes forked from
    this one, which already imported pyplot, draw the jobs; the files are the same bytes as drawn here.
    Where processes cannot be started (no ``fork``; a container without ``/dev/shm`` for the pool's
    locks) the figures are drawn here, one after the other.
    """
    if n_procs <= 1 or len(jobs) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [_draw(job) for job in jobs]
    _pyplot()
    try:
        pool = ProcessPoolExecutor(min(n_procs, len(jobs)), mp_context=multiprocessing.get_context("fork"))
    except OSError:
        return [_draw(job) for job in jobs]
    with pool:
        return list(pool.map(_draw, jobs))


def _zscore_rows(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=1, keepdims=True)
    return (x - x.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1)


def dvars(carpet: np.ndarray, volumes: np.ndarray | None = None) -> np.ndarray:
    """DVARS of a voxel sample, each voxel z-scored first (so raw and cleaned data are comparable).

    Parameters
    ----------
    carpet : ndarray, shape (n_voxels, n_times)
        Voxel time series.
    volumes : ndarray of int, shape (n_times,), optional
        Volume index of each column (the kept volumes of a censored series); a difference is
        only taken between consecutive volumes.

    Returns
    -------
    ndarray, shape (n_times,)
        Root mean square over voxels of the change from the previous volume (z units); NaN for the
        first column and where the previous volume is not the one before.
    """
    z = _zscore_rows(np.asarray(carpet, float))
    out = np.full(z.shape[1], np.nan)
    out[1:] = np.sqrt(np.mean(np.diff(z, axis=1) ** 2, axis=0))
    if volumes is not None:
        out[1:][np.diff(volumes) != 1] = np.nan
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def qc_table(outliers: dict[str, pd.DataFrame], raw_carpet: np.ndarray, cleaned_carpets: dict[str, np.ndarray],
             kept: dict[str, np.ndarray], tsnr: float, coverage: dict[str, np.ndarray],
             min_coverage: float) -> pd.DataFrame:
    """QC numbers, one row per strategy that ran.

    Volumes dropped are fMRIPrep's non-steady-state volumes (every strategy) and, for a strategy that
    scrubs, the high-motion volumes (``censored`` of the outlier table is either); each is counted apart.
    FD (mm) is fMRIPrep's framewise displacement; DVARS (z units) as :func:`dvars` on the report's
    voxel sample, mean over volumes, before (raw) and after cleaning (kept volumes only); the FD-DVARS
    correlation is Pearson's r over the same volumes (near 0 after a cleaning that removes motion).
    """
    raw_dvars = dvars(raw_carpet)
    rows = []
    for strategy, table_ in outliers.items():
        fd = table_["framewise_displacement"].to_numpy(float)
        k = kept[strategy]
        after = dvars(cleaned_carpets[strategy], k)
        dropped = table_["censored"].to_numpy(bool)
        steady = table_["non_steady_state"].to_numpy(bool)
        rows.append({
            "strategy": strategy, "mean FD (mm)": float(np.nanmean(fd)), "max FD (mm)": float(np.nanmax(fd)),
            "volumes kept": int(k.size), "non-steady-state dropped": int(steady.sum()),
            "high motion censored": int((dropped & ~steady).sum()), "% dropped": 100 * float(dropped.mean()),
            "median tSNR": tsnr, "DVARS before": float(np.nanmean(raw_dvars)), "DVARS after": float(np.nanmean(after)),
            "FD-DVARS r before": _corr(fd, raw_dvars), "FD-DVARS r after": _corr(fd[k], after),
            **{f"regions < {min_coverage:.0%} coverage ({a})": int((c < min_coverage).sum())
               for a, c in coverage.items()},
        })
    return pd.DataFrame(rows)


def carpet_figure(path: Path, raw: np.ndarray, cleaned: np.ndarray, labels: np.ndarray, fd: np.ndarray,
                  kept: np.ndarray, fd_threshold: float, strategy: str) -> Path:
    """FD, DVARS and global signal traces over raw and cleaned carpets of one strategy.

    ``raw`` is ``(n_voxels, n_volumes)``, ``cleaned`` ``(n_voxels, n_kept)`` for the volumes ``kept``;
    voxels are sorted by region (``labels``); censored volumes are marked in red on the FD trace and
    left blank in the cleaned carpet.
    """
    plt = _pyplot()
    order = np.argsort(labels, kind="stable")
    n = raw.shape[1]
    censored = np.setdiff1d(np.arange(n), kept)
    fig, axes = plt.subplots(5, 1, figsize=(9, 6.6), sharex=True,
                             gridspec_kw={"height_ratios": [1, 1, 1, 3, 3]})
    fig.subplots_adjust(left=0.12, right=0.98, top=0.95, bottom=0.07, hspace=0.12)
    ax = axes[0]
    ax.plot(np.nan_to_num(fd), color="k", lw=0.8)
    ax.axhline(fd_threshold, color="tab:orange", lw=0.8, ls="--")
    if censored.size:
        ax.plot(censored, np.full(censored.size, ax.get_ylim()[1] * 0.92), "|", color="tab:red", ms=6)
    ax.set_ylabel("FD (mm)", fontsize=8)
    ax.set_title(f"{strategy}: {censored.size} of {n} volumes dropped (red: non-steady-state, and high motion when "
                 f"scrubbing); FD threshold {fd_threshold:g} mm (dashed)", fontsize=9)
    full = np.full((cleaned.shape[0], n), np.nan)
    full[:, kept] = _zscore_rows(cleaned)
    axes[1].plot(dvars(raw), color="0.4", lw=0.8, label="raw")
    axes[1].plot(kept, dvars(cleaned, kept), color="tab:blue", lw=0.8, label="cleaned")
    axes[1].legend(fontsize=7, loc="upper right", ncol=2, frameon=False)
    axes[1].set_ylabel("DVARS (z)", fontsize=8)
    axes[2].plot(_zscore_rows(raw).mean(axis=0), color="tab:green", lw=0.8)
    axes[2].set_ylabel("global (z)", fontsize=8)
    for ax_, data, name in ((axes[3], _zscore_rows(raw[order]), "raw"), (axes[4], full[order], "cleaned")):
        ax_.imshow(data, aspect="auto", cmap="gray", vmin=-2, vmax=2, interpolation="nearest")
        ax_.set_ylabel(f"{name}\nvoxels", fontsize=8)
        ax_.set_yticks([])
    axes[4].set_xlabel("volume", fontsize=8)
    for ax_ in axes:
        ax_.tick_params(labelsize=7)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def design_figure(path: Path, design: pd.DataFrame, strategy: str) -> Path:
    """The confounds a strategy regresses, ``(n_volumes, n_confounds)``, each column z-scored."""
    plt = _pyplot()
    values = design.to_numpy(float)
    std = values.std(axis=0)
    z = (values - values.mean(axis=0)) / np.where(std > 0, std, 1)
    width = min(11, 3 + 0.2 * design.shape[1])  # 20 px a column at DPI: room for an 8-point label
    fig, ax = plt.subplots(figsize=(width, 4.6), layout="constrained")
    ax.imshow(z, aspect="auto", cmap="gray", vmin=-3, vmax=3, interpolation="nearest")
    ax.set_xticks(range(design.shape[1]))
    ax.set_xticklabels(design.columns, rotation=90, fontsize=8)
    ax.set_ylabel("volume", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(f"{strategy}: {design.shape[1]} confounds regressed (z-scored)", fontsize=10)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


MAX_EDGES = 250  # more edges make a hairball, and each costs drawing time (400 regions: 7,980 of 79,800)
MAX_NUMBERED = 40  # more region numbers overlap


def label_positions(points: np.ndarray, radius: float) -> np.ndarray:
    """Where to write the numbers of nodes at ``points`` ``(n, 2)`` so that they overlap as little as possible.

    Each label goes on one of 8 spots at ``radius`` around its node (same units), the one farthest from
    every node and every label placed before it; crowded nodes are placed first.  Nodes that project onto
    the same place (regions one behind the other) get labels on different sides.

    Returns
    -------
    ndarray, shape (n, 2)
        The label positions.
    """
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False) + np.pi / 4
    around = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    gaps = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    out = np.full(points.shape, np.nan)
    for k in np.argsort(gaps.min(axis=1), kind="stable"):
        spots = points[k] + around
        taken = np.vstack([points, out[np.isfinite(out[:, 0])]])
        clearance = np.linalg.norm(spots[:, None] - taken[None], axis=-1).min(axis=1)
        out[k] = spots[np.argmax(clearance)]
    return out


def connectome_figure(path: Path, matrix: np.ndarray, atlas: Atlas, title: str, top: float = 0.1) -> Path:
    """The strongest connections on three projections of the atlas, regions numbered.

    The strongest ``top`` fraction of the connections by |value|, at most
    :data:`MAX_EDGES`; nodes sit at the region centres (mm, world
    coordinates), numbered when there are at most :data:`MAX_NUMBERED`; the
    grey outline is the atlas projected on each plane; red edges are
    positive, blue negative, width proportional to |value|.  The title is
    ``title`` and what is shown.
    """
    import nibabel as nib

    plt = _pyplot()
    from matplotlib.collections import LineCollection

    centres = region_centres(atlas)
    img = nib.load(atlas.image)
    labelled = np.argwhere(np.asarray(img.dataobj) > 0)
    xyz = nib.affines.apply_affine(img.affine, labelled)
    mat = np.where(np.isfinite(matrix), matrix, 0.0)
    rows, cols = np.triu_indices(mat.shape[0], k=1)
    values = mat[rows, cols]
    strength = np.abs(values)
    n_edges = min(int(np.ceil(top * strength.size)), MAX_EDGES)
    keep = np.argsort(-strength, kind="stable")[:n_edges]
    colours = np.where(values[keep] > 0, "tab:red", "tab:blue")
    numbered = len(atlas.names) <= MAX_NUMBERED
    thin, thick = (0.5, 3.0) if numbered else (0.2, 1.2)  # many edges: thinner lines
    widths = thin + (thick - thin) * strength[keep] / max(float(strength.max(initial=0)), 1e-12)
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2))
    fig.subplots_adjust(left=0.02, right=0.99, top=0.86, bottom=0.07, wspace=0.06)
    views = [((1, 2), "sagittal (from the left)", ("P", "A", "I", "S")),
             ((0, 2), "coronal (from behind)", ("L", "R", "I", "S")),
             ((0, 1), "axial (from above)", ("L", "R", "P", "A"))]
    for ax, ((a, b), label, (lo_x, hi_x, lo_y, hi_y)) in zip(axes, views):
        ax.scatter(xyz[::7, a], xyz[::7, b], s=1, c="0.88", rasterized=True)
        ends = np.stack([centres[rows[keep]][:, [a, b]], centres[cols[keep]][:, [a, b]]], axis=1)
        ax.add_collection(LineCollection(ends, colors=colours, linewidths=widths, alpha=0.8))
        ax.scatter(centres[:, a], centres[:, b], s=16 if numbered else 4, c="k", zorder=3)
        if numbered:
            span = np.ptp(xyz[:, [a, b]], axis=0).max()
            for k, spot in enumerate(label_positions(centres[:, [a, b]], 0.06 * span)):
                ax.annotate(str(k + 1), (centres[k, a], centres[k, b]), xytext=spot, textcoords="data", fontsize=8,
                            ha="center", va="center", color="0.1", zorder=4,
                            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
                            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.45", "shrinkA": 0, "shrinkB": 2})
        ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(f"{lo_x}  ←→  {hi_x}", fontsize=8)
        ax.set_ylabel(f"{lo_y}  ←→  {hi_y}", fontsize=8)
    shown = (f"strongest {top:.0%} of connections" if n_edges == int(np.ceil(top * strength.size))
             else f"strongest {n_edges} of {strength.size} connections")
    title = f"{title}: {shown}" + (" (numbers: regions below)" if numbered else "")
    handles = [plt.Line2D([], [], color="tab:red", label="positive"),
               plt.Line2D([], [], color="tab:blue", label="negative")]
    fig.legend(handles=handles, loc="upper right", fontsize=8, frameon=False, ncol=2)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


# -- the page ---------------------------------------------------------------------------------------

_MATRIX_SCRIPT = """
<script>
(function () {
  function rdbu(t) {  // t in [0, 1]: blue - white - red
    var a = [[33,102,172],[103,169,207],[209,229,240],[247,247,247],[253,219,199],[239,138,98],[178,24,43]];
    var x = Math.max(0, Math.min(1, t)) * (a.length - 1), i = Math.min(Math.floor(x), a.length - 2), f = x - i;
    return 'rgb(' + [0,1,2].map(function (c) { return Math.round(a[i][c] + f * (a[i+1][c] - a[i][c])); }) + ')';
  }
  function decode(text, n, step) {  // base64 of little-endian int16 (-32768: n/a) -> n x n values or null
    var bytes = atob(text), view = new DataView(new ArrayBuffer(bytes.length)), m = [];
    for (var k = 0; k < bytes.length; k++) view.setUint8(k, bytes.charCodeAt(k));
    for (var i = 0; i < n; i++) {
      var row = [];
      for (var j = 0; j < n; j++) {
        var q = view.getInt16(2 * (i * n + j), true);
        row.push(q === -32768 ? null : q * step);
      }
      m.push(row);
    }
    return m;
  }
  document.querySelectorAll('.fc').forEach(function (box) {
    var d = JSON.parse(box.getAttribute('data-fc')), n = d.labels.length;
    var longest = Math.max.apply(null, d.labels.map(function (s) { return s.length; }));
    // big atlases: cells down to 2 px and no labels (pointing at a cell names its regions)
    var cell = Math.max(2, Math.min(16, Math.floor(600 / n))), named = cell >= 6,
        pad = named ? Math.min(230, 10 + 6 * longest) : 4, size = pad + n * cell + 4;
    Object.keys(d.panels).forEach(function (name) {
      var m = decode(d.panels[name], n, d.step), wrap = document.createElement('div'),
          c = document.createElement('canvas');
      wrap.className = 'fcpanel';
      var title = document.createElement('div'); title.className = 'fctitle'; title.textContent = name;
      var out = document.createElement('div'); out.className = 'fcvalue'; out.textContent = ' ';
      c.width = size; c.height = size; wrap.appendChild(title); wrap.appendChild(c); wrap.appendChild(out);
      box.appendChild(wrap);
      var g = c.getContext('2d'); g.font = Math.min(11, cell) + 'px sans-serif'; g.fillStyle = '#222';
      for (var i = 0; i < n; i++) {
        if (named) {
          g.textAlign = 'right'; g.fillText(d.labels[i], pad - 3, pad + i * cell + cell * 0.8);
          g.save(); g.translate(pad + i * cell + cell * 0.8, pad - 3); g.rotate(-Math.PI / 2);
          g.textAlign = 'left'; g.fillText(d.labels[i], 0, 0); g.restore();
        }
        for (var j = 0; j < n; j++) {
          var v = m[i][j];
          g.fillStyle = (v === null || i === j) ? '#ddd' : rdbu((v - d.vmin) / (d.vmax - d.vmin));
          g.fillRect(pad + j * cell, pad + i * cell, cell, cell);
        }
        g.fillStyle = '#222';
      }
      c.addEventListener('mousemove', function (e) {
        var r = c.getBoundingClientRect(), j = Math.floor((e.clientX - r.left - pad) / cell),
            i = Math.floor((e.clientY - r.top - pad) / cell);
        if (i >= 0 && j >= 0 && i < n && j < n) {
          var v = m[i][j];
          out.textContent = d.labels[i] + ' – ' + d.labels[j] + ': ' + (v === null ? 'n/a' : v.toFixed(3));
        }
      });
    });
    var bar = document.createElement('div'); bar.className = 'fcbar';
    bar.innerHTML = '<span>' + d.vmin.toFixed(2) + '</span><span class="fcgrad"></span><span>' +
                    d.vmax.toFixed(2) + '</span> ' + d.unit;
    box.appendChild(bar);
  });
})();
</script>
<style>
.fc{display:flex;flex-wrap:wrap;gap:.6em;align-items:flex-start}.fcpanel{display:inline-block}
.fctitle{font-weight:bold;font-size:.9em}.fcvalue{font-size:.8em;color:#444;min-height:1.2em}
.fcbar{width:100%;font-size:.8em;display:flex;align-items:center;gap:.4em}
.fcgrad{display:inline-block;width:180px;height:10px;
 background:linear-gradient(to right,rgb(33,102,172),rgb(247,247,247),rgb(178,24,43))}
</style>
"""


def matrices_html(matrices: dict[str, np.ndarray], labels: list[str], unit: str) -> str:
    """FC matrices ``(n_regions, n_regions)`` of one atlas and metric, one panel per strategy, drawn by the
    page's script on one colour scale centred on 0 whose half-range is the largest off-diagonal |value|.

    Each matrix travels as base64 of int16 steps of ``limit / 32767`` (NaN as -32768): 2 bytes a value,
    where JSON text took 7 (a 400-region atlas, 7 metrics and 2 strategies: 18 MB of page), and a
    precision of 3e-5 of the scale.
    """
    values = [np.abs(m[~np.eye(len(m), dtype=bool)]) for m in matrices.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    step = limit / 32767
    panels = {}
    for name, m in matrices.items():
        steps = np.clip(np.round(np.nan_to_num(m, nan=0.0) / step), -32767, 32767).astype("<i2")
        steps[~np.isfinite(m)] = -32768
        panels[name] = base64.b64encode(steps.tobytes()).decode("ascii")
    data = json.dumps({"labels": labels, "vmin": -limit, "vmax": limit, "step": step, "unit": unit,
                       "panels": panels})
    return f"<div class=\"fc\" data-fc='{esc(data)}'></div>"


@dataclass
class RunPage:
    """What the participant report of one run shows (figure paths relative to the page); ``methods`` is the
    run's methods text (Markdown, with its references), ``about`` the About rows after the software versions."""

    title: str
    summary: dict
    qc: pd.DataFrame
    carpets: dict[str, str]
    designs: dict[str, str | None]
    matrices: dict[str, str]
    connectomes: dict[str, tuple[str, str]]
    region_legend: pd.DataFrame
    methods: str
    errors: list[str]
    about: dict
    notes: list[str] = field(default_factory=list)
    drawn: bool = True  # False: --reports light, no figure drawn


NO_CONNECTOME = ("No connectome drawing: the networks of a CIFTI run lie on the two cortical surfaces, where a "
                 "network has no single centre to draw a node at; the matrices above hold every connection.")


NOT_DRAWN = ("Not drawn: this call used --reports light (--reports full draws the carpets, the confounds and "
             "the connectome).")


def write_report(path: Path, page: RunPage) -> Path:
    """Write the participant report of one run (``page.connectomes``: ``(src, caption)`` per strategy, none for
    a CIFTI run; no figure at all when ``page.drawn`` is False, each figure section then saying so)."""
    not_drawn = paragraph(NOT_DRAWN, "none")
    summary = pd.DataFrame({"": list(page.summary), "value": [str(v) for v in page.summary.values()]})
    qc_note = paragraph("Volumes dropped: fMRIPrep's non-steady-state volumes at the start of the run, by every "
                        "strategy (so a strategy without scrubbing drops a few too), and the high-motion volumes of a "
                        "strategy that scrubs. DVARS in z units: each voxel of the report's voxel sample z-scored "
                        "first, so removing slow drifts raises it; the FD-DVARS r (Pearson's correlation of "
                        "framewise displacement with DVARS over the same volumes) is the motion check: close to 0 "
                        "once motion is removed.")
    sections = [
        Section("summary", "Summary").add(table(summary)),
        Section("qc", "Quality control").add(table(page.qc), qc_note, *(paragraph(n, "warn") for n in page.notes)),
        Section("carpets", "Carpets").add(*(
            paragraph("Raw (after fMRIPrep) and cleaned BOLD of a sample of brain voxels (of a CIFTI run: "
                      "grayordinates, those outside the networks first), sorted by network; one tab per denoising "
                      "strategy."),
            tabs({s: figure(src, f"{s}: framewise displacement, DVARS, global signal, raw and cleaned carpets")
                  for s, src in page.carpets.items()})) if page.drawn else (not_drawn,)),
        Section("confounds", "Confounds").add(
            tabs({s: figure(src, f"{s}: the confound regressors removed from the signals") if src else
                  paragraph(f"{s}: no confound regressed (filtering and standardisation only).", "none")
                  for s, src in page.designs.items()}) if page.drawn else not_drawn),
        Section("fc", "Functional connectivity").add(
            paragraph("One tab per atlas and FC metric; one panel per strategy, on one colour scale centred on "
                      "0. Point at a cell to read its value."), tabs(page.matrices)),
        Section("connectome", "Connectome").add(
            *((tabs({s: figure(*c) for s, c in page.connectomes.items()}), table(page.region_legend))
              if page.connectomes else (paragraph(NO_CONNECTOME if page.drawn else NOT_DRAWN, "none"),))),
        *methods_sections(page.methods, "logs/CITATION.md"),
        Section("errors", "Errors").add(
            *(paragraph(e, "error") for e in page.errors) if page.errors else
            (paragraph("No errors: every strategy ran.", "ok"),)),
        about_section(("Nipype", "nilearn", "NumPy"), page.about),
    ]
    return render_page(path, page.title, sections, lead=[f"nmflow participant report · {page.title}"],
                       script=_MATRIX_SCRIPT)
