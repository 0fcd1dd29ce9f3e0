"""Nipype interface: cleaned region signals -> FC matrices for every metric."""

from __future__ import annotations

import os

from nipype.interfaces.base import BaseInterfaceInputSpec, File, InputMultiObject, SimpleInterface, TraitedSpec, traits

from nmflow.fileio import load_npz, save_npz
from nmflow.participant.connectivity import METRICS, connectivity
from nmflow.participant.tables import key


class _ConnectivityInputSpec(BaseInterfaceInputSpec):
    cleaned = File(exists=True, mandatory=True, desc="NPZ of cleaned signals (Denoise)")
    strategies = InputMultiObject(traits.Str, mandatory=True, desc="strategy names")
    atlas_names = InputMultiObject(traits.Str, mandatory=True, desc="atlas names")
    metrics = InputMultiObject(traits.Enum(*METRICS.keys()), mandatory=True, desc="FC metrics")


class _ConnectivityOutputSpec(TraitedSpec):
    relmats = File(exists=True, desc="NPZ: 'strategy|atlas|metric' -> (n_regions, n_regions)")


class Connectivity(SimpleInterface):
    """Compute every FC metric for every strategy x atlas."""

    input_spec = _ConnectivityInputSpec
    output_spec = _ConnectivityOutputSpec

    def _run_interface(self, runtime):
        cleaned = load_npz(self.inputs.cleaned)[0]
        out = {
            key(s, a, m): connectivity(cleaned[key(s, a)], m)
            for s in self.inputs.strategies for a in self.inputs.atlas_names for m in self.inputs.metrics
        }
        self._results["relmats"] = save_npz(os.path.join(runtime.cwd, "relmats.npz"), out)
        return runtime
