"""Atlas resolution and confound selection on real fMRIPrep confounds shipped with nilearn."""

import importlib.resources
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from nmflow.networks import YEO_NAMES
from nmflow.participant.atlas import region_centres, resolve_atlas, run_resolution
from nmflow.participant.denoise import PRESETS, load_strategy, read_confounds, select_confounds
from nmflow.errors import NmflowInputError

NILEARN_DATA = importlib.resources.files("nilearn.interfaces.fmriprep") / "data"


def test_builtin_names_resolve_in_atlas_dir(tiny_dataset):
    atlas = resolve_atlas("yeo17thick", tiny_dataset["atlas_dir"])
    assert atlas.entities == {"atlas": "Yeo2011", "seg": "17nThick"}
    assert len(atlas.names) == 17 and atlas.names[0] == "1_Visual_A"
    assert atlas.image.name.startswith("Yeo-17-liberal_")
    thin = resolve_atlas("yeo7thin", tiny_dataset["atlas_dir"])
    assert thin.image.name.startswith("Yeo-7_") and thin.entities["seg"] == "7nThin"


@pytest.mark.parametrize("res, expected", [
    ([None, "native", "2", "4"], 2.0), (["1.5"], 1.5), (["native", None], None), ([], None),
])
def test_run_resolution_is_the_first_numeric_res_entity(res, expected):
    assert run_resolution([SimpleNamespace(res=r) for r in res]) == expected


def test_real_atlas_resolution_matches_bold_resolution(real_atlas_dir):
    assert "res-4x4x4" in resolve_atlas("yeo17thin", real_atlas_dir, resolution_mm=4).image.name
    assert "res-2x2x2" in resolve_atlas("yeo17thin", real_atlas_dir, resolution_mm=2).image.name
    atlas = resolve_atlas("yeo17thick", real_atlas_dir, resolution_mm=2)
    assert atlas.names == YEO_NAMES[17] and atlas.centres_mm.shape == (17, 3)  # Yeo's names, not the folder's
    shipped = pd.read_csv(real_atlas_dir / "Yeo-17-liberal.csv", header=None).iloc[1:, 1].tolist()
    assert shipped[:4] == YEO_NAMES[17][:4] and shipped[4] == "5_Temporal_Parietal"  # (tests/test_networks.py)


def test_nilearn_layout_is_found(tmp_path, tiny_dataset):
    src = resolve_atlas("yeo7thick", tiny_dataset["atlas_dir"]).image
    dst = tmp_path / "yeo_2011" / "Yeo_JNeurophysiol11_MNI152"
    dst.mkdir(parents=True)
    (dst / "Yeo2011_7Networks_MNI152_FreeSurferConformed1mm_LiberalMask.nii.gz").write_bytes(src.read_bytes())
    atlas = resolve_atlas("yeo7thick", tmp_path)
    assert atlas.image.parent == dst and len(atlas.names) == 7


def test_user_atlas_and_its_errors(tmp_path, tiny_dataset):
    src = resolve_atlas("yeo7thick", tiny_dataset["atlas_dir"]).image
    table = tmp_path / "labels.tsv"
    pd.DataFrame({"index": range(1, 8), "name": list("abcdefg")}).to_csv(table, sep="\t", index=False)
    atlas = resolve_atlas(f"mine={src}:{table}")
    assert atlas.indices == list(range(1, 8)) and atlas.names == list("abcdefg") and atlas.entities == {"atlas": "mine"}
    pd.DataFrame({"index": [1, 2, 3], "name": ["a", "b", "c"]}).to_csv(table, sep="\t", index=False)
    with pytest.raises(NmflowInputError, match=r"labels.tsv: label\(s\) \[4, 5, 6, 7\] of .* have no name"):
        resolve_atlas(f"mine={src}:{table}")  # a region of the image is never dropped silently
    pd.DataFrame({"index": [1, 99], "name": ["a", "zz"]}).to_csv(table, sep="\t", index=False)
    with pytest.raises(NmflowInputError, match=r"label\(s\) \[99\].*not found"):
        resolve_atlas(f"mine={src}:{table}")
    with pytest.raises(NmflowInputError, match="unknown atlas"):
        resolve_atlas("yeo12thick")


def test_region_centres_are_the_voxels_centres_of_mass(tmp_path):
    """Against a loop over labels: labels not 1..n, out of order, and one without voxels (NaN)."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    data = rng.choice([0, 3, 7, 40, 41], size=(9, 8, 7)).astype(np.int16)
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = [-10, 5, 7]
    image, table = tmp_path / "a.nii.gz", tmp_path / "a.tsv"
    nib.save(nib.Nifti1Image(data, affine), image)
    pd.DataFrame({"index": [41, 3, 7, 40], "name": list("abcd")}).to_csv(table, sep="\t", index=False)
    atlas = resolve_atlas(f"mine={image}:{table}")
    expected = [nib.affines.apply_affine(affine, np.argwhere(data == i).mean(axis=0)) for i in atlas.indices]
    np.testing.assert_allclose(region_centres(atlas), expected, atol=1e-12)
    data[data == 7] = 0
    nib.save(nib.Nifti1Image(data, affine), image)
    with pytest.raises(NmflowInputError):  # a named label without voxels is refused on resolving, so the
        resolve_atlas(f"mine={image}:{table}")  # NaN centre is checked on the atlas resolved before
    assert np.isnan(region_centres(atlas)[atlas.indices.index(7)]).all()


def test_offline_atlas_error_says_what_to_download(tmp_path, monkeypatch):
    from nilearn import datasets

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets, "fetch_atlas_yeo_2011", offline)
    with pytest.raises(NmflowInputError) as err:
        resolve_atlas("yeo17thin", tmp_path)
    message = str(err.value)
    assert "Yeo_JNeurophysiol11_MNI152.zip" in message and str(tmp_path) in message
    assert "Yeo-17_space-MNI152NLin6_res-2x2x2.nii.gz" in message


@pytest.mark.parametrize("name", ["test-v21_desc-confounds_timeseries.tsv", "test_desc-confounds_regressors.tsv"])
def test_presets_select_the_expected_real_columns(name):
    table = read_confounds(NILEARN_DATA / name)
    simple = select_confounds(table, PRESETS["simple"])
    motion = [f"{p}{d}{q}" for p in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
              for d in ("", "_derivative1") for q in ("", "_power2")]
    assert sorted(simple.columns) == sorted(motion + ["white_matter", "csf"])
    assert not simple.isna().any().any()
    gsr = select_confounds(table, PRESETS["gsr"])
    assert "global_signal" in gsr and gsr.shape[1] == 27
    compcor = select_confounds(table, PRESETS["compcor"])
    assert [c for c in compcor if c.startswith("a_comp")] == [f"a_comp_cor_0{i}" for i in range(5)]
    if "aroma_motion_01" in table:
        assert select_confounds(table, PRESETS["aroma"]).filter(like="aroma").shape[1] == table.filter(
            regex=r"^aroma_motion_\d+$").shape[1] > 0
    else:
        with pytest.raises(NmflowInputError, match="aroma_motion"):
            select_confounds(table, PRESETS["aroma"], name)


def test_user_strategy_yaml(tmp_path):
    path = tmp_path / "mine.yml"
    path.write_text("name: motion6\nconfounds: ['trans_[xyz]', 'rot_[xyz]']\nscrub: true\n")
    strategy = load_strategy(str(path))
    table = read_confounds(NILEARN_DATA / "test-v21_desc-confounds_timeseries.tsv")
    assert strategy.scrub and list(select_confounds(table, strategy).columns) == [
        "trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    path.write_text("name: bad name\nconfounds: [csf]\n")
    with pytest.raises(NmflowInputError, match="alphanumeric"):
        load_strategy(str(path))
    with pytest.raises(NmflowInputError, match="unknown denoising strategy"):
        load_strategy("aggressive")


def test_first_row_nans_of_derivatives_are_filled_with_column_mean():
    table = read_confounds(NILEARN_DATA / "test-v21_desc-confounds_timeseries.tsv")
    design = select_confounds(table, PRESETS["simple"])
    col = table["trans_x_derivative1"]
    assert np.isnan(col.iloc[0]) and design["trans_x_derivative1"].iloc[0] == pytest.approx(col.mean())
