"""The stimulus study's group level: the cohort's ΔFC, who is a case and who a control, the single-case tables.

The Nipype interfaces of :mod:`nmflow.interfaces.prepost_group` call one
function each; a ΔFC feature set travels between them as an NPZ
(:func:`save_delta`, :func:`load_delta`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nmflow.bids_io import layout
from nmflow.errors import NmflowInputError
from nmflow.fileio import load_npz, save_npz, write_tsv
from nmflow.group.features import FeatureSet, Variant, collect_relmats, read_participants
from nmflow.prepost.singlecase import SINGLECASE_COLUMNS, single_case_changes, split_cohort

DESC = "delta"  # the participant level's ΔFC relmats: desc-delta


def collect_deltas(out_dir: str | Path, subjects: list[str] | None) -> list[FeatureSet]:
    """Every subject's ΔFC relmats (``desc-delta``) under ``out_dir``, found with PyBIDS, one feature set per
    metric (``subjects``: labels to keep, None for all).

    Raises
    ------
    NmflowInputError
        No ΔFC at all, or ΔFC of more than one atlas.
    """
    sets = [fs for v, fs in collect_relmats(layout(out_dir), subjects).items() if v.desc == DESC]
    if not sets:
        raise NmflowInputError(out_dir, "no participant-level ΔFC (desc-delta relmat): run "
                                        "'participant --analysis prepost' first")
    atlases = sorted({(fs.variant.atlas or "", fs.variant.seg or "") for fs in sets})
    if len(atlases) > 1:
        raise NmflowInputError(out_dir, f"ΔFC of {len(atlases)} atlases ({atlases}); the stimulus study takes one: "
                                        "use one OUT_DIR per atlas")
    return sets


def save_delta(path: str | Path, delta: FeatureSet) -> str:
    """Save a ΔFC feature set as NPZ (read back by :func:`load_delta`); returns ``path``."""
    v = delta.variant
    return save_npz(path, {"features": delta.features, "subjects": np.array(delta.subjects),
                           "regions": np.array(delta.regions), "n_runs": np.array(delta.n_runs),
                           "variant": np.array([v.atlas or "", v.seg or "", v.meas])})


def load_delta(path: str | Path) -> FeatureSet:
    """A ΔFC feature set saved by :func:`save_delta`."""
    a = load_npz(path)[0]
    atlas, seg, meas = (str(x) or None for x in a["variant"])
    return FeatureSet(Variant(atlas, seg, DESC, meas), [str(s) for s in a["subjects"]],
                      [str(r) for r in a["regions"]], a["features"], [int(n) for n in a["n_runs"]])


def split_cases(path: Path, deltas: list[FeatureSet], participants: str | Path, group_column: str,
                control_label: str, case_labels: list[str] | None) -> tuple[list[str], list[str], dict[str, str]]:
    """Who is a case and who a control among the subjects with a ΔFC (``case_labels`` or the participants file's
    ``group_column``; at least 3 controls); writes the table ``path`` (participant_id, group, role).

    Returns
    -------
    cases, controls : list of str
        Labels without ``sub-``.
    groups : dict
        The group of every subject with a ΔFC (``n/a`` when the participants file lacks it).
    """
    table = read_participants(participants, group_column, None, [])
    subjects = sorted({s for delta in deltas for s in delta.subjects})
    cases, controls = split_cohort(table, subjects, control_label, case_labels, participants)
    groups = {s: str(table["group"].get(s, "n/a")) for s in subjects}
    write_tsv(path, pd.DataFrame({"participant_id": [f"sub-{s}" for s in cases + controls],
                                  "group": [groups[s] for s in cases + controls],
                                  "role": ["case"] * len(cases) + ["control"] * len(controls)}))
    return cases, controls, groups


SUBJECTS_META = {"role": {"Description": "case: tested against the controls; control: in the reference sample"}}


def write_single_cases(path: Path, delta: FeatureSet, cases: list[str], controls: list[str], groups: dict[str, str],
                       alpha: float) -> dict:
    """Each case's ΔFC against the controls' per connection (Crawford-Howell, Benjamini-Hochberg over the case's
    connections at ``alpha``), written to ``path`` (TSV, every case x connection); returns its sidecar."""
    frame = single_case_changes(delta, cases, controls, pd.Series(groups), alpha)
    write_tsv(path, frame, "%.8g")
    return {"Description": f"Single case vs controls on ΔFC ({delta.variant.meas}), Crawford-Howell test per "
                           f"connection, Benjamini-Hochberg over each case's connections, alpha {alpha}",
            **{c: {"Description": d} for c, d in SINGLECASE_COLUMNS.items()}}
