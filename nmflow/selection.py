"""Model selection across variants by the stability of their findings.

For every variant the autoencoder is trained on ``n_bootstrap`` resamples
(with replacement) of the training controls - the same resamples for every
variant, validation controls for early stopping - and each model scores the
tested subjects (held-out controls and patients).  A model's *finding* is the
set of flagged (group, connection) pairs (Mann-Whitney vs the held-out
controls, BH at ``alpha``).

* ``stability``: mean pairwise Jaccard index of the findings of the
  bootstrap models (two empty findings count 0: no finding is not a stable
  finding).
* ``reproducibility``: the tested subjects of every group are cut in two
  fixed random halves; per model the Dice index between the findings of the
  two halves, averaged over models.

Criterion: variants are ranked by stability, then reproducibility, then
lower mean validation error; rank 1 is selected.  All models of all variants
with the same feature count are trained in one stacked batch
(:func:`nmflow.normative.model.train_models`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from nmflow.normative.model import TrainConfig, forward, train_models
from nmflow.stats import benjamini_hochberg, mann_whitney


def bootstrap_weights(train: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap counts ``(n_bootstrap, n_subjects)`` over the subjects where ``train`` is True."""
    idx = np.flatnonzero(train)
    out = np.zeros((n_bootstrap, train.size))
    for b in range(n_bootstrap):
        out[b] = np.bincount(idx[rng.integers(0, idx.size, idx.size)], minlength=train.size)
    return out


def flag_sets(scores: np.ndarray, groups: np.ndarray, reference: str, alpha: float,
              p_rule: str = "fdr") -> np.ndarray:
    """Flags of many models at once.

    Parameters
    ----------
    scores : ndarray, shape (n_models, n_subjects, n_features)
    groups : ndarray of str, shape (n_subjects,)

    Returns
    -------
    ndarray of bool, shape (n_models, n_groups * n_features)
        Groups in sorted order, excluding ``reference``.
    """
    ref = np.moveaxis(scores[:, groups == reference], 1, 0)
    flags = []
    for group in sorted(set(groups) - {reference}):
        _, p = mann_whitney(np.moveaxis(scores[:, groups == group], 1, 0), ref)
        stat = np.apply_along_axis(benjamini_hochberg, 1, p) if p_rule == "fdr" else p
        flags.append(stat < alpha)
    return np.concatenate(flags, axis=1)


def _overlap(a: np.ndarray, b: np.ndarray, dice: bool) -> np.ndarray:
    """Jaccard (or Dice) ``(n_a, n_b)`` between the rows of boolean ``a`` and ``b`` (0 for two empty rows)."""
    a, b = a.astype(float), b.astype(float)
    inter = a @ b.T
    sizes = a.sum(1)[:, None] + b.sum(1)[None, :]
    denom = sizes if dice else sizes - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (2 * inter if dice else inter) / denom
    return np.nan_to_num(out, nan=0.0)


def stability(flags: np.ndarray) -> float:
    """Mean pairwise Jaccard of the rows of ``flags`` ``(n_models, k)``."""
    jac = _overlap(flags, flags, dice=False)
    upper = np.triu_indices(flags.shape[0], k=1)
    return float(jac[upper].mean())


def halves(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Half label (0/1) ``(n_subjects,)``, each group cut in two random halves."""
    out = np.zeros(groups.size, int)
    for g in np.unique(groups):
        idx = rng.permutation(np.flatnonzero(groups == g))
        out[idx[: idx.size // 2]] = 1
    return out


def select_variants(
    data: dict[str, np.ndarray], groups: np.ndarray, split: np.ndarray, reference: str,
    n_bootstrap: int, config: TrainConfig, alpha: float = 0.05, p_rule: str = "fdr",
) -> pd.DataFrame:
    """Rank variants by bootstrap stability.

    Parameters
    ----------
    data : dict
        Variant label -> standardised features ``(n_subjects, n_features)``
        (same subjects, same order for every variant).
    groups : ndarray of str, shape (n_subjects,)
    split : ndarray of str, shape (n_subjects,)
        ``train``, ``val``, ``test`` (held-out controls) or ``patient``.
    reference : str
        Group label of the controls.

    Returns
    -------
    DataFrame
        ``variant n_features n_models stability reproducibility mean_flagged
        val_error rank selected``, best first.
    """
    rng = np.random.default_rng(config.seed)
    fit_rows = np.isin(split, ["train", "val"])
    tested = np.isin(split, ["test", "patient"])
    wt = bootstrap_weights(split[fit_rows] == "train", n_bootstrap, rng)
    wv = np.tile((split[fit_rows] == "val").astype(float), (n_bootstrap, 1))
    half = halves(groups[tested], rng)
    seeds = [config.seed + b for b in range(n_bootstrap)]
    rows = []
    by_width: dict[int, list[str]] = {}
    for label, z in data.items():
        by_width.setdefault(z.shape[1], []).append(label)
    for labels in by_width.values():
        x = np.concatenate([np.broadcast_to(data[v][fit_rows], (n_bootstrap,) + data[v][fit_rows].shape)
                            for v in labels])
        res = train_models(x, np.tile(wt, (len(labels), 1)), np.tile(wv, (len(labels), 1)),
                           config, seeds=seeds * len(labels))
        for k, label in enumerate(labels):
            models = slice(k * n_bootstrap, (k + 1) * n_bootstrap)
            z = torch.as_tensor(data[label][tested], dtype=torch.float32)
            with torch.no_grad():
                err = (forward([p[models] for p in res.params], z) - z).abs().numpy()
            g = groups[tested]
            flags = flag_sets(err, g, reference, alpha, p_rule)
            fa = flag_sets(err[:, half == 0], g[half == 0], reference, alpha, p_rule)
            fb = flag_sets(err[:, half == 1], g[half == 1], reference, alpha, p_rule)
            rows.append({
                "variant": label, "n_features": data[label].shape[1], "n_models": n_bootstrap,
                "stability": stability(flags),
                "reproducibility": float(np.mean(np.diag(_overlap(fa, fb, dice=True)))),
                "mean_flagged": float(flags.sum(1).mean()), "val_error": float(np.mean(res.best_loss[models])),
            })
    table = pd.DataFrame(rows).sort_values(["stability", "reproducibility", "val_error"],
                                           ascending=[False, False, True], ignore_index=True)
    table["rank"] = np.arange(1, len(table) + 1)
    table["selected"] = table["rank"] == 1
    return table
