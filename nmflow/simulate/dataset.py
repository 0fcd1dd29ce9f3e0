"""Write a synthetic dataset in fMRIPrep's derivatives layout, with planted truth.

Voxel model (percent signal change around a baseline of ~1000):
network voxels carry their network's signal plus voxel noise; every brain
voxel carries physiological nuisance (the ``white_matter``/``csf`` columns and
three further components only aCompCor sees), a global signal, motion
artefacts (linear and squared in the six motion parameters), spikes at
high-motion volumes, a slow drift and T1 saturation in the first volumes.
Each nuisance appears in the confounds file under fMRIPrep's column name, so
the right denoising strategy removes it and ``none`` does not.

Network signals come from the population model (:mod:`nmflow.simulate.population`):
subject-specific true FC around the group matrix, a subject-level global signal,
age/sex effects, site signals and planted disorder effects given as Cohen's d.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from nmflow import __version__
from nmflow.participant.atlas import resolve_atlas
from nmflow.bids_io import strip_prefix, with_prefix
from nmflow.participant.connectivity import connection_names, upper_triangle
from nmflow.errors import NmflowInputError
from nmflow.fileio import write_tsv
from nmflow.log import LOG, progress_count
from nmflow.simulate import networks as net
from nmflow.simulate import population as pop
from nmflow.simulate.settings import SimulationSettings
from nmflow.simulate.toy_atlas import write_toy_atlas_dir

SPACE = "MNI152NLin6Asym"


def _fmriprep_motion(n_volumes: int, level: float, rng: np.random.Generator):
    """Six motion parameters (mm, rad) ``(n_volumes, 6)`` and spike volumes."""
    walk = np.cumsum(rng.normal(0, 0.01 * level, (n_volumes, 6)), axis=0)
    walk[:, 3:] /= 50.0  # rotations in radians (50 mm head radius)
    n_spikes = rng.poisson(0.04 * n_volumes * level)
    spikes = np.sort(rng.choice(np.arange(5, n_volumes), size=min(n_spikes, n_volumes - 5), replace=False))
    for s in spikes:
        jump = rng.normal(0, 0.4, 6)
        jump[3:] /= 50.0
        walk[s:] += jump
    return walk, spikes


def _framewise_displacement(motion: np.ndarray) -> np.ndarray:
    """Power et al. (2012) FD in mm; the first value is NaN as in fMRIPrep."""
    diff = np.abs(np.diff(motion, axis=0))
    fd = diff[:, :3].sum(axis=1) + 50.0 * diff[:, 3:].sum(axis=1)
    return np.concatenate([[np.nan], fd])


def _expansions(name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    """fMRIPrep's derivative1 / power2 / derivative1_power2 columns."""
    deriv = np.concatenate([[np.nan], np.diff(values)])
    return {
        name: values,
        f"{name}_derivative1": deriv,
        f"{name}_power2": values**2,
        f"{name}_derivative1_power2": deriv**2,
    }


def _cosine_basis(n_volumes: int, tr: float, cutoff_s: float = 128.0) -> np.ndarray:
    n_cos = int(np.floor(2 * n_volumes * tr / cutoff_s))
    t = np.arange(n_volumes)
    return np.column_stack(
        [np.sqrt(2 / n_volumes) * np.cos(np.pi * (2 * t + 1) * (k + 1) / (2 * n_volumes)) for k in range(n_cos)]
    ) if n_cos else np.zeros((n_volumes, 0))


def _components(signals: np.ndarray, n: int) -> np.ndarray:
    centred = signals - signals.mean(axis=0)
    u, _, _ = np.linalg.svd(centred, full_matrices=False)
    return u[:, :n]


def brain_mask(labels: np.ndarray) -> np.ndarray:
    """The simulated brain: the atlas's labelled voxels ``(x, y, z)`` dilated by one voxel, holes filled (bool)."""
    from scipy import ndimage

    mask = ndimage.binary_dilation(labels > 0, iterations=1)
    return ndimage.binary_fill_holes(mask)


def simulate_run(
    labels: np.ndarray, mask: np.ndarray, network_ts: np.ndarray, settings: SimulationSettings,
    motion_level: float, rng: np.random.Generator,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Voxel data ``(x, y, z, n_volumes)`` float32 and the fMRIPrep confounds table."""
    n_volumes = network_ts.shape[0]
    tr = settings.tr
    brain = np.flatnonzero(mask.ravel(order="F"))
    net_of_voxel = labels.ravel(order="F")[brain].astype(int)
    n_vox = brain.size
    baseline = rng.uniform(800, 1200, n_vox).astype(np.float32)

    physio = net.bandlimited_noise(n_volumes, 5, tr, rng, low=0.01, high=0.2)
    global_sig = net.bandlimited_noise(n_volumes, 1, tr, rng)[:, 0]
    motion, spikes = _fmriprep_motion(n_volumes, motion_level * settings.motion, rng)
    motion_centred = motion - motion.mean(axis=0)
    motion_scaled = motion_centred / np.array([0.1] * 3 + [0.002] * 3)
    n_dummy = 2

    psc = np.zeros((n_vox, n_volumes), dtype=np.float32)
    in_net = net_of_voxel > 0
    amplitude = rng.uniform(0.8, 1.2, n_vox).astype(np.float32)
    psc[in_net] = amplitude[in_net, None] * network_ts[:, net_of_voxel[in_net] - 1].T
    psc += rng.normal(0, 0.8, (n_vox, n_volumes)).astype(np.float32)
    psc += (rng.uniform(0.3, 1.0, (n_vox, 5)).astype(np.float32) * 0.8) @ physio.T.astype(np.float32)
    psc += settings.global_signal * rng.uniform(0.8, 1.2, (n_vox, 1)).astype(np.float32) * global_sig[None, :].astype(np.float32)
    motion_w = rng.normal(0, 0.6, (n_vox, 6)).astype(np.float32)
    psc += motion_w @ motion_scaled.T.astype(np.float32)
    psc += (rng.normal(0, 0.2, (n_vox, 6)).astype(np.float32)) @ (motion_scaled**2 - (motion_scaled**2).mean(0)).T.astype(np.float32)
    for s in spikes:
        psc[:, s] += rng.normal(0, 4.0 * settings.motion, n_vox).astype(np.float32)
    t = np.linspace(-1, 1, n_volumes, dtype=np.float32)
    psc += rng.normal(0, 2.0, (n_vox, 1)).astype(np.float32) * t + rng.normal(0, 1.0, (n_vox, 1)).astype(np.float32) * t**2

    data2d = baseline[:, None] * (1 + psc / 100.0)
    data2d[:, :n_dummy] *= np.array([1.6, 1.25], dtype=np.float32)

    volume = np.zeros(labels.shape + (n_volumes,), dtype=np.float32, order="F")
    volume.reshape(-1, n_volumes, order="F")[brain] = data2d

    confounds = _confounds_table(data2d, physio, motion, spikes, n_dummy, tr, rng)
    return volume, confounds


def _confounds_table(data2d, physio, motion, spikes, n_dummy, tr, rng) -> pd.DataFrame:
    n_volumes = data2d.shape[1]
    cols: dict[str, np.ndarray] = {}
    gs = data2d.mean(axis=0).astype(float)
    cols.update(_expansions("global_signal", gs))
    cols.update(_expansions("csf", 1000 + 10 * physio[:, 1] + rng.normal(0, 1, n_volumes)))
    cols.update(_expansions("white_matter", 1000 + 10 * physio[:, 0] + rng.normal(0, 1, n_volumes)))
    dvars = np.concatenate([[np.nan], np.sqrt(np.mean(np.diff(data2d, axis=1) ** 2, axis=0))])
    cols["std_dvars"] = dvars / np.nanmedian(dvars)
    cols["dvars"] = dvars
    fd = _framewise_displacement(motion)
    cols["framewise_displacement"] = fd
    cols["rmsd"] = fd * 0.5
    for k, comp in enumerate(_components(physio[:, 2:], 3).T):
        cols[f"t_comp_cor_{k:02d}"] = comp
    for k, comp in enumerate(_components(physio, 5).T):
        cols[f"a_comp_cor_{k:02d}"] = comp
    for k, comp in enumerate(_cosine_basis(n_volumes, tr).T):
        cols[f"cosine{k:02d}"] = comp
    for k in range(n_dummy):
        cols[f"non_steady_state_outlier{k:02d}"] = (np.arange(n_volumes) == k).astype(float)
    for k, name in enumerate(["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]):
        cols.update(_expansions(name, motion[:, k]))
    outliers = np.flatnonzero(np.nan_to_num(fd) > 0.5)
    for k, vol in enumerate(outliers):
        cols[f"motion_outlier{k:02d}"] = (np.arange(n_volumes) == vol).astype(float)
    return pd.DataFrame(cols)


def _participants(settings: SimulationSettings, rng: np.random.Generator) -> pd.DataFrame:
    groups = ["control"] * settings.n_controls
    for name, n in settings.patients:
        groups += [name] * n
    n = len(groups)
    width = max(2, len(str(n)))
    return pd.DataFrame(
        {
            "participant_id": [with_prefix(f"{i + 1:0{width}d}") for i in range(n)],
            "group": groups,
            "age": np.round(rng.uniform(20, 70, n), 1),
            "sex": rng.choice(["F", "M"], n),
            "site": [f"site{chr(ord('A') + i % settings.n_sites)}" for i in range(n)],
        }
    )


def check_settings(settings: SimulationSettings) -> None:
    """Raise :class:`NmflowInputError` (one line saying what to change) for an impossible layout."""
    problems = [
        (settings.n_controls < 0, "--n-controls must be >= 0"),
        (any(n < 0 for _, n in settings.patients), "--patients counts must be >= 0"),
        (settings.n_controls + sum(n for _, n in settings.patients) < 1, "no subjects: raise --n-controls"),
        (len({g for g, _ in settings.patients}) < len(settings.patients), "--patients names must differ"),
        (any(g == "control" for g, _ in settings.patients), "'control' is the controls' label, not a patient group"),
        (settings.n_sites < 1, "--n-sites must be >= 1"),
        (settings.n_sessions < 1, "--n-sessions must be >= 1"),
        (settings.n_volumes < 20, "--n-volumes must be >= 20"),
        (settings.tr <= 0, "--tr must be > 0"),
        (settings.effect_d <= 0, "--effect-d must be > 0"),
        (settings.effect is not None and not 0 < abs(settings.effect) < 0.9, "--effect must be in (0, 0.9)"),
        (settings.n_specific < 0 or settings.n_shared < 0, "--n-specific and --n-shared must be >= 0"),
        (settings.site_strength < 0, "--site-strength must be >= 0"),
    ]
    for bad, message in problems:
        if bad:
            raise NmflowInputError(None, message)


def truth_dir_for(out_dir: Path) -> Path:
    """Where the ground truth of a simulated dataset lives: beside it, never inside."""
    return out_dir.parent / f"{out_dir.name}_truth"


def simulate_dataset(out_dir: str | Path, settings: SimulationSettings, progress: bool = False) -> Path:
    """Write the dataset to ``out_dir`` and its truth to :func:`truth_dir_for`.

    Returns the truth directory.  With ``grid="tiny"`` a toy atlas directory
    (Yeo label sets on an 8 mm grid) is written to ``<truth>/atlases``; with
    ``grid="2"`` or ``"4"`` the real Yeo atlas is resolved from ``atlas_dir``.
    ``progress`` prints a line when the population is planted and one per
    subject written (``nmflow simulate``).
    """
    check_settings(settings)
    out_dir, truth = Path(out_dir), truth_dir_for(Path(out_dir))
    rng = np.random.default_rng(settings.seed)
    created_truth = not truth.exists()
    if settings.grid == "tiny":
        atlas_dir = write_toy_atlas_dir(truth / "atlases")
        res_label = "8"
    else:
        atlas_dir = settings.atlas_dir
        res_label = settings.grid
    atlas = resolve_atlas(settings.atlas, atlas_dir=atlas_dir, resolution_mm=float(res_label))
    atlas_img = nib.load(atlas.image)
    labels = np.asarray(atlas_img.dataobj).astype(np.int16)
    n_networks = len(atlas.names)
    mask = brain_mask(labels)

    participants = _participants(settings, rng)
    if progress:
        LOG.info(f"planting the connectivity of {len(participants)} subjects ({n_networks} regions) ...")
    groups = [name for name, _ in settings.patients]
    control = net.control_correlation(n_networks, rng)
    try:
        model = pop.build_population(
            control, groups, list(participants.site), rng, effect_d=settings.effect_d, effect=settings.effect,
            n_specific=settings.n_specific, n_shared=settings.n_shared, n_volumes=settings.n_volumes,
            tr=settings.tr, site_strength=settings.site_strength)
    except pop.PlantingError as exc:
        if created_truth:
            shutil.rmtree(truth, ignore_errors=True)
        raise NmflowInputError(None, str(exc)) from None

    out_dir.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    true_features = []
    affine = atlas_img.affine
    start = time.monotonic()
    for k, row in enumerate(participants.itertuples(), 1):
        sub_rng = np.random.default_rng([settings.seed, int(strip_prefix(row.participant_id))])
        draws = pop.draw_subjects(model, [row.group], [row.age], [row.sex], [row.site], sub_rng)
        true_features.append(upper_triangle(draws.true_fc[0]))
        motion_level = float(sub_rng.lognormal(0, 0.4))
        for ses in range(settings.n_sessions):
            ts = pop.subject_timeseries(draws, settings.n_volumes, settings.tr, sub_rng)[0]
            volume, confounds = simulate_run(labels, mask, ts, settings, motion_level, sub_rng)
            write_run(out_dir, row.participant_id, ses if settings.n_sessions > 1 else None,
                       res_label, volume, mask, affine, confounds, settings.tr)
        if progress:
            LOG.info(f"[{progress_count(k, len(participants), 'subjects', time.monotonic() - start)}] "
                     f"{row.participant_id} ({row.group}) written")

    write_tsv(out_dir / "participants.tsv", participants, float_format=None)
    (out_dir / "dataset_description.json").write_text(json.dumps({
        "Name": "nmflow simulated fMRIPrep derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "nmflow simulate", "Version": __version__,
                         "Description": f"seed {settings.seed}; synthetic data in fMRIPrep's layout"}],
    }, indent=2))
    _write_truth(truth, atlas, model, participants, np.array(true_features), settings)
    return truth


def write_run(out_dir: Path, sub: str, ses: int | None, res_label: str, volume: np.ndarray, mask: np.ndarray,
              affine: np.ndarray, confounds: pd.DataFrame, tr: float) -> None:
    """Write one run in fMRIPrep's layout: the BOLD ``volume`` ``(x, y, z, n_volumes)`` with its sidecar (TR in
    s), the brain ``mask`` and the ``confounds`` table (``sub``: ``sub-<label>``; ``ses``: 0-based session
    index, None without sessions)."""
    ses_part = f"_ses-{ses + 1}" if ses is not None else ""
    func = out_dir / sub / (f"ses-{ses + 1}" if ses is not None else "") / "func"
    func.mkdir(parents=True, exist_ok=True)
    stem = f"{sub}{ses_part}_task-rest"
    img = nib.Nifti1Image(volume, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = tr
    img.to_filename(func / f"{stem}_space-{SPACE}_res-{res_label}_desc-preproc_bold.nii.gz")
    (func / f"{stem}_space-{SPACE}_res-{res_label}_desc-preproc_bold.json").write_text(
        json.dumps({"RepetitionTime": tr, "TaskName": "rest", "SkullStripped": False}, indent=2))
    nib.Nifti1Image(mask.astype(np.uint8), affine).to_filename(
        func / f"{stem}_space-{SPACE}_res-{res_label}_desc-brain_mask.nii.gz")
    write_tsv(func / f"{stem}_desc-confounds_timeseries.tsv", confounds, float_format=None)
    (func / f"{stem}_desc-confounds_timeseries.json").write_text(json.dumps(
        {c: {"Method": "aCompCor", "Mask": "combined"} for c in confounds.columns if c.startswith("a_comp_cor")}, indent=2))


def _write_truth(truth, atlas, model, participants, true_features, settings) -> None:
    names = atlas.names
    conn_names = connection_names(names)
    for table, file in [(model.planted, "planted_connections.tsv"), (model.covariates, "covariate_effects.tsv")]:
        table = table.copy()
        table.insert(2, "name", [conn_names[k] for k in table.connection])
        write_tsv(truth / file, table, float_format=None)
    control = pd.DataFrame(model.control, columns=names)
    control.insert(0, "", names)  # the row names, under an empty header cell
    write_tsv(truth / "control_fc.tsv", control, float_format=None)
    subjects = pd.DataFrame(true_features, columns=conn_names)
    subjects.insert(0, "participant_id", list(participants.participant_id))
    write_tsv(truth / "subject_true_fc.tsv", subjects, float_format=None)
    settings_dict = {k: v for k, v in vars(settings).items()}
    (truth / "truth.json").write_text(json.dumps({
        "atlas": settings.atlas, "regions": names,
        "connection_order": "numpy.triu_indices(n_regions, k=1), row-major",
        "effect_size": "d: subject-level Cohen's d of the observed Fisher-z FC (patients minus controls over the "
                       "controls' within-site SD); d_realised: Monte-Carlo estimate on the network signals",
        "population": vars(model.params),
        "site_loadings": {site: [round(float(x), 4) for x in v] for site, v in model.site_loadings.items()},
        "settings": settings_dict,
    }, indent=2, default=list))
