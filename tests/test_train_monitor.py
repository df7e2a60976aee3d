"""Run monitoring: metrics.jsonl consistency on resume, TensorBoard files, histogram features."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mubundle.train.monitor import MetricsLog, RateMeter, TensorBoardLog, bundle_features


def test_truncate_after_drops_later_records_and_torn_lines(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in range(1, 6):
        log.append({"step": step, "c_loss": float(step)})
    with log.path.open("a") as handle:
        handle.write('{"step": 6, "c_lo')  # crash mid-write
    assert log.truncate_after(3) == 3
    assert [record["step"] for record in log.read()] == [1, 2, 3]


def test_non_finite_values_are_written_as_null_not_nan(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"step": 1, "c_loss": math.nan, "g_loss": math.inf, "m_loss": 0.5})
    line = log.path.read_text()
    assert "NaN" not in line and "Infinity" not in line
    assert json.loads(line) == {"step": 1, "c_loss": None, "g_loss": None, "m_loss": 0.5}


def test_rate_meter_counts_events_and_muons():
    meter = RateMeter()
    meter.add(10, 100)
    meter.add(5, 50)
    events_per_s, muons_per_s = meter.rates()
    assert events_per_s > 0 and muons_per_s == pytest.approx(10 * events_per_s)


def test_bundle_features_are_log_energy_radius_and_multiplicity():
    counts = np.array([0, 2, 1])
    flat_muons = np.array([[100.0, 3.0, 4.0], [1000.0, 0.0, 0.0], [10.0, -6.0, 8.0]], dtype=np.float32)
    features = bundle_features(counts, flat_muons)
    assert np.allclose(features["log10_energy"], [2.0, 3.0, 1.0])
    assert np.allclose(features["log10_radius"], [np.log10(5.0), 1.0])  # the muon on the axis has no logarithm
    assert np.array_equal(features["multiplicity"], [0.0, 2.0, 1.0])


def test_tensorboard_log_writes_event_files(tmp_path):
    board = TensorBoardLog(tmp_path, resume_step=0)
    board.scalars({"step": 1, "c_loss": 0.5, "applied": True, "epoch": 0})
    real = bundle_features(np.array([1]), np.array([[10.0, 1.0, 1.0]], dtype=np.float32))
    board.feature_histograms(1, real, real)
    board.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
