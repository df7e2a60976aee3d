"""Throughput of one full training step (WganStep) on CPU; prints JSON.

One step = config.critic_steps (5) critic updates with gradient penalty, each on its own
disjoint fifth of the B events (docs/model.md), + 1 generator
update + 1 multiplicity-NLL update, default ModelConfig, B = 8192 events.

Multiplicity mix (synthetic, roughly what 1.5-3 km deep ice sees for a falling primary
spectrum): 40 % of events have N = 0; of the rest 97 % have N = 1 + NegBin(mean 9,
dispersion 1.2) and 3 % are log-uniform in 50..3000 (the high-energy tail). Muon energies
log-normal around 100 GeV, radii log-uniform 0.1..300 m with uniform azimuth.

Usage: python benchmarks/train_step.py [--events 8192] [--steps 3] [--threads 2]
"""

from __future__ import annotations

import os
import platform
import time

# Shared 2-core machine: with OpenMP's default spin-waiting, a thread descheduled by another
# process stalls the other at every barrier (measured: a training step took 48-115 s at
# 2 threads vs 8-9 s at 1 thread under load ~4). Passive waiting must be set before torch
# loads OpenMP; an explicit OMP_WAIT_POLICY in the environment wins. Reported in the JSON.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mubundle.benchmark_cli import make_parser, positive_int, print_json, run  # noqa: E402
from mubundle.data.batch import RaggedBatch  # noqa: E402
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.critic import BundleCritic
from mubundle.model.transforms import FeatureTransform
from mubundle.train.config import TrainConfig
from mubundle.train.step import CPU_CHUNK_MUONS, WganStep


def realistic_batch(n_events: int, seed: int) -> RaggedBatch:
    """Synthetic batch with the multiplicity mix described in the module docstring."""
    rng = np.random.default_rng(seed)
    conditions = np.stack(
        [
            10 ** rng.uniform(4, 8, n_events),
            np.arccos(rng.uniform(0.2, 1.0, n_events)),
            rng.choice([1.0, 4.0, 14.0, 27.0, 56.0], n_events),
            rng.uniform(1.5, 3.0, n_events),
        ],
        axis=1,
    )
    dispersion, mean = 1.2, 9.0
    counts = 1 + rng.negative_binomial(dispersion, dispersion / (dispersion + mean), n_events)
    tail = rng.random(n_events) < 0.03
    counts[tail] = np.round(10 ** rng.uniform(np.log10(50), np.log10(3000), int(tail.sum()))).astype(np.int64)
    counts[rng.random(n_events) < 0.4] = 0
    n_muons = int(counts.sum())
    radius = 10 ** rng.uniform(-1, np.log10(300), n_muons)
    azimuth = rng.uniform(0, 2 * np.pi, n_muons)
    muons = np.stack(
        [np.exp(rng.normal(np.log(100.0), 1.2, n_muons)), radius * np.cos(azimuth), radius * np.sin(azimuth)], axis=1
    )
    return RaggedBatch(conditions, counts, muons)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    from mubundle import __version__
    from mubundle.train.device import require_available

    parser = make_parser(__doc__)
    parser.add_argument("--events", type=positive_int, default=8192, help="events per step (B)")
    parser.add_argument("--steps", type=positive_int, default=3, help="timed steps (after one warm-up step)")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    parser.add_argument("--max-muons-per-step", type=positive_int, default=None,
                        help="muon budget of a step (default: TrainConfig's)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (CUDA: synchronised timings)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast of the set networks (CUDA only: refused on CPU)")
    args = parser.parse_args()
    device = require_available(args.device)  # no CUDA: one line, exit 6
    if args.bf16 and device.type != "cuda":
        parser.error(f"--bf16 applies on CUDA only (bf16 autocast is not used on {device.type}); drop it or use --device cuda")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = TrainConfig(batch_size=args.events, bf16=args.bf16)
    if args.max_muons_per_step:
        config.max_muons_per_step = args.max_muons_per_step
    batches = [realistic_batch(args.events, seed) for seed in range(args.steps + 1)]
    model = MuonBundleModel(config.model, FeatureTransform.fit(batches[0]))
    model, critic = model.to(device), BundleCritic(config.model).to(device)
    step = WganStep(model, critic, config, device)
    rng = torch.Generator(device=device).manual_seed(0)
    step(batches[0], rng)  # warm-up
    durations, events, muons, applied = [], 0, 0, True
    for batch in batches[1:]:
        _synchronize(device)
        start = time.perf_counter()
        result = step(batch, rng)
        _synchronize(device)
        durations.append(time.perf_counter() - start)
        events += result.n_events
        muons += result.n_muons
        applied &= result.applied
    total = sum(durations)
    print_json(
            {
                "benchmark": "train_step",
                "mubundle_version": __version__,
                "model": "untrained, default ModelConfig",
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
                "torch": torch.__version__,
                "bf16": config.bf16,
                "threads": args.threads,
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                "load_average": os.getloadavg(),
                "events_per_step": args.events,
                "mean_muons_per_step": muons / len(durations),
                "zero_muon_fraction": float(np.mean([np.mean(b.counts == 0) for b in batches[1:]])),
                "critic_steps": config.critic_steps,
                "max_muons_per_step": config.max_muons_per_step,
                "cpu_chunk_muons": CPU_CHUNK_MUONS,
                "seconds_per_step": total / len(durations),
                "seconds_per_step_min": min(durations),
                "events_per_s": events / total,
                "muons_per_s": muons / total,
                "all_applied": applied,
            },
            indent=2,
    )


if __name__ == "__main__":
    run(main)
