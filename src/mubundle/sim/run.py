"""Driving the simulation: showers -> events, chunks -> shards, workers, resumption.

A dataset of ``showers`` showers is cut into fixed chunks of ``showers_per_chunk``. Chunk
``k`` draws everything (primaries, decays, collisions, ice) from
``SeedSequence([seed, k])``, so its content is independent of which worker runs it and of
how many workers there are; it is written atomically as shard ``k``. A re-run of the same
command skips chunks whose shard exists (after checking that the shard was produced with
the same configuration), so an interrupted run continues without duplicating showers.
The output directory is locked while a run writes it and marked incomplete until the
dataset manifest is written last (:mod:`mubundle.data.dataset`): readers refuse a dataset
whose simulation has not finished.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from mubundle.argtypes import MAX_PRIMARY_ENERGY_GEV
from mubundle.configio import to_dict, to_yaml
from mubundle.data.atomic import remove_stale_temporaries
from mubundle.data.batch import RaggedBatch
from mubundle.data.dataset import begin_dataset, finish_dataset, read_manifest
from mubundle.data.lock import directory_lock
from mubundle.errors import InvalidTypeError, check_integer
from mubundle.executors import check_executor_arguments, check_scheduler_reachable, open_executor
from mubundle.sim.cascade import AIR_A_GEV_CM2_PER_G, AIR_B_CM2_PER_G, run_cascade
from mubundle.sim.config import MAX_ZENITH_DEG, SimConfig
from mubundle.sim.earth import CurvedAxes
from mubundle.sim.ice import ICE_A_GEV_PER_M, ICE_B_PER_M, loss_model, propagate_in_ice
from mubundle.sim.deflection import field_across_axis
from mubundle.sim.interactions import get_model, model_class
from mubundle.sim.primaries import sample_primaries
from mubundle.sim.version import SIMULATOR_VERSION, UNVERSIONED, continues

PRODUCER = "mubundle simulate"


def muon_threshold_gev(
    min_slant_depth_m: np.ndarray,
    min_energy: float,
    v_cut: float,
    air_column_gcm2: np.ndarray,
    a_per_m: float = ICE_A_GEV_PER_M,
    b_per_m: float = ICE_B_PER_M,
) -> np.ndarray:
    """Energy (GeV) above which particles are followed, per shower ((S,) arrays in, (S,) out).

    A muon must reach the shallowest requested slant depth d with E > min_energy. Stochastic
    losses only add to the continuous loss a + b_cont E, so a muon needs at least
    E_s = (min_energy + a/b_cont) exp(b_cont d) - a/b_cont at the surface: below that it
    cannot arrive, whatever its fluctuations. Add the largest loss in air
    (production at the top of the atmosphere); a decay muon carries at most its parent's
    energy and a hadron's secondaries at most its energy, so the same bound holds for hadrons.
    """
    b_cont = loss_model(v_cut, b_per_m).b_continuous
    ratio = a_per_m / b_cont
    at_surface = (min_energy + ratio) * np.exp(b_cont * min_slant_depth_m) - ratio
    air_ratio = AIR_A_GEV_CM2_PER_G / AIR_B_CM2_PER_G  # invert the air loss over the full column
    return (at_surface + air_ratio) * np.exp(AIR_B_CM2_PER_G * air_column_gcm2) - air_ratio


def simulate_showers(
    energy: np.ndarray,
    zenith: np.ndarray,
    mass: np.ndarray,
    slant_depths_km: np.ndarray,
    config: SimConfig,
    seed_sequence: np.random.SeedSequence,
) -> RaggedBatch:
    """Simulate S showers, each observed at D slant depths.

    energy GeV, zenith rad, mass A: (S,); slant_depths_km: (S, D) km of ice along the axis,
    ascending along axis 1. Returns S * D events, shower-major (shower 0 at all its depths,
    then shower 1, ...). Deterministic for a given ``seed_sequence``.
    """
    energy = np.asarray(energy, np.float64)
    zenith = np.asarray(zenith, np.float64)
    mass = np.asarray(mass, np.float64)
    depths_m = np.asarray(slant_depths_km, np.float64) * 1000.0
    n_showers, n_depths = depths_m.shape
    if n_showers == 0:
        return RaggedBatch.empty()
    model_seed, cascade_seed, ice_seed = seed_sequence.spawn(3)
    air = get_model(config.interaction_model, int(model_seed.generate_state(1, np.uint64)[0]))
    cos_zenith = np.cos(zenith)
    medium = config.site_spec.medium
    axes = CurvedAxes(cos_zenith, config.altitude_m)  # spherical atmosphere (earth.py)
    air_column = axes.ground_depth
    threshold = muon_threshold_gev(depths_m.min(axis=1), config.min_energy, config.ice_v_cut, air_column, medium.a_per_m, medium.b_per_m)
    field = field_across_axis(zenith, shower_azimuth(n_showers, seed_sequence), config.site_spec.field_ut)
    ground = run_cascade(
        energy, mass, cos_zenith, threshold, config.altitude_m, air, np.random.default_rng(cascade_seed),
        geometry=axes, field=field,
    )

    ice_rng = np.random.default_rng(ice_seed)
    order = np.argsort(ground.shower, kind="stable")
    muon_shower = ground.shower[order]
    muon_energy = ground.energy[order]
    travelled = np.zeros(muon_energy.size)
    counts = np.zeros((n_showers, n_depths), np.int64)
    per_depth_muons = []
    for j in range(n_depths):  # the same muons are followed deeper and deeper
        target = depths_m[muon_shower, j]
        muon_energy = propagate_in_ice(muon_energy, target - travelled, ice_rng, config.ice_v_cut, medium.a_per_m, medium.b_per_m)
        travelled = target
        kept = muon_energy > config.min_energy
        path = target * medium.length_per_depth  # the slopes are per metre of path, not of m w.e.
        x = ground.x[order] + ground.slope_x[order] * path
        y = ground.y[order] + ground.slope_y[order] * path
        counts[:, j] = np.bincount(muon_shower[kept], minlength=n_showers)
        per_depth_muons.append((muon_shower[kept], np.column_stack([muon_energy[kept], x[kept], y[kept]])))
    # shower-major event order: sort all kept muons by (shower, depth index)
    event_of = np.concatenate([shower * n_depths + j for j, (shower, _) in enumerate(per_depth_muons)])
    muons = np.concatenate([m for _, m in per_depth_muons]) if per_depth_muons else np.zeros((0, 3))
    muons = muons[np.argsort(event_of, kind="stable")]
    conditions = np.column_stack(
        [np.repeat(energy, n_depths), np.repeat(zenith, n_depths), np.repeat(mass, n_depths), depths_m.ravel() / 1000.0]
    )
    return RaggedBatch(conditions, counts.ravel(), muons)


def shower_azimuth(n_showers: int, seed_sequence: np.random.SeedSequence) -> np.ndarray:
    """(S,) azimuths (rad, uniform): the events carry no azimuth, so each shower gets a random
    orientation with respect to the geomagnetic field (a fourth child of the shower seed
    sequence, so the first three streams are those of simulator version 1)."""
    (azimuth_seed,) = seed_sequence.spawn(1)
    return np.random.default_rng(azimuth_seed).uniform(0.0, 2.0 * np.pi, n_showers)


def simulate_chunk(config: SimConfig, chunk: int) -> RaggedBatch:
    """Events of chunk ``chunk`` of the dataset described by ``config`` (deterministic)."""
    first = chunk * config.showers_per_chunk
    n = min(config.showers_per_chunk, config.showers - first)
    sequence = np.random.SeedSequence([config.seed, chunk])
    primary_seed, shower_seed = sequence.spawn(2)
    weight = None
    if config.flux is None:
        energy, zenith, mass = sample_primaries(config, n, np.random.default_rng(primary_seed))
    else:
        from mubundle.sim.fluxmode import sample_weighted_primaries

        energy, zenith, mass, weight = sample_weighted_primaries(config, n, primary_seed)
    slant = slant_depths_km(config, zenith)
    batch = simulate_showers(energy, zenith, mass, slant, config, shower_seed)
    if weight is None:
        return batch
    return RaggedBatch(batch.conditions, batch.counts, batch.flat_muons, np.repeat(weight, slant.shape[1]))


def slant_depths_km(config: SimConfig, zenith: np.ndarray) -> np.ndarray:
    """(S, D) slant depths (km of the site's depth unit) of ``config.depths_km`` (vertical, sorted)
    for showers of ``zenith`` (rad, (S,)): the spherical overburden of the site (Muonitron's
    formula, ``Site.slant_km``; for km w.e. of rock through the sphere scaled to m w.e.)."""
    vertical = np.sort(np.asarray(config.depths_km, np.float64))
    return config.site_spec.slant_km(vertical[None, :], np.cos(zenith)[:, None])


def chunk_metadata(config: SimConfig, chunk: int) -> dict:
    """Shard metadata: the full run config plus which showers the shard holds."""
    from mubundle.data.native import default_metadata

    first = chunk * config.showers_per_chunk
    last = min(first + config.showers_per_chunk, config.showers) - 1
    return default_metadata(
        PRODUCER,
        config=to_dict(config),
        chunk=chunk,
        n_chunks=config.n_chunks,
        showers=[first, last],
        depths_sorted_km=sorted(config.depths_km),
        **site_metadata(config),
        simulator_version=SIMULATOR_VERSION,
    )


def site_metadata(config: SimConfig) -> dict:
    """Shard metadata of the site: ``site`` (its name; training refuses a set mixing sites),
    its medium, depth unit, surface altitude and flux settings."""
    return {
        **config.site_spec.metadata(),
        "surface_altitude_m": config.altitude_m,
        "flux": config.flux,
        "area_m2": config.area_m2 if config.flux else None,
    }


def _write_chunk(config: SimConfig, out_dir: Path, chunk: int, batch: RaggedBatch | None = None) -> tuple[int, int, int]:
    """Atomically write one chunk (simulated here unless ``batch`` is given); returns (chunk, showers, events)."""
    from mubundle.data.native import shard_path, write_shard

    batch = simulate_chunk(config, chunk) if batch is None else batch
    write_shard(batch, shard_path(out_dir, chunk), chunk_metadata(config, chunk))
    return chunk, len(batch) // len(config.depths_km), len(batch)


# one chunk at a time per process: the Fortran model instance is process-wide (a Dask
# worker with several threads would otherwise run two chunks on it at once)
_MODEL_LOCK = threading.Lock()


def simulate_chunk_job(job: tuple[SimConfig, int]) -> tuple[int, RaggedBatch]:
    """Executor task: ``(config, chunk)`` -> ``(chunk, events)``. Runs in a worker process
    (local or Dask), which builds its interaction model once (``get_model``'s cache); the
    driver writes the shard, so Dask workers need no access to the output directory."""
    config, chunk = job
    with _MODEL_LOCK:
        return chunk, simulate_chunk(config, chunk)


def pending_chunks(config: SimConfig, out_dir: Path, primaries_sha256: str | None = None) -> list[int]:
    """Chunks without a shard yet. Raises ``ValueError`` naming the shard if an existing shard
    was written by another simulator version, from other given primaries (``primaries_sha256``:
    the fingerprint of ``simulate --primaries``) or with a different configuration (continuing
    would mix two datasets)."""
    from mubundle.data.native import read_metadata, shard_path

    expected = to_dict(config)
    pending = []
    for chunk in range(config.n_chunks):
        path = shard_path(out_dir, chunk)
        if not path.exists():
            pending.append(chunk)
            continue
        metadata = read_metadata(path)
        found = metadata.get("config")
        version = metadata.get("simulator_version", UNVERSIONED)
        if not continues(version, config.site):  # same version, or bit-identical at this site (version.py)
            raise ValueError(
                f"{path} was written by simulator version {version}, this is version {SIMULATOR_VERSION}; "
                "its shards stay readable, but continuing would mix two simulators: use a new --out"
            )
        found_print = (metadata.get("primaries") or {}).get("sha256")
        if primaries_sha256 is not None and found_print != primaries_sha256:
            raise ValueError(
                f"{path} was simulated from other primaries, repeat or configuration (primaries {found_print}); "
                "use a new --out or the same command to continue"
            )
        if found != expected:
            raise ValueError(
                f"{path} was simulated with a different configuration ({config_differences(found, expected)}); "
                "use a new --out or the same command to continue"
            )
    return pending


def config_differences(existing: "dict | None", requested: dict) -> str:
    """``key: existing -> requested`` for each setting that differs (one line)."""
    if not isinstance(existing, dict):
        return f"no configuration recorded: {existing!r}"
    keys = [key for key in {**existing, **requested} if existing.get(key) != requested.get(key)]
    return ", ".join(f"{key}: {existing.get(key)!r} -> {requested.get(key)!r}" for key in keys)


def simulate_dataset(
    config: SimConfig,
    out_dir: str | os.PathLike,
    workers: int = 1,
    dask: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Simulate (or continue) the dataset ``config`` into ``out_dir``; returns all shard paths.

    ``workers`` processes each hold one model instance; or the chunks run as tasks on the
    Dask cluster ``dask`` (scheduler address or ``local:N``, see ``mubundle.executors``).
    Results depend on neither. ``progress``: a progress bar (showers) on stderr.
    ``OUT/_manifest.json`` records showers, seed and muons (:func:`simulation_summary` reads it).
    """
    if not isinstance(config, SimConfig):
        raise InvalidTypeError(f"config must be a SimConfig, got {type(config).__name__}")
    workers = check_integer("workers", workers, 1)
    check_executor_arguments(dask, workers)  # a missing dask.distributed fails before any output exists
    model_class(config.interaction_model)  # an unknown model name fails before any output exists
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a directory; choose a directory for the dataset")
    check_scheduler_reachable(dask)  # a refused or unknown scheduler fails before any output exists
    # one writer per directory; the lock dies with its process, so a killed run resumes as is
    with directory_lock(out_dir, PRODUCER):
        remove_stale_temporaries(out_dir)
        try:
            paths, muons = _simulate_into(config, out_dir, workers, dask, progress)
        finally:  # worker processes stopped mid-shard (Ctrl-C, SIGTERM) cannot remove their own
            remove_stale_temporaries(out_dir)
        finish_dataset(out_dir, paths, PRODUCER, showers=config.showers, seed=config.seed, muons=muons)
    return paths


def _simulate_into(config: SimConfig, out_dir: Path, workers: int, dask: str | None, progress: bool) -> tuple[list[Path], int]:
    """:func:`simulate_dataset` inside the locked ``out_dir`` (marked incomplete until the manifest);
    returns all shard paths and the number of muons they hold."""
    from tqdm import tqdm

    from mubundle.data.native import shard_path

    from mubundle.sim.domain import low_energy_warning

    warning = low_energy_warning(config)
    if warning:
        print(warning, file=sys.stderr)
    todo = pending_chunks(config, out_dir)
    begin_dataset(out_dir, PRODUCER, f"run the same `mubundle simulate` command again (--out {out_dir}) to continue it; "
                  "its finished shards are kept")
    to_yaml(config, out_dir / "sim_config.yaml")
    done_showers = config.showers - sum(min(config.showers_per_chunk, config.showers - c * config.showers_per_chunk) for c in todo)
    if done_showers:
        print(f"mubundle simulate: continuing {out_dir}: {config.n_chunks - len(todo)} of {config.n_chunks} shards already written", file=sys.stderr)
    pending = set(todo)
    muons = sum(shard_muons(shard_path(out_dir, chunk)) for chunk in range(config.n_chunks) if chunk not in pending)
    bar = tqdm(total=config.showers, initial=done_showers, unit="shower", desc="simulate", file=sys.stderr,
               disable=not progress)
    jobs = [(config, chunk) for chunk in todo]
    lost_hint = f"the shards finished so far are kept in {out_dir}: start the cluster again and run the same command to continue"
    with open_executor(dask if jobs else None, workers, jobs=len(jobs), lost_hint=lost_hint) as executor:
        for chunk, batch in executor.map(simulate_chunk_job, jobs, name="simulate-chunk"):
            _, showers, _ = _write_chunk(config, out_dir, chunk, batch)
            muons += batch.n_muons
            bar.update(showers)
    bar.close()
    return [shard_path(out_dir, chunk) for chunk in range(config.n_chunks)], muons


def shard_muons(path: str | os.PathLike) -> int:
    """Muons in the native shard ``path`` (its ``muons`` column only is read)."""
    import pyarrow.parquet as pq

    from mubundle.data.native import decode_muons
    from mubundle.data.schema import MUONS_COLUMN

    offsets, _, _ = decode_muons(pq.read_table(path, columns=[MUONS_COLUMN], use_threads=False).column(MUONS_COLUMN))
    return int(offsets[-1])


@dataclass
class SimulationSummary:
    """What a finished ``mubundle simulate`` run holds (the whole dataset, also when it was continued);
    printed by the CLI as one JSON line."""

    out: str
    showers: int
    events: int
    muons: int
    shards: int
    #: wall time of this run [s]
    seconds: float
    #: ``--primaries``: rows read but not simulated (reader rejections and rows the simulator
    #: cannot take); None for sampled primaries
    not_simulated: int | None = None
    #: ``--primaries``: the file listing those rows (None when there are none, and for sampled primaries)
    quarantine: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def simulation_summary(out_dir: str | os.PathLike, seconds: float) -> SimulationSummary:
    """The :class:`SimulationSummary` of the finished dataset ``out_dir`` (from its ``_manifest.json``,
    written by :func:`simulate_dataset` or :func:`mubundle.sim.given.simulate_given_primaries`);
    ``seconds``: the run's wall time [s]. Raises ``ValueError`` when ``out_dir`` holds no manifest."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    if manifest is None:
        raise ValueError(f"{out_dir} holds no finished dataset (no _manifest.json)")
    quarantine = manifest.get("quarantine") or []
    return SimulationSummary(
        out=str(out_dir),
        showers=int(manifest["showers"]),
        events=int(manifest["events"]),
        muons=int(manifest["muons"]),
        shards=len(manifest["shards"]),
        seconds=round(float(seconds), 3),
        not_simulated=manifest.get("not_simulated"),
        quarantine=str(out_dir / quarantine[0]) if quarantine else None,
    )


def print_simulation_summary(summary: SimulationSummary, stream: TextIO | None = None) -> None:
    """One human-readable line (to ``stream``, default stderr) about what the dataset holds."""
    stream = sys.stderr if stream is None else stream
    shards = f"{summary.shards} shard{'s' if summary.shards != 1 else ''}"
    line = (f"wrote {summary.events} events ({summary.muons} muons) of {summary.showers} showers to {summary.out} "
            f"({shards}) in {summary.seconds:.1f} s")
    if summary.not_simulated:
        line += f"; {summary.not_simulated} primaries not simulated (rows in {summary.quarantine})"
    print(line, file=stream)


def primary_problems(energy: np.ndarray, zenith: np.ndarray, mass: np.ndarray) -> dict[str, np.ndarray]:
    """What the simulator cannot take: {rule: (B,) bool mask of the primaries breaking it}
    for energy (GeV), zenith (rad) and mass number A, all (B,) float64."""
    return {
        f"energy must be finite and in (0, {MAX_PRIMARY_ENERGY_GEV:g}] GeV": ~((energy > 0) & (energy <= MAX_PRIMARY_ENERGY_GEV)),
        f"zenith must be in [0, {MAX_ZENITH_DEG:g} deg]": ~((zenith >= 0) & (zenith <= np.radians(MAX_ZENITH_DEG))),
        "mass must be finite and >= 1": ~(np.isfinite(mass) & (mass >= 1)),
    }


def simulate_primaries(
    energy: np.ndarray,
    zenith: np.ndarray,
    mass: np.ndarray,
    depth: np.ndarray,
    seed: int,
    config: SimConfig | None = None,
) -> RaggedBatch:
    """One simulated event per given primary, in the given order.

    energy GeV, zenith rad, mass A (rounded to an integer nucleon number), depth = SLANT
    depth in km of ice: all (B,). ``config`` supplies the physics settings (model, minimum
    energy, ...); its sampling settings are ignored. Each primary is its own shower.
    """
    config = config or SimConfig()
    energy, zenith, mass, depth = (np.atleast_1d(np.asarray(a, np.float64)) for a in (energy, zenith, mass, depth))
    if not (energy.shape == zenith.shape == mass.shape == depth.shape) or energy.ndim != 1:
        raise ValueError(f"energy, zenith, mass, depth must be (B,) arrays of one length, got {energy.shape}, {zenith.shape}, {mass.shape}, {depth.shape}")
    problems = {
        **primary_problems(energy, zenith, mass),
        "depth must be finite and >= 0 km": ~(np.isfinite(depth) & (depth >= 0)),
    }
    for message, bad in problems.items():
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(f"simulate_primaries: {message}; {rows.size} primaries violate it (first rows: {rows[:5].tolist()})")
    seed = check_integer("seed", seed, 0)
    group = config.showers_per_chunk
    sequence = np.random.SeedSequence([seed, 0x5EED])
    batches = []
    for index, child in enumerate(sequence.spawn(-(-energy.size // group))):
        part = slice(index * group, (index + 1) * group)
        batches.append(simulate_showers(energy[part], zenith[part], np.rint(mass[part]), depth[part, None], config, child))
    return RaggedBatch.concat(batches)


__all__ = ["simulate_dataset", "simulate_primaries", "simulate_showers", "simulate_chunk", "muon_threshold_gev",
           "SimulationSummary", "simulation_summary", "print_simulation_summary"]
