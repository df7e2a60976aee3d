"""Peak memory of the streaming reader when the dataset grows 10x.

Writes two native datasets (``--events`` and 10x as many events, same shard size), then
streams one full epoch of each through :class:`~mubundle.data.reader.EventStream` in a fresh
subprocess and reports that process's peak RSS (``ru_maxrss``) and its RSS right after the
imports. Flat memory = the peak does not grow with the dataset.
Prints one JSON object. Usage: ``python benchmarks/io_memory.py [--events N]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def child(data_dir: str, batch_size: int, buffer_events: int) -> None:
    """Stream one epoch; print {"baseline_rss_mb", "peak_rss_mb", "events", "muons", "seconds"}."""
    from mubundle.data.reader import EventStream

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    stream = EventStream(data_dir, batch_size, seed=0, shuffle_buffer_events=buffer_events, epochs=1)
    events = muons = 0
    start = time.perf_counter()
    for batch in stream:
        events += len(batch)
        muons += batch.n_muons
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"baseline_rss_mb": baseline, "peak_rss_mb": peak, "events": events, "muons": muons,
                      "seconds": seconds, "failed_files": len(stream.report["failed_files"])}))


def write_dataset(out_dir: Path, n_events: int, mean_muons: float, events_per_shard: int) -> None:
    from mubundle.data.batch import RaggedBatch
    from mubundle.data.native import ShardWriter

    rng = np.random.default_rng(n_events)
    with ShardWriter(out_dir, {"producer": "benchmarks/io_memory.py"}, events_per_shard) as writer:
        for start in range(0, n_events, events_per_shard):
            n = min(events_per_shard, n_events - start)
            counts = rng.geometric(1.0 / (mean_muons + 1), n) - 1
            conditions = np.stack([10 ** rng.uniform(3, 8, n), rng.uniform(0, 1.5, n),
                                   rng.choice([1.0, 4.0, 56.0], n), rng.uniform(1.4, 2.8, n)], 1)
            m = int(counts.sum())
            muons = np.stack([10 ** rng.uniform(0, 4, m), rng.normal(0, 20, m), rng.normal(0, 20, m)], 1)
            writer.write(RaggedBatch(conditions, counts, muons))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150_000, help="events of the small dataset (large = 10x)")
    parser.add_argument("--mean-muons", type=float, default=10.0)
    parser.add_argument("--events-per-shard", type=int, default=30_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--shuffle-buffer-events", type=int, default=65_536)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batch_size, args.shuffle_buffer_events)
        return

    results: dict[str, object] = {"mean_muons": args.mean_muons, "events_per_shard": args.events_per_shard,
                                  "batch_size": args.batch_size, "shuffle_buffer_events": args.shuffle_buffer_events}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (1, 10):
            data_dir = Path(tmp) / f"x{scale}"
            write_dataset(data_dir, args.events * scale, args.mean_muons, args.events_per_shard)
            size_mb = sum(p.stat().st_size for p in data_dir.rglob("*.parquet")) / 1e6
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(data_dir), "--batch-size", str(args.batch_size),
                 "--shuffle-buffer-events", str(args.shuffle_buffer_events)],
                capture_output=True, text=True, check=True,
            )
            run = json.loads(done.stdout)
            run.update({"scale": scale, "dataset_mb": size_mb})
            runs.append(run)
    results["runs"] = runs
    results["peak_rss_ratio_10x_over_1x"] = runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"]
    results["streaming_growth_mb_10x_minus_1x"] = runs[1]["peak_rss_mb"] - runs[0]["peak_rss_mb"]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
