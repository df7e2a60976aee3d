"""Curved-Earth geometry: shower axes through a spherical atmosphere, and the spherical overburden.

**Atmosphere.** As CORSIKA's CURVED option (D. Heck et al., "CORSIKA: A Monte Carlo Code to
Simulate Extensive Air Showers", FZKA 6019 (1998), and the CORSIKA user's guide, option
CURVED: spherical shells of the US standard atmosphere around an earth of radius
6371.315 km): a shower axis is a straight line that reaches the observation level (altitude
h0) with zenith angle theta there. A point at distance s (m) above that ground point along
the axis has the altitude

    h(s) = sqrt((R + h0)^2 + s^2 + 2 s (R + h0) cos(theta)) - R

and the slant depth X(s) = int_s^inf rho(h(s')) ds' (g/cm^2), rho = -dT/dh of the Linsley
parameterisation (``atmosphere.py``). :class:`CurvedAxes` tabulates ln X(s) per shower on
a grid scaled to the axis length up to the top of the atmosphere and interpolates it (and
its inverse) for whole stacks of particles at once.

The cascade (``cascade.py``) speaks of a "height" u and ``cos`` with path length
= du / cos: for the curved axes u is the *axis height* u = h0 + s cos(theta) (the flat-earth
height the point would have), so the cascade's formulas stay the same and only the
depth <-> u conversions change. :class:`FlatAxes` is the flat-earth version
(X = T(u) / cos theta), kept for comparison: it agrees with :class:`CurvedAxes` to 1 % in the
ground depth up to ~70 deg only (``benchmarks/validate_simulator.py`` -> ``geometry``), so
the simulator always uses the curved axes.

**Overburden.** The slant depth through the medium (a sphere of radius r around the
earth's centre, its surface at r) to a point at vertical depth d below the surface, seen at
zenith theta, is MuonGun Muonitron's (PHYSICS.md):

    slant = sqrt(2 r d + c^2 (r - d)^2 - d^2) - (r - d) c,   c = cos(theta),

the formula of :func:`mubundle.geometry.slant_from_vertical_depth` (the data layer's
conversion of Muonitron files); :func:`overburden_slant_km` evaluates it rationalised, which
is exactly 0 at d = 0 and free of cancellation near the vertical (the two agree to 1e-9).
"""

from __future__ import annotations

import numpy as np

from mubundle.geometry import slant_from_vertical_depth_cos
from mubundle.sim.atmosphere import (
    LAYER_BOTTOM_CM,
    LINSLEY_B,
    LINSLEY_C,
    TOP_CM,
    height_of_vertical_depth,
    vertical_depth,
)
from mubundle.sim.site import EARTH_RADIUS_M

#: Grid points per shower axis (ln X interpolated linearly in s between them).
AXIS_GRID_POINTS = 2048
_TOP_M = TOP_CM / 100.0
_LN_X_FLOOR = np.log(1e-12)  # ln X at and above the top of the atmosphere (X = 0)


def overburden_slant_km(vertical_km: np.ndarray | float, cos_zenith: np.ndarray | float, radius_m: float) -> np.ndarray:
    """Slant depth (km of medium) to the vertical depth ``vertical_km`` at zenith ``cos_zenith``
    through a spherical overburden of radius ``radius_m`` (Muonitron's formula; broadcasts)."""
    return slant_from_vertical_depth_cos(cos_zenith, np.asarray(vertical_km, dtype=np.float64) * 1000.0, float(radius_m)) / 1000.0


def air_density_gcm3(height_m: np.ndarray) -> np.ndarray:
    """Density (g/cm^3) of the Linsley US standard atmosphere at ``height_m`` (any shape):
    -dT/dh = (b_i / c_i) exp(-h / c_i) in layers 1-4, b_5 / c_5 in layer 5, 0 above the top."""
    h = np.asarray(height_m, dtype=np.float64) * 100.0
    layer = np.clip(np.searchsorted(LAYER_BOTTOM_CM, h, side="right") - 1, 0, 4)
    b, c = LINSLEY_B[layer], LINSLEY_C[layer]
    rho = np.where(layer < 4, b / c * np.exp(-h / c), b / c)
    return np.where(h >= TOP_CM, 0.0, rho)


def axis_altitude_m(distance_m: np.ndarray, cos_zenith: np.ndarray, ground_altitude_m: float, radius_m: float = EARTH_RADIUS_M) -> np.ndarray:
    """Altitude (m a.s.l.) of the point ``distance_m`` above the ground point along an axis of
    zenith ``cos_zenith`` at the ground (broadcasts)."""
    r0 = radius_m + ground_altitude_m
    s = np.asarray(distance_m, dtype=np.float64)
    return np.sqrt(r0 * r0 + s * s + 2.0 * s * r0 * np.asarray(cos_zenith, dtype=np.float64)) - radius_m


def axis_length_to_top_m(cos_zenith: np.ndarray, ground_altitude_m: float, radius_m: float = EARTH_RADIUS_M) -> np.ndarray:
    """Distance (m) along the axis from the ground point to the top of the atmosphere."""
    r0 = radius_m + ground_altitude_m
    rt = radius_m + _TOP_M
    c = np.asarray(cos_zenith, dtype=np.float64)
    return -r0 * c + np.sqrt(r0 * r0 * c * c + rt * rt - r0 * r0)


class FlatAxes:
    """Flat-earth axes: X = T(u) / cos(theta), u the height. ``cos_zenith`` (S,)."""

    def __init__(self, cos_zenith: np.ndarray, ground_altitude_m: float) -> None:
        self.cos = np.asarray(cos_zenith, dtype=np.float64)
        self.ground_altitude_m = float(ground_altitude_m)
        self.ground_depth = vertical_depth(self.ground_altitude_m) / self.cos

    def slant_depth(self, height_m: np.ndarray, shower: np.ndarray) -> np.ndarray:
        """Slant depth (g/cm^2) at axis height ``height_m`` of showers ``shower`` (both (N,))."""
        return vertical_depth(height_m) / self.cos[shower]

    def height_of_slant_depth(self, depth_gcm2: np.ndarray, shower: np.ndarray) -> np.ndarray:
        """Axis height (m) where the slant depth is ``depth_gcm2`` (both (N,))."""
        return height_of_vertical_depth(np.asarray(depth_gcm2, dtype=np.float64) * self.cos[shower])


class CurvedAxes:
    """Shower axes through a spherical atmosphere (module docstring); ``cos_zenith`` (S,) at the
    ground, ``ground_altitude_m`` the observation level. Same interface as :class:`FlatAxes`."""

    def __init__(self, cos_zenith: np.ndarray, ground_altitude_m: float, radius_m: float = EARTH_RADIUS_M,
                 grid_points: int = AXIS_GRID_POINTS) -> None:
        self.cos = np.atleast_1d(np.asarray(cos_zenith, dtype=np.float64))
        if np.any(self.cos <= 0) or np.any(self.cos > 1):
            raise ValueError("CurvedAxes: cos(zenith) must be in (0, 1]")
        self.ground_altitude_m = float(ground_altitude_m)
        self.radius_m = float(radius_m)
        self.length = axis_length_to_top_m(self.cos, self.ground_altitude_m, self.radius_m)  # (S,)
        fraction = np.linspace(0.0, 1.0, grid_points)
        s = self.length[:, None] * fraction[None, :]  # (S, G)
        rho = air_density_gcm3(axis_altitude_m(s, self.cos[:, None], self.ground_altitude_m, self.radius_m))
        # X(s) = int_s^top rho ds'; Simpson on each cell with its midpoint, ds in cm
        mid = air_density_gcm3(axis_altitude_m(0.5 * (s[:, 1:] + s[:, :-1]), self.cos[:, None], self.ground_altitude_m, self.radius_m))
        cell = (rho[:, 1:] + 4.0 * mid + rho[:, :-1]) / 6.0 * (np.diff(s, axis=1) * 100.0)
        depth = np.zeros_like(s)
        depth[:, :-1] = np.cumsum(cell[:, ::-1], axis=1)[:, ::-1]
        self._step = self.length / (grid_points - 1)  # (S,) m between grid points
        self._ln_depth = np.log(np.maximum(depth, np.exp(_LN_X_FLOOR)))  # (S, G), decreasing along axis 1
        self._grid_points = grid_points
        self.ground_depth = depth[:, 0]

    def depth_at_distance(self, distance_m: np.ndarray, shower: np.ndarray) -> np.ndarray:
        """Slant depth (g/cm^2) at ``distance_m`` above the ground point (clipped to [0, top])."""
        position = np.clip(np.asarray(distance_m, dtype=np.float64) / self._step[shower], 0.0, self._grid_points - 1.0)
        index = np.minimum(position.astype(np.int64), self._grid_points - 2)
        frac = position - index
        ln_x = self._ln_depth[shower, index] * (1.0 - frac) + self._ln_depth[shower, index + 1] * frac
        return np.where(ln_x <= _LN_X_FLOOR, 0.0, np.exp(ln_x))

    def distance_at_depth(self, depth_gcm2: np.ndarray, shower: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`depth_at_distance`: distance (m) above the ground point where the slant
        depth is ``depth_gcm2`` (0 at or below the ground depth, the axis length at X <= 0)."""
        shower = np.asarray(shower, dtype=np.int64)
        ln_x = np.log(np.maximum(np.asarray(depth_gcm2, dtype=np.float64), np.exp(_LN_X_FLOOR)))
        low = np.zeros(ln_x.shape, np.int64)
        high = np.full(ln_x.shape, self._grid_points - 1, np.int64)
        while True:  # bisection on each row: ln X decreases with the index
            open_ = high - low > 1
            if not open_.any():
                break
            mid = (low + high) // 2
            above = self._ln_depth[shower, mid] >= ln_x
            low = np.where(open_ & above, mid, low)
            high = np.where(open_ & ~above, mid, high)
        a, b = self._ln_depth[shower, low], self._ln_depth[shower, high]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.clip(np.where(a > b, (a - ln_x) / (a - b), 0.0), 0.0, 1.0)
        return (low + frac) * self._step[shower]

    def slant_depth(self, height_m: np.ndarray, shower: np.ndarray) -> np.ndarray:
        """Slant depth (g/cm^2) at axis height u = h0 + s cos(theta) (m) of showers ``shower``."""
        distance = (np.asarray(height_m, dtype=np.float64) - self.ground_altitude_m) / self.cos[shower]
        return self.depth_at_distance(distance, shower)

    def height_of_slant_depth(self, depth_gcm2: np.ndarray, shower: np.ndarray) -> np.ndarray:
        """Axis height u (m) where the slant depth is ``depth_gcm2``."""
        return self.ground_altitude_m + self.distance_at_depth(depth_gcm2, shower) * self.cos[shower]


__all__ = ["CurvedAxes", "FlatAxes", "overburden_slant_km", "air_density_gcm3", "axis_altitude_m", "axis_length_to_top_m"]
