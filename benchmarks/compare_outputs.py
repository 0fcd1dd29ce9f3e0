"""Compare two nmflow output trees file by file (e.g. before and after a refactor).

Usage: python benchmarks/compare_outputs.py OLD_DIR NEW_DIR [--atol 1e-12] [--ignore GLOB ...] [--strict]

Every file under either folder (hidden ones included) is compared by its
relative path:

* the two trees must hold the same names;
* ``.tsv``: same header and non-numeric cells, numeric cells equal within
  ``--atol`` (``n/a`` in the same places);
* ``.json``: equal once parsed, numbers within ``--atol``; a different key
  order is reported as a note only;
* ``.png``: equal decoded pixels; different bytes with equal pixels are a note;
* anything else (HTML, YAML, model files): identical bytes.

Two runs of the same call differ in a few places by design (:func:`compare_runs`,
the default; ``--strict`` counts them as differences): the call logs
``logs/nmflow-<level>-<time>-<id>.yml`` are named after the call's time and
record its folders, and the About section of a participant report holds the
call's command line and date (``SOURCE_DATE_EPOCH`` fixes the date).  These are
listed as expected, with the reason; anything else that differs is a
difference.

Prints one line per differing file and a summary; the exit code is 1 when any
file differs (notes and expected differences do not count), 0 otherwise.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


def tree(root: Path) -> set[str]:
    """Every file under ``root``, as POSIX paths relative to it."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def compare_tsv(old: bytes, new: bytes, atol: float) -> str | None:
    """Why two TSV tables differ (``None`` when equal within ``atol``)."""
    tables = [pd.read_csv(io.BytesIO(b), sep="\t", na_values=["n/a"], keep_default_na=False) for b in (old, new)]
    a, b = tables
    if list(a.columns) != list(b.columns):
        return f"columns differ: {list(a.columns)} vs {list(b.columns)}"
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    for column in a.columns:
        x, y = a[column], b[column]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            x, y = x.to_numpy(float), y.to_numpy(float)
            if not np.array_equal(np.isnan(x), np.isnan(y)):
                return f"column {column!r}: n/a in different rows"
            diff = np.abs(x - y)[~np.isnan(x)]
            if diff.size and diff.max() > atol:
                return f"column {column!r}: max |difference| {diff.max():.3g} > {atol:g}"
        elif not x.astype(str).equals(y.astype(str)):
            return f"column {column!r}: values differ"
    return None


def _json_equal(a, b, atol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k], atol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y, atol) for x, y in zip(a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= atol
    return type(a) is type(b) and a == b


def compare_json(old: bytes, new: bytes, atol: float) -> tuple[str | None, str | None]:
    """(why two JSON files differ or ``None``, a note on key order or ``None``)."""
    a, b = json.loads(old), json.loads(new)
    if not _json_equal(a, b, atol):
        return "content differs", None
    return None, "key order differs" if json.dumps(a) != json.dumps(b) else None


def compare_png(old: bytes, new: bytes) -> str | None:
    """Why two PNG images differ in their pixels (``None`` when the pixels are equal)."""
    import matplotlib.image as mpimg

    a, b = (mpimg.imread(io.BytesIO(x), format="png") for x in (old, new))
    if a.shape != b.shape:
        return f"image size {a.shape} vs {b.shape}"
    return None if np.array_equal(a, b) else f"{int((a != b).any(axis=-1).sum())} pixels differ"


def compare_trees(old_dir: Path, new_dir: Path, atol: float = 1e-12,
                  ignore: tuple[str, ...] = ()) -> tuple[list[str], list[str], int]:
    """(one line per differing file, one line per note, number of byte-identical files)."""
    old, new = ({r for r in tree(d) if not any(fnmatch.fnmatch(r, g) for g in ignore)} for d in (old_dir, new_dir))
    problems = [f"only in OLD: {r}" for r in sorted(old - new)] + [f"only in NEW: {r}" for r in sorted(new - old)]
    notes, identical = [], 0
    for rel in sorted(old & new):
        a, b = (old_dir / rel).read_bytes(), (new_dir / rel).read_bytes()
        if a == b:
            identical += 1
            continue
        suffix, note = Path(rel).suffix, None
        if suffix == ".tsv":
            why = compare_tsv(a, b, atol)
            note = "bytes differ, numbers within tolerance"
        elif suffix == ".json":
            why, note = compare_json(a, b, atol)
            note = note or "bytes differ (formatting), content equal"
        elif suffix == ".png":
            why = compare_png(a, b)
            note = "bytes differ, pixels equal"
        else:
            why = "bytes differ"
        if why:
            problems.append(f"differs: {rel}: {why}")
        else:
            notes.append(f"note: {rel}: {note}")
    return problems, notes, identical


CALL_LOG = re.compile(r"^logs/nmflow-(?P<level>[a-z]+)-\d{8}T\d{6}-[0-9a-f]+\.(yml|log)$")
# the About rows that name the call (a participant report's; the group pages show versions only)
CALL_ROWS = re.compile(r"<tr><td>(command|date)</td><td>[^<]*</td></tr>")
ABOUT = re.compile(r'<section id="about">.*?</section>', re.S)


def _without_call_rows(page: bytes) -> bytes:
    """A report with its About section's command and date rows blanked."""
    text = page.decode("utf-8", errors="replace")
    return ABOUT.sub(lambda m: CALL_ROWS.sub(r"<tr><td>\1</td><td></td></tr>", m.group(0)), text).encode()


@dataclass
class RunComparison:
    """Two output trees of the same call compared: ``problems`` (one line per unexpected difference),
    ``expected`` (one line per expected difference, with its reason), ``notes`` (equal within tolerance)
    and the number of byte-identical files."""

    problems: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    identical: int = 0

    def summary(self, atol: float = 1e-12) -> str:
        """One line: the verdict (``same`` or ``DIFFERENT``) and the counts, the expected ones by kind."""
        kinds = Counter(line.split(": ", 1)[0] for line in self.expected)
        expected = "; ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"
        verdict = "same" if not self.problems else "DIFFERENT"
        return (f"{verdict}: {self.identical} files byte-identical, {len(self.notes)} equal within {atol:g}, "
                f"{len(self.expected)} differing as expected ({expected}), {len(self.problems)} differing")


def compare_runs(old_dir: Path, new_dir: Path, atol: float = 1e-12, ignore: tuple[str, ...] = ()) -> RunComparison:
    """:func:`compare_trees`, the differences that two runs of one call have by design set apart.

    Expected: call logs (in both trees under other names, the same number per level, or under one name with
    another content: their names hold the time, their content the call's folders), and HTML pages that differ
    only in the About section's command and date rows.
    Everything else that differs is a problem.
    """
    problems, notes, identical = compare_trees(old_dir, new_dir, atol, ignore)
    out = RunComparison(notes=notes, identical=identical)
    logs = {side: Counter(m.group("level") for line in problems if line.startswith(f"only in {side}: ")
                          for m in [CALL_LOG.match(line.split(": ", 1)[1])] if m) for side in ("OLD", "NEW")}
    for line in problems:
        rel = line.split(": ", 2)[1]
        log = CALL_LOG.match(rel)
        if log and (line.startswith("differs: ") or logs["OLD"][log["level"]] == logs["NEW"][log["level"]]):
            out.expected.append(f"call log: {rel} (its name holds the call's time, its content the call's "
                                "folders)")
        elif (line.startswith("differs: ") and rel.endswith(".html")
              and _without_call_rows((old_dir / rel).read_bytes()) == _without_call_rows((new_dir / rel).read_bytes())):
            out.expected.append(f"report: {rel} (About: the call's command line and date)")
        else:
            out.problems.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old_dir", type=Path)
    parser.add_argument("new_dir", type=Path)
    parser.add_argument("--atol", type=float, default=1e-12, help="tolerance on numbers in TSV and JSON files")
    parser.add_argument("--ignore", nargs="+", default=[], help="glob(s) of relative paths to skip")
    parser.add_argument("--strict", action="store_true",
                        help="count the differences two runs of one call have by design (call logs, the reports' "
                             "command line and date) as differences")
    args = parser.parse_args(argv)
    for folder in (args.old_dir, args.new_dir):
        if not folder.is_dir():
            parser.error(f"{folder}: not a folder")
    if args.strict:
        problems, notes, identical = compare_trees(args.old_dir, args.new_dir, args.atol, tuple(args.ignore))
        result = RunComparison(problems, [], notes, identical)
    else:
        result = compare_runs(args.old_dir, args.new_dir, args.atol, tuple(args.ignore))
    for line in result.problems + [f"expected: {line}" for line in result.expected] + result.notes:
        print(line)
    print(result.summary(args.atol))
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
