"""Peak memory of the streaming reader when the dataset grows 10x.

Writes two native datasets (``--events`` and 10x as many events, same shard size), then
streams one full epoch of each through :class:`~mubundle.data.reader.EventStream` in a fresh
subprocess and reports that process's peak RSS (``ru_maxrss``) and its RSS right after the
imports. Flat memory = the peak does not grow with the dataset.
The synthetic muons lie below their primary's energy (log10 E_mu uniform in 0 .. min(4,
log10 E0)), so the reader rejects none of them; the rows it rejects anyway are reported per run.
Prints one JSON object. Usage: ``python benchmarks/io_memory.py [--events N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mubundle.benchmark_cli import finite_float, make_parser, positive_int, print_json, run
from mubundle.errors import InvalidValueError


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
                      "seconds": seconds, "failed_files": len(stream.report["failed_files"]),
                      "rejected_rows": dict(stream.report["rejected"])}))


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
            # log10 E_mu uniform in 0 .. min(4, log10 E0): no muon above its primary (a rejected row)
            top = np.minimum(4.0, np.log10(np.repeat(conditions[:, 0], counts)))
            muons = np.stack([10 ** (rng.uniform(0, 1, m) * top), rng.normal(0, 20, m), rng.normal(0, 20, m)], 1)
            writer.write(RaggedBatch(conditions, counts, muons))


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--events", type=positive_int, default=150_000, help="events of the small dataset (large = 10x)")
    parser.add_argument("--mean-muons", type=finite_float(0.0, 1e4, min_inclusive=False), default=10.0,
                        help="mean muons per event (geometric multiplicities)")
    parser.add_argument("--events-per-shard", type=positive_int, default=30_000, help="events per shard file")
    parser.add_argument("--batch-size", type=positive_int, default=4096, help="events per batch of the stream")
    parser.add_argument("--shuffle-buffer-events", type=positive_int, default=65_536, help="shuffle buffer of the stream [events]")
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
                [sys.executable, os.path.abspath(__file__), "--child", str(data_dir), "--batch-size", str(args.batch_size),
                 "--shuffle-buffer-events", str(args.shuffle_buffer_events)],
                capture_output=True, text=True, check=False,
            )
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
                raise InvalidValueError(f"the reader subprocess on {scale}x ({args.events * scale} events) failed "
                                        f"(exit {done.returncode}): {last}")
            measured = json.loads(done.stdout)
            measured.update({"scale": scale, "dataset_mb": size_mb})
            runs.append(measured)
    results["runs"] = runs
    results["peak_rss_ratio_10x_over_1x"] = runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"]
    results["streaming_growth_mb_10x_minus_1x"] = runs[1]["peak_rss_mb"] - runs[0]["peak_rss_mb"]
    print_json(results, indent=2)


if __name__ == "__main__":
    run(main)
