"""Connectivity from other pipelines (``--connectivity-dir``, ``--matrix-dir``, XCP-D's ``--timeseries-dir``).

The XCP-D fixture follows XCP-D's own writers and output documentation (PennLINC/xcp_d):
- names: docs/outputs.rst, "Functional timeseries and connectivity matrices": 0.5-0.6 write
  ``<source_entities>_space-<label>_atlas-<label>_measure-pearsoncorrelation_conmat.tsv`` and
  ``..._atlas-<label>_timeseries.tsv``; 0.7-0.14 write
  ``<source_entities>_space-<label>_seg-<label>_stat-pearsoncorrelation_relmat.tsv`` and
  ``..._stat-mean_timeseries.tsv``, CIFTI ones ``space-fsLR_seg-<label>_den-91k_...``; 26.x write
  ``atlas-<label>`` instead of ``seg-<label>`` (CIFTI: ``space-fsLR_atlas-<label>_den-91k_...``);
  ``desc-<INT>volumes`` relmats with ``--create-matrices``; ``stat-coverage_bold.tsv`` beside them;
- content: xcp_d/interfaces/connectivity.py: the time series is
  ``DataFrame(ts, columns=node_labels).to_csv(sep='\\t', na_rep='n/a', index=False)`` (a parcel below the
  coverage threshold is a column of n/a), the relmat ``timeseries_df.corr().to_csv(sep='\\t', na_rep='n/a',
  index_label='Node')`` (a header row of names, a first column ``Node`` of the same names), the coverage
  ``to_csv(sep='\\t', na_rep='n/a', index_label='Node')`` with one column ``coverage``;
  CiftiToTSV writes the ptseries-derived TSVs the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.badinput import message_line
from helpers.group import make_cohort
from helpers.participant import run_cli, tree
from helpers.realdata import ABIDE, abide_participants, write_abide_timeseries

from nmflow.bids_io import write_relmat
from nmflow.errors import NmflowInputError
from nmflow.group.external import collect_bids_relmats, collect_matrix_dir, read_matrix
from nmflow.group.features import collect_timeseries, model_features

ATLAS = "4S156Parcels"
MISSING = (2, 4)  # subject index, region index: a parcel below XCP-D's coverage threshold (all n/a)


@pytest.fixture(scope="module")
def cohort():
    return make_cohort(n_controls=16, patients=(("disorderA", 8),), n_networks=7, n_volumes=80, seed=3,
                       keep_timeseries=True, estimate_d=False)


def _series(cohort, k: int) -> pd.DataFrame:
    table = pd.DataFrame(cohort.timeseries["simple"][k], columns=cohort.regions)
    if k == MISSING[0]:
        table[cohort.regions[MISSING[1]]] = np.nan
    return table


def _reference(cohort) -> np.ndarray:
    """Fisher z of each subject's Pearson r (numpy), upper triangle; NaN for the missing parcel's connections."""
    rows, cols = np.triu_indices(len(cohort.regions), 1)
    out = []
    for k in range(len(cohort.subjects)):
        r = np.corrcoef(cohort.timeseries["simple"][k], rowvar=False)
        if k == MISSING[0]:
            r[MISSING[1], :] = r[:, MISSING[1]] = np.nan
        out.append(np.arctanh(np.clip(r[rows, cols], -1 + 1e-7, 1 - 1e-7)))
    return np.array(out)


def write_xcpd(cohort, root: Path, version: str = "0.14", cifti: bool = False, subjects=None) -> None:
    """An XCP-D output folder of the cohort (names and TSV layout as XCP-D writes them, see the module doc)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "XCP-D output", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "xcp_d", "Version": version}]}))
    old = version in ("0.5", "0.6")  # atlas-, measure-, _conmat and no stat-mean before 0.7
    parcels = f"seg-{ATLAS}" if version.startswith("0.") and not old else f"atlas-{ATLAS}"
    space = f"space-fsLR_{parcels}_den-91k" if cifti else f"space-MNI152NLin6Asym_{parcels}"
    for k, pid in enumerate(cohort.subjects.participant_id):
        if subjects is not None and k not in subjects:
            continue
        folder = root / pid / "func"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{pid}_task-rest_{space}"
        series = _series(cohort, k)
        timeseries, relmat = ((f"{stem}_timeseries.tsv", f"{stem}_measure-pearsoncorrelation_conmat.tsv") if old
                              else (f"{stem}_stat-mean_timeseries.tsv", f"{stem}_stat-pearsoncorrelation_relmat.tsv"))
        series.to_csv(folder / timeseries, sep="\t", na_rep="n/a", index=False)
        series.corr().to_csv(folder / relmat, sep="\t", na_rep="n/a", index_label="Node")
        pd.DataFrame({"coverage": series.notna().all().astype(np.float32)}, index=series.columns).to_csv(
            folder / f"{stem}_stat-coverage_bold.tsv", sep="\t", na_rep="n/a", index_label="Node")


def test_xcpd_relmats_give_the_fisher_z_of_the_matrices_written(cohort, tmp_path):
    write_xcpd(cohort, tmp_path / "xcpd")
    sets = collect_bids_relmats(tmp_path / "xcpd")
    (variant, fs), = sets.items()
    assert variant.label == f"seg-{ATLAS}_meas-pearson"
    assert fs.subjects == [p[4:] for p in cohort.subjects.participant_id]
    assert fs.regions == list(cohort.regions)
    reference = _reference(cohort)
    np.testing.assert_array_equal(np.isnan(model_features(fs)), np.isnan(reference))
    np.testing.assert_allclose(model_features(fs), reference, rtol=0, atol=1e-12, equal_nan=True)
    assert np.isnan(model_features(fs)[MISSING[0]]).sum() == len(cohort.regions) - 1
    # the same folder as --timeseries-dir: FC computed here equals XCP-D's matrices
    computed, _ = collect_timeseries(tmp_path / "xcpd", ["pearson"])
    np.testing.assert_allclose(model_features(computed[variant]), reference, atol=1e-12, equal_nan=True)


def test_xcpd_26_cifti_and_exact_volume_matrices(cohort, tmp_path):
    write_xcpd(cohort, tmp_path / "xcpd", version="26.1.1", cifti=True)
    extra = tmp_path / "xcpd" / "sub-01" / "func" / f"sub-01_task-rest_space-fsLR_atlas-{ATLAS}_den-91k_stat-" \
                                                    "pearsoncorrelation_desc-60volumes_relmat.tsv"
    _series(cohort, 0).iloc[:60].corr().to_csv(extra, sep="\t", na_rep="n/a", index_label="Node")
    sets = collect_bids_relmats(tmp_path / "xcpd")
    assert sorted(v.label for v in sets) == [f"atlas-{ATLAS}_desc-60volumes_meas-pearson",
                                             f"atlas-{ATLAS}_meas-pearson"]
    full = next(fs for v, fs in sets.items() if v.desc is None)
    np.testing.assert_allclose(model_features(full), _reference(cohort), atol=1e-12, equal_nan=True)
    computed, _ = collect_timeseries(tmp_path / "xcpd", ["pearson"])  # the ptseries-derived time series
    np.testing.assert_allclose(model_features(computed[full.variant]), _reference(cohort), atol=1e-12,
                               equal_nan=True)


def test_xcpd_06_conmat(cohort, tmp_path):
    write_xcpd(cohort, tmp_path / "xcpd", version="0.6")
    assert sorted((tmp_path / "xcpd").rglob("*_conmat.tsv"))[0].name == \
        f"sub-01_task-rest_space-MNI152NLin6Asym_atlas-{ATLAS}_measure-pearsoncorrelation_conmat.tsv"
    (variant, fs), = collect_bids_relmats(tmp_path / "xcpd").items()
    assert variant.label == f"atlas-{ATLAS}_meas-pearson"
    np.testing.assert_allclose(model_features(fs), _reference(cohort), atol=1e-12, equal_nan=True)
    computed, _ = collect_timeseries(tmp_path / "xcpd", ["pearson"])  # its atlas-X_timeseries.tsv
    np.testing.assert_allclose(model_features(computed[variant]), _reference(cohort), atol=1e-12, equal_nan=True)


def test_nmflow_meas_relmats_and_runs_averaged(cohort, tmp_path):
    """A meas- relmat (nmflow, BEP017) is read too; a subject's two runs are averaged."""
    r = [np.corrcoef(cohort.timeseries["simple"][k], rowvar=False) for k in (0, 1)]
    for run, matrix in enumerate(r, start=1):
        path = (tmp_path / "d" / "sub-01" / "func"
                / f"sub-01_task-rest_run-{run}_atlas-Yeo_desc-gsr_meas-spearman_relmat.tsv")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_relmat(path, matrix, list(cohort.regions))
    (variant, fs), = collect_bids_relmats(tmp_path / "d").items()
    assert (variant.label, fs.n_runs) == ("atlas-Yeo_desc-gsr_meas-spearman", [2])
    rows, cols = np.triu_indices(7, 1)
    np.testing.assert_allclose(fs.features[0], (r[0][rows, cols] + r[1][rows, cols]) / 2, atol=1e-9)


def _write_matrices(cohort, folder: Path) -> np.ndarray:
    """One r matrix per subject in three forms (CSV with names, TSV without, NPY); returns their Fisher z."""
    folder.mkdir(parents=True)
    reference = []
    for k, pid in enumerate(cohort.subjects.participant_id):
        r = np.corrcoef(cohort.timeseries["simple"][k], rowvar=False)
        z = np.arctanh(np.clip(r, -1 + 1e-7, 1 - 1e-7))
        reference.append(z[np.triu_indices(7, 1)])
        if k % 3 == 0:
            pd.DataFrame(r, index=cohort.regions, columns=cohort.regions).to_csv(folder / f"{pid}_conn.csv")
        elif k % 3 == 1:
            np.savetxt(folder / f"{pid[4:]}.tsv", r, delimiter="\t")
        else:
            np.save(folder / f"{pid}_ses-1_fc.npy", r)
    return np.array(reference)


def test_matrix_folder_gives_the_matrices_written(cohort, tmp_path):
    reference = _write_matrices(cohort, tmp_path / "m")
    assert {p.suffix for p in (tmp_path / "m").iterdir()} == {".csv", ".tsv", ".npy"}
    (tmp_path / "regions.txt").write_text("\n".join(cohort.regions) + "\n")
    (variant, fs), = collect_matrix_dir(tmp_path / "m", "r", tmp_path / "regions.txt").items()
    assert variant.label == "meas-pearson" and fs.regions == list(cohort.regions)
    assert fs.subjects == [p[4:] for p in cohort.subjects.participant_id]
    np.testing.assert_allclose(model_features(fs), reference, atol=1e-6)
    (_, some), = collect_matrix_dir(tmp_path / "m", "r", subjects=["sub-02", "01"]).items()  # --participant-label
    assert some.subjects == ["01", "02"] and some.regions == list(cohort.regions)  # names from 01's CSV
    np.testing.assert_allclose(model_features(some), reference[:2], atol=1e-6)
    (_, unnamed), = collect_matrix_dir(tmp_path / "m", "r", subjects=["02", "03"]).items()
    assert unnamed.regions == [f"R{k + 1}" for k in range(7)]
    # Fisher z in NPY, diagonal inf (arctanh(1)) allowed
    z_dir = tmp_path / "z"
    z_dir.mkdir()
    for k, pid in enumerate(cohort.subjects.participant_id):
        with np.errstate(divide="ignore"):
            z = np.arctanh(np.corrcoef(cohort.timeseries["simple"][k], rowvar=False))  # inf on the diagonal
        np.save(z_dir / f"{pid}.npy", z)
    (_, fz), = collect_matrix_dir(z_dir, "z").items()
    assert fz.regions == [f"R{k + 1}" for k in range(7)]
    np.testing.assert_allclose(model_features(fz), reference, atol=1e-6)


def test_read_matrix_layouts(tmp_path):
    """Header only, header + index column (any corner), none; n/a and empty cells are NaN."""
    m = np.array([[1, 0.5, np.nan], [0.5, 1, 0.2], [np.nan, 0.2, 1]])
    (tmp_path / "a.tsv").write_text("A\tB\tC\n1\t0.5\tn/a\n0.5\t1\t0.2\nn/a\t0.2\t1\n")
    (tmp_path / "b.csv").write_text(",A,B,C\nA,1,0.5,\nB,0.5,1,0.2\nC,,0.2,1\n")
    (tmp_path / "c.csv").write_text("1,0.5,NaN\n0.5,1,0.2\nNaN,0.2,1\n")
    (tmp_path / "d.tsv").write_text("11\t12\t13\n1\t0.5\t\n0.5\t1\t0.2\n\t0.2\t1\n")  # atlas indices as names
    for name, names in (("a.tsv", ["A", "B", "C"]), ("b.csv", ["A", "B", "C"]), ("c.csv", None),
                        ("d.tsv", ["11", "12", "13"])):
        got_names, got = read_matrix(tmp_path / name)
        assert got_names == names
        np.testing.assert_array_equal(got, m)


# -- bad input: one line naming the file, exit 1, nothing written -------------------------------------------------

def _matrix_rows(cohort):
    r = np.corrcoef(cohort.timeseries["simple"][5], rowvar=False)
    asym = r.copy()
    asym[1, 3] += 0.25
    inf = r.copy()
    inf[2, 6] = inf[6, 2] = np.inf
    return {  # name: (file name in the folder, what it holds, words of the message)
        "asymmetric": ("sub-06.npy", asym, ("not symmetric", "largest asymmetry 0.25")),
        "infinite": ("sub-06.npy", inf, ("infinite value off the diagonal",)),
        "not square": ("sub-06.npy", r[:, :6], ("not square", "7 rows x 6 columns")),
        "region order": ("sub-06.csv", pd.DataFrame(r, index=cohort.regions[::-1], columns=cohort.regions[::-1]),
                         ("region order differs",)),
        "fewer regions": ("sub-06.npy", r[:6, :6], ("6 regions", "not the 7")),
        "unknown subject": ("sub-99.npy", r, ("'99'", "not in participants.tsv")),
        "no subject label": ("subject 6.npy", r, ("cannot tell the subject",)),
        "not correlations": ("sub-06.npy", r * 3, ("diagonal is not 1",)),
        "repeated region": ("sub-06.csv", pd.DataFrame(r, index=[*cohort.regions[:6], cohort.regions[0]],
                                                       columns=[*cohort.regions[:6], cohort.regions[0]]),
                            ("region name(s) repeated",)),
    }


@pytest.fixture(scope="module")
def matrix_study(cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("byoc_bad")
    (root / "bids").mkdir()
    cohort.subjects.to_csv(root / "bids" / "participants.tsv", sep="\t", index=False)
    (root / "m").mkdir()
    for k, pid in enumerate(cohort.subjects.participant_id):
        np.save(root / "m" / f"{pid}.npy", np.corrcoef(cohort.timeseries["simple"][k], rowvar=False))
    pd.DataFrame(np.corrcoef(cohort.timeseries["simple"][0], rowvar=False), index=cohort.regions,
                 columns=cohort.regions).to_csv(root / "m" / "sub-01.csv")  # names the regions of the others
    (root / "m" / "sub-01.npy").unlink()
    return root


@pytest.mark.parametrize("row", ["asymmetric", "infinite", "not square", "region order", "fewer regions",
                                 "unknown subject", "no subject label", "not correlations", "repeated region"])
def test_bad_matrix_is_one_line_naming_the_file(row, cohort, matrix_study, tmp_path, capsys):
    name, content, says = _matrix_rows(cohort)[row]
    folder = tmp_path / "m"
    folder.mkdir()
    for path in (matrix_study / "m").iterdir():
        if path.stem != "sub-06":
            (folder / path.name).write_bytes(path.read_bytes())
    bad = folder / name
    if isinstance(content, pd.DataFrame):
        content.to_csv(bad)
    else:
        np.save(bad, content)
    out = tmp_path / "out"
    before = tree(folder)
    rc, _, err = run_cli([matrix_study / "bids", out, "group", "--matrix-dir", folder, "--matrix-values", "r",
                          "-w", tmp_path / "work"], capsys)
    assert rc == 1
    message_line(err, str(bad), says)
    assert not (out / "group").exists() and tree(folder) == before


def test_bad_xcpd_inputs_name_the_file(cohort, tmp_path):
    write_xcpd(cohort, tmp_path / "two", subjects=range(3))
    write_xcpd(cohort, tmp_path / "two", cifti=True, subjects=[3])
    with pytest.raises(NmflowInputError, match=r"sub-04_.*den-91k.*space-fsLR_den-91k differs from "
                                               r"space-MNI152NLin6Asym"):
        collect_bids_relmats(tmp_path / "two")
    with pytest.raises(NmflowInputError, match=r"sub-04_.*den-91k_stat-mean_timeseries.tsv: space space-fsLR_"
                                               r"den-91k differs from space-MNI152NLin6Asym"):
        collect_timeseries(tmp_path / "two", ["pearson"])
    write_xcpd(cohort, tmp_path / "odd", subjects=range(3))
    odd = next((tmp_path / "odd").rglob("sub-02_*relmat.tsv"))
    odd.rename(odd.with_name(odd.name.replace("pearsoncorrelation", "coherence")))
    with pytest.raises(NmflowInputError, match=r"sub-02_.*stat-coherence_relmat.tsv: measure 'coherence' is not"):
        collect_bids_relmats(tmp_path / "odd")


def test_cli_refuses_options_that_do_not_fit(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "bids").mkdir()
    out = tmp_path / "out"
    for extra, says in (
            (["--matrix-dir", tmp_path / "m"], "--matrix-dir needs --matrix-values"),
            (["--matrix-values", "z"], "--matrix-values describe(s) the matrices of --matrix-dir"),
            (["--connectivity-dir", tmp_path / "nowhere"], "--connectivity-dir: folder not found"),
            (["--matrix-dir", tmp_path / "m", "--matrix-values", "r", "--matrix-regions", tmp_path / "regions.txt"],
             "1 repeated")):
        (tmp_path / "regions.txt").write_text("Vis\nSomMot\nVis\n")
        rc, _, err = run_cli([tmp_path / "bids", out, "group", *extra], capsys)
        assert rc == 1
        message_line(err, "", (says,))
    inside = tmp_path / "m" / "out"
    rc, _, err = run_cli([tmp_path / "bids", inside, "group", "--matrix-dir", tmp_path / "m", "--matrix-values", "r"],
                         capsys)
    assert rc == 1
    message_line(err, str(inside), ("OUT_DIR is inside the input dataset",))
    assert not out.exists() and not inside.exists()


# -- end to end -----------------------------------------------------------------------------------------------------

def test_group_run_on_xcpd_relmats_and_on_the_same_matrices_as_npy(cohort, tmp_path, capsys):
    write_xcpd(cohort, tmp_path / "xcpd")
    (tmp_path / "npy").mkdir()
    for k, pid in enumerate(cohort.subjects.participant_id):
        np.save(tmp_path / "npy" / f"{pid}.npy", _series(cohort, k).corr().to_numpy())
    (tmp_path / "bids").mkdir()
    cohort.subjects.to_csv(tmp_path / "bids" / "participants.tsv", sep="\t", index=False)
    fast = ["--epochs", "5", "--n-bootstrap", "0", "--folds", "2"]
    rc, out, err = run_cli([tmp_path / "bids", tmp_path / "out", "group", "--connectivity-dir", tmp_path / "xcpd",
                            *fast, "-w", tmp_path / "work"], capsys)
    assert rc == 0, err
    group = tmp_path / "out" / "group"
    dev = pd.read_csv(group / f"seg-{ATLAS}_meas-pearson_deviations.tsv", sep="\t")
    assert len(dev) == len(cohort.subjects) and dev.shape[1] > 21
    assert (group / f"seg-{ATLAS}_meas-pearson_stats.tsv").is_file() and (group / "group_report.html").is_file()
    assert f"seg-{ATLAS}_meas-pearson" in out
    assert "matrices computed by another pipeline were read from its BIDS derivatives" in \
        (group / "CITATION.md").read_text()
    # a group-only call describes OUT_DIR too (its source: the pipeline's folder) and keeps its log
    desc = json.loads((tmp_path / "out" / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Name"] == "nmflow" and desc["DatasetType"] == "derivative"
    assert desc["SourceDatasets"] == [{"URL": (tmp_path / "xcpd").absolute().as_uri()}]
    log = next((tmp_path / "out" / "logs").glob("nmflow-group-*.log")).read_text()
    summary = next(line for line in out.splitlines() if line.startswith("nmflow group: "))
    assert f"Z {summary}\n" in log and "Z deviation scores ...\n" in log  # each line after its UTC time
    # the same matrices as a folder of NPY: the same deviations, under the variant meas-pearson
    (tmp_path / "regions.txt").write_text("\n".join(cohort.regions))
    rc, out, err = run_cli([tmp_path / "bids", tmp_path / "out2", "group", "--matrix-dir", tmp_path / "npy",
                            "--matrix-values", "r", "--matrix-regions", tmp_path / "regions.txt", *fast,
                            "-w", tmp_path / "work2"], capsys)
    assert rc == 0, err
    again = pd.read_csv(tmp_path / "out2" / "group" / "meas-pearson_deviations.tsv", sep="\t")
    pd.testing.assert_frame_equal(again, dev, check_exact=False, atol=1e-9)
    assert "Connectivity matrices (Pearson correlations) computed outside *nmflow* were read, one per subject." in \
        (tmp_path / "out2" / "group" / "CITATION.md").read_text()


@pytest.mark.skipif(not ABIDE.is_dir(), reason=f"real data folder {ABIDE} not present")
def test_real_cpac_matrices_match_their_time_series(tmp_path):
    """ABIDE (C-PAC, Harvard-Oxford 111 regions, constant regions in some subjects) as a folder of Fisher-z NPY:
    the features are numpy's Fisher z of the time series, and --timeseries-dir on the same subjects agrees."""
    ids = list(abide_participants().participant_id[::10])  # 50 subjects over the sites
    data = np.load(ABIDE / "ho_timeseries_f16.npz")
    (tmp_path / "m").mkdir()
    rows, cols = np.triu_indices(111, 1)
    reference = []
    for pid in ids:
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.arctanh(np.corrcoef(data[pid].astype(float), rowvar=False))  # NaN rows for constant regions
        np.save(tmp_path / "m" / f"{pid}_desc-cpac_fc.npy", z)
        reference.append(z[rows, cols])
    reference = np.array(reference)
    assert np.isnan(reference).any()  # the real data's constant regions
    (variant, fs), = collect_matrix_dir(tmp_path / "m", "z").items()
    assert fs.subjects == sorted(p[4:] for p in ids) and len(fs.regions) == 111
    order = [ids.index(f"sub-{s}") for s in fs.subjects]
    np.testing.assert_array_equal(np.isnan(model_features(fs)), np.isnan(reference[order]))
    np.testing.assert_allclose(model_features(fs), reference[order], atol=1e-9, equal_nan=True)
    write_abide_timeseries(tmp_path / "ts", ids)  # 5 significant digits: agreement to 1e-3
    computed, _ = collect_timeseries(tmp_path / "ts", ["pearson"])
    (other,) = computed.values()
    np.testing.assert_allclose(model_features(other), model_features(fs), atol=2e-3, equal_nan=True)
