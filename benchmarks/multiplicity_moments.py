"""The multiplicity model's exact moments against the reference's sample moments.

``mubundle evaluate`` compares the *sampled* N of the model with the reference, so its
``multiplicity.mean`` / ``.variance`` / ``.p_zero`` distances carry the sampling noise of
the generated events as well as any error of the model. Here the model's moments over the
reference events' own conditions are computed exactly from the negative-binomial mixture
(no sampling):

    mean  = <mu_i>,   variance = <var_i> + var(mu_i),   P(N = 0) = <p0_i>

(mu_i, var_i, p0_i: the mixture's mean, variance and P(0) for event i; <.> = average over the
reference events), and compared with the reference's sample mean, variance and zero fraction.
Per bin of E0, A, cos(zenith) and slant depth (and overall) it prints ``*_rel_diff`` (model /
reference - 1; for P(0) the difference) and ``*_rel_se`` (the standard error of the reference
figure from ``--bootstrap`` resamplings of whole events; showers that gave several events are
correlated, so it is a lower bound) and their ratio ``*_pull``: |pull| <~ 2 means the model's
moment agrees with the reference within the reference's own statistics.

One JSON object on stdout. Run: ``python benchmarks/multiplicity_moments.py --data TEST...``
(default model: the shipped one; ~2 s for 22 000 events). Without ``--data`` (as in ``make
bench``) it first simulates ``--sim-events`` reference events (``mubundle simulate`` physics at
the primaries of ``generate_throughput.py``): enough to run, not to test the model; the
figures in docs/pretrained.md use the test shards.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from mubundle.evaluate.binning import VARIABLES, bins_for
from mubundle.generate.api import load_model

#: bins with fewer reference events report their count only
MIN_EVENTS = 50


def bin_entry(label: str, counts: np.ndarray, mean: np.ndarray, variance: np.ndarray, p_zero: np.ndarray,
              resamples: np.ndarray) -> dict[str, object]:
    """Figures of one bin: reference ``counts`` (n,), the model's per-event mean, variance and
    P(0) (n,) float64, ``resamples`` (R, n) bootstrap indices into the bin."""
    if counts.size < MIN_EVENTS:
        return {"bin": label, "events": int(counts.size)}
    ref_mean, ref_var, ref_zero = counts.mean(), counts.var(), float(np.mean(counts == 0))
    boot = counts[resamples]
    mean_se, var_se = boot.mean(axis=1).std(), boot.var(axis=1).std()
    zero_se = np.mean(boot == 0, axis=1).std()
    model_mean = float(mean.mean())
    model_var = float(variance.mean() + mean.var())
    model_zero = float(p_zero.mean())
    entry: dict[str, object] = {"bin": label, "events": int(counts.size)}
    for name, model, ref, se in (("mean", model_mean, ref_mean, mean_se), ("variance", model_var, ref_var, var_se)):
        rel_diff = model / ref - 1.0 if ref > 0 else None
        rel_se = se / ref if ref > 0 else None
        entry.update({
            f"{name}_reference": float(ref), f"{name}_model": model,
            f"{name}_rel_diff": rel_diff, f"{name}_rel_se": rel_se,
            f"{name}_pull": rel_diff / rel_se if rel_diff is not None and rel_se else None,
        })
    entry.update({
        "p_zero_reference": ref_zero, "p_zero_model": model_zero, "p_zero_diff": model_zero - ref_zero,
        "p_zero_se": float(zero_se), "p_zero_pull": (model_zero - ref_zero) / zero_se if zero_se > 0 else None,
    })
    return entry


def main() -> None:
    from generate_throughput import add_reference_arguments, reference_events  # benchmarks/ is sys.path[0]

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_reference_arguments(parser)
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamplings for the standard errors")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    reference, rejected, failed = reference_events(args.data, args.sim_events)
    model = load_model(args.model)
    with torch.no_grad():
        features = model.transform.condition_features(
            torch.from_numpy(np.ascontiguousarray(reference.conditions, dtype=np.float32))
        )
        mean, variance = (t.double().numpy() for t in model.multiplicity.mean_variance(features))
        p_zero = model.multiplicity.log_prob(features, torch.zeros(len(reference), dtype=torch.int64)).exp()
        p_zero = p_zero.double().numpy()
    counts = reference.counts.astype(np.float64)
    rng = np.random.default_rng(args.seed)

    def figures(label: str, mask: np.ndarray) -> dict[str, object]:
        n = int(mask.sum())
        resamples = rng.integers(0, n, size=(args.bootstrap, n)) if n else np.zeros((0, 0), dtype=np.int64)
        return bin_entry(label, counts[mask], mean[mask], variance[mask], p_zero[mask], resamples)

    result: dict[str, object] = {
        "model": args.model or "shipped default",
        "reference": args.data or f"{args.sim_events} simulated events",
        "events": len(reference),
        "bootstrap": args.bootstrap,
        "rejected_rows": rejected,
        "failed_files": failed,
        "overall": figures("all events", np.ones(len(reference), dtype=bool)),
    }
    for variable in VARIABLES:
        result[variable] = [figures(b.label, b.mask(reference.conditions)) for b in bins_for(variable, reference.conditions)]
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
