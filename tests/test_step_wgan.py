"""The WGAN-GP training step: finite, reproducible, micro-batch invariant, NaN-safe."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from helpers import SMALL_MODEL as SMALL, make_synthetic_batch
from mubundle.data.batch import RaggedBatch
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.critic import BundleCritic
from mubundle.model.transforms import FeatureTransform
from mubundle.train.config import TrainConfig
from mubundle.train.step import StepResult, WganStep



@pytest.fixture
def batch() -> RaggedBatch:
    return make_synthetic_batch(48, seed=1)


def _make_step(batch: RaggedBatch, seed: int = 0, **overrides) -> WganStep:
    config = TrainConfig(model=SMALL, **{"critic_steps": 2, **overrides})
    torch.manual_seed(seed)
    model = MuonBundleModel(config.model, FeatureTransform.fit(batch))
    critic = BundleCritic(config.model)
    return WganStep(model, critic, config, torch.device("cpu"))


def _parameters(step: WganStep) -> dict[str, torch.Tensor]:
    named = {f"model.{k}": v for k, v in step.model.named_parameters()}
    named.update({f"critic.{k}": v for k, v in step.critic.named_parameters()})
    return {k: v.detach().clone() for k, v in named.items()}


def _rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_a_step_returns_finite_losses_and_updates_every_network(batch):
    step = _make_step(batch)
    before = _parameters(step)
    result = step(batch, _rng())
    assert isinstance(result, StepResult) and result.applied and result.bad == []
    assert {"c_loss", "g_loss", "m_loss", "gp"} <= set(result.losses)
    assert all(np.isfinite(v) for v in result.losses.values())
    assert result.n_events == len(batch) and result.n_muons == batch.n_muons
    assert 0.0 <= result.saturated_fraction <= 1.0
    after = _parameters(step)
    for prefix in ("model.generator.", "model.multiplicity.", "critic."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix


def test_the_same_rng_seed_gives_the_same_losses_and_parameters(batch):
    first, second = _make_step(batch), _make_step(batch)
    results = [[s(batch, rng) for _ in range(2)] for s, rng in ((first, _rng(4)), (second, _rng(4)))]
    assert [r.losses for r in results[0]] == [r.losses for r in results[1]]
    for name, value in _parameters(first).items():
        assert torch.equal(value, _parameters(second)[name]), name


def test_a_micro_batched_step_equals_the_unsplit_step(batch):
    assert batch.counts.max() > 6  # some micro-batches hold a single event above the budget
    whole = _make_step(batch, max_muons_per_step=1_000_000)
    split = _make_step(batch, max_muons_per_step=6)
    whole_result, split_result = whole(batch, _rng(2)), split(batch, _rng(2))
    for name in ("c_loss", "g_loss", "m_loss", "gp"):
        np.testing.assert_allclose(split_result.losses[name], whole_result.losses[name], rtol=1e-5, atol=1e-6)
    split_parameters = _parameters(split)
    for name, value in _parameters(whole).items():
        torch.testing.assert_close(split_parameters[name], value, rtol=0, atol=1e-5, msg=name)


def test_non_finite_input_skips_the_step_without_touching_parameters(batch):
    step = _make_step(batch)
    conditions = batch.conditions.copy()
    conditions[3, 0] = np.nan
    poisoned = RaggedBatch(conditions, batch.counts, batch.flat_muons)
    before = _parameters(step)
    result = step(poisoned, _rng())
    assert not result.applied and "input:conditions" in result.bad
    for name, value in _parameters(step).items():
        assert torch.equal(value, before[name]), name


def test_a_nan_critic_weight_skips_the_adversarial_updates_without_raising(batch):
    step = _make_step(batch)
    with torch.no_grad():
        step.critic.muon_hidden[0].weight[0, 0] = float("nan")
    before = _parameters(step)
    result = step(batch, _rng())
    assert not result.applied
    assert {"c_loss", "grad:critic"} & set(result.bad)
    after = _parameters(step)
    for name, value in before.items():
        if name.startswith(("critic.", "model.generator.")):
            torch.testing.assert_close(after[name], value, rtol=0, atol=0, equal_nan=True, msg=name)
    # the multiplicity model does not depend on the critic and still learns
    assert np.isfinite(result.losses["m_loss"]) and "m_loss" not in result.bad


def test_a_batch_without_muons_trains_only_the_multiplicity_model(batch):
    conditions = batch.conditions[:10]
    empty = RaggedBatch(conditions, np.zeros(10, np.int64), np.zeros((0, 3), np.float32))
    step = _make_step(batch)
    before = _parameters(step)
    result = step(empty, _rng())
    assert result.applied and result.n_muons == 0 and np.isfinite(result.losses["m_loss"])
    after = _parameters(step)
    assert all(torch.equal(after[k], v) for k, v in before.items() if not k.startswith("model.multiplicity."))
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("model.multiplicity."))


def test_saturated_critic_scores_are_reported(batch):
    step = _make_step(batch)
    with torch.no_grad():
        step.critic.decision[-1].bias.fill_(1e4)
    assert step(batch, _rng()).saturated_fraction > 0.99


def test_learning_rates_follow_config_guard_scale_and_schedule(batch):
    step = _make_step(batch)
    config = step.config
    step.set_learning_rates(0.5, adversarial_factor=0.2)
    assert set(step.optimizers) == {"generator", "critic", "multiplicity"}
    expected = {"generator": 0.1 * config.lr, "critic": 0.1 * config.lr, "multiplicity": 0.5 * config.multiplicity_lr}
    for name, opt in step.optimizers.items():
        assert opt.param_groups[0]["lr"] == pytest.approx(expected[name])
    step.set_learning_rates(1.0)  # absolute: nothing left over from the previous call
    assert step.optimizers["critic"].param_groups[0]["lr"] == pytest.approx(config.lr)


def test_adversarial_lr_schedule_is_constant_then_linear_to_the_final_fraction():
    from mubundle.train.config import TrainConfig
    from mubundle.train.step import adversarial_lr_factor

    assert adversarial_lr_factor(7, TrainConfig(max_steps=10)) == 1.0  # no decay by default
    config = TrainConfig(max_steps=100, lr_decay_steps=40, lr_decay_final=0.1)
    factors = [adversarial_lr_factor(step, config) for step in range(1, 101)]
    assert factors[:60] == [1.0] * 60
    assert factors[-1] == pytest.approx(0.1) and factors[79] == pytest.approx(1.0 - 0.9 * 0.5)
    assert all(a > b for a, b in zip(factors[60:], factors[61:]))


def test_restoring_weights_optimizers_and_rng_reproduces_the_next_step_exactly(batch):
    reference = _make_step(batch)
    rng = _rng(9)
    reference(batch, rng)
    saved = (
        copy.deepcopy(reference.model.state_dict()),
        copy.deepcopy(reference.critic.state_dict()),
        copy.deepcopy(reference.state_dict()),
        rng.get_state(),
    )
    expected = reference(batch, rng).losses

    resumed = _make_step(batch, seed=123)  # different initial weights, overwritten below
    resumed.model.load_state_dict(saved[0])
    resumed.critic.load_state_dict(saved[1])
    resumed.load_state_dict(saved[2])
    resumed_rng = torch.Generator()
    resumed_rng.set_state(saved[3])
    assert resumed(batch, resumed_rng).losses == expected
    reference_average = reference.generator_ema.state_dict()
    resumed_average = resumed.generator_ema.state_dict()
    assert resumed_average["n_updates"] == reference_average["n_updates"] == 2
    for mine, theirs in zip(resumed_average["parameters"], reference_average["parameters"]):
        assert torch.equal(mine, theirs)


def test_the_gradient_penalty_norm_is_taken_per_event_over_all_its_muons():
    from mubundle.train.step import per_event_gradient_norm

    torch.manual_seed(0)
    critic = BundleCritic(SMALL)
    counts = torch.tensor([3, 1, 2])
    event_index = torch.tensor([0, 0, 0, 1, 2, 2])
    cond, features = torch.randn(3, 4), torch.randn(6, 3, requires_grad=True)
    norms = per_event_gradient_norm(critic(cond, counts, features, event_index), features, event_index)
    for event in range(3):
        rows = (event_index == event).nonzero().squeeze(1)
        own = features[rows].detach().requires_grad_(True)
        score = critic(cond[event : event + 1], counts[event : event + 1], own, torch.zeros(len(rows), dtype=torch.long))
        (grad,) = torch.autograd.grad(score.sum(), own)
        torch.testing.assert_close(norms[event], grad.norm(), rtol=1e-5, atol=1e-6)
    norms.sum().backward()  # differentiable: the penalty trains the critic
    assert features.grad is not None and torch.isfinite(features.grad).all()


@pytest.mark.parametrize("n_events, n_parts", [(0, 5), (1, 5), (3, 5), (5, 5), (17, 5), (48, 1), (1000, 7)])
def test_critic_batches_are_disjoint_consecutive_and_cover_every_event(n_events, n_parts):
    from mubundle.train.step import split_into_critic_batches

    batch = make_synthetic_batch(n_events, seed=3)
    parts = split_into_critic_batches(batch, n_parts)
    assert len(parts) == min(n_parts, n_events)
    sizes = [p.n_events for p in parts]
    assert sum(sizes) == n_events and (not sizes or max(sizes) - min(sizes) <= 1)
    if parts:
        np.testing.assert_array_equal(np.concatenate([p.counts for p in parts]), batch.counts)
        np.testing.assert_array_equal(np.concatenate([p.flat_muons for p in parts]), batch.flat_muons)
        np.testing.assert_array_equal(np.concatenate([p.conditions for p in parts]), batch.conditions)


def test_the_critic_updates_of_a_step_see_every_real_muon_exactly_once(batch, monkeypatch):
    from mubundle.train.microbatch import non_empty_events

    step = _make_step(batch, critic_steps=3)
    seen: list[torch.Tensor] = []
    original = WganStep._critic_update

    def recording(self, micro_batches, noise, alpha, n_events):
        assert sum(mb.n_events for mb in micro_batches) == n_events
        seen.append(torch.cat([mb.real_features for mb in micro_batches]))
        return original(self, micro_batches, noise, alpha, n_events)

    monkeypatch.setattr(WganStep, "_critic_update", recording)
    assert step(batch, _rng()).applied
    assert len(seen) == 3 and all(len(part) > 0 for part in seen)
    set_batch = non_empty_events(batch)
    expected = step.model.transform.muon_features(torch.as_tensor(set_batch.flat_muons))
    torch.testing.assert_close(torch.cat(seen), expected.float())


def test_a_step_with_fewer_non_empty_events_than_critic_updates_cycles_over_them(batch):
    counts = np.array([3, 0, 0, 1] + [0] * 8, dtype=np.int64)  # two non-empty events
    few = RaggedBatch(batch.conditions[:12], counts, batch.flat_muons[:4])
    step = _make_step(batch, critic_steps=5)
    seen = []
    original = WganStep._critic_update
    step._critic_update = lambda mbs, noise, alpha, n: seen.append(n) or original(step, mbs, noise, alpha, n)
    result = step(few, _rng())
    assert result.applied and all(np.isfinite(v) for v in result.losses.values())
    assert seen == [1, 1, 1, 1, 1]


def test_the_generator_average_follows_its_recursion_and_skips_failed_updates(batch):
    step = _make_step(batch, generator_ema_decay=0.8)
    expected = [p.detach().clone() for p in step.model.generator.parameters()]
    rng = _rng(5)
    for n in range(3):
        assert step(batch, rng).applied
        decay = min(0.8, (1 + n) / (10 + n))
        expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, step.model.generator.parameters())]
    for averaged, wanted in zip(step.generator_ema.parameters, expected):
        torch.testing.assert_close(averaged, wanted, rtol=1e-6, atol=1e-7)
    assert step.generator_ema.n_updates == 3
    with torch.no_grad():
        step.critic.muon_hidden[0].weight[0, 0] = float("nan")
    before = [p.clone() for p in step.generator_ema.parameters]
    assert not step(batch, rng).applied
    assert step.generator_ema.n_updates == 3
    assert all(torch.equal(a, b) for a, b in zip(step.generator_ema.parameters, before))


def test_an_old_checkpoint_without_a_generator_average_starts_it_at_the_restored_weights(batch):
    step = _make_step(batch)
    step(batch, _rng())
    state = step.state_dict()
    del state["generator_ema"]
    fresh = _make_step(batch, seed=7)
    fresh.model.load_state_dict(step.model.state_dict())
    fresh.load_state_dict(state)
    assert fresh.generator_ema.n_updates == 0
    for averaged, live in zip(fresh.generator_ema.parameters, step.model.generator.parameters()):
        assert torch.equal(averaged, live.detach())


def test_marginal_w1_is_the_per_feature_wasserstein_distance_of_sorted_samples():
    from mubundle.train.step import marginal_w1

    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.normal(size=(500, 3)).astype(np.float32))
    assert float(marginal_w1(real[torch.randperm(500)], real)) == 0.0  # order does not matter
    shifted = real + torch.tensor([0.25, 0.0, -0.5])
    assert float(marginal_w1(shifted, real)) == pytest.approx(0.75, rel=1e-6)  # |0.25| + |-0.5|
    assert float(marginal_w1(real[:0], real[:0])) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        marginal_w1(real[:10], real[:11])


@pytest.mark.parametrize(
    "weight_field, loss_name, extra",
    [("muon_w1_weight", "g_w1", {}), ("muon_energy_distance_weight", "g_ed", {}),
     ("muon_energy_distance_weight", "g_ed", {"muon_energy_distance_radius": True})],
)
def test_a_per_muon_term_is_reported_and_pulls_the_generated_muons_towards_the_real_ones(batch, weight_field, loss_name, extra):
    plain = _make_step(batch, **extra)
    assert plain(batch, _rng(3)).losses[loss_name] == 0.0  # off by default: not even computed

    def run(weight: float) -> list[float]:
        step = _make_step(batch, seed=5, lr=3e-3, critic_steps=1, **{weight_field: weight}, **extra)
        return [step(batch, _rng(k)).losses[loss_name] for k in range(25)]

    without, with_term = run(0.0), run(1000.0)
    assert without == [0.0] * 25
    assert all(np.isfinite(with_term)) and with_term[0] > 0
    assert np.mean(with_term[-5:]) < 0.5 * with_term[0]  # the term dominates the loss at this weight: it falls


def test_marginal_energy_distance_is_the_unbiased_u_statistic_of_all_pairs():
    from mubundle.train.step import marginal_energy_distance

    rng = np.random.default_rng(1)
    generated = torch.from_numpy(rng.normal(size=(40, 2)))
    real = torch.from_numpy(rng.normal(0.3, 1.5, size=(40, 2)))
    expected = 0.0
    for f in range(2):
        a, b = generated[:, f], real[:, f]
        cross = (a[:, None] - b[None, :]).abs().mean()
        within_a = (a[:, None] - a[None, :]).abs().sum() / (40 * 39)  # self-pairs (0) excluded
        within_b = (b[:, None] - b[None, :]).abs().sum() / (40 * 39)
        expected += float(2 * cross - within_a - within_b)
    assert float(marginal_energy_distance(generated, real)) == pytest.approx(expected, rel=1e-12)
    assert float(marginal_energy_distance(real[:1], real[:1])) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        marginal_energy_distance(real[:10], real[:11])


def test_with_radial_feature_appends_rho_to_the_muon_features(batch):
    from mubundle.train.step import with_radial_feature

    transform = FeatureTransform.fit(batch)
    muons = torch.from_numpy(batch.flat_muons[:200].astype(np.float32))
    features = transform.muon_features(muons)
    extended = with_radial_feature(features, transform.position_scale)
    assert extended.shape == (features.shape[0], 4) and torch.equal(extended[:, :3], features)
    radius = np.hypot(batch.flat_muons[:200, 1], batch.flat_muons[:200, 2])
    expected_rho = np.arcsinh(radius / float(transform.core_radius_m)) / float(transform.position_scale)
    np.testing.assert_allclose(extended[:, 3].numpy(), expected_rho, rtol=1e-4, atol=1e-5)
    on_axis = torch.zeros(3, 3, requires_grad=True)  # r = 0: finite gradient
    with_radial_feature(on_axis, transform.position_scale).sum().backward()
    assert torch.isfinite(on_axis.grad).all()


def test_only_the_radial_feature_sees_a_wrong_radius_distribution_with_the_right_x_and_y():
    """Muons on a ring (r ~ 1) against the same x and y values paired at random (r spread from 0
    to ~1.4): every axis holds the same multiset, so the energy distance of the axes cannot tell
    the two from the ring itself; with the radial feature it can."""
    from mubundle.train.step import with_radial_feature, marginal_energy_distance

    rng = np.random.default_rng(3)
    m = 400
    angle = rng.uniform(0, 2 * np.pi, m)
    radius = rng.normal(1.0, 0.03, m)
    ring = torch.from_numpy(np.stack([rng.normal(size=m), radius * np.cos(angle), radius * np.sin(angle)], axis=1))
    order = torch.Generator().manual_seed(0)
    shuffled = ring[torch.randperm(m, generator=order)]  # the ring in another order
    unpaired = ring.clone()
    unpaired[:, 2] = ring[torch.randperm(m, generator=order), 2]  # y paired with another muon's x
    scale = torch.tensor(1.0, dtype=torch.float64)
    assert float(marginal_energy_distance(unpaired, ring)) == pytest.approx(float(marginal_energy_distance(shuffled, ring)), abs=1e-12)

    def radial(sample: torch.Tensor) -> float:
        return float(marginal_energy_distance(with_radial_feature(sample, scale), with_radial_feature(ring, scale)))

    assert radial(unpaired) - radial(shuffled) > 0.05  # 0.08; the U-statistic of equal samples is ~ +-0.015


def test_the_energy_distance_does_not_shrink_a_generator_that_matches_the_data_unlike_batch_w1():
    """At equality the batch W1 still pulls a generator's spread in (it pays for the random
    spread of its own order statistics); the unbiased energy distance has no mean gradient."""
    from mubundle.train.step import marginal_energy_distance, marginal_w1

    generator = torch.Generator().manual_seed(2)

    def mean_scale_gradient(distance) -> tuple[float, float]:
        gradients = []
        for _ in range(1000):
            scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
            generated = scale * torch.randn(100, 1, generator=generator, dtype=torch.float64)
            distance(generated, torch.randn(100, 1, generator=generator, dtype=torch.float64)).backward()
            gradients.append(float(scale.grad))
        return float(np.mean(gradients)), float(np.std(gradients) / np.sqrt(len(gradients)))

    w1_mean, w1_error = mean_scale_gradient(marginal_w1)
    ed_mean, ed_error = mean_scale_gradient(marginal_energy_distance)
    assert w1_mean > 5 * w1_error  # descent on W1 shrinks the spread of a correct generator
    assert abs(ed_mean) < 3 * ed_error  # the energy distance leaves it
