"""The group report and the patient pages: rendered in headless Chromium, and their numbers checked."""

import re
from pathlib import Path

import lxml.html
import numpy as np
import pandas as pd
import pytest
from helpers.browser import load_page, missing_links, require_chromium, screenshot
from helpers.group import group_args, make_cohort, write_tree
from helpers.modules import MODULES, write_study
from scipy import stats as sps

from nmflow.bids_io import read_relmat
from nmflow.stats import qc_fc
from nmflow.networks import Assignment, named_networks
from nmflow.participant.atlas import YEO_NAMES
from nmflow.participant.connectivity import fisher_z, upper_triangle
from nmflow.reports.group import qc_fc_words
from nmflow.reports.group_figures import draw_circle, network_matrix, spread_labels
from nmflow.reports.html import Link, number, table
from nmflow.reports.matrix_view import full_matrix, write_matrix_page
from nmflow.reports.words import against_controls, connection_label, network_pair, region_label
from nmflow.workflows.group import run_group

VARIANT = "atlas-Yeo2011_seg-17nThick_desc-simple_meas-pearson"
PLANTED = [5, 40, 77, 100, 120]  # connections of the extreme patient, raised by 1.5 (Fisher z)
REPRS = ("np.int64", "np.float64", "np.str_", "{'", "array(")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    cohort = make_cohort(n_controls=24, patients=(("disorderA", 8), ("disorderB", 8)), motion=1.0, seed=4,
                         estimate_d=False)
    for features in cohort.features.values():
        features[24, PLANTED] += 1.5  # sub-25, the first patient
    write_tree(cohort, root / "out", root / "bids", qc=True)
    assert run_group(group_args(root / "bids", root / "out", "--n-bootstrap", "3", "--epochs", "60",
                                "--patience", "10", "--folds", "3", "--covariates", "age", "sex")) == 0
    return root


def _rendered(pages: dict[Path, list[str]]) -> list:
    """``(page, loaded)`` of every page, each checked: rendered in Chromium without errors or missing links,
    with its ``sections`` and no Python reprs."""
    out = []
    for page, sections in pages.items():
        loaded = load_page(page)
        assert not loaded.errors, loaded.errors
        assert not missing_links(page, loaded.dom), missing_links(page, loaded.dom)
        assert [s for s in sections if f'<section id="{s}">' not in loaded.dom] == []
        assert [r for r in REPRS if r in loaded.dom] == []
        out.append((page, loaded))
    return out


def _tables(page: Path) -> dict[str, list[pd.DataFrame]]:
    """The tables of each section of a page, as text (section id -> tables)."""
    out = {}
    for section in lxml.html.fromstring(page.read_text()).iter("section"):
        out[section.get("id")] = [
            pd.DataFrame([[td.text_content() for td in tr.iter("td")] for tr in t.iter("tr")][1:],
                         columns=[th.text_content() for th in t.iter("th")]) for t in section.iter("table")]
    return out


def _mean_fd(out: Path, strategy: str) -> pd.Series:
    files = sorted(out.glob(f"sub-*/func/*_desc-{strategy}_outliers.tsv"))
    return pd.Series({f.name.split("_")[0]: pd.read_csv(f, sep="\t", na_values="n/a").framewise_displacement.mean()
                      for f in files})


@pytest.mark.slow
def test_pages_render_in_chromium_with_their_sections(study, tmp_path):
    require_chromium()
    group = study / "out" / "group"
    pages = {group / "group_report.html": ["cohort", "motion", "calibration", "deviations", "flagged",
                                           "single-cases", "ranking", "combat", "notes", "subjects", "methods",
                                           "references", "about"],
             group / "patients" / "sub-25.html": ["caution", "overall", "matrix", "extremes", "single-case",
                                                  "motion", "methods", "references", "about"]}
    for page, _ in _rendered(pages):
        assert screenshot(page, tmp_path / f"{page.stem}.png", height=2000).stat().st_size > 10_000
    assert len(list((group / "patients").glob("sub-*.html"))) == 16  # one page per patient
    dom = (group / "group_report.html").read_text()
    # every existing participant report is linked, relative to the group folder; sub-40 has none
    assert dom.count('href="../sub-') == 39 and 'href="../sub-40_' not in dom
    assert 'href="patients/sub-25.html"' in dom
    citation = (group / "CITATION.md").read_text()  # the Methods section is the call's methods text
    assert "cross-fitted over" in citation and "cross-fitted over" in dom and "Crawford JR, Howell DC" in dom
    patient = (group / "patients" / "sub-25.html").read_text()  # the patient pages carry the same text
    for page, link in ((dom, 'href="CITATION.md"'), (patient, 'href="../CITATION.md"')):
        methods = page[page.index('<section id="methods">'):page.index('<section id="references">')]
        references = page[page.index('<section id="references">'):page.index('<section id="about">')]
        assert "cross-fitted over" in methods and link in methods  # CITATION.md linked, relative to the page
        assert "Crawford JR, Howell DC" in references and "Crawford JR" not in methods
        assert "<td>PyTorch</td>" in page[page.index('<section id="about">'):]
    atlas = (group / "figures" / "connectome_0.html").exists()
    assert ('src="figures/connectome_0.html"' in dom) == atlas  # interactive when the atlas image is found
    assert ('src="figures/connectome.png"' in dom) == (not atlas)


def test_patient_page_states_the_planted_extreme_in_words(study):
    group = study / "out" / "group"
    dev = pd.read_csv(group / f"{VARIANT}_deviations.tsv", sep="\t")
    controls = dev[dev.group == "control"]
    patient = dev[dev.participant_id == "sub-25"].iloc[0]
    percentile = 100 * (controls.mean_sq_z < patient.mean_sq_z).mean()
    assert percentile == 100
    text = lxml.html.fromstring((group / "patients" / "sub-25.html").read_text()).text_content()
    assert f"Overall deviation at percentile {number(patient.global_score)} of the 24 held-out controls" in text
    assert number(patient.global_score) == "100"
    z = patient.filter(like="__").to_numpy(float)
    top = int(np.argmax(np.abs(z)))
    assert top in PLANTED
    share = (controls.filter(like="__").iloc[:, top] < z[top]).mean()
    expected = (f"{connection_label(top, YEO_NAMES[17])}: connectivity higher than "
                + ("all 24 controls" if share == 1 else f"{int(100 * share)} % of controls")
                + f" (deviation z = {z[top]:+.2f})")
    assert expected in text
    assert "Research tool, not a diagnosis" in text
    runs = _tables(group / "patients" / "sub-25.html")["motion"][0]
    fd = _mean_fd(study / "out", "simple")
    assert runs["Mean FD (mm)"].tolist() == [number(fd["sub-25"])]


def test_group_report_numbers_match_direct_computations(study):
    out = study / "out"
    tables = _tables(out / "group" / "group_report.html")
    participants = pd.read_csv(study / "bids" / "participants.tsv", sep="\t").set_index("participant_id")
    fd = _mean_fd(out, "simple").reindex(participants.index)
    # motion by group: Mann-Whitney of each patient group's mean FD against the controls'
    motion = tables["motion"][0].set_index("Group")
    for group in ("disorderA", "disorderB"):
        test = sps.mannwhitneyu(fd[participants.group == group], fd[participants.group == "control"])
        assert motion.loc[group, "p"] == number(test.pvalue)
    # QC-FC of every strategy against scipy's Pearson correlation of mean FD with each connection
    qcfc = tables["motion"][1].set_index("FC")
    for strategy in ("none", "simple"):
        x = np.array([upper_triangle(read_relmat(next(out.glob(
            f"{pid}/func/*desc-{strategy}_meas-pearson_relmat.tsv")))[1]) for pid in participants.index])
        r, p = zip(*(sps.pearsonr(fd.to_numpy(), fisher_z(x[:, k])) for k in range(x.shape[1])))
        row = qcfc.loc[f"desc-{strategy}"]
        assert row["Connections with p < 0.05 (%)"] == number(100 * np.mean(np.array(p) < 0.05))
        assert row["Median |r|"] == number(np.median(np.abs(r)))
    assert float(qcfc.loc["desc-none", "Median |r|"]) > 3 * float(qcfc.loc["desc-simple", "Median |r|"])
    text = lxml.html.fromstring((out / "group" / "group_report.html").read_text()).text_content()
    assert "Before/after denoising: desc-none has" in text
    cohort = tables["cohort"][0].set_index("Group")
    assert cohort.loc["control", "Role in the model"] == "24 held-out controls"
    assert cohort.loc["all", "Subjects"] == "40"
    single = tables["single-cases"][0].set_index("Patient")
    assert single.loc["sub-25", "Overall deviation (percentile)"] == "100"


def test_qc_fc_equals_scipy_with_missing_values():
    rng = np.random.default_rng(0)
    fd, x = rng.gamma(2, 0.1, 30), rng.normal(size=(30, 6))
    x[:, 1] += 3 * fd
    x[[2, 7], 3] = np.nan
    fd[5] = np.nan
    r, p, n = qc_fc(fd, x)
    for k in range(6):
        keep = np.isfinite(fd) & np.isfinite(x[:, k])
        expected = sps.pearsonr(fd[keep], x[keep, k])
        np.testing.assert_allclose([r[k], p[k]], [expected.statistic, expected.pvalue], rtol=1e-10)
        assert n[k] == keep.sum()


def _label_boxes(fig):
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in fig.axes[0].texts]


def test_circle_labels_never_overlap():
    for n, n_edges in ((17, 1), (111, 25), (400, 25)):
        regions = [f"{k}_Default_{'long name ' * (k % 3)}{k}" for k in range(n)]
        networks = Assignment([["Visual", "Default", "Control"][k % 3] for k in range(n)], "test")
        edges = [(k, (7 * k + n // 2) % n, "#000000", 1.6) for k in range(n_edges)]
        fig = draw_circle(edges, regions, {"shared": "#000000"}, networks)
        boxes = _label_boxes(fig)
        # up to 30 regions every region is named, past it only the regions of an edge
        named = n if n <= 30 else len({k for e in edges for k in e[:2]})
        assert len(boxes) == named and min(t.get_fontsize() for t in fig.axes[0].texts) >= 5.99
        overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
        assert overlaps == []
    heights = spread_labels(np.array([1.0, 0.99, 0.98, -1.4]), 0.1, 1.3)
    assert np.all(-np.diff(heights) >= 0.1 - 1e-12) and heights.min() >= -1.3


def test_words_and_tables():
    assert region_label("8_Salience+Ventral_Attention_A") == "Salience/Ventral Attention A"
    assert region_label("7_Default_Network_Area") == "Default" and region_label("LH_Vis_1") == "LH Vis 1"
    assert connection_label(0, YEO_NAMES[17]) == "Visual A – Visual B"
    assert network_pair(Assignment(["Default", "Visual"], "test"), 0, 1) == "Visual – Default"  # summaries' order
    controls = np.arange(1, 21, dtype=float)
    assert against_controls(25.0, controls, "connectivity ") == "connectivity higher than all 20 controls"
    assert against_controls(2.5, controls) == "lower than 90 % of controls"
    html = table(pd.DataFrame({"Subject": ["sub-01"], "p": [np.float64(0.01234)], "n": [np.int64(3)],
                               "Report": [[Link("../sub-01_task-rest.html", "task-rest")]]}))
    assert re.search(r"<td class=\"num\">0\.0123</td><td class=\"num\">3</td><td><a href=\"\.\./sub-01_task-rest\.html\">", html)
    assert "none flagged" in table(pd.DataFrame({"a": []}), "none flagged")


def test_qc_fc_text_warns_when_the_shown_variant_keeps_motion():
    rows = pd.DataFrame({"FC": ["desc-none", "desc-simple", "desc-none after ComBat"],
                         "Connections with p < 0.05 (%)": [82.4, 5.15, 77.9], "Median |r|": [0.49, 0.12, 0.46]})
    (compare, _), (warning, kind) = qc_fc_words(rows, ("desc-none", "desc-none after ComBat"), "desc-none")
    assert compare.startswith("Before/after ComBat: desc-none has 82.4 % significant connections")
    assert kind == "warn" and "--variants '*desc-simple*'" in warning
    assert len(qc_fc_words(rows, ("desc-none", "desc-simple"), "desc-simple")) == 1  # no warning


def test_large_atlas_matrix_is_shown_per_network_pair():
    regions = [f"7Networks_LH_{'Vis' if k < 50 else 'Default'}_{k}" for k in range(100)]
    values = np.zeros(100 * 99 // 2)
    rows, cols = np.triu_indices(100, k=1)
    values[(rows >= 50) & (cols >= 50)] = 2.0  # within Default
    matrix, labels = network_matrix(values, np.arange(values.size), regions, named_networks(regions))
    assert labels == ["Visual", "Default"]
    np.testing.assert_allclose(matrix, [[0, 0], [0, 2]])


@pytest.fixture(scope="module")
def large_study(tmp_path_factory):
    """60 regions in 7 recorded modules (``RegionNetworks`` in the time series sidecars), 60 subjects."""
    root = tmp_path_factory.mktemp("large")
    write_study(root, 60, 60)
    assert run_group(group_args(root, root / "out", "--timeseries-dir", str(root / "ts"), "--covariates", "age",
                                "--epochs", "3", "--n-bootstrap", "0", "--folds", "2")) == 0
    return root / "out" / "group"


@pytest.mark.slow
def test_large_atlas_report_summarises_by_network_in_chromium(large_study, tmp_path):
    require_chromium()
    group = large_study
    pages = {group / "group_report.html": ["cohort", "calibration", "deviations", "flagged", "single-cases"],
             next(group.glob("patients/sub-*.html")): ["caution", "overall", "matrix", "extremes", "single-case"],
             group / "figures" / "deviations_1_full.html": ["matrix"]}
    *_, (_, loaded) = _rendered(pages)
    assert "12 px per cell" in loaded.dom  # the matrix page's script drew the matrix (60 regions: 12 px cells)
    dom = (group / "group_report.html").read_text()
    for text in ("Networks: the network of each region recorded with the time series", "Network pairs",
                 'src="figures/network_pairs_0.png"', 'href="figures/deviations_0_full.html"'):
        assert text in dom
    assert "Yeo-7 system pairs" not in dom
    assert screenshot(group / "group_report.html", tmp_path / "large.png", height=2000).stat().st_size > 10_000


def test_large_atlas_network_pairs_match_a_direct_count(large_study):
    """The report's flagged counts per network pair, against a count of the stats TSV's flagged rows over the
    planted modules (region k in module k * 7 // 60)."""
    stats = pd.read_csv(large_study / "atlas-Synth_meas-pearson_stats.tsv", sep="\t")
    flagged = stats[(stats.model == "autoencoder") & stats.flagged]
    assert len(flagged) > 5
    rows, cols = np.triu_indices(60, k=1)
    module = np.array(MODULES)[np.arange(60) * 7 // 60]
    expected = {}
    for group, c in zip(flagged.group, flagged.connection):
        a, b = sorted([module[rows[c]], module[cols[c]]], key=MODULES.index)
        expected[(f"{a} – {b}", group)] = expected.get((f"{a} – {b}", group), 0) + 1
    shown = _tables(large_study / "group_report.html")["flagged"][-1]
    assert {(r.Networks, r.Group): int(r.Flagged) for r in shown.itertuples()} == expected
    totals = {f"{a} – {a}": (module == a).sum() * ((module == a).sum() - 1) // 2 for a in MODULES}
    for r in shown.itertuples():
        if r.Networks in totals:
            assert int(r.Connections) == totals[r.Networks]


def test_network_assignment_falls_back_to_named_systems_then_modules(tmp_path):
    from types import SimpleNamespace

    from nmflow.group.features import Variant
    from nmflow.interfaces.group_report import network_assignment

    def scored(regions, features, connection):  # what network_assignment reads of a Scored record
        residuals = SimpleNamespace(features=features)
        return SimpleNamespace(regions=regions, connection=connection,
                               scores={"autoencoder": SimpleNamespace(residuals=residuals)})

    s = SimpleNamespace(timeseries_dir=None, out_dir=tmp_path)
    names = ["7Networks_LH_Vis_1", "7Networks_RH_Default_2", "7Networks_LH_Vis_3"]
    found = network_assignment(s, Variant("X", None, None, "pearson"), scored(names, np.zeros((4, 3)), np.arange(3)),
                               np.ones(4, bool))
    assert found.networks == ["Visual", "Default", "Visual"]
    rng = np.random.default_rng(1)
    truth = np.arange(40) % 7
    fc = np.where(truth[:, None] == truth[None, :], 0.8, 0.0)[np.triu_indices(40, k=1)]
    kept = np.flatnonzero(rng.random(fc.size) > 0.1)  # some connections not scored (a transferred model's)
    features = fc[kept] + rng.normal(0, 0.05, (5, kept.size))
    found = network_assignment(s, Variant("X", None, None, "pearson"),
                               scored([f"R{k}" for k in range(40)], features, kept), np.ones(5, bool))
    assert found.data_driven and pd.crosstab(truth, np.array(found.networks)).astype(bool).sum(axis=1).eq(1).all()


def test_matrix_page_holds_the_matrix_in_network_order(tmp_path):
    import base64
    import json

    regions = ["a", "b", "c", "d"]
    networks = Assignment(["Default", "Visual", "Default", "Visual"], "test")  # shown as b, d, a, c
    values = np.array([0.5, -1.25, np.nan, 2.0, 0.125, -3.5])  # (a,b) (a,c) (a,d) (b,c) (b,d) (c,d)
    matrix = full_matrix(values, np.arange(6), 4)
    page = write_matrix_page(tmp_path / "m.html", matrix, regions, networks, {}, "t", "c", 1.0, "z", ("x", "y"))
    data = json.loads(lxml.html.fromstring(page.read_text()).get_element_by_id("matrix-data").get("data-matrix"))
    assert data["labels"] == ["b", "d", "a", "c"] and data["network_of"] == ["Visual", "Visual", "Default", "Default"]
    stored = np.frombuffer(base64.b64decode(data["values"]), "<i2")
    # upper triangle of the reordered matrix: (b,d) (b,a) (b,c) (d,a) (d,c) (a,c), in hundredths, NaN -32768
    assert stored.tolist() == [12, 50, 200, -32768, -350, -125]
    assert [(b["name"], b["start"], b["stop"]) for b in data["networks"]] == [("Visual", 0, 2), ("Default", 2, 4)]
