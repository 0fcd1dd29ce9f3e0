"""Bad inputs of the participant level: the table of ways to break a run, and of ways to break the whole call.

Per-run rows (:data:`RUN_ROWS`): each breaks its own clone of one subject of the tiny dataset (sub-c01,
sub-c02, ...); one call processes them all beside an intact sub-02.  Every broken run must give exactly one
``nmflow: error:`` line naming its file, write nothing, and sub-02 must finish complete; the input dataset
is left byte for byte as it was.  Call rows (:data:`CALL_ROWS`) stop the whole call before anything is
written.  The same check for every row: :func:`helpers.badinput.message_line`.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers.badinput import Row, message_line
from helpers.participant import (
    TOP_LEVEL, clone_subject, copy_subjects, hashes, minimal_run_outputs, participant_argv, read_confounds,
    rewrite_image, run_cli, tree, write_confounds,
)
from nmflow.bids_io import check_derivatives_dir

ARGS = ["--atlas", "yeo7thin", "--denoise", "scrubbing", "--metrics", "pearson", "--min-volumes", "60"]


# -- ways to break one run -------------------------------------------------------------------------------------

def _edit_confounds(change):
    def breaks(files):
        write_confounds(change(read_confounds(files["confounds"])), files["confounds"])
    return breaks


def _set_cell(column, row, value):
    def change(table):
        table[column] = table[column].astype(object)
        table.loc[row, column] = value
        return table
    return _edit_confounds(change)


def _flip_bit(position):
    """Flip one bit of the gzipped BOLD at ``position(file size)``."""
    def breaks(files):
        raw = bytearray(files["bold"].read_bytes())
        raw[position(len(raw))] ^= 0x10
        files["bold"].write_bytes(bytes(raw))
    return breaks


def _sidecar(text):
    def breaks(files):
        files["sidecar"].write_text(text)
    return breaks


def _no_tr(files):
    files["sidecar"].write_text(json.dumps({"TaskName": "rest"}))
    img = nib.load(files["bold"])
    img.header["pixdim"][4] = 0
    nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header).to_filename(files["bold"])


def _mask(change):
    def breaks(files):
        mask = nib.load(files["mask"])
        nib.Nifti1Image(change(np.asarray(mask.dataobj)), mask.affine, mask.header).to_filename(files["mask"])
    return breaks


def _mask_other_grid(files):
    mask = nib.load(files["mask"])
    affine = mask.affine.copy()
    affine[:3, :3] /= 2  # a 4 mm mask for an 8 mm BOLD
    nib.Nifti1Image(np.ones((36, 44, 36), np.uint8), affine).to_filename(files["mask"])


def _truncate(key):
    def breaks(files):
        raw = files[key].read_bytes()
        files[key].write_bytes(raw[: len(raw) // 2])
    return breaks


def _nan_in_brain(data):
    data[2:5, 2:5, 2:5, 10:20] = np.nan
    return data


def _constant_region(files):
    labels = np.asarray(nib.load(files["atlas"]).dataobj)

    def change(data):
        data[labels == 3] = 500.0
        return data
    rewrite_image(files["bold"], change)


def _complex_bold(files):
    img = nib.load(files["bold"])
    nib.Nifti1Image(np.asarray(img.dataobj).astype(np.complex64), img.affine).to_filename(files["bold"])


def _delete(*keys):
    def breaks(files):
        for key in keys:
            files[key].unlink()
    return breaks


def _rewrite(change):
    return lambda files: rewrite_image(files["bold"], change)


RUN = "the other runs (sub-02 complete); nothing of this run"
RUN_ROWS = {
    "confounds missing": Row(_delete("confounds"), "bold", ("no matching desc-confounds_timeseries.tsv",), finishes=RUN),
    "confounds not a table": Row(lambda f: f["confounds"].write_bytes(b"\x89\xff\xfe\x00" + bytes(range(256)) * 16),
                                 "confounds", ("cannot read confounds",), finishes=RUN),
    "confounds empty": Row(lambda f: f["confounds"].write_text(read_confounds(f["confounds"]).iloc[:0].to_csv(
        sep="\t", index=False)), "confounds", ("confounds file is empty",), finishes=RUN),
    "confounds shorter than the BOLD": Row(_edit_confounds(lambda t: t.iloc[:40]), "confounds",
                                           ("40 rows", "100 volumes"), finishes=RUN),
    "confound column missing": Row(_edit_confounds(lambda t: t.drop(columns=[c for c in t if c.startswith("csf")])),
                                   "confounds", ("'csf'", "absent", "scrubbing"), finishes=RUN),
    "confound cell not a number": Row(_set_cell("csf", 4, "abc"), "confounds",
                                      ("column 'csf', line 6", "'abc'", "not a finite number"), finishes=RUN),
    "confound cell infinite": Row(_set_cell("framewise_displacement", 7, "inf"), "confounds",
                                  ("column 'framewise_displacement', line 9: inf is not a finite number",),
                                  finishes=RUN),
    "too few volumes after censoring": Row(_set_cell("framewise_displacement", slice(None, None, 3), 2.5),
                                           "confounds", ("volumes left", "scrubbing", "--min-volumes 60"),
                                           finishes=RUN),
    "BOLD missing its mask": Row(_delete("mask"), "bold", ("no matching desc-brain_mask",), finishes=RUN),
    "BOLD 3D": Row(lambda f: nib.Nifti1Image(np.asarray(nib.load(f["bold"]).dataobj)[..., 0],
                                             nib.load(f["bold"]).affine).to_filename(f["bold"]),
                   "bold", ("4D",), finishes=RUN),
    "BOLD truncated": Row(_truncate("bold"), "bold", ("truncated or corrupt",), finishes=RUN),
    "BOLD bit flip, first quarter": Row(_flip_bit(lambda n: n // 4), "bold", ("corrupt",), finishes=RUN),
    "BOLD bit flip, middle": Row(_flip_bit(lambda n: n // 2 + 77), "bold", ("corrupt",), finishes=RUN),
    "BOLD bit flip, gzip CRC": Row(_flip_bit(lambda n: n - 6), "bold", ("CRC check failed",), finishes=RUN),
    "BOLD bit flip, gzip length": Row(_flip_bit(lambda n: n - 3), "bold", ("Incorrect length",), finishes=RUN),
    "BOLD not an image": Row(lambda f: f["bold"].write_bytes(gzip.compress(b"not a nifti file" * 30)), "bold",
                             ("cannot read image header",), finishes=RUN),
    "BOLD of complex numbers": Row(_complex_bold, "bold", ("unsupported data type complex64",), finishes=RUN),
    "BOLD with NaN in the brain": Row(_rewrite(_nan_in_brain), "bold", ("NaN", "mask"), finishes=RUN),
    "BOLD all zero": Row(_rewrite(np.zeros_like), "bold", ("constant over time inside the brain mask (all zero)",),
                         finishes=RUN),
    "BOLD constant": Row(_rewrite(lambda d: np.full_like(d, 700.0)), "bold",
                         ("constant over time inside the brain mask: no signal",), finishes=RUN),
    "a region constant": Row(_constant_region, "bold",
                             ("atlas yeo7thin: region(s) 3_Dorsal_Area are constant over time",), finishes=RUN),
    "BOLD demeaned (psc meaningless)": Row(_rewrite(lambda d: d - d.mean(axis=3, keepdims=True)), "bold",
                                           ("mean signal near 0", "--standardize zscore_sample"), finishes=RUN),
    "mask empty": Row(_mask(np.zeros_like), "mask", ("brain mask is empty",), finishes=RUN),
    "mask on another grid": Row(_mask_other_grid, "mask", ("grid",), finishes=RUN),
    "mask truncated": Row(_truncate("mask"), "mask", ("truncated or corrupt",), finishes=RUN),
    "sidecar not JSON": Row(_sidecar("{RepetitionTime: 2"), "sidecar", ("sidecar is not valid JSON",), finishes=RUN),
    "sidecar not an object": Row(_sidecar("[2.0]"), "sidecar", ("sidecar must be a JSON object, not list",),
                                 finishes=RUN),
    "TR not a number": Row(_sidecar('{"RepetitionTime": "two"}'), "sidecar",
                           ("RepetitionTime must be a positive number of seconds, got 'two'",), finishes=RUN),
    "TR negative": Row(_sidecar('{"RepetitionTime": -2}'), "sidecar", ("positive number", "-2"), finishes=RUN),
    "no TR in sidecar or header": Row(_no_tr, "bold", ("no RepetitionTime in the sidecar and none in the header",),
                                      finishes=RUN),
}


@pytest.fixture(scope="module")
def broken_runs(tiny_dataset, tmp_path_factory):
    """One call over sub-02 (intact) and one clone of it per row of RUN_ROWS, each broken its own way."""
    tmp = tmp_path_factory.mktemp("broken_runs")
    root = copy_subjects(tiny_dataset["fmriprep"], tmp / "fmriprep", ["02"])
    labels = {}
    for k, (name, row) in enumerate(RUN_ROWS.items(), start=1):
        labels[name] = f"c{k:02d}"
        files = clone_subject(root, "02", root, labels[name])
        files["sidecar"] = Path(str(files["bold"]).replace(".nii.gz", ".json"))
        files["atlas"] = tiny_dataset["atlas_dir"] / "Yeo-7_space-MNI152NLin6_res-8x8x8.nii.gz"
        row.breaks(files)
        labels[name] = (labels[name], files)
    before = hashes(root, "*")
    rc, out, err = run_cli(participant_argv(root, tmp / "out", tmp / "work", tiny_dataset["atlas_dir"], *ARGS))
    assert hashes(root, "*") == before, "the input dataset was modified"
    return {"rc": rc, "stdout": out, "stderr": err, "out": tmp / "out", "subjects": labels}


def test_intact_run_finishes_and_the_summary_counts_every_run(broken_runs):
    assert broken_runs["rc"] == 1
    assert f"nmflow participant: 1 of {len(RUN_ROWS) + 1} run(s) done" in broken_runs["stdout"]
    written = tree(broken_runs["out"])
    assert written == minimal_run_outputs("02", "scrubbing") | TOP_LEVEL  # no leftovers (staging folders)
    ts = next(p for p in written if p.endswith("_timeseries.tsv"))
    table = pd.read_csv(broken_runs["out"] / ts, sep="\t")
    assert table.shape[1] == 7 and len(table) >= 60 and np.isfinite(table.to_numpy(float)).all()
    assert len([ln for ln in broken_runs["stderr"].splitlines() if ln.startswith("nmflow: error:")]) == len(RUN_ROWS)


@pytest.mark.parametrize("name", list(RUN_ROWS))
def test_broken_run(name, broken_runs):
    row = RUN_ROWS[name]
    label, files = broken_runs["subjects"][name]
    line = message_line(broken_runs["stderr"], f"sub-{label}_", row.says)
    assert files[row.names].name in line, line
    assert not [p for p in tree(broken_runs["out"]) if f"sub-{label}" in p]


# -- ways to break the whole call ------------------------------------------------------------------------------

def _out_is_input(ctx):
    ctx["out"] = ctx["fmriprep"]


def _out_inside_input(ctx):
    ctx["out"] = ctx["fmriprep"] / "derivatives" / "nmflow"


def _input_inside_out(ctx):
    ctx["out"] = ctx["fmriprep"].parent


def _work_inside_input(ctx):
    ctx["work"] = ctx["fmriprep"] / "work"


def _user_atlas(indices):
    def breaks(ctx):
        labels = ctx["tmp"] / "mylabels.tsv"
        pd.DataFrame({"index": indices, "name": [f"net{i}" for i in indices]}).to_csv(labels, sep="\t", index=False)
        image = ctx["atlas_dir"] / "Yeo-7_space-MNI152NLin6_res-8x8x8.nii.gz"
        ctx.update(labels=labels, image=image, args=["--atlas", "yeo7thin", f"mine={image}:{labels}"])
    return breaks


def _labels_text(text):
    def breaks(ctx):
        _user_atlas([1])(ctx)
        ctx["labels"].write_text(text)
    return breaks


def _strategy(text):
    def breaks(ctx):
        ctx["strategy"] = ctx["tmp"] / "mine.yml"
        if text is not None:
            ctx["strategy"].write_text(text)
        ctx["args"] = ["--denoise", str(ctx["strategy"])]
    return breaks


def _filter_file(ctx):
    ctx["filter"] = ctx["tmp"] / "filter.json"
    ctx["filter"].write_text('{"bold": {"task": "rest",}}')
    ctx["args"] = ["--bids-filter-file", str(ctx["filter"])]


def _every_sidecar_broken(ctx):
    sidecars = sorted(ctx["fmriprep"].rglob("*_bold.json"))
    for sidecar in sidecars:
        sidecar.write_text("{")
    ctx.update(sidecar=sidecars[0], n_errors=len(sidecars))


def _description(text):
    def breaks(ctx):
        ctx["description"] = ctx["fmriprep"] / "dataset_description.json"
        ctx["description"].write_text(text)
    return breaks


def _no_subject_folders(ctx):
    for folder in ctx["fmriprep"].glob("sub-*"):
        folder.rename(ctx["fmriprep"] / folder.name.replace("sub-", "subject-"))


CALL = "nothing runs; nothing is written"
CALL_ROWS = {
    "OUT_DIR is the input": Row(_out_is_input, "out", ("OUT_DIR is the input dataset", "choose a folder outside")),
    "OUT_DIR inside the input": Row(_out_inside_input, "out", ("OUT_DIR is inside the input dataset",)),
    "OUT_DIR contains the input": Row(_input_inside_out, "out", ("OUT_DIR contains the input dataset",)),
    "work folder inside the input": Row(_work_inside_input, "work", ("the work folder (-w) is inside the input",)),
    "unknown atlas": Row(lambda ctx: ctx.update(args=["--atlas", "yeo99"]), "",
                         ("unknown atlas 'yeo99'", "yeo17thick")),
    "atlas label missing from the image": Row(_user_atlas(range(1, 9)), "image",
                                              ("label(s) [8] of mylabels.tsv not found in the image",)),
    "image label missing from the atlas table": Row(_user_atlas(range(1, 7)), "labels",
                                                    ("label(s) [7] of", "have no name in this table")),
    "atlas table index not a number": Row(_labels_text("index\tname\n1\ta\nx\tb\n"), "labels",
                                          ("line 3: index 'x' is not a whole number",)),
    "strategy file missing": Row(_strategy(None), "strategy", ("strategy file not found",)),
    "strategy pattern not a regex": Row(_strategy("name: mine\nconfounds: ['csf(']\n"), "strategy",
                                        ("confound pattern 'csf(' is not a regular expression",)),
    "BIDS filter file not JSON": Row(_filter_file, "filter", ("BIDS filter file is not valid JSON",)),
    "participant label not in the dataset": Row(lambda ctx: ctx.update(args=["--participant-label", "99"]), "fmriprep",
                                                ("--participant-label: 1 participant(s) not found: sub-99",)),
    "raw dataset as BIDS_DIR": Row(_description('{"Name": "x", "BIDSVersion": "1.9.0", "DatasetType": "raw"}'),
                                   "description", ("DatasetType is 'raw'", "fMRIPrep's output folder")),
    "dataset description not JSON": Row(_description('{"Name": '), "description", ("not valid JSON",)),
    "no sub-* folder": Row(_no_subject_folders, "fmriprep", ("no sub-* folder",)),
    "every run's sidecar broken": Row(_every_sidecar_broken, "sidecar", ("sidecar is not valid JSON",),
                                      finishes="no run; the summary counts 0 of 2 run(s) done"),
}


@pytest.fixture(scope="module")
def call_dataset(tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calls")
    return copy_subjects(tiny_dataset["fmriprep"], tmp / "fmriprep", ["01", "02"])


@pytest.mark.parametrize("name", list(CALL_ROWS))
def test_broken_call(name, call_dataset, tiny_dataset, tmp_path, capsys):
    row = CALL_ROWS[name]
    fmriprep = tmp_path / "fmriprep"
    shutil.copytree(call_dataset, fmriprep)
    ctx = {"fmriprep": fmriprep, "out": tmp_path / "out", "work": tmp_path / "work", "tmp": tmp_path,
           "atlas_dir": tiny_dataset["atlas_dir"], "args": []}
    row.breaks(ctx)
    before, out_before = hashes(fmriprep, "*"), tree(ctx["out"])
    rc, stdout, err = run_cli(participant_argv(fmriprep, ctx["out"], ctx["work"], ctx["atlas_dir"],
                                               "--atlas", "yeo7thin", "--denoise", "simple", *ctx["args"]), capsys)
    assert rc == 1
    message_line(err, str(ctx[row.names]) if row.names else "", row.says)
    assert len([ln for ln in err.splitlines() if ln.startswith("nmflow: error:")]) == ctx.get("n_errors", 1), err
    assert hashes(fmriprep, "*") == before, "the input dataset was modified"
    assert tree(ctx["out"]) == out_before and not ctx["work"].exists(), "something was written"


# -- the machine: a read-only OUT_DIR, a full disk ---------------------------------------------------------------

@pytest.fixture()
def read_only_out(tmp_path):
    """An OUT_DIR nobody may write into: a read-only file system for root (who ignores permissions), else 0o555."""
    out = tmp_path / "readonly"
    out.mkdir()
    if os.geteuid() != 0:
        out.chmod(0o555)
        yield out
        out.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(out)], capture_output=True).returncode:
        pytest.skip("running as root without permission to mount a read-only file system")
    try:
        yield out
    finally:
        subprocess.run(["umount", str(out)], check=True)


def test_read_only_out_dir(read_only_out, call_dataset, tiny_dataset, tmp_path, capsys):
    rc, _, err = run_cli(participant_argv(call_dataset, read_only_out, tmp_path / "work",
                                          tiny_dataset["atlas_dir"], "--atlas", "yeo7thin", "--denoise", "simple"),
                         capsys)
    assert rc == 1
    message_line(err, str(read_only_out / "dataset_description.json"), ())
    assert any(word in err for word in ("Read-only file system", "Permission denied")), err
    assert not tree(read_only_out)


def test_full_disk_is_one_line(call_dataset, tiny_dataset, tmp_path, capsys):
    """A file-size limit (RLIMIT_FSIZE, soft limit only, so it can be lifted again) stands for a full disk:
    writing past it fails with EFBIG."""
    argv = participant_argv(call_dataset, tmp_path / "out", tmp_path / "work", tiny_dataset["atlas_dir"],
                            "--atlas", "yeo7thin", "--denoise", "simple")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        rc, _, err = run_cli(argv, capsys)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert rc == 1
    message_line(err, "File too large", ())
    assert not [p for p in tree(tmp_path / "out") if p.startswith("sub-")]


# -- the atlas cannot be fetched offline ----------------------------------------------------------------------

class _Hung(Exception):
    pass


def test_atlas_unavailable_offline(call_dataset, tmp_path, capsys, monkeypatch):
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
        rc, _, err = run_cli(participant_argv(call_dataset, out, tmp_path / "work", empty_atlas_dir,
                                              "--atlas", "yeo17thick", "--denoise", "simple"), capsys)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.monotonic() - start
    if rc == 0:
        pytest.skip("this machine is online: nilearn downloaded the Yeo atlas")
    assert rc == 1 and not tree(out)
    line = message_line(err, "", ())
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


def test_derivatives_check_warns_without_description_and_can_be_skipped(call_dataset, tiny_dataset, tmp_path, capsys):
    fmriprep = tmp_path / "fmriprep"
    shutil.copytree(call_dataset, fmriprep)
    (fmriprep / "dataset_description.json").unlink()
    assert check_derivatives_dir(fmriprep) == [f"{fmriprep}: no dataset_description.json (fMRIPrep writes one; "
                                               "is this its output folder?)"]
    (fmriprep / "dataset_description.json").write_text('{"Name": "x", "DatasetType": "raw"}')
    argv = participant_argv(fmriprep, tmp_path / "out", tmp_path / "work", tiny_dataset["atlas_dir"],
                            "--participant-label", "99", "--skip-bids-validation")
    rc, _, err = run_cli(argv, capsys)  # past the skipped check, the next one speaks
    assert rc == 1 and "DatasetType" not in err and "participant(s) not found: sub-99" in err
