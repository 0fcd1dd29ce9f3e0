"""Bad inputs from the scanner to fMRIPrep: ``nmflow dicom inventory|convert`` and ``nmflow fmriprep``.

Inventory rows: one DICOM tree holds a good visit and, each in its own visit, a series that would convert to
invalid or useless BIDS; one inventory warns once about each (naming it), proposes it ``include=no`` and
keeps proposing the good visit.  Convert rows break a copy of the good visit's CSV: one error line naming the
CSV (and line), nothing written, nothing converted.  fMRIPrep rows: a dry run over three participants, each
row breaking one participant (it is skipped with a line, the others planned) or the whole call.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.badinput import Row, message_line
from helpers.dicom import read_csv, run_cli, write_csv, write_series
from helpers.participant import tree
from pydicom.uid import generate_uid

VISITS = {  # patient: series of its one visit (description, image type, volumes, PatientAge)
    "GOOD": [("t1_mprage", ("ORIGINAL", "PRIMARY", "M"), 1, "034Y"), ("rest_bold", ("ORIGINAL", "PRIMARY", "M"), 3,
                                                                     "034Y")],
    "ONEVOL": [("rest_bold", ("ORIGINAL", "PRIMARY", "M"), 1, "041Y")],
    "FMAP": [("gre_field_mapping", ("ORIGINAL", "PRIMARY", "P", "ND"), 1, "029Y")],
    "OLD": [("t1_mprage", ("ORIGINAL", "PRIMARY", "M"), 1, "122Y")],
    "NEWBORN": [("t1_mprage", ("ORIGINAL", "PRIMARY", "M"), 1, "000Y")],
}


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    """The DICOM tree, a truncated copy of one file in it, and the inventory's CSV and terminal output."""
    from helpers.participant import run_cli as run

    tmp = tmp_path_factory.mktemp("dicom_rows")
    dicom = tmp / "dicom"
    for patient, series in VISITS.items():
        study = generate_uid()
        for number, (description, image_type, volumes, age) in enumerate(series, start=2):
            write_series(dicom / patient, patient_id=patient, study_uid=study, description=description,
                         series_number=number, n_volumes=volumes, image_type=image_type, phi={"PatientAge": age})
    data = sorted((dicom / "NEWBORN").iterdir())[0].read_bytes()
    (dicom / "NEWBORN" / "broken.dcm").write_bytes(data[: len(data) // 2])  # a bad copy
    csv_path = tmp / "inventory.csv"
    rc, out, err = run(["dicom", "inventory", dicom, csv_path, "--key-file", tmp / "key.csv"])
    assert rc == 0, err
    return {"tmp": tmp, "dicom": dicom, "csv": csv_path, "rows": read_csv(csv_path), "stdout": out, "stderr": err}


INVENTORY_ROWS = {  # patient, the reason in the CSV (and in the warning, with the series)
    "functional series of 1 volume": ("ONEVOL", "functional series of 1 volume (not a usable run)"),
    "phasediff without its magnitude": ("FMAP", "phasediff fieldmap without its magnitude image (incomplete "
                                                "fieldmap, invalid BIDS)"),
    "age 122": ("OLD", "implausible age 122 (a phantom, or a wrong birth date?)"),
    "age 0": ("NEWBORN", "implausible age 0 (a phantom, or a wrong birth date?)"),
}


def _label_of(inventory, patient):
    key = read_csv(inventory["tmp"] / "key.csv")
    return next(r["participant_label"] for r in key if r["patient_id"] == patient)


@pytest.mark.parametrize("name", list(INVENTORY_ROWS))
def test_inventory_flags_unusable_series(name, inventory):
    patient, reason = INVENTORY_ROWS[name]
    label = _label_of(inventory, patient)
    description = VISITS[patient][0][0]
    message_line(inventory["stderr"], f"sub-{label}/", (f"({description}): {reason}; proposed include=no",),
                 kind="warning")
    flagged = [r for r in inventory["rows"] if r["participant_label"] == label]
    assert flagged and all(r["include"] == "no" and r["reason"] == reason for r in flagged)
    good = [r for r in inventory["rows"] if r["participant_label"] == _label_of(inventory, "GOOD")]
    assert [r["include"] for r in good] == ["yes", "yes"]  # the good visit is still proposed


def test_inventory_skips_a_truncated_file_and_lists_the_others(inventory):
    message_line(inventory["stderr"], "broken.dcm", ("skipped", "pixel data shorter than the header declares"),
                 kind="warning")
    assert f"{sum(len(s) for s in VISITS.values())} series" in inventory["stdout"]


# -- convert: a broken CSV, a missing tool, a BIDS folder inside the DICOMs -------------------------------------

def _edit(change):
    """Change the rows of the good visit (``change(rows)``); the other visits' rows are dropped."""
    def breaks(ctx):
        good = _label_of(ctx["inventory"], "GOOD")
        rows = [r for r in read_csv(ctx["csv"]) if r["participant_label"] == good]
        write_csv(ctx["csv"], change(rows) or rows)
    return breaks


def _text(change):
    def breaks(ctx):
        _edit(lambda rows: None)(ctx)
        ctx["csv"].write_bytes(change(ctx["csv"].read_bytes()))
    return breaks


def _set(**values):
    return _edit(lambda rows: [dict(r, **values) if r["suffix"] == "bold" else r for r in rows])


def _no_dcm2niix(ctx):
    _edit(lambda rows: None)(ctx)
    ctx["monkeypatch"].setattr("nmflow.dicom.convert._tool_env", lambda: {"PATH": str(ctx["tmp"])})


def _bids_inside_dicom(ctx):
    _edit(lambda rows: None)(ctx)
    ctx["bids"] = ctx["inventory"]["dicom"] / "bids"


CONVERT_ROWS = {
    "include neither yes nor no": Row(_set(include="maybe"), "csv", ("line 3", "include must be yes or no")),
    "func series without a task": Row(_set(entities=""), "csv", ("func series need a task-<label> entity",)),
    "unknown datatype": Row(_set(datatype="brain"), "csv", ("datatype must be one of",)),
    "two series, one BIDS name": Row(_edit(lambda rows: [dict(r, suffix="T1w", datatype="anat", entities="")
                                                         for r in rows]), "csv", ("same BIDS name as line 2",)),
    "column missing": Row(_edit(lambda rows: [{k: v for k, v in r.items() if k != "dicom_root"} for r in rows]),
                          "csv", ("missing column(s) dicom_root",)),
    "age not a number": Row(_set(age="old"), "csv", ("age 'old' is not a number",)),
    "CSV with NUL bytes": Row(_text(lambda b: b.replace(b"rest", b"re\x00st")), "csv",
                              ("line 3: entity 'task-re\\x00st' is not one of",)),
    "CSV not text": Row(_text(lambda b: b"\xff\xfe\x00\x81" * 40), "csv", ("cannot read the inventory CSV",)),
    "series not found": Row(_set(series_instance_uid="1.2.3.4"), "csv", ("series 1.2.3.4 not found under",)),
    "date shift missing for --date-policy shift": Row(_set(date_shift_days=""), "csv",
                                                      ("date_shift_days is empty",), args=("--date-policy", "shift")),
    "dcm2niix missing": Row(_no_dcm2niix, "", ("dcm2niix not found on PATH",)),
    "BIDS_DIR inside the DICOM folder": Row(_bids_inside_dicom, "bids", ("BIDS_DIR is inside the input dataset",)),
}


@pytest.mark.parametrize("name", list(CONVERT_ROWS))
def test_broken_convert(name, inventory, tmp_path, capsys, monkeypatch):
    row = CONVERT_ROWS[name]
    ctx = {"inventory": inventory, "csv": tmp_path / "inventory.csv", "bids": tmp_path / "bids", "tmp": tmp_path,
           "monkeypatch": monkeypatch}
    shutil.copy(inventory["csv"], ctx["csv"])
    row.breaks(ctx)
    dicom_files = tree(inventory["dicom"])
    rc, out, err = run_cli(["dicom", "convert", str(ctx["csv"]), str(ctx["bids"]), *row.args], capsys)
    assert rc == 1 and out == ""
    message_line(err, str(ctx[row.names]) if row.names else "", row.says)
    assert not tree(ctx["bids"]) and tree(inventory["dicom"]) == dicom_files


# -- nmflow fmriprep --------------------------------------------------------------------------------------------

@pytest.fixture()
def study(tmp_path) -> dict[str, Path]:
    """A BIDS folder of three participants with a T1w image and a BOLD run each, and a license."""
    bids = tmp_path / "bids"
    for label in ("01", "02", "03"):
        for datatype, name in (("anat", "T1w"), ("func", "task-rest_bold")):
            (bids / f"sub-{label}" / datatype).mkdir(parents=True)
            (bids / f"sub-{label}" / datatype / f"sub-{label}_{name}.nii.gz").write_bytes(b"")
    (tmp_path / "license.txt").write_text("license\n")
    return {"bids": bids, "deriv": tmp_path / "deriv", "work": tmp_path / "work", "license": tmp_path / "license.txt",
            "tmp": tmp_path}


def _drop(path):
    def breaks(ctx):
        (ctx["bids"] / path).unlink()
        ctx["subject"] = "sub-02"
    return breaks


FMRIPREP_ROWS = {
    "participant without a T1w image": Row(_drop("sub-02/anat/sub-02_T1w.nii.gz"), "subject",
                                           ("skipped sub-02: no T1w image",),
                                           finishes="the other participants (planned, then run)"),
    "participant without a BOLD run": Row(_drop("sub-02/func/sub-02_task-rest_bold.nii.gz"), "subject",
                                          ("skipped sub-02: no BOLD run",),
                                          finishes="the other participants (planned, then run)"),
    "license missing": Row(lambda ctx: ctx.update(license=ctx["tmp"] / "nope.txt"), "license",
                           ("FreeSurfer license file not found",)),
    "apptainer without an image": Row(lambda ctx: ctx.update(args=["--engine", "apptainer"]), "",
                                      ("--image must name the fMRIPrep .sif file",)),
    "participant not in the dataset": Row(lambda ctx: ctx.update(args=["--participant-label", "07"]), "bids",
                                          ("no folder for participant(s) sub-07",)),
    "BIDS folder missing": Row(lambda ctx: ctx.update(bids=ctx["tmp"] / "nothing"), "bids",
                               ("BIDS folder does not exist",)),
    "DERIV_DIR is the BIDS folder": Row(lambda ctx: ctx.update(deriv=ctx["bids"]), "deriv",
                                        ("DERIV_DIR is the input dataset",)),
    "work folder inside the BIDS folder": Row(lambda ctx: ctx.update(work=ctx["bids"] / "work"), "work",
                                              ("--work-dir is inside the input dataset",)),
    "Docker missing": Row(lambda ctx: ctx.update(dry_run=False, path=str(ctx["tmp"])), "",
                          ("docker not found on PATH", "--engine docker")),
}


@pytest.mark.parametrize("name", list(FMRIPREP_ROWS))
def test_broken_fmriprep(name, study, capsys, monkeypatch):
    row = FMRIPREP_ROWS[name]
    ctx = dict(study, args=[], dry_run=True)
    row.breaks(ctx)
    if "path" in ctx:
        monkeypatch.setenv("PATH", ctx["path"])
    argv = ["fmriprep", str(ctx["bids"]), str(ctx["deriv"]), "--fs-license-file", str(ctx["license"]),
            "--work-dir", str(ctx["work"]), *ctx["args"]] + (["--dry-run"] if ctx["dry_run"] else [])
    bids_before = tree(study["bids"])
    rc, out, err = run_cli(argv, capsys)
    assert rc == 1
    skipped = "subject" in ctx
    message_line(err, str(ctx[row.names]) if row.names else "", row.says, kind="warning" if skipped else "error")
    if skipped:  # the others are planned, and the summary says who was skipped and why
        assert [ln.split()[:2] for ln in out.splitlines() if ln.startswith("sub-")] == [
            ["sub-01", "planned"], ["sub-02", "skipped"], ["sub-03", "planned"]]
        assert out.rstrip().endswith(f"planned: sub-01, sub-03 (dry run: nothing was run); skipped: sub-02 "
                                     f"({row.says[0].split(': ', 1)[1]})")
    else:
        assert out == ""
    assert tree(study["bids"]) == bids_before and not study["deriv"].exists() and not study["work"].exists()
