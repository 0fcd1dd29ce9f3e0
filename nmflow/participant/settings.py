"""The participant level's settings: one dataclass instead of an ``argparse.Namespace``, and the names its
options choose from.

Its field defaults are the one source of the participant-level defaults (the
CLI flags of :mod:`nmflow.cli.run` read them, as the group level's flags read
:class:`nmflow.group.settings.GroupSettings`);
:meth:`ParticipantSettings.from_namespace` copies parsed values.  The
denoising presets (:data:`PRESETS`, used by :mod:`nmflow.participant.denoise`)
and the FC metric names (:data:`METRIC_NAMES`, the keys of
:data:`nmflow.participant.connectivity.METRICS`) live here too: the CLI builds
its parser from this module, which imports the standard library only, so
``nmflow --help`` loads no NumPy, pandas or SciPy.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

# the FC metrics, in the order of the registry :data:`nmflow.participant.connectivity.METRICS` (checked there)
METRIC_NAMES = ("pearson", "spearman", "kendall", "covariance", "ledoitwolf", "lwcorrelation", "partial")

# --reports: today's page with its figures; the page without its matplotlib figures (carpets, designs,
# connectome: ~1.2 s of the 1.3 s a 2 mm run's report takes); no page
REPORT_LEVELS = ("full", "light", "none")

MOTION_24 = [
    rf"{p}(_derivative1)?(_power2)?" for p in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
]


@dataclass(frozen=True)
class Strategy:
    """A denoising strategy: a preset of :data:`PRESETS`, or a YAML file read by
    :func:`nmflow.participant.denoise.load_strategy`.

    Attributes
    ----------
    name : str
        Label for outputs (``desc-<name>``), alphanumeric.
    confounds : tuple of str
        Regular expressions (full match) of confound columns to regress.
    scrub : bool
        Censor volumes with FD > ``fd_threshold`` mm or std DVARS > ``dvars_threshold``.
    filter : bool
        Detrend and band-pass; ``False`` only for the ``none`` strategy.
    """

    name: str
    confounds: tuple[str, ...] = ()
    scrub: bool = False
    filter: bool = True
    description: str = ""


PRESETS = {
    "none": Strategy("none", (), False, False, "no cleaning: region means only (non-steady-state volumes dropped)"),
    "simple": Strategy("simple", (*MOTION_24, "white_matter", "csf"), False, True,
                       "24 motion parameters + white matter + CSF"),
    "scrubbing": Strategy("scrubbing", (*MOTION_24, "white_matter", "csf"), True, True,
                          "simple + censoring of high-motion volumes"),
    "compcor": Strategy("compcor", (*MOTION_24, r"a_comp_cor_0[0-4]"), False, True,
                        "24 motion parameters + 5 anatomical CompCor components"),
    "gsr": Strategy("gsr", (*MOTION_24, "white_matter", "csf", "global_signal"), True, True,
                    "scrubbing + global signal"),
    "aroma": Strategy("aroma", (r"aroma_motion_\d+", "white_matter", "csf"), False, True,
                      "ICA-AROMA noise components + white matter + CSF (needs fMRIPrep's AROMA outputs)"),
}


@dataclass
class CleaningSettings:
    """Settings shared by all strategies (CLI flags of the same names)."""

    low_pass: float | None = 0.1
    high_pass: float | None = 0.01
    fd_threshold: float = 0.5
    dvars_threshold: float = 3.0
    min_segment: int = 5
    min_volumes: int = 50
    standardize: str | None = "psc"


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
    reports: str = "full"  # one of REPORT_LEVELS
    work_dir: Path | None = None
    plugin: str | None = None
    plugin_args: dict = field(default_factory=dict)
    nprocs: int = 1
    mem_gb: float | None = None  # MultiProc's memory_gb: it starts no more nodes than fit in it
    omp_nthreads: int | None = None  # BLAS threads of each process (None: see blas_threads)
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
    def blas_threads(self) -> int:
        """BLAS threads per process: ``--omp-nthreads``, else the cores this process may use (its CPU affinity,
        as Slurm and containers set it) divided by ``--nprocs``, at least 1."""
        if self.omp_nthreads is not None:
            return self.omp_nthreads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.nprocs)

    @property
    def engine_args(self) -> dict:
        """The Nipype plugin's arguments: ``--plugin-args`` with ``--mem-gb`` as MultiProc's ``memory_gb``."""
        memory = {} if self.mem_gb is None else {"memory_gb": self.mem_gb}
        return {**memory, **self.plugin_args}

    @property
    def cleaning(self) -> CleaningSettings:
        """The settings every strategy shares (``--standardize none`` is no scaling)."""
        return CleaningSettings(self.low_pass, self.high_pass, self.fd_threshold, self.dvars_threshold,
                                self.min_segment, self.min_volumes,
                                None if self.standardize == "none" else self.standardize)
