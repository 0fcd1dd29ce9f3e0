"""`nmflow dicom inventory`: grouping, pseudonyms, classification, odd trees."""

from __future__ import annotations

from collections import Counter

import nibabel as nib
from helpers.dicom import (heudiconv_data, link, needs_dcm2niix, pydicom_file, read_csv,
                           run_cli, write_series)
from pydicom.uid import generate_uid

REAL_PATIENT_IDS = ["crlab", "phantom1-sid1", "dbic-test1", "ke6hL9Lm", "o6jgilro", "PHASMR6335"]


def test_inventory_of_heudiconv_test_data(tmp_path, capsys):
    csv_path, key = tmp_path / "inventory.csv", tmp_path / "private" / "key.csv"
    code, out, err = run_cli(["dicom", "inventory", str(heudiconv_data()), str(csv_path),
                              "--key-file", str(key)], capsys)
    assert code == 0, err
    assert "10 DICOM files, 8 series, 6 participants, 6 sessions" in out
    rows = read_csv(csv_path)
    by_desc = {r["series_description"]: r for r in rows}
    assert by_desc["fmap_acq-3mm"]["datatype"] == "fmap"
    assert by_desc["fmap_acq-3mm"]["suffix"] == "phasediff"
    assert by_desc["dMRI_mb3_AP_1.5"]["suffix"] == "dwi"
    assert by_desc["dMRI_mb3_AP_1.5"]["entities"] == "dir-AP"
    assert by_desc["dMRI_mb3_AP_1.5"]["n_files"] == "3"
    assert by_desc["ax_asc_35sl"]["tr_s"] == "3.0"
    assert "MOSAIC" in by_desc["ax_asc_35sl"]["image_type"]
    assert by_desc["PhoenixZIPReport"]["include"] == "no"
    assert "modality SR" in by_desc["PhoenixZIPReport"]["reason"]
    assert by_desc["AAHead_Scout"]["reason"] == "localizer"
    assert by_desc["anat-scout_ses-01_MPR_cor"]["include"] == "no"
    # the non-DICOM files (.nii.gz, .txt) are skipped silently; 3 patients share one folder
    assert "holds files of 3 participants" in err
    # no PatientID or name reaches the CSV or the terminal; all are in the key file
    key_text = key.read_text()
    for patient_id in REAL_PATIENT_IDS:
        assert patient_id in key_text
        assert patient_id not in csv_path.read_text() and patient_id not in out + err
    assert "yaroslav" not in csv_path.read_text()
    assert sorted({r["participant_label"] for r in rows}) == [f"{i:03d}" for i in range(1, 7)]
    assert key.stat().st_mode & 0o077 == 0  # private


def _odd_tree(root):
    """Mixed files, a truncated DICOM, two patients in one folder, one patient twice."""
    visit1, visit2 = generate_uid(), generate_uid()
    a1 = write_series(root / "shared", patient_id="PAT-A", study_uid=visit1,
                      description="T1_MPRAGE", series_number=2, study_date="20220301")
    b = write_series(root / "shared", patient_id="PAT-B", study_uid=generate_uid(),
                     description="rest_bold", series_number=5, n_volumes=3, n_slices=2)
    a2 = write_series(root / "2023" / "misc", patient_id="PAT-A", study_uid=visit2,
                      description="T1_MPRAGE", series_number=2, study_date="20230301")
    (root / "shared" / "notes.txt").write_text("scanner export log\n")
    (root / "2023" / "misc" / "image.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a dicom")
    link(pydicom_file("MR_small.dcm"), root / "2023" / "misc" / "linked.dcm")
    data = a2[0].read_bytes()
    (root / "2023" / "misc" / "broken.dcm").write_bytes(data[: len(data) // 2])  # a bad copy
    return len(a1) + len(b) + len(a2) + 1  # + the linked MR_small


def test_odd_tree_grouping_and_warnings(tmp_path, capsys):
    n_good = _odd_tree(tmp_path / "dicom")
    csv_path, key = tmp_path / "inv.csv", tmp_path / "key.csv"
    code, out, err = run_cli(["dicom", "inventory", str(tmp_path / "dicom"), str(csv_path),
                              "--key-file", str(key)], capsys)
    assert code == 0, err
    assert "skipped 2023/misc/broken.dcm: pixel data shorter" in err
    assert "folder shared holds files of 2 participants" in err
    rows = read_csv(csv_path)
    assert sum(int(r["n_files"]) for r in rows) == n_good  # nothing lost
    keys = {r["patient_id"]: r["participant_label"] for r in read_csv(key)}
    sessions = Counter((r["participant_label"], r["session_label"]) for r in rows)
    assert sessions[(keys["PAT-A"], "01")] == 1 and sessions[(keys["PAT-A"], "02")] == 1
    t1 = {r["session_label"]: r for r in rows if r["participant_label"] == keys["PAT-A"]}
    assert t1["01"]["suffix"] == "T1w" and t1["02"]["suffix"] == "T1w"
    bold = next(r for r in rows if r["participant_label"] == keys["PAT-B"])
    assert (bold["datatype"], bold["suffix"], bold["entities"]) == ("func", "bold", "task-rest")
    assert bold["n_volumes"] == "3" and bold["n_files"] == "6" and bold["tr_s"] == "2.0"
    assert f"{len(keys)} participants, 4 sessions" in out


def test_pseudonyms_are_stable_and_csv_edits_are_protected(tmp_path, capsys):
    root, csv_path, key = tmp_path / "dicom", tmp_path / "inv.csv", tmp_path / "key.csv"
    for visit_date in ("20200101", "20210101"):
        write_series(root / visit_date, patient_id="PAT-Z", study_uid=generate_uid(),
                     description="rest_bold", series_number=3, n_volumes=2, study_date=visit_date)
    argv = ["dicom", "inventory", str(root), str(csv_path), "--key-file", str(key)]
    assert run_cli(argv, capsys)[0] == 0
    first = {r["series_instance_uid"]: r for r in read_csv(csv_path)}
    before = csv_path.read_text()
    code, _, err = run_cli(argv, capsys)
    assert code == 1 and err.startswith("nmflow: error: ") and "--overwrite" in err
    assert csv_path.read_text() == before
    write_series(root / "y", patient_id="PAT-NEW", study_uid=generate_uid(),
                 description="T1w", series_number=1, study_date="19990101")
    assert run_cli(argv + ["--overwrite"], capsys)[0] == 0
    second = {r["series_instance_uid"]: r for r in read_csv(csv_path)}
    # old labels and date shifts are kept although the new patient's study is older
    for uid, row in first.items():
        for column in ("participant_label", "session_label", "date_shift_days"):
            assert second[uid][column] == row[column]
    assert sorted(r["session_label"] for r in first.values()) == ["01", "02"]
    new = [r for uid, r in second.items() if uid not in first]
    assert [r["participant_label"] for r in new] == ["002"]


def test_same_name_series_get_run_numbers(tmp_path, capsys):
    root, study = tmp_path / "dicom", generate_uid()
    for number in (7, 9):
        write_series(root, patient_id="P1", study_uid=study, description="fMRI_rest",
                     series_number=number, n_volumes=2)
    write_series(root, patient_id="P1", study_uid=study, description="localizer",
                 series_number=1)
    assert run_cli(["dicom", "inventory", str(root), str(tmp_path / "i.csv"),
                    "--key-file", str(tmp_path / "k.csv")], capsys)[0] == 0
    rows = sorted(read_csv(tmp_path / "i.csv"), key=lambda r: int(r["series_number"]))
    assert [r["entities"] for r in rows] == ["", "task-rest_run-1", "task-rest_run-2"]
    assert [r["include"] for r in rows] == ["no", "yes", "yes"]


def test_missing_folder_is_one_clear_error(tmp_path, capsys):
    code, out, err = run_cli(["dicom", "inventory", str(tmp_path / "nope"),
                              str(tmp_path / "i.csv"), "--key-file", str(tmp_path / "k")], capsys)
    assert code == 1
    assert err == f"nmflow: error: {tmp_path / 'nope'}: DICOM folder does not exist\n"
    assert not (tmp_path / "i.csv").exists() and not (tmp_path / "k").exists()


@needs_dcm2niix
def test_odd_tree_converts_every_good_file(tmp_path, capsys):
    _odd_tree(tmp_path / "dicom")
    csv_path, bids = tmp_path / "inv.csv", tmp_path / "bids"
    run_cli(["dicom", "inventory", str(tmp_path / "dicom"), str(csv_path),
             "--key-file", str(tmp_path / "key.csv")], capsys)
    code, out, err = run_cli(["dicom", "convert", str(csv_path), str(bids)], capsys)
    assert code == 0, err
    assert "skipped 2023/misc/broken.dcm" in err
    keys = {r["patient_id"]: r["participant_label"] for r in read_csv(tmp_path / "key.csv")}
    a, b = keys["PAT-A"], keys["PAT-B"]
    shapes = {p.relative_to(bids).as_posix(): nib.load(p).shape for p in bids.rglob("*.nii.gz")}
    assert shapes == {
        f"sub-{a}/ses-01/anat/sub-{a}_ses-01_T1w.nii.gz": (64, 64, 3),
        f"sub-{a}/ses-02/anat/sub-{a}_ses-02_T1w.nii.gz": (64, 64, 3),
        f"sub-{b}/ses-01/func/sub-{b}_ses-01_task-rest_bold.nii.gz": (64, 64, 2, 3),
    }
