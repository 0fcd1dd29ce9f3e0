"""The stimulus study's flags of the BIDS-App call (``--analysis prepost``); no heavy imports."""

from __future__ import annotations

from pathlib import Path

from nmflow.prepost.settings import PrepostOptions


def add_prepost_arguments(parser) -> None:
    """Add ``--analysis`` and the stimulus study's flags to ``parser`` (a parser or an argument group)."""
    defaults = PrepostOptions()
    parser.add_argument("--analysis", choices=["normative", "prepost"], default="normative",
                        help="normative: FC and the normative model (default); prepost: a stimulus study, the run "
                             "split around a stimulus, the FC change of one case against controls")
    parser.add_argument("--stimulus-onset", type=float,
                        help="prepost: stimulus onset (s from the first volume) for runs without an events.tsv")
    parser.add_argument("--stimulus-duration", type=float, default=defaults.duration,
                        help="prepost: stimulus duration (s)")
    parser.add_argument("--transition", type=float, default=defaults.transition,
                        help="prepost: seconds excluded on each side of the stimulus (PRE ends at onset - this, "
                             "POST starts at onset + duration + this)")
    parser.add_argument("--events-dir", type=Path,
                        help="prepost: BIDS folder holding the runs' events.tsv (default: FMRIPREP_DIR)")
    parser.add_argument("--glm-confounds", default="gsr",
                        help="prepost: the denoising strategy (as --denoise) whose confounds enter the GLM; default "
                             "gsr (24 motion + white matter + CSF + global signal, high-motion volumes left out): a "
                             "global change after the stimulus (arousal) would otherwise move every connection")
    parser.add_argument("--case-label", nargs="+",
                        help="prepost group: the case(s), with or without 'sub-' (default: every subject whose "
                             "--group-column is not --control-label)")
