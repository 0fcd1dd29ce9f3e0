"""The stimulus study's settings: the defaults of its flags, one frozen object per level.

Light on purpose (the standard library only): the CLI builds these objects
right after parsing, before any science is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PrepostOptions:
    """The stimulus study's participant options (CLI flags of the same names; times in seconds).

    ``onset``/``duration`` apply to runs without an ``events.tsv``;
    ``transition`` is left out on each side of the stimulus; ``alpha`` is the
    FDR level of the seed maps; ``min_coverage`` as the participant level's
    (a network with less of its voxels inside the brain mask has no signal).
    """

    onset: float | None = None
    duration: float = 0.0
    transition: float = 20.0
    alpha: float = 0.05
    min_coverage: float = 0.5


@dataclass(frozen=True)
class PrepostGroupSettings:
    """The stimulus study's group options (CLI flags of the same names)."""

    out_dir: Path
    participants: Path
    participant_label: tuple[str, ...] = ()
    group_column: str = "group"
    control_label: str = "control"
    case_label: tuple[str, ...] = ()
    alpha: float = 0.05
    work_dir: Path | None = None
    plugin: str | None = None
    plugin_args: dict | None = None
    nprocs: int = 1
    verbose: bool = False
