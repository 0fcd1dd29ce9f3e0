"""A run's derivative tables: what each output file holds, its sidecar and its BIDS entities.

:func:`timeseries_tables` and :func:`relmat_tables` write a run's cleaned
region time series and FC matrices as TSV files into a folder and return one
:class:`Table` per file (strategy, then atlas, then metric order); the
participant workflow's sink gives each its BIDS-derivatives name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nmflow import __version__
from nmflow.bids_io import write_relmat
from nmflow.fileio import write_tsv
from nmflow.participant.atlas import Atlas
from nmflow.participant.connectivity import METRICS
from nmflow.participant.denoise import BUTTERWORTH_ORDER, filter_band
from nmflow.participant.settings import CleaningSettings, Strategy

SOFTWARE = f"nmflow {__version__}"
OUTLIERS_META = {
    "censored": {"Description": "1 = volume dropped (non-steady-state or, when scrubbing, high motion)"},
    "motion_outlier": {"Description": "1 = FD or std DVARS above threshold"},
    "non_steady_state": {"Description": "1 = fMRIPrep non-steady-state volume"},
}
STRATEGIES_META = {
    "strategy": {"Description": "denoising strategy (desc- entity of the run's outputs)"},
    "status": {"Description": "ran, or skipped: the strategy could not run on this run and has no outputs",
               "Levels": {"ran": "outputs written", "skipped": "no outputs; see reason"}},
    "reason": {"Description": "why the strategy was skipped (n/a when it ran)"},
}
FEATURE_ORDER = "upper triangle without diagonal, row-major (numpy.triu_indices(n, k=1))"
UNITS = {"psc": "percent signal change (100 x (x - mean) / |mean|, over the kept volumes)",
         "zscore_sample": "z-score (each region's kept volumes have mean 0, sample SD 1)",
         None: "BOLD intensity, as the input (arbitrary units; mean removed)"}


@dataclass(frozen=True)
class Table:
    """One derivative file: where it is, what it holds, its sidecar contents and entities (``suffix`` included).

    ``item`` is ``(strategy, atlas)`` for a time series, ``(strategy, atlas, metric)`` for an FC matrix.
    """

    path: Path
    item: tuple[str, ...]
    meta: dict
    entities: dict = field(default_factory=dict)


def key(*parts: str) -> str:
    """Key of an array in the NPZ files between nodes: ``strategy|atlas|metric``."""
    return "|".join(parts)


def sources(bold: str, mask: str | None, confounds: str) -> list[str]:
    """BIDS URIs (``bids:preprocessed:sub-<s>/[ses-<x>/]func/<name>``, ``preprocessed`` being the input
    dataset named in ``DatasetLinks``) of a run's input files, for ``Sources`` (no mask: CIFTI)."""
    return [f"bids:preprocessed:{_dataset_relative(p)}" for p in (bold, mask, confounds) if p]


def derivative_uri(path: str | Path) -> str:
    """BIDS URI of a file of this dataset (OUT_DIR): ``bids::sub-<s>/[ses-<x>/]func/<name>``."""
    return f"bids::{_dataset_relative(str(path))}"


def cleaning_meta(strategy: Strategy, settings: CleaningSettings, tr: float) -> dict:
    """How a strategy's time series were filtered (Hz) and scaled, and their units, for the sidecar."""
    high, low = filter_band(tr, settings) if strategy.filter else (None, None)
    return {
        "Detrended": strategy.filter, "HighPassCutoffHz": high, "LowPassCutoffHz": low,
        "Filter": (f"Butterworth, order {BUTTERWORTH_ORDER}, forward and backward (nilearn.signal.clean); "
                   "confounds filtered alike" if high or low else None),
        "Standardization": settings.standardize or "none", "Units": UNITS[settings.standardize],
    }


def _dataset_relative(path: str) -> str:
    """``path`` from its ``sub-<label>`` folder on (the path inside the BIDS dataset), else its name."""
    parts = Path(path).parts
    subject = [k for k, part in enumerate(parts[:-1]) if part.startswith("sub-")]
    return "/".join(parts[subject[-1]:]) if subject else Path(path).name


def design_meta(strategy: Strategy, source_uris: list[str]) -> dict:
    """Sidecar of a strategy's ``_design.tsv`` (the regressed confounds, ``(n_volumes, n_confounds)``)."""
    return {"Description": f"Confounds regressed by strategy {strategy.name!r}: {strategy.description}",
            "Patterns": list(strategy.confounds), "Sources": source_uris, "Software": SOFTWARE}


def strategies_table(folder: Path, strategies: list[Strategy], done: list[str], skipped: list[str]) -> Path:
    """Write ``folder/strategies.tsv``: every strategy of the call, whether it ran on this run and why not.

    ``skipped`` holds the reasons of the strategies not in ``done``, in the
    order of ``strategies``; the group level reads them to say why a subject
    lacks a variant.
    """
    reasons = iter(skipped)
    rows = [(s.name, "ran", None) if s.name in done else (s.name, "skipped", next(reasons, None))
            for s in strategies]
    path = Path(folder) / "strategies.tsv"
    write_tsv(path, pd.DataFrame(rows, columns=list(STRATEGIES_META)))
    return path


def _atlas_entities(atlas: Atlas) -> dict:
    return {k: atlas.entities[k] for k in ("atlas", "seg") if atlas.entities.get(k) is not None}


def _networks_meta(atlas: Atlas) -> dict:
    """``RegionNetworks`` (region -> network) and ``NetworkSource``, which the group report reads; empty when unknown."""
    if atlas.networks is None:
        return {}
    return {"RegionNetworks": dict(zip(atlas.names, atlas.networks)), "NetworkSource": atlas.network_source}


def timeseries_tables(
    folder: Path, cleaned: dict[str, np.ndarray], coverage: dict[str, np.ndarray], atlases: list[Atlas],
    strategies: list[Strategy], tr: float, source_uris: list[str], settings: CleaningSettings,
    resolution: dict | None = None,
) -> list[Table]:
    """Cleaned region time series ``(n_kept, n_regions)`` as TSV (region names as header).

    Parameters
    ----------
    folder : Path
        Where the TSV files are written.
    cleaned : dict
        ``key(strategy, atlas)`` -> ``(n_kept, n_regions)`` signals and ``key("kept", strategy)`` -> kept
        volume indices.
    coverage : dict
        Atlas name -> fraction (0-1) of each region's voxels inside the brain mask, ``(n_regions,)``.
    atlases, strategies : list
        One table per strategy and atlas, in that order.
    tr : float
        Repetition time (s).
    source_uris : list of str
        BIDS URIs of the run's inputs (:func:`sources`).
    settings : CleaningSettings
        The filter (Hz) and scaling the strategies shared (:func:`cleaning_meta`).
    resolution : dict, optional
        :func:`nmflow.bids_io.resolution_meta` of the run (empty: no ``res`` entity).
    """
    tables = []
    for strategy in strategies:
        kept = cleaned[key("kept", strategy.name)]
        for atlas in atlases:
            path = Path(folder) / f"{strategy.name}_{atlas.name}_timeseries.tsv"
            write_tsv(path, pd.DataFrame(cleaned[key(strategy.name, atlas.name)], columns=atlas.names), "%.8g")
            tables.append(Table(path, (strategy.name, atlas.name), {
                "Sources": list(source_uris), "RepetitionTime": tr, "SamplingFrequency": 1.0 / tr,
                "Atlas": atlas.name, "AtlasImage": Path(atlas.image).name,
                "DenoisingStrategy": {"Name": strategy.name, "Description": strategy.description},
                **cleaning_meta(strategy, settings, tr), **(resolution or {}),
                "VolumesKept": int(kept.size), "KeptVolumeIndices": [int(k) for k in kept],
                "RegionCoverage": dict(zip(atlas.names, np.round(coverage[atlas.name], 4).tolist())),
                **_networks_meta(atlas), "Software": SOFTWARE,
            }, {"suffix": "timeseries", "desc": strategy.name, **_atlas_entities(atlas)}))
    return tables


def relmat_tables(
    folder: Path, relmats: dict[str, np.ndarray], atlases: list[Atlas], strategies: list[Strategy],
    metrics: list[str], node_files: dict[tuple[str, str], str], resolution: dict | None = None,
) -> list[Table]:
    """FC matrices ``(n_regions, n_regions)`` as ``node``-column TSV, per strategy, atlas and metric.

    ``relmats`` maps ``key(strategy, atlas, metric)`` to a matrix; ``node_files`` maps
    ``(strategy, atlas)`` to the path, inside OUT_DIR, of the time series the matrix was computed from
    (``NodeFiles`` names it, ``Sources`` gives its BIDS URI); ``resolution`` is
    :func:`nmflow.bids_io.resolution_meta`'s.
    """
    tables = []
    for strategy in strategies:
        for atlas in atlases:
            for metric in metrics:
                path = Path(folder) / f"{strategy.name}_{atlas.name}_{metric}_relmat.tsv"
                write_relmat(path, relmats[key(strategy.name, atlas.name, metric)], atlas.names)
                tables.append(Table(path, (strategy.name, atlas.name, metric), {
                    "Directed": False, "Weighted": True, "ValidDiagonal": METRICS[metric].valid_diagonal,
                    "RelationshipMeasure": METRICS[metric].description, "Software": SOFTWARE,
                    "NodeFiles": [Path(node_files[strategy.name, atlas.name]).name],
                    "Sources": [derivative_uri(node_files[strategy.name, atlas.name])],
                    "FeatureOrder": FEATURE_ORDER, **(resolution or {}),
                }, {"suffix": "relmat", "desc": strategy.name, **_atlas_entities(atlas), "meas": metric}))
    return tables
