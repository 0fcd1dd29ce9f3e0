"""Nipype interfaces: normative models of the group level (preprocess, train by width, score)."""

from __future__ import annotations

import os
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec, File, InputMultiObject, SimpleInterface, TraitedSpec, traits,
)

from nmflow.interfaces.cohort import CohortStepInputSpec, TableStep, base_model, cohort_of


def trained_name(label: str) -> str:
    """File name of a variant's trained models."""
    return f"trained_{label}.npz"


class _PrepareInputSpec(CohortStepInputSpec):
    features = File(exists=True, mandatory=True, desc="one variant's features (NPZ from CollectCohort)")


class _PrepareOutputSpec(TraitedSpec):
    prepared = File(exists=True, desc="the variant preprocessed for every fit (NPZ)")
    batch_key = traits.Str(desc="input width and subjects: variants with the same key train together")


class PrepareVariant(SimpleInterface):
    """Per fit, from its controls only: imputation, ComBat, scaler, covariate coding, linear baseline."""

    input_spec = _PrepareInputSpec
    output_spec = _PrepareOutputSpec

    def _run_interface(self, runtime):
        from nmflow.group.fitting import batch_key, prepare_variant
        from nmflow.group.records import VariantFeatures

        s, table, split = cohort_of(self.inputs, self.inputs.features)
        prepared = prepare_variant(VariantFeatures.load(self.inputs.features), table, split, s, base_model(s))
        path = os.path.join(runtime.cwd, "prepared.npz")
        self._results["prepared"] = prepared.save(path, prepared.features.save(
            os.path.join(runtime.cwd, "features_mapped.npz")))
        self._results["batch_key"] = batch_key(prepared)
        return runtime


class _BatchInputSpec(BaseInterfaceInputSpec):
    prepared = InputMultiObject(File(exists=True), mandatory=True, desc="prepared variants")
    keys = InputMultiObject(traits.Str, mandatory=True, desc="batch key of each prepared variant")


class _BatchOutputSpec(TraitedSpec):
    batches = traits.List(traits.List(File(exists=True)), desc="prepared variants grouped by batch key, in order")


class BatchByWidth(SimpleInterface):
    """Group the variants by input width and subjects, keeping their order (one training batch per group)."""

    input_spec = _BatchInputSpec
    output_spec = _BatchOutputSpec

    def _run_interface(self, runtime):
        batches: dict[str, list[str]] = {}
        for path, key in zip(self.inputs.prepared, self.inputs.keys):
            batches.setdefault(key, []).append(path)
        self._results["batches"] = list(batches.values())
        return runtime


class _TrainInputSpec(CohortStepInputSpec):
    prepared = InputMultiObject(File(exists=True), mandatory=True,
                                desc="prepared variants of one width and one set of subjects")


class _TrainOutputSpec(TraitedSpec):
    trained = traits.List(File(exists=True), desc="per variant: its models' weights, learning curves "
                                "and their index (NPZ named trained_<variant>.npz)")


class TrainModels(SimpleInterface):
    """Train every model of these variants (cross-fitting fits, final fit, bootstrap) as one stacked batch."""

    input_spec = _TrainInputSpec
    output_spec = _TrainOutputSpec

    def _run_interface(self, runtime):
        from nmflow.group.fitting import train_width
        from nmflow.group.records import Prepared, save_trained

        s, _, split = cohort_of(self.inputs, self.inputs.prepared[0])  # one batch, one set of subjects
        prepared = {}
        for path in self.inputs.prepared:
            p = Prepared.load(path, large=(), raw=False)  # train_width reads each fit's features in turn
            prepared[p.features.variant.label] = p
        result, index = train_width(prepared, split, s, base_model(s))
        self._results["trained"] = [save_trained(os.path.join(runtime.cwd, trained_name(label)), result,
                                                 index[index.variant == label]) for label in prepared]
        return runtime


class _ScoreInputSpec(CohortStepInputSpec):
    prepared = File(exists=True, mandatory=True, desc="one prepared variant")
    trained = InputMultiObject(File(exists=True), mandatory=True, desc="every variant's trained models")


class _ScoreOutputSpec(TraitedSpec):
    scored = File(exists=True, desc="deviations of both models at full precision (NPZ)")
    deviations = File(exists=True, desc="autoencoder deviations (TSV)")
    deviations_meta = traits.Dict(desc="sidecar of the deviations")
    linearz = File(exists=True, desc="linear-baseline deviations (TSV)")
    linearz_meta = traits.Dict(desc="sidecar of the linear deviations")
    calibration = File(exists=True, desc="calibration table (TSV)")
    calibration_meta = traits.Dict(desc="sidecar of the calibration")
    model = File(exists=True, desc="the model fitted on all fitting controls (safetensors)")
    model_meta = traits.Dict(desc="its model card")
    curves = File(exists=True, desc="learning curves of that model (TSV)")
    curves_meta = traits.Dict(desc="sidecar of the curves")
    entities = traits.Dict(desc="BIDS entities of the variant (atlas, seg, desc, meas)")


class ScoreDeviations(TableStep):
    """Out-of-sample signed residual z of every tested subject, calibration, and the model to keep."""

    input_spec = _ScoreInputSpec
    output_spec = _ScoreOutputSpec
    record_input = "prepared"

    def tables(self, settings, table, split, cwd):
        import json

        import numpy as np

        from nmflow.group.records import Prepared, load_trained
        from nmflow.group.scoring import dataset_name, score_variant
        from nmflow.group.tables import calibration, curves, deviation_table
        from nmflow.normative.model import save_model

        p = Prepared.load(self.inputs.prepared, large=(), raw=False)  # score_variant reads the fits in turn
        label = p.features.variant.label
        result, index = load_trained(next(p for p in self.inputs.trained if Path(p).name == trained_name(label)))
        sc, model, final = score_variant(p, result, index, table, split, settings, base_model(settings),
                                         dataset_name(settings.bids_dir))
        self._results["scored"] = sc.save(os.path.join(cwd, "scored.npz"))
        weights, card = save_model(model, os.path.join(cwd, f"{label}_model.safetensors"))  # the card names it
        self._results.update(model=str(weights), model_meta=json.loads(card.read_text()),
                             entities=p.features.variant.entities)
        harmonized = np.mean([prep.harmonized for prep in p.preps], axis=0) > 0
        return {"deviations": deviation_table(sc, "autoencoder", table, split, harmonized, settings),
                "linearz": deviation_table(sc, "linear", table, split, harmonized, settings),
                "calibration": calibration(sc), "curves": curves(final)}
