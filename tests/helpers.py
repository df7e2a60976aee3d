"""Small synthetic datasets for tests (importable by every test module)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

from mubundle.data.batch import RaggedBatch
from mubundle.model.config import ModelConfig


def make_synthetic_batch(n_events: int, seed: int = 0, with_weights: bool = False) -> RaggedBatch:
    """A plausible ragged batch of ``n_events`` valid events.

    About a third of the events have zero muons; multiplicities have a heavy tail
    (geometric-like with occasional bundles of ~100). Conditions: energy 1e3..1e8 GeV
    (log-uniform), zenith in [0, pi/2), mass from {1, 4, 14, 27, 56}, depth 1.4..2.8 km.
    Muons: energy 1..min(1e4 GeV, E0) log-uniform, x/y normal with sigma 20 m.
    """
    rng = np.random.default_rng(seed)
    energy = 10 ** rng.uniform(3, 8, n_events)
    zenith = rng.uniform(0, np.pi / 2 * 0.999, n_events)
    mass = rng.choice([1.0, 4.0, 14.0, 27.0, 56.0], n_events)
    depth = rng.uniform(1.4, 2.8, n_events)
    conditions = np.stack([energy, zenith, mass, depth], axis=1).astype(np.float32)
    counts = rng.geometric(0.3, n_events) - 1
    counts[rng.random(n_events) < 0.3] = 0
    heavy = rng.random(n_events) < 0.02
    counts[heavy] = rng.integers(50, 150, int(heavy.sum()))
    n_muons = int(counts.sum())
    # log10 E_mu uniform in [0, min(4, log10 E0)]: a muon never carries more than its primary
    # (the same random numbers as uniform(0, 4), so events above 1e4 GeV are unchanged)
    top = np.minimum(4.0, np.log10(np.repeat(energy, counts)))
    flat_muons = np.stack(
        [10 ** (rng.uniform(0, 1, n_muons) * top), rng.normal(0, 20, n_muons), rng.normal(0, 20, n_muons)], axis=1
    ).astype(np.float32)
    weights = rng.uniform(0, 1e-3, n_events) if with_weights else None
    return RaggedBatch(conditions, counts.astype(np.int64), flat_muons, weights)


#: A model small enough for millisecond training steps in the model and step tests.
SMALL_MODEL = ModelConfig(
    multiplicity_hidden=16, multiplicity_components=3, generator_context_dim=16, generator_hidden=16,
    critic_hidden=16, critic_pooled_dim=16,
)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def same_events_up_to_depth_rounding(actual: RaggedBatch, expected: RaggedBatch) -> bool:
    """Equal events, except that the slant depth may differ by float32 rounding.

    The legacy layouts store the vertical depth in m (the original pipeline's units): slant km
    -> vertical m -> slant km comes back within one float32 ulp (measured: <= 1.2e-7 relative).
    """
    return (
        np.array_equal(actual.conditions[:, :3], expected.conditions[:, :3])
        and np.allclose(actual.conditions[:, 3], expected.conditions[:, 3], rtol=3e-7, atol=0)
        and np.array_equal(actual.counts, expected.counts)
        and np.array_equal(actual.flat_muons, expected.flat_muons)
    )
