"""Nipype interface: name and publish every derivative of one run, all of them or none.

:class:`RunDerivatives` writes the run's tables (:mod:`nmflow.participant.tables`),
then gives every file (tables, confound designs, outliers, figures, report) its
BIDS-derivatives name with :class:`~nmflow.interfaces.derivatives.DerivativesDataSink`,
inside a hidden staging folder of OUT_DIR that is moved into place only when
all of them are written.  One node per run: the sinks are calls, not nodes, so
a MultiProc scheduler is not kept busy by dozens of tiny jobs.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec, Directory, File, InputMultiObject, OutputMultiObject, SimpleInterface, TraitedSpec,
    isdefined, traits,
)

from nmflow.bids_io import SPACE_ENTITIES, resolution_meta
from nmflow.fileio import load_npz
from nmflow.interfaces.io import atlases_from_records, strategies_from_records
from nmflow.participant.settings import CleaningSettings
from nmflow.participant.tables import (
    OUTLIERS_META, STRATEGIES_META, design_meta, relmat_tables, strategies_table, timeseries_tables,
)


class _RunDerivativesInputSpec(BaseInterfaceInputSpec):
    entities = traits.Dict(mandatory=True, desc="the BOLD run's entities (subject, session, task, run, space, res)")
    atlases = traits.List(traits.Dict, mandatory=True, desc="resolved atlases (atlas_records)")
    strategies = traits.List(traits.Dict, mandatory=True, desc="denoising strategies (strategy_records)")
    done = InputMultiObject(traits.Str, mandatory=True, desc="names of the strategies that ran (Denoise)")
    skipped = traits.List(traits.Str, mandatory=True,
                          desc="why each strategy that did not run was skipped (Denoise)")
    metrics = InputMultiObject(traits.Str, mandatory=True, desc="FC metrics")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    settings = traits.Dict(mandatory=True, desc="the strategies' filter (Hz) and scaling (CleaningSettings, as a dict)")
    bold = traits.Str(mandatory=True, desc="the BOLD run: its header gives the voxel size of Resolution")
    sources = traits.List(traits.Str, mandatory=True, desc="BIDS URIs of the run's inputs")
    signals = File(exists=True, mandatory=True, desc="NPZ of raw signals (for the region coverage)")
    cleaned = File(exists=True, mandatory=True, desc="NPZ of cleaned signals (n_kept, n_regions) and kept indices")
    relmats = File(exists=True, mandatory=True, desc="NPZ of FC matrices (n_regions, n_regions)")
    design_files = InputMultiObject(File(exists=True), mandatory=True, desc="confounds regressed, one per strategy")
    outlier_files = InputMultiObject(File(exists=True), mandatory=True, desc="per-volume outliers, one per strategy")
    figures = InputMultiObject(File(exists=True),
                               desc="report figures, named <run>_<entities>_<suffix>.png (entities read from the name); "
                                    "none with --reports light or none")
    report = File(exists=True, desc="the run's HTML report (none with --reports none)")
    out_dir = Directory(mandatory=True, desc="derivatives root (OUT_DIR)")


class _RunDerivativesOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(traits.Str, desc="published files (data and sidecars), relative to OUT_DIR")


class RunDerivatives(SimpleInterface):
    """Write a run's tables and publish all its derivatives into OUT_DIR at once."""

    input_spec = _RunDerivativesInputSpec
    output_spec = _RunDerivativesOutputSpec

    def _run_interface(self, runtime):
        from nmflow.interfaces.derivatives import publisher

        inputs, cwd = self.inputs, Path(runtime.cwd)
        atlases = atlases_from_records(inputs.atlases)
        strategies = [s for s in strategies_from_records(inputs.strategies) if s.name in inputs.done]
        run = dict(inputs.entities)
        no_space = {k: v for k, v in run.items() if k not in SPACE_ENTITIES}
        signals = load_npz(inputs.signals)[0]
        coverage = {a.name: signals[f"coverage|{a.name}"] for a in atlases}
        written: list[str] = []
        with publisher(inputs.out_dir, written) as sink:
            for strategy, design in zip(strategies, inputs.design_files):
                sink(design, design_meta(strategy, list(inputs.sources)), suffix="design", desc=strategy.name,
                     **no_space)
            for strategy, outliers in zip(strategies, inputs.outlier_files):
                sink(outliers, OUTLIERS_META, suffix="outliers", desc=strategy.name, **no_space)
            node_files = {}
            resolution = resolution_meta(run, inputs.bold)
            for table in timeseries_tables(cwd, load_npz(inputs.cleaned)[0], coverage, atlases, strategies,
                                           inputs.tr, list(inputs.sources), CleaningSettings(**inputs.settings),
                                           resolution):
                node_files[table.item] = sink(table.path, table.meta, **run, **table.entities)
            for table in relmat_tables(cwd, load_npz(inputs.relmats)[0], atlases, strategies, list(inputs.metrics),
                                       node_files, resolution):
                sink(table.path, table.meta, **run, **table.entities)
            # figures keep the names RunReport gave them (the report links to them): entities parsed from the
            # name, where pybids' derivatives config also reads seg- as "segmentation"
            for figure in inputs.figures if isdefined(inputs.figures) else ():
                sink(figure, source_file=[Path(figure).name], subject=run["subject"], datatype="figures",
                     dismiss_entities=["segmentation"])
            sink(strategies_table(cwd, strategies_from_records(inputs.strategies), list(inputs.done),
                                  list(inputs.skipped)), STRATEGIES_META, suffix="strategies", **no_space)
            if isdefined(inputs.report):
                sink(inputs.report, **no_space)
        self._results["out_files"] = written
        return runtime
