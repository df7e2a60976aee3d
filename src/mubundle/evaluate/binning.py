"""Bins of the primary's conditions (E0, A, zenith, depth) in which the metrics are repeated.

Bin edges are chosen from the reference conditions: decades of E0, the distinct mass
numbers (or five mass-group ranges if A is continuous), quartiles of cos(zenith), and the
distinct depths (or quartiles if depth is continuous, as slant depths are).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mubundle.data.schema import DEPTH, ENERGY, MASS, ZENITH

#: At most this many distinct values -> one bin per value (categorical).
MAX_CATEGORIES = 8
#: Mass-number ranges used when A is not a handful of distinct values (p, He, CNO, Mg-Si, Fe).
MASS_GROUP_EDGES = (1.0, 2.5, 8.0, 20.0, 40.0, np.inf)
MASS_GROUP_NAMES = ("p", "He", "CNO", "Mg-Si", "Fe")


def _coordinate(variable: str, conditions: np.ndarray) -> np.ndarray:
    """The binning coordinate: log10(E0/GeV), A, cos(zenith) or slant depth [km]."""
    conditions = np.asarray(conditions, dtype=np.float64)
    if variable == "energy":
        return np.log10(conditions[:, ENERGY])
    if variable == "mass":
        return conditions[:, MASS]
    if variable == "zenith":
        return np.cos(conditions[:, ZENITH])
    if variable == "depth":
        return conditions[:, DEPTH]
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

    def mask(self, conditions: np.ndarray) -> np.ndarray:
        """(B,) bool: events of ``conditions`` (B, 4) in this bin."""
        value = _coordinate(self.variable, conditions)
        if self.categorical:
            return np.isclose(value, self.low, rtol=1e-5, atol=1e-6)
        upper = value <= self.high if self.last else value < self.high
        return (value >= self.low) & upper

    def to_dict(self) -> dict[str, object]:
        return {"variable": self.variable, "label": self.label, "low": self.low, "high": self.high,
                "categorical": self.categorical}


def _interval_bins(variable: str, edges: np.ndarray, unit_label) -> list[ConditionBin]:
    return [
        ConditionBin(variable, unit_label(lo, hi), float(lo), float(hi), last=(i == len(edges) - 2))
        for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))
    ]


def _quantile_edges(values: np.ndarray, n_bins: int = 4) -> np.ndarray:
    edges = np.unique(np.round(np.quantile(values, np.linspace(0, 1, n_bins + 1)), 3))
    edges[0], edges[-1] = min(edges[0], values.min()), max(edges[-1], values.max())
    return edges


def bins_for(variable: str, conditions: np.ndarray) -> list[ConditionBin]:
    """The bins of ``variable`` (one of :data:`VARIABLES`) for reference ``conditions`` (B, 4)."""
    if len(conditions) == 0:
        return []
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
