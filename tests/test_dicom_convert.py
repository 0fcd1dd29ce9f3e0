"""`nmflow dicom convert` on real DICOMs from installed packages."""

from __future__ import annotations

import contextlib
import io
import json

import nibabel as nib
import numpy as np
import pytest
from bids_validator import BIDSValidator
from helpers.dicom import (dcm2niix_direct, heudiconv_data, link, needs_dcm2niix,
                           pydicom_file, read_csv, run_cli, write_csv, write_series)
from pydicom.uid import generate_uid

pytestmark = needs_dcm2niix


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Inventory of real DICOMs, the user's edits, and one conversion."""
    from nmflow.cli.main import main

    tmp = tmp_path_factory.mktemp("convert")
    data = heudiconv_data()
    sources = {
        "bold": [data / "axasc35.dcm"],
        "fmap": sorted((data / "01-fmap_acq-3mm").iterdir()),
        "t1": [pydicom_file("MR_small.dcm")],
    }
    dicom = tmp / "dicom"
    link(sources["bold"][0], dicom / "visit" / "epi.dcm")
    link(sources["fmap"][0], dicom / "visit" / "fmap" / "fm.dcm")
    link(data / "01-anat-scout" / "0001.dcm", dicom / "visit" / "scout.dcm")
    for path in sorted((data / "Phoenix").rglob("*.dcm")):
        link(path, dicom / "phoenix" / path.name)
    link(sources["t1"][0], dicom / "other" / "mr_small.dcm")
    (dicom / "visit" / "README.txt").write_text("not a DICOM")
    csv_path, key = tmp / "inventory.csv", tmp / "key.csv"
    assert main(["dicom", "inventory", str(dicom), str(csv_path), "--key-file", str(key)]) == 0
    rows = read_csv(csv_path)
    fmap = next(r for r in rows if r["suffix"] == "phasediff")
    assert fmap["include"] == "no" and "without its magnitude image" in fmap["reason"]
    fmap["include"] = "yes"  # the user's edits win: convert the incomplete fieldmap all the same
    for row in rows:  # the user's edits: the EPI belongs to the fieldmap's visit
        if row["series_description"] == "ax_asc_35sl":
            row.update(include="yes", datatype="func", suffix="bold", entities="task-rest",
                       participant_label=fmap["participant_label"],
                       session_label=fmap["session_label"])
        if row["n_files"] == "1" and row["series_description"] == "" and row["tr_s"] == "4.0":
            row.update(include="yes", datatype="anat", suffix="T1w")  # MR_small
    write_csv(csv_path, rows)
    bids = tmp / "bids"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["dicom", "convert", str(csv_path), str(bids)]) == 0
    t1 = next(r for r in rows if r["suffix"] == "T1w")
    return {"tmp": tmp, "bids": bids, "csv": csv_path, "sources": sources, "stderr": stderr.getvalue(),
            "fmap_sub": fmap["participant_label"], "t1_sub": t1["participant_label"]}


def test_included_unusable_series_are_converted_with_a_warning(converted):
    sub, lines = converted["fmap_sub"], converted["stderr"].splitlines()
    stem = f"sub-{sub}/ses-01"
    fmap = [ln for ln in lines if f": {stem}/fmap/sub-{sub}_ses-01_phasediff: " in ln]
    assert len(fmap) == 1 and fmap[0].startswith("nmflow: warning: inventory.csv: line ")
    assert fmap[0].endswith("phasediff fieldmap without its magnitude image (incomplete fieldmap, invalid BIDS) "
                            "(converted: the CSV says include=yes)")
    assert any(f"{stem}/func/sub-{sub}_ses-01_task-rest_bold: functional series of 1 volume" in ln for ln in lines)


def _outputs(bids):
    return sorted(p.relative_to(bids).as_posix() for p in bids.rglob("*") if p.is_file())


def test_outputs_are_valid_bids_names(converted):
    bids, sub, t1_sub = converted["bids"], converted["fmap_sub"], converted["t1_sub"]
    files = _outputs(bids)
    stem = f"sub-{sub}/ses-01"
    expected = {f"{stem}/func/sub-{sub}_ses-01_task-rest_bold.nii.gz",
                f"{stem}/fmap/sub-{sub}_ses-01_phasediff.nii.gz",
                f"sub-{t1_sub}/ses-01/anat/sub-{t1_sub}_ses-01_T1w.nii.gz",
                "dataset_description.json", "participants.tsv", "README"}
    assert expected <= set(files)
    assert not [f for f in files if "scout" in f.lower() or "phoenix" in f.lower()]
    validator = BIDSValidator()
    assert [f for f in files if not validator.is_bids("/" + f)] == []
    description = json.loads((bids / "dataset_description.json").read_text())
    assert description["BIDSVersion"] and description["DatasetType"] == "raw"
    participants = read_csv_tsv(bids / "participants.tsv")
    assert {r["participant_id"] for r in participants} == {f"sub-{sub}", f"sub-{t1_sub}"}
    assert {r["participant_id"]: r["age"] for r in participants}[f"sub-{sub}"] == "33"


def read_csv_tsv(path):
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def test_pybids_indexes_the_dataset(converted):
    from bids import BIDSLayout

    layout = BIDSLayout(converted["bids"], validate=True)
    assert len(layout.get(suffix="bold", extension=".nii.gz")) == 1
    assert layout.get_subjects() == sorted([converted["fmap_sub"], converted["t1_sub"]])
    bold = layout.get(suffix="bold", extension=".nii.gz")[0]
    assert bold.get_metadata()["TaskName"] == "rest"


@pytest.mark.parametrize("kind, relpath", [
    ("bold", "sub-{s}/ses-01/func/sub-{s}_ses-01_task-rest_bold.nii.gz"),
    ("fmap", "sub-{s}/ses-01/fmap/sub-{s}_ses-01_phasediff.nii.gz"),
    ("t1", "sub-{t}/ses-01/anat/sub-{t}_ses-01_T1w.nii.gz"),
])
def test_image_data_equal_direct_dcm2niix(converted, tmp_path, kind, relpath):
    path = converted["bids"] / relpath.format(s=converted["fmap_sub"], t=converted["t1_sub"])
    ours = np.asanyarray(nib.load(path).dataobj)
    direct = dcm2niix_direct(converted["sources"][kind], tmp_path)
    assert ours.shape == direct.shape and ours.dtype == direct.dtype
    assert np.array_equal(ours, direct)
    assert ours.std() > 0


def test_fieldmap_intended_for_the_bold_run(converted):
    sub = converted["fmap_sub"]
    sidecar = converted["bids"] / f"sub-{sub}/ses-01/fmap/sub-{sub}_ses-01_phasediff.json"
    meta = json.loads(sidecar.read_text())
    assert meta["IntendedFor"] == [f"ses-01/func/sub-{sub}_ses-01_task-rest_bold.nii.gz"]
    assert meta["EchoTime2"] > meta["EchoTime1"]


def test_rerun_skips_and_overwrite_redoes(converted, capsys):
    bids, csv_path = converted["bids"], converted["csv"]
    bold = next(bids.rglob("*_bold.nii.gz"))
    mtime = bold.stat().st_mtime_ns
    code, out, _ = run_cli(["dicom", "convert", str(csv_path), str(bids)], capsys)
    assert code == 0 and out.count("skipped sub-") == 2 and "converted sub-" not in out
    assert bold.stat().st_mtime_ns == mtime
    code, out, _ = run_cli(["dicom", "convert", str(csv_path), str(bids), "--overwrite"], capsys)
    assert code == 0 and out.count("converted sub-") == 2
    assert bold.stat().st_mtime_ns != mtime
    assert not list(bids.rglob(".nmflow-partial-*"))


def test_multifile_4d_series(tmp_path, capsys):
    study = generate_uid()
    bold = write_series(tmp_path / "dicom", patient_id="P9", study_uid=study,
                        description="rest_bold", series_number=4, n_slices=4, n_volumes=3)
    write_series(tmp_path / "dicom", patient_id="P9", study_uid=study,
                 description="t1_mprage", series_number=2, n_slices=4)
    csv_path = tmp_path / "inv.csv"
    assert run_cli(["dicom", "inventory", str(tmp_path / "dicom"), str(csv_path),
                    "--key-file", str(tmp_path / "key.csv")], capsys)[0] == 0
    assert run_cli(["dicom", "convert", str(csv_path), str(tmp_path / "bids")], capsys)[0] == 0
    (image,) = (tmp_path / "bids").rglob("*_task-rest_bold.nii.gz")
    ours = np.asanyarray(nib.load(image).dataobj)
    assert ours.shape == (64, 64, 4, 3)
    assert np.array_equal(ours, dcm2niix_direct(bold, tmp_path / "direct"))
    assert len(list((tmp_path / "bids").rglob("*_T1w.nii.gz"))) == 1


@pytest.mark.parametrize("edit, message", [
    ({"datatype": "func", "entities": ""}, "func series need a task-<label> entity"),
    ({"datatype": "brain"}, "datatype must be one of"),
    ({"entities": "task-rest_foo-1"}, "entity 'foo-1' is not one of"),
    ({"series_instance_uid": "1.2.3.4"}, "series 1.2.3.4 not found under"),
])
def test_bad_csv_edits_fail_cleanly(tmp_path, capsys, edit, message):
    write_series(tmp_path / "dicom", patient_id="P1", study_uid=generate_uid(),
                 description="rest_bold", series_number=4, n_volumes=2)
    csv_path, bids = tmp_path / "inv.csv", tmp_path / "bids"
    run_cli(["dicom", "inventory", str(tmp_path / "dicom"), str(csv_path),
             "--key-file", str(tmp_path / "key.csv")], capsys)
    rows = read_csv(csv_path)
    rows[0].update(edit)
    write_csv(csv_path, rows)
    code, out, err = run_cli(["dicom", "convert", str(csv_path), str(bids)], capsys)
    assert code == 1
    assert err.startswith(f"nmflow: error: {csv_path}: ") and message in err
    assert err.count("\n") == 1
    assert not bids.exists() or not list(bids.iterdir())


def test_duplicate_bids_names_are_rejected(tmp_path, capsys):
    study = generate_uid()
    for number in (3, 5):
        write_series(tmp_path / "dicom", patient_id="P1", study_uid=study,
                     description="rest_bold", series_number=number, n_volumes=2)
    csv_path = tmp_path / "inv.csv"
    run_cli(["dicom", "inventory", str(tmp_path / "dicom"), str(csv_path),
             "--key-file", str(tmp_path / "key.csv")], capsys)
    rows = read_csv(csv_path)
    for row in rows:
        row["entities"] = "task-rest"  # the user removed the proposed run-<n>
    write_csv(csv_path, rows)
    code, _, err = run_cli(["dicom", "convert", str(csv_path), str(tmp_path / "bids")], capsys)
    assert code == 1 and "line 3: same BIDS name as line 2" in err
