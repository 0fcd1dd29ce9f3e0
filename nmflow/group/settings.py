"""The group level's settings: one dataclass instead of an ``argparse.Namespace``.

Its field defaults are the one source of the group-level defaults (the CLI
flags of :mod:`nmflow.cli.group_options` read them);
:meth:`GroupSettings.from_namespace` copies parsed values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from nmflow.normative.config import TrainConfig


@dataclass(frozen=True)
class GroupSettings:
    """Everything the group level needs (see ``nmflow BIDS_DIR OUT_DIR group -h`` for each option)."""

    bids_dir: Path | None = None
    out_dir: Path | None = None
    participants: Path | None = None
    participant_label: tuple[str, ...] = ()
    group_column: str = "group"
    control_label: str = "control"
    site_column: str | None = "site"
    covariates: tuple[str, ...] = ()
    timeseries_dir: Path | None = None
    connectivity_dir: Path | None = None
    matrix_dir: Path | None = None
    matrix_values: str | None = None
    matrix_regions: Path | None = None
    metrics: tuple[str, ...] = ("pearson",)
    variants: tuple[str, ...] = ()
    folds: int = 5
    val_split: float = 0.2
    split_file: Path | None = None
    harmonize: str = "combat"
    n_bootstrap: int = 10
    alpha: float = 0.05
    p_rule: str = "fdr"
    single_case_rule: str = "maxt"
    test_score: str = "signed"
    z_scale: str = "pooled"
    init_model: Path | None = None
    no_fine_tune: bool = False
    seed: int = 0
    epochs: int = TrainConfig.epochs
    learning_rate: float = TrainConfig.lr
    weight_decay: float = TrainConfig.weight_decay
    patience: int = TrainConfig.patience
    mask_fraction: float = TrainConfig.mask_fraction
    batch_size: int = TrainConfig.batch_size
    omp_nthreads: int = TrainConfig.threads
    mem_gb: float | None = None
    device: str = "auto"
    max_missing: float = 0.2
    atlas_dir: Path | None = None
    work_dir: Path | None = None
    plugin: str | None = None
    plugin_args: dict = field(default_factory=dict)
    nprocs: int = 1
    verbose: bool = False

    @classmethod
    def from_namespace(cls, args) -> "GroupSettings":
        """Settings from parsed CLI arguments (unknown attributes ignored, ``None`` lists become empty)."""
        values = {}
        for f in dataclasses.fields(cls):
            if not hasattr(args, f.name):
                continue
            value = getattr(args, f.name)
            if value is None and f.default is not None and f.default is not dataclasses.MISSING:
                continue  # a flag left unset whose default depends on the level (--omp-nthreads)
            if f.name in ("participant_label", "covariates", "metrics", "variants"):
                value = tuple(value or ())
            if isinstance(value, Path):
                value = value.absolute()  # the nodes run inside the work folder
            values[f.name] = value
        from nmflow.participant.atlas import atlas_dir_from_env

        values["atlas_dir"] = atlas_dir_from_env(values.get("atlas_dir"))  # the report's connectome
        return cls(**values)

    @property
    def participants_file(self) -> Path:
        """The participants table: ``--participants`` or ``BIDS_DIR/participants.tsv``."""
        return Path(self.participants) if self.participants else Path(self.bids_dir) / "participants.tsv"

    @property
    def train_config(self) -> TrainConfig:
        """Optimisation settings of the autoencoder."""
        return TrainConfig(self.epochs, self.learning_rate, self.weight_decay, self.patience, self.seed,
                           self.mask_fraction, self.batch_size, self.omp_nthreads)

    @property
    def memory_bytes(self) -> float:
        """Memory one group step may use (bytes): ``--mem-gb`` (default: the memory available when the
        step starts) shared by the ``--nprocs`` steps that may run at once."""
        from nmflow.group.resources import GIB, available_memory_gb

        gb = self.mem_gb if self.mem_gb is not None else available_memory_gb()
        return gb * GIB / max(1, self.nprocs)

    @property
    def torch_device(self) -> str:
        """``--device`` with ``auto`` resolved (``cuda`` when torch sees a GPU)."""
        from nmflow.group.resources import resolve_device

        return resolve_device(self.device)

    def as_dict(self, fields: tuple[str, ...] | None = None) -> dict:
        """JSON-ready values (paths as strings) of ``fields`` (default: all)."""
        values = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
                for k, v in values.items() if fields is None or k in fields}
