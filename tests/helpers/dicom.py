"""Helpers for the DICOM tests: real test DICOMs from installed packages,
synthetic series written with pydicom, and direct dcm2niix conversions."""

from __future__ import annotations

import copy
import csv
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.uid import generate_uid

os.environ.setdefault("NIPYPE_NO_ET", "1")


def _dcm2niix() -> str | None:
    beside_python = str(Path(sys.executable).parent)
    return shutil.which("dcm2niix") or shutil.which("dcm2niix", path=beside_python)


needs_dcm2niix = pytest.mark.skipif(_dcm2niix() is None, reason="dcm2niix is not installed")


def heudiconv_data() -> Path:
    """heudiconv's own test DICOMs, inside the installed package."""
    import heudiconv

    return Path(heudiconv.__file__).parent / "tests" / "data"


def pydicom_file(name: str) -> Path:
    """A test file shipped inside the installed pydicom package."""
    return Path(pydicom.data.get_testdata_file(name))


def link(target: Path, link_path: Path) -> Path:
    """Symlink ``link_path`` -> ``target`` (test data are never copied)."""
    link_path.parent.mkdir(parents=True, exist_ok=True)
    link_path.symlink_to(target)
    return link_path


def write_series(folder: Path, *, patient_id: str, study_uid: str, description: str,
                 series_number: int, n_slices: int = 3, n_volumes: int = 1,
                 study_date: str = "20230115", tr_ms: float = 2000.0, phi: dict | None = None,
                 image_type=("ORIGINAL", "PRIMARY", "M")) -> list[Path]:
    """Write a small MR series derived from pydicom's MR_small.dcm.

    Each slice of each volume is one file; the pixel values differ per
    slice/volume so that stacking errors would show.
    """
    template = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    base = template.pixel_array.astype(np.int16)
    series_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for volume in range(n_volumes):
        for slice_ in range(n_slices):
            ds = copy.deepcopy(template)
            ds.PatientID, ds.StudyInstanceUID = patient_id, study_uid
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
            ds.AcquisitionTime = f"1000{2 * volume:02d}"
            ds.SeriesDescription = ds.ProtocolName = description
            ds.SeriesNumber, ds.AcquisitionNumber = series_number, volume + 1
            ds.InstanceNumber = volume * n_slices + slice_ + 1
            ds.ImagePositionPatient = [-100.0, -100.0, 4.0 * slice_]
            ds.SliceLocation = 4.0 * slice_
            ds.ImageType = list(image_type)
            ds.RepetitionTime = tr_ms
            for keyword, value in (phi or {}).items():
                setattr(ds, keyword, value)
            ds.PixelData = (base + 7 * volume + slice_).astype(np.int16).tobytes()
            path = folder / f"IM{series_number:02d}{len(paths):04d}"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def dcm2niix_direct(files: list[Path], work: Path) -> np.ndarray:
    """Convert ``files`` with dcm2niix alone and return the image array."""
    inputs, out = work / "in", work / "out"
    out.mkdir(parents=True)
    for index, path in enumerate(files):
        link(Path(path).resolve(), inputs / f"{index:05d}.dcm")
    subprocess.run([_dcm2niix(), "-z", "y", "-b", "n", "-f", "direct", "-o", str(out),
                    str(inputs)], check=True, capture_output=True)
    (image,) = out.glob("direct*.nii.gz")
    return np.asanyarray(nib.load(image).dataobj)


def all_bytes(path: Path) -> bytes:
    """File content, decompressed for ``.gz`` files."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run ``nmflow`` in-process; return (exit code, stdout, stderr)."""
    from nmflow.cli.main import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
