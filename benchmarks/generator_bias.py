"""Conditional accuracy of the generator alone, given each reference event's TRUE multiplicity.

``mubundle evaluate`` compares full samples (multiplicity model + generator), where a muon
energy distance mixes both. Here the generator gets the reference events' own conditions
and N (``MuonBundleModel.sample_muons``), ``--seeds`` times, so each generated muon has a
reference twin with the same event, and differences are the generator's alone. Per bin of
N (the reference multiplicity), E0, A, cos(zenith) and slant depth it prints:

- ``mean_shift_dex``: mean log10(E_mu / GeV) of generated minus reference muons, averaged
  over the seeds; ``reference_se_dex``: the standard error of the reference mean (a shift
  within ~2 of it is noise); ``seed_sd_dex``: spread of the shift over the generation seeds;
- ``width_ratio``: standard deviation of generated / reference log10 E_mu;
- ``radius_median_ratio``: median muon radius generated / reference.

One JSON object on stdout. Run: ``python benchmarks/generator_bias.py --data VAL...``
(default model: the shipped default, `icecube`; ~2 s for 11 000 events and 4 seeds on 2 cores). Without
``--data`` (as in ``make bench``) it first simulates ``--sim-events`` reference events
(``mubundle simulate`` physics at the primaries of ``generate_throughput.py``, ~0.07 s per
event): enough to run, too few for the rare bins; the figures in docs/pretrained.md use the
validation shards.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mubundle.benchmark_cli import make_parser, model_fields, positive_int, print_json, run
from mubundle.evaluate.binning import VARIABLES, bins_for

#: reference-multiplicity bins [low, high)
MULTIPLICITY_EDGES = (1, 2, 5, 20, 100, 1000, np.inf)
#: bins with fewer reference muons report their count only
MIN_MUONS = 20


def multiplicity_label(low: float, high: float) -> str:
    if high == low + 1:
        return f"N = {low:g}"
    return f"N {low:g}-{high - 1:g}" if np.isfinite(high) else f"N >= {low:g}"


def bin_entry(label: str, mask: np.ndarray, reference: np.ndarray, generated: np.ndarray,
              reference_radius: np.ndarray, generated_radius: np.ndarray) -> dict[str, object]:
    """Figures of the muons selected by ``mask`` (M,): reference (M,), generated (S, M) log10 E."""
    ref, gen = reference[mask], generated[:, mask]
    if ref.size < MIN_MUONS:
        return {"bin": label, "muons": int(ref.size)}
    shifts = gen.mean(axis=1) - ref.mean()
    return {
        "bin": label,
        "muons": int(mask.sum()),
        "mean_shift_dex": float(shifts.mean()),
        "reference_se_dex": float(ref.std() / np.sqrt(max(ref.size, 1))),
        "seed_sd_dex": float(shifts.std()),
        "width_ratio": float(gen.std() / ref.std()) if ref.std() > 0 else None,
        "radius_median_ratio": float(np.median(generated_radius[:, mask]) / np.median(reference_radius[mask])),
    }


def main() -> None:
    from generate_throughput import add_reference_arguments, reference_and_model  # benchmarks/ is sys.path[0]

    parser = make_parser(__doc__)
    add_reference_arguments(parser)
    parser.add_argument("--seeds", type=positive_int, default=4, help="generation seeds per reference event")
    args = parser.parse_args()
    started = time.perf_counter()
    reference, rejected, failed, model = reference_and_model(args)
    conditions = torch.from_numpy(np.ascontiguousarray(reference.conditions, dtype=np.float32))
    counts = torch.from_numpy(reference.counts.astype(np.int64))
    ref_log_e = np.log10(reference.flat_muons[:, 0])
    ref_radius = np.hypot(reference.flat_muons[:, 1], reference.flat_muons[:, 2])
    gen_log_e, gen_radius = [], []
    for seed in range(args.seeds):
        muons = model.sample_muons(conditions, counts, torch.Generator().manual_seed(seed)).numpy()
        gen_log_e.append(np.log10(muons[:, 0]))
        gen_radius.append(np.hypot(muons[:, 1], muons[:, 2]))
    generated, generated_radius = np.stack(gen_log_e), np.stack(gen_radius)

    event_of_muon = reference.event_index
    muon_conditions = reference.conditions[event_of_muon]
    muon_counts = reference.counts[event_of_muon]
    figures = lambda label, mask: bin_entry(label, mask, ref_log_e, generated, ref_radius, generated_radius)  # noqa: E731
    result: dict[str, object] = {
        **model_fields(model, args.model),
        "reference": args.data or f"{args.sim_events} simulated events",
        "events": len(reference),
        "muons": int(reference.n_muons),
        "seeds": args.seeds,
        "rejected_rows": rejected,
        "failed_files": failed,
        "overall": figures("all muons", np.ones(ref_log_e.size, dtype=bool)),
        "multiplicity": [
            figures(multiplicity_label(lo, hi), (muon_counts >= lo) & (muon_counts < hi))
            for lo, hi in zip(MULTIPLICITY_EDGES[:-1], MULTIPLICITY_EDGES[1:])
        ],
    }
    for variable in VARIABLES:
        result[variable] = [figures(b.label, b.mask(muon_conditions)) for b in bins_for(variable, reference.conditions)]
    result["seconds"] = round(time.perf_counter() - started, 1)
    print_json(result)


if __name__ == "__main__":
    run(main)
