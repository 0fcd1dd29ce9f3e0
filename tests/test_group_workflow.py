"""The group level as a Nipype workflow: its graph, batching by width, caching in ``-w``."""

import re
from pathlib import Path

import pandas as pd
import pytest
from helpers.group import group_args, make_cohort, write_tree

from nmflow.workflows.group import STEP_SETTINGS, init_group_wf, run_group

FAST = ("--n-bootstrap", "0", "--epochs", "60", "--patience", "10", "--folds", "3", "--covariates", "age", "sex")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("groupwf")
    cohort = make_cohort(n_controls=24, patients=(("disorderA", 8),), motion=1.0, seed=4, estimate_d=False)
    yeo7 = make_cohort(n_controls=24, patients=(("disorderA", 8),), motion=1.0, seed=4, n_networks=7,
                       estimate_d=False)
    write_tree(yeo7, root / "out", root / "bids", strategies=("simple",),
               atlas={"atlas": "Yeo2011", "segmentation": "7nThick"})
    write_tree(cohort, root / "out", root / "bids", strategies=("none", "simple"))
    return root


def test_graph_has_the_steps_of_the_issue_and_maps_variants(tmp_path):
    wf = init_group_wf(group_args(tmp_path, tmp_path / "out"), tmp_path)
    names = set(wf.list_node_names())
    assert {"collect_cohort", "split", "harmonize", "batch_by_width", "train", "score", "group_tests",
            "single_case", "select", "report"} <= names
    for mapped in ("harmonize", "train", "score", "group_tests", "single_case"):
        assert wf.get_node(mapped).iterfield, mapped  # a plugin can spread the variants
    # each step receives only its settings: --alpha does not reach the training
    assert "alpha" not in STEP_SETTINGS["train"] and "alpha" in STEP_SETTINGS["group_tests"]
    assert wf.get_node("train").inputs.settings == group_args(tmp_path, tmp_path / "out").as_dict(
        STEP_SETTINGS["train"])


def _results(work: Path, node: str) -> dict[str, float]:
    return {str(p.relative_to(work)): p.stat().st_mtime_ns
            for p in (work / "nmflow_group_wf" / node).rglob("result_*.pklz")}


def test_one_training_node_per_width_and_a_changed_option_reruns_only_what_reads_it(small, capsys):
    work = small / "work"
    args = ("-w", str(work), *FAST)
    assert run_group(group_args(small / "bids", small / "out", *args)) == 0
    printed = capsys.readouterr().out
    progress = re.findall(r"^\[(\d+)/(\d+) stages, \d+:\d\d elapsed(?:, ~\d+:\d\d left)?\] (.+) done \(\d+\.\d s\)$",
                          printed, re.M)
    assert [int(k) for k, _, _ in progress] == list(range(1, 11)) and {n for _, n, _ in progress} == {"10"}
    assert progress[0][2] == "features and phenotypes" and progress[-1][2] == "group report"
    lines = printed.splitlines()
    for _, _, words in progress:  # each stage announced as it starts, before its line of progress
        done = next(k for k, line in enumerate(lines) if re.search(rf"\] {re.escape(words)} done \(", line))
        assert lines.index(f"{words} ...") < done
    # 3 variants: Yeo-17 none and simple share their width (136 inputs), Yeo-7 has 21 -> 2 training nodes
    assert len(list((work / "nmflow_group_wf" / "train" / "mapflow").glob("_train*"))) == 2
    batches = pd.read_csv(small / "out" / "group" / "subjects.tsv", sep="\t")
    assert len(batches) == 32
    first = {node: _results(work, node) for node in ("harmonize", "train", "score", "group_tests")}
    stats = (small / "out" / "group" / "atlas-Yeo2011_seg-7nThick_desc-simple_meas-pearson_stats.tsv").read_text()
    assert run_group(group_args(small / "bids", small / "out", *args, "--alpha", "0.2")) == 0
    second = {node: _results(work, node) for node in first}
    assert second["harmonize"] == first["harmonize"] and second["train"] == first["train"]  # cached
    assert second["score"] != first["score"] and second["group_tests"] != first["group_tests"]  # rerun
    changed = (small / "out" / "group" / "atlas-Yeo2011_seg-7nThick_desc-simple_meas-pearson_stats.tsv").read_text()
    assert changed != stats  # flags at q < 0.2
    assert "nmflow group: 3 variant(s), 32 subjects (24 reference controls, 8 patients)" in capsys.readouterr().out
    citation = (small / "out" / "group" / "CITATION.md").read_text()  # the methods text of the workflow itself
    assert "cross-fitted over 3 folds" in citation and "(inputs also age and sex)" in citation
    assert "- Crawford JR, Howell DC (1998)" in citation


def test_relative_folders_work(small, tmp_path, monkeypatch):
    # the nodes run inside the work folder: relative BIDS_DIR / OUT_DIR must be resolved first
    monkeypatch.chdir(small)
    settings = group_args("bids", "out", *FAST, "--variants", "*7nThick*", "-w", str(tmp_path / "work"))
    assert settings.out_dir == small / "out" and settings.bids_dir.is_absolute()
    assert run_group(settings) == 0
