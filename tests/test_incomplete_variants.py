"""A subject that lacks one variant (a strategy the participant level skipped for it) stops nothing: each
variant is analysed on the subjects that have it, and the outputs say who is missing from which and why."""

from __future__ import annotations

import html

import pandas as pd
import pytest
from helpers.group import group_args, make_cohort, write_tree

from nmflow.bids_io import derivative_path
from nmflow.group.cohort import collect_cohort
from nmflow.group.records import load_trained
from nmflow.workflows.group import run_group

SIMPLE = "atlas-Yeo2011_seg-17nThick_desc-simple_meas-pearson"
NONE = "atlas-Yeo2011_seg-17nThick_desc-none_meas-pearson"
REASON = "only 41 volumes left after censoring with strategy 'simple' (--min-volumes 50)"


def _skip_simple(out, subjects: list[str]) -> None:
    """Remove the ``simple`` relmats of ``subjects`` and record why, as the participant level does."""
    for sub in subjects:
        derivative_path(out, {"subject": sub, "task": "rest", "space": "MNI152NLin6Asym", "res": "2",
                              "atlas": "Yeo2011", "segmentation": "17nThick", "desc": "simple", "meas": "pearson"},
                        "relmat", ".tsv").unlink()
        pd.DataFrame({"strategy": ["none", "simple"], "status": ["ran", "skipped"], "reason": ["n/a", REASON]}
                     ).to_csv(out / f"sub-{sub}" / "func" / f"sub-{sub}_task-rest_strategies.tsv", sep="\t",
                              index=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """24 controls + 8 patients with strategies none and simple; sub-03 (control) and sub-30 (patient) lack
    simple."""
    root = tmp_path_factory.mktemp("incomplete")
    cohort = make_cohort(n_controls=24, patients=(("disorderA", 8),), seed=5, estimate_d=False)
    write_tree(cohort, root / "out", root / "bids")
    _skip_simple(root / "out", ["03", "30"])
    return root


def _run(root, out_name: str, *extra: str) -> tuple[int, str]:
    import shutil

    out = root / out_name
    if out_name != "out":
        shutil.copytree(root / "out", out)
    return run_group(group_args(root / "bids", out, "-w", str(root / f"work_{out_name}"), "--epochs", "20",
                                "--patience", "5", "--folds", "3", "--n-bootstrap", "3", *extra)), out


def test_each_variant_runs_on_the_subjects_that_have_it(study, capsys):
    rc, out = _run(study, "out")
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"{SIMPLE}: analysed without 2 subject(s) that lack it: sub-03 ({REASON}), sub-30 ({REASON})" in printed
    group = out / "group"
    simple = pd.read_csv(group / f"{SIMPLE}_deviations.tsv", sep="\t")
    none = pd.read_csv(group / f"{NONE}_deviations.tsv", sep="\t")
    assert {"sub-03", "sub-30"} & set(simple.participant_id) == set()
    assert {"sub-03", "sub-30"} <= set(none.participant_id)
    assert len(none) == 32 and len(simple) == 30  # every control is a reference, every patient tested
    subjects = pd.read_csv(group / "subjects.tsv", sep="\t", keep_default_na=False).set_index("participant_id")
    assert subjects.loc["sub-03", "missing_variants"] == SIMPLE
    assert subjects.loc["sub-30", "missing_reason"] == REASON
    assert (subjects.drop(index=["sub-03", "sub-30"]).missing_variants == "n/a").all()
    stats = pd.read_csv(group / f"{SIMPLE}_stats.tsv", sep="\t")
    assert set(stats.n_patients) == {7} and set(stats.n_controls) == {23}
    selection = pd.read_csv(group / "selection.tsv", sep="\t")
    assert set(selection.variant) == {SIMPLE, NONE}
    page = html.unescape((group / "group_report.html").read_text())
    assert f"sub-30 ({REASON})" in page  # the run's notes


def test_a_complete_variant_is_unchanged_by_an_incomplete_one(study):
    """The ``none`` variant (everyone has it) gives the same numbers with or without the incomplete
    ``simple`` variant beside it: one plan of folds, restricted per variant, and models trained alone.
    Alone it is not ranked, so its bootstrap models are not trained and no ``selection.tsv`` is written."""
    rc, out = _run(study, "out_none_only", "--variants", "*desc-none*")
    assert rc == 0
    assert not (out / "group" / "selection.tsv").exists()
    trained = list((study / "work_out_none_only").rglob("trained_*.npz"))
    assert trained and all("boot" not in load_trained(path)[1]["kind"].tolist() for path in trained)
    both = study / "out" / "group" / f"{NONE}_deviations.tsv"
    alone = out / "group" / f"{NONE}_deviations.tsv"
    if not both.exists():
        pytest.skip("needs test_each_variant_runs_on_the_subjects_that_have_it first")
    assert alone.read_bytes() == both.read_bytes()


def test_a_variant_left_with_too_few_controls_is_skipped_with_a_note(study, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(study / "out", out)
    _skip_simple(out, [f"{k:02d}" for k in range(4, 24)])  # 2 of 24 controls keep simple
    found = collect_cohort(group_args(study / "bids", out, "--folds", "3"))
    assert [vf.variant.label for vf in found.features] == [NONE]
    note = next(m for m in found.messages if m.startswith(SIMPLE))
    assert "not analysed" in note and "controls are too few" in note and "22 subject(s) lack it" in note
    assert len(found.subjects) == 32


def test_a_participant_label_without_features_stops_the_group_level(study):
    from nmflow.errors import NmflowInputError

    with pytest.raises(NmflowInputError) as caught:
        collect_cohort(group_args(study / "bids", study / "out", "--participant_label", "01", "sub-77"))
    assert caught.value.problem == "--participant-label: 1 participant(s) without features: sub-77"
