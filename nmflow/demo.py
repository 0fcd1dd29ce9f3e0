"""`make demo`: simulate a small study, run the participant and group levels, print the reports.

Usage: python -m nmflow.demo OUT_DIR

Uses the real Yeo atlases (4 mm grid) from ``NMFLOW_ATLAS_DIR`` when set, and
the simulator's toy atlas otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")

from nmflow.cli.main import main as nmflow  # noqa: E402
from nmflow.simulate import SimulationSettings, simulate_dataset  # noqa: E402


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "demo_output").absolute()
    atlas_dir = os.environ.get("NMFLOW_ATLAS_DIR")
    grid = "4" if atlas_dir else "tiny"
    if not atlas_dir:
        print("NMFLOW_ATLAS_DIR is not set: the demo uses the simulator's toy atlas (set it to the folder of "
              "the real Yeo atlases for the real grid)")
    fmriprep = root / "fmriprep"
    if not fmriprep.exists():
        print(f"simulating 16 controls + 2 x 5 patients on the {grid} grid -> {fmriprep}")
        truth = simulate_dataset(fmriprep, SimulationSettings(
            n_controls=16, patients=(("disorderA", 5), ("disorderB", 5)), n_volumes=100, grid=grid,
            atlas_dir=atlas_dir, seed=0))
    else:
        truth = fmriprep.parent / f"{fmriprep.name}_truth"
    atlas_args = ["--atlas-dir", atlas_dir or str(truth / "atlases")]
    out = root / "nmflow"
    rc = nmflow([str(fmriprep), str(out), "participant", *atlas_args, "--atlas", "yeo17thick", "yeo7thick",
                 "--denoise", "simple", "gsr", "--metrics", "pearson", "--nprocs", "2", "-w", str(root / "work")])
    if rc != 0:
        return rc
    rc = nmflow([str(fmriprep), str(out), "group", *atlas_args, "--covariates", "age", "sex",
                 "--n-bootstrap", "5", "--seed", "0"])
    if rc != 0:
        return rc
    reports = sorted(out.glob("sub-*.html"))
    group_reports = sorted((out / "group").glob("*.html"))
    print(f"\nparticipant reports: {len(reports)} in {out} (e.g. {reports[0]})")
    for page in group_reports:
        print(f"group report: {page}")
    print(f"planted truth: {truth / 'planted_connections.tsv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
