"""Running a Nipype workflow the nmflow way: the plugin chosen on the command line, failures read back.

Both levels use :data:`Workflow` (niworkflows' ``LiterateWorkflow``: each
workflow's ``__desc__`` becomes a methods paragraph) and :func:`run_workflow`.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import re
from pathlib import Path

from niworkflows.engine.workflows import LiterateWorkflow as Workflow

__all__ = ["Workflow", "crash_message", "crash_node", "plugin_settings", "run_workflow", "frozen_collector"]


def plugin_settings(plugin: str | None, plugin_args: dict | None, nprocs: int) -> tuple[str, dict]:
    """Nipype plugin and its arguments: ``--plugin`` when given, else MultiProc for ``nprocs > 1``, else Linear."""
    if plugin:
        args = dict(plugin_args or {})
        if plugin == "MultiProc":
            args.setdefault("n_procs", nprocs)
            args.setdefault("raise_insufficient", False)
        return plugin, args
    if nprocs > 1:
        return "MultiProc", {"n_procs": nprocs, "raise_insufficient": False}
    return "Linear", {}


@contextlib.contextmanager
def frozen_collector():
    """Keep Python's garbage collector off the long-lived objects of the imported libraries during a run.

    Nipype's MultiProc calls ``gc.collect()`` before every scheduling round
    and after each node it runs itself (~0.25 s each over everything nipype,
    nilearn and torch import): frozen objects are skipped.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_workflow(wf: Workflow, crash_dir: Path, plugin: str | None = None, plugin_args: dict | None = None,
                 nprocs: int = 1, stop_on_first_crash: bool = False, hash_method: str = "content",
                 verbose: bool = False, preload: tuple[str, ...] = ()) -> tuple[object, list[Path]]:
    """Run ``wf``; returns its execution graph (None when it failed) and the crash files it left.

    Crash files are plain text in ``crash_dir`` (old ones are removed first);
    nodes are cached (``hash_method``: ``content`` of input files, or their
    ``timestamp`` for large inputs such as BOLD series), so a re-run resumes
    where it stopped.  Nipype's workflow log is shown with ``verbose`` only.
    ``preload`` names modules the nodes import when they run: they are imported
    here first, so MultiProc's workers (forked from this process) inherit them
    instead of each importing them again (niworkflows' sink indexes TemplateFlow
    when imported: seconds per process).
    """
    logging.getLogger("nipype.workflow").setLevel(logging.INFO if verbose else logging.CRITICAL)
    crash_dir = Path(crash_dir)
    if crash_dir.exists():
        for old in crash_dir.glob("crash-*.txt"):
            old.unlink()
    name, args = plugin_settings(plugin, plugin_args, nprocs)
    for module in preload:
        importlib.import_module(module)
    wf.config["execution"].update({
        "crashfile_format": "txt", "crashdump_dir": str(crash_dir), "stop_on_first_crash": stop_on_first_crash,
        "remove_unnecessary_outputs": False, "hash_method": hash_method,
        # Nipype sleeps this long between scheduling rounds (2 s by default) while our nodes mostly take well
        # under a second: local workers would sit idle; batch plugins keep 2 s between their queue queries
        "poll_sleep_duration": 0.05 if name in ("Linear", "MultiProc") else 2,
    })
    try:
        with frozen_collector():
            graph = wf.run(plugin=name, plugin_args=args)
    except RuntimeError:
        graph = None  # failures are read from the crash files
    crashes = sorted(crash_dir.glob("crash-*.txt")) if crash_dir.exists() else []
    return graph, crashes


def crash_message(text: str) -> str:
    """The last line of the traceback in a Nipype text crash file: ``Error: message``."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    tb_end = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception)\b.*:", ln)]
    message = tb_end[-1] if tb_end else lines[-1]
    return re.sub(r"^nmflow\.errors\.NmflowInputError: ", "", message)


def crash_node(text: str) -> str | None:
    """The node named in a Nipype text crash file."""
    node = re.search(r"Node: (\S+)", text)
    return node.group(1) if node else None
