"""Nipype interfaces of the stimulus study's group level: the ΔFC of the cohort, cases vs controls, the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec, Directory, File, InputMultiObject, SimpleInterface, TraitedSpec, traits,
)

from nmflow.fileio import load_npz, save_npz

DESC = "delta"  # the participant level's ΔFC relmats: desc-delta


def _feature_set(path: str):
    """A :class:`~nmflow.group.features.FeatureSet` saved by :class:`CollectDeltaFC`."""
    from nmflow.group.features import FeatureSet, Variant

    a = load_npz(path)[0]
    atlas, seg, meas = (str(x) or None for x in a["variant"])
    return FeatureSet(Variant(atlas, seg, DESC, meas), [str(s) for s in a["subjects"]],
                      [str(r) for r in a["regions"]], a["features"], [int(n) for n in a["n_runs"]])


class _CollectInputSpec(BaseInterfaceInputSpec):
    out_dir = Directory(exists=True, mandatory=True, desc="OUT_DIR of the participant level")
    participant_label = traits.List(traits.Str, desc="subjects to include (default: all)")


class _CollectOutputSpec(TraitedSpec):
    deltas = traits.List(File(exists=True), desc="one NPZ per metric: ΔFC (n_subjects, n_connections)")
    entities = traits.List(traits.Dict, desc="atlas, seg, meas of each")


class CollectDeltaFC(SimpleInterface):
    """Every subject's ΔFC relmats (``desc-delta``), found with PyBIDS, one feature set per atlas and metric."""

    input_spec = _CollectInputSpec
    output_spec = _CollectOutputSpec

    def _run_interface(self, runtime):
        from nmflow.bids_io import layout
        from nmflow.errors import NmflowInputError
        from nmflow.group.features import collect_relmats

        lay = layout(self.inputs.out_dir)
        sets = [fs for v, fs in collect_relmats(lay, self.inputs.participant_label or None).items()
                if v.desc == DESC]
        if not sets:
            raise NmflowInputError(self.inputs.out_dir, "no participant-level ΔFC (desc-delta relmat): run "
                                                        "'participant --analysis prepost' first")
        atlases = sorted({(fs.variant.atlas or "", fs.variant.seg or "") for fs in sets})
        if len(atlases) > 1:
            raise NmflowInputError(self.inputs.out_dir, f"ΔFC of {len(atlases)} atlases ({atlases}); the stimulus "
                                                        "study takes one: use one OUT_DIR per atlas")
        deltas, entities = [], []
        for k, fs in enumerate(sets):
            v = fs.variant
            deltas.append(save_npz(Path(runtime.cwd) / f"delta_{k}.npz", {
                "features": fs.features, "subjects": np.array(fs.subjects), "regions": np.array(fs.regions),
                "n_runs": np.array(fs.n_runs), "variant": np.array([v.atlas or "", v.seg or "", v.meas])}))
            entities.append({"atlas": v.atlas, "seg": v.seg, "meas": v.meas})
        self._results.update(deltas=deltas, entities=entities)
        return runtime


class _SplitInputSpec(BaseInterfaceInputSpec):
    deltas = InputMultiObject(File(exists=True), mandatory=True, desc="ΔFC feature sets")
    participants = File(mandatory=True, desc="participants.tsv")
    group_column = traits.Str("group", usedefault=True, desc="column with the group")
    control_label = traits.Str("control", usedefault=True, desc="group of the controls")
    case_label = traits.List(traits.Str, desc="the cases (default: every subject not a control)")


class _SplitOutputSpec(TraitedSpec):
    cases = traits.List(traits.Str, desc="case labels")
    controls = traits.List(traits.Str, desc="control labels")
    groups = traits.Dict(desc="group of every subject")
    subjects = File(exists=True, desc="subjects.tsv: participant_id, group, role (case/control)")
    subjects_meta = traits.Dict(desc="its sidecar")


class SplitCases(SimpleInterface):
    """Who is a case and who a control (``--case-label`` or the group column); at least 3 controls."""

    input_spec = _SplitInputSpec
    output_spec = _SplitOutputSpec

    def _run_interface(self, runtime):
        from nmflow.group.features import read_participants
        from nmflow.prepost.singlecase import split_cohort

        table = read_participants(self.inputs.participants, self.inputs.group_column, None, [])
        subjects = sorted({s for path in self.inputs.deltas for s in _feature_set(path).subjects})
        cases, controls = split_cohort(table, subjects, self.inputs.control_label, self.inputs.case_label or None,
                                       self.inputs.participants)
        groups = {s: str(table["group"].get(s, "n/a")) for s in subjects}
        path = Path(runtime.cwd) / "subjects.tsv"
        pd.DataFrame({"participant_id": [f"sub-{s}" for s in cases + controls],
                      "group": [groups[s] for s in cases + controls],
                      "role": ["case"] * len(cases) + ["control"] * len(controls)}).to_csv(path, sep="\t", index=False)
        self._results.update(cases=cases, controls=controls, groups=groups, subjects=str(path), subjects_meta={
            "role": {"Description": "case: tested against the controls; control: in the reference sample"}})
        return runtime


class _CrawfordHowellInputSpec(BaseInterfaceInputSpec):
    delta = File(exists=True, mandatory=True, desc="ΔFC feature set of one metric")
    cases = traits.List(traits.Str, mandatory=True, desc="case labels")
    controls = traits.List(traits.Str, mandatory=True, desc="control labels")
    groups = traits.Dict(mandatory=True, desc="group of every subject")
    alpha = traits.Float(0.05, usedefault=True, desc="FDR level")


class _CrawfordHowellOutputSpec(TraitedSpec):
    singlecase = File(exists=True, desc="TSV: every case x connection")
    singlecase_meta = traits.Dict(desc="its sidecar")


class CrawfordHowell(SimpleInterface):
    """Each case's ΔFC against the controls' ΔFC per connection (Crawford-Howell), BH FDR over connections."""

    input_spec = _CrawfordHowellInputSpec
    output_spec = _CrawfordHowellOutputSpec

    def _run_interface(self, runtime):
        from nmflow.prepost.singlecase import SINGLECASE_COLUMNS, single_case_changes

        delta = _feature_set(self.inputs.delta)
        frame = single_case_changes(delta, list(self.inputs.cases), list(self.inputs.controls),
                                    pd.Series(self.inputs.groups), self.inputs.alpha)
        path = Path(runtime.cwd) / "singlecase.tsv"
        frame.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.8g")
        meta = {"Description": f"Single case vs controls on ΔFC ({delta.variant.meas}), Crawford-Howell test per "
                               f"connection, Benjamini-Hochberg over each case's connections, alpha "
                               f"{self.inputs.alpha}",
                **{c: {"Description": d} for c, d in SINGLECASE_COLUMNS.items()}}
        self._results.update(singlecase=str(path), singlecase_meta=meta)
        return runtime


class _GroupReportInputSpec(BaseInterfaceInputSpec):
    singlecase = InputMultiObject(File(exists=True), mandatory=True, desc="every metric's single-case table")
    entities = traits.List(traits.Dict, mandatory=True, desc="entities (meas) of each table")
    deltas = InputMultiObject(File(exists=True), mandatory=True, desc="ΔFC feature sets (their regions)")
    cases = traits.List(traits.Str, mandatory=True, desc="case labels")
    controls = traits.List(traits.Str, mandatory=True, desc="control labels")
    alpha = traits.Float(0.05, usedefault=True, desc="FDR level")
    methods = traits.Str("", usedefault=True, desc="methods text of the call (Markdown, with references)")


class _GroupReportOutputSpec(TraitedSpec):
    report_dir = Directory(exists=True, desc="folder with prepost_report.html and figures/")


class PrepostGroupReport(SimpleInterface):
    """HTML report: per case, the t of every network pair per metric (significant cells marked) and the table."""

    input_spec = _GroupReportInputSpec
    output_spec = _GroupReportOutputSpec

    def _run_interface(self, runtime):
        from nmflow.prepost.change import PREPOST_METRICS
        from nmflow.reports.prepost import write_group_report

        found = {e["meas"]: path for e, path in zip(self.inputs.entities, self.inputs.singlecase)}
        order = [m for m in PREPOST_METRICS if m in found] + sorted(set(found) - set(PREPOST_METRICS))
        tables = {m: pd.read_csv(found[m], sep="\t", na_values="n/a") for m in order}
        regions = _feature_set(self.inputs.deltas[0]).regions
        folder = Path(runtime.cwd) / "report"
        write_group_report(folder, tables, regions, [f"sub-{c}" for c in self.inputs.cases], len(self.inputs.controls),
                           self.inputs.alpha, self.inputs.methods)
        self._results["report_dir"] = str(folder)
        return runtime
