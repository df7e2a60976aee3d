"""P(N | conditions): a mixture of K negative binomials, fitted by maximum likelihood.

For each event an MLP maps the condition features to a shared log-location ``log m`` and,
per component k, a mixture logit ``w_k``, a bounded offset ``d_k`` (log mu_k = log m + d_k,
|d_k| < 2.5) and a log-dispersion ``log r_k``. Then

    P(N = n) = sum_k softmax(w)_k * NB(n; mu_k, r_k)
    NB(n; mu, r) = Gamma(n + r) / (Gamma(r) n!) * (r / (r + mu))^r * (mu / (r + mu))^n

with mean mu and variance mu + mu^2 / r (over-dispersed; r -> inf is Poisson). A component
with tiny mu is a point mass at N = 0, so P(N = 0) is learned like any other value; wide
components and the mixture give fat tails up to N ~ 1e5. ``m_loss`` = mean of -log P(N).
The shared location with bounded offsets keeps all components of one event within a factor
e^5 of each other: a free mixture leaves rarely-needed components with ~1e-4 weight far out
in N, which the likelihood barely notices but which inflate the predicted variance severalfold.

Sampling takes two uniforms per event from the caller's ``torch.Generator`` (reproducible by
seed): the first picks the component by inverting the cumulative mixture weights; for a
component with mean mu <= ``INVERSE_CDF_MAX_MEAN`` the second is inverted in the NB's cumulative
distribution (exact; one comparison with P(N = 0) settles the ~99 % of flux-sample rows that
draw N = 0). Other components are drawn Gamma-Poisson: lambda ~ Gamma(r, scale = mu / r),
N ~ Poisson(lambda), with the Gamma drawn by Marsaglia-Tsang from normals/uniforms of the same
generator (torch's own Gamma sampler takes no generator).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import Tensor, nn

from mubundle.model.config import ModelConfig
from mubundle.model.layers import hidden_block, init_linear_layers
from mubundle.model.transforms import CONDITION_DIM

logger = logging.getLogger(__name__)

# Smooth (tanh) ranges of the per-component parameters. Not clamps: gradients flow
# everywhere; they keep lgamma/exp in float range for any network output.
_LOG_MEAN_CENTER, _LOG_MEAN_HALF_WIDTH = 1.0, 11.0  # location in ~[e^-10, e^12] covers N = 0 .. 1e5+
_LOG_OFFSET_HALF_WIDTH = 2.5  # components within a factor e^2.5 of the shared location
_LOG_DISPERSION_CENTER, _LOG_DISPERSION_HALF_WIDTH = 2.0, 8.0  # r in ~[e^-6, e^10]
# Marsaglia-Tsang proposals drawn per round; acceptance is > 95 % per proposal.
_GAMMA_PROPOSALS_PER_ROUND = 4
# Components with a mean up to this are drawn by inverting their cumulative distribution, in
# blocks of _INVERSE_CDF_BLOCK counts per pass; larger means by Gamma-Poisson.
INVERSE_CDF_MAX_MEAN = 4.0
_INVERSE_CDF_BLOCK = 8


class MultiplicityModel(nn.Module):
    """Mixture-of-negative-binomials model of the muon multiplicity N given conditions.

    Inputs are condition features (B, C) from :class:`FeatureTransform`.
    """

    def __init__(self, config: ModelConfig, condition_dim: int = CONDITION_DIM) -> None:
        super().__init__()
        hidden = config.multiplicity_hidden
        layers: list[nn.Module] = [hidden_block(condition_dim, hidden, config.layer_norm)]
        layers += [hidden_block(hidden, hidden, config.layer_norm) for _ in range(config.multiplicity_layers - 1)]
        self.body = nn.Sequential(*layers)
        self.components = config.multiplicity_components
        # per component: logit, log-mean offset, log-dispersion; plus the shared log-location
        self.head = nn.Linear(hidden, 3 * self.components + 1)
        self.max_count = config.max_multiplicity
        self.draws_above_cap = 0  # draws above max_count (redrawn), over this model's life
        self.draws_capped = 0  # of those, still above after the redraws and set to max_count
        init_linear_layers(self, config.init_gain)
        # spread the initial offsets over half their range: distinct components from the start
        with torch.no_grad():
            spread = torch.linspace(-0.5, 0.5, self.components) if self.components > 1 else torch.zeros(1)
            self.head.bias[self.components : 2 * self.components] = torch.atanh(spread) * _LOG_OFFSET_HALF_WIDTH

    # ------------------------------------------------------------------ parameters
    def mixture_parameters(self, cond_features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, C) -> log mixture weights, log means, log dispersions, each (B, K)."""
        raw = self.head(self.body(cond_features))
        logits, raw_offset, raw_log_dispersion, raw_location = raw.split(
            (self.components, self.components, self.components, 1), dim=1
        )
        log_weights = _log_softmax_over_components(logits)
        log_location = _LOG_MEAN_CENTER + _LOG_MEAN_HALF_WIDTH * torch.tanh(raw_location / _LOG_MEAN_HALF_WIDTH)
        log_mean = log_location + _LOG_OFFSET_HALF_WIDTH * torch.tanh(raw_offset / _LOG_OFFSET_HALF_WIDTH)
        log_dispersion = _LOG_DISPERSION_CENTER + _LOG_DISPERSION_HALF_WIDTH * torch.tanh(
            raw_log_dispersion / _LOG_DISPERSION_HALF_WIDTH
        )
        return log_weights, log_mean, log_dispersion

    # ------------------------------------------------------------------ likelihood
    def log_prob(self, cond_features: Tensor, counts: Tensor) -> Tensor:
        """(B, C), (B,) int64 -> (B,) log P(N = counts | conditions).

        Evaluated in float64 where the device has it (lgamma(n + r) - lgamma(r) loses
        digits in float32 at n ~ 1e5).
        """
        parameters = self.mixture_parameters(cond_features)
        dtype = _likelihood_dtype(cond_features.device)
        log_p = mixture_log_prob(tuple(t.to(dtype) for t in parameters), counts.unsqueeze(1))
        return log_p.squeeze(1).to(cond_features.dtype)

    def nll(self, cond_features: Tensor, counts: Tensor) -> Tensor:
        """Mean negative log-likelihood over the events (the training loss ``m_loss``)."""
        return -self.log_prob(cond_features, counts).mean()

    def mean_variance(self, cond_features: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C) -> mean (B,) and variance (B,) of N under the mixture."""
        log_weights, log_mean, log_dispersion = self.mixture_parameters(cond_features)
        weights, mean = log_weights.exp(), log_mean.exp()
        second_moment = mean + mean.square() * (1.0 + (-log_dispersion).exp())
        total_mean = (weights * mean).sum(dim=1)
        return total_mean, (weights * second_moment).sum(dim=1) - total_mean.square()

    @torch.no_grad()
    def cdf(self, cond_features: Tensor, counts: Tensor) -> Tensor:
        """(B, C), (B,) -> (B,) float64 P(N <= counts) (for PIT calibration histograms).

        NB cdf: P(N <= n) = I_p(r, n + 1) with p = r / (r + mu) (regularised incomplete
        beta, ``scipy.special.betainc``), mixed with the component weights.
        """
        from scipy.special import betainc

        log_weights, log_mean, log_dispersion = (
            t.detach().cpu().double().numpy() for t in self.mixture_parameters(cond_features)
        )
        n = counts.detach().cpu().double().numpy()[:, None]
        dispersion = np.exp(log_dispersion)
        success = 1.0 / (1.0 + np.exp(log_mean - log_dispersion))
        component_cdf = np.where(n >= 0, betainc(dispersion, np.maximum(n, 0.0) + 1.0, success), 0.0)
        return torch.from_numpy((np.exp(log_weights) * component_cdf).sum(axis=1))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, cond_features: Tensor, generator: torch.Generator) -> Tensor:
        """(B, C) -> (B,) int64 counts drawn from the model with ``generator`` (reproducible).

        Draws above ``config.max_multiplicity`` are redrawn (a few rounds; what is still above
        after them is set to the maximum): the sampler never allocates absurd bundles. Both
        are reported: a warning names how many draws were above the cap and how many were
        set to it, and ``draws_above_cap`` / ``draws_capped`` count them over the model's life.
        """
        return self.sample_from_parameters(self.mixture_parameters(cond_features), generator)

    @torch.no_grad()
    def sample_from_parameters(self, parameters: tuple[Tensor, Tensor, Tensor], generator: torch.Generator) -> Tensor:
        """:meth:`sample` given its :meth:`mixture_parameters` (each (B, K)): the part that draws
        random numbers, split off so the deterministic network can run elsewhere (row blocks
        on worker threads give the same parameters)."""
        log_weights, log_mean, log_dispersion = parameters
        device = log_mean.device
        rows = log_mean.shape[0]
        if rows == 0:
            return torch.zeros(0, dtype=torch.int64, device=device)
        # two uniforms per row, drawn first and for every row: the component, then the count
        uniforms = torch.rand((rows, 2), generator=generator, dtype=torch.float64, device=generator.device).to(device)
        component = _component_by_inversion(log_weights.double(), uniforms[:, :1])
        log_mean = log_mean.double().gather(1, component).squeeze(1)
        log_dispersion = log_dispersion.double().gather(1, component).squeeze(1)
        counts, _ = _component_counts(log_mean, log_dispersion, uniforms[:, 1], self.max_count, generator)
        above = capped = 0
        for _ in range(4):
            too_large = (counts > self.max_count).nonzero().squeeze(1)  # one host sync per round
            if too_large.numel() == 0:
                break
            above = above or int(too_large.numel())
            counts[too_large] = _gamma_poisson(log_mean[too_large].exp(), log_dispersion[too_large].exp(), generator)
        else:
            capped = int((counts > self.max_count).sum())
        if above:
            self.draws_above_cap += above
            self.draws_capped += capped
            logger.warning(
                "%d of %d multiplicity draws were above max_multiplicity=%d and were redrawn; "
                "%d still above it after 4 redraws were set to %d",
                above, counts.shape[0], self.max_count, capped, self.max_count,
            )
        return torch.minimum(counts, torch.full_like(counts, self.max_count))


def _log_softmax_over_components(logits: Tensor) -> Tensor:
    """(B, K) -> (B, K) log_softmax over the K components, computed on the transposed (K, B') tensor
    with B' = B rounded up to a multiple of 64 (zero rows appended, then dropped).

    On CPU a softmax over a last dimension of size K ~ 8 is ~8x slower (0.75 vs 0.09 ms for 5 700
    events). Along the first dimension the kernel is vectorised over the events, and events in the
    remainder after the last full vector would take a scalar path that can differ in the last bit:
    with B' a multiple of every vector width, each event's weights do not depend on B (a sample in
    chunks of any size gives the same result as one whole).
    """
    rows = logits.shape[0]
    padded = logits.new_zeros((logits.shape[1], -(-rows // 64) * 64))
    padded[:, :rows] = logits.t()
    return torch.log_softmax(padded, dim=0)[:, :rows].t()


def _component_by_inversion(log_weights: Tensor, uniform: Tensor) -> Tensor:
    """(B, K) unnormalised log weights, (B, 1) uniforms -> (B, 1) int64 component: the first whose
    cumulative weight exceeds u times the total (0 .. K - 1 by construction)."""
    cumulative = log_weights.exp().cumsum(1)
    return (cumulative[:, :-1] < uniform * cumulative[:, -1:]).sum(1, keepdim=True)


def mixture_log_prob(parameters: tuple[Tensor, Tensor, Tensor], counts: Tensor) -> Tensor:
    """log P(N = counts) of the mixture: parameters (each (B, K), :meth:`MultiplicityModel.mixture_parameters`),
    counts (B, S) -> (B, S), in the parameters' dtype."""
    log_weights, log_mean, log_dispersion = (t.unsqueeze(1) for t in parameters)  # (B, 1, K)
    n = counts.to(log_mean.dtype).unsqueeze(2)  # (B, S, 1)
    dispersion = log_dispersion.exp()
    # log(r / (r + mu)) = -softplus(log mu - log r), log(mu / (r + mu)) = -softplus(log r - log mu)
    log_component = (
        torch.lgamma(n + dispersion)
        - torch.lgamma(dispersion)
        - torch.lgamma(n + 1.0)
        - dispersion * nn.functional.softplus(log_mean - log_dispersion)
        - n * nn.functional.softplus(log_dispersion - log_mean)
    )
    return torch.logsumexp(log_weights + log_component, dim=2)


def component_log_p_zero(log_mean: Tensor, log_dispersion: Tensor) -> Tensor:
    """log P(N = 0) = -r log(1 + mu / r) of negative binomials, elementwise."""
    return -log_dispersion.exp() * nn.functional.softplus(log_mean - log_dispersion)


def mixture_log_p_zero(parameters: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """log P(N = 0) of the mixture, (B, K) parameters -> (B,)."""
    log_weights, log_mean, log_dispersion = parameters
    return torch.logsumexp(log_weights + component_log_p_zero(log_mean, log_dispersion), dim=1)


def log_one_minus_exp(x: Tensor) -> Tensor:
    """log(1 - e^x) for x <= 0, accurate at both ends (Maechler 2012, "Accurately computing
    log(1 - exp(-|a|))", the Rmpfr note): log(-expm1(x)) above -log 2, log1p(-e^x) below."""
    near_zero = x > -math.log(2.0)
    return torch.where(near_zero, torch.log(-torch.expm1(torch.where(near_zero, x, -1.0))),
                       torch.log1p(-torch.exp(torch.where(near_zero, -1.0, x))))


@torch.no_grad()
def sample_positive(parameters: tuple[Tensor, Tensor, Tensor], samples: int, generator: torch.Generator) -> Tensor:
    """Draws of N given N > 0 from the mixture: (B, K) float64 parameters -> (B, samples) int64 >= 1.

    The component is chosen with weight w_k (1 - P_k(0)). Components of mean <= ``INVERSE_CDF_MAX_MEAN``
    invert their cumulative distribution at u in (P_k(0), 1); the others draw Gamma-Poisson
    and redraw zeros (their P_k(0) is mostly small) until none is left. For distillation
    (``refit-multiplicity --distill``): the rare non-zero counts of near-threshold events are
    drawn directly rather than waited for.
    """
    log_weights, log_mean, log_dispersion = (t.double() for t in parameters)
    rows = log_mean.shape[0]
    gen_device = generator.device
    log_p0 = component_log_p_zero(log_mean, log_dispersion)
    choice = (log_weights + log_one_minus_exp(log_p0)).repeat_interleave(samples, 0)  # (B S, K)
    uniforms = torch.rand((rows * samples, 2), generator=generator, dtype=torch.float64, device=gen_device).to(log_mean.device)
    component = _component_by_inversion(choice - choice.max(1, keepdim=True).values, uniforms[:, :1])

    def pick(values: Tensor) -> Tensor:  # (B, K) -> (B S,): each draw's component
        return values.repeat_interleave(samples, 0).gather(1, component).squeeze(1)

    chosen_log_mean, chosen_log_dispersion, chosen_p0 = pick(log_mean), pick(log_dispersion), pick(log_p0).exp()
    above_zero = chosen_p0 + uniforms[:, 1] * (1.0 - chosen_p0)  # inverted rows: u in (P(0), 1)
    counts, drawn = _component_counts(chosen_log_mean, chosen_log_dispersion, above_zero, 2**62, generator)
    drawn = drawn[counts[drawn] == 0]
    while drawn.numel():  # Gamma-Poisson rows: redraw the zeros
        counts[drawn] = _gamma_poisson(chosen_log_mean[drawn].exp(), chosen_log_dispersion[drawn].exp(), generator)
        drawn = drawn[counts[drawn] == 0]
    return torch.maximum(counts, torch.ones_like(counts)).view(rows, samples)  # inverted at u = P(0) exactly: 0


def _component_counts(
    log_mean: Tensor, log_dispersion: Tensor, uniform: Tensor, max_count: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Counts of the chosen components, (B,) float64 log mu, log r, u -> ((B,) int64, indices drawn
    Gamma-Poisson): mean <= ``INVERSE_CDF_MAX_MEAN`` inverts u in the cumulative distribution
    (:func:`negative_binomial_inverse_cdf`, stopping at ``max_count``), larger means draw
    Gamma-Poisson from ``generator`` (u unused)."""
    counts = torch.empty(log_mean.shape[0], dtype=torch.int64, device=log_mean.device)
    by_inversion = log_mean.exp() <= INVERSE_CDF_MAX_MEAN
    inverted, drawn = by_inversion.nonzero().squeeze(1), (~by_inversion).nonzero().squeeze(1)
    if inverted.numel():
        counts[inverted] = negative_binomial_inverse_cdf(log_mean[inverted], log_dispersion[inverted], uniform[inverted], max_count)
    if drawn.numel():
        counts[drawn] = _gamma_poisson(log_mean[drawn].exp(), log_dispersion[drawn].exp(), generator)
    return counts, drawn


def _likelihood_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def negative_binomial_inverse_cdf(log_mean: Tensor, log_dispersion: Tensor, uniform: Tensor, max_count: int) -> Tensor:
    """The smallest n with P(N <= n) >= u for NB(mu, r): (B,) float64 log mu, log r, u -> (B,) int64.

    P(N = 0) = (r / (r + mu))^r and P(N = n) = P(N = n - 1) (n - 1 + r) / n * mu / (r + mu),
    accumulated in float64 in blocks of counts for the rows still searching. A row whose
    cumulative sum stops growing before reaching u (u within ~1e-16 of 1), or that reaches
    ``max_count``, stops there (the caller's cap rule then applies). Rows of mean <= 4 mostly need one
    block but for the rare draws in a long tail (r << 1).
    """
    log_success = -nn.functional.softplus(log_dispersion - log_mean)  # log(mu / (r + mu))
    log_pmf = component_log_p_zero(log_mean, log_dispersion)
    cdf = log_pmf.exp()
    counts = torch.zeros_like(log_mean, dtype=torch.int64)
    active = (cdf < uniform).nonzero().squeeze(1)
    start = 0
    steps = torch.arange(1, _INVERSE_CDF_BLOCK + 1, dtype=torch.float64, device=log_mean.device)
    while active.numel() and start < max_count:
        n = start + steps  # the counts of this block, (J,)
        dispersion = log_dispersion[active].exp().unsqueeze(1)
        log_ratio = torch.log((n - 1.0 + dispersion) / n) + log_success[active].unsqueeze(1)
        block_log_pmf = log_pmf[active].unsqueeze(1) + log_ratio.cumsum(1)
        block_cdf = cdf[active].unsqueeze(1) + block_log_pmf.exp().cumsum(1)
        below = block_cdf < uniform[active].unsqueeze(1)
        reached = ~below[:, -1]
        exhausted = block_cdf[:, -1] <= cdf[active]  # a whole block added nothing representable
        done = reached | exhausted | (start + _INVERSE_CDF_BLOCK >= max_count)
        found = start + 1 + below[done].sum(1)  # start + J + 1 where the block ended below u
        counts[active[done]] = torch.minimum(found, torch.full_like(found, min(start + _INVERSE_CDF_BLOCK, max_count)))
        log_pmf[active] = block_log_pmf[:, -1]
        cdf[active] = block_cdf[:, -1]
        active = active[~done]
        start += _INVERSE_CDF_BLOCK
    return counts


def _gamma_poisson(mean: Tensor, dispersion: Tensor, generator: torch.Generator) -> Tensor:
    """N ~ Poisson(Gamma(shape=r, scale=mu/r)): negative binomial with mean mu, dispersion r."""
    rate = standard_gamma(dispersion, generator) * (mean / dispersion)
    return torch.poisson(rate.to(generator.device), generator=generator).to(mean.device).to(torch.int64)


def standard_gamma(shape: Tensor, generator: torch.Generator) -> Tensor:
    """Gamma(shape, 1) samples, (B,) -> (B,), drawn only from ``generator``.

    Marsaglia & Tsang (2000), ACM TOMS 26, 363: for a >= 1 with d = a - 1/3, c = 1/sqrt(9d),
    x ~ N(0,1), v = (1 + c x)^3, accept d v when v > 0 and log u < x^2/2 + d - d v + d log v.
    For a < 1: Gamma(a) = Gamma(a + 1) * u^(1/a). Proposals are drawn in fixed-size rounds so
    the number of random numbers consumed depends only on the acceptance pattern.
    """
    shape = shape.double()
    boosted = torch.where(shape < 1.0, shape + 1.0, shape)
    d = boosted - 1.0 / 3.0
    c = (9.0 * d).rsqrt()
    result = torch.zeros_like(shape)
    accepted = torch.zeros_like(shape, dtype=torch.bool)
    gen_device = generator.device
    while True:
        size = (shape.shape[0], _GAMMA_PROPOSALS_PER_ROUND)
        x = torch.randn(size, generator=generator, dtype=torch.float64, device=gen_device).to(shape.device)
        u = torch.rand(size, generator=generator, dtype=torch.float64, device=gen_device).to(shape.device)
        v = (1.0 + c.unsqueeze(1) * x) ** 3
        positive = v > 0
        log_v = torch.log(torch.where(positive, v, torch.ones_like(v)))
        ok = positive & (torch.log(u) < 0.5 * x * x + d.unsqueeze(1) * (1.0 - v + log_v))
        # first accepted proposal of each row
        first = torch.argmax(ok.to(torch.int8), dim=1, keepdim=True)
        row_ok = ok.any(dim=1)
        value = (d.unsqueeze(1) * v).gather(1, first).squeeze(1)
        take = row_ok & ~accepted
        result = torch.where(take, value, result)
        accepted = accepted | row_ok
        if bool(accepted.all()):
            break
    small = shape < 1.0
    u_small = torch.rand(shape.shape, generator=generator, dtype=torch.float64, device=gen_device).to(shape.device)
    result = torch.where(small, result * u_small.pow(1.0 / shape), result)
    return result
