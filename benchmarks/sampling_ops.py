"""Where the sampling time goes, op by op: the ceiling of the dense layers' share.

``generate_throughput.py`` reports ``gemm_fraction``, the dense matmuls' time over the whole
sampling time (target >= 0.5). On flux samples it is ~0.06-0.09, and the question is whether
anything but the network calls is to blame. Here torch's profiler records the self CPU time of
every aten op over ``--repeats`` calls of ``MuonBundleModel.sample`` (one intra-op thread, as
``mubundle generate --dask local:N`` runs each worker) on ``--events`` primaries (outside the
model's domain too: ``extrapolated_events`` counts them): a sample of
the H3a flux over E0 3e2-1e9 GeV, zenith 0-85 deg at ``--depths`` of ``--site`` (the
primaries of ``generate_throughput.py --flux H3a``),
or with ``--no-flux`` the ``mubundle simulate`` defaults. It prints the median wall time of a
call, the summed self time of the torch ops, the dense matmuls' (``addmm``, ``mm``, ``bmm``)
part of it and of the wall time, and the ops that take the most.

``gemm_share_of_torch_ops`` is the dense layers' share if everything outside torch (the
argument and domain checks, the kinematic zero, Python) took no time: the most any rewrite of
that code could reach. The profiler's own overhead lengthens short ops, so the shares are
estimates; the wall time is measured without the profiler.

One JSON object on stdout. Run: ``python benchmarks/sampling_ops.py --model icecube`` (ARCA:
``--model km3net-arca --site km3net-arca --depths 2.9,3.15,3.4``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mubundle.benchmark_cli import make_parser, model_fields, positive_int, print_json, refuse_unless, run, seed_int
from mubundle.sim.site import SITES

#: aten ops that are dense matmuls (the ``gemm_bound`` of generate_throughput.py records the same)
DENSE_OPS = frozenset({"aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::addmm_"})


def primaries(n_events: int, seed: int, flux: bool, site: str, depths_km: tuple[float, ...]) -> np.ndarray:
    """(n, 4) [GeV, rad, A, slant km]: a sample of the H3a flux (E0 3e2-1e9 GeV, zenith 0-85 deg) at
    the vertical ``depths_km`` of ``site``, or the simulate defaults (``flux`` False)."""
    from generate_throughput import benchmark_primaries, flux_benchmark_primaries, resample_by_weight  # benchmarks/

    if not flux:
        return benchmark_primaries(n_events, seed)
    pool, weights = flux_benchmark_primaries(5 * n_events, seed, depths_km=depths_km, site=site)
    return resample_by_weight(pool, weights, n_events, seed)


def op_profile(model, rows: np.ndarray, repeats: int, seed: int) -> dict:
    """Median wall seconds of ``model.sample(rows)`` and the profiler's self CPU time per op (per call)."""
    from torch.profiler import ProfilerActivity, profile

    columns = tuple(rows[:, k] for k in range(4))
    for _ in range(3):  # warm-up: allocator, thread pools, lazy imports
        model.sample(*columns, seed=seed, allow_extrapolation=True)
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.sample(*columns, seed=seed, allow_extrapolation=True)
        walls.append(time.perf_counter() - started)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(repeats):
            model.sample(*columns, seed=seed, allow_extrapolation=True)
    per_op = {event.key: (event.self_cpu_time_total / repeats * 1e-6, event.count // repeats)
              for event in profiler.key_averages()}
    return {"wall_seconds": float(np.median(walls)), "per_op": per_op}


def summarise(profiled: dict, top: int) -> dict:
    """The shares of the module docstring from :func:`op_profile`'s result."""
    per_op = profiled["per_op"]
    torch_seconds = sum(seconds for seconds, _ in per_op.values())
    dense_seconds = sum(seconds for op, (seconds, _) in per_op.items() if op in DENSE_OPS)
    ranked = sorted(per_op.items(), key=lambda item: -item[1][0])[:top]
    return {
        "wall_ms_per_call": round(profiled["wall_seconds"] * 1e3, 3),
        "torch_ops_self_ms_per_call": round(torch_seconds * 1e3, 3),
        "dense_ms_per_call": round(dense_seconds * 1e3, 3),
        "gemm_share_of_torch_ops": round(dense_seconds / torch_seconds, 3) if torch_seconds > 0 else None,
        "gemm_share_of_wall": round(dense_seconds / profiled["wall_seconds"], 3) if profiled["wall_seconds"] > 0 else None,
        "top_ops": [{"op": op, "self_ms_per_call": round(seconds * 1e3, 3), "calls_per_sample": calls}
                    for op, (seconds, calls) in ranked],
    }


def main() -> None:
    from generate_throughput import NEW_DOMAIN  # benchmarks/

    from mubundle import tune_host_allocator
    from mubundle.generate.api import load_model
    from mubundle.sim.config import parse_depths

    parser = make_parser(__doc__)
    parser.add_argument("--model", default=None, help="model directory or shipped model name (default: the shipped default)")
    parser.add_argument("--events", type=positive_int, default=100_000, help="primaries per sampling call")
    parser.add_argument("--repeats", type=positive_int, default=10, help="calls timed, and calls profiled")
    parser.add_argument("--no-flux", action="store_true", help="primaries of the simulate defaults instead of an H3a flux sample")
    parser.add_argument("--site", default="icecube", help="site of the flux sample's depths")
    parser.add_argument("--depths", type=parse_depths, default=NEW_DOMAIN["depths_km"], metavar="KM,...",
                        help="vertical depths [km] of the flux sample (ARCA: 2.9,3.15,3.4)")
    parser.add_argument("--top", type=positive_int, default=12, help="ops listed")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the primaries and of the samples")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tune_host_allocator()  # as the mubundle command does
    model = load_model(args.model)
    refuse_unless(args.site in SITES, f"--site {args.site!r}: not a site (known: {', '.join(SITES)})")
    rows = primaries(args.events, args.seed, not args.no_flux, args.site, tuple(args.depths))
    outside = model.domain.check_conditions(rows).n_outside if model.domain is not None else 0
    result = {**model_fields(model, args.model), "events": args.events, "threads": 1,
              "primaries": "simulate defaults" if args.no_flux else f"H3a flux sample at {args.site} depths {list(args.depths)} km",
              "extrapolated_events": int(outside),
              **summarise(op_profile(model, rows, args.repeats, args.seed), args.top)}
    print_json(result)


if __name__ == "__main__":
    run(main)
