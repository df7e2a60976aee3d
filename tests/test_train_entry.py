"""`mubundle train`: resolved config in the run dir, resume by re-running, supervised restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mubundle.cli import build_parser, main
from mubundle.configio import from_yaml, to_yaml
from mubundle.train.config import TrainConfig
from mubundle.train.entry import child_arguments, cli_overrides, resolve_config
from test_train_loop import tiny_config, write_dataset


def write_config(path: Path, **overrides) -> Path:
    to_yaml(tiny_config(**overrides), path)
    return path


def test_cli_trains_then_resumes_the_same_run_with_a_larger_max_steps(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    config_file = write_config(tmp_path / "tiny.yaml", max_steps=2)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--run", str(run), "--config", str(config_file), "--seed", "3"]) == 0
    resolved = from_yaml(TrainConfig, run / "config.yaml")
    assert resolved.seed == 3 and resolved.max_steps == 2 and resolved.model.critic_hidden == 16

    assert main(["train", "--data", str(data), "--run", str(run), "--max-steps", "4", "--lr-decay-steps", "2",
                 "--lr-decay-final", "0.5"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 4
    resumed = from_yaml(TrainConfig, run / "config.yaml")
    assert (resumed.max_steps, resumed.lr_decay_steps, resumed.lr_decay_final) == (4, 2, 0.5)
    history = [json.loads(line) for line in (run / "config_history.jsonl").read_text().splitlines()]
    assert history[-1]["changes"] == {"max_steps": [2, 4], "lr_decay_steps": [0, 2], "lr_decay_final": [0.1, 0.5]}
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lrs[-1] == pytest.approx(0.5 * resolved.lr)


def test_run_directory_config_wins_over_a_config_file_on_resume(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step-000000006.pt").touch()  # a run to resume (only the name is looked at)
    to_yaml(tiny_config(batch_size=16), run / "config.yaml")
    other = write_config(tmp_path / "other.yaml", batch_size=64)
    with pytest.warns(UserWarning, match="--config .*other.yaml is ignored"):
        config, changes = resolve_config(run, other, {"max_steps": 9})
    assert config.batch_size == 16 and config.max_steps == 9 and changes == {"max_steps": [6, 9]}


def test_a_config_file_starts_a_directory_without_checkpoint_as_a_new_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    to_yaml(tiny_config(batch_size=16), run / "config.yaml")  # left by a first start that was refused
    other = write_config(tmp_path / "other.yaml", batch_size=64)
    with pytest.warns(UserWarning, match="has no checkpoint: starting it as a new run with --config"):
        config, changes = resolve_config(run, other, {"max_steps": 9})
    assert config.batch_size == 64 and config.max_steps == 9 and changes == {}
    # without --config, the config.yaml of that start is the base of the new run
    config, changes = resolve_config(run, None, {"max_steps": 9})
    assert config.batch_size == 16 and changes == {}


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        resolve_config(tmp_path / "run", tmp_path / "nope.yaml", {})


def test_supervised_child_arguments_drop_max_restarts(tmp_path):
    args = build_parser().parse_args(
        ["train", "--data", "a", "b", "--run", "r", "--max-steps", "5", "--compile", "--max-restarts", "3"])
    child = child_arguments(args)
    assert child == ["train", "--data", "a", "b", "--run", "r", "--max-steps", "5", "--compile"]
    assert build_parser().parse_args(child).max_restarts == 0
    with_validation = build_parser().parse_args(["train", "--data", "a", "--validation", "v1", "v2", "--run", "r",
                                                  "--max-restarts", "1"])
    assert child_arguments(with_validation) == ["train", "--data", "a", "--run", "r", "--validation", "v1", "v2"]
    # a config that turns compilation on can be overridden: --no-compile reaches the child and the config
    no_compile = build_parser().parse_args(["train", "--data", "a", "--run", "r", "--no-compile", "--max-restarts", "1"])
    assert child_arguments(no_compile)[-1] == "--no-compile" and cli_overrides(no_compile) == {"compile": False}
    assert "compile" not in cli_overrides(build_parser().parse_args(["train", "--data", "a", "--run", "r"]))
    with pytest.raises(SystemExit):  # distill takes the devices train takes
        build_parser().parse_args(["distill", "--out", "o", "--device", "tpu"])


def test_cli_passes_validation_data_to_the_loop(tmp_path):
    data = write_dataset(tmp_path / "data")
    validation = write_dataset(tmp_path / "validation", events_per_folder=20)
    config_file = write_config(tmp_path / "tiny.yaml", max_steps=4, validate_every=2)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--validation", str(validation), "--run", str(run),
                 "--config", str(config_file)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["multiplicity_validation"]["best_step"] in (2, 4)
    assert "validation: 40 events" in (run / "logs" / "train.log").read_text()


def test_supervisor_restarts_a_crashed_training_which_then_walks_each_epoch_once(tmp_path):
    data = write_dataset(tmp_path / "data")
    config_file = write_config(tmp_path / "tiny.yaml", max_steps=6, restart_backoff_s=0.01)
    run = tmp_path / "run"
    env = dict(os.environ, MUBUNDLE_FAIL_AT_STEP="5", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "mubundle.cli", "train", "--data", str(data), "--run", str(run),
               "--config", str(config_file), "--max-restarts", "2"]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert completed.returncode == 0, completed.stderr[-2000:]
    logs = sorted((run / "logs").glob("attempt-*.log"))
    assert [p.name for p in logs] == ["attempt-001.log", "attempt-002.log"]
    assert "simulated crash before step 5" in logs[0].read_text()
    assert "restarting in" in completed.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    # epoch 0 = the 100 events of both range folders, each exactly once, then epoch 1 starts
    assert [r["epoch"] for r in records] == [0, 0, 0, 0, 1, 1]
    assert records[3]["events_seen"] == 100 and records[-1]["events_seen"] == 164
