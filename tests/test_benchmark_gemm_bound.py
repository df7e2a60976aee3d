"""benchmarks/generate_throughput.py: the GEMM-bound replay has the recorded shapes on shared (hot) operands."""

from __future__ import annotations

import numpy as np
import torch

from helpers import SMALL_MODEL, load_benchmark, make_synthetic_batch
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.transforms import FeatureTransform


def test_replay_operands_match_the_recorded_matmuls_and_share_storage_across_row_counts():
    bench = load_benchmark("generate_throughput")
    torch.manual_seed(0)
    model = MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(make_synthetic_batch(40, seed=3))).eval()
    calls = bench.record_matmul_shapes(model, bench.benchmark_primaries(300, seed=0))
    assert any(kind == "addmm_" for kind, *_ in calls) and any(kind == "addmm" for kind, *_ in calls)
    operands = bench.gemm_operands(calls, torch.device("cpu"))
    assert len(operands) == len(calls)
    for (kind, rows, n_in, n_out, weight_contiguous, accumulator_full), (op, x, weight, acc) in zip(calls, operands):
        assert op == kind and x.shape == (rows, n_in) and weight.shape == (n_in, n_out)
        assert weight.is_contiguous() == weight_contiguous
        assert acc.shape == ((rows, n_out) if accumulator_full else (n_out,))
    storages = {x.untyped_storage().data_ptr() for _, x, _, _ in operands}
    signatures = {(kind, n_in, n_out, wc, af) for kind, _, n_in, n_out, wc, af in calls}
    assert len(storages) == len(signatures) < len(calls)  # one input buffer per signature, whatever the rows
    assert np.isfinite(bench.replay_gemms(operands, torch.device("cpu")))
