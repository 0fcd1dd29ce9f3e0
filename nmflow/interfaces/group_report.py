"""Nipype interfaces: the group report of the chosen variant (HTML, figures, patient pages), and its copy into OUT_DIR."""

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
    selection = traits.List(File(exists=True), desc="variant ranking (TSV + NPZ); empty without bootstrap models")
    messages = traits.List(traits.Str, desc="notes of the cohort collection")
    features = InputMultiObject(File(exists=True), mandatory=True, desc="every variant's features (NPZ)")
    motion = File(exists=True, mandatory=True, desc="motion per run and strategy (TSV + NPZ)")
    reports = traits.List(traits.Str, desc="participant reports of the cohort (names in OUT_DIR)")
    methods = traits.Str("", usedefault=True, desc="methods text of the call (Markdown, with references)")


class _GroupReportOutputSpec(TraitedSpec):
    report_dir = Directory(exists=True, desc="folder with group_report.html, figures/ and patients/")


def _full(path: str):
    """The full-precision copy (``.npz``) of a table written by :func:`nmflow.group.tables.write_table`."""
    from nmflow.group.tables import read_table

    return read_table(Path(path).with_suffix(".npz"))


SINGLE_CASE_COLUMNS = ("participant_id", "feature", "df", "t", "p", "p_fwe", "flagged")  # what the pages show


def single_case_table(path: str):
    """The single-case table's :data:`SINGLE_CASE_COLUMNS` (a row per patient and connection, its text
    columns stored as categories: 16 million rows at 400 regions and 200 patients)."""
    from nmflow.fileio import load_npz
    from nmflow.group.records import arrays_frame

    wanted = {f"table/{c}" for c in SINGLE_CASE_COLUMNS} | {f"table/{c}/categories" for c in SINGLE_CASE_COLUMNS}
    arrays, _ = load_npz(Path(path).with_suffix(".npz"), skip=lambda key: key not in wanted)
    return arrays_frame("table", arrays, list(SINGLE_CASE_COLUMNS))


def network_assignment(settings, variant, scored, reference):
    """The network of each region the report shows (``scored.regions``, the regions of the scored
    connections; :class:`nmflow.group.scoring.Scored`) of ``variant``
    (:class:`nmflow.group.features.Variant`): recorded in a time series sidecar of ``--timeseries-dir`` or
    OUT_DIR, else read from the region names, else k-means modules of the ``reference`` controls' mean
    (harmonised) FC."""
    import itertools

    import numpy as np

    from nmflow.networks import fc_modules, named_networks, recorded_networks
    from nmflow.participant.connectivity import from_upper_triangle

    folder = settings.timeseries_dir or settings.out_dir
    stem = "".join(f"_{k}-{v}" for k, v in (("atlas", variant.atlas), ("seg", variant.seg)) if v)
    sidecars = itertools.islice(Path(folder).glob(f"sub-*/**/*{stem}_*timeseries.json"), 10) if folder else []
    regions = scored.regions
    found = recorded_networks(sidecars, regions) or named_networks(regions)
    if found is None:
        n = len(regions)
        mean = np.full(n * (n - 1) // 2, np.nan)  # connections not scored (e.g. a transferred model's) stay NaN
        mean[scored.connection] = np.nanmean(scored.scores["autoencoder"].residuals.features[reference], axis=0)
        found = fc_modules(from_upper_triangle(mean, n, diagonal=0.0), seed=0)
    return found


class GroupReport(SimpleInterface):
    """HTML report of the selected variant (rank 1 of the selection, else the first variant)."""

    input_spec = _GroupReportInputSpec
    output_spec = _GroupReportOutputSpec

    def _run_interface(self, runtime):
        from nmflow.group.records import Prepared, VariantFeatures
        from nmflow.group.scoring import Scored
        from nmflow.reports.group import ReportData, ReportVariant, write_group_report

        selection = _full(self.inputs.selection[0]) if self.inputs.selection else None
        features = [VariantFeatures.load(path) for path in self.inputs.features]
        labels = [f.variant.label for f in features]
        k = labels.index(selection.iloc[0]["variant"]) if selection is not None else 0
        s, table, split = cohort_of(self.inputs, self.inputs.scored[k])  # the subjects of the shown variant
        table["split"] = split.folds.label
        shown = features[k].variant
        subjects = list(table.index)
        strategies = {f.variant.desc: f.aligned(subjects) for f in features
                      if (f.variant.atlas, f.variant.seg, f.variant.meas) == (shown.atlas, shown.seg, shown.meas)}
        variant = ReportVariant(Scored.load(self.inputs.scored[k]), Prepared.load(self.inputs.prepared[k], large=()),
                                _full(self.inputs.stats[k]), single_case_table(self.inputs.singlecase[k]),
                                _full(self.inputs.networks[k]), _full(self.inputs.curves[k]),
                                int(self.inputs.model_meta[k]["best_epoch"]))
        folder = Path(runtime.cwd) / "report"
        if folder.exists():
            shutil.rmtree(folder)  # a rerun leaves no page of a patient no longer in the cohort
        folder.mkdir()
        networks = network_assignment(s, shown, variant.scored, split.folds.reference)
        data = ReportData(table, split.folds, variant, selection, list(self.inputs.messages),
                          _full(self.inputs.motion), list(self.inputs.reports), strategies, s, networks,
                          self.inputs.methods)
        write_group_report(folder, data)
        self._results["report_dir"] = str(folder)
        return runtime


class _CopyReportInputSpec(BaseInterfaceInputSpec):
    base_directory = Directory(mandatory=True, desc="staging folder of OUT_DIR")
    report_dir = Directory(exists=True, mandatory=True, desc="folder with group_report.html, figures/ and patients/")


class CopyGroupReport(SimpleInterface):
    """Copy the report folder's content (HTML, figures/, patients/) into ``base_directory/group``."""

    input_spec = _CopyReportInputSpec
    output_spec = TraitedSpec

    def _run_interface(self, runtime):
        shutil.copytree(self.inputs.report_dir, Path(self.inputs.base_directory) / "group", dirs_exist_ok=True)
        return runtime
