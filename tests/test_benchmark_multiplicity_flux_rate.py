"""benchmarks/multiplicity_flux_rate.py: flux-weighted rate of the multiplicity model by distance from the kinematic zero."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import BENCHMARKS, SMALL_MODEL, make_synthetic_batch
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.domain import ModelDomain
from mubundle.model.threshold import MuonThreshold
from mubundle.model.transforms import FeatureTransform

SCRIPT = BENCHMARKS / "multiplicity_flux_rate.py"


def test_rates_are_weighted_sums_of_n_and_of_the_model_mean_with_nothing_below_the_zero(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    threshold = MuonThreshold("ice", 1.0, 0.05)
    depth = rng.choice([1.5, 2.5], n)
    mass = rng.choice([1.0, 56.0], n)
    energy = 10 ** rng.uniform(2.5, 6, n)
    x = energy / mass / threshold.surface_energy_gev(depth)
    counts = np.where(x < 1, 0, rng.poisson(1.0, n))
    muons = np.ones((counts.sum(), 3))
    weights = rng.uniform(1e-6, 1e-5, n)
    conditions = np.stack([energy, np.full(n, 0.2), mass, depth], axis=1)
    write_shard(RaggedBatch(conditions.astype(np.float32), counts, muons.astype(np.float32), weights=weights),
                tmp_path / "data" / "part-00000.parquet", {"producer": "test"})
    torch.manual_seed(0)
    model = MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(make_synthetic_batch(200, seed=1)))
    model.domain = ModelDomain(energy_gev=(1e2, 1e7), zenith_rad=(0.0, 1.0), mass_number=(1.0, 56.0),
                               slant_depth_km=(1.0, 3.0), muon_threshold=threshold)
    model.save(tmp_path / "model")
    run = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--model", str(tmp_path / "model"),
                          "--bootstrap", "20"], capture_output=True, text=True, check=True)
    result = json.loads(run.stdout)
    mean = model.count_mean_variance(torch.from_numpy(conditions.astype(np.float32)))[0].double().numpy()
    total = (weights * counts).sum()
    assert result["overall"]["model_over_simulator"] == pytest.approx((weights * mean).sum() / total, rel=1e-5)
    below = result["bins_of_energy_per_nucleon_over_bound"]["0-1"]
    assert below["events"] == int((x < 1).sum()) > 0
    assert below["simulator_rate_fraction"] == 0 and below["model_rate_fraction"] == 0
    assert 0 < result["below_bound_fraction_bare_network"] < 1  # the bare network does put muons there
    assert result["muon_threshold"] == threshold.to_dict()
    iron = result["bins_of_mass_number"]["56"]
    assert iron["events"] == int((mass == 56).sum())
    assert iron["model_over_simulator"] == pytest.approx(
        (weights * mean)[mass == 56].sum() / (weights * counts)[mass == 56].sum(), rel=1e-5)
    energy_bins = result["bins_of_log10_energy_gev"]
    assert sum(b["events"] for b in energy_bins.values()) == n  # half decades cover every event once
    top = energy_bins["5.5-6"]
    chosen = np.log10(energy.astype(np.float32)) >= 5.5
    assert top["simulator_rate_fraction"] == pytest.approx((weights * counts)[chosen].sum() / total, rel=1e-5)
