"""Bins of the primary's conditions (E0, A, zenith, depth) in which the metrics are repeated.

Bin edges are chosen from the reference conditions: E0 in whole decades (two decades per bin when the
reference spans more than six: the icecube domain gives 1e2-1e4 ... 1e8-1e10 GeV), the distinct mass
numbers (or five mass-group ranges if A is continuous), quartiles of cos(zenith), and in depth
either the **vertical depths** the reference records (one bin each; a :class:`DepthBinning`
of coordinate ``"vertical"``, built by :mod:`mubundle.evaluate.reference_depths` from the
shards' metadata) or, without that record, the distinct slant depths (or their quartiles if
slant depth is continuous). Slant-depth bins of a dataset over zenith 0-89 deg mix depth and
zenith (a 100 km slant depth is a vertical 1.4 km at 89 deg); vertical-depth bins do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mubundle.data.schema import DEPTH, ENERGY, MASS, ZENITH
from mubundle.geometry import vertical_from_slant_depth

#: At most this many distinct values -> one bin per value (categorical).
MAX_CATEGORIES = 8
#: Mass-number ranges used when A is not a handful of distinct values (p, He, CNO, Mg-Si, Fe).
MASS_GROUP_EDGES = (1.0, 2.5, 8.0, 20.0, 40.0, np.inf)
MASS_GROUP_NAMES = ("p", "He", "CNO", "Mg-Si", "Fe")


@dataclass(frozen=True)
class DepthBinning:
    """How events are binned in depth.

    ``coordinate``: ``"slant"`` (the stored depth) or ``"vertical"`` (the vertical depth below
    the surface, from slant depth and zenith through a spherical overburden of radius
    ``radius_m``, metres of the depth unit; Muonitron's formula,
    :func:`mubundle.geometry.vertical_from_slant_depth`). ``vertical_depths_km``: the recorded
    vertical depths, one bin each; an event belongs to the bin within ``tolerance_km``.
    ``unit``: the depth unit (``"km"``, ``"km of ice"``, ...); ``site``: the site named by the
    reference; ``reason``: one sentence saying why this binning was chosen.
    """

    coordinate: str = "slant"
    vertical_depths_km: tuple[float, ...] = ()
    radius_m: float | None = None
    unit: str = "km"
    site: str | None = None
    reason: str = "slant depth (no vertical depths given)"
    tolerance_km: float = 0.01

    def values(self, conditions: np.ndarray) -> np.ndarray:
        """(B,) float64 depth coordinate [km] of conditions (B, 4): vertical or slant depth."""
        conditions = np.asarray(conditions, dtype=np.float64)
        if self.coordinate == "vertical":
            return vertical_from_slant_depth(conditions[:, ZENITH], conditions[:, DEPTH] * 1000.0, self.radius_m) / 1000.0
        return conditions[:, DEPTH]

    @property
    def name(self) -> str:
        """The coordinate with its unit, e.g. ``"vertical depth [km of ice]"``."""
        return f"{self.coordinate} depth [{self.unit}]"


#: The binning of depth when nothing else is known: the stored slant depth.
SLANT = DepthBinning()


def _coordinate(variable: str, conditions: np.ndarray, depth: DepthBinning = SLANT) -> np.ndarray:
    """The binning coordinate: log10(E0/GeV), A, cos(zenith) or depth [km] (slant or vertical, ``depth``)."""
    conditions = np.asarray(conditions, dtype=np.float64)
    if variable == "energy":
        return np.log10(conditions[:, ENERGY])
    if variable == "mass":
        return conditions[:, MASS]
    if variable == "zenith":
        return np.cos(conditions[:, ZENITH])
    if variable == "depth":
        return depth.values(conditions)
    raise ValueError(f"unknown bin variable {variable!r}")


VARIABLES = ("energy", "mass", "zenith", "depth")
COORDINATE_NAMES = {"energy": "log10(E0 / GeV)", "mass": "A", "zenith": "cos(zenith)", "depth": "slant depth [km]"}


@dataclass(frozen=True)
class ConditionBin:
    """One bin: ``low <= coordinate < high`` (``high`` included for the last bin), or
    ``coordinate == low`` when ``categorical``."""

    variable: str
    label: str
    low: float
    high: float
    categorical: bool = False
    last: bool = False
    depth: DepthBinning = SLANT

    @property
    def coordinate(self) -> str:
        """The binned quantity with its unit."""
        return self.depth.name if self.variable == "depth" else COORDINATE_NAMES[self.variable]

    def mask(self, conditions: np.ndarray) -> np.ndarray:
        """(B,) bool: events of ``conditions`` (B, 4) in this bin."""
        value = _coordinate(self.variable, conditions, self.depth)
        if self.variable == "depth" and self.depth.coordinate == "vertical":
            return np.abs(value - self.low) <= self.depth.tolerance_km
        if self.categorical:
            return np.isclose(value, self.low, rtol=1e-5, atol=1e-6)
        upper = value <= self.high if self.last else value < self.high
        return (value >= self.low) & upper

    def to_dict(self) -> dict[str, object]:
        return {"variable": self.variable, "label": self.label, "low": self.low, "high": self.high,
                "categorical": self.categorical, "coordinate": self.coordinate}


def _interval_bins(variable: str, edges: np.ndarray, unit_label) -> list[ConditionBin]:
    return [
        ConditionBin(variable, unit_label(lo, hi), float(lo), float(hi), last=(i == len(edges) - 2))
        for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))
    ]


def _quantile_edges(values: np.ndarray, n_bins: int = 4) -> np.ndarray:
    edges = np.unique(np.round(np.quantile(values, np.linspace(0, 1, n_bins + 1)), 3))
    edges[0], edges[-1] = min(edges[0], values.min()), max(edges[-1], values.max())
    return edges


def bins_for(variable: str, conditions: np.ndarray, depth: DepthBinning = SLANT) -> list[ConditionBin]:
    """The bins of ``variable`` (one of :data:`VARIABLES`) for reference ``conditions`` (B, 4).

    ``depth``: how depth is binned; with a vertical :class:`DepthBinning` each recorded vertical
    depth that holds reference events is one bin (label ``"1.4 km of ice vertical"``).
    """
    if len(conditions) == 0:
        return []
    if variable == "depth" and depth.coordinate == "vertical":
        value = depth.values(conditions)
        return [
            ConditionBin(variable, f"{v:g} {depth.unit} vertical", float(v), float(v), categorical=True, depth=depth)
            for v in depth.vertical_depths_km if np.any(np.abs(value - v) <= depth.tolerance_km)
        ]
    value = _coordinate(variable, conditions)
    distinct = np.unique(np.round(value, 5))
    if variable in ("mass", "depth") and len(distinct) <= MAX_CATEGORIES:
        unit = "" if variable == "mass" else " km"
        prefix = "A = " if variable == "mass" else ""
        return [ConditionBin(variable, f"{prefix}{v:g}{unit}", float(v), float(v), categorical=True) for v in distinct]
    if variable == "energy":
        lo, hi = np.floor(value.min()), np.ceil(value.max())
        hi = max(hi, lo + 1)
        step = 1.0 if hi - lo <= 6 else 2.0
        edges = np.arange(lo, hi + step / 2, step)
        if edges[-1] < value.max():
            edges = np.append(edges, edges[-1] + step)
        return _interval_bins(variable, edges, lambda a, b: f"1e{a:g}-1e{b:g} GeV")
    if variable == "mass":
        return [
            ConditionBin(variable, f"{name} ({lo:g} <= A < {hi:g})", lo, hi, last=(i == len(MASS_GROUP_NAMES) - 1))
            for i, (name, lo, hi) in enumerate(zip(MASS_GROUP_NAMES, MASS_GROUP_EDGES[:-1], MASS_GROUP_EDGES[1:]))
        ]
    if variable == "zenith":
        return _interval_bins(variable, _quantile_edges(value), lambda a, b: f"cos(zenith) {a:.2f}-{b:.2f}")
    return _interval_bins(variable, _quantile_edges(value), lambda a, b: f"{a:.2f}-{b:.2f} km")


def describe_bins(conditions: np.ndarray, depth: DepthBinning = SLANT) -> dict[str, dict[str, object]]:
    """For each variable of :data:`VARIABLES`: the binned ``coordinate`` with its unit, the
    ``edges`` of interval bins or the ``values`` of categorical ones, and for depth the
    ``reason`` of its binning (and the site and overburden radius of a vertical binning).
    JSON-serialisable; stored as ``metrics.json`` ``"binning"``."""
    result: dict[str, dict[str, object]] = {}
    for variable in VARIABLES:
        bins = bins_for(variable, conditions, depth)
        entry: dict[str, object] = {"coordinate": bins[0].coordinate if bins else (
            depth.name if variable == "depth" else COORDINATE_NAMES[variable])}
        if bins and all(b.categorical for b in bins):
            entry["values"] = [b.low for b in bins]
        else:
            entry["edges"] = [b.low for b in bins] + ([bins[-1].high] if bins else [])
        entry["labels"] = [b.label for b in bins]
        if variable == "depth":
            entry["reason"] = depth.reason
            if depth.coordinate == "vertical":
                entry.update(site=depth.site, overburden_radius_m=depth.radius_m, tolerance_km=depth.tolerance_km,
                             recorded_vertical_depths_km=list(depth.vertical_depths_km))
        result[variable] = entry
    return result
