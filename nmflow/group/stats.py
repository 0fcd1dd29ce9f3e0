"""Group statistics on deviation scores, and single-case tests.

Every patient group is compared with the held-out (reference) controls,
connection by connection:

* Mann-Whitney U (two-sided, :func:`scipy.stats.mannwhitneyu`); ``U`` is the
  statistic of the patient sample, so ``U > n_p * n_c / 2`` means patients
  score higher.
* Benjamini-Hochberg q across the connections of one group.
* Rank-biserial correlation ``r = 2 U / (n_p n_c) - 1`` in [-1, 1]
  (positive: patients higher).
* ``flagged`` = ``q < alpha`` (``p_rule="fdr"``, default) or ``p < alpha``
  (``p_rule="raw"``, no correction for the number of connections).

A flagged connection is ``shared`` when it is flagged in two or more patient
groups and ``specific`` when it is flagged in this group only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from nmflow.networks import region_systems
from nmflow.stats import benjamini_hochberg, crawford_howell


def rank_biserial(u: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """Rank-biserial correlation ``2 U / (n1 n2) - 1`` of the U of sample 1."""
    return 2.0 * np.asarray(u, dtype=float) / (n1 * n2) - 1.0


def mann_whitney(patients: np.ndarray, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column two-sided Mann-Whitney test.

    Parameters
    ----------
    patients : ndarray, shape (n_patients, n_features)
    controls : ndarray, shape (n_controls, n_features)

    Returns
    -------
    u, p : ndarray, shape (n_features,)
        ``U`` of the patient sample and the two-sided p-value (exact for small
        samples without ties, asymptotic otherwise, as SciPy's ``method="auto"``).
    """
    res = sps.mannwhitneyu(patients, controls, alternative="two-sided", axis=0)
    return np.asarray(res.statistic, float), np.asarray(res.pvalue, float)


def group_statistics(
    scores: np.ndarray,
    groups: np.ndarray,
    reference: str,
    feature_names: list[str],
    alpha: float = 0.05,
    p_rule: str = "fdr",
) -> pd.DataFrame:
    """Compare every non-reference group with the reference, per feature.

    Parameters
    ----------
    scores : ndarray, shape (n_subjects, n_features)
        Deviation scores (or features) of the tested subjects.
    groups : ndarray of str, shape (n_subjects,)
        Group label per subject; ``reference`` marks the held-out controls.
    reference : str
    feature_names : list of str, length n_features
    alpha : float
        Threshold applied to q (``p_rule="fdr"``) or p (``p_rule="raw"``).

    Returns
    -------
    DataFrame
        One row per (group, connection): ``group connection name n_patients
        n_controls U p q effect_size flagged n_groups_flagged sharing``.
    """
    if p_rule not in ("fdr", "raw"):
        raise ValueError(f"p_rule must be 'fdr' or 'raw', got {p_rule!r}")
    groups = np.asarray(groups, dtype=str)
    ref = scores[groups == reference]
    tables = []
    for group in sorted(set(groups) - {reference}):
        pat = scores[groups == group]
        u, p = mann_whitney(pat, ref)
        q = benjamini_hochberg(p)
        tables.append(pd.DataFrame({
            "group": group, "connection": np.arange(scores.shape[1]), "name": feature_names,
            "n_patients": len(pat), "n_controls": len(ref), "U": u, "p": p, "q": q,
            "effect_size": rank_biserial(u, len(pat), len(ref)),
            "flagged": (q if p_rule == "fdr" else p) < alpha,
        }))
    return label_sharing(pd.concat(tables, ignore_index=True))


GLOBAL_SHARE = 0.8  # connections going the way of a group's global FC shift: the whole connectome moved


def with_global_shift(stats: pd.DataFrame, global_fc: np.ndarray, groups: np.ndarray, reference: str,
                      alpha: float = 0.05) -> pd.DataFrame:
    """Add to ``stats`` (:func:`group_statistics`, one model) each group's global FC shift and whether each
    connection goes its way.

    Parameters
    ----------
    stats : DataFrame
        One model's rows of :func:`group_statistics`.
    global_fc : ndarray, shape (n_subjects,)
        The subjects' global FC component (``global_fc_z``), rows as ``groups``.
    groups : ndarray of str, shape (n_subjects,)
    reference : str

    Returns
    -------
    DataFrame
        ``stats`` with ``global_effect_size`` (rank-biserial correlation of
        the group's ``global_fc_z`` against the reference controls; positive:
        patients' mean FC higher), ``global_p`` (two-sided Mann-Whitney p) and
        ``with_global_shift`` (``global_p < alpha`` and the connection's
        effect has the shift's sign; ``alpha=0`` for scores without a sign,
        e.g. absolute deviations).
    """
    groups = np.asarray(groups, dtype=str)
    global_fc = np.asarray(global_fc, float)[:, None]
    ref = global_fc[groups == reference]
    effect, p_value = {}, {}
    for group in stats["group"].unique():
        pat = global_fc[groups == group]
        u, p = mann_whitney(pat, ref)
        effect[group], p_value[group] = float(rank_biserial(u, len(pat), len(ref))[0]), float(p[0])
    out = stats.assign(global_effect_size=stats["group"].map(effect), global_p=stats["group"].map(p_value))
    out["with_global_shift"] = (out["global_p"] < alpha) & (np.sign(out["effect_size"])
                                                           == np.sign(out["global_effect_size"]))
    return out


def global_shift_notes(stats: pd.DataFrame) -> list[str]:
    """One sentence per model and group whose connections move together: the group's global FC shift is
    significant, at least ``GLOBAL_SHARE`` of *all* its connections go that way (a few strong focal
    changes also move the mean FC, but leave the other connections' effects centred on 0) and two or
    more flagged connections do.  Those findings are one shift of the whole connectome, not focal
    differences.  ``stats``: :func:`with_global_shift` rows with a ``model`` column."""
    notes = []
    for (model, group), rows in stats.groupby(["model", "group"], sort=True):
        flagged = rows[rows["flagged"]]
        share = float(rows["with_global_shift"].mean())
        if share < GLOBAL_SHARE or flagged["with_global_shift"].sum() < 2:
            continue
        first = rows.iloc[0]
        way = "higher" if first["global_effect_size"] > 0 else "lower"
        notes.append(f"{model}, {group}: {share:.0%} of all connections and {int(flagged['with_global_shift'].sum())}"
                     f" of the {len(flagged)} flagged go the way of the group's global FC shift (mean FC {way} than "
                     f"the controls', rank-biserial r {first['global_effect_size']:.2f}, p {first['global_p']:.2g}):"
                     " the flags go with one shift of the whole connectome (or of motion, or of denoising) and "
                     "cannot be read as focal differences")
    return notes


def label_sharing(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``n_groups_flagged`` and ``sharing`` ("shared", "specific" or "") per row."""
    counts = table.groupby("connection")["flagged"].sum()
    table = table.copy()
    table["n_groups_flagged"] = table["connection"].map(counts).astype(int)
    table["sharing"] = np.where(
        ~table["flagged"], "", np.where(table["n_groups_flagged"] >= 2, "shared", "specific"))
    return table


def network_pair_summary(table: pd.DataFrame, region_names: list[str]) -> pd.DataFrame:
    """Flagged connections per group and Yeo-7 system pair.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`group_statistics` (``connection`` = feature index).
    region_names : list of str
        Regions of the atlas, in feature order.

    Returns
    -------
    DataFrame
        ``group system_a system_b n_connections n_flagged fraction_flagged``.
    """
    n = len(region_names)
    systems = np.array(region_systems(region_names))
    rows, cols = np.triu_indices(n, k=1)
    a, b = systems[rows], systems[cols]
    lo, hi = np.where(a <= b, a, b), np.where(a <= b, b, a)
    pairs = table.assign(system_a=lo[table["connection"]], system_b=hi[table["connection"]])
    out = (pairs.groupby(["group", "system_a", "system_b"])
           .agg(n_connections=("flagged", "size"), n_flagged=("flagged", "sum")).reset_index())
    out["fraction_flagged"] = out["n_flagged"] / out["n_connections"]
    return out.sort_values(["group", "n_flagged"], ascending=[True, False], ignore_index=True)


def single_case_table(
    cases: np.ndarray, controls: np.ndarray, case_ids: list[str], feature_names: list[str],
    alpha: float = 0.05, rule: str = "maxt",
) -> pd.DataFrame:
    """Crawford-Howell test of every case's score on every feature, long format.

    Parameters
    ----------
    cases : ndarray, shape (n_cases, n_features)
        Deviation scores of the cases (e.g. signed deviation z of patients).
    controls : ndarray, shape (n_controls, n_features)
        The same scores of the reference controls.
    case_ids, feature_names : list of str
        Row and column labels of ``cases``.
    alpha : float
    rule : {"maxt", "fdr", "raw"}
        ``flagged`` is ``p_fwe < alpha`` (``maxt``, default), ``q < alpha``
        (Benjamini-Hochberg over the features of one case) or ``p < alpha``.

    Returns
    -------
    DataFrame
        ``participant_id feature n_controls df t p q p_fwe flagged`` with
        ``n_cases * n_features`` rows, case by case (``participant_id`` and
        ``feature`` categorical).

    Notes
    -----
    ``p_fwe`` is a family-wise adjusted p-value calibrated on the controls
    themselves (Westfall-Young max-T with the controls as null samples): each
    control is tested against the other controls
    (:func:`crawford_howell_loo`) and its largest ``|t|`` over features is
    kept; a case's ``p_fwe`` for a feature is ``(1 + #controls whose largest
    |t| >= |t_case|) / (n + 1)``.  It holds its level whatever the
    dependence between features and the tails of the scores, which the
    parametric ``p`` (normal scores) does not at the ``alpha / n_features``
    level where Benjamini-Hochberg makes its first call.
    """
    if rule not in ("maxt", "fdr", "raw"):
        raise ValueError(f"rule must be 'maxt', 'fdr' or 'raw', got {rule!r}")
    result = crawford_howell(cases, controls, confidence=None)
    t, p, df = result.t, result.p_two_sided, result.df
    q = np.vstack([benjamini_hochberg(row) for row in p]) if len(p) else p
    maxima = np.sort(null_maxima(controls))
    at_least = maxima.size - np.searchsorted(maxima, np.abs(t), side="left")
    p_fwe = np.where(np.isfinite(t), (1 + at_least) / (maxima.size + 1), np.nan)
    flagged = {"maxt": p_fwe, "fdr": q, "raw": p}[rule] < alpha
    n_cases, n_features = len(case_ids), len(feature_names)
    return pd.DataFrame({  # labels as categories: 16 million rows at 400 regions and 200 patients
        "participant_id": pd.Categorical.from_codes(np.repeat(np.arange(n_cases), n_features), list(case_ids)),
        "feature": pd.Categorical.from_codes(np.tile(np.arange(n_features), n_cases), list(feature_names)),
        "n_controls": len(controls), "df": df, "t": t.ravel(), "p": p.ravel(), "q": q.ravel(),
        "p_fwe": p_fwe.ravel(), "flagged": flagged.ravel(),
    })


NULL_COLUMNS = 4096  # features of the leave-one-out tests computed at once (bounds their float64 copies)


def null_maxima(controls: np.ndarray) -> np.ndarray:
    """Largest ``|t|`` over features of each control tested against the others ``(n_controls,)``
    (computed ``NULL_COLUMNS`` features at a time)."""
    controls = np.asarray(controls)
    return np.nanmax(np.column_stack([np.nanmax(np.abs(crawford_howell_loo(controls[:, cols])[0]), axis=1)
                                      for cols in _column_blocks(controls.shape[1])]), axis=1)


def _column_blocks(n_features: int) -> list[slice]:
    return [slice(lo, lo + NULL_COLUMNS) for lo in range(0, n_features, NULL_COLUMNS)]


def crawford_howell_loo(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Crawford-Howell test of every reference row against the *other* rows.

    The null check of the single-case test: a control is a "case" and the
    remaining ``n - 1`` controls its control sample (``df = n - 2``).

    Parameters
    ----------
    reference : ndarray, shape (n, n_features)

    Returns
    -------
    t, p : ndarray, shape (n, n_features)
    df : int
    """
    x = np.asarray(reference, dtype=float)
    n = x.shape[0]
    if n < 3:
        raise ValueError("the leave-one-out Crawford-Howell test needs at least 3 rows")
    m = n - 1
    mean = (x.sum(axis=0) - x) / m
    sq = ((x ** 2).sum(axis=0) - x ** 2 - m * mean ** 2) / (m - 1)
    sd = np.sqrt(np.maximum(sq, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (x - mean) / (sd * np.sqrt((m + 1) / m))
    return t, 2 * sps.t.sf(np.abs(t), m - 1), m - 1


def single_case_null_rate(reference: np.ndarray, alpha: float = 0.05, rule: str = "maxt") -> float:
    """Fraction of reference controls with >= 1 feature flagged against the other controls.

    The false-positive rate of the single-case table under the null (each
    control tested against the others with the table's ``rule``; for
    ``maxt`` against the other controls' maxima); nominal about ``alpha``.
    The tests run ``NULL_COLUMNS`` features at a time (``fdr`` and ``raw``
    keep every p-value for the per-control decision).
    """
    reference = np.asarray(reference)
    if rule == "maxt":
        maxima = null_maxima(reference)
        others = (maxima[None, :] >= maxima[:, None]).sum(axis=1) - 1
        return float(((1 + others) / maxima.size < alpha).mean())
    p = np.empty(reference.shape)
    for cols in _column_blocks(reference.shape[1]):
        p[:, cols] = crawford_howell_loo(reference[:, cols])[1]
    stat = np.vstack([benjamini_hochberg(row) for row in p]) if rule == "fdr" else p
    return float((stat < alpha).any(axis=1).mean())
