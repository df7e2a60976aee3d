"""Model hyper-parameters (single source of truth; round-trips to YAML via mubundle.configio)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from mubundle import configio
from mubundle.errors import check_finite_number, check_integer

#: the file of a model directory holding its format version, ModelConfig and transform
METADATA_FILE = "model.json"


@dataclass
class ModelConfig:
    """Sizes of the multiplicity model, generator and critic.

    Defaults are chosen so one training step on B = 8192 events runs fast on 2 CPU cores;
    see docs/model.md for what each part does.
    """

    # multiplicity model P(N | conditions): mixture of negative binomials
    multiplicity_hidden: int = 128
    multiplicity_layers: int = 3
    multiplicity_components: int = 8
    # sampled multiplicities above this are redrawn (bounded memory when generating)
    max_multiplicity: int = 200_000
    # generator
    global_noise_dim: int = 16
    muon_noise_dim: int = 8
    generator_context_dim: int = 64
    generator_hidden: int = 64
    generator_set_layers: int = 2  # EPiC-style per-muon <-> pooled global interaction layers
    # LayerNorm after the hidden Linears of the multiplicity model and the generator (the
    # critic always has it). WGAN-GP training needs it (../shared/seed post-mortem); False is
    # for students trained by `mubundle distill` (regression on a teacher, which trains without
    # it): it is ~20 % of a small student's sampling time (a student with it follows its teacher
    # more closely, docs/pretrained.md).
    layer_norm: bool = True
    # critic
    # The critic dominates the cost of a step (2 x 5 forward/backward passes plus 5 gradient
    # penalties with double backward over every muon): a 32-wide per-muon net and no set
    # layers (per-muon net -> pooling -> decision net) halve the step time against 64 / 1
    # (benchmarks/train_step.py, docs/model.md).
    critic_hidden: int = 32
    critic_pooled_dim: int = 64
    critic_set_layers: int = 0
    # smooth saturation of critic scores: s * tanh(x / s)
    critic_score_scale: float = 100.0
    # Xavier-normal gain of every Linear layer
    init_gain: float = 0.5

    def __post_init__(self) -> None:
        """Refuse sizes no network can have (a width of 0 ended in a ZeroDivisionError deep in torch)."""
        for name in ("multiplicity_hidden", "multiplicity_components", "max_multiplicity", "global_noise_dim",
                     "muon_noise_dim", "generator_context_dim", "generator_hidden", "critic_hidden", "critic_pooled_dim"):
            check_integer(name, getattr(self, name), 1)
        for name in ("multiplicity_layers", "generator_set_layers", "critic_set_layers"):
            check_integer(name, getattr(self, name), 0)
        for name in ("critic_score_scale", "init_gain"):
            check_finite_number(name, getattr(self, name), 0.0, min_inclusive=False)


#: fields that shape only the critic, a training-only network a model directory does not hold
CRITIC_FIELDS = ("critic_hidden", "critic_pooled_dim", "critic_set_layers", "critic_score_scale", "init_gain")


def read_model_config(model_dir: "str | Path") -> ModelConfig:
    """The :class:`ModelConfig` stored in ``model_dir/model.json`` (no torch import).

    Raises ``ValueError`` naming the file when it cannot be read.
    """
    path = Path(model_dir) / METADATA_FILE
    try:
        return configio.from_dict(ModelConfig, json.loads(path.read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"cannot read the model config in {path}: {error}") from error


def differing_model_fields(config: ModelConfig, exported: ModelConfig) -> dict[str, tuple[object, object]]:
    """Fields of the exported parts (multiplicity model, generator) where ``config`` differs
    from ``exported``: ``{field: (config value, exported value)}``."""
    return {
        f.name: (getattr(config, f.name), getattr(exported, f.name))
        for f in dataclasses.fields(ModelConfig)
        if f.name not in CRITIC_FIELDS and getattr(config, f.name) != getattr(exported, f.name)
    }
