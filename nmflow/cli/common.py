"""CLI helpers shared by the analyses' levels: option files read and folders checked before anything runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from nmflow.errors import NmflowInputError
from nmflow.fileio import check_apart, read_json, read_text
from nmflow.log import NIPYPE_VERBOSITY


# numeric options and the values they can take (checked at parse time, before anything runs)
NUMBER_RULES = {
    "alpha": ("in (0, 1)", lambda v: 0 < v < 1),
    "n_bootstrap": (">= 0", lambda v: v >= 0),
    "nprocs": (">= 1", lambda v: v >= 1),
    "omp_nthreads": (">= 1", lambda v: v >= 1),
    "mem_gb": ("> 0 GiB", lambda v: v > 0),
    "batch_size": (">= 1", lambda v: v >= 1),
    "folds": (">= 2", lambda v: v >= 2),
    "val_split": ("in [0, 1)", lambda v: 0 <= v < 1),
    "epochs": (">= 1", lambda v: v >= 1),
    "patience": (">= 1", lambda v: v >= 1),
    "learning_rate": ("> 0", lambda v: v > 0),
    "weight_decay": (">= 0", lambda v: v >= 0),
    "mask_fraction": ("in [0, 1)", lambda v: 0 <= v < 1),
    "max_missing": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "low_pass": (">= 0 Hz (0: none)", lambda v: v >= 0),
    "high_pass": (">= 0 Hz (0: none)", lambda v: v >= 0),
    "fd_threshold": ("> 0 mm", lambda v: v > 0),
    "dvars_threshold": ("> 0", lambda v: v > 0),
    "min_segment": (">= 1", lambda v: v >= 1),
    "min_volumes": (">= 2", lambda v: v >= 2),
    "min_coverage": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "stimulus_duration": (">= 0 s", lambda v: v >= 0),
    "transition": (">= 0 s", lambda v: v >= 0),
}


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse a numeric option outside the values it can take (one line naming the flag and the value)."""
    for name, (allowed, ok) in NUMBER_RULES.items():
        value = getattr(args, name, None)
        if value is not None and not ok(value):
            raise NmflowInputError(None, f"--{name.replace('_', '-')} must be {allowed}, got {value}")
    low, high = getattr(args, "low_pass", None), getattr(args, "high_pass", None)
    if low and high and not high < low:
        raise NmflowInputError(None, f"--high-pass ({high} Hz) must be below --low-pass ({low} Hz)")


def check_input_dataset(args: argparse.Namespace) -> None:
    """Check the participant level's BIDS_DIR (:func:`nmflow.bids_io.check_derivatives_dir`) once the options are
    read, unless ``--skip-bids-validation``; its warnings are logged."""
    if args.skip_bids_validation:
        return
    from nmflow.bids_io import check_derivatives_dir
    from nmflow.log import LOG

    for line in check_derivatives_dir(args.bids_dir):
        LOG.warning(f"nmflow: warning: {line}")


def check_one_analysis(out_dir: Path, analysis: str) -> None:
    """Refuse an OUT_DIR holding the other analysis' outputs: every earlier call saved in ``OUT_DIR/logs``
    must be of ``analysis`` (the normative group level would read a stimulus study's ΔFC as variants)."""
    for call in sorted((Path(out_dir) / "logs").glob("nmflow-*.yml")):
        try:
            saved = yaml.safe_load(call.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue  # not a call nmflow saved
        found = saved.get("analysis", "normative") if isinstance(saved, dict) else analysis
        if found != analysis:
            hint = ("this folder holds a stimulus study: pass --analysis prepost" if found == "prepost"
                    else "give the stimulus study its own OUT_DIR")
            raise NmflowInputError(out_dir, f"holds the outputs of the {found} analysis ({call.name}): {hint}")


def check_outputs_apart(args: argparse.Namespace) -> None:
    """Refuse an OUT_DIR or work folder equal to, inside or containing an input folder (nothing is written there)."""
    inputs = [args.bids_dir] + [folder for folder in (getattr(args, name, None) for name in (
        "timeseries_dir", "connectivity_dir", "matrix_dir")) if folder]
    for source in inputs:
        check_apart(source, args.out_dir, "OUT_DIR")
        if args.work_dir:
            check_apart(source, args.work_dir, "the work folder (-w)")


def settings_namespace(args: argparse.Namespace, **read) -> argparse.Namespace:
    """A copy of ``args`` for a settings object: ``verbose`` (counted ``-v``) becomes whether Nipype's workflow
    log is shown (``-vv``), and ``read`` replaces options by what was read from their files."""
    return argparse.Namespace(**{**vars(args), "verbose": args.verbose >= NIPYPE_VERBOSITY, **read})


def read_filters(path: Path | None) -> dict:
    """``--bids-filter-file``: a JSON object mapping each query (e.g. ``bold``) to an object of entities."""
    if path is None:
        return {}
    filters = read_json(path, "BIDS filter file")
    if not all(isinstance(v, dict) for v in filters.values()):
        raise NmflowInputError(path, "BIDS filter file must map each query (e.g. 'bold') to an object of entities")
    from bids.layout.models import Config

    known = {name for config in ("bids", "derivatives") for name in Config.load(config).entities}
    for query, entities in filters.items():
        unknown = sorted(set(entities) - known)
        if unknown:
            raise NmflowInputError(path, f"query {query!r}: unknown BIDS entit{'ies' if len(unknown) > 1 else 'y'} "
                                         f"{', '.join(map(repr, unknown))} (entities are full names: subject, "
                                         "session, task, run, acquisition, ...)")
    return filters


def read_plugin_args(value: str | dict | None) -> dict:
    """``--plugin-args``: a JSON object, or a JSON/YAML file holding one (``None``: no arguments)."""
    if value is None or isinstance(value, dict):
        return dict(value or {})
    text, source = value, f"--plugin-args {value!r}"
    if not value.lstrip().startswith("{"):
        source = value
        text = read_text(value, "--plugin-args file")
    try:
        data = yaml.safe_load(text)  # a JSON object is a YAML flow mapping
    except yaml.YAMLError as exc:
        raise NmflowInputError(source, f"not valid JSON or YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise NmflowInputError(source, f"--plugin-args must be a mapping of argument names to values, "
                                       f"not a {type(data).__name__}")
    return data
