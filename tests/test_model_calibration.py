"""The calibration: monotone maps of the generator's log10 E and log10 r tails (model.json
``calibration``) and ``mubundle calibrate``, which fits them."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mubundle.cli import main
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from mubundle.errors import EXIT_OUTPUT, InvalidValueError
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.calibration import IDENTITY, MuonCalibration, MuonEnergyMaps, PrimaryEnergyMap, QuantileMap, TailMap
from mubundle.model.domain import ExtrapolationWarning, ModelDomain
from mubundle.train.calibration_fit import (
    BULK_LEVELS,
    KNOTS,
    MIN_BIN_MUONS,
    MIN_MUONS_BEYOND,
    TAIL_PROBABILITY,
    fit_both_tails,
    fit_by_primary_energy,
    check_maps,
    fit_calibration,
    fit_upper_tail,
    generator_muons,
    maps_of,
    muon_energy_classes_of,
    muon_log10_e0,
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
    with pytest.raises(ValueError, match="the generator's upper tail is so far from the data's that the map would fold back"):
        fit_upper_tail(rng.normal(5.0, 0.01, 5000), rng.normal(2.0, 0.01, 5000))
    muons = np.abs(rng.normal(size=(5000, 3))) + 1
    with pytest.raises(ValueError, match="one or more of energy, radius"):
        fit_calibration(muons, muons, maps=("size",))
    only_energy = fit_calibration(muons, muons, maps=("energy",))
    assert only_energy.log10_energy is not None and only_energy.log10_radius is None


def test_a_map_that_cannot_be_fitted_names_the_map_its_e0_bin_whose_knots_and_what_to_do():
    rng = np.random.default_rng(3)
    # the generator's upper tail starts above the data's: the innermost knot, the generator's 95 % quantile
    # (which maps onto itself), is not below the data's next knot
    with pytest.raises(ValueError) as refused:
        fit_upper_tail(rng.normal(5.0, 0.01, 5000), rng.normal(2.0, 0.01, 5000), "log10 E", "energy")
    message = str(refused.value)
    assert message.startswith("the energy map (log10 E, upper tail, all E0): the generator's quantile at level 0.95, 5")
    assert "lies at or above the data's next knot 2" in message and message.endswith("or leave energy out of --maps")
    # the data's radii tie in the E0 bin 5-5.5 (all at 5 m): that bin's data knots are named
    n = 6000
    log10_e0 = np.where(np.arange(n) < n // 2, 4.2, 5.2)
    generated = np.stack([10 ** rng.uniform(1, 3, n), rng.normal(0, 10, n), rng.normal(0, 10, n)], axis=1)
    data = generated.copy()
    data[n // 2:, 1:] = (3.0, 4.0)
    with pytest.raises(ValueError) as refused:
        fit_calibration(generated, data, maps=("radius-by-energy",), log10_e0=log10_e0)
    message = str(refused.value)
    assert message.startswith("the radius-by-energy map (log10 r at log10 E0 5-5.5): the data's knots (quantiles at levels")
    assert "are not strictly increasing: [0.699, 0.699," in message
    assert message.endswith("fit on more events in that E0 range (e.g. a set restricted in energy, `mubundle simulate "
                            "--energy-range`), or leave radius-by-energy out of --maps")
    with pytest.raises(ValueError, match=r"the energy-by-energy map \(log10 E by E0\): no bin of 0.5 in log10 E0 holds "
                                         r"2000 data muons with a log10 E \(the fullest: 1998 at log10 E0 4-4.5\); .*"
                                         "or leave energy-by-energy out of --maps"):
        fit_calibration(generated[:1998], data[:1998], maps=("energy-by-energy",), log10_e0=log10_e0[:1998])


def test_a_radius_map_scales_x_and_y_alike_and_leaves_a_muon_on_the_axis_where_it_is():
    muons = torch.tensor([[100.0, 3.0, 4.0], [100.0, 0.0, 0.0], [100.0, 0.3, -0.4]], dtype=torch.float32)
    calibrated = MuonCalibration(None, BOTH).apply(muons.clone())
    # r = 5 m: log10 r 0.699 is between the tails; r = 0.5 m: log10 r -0.301 -> -0.602, r' = 0.25 m
    torch.testing.assert_close(calibrated, torch.tensor([[100.0, 3.0, 4.0], [100.0, 0.0, 0.0], [100.0, 0.15, -0.2]]))


SHIFT = QuantileMap((0.0, 1.0), (0.3, 1.3))  # log10 r + 0.3: radii x 2
BY_E0 = PrimaryEnergyMap((4.0, 5.0, 6.0), (IDENTITY, SHIFT, IDENTITY))


def test_a_map_by_primary_energy_interpolates_in_log10_e0_and_holds_the_outer_maps_beyond_its_anchors():
    values = torch.tensor([-1.0, 0.0, 0.5, 2.0, 0.5, 0.5, 0.5, 0.5], dtype=torch.float64)
    log10_e0 = torch.tensor([5.0, 5.0, 5.0, 5.0, 4.5, 5.75, 3.0, 9.0], dtype=torch.float64)
    # at the anchor 5: + 0.3 everywhere (the segments continue beyond the knots); halfway to an
    # identity anchor: + 0.15; a quarter of the way: + 0.225; beyond the outer identity anchors: nothing
    expected = torch.tensor([-0.7, 0.3, 0.8, 2.3, 0.65, 0.575, 0.5, 0.5], dtype=torch.float64)
    torch.testing.assert_close(BY_E0.apply(values, log10_e0), expected)
    dense = torch.linspace(-3, 3, 601, dtype=torch.float64)
    for e0 in (3.0, 4.2, 5.0, 5.9, 7.0):  # strictly increasing at every E0: the order of the radii is kept
        assert torch.all(torch.diff(BY_E0.apply(dense, torch.full_like(dense, e0))) > 0)
    muons = torch.tensor([[100.0, 3.0, 4.0], [100.0, 3.0, 4.0], [100.0, 0.0, 0.0]])
    calibrated = MuonCalibration(log10_radius_by_e0=BY_E0).apply(muons.clone(), torch.tensor([5.0, 6.5, 5.0]))
    torch.testing.assert_close(calibrated, torch.tensor([[100.0, 3 * 10**0.3, 4 * 10**0.3], [100.0, 3.0, 4.0],
                                                         [100.0, 0.0, 0.0]]))
    with pytest.raises(InvalidValueError, match="needs log10 E0 for each of the 3 muons"):
        MuonCalibration(log10_radius_by_e0=BY_E0).apply(muons.clone())


def test_a_map_by_primary_energy_is_the_anchor_by_anchor_interpolation_for_any_knot_counts_and_values():
    # maps of 2, 3 and 5 knots (padded to a common length inside), values far beyond every knot,
    # E0 on, between and beyond the anchors: each muon as the interpolation of its two anchors' maps
    maps = (IDENTITY, QuantileMap((-1.0, 0.0, 2.0), (-1.5, 0.2, 2.1)),
            QuantileMap((-3.0, -1.0, 0.5, 1.0, 4.0), (-2.0, -0.5, 0.6, 1.4, 3.0)), IDENTITY)
    by_e0 = PrimaryEnergyMap((4.0, 5.0, 6.0, 7.0), maps)
    generator = torch.Generator().manual_seed(3)
    values = torch.cat((torch.randn(500, generator=generator, dtype=torch.float64) * 3,
                        torch.tensor([-1e3, 1e3, -1.0, 0.5, 4.0], dtype=torch.float64)))
    log10_e0 = torch.cat((torch.rand(500, generator=generator, dtype=torch.float64) * 5 + 3.0,
                          torch.tensor([4.0, 5.0, 5.5, 6.0, 9.0], dtype=torch.float64)))
    expected = []
    for value, e0 in zip(values.tolist(), log10_e0.tolist()):
        e0 = min(max(e0, 4.0), 7.0)
        k = min(int(e0 - 4.0), 2)
        w = e0 - 4.0 - k
        one = torch.tensor([value], dtype=torch.float64)
        expected.append(float((1 - w) * maps[k].apply(one) + w * maps[k + 1].apply(one)))
    torch.testing.assert_close(by_e0.apply(values, log10_e0), torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-12, atol=1e-9)
    # float32 in, float32 out; a NaN value or E0 stays NaN instead of being moved into range
    mapped = by_e0.apply(torch.tensor([0.5, float("nan"), 0.5]), torch.tensor([5.0, 5.0, float("nan")]))
    assert mapped.dtype == torch.float32 and mapped[0] == pytest.approx(0.675) and mapped[1:].isnan().all()


def test_a_map_by_primary_energy_round_trips_refuses_bad_anchors_and_composes_with_the_tail_map():
    calibration = MuonCalibration(UPPER, None, "test", BY_E0)
    assert MuonCalibration.from_dict(json.loads(json.dumps(calibration.to_dict()))) == calibration
    assert calibration.map_names == ["log10_energy", "log10_radius_by_e0"] and calibration.needs_primary_energy
    good = BY_E0.to_dict()
    for bad in ({**good, "log10_e0": [4.0, 4.0, 6.0]}, {**good, "log10_e0": [4.0, 5.0]},
                {**good, "maps": [{"x": [0.0, 1.0], "y": [1.0, 0.0]}] * 3}, {"log10_e0": [4.0, 5.0]},
                {**good, "maps": [{"x": [0.0, 1.0]}] * 3}):
        with pytest.raises(InvalidValueError, match="calibration.log10_radius_by_e0"):
            MuonCalibration.from_dict({"log10_radius_by_e0": bad})
    # a tail map and a map by E0 of one variable compose: the map by E0 takes the tail map's output
    both = MuonCalibration(UPPER, BOTH, "test", BY_E0, BY_E0)
    assert MuonCalibration.from_dict(json.loads(json.dumps(both.to_dict()))) == both
    muons = torch.tensor([[1e4, 3.0, 4.0], [1e4, 3.0, 4.0]], dtype=torch.float64)
    log10_e0 = torch.tensor([5.0, 3.0], dtype=torch.float64)
    calibrated = both.apply(muons.clone(), log10_e0)
    # log10 E 4 -> 3.8 (UPPER) -> 4.1 at E0 = 1e5 (BY_E0), 3.8 beyond the anchors; r 5 m: BOTH leaves it
    # (between its tails), BY_E0 multiplies it by 10^0.3 at E0 = 1e5
    torch.testing.assert_close(torch.log10(calibrated[:, 0]), torch.tensor([4.1, 3.8], dtype=torch.float64))
    torch.testing.assert_close(calibrated[:, 1:], torch.tensor([[3 * 10**0.3, 4 * 10**0.3], [3.0, 4.0]], dtype=torch.float64))


def test_the_fit_by_primary_energy_maps_each_bin_onto_the_data_and_fades_out_beyond_the_fitted_bins():
    rng = np.random.default_rng(2)
    log10_e0 = rng.uniform(3.0, 6.0, 300_000)
    generated = rng.normal(0.7, 0.3, log10_e0.size)
    # the data: narrower and shifted by an amount that grows with E0; the bin 3.0-3.5 gets too few muons
    data = 0.9 + 0.2 * (log10_e0 - 4.5) + 0.15 * rng.standard_t(4, log10_e0.size)
    keep = (log10_e0 > 3.5) | (rng.random(log10_e0.size) < 0.03)
    log10_e0, generated, data = log10_e0[keep], generated[keep], data[keep]
    fitted = fit_by_primary_energy(generated, log10_e0, data, log10_e0)
    assert fitted.log10_e0 == (3.25, 3.75, 4.25, 4.75, 5.25, 5.75, 6.25)  # 3.0-3.5: < MIN_BIN_MUONS
    assert fitted.maps[0].is_identity and fitted.maps[-1].is_identity
    assert len(fitted.maps[1].x) == 2 * KNOTS + len(BULK_LEVELS)
    mapped = fitted.apply(torch.from_numpy(generated), torch.from_numpy(log10_e0)).numpy()
    for centre in fitted.log10_e0[1:-1]:  # near each anchor the calibrated quantiles are the data's
        near = np.abs(log10_e0 - centre) < 0.05
        levels = (0.02, 0.1, 0.5, 0.9, 0.98)
        for level in levels:
            assert abs(np.quantile(mapped[near], level) - np.quantile(data[near], level)) < 0.04
        assert max(abs(np.quantile(generated[near], q) - np.quantile(data[near], q)) for q in levels) > 0.1  # they differed
    with pytest.raises(ValueError, match="holds 2000 data muons"):
        fit_by_primary_energy(generated[:1000], log10_e0[:1000], data[:1000], log10_e0[:1000])
    muons = np.abs(rng.normal(size=(5000, 3))) + 1
    with pytest.raises(ValueError, match="needs the log10 E0"):
        fit_calibration(muons, muons, maps=("radius-by-energy",))
    assert MIN_BIN_MUONS == 2000


def test_a_map_by_e0_and_muon_energy_interpolates_in_both_and_round_trips():
    # at E0 anchor 5: identity for muons at 10 GeV, x 2 (+0.3 dex) from 1 TeV up; identity anchors at 4 and 6
    by_both = PrimaryEnergyMap((4.0, 5.0, 6.0), (IDENTITY, MuonEnergyMaps((1.0, 3.0), (IDENTITY, SHIFT)), IDENTITY))
    assert by_both.needs_muon_energy and not BY_E0.needs_muon_energy
    values = torch.full((6,), 0.5, dtype=torch.float64)
    log10_e0 = torch.tensor([5.0, 5.0, 5.0, 5.0, 4.5, 5.0], dtype=torch.float64)
    log10_energy = torch.tensor([0.0, 1.0, 2.0, 4.0, 3.0, 2.5], dtype=torch.float64)
    expected = torch.tensor([0.5, 0.5, 0.65, 0.8, 0.65, 0.725], dtype=torch.float64)
    torch.testing.assert_close(by_both.apply(values, log10_e0, log10_energy), expected)
    with pytest.raises(InvalidValueError, match="needs log10 E_mu"):
        by_both.apply(values, log10_e0)
    assert PrimaryEnergyMap.from_dict(json.loads(json.dumps(by_both.to_dict())), "test") == by_both
    with pytest.raises(InvalidValueError, match="at least 2"):
        MuonEnergyMaps((1.0,), (SHIFT,))
    # the calibration classes each muon by its energy after the energy maps: 10^2.7 -> 10^3.19 GeV (radius + 0.3 dex)
    calibration = MuonCalibration(log10_energy=TailMap(upper_x=(2.0, 3.0), upper_y=(2.0, 3.7)), log10_radius_by_e0=by_both)
    muons = torch.tensor([[10**2.7, 3.0, 4.0], [10.0, 3.0, 4.0]])
    calibrated = calibration.apply(muons.clone(), torch.tensor([5.0, 5.0]))
    torch.testing.assert_close(calibrated[:, 1:], torch.tensor([[3.0 * 10**0.3, 4.0 * 10**0.3], [3.0, 4.0]]))


def test_the_fit_by_e0_and_muon_energy_corrects_a_radius_error_that_depends_on_the_muon_energy():
    rng = np.random.default_rng(4)
    n = 60_000
    log10_e0 = rng.uniform(5.0, 5.5, n)
    log10_energy = rng.uniform(1.0, 3.0, n)
    data = rng.normal(1.0 - 0.3 * (log10_energy - 2.0), 0.2)  # energetic muons nearer the axis
    generated = rng.normal(1.0 - 0.6 * (log10_energy - 2.0), 0.2)  # too strongly so
    one = fit_by_primary_energy(generated, log10_e0, data, log10_e0)
    four = fit_by_primary_energy(generated, log10_e0, data, log10_e0, muon_energy_classes=4,
                                 generated_log10_energy=log10_energy, data_log10_energy=log10_energy)
    assert isinstance(four.maps[1], MuonEnergyMaps) and len(four.maps[1].maps) == 4
    e0, energy = torch.from_numpy(log10_e0), torch.from_numpy(log10_energy)
    by_e0 = one.apply(torch.from_numpy(generated), e0).numpy()
    by_both = four.apply(torch.from_numpy(generated), e0, energy).numpy()

    near = np.abs(log10_e0 - 5.25) < 0.05  # at the bin's anchor (between anchors the map fades out)

    def slope(values):
        return np.polyfit(log10_energy[near], values[near], 1)[0]

    assert abs(slope(by_e0) - slope(data)) > 0.1  # one map per E0 bin keeps much of the generator's slope
    assert abs(slope(by_both) - slope(data)) < 0.05
    # a bin without 4 x 2000 muons gets one map; classes need both sets of energies
    thin = fit_by_primary_energy(generated[:5000], log10_e0[:5000], data[:5000], log10_e0[:5000], muon_energy_classes=4,
                                 generated_log10_energy=log10_energy[:5000], data_log10_energy=log10_energy[:5000])
    assert isinstance(thin.maps[1], QuantileMap)
    with pytest.raises(ValueError, match="need the muon energies"):
        fit_by_primary_energy(generated, log10_e0, data, log10_e0, muon_energy_classes=4)
    # through fit_calibration: the classes use the energies after the energy maps (here an energy map by E0 that
    # halves every generator energy: the classes must be found at the data's energies, not the raw generator's)
    phi = rng.uniform(0, 2 * np.pi, n)

    def muons(log10_r, energy):
        return np.stack([10**energy, 10**log10_r * np.cos(phi), 10**log10_r * np.sin(phi)], axis=1)

    fitted = fit_calibration(muons(generated, log10_energy + np.log10(2.0)), muons(data, log10_energy),
                             maps=("energy-by-energy", "radius-by-energy"), log10_e0=log10_e0, muon_energy_classes=4)
    anchors = fitted.log10_radius_by_e0.maps[1].log10_energy
    assert len(anchors) == 4 and anchors[0] == pytest.approx(1.25, abs=0.02) and anchors[-1] == pytest.approx(2.75, abs=0.02)
    calibrated = fitted.apply(torch.from_numpy(muons(generated, log10_energy + np.log10(2.0))), torch.from_numpy(log10_e0))
    calibrated_log10_r = np.log10(np.hypot(calibrated[:, 1].numpy(), calibrated[:, 2].numpy()))
    assert abs(slope(calibrated_log10_r) - slope(data)) < 0.05


def test_fit_calibration_keeps_the_maps_it_does_not_fit_and_fits_a_map_by_e0_after_the_tail_map():
    rng = np.random.default_rng(3)
    n = 200_000
    log10_e0 = rng.uniform(4.0, 6.0, n)
    generated = np.stack([10 ** rng.normal(2.5, 0.5, n), rng.normal(0, 5, n), rng.normal(0, 5, n)], axis=1)
    shift = 0.2 * (log10_e0 - 5.0)  # the data's energies: shifted by an amount that grows with E0
    data = generated * np.stack([10**shift, np.ones(n), np.ones(n)], axis=1)
    kept = MuonCalibration(UPPER, None, "the input's fit", BY_E0)
    fitted = fit_calibration(generated, data, "this fit", ("energy-by-energy",), log10_e0, kept)
    assert fitted.log10_energy is UPPER and fitted.log10_radius_by_e0 is BY_E0 and fitted.log10_energy_by_e0 is not None
    assert fitted.fitted_on == ("log10_energy_by_e0: this fit; log10_energy, log10_radius_by_e0 kept from the input model "
                                "(the input's fit)")
    # the map by E0 was fitted on what UPPER puts out: together they take the generator onto the data
    mapped = fitted.map_log10_energy(torch.from_numpy(np.log10(generated[:, 0])), torch.from_numpy(log10_e0)).numpy()
    for centre in fitted.log10_energy_by_e0.log10_e0[1:-1]:
        near = np.abs(log10_e0 - centre) < 0.03
        for level in (0.05, 0.5, 0.95, 0.99):
            assert abs(np.quantile(mapped[near], level) - np.quantile(np.log10(data[near, 0]), level)) < 0.03
    with pytest.raises(ValueError, match="name radius-by-energy as well"):
        fit_calibration(generated, data, "", ("radius",), log10_e0, kept)
    refitted = fit_calibration(generated, data, "this fit", ("radius", "radius-by-energy"), log10_e0, kept)
    assert refitted.log10_radius is not None and refitted.log10_radius_by_e0 is not BY_E0 and refitted.log10_energy is UPPER


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


def test_calibrate_by_primary_energy_corrects_the_radii_where_they_were_distorted_and_nowhere_else(tmp_path):
    source = tiny_model(energy_dependent_events(300, seed=29))
    source.save(tmp_path / "model")
    conditions = energy_dependent_events(2500, seed=32).conditions
    own = source.sample(*(conditions[:, i] for i in range(4)), seed=32)
    log10_e0 = muon_log10_e0(own)
    muons = own.flat_muons.astype(np.float64)
    log10_radius = np.log10(np.hypot(muons[:, 1], muons[:, 2]))
    # above E0 = 1e5 GeV the data's radii are wider and larger than the generator's
    distorted = np.where(log10_e0 >= 5.0, 0.2 + log10_radius + 0.5 * (log10_radius - np.median(log10_radius)), log10_radius)
    muons[:, 1:] *= (10 ** (distorted - log10_radius))[:, None]
    write_shard(RaggedBatch(own.conditions, own.counts, muons.astype(np.float32)), tmp_path / "train" / "part-00000.parquet", {})

    assert main(["calibrate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--out", str(tmp_path / "calibrated"), "--maps", "radius-by-energy", "--seed", "3"]) == 0
    calibrated = MuonBundleModel.load(tmp_path / "calibrated")
    by_e0 = calibrated.calibration.log10_radius_by_e0
    # the bin 1e4-1e4.5 holds fewer than MIN_BIN_MUONS muons: no anchor of its own
    assert np.sum(log10_e0 < 4.5) < MIN_BIN_MUONS <= np.sum((log10_e0 >= 4.5) & (log10_e0 < 5.0))
    assert by_e0.log10_e0 == (4.25, 4.75, 5.25, 5.75, 6.25) and calibrated.calibration.log10_energy is None
    report = json.loads((tmp_path / "calibrated" / "calibration.json").read_text())
    assert set(report["tail_counts_by_e0"]) == {"log10 E0 4-4.5", "log10 E0 4.5-5", "log10 E0 5-5.5", "log10 E0 5.5-6"}

    args = [own.conditions[:, i] for i in range(4)]
    before, after = source.sample(*args, seed=5), calibrated.sample(*args, seed=5)
    np.testing.assert_array_equal(after.flat_muons[:, 0], before.flat_muons[:, 0])  # energies untouched
    below = muon_log10_e0(before) < 4.25  # the identity anchor and beyond
    assert below.sum() > 100
    np.testing.assert_allclose(after.flat_muons[below], before.flat_muons[below], rtol=1e-6, atol=1e-6)
    assert not np.allclose(after.flat_muons[~below], before.flat_muons[~below])
    # in-sample (the fit's events, N and seed), the calibrated radii of the fitted bins follow the data's quantiles
    fitted = RaggedBatch(own.conditions, own.counts, muons.astype(np.float32))
    raw = generator_muons(calibrated, fitted, seed=3)
    mapped = calibrated.calibration.apply(torch.from_numpy(raw.copy()), torch.from_numpy(log10_e0)).numpy()
    radius = lambda m: np.log10(np.hypot(m[:, 1], m[:, 2]))  # noqa: E731
    chosen = (log10_e0 >= 5.0) & (log10_e0 < 6.0)  # the two distorted bins (the neighbours' maps mix in between anchors)
    for level, distortion in ((0.5, 0.2), (0.9, 0.3)):
        assert abs(np.quantile(radius(raw)[chosen], level) - np.quantile(distorted[chosen], level)) > distortion
        assert abs(np.quantile(radius(mapped)[chosen], level) - np.quantile(distorted[chosen], level)) < 0.05


def test_calibrate_refuses_to_refit_a_tail_map_under_a_kept_map_by_e0_before_writing_anything(tmp_path, capsys):
    train = energy_dependent_events(200, seed=41)
    write_shard(train, tmp_path / "train" / "part-00000.parquet", {})
    assert main(["calibrate", "--model", "icecube", "--data", str(tmp_path / "train"), "--out", str(tmp_path / "out"),
                 "--maps", "energy"]) != 0
    assert "name energy-by-energy as well" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["calibrate", "--model", "icecube", "--data", str(tmp_path / "train"), "--out", str(tmp_path / "out"),
                 "--maps", "energy-by-energy", "--muon-energy-classes", "4"]) != 0
    assert "name radius-by-energy in --maps" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["calibrate", "--model", "icecube", "--data", str(tmp_path / "train"), "--out", str(tmp_path / "out"),
                 "--maps", "energy-by-energy"]) != 0  # the shipped radius map depends on the muon energy
    assert "radius map by E0 and muon energy" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # an energy map refitted under a kept radius map that depends on the muon energy
    by_both = PrimaryEnergyMap((4.0, 5.0, 6.0), (IDENTITY, MuonEnergyMaps((1.0, 3.0), (IDENTITY, SHIFT)), IDENTITY))
    with pytest.raises(ValueError, match="radius map by E0 and muon energy"):
        check_maps(["energy-by-energy"], MuonCalibration(log10_radius_by_e0=by_both))
    check_maps(["energy-by-energy"], MuonCalibration(log10_radius_by_e0=BY_E0))  # by E0 only: kept


def test_calibrate_without_maps_refits_the_kinds_of_maps_the_input_model_holds(tmp_path, capsys):
    from mubundle.generate.api import load_model

    # the shipped models: every kind they hold, so that none is kept over a refitted one (check_maps passes)
    icecube, arca = load_model("icecube").calibration, load_model("km3net-arca").calibration
    assert maps_of(icecube) == ("energy", "energy-by-energy", "radius-by-energy", "energy-by-multiplicity-and-energy")
    assert maps_of(arca) == ("energy", "radius", "energy-by-energy", "radius-by-energy", "energy-by-multiplicity")
    assert (muon_energy_classes_of(icecube), muon_energy_classes_of(arca)) == (8, 4)
    check_maps(maps_of(icecube), icecube, 8)
    check_maps(maps_of(arca), arca, 4)
    assert maps_of(None) == maps_of(MuonCalibration()) == ("energy", "radius") and muon_energy_classes_of(None) == 1

    # `mubundle calibrate` without --maps on a model with an energy tail map and an energy map by E0
    source = tiny_model(energy_dependent_events(300, seed=29))
    conditions = energy_dependent_events(2500, seed=32).conditions
    own = source.sample(*(conditions[:, i] for i in range(4)), seed=32)
    write_shard(own, tmp_path / "train" / "part-00000.parquet", {})
    source.calibration = MuonCalibration(log10_energy=UPPER, log10_energy_by_e0=BY_E0, fitted_on="test")
    source.save(tmp_path / "model")
    assert main(["calibrate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--out", str(tmp_path / "calibrated")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["maps"] == ["energy", "energy-by-energy"] and printed["muon_energy_classes"] == 1
    assert printed["maps_chosen_by"] == "the kinds of maps the input model holds"
    calibrated = MuonBundleModel.load(tmp_path / "calibrated").calibration
    assert calibrated.map_names == ["log10_energy", "log10_energy_by_e0"]
    assert calibrated.log10_energy != UPPER and calibrated.log10_energy_by_e0 != BY_E0  # both refitted
    report = json.loads((tmp_path / "calibrated" / "calibration.json").read_text())
    assert report["maps"] == printed["maps"] and report["maps_chosen_by"] == printed["maps_chosen_by"]


def test_calibrate_refuses_data_of_another_site_or_outside_the_domain_unless_extrapolation_is_allowed(tmp_path, capsys):
    source = tiny_model(energy_dependent_events(300, seed=29))
    write_shard(distorted_own_events(source, 1000, seed=30), tmp_path / "train" / "part-00000.parquet", {})
    command = ["calibrate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
               "--out", str(tmp_path / "calibrated"), "--maps", "energy"]
    name = str(tmp_path / "model")
    # a sea-water model and files without a site key (South Pole ice): refused, extrapolation or not
    source.domain = ModelDomain(energy_gev=(1e2, 1e7), zenith_rad=(0.0, 1.25), mass_number=(1.0, 56.0),
                                slant_depth_km=(1.0, 3.0), site="km3net-arca", medium="sea water")
    source.save(tmp_path / "model")
    for extra in ([], ["--allow-extrapolation"]):
        assert main([*command, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert f"calibration data {tmp_path / 'train'} is of site 'icecube', but model '{name}' was trained at site " \
               "'km3net-arca' (sea water)" in err
        assert not (tmp_path / "calibrated").exists()

    # an ice model trained up to 1e5 GeV and events up to 1e6 GeV
    source.domain = dataclasses.replace(source.domain, energy_gev=(1e2, 1e5), site="icecube", medium="ice")
    source.save(tmp_path / "model")
    outside = source.domain.check_conditions(energy_dependent_events(1000, seed=30).conditions)
    assert 0 < outside.n_outside < 1000
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mubundle calibrate: error: calibration data: energy ")
    assert f"is above the domain of model '{name}' (100-1e+05 GeV)" in err
    assert f"{outside.n_outside} of 1000 events outside" in err and "--allow-extrapolation" in err
    assert not (tmp_path / "calibrated" / "model.json").exists()

    with pytest.warns(ExtrapolationWarning) as warned:
        assert main([*command, "--allow-extrapolation"]) == 0
    messages = [str(w.message) for w in warned if w.category is ExtrapolationWarning]
    assert len(messages) == 1 and messages[0].startswith(f"extrapolating: {outside.n_outside} of 1000 calibration events "
                                                         f"lie outside the domain of model '{name}'")
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["extrapolated_events"] == outside.n_outside
    assert f"{outside.n_outside} events outside this domain (--allow-extrapolation)" in \
        MuonBundleModel.load(tmp_path / "calibrated").domain.notes[-1]


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

    arca = load_model("km3net-arca").calibration
    assert arca.map_names == ["log10_energy", "log10_radius", "log10_energy_by_e0", "log10_radius_by_e0", "log10_energy_by_n"]
    # since 0.6.8 the energies by class of N: single muons harder, pairs softer, N >= 11 untouched
    by_n = arca.log10_energy_by_n
    assert by_n.first_n == (1, 2, 4, 11) and by_n.maps[-1].is_identity
    at_median = [float(m.apply(torch.tensor([2.3], dtype=torch.float64))) - 2.3 for m in by_n.maps[:2]]
    assert at_median[0] > 0.05 and at_median[1] < -0.01
    # both maps by E0 up to 10^9 GeV (the radius map since 0.6.6, with sets up to 1e9 GeV; 4 muon-energy classes)
    assert arca.log10_radius_by_e0.log10_e0 == arca.log10_energy_by_e0.log10_e0 == (5.25, 5.75, 6.25, 6.75, 7.25, 7.75,
                                                                                    8.25, 8.75, 9.25)
    assert [len(m.maps) if isinstance(m, MuonEnergyMaps) else 1 for m in arca.log10_radius_by_e0.maps] == [1, 1] + [4] * 6 + [1]
    icecube = load_model("icecube").calibration
    assert icecube.map_names == ["log10_energy", "log10_energy_by_e0", "log10_radius_by_e0", "log10_energy_by_n"]
    # since 0.6.8 the energies by class of N and E0 (fitted where a half decade holds 2 000 muons of the class)
    assert [isinstance(m, PrimaryEnergyMap) for m in icecube.log10_energy_by_n.maps] == [True, True, True, False]
    assert icecube.log10_energy_by_n.needs_primary_energy and icecube.needs_primary_energy
    for by_e0 in (icecube.log10_energy_by_e0, icecube.log10_radius_by_e0):  # fitted from 10^4 to 10^9 GeV (0.6.6)
        assert by_e0.log10_e0 == (3.75, 4.25, 4.75, 5.25, 5.75, 6.25, 6.75, 7.25, 7.75, 8.25, 8.75, 9.25)
        assert by_e0.maps[0].is_identity and by_e0.maps[-1].is_identity
    # the radius map also by muon energy (8 classes where a bin holds 16 000 data muons: from 10^4.5 GeV), the
    # energy map with the minima as its first knots (the data's lowest muon energy: just above --min-energy, 1 GeV)
    assert icecube.log10_radius_by_e0.needs_muon_energy and not icecube.log10_energy_by_e0.needs_muon_energy
    assert [len(m.maps) if isinstance(m, MuonEnergyMaps) else 1 for m in icecube.log10_radius_by_e0.maps] == [1, 1] + [8] * 9 + [1]
    assert all(0.0 <= m.y[0] < 0.03 for m in icecube.log10_energy_by_e0.maps[1:-1])


def test_a_distilled_student_and_a_resized_multiplicity_refit_keep_the_tail_maps():
    from mubundle.train.distill import DistillConfig, build_student
    from mubundle.train.multiplicity_fit import with_multiplicity_sizes

    model = tiny_model(energy_dependent_events(100, seed=50))
    model.calibration = MuonCalibration(UPPER, BOTH, "test")
    # the student regresses the generator before the maps, so it needs them as well
    assert build_student(model, DistillConfig()).calibration == model.calibration
    resized = with_multiplicity_sizes(model, {"multiplicity_hidden": model.config.multiplicity_hidden + 4})
    assert resized is not model and resized.calibration == model.calibration


def test_calibrate_refuses_maps_that_send_muons_above_their_primarys_energy():
    """A map fitted on few muons can have a steep outermost segment; extended beyond the data it
    sent a 450-shower calibration's muons to 2e9 GeV from 1e5 GeV primaries, which every reader rejects."""
    from mubundle.train.calibration_fit import refuse_muons_above_primary

    conditions = np.array([[1e5, 0.1, 1, 2.0], [1e3, 0.1, 1, 2.0], [1e4, 0.1, 1, 2.0]], dtype=np.float32)
    batch = RaggedBatch(conditions, np.array([2, 0, 1]), np.ones((3, 3), dtype=np.float32))
    data = np.array([[2e3, 1.0, 1.0], [5e2, 2.0, 0.0], [1.7e3, 0.0, 3.0]])
    fine = np.array([[9e4, 1.0, 1.0], [5e2, 2.0, 0.0], [1e4, 0.0, 3.0]])  # at the primary's energy: allowed
    refuse_muons_above_primary(fine, batch, data)
    beyond = fine.copy()
    beyond[2, 0] = 2.3e4  # the third muon belongs to the third event (1e4 GeV), not the 1e5 GeV one
    with pytest.raises(ValueError, match=r"send 1 of 3 muons above their primary's energy \(a 2.3e\+04 GeV muon of a "
                                         r"1e\+04 GeV primary; the data's most energetic muon has 2e\+03 GeV\)"):
        refuse_muons_above_primary(beyond, batch, data)


def test_generate_reports_events_with_a_muon_above_their_primarys_energy(tmp_path, capsys):
    """A model whose map sends muons beyond their primary's energy (one calibrated before the refusal
    above, or a bad generator) is reported once and counted; the rows are written as sampled."""
    from mubundle.data.sources import read_events

    events = energy_dependent_events(200, seed=29)
    model = tiny_model(events)
    steep = TailMap(upper_x=(0.0, 4.0), upper_y=(0.0, 12.0))  # log10 E tripled: 1 TeV -> 1e9 GeV
    model.calibration = MuonCalibration(log10_energy=steep, fitted_on="test: a map far beyond its data")
    model.save(tmp_path / "model")
    write_shard(events, tmp_path / "primaries.parquet", {})
    out = tmp_path / "gen.parquet"
    with pytest.warns(RuntimeWarning, match=r"gave \d+ of 200 events a muon above their primary's energy"):
        assert main(["generate", "--model", str(tmp_path / "model"), "--primaries", str(tmp_path / "primaries.parquet"),
                     "--out", str(out), "--no-progress", "--allow-extrapolation"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["unphysical_events"] == read_events(out).rejected["muon_energy_above_primary"] > 0
    assert f"{summary['unphysical_events']} events have a muon above their primary's energy" in captured.err
