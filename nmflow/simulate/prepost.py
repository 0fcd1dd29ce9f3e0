"""Stimulus studies with planted truth: controls and patients scanned at rest with a brief stimulus.

Network signals come from the population model (:mod:`nmflow.simulate.population`,
its constants with a smaller global signal): each subject's network
correlation ``C_s`` holds before the stimulus onset and, after it, the same
matrix with the planted connections moved (:func:`plant_study`):

* ``common`` pairs change in every subject (a stimulus effect the controls
  share: the single-case test must not flag them);
* ``case`` pairs change in the patients only.

A change's size is ``--effect`` standard deviations of the controls' ΔFC
(Fisher z of POST minus PRE of the network signals, from Monte-Carlo control
scans with the run's PRE and POST segments), computed from each carrier's own
correlation.  The voxel noise attenuates it a little; the realised size is the
Z-CC the single-case table reports.  Every network also carries an evoked
response to the stimulus (Glover HRF, per-network amplitude) that the GLM
removes.  Voxels, motion and confounds are those of :mod:`nmflow.simulate.dataset`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from nmflow import __version__
from nmflow.errors import NmflowInputError
from nmflow.fileio import write_tsv
from nmflow.participant.atlas import resolve_atlas
from nmflow.participant.connectivity import connection_names
from nmflow.prepost.events import check_within_run
from nmflow.simulate import networks as net
from nmflow.simulate import population as pop
from nmflow.simulate.dataset import SimulationSettings, brain_mask, simulate_run, write_run, truth_dir_for
from nmflow.simulate.settings import PrepostSimulationSettings
from nmflow.simulate.toy_atlas import write_toy_atlas_dir

PARAMS = pop.PopulationParams(global_mean=0.1, global_sd=0.05)


def delta_sd(model: pop.PopulationModel, settings: PrepostSimulationSettings, rng: np.random.Generator,
             n_subjects: int = 300) -> np.ndarray:
    """SD ``(n_features,)`` of the controls' ΔFC: Fisher-z FC of POST minus PRE, from simulated control scans."""
    n = model.n_networks
    draws = pop.draw_subjects(model, ["control"] * n_subjects, [45.0] * n_subjects, ["F"] * n_subjects, None, rng)
    latent = pop.bandlimited_batch(n_subjects, settings.n_volumes, n + 1, settings.tr, rng, high=settings.high_hz)
    ts = latent[:, :, :n] @ np.swapaxes(np.linalg.cholesky(draws.corr), 1, 2)
    ts += np.sqrt(draws.global_var)[:, None, None] * latent[:, :, n:]
    pre, post = settings.segments()
    return (pop.fisher_features(ts[:, post]) - pop.fisher_features(ts[:, pre])).std(axis=0, ddof=1)


@dataclass
class PrepostStudy:
    """The subjects of a stimulus study and its planted truth.

    ``groups`` ``(n_subjects,)`` is ``control`` or ``patient``; ``draws`` holds
    each subject's network correlation before the stimulus (``C_s``) and
    global-signal variance; ``post_corr`` ``(n_subjects, n, n)`` the
    correlation after it; ``changes`` the planted connections: connection, i,
    j, kind (common/case), effect (target in SDs of the controls' ΔFC), sd
    (that SD), r_before and r_after (mean over the subjects who carry it of the
    observed-scale correlation ``(C + a**2) / (1 + a**2)``).
    """

    groups: list[str]
    draws: pop.SubjectDraws
    post_corr: np.ndarray
    changes: pd.DataFrame


def plant_study(n_networks: int, groups: list[str], settings: PrepostSimulationSettings,
                rng: np.random.Generator) -> PrepostStudy:
    """Draw the subjects and plant the common and the case changes on their own correlation matrices.

    A change moves only ``C_s[i, j]`` of each subject who carries it (all
    subjects for ``common``, the patients for ``case``), by what makes the
    Fisher z of its observed-scale correlation move by ``effect`` SDs of the
    controls' ΔFC (down when the correlation is above 0.25, else up; the other
    way when that would leave a carrier's matrix not positive definite, i.e.
    smallest eigenvalue < 0.02; connections that fit neither way are skipped,
    never projected, so no other connection moves).
    """
    control = net.control_correlation(n_networks, rng)
    model = pop.PopulationModel(control=control, group_corr={"control": control}, planted=pd.DataFrame(),
                                covariates=pd.DataFrame(columns=["covariate", "connection", "i", "j", "delta"]),
                                site_loadings={}, params=PARAMS, n_volumes=settings.n_volumes, tr=settings.tr)
    sd = delta_sd(model, settings, rng)
    n_sub = len(groups)
    draws = pop.draw_subjects(model, ["control"] * n_sub, [45.0] * n_sub, ["F"] * n_sub, None, rng)
    a2 = draws.global_var[:, None]
    post = draws.corr.copy()
    rows, cols = np.triu_indices(n_networks, 1)
    candidates, records = list(rng.permutation(rows.size)), []
    for kind, count, effect in (("case", settings.n_changed, settings.effect),
                                ("common", settings.n_common, settings.common_effect)):
        carriers = np.array([kind == "common" or g == "patient" for g in groups])
        taken = 0
        for k in list(candidates):
            if taken == count or not carriers.any():
                break
            i, j = rows[k], cols[k]
            before = (draws.corr[carriers, i, j] + a2[carriers, 0]) / (1 + a2[carriers, 0])
            preferred = -1.0 if before.mean() > 0.25 else 1.0
            for sign in (preferred, -preferred):
                after = np.tanh(np.arctanh(before) + sign * effect * sd[k])
                trial = post[carriers].copy()
                trial[:, i, j] = trial[:, j, i] = draws.corr[carriers, i, j] + (1 + a2[carriers, 0]) * (after - before)
                if np.abs(trial[:, i, j]).max() < 0.98 and np.linalg.eigvalsh(trial)[:, 0].min() >= 0.02:
                    post[carriers] = trial
                    candidates.remove(k)
                    taken += 1
                    records.append({"connection": int(k), "i": int(i), "j": int(j), "kind": kind,
                                    "effect": float(sign * effect), "sd": round(float(sd[k]), 4),
                                    "r_before": round(float(before.mean()), 4),
                                    "r_after": round(float(after.mean()), 4)})
                    break
        if carriers.any() and taken < count:
            raise NmflowInputError(None, f"cannot plant {count} {kind} changes of {effect:g} SD and keep every "
                                         "subject's correlation matrix positive definite: lower --n-changed/"
                                         "--n-common or --effect/--common-effect")
    columns = ["connection", "i", "j", "kind", "effect", "sd", "r_before", "r_after"]
    return PrepostStudy(list(groups), draws, post, pd.DataFrame.from_records(records, columns=columns))


def network_timeseries(study: PrepostStudy, settings: PrepostSimulationSettings,
                       rng: np.random.Generator) -> np.ndarray:
    """Network signals ``(n_subjects, n_volumes, n_networks)``, band-limited to 0.01-``high_hz`` Hz: the
    latent signals mixed by ``chol(C_s)`` before the stimulus onset and by ``chol(post_corr)`` from it,
    plus the global signal (no evoked response)."""
    n_sub, n = study.post_corr.shape[:2]
    latent = pop.bandlimited_batch(n_sub, settings.n_volumes, n + 1, settings.tr, rng, high=settings.high_hz)
    before = latent[:, :, :n] @ np.swapaxes(np.linalg.cholesky(study.draws.corr), 1, 2)
    after = latent[:, :, :n] @ np.swapaxes(np.linalg.cholesky(study.post_corr), 1, 2)
    switched = np.arange(settings.n_volumes) * settings.tr >= settings.stimulus.onset
    ts = np.where(switched[None, :, None], after, before)
    return ts + np.sqrt(study.draws.global_var)[:, None, None] * latent[:, :, n:]


def evoked_response(settings: PrepostSimulationSettings) -> np.ndarray:
    """The stimulus convolved with the Glover HRF, peak 1, ``(n_volumes,)``."""
    from nmflow.prepost.glm import design_matrix

    times = np.arange(settings.n_volumes) * settings.tr
    regressor = design_matrix(times, settings.stimulus, pd.DataFrame(index=range(settings.n_volumes)), None)
    column = regressor[settings.stimulus.trial_type].to_numpy()
    return column / np.abs(column).max()


def simulate_prepost_dataset(out_dir: str | Path, settings: PrepostSimulationSettings) -> Path:
    """Write the study in fMRIPrep's layout to ``out_dir`` (task ``rest``, one run per subject, its
    ``events.tsv`` beside the BOLD) and the truth to :func:`~nmflow.simulate.dataset.truth_dir_for`."""
    _check(settings)
    out_dir, truth = Path(out_dir), truth_dir_for(Path(out_dir))
    rng = np.random.default_rng(settings.seed)
    created = not truth.exists()
    atlas_dir, res = (write_toy_atlas_dir(truth / "atlases"), "8") if settings.grid == "tiny" \
        else (settings.atlas_dir, settings.grid)
    atlas = resolve_atlas(settings.atlas, atlas_dir=atlas_dir, resolution_mm=float(res))
    atlas_img = nib.load(atlas.image)
    labels = np.asarray(atlas_img.dataobj).astype(np.int16)
    groups = ["control"] * settings.n_controls + ["patient"] * settings.n_patients
    try:
        study = plant_study(len(atlas.names), groups, settings, rng)
    except NmflowInputError:
        if created:
            shutil.rmtree(truth, ignore_errors=True)
        raise
    mask = brain_mask(labels)
    signals = network_timeseries(study, settings, rng)
    width = max(2, len(str(len(groups))))
    ids = [f"sub-{k + 1:0{width}d}" for k in range(len(groups))]
    voxel_settings = SimulationSettings(tr=settings.tr, motion=settings.motion)
    evoked = evoked_response(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    for k, sub in enumerate(ids):
        sub_rng = np.random.default_rng([settings.seed, k + 1])
        ts = signals[k] + evoked[:, None] * settings.evoked * sub_rng.uniform(0.5, 1.5, signals.shape[2])
        volume, confounds = simulate_run(labels, mask, ts, voxel_settings, float(sub_rng.lognormal(0, 0.3)), sub_rng)
        write_run(out_dir, sub, None, res, volume, mask, atlas_img.affine, confounds, settings.tr)
        if settings.events:
            write_tsv(out_dir / sub / "func" / f"{sub}_task-rest_events.tsv", settings.stimulus.table(),
                      float_format=None)
    write_tsv(out_dir / "participants.tsv", pd.DataFrame({"participant_id": ids, "group": groups}))
    (out_dir / "dataset_description.json").write_text(json.dumps({
        "Name": "nmflow simulated stimulus study", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "nmflow simulate-prepost", "Version": __version__,
                         "Description": f"seed {settings.seed}; synthetic data in fMRIPrep's layout"}]}, indent=2))
    truth.mkdir(parents=True, exist_ok=True)
    changes = study.changes.copy()
    changes.insert(1, "name", [connection_names(atlas.names)[k] for k in changes.connection])
    write_tsv(truth / "planted_changes.tsv", changes, float_format=None)
    (truth / "truth.json").write_text(json.dumps({
        "atlas": settings.atlas, "regions": atlas.names, "stimulus": asdict(settings.stimulus),
        "patients": [i for i, g in zip(ids, groups) if g == "patient"],
        "connection_order": "numpy.triu_indices(n_regions, k=1), row-major",
        "effect": "target change of the Fisher-z FC, POST minus PRE, in SDs of the controls' ΔFC (column sd)",
        "settings": asdict(settings)}, indent=2))
    return truth


def _check(settings: PrepostSimulationSettings) -> None:
    if settings.tr > 0:
        check_within_run(settings.stimulus, settings.n_volumes, settings.tr, None)
    pre, post = settings.segments()
    problems = [
        (settings.n_controls < 0 or settings.n_patients < 0, "--n-controls and --n-patients must be >= 0"),
        (settings.n_controls + settings.n_patients < 1, "no subjects: raise --n-controls"),
        (settings.tr <= 0 or settings.duration < 0, "--tr must be > 0 and --duration >= 0"),
        (min(pre.sum(), post.sum()) < 10, "PRE or POST has fewer than 10 volumes: raise --n-volumes or move --onset"),
        (settings.effect <= 0 or settings.common_effect <= 0, "--effect and --common-effect must be > 0"),
        (settings.high_hz <= 0.01 or settings.high_hz > 0.5 / settings.tr, "--high-hz must lie in (0.01, 1/(2 TR)]"),
    ]
    for bad, message in problems:
        if bad:
            raise NmflowInputError(None, message)
