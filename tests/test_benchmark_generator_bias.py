"""benchmarks/generator_bias.py: the generator given the true N, per-bin figures that add up."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import BENCHMARKS
from mubundle.data.native import write_shard
from mubundle.model.bundle import MuonBundleModel
from test_evaluate_cli import SMALL, reference_batch

SCRIPT = BENCHMARKS / "generator_bias.py"


def test_bins_partition_the_muons_and_the_shift_is_measured_against_the_reference(tmp_path):
    from mubundle.model.transforms import FeatureTransform

    reference = reference_batch(300, seed=4)
    write_shard(reference, tmp_path / "data" / "a.parquet", {})
    torch.manual_seed(0)
    model = MuonBundleModel(SMALL, FeatureTransform.fit(reference))
    model.save(tmp_path / "model")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--model", str(tmp_path / "model"),
         "--seeds", "2", "--threads", "1"],
        capture_output=True, text=True, check=True,
    )
    result = json.loads(run.stdout)
    assert result["events"] == 300 and result["muons"] == reference.n_muons and result["failed_files"] == []
    for variable in ("multiplicity", "energy", "mass", "zenith", "depth"):
        assert sum(b["muons"] for b in result[variable]) == reference.n_muons, variable
    # the overall shift is the difference of the two sample means, recomputed here
    generated = [np.log10(model.sample_muons(torch.from_numpy(reference.conditions.astype(np.float32)),
                                             torch.from_numpy(reference.counts.astype(np.int64)),
                                             torch.Generator().manual_seed(seed)).numpy()[:, 0]) for seed in (0, 1)]
    expected = np.mean([g.mean() for g in generated]) - np.log10(reference.flat_muons[:, 0]).mean()
    assert result["overall"]["mean_shift_dex"] == pytest.approx(expected, abs=1e-5)
