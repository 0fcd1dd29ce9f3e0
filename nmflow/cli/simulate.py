"""`nmflow simulate OUT_DIR`: a synthetic fMRIPrep dataset with planted truth."""

from __future__ import annotations

import argparse

from nmflow.cli.config import parse_with_config
from nmflow.log import LOG
from nmflow.simulate.settings import SimulationSettings


def _patients(text: str) -> tuple[str, int]:
    name, _, n = text.partition("=")
    if not name.isalnum() or not n.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=N (alphanumeric name), got {text!r}")
    return name, int(n)


def build_parser() -> argparse.ArgumentParser:
    d = SimulationSettings()
    p = argparse.ArgumentParser(prog="nmflow simulate", description=(
        "Write synthetic fMRIPrep derivatives (BOLD, mask, confounds, participants.tsv) to OUT_DIR and the "
        "planted ground truth to OUT_DIR_truth beside it."))
    p.add_argument("out_dir")
    p.add_argument("--config", help="YAML or TOML file whose keys are these flag names")
    p.add_argument("--n-controls", type=int, default=d.n_controls)
    p.add_argument("--patients", nargs="*", type=_patients, default=list(d.patients),
                   help="patient groups as NAME=N (default: disorderA=20 disorderB=20)")
    p.add_argument("--n-sites", type=int, default=d.n_sites)
    p.add_argument("--n-sessions", type=int, default=d.n_sessions)
    p.add_argument("--n-volumes", type=int, default=d.n_volumes)
    p.add_argument("--tr", type=float, default=d.tr, help="seconds")
    p.add_argument("--grid", choices=["tiny", "2", "4"], default=d.grid,
                   help="'tiny': toy 8 mm atlas written beside the data; '2'/'4': real Yeo grid (mm)")
    p.add_argument("--atlas", default=d.atlas, help="atlas whose networks carry the signals")
    p.add_argument("--atlas-dir", default=d.atlas_dir, help="real atlas folder (default: $NMFLOW_ATLAS_DIR)")
    p.add_argument("--effect-d", type=float, default=d.effect_d,
                   help="median subject-level Cohen's d of a planted connection on the observed Fisher-z FC, "
                        "relative to the controls' within-site SD (per connection d x lognormal(0, 0.35), "
                        "clipped to 0.5-1.8 x this)")
    p.add_argument("--effect", type=float, default=d.effect,
                   help="instead of --effect-d: every planted group correlation changes by exactly this")
    p.add_argument("--n-specific", type=int, default=d.n_specific, help="planted connections per patient group")
    p.add_argument("--n-shared", type=int, default=d.n_shared, help="planted connections common to all groups")
    p.add_argument("--motion", type=float, default=d.motion, help="motion artefact scale")
    p.add_argument("--global-signal", type=float, default=d.global_signal, help="global signal amplitude (%%)")
    p.add_argument("--site-strength", type=float, default=d.site_strength, help="SD of the site signal's network loadings")
    p.add_argument("--seed", type=int, default=d.seed)
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``nmflow simulate``; returns the exit code (errors are raised)."""
    args = parse_with_config(build_parser(), argv)
    LOG.info(f"nmflow simulate -> {args.out_dir}: loading NumPy and nibabel ...")  # seconds of imports
    from nmflow.simulate.dataset import simulate_dataset  # after parsing: --help needs no NumPy

    settings = SimulationSettings(
        n_controls=args.n_controls, patients=tuple(tuple(p) for p in args.patients), n_sites=args.n_sites,
        n_volumes=args.n_volumes, tr=args.tr, grid=args.grid, atlas=args.atlas, atlas_dir=args.atlas_dir,
        seed=args.seed, n_sessions=args.n_sessions, effect=args.effect, effect_d=args.effect_d,
        n_specific=args.n_specific, n_shared=args.n_shared, motion=args.motion,
        global_signal=args.global_signal, site_strength=args.site_strength)
    truth = simulate_dataset(args.out_dir, settings, progress=True)
    print(f"dataset: {args.out_dir}\ntruth:   {truth}")
    if args.grid == "tiny":
        print(f"atlases: {truth / 'atlases'} (pass --atlas-dir)")
    return 0
