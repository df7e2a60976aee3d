"""benchmarks/multiplicity_compare.py: paired log-likelihood of the true N, B against A.

On a reference sampled from a model, that model must beat a perturbed copy by many standard
errors and tie with itself exactly; the errors come from whole showers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import BENCHMARKS, load_benchmark
from mubundle.data.native import write_shard
from test_evaluate_cli import small_model_and_own_sample

SCRIPT = BENCHMARKS / "multiplicity_compare.py"


@pytest.fixture(scope="module")
def models_and_sample(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("compare")
    model, sample = small_model_and_own_sample(1500, seed=7, sample_seed=3)
    model.save(root / "true")
    write_shard(sample, root / "data" / "a.parquet", {})
    with torch.no_grad():  # the shared log location of the components up by ~0.3: ~35 % more muons
        model.multiplicity.head.bias[-1] += 0.3
    model.save(root / "perturbed")
    return root / "true", root / "perturbed", root / "data"


def run_benchmark(a: Path, b: Path, data: Path) -> dict:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", str(a), str(b), "--data", str(data), "--threads", "1",
         "--bootstrap", "100", "--pit-seeds", "3"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(run.stdout)


def test_the_model_that_made_the_sample_predicts_its_n_better(models_and_sample):
    true, perturbed, data = models_and_sample
    result = run_benchmark(perturbed, true, data)
    overall = result["log_likelihood_difference"]
    assert result["failed_files"] == [] and overall["nonfinite_events"] == 0
    assert overall["mean_nats_per_event"] > 6 * overall["standard_error"] > 0
    assert sum(b["events"] for b in result["log_likelihood_difference_by_energy"].values()) == result["events"]
    pit = result["pit"]
    assert pit["B"]["ks_ratio_min"] <= pit["B"]["ks_ratio_mean"] <= pit["B"]["ks_ratio_max"]
    assert pit["A"]["ks_ratio_mean"] > 2 * pit["B"]["ks_ratio_mean"]  # the perturbed model is miscalibrated


def test_a_model_ties_with_itself_exactly(models_and_sample):
    true, _, data = models_and_sample
    result = run_benchmark(true, true, data)
    assert result["log_likelihood_difference"]["mean_nats_per_event"] == 0.0
    assert result["log_likelihood_difference"]["standard_error"] == 0.0
    assert result["pit"]["A"] == result["pit"]["B"]


def test_errors_come_from_whole_showers():
    """Three depths of one shower with the same difference are one piece of information."""
    module = load_benchmark("multiplicity_compare")
    rng = np.random.default_rng(0)
    per_shower = rng.normal(0.0, 1.0, 2000)
    showers = np.repeat(np.arange(2000), 3)
    draws = np.stack([np.bincount(rng.integers(0, 2000, 2000), minlength=2000) for _ in range(300)]).astype(float)
    entry = module.paired_difference(per_shower[showers], showers, draws)
    assert entry["events"] == 6000 and entry["total_nats"] == pytest.approx(3 * per_shower.sum())
    assert entry["standard_error"] == pytest.approx(1.0 / np.sqrt(2000), rel=0.2)  # not 1 / sqrt(6000)
