"""Fuzzed readers: every reader of a user file, fed a mutated copy of a valid file, reads it or raises
:class:`NmflowInputError` naming that file; never another exception, never a hang.

Mutations (:func:`mutated`): bit flips, truncation, a spliced run of random bytes, random bytes alone, an
empty file, and for text files a field replaced by a value of the wrong type.  The example counts and the
CI derandomisation come from the ``nmflow`` settings profile (``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import signal
import tempfile
import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nmflow.errors import NmflowInputError

WRONG_VALUES = ["", "abc", "n/a", "nan", "inf", "-1", "0", "1e400", "[]", "{}", "null", "true", '"x"', "\x00",
                "\u00e9", "sub-", "[[[[", "'", "a: b", "= 1"]
HANG_SECONDS = 20


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, bit in flips:
        out[position % len(out)] ^= 1 << bit
    return bytes(out)


def _replace_field(text: bytes, index: int, value: str) -> bytes:
    parts = re.split(rb"([\t\n,:=\" ]+)", text)
    fields = [k for k in range(0, len(parts), 2)]
    k = fields[index % len(fields)]
    parts[k] = value.encode()
    return b"".join(parts)


def mutated(seed: bytes, text: bool = False) -> st.SearchStrategy[bytes]:
    """Mutations of ``seed`` (and, for a text file, wrong-typed fields)."""
    n = len(seed)
    ways = [
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 7)), min_size=1, max_size=4).map(
            lambda flips: _flip(seed, flips)),
        st.integers(0, n - 1).map(lambda k: seed[:k]),
        st.tuples(st.integers(0, n), st.integers(0, 64), st.binary(max_size=48)).map(
            lambda t: seed[:t[0]] + t[2] + seed[t[0] + t[1]:]),
        st.binary(max_size=400),
        st.just(b""),
    ]
    if text:
        ways.append(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(WRONG_VALUES)), min_size=1,
                             max_size=3).map(lambda edits: _apply_all(seed, edits)))
    return st.one_of(ways)


def _apply_all(seed: bytes, edits) -> bytes:
    for index, value in edits:
        seed = _replace_field(seed, index, value)
    return seed


class Hung(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS):
    def stop(signum, frame):
        raise Hung(f"reader still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def reads_or_names(read, path: Path, data: bytes, named: tuple[Path, ...] = ()) -> None:
    """Write ``data`` to ``path`` and read it: success, or an NmflowInputError naming ``path`` (or ``named``)."""
    path.write_bytes(data)
    with no_hang():
        try:
            read(path)
        except NmflowInputError as exc:
            assert exc.path in {str(p) for p in (path, *named)}, f"{exc!r} does not name {path}"


# -- seeds: small valid files --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def confounds_seed() -> bytes:
    rng = np.random.default_rng(0)
    columns = {f"{p}{s}": rng.normal(size=12) for p in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
               for s in ("", "_derivative1", "_power2", "_derivative1_power2")}
    columns.update(white_matter=rng.normal(size=12), csf=rng.normal(size=12), global_signal=rng.normal(size=12),
                   framewise_displacement=rng.uniform(0, 1, 12), std_dvars=rng.uniform(0, 2, 12),
                   non_steady_state_outlier00=np.eye(12)[0])
    table = pd.DataFrame(columns).round(3)
    table.loc[0, ["trans_x_derivative1", "rot_x_derivative1", "std_dvars"]] = np.nan  # fMRIPrep's n/a in the first row of derivatives
    return table.to_csv(sep="\t", index=False, na_rep="n/a").encode()


def read_confounds_fully(path: Path) -> None:
    from nmflow.participant.denoise import PRESETS, CleaningSettings, censoring, read_confounds, select_confounds

    table = read_confounds(path)
    select_confounds(table, PRESETS["gsr"], path)
    censoring(table, PRESETS["scrubbing"], CleaningSettings(), path)


@given(data=mutated(confounds_seed(), text=True))
def test_confounds_tsv(folder, data):
    reads_or_names(read_confounds_fully, folder / "confounds.tsv", data)


# -- images ------------------------------------------------------------------------------------------------

SHAPE = (5, 6, 5)


@pytest.fixture(scope="module")
def images(folder) -> dict[str, Path]:
    """A 4D BOLD (12 volumes), its mask and a 3-region atlas on one 5x6x5 grid, gzipped, plus the atlas TSV."""
    rng = np.random.default_rng(1)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    bold = (1000 + 10 * rng.normal(size=SHAPE + (12,))).astype(np.float32)
    labels = np.zeros(SHAPE, np.int16)
    labels[:2], labels[2:4], labels[4:] = 1, 2, 3
    files = {"bold": folder / "bold.nii.gz", "mask": folder / "mask.nii.gz", "atlas": folder / "atlas.nii.gz"}
    bold_img = nib.Nifti1Image(bold, affine)
    bold_img.header.set_xyzt_units("mm", "sec")
    bold_img.header["pixdim"][4] = 2.0
    bold_img.to_filename(files["bold"])
    nib.Nifti1Image(np.ones(SHAPE, np.uint8), affine).to_filename(files["mask"])
    nib.Nifti1Image(labels, affine).to_filename(files["atlas"])
    files["labels"] = folder / "atlas.tsv"
    files["labels"].write_text("index\tname\n1\tfront\n2\tmiddle\n3\tback\n")
    return files


def _extract(bold: Path, mask: Path, atlas_image: Path) -> None:
    from nmflow.participant.atlas import Atlas
    from nmflow.participant.parcellate import extract_signals

    extract_signals(bold, mask, [Atlas("toy", atlas_image, [1, 2, 3], ["a", "b", "c"], {"atlas": "toy"})])


@settings(max_examples=150)
@given(data=st.data())
def test_bold_nifti(folder, images, data):
    seed = images["bold"].read_bytes()
    bold = folder / "fuzzed_bold.nii.gz"
    reads_or_names(lambda p: _extract(p, images["mask"], images["atlas"]), bold, data.draw(mutated(seed)),
                   (images["mask"],))


@settings(max_examples=150)
@given(data=st.data())
def test_bold_nifti_header_uncompressed(folder, images, data):
    raw = gzip.decompress(images["bold"].read_bytes())
    header = data.draw(mutated(raw[:352]))  # the header only: the data of a .nii have no checksum
    bold = folder / "fuzzed_bold.nii"
    reads_or_names(lambda p: _extract(p, images["mask"], images["atlas"]), bold, header + raw[352:],
                   (images["mask"],))


@settings(max_examples=150)
@given(data=st.data())
def test_mask_nifti(folder, images, data):
    mask = folder / "fuzzed_mask.nii.gz"
    reads_or_names(lambda p: _extract(images["bold"], p, images["atlas"]), mask,
                   data.draw(mutated(images["mask"].read_bytes())), (images["bold"],))


@given(data=st.data())
def test_sidecar_json(folder, images, data):
    from nmflow.bids_io import repetition_time

    bold = folder / "sidecar_bold.nii.gz"
    if not bold.exists():
        bold.write_bytes(images["bold"].read_bytes())
    seed = json.dumps({"RepetitionTime": 2.0, "TaskName": "rest", "SkullStripped": False}).encode()
    reads_or_names(lambda p: repetition_time(bold), folder / "sidecar_bold.json",
                   data.draw(mutated(seed, text=True)))


@given(data=st.data())
def test_user_atlas_labels_tsv(folder, images, data):
    from nmflow.participant.atlas import resolve_atlas

    labels = folder / "fuzzed_labels.tsv"
    reads_or_names(lambda p: resolve_atlas(f"mine={images['atlas']}:{p}"), labels,
                   data.draw(mutated(images["labels"].read_bytes(), text=True)), (images["atlas"],))  # they differ


@settings(max_examples=100)
@given(data=st.data())
def test_user_atlas_image(folder, images, data):
    from nmflow.participant.atlas import resolve_atlas

    image = folder / "fuzzed_atlas.nii.gz"
    reads_or_names(lambda p: resolve_atlas(f"mine={p}:{images['labels']}"), image,
                   data.draw(mutated(images["atlas"].read_bytes())), (images["labels"],))


# -- tables of the group level ---------------------------------------------------------------------------------

def relmat_seed() -> bytes:
    from nmflow.bids_io import write_relmat

    names = ["Vis", "SomMot", "DorsAttn", "Default"]
    matrix = np.corrcoef(np.random.default_rng(2).normal(size=(4, 30)))
    matrix[3, 0] = matrix[0, 3] = np.nan
    with tempfile.TemporaryDirectory() as folder:  # write_relmat writes a file (fileio.write_tsv)
        path = Path(folder) / "relmat.tsv"
        write_relmat(path, matrix, names)
        return path.read_bytes()


@given(data=mutated(relmat_seed(), text=True))
def test_relmat_tsv(folder, data):
    from nmflow.bids_io import read_relmat

    reads_or_names(read_relmat, folder / "relmat.tsv", data)


TIMESERIES_SEED = pd.DataFrame(np.random.default_rng(3).normal(size=(10, 3)).round(4),
                               columns=["Vis", "SomMot", "Default"]).to_csv(sep="\t", index=False).encode()


@given(data=mutated(TIMESERIES_SEED, text=True))
def test_timeseries_tsv(folder, data):
    from nmflow.group.features import read_timeseries

    reads_or_names(read_timeseries, folder / "timeseries.tsv", data)


def external_matrix_seeds() -> dict[str, bytes]:
    """An XCP-D relmat (``Node`` column), an unnamed CSV and an NPY of the same matrix (``--connectivity-dir``,
    ``--matrix-dir``)."""
    names = ["Vis", "SomMot", "DorsAttn", "Default"]
    matrix = np.corrcoef(np.random.default_rng(4).normal(size=(4, 30)))
    matrix[3, :] = matrix[:, 3] = np.nan  # a parcel below XCP-D's coverage threshold
    npy = io.BytesIO()
    np.save(npy, matrix)
    return {"relmat.tsv": pd.DataFrame(matrix, index=names, columns=names).to_csv(
                sep="\t", na_rep="n/a", index_label="Node").encode(),
            "matrix.csv": pd.DataFrame(matrix).to_csv(header=False, index=False).encode(),
            "matrix.npy": npy.getvalue()}


def read_external_matrix(path: Path) -> None:
    from nmflow.group.external import read_matrix
    from nmflow.group.features import check_matrix

    names, matrix = read_matrix(path)
    check_matrix(path, matrix, "r", names)


@pytest.mark.parametrize("name", list(external_matrix_seeds()))
@given(data=st.data())
def test_external_matrix(folder, name, data):
    seed = external_matrix_seeds()[name]
    reads_or_names(read_external_matrix, folder / name, data.draw(mutated(seed, text=not name.endswith(".npy"))))


PARTICIPANTS_SEED = (b"participant_id\tgroup\tsite\tage\tsex\nsub-01\tcontrol\tA\t34.5\tF\nsub-02\tcontrol\tB\t51\tM\n"
                     b"sub-03\tdisorderA\tA\t47\tF\nsub-04\tdisorderA\tB\tn/a\tM\n")


def read_participants_checked(path: Path) -> None:
    from nmflow.group.features import check_groups, read_participants
    from nmflow.normative.crossfit import check_covariates

    table = read_participants(path, "group", "site", ["age", "sex"])
    try:
        check_groups(table, "control", min_size=1)
        check_covariates(table, ["sex"])
    except NmflowInputError as exc:  # as the cohort collection names the file
        raise NmflowInputError(path, exc.problem) from None


@given(data=mutated(PARTICIPANTS_SEED, text=True))
def test_participants_tsv(folder, data):
    reads_or_names(read_participants_checked, folder / "participants.tsv", data)


# -- settings files ------------------------------------------------------------------------------------------

STRATEGY_SEED = b'name: mine\nconfounds: ["trans_[xyz]", "rot_[xyz]", "white_matter", "csf"]\nscrub: true\nfilter: true\n'


@given(data=mutated(STRATEGY_SEED, text=True))
def test_strategy_yaml(folder, data):
    from nmflow.participant.denoise import load_strategy, select_confounds

    table = pd.read_csv(io.BytesIO(confounds_seed()), sep="\t", na_values=["n/a"])

    def read(path):
        strategy = load_strategy(str(path))
        with contextlib.suppress(NmflowInputError):  # a pattern matching no column names the confounds file
            select_confounds(table, strategy, "confounds.tsv")

    reads_or_names(read, folder / "strategy.yml", data)


CONFIG_SEEDS = {
    ".yml": b"metrics: [pearson, kendall]\nfd-threshold: 0.3\ndenoise: [simple, gsr]\nnprocs: 2\nverbose: true\n",
    ".toml": b'metrics = ["pearson", "kendall"]\nfd-threshold = 0.3\ndenoise = ["simple"]\nnprocs = 2\n',
}


@pytest.mark.parametrize("suffix", CONFIG_SEEDS)
def test_config_file(folder, suffix):
    assert yaml.safe_load(CONFIG_SEEDS[".yml"]) and tomllib.loads(CONFIG_SEEDS[".toml"].decode())

    @given(data=mutated(CONFIG_SEEDS[suffix], text=True))
    def fuzz(data):
        from nmflow.cli.config import parse_with_config
        from nmflow.cli.run import build_parser

        def read(path):
            parse_with_config(build_parser(), ["in", "out", "participant", "--config", str(path)])

        reads_or_names(read, folder / f"config{suffix}", data)

    fuzz()


INVENTORY_SEED = (
    b"participant_label,session_label,include,datatype,suffix,entities,series_number,series_description,"
    b"protocol_name,image_type,n_files,n_volumes,tr_s,age,sex,date_shift_days,reason,study_instance_uid,"
    b"series_instance_uid,dicom_root\n"
    b"001,01,yes,anat,T1w,,2,t1_mprage,t1_mprage,ORIGINAL\\PRIMARY,3,1,2.0,34,F,120,T1-weighted,1.2.3,1.2.3.4,/dicom\n"
    b"001,01,yes,func,bold,task-rest,5,rest_bold,rest_bold,ORIGINAL\\PRIMARY,6,2,2.0,34,F,120,resting-state BOLD,"
    b"1.2.3,1.2.3.5,/dicom\n"
    b"001,01,no,,,,1,localizer,localizer,ORIGINAL,3,1,,34,F,120,localizer,1.2.3,1.2.3.6,/dicom\n")


@given(data=mutated(INVENTORY_SEED, text=True))
def test_inventory_csv(folder, data):
    from nmflow.dicom.plan import plan_warnings, read_plan

    reads_or_names(lambda p: plan_warnings(p, read_plan(p)), folder / "inventory.csv", data)


KEY_SEED = (b"patient_id,participant_label,date_shift_days,study_instance_uid,session_label\n"
            b"PAT-A,001,120,1.2.3,01\nPAT-B,002,7,1.2.4,01\n")


@given(data=mutated(KEY_SEED, text=True))
def test_key_file_csv(folder, data):
    from nmflow.dicom.inventory import read_key_file

    reads_or_names(lambda p: read_key_file(p), folder / "key.csv", data)


@given(data=mutated(b'{"bold": {"task": "rest", "run": 1}}', text=True))
def test_bids_filter_json(folder, data):
    from nmflow.cli.common import read_filters

    reads_or_names(read_filters, folder / "filter.json", data)


@given(data=mutated(b'{"n_procs": 2, "raise_insufficient": false}', text=True))
def test_plugin_args_file(folder, data):
    from nmflow.cli.common import read_plugin_args

    reads_or_names(lambda p: read_plugin_args(str(p)), folder / "plugin_args.json", data)


# -- model card + weights ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(folder) -> Path:
    from nmflow.normative.model import NormativeModel, param_shapes, save_model

    rng = np.random.default_rng(4)
    params = []
    for fan_in, fan_out in param_shapes(6, 1):
        params += [rng.normal(size=(fan_in, fan_out)), rng.normal(size=(1, fan_out))]
    card = {"atlas": "toy", "seg": None, "desc": "simple", "meas": "pearson",
            "feature_names": [f"f{k}" for k in range(6)], "config": {"mask_fraction": 0.2}}
    path, _ = save_model(NormativeModel(params, np.zeros(6), np.ones(6), card, np.ones(6)), folder / "m.safetensors")
    return path


@settings(max_examples=150)
@given(data=st.data())
def test_model_card_json(folder, model, data):
    from nmflow.normative.model import load_model

    fuzzed = folder / "card_fuzz.safetensors"
    fuzzed.write_bytes(model.read_bytes())
    card = fuzzed.with_suffix(".json")
    reads_or_names(lambda p: load_model(fuzzed), card,
                   data.draw(mutated(model.with_suffix(".json").read_bytes(), text=True)), (fuzzed,))


@settings(max_examples=150)
@given(data=st.data())
def test_model_weights_safetensors(folder, model, data):
    """Mutated weights with a card whose hash matches them: the file's own structure is checked."""
    import hashlib

    from nmflow.normative.model import load_model

    weights = data.draw(mutated(model.read_bytes()))
    fuzzed = folder / "weights_fuzz.safetensors"
    card = json.loads(model.with_suffix(".json").read_text())
    fuzzed.with_suffix(".json").write_text(json.dumps(dict(card, weights_sha256=hashlib.sha256(weights).hexdigest())))
    reads_or_names(load_model, fuzzed, weights, (fuzzed.with_suffix(".json"),))
