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
    x: np.ndarray,
    train_weights: np.ndarray,
    val_weights: np.ndarray,
    config: TrainConfig,
    init: list[torch.Tensor] | None = None,
    seeds: list[int] | None = None,
    cond: np.ndarray | None = None,
    loss_mask: np.ndarray | None = None,
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
    cond : ndarray, shape (n_subjects, n_covariates) or (n_models, n_subjects, n_covariates), optional
        Covariates of the conditional model (coded, see
        :mod:`nmflow.normative.covariates`).
    loss_mask : ndarray of bool, shape (n_features,) or (n_models, n_features), optional
        Features that count in the loss (a model fine-tuned on data that lack
        some of its features: those inputs are held at the training mean and
        their errors ignored).

    Training runs on one thread: the stacked matrices are small, extra
    threads gain little and stall when the cores are shared, and results then
    do not depend on the core count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(x, train_weights, val_weights, config, init, seeds, cond, loss_mask)
    finally:
        torch.set_num_threads(threads)


def _train(x, train_weights, val_weights, config, init, seeds, cond, loss_mask) -> TrainResult:
    torch.use_deterministic_algorithms(True)
    n_models = train_weights.shape[0]
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    ct = (torch.as_tensor(np.asarray(cond), dtype=torch.float32) if cond is not None
          else torch.zeros(xt.shape[-2], 0))
    wt = torch.as_tensor(train_weights, dtype=torch.float32)
    wv = torch.as_tensor(val_weights, dtype=torch.float32)
    no_val = wv.sum(dim=1) == 0
    seeds = seeds if seeds is not None else [config.seed + m for m in range(n_models)]
    if init is None:
        init = init_params(param_shapes(x.shape[-1], ct.shape[-1]), seeds)
    masks = _Masks(config.mask_fraction, seeds, xt.shape[-2:])
    counted = (torch.as_tensor(np.broadcast_to(loss_mask, (n_models, xt.shape[-1])).copy(), dtype=torch.float32)[:, None, :]
               if loss_mask is not None else None)
    params = [p.detach().clone().requires_grad_(True) for p in init]
    best = [p.detach().clone() for p in params]
    adam = _Adam(params, config)
    active = torch.arange(n_models)  # models still training; stopped ones leave the batch
    best_loss = torch.full((n_models,), float("inf"))
    best_epoch = torch.zeros(n_models, dtype=torch.long)
    train_curve, val_curve = [], []
    for epoch in range(config.epochs):
        xa = xt if xt.dim() == 2 else xt[active]
        ca = ct if ct.dim() == 2 else ct[active]
        mask = masks.draw(active, wv[active] > 0)
        recon = forward(params, _stack(xa, len(active)) * (1 - mask) if mask is not None else xa, ca)
        scored = mask
        if counted is not None:
            scored = counted[active] if mask is None else mask * counted[active]
        loss = _weighted_loss(recon, xa, wt[active], scored)
        with torch.no_grad():
            val = torch.where(no_val[active], loss, _weighted_loss(recon, xa, wv[active], scored))
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


class _Masks:
    """Random input masks of masked training, one seeded generator per model.

    Each epoch every model hides a fresh random ``fraction`` of each training
    subject's features (set to 0, the training mean) and is scored on the
    hidden ones; validation subjects keep one fixed mask per model, so the
    validation loss is comparable across epochs and comes from the same
    forward pass.  A model's masks depend on its own seed only, so stacked
    training still equals training alone.
    """

    def __init__(self, fraction: float, seeds: list[int], shape: tuple[int, int]):
        self.fraction, self.shape = fraction, tuple(shape)
        self.gens = [torch.Generator().manual_seed(int(s) + 7919) for s in seeds]
        self.fixed = torch.stack([self._one(g) for g in self.gens]) if fraction > 0 else None

    def _one(self, gen: torch.Generator) -> torch.Tensor:
        return (torch.rand(self.shape, generator=gen) < self.fraction).float()

    def draw(self, active: torch.Tensor, validation: torch.Tensor) -> torch.Tensor | None:
        """Masks ``(n_active, n, F)``: fresh ones, the fixed ones on ``validation`` rows ``(n_active, n)``."""
        if self.fraction <= 0:
            return None
        fresh = torch.stack([self._one(self.gens[int(m)]) for m in active])
        return torch.where(validation[..., None], self.fixed[active], fresh)


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
    block = torch.arange(x.shape[-1]) % n_blocks
    out = torch.zeros(params[0].shape[0], *x.shape[-2:])
    for b in range(n_blocks):
        hidden = (block == b).float()
        pred = forward(params, x * (1 - hidden), cond)
        out = out + pred * hidden
    return out


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
