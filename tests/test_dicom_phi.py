"""No planted identifying value survives inventory + conversion (except in the key file)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from datetime import date, timedelta

import nibabel as nib
import pytest
from helpers.dicom import all_bytes, needs_dcm2niix, read_csv, write_series
from pydicom.uid import generate_uid

from nmflow.dicom.anonymize import find_leaks, scrub_metadata, shift_date

PHI = {
    "PatientName": "Plantedsurname^Plantedgiven",
    "PatientID": "PLANTED-ID-7731",
    "PatientBirthDate": "19230407",
    "InstitutionName": "Planted Institute of Secrets",
    "InstitutionAddress": "12 Plantedstreet, Nowhere",
    "OperatorsName": "Plantedoperator^Tech",
    "ReferringPhysicianName": "Plantedreferrer^Doc",
    "ImageComments": "Plantedcomment about the patient",
}
NEEDLES = [PHI["PatientID"], PHI["PatientBirthDate"], "Plantedsurname", "Plantedgiven",
           "Planted Institute", "Plantedoperator", "Plantedstreet", "Plantedreferrer",
           "Plantedcomment", "1923-04-07"]
STUDY_DATES = ("20230115", "20230620")


@pytest.fixture(scope="module")
def phi_run(tmp_path_factory):
    """Two visits of one planted patient: inventory, then one conversion per date policy."""
    from nmflow.cli.main import main

    tmp = tmp_path_factory.mktemp("phi")
    for visit, study_date in enumerate(STUDY_DATES, start=1):
        study = generate_uid()
        folder = tmp / "dicom" / f"visit{visit}"
        write_series(folder, patient_id=PHI["PatientID"], study_uid=study, phi=PHI,
                     description="t1_mprage", series_number=2, study_date=study_date)
        write_series(folder, patient_id=PHI["PatientID"], study_uid=study, phi=PHI,
                     description="rest_bold", series_number=5, n_volumes=3, study_date=study_date)
        write_series(folder, patient_id=PHI["PatientID"], study_uid=study, phi=PHI,
                     description="gre_field_mapping", series_number=6, study_date=study_date,
                     image_type=("ORIGINAL", "PRIMARY", "P", "ND"))
        write_series(folder, patient_id=PHI["PatientID"], study_uid=study, phi=PHI,  # its magnitude image
                     description="gre_field_mapping", series_number=7, study_date=study_date)
    terminal = io.StringIO()
    commands = [["dicom", "inventory", str(tmp / "dicom"), str(tmp / "inv.csv"),
                 "--key-file", str(tmp / "secret" / "key.csv")]]
    commands += [["dicom", "convert", str(tmp / "inv.csv"), str(tmp / f"bids-{policy}"),
                  "--date-policy", policy] for policy in ("remove", "shift")]
    with redirect_stdout(terminal), redirect_stderr(terminal):
        codes = [main(argv) for argv in commands]
    assert codes == [0, 0, 0], terminal.getvalue()
    return tmp, terminal.getvalue()


@needs_dcm2niix
@pytest.mark.parametrize("policy", ["remove", "shift"])
def test_no_planted_phi_anywhere_but_the_key_file(phi_run, policy):
    tmp, terminal = phi_run
    bids = tmp / f"bids-{policy}"
    dicoms = list((tmp / "dicom").rglob("IM*"))
    assert all(PHI["PatientID"].encode() in p.read_bytes() for p in dicoms)  # planted indeed
    assert PHI["PatientID"] in (tmp / "secret" / "key.csv").read_text()
    checked = [p for p in tmp.rglob("*")
               if p.is_file() and "dicom" not in p.relative_to(tmp).parts and p.name != "key.csv"]
    assert len(list(bids.rglob("*.nii.gz"))) == 8
    hits = [(p.relative_to(tmp), needle) for p in checked for needle in NEEDLES
            if needle.lower().encode() in all_bytes(p).lower()]
    assert hits == []
    assert not [n for n in NEEDLES if n.lower() in terminal.lower()]
    for image in bids.rglob("*.nii.gz"):
        header = nib.load(image).header
        assert header["descrip"].item() == b"" and header["aux_file"].item() == b""
        assert "Time=" not in all_bytes(image)[:352].decode("latin-1")
    sessions = sorted(p.name for p in bids.glob("sub-*/ses-*"))
    assert sessions == ["ses-01", "ses-02"]


@needs_dcm2niix
@pytest.mark.parametrize("policy", ["remove", "shift"])
def test_date_policies(phi_run, policy):
    tmp, _ = phi_run
    shift = int(read_csv(tmp / "inv.csv")[0]["date_shift_days"])
    assert shift > 0
    bids = tmp / f"bids-{policy}"
    (scans,) = bids.glob("sub-*/ses-01/*_scans.tsv")
    lines = scans.read_text().splitlines()
    assert lines[0] == "filename\tacq_time" and len(lines) == 5
    times = [line.split("\t")[1] for line in lines[1:]]
    text = "".join(all_bytes(p).decode("latin-1") for p in bids.rglob("*")
                   if p.is_file() and not p.name.endswith(".nii.gz"))
    assert "2023-01-15" not in text and "20230115" not in text
    if policy == "remove":
        assert times == ["n/a"] * 4
        assert '"AcquisitionTime"' not in text
    else:
        expected = (date(2023, 1, 15) - timedelta(days=shift)).isoformat()
        assert all(t.startswith(expected + "T10:00") for t in times)


def test_scrub_metadata_drops_identifying_keys_and_handles_dates():
    meta = {"PatientName": "X", "PatientPosition": "HFS", "InstitutionName": "Y",
            "StationName": "S", "AcquisitionDateTime": "2020-03-01T10:00:00",
            "AcquisitionTime": "10:00:00", "RepetitionTime": 2.0, "SeriesDescription": "bold"}
    assert scrub_metadata(meta, "remove", None) == {
        "PatientPosition": "HFS", "RepetitionTime": 2.0, "SeriesDescription": "bold"}
    shifted = scrub_metadata(meta, "shift", 30)
    assert shifted["AcquisitionDateTime"] == "2020-01-31T10:00:00"
    assert shifted["AcquisitionTime"] == "10:00:00"
    assert shift_date("20200301", 1) == "20200229"


def test_find_leaks_names_file_and_tag_but_not_value(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"SeriesDescription": "t1 plantedsurname"}))
    (tmp_path / "b.json").write_text(json.dumps({"ImagingFrequency": 123.252622}))
    (tmp_path / "c.json").write_text(json.dumps({"Comment": "born 1923-04-07"}))
    identifiers = [("PatientName", "Plantedsurname^Jo"), ("PatientID", "252622"),
                   ("PatientBirthDate", "19230407")]
    assert find_leaks(tmp_path, identifiers) == ["a.json: PatientName",
                                                 "c.json: PatientBirthDate"]
