"""Tails: rates of rare event and muon classes with Poisson intervals, and per-muon log W1.

The averaged distances of :mod:`mubundle.evaluate.metrics` and the event classifier barely see
a class that holds 0.02 % of the muons, yet bright, energetic bundles are the background that
matters most to a high-energy analysis. For each class (:data:`TAIL_CLASSES`) this module
counts k members among n events (per-event classes) or n muons (per-muon classes), for the
reference and the model, overall and per E0 bin:

- **rate** k / n with the exact central Poisson (Garwood) interval of k:
  ``[chi2.ppf(a/2, 2k) / 2, chi2.ppf(1 - a/2, 2k + 2) / 2] / n``, a = 1 - CL
  (F. Garwood, Biometrika 28 (1936) 437; Particle Data Group, Review of Particle Physics,
  chapter "Statistics", Poisson confidence intervals);
- **ratio** model rate / reference rate with the exact conditional interval: given
  K = k_model + k_reference, k_model is binomial with p = R n_m / (R n_m + n_r); the
  Clopper-Pearson interval of p (C. J. Clopper, E. S. Pearson, Biometrika 26 (1934) 404)
  maps to R = p / (1 - p) x n_r / n_m;
- **flag**: with >= :data:`MIN_COUNTS_FOR_FRACTION` reference counts the ratio must lie within
  1 +- :data:`MAX_RELATIVE_DEVIATION`; with fewer, 1 must lie inside the 2-sigma
  (95.45 %) interval of the ratio.

The Poisson intervals treat events and muons as independent. They are not: the muons of one
bundle are correlated (a large bundle brings many far-out muons at once), and a reference shower
seen at several depths repeats its bright muons in each of those events. So every rate also gets
its **relative error by shower**: the standard error of the ratio estimator k / n = sum_c k_c /
sum_c n_c over whole showers c (events of one primary energy, zenith and mass,
:func:`~mubundle.evaluate.metrics.shower_ids`), sqrt(C / (C - 1) sum_c (k_c - rate n_c)^2) / k
(W. G. Cochran, Sampling Techniques, 3rd ed., Wiley 1977, chapter 6, the ratio estimator's
linearised variance), and ``effective_count`` = 1 / that^2, the Poisson count with the same
relative error; the ratio gets sqrt(model^2 + reference^2) of them. They inform, the flag does
not use them.

Plus the per-muon Wasserstein-1 distances of log10(E_mu / GeV) and log10(r / m), in dex
(not standardised), each with its statistical floor the way every metric has one: the
distance between two disjoint halves of whole showers of the reference, averaged over
splits (:func:`~mubundle.evaluate.metrics.split_halves`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import math

import numpy as np
from scipy import stats

from mubundle.data.batch import RaggedBatch
from mubundle.evaluate.binning import bins_for
from mubundle.data.schema import MU_ENERGY
from mubundle.evaluate.features import muon_observables
from mubundle.evaluate.metrics import is_paired, shower_ids, split_halves, take_showers

#: Central confidence level of the reported intervals (one Gaussian sigma).
CONFIDENCE_LEVEL = 0.6827
#: Confidence level of the flag's test when the reference has few counts (two sigma).
FLAG_CONFIDENCE_LEVEL = 0.9545
#: Reference counts from which the flag asks for agreement within +-MAX_RELATIVE_DEVIATION.
MIN_COUNTS_FOR_FRACTION = 100
MAX_RELATIVE_DEVIATION = 0.20
#: Muons at r = 0 have no log10 r; fewer than this many per half -> the W1 is n/a.
MIN_MUONS = 20


@dataclass(frozen=True)
class TailClass:
    """A rare class: ``per`` is "event" or "muon" (the denominator of its rate)."""

    name: str
    title: str
    per: str
    select: Callable[[RaggedBatch], np.ndarray]  # batch -> (B,) or (M,) bool


def _bundle_energy_gev(batch: RaggedBatch) -> np.ndarray:
    """(B,) summed muon energy per event [GeV] (0 for events without muons)."""
    energy = batch.flat_muons[:, MU_ENERGY].astype(np.float64)
    return np.bincount(batch.event_index, weights=energy, minlength=len(batch))


TAIL_CLASSES: tuple[TailClass, ...] = (
    TailClass("events.n_ge_50", "N >= 50", "event", lambda b: b.counts >= 50),
    TailClass("events.n_ge_200", "N >= 200", "event", lambda b: b.counts >= 200),
    TailClass("events.bundle_energy_gt_100tev", "bundle energy > 100 TeV", "event",
              lambda b: _bundle_energy_gev(b) > 1e5),
    TailClass("muons.energy_gt_10tev", "E_mu > 10 TeV", "muon", lambda b: muon_observables(b).log10_energy > 4.0),
    TailClass("muons.energy_gt_30tev", "E_mu > 30 TeV", "muon",
              lambda b: muon_observables(b).log10_energy > np.log10(3e4)),
    TailClass("muons.radius_gt_75m", "r > 75 m", "muon", lambda b: muon_observables(b).radius > 75.0),
    TailClass("muons.radius_lt_1m", "r < 1 m", "muon", lambda b: muon_observables(b).radius < 1.0),
)


# ---------------------------------------------------------------------------- intervals
def garwood_interval(count: int, confidence_level: float = CONFIDENCE_LEVEL) -> tuple[float, float]:
    """Exact central confidence interval of a Poisson mean given ``count`` observed events
    (Garwood 1936): (low, high) in counts; low = 0 for count 0."""
    if count < 0:
        raise ValueError(f"a count must be >= 0, got {count}")
    alpha = 1.0 - confidence_level
    low = 0.0 if count == 0 else float(stats.chi2.ppf(alpha / 2, 2 * count)) / 2
    high = float(stats.chi2.ppf(1 - alpha / 2, 2 * count + 2)) / 2
    return low, high


def poisson_ratio_interval(
    count_model: int, total_model: int, count_reference: int, total_reference: int,
    confidence_level: float = CONFIDENCE_LEVEL,
) -> tuple[float, float] | None:
    """Exact interval of (rate_model / rate_reference) for Poisson counts with exposures
    ``total_*`` (conditional binomial + Clopper-Pearson); None when both counts are 0.
    The upper end is ``inf`` when the reference count is 0."""
    total = count_model + count_reference
    if total == 0:
        return None
    alpha = 1.0 - confidence_level
    p_low = 0.0 if count_model == 0 else float(stats.beta.ppf(alpha / 2, count_model, count_reference + 1))
    p_high = 1.0 if count_reference == 0 else float(stats.beta.ppf(1 - alpha / 2, count_model + 1, count_reference))
    exposure = total_reference / total_model

    def ratio(p: float) -> float:
        return float("inf") if p >= 1.0 else p / (1.0 - p) * exposure

    return ratio(p_low), ratio(p_high)


def rate_entry(count: int, total: int) -> dict[str, Any]:
    """``{"count", "total", "rate", "low", "high"}``: rate = count / total with its Garwood interval."""
    if total <= 0:
        return {"count": int(count), "total": int(total), "rate": None, "low": None, "high": None}
    low, high = garwood_interval(int(count))
    return {"count": int(count), "total": int(total), "rate": count / total, "low": low / total, "high": high / total}


def compare_rates(count_model: int, total_model: int, count_reference: int, total_reference: int) -> dict[str, Any]:
    """The ratio model / reference with its interval and the flag (module docstring)."""
    result: dict[str, Any] = {"value": None, "low": None, "high": None, "flag": False, "rule": None}
    if total_model <= 0 or total_reference <= 0:
        result["rule"] = "no events"
        return result
    interval = poisson_ratio_interval(count_model, total_model, count_reference, total_reference)
    if interval is None:
        result["rule"] = "no counts in either sample"
        return result
    result["low"], result["high"] = interval
    if count_reference > 0:
        result["value"] = (count_model / total_model) / (count_reference / total_reference)
    if count_reference >= MIN_COUNTS_FOR_FRACTION:
        result["rule"] = f"ratio within 1 +- {MAX_RELATIVE_DEVIATION:g}"
        result["flag"] = not abs(result["value"] - 1.0) <= MAX_RELATIVE_DEVIATION
    else:
        low, high = poisson_ratio_interval(
            count_model, total_model, count_reference, total_reference, FLAG_CONFIDENCE_LEVEL
        )  # type: ignore[misc]
        result["rule"] = "1 inside the 2-sigma ratio interval"
        result["interval_2sigma"] = [low, _finite_or_none(high)]
        result["flag"] = not low <= 1.0 <= high
    result["high"] = _finite_or_none(result["high"])  # JSON has no infinity: None = unbounded
    return result


def _finite_or_none(value: float) -> float | None:
    return None if math.isinf(value) else value


# ---------------------------------------------------------------------------- rates
def _selections(batch: RaggedBatch) -> dict[str, np.ndarray]:
    """Every class's selected units of ``batch``: (B,) or (M,) bool."""
    return {tail.name: tail.select(batch) for tail in TAIL_CLASSES}


def class_counts(batch: RaggedBatch, selections: dict[str, np.ndarray] | None = None) -> dict[str, tuple[int, int]]:
    """Every class's (count, total): total = events or muons of ``batch`` (``selections``: those of
    :func:`_selections`, if already made)."""
    selections = _selections(batch) if selections is None else selections
    return {tail.name: (int(np.count_nonzero(selections[tail.name])),
                        int(len(batch) if tail.per == "event" else batch.n_muons))
            for tail in TAIL_CLASSES}


def relative_error_by_cluster(selected: np.ndarray, clusters: np.ndarray) -> float | None:
    """Relative standard error of the rate k / n of ``selected`` (U,) bool units (events or muons)
    that come in correlated ``clusters`` (U,) int ids >= 0: sqrt(C / (C - 1) sum_c (k_c - rate n_c)^2) / k
    over the C clusters with units (module docstring). None when k = 0 or C < 2."""
    count = int(np.count_nonzero(selected))
    if count == 0:
        return None
    sizes = np.bincount(clusters)
    n_clusters = int(np.count_nonzero(sizes))
    if n_clusters < 2:
        return None
    residual = np.bincount(clusters, weights=selected.astype(np.float64), minlength=len(sizes))
    residual -= count / len(selected) * sizes
    return math.sqrt(n_clusters / (n_clusters - 1) * float(np.dot(residual, residual))) / count


def class_errors_by_shower(batch: RaggedBatch, selections: dict[str, np.ndarray] | None = None) -> dict[str, float | None]:
    """Every class's :func:`relative_error_by_cluster`, events and muons clustered by shower
    (``selections`` as for :func:`class_counts`)."""
    selections = _selections(batch) if selections is None else selections
    showers = shower_ids(batch.conditions)
    muon_showers = showers[batch.event_index]
    return {tail.name: relative_error_by_cluster(selections[tail.name], showers if tail.per == "event" else muon_showers)
            for tail in TAIL_CLASSES}


def tail_rates(reference: RaggedBatch, candidate: RaggedBatch) -> dict[str, dict[str, Any]]:
    """Per class: reference and model rates with intervals and errors by shower, the ratio, the flag."""
    reference_selections, model_selections = _selections(reference), _selections(candidate)
    reference_counts, model_counts = class_counts(reference, reference_selections), class_counts(candidate, model_selections)
    reference_errors = class_errors_by_shower(reference, reference_selections)
    model_errors = class_errors_by_shower(candidate, model_selections)
    result = {}
    for tail in TAIL_CLASSES:
        (k_r, n_r), (k_m, n_m) = reference_counts[tail.name], model_counts[tail.name]
        entries = {"reference": rate_entry(k_r, n_r), "model": rate_entry(k_m, n_m)}
        for side, errors in (("reference", reference_errors), ("model", model_errors)):
            error = errors[tail.name]
            entries[side]["relative_error_by_shower"] = error
            # no error (every unit of every cluster in the class): no finite effective count
            entries[side]["effective_count"] = 1.0 / error**2 if error else None
        ratio = compare_rates(k_m, n_m, k_r, n_r)
        both = (reference_errors[tail.name], model_errors[tail.name])
        ratio["relative_error_by_shower"] = None if None in both else math.hypot(*both)
        result[tail.name] = {"per": tail.per, **entries, "ratio": ratio}
    return result


# ---------------------------------------------------------------------------- log W1 with floors
def _log_values(batch: RaggedBatch) -> dict[str, np.ndarray]:
    muons = muon_observables(batch)
    radius = muons.radius[muons.radius > 0]  # log10 of r = 0 (a muon on the axis) is undefined
    return {"muon.log10_energy_dex": muons.log10_energy, "muon.log10_radius_dex": np.log10(radius)}


def log_w1(reference: RaggedBatch, candidate: RaggedBatch, seed: int = 0, n_splits: int = 4) -> dict[str, dict[str, Any]]:
    """W1 of log10(E_mu / GeV) and of log10(r / m) [dex] between reference half A and the model
    (the events of half B's primaries when paired), with the floor W1(A, B); means over
    ``n_splits`` splits of whole showers, ``floor_std`` their spread, ``ratio`` = model / floor."""
    paired = is_paired(reference, candidate)
    reference_showers = shower_ids(reference.conditions)
    candidate_showers = None if paired else shower_ids(candidate.conditions)
    runs: dict[str, dict[str, list[float]]] = {}
    reason = None
    for split in range(n_splits):
        half_a, half_b = split_halves(reference.conditions, seed + split, reference_showers)
        if paired:
            candidate_b = candidate.take(half_b)
        else:
            pick = take_showers(candidate.conditions, min(len(candidate), len(half_b)), seed + split, candidate_showers)
            candidate_b = candidate.take(pick)
        values_a, values_b = _log_values(reference.take(half_a)), _log_values(reference.take(half_b))
        values_model = _log_values(candidate_b)
        for name in values_a:
            sizes = (len(values_a[name]), len(values_b[name]), len(values_model[name]))
            if min(sizes) < MIN_MUONS:
                reason = f"too few muons ({min(sizes)} < {MIN_MUONS})"
                continue
            entry = runs.setdefault(name, {"model": [], "floor": []})
            entry["model"].append(float(stats.wasserstein_distance(values_a[name], values_model[name])))
            entry["floor"].append(float(stats.wasserstein_distance(values_a[name], values_b[name])))
    result = {}
    for name in ("muon.log10_energy_dex", "muon.log10_radius_dex"):
        entry = runs.get(name)
        if entry is None or len(entry["model"]) < n_splits:
            result[name] = {"model": None, "floor": None, "ratio": None, "reason": reason or "n/a"}
            continue
        model, floor = float(np.mean(entry["model"])), float(np.mean(entry["floor"]))
        result[name] = {"model": model, "floor": floor, "floor_std": float(np.std(entry["floor"])),
                        "ratio": model / floor if floor > 0 else None}
    return result


# ---------------------------------------------------------------------------- the report
def tail_report(reference: RaggedBatch, candidate: RaggedBatch, seed: int = 0) -> dict[str, Any]:
    """Rates, ratios, flags and log W1 overall and per E0 bin (the ``tails`` of metrics.json)."""
    paired = is_paired(reference, candidate)
    bins = []
    flagged = []
    overall = {"rates": tail_rates(reference, candidate), "log_w1": log_w1(reference, candidate, seed)}
    flagged += [f"all events: {name}" for name, entry in overall["rates"].items() if entry["ratio"]["flag"]]
    for condition_bin in bins_for("energy", reference.conditions):
        reference_index = np.flatnonzero(condition_bin.mask(reference.conditions))
        candidate_index = reference_index if paired else np.flatnonzero(condition_bin.mask(candidate.conditions))
        reference_part, candidate_part = reference.take(reference_index), candidate.take(candidate_index)
        rates = tail_rates(reference_part, candidate_part)
        flagged += [f"{condition_bin.label}: {name}" for name, entry in rates.items() if entry["ratio"]["flag"]]
        bins.append(dict(condition_bin.to_dict(), n_reference=len(reference_index), n_candidate=len(candidate_index),
                         rates=rates, log_w1=log_w1(reference_part, candidate_part, seed)))
    return {
        "confidence_level": CONFIDENCE_LEVEL,
        "flag_rule": (f">= {MIN_COUNTS_FOR_FRACTION} reference counts: ratio outside 1 +- {MAX_RELATIVE_DEVIATION:g}; "
                      "fewer: 1 outside the 2-sigma (95.45 %) interval of the ratio"),
        "definitions": {tail.name: {"title": tail.title, "per": tail.per} for tail in TAIL_CLASSES},
        "overall": overall,
        "energy_bins": bins,
        "flagged": flagged,
    }


def format_tail_table(tails: dict[str, Any]) -> str:
    """The overall tail rates and log W1 as a plain-text table (printed by ``mubundle evaluate``)."""
    lines = [f"tails (all events; {tails['confidence_level']:.1%} Poisson intervals; flag: {tails['flag_rule']})",
             f"{'class':<26}{'per':<7}{'reference k/n = rate':>30}{'model k/n = rate':>30}{'ratio [interval]':>26}"
             f"{'by shower':>11}  flag"]
    for name, entry in tails["overall"]["rates"].items():
        cells = []
        for side in ("reference", "model"):
            rate = entry[side]
            cells.append(f"{rate['count']}/{rate['total']} = {rate['rate']:.3g}" if rate["rate"] is not None else "n/a")
        ratio = entry["ratio"]
        if ratio["low"] is None:
            ratio_text = "n/a"
        else:
            value = "n/a" if ratio["value"] is None else f"{ratio['value']:.2f}"
            high = "inf" if ratio["high"] is None else f"{ratio['high']:.2f}"
            ratio_text = f"{value} [{ratio['low']:.2f}, {high}]"
        title = tails["definitions"][name]["title"]
        by_shower = ratio.get("relative_error_by_shower")
        by_shower_text = "n/a" if by_shower is None else f"+-{by_shower:.0%}"
        lines.append(f"{title:<26}{entry['per']:<7}{cells[0]:>30}{cells[1]:>30}{ratio_text:>26}{by_shower_text:>11}  "
                     f"{'FLAG' if ratio['flag'] else ''}")
    for name, entry in tails["overall"]["log_w1"].items():
        if entry["ratio"] is None:
            lines.append(f"W1 {name}: n/a ({entry.get('reason', '')})")
        else:
            lines.append(f"W1 {name}: model {entry['model']:.4g} dex, floor {entry['floor']:.4g} dex, "
                         f"ratio {entry['ratio']:.2f}")
    return "\n".join(lines)
