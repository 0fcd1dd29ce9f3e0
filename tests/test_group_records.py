"""Records between group-level nodes round-trip exactly (the workflow equals an in-memory run)."""

import weakref

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
    consecutive = index.assign(variant=["x", "y", "y", "x"])  # models 1 and 2: written from a view of the stack
    got, got_index = load_trained(save_trained(tmp_path / "t.npz", result, consecutive[consecutive.variant == "y"]))
    assert got_index.model.tolist() == [0, 1] and torch.equal(got.params[1], params[1][[1, 2]])
    assert np.array_equal(got.best_loss, result.best_loss[[1, 2]])


def test_fits_read_one_at_a_time_equal_the_full_record(tmp_path, monkeypatch):
    from nmflow.group.fitting import _jobs
    from nmflow.normative.config import TrainConfig

    rng = np.random.default_rng(2)
    vf = VariantFeatures(Variant("Yeo2011", None, "simple", "pearson"), rng.normal(size=(20, 3)),
                         ["a__b", "a__c", "b__c"], ["a", "b", "c"], [f"{k:02d}" for k in range(20)])
    coder = CovariateCoder({"age": [40.0, 12.0]}, {})
    preps = [Preprocessed(rng.normal(size=(20, 2)).astype(np.float32), rng.random(20) > 0.5, rng.normal(size=2),
                          rng.random(2) + 1, coder, rng.normal(size=(20, 1)), rng.normal(size=(20, 2)), [])
             for k in range(3)]
    full = Prepared(vf, np.array([True, False, True]), np.array([True, False, True]), ["a__b", "b__c"], 0,
                    preps[:2], preps[2])
    path = full.save(tmp_path / "p.npz", vf.save(tmp_path / "f.npz"))
    light = Prepared.load(path, large=(), raw=False)
    assert light.features.x is None and light.features.subjects == vf.subjects and light.n_fits == 3
    assert all(f.features is None and f.linear is None for f in light.preps + [light.final])
    for k, want in enumerate(preps):
        got = light.fit(k, ("features",))
        assert got.features.tobytes() == want.features.tobytes() and got.linear is None
        assert got.mean.tobytes() == want.mean.tobytes() and got.cond.tobytes() == want.cond.tobytes()
    single = Prepared(vf, full.kept, full.inputs, full.names, 0, preps[:1], preps[0])  # a split file: one fit
    again = Prepared.load(single.save(tmp_path / "one.npz", vf.save(tmp_path / "f.npz")), large=())
    assert again.n_fits == 2 and again.fit(1).linear.tobytes() == preps[0].linear.tobytes()

    # training reads each fit's features after the previous fit's are gone, and builds the same jobs
    folds = make_folds(_table(), "control", n_folds=2, val_split=0.2, seed=3, min_train=3)
    split = Split(folds, folds.pool.any(axis=0), folds.train[0], folds.val[0])
    boot = np.ones((2, int(folds.controls.sum())))
    want = _jobs("v", full, split, TrainConfig(), boot)
    read, held = Prepared.fit, []

    def one_at_a_time(self, k, large):
        assert all(ref() is None for ref in held), "a fit's features are still held when the next one is read"
        fit = read(self, k, large)
        held.append(weakref.ref(fit.features))
        return fit

    monkeypatch.setattr(Prepared, "fit", one_at_a_time)
    got = _jobs("v", light, split, TrainConfig(), boot)
    assert len(held) == 3 and [j[:3] + j[4:] for j in got] == [j[:3] + j[4:] for j in want]
    for a, b in zip(got, want):
        assert all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(a[3], b[3]))


def test_frames_keep_types_and_values():
    frame = pd.DataFrame({"name": ["a", "b"], "q": [0.1 + 1e-17, np.nan], "flagged": [True, False], "n": [1, 2]})
    back = arrays_frame("t", frame_arrays("t", frame), list(frame.columns))
    pd.testing.assert_frame_equal(back, frame)
