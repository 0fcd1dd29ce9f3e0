"""Normative autoencoder: an encoder-decoder MLP trained on healthy controls.

Size rule
---------
For ``F`` features the layers are ``F -> h1 -> h2 -> h1 -> F`` with
``h1 = min(ceil(F / 2), 256)`` and ``h2 = min(max(ceil(F / 6), 2), 64)``:
Yeo-17 (136 features) gives 136-68-23-68-136 as in the original scripts,
Yeo-7 (21) gives 21-11-4-11-21 and a 111-region atlas (6105) gives
6105-256-64-256-6105.  Hidden layers use ``tanh``; the output is linear.
Inputs are standardised with the training controls' mean and standard
deviation (the "scaler", stored with the model); the loss is the mean squared
reconstruction error.

Many models are trained at once: the weights of ``M`` models are stacked
``(M, in, out)`` and applied with one batched matrix product, each model with
its own per-subject weights (bootstrap counts).  The loss is the sum of the
models' losses, so each model's gradient - and, Adam being elementwise, each
model's trajectory - is that of training it alone.  A model whose early
stopping has triggered leaves the batch, so the batch shrinks as models
converge.  Training is full-batch
Adam with early stopping on the validation loss (the weights of the best
epoch are kept); training uses one CPU thread; initial weights come from one seeded generator per model, so
the same inputs give the same weights bit for bit on one machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nmflow import __version__
from nmflow.errors import NmflowInputError
from nmflow.normative.config import TrainConfig

CARD_FORMAT = "nmflow-normative-autoencoder/1"


def layer_sizes(n_features: int) -> list[int]:
    """``[F, h1, h2, h1, F]`` following the documented size rule."""
    if n_features < 2:
        raise ValueError(f"need at least 2 features, got {n_features}")
    h1 = min(math.ceil(n_features / 2), 256)
    h2 = min(max(math.ceil(n_features / 6), 2), 64)
    return [n_features, h1, h2, h1, n_features]


@dataclass
class TrainResult:
    """Stacked best weights and learning curves of ``M`` models.

    ``params`` alternates weights ``(M, in, out)`` and biases ``(M, 1, out)``;
    ``train_loss`` and ``val_loss`` are ``(n_epochs_run, M)``; ``best_epoch``
    and ``best_loss`` (the validation loss there) are ``(M,)``.
    """

    params: list[torch.Tensor]
    train_loss: np.ndarray
    val_loss: np.ndarray
    best_epoch: np.ndarray
    best_loss: np.ndarray


def init_params(sizes: list[int], seeds: list[int]) -> list[torch.Tensor]:
    """Stacked initial weights, model ``m`` drawn from ``torch.Generator().manual_seed(seeds[m])``.

    Uniform in ``+-1/sqrt(fan_in)`` as ``torch.nn.Linear``.
    """
    per_model = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            layers.append((torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound)
            layers.append((torch.rand(1, fan_out, generator=gen) * 2 - 1) * bound)
        per_model.append(layers)
    return [torch.stack([m[k] for m in per_model]) for k in range(len(per_model[0]))]


def forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Reconstruction ``(M, n, F)`` of ``x`` ``(n, F)`` (or ``(M, n, F)``) by ``M`` stacked models."""
    h = x.expand(params[0].shape[0], *x.shape[-2:]) if x.dim() == 2 else x
    n_layers = len(params) // 2
    for k in range(n_layers):
        h = torch.baddbmm(params[2 * k + 1], h, params[2 * k])
        if k < n_layers - 1:
            h = torch.tanh(h)
    return h


def _weighted_loss(recon: torch.Tensor, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-model weighted mean squared error ``(M,)``."""
    per_subject = ((recon - x) ** 2).mean(dim=-1)
    return (per_subject * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-12)


def train_models(
    x: np.ndarray,
    train_weights: np.ndarray,
    val_weights: np.ndarray,
    config: TrainConfig,
    init: list[torch.Tensor] | None = None,
    seeds: list[int] | None = None,
) -> TrainResult:
    """Train ``M`` autoencoders at once on standardised features.

    Parameters
    ----------
    x : ndarray, shape (n_subjects, n_features) or (n_models, n_subjects, n_features)
        Standardised features of every subject the models may use (shared by
        all models, or one array per model, e.g. one per variant).
    train_weights, val_weights : ndarray, shape (n_models, n_subjects)
        Multiplicity of each subject in each model's training / validation set
        (bootstrap counts; 0 = not used).  A model without validation subjects
        stops on its training loss.
    config : TrainConfig
    init : list of Tensor, optional
        Stacked starting weights (fine-tuning); otherwise :func:`init_params`.
    seeds : list of int, optional
        One seed per model; default ``config.seed + m``.

    Training runs on one thread: the stacked matrices are small, extra
    threads gain little and stall when the cores are shared, and results then
    do not depend on the core count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(x, train_weights, val_weights, config, init, seeds)
    finally:
        torch.set_num_threads(threads)


def _train(x, train_weights, val_weights, config, init, seeds) -> TrainResult:
    torch.use_deterministic_algorithms(True)
    n_models = train_weights.shape[0]
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    wt = torch.as_tensor(train_weights, dtype=torch.float32)
    wv = torch.as_tensor(val_weights, dtype=torch.float32)
    no_val = wv.sum(dim=1) == 0
    if init is None:
        seeds = seeds if seeds is not None else [config.seed + m for m in range(n_models)]
        init = init_params(layer_sizes(x.shape[-1]), seeds)
    params = [p.detach().clone().requires_grad_(True) for p in init]
    best = [p.detach().clone() for p in params]
    adam = _Adam(params, config)
    active = torch.arange(n_models)  # models still training; stopped ones leave the batch
    best_loss = torch.full((n_models,), float("inf"))
    best_epoch = torch.zeros(n_models, dtype=torch.long)
    train_curve, val_curve = [], []
    for epoch in range(config.epochs):
        xa = xt if xt.dim() == 2 else xt[active]
        recon = forward(params, xa)
        loss = _weighted_loss(recon, xa, wt[active])
        with torch.no_grad():
            val = torch.where(no_val[active], loss, _weighted_loss(recon, xa, wv[active]))
            improved = val < best_loss[active]
            ids = active[improved]
            best_loss[ids] = val[improved]
            best_epoch[ids] = epoch
            for b, p in zip(best, params):
                b[ids] = p[improved]
            val_curve.append(_full_row(val, active, n_models))
        going = (epoch - best_epoch[active]) < config.patience
        if not bool(going.any()):
            break
        grads = torch.autograd.grad(loss.sum(), params)
        train_curve.append(_full_row(loss.detach(), active, n_models))
        params = adam.step(params, grads, keep=None if bool(going.all()) else going)
        active = active[going]
    n = len(train_curve)
    return TrainResult(best, np.array(train_curve), np.array(val_curve[:n]), best_epoch.numpy(),
                       best_loss.numpy())


def _full_row(values: torch.Tensor, active: torch.Tensor, n_models: int) -> np.ndarray:
    """``(n_models,)`` with ``values`` at the active models and NaN for stopped ones."""
    row = np.full(n_models, np.nan, dtype=np.float32)
    row[active.numpy()] = values.numpy()
    return row


class _Adam:
    """Adam with L2 weight decay (as ``torch.optim.Adam(weight_decay=...)``) on stacked weights.

    Its own few lines rather than ``torch.optim.Adam`` so that stopped models
    can be dropped from the batch together with their moment estimates.
    """

    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(self, params: list[torch.Tensor], config: TrainConfig):
        self.lr, self.weight_decay, self.t = config.lr, config.weight_decay, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def step(self, params: list[torch.Tensor], grads: tuple[torch.Tensor, ...],
             keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Update ``params`` in place; with ``keep`` (boolean over models) return only the kept models."""
        self.t += 1
        b1, b2 = self.betas
        bias1, bias2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        with torch.no_grad():
            for p, g, m, v in zip(params, grads, self.m, self.v):
                g = g + self.weight_decay * p
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                p.addcdiv_(m, (v.sqrt() / math.sqrt(bias2)).add_(self.eps), value=-self.lr / bias1)
        if keep is None:
            return params
        self.m = [m[keep] for m in self.m]
        self.v = [v[keep] for v in self.v]
        return [p.detach()[keep].requires_grad_(True) for p in params]


@dataclass
class NormativeModel:
    """One trained autoencoder with its scaler and model card.

    ``params`` are numpy arrays: weights ``(in, out)`` and biases ``(1, out)``
    alternating; ``mean`` and ``scale`` are ``(n_features,)``.
    """

    params: list[np.ndarray]
    mean: np.ndarray
    scale: np.ndarray
    card: dict = field(default_factory=dict)

    def standardize(self, features: np.ndarray) -> np.ndarray:
        """``(features - mean) / scale``, shape ``(n_subjects, n_features)``."""
        return (features - self.mean) / self.scale

    def reconstruct(self, z: np.ndarray) -> np.ndarray:
        """Reconstruction ``(n_subjects, n_features)`` of standardised features ``z``."""
        with torch.no_grad():
            out = forward(self.stacked(), torch.as_tensor(z, dtype=torch.float32))
        return out[0].numpy().astype(float)

    def stacked(self) -> list[torch.Tensor]:
        """Weights as stacked tensors of one model (``M = 1``)."""
        return [torch.as_tensor(p)[None] for p in self.params]


def fit_scaler(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation ``(n_features,)`` of training controls; sd 0 becomes 1."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0, ddof=1)
    return mean, np.where(scale > 0, scale, 1.0)


def model_from_result(result: TrainResult, index: int, mean: np.ndarray, scale: np.ndarray,
                      card: dict) -> NormativeModel:
    """Model ``index`` of a :class:`TrainResult`."""
    params = [p[index].detach().numpy().copy() for p in result.params]
    return NormativeModel(params, mean, scale, card)


def versions() -> dict:
    """Software versions recorded in model cards."""
    import safetensors

    return {"nmflow": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def save_model(model: NormativeModel, path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (safetensors) and the JSON card next to it (``.json``)."""
    from safetensors.numpy import save_file

    path = Path(path)
    tensors = {f"layer{k // 2}.{'weight' if k % 2 == 0 else 'bias'}": np.ascontiguousarray(p, np.float32)
               for k, p in enumerate(model.params)}
    tensors["scaler.mean"] = model.mean.astype(np.float64)
    tensors["scaler.scale"] = model.scale.astype(np.float64)
    save_file(tensors, str(path))
    card = dict(model.card, format=CARD_FORMAT, layer_sizes=[int(model.params[0].shape[0])]
                + [int(p.shape[1]) for p in model.params[::2]],
                weights_file=path.name, weights_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    card_path = path.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2, default=str))
    return path, card_path


def load_model(path: str | Path) -> NormativeModel:
    """Read a model written by :func:`save_model`; a bad file raises :class:`NmflowInputError`."""
    from safetensors.numpy import load_file

    path = Path(path)
    card_path = path.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NmflowInputError(card_path, f"cannot read model card ({exc})") from None
    if card.get("format") != CARD_FORMAT:
        raise NmflowInputError(card_path, f"not an nmflow model card (format {card.get('format')!r})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NmflowInputError(path, f"cannot read model ({exc.strerror})") from None
    if hashlib.sha256(data).hexdigest() != card.get("weights_sha256"):
        raise NmflowInputError(path, "model weights do not match their card (corrupt or replaced file)")
    try:
        tensors = load_file(str(path))
        n_layers = len(card["layer_sizes"]) - 1
        params = [tensors[f"layer{k}.{kind}"] for k in range(n_layers) for kind in ("weight", "bias")]
        mean, scale = tensors["scaler.mean"], tensors["scaler.scale"]
    except Exception as exc:
        raise NmflowInputError(path, f"corrupt model file ({type(exc).__name__}: {exc})") from None
    return NormativeModel(params, mean, scale, card)


def check_compatible(card: dict, feature_names: list[str], variant: dict) -> None:
    """Raise :class:`NmflowInputError` unless the model was trained on these features.

    ``variant`` holds the ``atlas``, ``seg``, ``desc`` (strategy) and ``meas``
    (metric) entities of the features.
    """
    for key in ("atlas", "seg", "desc", "meas"):
        if card.get(key) != variant.get(key):
            raise NmflowInputError(card.get("weights_file"), f"model is for {key}={card.get(key)!r}, "
                                   f"features have {key}={variant.get(key)!r}")
    if card.get("feature_names") != list(feature_names):
        raise NmflowInputError(card.get("weights_file"), f"model expects {len(card.get('feature_names', []))} "
                               f"features in its own order; got {len(feature_names)} that differ")
