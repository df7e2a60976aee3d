"""The training recipes in examples/ are valid TrainConfigs (unknown or mistyped fields are refused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mubundle.configio import from_yaml, to_yaml
from mubundle.train.config import TrainConfig

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("train_*.yaml"))


def test_the_recipes_of_both_shipped_site_models_are_there():
    assert {p.name for p in EXAMPLES} >= {"train_icecube.yaml", "train_km3net_arca.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_training_recipe_loads_and_round_trips_through_yaml(path, tmp_path):
    config = from_yaml(TrainConfig, path)
    assert config.max_steps > config.lr_decay_steps > 0 and config.validate_every > 0
    copy = tmp_path / "copy.yaml"
    to_yaml(config, copy)
    assert from_yaml(TrainConfig, copy) == config
