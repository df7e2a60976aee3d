"""The speed shortcuts taken when autograd is off (sampling, the critic updates' generator
pass) compute the same function as the differentiable path."""

from __future__ import annotations

import torch

from mubundle.model.config import ModelConfig
from mubundle.model.critic import BundleCritic
from mubundle.model.generator import BundleGenerator
from mubundle.model.layers import event_max

SMALL = ModelConfig(generator_context_dim=16, generator_hidden=16, critic_hidden=16, critic_pooled_dim=16)


def _ragged(counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    counts_t = torch.tensor(counts, dtype=torch.int64)
    return counts_t, torch.repeat_interleave(torch.arange(len(counts)), counts_t)


def _generator_and_inputs():
    """A seeded small generator, conditions (5, 4), counts, event_index and fixed noise."""
    torch.manual_seed(0)
    generator = BundleGenerator(SMALL)
    counts, event_index = _ragged([3, 0, 1, 7, 2])
    conditions = torch.randn(5, 4)
    noise = generator.draw_noise(5, int(counts.sum()), torch.Generator().manual_seed(1), "cpu")
    return generator, conditions, counts, event_index, noise


def test_generator_without_autograd_gives_the_same_muons_as_with_autograd():
    generator, conditions, counts, event_index, noise = _generator_and_inputs()
    with torch.no_grad():
        fast = generator(conditions, counts, event_index, noise=noise)
    differentiable = generator(conditions, counts, event_index, noise=noise)
    assert differentiable.requires_grad
    torch.testing.assert_close(fast, differentiable.detach(), rtol=0, atol=0)


def test_critic_without_autograd_gives_the_same_scores_as_with_autograd():
    torch.manual_seed(0)
    critic = BundleCritic(SMALL)
    counts, event_index = _ragged([4, 1, 6])
    conditions, muons = torch.randn(3, 4), torch.randn(11, 3)
    with torch.no_grad():
        fast = critic(conditions, counts, muons, event_index)
    differentiable = critic(conditions, counts, muons.requires_grad_(True), event_index)
    torch.testing.assert_close(fast, differentiable.detach(), rtol=0, atol=0)


def test_event_max_shortcut_matches_the_differentiable_max_and_fills_empty_events_with_zero():
    values = torch.tensor([[1.0, -2.0], [3.0, -5.0], [-1.0, -0.5]])
    event_index = torch.tensor([0, 0, 2])
    with torch.no_grad():
        fast = event_max(values, event_index, 3)
    differentiable = event_max(values.clone().requires_grad_(True), event_index, 3)
    expected = torch.tensor([[3.0, -2.0], [0.0, 0.0], [-1.0, -0.5]])
    torch.testing.assert_close(fast, expected, rtol=0, atol=0)
    torch.testing.assert_close(differentiable.detach(), expected, rtol=0, atol=0)


def test_max_pooling_passes_the_gradient_to_the_maximal_muon_of_each_event():
    values = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    event_index = torch.tensor([0, 0, 0, 1, 3, 3])
    assert torch.autograd.gradcheck(lambda v: event_max(v, event_index, 4), (values,))


def test_critic_and_generator_gradients_match_finite_differences():
    """Analytic gradients of the networks (what the WGAN-GP optimises) are the true ones."""
    torch.manual_seed(0)
    counts, event_index = _ragged([3, 1, 0, 2])
    conditions = torch.randn(4, 4, dtype=torch.float64)
    critic = BundleCritic(SMALL).double()
    muons = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: critic(conditions, counts, m, event_index), (muons,))
    generator = BundleGenerator(SMALL).double()
    noise = generator.draw_noise(4, 6, torch.Generator().manual_seed(2), "cpu")
    noise = type(noise)(noise.global_noise.double(), noise.muon_noise.double())
    conditions.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: generator(c, counts, event_index, noise=noise), (conditions,))


def test_generator_runs_under_bf16_autocast_with_and_without_autograd():
    # the in-place GEMM accumulators must fall back to out-of-place ops when autocast mixes
    # dtypes (bf16 training on CUDA; CPU autocast exercises the same code here)
    generator, conditions, counts, event_index, noise = _generator_and_inputs()
    reference = generator(conditions, counts, event_index, noise=noise).detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            fast = generator(conditions, counts, event_index, noise=noise)
        differentiable = generator(conditions, counts, event_index, noise=noise)
    differentiable.float().square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in generator.parameters() if p.requires_grad)
    for output in (fast, differentiable.detach()):
        torch.testing.assert_close(output.float(), reference, rtol=0.1, atol=0.1)


def test_muonless_events_change_no_muon_of_another_event(monkeypatch):
    """sample_muons runs the generator on events with muons only and draws noise for them
    only: inserting muon-less events anywhere leaves every muon as it was (bit for bit up to
    float32 rounding), and the generator of those events alone, with the same noise, gives them."""
    import numpy as np
    from helpers import SMALL_MODEL, make_synthetic_batch

    from mubundle.model import bundle
    from mubundle.model.bundle import MuonBundleModel
    from mubundle.model.chunking import muon_budget_chunks
    from mubundle.model.transforms import FeatureTransform

    batch = make_synthetic_batch(60, seed=3)
    torch.manual_seed(0)
    model = MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(batch)).eval()
    counts = torch.from_numpy(batch.counts)
    counts[:7] = 0  # with a budget of 12 muons the first call holds only muon-less events
    conditions = torch.from_numpy(batch.conditions)
    monkeypatch.setattr(bundle, "_MUONS_PER_GENERATOR_CALL_CPU", 12)
    fast = model.sample_muons(conditions, counts, torch.Generator().manual_seed(5))
    keep = counts > 0
    assert int((~keep).sum()) > 7 and fast.shape == (int(counts.sum()), 3)
    alone = model.sample_muons(conditions[keep], counts[keep], torch.Generator().manual_seed(5))
    torch.testing.assert_close(fast, alone, rtol=1e-5, atol=1e-5)

    random = torch.Generator().manual_seed(5)
    expected = []
    with torch.no_grad():
        for start, stop in muon_budget_chunks(counts[keep].numpy(), 12):
            part_counts, part_conditions = counts[keep][start:stop], conditions[keep][start:stop]
            event_index = torch.repeat_interleave(torch.arange(stop - start), part_counts)
            noise = model.generator.draw_noise(stop - start, len(event_index), random, "cpu")
            features = model.generator(model.transform.condition_features(part_conditions), part_counts, event_index, noise=noise)
            expected.append(model.transform.muons_from_features(features))
    # float32 rounding only (GEMMs of fewer rows may block differently): a muon given another
    # event's or another muon's noise differs by O(1)
    torch.testing.assert_close(fast, torch.cat(expected), rtol=1e-4, atol=1e-4)
    assert np.isfinite(fast.numpy()).all()
