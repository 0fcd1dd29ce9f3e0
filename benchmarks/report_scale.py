"""The group report at scale (python benchmarks/report_scale.py [--regions 400] [--subjects 300] [--abide] [--keep DIR]).

Writes synthetic BEP017 time series (``--regions`` regions in 7 planted modules, a few connections
coupled more strongly in each patient group; 60 % controls, 2 patient groups, 2 sites), runs the group
level on them with short training (``--epochs 3 --n-bootstrap 0 --folds 2``), then runs the report
step again on the same inputs and prints its time, with a cProfile summary of it with ``--profile``.

The time series sidecars name each region's module (``RegionNetworks``), as the participant level
records the network of a region; ``--no-networks`` leaves them out (the report then groups the
regions by the controls' mean FC).  ``--abide`` takes the real ABIDE development subset instead
(Harvard-Oxford 111 regions without names; the first ``--subjects`` subjects of its table).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from helpers.group import group_args  # noqa: E402
from helpers.modules import write_study  # noqa: E402
from helpers.realdata import abide_participants, write_abide_timeseries  # noqa: E402

from nmflow.workflows.group import run_group  # noqa: E402


def report_node_time(work: Path, profile: bool) -> tuple[float, float]:
    """Rerun the cached report node's interface on its own inputs; its wall and CPU time (s)."""
    from nipype.utils.filemanip import loadpkl

    from nmflow.interfaces.group_report import GroupReport

    node_dir = next(work.rglob("report/_inputs.pklz")).parent
    inputs = loadpkl(node_dir / "_inputs.pklz")
    interface = GroupReport(**{k: v for k, v in inputs.items() if v is not None and str(v) != "<undefined>"})
    scratch = Path(tempfile.mkdtemp(prefix="report-"))
    profiler = cProfile.Profile() if profile else None
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.chdir(scratch):
        if profiler:
            profiler.enable()
        interface.run(cwd=str(scratch))
        if profiler:
            profiler.disable()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
    print(f"report pages: {len(list((scratch / 'report' / 'patients').glob('*.html')))} patient pages, "
          f"{sum(f.stat().st_size for f in (scratch / 'report').rglob('*') if f.is_file()) / 1e6:.1f} MB")
    print(f"report folder kept at {scratch / 'report'}")
    return seconds, cpu


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=400)
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--no-networks", action="store_true")
    parser.add_argument("--abide", action="store_true", help="real data: ABIDE, Harvard-Oxford 111 regions")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--keep", type=Path, help="folder to keep (and reuse) the study and its work folder in")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="report-scale-"))
    work = root / "work"
    try:
        if not (root / "participants.tsv").exists():
            start = time.perf_counter()
            if args.abide:
                table = abide_participants().head(args.subjects)
                write_abide_timeseries(root / "ts", table.participant_id)
                table.to_csv(root / "participants.tsv", sep="\t", index=False)
            else:
                write_study(root, args.regions, args.subjects, networks=not args.no_networks)
            print(f"[{args.subjects} subjects written in {time.perf_counter() - start:.0f} s]")
        if not (root / "out" / "group" / "group_report.html").exists():
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                run_group(group_args(root, root / "out", "--timeseries-dir", str(root / "ts"), "--covariates",
                                     "age", "sex", "--epochs", "3", "--n-bootstrap", "0", "--folds", "2",
                                     "-w", str(work)))
            print(f"[group level: {time.perf_counter() - start:.0f} s]")
        seconds, cpu = report_node_time(work, args.profile)
        print(f"report step: {seconds:.1f} s wall, {cpu:.1f} s CPU ({'ABIDE, 111' if args.abide else args.regions} "
              f"regions, {args.subjects} subjects; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
