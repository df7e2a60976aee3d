"""Flux-mode primaries: the summed weights are the rate of the crflux model through the disc."""

from __future__ import annotations

import numpy as np
import pytest

from mubundle.generate.flux import (
    GROUP_MASSES,
    MASS_GROUPS,
    GroupFlux,
    integrated_rate,
    make_flux_model,
    power_law_density,
    sample_flux_primaries,
    solid_angle,
)


@pytest.fixture(scope="module")
def h3a() -> GroupFlux:
    return GroupFlux(make_flux_model("H3a"))


@pytest.mark.parametrize("generation_gamma", [1.0, 2.0, 2.7])
def test_summed_weights_equal_the_direct_integral_of_the_H3a_flux(h3a, generation_gamma):
    energy_range, zenith_range, area = (1e4, 1e8), (0.0, 1.2), 3.0
    primaries = sample_flux_primaries(h3a, 200_000, energy_range, zenith_range, area, seed=1,
                                      generation_gamma=generation_gamma)
    rate = integrated_rate(h3a, energy_range, zenith_range, area)
    assert primaries.weight.sum() == pytest.approx(rate, rel=0.03)


@pytest.mark.parametrize("name", ["GST", "GSF"])
def test_summed_weights_equal_the_direct_integral_for_other_flux_models(name):
    flux = GroupFlux(make_flux_model(name))
    energy_range, zenith_range = (1e4, 1e7), (0.1, 1.0)
    primaries = sample_flux_primaries(flux, 50_000, energy_range, zenith_range, 1.0, seed=2, generation_gamma=1.0)
    assert primaries.weight.sum() == pytest.approx(integrated_rate(flux, energy_range, zenith_range, 1.0), rel=0.03)


def test_weights_of_a_pure_power_law_sum_to_the_analytic_rate():
    import crflux.models

    flux = GroupFlux(crflux.models.SimplePowerlaw27())  # protons only: 1.7e4 E^-2.7 (m^2 s sr GeV)^-1
    lo, hi, area, zenith_range = 1e4, 1e6, 10.0, (0.0, 1.0)
    analytic = area * solid_angle(zenith_range) * 1.7e4 / 1.7 * (lo**-1.7 - hi**-1.7)
    assert integrated_rate(flux, (lo, hi), zenith_range, area) == pytest.approx(analytic, rel=1e-6)
    primaries = sample_flux_primaries(flux, 100_000, (lo, hi), zenith_range, area, seed=6, generation_gamma=2.0)
    assert set(np.unique(primaries.mass)) == {1.0}
    assert primaries.weight.sum() == pytest.approx(analytic, rel=0.02)


def test_simpson_rate_agrees_with_adaptive_quadrature_of_the_H3a_flux(h3a):
    from scipy import integrate

    def integrand(log_energy: float, group: int) -> float:
        energy = np.exp(log_energy)
        return float(h3a.group_flux(np.array([energy]), group)[0] * energy)

    total = sum(integrate.quad(integrand, np.log(1e4), np.log(1e8), args=(int(g),), limit=200)[0] for g in h3a.active_groups)
    expected = 2.0 * solid_angle((0.0, 1.2)) * total
    assert integrated_rate(h3a, (1e4, 1e8), (0.0, 1.2), 2.0) == pytest.approx(expected, rel=1e-5)


def test_rate_scales_with_area_and_solid_angle(h3a):
    one = integrated_rate(h3a, (1e5, 1e6), (0.0, 0.5), 1.0)
    assert integrated_rate(h3a, (1e5, 1e6), (0.0, 0.5), 7.0) == pytest.approx(7 * one)
    assert solid_angle((0.0, np.pi / 2)) == pytest.approx(2 * np.pi)


def test_weight_is_flux_times_acceptance_over_generation_density(h3a):
    primaries = sample_flux_primaries(h3a, 1000, (1e4, 1e6), (0.0, 1.0), 2.0, seed=3, generation_gamma=1.5)
    n_groups = len(h3a.active_groups)
    expected = (
        h3a.flux(primaries.energy, primaries.group) * 2.0 * solid_angle((0.0, 1.0))
        / (1000 * power_law_density(primaries.energy, 1.5, 1e4, 1e6) / n_groups)
    )
    np.testing.assert_allclose(primaries.weight, expected, rtol=1e-12)


def test_sampled_primaries_lie_in_the_requested_ranges_with_group_masses(h3a):
    primaries = sample_flux_primaries(h3a, 5000, (1e5, 1e6), (0.2, 0.9), 1.0, seed=4)
    assert primaries.energy.min() >= 1e5 and primaries.energy.max() <= 1e6
    assert primaries.zenith.min() >= 0.2 and primaries.zenith.max() <= 0.9
    assert set(np.unique(primaries.mass)) == {1.0, 4.0, 14.0, 27.0, 56.0}
    np.testing.assert_array_equal(primaries.mass, GROUP_MASSES[primaries.group])
    # cos(zenith) is uniform: its mean is the midpoint of the cos range
    cos_mid = 0.5 * (np.cos(0.2) + np.cos(0.9))
    assert np.cos(primaries.zenith).mean() == pytest.approx(cos_mid, abs=0.01)


def test_groups_absent_from_the_model_are_never_sampled():
    gst = GroupFlux(make_flux_model("GST"))  # GST has C and O (-> CNO) but no Mg-Si species
    mg_si = [name for name, *_ in MASS_GROUPS].index("Mg-Si")
    assert mg_si not in gst.active_groups
    assert gst.species[2] == [1206, 1608]
    primaries = sample_flux_primaries(gst, 2000, (1e4, 1e6), (0.0, 1.0), 1.0, seed=5)
    assert not np.any(primaries.group == mg_si)
    assert np.all(primaries.weight > 0)


def test_same_seed_gives_the_same_primaries_and_other_seed_different(h3a):
    first = sample_flux_primaries(h3a, 100, (1e4, 1e6), (0.0, 1.0), 1.0, seed=7)
    again = sample_flux_primaries(h3a, 100, (1e4, 1e6), (0.0, 1.0), 1.0, seed=7)
    other = sample_flux_primaries(h3a, 100, (1e4, 1e6), (0.0, 1.0), 1.0, seed=8)
    np.testing.assert_array_equal(first.weight, again.weight)
    assert not np.array_equal(first.energy, other.energy)


@pytest.mark.parametrize(
    "energy_range, zenith_range, message",
    [((1e6, 1e4), (0.0, 1.0), "energy range"), ((0.0, 1e4), (0.0, 1.0), "energy range"),
     ((1e4, 1e6), (0.0, 2.0), "zenith range"), ((1e4, 1e6), (1.0, 0.5), "zenith range")],
)
def test_invalid_ranges_are_refused_with_a_message_naming_them(h3a, energy_range, zenith_range, message):
    with pytest.raises(ValueError, match=message):
        sample_flux_primaries(h3a, 10, energy_range, zenith_range, 1.0, seed=0)


def test_unknown_flux_model_name_is_refused_listing_the_known_ones():
    with pytest.raises(ValueError, match="H3a"):
        make_flux_model("H5z")
