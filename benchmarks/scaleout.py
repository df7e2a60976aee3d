"""Scale-out figures: simulate and generate through each executor, reads from S3 vs disk; prints JSON.

1. ``simulate_dataset`` and ``generate_from_flux`` with the same job list through
   ``--workers 1`` (this process), ``--workers 2`` (local processes) and a Dask
   ``LocalCluster`` of 1 and 2 single-threaded workers. This process and the cluster are
   warmed (interaction model / generator loaded) before the clock starts, so the Dask
   figures are the steady-state cost of running chunks as tasks; the cluster's start-up
   time is reported separately. ``--workers 2`` starts its processes inside the timed run
   (as it does in every real run); ``generate`` has no ``--workers`` (one process whose
   sampling uses threads, or Dask). ``overhead_per_task_s`` = (Dask 1 worker - this process) / tasks:
   what submitting a chunk, shipping its events back to the driver and writing them costs
   beyond the local path.
2. ``read_events`` of one native Parquet file from the local disk, from a moto S3 server
   on 127.0.0.1 (s3fs, 4 MiB read-ahead blocks) and from a local HTTP server with range
   requests: MB/s and events/s.

Every output is checked to be identical to the local run's. On a shared machine the
figures move with the load; ``load_average`` is recorded beside them.

Usage: python benchmarks/scaleout.py [--showers 48] [--showers-per-chunk 4] [--events 60000]
       [--events-per-chunk 5000] [--read-events 200000]   (~5 min on a busy 2-core machine)
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def shard_bytes(out_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(out_dir.rglob("*.parquet"))]


def warm_up(address: str) -> None:
    """Load the interaction model and the generator once in every worker of ``address``."""
    from distributed import Client

    def load() -> None:
        from mubundle.generate.tasks import ModelRef
        from mubundle.sim.interactions import get_model

        get_model("SIBYLL-2.3d", 0)
        ModelRef().load()

    with Client(address) as client:
        client.run(load)


def scaling(args: argparse.Namespace, work: Path) -> dict:
    from distributed import LocalCluster

    from mubundle.generate.api import load_model
    from mubundle.generate.run import FluxSettings, generate_from_flux
    from mubundle.generate.tasks import ModelRef
    from mubundle.sim.config import SimConfig
    from mubundle.sim.run import simulate_dataset

    sim = replace(SimConfig(showers=args.showers, energy_range=(1e4, 1e5), depths_km=(1.5, 2.0), seed=1),
                  showers_per_chunk=args.showers_per_chunk)
    flux = FluxSettings(events=args.events, depths_km=(1.5,))
    model = load_model()
    results: dict = {"simulate": {"showers": sim.showers, "tasks": sim.n_chunks, "config": "mix, 1e4-1e5 GeV, depths 1.5,2 km"},
                     "generate": {"events": args.events, "tasks": -(-args.events // args.events_per_chunk), "model": "fast"}}

    def run_all(label: str, workers: int = 1, dask: str | None = None) -> None:
        out = work / f"sim-{label}"
        seconds, _ = timed(simulate_dataset, sim, out, workers=workers, dask=dask)
        results["simulate"][label] = {"seconds": seconds, "showers_per_s": sim.showers / seconds}
        results["simulate"].setdefault("_bytes", {})[label] = shard_bytes(out)
        if workers > 1:
            return  # generate has no --workers: one process (its sampling threads) or Dask
        target = work / f"gen-{label}.parquet"
        sampler = model if dask is None else ModelRef()
        seconds, _ = timed(generate_from_flux, sampler, flux, target, seed=2, events_per_chunk=args.events_per_chunk,
                           progress=False, dask=dask)
        results["generate"][label] = {"seconds": seconds, "events_per_s": args.events / seconds}
        results["generate"].setdefault("_bytes", {})[label] = target.read_bytes()

    # the in-process path's one-off costs (interaction model, first sampling) happen before the clock
    simulate_dataset(replace(sim, showers=1, showers_per_chunk=1), work / "warm-up")
    generate_from_flux(model, FluxSettings(events=100, depths_km=(1.5,)), work / "warm-up.parquet", progress=False)
    run_all("workers_1")
    run_all("workers_2", workers=2)
    for n in (1, 2):
        start = time.perf_counter()
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            warm_up(cluster.scheduler_address)
            startup = time.perf_counter() - start
            run_all(f"dask_{n}", dask=cluster.scheduler_address)
        results.setdefault("dask_cluster_start_and_warm_s", {})[str(n)] = startup
    for stage in ("simulate", "generate"):
        block = results[stage]
        copies = block.pop("_bytes")
        block["identical_to_workers_1"] = all(b == copies["workers_1"] for b in copies.values())
        block["overhead_per_task_s"] = (block["dask_1"]["seconds"] - block["workers_1"]["seconds"]) / block["tasks"]
    return results


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _QuietHTTPServer(ThreadingHTTPServer):
    """The local HTTP server of the read benchmark; a reader that closes its connection before the
    end of a response (fsspec does, after the bytes it asked for) is not an error worth a traceback."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _RangeHandler(SimpleHTTPRequestHandler):
    """http.server with single byte-range GETs (what fsspec's HTTP file needs)."""

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        ranged = self.headers.get("Range")
        if not ranged:
            return super().send_head()
        path = Path(self.translate_path(self.path))
        body = path.read_bytes()
        first, last = ranged.split("=", 1)[1].split("-")
        start, stop = int(first), min(len(body), int(last) + 1 if last else len(body))
        self.send_response(206)
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(body)}")
        self.end_headers()
        import io

        return io.BytesIO(body[start:stop])


def reading(args: argparse.Namespace, work: Path) -> dict:
    import boto3
    import pyarrow.parquet as pq
    from moto.server import ThreadedMotoServer

    from mubundle.data.native import batch_to_table, read_shard
    from mubundle.data.sources import read_events
    from mubundle.generate.api import load_model
    from mubundle.model.domain import slant_depth_km

    source = work / "read" / "events.parquet"
    source.parent.mkdir()
    rng = np.random.default_rng(0)
    n = args.read_events
    model = load_model()
    zenith = rng.uniform(0, 1.2, n)  # slant depths to vertical depths inside the default model's domain
    depth = slant_depth_km(zenith, rng.uniform(1.5, 2.5, n), model.domain.overburden_radius_m)
    batch = model.sample(10 ** rng.uniform(4, 7, n), zenith, rng.choice([1.0, 4.0, 56.0], n), depth, seed=0)
    pq.write_table(batch_to_table(batch), source, row_group_size=50_000)
    size_mb = source.stat().st_size / 1e6
    reference = read_shard(source)

    port = free_port()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{port}")
    s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3_server.start()
    http_server = _QuietHTTPServer(("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(source.parent)))
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    try:
        boto3.client("s3").create_bucket(Bucket="mubundle-bench")
        boto3.client("s3").upload_file(str(source), "mubundle-bench", "events.parquet")
        targets = {
            "local_disk": str(source),
            "s3_moto_127.0.0.1": "s3://mubundle-bench/events.parquet",
            "http_127.0.0.1": f"http://127.0.0.1:{http_server.server_address[1]}/events.parquet",
        }
        figures = {"file_mb": size_mb, "events": len(reference), "muons": reference.n_muons,
                   "row_groups": pq.ParquetFile(source).metadata.num_row_groups}
        for label, target in targets.items():
            best = None
            for _ in range(args.repeats):
                seconds, loaded = timed(read_events, target)
                assert loaded.failed_files == [] and np.array_equal(loaded.batch.flat_muons, reference.flat_muons), label
                best = seconds if best is None else min(best, seconds)
            figures[label] = {"seconds": best, "mb_per_s": size_mb / best, "events_per_s": len(reference) / best}
        return figures
    finally:
        http_server.shutdown()
        s3_server.stop()


def main() -> None:
    from mubundle.benchmark_cli import make_parser, positive_int

    parser = make_parser(__doc__)
    parser.add_argument("--showers", type=positive_int, default=48, help="simulated showers per executor")
    parser.add_argument("--showers-per-chunk", type=positive_int, default=4, help="showers per simulate task")
    parser.add_argument("--events", type=positive_int, default=60_000, help="generated events (flux mode, one depth)")
    parser.add_argument("--events-per-chunk", type=positive_int, default=5000, help="events per generate task")
    parser.add_argument("--read-events", type=positive_int, default=200_000, help="events in the file read back")
    parser.add_argument("--repeats", type=positive_int, default=3, help="reads per target (best kept)")
    parser.add_argument("--skip-scaling", action="store_true", help="only the read figures (part 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {"benchmark": "scaleout", "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg()}
        if not args.skip_scaling:
            result.update(scaling(args, work))
        result["read"] = reading(args, work)
        result["load_average_end"] = os.getloadavg()
    from mubundle import __version__
    from mubundle.benchmark_cli import print_json

    result["mubundle_version"] = __version__
    print_json(result)


if __name__ == "__main__":
    from mubundle.benchmark_cli import run

    run(main)
