"""The kinematic zero (mubundle.model.threshold): exact for the simulator, applied by models that record it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import mubundle
from helpers import SMALL_MODEL, make_synthetic_batch
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.domain import ModelDomain, domain_of_events
from mubundle.model.threshold import MuonThreshold, threshold_of_configs
from mubundle.model.transforms import FeatureTransform
from mubundle.sim.ice import propagate_in_ice
from mubundle.sim.run import muon_threshold_gev
from mubundle.sim.site import ICE, SEA_WATER

ICE_THRESHOLD = MuonThreshold("ice", 1.0, 0.05)


@pytest.mark.parametrize("medium", [ICE, SEA_WATER])
def test_no_muon_below_the_bound_reaches_its_depth_whatever_its_stochastic_losses(medium):
    threshold = MuonThreshold(medium.name, 1.0, 0.05)
    for depth_km in (0.5, 1.4, 3.4):
        bound = float(threshold.surface_energy_gev(depth_km))
        # the simulator's own bound without the air column (which only raises it)
        assert bound == pytest.approx(float(muon_threshold_gev(np.array([depth_km * 1000.0]), 1.0, 0.05, np.array([0.0]),
                                                               medium.a_per_m, medium.b_per_m)[0]), rel=1e-12)
        energy = np.full(20_000, bound * (1.0 - 1e-6))
        arrived = propagate_in_ice(energy, np.full(energy.size, depth_km * 1000.0), np.random.default_rng(1), 0.05,
                                   medium.a_per_m, medium.b_per_m)
        assert arrived.max() <= 1.0  # never above min_energy: N = 0 at that depth
        # just above the bound the luckiest muons (no stochastic loss) do arrive: the bound is tight
        energy = np.full(20_000, bound * 1.05)
        arrived = propagate_in_ice(energy, np.full(energy.size, depth_km * 1000.0), np.random.default_rng(1), 0.05,
                                   medium.a_per_m, medium.b_per_m)
        assert (arrived > 1.0).any()


def test_the_bound_is_per_nucleon_and_refuses_bad_settings():
    bound = float(ICE_THRESHOLD.surface_energy_gev(2.0))
    conditions = torch.tensor([[0.99 * bound, 0.0, 1.0, 2.0], [1.01 * bound, 0.0, 1.0, 2.0],
                               [56 * 1.01 * bound, 0.3, 56.0, 2.0], [56 * 0.99 * bound, 0.3, 56.0, 2.0],
                               [1e9, 0.0, 56.0, 2.0]])
    assert ICE_THRESHOLD.impossible(conditions).tolist() == [True, False, False, True, False]
    depths = np.linspace(1.4, 2.6, 5)  # any numpy layout (here reversed: negative strides), scalars stay 0-d
    reversed_bound = ICE_THRESHOLD.surface_energy_gev(depths[::-1])
    np.testing.assert_array_equal(reversed_bound, ICE_THRESHOLD.surface_energy_gev(depths)[::-1])
    assert np.shape(ICE_THRESHOLD.surface_energy_gev(2.0)) == ()
    assert MuonThreshold.from_dict(json.loads(json.dumps(ICE_THRESHOLD.to_dict()))) == ICE_THRESHOLD
    for bad, match in (({"medium": "lead", "min_energy_gev": 1, "v_cut": 0.05}, "unknown medium 'lead'"),
                       ({"medium": "ice", "min_energy_gev": 0, "v_cut": 0.05}, "min_energy_gev must be"),
                       ({"medium": "ice", "min_energy_gev": 1}, "missing v_cut"),
                       ({"medium": "ice", "min_energy_gev": 1, "v_cut": 0.05, "x": 1}, "unknown key")):
        with pytest.raises(ValueError, match=match):
            MuonThreshold.from_dict(bad)


def test_only_simulator_data_with_one_setting_records_a_threshold():
    config = {"min_energy": 1.0, "ice_v_cut": 0.05}
    assert threshold_of_configs([config, dict(config)], "ice") == ICE_THRESHOLD
    assert threshold_of_configs([config, dict(config, min_energy=10.0)], "ice") is None  # mixed settings
    assert threshold_of_configs([config, {}], "ice") is None  # a file of another producer
    assert threshold_of_configs([config], None) is None  # medium unknown
    conditions = make_synthetic_batch(20, seed=1).conditions
    domain = domain_of_events(conditions, file_config={"site": "icecube"}, file_configs=[config])
    assert domain.muon_threshold == ICE_THRESHOLD
    assert ModelDomain.from_dict(json.loads(json.dumps(domain.to_dict()))) == domain
    assert domain_of_events(conditions).muon_threshold is None


@pytest.fixture(scope="module")
def models():
    """The same small network without and with the kinematic zero."""
    torch.manual_seed(0)
    batch = make_synthetic_batch(200, seed=2)
    plain = MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(batch)).eval()
    zeroed = MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(batch)).eval()
    zeroed.load_state_dict(plain.state_dict())
    zeroed.domain = ModelDomain(energy_gev=(1e2, 1e9), zenith_rad=(0.0, 1.5), mass_number=(1.0, 56.0),
                                slant_depth_km=(0.1, 20.0), muon_threshold=ICE_THRESHOLD)
    return plain, zeroed


def primaries(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([10 ** rng.uniform(2.5, 6.0, n), rng.uniform(0, 1.2, n), rng.choice([1.0, 4.0, 56.0], n),
                     rng.uniform(1.4, 3.0, n)], axis=1).astype(np.float32)


def test_a_model_with_the_threshold_gives_no_muon_below_it_and_its_network_above(models):
    plain, zeroed = models
    conditions = primaries(4000, seed=3)
    below = ICE_THRESHOLD.impossible(torch.from_numpy(conditions)).numpy()
    assert 0.2 < below.mean() < 0.9
    sample = zeroed.sample(*conditions.T, seed=4)
    assert (sample.counts[below] == 0).all()
    unchecked = plain.sample(*conditions.T, seed=4)
    assert unchecked.counts[below].sum() > 0  # the bare network does put muons there
    assert sample.counts[~below].mean() == pytest.approx(unchecked.counts[~below].mean(), rel=0.2)
    tensor = torch.from_numpy(conditions)
    mean, variance = zeroed.count_mean_variance(tensor)
    plain_mean, plain_variance = plain.count_mean_variance(tensor)
    assert (mean[below] == 0).all() and (variance[below] == 0).all()
    torch.testing.assert_close(mean[~below], plain_mean[~below])
    counts = torch.from_numpy(sample.counts)
    cdf = zeroed.count_cdf(tensor, counts)
    assert (cdf[below] == 1).all()
    torch.testing.assert_close(cdf[~below], plain.count_cdf(tensor, counts)[~below])
    log_prob = zeroed.count_log_prob(tensor, counts)
    assert (log_prob[below] == 0).all()
    bumped = counts.clone()
    bumped[below] = 1
    assert torch.isinf(zeroed.count_log_prob(tensor, bumped)[below]).all()
    # the same seed gives the same result
    again = zeroed.sample(*conditions.T, seed=4)
    assert np.array_equal(again.counts, sample.counts) and np.array_equal(again.flat_muons, sample.flat_muons)


def test_primaries_below_the_threshold_draw_no_random_numbers(models):
    """Only the primaries above the kinematic zero are chunked and sampled: removing those
    below leaves every other bundle as it was, for any chunk size counted in possible primaries."""
    _, zeroed = models
    conditions = primaries(3000, seed=5)
    below = ICE_THRESHOLD.impossible(torch.from_numpy(conditions)).numpy()
    assert 0.2 < below.mean() < 0.9
    for chunk in (64, 100_000):
        full = zeroed.sample(*conditions.T, seed=6, events_per_chunk=chunk)
        above = zeroed.sample(*conditions[~below].T, seed=6, events_per_chunk=chunk)
        assert (full.counts[below] == 0).all() and full.counts.sum() > 0
        assert np.array_equal(full.counts[~below], above.counts)
        np.testing.assert_allclose(full.flat_muons, above.flat_muons, rtol=1e-5, atol=1e-5)
        assert np.array_equal(full.conditions, conditions)


def test_the_multiplicity_fit_leaves_out_events_below_and_refuses_data_contradicting_it(models):
    from mubundle.train.multiplicity_fit import CountSample, MultiplicityFitConfig, above_kinematic_zero, fit_multiplicity

    _, zeroed = models
    conditions = torch.from_numpy(primaries(600, seed=5))
    below = ICE_THRESHOLD.impossible(conditions)
    counts = torch.where(below, 0, torch.randint(0, 4, (600,), generator=torch.Generator().manual_seed(1)))
    sample = CountSample(conditions, counts)
    kept = above_kinematic_zero(zeroed, sample, "training")
    assert len(kept) == int((~below).sum())
    model = MuonBundleModel(SMALL_MODEL, zeroed.transform)
    model.load_state_dict(zeroed.state_dict())
    model.domain = zeroed.domain
    report = fit_multiplicity(model, sample, sample, MultiplicityFitConfig(max_epochs=2, batch_size=256))
    assert report["train_events"] == 600 and report["train_events_fitted"] == len(kept)
    # the validation NLL is per event that can have muons: exact zeros would dilute its changes
    assert report["validation_events"] == len(kept)
    assert math.isfinite(report["best_validation_nll"])
    wrong = CountSample(conditions, torch.where(below, 2, counts))
    with pytest.raises(ValueError, match=r"validation data: \d+ events below the kinematic zero .* have muons"):
        above_kinematic_zero(zeroed, wrong, "validation")


@pytest.mark.parametrize("name, medium", [("icecube", "ice"), ("km3net-arca", "sea water")])
def test_the_shipped_models_record_the_threshold_of_their_training_data(name, medium):
    model = mubundle.load(name)
    assert model.muon_threshold == MuonThreshold(medium, 1.0, 0.05)
    # a proton of 300 GeV cannot put a muon at the shallowest depth; 1e6 GeV protons mostly do
    depth = model.domain.slant_depth_km[0]
    none = model.sample(np.full(200, 3e2), 0.0, 1.0, depth, seed=1)
    assert none.counts.sum() == 0
    assert (model.sample(np.full(200, 1e6), 0.0, 1.0, depth, seed=1).counts > 0).mean() > 0.5


def test_flux_weighted_primaries_are_mostly_below_the_threshold_of_the_default_model():
    """Why flux-weighted generation is cheap: the network runs for a few per cent of them."""
    from mubundle.flux import sample_flux_primaries
    from mubundle.sim.fluxmode import group_flux

    drawn = sample_flux_primaries(group_flux("H3a"), 20_000, (3e2, 1e9), (0.0, math.radians(85.0)), 1.0,
                                  np.random.SeedSequence(1), generation_gamma=1.3)
    slant = mubundle.load().domain  # icecube: 1.4 km vertical, through the curved overburden
    from mubundle.model.domain import slant_depth_km

    depth = slant_depth_km(drawn.zenith, np.full(drawn.zenith.size, 1.4), slant.overburden_radius_m)
    conditions = torch.from_numpy(np.stack([drawn.energy, drawn.zenith, drawn.mass, depth], axis=1))
    below = ICE_THRESHOLD.impossible(conditions).numpy()
    weight_below = drawn.weight[below].sum() / drawn.weight.sum()
    assert weight_below > 0.8

