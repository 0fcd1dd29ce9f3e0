"""Nipype interface: BOLD + mask (or a CIFTI dense time series) -> raw region signals of every atlas (one read)."""

from __future__ import annotations

import os

import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits

from nmflow.fileio import save_npz
from nmflow.interfaces.io import atlases_from_records
from nmflow.participant.grayordinates import extract_grayordinate_signals, is_dtseries
from nmflow.participant.parcellate import extract_signals


class _ExtractSignalsInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True, desc="fMRIPrep desc-preproc_bold image (4D), or its "
                "space-fsLR_den-91k_bold.dtseries.nii")
    mask = File(exists=True, desc="fMRIPrep desc-brain_mask image on the BOLD grid (none for a dtseries)")
    atlases = traits.List(traits.Dict, mandatory=True, desc="resolved atlases (nmflow.interfaces.io.atlas_records)")
    min_coverage = traits.Float(0.5, usedefault=True, desc="regions with less coverage inside the mask become NaN")


class _ExtractSignalsOutputSpec(TraitedSpec):
    signals = File(exists=True, desc="NPZ: '<atlas>' -> (n_volumes, n_regions), 'coverage|<atlas>', "
                   "'names|<atlas>' (region names), carpet, tsnr, bold (its path, for messages)")


class ExtractSignals(SimpleInterface):
    """Average the BOLD inside every region of every atlas."""

    input_spec = _ExtractSignalsInputSpec
    output_spec = _ExtractSignalsOutputSpec

    def _run_interface(self, runtime):
        atlases = atlases_from_records(self.inputs.atlases)
        if is_dtseries(self.inputs.bold):
            result = extract_grayordinate_signals(self.inputs.bold, atlases, self.inputs.min_coverage)
        else:
            result = extract_signals(self.inputs.bold, self.inputs.mask, atlases, self.inputs.min_coverage)
        arrays = dict(result.signals)
        arrays.update({f"coverage|{name}": cov for name, cov in result.coverage.items()})
        arrays.update({f"names|{atlas.name}": np.array(atlas.names, dtype=str) for atlas in atlases})
        arrays["bold"] = np.array(str(self.inputs.bold))
        arrays.update(carpet=result.carpet, carpet_labels=result.carpet_labels, tsnr=result.tsnr)
        self._results["signals"] = save_npz(os.path.join(runtime.cwd, "signals.npz"), arrays)
        return runtime
