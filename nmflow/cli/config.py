"""One optional YAML/TOML config file whose keys equal the CLI flag names.

The argparse parser is the single source of defaults: the file only overrides
them, and flags given on the command line override the file.
"""

from __future__ import annotations

import argparse
import shlex
import uuid
from datetime import datetime, timezone
from pathlib import Path

import yaml

from nmflow import __version__
from nmflow.errors import NmflowInputError
from nmflow.fileio import atomic_write_text, read_text


def read_config_file(path: str | Path) -> dict:
    """Read a ``.yml``/``.yaml``/``.toml`` file into a flat dict."""
    import tomllib  # here, not at the top: a TOML config is rare and importing its parser costs every start-up ~10 ms

    path = Path(path)
    text = read_text(path, "config file")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except tomllib.TOMLDecodeError as exc:
        raise NmflowInputError(path, f"not valid TOML: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise NmflowInputError(path, f"not valid YAML: {getattr(exc, 'problem', None) or exc}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NmflowInputError(path, "config file must be a mapping of flag names to values")
    return data


def apply_config_file(parser: argparse.ArgumentParser, path: str | Path) -> None:
    """Set the parser's defaults from a config file; unknown keys are an error."""
    data = read_config_file(path)
    dests = {a.dest: a for a in parser._actions}
    overrides = {}
    for key, value in data.items():
        dest = str(key).lstrip("-").replace("-", "_")
        if dest not in dests or dest in ("help", "config"):
            raise NmflowInputError(path, f"unknown option {key!r} (keys are the CLI flag names)")
        overrides[dest] = _convert(dests[dest], value, path, key)
    parser.set_defaults(**overrides)


def _convert(action: argparse.Action, value, path: Path, key: str):
    """Give a config value the type and checks the flag would have given it."""
    if value is None or action.nargs == 0:  # unset, or a store_true/false switch
        return value
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if isinstance(value, list) and not many:
        raise NmflowInputError(path, f"option {key!r}: expected one value, got a list")
    items = value if isinstance(value, list) else [value]
    converted = []
    for item in items:
        try:
            if action.type in (int, float):
                item = action.type(item)
            elif action.type is not None:
                item = action.type(str(item))
            else:
                item = str(item)
        except (TypeError, ValueError, OverflowError, argparse.ArgumentTypeError) as exc:
            raise NmflowInputError(path, f"option {key!r}: invalid value {item!r} ({exc})") from None
        if action.choices is not None and item not in action.choices:
            raise NmflowInputError(path, f"option {key!r}: {item!r} is not one of {', '.join(map(str, action.choices))}")
        converted.append(item)
    return converted if many else converted[0]


POSITIONALS = ("bids-dir", "out-dir", "analysis-level")  # the keys a saved call holds them under


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; a ``--config FILE`` among them supplies defaults first.

    ``nmflow --config FILE`` alone reruns a saved call: when ``argv`` starts
    with an option and the file holds the positional arguments
    (``bids-dir``, ``out-dir``, ``analysis-level``), they are taken from it.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        apply_config_file(parser, known.config)
        data = read_config_file(known.config)
        if (not argv or argv[0].startswith("-")) and all(data.get(key) is not None for key in POSITIONALS):
            argv = [str(data[key]) for key in POSITIONALS] + list(argv)
    return parser.parse_args(argv)


def config_to_dict(args: argparse.Namespace) -> dict:
    """The resolved configuration, with flag names as keys (for saving)."""
    out = {}
    for key, value in sorted(vars(args).items()):
        if key in ("config", "func"):
            continue
        if isinstance(value, Path):
            value = str(value)
        out[key.replace("_", "-")] = value
    return out


def command_line(argv: list[str]) -> str:
    """The call as one shell line: ``nmflow ARG ...``."""
    return "nmflow " + shlex.join(str(a) for a in argv)


def call_stem(level: str) -> str:
    """``nmflow-<level>-<UTC start time>-<id>``: the name of this call's files in ``OUT_DIR/logs``."""
    return f"nmflow-{level}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def save_call(out_dir: str | Path, args: argparse.Namespace, argv: list[str], stem: str) -> Path:
    """Save this call's resolved configuration as ``OUT_DIR/logs/<stem>.yml`` (:func:`call_stem`).

    One file per call, never overwritten: its keys are the flag names (re-run
    with ``--config`` on it), its header comments the version, the start time and
    the command line.  Returns the file's path.
    """
    level = args.analysis_level
    start = datetime.strptime(stem.split("-")[2], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    path = Path(out_dir) / "logs" / f"{stem}.yml"
    header = (f"# nmflow {__version__}, {level} level, {start.isoformat(timespec='seconds')}\n"
              f"# command: {command_line(argv)}\n"
              f"# re-run it with: nmflow BIDS_DIR OUT_DIR {level} --config <this file>\n")
    atomic_write_text(path, header + yaml.safe_dump(config_to_dict(args), sort_keys=True))
    return path
