"""`nmflow simulate-prepost OUT_DIR`: a synthetic stimulus study (controls and patients) with planted FC changes."""

from __future__ import annotations

import argparse
import dataclasses

from nmflow.cli.config import parse_with_config
from nmflow.simulate.settings import PrepostSimulationSettings

HELP = {
    "n_controls": "controls (group 'control')", "n_patients": "patients (group 'patient'), each with the changes",
    "n_volumes": "volumes per run", "tr": "seconds", "onset": "stimulus onset (s; default: the middle of the run)",
    "duration": "stimulus duration (s)", "transition": "seconds the analysis excludes on each side of the stimulus",
    "n_changed": "connections whose FC changes after the stimulus in the patients only",
    "n_common": "connections whose FC changes in every subject",
    "effect": "size of a patient change, in SDs of the controls' ΔFC",
    "common_effect": "size of a common change, in the same unit", "evoked": "amplitude of the evoked response",
    "high_hz": "upper edge (Hz) of the network signals' band", "motion": "motion artefact scale",
    "grid": "'tiny': toy 8 mm atlas written beside the data; '2'/'4': real Yeo grid (mm)",
    "atlas": "atlas whose networks carry the signals", "atlas_dir": "real atlas folder (default: $NMFLOW_ATLAS_DIR)",
    "seed": "random seed",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nmflow simulate-prepost", description=(
        "Write a synthetic stimulus study in fMRIPrep's layout (BOLD, mask, confounds, events.tsv, participants.tsv) "
        "to OUT_DIR and the planted changes to OUT_DIR_truth beside it."))
    p.add_argument("out_dir")
    p.add_argument("--config", help="YAML or TOML file whose keys are these flag names")
    for f in dataclasses.fields(PrepostSimulationSettings):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "events":
            p.add_argument("--no-events", dest="events", action="store_false",
                           help="write no events.tsv (the analysis then needs --stimulus-onset)")
        elif f.name == "grid":
            p.add_argument(flag, choices=["tiny", "2", "4"], default=f.default, help=HELP[f.name])
        else:
            kind = {int: int, float: float}.get(type(f.default), float if f.name == "onset" else str)
            p.add_argument(flag, type=kind, default=f.default, help=HELP[f.name])
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``nmflow simulate-prepost``; returns the exit code (errors are raised)."""
    args = vars(parse_with_config(build_parser(), argv))
    from nmflow.simulate.prepost import simulate_prepost_dataset  # after parsing: --help needs no NumPy

    out_dir = args.pop("out_dir")
    args.pop("config")
    truth = simulate_prepost_dataset(out_dir, PrepostSimulationSettings(**args))
    print(f"dataset: {out_dir}\ntruth:   {truth}")
    if args["grid"] == "tiny":
        print(f"atlases: {truth / 'atlases'} (pass --atlas-dir)")
    return 0
