"""benchmarks/sampling_ops.py: the profiler's self time per op of a sampling call, and the dense
matmuls' share of it (the ceiling of generate_throughput's gemm_fraction)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import BENCHMARKS, load_benchmark
from test_evaluate_cli import small_model_and_own_sample

SCRIPT = BENCHMARKS / "sampling_ops.py"


def test_shares_are_the_dense_ops_part_of_the_torch_ops_and_of_the_wall_time():
    summary = load_benchmark("sampling_ops").summarise(
        {"wall_seconds": 0.010, "per_op": {"aten::addmm": (0.002, 4), "aten::mm": (0.001, 1),
                                           "aten::native_layer_norm": (0.003, 3), "aten::copy_": (0.002, 9)}}, top=2)
    assert summary["dense_ms_per_call"] == pytest.approx(3.0)
    assert summary["torch_ops_self_ms_per_call"] == pytest.approx(8.0)
    assert summary["gemm_share_of_torch_ops"] == pytest.approx(3 / 8, abs=1e-3)
    assert summary["gemm_share_of_wall"] == pytest.approx(0.3, abs=1e-3)
    assert [entry["op"] for entry in summary["top_ops"]] == ["aten::native_layer_norm", "aten::addmm"]


@pytest.mark.parametrize("flux", [True, False])
def test_the_script_profiles_a_models_sampling_and_prints_one_json_object(tmp_path, flux):
    model, _ = small_model_and_own_sample(300, seed=7, sample_seed=3)
    model.save(tmp_path / "model")
    run = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tmp_path / "model"), "--events", "3000",
                          "--repeats", "2", *([] if flux else ["--no-flux"])], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["events"] == 3000 and result["threads"] == 1
    assert result["dense_ms_per_call"] > 0 and 0 < result["gemm_share_of_torch_ops"] <= 1
    assert result["extrapolated_events"] >= 0
