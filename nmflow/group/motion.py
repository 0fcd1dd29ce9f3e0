"""Head motion of the cohort: framewise displacement per scan, motion by group, and QC-FC.

The participant level writes, per run and denoising strategy, an
``*_desc-<strategy>_outliers.tsv`` with fMRIPrep's ``framewise_displacement``
(mm, one row per volume) and the ``censored`` volumes; :func:`collect_motion`
reads them with PyBIDS.  A subject's *mean FD* is the mean over its volumes,
averaged over its runs.

QC-FC (Ciric et al. 2017; Parkes et al. 2018) is the correlation, across
subjects, of mean FD with each connection's FC: with good denoising about
the nominal 5 % of connections correlate significantly (p < 0.05,
uncorrected) and the median ``|r|`` is small.

Mean FD is also a covariate the normative models can condition on
(``--covariates ... mean_fd``): :func:`with_mean_fd` gives every subject of
the cohort its value, from ``participants.tsv`` or the ``*_outliers.tsv``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from nmflow.bids_io import bids_name
from nmflow.errors import NmflowInputError

MEAN_FD = "mean_fd"  # the covariate: a subject's mean framewise displacement (mm)
QCFC_TARGET = 0.1  # median |r| of QC-FC above which motion is said to remain
FD_SOURCES = {"participants.tsv": "the participants file's mean_fd column",
              "outliers": "the participant level's *_outliers.tsv: mean framewise_displacement over each scan's "
                          "volumes, averaged over the subject's scans"}
RUN_COLUMNS = ["participant_id", "scan", "desc", "n_volumes", "mean_fd", "max_fd", "pct_censored"]


def collect_motion(lay, subjects: list[str]) -> pd.DataFrame:
    """Motion of every run and strategy of ``subjects`` (labels without ``sub-``).

    Parameters
    ----------
    lay : bids.BIDSLayout or None
        Layout of the participant-level outputs (None: nothing to read).
    subjects : list of str

    Returns
    -------
    DataFrame
        One row per ``*_outliers.tsv`` (:data:`RUN_COLUMNS`): ``scan`` is the
        run's name (``sub-01_ses-1_task-rest_run-1``), ``mean_fd``/``max_fd``
        in mm over the volumes with a value, ``pct_censored`` the percentage
        of volumes the strategy dropped.  Empty without such files.
    """
    rows = []
    files = lay.get(suffix="outliers", extension=".tsv", subject=subjects) if lay is not None and subjects else []
    for f in files:
        ents = f.get_entities()
        table = pd.read_csv(f.path, sep="\t", na_values="n/a")
        if "framewise_displacement" not in table:
            continue
        fd = table["framewise_displacement"].to_numpy(float)
        censored = table["censored"].to_numpy(float) if "censored" in table else np.zeros(len(table))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a run without any FD value
            mean_fd, max_fd = np.nanmean(fd), np.nanmax(fd)
        scan = bids_name({k: ents.get(k) for k in ("subject", "session", "task", "acquisition", "run")}, None, None)
        rows.append({"participant_id": f"sub-{ents['subject']}", "scan": scan, "desc": ents.get("desc", ""),
                     "n_volumes": len(table), "mean_fd": mean_fd, "max_fd": max_fd,
                     "pct_censored": 100.0 * float(np.mean(censored > 0)) if len(table) else np.nan})
    return pd.DataFrame(rows, columns=RUN_COLUMNS).sort_values(["participant_id", "scan", "desc"], ignore_index=True)


def participant_reports(out_dir: str | Path, subjects: list[str]) -> list[str]:
    """Participant-level reports (``sub-<label>[_ses-..]_task-..[_run-..].html`` in ``out_dir``) of ``subjects``."""
    wanted = {f"sub-{s}" for s in subjects}
    return sorted(p.name for p in Path(out_dir).glob("sub-*.html") if p.name.split("_")[0].split(".")[0] in wanted)


def strategy_runs(runs: pd.DataFrame, desc: str | None) -> pd.DataFrame:
    """The rows of strategy ``desc``; FD is the same for every strategy, so any strategy's rows without it."""
    if runs.empty:
        return runs
    mine = runs[runs.desc == desc]
    return mine if len(mine) else runs[runs.desc == runs.desc.iloc[0]]


def scan_mean_fd(runs: pd.DataFrame, participant_ids: list[str]) -> np.ndarray:
    """Mean FD (mm) of each subject ``(n_subjects,)`` from any strategy's rows: each scan's mean over its
    volumes (FD does not depend on the strategy: the first strategy's value), averaged over the subject's
    scans; NaN without a scan."""
    if runs.empty:
        return np.full(len(participant_ids), np.nan)
    per_scan = runs.groupby(["participant_id", "scan"])["mean_fd"].first()
    return per_scan.groupby(level="participant_id").mean().reindex(participant_ids).to_numpy(float)


def with_mean_fd(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``table`` (participants rows indexed by label without ``sub-``) with ``mean_fd`` and ``mean_fd_source``.

    ``mean_fd`` (mm) is the participants file's own ``mean_fd`` where it holds
    a number, else :func:`scan_mean_fd` of ``runs`` (:func:`collect_motion`),
    else NaN; ``mean_fd_source`` says which (a key of :data:`FD_SOURCES`, NaN
    when unknown).

    Raises
    ------
    NmflowInputError
        The participants file's ``mean_fd`` holds text that is not a number.
    """
    out = table.copy()
    given = out[MEAN_FD] if MEAN_FD in out else pd.Series(np.nan, index=out.index)
    number = pd.to_numeric(given, errors="coerce")
    bad = given.notna() & number.isna()
    if bad.any():
        raise NmflowInputError(None, f"column {MEAN_FD} is not a number for "
                               + ", ".join(f"sub-{x} ({given[x]!r})" for x in out.index[bad][:5]))
    from_runs = scan_mean_fd(runs, [f"sub-{x}" for x in out.index])
    known = np.isfinite(number.to_numpy(float))
    out[MEAN_FD] = np.where(known, number.to_numpy(float), from_runs)
    out["mean_fd_source"] = np.where(known, "participants.tsv", np.where(np.isfinite(from_runs), "outliers", None))
    return out


def motion_by_group(fd: np.ndarray, groups: np.ndarray, control_label: str) -> pd.DataFrame:
    """Mean FD per group and a two-sided Mann-Whitney test of each patient group against the controls.

    Parameters
    ----------
    fd : ndarray, shape (n_subjects,)
        Mean FD (mm); NaN: unknown.
    groups : ndarray of str, shape (n_subjects,)

    Returns
    -------
    DataFrame
        ``group n mean sd median U p`` (``U`` of the group's sample; NaN for the controls).
    """
    fd, groups = np.asarray(fd, float), np.asarray(groups, str)
    known = np.isfinite(fd)
    controls = fd[known & (groups == control_label)]
    rows = []
    for g in [control_label] + sorted(set(groups) - {control_label}):
        values = fd[known & (groups == g)]
        u = p = np.nan
        if g != control_label and len(values) and len(controls):
            test = sps.mannwhitneyu(values, controls, alternative="two-sided")
            u, p = float(test.statistic), float(test.pvalue)
        rows.append({"group": g, "n": len(values), "mean": np.mean(values) if len(values) else np.nan,
                     "sd": np.std(values, ddof=1) if len(values) > 1 else np.nan,
                     "median": np.median(values) if len(values) else np.nan, "U": u, "p": p})
    return pd.DataFrame(rows)
