"""Files between the group level's nodes: NPZ of named arrays (never pickled) and JSON.

Every record is written at full precision so a node reading it computes
exactly what an in-memory pipeline would.  Strings travel as numpy unicode
arrays, small structured values (covariate coding, messages) as a JSON string
under the key ``meta``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nmflow.fileio import load_npz, save_npz
from nmflow.group.features import Variant
from nmflow.normative.covariates import CovariateCoder
from nmflow.normative.crossfit import Folds, Preprocessed
from nmflow.normative.model import TrainResult


def frame_arrays(prefix: str, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Columns of ``frame`` as arrays under ``prefix/<column>`` (text columns as unicode, categorical ones as
    their codes and ``prefix/<column>/categories``; no object arrays)."""
    out = {}
    for name, column in frame.items():
        if isinstance(column.dtype, pd.CategoricalDtype):
            out[f"{prefix}/{name}"] = column.cat.codes.to_numpy()
            out[f"{prefix}/{name}/categories"] = column.cat.categories.to_numpy().astype(str)
            continue
        values = column.to_numpy()
        out[f"{prefix}/{name}"] = values.astype(str) if values.dtype == object else values
    return out


def arrays_frame(prefix: str, arrays: dict[str, np.ndarray], columns: list[str]) -> pd.DataFrame:
    """Inverse of :func:`frame_arrays` (``columns`` gives the order)."""
    out = {}
    for c in columns:
        values = arrays[f"{prefix}/{c}"]
        if f"{prefix}/{c}/categories" in arrays:
            out[c] = pd.Categorical.from_codes(values, arrays[f"{prefix}/{c}/categories"].tolist())
        else:
            out[c] = values.astype(object) if values.dtype.kind == "U" else values
    return pd.DataFrame(out)


def record_subjects(path: str | Path) -> list[str]:
    """The subjects (rows) of a variant's record (features, prepared or scored NPZ), read without the rest."""
    with np.load(path, allow_pickle=False) as data:
        return data["subjects"].tolist()


@dataclass
class VariantFeatures:
    """One variant's model features, one row per subject that has the variant.

    ``x`` ``(n_subjects, n_features)`` (Fisher z for correlation metrics, may
    hold NaN; ``None`` when read without it), ``names`` the connections, ``regions`` the atlas regions,
    ``subjects`` the rows' labels (without ``sub-``), in the cohort's order: a
    subject without this variant (e.g. a strategy the participant level
    skipped for it) has no row.
    """

    variant: Variant
    x: np.ndarray
    names: list[str]
    regions: list[str]
    subjects: list[str]

    def save(self, path: str | Path) -> str:
        v = self.variant
        return save_npz(path, {"x": self.x, "names": np.array(self.names), "regions": np.array(self.regions),
                               "subjects": np.array(self.subjects, dtype=str)},
                        {"atlas": v.atlas, "seg": v.seg, "desc": v.desc, "meas": v.meas})

    def aligned(self, subjects: list[str]) -> np.ndarray:
        """``x`` with one row per label of ``subjects`` ``(len(subjects), n_features)``; NaN rows for
        subjects without this variant."""
        out = np.full((len(subjects), self.x.shape[1]), np.nan)
        row = {s: k for k, s in enumerate(self.subjects)}
        have = [k for k, s in enumerate(subjects) if s in row]
        out[have] = self.x[[row[subjects[k]] for k in have]]
        return out

    @classmethod
    def load(cls, path: str | Path, x: bool = True) -> "VariantFeatures":
        """Read a record; ``x=False`` leaves the features out (``None``: only the labels are needed)."""
        a, meta = load_npz(path, skip=None if x else (lambda key: key == "x"))
        return cls(Variant(**meta), a.get("x"), a["names"].tolist(), a["regions"].tolist(), a["subjects"].tolist())


@dataclass
class Split:
    """The cross-fitting plan (:class:`Folds`), the masks of the final fit on all fitting controls and the
    number of bootstrap models per variant (0 when nothing is ranked).

    ``final_pool``, ``final_train``, ``final_val`` are ``(n_subjects,)`` bool.
    """

    folds: Folds
    final_pool: np.ndarray
    final_train: np.ndarray
    final_val: np.ndarray
    n_bootstrap: int = 0

    def save(self, path: str | Path) -> str:
        f = self.folds
        return save_npz(path, {"pool": f.pool, "train": f.train, "val": f.val, "held_out": f.held_out,
                               "reference": f.reference, "patients": f.patients, "label": f.label,
                               "final_pool": self.final_pool, "final_train": self.final_train,
                               "final_val": self.final_val}, {"n_bootstrap": self.n_bootstrap})

    def subset(self, rows: np.ndarray) -> "Split":
        """The plan restricted to the subjects at ``rows`` (indices into the cohort, in order): a variant's
        fits keep the folds of the whole cohort, without the subjects that lack the variant."""
        f = self.folds
        folds = Folds(f.pool[:, rows], f.train[:, rows], f.val[:, rows], f.held_out[rows], f.reference[rows],
                      f.patients[rows], f.label[rows])
        return Split(folds, self.final_pool[rows], self.final_train[rows], self.final_val[rows], self.n_bootstrap)

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        a, meta = load_npz(path)
        folds = Folds(a["pool"], a["train"], a["val"], a["held_out"], a["reference"], a["patients"], a["label"])
        return cls(folds, a["final_pool"], a["final_train"], a["final_val"], int(meta["n_bootstrap"]))


PER_FIT = ("features", "harmonized", "mean", "scale", "cond", "linear")  # the arrays of each fit in a record
LARGE = ("features", "linear")  # those of subjects x connections; the others are small


@dataclass
class Prepared:
    """One variant after the per-fit preprocessing (imputation, ComBat, scaler, covariates, linear baseline).

    ``preps`` holds one :class:`Preprocessed` per cross-fitting fit; ``final``
    is the fit on all fitting controls (the same object as ``preps[0]`` with
    one fit).  ``kept`` ``(n_model_features,)`` marks the connections
    modelled, ``inputs`` the model's inputs (all of them when transferring a
    model), ``names`` the kept connections' names.  ``source`` is the record
    it was read from (:meth:`fit` reads one fit's arrays from it).
    """

    features: VariantFeatures
    kept: np.ndarray
    inputs: np.ndarray
    names: list[str]
    n_unknown: int
    preps: list[Preprocessed]
    final: Preprocessed
    source: str | None = None

    @property
    def width(self) -> tuple[int, int]:
        """``(n_inputs, n_covariate_columns)`` of the variant's models."""
        return int(self.inputs.sum()), int(self.final.cond.shape[1])

    @property
    def n_fits(self) -> int:
        """Fits numbered as in the trained models' index: ``0 .. len(preps) - 1`` cross-fitting, then the final."""
        return len(self.preps) + 1

    def save(self, path: str | Path, features_file: str) -> str:
        fits = self.preps + ([] if self.final is self.preps[0] else [self.final])
        arrays = {"kept": self.kept, "inputs": self.inputs, "names": np.array(self.names),
                  "subjects": np.array(self.features.subjects, dtype=str)}
        for k, p in enumerate(fits):
            arrays.update({f"{k}/{name}": getattr(p, name) for name in PER_FIT})
        meta = {"features_file": features_file, "n_unknown": self.n_unknown, "n_preps": len(self.preps),
                "coders": [p.coder.to_dict() for p in fits], "messages": [p.messages for p in fits]}
        return save_npz(path, arrays, meta)

    @classmethod
    def load(cls, path: str | Path, large: tuple[str, ...] = LARGE, raw: bool = True) -> "Prepared":
        """Read a record.

        ``large`` names the per-fit arrays of subjects x connections read for every fit (of :data:`LARGE`;
        the others are ``None``): at 300 subjects x 79,800 connections each is 96 MB a fit, so a step
        that needs them fit by fit reads them with :meth:`fit` instead.  ``raw=False`` leaves the
        variant's features before preprocessing out (``features.x`` is ``None``).
        """
        left_out = set(LARGE) - set(large)
        a, meta = load_npz(path, skip=lambda key: key.rpartition("/")[2] in left_out)  # keys <fit>/<array>
        fits = [Preprocessed(coder=CovariateCoder.from_dict(coder), messages=messages,
                             **{name: a.get(f"{k}/{name}") for name in PER_FIT})
                for k, (coder, messages) in enumerate(zip(meta["coders"], meta["messages"]))]
        preps = fits[:meta["n_preps"]]
        return cls(VariantFeatures.load(meta["features_file"], x=raw), a["kept"], a["inputs"], a["names"].tolist(),
                   int(meta["n_unknown"]), preps, fits[-1], str(path))

    def fit(self, k: int, large: tuple[str, ...] = LARGE) -> Preprocessed:
        """Fit ``k`` (numbered as :attr:`n_fits`) with its ``large`` arrays read from :attr:`source` now
        (a step holding one fit's arrays at a time holds 1/6 of what :meth:`load` with them reads)."""
        final = k == len(self.preps)
        fit = self.final if final else self.preps[k]
        if all(getattr(fit, name) is not None for name in large):  # read already (or made in memory)
            return fit
        stored = 0 if final and fit is self.preps[0] else k  # the final fit of a single fit is stored once
        with np.load(self.source, allow_pickle=False) as data:
            return replace(fit, **{name: data[f"{stored}/{name}"] for name in large})


def save_trained(path: str | Path, result: TrainResult, index: pd.DataFrame) -> str:
    """The models of ``index`` (columns variant, kind, fit, model = position in ``result``'s stack),
    renumbered 0..n-1 in the file."""
    models = np.array(index["model"], dtype=int)
    if np.array_equal(models, np.arange(models[0], models[0] + len(models))):
        models = slice(models[0], models[0] + len(models))  # a view: a variant's models are consecutive in a stack
    index = index.assign(model=np.arange(len(index)))
    result = TrainResult([p[models] for p in result.params], result.train_loss[:, models],
                         result.val_loss[:, models], result.best_epoch[models], result.best_loss[models])
    arrays = {f"param{k}": p.detach().numpy() for k, p in enumerate(result.params)}
    arrays.update(train_loss=result.train_loss, val_loss=result.val_loss, best_epoch=result.best_epoch,
                  best_loss=result.best_loss, variant=index["variant"].to_numpy(str),
                  kind=index["kind"].to_numpy(str), fit=index["fit"].to_numpy(int), model=index["model"].to_numpy(int))
    return save_npz(path, arrays)


def load_trained(path: str | Path) -> tuple[TrainResult, pd.DataFrame]:
    """Inverse of :func:`save_trained`."""
    a, _ = load_npz(path)
    n_params = sum(k.startswith("param") for k in a)
    params = [torch.from_numpy(np.require(a.pop(f"param{k}"), requirements="W")) for k in range(n_params)]
    index = pd.DataFrame({k: a[k] for k in ("variant", "kind", "fit", "model")})
    return TrainResult(params, a["train_loss"], a["val_loss"], a["best_epoch"], a["best_loss"]), index
