"""Feature transforms over the whole simulator domain: E0 3e2-1e9 GeV, zenith 0-89 deg with
curved slant depths up to ~100 km, mostly muon-free events at low E0, 1e4 muons at the top."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import mubundle
from mubundle.data.batch import RaggedBatch
from mubundle.geometry import slant_from_vertical_depth
from mubundle.model.transforms import DEPTH_SCALE_KM, FeatureTransform


def domain_batch(n_events: int = 4000, seed: int = 0) -> RaggedBatch:
    """Events spread like the icecube standard dataset: E0 ~ E^-1.3 over 3e2-1e9 GeV, cos-uniform
    zenith 0-89 deg, five mass groups, vertical depths 1.4-2.6 km as curved slant depths; muon
    counts from ~0 (90 % of events below 1e4 GeV have none) to ~1e4 at 1e9 GeV, muon energies
    1 GeV-1 PeV and radii 1 cm-400 m."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=n_events)
    low, high, g = 3e2, 1e9, 1.3
    energy = (low ** (1 - g) + u * (high ** (1 - g) - low ** (1 - g))) ** (1 / (1 - g))
    zenith = np.arccos(rng.uniform(math.cos(math.radians(89.0)), 1.0, n_events))
    mass = rng.choice([1.0, 4.0, 14.0, 28.0, 56.0], n_events)
    vertical = rng.choice([1.4, 1.7, 2.0, 2.3, 2.6], n_events)
    slant = slant_from_vertical_depth(zenith, vertical * 1000.0) / 1000.0
    mean = np.clip(1e-4 * (energy / 1e3) ** 0.9 * np.cos(zenith), 0, 1e4)
    counts = rng.poisson(mean).astype(np.int64)
    counts[np.argmax(energy)] = 10_000  # the brightest bundle of the set
    n_muons = int(counts.sum())
    muon_energy = 10 ** rng.uniform(0.0, 6.0, n_muons)
    radius = 10 ** rng.uniform(-2.0, math.log10(400.0), n_muons)
    phi = rng.uniform(0, 2 * np.pi, n_muons)
    muons = np.stack([muon_energy, radius * np.cos(phi), radius * np.sin(phi)], axis=1)
    conditions = np.stack([energy, zenith, mass, slant], axis=1)
    return RaggedBatch(conditions.astype(np.float32), counts, muons.astype(np.float32))


def test_conditions_over_the_whole_domain_are_standardised_and_the_depth_keeps_its_resolution():
    batch = domain_batch()
    assert 70 < batch.conditions[:, 3].max() < 110 and (batch.counts == 0).mean() > 0.5
    transform = FeatureTransform.fit(batch)
    assert transform.depth_feature == "asinh"
    features = transform.condition_features(torch.as_tensor(batch.conditions)).numpy()
    assert np.isfinite(features).all()
    assert np.abs(features.mean(axis=0)).max() < 1e-3 and np.abs(features.std(axis=0) - 1).max() < 1e-3
    # how much of the depth feature's range the near-vertical detector depths keep
    def share(fitted: FeatureTransform) -> float:
        depth = fitted.condition_features(torch.as_tensor(batch.conditions))[:, 3].numpy()
        near = batch.conditions[:, 1] < math.radians(30.0)
        return float(np.ptp(depth[near]) / np.ptp(depth))

    assert share(transform) > 0.1
    assert share(FeatureTransform.fit(batch, depth_feature="linear")) < 0.03  # linear: squeezed by the 100 km tail
    # a depth of 0 (the surface) stays finite; the feature is asinh(D / 0.1 km) standardised
    surface = torch.tensor([[1e3, 0.0, 1.0, 0.0], [1e3, 0.0, 1.0, 2.0]])
    raw = (transform.condition_features(surface)[:, 3] * transform.condition_std[3] + transform.condition_mean[3]).numpy()
    assert raw == pytest.approx([0.0, math.asinh(2.0 / DEPTH_SCALE_KM)], rel=1e-5, abs=1e-5)


def test_muon_features_invert_over_the_muon_energies_and_radii_of_the_domain():
    batch = domain_batch(seed=1)
    transform = FeatureTransform.fit(batch)
    muons = torch.as_tensor(batch.flat_muons)
    features = transform.muon_features(muons)
    assert torch.isfinite(features).all() and features.abs().max() < 10
    assert abs(float(features[:, 0].mean())) < 1e-3 and abs(float(features[:, 0].std()) - 1) < 1e-3
    back = transform.muons_from_features(features)
    assert torch.allclose(back[:, 0], muons[:, 0], rtol=1e-4)
    assert torch.allclose(back[:, 1:], muons[:, 1:], rtol=1e-4, atol=1e-6)


def test_the_depth_feature_round_trips_and_stored_transforms_without_it_stay_linear(tmp_path):
    transform = FeatureTransform.fit(domain_batch(500, seed=2))
    stored = json.loads(json.dumps(transform.to_dict()))
    assert stored["depth_feature"] == "asinh"
    again = FeatureTransform.from_dict(stored)
    conditions = torch.as_tensor(domain_batch(50, seed=3).conditions)
    assert torch.equal(again.condition_features(conditions), transform.condition_features(conditions))
    older = {key: value for key, value in stored.items() if key != "depth_feature"}
    assert FeatureTransform.from_dict(older).depth_feature == "linear"
    # the shipped models were trained with the linear depth feature and keep it
    shipped = mubundle.load("fast")
    assert shipped.transform.depth_feature == "linear"
    raw = shipped.transform.condition_features(torch.tensor([[1e5, 0.0, 1.0, 2.0]]))[0, 3]
    expected = (2.0 - float(shipped.transform.condition_mean[3])) / float(shipped.transform.condition_std[3])
    assert float(raw) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="depth_feature must be one of asinh, linear, got 'log'"):
        FeatureTransform.fit(domain_batch(50), depth_feature="log")
