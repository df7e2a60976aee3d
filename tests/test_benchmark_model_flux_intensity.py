"""benchmarks/model_flux_intensity.py: simulator vs model muon intensity per vertical depth."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import BENCHMARKS, SMALL_MODEL, make_synthetic_batch
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from mubundle.geometry import slant_from_vertical_depth
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.transforms import FeatureTransform

SCRIPT = BENCHMARKS / "model_flux_intensity.py"
RADIUS = 6_374_134.0  # the icecube site's overburden


def test_the_simulator_intensity_is_sum_w_n_over_area_and_band_and_the_model_is_generated(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    zenith = np.arccos(rng.uniform(math.cos(math.radians(60.0)), 1.0, n))
    vertical = rng.choice([1.5, 2.5], n)
    conditions = np.stack([10 ** rng.uniform(3, 5, n), zenith, np.ones(n),
                           slant_from_vertical_depth(zenith, vertical * 1000.0, RADIUS) / 1000.0], axis=1)
    counts = rng.poisson(2.0, n)
    muons = np.stack([np.full(counts.sum(), 50.0), np.ones(counts.sum()), np.ones(counts.sum())], axis=1)
    weights = rng.uniform(1e-6, 1e-5, n)
    batch = RaggedBatch(conditions.astype(np.float32), counts, muons.astype(np.float32), weights=weights)
    config = {"flux": "H3a", "area_m2": 2.0, "energy_range": [1e3, 1e5], "zenith_range_deg": [0.0, 60.0],
              "depths_km": [1.5, 2.5], "site": "icecube", "showers": 400}
    # one shard of 200 showers of a 400-shower dataset: its weights sum to half the rate
    write_shard(batch, tmp_path / "data" / "part-00000.parquet",
                {"producer": "mubundle simulate", "config": config, "showers": [0, 199]})
    torch.manual_seed(0)
    MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(make_synthetic_batch(200, seed=1))).save(tmp_path / "model")
    run = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--model", str(tmp_path / "model"),
                          "--band-deg", "30", "--events", "300", "--out", str(tmp_path / "out.json")],
                         capture_output=True, text=True, check=True)
    result = json.loads(run.stdout)
    assert result == json.loads((tmp_path / "out.json").read_text())
    band = math.radians(30.0)
    omega = 2 * math.pi * (1 - math.cos(band))
    for row, depth in zip(result["depths"], (1.5, 2.5)):
        selected = (zenith <= band) & (vertical == depth)
        expected = 2 * (weights[selected] * counts[selected]).sum() / (2.0 * 1e4 * omega)
        assert row["vertical_depth_km"] == depth and row["simulator_events"] == int(selected.sum())
        assert row["simulator_intensity"] == pytest.approx(expected, rel=1e-5)
        refused = sum(result["model_rejected"].values())  # an untrained model's muons above E0, counted
        assert 300 - refused <= row["model_events"] <= 300 and row["model_intensity"] >= 0
        assert row["ratio"] == pytest.approx(row["model_intensity"] / row["simulator_intensity"])
    assert "--flux H3a --events 300" in result["generate_command"] and "--depth-kind vertical" in result["generate_command"]
    assert result["showers_read"] == 200 and result["showers_in_dataset"] == 400
    assert result["energy_range_gev"] == [1e3, 1e5] and result["zenith_band_deg"] == [0.0, 30.0]


def test_a_dataset_without_flux_weights_is_refused_with_one_line(tmp_path):
    write_shard(make_synthetic_batch(20), tmp_path / "data" / "part-00000.parquet", {"producer": "test"})
    run = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "data")], capture_output=True, text=True)
    assert run.returncode != 0 and "not a flux-weighted dataset" in run.stderr
