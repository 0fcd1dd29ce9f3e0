"""Running a Nipype workflow the nmflow way: the plugin chosen on the command line, failures read back.

Both levels use :data:`Workflow` (niworkflows' ``LiterateWorkflow``: each
workflow's ``__desc__`` becomes a methods paragraph) and :func:`run_workflow`.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import logging
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar
from unittest import mock

from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from nmflow.log import LOG, open_call_log, progress_count

__all__ = ["Progress", "Workflow", "blas_threads", "crash_message", "crash_node", "failed_runs", "plugin_settings",
           "run_workflow", "frozen_collector", "run_group_workflow"]

T = TypeVar("T")


def plugin_settings(plugin: str | None, plugin_args: dict | None, nprocs: int) -> tuple[str, dict]:
    """Nipype plugin and its arguments: ``--plugin`` when given, else MultiProc for ``nprocs > 1``, else Linear
    (which takes no arguments).  MultiProc's ``n_procs`` defaults to ``nprocs``."""
    name = plugin or ("MultiProc" if nprocs > 1 else "Linear")
    if name == "Linear" and not plugin:
        return name, {}
    args = dict(plugin_args or {})
    if name == "MultiProc":
        args.setdefault("n_procs", nprocs)
        args.setdefault("raise_insufficient", False)
    return name, args


@contextlib.contextmanager
def blas_threads(n: int | None):
    """Limit the BLAS/OpenMP thread pools of this process, and of the MultiProc workers it forks meanwhile, to
    ``n`` threads each (``--omp-nthreads``; None: the libraries' defaults): ``--nprocs`` workers times a BLAS
    pool per core would oversubscribe the cores."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield


class Progress:
    """A Nipype ``status_callback`` printing one line per finished unit of work, with the time since the
    start and an estimate of the rest: ``[3/40 runs, 0:09 elapsed, ~1:51 left] sub-03_task-rest done (3.1 s)``.

    Parameters
    ----------
    labels : dict
        Unit -> its words in the line.  Without ``last_node`` a unit is a node (keyed by its name) and its end
        completes it; with ``last_node`` a unit is a sub-workflow (keyed by its name) completed by the end of
        its node named ``last_node``.
    last_node : str, optional
        See ``labels``.
    noun : str
        What a unit is, in the count (``runs``, ``stages``).
    announce : bool
        Also print a line when a unit starts (``deviation scores ...``): for units that run one after the
        other, where a long one would otherwise leave the console silent.

    A unit's time runs from the start of its first node to the end of its last
    (seconds, wall clock); a unit whose node fails is reported once as
    ``failed``.  Elapsed time counts from this object's creation (just before
    the workflow runs; the estimate: :func:`~nmflow.log.progress_count`).
    Plain attributes only: Nipype pickles its plugin arguments.
    """

    def __init__(self, labels: dict[str, str], last_node: str | None = None, noun: str = "runs",
                 announce: bool = False):
        self.labels, self.last_node, self.noun, self.announce = labels, last_node, noun, announce
        self.started: dict[str, float] = {}
        self.finished: list[str] = []
        self.start = time.monotonic()

    def _unit(self, node) -> str | None:
        if self.last_node is None:
            return node.name if node.name in self.labels else None
        parts = node.fullname.split(".")
        return parts[1] if len(parts) > 2 and parts[1] in self.labels else None

    def __call__(self, node, status: str) -> None:
        unit = self._unit(node)
        if unit is None or unit in self.finished:
            return
        now = time.monotonic()
        if unit not in self.started and self.announce:
            LOG.info(f"{self.labels[unit]} ...")
        self.started.setdefault(unit, now)
        if status == "exception" or (status == "end" and self.last_node in (None, node.name)):
            self.finished.append(unit)
            word = "failed" if status == "exception" else "done"
            count = progress_count(len(self.finished), len(self.labels), self.noun, now - self.start)
            LOG.info(f"[{count}] {self.labels[unit]} {word} ({now - self.started[unit]:.1f} s)")


@contextlib.contextmanager
def one_component_at_a_time():
    """Have Nipype's local plugins order nodes component by component (e.g. run by run).

    Linear and MultiProc run nodes in the order of a topological sort that is
    breadth-first: every run's first node, then every run's second...  so no run
    finishes before all are nearly done (no progress to show, every run's
    intermediates held at once).  Nipype's own depth-first variant of the sort
    keeps each connected component (a run) together.
    """
    from nipype.pipeline.engine.utils import topological_sort
    from nipype.pipeline.plugins import base, linear

    def depth_first(graph, depth_first=True):
        return topological_sort(graph, depth_first=True)

    with mock.patch.object(base, "topological_sort", depth_first), \
            mock.patch.object(linear, "topological_sort", depth_first):
        yield


@contextlib.contextmanager
def frozen_collector():
    """Keep Python's garbage collector off the long-lived objects during a run.

    Nipype's MultiProc calls ``gc.collect()`` before every scheduling round
    and after each node it runs itself: a full collection, ~0.25 s each over
    everything nipype, nilearn and torch import, so those objects are frozen
    (skipped) first.  The run's own objects (graphs, nodes, results) grow with
    its node count, so those calls collect the young generations only: full
    collections made scheduling quadratic (1,000 runs of 5 nodes that do
    nothing: 663 s, of which most in ``gc.collect``).  Python's own full
    collections, amortised over allocations, still reclaim the old ones.
    """
    from nipype.pipeline.plugins import multiproc

    gc.collect()
    gc.freeze()
    try:
        with mock.patch.object(multiproc, "gc", SimpleNamespace(collect=functools.partial(gc.collect, 1))):
            yield
    finally:
        gc.unfreeze()


class _Wakeup:
    """Nipype's scheduler pause (``time.sleep`` in its plugin base) cut short when a worker finishes a node."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self, seconds: float) -> None:
        self.event.wait(seconds)
        self.event.clear()


def _multiproc_plugin(args: dict):
    """Nipype's MultiProc plugin that schedules when a node finishes instead of polling.

    Nipype's scheduler loops forever: collect finished nodes, submit ready
    ones, sleep ``poll_sleep_duration``.  Each round costs a few ms of CPU
    (sparse dependency sums), which on 2 cores competes with the workers, and
    each sleep delays the next node.  Here a finished node's callback wakes
    the loop, so it runs about once per node; the pause is only a timeout.
    A result is stored before the wakeup is set, so none is missed.
    """
    from nipype.pipeline.plugins import base
    from nipype.pipeline.plugins.multiproc import MultiProcPlugin

    class WakeOnFinishMultiProcPlugin(MultiProcPlugin):
        def __init__(self, plugin_args=None):
            super().__init__(plugin_args=plugin_args)
            self._wakeup = _Wakeup()

        def _async_callback(self, args):
            super()._async_callback(args)
            self._wakeup.event.set()

        def run(self, graph, config, updatehash=False):
            with mock.patch.object(base, "sleep", self._wakeup):
                return super().run(graph, config, updatehash=updatehash)

    return WakeOnFinishMultiProcPlugin(plugin_args=args)


INTERRUPTED = threading.Event()  # set by Ctrl-C during run_workflow (module-level: Nipype pickles the callback)


class _StopWhenInterrupted:
    """Nipype status callback: report progress, and stop the run at the next node once Ctrl-C was pressed."""

    def __init__(self, progress: Progress | None):
        self.progress = progress

    def __call__(self, node, status):
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt  # not an Exception: the plugins let it through
        if self.progress is not None:
            self.progress(node, status)


@contextlib.contextmanager
def _interrupt_sets_flag():
    """Ctrl-C sets :data:`INTERRUPTED` as well as interrupting: Nipype turns the KeyboardInterrupt raised
    inside a node into that node's crash and goes on with the others (Linear plugin); the flag stops it."""
    INTERRUPTED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum, frame):
        INTERRUPTED.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_workflow(wf: Workflow, crash_dir: Path, plugin: str | None = None, plugin_args: dict | None = None,
                 nprocs: int = 1, stop_on_first_crash: bool = False, hash_method: str = "content",
                 verbose: bool = False, preload: tuple[str, ...] = (),
                 progress: Progress | None = None) -> tuple[object, list[Path]]:
    """Run ``wf``; returns its execution graph (None when it failed) and the crash files it left.

    Crash files are plain text in ``crash_dir`` (old ones are removed first);
    nodes are cached (``hash_method``: ``content`` of input files, or their
    ``timestamp`` for large inputs such as BOLD series), so a re-run resumes
    where it stopped.  Nipype's workflow log is shown with ``verbose`` only (``-vv``).
    ``preload`` names modules the nodes import when they run: they are imported
    here first, so MultiProc's workers (forked from this process) inherit them
    instead of each importing them again (niworkflows' sink indexes TemplateFlow
    when imported: seconds per process).  ``progress`` prints a line per
    finished unit of work (Nipype's ``status_callback``).
    """
    logging.getLogger("nipype.workflow").setLevel(logging.INFO if verbose else logging.CRITICAL)
    crash_dir = Path(crash_dir)
    if crash_dir.exists():
        for old in crash_dir.glob("crash-*.txt"):
            old.unlink()
    name, args = plugin_settings(plugin, plugin_args, nprocs)
    args["status_callback"] = _StopWhenInterrupted(progress)
    for module in preload:
        importlib.import_module(module)
    wf.config["execution"].update({
        "crashfile_format": "txt", "crashdump_dir": str(crash_dir), "stop_on_first_crash": stop_on_first_crash,
        "remove_unnecessary_outputs": False, "hash_method": hash_method,
        # Nipype sleeps this long between scheduling rounds (2 s by default) while our nodes mostly take well
        # under a second: MultiProc is woken by each finished node (this is only its timeout); batch plugins
        # keep 2 s between their queue queries
        "poll_sleep_duration": 0.5 if name == "MultiProc" else 2,
    })
    runner = _multiproc_plugin(args) if name == "MultiProc" else name
    LOG.debug(f"running {wf.name} with Nipype's {name} plugin "
              f"({', '.join(f'{k}={v}' for k, v in args.items() if k != 'status_callback') or 'no arguments'}), "
              f"work folder {wf.base_dir}")
    try:
        with frozen_collector(), one_component_at_a_time(), _interrupt_sets_flag():
            graph = wf.run(plugin=runner, plugin_args=args)
    except RuntimeError:
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt from None
        graph = None  # failures are read from the crash files
    crashes = sorted(crash_dir.glob("crash-*.txt")) if crash_dir.exists() else []
    return graph, crashes


def run_group_workflow(init: Callable[[Path], Workflow], settings, crash_name: str, finish: Callable[[object, Path], T],
                       preload: tuple[str, ...] = (), progress: Progress | None = None) -> T:
    """Run a group-level workflow into ``OUT_DIR/group`` all at once (replacing the previous ``group/``
    whole, so it never mixes two calls); returns ``finish(graph, staged_group)``.

    ``init(staging)`` builds the workflow, whose sinks write into ``staging``
    (a hidden folder of ``settings.out_dir`` moved into place only when everything
    succeeded, :func:`nmflow.fileio.staged_folder`); its methods text goes to
    ``group/CITATION.md``.  ``settings`` holds ``out_dir``, ``work_dir`` (None: a
    temporary folder), ``plugin``, ``plugin_args``, ``nprocs`` and ``verbose``.
    ``finish`` reads the results (e.g. a summary line) before the move.  The
    first failure is raised as a one-line :class:`~nmflow.errors.NmflowInputError`.
    """
    from nmflow.errors import NmflowInputError
    from nmflow.fileio import atomic_write_text, staged_folder
    from nmflow.workflows.boilerplate import references

    open_call_log()
    with (tempfile.TemporaryDirectory(prefix="nmflow_work_") as scratch,
          staged_folder(settings.out_dir, replace=("group",)) as staging):
        work_dir = Path(settings.work_dir or scratch).absolute()
        LOG.info("building the workflow ...")
        wf = init(staging)
        wf.base_dir = str(work_dir)
        text = wf.visit_desc()
        atomic_write_text(staging / "group" / "CITATION.md", text + references(text))
        graph, crashes = run_workflow(wf, work_dir / crash_name, settings.plugin, settings.plugin_args,
                                      settings.nprocs, stop_on_first_crash=True, verbose=settings.verbose,
                                      preload=preload, progress=progress)
        if crashes or graph is None:
            raise NmflowInputError(None, crash_message(crashes[0].read_text(errors="replace"), crashes[0]) if crashes
                                   else "the group workflow failed (see the Nipype log with -v)")
        return finish(graph, staging / "group")


USER_ERRORS = re.compile(r"^(nmflow\.errors\.NmflowInputError|(\w+\.)*(\w*OSError|IOError|PermissionError|\w*NotFound"
                         r"Error|FileExistsError|IsADirectoryError|NotADirectoryError|TimeoutError|MemoryError|"
                         r"BadGzipFile))\b")


def crash_message(text: str, crash_file: str | Path | None = None) -> str:
    """The last line of the traceback in a Nipype text crash file: ``Error: message``.

    Bad input (:class:`~nmflow.errors.NmflowInputError`, shown as its message)
    and problems of the machine (``OSError`` and its kinds, ``MemoryError``)
    stay one line; any other exception is a bug, and the line says so and asks
    for a report with the crash file.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    tb_end = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception)\b.*:", ln)]
    message = tb_end[-1] if tb_end else lines[-1]
    if not USER_ERRORS.match(message):
        where = f" {crash_file}" if crash_file else " (in the work folder)"
        message += f" [internal error: a bug in nmflow; please report it with the crash file{where}]"
    return re.sub(r"^nmflow\.errors\.NmflowInputError: ", "", message)


def crash_node(text: str) -> str | None:
    """The node named in a Nipype text crash file."""
    node = re.search(r"Node: (\S+)", text)
    return node.group(1) if node else None


def failed_runs(crashes: list[Path], owners: dict[str, str]) -> dict[str, str]:
    """``{key: one-line error}`` of the crash files whose node lies in a sub-workflow of ``owners``.

    ``owners`` maps a sub-workflow's name to its key (e.g. a run's); the
    first crash of each owner is kept.
    """
    failures: dict[str, str] = {}
    for crash in crashes:
        text = crash.read_text(errors="replace")
        node = crash_node(text)
        owner = next((key for name, key in owners.items() if node and f".{name}." in f".{node}."), None)
        if owner and owner not in failures:
            failures[owner] = crash_message(text, crash)
    return failures
