"""What the simulators make: the settings of ``nmflow simulate`` and ``nmflow simulate-prepost`` (every field
a flag) and the constants of the population model.

The one source of those flags' defaults; the standard library only, so that
the subcommands' parsers (and ``--help``) load no NumPy, pandas or nibabel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from nmflow.prepost.events import Stimulus


@dataclass(frozen=True)
class PopulationParams:
    """Constants of the population model (calibrated against real control FC, see the README).

    Attributes
    ----------
    mix_weight : float
        ``w`` in ``C_s = (1 - w) G_s + w W_s`` (unitless, 0-1).
    mix_dof : int
        Number of Gaussian draws behind ``W_s`` (fewer = more between-subject spread).
    global_mean, global_sd : float
        Mean and standard deviation of the subject's global-signal variance ``a_s**2``
        (relative to the unit variance of a network signal); gamma distributed.
    site_strength : float
        Standard deviation of the site loadings ``u_site`` (unitless; 0 = no site effect).
    min_eig : float
        Smallest eigenvalue a group matrix may have after planting.
    d_spread : float
        Log-SD of the per-connection d around ``effect_d``: the planted d are the quantiles
        ``(k + 0.5) / n`` of ``effect_d * lognormal(0, d_spread)`` (median ``effect_d`` exactly).
    d_clip : tuple of float
        Per-connection d is clipped to ``[d_clip[0], d_clip[1]] * effect_d``.
    n_age, n_sex : int
        Number of connections carrying an age / sex effect (disjoint from planted ones).
    age_delta, sex_delta : float
        Change of the group correlation per decade of age, and female minus male.
    """

    mix_weight: float = 0.35
    mix_dof: int = 10
    global_mean: float = 0.3
    global_sd: float = 0.15
    site_strength: float = 0.28
    min_eig: float = 0.05
    d_spread: float = 0.35
    d_clip: tuple[float, float] = (0.5, 1.8)
    n_age: int = 3
    n_sex: int = 3
    age_delta: float = 0.04
    sex_delta: float = 0.10


@dataclass
class SimulationSettings:
    """What ``nmflow simulate`` makes; every field is a CLI flag."""

    n_controls: int = 60
    patients: tuple[tuple[str, int], ...] = (("disorderA", 20), ("disorderB", 20))
    n_sites: int = 2
    n_volumes: int = 120
    tr: float = 2.0
    grid: str = "tiny"  # "tiny" (toy atlas, 8 mm) or "2"/"4" (real Yeo grid, mm)
    atlas: str = "yeo17thick"
    atlas_dir: str | None = None
    seed: int = 0
    n_sessions: int = 1
    effect_d: float = 1.0  # median subject-level Cohen's d of a planted connection
    effect: float | None = None  # when given: planted change of correlation (delta mode)
    n_specific: int = 6
    n_shared: int = 2
    motion: float = 1.0
    global_signal: float = 1.5
    site_strength: float = PopulationParams.site_strength  # SD of the site loadings


@dataclass
class PrepostSimulationSettings:
    """What ``nmflow simulate-prepost`` makes; every field is a CLI flag.

    Times in seconds; ``onset`` None puts the stimulus in the middle of the run;
    ``transition`` is the window the analysis will exclude on each side of the
    stimulus (the calibration of ``effect`` assumes it); ``high_hz`` is the upper
    edge of the network signals' band (lower edge 0.01 Hz); ``evoked`` the mean
    amplitude of the evoked response (network-signal SDs); ``events`` writes each
    run's ``events.tsv``.
    """

    n_controls: int = 20
    n_patients: int = 1
    n_volumes: int = 600
    tr: float = 1.0
    onset: float | None = None
    duration: float = 10.0
    transition: float = 20.0
    n_changed: int = 4
    n_common: int = 3
    effect: float = 6.0
    common_effect: float = 3.0
    evoked: float = 1.0
    high_hz: float = 0.2
    motion: float = 0.5
    grid: str = "tiny"
    atlas: str = "yeo17thick"
    atlas_dir: str | None = None
    events: bool = True
    seed: int = 0

    @property
    def stimulus(self) -> Stimulus:
        from nmflow.prepost.events import Stimulus

        onset = self.onset if self.onset is not None else round(self.n_volumes * self.tr / 2, 3)
        return Stimulus(float(onset), float(self.duration))

    def segments(self) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks ``(n_volumes,)`` of the PRE and POST volumes the analysis will use."""
        import numpy as np

        times, s = np.arange(self.n_volumes) * self.tr, self.stimulus
        return times < s.onset - self.transition, times >= s.onset + s.duration + self.transition
