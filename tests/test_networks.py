"""Region -> network assignments (labels table, Yeo-7 overlap, recorded, data-driven) and network-pair summaries."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nmflow.errors import NmflowInputError
from nmflow.networks import (Assignment, fc_modules, named_networks, pair_counts, pair_means, recorded_networks,
                             yeo_systems)
from nmflow.participant.atlas import resolve_atlas


def _image(path, data):
    nib.Nifti1Image(np.asarray(data, np.int16), np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(path)
    return path


@pytest.fixture
def hand_atlas(tmp_path):
    """A 4 x 2 x 3 atlas of 4 regions over a Yeo-7 image: x = 0, 1 Default (7), x = 2 Visual (1), x = 3 none."""
    yeo = np.zeros((4, 2, 3))
    yeo[:2], yeo[2] = 7, 1
    atlas_dir = tmp_path / "atlases"
    atlas_dir.mkdir()
    _image(atlas_dir / "Yeo-7-liberal_space-MNI152NLin6_res-2x2x2.nii.gz", yeo)
    labels = np.zeros((4, 2, 3))
    labels[0] = 1                  # region 1: 6 Default voxels
    labels[1, 0, :] = 2            # region 2: 3 Default voxels ...
    labels[2] = 2                  # ... and 6 Visual
    labels[3, 0, :2] = 3           # region 3: 2 voxels outside Yeo
    labels[1, 1, 0] = 4            # region 4: 1 Default voxel ...
    labels[3, 0, 2] = labels[3, 1] = 4  # ... and 4 outside Yeo: 20 % < 25 %
    return atlas_dir, _image(tmp_path / "mine.nii.gz", labels)


def test_networks_from_a_labels_table_column(tmp_path, hand_atlas):
    atlas_dir, image = hand_atlas
    table = tmp_path / "labels.tsv"
    pd.DataFrame({"index": [1, 2, 3, 4], "name": list("abcd"), "network": ["DMN", "DMN", "Motor", "Sub"]}).to_csv(
        table, sep="\t", index=False)
    atlas = resolve_atlas(f"mine={image}:{table}", atlas_dir)  # the column wins over the Yeo-7 atlas
    assert atlas.networks == ["DMN", "DMN", "Motor", "Sub"] and atlas.network_source == "the 'network' column of labels.tsv"
    pd.DataFrame({"index": [1, 2, 3, 4], "name": list("abcd"), "network": ["DMN", "", "Motor", "Sub"]}).to_csv(
        table, sep="\t", index=False)
    with pytest.raises(NmflowInputError, match="labels.tsv: line 3: region 2 has no network"):
        resolve_atlas(f"mine={image}:{table}", atlas_dir)


def test_networks_from_the_overlap_with_yeo7(tmp_path, hand_atlas):
    atlas_dir, image = hand_atlas
    table = tmp_path / "labels.tsv"
    pd.DataFrame({"index": [1, 2, 3, 4], "name": list("abcd")}).to_csv(table, sep="\t", index=False)
    # region 1: all Default; 2: 3 Default, 6 Visual; 3: outside Yeo; 4: 1 of 5 voxels in Yeo (20 %)
    atlas = resolve_atlas(f"mine={image}:{table}", atlas_dir)
    assert atlas.networks == ["Default", "Visual", "Other", "Other"]
    assert "Yeo-7-liberal_space-MNI152NLin6_res-2x2x2.nii.gz" in atlas.network_source
    assert resolve_atlas(f"mine={image}:{table}", tmp_path / "empty").networks is None  # no Yeo-7: unknown


def test_yeo_atlases_carry_their_systems(tiny_dataset):
    atlas = resolve_atlas("yeo17thick", tiny_dataset["atlas_dir"])
    assert atlas.networks == yeo_systems(17)
    assert atlas.networks[:5] == ["Visual", "Visual", "SomMot", "SomMot", "DorsAttn"]


def test_recorded_and_named_assignments(tmp_path):
    sidecar = tmp_path / "sub-01_atlas-X_timeseries.json"
    sidecar.write_text(json.dumps({"RegionNetworks": {"r1": "A", "r2": "B"}, "NetworkSource": "a column"}))
    assert recorded_networks([sidecar], ["r2", "r1"]).networks == ["B", "A"]
    assert recorded_networks([sidecar], ["r1", "r3"]) is None  # r3 not recorded
    assert named_networks(["7Networks_LH_Vis_1", "7Networks_RH_Default_2"]).networks == ["Visual", "Default"]
    assert named_networks(["R1", "R2"]) is None


def test_pair_counts_and_means_by_hand():
    # 5 regions: networks A A B B C -> codes 0 0 1 1 2; 10 connections in triu order
    codes = np.array([0, 0, 1, 1, 2])
    connection = np.arange(10)  # (0,1) (0,2) (0,3) (0,4) (1,2) (1,3) (1,4) (2,3) (2,4) (3,4)
    flagged = np.zeros(10, bool)
    flagged[[0, 1, 5, 8, 9]] = True  # A-A, A-B, A-B, B-C, B-C
    chosen, total = pair_counts(connection, flagged, codes, 5)
    np.testing.assert_array_equal(chosen, [[1, 2, 0], [2, 0, 2], [0, 2, 0]])
    np.testing.assert_array_equal(total, [[1, 4, 2], [4, 1, 2], [2, 2, 0]])
    values = np.arange(10, dtype=float)
    values[2] = np.nan
    means = pair_means(values, connection, codes, 5)
    # A-B: connections 1, 2 (NaN), 4, 5 -> (1 + 4 + 5) / 3; A-C: 3, 6; B-C: 8, 9; B-B: 7; C-C: none
    expected = np.array([[0, 10 / 3, 4.5], [10 / 3, 7, 8.5], [4.5, 8.5, np.nan]])
    np.testing.assert_allclose(means, expected)
    np.testing.assert_allclose(pair_means(np.vstack([values, 2 * values]), connection, codes, 5)[1], 2 * expected)


def test_fc_modules_recover_planted_blocks():
    rng = np.random.default_rng(0)
    truth = rng.permutation(np.arange(60) % 6)
    fc = np.where(truth[:, None] == truth[None, :], 0.6, 0.05) + rng.normal(0, 0.05, (60, 60))
    fc = (fc + fc.T) / 2
    found = fc_modules(fc, n_modules=6)
    assert found.data_driven and "not Yeo networks" in found.source
    pairs = pd.crosstab(truth, np.array(found.networks))
    assert (pairs.astype(bool).sum(axis=1) == 1).all() and found.networks[0] == "Module 1"
    assert Assignment(["b", "Other", "Default", "a"], "x").order == ["Default", "a", "b", "Other"]


@pytest.mark.parametrize("thickness", ["thin", "thick"])
def test_yeo17_names_and_systems_follow_the_real_labels(real_atlas_dir, thickness):
    """Each Yeo-17 label of the real atlas lies mostly in the Yeo-7 system its name gives (Yeo 2011's
    numbering): at least 40 % of its voxels, and within 0.02 of its best-covered system (17-network 8 is
    split evenly between ventral attention and control in the volume)."""
    from nmflow.networks import YEO17_TO_YEO7, YEO_NAMES

    a17 = resolve_atlas(f"yeo17{thickness}", real_atlas_dir, 2.0)
    a7 = resolve_atlas(f"yeo7{thickness}", real_atlas_dir, 2.0)
    labels17 = np.asarray(nib.load(a17.image).dataobj).astype(int)
    labels7 = np.asarray(nib.load(a7.image).dataobj).astype(int)
    for network, system in enumerate(YEO17_TO_YEO7, start=1):
        share = np.bincount(labels7[labels17 == network], minlength=8)[1:] / (labels17 == network).sum()
        assert share[system - 1] >= 0.4 and share[system - 1] >= share.max() - 0.02, (network, share.round(2))
    assert [name.split("_")[1] for name in YEO_NAMES[17]] == [
        "Visual", "Visual", "Somatomotor", "Somatomotor", "Dorsal", "Dorsal", "Salience+Ventral",
        "Salience+Ventral", "Limbic", "Limbic", "Control", "Control", "Control", "Temporal", "Default", "Default",
        "Default"]
