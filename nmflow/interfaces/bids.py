"""Nipype interface: write one run's derivatives into OUT_DIR (atomically)."""

from __future__ import annotations

import json

from nipype.interfaces.base import (
    BaseInterfaceInputSpec, Directory, File, InputMultiObject, OutputMultiObject, SimpleInterface,
    TraitedSpec, traits,
)

from nmflow.interfaces.io import atlases_from_json, load_arrays, strategies_from_json
from nmflow.outputs import write_run_outputs


class _WriteDerivativesInputSpec(BaseInterfaceInputSpec):
    out_dir = Directory(mandatory=True, desc="derivatives root (OUT_DIR)")
    entities_json = traits.Str(mandatory=True, desc="BIDS entities of the run")
    sources_json = traits.Str(mandatory=True, desc="input files of the run (bold, mask, confounds)")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    atlases_json = traits.Str(mandatory=True, desc="resolved atlases")
    strategies_json = traits.Str(mandatory=True, desc="denoising strategies")
    metrics = InputMultiObject(traits.Str, mandatory=True, desc="FC metrics")
    signals = File(exists=True, mandatory=True, desc="NPZ of raw signals (for coverage)")
    cleaned = File(exists=True, mandatory=True, desc="NPZ of cleaned signals")
    relmats = File(exists=True, mandatory=True, desc="NPZ of FC matrices")
    design_files = InputMultiObject(File(exists=True), mandatory=True, desc="per-strategy design TSVs")
    outlier_files = InputMultiObject(File(exists=True), mandatory=True, desc="per-strategy outlier TSVs")
    figures = InputMultiObject(File(exists=True), mandatory=True, desc="report figures")
    report = File(exists=True, mandatory=True, desc="HTML report")


class _WriteDerivativesOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(traits.Str, desc="written files, relative to OUT_DIR")


class WriteDerivatives(SimpleInterface):
    """Name, sidecar and move the run's outputs into OUT_DIR."""

    input_spec = _WriteDerivativesInputSpec
    output_spec = _WriteDerivativesOutputSpec

    def _run_interface(self, runtime):
        atlases = atlases_from_json(self.inputs.atlases_json)
        strategies = strategies_from_json(self.inputs.strategies_json)
        signals = load_arrays(self.inputs.signals)
        written = write_run_outputs(
            self.inputs.out_dir, json.loads(self.inputs.entities_json), json.loads(self.inputs.sources_json),
            self.inputs.tr, atlases, strategies, list(self.inputs.metrics), load_arrays(self.inputs.cleaned),
            load_arrays(self.inputs.relmats), {a.name: signals[f"coverage|{a.name}"] for a in atlases},
            list(self.inputs.design_files), list(self.inputs.outlier_files), list(self.inputs.figures),
            self.inputs.report)
        self._results["out_files"] = [str(p) for p in written]
        return runtime
