"""Plain words for the group report and the patient pages: region names, connections, comparisons."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

from nmflow.networks import Assignment
from nmflow.participant.settings import PRESETS
from nmflow.reports.html import number


def region_label(name: str) -> str:
    """A region as people write it: ``13_Default_A`` -> ``Default A``,
    ``8_Salience+Ventral_Attention_A`` -> ``Salience/Ventral Attention A``, ``1_Visual_Area`` -> ``Visual``."""
    text = re.sub(r"^\d+_", "", str(name))
    text = re.sub(r"(_Network)?_Area$", "", text)
    return text.replace("+", "/").replace("_", " ").strip() or str(name)


def connection_label(connection: int, regions: list[str]) -> str:
    """``Default A – Salience/Ventral Attention A`` for index ``connection`` of the regions' upper triangle."""
    rows, cols = upper_pairs(len(regions))
    return f"{region_label(regions[rows[connection]])} – {region_label(regions[cols[connection]])}"


def pair_label(name: str) -> str:
    """A connection named ``a__b`` (:func:`nmflow.participant.connectivity.connection_names`) in words:
    ``3_Somatomotor_A__4_Somatomotor_B`` -> ``Somatomotor A – Somatomotor B``."""
    first, _, second = str(name).partition("__")
    return f"{region_label(first)} – {region_label(second)}" if second else region_label(first)


@lru_cache(maxsize=4)
def upper_pairs(n_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """``numpy.triu_indices(n_regions, k=1)``, computed once per size (a page names dozens of connections)."""
    rows, cols = np.triu_indices(n_regions, k=1)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def network_pair(networks: Assignment, i: int, j: int) -> str:
    """``Visual – Default``: the networks of regions ``i`` and ``j`` in the order of the summaries."""
    a, b = sorted((networks.codes[i], networks.codes[j]))
    return f"{networks.order[a]} – {networks.order[b]}"


def against_controls(value: float, controls: np.ndarray, what: str = "") -> str:
    """``higher than 99 % of controls`` (or ``lower than ...``, ``higher than all 24 controls``).

    ``value`` is compared with the controls' values ``(n_controls,)``: the
    percentage of controls strictly below it (above it when ``value`` is
    below their median)."""
    controls = np.asarray(controls, float)
    controls = controls[np.isfinite(controls)]
    if not np.isfinite(value) or controls.size == 0:
        return f"{what}not comparable with the controls".strip()
    higher = value >= np.median(controls)
    share = float(np.mean(controls < value) if higher else np.mean(controls > value))
    direction = "higher" if higher else "lower"
    if share == 1.0:
        return f"{what}{direction} than all {controls.size} controls"
    return f"{what}{direction} than {int(np.floor(100 * share))} % of controls"


def strategy_order(desc: str | None) -> int:
    """Position of a denoising strategy from least to most cleaning (``none``, ``simple``, ...); others last."""
    names = list(PRESETS)
    return names.index(desc) if desc in names else len(names)


def variant_entities(label: str) -> dict[str, str]:
    """``atlas-Yeo2011_seg-17nThick_desc-simple_meas-pearson`` -> ``{"atlas": "Yeo2011", ...}``."""
    return dict(part.split("-", 1) for part in label.split("_") if "-" in part)


def ranking_sentences(selection: pd.DataFrame | None, shown: str) -> list[str]:
    """The variant ranking explained: the rule, the choice, and why each other variant did not qualify."""
    from nmflow.group.selection import CALIBRATION_BAND, KURTOSIS_MAX, STABILITY_MIN

    if selection is None:
        return [f"No variant ranking was run (--n-bootstrap 0 or a given model): the report shows {shown}."]
    lo, hi = (100 * v for v in CALIBRATION_BAND)
    n_ok = int(selection.qualifies.sum())
    text = [f"{len(selection)} variant(s) were judged on held-out controls only, never on patients. A variant "
            f"qualifies when its deviations are reproducible across bootstrap models (stability ≥ {STABILITY_MIN:g}), "
            f"{lo:g}–{hi:g} % of its controls' deviations lie beyond ±1.96 (nominal 5 %) and their tails are near "
            f"normal (|excess kurtosis| ≤ {KURTOSIS_MAX:g}); qualifying variants are ranked by the variance of "
            f"held-out controls the model explains. {n_ok} qualified. The ranking judges how well a variant can be "
            "modelled, not how well it was denoised: see QC-FC under Head motion."]
    first = selection.iloc[0]
    if selection.selected.any():
        text.append(f"Selected: {first.variant} (explained variance {first.explained_variance:.2f}, stability "
                    f"{first.stability:.2f}).")
    else:
        text.append(f"No variant qualified, so none gives stable findings; the first-ranked, {first.variant}, is "
                    "shown: read its findings with caution.")
    for _, row in selection.iterrows():
        reasons = []
        if not row.stability >= STABILITY_MIN:
            reasons.append(f"stability {number(row.stability, 2)} < {STABILITY_MIN:g}")
        pct = 100 * row["frac_abs_z_gt_1.96"]
        if not lo <= pct <= hi:
            reasons.append(f"{pct:.1f} % of controls' deviations beyond ±1.96")
        if not abs(row.z_excess_kurtosis) <= KURTOSIS_MAX:
            reasons.append(f"excess kurtosis {row.z_excess_kurtosis:.2f}")
        if reasons:
            text.append(f"{row.variant} did not qualify: {', '.join(reasons)}.")
    return text
