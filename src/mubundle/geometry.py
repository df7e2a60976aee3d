"""Curved-Earth geometry of the overburden: vertical depth below the ice surface <-> slant depth.

A point ``d`` metres vertically below a spherical surface of radius ``r`` sees, along a
direction of zenith angle ``theta`` (c = cos theta), the surface at the distance

    slant(d) = sqrt(2 r d + c^2 (r - d)^2 - d^2) - (r - d) c          (law of cosines)

This is MuonGun's ``Muonitron::GetOverburden`` (J. van Santen, IceCube MuonGun,
``private/MuonGun/Muonitron.cxx``), which the original pipeline's files were made with:
Muonitron propagates each muon to the slant depth ``GetOverburden(zenith, d, 6374134 m)``
of every requested vertical depth ``d`` and stores the bundle under the key ``d``.
The radius 6374134 m is Muonitron's (CORSIKA's Earth radius 6371.315 km plus the South
Pole surface elevation). For c = 1 the slant depth equals the vertical depth.

Imports nothing of the package (shared by the data layer and the simulator).
"""

from __future__ import annotations

import numpy as np

#: Radius of the ice surface used by MuonGun's Muonitron (m).
MUONITRON_SURFACE_RADIUS_M = 6_374_134.0
#: CORSIKA's earth radius (m) for the CURVED option (Heck et al., CORSIKA user's guide,
#: "CURVED": R_earth = 6371.315 km): the sea surface of the sites at sea level.
EARTH_RADIUS_M = 6_371_315.0


def slant_from_vertical_depth(
    zenith_rad: np.ndarray | float, vertical_depth_m: np.ndarray | float, radius_m: float = MUONITRON_SURFACE_RADIUS_M
) -> np.ndarray:
    """Slant depth (m) from a point ``vertical_depth_m`` below the surface to the surface along
    ``zenith_rad`` (any broadcastable shapes, float64 result). Muonitron's ``GetOverburden``."""
    return slant_from_vertical_depth_cos(np.cos(np.asarray(zenith_rad, dtype=np.float64)), vertical_depth_m, radius_m)


def slant_from_vertical_depth_cos(
    cos_zenith: np.ndarray | float, vertical_depth_m: np.ndarray | float, radius_m: float = MUONITRON_SURFACE_RADIUS_M
) -> np.ndarray:
    """:func:`slant_from_vertical_depth` for a given cos(zenith) (m, float64, broadcasts).

    Muonitron's expression ``sqrt(2 r d + c^2 (r-d)^2 - d^2) - (r-d) c`` rationalised to
    ``(2 r d - d^2) / (sqrt(...) + (r-d) c)``: no cancellation between two ~r-sized terms
    (exactly 0 at d = 0, exact to float precision near the vertical)."""
    c = np.asarray(cos_zenith, dtype=np.float64)
    d = np.asarray(vertical_depth_m, dtype=np.float64)
    below = radius_m - d
    return (2.0 * radius_m * d - d * d) / (np.sqrt(2.0 * radius_m * d + c * c * below * below - d * d) + below * c)


def vertical_from_slant_depth(
    zenith_rad: np.ndarray | float, slant_depth_m: np.ndarray | float, radius_m: float = MUONITRON_SURFACE_RADIUS_M
) -> np.ndarray:
    """Inverse of :func:`slant_from_vertical_depth`: vertical depth (m) of the point that lies
    ``slant_depth_m`` below the surface along ``zenith_rad`` (float64).

    From (r - d)^2 + x^2 + 2 (r - d) x c = r^2 for the slant length x:
    r - d = sqrt(r^2 - x^2 (1 - c^2)) - x c.
    """
    return vertical_from_slant_depth_cos(np.cos(np.asarray(zenith_rad, dtype=np.float64)), slant_depth_m, radius_m)


def vertical_from_slant_depth_cos(
    cos_zenith: np.ndarray | float, slant_depth_m: np.ndarray | float, radius_m: float = MUONITRON_SURFACE_RADIUS_M
) -> np.ndarray:
    """:func:`vertical_from_slant_depth` for a given cos(zenith) (m, float64, broadcasts)."""
    c = np.asarray(cos_zenith, dtype=np.float64)
    x = np.asarray(slant_depth_m, dtype=np.float64)
    return radius_m - (np.sqrt(radius_m * radius_m - x * x * (1.0 - c * c)) - x * c)
