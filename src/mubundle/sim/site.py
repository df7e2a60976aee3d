"""Observation sites and their media: what the simulator needs to know about where it observes.

A :class:`Site` bundles the altitude of the medium's surface, the medium (density and the
muon energy-loss coefficients a, b of -dE/dX = a + b E), the geomagnetic field and the
radius of the spherical overburden. Every part of the simulator receives the site instead
of loose constants; ``mubundle simulate --site NAME`` picks one of :data:`SITES`, and the
site's name goes into each shard's metadata (a training set mixing sites is refused by
:func:`mubundle.data.sites.require_one_site`).

**Depths** are in km of the site's medium along the vertical (``--depths``) and along the
axis (the events' ``depth`` column): km of ice at IceCube, km of sea water at the KM3NeT
sites, km water-equivalent (1 km w.e. = 1e5 g/cm^2) for standard rock.

**Energy loss per unit mass** (a in GeV cm^2/g, b in cm^2/g; per metre of medium multiply by
100 rho). Constant a, b are an effective description of the energy-dependent a(E), b(E) of
Groom, Mokhov, Striganov (At. Data Nucl. Data Tables 78 (2001) 183): what matters underground
is the range / energy relation R(E) = ln(1 + b E / a) / b. Each pair below was checked
against the CSDA range of the muon tables for ice and standard rock (the PDG materials'
tables as recomputed by PUMAS v1.1, V. Niess, github.com/niess/pumas-materials,
``dedx/muon/water_ice.txt`` and ``standard_rock.txt``: same decomposition a(E) + b(E) E,
density effect of Sternheimer; the GMS tables themselves could not be read here), as the
range gained between 10 GeV and E = 100 GeV ... 10 TeV (``tests/test_sim_sites.py``):

- ice (0.917 g/cm^3): a = 0.24 GeV/m, b = 3.3e-4 /m of ice (IceCube Collaboration, "Energy
  reconstruction methods in the IceCube neutrino telescope", JINST 9 (2014) P03009, sec. 2),
  i.e. a = 2.617e-3 GeV cm^2/g, b = 3.60e-6 cm^2/g. Range within 1 % of the table up to
  1 TeV, 2-4 % short at 2-10 TeV (a fit to the table: a = 2.648e-3, b = 3.374e-6).
- sea water (1.038 g/cm^3): a = 0.267 GeV/m.w.e., b = 3.40e-4 /m.w.e., i.e. a = 2.67e-3
  GeV cm^2/g, b = 3.40e-6 cm^2/g: the values KM3NeT's software uses for sea water between
  30 GeV and 35.3 TeV (Jpp ``JPhysics/JGeane.hh``, ``JGeaneWater``, after S. Klimushin, E.
  Bugaev, I. Sokalski, "Precise parametrizations of muon energy losses in water", Proc. 27th
  ICRC (2001), hep-ph/0106010), with KM3NeT's sea-water density 1.038 g/cm^3 (Jpp
  ``DENSITY_SEA_WATER``). The same pair reproduces the ice table's range within 1.7 % (water
  and ice differ per g/cm^2 only through the density effect).
- standard rock (Z = 11, A = 22, 2.65 g/cm^3): a = 2.28e-3 GeV cm^2/g, b = 4.35e-6 cm^2/g
  (critical energy a / b = 524 GeV): the least-squares fit of R(E) to the standard-rock
  table over 100 GeV - 10 TeV (within 0.5 %). The textbook a = 2.0e-3, b = 4.0e-6 (a / b =
  500 GeV) used before gave ranges 11-13 % too long there.

**Geomagnetic field** (B_x horizontal towards magnetic north, B_z vertical, counted downward
as in CORSIKA's MAGNET card, microtesla): IceCube 16.811, -51.890 (the MAGNET card of
IceCube's CORSIKA production, D. Heck et al., CORSIKA user's guide); the others from the
IGRF-13 model (Alken et al., Earth Planets Space 73 (2021) 49) at epoch 2020.0 at the site
(ARCA 36.27 N 16.10 E, ORCA 42.80 N 6.03 E, the standard-rock site placed at the Gran Sasso
laboratory 42.45 N 13.57 E). IGRF-13 gives 16.76, -51.95 at the South Pole, 0.3 % from the
CORSIKA card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mubundle.geometry import (
    EARTH_RADIUS_M,
    MUONITRON_SURFACE_RADIUS_M,
    slant_from_vertical_depth_cos,
    vertical_from_slant_depth,
)
#: Muonitron's radius of the spherical ice overburden (m): MuonGun, Muonitron.cxx
#: (``Muonitron::GetOverburden``; PHYSICS.md), = earth radius + the ice surface.
MUONITRON_RADIUS_M = MUONITRON_SURFACE_RADIUS_M


@dataclass(frozen=True)
class Medium:
    """The matter above the detector: density (g/cm^3) and mean muon energy loss
    -dE/dX = a + b E per unit mass (a GeV cm^2/g, b cm^2/g)."""

    name: str
    density_gcm3: float
    a_gev_cm2_per_g: float
    b_cm2_per_g: float
    #: what one km of ``depth`` means: "km of ice", "km of sea water", "km w.e."
    depth_unit: str
    #: g/cm^2 per km of ``depth`` (density * 1e5; 1e5 for km w.e.)
    gcm2_per_km: float

    @property
    def a_per_m(self) -> float:
        """a in GeV per metre of depth unit."""
        return self.a_gev_cm2_per_g * self.gcm2_per_km / 1000.0

    @property
    def b_per_m(self) -> float:
        """b in 1/m of depth unit."""
        return self.b_cm2_per_g * self.gcm2_per_km / 1000.0

    @property
    def length_per_depth(self) -> float:
        """Metres of path per metre of depth unit: 1 for ice and sea water (depths are lengths),
        1 / 2.65 for standard rock (depths in m w.e.: 1 m w.e. = 100 g/cm^2 = 0.377 m of rock)."""
        return self.gcm2_per_km / (self.density_gcm3 * 1.0e5)


ICE = Medium("ice", 0.917, 0.24 / 91.7, 3.3e-4 / 91.7, "km of ice", 0.917e5)
#: KM3NeT Jpp JGeaneWater (Klimushin, Bugaev, Sokalski 2001), 30 GeV - 35.3 TeV, per m.w.e. / 100
SEA_WATER = Medium("sea water", 1.038, 0.267e-2, 3.40e-6, "km of sea water", 1.038e5)
#: fit of the CSDA range of the standard-rock muon table, 100 GeV - 10 TeV (module docstring)
STANDARD_ROCK = Medium("standard rock", 2.65, 2.28e-3, 4.35e-6, "km w.e.", 1.0e5)


@dataclass(frozen=True)
class Site:
    """Where the muons are observed.

    ``surface_altitude_m``: altitude of the medium's surface above sea level (m) = the
    atmosphere's observation level; ``field_ut``: (B_x to magnetic north, B_z downward) in
    microtesla (CORSIKA MAGNET convention); ``overburden_radius_m``: radius of the spherical
    surface for the slant overburden (:func:`mubundle.sim.earth.overburden_slant_km`).
    """

    name: str
    medium: Medium
    surface_altitude_m: float
    field_ut: tuple[float, float]
    overburden_radius_m: float
    description: str

    def metadata(self) -> dict[str, str]:
        """The keys a data file records of its site: ``site`` (the name; :mod:`mubundle.data.sites`
        reads it), ``medium`` and ``depth_unit`` (what its depths are km of)."""
        return {"site": self.name, "medium": self.medium.name, "depth_unit": self.medium.depth_unit}

    @property
    def depth_unit_radius_m(self) -> float:
        """Radius of the overburden sphere in metres *of the depth unit* (m of medium; m w.e.
        for standard rock): the slant formula is homogeneous of degree one in (depth, radius),
        so a depth d in units of k metres of length each is the slant of d * k through a
        sphere of radius r, divided by k = that of d through a sphere of radius r / k. For ice
        and sea water k = 1; for km w.e. of rock k = 1 / 2.65 (the sphere is 2.65x larger in m w.e.)."""
        return self.overburden_radius_m / self.medium.length_per_depth

    def slant_km(self, vertical_km: "np.ndarray | float", cos_zenith: "np.ndarray | float") -> np.ndarray:
        """Slant depth (km of the site's depth unit) to the vertical depth ``vertical_km`` seen at
        ``cos_zenith`` through the site's spherical overburden (Muonitron's formula,
        :func:`mubundle.geometry.slant_from_vertical_depth_cos`; broadcasts, float64)."""
        vertical_m = np.asarray(vertical_km, dtype=np.float64) * 1000.0
        return slant_from_vertical_depth_cos(cos_zenith, vertical_m, self.depth_unit_radius_m) / 1000.0

    def vertical_km(self, slant_km: "np.ndarray | float", zenith_rad: "np.ndarray | float") -> np.ndarray:
        """Inverse of :meth:`slant_km`: vertical depth (km of the depth unit) of the point
        ``slant_km`` below the surface along ``zenith_rad`` (broadcasts, float64)."""
        slant_m = np.asarray(slant_km, dtype=np.float64) * 1000.0
        return vertical_from_slant_depth(zenith_rad, slant_m, self.depth_unit_radius_m) / 1000.0


SITES: dict[str, Site] = {
    "icecube": Site("icecube", ICE, 2835.0, (16.811, -51.890), MUONITRON_RADIUS_M,
                    "South Pole ice (IceCube), surface 2835 m a.s.l."),
    "km3net-arca": Site("km3net-arca", SEA_WATER, 0.0, (27.84, 35.23), EARTH_RADIUS_M,
                        "KM3NeT/ARCA off Capo Passero, sea floor ~3.45 km (detector ~2.9-3.4 km of water)"),
    "km3net-orca": Site("km3net-orca", SEA_WATER, 0.0, (24.21, 39.68), EARTH_RADIUS_M,
                        "KM3NeT/ORCA off Toulon, sea floor ~2.45 km (detector ~2.2-2.45 km of water)"),
    "rock": Site("rock", STANDARD_ROCK, 0.0, (24.22, 40.10), EARTH_RADIUS_M,
                 "standard rock at sea level (field of Gran Sasso), depths in km w.e."),
}
DEFAULT_SITE = "icecube"


def get_site(name: str) -> Site:
    """The site called ``name`` (one of :data:`SITES`); ValueError naming the known ones."""
    try:
        return SITES[name]
    except KeyError:
        raise ValueError(f"unknown site {name!r}; known: {', '.join(SITES)}") from None


__all__ = ["Medium", "Site", "SITES", "DEFAULT_SITE", "get_site", "ICE", "SEA_WATER", "STANDARD_ROCK",
           "EARTH_RADIUS_M", "MUONITRON_RADIUS_M"]
