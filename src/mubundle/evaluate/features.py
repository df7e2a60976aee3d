"""Per-event and per-muon observables of a ragged batch (vectorised, no per-event Python).

Every observable the metrics, the classifier and the plots use is computed here once, so
they all agree on definitions and units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mubundle.data.batch import RaggedBatch
from mubundle.data.schema import DEPTH, ENERGY, MASS, MU_ENERGY, MU_X, MU_Y, ZENITH


@dataclass(frozen=True)
class EventObservables:
    """(B,) float64 arrays; bundle quantities are NaN for events without muons.

    - ``multiplicity``: N
    - ``log10_n_plus_1``: log10(N + 1)
    - ``total_energy``: sum of muon energies [GeV]
    - ``leading_fraction``: highest muon energy / total energy
    - ``mean_radius``: mean distance of the muons from the shower axis [m]
    """

    multiplicity: np.ndarray
    log10_n_plus_1: np.ndarray
    total_energy: np.ndarray
    leading_fraction: np.ndarray
    mean_radius: np.ndarray


@dataclass(frozen=True)
class MuonObservables:
    """(M,) float64 arrays: ``log10_energy`` (log10 of E/GeV) and ``radius`` [m]."""

    log10_energy: np.ndarray
    radius: np.ndarray


def muon_radius(batch: RaggedBatch) -> np.ndarray:
    """(M,) float64 distance of each muon from the shower axis [m]."""
    muons = batch.flat_muons.astype(np.float64)
    return np.hypot(muons[:, MU_X], muons[:, MU_Y])


def muon_observables(batch: RaggedBatch) -> MuonObservables:
    """Per-muon observables of all muons of ``batch`` (see :class:`MuonObservables`)."""
    energy = batch.flat_muons[:, MU_ENERGY].astype(np.float64)
    return MuonObservables(np.log10(energy), muon_radius(batch))


def _segment_sum(values: np.ndarray, batch: RaggedBatch) -> np.ndarray:
    return np.bincount(batch.event_index, weights=values, minlength=len(batch))


def _segment_max(values: np.ndarray, batch: RaggedBatch) -> np.ndarray:
    result = np.full(len(batch), -np.inf)
    np.maximum.at(result, batch.event_index, values)
    return result


def event_observables(batch: RaggedBatch) -> EventObservables:
    """Per-event observables of ``batch`` (see :class:`EventObservables`)."""
    counts = batch.counts.astype(np.float64)
    has_muons = counts > 0
    energy = batch.flat_muons[:, MU_ENERGY].astype(np.float64)
    total = _segment_sum(energy, batch)
    leading = _segment_max(energy, batch)
    radius_sum = _segment_sum(muon_radius(batch), batch)
    with np.errstate(divide="ignore", invalid="ignore"):
        total_energy = np.where(has_muons, total, np.nan)
        leading_fraction = np.where(has_muons, leading / total, np.nan)
        mean_radius = np.where(has_muons, radius_sum / counts, np.nan)
    return EventObservables(counts, np.log10(counts + 1.0), total_energy, leading_fraction, mean_radius)


#: Names of the columns of :func:`classifier_features`, in order.
CLASSIFIER_FEATURES: tuple[str, ...] = (
    "log10_primary_energy",
    "cos_zenith",
    "log10_mass",
    "depth_km",
    "log10_n_plus_1",
    "log10_total_muon_energy",
    "leading_fraction",
    "log10_mean_radius",
    "log10_max_radius",
    "mean_log10_muon_energy",
    "std_log10_muon_energy",
)


def classifier_features(batch: RaggedBatch) -> np.ndarray:
    """(B, F) float64 event-level features for the two-sample classifier.

    The primary's conditions are included so the classifier tests the *conditional*
    distributions. Undefined bundle features (N = 0, or spread for N = 1) are NaN,
    which gradient-boosted trees handle natively as "missing".
    """
    events = event_observables(batch)
    muons = muon_observables(batch)
    counts = batch.counts.astype(np.float64)
    has_muons = counts > 0
    log_e_sum = _segment_sum(muons.log10_energy, batch)
    log_e_sq_sum = _segment_sum(muons.log10_energy**2, batch)
    max_radius = _segment_max(muons.radius, batch)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_log_e = np.where(has_muons, log_e_sum / counts, np.nan)
        variance = np.where(counts > 1, log_e_sq_sum / counts - mean_log_e**2, np.nan)
        std_log_e = np.sqrt(np.maximum(variance, 0.0))  # round-off can make it -1e-17
        std_log_e = np.where(counts > 1, std_log_e, np.nan)
        columns = (
            np.log10(batch.conditions[:, ENERGY].astype(np.float64)),
            np.cos(batch.conditions[:, ZENITH].astype(np.float64)),
            np.log10(batch.conditions[:, MASS].astype(np.float64)),
            batch.conditions[:, DEPTH].astype(np.float64),
            events.log10_n_plus_1,
            np.log10(events.total_energy),
            events.leading_fraction,
            np.log10(events.mean_radius),
            np.where(has_muons, np.log10(max_radius), np.nan),
            mean_log_e,
            std_log_e,
        )
    features = np.stack(columns, axis=1)
    features[np.isinf(features)] = np.nan  # log10(0 m) of a muon exactly on the axis: undefined, not -inf
    return features


#: Plain summary values of a sample for the report: name -> (description with unit).
SUMMARY_QUANTITIES: dict[str, str] = {
    "p_zero": "P(N = 0)",
    "mean_multiplicity": "mean N",
    "std_multiplicity": "standard deviation of N",
    "mean_log10_muon_energy": "mean log10(E_mu / GeV)",
    "median_radius_m": "median muon radius [m]",
    "mean_bundle_energy_gev": "mean bundle energy, N >= 1 [GeV]",
    "mean_leading_fraction": "mean leading-muon fraction, N >= 1",
}


def summary_quantities(batch: RaggedBatch) -> dict[str, float | None]:
    """The :data:`SUMMARY_QUANTITIES` of ``batch`` (None where undefined, e.g. no muons)."""
    events = event_observables(batch)
    muons = muon_observables(batch)
    has_muons = events.multiplicity > 0

    def mean(values: np.ndarray) -> float | None:
        return float(np.mean(values)) if len(values) else None

    return {
        "p_zero": mean((events.multiplicity == 0).astype(np.float64)),
        "mean_multiplicity": mean(events.multiplicity),
        "std_multiplicity": float(np.std(events.multiplicity)) if len(batch) else None,
        "mean_log10_muon_energy": mean(muons.log10_energy),
        "median_radius_m": float(np.median(muons.radius)) if batch.n_muons else None,
        "mean_bundle_energy_gev": mean(events.total_energy[has_muons]),
        "mean_leading_fraction": mean(events.leading_fraction[has_muons]),
    }
