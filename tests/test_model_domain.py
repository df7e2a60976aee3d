"""A model's domain: stored in model.json, checked in one place, refused with one line, allowed on request."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

import mubundle
from helpers import SMALL_MODEL, make_synthetic_batch
from mubundle.geometry import MUONITRON_SURFACE_RADIUS_M, slant_from_vertical_depth, vertical_from_slant_depth
from mubundle.cli import main
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import default_metadata, write_shard
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.domain import (
    ExtrapolationError,
    ExtrapolationWarning,
    ModelDomain,
    check_primaries,
    domain_of_events,
)
from mubundle.model.transforms import FeatureTransform
from mubundle.sim.site import get_site

DOMAIN = ModelDomain(
    energy_gev=(1e4, 1e7), zenith_rad=(0.0, math.radians(70.0)), mass_number=(1.0, 56.0),
    slant_depth_km=(1.5, 2.5 / math.cos(math.radians(70.0))), vertical_depth_km=(1.5, 2.5),
    nuclei=(1.0, 4.0, 14.0, 27.0, 56.0), vertical_depths_km=(1.5, 2.0, 2.5), site="south-pole", medium="ice",
    training_data="test", command="test",
)


def inside_batch(n_events: int, seed: int) -> RaggedBatch:
    """Synthetic events whose primaries lie inside :data:`DOMAIN`."""
    batch = make_synthetic_batch(n_events, seed=seed)
    rng = np.random.default_rng(seed)
    zenith = np.arccos(rng.uniform(math.cos(math.radians(70.0)), 1.0, n_events))
    conditions = np.stack([10 ** rng.uniform(4, 6, n_events), zenith, batch.conditions[:, 2],
                           rng.choice([1.5, 2.0, 2.5], n_events) / np.cos(zenith)], axis=1).astype(np.float32)
    return RaggedBatch(conditions, batch.counts, batch.flat_muons)


@pytest.fixture(scope="module")
def domain_model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(inside_batch(300, seed=1)))
    model.domain = DOMAIN
    directory = tmp_path_factory.mktemp("domain_model")
    model.save(directory)
    return directory


@pytest.mark.parametrize("name", ["fast", "full"])
def test_shipped_models_record_the_training_domain_of_the_standard_dataset(name):
    model = mubundle.load(name)
    domain = model.domain
    assert model.name == name
    assert domain.energy_gev == (1e4, 1e7) and domain.mass_number == (1.0, 56.0)
    assert domain.zenith_rad == pytest.approx((0.0, math.radians(70.0)))
    assert domain.vertical_depths_km == (1.5, 2.0, 2.5) and domain.overburden_radius_m == MUONITRON_SURFACE_RADIUS_M
    assert domain.slant_depth_km[1] == pytest.approx(2.5 / math.cos(math.radians(70.0)))
    # the flat slant depths of the training set (2.5 km / cos 70 deg), converted back through the
    # spherical overburden: 2.5037 km; the curved conversion of 1.5 and 2.5 km lies inside
    flat_top = vertical_from_slant_depth(math.radians(70.0), 2500.0 / math.cos(math.radians(70.0))) / 1000.0
    assert domain.vertical_depth_km == pytest.approx((1.5, flat_top), rel=1e-12)
    curved = slant_from_vertical_depth(math.radians(70.0), np.array([1500.0, 2500.0])) / 1000.0
    assert domain.check(1e5, math.radians(70.0), 1.0, curved).n_outside == 0
    assert domain.medium == "ice" and "south-pole" in domain.site and domain.command
    assert domain.to_dict()["zenith_deg"] == [0.0, 70.0]


def test_the_shipped_default_covers_the_icecube_domain_and_refuses_beyond_it():
    model = mubundle.load()
    domain = model.domain
    assert model.name == "icecube" and domain.site == "icecube" and domain.medium == "ice"
    assert domain.energy_gev == (3e2, 1e9) and domain.mass_number == (1.0, 56.0)
    assert domain.zenith_rad[1] == pytest.approx(math.radians(89.0))
    assert domain.vertical_depths_km == (1.4, 1.7, 2.0, 2.3, 2.6)
    assert domain.vertical_depth_km == pytest.approx((1.4, 2.6), abs=1e-5)
    assert domain.overburden_radius_m == MUONITRON_SURFACE_RADIUS_M
    # the whole flux range: 1e9 GeV iron at 85 deg (curved slant depth of 2 km vertical) is inside
    slant = slant_from_vertical_depth(math.radians(85.0), np.array([2000.0])) / 1000.0
    assert len(model.sample(1e9, math.radians(85.0), 56.0, float(slant[0]), seed=1)) == 1
    assert "part-{00000..00239}.parquet" in domain.training_data and "mubundle train" in domain.command
    with pytest.raises(ValueError, match=r"energy 2e\+09 GeV is above the domain of model 'icecube'"):
        model.sample(2e9, 0.3, 56.0, 2.0, seed=1)
    with pytest.raises(ValueError, match="vertical depth .*3 km is above"):
        model.sample(1e5, 0.0, 1.0, 3.0, seed=1)


def test_the_km3net_arca_model_knows_its_sea_water_depths_and_refuses_icecube_ones():
    model = mubundle.load("km3net-arca")
    domain = model.domain
    assert domain.site == "km3net-arca" and domain.medium == "sea water"
    assert domain.energy_gev == (3e2, 1e9) and domain.vertical_depths_km == (2.9, 3.15, 3.4)
    assert domain.overburden_radius_m == get_site("km3net-arca").overburden_radius_m
    slant = get_site("km3net-arca").slant_km(3.15, math.cos(math.radians(60.0)))
    assert len(model.sample(1e6, math.radians(60.0), 4.0, float(slant), seed=1)) == 1
    with pytest.raises(ValueError, match=r"slant depth 2 km is below the domain of model 'km3net-arca' \(2.9-124.8 km\)"):
        model.sample(1e6, 0.0, 1.0, 2.0, seed=1)  # an IceCube depth


def test_domain_round_trips_through_json_and_a_malformed_one_is_named():
    assert ModelDomain.from_dict(json.loads(json.dumps(DOMAIN.to_dict()))) == DOMAIN
    with pytest.raises(ValueError, match="missing energy_gev"):
        ModelDomain.from_dict({"zenith_rad": [0, 1], "mass_number": [1, 56], "slant_depth_km": [1, 2]})
    with pytest.raises(ValueError, match="low <= high"):
        ModelDomain.from_dict(dict(DOMAIN.to_dict(), energy_gev=[1e7, 1e4]))


def test_sampling_outside_the_domain_is_refused_with_one_line_naming_value_bound_and_model():
    model = mubundle.load("fast")
    with pytest.raises(ExtrapolationError) as refused:
        model.sample(1e9, 0.3, 56.0, 2.0, seed=1)
    message = str(refused.value)
    assert "\n" not in message
    assert "energy 1e+09 GeV is above the domain of model 'fast' (1e+04-1e+07 GeV)" in message
    assert "allow_extrapolation=True / --allow-extrapolation" in message
    with pytest.raises(ValueError, match=r"zenith 1.5 rad \(85.9 deg\) is above .* 0-70 deg"):
        model.sample(1e5, 1.5, 56.0, 2.0 / math.cos(1.5), seed=1)
    with pytest.raises(ValueError, match="vertical depth .*3 km is above"):  # slant 3 km straight down
        model.sample(1e5, 0.0, 1.0, 3.0, seed=1)
    with pytest.raises(ExtrapolationError) as refused:  # two bounds crossed: both named, on one line
        model.sample([1e5, 1e9, 1e5], 0.3, [1.0, 1.0, 60.0], 2.0, seed=1)
    message = str(refused.value)
    assert "\n" not in message and "energy 1e+09 GeV is above" in message
    assert "(also mass number A 60 above 1-56): 2 of 3 events outside" in message


def test_allow_extrapolation_samples_and_warns_once_per_call_with_the_count():
    model = mubundle.load("fast")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = model.sample([1e9, 1e5, 2e9], 0.3, 56.0, 2.0, seed=1, allow_extrapolation=True)
    assert len(batch) == 3
    messages = [str(w.message) for w in caught if issubclass(w.category, ExtrapolationWarning)]
    assert len(messages) == 1 and messages[0].startswith("extrapolating 2 of 3 events")


def test_the_bounds_of_the_domain_are_inside_in_float32():
    conditions = np.array([[1e4, 0.0, 1.0, 1.5], [1e7, math.radians(70.0), 56.0, 2.5 / math.cos(math.radians(70.0))]],
                          dtype=np.float32)
    assert check_primaries(DOMAIN, conditions, "m").n_outside == 0
    nan_row = np.array([[np.nan, 0.1, 1.0, 2.0]], dtype=np.float32)
    assert DOMAIN.check_conditions(nan_row).n_outside == 1  # NaN is never inside


def test_a_model_without_domain_loads_and_samples_anything_and_save_keeps_a_domain(tmp_path, domain_model_dir):
    torch.manual_seed(0)
    plain = MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(inside_batch(100, seed=3)))
    plain.save(tmp_path / "plain")
    assert "domain" not in json.loads((tmp_path / "plain" / "model.json").read_text())
    loaded = MuonBundleModel.load(tmp_path / "plain")
    assert loaded.domain is None and len(loaded.sample(1e9, 1.5, 56.0, 9.0, seed=0)) == 1
    assert MuonBundleModel.load(domain_model_dir).domain == DOMAIN


def test_generate_refuses_outside_primaries_and_counts_them_when_allowed(domain_model_dir, tmp_path, capsys):
    inside = inside_batch(40, seed=4)
    conditions = inside.conditions.copy()
    conditions[:5, 0] = 1e9  # five primaries above the energy range
    primaries = tmp_path / "primaries.parquet"
    write_shard(RaggedBatch(conditions, inside.counts, inside.flat_muons), primaries, {})
    out = tmp_path / "out.parquet"
    args = ["generate", "--no-progress", "--model", str(domain_model_dir), "--primaries", str(primaries), "--out", str(out)]
    assert main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "energy 1e+09 GeV is above the domain" in error[0] and "5 of 40 events" in error[0]
    with pytest.warns(ExtrapolationWarning, match="5 of 40 events were extrapolated"):
        assert main([*args, "--allow-extrapolation", "--events-per-chunk", "16"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["extrapolated_events"] == 5
    assert "extrapolated 5 events" in captured.err


def test_a_flux_range_beyond_the_domain_is_refused_naming_the_flag(tmp_path, capsys):
    out = tmp_path / "flux.parquet"
    args = ["generate", "--no-progress", "--model", "fast", "--flux", "H3a", "--events", "10", "--out", str(out)]
    assert main([*args, "--energy-range", "1e3", "1e5"]) == 2
    assert ("--energy-range 1000 100000 GeV reaches outside the domain of model 'fast' (10000-1e+07 GeV)"
            in capsys.readouterr().err) and not out.exists()
    assert main([*args, "--zenith-range", "0", "1.5"]) == 2
    assert "--zenith-range 0 1.5 rad reaches outside the domain of model 'fast'" in capsys.readouterr().err


def test_evaluate_refuses_a_reference_outside_the_domain_unless_allowed(domain_model_dir, tmp_path, capsys):
    reference = inside_batch(200, seed=5)
    conditions = reference.conditions.copy()
    conditions[:7, 1] = 1.5  # zenith 86 deg
    data = tmp_path / "ref.parquet"
    write_shard(RaggedBatch(conditions, reference.counts, reference.flat_muons), data, {})
    args = ["evaluate", "--model", str(domain_model_dir), "--reference", str(data), "--out", str(tmp_path / "eval")]
    assert main(args) == 2
    assert "zenith 1.5 rad (85.9 deg) is above the domain" in capsys.readouterr().err
    with pytest.warns(ExtrapolationWarning):
        assert main([*args, "--allow-extrapolation"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["info"]["extrapolated_events"] == 7 and metrics["summary"]["extrapolated_events"] == 7
    assert "Extrapolated events" in (tmp_path / "eval" / "report.html").read_text()


def test_training_domain_joins_the_simulated_ranges_and_the_events_with_the_site_from_shard_metadata(tmp_path):
    from mubundle.configio import to_dict
    from mubundle.geometry import slant_from_vertical_depth
    from mubundle.sim.config import SimConfig
    from mubundle.sim.site import SITES
    from mubundle.train.loop import fit_transform_and_domain

    flat = inside_batch(120, seed=6)  # as the simulator: slant depths through the curved overburden
    conditions = flat.conditions.astype(np.float64)
    vertical_m = conditions[:, 3] * np.cos(conditions[:, 1]) * 1000.0
    conditions[:, 3] = slant_from_vertical_depth(conditions[:, 1], vertical_m, SITES["icecube"].overburden_radius_m) / 1000
    batch = RaggedBatch(conditions.astype(np.float32), flat.counts, flat.flat_muons)
    path = tmp_path / "part-00000.parquet"
    sim = SimConfig()  # E0 1e4-1e7 GeV, zenith 0-70 deg, vertical depths 1.5/2.0/2.5 km, icecube
    write_shard(batch, path, default_metadata("mubundle simulate", to_dict(sim)))
    transform, domain = fit_transform_and_domain([path], 1000)
    conditions = batch.conditions.astype(np.float64)
    assert conditions[:, 0].max() < 1e7 - 1  # no event at the top of the simulated range ...
    assert domain.energy_gev == (1e4, 1e7)  # ... which the domain still covers
    assert domain.zenith_rad == pytest.approx((0.0, math.radians(70.0)))
    assert domain.vertical_depth_km == pytest.approx((1.5, 2.5), rel=1e-6)
    radius = SITES["icecube"].overburden_radius_m  # slant depths through the curved overburden
    assert domain.overburden_radius_m == radius
    expected_top = slant_from_vertical_depth(math.radians(70.0), 2500.0, radius) / 1000.0
    assert domain.slant_depth_km[0] == pytest.approx(1.5)
    assert domain.slant_depth_km[1] == pytest.approx(max(expected_top, conditions[:, 3].max()))
    assert domain.vertical_depths_km == (1.5, 2.0, 2.5) and domain.medium == "ice" and domain.site == "icecube"
    assert str(path) in domain.training_data and domain.command.startswith("mubundle train --data")
    assert domain_of_events(conditions).site is None  # no metadata: no site claimed
    assert domain_of_events(conditions).energy_gev == (conditions[:, 0].min(), conditions[:, 0].max())
    assert domain.check_conditions(conditions).n_outside == 0
    # a shard of `simulate --primaries` holds given primaries: only its events count
    write_shard(batch, path, default_metadata("mubundle simulate", to_dict(sim), primaries={"sha256": "x"}))
    assert fit_transform_and_domain([path], 1000)[1].energy_gev == (conditions[:, 0].min(), conditions[:, 0].max())


def test_the_domain_checks_vertical_depths_within_a_small_part_of_its_tolerance():
    # the check computes cos(zenith) in float32 (speed); the vertical depth stays ~1e-7 relative
    # to the exact one, so a primary on a bound is still judged by the tolerance alone
    from mubundle.model.domain import RELATIVE_TOLERANCE, _vertical_depth_to_check, vertical_depth_km

    rng = np.random.default_rng(3)
    zenith = rng.uniform(0.0, math.radians(89.0), 100_000).astype(np.float32)
    slant = rng.uniform(1.4, 110.0, 100_000).astype(np.float32)
    conditions = np.stack([np.full(100_000, 1e5), zenith, np.ones(100_000), slant], axis=1).astype(np.float32)
    for radius in (6_374_134.0, None):
        checked, exact = _vertical_depth_to_check(conditions, radius), vertical_depth_km(conditions, radius)
        assert np.abs(checked / exact - 1.0).max() < RELATIVE_TOLERANCE / 20


def test_the_vertical_depth_of_a_curved_domain_is_through_the_spherical_overburden():
    from mubundle.geometry import slant_from_vertical_depth
    from mubundle.model.domain import vertical_depth_km

    radius = 6_374_134.0
    zenith = np.radians([0.0, 60.0, 85.0, 89.0])
    slant = slant_from_vertical_depth(zenith, 1400.0, radius) / 1000.0  # 1.4 km vertical: 68 km at 89 deg
    conditions = np.stack([np.full(4, 1e5), zenith, np.ones(4), slant], axis=1)
    assert vertical_depth_km(conditions, radius) == pytest.approx(np.full(4, 1.4), rel=1e-9)
    assert vertical_depth_km(conditions, None)[-1] < 1.25  # slant x cos(zenith) is flat: 1.19 km
    curved = ModelDomain(energy_gev=(3e2, 1e9), zenith_rad=(0.0, math.radians(89.0)), mass_number=(1.0, 56.0),
                         slant_depth_km=(1.4, 110.0), vertical_depth_km=(1.4, 2.6), overburden_radius_m=radius)
    assert curved.check_conditions(conditions).n_outside == 0
    assert ModelDomain.from_dict(json.loads(json.dumps(curved.to_dict()))) == curved
    shallow = conditions.copy()
    shallow[:, 3] = slant_from_vertical_depth(zenith, 1300.0, radius) / 1000.0
    check = curved.check_conditions(shallow)
    assert check.n_outside == 4  # the vertical one at 0 deg is also below the slant range
    assert [(v.variable, v.events) for v in check.violations] == [("slant_depth_km", 1), ("vertical_depth_km", 4)]
    assert "vertical depth 1.3 km is below the domain of model 'icecube' (1.4-2.6 km)" in check.violations[1].describe("icecube")


def test_a_distilled_student_records_its_teachers_domain_and_counts_primaries_outside_it():
    from mubundle.train.distill import DistillConfig, build_student, warn_outside_teacher_domain

    teacher = mubundle.load("full")
    student = build_student(teacher, DistillConfig())
    assert student.domain == teacher.domain
    primaries = np.array([[1e5, 0.2, 1.0, 2.0], [1e8, 0.2, 1.0, 2.0]], dtype=np.float32)
    assert warn_outside_teacher_domain(teacher, primaries) == 1
    assert warn_outside_teacher_domain(teacher, None) == 0


def test_a_training_run_exports_the_domain_of_its_data_and_keeps_it_on_resume(tmp_path):
    from test_train_loop import synthetic_events, tiny_config, write_dataset

    from mubundle.train import loop
    from mubundle.train.checkpoint import latest_checkpoint, load_checkpoint

    data = write_dataset(tmp_path / "data")
    loop.train([data], tmp_path / "run", tiny_config(max_steps=3))
    exported = MuonBundleModel.load(tmp_path / "run" / "model").domain
    conditions = np.concatenate([synthetic_events(50, seed=i).conditions for i in (0, 1)]).astype(np.float32)
    assert exported.energy_gev == (float(conditions[:, 0].min()), float(conditions[:, 0].max()))
    assert exported.site is None and str(data) in exported.training_data  # shards without simulate metadata
    assert load_checkpoint(latest_checkpoint(tmp_path / "run"))["domain"] == exported.to_dict()
    loop.train([data], tmp_path / "run", tiny_config(max_steps=6))  # resumed: the transform is not refitted
    assert MuonBundleModel.load(tmp_path / "run" / "model").domain == exported
