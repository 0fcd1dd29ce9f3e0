"""HTML group report with PNG figures in ``figures/`` next to it.

For the selected variant (rank 1 of ``selection.tsv``, else the first):
the model's calibration on controls (in plain words when the model explains
nothing beyond the mean), mean signed deviation z per patient group as
region x region heatmaps, the flagged connections on a circle of regions
coloured by Yeo-7 system, the shared-vs-specific table, the training curves,
ComBat before/after (PCA of the controls coloured by site, with the site
accuracy of held-out controls), the autoencoder vs linear-baseline counts,
the single cases and the variant ranking.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nmflow.participant.connectivity import from_upper_triangle  # noqa: E402
from nmflow.group.harmonize import site_accuracy  # noqa: E402
from nmflow.group.stats import YEO7_SYSTEMS, region_systems  # noqa: E402

DPI = 80


def deviation_heatmaps(path: Path, z: np.ndarray, groups: np.ndarray, connection: np.ndarray,
                       regions: list[str]) -> Path:
    """Mean signed deviation z ``(n_subjects, n_scored)`` per group as ``(n_regions, n_regions)`` panels;
    ``connection`` ``(n_scored,)`` places each score in the regions' upper triangle."""
    names = sorted(set(groups))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, g in zip(axes[0], names):
        full = np.full(len(regions) * (len(regions) - 1) // 2, np.nan)
        full[connection] = z[groups == g].mean(axis=0)
        mat = from_upper_triangle(full, len(regions), diagonal=np.nan)
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(f"{g} (n={int((groups == g).sum())})", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="mean deviation z")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def connectome_circle(path: Path, stats: pd.DataFrame, regions: list[str]) -> Path:
    """Flagged connections (autoencoder) on a circle of regions; colour = group, black = shared."""
    n = len(regions)
    systems = region_systems(regions)
    angle = 2 * np.pi * np.arange(n) / n
    xy = np.column_stack([np.cos(angle), np.sin(angle)])
    rows, cols = np.triu_indices(n, k=1)
    fig, ax = plt.subplots(figsize=(5, 5))
    palette = plt.get_cmap("tab10")
    groups = sorted(stats["group"].unique())
    flagged = stats[(stats.model == "autoencoder") & stats.flagged]
    for _, row in flagged.iterrows():
        i, j = rows[row.connection], cols[row.connection]
        color = "k" if row.sharing == "shared" else palette(groups.index(row.group) % 10)
        ax.plot(*zip(xy[i], xy[j]), color=color, lw=1.5, alpha=0.7)
    sys_colors = {s: plt.get_cmap("Set2")(k % 8) for k, s in enumerate(YEO7_SYSTEMS + ["Other"])}
    ax.scatter(xy[:, 0], xy[:, 1], c=[sys_colors[s] for s in systems], s=60, zorder=3, edgecolors="k")
    if n <= 40:
        for k, name in enumerate(regions):
            ax.text(1.12 * xy[k, 0], 1.12 * xy[k, 1], name, fontsize=6, ha="center", va="center")
    handles = [plt.Line2D([], [], color=palette(k % 10), label=g) for k, g in enumerate(groups)]
    handles.append(plt.Line2D([], [], color="k", label="shared"))
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.set_axis_off()
    ax.set_aspect("equal")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def curves_figure(path: Path, train_loss: np.ndarray, val_loss: np.ndarray, best_epoch: int) -> Path:
    """Training and validation loss per epoch ``(n_epochs,)``."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(train_loss, label="train")
    ax.plot(val_loss, label="validation")
    ax.axvline(best_epoch, color="k", ls=":", label="kept")
    ax.set_xlabel("epoch"), ax.set_ylabel("MSE"), ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def combat_figure(path: Path, before: np.ndarray, after: np.ndarray, sites: np.ndarray,
                  train: np.ndarray) -> Path:
    """PCA (first 2 components of ``before``) of controls ``(n, n_features)``, coloured by site,
    before and after ComBat; titles give the site accuracy of held-out controls (fit on ``train``)."""
    centre = before.mean(axis=0)
    _, _, vt = np.linalg.svd(before - centre, full_matrices=False)
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
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0, classes="t")


def calibration_text(scored, selection: pd.DataFrame | None) -> str:
    """Plain-words summary of how well the selected variant's models describe controls."""
    parts = []
    for model, sc in scored.scores.items():
        row = sc.calibration.iloc[0]
        parts.append(f"<li><b>{model}</b>: explained variance of held-out controls {row.explained_variance:.2f}, "
                     f"SMSE {row.smse:.2f}; controls' z: mean {row.z_mean:.2f}, SD {row.z_sd:.2f}, "
                     f"{100 * row['frac_abs_z_gt_1.96']:.1f} % beyond ±1.96 (nominal 5 %); "
                     f"{100 * sc.null_rate:.1f} % of controls get a flagged connection when tested against the "
                     "other controls (nominal about 5 %).</li>")
    text = "<ul>" + "".join(parts) + "</ul>"
    if not scored.val_beats_mean:
        text += ("<p class='warn'>The autoencoder does not predict held-out controls better than their mean "
                 "(its validation loss is not below the mean predictor's): its deviations are the features' "
                 "distance from the controls' mean, not a learnt pattern.</p>")
    if selection is not None and not selection.selected.any():
        text += ("<p class='warn'>No variant gives stable findings: none passed the stability and calibration "
                 "criteria; the first-ranked variant is shown, but read its findings with caution.</p>")
    return text


@dataclass
class ReportVariant:
    """What the report shows of one variant.

    ``scored`` its deviations (:class:`nmflow.group.scoring.Scored`),
    ``prepared`` its preprocessing (:class:`nmflow.group.records.Prepared`),
    ``stats``/``single_case``/``networks`` its test tables, ``curves`` the
    saved model's learning curves and ``best_epoch`` the epoch kept.
    """

    scored: object
    prepared: object
    stats: pd.DataFrame
    single_case: pd.DataFrame
    networks: pd.DataFrame
    curves: pd.DataFrame
    best_epoch: int


def write_group_report(folder: Path, table: pd.DataFrame, folds, r: ReportVariant, selection: pd.DataFrame | None,
                       messages: list[str], settings) -> Path:
    """Write ``folder/group_report.html`` and ``folder/figures/*.png`` for variant ``r``; returns the HTML path.

    ``table`` is the cohort (with a ``split`` column), ``folds`` the
    cross-fitting plan, ``settings`` the :class:`~nmflow.group.settings.GroupSettings`.
    """
    figures = folder / "figures"
    figures.mkdir(exist_ok=True)
    sc = r.scored
    label = sc.label
    ae = sc.scores["autoencoder"]
    groups = table["group"].to_numpy()
    controls = folds.controls
    figs = {
        "Mean deviation z per patient group (autoencoder)": deviation_heatmaps(
            figures / "deviation_heatmaps.png", ae.z[folds.patients], groups[folds.patients], sc.connection,
            sc.regions),
        "Flagged connections (autoencoder)": connectome_circle(figures / "connectome.png", r.stats, sc.regions),
        "Training curves (model fit on all controls)": curves_figure(
            figures / "training_curves.png", r.curves.train_loss.to_numpy(), r.curves.val_loss.to_numpy(),
            r.best_epoch),
    }
    if settings.harmonize == "combat" and table["site"].nunique() > 1:
        p = r.prepared
        before = p.features.x[:, p.kept]
        before = np.where(np.isfinite(before), before, np.nanmean(before, axis=0))
        figs["ComBat: controls before and after (fit without the scored controls)"] = combat_figure(
            figures / "combat_sites.png", before[controls], p.preps[0].features[controls],
            table["site"].to_numpy()[controls], folds.pool[0][controls])
    flagged = r.stats[r.stats.flagged]
    counts = r.stats.groupby(["model", "group"])["flagged"].sum().unstack("model").reset_index()
    counts.columns.name = None
    split_counts = ", ".join(f"{k}: {int(v)}" for k, v in table["split"].value_counts().sort_index().items())
    chosen = ("" if selection is None else " (selected on controls only)" if selection.selected.any()
              else " (no variant qualified)")
    parts = [f"<h1>nmflow group report</h1><p>Variant: <b>{html.escape(label)}</b>{chosen}; {len(table)} subjects; "
             f"{html.escape(split_counts)}; {settings.test_score} deviations; flag rule: {settings.p_rule} &lt; "
             f"{settings.alpha}.</p>"]
    if messages or sc.messages:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(m)}</li>" for m in messages + sc.messages)
                     + "</ul>")
    parts.append("<h2>Calibration on controls (out of sample)</h2>" + calibration_text(sc, selection))
    parts.append("<h2>Flagged connections: autoencoder vs linear baseline</h2>" + _table(counts))
    for title, path in figs.items():
        parts.append(f"<h2>{html.escape(title)}</h2><img src='figures/{path.name}'>")
    shown = flagged[flagged.model == "autoencoder"][["group", "name", "U", "q", "effect_size", "sharing"]]
    parts.append("<h2>Shared vs specific (autoencoder)</h2>"
                 + (_table(shown.sort_values(["sharing", "group"])) if len(shown) else "<p>None flagged.</p>"))
    single = r.single_case
    per_case = single[single.feature != "global"].groupby("participant_id", sort=False).agg(
        group=("group", "first"), connections_flagged=("flagged", "sum"))
    overall = single[single.feature == "global"].set_index("participant_id")
    glob = ae.globals.assign(participant_id=[f"sub-{x}" for x in table.index]).set_index("participant_id")
    per_case = per_case.assign(global_score=glob["global_score"], n_extreme=glob["n_extreme"],
                               global_t=overall["t"], global_p=overall["p"]).reset_index()
    n_ref = int(folds.reference.sum())
    parts.append(f"<h2>Single cases (Crawford–Howell vs {n_ref} controls, df = {n_ref - 1})</h2>"
                 + _table(per_case.sort_values("global_score", ascending=False)))
    nets = r.networks[(r.networks.model == "autoencoder") & (r.networks.n_flagged > 0)]
    parts.append("<h2>Yeo-7 system pairs</h2>" + (_table(nets.drop(columns="model")) if len(nets)
                                                   else "<p>None flagged.</p>"))
    if selection is not None:
        parts.append("<h2>Variant ranking (controls only)</h2>" + _table(selection))
    style = ("<style>body{font-family:sans-serif;margin:2em} .t td,.t th{padding:2px 8px;font-size:12px}"
             " .warn{color:#a40000}</style>")
    out = folder / "group_report.html"
    out.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>nmflow group</title>{style}</head>"
                   f"<body>{''.join(parts)}</body></html>")
    return out
