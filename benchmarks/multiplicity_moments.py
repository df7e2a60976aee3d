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
reference - 1; for P(0) the difference), ``*_rel_se`` (its standard error) and their ratio
``*_pull``: |pull| <~ 2 means the model's moment agrees with the reference within the
reference's own statistics. The standard error comes from ``--bootstrap`` resamplings of
whole **showers** (the depths of one air shower share its muons, so their N are correlated;
resampling single events would understate the error by up to sqrt(depths per shower)), and
each resampling recomputes both sides over the same events (paired): the error of the
difference, without the part that comes from which primaries happen to be in the sample.

One JSON object on stdout. Run: ``python benchmarks/multiplicity_moments.py --data TEST...``
(default model: the shipped default, `icecube`; ~2 s for 22 000 events). Without ``--data`` (as in ``make
bench``) it first simulates ``--sim-events`` reference events (``mubundle simulate`` physics at
the primaries of ``generate_throughput.py``): enough to run, not to test the model; the
figures in docs/pretrained.md use the test shards.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mubundle.benchmark_cli import integer, make_parser, model_fields, print_json, run, seed_int
from mubundle.evaluate.binning import VARIABLES, bins_for
from mubundle.evaluate.metrics import shower_ids

#: bins with fewer reference events report their count only
MIN_EVENTS = 50


def moments(weights: np.ndarray, counts: np.ndarray, mean: np.ndarray, variance: np.ndarray,
            p_zero: np.ndarray) -> dict[str, np.ndarray]:
    """Reference and model mean, variance and P(0) over events weighted by ``weights`` (R, n)
    (one row per resampling; a row of ones is the sample itself) -> each (R,)."""
    total = weights.sum(axis=1)

    def average(values: np.ndarray) -> np.ndarray:
        return weights @ values / total

    ref_mean, model_mean = average(counts), average(mean)
    return {
        "ref_mean": ref_mean, "ref_var": average(counts**2) - ref_mean**2, "ref_zero": average((counts == 0) * 1.0),
        # law of total variance over the events: <var_i> + <mu_i^2> - <mu_i>^2
        "model_mean": model_mean, "model_var": average(variance + mean**2) - model_mean**2,
        "model_zero": average(p_zero),
    }


def bin_entry(label: str, counts: np.ndarray, mean: np.ndarray, variance: np.ndarray, p_zero: np.ndarray,
              resample_weights: np.ndarray) -> dict[str, object]:
    """Figures of one bin: reference ``counts`` (n,), the model's per-event mean, variance and
    P(0) (n,) float64, ``resample_weights`` (R, n): how often each event is in each bootstrap
    resampling (whole showers: see :func:`shower_resample_weights`)."""
    if counts.size < MIN_EVENTS:
        return {"bin": label, "events": int(counts.size)}
    sample = {key: float(value[0]) for key, value in moments(np.ones((1, counts.size)), counts, mean, variance, p_zero).items()}
    boot = moments(resample_weights, counts, mean, variance, p_zero)
    entry: dict[str, object] = {"bin": label, "events": int(counts.size)}
    for name, key in (("mean", "mean"), ("variance", "var")):
        ref, model = sample[f"ref_{key}"], sample[f"model_{key}"]
        rel_diff = model / ref - 1.0 if ref > 0 else None
        with np.errstate(divide="ignore", invalid="ignore"):
            boot_diff = boot[f"model_{key}"] / boot[f"ref_{key}"] - 1.0
        finite = boot_diff[np.isfinite(boot_diff)]  # a resampling without any muon has no ratio
        rel_se = float(finite.std()) if rel_diff is not None and finite.size > 1 else None
        entry.update({
            f"{name}_reference": ref, f"{name}_model": model,
            f"{name}_rel_diff": rel_diff, f"{name}_rel_se": rel_se,
            f"{name}_pull": rel_diff / rel_se if rel_diff is not None and rel_se else None,
        })
    zero_diff = sample["model_zero"] - sample["ref_zero"]
    zero_se = float((boot["model_zero"] - boot["ref_zero"]).std())
    entry.update({
        "p_zero_reference": sample["ref_zero"], "p_zero_model": sample["model_zero"], "p_zero_diff": zero_diff,
        "p_zero_se": zero_se, "p_zero_pull": zero_diff / zero_se if zero_se > 0 else None,
    })
    return entry


def shower_resample_weights(showers: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(R, n) bootstrap weights of n events: each resampling draws the distinct showers of
    ``showers`` (n,) with replacement, and every event counts as often as its shower was drawn."""
    _, shower_of_event = np.unique(showers, return_inverse=True)
    n_showers = int(shower_of_event.max()) + 1 if showers.size else 0
    if n_showers == 0:
        return np.zeros((n_resamples, 0))
    drawn = rng.multinomial(n_showers, np.full(n_showers, 1.0 / n_showers), size=n_resamples)
    return drawn[:, shower_of_event.reshape(-1)].astype(np.float64)


def main() -> None:
    from generate_throughput import add_reference_arguments, reference_and_model  # benchmarks/ is sys.path[0]

    parser = make_parser(__doc__)
    add_reference_arguments(parser)
    parser.add_argument("--bootstrap", type=integer(2), default=200,
                        help="bootstrap resamplings of whole showers for the standard errors")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the bootstrap")
    args = parser.parse_args()
    started = time.perf_counter()
    reference, rejected, failed, model = reference_and_model(args)
    with torch.no_grad():
        features = model.transform.condition_features(
            torch.from_numpy(np.ascontiguousarray(reference.conditions, dtype=np.float32))
        )
        mean, variance = (t.double().numpy() for t in model.multiplicity.mean_variance(features))
        p_zero = model.multiplicity.log_prob(features, torch.zeros(len(reference), dtype=torch.int64)).exp()
        p_zero = p_zero.double().numpy()
    counts = reference.counts.astype(np.float64)
    showers = shower_ids(reference.conditions)
    rng = np.random.default_rng(args.seed)

    def figures(label: str, mask: np.ndarray) -> dict[str, object]:
        weights = shower_resample_weights(showers[mask], args.bootstrap, rng)
        return bin_entry(label, counts[mask], mean[mask], variance[mask], p_zero[mask], weights)

    result: dict[str, object] = {
        **model_fields(model, args.model),
        "reference": args.data or f"{args.sim_events} simulated events",
        "events": len(reference),
        "showers": int(np.unique(showers).size),
        "bootstrap": f"{args.bootstrap} resamplings of whole showers, paired (model and reference on the same events)",
        "rejected_rows": rejected,
        "failed_files": failed,
        "overall": figures("all events", np.ones(len(reference), dtype=bool)),
    }
    for variable in VARIABLES:
        result[variable] = [figures(b.label, b.mask(reference.conditions)) for b in bins_for(variable, reference.conditions)]
    result["seconds"] = round(time.perf_counter() - started, 1)
    print_json(result)


if __name__ == "__main__":
    run(main)
