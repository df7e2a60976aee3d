"""The flux-weighted muon rate of a model's multiplicity part against the simulator's, by
distance from the kinematic zero. Prints ONE JSON object.

On the events of a flux-weighted ``mubundle simulate --flux`` dataset (its ``weight`` column,
Hz), the simulator's rate is sum_i w_i N_i and the model's sum_i w_i <N>_i, with <N>_i the
exact mean of the model's P(N | primary i) (``MuonBundleModel.count_mean_variance``: no
sampling; 0 below the kinematic zero of a model that records one, docs/model.md). The rate is
binned in x = (E0 / A) / E_s(depth), E_s the least surface energy that reaches the depth
(:mod:`mubundle.model.threshold`; the model's recorded settings, else ``--medium`` ice with
the simulator's defaults). Flux weights grow steeply towards low energy, so a network's small
errors just above the zero weigh heavily in rates; this shows where.

Also binned in half decades of E0 and by mass number (where a model's error sits). Reported per bin
and overall: events, events with muons, the simulator's rate and the model's
(both as fractions of the simulator's total), model / simulator and its standard error from
``--bootstrap`` resamplings of whole showers (paired; the depths of a shower share its muons).
``below_bound_fraction_bare_network``: the share of the bare network's rate (the kinematic zero
not applied) that lies below the bound, where the simulator has none.

Run: ``python benchmarks/multiplicity_flux_rate.py --data SHARDS... [--model icecube]``
(~20 s for 90 000 events on 2 cores).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mubundle.benchmark_cli import integer, make_parser, model_fields, print_json, require_events, run, seed_int
from mubundle.data.sources import read_events
from mubundle.errors import InvalidValueError
from mubundle.evaluate.metrics import shower_ids
from mubundle.generate.api import load_model
from mubundle.model.threshold import MuonThreshold

#: bin edges of x = (E0 / A) / E_s(depth)
EDGES = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0, np.inf)
_CHUNK = 50_000


def bare_network_mean(model, conditions: np.ndarray) -> np.ndarray:
    """(B,) mean N of the multiplicity network itself (no kinematic zero), float64."""
    out = []
    with torch.no_grad():
        for start in range(0, len(conditions), _CHUNK):
            chunk = torch.from_numpy(conditions[start : start + _CHUNK])
            features = model.transform.condition_features(chunk)
            out.append(model.multiplicity.mean_variance(features)[0].double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def model_mean(model, conditions: np.ndarray) -> np.ndarray:
    """(B,) mean N of the model (kinematic zero applied where it records one), float64."""
    return np.concatenate([model.count_mean_variance(torch.from_numpy(conditions[s : s + _CHUNK]))[0].double().numpy()
                           for s in range(0, len(conditions), _CHUNK)]) if len(conditions) else np.zeros(0)


def main() -> None:
    from mubundle.model.shipped import DEFAULT_MODEL

    parser = make_parser(__doc__)
    parser.add_argument("--data", nargs="+", required=True, help="flux-weighted shards of mubundle simulate --flux")
    parser.add_argument("--model", default=None,
                        help=f"model directory or shipped name (default: the shipped default, {DEFAULT_MODEL})")
    parser.add_argument("--medium", default="ice", help="medium of the bound for a model that records none")
    parser.add_argument("--bootstrap", type=integer(2), default=200, help="resamplings of whole showers for the errors")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the resamplings")
    args = parser.parse_args()
    start = time.perf_counter()
    model = load_model(args.model)
    loaded = read_events(args.data)
    batch = loaded.batch
    require_events(len(batch), loaded.failed_files, loaded.rejected, args.data)  # nothing read: exit 2
    if batch.weights is None:
        raise InvalidValueError(f"{' '.join(args.data)}: the data has no weight column (simulate it with --flux)")
    conditions = batch.conditions.astype(np.float32)
    counts, weights = batch.counts.astype(np.float64), batch.weights
    threshold = model.muon_threshold or MuonThreshold(args.medium, 1.0, 0.05)
    x = np.asarray(conditions[:, 0], np.float64) / conditions[:, 2] / threshold.surface_energy_gev(conditions[:, 3])
    mean = model_mean(model, conditions)
    bare = bare_network_mean(model, conditions)
    showers = shower_ids(conditions)
    rng = np.random.default_rng(args.seed)
    n_showers = int(showers.max()) + 1 if len(showers) else 0
    draws = np.stack([np.bincount(rng.integers(0, n_showers, n_showers), minlength=n_showers)[showers]
                      for _ in range(args.bootstrap)]).astype(np.float64)  # (R, B) times each event is drawn
    total = float((weights * counts).sum())

    def summary(mask: np.ndarray) -> dict:
        data_rate, model_rate = weights * counts * mask, weights * mean * mask
        data_sum, model_sum = float(data_rate.sum()), float(model_rate.sum())
        ratios = (draws @ model_rate) / np.where(draws @ data_rate > 0, draws @ data_rate, np.nan)
        return {
            "events": int(mask.sum()), "events_with_muons": int((counts[mask] > 0).sum()),
            "simulator_rate_fraction": data_sum / total, "model_rate_fraction": model_sum / total,
            "model_over_simulator": model_sum / data_sum if data_sum > 0 else None,
            "standard_error": float(np.nanstd(ratios)) if data_sum > 0 else None,
        }

    bins = {f"{lo:g}-{hi:g}": summary((x >= lo) & (x < hi)) for lo, hi in zip(EDGES[:-1], EDGES[1:])}
    log_energy = np.log10(np.asarray(conditions[:, 0], np.float64))
    energy_edges = np.arange(np.floor(2 * log_energy.min()), np.floor(2 * log_energy.max()) + 0.5) / 2 if len(batch) else []
    energy_bins = {f"{lo:g}-{lo + 0.5:g}": summary((log_energy >= lo) & (log_energy < lo + 0.5)) for lo in energy_edges}
    mass_bins = {f"{a:g}": summary(conditions[:, 2] == a) for a in np.unique(conditions[:, 2])}
    print_json({
        "benchmark": "multiplicity_flux_rate",
        **model_fields(model, args.model), "muon_threshold": None if model.muon_threshold is None else model.muon_threshold.to_dict(),
        "data_events": len(batch), "rejected_rows": dict(loaded.rejected), "failed_files": list(loaded.failed_files),
        "unit": "rates as fractions of the simulator's flux-weighted total (sum w N)",
        "bins_of_energy_per_nucleon_over_bound": bins,
        "bins_of_log10_energy_gev": energy_bins, "bins_of_mass_number": mass_bins,
        "overall": summary(np.ones(len(batch), dtype=bool)),
        "below_bound_fraction_bare_network": float((weights * bare)[x < 1].sum() / (weights * bare).sum()),
        "bootstrap": f"{args.bootstrap} resamplings of whole showers",
        "seconds": round(time.perf_counter() - start, 1),
    })


if __name__ == "__main__":
    run(main)
