"""The participant level with a 400-region atlas: time and peak memory against Yeo-17, every FC metric.

Usage: NMFLOW_ATLAS_DIR=<atlas folder> python benchmarks/participant_scale.py [--keep DIR] [--n-volumes 200]

A 400-region user atlas is made from Schaefer-200 (2 mm) by cutting every parcel in two along its longest
axis (the field's default parcellation, Schaefer-400, is not in the atlas folder; what matters here is the
count and the size of the regions). One simulated subject (real 2 mm grid) is run through
``nmflow ... participant`` as a new process, once with ``--atlas yeo17thick`` and once with the 400-region
atlas, both with ``--denoise simple gsr`` and every metric of the registry; printed: wall time and peak
RSS of each process, their ratios, and the per-node times of the 400-region run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from participant import simulated_subject  # noqa: E402
from throughput import node_times  # noqa: E402

from nmflow.participant.connectivity import METRICS  # noqa: E402


def split_parcels(image: Path, out_dir: Path) -> tuple[Path, Path]:
    """A 2x finer atlas: each label of ``image`` cut at the median of its voxels along its longest axis.

    Returns the NIfTI and its ``index``/``name`` table (names ``<label>a``/``<label>b``).
    """
    img = nib.load(image)
    labels = np.asarray(img.dataobj).astype(np.int32)
    out = np.zeros_like(labels)
    rows = []
    for label in np.unique(labels[labels > 0]):
        voxels = np.argwhere(labels == label)
        axis = int(np.argmax(np.ptp(voxels, axis=0)))
        lower = voxels[:, axis] <= np.median(voxels[:, axis])
        for half, part in ((0, lower), (1, ~lower)):
            index = 2 * int(label) - 1 + half
            out[tuple(voxels[part].T)] = index
            rows.append({"index": index, "name": f"P{int(label)}{'ab'[half]}"})
    out_dir.mkdir(parents=True, exist_ok=True)
    nifti, table = out_dir / "split400.nii.gz", out_dir / "split400.tsv"
    nib.save(nib.Nifti1Image(out, img.affine, img.header), nifti)
    pd.DataFrame(rows).to_csv(table, sep="\t", index=False)
    return nifti, table


# runs nmflow as its child and prints the child's peak RSS (KiB): each measurement in a fresh parent,
# since ru_maxrss of the children is a running maximum over all of them
PEAK_RSS = ("import resource, subprocess, sys; "
            "rc = subprocess.run([sys.executable, '-m', 'nmflow.cli.main', *sys.argv[1:]], "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode; "
            "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def run(argv: list[str]) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of ``nmflow *argv`` run as a new process."""
    start = time.perf_counter()
    rc, peak = subprocess.run([sys.executable, "-c", PEAK_RSS, *argv], capture_output=True, text=True,
                              check=True).stdout.split()
    if rc != "0":
        raise SystemExit(f"nmflow {' '.join(argv)} failed (exit {rc})")
    return time.perf_counter() - start, int(peak) / 1024


def main() -> None:
    atlas_dir, root, fmriprep, _ = simulated_subject(__doc__)
    nifti, table = split_parcels(Path(atlas_dir) / "Schaefer200_space-MNI152NLin6_res-2x2x2.nii.gz", root / "atlas")
    common = ["--denoise", "simple", "gsr", "--metrics", *METRICS]
    results, steps = {}, {}
    for name, atlas in (("400 regions", [f"split400={nifti}:{table}"]), ("Yeo-17 (17)", ["yeo17thick"])):
        out, work = root / f"out_{name[:3]}", root / f"work_{name[:3]}"
        shutil.rmtree(out, ignore_errors=True), shutil.rmtree(work, ignore_errors=True)
        results[name] = run([str(fmriprep), str(out), "participant", "--atlas", *atlas, *common, "-w", str(work)])
        steps[name] = node_times(work)
    bold = next((fmriprep / "sub-01" / "func").glob("*preproc_bold.nii.gz"))
    print(f"one subject, 2 mm grid {nib.load(bold).shape}, strategies simple gsr, {len(METRICS)} metrics")
    for name, (wall, peak) in results.items():
        print(f"  {name:12s}: {wall:6.1f} s wall, peak RSS {peak:6.0f} MiB")
    (w400, m400), (w17, m17) = results["400 regions"], results["Yeo-17 (17)"]
    print(f"  ratio 400 / 17 regions: time {w400 / w17:.2f}, peak RSS {m400 / m17:.2f}")
    for name, times in steps.items():
        print(f"  {name}, per node (s): " + "  ".join(f"{k} {v:.2f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
