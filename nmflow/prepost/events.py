"""The stimulus of a run: from its BIDS ``events.tsv`` or from the command line, checked against the run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nmflow.errors import NmflowInputError
from nmflow.fileio import read_tsv


@dataclass(frozen=True)
class Stimulus:
    """One stimulus event.

    Attributes
    ----------
    onset : float
        Seconds from the start of the first volume's acquisition (BIDS ``onset``).
    duration : float
        Seconds (0 = an instantaneous event).
    trial_type : str
        Name of the design-matrix regressor.
    source : str
        Where it came from: the events file's name or ``--stimulus-onset``.
    """

    onset: float
    duration: float
    trial_type: str = "stimulus"
    source: str = "--stimulus-onset"

    def table(self) -> pd.DataFrame:
        """The BIDS events table ``onset duration trial_type`` (one row)."""
        return pd.DataFrame({"onset": [self.onset], "duration": [self.duration], "trial_type": [self.trial_type]})


def read_stimulus(path: str | Path) -> Stimulus:
    """The single stimulus of a BIDS ``events.tsv`` (columns ``onset``, ``duration``, optional ``trial_type``).

    Raises
    ------
    NmflowInputError
        Unreadable file, missing columns, not exactly one event, or a value
        that is not a finite number (duration: >= 0).
    """
    table = read_tsv(path, "events file")
    missing = [c for c in ("onset", "duration") if c not in table.columns]
    if missing:
        raise NmflowInputError(path, f"events file lacks the column(s) {', '.join(missing)} "
                                     f"(found: {', '.join(map(str, table.columns)) or 'none'})")
    if len(table) != 1:
        raise NmflowInputError(path, f"events file has {len(table)} events; the pre/post analysis needs exactly one "
                                     "stimulus")
    row = table.iloc[0]
    values = {}
    for column in ("onset", "duration"):
        try:
            values[column] = float(row[column])
        except (TypeError, ValueError):
            values[column] = math.nan
        if not math.isfinite(values[column]):
            raise NmflowInputError(path, f"events file: {column} {row[column]!r} is not a number")
    if values["duration"] < 0:
        raise NmflowInputError(path, f"events file: duration {values['duration']:g} is negative")
    trial_type = str(row["trial_type"]) if "trial_type" in table.columns and pd.notna(row["trial_type"]) else "stimulus"
    if not trial_type.isidentifier():
        raise NmflowInputError(path, f"events file: trial_type {trial_type!r} must be a name (letters, digits, _)")
    return Stimulus(values["onset"], values["duration"], trial_type, Path(path).name)


def stimulus_for_run(events_file: str | Path | None, onset: float | None, duration: float, run_name: str) -> Stimulus:
    """The run's stimulus: its events file when there is one, else ``--stimulus-onset``/``--stimulus-duration``."""
    if events_file is not None:
        return read_stimulus(events_file)
    if onset is None:
        raise NmflowInputError(None, f"{run_name}: no events.tsv found and no --stimulus-onset given")
    if not math.isfinite(onset) or not math.isfinite(duration) or duration < 0:
        raise NmflowInputError(None, f"--stimulus-onset {onset:g} / --stimulus-duration {duration:g}: need finite "
                                     "numbers, duration >= 0")
    return Stimulus(float(onset), float(duration))


def check_within_run(stimulus: Stimulus, n_volumes: int, tr: float, source: str | Path | None) -> None:
    """Raise :class:`NmflowInputError` when the stimulus does not lie inside the run (``0 .. n_volumes * tr`` s)."""
    length = n_volumes * tr
    if stimulus.onset < 0 or stimulus.onset + stimulus.duration > length:
        raise NmflowInputError(source, f"stimulus at {stimulus.onset:g}-{stimulus.onset + stimulus.duration:g} s "
                                       f"({stimulus.source}) lies outside the run (0-{length:g} s: {n_volumes} "
                                       f"volumes x TR {tr:g} s)")


def find_events(root: str | Path, runs: list) -> dict[str, str | None]:
    """Each run's ``events.tsv`` in the BIDS folder ``root`` (PyBIDS; same subject, session, task, run)."""
    from nmflow.bids_io import layout

    lay = layout(root)
    found = {}
    for run in runs:
        query = {k: v for k, v in (("subject", run.subject), ("session", run.session), ("task", run.task),
                                   ("acquisition", run.acquisition)) if v is not None}
        if run.run is not None:
            query["run"] = int(run.run) if str(run.run).isdigit() else run.run
        files = lay.get(suffix="events", extension=".tsv", **query)
        if run.session is None:
            files = [f for f in files if "session" not in f.get_entities()]
        if run.run is None:
            files = [f for f in files if "run" not in f.get_entities()]
        found[run.key] = files[0].path if files else None
    return found
