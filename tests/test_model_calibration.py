"""The calibration: monotone maps of the generator's log10 E and log10 r tails (model.json
``calibration``) and ``mubundle calibrate``, which fits them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mubundle.cli import main
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from mubundle.errors import EXIT_OUTPUT, InvalidValueError
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.calibration import MuonCalibration, TailMap
from mubundle.train.calibration_fit import (
    KNOTS,
    MIN_MUONS_BEYOND,
    TAIL_PROBABILITY,
    fit_both_tails,
    fit_calibration,
    fit_upper_tail,
    generator_muons,
)
from test_train_multiplicity_fit import energy_dependent_events, tiny_model

UPPER = TailMap(upper_x=(3.0, 4.0, 4.5), upper_y=(3.0, 3.8, 5.0))
BOTH = TailMap(lower_x=(-1.0, 0.0), lower_y=(-2.0, 0.0), upper_x=(1.0, 2.0), upper_y=(1.0, 1.5))


def test_a_map_is_the_identity_between_its_tails_linear_between_knots_and_beyond_the_outermost():
    values = torch.tensor([1.0, 2.999, 3.0, 3.5, 4.0, 4.25, 4.5, 5.0])
    mapped = UPPER.apply(values)
    # below: identity; between: 3 + 0.8 (x - 3) and 3.8 + 2.4 (x - 4); above: the last slope 2.4 continues
    expected = torch.tensor([1.0, 2.999, 3.0, 3.4, 3.8, 4.4, 5.0, 6.2])
    torch.testing.assert_close(mapped, expected)
    assert mapped.dtype == values.dtype
    # both tails: slope 2 below 0, identity on [0, 1], slope 0.5 above 1
    torch.testing.assert_close(BOTH.apply(torch.tensor([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0])),
                               torch.tensor([-4.0, -1.0, 0.0, 0.5, 1.0, 2.0]))
    dense = torch.linspace(-5, 7, 4001, dtype=torch.float64)
    for tail_map in (UPPER, BOTH):
        assert torch.all(torch.diff(tail_map.apply(dense)) > 0)  # strictly increasing: order kept


def test_maps_round_trip_through_their_dicts_and_refuse_bad_knots():
    calibration = MuonCalibration(UPPER, BOTH, "test")
    assert MuonCalibration.from_dict(json.loads(json.dumps(calibration.to_dict()))) == calibration
    assert MuonCalibration.from_dict({"log10_radius": BOTH.to_dict()}) == MuonCalibration(None, BOTH)
    for bad in ({"log10_energy": {"upper_x": [3.0, 3.0], "upper_y": [3.0, 4.0]}},
                {"log10_energy": {"upper_x": [3.0, 4.0], "upper_y": [3.0, float("nan")]}},
                {"log10_energy": {"upper_x": [3.0, 4.0, 5.0], "upper_y": [3.0, 4.0]}},
                {"log10_energy": {"upper_x": [3.0, 4.0], "upper_y": [3.5, 4.0]}},  # not continuous
                {"log10_radius": {"lower_x": [0.0, 2.0], "lower_y": [-1.0, 2.0], "upper_x": [1.0, 3.0],
                                  "upper_y": [1.0, 3.0]}},  # tails overlap
                {"log10_energy": {"upper_x": [3.0]}}, {"log10_size": {}}, [1, 2]):
        with pytest.raises(InvalidValueError, match="calibration"):
            MuonCalibration.from_dict(bad)


def test_the_fits_map_the_generator_quantiles_onto_the_data_quantiles_in_the_tails():
    rng = np.random.default_rng(0)
    generated = rng.normal(2.5, 0.5, 200_000)
    data = 2.5 + 0.5 * rng.standard_t(5, 200_000)  # heavier tails than the generator's
    upper = fit_upper_tail(generated, data)
    assert len(upper.upper_x) == KNOTS and not upper.lower_x
    levels = 1 - np.geomspace(TAIL_PROBABILITY, MIN_MUONS_BEYOND / len(data), KNOTS)
    np.testing.assert_allclose(upper.upper_x, np.quantile(generated, levels))
    np.testing.assert_allclose(upper.upper_y[1:], np.quantile(data, levels)[1:])
    both = fit_both_tails(generated, data)
    np.testing.assert_allclose(both.lower_x, np.quantile(generated, 1 - levels[::-1]))
    np.testing.assert_allclose(both.lower_y[:-1], np.quantile(data, 1 - levels[::-1])[:-1])
    mapped = both.apply(torch.from_numpy(generated)).numpy()
    middle = (generated > both.lower_x[-1]) & (generated < both.upper_x[0])
    np.testing.assert_array_equal(mapped[middle], generated[middle])
    for threshold in (4.0, 4.5, 5.0):  # the tail counts now follow the data's (they did not before)
        for sign in (1, -1):
            cut = 2.5 + sign * (threshold - 2.5)
            count = (lambda x: int(np.sum(x > cut))) if sign > 0 else (lambda x: int(np.sum(x < cut)))
            n_data, n_mapped, n_raw = count(data), count(mapped), count(generated)
            assert abs(n_mapped - n_data) < 4 * np.sqrt(n_data) + 10
            assert n_raw < 0.8 * n_data


def test_the_fits_refuse_too_few_muons_a_generator_far_from_the_data_and_unknown_maps():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="too few"):
        fit_upper_tail(rng.normal(size=500), rng.normal(size=500))
    with pytest.raises(ValueError, match="not strictly increasing"):
        fit_upper_tail(rng.normal(5.0, 0.01, 5000), rng.normal(2.0, 0.01, 5000))
    muons = np.abs(rng.normal(size=(5000, 3))) + 1
    with pytest.raises(ValueError, match="one or more of energy, radius"):
        fit_calibration(muons, muons, maps=("size",))
    only_energy = fit_calibration(muons, muons, maps=("energy",))
    assert only_energy.log10_energy is not None and only_energy.log10_radius is None


def test_a_radius_map_scales_x_and_y_alike_and_leaves_a_muon_on_the_axis_where_it_is():
    muons = torch.tensor([[100.0, 3.0, 4.0], [100.0, 0.0, 0.0], [100.0, 0.3, -0.4]], dtype=torch.float32)
    calibrated = MuonCalibration(None, BOTH).apply(muons.clone())
    # r = 5 m: log10 r 0.699 is between the tails; r = 0.5 m: log10 r -0.301 -> -0.602, r' = 0.25 m
    torch.testing.assert_close(calibrated, torch.tensor([[100.0, 3.0, 4.0], [100.0, 0.0, 0.0], [100.0, 0.15, -0.2]]))


def distorted_own_events(model: MuonBundleModel, n_events: int, seed: int) -> RaggedBatch:
    """The model's own bundles for energy_dependent_events' primaries with a known monotone
    distortion of the tails: log10 E stretched above its 90 % quantile, log10 r stretched below its
    10 % and above its 90 % quantile (what a calibration has to undo)."""
    conditions = energy_dependent_events(n_events, seed).conditions
    own = model.sample(*(conditions[:, i] for i in range(4)), seed=seed)
    muons = own.flat_muons.astype(np.float64)
    log10_energy = np.log10(muons[:, 0])
    high = np.quantile(log10_energy, 0.9)
    muons[:, 0] = 10 ** (log10_energy + 0.8 * np.maximum(log10_energy - high, 0))
    log10_radius = np.log10(np.hypot(muons[:, 1], muons[:, 2]))
    low, high = np.quantile(log10_radius, [0.1, 0.9])
    stretched = log10_radius - 0.5 * np.maximum(low - log10_radius, 0) + 0.5 * np.maximum(log10_radius - high, 0)
    muons[:, 1:] *= (10 ** (stretched - log10_radius))[:, None]
    return RaggedBatch(own.conditions, own.counts, muons.astype(np.float32))


def test_calibrate_writes_a_model_whose_muons_follow_the_maps_and_keeps_the_networks(tmp_path, capsys):
    source = tiny_model(energy_dependent_events(300, seed=29))
    source.save(tmp_path / "model")
    train = distorted_own_events(source, 3000, seed=30)
    write_shard(train, tmp_path / "train" / "part-00000.parquet", {})
    bad = distorted_own_events(source, 20, seed=31)
    conditions = bad.conditions.copy()
    conditions[:2, 0] = -1.0  # energy_non_positive
    write_shard(RaggedBatch(conditions, bad.counts, bad.flat_muons), tmp_path / "train" / "part-00001.parquet", {})

    assert main(["calibrate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--out", str(tmp_path / "calibrated"), "--seed", "3"]) == 0

    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((tmp_path / "calibrated" / "calibration.json").read_text())
    assert report["data"]["rejected_rows"] == {"energy_non_positive": 2}
    assert (tmp_path / "calibrated" / "quarantine" / "calibration.parquet").exists()
    assert printed["tail_counts"] == report["tail_counts"] and report["maps"] == ["energy", "radius"]
    calibrated = MuonBundleModel.load(tmp_path / "calibrated")
    assert calibrated.calibration.log10_energy is not None and calibrated.calibration.log10_radius is not None
    assert json.loads((tmp_path / "calibrated" / "model.json").read_text())["calibration"] == calibrated.calibration.to_dict()
    for name, value in calibrated.state_dict().items():  # the networks are the source's
        torch.testing.assert_close(value, source.state_dict()[name], rtol=0, atol=0)

    # the same seed gives the same bundles with the maps applied: energies mapped, positions scaled
    args = [train.conditions[:, i] for i in range(4)]
    before, after = source.sample(*args, seed=5), calibrated.sample(*args, seed=5)
    np.testing.assert_array_equal(after.counts, before.counts)
    expected = calibrated.calibration.apply(torch.from_numpy(before.flat_muons.copy())).numpy()
    np.testing.assert_allclose(after.flat_muons, expected, rtol=1e-5, atol=1e-6)
    azimuth = lambda m: np.arctan2(m[:, 2], m[:, 1])  # noqa: E731
    np.testing.assert_allclose(azimuth(after.flat_muons), azimuth(before.flat_muons), atol=1e-5)
    # on the fit events, the calibrated generator's quantiles at the knots are the data's
    fitted = RaggedBatch.concat([train, bad.slice(2, len(bad))])
    raw = generator_muons(calibrated, fitted, seed=3)
    mapped = calibrated.calibration.apply(torch.from_numpy(raw.copy())).numpy()
    data = fitted.flat_muons.astype(np.float64)
    levels = 1 - np.geomspace(TAIL_PROBABILITY, MIN_MUONS_BEYOND / len(data), KNOTS)
    radius = lambda m: np.log10(np.hypot(m[:, 1], m[:, 2]))  # noqa: E731
    for level in levels[[5, 10, 15]]:
        for value, q in ((lambda m: np.log10(m[:, 0]), level), (radius, level), (radius, 1 - level)):
            assert abs(np.quantile(value(mapped), q) - np.quantile(value(data), q)) < 0.03
    for value, q in ((lambda m: np.log10(m[:, 0]), levels[15]), (radius, levels[15]), (radius, 1 - levels[15])):
        assert abs(np.quantile(value(raw), q) - np.quantile(value(data), q)) > 0.05  # the distortion was there

    # the evaluation names the maps of the model it evaluates
    assert main(["evaluate", "--model", str(tmp_path / "calibrated"), "--reference", str(tmp_path / "train" / "part-00000.parquet"),
                 "--out", str(tmp_path / "report")]) == 0
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["info"]["model_tail_maps"] == \
        ["log10_energy", "log10_radius"]
    assert "log10_energy, log10_radius" in (tmp_path / "report" / "report.html").read_text()

    # the same seed and data give the same maps
    assert main(["calibrate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--out", str(tmp_path / "again"), "--seed", "3"]) == 0
    assert MuonBundleModel.load(tmp_path / "again").calibration == calibrated.calibration

    # --maps energy: the radius is the generator's
    assert main(["calibrate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--out", str(tmp_path / "energy_only"), "--maps", "energy"]) == 0
    energy_only = MuonBundleModel.load(tmp_path / "energy_only")
    assert energy_only.calibration.log10_radius is None
    np.testing.assert_array_equal(energy_only.sample(*args, seed=5).flat_muons[:, 1:], before.flat_muons[:, 1:])


def test_calibrate_refuses_to_overwrite_its_input_model(tmp_path, capsys):
    train = energy_dependent_events(200, seed=40)
    tiny_model(train).save(tmp_path / "model")
    write_shard(train, tmp_path / "train" / "part-00000.parquet", {})
    assert main(["calibrate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--out", str(tmp_path / "model")]) == EXIT_OUTPUT
    assert "is the input model" in capsys.readouterr().err
    assert "calibration" not in json.loads((tmp_path / "model" / "model.json").read_text())


def test_the_shipped_models_carry_their_calibrations():
    from mubundle.generate.api import load_model

    assert load_model("km3net-arca").calibration.log10_radius is not None
    icecube = load_model("icecube").calibration
    assert icecube.log10_energy is not None and icecube.log10_radius is None


def test_a_distilled_student_and_a_resized_multiplicity_refit_keep_the_tail_maps():
    from mubundle.train.distill import DistillConfig, build_student
    from mubundle.train.multiplicity_fit import with_multiplicity_sizes

    model = tiny_model(energy_dependent_events(100, seed=50))
    model.calibration = MuonCalibration(UPPER, BOTH, "test")
    # the student regresses the generator before the maps, so it needs them as well
    assert build_student(model, DistillConfig()).calibration == model.calibration
    resized = with_multiplicity_sizes(model, {"multiplicity_hidden": model.config.multiplicity_hidden + 4})
    assert resized is not model and resized.calibration == model.calibration
