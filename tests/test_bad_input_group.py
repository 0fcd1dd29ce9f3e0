"""Bad inputs of the group level: one row per way to break the participants table, the relmats, a model.

The group level is one analysis: a bad input stops it with one ``nmflow: error:`` line naming the file,
``OUT_DIR/group`` is not created and nothing else in ``OUT_DIR`` or the input changes.  The cohort (16
subjects, Yeo-7, one strategy) is written once; each row breaks a copy of what it needs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.badinput import Row, message_line
from helpers.group import make_cohort, write_tree
from helpers.participant import hashes, run_cli, tree

VARIANT = {"atlas": "Yeo2011", "seg": "7nThin", "desc": "simple", "meas": "pearson"}


@pytest.fixture(scope="module")
def cohort_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("group_rows")
    cohort = make_cohort(n_controls=12, patients=(("disorderA", 4),), n_networks=7, n_volumes=80, seed=5,
                         estimate_d=False)
    write_tree(cohort, root / "out", root / "fmriprep", strategies=("simple",),
               atlas={"atlas": "Yeo2011", "segmentation": "7nThin"})
    return root


# -- ways to break the group level -----------------------------------------------------------------------------

def _participants(change):
    """Write ``change(participants table)`` to a file of its own, given with --participants."""
    def breaks(ctx):
        table = pd.read_csv(ctx["fmriprep"] / "participants.tsv", sep="\t", dtype=str)
        ctx["participants"] = ctx["tmp"] / "p.tsv"
        written = change(table)
        if isinstance(written, bytes):
            ctx["participants"].write_bytes(written)
        else:
            written.to_csv(ctx["participants"], sep="\t", index=False)
        ctx["args"] += ["--participants", str(ctx["participants"])]
    return breaks


def _relabel(group, count):
    def change(table):
        table.loc[table.index[table.group == "control"][:count], "group"] = group
        return table
    return change


def _relmat(change):
    """Change one subject's relmat (as text) in OUT_DIR."""
    def breaks(ctx):
        ctx["relmat"] = sorted(ctx["out"].rglob("sub-05*_relmat.tsv"))[0]
        ctx["relmat"].write_text(change(ctx["relmat"].read_text()))
    return breaks


def _cell_not_a_number(text: str) -> str:
    lines = text.splitlines()
    cells = lines[1].split("\t")
    cells[2] = "abc"
    return "\n".join([lines[0], "\t".join(cells), *lines[2:]]) + "\n"


def _cell_set(value: str, symmetric: bool):
    """Put ``value`` in row 2, column 3 of the matrix (and at its mirror cell when ``symmetric``)."""
    def change(text: str) -> str:
        rows = [line.split("\t") for line in text.splitlines()]
        rows[1][3] = value  # region 1 x region 3 (column 0 holds the names)
        if symmetric:
            rows[3][2] = value
        return "\n".join("\t".join(r) for r in rows) + "\n"
    return change


def _last_region_dropped(text: str) -> str:
    return "\n".join(line.rsplit("\t", 1)[0] for line in text.splitlines()[:-1]) + "\n"


def _participants_missing(ctx):
    ctx["participants"] = ctx["fmriprep"] / "participants.tsv"
    ctx["participants"].unlink()


def _model(change_weights=None, change_card=None):
    """A model of the variant (``--init-model``), its weights or card then changed."""
    def breaks(ctx):
        from nmflow.normative.model import NormativeModel, param_shapes, save_model

        rng = np.random.default_rng(0)
        params = [a for fan_in, fan_out in param_shapes(21, 0)
                  for a in (rng.normal(size=(fan_in, fan_out)), rng.normal(size=(1, fan_out)))]
        names = [f"{a}__{b}" for a, b in zip(*np.triu_indices(7, 1))]
        path, card = save_model(NormativeModel(params, np.zeros(21), np.ones(21), dict(VARIANT, feature_names=names)),
                                ctx["tmp"] / "model.safetensors")
        if change_weights:
            path.write_bytes(change_weights(path.read_bytes()))
        if change_card:
            card.write_text(change_card(card.read_text()))
        ctx.update(model=path, card=card)
        ctx["args"] += ["--init-model", str(path)]
    return breaks


def _split_file_missing(ctx):
    ctx["split"] = ctx["tmp"] / "split.tsv"
    ctx["args"] += ["--split-file", str(ctx["split"])]


def _timeseries(text):
    def breaks(ctx):
        folder = ctx["tmp"] / "xcpd" / "sub-01" / "func"
        folder.mkdir(parents=True)
        ctx["timeseries"] = folder / "sub-01_task-rest_atlas-Other_timeseries.tsv"
        ctx["timeseries"].write_text(text)
        ctx["args"] += ["--timeseries-dir", str(ctx["tmp"] / "xcpd")]
    return breaks


GROUP_ROWS = {
    "no controls": Row(_participants(lambda t: t.assign(group=t.group.replace("control", "healthy"))), "participants",
                       ("no controls", "--control-label")),
    "a group too small": Row(_participants(_relabel("disorderB", 2)), "participants", ("fewer than 3 subjects",)),
    "too few controls for the folds": Row(_participants(_relabel("disorderB", 6)), "participants",
                                          ("6 controls are too few",)),
    "covariate value missing": Row(_participants(lambda t: t.assign(age=t.age.where(t.index != 3))),
                                   "participants", ("covariate 'age' is missing for sub-04",),
                                   args=("--covariates", "age")),
    "covariate of numbers with words in it": Row(
        _participants(lambda t: t.assign(age=[*t.age[:2], "twenty", *t.age[3:5], "unknown", *t.age[6:]])),
        "participants", ("covariate 'age' holds numbers but also 'twenty' (sub-03), 'unknown' (sub-06)",),
        args=("--covariates", "age")),
    "mean FD unknown (no mean_fd column, no *_outliers.tsv)": Row(
        _participants(lambda t: t), "participants",
        ("covariate 'mean_fd' is unknown for 16 subject(s): sub-01, sub-02", "*_outliers.tsv"),
        args=("--covariates", "age", "mean_fd")),
    "mean FD not a number": Row(_participants(lambda t: t.assign(mean_fd=["0.1"] * 15 + ["high"])), "participants",
                                ("column mean_fd is not a number for sub-16 ('high')",)),
    "covariate column missing": Row(_participants(lambda t: t.drop(columns="age")), "participants",
                                    ("missing column(s) ['age']",), args=("--covariates", "age")),
    "participant listed twice": Row(_participants(lambda t: pd.concat([t, t.iloc[:1]])), "participants",
                                    ("duplicate participant_id ['01']",)),
    "participants file not a table": Row(_participants(lambda t: b"\xff\xfe\x00\x01" * 50), "participants",
                                         ("cannot read participants file",)),
    "participants file missing": Row(_participants_missing, "participants", ("participants file not found",)),
    "relmat cell not a number": Row(_relmat(_cell_not_a_number), "relmat",
                                    ("line 2, column", "'abc' is not a number")),
    "relmat without its node column": Row(_relmat(lambda text: text.replace("node", "region", 1)), "relmat",
                                          ("'node' column",)),
    "relmat of other regions": Row(_relmat(_last_region_dropped), "relmat", ("regions differ",)),
    "relmat holding inf": Row(_relmat(_cell_set("inf", symmetric=True)), "relmat",
                              ("infinite value off the diagonal (regions",)),
    "relmat not symmetric": Row(_relmat(_cell_set("0.123", symmetric=False)), "relmat",
                                ("not symmetric: largest asymmetry",)),
    "model weights corrupt": Row(_model(change_weights=lambda b: b[:-40]), "model", ("do not match their card",)),
    "model card not JSON": Row(_model(change_card=lambda t: t[:-5]), "card", ("model card is not valid JSON",)),
    "model of another atlas": Row(_model(change_card=lambda t: json.dumps(dict(json.loads(t), seg="17nThick"))),
                                  "model", ("no variant of these outputs matches the model",)),
    "split file missing": Row(_split_file_missing, "split", ("split file not found",)),
    "time series not numbers": Row(_timeseries("A\tB\n1\tx\n2\t3\n4\t5\n"), "timeseries",
                                   ("cannot read time series", "'x'")),
    "OUT_DIR is the input": Row(lambda ctx: ctx.update(fmriprep=ctx["out"]), "out", ("OUT_DIR is the input dataset",)),
}


@pytest.mark.parametrize("name", list(GROUP_ROWS))
def test_broken_group_call(name, cohort_tree, tmp_path, capsys):
    row = GROUP_ROWS[name]
    shutil.copytree(cohort_tree, tmp_path / "data")
    ctx = {"fmriprep": tmp_path / "data" / "fmriprep", "out": tmp_path / "data" / "out", "tmp": tmp_path,
           "args": list(row.args)}
    row.breaks(ctx)
    inputs = hashes(tmp_path / "data", "*")
    rc, _, err = run_cli([ctx["fmriprep"], ctx["out"], "group", "-w", tmp_path / "work", "--epochs", "5",
                          "--n-bootstrap", "0", *ctx["args"]], capsys)
    assert rc == 1
    message_line(err, str(ctx[row.names]), row.says)
    assert len([ln for ln in err.splitlines() if ln.startswith("nmflow: error:")]) == 1, err
    # nothing written but the call's log file, which ends with the error line
    logs = list((ctx["out"] / "logs").glob("nmflow-group-*.log"))
    written = {str(log.relative_to(tmp_path / "data")) for log in logs}
    assert {k: v for k, v in hashes(tmp_path / "data", "*").items() if k not in written} == inputs
    assert not (ctx["out"] / "group").exists()
    assert not [p for p in tree(ctx["out"]) if p.startswith(".")], "a staging folder was left"
    for log in logs:  # the call got as far as its workflow: one log, ending with the error line
        assert len(logs) == 1 and log.read_text().rstrip("\n").endswith(err.strip().splitlines()[-1])
