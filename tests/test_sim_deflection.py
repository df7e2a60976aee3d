"""Geomagnetic deflection and multiple scattering of charged particles in air (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest

from mubundle.sim.deflection import (
    AIR_RADIATION_LENGTH_GCM2,
    SOUTH_POLE_FIELD_UT,
    ScatteringTable,
    field_across_axis,
    magnetic_deflection,
    scatter_in_air,
)
from mubundle.sim.atmosphere import vertical_depth


def test_vertical_shower_feels_only_the_horizontal_field_and_charges_bend_opposite_ways():
    f1, f2 = field_across_axis(np.array([0.0]), np.array([0.0]))
    # v = -z, B = (Bx, 0, -Bz): v x B = (0, -Bx, 0) -> along -y (east) for a positive charge
    assert f1[0] == pytest.approx(0.0, abs=1e-15)
    assert f2[0] == pytest.approx(-SOUTH_POLE_FIELD_UT[0] * 1e-6)
    plus = magnetic_deflection(np.array([1.0]), np.array([1000.0]), np.array([2e4]), f1, f2)
    minus = magnetic_deflection(np.array([-1.0]), np.array([1000.0]), np.array([2e4]), f1, f2)
    assert plus[1][0] == pytest.approx(-minus[1][0])


def test_deflection_of_a_tev_muon_matches_the_larmor_circle():
    # r = p / (0.2998 B): 1 TeV in 16.811 uT -> r = 1.984e8 m; after 20 km: L^2 / 2r = 1.008 m
    field = SOUTH_POLE_FIELD_UT[0] * 1e-6
    radius = 1000.0 / (0.299792458 * field)
    dx, _, angle, _ = magnetic_deflection(np.array([1.0]), np.array([1000.0]), np.array([2e4]), np.array([field]), np.array([0.0]))
    exact_sagitta = radius - np.sqrt(radius**2 - 2e4**2)  # exact circle, same path along the axis
    assert dx[0] == pytest.approx(exact_sagitta, rel=1e-6)
    assert dx[0] == pytest.approx(1.008, rel=1e-3)
    assert angle[0] == pytest.approx(2e4 / radius, rel=1e-9)


def test_inclined_field_component_depends_on_azimuth():
    zenith = np.radians(60.0)
    azimuth = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    f1, f2 = field_across_axis(np.full(8, zenith), azimuth)
    strength = np.hypot(f1, f2)
    assert strength.max() - strength.min() > 1e-5  # coming from north vs from east differ


def test_scattering_width_at_constant_density_follows_highland():
    # a thin layer near the ground: density ~ constant, so PDG eq. 34.15 / 34.18 hold
    table = ScatteringTable.build(0.0, points=20000)
    height = np.full(200_000, 1000.0)
    momentum = np.full(height.size, 100.0)
    dx, dy, a1, a2 = scatter_in_air(table, height, np.ones(height.size), momentum, np.random.default_rng(0))
    thickness = (vertical_depth(0.0) - vertical_depth(1000.0)) / AIR_RADIATION_LENGTH_GCM2
    theta0 = 0.0136 / 100.0 * np.sqrt(thickness) * (1 + 0.038 * np.log(thickness))
    assert a1.std() == pytest.approx(theta0, rel=0.01)
    assert a2.std() == pytest.approx(theta0, rel=0.01)
    # displacement width ~ theta0 L / sqrt(3) (density varies by 10 % over 1 km: 3 % tolerance)
    assert dx.std() == pytest.approx(theta0 * 1000.0 / np.sqrt(3.0), rel=0.03)
    # correlation rho = sqrt(3)/2 for constant density (PDG eq. 34.17 ff.)
    assert np.corrcoef(dx, a1)[0, 1] == pytest.approx(np.sqrt(3.0) / 2.0, abs=0.01)


def test_scattering_of_a_tev_muon_from_15_km_moves_it_by_decimetres():
    table = ScatteringTable.build(110.0)
    dx, _, _, _ = scatter_in_air(table, np.full(50_000, 15000.0), np.ones(50_000), np.full(50_000, 1000.0), np.random.default_rng(1))
    assert 0.2 < dx.std() < 1.0  # measured 0.50 m: below the 1-10 m bundle radius, not negligible
