"""Helpers for the participant-level CLI tests (test_cli_participant, test_bad_input, test_e2e_real_atlas).

Everything here is independent of the package's own naming code: expected
output names are spelled out, region names are read straight from the atlas
CSV, so a regression in the package cannot hide behind a shared helper.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.cli.main import main

DATA = Path(__file__).parents[1] / "data"
SPACE_RES = "space-MNI152NLin6Asym_res-8"
# an output of the toy 8 mm atlas: entities in the BIDS schema order (space, atlas, seg, res, desc, ...)
YEO7_8MM = "space-MNI152NLin6Asym_atlas-Yeo2011_seg-7nThin_res-8"
BOLD_SUFFIX = f"{SPACE_RES}_desc-preproc_bold.nii.gz"
MASK_SUFFIX = f"{SPACE_RES}_desc-brain_mask.nii.gz"
CONFOUNDS_SUFFIX = "desc-confounds_timeseries.tsv"


# -- running the CLI -------------------------------------------------------------------------------

def run_cli(argv: list, capsys=None) -> tuple[int, str, str]:
    """``nmflow ARGV`` in-process: (exit code, stdout, stderr).

    With ``capsys`` the output is read from pytest's capture; without it (module-scoped
    fixtures) stdout/stderr are redirected here.
    """
    argv = [str(a) for a in argv]
    if capsys is not None:
        capsys.readouterr()
        rc = main(argv)
        captured = capsys.readouterr()
        return rc, captured.out, captured.err
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def participant_argv(fmriprep: Path, out: Path, work: Path, atlas_dir: Path | None, *extra) -> list[str]:
    """``FMRIPREP OUT participant -w WORK [--atlas-dir D] EXTRA...``."""
    argv = [str(fmriprep), str(out), "participant", "-w", str(work)]
    if atlas_dir is not None:
        argv += ["--atlas-dir", str(atlas_dir)]
    return argv + [str(e) for e in extra]


MINIMAL = ["--atlas", "yeo7thin", "--denoise", "simple", "--metrics", "pearson"]


def error_lines(stderr: str) -> list[str]:
    """The ``nmflow: error:`` lines of stderr."""
    return [line for line in stderr.splitlines() if line.startswith("nmflow: error:")]


# -- output trees ----------------------------------------------------------------------------------

CALL_LOG = re.compile(r"^logs/nmflow-(participant|group)-\d{8}T\d{6}-[0-9a-f]{6}\.(yml|log)$")


def tree(root: Path) -> set[str]:
    """Every file under ``root`` (hidden ones included), as POSIX paths relative to it; the per-call
    configuration and log files ``logs/nmflow-<level>-<time>-<id>.{yml,log}`` as
    ``logs/nmflow-<level>-<call>.{yml,log}``."""
    root = Path(root)
    if not root.exists():
        return set()
    names = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return {CALL_LOG.sub(r"logs/nmflow-\1-<call>.\2", n) for n in names}


def saved_config(out: Path, level: str = "participant") -> Path:
    """The configuration file of the latest ``level`` call into ``out``."""
    return max((Path(out) / "logs").glob(f"nmflow-{level}-*.yml"))


def expected_outputs(listing: Path, subjects: list[str]) -> set[str]:
    """Paths of an expected-outputs file; a line with ``{sub}`` stands for every subject (``01``...)."""
    out = set()
    for line in Path(listing).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out |= {line.format(sub=s) for s in subjects} if "{sub}" in line else {line}
    return out


def assert_exactly_expected(out: Path, listing: Path, subjects: list[str], n_expected: int) -> None:
    """The files under ``out`` are exactly those of ``listing`` (which has ``n_expected`` entries)."""
    expected = expected_outputs(listing, subjects)
    assert len(expected) == n_expected
    written = tree(out)
    missing, unexpected = sorted(expected - written), sorted(written - expected)
    assert not missing and not unexpected, f"missing: {missing}\nunexpected: {unexpected}"


def minimal_run_outputs(sub: str, desc: str = "simple") -> set[str]:
    """The 14 files of one run of ``sub-<sub>`` made with ``--atlas yeo7thin --denoise <desc> --metrics pearson``
    (the design figure only for a strategy that regresses confounds)."""
    s = f"sub-{sub}"
    pre = f"{s}/func/{s}_task-rest"
    atl = f"{pre}_{YEO7_8MM}_desc-{desc}"
    return {
        f"{s}/figures/{s}_task-rest_atlas-Yeo2011_seg-7nThin_desc-{desc}_connectome.png",
        f"{s}/figures/{s}_task-rest_desc-{desc}_bold.png",
        *([f"{s}/figures/{s}_task-rest_desc-{desc}_design.png"] if desc != "none" else []),
        f"{pre}_desc-{desc}_design.json", f"{pre}_desc-{desc}_design.tsv",
        f"{pre}_desc-{desc}_outliers.json", f"{pre}_desc-{desc}_outliers.tsv",
        f"{atl}_meas-pearson_relmat.json", f"{atl}_meas-pearson_relmat.tsv",
        f"{atl}_timeseries.json", f"{atl}_timeseries.tsv",
        f"{pre}_strategies.json", f"{pre}_strategies.tsv",
        f"{s}_task-rest.html",
    }


TOP_LEVEL = {"dataset_description.json", ".bidsignore", "logs/nmflow-participant-<call>.yml",
             "logs/nmflow-participant-<call>.log", "logs/CITATION.md"}


def hashes(root: Path, pattern: str = "*.tsv") -> dict[str, str]:
    """``{relative path: sha256}`` of the files matching ``pattern`` under ``root`` (not the per-call
    configuration and log files: they hold the call's time and command line)."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob(pattern))
            if p.is_file() and not CALL_LOG.match(p.relative_to(root).as_posix())}


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_relmat(path: Path) -> tuple[list[str], np.ndarray]:
    """(node names of the ``node`` column, matrix); checks the column names repeat the nodes."""
    table = read_tsv(path)
    assert table.columns[0] == "node", f"{path.name}: first column is {table.columns[0]!r}"
    nodes = [str(n) for n in table["node"]]
    assert list(table.columns[1:]) == nodes, f"{path.name}: column names differ from the node column"
    return nodes, table.iloc[:, 1:].to_numpy(float)


def atlas_region_names(csv_path: Path) -> list[str]:
    """Region names of a Yeo label CSV (``index,name`` rows, with or without a header; 0 skipped)."""
    names = []
    for line in Path(csv_path).read_text().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 2 and fields[0].isdigit() and int(fields[0]) > 0:
            names.append(fields[1])
    return names


def report_figures(html_path: Path) -> list[str]:
    """The ``src`` of every ``<img>`` of an HTML report."""
    import re

    return re.findall(r'<img[^>]*\bsrc="([^"]+)"', Path(html_path).read_text())


# -- building datasets -----------------------------------------------------------------------------

def copy_subjects(src: Path, dst: Path, subjects: list[str]) -> Path:
    """A dataset at ``dst`` holding only ``subjects`` (``01``...) of ``src``."""
    dst.mkdir(parents=True)
    for sub in subjects:
        shutil.copytree(src / f"sub-{sub}", dst / f"sub-{sub}")
    shutil.copy(src / "dataset_description.json", dst / "dataset_description.json")
    table = pd.read_csv(src / "participants.tsv", sep="\t", dtype=str)
    table[table.participant_id.isin([f"sub-{s}" for s in subjects])].to_csv(
        dst / "participants.tsv", sep="\t", index=False)
    return dst


def run_files(root: Path, sub: str) -> dict[str, Path]:
    """BOLD, mask and confounds of the single-session, single-run ``sub-<sub>`` of a simulated dataset."""
    func = Path(root) / f"sub-{sub}" / "func"
    stem = f"sub-{sub}_task-rest"
    return {"bold": func / f"{stem}_{BOLD_SUFFIX}", "mask": func / f"{stem}_{MASK_SUFFIX}",
            "confounds": func / f"{stem}_{CONFOUNDS_SUFFIX}"}


def read_confounds(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values=["n/a"])


def write_confounds(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")


def clone_subject(src_root: Path, sub: str, dst_root: Path, new: str) -> dict[str, Path]:
    """Copy ``sub-<sub>`` of ``src_root`` into ``dst_root`` as ``sub-<new>`` (file names too); its run's files."""
    src = Path(src_root) / f"sub-{sub}"
    for path in sorted(src.rglob("*")):
        if path.is_file():
            target = Path(dst_root) / path.relative_to(src_root).as_posix().replace(f"sub-{sub}", f"sub-{new}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return run_files(dst_root, new)


def rewrite_image(path: Path, change) -> None:
    """Replace the data of the image at ``path`` by ``change(data)`` (float32 array), header kept."""
    import nibabel as nib

    img = nib.load(path)
    data = change(img.get_fdata(dtype=np.float32))
    nib.Nifti1Image(data.astype(np.float32), img.affine, img.header).to_filename(path)
