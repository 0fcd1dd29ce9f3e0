"""File formats between participant-level nodes: NPZ of named arrays, records of atlases and strategies.

Atlases, strategies and cleaning settings go into Nipype inputs as plain
records (``traits.List(traits.Dict)``/``traits.Dict``), not JSON strings: Nipype
hashes the values of a dict input, and any value that is the path of an
existing file (an atlas image) by that file's time stamp or content, so a
re-run with the same ``-w`` sees an edited atlas.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from nmflow.participant.atlas import Atlas
from nmflow.participant.settings import Strategy


def atlas_records(atlases: list[Atlas]) -> list[dict]:
    """Resolved atlases as records of plain values (a Nipype ``List(Dict)`` input)."""
    out = []
    for atlas in atlases:
        record = asdict(atlas)
        record["image"] = str(atlas.image)
        record["centres_mm"] = None if atlas.centres_mm is None else np.asarray(atlas.centres_mm).tolist()
        out.append(record)
    return out


def atlases_from_records(records: list[dict]) -> list[Atlas]:
    """Inverse of :func:`atlas_records`."""
    out = []
    for record in records:
        record = dict(record)
        centres = record.pop("centres_mm")
        record["image"] = Path(record["image"])
        out.append(Atlas(**record, centres_mm=None if centres is None else np.array(centres)))
    return out


def strategy_records(strategies: list[Strategy]) -> list[dict]:
    """Strategies as records of plain values (a Nipype ``List(Dict)`` input)."""
    return [asdict(s) for s in strategies]


def strategies_from_records(records: list[dict]) -> list[Strategy]:
    """Inverse of :func:`strategy_records`."""
    return [Strategy(**{k: tuple(v) if k == "confounds" else v for k, v in r.items()}) for r in records]
