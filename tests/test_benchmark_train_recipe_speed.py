"""benchmarks/train_recipe_speed.py: a `mubundle train` command timed by its metrics records.

A tiny run (16-wide networks, B = 32) is timed from scratch, resumed, and stopped by the time
limit; the figures must be those of the run's own metrics.jsonl.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import BENCHMARKS, load_benchmark
from mubundle.configio import to_yaml
from test_train_loop import tiny_config, write_dataset

SCRIPT = BENCHMARKS / "train_recipe_speed.py"


def run_benchmark(data: Path, run: Path, config: Path, *extra: str, time_limit: float | None = None):
    limit = ["--time-limit", str(time_limit)] if time_limit is not None else []
    command = [sys.executable, str(SCRIPT), *limit, "--", "--data", str(data), "--run", str(run),
               "--config", str(config), "--device", "cpu", *extra]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    return completed.returncode, json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture()
def tiny_run(tmp_path) -> tuple[Path, Path, Path]:
    data = write_dataset(tmp_path / "data", events_per_folder=200)
    config = tmp_path / "tiny.yaml"
    to_yaml(tiny_config(log_every=2, checkpoint_every=4, max_steps=8, progress_bar=False), config)
    return data, tmp_path / "run", config


def test_a_run_is_timed_by_its_records_and_a_resume_from_its_checkpoint(tiny_run):
    data, run, config = tiny_run
    code, result = run_benchmark(data, run, config)
    assert code == 0 and result["exit_code"] == 0 and not result["stopped_at_time_limit"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert (result["resumed_from_step"], result["records"], result["first_step"], result["last_step"]) == (0, 4, 2, 8)
    assert result["batch_size"] == 32 and result["steps_per_s"] > 0 and result["setup_s"] > 0
    # per step: the muons the run's own totals say were trained between the first and last record
    assert result["muons_per_step"] == pytest.approx((records[-1]["muons_seen"] - records[0]["muons_seen"]) / 6, rel=1e-3)
    assert result["muons_per_s"] == pytest.approx(result["muons_per_step"] * result["steps_per_s"], rel=1e-2)
    assert result["device"].startswith("cpu") and "[" not in result["command"]  # 2 files: written out

    code, resumed = run_benchmark(data, run, config, "--max-steps", "12")
    assert code == 0 and resumed["resumed_from_step"] == 8
    assert (resumed["records"], resumed["first_step"], resumed["last_step"]) == (2, 10, 12)


def test_the_time_limit_stops_the_command_and_says_so(tiny_run):
    data, run, config = tiny_run
    # the child needs more than 0.5 s to import torch: stopped before any record, no rate
    code, result = run_benchmark(data, run, config, "--max-steps", "100000", time_limit=0.5)
    assert code == 1 and result["stopped_at_time_limit"] and result["exit_code"] != 0
    assert result["records"] == 0 and "no rate" in result["error"]


def test_long_file_lists_are_written_as_count_first_and_last():
    module = load_benchmark("train_recipe_speed")
    files = [f"d/part-{i:05d}.parquet" for i in range(5)]
    text = module.short_command(["--data", *files, "--validation", "v/a.parquet", "--run", "r", "--device", "cuda"])
    assert text == ("mubundle train --data [5 files: d/part-00000.parquet ... d/part-00004.parquet] "
                    "--validation v/a.parquet --run r --device cuda")
