"""BIDS input queries (PyBIDS), relmat tables and the dataset description.

Derivatives are named by :class:`nmflow.interfaces.derivatives.DerivativesDataSink`
from :data:`NMFLOW_BIDS_CONFIG`; :func:`layout` reads that config's ``seg``,
``meas`` and ``stat`` entities.  :func:`bids_name` and :func:`derivative_path`
remain for the run keys, the figure names of the run report and the test and
benchmark helpers that write participant-level trees.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nmflow import __version__
from nmflow.errors import NmflowInputError
from nmflow.fileio import atomic_write_text, read_json, read_tsv, write_tsv
from nmflow.log import LOG

if TYPE_CHECKING:  # imported where used, as PyBIDS and nibabel: `nmflow fmriprep` parses with this module loaded
    import numpy as np

NMFLOW_BIDS_CONFIG = Path(__file__).parent / "data" / "nmflow_bids_config.json"
# the BIDS schema's entity order (tests/test_derivatives.py checks it against bidsschematools), then BEP017's meas
ENTITY_ORDER = [("subject", "sub"), ("session", "ses"), ("task", "task"), ("acquisition", "acq"),
                ("run", "run"), ("space", "space"), ("atlas", "atlas"), ("segmentation", "seg"), ("res", "res"),
                ("den", "den"), ("desc", "desc"), ("meas", "meas")]
SPACE_ENTITIES = ("space", "res", "den")  # where a run's data lie: left out of its key and of its per-run files
CIFTI_SPACE = "fsLR"  # the --space of fMRIPrep's CIFTI dense time series


@dataclass
class Run:
    """One preprocessed BOLD run and the files that go with it.

    ``mask`` is None for a CIFTI dense time series (``den`` set, e.g. ``91k``): its grayordinates are
    the brain.
    """

    subject: str
    session: str | None
    task: str | None
    run: str | None
    acquisition: str | None
    space: str | None
    res: str | None
    bold: str
    mask: str | None
    confounds: str
    tr: float
    den: str | None = None

    @property
    def entities(self) -> dict:
        """Entities of the run, keyed as in :data:`ENTITY_ORDER`."""
        return {k: v for k, v in asdict(self).items()
                if k in ("subject", "session", "task", "run", "acquisition", "space", "res", "den") and v is not None}

    @property
    def key(self) -> str:
        """Short identifier, e.g. ``sub-01_ses-1_task-rest_run-1``."""
        return bids_name({k: v for k, v in self.entities.items() if k not in SPACE_ENTITIES}, None, None)


# every path (relative to the root, from "/") but the subject and session folders (labels are alphanumeric), their
# func folders and there the kinds of file collect_runs queries (sidecars are read by name, not through PyBIDS)
_QUERIED = r"[^/]+_(bold\.nii(\.gz)?|bold\.dtseries\.nii|mask\.nii(\.gz)?|timeseries\.tsv|regressors\.tsv)"
NOT_QUERIED = re.compile(rf"^/(?!sub-[a-zA-Z0-9]+(/ses-[a-zA-Z0-9]+)?(/func(/{_QUERIED})?)?$)")


def layout(root: str | Path, derivatives_config: bool = True, func_only: bool = False):
    """A PyBIDS layout of ``root`` (no validation, no metadata; derivatives entities known).

    ``func_only`` indexes what the participant level queries only: the BOLD
    series, masks and confounds tables of the subjects' (and sessions')
    ``func`` folders.  The rest of an fMRIPrep folder (``anat``, ``figures``,
    ``log``, ``sourcedata``, the JSON sidecars, reference images and
    transforms) is most of its files.
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    entities = json.loads(NMFLOW_BIDS_CONFIG.read_text())["entities"]
    nmflow = {"name": "nmflow", "entities": [e for e in entities if e["name"] in ("seg", "meas", "stat")]}
    config = ["bids", "derivatives", nmflow] if derivatives_config else ["bids"]
    ignore = [NOT_QUERIED] if func_only else None  # None: PyBIDS' default (code, models, sourcedata, stimuli)
    return BIDSLayout(str(root), validate=False, config=config,
                      indexer=BIDSLayoutIndexer(validate=False, index_metadata=False, ignore=ignore))


def check_derivatives_dir(root: str | Path) -> list[str]:
    """Check that ``root`` looks like fMRIPrep's output folder (a BIDS derivatives dataset) before anything runs.

    Raises :class:`~nmflow.errors.NmflowInputError` (one line naming the file) when ``root`` is not a folder,
    its ``dataset_description.json`` is not a JSON object, it is a raw BIDS dataset (``DatasetType: raw``)
    or it has no ``sub-*`` folder; returns warnings (one line each) for what may still work: no
    ``dataset_description.json``, no ``BIDSVersion``.  ``--skip-bids-validation`` skips this check.
    """
    root = Path(root)
    if not root.is_dir():
        raise NmflowInputError(root, "not a folder (BIDS_DIR: fMRIPrep's output folder)")
    warnings = []
    description = root / "dataset_description.json"
    if description.is_file():
        try:
            desc = json.loads(description.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise NmflowInputError(description, f"not valid JSON ({err})") from None
        if not isinstance(desc, dict):
            raise NmflowInputError(description, "must hold a JSON object")
        if desc.get("DatasetType") == "raw":
            inner = root / "derivatives" / "fmriprep"
            hint = f"; fMRIPrep's outputs seem to be in {inner}" if inner.is_dir() else ": run fMRIPrep first"
            raise NmflowInputError(description, "DatasetType is 'raw': BIDS_DIR must be fMRIPrep's output folder "
                                                f"(a derivatives dataset), not the raw data{hint}")
        if "BIDSVersion" not in desc:
            warnings.append(f"{description}: no BIDSVersion (a BIDS dataset description has one)")
    else:
        warnings.append(f"{root}: no dataset_description.json (fMRIPrep writes one; is this its output folder?)")
    if not any(p.is_dir() for p in root.glob("sub-*")):
        raise NmflowInputError(root, "no sub-* folder (BIDS_DIR must be fMRIPrep's output folder)")
    return warnings


def strip_prefix(label: str) -> str:
    """``sub-01`` and ``01`` both give ``01``."""
    return label[4:] if label.startswith("sub-") else label


def with_prefix(label: str) -> str:
    """``01`` and ``sub-01`` both give ``sub-01`` (the inverse of :func:`strip_prefix`)."""
    return label if label.startswith("sub-") else f"sub-{label}"


RUN_ENTITIES = ("subject", "session", "task", "run", "acquisition")


def _entity_key(ents: dict, names: tuple[str, ...]) -> tuple:
    """The values of ``names`` in ``ents`` (None where absent), as strings: a run's identity."""
    return tuple(None if ents.get(k) is None else str(ents[k]) for k in names)


def _by_entities(files: list, names: tuple[str, ...]) -> dict[tuple, list]:
    """PyBIDS files grouped by :func:`_entity_key`, in the order PyBIDS returned them."""
    grouped: dict[tuple, list] = {}
    for f in files:
        grouped.setdefault(_entity_key(f.get_entities(), names), []).append(f)
    return grouped


def collect_runs(
    fmriprep_dir: str | Path, participant_label: list[str] | None = None,
    bids_filters: dict | None = None, space: str | None = "MNI152NLin6Asym",
) -> tuple[list[Run], list[str]]:
    """Find preprocessed BOLD runs and their mask, confounds and TR.

    ``space="fsLR"`` finds fMRIPrep's CIFTI outputs (``--cifti-output``) instead:
    ``*_space-fsLR_den-<n>_bold.dtseries.nii`` (no ``desc``, no brain mask).
    Returns the runs and a list of one-line problems: a run whose companion
    file is missing or whose TR cannot be read (sidecar, header) is reported
    there and left out, and the other runs are collected.
    """
    fmriprep_dir = Path(fmriprep_dir)
    if not fmriprep_dir.is_dir():
        raise NmflowInputError(fmriprep_dir, "input directory not found")
    lay = layout(fmriprep_dir, func_only=True)
    cifti = space == CIFTI_SPACE
    query = ({"suffix": "bold", "extension": ".dtseries.nii", "datatype": "func"} if cifti else
             {"suffix": "bold", "desc": "preproc", "extension": [".nii.gz", ".nii"], "datatype": "func"})
    if space:
        query["space"] = space
    if participant_label:
        query["subject"] = [strip_prefix(p) for p in participant_label]
        present = {p.name[4:] for p in fmriprep_dir.glob("sub-*") if p.is_dir()}  # with or without func files
        absent = [f"sub-{x}" for x in query["subject"] if x not in present]
        if absent:  # as fMRIPrep: a mistyped label stops the call instead of being skipped in silence
            raise NmflowInputError(fmriprep_dir, f"--participant-label: {len(absent)} participant(s) not found: "
                                                 f"{' '.join(absent[:10])}")
    query.update((bids_filters or {}).get("bold", {}))
    subjects = {"subject": query["subject"]} if "subject" in query else {}
    # one query per kind of file, matched by entities (a query per run costs ~25 ms each on large cohorts)
    masks = _by_entities(lay.get(**subjects, suffix="mask", desc="brain", extension=[".nii.gz", ".nii"]),
                         RUN_ENTITIES + ("space", "res"))
    all_confounds = _by_entities([c for c in lay.get(**subjects, desc="confounds", suffix=["timeseries", "regressors"],
                                                     extension=".tsv") if "space" not in c.get_entities()],
                                 RUN_ENTITIES)
    runs, problems = [], []
    for bold in lay.get(**query):
        ents = bold.get_entities()
        mask = masks.get(_entity_key(ents, RUN_ENTITIES + ("space", "res")), [])
        confounds = all_confounds.get(_entity_key(ents, RUN_ENTITIES), [])
        if not mask and not cifti:
            problems.append(f"{bold.path}: no matching desc-brain_mask image")
            continue
        if not confounds:
            problems.append(f"{bold.path}: no matching desc-confounds_timeseries.tsv (or desc-confounds_regressors.tsv)")
            continue
        try:
            tr = repetition_time(bold.path)
        except NmflowInputError as exc:
            problems.append(str(exc))
            continue
        runs.append(Run(
            subject=ents["subject"], session=ents.get("session"), task=ents.get("task"),
            run=str(ents["run"]) if "run" in ents else None, acquisition=ents.get("acquisition"),
            space=ents.get("space"), res=str(ents["res"]) if "res" in ents else None,
            bold=bold.path, mask=None if cifti else mask[0].path, confounds=confounds[0].path, tr=tr,
            den=str(ents["den"]) if "den" in ents else None,
        ))
    return runs, problems


def sidecars(bold_path: str | Path) -> list[Path]:
    """Candidate JSON sidecars of a BOLD file, nearest first.

    ``x_bold.nii.gz`` has ``x_bold.json``; fMRIPrep writes ``x_bold.dtseries.json`` beside a
    ``x_bold.dtseries.nii`` (some versions ``x_bold.json``).
    """
    name = Path(bold_path).name
    for extension in (".dtseries.nii", ".nii.gz", ".nii"):
        if name.endswith(extension):
            stem = Path(bold_path).with_name(name[: -len(extension)])
            extra = [stem.with_name(stem.name + ".dtseries.json")] if extension == ".dtseries.nii" else []
            return extra + [stem.with_name(stem.name + ".json")]
    return [Path(bold_path).with_suffix(".json")]


def repetition_time(bold_path: str | Path) -> float:
    """TR in seconds from the JSON sidecar, else from the NIfTI header (a CIFTI file's series step).

    Raises
    ------
    NmflowInputError
        An unreadable or invalid sidecar, a ``RepetitionTime`` that is not a
        positive number, or no TR in either place.
    """
    bold_path = Path(bold_path)
    for sidecar in sidecars(bold_path):
        if not sidecar.exists():
            continue
        meta = read_json(sidecar, "sidecar")
        if "RepetitionTime" in meta:
            value = meta["RepetitionTime"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise NmflowInputError(sidecar, f"RepetitionTime must be a positive number of seconds, got {value!r}")
            return float(value)
    if str(bold_path).endswith(".dtseries.nii"):
        return _series_step(bold_path)
    from nmflow.images import load_header

    header = load_header(bold_path).header
    zooms = header.get_zooms()
    if len(zooms) < 4 or not 0 < zooms[3] < float("inf"):
        raise NmflowInputError(bold_path, "no RepetitionTime in the sidecar and none in the header")
    return float(zooms[3]) / {"msec": 1000.0, "usec": 1e6}.get(header.get_xyzt_units()[1], 1.0)


def _series_step(path: Path) -> float:
    """The time step (s) of a CIFTI dense time series' series axis."""
    import nibabel as nib

    try:
        axis = nib.load(path).header.get_axis(0)
        step = float(axis.step) * {"SECOND": 1.0}[axis.unit]
    except Exception:  # not CIFTI-2, not a series, or not in seconds
        step = float("nan")
    if not 0 < step < float("inf"):
        raise NmflowInputError(path, "no RepetitionTime in the sidecar and no time step in seconds in the CIFTI header")
    return step


def resolution_meta(entities: dict, bold: str | Path) -> dict:
    """``Resolution`` of the sidecars of a run's outputs named with its ``res`` entity (BIDS requires it with
    one): what ``res-<res>`` means, the input BOLD's grid, with its voxel size (mm) read from the header of
    ``bold`` (by the node that publishes the run: the BOLD was read by then); empty without a ``res`` in the
    run's ``entities`` (CIFTI runs)."""
    if entities.get("res") is None:
        return {}
    import nibabel as nib

    size = "x".join(f"{float(v):g}" for v in nib.load(bold).header.get_zooms()[:3])
    return {"Resolution": f"res-{entities['res']} of the input BOLD in {entities.get('space')} space (its voxels: "
                          f"{size} mm); the atlas labels were sampled on that grid"}


def bids_name(entities: dict, suffix: str | None, extension: str | None) -> str:
    """``sub-01_task-rest_..._suffix.ext`` from entities keyed by long or short names."""
    short = dict(ENTITY_ORDER)
    parts = []
    for long, abbrev in ENTITY_ORDER:
        value = entities.get(long, entities.get(abbrev))
        if value is not None:
            parts.append(f"{abbrev}-{value}")
    unknown = set(entities) - set(short) - set(short.values())
    if unknown:
        raise ValueError(f"unknown BIDS entities {sorted(unknown)}")
    name = "_".join(parts)
    if suffix:
        name += f"_{suffix}"
    return name + (extension or "")


def derivative_path(out_dir: str | Path, entities: dict, suffix: str, extension: str) -> Path:
    """``OUT_DIR/sub-X[/ses-Y]/func/<bids_name>``."""
    sub = entities.get("subject", entities.get("sub"))
    ses = entities.get("session", entities.get("ses"))
    folder = Path(out_dir) / f"sub-{sub}"
    if ses:
        folder /= f"ses-{ses}"
    return folder / "func" / bids_name(entities, suffix, extension)


# what the BIDS specification cannot name yet (BEP017 time series and connectivity, nmflow's QC tables and
# reports, the group level): the BIDS validator skips these paths
BIDSIGNORE = ("*_timeseries.tsv", "*_timeseries.json", "*_relmat.tsv", "*_relmat.json", "*_design.tsv",
              "*_design.json", "*_outliers.tsv", "*_outliers.json", "*_strategies.tsv", "*_strategies.json",
              "*_events.tsv", "*_events.json", "*_segments.tsv", "*_segments.json", "*_statmap.nii.gz",
              "*_statmap.json", "*.html", "figures/", "group/", "logs/")


def code_url() -> str | None:
    """The project's address from the installed package's metadata (``[project.urls]``: ``Source``,
    ``Repository``, ``Homepage`` or ``Home``, first found); None when it declares none."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        entries = metadata("nmflow").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    urls = dict(entry.split(", ", 1) for entry in entries if ", " in entry)
    urls = {label.lower(): url for label, url in urls.items()}
    return next((urls[k] for k in ("source", "repository", "homepage", "home") if k in urls), None)


def container(environ=os.environ, root: str | Path = "/") -> dict | None:
    """``GeneratedBy.Container`` when nmflow runs in a container, else None.

    Apptainer (Singularity) sets ``APPTAINER_CONTAINER`` (``SINGULARITY_CONTAINER``) to the image file;
    Docker leaves ``/.dockerenv``, Podman ``/run/.containerenv``; nmflow's image (``docker/Dockerfile``)
    sets ``NMFLOW_CONTAINER`` to its ``name:tag``.  ``environ`` and ``root`` stand for the process's.
    """
    tag = {"Tag": environ["NMFLOW_CONTAINER"]} if environ.get("NMFLOW_CONTAINER") else {}
    for variable, kind in (("APPTAINER_CONTAINER", "apptainer"), ("SINGULARITY_CONTAINER", "singularity")):
        if environ.get(variable):
            return {"Type": kind, "URI": environ[variable], **tag}
    for marker, kind in ((".dockerenv", "docker"), ("run/.containerenv", "podman")):
        if (Path(root) / marker).exists():
            return {"Type": kind, **tag}
    return {"Type": "docker", **tag} if tag else None


def generated_by() -> dict:
    """This nmflow's ``GeneratedBy`` entry: name, version, ``CodeURL`` and ``Container`` when known."""
    url, box = code_url(), container()
    return {"Name": "nmflow", "Version": __version__, **({"CodeURL": url} if url else {}),
            **({"Container": box} if box else {})}


def previous_version(out_dir: str | Path) -> str | None:
    """The nmflow version in ``OUT_DIR/dataset_description.json``'s ``GeneratedBy`` (None: no such file, or
    none that nmflow wrote)."""
    path = Path(out_dir) / "dataset_description.json"
    try:
        entries = json.loads(path.read_text()).get("GeneratedBy") or []
    except (OSError, ValueError, AttributeError):
        return None
    return next((str(e.get("Version")) for e in entries if isinstance(e, dict) and e.get("Name") == "nmflow"), None)


def warn_other_version(out_dir: str | Path) -> None:
    """One warning line, naming both versions, when OUT_DIR's outputs were made by another nmflow version
    (fMRIPrep's habit): this call's outputs would be mixed with theirs."""
    before = previous_version(out_dir)
    if before is not None and before != __version__:
        LOG.warning(f"nmflow: warning: {Path(out_dir) / 'dataset_description.json'}: OUT_DIR holds outputs of "
                    f"nmflow {before}; this is nmflow {__version__}: rerun every level, or use a new OUT_DIR")


def write_dataset_description(out_dir: str | Path, source: str | Path, keep: bool = False) -> None:
    """``dataset_description.json`` with GeneratedBy (:func:`generated_by`), the source dataset and
    ``DatasetLinks`` (``preprocessed``: the input, which the sidecars' ``Sources`` name as
    ``bids:preprocessed:<path>``), and the ``.bidsignore``.

    ``keep`` leaves an existing description as it is (the group level adds
    to the participant level's outputs, and warns itself); one of another
    nmflow version, replaced, gets :func:`warn_other_version`'s line.
    """
    out_dir = Path(out_dir)
    if keep and (out_dir / "dataset_description.json").exists():
        return
    warn_other_version(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    uri = Path(os.path.abspath(source)).as_uri()
    desc = {
        "Name": "nmflow derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by()],
        "SourceDatasets": [{"URL": uri}],
        "DatasetLinks": {"preprocessed": uri},  # the dataset of the sidecars' bids:preprocessed:... Sources
    }
    atomic_write_text(out_dir / "dataset_description.json", json.dumps(desc, indent=2))
    atomic_write_text(out_dir / ".bidsignore", "".join(f"{pattern}\n" for pattern in BIDSIGNORE))


def write_relmat(path: str | Path, matrix: np.ndarray, names: list[str]) -> None:
    """Write a ``(n, n)`` matrix as TSV: a ``node`` column of region names, then one column per region."""
    import pandas as pd

    table = pd.DataFrame(matrix, columns=names)
    table.insert(0, "node", names)
    write_tsv(path, table, "%.10g")


def read_relmat(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Region names and the ``(n, n)`` matrix of a ``_relmat.tsv`` written by :func:`write_relmat`.

    Raises
    ------
    NmflowInputError
        An unreadable file, a table without the ``node`` column and one column
        per node in the same order, or a cell that is not a number.
    """
    import numpy as np
    import pandas as pd

    table = read_tsv(path, "relmat")
    if table.shape[1] < 2 or table.columns[0] != "node" or [str(n) for n in table["node"]] != list(table.columns[1:]):
        raise NmflowInputError(path, "relmat must have a 'node' column and one column per node, same order")
    values = table.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & table.iloc[:, 1:].notna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise NmflowInputError(path, f"line {row + 2}, column {table.columns[col + 1]!r}: "
                               f"{table.iat[row, col + 1]!r} is not a number")
    return list(table.columns[1:]), values.to_numpy(float)
