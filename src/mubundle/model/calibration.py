"""Monotone maps of the generator's muon energies and radii in their tails (``model.json``
``calibration``).

Why: every path from the generator's noise to its features passes a LayerNorm, so the
features are bounded and the power-law tail of the muon spectrum (an exponential tail in
log10 E) is pressed against a bound: too many muons just below the generator's reach, too few
beyond it (docs/model.md, "The tail of the muon spectrum"). The radii show the same at both ends
(too few muons very near the axis and very far from it). A :class:`TailMap` moves the tails of
one variable onto the training data's, quantile by quantile: piecewise linear between knots,
linear with the outermost segment's slope beyond the outermost knot, the identity between the
tails. It is strictly increasing, so it keeps the order of the values (which muons of a bundle
are the energetic or the distant ones stays the generator's), and it leaves the bulk alone.

:class:`MuonCalibration` holds a map of log10(E / GeV) (upper tail) and one of log10(r / m)
(both tails; x and y are scaled by r' / r, so the azimuth is kept), and for either variable a
:class:`PrimaryEnergyMap`: whole-distribution maps that depend on the primary energy (the
generator can be off at some E0 and right at others, which one map for all muons cannot
correct), applied after that variable's tail map, and a :class:`MultiplicityMap` of log10 E by the class of the
muon's event's multiplicity N (a generator can make its single muons too soft and its pairs too
hard at a right energy spectrum of all muons), applied last. It is fitted by
``mubundle calibrate`` (:mod:`mubundle.train.calibration_fit`) on the generator's muons for the
training events' own conditions and multiplicities, so the multiplicity part does not enter. A
model without the key has no maps (the identity).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mubundle.errors import InvalidValueError


def _check_increasing(name: str, values: tuple[float, ...]) -> None:
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise InvalidValueError(f"{name} must hold finite numbers, got {values!r}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise InvalidValueError(f"{name} must be strictly increasing, got {values!r}")


def _check_knots(where: str, x: tuple[float, ...], y: tuple[float, ...]) -> None:
    _check_increasing(f"{where}_x", x)
    _check_increasing(f"{where}_y", y)
    if len(x) != len(y):
        raise InvalidValueError(f"{where}_x and {where}_y differ in length ({len(x)} vs {len(y)})")
    if len(x) == 1:
        raise InvalidValueError(f"{where} needs no knots or at least 2, got 1")


@functools.lru_cache(maxsize=256)
def _knot_tensor(values: tuple[float, ...], device: torch.device) -> Tensor:
    """The knots ``values`` as a float64 tensor on ``device``, built once per map and device (every
    generator call applies the maps; shared: never modified in place)."""
    return torch.tensor(values, dtype=torch.float64, device=device)


def _piecewise_linear(values: Tensor, x: tuple[float, ...], y: tuple[float, ...]) -> Tensor:
    """Values (float64) through the knots (K >= 2), the outer segments extended linearly."""
    xs, ys = _knot_tensor(x, values.device), _knot_tensor(y, values.device)
    # segment k covers [x_k, x_k+1] (k = 0 .. K-2): the number of interior knots <= the value
    segment = torch.searchsorted(xs[1:-1].contiguous(), values, right=True)
    x0, y0 = xs.index_select(0, segment), ys.index_select(0, segment)
    slope = (ys.index_select(0, segment + 1) - y0) / (xs.index_select(0, segment + 1) - x0)
    return y0 + slope * (values - x0)


@dataclass(frozen=True)
class TailMap:
    """A strictly increasing map of one variable, the identity between its two tails.

    ``lower_x`` -> ``lower_y``: knots of the lower tail, increasing, the last mapping onto itself
    (continuity); the map acts below ``lower_x[-1]``. ``upper_x`` -> ``upper_y``: knots of the upper
    tail, the first mapping onto itself; the map acts above ``upper_x[0]``. Either may be empty.
    """

    lower_x: tuple[float, ...] = ()
    lower_y: tuple[float, ...] = ()
    upper_x: tuple[float, ...] = ()
    upper_y: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_knots("lower", self.lower_x, self.lower_y)
        _check_knots("upper", self.upper_x, self.upper_y)
        if self.lower_x and self.lower_x[-1] != self.lower_y[-1]:
            raise InvalidValueError(f"the last lower knot must map onto itself, got {self.lower_x[-1]} -> {self.lower_y[-1]}")
        if self.upper_x and self.upper_x[0] != self.upper_y[0]:
            raise InvalidValueError(f"the first upper knot must map onto itself, got {self.upper_x[0]} -> {self.upper_y[0]}")
        if self.lower_x and self.upper_x and self.lower_x[-1] > self.upper_x[0]:
            raise InvalidValueError(f"the lower tail ({self.lower_x[-1]}) reaches above the upper tail ({self.upper_x[0]})")

    def apply(self, values: Tensor) -> Tensor:
        """(M,) values -> (M,) mapped values, same dtype and device."""
        result = values.to(torch.float64)
        if self.upper_x:
            result = torch.where(result > self.upper_x[0], _piecewise_linear(result, self.upper_x, self.upper_y), result)
        if self.lower_x:
            result = torch.where(result < self.lower_x[-1], _piecewise_linear(result, self.lower_x, self.lower_y), result)
        return result.to(values.dtype)

    def to_dict(self) -> dict[str, list[float]]:
        return {name: list(getattr(self, name)) for name in ("lower_x", "lower_y", "upper_x", "upper_y")}

    @classmethod
    def from_dict(cls, data: object, where: str) -> "TailMap":
        """Inverse of :meth:`to_dict`; ``InvalidValueError`` naming ``where``."""
        if not isinstance(data, dict):
            raise InvalidValueError(f"{where} must be a mapping of knot lists, got {type(data).__name__}")
        unknown = set(data) - {"lower_x", "lower_y", "upper_x", "upper_y"}
        if unknown:
            raise InvalidValueError(f"{where}: unknown key(s) {sorted(unknown)}")
        try:
            return cls(**{name: tuple(float(v) for v in values) for name, values in data.items()})
        except InvalidValueError as error:
            raise InvalidValueError(f"{where}: {error}") from None
        except (TypeError, ValueError) as error:
            raise InvalidValueError(f"{where} needs lists of numbers: {error!r}") from None


#: the steepest slope a :class:`QuantileMap` continues with beyond its outermost knots
MAX_OUTER_SLOPE = 1.0


def _extended_knots(x: tuple[float, ...], y: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The knots of a :class:`QuantileMap` with one more at each end, 1 beyond the outermost, on the
    outer segment's slope capped at :data:`MAX_OUTER_SLOPE` (the same function, continued linearly)."""
    low_slope = min((y[1] - y[0]) / (x[1] - x[0]), MAX_OUTER_SLOPE)
    high_slope = min((y[-1] - y[-2]) / (x[-1] - x[-2]), MAX_OUTER_SLOPE)
    return (x[0] - 1.0, *x, x[-1] + 1.0), (y[0] - low_slope, *y, y[-1] + high_slope)


@dataclass(frozen=True)
class QuantileMap:
    """A strictly increasing piecewise-linear map ``x`` -> ``y`` (K >= 2 knots), continued beyond the
    outermost knots with the outermost segments' slopes, at most :data:`MAX_OUTER_SLOPE`. ``x = y``
    is the identity.

    The cap: the outermost knots are the generator's and the data's most extreme quantiles that
    still have ~20 muons beyond them, so the outer segments' slopes are noisy, and beyond them
    nothing is known; a steep one continued without end moved a few muons far past anything the
    data holds (``icecube`` 0.6.4: 0.6 % of the muons of E0 10^4.5-10^5 GeV below 1 GeV, down to
    10^-4 GeV, through a slope of 6.9 below its lowest energy knot). Beyond the knots a value keeps
    at most its distance from the outermost knot.
    """

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        _check_knots("map", self.x, self.y)
        if not self.x:
            raise InvalidValueError("a quantile map needs at least 2 knots, got none")

    def apply(self, values: Tensor) -> Tensor:
        """(M,) values -> (M,) float64 mapped values."""
        return _piecewise_linear(values.to(torch.float64), *self.extended_knots)

    @property
    def extended_knots(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``x``, ``y`` with the capped continuation as one more knot at each end (:func:`_extended_knots`)."""
        return _extended_knots(self.x, self.y)

    @property
    def is_identity(self) -> bool:
        return self.x == self.y

    def to_dict(self) -> dict[str, list[float]]:
        return {"x": list(self.x), "y": list(self.y)}


#: the quantile map that moves nothing
IDENTITY = QuantileMap((0.0, 1.0), (0.0, 1.0))


@dataclass(frozen=True)
class MuonEnergyMaps:
    """Maps of one variable at one E0 anchor that depend on the muon's own energy: ``maps[j]`` holds
    at log10(E_mu / GeV) = ``log10_energy[j]`` (strictly increasing, >= 2 anchors); between two
    anchors the mapped values are interpolated linearly in log10 E_mu (strictly increasing in the
    value at every E_mu), beyond the outer anchors their maps hold. So the map of the radius can
    differ for energetic and soft muons of one E0: it corrects how radius and energy go together."""

    log10_energy: tuple[float, ...]
    maps: tuple[QuantileMap, ...]

    def __post_init__(self) -> None:
        _check_increasing("log10_energy", self.log10_energy)
        if len(self.log10_energy) != len(self.maps) or len(self.maps) < 2:
            raise InvalidValueError(f"{len(self.log10_energy)} muon-energy anchors but {len(self.maps)} maps; "
                                    "one map per anchor, at least 2")

    def to_dict(self) -> dict[str, object]:
        return {"log10_energy": list(self.log10_energy), "maps": [m.to_dict() for m in self.maps]}


def _quantile_map_from_dict(entry: object, name: str) -> QuantileMap:
    if not isinstance(entry, dict) or set(entry) != {"x", "y"}:
        raise InvalidValueError(f"{name} must be a mapping with x and y")
    return QuantileMap(tuple(float(v) for v in entry["x"]), tuple(float(v) for v in entry["y"]))


@dataclass(frozen=True)
class PrimaryEnergyMap:
    """Maps of one variable that depend on the primary energy E0.

    ``maps[k]`` holds at log10(E0 / GeV) = ``log10_e0[k]`` (strictly increasing, K >= 2); between two
    anchors the mapped values are interpolated linearly in log10 E0 (a convex combination of
    strictly increasing maps is strictly increasing, so the order of the values at one E0 is kept);
    below the first and above the last anchor, that anchor's map holds. ``mubundle calibrate`` puts
    identity maps at both ends, so the correction fades out beyond the E0 it was fitted at. An
    anchor's map may itself depend on the muon energy (:class:`MuonEnergyMaps`; then the order is
    kept among muons of one E0 and one energy, and :meth:`apply` needs each muon's log10 E_mu).
    """

    log10_e0: tuple[float, ...]
    maps: tuple["QuantileMap | MuonEnergyMaps", ...]

    def __post_init__(self) -> None:
        _check_increasing("log10_e0", self.log10_e0)
        if len(self.log10_e0) != len(self.maps) or len(self.maps) < 2:
            raise InvalidValueError(f"{len(self.log10_e0)} anchors in log10_e0 but {len(self.maps)} maps; "
                                    "one map per anchor, at least 2")

    @property
    def needs_muon_energy(self) -> bool:
        """Whether :meth:`apply` needs each muon's log10 E_mu (an anchor's map depends on it)."""
        return any(isinstance(m, MuonEnergyMaps) for m in self.maps)

    def apply(self, values: Tensor, log10_e0: Tensor, log10_energy: Tensor | None = None) -> Tensor:
        """(M,) values at (M,) log10(E0 / GeV) -> (M,) mapped values, same dtype and device;
        ``log10_energy`` (M,) log10(E_mu / GeV) of each muon, needed when :attr:`needs_muon_energy`.

        Vectorised over the muons whatever their E0 and energy (no loop over anchors): each muon's
        maps are found in one sorted key array of all maps' knots (:class:`_StackedMaps`)."""
        if self.needs_muon_energy and (log10_energy is None or log10_energy.shape != values.shape):
            raise InvalidValueError(f"this map by primary energy depends on the muon energy: it needs log10 E_mu for "
                                    f"each of the {values.shape[0]} values")
        stacked = self._stacked(values.device)
        anchors = stacked.anchors
        e0 = log10_e0.to(torch.float64)
        # beyond the outer anchors their maps hold (a NaN stays NaN: it is not moved into range)
        e0 = torch.where(e0 < anchors[0], anchors[0], torch.where(e0 > anchors[-1], anchors[-1], e0))
        # segment k lies between anchors k and k + 1 (k = 0 .. K-2)
        segment = torch.searchsorted(anchors[1:-1].contiguous(), e0, right=True)
        low = anchors.index_select(0, segment)
        weight = (e0 - low) / (anchors.index_select(0, segment + 1) - low)
        source = values.to(torch.float64)
        energy = None if log10_energy is None else log10_energy.to(torch.float64).repeat(2)
        # both anchors of every muon in one pass (few large ops, not many small ones: a flux sample's
        # generator call holds ~50 muons, where each op's overhead is what costs)
        low_map, high_map = stacked.at_anchor(torch.cat((segment, segment + 1)), source.repeat(2), energy).chunk(2)
        return ((1.0 - weight) * low_map + weight * high_map).to(values.dtype)

    def _stacked(self, device: torch.device) -> "_StackedMaps":
        """The maps as tensors on ``device``, built on first use and kept with this (immutable) map;
        not pickled (:meth:`__getstate__`)."""
        cache = self.__dict__.setdefault("_stacked_by_device", {})  # not a field: eq, hash, repr ignore it
        if device not in cache:
            cache[device] = _StackedMaps.of(self, device)
        return cache[device]

    def __getstate__(self) -> dict[str, object]:
        return {key: value for key, value in self.__dict__.items() if key != "_stacked_by_device"}

    def to_dict(self) -> dict[str, object]:
        return {"log10_e0": list(self.log10_e0), "maps": [m.to_dict() for m in self.maps]}

    @classmethod
    def from_dict(cls, data: object, where: str) -> "PrimaryEnergyMap":
        """Inverse of :meth:`to_dict` (a map is ``{"x", "y"}`` or ``{"log10_energy", "maps"}``);
        ``InvalidValueError`` naming ``where``."""
        if not isinstance(data, dict) or set(data) != {"log10_e0", "maps"} or not isinstance(data["maps"], list):
            raise InvalidValueError(f"{where} must be a mapping with log10_e0 and a list of maps")
        try:
            maps: list[QuantileMap | MuonEnergyMaps] = []
            for k, entry in enumerate(data["maps"]):
                if isinstance(entry, dict) and set(entry) == {"log10_energy", "maps"} and isinstance(entry["maps"], list):
                    maps.append(MuonEnergyMaps(tuple(float(v) for v in entry["log10_energy"]),
                                               tuple(_quantile_map_from_dict(m, f"map {k}.{j}")
                                                     for j, m in enumerate(entry["maps"]))))
                else:
                    maps.append(_quantile_map_from_dict(entry, f"map {k} (or a mapping with log10_energy and maps)"))
            return cls(tuple(float(v) for v in data["log10_e0"]), tuple(maps))
        except InvalidValueError as error:
            raise InvalidValueError(f"{where}: {error}") from None
        except (TypeError, ValueError) as error:
            raise InvalidValueError(f"{where} needs lists of numbers: {error!r}") from None


@dataclass(frozen=True)
class _StackedMaps:
    """The maps of a :class:`PrimaryEnergyMap` as tensors for vectorised lookup.

    Every quantile map, one per E0 anchor or several (:class:`MuonEnergyMaps`), is map g of G in
    anchor order. ``x``, ``y``: (G * Q,) the knots of map g at g * Q .. g * Q + Q - 1, every map padded
    to the longest one's Q knots with knots on its outer segment's extension (the same function).
    ``keys``: (G * (Q - 2),) the interior knots of map g shifted by g * ``stride``, sorted as a whole
    (the maps' blocks do not overlap), so one ``searchsorted`` finds each value's segment in its own
    map. Anchor k's maps are ``first[k]`` .. ``first[k] + count[k] - 1``, at the muon energies
    ``muon_anchor`` (G,) (0 for an anchor with one map); ``muon_keys`` are their interior ones shifted
    by k * ``muon_stride``, found the same way.
    """

    anchors: Tensor
    x: Tensor
    y: Tensor
    keys: Tensor
    stride: float
    low: float
    high: float
    knots: int
    first: Tensor
    count: Tensor
    muon_anchor: Tensor
    muon_keys: Tensor
    muon_interior_before: Tensor
    muon_stride: float

    @classmethod
    def of(cls, energy_map: PrimaryEnergyMap, device: torch.device) -> "_StackedMaps":
        per_anchor = [(m.log10_energy, m.maps) if isinstance(m, MuonEnergyMaps) else ((0.0,), (m,))
                      for m in energy_map.maps]
        flat = [quantile_map for _, maps in per_anchor for quantile_map in maps]
        knots = max(len(m.x) for m in flat) + 2  # with the capped continuation at both ends
        x = np.empty((len(flat), knots))
        y = np.empty_like(x)
        for g, quantile_map in enumerate(flat):
            mx, my = (np.array(v) for v in quantile_map.extended_knots)
            extra = np.arange(1.0, knots - len(mx) + 1.0)  # 1, 2, ... beyond the last knot
            slope = (my[-1] - my[-2]) / (mx[-1] - mx[-2])
            x[g] = np.concatenate((mx, mx[-1] + extra))
            y[g] = np.concatenate((my, my[-1] + slope * extra))
        # a searched value is first brought into [low, high] (beyond, the outer segments hold)
        low, high = float(x.min()) - 1.0, float(x.max()) + 1.0
        stride = 2.0 * (high - low) + 1.0
        keys = (x[:, 1:-1] + stride * np.arange(len(x))[:, None]).ravel()
        muon_anchor = np.concatenate([np.array(anchors, dtype=np.float64) for anchors, _ in per_anchor])
        counts = np.array([len(maps) for _, maps in per_anchor])
        muon_stride = float(muon_anchor.max() - muon_anchor.min()) + 1.0
        muon_keys = np.concatenate([np.array(anchors[1:-1], dtype=np.float64) + k * muon_stride
                                    for k, (anchors, _) in enumerate(per_anchor)])
        interior = np.maximum(counts - 2, 0)

        def tensor(array: np.ndarray, dtype: torch.dtype = torch.float64) -> Tensor:
            return torch.tensor(np.ravel(array), dtype=dtype, device=device)

        return cls(tensor(np.array(energy_map.log10_e0)), tensor(x), tensor(y), tensor(keys), stride, low, high, knots,
                   tensor(np.concatenate(([0], np.cumsum(counts)[:-1])), torch.int64), tensor(counts, torch.int64),
                   tensor(muon_anchor), tensor(muon_keys), tensor(np.concatenate(([0], np.cumsum(interior)[:-1])), torch.int64),
                   muon_stride)

    def at_anchor(self, anchor: Tensor, values: Tensor, log10_energy: Tensor | None) -> Tensor:
        """(M,) float64 values through the map of E0 anchor ``anchor`` (M,) int64 at each muon's
        log10 E_mu (M,) float64 (None: every anchor has one map) -> (M,) float64."""
        first = self.first.index_select(0, anchor)
        if log10_energy is None:
            return self.through(first, values)
        count = self.count.index_select(0, anchor)
        last = first + count - 1
        low, high = self.muon_anchor.index_select(0, first), self.muon_anchor.index_select(0, last)
        energy = torch.where(log10_energy < low, low, torch.where(log10_energy > high, high, log10_energy))
        if self.muon_keys.numel():
            segment = torch.searchsorted(self.muon_keys, energy + anchor * self.muon_stride, right=True)
            segment -= self.muon_interior_before.index_select(0, anchor)
        else:
            segment = torch.zeros_like(anchor)
        # a NaN energy sorts last: keep the index inside the anchor's maps (the result is NaN)
        lower = first + torch.minimum(segment, torch.maximum(count - 2, torch.zeros_like(count)))
        upper = torch.minimum(lower + 1, last)
        span = self.muon_anchor.index_select(0, upper) - self.muon_anchor.index_select(0, lower)
        weight = torch.where(span > 0, (energy - self.muon_anchor.index_select(0, lower)) / torch.where(span > 0, span, 1.0),
                             torch.zeros_like(span))
        low_map, high_map = self.through(torch.cat((lower, upper)), values.repeat(2)).chunk(2)
        return (1.0 - weight) * low_map + weight * high_map

    def through(self, map_index: Tensor, values: Tensor) -> Tensor:
        """(M,) float64 values, each through map ``map_index`` (M,) int64 -> (M,) float64."""
        search = torch.where(values < self.low, self.low, torch.where(values > self.high, self.high, values))
        segment = torch.searchsorted(self.keys, search + map_index * self.stride, right=True)
        segment -= map_index * (self.knots - 2)
        # a NaN key sorts last: keep its index inside the map (the value stays NaN below)
        first = torch.minimum(segment, torch.full_like(segment, self.knots - 2)) + map_index * self.knots
        x0, y0 = self.x.index_select(0, first), self.y.index_select(0, first)
        slope = (self.y.index_select(0, first + 1) - y0) / (self.x.index_select(0, first + 1) - x0)
        return y0 + slope * (values - x0)


@dataclass(frozen=True)
class MultiplicityMap:
    """Maps of one variable by the class of the multiplicity N of the muon's event: ``maps[k]``
    holds for ``first_n[k]`` <= N < ``first_n[k + 1]`` and the last one for N >= ``first_n[-1]``;
    ``first_n`` strictly increasing from 1. A class's map is one quantile map for all E0 or a
    :class:`PrimaryEnergyMap` (then :meth:`apply` needs each value's log10 E0). Each map is
    strictly increasing, so the order of the values within one event is kept."""

    first_n: tuple[int, ...]
    maps: tuple["QuantileMap | PrimaryEnergyMap", ...]

    def __post_init__(self) -> None:
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in self.first_n):
            raise InvalidValueError(f"first_n must hold integers, got {self.first_n!r}")
        _check_increasing("first_n", tuple(float(n) for n in self.first_n))
        if not self.first_n or self.first_n[0] != 1:
            raise InvalidValueError(f"first_n must start at 1 (the single muons), got {self.first_n!r}")
        if len(self.first_n) != len(self.maps):
            raise InvalidValueError(f"{len(self.first_n)} classes of N but {len(self.maps)} maps; one map per class")

    @property
    def needs_primary_energy(self) -> bool:
        """Whether a class's map depends on E0 (:meth:`apply` then needs each value's log10 E0)."""
        return any(isinstance(m, PrimaryEnergyMap) for m in self.maps)

    def apply(self, values: Tensor, multiplicity: Tensor, log10_e0: Tensor | None = None) -> Tensor:
        """(M,) values of muons whose events have (M,) multiplicities (and (M,) log10(E0 / GeV),
        needed by a class map by E0) -> (M,) mapped values, same dtype and device."""
        if multiplicity.shape != values.shape:
            raise InvalidValueError(f"a map by multiplicity needs N for each of the {values.shape[0]} values, "
                                    f"got shape {tuple(multiplicity.shape)}")
        if self.needs_primary_energy and (log10_e0 is None or log10_e0.shape != values.shape):
            raise InvalidValueError(f"this map by multiplicity depends on E0: it needs log10 E0 for each of the "
                                    f"{values.shape[0]} values")
        first = _knot_tensor(tuple(float(n) for n in self.first_n), values.device)
        category = torch.searchsorted(first, multiplicity.to(torch.float64), right=True) - 1
        source = values.to(torch.float64)
        result = source.clone()
        # each class's map on its own values only (the maps work value by value, so this equals
        # mapping all and selecting; a flux sample's call holds ~50 muons, mostly of one class)
        for k, class_map in enumerate(self.maps):
            if isinstance(class_map, QuantileMap) and class_map.is_identity:
                continue
            rows = (category == k).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            part = source.index_select(0, rows)
            if isinstance(class_map, PrimaryEnergyMap):
                mapped = class_map.apply(part, log10_e0.index_select(0, rows))
            else:
                mapped = class_map.apply(part)
            result.index_copy_(0, rows, mapped)
        return result.to(values.dtype)

    def to_dict(self) -> dict[str, object]:
        return {"first_n": list(self.first_n), "maps": [m.to_dict() for m in self.maps]}

    @classmethod
    def from_dict(cls, data: object, where: str) -> "MultiplicityMap":
        """Inverse of :meth:`to_dict`; ``InvalidValueError`` naming ``where``."""
        if not isinstance(data, dict) or set(data) != {"first_n", "maps"} or not isinstance(data["maps"], list):
            raise InvalidValueError(f"{where} must be a mapping with first_n and a list of maps")
        try:
            first_n = tuple(int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) and float(n).is_integer() else n
                            for n in data["first_n"])
            maps = tuple(PrimaryEnergyMap.from_dict(m, f"map {k}") if isinstance(m, dict) and "log10_e0" in m
                         else _quantile_map_from_dict(m, f"map {k} (or a mapping with log10_e0 and maps)")
                         for k, m in enumerate(data["maps"]))
            return cls(first_n, maps)
        except InvalidValueError as error:
            raise InvalidValueError(f"{where}: {error}") from None
        except (TypeError, ValueError) as error:
            raise InvalidValueError(f"{where} needs lists of numbers: {error!r}") from None


#: the maps a :class:`MuonCalibration` can hold (its fields and model.json keys)
MAP_NAMES = ("log10_energy", "log10_radius", "log10_energy_by_e0", "log10_radius_by_e0", "log10_energy_by_n")


@dataclass(frozen=True)
class MuonCalibration:
    """Maps of log10(E / GeV) and log10(r / m): a tail map for all muons and a map by primary
    energy for each variable (None: identity), applied in that order (the map by E0 takes the
    tail map's output), then the radius maps, then the map of log10 E by the event's N (so the
    radius map's muon-energy classes see the energies it was fitted on); ``fitted_on`` says on what."""

    log10_energy: TailMap | None = None
    log10_radius: TailMap | None = None
    fitted_on: str = ""
    log10_radius_by_e0: PrimaryEnergyMap | None = None
    log10_energy_by_e0: PrimaryEnergyMap | None = None
    log10_energy_by_n: MultiplicityMap | None = None

    @property
    def needs_primary_energy(self) -> bool:
        """Whether :meth:`apply` needs each muon's log10 E0."""
        return (self.log10_energy_by_e0 is not None or self.log10_radius_by_e0 is not None
                or (self.log10_energy_by_n is not None and self.log10_energy_by_n.needs_primary_energy))

    @property
    def needs_multiplicity(self) -> bool:
        """Whether :meth:`apply` needs the N of each muon's event."""
        return self.log10_energy_by_n is not None

    @property
    def map_names(self) -> list[str]:
        """The :data:`MAP_NAMES` this calibration has a map for."""
        return [name for name in MAP_NAMES if getattr(self, name) is not None]

    def map_log10_energy(self, values: Tensor, log10_e0: Tensor | None = None) -> Tensor:
        """(M,) log10(E / GeV) through the energy maps (``log10_e0`` (M,): needed by a map by E0)."""
        if self.log10_energy is not None:
            values = self.log10_energy.apply(values)
        return values if self.log10_energy_by_e0 is None else self.log10_energy_by_e0.apply(values, log10_e0)

    def map_log10_radius(self, values: Tensor, log10_e0: Tensor | None = None,
                         log10_energy: Tensor | None = None) -> Tensor:
        """(M,) log10(r / m) through the radius maps (``log10_e0`` as for :meth:`map_log10_energy`;
        ``log10_energy`` (M,) the muons' calibrated log10(E / GeV), needed by a map by E0 that
        depends on the muon energy)."""
        if self.log10_radius is not None:
            values = self.log10_radius.apply(values)
        if self.log10_radius_by_e0 is None:
            return values
        return self.log10_radius_by_e0.apply(values, log10_e0, log10_energy)

    def apply(self, muons: Tensor, log10_e0: Tensor | None = None, multiplicity: Tensor | None = None) -> Tensor:
        """(M, 3) [GeV, m, m] -> (M, 3) calibrated, in place on ``muons`` (returned). ``log10_e0``:
        (M,) log10(E0 / GeV) of each muon's primary, needed by a map by primary energy;
        ``multiplicity``: (M,) N of each muon's event, needed by the map by multiplicity."""
        if self.needs_primary_energy and (log10_e0 is None or log10_e0.shape != muons.shape[:1]):
            raise InvalidValueError(f"a map by primary energy needs log10 E0 for each of the {muons.shape[0]} "
                                    f"muons, got {None if log10_e0 is None else tuple(log10_e0.shape)}")
        if self.needs_multiplicity and (multiplicity is None or multiplicity.shape != muons.shape[:1]):
            raise InvalidValueError(f"a map by multiplicity needs the N of each of the {muons.shape[0]} muons' events, "
                                    f"got {None if multiplicity is None else tuple(multiplicity.shape)}")
        if self.log10_energy is not None or self.log10_energy_by_e0 is not None:
            muons[:, 0] = torch.pow(10.0, self.map_log10_energy(torch.log10(muons[:, 0]), log10_e0))
        if self.log10_radius is not None or self.log10_radius_by_e0 is not None:
            self._map_radii(muons, log10_e0)
        if self.log10_energy_by_n is not None:
            muons[:, 0] = torch.pow(10.0, self.log10_energy_by_n.apply(torch.log10(muons[:, 0]), multiplicity, log10_e0))
        return muons

    def _map_radii(self, muons: Tensor, log10_e0: Tensor | None) -> None:
        """The radius maps on (M, 3) ``muons``, in place (x and y scaled alike)."""
        radius = torch.hypot(muons[:, 1], muons[:, 2])
        positive = radius > 0  # a muon on the axis stays there
        safe = torch.where(positive, radius, torch.ones_like(radius))
        log10_energy = None
        if self.log10_radius_by_e0 is not None and self.log10_radius_by_e0.needs_muon_energy:
            log10_energy = torch.log10(muons[:, 0])  # after the energy maps, as fitted
        mapped = torch.pow(10.0, self.map_log10_radius(torch.log10(safe), log10_e0, log10_energy))
        muons[:, 1:3] *= torch.where(positive, mapped / safe, torch.ones_like(radius)).unsqueeze(1)

    def to_dict(self) -> dict[str, object]:
        """The JSON form stored in ``model.json``."""
        return {"fitted_on": self.fitted_on, **{name: getattr(self, name).to_dict() for name in self.map_names}}

    @classmethod
    def from_dict(cls, data: object) -> "MuonCalibration":
        """Inverse of :meth:`to_dict`; ``InvalidValueError`` naming what is wrong."""
        if not isinstance(data, dict):
            raise InvalidValueError(f"calibration must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {*MAP_NAMES, "fitted_on"}
        if unknown:
            raise InvalidValueError(f"calibration: unknown key(s) {sorted(unknown)}")
        maps: dict[str, object] = {}
        for name in MAP_NAMES:
            if name in data:
                kind = PrimaryEnergyMap if name.endswith("_by_e0") else MultiplicityMap if name.endswith("_by_n") else TailMap
                maps[name] = kind.from_dict(data[name], f"calibration.{name}")
        return cls(**maps, fitted_on=str(data.get("fitted_on", "")))


__all__ = ["IDENTITY", "MAP_NAMES", "MuonCalibration", "MuonEnergyMaps", "MultiplicityMap", "PrimaryEnergyMap", "QuantileMap",
           "TailMap"]
