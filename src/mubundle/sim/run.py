"""Driving the simulation: showers -> events, chunks -> shards, workers, resumption.

A dataset of ``showers`` showers is cut into fixed chunks of ``showers_per_chunk``. Chunk
``k`` draws everything (primaries, decays, collisions, ice) from
``SeedSequence([seed, k])``, so its content is independent of which worker runs it and of
how many workers there are; it is written atomically as shard ``k``. A re-run of the same
command skips chunks whose shard exists (after checking that the shard was produced with
the same configuration), so an interrupted run continues without duplicating showers.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

import numpy as np

from mubundle.configio import to_dict, to_yaml
from mubundle.data.batch import RaggedBatch
from mubundle.sim.atmosphere import slant_depth
from mubundle.sim.cascade import AIR_A_GEV_CM2_PER_G, AIR_B_CM2_PER_G, run_cascade
from mubundle.sim.config import MAX_ZENITH_DEG, SimConfig
from mubundle.sim.deflection import field_across_axis
from mubundle.sim.ice import ICE_A_GEV_PER_M, loss_model, propagate_in_ice
from mubundle.sim.interactions import get_model, model_class
from mubundle.sim.primaries import sample_primaries
from mubundle.sim.version import SIMULATOR_VERSION, UNVERSIONED

PRODUCER = "mubundle simulate"


def muon_threshold_gev(min_slant_depth_m: np.ndarray, min_energy: float, v_cut: float, air_column_gcm2: np.ndarray) -> np.ndarray:
    """Energy (GeV) above which particles are followed, per shower ((S,) arrays in, (S,) out).

    A muon must reach the shallowest requested slant depth d with E > min_energy. Stochastic
    losses only add to the continuous loss a + b_cont E, so a muon needs at least
    E_s = (min_energy + a/b_cont) exp(b_cont d) - a/b_cont at the surface: below that it
    cannot arrive, whatever its fluctuations. Add the largest loss in air
    (production at the top of the atmosphere); a decay muon carries at most its parent's
    energy and a hadron's secondaries at most its energy, so the same bound holds for hadrons.
    """
    b_cont = loss_model(v_cut).b_continuous
    ratio = ICE_A_GEV_PER_M / b_cont
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
    air_column = slant_depth(config.surface_altitude_m, cos_zenith)
    threshold = muon_threshold_gev(depths_m.min(axis=1), config.min_energy, config.ice_v_cut, air_column)
    field = field_across_axis(zenith, shower_azimuth(n_showers, seed_sequence))
    ground = run_cascade(energy, mass, cos_zenith, threshold, config.surface_altitude_m, air, np.random.default_rng(cascade_seed), field=field)

    ice_rng = np.random.default_rng(ice_seed)
    order = np.argsort(ground.shower, kind="stable")
    muon_shower = ground.shower[order]
    muon_energy = ground.energy[order]
    travelled = np.zeros(muon_energy.size)
    counts = np.zeros((n_showers, n_depths), np.int64)
    per_depth_muons = []
    for j in range(n_depths):  # the same muons are followed deeper and deeper
        target = depths_m[muon_shower, j]
        muon_energy = propagate_in_ice(muon_energy, target - travelled, ice_rng, config.ice_v_cut)
        travelled = target
        kept = muon_energy > config.min_energy
        x = ground.x[order] + ground.slope_x[order] * target
        y = ground.y[order] + ground.slope_y[order] * target
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
    energy, zenith, mass = sample_primaries(config, n, np.random.default_rng(primary_seed))
    vertical = np.sort(np.asarray(config.depths_km, np.float64))
    slant = vertical[None, :] / np.cos(zenith)[:, None]
    return simulate_showers(energy, zenith, mass, slant, config, shower_seed)


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
        simulator_version=SIMULATOR_VERSION,
    )


def _write_chunk(config: SimConfig, out_dir: Path, chunk: int) -> tuple[int, int, int]:
    """Simulate and atomically write one chunk; returns (chunk, showers, events)."""
    from mubundle.data.native import shard_path, write_shard

    batch = simulate_chunk(config, chunk)
    write_shard(batch, shard_path(out_dir, chunk), chunk_metadata(config, chunk))
    return chunk, len(batch) // len(config.depths_km), len(batch)


def _worker_write_chunk(job: tuple[SimConfig, Path, int]) -> tuple[int, int, int]:
    return _write_chunk(*job)


def pending_chunks(config: SimConfig, out_dir: Path) -> list[int]:
    """Chunks without a shard yet. Raises ``ValueError`` naming the shard if an existing shard
    was written with a different configuration (continuing would mix two datasets)."""
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
        if version != SIMULATOR_VERSION:
            raise ValueError(
                f"{path} was written by simulator version {version}, this is version {SIMULATOR_VERSION}; "
                "its shards stay readable, but continuing would mix two simulators: use a new --out"
            )
        if found != expected:
            raise ValueError(
                f"{path} was simulated with a different configuration; use a new --out or the same "
                f"command to continue (existing: {found}, requested: {expected})"
            )
    return pending


def simulate_dataset(config: SimConfig, out_dir: str | os.PathLike, workers: int = 1) -> list[Path]:
    """Simulate (or continue) the dataset ``config`` into ``out_dir``; returns all shard paths.

    ``workers`` processes each hold one model instance; results do not depend on it.
    """
    from tqdm import tqdm

    from mubundle.data.native import shard_path

    model_class(config.interaction_model)  # an unknown model name fails before any output exists
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = pending_chunks(config, out_dir)
    to_yaml(config, out_dir / "sim_config.yaml")
    done_showers = config.showers - sum(min(config.showers_per_chunk, config.showers - c * config.showers_per_chunk) for c in todo)
    if done_showers:
        print(f"mubundle simulate: continuing {out_dir}: {config.n_chunks - len(todo)} of {config.n_chunks} shards already written", file=sys.stderr)
    bar = tqdm(total=config.showers, initial=done_showers, unit="shower", desc="simulate", file=sys.stderr)
    jobs = [(config, out_dir, chunk) for chunk in todo]
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            _, showers, _ = _worker_write_chunk(job)
            bar.update(showers)
    else:
        # spawn: the Fortran models must be initialised fresh in each worker
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(jobs))) as pool:
            for _, showers, _ in pool.imap_unordered(_worker_write_chunk, jobs):
                bar.update(showers)
    bar.close()
    return [shard_path(out_dir, chunk) for chunk in range(config.n_chunks)]


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
        "energy must be finite and > 0 GeV": ~(np.isfinite(energy) & (energy > 0)),
        f"zenith must be in [0, {MAX_ZENITH_DEG:g} deg]": ~((zenith >= 0) & (zenith <= np.radians(MAX_ZENITH_DEG))),
        "mass must be finite and >= 1": ~(np.isfinite(mass) & (mass >= 1)),
        "depth must be finite and >= 0 km": ~(np.isfinite(depth) & (depth >= 0)),
    }
    for message, bad in problems.items():
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(f"simulate_primaries: {message}; {rows.size} primaries violate it (first rows: {rows[:5].tolist()})")
    group = config.showers_per_chunk
    sequence = np.random.SeedSequence([seed, 0x5EED])
    batches = []
    for index, child in enumerate(sequence.spawn(-(-energy.size // group))):
        part = slice(index * group, (index + 1) * group)
        batches.append(simulate_showers(energy[part], zenith[part], np.rint(mass[part]), depth[part, None], config, child))
    return RaggedBatch.concat(batches)


__all__ = ["simulate_dataset", "simulate_primaries", "simulate_showers", "simulate_chunk", "muon_threshold_gev"]
