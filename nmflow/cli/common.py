"""CLI helpers shared by the analyses' levels: option files read and folders checked before anything runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from nmflow.errors import NmflowInputError
from nmflow.fileio import check_apart, read_json, read_text


def check_outputs_apart(args: argparse.Namespace) -> None:
    """Refuse an OUT_DIR or work folder equal to, inside or containing an input folder (nothing is written there)."""
    inputs = [args.bids_dir] + [folder for folder in (getattr(args, name, None) for name in (
        "timeseries_dir", "connectivity_dir", "matrix_dir")) if folder]
    for source in inputs:
        check_apart(source, args.out_dir, "OUT_DIR")
        if args.work_dir:
            check_apart(source, args.work_dir, "the work folder (-w)")


def read_filters(path: Path | None) -> dict:
    """``--bids-filter-file``: a JSON object mapping each query (e.g. ``bold``) to an object of entities."""
    if path is None:
        return {}
    filters = read_json(path, "BIDS filter file")
    if not all(isinstance(v, dict) for v in filters.values()):
        raise NmflowInputError(path, "BIDS filter file must map each query (e.g. 'bold') to an object of entities")
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
