"""Training settings of the normative autoencoder (kept free of torch so the CLI starts fast)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Optimisation settings (all stored in the model card)."""

    epochs: int = 150
    lr: float = 3e-3
    weight_decay: float = 1e-2
    patience: int = 15
    seed: int = 0
    mask_fraction: float = 0.2
    batch_size: int = 64
    threads: int = 2  # fixed, not the machine's core count: the float sums, hence the models, depend on it
