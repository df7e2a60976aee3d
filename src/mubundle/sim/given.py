"""``mubundle simulate --primaries FILE...``: one simulated shower per given primary.

The primaries are the rows of any readable file (:func:`mubundle.data.primaries.iter_primaries`:
native shards, Parquet files of primaries only, legacy layouts, CORSIKA files), their muons
ignored: each row with a valid primary gives one primary (energy, zenith, mass), simulated
``repeat`` times in a row (row 0 K times, then row 1 K times, ...), each shower observed at the
configured ``--depths`` like sampled primaries. Rows the reader rejects (NaN, zenith outside
[0, pi/2], ...) and rows the simulator cannot take (zenith beyond its 89 deg, mass < 1, ...) are
counted on stderr (the simulator's refusals with file and row), listed in
``OUT/_quarantine/rejected.parquet`` (file, row, reason, raw values) and in the manifest, never
silently dropped.

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
from mubundle.data.dataset import QUARANTINE_NAME
from mubundle.data.primaries import PrimaryPiece, PrimaryReadReport, iter_primaries
from mubundle.data.validate import RejectedRows, counts_text, write_quarantine
from mubundle.sim.config import SimConfig

PRODUCER = "mubundle simulate --primaries"


#: The first lines of a --primaries dataset's sim_config.yaml: which of its settings are not used.
CONFIG_HEADER = (
    "# mubundle simulate --primaries: energy, zenith and mass of each shower are those of the files named in the\n"
    "# shards' metadata ('primaries', each row 'repeat' times in a row); primary, energy_range, spectral_index,\n"
    "# zenith_range_deg, flux and area_m2 below are defaults that were not used; showers = rows x repeat.\n"
)

#: Messages printed one per unusable row; the rest are counted (all of them are in the quarantine file).
MAX_ROW_MESSAGES = 10


def usable_primaries(piece: PrimaryPiece) -> tuple[np.ndarray, np.ndarray, np.ndarray, RejectedRows]:
    """(energy GeV, zenith rad, mass A) of the rows of ``piece`` the simulator can take, and the
    others as rejected rows (file, row, the rule they break, raw values). Mass is rounded to an
    integer A."""
    conditions = piece.conditions
    energy = conditions[:, 0].astype(np.float64)
    zenith = conditions[:, 1].astype(np.float64)
    mass = np.rint(conditions[:, 2].astype(np.float64))
    from mubundle.sim.run import primary_problems  # the rules of simulate_primaries

    reasons = np.full(energy.shape, None, dtype=object)
    for reason, rows in primary_problems(energy, zenith, mass).items():
        reasons[rows & (reasons == None)] = reason  # noqa: E711  (element-wise: rows without a reason yet)
    bad = reasons != None  # noqa: E711
    raw = RaggedBatch(conditions[bad], np.zeros(int(bad.sum()), np.int64), np.zeros((0, 3), np.float32))
    refused = RejectedRows(np.full(int(bad.sum()), piece.file, dtype=object), piece.rows[bad], reasons[bad], raw)
    keep = ~bad
    return energy[keep], zenith[keep], mass[keep], refused


def read_given_primaries(paths: list[str | os.PathLike]) -> tuple[np.ndarray, np.ndarray, np.ndarray, RejectedRows, int]:
    """(energy GeV, zenith rad, mass A) of every usable row of ``paths`` in file order, all rows not
    simulated (rejected by the reader or refused by the simulator; file, row, reason, raw values),
    and the number of rows read. Prints one stderr line per unreadable file, the reader's
    rejections by reason and the first :data:`MAX_ROW_MESSAGES` refusals (file and row)."""
    report = PrimaryReadReport()
    parts, not_simulated, refusals, rows_read = [], [], 0, 0
    for piece in iter_primaries(paths, report):
        energy, zenith, mass, refused = usable_primaries(piece)
        parts.append((energy, zenith, mass))
        not_simulated += [piece.rejected, refused]
        rows_read += len(piece.conditions) + len(piece.rejected)
        for file, row, reason, values in zip(refused.files, refused.rows, refused.reasons, refused.raw.conditions):
            refusals += 1
            if refusals <= MAX_ROW_MESSAGES:
                print(f"mubundle simulate: {file} row {row} (E={values[0]:g} GeV, zenith={values[1]:g} rad, "
                      f"A={values[2]:g}) not simulated: {reason}", file=sys.stderr)
    for failed in report.failed_files:
        print(f"mubundle simulate: {failed['path']}: not read: {failed['error']}", file=sys.stderr)
    if report.rejected:
        counts = counts_text(report.rejected)
        print(f"mubundle simulate: {report.n_rejected} rows rejected by the reader ({counts})", file=sys.stderr)
    if refusals > MAX_ROW_MESSAGES:
        print(f"mubundle simulate: ... and {refusals - MAX_ROW_MESSAGES} more rows the simulator cannot take", file=sys.stderr)
    energy, zenith, mass = (np.concatenate([part[i] for part in parts]) if parts else np.zeros(0) for i in range(3))
    return energy, zenith, mass, RejectedRows.concat(not_simulated), rows_read


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
    progress: bool = True,
) -> list[Path]:
    """Simulate every usable event row of ``paths`` as a primary, ``repeat`` times each, in order,
    into ``out_dir`` (native shards; resumable). ``config`` gives the physics (depths, minimum
    energy, surface altitude, model, seed); its sampling settings and ``showers`` are replaced.
    ``progress``: a progress bar (showers) on stderr. ``OUT/_manifest.json`` records showers, seed,
    muons, the primaries' fingerprint and the rows not simulated (:func:`mubundle.sim.run.simulation_summary`).
    Returns all shard paths. Raises ``ValueError`` when no primary is usable."""
    from tqdm import tqdm

    from mubundle.data.atomic import remove_stale_temporaries
    from mubundle.data.dataset import begin_dataset, finish_dataset
    from mubundle.data.lock import directory_lock
    from mubundle.data.native import shard_path, write_shard
    from mubundle.executors import open_executor
    from mubundle.sim.interactions import model_class
    from mubundle.sim.run import pending_chunks, shard_muons

    if repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {repeat}")
    model_class(config.interaction_model)
    energy, zenith, mass, not_simulated, rows_read = read_given_primaries(paths)
    out_dir = Path(out_dir)
    if len(not_simulated):
        print(f"mubundle simulate: {len(not_simulated)} of {rows_read} primaries not simulated (rows in "
              f"{out_dir / QUARANTINE_NAME})", file=sys.stderr)
    if energy.size == 0:
        raise ValueError(f"--primaries: no usable primary in {[str(p) for p in paths]}")
    print_ = fingerprint(energy, zenith, mass, repeat)
    config = replace(config, showers=energy.size * repeat)
    energy, zenith, mass = expand(energy, zenith, mass, repeat)
    with directory_lock(out_dir, PRODUCER):  # one writer per directory, as for sampled primaries
        remove_stale_temporaries(out_dir)
        todo = pending_chunks(config, out_dir, print_)
        begin_dataset(out_dir, PRODUCER, f"run the same `mubundle simulate --primaries` command again (--out {out_dir}) "
                      "to continue it; its finished shards are kept")
        (out_dir / "sim_config.yaml").write_text(CONFIG_HEADER + to_yaml(config))
        quarantine = write_quarantine(not_simulated, out_dir / QUARANTINE_NAME)
        sources = [str(p) for p in paths]
        done = config.showers - sum(_showers_in(config, c) for c in todo)
        if done:
            print(f"mubundle simulate: continuing {out_dir}: {config.n_chunks - len(todo)} of {config.n_chunks} shards already written", file=sys.stderr)
        pending = set(todo)
        muons = sum(shard_muons(shard_path(out_dir, c)) for c in range(config.n_chunks) if c not in pending)
        bar = tqdm(total=config.showers, initial=done, unit="shower", desc="simulate", file=sys.stderr,
                   disable=not progress)
        step = config.showers_per_chunk
        jobs = [(config, c, energy[c * step:(c + 1) * step], zenith[c * step:(c + 1) * step], mass[c * step:(c + 1) * step])
                for c in todo]
        try:
            with open_executor(None, workers, jobs=len(jobs)) as executor:
                for chunk, batch in executor.map(given_chunk_job, jobs, name="simulate-chunk"):
                    write_shard(batch, shard_path(out_dir, chunk), _metadata(config, chunk, print_, sources, repeat))
                    muons += batch.n_muons
                    bar.update(_showers_in(config, chunk))
        finally:  # worker processes stopped mid-shard (Ctrl-C, SIGTERM) cannot remove their own
            bar.close()
            remove_stale_temporaries(out_dir)
        shards = [shard_path(out_dir, chunk) for chunk in range(config.n_chunks)]
        finish_dataset(out_dir, shards, PRODUCER, quarantine=[] if quarantine is None else [quarantine],
                       showers=config.showers, seed=config.seed, muons=muons, primaries=print_,
                       not_simulated=len(not_simulated))
    return shards
