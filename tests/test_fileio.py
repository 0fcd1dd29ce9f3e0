"""nmflow.fileio: staged folders that survive a killed process, input and output folders kept apart."""

from __future__ import annotations

import fcntl
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from nmflow.errors import NmflowInputError
from nmflow.fileio import LOCK, PUBLISHING, STAGING, check_apart, read_json, recover_staged, staged_folder


def _abandoned(destination, prefix, files):
    """A staging folder as a killed process leaves it: its lock file, held by nobody, and some files."""
    folder = destination / f"{prefix}killed"
    folder.mkdir(parents=True)
    (folder / LOCK).write_text("")
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_staged_files_appear_together_and_nothing_stays_behind(tmp_path):
    out = tmp_path / "out"
    with staged_folder(out) as stage:
        (stage / "sub-01" / "func").mkdir(parents=True)
        (stage / "sub-01" / "func" / "a.tsv").write_text("a")
        (stage / "b.html").write_text("b")
        assert not (out / "b.html").exists()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "b.html", "sub-01/func/a.tsv"]
    assert sorted(p.name for p in out.iterdir()) == ["b.html", "sub-01"]  # no hidden staging folder left


def test_a_replaced_folder_keeps_no_file_of_the_previous_call(tmp_path):
    out = tmp_path / "out"
    (out / "group").mkdir(parents=True)
    (out / "group" / "stale.tsv").write_text("from the previous call")
    (out / "sub-01.html").write_text("kept: outside the replaced folder")
    with staged_folder(out, replace=("group",)) as stage:
        (stage / "group").mkdir()
        (stage / "group" / "new.tsv").write_text("new")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "group/new.tsv", "sub-01.html"]
    assert sorted(p.name for p in out.iterdir()) == ["group", "sub-01.html"]


def test_a_killed_replacement_is_finished_without_the_old_folder(tmp_path):
    out = tmp_path / "out"
    (out / "group").mkdir(parents=True)
    publishing = _abandoned(out, PUBLISHING, {"group/new.tsv": "new", ".nmflow-replaced/group/stale.tsv": "old"})
    (out / "group").rmdir()  # killed after the old group/ moved into the publish folder
    assert recover_staged(out) == [publishing]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["group/new.tsv"]


def test_a_failure_leaves_the_destination_as_it_was(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), staged_folder(out) as stage:
        (stage / "a.tsv").write_text("a")
        raise RuntimeError("a step failed")
    assert not (tmp_path / "new").exists()


def test_a_killed_publication_is_finished_and_an_unfinished_staging_removed(tmp_path):
    out = tmp_path / "out"
    (out / "sub-01").mkdir(parents=True)
    (out / "sub-01" / "moved.tsv").write_text("moved before the kill")
    publishing = _abandoned(out, PUBLISHING, {"sub-01/rest.tsv": "rest", "sub-01.html": "report"})
    staging = _abandoned(out, STAGING, {"sub-02/half.tsv": "never complete"})
    assert sorted(recover_staged(out)) == sorted([publishing, staging])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "sub-01.html", "sub-01/moved.tsv", "sub-01/rest.tsv"]
    assert (out / "sub-01" / "rest.tsv").read_text() == "rest"


def test_the_folder_of_a_running_process_is_left_alone(tmp_path):
    out = tmp_path / "out"
    publishing = _abandoned(out, PUBLISHING, {"a.tsv": "a"})
    lock = os.open(publishing / LOCK, os.O_RDWR)  # another open file: as another process holds it
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        assert recover_staged(out) == [] and (publishing / "a.tsv").exists()
        with staged_folder(out) as stage:  # a publication of this process beside it
            (stage / "b.tsv").write_text("b")
            assert recover_staged(out) == []
        assert (out / "b.tsv").exists() and (publishing / "a.tsv").exists()
    finally:
        os.close(lock)
    assert recover_staged(out) == [publishing] and (out / "a.tsv").read_text() == "a"


@pytest.mark.parametrize("source, target, says", [
    ("in", "in", "OUT_DIR is the input dataset"),
    ("in", "in/derivatives/x", "OUT_DIR is inside the input dataset"),
    ("in/data", "in", "OUT_DIR contains the input dataset"),
])
def test_outputs_are_kept_out_of_the_input(tmp_path, source, target, says):
    (tmp_path / "in" / "data").mkdir(parents=True)
    os.symlink(tmp_path / "in", tmp_path / "link")
    with pytest.raises(NmflowInputError, match=says):
        check_apart(tmp_path / source, tmp_path / target, "OUT_DIR")
    with pytest.raises(NmflowInputError, match=says.split(" the")[0]):  # through a symbolic link too
        check_apart(tmp_path / source, tmp_path / target.replace("in", "link", 1), "OUT_DIR")
    check_apart(tmp_path / "in", tmp_path / "out", "OUT_DIR")
    check_apart(tmp_path / "in", tmp_path / "in" / "derivatives" / "x", "OUT_DIR", allowed="derivatives")


@pytest.mark.parametrize("text, says", [
    (None, "sidecar not found"), (b"\xff\xfe", "not UTF-8"), (b"{", "sidecar is not valid JSON"),
    (b"[1]", "sidecar must be a JSON object, not list"), (b"[" * 100_000, "not valid JSON"),
])
def test_read_json_errors_name_the_file(tmp_path, text, says):
    path = tmp_path / "x.json"
    if text is not None:
        path.write_bytes(text)
    with pytest.raises(NmflowInputError, match=says) as info:
        read_json(path, "sidecar")
    assert info.value.path == str(path)


def test_concurrent_publications_into_one_folder(tmp_path):
    """Two writers staging at the same time (as two calls into one OUT_DIR): each finds the other's folder
    locked, and both sets of files arrive."""
    out, barrier = tmp_path / "out", threading.Barrier(2, timeout=10)

    def publish(name):
        with staged_folder(out) as stage:
            (stage / f"sub-{name}").mkdir()
            (stage / f"sub-{name}" / "a.tsv").write_text(name)
            barrier.wait()  # both staged, neither published
            assert recover_staged(out) == []
            barrier.wait()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(publish, ["01", "02"]))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "sub-01", "sub-01/a.tsv", "sub-02", "sub-02/a.tsv"]


def test_tsv_text_writes_what_pandas_writes_at_any_width():
    import numpy as np
    import pandas as pd

    from nmflow.fileio import WIDE_COLUMNS, tsv_text

    rng = np.random.default_rng(0)
    wide = rng.standard_normal((7, 300)) * 10.0 ** rng.integers(-8, 8, (7, 300))
    wide[2, 5] = np.nan
    wide[3, :] = np.nan
    wide[4, 7], wide[4, 8], wide[5, 9] = np.inf, -np.inf, -0.0
    frame = pd.DataFrame(wide, columns=[f"c{k}" for k in range(300)])
    frame.insert(0, "participant_id", [f"sub-{k}" for k in range(7)])
    frame.insert(1, "n_extreme", np.arange(7))
    frame.insert(2, "group", ["a", None, "c", "d", "e", "f", "g"])
    frame["single"] = np.float32(1 / 3)
    frame["flag"] = [True, False] * 3 + [True]
    expected = frame.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.6g", lineterminator="\n")
    assert frame.shape[1] > WIDE_COLUMNS and tsv_text(frame) == expected
    assert tsv_text(frame.iloc[:0]) == frame.iloc[:0].to_csv(sep="\t", index=False, lineterminator="\n")
    full = frame.to_csv(sep="\t", index=False, na_rep="n/a", lineterminator="\n")
    assert tsv_text(frame, float_format=None) == full and "0.33333334\t" in full  # float32 at its own precision


def test_write_tsv_writes_the_text_and_returns_the_path(tmp_path):
    import pandas as pd

    from nmflow.fileio import write_tsv

    frame = pd.DataFrame({"onset": [120.0, 1 / 3], "trial_type": ["stimulus", None]})
    path = write_tsv(tmp_path / "events.tsv", frame, float_format="%.4g")
    assert path == str(tmp_path / "events.tsv")
    assert (tmp_path / "events.tsv").read_bytes() == b"onset\ttrial_type\n120\tstimulus\n0.3333\tn/a\n"
