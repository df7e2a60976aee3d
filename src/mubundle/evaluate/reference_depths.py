"""The depth binning of a reference dataset: its recorded vertical depths, or slant depth.

``mubundle simulate`` observes every shower at a few vertical depths (``--depths``, km of the
site's medium) and stores the slant depth to each along the shower's zenith through the
site's spherical overburden (:meth:`mubundle.sim.site.Site.slant_km`, Muonitron's formula).
Its shards record ``site`` and ``depths_sorted_km`` (``config.depths_km``) in their file
metadata. Over zenith 0-89 deg the slant depths run from 1.4 to ~100 km, so slant-depth bins
mix depth and zenith; the vertical depth of each event, recovered from slant depth and zenith
with the same overburden (:meth:`~mubundle.sim.site.Site.vertical_km`), is one of the recorded
depths, and each recorded depth becomes one bin.

:func:`depth_binning` decides: vertical when the reference files record vertical depths and
an overburden radius is known (the recorded site's, else the model domain's
``overburden_radius_m``) and **every** event's vertical depth lies within 10 m of a recorded
depth; otherwise slant depth, with the reason in one sentence (reported in ``metrics.json``
``binning.depth.reason`` and in the HTML report).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from mubundle.data import native
from mubundle.evaluate.binning import DepthBinning
from mubundle.sim.site import get_site

#: An event belongs to a recorded vertical depth within this distance [km]. Slant depth and
#: zenith are float32: at 100 km slant depth and zenith 89 deg the vertical depth they give
#: is exact to ~1 cm, and the recorded depths are >= 100 m apart.
TOLERANCE_KM = 0.01


def recorded_depths(paths: Iterable[str]) -> dict[str, Any]:
    """What the native shards among ``paths`` record about depth.

    Returns ``{"depths_km": sorted distinct recorded vertical depths, "sites": distinct site
    names, "depth_units": distinct depth units, "files_with_depths": n, "files_without": n,
    "unreadable": [(path, error)]}``. Files of other layouts are not passed here (they record
    nothing); a native file whose metadata cannot be read is listed in ``unreadable``.
    """
    depths: set[float] = set()
    sites: set[str] = set()
    units: set[str] = set()
    with_depths = without = 0
    unreadable: list[tuple[str, str]] = []
    for path in paths:
        try:
            metadata = native.read_metadata(path)
        except (OSError, ValueError) as error:  # reported by the caller, never dropped
            unreadable.append((str(path), f"{type(error).__name__}: {error}"))
            continue
        recorded = metadata.get("depths_sorted_km") or (metadata.get("config") or {}).get("depths_km")
        if not recorded:
            without += 1
            continue
        with_depths += 1
        depths.update(round(float(d), 6) for d in recorded)
        if metadata.get("site"):
            sites.add(str(metadata["site"]))
        if metadata.get("depth_unit"):
            units.add(str(metadata["depth_unit"]))
    return {"depths_km": sorted(depths), "sites": sorted(sites), "depth_units": sorted(units),
            "files_with_depths": with_depths, "files_without": without, "unreadable": unreadable}


def _slant(reason: str) -> DepthBinning:
    return DepthBinning(reason=f"slant depth: {reason}")


def depth_binning(
    layouts: Mapping[str, str], conditions: np.ndarray, model_radius_m: float | None = None
) -> DepthBinning:
    """The depth binning of a reference read from the files ``layouts`` (path -> layout, as
    :class:`mubundle.data.sources.LoadResult` gives it) with conditions (B, 4) [GeV, rad, A, km].

    ``model_radius_m``: the model domain's ``overburden_radius_m``, used when the reference
    records vertical depths but no site. Vertical binning when every event's vertical depth
    matches a recorded depth within :data:`TOLERANCE_KM`, else slant with the reason.
    """
    native_paths = [path for path, layout in layouts.items() if layout == "native"]
    if not native_paths:
        return _slant("the reference files are not mubundle shards, so they record no vertical depths")
    record = recorded_depths(native_paths)
    if record["unreadable"]:
        path, error = record["unreadable"][0]
        return _slant(f"the metadata of {len(record['unreadable'])} reference file(s) could not be read "
                      f"(first: {path}: {error})")
    if not record["depths_km"]:
        return _slant("the reference files record no vertical depths")
    if record["files_without"]:
        return _slant(f"{record['files_without']} of {len(native_paths)} reference files record no vertical depths")
    if len(record["sites"]) > 1:
        return _slant(f"the reference files come from different sites ({', '.join(record['sites'])})")
    site = record["sites"][0] if record["sites"] else None
    if site is not None:
        try:
            radius = get_site(site).depth_unit_radius_m
        except ValueError as error:
            return _slant(f"the reference's site is not known here ({error})")
        source = f"site {site}"
    elif model_radius_m is not None:
        radius, source = float(model_radius_m), "the model domain's overburden radius (the reference names no site)"
    else:
        return _slant("the reference records vertical depths but no site, and the model records no overburden radius")
    unit = record["depth_units"][0] if len(record["depth_units"]) == 1 else "km"
    depths = tuple(record["depths_km"])
    candidate = DepthBinning("vertical", depths, radius, unit, site, "", TOLERANCE_KM)
    vertical = candidate.values(conditions)
    distance = np.min(np.abs(vertical[:, None] - np.asarray(depths)[None, :]), axis=1) if len(vertical) else vertical
    off = np.flatnonzero(distance > TOLERANCE_KM)
    if off.size:
        return _slant(f"{off.size} of {len(vertical)} events lie farther than {TOLERANCE_KM * 1000:g} m from every "
                      f"recorded vertical depth ({', '.join(f'{d:g}' for d in depths)} km; first: event {int(off[0])} "
                      f"at {vertical[off[0]]:.4g} km vertical)")
    reason = (f"vertical depth: the reference records vertical depths {', '.join(f'{d:g}' for d in depths)} {unit}; "
              f"each event's vertical depth follows from its slant depth and zenith through the spherical "
              f"overburden of {source} (radius {radius:.6g} m)")
    return DepthBinning("vertical", depths, radius, unit, site, reason, TOLERANCE_KM)
