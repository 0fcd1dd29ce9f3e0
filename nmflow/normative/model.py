"""Normative autoencoder: an encoder-decoder MLP trained on healthy controls.

Size rule
---------
For ``F`` features the layers are ``F -> h1 -> h2 -> h1 -> F`` with
``h1 = min(ceil(F / 2), 256)`` and ``h2 = min(max(ceil(F / 6), 2), 64)``:
Yeo-17 (136 features) gives 136-68-23-68-136,
Yeo-7 (21) gives 21-11-4-11-21 and a 111-region atlas (6105) gives
6105-256-64-256-6105.  Hidden layers use ``tanh``; the output is linear.
Inputs are standardised with the training controls' mean and standard
deviation (the "scaler", stored with the model); the loss is the mean squared
reconstruction error.

Conditional autoencoder
-----------------------
With ``C`` covariate columns (age, sex, site dummies; see
:mod:`nmflow.normative.covariates`) the covariates are concatenated to the
input of the encoder and to the code given to the decoder
(``F + C -> h1 -> h2, [h2 + C] -> h1 -> F``), so the model reconstructs a
subject's connectivity *given* its covariates (Pinaya et al. 2021's
conditional normative autoencoder).  With ``C = 0`` this is the plain
``F -> h1 -> h2 -> h1 -> F`` model.

Many models are trained at once: the weights of ``M`` models are stacked
``(M, in, out)`` and applied with one batched matrix product, each model with
its own mini-batches (its training controls, repeated by their bootstrap
counts, reshuffled every epoch).  The loss is the sum of the models' losses,
so each model's gradient - and, Adam being elementwise, each model's
trajectory - is that of training it alone.  A model whose early stopping has
triggered leaves the batch, so the batch shrinks as models converge.  Beyond
a memory budget the models train in consecutive chunks of as many as fit.
Training is mini-batch Adam with early stopping on the validation loss (once
per epoch, the weights of the best epoch are kept); training uses one CPU
thread; initial weights, mini-batch order and masks come from generators
seeded by each model's seed only, so the same inputs give the same weights
bit for bit on one machine, whatever the stack, the chunking or the device
given for the CPU.
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
from nmflow.fileio import read_json
from nmflow.normative.config import TrainConfig

CARD_FORMAT = "nmflow-normative-autoencoder/2"


def layer_sizes(n_features: int) -> list[int]:
    """``[F, h1, h2, h1, F]`` following the documented size rule."""
    if n_features < 2:
        raise ValueError(f"need at least 2 features, got {n_features}")
    h1 = min(math.ceil(n_features / 2), 256)
    h2 = min(max(math.ceil(n_features / 6), 2), 64)
    return [n_features, h1, h2, h1, n_features]


def param_shapes(n_features: int, n_covariates: int = 0) -> list[tuple[int, int]]:
    """``(fan_in, fan_out)`` of the four layers; covariates enter layers 0 and 2."""
    sizes = layer_sizes(n_features)
    return [(sizes[k] + (n_covariates if k in (0, 2) else 0), sizes[k + 1]) for k in range(4)]


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


def init_params(shapes: list[tuple[int, int]], seeds: list[int]) -> list[torch.Tensor]:
    """Stacked initial weights, model ``m`` drawn from ``torch.Generator().manual_seed(seeds[m])``.

    ``shapes`` are the layers' ``(fan_in, fan_out)`` (:func:`param_shapes`);
    uniform in ``+-1/sqrt(fan_in)`` as ``torch.nn.Linear``.
    """
    per_model = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        layers = []
        for fan_in, fan_out in shapes:
            bound = 1.0 / math.sqrt(fan_in)
            layers.append((torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound)
            layers.append((torch.rand(1, fan_out, generator=gen) * 2 - 1) * bound)
        per_model.append(layers)
    return [torch.stack([m[k] for m in per_model]) for k in range(len(per_model[0]))]


def _stack(t: torch.Tensor, n_models: int) -> torch.Tensor:
    return t.expand(n_models, *t.shape[-2:]) if t.dim() == 2 else t


def forward(params: list[torch.Tensor], x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Reconstruction ``(M, n, F)`` of ``x`` ``(n, F)`` (or ``(M, n, F)``) by ``M`` stacked models.

    ``cond`` ``(n, C)`` or ``(M, n, C)``: covariates fed to the encoder's and
    the decoder's first layer (conditional model); ``None`` when ``C = 0``.
    """
    n_models = params[0].shape[0]
    h = _stack(x, n_models)
    c = _stack(cond, n_models) if cond is not None and cond.shape[-1] else None
    n_layers = len(params) // 2
    for k in range(n_layers):
        if c is not None and k in (0, 2):
            h = torch.cat([h, c], dim=-1)
        h = torch.baddbmm(params[2 * k + 1], h, params[2 * k])
        if k < n_layers - 1:
            h = torch.tanh(h)
    return h


def _weighted_loss(recon: torch.Tensor, x: torch.Tensor, weights: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-model weighted mean squared error ``(M,)`` (over the ``mask``ed features when given,
    ``mask`` broadcastable to ``recon``)."""
    if mask is None:
        per_subject = ((recon - x) ** 2).mean(dim=-1)
    else:
        mask = mask.expand_as(recon)
        per_subject = (((recon - x) ** 2) * mask).sum(dim=-1) / mask.sum(dim=-1).clamp_min(1)
    return (per_subject * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-12)


def train_models(
    x,
    train_weights: np.ndarray,
    val_weights: np.ndarray,
    config: TrainConfig,
    init: list[torch.Tensor] | None = None,
    seeds: list[int] | None = None,
    cond=None,
    loss_mask: np.ndarray | None = None,
    device: str = "cpu",
    mem_bytes: float | None = None,
) -> TrainResult:
    """Train ``M`` autoencoders on standardised features, stacked while they fit in ``mem_bytes``.

    Parameters
    ----------
    x : ndarray, shape (n_subjects, n_features) or (n_models, n_subjects, n_features), or list of arrays
        Standardised features of every subject the models may use (shared by
        all models, or one array per model; a list may repeat one array for
        several models without copying it).
    train_weights, val_weights : ndarray, shape (n_models, n_subjects)
        Multiplicity of each subject in each model's training / validation set
        (bootstrap counts; 0 = not used).  Training weights are whole numbers
        (a subject counted twice appears twice in the model's epochs).  A
        model without validation subjects stops on its training loss.
    config : TrainConfig
    init : list of Tensor, optional
        Stacked starting weights (fine-tuning); otherwise :func:`init_params`.
    seeds : list of int, optional
        One seed per model; default ``config.seed + m``.
    cond : ndarray, shape (n_subjects, n_covariates) or (n_models, n_subjects, n_covariates), or list, optional
        Covariates of the conditional model (coded, see
        :mod:`nmflow.normative.covariates`).
    loss_mask : ndarray of bool, shape (n_features,) or (n_models, n_features), optional
        Features that count in the loss (a model fine-tuned on data that lack
        some of its features: those inputs are held at the training mean and
        their errors ignored).
    device : str
        Torch device of the weights and mini-batches (``cpu``, ``cuda``).
        Random draws are made on the CPU, so a device changes the arithmetic,
        never the masks or the order of the subjects.
    mem_bytes : float, optional
        Memory the stacked models may use (:func:`model_bytes` each); the
        models train in consecutive chunks of as many as fit (at least one).
        ``None``: all at once.  The chunking does not change any number.

    Training runs on ``config.threads`` threads whatever the machine: the
    order of torch's float sums depends on the thread count, so a fixed
    count keeps the models the same on any machine of one CPU type.
    """
    n_models = train_weights.shape[0]
    xs = _per_model(x, n_models)
    cs = _per_model(cond, n_models) if cond is not None else [np.zeros((xs[0].shape[0], 0), np.float32)] * n_models
    seeds = list(seeds) if seeds is not None else [config.seed + m for m in range(n_models)]
    counted = np.broadcast_to(loss_mask, (n_models, xs[0].shape[1])) if loss_mask is not None else None
    shapes = param_shapes(xs[0].shape[1], cs[0].shape[1])
    per_chunk = n_models if mem_bytes is None else max(1, int(mem_bytes // model_bytes(shapes, config.batch_size)))
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    best = [torch.empty(n_models, *shape) for fan_in, fan_out in shapes for shape in ((fan_in, fan_out), (1, fan_out))]
    try:
        parts = []
        for lo in range(0, n_models, per_chunk):
            ids = slice(lo, min(lo + per_chunk, n_models))
            weights = [b[ids] for b in best]  # the chunk's starting weights, then its best epoch's (no other copy)
            for w, p in zip(weights, [p[ids] for p in init] if init is not None else init_params(shapes, seeds[ids])):
                w.copy_(p)
            parts.append(_train_chunk(xs[ids], cs[ids], train_weights[ids], val_weights[ids], config, weights,
                                      seeds[ids], counted[ids] if counted is not None else None, torch.device(device)))
    finally:
        torch.set_num_threads(threads)
    return _concat(best, parts)


def model_bytes(shapes: list[tuple[int, int]], batch_size: int) -> int:
    """Memory one model takes while training (bytes): its weights held six times (weights,
    gradients, Adam's two moments, the best epoch's weights, Adam's scratch) and a mini-batch's
    activations and masks (float32)."""
    n_params = sum((fan_in + 1) * fan_out for fan_in, fan_out in shapes)
    width = sum(fan_in + fan_out for fan_in, fan_out in shapes)
    return 4 * (6 * n_params + 6 * max(batch_size, VAL_ROWS) * width)


VAL_ROWS = 256  # validation subjects forwarded at once


def _per_model(values, n_models: int) -> list[np.ndarray]:
    """One float32 array ``(n_subjects, k)`` per model (shared arrays are not copied)."""
    if isinstance(values, np.ndarray) and values.ndim == 2:
        values = [values] * n_models
    out = [np.asarray(v, dtype=np.float32) for v in values]
    if len(out) != n_models:
        raise ValueError(f"{len(out)} data arrays for {n_models} models")
    return out


def _train_chunk(xs, cs, train_weights, val_weights, config, best, seeds, counted, device) -> TrainResult:
    """Train the models of one chunk together (see :func:`train_models`).

    ``best`` holds the stacked starting weights of the chunk's models and receives, in place, each model's
    weights of its best epoch; the result holds the learning curves only (``params`` empty).
    """
    torch.use_deterministic_algorithms(True)
    n_models = len(xs)
    models = [_Model(x, c, wt, wv, config, seed, cm, device)
              for x, c, wt, wv, seed, cm in zip(xs, cs, train_weights, val_weights, seeds,
                                                counted if counted is not None else [None] * n_models)]
    params = [p.detach().to(device, torch.float32).clone().requires_grad_(True) for p in best]
    adam = _Adam(params, config)
    active = list(range(n_models))  # models still training; stopped ones leave the batch
    step = 0
    while active:
        batch = [models[m].batch() for m in active]
        xb, cb, mb, wb = (torch.stack([b[k] for b in batch]).to(device) for k in range(4))
        recon = forward(params, xb * (1 - mb) if config.mask_fraction > 0 else xb, cb)
        loss = _weighted_loss(recon, xb, wb, mb)
        grads = torch.autograd.grad(loss.sum(), params)
        params = adam.step(params, grads)
        step += 1
        going = []
        for j, m in enumerate(active):
            model = models[m]
            model.train_sum += float(loss[j].detach())
            if step % model.steps_per_epoch == 0 and model.end_epoch([p[j:j + 1].detach() for p in params]):
                for b, p in zip(best, params):
                    b[m] = p[j].detach()
            going.append(not model.stopped)
        keep = torch.tensor(going)
        if not keep.all():
            params = adam.keep(params, keep)
            active = [m for m, g in zip(active, going) if g]
    n_epochs = max(len(m.train_curve) for m in models)
    curve = np.full((2, n_epochs, n_models), np.nan, np.float32)
    for m, model in enumerate(models):
        curve[0, :len(model.train_curve), m] = model.train_curve
        curve[1, :len(model.val_curve), m] = model.val_curve
    return TrainResult([], curve[0], curve[1], np.array([m.best_epoch for m in models]),
                       np.array([m.best_loss for m in models], np.float32))


class _Model:
    """One model's data, random draws and early stopping inside a stacked chunk.

    Its training subjects (repeated by their weight) are reshuffled every
    epoch and dealt into mini-batches of ``config.batch_size`` (an epoch is
    ``ceil(n_training / batch_size)`` steps; its last batch, when shorter, is
    padded with rows of weight 0, which leave the loss and its gradient
    unchanged).  Each training subject
    hides a fresh random ``mask_fraction`` of its features in every batch
    (set to 0, the training mean) and is scored on the hidden ones;
    validation subjects keep one fixed mask, so the validation loss is
    comparable across epochs.  Order and masks come from generators seeded by
    the model's own seed only, so a model trained in a stack equals the model
    trained alone.  Batches hold ``min(batch_size, n_subjects)`` rows, so
    every model of a stack has the same batch shape.
    """

    def __init__(self, x, cond, train_weight, val_weight, config, seed, counted, device):
        counts = np.asarray(train_weight)
        if not np.array_equal(counts, np.round(counts)) or (counts < 0).any():
            raise ValueError("training weights must be whole numbers >= 0")
        self.x, self.cond, self.config, self.device = torch.from_numpy(x), torch.from_numpy(cond), config, device
        self.rows = torch.from_numpy(np.repeat(np.arange(len(counts)), counts.astype(int)))
        self.batch_size = min(config.batch_size, len(counts))  # the same for every model of a stack
        self.steps_per_epoch = max(1, math.ceil(len(self.rows) / self.batch_size))
        self.order_gen = torch.Generator().manual_seed(int(seed) + 104729)
        self.mask_gen = torch.Generator().manual_seed(int(seed) + 7919)
        self.counted = torch.as_tensor(np.asarray(counted), dtype=torch.float32) if counted is not None else None
        self.val_rows = np.flatnonzero(np.asarray(val_weight) > 0)
        self.val_weight = np.asarray(val_weight, float)[self.val_rows]
        self.val_mask = self._mask(len(self.val_rows))
        self.queue = self.rows[:0]
        self.train_sum = 0.0
        self.train_curve, self.val_curve = [], []
        self.best_loss, self.best_epoch, self.stopped = float("inf"), 0, False

    def _mask(self, n_rows: int) -> torch.Tensor:
        """Features scored ``(n_rows, F)``: the hidden ones when masking, the counted ones always."""
        n_features = self.x.shape[1]
        if self.config.mask_fraction > 0:
            mask = (torch.rand((n_rows, n_features), generator=self.mask_gen) < self.config.mask_fraction).float()
        else:
            mask = torch.ones(n_rows, n_features)
        return mask * self.counted if self.counted is not None else mask

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Next mini-batch: inputs ``(b, F)``, covariates ``(b, C)``, scored-feature mask ``(b, F)`` and
        row weights ``(b,)`` (0 on the rows padding an epoch's last, shorter batch)."""
        if not len(self.queue):
            self.queue = self.rows[torch.randperm(len(self.rows), generator=self.order_gen)]
        rows, self.queue = self.queue[:self.batch_size], self.queue[self.batch_size:]
        weight = torch.ones(self.batch_size)
        if len(rows) < self.batch_size:
            weight[len(rows):] = 0
            rows = torch.cat([rows, rows[:1].expand(self.batch_size - len(rows))])
        return self.x[rows], self.cond[rows], self._mask(len(rows)), weight

    def end_epoch(self, params: list[torch.Tensor]) -> bool:
        """Record the epoch's losses and decide on stopping; True when these weights are the best so far."""
        epoch = len(self.train_curve)
        train = self.train_sum / self.steps_per_epoch
        self.train_sum = 0.0
        self.train_curve.append(train)
        val = self.validation_loss(params) if len(self.val_rows) else train
        self.val_curve.append(val)
        improved = val < self.best_loss
        if improved:
            self.best_loss, self.best_epoch = val, epoch
        self.stopped = epoch - self.best_epoch >= self.config.patience or epoch + 1 >= self.config.epochs
        return improved

    def validation_loss(self, params: list[torch.Tensor]) -> float:
        """Weighted mean masked squared error of the validation subjects (forwarded ``VAL_ROWS`` at a time)."""
        total = 0.0
        with torch.no_grad():
            for lo in range(0, len(self.val_rows), VAL_ROWS):
                rows = self.val_rows[lo:lo + VAL_ROWS]
                x = self.x[rows].to(self.device)
                mask = self.val_mask[lo:lo + VAL_ROWS].to(self.device)
                recon = forward(params, x * (1 - mask) if self.config.mask_fraction > 0 else x,
                                self.cond[rows].to(self.device))[0]
                err = (((recon - x) ** 2) * mask).sum(dim=-1) / mask.sum(dim=-1).clamp_min(1)
                total += float(err.double().cpu() @ torch.from_numpy(self.val_weight[lo:lo + VAL_ROWS]))
        return total / self.val_weight.sum()


def _concat(params: list[torch.Tensor], parts: list[TrainResult]) -> TrainResult:
    """One result: the stacked best weights of all models and the curves of consecutive chunks of models."""
    n_epochs = max(len(p.train_loss) for p in parts)

    def pad(curve):
        return np.vstack([curve, np.full((n_epochs - len(curve), curve.shape[1]), np.nan, np.float32)])

    return TrainResult(params,
                       np.hstack([pad(p.train_loss) for p in parts]), np.hstack([pad(p.val_loss) for p in parts]),
                       np.concatenate([p.best_epoch for p in parts]), np.concatenate([p.best_loss for p in parts]))


def masked_forward(params: list[torch.Tensor], x: torch.Tensor, cond: torch.Tensor | None,
                   fraction: float) -> torch.Tensor:
    """Prediction ``(M, n, F)`` of every feature with that feature hidden from the input.

    Features are dealt into ``round(1 / fraction)`` blocks (feature ``k`` in
    block ``k mod n_blocks``); each block is predicted from an input where it is
    set to 0 (the training mean), as in masked training.  ``fraction = 0``
    is the plain reconstruction :func:`forward`.
    """
    if fraction <= 0:
        return forward(params, x, cond)
    n_blocks = max(2, round(1 / fraction))
    block = torch.arange(x.shape[-1], device=x.device) % n_blocks
    out = torch.zeros(params[0].shape[0], *x.shape[-2:], device=x.device)
    for b in range(n_blocks):
        hidden = (block == b).float()
        pred = forward(params, x * (1 - hidden), cond)
        out = out + pred * hidden
    return out


class _Adam:
    """Adam with L2 weight decay (``torch.optim.Adam(weight_decay=...)``) on stacked weights.

    Torch's fused kernel (one pass over the weights and moments: 10x faster
    than elementwise steps at 80,000 connections, where the step costs more
    than a mini-batch's forward and backward passes) through the functional
    :func:`torch.optim.adam.adam`, holding the moments here so that stopped
    models can be dropped from the batch with them.
    """

    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(self, params: list[torch.Tensor], config: TrainConfig):
        self.lr, self.weight_decay = config.lr, config.weight_decay
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = [[torch.zeros((), dtype=torch.float32, device=p.device) for _ in range(len(p))] for p in params]

    def step(self, params: list[torch.Tensor], grads: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """Update ``params`` in place (and return them).

        The kernel sees each model's tensors apart (a stacked tensor would be
        vectorised differently for another number of models), so a model's
        update does not depend on the stack.
        """
        from torch.optim.adam import adam

        def per_model(tensors):
            return [t[j] for t in tensors for j in range(len(t))]

        with torch.no_grad():
            adam(per_model([p.detach() for p in params]), per_model(grads), per_model(self.m), per_model(self.v), [],
                 [t for ts in self.t for t in ts], fused=True, amsgrad=False, beta1=self.betas[0],
                 beta2=self.betas[1], lr=self.lr, weight_decay=self.weight_decay, eps=self.eps, maximize=False)
        return params

    def keep(self, params: list[torch.Tensor], kept: torch.Tensor) -> list[torch.Tensor]:
        """Only the ``kept`` models (boolean over models) of ``params`` and of the moment estimates."""
        self.m = [m[kept] for m in self.m]
        self.v = [v[kept] for v in self.v]
        self.t = [[t for t, k in zip(ts, kept.tolist()) if k] for ts in self.t]
        return [p.detach()[kept].requires_grad_(True) for p in params]


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
    residual_sd: np.ndarray | None = None

    def standardize(self, features: np.ndarray) -> np.ndarray:
        """``(features - mean) / scale``, shape ``(n_subjects, n_features)``."""
        return (features - self.mean) / self.scale

    def reconstruct(self, z: np.ndarray, cond: np.ndarray | None = None) -> np.ndarray:
        """Reconstruction ``(n_subjects, n_features)`` of standardised features ``z``.

        ``cond`` ``(n_subjects, n_covariates)``: coded covariates of a conditional model.
        """
        fraction = float(self.card.get("config", {}).get("mask_fraction", 0.0))
        with torch.no_grad():
            c = torch.as_tensor(cond, dtype=torch.float32) if cond is not None else None
            out = masked_forward(self.stacked(), torch.as_tensor(z, dtype=torch.float32), c, fraction)
        return out[0].numpy().astype(float)

    def stacked(self) -> list[torch.Tensor]:
        """Weights as stacked tensors of one model (``M = 1``)."""
        return [torch.as_tensor(p)[None] for p in self.params]


def fit_scaler(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation ``(n_features,)`` of training controls; sd 0 becomes 1."""
    mean = features.mean(axis=0, dtype=np.float64)
    scale = features.std(axis=0, ddof=1, dtype=np.float64)
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
    if model.residual_sd is not None:
        tensors["calibration.residual_sd"] = model.residual_sd.astype(np.float64)
    save_file(tensors, str(path))
    n_features = int(model.params[-1].shape[1])
    card = dict(model.card, format=CARD_FORMAT, layer_sizes=layer_sizes(n_features),
                n_covariates=int(model.params[0].shape[0]) - n_features,
                weights_file=path.name, weights_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    card_path = path.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2, default=str))
    return path, card_path


def load_model(path: str | Path) -> NormativeModel:
    """Read a model written by :func:`save_model`; a bad file raises :class:`NmflowInputError`."""
    from safetensors.numpy import load_file

    path = Path(path)
    card_path = path.with_suffix(".json")
    card = read_json(card_path, "model card")
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
        shapes = param_shapes(len(mean), int(card["n_covariates"]))
        n_names = len(card["feature_names"]) if "feature_names" in card else len(mean)
    except Exception as exc:
        raise NmflowInputError(path, f"corrupt model file ({type(exc).__name__}: {exc})") from None
    found = [p.shape for p in params]
    expected = [shape for fan_in, fan_out in shapes for shape in ((fan_in, fan_out), (1, fan_out))]
    if found != expected or scale.shape != mean.shape or n_names != len(mean):
        raise NmflowInputError(path, f"model does not match its card: arrays {found} for {len(mean)} features and "
                               f"{card['n_covariates']} covariates")
    return NormativeModel(params, mean, scale, card, tensors.get("calibration.residual_sd"))
