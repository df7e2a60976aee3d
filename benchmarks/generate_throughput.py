"""Generation throughput vs its compute bound and vs the reference simulator. Prints ONE JSON object.

1. ``generation``: events/s and muons/s of ``MuonBundleModel.sample`` on ``--threads`` CPU
   threads (its generator calls on worker threads, :mod:`mubundle.model.workers`; ``--workers
   1`` measures plain intra-op threading instead) for ``--events`` primaries drawn like
   ``mubundle simulate`` defaults (E0 1e4-1e7 GeV flat in log E, A in {1, 4, 14, 27, 56},
   cos(zenith) uniform in 0-70 deg, vertical depths 1.5/2.0/2.5 km through the spherical
   overburden). Model: ``--model PATH``, else the shipped pretrained one if installed, else an untrained model
   with the default ModelConfig (speed does not depend on training, but the multiplicities
   of an untrained model differ; ``muons_per_event`` is reported).
2. ``gemm_bound``: every dense matmul of that sampling run (aten ``mm`` / ``addmm`` /
   ``addmm_``, recorded at the dispatcher, so also those issued on a layer's weights outside
   its forward) is recorded with its shapes, and the same matmuls (same op, shapes, weight
   layout, hot operands) are timed alone: the time the model would need if it did nothing
   but its own dense layers.
   ``gemm_fraction = gemm_seconds / generation_seconds`` (target >= 0.5).
3. ``simulator``: cost per event of the reference simulator (``mubundle simulate`` physics,
   SimConfig defaults) on the first ``--sim-events`` of the same primaries, run like
   ``mubundle simulate --workers THREADS``: one shower per task in ``--threads`` spawned
   processes, in two configurations: ``one_shower_per_event`` (each primary at its own slant
   depth, what a detector simulation pays per event) and ``three_depths_per_shower`` (each
   shower seen at the 3 default depths, the training-data configuration: 3 events per
   shower). Means with standard errors (the cost grows steeply with E0).
4. ``speedup``: simulator seconds per event / generator seconds per event, both on the same
   ``--threads`` cores (``same_cores``; the simulator's core-seconds per event / threads),
   with the standard error from the simulator's mean; ``speedup_vs_simulator`` is the
   one-shower-per-event figure (target >= 10 000). ``one_simulator_core`` (simulator in one
   process against the generator on all threads) is what this benchmark reported before
   2026-11-26: it flatters the generator by the thread count.

**Over the new domain (``--flux H3a``)**, issue 23 item 5: the primaries are drawn as
``mubundle generate --flux`` / ``mubundle simulate --flux`` draw them
(:func:`mubundle.sim.fluxmode.group_flux`, :func:`mubundle.flux.sample_flux_primaries`:
E^-``--generation-gamma`` in ``--energy-range``, cos(zenith) uniform in ``--zenith-range-deg``,
mass group uniform over the flux model's five groups, each primary with its flux weight w_i
[Hz through 1 m^2]); each primary is seen at one vertical depth drawn uniformly from
``--depths``, converted to a slant depth through the site's spherical overburden by
``generate``'s own :func:`mubundle.generate.run.slant_depths` (``--site``, default icecube).
The defaults of these options are the new domain of the icecube model: E0 3e2-1e9 GeV,
zenith 0-85 deg, vertical 1.4/1.7/2.0/2.3/2.6 km of South Pole ice, H3a, E^-1.3 (the
generation spectrum of the standard dataset). Two per-event costs are reported for each side:

- ``plain``: the mean over the drawn (generation-spectrum) primaries, as before;
- ``flux_weighted``: the mean cost of an event of the flux itself, E_flux[c] =
  sum_i w_i c_i / sum_i w_i (what "a flux-weighted mix of primaries" costs per event).
  The simulator's per-shower costs c_i are measured one by one on the first ``--sim-events``
  drawn primaries, so its flux-weighted mean is that ratio estimator, with the standard error
  sqrt(sum_i w_i^2 (c_i - mean)^2) / sum_i w_i. The generator cannot be timed per event
  (it samples batches), so its flux-weighted cost is measured directly on a sample OF the
  flux: ``--events`` primaries resampled with replacement, with probability w_i / sum w,
  from a pool of 5 x ``--events`` drawn primaries (``flux_sample``; its effective sample
  size sum(w)^2 / sum(w^2) is reported), timed as a whole; that set's plain mean cost per
  event is an estimate of the same E_flux[c]. ``gemm_bound`` is measured on both sets.

The flux-weighted mean is dominated by the cheap showers below ~1e4 GeV that make up most of
the flux (most reach the depth with no muon); the rare high-energy showers carry most of the
plain mean. Only the ``one_shower_per_event`` simulator configuration is run in this mode.

The process runs with the host-allocator tuning the ``mubundle`` command applies
(:mod:`mubundle.host_allocator`); ``--default-allocator`` measures glibc's defaults instead.
Times are the best of ``--repeats`` runs (the machine is shared; a loaded machine can make
single runs several times slower). Run: ``python benchmarks/generate_throughput.py``
(about 1 minute on 2 cores).
"""

from __future__ import annotations

import os
import platform
import sys
import time

# Shared 2-core machine: with OpenMP's default spin-waiting, a thread descheduled by another
# process stalls the other at every barrier (measured: a training step took 48-115 s at
# 2 threads vs 8-9 s at 1 thread under load ~4). Passive waiting must be set before torch
# loads OpenMP; an explicit OMP_WAIT_POLICY in the environment wins. Reported in the JSON.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mubundle.benchmark_cli import (  # noqa: E402
    finite_float, make_parser, model_fields, non_negative_int, positive_int, print_json, require_events, run,
)
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402  (what torch.utils.flop_counter builds on)


def benchmark_primaries(n_events: int, seed: int) -> np.ndarray:
    """(n, 4) primaries [GeV, rad, A, slant km] distributed like the simulate defaults."""
    from mubundle.sim.config import MIX_MASSES, SimConfig

    config = SimConfig()
    rng = np.random.default_rng(seed)
    lo, hi = config.energy_range
    energy = lo * (hi / lo) ** rng.random(n_events)
    cos_lo, cos_hi = np.cos(np.radians(config.zenith_range_deg[1])), np.cos(np.radians(config.zenith_range_deg[0]))
    zenith = np.arccos(rng.uniform(cos_lo, cos_hi, n_events))
    mass = rng.choice(np.asarray(MIX_MASSES, dtype=np.float64), n_events)
    vertical = rng.choice(np.asarray(config.depths_km), n_events)
    depth = config.site_spec.slant_km(vertical, np.cos(zenith))  # spherical overburden, as simulate
    return np.stack([energy, zenith, mass, depth], axis=1)


#: The new domain of the icecube model (issue 23): defaults of the ``--flux`` options.
NEW_DOMAIN = {
    "energy_range": (3e2, 1e9),  # GeV
    "zenith_range_deg": (0.0, 85.0),
    "depths_km": (1.4, 1.7, 2.0, 2.3, 2.6),  # vertical, South Pole ice
    "generation_gamma": 1.3,  # the standard dataset's generation spectrum (docs/simulator.md)
    "site": "icecube",
}


def flux_benchmark_primaries(
    n_events: int,
    seed: int,
    flux_model: str = "H3a",
    energy_range: tuple[float, float] = NEW_DOMAIN["energy_range"],
    zenith_range_deg: tuple[float, float] = NEW_DOMAIN["zenith_range_deg"],
    depths_km: tuple[float, ...] = NEW_DOMAIN["depths_km"],
    generation_gamma: float = NEW_DOMAIN["generation_gamma"],
    site: str = NEW_DOMAIN["site"],
) -> tuple[np.ndarray, np.ndarray]:
    """((n, 4) primaries [GeV, rad, A, slant km], (n,) flux weights [Hz through 1 m^2]).

    Drawn and weighted by the functions of ``mubundle generate --flux`` / ``simulate --flux``
    (E^-``generation_gamma`` in ``energy_range`` [GeV], cos(zenith) uniform in
    ``zenith_range_deg``, mass group uniform over the crflux model's groups; primaries from
    the stream ``SeedSequence([seed, 1])``); each primary at one vertical depth drawn uniformly
    from ``depths_km`` (stream ``[seed, 2]``), converted to slant depth through ``site``'s
    spherical overburden by :func:`mubundle.generate.run.slant_depths`.
    """
    from mubundle.flux import sample_flux_primaries
    from mubundle.generate.run import slant_depths
    from mubundle.sim.fluxmode import group_flux

    zenith_range = (float(np.radians(zenith_range_deg[0])), float(np.radians(zenith_range_deg[1])))
    drawn = sample_flux_primaries(
        group_flux(flux_model), n_events, (float(energy_range[0]), float(energy_range[1])), zenith_range,
        1.0, np.random.SeedSequence([seed, 1]), generation_gamma=generation_gamma,
    )
    column = np.random.default_rng([seed, 2]).integers(0, len(depths_km), n_events)
    slant = slant_depths(np.asarray(depths_km, dtype=np.float64), drawn.zenith, "vertical", site)
    depth = slant[np.arange(n_events), column]
    return np.stack([drawn.energy, drawn.zenith, drawn.mass, depth], axis=1), drawn.weight


def resample_by_weight(primaries: np.ndarray, weights: np.ndarray, n_events: int, seed: int) -> np.ndarray:
    """(n_events, 4) rows of ``primaries`` drawn with replacement with probability
    weights / sum(weights): an unweighted sample distributed as the flux."""
    rng = np.random.default_rng([seed, 3])
    return primaries[rng.choice(len(primaries), n_events, p=weights / weights.sum())]


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(sum w v / sum w, its standard error sqrt(sum w^2 (v - mean)^2) / sum w)."""
    total = weights.sum()
    mean = float((weights * values).sum() / total)
    return mean, float(np.sqrt((weights**2 * (values - mean) ** 2).sum()) / total)


def add_reference_arguments(parser) -> None:
    """The options of the accuracy benchmarks (generator_bias, multiplicity_moments,
    energy_by_multiplicity) that :func:`reference_and_model` reads: --data, --sim-events, --model,
    --threads."""
    from mubundle.model.shipped import DEFAULT_MODEL

    parser.add_argument("--data", nargs="+", default=None,
                        help="reference events (files, globs, directories); without it --sim-events events are simulated")
    parser.add_argument("--sim-events", type=positive_int, default=400, help="without --data: simulate this many events")
    parser.add_argument("--model", default=None,
                        help=f"model directory or shipped model name (default: the shipped default, {DEFAULT_MODEL})")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")


def reference_events(data: "list[str] | None", sim_events: int):
    """(RaggedBatch, rejected rows, failed files) of the reference for the accuracy benchmarks:
    the events in ``data`` (files, globs, directories) or, without data, ``sim_events`` events
    simulated with ``mubundle simulate`` physics at :func:`benchmark_primaries` (seed 7)."""
    if data:
        from mubundle.data.sources import read_events

        loaded = read_events(data)
        require_events(len(loaded.batch), loaded.failed_files, loaded.rejected, data)  # nothing read: exit 2
        return loaded.batch, dict(loaded.rejected), list(loaded.failed_files)
    from mubundle.sim.run import simulate_primaries

    primaries = benchmark_primaries(sim_events, seed=7)
    return simulate_primaries(*primaries.T, seed=7), {}, []


def reference_and_model(args):
    """(reference, rejected rows, failed files, model) of an accuracy benchmark from the options
    of :func:`add_reference_arguments`, with torch set to ``args.threads`` threads first."""
    from mubundle.generate.api import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model)  # a bad --model fails before the reference is read or simulated
    reference, rejected, failed = reference_events(args.data, args.sim_events)
    return reference, rejected, failed, model


def load_benchmark_model(path: str | None = None):
    """(model, description): the model directory ``path``; without it the shipped model if
    installed, else an untrained default-size one."""
    from mubundle.generate.api import has_default_model, load_model

    if path is not None:
        return load_model(path), f"--model {path} (a model directory or shipped name)"
    if has_default_model():
        return load_model(None), "pretrained default"
    from mubundle.data.batch import RaggedBatch
    from mubundle.model.bundle import MuonBundleModel
    from mubundle.model.config import ModelConfig
    from mubundle.model.transforms import FeatureTransform

    # a transform fitted on plausible values (the benchmark must not depend on a dataset)
    rng = np.random.default_rng(0)
    conditions = benchmark_primaries(2000, seed=1)
    counts = rng.poisson(5.0, len(conditions))
    n_muons = int(counts.sum())
    muons = np.stack([10 ** rng.uniform(1, 4, n_muons), rng.normal(0, 20, n_muons), rng.normal(0, 20, n_muons)], axis=1)
    torch.manual_seed(0)
    model = MuonBundleModel(ModelConfig(), FeatureTransform.fit(RaggedBatch(conditions, counts, muons)))
    return model.eval(), "untrained, default ModelConfig"


def sample(model, primaries: np.ndarray, seed: int, workers: int | None = None, allow_extrapolation: bool = False):
    return model.sample(primaries[:, 0], primaries[:, 1], primaries[:, 2], primaries[:, 3], seed=seed, workers=workers,
                        allow_extrapolation=allow_extrapolation)


def time_generation(
    model, primaries: np.ndarray, repeats: int, workers: int | None = None, allow_extrapolation: bool = False
) -> tuple[float, int]:
    """Best wall time [s] of ``repeats`` sampling runs and the muons generated (the result is
    copied to host numpy arrays, so CUDA timings include the synchronisation and transfer)."""
    sample(model, primaries[:256], seed=123, workers=workers, allow_extrapolation=allow_extrapolation)  # warm-up
    sample(model, primaries, seed=124, workers=workers, allow_extrapolation=allow_extrapolation)
    best, n_muons = np.inf, 0
    for repeat in range(repeats):
        started = time.perf_counter()
        batch = sample(model, primaries, seed=repeat, workers=workers, allow_extrapolation=allow_extrapolation)
        best = min(best, time.perf_counter() - started)
        n_muons = batch.n_muons
    return best, n_muons


class _MatmulRecorder(TorchDispatchMode):
    """Records every dense matmul (aten mm / addmm / addmm_) that reaches the kernels.

    Dispatch level, below nn.Module: it also sees the matmuls the model issues directly on a
    layer's weights (``split_linear``, the residual ``addmm_``), which module forward hooks miss.
    """

    _OPS = {torch.ops.aten.mm.default: "mm", torch.ops.aten.addmm.default: "addmm", torch.ops.aten.addmm_.default: "addmm_"}

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int, int, int, bool, bool]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kind = self._OPS.get(func)
        if kind is not None:
            x, weight = (args[0], args[1]) if kind == "mm" else (args[1], args[2])
            accumulator_full = kind != "mm" and args[0].dim() == 2  # addmm_ / addmm onto an (M, N) tensor
            self.calls.append((kind, x.shape[0], x.shape[1], weight.shape[1], weight.is_contiguous(), accumulator_full))
        return func(*args, **(kwargs or {}))


def record_matmul_shapes(
    model, primaries: np.ndarray, allow_extrapolation: bool = False
) -> list[tuple[str, int, int, int, bool, bool]]:
    """(op, rows, in, out, weight_contiguous, full_accumulator) of every matmul while sampling ``primaries``."""
    with _MatmulRecorder() as recorder:  # a dispatch mode is thread-local: no worker threads
        sample(model, primaries, seed=0, workers=1, allow_extrapolation=allow_extrapolation)
    return recorder.calls


def gemm_operands(
    calls: list[tuple[str, int, int, int, bool, bool]], device: torch.device
) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(op, x, weight, accumulator) for each recorded matmul: same op, shapes and weight layout.

    Calls that differ only in their row count share one set of operands (the first rows of
    it), so the replay runs on hot (cache-resident) operands as the model's matmuls do: their
    inputs were written by the op just before. Fresh operands for every call (this benchmark
    before 2026-11-26) streamed ~1 GB per pass from memory and made the bound slower than the
    GEMMs themselves (the `full` model: 0.087-0.090 s against 0.071-0.077 s on hot operands).
    """
    signatures = [(kind, n_in, n_out, weight_contiguous, accumulator_full)
                  for kind, _, n_in, n_out, weight_contiguous, accumulator_full in calls]
    rows_needed: dict[tuple[str, int, int, bool, bool], int] = {}
    for signature, (_, rows, *_) in zip(signatures, calls):
        rows_needed[signature] = max(rows, rows_needed.get(signature, 0))
    shared = {}
    for signature, rows in rows_needed.items():
        _, n_in, n_out, weight_contiguous, accumulator_full = signature
        x = torch.randn(rows, n_in, device=device)
        # nn.Linear's layout is x @ W^T with W (out, in): a transposed, non-contiguous view
        weight = torch.randn(n_in, n_out, device=device) if weight_contiguous else torch.randn(n_out, n_in, device=device).t()
        accumulator = torch.randn(rows, n_out, device=device) if accumulator_full else torch.randn(n_out, device=device)
        shared[signature] = (x, weight, accumulator)
    operands = []
    for signature, (kind, rows, *_) in zip(signatures, calls):
        x, weight, accumulator = shared[signature]
        operands.append((kind, x[:rows], weight, accumulator[:rows] if accumulator.dim() == 2 else accumulator))
    return operands


def replay_gemms(operands: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]], device: torch.device) -> float:
    """Wall time [s] of one pass over the matmuls alone."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for kind, x, weight, accumulator in operands:
        if kind == "mm":
            torch.mm(x, weight)
        elif kind == "addmm_":
            accumulator.addmm_(x, weight)
        else:
            torch.addmm(accumulator, x, weight)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def time_gemms(
    calls: list[tuple[str, int, int, int, bool, bool]], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Best wall time [s] of ``repeats`` passes over the recorded matmuls alone, and their GFLOP.

    Run after the sampling runs, not interleaved with them: a pass right after a sampling
    run was 10-25 % slower, which would flatter the fraction.
    """
    operands = gemm_operands(calls, device)
    flops = sum(2.0 * rows * n_in * n_out for _, rows, n_in, n_out, _, _ in calls)
    replay_gemms(operands, device)  # warm-up (CUDA: handles, kernels)
    return min(replay_gemms(operands, device) for _ in range(repeats)), flops / 1e9


def _simulate_one_shower(task: tuple[int, np.ndarray, int]) -> tuple[float, int]:
    """Worker: simulate one primary observed at ``n_depths`` depths; (seconds, events)."""
    from mubundle.sim.config import SimConfig
    from mubundle.sim.run import simulate_showers, slant_depths_km

    index, row, n_depths = task
    energy, zenith, mass, slant = row
    config = SimConfig()
    if n_depths == 1:
        depths = np.array([[slant]])
    else:  # the mubundle simulate defaults: every shower at all configured vertical depths
        depths = slant_depths_km(config, np.array([zenith]))  # simulate's spherical overburden
    started = time.perf_counter()
    batch = simulate_showers(
        np.array([energy]), np.array([zenith]), np.array([np.rint(mass)]), depths, config,
        np.random.SeedSequence([7, index]),
    )
    return time.perf_counter() - started, len(batch)


def _warm_up_simulator() -> None:
    from mubundle.sim.run import simulate_primaries

    simulate_primaries(np.array([1e3]), np.array([0.0]), np.array([1.0]), np.array([1.5]), seed=0)  # model init


def time_simulator(
    primaries: np.ndarray,
    n_showers: int,
    processes: int,
    weights: np.ndarray | None = None,
    configurations: tuple[str, ...] = ("one_shower_per_event", "three_depths_per_shower"),
) -> dict:
    """Cost per event of the reference simulator (``mubundle simulate`` physics, SimConfig
    defaults) on the first ``n_showers`` primaries, run as ``mubundle simulate --workers
    processes`` runs it: one shower per task, ``processes`` spawned processes at once.

    Two configurations, each shower timed inside its process (model set-up excluded):
    ``one_shower_per_event`` (each primary at its own slant depth: what a detector simulation
    pays per event) and ``three_depths_per_shower`` (the training-data configuration of
    ``mubundle simulate``: each shower observed at the 3 default depths, 3 events). The
    wall time per event on ``processes`` cores is taken as core-seconds per event /
    ``processes`` (perfect scaling; the task times are measured while all processes run, so
    contention is included). The cost grows steeply with E0 (~7 ms at 1e4-1e5 GeV, ~0.2 s at
    1e6-1e7 GeV), so the standard error of the mean is reported, and the mean per decade.
    ``weights`` (flux weights of ``primaries``): also the flux-weighted mean per event and its
    standard error (:func:`weighted_mean`). ``configurations``: which of the two to run.
    """
    import multiprocessing

    try:
        import mubundle.sim.run  # noqa: F401
    except ImportError as error:
        return {"reason": f"simulator unavailable: {error}"}
    if n_showers <= 0:
        return {"reason": "--sim-events 0"}
    context = multiprocessing.get_context("spawn")  # as mubundle simulate: fresh Fortran models per process
    result: dict = {"processes": processes, "showers": n_showers}
    with context.Pool(processes, initializer=_warm_up_simulator) as pool:
        pool.map(abs, range(4 * processes))  # returns once the workers are initialised
        for name, n_depths, count in (("one_shower_per_event", 1, n_showers), ("three_depths_per_shower", 3, n_showers)):
            if name not in configurations:
                continue
            tasks = [(index, primaries[index], n_depths) for index in range(count)]
            started = time.perf_counter()
            timed = pool.map(_simulate_one_shower, tasks, chunksize=1)
            wall = time.perf_counter() - started
            seconds = np.array([t for t, _ in timed])
            events = sum(n for _, n in timed)
            per_event = seconds / n_depths  # core-seconds per event of each shower
            decades = np.floor(np.log10(primaries[:count, 0])).astype(int)
            result[name] = {
                "showers": count, "events": events, "wall_seconds": round(wall, 3),
                "core_seconds_per_event": float(per_event.mean()),
                "core_seconds_per_event_standard_error": float(per_event.std(ddof=1) / np.sqrt(count)) if count > 1 else None,
                "seconds_per_event_on_these_cores": float(per_event.mean()) / processes,
                "core_seconds_per_event_by_log10_energy": {
                    f"{decade}-{decade + 1}": {"showers": int((decades == decade).sum()), "mean": float(per_event[decades == decade].mean())}
                    for decade in np.unique(decades)
                },
            }
            if weights is not None:
                mean, error = weighted_mean(per_event, weights[:count])
                result[name]["core_seconds_per_event_flux_weighted"] = mean
                result[name]["core_seconds_per_event_flux_weighted_standard_error"] = error
    return result


def speedups(
    simulator: dict, generator_seconds_per_event: float, generator_threads: int,
    generator_seconds_per_flux_event: float | None = None,
) -> dict:
    """Speed-ups per event of the generator over the simulator, each with the standard error
    from the simulator's mean: ``same_cores`` (both on ``generator_threads`` cores, the
    headline) and ``one_simulator_core`` (simulator in one process: as reported before).
    With ``generator_seconds_per_flux_event`` (the generator's cost per event of the flux
    sample) and a flux-weighted simulator mean: ``flux_weighted_same_cores`` and its error."""
    out = {}
    for name in ("one_shower_per_event", "three_depths_per_shower"):
        part = simulator.get(name)
        if part is None:
            continue
        core = part["core_seconds_per_event"]
        error = part["core_seconds_per_event_standard_error"] or 0.0
        out[name] = {
            "same_cores": core / generator_threads / generator_seconds_per_event,
            "same_cores_standard_error": error / generator_threads / generator_seconds_per_event,
            "one_simulator_core": core / generator_seconds_per_event,
        }
        if generator_seconds_per_flux_event is not None and "core_seconds_per_event_flux_weighted" in part:
            weighted = part["core_seconds_per_event_flux_weighted"] / generator_threads
            out[name]["flux_weighted_same_cores"] = weighted / generator_seconds_per_flux_event
            out[name]["flux_weighted_same_cores_standard_error"] = (
                part["core_seconds_per_event_flux_weighted_standard_error"] / generator_threads / generator_seconds_per_flux_event)
    return out


def measure_generation(
    model, primaries: np.ndarray, repeats: int, workers: int | None, device: torch.device, allow_extrapolation: bool = False
) -> tuple[dict, dict]:
    """(``generation``, ``gemm_bound``) figures of sampling ``primaries`` (best of ``repeats``)."""
    seconds, n_muons = time_generation(model, primaries, repeats, workers, allow_extrapolation)
    calls = record_matmul_shapes(model, primaries, allow_extrapolation)
    gemm_seconds, gflop = time_gemms(calls, repeats, device)
    n_events = len(primaries)
    generation = {
        "events": n_events, "muons": n_muons, "muons_per_event": n_muons / n_events,
        "seconds": round(seconds, 4), "events_per_second": n_events / seconds, "muons_per_second": n_muons / seconds,
        "seconds_per_event": seconds / n_events,
    }
    gemm = {
        "matmul_calls": len(calls), "gflop": round(gflop, 3), "seconds": round(gemm_seconds, 4),
        "gflop_per_second": gflop / gemm_seconds, "gemm_fraction": gemm_seconds / seconds, "target": 0.5,
    }
    return generation, gemm


#: the options of the --flux mode, which the plain mode (the simulate defaults) has no use for
FLUX_OPTIONS = ("energy_range", "zenith_range_deg", "depths", "generation_gamma", "site")


def main(argv: list[str] | None = None) -> dict:
    from mubundle.argtypes import MAX_PRIMARY_ENERGY_GEV, SPECTRAL_INDEX_RANGE
    from mubundle.model.shipped import DEFAULT_MODEL
    from mubundle.sim.config import parse_depths

    parser = make_parser(__doc__)
    parser.add_argument("--events", type=positive_int, default=20_000, help="primaries sampled per timed run")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads and simulator processes")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed runs; the best is reported")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="sampling worker threads (default: --threads, at most 4; 1: intra-op threads only)")
    parser.add_argument("--sim-events", type=non_negative_int, default=200,
                        help="showers (the same primaries) for each of the two simulator configurations (0: no simulator)")
    parser.add_argument("--model", default=None,
                        help=f"model directory or shipped name (default: the shipped default, {DEFAULT_MODEL}, if installed, "
                             "else an untrained model)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (the simulator always runs on the CPU)")
    parser.add_argument("--default-allocator", action="store_true", help="skip the host-allocator tuning of the CLI")
    flux = parser.add_argument_group("flux-weighted primaries over a domain (without --flux: the simulate defaults, "
                                     "unweighted; the other options of this group need --flux)")
    flux.add_argument("--flux", default=None, help="crflux model (e.g. H3a): draw weighted primaries as generate --flux")
    energy = finite_float(0.0, MAX_PRIMARY_ENERGY_GEV, min_inclusive=False, unit="GeV")
    flux.add_argument("--energy-range", nargs=2, type=energy, default=None, metavar=("LO", "HI"),
                      help="primary energy range [GeV] (default: the new domain, 3e2 1e9)")
    flux.add_argument("--zenith-range-deg", nargs=2, type=finite_float(0.0, 90.0, unit="deg"), default=None,
                      metavar=("LO", "HI"), help="zenith range [deg], uniform in cos (default 0 85)")
    flux.add_argument("--depths", type=parse_depths, default=None, metavar="KM,...",
                      help="vertical depths [km] (default 1.4,1.7,2.0,2.3,2.6)")
    flux.add_argument("--generation-gamma", type=finite_float(*SPECTRAL_INDEX_RANGE), default=None,
                      help="generation spectrum E^-G (default 1.3)")
    flux.add_argument("--allow-extrapolation", action="store_true",
                      help="sample primaries outside the model's domain (speed only: e.g. the fast model over the new domain)")
    flux.add_argument("--site", default=None, help="site whose overburden converts the depths (default icecube)")
    args = parser.parse_args(argv)
    given = [name for name in FLUX_OPTIONS if getattr(args, name) is not None]
    if args.flux is None and given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        parser.error(f"{options} need --flux (without it the primaries are the simulate defaults)")
    for name in FLUX_OPTIONS:
        if getattr(args, name) is None:
            setattr(args, name, NEW_DOMAIN["depths_km" if name == "depths" else name])
    if args.energy_range[0] >= args.energy_range[1] or args.zenith_range_deg[0] >= args.zenith_range_deg[1]:
        parser.error(f"--energy-range / --zenith-range-deg need LO < HI, got {list(args.energy_range)} / "
                     f"{list(args.zenith_range_deg)}")
    from mubundle.host_allocator import tune_host_allocator
    from mubundle.train.device import require_available

    device = require_available(args.device)  # no CUDA: one line, exit 6
    allocator = "glibc defaults (--default-allocator)" if args.default_allocator else tune_host_allocator()
    torch.set_num_threads(args.threads)
    weights = flux_sample = None
    if args.flux is None:
        primaries = benchmark_primaries(args.events, seed=0)
        domain = "simulate defaults: E0 1e4-1e7 GeV flat in log E, zenith 0-70 deg, vertical 1.5/2.0/2.5 km, A uniform"
    else:
        options = dict(flux_model=args.flux, energy_range=tuple(args.energy_range),
                       zenith_range_deg=tuple(args.zenith_range_deg), depths_km=tuple(args.depths),
                       generation_gamma=args.generation_gamma, site=args.site)
        primaries, weights = flux_benchmark_primaries(args.events, seed=0, **options)
        pool, pool_weights = flux_benchmark_primaries(5 * args.events, seed=1, **options)
        flux_sample = resample_by_weight(pool, pool_weights, args.events, seed=1)
        domain = dict(options, weighted_by=args.flux, flux_sample={
            "pool": len(pool), "events": args.events,
            "pool_effective_sample_size": float(pool_weights.sum() ** 2 / (pool_weights**2).sum()),
            "energy_median_gev": float(np.median(flux_sample[:, 0])),
            "fraction_above_1e4_gev": float((flux_sample[:, 0] > 1e4).mean())})
    model, model_description = load_benchmark_model(args.model)
    model = model.to(device)

    generation, gemm = measure_generation(model, primaries, args.repeats, args.workers, device, args.allow_extrapolation)
    flux_generation = flux_gemm = None
    if flux_sample is not None:
        flux_generation, flux_gemm = measure_generation(model, flux_sample, args.repeats, args.workers, device,
                                                         args.allow_extrapolation)
    configurations = ("one_shower_per_event",) if args.flux else ("one_shower_per_event", "three_depths_per_shower")
    simulator = time_simulator(primaries, args.sim_events, processes=args.threads, weights=weights,
                               configurations=configurations)
    per_event = generation["seconds_per_event"]
    speedup = speedups(simulator, per_event, args.threads,
                       flux_generation["seconds_per_event"] if flux_generation else None)
    result = {
        "benchmark": "generate_throughput",
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
                    "threads": torch.get_num_threads(), "sampling_workers": args.workers or "default (threads, at most 4, on CPU)",
                    "device": str(device),
                    "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "host_allocator": allocator,
                    "load_average": os.getloadavg()},
        **model_fields(model, args.model),
        "model_description": model_description,
        "primaries": domain,
        "generation": generation,
        "gemm_bound": gemm,
        "simulator": simulator,
        "speedup": speedup,
        # headline: one shower per event, simulator and generator on the same cores
        "speedup_vs_simulator": speedup.get("one_shower_per_event", {}).get("same_cores"),
        "speedup_target": 10_000,
    }
    if flux_generation is not None:
        result["generation_flux_sample"] = flux_generation
        result["gemm_bound_flux_sample"] = flux_gemm
        result["speedup_vs_simulator_flux_weighted"] = speedup.get("one_shower_per_event", {}).get("flux_weighted_same_cores")
    print_json(result, indent=None)
    return result


if __name__ == "__main__":
    run(main)
