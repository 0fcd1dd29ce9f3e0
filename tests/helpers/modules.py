"""Synthetic BEP017 time series of many regions in planted modules, for the report tests and benchmark.

No images and no simulator: each region is its module's signal plus noise, and
each patient group has region pairs that share an extra signal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

MODULES = ["Visual", "SomMot", "DorsAttn", "SalVentAttn", "Limbic", "Control", "Default"]


def write_study(root: Path, n_regions: int, n_subjects: int, n_volumes: int = 150, networks: bool = True,
                seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """Time series ``root/ts/sub-X/func/*_timeseries.tsv`` and ``root/participants.tsv``.

    Region ``k`` belongs to module ``k * 7 // n_regions``; each region is its module's signal (loading
    0.6) plus its own noise; in a patient group, 12 region pairs of its own (and 4 shared by both groups)
    share an extra signal (loading 0.5), which raises their correlation.
    """
    rng = np.random.default_rng(seed)
    module = np.arange(n_regions) * 7 // n_regions
    regions = [f"R{k + 1:03d}" for k in range(n_regions)]
    n_controls = int(0.6 * n_subjects)
    groups = ["control"] * n_controls + ["disorderA", "disorderB"] * ((n_subjects - n_controls) // 2)
    shared = rng.choice(n_regions, (4, 2), replace=False)
    planted = {g: np.vstack([shared, rng.choice(n_regions, (12, 2), replace=False)]) for g in ("disorderA", "disorderB")}
    table = pd.DataFrame({"participant_id": [f"sub-{k + 1:03d}" for k in range(len(groups))], "group": groups,
                          "site": [f"site{'AB'[k % 2]}" for k in range(len(groups))],
                          "age": np.round(rng.uniform(20, 70, len(groups)), 1),
                          "sex": rng.choice(["F", "M"], len(groups))})
    sidecar = {"RegionNetworks": {r: MODULES[m] for r, m in zip(regions, module)}} if networks else {}
    for pid, group in zip(table.participant_id, table.group):
        x = 0.6 * rng.standard_normal((n_volumes, 7))[:, module] + rng.standard_normal((n_volumes, n_regions))
        for i, j in planted.get(group, ()):
            extra = 0.5 * rng.standard_normal(n_volumes)
            x[:, i] += extra
            x[:, j] += extra
        folder = root / "ts" / pid / "func"
        folder.mkdir(parents=True)
        stem = folder / f"{pid}_task-rest_atlas-Synth_timeseries"
        pd.DataFrame(x, columns=regions).to_csv(f"{stem}.tsv", sep="\t", index=False, float_format="%.4g")
        if sidecar:
            Path(f"{stem}.json").write_text(json.dumps(sidecar))
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    return root / "ts", table
