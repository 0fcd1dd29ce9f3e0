"""A 100-subject study in which two high-motion subjects lose one strategy: does the group level go on?

Simulates the demo's study (60 controls + 2 x 20 patients, 4 mm grid), makes sub-031 and sub-080 move so
much that scrubbing leaves them fewer than ``--min-volumes`` volumes, runs the participant level with
``--denoise simple gsr`` (gsr scrubs, simple does not) and the group level, and prints what each level
says of the two subjects and how many subjects every variant was analysed on.

    python benchmarks/incomplete_variants.py [WORK_FOLDER]

Needs NMFLOW_ATLAS_DIR (the real Yeo atlases) for the 4 mm grid; uses the toy atlas without it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")

import pandas as pd  # noqa: E402

from nmflow.cli.main import main as nmflow  # noqa: E402

MOVERS = ("031", "080")


def move(fmriprep: Path, subject: str) -> None:
    """Framewise displacement of 1 mm on all but 40 volumes of the subject's run (gsr censors the rest)."""
    (confounds,) = (fmriprep / f"sub-{subject}" / "func").glob("*_desc-confounds_timeseries.tsv")
    table = pd.read_csv(confounds, sep="\t", na_values="n/a")
    table.loc[40:, "framewise_displacement"] = 1.0
    table.to_csv(confounds, sep="\t", index=False, na_rep="n/a")


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="nmflow-incomplete-"))
    atlas_dir = os.environ.get("NMFLOW_ATLAS_DIR")
    fmriprep, out = root / "fmriprep", root / "out"
    if not fmriprep.exists():
        assert nmflow(["simulate", str(fmriprep), "--grid", "4" if atlas_dir else "tiny", "--seed", "0",
                       *(["--atlas-dir", atlas_dir] if atlas_dir else [])]) == 0
        for subject in MOVERS:
            move(fmriprep, subject)
    atlas = ["--atlas", "yeo17thick"] if atlas_dir else ["--atlas-dir", str(fmriprep.parent / "fmriprep_truth"
                                                                             / "atlases")]
    start = time.perf_counter()
    rc = nmflow([str(fmriprep), str(out), "participant", *atlas, "--denoise", "simple", "gsr", "--nprocs", "2",
                 "-w", str(root / "work")])
    print(f"participant level: exit {rc} (1 = a strategy was skipped somewhere), "
          f"{time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    rc = nmflow([str(fmriprep), str(out), "group", "-w", str(root / "work")])
    print(f"group level: exit {rc}, {time.perf_counter() - start:.0f} s")
    subjects = pd.read_csv(out / "group" / "subjects.tsv", sep="\t", keep_default_na=False)
    print(subjects[subjects.missing_variants != "n/a"].to_string(index=False))
    for path in sorted((out / "group").glob("*_deviations.tsv")):
        table = pd.read_csv(path, sep="\t")
        print(f"{path.name}: {table.participant_id.nunique()} subjects, movers present: "
              f"{[m for m in MOVERS if f'sub-{m}' in set(table.participant_id)]}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
