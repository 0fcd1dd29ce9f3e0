"""Nipype interfaces: place group-level outputs (named by their variant) into the staging folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec, Directory, File, SimpleInterface, TraitedSpec, traits,
)

ENTITY_ORDER = ("atlas", "seg", "desc", "meas")


class _GroupSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = Directory(mandatory=True, desc="staging folder of OUT_DIR/group")
    in_file = File(exists=True, desc="file to place (absent: nothing to write)")
    entities = traits.Dict(mandatory=True, desc="variant entities (atlas, seg, desc, meas); empty for cohort files")
    suffix = traits.Str(mandatory=True, desc="BIDS suffix")
    extension = traits.Str(mandatory=True, desc="extension with its dot")
    meta_dict = traits.Dict(desc="JSON sidecar content")


class _GroupSinkOutputSpec(TraitedSpec):
    out_file = traits.Str(desc="written file")


class GroupSink(SimpleInterface):
    """Copy ``in_file`` to ``<entities>_<suffix><extension>`` with its JSON sidecar."""

    input_spec = _GroupSinkInputSpec
    output_spec = _GroupSinkOutputSpec

    def _run_interface(self, runtime):
        if not self.inputs.in_file:
            return runtime
        ents = self.inputs.entities
        name = "_".join([f"{k}-{ents[k]}" for k in ENTITY_ORDER if ents.get(k)] + [self.inputs.suffix])
        target = Path(self.inputs.base_directory) / f"{name}{self.inputs.extension}"
        shutil.copyfile(self.inputs.in_file, target)
        target.with_suffix(".json").write_text(json.dumps(self.inputs.meta_dict, indent=2, default=str))
        self._results["out_file"] = str(target)
        return runtime


class _CopyReportInputSpec(BaseInterfaceInputSpec):
    base_directory = Directory(mandatory=True, desc="staging folder of OUT_DIR/group")
    report_dir = Directory(exists=True, mandatory=True, desc="folder with group_report.html and figures/")


class CopyGroupReport(SimpleInterface):
    """Copy the report folder's content into the staging folder."""

    input_spec = _CopyReportInputSpec
    output_spec = TraitedSpec

    def _run_interface(self, runtime):
        shutil.copytree(self.inputs.report_dir, self.inputs.base_directory, dirs_exist_ok=True)
        return runtime
