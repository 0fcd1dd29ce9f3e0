"""`make demo`: simulate a study, run the participant and group levels, score them against the truth.

Usage: python -m nmflow.demo OUT_DIR

Uses the real Yeo atlases (4 mm grid) from ``NMFLOW_ATLAS_DIR`` when set, and
the simulator's toy atlas otherwise.  The cohort is ``nmflow simulate``'s
default (60 controls over 2 sites, 2 disorders x 20 patients, 8 planted
connections per disorder with median Cohen's d 1); the demo ends by printing
the recall and false-discovery proportion of the group level's flagged
connections against the planted ones.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nmflow.cli.main import main as nmflow  # noqa: E402
from nmflow.group.stats import global_shift_notes  # noqa: E402
from nmflow.simulate import SimulationSettings, truth_dir_for  # noqa: E402


def score_against_truth(group_dir: Path, truth: Path, variant: str) -> pd.DataFrame:
    """Recall and false-discovery proportion per model and group of ``variant``'s flags.

    ``variant`` is a Yeo-17 label (the atlas the simulator planted its effects on).
    """
    stats = pd.read_csv(group_dir / f"{variant}_stats.tsv", sep="\t")
    planted = pd.read_csv(truth / "planted_connections.tsv", sep="\t")
    rows = []
    for (model, group), s in stats.groupby(["model", "group"]):
        true = np.isin(s.connection, planted.connection[planted.group == group])
        flagged = s.flagged.to_numpy()
        rows.append({"model": model, "group": group, "planted": int(true.sum()),
                     "found": int((flagged & true).sum()), "false": int((flagged & ~true).sum()),
                     "recall": (flagged & true).sum() / true.sum(),
                     "fdp": (flagged & ~true).sum() / max(flagged.sum(), 1)})
    return pd.DataFrame(rows)


# What the group level finds in studies of the demo's design (60 controls over 2 sites, 2 x 20 patients,
# 8 planted connections per disorder): `python benchmarks/group.py`, 16 simulated cohorts per median d
# (README, Group level).  model -> median d -> (recall mean, recall min, FDP mean, FDP max)
EXPECTED = {
    "autoencoder": {0.5: (0.16, 0.00, 0.000, 0.000), 0.8: (0.58, 0.13, 0.028, 0.167),
                    1.0: (0.70, 0.50, 0.026, 0.143), 1.2: (0.86, 0.63, 0.031, 0.143)},
    "linear": {0.5: (0.09, 0.00, 0.013, 0.200), 0.8: (0.44, 0.00, 0.010, 0.167),
               1.0: (0.63, 0.50, 0.027, 0.167), 1.2: (0.77, 0.63, 0.017, 0.143)},
}


def expectations(scores: pd.DataFrame, planted: pd.DataFrame) -> list[str]:
    """One line per model and group: the recall and FDP the benchmark found at the median Cohen's d planted
    in this study (``planted``: ``planted_connections.tsv``, column ``d``, the simulator's target as in the
    benchmark's rows), and whether the demo's figures lie within the benchmark's range (``scores``:
    :func:`score_against_truth`)."""
    lines = []
    for row in scores.itertuples():
        d = float(planted.loc[planted.group == row.group, "d"].median())
        nearest = min(EXPECTED[row.model], key=lambda x: abs(x - d))
        recall, lowest, fdp, highest = EXPECTED[row.model][nearest]
        inside = row.recall >= lowest and row.fdp <= highest
        lines.append(f"{row.model} {row.group}: planted median d {d:.2f}; at d = {nearest} the benchmark's recall is "
                     f"{recall:.2f} on average (lowest {lowest:.2f}), its FDP {fdp:.2f} (highest {highest:.2f}): "
                     + ("this run is within that range" if inside else
                        f"this run (recall {row.recall:.2f}, FDP {row.fdp:.2f}) is OUTSIDE that range"))
    return lines


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "demo_output").absolute()
    atlas_dir = os.environ.get("NMFLOW_ATLAS_DIR")
    grid = "4" if atlas_dir else "tiny"
    if not atlas_dir:
        print("NMFLOW_ATLAS_DIR is not set: the demo uses the simulator's toy atlas (set it to the folder of "
              "the real Yeo atlases for the real grid)")
    fmriprep = root / "fmriprep"
    truth = truth_dir_for(fmriprep)
    if not fmriprep.exists():
        settings = SimulationSettings()
        n_patients = sum(n for _, n in settings.patients)
        print(f"simulating {settings.n_controls} controls + {n_patients} patients on the {grid} grid -> {fmriprep}")
        rc = nmflow(["simulate", str(fmriprep), "--grid", grid, "--seed", "0",
                     *(["--atlas-dir", atlas_dir] if atlas_dir else [])])
        if rc != 0:
            return rc
    atlas_args = ["--atlas-dir", atlas_dir or str(truth / "atlases")]
    out = root / "nmflow"
    rc = nmflow([str(fmriprep), str(out), "participant", *atlas_args, "--atlas", "yeo17thick", "yeo7thick",
                 "--denoise", "simple", "gsr", "--metrics", "pearson", "--nprocs", "2", "-w", str(root / "work")])
    if rc != 0:
        return rc
    rc = nmflow([str(fmriprep), str(out), "group", "--covariates", "age", "sex", "--variants", "*17nThick*"])
    if rc != 0:
        return rc
    group_dir = out / "group"
    selection = pd.read_csv(group_dir / "selection.tsv", sep="\t")
    variant = selection.variant.iloc[0]
    print(f"\nplanted truth vs flagged connections of {variant} (q < 0.05, {truth / 'planted_connections.tsv'}):")
    scores = score_against_truth(group_dir, truth, variant)
    print(scores.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\nwhat to expect (python benchmarks/group.py: 16 simulated studies of this design per effect size):")
    for line in expectations(scores, pd.read_csv(truth / "planted_connections.tsv", sep="\t")):
        print(f"  {line}")
    for note in global_shift_notes(pd.read_csv(group_dir / f"{variant}_stats.tsv", sep="\t")):
        print(f"  global shift: {note}")
    reports = sorted(out.glob("sub-*.html"))
    print(f"\nparticipant reports: {len(reports)} in {out} (e.g. {reports[0]})")
    print(f"group report: {group_dir / 'group_report.html'} (patient pages in {group_dir / 'patients'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
