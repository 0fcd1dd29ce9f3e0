"""The PRE/POST split of a run around its stimulus."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nmflow.errors import NmflowInputError
from nmflow.prepost.events import Stimulus

SEGMENTS = ("pre", "post")


def segment_labels(times: np.ndarray, stimulus: Stimulus, transition: float, censored: np.ndarray) -> np.ndarray:
    """Label of every volume: ``pre``, ``post``, ``transition`` or ``censored``.

    Parameters
    ----------
    times : ndarray, shape (n_volumes,)
        Acquisition time of each volume (s).
    stimulus : Stimulus
    transition : float
        Seconds excluded on each side of the stimulus: PRE ends before
        ``onset - transition``, POST starts at ``onset + duration + transition``.
    censored : ndarray of bool, shape (n_volumes,)
        Volumes left out of the GLM (non-steady-state, or high motion when the strategy scrubs).
    """
    labels = np.full(times.shape, "transition", dtype=object)
    labels[times < stimulus.onset - transition] = "pre"
    labels[times >= stimulus.onset + stimulus.duration + transition] = "post"
    labels[np.asarray(censored, bool)] = "censored"
    return labels.astype(str)


def check_segments(labels: np.ndarray, min_volumes: int, source: str | Path | None) -> dict[str, int]:
    """Volumes per segment; :class:`NmflowInputError` when PRE or POST has fewer than ``min_volumes``."""
    counts = {name: int((labels == name).sum()) for name in ("pre", "transition", "post", "censored")}
    short = [f"{name.upper()} has {counts[name]}" for name in SEGMENTS if counts[name] < min_volumes]
    if short:
        raise NmflowInputError(source, f"segment too short: {' and '.join(short)} volume(s), fewer than "
                                       f"--min-volumes {min_volumes} (move the stimulus, shorten --transition or "
                                       "lower --min-volumes)")
    return counts
