"""`nmflow` entry point: the BIDS-App call plus subcommands.

``nmflow BIDS_DIR OUT_DIR {participant,group} [options]`` is the BIDS-App
call; ``nmflow simulate|dicom|fmriprep ...`` are subcommands, each a module of
this package exposing ``main(argv) -> int``.
"""

from __future__ import annotations

import importlib
import os
import sys

os.environ.setdefault("NIPYPE_NO_ET", "1")

SUBCOMMANDS = {
    "simulate": "nmflow.cli.simulate",
    "dicom": "nmflow.cli.dicom",
    "fmriprep": "nmflow.cli.fmriprep",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bids_app_call = len(argv) >= 3 and argv[2] in ("participant", "group")  # e.g. a folder named 'fmriprep'
    if argv and argv[0] in SUBCOMMANDS and not bids_app_call:
        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return module.main(argv[1:])
    from nmflow.cli.run import main as run_main

    return run_main(argv)


if __name__ == "__main__":
    sys.exit(main())
