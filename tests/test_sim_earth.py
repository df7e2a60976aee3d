"""Curved-Earth geometry: shower axes through a spherical atmosphere and the spherical overburden."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from mubundle.sim.atmosphere import vertical_depth
from mubundle.sim.earth import (
    CurvedAxes,
    FlatAxes,
    air_density_gcm3,
    axis_altitude_m,
    axis_length_to_top_m,
    overburden_slant_km,
)
from mubundle.sim.site import EARTH_RADIUS_M, MUONITRON_RADIUS_M

ALTITUDE = 2835.0


def _chord_to_sphere(depth_m: float, zenith: float, radius: float) -> float:
    """Independent vector geometry: from the point depth_m below the top of a sphere of radius
    ``radius`` (on the vertical), go up at ``zenith`` until the sphere is crossed."""
    start = np.array([0.0, radius - depth_m])
    direction = np.array([np.sin(zenith), np.cos(zenith)])
    b = start @ direction
    return float(-b + np.sqrt(b * b - (start @ start - radius * radius)))


@pytest.mark.parametrize("depth_km", [0.5, 1.5, 2.5])
@pytest.mark.parametrize("zenith_deg", [0.0, 30.0, 60.0, 80.0, 89.0])
def test_overburden_is_the_chord_through_the_sphere(depth_km, zenith_deg):
    zenith = np.radians(zenith_deg)
    expected = _chord_to_sphere(depth_km * 1000.0, zenith, MUONITRON_RADIUS_M) / 1000.0
    assert overburden_slant_km(depth_km, np.cos(zenith), MUONITRON_RADIUS_M) == pytest.approx(expected, rel=1e-9)


def test_overburden_values_vertical_flat_limit_and_horizon():
    assert overburden_slant_km(0.0, 0.3, MUONITRON_RADIUS_M) == 0.0
    assert overburden_slant_km(2.0, 1.0, MUONITRON_RADIUS_M) == pytest.approx(2.0, rel=1e-12)
    # near the vertical the sphere is flat: d / cos within 0.1 % up to 60 deg
    assert overburden_slant_km(2.0, 0.5, MUONITRON_RADIUS_M) == pytest.approx(4.0, rel=1e-3)
    # at the horizon the chord is sqrt(2 r d - d^2): ~160 km for 2 km of ice
    assert overburden_slant_km(2.0, 0.0, MUONITRON_RADIUS_M) == pytest.approx(np.sqrt(2 * MUONITRON_RADIUS_M * 2000.0 - 2000.0**2) / 1000.0)


def test_axis_altitude_and_length_follow_the_sphere():
    zenith = np.radians(75.0)
    s = 50_000.0
    r0 = EARTH_RADIUS_M + ALTITUDE
    point = np.array([0.0, r0]) + s * np.array([np.sin(zenith), np.cos(zenith)])
    assert axis_altitude_m(s, np.cos(zenith), ALTITUDE) == pytest.approx(np.linalg.norm(point) - EARTH_RADIUS_M, rel=1e-10)
    top = axis_length_to_top_m(np.cos(zenith), ALTITUDE)
    assert axis_altitude_m(top, np.cos(zenith), ALTITUDE) == pytest.approx(112_829.2, abs=0.1)


def test_vertical_axis_reproduces_the_linsley_overburden():
    axes = CurvedAxes(np.array([1.0]), ALTITUDE)
    assert axes.ground_depth[0] == pytest.approx(vertical_depth(ALTITUDE), rel=1e-4)
    heights = np.array([3000.0, 8000.0, 20_000.0, 40_000.0, 80_000.0])
    depth = axes.slant_depth(heights, np.zeros(5, np.int64))
    np.testing.assert_allclose(depth, vertical_depth(heights), rtol=1e-3)


@pytest.mark.parametrize("zenith_deg", [60.0, 85.0, 89.0])
def test_inclined_depth_equals_direct_integration_along_the_line(zenith_deg):
    cos = np.cos(np.radians(zenith_deg))
    axes = CurvedAxes(np.array([cos]), ALTITUDE)
    top = float(axis_length_to_top_m(cos, ALTITUDE))
    for s in (0.0, 0.1 * top, 0.4 * top):
        def density(x: float) -> float:
            return float(air_density_gcm3(axis_altitude_m(x, cos, ALTITUDE))) * 100.0  # per metre

        breaks = [s + (top - s) * f for f in (0.02, 0.05, 0.1, 0.2, 0.4)]
        direct, _ = integrate.quad(density, s, top, points=breaks, limit=400, epsrel=1e-8)
        assert axes.depth_at_distance(np.array([s]), np.array([0]))[0] == pytest.approx(direct, rel=2e-3)


def test_inverse_and_flat_agreement_at_small_zenith():
    cos = np.cos(np.radians([0.0, 20.0, 40.0]))
    curved, flat = CurvedAxes(cos, ALTITUDE), FlatAxes(cos, ALTITUDE)
    shower = np.repeat(np.arange(3), 4)
    depth = np.tile([1.0, 50.0, 300.0, 700.0], 3)
    back = curved.slant_depth(curved.height_of_slant_depth(depth, shower), shower)
    np.testing.assert_allclose(back, depth, rtol=1e-9)
    # up to 40 deg the flat earth is within 0.5 % (the flat shortcut's 1 % limit is 60 deg)
    np.testing.assert_allclose(curved.height_of_slant_depth(depth, shower) - ALTITUDE,
                               flat.height_of_slant_depth(depth, shower) - ALTITUDE, rtol=5e-3)
    np.testing.assert_allclose(curved.ground_depth, flat.ground_depth, rtol=2e-3)


def test_curved_ground_depth_stays_finite_towards_the_horizon_where_flat_diverges():
    cos = np.cos(np.radians([80.0, 89.0]))
    curved, flat = CurvedAxes(cos, 0.0), FlatAxes(cos, 0.0)
    assert flat.ground_depth[1] / curved.ground_depth[1] > 2.0
    assert 25_000 < curved.ground_depth[1] < 27_000  # ~36 vertical atmospheres at 89 deg from sea level


def test_overburden_agrees_with_the_data_layers_muonitron_conversion():
    from mubundle.geometry import slant_from_vertical_depth

    zenith = np.radians(np.array([0.0, 30.0, 60.0, 80.0, 89.0]))
    for depth_km in (0.5, 1.5, 2.5):
        np.testing.assert_allclose(overburden_slant_km(depth_km, np.cos(zenith), MUONITRON_RADIUS_M) * 1000.0,
                                   slant_from_vertical_depth(zenith, depth_km * 1000.0), rtol=1e-9)
