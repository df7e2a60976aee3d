"""Multiplicity calibration (randomised PIT of the true N under the model's P(N | conditions))."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import SMALL_MODEL, make_synthetic_batch
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from mubundle.evaluate.calibration import (
    multiplicity_calibration,
    pit_histogram,
    randomised_pit,
    uniform_ks_floor,
)
from mubundle.evaluate.report import evaluate_model, evaluate_samples
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.transforms import FeatureTransform

N_EVENTS = 5000


@pytest.fixture(scope="module")
def model() -> MuonBundleModel:
    torch.manual_seed(0)
    return MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(make_synthetic_batch(500, seed=1))).eval()


def with_counts(conditions: np.ndarray, counts: np.ndarray) -> RaggedBatch:
    """Events with the given multiplicities; the muons are placeholders (calibration reads only N)."""
    counts = np.asarray(counts, dtype=np.int64)
    return RaggedBatch(conditions, counts, np.ones((int(counts.sum()), 3), dtype=np.float32))


@pytest.fixture(scope="module")
def truth_from_model(model) -> RaggedBatch:
    """Reference whose N is drawn from the model's own P(N | conditions): perfectly calibrated."""
    conditions = make_synthetic_batch(N_EVENTS, seed=2).conditions
    generator = torch.Generator().manual_seed(3)
    counts = model.multiplicity.sample(model.transform.condition_features(torch.from_numpy(conditions)), generator)
    return with_counts(conditions, counts.numpy())


@pytest.fixture(scope="module")
def calibrated(model, truth_from_model) -> dict:
    return multiplicity_calibration(model, truth_from_model, seed=4)


def test_a_model_whose_multiplicity_is_the_truth_has_a_flat_pit_at_the_floor(calibrated, truth_from_model):
    overall = calibrated["overall"]
    assert calibrated["n_events"] == overall["n_events"] == N_EVENTS and calibrated["n_nonfinite"] == 0
    assert overall["ks"]["ratio"] < 3.0
    assert abs(overall["coverage_50"]["observed"] - 0.50) < 0.03
    assert abs(overall["coverage_90"]["observed"] - 0.90) < 0.03
    assert abs(overall["mean_pit"]["observed"] - 0.5) < 0.02
    histogram = overall["histogram"]
    assert sum(histogram["counts"]) == N_EVENTS and len(histogram["density"]) == 20
    # every bin of the flat histogram within 4 binomial sigma of 1
    assert np.all(np.abs(np.asarray(histogram["density"]) - 1.0) < 4 * histogram["density_sigma"])


def test_doubled_multiplicities_are_detected_as_too_few_predicted_muons(model, truth_from_model, calibrated):
    doubled = with_counts(truth_from_model.conditions, 2 * truth_from_model.counts)
    overall = multiplicity_calibration(model, doubled, seed=4)["overall"]
    assert overall["ks"]["ratio"] > 5.0
    assert overall["ks"]["model"] > 5 * calibrated["overall"]["ks"]["model"]
    assert overall["mean_pit"]["observed"] > 0.55
    assert overall["coverage_90"]["observed"] < 0.85


def test_miscalibration_in_one_energy_bin_shows_in_that_bin_only(model, truth_from_model):
    counts = truth_from_model.counts.copy()
    high_energy = truth_from_model.conditions[:, 0] >= 1e7
    counts[high_energy] = 3 * counts[high_energy] + 2
    energy_bins = multiplicity_calibration(model, with_counts(truth_from_model.conditions, counts), seed=4)["bins"]["energy"]
    by_label = {entry["label"]: entry for entry in energy_bins}
    assert by_label["1e7-1e8 GeV"]["mean_pit"]["observed"] > 0.7
    assert by_label["1e7-1e8 GeV"]["ks"]["ratio"] > 5.0
    for label in ("1e3-1e4 GeV", "1e4-1e5 GeV", "1e5-1e6 GeV"):
        assert abs(by_label[label]["mean_pit"]["observed"] - 0.5) < 0.05, label


def test_events_without_muons_get_a_pit_uniform_between_zero_and_p_of_zero(model):
    conditions = make_synthetic_batch(2000, seed=5).conditions
    zeros = np.zeros(len(conditions), dtype=np.int64)
    below_zero = model.count_cdf(torch.from_numpy(conditions), torch.from_numpy(zeros - 1)).numpy()
    p_zero = model.count_cdf(torch.from_numpy(conditions), torch.from_numpy(zeros)).numpy()
    assert np.all(below_zero == 0.0)  # P(N <= -1) = 0
    pit = randomised_pit(model, conditions, zeros, seed=6)
    assert np.all((pit >= 0.0) & (pit <= p_zero))
    # uniform in [0, F(0)]: u / F(0) is U(0, 1)
    assert abs(np.mean(pit / p_zero) - 0.5) < 0.03


def test_the_pit_uniforms_are_not_the_common_stream_of_the_seed(model):
    # reference primaries drawn with default_rng(seed) must not share the PIT's uniforms
    conditions = make_synthetic_batch(2000, seed=5).conditions
    zeros = np.zeros(len(conditions), dtype=np.int64)
    p_zero = model.count_cdf(torch.from_numpy(conditions), torch.from_numpy(zeros)).numpy()
    uniforms = randomised_pit(model, conditions, zeros, seed=0) / p_zero
    assert abs(np.corrcoef(uniforms, np.random.default_rng(0).random(len(zeros)))[0, 1]) < 0.1


def test_the_pit_is_reproducible_by_seed_and_chunk_size_does_not_matter(model, truth_from_model):
    conditions, counts = truth_from_model.conditions[:3000], truth_from_model.counts[:3000]
    whole = randomised_pit(model, conditions, counts, seed=7)
    chunked = randomised_pit(model, conditions, counts, seed=7, chunk_events=1000)
    np.testing.assert_allclose(whole, chunked, rtol=0, atol=1e-12)
    assert not np.allclose(whole, randomised_pit(model, conditions, counts, seed=8))


def test_the_correlated_floor_of_three_depths_per_shower_is_about_sqrt3_times_the_independent_one():
    independent = uniform_ks_floor(np.arange(3000), seed=0)
    three_depths = uniform_ks_floor(np.repeat(np.arange(1000), 3), seed=0)
    assert 1.4 < three_depths / independent < 2.1
    # showers seen once each: the correlated floor is the independent one
    assert uniform_ks_floor(np.arange(3000)[::-1] * 7, seed=0) == independent


def test_pit_histogram_counts_every_value_including_the_edges():
    histogram = pit_histogram(np.array([0.0, 0.5, 1.0, 0.999, 0.15]), n_bins=10)
    assert sum(histogram["counts"]) == 5
    assert histogram["counts"][0] == 1 and histogram["counts"][-1] == 2


def test_small_bins_are_not_available_with_a_reason_and_the_result_is_valid_json(model, truth_from_model):
    tiny = truth_from_model.take(np.arange(60))
    result = multiplicity_calibration(model, tiny, seed=0)
    json.dumps(result, allow_nan=False)
    small = [entry for entries in result["bins"].values() for entry in entries if entry["n_events"] < 20]
    assert small, "60 events over 5 energy bins and 5 masses must leave some bins below 20 events"
    for entry in small:
        assert entry["ks"]["ratio"] is None and "too few events" in entry["ks"]["reason"]
        assert entry["coverage_50"]["observed"] is None and "too few events" in entry["coverage_50"]["reason"]


def test_a_model_cdf_outside_zero_one_is_an_error_naming_the_event(model):
    class BrokenModel:
        def count_cdf(self, conditions, counts):
            return torch.full((len(counts),), 1.5, dtype=torch.float64)

    with pytest.raises(ValueError, match="outside \\[0, 1\\].*event 0"):
        randomised_pit(BrokenModel(), np.ones((3, 4), np.float32), np.array([1, 2, 3]))


def test_non_finite_model_cdf_is_counted_and_left_out_not_hidden(model, truth_from_model):
    class PartlyNanModel:
        def count_cdf(self, conditions, counts):
            values = model.count_cdf(conditions, counts)
            values[:5] = float("nan")
            return values

    result = multiplicity_calibration(PartlyNanModel(), truth_from_model.take(np.arange(500)), seed=0)
    assert result["n_nonfinite"] == 5 and result["overall"]["n_events"] == 495
    assert "5 events" in result["warning"] and "event 0" in result["warning"]
    json.dumps(result, allow_nan=False)


def test_evaluate_samples_without_calibration_has_no_calibration_section(truth_from_model, tmp_path):
    sample = truth_from_model.take(np.arange(200))
    metrics = evaluate_samples(sample, sample, tmp_path, plots=False)
    assert "calibration" not in metrics and "calibration_ks_ratio" not in metrics["summary"]
    assert "Multiplicity calibration" not in (tmp_path / "report.html").read_text()


def test_evaluate_model_writes_the_calibration_its_plot_and_the_report_section(tmp_path):
    torch.manual_seed(0)
    reference = make_synthetic_batch(300, seed=9)
    model_dir = tmp_path / "model"
    MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(reference)).save(model_dir)
    write_shard(reference, tmp_path / "data" / "a.parquet", {"producer": "test"})
    out = tmp_path / "report"
    metrics = evaluate_model(model_dir, tmp_path / "data", out, seed=1)
    calibration = json.loads((out / "metrics.json").read_text())["calibration"]
    assert calibration["n_events"] == 300 and calibration["overall"]["ks"]["model"] is not None
    assert metrics["summary"]["calibration_ks_ratio"] == calibration["overall"]["ks"]["ratio"]
    assert (out / calibration["figure"]).stat().st_size > 1000
    assert calibration["figure"] in {figure["file"] for figure in metrics["figures"]}
    report = (out / "report.html").read_text()
    assert "Multiplicity calibration" in report and "U-shape" in report
    assert report.count("<img") == len(metrics["figures"])


def test_the_calibration_plot_of_a_tiny_reference_draws_no_empty_legend_and_warns_nothing(model, truth_from_model,
                                                                                          tmp_path):
    import warnings

    from mubundle.evaluate.plots import calibration_plot

    tiny = multiplicity_calibration(model, truth_from_model.take(np.arange(4)), seed=0)
    assert not [entry for entry in tiny["bins"]["energy"] if entry["coverage_50"]["observed"] is not None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels found to put in legend" fails here
        figure = calibration_plot(tiny, tmp_path)
    assert figure is not None and (tmp_path / figure.file).stat().st_size > 1000
