"""The energy calibration: a monotone map of the generator's upper log10 E tail (model.json
``energy_calibration``) and ``mubundle calibrate-energy``, which fits it."""

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
from mubundle.model.calibration import EnergyCalibration
from mubundle.train.energy_calibration import (
    KNOTS,
    MIN_MUONS_ABOVE,
    TAIL_PROBABILITY,
    fit_energy_calibration,
    generator_log10_energies,
)
from test_train_multiplicity_fit import energy_dependent_events, tiny_model

CALIBRATION = EnergyCalibration((3.0, 4.0, 4.5), (3.0, 3.8, 5.0))


def test_the_map_is_the_identity_below_the_first_knot_linear_between_knots_and_beyond_the_last():
    values = torch.tensor([1.0, 2.999, 3.0, 3.5, 4.0, 4.25, 4.5, 5.0])
    mapped = CALIBRATION.apply(values)
    # below: identity; between: 3 + 0.8 (x - 3) and 3.8 + 2.4 (x - 4); above: the last slope 2.4 continues
    expected = torch.tensor([1.0, 2.999, 3.0, 3.4, 3.8, 4.4, 5.0, 6.2])
    torch.testing.assert_close(mapped, expected)
    assert mapped.dtype == values.dtype
    two_knots = EnergyCalibration((3.0, 4.0), (3.0, 5.0)).apply(torch.tensor([2.0, 3.5, 5.0]))
    torch.testing.assert_close(two_knots, torch.tensor([2.0, 4.0, 7.0]))
    dense = torch.linspace(0, 7, 2001, dtype=torch.float64)
    assert torch.all(torch.diff(CALIBRATION.apply(dense)) > 0)  # strictly increasing: order kept


def test_the_map_round_trips_through_its_dict_and_refuses_bad_knots():
    assert EnergyCalibration.from_dict(json.loads(json.dumps(CALIBRATION.to_dict()))) == CALIBRATION
    for bad in ({"generator_log10_gev": [3.0, 3.0], "calibrated_log10_gev": [3.0, 4.0]},
                {"generator_log10_gev": [3.0, 4.0], "calibrated_log10_gev": [3.0, float("nan")]},
                {"generator_log10_gev": [3.0, 4.0, 5.0], "calibrated_log10_gev": [3.0, 4.0]},
                {"generator_log10_gev": [3.0]}, [1, 2]):
        with pytest.raises(InvalidValueError, match="energy_calibration"):
            EnergyCalibration.from_dict(bad)


def test_the_fit_maps_the_generator_quantiles_onto_the_data_quantiles_in_the_tail():
    rng = np.random.default_rng(0)
    generated = rng.normal(2.5, 0.5, 200_000)
    data = 2.5 + 0.5 * rng.standard_t(5, 200_000)  # heavier tail than the generator's
    calibration = fit_energy_calibration(generated, data)
    assert len(calibration.generator_log10_gev) == KNOTS
    levels = 1 - np.geomspace(TAIL_PROBABILITY, MIN_MUONS_ABOVE / len(data), KNOTS)
    np.testing.assert_allclose(calibration.generator_log10_gev, np.quantile(generated, levels))
    np.testing.assert_allclose(calibration.calibrated_log10_gev[1:], np.quantile(data, levels)[1:])
    assert calibration.calibrated_log10_gev[0] == calibration.generator_log10_gev[0]  # continuous at the start
    mapped = calibration.apply(torch.from_numpy(generated)).numpy()
    untouched = generated < calibration.generator_log10_gev[0]
    np.testing.assert_array_equal(mapped[untouched], generated[untouched])
    for threshold in (4.0, 4.5, 5.0):  # the tail counts now follow the data's (they did not before)
        n_data, n_mapped, n_raw = (int(np.sum(x > threshold)) for x in (data, mapped, generated))
        assert abs(n_mapped - n_data) < 4 * np.sqrt(n_data) + 10
        assert n_raw < 0.8 * n_data


def test_the_fit_refuses_too_few_muons_and_a_generator_far_above_the_data():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="too few"):
        fit_energy_calibration(rng.normal(size=500), rng.normal(size=500))
    with pytest.raises(ValueError, match="not strictly increasing"):
        fit_energy_calibration(rng.normal(5.0, 0.01, 5000), rng.normal(2.0, 0.01, 5000))


def tail_events(n_events: int, seed: int) -> RaggedBatch:
    """energy_dependent_events with a power-law muon spectrum (E^-2.7 above 100 GeV)."""
    events = energy_dependent_events(n_events, seed)
    rng = np.random.default_rng(seed + 200)
    muons = events.flat_muons.copy()
    muons[:, 0] = 100.0 * rng.pareto(1.7, len(muons)) + 100.0
    return RaggedBatch(events.conditions, events.counts, muons)


def test_calibrate_energy_writes_a_model_whose_energies_follow_the_map_and_whose_positions_are_unchanged(tmp_path, capsys):
    train = tail_events(1500, seed=30)
    source = tiny_model(train)
    source.save(tmp_path / "model")
    write_shard(train, tmp_path / "train" / "part-00000.parquet", {})
    bad = tail_events(20, seed=31)
    conditions = bad.conditions.copy()
    conditions[:2, 0] = -1.0  # energy_non_positive
    write_shard(RaggedBatch(conditions, bad.counts, bad.flat_muons), tmp_path / "train" / "part-00001.parquet", {})

    assert main(["calibrate-energy", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--out", str(tmp_path / "calibrated"), "--seed", "3"]) == 0

    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((tmp_path / "calibrated" / "energy_calibration.json").read_text())
    assert report["data"]["rejected_rows"] == {"energy_non_positive": 2}
    assert (tmp_path / "calibrated" / "quarantine" / "calibration.parquet").exists()
    assert printed["muons_above_log10_gev"] == report["muons_above_log10_gev"]
    calibrated = MuonBundleModel.load(tmp_path / "calibrated")
    assert calibrated.energy_calibration is not None
    assert json.loads((tmp_path / "calibrated" / "model.json").read_text())["energy_calibration"] == \
        calibrated.energy_calibration.to_dict()
    for name, value in calibrated.state_dict().items():  # the networks are the source's
        torch.testing.assert_close(value, source.state_dict()[name], rtol=0, atol=0)

    # the same seed gives the same bundles, with the map applied to the energies only
    before = source.sample(train.conditions[:, 0], train.conditions[:, 1], train.conditions[:, 2],
                           train.conditions[:, 3], seed=5)
    after = calibrated.sample(train.conditions[:, 0], train.conditions[:, 1], train.conditions[:, 2],
                              train.conditions[:, 3], seed=5)
    np.testing.assert_array_equal(after.counts, before.counts)
    np.testing.assert_array_equal(after.flat_muons[:, 1:], before.flat_muons[:, 1:])
    expected = calibrated.energy_calibration.apply(torch.log10(torch.from_numpy(before.flat_muons[:, 0])))
    np.testing.assert_allclose(np.log10(after.flat_muons[:, 0]), expected.numpy(), rtol=0, atol=1e-5)
    # on the fit events, the calibrated generator's quantiles at the knots are the data's
    fitted = RaggedBatch.concat([train, bad.slice(2, len(bad))])
    raw = generator_log10_energies(calibrated, fitted, seed=3)
    mapped = calibrated.energy_calibration.apply(torch.from_numpy(raw)).numpy()
    data = np.log10(fitted.flat_muons[:, 0].astype(np.float64))
    levels = 1 - np.geomspace(TAIL_PROBABILITY, MIN_MUONS_ABOVE / len(data), KNOTS)
    for level in levels[[5, 10, 15]]:
        assert abs(np.quantile(mapped, level) - np.quantile(data, level)) < 0.03 < abs(np.quantile(raw, level) - np.quantile(data, level))


def test_calibrate_energy_refuses_to_overwrite_its_input_model(tmp_path, capsys):
    train = tail_events(200, seed=40)
    tiny_model(train).save(tmp_path / "model")
    write_shard(train, tmp_path / "train" / "part-00000.parquet", {})
    assert main(["calibrate-energy", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--out", str(tmp_path / "model")]) == EXIT_OUTPUT
    assert "is the input model" in capsys.readouterr().err
    assert "energy_calibration" not in json.loads((tmp_path / "model" / "model.json").read_text())
