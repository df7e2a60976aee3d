"""The multiplicity model is a proper, reproducible, trainable distribution over N."""

from __future__ import annotations

import numpy as np
import torch

from mubundle.model.config import ModelConfig
from mubundle.model.multiplicity import (
    INVERSE_CDF_MAX_MEAN,
    MultiplicityModel,
    negative_binomial_inverse_cdf,
    standard_gamma,
)

SMALL = ModelConfig(multiplicity_hidden=32, multiplicity_layers=2, multiplicity_components=3)


def _model(seed: int = 0, config: ModelConfig = SMALL) -> MultiplicityModel:
    torch.manual_seed(seed)
    return MultiplicityModel(config)


def test_probabilities_sum_to_one_over_all_multiplicities_and_cdf_is_their_cumulative_sum():
    model = _model()
    cond = torch.randn(2, 4)
    n = torch.arange(0, 300_000)
    with torch.no_grad():
        log_p = torch.stack([model.log_prob(c.expand(len(n), 4), n) for c in cond]).double()
    pmf = log_p.exp()
    np.testing.assert_allclose(pmf.sum(1).numpy(), 1.0, atol=1e-4)
    for row, c in enumerate(cond):
        probe = torch.tensor([0, 3, 50, 1000, 20_000])
        cdf = model.cdf(c.expand(len(probe), 4), probe)
        np.testing.assert_allclose(cdf.numpy(), pmf[row].cumsum(0)[probe].numpy(), rtol=1e-3, atol=1e-6)


def test_mean_and_variance_match_the_moments_of_the_probabilities():
    model = _model(1)
    cond = torch.randn(1, 4)
    n = torch.arange(0, 400_000, dtype=torch.float64)
    with torch.no_grad():
        pmf = model.log_prob(cond.expand(len(n), 4), n.long()).double().exp()
        mean, variance = model.mean_variance(cond)
    exact_mean = (pmf * n).sum()
    exact_variance = (pmf * n * n).sum() - exact_mean**2
    np.testing.assert_allclose(float(mean), float(exact_mean), rtol=1e-3)
    np.testing.assert_allclose(float(variance), float(exact_variance), rtol=1e-2)


def test_standard_gamma_has_the_right_moments_and_is_reproducible_by_generator():
    shapes = torch.tensor([0.3, 2.5, 50.0]).repeat_interleave(40_000)
    first = standard_gamma(shapes, torch.Generator().manual_seed(5))
    again = standard_gamma(shapes, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    for k, shape in enumerate((0.3, 2.5, 50.0)):
        draws = first[k * 40_000 : (k + 1) * 40_000]
        assert (draws >= 0).all()
        np.testing.assert_allclose(float(draws.mean()), shape, rtol=0.03)
        np.testing.assert_allclose(float(draws.var()), shape, rtol=0.06)


def test_the_inverse_cdf_is_scipys_negative_binomial_quantile_to_the_count():
    from scipy import stats

    rng = np.random.default_rng(4)
    # small means with dispersions from a near-point mass (r = e^-6, long tail) to near-Poisson
    log_mean = np.log(rng.uniform(1e-4, INVERSE_CDF_MAX_MEAN, 30_000))
    log_dispersion = rng.uniform(-6.0, 10.0, 30_000)
    uniform = rng.uniform(0.0, 1.0, 30_000)
    counts = negative_binomial_inverse_cdf(
        torch.from_numpy(log_mean), torch.from_numpy(log_dispersion), torch.from_numpy(uniform), 200_000
    ).numpy()
    r, mu = np.exp(log_dispersion), np.exp(log_mean)
    expected = stats.nbinom.ppf(uniform, r, r / (r + mu)).astype(np.int64)
    assert counts.dtype == np.int64 and counts.max() > 100  # the long tails were walked
    np.testing.assert_array_equal(counts, expected)
    # the walk stops at max_count
    capped = negative_binomial_inverse_cdf(
        torch.tensor([np.log(4.0)]), torch.tensor([-6.0]), torch.tensor([1.0 - 1e-9]), 20
    )
    assert int(capped) == 20


def test_drawn_counts_follow_the_mixture_in_both_sampling_regimes():
    """Chi-square of 200 000 draws against the mixture's probabilities: a component drawn by
    inversion (mean 0.02 and 2.5) and one by Gamma-Poisson (mean 40)."""
    from scipy import stats

    model = _model()
    rows = 200_000
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    means = torch.tensor([0.02, 2.5, 40.0], dtype=torch.float64)
    dispersions = torch.tensor([0.1, 3.0, 8.0], dtype=torch.float64)
    parameters = tuple(t.log().expand(rows, 3) for t in (weights, means, dispersions))
    counts = model.sample_from_parameters(parameters, torch.Generator().manual_seed(11)).numpy()
    n = np.arange(0, 400)
    r, mu = dispersions.numpy()[:, None], means.numpy()[:, None]
    pmf = (weights.numpy()[:, None] * stats.nbinom.pmf(n, r, r / (r + mu))).sum(0)
    observed = np.bincount(counts, minlength=n.size)[: n.size].astype(float)
    expected = rows * pmf
    keep = expected >= 20
    tail = ~keep
    observed = np.append(observed[keep], observed[tail].sum() + (counts >= n.size).sum())
    expected = np.append(expected[keep], rows - expected[keep].sum())
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert stats.chi2.sf(chi2, observed.size - 1) > 1e-3, chi2
    # and a wrong mixture is rejected by the same statistic
    wrong = rows * (0.9 * pmf + 0.1 * stats.nbinom.pmf(n, 3.0, 3.0 / 5.5))
    wrong = np.append(wrong[keep], rows - wrong[keep].sum())
    assert stats.chi2.sf(float(((observed - wrong) ** 2 / wrong).sum()), observed.size - 1) < 1e-6


def test_sampling_is_reproducible_by_seed_and_differs_between_seeds():
    model = _model()
    cond = torch.randn(500, 4)
    a = model.sample(cond, torch.Generator().manual_seed(1))
    b = model.sample(cond, torch.Generator().manual_seed(1))
    c = model.sample(cond, torch.Generator().manual_seed(2))
    assert a.dtype == torch.int64 and a.shape == (500,)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a >= 0).all() and (a <= SMALL.max_multiplicity).all()


def test_draws_above_the_maximum_are_redrawn_not_clipped():
    import dataclasses

    model = _model()
    cond = torch.randn(4000, 4)
    unbounded = model.sample(cond, torch.Generator().manual_seed(3))
    limit = int(torch.quantile(unbounded.double(), 0.9))  # ~10 % of first draws are above it
    bounded_model = _model(config=dataclasses.replace(SMALL, max_multiplicity=limit))
    bounded = bounded_model.sample(cond, torch.Generator().manual_seed(3))
    assert (bounded <= limit).all()
    # unchanged where the first draw was fine (same random stream up to the redraws)
    fine = unbounded <= limit
    assert torch.equal(bounded[fine], unbounded[fine])
    # redrawn, not set to the limit: after up to 4 redraw rounds few rows remain at the cap
    above = ~fine
    assert above.sum() > 100
    assert (bounded[above] == limit).double().mean() < 0.5
    assert (bounded[above] < limit).any()


# Toy: three condition bins, each a negative binomial; one with most mass at N = 0,
# one with variance ~10x Poisson, one with N ~ 200.
_TOY_MEANS = np.array([0.5, 8.0, 200.0])
_TOY_DISPERSIONS = np.array([0.8, 3.0, 5.0])
_TOY_CONDITIONS = torch.tensor([[-1.0, 0.5, 0.0, -0.5], [0.0, -0.5, 1.0, 0.5], [1.2, 0.0, -1.0, 1.0]])


def _toy_counts(bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    mean, dispersion = _TOY_MEANS[bins], _TOY_DISPERSIONS[bins]
    return rng.negative_binomial(dispersion, dispersion / (dispersion + mean))


def test_maximum_likelihood_on_a_negative_binomial_toy_recovers_its_mean_and_variance():
    from scipy.stats import nbinom

    model = _model(3, ModelConfig(multiplicity_hidden=32, multiplicity_layers=2))  # default K = 8
    steps = 400
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    # linear decay to zero: the final parameters are an average, not one noisy Adam step
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    rng = np.random.default_rng(0)
    eval_bins = rng.integers(0, 3, 4096)
    eval_counts = _toy_counts(eval_bins, rng)
    eval_cond, eval_n = _TOY_CONDITIONS[eval_bins], torch.from_numpy(eval_counts)
    true_nll = -nbinom.logpmf(
        eval_counts, _TOY_DISPERSIONS[eval_bins], _TOY_DISPERSIONS[eval_bins] / (_TOY_DISPERSIONS + _TOY_MEANS)[eval_bins]
    ).mean()
    with torch.no_grad():
        initial_nll = float(model.nll(eval_cond, eval_n))
    for _ in range(steps):
        bins = rng.integers(0, 3, 2048)
        loss = model.nll(_TOY_CONDITIONS[bins], torch.from_numpy(_toy_counts(bins, rng)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        final_nll = float(model.nll(eval_cond, eval_n))
    assert final_nll < initial_nll
    assert final_nll < true_nll + 0.03  # close to the entropy of the true distribution

    n_draws = 40_000
    generator = torch.Generator().manual_seed(11)
    for k in range(3):
        draws = model.sample(_TOY_CONDITIONS[k].expand(n_draws, 4), generator).double()
        true_variance = _TOY_MEANS[k] + _TOY_MEANS[k] ** 2 / _TOY_DISPERSIONS[k]
        np.testing.assert_allclose(float(draws.mean()), _TOY_MEANS[k], rtol=0.10)
        np.testing.assert_allclose(float(draws.var()), true_variance, rtol=0.10)
        assert true_variance > 1.5 * _TOY_MEANS[k]  # the toy really is over-dispersed
    zero_bin_draws = model.sample(_TOY_CONDITIONS[0].expand(n_draws, 4), generator)
    true_p0 = (_TOY_DISPERSIONS[0] / (_TOY_DISPERSIONS[0] + _TOY_MEANS[0])) ** _TOY_DISPERSIONS[0]
    np.testing.assert_allclose(float((zero_bin_draws == 0).double().mean()), true_p0, atol=0.02)
