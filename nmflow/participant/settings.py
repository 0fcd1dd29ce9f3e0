"""The participant level's settings: one dataclass instead of an ``argparse.Namespace``.

Its field defaults are the one source of the participant-level defaults (the
CLI flags of :mod:`nmflow.cli.run` read them, as the group level's flags read
:class:`nmflow.group.settings.GroupSettings`);
:meth:`ParticipantSettings.from_namespace` copies parsed values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from nmflow.participant.denoise import CleaningSettings

_CLEANING = CleaningSettings()


@dataclass(frozen=True)
class ParticipantSettings:
    """Everything the participant level needs (see ``nmflow BIDS_DIR OUT_DIR participant -h``)."""

    bids_dir: Path | None = None
    out_dir: Path | None = None
    participant_label: tuple[str, ...] = ()
    bids_filters: dict = field(default_factory=dict)  # --bids-filter-file, read
    space: str = "MNI152NLin6Asym"
    denoise: tuple[str, ...] = ("simple", "scrubbing", "gsr")
    atlas: tuple[str, ...] = ("yeo17thick",)
    atlas_dir: str | None = None
    metrics: tuple[str, ...] = ("pearson",)
    low_pass: float | None = _CLEANING.low_pass
    high_pass: float | None = _CLEANING.high_pass
    fd_threshold: float = _CLEANING.fd_threshold
    dvars_threshold: float = _CLEANING.dvars_threshold
    min_segment: int = _CLEANING.min_segment
    min_volumes: int = _CLEANING.min_volumes
    standardize: str = _CLEANING.standardize
    min_coverage: float = 0.5
    work_dir: Path | None = None
    plugin: str | None = None
    plugin_args: dict = field(default_factory=dict)
    nprocs: int = 1
    verbose: bool = False
    command: str = ""  # the command line, for the reports' About section

    @classmethod
    def from_namespace(cls, args, command: str = "") -> "ParticipantSettings":
        """Settings from parsed CLI arguments (``plugin_args`` and ``bids_filters`` already read from their
        files; unknown attributes ignored)."""
        values = {"command": command}
        for f in dataclasses.fields(cls):
            if f.name == "command" or not hasattr(args, f.name):
                continue
            value = getattr(args, f.name)
            if f.name in ("participant_label", "denoise", "atlas", "metrics"):
                value = tuple(value or ())
            values[f.name] = value
        return cls(**values)

    @property
    def cleaning(self) -> CleaningSettings:
        """The settings every strategy shares (``--standardize none`` is no scaling)."""
        return CleaningSettings(self.low_pass, self.high_pass, self.fd_threshold, self.dvars_threshold,
                                self.min_segment, self.min_volumes,
                                None if self.standardize == "none" else self.standardize)
