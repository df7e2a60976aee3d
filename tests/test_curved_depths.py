"""Vertical <-> slant depth is the spherical overburden everywhere (simulate, generate, the demo's
and distillation's primaries, the model domain), never d / cos(zenith).

For 2 km of ice d / cos is 0.1 % long at 70 deg, 2 % at 85 deg, 12 % at 88 deg (57.3 km
against 51.4 km through the sphere) and 37 % at 89 deg, so each test below, taken at
85-89 deg, fails with the flat-Earth conversion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mubundle.geometry import (
    MUONITRON_SURFACE_RADIUS_M, slant_from_vertical_depth, vertical_from_slant_depth, vertical_from_slant_depth_cos,
)
from mubundle.generate.run import slant_depths
from mubundle.model.domain import ModelDomain, domain_of_events
from mubundle.sim.config import SimConfig
from mubundle.sim.primaries import sample_primaries_at_one_depth
from mubundle.sim.run import slant_depths_km
from mubundle.sim.site import EARTH_RADIUS_M, SITES

STEEP = np.radians([85.0, 86.0, 87.0, 88.0, 89.0])


def muonitron_km(zenith: np.ndarray, vertical_km: float, radius_m: float = MUONITRON_SURFACE_RADIUS_M) -> np.ndarray:
    """Muonitron::GetOverburden written out as in MuonGun (not rationalised), km."""
    c, d, r = np.cos(zenith), vertical_km * 1000.0, radius_m
    return (np.sqrt(2 * r * d + c * c * (r - d) ** 2 - d * d) - (r - d) * c) / 1000.0


def test_simulate_slant_depths_follow_muonitron_near_the_horizon_not_d_over_cos():
    config = SimConfig(depths_km=(2.0,), zenith_range_deg=(0.0, 89.0))
    slant = slant_depths_km(config, STEEP)[:, 0]
    np.testing.assert_allclose(slant, muonitron_km(STEEP, 2.0), rtol=1e-9)
    flat = 2.0 / np.cos(STEEP)
    assert np.all(flat / slant - 1.0 > 0.015)  # d / cos is 2 % (85 deg) to 37 % (89 deg) long


def test_generate_vertical_depths_use_the_same_overburden_as_simulate():
    zenith = STEEP
    generated = slant_depths(np.array([1.5, 2.5]), zenith, "vertical")  # default site: icecube
    simulated = slant_depths_km(SimConfig(depths_km=(1.5, 2.5), zenith_range_deg=(0.0, 89.0)), zenith)
    np.testing.assert_allclose(generated, simulated, rtol=1e-12)
    flat = np.array([1.5, 2.5])[None, :] / np.cos(zenith)[:, None]
    assert np.all(flat / generated - 1.0 > 0.015)
    water = slant_depths(np.array([3.0]), zenith, "vertical", site="km3net-arca")[:, 0]
    np.testing.assert_allclose(water, muonitron_km(zenith, 3.0, EARTH_RADIUS_M), rtol=1e-9)


def test_demo_and_distill_primaries_use_the_spherical_overburden():
    config = SimConfig(zenith_range_deg=(85.0, 89.0), depths_km=(1.5, 2.0, 2.5))
    energy, zenith, mass, depth = sample_primaries_at_one_depth(config, 2000, np.random.default_rng(3))
    vertical = vertical_from_slant_depth(zenith, depth * 1000.0) / 1000.0
    assert set(np.round(vertical, 9)) == {1.5, 2.0, 2.5}
    # the flat inverse does not give the requested depths back at these angles
    assert np.all(np.abs(depth * np.cos(zenith) / vertical - 1.0) > 0.015)


def test_rock_depths_in_km_we_bend_with_the_physical_sphere():
    rock = SITES["rock"]
    zenith = STEEP
    # 3 km w.e. of standard rock = 3 / 2.65 km of rock along the vertical; the slant path through
    # the sphere of the earth's radius, times 2.65, is the slant depth in km w.e.
    physical = muonitron_km(zenith, 3.0 / 2.65, rock.overburden_radius_m) * 2.65
    np.testing.assert_allclose(rock.slant_km(3.0, np.cos(zenith)), physical, rtol=1e-9)
    np.testing.assert_allclose(rock.vertical_km(rock.slant_km(3.0, np.cos(zenith)), zenith), 3.0, rtol=1e-9)
    for name in ("icecube", "km3net-arca"):  # km of the medium: the sphere itself
        assert SITES[name].depth_unit_radius_m == SITES[name].overburden_radius_m


def test_domain_vertical_depth_is_the_inverse_of_the_overburden_and_legacy_records_stay_flat():
    zenith = np.repeat(STEEP, 2)
    vertical = np.tile([1.5, 2.5], len(STEEP))
    slant = slant_from_vertical_depth(zenith, vertical * 1000.0) / 1000.0
    conditions = np.stack([np.full(len(zenith), 1e5), zenith, np.ones(len(zenith)), slant], axis=1)
    domain = domain_of_events(conditions, file_config={"site": "icecube", "depths_km": [1.5, 2.5]})
    assert domain.vertical_depth_km == pytest.approx((1.5, 2.5), rel=1e-9)  # slant x cos: 1.43 .. 2.22
    assert domain.overburden_radius_m == MUONITRON_SURFACE_RADIUS_M
    assert domain.check_conditions(conditions).n_outside == 0
    assert ModelDomain.from_dict(domain.to_dict()) == domain
    # a vertical depth of 2.6 km at 88 deg is outside, though its slant x cos (2.3 km) is inside
    outside = slant_from_vertical_depth(math.radians(88.0), 2600.0) / 1000.0
    assert domain.check(1e5, math.radians(88.0), 1.0, outside).n_outside == 1
    legacy = ModelDomain.from_dict({k: v for k, v in domain.to_dict().items() if k != "overburden_radius_m"})
    assert legacy.overburden_radius_m is None
    assert legacy.check(1e5, math.radians(88.0), 1.0, outside).n_outside == 0  # its bounds are flat ones


def test_a_malformed_overburden_radius_is_named():
    data = domain_of_events(np.array([[1e5, 0.1, 1.0, 2.0]])).to_dict()
    with pytest.raises(ValueError, match="overburden_radius_m"):
        ModelDomain.from_dict(dict(data, overburden_radius_m=-1.0))


def test_the_domain_check_agrees_with_the_numpy_geometry_row_by_row():
    # the domain's own cos (torch, for speed) and its two-pass fast path against numpy, row by row
    rng = np.random.default_rng(5)
    zenith = np.arccos(rng.uniform(0.0, 1.0, 20000))
    vertical = rng.uniform(1.3, 2.7, 20000)  # some rows above and below 1.4-2.6 km
    slant = slant_from_vertical_depth(zenith, vertical * 1000.0) / 1000.0
    np.testing.assert_allclose(vertical_from_slant_depth_cos(np.cos(zenith), slant * 1000.0) / 1000.0, vertical,
                               rtol=1e-9)
    conditions = np.stack([np.full(20000, 1e5), zenith, np.ones(20000), slant], axis=1)
    domain = ModelDomain.from_dict(dict(domain_of_events(conditions).to_dict(), vertical_depth_km=[1.4, 2.6],
                                        overburden_radius_m=MUONITRON_SURFACE_RADIUS_M))
    expected = (vertical < 1.4 * (1 - 1e-5)) | (vertical > 2.6 * (1 + 1e-5))
    check = domain.check_conditions(conditions)
    np.testing.assert_array_equal(check.outside, expected)
    sides = {(v.variable, v.side) for v in check.violations}
    assert sides == {("vertical_depth_km", "below"), ("vertical_depth_km", "above")}
    inside = conditions[~expected]
    assert domain.check_conditions(inside).n_outside == 0 and domain.check_conditions(inside).violations == ()
