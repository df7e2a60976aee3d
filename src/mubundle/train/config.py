"""Training configuration (single source of truth; round-trips to YAML via mubundle.configio)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from mubundle.errors import InvalidValueError, check_finite_number, check_integer
from mubundle.model.config import ModelConfig, differing_model_fields, read_model_config

#: the values of ``TrainConfig.device`` (``auto`` picks cuda, then mps, then cpu: train/device.py)
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored resolved as ``RUN/config.yaml``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    device: str = "auto"  # one of DEVICE_CHOICES
    batch_size: int = 1024  # events per step (B)
    max_steps: int = 10_000  # generator steps
    max_muons_per_step: int = 262_144  # micro-batch muon budget (gradient accumulation above it)
    # WGAN-GP
    critic_steps: int = 5
    gp_lambda: float = 10.0
    lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    grad_clip_norm: float = 0.0  # 0 = off
    # generator and critic lr decay linearly from lr to lr * lr_decay_final over the last
    # lr_decay_steps steps before max_steps (0 = constant lr); docs/training.md
    lr_decay_steps: int = 0
    lr_decay_final: float = 0.1
    # exponential moving average of the generator weights, the weights a run exports
    # (docs/training.md); 0 = export the raw weights
    generator_ema_decay: float = 0.999
    # weight of the per-muon Wasserstein-1 term of the generator loss (train.step.marginal_w1 of
    # the features of pooled muons, generated vs real, of the same events); 0 = off. docs/model.md
    muon_w1_weight: float = 0.0
    # weight of the per-muon energy-distance term of the generator loss (train.step.
    # marginal_energy_distance: unbiased, no pull on the tails at equilibrium); 0 = off. docs/model.md
    muon_energy_distance_weight: float = 0.0
    # the energy-distance term also on the radial feature asinh(r / r0) / u
    # (train.step.with_radial_feature; docs/model.md)
    muon_energy_distance_radius: bool = False
    # multiplicity model has its own Adam optimiser (see docs/training.md); 0 keeps it as it
    # starts (e.g. the refitted multiplicity model of an ``init_from`` export)
    multiplicity_lr: float = 1e-3
    # fine-tuning (docs/training.md): a fresh run starts from this model directory's feature
    # transform, multiplicity model and generator (their sizes are taken from it) with a
    # fresh critic; ignored when the run resumes from a checkpoint
    init_from: str | None = None
    # the first critic_warmup_steps steps update the critic only (generator and its average
    # unchanged): lets a fresh critic learn before it steers an already trained generator
    critic_warmup_steps: int = 0
    # with validation data (``mubundle train --validation``): the multiplicity model's mean
    # validation NLL every ``validate_every`` steps; its best weights are what the run exports,
    # and after ``multiplicity_patience`` evaluations without a better one the multiplicity
    # model is frozen at them (early stopping; 0 = never freeze). docs/training.md
    validate_every: int = 500
    multiplicity_patience: int = 10
    # data
    shuffle_buffer_events: int = 65_536
    transform_fit_events: int = 200_000  # events used to fit feature transforms
    # divergence guard
    max_consecutive_bad_steps: int = 5
    rollback_lr_factor: float = 0.5
    saturation_warn_fraction: float = 0.9  # of a batch near +-s
    max_rollbacks: int = 5  # more rollbacks than this end the run (TrainingDiverged)
    # bookkeeping
    log_every: int = 10
    histogram_every: int = 200
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    best_smoothing: float = 0.9  # EMA factor of the best-checkpoint score (see docs/training.md)
    progress_bar: bool = True
    # supervisor (--max-restarts): wait restart_backoff_s * 2**(failures-1), at most restart_backoff_max_s
    restart_backoff_s: float = 5.0
    restart_backoff_max_s: float = 300.0
    # speed
    compile: bool = False
    tf32: bool = True
    bf16: bool = False

    def __post_init__(self) -> None:
        """Refuse values no run can use, naming the field (a ``checkpoint_every: 0`` in a config
        file ended in a ZeroDivisionError mid-run)."""
        for name in ("batch_size", "max_muons_per_step", "critic_steps", "validate_every", "shuffle_buffer_events",
                     "transform_fit_events", "max_consecutive_bad_steps", "log_every", "histogram_every",
                     "checkpoint_every", "keep_checkpoints"):
            check_integer(name, getattr(self, name), 1)
        for name in ("seed", "max_steps", "lr_decay_steps", "critic_warmup_steps", "multiplicity_patience", "max_rollbacks"):
            check_integer(name, getattr(self, name), 0)
        check_finite_number("lr", self.lr, 0.0, min_inclusive=False)
        for name in ("gp_lambda", "grad_clip_norm", "lr_decay_final", "multiplicity_lr", "muon_w1_weight",
                     "muon_energy_distance_weight", "restart_backoff_s",
                     "restart_backoff_max_s"):
            check_finite_number(name, getattr(self, name), 0.0)
        for name in ("generator_ema_decay", "best_smoothing"):
            check_finite_number(name, getattr(self, name), 0.0, 1.0, max_inclusive=False)
        check_finite_number("rollback_lr_factor", self.rollback_lr_factor, 0.0, 1.0, min_inclusive=False)
        check_finite_number("saturation_warn_fraction", self.saturation_warn_fraction, 0.0, 1.0)
        for index, beta in enumerate(self.betas):
            check_finite_number(f"betas[{index}]", beta, 0.0, 1.0, max_inclusive=False)
        if self.device not in DEVICE_CHOICES:  # checked here, before a run directory is written
            raise InvalidValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {self.device!r}")


def with_init_model_config(config: TrainConfig) -> tuple[TrainConfig, dict[str, tuple[object, object]]]:
    """``config`` with the multiplicity/generator sizes of its ``init_from`` model directory.

    Returns ``(config, changes)``, ``changes = {field: (old, new)}``; the critic fields stay
    as configured. Without ``init_from`` the config is returned unchanged. ``init_from`` is a model
    directory or a shipped model's name (e.g. ``icecube``: the returned config holds its directory);
    anything else is an :class:`~mubundle.errors.InvalidValueError` naming it.
    """
    from mubundle.model.shipped import resolve_model_path

    if not config.init_from:
        return config, {}
    try:
        directory = resolve_model_path(config.init_from)
    except FileNotFoundError as error:
        raise InvalidValueError(f"init_from: {error} (a directory holding model.json and model.safetensors, "
                                "e.g. RUN/model)") from None
    config = dataclasses.replace(config, init_from=str(directory))
    changes = differing_model_fields(config.model, read_model_config(config.init_from))
    model = dataclasses.replace(config.model, **{name: new for name, (_, new) in changes.items()})
    return dataclasses.replace(config, model=model), changes
