"""benchmarks/muon_energy_tail.py: muons above energy thresholds, data against the generator for the same N."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import BENCHMARKS, SMALL_MODEL, load_benchmark, make_synthetic_batch
from mubundle.data.native import write_shard
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.transforms import FeatureTransform

SCRIPT = BENCHMARKS / "muon_energy_tail.py"


def test_tail_table_counts_muons_above_each_threshold_with_a_poisson_error():
    rows = load_benchmark("muon_energy_tail").tail_table(np.array([3.0, 3.6, 4.1, 4.2, 5.1]), np.array([3.7, 3.8, 3.9, 4.3]), (3.5, 4.0, 5.0, 6.0))
    assert [(r["reference"], r["model"]) for r in rows] == [(4, 4), (3, 1), (1, 0), (0, 0)]
    assert rows[0]["ratio"] == 1.0 and rows[0]["ratio_error"] == pytest.approx(np.sqrt(0.5))
    assert rows[1]["ratio"] == pytest.approx(1 / 3) and rows[1]["ratio_error"] == pytest.approx(np.sqrt(1 / 3 + 1) / 3)
    assert rows[2]["ratio"] == 0.0  # none generated where the data has one
    assert rows[3]["ratio"] is None and rows[3]["ratio_error"] is None  # nothing to compare with


def test_the_benchmark_compares_the_selected_events_muons_with_the_generators_for_the_same_counts(tmp_path):
    batch = make_synthetic_batch(200, seed=4)
    write_shard(batch, tmp_path / "data" / "part-00000.parquet", {"producer": "test"})
    torch.manual_seed(0)
    MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(batch)).save(tmp_path / "model")
    min_e0 = float(np.median(batch.conditions[:, 0]))
    run = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--model", str(tmp_path / "model"),
                          "--min-e0", str(min_e0), "--thresholds", "0", "2"], capture_output=True, text=True, check=True)
    result = json.loads(run.stdout)
    selected = (batch.counts > 0) & (batch.conditions[:, 0] >= np.float32(min_e0))
    energies = batch.flat_muons[np.repeat(selected, batch.counts), 0]
    assert result["events"] == int(selected.sum()) > 0 and result["muons"] == len(energies)
    assert [r["reference"] for r in result["tail"]] == [int((energies > 1).sum()), int((energies > 100).sum())]
    assert result["model_muons"] == result["muons"]  # the generator made one muon per data muon
    assert result["quantiles"]["0.5"]["reference"] == pytest.approx(np.quantile(np.log10(energies.astype(np.float64)), 0.5))
