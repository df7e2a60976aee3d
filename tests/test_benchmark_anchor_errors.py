"""benchmarks/validate_simulator.py: the statistical errors of the depth-intensity anchors.

Known answers on synthetic weights, and the formula against the actual spread of the
estimator over many independent weighted samples (and against the seeded bootstrap).
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import load_benchmark

validate = load_benchmark("validate_simulator")


def test_weighted_mean_error_known_answers():
    mean, error = validate.weighted_mean_and_error(np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4))
    assert mean == 2.5 and error == pytest.approx(np.sqrt(5.0) / 4.0, rel=1e-12)  # sqrt(sum (x-m)^2) / n
    # fraction with weights 1 and 3: m = 0.75, error = sqrt(1 * 0.75^2 + 9 * 0.25^2) / 4
    mean, error = validate.weighted_mean_and_error(np.array([0.0, 1.0]), np.array([1.0, 3.0]))
    assert mean == 0.75 and error == pytest.approx(np.sqrt(1.125) / 4.0, rel=1e-12)
    # scaling all weights changes nothing; no events: NaN
    assert validate.weighted_mean_and_error(np.array([0.0, 1.0]), np.array([10.0, 30.0]))[1] == pytest.approx(error)
    assert np.isnan(validate.weighted_mean_and_error(np.array([]), np.array([]))[1])
    assert validate.weighted_sum_error(np.array([3.0, 4.0])) == 5.0


def test_errors_match_the_spread_of_the_estimators_over_independent_weighted_samples():
    rng = np.random.default_rng(5)
    means, errors, sums, sum_errors = [], [], [], []
    for _ in range(2000):
        weights = rng.lognormal(0.0, 1.0, 400)  # flux weights span decades
        values = rng.exponential(200.0, 400)
        counts = rng.poisson(0.3, 400)
        mean, error = validate.weighted_mean_and_error(values, weights)
        means.append(mean), errors.append(error)
        sums.append((weights * counts).sum()), sum_errors.append(validate.weighted_sum_error(weights * counts))
    assert np.mean(errors) == pytest.approx(np.std(means), rel=0.1)
    assert np.mean(sum_errors) == pytest.approx(np.std(sums), rel=0.1)


def test_shower_bootstrap_is_seeded_and_agrees_with_the_formula():
    rng = np.random.default_rng(8)
    weights = rng.lognormal(0.0, 1.0, 3000)
    single = (rng.random(3000) < 0.85).astype(np.float64)
    _, error = validate.weighted_mean_and_error(single, weights)

    def statistic(idx):
        return validate.weighted_mean_and_error(single[idx], weights[idx])[0]

    first = validate.shower_bootstrap(statistic, single.size, seed=3)
    assert validate.shower_bootstrap(statistic, single.size, seed=3) == first
    assert first == pytest.approx(error, rel=0.2)
    assert np.isnan(validate.shower_bootstrap(lambda idx: float("nan"), 10, seed=1))
