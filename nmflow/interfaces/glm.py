"""Nipype interfaces of the stimulus study's participant level: GLM and split, segment FC, seed maps, report,
and the publication of a run's derivatives.

Each science interface returns, besides its working files, the lists
:class:`PrepostDerivatives` names and publishes: ``out_files`` (files with a
sidecar), ``meta`` (the sidecars) and ``entities`` (their BIDS entities beyond
the run's).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec, Directory, File, InputMultiObject, OutputMultiObject, SimpleInterface, TraitedSpec,
    isdefined, traits,
)

from nmflow.bids_io import resolution_meta
from nmflow.fileio import load_npz, save_npz
from nmflow.interfaces.io import atlases_from_records
from nmflow.participant.tables import SOFTWARE


class _SinkListsSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True), desc="files to publish (with a sidecar)")
    meta = traits.List(traits.Dict, desc="their sidecars")
    entities = traits.List(traits.Dict, desc="their entities (suffix, desc, meas, stat, atlas, seg ...)")


def _add(out: dict, path: Path, meta: dict, **entities) -> None:
    out["out_files"].append(str(path))
    out["meta"].append({**meta, "Software": SOFTWARE})
    out["entities"].append({k: v for k, v in entities.items() if v is not None})


class _GLMInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True, desc="fMRIPrep desc-preproc_bold image (4D)")
    mask = File(exists=True, mandatory=True, desc="its desc-brain_mask image")
    confounds = File(mandatory=True, desc="fMRIPrep desc-confounds_timeseries.tsv (checked when read)")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    events = File(desc="the run's events.tsv (none: use onset and duration)")
    onset = traits.Either(None, traits.Float, default=None, usedefault=True, desc="--stimulus-onset (s)")
    duration = traits.Float(0.0, usedefault=True, desc="--stimulus-duration (s)")
    transition = traits.Float(mandatory=True, desc="seconds excluded on each side of the stimulus")
    strategy = traits.Dict(mandatory=True, desc="the denoising strategy whose confounds enter the design (a record)")
    settings = traits.Dict(mandatory=True, desc="CleaningSettings (high-pass, censoring, --min-volumes)")
    sources = traits.List(traits.Str, mandatory=True, desc="BIDS URIs of the run's inputs")
    space = traits.Dict(desc="the run's space and res entities (for its spatial outputs)")


class _GLMOutputSpec(_SinkListsSpec):
    pre_bold = File(exists=True, desc="GLM residuals of the PRE volumes (4D NIfTI, percent signal change)")
    post_bold = File(exists=True, desc="GLM residuals of the POST volumes")
    design = File(exists=True, desc="design matrix (TSV)")
    segments = File(exists=True, desc="per-volume table: time, segment, framewise displacement, censored")
    r_square = File(exists=True, desc="variance explained by the design (NIfTI)")
    stimulus = traits.Dict(desc="the stimulus used (onset, duration, trial_type, source)")


class GLMPrePostSplit(SimpleInterface):
    """Fit the run's GLM voxel-wise (stimulus, confounds, drift), keep the residuals, split them into PRE and POST."""

    input_spec = _GLMInputSpec
    output_spec = _GLMOutputSpec

    def _run_interface(self, runtime):
        from nmflow.errors import NmflowInputError
        from nmflow.interfaces.io import strategies_from_records
        from nmflow.participant.denoise import censoring, read_confounds, select_confounds
        from nmflow.participant.settings import CleaningSettings
        from nmflow.prepost.events import check_within_run, stimulus_for_run
        from nmflow.prepost.glm import design_matrix, fit_glm, read_bold, start_time
        from nmflow.prepost.split import check_segments, segment_labels

        i, cwd = self.inputs, Path(runtime.cwd)
        settings = CleaningSettings(**i.settings)
        strategy = strategies_from_records([i.strategy])[0]
        events = i.events if isdefined(i.events) else None
        stimulus = stimulus_for_run(events, i.onset, i.duration, Path(i.bold).name)
        table = read_confounds(i.confounds)
        bold = read_bold(i.bold, i.mask)
        n_volumes = bold.data.shape[0]
        if len(table) != n_volumes:
            raise NmflowInputError(i.confounds, f"confounds file has {len(table)} rows but the BOLD has "
                                                f"{n_volumes} volumes")
        check_within_run(stimulus, n_volumes, i.tr, events or i.bold)
        outliers = censoring(table, strategy, settings)
        censored = outliers["censored"].to_numpy() == 1
        times = start_time(i.bold) + np.arange(n_volumes) * i.tr
        labels = segment_labels(times, stimulus, i.transition, censored)
        counts = check_segments(labels, settings.min_volumes, i.bold)
        design = design_matrix(times, stimulus, select_confounds(table, strategy, i.confounds), settings.high_pass)
        fit = fit_glm(bold.data, design.to_numpy(), np.flatnonzero(~censored))
        row = {volume: k for k, volume in enumerate(fit.fitted)}
        out = {"out_files": [], "meta": [], "entities": []}
        for segment in ("pre", "post"):
            rows = [row[v] for v in np.flatnonzero(labels == segment)]
            img = bold.image(fit.residuals[rows])
            img.header.set_zooms(img.header.get_zooms()[:3] + (i.tr,))
            img.to_filename(cwd / f"{segment}_residuals.nii")
            self._results[f"{segment}_bold"] = str(cwd / f"{segment}_residuals.nii")
        paths = {"events": cwd / "events.tsv", "design": cwd / "design.tsv", "segments": cwd / "segments.tsv",
                 "r_square": cwd / "r_square.nii.gz"}
        stimulus.table().to_csv(paths["events"], sep="\t", index=False)
        design.to_csv(paths["design"], sep="\t", index=False, float_format="%.8g")
        pd.DataFrame({"volume": np.arange(n_volumes), "time": times, "segment": labels,
                      "framewise_displacement": outliers["framewise_displacement"],
                      "censored": censored.astype(int)}).to_csv(paths["segments"], sep="\t", index=False,
                                                                na_rep="n/a", float_format="%.6g")
        bold.image(fit.r_square).to_filename(paths["r_square"])
        sources = list(i.sources)
        _add(out, paths["events"], {"Description": "The stimulus modelled by the GLM and around which the run was "
                                                   "split", "StimulusSource": stimulus.source,
                                    "onset": {"Units": "s"}, "duration": {"Units": "s"}},
             suffix="events", desc="stimulus")
        _add(out, paths["design"], {"Description": f"GLM design (nilearn make_first_level_design_matrix): "
                                                   f"{stimulus.trial_type} (Glover HRF), confounds of strategy "
                                                   f"{strategy.name!r} ({strategy.description}), cosine drift "
                                                   f"(high-pass {settings.high_pass} Hz), constant",
                                    "Sources": sources, "VolumesFitted": int(fit.fitted.size)},
             suffix="design", desc="glm")
        _add(out, paths["segments"], {
            "Description": f"Volume labels: pre (before onset - {i.transition:g} s), post (from onset + duration + "
                           f"{i.transition:g} s), transition, censored (left out of the GLM)",
            "VolumesPerSegment": counts, "TransitionSeconds": i.transition, "Sources": sources,
            "time": {"Units": "s"}, "framewise_displacement": {"Units": "mm"}}, suffix="segments", desc="prepost")
        _add(out, paths["r_square"], {"Description": "Variance explained by the GLM design, var(fitted) / var(data) "
                                                     "per voxel (as nilearn FirstLevelModel.r_square_)",
                                      "Sources": sources}, suffix="statmap", stat="rsquare", **i.space)
        self._results.update(out, design=str(paths["design"]), segments=str(paths["segments"]),
                             r_square=str(paths["r_square"]), stimulus=asdict(stimulus))
        return runtime


class _SegmentFCInputSpec(BaseInterfaceInputSpec):
    signals = InputMultiObject(File(exists=True), mandatory=True,
                               desc="ExtractSignals NPZ of the PRE then the POST residuals")
    atlases = traits.List(traits.Dict, mandatory=True, desc="the resolved atlas (one) (atlas_records)")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    sources = traits.List(traits.Str, mandatory=True, desc="BIDS URIs of the run's inputs")
    space = traits.Dict(desc="the run's space and res entities (for its spatial outputs)")


class _SegmentFCOutputSpec(_SinkListsSpec):
    relmats = File(exists=True, desc="NPZ: 'pre|metric', 'post|metric', 'delta|metric' -> (n_regions, n_regions)")


class SegmentConnectivity(SimpleInterface):
    """Network time series of PRE and POST, their FC by every metric and ΔFC = z(POST) - z(PRE)."""

    input_spec = _SegmentFCInputSpec
    output_spec = _SegmentFCOutputSpec

    def _run_interface(self, runtime):
        from nmflow.bids_io import write_relmat
        from nmflow.participant.connectivity import METRICS
        from nmflow.prepost.change import PREPOST_METRICS, delta_fc, segment_fc

        atlas = atlases_from_records(self.inputs.atlases)[0]
        cwd, out, arrays = Path(runtime.cwd), {"out_files": [], "meta": [], "entities": []}, {}
        fc = {}
        for segment, path in zip(("pre", "post"), self.inputs.signals):
            ts = load_npz(path)[0][atlas.name]
            fc[segment] = segment_fc(ts)
            table = cwd / f"{segment}_timeseries.tsv"
            pd.DataFrame(ts, columns=atlas.names).to_csv(table, sep="\t", index=False, na_rep="n/a",
                                                         float_format="%.8g")
            _add(out, table, {"Description": f"Mean GLM residual (percent signal change) of each network, "
                                             f"{segment.upper()} segment", "Sources": list(self.inputs.sources),
                              "RepetitionTime": self.inputs.tr, "Atlas": atlas.name, "Volumes": int(ts.shape[0])},
                 suffix="timeseries", desc=segment, **self.inputs.space, **atlas.entities)
        fc["delta"] = {m: delta_fc(fc["pre"][m], fc["post"][m]) for m in PREPOST_METRICS}
        for metric in PREPOST_METRICS:
            for segment in ("pre", "post", "delta"):
                matrix = fc[segment][metric]
                arrays[f"{segment}|{metric}"] = matrix
                table = cwd / f"{segment}_{metric}_relmat.tsv"
                write_relmat(table, matrix, atlas.names)
                measure = METRICS[metric].description
                _add(out, table, {"Directed": False, "Weighted": True, "ValidDiagonal": False,
                                  "RelationshipMeasure": (f"Fisher z of the POST segment's {measure} minus the PRE "
                                                          f"segment's" if segment == "delta"
                                                          else f"{measure}, {segment.upper()} segment"),
                                  "NodeFiles": [f"{segment}_timeseries.tsv"] if segment != "delta" else []},
                     suffix="relmat", desc=segment, meas=metric, **self.inputs.space, **atlas.entities)
        self._results.update(out, relmats=save_npz(cwd / "relmats.npz", arrays))
        return runtime


class _SeedMapsInputSpec(BaseInterfaceInputSpec):
    pre_bold = File(exists=True, mandatory=True, desc="PRE residuals (4D)")
    post_bold = File(exists=True, mandatory=True, desc="POST residuals (4D)")
    mask = File(exists=True, mandatory=True, desc="brain mask")
    signals = InputMultiObject(File(exists=True), mandatory=True, desc="ExtractSignals NPZ of PRE then POST")
    atlases = traits.List(traits.Dict, mandatory=True, desc="the resolved atlas (one): its networks are the seeds (atlas_records)")
    alpha = traits.Float(0.05, usedefault=True, desc="FDR level of the thresholded maps")
    run_key = traits.Str(mandatory=True, desc="run identifier (figure names)")
    space = traits.Dict(desc="the run's space and res entities (for its spatial outputs)")


class _SeedMapsOutputSpec(_SinkListsSpec):
    figures = OutputMultiObject(File(exists=True), desc="PNG of the thresholded maps, HTML views")
    figure_entities = traits.List(traits.Dict, desc="entities of each figure")
    summary = File(exists=True, desc="TSV: per seed, voxels significant (up, down), largest |z|")


class SeedMaps(SimpleInterface):
    """Seed-to-voxel correlation maps PRE and POST of every network, the per-voxel test of their difference."""

    input_spec = _SeedMapsInputSpec
    output_spec = _SeedMapsOutputSpec

    def _run_interface(self, runtime):
        from nmflow.prepost.glm import read_bold
        from nmflow.prepost.seedmaps import seed_change
        from nmflow.reports import prepost as report

        atlas = atlases_from_records(self.inputs.atlases)[0]
        cwd, alpha = Path(runtime.cwd), self.inputs.alpha
        pre, post = (read_bold(b, self.inputs.mask) for b in (self.inputs.pre_bold, self.inputs.post_bold))
        seeds = [load_npz(p)[0][atlas.name] for p in self.inputs.signals]
        change = seed_change(seeds[0], pre.data, seeds[1], post.data)
        thresholded = change.significant(alpha)
        out = {"out_files": [], "meta": [], "entities": []}
        base = {"Seeds": atlas.names, "SeedDefinition": "mean GLM residual of the network (volume k = seed k)"}
        for values, desc, stat, text in (
                (change.r_pre, "pre", "r", "Pearson correlation with the seed, PRE segment"),
                (change.r_post, "post", "r", "Pearson correlation with the seed, POST segment"),
                (change.z, "delta", "z", "Fisher z difference POST - PRE over sqrt(1/(n_pre - 3) + 1/(n_post - 3)), "
                                         "n = Bartlett effective samples"),
                (change.p, "delta", "p", "two-sided p of z"),
                (thresholded, "deltafdr", "z", f"z where the Benjamini-Hochberg q over the seed's voxels < {alpha}, "
                                               "else 0")):
            path = cwd / f"{desc}_{stat}.nii.gz"
            pre.image(np.nan_to_num(values)).to_filename(path)
            _add(out, path, {**base, "Description": text}, suffix="statmap", desc=desc, stat=stat, **self.inputs.space,
                 **atlas.entities)
        summary = pd.DataFrame({"seed": atlas.names, "voxels_up": (thresholded > 0).sum(axis=1),
                                "voxels_down": (thresholded < 0).sum(axis=1),
                                "max_abs_z": np.nan_to_num(np.nanmax(np.abs(change.z), axis=1, initial=0))})
        summary.to_csv(cwd / "seed_summary.tsv", sep="\t", index=False, float_format="%.4g")
        stem = f"{self.inputs.run_key}_{'_'.join(f'{k}-{v}' for k, v in atlas.entities.items())}"
        figures = [report.seed_grid(cwd / f"{stem}_desc-deltafdr_stat-z_statmap.png", thresholded, pre,
                                    atlas.names)]
        entities = [{"datatype": "figures", "suffix": "statmap", "desc": "deltafdr", "stat": "z", **atlas.entities}]
        changed = np.flatnonzero((thresholded != 0).any(axis=1))
        background = report.template_on(pre.image(thresholded[0])) if changed.size else None
        for k in changed:
            name = f"seed{k + 1:02d}"
            figures.append(report.seed_view(cwd / f"{stem}_desc-{name}_stat-z_statmap.html", pre.image(thresholded[k]),
                                            f"{atlas.names[k]}: ΔFC z, q < {alpha}", background))
            entities.append({"datatype": "figures", "suffix": "statmap", "desc": name, "stat": "z", **atlas.entities})
        self._results.update(out, figures=[str(f) for f in figures], figure_entities=entities,
                             summary=str(cwd / "seed_summary.tsv"))
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
    """QC of the split: design matrix, variance explained, FD with the split, volumes per segment, FC change."""

    input_spec = _PrepostReportInputSpec
    output_spec = _PrepostReportOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib

        from nmflow.prepost.events import Stimulus
        from nmflow.reports import prepost as report

        i, cwd, key = self.inputs, Path(runtime.cwd), self.inputs.run_key
        atlas = atlases_from_records(i.atlases)[0]
        stimulus = Stimulus(**i.stimulus)
        segments = pd.read_csv(i.segments, sep="\t", na_values="n/a")
        design = pd.read_csv(i.design, sep="\t")
        relmats = load_npz(i.relmats)[0]
        atlas_part = "_".join(f"{k}-{v}" for k, v in atlas.entities.items())
        figures = {
            "design": (report.design_figure(cwd / f"{key}_desc-glm_design.png", design),
                       {"suffix": "design", "desc": "glm"}),
            "r_square": (report.r_square_figure(cwd / f"{key}_stat-rsquare_statmap.png", nib.load(i.r_square)),
                         {"suffix": "statmap", "stat": "rsquare"}),
            "segments": (report.segments_figure(cwd / f"{key}_desc-prepost_segments.png", segments, stimulus),
                         {"suffix": "segments", "desc": "prepost"}),
            "change": (report.change_figure(cwd / f"{key}_{atlas_part}_desc-delta_relmat.png", relmats, atlas.names),
                       {"suffix": "relmat", "desc": "delta", **atlas.entities}),
        }
        seed_grid, views = Path(i.seed_figures[0]), [Path(v) for v in i.seed_figures[1:]]
        page = report.write_run_report(cwd / f"{key}_desc-prepost.html", key, stimulus, segments, i.strategy,
                                       {t: p for t, (p, _) in figures.items()}, seed_grid,
                                       pd.read_csv(i.seed_summary, sep="\t"), views, i.alpha, i.methods)
        self._results.update(figures=[str(p) for p, _ in figures.values()],
                             figure_entities=[{"datatype": "figures", **e} for _, e in figures.values()],
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
