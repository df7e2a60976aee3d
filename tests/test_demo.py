"""`mubundle demo` runs the whole chain: generate, simulate, evaluate, train."""

from __future__ import annotations

import json
import math

from mubundle.data.native import read_metadata
from mubundle.demo import DemoConfig, auc_summary, run_demo
from mubundle.generate.api import load_model, shipped_model_path, shipped_models


def test_demo_writes_generated_reference_report_and_training_run(tmp_path):
    config = DemoConfig(primaries=40, energy_range=(1e4, 1e5), train_steps=2, train_batch_size=16)
    assert run_demo(tmp_path, seed=3, config=config) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert "multiplicity.p_zero" in metrics["overall"]
    assert (tmp_path / "report" / "report.html").stat().st_size > 1000
    assert (tmp_path / "generated.parquet").exists()
    lines = (tmp_path / "train_run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 2
    # the reference records what was simulated, as a `simulate` shard does: evaluate bins it by vertical depth
    recorded = read_metadata(tmp_path / "reference" / "part-00000.parquet")
    assert recorded["depths_sorted_km"] == [1.5, 2.0, 2.5] and recorded["site"] == "icecube"
    assert recorded["config"]["energy_range"] == [1e4, 1e5] and recorded["config"]["seed"] == 3
    assert recorded["config"]["showers"] == 40
    assert metrics["binning"]["depth"]["coordinate"].startswith("vertical depth")


def test_the_shipped_models_load_sample_and_fit_in_10_mb_together():
    files = [f for name in shipped_models() for f in shipped_model_path(name).iterdir()]
    assert len(files) >= 4  # model.safetensors + model.json each
    assert sum(f.stat().st_size for f in files) <= 10 * 1024 * 1024
    for name in (None, *shipped_models()):
        model = load_model(name)
        depth = sum(model.domain.vertical_depth_km) / 2 / math.cos(0.2)  # the middle of its depths, inside the domain
        bundles = model.sample([1e6, 1e6], [0.2, 0.2], [1, 56], [depth, depth], seed=5)
        assert len(bundles) == 2 and (bundles.flat_muons[:, 0] > 0).all()


def test_the_demo_reports_the_auc_beside_its_floor_or_why_there_is_none():
    assert auc_summary({"model": 0.554, "floor": 0.548, "ratio": 1.01}) == (
        "classifier two-sample AUC 0.554 (0.5 = indistinguishable); between two halves of the simulated sample 0.548"
    )
    assert auc_summary({"model": None, "floor": None, "reason": "model: too few events"}).endswith("too few events")
    assert auc_summary({}) == "classifier two-sample AUC not available: no classifier result"
