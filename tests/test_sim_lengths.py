"""Interaction and decay lengths of the cascade in physical units (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest

from mubundle.sim.atmosphere import vertical_depth
from mubundle.sim.cascade import _decay_length_m, charge_of
from mubundle.sim.interactions import ATOMIC_MASS_UNIT_G, get_model


def test_decay_lengths_are_gamma_beta_c_tau_from_pdg():
    # c tau: pi+- 7.8045 m, K+- 3.7110 m, K0L 15.34 m (PDG 2022); masses 0.13957 / 0.49368 / 0.49761 GeV
    energy = np.array([1000.0, 1000.0, 1000.0, 1000.0])
    length = _decay_length_m(np.array([211, -321, 130, 2212]), energy)
    assert length[0] == pytest.approx(1000.0 / 0.13957 * 7.8045, rel=2e-3)  # 55.9 km
    assert length[1] == pytest.approx(1000.0 / 0.49368 * 3.7110, rel=2e-3)  # 7.5 km
    assert length[2] == pytest.approx(1000.0 / 0.49761 * 15.34, rel=2e-3)  # 30.8 km
    assert np.isinf(length[3])


def test_pion_critical_energy_in_the_upper_atmosphere_is_about_100_gev():
    # decay length = interaction length at the density of ~15 km: E_crit = m c^2 h0 / (c tau) ~ 115 GeV
    # (Gaisser, Engel, Resconi, "Cosmic Rays and Particle Physics", 2016, table 5.1); the local
    # density scale height h0 = X / rho at 15 km: X / (dX/dh)
    height = 15000.0
    scale_height_m = vertical_depth(height) / ((vertical_depth(height - 1.0) - vertical_depth(height + 1.0)) / 2.0)
    critical = 0.13957 * scale_height_m / 7.8045
    assert 100.0 < critical < 130.0


@pytest.fixture(scope="module")
def air():
    return get_model("SIBYLL-2.3d", 0)


def test_interaction_length_is_mean_air_mass_over_the_production_cross_section(air):
    from chromo.kinematics import FixedTarget

    for pid, energy in ((2212, 1e5), (211, 1e4), (321, 1e6)):
        sigma = {t: air.model.cross_section(FixedTarget(energy, pid, t)).prod for t in ("N14", "O16")}
        sigma_air_mb = 0.79 * sigma["N14"] + 0.21 * sigma["O16"]
        expected = (0.79 * 14 + 0.21 * 16) * ATOMIC_MASS_UNIT_G / (sigma_air_mb * 1e-27)
        got = air.interaction_length(np.array([pid]), np.array([energy]))[0]
        assert got == pytest.approx(expected, rel=0.01)  # table interpolation
    # SIBYLL's own air table (sib_sigma_hair, production) agrees within 1.5 %: p at 1e5 GeV ~ 72 g/cm^2
    lam = air.interaction_length(np.array([2212]), np.array([1e5]))[0]
    assert 68.0 < lam < 76.0


def test_charges_of_followed_particles():
    np.testing.assert_array_equal(charge_of(np.array([13, -13, 211, -321, 2212, -2212, 2112, 130])), [-1, 1, 1, -1, 1, -1, 0, 0])


def _leading_baryon(air, pid, n, rng):
    leading = []
    for _ in range(n):
        pids, energy, _, _, _ = air.collide(pid, 1e5, rng)
        baryon = np.abs(pids) >= 2112
        leading.append(pids[baryon][np.argmax(energy[baryon])] if baryon.any() else 0)
    return np.array(leading)


def test_nucleons_and_antinucleons_collide_as_themselves(air):
    # chromo's generic path sends every A = 1 projectile through SIBNUC, i.e. as a proton;
    # the collisions must use the projectile's own SIBYLL id (issue 21)
    rng = np.random.default_rng(5)
    antiproton = _leading_baryon(air, -2212, 150, rng)
    proton = _leading_baryon(air, 2212, 150, rng)
    neutron = _leading_baryon(air, 2112, 150, rng)
    assert (antiproton < 0).mean() > 0.6  # the leading baryon keeps the antibaryon number
    assert (proton < 0).mean() < 0.1
    assert (neutron == 2112).mean() > (proton == 2112).mean() + 0.2  # isospin of the leading nucleon


def test_fast_sibyll_path_gives_the_generic_chromo_particles_for_protons_and_mesons(air):
    beams = air.sibyll_beams
    assert beams is not None
    results = {}
    try:
        for mode in ("fast", "generic"):
            air.sibyll_beams = beams if mode == "fast" else None
            air.reseed(11)
            rng = np.random.default_rng(2)
            results[mode] = [air.collide(pid, e, rng) for pid in (2212, -211, 321, 130) for e in (1e3, 1e6) for _ in range(5)]
    finally:
        air.sibyll_beams = beams
    for fast, generic in zip(results["fast"], results["generic"]):
        for a, b in zip(fast, generic):
            np.testing.assert_array_equal(a, b)


def test_tracked_unstable_hadrons_have_pdg_decay_lengths_and_charges():
    # c tau: K0S 2.6844 cm, Lambda 7.846 cm; masses 0.497611 / 1.115683 GeV (PDG 2022)
    length = _decay_length_m(np.array([310, -3122]), np.array([1e5, 1e5]))
    assert length[0] == pytest.approx(1e5 / 0.497611 * 0.026844, rel=3e-3)  # 5.4 km: K0S interacts above ~1e5 GeV
    assert length[1] == pytest.approx(1e5 / 1.115683 * 0.07846, rel=3e-3)  # 7.0 km
    np.testing.assert_array_equal(charge_of(np.array([310, 3222, -3222, 3312, -411, 4122])), [0, 1, -1, -1, -1, 1])


def test_k0s_hyperons_and_charm_leave_the_collisions_as_particles_of_their_own(air):
    # CORSIKA 7 tracks K0S, hyperons and charmed hadrons through the air (decay in flight or
    # interaction; Heck et al., FZKA 6019, 1998); the model must not decay them at the vertex
    assert {310, 3122, -3122, 411, -411, 4122}.issubset(air.tracked)
    rng = np.random.default_rng(3)
    pids = np.concatenate([air.collide(2212, 1e5, rng)[0] for _ in range(40)])
    assert (pids == 310).sum() > 10
    assert np.isin(np.abs(pids), (3122, 3222, 3112, 3322, 3312)).sum() > 3
    # and they collide as themselves: a Lambda's collisions conserve its strangeness and baryon number
    lam = np.concatenate([air.collide(3122, 1e5, rng)[0] for _ in range(20)])
    assert lam.size > 0 and np.isin(lam, (3122, 3222, 3112, 3322, 3312, 321, 310, 130)).any()


def test_decays_in_flight_follow_the_branching_ratios_and_conserve_energy(air):
    # PDG 2022 (PTEP 2022 083C01): K0S -> pi+ pi- 69.20 %, pi0 pi0 30.69 %; Lambda -> p pi- 63.9 %,
    # n pi0 35.8 % (SIBYLL's decay tables, used in flight, carry these values)
    rng = np.random.default_rng(4)
    n = 2000
    charged = proton = 0
    for _ in range(n):
        pid, energy, slope_x, slope_y = air.decay_in_flight(310, 1000.0, 0.01, 0.0, rng)
        if pid.size:
            assert sorted(pid.tolist()) == [-211, 211] and energy.sum() == pytest.approx(1000.0, rel=1e-9)
            assert np.all(np.abs(slope_x - 0.01) < 1e-3) and np.all(np.abs(slope_y) < 1e-3)
            charged += 1
        pid, energy, _, _ = air.decay_in_flight(3122, 1000.0, 0.0, 0.0, rng)
        assert energy.sum() <= 1000.0 * (1 + 1e-9)
        proton += int(2212 in pid.tolist())
    assert charged / n == pytest.approx(0.692, abs=0.035)  # binomial sd 0.010
    assert proton / n == pytest.approx(0.639, abs=0.035)
    # a charmed meson decays to muons in some channels (semileptonic D decays, ~17 % for D+)
    muons = sum(int(np.isin(air.decay_in_flight(411, 1e4, 0.0, 0.0, rng)[0], (13, -13)).any()) for _ in range(400))
    assert 20 < muons < 140
