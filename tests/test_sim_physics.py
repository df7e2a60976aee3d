"""Specification of the simulator's physics pieces: ice propagation, atmosphere, decays."""

from __future__ import annotations

import numpy as np
import pytest

from mubundle.sim import propagate_muons
from mubundle.sim.atmosphere import height_of_vertical_depth, slant_depth, vertical_depth
from mubundle.sim.decays import MASS_GEV, MUON_MASS_GEV, decay

A_ICE, B_ICE = 0.24, 3.3e-4


def mean_only(energy: float, distance_m: float) -> float:
    return (energy + A_ICE / B_ICE) * np.exp(-B_ICE * distance_m) - A_ICE / B_ICE


# ----------------------------------------------------------------------------- ice
def test_one_tev_muons_keep_half_their_energy_after_one_km_on_average():
    final = propagate_muons(np.full(20_000, 1000.0), 1000.0, seed=1)
    assert final.mean() == pytest.approx(500.0, rel=0.15)
    assert final.mean() == pytest.approx(mean_only(1000.0, 1000.0), rel=0.03)


def test_final_energies_spread_far_wider_than_a_mean_only_model():
    final = propagate_muons(np.full(20_000, 1000.0), 1000.0, seed=2)
    # a mean-only model gives one value; real stochastic losses give a broad distribution
    assert final.std() > 0.2 * final.mean()
    assert np.percentile(final, 95) - np.percentile(final, 5) > 300.0


def test_stopped_muons_have_exactly_zero_energy_and_low_energy_muons_stop():
    final = propagate_muons(np.array([1.0, 10.0, 50.0, 0.0]), 1000.0, seed=3)
    np.testing.assert_array_equal(final, 0.0)


def test_survival_of_one_tev_muons_falls_with_distance():
    energies = np.full(20_000, 1000.0)
    survival = [(propagate_muons(energies, d, seed=4) > 0).mean() for d in (1000.0, 2000.0, 3000.0, 4000.0)]
    assert survival[0] > 0.9  # only a near-total catastrophic loss stops a 1 TeV muon within 1 km
    assert survival[0] > survival[1] > survival[2] > survival[3]


def test_propagation_is_deterministic_by_seed_and_keeps_shape():
    energies = np.geomspace(100, 1e5, 12).reshape(3, 4)
    first = propagate_muons(energies, 1500.0, seed=7)
    np.testing.assert_array_equal(first, propagate_muons(energies, 1500.0, seed=7))
    assert first.shape == (3, 4)
    assert not np.array_equal(first, propagate_muons(energies, 1500.0, seed=8))
    assert np.all(first <= energies)


def test_zero_distance_changes_nothing_and_negative_distance_is_refused():
    energies = np.array([5.0, 500.0])
    np.testing.assert_array_equal(propagate_muons(energies, 0.0, seed=0), energies)
    with pytest.raises(ValueError, match="distance_m"):
        propagate_muons(energies, -1.0, seed=0)


# ----------------------------------------------------------------------------- atmosphere
@pytest.mark.parametrize(
    "height_km, overburden",
    # CORSIKA user's guide, US standard atmosphere (Linsley): T at the layer boundaries
    [(0.0, 1036.10), (4.0, 631.10), (10.0, 271.70), (40.0, 3.0395), (100.0, 1.28292e-3)],
)
def test_vertical_overburden_matches_the_linsley_table(height_km, overburden):
    assert vertical_depth(height_km * 1000.0) == pytest.approx(overburden, rel=2e-3)


def test_height_is_the_inverse_of_overburden_and_slant_depth_scales_with_sec_zenith():
    heights = np.array([0.0, 2835.0, 7000.0, 25_000.0, 60_000.0])
    np.testing.assert_allclose(height_of_vertical_depth(vertical_depth(heights)), heights, atol=0.5)
    assert slant_depth(2835.0, 0.5) == pytest.approx(2 * vertical_depth(2835.0))
    assert vertical_depth(200_000.0) == 0.0


# ----------------------------------------------------------------------------- decays
def test_pion_decay_muons_carry_between_r_and_one_of_the_pion_energy():
    rng = np.random.default_rng(0)
    n = 20_000
    products = decay(np.full(n, 211), np.full(n, 200.0), np.zeros(n), np.zeros(n), rng)
    fraction = products.energy / 200.0
    r = (MUON_MASS_GEV / MASS_GEV[211]) ** 2
    assert np.all(products.pid == -13)  # pi+ -> mu+ nu
    assert fraction.min() >= r - 1e-6 and fraction.max() <= 1.0 + 1e-9
    # isotropic two-body decay: the muon energy fraction is uniform on [r, 1]
    assert fraction.mean() == pytest.approx((1 + r) / 2, rel=0.01)


def test_kaon_decays_follow_pdg_branching_ratios_and_conserve_charge():
    rng = np.random.default_rng(1)
    n = 40_000
    products = decay(np.full(n, -321), np.full(n, 1000.0), np.zeros(n), np.zeros(n), rng)
    muons = products.pid == 13  # K- -> mu- ...
    assert not np.any(products.pid == -13)
    # K -> mu nu (63.56 %) + K_mu3 (3.35 %)
    assert muons.sum() / n == pytest.approx(0.6691, abs=0.01)
    assert np.all(products.energy <= 1000.0 + 1e-6)


def test_decay_products_are_nearly_collinear_with_a_tilted_parent():
    rng = np.random.default_rng(2)
    n = 1000
    products = decay(np.full(n, 211), np.full(n, 1000.0), np.full(n, 0.01), np.zeros(n), rng)
    assert products.slope_x.mean() == pytest.approx(0.01, abs=1e-3)
    transverse = products.energy * np.hypot(products.slope_x - 0.01, products.slope_y)
    assert transverse.max() < 0.04  # p* of pi -> mu nu is 29.8 MeV


# ----------------------------------------------------------------------------- threshold
def test_muons_below_the_follow_threshold_can_never_reach_the_shallowest_depth():
    from mubundle.sim.run import muon_threshold_gev

    depth_m, min_energy = 1500.0, 1.0
    threshold = float(muon_threshold_gev(np.array([depth_m]), min_energy, 0.05, np.array([0.0]))[0])
    assert 300.0 < threshold < 600.0  # ~415 GeV for 1.5 km of ice
    just_below = propagate_muons(np.full(20_000, 0.999 * threshold), depth_m, seed=5)
    assert np.all(just_below <= min_energy)  # stochastic losses only ever add to the continuous loss
    above = propagate_muons(np.full(20_000, 1.5 * threshold), depth_m, seed=5)
    assert (above > min_energy).mean() > 0.5


def test_k0l_decays_to_a_muon_in_flight_with_the_pdg_kmu3_fraction():
    # K0L -> pi+- mu-+ nu 27.04 % (PDG 2022); either charge with equal probability
    rng = np.random.default_rng(3)
    n = 40_000
    products = decay(np.full(n, 130), np.full(n, 1000.0), np.zeros(n), np.zeros(n), rng)
    muons = np.abs(products.pid) == 13
    assert muons.sum() / n == pytest.approx(0.2704, abs=0.007)
    assert (products.pid == 13).sum() == pytest.approx((products.pid == -13).sum(), rel=0.06)
    assert np.all(products.energy[muons] < 1000.0)
