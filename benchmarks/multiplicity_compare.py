"""Two multiplicity models on the same reference events: which predicts the true N better?

For every reference event with true multiplicity N and conditions c, each model gives
log P(N | c) (``MuonBundleModel.count_log_prob``: the negative-binomial mixture, exactly 0 / -inf
below the kinematic zero). The **paired log-likelihood difference** per event,
d = log P_B(N | c) - log P_A(N | c), averaged over the events, is the expected log score
difference of B over A (Gneiting & Raftery 2007, JASA 102, 359: the log score is strictly
proper, so the true distribution has the highest expected value): d > 0 means B is closer to the
simulator's P(N | c) in the Kullback-Leibler sense. Being paired on the same events, it carries
none of the noise of which primaries happen to be in the sample. Its standard error comes from
``--bootstrap`` resamplings of whole **showers** (the depths of one air shower share its muons).
Reported overall and per decade of E0 (the total in nats as well: where the difference sits).

Also, per model, the randomised-PIT KS distance over ``--pit-seeds`` seeds of the
randomisation V (``mubundle.evaluate.calibration``; ``mubundle evaluate`` reads seed 0 only):
the mean, min and max of KS / floor. One reading moves with V alone by a factor ~2 on
IceCube-depth sets, where most events have N = 0 or 1 (docs/evaluation.md).

Run: ``python benchmarks/multiplicity_compare.py --models A B --data SETS...`` (model directories or
shipped names; ~10 s per 100 000 events and PIT seed on 2 cores). Prints ONE JSON object.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mubundle.benchmark_cli import integer, make_parser, positive_int, print_json, require_events, run, seed_int
from mubundle.data.sources import read_events
from mubundle.evaluate.calibration import ks_distance_from_uniform, randomised_pit, uniform_ks_floor
from mubundle.evaluate.metrics import shower_ids
from mubundle.generate.api import load_model

_CHUNK = 65_536


def log_probabilities(model, conditions: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B,) float64 log P(N = counts | conditions) under ``model`` (conditions (B, 4) physical)."""
    c, n = torch.from_numpy(conditions), torch.from_numpy(counts)
    return np.concatenate([model.count_log_prob(c[s : s + _CHUNK], n[s : s + _CHUNK]).double().numpy()
                           for s in range(0, len(counts), _CHUNK)]) if len(counts) else np.zeros(0)


def paired_difference(difference: np.ndarray, showers: np.ndarray, draws: np.ndarray) -> dict:
    """Mean of (n,) per-event differences with its standard error over shower resamplings.

    ``showers``: (n,) dense shower ids in [0, S); ``draws``: (R, S) times each shower is drawn."""
    n_showers = draws.shape[1]
    per_shower = np.bincount(showers, weights=difference, minlength=n_showers)
    events = np.bincount(showers, minlength=n_showers).astype(np.float64)
    resampled = (draws @ per_shower) / np.where(draws @ events > 0, draws @ events, np.nan)
    finite = np.isfinite(difference)
    return {"events": int(len(difference)), "mean_nats_per_event": float(difference.mean()) if len(difference) else None,
            "standard_error": float(np.nanstd(resampled)) if len(difference) else None,
            "total_nats": float(difference.sum()), "nonfinite_events": int((~finite).sum())}


def pit_spread(model, conditions: np.ndarray, counts: np.ndarray, seeds: int) -> dict:
    """KS / (independent) floor of the randomised PIT for V seeds 0 .. seeds - 1."""
    floor = uniform_ks_floor(np.arange(len(counts)), 0)
    ratios = []
    for seed in range(seeds):
        pit = randomised_pit(model, conditions, counts, seed=seed)
        ratios.append(ks_distance_from_uniform(pit[np.isfinite(pit)]) / floor)
    return {"seeds": seeds, "ks_ratio_seed_0": ratios[0], "ks_ratio_mean": float(np.mean(ratios)),
            "ks_ratio_min": float(np.min(ratios)), "ks_ratio_max": float(np.max(ratios))}


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--models", nargs=2, required=True, metavar=("A", "B"), help="model directories or shipped names")
    parser.add_argument("--data", nargs="+", required=True, help="reference events: files, globs, directories")
    parser.add_argument("--bootstrap", type=integer(2), default=200, help="shower resamplings for the errors")
    parser.add_argument("--pit-seeds", type=positive_int, default=10, help="seeds of the PIT's randomisation per model")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the resamplings")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    models = [load_model(name, device="cpu") for name in args.models]
    loaded = read_events(args.data)
    require_events(len(loaded.batch), loaded.failed_files, loaded.rejected, args.data)  # nothing read: exit 2
    conditions = np.ascontiguousarray(loaded.batch.conditions, dtype=np.float32)
    counts = np.asarray(loaded.batch.counts, dtype=np.int64)
    difference = log_probabilities(models[1], conditions, counts) - log_probabilities(models[0], conditions, counts)
    showers = shower_ids(conditions)  # dense: 0 .. S-1
    n_showers = int(showers.max()) + 1 if len(showers) else 0
    rng = np.random.default_rng(args.seed)
    draws = np.stack([np.bincount(rng.integers(0, n_showers, n_showers), minlength=n_showers)
                      for _ in range(args.bootstrap)]).astype(np.float64)
    log_energy = np.log10(conditions[:, 0].astype(np.float64))
    decades = {}
    for low in np.arange(np.floor(log_energy.min()), np.floor(log_energy.max()) + 1) if len(counts) else []:
        chosen = (log_energy >= low) & (log_energy < low + 1)
        if chosen.any():
            decades[f"1e{low:g}-1e{low + 1:g} GeV"] = paired_difference(difference[chosen], showers[chosen], draws)
    from mubundle import __version__

    print_json({
        "benchmark": "multiplicity_compare", "mubundle_version": __version__, "model_paths": {"A": args.models[0], "B": args.models[1]},
        "models": {"A": models[0].name, "B": models[1].name},
        "events": int(len(counts)), "showers": n_showers,
        "rejected_rows": dict(loaded.rejected), "failed_files": list(loaded.failed_files),
        "unit": "log P_B(N | c) - log P_A(N | c), nats per event; > 0: B predicts the true N better",
        "log_likelihood_difference": paired_difference(difference, showers, draws),
        "log_likelihood_difference_by_energy": decades,
        "pit": {"A": pit_spread(models[0], conditions, counts, args.pit_seeds),
                "B": pit_spread(models[1], conditions, counts, args.pit_seeds)},
        "bootstrap": f"{args.bootstrap} resamplings of whole showers",
        "seconds": round(time.perf_counter() - start, 1),
    })


if __name__ == "__main__":
    run(main)
