"""The map of the muon energies by the class of the event's multiplicity N (model.json
``calibration.log10_energy_by_n``) and ``mubundle calibrate --maps energy-by-multiplicity``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mubundle.cli import main
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from mubundle.errors import InvalidValueError
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.calibration import IDENTITY, MuonCalibration, MultiplicityMap, PrimaryEnergyMap, QuantileMap
from mubundle.train.calibration_fit import MIN_BIN_MUONS, N_CLASSES, check_maps, fit_by_multiplicity, fit_calibration
from test_train_multiplicity_fit import energy_dependent_events, tiny_model

UP = QuantileMap((0.0, 1.0), (0.2, 1.2))  # log10 E + 0.2
DOWN = QuantileMap((0.0, 1.0), (-0.1, 0.9))  # log10 E - 0.1
BY_N = MultiplicityMap((1, 2, 4), (UP, DOWN, IDENTITY))


def test_each_muon_takes_the_map_of_its_events_class_of_n():
    values = torch.tensor([2.0, 2.0, 2.0, 2.0, 2.0, 2.0], dtype=torch.float64)
    n = torch.tensor([1, 2, 3, 4, 50, 10_000])
    np.testing.assert_allclose(BY_N.apply(values, n).numpy(), [2.2, 1.9, 1.9, 2.0, 2.0, 2.0])
    assert (values == 2.0).all()  # the caller's values are not mapped in place
    # classes in any order, or one absent: each value by its own class, as mapping all and selecting
    shuffled, without_pairs = torch.tensor([3, 50, 1, 1, 2, 7]), torch.tensor([50, 1, 7, 1, 4, 9])
    np.testing.assert_allclose(BY_N.apply(values + torch.arange(6.0), shuffled).numpy(), [1.9, 3.0, 4.2, 5.2, 5.9, 7.0])
    np.testing.assert_allclose(BY_N.apply(values + torch.arange(6.0), without_pairs).numpy(), [2.0, 3.2, 4.0, 5.2, 6.0, 7.0])
    assert BY_N.apply(values.float(), n).dtype == torch.float32
    with pytest.raises(InvalidValueError, match="needs N for each of the 6 values"):
        BY_N.apply(values, n[:3])
    muons = torch.tensor([[100.0, 3.0, 4.0], [100.0, 3.0, 4.0]])
    calibrated = MuonCalibration(log10_energy_by_n=BY_N).apply(muons.clone(), multiplicity=torch.tensor([1, 7]))
    np.testing.assert_allclose(calibrated.numpy(), [[100.0 * 10**0.2, 3.0, 4.0], [100.0, 3.0, 4.0]], rtol=1e-6)
    with pytest.raises(InvalidValueError, match="needs the N of each of the 2 muons' events"):
        MuonCalibration(log10_energy_by_n=BY_N).apply(muons.clone())


def test_the_map_round_trips_through_model_json_and_refuses_bad_classes():
    calibration = MuonCalibration(log10_energy_by_n=BY_N, fitted_on="test")
    text = json.dumps(calibration.to_dict())
    assert MuonCalibration.from_dict(json.loads(text)) == calibration
    assert calibration.map_names == ["log10_energy_by_n"] and calibration.needs_multiplicity
    for first_n, maps, message in (((2, 4), (UP, DOWN), "start at 1"), ((1, 4, 2), (UP, DOWN, UP), "strictly increasing"),
                                   ((1, 2), (UP,), "one map per class"), ((1, 2.5), (UP, DOWN), "integers")):
        with pytest.raises(InvalidValueError, match=message):
            MultiplicityMap(first_n, maps)
    for bad in ([1, "two", 4], [True, 2, 4], [1, 2, 4.5]):
        broken = json.loads(text)
        broken["log10_energy_by_n"]["first_n"] = bad
        with pytest.raises(InvalidValueError, match="calibration.log10_energy_by_n"):
            MuonCalibration.from_dict(broken)


def test_the_fit_maps_each_class_below_the_last_onto_the_data_and_leaves_the_many_muon_bundles_alone():
    rng = np.random.default_rng(5)
    multiplicity = rng.choice([1, 2, 3, 5, 20, 300], 60_000)
    generated = rng.normal(2.4, 0.5, multiplicity.size)
    shift = np.select([multiplicity == 1, multiplicity <= 3], [0.1, -0.05], 0.0)
    data = generated + shift + rng.normal(0, 0.01, multiplicity.size)
    fitted = fit_by_multiplicity(generated, data, multiplicity)
    assert fitted.first_n == N_CLASSES and fitted.maps[-1] is IDENTITY
    mapped = fitted.apply(torch.from_numpy(generated), torch.from_numpy(multiplicity)).numpy()
    for members in (multiplicity == 1, (multiplicity >= 2) & (multiplicity <= 3), multiplicity == 5):
        for level in (0.1, 0.5, 0.9):
            assert abs(np.quantile(mapped[members], level) - np.quantile(data[members], level)) < 0.01
    np.testing.assert_array_equal(mapped[multiplicity >= 11], generated[multiplicity >= 11])
    with pytest.raises(ValueError, match="no class of N below 11"):
        fit_by_multiplicity(generated[:100], data[:100], multiplicity[:100])


def test_fit_calibration_fits_the_map_by_n_on_what_the_energy_maps_put_out_and_guards_it():
    rng = np.random.default_rng(6)
    n = 40_000
    multiplicity = rng.choice([1, 2, 30], n)
    log10_e0 = rng.uniform(4.0, 6.0, n)
    generated = np.stack([10 ** rng.normal(2.5, 0.5, n), rng.normal(0, 5, n), rng.normal(0, 5, n)], axis=1)
    by_e0 = PrimaryEnergyMap((4.0, 5.0, 6.0), (UP, UP, UP))  # kept: every muon + 0.2 dex
    data = generated * np.where(multiplicity == 1, 10**0.3, 10**0.2)[:, None] ** np.array([1, 0, 0])
    kept = MuonCalibration(log10_energy_by_e0=by_e0, fitted_on="the input's")
    fitted = fit_calibration(generated, data, "this fit", ("energy-by-multiplicity",), log10_e0, kept, multiplicity=multiplicity)
    assert fitted.log10_energy_by_e0 is by_e0
    out = fitted.apply(torch.from_numpy(generated.copy()), torch.from_numpy(log10_e0), torch.from_numpy(multiplicity)).numpy()
    single = multiplicity == 1
    assert abs(np.median(np.log10(out[single, 0])) - np.median(np.log10(data[single, 0]))) < 0.01
    np.testing.assert_allclose(out[multiplicity == 30], data[multiplicity == 30], rtol=1e-9)  # the identity class
    with pytest.raises(ValueError, match="needs the N of each muon's event"):
        fit_calibration(generated, data, "", ("energy-by-multiplicity",), log10_e0, kept)
    with pytest.raises(ValueError, match="name energy-by-multiplicity as well"):
        check_maps(["energy-by-energy"], fitted)
    check_maps(["energy-by-energy", "energy-by-multiplicity"], fitted)
    check_maps(["radius"], fitted)  # the radius maps act before it and do not depend on it


def test_calibrate_by_multiplicity_makes_the_single_muons_harder_and_nothing_else(tmp_path):
    source = tiny_model(energy_dependent_events(300, seed=29))
    source.save(tmp_path / "model")
    conditions = energy_dependent_events(14_000, seed=51).conditions
    own = source.sample(*(conditions[:, i] for i in range(4)), seed=51)
    multiplicity = np.repeat(own.counts, own.counts)
    assert (multiplicity == 1).sum() >= MIN_BIN_MUONS
    muons = own.flat_muons.copy()
    muons[multiplicity == 1, 0] *= 10**0.3  # the data's single muons are twice as energetic
    write_shard(RaggedBatch(own.conditions, own.counts, muons), tmp_path / "train" / "part-00000.parquet", {})

    assert main(["calibrate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--out", str(tmp_path / "calibrated"), "--maps", "energy-by-multiplicity", "--seed", "3"]) == 0
    calibrated = MuonBundleModel.load(tmp_path / "calibrated")
    assert calibrated.calibration.map_names == ["log10_energy_by_n"]
    assert json.loads((tmp_path / "calibrated" / "calibration.json").read_text())["maps"] == ["energy-by-multiplicity"]

    args = [conditions[:, i] for i in range(4)]
    before, after = source.sample(*args, seed=7), calibrated.sample(*args, seed=7)
    np.testing.assert_array_equal(after.counts, before.counts)
    np.testing.assert_array_equal(after.flat_muons[:, 1:], before.flat_muons[:, 1:])  # radii untouched
    n = np.repeat(before.counts, before.counts)
    lift = np.log10(after.flat_muons[:, 0]) - np.log10(before.flat_muons[:, 0])
    assert abs(np.median(lift[n == 1]) - 0.3) < 0.05
    assert np.all(np.abs(lift[(n >= 2) & (n <= 10)]) < 0.1)  # undistorted classes: maps near the identity
    np.testing.assert_array_equal(lift[n >= 11], 0.0)


def test_a_class_map_by_e0_needs_each_values_e0_and_round_trips():
    by_e0 = PrimaryEnergyMap((4.0, 5.0, 6.0), (IDENTITY, UP, IDENTITY))  # + 0.2 dex at E0 = 1e5 GeV, fading out
    by_n_and_e0 = MultiplicityMap((1, 2), (by_e0, IDENTITY))
    calibration = MuonCalibration(log10_energy_by_n=by_n_and_e0)
    assert by_n_and_e0.needs_primary_energy and calibration.needs_primary_energy and not BY_N.needs_primary_energy
    values = torch.full((4,), 2.0, dtype=torch.float64)
    n, e0 = torch.tensor([1, 1, 1, 2]), torch.tensor([5.0, 4.5, 7.0, 5.0], dtype=torch.float64)
    np.testing.assert_allclose(by_n_and_e0.apply(values, n, e0).numpy(), [2.2, 2.1, 2.0, 2.0])
    with pytest.raises(InvalidValueError, match="depends on E0"):
        by_n_and_e0.apply(values, n)
    assert MuonCalibration.from_dict(json.loads(json.dumps(calibration.to_dict()))) == calibration


def test_the_fit_by_n_and_e0_follows_an_error_that_changes_with_e0_and_leaves_thin_classes_alone():
    rng = np.random.default_rng(8)
    multiplicity = rng.choice([1, 2, 5, 50], 120_000, p=[0.45, 0.45, 0.05, 0.05])
    log10_e0 = rng.uniform(4.0, 6.0, multiplicity.size)
    generated = rng.normal(2.4, 0.5, multiplicity.size)
    shift = np.where(multiplicity == 1, np.where(log10_e0 < 5.0, 0.2, -0.1), 0.0)  # single muons only
    data = generated + shift
    fitted = fit_by_multiplicity(generated, data, multiplicity, log10_e0=log10_e0)
    assert isinstance(fitted.maps[0], PrimaryEnergyMap) and isinstance(fitted.maps[1], PrimaryEnergyMap)
    assert fitted.maps[2] is IDENTITY and fitted.maps[3] is IDENTITY  # 6 000 muons over four bins; the last class
    mapped = fitted.apply(torch.from_numpy(generated), torch.from_numpy(multiplicity), torch.from_numpy(log10_e0)).numpy()
    for low, high in ((4.0, 4.5), (4.5, 5.0), (5.0, 5.5), (5.5, 6.0)):
        # near the bins' centres (between them the neighbours' maps mix in)
        for cls in (multiplicity == 1, multiplicity == 2):
            near = cls & (np.abs(log10_e0 - (low + high) / 2) < 0.05)
            assert abs(np.median(mapped[near]) - np.median(data[near])) < 0.03
    np.testing.assert_array_equal(mapped[multiplicity >= 4], generated[multiplicity >= 4])
    with pytest.raises(ValueError, match="fit the same map"):
        check_maps(["energy-by-multiplicity", "energy-by-multiplicity-and-energy"], None)
