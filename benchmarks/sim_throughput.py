"""Throughput of ``mubundle simulate`` with the default configuration; prints JSON.

Runs the real dataset path (``simulate_dataset``: chunks, workers, shard writing) on a small
number of default showers and reports showers/s and events/s, plus the extrapolated time
for the standard 100 000-event dataset (33 334 showers x 3 depths). The model
initialisation of each worker (a few seconds) is included in the measured time, so the
extrapolation is slightly pessimistic.

Usage: python benchmarks/sim_throughput.py [--showers 480] [--workers 2] [--seed 0]
(defaults take ~1.5 minutes on the 2-core machine)

Per decade of E0 on one core (issue 21):
python benchmarks/sim_throughput.py --per-decade [--energies 1e5 1e6 1e7 1e8 1e9]
    [--showers-per-energy 40 10 4 2 2] [--depth-km 1.5] [--min-energy 1]
simulates vertical protons at each E0 in this process (model initialised beforehand) and
prints the CPU seconds per shower and the exponent of the cost growth between consecutive
energies and fitted over all of them (target: 1e9 GeV in <= 10 s, growth no faster than
E0^0.8), plus the hadron-air collisions per shower (SIBYLL calls, the bulk of the cost) and
the CPU microseconds per collision: the collision count is what the cost follows.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace

import numpy as np

from mubundle.benchmark_cli import finite_float, make_parser, positive_float, positive_int, print_json, run, seed_int
from mubundle.data.native import read_shard
from mubundle.sim.config import SimConfig
from mubundle.sim.run import simulate_dataset

STANDARD_EVENTS = 100_000


def per_decade(energies: list[float], showers: list[int], depth_km: float, min_energy: float, seed: int) -> dict:
    """CPU seconds per vertical proton shower at each energy, one core, model already loaded."""
    from mubundle.sim.interactions import get_model
    from mubundle.sim.run import simulate_primaries

    from mubundle.sim.interactions import AirInteractions

    config = replace(SimConfig(), min_energy=min_energy)
    get_model(config.interaction_model, 0)  # initialisation is not part of the per-shower cost
    collisions = [0]
    collide_many = AirInteractions.collide_many

    def counted(self, pid, energy, rng):  # counts the hadron-air collisions; changes nothing
        collisions[0] += np.size(pid)
        return collide_many(self, pid, energy, rng)

    rows = []
    AirInteractions.collide_many = counted
    try:
        for energy, n in zip(energies, showers):
            collisions[0] = 0
            start = time.process_time()
            batch = simulate_primaries(np.full(n, energy), np.zeros(n), np.ones(n), np.full(n, depth_km), seed=seed, config=config)
            cpu = time.process_time() - start
            rows.append({"energy_gev": energy, "showers": n, "cpu_s_per_shower": round(cpu / n, 4),
                         "mean_muons": round(float(batch.counts.mean()), 1),
                         "collisions_per_shower": round(collisions[0] / n, 1),
                         "cpu_us_per_collision": round(1e6 * cpu / collisions[0], 1) if collisions[0] else None})
    finally:
        AirInteractions.collide_many = collide_many
    for low, high in zip(rows, rows[1:]):
        log_ratio = np.log(high["energy_gev"] / low["energy_gev"])
        high["cost_exponent_vs_previous"] = round(float(np.log(high["cpu_s_per_shower"] / low["cpu_s_per_shower"]) / log_ratio), 3)
        if low["collisions_per_shower"] and high["collisions_per_shower"]:
            high["collision_exponent_vs_previous"] = round(
                float(np.log(high["collisions_per_shower"] / low["collisions_per_shower"]) / log_ratio), 3)
    if len(rows) > 1:  # least-squares exponent over all energies (per-decade values are noisy)
        log_e = np.log([r["energy_gev"] for r in rows])
        fit = {"cost_exponent_fit": float(np.polyfit(log_e, np.log([r["cpu_s_per_shower"] for r in rows]), 1)[0])}
        if all(r["collisions_per_shower"] for r in rows):
            fit["collision_exponent_fit"] = float(np.polyfit(log_e, np.log([r["collisions_per_shower"] for r in rows]), 1)[0])
        rows[-1].update({key: round(value, 3) for key, value in fit.items()})
    return {"benchmark": "sim_throughput_per_decade", "primary": "p", "zenith_deg": 0.0, "depth_km": depth_km,
            "min_energy_gev": min_energy, "seed": seed, "rows": rows,
            "target": "1e9 GeV <= 10 s per shower on one core; cost exponent <= 0.8"}


def main() -> None:
    from mubundle.argtypes import MAX_DEPTH_KM, MAX_PRIMARY_ENERGY_GEV

    parser = make_parser(__doc__)
    parser.add_argument("--showers", type=positive_int, default=480, help="showers of the dataset run")
    parser.add_argument("--workers", type=positive_int, default=2, help="simulate worker processes (1: in this process)")
    parser.add_argument("--seed", type=seed_int, default=0, help="simulation seed")
    parser.add_argument("--per-decade", action="store_true", help="CPU cost per shower per decade of E0 (one core)")
    parser.add_argument("--energies", type=finite_float(0.0, MAX_PRIMARY_ENERGY_GEV, min_inclusive=False, unit="GeV"),
                        nargs="+", default=[1e5, 1e6, 1e7, 1e8, 1e9], help="--per-decade: primary energies [GeV]")
    parser.add_argument("--showers-per-energy", type=positive_int, nargs="+", default=[40, 10, 4, 2, 2],
                        help="--per-decade: showers at each energy")
    parser.add_argument("--depth-km", type=finite_float(0.0, MAX_DEPTH_KM, unit="km"), default=1.5,
                        help="--per-decade: vertical depth [km]")
    parser.add_argument("--min-energy", type=positive_float, default=SimConfig().min_energy,
                        help="--per-decade: muon energy cut at the depth [GeV]")
    args = parser.parse_args()
    if args.per_decade:
        if len(args.energies) != len(args.showers_per_energy):
            parser.error("--energies and --showers-per-energy need the same number of values")
        print_json(per_decade(args.energies, args.showers_per_energy, args.depth_km, args.min_energy, args.seed), indent=None)
        return
    # small chunks so that both workers stay busy on a short benchmark
    config = replace(SimConfig(showers=args.showers, seed=args.seed), showers_per_chunk=max(1, args.showers // (4 * args.workers)))
    with tempfile.TemporaryDirectory() as out_dir:
        cpu_start = os.times()
        start = time.perf_counter()
        paths = simulate_dataset(config, out_dir, workers=args.workers)
        wall = time.perf_counter() - start
        cpu_end = os.times()
        events = sum(len(read_shard(p)) for p in paths)
        muons = sum(read_shard(p).n_muons for p in paths)
    showers_per_s = args.showers / wall
    child_cpu = (cpu_end.children_user + cpu_end.children_system) - (cpu_start.children_user + cpu_start.children_system)
    # --workers 1 simulates in this process (no child): its own CPU time is the workers' then
    own_cpu = (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system)
    cpu = own_cpu if args.workers == 1 else child_cpu
    cpu_source = ("this process (--workers 1 simulates in-process)" if args.workers == 1
                  else "the worker processes (children; this process's own CPU time excluded)")
    events_per_s = events / wall
    standard_showers = -(-STANDARD_EVENTS // len(config.depths_km))
    result = {
        "benchmark": "sim_throughput",
        "config": "defaults (mix, 1e4-1e7 GeV, index 1, 0-70 deg, depths 1.5,2.0,2.5 km, SIBYLL-2.3d)",
        "showers": args.showers,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_s_measured_on": cpu_source,
        "child_cpu_s": child_cpu,
        # what the workers would reach with their cores to themselves (the machine is shared)
        "showers_per_cpu_s": args.showers / cpu if cpu > 0 else None,
        "events": events,
        "muons": muons,
        "showers_per_s": showers_per_s,
        "events_per_s": events_per_s,
        "extrapolated_100k_events_showers": standard_showers,
        "extrapolated_100k_events_hours": standard_showers / showers_per_s / 3600.0,
        "extrapolated_note": "linear extrapolation of this short run (includes worker start-up); the energy mix makes short runs noisy",
        "target_hours": 3.0,
    }
    print_json(result, indent=None)


if __name__ == "__main__":
    run(main)
