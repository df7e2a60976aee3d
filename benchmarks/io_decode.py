"""Decode throughput of each on-disk layout, in muons per second on ONE core.

Writes a synthetic dataset once per layout (native Parquet, legacy Parquet, legacy HDF5),
then times decoding it to a RaggedBatch. Figures:

- ``native_read_shard``: native shard -> RaggedBatch (pyarrow offsets + values, no validation)
- ``native_read_events``, ``legacy_parquet_read_events``, ``legacy_hdf5_read_events``:
  full input path (layout detection, piecewise decode, validation) via ``sources.read_events``

The process is pinned to one CPU and pyarrow to one thread. Best of ``--repeats``.
Prints one JSON object. Usage: ``python benchmarks/io_decode.py [--events N] [--mean-muons M]``.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from mubundle.benchmark_cli import finite_float, make_parser, positive_int, print_json, run
from mubundle.data import native, sources
from mubundle.data.batch import RaggedBatch
from mubundle.data.writers import write_batch


def synthetic(n_events: int, mean_muons: float, seed: int) -> RaggedBatch:
    """Events with geometric multiplicities (mean ``mean_muons``, many zeros)."""
    rng = np.random.default_rng(seed)
    counts = rng.geometric(1.0 / (mean_muons + 1), n_events) - 1
    conditions = np.stack(
        [10 ** rng.uniform(4, 8, n_events), rng.uniform(0, 1.5, n_events),
         rng.choice([1.0, 4.0, 56.0], n_events), rng.uniform(1.4, 2.8, n_events)], axis=1)
    n_muons = int(counts.sum())
    muons = np.stack([10 ** rng.uniform(0, 4, n_muons), rng.normal(0, 20, n_muons), rng.normal(0, 20, n_muons)], 1)
    return RaggedBatch(conditions, counts, muons)


def same_events(loaded: RaggedBatch, written: RaggedBatch, layout: str) -> bool:
    """Whether a layout read back what was written: exactly for the native format; for the legacy
    layouts, which store the vertical depth in m (the original pipeline's units), up to one
    float32 rounding of the slant depth (slant km -> vertical m -> slant km, <= 1.2e-7 relative)."""
    if layout == "native":
        return loaded.equals(written)
    return (np.array_equal(loaded.conditions[:, :3], written.conditions[:, :3])
            and np.allclose(loaded.conditions[:, 3], written.conditions[:, 3], rtol=3e-7, atol=0)
            and np.array_equal(loaded.counts, written.counts) and np.array_equal(loaded.flat_muons, written.flat_muons))


def best_time(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--events", type=positive_int, default=200_000, help="events of the synthetic dataset")
    parser.add_argument("--mean-muons", type=finite_float(0.0, 1e4, min_inclusive=False), default=25.0,
                        help="mean muons per event (geometric multiplicities)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed decodes; the best is reported")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)

    batch = synthetic(args.events, args.mean_muons, seed=0)
    results: dict[str, object] = {
        "events": len(batch), "muons": batch.n_muons, "repeats": args.repeats,
        "cpu": platform.processor() or platform.machine(), "pyarrow": pa.__version__, "threads": 1,
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            "native": Path(tmp) / "native.parquet",
            "legacy_parquet": Path(tmp) / "legacy.parquet",
            "legacy_hdf5": Path(tmp) / "legacy.h5",
        }
        write_batch(batch, files["native"], "parquet")
        write_batch(batch, files["legacy_parquet"], "legacy-parquet")
        write_batch(batch, files["legacy_hdf5"], "hdf5")
        assert native.read_shard(files["native"]).equals(batch)  # time a correct decode only

        seconds = best_time(lambda: native.read_shard(files["native"]), args.repeats)
        results["native_read_shard_s"] = seconds
        results["native_read_shard_muons_per_s"] = batch.n_muons / seconds
        for name, path in files.items():
            loaded = sources.read_events(path)
            assert same_events(loaded.batch, batch, name) and not loaded.failed_files, name
            seconds = best_time(lambda: sources.read_events(path), args.repeats)
            results[f"{name}_read_events_s"] = seconds
            results[f"{name}_read_events_muons_per_s"] = batch.n_muons / seconds
            results[f"{name}_file_mb"] = path.stat().st_size / 1e6
    results["target_native_muons_per_s"] = 1e7
    results["meets_target"] = results["native_read_shard_muons_per_s"] >= 1e7
    print_json(results, indent=2)


if __name__ == "__main__":
    run(main)
