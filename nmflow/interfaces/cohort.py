"""Nipype interfaces: the cohort of a group run (features found with PyBIDS, the cross-fitting split).

Every group-level interface receives the :class:`~nmflow.group.settings.GroupSettings`
fields it uses as a dict (``settings``), so a changed option reruns only the
steps that read it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec, File, InputMultiObject, SimpleInterface, TraitedSpec, isdefined, traits,
)

from nmflow.group.settings import GroupSettings

if TYPE_CHECKING:
    from nmflow.group.records import Split


class GroupStepInputSpec(BaseInterfaceInputSpec):
    settings = traits.Dict(mandatory=True, desc="the GroupSettings fields this step uses")


class CohortStepInputSpec(GroupStepInputSpec):
    subjects = InputMultiObject(traits.Str, mandatory=True, desc="subject labels of the cohort, in order")
    split = File(exists=True, mandatory=True, desc="cross-fitting plan (NPZ)")
    motion = File(exists=True, desc="motion per run and strategy (TSV + NPZ): the subjects' mean FD when the "
                                    "participants file lacks it")


def settings_of(inputs) -> GroupSettings:
    """The settings of a step (fields it does not use keep their defaults)."""
    return GroupSettings(**inputs.settings)


def cohort_of(inputs, record: str | None = None) -> tuple[GroupSettings, pd.DataFrame, Split]:
    """Settings, participants table (with ``mean_fd``: :func:`nmflow.group.cohort.load_table`) and split
    of a step.

    Rows are the cohort's ``subjects``, or, with ``record`` (a variant's
    features, prepared or scored NPZ), the subjects that have that variant.
    """
    from nmflow.group.cohort import load_table
    from nmflow.group.records import Split, record_subjects
    from nmflow.group.tables import read_table

    s = settings_of(inputs)
    motion = read_table(Path(inputs.motion).with_suffix(".npz")) if isdefined(inputs.motion) else None
    table, split = load_table(s, list(inputs.subjects), motion), Split.load(inputs.split)
    if record is None:
        return s, table, split
    subjects = record_subjects(record)
    return s, table.loc[subjects], split.subset(table.index.get_indexer(subjects))


class TableStep(SimpleInterface):
    """A group step of one variant whose results are tables: :meth:`tables` returns ``{output: (frame, sidecar)}``.

    The cohort it sees is the subjects of the variant's record (the input
    named by ``record_input``).  Each table is written as ``<output>.tsv``
    (+ a full-precision ``.npz``) and its sidecar becomes the output
    ``<output>_meta``.
    """

    record_input = "scored"

    def tables(self, settings: GroupSettings, table: pd.DataFrame, split, cwd: str) -> dict:
        raise NotImplementedError

    def _run_interface(self, runtime):
        from nmflow.group.tables import write_table

        s, table, split = cohort_of(self.inputs, getattr(self.inputs, self.record_input))
        for name, (frame, meta) in self.tables(s, table, split, runtime.cwd).items():
            self._results[name] = write_table(os.path.join(runtime.cwd, name), frame)[0]
            self._results[f"{name}_meta"] = meta
        return runtime


def base_model(settings: GroupSettings):
    """The ``--init-model`` (None without)."""
    from nmflow.normative.model import load_model

    return load_model(settings.init_model) if settings.init_model else None


class _CollectCohortOutputSpec(TraitedSpec):
    features = traits.List(File(exists=True), desc="one NPZ per variant: features aligned to the subjects")
    subjects = traits.List(traits.Str, desc="subject labels of the cohort (sorted)")
    messages = traits.List(traits.Str, desc="notes for the log and the report")
    missing = traits.List(traits.Dict, desc="one row per subject and variant it lacks (participant_id, variant, "
                          "reason)")
    motion = File(exists=True, desc="motion per run and strategy (TSV + NPZ, nmflow.group.motion.RUN_COLUMNS)")
    reports = traits.List(traits.Str, desc="participant reports of the cohort (names in OUT_DIR)")


class CollectCohort(SimpleInterface):
    """Find the participant-level FC, motion and reports (PyBIDS) or time series, and the cohort's participants."""

    input_spec = GroupStepInputSpec
    output_spec = _CollectCohortOutputSpec

    def _run_interface(self, runtime):
        from nmflow.group.cohort import collect_cohort
        from nmflow.group.tables import write_table

        s = settings_of(self.inputs)
        base = base_model(s)
        found = collect_cohort(s, base.card if base is not None else None)
        self._results["features"] = [vf.save(os.path.join(runtime.cwd, f"features_{k:03d}.npz"))
                                     for k, vf in enumerate(found.features)]
        self._results["subjects"] = found.subjects
        self._results["messages"] = found.messages
        self._results["missing"] = found.missing
        self._results["motion"] = write_table(os.path.join(runtime.cwd, "motion"), found.motion)[0]
        self._results["reports"] = found.reports
        return runtime


class _MakeSplitInputSpec(GroupStepInputSpec):
    subjects = InputMultiObject(traits.Str, mandatory=True, desc="subject labels of the cohort, in order")
    missing = traits.List(traits.Dict, mandatory=True, desc="subjects and the variants they lack, with reasons")
    n_variants = traits.Int(1, usedefault=True, desc="variants of the cohort (two or more are ranked)")


class _MakeSplitOutputSpec(TraitedSpec):
    split = File(exists=True, desc="cross-fitting plan (NPZ)")
    subjects_table = File(exists=True, desc="subjects.tsv: participant_id, group, site, split")
    subjects_meta = traits.Dict(desc="sidecar of subjects.tsv")


class MakeSplit(SimpleInterface):
    """Plan the cross-fitting over the controls (stratified by site) or read ``--split-file``."""

    input_spec = _MakeSplitInputSpec
    output_spec = _MakeSplitOutputSpec

    def _run_interface(self, runtime):
        from nmflow.group.cohort import load_table, make_split, subjects_table
        from nmflow.group.tables import subjects_description, write_table

        s = settings_of(self.inputs)
        table = load_table(s, list(self.inputs.subjects))
        split = make_split(s, table, s.init_model is not None, self.inputs.n_variants)
        self._results["split"] = split.save(os.path.join(runtime.cwd, "split.npz"))
        self._results["subjects_table"] = write_table(os.path.join(runtime.cwd, "subjects"),
                                                      subjects_table(table, split, self.inputs.missing))[0]
        self._results["subjects_meta"] = subjects_description()
        return runtime
