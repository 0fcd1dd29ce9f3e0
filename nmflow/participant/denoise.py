"""Denoising strategies: which confounds to regress, which volumes to censor.

A strategy is a named preset (:data:`nmflow.participant.settings.PRESETS`) or a user YAML file::

    name: mystrategy            # used as desc-<name> in outputs
    confounds: ["trans_[xyz]", "rot_[xyz]", "white_matter", "csf"]  # regexes, full match
    scrub: true                 # censor high-motion volumes (optional, default false)
    filter: true                # band-pass (optional, default true)

Every pattern must match at least one column of the confounds file.
Cleaning itself is :func:`nilearn.signal.clean`: detrending, Butterworth
band-pass and confound regression applied together, the confounds filtered
like the signal (orthogonal to the filter), censored volumes interpolated
before filtering and dropped after.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from nmflow.errors import NmflowInputError, StrategyError
from nmflow.fileio import read_text, read_tsv
from nmflow.participant.settings import PRESETS, CleaningSettings, Strategy


@dataclass
class CleanedRun:
    """The output of :func:`clean_run` for one strategy.

    ``timeseries[atlas]`` is ``(n_kept_volumes, n_regions)``; ``design`` the
    confound matrix used ``(n_volumes, n_confounds)``; ``outliers`` has one
    row per volume with ``framewise_displacement``, ``std_dvars``,
    ``non_steady_state`` and ``censored`` (1 = dropped).
    """

    timeseries: dict[str, np.ndarray]
    design: pd.DataFrame
    outliers: pd.DataFrame
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))


def load_strategy(spec: str) -> Strategy:
    """A preset by name, or a strategy read from a YAML file path (its patterns checked as regular expressions)."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if path.suffix not in (".yml", ".yaml"):
        raise NmflowInputError(None, f"unknown denoising strategy {spec!r}; use one of {', '.join(PRESETS)} or a .yml file")
    text = read_text(path, "strategy file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise NmflowInputError(path, f"cannot read strategy file ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict) or "confounds" not in data or "name" not in data:
        raise NmflowInputError(path, "strategy file needs 'name' and 'confounds' keys")
    name, patterns = str(data["name"]), data["confounds"]
    if not re.fullmatch(r"[A-Za-z0-9]+", name):
        raise NmflowInputError(path, f"strategy name {name!r} must be alphanumeric (it becomes desc-{name})")
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise NmflowInputError(path, "'confounds' must be a list of column patterns (regular expressions)")
    for pattern in patterns:
        try:
            with warnings.catch_warnings():  # e.g. "possible nested set": valid, but not to print
                warnings.simplefilter("ignore", FutureWarning)
                re.compile(pattern)
        except re.error as exc:
            raise NmflowInputError(path, f"confound pattern {pattern!r} is not a regular expression ({exc})") from None
    switches = {key: data.get(key, default) for key, default in (("scrub", False), ("filter", True))}
    wrong = [key for key, value in switches.items() if not isinstance(value, bool)]
    if wrong:
        raise NmflowInputError(path, f"'{wrong[0]}' must be true or false, not {switches[wrong[0]]!r}")
    return Strategy(name, tuple(patterns), switches["scrub"], switches["filter"],
                    str(data.get("description", f"user strategy from {path.name}")))


def read_confounds(path: str | Path) -> pd.DataFrame:
    """fMRIPrep confounds TSV (``n/a`` as NaN), checked for readability."""
    table = read_tsv(path, "confounds file")
    if table.shape[1] == 0 or table.shape[0] == 0:
        raise NmflowInputError(path, "confounds file is empty")
    return table


def numeric_columns(table: pd.DataFrame, columns: list[str], source: str | Path | None = None) -> pd.DataFrame:
    """``table[columns]`` as floats (missing values stay NaN).

    Raises
    ------
    NmflowInputError
        A cell that is not a finite number, naming the column and the line of
        the file (line 1 is the header).
    """
    values = table[columns].apply(pd.to_numeric, errors="coerce").astype(float)
    bad = (values.isna() & table[columns].notna()) | np.isinf(values)
    if bad.to_numpy().any():
        column = bad.columns[bad.any().to_numpy()][0]
        row = int(np.flatnonzero(bad[column].to_numpy())[0])
        value = table[column].iloc[row]
        shown = repr(value) if isinstance(value, str) else str(value)
        raise NmflowInputError(source, f"column {column!r}, line {row + 2}: {shown} is not a finite number")
    return values


# where the confound columns that fMRIPrep writes only on request come from
CONFOUND_ORIGINS = {
    "aroma_motion": "fMRIPrep's ICA-AROMA regressors: run fMRIPrep < 23.1 with --use-aroma, or fMRIPost-AROMA",
    "a_comp_cor": "fMRIPrep's anatomical CompCor components",
}


def select_confounds(table: pd.DataFrame, strategy: Strategy, source: str | Path | None = None) -> pd.DataFrame:
    """Columns of ``table`` matched by the strategy's patterns, NaNs filled with the column mean."""
    columns = []
    for pattern in strategy.confounds:
        matched = [c for c in table.columns if re.fullmatch(pattern, str(c))]
        if not matched:
            hint = next((f" ({words})" for prefix, words in CONFOUND_ORIGINS.items() if pattern.startswith(prefix)), "")
            raise StrategyError(source, f"confound column {pattern!r} needed by strategy {strategy.name!r} is "
                                        f"absent{hint}")
        columns += [c for c in matched if c not in columns]
    design = numeric_columns(table, columns, source)
    return design.fillna(design.mean()).fillna(0.0)


def censoring(table: pd.DataFrame, strategy: Strategy, settings: CleaningSettings,
              source: str | Path | None = None) -> pd.DataFrame:
    """Per-volume outlier table; ``censored`` = non-steady-state or (if scrubbing) high motion."""
    n = len(table)
    nss_cols = [c for c in table.columns if str(c).startswith("non_steady_state_outlier")]
    nss = numeric_columns(table, nss_cols, source).fillna(0).to_numpy().sum(axis=1) > 0 if nss_cols \
        else np.zeros(n, bool)
    measures = [c for c in ("framewise_displacement", "std_dvars") if c in table]
    values = numeric_columns(table, measures, source)
    fd, dvars = (values[c].to_numpy() if c in values else np.zeros(n) for c in ("framewise_displacement", "std_dvars"))
    motion = np.zeros(n, dtype=bool)
    if strategy.scrub:
        if "framewise_displacement" not in table:
            raise StrategyError(source, f"confound column 'framewise_displacement' needed by strategy "
                                        f"{strategy.name!r} is absent")
        motion = (np.nan_to_num(fd) > settings.fd_threshold) | (np.nan_to_num(dvars) > settings.dvars_threshold)
    censored = nss | motion
    if strategy.scrub and settings.min_segment > 1:
        censored = _drop_short_segments(censored, settings.min_segment)
    return pd.DataFrame({
        "framewise_displacement": fd, "std_dvars": dvars,
        "non_steady_state": nss.astype(int), "motion_outlier": motion.astype(int),
        "censored": censored.astype(int),
    })


def _drop_short_segments(censored: np.ndarray, min_segment: int) -> np.ndarray:
    """Also censor runs of kept volumes shorter than ``min_segment`` (as nilearn's ``scrub``)."""
    out = censored.copy()
    start = None
    for i, c in enumerate(np.append(censored, True)):
        if not c and start is None:
            start = i
        elif c and start is not None:
            if i - start < min_segment:
                out[start:i] = True
            start = None
    return out


def clean_signals(
    signals: np.ndarray, design: pd.DataFrame | None, kept: np.ndarray, tr: float,
    strategy: Strategy, settings: CleaningSettings,
) -> np.ndarray:
    """Clean region signals ``(n_volumes, n_regions)`` -> ``(n_kept, n_regions)``.

    NaN regions stay NaN.  ``kept`` are the indices of uncensored volumes.
    """
    from nilearn.signal import clean

    valid = np.all(np.isfinite(signals), axis=0)
    out = np.full((kept.size, signals.shape[1]), np.nan)
    if not valid.any():
        return out
    confounds = design.to_numpy() if design is not None and design.shape[1] else None
    out[:, valid] = clean(
        signals[:, valid], confounds=confounds, sample_mask=kept, t_r=tr,
        detrend=strategy.filter, filter="butterworth" if strategy.filter else False,
        low_pass=settings.low_pass if strategy.filter else None,
        high_pass=settings.high_pass if strategy.filter else None,
        standardize=settings.standardize, standardize_confounds=True,
        # filter all columns in one call (nilearn's default filters column by column in place: same numbers,
        # about 10x slower)
        butterworth__copy=True,
    )
    return out


BUTTERWORTH_ORDER = 5  # nilearn.signal.clean's, which clean_signals keeps


def filter_band(tr: float, settings: CleaningSettings) -> tuple[float | None, float | None]:
    """The high-pass and low-pass cut-offs (Hz) that filter a series sampled every ``tr`` seconds: a cut-off
    that is 0, unset, or at or above the Nyquist frequency ``0.5 / tr`` filters nothing (None)."""
    nyquist = 0.5 / tr
    high = settings.high_pass if settings.high_pass and settings.high_pass < nyquist else None
    low = settings.low_pass if settings.low_pass and settings.low_pass < nyquist else None
    return high, low


def filter_min_volumes(tr: float, settings: CleaningSettings, order: int = BUTTERWORTH_ORDER) -> int:
    """Fewest volumes nilearn's Butterworth filter (order 5, forward and backward) can filter: SciPy's
    ``sosfiltfilt`` pads each end with ``padlen`` volumes and needs more than that; 0 without a filter.

    ``tr`` in seconds; the cut-offs (Hz) of ``settings``, as :func:`clean_signals` passes them.
    """
    from scipy.signal import butter

    high, low = filter_band(tr, settings)
    if low is None and high is None:
        return 0
    cutoff, kind = ([high, low], "bandpass") if low and high else ((low, "lowpass") if low else (high, "highpass"))
    sos = butter(order, cutoff, btype=kind, fs=1 / tr, output="sos")
    padlen = 3 * (2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum())))
    return padlen + 1


def clean_run(
    signals: dict[str, np.ndarray], confounds: pd.DataFrame, tr: float, strategy: Strategy,
    settings: CleaningSettings, source: str | Path | None = None,
    names: dict[str, list[str]] | None = None, bold: str | Path | None = None,
) -> CleanedRun:
    """Clean the region signals of all atlases of one run with one strategy.

    The atlases are cleaned together (one call, columns stacked), since the
    design and the censoring do not depend on the atlas.

    Parameters
    ----------
    signals : dict of str -> ndarray, shape (n_volumes, n_regions)
        Raw region signals per atlas (NaN columns: regions without coverage).
    confounds : DataFrame
        The run's confounds table, ``source`` its file (named in errors).
    tr : float
        Repetition time (s).
    strategy, settings : Strategy, CleaningSettings
    names : dict of str -> list of str, optional
        Region names per atlas, for the messages (default: ``#<column>``).
    bold : path, optional
        The BOLD file the signals come from, named in errors about them.

    Raises
    ------
    NmflowInputError
        Confounds of another length, not numeric, or lacking a column; too few
        volumes left; with ``--standardize psc`` a region whose mean signal is
        near 0; a region constant in the BOLD.  :class:`StrategyError` (this
        strategy only): a confound column missing, too few volumes left, a
        region left constant by the cleaning.
    """
    n_volumes = next(iter(signals.values())).shape[0]
    if len(confounds) != n_volumes:
        raise NmflowInputError(source, f"confounds file has {len(confounds)} rows but the BOLD has {n_volumes} volumes")
    design = select_confounds(confounds, strategy, source)
    outliers = censoring(confounds, strategy, settings, source)
    kept = np.flatnonzero(outliers["censored"].to_numpy() == 0)
    if kept.size < settings.min_volumes:
        raise StrategyError(source, f"only {kept.size} volumes left after censoring with strategy "
                                    f"{strategy.name!r} (--min-volumes {settings.min_volumes})")
    shortest = filter_min_volumes(tr, settings) if strategy.filter else 0
    if n_volumes < shortest:
        raise StrategyError(source, f"only {n_volumes} volumes: the Butterworth filter of strategy {strategy.name!r} "
                                    f"(--low-pass {settings.low_pass}, --high-pass {settings.high_pass}) needs at "
                                    f"least {shortest}")
    names = names or {a: [f"#{k}" for k in range(x.shape[1])] for a, x in signals.items()}
    stacked = np.hstack([signals[a] for a in signals])
    _check_regions(_by_atlas(_constant(stacked), signals), names, bold, "are constant over time in the BOLD "
                   "(every voxel keeps its value): no signal to correlate")
    if settings.standardize == "psc":
        _check_regions(_by_atlas(_zero_mean(stacked[kept]), signals), names, bold,
                       "have a mean signal near 0 (smaller than its fluctuations): --standardize psc needs "
                       "the BOLD's raw intensities (use --standardize zscore_sample)")
    cleaned = clean_signals(stacked, design, kept, tr, strategy, settings)
    residual = cleaned if settings.standardize is None else clean_signals(
        stacked, design, kept, tr, strategy, replace(settings, standardize=None))  # before any rescaling
    _check_regions(_by_atlas(_vanished(residual, stacked[kept]), signals), names, source,
                   f"are left constant by the cleaning of strategy {strategy.name!r} (its confounds explain their "
                   "whole signal): no signal to correlate", StrategyError)
    out = _by_atlas(cleaned, signals)
    return CleanedRun(out, design, outliers, kept)


def _zero_mean(x: np.ndarray) -> np.ndarray:
    """Columns of ``x`` whose mean is not clear of zero: ``|mean| <= sd`` (raw BOLD has a mean far above its
    fluctuations; percent signal change divides by it).  NaN columns: False."""
    with np.errstate(invalid="ignore"):
        return np.abs(x.mean(axis=0)) <= x.std(axis=0)


def _constant(x: np.ndarray) -> np.ndarray:
    """Columns of ``x`` without finite variation (all-NaN columns, regions without coverage: False)."""
    finite = np.isfinite(x)
    return finite.any(axis=0) & ~(finite.all(axis=0) & (np.ptp(np.where(finite, x, 0), axis=0) > 0))


def _vanished(residual: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Columns the cleaning left without signal: constant, or with a spread below 1e-6 of the raw signal's
    (numerical remains; z-scoring would blow them up to unit variance)."""
    return _constant(residual) | (np.std(residual, axis=0) <= 1e-6 * np.std(raw, axis=0))


def _by_atlas(columns: np.ndarray, signals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Split the last axis of ``columns`` (the atlases' regions side by side) into one block per atlas."""
    bounds = np.cumsum([0] + [x.shape[1] for x in signals.values()])
    return {a: columns[..., lo:hi] for a, lo, hi in zip(signals, bounds[:-1], bounds[1:])}


def _check_regions(flags: dict[str, np.ndarray], names: dict[str, list[str]], path: str | Path | None,
                   problem: str, error: type[NmflowInputError] = NmflowInputError) -> None:
    """Raise ``error`` naming the regions flagged ``True`` in ``flags`` (per atlas); a :class:`StrategyError`
    when the problem is one strategy's (the run's other strategies go on)."""
    for atlas, flagged in flags.items():
        bad = [names[atlas][k] for k in np.flatnonzero(flagged)]
        if bad:
            raise error(path, f"atlas {atlas}: region(s) {', '.join(map(str, bad[:5]))} {problem}")
