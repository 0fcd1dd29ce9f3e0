"""Nipype interface: figures and the HTML report of one run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec, File, InputMultiObject, OutputMultiObject, SimpleInterface, TraitedSpec, traits,
)

from nmflow.bids_io import bids_name
from nmflow.fileio import load_npz
from nmflow.interfaces.io import atlases_from_records
from nmflow.participant.tables import key
from nmflow.reports import participant as report
from nmflow.reports.html import report_date


class _RunReportInputSpec(BaseInterfaceInputSpec):
    run_key = traits.Str(mandatory=True, desc="run identifier, e.g. sub-01_task-rest (prefix of figure names)")
    entities = traits.Dict(mandatory=True, desc="the BOLD run's entities (subject, session, task, run, space, res)")
    bold = traits.Str(mandatory=True, desc="file name of the BOLD run (shown in the summary)")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    signals = File(exists=True, mandatory=True, desc="NPZ of raw signals, carpet and tSNR (ExtractSignals)")
    cleaned = File(exists=True, mandatory=True, desc="NPZ of cleaned signals and carpets (Denoise)")
    relmats = File(exists=True, mandatory=True, desc="NPZ of FC matrices (Connectivity)")
    outlier_files = InputMultiObject(File(exists=True), mandatory=True, desc="per-strategy outlier TSVs")
    design_files = InputMultiObject(File(exists=True), mandatory=True, desc="per-strategy confound designs")
    strategies = InputMultiObject(traits.Str, mandatory=True, desc="strategies that ran, same order as the files")
    skipped = traits.List(traits.Str, desc="one line per strategy that could not run")
    atlases = traits.List(traits.Dict, mandatory=True, desc="resolved atlases (atlas_records)")
    metrics = InputMultiObject(traits.Str, mandatory=True, desc="FC metrics")
    min_coverage = traits.Float(0.5, usedefault=True, desc="coverage threshold (for the QC table)")
    fd_threshold = traits.Float(mandatory=True, desc="FD threshold of scrubbing (mm), drawn on the FD trace")
    methods = traits.Str(mandatory=True, desc="methods boilerplate (Markdown)")
    command = traits.Str("", usedefault=True, desc="the command line of the call (shown under About)")
    draw_figures = traits.Bool(True, usedefault=True,
                               desc="draw the carpets, designs and connectome (False: --reports light, no PNG)")
    n_procs = traits.Int(1, usedefault=True, nohash=True,
                         desc="processes drawing the figures at once (the node's cores; not part of its cache key)")


class _RunReportOutputSpec(TraitedSpec):
    figures = OutputMultiObject(File(exists=True), desc="PNG figures")
    report = File(exists=True, desc="HTML report")


def _read_design(path: str) -> pd.DataFrame:
    """A strategy's design TSV (no columns for a strategy that regresses nothing)."""
    try:
        return pd.read_csv(path, sep="\t")
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


class RunReport(SimpleInterface):
    """Draw the run's figures and write its HTML page."""

    input_spec = _RunReportInputSpec
    output_spec = _RunReportOutputSpec

    def _run_interface(self, runtime):
        inputs, cwd, name = self.inputs, Path(runtime.cwd), self.inputs.run_key
        signals, cleaned, relmats = (load_npz(f)[0] for f in (inputs.signals, inputs.cleaned, inputs.relmats))
        atlases = atlases_from_records(inputs.atlases)
        strategies = list(inputs.strategies)
        outliers = {s: pd.read_csv(f, sep="\t", na_values="n/a") for s, f in zip(strategies, inputs.outlier_files)}
        designs = {s: _read_design(f) for s, f in zip(strategies, inputs.design_files)}
        kept = {s: cleaned[key("kept", s)] for s in strategies}
        sub = f"sub-{inputs.entities['subject']}"
        carpets, design_figs, connectomes, jobs = {}, {}, {}, []
        fd = next(iter(outliers.values()))["framewise_displacement"].to_numpy(float)
        for s in strategies if inputs.draw_figures else ():
            png = cwd / f"{name}_desc-{s}_bold.png"
            jobs.append((report.carpet_figure, (png, signals["carpet"], cleaned[key("carpet", s)],
                                                signals["carpet_labels"], fd, kept[s], inputs.fd_threshold, s)))
            carpets[s] = f"{sub}/figures/{png.name}"
            design_figs[s] = None
            if designs[s].shape[1]:
                png = cwd / f"{name}_desc-{s}_design.png"
                jobs.append((report.design_figure, (png, designs[s], s)))
                design_figs[s] = f"{sub}/figures/{png.name}"
        matrices = {}
        for atlas in atlases:
            for metric in inputs.metrics:
                mats = {s: relmats[key(s, atlas.name, metric)] for s in strategies}
                matrices[f"{atlas.name} · {metric}"] = report.matrices_html(mats, list(atlas.names), metric)
        first = atlases[0]
        metric = "pearson" if "pearson" in inputs.metrics else inputs.metrics[0]
        # none of a CIFTI run: grayordinate networks have no centre in a volume to draw a node at
        for s in strategies if inputs.draw_figures and not first.grayordinates else ():
            png = cwd / f"{name}_{bids_name({**first.entities, 'desc': s}, 'connectome', '.png')}"
            jobs.append((report.connectome_figure, (png, relmats[key(s, first.name, metric)], first,
                                                    f"{first.name}, {s}, {metric}")))
            connectomes[s] = (f"{sub}/figures/{png.name}", f"Connectome of {first.name} ({s}, {metric})")
        figures = report.draw_figures(jobs, inputs.n_procs)
        legend = pd.DataFrame({"number": range(1, len(first.names) + 1), "region": first.names})
        coverage = {a.name: signals[f"coverage|{a.name}"] for a in atlases}
        carpet_clean = {s: cleaned[key("carpet", s)] for s in strategies}
        qc = report.qc_table(outliers, signals["carpet"], carpet_clean, kept, float(signals["tsnr"]), coverage,
                             inputs.min_coverage)
        low = [f"regions set to n/a (less than {inputs.min_coverage:.0%} of their "
               + ("grayordinates carrying a signal" if a.grayordinates else "voxels in the brain mask") + ") in "
               f"{a.name}: {', '.join(n for n, c in zip(a.names, coverage[a.name]) if c < inputs.min_coverage)}"
               for a in atlases if (coverage[a.name] < inputs.min_coverage).any()]
        ents = inputs.entities
        summary = {"subject": ents.get("subject"), "session": ents.get("session") or "n/a",
                   "task": ents.get("task") or "n/a", "run": ents.get("run") or "n/a",
                   "space": " ".join(f"{k}-{ents[k]}" for k in ("space", "res", "den") if ents.get(k)) or "n/a",
                   "BOLD": inputs.bold,
                   "repetition time (s)": f"{inputs.tr:g}", "volumes": len(fd),
                   "strategies": ", ".join(strategies) + (f" (skipped: {len(inputs.skipped)})"
                                                          if inputs.skipped else ""),
                   "atlases": ", ".join(a.name for a in atlases), "FC metrics": ", ".join(inputs.metrics)}
        about = {"command": inputs.command or "n/a", "date": report_date()}
        page = report.RunPage(name, summary, qc, carpets, design_figs, matrices, connectomes, legend, inputs.methods,
                              [f"strategy skipped: {s}" for s in inputs.skipped] + low, about,
                              drawn=inputs.draw_figures)
        html = report.write_report(cwd / f"{name}.html", page)
        self._results.update(figures=[str(f) for f in figures], report=str(html))
        return runtime
