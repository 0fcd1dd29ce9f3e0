"""Write one run's participant-level derivatives (BIDS names + JSON sidecars), atomically.

Everything of a run is first written to a staging folder inside OUT_DIR and
moved into place only when all files exist, so a failing run leaves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from nmflow import __version__
from nmflow.atlas import Atlas
from nmflow.bids_io import derivative_path, write_relmat
from nmflow.connectivity import METRICS
from nmflow.denoise import Strategy



def _json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=float))


def write_run_outputs(
    out_dir: str | Path, entities: dict, source_files: dict, tr: float, atlases: list[Atlas],
    strategies: list[Strategy], metrics: list[str], cleaned: dict, relmats: dict, coverage: dict,
    design_files: list[str], outlier_files: list[str], figures: list[str], report_html: str,
) -> list[Path]:
    """Write time series, relmats, design/outlier tables, figures and the HTML report of one run.

    ``cleaned`` maps ``"strategy|atlas"`` to ``(n_kept, n_regions)`` and ``"kept|strategy"``
    to kept volume indices; ``relmats`` maps ``"strategy|atlas|metric"`` to ``(n, n)``.
    Returns the final paths, relative to ``out_dir``.
    """
    out_dir = Path(out_dir)
    staging = out_dir / ".staging" / uuid.uuid4().hex
    written: list[Path] = []

    def target(ents: dict, suffix: str, ext: str) -> Path:
        path = derivative_path(staging, ents, suffix, ext)
        path.parent.mkdir(parents=True, exist_ok=True)
        written.append(path.relative_to(staging))
        return path

    sources = [f"bids:preprocessed:{Path(p).name}" for p in source_files.values()]
    for strategy, design, outliers in zip(strategies, design_files, outlier_files):
        ents = {**entities, "desc": strategy.name}
        ents.pop("space", None), ents.pop("res", None)
        shutil.copyfile(design, target(ents, "design", ".tsv"))
        _json(target(ents, "design", ".json"), {
            "Description": f"Confounds regressed by strategy {strategy.name!r}: {strategy.description}",
            "Patterns": list(strategy.confounds), "Sources": sources, "Software": f"nmflow {__version__}"})
        shutil.copyfile(outliers, target(ents, "outliers", ".tsv"))
        _json(target(ents, "outliers", ".json"), {
            "censored": {"Description": "1 = volume dropped (non-steady-state or, when scrubbing, high motion)"},
            "motion_outlier": {"Description": "1 = FD or std DVARS above threshold"},
            "non_steady_state": {"Description": "1 = fMRIPrep non-steady-state volume"}})
        kept = cleaned[f"kept|{strategy.name}"]
        for atlas in atlases:
            aents = {**entities, **atlas.entities, "desc": strategy.name}
            ts_path = target(aents, "timeseries", ".tsv")
            pd.DataFrame(cleaned[f"{strategy.name}|{atlas.name}"], columns=atlas.names).to_csv(
                ts_path, sep="\t", index=False, na_rep="n/a", float_format="%.8g")
            cov = coverage[atlas.name]
            _json(target(aents, "timeseries", ".json"), {
                "Sources": sources, "RepetitionTime": tr, "SamplingFrequency": 1.0 / tr,
                "Atlas": atlas.name, "AtlasImage": Path(atlas.image).name,
                "DenoisingStrategy": {"Name": strategy.name, "Description": strategy.description},
                "VolumesKept": int(kept.size), "KeptVolumeIndices": [int(k) for k in kept],
                "RegionCoverage": dict(zip(atlas.names, np.round(cov, 4).tolist())),
                "Software": f"nmflow {__version__}"})
            for metric in metrics:
                mpath = target({**aents, "meas": metric}, "relmat", ".tsv")
                write_relmat(mpath, relmats[f"{strategy.name}|{atlas.name}|{metric}"], atlas.names)
                _json(target({**aents, "meas": metric}, "relmat", ".json"), {
                    "Directed": False, "Weighted": True,
                    "ValidDiagonal": METRICS[metric].valid_diagonal,
                    "RelationshipMeasure": METRICS[metric].description,
                    "Software": f"nmflow {__version__}",
                    "NodeFiles": [ts_path.name],
                    "FeatureOrder": "upper triangle without diagonal, row-major (numpy.triu_indices(n, k=1))"})
    fig_dir = staging / f"sub-{entities['subject']}" / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for fig in figures:
        shutil.copyfile(fig, fig_dir / Path(fig).name)
        written.append((fig_dir / Path(fig).name).relative_to(staging))
    report_name = f"{Path(report_html).name}"
    shutil.copyfile(report_html, staging / report_name)
    written.append(Path(report_name))

    for rel in written:
        final = out_dir / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, final)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        (out_dir / ".staging").rmdir()
    except OSError:
        pass
    return written
