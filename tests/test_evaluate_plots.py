"""The evaluation figures: full ranges, off-scale ratios drawn at the edge, headlines, dpi, colours."""

from __future__ import annotations

import numpy as np
import pytest

from mubundle.data.batch import RaggedBatch
from mubundle.evaluate.plots import (
    DPI, RATIO_LIMITS, Comparison, distribution_edges, distribution_plots, draw_ratio, histogram_with_ratio,
    ratio_colours,
)


def test_the_radius_axis_covers_every_muon_including_the_far_tail(tmp_path):
    rng = np.random.default_rng(1)
    reference = np.concatenate([rng.exponential(10.0, 5000), [181.0, 0.003]])
    model = rng.exponential(10.0, 5000)
    edges = histogram_with_ratio(reference, model, "r [m]", tmp_path / "r.png", logx=True, unit="muons")
    assert edges[0] <= 0.003 and edges[-1] >= 181.0  # the central 99.8 % would stop near 70 m
    linear = distribution_edges(reference, model)
    assert linear[0] <= reference.min() and linear[-1] >= 181.0
    assert distribution_edges(np.array([np.nan]), np.array([0.0]), log=True) is None


def test_off_scale_and_one_sided_ratio_points_are_drawn_at_the_edges():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    x = np.arange(5.0)
    ratio = np.array([1.0, 3.0, 0.2, np.nan, 0.0])
    drawn = draw_ratio(axis, x, ratio, np.full(5, 0.1), model_only=np.array([0, 0, 0, 1, 0], bool),
                       reference_only=np.array([0, 0, 0, 0, 1], bool))
    assert drawn == {"inside": 1, "above": 1, "below": 1, "model_only": 1, "reference_only": 1}
    lo, hi = RATIO_LIMITS
    markers = {(line.get_marker(), line.get_mfc() == "none"): line.get_ydata() for line in axis.get_lines()}
    assert lo < markers[("^", False)][0] < hi and markers[("^", False)][0] > 1.3  # off scale above: arrow at the top
    assert lo < markers[("v", False)][0] < 0.7  # below: at the bottom
    assert ("^", True) in markers and ("v", True) in markers  # model only / reference only: open triangles
    plt.close(figure)


def test_distribution_figures_are_written_at_slide_resolution_with_a_headline(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    conditions = np.column_stack([10 ** rng.uniform(4, 6, 200), rng.uniform(0, 1, 200), np.ones(200), np.full(200, 2.0)])
    counts = rng.poisson(3, 200)
    muons = np.column_stack([10 ** rng.uniform(0, 4, counts.sum()), rng.normal(0, 10, (counts.sum(), 2))])
    batch = RaggedBatch(conditions, counts, muons)
    comparison = Comparison(model="icecube", reference="sim", n_reference=200, version="9.9")
    figures = distribution_plots(batch, batch, tmp_path, comparison)
    assert {"muon_radius.png", "multiplicity_vs_primary_energy.png"} <= {f.file for f in figures}
    for figure in figures:
        with Image.open(tmp_path / figure.file) as image:
            assert round(image.info["dpi"][0]) == DPI >= 150
    assert comparison.headline() == "model: icecube  vs  reference: sim (200 events)  |  mubundle 9.9"
    assert Comparison.from_info({"model": "/m/run1/", "reference": ["/d/sim"], "mubundle_version": "1.2"}, 5).headline() \
        == "model: run1  vs  reference: sim (5 events)  |  mubundle 1.2"


@pytest.mark.parametrize("target", [1.5, 2.0])
def test_the_heat_map_colours_change_from_green_to_red_at_the_target(target):
    cmap, norm = ratio_colours(target)
    below, above = cmap(norm(target - 0.01)), cmap(norm(target + 0.01))
    assert below[1] > below[0] and above[0] > above[1]  # green just below, red just above
    assert np.allclose(cmap(norm(10.0)), cmap(1.0))  # far above the scale: the darkest red (colour bar extends)
