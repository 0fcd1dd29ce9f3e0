"""Group level at scale: wall time per step and peak memory (python benchmarks/scale.py).

For each cell of subjects (100, 300, 1,000) x regions (17, 100, 200, 400) it writes synthetic time
series with network structure as a BEP017 ``--timeseries-dir`` folder (each region is the factor of
its network + a global signal + noise, with per-subject loadings and a per-site noise level, so FC
has the block structure of real data), runs ``nmflow BIDS_DIR OUT_DIR group --timeseries-dir ...``
with the default options (5 folds, ComBat, age + sex, 10 bootstrap models) as a subprocess, and
prints one row per cell: each group step's wall time read from the progress lines
(``[k/N stages, ...] <step> done (t s)``), the total, and the peak resident memory of the run (measured by a
small parent process of the call with ``resource.getrusage(RUSAGE_CHILDREN)``: the largest of its
descendants, the nmflow process, in which the steps run with the default plugin).

  python benchmarks/scale.py --subjects 300 --regions 400 [--keep DIR] [--time-limit S] [-- extra flags]

Time series are cached in ``--keep DIR`` (one folder per cell) when given, else written to a
temporary folder and removed.  Extra flags after ``--`` go to the group call.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SUBJECTS = (100, 300, 1000)
REGIONS = (17, 100, 200, 400)
N_NETWORKS = 7
N_VOLUMES = 200
N_SITES = 3
CONTROL_SHARE = 0.8
STEPS = {  # progress words -> column
    "features and phenotypes": "collect", "cross-fitting split": "split", "site harmonisation": "harmonize",
    "models batched": "batch", "autoencoder training": "train", "deviation scores": "score",
    "group statistics": "group_tests", "single-case statistics": "single_case", "variant ranking": "select",
    "group report": "report",
}
PROGRESS = re.compile(r"^\[\d+/\d+ stages, [^\]]*\] (.*) done \(([\d.]+) s\)$")


def write_cohort(root: Path, n_subjects: int, n_regions: int, seed: int = 0) -> tuple[Path, Path]:
    """Time series folder ``root/ts`` and ``root/participants.tsv`` of a synthetic cohort.

    Region ``r`` of network ``k(r)``: ``a_s,r * f_k(t) + 0.5 * g(t) + sigma_site * e_r(t)``, ``f``,
    ``g`` and ``e`` standard normal, ``a`` uniform in [0.6, 1.2] per subject and region; sites differ
    in noise level (sigma 1.0, 1.15, 1.3).
    """
    rng = np.random.default_rng(seed)
    ts = root / "ts"
    network = np.arange(n_regions) % N_NETWORKS
    sites = np.arange(n_subjects) % N_SITES
    columns = [f"R{r + 1}" for r in range(n_regions)]
    header = "\t".join(columns)
    for s in range(n_subjects):
        pid = f"sub-{s + 1:04d}"
        factors = rng.standard_normal((N_VOLUMES, N_NETWORKS))
        glob = rng.standard_normal((N_VOLUMES, 1))
        loading = rng.uniform(0.6, 1.2, n_regions)
        noise = (1.0 + 0.15 * sites[s]) * rng.standard_normal((N_VOLUMES, n_regions))
        signal = factors[:, network] * loading + 0.5 * glob + noise
        folder = ts / pid / "func"
        folder.mkdir(parents=True)
        np.savetxt(folder / f"{pid}_task-rest_atlas-Synth_timeseries.tsv", signal, fmt="%.4g", delimiter="\t",
                   header=header, comments="")
    n_controls = round(CONTROL_SHARE * n_subjects)
    table = pd.DataFrame({
        "participant_id": [f"sub-{s + 1:04d}" for s in range(n_subjects)],
        "group": ["control" if s < n_controls else "patient" for s in rng.permutation(n_subjects)],
        "site": [f"S{k + 1}" for k in sites],
        "age": np.round(rng.uniform(8, 40, n_subjects), 1),
        "sex": rng.choice(["F", "M"], n_subjects),
    })
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    return ts, root / "participants.tsv"


MEASURE = """import resource, subprocess, sys
run = subprocess.Popen(sys.argv[2:])
try:
    code = run.wait(timeout=float(sys.argv[1]) or None)
except subprocess.TimeoutExpired:
    run.kill()
    run.wait()
    code = 124
print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""  # the parent of the nmflow call: the peak RSS of its children, also after a time limit


class RssSampler:
    """Resident memory of a process and its descendants (read from ``/proc``), sampled every ``interval``
    seconds in a thread: :meth:`take` returns the largest sum seen since the previous call (bytes) and
    starts again, so each progress line gets the peak of the step it ends."""

    def __init__(self, pid: int, interval: float = 0.2):
        import threading

        self.pid, self.interval, self.peak, self.last = pid, interval, 0, 0
        self.lock, self.done = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _tree_rss(self) -> int:
        parents = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            parents[int(stat.parent.name)] = int(fields[1])
        tree, grew = {self.pid}, True
        while grew:
            grew = False
            for pid, parent in parents.items():
                if parent in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        page, total = os.sysconf("SC_PAGE_SIZE"), 0
        for pid in tree:
            try:
                total += int((Path("/proc") / str(pid) / "statm").read_text().split()[1]) * page
            except OSError:
                continue
        return total

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            rss = self._tree_rss()
            with self.lock:
                self.peak, self.last = max(self.peak, rss), rss

    def take(self) -> int:
        """The peak since the previous call; a step shorter than the interval gets the last sample."""
        with self.lock:
            peak, self.peak = self.peak or self.last, 0
        return peak

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def run_cell(root: Path, n_subjects: int, n_regions: int, extra: list[str], out: Path | None = None,
             time_limit: float = 0) -> dict:
    """Run the group level of one cell; returns its step times (s), total (s) and peak RSS (GiB).

    The cohort is written in ``root`` (reused when there); the outputs go to ``out`` when given
    (else to a temporary folder, removed).  A run longer than ``time_limit`` seconds (0: none) is
    stopped: its row holds the steps done and ``complete`` False.
    """
    cell = root / f"n{n_subjects}_r{n_regions}"
    if not (cell / "participants.tsv").exists():
        shutil.rmtree(cell, ignore_errors=True)
        write_cohort(cell, n_subjects, n_regions)
    scratch = Path(tempfile.mkdtemp(prefix="nmflow_scale_"))
    try:
        command = [sys.executable, "-c", MEASURE, str(time_limit), sys.executable, "-m", "nmflow.cli.main", str(cell),
                   str(out or scratch / "out"), "group", "--timeseries-dir", str(cell / "ts"), "--covariates",
                   "age", "sex", "-w", str(scratch / "work"), *extra]
        start = time.perf_counter()
        with open(scratch / "stderr.txt", "w+") as err:  # a file: a full pipe would block the run
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
            sampler = RssSampler(proc.pid)
            stdout, step_rss = [], {}
            for line in proc.stdout:  # echoed as they come: a cell stopped by a time limit still shows its steps
                stdout.append(line)
                step_rss[line] = sampler.take()  # the largest resident memory since the previous line
                print(f"  {n_subjects} x {n_regions}: {line.rstrip()}", file=sys.stderr, flush=True)
            proc.wait()
            sampler.stop()
            err.seek(0)
            stderr = err.read()
        total = time.perf_counter() - start
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if proc.returncode not in (0, 124):
        raise RuntimeError(f"group level failed on {n_subjects} x {n_regions}:\n{''.join(stdout)}\n{stderr}")
    peak = int(stderr.strip().splitlines()[-1].split()[1])
    row = {"subjects": n_subjects, "regions": n_regions, "connections": n_regions * (n_regions - 1) // 2}
    for line in stdout:
        match = PROGRESS.match(line.strip())
        if match:
            column = next((c for words, c in STEPS.items() if match.group(1).startswith(words)), None)
            if column:
                row[column] = float(match.group(2))
                row[f"rss_{column}"] = step_rss[line] / 2 ** 30
    row.update(total_s=total, peak_rss_gb=peak / 2 ** 20, complete=proc.returncode == 0)  # ru_maxrss: KiB
    return row


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=list(SUBJECTS))
    parser.add_argument("--regions", type=int, nargs="+", default=list(REGIONS))
    parser.add_argument("--keep", type=Path, help="folder caching the synthetic cohorts")
    parser.add_argument("--time-limit", type=float, default=0,
                        help="stop a cell's run after this many seconds (its row: the steps done so far)")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="nmflow_scale_data_"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n_subjects, n_regions in sorted(((s, r) for s in args.subjects for r in args.regions),
                                            key=lambda c: c[0] * c[1] ** 2):  # the quick cells first
            rows.append(run_cell(root, n_subjects, n_regions, extra, time_limit=args.time_limit))
            print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda v: f"{v:.2f}"), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    table = pd.DataFrame(rows)
    memory = [c for c in table if c.startswith("rss_")]
    print("\n## Group level at scale (seconds per step, peak RSS in GiB)")
    print(table.drop(columns=memory).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print("\n## Peak resident memory during each step (GiB, the nmflow process and its children, sampled every 0.2 s)")
    print(table[["subjects", "regions", *memory]].rename(columns=lambda c: c.removeprefix("rss_"))
          .to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
