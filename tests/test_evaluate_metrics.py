"""Evaluation metrics: a resample scores ratio ~1 / AUC ~0.5, a wrong sample ratio >> 1 / AUC >> 0.5;
degenerate inputs give n/a with a reason, never a crash."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mubundle.data.batch import RaggedBatch
from mubundle.evaluate.binning import bins_for
from mubundle.evaluate.classifier import two_sample_auc
from mubundle.evaluate.features import classifier_features, event_observables
from mubundle.evaluate.metrics import METRICS, compare, shower_ids, split_halves
from mubundle.evaluate.report import compare_in_bins, evaluate_samples


def primaries(n_events: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [10 ** rng.uniform(4, 6, n_events), np.arccos(rng.uniform(0.5, 1, n_events)),
         rng.choice([1.0, 4.0, 14.0, 27.0, 56.0], n_events), rng.uniform(1.5, 3.0, n_events)], axis=1,
    )


def bundles(conditions: np.ndarray, seed: int, multiplicity_scale: float = 1.0, radius_scale: float = 1.0) -> RaggedBatch:
    """Toy physics: N ~ Poisson(mean rising with E0 and A, falling with depth); muon
    log10 E ~ normal; radius ~ exponential, smaller for energetic muons."""
    rng = np.random.default_rng(seed)
    energy, mass, depth = conditions[:, 0], conditions[:, 2], conditions[:, 3]
    mean = multiplicity_scale * 3 * (energy / 1e5) ** 0.8 * mass**0.2 * np.exp(-(depth - 1.5))
    counts = rng.poisson(mean)
    n_muons = int(counts.sum())
    log_energy = rng.normal(2.3, 0.5, n_muons)
    radius = radius_scale * rng.exponential(20.0, n_muons) * 10 ** (-0.3 * (log_energy - 2.3))
    phi = rng.uniform(0, 2 * np.pi, n_muons)
    muons = np.stack([10**log_energy, radius * np.cos(phi), radius * np.sin(phi)], axis=1)
    return RaggedBatch(conditions, counts, muons)


@pytest.fixture(scope="module")
def reference() -> RaggedBatch:
    return bundles(primaries(4000, 0), seed=1)


def test_a_resample_of_the_same_physics_scores_ratios_near_one(reference):
    result = compare(reference, bundles(reference.conditions, seed=2))
    ratios = np.array([entry["ratio"] for entry in result.values()])
    assert set(result) == set(METRICS)
    assert np.all(ratios < 2.0), result
    assert 0.6 < np.median(ratios) < 1.5


def test_too_many_muons_and_too_wide_bundles_score_ratios_far_above_one(reference):
    result = compare(reference, bundles(reference.conditions, seed=2, multiplicity_scale=1.5, radius_scale=1.5))
    assert result["multiplicity.mean"]["ratio"] > 5
    assert result["multiplicity.log10_n_plus_1"]["ratio"] > 3
    assert result["muon.radius"]["ratio"] > 5
    assert result["bundle.mean_radius"]["ratio"] > 3
    # the muon energy spectrum is the same in both: it must not be flagged
    assert result["muon.log10_energy"]["ratio"] < 2.0


def test_every_metric_reports_model_floor_and_ratio_with_ratio_their_quotient(reference):
    result = compare(reference, bundles(reference.conditions, seed=3))
    for entry in result.values():
        assert entry["floor"] > 0
        assert entry["ratio"] == pytest.approx(entry["model"] / entry["floor"])
        assert entry["n_events"] == [2000, 2000]


def test_classifier_auc_is_near_one_half_for_a_resample_and_high_for_a_wrong_sample(reference):
    same = two_sample_auc(reference, bundles(reference.conditions, seed=4), seed=0)
    wrong = two_sample_auc(reference, bundles(reference.conditions, seed=4, multiplicity_scale=2.0, radius_scale=2.0), seed=0)
    assert abs(same.auc - 0.5) < 0.04
    assert wrong.auc > 0.65


def test_classifier_features_are_nan_for_undefined_bundle_quantities():
    conditions = primaries(3, seed=1)
    batch = RaggedBatch(conditions, np.array([0, 1, 2]), np.array([[10.0, 3.0, 4.0], [5.0, 0, 1], [20.0, 1, 0]]))
    features = classifier_features(batch)
    assert features.shape == (3, 11)
    assert np.isnan(features[0, 4:][1:]).all() and features[0, 4] == 0.0  # N = 0: only log10(N+1) defined
    assert np.isnan(features[1, 10]) and np.isfinite(features[2, 10])  # spread needs N >= 2
    events = event_observables(batch)
    assert events.leading_fraction[2] == pytest.approx(20 / 25)
    assert events.mean_radius[1] == pytest.approx(5.0)


def test_zero_muon_only_samples_give_na_with_a_reason_instead_of_crashing():
    conditions = primaries(200, seed=2)
    empty = RaggedBatch(conditions, np.zeros(200, np.int64), np.zeros((0, 3)))
    result = compare(empty, empty, classifier=True)
    assert result["multiplicity.p_zero"]["ratio"] is None
    assert "floor is 0" in result["multiplicity.p_zero"]["reason"]
    assert "too few muons" in result["muon.log10_energy"]["reason"]
    assert "reference half is 0" in result["multiplicity.mean"]["reason"]
    assert result["muon.log10_energy"]["model"] is None


def test_tiny_and_empty_bins_are_reported_as_not_available(reference):
    tiny = reference.slice(0, 10)
    result = compare(tiny, tiny)
    assert all(entry["ratio"] is None and "too few" in entry["reason"] for entry in result.values())
    nothing = compare(RaggedBatch.empty(), RaggedBatch.empty(), classifier=True)
    assert all(entry["ratio"] is None for entry in nothing.values())


def test_unpaired_candidates_are_compared_on_a_subsample_of_the_same_size(reference):
    other = bundles(primaries(6000, seed=9), seed=5)
    result = compare(reference, other)
    assert result["multiplicity.mean"]["n_events"] == [2000, 2000]
    assert all(entry["ratio"] < 2.5 for entry in result.values())


def test_bins_cover_decades_of_energy_and_each_distinct_mass(reference):
    energy_bins = bins_for("energy", reference.conditions)
    assert [b.label for b in energy_bins] == ["1e4-1e5 GeV", "1e5-1e6 GeV"]
    mass_bins = bins_for("mass", reference.conditions)
    assert [b.low for b in mass_bins] == [1.0, 4.0, 14.0, 27.0, 56.0]
    total = sum(int(b.mask(reference.conditions).sum()) for b in bins_for("depth", reference.conditions))
    assert total == len(reference)  # quantile bins of a continuous depth partition the events


def test_binned_comparison_flags_a_model_wrong_only_for_iron(reference):
    candidate = bundles(reference.conditions, seed=6)
    iron = reference.conditions[:, 2] == 56
    wrong = bundles(reference.conditions, seed=6, multiplicity_scale=2.0)
    counts = np.where(iron, wrong.counts, candidate.counts)
    muons = [wrong.muons_of(i) if iron[i] else candidate.muons_of(i) for i in range(len(reference))]
    mixed = RaggedBatch(reference.conditions, counts, np.concatenate(muons))
    by_mass = {entry["label"]: entry for entry in compare_in_bins(reference, mixed)["mass"]}
    assert by_mass["A = 56"]["metrics"]["multiplicity.mean"]["ratio"] > 4
    assert by_mass["A = 1"]["metrics"]["multiplicity.mean"]["ratio"] < 3


def test_evaluate_samples_writes_metrics_json_and_a_report_that_flags_the_wrong_metric(tmp_path):
    reference = bundles(primaries(2000, 10), seed=11)
    candidate = bundles(reference.conditions, seed=7, multiplicity_scale=1.4)
    metrics = evaluate_samples(reference, candidate, tmp_path, seed=0, info={"model": "toy"}, plots=False)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["overall"]["multiplicity.mean"].keys() >= {"model", "floor", "ratio"}
    assert "classifier.auc" in written["overall"]
    assert set(written["bins"]) == {"energy", "mass", "zenith", "depth"}
    assert written["summary"]["targets_met"] is False and "multiplicity.mean" in written["summary"]["metrics_above_target"]
    assert metrics["summary"] == written["summary"]
    quantities = written["quantities"]
    assert quantities["model"]["mean_multiplicity"] > 1.2 * quantities["reference"]["mean_multiplicity"]
    assert quantities["model"]["p_zero"] == pytest.approx(np.mean(candidate.counts == 0))
    counts = reference.counts.astype(np.float64)
    assert quantities["reference_standard_error"]["mean_multiplicity"] == pytest.approx(
        np.std(counts, ddof=1) / np.sqrt(len(counts)))
    report = (tmp_path / "report.html").read_text()
    mean_n = f"{quantities['reference']['mean_multiplicity']:.4g} &plusmn; "
    assert mean_n + f"{quantities['reference_standard_error']['mean_multiplicity']:.2g}" in report
    assert f"mubundle {written['info']['mubundle_version']}" in report and written["info"]["mubundle_version"]
    assert "statistical floor" in report and "Classifier two-sample test" in report and "Basic quantities" in report
    assert "multiplicity.mean" in report and "ratio" in report


def showers_at_three_depths(n_showers: int, seed: int, multiplicity_scale: float = 1.0) -> RaggedBatch:
    """Each toy shower observed at 1.5, 2.0 and 2.5 km: the deeper events keep a subset of
    the shallower event's muons, so the three events of a shower are strongly correlated."""
    rng = np.random.default_rng(seed)
    base = primaries(n_showers, 0)
    base[:, 3] = 1.5
    shallow = bundles(base, seed=seed, multiplicity_scale=3.0 * multiplicity_scale)
    conditions, counts, muons = [], [], []
    for i in range(n_showers):
        kept = shallow.muons_of(i)
        for depth in (1.5, 2.0, 2.5):
            conditions.append([*base[i, :3], depth])
            counts.append(len(kept))
            muons.append(kept)
            kept = kept[rng.random(len(kept)) < 0.6]
    return RaggedBatch(np.array(conditions), np.array(counts), np.concatenate(muons))


def test_half_splits_keep_the_depths_of_one_shower_together():
    batch = showers_at_three_depths(50, seed=1)
    half_a, half_b = split_halves(batch.conditions, seed=3)
    showers = shower_ids(batch.conditions)
    assert not set(showers[half_a]) & set(showers[half_b])
    assert len(half_a) + len(half_b) == 150 and abs(len(half_a) - 75) <= 2


def test_correlated_depths_of_the_same_physics_still_score_ratios_near_one():
    reference = showers_at_three_depths(700, seed=1)
    # the same showers' primaries, muons re-simulated independently (a perfect generator)
    candidate = showers_at_three_depths(700, seed=2)
    result = compare(reference, candidate)
    ratios = np.array([entry["ratio"] for entry in result.values()])
    # a single ratio of a perfect generator scatters (~0.4-1.9 here, 2100 events); the bulk sits at 1
    assert np.all(ratios < 2.5), result
    assert 0.8 < np.median(ratios) < 1.3
    wrong = compare(reference, showers_at_three_depths(700, seed=2, multiplicity_scale=1.5))
    assert wrong["multiplicity.mean"]["ratio"] > 5


def test_a_full_report_on_zero_muon_events_says_not_available_instead_of_crashing(tmp_path):
    conditions = primaries(120, seed=3)
    empty = RaggedBatch(conditions, np.zeros(120, np.int64), np.zeros((0, 3)))
    metrics = evaluate_samples(empty, empty, tmp_path, seed=0)
    assert metrics["quantities"]["reference"]["median_radius_m"] is None
    assert metrics["summary"]["targets_met"] is False and metrics["summary"]["max_ratio"] is None
    assert "too few muons" in metrics["overall"]["muon.radius"]["reason"]
    assert "n/a" in (tmp_path / "report.html").read_text()
