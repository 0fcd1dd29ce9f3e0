"""Nipype interface: figures and the HTML report of one run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec, File, InputMultiObject, OutputMultiObject, SimpleInterface, TraitedSpec, traits,
)

from nmflow.bids_io import bids_name
from nmflow.participant.denoise import shown_strategy
from nmflow.interfaces.io import atlases_from_records, load_arrays
from nmflow.participant.tables import key
from nmflow.reports import participant as report


class _RunReportInputSpec(BaseInterfaceInputSpec):
    run_key = traits.Str(mandatory=True, desc="run identifier, e.g. sub-01_task-rest (prefix of figure names)")
    signals = File(exists=True, mandatory=True, desc="NPZ of raw signals, carpet and tSNR (ExtractSignals)")
    cleaned = File(exists=True, mandatory=True, desc="NPZ of cleaned signals and carpets (Denoise)")
    relmats = File(exists=True, mandatory=True, desc="NPZ of FC matrices (Connectivity)")
    outlier_files = InputMultiObject(File(exists=True), mandatory=True, desc="per-strategy outlier TSVs")
    strategies = InputMultiObject(traits.Str, mandatory=True, desc="strategy names, same order as outlier_files")
    atlases = traits.List(traits.Dict, mandatory=True, desc="resolved atlases (atlas_records)")
    metric = traits.Str(mandatory=True, desc="FC metric shown in the figures")
    min_coverage = traits.Float(0.5, usedefault=True, desc="coverage threshold (for the QC table)")


class _RunReportOutputSpec(TraitedSpec):
    figures = OutputMultiObject(File(exists=True), desc="PNG figures")
    report = File(exists=True, desc="HTML report")


class RunReport(SimpleInterface):
    """Draw the run's figures and write its HTML page."""

    input_spec = _RunReportInputSpec
    output_spec = _RunReportOutputSpec

    def _run_interface(self, runtime):
        cwd, name = Path(runtime.cwd), self.inputs.run_key
        signals, cleaned, relmats = (load_arrays(f) for f in (self.inputs.signals, self.inputs.cleaned,
                                                                self.inputs.relmats))
        atlases = atlases_from_records(self.inputs.atlases)
        strategies = list(self.inputs.strategies)
        outliers = {s: pd.read_csv(f, sep="\t", na_values="n/a")
                    for s, f in zip(strategies, self.inputs.outlier_files)}
        shown = shown_strategy(strategies)
        metric = self.inputs.metric
        figures = [report.carpet_figure(
            cwd / f"{name}_desc-carpet_bold.png", signals["carpet"], cleaned[key("carpet", shown)],
            signals["carpet_labels"], outliers[shown]["framewise_displacement"].to_numpy(),
            cleaned[key("kept", shown)], shown)]
        for atlas in atlases:
            figures.append(report.matrices_figure(
                cwd / f"{name}_{bids_name({**atlas.entities, 'meas': metric}, 'relmat', '.png')}",
                {s: relmats[key(s, atlas.name, metric)] for s in strategies}, f"{atlas.name}: {metric}"))
        first = atlases[0]
        figures.append(report.connectome_figure(
            cwd / f"{name}_{bids_name({**first.entities, 'desc': shown}, 'connectome', '.png')}",
            relmats[key(shown, first.name, metric)], first, f"{first.name} {shown} {metric}: strongest 10%"))
        coverage = {a.name: signals[f"coverage|{a.name}"] for a in atlases}
        qc = report.qc_table(outliers, float(signals["tsnr"]), coverage, self.inputs.min_coverage)
        low = [f"{a}: {', '.join(n for n, c in zip(at.names, cov) if c < self.inputs.min_coverage)}"
               for at in atlases for a, cov in [(at.name, coverage[at.name])] if (cov < self.inputs.min_coverage).any()]
        page = report.write_report(cwd / f"{name}.html", name, qc, figures,
                                   [f"regions set to NaN (low coverage) in {x}" for x in low])
        qc.to_csv(cwd / "qc.tsv", sep="\t", index=False)
        self._results.update(figures=[str(f) for f in figures], report=str(page))
        return runtime
