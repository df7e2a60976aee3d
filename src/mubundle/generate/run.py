"""Chunked generation to a file: primaries from files or from a flux model.

Both modes stream: conditions arrive in chunks of ``events_per_chunk`` events, each chunk
is sampled with its own seed ``chunk_seed(seed, k)`` and appended to the output file, so
memory is bounded by one chunk and the output depends only on (model, primaries, seed,
events_per_chunk) -- not on the machine or on how long it ran.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence

import numpy as np

from mubundle.data.batch import RaggedBatch
from mubundle.data.native import default_metadata
from mubundle.data.sources import DataFileError, expand_paths, list_pieces
from mubundle.data.validate import QuarantineWriter
from mubundle.executors import open_executor
from mubundle.generate.flux import (
    MASS_GROUPS,
    GroupFlux,
    integrated_rate,
    make_flux_model,
    sample_flux_primaries,
)
from mubundle.generate.output import EventFileWriter
from mubundle.generate.primaries import PrimaryReadReport, iter_primaries
from mubundle.generate.tasks import ModelRef, require_model_ref, sample_chunk_job, sample_conditions  # noqa: F401 (sample_conditions: API)
from mubundle.sim.config import SimConfig

#: Default number of events sampled (and written) at once.
EVENTS_PER_CHUNK = 16_384


class Sampler(Protocol):
    """What generation needs from a model (``MuonBundleModel`` satisfies it)."""

    def sample(self, energy, zenith, mass, depth, seed: int | None = None, events_per_chunk: int = ...) -> RaggedBatch:
        ...


def chunk_seed(seed: int, chunk_index: int) -> int:
    """Independent 63-bit seed of chunk ``chunk_index`` derived from the user seed."""
    state = np.random.SeedSequence([int(seed), int(chunk_index)]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def rechunk(pieces: Iterable[np.ndarray], events_per_chunk: int) -> Iterator[np.ndarray]:
    """Re-cut a stream of (n_i, 4) condition arrays into chunks of exactly ``events_per_chunk`` rows
    (the last one shorter); keeps the order."""
    pending: list[np.ndarray] = []
    n_pending = 0
    for piece in pieces:
        start = 0
        while start < len(piece):
            take = min(len(piece) - start, events_per_chunk - n_pending)
            pending.append(piece[start : start + take])
            n_pending += take
            start += take
            if n_pending == events_per_chunk:
                yield np.concatenate(pending)
                pending, n_pending = [], 0
    if n_pending:
        yield np.concatenate(pending)


def _progress(total: int | None, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="event", unit_scale=True, disable=not enabled, dynamic_ncols=True)


@dataclass
class GenerationSummary:
    """What a generation run wrote; printed by the CLI and returned to API callers."""

    out: str
    format: str
    events: int
    muons: int
    seconds: float
    rejected: dict[str, int] = field(default_factory=dict)
    failed_files: list[dict[str, str]] = field(default_factory=list)
    quarantine: str | None = None
    rate_hz: float | None = None
    reference_rate_hz: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_rows(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> int | None:
    """Rows in ``paths`` from file metadata (for the progress bar); None if unknown."""
    total = 0
    try:
        for path in expand_paths(paths):
            total += sum(piece.n_rows for piece in list_pieces(path))
    except DataFileError:
        return None  # the failing file is reported by the reader; the bar just has no total
    return total


def quarantine_path(out: Path) -> Path:
    """Where rejected primaries are written: next to the output, ``<name>.rejected.parquet``."""
    return out.with_name(out.name + ".rejected.parquet")


def generate_from_primaries(
    model: Sampler | ModelRef,
    primaries: Sequence[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    format: str = "parquet",
    seed: int = 0,
    events_per_chunk: int = EVENTS_PER_CHUNK,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
    dask: str | None = None,
) -> GenerationSummary:
    """Generate one event per valid primary of the files ``primaries`` (any layout, muons
    ignored) and write them, in file order, to ``out``.

    Rows with an invalid primary are counted by reason in the summary and written to
    ``quarantine_path(out)``; unreadable files are listed in ``failed_files``.
    ``dask``: sample the chunks on this Dask cluster (address or ``local:N``; ``model``
    must then be a :class:`ModelRef`); this process reads the primaries and writes ``out``.
    """
    out = Path(out)
    started = time.perf_counter()
    require_model_ref(model, dask)
    report = PrimaryReadReport()
    file_metadata = default_metadata("mubundle generate", config=metadata or {})
    bar = _progress(count_rows(primaries), "generate", progress)
    with QuarantineWriter(quarantine_path(out)) as quarantine, EventFileWriter(out, format, file_metadata) as writer, bar:

        def accepted_pieces() -> Iterator[np.ndarray]:
            for conditions, rejected in iter_primaries(primaries, report):
                quarantine.write(rejected)
                bar.update(len(rejected))
                yield conditions

        jobs = (
            (model, conditions, chunk_seed(seed, index), events_per_chunk, None)
            for index, conditions in enumerate(rechunk(accepted_pieces(), events_per_chunk))
        )
        with open_executor(dask) as executor:
            for batch in executor.map(sample_chunk_job, jobs, ordered=True, name="generate-chunk"):
                writer.write(batch)
                bar.update(len(batch))
    quarantined = quarantine.path if quarantine.rows_written else None
    return GenerationSummary(
        out=str(out), format=format, events=writer.events_written, muons=writer.muons_written,
        seconds=time.perf_counter() - started, rejected=dict(report.rejected), failed_files=report.failed_files,
        quarantine=None if quarantined is None else str(quarantined),
    )


def slant_depths(depths_km: np.ndarray, zenith: np.ndarray, depth_kind: str) -> np.ndarray:
    """(n, d) slant depths [km] of each primary at each requested depth.

    ``depth_kind="slant"``: the depths are slant depths already (the event schema);
    ``"vertical"``: vertical depths below the surface, slant = vertical / cos(zenith)
    (flat Earth and flat ice surface).
    """
    depths_km = np.asarray(depths_km, dtype=np.float64)
    if depth_kind == "slant":
        return np.broadcast_to(depths_km, (len(zenith), len(depths_km))).copy()
    if depth_kind == "vertical":
        return depths_km[None, :] / np.cos(zenith)[:, None]
    raise ValueError(f"depth kind must be 'slant' or 'vertical', got {depth_kind!r}")


_SIM_DEFAULTS = SimConfig()


@dataclass
class FluxSettings:
    """Flux-mode options (see docs/generation.md); energies GeV, angles rad, depths km, area m^2.

    The defaults are those of ``mubundle simulate`` (:class:`~mubundle.sim.config.SimConfig`),
    i.e. the phase space the shipped model was trained on: vertical ice depths, spectrum
    E^-``spectral_index``, zenith range converted from degrees.
    """

    flux_model: str = "H3a"
    events: int = 10_000
    energy_range: tuple[float, float] = _SIM_DEFAULTS.energy_range
    zenith_range: tuple[float, float] = tuple(float(np.radians(z)) for z in _SIM_DEFAULTS.zenith_range_deg)
    depths_km: tuple[float, ...] = _SIM_DEFAULTS.depths_km
    depth_kind: str = "vertical"
    area_m2: float = 1.0
    generation_gamma: float = _SIM_DEFAULTS.spectral_index


def generate_from_flux(
    model: Sampler | ModelRef,
    settings: FluxSettings,
    out: str | os.PathLike,
    format: str = "parquet",
    seed: int = 0,
    events_per_chunk: int = EVENTS_PER_CHUNK,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
    dask: str | None = None,
) -> GenerationSummary:
    """Sample ``settings.events`` primaries from the generation spectrum, weight them to the
    crflux model, and write one event per (primary, depth) with a ``weight`` column [Hz].

    Events are ordered primary by primary, each primary's depths in the given order. Each
    depth's events carry the primary's weight, so the weights of the events at ONE depth
    sum to the rate through the disc (the sum over all events is ``len(depths)`` times it).
    ``dask``: as for :func:`generate_from_primaries` (primaries are drawn here, events sampled there).
    """
    out = Path(out)
    started = time.perf_counter()
    require_model_ref(model, dask)
    if not settings.depths_km or any(not d >= 0 for d in settings.depths_km):
        raise ValueError(f"depths must be non-negative km, got {settings.depths_km}")
    flux = GroupFlux(make_flux_model(settings.flux_model))
    n_depths = len(settings.depths_km)
    primaries_per_chunk = max(1, events_per_chunk // n_depths)
    config = dict(asdict(settings), **(metadata or {}))
    config["mass_groups"] = {name: mass for name, mass, _, _ in MASS_GROUPS}
    config["flux_model_name"] = flux.name
    file_metadata = default_metadata("mubundle generate --flux", config=config)
    rate = 0.0

    def jobs() -> Iterator[tuple]:
        nonlocal rate
        for index, first in enumerate(range(0, settings.events, primaries_per_chunk)):
            n_chunk = min(primaries_per_chunk, settings.events - first)
            # the primaries' stream is kept apart from the model's stream chunk_seed(seed, index)
            primaries_seed = np.random.SeedSequence([int(seed), index, 1])
            primaries = sample_flux_primaries(
                flux, n_chunk, settings.energy_range, settings.zenith_range, settings.area_m2,
                seed=primaries_seed, generation_gamma=settings.generation_gamma, normalisation_events=settings.events,
            )
            rate += float(primaries.weight.sum())
            depths = slant_depths(np.asarray(settings.depths_km), primaries.zenith, settings.depth_kind)
            conditions = np.stack(
                [
                    np.repeat(primaries.energy, n_depths),
                    np.repeat(primaries.zenith, n_depths),
                    np.repeat(primaries.mass, n_depths),
                    depths.reshape(-1),
                ],
                axis=1,
            )
            yield model, conditions, chunk_seed(seed, index), events_per_chunk, np.repeat(primaries.weight, n_depths)

    with EventFileWriter(out, format, file_metadata) as writer, _progress(settings.events * n_depths, "generate", progress) as bar:
        with open_executor(dask) as executor:
            for batch in executor.map(sample_chunk_job, jobs(), ordered=True, name="generate-chunk"):
                writer.write(batch)
                bar.update(len(batch))
    reference = integrated_rate(flux, settings.energy_range, settings.zenith_range, settings.area_m2)
    return GenerationSummary(
        out=str(out), format=format, events=writer.events_written, muons=writer.muons_written,
        seconds=time.perf_counter() - started, rate_hz=rate, reference_rate_hz=reference,
    )
