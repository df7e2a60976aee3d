"""Fine-tuning: `mubundle train --init-from MODEL [--critic-warmup-steps K]`.

A fresh run starts from a model directory's transform, multiplicity model and generator
(their sizes taken from it) with a fresh critic of the configured size; the first K steps
train the critic only.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from mubundle.cli import build_parser, main
from mubundle.configio import from_yaml
from mubundle.model.bundle import MuonBundleModel
from mubundle.train import loop
from mubundle.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from mubundle.train.config import TrainConfig, with_init_model_config
from mubundle.train.entry import child_arguments
from test_train_loop import losses_by_step, tiny_config, write_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(data, model directory) of a 6-step tiny run."""
    root = tmp_path_factory.mktemp("source")
    data = write_dataset(root / "data")
    loop.train([data], root / "run", tiny_config())
    return data, root / "run" / "model"


def assert_same_tensors(actual: dict, expected: dict, prefix: str = "") -> None:
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=0, msg=f"{prefix}{name}")


def test_a_fine_tuning_run_starts_from_the_model_with_a_fresh_critic_of_its_own_size(trained, tmp_path):
    data, model_dir = trained
    source = MuonBundleModel.load(model_dir)
    config = tiny_config(init_from=str(model_dir), max_steps=0)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, critic_hidden=24))
    loop.train([data], tmp_path / "run", config)

    start = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert start["step"] == 0
    assert_same_tensors(start["model"], source.state_dict())  # transform buffers, multiplicity, generator
    assert start["transform"] == source.transform.to_dict()  # not refitted on the new data
    assert start["critic"]["muon_from_features.weight"].shape == (24, 3)
    # the generator average starts at the loaded weights: the export is the source model
    assert_same_tensors(MuonBundleModel.load(tmp_path / "run" / "model").state_dict(), source.state_dict())


def test_the_critic_warm_up_trains_the_critic_only_then_the_generator_learns(trained, tmp_path):
    data, model_dir = trained
    source = MuonBundleModel.load(model_dir)
    run = tmp_path / "run"
    config = tiny_config(init_from=str(model_dir), critic_warmup_steps=3, max_steps=3, multiplicity_lr=0.0)
    loop.train([data], run, config)

    after_warmup = load_checkpoint(latest_checkpoint(run))
    assert_same_tensors(after_warmup["model"], source.state_dict())  # generator and (lr 0) multiplicity unchanged
    assert after_warmup["optimizers"]["generator_ema"]["n_updates"] == 0
    start = dict(list_checkpoints(run))[0]  # the step-0 checkpoint (keep_checkpoints 2: steps 0 and 3)
    assert not torch.equal(load_checkpoint(start)["critic"]["decision.1.weight"], after_warmup["critic"]["decision.1.weight"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(math.isfinite(r["g_loss"]) for r in records)  # computed and reported during the warm-up

    loop.train([data], run, dataclasses.replace(config, max_steps=5))
    trained_on = load_checkpoint(latest_checkpoint(run))
    assert trained_on["step"] == 5 and trained_on["optimizers"]["generator_ema"]["n_updates"] == 2
    changed = [n for n, v in source.generator.state_dict().items() if not torch.equal(trained_on["model"][f"generator.{n}"], v)]
    assert changed, "after the warm-up the generator is trained"
    for name, value in source.multiplicity.state_dict().items():  # multiplicity_lr 0 keeps it
        assert torch.equal(trained_on["model"][f"multiplicity.{name}"], value), name


def test_a_run_killed_in_the_warm_up_resumes_exactly(trained, tmp_path, monkeypatch):
    data, model_dir = trained
    config = tiny_config(init_from=str(model_dir), critic_warmup_steps=4, max_steps=7)
    straight = tmp_path / "straight"
    loop.train([data], straight, config)
    monkeypatch.setenv(loop.FAIL_AT_STEP_ENV, "5")  # last checkpoint: step 3, inside the warm-up
    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.train([data], tmp_path / "resumed", config)
    monkeypatch.delenv(loop.FAIL_AT_STEP_ENV)
    summary = loop.train([data], tmp_path / "resumed", config)

    assert summary["resumed_from_step"] == 3
    assert losses_by_step(tmp_path / "resumed") == losses_by_step(straight)
    a, b = (load_checkpoint(latest_checkpoint(run))["model"] for run in (straight, tmp_path / "resumed"))
    assert_same_tensors(a, b)


def test_a_model_of_other_sizes_is_a_clear_error_from_the_api(trained, tmp_path):
    data, model_dir = trained
    config = tiny_config(init_from=str(model_dir))
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, generator_hidden=32))
    with pytest.raises(ValueError, match=r"generator_hidden 32 \(model: 16\)"):
        loop.train([data], tmp_path / "run", config)


def test_the_cli_takes_the_model_sizes_from_the_init_model_and_keeps_the_critic_sizes(trained, tmp_path):
    data, model_dir = trained
    run = tmp_path / "run"
    # default TrainConfig sizes (64-wide generator ...) on the command line: adopted from the model
    assert main(["train", "--data", str(data), "--run", str(run), "--init-from", str(model_dir),
                 "--critic-warmup-steps", "1", "--max-steps", "2", "--batch-size", "32", "--device", "cpu"]) == 0
    resolved = from_yaml(TrainConfig, run / "config.yaml")
    source = MuonBundleModel.load(model_dir)
    assert resolved.init_from == str(model_dir) and resolved.critic_warmup_steps == 1
    assert resolved.model.generator_hidden == source.config.generator_hidden == 16
    assert resolved.model.critic_hidden == TrainConfig().model.critic_hidden == 32
    assert [step for step, _ in list_checkpoints(run)][-1] == 2
    assert with_init_model_config(resolved) == (resolved, {})


def test_supervised_children_get_the_fine_tuning_flags():
    args = build_parser().parse_args(["train", "--data", "a", "--run", "r", "--init-from", "m",
                                      "--critic-warmup-steps", "7", "--max-restarts", "2"])
    assert child_arguments(args) == ["train", "--data", "a", "--run", "r", "--init-from", "m",
                                     "--critic-warmup-steps", "7"]


def test_an_unreadable_init_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="init_from: model directory .*missing does not exist"):
        with_init_model_config(TrainConfig(init_from=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="init_from: .*empty is not a model directory: missing model.safetensors"):
        with_init_model_config(TrainConfig(init_from=str(tmp_path / "empty")))


def test_a_shipped_model_is_named_by_its_name_and_recorded_by_its_directory():
    from mubundle.model.shipped import shipped_model_path

    config, changes = with_init_model_config(TrainConfig(init_from="icecube"))
    assert config.init_from == str(shipped_model_path("icecube"))  # what the run's config.yaml records
    assert changes and config.model.generator_hidden == 96  # the shipped model's own sizes
