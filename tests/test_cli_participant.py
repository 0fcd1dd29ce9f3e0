"""The participant level through the CLI, on the tiny simulated dataset.

One module-scoped full run (2 atlases x 3 strategies x 2 metrics, 4 subjects)
is checked file by file against ``tests/data/expected_participant_outputs.txt``
and in content; the other tests each make one small run (a single atlas,
strategy and metric) to check selection, input variants, resuming and the
config file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

import nmflow
from nmflow.networks import yeo_systems
from helpers.manifest import assert_matches_manifest
from helpers.participant import (
    DATA, MINIMAL, TOP_LEVEL, YEO7_8MM, assert_exactly_expected, atlas_region_names, copy_subjects, error_lines,
    hashes, minimal_run_outputs, saved_config, participant_argv, read_confounds, read_json,
    read_relmat, read_tsv, report_figures, run_cli, run_files, tree, write_confounds,
)

SUBJECTS = ["01", "02", "03", "04"]
FULL = ["--atlas", "yeo17thick", "yeo7thin", "--denoise", "none", "simple", "gsr",
        "--metrics", "pearson", "kendall"]
ATLASES = {"yeo17thick": ("seg-17nThick", "Yeo-17-liberal.csv", 17), "yeo7thin": ("seg-7nThin", "Yeo-7.csv", 7)}
STRATEGIES = ["none", "simple", "gsr"]


def _ts_path(out: Path, sub: str, atlas: str, desc: str) -> Path:
    seg = ATLASES[atlas][0]
    name = f"sub-{sub}_task-rest_space-MNI152NLin6Asym_atlas-Yeo2011_{seg}_res-8_desc-{desc}_timeseries.tsv"
    return out / f"sub-{sub}" / "func" / name


def _relmat_path(out: Path, sub: str, atlas: str, desc: str, meas: str) -> Path:
    ts = _ts_path(out, sub, atlas, desc)
    return ts.with_name(ts.name.replace("_timeseries.tsv", f"_meas-{meas}_relmat.tsv"))



def _resolution(fmriprep: Path, sub: str) -> str:
    """The ``Resolution`` expected for ``res-8``: the voxel size read here from the input BOLD's header."""
    import nibabel as nib

    size = "x".join(f"{v:g}" for v in nib.load(run_files(fmriprep, sub)["bold"]).header.get_zooms()[:3])
    assert size == "8x8x8"  # the toy atlas's grid
    return (f"res-8 of the input BOLD in MNI152NLin6Asym space (its voxels: {size} mm); the atlas labels were "
            "sampled on that grid")


def _data_hashes(out: Path) -> dict[str, str]:
    """Hashes of every output but the HTML reports (they hold the call's command line and date)."""
    return {k: v for k, v in hashes(out, "*").items() if not k.endswith(".html")}

# -- one full run shared by the content checks ----------------------------------------------------

@pytest.fixture(scope="module")
def full_run(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("full_run")
    out, work = root / "out", root / "work"
    rc, stdout, stderr = run_cli(participant_argv(tiny_dataset["fmriprep"], out, work, tiny_dataset["atlas_dir"], *FULL))
    assert rc == 0, stderr
    assert error_lines(stderr) == []
    assert "4 of 4 run(s) done" in stdout
    done = re.findall(r"^\[(\d)/4 runs, \d+:\d\d elapsed(, ~\d+:\d\d left)?\] (sub-0\d)_task-rest done \(\d+\.\d s\)$",
                      stdout, re.M)
    assert [k for k, _, _ in done] == ["1", "2", "3", "4"] and sorted(s for _, _, s in done) == [f"sub-{s}" for s in SUBJECTS]
    assert [bool(left) for _, left, _ in done] == [True, True, True, False]  # no estimate once all are done
    return {"out": out, "work": work, "root": root, **tiny_dataset}


def test_full_run_writes_exactly_the_expected_files(full_run):
    assert_exactly_expected(full_run["out"], DATA / "expected_participant_outputs.txt", SUBJECTS, 4 * 59 + 5)


def test_full_run_outputs_keep_their_bytes(full_run):
    assert_matches_manifest(full_run["out"], "participant")


@pytest.mark.parametrize("atlas", list(ATLASES))
def test_timeseries_headers_rows_and_sidecar(full_run, atlas):
    _, csv_name, n_regions = ATLASES[atlas]
    names = atlas_region_names(full_run["atlas_dir"] / csv_name)
    assert len(names) == n_regions
    for sub in SUBJECTS:
        for desc in STRATEGIES:
            path = _ts_path(full_run["out"], sub, atlas, desc)
            table = read_tsv(path)
            assert list(table.columns) == names, path.name
            meta = read_json(path.with_suffix(".json"))
            kept = meta["KeptVolumeIndices"]
            assert len(table) == meta["VolumesKept"] == len(kept), path.name
            assert np.isfinite(table.to_numpy(float)).all(), f"{path.name}: NaN region in the toy data"
            assert meta["RepetitionTime"] == pytest.approx(2.0)
            assert meta["DenoisingStrategy"]["Name"] == desc
            assert list(meta["RegionCoverage"]) == names
            assert meta["RegionNetworks"] == dict(zip(names, yeo_systems(n_regions)))  # for the group report
            # filter (the CLI's defaults, Hz; the none strategy filters nothing) and units (--standardize psc)
            filtered = desc != "none"
            assert (meta["HighPassCutoffHz"], meta["LowPassCutoffHz"]) == ((0.01, 0.1) if filtered else (None, None))
            assert meta["Detrended"] is filtered and ("Butterworth" in (meta["Filter"] or "")) is filtered
            assert meta["Standardization"] == "psc" and meta["Units"].startswith("percent signal change")
            assert meta["Resolution"] == _resolution(full_run["fmriprep"], sub), path.name  # res-8 in the name
            # kept volumes = the uncensored rows of the outliers table of that strategy
            outliers = read_tsv(path.parent / f"sub-{sub}_task-rest_desc-{desc}_outliers.tsv")
            assert len(outliers) == 100
            assert kept == [int(i) for i in np.flatnonzero(outliers["censored"].to_numpy() == 0)]
            if desc == "none":  # only fMRIPrep's two non-steady-state volumes are dropped
                assert kept == list(range(2, 100))
            if desc == "gsr":  # scrubbing: every FD > 0.5 mm volume is censored
                fd = read_confounds(run_files(full_run["fmriprep"], sub)["confounds"])["framewise_displacement"]
                assert not set(np.flatnonzero(fd.fillna(0).to_numpy() > 0.5)) & set(kept)


def test_scrubbing_censors_more_than_simple(full_run):
    """gsr scrubs: over the 4 subjects it keeps fewer volumes than simple (which only drops dummies)."""
    kept = {desc: sum(read_json(_ts_path(full_run["out"], s, "yeo17thick", desc).with_suffix(".json"))["VolumesKept"]
                      for s in SUBJECTS) for desc in ("simple", "gsr")}
    assert kept["simple"] == 4 * 98
    assert kept["gsr"] < kept["simple"]


@pytest.mark.parametrize("atlas", list(ATLASES))
def test_pearson_relmat_is_corrcoef_of_written_timeseries(full_run, atlas):
    n = ATLASES[atlas][2]
    for sub in SUBJECTS:
        for desc in STRATEGIES:
            ts = read_tsv(_ts_path(full_run["out"], sub, atlas, desc))
            nodes, mat = read_relmat(_relmat_path(full_run["out"], sub, atlas, desc, "pearson"))
            assert nodes == list(ts.columns)
            assert mat.shape == (n, n)
            np.testing.assert_allclose(mat, mat.T, atol=1e-12)
            np.testing.assert_allclose(np.diag(mat), 1.0, atol=1e-12)
            np.testing.assert_allclose(mat, np.corrcoef(ts.to_numpy(float), rowvar=False), atol=1e-6)
            off = mat[np.triu_indices(n, k=1)]
            # not degenerate (a constant or copied signal would give |r| = 1 or identical values); without
            # GSR the simulator's band-limited global signal makes Yeo-7 correlations alike (sd ~0.03-0.1)
            assert np.all(np.abs(off) < 1) and off.std() > 0.01, desc


def test_kendall_relmat_matches_scipy(full_run):
    pairs = [(0, 1), (2, 9), (5, 16), (12, 13)]
    for sub in ("01", "04"):
        for desc in ("none", "gsr"):
            x = read_tsv(_ts_path(full_run["out"], sub, "yeo17thick", desc)).to_numpy(float)
            _, mat = read_relmat(_relmat_path(full_run["out"], sub, "yeo17thick", desc, "kendall"))
            np.testing.assert_allclose(mat, mat.T, atol=1e-12)
            np.testing.assert_allclose(np.diag(mat), 1.0)
            for i, j in pairs:
                tau = stats.kendalltau(x[:, i], x[:, j], variant="b").statistic
                assert mat[i, j] == pytest.approx(tau, abs=1e-6), (sub, desc, i, j)
            # and it is not the Pearson matrix under another name
            _, pearson = read_relmat(_relmat_path(full_run["out"], sub, "yeo17thick", desc, "pearson"))
            assert np.abs(mat - pearson).max() > 0.01


def test_relmat_sidecars(full_run):
    measures = {"pearson": "pearson", "kendall": "kendall"}
    for atlas in ATLASES:
        for desc in STRATEGIES:
            for meas, word in measures.items():
                path = _relmat_path(full_run["out"], "02", atlas, desc, meas)
                meta = read_json(path.with_suffix(".json"))
                assert meta["Directed"] is False
                assert meta["Weighted"] is True
                assert meta["ValidDiagonal"] is False  # correlations: the unit diagonal carries no information
                assert word in meta["RelationshipMeasure"].lower()
                assert meta["Software"] == f"nmflow {nmflow.__version__}"
                ts = _ts_path(full_run["out"], "02", atlas, desc)
                assert meta["NodeFiles"] == [ts.name]
                assert (path.parent / meta["NodeFiles"][0]).is_file()
                # Sources: the BIDS URI, inside this dataset (bids::), of the time series the matrix came from
                assert meta["Sources"] == [f"bids::sub-02/func/{ts.name}"]
                assert (full_run["out"] / meta["Sources"][0].removeprefix("bids::")).is_file()
                assert meta["Resolution"] == _resolution(full_run["fmriprep"], "02")


def test_dataset_description_and_saved_config(full_run):
    desc = read_json(full_run["out"] / "dataset_description.json")
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "nmflow"
    assert desc["GeneratedBy"][0]["Version"] == nmflow.__version__
    assert desc["DatasetLinks"]["preprocessed"] == Path(full_run["fmriprep"]).absolute().as_uri()
    sidecar = read_json(next((full_run["out"] / "sub-01" / "func").glob("*_desc-simple_design.json")))
    for uri in sidecar["Sources"]:  # bids:preprocessed:<path inside the input dataset>
        assert uri.startswith("bids:preprocessed:sub-01/func/sub-01_task-rest")
        assert (Path(full_run["fmriprep"]) / uri.removeprefix("bids:preprocessed:")).is_file()
    ignored = (full_run["out"] / ".bidsignore").read_text().split()
    outside = [f for f in tree(full_run["out"]) if f not in ("dataset_description.json", ".bidsignore")
               and not any(fnmatch.fnmatch(Path(f).name, p) or f.startswith(p) or f"/{p}" in f"/{f}"
                           for p in ignored)]
    assert outside == []  # every output BIDS cannot name yet is declared
    config = yaml.safe_load(saved_config(full_run["out"]).read_text())
    assert config["atlas"] == ["yeo17thick", "yeo7thin"]
    assert config["denoise"] == ["none", "simple", "gsr"]
    assert config["metrics"] == ["pearson", "kendall"]
    assert config["analysis-level"] == "participant"


def test_reports_reference_existing_figures(full_run):
    out = full_run["out"]
    for sub in SUBJECTS:
        figures = report_figures(out / f"sub-{sub}_task-rest.html")
        assert len(figures) == 8  # a carpet and a connectome per strategy, a design per strategy but none
        assert {Path(f).name for f in figures} == {p.name for p in (out / f"sub-{sub}" / "figures").iterdir()}
        for fig in figures:
            assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", fig


@pytest.mark.parametrize("drop_nulls", [False, True], ids=["as_saved", "nulls_dropped"])
def test_saved_config_round_trips(full_run, capsys, drop_nulls):
    """Running again with --config <the saved logs/nmflow-participant-*.yml> gives the same outputs, byte for byte."""
    saved = saved_config(full_run["out"])
    out2 = full_run["root"] / f"out_from_config_{drop_nulls}"
    if drop_nulls:  # the same configuration without its null (= default) entries
        config = {k: v for k, v in yaml.safe_load(saved.read_text()).items() if v is not None}
        saved = full_run["root"] / "config_without_nulls.yml"
        saved.write_text(yaml.safe_dump(config))
    rc, _, err = run_cli([full_run["fmriprep"], out2, "participant", "--config", saved, "-w", full_run["work"]], capsys)
    assert rc == 0, err
    first, second = tree(full_run["out"]), tree(out2)
    assert first == second
    assert _data_hashes(out2) == _data_hashes(full_run["out"])
    config1 = yaml.safe_load(saved_config(full_run["out"]).read_text())
    config2 = yaml.safe_load(saved_config(out2).read_text())
    assert config2.pop("out-dir") == str(out2)
    config1.pop("out-dir")
    assert config2 == config1


def test_config_file_alone_reruns_the_saved_call(full_run, capsys):
    """``nmflow --config FILE``: the saved call holds BIDS_DIR, OUT_DIR and the level (here OUT_DIR edited)."""
    config = yaml.safe_load(saved_config(full_run["out"]).read_text())
    assert config["analysis-level"] == "participant"
    out3 = full_run["root"] / "out_from_config_alone"
    config["out-dir"] = str(out3)
    edited = full_run["root"] / "config_alone.yml"
    edited.write_text(yaml.safe_dump(config))
    rc, _, err = run_cli(["--config", edited, "-w", full_run["work"]], capsys)
    assert rc == 0, err
    assert _data_hashes(out3) == _data_hashes(full_run["out"])


def _without_report(paths):
    """The outputs a call without its per-run report writes: no HTML page, no figure."""
    return {p for p in paths if not p.endswith(".html") and "/figures/" not in p}


@pytest.fixture(scope="module")
def lighter_runs(full_run, tmp_path_factory):
    """The full run's call again with ``--reports light`` and ``--reports none``, each on a copy of its work
    folder (the extraction, cleaning and connectivity nodes cached: only the report and the publication run)."""
    root = tmp_path_factory.mktemp("lighter")
    outs = {}
    for level in ("light", "none"):
        work = shutil.copytree(full_run["work"], root / f"work_{level}")
        outs[level] = root / f"out_{level}"
        rc, _, stderr = run_cli(participant_argv(full_run["fmriprep"], outs[level], work, full_run["atlas_dir"],
                                                 *FULL, "--reports", level))
        assert rc == 0, stderr
    return outs


@pytest.mark.parametrize("level", ["light", "none"])
def test_lighter_reports_leave_every_other_output_identical(full_run, lighter_runs, level):
    out = lighter_runs[level]
    full = tree(full_run["out"])
    expected = _without_report(full) | ({p for p in full if p.endswith(".html")} if level == "light" else set())
    assert tree(out) == expected
    assert not any("/figures/" in p for p in tree(out))
    assert _without_report(_data_hashes(out)) == _without_report(_data_hashes(full_run["out"]))
    assert yaml.safe_load(saved_config(out).read_text())["reports"] == level


def test_light_report_has_the_tables_and_matrices_of_the_full_one_and_no_figure(full_run, lighter_runs):
    for sub in SUBJECTS:
        full, light = (folder / f"sub-{sub}_task-rest.html" for folder in (full_run["out"], lighter_runs["light"]))
        assert report_figures(light) == [] and len(report_figures(full)) == 3 + 2 + 3  # carpets, designs, connectomes
        matrices = re.compile(r"data-fc='([^']*)'")
        found = matrices.findall(light.read_text())
        assert len(found) == 2 * 2 and found == matrices.findall(full.read_text())  # atlases x metrics
        qc = re.compile(r'<section id="qc">.*?</section>', re.S)
        assert qc.search(light.read_text()).group(0) == qc.search(full.read_text()).group(0)
        assert light.read_text().count("Not drawn: this call used --reports light") == 3  # carpets, confounds, connectome


# -- selection -------------------------------------------------------------------------------------

def test_participant_label_with_and_without_prefix(tiny_dataset, tmp_path, capsys):
    trees = {}
    for label in ("01", "sub-01"):
        out = tmp_path / f"out_{label}"
        rc, stdout, err = run_cli(participant_argv(tiny_dataset["fmriprep"], out, tmp_path / "work" / label,
                                                   tiny_dataset["atlas_dir"], "--participant-label", label, *MINIMAL),
                                  capsys)
        assert rc == 0, err
        assert "1 of 1 run(s) done" in stdout
        trees[label] = tree(out)
    assert trees["01"] == trees["sub-01"] == minimal_run_outputs("01") | TOP_LEVEL


def test_bids_filter_file_restricts_subjects(tiny_dataset, tmp_path, capsys):
    filters = tmp_path / "filter.json"
    filters.write_text(json.dumps({"bold": {"subject": "02"}}))
    out = tmp_path / "out"
    rc, stdout, err = run_cli(participant_argv(tiny_dataset["fmriprep"], out, tmp_path / "work", tiny_dataset["atlas_dir"],
                                               "--bids-filter-file", filters, *MINIMAL), capsys)
    assert rc == 0, err
    assert "1 of 1 run(s) done" in stdout
    assert tree(out) == minimal_run_outputs("02") | TOP_LEVEL


# -- input variants --------------------------------------------------------------------------------

def test_older_confounds_regressors_name(tiny_dataset, tmp_path, capsys):
    fmriprep = copy_subjects(tiny_dataset["fmriprep"], tmp_path / "fmriprep", ["01"])
    confounds = run_files(fmriprep, "01")["confounds"]
    old = confounds.with_name("sub-01_task-rest_desc-confounds_regressors.tsv")
    confounds.rename(old)
    confounds.with_suffix(".json").rename(old.with_suffix(".json"))
    out = tmp_path / "out"
    rc, _, err = run_cli(participant_argv(fmriprep, out, tmp_path / "work", tiny_dataset["atlas_dir"], *MINIMAL), capsys)
    assert rc == 0, err
    assert tree(out) == minimal_run_outputs("01") | TOP_LEVEL
    outliers = read_tsv(out / "sub-01/func/sub-01_task-rest_desc-simple_outliers.tsv")
    np.testing.assert_allclose(outliers["framewise_displacement"], read_confounds(old)["framewise_displacement"],
                               rtol=1e-5)  # written with 6 significant digits


def _check_run_outputs(out: Path, func_dir: str, stem: str, confounds: Path) -> None:
    """The per-run files of ``stem`` exist in ``func_dir`` and its outliers come from ``confounds``."""
    prefix = f"{func_dir}/{stem}"
    atl = f"{prefix}_{YEO7_8MM}_desc-simple"
    expected = {f"{prefix}_desc-simple_{s}.{e}" for s in ("design", "outliers") for e in ("tsv", "json")}
    expected |= {f"{atl}_timeseries.tsv", f"{atl}_timeseries.json",
                 f"{atl}_meas-pearson_relmat.tsv", f"{atl}_meas-pearson_relmat.json"}
    assert expected <= tree(out), sorted(expected - tree(out))
    assert (out / f"{stem}.html").is_file()
    for fig in report_figures(out / f"{stem}.html"):
        assert Path(fig).name.startswith(stem) and (out / fig).is_file()
    outliers = read_tsv(out / f"{prefix}_desc-simple_outliers.tsv")
    np.testing.assert_allclose(outliers["framewise_displacement"], read_confounds(confounds)["framewise_displacement"],
                               rtol=1e-5)


def test_multi_session_dataset(tmp_path, capsys):
    from nmflow.simulate import SimulationSettings, simulate_dataset

    fmriprep = tmp_path / "fmriprep"
    truth = simulate_dataset(fmriprep, SimulationSettings(
        n_controls=1, patients=(), n_sites=1, n_volumes=100, n_sessions=2, seed=5))
    out = tmp_path / "out"
    rc, stdout, err = run_cli(participant_argv(fmriprep, out, tmp_path / "work", truth / "atlases", *MINIMAL), capsys)
    assert rc == 0, err
    assert "2 of 2 run(s) done" in stdout
    for ses in ("1", "2"):
        confounds = fmriprep / f"sub-01/ses-{ses}/func/sub-01_ses-{ses}_task-rest_desc-confounds_timeseries.tsv"
        _check_run_outputs(out, f"sub-01/ses-{ses}/func", f"sub-01_ses-{ses}_task-rest", confounds)
    assert not (out / "sub-01" / "func").exists()
    assert len([p for p in tree(out) if p.endswith("_timeseries.tsv")]) == 2


def test_only_the_func_folders_are_indexed(tiny_dataset, tmp_path):
    """Only the BOLD series, masks and confounds of the func folders are indexed (not an fMRIPrep folder's anat,
    figures and log folders, sourcedata, top-level files, sidecars); the runs of sessions are found; a subject
    without BOLD is there (no run) rather than not found."""
    from nmflow.bids_io import collect_runs, layout
    from nmflow.errors import NmflowInputError

    root = copy_subjects(tiny_dataset["fmriprep"], tmp_path / "fmriprep", ["01", "02"])
    session = root / "sub-02" / "ses-1" / "func"
    session.mkdir(parents=True)
    for f in sorted((root / "sub-02" / "func").iterdir()):
        f.rename(session / f.name.replace("sub-02_", "sub-02_ses-1_"))
    (root / "sub-02" / "func").rmdir()
    planted = ["sub-01/anat/sub-01_desc-preproc_T1w.nii.gz", "sub-01/figures/sub-01_desc-summary_T1w.html",
               "sub-01/log/20240101-000000/fmriprep.toml", "sub-02/ses-1/anat/sub-02_ses-1_desc-brain_mask.nii.gz",
               "sub-03/anat/sub-03_desc-preproc_T1w.nii.gz", "sourcedata/freesurfer/sub-01/mri/T1.mgz",
               "logs/CITATION.md", "sub-01.html", "sub-01/func/sub-01_task-rest_desc-coreg_boldref.nii.gz",
               "sub-01/func/sub-01_task-rest_from-boldref_to-T1w_mode-image_desc-coreg_xfm.txt"]
    for name in planted:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    queried = {p for p in tree(root) if "/func/" in p and p.endswith(("_bold.nii.gz", "_mask.nii.gz", ".tsv"))}
    assert len(queried) == 6  # BOLD, mask and confounds of each subject
    indexed = {Path(f.path).relative_to(root).as_posix() for f in layout(root, func_only=True).get()}
    assert indexed == queried
    runs, problems = collect_runs(root)
    assert problems == [] and [(r.subject, r.session) for r in runs] == [("01", None), ("02", "1")]
    assert collect_runs(root, ["03"]) == ([], [])
    with pytest.raises(NmflowInputError, match="1 participant\\(s\\) not found: sub-04"):
        collect_runs(root, ["03", "04"])


def test_multi_run_dataset(tiny_dataset, tmp_path, capsys):
    """sub-01 gets two runs: run-1 = its own data, run-2 = sub-02's data renamed."""
    fmriprep = copy_subjects(tiny_dataset["fmriprep"], tmp_path / "fmriprep", ["01"])
    func = fmriprep / "sub-01" / "func"
    for path in sorted(func.iterdir()):
        path.rename(path.with_name(path.name.replace("_task-rest_", "_task-rest_run-1_")))
    for path in sorted((tiny_dataset["fmriprep"] / "sub-02" / "func").iterdir()):
        shutil.copy(path, func / path.name.replace("sub-02_task-rest_", "sub-01_task-rest_run-2_"))
    out = tmp_path / "out"
    rc, stdout, err = run_cli(participant_argv(fmriprep, out, tmp_path / "work", tiny_dataset["atlas_dir"], *MINIMAL),
                              capsys)
    assert rc == 0, err
    assert "2 of 2 run(s) done" in stdout
    for run in ("1", "2"):
        _check_run_outputs(out, "sub-01/func", f"sub-01_task-rest_run-{run}",
                           func / f"sub-01_task-rest_run-{run}_desc-confounds_timeseries.tsv")
    ts = {run: read_tsv(out / f"sub-01/func/sub-01_task-rest_run-{run}_{YEO7_8MM}_"
                              "desc-simple_timeseries.tsv").to_numpy(float) for run in ("1", "2")}
    assert ts["1"].shape == ts["2"].shape and not np.allclose(ts["1"], ts["2"])


# -- resuming --------------------------------------------------------------------------------------

RESUME = ["--participant-label", "01", "02", "--atlas", "yeo17thick", "--denoise", "simple", "gsr",
          "--metrics", "pearson"]


def test_resume_after_a_crash_matches_a_clean_run(tiny_copy, tmp_path, capsys):
    fmriprep, atlas_dir = tiny_copy["fmriprep"], tiny_copy["atlas_dir"]
    work, out = tmp_path / "work", tmp_path / "out"
    confounds = run_files(fmriprep, "01")["confounds"]
    original = confounds.read_bytes()
    table = read_confounds(confounds)
    write_confounds(table.drop(columns=[c for c in table if c.startswith("csf")]), confounds)

    rc, _, err = run_cli(participant_argv(fmriprep, out, work, atlas_dir, *RESUME), capsys)
    assert rc == 1
    assert len(error_lines(err)) == 1 and "csf" in error_lines(err)[0]
    assert not any(p.startswith("sub-01") for p in tree(out))
    assert any(p.startswith("sub-02/func/") for p in tree(out))

    wf = work / "nmflow_participant_wf"
    extract_result = wf / "run_sub_01_task_rest_wf" / "extract" / "result_extract.pklz"
    assert extract_result.is_file()  # sub-01 failed after extraction
    extract_mtime = extract_result.stat().st_mtime_ns
    connectivity_dir = wf / "run_sub_02_task_rest_wf" / "connectivity"
    assert connectivity_dir.is_dir()
    shutil.rmtree(connectivity_dir)  # lose one node's result

    confounds.write_bytes(original)  # fix the input and resume
    rc, stdout, err = run_cli(participant_argv(fmriprep, out, work, atlas_dir, *RESUME), capsys)
    assert rc == 0, err
    assert "2 of 2 run(s) done" in stdout
    assert extract_result.stat().st_mtime_ns == extract_mtime, "sub-01 extraction was redone, not resumed"
    assert (connectivity_dir / "result_connectivity.pklz").is_file()

    clean = tmp_path / "clean"
    rc, _, err = run_cli(participant_argv(fmriprep, clean, tmp_path / "clean_work", atlas_dir, *RESUME), capsys)
    assert rc == 0, err
    assert tree(out) == tree(clean)
    resumed, fresh = hashes(out), hashes(clean)
    assert len(fresh) == 2 * (2 * 2 + 2 * 2 + 1)  # per subject: design+outliers x2 strategies, ts+relmat x2,
    # strategies
    assert resumed == fresh


# Runs nmflow and SIGKILLs it when a run's files are being moved from their .publish- folder into OUT_DIR,
# just before the move number KILL_AT (argv[1]); the rest of argv is the nmflow call.
KILLED_DURING_PUBLICATION = """
import os, signal, sys
from nmflow.cli.main import main
moves, real_replace = [], os.replace
def replace(src, dst, *args, **kwargs):
    if "/.publish-" in str(src):
        moves.append(dst)
        if len(moves) == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)
os.replace = replace
sys.exit(main(sys.argv[2:]))
"""


def test_kill_during_publication_leaves_no_partial_run(tiny_dataset, tmp_path, capsys):
    """kill -9 after 4 of a run's 14 files moved into OUT_DIR: the rest waits in a .publish- folder, which the
    next call moves in first; the rerun ends byte-identical to a run never killed (but the reports' dates)."""
    from nmflow.fileio import PUBLISHING, recover_staged

    out, work = tmp_path / "out", tmp_path / "work"
    argv = participant_argv(tiny_dataset["fmriprep"], out, work, tiny_dataset["atlas_dir"],
                            "--participant-label", "01", "02", *MINIMAL)
    assert run_cli(argv, capsys)[0] == 0
    clean, clean_tree = _data_hashes(out), tree(out)
    shutil.rmtree(out), shutil.rmtree(work)
    proc = subprocess.run([sys.executable, "-c", KILLED_DURING_PUBLICATION, "5", *argv], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NIPYPE_NO_ET": "1"})
    assert proc.returncode == -9, proc.stderr
    (pending,) = [p for p in out.iterdir() if p.name.startswith(PUBLISHING)]
    published = {p for p in tree(out) if not p.startswith(".")} - TOP_LEVEL
    waiting = {p.relative_to(pending).as_posix() for p in pending.rglob("*") if p.is_file()} - {".nmflow-lock"}
    assert len(published) == 4 and len(waiting) == 10 and not published & waiting  # killed mid-move
    (subject,) = {p.split("/")[0].split("_")[0] for p in published | waiting}
    assert published | waiting == minimal_run_outputs(subject[4:])  # nothing of the run lost
    assert recover_staged(out) == [pending]  # what the next call does first
    assert {p: h for p, h in _data_hashes(out).items() if subject in p} == {
        p: h for p, h in clean.items() if subject in p}
    rc, stdout, err = run_cli(argv, capsys)
    assert rc == 0 and "2 of 2 run(s) done" in stdout, err
    assert _data_hashes(out) == clean and tree(out) == clean_tree  # byte-identical, no hidden folder left


def test_rerun_with_same_work_dir_rewrites_deleted_outputs(tiny_dataset, tmp_path, capsys):
    argv = participant_argv(tiny_dataset["fmriprep"], tmp_path / "out", tmp_path / "work", tiny_dataset["atlas_dir"],
                            "--participant-label", "01", *MINIMAL)
    rc, _, err = run_cli(argv, capsys)
    assert rc == 0, err
    first = _data_hashes(tmp_path / "out")
    shutil.rmtree(tmp_path / "out")
    rc, stdout, err = run_cli(argv, capsys)
    assert rc == 0 and "1 of 1 run(s) done" in stdout, err
    assert _data_hashes(tmp_path / "out") == first



def test_rerun_with_same_work_dir_sees_inputs_edited_in_place(tiny_dataset, tmp_path, capsys):
    """A confounds file, then an atlas image, edited in place: the re-run with the same -w recomputes."""
    import nibabel as nib

    fmriprep = copy_subjects(tiny_dataset["fmriprep"], tmp_path / "fmriprep", ["01"])
    atlas_dir = tmp_path / "atlases"
    shutil.copytree(tiny_dataset["atlas_dir"], atlas_dir)
    argv = participant_argv(fmriprep, tmp_path / "out", tmp_path / "work", atlas_dir, *MINIMAL)
    series = _ts_path(tmp_path / "out", "01", "yeo7thin", "simple")

    def run() -> np.ndarray:
        rc, _, err = run_cli(argv, capsys)
        assert rc == 0, err
        return read_tsv(series).to_numpy(float)

    first = run()
    confounds = next((fmriprep / "sub-01" / "func").glob("*_desc-confounds_timeseries.tsv"))
    table = read_tsv(confounds)
    table["trans_x"] = np.random.default_rng(0).normal(size=len(table))
    table.to_csv(confounds, sep="\t", index=False, na_rep="n/a")
    second = run()
    assert np.abs(second - first).max() > 1e-3  # new confounds regressed: not the cached result

    image = atlas_dir / "Yeo-7_space-MNI152NLin6_res-8x8x8.nii.gz"
    img = nib.load(image)
    labels = np.asarray(img.dataobj)
    swapped = np.where(labels == 1, 2, np.where(labels == 2, 1, labels)).astype(labels.dtype)
    nib.save(nib.Nifti1Image(swapped, img.affine, img.header), image)
    third = run()
    np.testing.assert_allclose(third[:, [1, 0]], second[:, :2], atol=1e-6)  # regions 1 and 2 traded places



def test_each_call_saves_its_own_configuration(tiny_dataset, tmp_path, capsys):
    """Two participant calls into one OUT_DIR: both configurations kept, each with its command line."""
    out = tmp_path / "out"
    for sub in ("01", "02"):
        rc, _, err = run_cli(participant_argv(tiny_dataset["fmriprep"], out, tmp_path / "work",
                                              tiny_dataset["atlas_dir"], "--participant-label", sub, *MINIMAL), capsys)
        assert rc == 0, err
    logs = sorted((out / "logs").glob("nmflow-participant-*.yml"))
    assert len(logs) == 2
    labels = sorted(yaml.safe_load(p.read_text())["participant-label"] for p in logs)
    assert labels == [["01"], ["02"]]
    for log in logs:
        header = log.read_text().splitlines()[:2]
        assert header[0].startswith(f"# nmflow {nmflow.__version__}, participant level, ")
        assert header[1].startswith("# command: nmflow ") and " participant -w " in header[1]



def test_atlas_on_another_grid_is_resampled_with_a_warning(tiny_dataset, real_atlas_dir, tmp_path, capsys):
    """The toy 8 mm data with the real atlases (no 8 mm file): a warning names both grids."""
    argv = participant_argv(tiny_dataset["fmriprep"], tmp_path / "out", tmp_path / "work", real_atlas_dir,
                            "--participant-label", "01", *MINIMAL)
    rc, _, err = run_cli(argv, capsys)
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("nmflow: warning: atlas yeo7thin")]
    assert len(warnings) == 1, err
    assert "x8x8x8" not in warnings[0].split("differs")[0] and "voxels of 8x8x8 mm" in warnings[0]
    assert "resampled" in warnings[0] and "sub-01_task-rest" in warnings[0]
    rc, _, err = run_cli(participant_argv(tiny_dataset["fmriprep"], tmp_path / "out2", tmp_path / "work2",
                                          tiny_dataset["atlas_dir"], "--participant-label", "01", *MINIMAL), capsys)
    assert rc == 0 and "warning" not in err  # the toy atlas is on the data's grid


# -- config file -----------------------------------------------------------------------------------

def test_config_file_keys_are_flag_names_and_flags_override(tiny_dataset, tmp_path, capsys):
    config = tmp_path / "nmflow.yml"
    config.write_text(yaml.safe_dump({
        "metrics": ["spearman"], "denoise": "simple", "atlas": ["yeo7thin"],
        "atlas-dir": str(tiny_dataset["atlas_dir"]), "participant-label": ["01"], "min-volumes": 60,
    }))
    base = [tiny_dataset["fmriprep"], None, "participant", "--config", config, "-w", tmp_path / "work"]

    out = tmp_path / "out_file"
    rc, _, err = run_cli([out if a is None else a for a in base], capsys)
    assert rc == 0, err
    relmats = sorted(p for p in tree(out) if p.endswith("_relmat.tsv"))
    assert relmats == [f"sub-01/func/sub-01_task-rest_{YEO7_8MM}_desc-simple_"
                       "meas-spearman_relmat.tsv"]
    ts = read_tsv(out / relmats[0].replace("_meas-spearman_relmat", "_timeseries")).to_numpy(float)
    _, mat = read_relmat(out / relmats[0])
    np.testing.assert_allclose(mat, stats.spearmanr(ts).statistic, atol=1e-6)
    saved = yaml.safe_load(saved_config(out).read_text())
    assert (saved["metrics"], saved["denoise"], saved["min-volumes"]) == (["spearman"], ["simple"], 60)
    assert saved["participant-label"] == ["01"]

    out = tmp_path / "out_flag"
    rc, _, err = run_cli([out if a is None else a for a in base] + ["--metrics", "kendall"], capsys)
    assert rc == 0, err
    assert sorted(p for p in tree(out) if p.endswith("_relmat.tsv")) == [
        relmats[0].replace("meas-spearman", "meas-kendall")]
    saved = yaml.safe_load(saved_config(out).read_text())
    assert (saved["metrics"], saved["denoise"], saved["min-volumes"]) == (["kendall"], ["simple"], 60)


def test_config_file_unknown_key_is_a_one_line_error(tiny_dataset, tmp_path, capsys):
    config = tmp_path / "nmflow.yml"
    config.write_text("metricz: [pearson]\n")
    out = tmp_path / "out"
    rc, _, err = run_cli([tiny_dataset["fmriprep"], out, "participant", "--config", config, "-w", tmp_path / "work"],
                         capsys)
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nmflow: error:") and str(config) in lines[0] and "metricz" in lines[0]
    assert not out.exists()


def test_config_file_invalid_value_is_a_one_line_error(tiny_dataset, tmp_path, capsys):
    config = tmp_path / "nmflow.yml"
    config.write_text("metrics: [foo]\n")
    argv = participant_argv(tiny_dataset["fmriprep"], tmp_path / "out", tmp_path / "work", tiny_dataset["atlas_dir"],
                            "--config", config, "--participant-label", "01")
    rc, _, err = run_cli(argv, capsys)
    assert rc != 0
    assert len(error_lines(err)) == 1 and "foo" in error_lines(err)[0], err


# -- CLI plumbing ----------------------------------------------------------------------------------

def test_console_script_entry_point(tiny_dataset, tmp_path):
    exe = Path(sys.executable).with_name("nmflow")
    if not exe.exists():
        exe = Path(shutil.which("nmflow") or "nmflow")
    out = tmp_path / "out"
    argv = participant_argv(tiny_dataset["fmriprep"], out, tmp_path / "work", tiny_dataset["atlas_dir"],
                            "--participant-label", "02", *MINIMAL)
    proc = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NIPYPE_NO_ET": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "1 of 1 run(s) done" in proc.stdout
    assert tree(out) == minimal_run_outputs("02") | TOP_LEVEL


def test_relative_atlas_dir(tiny_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tiny_dataset["atlas_dir"].parent)
    argv = participant_argv(tiny_dataset["fmriprep"], tmp_path / "out", tmp_path / "work",
                            Path(tiny_dataset["atlas_dir"].name), "--participant-label", "01", *MINIMAL)
    rc, _, err = run_cli(argv, capsys)
    assert rc == 0, err


def test_input_folder_named_like_a_subcommand(tiny_dataset, tmp_path, capsys, monkeypatch):
    assert tiny_dataset["fmriprep"].name == "fmriprep"
    monkeypatch.chdir(tiny_dataset["fmriprep"].parent)
    argv = ["fmriprep", str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"),
            "--atlas-dir", str(tiny_dataset["atlas_dir"]), "--participant-label", "01", *MINIMAL]
    try:
        rc, _, err = run_cli(argv, capsys)
    except SystemExit as exc:  # argparse of the fmriprep subcommand
        rc, err = exc.code, ""
    assert rc == 0, err
    assert tree(tmp_path / "out") == minimal_run_outputs("01") | TOP_LEVEL


def test_without_a_work_folder_nothing_is_left_in_the_temporary_folder(tiny_dataset, tmp_path, capsys, monkeypatch):
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    rc, _, err = run_cli([tiny_dataset["fmriprep"], tmp_path / "out", "participant", "--participant-label", "01",
                          "--atlas-dir", tiny_dataset["atlas_dir"], *MINIMAL], capsys)
    assert rc == 0, err
    assert list((tmp_path / "out").glob("sub-01/func/*_relmat.tsv"))
    assert list(scratch.iterdir()) == []


def test_a_strategy_skipped_everywhere_is_one_warning_naming_its_runs(capsys):
    from nmflow.workflows.participant import print_summary

    reason = ("confound column 'aroma_motion_\\d+' needed by strategy 'aroma' is absent (fMRIPrep's ICA-AROMA "
              "regressors: run fMRIPrep < 23.1 with --use-aroma, or fMRIPost-AROMA)")
    skipped = {f"sub-{k:02d}_task-rest": [f"/data/sub-{k:02d}/func/sub-{k:02d}_task-rest_desc-confounds_timeseries.tsv: "
                                          f"{reason}"] for k in range(1, 13)}
    skipped["sub-03_task-rest"].append("only 41 volumes left after censoring with strategy 'scrubbing'")
    assert print_summary(Path("out"), 12, [], {}, skipped) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"nmflow: warning: strategy skipped in 12 run(s) (sub-01_task-rest, sub-02_task-rest, "
                   f"sub-03_task-rest, sub-04_task-rest, sub-05_task-rest, ...): {reason}",
                   "nmflow: warning: strategy skipped in 1 run(s) (sub-03_task-rest): only 41 volumes left after "
                   "censoring with strategy 'scrubbing'"]


def test_resource_flags_reach_the_participant_level():
    from nmflow.cli.run import build_parser
    from nmflow.participant.settings import ParticipantSettings

    args = build_parser().parse_args(["in", "out", "participant", "--mem-gb", "3", "--omp-nthreads", "1",
                                      "--plugin-args", "x"])
    args.plugin_args = {"n_procs": 4}
    settings = ParticipantSettings.from_namespace(args)
    assert settings.omp_nthreads == 1
    assert settings.engine_args == {"memory_gb": 3.0, "n_procs": 4}
    assert ParticipantSettings().engine_args == {} and ParticipantSettings().omp_nthreads is None
    cores = len(os.sched_getaffinity(0))
    assert settings.blas_threads == 1 and ParticipantSettings(nprocs=2).blas_threads == max(1, cores // 2)


def test_group_training_threads_stay_fixed_when_the_flag_is_left_out():
    from nmflow.cli.run import build_parser
    from nmflow.group.settings import GroupSettings
    from nmflow.normative.config import TrainConfig

    args = build_parser().parse_args(["in", "out", "group"])
    assert args.omp_nthreads is None and GroupSettings.from_namespace(args).omp_nthreads == TrainConfig.threads == 2
