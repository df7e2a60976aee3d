"""Validate the reference simulator against the checks of issue 3; prints ONE JSON object on
stdout, and tables and progress lines on stderr.

1. Mean number of muons above 1 TeV at the surface vs the Elbert formula (PHYSICS.md) for
   p and Fe at 1e5, 1e6, 1e7 GeV, vertical and 60 deg (target: ratio within 0.65-1.35).
2. ``propagate_muons``: 1 TeV muons after 1 km of ice (mean 0.5 TeV +- 15 %), spread vs a
   mean-only model, survival after 3 km (target < 10 %).
3. Multiplicity fluctuations at a fixed primary: variance / Poisson variance (target > 1).
4. ``anchors`` (issue 22): flux-weighted simulations (``simulate --flux H3a``, reweighted to
   GSF) over E0 3e2-1e9 GeV against published depth-intensity parameterisations: vertical
   muon intensity at 1.5-3 km w.e. of ice (MUPAGE, MuonGun H4a/SIBYLL tables, daemonflux),
   single-muon fraction, mean single-muon energy, I(60)/I(0), lateral distance in two-muon
   bundles; 1 TeV muons in ice (mean after 1 km, survival after 1/2/3 km); the same in sea
   water (``anchors-water``: KM3NeT/ARCA site).
   Every anchor carries a statistical error in the JSON (``stat_error``: the weighted-variance
   formula, linearised for weighted means and ratios; ``bootstrap_error``: seeded bootstrap
   over showers, 200 replicas) and every pass/fail line prints value +- error.
5. ``geometry``: flat vs curved atmosphere (ground depth, distance to 50/150/300 g/cm^2) and
   flat vs spherical overburden per zenith: where the flat shortcut agrees within 1 %.

Usage: python benchmarks/validate_simulator.py [--scale 1.0] [--seed 0]
       [--sections elbert,propagation,fluctuations,anchors,anchors-water,geometry]
       [--anchor-showers 20000] [--out FILE.json]
(--scale multiplies the Elbert/fluctuation shower counts; 1.0 takes ~5-10 min on one core.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from mubundle.benchmark_cli import finite_float, json_safe, make_parser, positive_float, positive_int, print_json, run, seed_int
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
                    **_variance_over_poisson(counts),
                    "seconds": time.perf_counter() - start,
                })
                print(f"{rows[-1]['primary']:>5} {energy:8.0e} {zenith_deg:5.0f}  {n:4d}  {counts.mean():8.3f} +- {rows[-1]['stat_error']:.3f}"
                      f"  {expected:8.3f}  {ratio:6.3f} +- {rows[-1]['ratio_error']:.3f}  {_text(rows[-1]['variance_over_poisson'])}  "
                      f"{rows[-1]['seconds']:6.1f}s", flush=True)
    return rows


def _variance_over_poisson(counts: np.ndarray) -> dict:
    """``variance_over_poisson`` of a sample of multiplicities; None with a reason where it has none."""
    if counts.mean() > 0:
        return {"variance_over_poisson": float(counts.var(ddof=1) / counts.mean())}
    return {"variance_over_poisson": None, "variance_over_poisson_reason": "no muon in any shower (more showers: --scale)"}


def _text(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.2f}"


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
                     **_variance_over_poisson(counts)}
        print(f"fluctuations {name} 1e6 GeV, 1.5 km vertical: mean {counts.mean():.2f}, "
              f"var/mean {_text(out[name]['variance_over_poisson']).strip()} ({n} showers)", flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# Depth-intensity anchors (issue 22). Reference values as given in issue 22, from published
# parameterisations: MUPAGE (Becherini et al., Astropart. Phys. 25 (2006) 1, hep-ph/0507228;
# Carminati et al., Comput. Phys. Commun. 179 (2008) 915), IceCube MuonGun's H4a/SIBYLL
# tables, daemonflux with continuous losses (Yanez & Fedynitch, PRD 107 (2023) 123037).
# Vertical muon intensity (muons, not bundles) in cm^-2 s^-1 sr^-1 at km water-equivalent.
MUPAGE = {1.5: 2.58e-7, 2.0: 9.90e-8, 2.5: 4.46e-8, 3.0: 2.22e-8}
MUONGUN_H4A = {1.5: 2.30e-7, 2.0: 8.92e-8, 2.5: 4.02e-8}
DAEMONFLUX = {1.5: 2.69e-7, 2.0: 1.05e-7, 2.5: 4.72e-8, 3.0: 2.31e-8}
INTENSITY_TOLERANCE = 0.30
SINGLE_FRACTION_RANGE = (0.78, 0.92)
SINGLE_MEAN_ENERGY_GEV, SINGLE_MEAN_ENERGY_TOLERANCE = 207.0, 0.20
RATIO_60_0, RATIO_60_0_TOLERANCE = 0.145, 0.25
PAIR_LATERAL_RANGE_M = (7.0, 16.0)
ANCHOR_ENERGY_RANGE = (3e2, 1e9)
MASS_TO_GROUP = {1: 0, 4: 1, 14: 2, 27: 3, 56: 4}


BOOTSTRAP_REPLICAS = 200
def muon_intensity(weights_hz: np.ndarray, counts: np.ndarray, area_m2: float,
                   zenith_range_rad: tuple[float, float]) -> tuple[float, float]:
    """Muon intensity [cm^-2 s^-1 sr^-1] and its statistical error from flux-weighted events.

    ``weights_hz`` (B,): each event's rate (Hz) through a disc of ``area_m2`` perpendicular to
    the shower axis (``simulate --flux`` / ``generate --flux``, docs/generation.md); ``counts``
    (B,): muons of each event; the events are those of ONE depth whose zenith lies in
    ``zenith_range_rad`` (directions uniform in cos zenith over the band). Muons, not bundles:
    I = sum_i w_i N_i / (A Omega), error sqrt(sum_i (w_i N_i)^2) / (A Omega), with
    Omega = 2 pi (cos lo - cos hi) the band's solid angle.
    """
    solid_angle = 2 * np.pi * (np.cos(zenith_range_rad[0]) - np.cos(zenith_range_rad[1]))
    area_cm2 = area_m2 * 1e4
    weighted = np.asarray(weights_hz, dtype=np.float64) * np.asarray(counts, dtype=np.float64)
    return float(weighted.sum() / (area_cm2 * solid_angle)), weighted_sum_error(weighted) / (area_cm2 * solid_angle)


def _within(value: float, reference: float, tolerance: float) -> bool:
    return bool(abs(value / reference - 1.0) <= tolerance)


def weighted_sum_error(contributions: np.ndarray) -> float:
    """Statistical error of a sum of independent per-shower contributions c_i (e.g. w_i N_i for an
    intensity): sqrt(sum c_i^2), the variance of a weighted Poisson sum."""
    contributions = np.asarray(contributions, dtype=np.float64)
    return float(np.sqrt(np.sum(contributions * contributions)))


def weighted_mean_and_error(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted mean m = sum w x / sum w of independent events (one per shower) and its error,
    the linearised variance of the ratio estimator: sqrt(sum w^2 (x - m)^2) / sum w.

    A fraction is the weighted mean of an indicator (x in {0, 1}). Equal weights give the
    usual sqrt(sum (x - m)^2) / n. NaN for no events or zero total weight."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum()
    if values.size == 0 or not total > 0:
        return float("nan"), float("nan")
    mean = float((weights * values).sum() / total)
    return mean, float(np.sqrt(np.sum(weights * weights * (values - mean) ** 2)) / total)


def shower_bootstrap(statistic: Callable[[np.ndarray], float], n_showers: int, seed: int,
                     replicas: int = BOOTSTRAP_REPLICAS) -> float:
    """Standard deviation (ddof 1) of ``statistic(indices)`` over ``replicas`` resamples of the
    ``n_showers`` showers with replacement (``indices`` (n_showers,) int; seeded: same seed, same
    error). NaN if fewer than two replicas give a finite value."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n_showers, n_showers)) for _ in range(replicas)], dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size >= 2 else float("nan")


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _run_flux_simulation(config: SimConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """All chunks of the flux-mode dataset ``config`` in memory: conditions (B,4), counts (B,),
    weights (B,) Hz, flat muons (M,3), offsets (B+1,), CPU seconds."""
    from mubundle.sim.run import simulate_chunk

    parts = []
    start = time.process_time()
    for chunk in range(config.n_chunks):
        t0 = time.perf_counter()
        batch = simulate_chunk(config, chunk)
        parts.append(batch)
        print(f"  chunk {chunk + 1}/{config.n_chunks}: {len(batch)} events, {int(batch.counts.sum())} muons, "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
    from mubundle.data.batch import RaggedBatch

    batch = RaggedBatch.concat(parts)
    offsets = np.concatenate([[0], np.cumsum(batch.counts)])
    return batch.conditions.astype(np.float64), batch.counts, batch.weights, batch.flat_muons.astype(np.float64), offsets, time.process_time() - start


def _gsf_factor(conditions: np.ndarray) -> np.ndarray | None:
    """Per event Phi_GSF / Phi_H3a of its mass group at its energy (importance reweighting of the
    same showers: both models have all five groups, so the generation densities are equal)."""
    from mubundle.sim.fluxmode import group_flux

    try:
        gsf, h3a = group_flux("GSF"), group_flux("H3a")
    except ValueError as error:  # GSF needs the optional globalsplinefit package
        print(f"  GSF reweighting skipped: {error}", flush=True)
        return None
    group = np.array([MASS_TO_GROUP[int(round(a))] for a in conditions[:, 2]])
    return gsf.flux(conditions[:, 0], group) / h3a.flux(conditions[:, 0], group)


def depth_anchors(site_name: str, showers: int, gamma: float, seed: int, inclined_run: bool = True) -> dict:
    """Flux-weighted (H3a, and GSF by reweighting) anchors at ``site_name`` (see module docstring)."""
    from mubundle.sim.site import get_site

    site = get_site(site_name)
    rho = site.medium.gcm2_per_km / 1e5  # km of medium per km w.e. = 1 / rho
    kmwe = (1.5, 2.0, 2.5, 3.0)
    medium_two_km = 2.0  # "2 km of ice" (of sea water at the KM3NeT sites)
    depths = tuple(sorted({round(d / rho, 6) for d in kmwe} | {medium_two_km}))
    base = SimConfig(showers=showers, energy_range=ANCHOR_ENERGY_RANGE, spectral_index=gamma, min_energy=1.0,
                     flux="H3a", site=site_name, seed=seed + 22)
    out: dict = {"site": site_name, "medium": site.medium.name, "showers": showers, "generation_gamma": gamma,
                 "energy_range_gev": list(ANCHOR_ENERGY_RANGE), "flux": "H3a (+ GSF by reweighting)"}

    vertical = replace(base, zenith_range_deg=(0.0, 5.0), depths_km=depths)
    print(f"anchors {site_name}: vertical 0-5 deg, depths {depths} km, {showers} showers, E^-{gamma}", flush=True)
    cond, counts, weights, muons, offsets, cpu = _run_flux_simulation(vertical)
    out["vertical_cpu_seconds"] = cpu
    n_depths = len(depths)
    depth_index = np.arange(len(counts)) % n_depths
    factors = {"H3a": np.ones(len(counts))}
    gsf = _gsf_factor(cond)
    if gsf is not None:
        factors["GSF"] = gsf
    intensity: dict = {}
    for flux_name, factor in factors.items():
        rows = []
        for d in kmwe:
            j = depths.index(round(d / rho, 6))
            sel = depth_index == j
            band = (0.0, np.radians(5.0))
            value, error = muon_intensity(weights[sel] * factor[sel], counts[sel], vertical.area_m2, band)
            wn = weights[sel] * factor[sel] * counts[sel]  # one event per shower at this depth
            per_hz = 1.0 / (vertical.area_m2 * 1e4 * 2 * np.pi * (1.0 - np.cos(band[1])))  # Hz -> cm^-2 s^-1 sr^-1
            boot = shower_bootstrap(lambda idx: wn[idx].sum() * per_hz, wn.size, seed + 1000 + j)
            row = {"km_we": d, "medium_km": round(d / rho, 4), "intensity": value, "stat_error": error,
                   "bootstrap_error": boot, "events_with_muons": int((counts[sel] > 0).sum())}
            verdicts = []
            for ref_name, ref in (("mupage", MUPAGE), ("muongun_h4a", MUONGUN_H4A), ("daemonflux", DAEMONFLUX)):
                if d in ref:
                    row[f"ratio_{ref_name}"] = value / ref[d]
                    row[f"ratio_{ref_name}_stat_error"] = error / ref[d]
                    row[f"within_30_percent_{ref_name}"] = _within(value, ref[d], INTENSITY_TOLERANCE)
                    verdicts.append(f"{ref_name} {ref[d]:.2e} ratio {value / ref[d]:.2f} +- {error / ref[d]:.2f} "
                                    f"{_verdict(row[f'within_30_percent_{ref_name}'])}")
            rows.append(row)
            print(f"  {flux_name} I({d} km w.e.) = {value:.3e} +- {error:.1e} cm^-2 s^-1 sr^-1 (+-30 %: "
                  f"{'; '.join(verdicts)})", flush=True)
        intensity[flux_name] = rows
    out["vertical_intensity"] = intensity

    # single-muon fraction at 2 km w.e.; single-muon energy and two-muon lateral distance at 2 km of medium
    # Each shower gives one event per depth, so the events at one depth are independent and the
    # bootstrap resamples them (with the showers without muons, whose number fluctuates too).
    j2we = depths.index(round(2.0 / rho, 6))
    at_2we = np.flatnonzero(depth_index == j2we)
    n_2we, w_2we = counts[at_2we], weights[at_2we]

    def single_fraction(idx: np.ndarray) -> float:
        hit = n_2we[idx] > 0
        return weighted_mean_and_error((n_2we[idx][hit] == 1).astype(np.float64), w_2we[idx][hit])[0]

    hit = n_2we > 0
    single, single_error = weighted_mean_and_error((n_2we[hit] == 1).astype(np.float64), w_2we[hit])
    single_passed = bool(SINGLE_FRACTION_RANGE[0] <= single <= SINGLE_FRACTION_RANGE[1])
    out["single_muon_fraction_2kmwe"] = {"value": single, "stat_error": single_error,
                                         "bootstrap_error": shower_bootstrap(single_fraction, at_2we.size, seed + 2001),
                                         "range": list(SINGLE_FRACTION_RANGE), "passed": single_passed,
                                         "events_with_muons": int(hit.sum())}
    j2 = depths.index(medium_two_km)
    at_2 = np.flatnonzero(depth_index == j2)
    n_2, w_2 = counts[at_2], weights[at_2]
    lead_energy = np.where(n_2 > 0, muons[np.minimum(offsets[at_2], len(muons) - 1), 0] if len(muons) else 0.0, np.nan)

    def single_energy(idx: np.ndarray) -> float:
        one = n_2[idx] == 1
        return weighted_mean_and_error(lead_energy[idx][one], w_2[idx][one])[0]

    one = n_2 == 1
    mean_energy, mean_energy_error = weighted_mean_and_error(lead_energy[one], w_2[one])
    energy_passed = _within(mean_energy, SINGLE_MEAN_ENERGY_GEV, SINGLE_MEAN_ENERGY_TOLERANCE)
    out["single_muon_mean_energy_2km_gev"] = {"value": mean_energy, "stat_error": mean_energy_error,
                                             "bootstrap_error": shower_bootstrap(single_energy, at_2.size, seed + 2002),
                                             "reference": SINGLE_MEAN_ENERGY_GEV, "passed": energy_passed,
                                             "events": int(one.sum())}
    two = n_2 == 2
    radius = np.full(at_2.size, np.nan)
    separation = np.full(at_2.size, np.nan)
    if two.any():
        first, second = muons[offsets[at_2[two]]], muons[offsets[at_2[two]] + 1]
        radius[two] = 0.5 * (np.hypot(first[:, 1], first[:, 2]) + np.hypot(second[:, 1], second[:, 2]))
        separation[two] = np.hypot(first[:, 1] - second[:, 1], first[:, 2] - second[:, 2])

    def pair_distance(idx: np.ndarray) -> float:
        pair = n_2[idx] == 2
        return weighted_mean_and_error(radius[idx][pair], w_2[idx][pair])[0]

    lateral, lateral_error = weighted_mean_and_error(radius[two], w_2[two])
    lateral_passed = bool(PAIR_LATERAL_RANGE_M[0] <= lateral <= PAIR_LATERAL_RANGE_M[1])
    out["pair_mean_distance_to_axis_2km_m"] = {"value": lateral, "stat_error": lateral_error,
                                              "bootstrap_error": shower_bootstrap(pair_distance, at_2.size, seed + 2003),
                                              "range": list(PAIR_LATERAL_RANGE_M), "passed": lateral_passed,
                                              "events": int(two.sum()),
                                              "mean_pair_separation_m": weighted_mean_and_error(separation[two], w_2[two])[0]}
    print(f"  single-muon fraction at 2 km w.e. {single:.3f} +- {single_error:.3f} (target {SINGLE_FRACTION_RANGE[0]}-"
          f"{SINGLE_FRACTION_RANGE[1]}): {_verdict(single_passed)}", flush=True)
    print(f"  single-muon mean energy at {medium_two_km:g} km {mean_energy:.1f} +- {mean_energy_error:.1f} GeV "
          f"(target {SINGLE_MEAN_ENERGY_GEV:g} +- {SINGLE_MEAN_ENERGY_TOLERANCE:.0%}): {_verdict(energy_passed)}", flush=True)
    print(f"  two-muon mean distance to axis at {medium_two_km:g} km {lateral:.2f} +- {lateral_error:.2f} m "
          f"(target {PAIR_LATERAL_RANGE_M[0]:g}-{PAIR_LATERAL_RANGE_M[1]:g} m): {_verdict(lateral_passed)}", flush=True)

    if not inclined_run:
        return out
    inclined = replace(base, zenith_range_deg=(59.0, 61.0), depths_km=(round(2.0 / rho, 6),), seed=seed + 60)
    print(f"anchors {site_name}: 59-61 deg at 2 km w.e. vertical, {showers} showers", flush=True)
    cond60, counts60, weights60, _, _, cpu60 = _run_flux_simulation(inclined)
    out["inclined_cpu_seconds"] = cpu60
    band = 2 * np.pi * (np.cos(np.radians(59.0)) - np.cos(np.radians(61.0)))  # solid angles [sr] of the two runs
    solid_angle = 2 * np.pi * (1.0 - np.cos(np.radians(5.0)))
    wn60 = weights60 * counts60
    i60, i60_error = muon_intensity(weights60, counts60, inclined.area_m2, (np.radians(59.0), np.radians(61.0)))
    i0 = next(r for r in intensity["H3a"] if r["km_we"] == 2.0)
    if i0["intensity"] > 0:  # the two runs are independent: relative errors add in quadrature
        ratio = i60 / i0["intensity"]
        ratio_error = ratio * np.hypot(i60_error / i60 if i60 > 0 else 0.0, i0["stat_error"] / i0["intensity"])
    else:  # no vertical muon at 2 km w.e. (a run far too small): no ratio
        ratio, ratio_error = float("nan"), float("nan")
    wn0 = weights[at_2we] * counts[at_2we]

    def ratio_replica(idx: np.ndarray) -> float:  # resample both runs' showers (independent streams)
        idx60 = shower_rng.integers(0, wn60.size, wn60.size)
        denominator = wn0[idx].sum() / solid_angle
        return (wn60[idx60].sum() / band) / denominator if denominator > 0 else float("nan")

    shower_rng = np.random.default_rng(seed + 2004)
    ratio_passed = _within(ratio, RATIO_60_0, RATIO_60_0_TOLERANCE)
    out["ratio_60_0_2kmwe"] = {"value": ratio, "stat_error": ratio_error,
                               "bootstrap_error": shower_bootstrap(ratio_replica, wn0.size, seed + 2005),
                               "intensity_60": i60, "intensity_60_stat_error": i60_error, "reference": RATIO_60_0,
                               "passed": ratio_passed}
    print(f"  I(60)/I(0) at 2 km w.e. = {ratio:.3f} +- {ratio_error:.3f} (target {RATIO_60_0} +- "
          f"{RATIO_60_0_TOLERANCE:.0%}): {_verdict(ratio_passed)}", flush=True)
    return out


def single_muon_anchors(seed: int) -> dict:
    """1 TeV muons in ice (and in sea water over the same g/cm^2): mean after 1 km, survival after 1/2/3 km."""
    from mubundle.sim.site import ICE, SEA_WATER

    energies = np.full(100_000, 1000.0)
    out = {}
    for medium in (ICE, SEA_WATER):
        scale = ICE.gcm2_per_km / medium.gcm2_per_km  # km of this medium per km of ice
        after = {km: propagate_muons(energies, 1000.0 * km * scale, seed + int(km), medium=medium) for km in (1, 2, 3)}
        survival = {km: float((after[km] > 0).mean()) for km in (1, 2, 3)}
        mean = float(after[1].mean())
        n = energies.size
        out[medium.name] = {
            "distance_per_ice_km_m": 1000.0 * scale,
            "mean_after_1km_gev": mean, "mean_after_1km_stat_error_gev": float(after[1].std(ddof=1) / np.sqrt(n)),
            "mean_passed": _within(mean, 522.0, 0.08),
            "survival": survival,
            "survival_stat_error": {km: float(np.sqrt(p * (1.0 - p) / n)) for km, p in survival.items()},  # binomial
            "survival_passed": {1: 0.94 <= survival[1] <= 1.0, 2: 0.72 <= survival[2] <= 0.92, 3: 0.15 <= survival[3] <= 0.45},
        }
    return out


def geometry_checks() -> dict:
    """Flat vs curved: ratio of the flat-earth to the curved value per zenith angle."""
    from mubundle.sim.earth import CurvedAxes, FlatAxes, overburden_slant_km
    from mubundle.sim.site import MUONITRON_RADIUS_M

    zenith = np.array([0, 20, 40, 50, 55, 60, 62, 65, 68, 70, 72, 75, 80, 85, 89], dtype=float)
    cos = np.cos(np.radians(zenith))
    out: dict = {"zenith_deg": zenith.tolist()}
    for name, altitude in (("icecube_2835m", 2835.0), ("sea_level", 0.0)):
        curved, flat = CurvedAxes(cos, altitude), FlatAxes(cos, altitude)
        shower = np.arange(zenith.size)
        rows = {"ground_depth_ratio": (flat.ground_depth / curved.ground_depth).tolist()}
        for depth in (50.0, 150.0, 300.0):
            x = np.full(zenith.size, depth)
            rows[f"distance_ratio_at_{depth:g}_gcm2"] = (
                (flat.height_of_slant_depth(x, shower) - altitude) / (curved.height_of_slant_depth(x, shower) - altitude)
            ).tolist()
        worst = np.max(np.abs(np.array(list(rows.values())) - 1.0), axis=0)
        rows["max_zenith_within_1_percent_deg"] = float(zenith[np.flatnonzero(worst <= 0.01)].max())
        out[name] = rows
    for vertical in (1.5, 2.5):
        ratio = (vertical / cos) / overburden_slant_km(vertical, cos, MUONITRON_RADIUS_M)
        out[f"overburden_flat_over_spherical_{vertical}km"] = ratio.tolist()
        out[f"overburden_max_zenith_within_1_percent_{vertical}km"] = float(zenith[np.flatnonzero(np.abs(ratio - 1) <= 0.01)].max())
    return out


#: the sections of --sections, in the order of the module docstring
SECTIONS = ("elbert", "propagation", "fluctuations", "anchors", "anchors-water", "geometry")


def parse_sections(text: str) -> set[str]:
    """argparse type of --sections: comma-separated names of :data:`SECTIONS`, at least one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"must be comma-separated names of {', '.join(SECTIONS)}, got {text!r}")
    return set(names)


def main() -> None:
    from mubundle.argtypes import SPECTRAL_INDEX_RANGE

    parser = make_parser(__doc__)
    parser.add_argument("--scale", type=positive_float, default=1.0, help="multiply the Elbert/fluctuation shower counts")
    parser.add_argument("--seed", type=seed_int, default=0, help="first seed of the simulations")
    parser.add_argument("--sections", type=parse_sections, default="elbert,propagation,fluctuations,anchors,geometry",
                        help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--anchor-showers", type=positive_int, default=20000, help="showers per flux-weighted anchor simulation")
    parser.add_argument("--anchor-gamma", type=finite_float(*SPECTRAL_INDEX_RANGE), default=2.0,
                        help="generation spectrum E^-G of the anchor simulations")
    parser.add_argument("--anchor-no-inclined", action="store_true", help="skip the 60 deg run of the anchors")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here (default: stdout only)")
    args = parser.parse_args()
    # the tables and progress lines go to stderr: stdout carries the JSON alone
    with contextlib.redirect_stdout(sys.stderr):
        result = validate(args, args.sections)
    print_json(result, indent=None)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(json_safe(result), indent=1, allow_nan=False))


def validate(args: argparse.Namespace, sections: set[str]) -> dict:
    """The figures of the chosen ``sections`` (their tables printed as they come)."""
    from mubundle import __version__

    start = time.perf_counter()
    result = {"benchmark": "validate_simulator", "mubundle_version": __version__, "interaction_model": SimConfig().interaction_model,
              "sections": sorted(sections)}
    if "elbert" in sections:
        print("primary   E0[GeV] zen[deg] showers  N_mu(>1TeV) sim        Elbert   ratio          var/mean  time")
        rows = elbert_table(args.scale, args.seed)
        result["elbert"] = rows
        result["elbert_all_within_35_percent"] = all(r["within_35_percent"] for r in rows)
    if "propagation" in sections:
        result["propagate_muons"] = propagation_checks(args.seed)
        result["single_muons_1tev"] = single_muon_anchors(args.seed)
        print("single_muons_1tev:", json.dumps(result["single_muons_1tev"]))
        print("propagate_muons:", json.dumps(result["propagate_muons"]))
    if "fluctuations" in sections:
        result["fluctuations_1pev_1p5km"] = fluctuation_check(args.scale, args.seed)
    if "geometry" in sections:
        result["geometry"] = geometry_checks()
        print("geometry:", json.dumps(result["geometry"]), flush=True)
    for site in ("icecube", "km3net-arca"):
        section = "anchors" if site == "icecube" else "anchors-water"
        if section in sections:
            result[section] = depth_anchors(site, args.anchor_showers, args.anchor_gamma, args.seed, not args.anchor_no_inclined)
            print(f"{section}:", json.dumps(result[section]), flush=True)
    result["seconds"] = time.perf_counter() - start
    return result


if __name__ == "__main__":
    run(main)
