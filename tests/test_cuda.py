"""CUDA paths: sampling, the training step and loop, generation output. Skipped without a GPU
(CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mubundle.generate.api import has_default_model, load_model
from mubundle.train import loop
from mubundle.train.checkpoint import latest_checkpoint, load_checkpoint
from test_train_loop import losses_by_step, tiny_config, write_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def primaries(n: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    zenith = rng.uniform(0, 1.2, n)  # inside the shipped models' domain: vertical depths 1.5-2.5 km
    return 10 ** rng.uniform(4, 7, n), zenith, rng.choice([1.0, 4.0, 14.0, 56.0], n), rng.uniform(1.5, 2.5, n) / np.cos(zenith)


@pytest.mark.skipif(not has_default_model(), reason="no shipped model")
def test_sampling_on_cuda_is_reproducible_and_agrees_with_cpu_statistically():
    energy, zenith, mass, depth = primaries(40_000, seed=0)
    gpu = load_model(None, device="cuda")
    first = gpu.sample(energy, zenith, mass, depth, seed=3)
    second = gpu.sample(energy, zenith, mass, depth, seed=3)
    # multiplicities are bit-identical for a seed; the muons agree to float rounding only: the
    # per-event pooling sums with float atomics on CUDA (order-dependent), docs/generation.md
    np.testing.assert_array_equal(first.counts, second.counts)
    np.testing.assert_allclose(first.flat_muons, second.flat_muons, rtol=1e-4, atol=1e-3)
    assert np.isfinite(first.flat_muons).all() and (first.flat_muons[:, 0] > 0).all()

    cpu = load_model(None, device="cpu").sample(energy, zenith, mass, depth, seed=3)
    # different random streams: compare means within 5 standard errors
    for name, gpu_values, cpu_values in (
        ("N", first.counts, cpu.counts),
        ("log10 E", np.log10(first.flat_muons[:, 0]), np.log10(cpu.flat_muons[:, 0])),
        ("radius", np.hypot(first.flat_muons[:, 1], first.flat_muons[:, 2]), np.hypot(cpu.flat_muons[:, 1], cpu.flat_muons[:, 2])),
    ):
        error = np.hypot(gpu_values.std() / np.sqrt(gpu_values.size), cpu_values.std() / np.sqrt(cpu_values.size))
        assert abs(gpu_values.mean() - cpu_values.mean()) < 5 * error, name


@pytest.mark.parametrize("bf16", [False, True])
def test_training_on_cuda_runs_checkpoints_and_resumes(tmp_path, monkeypatch, bf16):
    data = write_dataset(tmp_path / "data")
    config = tiny_config(device="cuda", max_steps=6, bf16=bf16)
    monkeypatch.setenv(loop.FAIL_AT_STEP_ENV, "5")
    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.train([data], tmp_path / "run", config)
    monkeypatch.delenv(loop.FAIL_AT_STEP_ENV)
    summary = loop.train([data], tmp_path / "run", config)

    assert summary["steps"] == 6 and summary["resumed_from_step"] == 3 and summary["device"].startswith("cuda")
    assert summary["skipped_steps"] == 0
    losses = losses_by_step(tmp_path / "run")
    assert sorted(losses) == list(range(1, 7)) and all(np.isfinite(v).all() for v in losses.values())
    checkpoint = load_checkpoint(latest_checkpoint(tmp_path / "run"))  # tensors saved from the GPU load on CPU
    assert checkpoint["step"] == 6
    model = load_model(str(tmp_path / "run" / "model"), device="cpu")
    assert len(model.sample(np.full(3, 1e5), 0.2, 1.0, 2.0, seed=0)) == 3


def test_generate_command_on_cuda(tmp_path, capsys):
    from mubundle.cli import main
    from mubundle.data.sources import read_events

    if not has_default_model():
        pytest.skip("no shipped model")
    data = write_dataset(tmp_path / "primaries")
    out = tmp_path / "bundles.parquet"
    # the synthetic primaries reach vertical depths outside the shipped model's 1.5-2.5 km
    assert main(["generate", "--primaries", str(data), "--out", str(out), "--device", "cuda", "--seed", "2",
                 "--allow-extrapolation"]) == 0
    generated = read_events([out])
    assert len(generated.batch) == 100 and not generated.rejected
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["events"] == 100


def test_the_shipped_arca_maps_including_the_map_by_multiplicity_agree_on_cuda_and_cpu():
    from mubundle.model.calibration import MuonCalibration

    calibration = load_model("km3net-arca", device="cpu").calibration
    assert calibration.needs_multiplicity
    rng = np.random.default_rng(4)
    n = 50_000
    muons = np.stack([10 ** rng.uniform(0, 5, n), rng.normal(0, 5, n), rng.normal(0, 5, n)], axis=1)
    log10_e0, multiplicity = rng.uniform(3, 9, n), rng.integers(1, 40, n)
    cpu = calibration.apply(torch.tensor(muons), torch.tensor(log10_e0), torch.tensor(multiplicity))
    gpu = MuonCalibration.from_dict(calibration.to_dict()).apply(
        torch.tensor(muons, device="cuda"), torch.tensor(log10_e0, device="cuda"), torch.tensor(multiplicity, device="cuda"))
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), rtol=1e-9)
    from mubundle.model.domain import slant_depth_km

    model = load_model("km3net-arca", device="cuda")
    energy, zenith, mass, _ = primaries(20_000, seed=5)
    depth = slant_depth_km(zenith, rng.uniform(2.9, 3.4, zenith.size), model.domain.overburden_radius_m)
    bundles = model.sample(energy, zenith, mass, depth, seed=2)
    assert bundles.counts.sum() > 1000 and np.isfinite(bundles.flat_muons).all() and (bundles.flat_muons[:, 0] > 0).all()
