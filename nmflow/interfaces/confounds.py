"""Nipype interface: raw region signals + confounds -> cleaned signals per strategy."""

from __future__ import annotations

import os
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec, File, InputMultiObject, OutputMultiObject, SimpleInterface, TraitedSpec, traits,
)

from nmflow.errors import NmflowInputError, StrategyError
from nmflow.fileio import load_npz, save_npz, write_tsv
from nmflow.interfaces.io import strategies_from_records
from nmflow.participant.denoise import clean_run, clean_signals, read_confounds
from nmflow.participant.settings import CleaningSettings
from nmflow.participant.tables import key


class _DenoiseInputSpec(BaseInterfaceInputSpec):
    signals = File(exists=True, mandatory=True, desc="NPZ of raw region signals (ExtractSignals)")
    atlas_names = InputMultiObject(traits.Str, mandatory=True, desc="atlas keys of the NPZ to clean")
    confounds = File(mandatory=True, desc="fMRIPrep desc-confounds_timeseries.tsv (checked when read)")
    tr = traits.Float(mandatory=True, desc="repetition time (s)")
    strategies = traits.List(traits.Dict, mandatory=True, desc="denoising strategies (strategy_records)")
    settings = traits.Dict(mandatory=True, desc="CleaningSettings fields (filter in Hz, thresholds)")


class _DenoiseOutputSpec(TraitedSpec):
    cleaned = File(exists=True, desc="NPZ: 'strategy|atlas' -> (n_kept, n_regions), 'kept|strategy', "
                   "'carpet|strategy' (the voxel sample cleaned, (n_voxels, n_kept), for the report)")
    strategies = OutputMultiObject(traits.Str, desc="strategies that ran (the others are in 'skipped')")
    skipped = traits.List(traits.Str, desc="why each strategy that could not run on this run was skipped "
                          "(one line each, in the order of the strategies)")
    design_files = OutputMultiObject(File(exists=True), desc="confound matrix used, one TSV per strategy that ran")
    outlier_files = OutputMultiObject(File(exists=True), desc="per-volume outliers, one TSV per strategy that ran")


class Denoise(SimpleInterface):
    """Clean the region signals of all atlases with every strategy; a strategy that cannot run is skipped."""

    input_spec = _DenoiseInputSpec
    output_spec = _DenoiseOutputSpec

    def _run_interface(self, runtime):
        arrays = load_npz(self.inputs.signals)[0]
        signals = {name: arrays[name] for name in self.inputs.atlas_names}
        names = {name: [str(n) for n in arrays[f"names|{name}"]] for name in self.inputs.atlas_names}
        confounds = read_confounds(self.inputs.confounds)
        settings = CleaningSettings(**self.inputs.settings)
        out, done, skipped, designs, outliers = {}, [], [], [], []
        for strategy in strategies_from_records(self.inputs.strategies):
            try:
                run = clean_run(signals, confounds, self.inputs.tr, strategy, settings, source=self.inputs.confounds,
                                names=names, bold=str(arrays["bold"]))
            except StrategyError as exc:
                skipped.append(exc)
                continue
            done.append(strategy.name)
            out.update({key(strategy.name, atlas): ts for atlas, ts in run.timeseries.items()})
            out[key("carpet", strategy.name)] = clean_signals(
                arrays["carpet"].T, run.design, run.kept, self.inputs.tr, strategy, settings).T
            out[key("kept", strategy.name)] = run.kept
            designs.append(write_tsv(os.path.join(runtime.cwd, f"design_{strategy.name}.tsv"), run.design, "%.8g"))
            outliers.append(write_tsv(os.path.join(runtime.cwd, f"outliers_{strategy.name}.tsv"), run.outliers))
        if len(skipped) == 1 and not done:
            raise skipped[0]
        if not done:
            raise NmflowInputError(None, "no denoising strategy could run: " + "; ".join(map(str, skipped)))
        self._results.update(cleaned=save_npz(os.path.join(runtime.cwd, "cleaned.npz"), out), strategies=done,
                             skipped=[f"{Path(e.path).name}: {e.problem}" if e.path else e.problem for e in skipped], design_files=designs, outlier_files=outliers)
        return runtime
