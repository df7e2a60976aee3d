"""benchmarks/energy_by_multiplicity.py: muon energies by the event's N and E0, model against reference.

A model against its own bundles agrees in every cell; single muons made 10^0.3 times more
energetic in the reference show up as -0.3 dex in the N = 1 cells only.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import BENCHMARKS, load_benchmark
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from test_evaluate_cli import small_model_and_own_sample

SCRIPT = BENCHMARKS / "energy_by_multiplicity.py"


@pytest.fixture(scope="module")
def model_and_reference():
    model, reference = small_model_and_own_sample(3000, seed=7, sample_seed=3)
    c = reference.conditions
    return model, reference, model.sample(c[:, 0], c[:, 1], c[:, 2], c[:, 3], seed=5)


def with_single_muons_scaled(batch: RaggedBatch, factor: float) -> RaggedBatch:
    muons = batch.flat_muons.copy()
    muons[np.repeat(batch.counts, batch.counts) == 1, 0] *= factor
    return RaggedBatch(batch.conditions, batch.counts, muons)


def test_a_model_agrees_with_its_own_bundles_in_every_cell(model_and_reference):
    _, reference, generated = model_and_reference
    result = load_benchmark("energy_by_multiplicity").compare(reference, generated, n_bootstrap=200, seed=0)
    measured = [c for c in result["cells"] if "pull" in c]
    assert len(measured) >= 4 and result["max_abs_pull"] < 3.5
    single = result["by_class"][0]
    assert single["class"] == "N = 1" and single["muons_reference"] >= 100 and abs(single["pull"]) < 3


def test_softer_single_muons_are_found_in_the_single_muon_cells_only(model_and_reference):
    benchmark = load_benchmark("energy_by_multiplicity")
    _, reference, generated = model_and_reference
    plain = benchmark.compare(reference, generated, n_bootstrap=200, seed=0)
    shifted = benchmark.compare(with_single_muons_scaled(reference, 10**0.3), generated, n_bootstrap=200, seed=0)
    single = shifted["by_class"][0]
    assert single["difference_dex"] == pytest.approx(plain["by_class"][0]["difference_dex"] - 0.3, abs=1e-3)
    assert single["pull"] < -5 and any("N = 1:" in line for line in shifted["cells_beyond_3_sigma"])
    assert shifted["by_class"][1:] == plain["by_class"][1:]  # the other events are untouched
    with pytest.raises(ValueError, match="reference's conditions"):
        elsewhere = RaggedBatch(generated.conditions * np.float32(1.01), generated.counts, generated.flat_muons)
        benchmark.compare(reference, elsewhere, n_bootstrap=10, seed=0)


def test_the_script_prints_one_json_object(model_and_reference, tmp_path):
    model, reference, _ = model_and_reference
    model.save(tmp_path / "model")
    write_shard(reference, tmp_path / "data" / "a.parquet", {})
    run = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tmp_path / "model"), "--data", str(tmp_path / "data"),
                          "--threads", "1", "--bootstrap", "50"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["events"] == len(reference) and result["extrapolated_events"] == 0 and result["failed_files"] == []
    assert [c["class"] for c in result["by_class"]] == ["N = 1", "N = 2-3", "N = 4-10", "N = 11-100", "N > 100"]
