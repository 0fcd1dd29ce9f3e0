"""The serial part of a participant-level call at 100 to 1,000 subjects: collection, building and scheduling.

Usage: NMFLOW_ATLAS_DIR=<atlas folder> python benchmarks/collection.py [--subjects 1000] [--nprocs 2]
       [--keep DIR]

Builds an fMRIPrep-shaped folder of ``--subjects`` subjects without their
data: each subject's BOLD, mask and confounds are links to those of one
simulated subject (4 mm grid), beside the other files fMRIPrep 23 writes
(empty: anat, figures, log, the BOLD in other spaces, transforms), so PyBIDS
and the headers are read as on a real folder.  Then times, in one process:

- indexing: a PyBIDS layout of the whole folder, and of the files
  :func:`nmflow.bids_io.collect_runs` queries (BOLD, masks, confounds of the
  func folders: what it indexes), with the files each indexed;
- collection: :func:`find_participant_inputs` (runs, TRs, atlases, the BOLD
  headers' grid check), the default options;
- build: :func:`init_participant_wf` and the methods text;
- Nipype's preparation: ``Workflow.run`` up to the plugin (flat and expanded
  graphs) with a plugin that runs nothing;
- scheduling: :func:`run_workflow` with ``--nprocs`` on a workflow of the same
  shape (5 chained nodes per run) whose nodes do nothing: Nipype's cost per
  node (hashes, result files, the scheduler) with no work to hide it.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")

from nipype import Node  # noqa: E402  (imports paid before the clocks start)
from nipype.interfaces.base import SimpleInterface, TraitedSpec, traits  # noqa: E402

from nmflow.bids_io import layout  # noqa: E402
from nmflow.participant.settings import ParticipantSettings  # noqa: E402
from nmflow.workflows.engine import Workflow, run_workflow  # noqa: E402
from nmflow.workflows.participant import (  # noqa: E402
    citation_boilerplate, find_participant_inputs, init_participant_wf,
)

# what fMRIPrep 23 writes per subject and run besides what nmflow reads (names after its outputs)
ANAT = ["desc-brain_mask.json", "desc-brain_mask.nii.gz", "desc-preproc_T1w.json", "desc-preproc_T1w.nii.gz",
        "dseg.nii.gz", "desc-aseg_dseg.nii.gz", "desc-aparcaseg_dseg.nii.gz",
        *(f"label-{t}_probseg.nii.gz" for t in ("CSF", "GM", "WM")),
        *(f"space-MNI152NLin6Asym_res-2_{s}" for s in ("desc-brain_mask.json", "desc-brain_mask.nii.gz",
                                                       "desc-preproc_T1w.json", "desc-preproc_T1w.nii.gz",
                                                       "dseg.nii.gz", "label-CSF_probseg.nii.gz",
                                                       "label-GM_probseg.nii.gz", "label-WM_probseg.nii.gz")),
        "from-MNI152NLin6Asym_to-T1w_mode-image_xfm.h5", "from-T1w_to-MNI152NLin6Asym_mode-image_xfm.h5",
        "from-fsnative_to-T1w_mode-image_xfm.txt", "from-T1w_to-fsnative_mode-image_xfm.txt",
        *(f"hemi-{h}_{s}" for h in "LR" for s in ("pial.surf.gii", "white.surf.gii", "midthickness.surf.gii",
                                                  "inflated.surf.gii", "sphere.surf.gii", "thickness.shape.gii",
                                                  "curv.shape.gii", "sulc.shape.gii"))]
FUNC = ["desc-coreg_boldref.json", "desc-coreg_boldref.nii.gz", "desc-hmc_boldref.json", "desc-hmc_boldref.nii.gz",
        "from-boldref_to-T1w_mode-image_desc-coreg_xfm.json", "from-boldref_to-T1w_mode-image_desc-coreg_xfm.txt",
        "from-orig_to-boldref_mode-image_desc-hmc_xfm.json", "from-orig_to-boldref_mode-image_desc-hmc_xfm.txt",
        *(f"space-T1w_{s}" for s in ("boldref.nii.gz", "desc-brain_mask.json", "desc-brain_mask.nii.gz",
                                     "desc-preproc_bold.json", "desc-preproc_bold.nii.gz")),
        "space-MNI152NLin6Asym_res-2_boldref.nii.gz", "space-fsLR_den-91k_bold.dtseries.json",
        "space-fsLR_den-91k_bold.dtseries.nii"]
FIGURES = [f"desc-{d}_{s}" for d in ("summary", "about", "conform", "reconall", "boldref", "rois", "compcorvar",
                                     "confoundcorr", "carpetplot", "coreg", "sdc")
           for s in ("T1w.html", "bold.svg")]


def write_folder(root: Path, subjects: int, model: Path) -> None:
    """``subjects`` subjects at ``root``: links to the func files of ``model`` (one simulated subject's
    folder), empty files with fMRIPrep's other names."""
    func_files = sorted((model / "func").iterdir())
    for i in range(1, subjects + 1):
        sub = f"sub-{i:04d}"
        for folder, names in (("anat", ANAT), ("figures", FIGURES)):
            (root / sub / folder).mkdir(parents=True)
            for name in names:
                (root / sub / folder / f"{sub}_{name}").touch()
        (root / sub / "log" / "20240101-000000_0000").mkdir(parents=True)
        (root / sub / "log" / "20240101-000000_0000" / "fmriprep.toml").touch()
        (root / sub / "func").mkdir()
        for f in func_files:
            (root / sub / "func" / f.name.replace(model.name, sub)).symlink_to(f)
        for name in FUNC:
            (root / sub / "func" / f"{sub}_task-rest_{name}").touch()
        (root / f"{sub}.html").touch()
    (root / "dataset_description.json").write_text('{"Name": "fMRIPrep-shaped", "BIDSVersion": "1.9.0", '
                                                   '"DatasetType": "derivative"}')


class NoRunPlugin:
    """A Nipype plugin that runs nothing: ``Workflow.run`` up to the plugin is Nipype's preparation."""

    plugin_args: dict = {}

    def run(self, graph, config, updatehash=False):
        return graph


class _PassSpec(TraitedSpec):
    x = traits.Int()


class Pass(SimpleInterface):
    """A node that does nothing but pass a number on (Nipype drops identity nodes from the graph it runs)."""

    input_spec = output_spec = _PassSpec

    def _run_interface(self, runtime):
        self._results["x"] = self.inputs.x
        return runtime


def stand_in_workflow(runs: int, work: Path) -> Workflow:
    """A workflow of ``runs`` sub-workflows of 5 chained :class:`Pass` nodes each (the participant level's
    shape)."""
    wf = Workflow(name="stand_in_wf", base_dir=str(work))
    for r in range(runs):
        run_wf = Workflow(name=f"run_{r:04d}_wf")
        nodes = [Node(Pass(), name=name) for name in ("extract", "denoise", "connectivity", "report", "derivatives")]
        nodes[0].inputs.x = r
        run_wf.connect([(a, b, [("x", "x")]) for a, b in zip(nodes, nodes[1:])])
        wf.add_nodes([run_wf])
    return wf


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--nprocs", type=int, default=2, help="processes of the scheduling run")
    parser.add_argument("--keep", type=Path, help="keep the folders here (the fMRIPrep-shaped one is reused)")
    args = parser.parse_args()
    if not os.environ.get("NMFLOW_ATLAS_DIR"):
        raise SystemExit("set NMFLOW_ATLAS_DIR to the folder of the real Yeo atlases")
    root = args.keep or Path(tempfile.mkdtemp(prefix="nmflow_collection_"))
    data = root / f"fmriprep_{args.subjects}"
    if not data.exists():
        from nmflow.simulate import SimulationSettings, simulate_dataset

        simulate_dataset(root / "model", SimulationSettings(n_controls=1, patients=(), n_sites=1, grid="4",
                                                            atlas_dir=os.environ["NMFLOW_ATLAS_DIR"], seed=1))
        write_folder(data, args.subjects, root / "model" / "sub-01")

    logging.getLogger("nipype.workflow").setLevel(logging.CRITICAL)
    n_files = sum(1 for p in data.rglob("*") if not p.is_dir())
    layout(root / "model")  # PyBIDS' one-off costs (configs, database engine) paid before the clocks start
    t_all, whole = timed(lambda: layout(data))
    t_func, func = timed(lambda: layout(data, func_only=True))
    n_whole, n_func = len(whole.get()), len(func.get())
    s = ParticipantSettings(bids_dir=data, out_dir=root / "out")
    t_inputs, found = timed(lambda: find_participant_inputs(s))
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)

    def build():
        wf = init_participant_wf(found.runs, found.atlases, found.strategies, list(s.metrics), s.cleaning,
                                 s.min_coverage, root / "out", work)
        citation_boilerplate(wf)
        return wf

    t_build, wf = timed(build)
    t_prepare, _ = timed(lambda: wf.run(plugin=NoRunPlugin()))
    stand_in = stand_in_workflow(len(found.runs), root / "stand_in")
    shutil.rmtree(root / "stand_in", ignore_errors=True)
    t_schedule, _ = timed(lambda: run_workflow(stand_in, root / "stand_in" / "crashes", nprocs=args.nprocs))

    n = len(found.runs)
    print(f"{args.subjects} subjects, {n} runs, {n_files} files ({os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}); seconds, and per run in ms")
    rows = [(f"PyBIDS layout, whole folder ({n_whole} files indexed)", t_all),
            (f"PyBIDS layout, the files collect_runs queries ({n_func} files)", t_func),
            ("find_participant_inputs (indexing, TRs, atlases, grid check)", t_inputs),
            ("build: init_participant_wf + methods text", t_build),
            ("Nipype's preparation (Workflow.run up to the plugin)", t_prepare),
            (f"scheduling {5 * n} nodes that do nothing, --nprocs {args.nprocs}", t_schedule)]
    for label, seconds in rows:
        print(f"  {label:66} {seconds:8.2f} s  {1000 * seconds / n:7.1f} ms/run")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
