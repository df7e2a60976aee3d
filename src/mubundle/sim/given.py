"""``mubundle simulate --primaries FILE...``: one simulated shower per given primary.

The primaries are the events of any readable file (``mubundle.data.sources.read_events``:
native shards, legacy layouts, CORSIKA files where supported): each accepted event row gives
one primary (energy, zenith, mass), simulated ``repeat`` times in a row (row 0 K times, then
row 1 K times, ...), each shower observed at the configured ``--depths`` like sampled
primaries. Rows the simulator cannot take (zenith beyond the flat-earth limit, mass < 1, ...)
are reported one line each and counted, never silently dropped.

Chunking, seeding, atomic shards and resumption are those of ``simulate_dataset``: chunk k
of the expanded list (``showers_per_chunk`` showers) draws everything from
``SeedSequence([seed, k])``; a re-run with the same command continues, a different set of
primaries, repeat or configuration in an existing directory is refused. Every shard's
metadata holds the config, the simulator version and a fingerprint of the primaries.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from mubundle.configio import to_yaml
from mubundle.data.batch import RaggedBatch
from mubundle.sim.config import SimConfig

PRODUCER = "mubundle simulate --primaries"


def primaries_from_events(conditions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(energy GeV, zenith rad, mass A) of the usable rows of event ``conditions`` (B, 4), plus
    one message per unusable row (its row number and why). Mass is rounded to an integer A."""
    energy = conditions[:, 0].astype(np.float64)
    zenith = conditions[:, 1].astype(np.float64)
    mass = np.rint(conditions[:, 2].astype(np.float64))
    from mubundle.sim.run import primary_problems  # the rules of simulate_primaries

    problems = primary_problems(energy, zenith, mass)
    bad = np.zeros(energy.shape, bool)
    messages = []
    for reason, rows in problems.items():
        for row in np.flatnonzero(rows & ~bad):
            messages.append(f"primary row {row} (E={energy[row]:g} GeV, zenith={zenith[row]:g} rad, A={mass[row]:g}) not simulated: {reason}")
        bad |= rows
    keep = ~bad
    return energy[keep], zenith[keep], mass[keep], messages


def fingerprint(energy: np.ndarray, zenith: np.ndarray, mass: np.ndarray, repeat: int) -> str:
    """sha256 of the primaries (float64 bytes) and the repeat count: identifies the shower list."""
    digest = hashlib.sha256()
    for array in (energy, zenith, mass):
        digest.update(np.ascontiguousarray(array, np.float64).tobytes())
    digest.update(str(int(repeat)).encode())
    return digest.hexdigest()


def expand(energy: np.ndarray, zenith: np.ndarray, mass: np.ndarray, repeat: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each primary ``repeat`` times in a row: (N * repeat,) arrays, order kept."""
    return tuple(np.repeat(np.asarray(a, np.float64), repeat) for a in (energy, zenith, mass))


def given_chunk_job(job: tuple) -> tuple[int, RaggedBatch]:
    """Executor task: ``(config, chunk, energy, zenith, mass)`` with the chunk's own primaries
    ((S,) arrays) -> ``(chunk, events)``; seeded by ``SeedSequence([seed, chunk])`` as a sampled
    chunk, depths by the site's spherical overburden (``run.slant_depths_km``)."""
    from mubundle.sim.run import _MODEL_LOCK, simulate_showers, slant_depths_km

    config, chunk, energy, zenith, mass = job
    _, shower_seed = np.random.SeedSequence([config.seed, chunk]).spawn(2)
    with _MODEL_LOCK:
        return chunk, simulate_showers(energy, zenith, mass, slant_depths_km(config, zenith), config, shower_seed)


def _metadata(config: SimConfig, chunk: int, print_: str, sources: list[str], repeat: int) -> dict:
    """A sampled dataset's shard metadata (site and simulator version included) plus the given primaries."""
    from mubundle.sim.run import chunk_metadata

    return dict(chunk_metadata(config, chunk), primaries={"sha256": print_, "repeat": repeat, "files": sources})


def _showers_in(config: SimConfig, chunk: int) -> int:
    """Showers of chunk ``chunk`` (the last one may be short)."""
    return min(config.showers_per_chunk, config.showers - chunk * config.showers_per_chunk)


def simulate_given_primaries(
    paths: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    config: SimConfig,
    repeat: int = 1,
    workers: int = 1,
) -> list[Path]:
    """Simulate every usable event row of ``paths`` as a primary, ``repeat`` times each, in order,
    into ``out_dir`` (native shards; resumable). ``config`` gives the physics (depths, minimum
    energy, surface altitude, model, seed); its sampling settings and ``showers`` are replaced.
    Returns all shard paths. Raises ``ValueError`` when no primary is usable."""
    from tqdm import tqdm

    from mubundle.data.atomic import remove_stale_temporaries
    from mubundle.data.dataset import begin_dataset, finish_dataset
    from mubundle.data.lock import directory_lock
    from mubundle.data.native import shard_path, write_shard
    from mubundle.data.sources import read_events
    from mubundle.executors import open_executor
    from mubundle.sim.interactions import model_class
    from mubundle.sim.run import pending_chunks

    if repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {repeat}")
    model_class(config.interaction_model)
    loaded = read_events(paths)
    for failed in loaded.failed_files:
        print(f"mubundle simulate: {failed['path']}: not read: {failed['error']}", file=sys.stderr)
    for reason, count in loaded.rejected.items():
        print(f"mubundle simulate: {count} event rows rejected by the reader: {reason}", file=sys.stderr)
    energy, zenith, mass, messages = primaries_from_events(loaded.batch.conditions)
    for message in messages:
        print(f"mubundle simulate: {message}", file=sys.stderr)
    if messages:
        print(f"mubundle simulate: {len(messages)} of {len(loaded.batch)} primaries not simulated", file=sys.stderr)
    if energy.size == 0:
        raise ValueError(f"--primaries: no usable primary in {[str(p) for p in paths]}")
    print_ = fingerprint(energy, zenith, mass, repeat)
    config = replace(config, showers=energy.size * repeat)
    energy, zenith, mass = expand(energy, zenith, mass, repeat)
    out_dir = Path(out_dir)
    with directory_lock(out_dir, PRODUCER):  # one writer per directory, as for sampled primaries
        remove_stale_temporaries(out_dir)
        todo = pending_chunks(config, out_dir, print_)
        begin_dataset(out_dir, PRODUCER, f"run the same `mubundle simulate --primaries` command again (--out {out_dir}) "
                      "to continue it; its finished shards are kept")
        to_yaml(config, out_dir / "sim_config.yaml")
        sources = [str(p) for p in paths]
        done = config.showers - sum(_showers_in(config, c) for c in todo)
        if done:
            print(f"mubundle simulate: continuing {out_dir}: {config.n_chunks - len(todo)} of {config.n_chunks} shards already written", file=sys.stderr)
        bar = tqdm(total=config.showers, initial=done, unit="shower", desc="simulate", file=sys.stderr)
        step = config.showers_per_chunk
        jobs = [(config, c, energy[c * step:(c + 1) * step], zenith[c * step:(c + 1) * step], mass[c * step:(c + 1) * step])
                for c in todo]
        try:
            with open_executor(None, workers, jobs=len(jobs)) as executor:
                for chunk, batch in executor.map(given_chunk_job, jobs, name="simulate-chunk"):
                    write_shard(batch, shard_path(out_dir, chunk), _metadata(config, chunk, print_, sources, repeat))
                    bar.update(_showers_in(config, chunk))
        finally:  # worker processes stopped mid-shard (Ctrl-C, SIGTERM) cannot remove their own
            bar.close()
            remove_stale_temporaries(out_dir)
        shards = [shard_path(out_dir, chunk) for chunk in range(config.n_chunks)]
        finish_dataset(out_dir, shards, PRODUCER, showers=config.showers, seed=config.seed, primaries=print_)
    return shards
