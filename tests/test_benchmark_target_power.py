"""benchmarks/target_power.py: how often the simulator, as a perfect generator, meets evaluate's targets.

The twin is the data's showers simulated again: the same primaries and depths in the same order
(so evaluate pairs it with the data, as it pairs a model's sample), new muons; the sets are
disjoint and whole showers; the script prints one JSON object and refuses data it cannot twin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import BENCHMARKS, load_benchmark
from mubundle.data.native import write_shard
from mubundle.data.sources import read_events
from mubundle.evaluate.metrics import is_paired, shower_ids
from mubundle.sim.config import SimConfig
from mubundle.sim.run import simulate_dataset

SCRIPT = BENCHMARKS / "target_power.py"
SHOWERS = 60


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("power") / "sim"
    config = SimConfig(showers=SHOWERS, energy_range=(1e5, 1e6), zenith_range_deg=(0.0, 60.0), depths_km=(1.5, 2.0),
                       seed=3, showers_per_chunk=20)
    simulate_dataset(config, out, progress=False)
    return out, config


def test_the_twin_has_the_datas_primaries_and_depths_in_order_and_muons_of_its_own(dataset):
    out, config = dataset
    benchmark = load_benchmark("target_power")
    batch = read_events([out]).batch
    twin = benchmark.twin_of(batch, benchmark.simulation_config(sorted(str(p) for p in out.rglob("part-*.parquet"))), 1, 1)
    assert is_paired(batch, twin) and batch.n_muons > 100 and twin.n_muons > 100
    assert not np.array_equal(batch.counts, twin.counts)  # another seed: other showers of the same primaries
    assert 0.5 < twin.n_muons / batch.n_muons < 2.0
    again = benchmark.twin_of(batch, config, 1, 2)  # the worker count changes nothing
    assert np.array_equal(again.counts, twin.counts) and np.array_equal(again.flat_muons, twin.flat_muons)


def test_sets_are_disjoint_whole_showers_of_the_asked_size(dataset):
    out, _ = dataset
    benchmark = load_benchmark("target_power")
    conditions = read_events([out]).batch.conditions
    sets = benchmark.cut_into_sets(conditions, 25, seed=4)
    showers = shower_ids(conditions)
    assert len(sets) == SHOWERS // 25
    members = [set(showers[indices].tolist()) for indices in sets]
    assert all(len(m) == 25 for m in members) and not members[0] & members[1]
    for indices, m in zip(sets, members):  # every event of a member shower is in its set
        assert len(indices) == np.isin(showers, list(m)).sum()


def test_the_script_prints_one_json_object_with_a_trial_per_set(dataset):
    out, _ = dataset
    run = subprocess.run([sys.executable, str(SCRIPT), "--data", str(out), "--showers", "20", "30", "--workers", "1"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["showers"] == SHOWERS and result["events"] == 2 * SHOWERS and result["site"] == "icecube"
    assert [size["sets"] for size in result["sizes"]] == [3, 2]
    for size in result["sizes"]:
        assert size["pass_rate"]["all"]["trials"] == size["sets"] == len(size["trials"])
        low, high = size["pass_rate"]["all"]["interval"]
        assert 0.0 <= low <= size["pass_rate"]["all"]["fraction"] <= high <= 1.0
        assert set(size["reference_rate_spread"]) >= {"muons.radius_gt_75m", "muons.energy_gt_10tev"}
        checks = size["tail_tests_by_shower"]
        assert checks["tests"] == sum(trial["tail_tests_by_shower"] for trial in size["trials"]) > 0
        assert checks["beyond_2_sigma"] == sum(len(trial["tails_beyond_2_sigma_by_shower"]) for trial in size["trials"])


def test_a_tail_ratio_is_beyond_two_errors_by_shower_only_when_it_is():
    benchmark = load_benchmark("target_power")

    def rates(value, error):
        return {"muons.energy_gt_10tev": {"ratio": {"value": value, "relative_error_by_shower": error}},
                "muons.radius_gt_75m": {"ratio": {"value": None, "relative_error_by_shower": None}}}

    tails = {"overall": {"rates": rates(1.15, 0.1)}, "energy_bins": [{"label": "1e4-1e6 GeV", "rates": rates(1.35, 0.1)},
                                                                      {"label": "1e6-1e8 GeV", "rates": rates(0.7, 0.2)}]}
    assert benchmark.tail_tests_by_shower(tails) == (3, ["1e4-1e6 GeV: muons.energy_gt_10tev"])


def test_data_without_a_simulate_configuration_is_refused_in_one_line(dataset, tmp_path):
    out, _ = dataset
    write_shard(read_events([out]).batch, tmp_path / "bare.parquet", {})
    run = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "bare.parquet"), "--showers", "20"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "MUBUNDLE_DEBUG": ""})
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("target_power: error: ") and "bare.parquet" in lines[0], run.stderr


def test_a_set_larger_than_the_data_is_refused_before_the_twin_is_simulated(dataset, monkeypatch):
    out, _ = dataset
    benchmark = load_benchmark("target_power")

    def no_twin(*args, **kwargs):
        raise AssertionError("the twin was simulated")

    monkeypatch.setattr(benchmark, "twin_of", no_twin)
    monkeypatch.setattr(sys, "argv", ["target_power.py", "--data", str(out), "--showers", "20", str(SHOWERS + 1)])
    with pytest.raises(benchmark.NothingToReport, match=f"--showers {SHOWERS + 1}: the data hold {SHOWERS} showers"):
        benchmark.main()


def test_shards_of_a_simulator_whose_showers_this_one_does_not_reproduce_are_refused(dataset, tmp_path):
    from mubundle.data.native import read_metadata

    out, _ = dataset
    shard = sorted(out.rglob("part-*.parquet"))[0]
    metadata = dict(read_metadata(shard), simulator_version=4)  # version 5 changed every site's showers
    write_shard(read_events([shard]).batch, tmp_path / "old.parquet", metadata)
    benchmark = load_benchmark("target_power")
    with pytest.raises(ValueError, match="old.parquet was simulated by simulator version 4"):
        benchmark.simulation_config([str(tmp_path / "old.parquet")])
    assert benchmark.simulation_config([str(shard)]).depths_km == (1.5, 2.0)


def test_a_model_is_judged_on_every_set_beside_the_twin(dataset, tmp_path):
    from test_evaluate_cli import small_model_and_own_sample

    out, _ = dataset
    model, _ = small_model_and_own_sample(300, seed=7, sample_seed=3)
    model.save(tmp_path / "model")
    run = subprocess.run([sys.executable, str(SCRIPT), "--data", str(out), "--showers", "30", "--model", str(tmp_path / "model")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    size = result["sizes"][0]
    assert result["model_path"] == str(tmp_path / "model") and result["extrapolated_events"] >= 0
    assert size["model_pass_rate"]["all"]["trials"] == size["sets"] == 2
    for trial in size["trials"]:
        assert trial["model"]["events"] == trial["events"] and set(trial["model"]["met"]) == set(trial["met"])
