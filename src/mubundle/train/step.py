"""One training step of the conditional WGAN-GP plus the multiplicity model.

One call = ``config.critic_steps`` critic updates (each with gradient penalty) + one
generator update + one multiplicity-NLL update, on one batch of events:

- The set networks see only events with N > 0 (selected on the host; no host sync on the
  device). The generator is conditioned on each real event's TRUE N, so real and fake
  events have the same counts.
- The B' non-empty events are split into ``critic_steps`` disjoint critic batches of
  consecutive events (Gulrajani et al. 2017, Algorithm 1: every critic iteration draws a
  fresh real batch), so each real event is seen by the critic once per step. Each critic
  update uses its own batch with fresh generator noise and interpolation coefficients; the
  generator update uses the conditions and true N of one of them, picked with ``rng``.
  With fewer non-empty events than critic steps the updates cycle over one-event batches.
- Critic loss, per event e of one critic batch:
      L_C = mean_e [ D(fake_e) - D(real_e) + lambda * (||grad_{x_e} D(x_hat_e)|| - 1)^2 ]
  with x_hat_e = alpha_e real_e + (1 - alpha_e) fake_e, one alpha_e per event broadcast
  over its muons, and ||.|| the norm over all of the event's muon features (the only part
  of the critic's input that comes from the sample: conditions and N are shared by real
  and fake).
- Generator loss L_G = -mean_e D(fake_e) (during a critic warm-up, ``update_generator``
  False, computed and reported but not applied), plus ``config.muon_w1_weight`` times
  :func:`marginal_w1` of the generated and real muons of the generator batch (reported as
  ``g_w1``; the critic weighs every event alike, the evaluation's per-muon distributions
  weigh events by their N) and ``config.muon_energy_distance_weight`` times
  :func:`marginal_energy_distance` of the same muons (``g_ed``; with ``config.muon_energy_distance_radius``
  on :func:`with_radial_feature`); multiplicity loss m_loss = mean NLL over ALL
  events (N = 0 included), own Adam optimiser.
- A critic batch above ``config.max_muons_per_step`` muons is split into micro-batches
  (whole events) whose losses are weighted by (events in micro-batch) / (events in the
  critic batch) and accumulated: the same gradient as the unsplit batch. Noise and alpha
  are drawn once per critic batch and sliced, so the random numbers are identical too. On CPU the budget is additionally
  capped at ``CPU_CHUNK_MUONS`` (cache-sized passes; same gradient up to float rounding).
- After each backward the losses and gradient norm are checked with one host sync; a
  non-finite value skips that update (gradients zeroed, no optimiser step) and the rest
  of the adversarial updates of this step.
- After every applied generator update an exponential moving average of the generator
  weights is updated (decay ``min(config.generator_ema_decay, (1 + n) / (10 + n))`` after
  n averaged updates); it is part of :meth:`WganStep.state_dict` and is what a run exports.
- ALL randomness comes from the ``rng`` argument: a resumed run reproduces exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import Tensor, nn

from mubundle.data.batch import RaggedBatch
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.critic import BundleCritic
from mubundle.train.config import TrainConfig
from mubundle.train.microbatch import MicroBatch, non_empty_events, non_finite_inputs, prepare_micro_batches

logger = logging.getLogger(__name__)

# keeps d sqrt(x)/dx finite for an event whose gradient happens to vanish exactly
_GRAD_NORM_EPS = 1e-12
# |score| above this fraction of the score scale counts as saturated
SATURATION_LEVEL = 0.9
# On CPU the set networks are memory-bound: a micro-batch of ~16k muons keeps the
# activations of one forward/backward in cache and measured 1.2-1.5x faster per muon than
# one 170k-muon pass (benchmarks/train_step.py, docs/model.md). Splitting is the exact
# gradient accumulation of the muon budget, so it changes no result beyond float rounding.
CPU_CHUNK_MUONS = 16_384


@dataclass
class StepResult:
    """Outcome of one :class:`WganStep` call.

    ``losses``: c_loss, g_loss, m_loss, gp, w_distance (means over the step's updates);
    ``applied``: False when a non-finite loss/gradient made the step skip an update;
    ``bad``: names of the non-finite quantities ("input:conditions", "c_loss", "grad:critic", ...);
    ``saturated_fraction``: fraction of critic scores with |score| > 0.9 s;
    ``n_events``/``n_muons``: real events/muons in the batch (zero-muon events included).
    """

    losses: dict[str, float]
    applied: bool
    bad: list[str] = field(default_factory=list)
    saturated_fraction: float = 0.0
    n_events: int = 0
    n_muons: int = 0


class WganStep:
    """The training step (see module docstring). Holds the three Adam optimisers."""

    def __init__(
        self, model: MuonBundleModel, critic: BundleCritic, config: TrainConfig, device: torch.device
    ) -> None:
        self.model = model
        self.critic = critic
        self.config = config
        self.device = torch.device(device)
        betas = tuple(config.betas)
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "generator": torch.optim.Adam(model.generator.parameters(), lr=config.lr, betas=betas),
            "critic": torch.optim.Adam(critic.parameters(), lr=config.lr, betas=betas),
            # maximum likelihood, not adversarial: standard Adam betas
            "multiplicity": torch.optim.Adam(model.multiplicity.parameters(), lr=config.multiplicity_lr),
        }
        self.generator_ema = GeneratorAverage(model.generator, config.generator_ema_decay)
        # set by the loop's early stopping (train/multiplicity_fit.py): m_loss is still
        # computed and reported, but the multiplicity model is no longer updated
        self.multiplicity_frozen = False
        # set by the loop: False during the critic warm-up (config.critic_warmup_steps), when
        # g_loss is computed and reported but the generator and its average stay unchanged
        self.update_generator = True

    # ------------------------------------------------------------------ public API
    def __call__(self, batch: RaggedBatch, rng: torch.Generator) -> StepResult:
        """One generator step on ``batch`` (physical units) with all randomness from ``rng``."""
        result = StepResult(losses={}, applied=True, n_events=batch.n_events, n_muons=batch.n_muons)
        bad_inputs = non_finite_inputs(batch)
        if bad_inputs:
            result.applied, result.bad = False, bad_inputs
            result.losses = {name: float("nan") for name in ("c_loss", "g_loss", "g_w1", "g_ed", "m_loss", "gp", "w_distance")}
            return result
        self.model.train()
        self.critic.train()
        set_batch = non_empty_events(batch)
        muon_budget = self.config.max_muons_per_step
        if self.device.type == "cpu":
            muon_budget = min(muon_budget, CPU_CHUNK_MUONS)
        critic_batches = [
            CriticBatch(part, prepare_micro_batches(part, self.model.transform, muon_budget, self.device))
            for part in split_into_critic_batches(set_batch, self.config.critic_steps)
        ]
        adversarial_ok = True
        # under DDP a rank without muons still takes part in every update's all-reduce
        if critic_batches or _distributed_world_size() > 1:
            adversarial_ok = self._adversarial_updates(critic_batches, rng, result)
        else:
            result.losses.update(c_loss=0.0, g_loss=0.0, g_w1=0.0, g_ed=0.0, gp=0.0, w_distance=0.0)
        multiplicity_ok = self._multiplicity_update(batch, result)
        result.applied = adversarial_ok and multiplicity_ok
        return result

    def set_learning_rates(self, lr_scale: float, adversarial_factor: float = 1.0) -> None:
        """Set every optimiser's learning rate from the config: ``lr * lr_scale * adversarial_factor``
        for the generator and critic, ``multiplicity_lr * lr_scale`` for the multiplicity model.

        ``lr_scale``: the divergence guard's accumulated rollback factor; ``adversarial_factor``:
        the learning-rate schedule (:func:`adversarial_lr_factor`). Absolute, not multiplicative,
        so the rates are a function of (config, guard state, step) alone.
        """
        for name, optimizer in self.optimizers.items():
            base = self.config.multiplicity_lr if name == "multiplicity" else self.config.lr * adversarial_factor
            for group in optimizer.param_groups:
                group["lr"] = base * lr_scale

    def state_dict(self) -> dict:
        """Optimiser states and the generator average (for checkpoints)."""
        return {
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "generator_ema": self.generator_ema.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` wrote. A checkpoint from before the generator
        average existed starts the average at the restored generator weights (logged)."""
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        if "generator_ema" in state:
            self.generator_ema.load_state_dict(state["generator_ema"])
        else:
            logger.warning("checkpoint has no generator average: starting it at the current generator weights")
            self.generator_ema.restart()

    # ------------------------------------------------------------------ adversarial part
    def _adversarial_updates(self, critic_batches: list["CriticBatch"], rng: torch.Generator, result: StepResult) -> bool:
        empty = CriticBatch(RaggedBatch.empty(), [])  # a DDP rank without muons
        critic_totals = torch.zeros(4, device=self.device)  # c_loss, gp, w_distance, saturated count
        n_scores = 0  # real + fake scores seen by the saturation count
        n_critic = 0
        ok = True
        for update in range(self.config.critic_steps):
            part = critic_batches[update % len(critic_batches)] if critic_batches else empty
            n_events = part.events.n_events
            noise = self.model.generator.draw_noise(n_events, part.events.n_muons, rng, self.device)
            alpha = torch.rand(n_events, generator=rng, device=rng.device).to(self.device)
            totals = self._critic_update(part.micro_batches, noise, alpha, n_events)
            finite = self._finish_update("critic", self.critic.parameters(), totals[:2], ("c_loss", "gp"), result)
            critic_totals += totals
            n_scores += 2 * n_events
            n_critic += 1
            if not finite:
                ok = False
                break
        losses = (critic_totals[:3] / max(n_critic, 1)).tolist()
        result.losses.update(c_loss=losses[0], gp=losses[1], w_distance=losses[2])
        result.saturated_fraction = critic_totals[3].item() / max(n_scores, 1)
        if not ok:
            result.losses.update(g_loss=float("nan"), g_w1=float("nan"), g_ed=float("nan"))
            return False
        # the generator batch: one of the critic batches (Algorithm 1 uses batches of equal size)
        choice = int(torch.randint(max(len(critic_batches), 1), (1,), generator=rng, device=rng.device))
        part = critic_batches[choice] if critic_batches else empty
        noise = self.model.generator.draw_noise(part.events.n_events, part.events.n_muons, rng, self.device)
        if not self.update_generator:  # critic warm-up
            with torch.no_grad():
                g_loss, g_w1, g_ed = self._generator_update(part.micro_batches, noise, part.events.n_events)
            result.losses.update(g_loss=g_loss.item(), g_w1=g_w1.item(), g_ed=g_ed.item())
            return True
        g_loss, g_w1, g_ed = self._generator_update(part.micro_batches, noise, part.events.n_events)
        ok = self._finish_update(
            "generator", self.model.generator.parameters(), torch.stack((g_loss, g_w1, g_ed)), ("g_loss", "g_w1", "g_ed"),
            result,
        )
        result.losses.update(g_loss=g_loss.item(), g_w1=g_w1.item(), g_ed=g_ed.item())
        if ok:
            self.generator_ema.update()
        return ok

    def _critic_update(self, micro_batches: list[MicroBatch], noise, alpha: Tensor, n_events: int) -> Tensor:
        """Accumulate critic gradients over the micro-batches; returns (4,) sums:
        c_loss, gp, w_distance (event means) and the number of saturated scores."""
        generator, critic, config = self.model.generator, self.critic, self.config
        self.optimizers["critic"].zero_grad(set_to_none=True)
        critic.requires_grad_(True)
        totals = torch.zeros(4, device=self.device)
        saturation_threshold = SATURATION_LEVEL * critic.score_scale
        for mb in micro_batches:
            mb_noise = noise.select(*mb.events, *mb.muons)
            with torch.no_grad(), self._autocast():
                fake = generator(mb.cond_features, mb.counts, mb.event_index, noise=mb_noise).float()
            b = mb.n_events
            # real and fake in one critic call: same function, half the kernel launches
            with self._autocast():
                scores = critic(
                    torch.cat((mb.cond_features, mb.cond_features)),
                    torch.cat((mb.counts, mb.counts)),
                    torch.cat((mb.real_features, fake)),
                    torch.cat((mb.event_index, mb.event_index + b)),
                ).float()
            real_scores, fake_scores = scores[:b], scores[b:]
            weight = alpha[mb.events[0] : mb.events[1]].index_select(0, mb.event_index).unsqueeze(1)
            interpolated = (weight * mb.real_features + (1.0 - weight) * fake).requires_grad_(True)
            with self._autocast():
                interpolated_scores = critic(mb.cond_features, mb.counts, interpolated, mb.event_index).float()
            penalty = (per_event_gradient_norm(interpolated_scores, interpolated, mb.event_index) - 1.0).square()
            wasserstein = real_scores.sum() - fake_scores.sum()
            gp_sum = penalty.sum()
            loss_sum = -wasserstein + config.gp_lambda * gp_sum
            (loss_sum / n_events).backward()
            with torch.no_grad():  # step summaries; n_events >= 1 here
                saturated = (scores.abs() > saturation_threshold).sum()
                totals += torch.stack((loss_sum, gp_sum, wasserstein, saturated.to(totals.dtype))) / torch.tensor(
                    [n_events, n_events, n_events, 1.0], device=self.device
                )
        return totals

    def _generator_update(self, micro_batches: list[MicroBatch], noise, n_events: int) -> tuple[Tensor, Tensor, Tensor]:
        """Accumulate generator gradients of L_G = -mean D(fake) + w * W1 + w' * ED (module
        docstring); returns (-mean D(fake), W1, ED), each 0-d, W1 and ED the event-weighted means
        over the micro-batches (0 when their weight is 0). Under ``torch.no_grad()`` only the
        losses are computed."""
        generator, critic = self.model.generator, self.critic
        weight = self.config.muon_w1_weight
        ed_weight = self.config.muon_energy_distance_weight
        self.optimizers["generator"].zero_grad(set_to_none=True)
        critic.requires_grad_(False)  # no critic weight gradients needed here
        total = torch.zeros((), device=self.device)
        total_w1 = torch.zeros((), device=self.device)
        total_ed = torch.zeros((), device=self.device)
        try:
            for mb in micro_batches:
                with self._autocast():
                    fake = generator(
                        mb.cond_features, mb.counts, mb.event_index, noise=noise.select(*mb.events, *mb.muons)
                    )
                    loss_sum = -critic(mb.cond_features, mb.counts, fake, mb.event_index).float().sum()
                w1_sum = mb.n_events * marginal_w1(fake.float(), mb.real_features) if weight else total_w1.new_zeros(())
                ed_sum = (mb.n_events * marginal_energy_distance(*self._energy_distance_features(fake.float(), mb.real_features))
                          if ed_weight else total_ed.new_zeros(()))
                objective = loss_sum + weight * w1_sum + ed_weight * ed_sum
                if objective.requires_grad:
                    (objective / n_events).backward()
                total += loss_sum.detach()
                total_w1 += w1_sum.detach()
                total_ed += ed_sum.detach()
        finally:
            critic.requires_grad_(True)
        scale = max(n_events, 1)
        return total / scale, total_w1 / scale, total_ed / scale

    def _energy_distance_features(self, generated: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
        """The (M, F) muon features the energy-distance term compares: the feature axes, plus
        with ``config.muon_energy_distance_radius`` the radial feature of :func:`with_radial_feature`."""
        if not self.config.muon_energy_distance_radius:
            return generated, real
        scale = self.model.transform.position_scale
        return with_radial_feature(generated, scale), with_radial_feature(real, scale)

    # ------------------------------------------------------------------ multiplicity part
    def _multiplicity_update(self, batch: RaggedBatch, result: StepResult) -> bool:
        model = self.model
        part = batch.to_torch(self.device)
        self.optimizers["multiplicity"].zero_grad(set_to_none=True)
        with torch.set_grad_enabled(not self.multiplicity_frozen):
            loss = model.multiplicity.nll(model.transform.condition_features(part.conditions), part.counts)
        if self.multiplicity_frozen:  # early-stopped: reported, not trained
            result.losses["m_loss"] = loss.item()
            return True
        loss.backward()
        ok = self._finish_update("multiplicity", model.multiplicity.parameters(), loss.detach().unsqueeze(0), ("m_loss",), result)
        result.losses["m_loss"] = loss.item()
        return ok

    # ------------------------------------------------------------------ shared
    def _autocast(self) -> torch.autocast:
        """bf16 autocast of the set networks on CUDA when ``config.bf16`` (a no-op elsewhere).

        The multiplicity likelihood always runs in full precision.
        """
        enabled = bool(self.config.bf16) and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _finish_update(
        self,
        name: str,
        parameters: Iterable[nn.Parameter],
        losses: Tensor,
        loss_names: tuple[str, ...],
        result: StepResult,
    ) -> bool:
        """All-reduce (DDP), check finiteness with one host sync, clip if configured, step.

        Returns False (and records the names in ``result.bad``) when something is non-finite;
        then the gradients are dropped and the optimiser does not step.
        """
        optimizer = self.optimizers[name]
        parameters = list(parameters)
        if _distributed_world_size() > 1:  # every rank must all-reduce the same tensors
            for p in parameters:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
        parameters = [p for p in parameters if p.grad is not None]
        grads = [p.grad for p in parameters]
        _all_reduce_mean(grads)
        if self.config.grad_clip_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, self.config.grad_clip_norm)
        else:
            grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        finite = torch.isfinite(torch.cat((losses.detach().to(self.device), grad_norm.reshape(1).to(self.device))))
        finite_flags = finite.tolist()  # the one host sync of this update
        if all(finite_flags):
            optimizer.step()
            return True
        result.bad += [n for n, ok in zip(loss_names + (f"grad:{name}",), finite_flags) if not ok]
        optimizer.zero_grad(set_to_none=True)
        return False


def marginal_w1(generated: Tensor, real: Tensor) -> Tensor:
    """Sum over the features of the 1-D Wasserstein-1 distance between two (M, F) samples of
    equal size (muon features of the same events, generated and real): per feature the mean
    absolute difference of the sorted values, 0-d, in feature units. The evaluation's per-muon
    W1 of log10 E and log10 r (docs/evaluation.md) is this distance on pooled muons."""
    if generated.shape != real.shape:
        raise ValueError(f"marginal_w1: samples of shapes {tuple(generated.shape)} and {tuple(real.shape)}")
    if generated.shape[0] == 0:
        return generated.new_zeros(())
    return (torch.sort(generated, dim=0).values - torch.sort(real, dim=0).values).abs().mean(dim=0).sum()


def _pair_distance_sum(sorted_values: Tensor) -> Tensor:
    """(F,) sums over the pairs i < j of |v_i - v_j| per column of (M, F) column-sorted values:
    sum_k v_(k) (2k - M - 1), k = 1..M (exact, O(M))."""
    m = sorted_values.shape[0]
    factor = 2.0 * torch.arange(1, m + 1, device=sorted_values.device, dtype=sorted_values.dtype) - m - 1.0
    return (factor.unsqueeze(1) * sorted_values).sum(dim=0)


def marginal_energy_distance(generated: Tensor, real: Tensor) -> Tensor:
    """Sum over the features of the 1-D energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'|
    (Szekely & Rizzo 2013, J. Stat. Plan. Inference 143, 1249; in 1-D twice the Cramer distance
    int (F - G)^2) between two (M, F) samples of equal size, as its unbiased U-statistic
    (self-pairs excluded), 0-d, in feature units.

    Unlike :func:`marginal_w1` of two batches, whose expectation is smallest for a generator
    with less spread than the data (it pays for the random spread of its own order statistics,
    most in the tails), the U-statistic is an unbiased estimate of the distance of the two
    distributions, so its gradient vanishes on average when they agree. Per-sample gradient
    (4 / M) (F_real(x) - F_generated(x)): the difference of the empirical CDFs."""
    if generated.shape != real.shape:
        raise ValueError(f"marginal_energy_distance: samples of shapes {tuple(generated.shape)} and {tuple(real.shape)}")
    m = generated.shape[0]
    if m < 2:
        return generated.new_zeros(())
    within_generated = _pair_distance_sum(torch.sort(generated, dim=0).values)
    within_real = _pair_distance_sum(torch.sort(real, dim=0).values)
    all_pairs = _pair_distance_sum(torch.sort(torch.cat((generated, real)), dim=0).values)
    cross = all_pairs - within_generated - within_real  # sum over the M^2 pairs (generated, real)
    pairs_within = m * (m - 1) / 2.0
    distance = 2.0 * cross / (m * m) - within_generated / pairs_within - within_real / pairs_within
    return distance.sum()


def with_radial_feature(features: Tensor, position_scale: Tensor) -> Tensor:
    """(M, 3) standardised muon features (log10 E, asinh(x / r0) / u, asinh(y / r0) / u;
    :mod:`mubundle.model.transforms`) -> (M, 4): the same three and the radial feature
    rho = asinh(r / r0) / u with r = sqrt(x^2 + y^2).

    The axes x and y each see the lateral distribution only through a projection; rho, logarithmic
    above r0, weighs radii as the evaluation's W1 of log10 r does. r0 cancels:
    r / r0 = sqrt(sinh^2(u x') + sinh^2(u y')). A floor of 1e-12 under the square root keeps the
    gradient finite on the axis (r = 0)."""
    u = position_scale.to(features.dtype)
    scaled_sinh = torch.sinh(features[:, 1:3] * u)
    rho = torch.asinh(torch.sqrt(scaled_sinh.square().sum(dim=1) + 1e-12)) / u
    return torch.cat((features, rho.unsqueeze(1)), dim=1)


def adversarial_lr_factor(step: int, config: TrainConfig) -> float:
    """Learning-rate factor of the generator and critic for (1-based) ``step``.

    1 up to ``max_steps - lr_decay_steps``, then linear to ``lr_decay_final`` at ``max_steps``
    (``lr_decay_steps`` 0: always 1). A function of the step alone: a resumed run follows
    the same schedule.
    """
    if config.lr_decay_steps <= 0:
        return 1.0
    start = config.max_steps - config.lr_decay_steps
    fraction = min(max((step - start) / config.lr_decay_steps, 0.0), 1.0)
    return 1.0 - (1.0 - config.lr_decay_final) * fraction


class GeneratorAverage:
    """Exponential moving average of a generator's parameters (Polyak/EMA averaging,
    Yazici et al. 2019): smooths the oscillation of adversarial training; the average,
    not the raw weights, is what a run exports for sampling.

    ``update()`` after each applied generator step: avg <- d avg + (1 - d) w with
    d = min(decay, (1 + n) / (10 + n)) after n updates (the warm-up keeps early averages
    from remembering the initial weights). decay = 0 makes the average the raw weights.
    """

    def __init__(self, generator: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"generator_ema_decay must be in [0, 1), got {decay}")
        self.generator = generator
        self.decay = float(decay)
        self.parameters = [p.detach().clone() for p in generator.parameters()]
        self.n_updates = 0

    @torch.no_grad()
    def update(self) -> None:
        decay = min(self.decay, (1.0 + self.n_updates) / (10.0 + self.n_updates))
        torch._foreach_lerp_(self.parameters, [p.detach() for p in self.generator.parameters()], 1.0 - decay)
        self.n_updates += 1

    @torch.no_grad()
    def restart(self) -> None:
        """Start the average again at the generator's current weights."""
        for average, live in zip(self.parameters, self.generator.parameters()):
            average.copy_(live)
        self.n_updates = 0

    def averaged_state_dict(self) -> dict[str, Tensor]:
        """The generator's state dict with the averaged parameters in place of the live ones.

        The tensors are the average's own (not copies): ``load_state_dict`` copies them.
        """
        state = self.generator.state_dict()
        for (name, _), average in zip(self.generator.named_parameters(), self.parameters):
            state[name] = average
        return state

    def state_dict(self) -> dict:
        return {"parameters": [p.clone() for p in self.parameters], "n_updates": self.n_updates}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for average, saved in zip(self.parameters, state["parameters"], strict=True):
            average.copy_(saved)
        self.n_updates = int(state["n_updates"])


@dataclass(frozen=True)
class CriticBatch:
    """The real events of one critic update (N > 0 only) and their device micro-batches."""

    events: RaggedBatch
    micro_batches: list[MicroBatch]


def split_into_critic_batches(batch: RaggedBatch, n_batches: int) -> list[RaggedBatch]:
    """Split ``batch`` into ``min(n_batches, B)`` consecutive, disjoint parts of (as near as
    possible) equal event counts; every event is in exactly one part (views, no copy).

    An empty batch gives an empty list.
    """
    n_parts = min(n_batches, batch.n_events)
    bounds = [round(k * batch.n_events / n_parts) for k in range(n_parts + 1)] if n_parts else []
    return [batch.slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]


def per_event_gradient_norm(scores: Tensor, muon_inputs: Tensor, event_index: Tensor) -> Tensor:
    """||d score_e / d x_e||_2 over all muon features of each event e (differentiable).

    scores (B,) critic scores, muon_inputs (M, F) with requires_grad, event_index (M,) ->
    (B,) norms. One backward of sum(scores) gives every event's gradient at once because an
    event's score depends only on its own muons; squared gradients are summed per event with
    ``index_add_``. ``create_graph`` keeps the result differentiable for the penalty.
    """
    (grad,) = torch.autograd.grad(scores.sum(), muon_inputs, create_graph=True)
    squared_norm = grad.new_zeros(scores.shape[0]).index_add_(0, event_index, grad.square().sum(dim=1))
    return torch.sqrt(squared_norm + _GRAD_NORM_EPS)


def _all_reduce_mean(grads: list[Tensor]) -> None:
    """Average gradients over DDP ranks (no-op in a single process).

    A NaN on one rank becomes a NaN on every rank, so all ranks skip the same updates.
    """
    world_size = _distributed_world_size()
    if not grads or world_size == 1:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def _distributed_world_size() -> int:
    """Number of DDP ranks (1 without an initialised process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1
