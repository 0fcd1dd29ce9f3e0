"""`nmflow` entry point: the BIDS-App call plus subcommands.

``nmflow BIDS_DIR OUT_DIR {participant,group} [options]`` is the BIDS-App
call; ``nmflow simulate|dicom|fmriprep ...`` are subcommands, each a module of
this package exposing ``main(argv) -> int``.  Those ``main`` functions raise
on bad input; :func:`main` here is the one place that turns an expected user
error into ``nmflow: error: <one line>`` on stderr and exit code 1.
"""

from __future__ import annotations

import gc
import importlib
import os
import re
import sys
import tempfile
import traceback

from nmflow.errors import NmflowInputError
from nmflow.log import LOG, end_call_log

os.environ.setdefault("NIPYPE_NO_ET", "1")


def _writable_matplotlib_dir() -> None:
    """Point MPLCONFIGDIR to a folder in /tmp when $HOME has no writable one (read-only containers).

    Matplotlib would otherwise warn in every process and rebuild its font cache each time.
    """
    if os.environ.get("MPLCONFIGDIR"):
        return
    config = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "matplotlib")
    try:
        os.makedirs(config, exist_ok=True)
        if os.access(config, os.W_OK):
            return
    except OSError:
        pass
    fallback = os.path.join(tempfile.gettempdir(), f"nmflow-matplotlib-{getattr(os, 'getuid', lambda: 0)()}")
    try:
        os.makedirs(fallback, mode=0o700, exist_ok=True)
    except OSError:  # no writable temporary folder either: matplotlib makes do (and warns)
        return
    os.environ["MPLCONFIGDIR"] = fallback


_writable_matplotlib_dir()

SUBCOMMANDS = {
    "simulate": "nmflow.cli.simulate",
    "simulate-prepost": "nmflow.cli.simulate_prepost",
    "dicom": "nmflow.cli.dicom",
    "fmriprep": "nmflow.cli.fmriprep",
}


def main(argv: list[str] | None = None) -> int:
    """Run ``nmflow ARGV`` and return its exit code.

    Parameters
    ----------
    argv : list of str, optional
        Arguments after ``nmflow`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The command's own code; 1 after bad input (:class:`NmflowInputError`,
        which covers a missing, unreadable or invalid config file) or a
        problem of the machine (:class:`OSError`: permissions, a full disk, a
        missing tool; :class:`MemoryError`), printed as one line (with the
        traceback too under ``-v``); 1 after any other exception, a bug, whose
        traceback is printed with a line asking to report it; 130 after
        Ctrl-C; argparse's 2 after a usage error and 0 after ``--help`` or
        ``--version``.  The last line also ends the call's log file, the
        traceback of a bug included.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(arg == "--verbose" or re.fullmatch(r"-v+", arg) for arg in argv)
    try:
        return _dispatch(argv)
    except SystemExit as exc:  # raised by argparse only
        return int(exc.code or 0)
    except KeyboardInterrupt:
        LOG.error("nmflow: interrupted")
        return 130
    except (NmflowInputError, OSError, MemoryError) as exc:  # bad input, or the machine (permissions, disk, memory)
        if verbose:
            traceback.print_exc()
        LOG.error(f"nmflow: error: {_error_line(exc)}")
        return 1
    except Exception as exc:  # a bug in nmflow
        traceback.print_exc()
        LOG.error(f"nmflow: error: internal error ({type(exc).__name__}: {_error_line(exc)}). This is a bug in "
                  "nmflow: please report it with the command line and the traceback above.", exc_info=True)
        return 1
    finally:
        end_call_log()


def _dispatch(argv: list[str]) -> int:
    bids_app_call = len(argv) >= 3 and argv[2] in ("participant", "group")  # e.g. a folder named 'fmriprep'
    if argv and argv[0] in SUBCOMMANDS and not bids_app_call:
        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    from nmflow.cli.run import main as run_main

    return run_main(argv)


def _error_line(exc: Exception) -> str:
    """The one-line message of a user error (``FILE: problem`` for a file system error)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    elif isinstance(exc, MemoryError):
        text = f"out of memory ({exc})" if str(exc) else "out of memory"
    else:
        text = str(exc)
    return " ".join(text.split())


def run() -> None:
    """The ``nmflow`` script: exit with the code of :func:`main`.

    The objects left are frozen first: at exit Python would otherwise run the
    garbage collector over all of them, which took 0.5-1.3 s after a
    participant-level call (some 300,000 objects of nipype, nilearn, pandas...)
    for memory the process returns anyway.  Exit handlers still run.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
