"""The derivatives sink (names of participant and group files, sidecars) and the staging of a run's outputs.

Expected names are spelled out here, independent of the package's config.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.participant import TOP_LEVEL, copy_subjects, minimal_run_outputs, tree

RUN = {"subject": "01", "task": "rest", "space": "MNI152NLin6Asym", "res": "2"}
YEO17 = {"atlas": "Yeo2011", "seg": "17nThick"}


def _sink(tmp_path: Path, name: str = "table.tsv", **inputs):
    from nmflow.interfaces.derivatives import DerivativesDataSink

    in_file = tmp_path / name
    in_file.write_text("a\tb\n1\t2\n")
    result = DerivativesDataSink(base_directory=str(tmp_path / "out"), in_file=str(in_file), **inputs).run()
    return result.outputs


@pytest.mark.parametrize("inputs, expected", [
    ({**RUN, **YEO17, "desc": "gsr", "meas": "pearson", "suffix": "relmat"},
     "sub-01/func/sub-01_task-rest_space-MNI152NLin6Asym_atlas-Yeo2011_seg-17nThick_res-2_desc-gsr_meas-pearson_relmat.tsv"),
    ({**RUN, **YEO17, "desc": "simple", "suffix": "timeseries"},
     "sub-01/func/sub-01_task-rest_space-MNI152NLin6Asym_atlas-Yeo2011_seg-17nThick_res-2_desc-simple_timeseries.tsv"),
    ({"subject": "01", "session": "2", "task": "rest", "acquisition": "fast", "run": "01", "desc": "gsr",
      "suffix": "design"},
     "sub-01/ses-2/func/sub-01_ses-2_task-rest_acq-fast_run-01_desc-gsr_design.tsv"),
    ({"subject": "01", "task": "rest", "atlas": "mine", "desc": "gsr", "stat": "mean", "suffix": "outliers"},
     "sub-01/func/sub-01_task-rest_atlas-mine_desc-gsr_stat-mean_outliers.tsv"),
])
def test_participant_names(tmp_path, inputs, expected):
    out = _sink(tmp_path, **inputs)
    assert Path(out.out_file).relative_to(tmp_path / "out").as_posix() == expected


def test_figures_and_report_names(tmp_path):
    """Figures go to sub-X/figures (no session folder) with entities parsed from their name; the report is on top."""
    name = "sub-01_ses-2_task-rest_atlas-Yeo2011_seg-7nThin_meas-pearson_relmat.png"
    figure = _sink(tmp_path, name, source_file=name, subject="01", datatype="figures",
                   dismiss_entities=["segmentation"])
    assert Path(figure.out_file).relative_to(tmp_path / "out").as_posix() == f"sub-01/figures/{name}"
    report = _sink(tmp_path, "page.html", subject="01", session="2", task="rest")
    assert Path(report.out_file).relative_to(tmp_path / "out").as_posix() == "sub-01_ses-2_task-rest.html"


def test_group_file_and_sidecar(tmp_path):
    """A group file: no subject, written into group/; the sidecar keeps meta_dict's key order."""
    meta = {"Description": "Mann-Whitney U per connection", "U": "statistic", "q": "BH q"}
    out = _sink(tmp_path, **YEO17, desc="gsr", meas="pearson", suffix="stats", extension=".tsv", meta_dict=meta)
    assert Path(out.out_file).relative_to(tmp_path / "out").as_posix() == \
        "group/atlas-Yeo2011_seg-17nThick_desc-gsr_meas-pearson_stats.tsv"
    assert Path(out.out_file).read_text() == "a\tb\n1\t2\n"
    assert Path(out.out_meta).name == "atlas-Yeo2011_seg-17nThick_desc-gsr_meas-pearson_stats.json"
    assert Path(out.out_meta).read_text() == json.dumps(meta, indent=2)
    model = _sink(tmp_path, "weights.bin", **YEO17, desc="gsr", meas="pearson", suffix="model", extension=".safetensors")
    assert Path(model.out_file).name == "atlas-Yeo2011_seg-17nThick_desc-gsr_meas-pearson_model.safetensors"


@pytest.mark.parametrize("inputs", [
    {**RUN, "desc": "gsr", "suffix": "timeseriez"},  # unknown participant suffix
    {"desc": "gsr", "suffix": "relmat"},  # participant suffix without a subject
])
def test_unknown_combinations_fail(tmp_path, inputs):
    with pytest.raises(ValueError, match="Could not build path"):
        _sink(tmp_path, **inputs)


def test_cli_start_does_not_import_niworkflows():
    code = "import sys, nmflow.cli.main, nmflow.cli.run; sys.exit('niworkflows' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_failing_run_leaves_nothing_and_the_boilerplate_is_written(tiny_dataset, tmp_path, monkeypatch):
    """sub-01 fails after its first files were named into OUT_DIR's staging folder: none of them reach OUT_DIR."""
    from nmflow.participant import tables
    from nmflow.participant.atlas import resolve_atlas
    from nmflow.bids_io import collect_runs
    from nmflow.participant.denoise import PRESETS, CleaningSettings
    from nmflow.workflows.participant import run_participant_level

    original, staged = tables.relmat_tables, []

    def fail_for_sub01(folder, relmats, atlases, strategies, metrics, node_files, resolution):
        if any(Path(path).name.startswith("sub-01_") for path in node_files.values()):
            stage = next(p for p in out.iterdir() if p.name.startswith(".staging-"))
            staged.extend(tree(stage))
            raise RuntimeError("planted failure after the time series sinks")
        return original(folder, relmats, atlases, strategies, metrics, node_files, resolution)

    monkeypatch.setattr("nmflow.interfaces.bids.relmat_tables", fail_for_sub01)
    root = copy_subjects(tiny_dataset["fmriprep"], tmp_path / "fmriprep", ["01", "02"])
    runs, _ = collect_runs(root)
    out, work = tmp_path / "out", tmp_path / "work"
    failures = run_participant_level(runs, [resolve_atlas("yeo7thin", tiny_dataset["atlas_dir"])],
                                     [PRESETS["simple"]], ["pearson"], CleaningSettings(), 0.5, out, work)
    assert list(failures) == ["sub-01_task-rest"]
    assert "planted failure" in failures["sub-01_task-rest"]
    assert any(p.endswith("_timeseries.tsv") for p in staged), staged  # the sinks did write, into staging
    assert tree(out) == minimal_run_outputs("02") | TOP_LEVEL - {"dataset_description.json", ".bidsignore",
                                                                 "logs/nmflow-participant-<call>.yml",
                                                                 "logs/nmflow-participant-<call>.log"}
    citation = (out / "logs" / "CITATION.md").read_text()
    for words in ("*simple*", "`atlas-Yeo2011_seg-7nThin`", "`meas-pearson`", "Yeo BTT", "Nipype"):
        assert words in citation


def test_standard_spaces_listed_without_indexing_templateflow_match_its_index():
    """The sink's list of TemplateFlow templates (folder names) is the one TemplateFlow's own index gives."""
    import templateflow.api
    from niworkflows.interfaces.bids import STANDARD_SPACES

    from nmflow.interfaces.derivatives import DerivativesDataSink

    assert DerivativesDataSink._standard_spaces == STANDARD_SPACES
    assert sorted(STANDARD_SPACES) == sorted(templateflow.api.templates())
    assert "MNI152NLin6Asym" in STANDARD_SPACES


def test_entity_order_is_the_bids_schema_order():
    """Output names put the entities in the BIDS schema's order (bidsschematools), BEP017's meas and stat
    last; the path patterns of nmflow's PyBIDS config follow it too."""
    import json
    import re

    from bidsschematools.schema import load_schema

    from nmflow.bids_io import ENTITY_ORDER, NMFLOW_BIDS_CONFIG

    schema = list(load_schema().rules.entities)
    ours = [long for long, _ in ENTITY_ORDER if long in schema or {"res": "resolution", "den": "density",
                                                                    "desc": "description"}.get(long) in schema]
    full = [{"res": "resolution", "den": "density", "desc": "description"}.get(e, e) for e in ours]
    assert full == sorted(full, key=schema.index)
    assert [long for long, _ in ENTITY_ORDER][-1] == "meas"
    config = json.loads(NMFLOW_BIDS_CONFIG.read_text())
    for pattern in config["default_path_patterns"][:3]:
        keys = re.findall(r"\[_(\w+)-\{", pattern)
        assert [k for k in keys if k not in ("meas", "stat")] == ["ses", "task", "acq", "run", "space", "atlas",
                                                                  "seg", "res", "den", "desc"]
