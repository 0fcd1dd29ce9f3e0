"""Bad inputs: one clear error line each, nothing written for the broken run, the others finish.

Per-run problems are planted in sub-01 of a 2-subject copy of the tiny
dataset; sub-02 must still get all its outputs.  Atlas problems are global:
the whole call fails before anything is written.
"""

from __future__ import annotations

import signal
import time

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from helpers.participant import (
    MINIMAL, TOP_LEVEL, copy_subjects, error_lines, minimal_run_outputs, participant_argv, read_confounds,
    run_cli, run_files, tree, write_confounds,
)


@pytest.fixture()
def two_subjects(tiny_dataset, tmp_path):
    """sub-01 and sub-02 of the tiny dataset, writable."""
    root = copy_subjects(tiny_dataset["fmriprep"], tmp_path / "fmriprep", ["01", "02"])
    return {"fmriprep": root, "atlas_dir": tiny_dataset["atlas_dir"], "files": run_files(root, "01")}


# -- ways to break sub-01 --------------------------------------------------------------------------

def _missing_confounds(files):
    files["confounds"].unlink()
    files["confounds"].with_suffix(".json").unlink()


def _garbage_confounds(files):
    files["confounds"].write_bytes(b"\x89\xff\xfe\x00" + bytes(range(256)) * 16)


def _short_confounds(files):
    write_confounds(read_confounds(files["confounds"]).iloc[:40], files["confounds"])


def _no_csf_column(files):
    table = read_confounds(files["confounds"])
    write_confounds(table.drop(columns=[c for c in table if c.startswith("csf")]), files["confounds"])


def _bold_3d(files):
    img = nib.load(files["bold"])
    nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine).to_filename(files["bold"])


def _mask_other_grid(files):
    mask = nib.load(files["mask"])
    affine = mask.affine.copy()
    affine[:3, :3] /= 2  # a 4 mm mask for an 8 mm BOLD
    nib.Nifti1Image(np.ones((36, 44, 36), np.uint8), affine).to_filename(files["mask"])


def _nan_in_brain(files):
    img = nib.load(files["bold"])
    data = img.get_fdata(dtype=np.float32)
    brain = np.argwhere(np.asarray(nib.load(files["mask"]).dataobj) > 0)
    for i, j, k in brain[:: max(1, len(brain) // 5)][:5]:
        data[i, j, k, 10:20] = np.nan
    nib.Nifti1Image(data, img.affine, img.header).to_filename(files["bold"])


def _high_motion(files):
    table = read_confounds(files["confounds"])
    table.loc[table.index % 3 == 0, "framewise_displacement"] = 2.5  # every third volume: no 5-volume segment left
    write_confounds(table, files["confounds"])


def _truncated_bold(files):
    raw = files["bold"].read_bytes()
    files["bold"].write_bytes(raw[: len(raw) // 2])


# name: (break sub-01, extra CLI args, file named in the message, words in the message)
CASES = {
    "missing_confounds": (_missing_confounds, [], "bold", ["confounds", "no matching"]),
    "garbage_confounds": (_garbage_confounds, [], "confounds", ["cannot read confounds"]),
    "short_confounds": (_short_confounds, [], "confounds", ["40 rows", "100 volumes"]),
    "missing_column": (_no_csf_column, [], "confounds", ["'csf'", "absent", "simple"]),
    "bold_not_4d": (_bold_3d, [], "bold", ["4D"]),
    "mask_other_grid": (_mask_other_grid, [], "mask", ["grid"]),
    "nan_in_brain": (_nan_in_brain, [], "bold", ["NaN", "mask"]),
    "too_few_volumes": (_high_motion, ["--denoise", "scrubbing", "--min-volumes", "60"], "confounds",
                        ["volumes", "censoring", "scrubbing", "--min-volumes 60"]),
    "truncated_bold": (_truncated_bold, [], "bold", ["truncated"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_run_fails_alone(case, two_subjects, tmp_path, capsys):
    breaker, extra, named, words = CASES[case]
    breaker(two_subjects["files"])
    out = tmp_path / "out"
    args = MINIMAL + extra  # later flags win: --denoise scrubbing replaces simple
    rc, stdout, err = run_cli(participant_argv(two_subjects["fmriprep"], out, tmp_path / "work",
                                               two_subjects["atlas_dir"], *args), capsys)
    assert rc != 0
    lines = error_lines(err)
    assert len(lines) == 1, err
    line = lines[0]
    assert two_subjects["files"][named].name in line, line
    assert "sub-02" not in line
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    assert "1 of 2 run(s) done" in stdout
    written = tree(out)
    assert not (out / "sub-01").exists()
    assert not list(out.glob("sub-01*.html"))
    assert not any("sub-01" in p for p in written), sorted(p for p in written if "sub-01" in p)
    desc = "scrubbing" if "scrubbing" in extra else "simple"
    assert written == minimal_run_outputs("02", desc) | TOP_LEVEL  # sub-02 complete, no leftovers (.staging)
    ts = next(p for p in written if p.endswith("_timeseries.tsv"))
    table = pd.read_csv(out / ts, sep="\t")
    assert table.shape[1] == 7 and len(table) >= 60 and np.isfinite(table.to_numpy(float)).all()


# -- atlas problems: global, nothing written -------------------------------------------------------

def _assert_global_failure(rc, err, out):
    assert rc != 0
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert not tree(out), sorted(tree(out))
    return lines[0]


def test_user_atlas_label_missing_from_image(two_subjects, tmp_path, capsys):
    image = two_subjects["atlas_dir"] / "Yeo-7_space-MNI152NLin6_res-8x8x8.nii.gz"
    assert sorted(np.unique(np.asarray(nib.load(image).dataobj))) == list(range(8))
    labels = tmp_path / "mylabels.tsv"
    pd.DataFrame({"index": range(1, 9), "name": [f"net{i}" for i in range(1, 9)]}).to_csv(labels, sep="\t", index=False)
    out = tmp_path / "out"
    rc, _, err = run_cli(participant_argv(two_subjects["fmriprep"], out, tmp_path / "work", two_subjects["atlas_dir"],
                                          "--atlas", "yeo7thin", f"mine={image}:{labels}", "--denoise", "simple"),
                         capsys)
    line = _assert_global_failure(rc, err, out)
    for word in ("label", "[8]", "not found", labels.name, image.name):
        assert word in line, f"{word!r} not in {line!r}"


def test_unknown_atlas_name(two_subjects, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = run_cli(participant_argv(two_subjects["fmriprep"], out, tmp_path / "work", two_subjects["atlas_dir"],
                                          "--atlas", "yeo17thick", "yeo99"), capsys)
    line = _assert_global_failure(rc, err, out)
    assert "unknown atlas" in line and "'yeo99'" in line and "yeo17thick" in line


class _Hung(Exception):
    pass


def test_atlas_unavailable_offline(two_subjects, tmp_path, capsys, monkeypatch):
    """An empty --atlas-dir and an empty nilearn data folder: fail fast, saying what to download and where."""
    empty_atlas_dir, nilearn_data = tmp_path / "no_atlases", tmp_path / "nilearn_data"
    empty_atlas_dir.mkdir(), nilearn_data.mkdir()
    monkeypatch.setenv("NILEARN_DATA", str(nilearn_data))
    monkeypatch.delenv("NMFLOW_ATLAS_DIR", raising=False)
    out = tmp_path / "out"

    def hung(signum, frame):
        raise _Hung("nmflow still running after 120 s: the atlas fetch hangs offline")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    start = time.monotonic()
    try:
        rc, _, err = run_cli(participant_argv(two_subjects["fmriprep"], out, tmp_path / "work", empty_atlas_dir,
                                              "--atlas", "yeo17thick", "--denoise", "simple"), capsys)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.monotonic() - start
    if rc == 0:
        pytest.skip("this machine is online: nilearn downloaded the Yeo atlas")
    line = _assert_global_failure(rc, err, out)
    assert elapsed < 20, f"offline atlas failure took {elapsed:.1f} s"
    for word in ("yeo17thick", "offline", "download", "Yeo_JNeurophysiol11_MNI152.zip", str(empty_atlas_dir),
                 "Yeo-17-liberal_space-MNI152NLin6_res-2x2x2.nii.gz"):
        assert word in line, f"{word!r} not in {line!r}"


# -- tables read with nmflow.fileio.read_tsv: one NmflowInputError naming the file ------------------

RAGGED = "a\tb\n1\t2\n3\t4\t5\t6\n"


@pytest.mark.parametrize("content, words", [
    (None, ["confounds file not found"]),
    (RAGGED, ["cannot read confounds file (ParserError", "Expected 2 fields"]),
])
def test_unreadable_confounds_table(tmp_path, content, words):
    from nmflow.participant.denoise import read_confounds
    from nmflow.errors import NmflowInputError

    path = tmp_path / "confounds.tsv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(NmflowInputError) as info:
        read_confounds(path)
    assert str(info.value).startswith(f"{path}: ") and all(w in str(info.value) for w in words)


@pytest.mark.parametrize("content, words", [
    (None, ["time series not found"]),
    (RAGGED, ["cannot read time series (ParserError"]),
    ("a\tb\n1\tx\n", ["cannot read time series (ValueError", "'x'"]),
])
def test_unreadable_timeseries_table(tmp_path, content, words):
    from nmflow.errors import NmflowInputError
    from nmflow.group.features import read_timeseries

    path = tmp_path / "ts.tsv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(NmflowInputError) as info:
        read_timeseries(path)
    assert str(info.value).startswith(f"{path}: ") and all(w in str(info.value) for w in words)


def test_timeseries_with_numeric_header_is_headerless(tmp_path):
    from nmflow.group.features import read_timeseries

    path = tmp_path / "ts.tsv"
    path.write_text("1\t2.5\nn/a\t4\n")
    names, values = read_timeseries(path)
    assert names == ["R1", "R2"]
    np.testing.assert_array_equal(values, [[1, 2.5], [np.nan, 4]])


def test_unreadable_participants_and_split_tables(tmp_path):
    from nmflow.errors import NmflowInputError
    from nmflow.group.features import read_participants
    from nmflow.normative.crossfit import make_folds

    participants = tmp_path / "participants.tsv"
    participants.write_text(RAGGED)
    with pytest.raises(NmflowInputError, match=r"participants.tsv: cannot read participants file \(ParserError"):
        read_participants(participants, "group", None, [])
    table = pd.DataFrame({"group": ["control"] * 3, "site": ["a"] * 3}, index=["01", "02", "03"])
    with pytest.raises(NmflowInputError, match=r"split.tsv: split file not found"):
        make_folds(table, "control", split_file=tmp_path / "split.tsv")
