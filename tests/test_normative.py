"""Autoencoder: size rule, batched training, determinism, save/load, fine-tuning, deviations."""

import numpy as np
import pytest
import torch

from nmflow.errors import NmflowInputError
from nmflow.normative.deviations import z_against
from nmflow.normative.model import (TrainConfig, fit_scaler, forward, layer_sizes, model_bytes,
                                    load_model, model_from_result, param_shapes, save_model, train_models)

CONFIG = TrainConfig(epochs=150, lr=3e-3, patience=15, seed=3, mask_fraction=0.0)


def _data(n=40, f=21, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    x = latent @ rng.normal(size=(3, f)) + 0.3 * rng.normal(size=(n, f))
    return x + shift


def reconstruction_error(model, x, cond=None):
    z = model.standardize(x)
    return np.abs(z - model.reconstruct(z, cond))


def _train(z, n_train=30, **kw):
    wt = np.zeros((1, len(z)))
    wt[0, :n_train] = 1
    return train_models(z, wt, 1 - wt, kw.pop("config", CONFIG), **kw)


def test_size_rule():
    assert layer_sizes(136) == [136, 68, 23, 68, 136]
    assert layer_sizes(21) == [21, 11, 4, 11, 21]
    assert layer_sizes(6105) == [6105, 256, 64, 256, 6105]
    with pytest.raises(ValueError):
        layer_sizes(1)


def test_conditional_layers_take_covariates():
    assert param_shapes(136, 3) == [(139, 68), (68, 23), (26, 68), (68, 136)]
    rng = np.random.default_rng(0)
    n, f = 60, 12
    cond = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n)])
    # features depend on the covariates only: a conditional model predicts them, a plain one cannot
    z = np.outer(cond[:, 0], rng.normal(size=f)) + np.outer(cond[:, 1] - 0.5, rng.normal(size=f))
    z += 0.1 * rng.normal(size=(n, f))
    wt, wv = np.zeros((1, n)), np.zeros((1, n))
    wt[0, :40], wv[0, 40:] = 1, 1
    config = TrainConfig(epochs=300, patience=30)
    cond_res = train_models(z, wt, wv, config, cond=cond)
    assert [tuple(p.shape[1:]) for p in cond_res.params[::2]] == param_shapes(f, 2)
    model = model_from_result(cond_res, 0, np.zeros(f), np.ones(f), {})
    err = np.mean((model.reconstruct(z[40:], cond[40:]) - z[40:]) ** 2)
    # with its covariates zeroed the reconstruction is worse: the decoder uses them
    assert err < np.mean((model.reconstruct(z[40:], np.zeros_like(cond[40:])) - z[40:]) ** 2)


def test_large_atlas_trains():
    z = np.random.default_rng(0).normal(size=(12, 6105))
    res = _train(z, n_train=8, config=TrainConfig(epochs=2, patience=5))
    assert [p.shape[1:] for p in res.params[::2]] == [(6105, 256), (256, 64), (64, 256), (256, 6105)]


def test_deterministic_and_early_stopping():
    z = _data()
    a, b = _train(z), _train(z)
    for p, q in zip(a.params, b.params):
        assert torch.equal(p, q)
    assert np.array_equal(a.val_loss, b.val_loss)
    best = int(a.best_epoch[0])
    assert a.val_loss[best, 0] == a.val_loss[:, 0].min() == a.best_loss[0]
    assert a.train_loss[-1, 0] < a.train_loss[0, 0]
    # kept weights are those of the best epoch: their validation loss is the best one
    with torch.no_grad():
        recon = forward(a.params, torch.as_tensor(z, dtype=torch.float32))[0].numpy()
    assert ((recon[30:] - z[30:]) ** 2).mean() == pytest.approx(a.best_loss[0], rel=1e-5)


def test_stacked_training_equals_one_at_a_time():
    z = _data()
    rng = np.random.default_rng(1)
    wt = rng.integers(0, 3, (3, 40)).astype(float)
    wt[:, 30:] = 0
    wv = np.zeros((3, 40))
    wv[:, 30:] = 1
    together = train_models(z, wt, wv, CONFIG, seeds=[5, 6, 7])
    for m, seed in enumerate([5, 6, 7]):
        alone = train_models(z, wt[m:m + 1], wv[m:m + 1], CONFIG, seeds=[seed])
        assert alone.best_epoch[0] == together.best_epoch[m]
        for p, q in zip(alone.params, together.params):
            np.testing.assert_allclose(p[0].numpy(), q[m].numpy(), atol=1e-5)


def test_masked_training_predicts_hidden_features_and_stacks_exactly():
    z = _data()
    config = TrainConfig(epochs=150, lr=3e-3, patience=100, seed=3, mask_fraction=0.2)  # 10 noisy validation rows
    wt = np.zeros((2, 40))
    wt[:, :30] = 1
    wt[1, :10] = 2
    together = train_models(z, wt, 1 - (wt > 0), config, seeds=[5, 6])
    alone = train_models(z, wt[1:], 1 - (wt[1:] > 0), config, seeds=[6])
    assert alone.best_epoch[0] == together.best_epoch[1]
    for p, q in zip(alone.params, together.params):
        np.testing.assert_allclose(p[0].numpy(), q[1].numpy(), atol=1e-5)
    model = model_from_result(together, 0, np.zeros(21), np.ones(21), {"config": {"mask_fraction": 0.2}})
    # three latent factors: each hidden feature is predicted from the others far better than by the mean
    held_out = z[30:] - z[:30].mean(0)
    assert np.mean((model.reconstruct(z[30:]) - z[30:]) ** 2) < 0.6 * np.mean(held_out ** 2)


def test_save_load_roundtrip_and_bad_files(tmp_path):
    x = _data()
    mean, scale = fit_scaler(x[:30])
    res = _train((x - mean) / scale)
    names = [f"c{k}" for k in range(21)]
    card = {"atlas": "Yeo2011", "seg": "7nThick", "desc": "gsr", "meas": "pearson", "feature_names": names}
    model = model_from_result(res, 0, mean, scale, card)
    path, card_path = save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    np.testing.assert_array_equal(reconstruction_error(loaded, x), reconstruction_error(model, x))
    assert {k: loaded.card[k] for k in card} == card
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NmflowInputError, match="corrupt"):
        load_model(path)
    path.write_bytes(b"garbage")
    with pytest.raises(NmflowInputError, match="corrupt"):
        load_model(path)
    card_path.write_text("{not json")
    with pytest.raises(NmflowInputError, match="model card"):
        load_model(path)


def test_fine_tuning_lowers_new_site_error():
    old = _data(n=60, seed=0)
    rng = np.random.default_rng(9)
    new = _data(n=40, seed=0)[::-1] + rng.normal(0, 1.0, 21)  # same structure, site offset
    mean, scale = fit_scaler(old[:45])
    base = model_from_result(_train((old - mean) / scale, n_train=45), 0, mean, scale, {})
    z_new = base.standardize(new)
    wt = np.zeros((1, 40))
    wt[0, :20] = 1
    wv = np.zeros((1, 40))
    wv[0, 20:30] = 1
    tuned = train_models(z_new, wt, wv, TrainConfig(epochs=150, lr=1e-3, patience=15, mask_fraction=0.0),
                         init=base.stacked())
    tuned_model = model_from_result(tuned, 0, mean, scale, {})
    held_out = new[30:]
    before = reconstruction_error(base, held_out).mean()
    after = reconstruction_error(tuned_model, held_out).mean()
    assert after < 0.8 * before


def test_deviation_scores_hand_computed():
    ref = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]])  # mean 3, sd 2; second column constant
    scores = np.array([[7.0, 12.0]])
    np.testing.assert_allclose(z_against(scores, ref), [[2.0, 2.0]])
    x = _data()
    mean, scale = fit_scaler(x[:30])
    model = model_from_result(_train((x - mean) / scale), 0, mean, scale, {})
    z = (x - mean) / scale
    np.testing.assert_allclose(reconstruction_error(model, x), np.abs(z - model.reconstruct(z)))


def test_adam_step_equals_torch_adam():
    from nmflow.normative.model import _Adam

    gen = torch.Generator().manual_seed(0)
    ours = [torch.randn(4, 5, 3, generator=gen), torch.randn(4, 1, 3, generator=gen)]
    ref = [p.clone().requires_grad_(True) for p in ours]
    config = TrainConfig(lr=1e-2, weight_decay=1e-2)
    adam, opt = _Adam(ours, config), torch.optim.Adam(ref, lr=config.lr, weight_decay=config.weight_decay)
    for _ in range(5):
        grads = tuple(torch.randn(p.shape, generator=gen) for p in ours)
        ours = adam.step(ours, grads)
        for p, g in zip(ref, grads):
            p.grad = g.clone()
        opt.step()
    for p, q in zip(ours, ref):
        np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-6, atol=1e-7)
    kept = adam.keep(ours, torch.tensor([True, False, True, False]))
    assert [p.shape[0] for p in kept] == [2, 2] and adam.m[0].shape[0] == 2


def test_memory_budget_and_device_change_no_number():
    z = _data(n=50)
    rng = np.random.default_rng(2)
    wt = rng.integers(0, 3, (4, 50)).astype(float)
    wt[:, 40:] = 0
    wv = (wt == 0).astype(float)
    config = TrainConfig(epochs=200, lr=1e-2, patience=10, seed=3, mask_fraction=0.2, batch_size=16)
    whole = train_models(z, wt, wv, config)
    one_model = model_bytes(param_shapes(21), config.batch_size)
    for chunked in (train_models(z, wt, wv, config, mem_bytes=1.5 * one_model),  # one model at a time
                    train_models(z, wt, wv, config, mem_bytes=2 * one_model, device="cpu")):
        for p, q in zip(whole.params, chunked.params):
            assert torch.equal(p, q)
        np.testing.assert_array_equal(whole.val_loss, chunked.val_loss)
        np.testing.assert_array_equal(whole.best_epoch, chunked.best_epoch)
    # mini-batches of 16 from 40 training rows: 3 steps an epoch; the models did stop at different epochs
    assert len(set(whole.best_epoch.tolist())) > 1
    assert np.isnan(whole.val_loss[-1]).any()
