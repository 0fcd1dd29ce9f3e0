"""`nmflow ... participant|group --analysis prepost` end to end on a small simulated stimulus study.

Expected names are spelled out here, and the numbers are recomputed from the
written files with NumPy/SciPy (ΔFC from the network time series, the
Crawford-Howell test from the ΔFC relmats), independently of the package.
"""

import io
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers.browser import load_page, missing_links, screenshot
from helpers.manifest import assert_matches_manifest
from helpers.participant import error_lines, read_relmat, read_tsv, run_cli, tree
from scipy import stats

from nmflow.simulate.prepost import PrepostSimulationSettings, simulate_prepost_dataset

SETTINGS = PrepostSimulationSettings(n_controls=3, n_patients=1, n_volumes=240, effect=4.0, common_effect=2.0,
                                     n_changed=2, n_common=1, seed=0)
ONSET = 120.0  # the middle of 240 volumes at TR 1 s
ATLAS = "space-MNI152NLin6Asym_atlas-Yeo2011_seg-17nThick_res-8"
RESOLUTION = ("res-8 of the input BOLD in MNI152NLin6Asym space (its voxels: 8x8x8 mm); the atlas labels were "
              "sampled on that grid")
METRICS = ("pearson", "lwcorrelation", "spearman", "kendall")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepost")
    truth = simulate_prepost_dataset(root / "fmriprep", SETTINGS)
    return {"root": root, "fmriprep": root / "fmriprep", "atlas_dir": truth / "atlases"}


@pytest.fixture(scope="module")
def participant(study):
    # sub-02 has no events.tsv: --stimulus-onset/--stimulus-duration stand in for it
    (study["fmriprep"] / "sub-02" / "func" / "sub-02_task-rest_events.tsv").unlink()
    out = study["root"] / "out"
    rc, stdout, stderr = run_cli([study["fmriprep"], out, "participant", "--analysis", "prepost", "--atlas-dir",
                                  study["atlas_dir"], "-w", study["root"] / "work", "--stimulus-onset", ONSET,
                                  "--stimulus-duration", SETTINGS.duration])
    assert rc == 0, stderr
    assert "4 of 4 run(s) done" in stdout
    return out


@pytest.fixture(scope="module")
def group(study, participant):
    rc, stdout, stderr = run_cli([study["fmriprep"], participant, "group", "--analysis", "prepost", "-w",
                                  study["root"] / "work_group"])
    assert rc == 0, stderr
    assert "1 case(s) vs 3 controls" in stdout
    return participant / "group"


def _run_outputs(sub: str) -> set[str]:
    s = f"sub-{sub}"
    func, fig = f"{s}/func/{s}_task-rest", f"{s}/figures/{s}_task-rest"
    names = {f"{s}_task-rest_desc-prepost.html", f"{fig}_desc-glm_design.png", f"{fig}_stat-rsquare_statmap.png",
             f"{fig}_desc-prepost_segments.png", f"{fig}_atlas-Yeo2011_seg-17nThick_desc-delta_relmat.png",
             f"{fig}_atlas-Yeo2011_seg-17nThick_desc-deltafdr_stat-z_statmap.png"}
    for stem in ("desc-stimulus_events", "desc-glm_design", "desc-prepost_segments"):
        names |= {f"{func}_{stem}.tsv", f"{func}_{stem}.json"}
    names |= {f"{func}_space-MNI152NLin6Asym_res-8_stat-rsquare_statmap.{e}" for e in ("nii.gz", "json")}
    for segment in ("pre", "post"):
        names |= {f"{func}_{ATLAS}_desc-{segment}_timeseries.{e}" for e in ("tsv", "json")}
        names |= {f"{func}_{ATLAS}_desc-{segment}_stat-r_statmap.{e}" for e in ("nii.gz", "json")}
    for desc, stat in (("delta", "z"), ("delta", "p"), ("deltafdr", "z")):
        names |= {f"{func}_{ATLAS}_desc-{desc}_stat-{stat}_statmap.{e}" for e in ("nii.gz", "json")}
    for segment in ("pre", "post", "delta"):
        for metric in METRICS:
            names |= {f"{func}_{ATLAS}_desc-{segment}_meas-{metric}_relmat.{e}" for e in ("tsv", "json")}
    return names


def test_participant_outputs_and_values(participant):
    written = tree(participant)
    views = {p for p in written if p.endswith("_statmap.html")}
    calls = {p for p in written if p.startswith("logs/nmflow-participant-<call>.")}
    expected = set().union(*(_run_outputs(f"{k:02d}") for k in range(1, 5)))
    expected |= {"dataset_description.json", ".bidsignore", "logs/CITATION.md"}
    assert written - views - calls == expected and calls == {"logs/nmflow-participant-<call>.yml",
                                                             "logs/nmflow-participant-<call>.log"}
    # BIDS: a res- entity needs the sidecar's Resolution (the simulated BOLD's 8 mm voxels); none without one
    sidecars = [p for p in written if p.endswith(".json") and p.startswith("sub-")]
    for name in sidecars:
        meta = json.loads((participant / name).read_text())
        assert meta.get("Resolution") == (RESOLUTION if "_res-8_" in name else None), name
    assert sum("_res-8_" in name for name in sidecars) >= 4 * 3  # time series, relmats, statmaps of each run
    for sub, source in (("02", "--stimulus-onset"), ("04", "sub-04_task-rest_events.tsv")):
        path = participant / f"sub-{sub}" / "func" / f"sub-{sub}_task-rest_desc-stimulus_events"
        events = read_tsv(path.with_suffix(".tsv"))
        assert list(events.onset) == [ONSET] and list(events.duration) == [SETTINGS.duration]
        assert json.loads(path.with_suffix(".json").read_text())["StimulusSource"] == source
    func = participant / "sub-04" / "func"
    segments = read_tsv(func / "sub-04_task-rest_desc-prepost_segments.tsv")
    # PRE: t < 120 - 20 s; POST: t >= 120 + 10 + 20 s; censored: non-steady-state and (gsr scrubs) high motion
    censored = segments.censored.to_numpy() == 1
    expected = np.where(segments.time < 100, "pre", np.where(segments.time >= 150, "post", "transition"))
    np.testing.assert_array_equal(segments.segment, np.where(censored, "censored", expected))
    assert censored[:2].all() and 5 < censored.sum() < 60  # 2 non-steady-state volumes, a few high-FD ones
    n_pre, n_post = int((segments.segment == "pre").sum()), int((segments.segment == "post").sum())
    design = read_tsv(func / "sub-04_task-rest_desc-glm_design.tsv")
    assert design.columns[0] == "stimulus" and "constant" in design.columns and len(design) == 240
    # ΔFC = Fisher z of POST's Pearson minus PRE's, from the written network time series
    pre = read_tsv(func / f"sub-04_task-rest_{ATLAS}_desc-pre_timeseries.tsv").to_numpy(float)
    post = read_tsv(func / f"sub-04_task-rest_{ATLAS}_desc-post_timeseries.tsv").to_numpy(float)
    assert pre.shape == (n_pre, 17) and post.shape == (n_post, 17)
    nodes, delta = read_relmat(func / f"sub-04_task-rest_{ATLAS}_desc-delta_meas-pearson_relmat.tsv")
    expected = np.arctanh(np.clip(np.corrcoef(post.T), -1 + 1e-7, 1 - 1e-7)) - \
        np.arctanh(np.clip(np.corrcoef(pre.T), -1 + 1e-7, 1 - 1e-7))
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(delta, expected, atol=1e-6)
    _, kendall = read_relmat(func / f"sub-04_task-rest_{ATLAS}_desc-pre_meas-kendall_relmat.tsv")
    assert kendall[0, 5] == pytest.approx(stats.kendalltau(pre[:, 0], pre[:, 5]).statistic, abs=1e-8)
    # seed maps: 17 seeds, thresholded z = z where the BH q < 0.05 (SciPy's false_discovery_control)
    import nibabel as nib

    z = np.asarray(nib.load(func / f"sub-04_task-rest_{ATLAS}_desc-delta_stat-z_statmap.nii.gz").dataobj)
    p = np.asarray(nib.load(func / f"sub-04_task-rest_{ATLAS}_desc-delta_stat-p_statmap.nii.gz").dataobj)
    fdr = np.asarray(nib.load(func / f"sub-04_task-rest_{ATLAS}_desc-deltafdr_stat-z_statmap.nii.gz").dataobj)
    assert z.shape[3] == 17
    inside = np.asarray(nib.load(next(participant.parent.glob("fmriprep/sub-04/func/*brain_mask*"))).dataobj) > 0
    seed = 15
    np.testing.assert_allclose(p[..., seed][inside], 2 * stats.norm.sf(np.abs(z[..., seed][inside])), rtol=1e-4,
                               atol=1e-6)
    keep = stats.false_discovery_control(p[..., seed][inside].astype(float)) < 0.05
    np.testing.assert_array_equal(fdr[..., seed][inside] != 0, keep)
    sidecar = json.loads((func / f"sub-04_task-rest_{ATLAS}_desc-delta_stat-z_statmap.json").read_text())
    assert sidecar["Seeds"] == nodes
    assert "Crawford" not in (participant / "logs" / "CITATION.md").read_text()
    assert "Glover" in (participant / "logs" / "CITATION.md").read_text()


def test_participant_outputs_keep_their_bytes(participant):
    assert_matches_manifest(participant, "prepost_participant", leave_out=("group/",))


def test_group_outputs_keep_their_bytes(group):
    assert_matches_manifest(group, "prepost_group")


def test_group_single_case_table_is_crawford_howell_on_delta_fc(participant, group):
    table = read_tsv(group / "atlas-Yeo2011_seg-17nThick_desc-prepost_meas-spearman_singlecase.tsv")
    deltas = {}
    for sub in ("01", "02", "03", "04"):
        _, matrix = read_relmat(participant / f"sub-{sub}" / "func" /
                                f"sub-{sub}_task-rest_{ATLAS}_desc-delta_meas-spearman_relmat.tsv")
        deltas[sub] = matrix[np.triu_indices(17, 1)]
    controls = np.array([deltas[s] for s in ("01", "02", "03")])
    mean, sd, n = controls.mean(0), controls.std(0, ddof=1), 3
    t = (deltas["04"] - mean) / (sd * np.sqrt((n + 1) / n))
    assert list(table.participant_id.unique()) == ["sub-04"] and len(table) == 136
    np.testing.assert_allclose(table.t, t, rtol=1e-6)
    np.testing.assert_allclose(table.p, 2 * stats.t.sf(np.abs(t), n - 1), rtol=1e-6)
    np.testing.assert_allclose(table.p_less, stats.t.cdf(t, n - 1), rtol=1e-6)
    np.testing.assert_allclose(table.z_cc, (deltas["04"] - mean) / sd, rtol=1e-6)
    np.testing.assert_allclose(table.q, stats.false_discovery_control(table.p), rtol=1e-6)
    assert (table.z_cc_low < table.z_cc).all() and (table.z_cc < table.z_cc_high).all()
    assert (table.df == 2).all() and (table.n_controls == 3).all()
    subjects = read_tsv(group / "desc-prepost_subjects.tsv")
    assert list(subjects.role) == ["case", "control", "control", "control"]
    assert {p.name for p in group.iterdir()} >= {"prepost_report.html", "figures", "CITATION.md"}
    assert "Crawford & Garthwaite" in (group / "CITATION.md").read_text()


def test_reports_render_in_chromium(participant, group, tmp_path):
    from PIL import Image

    for page in (participant / "sub-04_task-rest_desc-prepost.html", group / "prepost_report.html"):
        loaded = load_page(page)
        assert not loaded.errors and not missing_links(page, loaded.dom), page.name
        pixels = np.asarray(Image.open(screenshot(page, tmp_path / f"{page.stem}.png")).convert("L"), dtype=float)
        assert pixels.std() > 10  # not a blank page
    text = (participant / "sub-04_task-rest_desc-prepost.html").read_text()
    for figure in ("desc-glm_design.png", "stat-rsquare_statmap.png", "desc-prepost_segments.png",
                   "desc-delta_relmat.png", "desc-deltafdr_stat-z_statmap.png"):
        assert "sub-04/figures/sub-04_task-rest_" in text and figure in text
    assert "figures/prepost_sub-04_t.png" in (group / "prepost_report.html").read_text()



def _section(page: str, name: str) -> str:
    start = page.index(f'<section id="{name}">')
    return page[start:page.index("</section>", start)]


def test_stimulus_pages_have_methods_references_about_and_words(participant, group):
    run = (participant / "sub-04_task-rest_desc-prepost.html").read_text()
    cases = (group / "prepost_report.html").read_text()
    for page, link, what in ((run, 'href="logs/CITATION.md"', "general linear model"),
                             (cases, 'href="CITATION.md"', "Crawford-Howell modified t-test")):
        assert what in _section(page, "methods") and link in _section(page, "methods")
        assert "Benjamini Y, Hochberg Y (1995)" in _section(page, "references")
        assert "<td>nilearn</td>" in _section(page, "about") and "<td>nmflow</td>" in _section(page, "about")
    assert (participant / "logs" / "CITATION.md").exists() and (group / "CITATION.md").exists()
    # the single-case table in words (the report shows its significant rows; here every row of the case)
    from nmflow.reports.prepost import significant_table

    published = pd.concat([pd.read_csv(group / f"atlas-Yeo2011_seg-17nThick_desc-prepost_meas-{m}_singlecase.tsv",
                                       sep="\t").assign(meas=m) for m in METRICS])
    rows = published[published.participant_id == "sub-04"]
    shown = significant_table(rows)
    assert list(shown.columns[:4]) == ["Metric", "Connection", "Case ΔFC", "Controls' mean ΔFC"]
    assert not any("_" in c for c in shown.columns)
    words = [re.sub(r"^\d+_", "", a).replace("_", " ").replace("+", "/") + " – "
             + re.sub(r"^\d+_", "", b).replace("_", " ").replace("+", "/")
             for a, b in rows.connection.str.split("__")]
    assert shown.Connection.tolist() == words and "Somatomotor A – Somatomotor B" in words
    np.testing.assert_array_equal(shown["Case ΔFC"], rows.case_delta)
    n_significant = int(rows.significant.sum())
    assert f"Significant connections ({n_significant})" in _section(cases, "sub04")
    assert "__" not in _section(cases, "sub04") and "case_delta" not in cases
    seeds = pd.read_html(io.StringIO(_section(run, "seeds")))[0]
    assert list(seeds.columns) == ["Seed network", "Voxels up", "Voxels down", "Largest |z|"]
    assert "Somatomotor A" in set(seeds["Seed network"])


def test_r_square_colours_span_the_data_not_0_to_1(tmp_path):
    """R² between 0.89 and 0.999 (confounds explaining most of a signal): the bar spans the data, and the
    slices show many colours instead of one."""
    import nibabel as nib
    from PIL import Image

    from nmflow.reports.prepost import r_square_figure, r_square_range

    rng = np.random.default_rng(0)
    values = rng.uniform(0.89, 0.999, size=(12, 12, 6))
    low, high = r_square_range(values.ravel())
    assert low == pytest.approx(np.percentile(values, 1)) and high == pytest.approx(np.percentile(values, 99))
    assert 0.89 < low < 0.9 and 0.99 < high < 0.999
    assert r_square_range(np.full(50, 0.5)) == pytest.approx((0.4995, 0.5005))  # one value: a band of 0.001
    png = r_square_figure(tmp_path / "r2.png", nib.Nifti1Image(values, np.eye(4)))
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    colours = {tuple(c) for c in pixels if c.max() - c.min() > 40}  # the coloured (not grey) pixels
    assert len(colours) > 50


def test_bad_input_fails_each_run_alone_and_writes_nothing(study, participant, tmp_path):
    data = tmp_path / "fmriprep"
    shutil.copytree(study["fmriprep"], data)
    func = {s: data / f"sub-{s}" / "func" for s in ("01", "02", "03", "04")}
    (func["01"] / "sub-01_task-rest_events.tsv").write_text("onset\tduration\n300\t10\n")  # after the run's end
    (func["03"] / "sub-03_task-rest_events.tsv").write_text("start\tlength\n120\t10\n")  # malformed
    (func["04"] / "sub-04_task-rest_events.tsv").unlink()  # no events and no --stimulus-onset
    assert not (func["02"] / "sub-02_task-rest_events.tsv").exists()  # removed by the participant fixture
    (func["02"] / "sub-02_task-rest_events.tsv").write_text("onset\tduration\n20\t10\n")  # PRE: 0 volumes
    out = tmp_path / "out"
    rc, stdout, stderr = run_cli([data, out, "participant", "--analysis", "prepost", "--atlas-dir", study["atlas_dir"],
                                  "-w", tmp_path / "work"])
    assert rc == 1 and "0 of 4 run(s) done" in stdout
    lines = error_lines(stderr)  # one line per run, in run order
    assert len(lines) == 4 and all(f"sub-0{k + 1}_task-rest: " in line for k, line in enumerate(lines))
    assert "sub-01_task-rest_events.tsv: stimulus at 300-310 s" in lines[0] and "outside the run (0-240 s" in lines[0]
    assert "segment too short: PRE has 0" in lines[1] and "--min-volumes 50" in lines[1]
    assert "sub-03_task-rest_events.tsv: events file lacks the column(s) onset, duration" in lines[2]
    assert "no events.tsv found and no --stimulus-onset" in lines[3]
    assert not [p for p in tree(out) if p.startswith("sub-")]  # no partial outputs


def test_fewer_than_three_controls_is_an_error_with_nothing_written(study, participant, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(participant, out, ignore=shutil.ignore_patterns("group"))
    rc, _, stderr = run_cli([study["fmriprep"], out, "group", "--analysis", "prepost", "--participant-label", "01",
                             "02", "04"])
    assert rc == 1
    assert error_lines(stderr) == [f"nmflow: error: {study['fmriprep'] / 'participants.tsv'}: 2 control(s) with a "
                                   "ΔFC (group 'control'); the single-case test needs at least 3"]
    assert not (out / "group").exists() and not [p for p in out.iterdir() if p.name.startswith(".staging")]
    elsewhere = tmp_path / "elsewhere"
    rc, _, stderr = run_cli([study["fmriprep"], elsewhere, "group", "--analysis", "prepost"])
    assert rc == 1 and error_lines(stderr) == [f"nmflow: error: {elsewhere}: no participant-level outputs: run "
                                               "'participant --analysis prepost' first"]
    (out / "logs" / "nmflow-participant-19700101T000000-abcdef.yml").write_text("denoise: [simple]\n")  # normative
    rc, _, stderr = run_cli([study["fmriprep"], out, "group", "--analysis", "prepost"])
    assert rc == 1 and "holds the outputs of the normative analysis (nmflow-participant-19700101" in stderr
    (out / "logs" / "nmflow-participant-19700101T000000-abcdef.yml").unlink()
    rc, _, stderr = run_cli([study["fmriprep"], out, "group"])  # --analysis prepost forgotten
    assert rc == 1 and error_lines(stderr) == [
        f"nmflow: error: {out}: holds the outputs of the prepost analysis ({sorted((out / 'logs').glob('*.yml'))[0].name})"
        ": this folder holds a stimulus study: pass --analysis prepost"]
    assert not (out / "group").exists()
