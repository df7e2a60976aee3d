"""`mubundle distill`: a student learns a teacher's multiplicity and generator, resumes exactly,
skips non-finite steps, refuses a changed run, and exports a normal model directory.

The teacher is a tiny untrained model (its generator is still a fixed function to regress);
every run takes a second or two.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mubundle.cli import main
from mubundle.geometry import vertical_from_slant_depth
from mubundle.generate.api import DEFAULT_TEACHER, shipped_model_path
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.transforms import FeatureTransform
from mubundle.train import distill as distill_module
from mubundle.train.distill import DistillConfig, PrimarySampler, distill, learning_rate
from test_train_loop import synthetic_events, tiny_config


def tiny_teacher(directory) -> MuonBundleModel:
    torch.manual_seed(0)
    model = MuonBundleModel(tiny_config().model, FeatureTransform.fit(synthetic_events(200, seed=0)))
    model.save(directory)
    return model


def small_config(**overrides) -> DistillConfig:
    settings = dict(
        multiplicity_hidden=8, multiplicity_layers=2, generator_context_dim=16, generator_hidden=8,
        generator_set_layers=1, layer_norm=False, steps=8, batch_size=64, checkpoint_every=4, log_every=2,
        heldout_events=128, device="cpu", learning_rate=3e-3, final_learning_rate=1e-4,
    )
    settings.update(overrides)
    return DistillConfig(**settings)


def student_weights(run_dir) -> dict[str, torch.Tensor]:
    return MuonBundleModel.load(run_dir / "model").state_dict()


def test_student_learns_the_teacher_and_is_a_normal_model(tmp_path):
    teacher = tiny_teacher(tmp_path / "teacher")
    summary = distill(tmp_path / "teacher", tmp_path / "run", small_config(steps=100, checkpoint_every=50), show_progress=False)

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    heldout = [r for r in records if "heldout_g_loss" in r]
    assert [r["step"] for r in heldout] == [50, 100]
    trained = [r for r in records if "g_loss" in r]
    # single batches scatter by ~15 %: the last five logged losses against the first
    assert np.mean([r["g_loss"] for r in trained[-5:]]) < 0.5 * trained[0]["g_loss"]
    assert trained[-1]["m_kl"] < trained[0]["m_kl"]
    assert summary["skipped_steps"] == 0 and summary["heldout_g_loss"] == heldout[-1]["heldout_g_loss"]

    student = MuonBundleModel.load(tmp_path / "run" / "model")
    assert student.config == dataclasses.replace(teacher.config, **small_config().student_fields())
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in student.modules())
    torch.testing.assert_close(student.transform.core_radius_m, teacher.transform.core_radius_m)
    bundles = student.sample(np.full(20, 1e6), 0.3, 14.0, 2.0, seed=1)
    assert len(bundles) == 20 and np.isfinite(bundles.flat_muons).all()


def test_killed_run_resumes_as_if_never_interrupted(tmp_path, monkeypatch):
    tiny_teacher(tmp_path / "teacher")
    distill(tmp_path / "teacher", tmp_path / "straight", small_config(), show_progress=False)

    real_losses, calls = distill_module.distill_losses, []

    def crash_at_step_six(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("simulated crash")
        return real_losses(*args, **kwargs)

    monkeypatch.setattr(distill_module, "distill_losses", crash_at_step_six)
    with pytest.raises(RuntimeError, match="simulated crash"):
        distill(tmp_path / "teacher", tmp_path / "resumed", small_config(), show_progress=False)
    monkeypatch.setattr(distill_module, "distill_losses", real_losses)
    summary = distill(tmp_path / "teacher", tmp_path / "resumed", small_config(), show_progress=False)

    assert summary["resumed_from_step"] == 4
    straight, resumed = student_weights(tmp_path / "straight"), student_weights(tmp_path / "resumed")
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0, msg=name)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]


def test_non_finite_step_is_reported_counted_and_not_applied(tmp_path, monkeypatch, caplog):
    tiny_teacher(tmp_path / "teacher")
    real_losses, calls = distill_module.distill_losses, []

    def nan_at_step_three(*args, **kwargs):
        calls.append(1)
        losses = real_losses(*args, **kwargs)
        if len(calls) == 3:
            losses["g_loss"] = losses["g_loss"] * float("nan")
        return losses

    monkeypatch.setattr(distill_module, "distill_losses", nan_at_step_three)
    summary = distill(tmp_path / "teacher", tmp_path / "run", small_config(steps=4), show_progress=False)
    assert summary["skipped_steps"] == 1
    assert "distill step 3: non-finite" in caplog.text
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # the window with the skipped step averages its applied step only: a finite number, not NaN
    assert all(np.isfinite(r["g_loss"]) for r in logged if "g_loss" in r)
    assert [r["skipped_steps"] for r in logged if "g_loss" in r] == [0, 1]

    def always_nan(*args, **kwargs):
        losses = real_losses(*args, **kwargs)
        losses["m_loss"] = losses["m_loss"] * float("inf")
        return losses

    monkeypatch.setattr(distill_module, "distill_losses", always_nan)
    with pytest.raises(RuntimeError, match="3 consecutive non-finite steps"):
        distill(tmp_path / "teacher", tmp_path / "bad", small_config(max_consecutive_skips=3), show_progress=False)


def test_a_resumed_run_must_keep_its_teacher_and_settings(tmp_path):
    tiny_teacher(tmp_path / "teacher")
    distill(tmp_path / "teacher", tmp_path / "run", small_config(steps=2), show_progress=False)
    with pytest.raises(ValueError, match="generator_hidden"):
        distill(tmp_path / "teacher", tmp_path / "run", small_config(steps=4, generator_hidden=16), show_progress=False)
    torch.manual_seed(1)
    MuonBundleModel(tiny_config().model, FeatureTransform.fit(synthetic_events(200, seed=0))).save(tmp_path / "other")
    with pytest.raises(ValueError, match="teacher_sha256"):
        distill(tmp_path / "other", tmp_path / "run", small_config(steps=4), show_progress=False)
    # more steps with the same teacher and settings continue the run
    assert distill(tmp_path / "teacher", tmp_path / "run", small_config(steps=4), show_progress=False)["resumed_from_step"] == 2


def test_training_primaries_follow_the_simulate_defaults_or_the_given_rows():
    rng = np.random.default_rng(0)
    drawn = PrimarySampler().draw(20_000, rng)
    energy, zenith, mass, depth = drawn.T
    assert 1e4 * 0.999 <= energy.min() and energy.max() <= 1e7 * 1.001
    assert np.degrees(zenith).max() <= 70.001 and set(np.unique(mass)) == {1.0, 4.0, 14.0, 27.0, 56.0}
    vertical = np.round(vertical_from_slant_depth(zenith, depth * 1000.0) / 1000.0, 3)  # spherical overburden
    assert set(np.unique(vertical)) == {1.5, 2.0, 2.5}
    assert abs(np.mean(np.log10(energy)) - 5.5) < 0.03  # flat in log10 E over 4 .. 7

    rows = np.array([[1e5, 0.1, 1.0, 2.0], [1e6, 0.5, 56.0, 3.0]], dtype=np.float32)
    drawn = PrimarySampler(rows).draw(100, rng)
    assert {tuple(row) for row in drawn} == {tuple(row) for row in rows}
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        PrimarySampler(np.zeros((3, 2)))


def test_learning_rate_decays_from_first_to_last_step():
    config = DistillConfig(steps=11, learning_rate=1e-3, final_learning_rate=1e-5)
    rates = [learning_rate(config, step) for step in range(11)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_distill_command(tmp_path, capsys):
    tiny_teacher(tmp_path / "teacher")
    config_file = tmp_path / "student.yaml"
    config_file.write_text("generator_hidden: 8\nmultiplicity_hidden: 8\nsteps: 50\nbatch_size: 32\nheldout_events: 64\n")
    from mubundle.data.native import write_shard

    write_shard(synthetic_events(40, seed=3), tmp_path / "primaries" / "part-00000.parquet", {})
    code = main(["distill", "--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "run"), "--config",
                 str(config_file), "--steps", "3", "--device", "cpu", "--primaries", str(tmp_path / "primaries")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["model"].endswith("model")
    assert MuonBundleModel.load(tmp_path / "run" / "model").config.generator_hidden == 8
    assert main(["distill", "--teacher", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2


def test_the_default_teacher_is_the_shipped_full_model(tmp_path, monkeypatch, capsys):
    taught = []
    monkeypatch.setattr(distill_module, "distill", lambda teacher, *rest: taught.append(teacher) or {})
    assert main(["distill", "--out", str(tmp_path / "run")]) == 0
    assert taught == [shipped_model_path(DEFAULT_TEACHER)] and DEFAULT_TEACHER == "full"  # not the (distilled) default


def test_init_from_starts_the_student_at_that_model(tmp_path):
    tiny_teacher(tmp_path / "teacher")
    distill(tmp_path / "teacher", tmp_path / "first", small_config(steps=4), show_progress=False)
    start = student_weights(tmp_path / "first")
    # learning rate ~0: after two Adam steps the weights are still the init_from model's
    config = small_config(steps=2, init_from=str(tmp_path / "first" / "model"), learning_rate=1e-12, final_learning_rate=1e-12)
    distill(tmp_path / "teacher", tmp_path / "second", config, show_progress=False)
    continued = student_weights(tmp_path / "second")
    for name in start:
        torch.testing.assert_close(continued[name], start[name], rtol=0, atol=1e-9, msg=name)
    with pytest.raises(ValueError, match="generator_hidden"):
        distill(tmp_path / "teacher", tmp_path / "third", dataclasses.replace(config, generator_hidden=16), show_progress=False)


def test_default_primaries_outside_the_teachers_domain_are_counted_and_logged_like_given_ones(tmp_path, caplog):
    from mubundle.model.domain import ModelDomain

    teacher = tiny_teacher(tmp_path / "teacher")
    # a teacher of 2.9-3.4 km (as km3net-arca): the simulate defaults' 1.5-2.5 km of ice lie outside
    teacher.domain = ModelDomain(energy_gev=(1e4, 1e7), zenith_rad=(0.0, 1.25), mass_number=(1.0, 56.0),
                                 slant_depth_km=(2.9, 125.0), site="km3net-arca", medium="sea water")
    teacher.save(tmp_path / "teacher")
    held_out = PrimarySampler().draw(128, np.random.default_rng([0, distill_module._HELDOUT_STREAM]))
    expected = teacher.domain.check_conditions(held_out).n_outside
    assert 0 < expected < 128
    with caplog.at_level("WARNING", logger="mubundle.train.distill"):
        summary = distill(tmp_path / "teacher", tmp_path / "run", small_config(steps=2), show_progress=False)
    lines = [r.getMessage() for r in caplog.records if "outside the domain of the teacher" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(
        f"distill: {expected} of 128 default training primaries (`mubundle simulate` defaults, drawn for the held-out "
        f"batch; --primaries gives others) lie outside the domain of the teacher {tmp_path / 'teacher'} (e.g. slant depth")
    assert summary["primaries_outside_teacher_domain"] == {"outside": expected, "checked": 128, "primaries": "default"}
    # given rows: the same line, all of them counted
    caplog.clear()
    rows = held_out[:10]
    with caplog.at_level("WARNING", logger="mubundle.train.distill"):
        summary = distill(tmp_path / "teacher", tmp_path / "given", small_config(steps=2), primaries=rows, show_progress=False)
    outside = teacher.domain.check_conditions(rows).n_outside
    assert any(r.getMessage().startswith(f"distill: {outside} of 10 training primaries lie outside the domain of the teacher")
               for r in caplog.records)
    assert summary["primaries_outside_teacher_domain"] == {"outside": outside, "checked": 10, "primaries": "given"}


DISTILL = ["distill", "--steps", "2", "--batch-size", "8", "--device", "cpu"]


def test_an_unreadable_primaries_file_is_named_with_what_is_wrong_not_printed_as_a_dict(tmp_path, capsys):
    tiny_teacher(tmp_path / "teacher")
    assert main([*DISTILL, "--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "run"),
                 "--primaries", str(tmp_path / "nope.parquet")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"mubundle distill: {tmp_path / 'nope.parquet'}: file not found",
        f"mubundle distill: error: no usable primaries in {tmp_path / 'nope.parquet'}"]


def test_a_student_size_no_network_can_have_is_refused_naming_the_config_file_before_anything_is_written(tmp_path, capsys):
    tiny_teacher(tmp_path / "teacher")
    config = tmp_path / "student.yaml"
    config.write_text("multiplicity_hidden: 0\n")
    assert main([*DISTILL, "--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "run"),
                 "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == f"mubundle distill: error: {config}: distill multiplicity_hidden must be >= 1, got 0"
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="distill generator_set_layers must be >= 0, got -1"):
        small_config(generator_set_layers=-1)


def test_init_from_a_missing_model_directory_is_one_line_naming_it_before_anything_is_written(tmp_path, capsys):
    tiny_teacher(tmp_path / "teacher")
    config = tmp_path / "student.yaml"
    config.write_text(f"init_from: {tmp_path / 'nope'}\n")
    assert main([*DISTILL, "--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "run"),
                 "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Errno" not in err
    assert err.startswith(f"mubundle distill: error: distill init_from: model directory {tmp_path / 'nope'} does not exist")
    assert not (tmp_path / "run").exists()


def test_sliced_wasserstein_compares_distributions_not_pairs():
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(5000, 3, generator=generator)
    shuffled = target[torch.randperm(5000, generator=generator)]
    assert float(distill_module.sliced_wasserstein(shuffled, target, generator)) < 1e-12  # same sample, other order
    assert float((shuffled - target).square().mean()) > 1.0  # while the pairwise error is large
    shrunk = float(distill_module.sliced_wasserstein(0.9 * target, target, generator))
    # projections of a standard normal are standard normal: sorted values differ by 0.1 x each
    assert shrunk == pytest.approx(0.01, rel=0.15)
