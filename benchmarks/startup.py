"""Start-up time of the CLI: ``nmflow --version`` (and each ``--help``) against ``python -c pass``.

Usage: python benchmarks/startup.py [--repeat 5]

Runs every command as a new process, the way the ``nmflow`` script does
(``from nmflow.cli.main import main; sys.exit(main())``), with this checkout
first on ``PYTHONPATH``, and prints the median wall time of ``--repeat`` runs
of each, its ratio to the median of ``python -c pass`` measured in the same run
(the two interleaved, so that other processes on the machine slow both alike;
one unmeasured run of each first, to fill the file cache), and the heavy
packages each command imported (none is the goal: parsing and ``--help`` need
argparse, yaml and nmflow's option modules only).  Target of
``nmflow --version``: at most 8 x ``python -c pass``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "pandas", "scipy", "nipype", "nilearn", "nibabel", "torch", "bids", "matplotlib")
COMMANDS = [["--version"], ["--help"], ["simulate", "--help"], ["simulate-prepost", "--help"],
            ["dicom", "--help"], ["dicom", "inventory", "--help"], ["dicom", "convert", "--help"],
            ["fmriprep", "--help"]]
TARGET = 8.0
# the body of the installed `nmflow` script; the modules imported go to stderr after it ran
NMFLOW = ("import sys\nfrom nmflow.cli.main import main\ncode = main()\n"
          "print('\\n' + ' '.join(sorted(sys.modules)), file=sys.stderr)\nsys.exit(code)")


def environment() -> dict[str, str]:
    """This process's environment with this checkout first on ``PYTHONPATH``."""
    env = dict(os.environ, NIPYPE_NO_ET="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def run(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time (s) of ``argv`` as a new process, and its result."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done


def heavy_imports(done: subprocess.CompletedProcess) -> list[str]:
    """The heavy top-level packages a run of :data:`NMFLOW` imported."""
    modules = done.stderr.rstrip("\n").rpartition("\n")[2].split()
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (the median is kept)")
    args = parser.parse_args()
    env = environment()
    baseline = [sys.executable, "-c", "pass"]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; median of {args.repeat} runs each")
    rows = []
    for command in COMMANDS:
        argv = [sys.executable, "-c", NMFLOW, *command]
        _, done = run(argv, env)  # warm-up: file cache
        if done.returncode != 0:
            raise SystemExit(f"nmflow {' '.join(command)} exited with {done.returncode}:\n{done.stderr}")
        run(baseline, env)
        times, base = [], []
        for _ in range(args.repeat):
            base.append(run(baseline, env)[0])
            times.append(run(argv, env)[0])
        rows.append((command, statistics.median(times), statistics.median(base), heavy_imports(done)))
    print(f"{'command':<32} {'wall (ms)':>9} {'python -c pass (ms)':>19} {'ratio':>6}  heavy imports")
    for command, wall, base, heavy in rows:
        print(f"{'nmflow ' + ' '.join(command):<32} {wall * 1e3:9.0f} {base * 1e3:19.0f} {wall / base:6.1f}  "
              f"{', '.join(heavy) or '-'}")
    _, wall, base, _ = rows[0]
    print(f"nmflow --version / python -c pass: {wall / base:.1f} (target <= {TARGET:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
