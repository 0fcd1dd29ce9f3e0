"""The real ABIDE development subset beside the repository, as a BEP017 time series folder.

``../shared/realdata/abide-dev`` (real ROI time series, Harvard-Oxford 111 regions, 499 subjects over
14 sites) is read from where it lies and never copied into the project.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ABIDE = Path(__file__).resolve().parents[3] / "shared" / "realdata" / "abide-dev"


def abide_participants() -> pd.DataFrame:
    """``participant_id group site age sex mean_fd n_volumes`` (group: control / autism)."""
    return pd.read_csv(ABIDE / "participants.tsv", sep="\t")


def write_abide_timeseries(root: Path, participant_ids) -> None:
    """One ``sub-X/func/sub-X_task-rest_atlas-HO_timeseries.tsv`` per subject (regions R1..R111)."""
    data = np.load(ABIDE / "ho_timeseries_f16.npz")
    columns = [f"R{k + 1}" for k in range(111)]
    for pid in participant_ids:
        folder = Path(root) / pid / "func"
        folder.mkdir(parents=True)
        pd.DataFrame(data[pid].astype(float), columns=columns).to_csv(
            folder / f"{pid}_task-rest_atlas-HO_timeseries.tsv", sep="\t", index=False, float_format="%.5g")


@contextlib.contextmanager
def abide_workspace(prefix: str):
    """A temporary folder holding every ABIDE subject's time series under ``ts/``; yields (root, participants).

    Exits with a message when the data folder is absent (for the benchmarks).
    """
    if not ABIDE.is_dir():
        sys.exit(f"real data not found: {ABIDE} (the ABIDE development subset beside the repository)")
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        table = abide_participants()
        write_abide_timeseries(root / "ts", table.participant_id)
        yield root, table
    finally:
        shutil.rmtree(root, ignore_errors=True)
