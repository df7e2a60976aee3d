"""The distances between two samples used by the metrics, as plain functions of arrays.

All return a non-negative float; they raise :class:`NotAvailable` (with a reason a reader
can act on) when a distance is undefined, e.g. a sample is too small.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


class NotAvailable(Exception):
    """A metric cannot be computed; ``str(error)`` is the reason shown in the report."""


def require_size(values: np.ndarray, minimum: int, what: str) -> None:
    """Raise :class:`NotAvailable` when ``values`` holds fewer than ``minimum`` entries."""
    if len(values) < minimum:
        raise NotAvailable(f"too few {what} ({len(values)} < {minimum})")


def standardised_wasserstein(first: np.ndarray, second: np.ndarray, scale: float) -> float:
    """1D Wasserstein-1 distance between two samples divided by ``scale``.

    ``scale`` is the standard deviation of the reference sample, so the distance is in
    units of the reference spread (0.1 = distributions shifted by ~0.1 sigma).
    """
    if not scale > 0:
        scale = 1.0  # a constant reference: the plain (unscaled) distance
    return float(stats.wasserstein_distance(first, second)) / float(scale)


def absolute_difference(first: float, second: float) -> float:
    """|first - second| (for probabilities such as P(N = 0))."""
    return float(abs(first - second))


def relative_difference(reference: float, other: float, what: str) -> float:
    """|other / reference - 1|; undefined when the reference value is 0."""
    if reference == 0:
        raise NotAvailable(f"{what} of the reference half is 0")
    return float(abs(other / reference - 1.0))


def spearman(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman rank correlation of paired samples; undefined for constant input."""
    if np.all(first == first[0]) or np.all(second == second[0]):
        raise NotAvailable("correlation undefined for a constant sample")
    return float(stats.spearmanr(first, second).statistic)
