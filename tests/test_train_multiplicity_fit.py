"""Multiplicity model on held-out events: validation NLL, early stopping (in the training loop
and in ``mubundle refit-multiplicity``), best weights exported, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mubundle.cli import main
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.domain import ModelDomain
from mubundle.model.transforms import FeatureTransform
from mubundle.train import loop
from mubundle.train.checkpoint import latest_checkpoint, load_checkpoint
from mubundle.train.multiplicity_fit import (
    CountSample,
    MultiplicityEarlyStopping,
    MultiplicityFitConfig,
    fit_multiplicity,
    fit_multiplicity_restarts,
    multiplicity_nll,
)
from test_train_loop import synthetic_events, tiny_config, write_dataset


def energy_dependent_events(n_events: int, seed: int) -> RaggedBatch:
    """N ~ Poisson(0.5 (E0 / 1e4 GeV)^0.6): something for the multiplicity model to learn."""
    events = synthetic_events(n_events, seed)
    rng = np.random.default_rng(seed + 100)
    counts = rng.poisson(0.5 * (events.conditions[:, 0] / 1e4) ** 0.6)
    n_muons = int(counts.sum())
    muons = np.stack([10 ** rng.uniform(2, 4, n_muons), rng.normal(0, 10, n_muons), rng.normal(0, 10, n_muons)], 1)
    return RaggedBatch(events.conditions, counts, muons)


def tiny_model(batch: RaggedBatch) -> MuonBundleModel:
    torch.manual_seed(0)
    return MuonBundleModel(tiny_config().model, FeatureTransform.fit(batch))


# ---------------------------------------------------------------------------- early stopping
def test_early_stopping_keeps_the_best_weights_and_freezes_after_the_patience():
    module = torch.nn.Linear(2, 1)
    stopping = MultiplicityEarlyStopping(patience=2)
    assert stopping.observe(1, 1.0, module) and stopping.observe(2, 0.9, module)
    best_weight = module.weight.detach().clone()
    with torch.no_grad():
        module.weight.add_(1.0)
    assert not stopping.observe(3, float("nan"), module)  # never a best, counts as no improvement
    assert not stopping.frozen
    assert not stopping.observe(4, 0.95, module)
    assert stopping.frozen and stopping.best_step == 2 and stopping.best_nll == 0.9
    stopping.restore_best(module)
    torch.testing.assert_close(module.weight.detach(), best_weight, rtol=0, atol=0)

    copy = MultiplicityEarlyStopping(patience=2)
    copy.load_state_dict(stopping.state_dict())
    assert copy.state_dict()["history"] == stopping.history and copy.frozen and copy.best_step == 2


def test_patience_zero_never_freezes():
    module = torch.nn.Linear(2, 1)
    stopping = MultiplicityEarlyStopping(patience=0)
    for step, nll in enumerate([1.0, 1.1, 1.2, 1.3, 1.4]):
        stopping.observe(step, nll, module)
    assert not stopping.frozen and stopping.best_step == 0


def test_validation_nll_matches_the_models_log_probability():
    batch = energy_dependent_events(300, seed=1)
    model = tiny_model(batch)
    sample = CountSample.from_batch(batch, "cpu")
    expected = -model.count_log_prob(sample.conditions, sample.counts).double().mean().item()
    assert multiplicity_nll(model, sample) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="no events"):
        multiplicity_nll(model, CountSample.from_batch(batch.slice(0, 0), "cpu"))


# ---------------------------------------------------------------------------- fit_multiplicity
def test_fit_learns_stops_early_on_a_small_training_set_and_ends_at_the_best_weights():
    train = CountSample.from_batch(energy_dependent_events(80, seed=2), "cpu")  # few events: it will over-fit
    validation = CountSample.from_batch(energy_dependent_events(2000, seed=3), "cpu")
    model = tiny_model(energy_dependent_events(500, seed=4))
    before = multiplicity_nll(model, validation)
    config = MultiplicityFitConfig(seed=5, lr=1e-2, batch_size=16, max_epochs=400, patience=15, lr_patience=5)
    report = fit_multiplicity(model, train, validation, config)

    assert report["best_validation_nll"] < before - 0.1, (before, report["best_validation_nll"])
    assert report["stopped_early"] and report["epochs_run"] < config.max_epochs
    assert report["best_epoch"] < report["epochs_run"] == report["best_epoch"] + config.patience
    assert report["final_train_nll"] < report["best_validation_nll"]  # it did fit the training events
    assert multiplicity_nll(model, validation) == pytest.approx(report["best_validation_nll"], rel=1e-9)
    assert report["skipped_steps"] == 0 and len(report["history"]) == report["epochs_run"] + 1


def test_fit_is_reproducible_by_seed_and_leaves_the_generator_alone():
    batch = energy_dependent_events(400, seed=6)
    train, validation = CountSample.from_batch(batch.slice(0, 300), "cpu"), CountSample.from_batch(batch.slice(300, 400), "cpu")
    config = MultiplicityFitConfig(seed=7, lr=1e-2, batch_size=64, max_epochs=6, patience=50)
    states = []
    for _ in range(2):
        model = tiny_model(batch)
        generator_before = {k: v.clone() for k, v in model.generator.state_dict().items()}
        fit_multiplicity(model, train, validation, config)
        for name, value in model.generator.state_dict().items():
            torch.testing.assert_close(value, generator_before[name], rtol=0, atol=0)
        states.append(model.multiplicity.state_dict())
    for name in states[0]:
        torch.testing.assert_close(states[0][name], states[1][name], rtol=0, atol=0, msg=name)


def test_restarts_keep_the_fit_with_the_lowest_validation_nll_and_equal_single_runs():
    batch = energy_dependent_events(600, seed=13)
    train, validation = CountSample.from_batch(batch.slice(0, 400), "cpu"), CountSample.from_batch(batch.slice(400, 600), "cpu")
    config = MultiplicityFitConfig(seed=3, lr=1e-2, batch_size=64, max_epochs=5, patience=50, restarts=3)
    model = tiny_model(batch)
    report = fit_multiplicity_restarts(model, train, validation, config)

    assert [r["seed"] for r in report["restarts"]] == [3, 4, 5]
    nlls = [r["best_validation_nll"] for r in report["restarts"]]
    assert len(set(nlls)) == 3  # different seeds, different fits
    assert report["chosen_seed"] == 3 + int(np.argmin(nlls)) and report["best_validation_nll"] == min(nlls)
    assert multiplicity_nll(model, validation) == pytest.approx(min(nlls), rel=1e-9)
    single = tiny_model(batch)  # the chosen seed alone gives the same weights
    fit_multiplicity(single, train, validation, MultiplicityFitConfig(**{**config.__dict__, "seed": report["chosen_seed"]}))
    for name, value in single.multiplicity.state_dict().items():
        torch.testing.assert_close(model.multiplicity.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_a_non_finite_batch_is_skipped_and_counted(caplog):
    batch = energy_dependent_events(200, seed=8)
    model = tiny_model(batch)
    train = CountSample.from_batch(batch, "cpu")
    train.conditions[3, 0] = float("nan")  # one poisoned event (validated data never has this)
    validation = CountSample.from_batch(energy_dependent_events(100, seed=9), "cpu")
    config = MultiplicityFitConfig(seed=0, batch_size=200, max_epochs=3, patience=50)
    with caplog.at_level("WARNING", logger="mubundle.train"):
        report = fit_multiplicity(model, train, validation, config)
    assert report["skipped_steps"] == 3 and "non-finite loss or gradient; step skipped" in caplog.text
    assert all(torch.isfinite(p).all() for p in model.multiplicity.parameters())


# ---------------------------------------------------------------------------- mubundle refit-multiplicity
def test_refit_command_writes_the_model_and_report_and_quarantines_bad_rows(tmp_path, capsys):
    source = tiny_model(energy_dependent_events(300, seed=10))
    source.save(tmp_path / "model")
    write_shard(energy_dependent_events(300, seed=11), tmp_path / "train" / "part-00000.parquet", {})
    bad = energy_dependent_events(50, seed=12)
    conditions = bad.conditions.copy()
    conditions[:3, 0] = -1.0  # energy_non_positive
    write_shard(RaggedBatch(conditions, bad.counts, bad.flat_muons), tmp_path / "val" / "part-00000.parquet", {})
    (tmp_path / "val" / "part-00001.parquet").write_bytes(b"not parquet")

    code = main(["refit-multiplicity", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--validation", str(tmp_path / "val"), "--out", str(tmp_path / "refit"), "--max-epochs", "4",
                 "--batch-size", "64", "--lr", "0.01"])

    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["epochs_run"] == 4 and printed["best_validation_nll"] < printed["before"]["validation_nll"]
    report = json.loads((tmp_path / "refit" / "multiplicity_fit.json").read_text())
    assert report["validation_data"]["events"] == 47
    assert report["validation_data"]["rejected_rows"] == {"energy_non_positive": 3}
    assert [f["path"].endswith("part-00001.parquet") for f in report["validation_data"]["failed_files"]] == [True]
    assert (tmp_path / "refit" / "quarantine" / "validation.parquet").exists()
    refit = MuonBundleModel.load(tmp_path / "refit")
    assert refit.domain is None  # a model without a card gets none
    for name, value in refit.generator.state_dict().items():
        torch.testing.assert_close(value, source.generator.state_dict()[name], rtol=0, atol=0)
    assert len(refit.sample(np.full(5, 1e5), 0.2, 1.0, 2.0, seed=0)) == 5


def test_refit_with_other_sizes_builds_a_new_multiplicity_network_and_keeps_the_generator(tmp_path, capsys):
    source = tiny_model(energy_dependent_events(300, seed=20))
    source.save(tmp_path / "model")
    write_shard(energy_dependent_events(300, seed=21), tmp_path / "train" / "part-00000.parquet", {})
    write_shard(energy_dependent_events(100, seed=22), tmp_path / "val" / "part-00000.parquet", {})
    common = ["--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"), "--validation",
              str(tmp_path / "val"), "--max-epochs", "3", "--batch-size", "64"]
    hidden = source.config.multiplicity_hidden + 8
    assert main(["refit-multiplicity", *common, "--out", str(tmp_path / "wide"), "--multiplicity-hidden", str(hidden),
                 "--multiplicity-layers", "1"]) == 0

    refit = MuonBundleModel.load(tmp_path / "wide")
    assert (refit.config.multiplicity_hidden, refit.config.multiplicity_layers) == (hidden, 1)
    assert refit.multiplicity.head.weight.shape[1] == hidden
    for name, value in refit.generator.state_dict().items():
        torch.testing.assert_close(value, source.generator.state_dict()[name], rtol=0, atol=0)
    assert refit.transform.to_dict() == source.transform.to_dict()
    report = json.loads((tmp_path / "wide" / "multiplicity_fit.json").read_text())
    assert report["multiplicity_sizes"]["multiplicity_hidden"] == hidden
    # "before" is the source model's NLL: the same as a refit of unchanged sizes reports
    assert main(["refit-multiplicity", *common, "--out", str(tmp_path / "same")]) == 0
    same = json.loads((tmp_path / "same" / "multiplicity_fit.json").read_text())
    assert report["before"] == same["before"]
    capsys.readouterr()
    assert main(["refit-multiplicity", *common, "--out", str(tmp_path / "x"), "--multiplicity-layers", "1",
                 "--keep-weights"]) == 2
    assert "drop --keep-weights" in capsys.readouterr().err


def test_refit_without_valid_validation_events_is_a_clear_error(tmp_path, capsys):
    tiny_model(energy_dependent_events(100, seed=13)).save(tmp_path / "model")
    write_shard(energy_dependent_events(100, seed=14), tmp_path / "train" / "part-00000.parquet", {})
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "broken.parquet").write_bytes(b"not parquet")
    code = main(["refit-multiplicity", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--validation", str(tmp_path / "val"), "--out", str(tmp_path / "refit")])
    assert code != 0
    assert f"no valid validation events in {tmp_path / 'val'}" in capsys.readouterr().err
    assert not (tmp_path / "refit" / "model.safetensors").exists()


# ---------------------------------------------------------------------------- the training loop
def validation_records(run) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), steps
    return [r for r in records if "val_m_nll" in r]


def test_training_with_validation_logs_freezes_and_exports_the_best_multiplicity(tmp_path):
    data = write_dataset(tmp_path / "data")
    write_shard(synthetic_events(60, seed=20), tmp_path / "val" / "part-00000.parquet", {})
    run = tmp_path / "run"
    # lr 0.05 on ~100 events: the validation NLL soon stops improving
    config = tiny_config(max_steps=14, validate_every=2, multiplicity_patience=2, multiplicity_lr=0.05, log_every=5)
    summary = loop.train([data], run, config, validation_paths=[tmp_path / "val"])

    records = validation_records(run)
    assert [r["step"] for r in records][:2] == [2, 4] and all(np.isfinite(r["val_m_nll"]) for r in records)
    info = summary["multiplicity_validation"]
    assert info["frozen"], records
    assert info["data"] == {"events": 60, "rejected_rows": {}, "failed_files": [], "quarantine": None}
    frozen_at = next(r["step"] for r in records if r["multiplicity_frozen"])
    assert frozen_at == records[-1]["step"] < 14  # no validation after the freeze
    assert min(r["val_m_nll"] for r in records) == pytest.approx(info["best_nll"])
    checkpoint = load_checkpoint(latest_checkpoint(run))
    best = checkpoint["multiplicity_validation"]["best_state"]
    exported = MuonBundleModel.load(run / "model")
    for name, value in exported.multiplicity.state_dict().items():
        torch.testing.assert_close(value, best[name], rtol=0, atol=0, msg=name)
        # frozen: the trained weights stayed at the best ones after the freeze
        torch.testing.assert_close(checkpoint["model"][f"multiplicity.{name}"], best[name], rtol=0, atol=0, msg=name)


def test_a_run_with_validation_resumes_exactly(tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "data")
    write_shard(synthetic_events(60, seed=21), tmp_path / "val" / "part-00000.parquet", {})
    config = tiny_config(max_steps=14, validate_every=2, multiplicity_patience=2, multiplicity_lr=0.05)
    summary = loop.train([data], tmp_path / "straight", config, validation_paths=[tmp_path / "val"])
    assert summary["multiplicity_validation"]["frozen"]  # the crash/resume below spans the freeze
    monkeypatch.setenv(loop.FAIL_AT_STEP_ENV, "11")
    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.train([data], tmp_path / "resumed", config, validation_paths=[tmp_path / "val"])
    monkeypatch.delenv(loop.FAIL_AT_STEP_ENV)
    loop.train([data], tmp_path / "resumed", config, validation_paths=[tmp_path / "val"])

    straight, resumed = (json.loads((tmp_path / r / "metrics.jsonl").read_text().splitlines()[-1]) for r in ("straight", "resumed"))
    fields = ("step", "val_m_nll", "val_m_nll_best", "multiplicity_frozen")
    assert [tuple(r[f] for f in fields) for r in validation_records(tmp_path / "resumed")] == [
        tuple(r[f] for f in fields) for r in validation_records(tmp_path / "straight")
    ]
    assert resumed["m_loss"] == straight["m_loss"] and resumed["c_loss"] == straight["c_loss"]
    a, b = (MuonBundleModel.load(tmp_path / r / "model").multiplicity.state_dict() for r in ("straight", "resumed"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


# ---------------------------------------------------------------------------- distillation (--distill)
class _FixedMixture(torch.nn.Module):
    """A multiplicity 'network' with given per-row mixture parameters (each (B, K))."""

    def __init__(self, log_weights: torch.Tensor, log_mean: torch.Tensor, log_dispersion: torch.Tensor) -> None:
        super().__init__()
        self.parameters_ = (log_weights.log_softmax(1), log_mean, log_dispersion)

    def mixture_parameters(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        assert features.shape[0] == self.parameters_[0].shape[0]
        return self.parameters_


def test_teacher_divergence_is_zero_for_the_teacher_and_estimates_the_exact_kl():
    from mubundle.model.multiplicity import mixture_log_prob
    from mubundle.train.multiplicity_fit import DISTILL_RATE_FLOOR, teacher_divergence

    gen = torch.Generator().manual_seed(0)
    rows = 6
    # means from a rare rate (P(N > 0) ~ 1e-4 .. 1e-2) to tens of muons, some over-dispersed
    log_mean = torch.tensor([-9.0, -6.0, -4.0, 0.0, 1.5, 3.0], dtype=torch.float64)[:, None] + torch.tensor(
        [[-1.0, 0.0, 1.0]], dtype=torch.float64)
    teacher = _FixedMixture(torch.randn(rows, 3, generator=gen, dtype=torch.float64), log_mean,
                            torch.randn(rows, 3, generator=gen, dtype=torch.float64))
    student = _FixedMixture(torch.randn(rows, 3, generator=gen, dtype=torch.float64), log_mean + 0.3,
                            torch.randn(rows, 3, generator=gen, dtype=torch.float64))
    features = torch.zeros(rows, 4)
    same = teacher_divergence(teacher, teacher, features, torch.Generator().manual_seed(1))
    assert torch.equal(same, torch.zeros_like(same))

    estimate = teacher_divergence(teacher, student, features, torch.Generator().manual_seed(2), samples=20_000)
    n = torch.arange(0, 20_000).expand(rows, -1)
    log_p = mixture_log_prob(teacher.parameters_, n)
    log_q = mixture_log_prob(student.parameters_, n)
    p = log_p.exp()
    torch.testing.assert_close(p.sum(1), torch.ones(rows, dtype=torch.float64), rtol=0, atol=1e-6)
    exact = (p * (log_p - log_q)).sum(1)
    positive = 1.0 - p[:, 0]
    assert positive.min() < 1e-3 and positive.max() > 0.5  # both regimes are in the test
    scaled = exact / torch.maximum(positive, positive.new_tensor(DISTILL_RATE_FLOOR))
    torch.testing.assert_close(estimate, scaled, rtol=0.05, atol=1e-3)
    assert (estimate > 0).all()


def test_distill_fits_a_smaller_network_to_the_models_own_distribution(tmp_path, capsys):
    batch = energy_dependent_events(600, seed=30)
    teacher_model = tiny_model(batch)
    train = CountSample.from_batch(batch, "cpu")
    fit_multiplicity(teacher_model, train, CountSample.from_batch(energy_dependent_events(200, seed=31), "cpu"),
                     MultiplicityFitConfig(seed=0, batch_size=128, max_epochs=15, lr=0.01))
    teacher_model.save(tmp_path / "model")
    write_shard(batch, tmp_path / "train" / "part-00000.parquet", {})
    write_shard(energy_dependent_events(200, seed=32), tmp_path / "val" / "part-00000.parquet", {})
    hidden = teacher_model.config.multiplicity_hidden // 2
    assert main(["refit-multiplicity", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--validation", str(tmp_path / "val"), "--out", str(tmp_path / "student"), "--distill",
                 "--multiplicity-hidden", str(hidden), "--max-epochs", "15", "--batch-size", "128", "--lr", "0.01"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((tmp_path / "student" / "multiplicity_fit.json").read_text())
    assert report["objective"].startswith("distillation")
    first = report["history"][0]["val_divergence"]  # the divergence of the fresh student
    assert printed["best_validation_divergence"] < 0.2 * first
    # the student's mean N follows the teacher's
    student = MuonBundleModel.load(tmp_path / "student")
    assert student.config.multiplicity_hidden == hidden
    conditions = torch.from_numpy(np.ascontiguousarray(energy_dependent_events(400, seed=33).conditions, dtype=np.float32))
    with torch.no_grad():
        mean_t = teacher_model.multiplicity.mean_variance(teacher_model.transform.condition_features(conditions))[0]
        mean_s = student.multiplicity.mean_variance(student.transform.condition_features(conditions))[0]
    assert abs(float(mean_s.sum() / mean_t.sum()) - 1.0) < 0.05
    assert report["after"]["validation_nll"] < report["before"]["validation_nll"] + 0.05


def test_distill_reports_divergences_not_nlls_and_refuses_keep_weights(tmp_path, capsys):
    source = tiny_model(energy_dependent_events(300, seed=10))
    source.domain = ModelDomain(energy_gev=(1e2, 1e7), zenith_rad=(0.0, 1.25), mass_number=(1.0, 56.0),
                                slant_depth_km=(1.0, 3.0))
    source.save(tmp_path / "model")
    write_shard(energy_dependent_events(300, seed=11), tmp_path / "train" / "part-00000.parquet", {})
    write_shard(energy_dependent_events(100, seed=12), tmp_path / "val" / "part-00000.parquet", {})
    common = ["refit-multiplicity", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
              "--validation", str(tmp_path / "val"), "--max-epochs", "2", "--batch-size", "64", "--distill"]

    # the student would start at the teacher's weights: divergence 0, nothing to fit
    assert main([*common, "--out", str(tmp_path / "kept"), "--keep-weights"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--distill" in err and "drop --keep-weights" in err
    assert not (tmp_path / "kept").exists()

    assert main([*common, "--out", str(tmp_path / "student")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((tmp_path / "student" / "multiplicity_fit.json").read_text())
    for figures in (printed, report, report["restarts"][0]):
        assert "best_validation_divergence" in figures and "final_train_divergence" in figures
        assert not {"best_validation_nll", "final_train_nll"} & set(figures)
    assert all(set(entry) == {"step", "val_divergence", "best"} for entry in report["history"])
    assert printed["before"]["validation_nll"] == report["before"]["validation_nll"]  # true NLLs keep their name
    note = MuonBundleModel.load(tmp_path / "student").domain.notes[-1]
    assert f"best validation divergence from the teacher {report['best_validation_divergence']:.6g}" in note


def domain_model(tmp_path, site: str | None = "icecube", energy_gev=(1e2, 1e7)) -> None:
    """tiny_model with a domain (energy_gev, zenith 0-1.25 rad, A 1-56, slant 1-3 km, ``site``) in tmp_path/model,
    and its training and validation events (E0 1e4-1e6 GeV: files without a site key, South Pole ice)."""
    source = tiny_model(energy_dependent_events(300, seed=10))
    source.domain = ModelDomain(energy_gev=energy_gev, zenith_rad=(0.0, 1.25), mass_number=(1.0, 56.0),
                                slant_depth_km=(1.0, 3.0), site=site, medium="sea water" if site == "km3net-arca" else "ice")
    source.save(tmp_path / "model")
    write_shard(energy_dependent_events(300, seed=11), tmp_path / "train" / "part-00000.parquet", {})
    write_shard(energy_dependent_events(100, seed=12), tmp_path / "val" / "part-00000.parquet", {})


def test_refit_refuses_data_of_another_site_even_with_allow_extrapolation(tmp_path, capsys):
    domain_model(tmp_path, site="km3net-arca")
    for extra in ([], ["--allow-extrapolation"]):
        code = main(["refit-multiplicity", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                     "--validation", str(tmp_path / "val"), "--out", str(tmp_path / "refit"), "--max-epochs", "2", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert f"training data {tmp_path / 'train'} is of site 'icecube', but model '{tmp_path / 'model'}' was trained " \
               "at site 'km3net-arca' (sea water)" in err and "mubundle simulate --site km3net-arca" in err
        assert not (tmp_path / "refit").exists()


def test_refit_refuses_primaries_outside_the_models_domain_unless_extrapolation_is_allowed(tmp_path, capsys):
    from mubundle.model.domain import ExtrapolationWarning

    domain_model(tmp_path, energy_gev=(1e2, 1e5))  # the data reach 1e6 GeV
    domain = MuonBundleModel.load(tmp_path / "model").domain
    outside = {role: domain.check_conditions(energy_dependent_events(n, seed).conditions).n_outside
               for role, n, seed in (("training", 300, 11), ("validation", 100, 12))}
    assert 0 < outside["training"] < 300 and 0 < outside["validation"] < 100
    command = ["refit-multiplicity", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
               "--validation", str(tmp_path / "val"), "--out", str(tmp_path / "refit"), "--max-epochs", "2",
               "--batch-size", "64"]

    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training data: energy " in err
    assert f"is above the domain of model '{tmp_path / 'model'}' (100-1e+05 GeV)" in err
    assert f"{outside['training']} of 300 events outside" in err and "--allow-extrapolation" in err
    assert not (tmp_path / "refit" / "model.json").exists()

    with pytest.warns(ExtrapolationWarning) as warned:
        assert main([*command, "--allow-extrapolation"]) == 0
    example = domain.check_conditions(energy_dependent_events(300, seed=11).conditions).violations[0]
    assert [str(w.message) for w in warned if w.category is ExtrapolationWarning] == [  # one warning for both sets
        f"extrapolating: {outside['training']} of 300 training and {outside['validation']} of 100 validation events "
        f"lie outside the domain of model '{tmp_path / 'model'}' (e.g. {example.describe(str(tmp_path / 'model'))}); "
        "they are fitted (--allow-extrapolation) and the model keeps its recorded domain"]
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["extrapolated_events"] == outside
    refit = MuonBundleModel.load(tmp_path / "refit")
    assert refit.domain.energy_gev == (1e2, 1e5)  # the domain stays the model's; its card says what was fitted
    assert refit.domain.notes[-1].endswith(f"; {outside['training']} training and {outside['validation']} validation "
                                           "events outside this domain (--allow-extrapolation)")


def test_refit_records_itself_in_the_model_card(tmp_path, capsys):
    source = tiny_model(energy_dependent_events(300, seed=10))
    source.domain = ModelDomain(energy_gev=(1e2, 1e7), zenith_rad=(0.0, 1.25), mass_number=(1.0, 56.0),
                                slant_depth_km=(1.0, 3.0), notes=("trained on the tiny set",))
    source.save(tmp_path / "model")
    write_shard(energy_dependent_events(300, seed=11), tmp_path / "train" / "part-00000.parquet", {})
    write_shard(energy_dependent_events(100, seed=12), tmp_path / "val" / "part-00000.parquet", {})

    assert main(["refit-multiplicity", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "train"),
                 "--validation", str(tmp_path / "val"), "--out", str(tmp_path / "refit"), "--max-epochs", "3",
                 "--batch-size", "64", "--lr", "0.01", "--keep-weights", "--seed", "2"]) == 0

    report = json.loads((tmp_path / "refit" / "multiplicity_fit.json").read_text())
    notes = MuonBundleModel.load(tmp_path / "refit").domain.notes
    assert notes[0] == "trained on the tiny set" and len(notes) == 2
    assert notes[1].startswith(f"multiplicity part refitted by mubundle refit-multiplicity from {tmp_path / 'model'} "
                               "(the source's weights; seed 2, lr 0.01, batch 64, patience 50;")
    assert "on 300 training and 100 validation events" in notes[1]
    assert f"best validation NLL {report['best_validation_nll']:.6g} at epoch {report['best_epoch']}" in notes[1]
