"""The stimulus study's participant level, one run at a time: the GLM and the split, the segments' FC, the seed maps.

Each step reads the run's files, writes its working files into ``folder`` and
returns them, with the derivatives it asks to publish (:class:`Published`:
each file, its sidecar and its BIDS entities beyond the run's).  The Nipype
interfaces of :mod:`nmflow.interfaces.prepost_participant` call one step each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.bids_io import write_relmat
from nmflow.errors import NmflowInputError
from nmflow.fileio import load_npz, save_npz, write_tsv
from nmflow.participant.atlas import Atlas
from nmflow.participant.connectivity import METRICS
from nmflow.participant.denoise import censoring, read_confounds, select_confounds
from nmflow.participant.settings import CleaningSettings, Strategy
from nmflow.participant.tables import SOFTWARE
from nmflow.prepost.change import PREPOST_METRICS, delta_fc, segment_fc
from nmflow.prepost.events import Stimulus, check_within_run, stimulus_for_run
from nmflow.prepost.glm import BoldMatrix, design_matrix, fit_glm, read_bold, start_time
from nmflow.prepost.seedmaps import seed_change
from nmflow.prepost.settings import PrepostOptions
from nmflow.prepost.split import check_segments, segment_labels

SEGMENTS = ("pre", "post")


@dataclass
class Published:
    """Derivatives to publish: ``files[k]`` with the sidecar ``metas[k]`` and the entities ``entities[k]``."""

    files: list[str] = field(default_factory=list)
    metas: list[dict] = field(default_factory=list)
    entities: list[dict] = field(default_factory=list)

    def add(self, path: Path, meta: dict, **entities) -> None:
        """Publish ``path`` with ``meta`` (plus the software) and the ``entities`` that are not None."""
        self.files.append(str(path))
        self.metas.append({**meta, "Software": SOFTWARE})
        self.entities.append({k: v for k, v in entities.items() if v is not None})


@dataclass
class RunSplit:
    """The GLM of a run and its split: PRE and POST residual images (4D NIfTI, percent signal change), the design
    and the per-volume segment table (TSV), the variance explained (NIfTI), the stimulus used."""

    pre_bold: str
    post_bold: str
    design: str
    segments: str
    r_square: str
    stimulus: Stimulus
    published: Published


def glm_split(folder: Path, bold: str, mask: str, confounds: str, tr: float, events: str | None,
              options: PrepostOptions, strategy: Strategy, settings: CleaningSettings, sources: list[str],
              space: dict) -> RunSplit:
    """Fit the run's GLM voxel-wise (stimulus, the ``strategy``'s confounds, drift), keep the residuals, split them
    into PRE and POST.

    Parameters
    ----------
    folder : Path
        Where the working files go.
    bold, mask, confounds : str
        fMRIPrep's ``desc-preproc_bold`` (4D), its ``desc-brain_mask`` and ``desc-confounds_timeseries.tsv``.
    tr : float
        Repetition time (s).
    events : str or None
        The run's ``events.tsv``; None uses ``options.onset`` and ``options.duration``.
    options : PrepostOptions
        The stimulus and the transition (s) left out on each side of it.
    strategy, settings : Strategy, CleaningSettings
        The confounds of the design; high-pass (Hz), censoring and ``min_volumes`` per segment.
    sources : list of str
        BIDS URIs of the run's inputs (the sidecars' ``Sources``).
    space : dict
        The run's ``space`` and ``res`` entities (of its spatial outputs).

    Raises
    ------
    NmflowInputError
        Confounds and BOLD of different lengths, a stimulus outside the run, a segment with too few volumes.
    """
    stimulus = stimulus_for_run(events, options.onset, options.duration, Path(bold).name)
    table = read_confounds(confounds)
    data = read_bold(bold, mask)
    n_volumes = data.data.shape[0]
    if len(table) != n_volumes:
        raise NmflowInputError(confounds, f"confounds file has {len(table)} rows but the BOLD has "
                                          f"{n_volumes} volumes")
    check_within_run(stimulus, n_volumes, tr, events or bold)
    outliers = censoring(table, strategy, settings)
    censored = outliers["censored"].to_numpy() == 1
    times = start_time(bold) + np.arange(n_volumes) * tr
    labels = segment_labels(times, stimulus, options.transition, censored)
    counts = check_segments(labels, settings.min_volumes, bold)
    design = design_matrix(times, stimulus, select_confounds(table, strategy, confounds), settings.high_pass)
    fit = fit_glm(data.data, design.to_numpy(), np.flatnonzero(~censored))
    row = {volume: k for k, volume in enumerate(fit.fitted)}
    residuals = {}
    for segment in SEGMENTS:
        rows = [row[v] for v in np.flatnonzero(labels == segment)]
        img = data.image(fit.residuals[rows])
        img.header.set_zooms(img.header.get_zooms()[:3] + (tr,))
        residuals[segment] = folder / f"{segment}_residuals.nii"
        img.to_filename(residuals[segment])
    paths = {"events": folder / "events.tsv", "design": folder / "design.tsv", "segments": folder / "segments.tsv",
             "r_square": folder / "r_square.nii.gz"}
    write_tsv(paths["events"], stimulus.table(), float_format=None)
    write_tsv(paths["design"], design, "%.8g")
    write_tsv(paths["segments"], pd.DataFrame({
        "volume": np.arange(n_volumes), "time": times, "segment": labels,
        "framewise_displacement": outliers["framewise_displacement"], "censored": censored.astype(int)}))
    data.image(fit.r_square).to_filename(paths["r_square"])
    published = Published()
    published.add(paths["events"], {"Description": "The stimulus modelled by the GLM and around which the run was "
                                                   "split", "StimulusSource": stimulus.source,
                                    "onset": {"Units": "s"}, "duration": {"Units": "s"}},
                  suffix="events", desc="stimulus")
    published.add(paths["design"], {"Description": f"GLM design (nilearn make_first_level_design_matrix): "
                                                   f"{stimulus.trial_type} (Glover HRF), confounds of strategy "
                                                   f"{strategy.name!r} ({strategy.description}), cosine drift "
                                                   f"(high-pass {settings.high_pass} Hz), constant",
                                    "Sources": sources, "VolumesFitted": int(fit.fitted.size)},
                  suffix="design", desc="glm")
    published.add(paths["segments"], {
        "Description": f"Volume labels: pre (before onset - {options.transition:g} s), post (from onset + duration "
                       f"+ {options.transition:g} s), transition, censored (left out of the GLM)",
        "VolumesPerSegment": counts, "TransitionSeconds": options.transition, "Sources": sources,
        "time": {"Units": "s"}, "framewise_displacement": {"Units": "mm"}}, suffix="segments", desc="prepost")
    published.add(paths["r_square"], {"Description": "Variance explained by the GLM design, var(fitted) / var(data) "
                                                     "per voxel (as nilearn FirstLevelModel.r_square_)",
                                      "Sources": sources}, suffix="statmap", stat="rsquare", **space)
    return RunSplit(str(residuals["pre"]), str(residuals["post"]), str(paths["design"]), str(paths["segments"]),
                    str(paths["r_square"]), stimulus, published)


def segment_signals(signals: list[str], atlas: Atlas) -> list[np.ndarray]:
    """The network time series ``(n_volumes, n_networks)`` of PRE then POST, from the participant level's
    signal files (:class:`~nmflow.interfaces.parcellate.ExtractSignals`)."""
    return [load_npz(path)[0][atlas.name] for path in signals]


def segment_connectivity(folder: Path, signals: list[str], atlas: Atlas, tr: float, sources: list[str],
                         space: dict) -> tuple[str, Published]:
    """FC of PRE and POST by every metric of :data:`~nmflow.prepost.change.PREPOST_METRICS` and
    ΔFC = z(POST) - z(PRE): the network time series and relmat TSVs to publish, and one NPZ
    ``{"pre|metric", "post|metric", "delta|metric": (n_networks, n_networks)}`` (its path first).

    ``signals`` are the signal files of PRE then POST (:func:`segment_signals`).
    """
    published, arrays, fc = Published(), {}, {}
    for segment, ts in zip(SEGMENTS, segment_signals(signals, atlas)):
        fc[segment] = segment_fc(ts)
        table = folder / f"{segment}_timeseries.tsv"
        write_tsv(table, pd.DataFrame(ts, columns=atlas.names), "%.8g")
        published.add(table, {"Description": f"Mean GLM residual (percent signal change) of each network, "
                                             f"{segment.upper()} segment", "Sources": sources,
                              "RepetitionTime": tr, "Atlas": atlas.name, "Volumes": int(ts.shape[0])},
                      suffix="timeseries", desc=segment, **space, **atlas.entities)
    fc["delta"] = {m: delta_fc(fc["pre"][m], fc["post"][m]) for m in PREPOST_METRICS}
    for metric in PREPOST_METRICS:
        for segment in (*SEGMENTS, "delta"):
            matrix = fc[segment][metric]
            arrays[f"{segment}|{metric}"] = matrix
            table = folder / f"{segment}_{metric}_relmat.tsv"
            write_relmat(table, matrix, atlas.names)
            measure = METRICS[metric].description
            published.add(table, {"Directed": False, "Weighted": True, "ValidDiagonal": False,
                                  "RelationshipMeasure": (f"Fisher z of the POST segment's {measure} minus the PRE "
                                                          f"segment's" if segment == "delta"
                                                          else f"{measure}, {segment.upper()} segment"),
                                  "NodeFiles": [f"{segment}_timeseries.tsv"] if segment != "delta" else []},
                          suffix="relmat", desc=segment, meas=metric, **space, **atlas.entities)
    return save_npz(folder / "relmats.npz", arrays), published


@dataclass
class RunSeedMaps:
    """The seed maps of a run: ``thresholded`` ``(n_seeds, n_voxels)`` (ΔFC z where q < alpha, else 0), the
    PRE residuals (their grid, for the figures), the per-seed summary TSV and the maps to publish."""

    thresholded: np.ndarray
    bold: BoldMatrix
    summary: str
    published: Published


def seed_maps(folder: Path, pre_bold: str, post_bold: str, mask: str, signals: list[str], atlas: Atlas,
              alpha: float, space: dict) -> RunSeedMaps:
    """Seed-to-voxel correlation maps PRE and POST of every network (``signals``: :func:`segment_signals`), the
    per-voxel test of their difference, its Benjamini-Hochberg thresholded map at ``alpha``, and a summary per
    seed (voxels up and down, largest ``|z|``)."""
    pre, post = (read_bold(b, mask) for b in (pre_bold, post_bold))
    seeds = segment_signals(signals, atlas)
    change = seed_change(seeds[0], pre.data, seeds[1], post.data)
    thresholded = change.significant(alpha)
    published = Published()
    base = {"Seeds": atlas.names, "SeedDefinition": "mean GLM residual of the network (volume k = seed k)"}
    for values, desc, stat, text in (
            (change.r_pre, "pre", "r", "Pearson correlation with the seed, PRE segment"),
            (change.r_post, "post", "r", "Pearson correlation with the seed, POST segment"),
            (change.z, "delta", "z", "Fisher z difference POST - PRE over sqrt(1/(n_pre - 3) + 1/(n_post - 3)), "
                                     "n = Bartlett effective samples"),
            (change.p, "delta", "p", "two-sided p of z"),
            (thresholded, "deltafdr", "z", f"z where the Benjamini-Hochberg q over the seed's voxels < {alpha}, "
                                           "else 0")):
        path = folder / f"{desc}_{stat}.nii.gz"
        pre.image(np.nan_to_num(values)).to_filename(path)
        published.add(path, {**base, "Description": text}, suffix="statmap", desc=desc, stat=stat, **space,
                      **atlas.entities)
    summary = write_tsv(folder / "seed_summary.tsv", pd.DataFrame({
        "seed": atlas.names, "voxels_up": (thresholded > 0).sum(axis=1), "voxels_down": (thresholded < 0).sum(axis=1),
        "max_abs_z": np.nan_to_num(np.nanmax(np.abs(change.z), axis=1, initial=0))}), "%.4g")
    return RunSeedMaps(thresholded, pre, summary, published)
