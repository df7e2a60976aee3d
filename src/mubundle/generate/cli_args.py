"""Arguments of ``mubundle generate`` and their conversion into a generation call."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from mubundle.argtypes import MAX_PRIMARY_ENERGY_GEV, SPECTRAL_INDEX_RANGE, finite_float, positive_int, seed_int
from mubundle.data.output_paths import check_output_file, output_format
from mubundle.data.validate import counts_text
from mubundle.executors import add_dask_argument, check_executor_arguments
from mubundle.generate.api import DEFAULT_MODEL, MODEL_OPTION_HELP
from mubundle.generate.flux import FLUX_MODELS
from mubundle.generate.output import FORMATS
from mubundle.generate.run import EVENTS_PER_CHUNK, FluxSettings, GenerationSummary
from mubundle.generate.tasks import ModelRef
from mubundle.sim.config import parse_depths

_FLUX_DEFAULTS = FluxSettings()
# numeric flags are checked while parsing (bounds and their sources: mubundle.argtypes)
_ENERGY_GEV = finite_float(0.0, MAX_PRIMARY_ENERGY_GEV, min_inclusive=False, unit="GeV")
_ZENITH_RAD = finite_float(0.0, math.pi / 2, unit="rad")
_AREA_M2 = finite_float(0.0, min_inclusive=False, unit="m^2")
_SPECTRAL_INDEX = finite_float(*SPECTRAL_INDEX_RANGE)
#: options of flux mode that --primaries would ignore (refused with it)
_FLUX_ONLY_FLAGS = ("--events", "--energy-range", "--zenith-range", "--depths", "--depth-kind", "--area", "--generation-gamma")


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``generate`` options on ``parser``."""
    parser.add_argument("--model", type=Path, help=MODEL_OPTION_HELP)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--primaries", nargs="+", metavar="FILE",
                        help="event files (any layout); one event is generated per primary, muons are ignored")
    source.add_argument("--flux", choices=sorted(FLUX_MODELS), help="cosmic-ray flux model (crflux) for weighted primaries")
    parser.add_argument("--out", required=True, help="output file (.parquet or .h5; an existing file that is not a "
                        "mubundle output, or an input, is replaced only with --overwrite)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="output layout (default: from the suffix of --out: .h5/.hdf5 -> hdf5, else native parquet)")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow --out to replace an existing non-mubundle file or an input file")
    parser.add_argument("--seed", type=seed_int, default=0,
                        help="seed of the sampling (default 0: the same command gives the same events; another seed, "
                             "an independent sample)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the networks run (default cpu)")
    parser.add_argument("--events-per-chunk", type=positive_int, default=EVENTS_PER_CHUNK,
                        help=f"events sampled and written at once (bounds memory; default {EVENTS_PER_CHUNK}); part of "
                             "what fixes the result, with the model, the primaries and --seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--allow-extrapolation", action="store_true",
                        help="sample primaries outside the model's training domain (refused otherwise); "
                             "their number is reported in the summary")
    add_dask_argument(parser)
    flux = parser.add_argument_group("flux mode")
    flux.add_argument("--events", type=positive_int, help="number of primaries to sample")
    flux.add_argument("--energy-range", nargs=2, type=_ENERGY_GEV, metavar=("LO", "HI"),
                      help="primary energy range [GeV] (default: the model's domain; "
                           f"{_FLUX_DEFAULTS.energy_range[0]:g} {_FLUX_DEFAULTS.energy_range[1]:g} for models without one)")
    flux.add_argument("--zenith-range", nargs=2, type=_ZENITH_RAD, metavar=("LO", "HI"),
                      help="zenith range [rad], 0 = vertical (default: the model's domain; "
                           f"{_FLUX_DEFAULTS.zenith_range[0]:g} {_FLUX_DEFAULTS.zenith_range[1]:.4f} for models without one)")
    flux.add_argument("--depths", type=parse_depths, metavar="KM,...",
                      help="observation depths [km]; one event per primary and depth (default: the vertical "
                           "depths the model was trained at, with --depth-kind vertical; "
                           f"{','.join(f'{d:g}' for d in _FLUX_DEFAULTS.depths_km)} for models without them)")
    flux.add_argument("--depth-kind", choices=["slant", "vertical"], default=None,
                      help="--depths are slant depths along the axis, or vertical depths below the surface "
                           "(converted through the spherical overburden of the model's site, as mubundle simulate; "
                           f"default {_FLUX_DEFAULTS.depth_kind})")
    flux.add_argument("--area", type=_AREA_M2, default=None,
                      help=f"area [m^2] of the disc perpendicular to the shower axis the weights refer to "
                           f"(default {_FLUX_DEFAULTS.area_m2:g})")
    flux.add_argument("--generation-gamma", type=_SPECTRAL_INDEX, default=None,
                      help=f"generation spectrum E^-gamma (the weights correct for it; default {_FLUX_DEFAULTS.generation_gamma:g})")


def print_summary(summary: GenerationSummary, stream=None) -> None:
    """Human-readable lines (to ``stream``, default stderr) about what was written, rejected and failed."""
    stream = sys.stderr if stream is None else stream
    if summary.events:
        print(f"wrote {summary.events} events ({summary.muons} muons) to {summary.out} "
              f"[{summary.format}] in {summary.seconds:.1f} s", file=stream)
    if summary.rejected:
        reasons = counts_text(summary.rejected)
        where = f"; rows quarantined in {summary.quarantine}" if summary.quarantine else ""
        print(f"rejected {sum(summary.rejected.values())} primaries ({reasons}){where}", file=stream)
    for failed in summary.failed_files:
        print(f"could not read {failed['path']}: {failed['error']}", file=stream)
    if summary.extrapolated_events:
        print(f"extrapolated {summary.extrapolated_events} events outside the model's training domain "
              "(--allow-extrapolation)", file=stream)
    if summary.unphysical_events:
        print(f"{summary.unphysical_events} events have a muon above their primary's energy (a model defect; "
              "readers reject them)", file=stream)
    if summary.rate_hz is not None:
        print(f"summed weight (rate per depth) {summary.rate_hz:.6g} +- {summary.rate_se_hz:.2g} Hz (Monte Carlo "
              f"error); direct integral of the flux {summary.reference_rate_hz:.6g} Hz", file=stream)
    if not summary.events:
        print(f"generated no event ({sum(summary.rejected.values())} primaries rejected, {len(summary.failed_files)} "
              f"files not read, none usable): no output written to {summary.out}", file=stream)


def model_ref(model: Path | None, device: str) -> ModelRef:
    """What Dask workers load: a shipped model by name (found in each worker's installation)
    or the absolute path of a model directory (checked here; workers must see the same path)."""
    from mubundle.generate.api import resolve_model_path, shipped_models

    resolved = resolve_model_path(model)  # a missing or incomplete model fails here, before any task
    if model is None or (str(model) in shipped_models() and not Path(model).exists()):
        return ModelRef(None if model is None else str(model), device)
    return ModelRef(str(resolved.resolve()), device)


def _refuse_ranges_beyond(domain, model: Path | None, ranges: dict) -> None:
    """Refuse a flux range flag reaching outside the model's domain, naming the flag, its values and the
    bounds (``ranges``: {flag: (given (LO, HI) or None, domain (low, high), unit)}), before any primary is drawn."""
    from mubundle.model.domain import ExtrapolationError, model_name_of

    for flag, (given, (low, high), unit) in ranges.items():
        if given is not None and (given[0] < low * (1 - 1e-6) or given[1] > high * (1 + 1e-6)):
            raise ExtrapolationError(
                f"{flag} {given[0]:g} {given[1]:g} {unit} reaches outside the domain of model "
                f"'{model_name_of(model) if model else DEFAULT_MODEL}' ({low:g}-{high:g} {unit}); "
                "pass --allow-extrapolation to proceed")


def generate_from_args(args: argparse.Namespace) -> int:
    """Run ``mubundle generate``; returns the exit code (1 if no event could be generated)."""
    from mubundle.generate.api import load_model
    from mubundle.generate.run import generate_from_flux, generate_from_primaries

    if args.events_per_chunk <= 0:
        raise ValueError(f"--events-per-chunk must be positive, got {args.events_per_chunk}")
    check_executor_arguments(args.dask)
    if args.flux is not None and args.events is None:
        raise ValueError("--flux needs --events N")
    flux_only = [flag for flag in _FLUX_ONLY_FLAGS if getattr(args, flag[2:].replace("-", "_")) is not None]
    if args.primaries is not None and flux_only:
        raise ValueError(f"{', '.join(flux_only)}: flux-mode options; with --primaries one event is generated per "
                         "primary, at its own depth")
    depth_kind = args.depth_kind or _FLUX_DEFAULTS.depth_kind
    output_format(args.out, args.format, FORMATS)  # refused outputs before the model is loaded
    check_output_file(args.out, inputs=args.primaries or (), overwrite=args.overwrite)
    model = load_model(args.model, device=args.device) if args.dask is None else model_ref(args.model, args.device)
    metadata = {"model": str(args.model) if args.model else DEFAULT_MODEL, "seed": args.seed,
                "events_per_chunk": args.events_per_chunk}
    if args.primaries is not None:
        metadata["primaries"] = [str(path) for path in args.primaries]
    domain = (model if args.dask is None else model.load()[0]).domain  # a ModelRef loads once here too
    if domain is not None:  # what the model was trained on, next to the events it made
        metadata.update(model_domain=domain.to_dict(), allow_extrapolation=args.allow_extrapolation)
    common = dict(format=args.format, seed=args.seed, events_per_chunk=args.events_per_chunk,
                  metadata=metadata, progress=not args.no_progress, overwrite=args.overwrite,
                  allow_extrapolation=args.allow_extrapolation, dask=args.dask)
    if args.flux is not None:
        # without --energy-range / --zenith-range: the primaries the model knows (its domain)
        energy_range = args.energy_range or (domain.energy_gev if domain is not None else _FLUX_DEFAULTS.energy_range)
        zenith_range = args.zenith_range or (domain.zenith_rad if domain is not None else _FLUX_DEFAULTS.zenith_range)
        if domain is not None and not args.allow_extrapolation:
            _refuse_ranges_beyond(domain, args.model, {"--energy-range": (args.energy_range, domain.energy_gev, "GeV"),
                                                      "--zenith-range": (args.zenith_range, domain.zenith_rad, "rad")})
        # without --depths: the vertical depths the model was trained at (e.g. 2.9-3.4 km of sea water)
        trained_depths = domain.vertical_depths_km if domain is not None and depth_kind == "vertical" else None
        depths = args.depths or trained_depths or _FLUX_DEFAULTS.depths_km
        settings = FluxSettings(
            flux_model=args.flux, events=args.events, energy_range=tuple(energy_range),
            zenith_range=tuple(zenith_range), depths_km=tuple(depths), depth_kind=depth_kind,
            area_m2=_FLUX_DEFAULTS.area_m2 if args.area is None else args.area,
            generation_gamma=_FLUX_DEFAULTS.generation_gamma if args.generation_gamma is None else args.generation_gamma,
        )
        summary = generate_from_flux(model, settings, args.out, **common)
    else:
        summary = generate_from_primaries(model, args.primaries, args.out, **common)
    if not summary.events:  # an empty file would pass for a result
        Path(summary.out).unlink(missing_ok=True)
    print_summary(summary)
    print(json.dumps(summary.to_dict()))
    return 0 if summary.events > 0 else 1
