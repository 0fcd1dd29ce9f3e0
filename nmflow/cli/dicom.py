"""``nmflow dicom inventory|convert``: DICOM folders to an anonymised BIDS dataset."""

from __future__ import annotations

import argparse
import sys

from nmflow.cli.config import parse_with_config


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``nmflow dicom`` parser and its two sub-command parsers."""
    top = argparse.ArgumentParser(prog="nmflow dicom",
                                  description="DICOM inventory and DICOM -> BIDS conversion.")
    sub = top.add_subparsers(dest="command", required=True)
    inventory = sub.add_parser("inventory", help="scan DICOMs and write an editable CSV")
    inventory.add_argument("dicom_root", help="folder of DICOM files (any layout)")
    inventory.add_argument("csv", help="inventory CSV to write (one row per series)")
    inventory.add_argument("--key-file", required=True,
                           help="private PatientID -> pseudonym table (created or extended); "
                                "keep it outside the BIDS folder")
    inventory.add_argument("--overwrite", action="store_true",
                           help="replace an existing CSV (its edits are lost)")
    convert = sub.add_parser("convert", help="convert the CSV's series to BIDS")
    convert.add_argument("csv", help="inventory CSV (after your edits)")
    convert.add_argument("bids_dir", help="BIDS output folder")
    convert.add_argument("--date-policy", choices=["remove", "shift"], default="remove",
                         help="remove acquisition dates/times, or shift dates back by the "
                              "CSV's per-participant date_shift_days (default: remove)")
    convert.add_argument("--overwrite", action="store_true",
                         help="re-convert sessions that already exist")
    convert.add_argument("--dataset-name", default="nmflow DICOM conversion",
                         help="Name in dataset_description.json")
    for parser in (inventory, convert):
        parser.add_argument("--config", help="YAML/TOML file whose keys are these flag names")
    return top, {"inventory": inventory, "convert": convert}


def _inventory(args: argparse.Namespace) -> int:
    from nmflow.bids_io import with_prefix
    from nmflow.dicom.inventory import run_inventory

    summary = run_inventory(args.dicom_root, args.csv, args.key_file, args.overwrite)
    for warning in summary.warnings:
        print(f"nmflow: warning: {warning}", file=sys.stderr)
    n_sessions = sum(len(s) for s in summary.sessions.values())
    print(f"{summary.n_files} DICOM files, {summary.n_series} series, "
          f"{len(summary.sessions)} participants, {n_sessions} sessions")
    for label, sessions in sorted(summary.sessions.items()):
        print(f"  {with_prefix(label)}: {', '.join('ses-' + s for s in sessions)}")
    print(f"wrote {args.csv} (review and edit it) and {args.key_file} (keep it private)")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from nmflow.dicom.convert import run_convert

    summary = run_convert(args.csv, args.bids_dir, args.date_policy, args.overwrite,
                          args.dataset_name)
    for warning in summary.warnings:
        print(f"nmflow: warning: {warning}", file=sys.stderr)
    for label in summary.converted:
        print(f"converted {label}")
    for label in summary.skipped:
        print(f"skipped {label} (already converted; --overwrite to redo)")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of ``nmflow dicom``; returns the exit code (errors are raised)."""
    top, parsers = build_parsers()
    if not argv or argv[0] not in parsers:
        top.parse_args(argv)
    args = parse_with_config(parsers[argv[0]], argv[1:])
    return {"inventory": _inventory, "convert": _convert}[argv[0]](args)
