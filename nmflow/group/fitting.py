"""Fitting the normative models of a group run: per-variant preprocessing, then stacked training.

:func:`prepare_variant` runs, for every cross-fitting fit and the final fit,
the steps fitted on that fit's controls only (imputation, ComBat, scaler,
covariate coding, linear baseline).  :func:`train_width` trains every model
of the variants that share one input width and one set of subjects
(cross-fitting fits, the final fit and bootstrap models) stacked, the
reason the group level groups variants by :func:`batch_key` rather than
training them one by one.  The models train stacked while they fit in the
step's memory (``--mem-gb``, less what the data already take; at most
``STACK_BYTES``, beyond which stacking gains no speed) and in consecutive
chunks beyond; the numbers do not depend on it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from nmflow.group.records import Prepared, Split, VariantFeatures
from nmflow.group.settings import GroupSettings
from nmflow.normative.config import TrainConfig
from nmflow.normative.covariates import CovariateCoder
from nmflow.normative.crossfit import kept_connections, model_input, preprocess, train_stacked
from nmflow.normative.model import NormativeModel, TrainResult
from nmflow.normative.transfer import check_transferable, map_features
from nmflow.group.resources import resident_bytes
from nmflow.group.selection import bootstrap_weights

BOOTSTRAP_SEED = 1000
MEMORY_MARGIN = 2 ** 28  # bytes kept free for torch's and numpy's temporaries beside the models
STACK_BYTES = 2 ** 31  # models stacked beyond this size train no faster: their batched products are big already


def prepare_variant(vf: VariantFeatures, table: pd.DataFrame, split: Split, settings: GroupSettings,
                    base: NormativeModel | None) -> Prepared:
    """Preprocess one variant for every fit (see the module docstring).

    With ``base`` (``--init-model``) the features are first mapped onto the
    model's features by name (:mod:`nmflow.normative.transfer`) and its
    scaler and covariate coding are kept.
    """

    folds = split.folds
    raw = vf.x
    if base is not None:
        check_transferable(base.card, vf.regions, vf.variant.card_entities, settings.init_model)
        raw, n_unknown = map_features(raw, vf.names, list(base.card["feature_names"]))
        model_names = list(base.card["feature_names"])
    else:
        model_names, n_unknown = vf.names, 0
    pools = np.vstack([folds.pool, split.final_pool[None]])
    kept = kept_connections(raw, pools, settings.max_missing)
    names = [n for n, k in zip(model_names, kept) if k]
    inputs = np.ones(kept.size, bool) if base is not None else kept
    scaler = (base.mean[kept], base.scale[kept]) if base is not None else None
    coder = CovariateCoder.from_dict(base.card["covariate_coding"]) if base is not None else None
    covariates = list(settings.covariates)
    controls = folds.controls
    preps = [preprocess(raw[:, kept], table, folds.pool[k], covariates, settings.harmonize, controls, scaler, coder)
             for k in range(folds.n_fits)]
    final = preps[0] if folds.n_fits == 1 else preprocess(raw[:, kept], table, split.final_pool, covariates,
                                                          settings.harmonize, controls, scaler, coder)
    return Prepared(VariantFeatures(vf.variant, raw, vf.names, vf.regions, vf.subjects), kept, inputs, names, n_unknown,
                    preps, final)


def batch_key(p: Prepared) -> str:
    """``<n_inputs>x<n_covariate_columns>-<digest of the subjects>``: variants with one key share the input
    width and the subjects, so their models stack into one training batch."""
    digest = hashlib.sha1(" ".join(p.features.subjects).encode()).hexdigest()[:12]
    return "x".join(map(str, p.width)) + f"-{digest}"


def bootstrap_plan(split: Split, settings: GroupSettings) -> np.ndarray:
    """Bootstrap weights ``(split.n_bootstrap, n_controls)`` over the controls (rows of ``folds.controls``)."""
    n_controls = int(split.folds.controls.sum())
    return bootstrap_weights(n_controls, split.n_bootstrap, np.random.default_rng(settings.seed + BOOTSTRAP_SEED))


def _jobs(label: str, p: Prepared, split: Split, config: TrainConfig, boot: np.ndarray) -> list[tuple]:
    """Training jobs ``(variant, kind, fit, data, seed)`` of one variant: bootstrap models, then the fits.

    Each fit's features are read (:meth:`Prepared.fit`) and dropped one fit at a time: the jobs keep
    only the controls' model input, one array per fit, shared by the final fit and the bootstrap models.
    """
    folds = split.folds
    rows = np.flatnonzero(folds.controls)
    counted = p.kept[p.inputs]
    z = [model_input(p.fit(k, ("features",)), p.kept, p.inputs)[rows] for k in range(p.n_fits)]
    final = p.n_fits - 1
    jobs = []
    for b in range(boot.shape[0]):
        jobs.append((label, "boot", b, (z[final], p.final.cond[rows], boot[b], (boot[b] == 0).astype(float), counted),
                     config.seed + BOOTSTRAP_SEED + b))
    specs = [(prep, folds.train[k], folds.val[k], config.seed + k) for k, prep in enumerate(p.preps)]
    specs.append((p.final, split.final_train, split.final_val, config.seed + folds.n_fits))
    for k, (prep, wt, wv, seed) in enumerate(specs):
        jobs.append((label, "fit", k, (z[k], prep.cond[rows], wt[rows], wv[rows], counted), seed))
    return jobs


def train_width(prepared: dict[str, Prepared], split: Split, settings: GroupSettings,
                base: NormativeModel | None) -> tuple[TrainResult, pd.DataFrame]:
    """Train all models of ``prepared`` (variants of one width, in order) as one stacked batch.

    Returns the stacked result and its index (columns variant, kind = fit or
    boot, fit = fit or bootstrap number, model = position in the stack).
    With ``--no-fine-tune`` nothing is trained: every fit is ``base``.
    """
    folds = split.folds
    if base is not None and settings.no_fine_tune:
        result = TrainResult(base.stacked(), np.zeros((0, 1)), np.zeros((0, 1)), np.zeros(1, int),
                             np.full(1, np.nan))
        index = pd.DataFrame([(label, "fit", k, 0) for label in prepared for k in range(folds.n_fits + 1)],
                             columns=["variant", "kind", "fit", "model"])
        return result, index
    config = settings.train_config
    boot = bootstrap_plan(split, settings)
    jobs = [job for label, p in prepared.items() for job in _jobs(label, p, split, config, boot)]
    budget = min(settings.memory_bytes - resident_bytes() - MEMORY_MARGIN, STACK_BYTES)
    result = train_stacked([j[3] for j in jobs], config, [j[4] for j in jobs],
                           init=base.stacked() if base is not None else None, device=settings.torch_device,
                           mem_bytes=max(budget, 0))
    index = pd.DataFrame([(j[0], j[1], j[2], m) for m, j in enumerate(jobs)],
                         columns=["variant", "kind", "fit", "model"])
    return result, index
