"""How often a perfect generator meets the fidelity targets: the simulator against itself.

``mubundle evaluate``'s targets (docs/evaluation.md) are statements about two finite samples:
every distance ratio <= 1.5, the per-muon W1 of log10 E and of log10 r <= 1.5 x floor, the
classifier AUC <= 0.55 and no flagged tail class (overall and per E0 bin: within +-20 % with
>= 100 reference counts, else 1 inside the 2-sigma Poisson interval). On a small reference they
fail by chance even for a generator that *is* the simulator. This script measures how often.

The showers of ``--data`` (one or more datasets of ``mubundle simulate``, sampled primaries,
one site and physics) are simulated a second time with another seed (``--twin-seed``): the
same primaries and depths, new air showers and new losses underground: the **twin**, a perfect
generator's output, paired with the data event for event as ``evaluate`` pairs a model's
events with its reference. The showers are then cut into disjoint sets of ``--showers`` whole
showers each, in a random order (``--seed``), and every set is compared with its twin by
evaluate's own functions (reference = the set, candidate = its twin): each set is an
independent trial. Per ``--showers`` it prints what each target gave per set and, over the
sets, the fraction that met each target and all of them with the 68.3 % Clopper-Pearson
interval, which metrics and tail classes failed how often, and the spread of the rates of the
tail classes between the sets (measured and as if the counts were Poisson). As a check of the
errors by shower that evaluate reports beside its Poisson intervals, it also counts the tail
classes (overall and per E0 bin) whose ratio lies more than 2 errors by shower from 1: about
4.6 % of them if those errors are right.

With ``--model M`` the model is sampled at the data's primaries (``--seed``, paired as
``evaluate`` pairs it) and judged on every set by the same targets, beside the twin: its pass
rates against the perfect generator's on the same sets.

Not measured: the multiplicity calibration (PIT KS), which needs a model's P(N | conditions).

One JSON object on stdout. Run: ``python benchmarks/target_power.py --data SETS --showers 5000
25000 --workers 2`` (each size needs at least one set's worth of showers; the twin costs as
much CPU as the data did).
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import stats

from mubundle.benchmark_cli import (
    NothingToReport, integer, make_parser, model_fields, positive_int, print_json, refuse_unless, require_events, run,
    seed_int,
)
from mubundle.data.batch import RaggedBatch
from mubundle.evaluate.metrics import compare, is_paired, shower_ids
from mubundle.evaluate.report import TARGET_MAX_AUC, TARGET_MAX_RATIO, summarise
from mubundle.evaluate.tails import TAIL_CLASSES, class_counts, tail_report
from mubundle.sim.config import SimConfig

#: the central confidence level of the pass-rate intervals (one Gaussian sigma)
CONFIDENCE_LEVEL = 0.683
#: the SimConfig fields that decide a shower's physics: the data files must agree on them
PHYSICS_FIELDS = ("site", "depths_km", "interaction_model", "min_energy", "ice_v_cut", "surface_altitude_m")


def simulation_config(paths: list[str]) -> SimConfig:
    """The simulate configuration recorded in the data files (native shards of ``mubundle
    simulate``), refused when a file records none, was made by a simulator version whose showers
    this one does not reproduce, or files differ in :data:`PHYSICS_FIELDS`."""
    from mubundle.configio import from_dict
    from mubundle.data.native import read_metadata

    from mubundle.sim.version import SIMULATOR_VERSION, UNVERSIONED, continues

    configs = {}
    for path in paths:
        metadata = read_metadata(path)
        recorded = metadata.get("config")
        refuse_unless(isinstance(recorded, dict) and "depths_km" in recorded,
                      f"{path} records no simulate configuration: the twin needs showers of `mubundle simulate`")
        version = metadata.get("simulator_version", UNVERSIONED)
        refuse_unless(continues(version, str(recorded.get("site"))),
                      f"{path} was simulated by simulator version {version}: this version ({SIMULATOR_VERSION}) "
                      "would make its twin with other physics")
        configs[path] = recorded
    first_path, first = next(iter(configs.items()))
    for path, recorded in configs.items():
        differing = [name for name in PHYSICS_FIELDS if recorded.get(name) != first.get(name)]
        refuse_unless(not differing, f"{path} differs from {first_path} in {', '.join(differing)}: one site and physics only")
    return from_dict(SimConfig, first, where=first_path)


def shower_rows(batch: RaggedBatch, n_depths: int) -> np.ndarray:
    """(S, D, 4) conditions of the data's showers: the events must come as whole showers, D
    consecutive rows of one primary at ascending depths (as simulate writes them)."""
    conditions = batch.conditions
    refuse_unless(len(conditions) % n_depths == 0,
                  f"{len(conditions)} events are not whole showers of {n_depths} depths (rows rejected on reading?)")
    showers = conditions.reshape(-1, n_depths, 4)
    primary_differs = np.any(showers[:, :, :3] != showers[:, :1, :3], axis=(1, 2))
    depth_falls = np.any(np.diff(showers[:, :, 3], axis=1) <= 0, axis=1) if n_depths > 1 else np.zeros(len(showers), bool)
    broken = np.flatnonzero(primary_differs | depth_falls)
    if broken.size:
        refuse_unless(False, f"the events are not whole showers of {n_depths} depths from event {int(broken[0]) * n_depths} "
                             "on (rows rejected on reading?)")
    return showers


def twin_of(batch: RaggedBatch, config: SimConfig, seed: int, workers: int) -> RaggedBatch:
    """The showers of ``batch`` simulated again (same primaries and depths, seed ``seed``), event for
    event in ``batch``'s order: a perfect generator's sample paired with ``batch``. Parts of
    ``config.showers_per_chunk`` showers, part k seeded by ``SeedSequence([seed, 0x7717, k])``
    (never a stream of simulate's own chunks); the result does not depend on ``workers``."""
    from mubundle.sim.run import simulate_showers

    showers = shower_rows(batch, len(config.depths_km))
    group = config.showers_per_chunk
    parts = []
    for part, start in enumerate(range(0, len(showers), group)):
        rows = showers[start:start + group]
        energy, zenith, mass = (rows[:, 0, column].astype(np.float64) for column in range(3))
        parts.append((energy, zenith, mass, rows[:, :, 3].astype(np.float64), config,
                      np.random.SeedSequence([seed, 0x7717, part])))
    if workers == 1:
        twin = RaggedBatch.concat([simulate_showers(*part) for part in parts])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            twin = RaggedBatch.concat([future.result() for future in [pool.submit(simulate_showers, *part) for part in parts]])
    if not is_paired(batch, twin):
        raise RuntimeError("the twin's conditions differ from the data's (a bug of this script)")
    return twin


def cut_into_sets(conditions: np.ndarray, showers_per_set: int, seed: int) -> list[np.ndarray]:
    """Sorted event indices of ``len(showers) // showers_per_set`` disjoint sets of whole
    showers, the showers taken in a random order (``seed``); showers left over are not used."""
    showers = shower_ids(conditions)
    n_showers = int(showers.max()) + 1 if showers.size else 0
    order = np.random.default_rng(seed).permutation(n_showers)
    set_of_shower = np.full(n_showers, -1, dtype=np.int64)
    n_sets = n_showers // showers_per_set
    set_of_shower[order[: n_sets * showers_per_set]] = np.arange(n_sets * showers_per_set) // showers_per_set
    set_of_event = set_of_shower[showers]
    return [np.flatnonzero(set_of_event == k) for k in range(n_sets)]


def pass_rate(passed: int, trials: int) -> dict:
    """The fraction ``passed / trials`` with its Clopper-Pearson interval at :data:`CONFIDENCE_LEVEL`."""
    interval = stats.binomtest(passed, trials).proportion_ci(CONFIDENCE_LEVEL, method="exact")
    return {"passed": passed, "trials": trials, "fraction": round(passed / trials, 3),
            "interval": [round(float(interval.low), 3), round(float(interval.high), 3)]}


def pass_rates(met: list[dict[str, bool]]) -> dict[str, dict]:
    """:func:`pass_rate` of every target of :func:`compare_pair` (its ``met``) over the trials."""
    return {criterion: pass_rate(sum(trial[criterion] for trial in met), len(met)) for criterion in met[0]}


def compare_pair(reference: RaggedBatch, candidate: RaggedBatch, seed: int) -> dict:
    """What each target of evaluate gave for ``candidate`` against ``reference``."""
    overall = compare(reference, candidate, seed=seed, classifier=True)
    summary = summarise(overall)
    tails = tail_report(reference, candidate, seed=seed)
    log_w1 = {name: entry["ratio"] for name, entry in tails["overall"]["log_w1"].items()}
    auc = summary["classifier_auc"]
    met = {
        "distance_ratios": not summary["metrics_above_target"] and not summary["metrics_unavailable"],
        "log_w1": all(ratio is not None and ratio <= TARGET_MAX_RATIO for ratio in log_w1.values()),
        "auc": auc is not None and auc <= TARGET_MAX_AUC,
        "tails": not tails["flagged"],
    }
    met["all"] = all(met.values())
    tested, beyond = tail_tests_by_shower(tails)
    return {
        "events": len(reference),
        "max_ratio": round(summary["max_ratio"], 3) if summary["max_ratio"] is not None else None,
        "max_ratio_metric": summary["max_ratio_metric"],
        "metrics_above_target": {name: round(overall[name]["ratio"], 3) for name in summary["metrics_above_target"]},
        "log_w1_ratio": {name: round(ratio, 3) if ratio is not None else None for name, ratio in log_w1.items()},
        "auc": round(auc, 4) if auc is not None else None,
        "tails_flagged": tails["flagged"],
        "tail_tests_by_shower": tested,
        "tails_beyond_2_sigma_by_shower": beyond,
        "met": met,
    }


def tail_tests_by_shower(tails: dict) -> tuple[int, list[str]]:
    """(the tail classes, overall and per E0 bin, whose ratio has an error by shower, those whose
    ratio lies more than 2 such errors from 1): evaluate's flag with the Poisson errors replaced by
    the errors by shower (docs/evaluation.md, "Tails"); not a target, a check of those errors."""
    places = [("all events", tails["overall"]["rates"])]
    places += [(entry["label"], entry["rates"]) for entry in tails["energy_bins"]]
    tested, beyond = 0, []
    for label, rates in places:
        for name, entry in rates.items():
            ratio = entry["ratio"]
            error = ratio.get("relative_error_by_shower")
            if ratio.get("value") is None or not error:
                continue
            tested += 1
            if abs(ratio["value"] - 1.0) > 2.0 * error:
                beyond.append(f"{label}: {name}")
    return tested, beyond


def rate_spread(batch: RaggedBatch, sets: list[np.ndarray]) -> dict:
    """Per tail class over the sets: the mean count and the relative standard deviation of the
    rate, measured and as it would be if the counts were Poisson (1 / sqrt(mean count); muons
    of one shower come together, so the measured spread is larger)."""
    rates: dict[str, list[float]] = {tail.name: [] for tail in TAIL_CLASSES}
    counts: dict[str, list[int]] = {tail.name: [] for tail in TAIL_CLASSES}
    for indices in sets:
        for name, (count, total) in class_counts(batch.take(indices)).items():
            rates[name].append(count / total if total else float("nan"))
            counts[name].append(int(count))
    result = {}
    for name, values in rates.items():
        values_array = np.asarray(values)
        mean, mean_count = float(np.mean(values_array)), float(np.mean(counts[name]))
        result[name] = {"mean_count": round(mean_count, 1),
                        "relative_std": round(float(np.std(values_array, ddof=1) / mean), 3) if mean > 0 and len(values) > 1 else None,
                        "relative_std_if_poisson": round(mean_count ** -0.5, 3) if mean_count > 0 else None}
    return result


def power_at_size(batch: RaggedBatch, twin: RaggedBatch, showers_per_set: int, seed: int,
                  model_sample: RaggedBatch | None = None) -> dict:
    """The trials of the module docstring for sets of ``showers_per_set`` showers; with
    ``model_sample`` (a model's events at ``batch``'s conditions, in its order) the same targets
    for the model on every set (``trials[k]["model"]``, ``model_pass_rate``)."""
    sets = cut_into_sets(batch.conditions, showers_per_set, seed)  # main refused sizes above the data's showers
    trials = []
    for k, indices in enumerate(sets):
        started = time.perf_counter()
        reference = batch.take(indices)
        entry = compare_pair(reference, twin.take(indices), seed)
        if model_sample is not None:
            entry["model"] = compare_pair(reference, model_sample.take(indices), seed)
        trials.append({"set": k, **entry, "seconds": round(time.perf_counter() - started, 1)})
    above = Counter(name for trial in trials for name in trial["metrics_above_target"])
    above.update(name for trial in trials for name, ratio in trial["log_w1_ratio"].items()
                 if ratio is None or ratio > TARGET_MAX_RATIO)
    flagged = Counter(label for trial in trials for label in trial["tails_flagged"])
    tested = sum(trial["tail_tests_by_shower"] for trial in trials)
    beyond = sum(len(trial["tails_beyond_2_sigma_by_shower"]) for trial in trials)
    return {
        "showers_per_set": showers_per_set,
        "sets": len(sets),
        "events_per_set": round(float(np.mean([len(s) for s in sets])), 1),
        "pass_rate": pass_rates([trial["met"] for trial in trials]),
        "metrics_above_target": dict(above.most_common()),
        "tail_classes_flagged": dict(flagged.most_common()),
        "mean_tail_flags_per_set": round(sum(flagged.values()) / len(trials), 2),
        "tail_tests_by_shower": {"tests": tested, "beyond_2_sigma": beyond,
                                 "fraction": round(beyond / tested, 3) if tested else None,
                                 "expected_if_gaussian": 0.046},
        "reference_rate_spread": rate_spread(batch, sets) if len(sets) > 1 else None,
        **({"model_pass_rate": pass_rates([trial["model"]["met"] for trial in trials]),
            "model_metrics_above_target": dict(Counter(name for trial in trials
                                                       for name in trial["model"]["metrics_above_target"]).most_common()),
            "model_mean_tail_flags_per_set": round(sum(len(trial["model"]["tails_flagged"]) for trial in trials) / len(trials), 2)}
           if model_sample is not None else {}),
        "trials": trials,
    }


def main() -> None:
    from mubundle.data.sources import read_events

    parser = make_parser(__doc__)
    parser.add_argument("--data", nargs="+", required=True,
                        help="datasets of `mubundle simulate` (sampled primaries; files, globs, directories), one site")
    parser.add_argument("--showers", nargs="+", type=integer(20), required=True,
                        help="showers per set (one or more sizes; each needs one set's worth of showers)")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the order of the showers and of evaluate's splits")
    parser.add_argument("--twin-seed", type=seed_int, default=1, help="seed of the second simulation of the showers")
    parser.add_argument("--workers", type=positive_int, default=1, help="processes simulating the twin")
    parser.add_argument("--model", default=None,
                        help="also a model (directory or shipped name) sampled at the data's primaries, judged as the twin is")
    args = parser.parse_args()
    started = time.perf_counter()
    model = None
    if args.model is not None:
        from mubundle.generate.api import load_model

        model = load_model(args.model)  # a bad --model fails before anything is read or simulated
    loaded = read_events(args.data)
    require_events(len(loaded.batch), loaded.failed_files, loaded.rejected, args.data)
    if loaded.rejected or loaded.failed_files:
        problem = loaded.rejected or loaded.failed_files[0]
        refuse_unless(False, f"rows or files of {' '.join(args.data)} were rejected ({problem}): "
                             "the twin needs every event of every shower")
    batch = loaded.batch
    config = simulation_config(list(loaded.layouts))
    n_showers = len(batch) // len(config.depths_km)
    too_large = [size for size in args.showers if size > n_showers]
    if too_large:  # before the twin, which costs as much as the data did
        raise NothingToReport(f"--showers {too_large[0]}: the data hold {n_showers} showers, fewer than one set's worth")
    twin_started = time.perf_counter()
    twin = twin_of(batch, config, args.twin_seed, args.workers)
    twin_seconds = time.perf_counter() - twin_started
    model_sample, model_fields_ = None, {}
    if model is not None:
        c = batch.conditions
        outside = model.domain.check_conditions(c).n_outside if model.domain is not None else 0
        model_sample = model.sample(c[:, 0], c[:, 1], c[:, 2], c[:, 3], seed=args.seed, allow_extrapolation=True)
        model_fields_ = {**model_fields(model, args.model), "extrapolated_events": int(outside)}
    result = {
        "data": args.data,
        "events": len(batch),
        "showers": n_showers,
        "muons": [batch.n_muons, twin.n_muons],
        "site": config.site,
        "depths_km": list(config.depths_km),
        "seed": args.seed,
        "twin_seed": args.twin_seed,
        "twin_seconds": round(twin_seconds, 1),
        "targets": {"distance_ratio": TARGET_MAX_RATIO, "log_w1_ratio": TARGET_MAX_RATIO, "auc": TARGET_MAX_AUC,
                    "tails": "no flagged class overall or per E0 bin (evaluate's rule)"},
        "not_measured": "multiplicity calibration (PIT KS): it needs a model's P(N | conditions)",
        **model_fields_,
        "sizes": [power_at_size(batch, twin, size, args.seed, model_sample) for size in sorted(set(args.showers))],
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    print_json(result)


if __name__ == "__main__":
    run(main)
