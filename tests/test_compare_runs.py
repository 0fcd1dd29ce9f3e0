"""Two runs of one call compared (benchmarks/compare_outputs.py's compare_runs, as docker/build-and-test.sh
uses it): SOURCE_DATE_EPOCH makes the reports byte-identical, the differences two runs have by design are
listed as expected with their reason, and a planted difference in data or in a report is still caught."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from helpers.participant import MINIMAL, copy_subjects, participant_argv, run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from compare_outputs import compare_runs  # noqa: E402

from nmflow.reports.html import report_date  # noqa: E402

REPORT = "sub-01_task-rest.html"


@pytest.fixture(scope="module")
def two_runs(tiny_dataset, tmp_path_factory):
    """The same participant call twice (same command line, SOURCE_DATE_EPOCH set), the first run's output and
    work folders moved aside before the second (nothing cached): ``(first, second)``."""
    root = tmp_path_factory.mktemp("two_runs")
    fmriprep = copy_subjects(tiny_dataset["fmriprep"], root / "fmriprep", ["01"])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SOURCE_DATE_EPOCH", "1700000000")
        for name in ("first", "second"):
            rc, _, stderr = run_cli(participant_argv(fmriprep, root / "out", root / "work", tiny_dataset["atlas_dir"],
                                                     *MINIMAL))
            assert rc == 0, stderr
            (root / "out").rename(root / name)
            (root / "work").rename(root / f"{name}_work")
    return root / "first", root / "second"


def test_source_date_epoch_sets_the_reports_date(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14 22:13:20 UTC
    assert report_date() == "2023-11-14 22:13 UTC"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert re.fullmatch(r"20\d\d-\d\d-\d\d \d\d:\d\d UTC", report_date()) and report_date() != "2023-11-14 22:13 UTC"


def test_two_runs_differ_only_in_their_call_logs(two_runs):
    first, second = two_runs
    page = (first / REPORT).read_text()
    assert "<tr><td>date</td><td>2023-11-14 22:13 UTC</td></tr>" in page
    assert (first / REPORT).read_bytes() == (second / REPORT).read_bytes()  # byte-identical with the epoch set
    result = compare_runs(first, second)
    assert result.problems == []
    # each run's call logs (its options .yml and its console .log): named after the call's time
    logs = [p.relative_to(root).as_posix() for root in (first, second) for p in (root / "logs").glob("nmflow-*")]
    assert len(logs) == 4 and sorted(line.split(" (")[0] for line in result.expected) == sorted(
        f"call log: {n}" for n in logs)
    assert result.identical > 10 and result.summary().startswith("same: ")
    assert "4 differing as expected (4 call log), 0 differing" in result.summary()


def test_another_command_line_is_expected_and_a_planted_change_is_not(two_runs, tmp_path):
    first, second = two_runs
    other = tmp_path / "other"
    shutil.copytree(second, other)
    page = (other / REPORT).read_text()
    moved = re.sub(r"(<tr><td>command</td><td>)[^<]*", r"\1nmflow /data /out participant", page)
    moved = moved.replace("2023-11-14 22:13 UTC", "2026-01-02 03:04 UTC")
    assert moved != page
    (other / REPORT).write_text(moved)
    result = compare_runs(first, other)
    assert result.problems == [] and f"report: {REPORT} (About: the call's command line and date)" in result.expected
    # a number outside About (the QC table's volumes kept) is a real difference
    kept = re.search(r'(<td>simple</td>(?:<td class="num">[^<]*</td>){3})<td class="num">(\d+)</td>', moved)
    planted = f'{kept.group(1)}<td class="num">{int(kept.group(2)) - 1}</td>'
    (other / REPORT).write_text(moved.replace(kept.group(0), planted, 1))
    timeseries = next((other / "sub-01" / "func").glob("*_timeseries.tsv"))
    lines = timeseries.read_text().splitlines()
    cells = lines[1].split("\t")
    cells[0] = repr(float(cells[0]) + 1e-6)
    timeseries.write_text("\n".join([lines[0], "\t".join(cells), *lines[2:]]) + "\n")
    result = compare_runs(first, other)
    assert result.problems == [f"differs: {timeseries.relative_to(other).as_posix()}: column "
                               f"{lines[0].split(chr(9))[0]!r}: max |difference| 1e-06 > 1e-12",
                               f"differs: {REPORT}: bytes differ"]
    assert result.summary().startswith("DIFFERENT: ")
