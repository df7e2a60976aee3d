"""The training loop: run directory, exact resume, divergence guard, bad input accounting.

Tiny networks and ~100-event datasets made in tmp_path keep every run to a few seconds.
The helpers here (``tiny_config``, ``write_dataset``) are shared by the other
``test_train_*`` files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.config import ModelConfig
from mubundle.train import loop
from mubundle.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from mubundle.train.config import TrainConfig

LOSSES = ("c_loss", "g_loss", "m_loss", "gp")


def tiny_config(**overrides) -> TrainConfig:
    """A TrainConfig whose step takes milliseconds (B = 32, 16-wide networks)."""
    model = ModelConfig(
        multiplicity_hidden=16, multiplicity_layers=2, multiplicity_components=2, global_noise_dim=4,
        muon_noise_dim=4, generator_context_dim=16, generator_hidden=16, generator_set_layers=1,
        critic_hidden=16, critic_pooled_dim=16, critic_set_layers=1,
    )
    settings = dict(
        model=model, device="cpu", batch_size=32, max_steps=6, critic_steps=2, log_every=1, checkpoint_every=3,
        histogram_every=4, keep_checkpoints=2, transform_fit_events=100, shuffle_buffer_events=64, progress_bar=False,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def synthetic_events(n_events: int, seed: int) -> RaggedBatch:
    """Events with a Poisson(3) multiplicity and muons spread over ~10 m (physical units)."""
    rng = np.random.default_rng(seed)
    conditions = np.stack(
        [10 ** rng.uniform(4, 6, n_events), rng.uniform(0, 1.2, n_events), rng.choice([1, 4, 56], n_events),
         rng.uniform(1.5, 3.0, n_events)], axis=1)
    counts = rng.poisson(3, n_events)
    n_muons = int(counts.sum())
    flat_muons = np.stack([10 ** rng.uniform(2, 4, n_muons), rng.normal(0, 10, n_muons), rng.normal(0, 10, n_muons)], 1)
    return RaggedBatch(conditions, counts, flat_muons)


def write_dataset(root: Path, events_per_folder: int = 50) -> Path:
    """Two range folders of native shards (100 events: one epoch = batches of 32, 32, 32, 4)."""
    for index, folder in enumerate(("0000000-0000999", "0001000-0001999")):
        write_shard(synthetic_events(events_per_folder, seed=index), root / folder / "part-00000.parquet", {})
    return root


def losses_by_step(run_dir: Path) -> dict[int, tuple[float, ...]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"duplicate steps in metrics.jsonl: {steps}"
    return {r["step"]: tuple(r[name] for name in LOSSES) for r in records}


def test_tiny_run_fills_the_run_directory(tmp_path):
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    summary = loop.train([data], run, tiny_config())

    assert summary["steps"] == 6 and summary["epoch"] == 1 and summary["events_seen"] == 100 + 64
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for field in ("c_loss", "g_loss", "m_loss", "gp", "events_per_s", "muons_per_s", "epoch", "lr", "skipped_steps",
                  "saturated_fraction"):
        assert all(np.isfinite(r[field]) for r in records), field
    assert [r["epoch"] for r in records] == [0, 0, 0, 0, 1, 1]
    assert [step for step, _ in list_checkpoints(run)] == [3, 6]  # keep_checkpoints = 2
    assert (run / "checkpoints" / "best.pt").exists()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    exported = MuonBundleModel.load(run / "model")
    generated = exported.sample(np.full(4, 1e5), 0.3, 1.0, 2.0, seed=1)
    assert len(generated) == 4


def test_resumed_run_logs_the_same_losses_as_an_uninterrupted_run(tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "data")
    config = tiny_config(max_steps=7)
    straight = losses_by_step_after(loop.train([data], tmp_path / "straight", config), tmp_path / "straight")

    # crash right before step 6: the last checkpoint is step 3, metrics already hold steps 4 and 5
    monkeypatch.setenv(loop.FAIL_AT_STEP_ENV, "6")
    with pytest.raises(RuntimeError, match="simulated crash before step 6"):
        loop.train([data], tmp_path / "resumed", config)
    assert max(losses_by_step(tmp_path / "resumed")) == 5
    monkeypatch.delenv(loop.FAIL_AT_STEP_ENV)
    summary = loop.train([data], tmp_path / "resumed", config)

    assert summary["resumed_from_step"] == 3 and summary["steps"] == 7
    resumed = losses_by_step(tmp_path / "resumed")
    assert sorted(resumed) == sorted(straight) == list(range(1, 8))
    for step in straight:
        assert resumed[step] == pytest.approx(straight[step], abs=1e-6, rel=0), f"step {step}"


def losses_by_step_after(summary: dict, run_dir: Path) -> dict[int, tuple[float, ...]]:
    assert summary["steps"] > 0
    return losses_by_step(run_dir)


def test_non_finite_weights_are_skipped_then_rolled_back_with_a_lower_lr(tmp_path, monkeypatch, caplog):
    data = write_dataset(tmp_path / "data")
    real_call = loop.WganStep.__call__
    calls = {"n": 0}

    def poisoned_call(self, batch, rng):
        calls["n"] += 1
        if calls["n"] == 5:  # before step 5: a NaN weight makes every later step non-finite
            with torch.no_grad():
                next(self.model.generator.parameters()).view(-1)[0] = float("nan")
        return real_call(self, batch, rng)

    monkeypatch.setattr(loop.WganStep, "__call__", poisoned_call)
    config = tiny_config(max_steps=7, max_consecutive_bad_steps=2, rollback_lr_factor=0.5)
    with caplog.at_level("WARNING", logger="mubundle.train"):
        summary = loop.train([data], tmp_path / "run", config)

    assert summary["steps"] == 7 and summary["rollbacks"] == 1 and summary["skipped_steps"] == 2
    assert summary["lr_scale"] == pytest.approx(0.5)
    assert "step 5: update skipped, non-finite" in caplog.text and "rolling back to checkpoint at step 3" in caplog.text
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 8))  # the rolled-back steps 4, 5 were replaced
    assert records[-1]["lr"] == pytest.approx(0.5 * config.lr) and records[-1]["rollbacks"] == 1
    assert all(np.isfinite(records[-1][name]) for name in LOSSES)
    checkpoint = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert checkpoint["guard"]["lr_scale"] == pytest.approx(0.5)  # a resume keeps the lowered lr


def test_bad_rows_are_quarantined_and_unreadable_files_counted(tmp_path):
    data = write_dataset(tmp_path / "data")
    bad = synthetic_events(5, seed=9)
    conditions = bad.conditions.copy()
    conditions[:2, 0] = -1.0  # energy_non_positive
    write_shard(RaggedBatch(conditions, bad.counts, bad.flat_muons), data / "0002000-0002999" / "part-00000.parquet", {})
    (data / "0003000-0003999").mkdir()
    (data / "0003000-0003999" / "part-00000.parquet").write_bytes(b"this is not parquet")

    summary = loop.train([data], tmp_path / "run", tiny_config(max_steps=2))

    assert summary["rejected_rows"] == {"energy_non_positive": 2}
    assert [Path(f["path"]).parent.name for f in summary["failed_files"]] == ["0003000-0003999"]
    assert list((tmp_path / "run" / "quarantine").glob("*.parquet"))
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["failed_files"] == 1 and last["rejected_rows"] == 2
    assert "0003000-0003999" in (tmp_path / "run" / "logs" / "train.log").read_text()


def test_divergence_that_survives_the_rollbacks_ends_the_run_with_a_clear_error(tmp_path, monkeypatch):
    from mubundle.train.guard import TrainingDiverged
    from mubundle.train.step import StepResult

    def always_non_finite(self, batch, rng):
        nan = float("nan")
        return StepResult({"c_loss": nan, "g_loss": nan, "m_loss": nan, "gp": nan}, applied=False, bad=["c_loss"],
                          n_events=len(batch), n_muons=batch.n_muons)

    monkeypatch.setattr(loop.WganStep, "__call__", always_non_finite)
    config = tiny_config(max_consecutive_bad_steps=1, max_rollbacks=1)
    with pytest.raises(TrainingDiverged, match="after 1 rollbacks"):
        loop.train([write_dataset(tmp_path / "data")], tmp_path / "run", config)
    assert load_checkpoint(latest_checkpoint(tmp_path / "run"))["guard"]["rollbacks"] == 1


def test_the_exported_model_holds_the_averaged_generator_and_the_checkpoint_the_raw_one(tmp_path):
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    loop.train([data], run, tiny_config(generator_ema_decay=0.5))
    checkpoint = load_checkpoint(latest_checkpoint(run))
    average = checkpoint["optimizers"]["generator_ema"]
    assert average["n_updates"] == 6
    exported = MuonBundleModel.load(run / "model")
    names = [name for name, _ in exported.generator.named_parameters()]
    assert len(names) == len(average["parameters"])
    differs = False
    for name, averaged in zip(names, average["parameters"]):
        torch.testing.assert_close(exported.generator.state_dict()[name], averaged, rtol=0, atol=0, msg=name)
        differs |= not torch.equal(checkpoint["model"][f"generator.{name}"], averaged)
    assert differs, "the export should be the average, not the raw generator weights"
    # the multiplicity model is exported as trained (it is not adversarial)
    for name, value in exported.multiplicity.state_dict().items():
        torch.testing.assert_close(value, checkpoint["model"][f"multiplicity.{name}"], rtol=0, atol=0, msg=name)


def test_the_adversarial_learning_rate_decays_over_the_last_steps_and_survives_a_resume(tmp_path, monkeypatch):
    from mubundle.train.step import adversarial_lr_factor

    data = write_dataset(tmp_path / "data")
    config = tiny_config(max_steps=8, lr_decay_steps=4, lr_decay_final=0.25)
    monkeypatch.setenv(loop.FAIL_AT_STEP_ENV, "7")  # crash in the decay phase, resume from step 6
    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.train([data], tmp_path / "run", config)
    monkeypatch.delenv(loop.FAIL_AT_STEP_ENV)
    loop.train([data], tmp_path / "run", config)

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert [r["lr"] for r in records] == pytest.approx([config.lr * adversarial_lr_factor(s, config) for s in range(1, 9)])
    assert records[3]["lr"] == pytest.approx(config.lr) and records[-1]["lr"] == pytest.approx(0.25 * config.lr)
