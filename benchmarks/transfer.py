"""Transfer to a new dataset on real data (python benchmarks/transfer.py).

The paper's set-up (train on one cohort, fine-tune on a new site's controls, test its patients) on the
ABIDE development subset beside the repository: dataset A = 10 of its 14 sites, dataset B = the other 4
(STANFORD, TRINITY, UCLA_2, UM_2).  Steps, each a plain ``nmflow ... group`` call:

1. train + cross-fit on A (all its controls; A's autism subjects are A's patients);
2. on B, half of each site's controls fine-tune (``--split-file``: train/val), the other half are the
   held-out reference; B's autism subjects are tested:
   * *untuned*: A's model as it is (``--init-model A --no-fine-tune``, z calibrated on B's held-out
     controls);
   * *fine-tuned*: ``--init-model A`` on B's fine-tuning half;
   * *new sites only*: a model trained on B's fine-tuning half alone.

Printed for B's held-out controls: reconstruction error (mean |x - x_hat| in A's standardised units for
A-based models; the new-only model's own units differ, so its error is also given relative to the mean
predictor), calibration (share of |z| > 1.96, each control standardised by the *other* held-out controls'
residual scale; for the untuned model also with A's cross-fitted scale, the calibration a user would get
by silently reusing A's) per site; and autism vs held-out controls AUC of the global deviation.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file
from scipy.stats import mannwhitneyu

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from helpers.group import group_args  # noqa: E402
from helpers.realdata import abide_workspace  # noqa: E402

from nmflow.workflows.group import run_group  # noqa: E402

NEW_SITES = ["STANFORD", "TRINITY", "UCLA_2", "UM_2"]
VARIANT = "atlas-HO_meas-pearson"
COMMON = ("--covariates", "age", "sex", "--n-bootstrap", "0")


def run(folder: Path, participants: pd.DataFrame, ts: Path, *extra: str) -> Path:
    folder.mkdir(parents=True)
    participants.to_csv(folder / "participants.tsv", sep="\t", index=False)
    (folder / "dataset_description.json").write_text(json.dumps({"Name": folder.name, "BIDSVersion": "1.9.0"}))
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        run_group(group_args(folder, folder / "out", "--timeseries-dir", str(ts), "--participant-label",
                             *participants.participant_id, *COMMON, *extra))
    print(f"[{folder.name}: {len(participants)} subjects, {time.perf_counter() - start:.0f} s]")
    return folder / "out" / "group"


def split_file(table: pd.DataFrame, path: Path, seed: int = 0) -> pd.DataFrame:
    """Half of each site's controls fine-tune (80 % train, 20 % val), the other half are held out."""
    rng = np.random.default_rng(seed)
    rows = []
    for _, site in table[table.group == "control"].groupby("site"):
        ids = rng.permutation(site.participant_id.to_numpy())
        half = len(ids) // 2
        n_val = max(1, round(0.2 * half))
        rows += [(p, "val") for p in ids[:n_val]] + [(p, "train") for p in ids[n_val:half]]
        rows += [(p, "test") for p in ids[half:]]
    out = pd.DataFrame(rows, columns=["participant_id", "split"])
    out.to_csv(path, sep="\t", index=False)
    return out


def residual_scale(group: Path) -> np.ndarray:
    return load_file(str(group / f"{VARIANT}_model.safetensors"))["calibration.residual_sd"]


def loo_z(r: np.ndarray) -> np.ndarray:
    """Each row ``(n, F)`` standardised by the root mean square of the other rows."""
    total = (r ** 2).sum(axis=0)
    return r / np.sqrt((total - r ** 2) / (r.shape[0] - 1))


def summary(name: str, group: Path, scale_a: np.ndarray | None = None) -> dict:
    dev = pd.read_csv(group / f"{VARIANT}_deviations.tsv", sep="\t")
    card = json.loads((group / f"{VARIANT}_model.json").read_text())
    scored = list(dev.filter(like="__").columns)
    ref = dev[dev.group == "control"]
    s_b = residual_scale(group)
    index = {n: k for k, n in enumerate(card["feature_names"])}
    cols = [index[n] for n in scored]
    residual = ref[scored].to_numpy() * s_b[cols]  # back to feature units
    z = np.abs(loo_z(residual)) > 1.96
    row = {"model": name, "held-out controls": len(ref), "mean |x - x_hat|": ref.mean_abs_error.mean(),
           "|z|>1.96 (B-calibrated, LOO)": float(z.mean())}
    for site in sorted(ref.site.unique()):
        row[f"{site} |z|>1.96"] = float(z[(ref.site == site).to_numpy()].mean())
    if scale_a is not None:
        row["|z|>1.96 with A's scale"] = float((np.abs(residual / scale_a[cols]) > 1.96).mean())
    patients = dev[dev.group == "autism"]
    both = pd.concat([ref, patients])
    y = (both.group == "autism").to_numpy()
    row["AUC mean z^2"] = float(mannwhitneyu(both.mean_sq_z[y], both.mean_sq_z[~y]).statistic
                                / (y.sum() * (~y).sum()))
    row["explained variance"] = pd.read_csv(group / f"{VARIANT}_calibration.tsv", sep="\t").query(
        "scope == 'all' and connection == 'all' and model == 'autoencoder'").explained_variance.iloc[0]
    return row


def main() -> None:
    with abide_workspace("nmflow_bench_transfer_") as (root, table):
        a, b = table[~table.site.isin(NEW_SITES)], table[table.site.isin(NEW_SITES)]
        print(f"A: {len(a)} subjects ({(a.group == 'control').sum()} controls) over {a.site.nunique()} sites; "
              f"B: {len(b)} subjects ({(b.group == 'control').sum()} controls) over {', '.join(NEW_SITES)}")
        group_a = run(root / "A", a, root / "ts")
        model = group_a / f"{VARIANT}_model.safetensors"
        scale_a = residual_scale(group_a)
        split = split_file(b, root / "split.tsv")
        held_out = set(split.participant_id[split.split == "test"])
        untuned_subjects = b[(b.group != "control") | b.participant_id.isin(held_out)]
        rows = [summary("A untuned (--no-fine-tune)",
                        run(root / "B_untuned", untuned_subjects, root / "ts", "--init-model", str(model),
                            "--no-fine-tune"), scale_a),
                summary("A fine-tuned on B's half", run(root / "B_tuned", b, root / "ts", "--init-model", str(model),
                                                        "--split-file", str(root / "split.tsv"))),
                summary("B's half only", run(root / "B_only", b, root / "ts", "--split-file",
                                             str(root / "split.tsv")))]
        card = json.loads((root / "B_tuned" / "out" / "group" / f"{VARIANT}_model.json").read_text())
        print(f"fine-tuned card: dataset {card['dataset']!r}, fine_tuned_from dataset "
              f"{card['fine_tuned_from']['dataset']!r}; {card['transfer']['scored']} of "
              f"{card['transfer']['model_features']} model connections scored on B, "
              f"{card['transfer']['data_connections_unknown_to_model']} B connections unknown to A's model; "
              f"best epoch of the saved fine-tuned model {card['best_epoch']} (0: fine-tuning never lowered the "
              "validation loss, A's weights kept)")
        print(pd.DataFrame(rows).set_index("model").T.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
