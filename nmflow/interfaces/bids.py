"""Nipype interfaces around the derivatives sink: tables and sidecars of a run, then publishing.

``TimeseriesTables`` and ``RelmatTables`` write a run's region time series and
FC matrices as TSV files (in the node's folder) with their sidecar contents and
entities, one list item per file, for a ``MapNode`` of
:class:`~nmflow.interfaces.derivatives.DerivativesDataSink`.  Items are in
strategy, then atlas (then metric) order.  The sinks write into a staging
folder; :class:`PublishDerivatives` moves their files into OUT_DIR at once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec, Directory, File, InputMultiObject, OutputMultiObject, SimpleInterface, TraitedSpec,
    traits,
)

from nmflow import __version__
from nmflow.bids_io import write_relmat
from nmflow.participant.connectivity import METRICS
from nmflow.participant.denoise import Strategy
from nmflow.fileio import staged_folder
from nmflow.interfaces.io import atlases_from_json, key, load_arrays, strategies_from_json

SOFTWARE = f"nmflow {__version__}"
OUTLIERS_META = {
    "censored": {"Description": "1 = volume dropped (non-steady-state or, when scrubbing, high motion)"},
    "motion_outlier": {"Description": "1 = FD or std DVARS above threshold"},
    "non_steady_state": {"Description": "1 = fMRIPrep non-steady-state volume"},
}


def sources(bold: str, mask: str, confounds: str) -> list[str]:
    """BIDS URIs (``bids:preprocessed:<file name>``) of a run's input files, for ``Sources``."""
    return [f"bids:preprocessed:{Path(p).name}" for p in (bold, mask, confounds)]


def design_meta(strategy: Strategy, source_uris: list[str]) -> dict:
    """Sidecar of a strategy's ``_design.tsv`` (the regressed confounds, ``(n_volumes, n_confounds)``)."""
    return {"Description": f"Confounds regressed by strategy {strategy.name!r}: {strategy.description}",
            "Patterns": list(strategy.confounds), "Sources": source_uris, "Software": SOFTWARE}


class _TablesOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True), desc="TSV files, one per item")
    meta = traits.List(traits.Dict, desc="sidecar contents, one per item")
    desc = traits.List(traits.Str, desc="desc entity (strategy) of each item")
    atlas = traits.List(traits.Any, desc="atlas entity of each item")
    seg = traits.List(traits.Any, desc="seg entity of each item (None: the atlas has none)")


class _TimeseriesTablesInputSpec(BaseInterfaceInputSpec):
    atlases_json = traits.Str(mandatory=True, desc="resolved atlases")
    strategies_json = traits.Str(mandatory=True, desc="denoising strategies")
    signals = File(exists=True, mandatory=True, desc="NPZ of raw signals (for the region coverage)")
    cleaned = File(exists=True, mandatory=True, desc="NPZ of cleaned signals (n_kept, n_regions) and kept indices")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    sources = traits.List(traits.Str, mandatory=True, desc="BIDS URIs of the run's inputs")


class TimeseriesTables(SimpleInterface):
    """Cleaned region time series ``(n_kept, n_regions)`` as TSV (region names as header), per strategy and atlas."""

    input_spec = _TimeseriesTablesInputSpec
    output_spec = _TablesOutputSpec

    def _run_interface(self, runtime):
        atlases = atlases_from_json(self.inputs.atlases_json)
        signals, cleaned = load_arrays(self.inputs.signals), load_arrays(self.inputs.cleaned)
        tr = self.inputs.tr
        out = {"out_files": [], "meta": [], "desc": [], "atlas": [], "seg": []}
        for strategy in strategies_from_json(self.inputs.strategies_json):
            kept = cleaned[key("kept", strategy.name)]
            for atlas in atlases:
                path = Path(runtime.cwd) / f"{strategy.name}_{atlas.name}_timeseries.tsv"
                pd.DataFrame(cleaned[key(strategy.name, atlas.name)], columns=atlas.names).to_csv(
                    path, sep="\t", index=False, na_rep="n/a", float_format="%.8g")
                coverage = signals[f"coverage|{atlas.name}"]
                out["out_files"].append(str(path))
                out["meta"].append({
                    "Sources": list(self.inputs.sources), "RepetitionTime": tr, "SamplingFrequency": 1.0 / tr,
                    "Atlas": atlas.name, "AtlasImage": Path(atlas.image).name,
                    "DenoisingStrategy": {"Name": strategy.name, "Description": strategy.description},
                    "VolumesKept": int(kept.size), "KeptVolumeIndices": [int(k) for k in kept],
                    "RegionCoverage": dict(zip(atlas.names, np.round(coverage, 4).tolist())),
                    "Software": SOFTWARE})
                out["desc"].append(strategy.name)
                out["atlas"].append(atlas.entities.get("atlas"))
                out["seg"].append(atlas.entities.get("seg"))
        self._results.update(out)
        return runtime


class _RelmatTablesInputSpec(BaseInterfaceInputSpec):
    atlases_json = traits.Str(mandatory=True, desc="resolved atlases")
    strategies = InputMultiObject(traits.Str, mandatory=True, desc="strategy names")
    metrics = InputMultiObject(traits.Str, mandatory=True, desc="FC metrics")
    relmats = File(exists=True, mandatory=True, desc="NPZ of FC matrices (n_regions, n_regions)")
    timeseries = InputMultiObject(File(exists=True), mandatory=True,
                                  desc="written time series, strategy then atlas order (their names go in NodeFiles)")


class _RelmatTablesOutputSpec(_TablesOutputSpec):
    meas = traits.List(traits.Str, desc="meas entity (FC metric) of each item")


class RelmatTables(SimpleInterface):
    """FC matrices ``(n_regions, n_regions)`` as ``node``-column TSV, per strategy, atlas and metric."""

    input_spec = _RelmatTablesInputSpec
    output_spec = _RelmatTablesOutputSpec

    def _run_interface(self, runtime):
        relmats = load_arrays(self.inputs.relmats)
        timeseries = iter(self.inputs.timeseries)
        out = {"out_files": [], "meta": [], "desc": [], "atlas": [], "seg": [], "meas": []}
        for strategy in self.inputs.strategies:
            for atlas in atlases_from_json(self.inputs.atlases_json):
                node_file = Path(next(timeseries)).name
                for metric in self.inputs.metrics:
                    path = Path(runtime.cwd) / f"{strategy}_{atlas.name}_{metric}_relmat.tsv"
                    write_relmat(path, relmats[key(strategy, atlas.name, metric)], atlas.names)
                    out["out_files"].append(str(path))
                    out["meta"].append({
                        "Directed": False, "Weighted": True, "ValidDiagonal": METRICS[metric].valid_diagonal,
                        "RelationshipMeasure": METRICS[metric].description, "Software": SOFTWARE,
                        "NodeFiles": [node_file],
                        "FeatureOrder": "upper triangle without diagonal, row-major (numpy.triu_indices(n, k=1))"})
                    out["desc"].append(strategy)
                    out["atlas"].append(atlas.entities.get("atlas"))
                    out["seg"].append(atlas.entities.get("seg"))
                    out["meas"].append(metric)
        self._results.update(out)
        return runtime


class _PublishInputSpec(BaseInterfaceInputSpec):
    staging_dir = Directory(mandatory=True, desc="folder the run's sinks wrote into")
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="the sinks' files, inside staging_dir")
    out_dir = Directory(mandatory=True, desc="derivatives root (OUT_DIR)")


class _PublishOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(traits.Str, desc="published files, relative to OUT_DIR")


class PublishDerivatives(SimpleInterface):
    """Copy a run's derivatives from its staging folder into OUT_DIR, all of them or none."""

    input_spec = _PublishInputSpec
    output_spec = _PublishOutputSpec

    def _run_interface(self, runtime):
        staging = Path(self.inputs.staging_dir)
        relative = sorted({Path(f).relative_to(staging) for f in self.inputs.in_files})
        with staged_folder(self.inputs.out_dir) as stage:
            for rel in relative:
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(staging / rel, stage / rel)
        self._results["out_files"] = [str(rel) for rel in relative]
        return runtime
