"""Output hashes against a stored manifest: a run's deterministic outputs must keep their bytes.

``tests/data/output_manifest.json`` holds, per test run, ``{relative path:
sha256}`` of every output but the ones that cannot repeat or depend on the
machine: HTML pages (their About section holds the call's date and command
line), the per-call configuration files, and PNG figures (their bytes depend
on matplotlib's version and fonts; their names are checked by the tests that
list the outputs).  The package version is replaced by ``<version>`` and
``.nii.gz`` files are hashed uncompressed, so a version bump or another zlib
leaves the manifest valid.

After a change meant to alter outputs, rewrite the manifest with
``NMFLOW_UPDATE_MANIFEST=1 pytest tests/test_cli_participant.py tests/test_prepost_workflow.py``
and review its diff.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import nmflow
from helpers.participant import CALL_LOG, DATA

MANIFEST = DATA / "output_manifest.json"
SKIPPED = (".html", ".png", "dataset_description.json")


def output_hashes(root: Path, leave_out: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative path: sha256}`` of the deterministic outputs under ``root`` (see the module docstring), but
    those whose path starts with one of ``leave_out``."""
    root, found = Path(root), {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel.endswith(SKIPPED) or CALL_LOG.match(rel) or rel.startswith(leave_out):
            continue
        data = gzip.decompress(path.read_bytes()) if rel.endswith(".gz") else path.read_bytes()
        data = data.replace(nmflow.__version__.encode(), b"<version>")
        found[rel] = hashlib.sha256(data).hexdigest()
    return found


def assert_matches_manifest(root: Path, run: str, leave_out: tuple[str, ...] = ()) -> None:
    """The outputs under ``root`` (but ``leave_out``) hash as the manifest's entry ``run`` says (or rewrite
    that entry when ``NMFLOW_UPDATE_MANIFEST`` is set)."""
    found = output_hashes(root, leave_out)
    stored = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    if os.environ.get("NMFLOW_UPDATE_MANIFEST"):
        stored[run] = found
        MANIFEST.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    expected = stored[run]
    missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    changed = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    assert not (missing or unexpected or changed), (
        f"{run}: outputs differ from {MANIFEST.name}\nchanged: {changed}\nmissing: {missing}\n"
        f"unexpected: {unexpected}")
