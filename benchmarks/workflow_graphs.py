"""Draw both workflows with Nipype's ``write_graph`` (needs Graphviz's ``dot``): python benchmarks/workflow_graphs.py

Writes ``docs/participant_workflow.png`` (one run's sub-workflow: two atlases,
two strategies, one metric) and ``docs/group_workflow.png``, the figures of the
README's *Architecture* section.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from helpers.group import group_args  # noqa: E402

from nmflow.bids_io import Run  # noqa: E402
from nmflow.participant.atlas import Atlas  # noqa: E402
from nmflow.participant.denoise import CleaningSettings, load_strategy  # noqa: E402
from nmflow.workflows.group import init_group_wf  # noqa: E402
from nmflow.workflows.participant import init_run_wf  # noqa: E402


def draw(wf, target: Path, scratch: Path) -> None:
    """``wf``'s flat graph (nodes with their interface module) as ``target`` (PNG)."""
    wf.base_dir = str(scratch)
    wf.write_graph(graph2use="flat", format="png", dotfilename=str(scratch / f"{target.stem}.dot"),
                   simple_form=True)
    shutil.copyfile(scratch / f"{target.stem}.png", target)
    print(f"wrote {target}")


def main() -> None:
    docs = HERE.parent / "docs"
    docs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for name in ("bold.nii.gz", "mask.nii.gz", "confounds.tsv", "atlas.nii.gz"):
            (scratch / name).touch()  # the graph only needs the files to exist
        run = Run("01", None, "rest", None, None, "MNI152NLin6Asym", "2", str(scratch / "bold.nii.gz"),
                  str(scratch / "mask.nii.gz"), str(scratch / "confounds.tsv"), 2.0)
        atlases = [Atlas(f"yeo{n}thick", scratch / "atlas.nii.gz", list(range(1, n + 1)),
                         [f"net{k}" for k in range(1, n + 1)], {"atlas": "Yeo2011", "seg": f"{n}nThick"})
                   for n in (17, 7)]
        strategies = [load_strategy("simple"), load_strategy("gsr")]
        draw(init_run_wf(run, atlases, strategies, ["pearson"], CleaningSettings(), 0.5, scratch / "out"),
             docs / "participant_workflow.png", scratch)
        draw(init_group_wf(group_args(scratch, scratch / "out"), scratch / "staging"),
             docs / "group_workflow.png", scratch)


if __name__ == "__main__":
    main()
