"""Flux-weighted muon intensity per vertical depth: the simulator's (a flux-weighted dataset)
against a model's (``mubundle generate --flux``), over the same near-vertical zenith band.

The fidelity target of the shipped models (docs/pretrained.md): the model's intensity within
+-5 % of the simulator's at each depth.

Simulator: the events of a ``mubundle simulate --flux MODEL`` dataset (its ``weight`` column:
Hz through a disc of ``area_m2`` perpendicular to the axis, the weights of all events at one
depth summing to the rate over the dataset's zenith band; docs/generation.md,
src/mubundle/sim/fluxmode.py) whose zenith lies in the band; each event's vertical depth from
its slant depth and zenith through the site's curved overburden (as the simulator made it).
Intensity I = sum w N / (A Omega_band) with its statistical error: ``muon_intensity`` of
benchmarks/validate_simulator.py.

Model: ``mubundle generate --model M --flux F --events N --zenith-range 0 BAND --depths D...
--depth-kind vertical --energy-range (the dataset's) --area 1`` in a subprocess (the command is
in the JSON), the same intensity of its events per depth. Ratio = model / simulator with the
errors of both combined.

Usage: python benchmarks/model_flux_intensity.py --data DATASET|SHARDS... [--model icecube] [--band-deg 15]
       [--events 100000] [--generation-gamma 2.0] [--seed 0] [--allow-extrapolation] [--out FILE.json]
Prints one JSON object (and writes it to --out).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_simulator import muon_intensity  # noqa: E402  (the one definition of the intensity)

from mubundle.benchmark_cli import (  # noqa: E402
    finite_float, json_safe, make_parser, output_file, positive_int, print_json, require_events, run, seed_int,
)
from mubundle.data.native import read_metadata  # noqa: E402
from mubundle.errors import InvalidValueError  # noqa: E402
from mubundle.data.sources import expand_paths, read_events  # noqa: E402
from mubundle.model.domain import vertical_depth_km  # noqa: E402
from mubundle.sim.site import get_site  # noqa: E402

#: the fidelity target: model / simulator within +-5 % at each depth (issue of the shipped models)
TARGET = 0.05


def _metadata(path: Path) -> dict:
    """The native metadata of ``path``; a file that is none (a text file, a legacy layout) is
    refused naming it."""
    try:
        return read_metadata(path)
    except ValueError as error:  # pyarrow's ArrowInvalid and the reader's own errors
        message = str(error) if str(path) in str(error) else f"{path}: {error}"
        raise InvalidValueError(f"{message} (a flux-weighted dataset of `mubundle simulate --flux` is expected)") from error


def dataset_settings(data: list[str]) -> dict:
    """Flux, area, energy range, vertical depths, site and its overburden radius of a flux-weighted
    ``mubundle simulate`` dataset (the first shard's metadata; ValueError if it has no flux), and
    ``weight_scale``: the dataset's showers / the showers in the files given. The weights of a
    dataset of N showers sum to the rate over all N (``normalisation_events = N``), so a part of
    it (e.g. the test shards of a split) is scaled up by N / its showers (shard metadata
    ``showers``: [first, last])."""
    files = expand_paths(data)
    for path in files:  # what read_metadata cannot say in one line
        if path.is_dir():
            raise InvalidValueError(f"{path}: directory without data files")
        if not path.exists():
            raise InvalidValueError(f"{path}: no such file")
    metadata = _metadata(files[0])
    config = metadata.get("config") or {}
    if not config.get("flux"):
        raise ValueError(f"{data[0]}: not a flux-weighted dataset (no 'flux' in the metadata of {files[0]}); "
                         "make one with `mubundle simulate --flux H3a ...`")
    showers = 0
    for path in files:
        entry = _metadata(path)
        first, last = entry["showers"]
        if (entry.get("config") or {}) != config:
            raise ValueError(f"{path}: another simulation config than {files[0]}; give the shards of one dataset")
        showers += int(last) - int(first) + 1
    site = get_site(config.get("site") or "icecube")
    return {"flux": config["flux"], "area_m2": float(config.get("area_m2", 1.0)),
            "weight_scale": float(config["showers"]) / showers, "showers_read": showers,
            "showers_in_dataset": int(config["showers"]),
            "energy_range": [float(e) for e in config["energy_range"]],
            "zenith_range_deg": [float(z) for z in config["zenith_range_deg"]],
            "depths_km": [float(d) for d in config["depths_km"]], "site": site.name,
            "overburden_radius_m": site.overburden_radius_m}


def intensities(conditions: np.ndarray, counts: np.ndarray, weights: np.ndarray, depths_km: list[float],
                band_rad: float, area_m2: float, radius_m: float | None) -> list[tuple[float, float, int]]:
    """Per vertical depth: (intensity, error, events in the band) of flux-weighted events;
    conditions (B, 4) [GeV, rad, A, slant km]. An event belongs to the requested depth nearest
    its vertical depth (through the overburden of radius ``radius_m``), within 10 m."""
    vertical = vertical_depth_km(conditions.astype(np.float64), radius_m)
    requested = np.asarray(depths_km, dtype=np.float64)
    nearest = np.argmin(np.abs(vertical[:, None] - requested[None, :]), axis=1)
    matched = np.abs(vertical - requested[nearest]) < 0.01
    in_band = conditions[:, 1] <= band_rad * (1 + 1e-6)  # zeniths are stored as float32
    rows = []
    for index in range(len(requested)):
        selected = in_band & matched & (nearest == index)
        value, error = muon_intensity(weights[selected], counts[selected], area_m2, (0.0, band_rad))
        rows.append((value, error, int(selected.sum())))
    return rows


def main() -> None:
    from mubundle import __version__
    from mubundle.argtypes import SPECTRAL_INDEX_RANGE
    from mubundle.model.shipped import DEFAULT_MODEL

    parser = make_parser(__doc__)
    parser.add_argument("--data", required=True, nargs="+",
                        help="flux-weighted dataset of `mubundle simulate --flux`, or some of its shards")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model directory or shipped name")
    parser.add_argument("--band-deg", type=finite_float(0.0, 90.0, min_inclusive=False, unit="deg"), default=15.0,
                        help="zenith band 0-BAND [deg]")
    parser.add_argument("--events", type=positive_int, default=100_000, help="primaries generated by the model")
    parser.add_argument("--generation-gamma", type=finite_float(*SPECTRAL_INDEX_RANGE), default=2.0,
                        help="generation spectrum E^-G of the model's primaries (2: few 1e9 GeV bundles)")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of mubundle generate")
    parser.add_argument("--allow-extrapolation", action="store_true", help="pass --allow-extrapolation to generate")
    parser.add_argument("--out", type=output_file, default=None, help="also write the JSON to this file (default: stdout only)")
    args = parser.parse_args()

    settings = dataset_settings(args.data)
    band = math.radians(args.band_deg)
    low_deg, high_deg = settings["zenith_range_deg"]
    if low_deg > 0.0 or args.band_deg > high_deg:
        raise InvalidValueError(f"--band-deg: the band 0-{args.band_deg} deg must lie in the dataset's zenith range {settings['zenith_range_deg']}")
    depths = settings["depths_km"]

    started = time.process_time()
    reference = read_events(args.data)
    require_events(len(reference.batch), reference.failed_files, reference.rejected, args.data)  # nothing read: exit 2
    if reference.batch.weights is None:
        raise InvalidValueError(f"{' '.join(args.data)}: the events carry no weight column (simulate them with --flux)")
    ref = reference.batch
    ref_rows = intensities(ref.conditions, ref.counts, ref.weights * settings["weight_scale"], depths, band, settings["area_m2"],
                           settings["overburden_radius_m"])
    read_cpu = time.process_time() - started

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "generated.parquet"
        command = [sys.executable, "-m", "mubundle", "generate", "--model", args.model, "--flux", settings["flux"],
                   "--events", str(args.events), "--zenith-range", "0", repr(band),
                   "--energy-range", *map(repr, settings["energy_range"]), "--generation-gamma", repr(args.generation_gamma),
                   "--depths", ",".join(f"{d:g}" for d in depths), "--depth-kind", "vertical",
                   "--area", repr(settings["area_m2"]), "--seed", str(args.seed), "--no-progress", "--out", str(out)]
        if args.allow_extrapolation:
            command.append("--allow-extrapolation")
        child_started = time.time()
        run = subprocess.run(command, capture_output=True, text=True)
        child_wall = time.time() - child_started
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
            raise InvalidValueError(f"mubundle generate failed (exit {run.returncode}): {last}")
        generated_read = read_events([out])
        generated = generated_read.batch
    model_rows = intensities(generated.conditions, generated.counts, generated.weights, depths, band,
                             settings["area_m2"], settings["overburden_radius_m"])

    rows = []
    for depth, (ref_value, ref_error, ref_events), (value, error, events) in zip(depths, ref_rows, model_rows):
        ratio = value / ref_value if ref_value > 0 else None
        ratio_error = ratio * math.hypot(error / value if value > 0 else 0.0, ref_error / ref_value) if ref_value > 0 else None
        rows.append({
            "vertical_depth_km": depth, "simulator_intensity": ref_value, "simulator_stat_error": ref_error,
            "simulator_events": ref_events, "model_intensity": value, "model_stat_error": error, "model_events": events,
            "ratio": ratio, "ratio_stat_error": ratio_error,
            "within_target": ratio is not None and bool(abs(ratio - 1.0) <= TARGET),
            "simulator_resolves_target": bool(ref_value > 0 and ref_error / ref_value < TARGET / 2),
            **({} if ratio is not None else {"reason": "no simulator muon at this depth in the band: no ratio"}),
        })
    result = {
        "benchmark": "model_flux_intensity", "unit": "cm^-2 s^-1 sr^-1 (muons)", "target": f"ratio within +-{TARGET:.0%}",
        "data": args.data, "showers_read": settings["showers_read"], "showers_in_dataset": settings["showers_in_dataset"],
        "model": args.model, "model_path": args.model, "mubundle_version": __version__, "flux": settings["flux"], "site": settings["site"],
        "zenith_band_deg": [0.0, args.band_deg], "energy_range_gev": settings["energy_range"],
        "simulator_events": len(ref), "model_primaries": args.events,
        # rows the readers refused (counted by reason; e.g. a generated muon above its primary's energy)
        "simulator_rejected": dict(reference.rejected), "failed_files": list(reference.failed_files), "model_rejected": dict(generated_read.rejected), "model_generation_gamma": args.generation_gamma,
        "allow_extrapolation": args.allow_extrapolation,
        "generate_command": " ".join(command[2:]).replace(str(out), "OUT.parquet"),
        "generate_stderr_tail": run.stderr.strip().splitlines()[-3:],
        "cpu_seconds_read": read_cpu, "generate_wall_seconds": child_wall,
        "depths": rows, "all_within_target": all(r["within_target"] for r in rows),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(json_safe(result), indent=1, allow_nan=False) + "\n")
    print_json(result)


if __name__ == "__main__":
    run(main)
