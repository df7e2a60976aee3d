"""Chunked generation to a file: primaries from files or from a flux model.

Both modes stream: conditions arrive in chunks of ``events_per_chunk`` events, each chunk
is sampled with its own seed ``chunk_seed(seed, k)`` and appended to the output file, so
memory is bounded by one chunk and the output depends only on (model, primaries, seed,
events_per_chunk) -- not on the machine or on how long it ran.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence

import numpy as np

from mubundle.argtypes import MAX_DEPTH_KM, MAX_PRIMARY_ENERGY_GEV, SPECTRAL_INDEX_RANGE
from mubundle.data.batch import RaggedBatch
from mubundle.data.output_paths import check_output_file, output_format
from mubundle.data.native import default_metadata
from mubundle.data.primaries import PrimaryReadReport, iter_primaries
from mubundle.data.sources import DataFileError, expand_paths, list_pieces
from mubundle.data.validate import QuarantineWriter, above_primary_energy
from mubundle.errors import InvalidValueError, check_finite_number, check_integer
from mubundle.executors import open_executor
from mubundle.generate.flux import (
    FLUX_MODELS,
    MASS_GROUPS,
    GroupFlux,
    integrated_rate,
    make_flux_model,
    sample_flux_primaries,
)
from mubundle.generate.output import FORMATS, EventFileWriter
from mubundle.model.domain import check_files_site, check_primaries
from mubundle.generate.tasks import ModelRef, require_model_ref, sample_chunk_job, sample_conditions  # noqa: F401 (sample_conditions: API)
from mubundle.sim.config import SimConfig
from mubundle.sim.site import DEFAULT_SITE, get_site

#: Default number of events sampled (and written) at once.
EVENTS_PER_CHUNK = 16_384


class Sampler(Protocol):
    """What generation needs from a model (``MuonBundleModel`` satisfies it)."""

    def sample(
        self, energy, zenith, mass, depth, seed: int | None = None, events_per_chunk: int = ...,
        allow_extrapolation: bool = ...,
    ) -> RaggedBatch:
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


def check_domain(model: Sampler | ModelRef, conditions: np.ndarray, allow_extrapolation: bool) -> int:
    """The model's domain check (:mod:`mubundle.model.domain`) of one chunk, here in the driver:
    the number of events outside the domain. Outside without ``allow_extrapolation``: an
    ``ExtrapolationError`` naming the value, the bound and the model. No warning per chunk:
    the run reports the total once (:func:`report_extrapolation`). Workers then sample the
    chunk without checking again (:func:`~mubundle.generate.tasks.sample_chunk_job`)."""
    sampler = model.load()[0] if isinstance(model, ModelRef) else model
    domain, name = getattr(sampler, "domain", None), getattr(sampler, "name", "model")
    return check_primaries(domain, conditions, name, allow_extrapolation, warn=False).n_outside


def report_extrapolation(model: Sampler | ModelRef, extrapolated: int, events: int) -> None:
    """One warning for a whole run that sampled ``extrapolated`` of ``events`` outside the domain."""
    if extrapolated:
        import warnings

        from mubundle.model.domain import ExtrapolationWarning

        sampler = model.load()[0] if isinstance(model, ModelRef) else model
        warnings.warn(f"{extrapolated} of {events} events were extrapolated outside the domain of model "
                      f"'{getattr(sampler, 'name', 'model')}' (--allow-extrapolation)", ExtrapolationWarning, stacklevel=3)


def unphysical_events(batch: RaggedBatch) -> int:
    """Events of ``batch`` with a muon above their primary's energy (the readers'
    ``muon_energy_above_primary``, :func:`~mubundle.data.validate.above_primary_energy`)."""
    above = above_primary_energy(batch.flat_muons[:, 0], batch.conditions[:, 0], batch.counts)
    if not above.any():
        return 0
    event = np.repeat(np.arange(len(batch)), batch.counts)
    return int(np.unique(event[above]).size)


def report_unphysical(model: Sampler | ModelRef, unphysical: int, events: int) -> None:
    """One warning for a whole run whose model put muons above their primary's energy in ``unphysical`` events."""
    if unphysical:
        import warnings

        sampler = model.load()[0] if isinstance(model, ModelRef) else model
        warnings.warn(f"model '{getattr(sampler, 'name', 'model')}' gave {unphysical} of {events} events a muon above "
                      "their primary's energy (written as sampled; readers reject these rows as "
                      "muon_energy_above_primary): the model is wrong there; a calibration map fitted on few muons "
                      "extends beyond them (refit it with mubundle calibrate on more data)", RuntimeWarning, stacklevel=3)


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
    #: Monte Carlo standard error of ``rate_hz``: sqrt(sum w^2 - rate^2 / n) over the n primaries
    rate_se_hz: float | None = None
    reference_rate_hz: float | None = None
    #: events whose primary lies outside the model's domain (sampled with --allow-extrapolation)
    extrapolated_events: int = 0
    #: events with a muon above their primary's energy (a model defect; readers reject these rows)
    unphysical_events: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_rows(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> int | None:
    """Rows of primaries in ``paths`` from file metadata (for the progress bar); None if unknown."""
    total = 0
    try:
        for path in expand_paths(paths):
            total += sum(piece.n_rows for piece in list_pieces(path, primaries=True))
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
    format: str | None = None,
    seed: int = 0,
    events_per_chunk: int = EVENTS_PER_CHUNK,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    allow_extrapolation: bool = False,
    dask: str | None = None,
) -> GenerationSummary:
    """Generate one event per valid primary of the files ``primaries`` (any layout, muons
    ignored) and write them, in file order, to ``out``.

    Rows with an invalid primary are counted by reason in the summary and written to
    ``quarantine_path(out)``; unreadable files are listed in ``failed_files``.
    ``format`` None follows the suffix of ``out`` (:func:`~mubundle.data.output_paths.output_format`);
    ``out`` must not be a directory, an input or a non-mubundle file unless ``overwrite``
    (:func:`~mubundle.data.output_paths.check_output_file`).
    Primaries outside the model's domain stop the run (``ExtrapolationError``) unless
    ``allow_extrapolation``; then they are counted in ``extrapolated_events``. Files that record
    another observation site than the model's are refused before anything is written
    (:func:`~mubundle.model.domain.check_files_site`).
    ``dask``: sample the chunks on this Dask cluster (address or ``local:N``; ``model``
    must then be a :class:`ModelRef`); this process reads the primaries, checks the domain
    and writes ``out``.
    """
    format = output_format(out, format, FORMATS)
    out = check_output_file(out, inputs=[primaries] if isinstance(primaries, (str, os.PathLike)) else primaries,
                            overwrite=overwrite)
    events_per_chunk = check_integer("events_per_chunk", events_per_chunk, 1)
    seed = check_integer("seed", seed, 0, 2**64 - 1)
    started = time.perf_counter()
    require_model_ref(model, dask)
    sampler = model.load()[0] if isinstance(model, ModelRef) else model
    # depths recorded at another site are in another medium (files of primaries only record none)
    check_files_site(getattr(sampler, "domain", None), getattr(sampler, "name", "model"), primaries, "primaries",
                     primaries=True)
    report = PrimaryReadReport()
    file_metadata = default_metadata("mubundle generate", config=metadata or {}, **site_fields(sampler))
    bar = _progress(count_rows(primaries), "generate", progress)
    extrapolated = unphysical = 0
    # the executor first: an unreachable scheduler fails before an output file is begun
    lost_hint = f"{out} was not written: start the cluster again and run the same command again"
    with open_executor(dask, lost_hint=lost_hint) as executor, QuarantineWriter(quarantine_path(out)) as quarantine, \
            EventFileWriter(out, format, file_metadata) as writer, bar:

        def accepted_pieces() -> Iterator[np.ndarray]:
            for piece in iter_primaries(primaries, report):
                quarantine.write(piece.rejected)
                bar.update(len(piece.rejected))
                yield piece.conditions

        def jobs() -> Iterator[tuple]:
            nonlocal extrapolated
            for index, conditions in enumerate(rechunk(accepted_pieces(), events_per_chunk)):
                extrapolated += check_domain(model, conditions, allow_extrapolation)
                yield model, conditions, chunk_seed(seed, index), events_per_chunk, None

        for batch in executor.map(sample_chunk_job, jobs(), ordered=True, name="generate-chunk"):
            writer.write(batch)
            unphysical += unphysical_events(batch)
            bar.update(len(batch))
    quarantined = quarantine.path if quarantine.rows_written else None
    report_extrapolation(model, extrapolated, writer.events_written)
    report_unphysical(model, unphysical, writer.events_written)
    return GenerationSummary(
        out=str(out), format=format, events=writer.events_written, muons=writer.muons_written,
        seconds=time.perf_counter() - started, rejected=dict(report.rejected), failed_files=report.failed_files,
        quarantine=None if quarantined is None else str(quarantined), extrapolated_events=extrapolated,
        unphysical_events=unphysical,
    )


def slant_depths(depths_km: np.ndarray, zenith: np.ndarray, depth_kind: str, site: str = DEFAULT_SITE) -> np.ndarray:
    """(n, d) slant depths [km] of each primary at each requested depth.

    ``depth_kind="slant"``: the depths are slant depths already (the event schema);
    ``"vertical"``: vertical depths below the surface of ``site`` (a name of
    :data:`mubundle.sim.site.SITES`), converted through its spherical overburden
    (Muonitron's formula, ``Site.slant_km``) exactly as ``mubundle simulate`` does, so a
    vertical depth means the same thing to the simulator, the model and the generator
    (d / cos(zenith) would be 0.1 % long at 70 deg, 2 % at 85 deg and 37 % at 89 deg for 2 km of ice).
    """
    depths_km = np.asarray(depths_km, dtype=np.float64)
    if depth_kind == "slant":
        return np.broadcast_to(depths_km, (len(zenith), len(depths_km))).copy()
    if depth_kind == "vertical":
        return get_site(site).slant_km(depths_km[None, :], np.cos(np.asarray(zenith, dtype=np.float64))[:, None])
    raise ValueError(f"depth kind must be 'slant' or 'vertical', got {depth_kind!r}")


def model_site(model: "Sampler | ModelRef") -> str:
    """The site (:data:`mubundle.sim.site.SITES` name) whose overburden converts vertical depths
    for ``model``: the site recorded in its domain when it is one of the simulator's sites,
    otherwise the default (South Pole ice; older models record a free-text South Pole site)."""
    from mubundle.model.domain import recorded_site

    sampler = model.load()[0] if isinstance(model, ModelRef) else model
    return recorded_site(getattr(sampler, "domain", None)) or DEFAULT_SITE


def site_fields(model: "Sampler | ModelRef") -> dict[str, str]:
    """Top-level metadata of ``model``'s recorded site (:meth:`~mubundle.sim.site.Site.metadata`,
    as ``mubundle simulate`` writes it: ``site``, ``medium``, ``depth_unit``), so that
    :func:`mubundle.data.sites.site_of` reads the output as of that site; {} when the model
    records no site of the simulator (then the file counts as the legacy site, as before)."""
    from mubundle.model.domain import recorded_site

    sampler = model.load()[0] if isinstance(model, ModelRef) else model
    name = recorded_site(getattr(sampler, "domain", None))
    if name is None:
        return {}
    return get_site(name).metadata()


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

    def check(self) -> None:
        """Raise :class:`~mubundle.errors.InvalidValueError` / ``InvalidTypeError`` naming the first
        invalid field (the bounds of the CLI flags, :mod:`mubundle.argtypes`)."""
        if self.flux_model not in FLUX_MODELS:
            raise InvalidValueError(f"flux_model must be one of {', '.join(sorted(FLUX_MODELS))}, got {self.flux_model!r}")
        check_integer("events", self.events, 1)
        if len(self.energy_range) != 2 or len(self.zenith_range) != 2:
            raise InvalidValueError(f"energy_range and zenith_range are (LO, HI) pairs, got {self.energy_range}, "
                                    f"{self.zenith_range}")
        low, high = (check_finite_number(f"energy_range[{i}]", e, 0.0, MAX_PRIMARY_ENERGY_GEV, min_inclusive=False,
                                         unit="GeV") for i, e in enumerate(self.energy_range))
        zlow, zhigh = (check_finite_number(f"zenith_range[{i}]", z, 0.0, np.pi / 2, unit="rad")
                       for i, z in enumerate(self.zenith_range))
        for name, (lo, hi), unit in (("energy_range", (low, high), "GeV"), ("zenith_range", (zlow, zhigh), "rad")):
            if not lo < hi:  # flux weights are per GeV and per sr: a range of zero width has none
                raise InvalidValueError(f"{name} (--{name.replace('_', '-')}) must have LO < HI, got {lo:g} {hi:g} {unit}")
        if not self.depths_km:
            raise InvalidValueError("depths_km must hold at least one depth [km]")
        for i, depth in enumerate(self.depths_km):
            check_finite_number(f"depths_km[{i}]", depth, 0.0, MAX_DEPTH_KM, unit="km")
        if self.depth_kind not in ("slant", "vertical"):
            raise InvalidValueError(f"depth_kind must be 'slant' or 'vertical', got {self.depth_kind!r}")
        check_finite_number("area_m2", self.area_m2, 0.0, min_inclusive=False, unit="m^2")
        check_finite_number("generation_gamma", self.generation_gamma, *SPECTRAL_INDEX_RANGE)


def generate_from_flux(
    model: Sampler | ModelRef,
    settings: FluxSettings,
    out: str | os.PathLike,
    format: str | None = None,
    seed: int = 0,
    events_per_chunk: int = EVENTS_PER_CHUNK,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    allow_extrapolation: bool = False,
    dask: str | None = None,
) -> GenerationSummary:
    """Sample ``settings.events`` primaries from the generation spectrum, weight them to the
    crflux model, and write one event per (primary, depth) with a ``weight`` column [Hz].

    Events are ordered primary by primary, each primary's depths in the given order. Each
    depth's events carry the primary's weight, so the weights of the events at ONE depth
    sum to the rate through the disc (the sum over all events is ``len(depths)`` times it).
    ``settings`` are checked first (:meth:`FluxSettings.check`); ``format``, ``out`` and
    ``overwrite`` as in :func:`generate_from_primaries`.
    Primaries outside the model's domain stop the run unless ``allow_extrapolation``
    (then counted in ``extrapolated_events``).
    ``dask``: as for :func:`generate_from_primaries` (primaries are drawn and checked here,
    events sampled there).
    """
    format = output_format(out, format, FORMATS)
    out = check_output_file(out, overwrite=overwrite)
    events_per_chunk = check_integer("events_per_chunk", events_per_chunk, 1)
    seed = check_integer("seed", seed, 0, 2**64 - 1)
    settings.check()
    started = time.perf_counter()
    require_model_ref(model, dask)
    flux = GroupFlux(make_flux_model(settings.flux_model))
    n_depths = len(settings.depths_km)
    primaries_per_chunk = max(1, events_per_chunk // n_depths)
    config = dict(asdict(settings), **(metadata or {}))
    config["mass_groups"] = {name: mass for name, mass, _, _ in MASS_GROUPS}
    config["flux_model_name"] = flux.name
    site = model_site(model) if settings.depth_kind == "vertical" else DEFAULT_SITE
    if settings.depth_kind == "vertical":
        config["vertical_depth_site"] = site  # whose spherical overburden converted --depths
    file_metadata = default_metadata("mubundle generate --flux", config=config, **site_fields(model))
    rate = rate_squares = 0.0
    extrapolated = unphysical = 0

    def jobs() -> Iterator[tuple]:
        nonlocal rate, rate_squares, extrapolated
        for index, first in enumerate(range(0, settings.events, primaries_per_chunk)):
            n_chunk = min(primaries_per_chunk, settings.events - first)
            # the primaries' stream is kept apart from the model's stream chunk_seed(seed, index)
            primaries_seed = np.random.SeedSequence([int(seed), index, 1])
            primaries = sample_flux_primaries(
                flux, n_chunk, settings.energy_range, settings.zenith_range, settings.area_m2,
                seed=primaries_seed, generation_gamma=settings.generation_gamma, normalisation_events=settings.events,
            )
            rate += float(primaries.weight.sum())
            rate_squares += float(np.square(primaries.weight).sum())
            depths = slant_depths(np.asarray(settings.depths_km), primaries.zenith, settings.depth_kind, site)
            conditions = np.stack(
                [
                    np.repeat(primaries.energy, n_depths),
                    np.repeat(primaries.zenith, n_depths),
                    np.repeat(primaries.mass, n_depths),
                    depths.reshape(-1),
                ],
                axis=1,
            )
            extrapolated += check_domain(model, conditions, allow_extrapolation)
            yield model, conditions, chunk_seed(seed, index), events_per_chunk, np.repeat(primaries.weight, n_depths)

    # the executor first: an unreachable scheduler fails before an output file is begun
    lost_hint = f"{out} was not written: start the cluster again and run the same command again"
    with open_executor(dask, lost_hint=lost_hint) as executor, EventFileWriter(out, format, file_metadata) as writer, \
            _progress(settings.events * n_depths, "generate", progress) as bar:
        for batch in executor.map(sample_chunk_job, jobs(), ordered=True, name="generate-chunk"):
            writer.write(batch)
            unphysical += unphysical_events(batch)
            bar.update(len(batch))
    reference = integrated_rate(flux, settings.energy_range, settings.zenith_range, settings.area_m2)
    report_extrapolation(model, extrapolated, writer.events_written)
    report_unphysical(model, unphysical, writer.events_written)
    return GenerationSummary(
        out=str(out), format=format, events=writer.events_written, muons=writer.muons_written,
        seconds=time.perf_counter() - started, rate_hz=rate,
        rate_se_hz=math.sqrt(max(rate_squares - rate**2 / settings.events, 0.0)), reference_rate_hz=reference,
        extrapolated_events=extrapolated, unphysical_events=unphysical,
    )
