"""Records between group-level nodes round-trip exactly (the workflow equals an in-memory run)."""

import numpy as np
import pandas as pd
import torch

from nmflow.group.features import Variant
from nmflow.group.records import (Prepared, Split, VariantFeatures, arrays_frame, frame_arrays, load_trained,
                                  record_subjects, save_trained)
from nmflow.normative.covariates import CovariateCoder
from nmflow.normative.crossfit import Preprocessed, make_folds
from nmflow.normative.model import TrainResult


def _table(n=20):
    return pd.DataFrame({"group": ["control"] * 14 + ["patient"] * 6, "site": ["a", "b"] * 10,
                         "age": np.linspace(20, 60, n)}, index=[f"{k:02d}" for k in range(n)])


def test_split_and_features_round_trip(tmp_path):
    folds = make_folds(_table(), "control", n_folds=2, val_split=0.2, seed=3, min_train=3)
    split = Split(folds, folds.pool[0], folds.train[0], folds.val[0])
    back = Split.load(split.save(tmp_path / "split.npz"))
    for name in ("pool", "train", "val", "held_out", "reference", "patients", "label"):
        np.testing.assert_array_equal(getattr(back.folds, name), getattr(folds, name))
    vf = VariantFeatures(Variant("Yeo2011", None, "gsr", "pearson"), np.random.default_rng(0).normal(size=(20, 3)),
                         ["a__b", "a__c", "b__c"], ["a", "b", "c"], [f"{k:02d}" for k in range(20)])
    again = VariantFeatures.load(vf.save(tmp_path / "f.npz"))
    assert again.variant == vf.variant and again.names == vf.names and again.regions == vf.regions
    assert again.x.tobytes() == vf.x.tobytes() and again.subjects == vf.subjects
    assert record_subjects(tmp_path / "f.npz") == vf.subjects
    aligned = vf.aligned(["03", "99", "00"])  # a subject without the variant gets a NaN row
    np.testing.assert_array_equal(aligned[[0, 2]], vf.x[[3, 0]])
    assert np.isnan(aligned[1]).all()
    rows = np.array([0, 2, 5, 7])
    part = split.subset(rows)
    for name in ("pool", "train", "val"):
        np.testing.assert_array_equal(getattr(part.folds, name), getattr(folds, name)[:, rows])
    for name in ("held_out", "reference", "patients", "label"):
        np.testing.assert_array_equal(getattr(part.folds, name), getattr(folds, name)[rows])
    np.testing.assert_array_equal(part.final_train, split.final_train[rows])


def test_prepared_and_trained_round_trip_bit_for_bit(tmp_path):
    rng = np.random.default_rng(1)
    vf = VariantFeatures(Variant("Yeo2011", "7nThick", "simple", "pearson"), rng.normal(size=(20, 3)),
                         ["a__b", "a__c", "b__c"], ["a", "b", "c"], [f"{k:02d}" for k in range(20)])
    coder = CovariateCoder({"age": [40.0, 12.0]}, {"sex": ["F", "M"]})
    preps = [Preprocessed(rng.normal(size=(20, 3)), rng.random(20) > 0.5, rng.normal(size=3), rng.random(3) + 1,
                          coder, rng.normal(size=(20, 2)), rng.normal(size=(20, 3)), [f"note {k}"]) for k in range(3)]
    p = Prepared(vf, np.array([True, False, True]), np.array([True, False, True]), ["a__b", "b__c"], 0,
                 preps[:2], preps[2])
    back = Prepared.load(p.save(tmp_path / "p.npz", vf.save(tmp_path / "f.npz")))
    assert back.final is not back.preps[0] and len(back.preps) == 2 and back.width == (2, 2)
    for a, b in zip(back.preps + [back.final], preps):
        assert a.features.tobytes() == b.features.tobytes() and a.linear.tobytes() == b.linear.tobytes()
        assert a.coder.to_dict() == b.coder.to_dict() and a.messages == b.messages
    params = [torch.randn(4, 5, 3), torch.randn(4, 1, 3)]
    result = TrainResult(params, rng.random((7, 4)), rng.random((7, 4)), np.arange(4), rng.random(4))
    index = pd.DataFrame({"variant": ["x", "y", "x", "y"], "kind": ["fit"] * 4, "fit": [0, 0, 1, 1],
                          "model": [0, 1, 2, 3]})
    got, got_index = load_trained(save_trained(tmp_path / "t.npz", result, index[index.variant == "y"]))
    assert got_index.model.tolist() == [0, 1] and got_index.fit.tolist() == [0, 1]
    assert torch.equal(got.params[0], params[0][[1, 3]]) and np.array_equal(got.val_loss, result.val_loss[:, [1, 3]])


def test_frames_keep_types_and_values():
    frame = pd.DataFrame({"name": ["a", "b"], "q": [0.1 + 1e-17, np.nan], "flagged": [True, False], "n": [1, 2]})
    back = arrays_frame("t", frame_arrays("t", frame), list(frame.columns))
    pd.testing.assert_frame_equal(back, frame)
