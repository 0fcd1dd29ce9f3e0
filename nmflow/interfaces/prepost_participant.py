"""Nipype interfaces of the stimulus study's participant level: GLM and split, segment FC, seed maps, report,
and the publication of a run's derivatives.

Each interface turns its inputs into typed objects, calls one function of
:mod:`nmflow.prepost.participant` (or :mod:`nmflow.reports.prepost`) and
returns its files.  The science interfaces also return the lists
:class:`PrepostDerivatives` names and publishes: ``out_files`` (files with a
sidecar), ``meta`` (the sidecars) and ``entities`` (their BIDS entities beyond
the run's).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec, Directory, File, InputMultiObject, OutputMultiObject, SimpleInterface, TraitedSpec,
    isdefined, traits,
)

from nmflow.interfaces.io import atlases_from_records, strategies_from_records


class _PublishedSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True), desc="files to publish (with a sidecar)")
    meta = traits.List(traits.Dict, desc="their sidecars")
    entities = traits.List(traits.Dict, desc="their entities (suffix, desc, meas, stat, atlas, seg ...)")


def _published(published) -> dict:
    """The outputs of :class:`_PublishedSpec` from a :class:`~nmflow.prepost.participant.Published`."""
    return {"out_files": published.files, "meta": published.metas, "entities": published.entities}


class _GLMInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True, desc="fMRIPrep desc-preproc_bold image (4D)")
    mask = File(exists=True, mandatory=True, desc="its desc-brain_mask image")
    confounds = File(mandatory=True, desc="fMRIPrep desc-confounds_timeseries.tsv (checked when read)")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    events = File(desc="the run's events.tsv (none: the options' onset and duration)")
    options = traits.Dict(mandatory=True, desc="PrepostOptions (the stimulus, the transition)")
    strategy = traits.Dict(mandatory=True, desc="the denoising strategy whose confounds enter the design (a record)")
    settings = traits.Dict(mandatory=True, desc="CleaningSettings (high-pass, censoring, --min-volumes)")
    sources = traits.List(traits.Str, mandatory=True, desc="BIDS URIs of the run's inputs")
    space = traits.Dict(desc="the run's space and res entities (for its spatial outputs)")


class _GLMOutputSpec(_PublishedSpec):
    pre_bold = File(exists=True, desc="GLM residuals of the PRE volumes (4D NIfTI, percent signal change)")
    post_bold = File(exists=True, desc="GLM residuals of the POST volumes")
    design = File(exists=True, desc="design matrix (TSV)")
    segments = File(exists=True, desc="per-volume table: time, segment, framewise displacement, censored")
    r_square = File(exists=True, desc="variance explained by the design (NIfTI)")
    stimulus = traits.Dict(desc="the stimulus used (onset, duration, trial_type, source)")


class GLMPrePostSplit(SimpleInterface):
    """Fit the run's GLM voxel-wise (stimulus, confounds, drift), keep the residuals, split them into PRE and POST
    (:func:`~nmflow.prepost.participant.glm_split`)."""

    input_spec = _GLMInputSpec
    output_spec = _GLMOutputSpec

    def _run_interface(self, runtime):
        from nmflow.participant.settings import CleaningSettings
        from nmflow.prepost.participant import glm_split
        from nmflow.prepost.settings import PrepostOptions

        i = self.inputs
        split = glm_split(Path(runtime.cwd), i.bold, i.mask, i.confounds, i.tr,
                          i.events if isdefined(i.events) else None, PrepostOptions(**i.options),
                          strategies_from_records([i.strategy])[0], CleaningSettings(**i.settings), list(i.sources),
                          i.space)
        self._results.update(_published(split.published), pre_bold=split.pre_bold, post_bold=split.post_bold,
                             design=split.design, segments=split.segments, r_square=split.r_square,
                             stimulus=asdict(split.stimulus))
        return runtime


class _SegmentFCInputSpec(BaseInterfaceInputSpec):
    signals = InputMultiObject(File(exists=True), mandatory=True,
                               desc="ExtractSignals NPZ of the PRE then the POST residuals")
    atlases = traits.List(traits.Dict, mandatory=True, desc="the resolved atlas (one) (atlas_records)")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    sources = traits.List(traits.Str, mandatory=True, desc="BIDS URIs of the run's inputs")
    space = traits.Dict(desc="the run's space and res entities (for its spatial outputs)")


class _SegmentFCOutputSpec(_PublishedSpec):
    relmats = File(exists=True, desc="NPZ: 'pre|metric', 'post|metric', 'delta|metric' -> (n_regions, n_regions)")


class SegmentConnectivity(SimpleInterface):
    """Network time series of PRE and POST, their FC by every metric and ΔFC = z(POST) - z(PRE)
    (:func:`~nmflow.prepost.participant.segment_connectivity`)."""

    input_spec = _SegmentFCInputSpec
    output_spec = _SegmentFCOutputSpec

    def _run_interface(self, runtime):
        from nmflow.prepost.participant import segment_connectivity

        i = self.inputs
        relmats, published = segment_connectivity(Path(runtime.cwd), list(i.signals),
                                                  atlases_from_records(i.atlases)[0], i.tr, list(i.sources), i.space)
        self._results.update(_published(published), relmats=relmats)
        return runtime


class _SeedMapsInputSpec(BaseInterfaceInputSpec):
    pre_bold = File(exists=True, mandatory=True, desc="PRE residuals (4D)")
    post_bold = File(exists=True, mandatory=True, desc="POST residuals (4D)")
    mask = File(exists=True, mandatory=True, desc="brain mask")
    signals = InputMultiObject(File(exists=True), mandatory=True, desc="ExtractSignals NPZ of PRE then POST")
    atlases = traits.List(traits.Dict, mandatory=True,
                          desc="the resolved atlas (one): its networks are the seeds (atlas_records)")
    alpha = traits.Float(0.05, usedefault=True, desc="FDR level of the thresholded maps")
    run_key = traits.Str(mandatory=True, desc="run identifier (figure names)")
    space = traits.Dict(desc="the run's space and res entities (for its spatial outputs)")


class _SeedMapsOutputSpec(_PublishedSpec):
    figures = OutputMultiObject(File(exists=True), desc="PNG of the thresholded maps, HTML views")
    figure_entities = traits.List(traits.Dict, desc="entities of each figure")
    summary = File(exists=True, desc="TSV: per seed, voxels significant (up, down), largest |z|")


class SeedMaps(SimpleInterface):
    """Seed-to-voxel correlation maps PRE and POST of every network, the per-voxel test of their difference
    (:func:`~nmflow.prepost.participant.seed_maps`), and their figures
    (:func:`~nmflow.reports.prepost.seed_figures`)."""

    input_spec = _SeedMapsInputSpec
    output_spec = _SeedMapsOutputSpec

    def _run_interface(self, runtime):
        from nmflow.prepost.participant import seed_maps
        from nmflow.reports.prepost import seed_figures

        i, cwd = self.inputs, Path(runtime.cwd)
        atlas = atlases_from_records(i.atlases)[0]
        maps = seed_maps(cwd, i.pre_bold, i.post_bold, i.mask, list(i.signals), atlas, i.alpha, i.space)
        figures = seed_figures(cwd, i.run_key, atlas, maps.thresholded, maps.bold, i.alpha)
        self._results.update(_published(maps.published), summary=maps.summary,
                             figures=[str(p) for p, _ in figures], figure_entities=[e for _, e in figures])
        return runtime


class _PrepostReportInputSpec(BaseInterfaceInputSpec):
    run_key = traits.Str(mandatory=True, desc="run identifier, e.g. sub-01_task-rest")
    stimulus = traits.Dict(mandatory=True, desc="the stimulus used (GLMPrePostSplit)")
    design = File(exists=True, mandatory=True, desc="design matrix TSV")
    segments = File(exists=True, mandatory=True, desc="per-volume segment table")
    r_square = File(exists=True, mandatory=True, desc="variance explained map")
    relmats = File(exists=True, mandatory=True, desc="NPZ of the segments' FC and ΔFC")
    atlases = traits.List(traits.Dict, mandatory=True, desc="the resolved atlas (atlas_records)")
    seed_summary = File(exists=True, mandatory=True, desc="per-seed counts of significant voxels")
    seed_figures = InputMultiObject(File(exists=True), mandatory=True, desc="seed grid PNG then HTML views")
    strategy = traits.Str(mandatory=True, desc="name of the confound strategy")
    alpha = traits.Float(0.05, usedefault=True, desc="FDR level of the seed maps")
    methods = traits.Str("", usedefault=True, desc="the run's methods text (Markdown, with references)")


class _PrepostReportOutputSpec(TraitedSpec):
    figures = OutputMultiObject(File(exists=True), desc="PNG figures")
    figure_entities = traits.List(traits.Dict, desc="entities of each figure")
    report = File(exists=True, desc="HTML QC report of the split")


class PrepostRunReport(SimpleInterface):
    """QC of the split: design matrix, variance explained, FD with the split, volumes per segment, FC change
    (:func:`~nmflow.reports.prepost.run_report`)."""

    input_spec = _PrepostReportInputSpec
    output_spec = _PrepostReportOutputSpec

    def _run_interface(self, runtime):
        from nmflow.prepost.events import Stimulus
        from nmflow.reports.prepost import run_report

        i = self.inputs
        figures, page = run_report(Path(runtime.cwd), i.run_key, Stimulus(**i.stimulus), i.design, i.segments,
                                   i.r_square, i.relmats, atlases_from_records(i.atlases)[0], list(i.seed_figures),
                                   i.seed_summary, i.strategy, i.alpha, i.methods)
        self._results.update(figures=[str(p) for p, _ in figures], figure_entities=[e for _, e in figures],
                             report=str(page))
        return runtime


class _DerivativesInputSpec(BaseInterfaceInputSpec):
    entities = traits.Dict(mandatory=True, desc="the BOLD run's entities (subject, session, task, run, space, res)")
    files = InputMultiObject(File(exists=True), mandatory=True, desc="files with a sidecar")
    metas = traits.List(traits.Dict, mandatory=True, desc="their sidecars")
    file_entities = traits.List(traits.Dict, mandatory=True, desc="their entities beyond the run's")
    figures = InputMultiObject(File(exists=True), mandatory=True, desc="PNG figures and HTML views")
    figure_entities = traits.List(traits.Dict, mandatory=True, desc="their entities")
    report = File(exists=True, mandatory=True, desc="the run's QC page")
    bold = traits.Str(mandatory=True, desc="the BOLD run: its header gives the voxel size of Resolution")
    out_dir = Directory(mandatory=True, desc="derivatives root (OUT_DIR)")


class _DerivativesOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(traits.Str, desc="published files (data and sidecars), relative to OUT_DIR")


class PrepostDerivatives(SimpleInterface):
    """Name every derivative of a run (:class:`~nmflow.interfaces.derivatives.DerivativesDataSink`) in a staging
    folder of OUT_DIR and move them into place at once (a failing run publishes nothing)."""

    input_spec = _DerivativesInputSpec
    output_spec = _DerivativesOutputSpec

    def _run_interface(self, runtime):
        from nmflow.bids_io import resolution_meta
        from nmflow.interfaces.derivatives import publisher

        i = self.inputs
        no_space = {k: v for k, v in i.entities.items() if k not in ("space", "res")}
        written: list[str] = []
        items = list(zip(i.files, i.metas, i.file_entities))
        items += [(f, None, e) for f, e in zip(i.figures, i.figure_entities)] + [(i.report, None, {"desc": "prepost"})]
        resolution = resolution_meta(i.entities, i.bold)  # for the files named with the res entity
        with publisher(i.out_dir, written, check_hdr=False) as sink:
            for path, meta, entities in items:
                if meta is not None and "res" in entities:
                    meta = {**meta, **resolution}
                sink(path, meta, **no_space, **entities)
        self._results["out_files"] = written
        return runtime
