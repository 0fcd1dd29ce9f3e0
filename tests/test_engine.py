"""nmflow/workflows/engine.py: the scheduler's wake-up on finished nodes, the order of runs, failures read back."""

from __future__ import annotations

import pytest
from nipype.pipeline import engine as pe
from nipype.interfaces.utility import Function

from nmflow.workflows import engine


def _wait(x: int, seconds: float) -> int:
    import time

    time.sleep(seconds)
    return x + 1


def _chain(tmp_path, n: int, seconds: float, fail_at: int | None = None) -> engine.Workflow:
    """Two independent chains of ``n`` nodes, each sleeping ``seconds``."""
    wf = engine.Workflow(name="chains", base_dir=str(tmp_path / "work"))
    for c in range(2):
        prev = None
        for k in range(n):
            node = pe.Node(Function(function=_wait, input_names=["x", "seconds"], output_names=["y"]),
                           name=f"c{c}_n{k}")
            node.inputs.seconds = seconds if fail_at != k else "not a number"
            if prev is None:
                node.inputs.x = 0
            else:
                wf.connect(prev, "y", node, "x")
            prev = node
    return wf


class _Counting(engine._Wakeup):
    """Counts the scheduler's pauses and those that ran to their timeout (nobody woke them)."""

    calls = timeouts = 0

    def __call__(self, seconds):
        type(self).calls += 1
        if not self.event.wait(seconds):
            type(self).timeouts += 1
        self.event.clear()


def test_multiproc_is_woken_by_finished_nodes_not_by_polling(tmp_path, monkeypatch):
    """10 short nodes on 2 workers: the loop runs about once per finished node, woken, not timed out."""
    monkeypatch.setattr(engine, "_Wakeup", _Counting)
    wf = _chain(tmp_path, 5, 0.05)
    graph, crashes = engine.run_workflow(wf, tmp_path / "crashes", nprocs=2)
    assert graph is not None and crashes == []
    assert sorted(n.result.outputs.y for n in graph.nodes() if n.name.endswith("_n4")) == [5, 5]
    # a plain poll would pause its whole 0.5 s timeout ~5 times (every round); polling faster, run ~100 rounds
    assert 5 <= _Counting.calls <= 2 * 10 + 2
    assert _Counting.timeouts <= 2


def test_a_failing_node_is_read_back_from_its_crash_file_and_the_other_chain_finishes(tmp_path):
    wf = _chain(tmp_path, 3, 0.0, fail_at=1)
    wf.get_node("c1_n1").inputs.seconds = 0.0
    graph, crashes = engine.run_workflow(wf, tmp_path / "crashes", nprocs=2)
    assert graph is None
    assert len(crashes) == 1 and "c0_n1" in crashes[0].name
    assert engine.crash_node(crashes[0].read_text()) is not None
    assert (tmp_path / "work" / "chains" / "c1_n2" / "result_c1_n2.pklz").exists()


@pytest.mark.parametrize("nprocs, plugin", [(1, "Linear"), (2, "MultiProc")])
def test_plugin_settings(nprocs, plugin):
    name, args = engine.plugin_settings(None, None, nprocs)
    assert name == plugin
    assert args.get("n_procs", 1) == nprocs


def test_plugin_args_reach_the_default_multiproc():
    assert engine.plugin_settings(None, {"memory_gb": 3.0}, 2) == (
        "MultiProc", {"memory_gb": 3.0, "n_procs": 2, "raise_insufficient": False})
    assert engine.plugin_settings(None, {"memory_gb": 3.0}, 1) == ("Linear", {})


def test_ctrl_c_in_a_node_stops_the_linear_run(tmp_path):
    """Nipype turns a KeyboardInterrupt inside a node into that node's crash and would go on with the other
    chain; the run stops instead, and Ctrl-C reaches the caller (the CLI's exit code 130)."""
    import os
    import signal
    import threading

    wf = _chain(tmp_path, 2, 1.0)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        engine.run_workflow(wf, tmp_path / "crashes", nprocs=1)
    timer.cancel()
    ran = sorted(p.parent.name for p in (tmp_path / "work" / "chains").glob("*/result_*.pklz"))
    assert len(ran) <= 1  # the interrupted node's (crash) result at most: none of the other three started
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _blas_pool_sizes(x: int) -> list:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_blas_threads_reach_the_forked_workers(tmp_path):
    from threadpoolctl import threadpool_info

    if not any(pool["user_api"] == "blas" and pool["num_threads"] > 1 for pool in threadpool_info()):
        pytest.skip("numpy's BLAS runs one thread here already")
    wf = engine.Workflow(name="pools", base_dir=str(tmp_path / "work"))
    for k in range(2):
        node = pe.Node(Function(function=_blas_pool_sizes, input_names=["x"], output_names=["sizes"]), name=f"n{k}")
        node.inputs.x = k
        wf.add_nodes([node])
    with engine.blas_threads(1):
        graph, crashes = engine.run_workflow(wf, tmp_path / "crashes", nprocs=2)
    assert crashes == [] and [set(n.result.outputs.sizes) for n in graph.nodes()] == [{1}, {1}]
    assert max(_blas_pool_sizes(0)) > 1, "the limit outlived its block"


def test_nipype_collects_only_the_young_generations_during_a_run():
    """MultiProc's gc.collect() before each scheduling round: a full collection grows with the run's objects
    (quadratic scheduling); during run_workflow it collects generations 0 and 1 only, and after it Nipype's
    module has the garbage collector back."""
    import gc

    from nipype.pipeline.plugins import multiproc

    from nmflow.workflows.engine import frozen_collector

    def collections():
        return [generation["collections"] for generation in gc.get_stats()]

    with frozen_collector():
        before = collections()
        multiproc.gc.collect()
        after = collections()
    assert after[2] == before[2] and after[1] > before[1]
    assert multiproc.gc is gc
