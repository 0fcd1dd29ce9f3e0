"""The participant report (sections, numbers, rendering in Chromium) and failure isolation per strategy."""

from __future__ import annotations

import base64
import html
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from helpers.browser import load_page, missing_links, screenshot
from helpers.participant import (
    YEO7_8MM, copy_subjects, participant_argv, read_confounds, read_relmat, run_cli, tree, write_confounds,
)

from nmflow.reports.participant import dvars, qc_table

SECTIONS = ["summary", "qc", "carpets", "confounds", "fc", "connectome", "methods", "references", "errors",
            "about"]


@pytest.fixture(scope="module")
def gsr_fails_for_sub01(tiny_dataset, tmp_path_factory):
    """sub-01 has no global_signal column (gsr cannot run), sub-02 is intact; --denoise simple gsr."""
    root = tmp_path_factory.mktemp("isolation")
    fmriprep = copy_subjects(tiny_dataset["fmriprep"], root / "fmriprep", ["01", "02"])
    confounds = next((fmriprep / "sub-01" / "func").glob("*_desc-confounds_timeseries.tsv"))
    write_confounds(read_confounds(confounds).drop(columns="global_signal"), confounds)
    out = root / "out"
    rc, stdout, stderr = run_cli(participant_argv(fmriprep, out, root / "work", tiny_dataset["atlas_dir"],
                                                  "--atlas", "yeo7thin", "--denoise", "simple", "gsr",
                                                  "--metrics", "pearson", "kendall"))
    return {"rc": rc, "stdout": stdout, "stderr": stderr, "out": out, "confounds": confounds}


def test_a_failing_strategy_keeps_the_others_and_says_so(gsr_fails_for_sub01):
    r = gsr_fails_for_sub01
    assert r["rc"] == 1  # not everything asked for was made
    assert "2 of 2 run(s) done, 1 strategy output(s) skipped in 1 run(s)" in r["stdout"]
    warnings = [line for line in r["stderr"].splitlines() if line.startswith("nmflow: warning:")]
    assert len(warnings) == 1 and "sub-01_task-rest" in warnings[0], r["stderr"]
    assert warnings[0].startswith("nmflow: warning: strategy skipped in 1 run(s) (sub-01_task-rest): ")
    assert "'global_signal'" in warnings[0] and "'gsr'" in warnings[0]  # the file is named in strategies.tsv
    files = tree(r["out"])
    for sub, strategies in (("01", ["simple"]), ("02", ["simple", "gsr"])):
        written = {re.search(r"desc-(\w+?)_", p).group(1) for p in files
                   if p.startswith(f"sub-{sub}/func/") and p.endswith("_timeseries.tsv")}
        assert written == set(strategies), (sub, written)
    assert not any("sub-01" in p and "desc-gsr" in p for p in files)
    for sub, status in (("01", ["ran", "skipped"]), ("02", ["ran", "ran"])):  # what the group level reads
        table = pd.read_csv(r["out"] / f"sub-{sub}" / "func" / f"sub-{sub}_task-rest_strategies.tsv", sep="\t")
        assert table.strategy.tolist() == ["simple", "gsr"] and table.status.tolist() == status
    reason = pd.read_csv(r["out"] / "sub-01/func/sub-01_task-rest_strategies.tsv", sep="\t").reason[1]
    assert reason.startswith(r["confounds"].name) and "'global_signal'" in reason and "'gsr'" in reason
    page = (r["out"] / "sub-01_task-rest.html").read_text()
    errors = page[page.index('id="errors"'):page.index('id="about"')]
    assert "strategy skipped" in errors and "global_signal" in html.unescape(errors)
    assert "Every strategy ran" not in errors


def test_report_renders_in_chromium_with_every_section_and_matrix(gsr_fails_for_sub01, tmp_path):
    out = gsr_fails_for_sub01["out"]
    report = out / "sub-02_task-rest.html"
    page = load_page(report)
    assert page.errors == [], page.console
    assert missing_links(report, page.dom) == []
    for section in SECTIONS:
        assert f'<section id="{section}">' in page.dom, section
    # the FC tabs: every atlas x metric; each panel drawn (a canvas per strategy) by the page's script
    labels = re.findall(r'<label for="tabs\d+_\d+">([^<]+)</label>', page.dom)
    assert {"yeo7thin · pearson", "yeo7thin · kendall"} <= set(labels)
    assert page.dom.count("<canvas") == 2 * 2  # 2 metrics x 2 strategies
    connectome = page.dom[page.dom.index('<section id="connectome">'):page.dom.index('<section id="methods">')]
    assert re.findall(r'src="(sub-02/figures/[^"]+_connectome\.png)"', connectome) == [  # a connectome per strategy
        f"sub-02/figures/sub-02_task-rest_atlas-Yeo2011_seg-7nThin_desc-{s}_connectome.png" for s in ("simple", "gsr")]
    assert 'href="logs/CITATION.md"' in page.dom
    # the matrix the page draws is the published relmat
    data = [json.loads(html.unescape(m)) for m in re.findall(r"data-fc='([^']+)'", report.read_text())]
    kendall = next(d for d in data if d["unit"] == "kendall")
    relmat = out / "sub-02" / "func" / (f"sub-02_task-rest_{YEO7_8MM}_desc-gsr_"
                                       "meas-kendall_relmat.tsv")
    names, matrix = read_relmat(relmat)
    assert kendall["labels"] == names
    steps = np.frombuffer(base64.b64decode(kendall["panels"]["gsr"]), "<i2").reshape(len(names), len(names))
    shown = np.where(steps == -32768, np.nan, steps * kendall["step"])
    off = ~np.eye(len(names), dtype=bool)
    np.testing.assert_allclose(shown[off], matrix[off], atol=kendall["vmax"] / 32767)
    assert kendall["vmax"] == -kendall["vmin"] >= np.nanmax(np.abs(matrix[off]))  # one scale, centred
    assert "np.float64" not in page.dom and "np.int64" not in page.dom
    png = screenshot(report, tmp_path / "report.png", height=2400)
    assert png.stat().st_size > 50_000  # not a blank page


def test_qc_numbers_match_the_confounds_and_a_direct_computation(gsr_fails_for_sub01):
    out = gsr_fails_for_sub01["out"]
    page = (out / "sub-02_task-rest.html").read_text()
    qc = pd.read_html(io.StringIO(page[page.index('id="qc"'):page.index('id="carpets"')]))[0]
    outliers = pd.read_csv(next((out / "sub-02" / "func").glob("*desc-gsr_outliers.tsv")), sep="\t")
    row = qc.set_index("strategy").loc["gsr"]
    assert row["max FD (mm)"] == pytest.approx(outliers.framewise_displacement.max(), rel=5e-3)  # 3 digits shown
    assert row["volumes kept"] == int((outliers.censored == 0).sum())
    # gsr scrubs: its drops are fMRIPrep's non-steady-state volumes plus high-motion ones, counted apart
    steady = outliers.non_steady_state == 1
    assert row["non-steady-state dropped"] == int(steady.sum()) > 0
    assert row["high motion censored"] == int(((outliers.censored == 1) & ~steady).sum()) > 0
    assert row["% dropped"] == pytest.approx(100 * outliers.censored.mean(), rel=5e-3)
    simple = qc.set_index("strategy").loc["simple"]  # no scrubbing: only the non-steady-state volumes
    assert simple["high motion censored"] == 0 and simple["non-steady-state dropped"] == int(steady.sum())


def test_dvars_is_the_rms_of_the_z_scored_volume_to_volume_change():
    rng = np.random.default_rng(0)
    carpet = rng.normal(size=(50, 30)) * rng.uniform(1, 5, size=(50, 1)) + 100
    z = (carpet - carpet.mean(1, keepdims=True)) / carpet.std(1, keepdims=True)
    expected = np.sqrt(((z[:, 1:] - z[:, :-1]) ** 2).mean(axis=0))
    got = dvars(carpet)
    assert np.isnan(got[0])
    np.testing.assert_allclose(got[1:], expected)
    kept = np.array([0, 1, 2, 5, 6])  # a censored gap between volumes 2 and 5: no difference across it
    gapped = dvars(carpet[:, kept], kept)
    assert np.isnan(gapped[[0, 3]]).all() and np.isfinite(gapped[[1, 2, 4]]).all()


def test_fd_dvars_correlation_falls_when_motion_is_regressed_out():
    rng = np.random.default_rng(1)
    n = 200
    fd = np.abs(rng.normal(0.1, 0.05, n))
    fd[rng.choice(n, 15, replace=False)] = 1.5
    spikes = np.outer(rng.normal(size=80), (fd > 1).astype(float)) * 3
    raw = rng.normal(size=(80, n)) + spikes
    cleaned = rng.normal(size=(80, n))  # what a cleaning that removed the spikes leaves
    outliers = {"x": pd.DataFrame({"framewise_displacement": fd, "non_steady_state": np.zeros(n), "censored": np.zeros(n)})}
    table = qc_table(outliers, raw, {"x": cleaned}, {"x": np.arange(n)}, 50.0, {}, 0.5)
    assert table.loc[0, "FD-DVARS r before"] > 0.5
    assert abs(table.loc[0, "FD-DVARS r after"]) < 0.2


def test_numbers_of_nodes_on_one_spot_go_to_different_sides():
    from nmflow.reports.participant import label_positions

    points = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [50.0, 0.0]])  # three regions one behind the other
    spots = label_positions(points, 5.0)
    np.testing.assert_allclose(np.linalg.norm(spots - points, axis=1), 5.0)  # each label beside its node
    gaps = np.linalg.norm(spots[:3, None] - spots[None, :3], axis=-1)[np.triu_indices(3, k=1)]
    assert gaps.min() > 1.4 * 5.0  # the three labels apart (8 spots: opposite, then a quarter turn)


def test_methods_and_references_are_two_sections_linking_the_citation_file():
    from nmflow.reports.html import methods_sections

    methods, references = methods_sections("### Part\n\nText citing (Doe, 2020).\n\n### References\n\n- Doe J (2020).\n",
                                           "../CITATION.md")
    assert (methods.id, references.id) == ("methods", "references")
    assert "<h3>Part</h3><p>Text citing (Doe, 2020).</p>" in methods.html and "Doe J" not in methods.html
    assert '<a href="../CITATION.md">CITATION.md</a>' in methods.html
    assert references.html == "<ul><li>Doe J (2020).</li></ul>"
    empty = methods_sections("", "CITATION.md")
    assert "No methods text was given." in empty[0].html and "No reference cited." in empty[1].html


def _pid_file(path, seconds):
    """A stand-in figure: the drawing process's id, written after ``seconds``."""
    import os
    import time

    time.sleep(seconds)
    path.write_text(str(os.getpid()))
    return path


def test_figures_drawn_in_two_processes_are_the_same_files_in_the_same_order(tmp_path):
    import os

    from nmflow.reports.participant import carpet_figure, design_figure, draw_figures

    rng = np.random.default_rng(3)
    raw = rng.normal(100, 5, (40, 60))
    kept = np.arange(2, 60)
    design = pd.DataFrame(rng.normal(size=(60, 4)), columns=["trans_x", "trans_y", "rot_z", "csf"])
    fd = np.abs(rng.normal(0, 0.2, 60))
    labels = rng.integers(0, 5, 40)

    def jobs(folder):
        folder.mkdir()
        return [(carpet_figure, (folder / "carpet.png", raw, raw[:, kept], labels, fd, kept, 0.5, "simple")),
                (design_figure, (folder / "design.png", design, "simple")),
                (carpet_figure, (folder / "carpet2.png", raw, raw[:, kept] * 2, labels, fd, kept, 0.3, "gsr"))]

    serial = draw_figures(jobs(tmp_path / "one"), n_procs=1)
    parallel = draw_figures(jobs(tmp_path / "two"), n_procs=2)
    assert [p.name for p in parallel] == ["carpet.png", "design.png", "carpet2.png"]
    assert [p.read_bytes() for p in parallel] == [p.read_bytes() for p in serial]
    assert len({p.read_bytes() for p in serial}) == 3

    stand_ins = [(_pid_file, (tmp_path / f"pid{k}", 0.3)) for k in range(4)]
    pids = {int(p.read_text()) for p in draw_figures(stand_ins, n_procs=2)}
    assert len(pids) == 2 and os.getpid() not in pids
    pids = {int(p.read_text()) for p in draw_figures(stand_ins, n_procs=1)}
    assert pids == {os.getpid()}


def test_figures_are_drawn_here_when_no_process_can_start(tmp_path, monkeypatch):
    import os

    from nmflow.reports import participant

    def no_locks(*args, **kwargs):
        raise OSError(38, "Function not implemented")  # what a pool raises without /dev/shm

    monkeypatch.setattr(participant, "ProcessPoolExecutor", no_locks)
    stand_ins = [(_pid_file, (tmp_path / f"pid{k}", 0.0)) for k in range(3)]
    assert {int(p.read_text()) for p in participant.draw_figures(stand_ins, n_procs=2)} == {os.getpid()}


def test_the_figure_processes_are_not_part_of_the_report_nodes_cache_key():
    from nmflow.interfaces.reports import RunReport

    def key(**inputs):
        return RunReport(run_key="sub-01_task-rest", tr=2.0, **inputs).inputs.get_hashval()[1]

    assert key(n_procs=1) == key(n_procs=4)  # a new --omp-nthreads re-draws nothing
    assert key(draw_figures=True) != key(draw_figures=False)
