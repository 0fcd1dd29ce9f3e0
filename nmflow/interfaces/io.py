"""File formats between participant-level nodes: NPZ of named arrays, JSON of atlases."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nmflow.participant.atlas import Atlas
from nmflow.participant.denoise import Strategy


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> str:
    """Save named arrays to an uncompressed NPZ (no pickled objects)."""
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return str(Path(path).absolute())


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Named arrays of an NPZ written by :func:`save_arrays`."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def atlases_to_json(atlases: list[Atlas]) -> str:
    """Serialise resolved atlases (a Nipype string input)."""
    out = []
    for atlas in atlases:
        record = asdict(atlas)
        record["image"] = str(atlas.image)
        record["centres_mm"] = None if atlas.centres_mm is None else np.asarray(atlas.centres_mm).tolist()
        out.append(record)
    return json.dumps(out)


def atlases_from_json(text: str) -> list[Atlas]:
    """Inverse of :func:`atlases_to_json`."""
    out = []
    for record in json.loads(text):
        centres = record.pop("centres_mm")
        record["image"] = Path(record["image"])
        out.append(Atlas(**record, centres_mm=None if centres is None else np.array(centres)))
    return out


def key(*parts: str) -> str:
    """Key of an array in the NPZ files: ``strategy|atlas|metric``."""
    return "|".join(parts)


def strategies_to_json(strategies: list[Strategy]) -> str:
    """Serialise strategies (a Nipype string input)."""
    return json.dumps([asdict(s) for s in strategies])


def strategies_from_json(text: str) -> list[Strategy]:
    """Inverse of :func:`strategies_to_json`."""
    return [Strategy(**{k: tuple(v) if k == "confounds" else v for k, v in r.items()}) for r in json.loads(text)]
