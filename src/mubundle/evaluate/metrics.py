"""Physics metrics between a reference and a candidate sample, each with its statistical floor.

Plain functions of two :class:`~mubundle.data.batch.RaggedBatch` (jetnet style)::

    from mubundle.evaluate.metrics import compare
    result = compare(reference, candidate)      # {metric: {"model", "floor", "ratio", ...}}

**Floor.** The reference is split at random into two disjoint halves A and B (whole
showers: the depths of one shower stay together, see :func:`split_halves`). For every
metric ``floor = d(A, B)``: the distance two independent samples of the *same* physics show
at this sample size. In the paired case (the candidate was generated with the reference's
own primaries, same order) ``model = d(A, candidate[B])``: the candidate events of the
primaries of half B against half A, so model and floor compare samples of identical size
and identical primaries and differ only in who produced the muons. ``ratio = model / floor``
is ~1 for a perfect generator and >> 1 for a wrong one. Both are averaged over several
random splits (``n_splits``) so the ratio is not at the mercy of one lucky split.
Unpaired candidates are subsampled (whole showers) to about |B| events.

**Distances** (all dimensionless, see docs/evaluation.md):

- ``multiplicity.p_zero``: |P_A(N=0) - P_X(N=0)|
- ``multiplicity.mean`` / ``multiplicity.variance``: |mean_X / mean_A - 1|, |var_X / var_A - 1|
- ``multiplicity.log10_n_plus_1``, ``muon.log10_energy``, ``muon.radius``,
  ``bundle.log10_total_energy``, ``bundle.leading_fraction``, ``bundle.mean_radius``:
  1D Wasserstein-1 distance in units of the standard deviation of half A
- ``muon.energy_radius_correlation``: |rho_A - rho_X|, Spearman rank correlation of
  (muon energy, radius) over all muons
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mubundle.data.batch import RaggedBatch
from mubundle.evaluate.distances import (
    NotAvailable,
    absolute_difference,
    relative_difference,
    require_size,
    spearman,
    standardised_wasserstein,
)
from mubundle.evaluate.features import event_observables, muon_observables

#: Minimum events (per half) and muons (per half) for a distance to be computed.
MIN_EVENTS = 20
MIN_MUONS = 20


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is defined, for the report: ``title``, ``distance`` (what number is
    reported), ``observable`` (with units)."""

    title: str
    distance: str
    observable: str


METRICS: dict[str, MetricInfo] = {
    "multiplicity.p_zero": MetricInfo("P(N = 0)", "absolute difference of probabilities", "N = 0 fraction"),
    "multiplicity.mean": MetricInfo("mean multiplicity", "|mean ratio - 1|", "N (muons per event)"),
    "multiplicity.variance": MetricInfo("multiplicity variance", "|variance ratio - 1|", "N (muons per event)"),
    "multiplicity.log10_n_plus_1": MetricInfo("multiplicity distribution", "W1 / sigma_ref", "log10(N + 1)"),
    "muon.log10_energy": MetricInfo("muon energy", "W1 / sigma_ref", "log10(E_mu / GeV), all muons"),
    "muon.radius": MetricInfo("muon lateral distance", "W1 / sigma_ref", "r = sqrt(x^2 + y^2) [m], all muons"),
    "muon.energy_radius_correlation": MetricInfo(
        "energy-radius correlation", "|difference of Spearman rho|", "rank correlation of (E_mu, r) over all muons"
    ),
    "bundle.log10_total_energy": MetricInfo("bundle energy", "W1 / sigma_ref", "log10(sum E_mu / GeV), N >= 1"),
    "bundle.leading_fraction": MetricInfo("leading-muon fraction", "W1 / sigma_ref", "max E_mu / sum E_mu, N >= 1"),
    "bundle.mean_radius": MetricInfo("bundle mean radius", "W1 / sigma_ref", "mean r of the bundle [m], N >= 1"),
}


@dataclass(frozen=True)
class _Sample:
    """The observables of one sample that the distances need (float64)."""

    multiplicity: np.ndarray
    log10_n_plus_1: np.ndarray
    muon_log10_energy: np.ndarray
    muon_radius: np.ndarray
    log10_total_energy: np.ndarray  # events with N >= 1 only
    leading_fraction: np.ndarray
    mean_radius: np.ndarray


def _observe(batch: RaggedBatch) -> _Sample:
    events = event_observables(batch)
    muons = muon_observables(batch)
    has_muons = events.multiplicity > 0
    return _Sample(
        events.multiplicity,
        events.log10_n_plus_1,
        muons.log10_energy,
        muons.radius,
        np.log10(events.total_energy[has_muons]),
        events.leading_fraction[has_muons],
        events.mean_radius[has_muons],
    )


def _wasserstein(field: str, what: str, minimum: int) -> Callable[[_Sample, _Sample], float]:
    def distance(reference: _Sample, other: _Sample) -> float:
        first, second = getattr(reference, field), getattr(other, field)
        require_size(first, minimum, what)
        require_size(second, minimum, what)
        return standardised_wasserstein(first, second, float(np.std(first)))

    return distance


def _p_zero(reference: _Sample, other: _Sample) -> float:
    require_size(reference.multiplicity, MIN_EVENTS, "events")
    require_size(other.multiplicity, MIN_EVENTS, "events")
    return absolute_difference(np.mean(reference.multiplicity == 0), np.mean(other.multiplicity == 0))


def _mean(reference: _Sample, other: _Sample) -> float:
    require_size(reference.multiplicity, MIN_EVENTS, "events")
    require_size(other.multiplicity, MIN_EVENTS, "events")
    return relative_difference(np.mean(reference.multiplicity), np.mean(other.multiplicity), "mean multiplicity")


def _variance(reference: _Sample, other: _Sample) -> float:
    require_size(reference.multiplicity, MIN_EVENTS, "events")
    require_size(other.multiplicity, MIN_EVENTS, "events")
    return relative_difference(np.var(reference.multiplicity), np.var(other.multiplicity), "multiplicity variance")


def _correlation(reference: _Sample, other: _Sample) -> float:
    require_size(reference.muon_radius, MIN_MUONS, "muons")
    require_size(other.muon_radius, MIN_MUONS, "muons")
    rho_reference = spearman(reference.muon_log10_energy, reference.muon_radius)
    rho_other = spearman(other.muon_log10_energy, other.muon_radius)
    return absolute_difference(rho_reference, rho_other)


_DISTANCES: dict[str, Callable[[_Sample, _Sample], float]] = {
    "multiplicity.p_zero": _p_zero,
    "multiplicity.mean": _mean,
    "multiplicity.variance": _variance,
    "multiplicity.log10_n_plus_1": _wasserstein("log10_n_plus_1", "events", MIN_EVENTS),
    "muon.log10_energy": _wasserstein("muon_log10_energy", "muons", MIN_MUONS),
    "muon.radius": _wasserstein("muon_radius", "muons", MIN_MUONS),
    "muon.energy_radius_correlation": _correlation,
    "bundle.log10_total_energy": _wasserstein("log10_total_energy", "events with muons", MIN_EVENTS),
    "bundle.leading_fraction": _wasserstein("leading_fraction", "events with muons", MIN_EVENTS),
    "bundle.mean_radius": _wasserstein("mean_radius", "events with muons", MIN_EVENTS),
}


def distances(reference: RaggedBatch | _Sample, other: RaggedBatch) -> dict[str, float | NotAvailable]:
    """Every metric's distance d(reference, other); a :class:`NotAvailable` where undefined.

    ``reference`` sets the scales (sigma_ref) and the denominators of the relative metrics
    (its observables may be passed precomputed).
    """
    first = reference if isinstance(reference, _Sample) else _observe(reference)
    second = _observe(other)
    result: dict[str, float | NotAvailable] = {}
    for name, distance in _DISTANCES.items():
        try:
            result[name] = distance(first, second)
        except NotAvailable as reason:
            result[name] = reason
    return result


def shower_ids(conditions: np.ndarray) -> np.ndarray:
    """(B,) int64 id of the air shower of each event: events with the same primary energy,
    zenith and mass are one shower observed at several depths (PHYSICS.md)."""
    if len(conditions) == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse = np.unique(np.asarray(conditions)[:, :3], axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def take_showers(conditions: np.ndarray, n_events: int, seed: int, showers: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of whole showers, taken in a random order until ``n_events`` events
    (at least; the last shower is taken whole) -- a random subsample that never cuts a shower.
    ``showers``: precomputed ``shower_ids(conditions)``."""
    showers = shower_ids(conditions) if showers is None else showers
    if len(showers) == 0 or n_events <= 0:
        return np.zeros(0, np.int64)
    order = np.random.default_rng(seed).permutation(int(showers.max()) + 1)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    events_by_rank = np.bincount(rank[showers], minlength=len(order))
    n_showers = int(np.searchsorted(np.cumsum(events_by_rank), n_events, side="left")) + 1
    return np.flatnonzero(rank[showers] < n_showers)


def split_halves(conditions: np.ndarray, seed: int, showers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random disjoint halves (A, B) of the events, each sorted, splitting whole showers.

    The depths of one shower share its muons (correlated), so they must fall in the same
    half: otherwise A and B would share showers and the floor would be too small.
    """
    n_events = len(conditions)
    half_a = take_showers(conditions, n_events // 2, seed, showers)
    in_a = np.zeros(n_events, dtype=bool)
    in_a[half_a] = True
    return half_a, np.flatnonzero(~in_a)


def is_paired(reference: RaggedBatch, candidate: RaggedBatch) -> bool:
    """True when ``candidate`` was generated with the reference's primaries in the same order."""
    return len(reference) == len(candidate) and np.array_equal(reference.conditions, candidate.conditions)


def metric_entry(model: float | NotAvailable, floor: float | NotAvailable) -> dict[str, object]:
    """``{"model", "floor", "ratio"}`` plus ``"reason"`` when something is not available."""
    entry: dict[str, object] = {"model": None, "floor": None, "ratio": None}
    reasons = []
    if isinstance(model, NotAvailable):
        reasons.append(f"model: {model}")
    else:
        entry["model"] = float(model)
    if isinstance(floor, NotAvailable):
        reasons.append(f"floor: {floor}")
    else:
        entry["floor"] = float(floor)
    if entry["model"] is not None and entry["floor"] is not None:
        if entry["floor"] > 0:
            entry["ratio"] = entry["model"] / entry["floor"]
        else:
            reasons.append("floor is 0 (the two reference halves agree exactly), ratio undefined")
    if reasons:
        entry["reason"] = "; ".join(reasons)
    return entry


def _mean_distance(values: list[float | NotAvailable]) -> float | NotAvailable:
    """Mean over the splits; n/a (with the first reason) if any split is n/a."""
    for value in values:
        if isinstance(value, NotAvailable):
            return value
    return float(np.mean(values))


def compare(
    reference: RaggedBatch,
    candidate: RaggedBatch,
    seed: int = 0,
    n_splits: int = 8,
    classifier: bool = False,
    classifier_max_events: int = 20_000,
) -> dict[str, dict[str, object]]:
    """All metrics of ``candidate`` against ``reference``, each ``{"model", "floor", "ratio"}``
    (+ ``"reason"`` when n/a); see the module docstring for the definitions.

    ``model`` and ``floor`` are means over ``n_splits`` random half splits (A_k, B_k):
    one split's floor fluctuates by tens of percent (and can be ~0 by chance for the
    scalar metrics), the mean over several splits is a stable estimate of the
    expected distance. ``floor_std`` is the spread of the floor over the splits.

    ``classifier=True`` adds ``"classifier.auc"`` (first split only, it is costly):
    cross-validated ROC AUC of gradient-boosted trees separating reference half A from
    the candidate (model) and from reference half B (floor); 0.5 = indistinguishable.
    """
    paired = is_paired(reference, candidate)
    reference_showers = shower_ids(reference.conditions)
    candidate_showers = None if paired else shower_ids(candidate.conditions)
    model_runs: list[dict[str, float | NotAvailable]] = []
    floor_runs: list[dict[str, float | NotAvailable]] = []
    first_split: tuple[RaggedBatch, RaggedBatch, RaggedBatch] | None = None
    for split in range(n_splits):
        half_a, half_b = split_halves(reference.conditions, seed + split, reference_showers)
        reference_a, reference_b = reference.take(half_a), reference.take(half_b)
        if paired:
            candidate_b = candidate.take(half_b)
        else:
            pick = take_showers(candidate.conditions, min(len(candidate), len(half_b)), seed + split, candidate_showers)
            candidate_b = candidate.take(pick)
        observed_a = _observe(reference_a)
        model_runs.append(distances(observed_a, candidate_b))
        floor_runs.append(distances(observed_a, reference_b))
        if first_split is None:
            first_split = (reference_a, reference_b, candidate_b)
    assert first_split is not None, "n_splits must be >= 1"
    reference_a, reference_b, candidate_b = first_split
    result = {}
    for name in _DISTANCES:
        entry = metric_entry(_mean_distance([run[name] for run in model_runs]), _mean_distance([run[name] for run in floor_runs]))
        floors = [run[name] for run in floor_runs if not isinstance(run[name], NotAvailable)]
        entry["floor_std"] = float(np.std(floors)) if len(floors) == len(floor_runs) else None
        entry["n_events"] = [len(reference_a), len(candidate_b)]
        result[name] = entry
    if classifier:
        from mubundle.evaluate.classifier import two_sample_auc

        model_auc = two_sample_auc(reference_a, candidate_b, seed=seed, max_events=classifier_max_events)
        floor_auc = two_sample_auc(reference_a, reference_b, seed=seed, max_events=classifier_max_events)
        entry = metric_entry(model_auc.auc, floor_auc.auc)
        entry.update(model_std=model_auc.std, floor_std=floor_auc.std, n_events=[len(reference_a), len(candidate_b)])
        result["classifier.auc"] = entry
    return result
