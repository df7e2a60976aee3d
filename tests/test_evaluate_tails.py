"""Tails in the evaluation: rare-class rates with exact Poisson intervals, ratios, flags, log W1 with floors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from helpers import make_synthetic_batch
from mubundle.data.batch import RaggedBatch
from mubundle.evaluate.report import evaluate_samples
from mubundle.evaluate.tails import (
    TAIL_CLASSES,
    class_counts,
    compare_rates,
    format_tail_table,
    garwood_interval,
    log_w1,
    poisson_ratio_interval,
    relative_error_by_cluster,
    tail_report,
)


def test_garwood_interval_reproduces_the_tabulated_values():
    # central 68.27 % intervals of a Poisson mean (Garwood 1936; PDG "Statistics" tables)
    assert garwood_interval(0) == (0.0, pytest.approx(1.841, abs=1e-3))
    assert garwood_interval(1) == (pytest.approx(0.173, abs=1e-3), pytest.approx(3.300, abs=1e-3))
    low, high = garwood_interval(10, confidence_level=0.95)
    assert (low, high) == (pytest.approx(4.795, abs=1e-3), pytest.approx(18.390, abs=1e-3))


@pytest.mark.parametrize("mean", [0.3, 1.0, 2.5, 7.0, 20.0])
def test_garwood_interval_covers_the_true_mean_at_least_at_its_confidence_level(mean):
    counts = np.arange(0, 200)
    covered = np.array([lo <= mean <= hi for lo, hi in (garwood_interval(int(k)) for k in counts)])
    coverage = float(stats.poisson.pmf(counts, mean)[covered].sum())
    assert 0.6827 <= coverage < 1.0  # exact intervals over-cover, never under-cover


def test_ratio_interval_contains_the_estimate_and_narrows_with_counts():
    small = poisson_ratio_interval(5, 1000, 10, 1000)
    large = poisson_ratio_interval(500, 100_000, 1000, 100_000)
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 5
    assert poisson_ratio_interval(0, 10, 0, 10) is None
    assert poisson_ratio_interval(3, 10, 0, 10)[1] == float("inf")


def test_flags_follow_the_fraction_rule_with_many_counts_and_two_sigma_with_few():
    assert compare_rates(150, 10_000, 300, 10_000)["flag"]  # -50 % with 300 reference counts
    assert not compare_rates(270, 10_000, 300, 10_000)["flag"]  # -10 %: inside +-20 %
    assert compare_rates(2, 10_000, 20, 10_000)["flag"]  # far outside two sigma
    assert not compare_rates(17, 10_000, 20, 10_000)["flag"]
    unbounded = compare_rates(4, 10_000, 0, 10_000)
    assert unbounded["high"] is None and unbounded["value"] is None and not unbounded["flag"]
    assert not compare_rates(0, 10_000, 0, 10_000)["flag"]


def constructed_batch() -> RaggedBatch:
    """Four events with known classes: N = 0, N = 60 (one muon at 20 TeV, one at 40 TeV), N = 210, N = 1."""
    counts = np.array([0, 60, 210, 1])
    conditions = np.tile(np.array([[1e6, 0.3, 14.0, 2.0]], dtype=np.float32), (4, 1))
    conditions[:, 0] = [1e4, 1e5, 1e6, 1e7]
    muons = np.zeros((271, 3), dtype=np.float32)
    muons[:, 0] = 100.0
    muons[:, 1] = 10.0  # r = 10 m
    muons[0, 0], muons[1, 0] = 2e4, 4e4
    muons[2, 1] = 80.0  # r = 80 m
    muons[3, 1] = 0.5  # r = 0.5 m
    muons[60 + 5, 0] = 9e4  # the N = 210 event: bundle energy 209 x 100 + 9e4 GeV > 100 TeV
    return RaggedBatch(conditions, counts, muons)


def test_class_counts_on_a_constructed_batch():
    counts = class_counts(constructed_batch())
    assert counts == {
        "events.n_ge_50": (2, 4), "events.n_ge_200": (1, 4), "events.bundle_energy_gt_100tev": (1, 4),
        "muons.energy_gt_10tev": (3, 271), "muons.energy_gt_30tev": (2, 271),
        "muons.radius_gt_75m": (1, 271), "muons.radius_lt_1m": (1, 271),
    }
    assert set(counts) == {tail.name for tail in TAIL_CLASSES}


def tail_deficit(batch: RaggedBatch, fraction_kept: float, seed: int) -> RaggedBatch:
    """The same events with muons above 10 TeV lowered to 1 TeV except ``fraction_kept`` of them."""
    muons = batch.flat_muons.copy()
    energetic = np.flatnonzero(muons[:, 0] > 1e4)
    lowered = np.random.default_rng(seed).permutation(energetic)[: int(len(energetic) * (1 - fraction_kept))]
    muons[lowered, 0] = 1e3
    return RaggedBatch(batch.conditions, batch.counts, muons)


def reference_with_tail(n_events: int, seed: int) -> RaggedBatch:
    batch = make_synthetic_batch(n_events, seed=seed)
    muons = batch.flat_muons.copy()
    rng = np.random.default_rng(seed)
    muons[:, 0] = 10 ** rng.uniform(0, 5, len(muons))  # up to 100 TeV: ~20 % above 10 TeV
    return RaggedBatch(batch.conditions, batch.counts, muons)


def test_a_candidate_with_a_known_tail_deficit_is_flagged_and_a_copy_is_not():
    reference = reference_with_tail(600, seed=1)
    copy = tail_report(reference, reference, seed=0)
    assert copy["flagged"] == []
    assert copy["overall"]["log_w1"]["muon.log10_energy_dex"]["ratio"] == pytest.approx(1.0)
    deficit = tail_report(reference, tail_deficit(reference, 0.5, seed=2), seed=0)
    entry = deficit["overall"]["rates"]["muons.energy_gt_10tev"]
    assert entry["reference"]["count"] >= 100 and entry["ratio"]["value"] == pytest.approx(0.5, abs=0.01)
    assert entry["ratio"]["flag"] and "all events: muons.energy_gt_10tev" in deficit["flagged"]
    assert not deficit["overall"]["rates"]["muons.radius_gt_75m"]["ratio"]["flag"]
    assert deficit["overall"]["log_w1"]["muon.log10_energy_dex"]["ratio"] > 2
    assert [b["label"] for b in deficit["energy_bins"]] == [f"1e{k}-1e{k + 1} GeV" for k in range(3, 8)]
    assert sum(b["rates"]["events.n_ge_50"]["reference"]["total"] for b in deficit["energy_bins"]) == 600
    table = format_tail_table(deficit)
    assert "E_mu > 10 TeV" in table and "FLAG" in table and "W1 muon.log10_radius_dex" in table


def test_log_w1_of_a_shifted_radius_is_the_shift_in_dex():
    reference = reference_with_tail(400, seed=3)
    muons = reference.flat_muons.copy()
    muons[:, 1:] *= 2.0  # log10 r shifted by log10 2 = 0.301 dex
    result = log_w1(reference, RaggedBatch(reference.conditions, reference.counts, muons), seed=0)
    radius = result["muon.log10_radius_dex"]
    assert radius["model"] == pytest.approx(0.301, abs=0.05) and radius["ratio"] > 3
    assert result["muon.log10_energy_dex"]["ratio"] == pytest.approx(1.0)


def test_metrics_json_and_the_report_carry_the_tail_table(tmp_path):
    reference = reference_with_tail(300, seed=4)
    metrics = evaluate_samples(reference, tail_deficit(reference, 0.3, seed=5), tmp_path, plots=False)
    stored = json.loads((tmp_path / "metrics.json").read_text())
    tails = stored["tails"]
    assert set(tails) >= {"confidence_level", "flag_rule", "definitions", "overall", "energy_bins", "flagged"}
    assert set(tails["overall"]["rates"]["events.n_ge_50"]) == {"per", "reference", "model", "ratio"}
    assert set(tails["overall"]["log_w1"]) == {"muon.log10_energy_dex", "muon.log10_radius_dex"}
    assert stored["summary"]["tails_flagged"] == metrics["tails"]["flagged"] != []
    page = (tmp_path / "report.html").read_text()
    assert "Tails: rare classes" in page and "E_mu &gt; 30 TeV" in page and "Garwood 1936" in page


def test_the_error_by_shower_is_poisson_for_independent_events_and_grows_with_repeated_showers():
    # 20 000 events, 2 % in the class: independent events give the Poisson error 1 / sqrt(k) ...
    rng = np.random.default_rng(5)
    selected = rng.random(20_000) < 0.02
    independent = relative_error_by_cluster(selected, np.arange(20_000))
    assert independent == pytest.approx(1 / np.sqrt(selected.sum()), rel=0.02)
    # ... the same showers each seen at five depths with the same outcome: sqrt(5) x that error
    repeated = np.repeat(selected[:4_000], 5)
    error = relative_error_by_cluster(repeated, np.repeat(np.arange(4_000), 5))
    assert error == pytest.approx(np.sqrt(5) / np.sqrt(repeated.sum()), rel=0.02)
    assert relative_error_by_cluster(np.zeros(10, dtype=bool), np.arange(10)) is None
    assert relative_error_by_cluster(np.ones(10, dtype=bool), np.zeros(10, dtype=np.int64)) is None


def test_tail_rates_report_errors_by_shower_for_reference_model_and_ratio():
    batch = make_synthetic_batch(600, seed=1)
    muons = batch.flat_muons.copy()
    bright = np.random.default_rng(1).random(len(batch)) < 0.2  # whole bundles above 10 TeV
    muons[:, 0] = np.where(bright[batch.event_index], 2e4, 1e2)
    reference = RaggedBatch(batch.conditions, batch.counts, muons)
    report = tail_report(reference, tail_deficit(reference, 0.5, seed=2), seed=0)
    entry = report["overall"]["rates"]["muons.energy_gt_10tev"]
    ref, model = entry["reference"]["relative_error_by_shower"], entry["model"]["relative_error_by_shower"]
    # muons of one bundle are clustered: the error is larger than Poisson's, the effective count smaller
    assert ref > 1 / np.sqrt(entry["reference"]["count"]) and entry["reference"]["effective_count"] < entry["reference"]["count"]
    assert entry["ratio"]["relative_error_by_shower"] == pytest.approx(np.hypot(ref, model))
    assert "by shower" in format_tail_table(report)
    json.dumps(report)  # JSON-ready
