"""One page per patient (``patients/sub-<label>.html`` beside the group report, figures in ``patients/figures/``).

For a reader who is not a statistician: the overall deviation as a
percentile of the held-out controls, the deviation matrix on the atlas'
networks, the most extreme connections in plain words, the single-case
tests, and the motion of the patient's scans; with the caution that this is
a research tool.  Past :data:`~nmflow.networks.MAX_REGIONS_SHOWN` regions the
matrix is the mean per network pair, with the full matrix as a zoomable
page, and the :data:`N_TOP` most extreme connections are listed in a table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from nmflow.group import motion as group_motion
from nmflow.normative.deviations import EXTREME_Z
from nmflow.reports import group_figures
from nmflow.reports.html import (
    Link, Section, about_section, bullet_list, figure, links, methods_sections, number, paragraph, render_page, table,
)
from nmflow.reports.matrix_view import full_matrix, matrix_link, networks_note, write_matrix_page
from nmflow.reports.words import against_controls, connection_label, network_pair, upper_pairs

N_EXTREME = 5
N_TOP = 20  # most extreme connections in a table past MAX_REGIONS_SHOWN regions
N_TABLE = 10
HIGH_FD = 0.5  # mm
Z_LIMIT = 3.0  # colour scale of the deviation matrices
# the About section of the group report and the patient pages: versions only (no date or path: a rerun gives the
# same pages)
GROUP_SOFTWARE = ("PyTorch", "NumPy", "SciPy", "pandas")
CAUTION = ("Research tool, not a diagnosis. These numbers compare this patient's scans with the controls of this "
           "study through a statistical model; they have not been validated for clinical decisions, and head "
           "motion, scanner or preprocessing problems can produce deviations as well as brain differences.")


def write_patient_pages(folder: Path, d) -> dict[str, Path]:
    """Write one page per patient of ``d`` (:class:`nmflow.reports.group.ReportData`); returns
    ``{participant_id: page}`` in cohort order."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "figures").mkdir(exist_ok=True)
    sc = d.variant.scored
    z = sc.scores["autoencoder"].z
    rows = np.flatnonzero(d.folds.patients)
    ids = [d.ids[i] for i in rows]
    if not ids:
        return {}
    matrices, labels = group_figures.network_matrix(z[rows], sc.connection, sc.regions, d.networks)
    figures = group_figures.matrix_figures([folder / "figures" / f"{pid}_deviations.png" for pid in ids],
                                           list(matrices), labels, [f"{pid}: deviation z" for pid in ids], Z_LIMIT,
                                           "deviation z", group_figures.NETWORK_CELL if d.large else 0.3)
    return {pid: _page(folder / f"{pid}.html", d, i, fig) for pid, i, fig in zip(ids, rows, figures)}


def _page(path: Path, d, i: int, matrix_png: Path) -> Path:
    sc = d.variant.scored
    pid, group = d.ids[i], d.table["group"].iloc[i]
    lead = [f"Group {group}, site {d.table['site'].iloc[i]}; variant {sc.label}."]
    sections = [Section("caution", "Read this first", paragraph(CAUTION, "warn") + links(
        "Group report:", [Link("../group_report.html", "all subjects and groups")]) + links(
        "Participant-level reports:", d.reports_of(pid, "../../"), "none found"))]
    sections += [_overall(d, i), _matrix(d, i, matrix_png), _extremes(d, i), _single_case(d, i), _motion(d, i),
                 *methods_sections(d.methods, "../CITATION.md"), about_section(GROUP_SOFTWARE)]
    return render_page(path, f"nmflow patient page: {pid}", sections, lead)


def _extreme_connections(d, i: int, count: int) -> list[int]:
    """Indices of the ``count`` scored connections with the largest |z| of subject ``i``."""
    size = np.abs(np.nan_to_num(d.variant.scored.scores["autoencoder"].z[i]))
    # the count largest (a partial sort), then in order; ties by position as a stable sort of all would give
    candidates = np.flatnonzero(size >= np.partition(size, -count)[-count]) if count < size.size else \
        np.arange(size.size)
    order = candidates[np.lexsort((candidates, -size[candidates]))]
    return [int(k) for k in order[:count]]


def _describe(d, i: int, k: int) -> str:
    """``Default A – Salience: connectivity higher than 99 % of controls (deviation z = +3.41)``."""
    sc = d.variant.scored
    z = sc.scores["autoencoder"].z
    return (f"{connection_label(sc.connection[k], sc.regions)}: "
            f"{against_controls(z[i, k], z[d.folds.reference, k], 'connectivity ')} "
            f"(deviation z = {z[i, k]:+.2f})")


def _feature_label(d, feature: str) -> str:
    """A single-case ``feature`` (connection name) in words."""
    sc = d.variant.scored
    return connection_label(sc.connection[d.feature_index[feature]], sc.regions)


def _single_rows(d, pid: str) -> pd.DataFrame:
    """The patient's rows of the single-case table (none when it has no row)."""
    return d.single_cases.get(pid, d.variant.single_case.iloc[:0])


def patient_summary(d, pid: str) -> dict:
    """The patient's row of the group report's single-case table."""
    i = d.ids.index(pid)
    glob = d.variant.scored.scores["autoencoder"].globals.iloc[i]
    single = _single_rows(d, pid)
    overall = single[single.feature == "global"]
    flagged = single[(single.feature != "global") & single.flagged]
    return {"Patient": pid, "Group": d.table["group"].iloc[i], "Overall deviation (percentile)": glob.global_score,
            "Overall test p": overall.p.iloc[0] if len(overall) else np.nan, "Global FC z": glob.global_fc_z,
            "Focal and global (percentile)": glob.combined_score,
            "Flagged connections": "; ".join(_feature_label(d, f) for f in flagged.feature) or "none"}


def _overall(d, i: int) -> Section:
    ae = d.variant.scored.scores["autoencoder"]
    glob = ae.globals
    ref = d.folds.reference
    single = _single_rows(d, d.ids[i])
    overall = single[single.feature == "global"]
    text = (f"Overall deviation at percentile {number(glob.global_score.iloc[i])} of the {int(ref.sum())} held-out "
            f"controls: the mean squared deviation over all connections ({number(glob.mean_sq_z.iloc[i])}) is "
            f"{against_controls(glob.mean_sq_z.iloc[i], glob.mean_sq_z[ref].to_numpy())}.")
    parts = [paragraph(text)]
    if len(overall):
        row = overall.iloc[0]
        verdict = "significant" if row.flagged else "not significant"
        parts.append(paragraph(f"Single-case test of the overall deviation (Crawford–Howell, df = {int(row.df)}): "
                               f"t = {number(row.t)}, p = {number(row.p)}, {verdict} at p < {d.settings.alpha:g}."))
    chance = 2 * sps.norm.sf(EXTREME_Z) * ae.z.shape[1]
    chance = float(np.round(chance)) if chance >= 10 else chance  # "740", not "7.4e+02"
    parts.append(paragraph(f"{int(glob.n_extreme.iloc[i])} connection(s) deviate beyond |z| = {EXTREME_Z:g}, where "
                           f"about {number(chance, 2)} are expected by chance."))
    g = glob.global_fc_z.iloc[i]
    parts.append(paragraph(f"Global FC: connectivity averaged over all connections is {'above' if g > 0 else 'below'} "
                           f"what the covariates predict by {number(abs(g))} times the held-out controls' typical "
                           f"spread (global_fc_z = {g:+.2f}), a shift shared by every connection that the "
                           "per-connection deviations do not see. Focal and global deviation together: percentile "
                           f"{number(glob.combined_score.iloc[i])} of the held-out controls."))
    return Section("overall", "Overall deviation", "".join(parts))


def _matrix(d, i: int, png: Path) -> Section:
    meaning = ("red where connectivity is higher than the normative model predicts from the patient's covariates "
               "and other connections, blue where lower; about 5 % of controls' deviations lie beyond ±2, and "
               f"colours stop changing beyond ±{Z_LIMIT:g}.")
    if not d.large:
        return Section("matrix", "Deviation matrix", figure(f"figures/{png.name}", "This patient's deviation z per "
                                                                                     f"connection: {meaning}"))
    sc, pid = d.variant.scored, d.ids[i]
    page = write_matrix_page(
        png.with_suffix(".html"), full_matrix(sc.scores["autoencoder"].z[i], sc.connection, len(sc.regions)),
        sc.regions, d.networks, group_figures.network_colours(d.networks.order), f"Deviation z of {pid}",
        f"{pid}'s deviation z per connection, regions ordered by network: {meaning}", Z_LIMIT, "deviation z",
        (f"../{pid}.html#matrix", f"back to {pid}'s page"))
    return Section("matrix", "Deviation matrix", figure(
        f"figures/{png.name}", f"This patient's deviation z averaged over the connections of each network pair "
        f"(diagonal: within a network): {meaning}") + networks_note(d.networks) + matrix_link(f"figures/{page.name}"))


def _extremes(d, i: int) -> Section:
    items = [_describe(d, i, k) for k in _extreme_connections(d, i, N_EXTREME)]
    n = d.variant.scored.scores["autoencoder"].z.shape[1]
    text = ("Percentages compare the patient's deviation with those of the held-out controls for the same "
            f"connection. Among {n} connections the most extreme are beyond most controls by chance alone: only "
            "the single-case tests below allow for the number of connections.")
    section = Section("extremes", "Most extreme connections", paragraph(text) + bullet_list(items))
    return section.add(_top_table(d, i)) if d.large else section


def _top_table(d, i: int) -> str:
    """The :data:`N_TOP` connections with the largest |z| of patient ``i``, with their networks."""
    sc = d.variant.scored
    z = sc.scores["autoencoder"].z
    top = _extreme_connections(d, i, N_TOP)
    rows, cols = upper_pairs(len(sc.regions))
    reference = z[:, top][d.folds.reference]
    frame = pd.DataFrame({
        "Connection": [connection_label(sc.connection[k], sc.regions) for k in top],
        "Networks": [network_pair(d.networks, rows[sc.connection[k]], cols[sc.connection[k]]) for k in top],
        "Deviation z": z[i, top], "Held-out controls beyond it (%)": 100 * np.mean(
            np.abs(reference) >= np.abs(z[i, top]), axis=0)})
    return f"<h3>The {len(top)} most extreme connections</h3>" + table(frame)


def _single_case(d, i: int) -> Section:
    sc, pid = d.variant.scored, d.ids[i]
    single = _single_rows(d, pid)
    rows = single[single.feature != "global"]
    z = sc.scores["autoencoder"].z[i]
    n_flagged = int(rows.flagged.sum())
    shown = pd.concat([rows[rows.flagged].sort_values("p", kind="stable"),
                       rows[~rows.flagged].nsmallest(max(0, N_TABLE - n_flagged), "p", keep="first")])
    frame = pd.DataFrame({"Connection": [_feature_label(d, f) for f in shown.feature],
                          "Deviation z": [z[d.feature_index[f]] for f in shown.feature], "t": shown.t.to_numpy(),
                          "p": shown.p.to_numpy(),
                          "p (family-wise)": shown.p_fwe.to_numpy(), "Flagged": shown.flagged.to_numpy()})
    rule = {"maxt": "family-wise p calibrated on the controls", "fdr": "Benjamini–Hochberg q",
            "raw": "uncorrected p"}[d.settings.single_case_rule]
    text = (f"{n_flagged} of {len(rows)} connections flagged ({rule} < {d.settings.alpha:g}); "
            if n_flagged else f"None flagged among the {len(rows)} connections ({rule} < {d.settings.alpha:g}); ")
    text += f"the {len(frame)} with the smallest p are shown."
    return Section("single-case", "Single-case tests", paragraph(text) + table(frame) + links(
        "Every connection:", [Link(f"../{sc.label}_singlecase.tsv", f"{sc.label}_singlecase.tsv")]))


def _motion(d, i: int) -> Section:
    pid = d.ids[i]
    runs = group_motion.strategy_runs(d.motion, d.desc)
    mine = runs[runs.participant_id == pid] if len(runs) else runs
    fd = d.mean_fd
    if not np.isfinite(fd[i]):
        return Section("motion", "Motion of the scans", paragraph("No framewise displacement found for this "
                                                                   "patient.", "none"))
    compared = against_controls(fd[i], fd[d.folds.reference])
    text = f"Mean framewise displacement {number(fd[i])} mm, {compared}."
    if fd[i] > HIGH_FD:
        text += f" Above {HIGH_FD:g} mm, a common exclusion threshold: this patient's deviations may reflect motion."
    if mine.empty:  # mean FD from the participants file only
        return Section("motion", "Motion of the scans", paragraph(text))
    frame = pd.DataFrame({"Scan": mine.scan.to_numpy(), "Strategy": mine.desc.to_numpy(),
                          "Volumes": mine.n_volumes.to_numpy(), "Mean FD (mm)": mine.mean_fd.to_numpy(),
                          "Max FD (mm)": mine.max_fd.to_numpy(),
                          "Dropped (%, non-steady-state included)": mine.pct_censored.to_numpy()})
    return Section("motion", "Motion of the scans", paragraph(text) + table(frame))
