"""Depth bins of the evaluation: the reference's recorded vertical depths, else slant depth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import make_synthetic_batch
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from mubundle.data.sources import read_events
from mubundle.evaluate.binning import SLANT, bins_for
from mubundle.evaluate.reference_depths import depth_binning
from mubundle.evaluate.report import evaluate_samples
from mubundle.sim.site import get_site

DEPTHS = (1.4, 2.6)


def _two_depth_reference(n_events: int = 800, seed: int = 3) -> tuple[RaggedBatch, np.ndarray]:
    """Synthetic events at vertical depths 1.4 and 2.6 km of ice, zenith 0-85 deg, slant depth
    through the icecube overburden as ``mubundle simulate`` makes it; and their vertical depths."""
    batch = make_synthetic_batch(n_events, seed=seed)
    rng = np.random.default_rng(seed)
    zenith = np.radians(rng.uniform(0.0, 85.0, n_events))
    vertical = rng.choice(DEPTHS, n_events)
    conditions = batch.conditions.copy()
    conditions[:, 1] = zenith
    conditions[:, 3] = get_site("icecube").slant_km(vertical, np.cos(zenith))
    return RaggedBatch(conditions.astype(np.float32), batch.counts, batch.flat_muons), vertical


def _write(tmp_path, batch: RaggedBatch, metadata: dict | None) -> dict[str, str]:
    path = tmp_path / "part-00000.parquet"
    write_shard(batch, path, metadata)
    return read_events([path]).layouts


def test_recorded_vertical_depths_become_the_bins_and_separate_them_exactly(tmp_path):
    reference, vertical = _two_depth_reference()
    layouts = _write(tmp_path, reference, {"site": "icecube", "depths_sorted_km": list(DEPTHS), "depth_unit": "km of ice"})
    depth = depth_binning(layouts, reference.conditions)
    assert depth.coordinate == "vertical", depth.reason
    bins = bins_for("depth", reference.conditions, depth)
    assert [b.low for b in bins] == list(DEPTHS)
    assert [b.coordinate for b in bins] == ["vertical depth [km of ice]"] * 2
    for condition_bin, value in zip(bins, DEPTHS):
        assert np.array_equal(condition_bin.mask(reference.conditions), vertical == value)
    # the slant depths of both vertical depths overlap (zenith up to 85 deg): slant bins mix them
    slant_bins = bins_for("depth", reference.conditions, SLANT)
    mixed = [len(np.unique(vertical[b.mask(reference.conditions)])) for b in slant_bins]
    assert max(mixed) == 2


def test_a_reference_without_vertical_depths_falls_back_to_slant_quartiles(tmp_path):
    reference, _ = _two_depth_reference()
    layouts = _write(tmp_path, reference, None)
    depth = depth_binning(layouts, reference.conditions)
    assert depth.coordinate == "slant"
    assert "record no vertical depths" in depth.reason
    bins = bins_for("depth", reference.conditions, depth)
    slant = reference.conditions[:, 3].astype(np.float64)
    assert len(bins) == 4 and all(b.coordinate == "slant depth [km]" for b in bins)
    assert bins[0].low <= slant.min() and bins[-1].high >= slant.max()
    assert abs(bins[1].high - np.median(slant)) < 0.01  # quartile edges
    in_bins = sum(b.mask(reference.conditions).astype(int) for b in bins)
    assert np.all(in_bins == 1)


def test_recorded_depths_that_do_not_match_the_events_fall_back_with_the_reason(tmp_path):
    reference, vertical = _two_depth_reference()
    layouts = _write(tmp_path, reference, {"site": "icecube", "depths_sorted_km": [1.5, 2.6]})
    depth = depth_binning(layouts, reference.conditions)
    assert depth.coordinate == "slant"
    n_off = int(np.count_nonzero(vertical == 1.4))  # the events at 1.4 km match no recorded depth
    assert f"{n_off} of {len(reference)} events lie farther than 10 m from every recorded vertical depth" in depth.reason


def test_depths_without_a_site_use_the_model_domain_radius_or_fall_back(tmp_path):
    reference, vertical = _two_depth_reference()
    layouts = _write(tmp_path, reference, {"depths_sorted_km": list(DEPTHS)})
    assert depth_binning(layouts, reference.conditions).coordinate == "slant"
    depth = depth_binning(layouts, reference.conditions, model_radius_m=get_site("icecube").depth_unit_radius_m)
    assert depth.coordinate == "vertical"
    assert np.array_equal(bins_for("depth", reference.conditions, depth)[1].mask(reference.conditions), vertical == 2.6)


@pytest.mark.parametrize("recorded", [True, False])
def test_metrics_json_and_report_name_the_depth_coordinate_and_its_bins(tmp_path, recorded):
    reference, _ = _two_depth_reference(n_events=400)
    metadata = {"site": "icecube", "depths_sorted_km": list(DEPTHS), "depth_unit": "km of ice"} if recorded else None
    depth = depth_binning(_write(tmp_path, reference, metadata), reference.conditions)
    candidate = _two_depth_reference(n_events=400, seed=4)[0]
    candidate = RaggedBatch(reference.conditions, candidate.counts, candidate.flat_muons)  # paired
    metrics = evaluate_samples(reference, candidate, tmp_path / "out", plots=False, depth=depth)
    stored = json.loads((tmp_path / "out" / "metrics.json").read_text())
    binning = stored["binning"]["depth"]
    html = (tmp_path / "out" / "report.html").read_text()
    if recorded:
        assert binning["coordinate"] == "vertical depth [km of ice]" and binning["values"] == list(DEPTHS)
        assert [entry["label"] for entry in metrics["bins"]["depth"]] == ["1.4 km of ice vertical", "2.6 km of ice vertical"]
        assert "depth: vertical depth [km of ice]" in html and "one bin per value: 1.4, 2.6" in html
    else:
        assert binning["coordinate"] == "slant depth [km]" and len(binning["edges"]) == 5
        assert "depth: slant depth [km]" in html and "record no vertical depths" in html
    assert binning["reason"] == depth.reason
    assert stored["binning"]["zenith"]["coordinate"] == "cos(zenith)" and len(stored["binning"]["zenith"]["edges"]) == 5
    assert stored["binning"]["energy"]["coordinate"] == "log10(E0 / GeV)"
