"""The generator's muon energies by the bundle's multiplicity N and E0, against the reference.

``mubundle evaluate`` bins by the primary (E0, A, zenith, depth) but pools every multiplicity,
so a generator whose single muons are too soft and whose pairs are too hard can pass its
per-muon energy metric. Here the model samples bundles at the reference events' own conditions
(``--seed``), and every muon is put in a cell of (decade of E0) x (class of its event's N:
1, 2-3, 4-10, 11-100, > 100; the model's muons by the model's N, the reference's by the
reference's). Per cell it prints the mean log10(E_mu / GeV) of reference and model, their
difference (model - reference) [dex], its standard error and the pull (difference / error),
and the same per N class over all E0.

The error comes from ``--bootstrap`` resamplings of whole **showers** (the depths of one air
shower share its muons), each resampling reweighting both sides' events of the drawn showers
(paired on the conditions): the mean per muon of a cell is sum(log10 E) / muons over the cell's
events, a ratio estimator, recomputed in every resampling. |pull| <~ 3 in every cell is what a
model that agrees with its reference shows.

One JSON object on stdout. Run: ``python benchmarks/energy_by_multiplicity.py --data SETS
--model M`` (without ``--data`` it simulates ``--sim-events`` reference events first, as the
other accuracy benchmarks do: enough to run, not to test a model).
"""

from __future__ import annotations

import time

import numpy as np

from mubundle.benchmark_cli import integer, make_parser, model_fields, print_json, run, seed_int
from mubundle.data.batch import RaggedBatch
from mubundle.evaluate.metrics import shower_ids

#: classes of the event's multiplicity N: (label, lowest N, highest N)
N_CLASSES = (("N = 1", 1, 1), ("N = 2-3", 2, 3), ("N = 4-10", 4, 10), ("N = 11-100", 11, 100), ("N > 100", 101, None))
#: fewer muons than this on either side: the cell is reported without a mean
MIN_MUONS = 20


def event_sums(batch: RaggedBatch) -> tuple[np.ndarray, np.ndarray]:
    """(B,) sum of log10(E_mu / GeV) over each event's muons and (B,) its muon count."""
    log_energy = np.log10(np.asarray(batch.flat_muons[:, 0], dtype=np.float64))
    return np.bincount(batch.event_index, weights=log_energy, minlength=len(batch.counts)), batch.counts.astype(np.float64)


def class_mask(counts: np.ndarray, low: int, high: int | None) -> np.ndarray:
    """(B,) bool: events whose N lies in [low, high] (no upper bound when None)."""
    return (counts >= low) & (counts <= high) if high is not None else counts >= low


def cell(reference: tuple[np.ndarray, np.ndarray], model: tuple[np.ndarray, np.ndarray], showers: np.ndarray,
         draws: np.ndarray) -> dict:
    """Mean log10 E per muon of both sides over their selected events and the difference's
    shower-bootstrap error. ``reference`` / ``model``: (sum of log10 E, muons) per event, zero
    outside the cell; ``showers`` (B,) dense ids; ``draws`` (R, S) times each shower is drawn."""
    n_showers = draws.shape[1]
    entry: dict = {"muons_reference": int(reference[1].sum()), "muons_model": int(model[1].sum())}
    if min(entry["muons_reference"], entry["muons_model"]) < MIN_MUONS:
        entry["reason"] = f"fewer than {MIN_MUONS} muons"
        return entry
    means, replicas = [], []
    for sums, muons in (reference, model):
        per_shower_sum = np.bincount(showers, weights=sums, minlength=n_showers)
        per_shower_muons = np.bincount(showers, weights=muons, minlength=n_showers)
        means.append(per_shower_sum.sum() / per_shower_muons.sum())
        drawn_muons = draws @ per_shower_muons
        replicas.append((draws @ per_shower_sum) / np.where(drawn_muons > 0, drawn_muons, np.nan))
    difference = means[1] - means[0]
    error = float(np.nanstd(replicas[1] - replicas[0]))
    entry.update(mean_log10_energy_reference=round(float(means[0]), 4), mean_log10_energy_model=round(float(means[1]), 4),
                 difference_dex=round(float(difference), 4), standard_error_dex=round(error, 4),
                 pull=round(float(difference / error), 2) if error > 0 else None)
    return entry


def compare(reference: RaggedBatch, generated: RaggedBatch, n_bootstrap: int, seed: int) -> dict:
    """The cells of the module docstring for ``generated`` sampled at ``reference``'s conditions
    (same events in the same order)."""
    if not np.array_equal(reference.conditions, generated.conditions):
        raise ValueError("the model's events must be sampled at the reference's conditions, in its order")
    showers = shower_ids(reference.conditions)  # dense: 0 .. S-1
    n_showers = int(showers.max()) + 1 if showers.size else 0
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_showers, np.full(n_showers, 1.0 / n_showers), size=n_bootstrap).astype(np.float64)
    sums = {"reference": event_sums(reference), "model": event_sums(generated)}
    counts = {"reference": reference.counts, "model": generated.counts}
    log10_e0 = np.log10(reference.conditions[:, 0].astype(np.float64))

    def selected(side: str, events: np.ndarray, low: int, high: int | None) -> tuple[np.ndarray, np.ndarray]:
        keep = events & class_mask(counts[side], low, high)
        return sums[side][0] * keep, sums[side][1] * keep

    everything = np.ones(len(reference), dtype=bool)
    by_class = [{"class": label, **cell(selected("reference", everything, low, high), selected("model", everything, low, high),
                                        showers, draws)} for label, low, high in N_CLASSES]
    cells = []
    for decade in range(int(np.floor(log10_e0.min())), int(np.floor(log10_e0.max())) + 1) if len(reference) else []:
        events = (log10_e0 >= decade) & (log10_e0 < decade + 1)
        for label, low, high in N_CLASSES:
            entry = cell(selected("reference", events, low, high), selected("model", events, low, high), showers, draws)
            cells.append({"e0_gev": f"1e{decade}-1e{decade + 1}", "class": label, **entry})
    pulls = [c["pull"] for c in cells if c.get("pull") is not None]
    return {"showers": n_showers, "by_class": by_class, "cells": cells,
            "max_abs_pull": max((abs(p) for p in pulls), default=None),
            "cells_beyond_3_sigma": [f"{c['e0_gev']} GeV, {c['class']}: {c['difference_dex']:+.3f} dex ({c['pull']:+.1f} sigma)"
                                     for c in cells if c.get("pull") is not None and abs(c["pull"]) > 3]}


def main() -> None:
    from generate_throughput import add_reference_arguments, reference_and_model  # benchmarks/ is sys.path[0]

    parser = make_parser(__doc__)
    add_reference_arguments(parser)
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the model's bundles and of the bootstrap")
    parser.add_argument("--bootstrap", type=integer(2), default=200, help="shower resamplings for the errors")
    args = parser.parse_args()
    started = time.perf_counter()
    reference, rejected, failed, model = reference_and_model(args)
    c = reference.conditions
    generated = model.sample(c[:, 0], c[:, 1], c[:, 2], c[:, 3], seed=args.seed, allow_extrapolation=True)
    result = {
        **model_fields(model, args.model),
        "reference": args.data or f"{args.sim_events} simulated events",
        "events": len(reference),
        "seed": args.seed,
        "extrapolated_events": int(model.domain.check_conditions(c).n_outside) if model.domain is not None else 0,
        "bootstrap": f"{args.bootstrap} resamplings of whole showers, paired (model and reference on the same conditions)",
        "rejected_rows": rejected,
        "failed_files": failed,
        **compare(reference, generated, args.bootstrap, args.seed),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print_json(result)


if __name__ == "__main__":
    run(main)
