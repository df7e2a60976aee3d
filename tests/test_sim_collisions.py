"""The batched collision path (``AirInteractions.collide_many``) changes no particle: it gives
bit-identical secondaries, and a fixed-seed shower bit-identical muons, to the one-collision-
at-a-time path it replaced (``collide_raw`` + ``final_states_lab``, read through HEPEVT)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mubundle.sim.config import SimConfig
from mubundle.sim.interactions import AirInteractions, final_states_lab, get_model
from mubundle.sim.run import simulate_primaries

PROJECTILES = np.array([2212, -211, 321, 130, 2112, -2212, 211, -321, -2112, 2212, 211, 2212])
ENERGIES = np.array([450.0, 1e3, 3e3, 1e4, 5e4, 2e5, 1e6, 1e7, 3e7, 1e8, 500.0, 1e9])


@pytest.fixture(scope="module")
def air():
    return get_model("SIBYLL-2.3d", 0)


def _one_by_one(air: AirInteractions, pid: np.ndarray, energy: np.ndarray, rng: np.random.Generator) -> tuple:
    """The collision loop as the cascade ran it before ``collide_many``."""
    return final_states_lab([air.collide_raw(p, e, rng) for p, e in zip(pid.tolist(), energy.tolist())], air.followed)


def _run(air, function, seed, pid, energy):
    air.reseed(seed)
    rng = np.random.default_rng(seed + 1)
    out = function(air, pid, energy, rng)
    return out, rng.random()  # the next draw tells that both consumed the same uniforms


@pytest.mark.parametrize("path", ["SIBYLL fast path", "generic chromo path"])
def test_a_generation_of_collisions_equals_the_collisions_one_by_one(air, path):
    beams = air.sibyll_beams
    pid, energy = np.tile(PROJECTILES, 3), np.tile(ENERGIES, 3)
    try:
        air.sibyll_beams = beams if path == "SIBYLL fast path" else None
        air.record_buffers = (np.zeros(10, np.int32), np.zeros((10, 4)))  # grows within the first block
        batched, next_batched = _run(air, AirInteractions.collide_many, 11, pid, energy)
        single, next_single = _run(air, _one_by_one, 11, pid, energy)
    finally:
        air.sibyll_beams = beams
    assert next_batched == next_single
    assert batched[0].size > 100
    for a, b in zip(batched, single):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.unique(batched[5]), np.arange(pid.size))  # every collision gave particles


def test_no_collision_gives_empty_arrays(air):
    out = air.collide_many(np.zeros(0, np.int64), np.zeros(0), np.random.default_rng(0))
    assert len(out) == 6 and all(a.size == 0 for a in out)


def test_fixed_seed_showers_give_the_muons_of_the_one_by_one_collision_loop(air, monkeypatch):
    config = replace(SimConfig(), min_energy=1.0)
    args = (np.array([3e6, 2e6]), np.radians([0.0, 30.0]), np.array([1.0, 4.0]), np.array([1.5, 2.0]))
    fast = simulate_primaries(*args, seed=5, config=config)
    monkeypatch.setattr(AirInteractions, "collide_many", _one_by_one)
    reference = simulate_primaries(*args, seed=5, config=config)
    assert fast.counts.sum() > 10
    np.testing.assert_array_equal(fast.counts, reference.counts)
    np.testing.assert_array_equal(fast.flat_muons, reference.flat_muons)
