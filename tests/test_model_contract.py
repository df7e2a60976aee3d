"""Contract of the model package: shapes, transforms, sampling reproducibility, save/load."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from helpers import SMALL_MODEL as SMALL, make_synthetic_batch
from mubundle.data.batch import RaggedBatch
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.chunking import muon_budget_chunks
from mubundle.model.critic import BundleCritic
from mubundle.model.generator import BundleGenerator
from mubundle.model.transforms import FeatureTransform



@pytest.fixture
def batch() -> RaggedBatch:
    return make_synthetic_batch(40, seed=3)


@pytest.fixture
def model(batch: RaggedBatch) -> MuonBundleModel:
    torch.manual_seed(0)
    return MuonBundleModel(SMALL, FeatureTransform.fit(batch))


def test_transform_maps_muons_to_features_and_back_to_the_same_physical_values(batch):
    transform = FeatureTransform.fit(batch)
    tb = batch.to_torch()
    features = transform.muon_features(tb.flat_muons)
    assert features.shape == (batch.n_muons, 3) and features.dtype == torch.float32
    back = transform.muons_from_features(features)
    np.testing.assert_allclose(back.numpy(), batch.flat_muons, rtol=1e-4, atol=1e-4)


def test_transform_standardises_the_fitted_features(batch):
    transform = FeatureTransform.fit(batch)
    tb = batch.to_torch()
    cond = transform.condition_features(tb.conditions)
    assert cond.shape == (len(batch), 4)
    np.testing.assert_allclose(cond.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(cond.std(0, unbiased=False).numpy(), 1.0, atol=1e-3)
    muons = transform.muon_features(tb.flat_muons)
    assert abs(float(muons[:, 0].mean())) < 1e-3 and abs(float(muons[:, 0].std(unbiased=False)) - 1) < 1e-3
    assert abs(float(muons[:, 1:].square().mean()) - 1.0) < 1e-3


def test_generated_features_always_map_to_positive_energies(model):
    wild = torch.tensor([[-40.0, 3.0, -3.0], [5.0, -2.0, 0.0]])
    muons = model.transform.muons_from_features(wild)
    assert (muons[:, 0] > 0).all()


def test_transform_round_trips_through_a_json_dict(batch):
    import json

    transform = FeatureTransform.fit(batch)
    restored = FeatureTransform.from_dict(json.loads(json.dumps(transform.to_dict())))
    for name, value in transform.state_dict().items():
        assert torch.equal(value, restored.state_dict()[name])


def test_transform_fit_survives_batches_without_muons_or_with_one_primary_mass():
    conditions = np.tile(np.array([[1e6, 0.3, 56.0, 2.0]], np.float32), (5, 1))
    empty = RaggedBatch(conditions, np.zeros(5, np.int64), np.zeros((0, 3), np.float32))
    transform = FeatureTransform.fit(empty)
    assert torch.isfinite(transform.condition_features(torch.from_numpy(conditions))).all()


def test_generator_returns_one_feature_row_per_muon(model, batch):
    tb = batch.to_torch()
    cond = model.transform.condition_features(tb.conditions)
    out = model.generator(cond, tb.counts, tb.event_index, torch.Generator().manual_seed(0))
    assert out.shape == (batch.n_muons, 3) and torch.isfinite(out).all()


def _two_bundles(generator: BundleGenerator):
    """A run function over two bundles (3 and 2 muons) with fixed noise, and that noise."""
    counts = torch.tensor([3, 2])
    event_index = torch.tensor([0, 0, 0, 1, 1])
    cond = torch.zeros(2, 4)
    noise = generator.draw_noise(2, 5, torch.Generator().manual_seed(1), "cpu")
    return (lambda: generator(cond, counts, event_index, noise=noise)), noise


def test_generator_muons_of_one_bundle_depend_on_each_other():
    """Set layers: changing one muon's noise changes its bundle-mates' features."""
    torch.manual_seed(0)
    run, noise = _two_bundles(BundleGenerator(SMALL))
    base = run()
    noise.muon_noise[0] += 1.0
    changed = run()
    assert not torch.allclose(base[1], changed[1])  # same bundle: affected
    assert torch.allclose(base[3:], changed[3:])  # other bundle: untouched


def test_generator_without_set_layers_draws_muons_independently_given_the_event():
    """generator_set_layers=0: a muon depends on its own noise and its event's context only."""
    torch.manual_seed(0)
    generator = BundleGenerator(dataclasses.replace(SMALL, generator_set_layers=0))
    assert len(generator.set_layers) == 0
    run, noise = _two_bundles(generator)
    base = run()
    noise.muon_noise[0] += 1.0
    changed = run()
    assert not torch.allclose(base[0], changed[0])
    torch.testing.assert_close(base[1:], changed[1:], rtol=0, atol=0)
    noise.global_noise[0] += 1.0  # the event noise still correlates a bundle's muons
    moved = run()
    assert not torch.allclose(moved[1:3], changed[1:3])
    torch.testing.assert_close(moved[3:], changed[3:], rtol=0, atol=0)


def test_model_without_set_layers_samples_and_round_trips(batch, tmp_path):
    torch.manual_seed(0)
    model = MuonBundleModel(dataclasses.replace(SMALL, generator_set_layers=0), FeatureTransform.fit(batch))
    args = (np.geomspace(1e5, 1e8, 30), 0.4, 4.0, 2.0)
    sample = model.sample(*args, seed=2)
    assert sample.counts.sum() > 0 and np.isfinite(sample.flat_muons).all()
    model.save(tmp_path / "m")
    loaded = MuonBundleModel.load(tmp_path / "m")
    assert loaded.config.generator_set_layers == 0
    assert loaded.sample(*args, seed=2).equals(sample)


def test_layer_norm_off_removes_it_from_the_sampled_networks_only(batch, tmp_path):
    """layer_norm=False (distilled students): no LayerNorm in the multiplicity model and the
    generator, the critic keeps it; such a model samples and round-trips; the default layout of
    the state dict (the shipped model's) is unchanged."""
    config = dataclasses.replace(SMALL, layer_norm=False)
    torch.manual_seed(0)
    model = MuonBundleModel(config, FeatureTransform.fit(batch))
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    assert any(isinstance(m, torch.nn.LayerNorm) for m in BundleCritic(config).modules())
    model.save(tmp_path / "m")
    first = MuonBundleModel.load(tmp_path / "m").sample(np.full(30, 1e6), 0.3, 14.0, 2.0, seed=2)
    second = model.sample(np.full(30, 1e6), 0.3, 14.0, 2.0, seed=2)
    np.testing.assert_array_equal(first.flat_muons, second.flat_muons)
    assert np.isfinite(first.flat_muons).all()
    default_keys = set(MuonBundleModel(SMALL, FeatureTransform.fit(batch)).state_dict())
    assert {"generator.muon_activation.0.weight", "generator.set_layers.0.local_rest.2.weight"} <= default_keys
    assert len(default_keys) - len(model.state_dict()) == 2 * sum(isinstance(m, torch.nn.LayerNorm) for m in
                                                                  MuonBundleModel(SMALL, FeatureTransform.fit(batch)).modules())


def test_critic_scores_one_value_per_event_and_handles_events_without_muons():
    torch.manual_seed(0)
    critic = BundleCritic(SMALL)
    counts = torch.tensor([2, 0, 1])
    event_index = torch.tensor([0, 0, 2])
    scores = critic(torch.randn(3, 4), counts, torch.randn(3, 3), event_index)
    assert scores.shape == (3,) and torch.isfinite(scores).all()


def test_critic_scores_saturate_smoothly_below_the_scale():
    torch.manual_seed(0)
    critic = BundleCritic(SMALL)
    with torch.no_grad():
        critic.decision[-1].bias.fill_(1e6)
    scores = critic(torch.randn(2, 4), torch.tensor([1, 1]), torch.randn(2, 3), torch.tensor([0, 1]))
    assert torch.all(scores <= SMALL.critic_score_scale) and torch.all(scores > 0.99 * SMALL.critic_score_scale)


def test_critic_score_of_an_event_ignores_other_events():
    torch.manual_seed(0)
    critic = BundleCritic(SMALL)
    cond, feats = torch.randn(2, 4), torch.randn(5, 3)
    counts, index = torch.tensor([3, 2]), torch.tensor([0, 0, 0, 1, 1])
    together = critic(cond, counts, feats, index)
    alone = critic(cond[1:], counts[1:], feats[3:], index[3:] - 1)
    torch.testing.assert_close(together[1:], alone, rtol=1e-5, atol=1e-6)


def test_sample_gives_one_event_per_primary_in_order_with_physical_muons(model):
    energy = np.array([1e5, 1e7, 1e8, 1e6], np.float32)
    sample = model.sample(energy, 0.3, 4.0, 2.0, seed=1)
    assert len(sample) == 4
    np.testing.assert_array_equal(sample.conditions[:, 0], energy)
    np.testing.assert_array_equal(sample.conditions[:, 1:], np.tile([[0.3, 4.0, 2.0]], (4, 1)).astype(np.float32))
    assert sample.flat_muons.shape == (sample.counts.sum(), 3)
    assert (sample.flat_muons[:, 0] > 0).all() and np.isfinite(sample.flat_muons).all()


def test_same_seed_gives_the_same_sample_and_another_seed_another(model):
    args = (np.full(30, 1e7), 0.5, 1.0, 1.5)
    first, again, other = model.sample(*args, seed=7), model.sample(*args, seed=7), model.sample(*args, seed=8)
    assert first.equals(again)
    assert not first.equals(other)


def test_sample_of_zero_primaries_is_an_empty_batch(model):
    assert len(model.sample(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), seed=0)) == 0


def test_saved_and_loaded_model_samples_identically(model, tmp_path):
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").exists() and (tmp_path / "m" / "model.json").exists()
    loaded = MuonBundleModel.load(tmp_path / "m")
    assert loaded.config == model.config
    args = (np.geomspace(1e4, 1e8, 25), 0.2, 14.0, 2.2)
    assert model.sample(*args, seed=3).equals(loaded.sample(*args, seed=3))


def test_loading_a_directory_without_a_model_names_the_missing_file(tmp_path):
    with pytest.raises(ValueError, match="model.json"):
        MuonBundleModel.load(tmp_path)


def test_muon_budget_chunks_cover_every_event_once_and_respect_the_budget():
    counts = np.array([0, 5, 3, 0, 20, 1, 1, 0, 4], np.int64)
    chunks = muon_budget_chunks(counts, 6)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(counts)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    for start, stop in chunks:
        assert counts[start:stop].sum() <= 6 or stop - start == 1  # only a lone big event may exceed


def test_transform_fit_rejects_unphysical_values_with_a_message_naming_them(batch):
    muons = batch.flat_muons.copy()
    muons[:2, 0] = 0.0  # zero energy: log10 is -inf
    with pytest.raises(ValueError, match="log10 energy: 2"):
        FeatureTransform.fit(RaggedBatch(batch.conditions, batch.counts, muons))


def test_multiplicity_helpers_take_physical_conditions(model, batch):
    conditions, counts = torch.from_numpy(batch.conditions), torch.from_numpy(batch.counts)
    cdf = model.count_cdf(conditions, counts)
    log_p = model.count_log_prob(conditions, counts)
    mean, variance = model.count_mean_variance(conditions)
    assert cdf.shape == log_p.shape == mean.shape == variance.shape == (len(batch),)
    assert ((cdf > 0) & (cdf <= 1)).all() and (log_p < 0).all() and (variance > mean).all()


def test_loading_corrupt_weights_names_the_file(model, tmp_path):
    model.save(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors"):
        MuonBundleModel.load(tmp_path / "m")


def test_multiplicity_sample_of_no_events_is_empty(model):
    counts = model.multiplicity.sample(torch.zeros(0, 4), torch.Generator().manual_seed(0))
    assert counts.shape == (0,) and counts.dtype == torch.int64
