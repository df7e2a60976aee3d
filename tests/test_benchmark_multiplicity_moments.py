"""benchmarks/multiplicity_moments.py: exact mixture moments against a reference's sample moments.

A reference sampled from the model itself must agree within its statistics (small pulls);
the same events with every N doubled must not. Errors come from whole showers, paired.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import BENCHMARKS, load_benchmark
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from test_evaluate_cli import small_model_and_own_sample

SCRIPT = BENCHMARKS / "multiplicity_moments.py"


@pytest.fixture(scope="module")
def model_and_own_sample(tmp_path_factory) -> tuple[Path, RaggedBatch]:
    root = tmp_path_factory.mktemp("moments")
    model, sample = small_model_and_own_sample(2000, seed=5, sample_seed=11)
    model.save(root / "model")
    return root / "model", sample


def run_benchmark(model_dir: Path, batch: RaggedBatch, directory: Path) -> dict:
    write_shard(batch, directory / "a.parquet", {})
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(directory), "--model", str(model_dir), "--threads", "1",
         "--bootstrap", "100"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(run.stdout)


def test_a_sample_of_the_model_itself_agrees_within_its_statistics(model_and_own_sample, tmp_path):
    model_dir, sample = model_and_own_sample
    result = run_benchmark(model_dir, sample, tmp_path / "data")
    overall = result["overall"]
    assert result["events"] == len(sample) and result["failed_files"] == []
    assert overall["mean_reference"] == pytest.approx(sample.counts.mean())
    assert overall["variance_reference"] == pytest.approx(sample.counts.var())
    for name in ("mean_pull", "variance_pull", "p_zero_pull"):
        assert abs(overall[name]) < 4, name
    for variable in ("energy", "mass", "zenith", "depth"):
        assert sum(b["events"] for b in result[variable]) == len(sample), variable


def test_doubled_multiplicities_are_far_outside_the_statistics(model_and_own_sample, tmp_path):
    model_dir, sample = model_and_own_sample
    doubled = RaggedBatch(sample.conditions, sample.counts * 2, np.repeat(sample.flat_muons, 2, axis=0))
    overall = run_benchmark(model_dir, doubled, tmp_path / "data")["overall"]
    assert overall["mean_rel_diff"] == pytest.approx(-0.5, abs=0.1)
    assert overall["mean_pull"] < -8 and overall["variance_pull"] < -8


def test_errors_come_from_whole_showers_and_from_the_paired_difference():
    """Three depths of one shower with the same N are one piece of information, not three;
    and the spread of which primaries are in the sample is not an error of the model."""
    module = load_benchmark("multiplicity_moments")
    rng = np.random.default_rng(1)
    shower_mean = rng.choice([1.0, 30.0], 3000)  # two kinds of primaries, very different N
    mean = np.repeat(shower_mean, 3)
    counts = np.repeat(rng.poisson(shower_mean), 3).astype(np.float64)  # the depths share N
    showers = np.repeat(np.arange(3000), 3)
    args = {"counts": counts, "mean": mean, "variance": mean, "p_zero": np.exp(-mean)}
    by_shower = module.bin_entry("all", **args, resample_weights=module.shower_resample_weights(showers, 300, rng))
    by_event = module.bin_entry("all", **args, resample_weights=module.shower_resample_weights(np.arange(9000), 300, rng))
    assert by_shower["mean_rel_se"] == pytest.approx(np.sqrt(3) * by_event["mean_rel_se"], rel=0.2)
    # paired: only the Poisson noise given the primaries, sqrt(<mu> / 3000) / <mu>
    assert by_shower["mean_rel_se"] == pytest.approx(np.sqrt(15.5 / 3000) / 15.5, rel=0.2)
    assert abs(by_shower["mean_pull"]) < 4


def test_the_model_variance_adds_the_spread_of_the_event_means():
    """Law of total variance: Poisson events with means 1 and 100 in equal numbers have
    variance <mu> + var(mu) = 50.5 + 2450.25 across events."""
    module = load_benchmark("multiplicity_moments")
    rng = np.random.default_rng(0)
    mean = np.repeat([1.0, 100.0], 20_000)
    counts = rng.poisson(mean).astype(np.float64)
    weights = module.shower_resample_weights(np.arange(mean.size), 50, rng)  # every event its own shower
    entry = module.bin_entry("all", counts, mean, variance=mean, p_zero=np.exp(-mean), resample_weights=weights)
    assert entry["variance_model"] == pytest.approx(50.5 + 2450.25)
    assert entry["p_zero_model"] == pytest.approx(np.exp(-1.0) / 2)
    assert abs(entry["variance_pull"]) < 4 and abs(entry["mean_pull"]) < 4 and abs(entry["p_zero_pull"]) < 4
