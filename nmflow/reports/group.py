"""The group report: ``group_report.html`` with ``figures/`` beside it, and one page per patient in ``patients/``.

For the selected variant (rank 1 of ``selection.tsv``, else the first): the
cohort (groups, sites, roles in the model, age and sex), head motion by
group and QC-FC, the model's calibration on held-out controls, the mean
deviation per group on the network matrix, the flagged connections
(interactive connectome or circle, shared vs specific, Yeo-7 system pairs),
the single cases, the variant ranking in words, ComBat before/after, the
notes of the run and an index of every subject with its participant
reports and patient page.  Built with :mod:`nmflow.reports.html`.

Past :data:`~nmflow.networks.MAX_REGIONS_SHOWN` regions the matrices are
summarised per network pair (:class:`~nmflow.networks.Assignment`), each
full region x region matrix is a zoomable page of its own
(:mod:`nmflow.reports.matrix_view`), and the flagged connections are shown
as counts per network pair and the :data:`TOP_K` strongest as a table and a
circle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.errors import NmflowInputError
from nmflow.group import motion as group_motion
from nmflow.group.stats import global_shift_notes
from nmflow.networks import MAX_REGIONS_SHOWN, Assignment, pair_counts
from nmflow.reports import group_figures
from nmflow.reports.html import (
    Link, Section, about_section, bullet_list, embed, figure, links, methods_sections, number, paragraph, render_page,
    table, tabs,
)
from nmflow.reports.matrix_view import full_matrix, matrix_link, networks_note, write_matrix_page
from nmflow.reports.words import connection_label, network_pair, ranking_sentences, strategy_order, variant_entities
from nmflow.stats import qc_fc, qc_fc_summary

TOP_K = 25  # flagged connections shown as a table and a circle past MAX_REGIONS_SHOWN regions


@dataclass
class ReportVariant:
    """What the report shows of one variant.

    ``scored`` its deviations (:class:`nmflow.group.scoring.Scored`),
    ``prepared`` its preprocessing (:class:`nmflow.group.records.Prepared`; fits read with its ``fit``),
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


@dataclass
class ReportData:
    """Everything the group report and the patient pages show.

    ``table`` the cohort (participants rows with a ``split`` column),
    ``folds`` the cross-fitting plan, ``variant`` the variant shown,
    ``selection`` the ranking (None without), ``messages`` the run's notes,
    ``motion`` the participant level's motion per run and strategy
    (:data:`nmflow.group.motion.RUN_COLUMNS`), ``reports`` the participant
    reports (names in ``OUT_DIR``), ``strategies`` the FC features
    ``(n_subjects, n_features)`` of each denoising strategy of the shown
    variant's atlas and metric (for QC-FC), ``settings`` the
    :class:`~nmflow.group.settings.GroupSettings`, ``networks`` the network
    of each region of the shown variant, ``methods`` the call's methods
    text (Markdown, with references).
    """

    table: pd.DataFrame
    folds: object
    variant: ReportVariant
    selection: pd.DataFrame | None
    messages: list[str]
    motion: pd.DataFrame
    reports: list[str]
    strategies: dict[str, np.ndarray]
    settings: object
    networks: Assignment
    methods: str = ""

    @cached_property
    def single_cases(self) -> dict[str, pd.DataFrame]:
        """Each patient's rows of the single-case table (one row per patient and connection: split once)."""
        by_patient = self.variant.single_case.groupby("participant_id", sort=False, observed=True)
        return {str(pid): rows for pid, rows in by_patient}

    @cached_property
    def feature_index(self) -> dict[str, int]:
        """Position of each connection name among the scored connections."""
        return {name: k for k, name in enumerate(self.variant.scored.names)}

    @property
    def large(self) -> bool:
        """Past :data:`~nmflow.networks.MAX_REGIONS_SHOWN` regions: summaries per network pair."""
        return len(self.variant.scored.regions) > MAX_REGIONS_SHOWN

    @property
    def ids(self) -> list[str]:
        return [f"sub-{x}" for x in self.table.index]

    @property
    def desc(self) -> str | None:
        return variant_entities(self.variant.scored.label).get("desc")

    @property
    def mean_fd(self) -> np.ndarray:
        """Mean FD (mm) per subject ``(n_subjects,)``, NaN when unknown (the table's ``mean_fd``: the
        participants file's, else the participant level's motion files; :func:`nmflow.group.motion.with_mean_fd`)."""
        return self.table[group_motion.MEAN_FD].to_numpy(float)

    @property
    def group_order(self) -> list[str]:
        """The controls, then the patient groups in alphabetical order."""
        control = self.settings.control_label
        return [control] + sorted(set(self.table["group"]) - {control})

    def reports_of(self, participant_id: str, prefix: str) -> list[Link]:
        """Links (``prefix`` + name) to the participant reports of one subject."""
        return [Link(prefix + name, name[len(participant_id) + 1:-5] or "report")
                for name in self.reports if name.split("_")[0].split(".")[0] == participant_id]


def write_group_report(folder: Path, d: ReportData) -> Path:
    """Write ``folder/group_report.html``, ``folder/figures/`` and ``folder/patients/``; returns the HTML path."""
    from nmflow.reports.patient import GROUP_SOFTWARE, write_patient_pages

    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    pages = write_patient_pages(folder / "patients", d)
    sc = d.variant.scored
    chosen = ("" if d.selection is None else ", selected on controls only" if d.selection.selected.any()
              else ", no variant qualified (see Variant choice)")
    s = d.settings
    rule = f"{'q' if s.p_rule == 'fdr' else 'p'} < {s.alpha:g}"
    lead = [f"Variant {sc.label}{chosen}.",
            f"{len(d.table)} subjects: {_role_counts(d.table.split)}. Deviations are {s.test_score} residual z "
            f"scores of a normative autoencoder trained on controls; connections are flagged at {rule}."]
    sections = [_cohort(d), _motion(d, figures), _calibration(d, figures), _deviations(d, figures),
                _flagged(d, figures), _single_cases(d, pages), _ranking(d)]
    if s.harmonize == "combat" and d.table["site"].nunique() > 1:
        sections.append(_combat(d, figures))
    sections += [Section("notes", "Notes", bullet_list(d.messages + sc.messages, "No notes.")),
                 _subjects(d, pages), *methods_sections(d.methods, "CITATION.md"), about_section(GROUP_SOFTWARE)]
    return render_page(folder / "group_report.html", "nmflow group report", sections, lead)


ROLES = {"reference": ("held-out control", "held-out controls"),
         "fit": ("fitting control (not tested)", "fitting controls (not tested)"), "patient": ("patient", "patients")}


def _role_key(split: str) -> str:
    return "patient" if split == "patient" else "fit" if split in ("train", "val") else "reference"


def _role(split: str) -> str:
    """What a subject with this ``split`` label is to the model."""
    return ROLES[_role_key(split)][0]


def _role_counts(splits: pd.Series) -> str:
    counts = splits.map(_role_key).value_counts()
    return ", ".join(f"{int(counts[k])} {ROLES[k][int(counts[k]) != 1]}" for k in ROLES if k in counts)


def _counts(values: pd.Series) -> str:
    return ", ".join(f"{k} {int(n)}" for k, n in values.astype(str).value_counts().sort_index().items())


def _column(table: pd.DataFrame, name: str) -> str | None:
    return next((c for c in table.columns if c.lower() == name), None)


def _cohort(d: ReportData) -> Section:
    age, sex = _column(d.table, "age"), _column(d.table, "sex") or _column(d.table, "gender")
    rows = []
    for name, part in [(g, d.table[d.table.group == g]) for g in d.group_order] + [("all", d.table)]:
        row = {"Group": name, "Subjects": len(part), "Sites": _counts(part["site"]),
               "Role in the model": _role_counts(part["split"])}
        if age and pd.api.types.is_numeric_dtype(d.table[age]):
            a = part[age].astype(float)
            row["Age (mean ± SD, range)"] = (f"{number(a.mean())} ± {number(a.std())} "
                                             f"({number(a.min())}–{number(a.max())})")
        if sex:
            row["Sex"] = _counts(part[sex])
        rows.append(row)
    text = ("Held-out controls are scored by cross-fitting models that never saw them and form the reference "
            "every deviation is measured against; patients are scored by every model.")
    return Section("cohort", "Cohort", paragraph(text) + table(pd.DataFrame(rows)))


def qc_fc_rows(d: ReportData) -> tuple[pd.DataFrame, dict[str, np.ndarray], tuple[str, str] | None]:
    """QC-FC of every strategy of the shown variant's atlas and metric (and after ComBat when applied).

    Returns the table (one row per feature set), the correlations per set
    ``(n_features,)`` and the (before, after) pair the text compares (None
    when there is nothing to compare).
    """
    fd = d.mean_fd
    sets = {f"desc-{k}": x for k, x in sorted(d.strategies.items(), key=lambda kv: strategy_order(kv[0]))}
    mine = f"desc-{d.desc}"
    p = d.variant.prepared
    combat = d.settings.harmonize == "combat" and d.table["site"].nunique() > 1
    if combat and p.kept.size == p.features.x.shape[1]:
        sets[f"{mine} after ComBat"] = _after_combat(p)
    correlations, rows = {}, []
    for name, x in sets.items():
        r, pval, n = qc_fc(fd, x)
        correlations[name] = r
        summary = qc_fc_summary(r, pval)
        rows.append({"FC": name, "Subjects": int(np.max(n, initial=0)),
                     "Connections with p < 0.05 (%)": summary["pct_significant"],
                     "Median |r|": summary["median_abs_r"]})
    first = next(iter(sets))
    if first != mine:
        pair = (first, mine)
    elif f"{mine} after ComBat" in sets:
        pair = (mine, f"{mine} after ComBat")
    else:
        pair = None
    return pd.DataFrame(rows), correlations, pair


def qc_fc_words(rows: pd.DataFrame, pair: tuple[str, str] | None, mine: str) -> list[tuple[str, str | None]]:
    """The QC-FC comparison in sentences ``(text, paragraph kind)``; a warning when another strategy of the
    same atlas and metric leaves clearly less motion in FC than the shown variant's."""
    pct = rows.set_index("FC")["Connections with p < 0.05 (%)"]
    median = rows.set_index("FC")["Median |r|"]
    if pair is None:
        out = [("Only one denoising strategy of this atlas and metric was analysed and the data were not "
                "harmonised, so no before/after comparison is possible.", None)]
    else:
        kind = "ComBat" if pair[1].endswith("ComBat") else "denoising"
        out = [(f"Before/after {kind}: {pair[0]} has {number(pct[pair[0]])} % significant connections (median |r| "
                f"{number(median[pair[0]])}); {pair[1]} has {number(pct[pair[1]])} % (median |r| "
                f"{number(median[pair[1]])}).", None)]
    others = pct[[name for name in pct.index if name != mine and not name.endswith("ComBat")]]
    if len(others) and pct[mine] > 10 and others.min() < pct[mine] / 2:
        best = others.idxmin()
        out.append((f"Motion remains in the shown variant's FC: {number(pct[mine])} % of its connections correlate "
                    f"with motion against {number(others.min())} % with {best}. The variant ranking judges how well "
                    f"a variant can be modelled, not how well it was denoised: consider --variants '*{best}*'.",
                    "warn"))
    return out


def _after_combat(p) -> np.ndarray:
    """The shown variant's features after ComBat (fit on all controls), NaN for connections not modelled."""
    out = np.full(p.features.x.shape, np.nan)
    out[:, np.flatnonzero(p.kept)] = p.fit(len(p.preps), ("features",)).features
    return out


def _motion(d: ReportData, figures: Path) -> Section:
    section = Section("motion", "Head motion and QC-FC")
    fd, groups = d.mean_fd, d.table["group"].to_numpy(str)
    if not np.isfinite(fd).any():
        return section.add(paragraph("No framewise displacement found (no mean_fd column in the participants file "
                                     "and no participant-level *_outliers.tsv): motion by group and QC-FC are not "
                                     "shown.", "warn"))
    by_group = group_motion.motion_by_group(fd, groups, d.settings.control_label)
    sentences = []
    controls = by_group.iloc[0]
    for row in by_group.iloc[1:].itertuples(index=False):
        verdict = ("moved differently from controls: motion may explain part of its deviations (see QC-FC)"
                   if row.p < 0.05 else "no evidence of a motion difference")
        sentences.append(f"{row.group}: mean FD {number(row.mean)} mm vs {number(controls['mean'])} mm in controls "
                         f"(Mann–Whitney p = {number(row.p)}): {verdict}.")
    shown = by_group.assign(mean=[f"{number(m)} ± {number(s)}" for m, s in zip(by_group["mean"], by_group.sd)])
    shown = shown.drop(columns="sd").rename(columns={
        "group": "Group", "n": "Subjects with FD", "mean": "Mean FD (mm, mean ± SD)", "median": "Median (mm)",
        "U": "Mann–Whitney U vs controls", "p": "p"})
    section.add(paragraph(f"Mean framewise displacement (FD) per subject, from {fd_source_words(d.table)}."),
                bullet_list(sentences, "Controls only: no group to compare."), table(shown),
                figure(f"figures/{group_figures.fd_figure(figures / 'motion.png', fd, groups, d.group_order).name}",
                       "Mean framewise displacement of every subject, per group (box: quartiles)."))
    rows, correlations, pair = qc_fc_rows(d)
    words = ("QC-FC is the correlation, across subjects, of mean FD with each connection's FC (Fisher z); with "
             "motion well removed about 5 % of connections correlate at p < 0.05 (uncorrected) by chance, and "
             "the median |r| is small.")
    parts = [paragraph(words)] + [paragraph(text, kind) for text, kind in qc_fc_words(rows, pair, f"desc-{d.desc}")]
    caption = "QC-FC correlations of every connection: narrow and centred on 0 means little motion left in FC."
    return section.add("<h3>QC-FC</h3>", *parts, table(rows),
                       figure(f"figures/{group_figures.qcfc_figure(figures / 'qcfc.png', correlations).name}", caption))


def fd_source_words(table: pd.DataFrame) -> str:
    """Where the subjects' mean FD came from, in words (``the participants file's mean_fd column for 3
    subjects, ...``)."""
    counts = table["mean_fd_source"].value_counts()
    parts = [group_motion.FD_SOURCES[k] + (f" for {int(n)} subjects" if len(counts) > 1 else "")
             for k, n in counts.items()]
    return "; ".join(parts)


def qc_fc_deviation_words(d: ReportData) -> list[tuple[str, str | None]]:
    """The QC-FC of the deviations in sentences ``(text, paragraph kind)``: a warning when a model's median
    |r| exceeds :data:`~nmflow.group.motion.QCFC_TARGET`."""
    overall = {m: x.calibration.iloc[0] for m, x in d.variant.scored.scores.items()}
    if not np.isfinite(overall["autoencoder"].qcfc_median_abs_r):
        return [("QC-FC of the deviations is not computed: mean FD is unknown.", None)]
    n = int(overall["autoencoder"].n_subjects)
    names = {"autoencoder": "the autoencoder", "linear": "the linear baseline"}
    text = (f"QC-FC of the deviations: across the {n} held-out controls, the median |r| between a connection's "
            "deviation z and mean FD is " + " and ".join(f"{number(row.qcfc_median_abs_r)} for {names[m]}"
                                                            for m, row in overall.items())
            + f" (target at most {group_motion.QCFC_TARGET:g}); " + " and ".join(f"{number(row.qcfc_pct_p05)} %"
                                                                         for row in overall.values())
            + " of connections correlate with it at p < 0.05 (uncorrected; about 5 % by chance).")
    out = [(text, None)]
    high = [m for m, row in overall.items() if row.qcfc_median_abs_r > group_motion.QCFC_TARGET]
    if high:
        # measured on ABIDE (README): mean FD as a covariate takes motion out of the linear baseline's deviations,
        # not out of the autoencoder's, which need cleaner FC
        remedies = []
        if "linear" in high and group_motion.MEAN_FD not in d.settings.covariates:
            remedies.append("for the linear baseline, add mean FD as a covariate (--covariates ... "
                            f"{group_motion.MEAN_FD})")
        remedies.append("choose a stricter denoising strategy (scrubbing, global signal regression; compare the "
                        "strategies' QC-FC in Head motion and QC-FC)")
        out.append((f"Head motion remains in the deviations of {' and '.join(names[m] for m in high)} (median |r| "
                    f"above {group_motion.QCFC_TARGET:g}): they partly measure how much subjects moved. To remove it, "
                    f"{'; or '.join(remedies)}.", "warn"))
    return out


def _calibration(d: ReportData, figures: Path) -> Section:
    sc, r = d.variant.scored, d.variant
    rows = []
    for model, scores in sc.scores.items():
        calib = scores.calibration[scores.calibration.connection == "all"]
        for _, row in calib.iterrows():
            rows.append({"Model": model, "Controls": "all" if row.scope == "all" else f"site {row.scope}",
                         "n": row.n_subjects, "Explained variance": row.explained_variance, "SMSE": row.smse,
                         "Mean z": row.z_mean, "SD of z": row.z_sd, "Beyond ±1.96 (%)": 100 * row["frac_abs_z_gt_1.96"],
                         "QC-FC median |r|": row.qcfc_median_abs_r,
                         "Controls flagged vs others (%)": 100 * scores.null_rate if row.scope == "all" else np.nan})
    ae = sc.scores["autoencoder"].calibration.iloc[0]
    words = (f"On held-out controls the autoencoder explains {number(100 * ae.explained_variance)} % of each "
             f"connection's variance; their deviations have mean {number(ae.z_mean)} and SD {number(ae.z_sd)} "
             f"(ideal 0 and 1), and {number(100 * ae['frac_abs_z_gt_1.96'])} % lie beyond ±1.96 (nominal 5 %). "
             f"Tested against the other controls, {number(100 * sc.scores['autoencoder'].null_rate)} % of controls "
             "get a flagged connection (nominal about 5 %).")
    section = Section("calibration", "Calibration on held-out controls", paragraph(words)).add(
        *[paragraph(text, kind) for text, kind in qc_fc_deviation_words(d)])
    if not sc.val_beats_mean:
        section.add(paragraph("The autoencoder does not predict held-out controls better than their mean: its "
                              "deviations are the features' distance from the controls' mean, not a learnt "
                              "pattern.", "warn"))
    curves = group_figures.curves_figure(figures / "training_curves.png", r.curves.train_loss.to_numpy(),
                                         r.curves.val_loss.to_numpy(), r.best_epoch)
    return section.add(table(pd.DataFrame(rows)), figure(
        f"figures/{curves.name}", "Training and validation error per epoch of the model fitted on all controls; "
        "the dotted line marks the epoch kept."))


def group_means(d: ReportData) -> dict[str, np.ndarray]:
    """Mean signed deviation z per connection ``(n_scored,)`` of the held-out controls and of each patient group."""
    z = d.variant.scored.scores["autoencoder"].z
    groups = d.table["group"].to_numpy(str)
    out = {}
    for g in d.group_order:
        rows = d.folds.reference if g == d.settings.control_label else d.folds.patients & (groups == g)
        out[g] = z[rows].mean(axis=0)
    return out


def _deviations(d: ReportData, figures: Path) -> Section:
    sc = d.variant.scored
    means = group_means(d)
    matrices, labels = group_figures.network_matrix(np.vstack(list(means.values())), sc.connection, sc.regions,
                                                    d.networks)
    limit = max(0.5, float(np.ceil(10 * np.nanmax(np.abs(matrices))) / 10))
    groups = d.table["group"].to_numpy(str)
    counts = {g: int(d.folds.reference.sum()) if g == d.settings.control_label
              else int((d.folds.patients & (groups == g)).sum()) for g in means}
    titles = [f"{'held-out controls' if g == d.settings.control_label else g} (n = {counts[g]})" for g in means]
    paths = group_figures.matrix_figures([figures / f"deviations_{k}.png" for k in range(len(means))],
                                         list(matrices), labels, titles, limit, "mean deviation z",
                                         group_figures.NETWORK_CELL if d.large else 0.3)
    # the full matrices' scale: their 99th percentile of |z| (a few extreme cells would wash out the rest)
    full_limit = max(0.5, float(np.ceil(10 * np.nanpercentile(np.abs(np.vstack(list(means.values()))), 99)) / 10))
    panels = {}
    for k, (g, mean), path, title in zip(range(len(means)), means.items(), paths, titles):
        what = ("each scored by a model that never saw it: values near 0 show an unbiased model"
                if g == d.settings.control_label else "red: connectivity higher than the model expects, blue: lower")
        if not d.large:
            panels[title] = figure(f"figures/{path.name}", f"Mean deviation z of the {title} per connection; {what}.")
            continue
        page = write_matrix_page(
            figures / f"deviations_{k}_full.html", full_matrix(mean, sc.connection, len(sc.regions)), sc.regions,
            d.networks, group_figures.network_colours(d.networks.order), f"Mean deviation z: {title}",
            f"Mean deviation z of the {title} per connection, regions ordered by network; {what}.", full_limit,
            "mean deviation z", ("../group_report.html#deviations", "back to the group report"))
        panels[title] = figure(f"figures/{path.name}", f"Mean deviation z of the {title}, averaged over the "
                               f"connections of each network pair (diagonal: within a network); {what}.") + \
            matrix_link(f"figures/{page.name}")
    intro = ("A subject's deviation z is how far a connection is from what the normative model predicts from the "
             "subject's covariates and other connections, in units of the held-out controls' spread.")
    note = networks_note(d.networks) if d.large else ""
    return Section("deviations", "Deviations per group", paragraph(intro) + note + tabs(panels))


def atlas_centres(label: str, regions: list[str], atlas_dir) -> np.ndarray | None:
    """Region centres ``(n_regions, 3)`` (mm) of a built-in Yeo variant found in ``atlas_dir``, else None."""
    from nmflow.participant.atlas import region_centres, resolve_atlas

    ents = variant_entities(label)
    match = re.fullmatch(r"(7|17)n(Thin|Thick)", ents.get("seg", ""))
    if ents.get("atlas") != "Yeo2011" or match is None or not atlas_dir:
        return None
    try:
        atlas = resolve_atlas(f"yeo{match[1]}{match[2].lower()}", atlas_dir, fetch=False)
    except NmflowInputError:
        return None
    return region_centres(atlas) if list(atlas.names) == list(regions) else None


def _flagged(d: ReportData, figures: Path) -> Section:
    sc, stats = d.variant.scored, d.variant.stats
    counts = stats.groupby(["group", "model"])["flagged"].sum().unstack("model").reset_index()
    counts.columns = [{"group": "Group", "autoencoder": "Autoencoder", "linear": "Linear baseline"}.get(c, c)
                      for c in counts.columns]
    flagged = stats[(stats.model == "autoencoder") & stats.flagged]
    section = Section("flagged", "Flagged connections", table(counts))
    if "with_global_shift" in stats:
        section.add(*[paragraph(f"Global shift: {note}.", "warn")
                      for note in global_shift_notes(stats)])
    if flagged.empty:
        return section.add(paragraph("None flagged: no connection differs between a patient group and the "
                                     "controls at the chosen threshold.", "none"))
    if d.large:
        return _flagged_by_network(d, figures, section)
    centres = atlas_centres(sc.label, sc.regions, d.settings.atlas_dir)
    n = len(sc.regions)
    rows, cols = np.triu_indices(n, k=1)
    patient_groups = d.group_order[1:]
    if centres is not None:
        panels = {}
        for k, g in enumerate(patient_groups):
            mine = flagged[flagged.group == g]
            panels[g] = (_connectome(figures / f"connectome_{k}.html", mine, centres, d, f"{g}: {len(mine)} flagged "
                                     "connection(s)") if len(mine) else paragraph(f"None flagged in {g}.", "none"))
        section.add(tabs(panels))
    else:
        colours = group_figures.group_colours(patient_groups)
        edges = [(rows[c.connection], cols[c.connection], "#000000" if c.sharing == "shared" else colours[c.group],
                  1.6) for c in flagged.itertuples(index=False)]
        circle = group_figures.circle_figure(figures / "connectome.png", edges, sc.regions,
                                             {**colours, "shared": "#000000"}, d.networks)
        section.add(figure(f"figures/{circle.name}", "Flagged connections between the atlas regions (dots coloured "
                           "by network); colour: the patient group, black: flagged in several groups."))
    nets = d.variant.networks
    nets = nets[(nets.model == "autoencoder") & (nets.n_flagged > 0)]
    nets = pd.DataFrame({"Systems": [f"{a} – {b}" for a, b in zip(nets.system_a, nets.system_b)],
                         "Group": nets.group.to_numpy(), "Flagged": nets.n_flagged.to_numpy(),
                         "Connections": nets.n_connections.to_numpy(), "Fraction": nets.fraction_flagged.to_numpy()})
    return section.add("<h3>Shared vs specific</h3>",
                       paragraph("Shared: flagged in two or more patient groups; specific: in one group only."),
                       table(_flagged_table(flagged, sc.regions).sort_values(["Shared or specific", "Group", "q"])),
                       "<h3>Yeo-7 system pairs</h3>", table(nets))


def _connectome(path: Path, rows: pd.DataFrame, centres: np.ndarray, d: ReportData, title: str) -> str:
    """An interactive connectome of the connections ``rows`` (stats rows) in a frame, coloured by effect size."""
    n = len(d.variant.scored.regions)
    i, j = np.triu_indices(n, k=1)
    weights = np.zeros((n, n))
    weights[i[rows.connection], j[rows.connection]] = rows.effect_size
    weights += weights.T
    view = group_figures.connectome_view(path, weights, centres, d.networks, title)
    return embed(f"figures/{view.name}", f"{title} between the region centres (drag to rotate); colour: effect "
                 "size, red where patients are higher.")


def _flagged_table(rows: pd.DataFrame, regions: list[str]) -> pd.DataFrame:
    """Flagged connections (stats rows) in words."""
    return pd.DataFrame({
        "Connection": [connection_label(c, regions) for c in rows.connection],
        "Group": rows.group.to_numpy(), "Patients vs controls": np.where(rows.effect_size > 0, "higher", "lower"),
        "Effect size (rank-biserial)": rows.effect_size.to_numpy(), "q": rows.q.to_numpy(),
        "Shared or specific": rows.sharing.to_numpy()})


def top_connections(rows: pd.DataFrame, k: int = TOP_K) -> pd.DataFrame:
    """The ``k`` flagged connections of ``rows`` (stats rows of one group) with the smallest q, ties broken by
    the larger |effect size|."""
    flagged = rows[rows.flagged]
    order = np.lexsort((-np.abs(flagged.effect_size.to_numpy()), flagged.q.to_numpy()))
    return flagged.iloc[order[:k]]


def _flagged_by_network(d: ReportData, figures: Path, section: Section) -> Section:
    """Past :data:`~nmflow.networks.MAX_REGIONS_SHOWN` regions: per patient group, flagged counts per network
    pair, the :data:`TOP_K` strongest flagged connections as a table and a circle (or connectome)."""
    sc, stats = d.variant.scored, d.variant.stats
    n, networks = len(sc.regions), d.networks
    centres = atlas_centres(sc.label, sc.regions, d.settings.atlas_dir)
    rows, cols = np.triu_indices(n, k=1)
    panels, pairs = {}, []
    for k, g in enumerate(d.group_order[1:]):
        mine = stats[(stats.model == "autoencoder") & (stats.group == g)]
        chosen, total = pair_counts(mine.connection.to_numpy(), mine.flagged.to_numpy(), networks.codes, n)
        n_flagged = int(mine.flagged.sum())
        if not n_flagged:
            panels[g] = paragraph(f"None flagged in {g}.", "none")
            continue
        counts = group_figures.count_figure(figures / f"network_pairs_{k}.png", chosen, total, networks.order,
                                            f"{g}: {n_flagged} flagged connections per network pair")
        top = top_connections(mine)
        what = f"the {len(top)} flagged connection(s) with the smallest q" if n_flagged > len(top) else \
            f"all {n_flagged} flagged connection(s)"
        if centres is not None:
            view = _connectome(figures / f"connectome_{k}.html", top, centres, d, f"{g}: {what}")
        else:
            width = 0.8 + 3 * np.abs(top.effect_size.to_numpy())
            edges = [(rows[c], cols[c], "#b2182b" if e > 0 else "#2166ac", w)
                     for c, e, w in zip(top.connection, top.effect_size, width)]
            circle = group_figures.circle_figure(figures / f"connectome_{k}.png", edges, sc.regions,
                                                 {"higher in patients": "#b2182b", "lower in patients": "#2166ac"},
                                                 networks)
            view = figure(f"figures/{circle.name}", f"{g}: {what} on a circle of the {n} regions grouped by network "
                          "(only their regions are named); line width: effect size.")
        shown = _flagged_table(top, sc.regions).drop(columns="Group")
        shown.insert(1, "Networks", [network_pair(networks, rows[c], cols[c]) for c in top.connection])
        panels[g] = (figure(f"figures/{counts.name}", f"Connections flagged in {g} per network pair (colour: share "
                            "of the pair's connections; diagonal: within a network).")
                     + f"<h3>{what.capitalize()}</h3>" + view + table(shown))
        a, b = np.triu_indices(len(networks.order))
        pairs += [{"Networks": f"{networks.order[i]} – {networks.order[j]}", "Group": g, "Flagged": chosen[i, j],
                   "Connections": total[i, j], "Fraction": chosen[i, j] / total[i, j]}
                  for i, j in zip(a, b) if chosen[i, j]]
    table_all = pd.DataFrame(pairs).sort_values(["Group", "Flagged"], ascending=[True, False]) if pairs else None
    return section.add(networks_note(d.networks), tabs(panels), "<h3>Network pairs</h3>", table(table_all),
                       links("Every connection and its test:", [Link(f"{sc.label}_stats.tsv",
                                                                     f"{sc.label}_stats.tsv")]))


def _single_cases(d: ReportData, pages: dict[str, Path]) -> Section:
    from nmflow.reports.patient import patient_summary

    rows = [patient_summary(d, pid) for pid in pages]
    frame = pd.DataFrame(rows).sort_values("Overall deviation (percentile)", ascending=False) if rows else None
    if frame is not None:
        frame.insert(0, "Patient", [Link(f"patients/{pages[pid].name}", pid) for pid in frame.pop("Patient")])
    n_ref = int(d.folds.reference.sum())
    text = (f"Each patient is compared with the {n_ref} held-out controls (Crawford–Howell, df = {n_ref - 1}). "
            "The overall deviation is the percentile of the patient's mean squared deviation among the controls; "
            "each patient's page says which connections stand out, in words.")
    return Section("single-cases", "Single cases", paragraph(text) + table(frame, "No patients."))


def _ranking(d: ReportData) -> Section:
    body = "".join(paragraph(t) for t in ranking_sentences(d.selection, d.variant.scored.label))
    if d.selection is not None:
        body += table(d.selection.rename(columns={
            "variant": "Variant", "n_features": "Connections", "stability": "Stability",
            "frac_abs_z_gt_1.96": "Controls beyond ±1.96 (fraction)", "z_excess_kurtosis": "Excess kurtosis",
            "explained_variance": "Explained variance", "val_beats_mean": "Beats the mean",
            "qualifies": "Qualifies", "rank": "Rank", "selected": "Selected"}))
    return Section("ranking", "Variant choice", body)


def _combat(d: ReportData, figures: Path) -> Section:
    p, controls = d.variant.prepared, d.folds.controls
    before = p.features.x[np.ix_(controls, p.kept)]
    before = np.where(np.isfinite(before), before, np.nanmean(before, axis=0))
    path = group_figures.combat_figure(figures / "combat_sites.png", before, p.fit(0, ("features",)).features[controls],
                                       d.table["site"].to_numpy()[controls], d.folds.pool[0][controls])
    return Section("combat", "Site harmonisation (ComBat)", figure(
        f"figures/{path.name}", "Controls' FC projected on its first two principal components, coloured by site, "
        "before and after ComBat; the site accuracy of controls outside the fit should fall towards chance."))


def _subjects(d: ReportData, pages: dict[str, Path]) -> Section:
    ae = d.variant.scored.scores["autoencoder"]
    frame = pd.DataFrame({
        "Subject": d.ids, "Group": d.table["group"].to_numpy(), "Site": d.table["site"].to_numpy(),
        "Role": [_role(s) for s in d.table["split"]], "Mean FD (mm)": d.mean_fd,
        "Overall deviation (percentile)": ae.globals["global_score"].to_numpy(),
        "Participant reports": [d.reports_of(pid, "../") for pid in d.ids],
        "Patient page": [Link(f"patients/{pages[pid].name}", "open") if pid in pages else "" for pid in d.ids]})
    return Section("subjects", "Subjects", paragraph(
        "Every subject of the cohort, with its participant-level reports (where they exist) and, for patients, "
        "the patient page.") + table(frame))
