"""The high-energy tail of a model's muon energies against a dataset's, for the same primaries and
multiplicities. Prints ONE JSON object.

For every event with muons in the shards (``--min-e0``: only primaries of at least that energy),
the model's generator draws muons for the event's conditions and TRUE N
(``MuonBundleModel.sample_muons``, with the model's tail maps where it has them, docs/model.md), so the
comparison is of the generator alone, muon by muon.
Reported: the number of muons above each energy threshold (``--thresholds``, log10 GeV) in the
data and from the model, their ratio with its Poisson standard error (both counts), and the upper
quantiles of log10 E. A generator that cannot reach the data's tail shows ratios above 1 just below
its reach and below 1 beyond it (docs/model.md, "The tail of the muon spectrum").

Run: ``python benchmarks/muon_energy_tail.py --model km3net-arca --data SHARDS... --min-e0 1e8``
(~3 s for 200 shards of 600 events on 2 cores).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mubundle.argtypes import MAX_PRIMARY_ENERGY_GEV
from mubundle.benchmark_cli import finite_float, make_parser, model_fields, print_json, require_events, run, seed_int
from mubundle.data.sources import read_events
from mubundle.generate.api import load_model

QUANTILES = (0.5, 0.9, 0.99, 0.995, 0.999, 0.9995)
THRESHOLDS = (3.5, 4.0, 4.25, 4.5, 4.75, 5.0)


def tail_table(reference_log10_e: np.ndarray, model_log10_e: np.ndarray, thresholds) -> list[dict]:
    """Per threshold t (log10 GeV): muons above t in each sample, model / reference and its
    Poisson standard error ratio * sqrt(1 / n_ref + 1 / n_model) (None without reference muons)."""
    rows = []
    for t in thresholds:
        n_ref, n_model = int(np.sum(reference_log10_e > t)), int(np.sum(model_log10_e > t))
        ratio = n_model / n_ref if n_ref else None
        error = ratio * np.sqrt(1.0 / n_ref + 1.0 / max(n_model, 1)) if n_ref else None
        rows.append({"log10_energy_gev": t, "reference": n_ref, "model": n_model, "ratio": ratio, "ratio_error": error})
    return rows


def main() -> None:
    from mubundle.model.shipped import DEFAULT_MODEL

    parser = make_parser(__doc__)
    parser.add_argument("--data", nargs="+", required=True, help="shards (or directories) of a dataset")
    parser.add_argument("--model", default=None,
                        help=f"model directory or shipped name (default: the shipped default, {DEFAULT_MODEL})")
    parser.add_argument("--min-e0", type=finite_float(0.0, MAX_PRIMARY_ENERGY_GEV, unit="GeV"), default=0.0,
                        help="only primaries of at least this energy [GeV]")
    parser.add_argument("--thresholds", type=finite_float(-3.0, 12.0), nargs="+", default=THRESHOLDS,
                        help="muon energy thresholds, log10(E / GeV)")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the generated muons")
    args = parser.parse_args()

    start = time.perf_counter()
    model = load_model(args.model)
    loaded = read_events(args.data)
    batch = loaded.batch
    require_events(len(batch), loaded.failed_files, loaded.rejected, args.data)  # nothing read: exit 2
    selected = (batch.counts > 0) & (batch.conditions[:, 0] >= args.min_e0)
    per_muon = np.repeat(selected, batch.counts)
    reference = np.log10(batch.flat_muons[per_muon, 0].astype(np.float64))
    generated = model.sample_muons(
        torch.as_tensor(batch.conditions[selected], dtype=torch.float32),
        torch.as_tensor(batch.counts[selected]),
        torch.Generator().manual_seed(args.seed),
    ).numpy()
    model_log10_e = np.log10(generated[:, 0].astype(np.float64))
    report = {
        **model_fields(model, args.model),
        "min_e0_gev": args.min_e0,
        "events": int(selected.sum()),
        "muons": int(per_muon.sum()),
        "model_muons": len(model_log10_e),
        "rejected_rows": dict(loaded.rejected),
        "failed_files": list(loaded.failed_files),
        "tail": tail_table(reference, model_log10_e, args.thresholds),
        "quantiles": {
            str(q): {"reference": float(np.quantile(reference, q)), "model": float(np.quantile(model_log10_e, q))}
            for q in QUANTILES
        } if len(reference) else {},
        "seed": args.seed,
        "seconds": round(time.perf_counter() - start, 2),
    }
    print_json(report)


if __name__ == "__main__":
    run(main)
