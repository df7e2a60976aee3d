"""Calibration of the multiplicity model P(N | conditions): randomised PIT on the reference.

The samples comparison (:mod:`mubundle.evaluate.metrics`) asks whether generated bundles look
like the reference; this module asks a sharper question of the multiplicity model alone:
is the predicted distribution P(N | E0, A, zenith, depth) right *event by event*? For every
reference event with true multiplicity N the randomised probability integral transform

    u = F(N - 1) + V * (F(N) - F(N - 1)),   F(n) = P_model(N <= n | conditions), V ~ U(0, 1)

is uniform on [0, 1] if and only if the model's conditional distribution is the true one
(Brockwell 2007, Czado, Gneiting & Held 2009, Biometrics 65, 1254: the randomisation makes
the PIT of a discrete variable exactly uniform). F(-1) = 0, so an event with N = 0 gets
u uniform in [0, F(0)]. Departures read as: U-shape = predicted distribution too narrow,
hump = too wide, slope / mean(u) != 0.5 = biased (mean u > 0.5: the model predicts too few
muons).

Reported (overall and in the same condition bins as the rest of the report):

- ``ks``: Kolmogorov-Smirnov distance of the PIT values from U(0, 1) (``scipy.stats.ks_1samp``)
  as ``{"model", "floor", "ratio"}``. ``floor`` is the mean KS distance of ``n`` independent
  U(0, 1) values (``FLOOR_REPEATS`` seeded draws): what a perfectly calibrated model scores at
  this sample size if the events were independent. They are not: the simulator writes several
  depths per shower, whose N are correlated, so the true floor is somewhat larger.
  ``floor_correlated`` brackets it from above: the same with one uniform per shower shared
  by all its events (depths fully correlated).
- ``coverage_50`` / ``coverage_90``: fraction of events whose true N lies in the model's
  central 50 % / 90 % predicted interval, computed from the randomised PIT as the fraction
  with u in [0.25, 0.75] / [0.05, 0.95] (expected exactly 0.50 / 0.90 when calibrated; the
  randomisation splits the probability of the interval's boundary values of N, so there is no
  rounding bias from the discreteness of N).
- ``mean_pit``: mean of u (0.5 when calibrated), with its standard error.
- ``histogram``: the PIT histogram (``n_bins`` equal bins) with the flat expectation and its
  binomial standard deviation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import stats

from mubundle.data.batch import RaggedBatch
from mubundle.evaluate.binning import SLANT, VARIABLES, DepthBinning, bins_for
from mubundle.evaluate.distances import NotAvailable
from mubundle.evaluate.metrics import MIN_EVENTS, metric_entry, shower_ids

if TYPE_CHECKING:
    from mubundle.model.bundle import MuonBundleModel

#: Events per ``count_cdf`` call: bounds the memory of the (chunk, K) mixture arrays.
CDF_CHUNK_EVENTS = 65_536
#: Independent uniform samples averaged for the KS floor.
FLOOR_REPEATS = 20
#: Central predicted intervals: name -> (lower PIT, upper PIT, expected coverage).
CENTRAL_INTERVALS = {"coverage_50": (0.25, 0.75, 0.50), "coverage_90": (0.05, 0.95, 0.90)}
#: Salt of the PIT's uniforms: ``default_rng([seed, PIT_STREAM])``. With ``default_rng(seed)``
#: itself, reference primaries drawn from that common stream (e.g. ``default_rng(0)`` and the
#: default ``--seed 0``) got each event's V equal to the uniform that set its energy: the PIT
#: of a calibrated model read 8x its KS floor (found in ``mubundle demo``; 2026-11-26).
PIT_STREAM = 0x9117
#: A cdf beyond [0, 1] by more than this is a model bug, not rounding: the mixture weights come
#: from a float32 log-softmax, so they sum to 1 only within a few float32 ulps (~1e-7).
_CDF_ROUNDING_TOLERANCE = 1e-5


def randomised_pit(
    model: "MuonBundleModel", conditions: np.ndarray, counts: np.ndarray, seed: int = 0,
    chunk_events: int = CDF_CHUNK_EVENTS,
) -> np.ndarray:
    """Randomised PIT of the true multiplicities under the model.

    ``conditions``: (B, 4) physical [GeV, rad, A, km]; ``counts``: (B,) true N.
    Returns (B,) float64 u = F(N-1) + V (F(N) - F(N-1)), V ~ U(0,1) from
    ``np.random.default_rng([seed, PIT_STREAM])``; NaN where the model's cdf is not finite (counted by the
    caller, never hidden). The cdf is evaluated in chunks of ``chunk_events`` events.
    Raises ``ValueError`` when the model's cdf leaves [0, 1] by more than float rounding.
    """
    conditions = np.ascontiguousarray(conditions, dtype=np.float32)
    counts = np.asarray(counts, dtype=np.int64)
    if conditions.ndim != 2 or conditions.shape[1] != 4 or len(conditions) != len(counts):
        raise ValueError(f"conditions must be (B, 4) and counts (B,), got {conditions.shape} and {counts.shape}")
    upper = np.empty(len(counts), dtype=np.float64)
    lower = np.empty(len(counts), dtype=np.float64)
    for start in range(0, len(counts), max(1, int(chunk_events))):
        stop = start + chunk_events
        chunk_conditions = torch.from_numpy(conditions[start:stop])
        chunk_counts = torch.from_numpy(counts[start:stop])
        upper[start:stop] = model.count_cdf(chunk_conditions, chunk_counts).cpu().numpy()
        lower[start:stop] = model.count_cdf(chunk_conditions, chunk_counts - 1).cpu().numpy()
    finite = np.isfinite(upper) & np.isfinite(lower)
    outside = finite & ((np.minimum(lower, upper) < -_CDF_ROUNDING_TOLERANCE) | (np.maximum(lower, upper) > 1 + _CDF_ROUNDING_TOLERANCE))
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"model cdf outside [0, 1] for {int(outside.sum())} events (first: event {first}, N = {counts[first]}, "
            f"F(N-1) = {lower[first]!r}, F(N) = {upper[first]!r})"
        )
    # float32 mixture weights sum to 1 only within ~1e-7: F(N) can be 1 + 4e-8 in the far tail
    lower, upper = np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)
    uniform = np.random.default_rng([seed, PIT_STREAM]).random(len(counts))
    return np.where(finite, lower + uniform * (upper - lower), np.nan)


def ks_distance_from_uniform(pit: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance sup |F_pit(u) - u| of (n,) values in [0, 1] from U(0, 1)."""
    return float(stats.ks_1samp(pit, stats.uniform.cdf).statistic)


def uniform_ks_floor(groups: np.ndarray, seed: int, n_repeats: int = FLOOR_REPEATS) -> float:
    """Mean KS distance from U(0, 1) of ``len(groups)`` uniform values whose events with equal
    ``groups`` id (int, (n,)) share one value: the distance a calibrated model shows by chance.

    ``groups = np.arange(n)`` gives the independent-events floor; shower ids give the floor
    for fully correlated depths of one shower.
    """
    _, dense = np.unique(groups, return_inverse=True)
    dense = dense.reshape(-1)
    n_groups = int(dense.max()) + 1 if len(dense) else 0
    rng = np.random.default_rng(seed)
    return float(np.mean([ks_distance_from_uniform(rng.random(n_groups)[dense]) for _ in range(n_repeats)]))


def pit_histogram(pit: np.ndarray, n_bins: int = 20) -> dict[str, Any]:
    """PIT histogram of (n,) values in [0, 1]: ``edges`` (n_bins + 1), ``counts``, ``density``
    (1 = flat) and the flat expectation's binomial ``density_sigma`` (1 sigma, per bin)."""
    counts, edges = np.histogram(pit, bins=n_bins, range=(0.0, 1.0))
    n = len(pit)
    bin_probability = 1.0 / n_bins
    density = counts / (n * bin_probability) if n else np.zeros(n_bins)
    sigma = float(np.sqrt((1.0 - bin_probability) / (n * bin_probability))) if n else None
    return {"edges": edges.tolist(), "counts": counts.astype(int).tolist(), "density": density.tolist(),
            "expected_density": 1.0, "density_sigma": sigma}


def pit_statistics(pit: np.ndarray, showers: np.ndarray, seed: int, n_repeats: int = FLOOR_REPEATS) -> dict[str, Any]:
    """KS (with floors), central-interval coverages and mean PIT of (n,) PIT values of events
    from ``showers`` ((n,) shower ids). Fewer than ``MIN_EVENTS`` values: each entry n/a
    (``None`` with a ``reason``)."""
    n = len(pit)
    result: dict[str, Any] = {"n_events": n}
    if n < MIN_EVENTS:
        reason = f"too few events ({n} < {MIN_EVENTS})"
        result["ks"] = dict(metric_entry(NotAvailable(reason), NotAvailable(reason)), floor_correlated=None)
        for name, (_, _, expected) in CENTRAL_INTERVALS.items():
            result[name] = {"observed": None, "expected": expected, "standard_error": None, "reason": reason}
        result["mean_pit"] = {"observed": None, "expected": 0.5, "standard_error": None, "reason": reason}
        return result
    ks = metric_entry(ks_distance_from_uniform(pit), uniform_ks_floor(np.arange(n), seed, n_repeats))
    # same seed: without shared showers the two floors are the same draws, hence equal
    ks["floor_correlated"] = uniform_ks_floor(showers, seed, n_repeats)
    result["ks"] = ks
    for name, (low, high, expected) in CENTRAL_INTERVALS.items():
        observed = float(np.mean((pit >= low) & (pit <= high)))
        # binomial error of independent events; correlated depths make the real one larger
        result[name] = {"observed": observed, "expected": expected,
                        "standard_error": float(np.sqrt(expected * (1.0 - expected) / n))}
    result["mean_pit"] = {"observed": float(np.mean(pit)), "expected": 0.5,
                          "standard_error": float(np.std(pit, ddof=1) / np.sqrt(n))}
    return result


def multiplicity_calibration(
    model: "MuonBundleModel", reference: RaggedBatch, seed: int = 0, n_bins: int = 20,
    depth: DepthBinning = SLANT,
) -> dict[str, Any]:
    """Randomised-PIT calibration of the model's P(N | conditions) on the reference events.

    ``reference``: events with their true multiplicities (physical conditions, see
    :class:`RaggedBatch`); ``seed`` fixes the PIT randomisation and the floors; ``n_bins``:
    bins of the PIT histogram; ``depth``: the depth binning
    (:func:`mubundle.evaluate.reference_depths.depth_binning`). Returns a JSON-serialisable dict (no NaN)::

        {"n_events", "n_nonfinite", "overall": {"n_events", "ks": {"model", "floor", "ratio",
         "floor_correlated"}, "coverage_50", "coverage_90", "mean_pit", "histogram"},
         "bins": {variable: [{bin fields, "n_events", "ks", "coverage_50", ...}]}, "definitions"}

    Coverages are the fractions of events with u in [0.25, 0.75] and [0.05, 0.95], i.e. the
    true N inside the model's central 50 % / 90 % interval (randomised at the interval edges,
    so exactly 0.50 / 0.90 in expectation for a calibrated model). Events whose cdf is not
    finite are counted in ``n_nonfinite`` and left out of every statistic.
    """
    pit = randomised_pit(model, reference.conditions, reference.counts, seed=seed)
    finite = np.isfinite(pit)
    showers = shower_ids(reference.conditions)
    overall = pit_statistics(pit[finite], showers[finite], seed)
    overall["histogram"] = pit_histogram(pit[finite], n_bins)
    binned: dict[str, list[dict[str, Any]]] = {}
    for variable_index, variable in enumerate(VARIABLES):
        entries = []
        for bin_index, condition_bin in enumerate(bins_for(variable, reference.conditions, depth)):
            selected = condition_bin.mask(reference.conditions) & finite
            bin_seed = seed + 1000 * (variable_index + 1) + 10 * bin_index
            entries.append(dict(condition_bin.to_dict(), **pit_statistics(pit[selected], showers[selected], bin_seed)))
        binned[variable] = entries
    result: dict[str, Any] = {
        "n_events": len(pit),
        "n_nonfinite": int((~finite).sum()),
        "seed": seed,
        "overall": overall,
        "bins": binned,
        "definitions": {
            "pit": "u = F(N-1) + V (F(N) - F(N-1)), F = model cdf of N given the conditions, V ~ U(0,1); "
                   "uniform iff calibrated",
            "ks": "Kolmogorov-Smirnov distance of u from U(0,1); floor = mean KS of as many independent "
                  "uniforms (floor_correlated: one uniform per shower, depths fully correlated)",
            "coverage_50": "fraction of events with u in [0.25, 0.75] (true N inside the central 50 % interval)",
            "coverage_90": "fraction of events with u in [0.05, 0.95] (true N inside the central 90 % interval)",
            "mean_pit": "mean of u: 0.5 if calibrated, > 0.5 = the model predicts too few muons",
        },
    }
    if result["n_nonfinite"]:
        first = int(np.flatnonzero(~finite)[0])
        result["warning"] = (f"the model's cdf is not finite for {result['n_nonfinite']} events (first: event {first}, "
                             f"N = {int(reference.counts[first])}); they are left out of the calibration")
    return result
