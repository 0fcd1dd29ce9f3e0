"""Single case vs controls on the FC change: each patient's ΔFC against the controls' ΔFC, connection by connection.

The test is :func:`nmflow.stats.crawford_howell` (Crawford & Howell 1998;
Z-CC and its interval, Crawford & Garthwaite 2002); the p-values of one
patient's connections are Benjamini-Hochberg adjusted together (per metric).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.bids_io import strip_prefix
from nmflow.errors import NmflowInputError
from nmflow.group.features import FeatureSet
from nmflow.stats import benjamini_hochberg, crawford_howell

MIN_CONTROLS = 3


def split_cohort(table: pd.DataFrame, subjects: list[str], control_label: str, case_labels: list[str] | None,
                 source: str | Path) -> tuple[list[str], list[str]]:
    """The cases and the controls among ``subjects`` (labels without ``sub-``) that have a ΔFC.

    Cases are ``case_labels`` when given (each must have a ΔFC), else every
    subject whose group is not ``control_label``; controls are the subjects of
    group ``control_label`` that are not cases.  :class:`NmflowInputError`
    (naming ``source``, the participants file) without a case or with fewer
    than 3 controls.
    """
    known = [s for s in subjects if s in table.index]
    if case_labels:
        cases = [strip_prefix(c) for c in case_labels]
        missing = [c for c in cases if c not in subjects]
        if missing:
            raise NmflowInputError(None, f"--case-label {' '.join(missing)}: no participant-level ΔFC "
                                         "(desc-delta relmat) found for them")
    else:
        cases = [s for s in known if table.loc[s, "group"] != control_label]
    controls = [s for s in known if table.loc[s, "group"] == control_label and s not in cases]
    if not cases:
        raise NmflowInputError(source, f"no case: every subject with a ΔFC is a control ({control_label!r}); give "
                                       "--case-label or a patient group")
    if len(controls) < MIN_CONTROLS:
        raise NmflowInputError(source, f"{len(controls)} control(s) with a ΔFC (group {control_label!r}); the "
                                       f"single-case test needs at least {MIN_CONTROLS}")
    return cases, controls


def single_case_changes(delta: FeatureSet, cases: list[str], controls: list[str], groups: pd.Series,
                        alpha: float = 0.05) -> pd.DataFrame:
    """Crawford-Howell test of every case's ΔFC on every connection against the controls'.

    Parameters
    ----------
    delta : FeatureSet
        ΔFC (Fisher z POST - PRE) of every subject, ``features`` ``(n_subjects, n_connections)``.
    cases, controls : list of str
        Subject labels (no ``sub-``).
    groups : Series
        Group of each subject, indexed by label.
    alpha : float
        FDR level: ``significant`` is ``q < alpha``.

    Returns
    -------
    DataFrame
        One row per case and connection: ``participant_id group connection network_a network_b
        case_delta controls_mean controls_sd n_controls df t p p_less p_greater percent_more_extreme
        z_cc z_cc_low z_cc_high q significant``.
    """
    row_of = {s: k for k, s in enumerate(delta.subjects)}
    reference = delta.features[[row_of[s] for s in controls]]
    rows, cols = np.triu_indices(len(delta.regions), k=1)
    frames = []
    for case in cases:
        x = delta.features[row_of[case]]
        result = crawford_howell(x, reference)
        q = benjamini_hochberg(result.p_two_sided)
        frames.append(pd.DataFrame({
            "participant_id": f"sub-{case}", "group": groups.get(case, "n/a"), "connection": delta.names,
            "network_a": np.array(delta.regions)[rows], "network_b": np.array(delta.regions)[cols],
            "case_delta": x, "controls_mean": reference.mean(axis=0), "controls_sd": reference.std(axis=0, ddof=1),
            "n_controls": len(controls), "df": result.df, "t": result.t, "p": result.p_two_sided,
            "p_less": result.p_less, "p_greater": result.p_greater,
            "percent_more_extreme": result.percent_more_extreme, "z_cc": result.z_cc,
            "z_cc_low": result.z_cc_ci[0], "z_cc_high": result.z_cc_ci[1], "q": q, "significant": q < alpha}))
    return pd.concat(frames, ignore_index=True)


SINGLECASE_COLUMNS = {
    "connection": "network_a__network_b (upper triangle, numpy.triu_indices order)",
    "case_delta": "the case's ΔFC: Fisher z of the POST segment's FC minus the PRE segment's",
    "controls_mean": "mean ΔFC of the controls", "controls_sd": "their SD (ddof 1)",
    "t": "Crawford-Howell modified t = (x - mean) / (sd sqrt((n + 1) / n)), df = n - 1",
    "p": "two-sided p", "p_less": "one-sided p, case below the controls",
    "p_greater": "one-sided p, case above the controls",
    "percent_more_extreme": "estimated percentage of the control population beyond the case on its side "
                            "(100 x the one-sided p; Crawford & Garthwaite 2002)",
    "z_cc": "(x - mean) / sd", "z_cc_low": "lower limit of Z-CC's 95 % interval (non-central t)",
    "z_cc_high": "upper limit of Z-CC's 95 % interval",
    "q": "Benjamini-Hochberg q of p over the case's connections", "significant": "q < alpha",
}
