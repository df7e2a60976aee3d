"""``mubundle evaluate``: generate with the reference's primaries, compare, write the report.

Output directory: ``metrics.json`` (every metric ``{"model", "floor", "ratio"}``, overall
and per condition bin; ``"tails"``, the rates of rare classes with Poisson intervals and the
per-muon log W1 (:mod:`mubundle.evaluate.tails`); with a model also ``"calibration"``, the
multiplicity PIT check),
PNG plots, and ``report.html`` (see :mod:`mubundle.evaluate.html`); rejected reference rows
go to ``_quarantine/reference.parquet`` (:data:`QUARANTINE_NAME`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from mubundle import __version__
from mubundle.data.batch import RaggedBatch
from mubundle.errors import InvalidValueError, OutputRefusedError, check_integer
from mubundle.data.remote import redact_paths
from mubundle.data.dataset import QUARANTINE_FOLDER
from mubundle.data.validate import counts_text
from mubundle.evaluate.binning import SLANT, VARIABLES, DepthBinning, bins_for, describe_bins
from mubundle.evaluate.features import summary_quantities
from mubundle.evaluate.metrics import METRICS, compare, is_paired
from mubundle.evaluate.tails import tail_report
from mubundle.model.shipped import DEFAULT_MODEL

if TYPE_CHECKING:
    from mubundle.data.sources import LoadResult

#: Quality targets of the project (reported as pass/fail, never enforced).
TARGET_MAX_RATIO = 1.5
TARGET_MAX_AUC = 0.55

#: Rejected reference rows, inside the output directory. ``_quarantine`` as ``mubundle convert``'s:
#: readers skip entries starting with ``_``, so a report directory inside a reference directory
#: never feeds its rejected rows back in as reference data.
QUARANTINE_NAME = Path(QUARANTINE_FOLDER) / "reference.parquet"
#: Unreadable files named in the error when no reference event is left (all are on stderr).
FAILED_FILES_IN_ERROR = 3


def rejected_rows_line(rejected: dict[str, int], quarantine: Path | None) -> str:
    """``"4 rows rejected (zenith_out_of_range: 4); rejected rows in OUT/_quarantine/reference.parquet"``."""
    reasons = counts_text(rejected)
    where = f"; rejected rows in {quarantine}" if quarantine is not None else ""
    return f"{sum(rejected.values())} rows rejected ({reasons}){where}"


def reference_problem_lines(loaded: LoadResult, quarantine: Path | None) -> list[str]:
    """One line per unreadable reference file (path and error), one for the rejected rows by reason."""
    lines = [f"could not read reference file {failed['path']}: {failed['error']}" for failed in loaded.failed_files]
    if loaded.rejected:
        lines.append(f"reference: {rejected_rows_line(loaded.rejected, quarantine)}")
    return lines


def no_reference_events_message(reference_paths: Any, loaded: LoadResult, quarantine: Path | None) -> str:
    """Why no reference event is left: the rejected rows by reason and the unreadable files."""
    causes = []
    if loaded.rejected:
        causes.append(rejected_rows_line(loaded.rejected, quarantine))
    failed = loaded.failed_files
    if failed:
        named = "; ".join(f"{f['path']}: {f['error']}" for f in failed[:FAILED_FILES_IN_ERROR])
        more = f"; {len(failed) - FAILED_FILES_IN_ERROR} more listed above" if len(failed) > FAILED_FILES_IN_ERROR else ""
        causes.append(f"{len(failed)} file(s) could not be read ({named}{more})")
    why = "; ".join(causes) or "the files hold no events"
    return f"no reference events could be read from {', '.join(redact_paths(reference_paths))}: {why}"


def quarantine_reference(loaded: LoadResult, out_dir: str | os.PathLike) -> Path | None:
    """Write the rejected reference rows to ``out_dir/QUARANTINE_NAME`` (file, row, reason, raw values)
    and print the reference's problems to stderr. Returns the quarantine path, or None when no row
    was rejected (an earlier run's quarantine file there is then removed)."""
    from mubundle.data.validate import write_quarantine

    quarantine = write_quarantine(loaded.rejected_rows, Path(out_dir) / QUARANTINE_NAME)
    for line in reference_problem_lines(loaded, quarantine):
        print(line, file=sys.stderr)
    return quarantine


def summarise(overall: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Worst ratio, metrics above target, AUC and whether the issue-5 targets are met."""
    distance_ratios = {
        name: entry["ratio"] for name, entry in overall.items() if name != "classifier.auc" and entry["ratio"] is not None
    }
    above = sorted(name for name, ratio in distance_ratios.items() if ratio > TARGET_MAX_RATIO)
    unavailable = sorted(name for name, entry in overall.items() if entry["ratio"] is None)
    auc = overall.get("classifier.auc", {}).get("model")
    return {
        "max_ratio": max(distance_ratios.values()) if distance_ratios else None,
        "max_ratio_metric": max(distance_ratios, key=distance_ratios.get) if distance_ratios else None,
        "metrics_above_target": above,
        "metrics_unavailable": unavailable,
        "classifier_auc": auc,
        "target_max_ratio": TARGET_MAX_RATIO,
        "target_max_auc": TARGET_MAX_AUC,
        "targets_met": bool(distance_ratios) and not above and auc is not None and auc <= TARGET_MAX_AUC,
    }


def quantity_errors(batch: RaggedBatch) -> dict[str, float | None]:
    """Standard errors of the means among the summary quantities (``p_zero``, ``mean_multiplicity``,
    ``mean_log10_muon_energy``, ``mean_bundle_energy_gev``, ``mean_leading_fraction``): sample
    standard deviation / sqrt(n), events (muons) taken as independent; None below two values."""
    from mubundle.evaluate.features import event_observables, muon_observables

    events, muons = event_observables(batch), muon_observables(batch)
    has_muons = events.multiplicity > 0

    def sem(values: np.ndarray) -> float | None:
        values = np.asarray(values, dtype=np.float64)
        return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None

    return {
        "p_zero": sem((events.multiplicity == 0).astype(np.float64)),
        "mean_multiplicity": sem(events.multiplicity),
        "mean_log10_muon_energy": sem(muons.log10_energy),
        "mean_bundle_energy_gev": sem(events.total_energy[has_muons]),
        "mean_leading_fraction": sem(events.leading_fraction[has_muons]),
    }


#: Simulation settings shown in the report's header when the reference's files record them
#: (``config`` of native shards' metadata): key -> label.
REFERENCE_SETTINGS = {
    "producer": "written by", "mubundle_version": "mubundle version", "interaction_model": "interaction model",
    "site": "site", "medium": "medium", "primary": "primaries", "energy_range": "primary energy range [GeV]",
    "spectral_index": "spectral index", "zenith_range_deg": "zenith range [deg]", "depths_km": "vertical depths [km]",
    "min_energy": "muon energy threshold [GeV]",
}


def reference_settings(layouts: dict[str, str]) -> dict[str, Any]:
    """The simulation settings recorded in the metadata of the reference's native shards
    (:data:`REFERENCE_SETTINGS`; top-level metadata or its ``config``): key -> the value, or
    ``"mixed: a; b"`` when files differ. Files of other layouts and unreadable metadata are skipped."""
    from mubundle.data import native

    values: dict[str, list[str]] = {}
    for path, layout in layouts.items():
        if layout != "native":
            continue
        try:
            metadata = native.read_metadata(path)
        except (OSError, ValueError):
            continue
        config = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
        for key in REFERENCE_SETTINGS:
            value = config.get(key, metadata.get(key))
            if value is None or value == "" or value == []:
                continue
            text = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if isinstance(value, list) \
                else (f"{value:g}" if isinstance(value, float) else str(value))
            if text not in values.setdefault(key, []):
                values[key].append(text)
    return {key: found[0] if len(found) == 1 else "mixed: " + "; ".join(found[:4])
            for key in REFERENCE_SETTINGS if (found := values.get(key))}


def seed_spread(overall_by_seed: dict[int, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Every metric's ratio for each generation seed, their mean and maximum.

    ``overall_by_seed``: seed -> :func:`~mubundle.evaluate.metrics.compare` result of a sample
    generated with that seed against the same reference (same half splits). The reference,
    and so the floor, is the same for every seed; the spread is the generated sample's
    noise. ``max_mean_ratio``: the largest of the per-metric mean ratios (distances only).
    """
    seeds = list(overall_by_seed)
    names = list(overall_by_seed[seeds[0]])
    ratios = {name: [overall_by_seed[s][name]["ratio"] for s in seeds] for name in names}
    available = {name: values for name, values in ratios.items() if all(v is not None for v in values)}
    mean_ratio = {name: float(np.mean(values)) for name, values in available.items()}
    max_ratio = {name: float(np.max(values)) for name, values in available.items()}
    distance_means = {name: value for name, value in mean_ratio.items() if name != "classifier.auc"}
    auc = [overall_by_seed[s].get("classifier.auc", {}).get("model") for s in seeds]
    worst = max(distance_means, key=distance_means.get) if distance_means else None
    return {
        "seeds": seeds,
        "ratios": ratios,
        "mean_ratio": mean_ratio,
        "max_ratio": max_ratio,
        "classifier_auc": auc,
        "max_mean_ratio": distance_means[worst] if worst else None,
        "max_mean_ratio_metric": worst,
    }


def compare_in_bins(
    reference: RaggedBatch, candidate: RaggedBatch, seed: int = 0, n_splits: int = 4, depth: DepthBinning = SLANT
) -> dict[str, list[dict[str, Any]]]:
    """:func:`~mubundle.evaluate.metrics.compare` repeated in bins of E0, A, zenith and depth.

    Bins come from the reference conditions (depth: slant, or the recorded vertical depths
    with a vertical ``depth`` binning, :mod:`mubundle.evaluate.reference_depths`); a paired candidate is cut with the same event
    indices, an unpaired one by its own conditions. Bins too small for a metric report it
    n/a with the reason.
    """
    paired = is_paired(reference, candidate)
    result: dict[str, list[dict[str, Any]]] = {}
    for variable in VARIABLES:
        entries = []
        for condition_bin in bins_for(variable, reference.conditions, depth):
            reference_index = np.flatnonzero(condition_bin.mask(reference.conditions))
            candidate_index = reference_index if paired else np.flatnonzero(condition_bin.mask(candidate.conditions))
            metrics = compare(reference.take(reference_index), candidate.take(candidate_index), seed=seed, n_splits=n_splits)
            entries.append(
                dict(condition_bin.to_dict(), n_reference=len(reference_index), n_candidate=len(candidate_index), metrics=metrics)
            )
        result[variable] = entries
    return result


def evaluate_samples(
    reference: RaggedBatch, candidate: RaggedBatch, out_dir: str | os.PathLike, seed: int = 0,
    info: dict[str, Any] | None = None, plots: bool = True, calibration: dict[str, Any] | None = None,
    other_candidates: dict[int, RaggedBatch] | None = None, depth: DepthBinning = SLANT,
) -> dict[str, Any]:
    """Compare two samples and write ``metrics.json``, the PNGs and ``report.html`` to ``out_dir``.

    Usable without a model (e.g. simulation vs simulation). ``calibration``: the model's
    multiplicity calibration (:func:`~mubundle.evaluate.calibration.multiplicity_calibration`),
    stored under ``metrics["calibration"]`` with its plot; its KS ratio is reported in the
    summary as information, not as a target. ``other_candidates``: generation seed -> sample
    generated with that seed (``candidate`` being the one of ``seed``); their overall ratios
    go to ``metrics["seed_spread"]`` (:func:`seed_spread`). ``depth``: how depth is binned
    (slant by default; :func:`mubundle.evaluate.reference_depths.depth_binning` finds the
    reference's vertical depths); ``metrics["binning"]`` names every binned coordinate with its
    unit and bin edges (:func:`~mubundle.evaluate.binning.describe_bins`). Returns the metrics dict.
    """
    from mubundle.evaluate.html import write_report
    from mubundle.evaluate.plots import Comparison, bin_ratio_plot, calibration_plot, distribution_plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    overall = compare(reference, candidate, seed=seed, classifier=True)
    binned = compare_in_bins(reference, candidate, seed=seed, depth=depth)
    figures = []
    comparison = Comparison.from_info(info, len(reference))  # the headline of every figure
    if plots:
        figures = distribution_plots(reference, candidate, out_dir, comparison)
        for variable, entries in binned.items():
            figure = bin_ratio_plot(variable, entries, out_dir, TARGET_MAX_RATIO, comparison)
            if figure is not None:
                figures.append(figure)
    tails = tail_report(reference, candidate, seed=seed)
    summary = summarise(overall)
    summary["tails_flagged"] = tails["flagged"]
    if info and "extrapolated_events" in info:
        summary["extrapolated_events"] = info["extrapolated_events"]
    spread = None
    if other_candidates:
        by_seed = {seed: overall}
        by_seed.update({s: compare(reference, c, seed=seed, classifier=True) for s, c in other_candidates.items()})
        spread = seed_spread(by_seed)
        summary["max_mean_ratio_over_seeds"] = spread["max_mean_ratio"]
        summary["max_mean_ratio_metric"] = spread["max_mean_ratio_metric"]
    if calibration is not None:
        summary["calibration_ks_ratio"] = calibration["overall"]["ks"]["ratio"]
        figure = calibration_plot(calibration, out_dir, comparison) if plots else None
        if figure is not None:
            figures.append(figure)
            calibration = dict(calibration, figure=figure.file)
    metrics = {
        "info": dict({"mubundle_version": __version__, **(info or {})}, n_reference=len(reference), n_candidate=len(candidate),
                     reference_muons=reference.n_muons, candidate_muons=candidate.n_muons,
                     paired=is_paired(reference, candidate), seed=seed,
                     seconds=round(time.perf_counter() - started, 2)),
        "summary": summary,
        "quantities": {"reference": summary_quantities(reference), "model": summary_quantities(candidate),
                       "reference_standard_error": quantity_errors(reference),
                       "model_standard_error": quantity_errors(candidate)},
        "overall": overall,
        "binning": describe_bins(reference.conditions, depth),
        "bins": binned,
        "tails": tails,
        "definitions": {name: vars(info_) for name, info_ in METRICS.items()},
        "figures": [vars(figure) for figure in figures],
    }
    if spread is not None:
        metrics["seed_spread"] = spread
    if calibration is not None:
        metrics["calibration"] = calibration
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False))
    write_report(metrics, out_dir / "report.html")
    return metrics


def evaluate_model(
    model_path: str | os.PathLike | None,
    reference_paths: Sequence[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int = 0,
    max_events: int | None = None,
    device: str = "cpu",
    seeds: int = 1,
    allow_extrapolation: bool = False,
) -> dict[str, Any]:
    """Read the reference events (any layout), generate one event per reference primary with
    the model at ``model_path`` (None = shipped default), compare, check the calibration of
    the model's P(N | conditions) on the reference multiplicities (randomised PIT, see
    :mod:`mubundle.evaluate.calibration`) and write the report.

    ``seeds`` > 1 also generates with seeds ``seed + 1 .. seed + seeds - 1`` and reports every
    metric's ratio per seed and its mean (``metrics["seed_spread"]``): one generated sample
    moves a ratio by tens of percent, so model choices should rest on the mean.

    Rejected reference rows and unreadable files are printed to stderr and counted in
    ``metrics["info"]`` and the report; the rejected rows are written to
    ``out_dir/_quarantine/reference.parquet`` (``info["reference_quarantine"]``, None if none).
    Raises ``ValueError`` naming the rejection reasons and unreadable files when no reference
    event could be read, and
    ``ValueError``/``TypeError`` naming the argument for a seed that is not an integer >= 0,
    ``seeds`` < 1 or ``max_events`` < 1. Reference primaries
    outside the model's domain (:mod:`mubundle.model.domain`) raise ``ExtrapolationError``
    unless ``allow_extrapolation``; then they are evaluated, one warning is given and their
    number is ``metrics["info"]["extrapolated_events"]`` (and in the summary). A reference of
    another observation site than the model's is refused (``ValueError``, before ``out_dir`` is
    made: :func:`~mubundle.model.domain.check_files_site`).
    """
    from mubundle.data.lock import directory_lock
    from mubundle.data.sources import read_events
    from mubundle.evaluate.calibration import multiplicity_calibration
    from mubundle.evaluate.reference_depths import depth_binning
    from mubundle.evaluate.tails import format_tail_table
    from mubundle.generate.api import load_model
    from mubundle.model.domain import check_files_site, check_primaries, describe, quiet_extrapolation

    seed = check_integer("seed", seed, 0, 2**64 - 1)
    seeds = check_integer("seeds", seeds, 1)
    if max_events is not None:
        max_events = check_integer("max_events", max_events, 1)
    if not reference_paths:
        raise InvalidValueError("reference_paths must name at least one file, glob or directory")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise OutputRefusedError(f"--out {out_dir} is a file; evaluate writes a directory (metrics.json, plots, report.html)")
    model = load_model(model_path, device=device)
    # a reference of another site is muons of another medium: nothing about this model (before --out is made)
    check_files_site(model.domain, model.name, reference_paths, "reference data")
    with directory_lock(out_dir, "mubundle evaluate"):  # one live evaluation per output directory
        loaded = read_events(reference_paths, max_events=max_events)
        quarantine = quarantine_reference(loaded, out_dir)
        reference = loaded.batch
        if len(reference) == 0:
            raise ValueError(no_reference_events_message(reference_paths, loaded, quarantine))
        reference = RaggedBatch(reference.conditions, reference.counts, reference.flat_muons)  # weights are not compared
        c = reference.conditions
        domain_check = check_primaries(model.domain, c, model.name, allow_extrapolation)  # warns once if allowed
        started = time.perf_counter()
        with quiet_extrapolation():
            candidate = model.sample(c[:, 0], c[:, 1], c[:, 2], c[:, 3], seed=seed, allow_extrapolation=allow_extrapolation)
            generation_seconds = time.perf_counter() - started
            other_candidates = {
                s: model.sample(c[:, 0], c[:, 1], c[:, 2], c[:, 3], seed=s, allow_extrapolation=allow_extrapolation)
                for s in range(seed + 1, seed + seeds)
            }
        info = {
            "model": str(model_path) if model_path is not None else DEFAULT_MODEL,
            "mubundle_version": __version__,
            "reference": redact_paths(reference_paths),  # URL credentials never reach the report
            "reference_rejected_rows": loaded.rejected,
            "reference_failed_files": loaded.failed_files,
            "reference_quarantine": None if quarantine is None else str(quarantine),
            "generation_seconds": round(generation_seconds, 2),
            "model_domain": describe(model.domain),
            # the tail maps of model.json "calibration" (docs/model.md); [] for a model without
            "model_tail_maps": [] if model.calibration is None else model.calibration.map_names,
            "extrapolated_events": domain_check.n_outside,
            "reference_settings": reference_settings(loaded.layouts),  # what the files' metadata records
        }
        depth = depth_binning(loaded.layouts, reference.conditions, getattr(model.domain, "overburden_radius_m", None))
        print(f"depth bins: {depth.reason}")
        started = time.perf_counter()
        calibration = multiplicity_calibration(model, reference, seed=seed, depth=depth)
        info["calibration_seconds"] = round(time.perf_counter() - started, 2)
        if calibration["n_nonfinite"]:
            print(f"warning: {calibration['warning']}", file=sys.stderr)
        metrics = evaluate_samples(
            reference, candidate, out_dir, seed=seed, info=info, calibration=calibration, other_candidates=other_candidates,
            depth=depth,
        )
        print(format_tail_table(metrics["tails"]))
        if info["extrapolated_events"]:
            print(f"extrapolated events (outside the model's domain, --allow-extrapolation): {info['extrapolated_events']}")
        print(f"evaluation report: {Path(out_dir) / 'report.html'} (metrics: {Path(out_dir) / 'metrics.json'})")
        return metrics
