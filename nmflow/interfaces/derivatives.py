"""niworkflows' ``DerivativesDataSink`` with nmflow's BIDS config (``nmflow/data/nmflow_bids_config.json``).

The config knows the entities ``sub ses task acq run space atlas seg res den desc
meas stat`` (plus ``datatype``, ``suffix``, ``extension``) and the path
patterns of every nmflow derivative, in this entity order:

* ``sub-<s>[/ses-<x>]/func/sub-<s>[_ses-..][_task-..][_acq-..][_run-..][_space-..][_atlas-..][_seg-..]``
  ``[_res-..][_den-..][_desc-..][_meas-..][_stat-..]_<suffix>.tsv|.json`` (the BIDS schema's order) for the suffixes
  ``timeseries relmat design outliers events segments``, and ``.nii.gz|.json`` for ``statmap``;
* ``sub-<s>/figures/<same name>_<suffix>.png|.svg|.html`` for ``bold relmat connectome design
  segments statmap`` (``datatype="figures"``);
* ``sub-<s>[_ses-..][_task-..][_acq-..][_run-..][_desc-..].html`` (the run's report, top level);
* ``group/[atlas-.._][seg-.._][desc-.._][meas-.._][stat-.._]<suffix>.tsv|.json|.safetensors``
  for the suffixes ``deviations linearz stats singlecase calibration networks model
  curves subjects selection``: no ``subject`` entity.

Every entity is an input of the sink, set explicitly; ``source_file`` is
optional (when given, its entities are used as in niworkflows, read with
pybids' BIDS and derivatives configs too: dismiss those that are not nmflow
entities, e.g. ``dismiss_entities=["segmentation"]`` for ``seg-``).
``in_file`` is copied unchanged; ``meta_dict`` becomes the JSON sidecar, keys
in the given order (niworkflows sorts them).

Writing a group-level file (e.g. from a Nipype node or directly)::

    from nmflow.interfaces.derivatives import DerivativesDataSink

    sink = DerivativesDataSink(
        base_directory=str(out_dir),          # OUT_DIR, or a staging folder standing for it (group/ is added)
        in_file=str(table_tsv),               # the file to copy, any name
        atlas="Yeo2011", seg="17nThick", desc="gsr", meas="pearson",   # entities (any may be left out)
        suffix="stats", extension=".tsv",
        meta_dict={"Description": "..."},     # optional: written as the .json sidecar
    )
    result = sink.run()
    # OUT_DIR/group/atlas-Yeo2011_seg-17nThick_desc-gsr_meas-pearson_stats.tsv (+ .json);
    # result.outputs.out_file and result.outputs.out_meta are the written paths.

:class:`VariantDerivativesSink` takes the entities as one ``entities`` dict
instead (e.g. a MapNode over variants).

Importing this module imports niworkflows (~2 s): import it where workflows are
built, not at CLI start-up.  niworkflows' index of TemplateFlow's home folder
(~10 s per process) is replaced by a listing of its ``tpl-*`` folders.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import bids.layout
import templateflow.api
from bids.layout.models import Config
from bids.layout.utils import parse_file_entities
from nipype.interfaces.base import File, InputMultiObject, isdefined, traits
from templateflow.conf import TF_HOME

from nmflow.bids_io import NMFLOW_BIDS_CONFIG
from nmflow.fileio import staged_folder


def _template_names() -> list[str]:
    """TemplateFlow's template identifiers, read from the names of its home folder's ``tpl-*`` folders."""
    return sorted(p.name[len("tpl-"):] for p in Path(TF_HOME).glob("tpl-*") if p.is_dir())


# niworkflows lists the standard spaces when imported (``templateflow.api.templates()``): a pybids index of
# TemplateFlow's home folder, ~10 s in every process that imports it. The same names are the folder names.
with mock.patch.object(templateflow.api, "templates", _template_names):
    from niworkflows.interfaces.bids import DerivativesDataSink as BaseDerivativesDataSink
    from niworkflows.interfaces.bids import _DerivativesDataSinkInputSpec

_SPEC = json.loads(NMFLOW_BIDS_CONFIG.read_text())
# Entity-free stand-in for an absent source file (niworkflows needs one that starts with "sub-").
_NO_SOURCE = "sub-"


@functools.cache
def _configs() -> tuple[Config, Config, Config]:
    """pybids' ``bids`` and ``derivatives`` configs and nmflow's (the one every sink here names with), made once
    per process."""
    return (Config.load("bids"), Config.load("derivatives"),
            Config(name="custom", entities=_SPEC["entities"],
                   default_path_patterns=list(_SPEC["default_path_patterns"])))


def _source_entities(filename: str, config=None, **kwargs) -> dict:
    """The entities of a source file, parsed as niworkflows does but with the configs made once."""
    return {} if filename == _NO_SOURCE else parse_file_entities(filename, config=list(_configs()), **kwargs)


@contextlib.contextmanager
def _configs_made_once() -> Iterator[None]:
    """niworkflows' sink makes pybids' configs anew for every file it writes (three configs of some 60 entities,
    each a SQLAlchemy object: 0.14 s of a run's 113 files); here they are made once and reused."""
    with (mock.patch.object(bids.layout, "Config", lambda **kwargs: _configs()[2]),
          mock.patch.object(bids.layout, "parse_file_entities", _source_entities)):
        yield


class _NmflowSinkInputSpec(_DerivativesDataSinkInputSpec):
    in_file = InputMultiObject(File(exists=True), desc="the file(s) to save (none: an optional output that was "
                                                       "not made, e.g. no variant ranking; nothing is written)")
    source_file = InputMultiObject(
        File(exists=False), desc="file(s) whose entities are used (optional: nmflow sets entities as inputs)")


class DerivativesDataSink(BaseDerivativesDataSink):
    """Copy ``in_file`` to its BIDS-derivatives path under ``base_directory``; ``meta_dict`` as sidecar."""

    input_spec = _NmflowSinkInputSpec
    out_path_base = ""
    _config_entities = frozenset(e["name"] for e in _SPEC["entities"])
    _config_entities_dict = _SPEC["entities"]
    _file_patterns = tuple(_SPEC["default_path_patterns"])

    def _run_interface(self, runtime):
        if not isdefined(self.inputs.in_file) or not self.inputs.in_file:
            self._results["out_file"] = []
            return runtime
        if not isdefined(self.inputs.source_file):
            self.inputs.source_file = [_NO_SOURCE]
        with _configs_made_once():
            runtime = super()._run_interface(runtime)
        if "out_meta" in self._results:  # keep the key order of meta_dict
            Path(self._results["out_meta"]).write_text(json.dumps(self._metadata, indent=2))
        return runtime


class _VariantSinkInputSpec(_NmflowSinkInputSpec):
    entities = traits.Dict(desc="entities of the file as one dict (e.g. a variant's atlas, seg, desc, meas); "
                                "None values are left out")


class VariantDerivativesSink(DerivativesDataSink):
    """:class:`DerivativesDataSink` whose entities come as one dict (one item of a MapNode over variants)."""

    input_spec = _VariantSinkInputSpec

    def _run_interface(self, runtime):
        for name, value in (self.inputs.entities or {}).items():
            if value is not None:
                setattr(self.inputs, name, value)
        return super()._run_interface(runtime)


@contextlib.contextmanager
def publisher(out_dir: str | Path, written: list[str], **defaults) -> Iterator:
    """Publish one run's derivatives into ``out_dir`` all at once: yields ``sink(in_file, meta=None,
    **entities) -> path``, which names ``in_file`` with :class:`DerivativesDataSink` (``defaults`` are
    its inputs for every file) in a staging folder of ``out_dir`` and appends the files it wrote (and
    their sidecars), relative to ``out_dir``, to ``written``.  They move into place when the block ends
    without an exception (:func:`nmflow.fileio.staged_folder`): a failing run publishes nothing."""
    with staged_folder(out_dir) as stage:
        def sink(in_file, meta: dict | None = None, **entities) -> str:
            extra = {"meta_dict": meta} if meta is not None else {}
            result = DerivativesDataSink(base_directory=str(stage), in_file=str(in_file), **defaults, **extra,
                                         **entities).run()
            files = [result.outputs.out_file] + ([result.outputs.out_meta] if meta is not None else [])
            written.extend(str(Path(f).relative_to(stage)) for f in files)
            return result.outputs.out_file

        yield sink
