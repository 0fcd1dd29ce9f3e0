"""What nmflow tells its user: one :mod:`logging` logger, ``nmflow``, shown on the console and kept in a file.

Messages are whole lines as the user reads them (``nmflow: warning: ...``,
``[3/16 runs, ...] sub-03_task-rest done``): the console adds nothing to
them and sends warnings and errors to stderr, the rest to stdout.  How much
the console shows is :func:`set_verbosity`'s (``-q``, ``-v``, ``-vv``); a
BIDS-App call also keeps every line at INFO and above, whatever the
verbosity, in ``OUT_DIR/logs/<call>.log``: :func:`start_call_log` names the
file as the call starts, the workflows :func:`open_call_log` once they are
about to write into OUT_DIR (a call refused before, by its checks, writes
nothing).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

LOG = logging.getLogger("nmflow")
NIPYPE_VERBOSITY = 2  # -vv: Nipype's workflow log too (nmflow.workflows.engine.run_workflow)


class _Console(logging.Handler):
    """Warnings and errors to stderr, the rest to stdout: the streams of the moment (a test may swap them)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # logging's own policy: a failed write never stops the program
            self.handleError(record)


class _MessageOnly(logging.Formatter):
    """The message alone: a traceback is printed where it happens, not repeated under the error line."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


class _CallLog(logging.Handler):
    """The lines of one call at INFO and above, each with its UTC time: kept in memory until
    :meth:`open` names the file (once the call is about to write into OUT_DIR), then written as they come."""

    def __init__(self, path: Path):
        super().__init__(logging.INFO)
        self.path = path
        formatter = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        self.setFormatter(formatter)
        self.pending: list[str] = []
        self.file = None

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if self.file is None:
            self.pending.append(text)
            return
        try:
            self.file.write(text + "\n")
            self.file.flush()
        except Exception:
            self.handleError(record)

    def open(self) -> None:
        if self.file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", encoding="utf-8")
        self.file.write("".join(line + "\n" for line in self.pending))
        self.file.flush()
        self.pending = []

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        super().close()


CONSOLE = _Console(logging.INFO)
CONSOLE.setFormatter(_MessageOnly())
LOG.addHandler(CONSOLE)
LOG.setLevel(logging.DEBUG)  # the handlers choose
LOG.propagate = False  # a library's root configuration does not print nmflow's lines twice
_CALL: list[_CallLog] = []  # the current call's log, if any


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on (whole seconds, rounded)."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_count(done: int, total: int, noun: str, elapsed: float) -> str:
    """``3/40 runs, 0:09 elapsed, ~1:51 left``: the rest estimated as the mean time per finished unit times
    the units left (``elapsed`` in seconds; no estimate before the first unit or after the last)."""
    text = f"{done}/{total} {noun}, {clock(elapsed)} elapsed"
    return text + (f", ~{clock(elapsed / done * (total - done))} left" if 0 < done < total else "")


def set_verbosity(verbosity: int) -> None:
    """What the console shows: ``-1`` (``-q``) warnings and errors; ``0`` nmflow's progress too; ``1`` (``-v``)
    nmflow's debug details too; ``2`` (``-vv``) Nipype's workflow log as well (set where a workflow runs)."""
    CONSOLE.setLevel(logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG)


def start_call_log(path: str | Path) -> None:
    """Keep this call's lines (INFO and above) from now on for ``path``, in memory until :func:`open_call_log`."""
    end_call_log()
    _CALL.append(_CallLog(Path(path)))
    LOG.addHandler(_CALL[0])


def open_call_log() -> None:
    """Write the call's lines so far to its file and the next ones as they come; nothing without a call
    log (a workflow run from Python) and nothing more when the file is open already."""
    if _CALL and _CALL[0].file is None:
        _CALL[0].open()
        LOG.debug(f"log file: {_CALL[0].path}")


def end_call_log() -> None:
    """Close the call's log file (lines never given a file are dropped) and set the console back to its
    default verbosity."""
    while _CALL:
        handler = _CALL.pop()
        LOG.removeHandler(handler)
        handler.close()
    set_verbosity(0)
