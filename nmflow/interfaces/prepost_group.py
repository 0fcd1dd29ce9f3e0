"""Nipype interfaces of the stimulus study's group level: the ΔFC of the cohort, cases vs controls, the report.

Each calls one function of :mod:`nmflow.prepost.group` (the report:
:func:`nmflow.reports.prepost.group_report`); ΔFC feature sets travel
between them as NPZ files (:func:`~nmflow.prepost.group.save_delta`).
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec, Directory, File, InputMultiObject, SimpleInterface, TraitedSpec, traits,
)


class _CollectInputSpec(BaseInterfaceInputSpec):
    out_dir = Directory(exists=True, mandatory=True, desc="OUT_DIR of the participant level")
    participant_label = traits.List(traits.Str, desc="subjects to include (default: all)")


class _CollectOutputSpec(TraitedSpec):
    deltas = traits.List(File(exists=True), desc="one NPZ per metric: ΔFC (n_subjects, n_connections)")
    entities = traits.List(traits.Dict, desc="atlas, seg, meas of each")


class CollectDeltaFC(SimpleInterface):
    """Every subject's ΔFC relmats (``desc-delta``), found with PyBIDS, one feature set per atlas and metric
    (:func:`~nmflow.prepost.group.collect_deltas`)."""

    input_spec = _CollectInputSpec
    output_spec = _CollectOutputSpec

    def _run_interface(self, runtime):
        from nmflow.prepost.group import collect_deltas, save_delta

        sets = collect_deltas(self.inputs.out_dir, self.inputs.participant_label or None)
        self._results.update(
            deltas=[save_delta(Path(runtime.cwd) / f"delta_{k}.npz", fs) for k, fs in enumerate(sets)],
            entities=[{"atlas": fs.variant.atlas, "seg": fs.variant.seg, "meas": fs.variant.meas} for fs in sets])
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
    """Who is a case and who a control (``--case-label`` or the group column); at least 3 controls
    (:func:`~nmflow.prepost.group.split_cases`)."""

    input_spec = _SplitInputSpec
    output_spec = _SplitOutputSpec

    def _run_interface(self, runtime):
        from nmflow.prepost.group import SUBJECTS_META, load_delta, split_cases

        i, path = self.inputs, Path(runtime.cwd) / "subjects.tsv"
        cases, controls, groups = split_cases(path, [load_delta(p) for p in i.deltas], i.participants,
                                              i.group_column, i.control_label, i.case_label or None)
        self._results.update(cases=cases, controls=controls, groups=groups, subjects=str(path),
                             subjects_meta=SUBJECTS_META)
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
    """Each case's ΔFC against the controls' ΔFC per connection (Crawford-Howell), BH FDR over connections
    (:func:`~nmflow.prepost.group.write_single_cases`)."""

    input_spec = _CrawfordHowellInputSpec
    output_spec = _CrawfordHowellOutputSpec

    def _run_interface(self, runtime):
        from nmflow.prepost.group import load_delta, write_single_cases

        i, path = self.inputs, Path(runtime.cwd) / "singlecase.tsv"
        meta = write_single_cases(path, load_delta(i.delta), list(i.cases), list(i.controls), dict(i.groups),
                                  i.alpha)
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
        from nmflow.prepost.group import load_delta
        from nmflow.reports.prepost import group_report

        i, folder = self.inputs, Path(runtime.cwd) / "report"
        group_report(folder, {e["meas"]: path for e, path in zip(i.entities, i.singlecase)},
                     load_delta(i.deltas[0]).regions, list(i.cases), len(i.controls), i.alpha, i.methods)
        self._results["report_dir"] = str(folder)
        return runtime
