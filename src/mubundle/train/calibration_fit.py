"""``mubundle calibrate``: fit a model's tail maps (:mod:`mubundle.model.calibration`).

The generator draws muons for every event with muons of the given (training) events, for the
event's own conditions and TRUE multiplicity, so only the generator is calibrated, not the
multiplicity part. Each tail's knots are the generator's and the data's quantiles at ``KNOTS``
tail probabilities spaced logarithmically from ``TAIL_PROBABILITY`` (5 % of the muons) to the
level with ``MIN_MUONS_BEYOND`` data muons beyond it; the innermost knot maps onto itself, so
each map is continuous and the identity between the tails. log10 E gets its upper tail mapped,
log10 r both tails. A map by primary energy (``energy-by-energy``, ``radius-by-energy``) is a
whole-distribution map per bin of ``E0_BIN_DEX`` in log10 E0 with at least ``MIN_BIN_MUONS`` data
muons (knots at the tail levels above, mirrored, and at the deciles), interpolated in log10 E0
between the bins' centres and fading to the identity over one bin width beyond the outermost
fitted bins; it acts after its variable's tail map. The map by multiplicity (``energy-by-multiplicity``) is a
whole-distribution map of log10 E per class of the event's N (``N_CLASSES``: 1, 2-3, 4-10), fitted
on what the energy maps put out, the identity for N >= 11 (the many-muon bundles hold most muons,
so the maps by E0 are theirs already). The result is a new model directory: the same networks, the maps in
``model.json`` and a line in its domain notes; the report ``calibration.json`` gives, on the fit
events, the muons beyond energy and radius thresholds for the data, the generator and the
calibrated generator (in-sample: check on held-out events with ``mubundle evaluate``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from mubundle.data.atomic import atomic_write_bytes
from mubundle.data.batch import RaggedBatch
from mubundle.data.lock import directory_lock
from mubundle.data.validate import above_primary_energy
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.calibration import (
    IDENTITY, MuonCalibration, MuonEnergyMaps, MultiplicityMap, PrimaryEnergyMap, QuantileMap, TailMap,
)
from mubundle.train.multiplicity_fit import check_data_domain, check_data_site, load_valid_events

if TYPE_CHECKING:
    import argparse

logger = logging.getLogger("mubundle.train")

#: the share of the muons in each mapped tail
TAIL_PROBABILITY = 0.05
#: data muons beyond the outermost knot (its quantile's statistical anchor)
MIN_MUONS_BEYOND = 20
#: knots per tail
KNOTS = 16
#: thresholds of the report: log10(E / GeV) above, radius [m] below and above
ENERGY_THRESHOLDS = (3.0, 3.5, 4.0, 4.25, 4.5, 4.75, 5.0)
RADIUS_BELOW_M = (0.1, 0.3, 1.0)
RADIUS_ABOVE_M = (30.0, 75.0, 150.0)
REPORT_NAME = "calibration.json"
#: width [dex] of the primary-energy bins of the maps by E0
E0_BIN_DEX = 0.5
#: data muons a primary-energy bin needs for a map of its own
MIN_BIN_MUONS = 2000
#: knot levels between the tails of a whole-distribution map (the deciles)
BULK_LEVELS = tuple(np.round(np.linspace(0.1, 0.9, 9), 2))
#: the classes of the event's N of the map by multiplicity, by their lowest N; the last (N >= 11) keeps the identity
N_CLASSES = (1, 2, 4, 11)


def muon_log10_e0(batch: RaggedBatch) -> np.ndarray:
    """(M,) log10(E0 / GeV) of the primary of each of ``batch``'s muons, in their order."""
    return np.repeat(np.log10(batch.conditions[:, 0].astype(np.float64)), batch.counts)


def generator_muons(model: MuonBundleModel, batch: RaggedBatch, seed: int) -> np.ndarray:
    """(M, 3) float64 [GeV, m, m] muons of the generator (no calibration) for the conditions and
    multiplicities of ``batch``'s events with muons, in their order; ``seed`` draws the noise."""
    with_muons = batch.counts > 0
    kept, model.calibration = model.calibration, None
    try:
        muons = model.sample_muons(
            torch.as_tensor(np.ascontiguousarray(batch.conditions[with_muons], dtype=np.float32)),
            torch.as_tensor(np.asarray(batch.counts[with_muons], dtype=np.int64)),
            torch.Generator().manual_seed(seed),
        )
    finally:
        model.calibration = kept
    return muons.to(torch.float64).cpu().numpy()


def _tail_probabilities(n_data: int, what: str, map_name: str | None = None) -> np.ndarray:
    lowest = MIN_MUONS_BEYOND / max(n_data, 1)
    if lowest > TAIL_PROBABILITY / 2:
        label = _map_label(map_name, what) if map_name else "a calibration"
        raise ValueError(f"{n_data} data muons with a {what} are too few for {label} (at least "
                         f"{int(2 * MIN_MUONS_BEYOND / TAIL_PROBABILITY)} needed); "
                         f"{_remedy(map_name, in_e0_bin='E0' in what)}")
    return np.geomspace(TAIL_PROBABILITY, lowest, KNOTS)


def _map_label(map_name: str | None, what: str) -> str:
    """How messages name a map: its ``--maps`` name and what it maps ("the energy map (log10 E, upper
    tail, all E0)", "the radius-by-energy map (log10 r at log10 E0 5-5.5)"), or what it maps alone."""
    return f"the {map_name} map ({what})" if map_name else f"the map of {what}"


def _remedy(map_name: str | None, in_e0_bin: bool) -> str:
    """What a user can do about a map that cannot be fitted."""
    more = "more events in that E0 range (e.g. a set restricted in energy, `mubundle simulate --energy-range`)" \
        if in_e0_bin else "more events"
    leave = f", or leave {map_name} out of --maps" if map_name else ""
    return f"fit on {more}{leave}"


def _refuse_unless_increasing(knots: np.ndarray, levels: np.ndarray, whose: str, label: str, remedy: str) -> None:
    """``ValueError`` naming ``whose`` knots ("the generator's", "the data's") of the map ``label``
    when ``knots`` are not strictly increasing (tied quantiles: too few distinct values there)."""
    if np.any(np.diff(knots) <= 0):
        raise ValueError(f"{label}: {whose} knots (quantiles at levels {np.round(levels, 6).tolist()}) are not strictly "
                         f"increasing: {np.round(knots, 4).tolist()}; {remedy}")


def _tail_knots(generated: np.ndarray, data: np.ndarray, what: str, upper: bool,
                map_name: str | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Increasing knots (generator quantiles, data quantiles) of the upper or the lower tail, the
    innermost one mapping onto itself (continuity with the identity between the tails).

    Raises ``ValueError`` when the data are too few (fewer than ``2 MIN_MUONS_BEYOND /
    TAIL_PROBABILITY`` = 800) or a set of knots is not strictly increasing (ties, or a generator so
    far from the data that the map would fold back); the message names the map (``map_name``, the
    ``--maps`` name), whose knots and what to do."""
    side = "upper" if upper else "lower"
    label = _map_label(map_name, f"{what}, {side} tail, all E0")
    remedy = _remedy(map_name, in_e0_bin=False)
    probabilities = _tail_probabilities(len(data), what, map_name)
    levels = np.sort(1.0 - probabilities if upper else probabilities)
    x, y = np.quantile(generated, levels), np.quantile(data, levels)
    _refuse_unless_increasing(x, levels, "the generator's", label, remedy)
    _refuse_unless_increasing(y, levels, "the data's", label, remedy)
    continuous = y.copy()
    inner, neighbour = (0, 1) if upper else (-1, -2)
    continuous[inner] = x[inner]
    if np.any(np.diff(continuous) <= 0):
        beyond = "at or above" if upper else "at or below"
        raise ValueError(
            f"{label}: the generator's quantile at level {levels[inner]:.6g}, {x[inner]:.4g} (the innermost knot, which "
            f"maps onto itself), lies {beyond} the data's next knot {y[neighbour]:.4g} (level {levels[neighbour]:.6g}): "
            f"the generator's {side} tail is so far from the data's that the map would fold back; check that the data "
            f"belong to this model (site, depths, E0), {remedy}")
    return tuple(map(float, x)), tuple(map(float, continuous))


def fit_upper_tail(generated: np.ndarray, data: np.ndarray, what: str = "log10 E", map_name: str | None = None) -> TailMap:
    """Upper-tail map of one variable from the generator's (M,) and the data's (M',) values
    (:func:`_tail_knots` says when it raises ``ValueError``)."""
    x, y = _tail_knots(generated, data, what, upper=True, map_name=map_name)
    return TailMap(upper_x=x, upper_y=y)


def fit_both_tails(generated: np.ndarray, data: np.ndarray, what: str = "log10 r", map_name: str | None = None) -> TailMap:
    """Lower- and upper-tail map of one variable (as :func:`fit_upper_tail`, mirrored below)."""
    upper_x, upper_y = _tail_knots(generated, data, what, upper=True, map_name=map_name)
    lower_x, lower_y = _tail_knots(generated, data, what, upper=False, map_name=map_name)
    return TailMap(lower_x=lower_x, lower_y=lower_y, upper_x=upper_x, upper_y=upper_y)


def e0_bins(log10_e0: np.ndarray) -> list[tuple[float, float]]:
    """The (low, high) log10 E0 bins of width ``E0_BIN_DEX``, on multiples of it, that cover ``log10_e0``."""
    first = np.floor(log10_e0.min() / E0_BIN_DEX) * E0_BIN_DEX
    return [(float(low), float(low + E0_BIN_DEX)) for low in np.arange(first, log10_e0.max(), E0_BIN_DEX)]


def _whole_distribution_map(generated: np.ndarray, data: np.ndarray, where: str, with_minimum: bool = False,
                            map_name: str | None = None) -> QuantileMap:
    """The quantile map of the generator's values onto the data's: knots at the tail levels of
    :func:`_tail_probabilities` at both ends and ``BULK_LEVELS``, and with ``with_minimum`` one more
    at the two minima (a variable with a hard lower bound in the data: the muon energy, kept above
    ``--min-energy``; the generator's lowest values then land at the data's lowest, not below the
    bound); ``ValueError`` naming the map (``map_name``, ``where``: the variable and its bin), whose
    knots and what to do when the knots are not strictly increasing."""
    tail = np.sort(_tail_probabilities(len(data), where, map_name))
    levels = np.concatenate([tail, BULK_LEVELS, 1.0 - tail[::-1]])
    x, y = np.quantile(generated, levels), np.quantile(data, levels)
    if with_minimum and generated.min() < x[0] and data.min() < y[0]:
        x, y = np.concatenate(([generated.min()], x)), np.concatenate(([data.min()], y))
        levels = np.concatenate(([0.0], levels))
    label, remedy = _map_label(map_name, where), _remedy(map_name, in_e0_bin="E0" in where)
    _refuse_unless_increasing(x, levels, "the generator's", label, remedy)
    _refuse_unless_increasing(y, levels, "the data's", label, remedy)
    return QuantileMap(tuple(map(float, x)), tuple(map(float, y)))


def fit_by_primary_energy(generated: np.ndarray, generated_log10_e0: np.ndarray, data: np.ndarray,
                          data_log10_e0: np.ndarray, what: str = "log10 r",
                          muon_energy_classes: int = 1, generated_log10_energy: np.ndarray | None = None,
                          data_log10_energy: np.ndarray | None = None, with_minimum: bool = False,
                          map_name: str | None = None) -> PrimaryEnergyMap:
    """Whole-distribution maps of one variable per bin of log10 E0, from the generator's (M,) and
    the data's (M',) values with each value's log10(E0 / GeV). A bin with at least
    ``MIN_BIN_MUONS`` data muons gets knots at the generator's and the data's quantiles (the tail
    levels of :func:`_tail_probabilities` at both ends and ``BULK_LEVELS``), anchored at its centre;
    identity maps are added one bin width beyond the outermost anchors. ``ValueError`` when no bin
    has enough muons or a bin's knots are not strictly increasing.

    ``muon_energy_classes`` K > 1 (with each value's muon log10 E_mu, the generator's as the
    calibration puts it out): a bin with K x ``MIN_BIN_MUONS`` data muons is cut into K classes at
    the data's muon-energy quantiles, the generator's muons classed at the same edges, one map per
    class anchored at the class's median data log10 E_mu (:class:`MuonEnergyMaps`); thinner bins
    get one map. This corrects the radius of energetic and soft muons separately: their correlation.
    ``with_minimum``: each map also maps the generator's minimum onto the data's (:func:`_whole_distribution_map`).
    ``map_name``: the ``--maps`` name that errors name."""
    if muon_energy_classes < 1:
        raise ValueError(f"muon_energy_classes must be >= 1, got {muon_energy_classes}")
    if muon_energy_classes > 1 and (generated_log10_energy is None or data_log10_energy is None):
        raise ValueError("muon-energy classes need the muon energies of the generator and of the data")
    anchors, maps = [], []
    for low, high in e0_bins(data_log10_e0):
        in_data = (data_log10_e0 >= low) & (data_log10_e0 < high)
        in_generated = (generated_log10_e0 >= low) & (generated_log10_e0 < high)
        n = int(in_data.sum())
        if n < MIN_BIN_MUONS or in_generated.sum() < MIN_BIN_MUONS:
            continue
        where = f"{what} at log10 E0 {low:g}-{high:g}"
        classes = muon_energy_classes if n >= muon_energy_classes * MIN_BIN_MUONS else 1
        if classes > 1:
            edges = np.quantile(data_log10_energy[in_data], np.linspace(0, 1, classes + 1)[1:-1])
            class_data = np.searchsorted(edges, data_log10_energy)
            class_generated = np.searchsorted(edges, generated_log10_energy)
            members = [(in_data & (class_data == k), in_generated & (class_generated == k)) for k in range(classes)]
            if min(int(g.sum()) for _, g in members) < MIN_BIN_MUONS:
                classes = 1
        if classes == 1:
            maps.append(_whole_distribution_map(generated[in_generated], data[in_data], where, with_minimum, map_name))
        else:
            maps.append(MuonEnergyMaps(
                tuple(float(np.median(data_log10_energy[d])) for d, _ in members),
                tuple(_whole_distribution_map(generated[g], data[d], f"{where}, muon-energy class {k + 1} of {classes}",
                                              with_minimum, map_name)
                      for k, (d, g) in enumerate(members))))
        anchors.append(0.5 * (low + high))
    if not anchors:
        bins = e0_bins(data_log10_e0) if data_log10_e0.size else []
        most = max(((int(((data_log10_e0 >= low) & (data_log10_e0 < high)).sum()), low, high) for low, high in bins),
                   default=(0, 0.0, 0.0))
        fullest = f" (the fullest: {most[0]} at log10 E0 {most[1]:g}-{most[2]:g})" if bins else ""
        raise ValueError(f"{_map_label(map_name, what + ' by E0')}: no bin of {E0_BIN_DEX:g} in log10 E0 holds "
                         f"{MIN_BIN_MUONS} data muons with a {what}{fullest}; {_remedy(map_name, in_e0_bin=True)}")
    return PrimaryEnergyMap((anchors[0] - E0_BIN_DEX, *anchors, anchors[-1] + E0_BIN_DEX), (IDENTITY, *maps, IDENTITY))


def _has_a_fittable_e0_bin(log10_e0: np.ndarray) -> bool:
    """Whether a bin of :func:`e0_bins` holds ``MIN_BIN_MUONS`` of the (M,) muons with these log10 E0
    (the generator's and the data's muons of the same events share them)."""
    return log10_e0.size > 0 and any(int(((log10_e0 >= low) & (log10_e0 < high)).sum()) >= MIN_BIN_MUONS
                                     for low, high in e0_bins(log10_e0))


def fit_by_multiplicity(generated: np.ndarray, data: np.ndarray, multiplicity: np.ndarray,
                        what: str = "log10 E", log10_e0: np.ndarray | None = None,
                        map_name: str | None = None) -> MultiplicityMap:
    """Whole-distribution maps of one variable per class of the event's N (:data:`N_CLASSES`), from
    the generator's and the data's (M,) values of the same events, (M,) N of each value's event. A
    class below the last with ``MIN_BIN_MUONS`` data and generator muons gets the quantile map
    (:func:`_whole_distribution_map`, with the minima), a thinner one and the last the identity;
    with ``log10_e0`` ((M,) log10 E0 of each value) a class gets a map by E0 instead
    (:func:`fit_by_primary_energy`, its bins of ``MIN_BIN_MUONS``, fading to the identity beyond
    them), the identity when no bin of E0 holds enough. ``ValueError`` when no class can be fitted
    (``map_name``: the ``--maps`` name that errors name)."""
    maps = []
    for k, first in enumerate(N_CLASSES):
        last = N_CLASSES[k + 1] - 1 if k + 1 < len(N_CLASSES) else None
        members = (multiplicity >= first) & (multiplicity <= last) if last is not None else multiplicity >= first
        if last is None or members.sum() < MIN_BIN_MUONS:
            maps.append(IDENTITY)
            continue
        where = f"{what} of events with N = {first}" + (f"-{last}" if last > first else "")
        if log10_e0 is None:
            maps.append(_whole_distribution_map(generated[members], data[members], where, with_minimum=True,
                                                map_name=map_name))
        elif _has_a_fittable_e0_bin(log10_e0[members]):
            maps.append(fit_by_primary_energy(generated[members], log10_e0[members], data[members], log10_e0[members],
                                              where, with_minimum=True, map_name=map_name))
        else:
            maps.append(IDENTITY)
    if all(m is IDENTITY for m in maps):
        raise ValueError(f"{_map_label(map_name, what + ' by N')}: no class of N below {N_CLASSES[-1]} holds "
                         f"{MIN_BIN_MUONS} muons with a {what}; {_remedy(map_name, in_e0_bin=False)}")
    return MultiplicityMap(N_CLASSES, tuple(maps))


#: the maps ``mubundle calibrate --maps`` can fit, and the ``MuonCalibration`` field of each
MAPS = ("energy", "radius", "energy-by-energy", "radius-by-energy", "energy-by-multiplicity",
        "energy-by-multiplicity-and-energy")
#: what ``mubundle calibrate`` fits without ``--maps`` for a model without maps (:func:`maps_of`)
DEFAULT_MAPS = ("energy", "radius")
_FIELDS = {"energy": "log10_energy", "radius": "log10_radius", "energy-by-energy": "log10_energy_by_e0",
           "radius-by-energy": "log10_radius_by_e0", "energy-by-multiplicity": "log10_energy_by_n",
           "energy-by-multiplicity-and-energy": "log10_energy_by_n"}
#: the two fits of the map by multiplicity (one field): for all E0, or by E0 as well
_BY_MULTIPLICITY = ("energy-by-multiplicity", "energy-by-multiplicity-and-energy")


def maps_of(calibration: MuonCalibration | None) -> tuple[str, ...]:
    """The ``--maps`` that refit the kinds of maps ``calibration`` (an input model's) holds, in the
    order of :data:`MAPS` (its map by multiplicity as ``energy-by-multiplicity-and-energy`` when
    that map depends on E0); :data:`DEFAULT_MAPS` for a model without maps. They pass
    :func:`check_maps` against ``calibration``: every map is refitted, none is kept over a refit one."""
    if calibration is None or not calibration.map_names:
        return DEFAULT_MAPS
    by_n = calibration.log10_energy_by_n
    names = [name for name in MAPS if name not in _BY_MULTIPLICITY and getattr(calibration, _FIELDS[name]) is not None]
    if by_n is not None:
        names.append(_BY_MULTIPLICITY[1] if by_n.needs_primary_energy else _BY_MULTIPLICITY[0])
    return tuple(names)


def muon_energy_classes_of(calibration: MuonCalibration | None) -> int:
    """The muon-energy classes of ``calibration``'s radius map by E0: the most maps at one E0 anchor
    (:class:`MuonEnergyMaps`), 1 when it has none (or no such map)."""
    by_e0 = None if calibration is None else calibration.log10_radius_by_e0
    if by_e0 is None:
        return 1
    return max((len(m.maps) for m in by_e0.maps if isinstance(m, MuonEnergyMaps)), default=1)


def check_maps(maps: Sequence[str], kept: MuonCalibration | None, muon_energy_classes: int = 1) -> None:
    """``ValueError`` for ``maps`` that are not :data:`MAPS`, for muon-energy classes without the
    radius map by E0, or for maps that refit a tail map of ``kept`` (the input model's calibration)
    while keeping its map by E0 of the same variable, or an energy map while keeping a radius map
    by E0 and muon energy."""
    unknown = set(maps) - set(MAPS)
    if unknown or not maps:
        raise ValueError(f"maps must be one or more of {', '.join(MAPS)}, got {list(maps)}")
    if muon_energy_classes > 1 and "radius-by-energy" not in maps:
        raise ValueError("--muon-energy-classes applies to the radius map by E0: name radius-by-energy in --maps")
    for variable in ("energy", "radius"):
        by_e0 = f"{variable}-by-energy"
        if variable in maps and by_e0 not in maps and kept is not None and getattr(kept, _FIELDS[by_e0]) is not None:
            raise ValueError(f"refitting the {variable} tail map would leave the input model's {variable} map by E0 "
                             f"fitted on the old tail map's output: name {by_e0} as well")
    kept_radius = None if kept is None else kept.log10_radius_by_e0
    if ({"energy", "energy-by-energy"} & set(maps) and "radius-by-energy" not in maps
            and kept_radius is not None and kept_radius.needs_muon_energy):
        raise ValueError("refitting an energy map would leave the input model's radius map by E0 and muon energy "
                         "fitted on the old muon energies: name radius-by-energy as well")
    if set(_BY_MULTIPLICITY) <= set(maps):
        raise ValueError("energy-by-multiplicity and energy-by-multiplicity-and-energy fit the same map: name one")
    if ({"energy", "energy-by-energy"} & set(maps) and not set(_BY_MULTIPLICITY) & set(maps)
            and kept is not None and kept.log10_energy_by_n is not None):
        raise ValueError("refitting an energy map would leave the input model's energy map by multiplicity fitted on "
                         "the old energy maps' output: name energy-by-multiplicity as well")


def fit_calibration(
    generated: np.ndarray, data: np.ndarray, fitted_on: str = "", maps: Sequence[str] = DEFAULT_MAPS,
    log10_e0: np.ndarray | None = None, kept: MuonCalibration | None = None, muon_energy_classes: int = 1,
    multiplicity: np.ndarray | None = None,
) -> MuonCalibration:
    """The ``maps`` (of :data:`MAPS`) fitted on the generator's (M, 3) and the data's (M, 3) muons
    [GeV, m, m] of the same events (same N): the upper tail of log10 E (``energy``), both tails of
    log10 r (``radius``), and whole-distribution maps of either by primary energy (``energy-by-energy``,
    ``radius-by-energy``; they need ``log10_e0``, (M,) log10(E0 / GeV) of each muon). The maps not
    named are ``kept``'s (the input model's). A map by E0 is fitted on the values its variable's tail
    map (fitted here or kept) puts out, as it is applied; refitting a tail map while keeping the
    map by E0 of the same variable is refused (it was fitted on the old tail map's output). Muons
    on the axis (r = 0) do not enter the radius maps. ``muon_energy_classes`` > 1: the radius map
    by E0 also depends on the muon energy (:func:`fit_by_primary_energy`), classed by the energies
    the energy maps (fitted here or kept) put out. ``energy-by-multiplicity`` fits log10 E by the class
    of the event's N (``multiplicity``, (M,) N of each muon's event) on what the energy maps put out
    (:func:`fit_by_multiplicity`)."""
    check_maps(maps, kept, muon_energy_classes)
    fields = {field: getattr(kept, field) if kept is not None else None for field in _FIELDS.values()}
    if {"energy-by-energy", "radius-by-energy"} & set(maps) and (
            log10_e0 is None or log10_e0.shape != generated.shape[:1] or generated.shape != data.shape):
        raise ValueError("a map by primary energy needs the log10 E0 of each muon and the generator's muons for the "
                         "same events")
    energy_generated, energy_data = np.log10(generated[:, 0]), np.log10(data[:, 0].astype(np.float64))
    radius_generated = np.hypot(generated[:, 1], generated[:, 2])
    radius_data = np.hypot(data[:, 1].astype(np.float64), data[:, 2].astype(np.float64))
    on_generated, on_data = radius_generated > 0, radius_data > 0
    values = {"energy": (energy_generated, energy_data, np.ones_like(on_generated), np.ones_like(on_data), "log10 E"),
              "radius": (np.log10(np.where(on_generated, radius_generated, 1.0)), np.log10(np.where(on_data, radius_data, 1.0)),
                         on_generated, on_data, "log10 r")}
    for variable, (x_generated, x_data, use_generated, use_data, what) in values.items():
        if variable in maps:
            fit = fit_upper_tail if variable == "energy" else fit_both_tails
            fields[_FIELDS[variable]] = fit(x_generated[use_generated], x_data[use_data], what, variable)
        if f"{variable}-by-energy" in maps:
            tail = fields[_FIELDS[variable]]
            after_tail = x_generated if tail is None else tail.apply(torch.from_numpy(x_generated)).numpy()
            classes: dict[str, Any] = {}
            if variable == "radius" and muon_energy_classes > 1:
                energy_maps = MuonCalibration(log10_energy=fields["log10_energy"], log10_energy_by_e0=fields["log10_energy_by_e0"])
                calibrated_energy = energy_maps.map_log10_energy(torch.from_numpy(energy_generated),
                                                                 torch.from_numpy(log10_e0)).numpy()
                classes = {"muon_energy_classes": muon_energy_classes,
                           "generated_log10_energy": calibrated_energy[use_generated],
                           "data_log10_energy": energy_data[use_data]}
            fields[_FIELDS[f"{variable}-by-energy"]] = fit_by_primary_energy(
                after_tail[use_generated], log10_e0[use_generated], x_data[use_data], log10_e0[use_data], what,
                with_minimum=variable == "energy", map_name=f"{variable}-by-energy", **classes)
    if set(_BY_MULTIPLICITY) & set(maps):
        by_e0 = "energy-by-multiplicity-and-energy" in maps
        if multiplicity is None or multiplicity.shape != generated.shape[:1] or generated.shape != data.shape:
            raise ValueError("a map by multiplicity needs the N of each muon's event and the generator's muons for the "
                             "same events")
        energy_maps = MuonCalibration(log10_energy=fields["log10_energy"], log10_energy_by_e0=fields["log10_energy_by_e0"])
        e0 = None if log10_e0 is None else torch.from_numpy(log10_e0)
        if (energy_maps.log10_energy_by_e0 is not None or by_e0) and e0 is None:
            raise ValueError("a map by multiplicity after a map by primary energy, or by E0 itself, needs the log10 E0 "
                             "of each muon")
        after_energy_maps = energy_maps.map_log10_energy(torch.from_numpy(energy_generated), e0).numpy()
        fields["log10_energy_by_n"] = fit_by_multiplicity(after_energy_maps, energy_data, multiplicity, "log10 E",
                                                          log10_e0 if by_e0 else None,
                                                          map_name=next(m for m in _BY_MULTIPLICITY if m in maps))
    new = list(dict.fromkeys(_FIELDS[name] for name in MAPS if name in maps))
    old = [field for field, value in fields.items() if value is not None and field not in new]
    described = fitted_on if not old else (f"{', '.join(new)}: {fitted_on}; {', '.join(old)} kept from the input model "
                                           f"({kept.fitted_on})")
    return MuonCalibration(fitted_on=described, **fields)


def refuse_muons_above_primary(calibrated: np.ndarray, batch: RaggedBatch, data: np.ndarray) -> None:
    """``ValueError`` when the fitted maps send muons above their primary's energy.

    ``calibrated`` (M, 3) [GeV, m, m]: the generator's muons through the new maps for the events of
    ``batch`` with muons, in order; ``data`` (M, 3) the events' own muons. A map is extended
    linearly beyond its outermost knot; fitted on few muons, its last segment can be so steep that
    the extension passes the primary energy, which no reader accepts (``muon_energy_above_primary``).
    """
    with_muons = batch.counts > 0
    above = above_primary_energy(calibrated[:, 0], batch.conditions[with_muons, 0].astype(np.float64),
                                 batch.counts[with_muons])
    if not above.any():
        return
    primary = np.repeat(batch.conditions[with_muons, 0].astype(np.float64), batch.counts[with_muons])
    worst = int(np.argmax(np.where(above, calibrated[:, 0] / primary, 0.0)))
    raise ValueError(
        f"the fitted maps send {int(above.sum())} of {len(calibrated)} muons above their primary's energy (a "
        f"{calibrated[worst, 0]:.3g} GeV muon of a {primary[worst]:.3g} GeV primary; the data's most energetic muon "
        f"has {data[:, 0].max():.3g} GeV): a map extends its outermost segment beyond the few muons it rests on; "
        "calibrate on more data (--data) or fit fewer maps (--maps); no model written")


def tail_counts(muons: np.ndarray) -> dict[str, int]:
    """Muons above each energy threshold and below / above each radius threshold."""
    log10_energy = np.log10(muons[:, 0])
    radius = np.hypot(muons[:, 1], muons[:, 2])
    counts = {f"log10_energy > {t:g}": int(np.sum(log10_energy > t)) for t in ENERGY_THRESHOLDS}
    counts.update({f"radius < {t:g} m": int(np.sum(radius < t)) for t in RADIUS_BELOW_M})
    counts.update({f"radius > {t:g} m": int(np.sum(radius > t)) for t in RADIUS_ABOVE_M})
    return counts


def calibrate(
    model_dir: str | os.PathLike | None, data_paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
    seed: int = 0, maps: Sequence[str] | None = None, muon_energy_classes: int | None = None,
    allow_extrapolation: bool = False,
) -> dict[str, Any]:
    """``mubundle calibrate``: the model in ``model_dir`` (None: the shipped default) with its
    calibration (the ``maps`` of :data:`MAPS`) fitted on the events of ``data_paths``, saved to
    ``out_dir`` with the report :data:`REPORT_NAME`. ``maps`` None: the kinds of maps the input
    model holds, all refitted (:func:`maps_of`; ``energy radius`` for a model without maps). The
    input model's maps that ``maps`` does not name are kept, map by map (:func:`fit_calibration`;
    ``--maps radius-by-energy`` on a model with an energy tail map keeps that map); a refused
    combination (:func:`check_maps`) writes nothing. ``muon_energy_classes``: see
    :func:`fit_by_primary_energy` (radius map by E0 only); None: the input model's
    (:func:`muon_energy_classes_of`) when ``maps`` is None, else 1.

    The data are checked against the model first: files of another observation site are refused
    (:func:`~mubundle.train.multiplicity_fit.check_data_site`), events outside its domain too unless
    ``allow_extrapolation`` (then counted, the report's ``extrapolated_events``, and warned about
    once: :func:`~mubundle.train.multiplicity_fit.check_data_domain`).
    Rejected rows go to ``out_dir/quarantine/calibration.parquet``. CPU.
    """
    from mubundle.errors import OutputRefusedError
    from mubundle.model.shipped import resolve_model_path

    out_dir = Path(out_dir)
    source_dir = resolve_model_path(None if model_dir is None else str(model_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputRefusedError(f"--out {out_dir} is a file; the calibrated model is written as a directory")
    if out_dir.resolve() == source_dir.resolve():
        raise OutputRefusedError(f"--out {out_dir} is the input model {source_dir}; write the calibrated model to "
                                 "another directory")
    model = MuonBundleModel.load(source_dir, device="cpu").eval()
    if muon_energy_classes is None:
        muon_energy_classes = muon_energy_classes_of(model.calibration) if maps is None else 1
    if maps is not None:
        chosen_by = "--maps"
    elif model.calibration is not None and model.calibration.map_names:
        chosen_by = "the kinds of maps the input model holds"
    else:
        chosen_by = "the default for a model without maps"
    maps = tuple(maps) if maps is not None else maps_of(model.calibration)
    if chosen_by != "--maps":
        logger.info("calibrate: fitting %s%s: %s", " ".join(maps),
                    f" (muon-energy classes {muon_energy_classes})" if muon_energy_classes > 1 else "", chosen_by)
    check_maps(maps, model.calibration, muon_energy_classes)  # before anything is written
    check_data_site(model, data_paths, "calibration")
    with directory_lock(out_dir, "mubundle calibrate"):
        batch, data_report = load_valid_events(data_paths, "calibration", out_dir / "quarantine" / "calibration.parquet")
        extrapolated = check_data_domain(model, {"calibration": batch.conditions}, allow_extrapolation)["calibration"]
        data = batch.flat_muons.astype(np.float64)
        generated = generator_muons(model, batch, seed)
        log10_e0 = muon_log10_e0(batch)
        multiplicity = np.repeat(batch.counts, batch.counts).astype(np.int64)
        source = str(model_dir) if model_dir is not None else "shipped default"
        fitted_on = (f"generator muons for the true conditions and N of {data_report['events']} events "
                     f"({len(data)} muons) of {len(data_paths)} path(s), seed {seed}")
        model.calibration = fit_calibration(generated, data, fitted_on, maps, log10_e0, model.calibration,
                                            muon_energy_classes, multiplicity)
        calibrated = model.calibration.apply(torch.from_numpy(generated.copy()), torch.from_numpy(log10_e0),
                                             torch.from_numpy(multiplicity)).numpy()
        refuse_muons_above_primary(calibrated, batch, data)  # before anything is written
        report = {
            "source_model": source, "seed": seed, "maps": list(maps),
            "maps_chosen_by": chosen_by,
            "muon_energy_classes": muon_energy_classes,
            "data": data_report, "muons": len(data), "extrapolated_events": extrapolated,
            "calibration": model.calibration.to_dict(),
            "tail_counts": {"data": tail_counts(data), "generator": tail_counts(generated),
                            "calibrated": tail_counts(calibrated)},
        }
        if {"energy-by-energy", "radius-by-energy", "energy-by-multiplicity-and-energy"} & set(maps):
            report["tail_counts_by_e0"] = {
                f"log10 E0 {low:g}-{high:g}": {name: tail_counts(muons[(log10_e0 >= low) & (log10_e0 < high)])
                                               for name, muons in (("data", data), ("generator", generated),
                                                                   ("calibrated", calibrated))}
                for low, high in e0_bins(log10_e0)}
        if model.domain is not None:
            mapped = {"energy": f"the top {TAIL_PROBABILITY:.0%} of the muon energies",
                      "radius": f"the bottom and top {TAIL_PROBABILITY:.0%} of the radii",
                      "energy-by-energy": f"the muon energies per {E0_BIN_DEX:g} dex of E0 (whole distribution)",
                      "radius-by-energy": f"the radii per {E0_BIN_DEX:g} dex of E0"
                                          + (f" and {muon_energy_classes} classes of muon energy" if muon_energy_classes > 1 else "")
                                          + " (whole distribution)",
                      "energy-by-multiplicity": "the muon energies per class of the event's N (1, 2-3, 4-10; whole distribution)",
                      "energy-by-multiplicity-and-energy": "the muon energies per class of the event's N (1, 2-3, 4-10) and "
                                                           f"per {E0_BIN_DEX:g} dex of E0 (whole distribution)"}
            outside = f"; {extrapolated} events outside this domain (--allow-extrapolation)" if extrapolated else ""
            note = (f"calibration by mubundle calibrate from {source}: {fitted_on}{outside}; "
                    f"{' and '.join(mapped[name] for name in MAPS if name in maps)} mapped onto the data's quantiles")
            model.domain = dataclasses.replace(model.domain, notes=model.domain.notes + (note,))
        model.save(out_dir)
        atomic_write_bytes(out_dir / REPORT_NAME, (json.dumps(report, indent=2) + "\n").encode())
    return report


def calibrate_from_args(args: "argparse.Namespace") -> int:
    """Run ``mubundle calibrate``; prints a JSON summary and returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    report = calibrate(args.model, args.data, args.out, args.seed, args.maps, args.muon_energy_classes,
                       args.allow_extrapolation)
    print(json.dumps({"out": str(args.out), "maps": report["maps"], "maps_chosen_by": report["maps_chosen_by"],
                      "muon_energy_classes": report["muon_energy_classes"], "muons": report["muons"],
                      "extrapolated_events": report["extrapolated_events"], "tail_counts": report["tail_counts"]}))
    return 0
