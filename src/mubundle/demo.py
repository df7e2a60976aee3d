"""``mubundle demo``: the whole chain end to end on a small embedded default.

1. draws a default set of primaries (mixed composition, E^-1 in energy, uniform in
   cos zenith, IceCube-like depths),
2. generates their bundles with the shipped pretrained model,
3. simulates a reference sample of the same primaries with the built-in simulator,
4. writes the validation report (metrics.json, plots, report.html),
5. runs a short training on the reference sample to show the loop (run directory,
   metrics.jsonl, TensorBoard, checkpoints).

Sized to finish in a few minutes on 2 CPU cores (see :class:`DemoConfig`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mubundle.configio import to_dict, to_yaml
from mubundle.data.dataset import begin_dataset, finish_dataset
from mubundle.data.native import default_metadata, write_shard

if TYPE_CHECKING:
    from mubundle.sim.config import SimConfig


@dataclass(frozen=True)
class DemoConfig:
    """Size of the demo (energies GeV, angles deg, depths km of ice, vertical)."""

    primaries: int = 1500
    energy_range: tuple[float, float] = (1e4, 1e6)
    zenith_range_deg: tuple[float, float] = (0.0, 60.0)
    depths_km: tuple[float, ...] = (1.5, 2.0, 2.5)
    train_steps: int = 30
    train_batch_size: int = 256
    sim_overrides: dict = field(default_factory=dict)


def demo_sim_config(config: DemoConfig, seed: int) -> "SimConfig":
    """The simulator settings of the demo's reference: its primaries' ranges, depths, number and
    seed, and ``config.sim_overrides``; recorded in the reference's metadata as a `simulate` run's
    (so that `evaluate` bins it by the vertical depths it was simulated at)."""
    from mubundle.sim.config import SimConfig

    return replace(SimConfig(showers=config.primaries, energy_range=config.energy_range,
                             zenith_range_deg=config.zenith_range_deg, depths_km=tuple(config.depths_km), seed=seed),
                   **config.sim_overrides)


def demo_primaries(config: DemoConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(energy GeV, zenith rad, mass A, slant depth km), each (primaries,), reproducible by seed."""
    from mubundle.sim.primaries import sample_primaries_at_one_depth

    return sample_primaries_at_one_depth(demo_sim_config(config, seed), config.primaries, np.random.default_rng(seed))


def auc_summary(entry: dict) -> str:
    """The demo's line on the classifier two-sample test: the AUC beside its floor (at the demo's
    size two halves of the same simulation already give ~0.55), or why it is not available."""
    if entry.get("model") is None:
        return f"classifier two-sample AUC not available: {entry.get('reason', 'no classifier result')}"
    floor = "" if entry.get("floor") is None else f"; between two halves of the simulated sample {entry['floor']:.3f}"
    return f"classifier two-sample AUC {entry['model']:.3f} (0.5 = indistinguishable){floor}"


def _say(message: str) -> None:
    print(f"[mubundle demo] {message}", flush=True)


def run_demo(out_dir: str | Path, seed: int = 1, config: DemoConfig | None = None) -> int:
    """Run the demo into ``out_dir``; returns the process exit code (0 on success)."""
    from mubundle.data.writers import write_batch
    from mubundle.evaluate.report import evaluate_model
    from mubundle.generate.api import load_model
    from mubundle.sim.run import simulate_primaries, site_metadata
    from mubundle.sim.version import SIMULATOR_VERSION
    from mubundle.train.config import TrainConfig
    from mubundle.train.loop import train

    config = config or DemoConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    energy, zenith, mass, depth = demo_primaries(config, seed)
    _say(f"{config.primaries} primaries: E0 {config.energy_range[0]:.0e}-{config.energy_range[1]:.0e} GeV, "
         f"mixed p/He/N/Al/Fe, zenith {config.zenith_range_deg[0]:g}-{config.zenith_range_deg[1]:g} deg, "
         f"vertical depths {', '.join(f'{d:g}' for d in config.depths_km)} km")

    started = time.perf_counter()
    model = load_model(None)
    generated = model.sample(energy, zenith, mass, depth, seed=seed)
    timings["generate_s"] = time.perf_counter() - started
    write_batch(generated, out_dir / "generated.parquet", "parquet",
                default_metadata("mubundle demo generate", {"seed": seed}))
    _say(f"generated {len(generated)} events, {generated.n_muons} muons in {timings['generate_s']:.2f} s "
         f"-> {out_dir / 'generated.parquet'}")

    started = time.perf_counter()
    sim_config = demo_sim_config(config, seed)
    reference = simulate_primaries(energy, zenith, mass, depth, seed=seed, config=sim_config)
    timings["simulate_s"] = time.perf_counter() - started
    reference_dir = out_dir / "reference"
    begin_dataset(reference_dir, "mubundle demo", "run `mubundle demo` again")
    write_shard(reference, reference_dir / "part-00000.parquet",
                default_metadata("mubundle demo simulate", config=to_dict(sim_config),
                                 depths_sorted_km=sorted(sim_config.depths_km), **site_metadata(sim_config),
                                 simulator_version=SIMULATOR_VERSION))
    finish_dataset(reference_dir, [reference_dir / "part-00000.parquet"], "mubundle demo")  # a complete dataset
    _say(f"simulated the same primaries: {reference.n_muons} muons in {timings['simulate_s']:.1f} s "
         f"({timings['simulate_s'] / max(timings['generate_s'], 1e-9):.0f}x the generation time)")

    started = time.perf_counter()
    metrics = evaluate_model(None, [reference_dir], out_dir / "report", seed=seed)
    timings["evaluate_s"] = time.perf_counter() - started
    _say(f"evaluation written in {timings['evaluate_s']:.1f} s")

    started = time.perf_counter()
    train_config = TrainConfig(seed=seed, device="cpu", max_steps=config.train_steps,
                               batch_size=config.train_batch_size, log_every=5,
                               checkpoint_every=max(config.train_steps // 3, 1), histogram_every=config.train_steps)
    run_dir = out_dir / "train_run"
    to_yaml(train_config, out_dir / "demo_train_config.yaml")
    summary = train([reference_dir], run_dir, train_config)
    timings["train_s"] = time.perf_counter() - started
    _say(f"short training: {summary.get('steps', config.train_steps)} steps in {timings['train_s']:.1f} s "
         f"-> {run_dir} (tensorboard --logdir {run_dir / 'tensorboard'})")

    (out_dir / "demo_timings.json").write_text(json.dumps(timings, indent=2))
    _say(auc_summary(metrics.get("overall", {}).get("classifier.auc", {}) if isinstance(metrics, dict) else {}))
    _say(f"report: {(out_dir / 'report' / 'report.html').resolve()}")
    return 0
