"""Unit conventions of the legacy layouts, their detection, and the conversion to mubundle's units.

Two conventions exist for the same legacy columns ``mass`` and ``depth``:

``original``  what the original pipeline writes (briedel/cr_muons ``utils/data_converters/``):
              ``I3Particle.mass``, the primary's rest mass in GeV, and the key of MuonGun
              Muonitron's ``Tracks`` map, the vertical depth below the ice surface in metres.
              Imported as A (nearest nucleus, :mod:`mubundle.data.nuclei`) and slant depth in
              km of the site's medium (Muonitron's spherical overburden, :mod:`mubundle.geometry`,
              with the sphere of the file's recorded ``site``: :data:`OVERBURDEN_RADIUS_M`; a file
              without one is IceCube's, Muonitron's own ice sphere).
``mubundle``  mass number A and slant depth in km: the native schema, and the legacy files
              written by mubundle before it wrote the original units (their ``mubundle``
              metadata says ``units.conditions = {mass: "A", depth: "km"}``).

Which one a file uses: its ``mubundle`` metadata if it has one (``legacy_units`` key, or the
``units`` of older versions), else the values (:func:`detect_convention`): whole numbers are
mass numbers, other values that lie within 0.1 GeV of a nucleus' rest mass are GeV. The
convention most rows fit wins; rows that fit neither are rejected one by one; a file where
no row fits is refused with one line naming the column and its range.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from mubundle import geometry
from mubundle.data import nuclei, schema
from mubundle.data.sites import LEGACY_SITE
from mubundle.data.validate import REASON_CODE

ORIGINAL = "original"
MUBUNDLE = "mubundle"
#: What each convention means, for reports.
DESCRIPTIONS: dict[str, str] = {
    ORIGINAL: "mass = rest mass in GeV -> A (nearest nucleus), depth = vertical depth in m -> slant km (Muonitron)",
    MUBUNDLE: "mass = A, depth = slant depth in km (mubundle)",
}
#: Metadata key naming the convention of a legacy file written by mubundle.
LEGACY_UNITS_KEY = "legacy_units"
#: Units of the legacy columns in the original convention (written into the metadata).
ORIGINAL_CONDITION_UNITS: dict[str, str] = {
    "energy": "GeV",
    "zenith": "rad",
    "mass": "GeV (rest mass of the primary nucleus)",
    "depth": "m (vertical depth below the ice surface, Muonitron Tracks key)",
}
#: Metadata keys of a file's site depths (:meth:`mubundle.sim.site.Site.metadata`, ``mubundle simulate``):
#: what one unit of ``depth`` is ("km of ice", "km of sea water", "km w.e."), and the vertical depths
#: simulated; a legacy file states them in metres (:func:`original_metadata`).
DEPTH_UNIT_KEY = "depth_unit"
DEPTHS_SORTED_KM_KEY = "depths_sorted_km"
DEPTHS_SORTED_M_KEY = "depths_sorted_m"
_KM_UNIT = re.compile(r"km( .*)?")
_M_UNIT = re.compile(r"m( .*)?")
#: Plausible vertical depths (m) in the original convention: the ice surface down to 20 km
#: (no muon of a cosmic-ray shower reaches a vertical depth of 20 km of ice).
MAX_VERTICAL_DEPTH_M = 20_000.0
#: Radius of each site's spherical overburden in metres *of the site's depth unit* (m of ice, m of sea
#: water, m w.e. for standard rock): the sphere through which ``mubundle simulate --site NAME`` turns
#: vertical depths into slant depths. These are ``Site.depth_unit_radius_m`` of
#: :data:`mubundle.sim.site.SITES`, restated because ``data`` imports no later stage;
#: ``tests/test_legacy_site_depths.py`` holds the two equal.
OVERBURDEN_RADIUS_M: dict[str, float] = {
    "icecube": geometry.MUONITRON_SURFACE_RADIUS_M,  # Muonitron's ice surface
    "km3net-arca": geometry.EARTH_RADIUS_M,  # the sea surface
    "km3net-orca": geometry.EARTH_RADIUS_M,
    "rock": geometry.EARTH_RADIUS_M * 2.65,  # the earth's radius in m w.e. of standard rock (2.65 g/cm^3)
}


def overburden_radius_m(site: str | None) -> float:
    """Radius (m of the depth unit) of the overburden sphere of ``site``, the site a legacy file
    records (:func:`mubundle.data.sites.metadata_site`); None, a file without one, is
    :data:`~mubundle.data.sites.LEGACY_SITE` (the original pipeline's Muonitron ice). Raises
    ``ValueError`` (one line) for a site whose overburden is not known."""
    name = LEGACY_SITE if site is None else site
    try:
        return OVERBURDEN_RADIUS_M[name]
    except KeyError:
        raise ValueError(f"unknown site {name!r}: the vertical depths of its legacy files cannot be converted to "
                         f"slant depths (known sites: {', '.join(OVERBURDEN_RADIUS_M)})") from None


def convention_from_metadata(metadata: dict[str, Any] | None) -> str | None:
    """The convention a mubundle-written legacy file declares, or None when it declares none."""
    if not isinstance(metadata, dict) or not metadata:
        return None
    declared = metadata.get(LEGACY_UNITS_KEY)
    if declared in (ORIGINAL, MUBUNDLE):
        return declared
    units = metadata.get("units", {})
    conditions = units.get("conditions", {}) if isinstance(units, dict) else {}
    if isinstance(conditions, dict) and conditions.get("mass") == "A":
        return MUBUNDLE  # every mubundle version before the original units were written
    return None


def _range_text(values: np.ndarray) -> str:
    finite = values[np.isfinite(values)]
    return f"[{finite.min():.6g}, {finite.max():.6g}]" if finite.size else "[no finite value]"


def detect_convention(mass: np.ndarray, depth: np.ndarray, mass_column: str, depth_column: str) -> str:
    """Convention of a file from all its raw ``mass`` and ``depth`` values ((N,) float, NaN for nulls).

    Raises ``ValueError`` (one line: column, range, what would be valid) when no row's mass
    fits either convention, or no row's depth fits the convention the masses chose.
    """
    mass = np.asarray(mass, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64)
    finite = np.isfinite(mass)
    whole = finite & (mass == np.round(mass)) & (mass >= 1) & (mass <= nuclei.A_MAX)
    _, matched = nuclei.mass_number_from_rest_mass(mass)
    n_mass_number = int(whole.sum())
    n_rest_mass = int((matched & ~whole).sum())
    if n_mass_number == 0 and n_rest_mass == 0:
        if not finite.any():
            return ORIGINAL  # nothing to decide on; every row is rejected as non-finite/null anyway
        raise ValueError(
            f"column '{mass_column}' range {_range_text(mass)} fits no unit convention: neither rest masses "
            f"of nuclei in GeV (p 0.938 ... Fe56 52.09, within {nuclei.REST_MASS_TOLERANCE_GEV} GeV) "
            f"nor mass numbers A (whole numbers 1-{nuclei.A_MAX})"
        )
    convention = ORIGINAL if n_rest_mass > n_mass_number else MUBUNDLE
    depth_finite = np.isfinite(depth)
    if convention == ORIGINAL:
        fits = depth_finite & (depth >= 0) & (depth <= MAX_VERTICAL_DEPTH_M)
        expected = f"vertical depths in m within [0, {MAX_VERTICAL_DEPTH_M:.0f}]"
    else:
        fits = depth_finite & (depth >= 0)
        expected = "slant depths in km >= 0"
    if depth_finite.any() and not fits.any():
        raise ValueError(
            f"column '{depth_column}' range {_range_text(depth)} fits no unit convention: the masses are "
            f"{'rest masses in GeV' if convention == ORIGINAL else 'mass numbers'}, so depths must be {expected}"
        )
    return convention


def to_mubundle_units(
    conditions: np.ndarray, convention: str, site: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Conditions ``(B, 4) [E GeV, zenith rad, mass, depth]`` in ``convention`` -> mubundle units.

    ``site``: the file's recorded site, whose overburden turns vertical m into slant km
    (:func:`overburden_radius_m`: None = IceCube; ``ValueError`` for an unknown one).

    Returns ``(converted (B, 4) float32, structural (B,) int8)``; ``structural`` holds
    ``mass_no_nucleus`` / ``vertical_depth_out_of_range`` for rows whose value cannot be
    converted (their converted value is NaN). Non-finite values stay NaN without a code (the
    value checks report them).
    """
    codes = np.zeros(conditions.shape[0], dtype=np.int8)
    if convention == MUBUNDLE:
        return conditions, codes
    if convention != ORIGINAL:
        raise ValueError(f"unknown unit convention {convention!r}")
    radius_m = overburden_radius_m(site)
    converted = np.array(conditions, dtype=np.float32, copy=True)
    mass = conditions[:, schema.MASS].astype(np.float64)
    mass_number, matched = nuclei.mass_number_from_rest_mass(mass)
    converted[:, schema.MASS] = mass_number
    codes[np.isfinite(mass) & ~matched] = REASON_CODE["mass_no_nucleus"]
    depth = conditions[:, schema.DEPTH].astype(np.float64)
    zenith = conditions[:, schema.ZENITH]
    with np.errstate(invalid="ignore"):
        # a row with an invalid zenith has no slant depth; it keeps depth = vertical / 1000 so
        # that the value checks reject it for its zenith, not for a depth derived from it
        zenith_ok = (zenith >= 0) & (zenith <= np.float32(np.pi / 2))
        in_range = (depth >= 0) & (depth <= MAX_VERTICAL_DEPTH_M)
        codes[(codes == 0) & zenith_ok & np.isfinite(depth) & ~in_range] = REASON_CODE["vertical_depth_out_of_range"]
        slant_m = geometry.slant_from_vertical_depth(
            np.where(zenith_ok, zenith, 0.0), np.where(in_range, depth, np.nan), radius_m
        )
    converted[:, schema.DEPTH] = np.where(zenith_ok, slant_m / 1000.0, depth / 1000.0)
    return converted, codes


def to_original_units(conditions: np.ndarray, site: str | None = None) -> np.ndarray:
    """mubundle conditions ``(B, 4)`` -> the original convention (rest mass GeV, vertical depth m), float32.

    The vertical depth (m of the site's depth unit) is below the surface of ``site``'s overburden
    (:func:`overburden_radius_m`: the batch's recorded site; None = IceCube, Muonitron's ice).
    Raises ``ValueError`` for a mass that is not a whole mass number (no nucleus has it) and
    for an unknown site.
    """
    radius_m = overburden_radius_m(site)
    original = np.array(conditions, dtype=np.float32, copy=True)
    original[:, schema.MASS] = nuclei.rest_mass_gev(conditions[:, schema.MASS])
    slant_m = conditions[:, schema.DEPTH].astype(np.float64) * 1000.0
    original[:, schema.DEPTH] = geometry.vertical_from_slant_depth(conditions[:, schema.ZENITH], slant_m, radius_m)
    return original


def original_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """``metadata`` for a legacy file written in the original convention (units and ``legacy_units`` set).

    The site's depth keys are restated in the file's depth column's terms, vertical metres of the
    medium: ``depth_unit`` "km of ice" -> "m of ice" ("km w.e." -> "m w.e."), ``depths_sorted_km``
    -> ``depths_sorted_m`` (the vertical depths the column holds). A km unit next to a metre column
    would tell a reader of the file the wrong scale; :func:`imported_metadata` restores the km unit
    when mubundle reads the file back. ``config`` (the producing command's settings) is kept as is.
    """
    result = dict(metadata or {})
    units = dict(result.get("units") or {})
    units["conditions"] = dict(ORIGINAL_CONDITION_UNITS)
    depth_unit = result.get(DEPTH_UNIT_KEY)
    if isinstance(depth_unit, str) and _KM_UNIT.fullmatch(depth_unit):
        result[DEPTH_UNIT_KEY] = "m" + depth_unit[2:]
        units["conditions"]["depth"] = (f"{result[DEPTH_UNIT_KEY]} (vertical depth below the surface of the medium, "
                                        "Muonitron Tracks key)")
    if isinstance(result.get(DEPTHS_SORTED_KM_KEY), (list, tuple)):
        result[DEPTHS_SORTED_M_KEY] = [float(depth) * 1000.0 for depth in result.pop(DEPTHS_SORTED_KM_KEY)]
    result["units"] = units
    result[LEGACY_UNITS_KEY] = ORIGINAL
    return result


def imported_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The ``mubundle`` metadata of a legacy file with its site's ``depth_unit`` in mubundle's km
    ("m of ice" -> "km of ice"), the unit of the events' depth once read (slant km of the medium),
    so that the site keys carried into native shards are those ``mubundle simulate`` writes.
    Other keys are left as the file states them; files without a metre unit are returned unchanged."""
    depth_unit = metadata.get(DEPTH_UNIT_KEY)
    if metadata.get(LEGACY_UNITS_KEY) != ORIGINAL or not (isinstance(depth_unit, str)
                                                          and _M_UNIT.fullmatch(depth_unit)):
        return metadata
    return {**metadata, DEPTH_UNIT_KEY: "k" + depth_unit}
