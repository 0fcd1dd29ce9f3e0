"""Which network each region belongs to: the Yeo-7 systems, and a region -> network assignment.

Used by the simulator (Yeo-17 -> Yeo-7), the group statistics (flagged
connections per system pair) and the reports (summaries per network pair past
:data:`MAX_REGIONS_SHOWN` regions).  An assignment comes, in order of
preference, from what the participant level recorded (``RegionNetworks`` in a
time series sidecar: a ``network`` column of the atlas' labels table, or the
region's overlap with Yeo-7), from the region names (Yeo, Schaefer keywords),
else from the data: k-means modules of the controls' mean FC, which are
labelled as such and never as Yeo networks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# region names of Yeo's atlases (label order 1..n).  The 17 networks are named as in Yeo et al. (2011) and
# Schaefer et al. (2018) (VisCent, VisPeri, SomMotA/B, DorsAttnA/B, SalVentAttnA/B, LimbicA/B, ContC/A/B,
# TempPar, DefaultC/A/B): the shipped label table's names for 5-17 do not match the image's labels, whose
# overlap with the Yeo-7 atlas is that of Yeo's numbering (tests/test_networks.py checks it on the real atlas).
YEO_NAMES = {
    7: ["1_Visual_Area", "2_Somatomotor_Area", "3_Dorsal_Area", "4_Ventral_Area",
        "5_Lymbic_Area", "6_Frontoparietal_Area", "7_Default_Network_Area"],
    17: ["1_Visual_A", "2_Visual_B", "3_Somatomotor_A", "4_Somatomotor_B",
         "5_Dorsal_Attention_A", "6_Dorsal_Attention_B", "7_Salience+Ventral_Attention_A",
         "8_Salience+Ventral_Attention_B", "9_Limbic_A", "10_Limbic_B", "11_Control_C", "12_Control_A",
         "13_Control_B", "14_Temporal_Parietal", "15_Default_C", "16_Default_A", "17_Default_B"],
}
YEO7_SYSTEMS = ["Visual", "SomMot", "DorsAttn", "SalVentAttn", "Limbic", "Control", "Default"]
# Yeo-17 network -> Yeo-7 system (1-based), labels 1..17 (Yeo et al. 2011, Fig. 13)
YEO17_TO_YEO7 = np.array([1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 7])
_SYSTEM_KEYWORDS = [
    ("Visual", ("visual", "_vis")),
    ("SomMot", ("somatomotor", "sommot")),
    ("DorsAttn", ("dorsal", "dorsattn")),
    ("SalVentAttn", ("salience", "ventral", "salventattn")),
    ("Limbic", ("limbic", "lymbic")),
    ("Control", ("control", "cont", "frontoparietal")),
    ("Default", ("default", "temppar", "temporal_parietal")),
]
OTHER = "Other"
MAX_REGIONS_SHOWN = 30  # past this many regions the reports summarise by network
N_MODULES = 7


def yeo_systems(n_networks: int) -> list[str]:
    """Yeo-7 system of each network of Yeo's 7- or 17-network atlas, in label order 1..n."""
    return list(YEO7_SYSTEMS) if n_networks == 7 else [YEO7_SYSTEMS[k - 1] for k in YEO17_TO_YEO7]


def region_systems(region_names: list[str]) -> list[str]:
    """Yeo-7 system of each region from its name.

    Yeo-17 networks map through :data:`YEO17_TO_YEO7`; Yeo-7 regions are their
    own system; other atlases are matched by keywords in the region names
    (``Vis``, ``SomMot``, ``Default`` ... as in Schaefer labels), else
    :data:`OTHER`.
    """
    for n in (7, 17):
        if list(region_names) == YEO_NAMES[n]:
            return yeo_systems(n)
    out = []
    for name in region_names:
        low = name.lower()
        out.append(next((s for s, keys in _SYSTEM_KEYWORDS if any(k in low for k in keys)), OTHER))
    return out


@dataclass(frozen=True)
class Assignment:
    """The network of every region and where it comes from.

    ``networks`` one name per region (atlas order); ``source`` the origin in
    words, as the report states it; ``data_driven`` True for FC modules (not
    anatomical networks).
    """

    networks: list[str]
    source: str
    data_driven: bool = False

    @property
    def order(self) -> list[str]:
        """Network names in display order: Yeo-7 systems first (their order), then the others sorted, Other last."""
        names = set(self.networks)
        yeo = [s for s in YEO7_SYSTEMS if s in names]
        rest = sorted(names - set(yeo) - {OTHER}, key=_natural)
        return yeo + rest + ([OTHER] if OTHER in names else [])

    @property
    def codes(self) -> np.ndarray:
        """Index of each region's network in :attr:`order`, ``(n_regions,)``."""
        position = {name: k for k, name in enumerate(self.order)}
        return np.array([position[n] for n in self.networks], dtype=int)


def _natural(name: str) -> tuple:
    digits = "".join(c for c in name if c.isdigit())
    return (name.rstrip("0123456789 "), int(digits) if digits else 0)


def recorded_networks(sidecars: list[Path], regions: list[str]) -> Assignment | None:
    """The assignment recorded by the participant level in the first of ``sidecars`` (time series JSON)
    whose ``RegionNetworks`` names every region of ``regions``; None when none does."""
    for path in sidecars:
        try:
            meta = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue  # a sidecar nmflow cannot read gives no assignment; the time series were read already
        recorded = meta.get("RegionNetworks") if isinstance(meta, dict) else None
        if isinstance(recorded, dict) and all(isinstance(recorded.get(r), str) for r in regions):
            source = meta.get("NetworkSource") or "the network of each region recorded with the time series"
            return Assignment([recorded[r] for r in regions], f"{source} ({Path(path).name})")
    return None


def named_networks(regions: list[str]) -> Assignment | None:
    """Yeo-7 systems from the region names (:func:`region_systems`); None when no name matches a system."""
    systems = region_systems(regions)
    if all(s == OTHER for s in systems):
        return None
    return Assignment(systems, "Yeo-7 systems read from the region names")


def fc_modules(mean_fc: np.ndarray, n_modules: int = N_MODULES, seed: int = 0) -> Assignment:
    """Data-driven modules: k-means of the rows of the controls' mean FC matrix.

    Parameters
    ----------
    mean_fc : ndarray, shape (n_regions, n_regions)
        Mean FC of the reference controls (Fisher z; NaN entries count as 0).
    n_modules : int
        Number of modules (fewer when there are fewer regions).
    seed : int
        Seed of k-means (10 starts), so a rerun gives the same modules.

    Returns
    -------
    Assignment
        ``Module 1`` ... numbered by their first region in atlas order.
    """
    from sklearn.cluster import KMeans

    x = np.nan_to_num(np.asarray(mean_fc, float))
    np.fill_diagonal(x, 0.0)
    k = min(n_modules, len(x))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    first = {label: i for i, label in reversed(list(enumerate(labels)))}
    rank = {label: r for r, label in enumerate(sorted(first, key=first.get))}
    return Assignment([f"Module {rank[label] + 1}" for label in labels],
                      f"data-driven modules: k-means (k = {k}, seed {seed}) of the rows of the held-out controls' "
                      "mean FC matrix; not Yeo networks", data_driven=True)


def pair_index(connection: np.ndarray, codes: np.ndarray, n_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """Network codes ``(a, b)`` with ``a <= b`` of each connection (index in the regions' upper triangle)."""
    rows, cols = np.triu_indices(n_regions, k=1)
    a, b = codes[rows[connection]], codes[cols[connection]]
    return np.minimum(a, b), np.maximum(a, b)


def pair_counts(connection: np.ndarray, selected: np.ndarray, codes: np.ndarray,
                n_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """Selected (e.g. flagged) and all connections per network pair.

    Parameters
    ----------
    connection : ndarray of int, shape (n_connections,)
        Index of each connection in the regions' upper triangle.
    selected : ndarray of bool, shape (n_connections,)
    codes : ndarray of int, shape (n_regions,)
        Network index of each region (:attr:`Assignment.codes`).
    n_regions : int

    Returns
    -------
    n_selected, n_total : ndarray of int, shape (n_networks, n_networks)
        Symmetric; the diagonal counts the connections within a network.
    """
    k = int(codes.max()) + 1
    a, b = pair_index(np.asarray(connection), codes, n_regions)
    flat = a * k + b
    total = np.bincount(flat, minlength=k * k).reshape(k, k)
    chosen = np.bincount(flat[np.asarray(selected, bool)], minlength=k * k).reshape(k, k)
    return _symmetric(chosen), _symmetric(total)


def pair_means(values: np.ndarray, connection: np.ndarray, codes: np.ndarray, n_regions: int) -> np.ndarray:
    """Mean of ``values`` over the finite connections of each network pair.

    ``values`` ``(n_connections,)`` or ``(n_sets, n_connections)``; returns
    ``(n_networks, n_networks)`` or ``(n_sets, n_networks, n_networks)``,
    symmetric, NaN for a pair without a finite value.
    """
    v = np.atleast_2d(np.asarray(values, float))
    k = int(codes.max()) + 1
    a, b = pair_index(np.asarray(connection), codes, n_regions)
    flat = a * k + b
    order = np.argsort(flat, kind="stable")  # the connections of a pair side by side: one reduceat per sum
    pairs, starts = np.unique(flat[order], return_index=True)
    finite = np.isfinite(v[:, order])
    sums = np.add.reduceat(np.where(finite, v[:, order], 0.0), starts, axis=1) if starts.size else v[:, :0]
    counts = np.add.reduceat(finite, starts, axis=1, dtype=np.int64) if starts.size else v[:, :0]
    means = np.full((v.shape[0], k * k), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        means[:, pairs] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    means = means.reshape(-1, k, k)
    upper = np.triu(np.ones((k, k), bool))
    out = np.where(upper, means, np.swapaxes(means, 1, 2))
    return out[0] if np.ndim(values) == 1 else out


def _symmetric(upper: np.ndarray) -> np.ndarray:
    return upper + np.triu(upper, 1).T
