"""Specification of ``mubundle simulate``: config, shards, determinism, resumption, API."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace

import numpy as np
import pytest

from mubundle.cli import main
from mubundle.configio import from_yaml, to_dict, to_yaml
from mubundle.data.native import read_metadata, read_shard, shard_path
from mubundle.sim.config import SimConfig, add_simulate_arguments, config_from_args
from mubundle.sim.earth import overburden_slant_km
from mubundle.sim.run import simulate_dataset, simulate_primaries
from mubundle.sim.site import MUONITRON_RADIUS_M

TINY = SimConfig(showers=4, showers_per_chunk=2, energy_range=(1e4, 1e4), depths_km=(0.0, 1.0), min_energy=20.0, seed=5)


def read_all(out_dir, config):
    from mubundle.data.batch import RaggedBatch

    return RaggedBatch.concat([read_shard(shard_path(out_dir, c)) for c in range(config.n_chunks)])


def test_defaults_are_those_of_the_issue_and_round_trip_through_yaml():
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    config = config_from_args(parser.parse_args(["--out", "x", "--showers", "10"]))
    assert config.primary == "mix"
    assert config.energy_range == (1e4, 1e7) and config.spectral_index == 1.0
    assert config.zenith_range_deg == (0.0, 70.0)
    assert config.depths_km == (1.5, 2.0, 2.5)
    assert config.interaction_model == "SIBYLL-2.3d"
    assert from_yaml(SimConfig, to_yaml(config)) == config


def test_fixed_energy_zenith_and_depth_list_flags_are_parsed():
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    args = parser.parse_args(["--out", "x", "--showers", "3", "--energy", "1e5", "--zenith", "30", "--depths", "0,1.5", "--primary", "Fe56"])
    config = config_from_args(args)
    assert config.energy_range == (1e5, 1e5) and config.zenith_range_deg == (30.0, 30.0)
    assert config.depths_km == (0.0, 1.5) and config.primary == "Fe56"


def test_invalid_settings_are_refused_with_a_message_naming_them():
    with pytest.raises(ValueError, match="zenith"):
        SimConfig(zenith_range_deg=(0.0, 89.5))
    with pytest.raises(ValueError, match="energy"):
        SimConfig(energy_range=(3e2, 2e10))
    with pytest.raises(ValueError, match="primary"):
        SimConfig(primary="U238")
    with pytest.raises(ValueError, match="depths"):
        SimConfig(depths_km=(-1.0,))


def test_simulate_command_writes_readable_shards_with_the_run_config(tmp_path, capsys):
    out = tmp_path / "sim"
    code = main(["simulate", "--out", str(out), "--showers", "3", "--energy", "1e4", "--depths", "0,1",
                 "--min-energy", "20", "--zenith", "60", "--seed", "2"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["events"] == 6  # one JSON line: Fortran banners must not leak onto stdout
    shard = out / "0000000-0000999" / "part-00000.parquet"
    batch = read_shard(shard)
    assert len(batch) == 6  # 3 showers x 2 depths
    np.testing.assert_allclose(batch.conditions[:, 0], 1e4)
    np.testing.assert_allclose(batch.conditions[:, 1], np.radians(60.0), rtol=1e-6)
    # depth column = slant depth through the spherical overburden (Muonitron): 0 and ~2 km
    expected = overburden_slant_km(np.array([0.0, 1.0]), 0.5, MUONITRON_RADIUS_M)
    assert expected[1] == pytest.approx(2.0, rel=1e-3)
    np.testing.assert_allclose(batch.conditions[:, 3], np.tile(expected, 3), rtol=1e-6)
    assert set(np.unique(batch.conditions[:, 2])) <= {1.0, 4.0, 14.0, 27.0, 56.0}
    assert np.all(batch.flat_muons[:, 0] > 20.0)
    surface, deep = batch.counts[0::2], batch.counts[1::2]
    assert surface.sum() > 0 and np.all(deep <= surface)
    metadata = read_metadata(shard)
    assert metadata["producer"] == "mubundle simulate"
    assert metadata["config"]["energy_range"] == [1e4, 1e4] and metadata["config"]["seed"] == 2


def test_same_seed_gives_identical_data_for_one_and_two_workers(tmp_path):
    simulate_dataset(TINY, tmp_path / "one", workers=1)
    simulate_dataset(TINY, tmp_path / "two", workers=2)
    assert read_all(tmp_path / "one", TINY).equals(read_all(tmp_path / "two", TINY))
    other = replace(TINY, seed=6)
    simulate_dataset(other, tmp_path / "other", workers=1)
    assert not read_all(tmp_path / "other", other).equals(read_all(tmp_path / "one", TINY))


def test_an_interrupted_run_continues_without_duplicating_showers(tmp_path):
    out = tmp_path / "sim"
    paths = simulate_dataset(TINY, out, workers=1)
    complete = read_all(out, TINY)
    first_mtime = os.stat(paths[0]).st_mtime_ns
    paths[1].unlink()  # as if the run had been killed before writing the second shard
    simulate_dataset(TINY, out, workers=1)
    assert os.stat(paths[0]).st_mtime_ns == first_mtime  # the finished shard is not redone
    assert sorted(out.rglob("*.parquet")) == sorted(paths)
    assert read_all(out, TINY).equals(complete)
    assert len(complete) == TINY.showers * len(TINY.depths_km)


def test_continuing_with_a_different_configuration_is_refused(tmp_path):
    out = tmp_path / "sim"
    simulate_dataset(replace(TINY, showers=2), out, workers=1)
    with pytest.raises(ValueError, match=rf"different configuration \(seed: {TINY.seed} -> 99\); use a new --out"):
        simulate_dataset(replace(TINY, showers=2, seed=99), out, workers=1)


def test_simulate_primaries_returns_one_event_per_primary_in_order():
    energy = np.array([1e4, 2e4, 1e4])
    zenith = np.array([0.0, 0.5, 1.0])
    mass = np.array([1.0, 4.0, 56.0])
    depth = np.array([0.0, 1.0, 2.0])
    config = replace(SimConfig(), min_energy=20.0)
    batch = simulate_primaries(energy, zenith, mass, depth, seed=3, config=config)
    assert len(batch) == 3
    np.testing.assert_allclose(batch.conditions, np.column_stack([energy, zenith, mass, depth]), rtol=1e-6)
    assert batch.equals(simulate_primaries(energy, zenith, mass, depth, seed=3, config=config))
    assert np.all(batch.flat_muons[:, 0] > 20.0)
    with pytest.raises(ValueError, match="one length"):
        simulate_primaries(energy, zenith[:2], mass, depth, seed=3)


def test_simulate_primaries_refuses_unphysical_primaries_and_names_the_rows():
    good = np.ones(3)
    with pytest.raises(ValueError, match=r"mass must be .*first rows: \[1\]"):
        simulate_primaries(np.full(3, 1e4), np.zeros(3), np.array([1.0, 0.0, 4.0]), good, seed=0)
    with pytest.raises(ValueError, match="energy"):
        simulate_primaries(np.array([1e4, np.nan, 1e4]), np.zeros(3), good, good, seed=0)
    with pytest.raises(ValueError, match="zenith"):
        simulate_primaries(np.full(3, 1e4), np.full(3, 1.56), good, good, seed=0)


def test_config_dict_is_stable_json_metadata():
    assert to_dict(TINY)["depths_km"] == [0.0, 1.0]


def test_deep_muons_of_a_pev_proton_lie_metres_to_tens_of_metres_from_the_axis():
    n = 6
    batch = simulate_primaries(np.full(n, 1e6), np.zeros(n), np.ones(n), np.full(n, 1.5), seed=11)
    assert batch.n_muons > 10
    radius = np.hypot(batch.flat_muons[:, 1], batch.flat_muons[:, 2])
    # r ~ h p_T / E_mu: 15 km x 0.35 GeV / 0.5-1 TeV ~ 5-10 m; no muon is hundreds of metres out
    assert 0.5 < np.median(radius) < 30.0
    assert np.percentile(radius, 99) < 300.0
    # azimuthal symmetry: the mean position is small compared with the spread
    assert abs(batch.flat_muons[:, 1].mean()) < radius.mean()
    assert np.all(batch.flat_muons[:, 0] > SimConfig().min_energy)
