"""Slurm scale-out on a single-node cluster, compared with a local run (issue: scale-out).

Usage: NMFLOW_ATLAS_DIR=<atlas folder> python benchmarks/slurm.py [--keep DIR]

1. starts the cluster (``benchmarks/slurm_cluster.sh start``; needs root and
   the Debian slurmctld/slurmd/slurm-client/munge packages);
2. simulates 16 subjects (12 controls + 4 patients, real Yeo grid at 4 mm).
   8 subjects are too few for the group level: every diagnostic group needs
   >= 3 subjects, and each of its cross-fitting fits >= 5 training controls,
   which with the smallest settings (``--folds 2 --val-split 0.1``) takes
   >= 12 controls over the simulator's 2 sites;
3. ``--slurm-array --slurm-submit``: one array task per subject, then the
   group job (``afterany`` on the array); polls squeue until both are gone;
4. the same participant and group levels locally with ``--plugin MultiProc
   --nprocs 2``;
5. the participant level once more with ``--plugin SLURM`` (Nipype submits
   one job per node);
6. compares the output trees with ``benchmarks/compare_outputs.py`` (same
   file names, TSV and JSON numbers within 1e-12, PNG pixels, other files
   byte for byte).  ``logs/nmflow-<level>-*.yml`` record each call's own
   options (work folder, plugin, participant label) and are left out.

Prints one line per run (wall time, jobs) and per comparison.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from compare_outputs import compare_trees

HERE = Path(__file__).resolve().parent
NMFLOW = [sys.executable, "-m", "nmflow.cli.main"]
OPTIONS = ["--folds", "2", "--val-split", "0.1", "--n-bootstrap", "0", "--epochs", "30"]
# each call's own log, and the participant reports, whose About section holds the call's date and command line
EXPECTED_TO_DIFFER = ("logs/nmflow-*.yml", "sub-*.html")


def nmflow(*argv) -> float:
    """Run ``nmflow ARGV``; its wall time."""
    start = time.perf_counter()
    done = subprocess.run([*NMFLOW, *map(str, argv)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"nmflow {' '.join(map(str, argv))} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - start


def wait_for(job_ids: list[str], timeout: float = 3600) -> None:
    """Poll squeue until none of ``job_ids`` (array tasks included) is queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True, check=True).stdout
        if not set(queued.split()) & set(job_ids):
            return
        time.sleep(2)
    raise SystemExit(f"jobs {job_ids} still queued after {timeout:.0f} s")


def compare(a: Path, b: Path, ignore: tuple[str, ...] = ()) -> str:
    """One line on trees ``a`` and ``b`` (:func:`compare_outputs.compare_trees`, numbers within 1e-12)."""
    problems, notes, identical = compare_trees(a, b, 1e-12, (*EXPECTED_TO_DIFFER, *ignore))
    verdict = "same" if not problems else f"DIFFERENT ({'; '.join(problems[:3])})"
    return f"{verdict}: {identical} files byte-identical, {len(notes)} equal within 1e-12, {len(problems)} differing"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="keep the simulated data, outputs and logs here")
    args = parser.parse_args()
    if not os.environ.get("NMFLOW_ATLAS_DIR"):
        raise SystemExit("set NMFLOW_ATLAS_DIR to the folder of the real Yeo atlases")
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    os.environ.setdefault("LOGNAME", getpass.getuser())  # Nipype's SLURM plugin names jobs after it
    print(subprocess.run(["bash", str(HERE / "slurm_cluster.sh"), "start"], capture_output=True, text=True,
                         check=True).stdout)
    root = (args.keep or Path(tempfile.mkdtemp(prefix="nmflow_slurm_"))).absolute()
    data = root / "fmriprep"
    if not data.exists():
        nmflow("simulate", data, "--n-controls", 12, "--patients", "disorderA=4", "--grid", "4", "--seed", 1)
    for sub in ("out_array", "work_array", "out_local", "work_local", "out_nipype", "work_nipype"):
        shutil.rmtree(root / sub, ignore_errors=True)

    start = time.perf_counter()
    submit = subprocess.run([*NMFLOW, data, root / "out_array", "participant", "-w", root / "work_array",
                             "--slurm-array", "--slurm-submit", *OPTIONS], capture_output=True, text=True, check=True)
    line = next(ln for ln in submit.stdout.splitlines() if ln.startswith("submitted:"))
    ids = [w.rstrip(",") for w in line.split() if w.rstrip(",").isdigit()]
    wait_for(ids)
    t_array = time.perf_counter() - start
    status = pd.read_csv(root / "work_array" / "slurm" / "participant_status.tsv", sep="\t")
    t_local = nmflow(data, root / "out_local", "participant", "-w", root / "work_local", "--plugin", "MultiProc",
                     "--nprocs", 2, *OPTIONS)
    t_local += nmflow(data, root / "out_local", "group", "-w", root / "work_local" / "group", "--nprocs", 2,
                      *OPTIONS)
    t_nipype = nmflow(data, root / "out_nipype", "participant", "-w", root / "work_nipype", "--plugin", "SLURM",
                      *OPTIONS)
    n_nodes = len(list((root / "work_nipype").glob("nmflow_participant_wf/*/*/result_*.pklz")))

    print(f"16 subjects, options {' '.join(OPTIONS)}")
    print(f"{'run':58}{'wall s':>8}")
    print(f"{'Slurm array (16 tasks, exit codes ' + str(sorted(set(status.exit_code))) + ') + group job':58}"
          f"{t_array:8.1f}")
    print(f"{'local: participant --plugin MultiProc --nprocs 2 + group':58}{t_local:8.1f}")
    print(f"{f'participant --plugin SLURM (Nipype, {n_nodes} node jobs)':58}{t_nipype:8.1f}")
    print(f"array + group vs local       : {compare(root / 'out_array', root / 'out_local')}")
    print(f"Nipype SLURM vs local (participant): "
          f"{compare(root / 'out_nipype', root / 'out_local', ignore=('group/*',))}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
