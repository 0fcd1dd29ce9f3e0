"""Nipype interfaces: the group report (HTML + figures) of the chosen variant, and its copy into OUT_DIR."""

from __future__ import annotations

import shutil
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec, Directory, File, InputMultiObject, SimpleInterface, TraitedSpec, traits,
)

from nmflow.interfaces.cohort import CohortStepInputSpec, cohort_of


class _GroupReportInputSpec(CohortStepInputSpec):
    scored = InputMultiObject(File(exists=True), mandatory=True, desc="every variant's deviations (NPZ)")
    prepared = InputMultiObject(File(exists=True), mandatory=True, desc="every variant's preprocessing (NPZ)")
    stats = InputMultiObject(File(exists=True), mandatory=True, desc="every variant's group tests (TSV + NPZ)")
    singlecase = InputMultiObject(File(exists=True), mandatory=True, desc="every variant's single cases")
    networks = InputMultiObject(File(exists=True), mandatory=True, desc="every variant's system-pair summary")
    curves = InputMultiObject(File(exists=True), mandatory=True, desc="every variant's learning curves")
    model_meta = traits.List(traits.Dict, mandatory=True, desc="every variant's model card")
    selection = File(desc="variant ranking (TSV + NPZ); absent without bootstrap models")
    messages = traits.List(traits.Str, desc="notes of the cohort collection")


class _GroupReportOutputSpec(TraitedSpec):
    report_dir = Directory(exists=True, desc="folder with group_report.html and figures/")


def _full(path: str):
    """The full-precision copy (``.npz``) of a table written by :func:`nmflow.group.tables.write_table`."""
    from nmflow.group.tables import read_table

    return read_table(Path(path).with_suffix(".npz"))


class GroupReport(SimpleInterface):
    """HTML report of the selected variant (rank 1 of the selection, else the first variant)."""

    input_spec = _GroupReportInputSpec
    output_spec = _GroupReportOutputSpec

    def _run_interface(self, runtime):
        from nmflow.group.records import Prepared
        from nmflow.group.scoring import Scored
        from nmflow.reports.group import ReportVariant, write_group_report

        s, table, split = cohort_of(self.inputs)
        table["split"] = split.folds.label
        selection = _full(self.inputs.selection) if self.inputs.selection else None
        labels = [Scored.load(path).label for path in self.inputs.scored]
        k = labels.index(selection.iloc[0]["variant"]) if selection is not None else 0
        variant = ReportVariant(Scored.load(self.inputs.scored[k]), Prepared.load(self.inputs.prepared[k]),
                                _full(self.inputs.stats[k]), _full(self.inputs.singlecase[k]),
                                _full(self.inputs.networks[k]), _full(self.inputs.curves[k]),
                                int(self.inputs.model_meta[k]["best_epoch"]))
        folder = Path(runtime.cwd) / "report"
        folder.mkdir(exist_ok=True)
        write_group_report(folder, table, split.folds, variant, selection, list(self.inputs.messages), s)
        self._results["report_dir"] = str(folder)
        return runtime


class _CopyReportInputSpec(BaseInterfaceInputSpec):
    base_directory = Directory(mandatory=True, desc="staging folder of OUT_DIR")
    report_dir = Directory(exists=True, mandatory=True, desc="folder with group_report.html and figures/")


class CopyGroupReport(SimpleInterface):
    """Copy the report folder's content (HTML and figures/) into ``base_directory/group``."""

    input_spec = _CopyReportInputSpec
    output_spec = TraitedSpec

    def _run_interface(self, runtime):
        shutil.copytree(self.inputs.report_dir, Path(self.inputs.base_directory) / "group", dirs_exist_ok=True)
        return runtime
