"""`mubundle train` on an existing run directory: what resumes, what is refused, what a refusal leaves.

A run directory with a checkpoint is a run to resume: its config.yaml wins over --config, a
setting exact resume depends on (seed, data files, model sizes) is refused with one line naming
it, and a refused resume leaves the directory byte for byte as it was. A directory without a
checkpoint (a first start that was refused or killed) is not a run: the next start is a new run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from mubundle.cli import main
from mubundle.configio import from_yaml, to_yaml
from mubundle.data.lock import LOCK_NAME
from mubundle.data.native import write_shard
from mubundle.data.sources import Piece
from mubundle.train.checkpoint import latest_checkpoint
from mubundle.train.config import TrainConfig
from mubundle.train.loop import data_files, describe_data_change
from test_train_loop import synthetic_events, tiny_config, write_dataset


def write_config(path: Path, **overrides) -> Path:
    to_yaml(tiny_config(**overrides), path)
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict[str, Path]:
    """A finished 4-step run (checkpoints at 2 and 4), its data and config file."""
    root = tmp_path_factory.mktemp("source")
    data = write_dataset(root / "data")
    config = write_config(root / "tiny.yaml", max_steps=4, checkpoint_every=2)
    assert main(["train", "--data", str(data), "--run", str(root / "run"), "--config", str(config)]) == 0
    return {"data": data, "config": config, "run": root / "run"}


@pytest.fixture
def run(source, tmp_path) -> Path:
    """A copy of the finished run (mtimes kept: the export stays newer than its checkpoint)."""
    return Path(shutil.copytree(source["run"], tmp_path / "run"))


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every path under ``directory`` with the bytes of its files; the lock file only holds
    the PID of its last holder (mubundle.data.lock) and is left out."""
    return {str(path.relative_to(directory)): path.read_bytes() if path.is_file() else None
            for path in sorted(directory.rglob("*")) if path.name != LOCK_NAME}


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("mubundle train: error:")]


@pytest.mark.parametrize("change, named", [
    ("seed", "seed is 3 but the run was trained with 0"),
    ("data", "extra.parquet was added; 1 file(s) added, 0 missing, 0 changed"),
])
def test_a_refused_resume_leaves_the_run_directory_byte_for_byte_as_it_was(source, run, tmp_path, capsys, change,
                                                                            named):
    data, flags = [str(source["data"])], []
    if change == "seed":
        flags = ["--seed", "3"]
    else:
        write_shard(synthetic_events(20, seed=9), tmp_path / "extra.parquet", {})
        data.append(str(tmp_path / "extra.parquet"))
    before = snapshot(run)
    capsys.readouterr()

    assert main(["train", "--data", *data, "--run", str(run), "--max-steps", "6", *flags]) == 2
    assert snapshot(run) == before  # no config.yaml change, no history entry, no log line
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and named in errors[0] and str(run) in errors[0]

    # the run is not trapped: the plain command resumes it
    assert main(["train", "--data", str(source["data"]), "--run", str(run), "--max-steps", "6"]) == 0
    assert json.loads((run / "summary.json").read_text())["resumed_from_step"] == 4
    assert from_yaml(TrainConfig, run / "config.yaml").seed == 0
    history = [json.loads(line)["changes"] for line in (run / "config_history.jsonl").read_text().splitlines()]
    assert history == [{"max_steps": [4, 6]}]


def test_a_data_change_names_the_first_file_that_differs():
    saved = data_files([Piece("a.parquet", "native", 0, 0, 10), Piece("b.parquet", "native", 0, 0, 10),
                        Piece("b.parquet", "native", 1, 10, 5)])
    assert describe_data_change(saved, [Piece("a.parquet", "native", 0, 0, 10), Piece("b.parquet", "native", 0, 0, 12)]) \
        == "b.parquet changed (2 row group(s), 15 rows then; 1, 12 now); 0 file(s) added, 0 missing, 1 changed"
    assert describe_data_change(saved, [Piece("a.parquet", "native", 0, 0, 10)]) \
        == "b.parquet is missing; 0 file(s) added, 1 missing, 0 changed"


def test_a_resume_with_other_model_sizes_is_refused_naming_the_field(source, run, capsys):
    config = from_yaml(TrainConfig, run / "config.yaml")
    config.model.generator_hidden = 24
    to_yaml(config, run / "config.yaml")  # the documented way to change a setting without a flag
    before = snapshot(run)
    capsys.readouterr()
    assert main(["train", "--data", str(source["data"]), "--run", str(run), "--max-steps", "6"]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "model.generator_hidden is 24 but the run was trained with 16" in errors[0]
    assert snapshot(run) == before


def test_a_real_resume_keeps_its_config_over_a_new_config_file(source, run):
    other = write_config(run.parent / "other.yaml", batch_size=16, max_steps=5)
    with pytest.warns(UserWarning, match=r"config.yaml exists: resuming the run with it; --config .*other.yaml is ignored"):
        assert main(["train", "--data", str(source["data"]), "--run", str(run), "--config", str(other),
                     "--max-steps", "6"]) == 0
    resumed = from_yaml(TrainConfig, run / "config.yaml")
    assert (resumed.batch_size, resumed.max_steps) == (32, 6)
    assert json.loads((run / "summary.json").read_text())["resumed_from_step"] == 4


def test_a_first_start_refused_for_its_validation_data_leaves_no_run_to_resume(source, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(source["data"]), "--run", str(run), "--config", str(source["config"]),
                 "--validation", str(tmp_path / "nope")]) == 2
    assert not (run / "config.yaml").exists() and not (run / "logs").exists()

    smaller = write_config(tmp_path / "tiny16.yaml", batch_size=16, max_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "--data", str(source["data"]), "--run", str(run), "--config", str(smaller),
                     "--validation", str(source["data"])]) == 0
    assert not [w for w in caught if "is ignored" in str(w.message)]  # a new run: its --config applies
    assert from_yaml(TrainConfig, run / "config.yaml").batch_size == 16
    assert json.loads((run / "summary.json").read_text())["events_seen"] == 32


def test_a_config_refused_for_its_device_can_be_replaced_by_a_corrected_one(source, tmp_path, capsys):
    run = tmp_path / "run"
    tpu = tmp_path / "tpu.yaml"
    tpu.write_text(source["config"].read_text().replace("device: cpu", "device: tpu"))
    assert main(["train", "--data", str(source["data"]), "--run", str(run), "--config", str(tpu)]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert errors == [f"mubundle train: error: {tpu}: device must be one of auto, cpu, cuda, mps, got 'tpu'"]
    assert not (run / "config.yaml").exists()

    # a directory an earlier version left with that config.yaml and no checkpoint is not a run either
    run.mkdir(exist_ok=True)
    shutil.copy(tpu, run / "config.yaml")
    with pytest.warns(UserWarning, match="has no checkpoint: starting it as a new run with --config"):
        assert main(["train", "--data", str(source["data"]), "--run", str(run), "--config", str(source["config"]),
                     "--max-steps", "2"]) == 0
    assert from_yaml(TrainConfig, run / "config.yaml").device == "cpu"
    assert not (run / "config_history.jsonl").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_leaves_no_config_behind(source, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(source["data"]), "--run", str(run), "--config", str(source["config"]),
                 "--device", "cuda"]) == 6
    assert not (run / "config.yaml").exists()
    assert main(["train", "--data", str(source["data"]), "--run", str(run), "--config", str(source["config"]),
                 "--max-steps", "1"]) == 0
    assert from_yaml(TrainConfig, run / "config.yaml").device == "cpu"


@pytest.mark.parametrize("damage", ["removed", "older"])
def test_a_finished_run_exports_its_model_again_when_model_is_missing_or_older(source, run, capsys, damage):
    original = {name: (run / "model" / name).read_bytes() for name in ("model.safetensors", "model.json")}
    if damage == "removed":
        shutil.rmtree(run / "model")
    else:  # a kill between the checkpoint and its export leaves the previous export
        newest = latest_checkpoint(run)
        stamp = newest.stat().st_mtime_ns
        for path in (run / "model").iterdir():
            os.utime(path, ns=(stamp - 10**9, stamp - 10**9))
    assert main(["train", "--data", str(source["data"]), "--run", str(run), "--max-steps", "4"]) == 0
    assert {name: (run / "model" / name).read_bytes() for name in original} == original
    reason = "is missing" if damage == "removed" else "is older than step-000000004.pt"
    assert f"{run / 'model'} {reason}: exported the model of step-000000004.pt again" in capsys.readouterr().err


def test_an_init_from_model_that_does_not_exist_is_one_line(source, tmp_path, capsys):
    assert main(["train", "--data", str(source["data"]), "--run", str(tmp_path / "run"), "--config",
                 str(source["config"]), "--init-from", "no-such-model"]) == 2
    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "init_from: model directory no-such-model does not exist" in errors[0]
    assert "Errno" not in errors[0]


def test_command_line_warnings_are_formatted_lines(source, run, tmp_path):
    """The ignored --config and an unreadable data file: `mubundle train: warning:` / the loop's log format."""
    data = tmp_path / "data"
    shutil.copytree(source["data"], data)
    (data / "broken.parquet").write_bytes(b"not parquet")
    fresh = tmp_path / "fresh"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "mubundle.cli", "train", "--config", str(source["config"])]
    completed = subprocess.run([*base, "--data", str(data), "--run", str(fresh), "--max-steps", "1"],
                               env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    unreadable = [line for line in completed.stderr.splitlines() if "skipping unreadable data file" in line]
    assert unreadable and all(" WARNING skipping unreadable data file " in line for line in unreadable)
    assert "skipping unreadable data file" in (fresh / "logs" / "train.log").read_text()

    completed = subprocess.run([*base, "--data", str(source["data"]), "--run", str(run), "--max-steps", "4"],
                               env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert f"mubundle train: warning: {run / 'config.yaml'} exists: resuming the run with it; --config " \
           f"{source['config']} is ignored" in completed.stderr.splitlines()
