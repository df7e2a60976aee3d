"""Validate the reference simulator against the checks of issue 3; prints a table and JSON.

1. Mean number of muons above 1 TeV at the surface vs the Elbert formula (PHYSICS.md) for
   p and Fe at 1e5, 1e6, 1e7 GeV, vertical and 60 deg (target: ratio within 0.65-1.35).
2. ``propagate_muons``: 1 TeV muons after 1 km of ice (mean 0.5 TeV +- 15 %), spread vs a
   mean-only model, survival after 3 km (target < 10 %).
3. Multiplicity fluctuations at a fixed primary: variance / Poisson variance (target > 1).

Usage: python benchmarks/validate_simulator.py [--scale 1.0] [--seed 0]
(--scale multiplies the shower counts; 1.0 takes ~5-10 min on one core.)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from mubundle.sim import propagate_muons
from mubundle.sim.config import SimConfig
from mubundle.sim.run import simulate_primaries

A_ICE, B_ICE = 0.24, 3.3e-4
#: showers per (mass, energy): enough for a ~5-10 % statistical error on the mean
SHOWERS = {(1.0, 1e5): 1000, (1.0, 1e6): 200, (1.0, 1e7): 40, (56.0, 1e5): 3000, (56.0, 1e6): 150, (56.0, 1e7): 20}


def elbert(energy_gev: float, mass: float, cos_zenith: float, muon_tev: float = 1.0) -> float:
    """Elbert formula, mean N_mu(> muon_tev) at the surface (Gaisser, Engel, Resconi)."""
    e0 = energy_gev / 1000.0
    return mass * 0.0145 / (muon_tev * cos_zenith) * (e0 / (mass * muon_tev)) ** 0.757 * (1 - mass * muon_tev / e0) ** 5.25


def elbert_table(scale: float, seed: int) -> list[dict]:
    config = replace(SimConfig(), min_energy=1000.0)
    rows = []
    for mass in (1.0, 56.0):
        for energy in (1e5, 1e6, 1e7):
            showers = SHOWERS[(mass, energy)]
            for zenith_deg in (0.0, 60.0):
                n = max(4, int(round(showers * scale)))
                start = time.perf_counter()
                batch = simulate_primaries(
                    np.full(n, energy), np.full(n, np.radians(zenith_deg)), np.full(n, mass), np.zeros(n),
                    seed=seed + int(mass * 1000 + np.log10(energy) * 10 + zenith_deg), config=config,
                )
                counts = batch.counts.astype(np.float64)
                expected = elbert(energy, mass, np.cos(np.radians(zenith_deg)))
                ratio = counts.mean() / expected
                rows.append({
                    "primary": "p" if mass == 1 else "Fe56", "energy_gev": energy, "zenith_deg": zenith_deg,
                    "showers": n, "mean_n_mu_gt_1tev": counts.mean(),
                    "stat_error": counts.std(ddof=1) / np.sqrt(n), "elbert": expected, "ratio": ratio,
                    "ratio_error": counts.std(ddof=1) / np.sqrt(n) / expected,
                    "within_35_percent": bool(abs(ratio - 1.0) <= 0.35),
                    "variance_over_poisson": counts.var(ddof=1) / counts.mean() if counts.mean() > 0 else float("nan"),
                    "seconds": time.perf_counter() - start,
                })
                print(f"{rows[-1]['primary']:>5} {energy:8.0e} {zenith_deg:5.0f}  {n:4d}  {counts.mean():8.3f} +- {rows[-1]['stat_error']:.3f}"
                      f"  {expected:8.3f}  {ratio:6.3f} +- {rows[-1]['ratio_error']:.3f}  {rows[-1]['variance_over_poisson']:6.2f}  {rows[-1]['seconds']:6.1f}s", flush=True)
    return rows


def propagation_checks(seed: int) -> dict:
    energies = np.full(100_000, 1000.0)
    after_1km = propagate_muons(energies, 1000.0, seed)
    after_3km = propagate_muons(energies, 3000.0, seed + 1)
    mean_only = (1000.0 + A_ICE / B_ICE) * np.exp(-B_ICE * 1000.0) - A_ICE / B_ICE
    return {
        "mean_after_1km_gev": float(after_1km.mean()),
        "mean_only_model_gev": float(mean_only),
        "mean_within_15_percent_of_500": bool(abs(after_1km.mean() / 500.0 - 1) <= 0.15),
        "std_after_1km_gev": float(after_1km.std()),
        "p5_p50_p95_after_1km_gev": [float(v) for v in np.percentile(after_1km, [5, 50, 95])],
        "mean_only_std_gev": 0.0,
        "survival_after_3km": float((after_3km > 0).mean()),
        "survival_below_10_percent": bool((after_3km > 0).mean() < 0.10),
        "survival_after_2km": float((propagate_muons(energies, 2000.0, seed + 2) > 0).mean()),
    }


def fluctuation_check(scale: float, seed: int) -> dict:
    """Multiplicity at 1.5 km vertical for 1 PeV protons and 1 PeV iron (defaults otherwise)."""
    out = {}
    for name, mass in (("p", 1.0), ("Fe56", 56.0)):
        n = max(10, int(round(150 * scale)))
        batch = simulate_primaries(np.full(n, 1e6), np.zeros(n), np.full(n, mass), np.full(n, 1.5), seed=seed + 7 + int(mass))
        counts = batch.counts.astype(np.float64)
        out[name] = {"showers": n, "mean": counts.mean(), "variance": counts.var(ddof=1),
                     "variance_over_poisson": counts.var(ddof=1) / counts.mean() if counts.mean() > 0 else float("nan")}
        print(f"fluctuations {name} 1e6 GeV, 1.5 km vertical: mean {counts.mean():.2f}, var/mean {out[name]['variance_over_poisson']:.2f} ({n} showers)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply all shower counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    print("primary   E0[GeV] zen[deg] showers  N_mu(>1TeV) sim        Elbert   ratio          var/mean  time")
    rows = elbert_table(args.scale, args.seed)
    propagation = propagation_checks(args.seed)
    print("propagate_muons:", json.dumps(propagation))
    fluctuations = fluctuation_check(args.scale, args.seed)
    result = {
        "benchmark": "validate_simulator",
        "interaction_model": SimConfig().interaction_model,
        "elbert": rows,
        "elbert_all_within_35_percent": all(r["within_35_percent"] for r in rows),
        "propagate_muons": propagation,
        "fluctuations_1pev_1p5km": fluctuations,
        "seconds": time.perf_counter() - start,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
