"""Nipype interfaces: group tests, single-case tests and the choice of variant."""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    File, InputMultiObject, SimpleInterface, TraitedSpec, traits,
)

from nmflow.interfaces.cohort import CohortStepInputSpec, TableStep, cohort_of


class _ScoredInputSpec(CohortStepInputSpec):
    scored = File(exists=True, mandatory=True, desc="one variant's deviations (NPZ from ScoreDeviations)")


class _GroupTestsOutputSpec(TraitedSpec):
    stats = File(exists=True, desc="Mann-Whitney U per model, group and connection (TSV)")
    stats_meta = traits.Dict(desc="sidecar of the statistics")
    networks = File(exists=True, desc="flagged connections per Yeo-7 system pair (TSV)")
    networks_meta = traits.Dict(desc="sidecar of the summary")


class GroupTests(TableStep):
    """Patients' deviations vs the reference controls, per group and connection."""

    input_spec = _ScoredInputSpec
    output_spec = _GroupTestsOutputSpec

    def tables(self, settings, table, split, cwd):
        from nmflow.group.inference import group_tests
        from nmflow.group.scoring import Scored
        from nmflow.group.tables import networks_description, stats_description

        stats, networks = group_tests(Scored.load(self.inputs.scored), table, split, settings)
        return {"stats": (stats, stats_description(settings)), "networks": (networks, networks_description())}


class _SingleCasesOutputSpec(TraitedSpec):
    singlecase = File(exists=True, desc="Crawford-Howell tests of every patient (TSV)")
    singlecase_meta = traits.Dict(desc="sidecar of the single-case table")


class SingleCases(TableStep):
    """Each patient against the reference controls (Crawford-Howell, family-wise rule)."""

    input_spec = _ScoredInputSpec
    output_spec = _SingleCasesOutputSpec

    def tables(self, settings, table, split, cwd):
        from nmflow.group.inference import single_cases
        from nmflow.group.scoring import Scored
        from nmflow.group.tables import singlecase_description

        frame = single_cases(Scored.load(self.inputs.scored), table, split, settings)
        return {"singlecase": (frame, singlecase_description(settings))}


class _SelectInputSpec(CohortStepInputSpec):
    scored = InputMultiObject(File(exists=True), mandatory=True, desc="every variant's deviations")


class _SelectOutputSpec(TraitedSpec):
    selection = traits.List(File(exists=True), desc="variants ranked on controls only (TSV); none without "
                                                    "bootstrap models")
    selection_meta = traits.Dict(desc="sidecar of the ranking (empty without)")


class SelectVariants(SimpleInterface):
    """Rank the variants on controls only: stability, calibration, explained variance."""

    input_spec = _SelectInputSpec
    output_spec = _SelectOutputSpec

    def _run_interface(self, runtime):
        from nmflow.group.inference import select_variants, selection_rows
        from nmflow.group.scoring import Scored
        from nmflow.group.tables import selection_description, write_table

        s, table, split = cohort_of(self.inputs)
        self._results["selection"], self._results["selection_meta"] = [], {}
        if split.n_bootstrap:
            rows = selection_rows([Scored.load(path) for path in self.inputs.scored], table, split)
            self._results["selection"] = [write_table(os.path.join(runtime.cwd, "selection"),
                                                      select_variants(rows))[0]]
            self._results["selection_meta"] = selection_description()
        return runtime
