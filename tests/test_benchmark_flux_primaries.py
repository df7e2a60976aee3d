"""benchmarks/generate_throughput.py --flux: primaries over the new domain with generate --flux's weights."""

from __future__ import annotations

import numpy as np

from helpers import load_benchmark
from mubundle.flux import integrated_rate, sample_flux_primaries
from mubundle.generate.run import slant_depths
from mubundle.sim.fluxmode import group_flux


def test_flux_primaries_lie_in_the_domain_carry_generates_weights_and_repeat_by_seed():
    bench = load_benchmark("generate_throughput")
    primaries, weights = bench.flux_benchmark_primaries(3000, seed=5)
    energy, zenith, mass, slant = primaries.T
    assert primaries.shape == (3000, 4) and weights.shape == (3000,)
    assert energy.min() >= 3e2 and energy.max() <= 1e9 and energy.max() > 1e7  # E^-1.3 reaches the top decades
    assert zenith.min() >= 0 and zenith.max() <= np.radians(85.0) and zenith.max() > np.radians(80.0)
    assert set(np.unique(mass)) == {1.0, 4.0, 14.0, 27.0, 56.0}
    # each slant depth is one of the five vertical depths through the icecube overburden
    candidates = slant_depths(np.array([1.4, 1.7, 2.0, 2.3, 2.6]), zenith, "vertical", "icecube")
    assert np.all(np.min(np.abs(candidates - slant[:, None]), axis=1) < 1e-12)
    assert slant.min() >= 1.4 - 1e-9 and np.all(np.isfinite(slant))
    # weights: positive and those of generate --flux's sampler for the same draw (deg -> rad, gamma, seed stream)
    assert np.all(weights > 0)
    reference = sample_flux_primaries(group_flux("H3a"), 3000, (3e2, 1e9), (0.0, float(np.radians(85.0))), 1.0,
                                      np.random.SeedSequence([5, 1]), generation_gamma=1.3)
    np.testing.assert_array_equal(weights, reference.weight)
    np.testing.assert_array_equal(energy, reference.energy)
    # and they estimate the H3a rate through 1 m^2 over the band (importance sampling, generous tolerance)
    rate = integrated_rate(group_flux("H3a"), (3e2, 1e9), (0.0, float(np.radians(85.0))), 1.0)
    assert abs(weights.sum() / rate - 1) < 0.15
    again, again_weights = bench.flux_benchmark_primaries(3000, seed=5)
    np.testing.assert_array_equal(again, primaries)
    np.testing.assert_array_equal(again_weights, weights)
    assert not np.array_equal(bench.flux_benchmark_primaries(3000, seed=6)[0], primaries)


def test_flux_resample_follows_the_weights_and_weighted_mean_has_its_error():
    bench = load_benchmark("generate_throughput")
    primaries, weights = bench.flux_benchmark_primaries(20000, seed=1)
    sample = bench.resample_by_weight(primaries, weights, 20000, seed=1)
    # an unweighted sample of the flux: its fraction above 1e4 GeV matches the weighted fraction
    weighted_fraction = weights[primaries[:, 0] > 1e4].sum() / weights.sum()
    assert abs((sample[:, 0] > 1e4).mean() - weighted_fraction) < 5 * np.sqrt(weighted_fraction / 20000) + 1e-4
    np.testing.assert_array_equal(sample, bench.resample_by_weight(primaries, weights, 20000, seed=1))
    mean, error = bench.weighted_mean(np.array([1.0, 3.0]), np.array([3.0, 1.0]))
    assert mean == 1.5 and np.isclose(error, np.sqrt(9 * 0.25 + 1 * 2.25) / 4)
