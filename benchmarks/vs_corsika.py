"""The reference simulator against real CORSIKA showers, per decade of primary energy; prints JSON
Lines on stdout: one JSON object per line, one line per decade with showers (docs/simulator.md).

Reads CORSIKA 7 particle files directly with ``corsikaio`` (muons are particle ids 5 and 6
with a positive particle description; 75/76 are additional-information records; momenta
GeV, positions cm at the observation level). The showers must be vertical (x, y are then
already in the plane perpendicular to the axis) and all files must share one observation
level and muon cut, which become ``surface_altitude_m`` and ``min_energy``; every CORSIKA
primary of a decade is simulated ``--repeat`` times with ``simulate_primaries`` (seeds 0..K-1)
at depth 0.

The PANAMA files hold protons (DAT000000-09), C12 (CORSIKA id 1206, DAT000020-29) and Si28
(2814, DAT000030-34); nuclei are simulated with the same A (superposition model), and
``--primary-ids 14`` keeps the protons only. Per decade (one JSON line each):
- ``n_mu_sum``: sum over showers of N_mu(> cut), ours (mean of the K runs) / CORSIKA, with
  the standard error of the ratio; ``corsika_sum_se``: the CORSIKA sum's standard error
  (shower-to-shower spread at fixed E0, estimated from the spread about our K-run mean).
- ``rel_fluct``: relative fluctuation at fixed E0. Ours: sqrt(mean_i s_i^2) / mean_i m_i
  (s_i^2 the unbiased variance of the K runs of primary i, m_i their mean). CORSIKA: spread
  about our K-run mean, sqrt(mean_i (C_i - m_i)^2 - mean_i s_i^2 / K) / mean_i C_i (the
  s^2/K term removes the noise of m_i). ``rel_fluct_scaled`` uses r m_i with r = sum C /
  sum m instead of m_i, i.e. the spread with the overall normalisation difference removed.
  ``ratio_se_bootstrap``: the spread of the ratio over 400 resamples of the showers;
  ``bootstrap_left_out``: resamples without a defined ratio (with few runs K the noise of our
  mean can exceed CORSIKA's spread in a resample; many left out: do not trust that error).
- ``energy_quantiles``: muon-energy quantiles 25/50/75/90 % (all muons of the decade pooled),
  ours / CORSIKA.
- ``radius_quantiles``: quantiles 25/50/75/90 % of the muons' distance to the shower axis at
  the observation level, ours / CORSIKA.
- ``corsika_first_interaction``: CORSIKA's first-interaction depth (event header height through
  the atmosphere) of the decade's proton showers over the proton-air production interaction
  length of our model at their E0 (ours is that length by construction): mean and standard error
  (null without proton showers; nuclei interact earlier and are left out).
Targets (issue 21): sum within +-5 % or 2 standard errors, fluctuation within +-15 %,
energy and radius quantiles within +-10 %.

Usage: python benchmarks/vs_corsika.py --corsika ../shared/data/corsika/panama/DAT* \
           [--repeat 2] [--decades 5 6 7 8] [--max-showers N] [--seed 0]
(decade d = E0 in [10^d, 10^(d+1)) GeV; 1e8-1e9 costs minutes per run on one core.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from mubundle.benchmark_cli import NothingToReport, input_file, make_parser, positive_int, print_json_line, run, seed_int
from mubundle.errors import InvalidValueError

MUON_IDS = (5, 6)
MUON_MASS_GEV = 0.1056583755
QUANTILES = (25, 50, 75, 90)


def read_corsika(paths: list[str], per_shower: Callable[[np.ndarray], object] | None = None) -> dict:
    """Vertical CORSIKA showers: energy (S,) GeV, primary id (S,), first-interaction height (S,) m
    (CORSIKA writes it negative when tracking starts at the top of the atmosphere), muon lists, obs level, cut;
    ``per_shower``: a function of one shower's particle records (P,) whose results are returned
    as the list ``per_shower`` (benchmarks that look at more than the muons read the files once)."""
    from corsikaio import CorsikaParticleFile

    energy, primary, first_m, muons, levels, cuts, extra = [], [], [], [], set(), set(), []
    for path in paths:
        try:
            with CorsikaParticleFile(path) as corsika:
                levels.add(float(corsika.run_header["observation_height"][0]) / 100.0)
                cuts.add(float(corsika.run_header["energy_cutoff_muons"]))
                for event in corsika:
                    header = event.header
                    if abs(float(header["zenith"])) > 1e-6:
                        raise ValueError(f"{path}: shower {int(header['event_number'])} is not vertical (zenith {float(header['zenith'])} rad)")
                    particles = event.particles
                    description = particles["particle_description"]
                    kind = np.trunc(description / 1000.0).astype(np.int64)
                    is_muon = (description > 0) & np.isin(kind, MUON_IDS)
                    p = particles[is_muon]
                    momentum2 = p["px"].astype(np.float64) ** 2 + p["py"] ** 2 + p["pz"] ** 2
                    muons.append(np.column_stack([np.sqrt(momentum2 + MUON_MASS_GEV**2), p["x"] / 100.0, p["y"] / 100.0]))
                    energy.append(float(header["total_energy"]))
                    primary.append(int(header["particle_id"]))
                    first_m.append(abs(float(header["first_interaction_height"])) / 100.0)
                    if per_shower is not None:
                        extra.append(per_shower(particles))
        except (OSError, ValueError, KeyError, EOFError) as error:  # a file that is no CORSIKA particle file
            if isinstance(error, OSError) and error.errno is not None:
                raise  # what the system refused (permission, ...): its own code and line
            if isinstance(error, ValueError) and str(path) in str(error):
                raise  # this reader's own message, which names the file
            raise InvalidValueError(f"{path}: not a readable CORSIKA particle file ({type(error).__name__}: {error})") from error
    if len(levels) != 1 or len(cuts) != 1:
        raise ValueError(f"files mix observation levels {sorted(levels)} m or muon cuts {sorted(cuts)} GeV")
    return {"energy": np.array(energy), "primary": np.array(primary), "first_interaction_m": np.array(first_m), "muons": muons,
            "level_m": levels.pop(), "cut_gev": cuts.pop(), "per_shower": extra}


def mass_of_corsika_id(pid: int) -> float:
    """Mass number A of a CORSIKA primary id (14 = proton, A*100 + Z for nuclei)."""
    if pid == 14:
        return 1.0
    if pid >= 200:
        return float(pid // 100)
    raise ValueError(f"unsupported CORSIKA primary id {pid}")


def _resampled_showers(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """``resamples`` bootstrap draws of the indices of ``n`` showers, with replacement (showers, not
    muons, are resampled: the muons of one shower are correlated); fixed ``seed``."""
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        yield rng.integers(0, n, n)


def _ratio_quantiles(ours: np.ndarray, theirs_per_shower: list[np.ndarray], resamples: int = 300) -> dict:
    """Quantiles ours / CORSIKA; ``ratio_se``: bootstrap over the CORSIKA showers (muons of one
    shower are correlated, so showers, not muons, are resampled; ours has K times the showers)."""
    theirs = np.concatenate(theirs_per_shower) if theirs_per_shower else np.zeros(0)
    if ours.size == 0 or theirs.size == 0:
        return {"ours": None, "corsika": None, "ratio": None}
    q_ours, q_theirs = np.percentile(ours, QUANTILES), np.percentile(theirs, QUANTILES)
    boot = []
    for pick in _resampled_showers(len(theirs_per_shower), resamples, seed=54321):
        sample = np.concatenate([theirs_per_shower[i] for i in pick])
        if sample.size:
            boot.append(q_ours / np.percentile(sample, QUANTILES))
    return {"q": list(QUANTILES), "ours": q_ours.round(3).tolist(), "corsika": q_theirs.round(3).tolist(),
            "ratio": (q_ours / q_theirs).round(3).tolist(), "ratio_se": np.std(boot, axis=0).round(3).tolist()}


def _rel_fluct(counts: np.ndarray, corsika_counts: np.ndarray, repeat: int, scale: float = 1.0) -> tuple[float, float]:
    """(ours, CORSIKA's) relative fluctuation at fixed E0 of counts (K, S) and CORSIKA counts (S,): ours
    the spread of one run about our K-run mean, CORSIKA's its spread about ``scale`` x that mean less the
    noise of the mean, each over the mean count; CORSIKA's NaN where the spread is not above that noise
    (undefined), both NaN for K = 1."""
    mean = counts.mean(axis=0)
    var = counts.var(axis=0, ddof=1) if repeat > 1 else np.full(counts.shape[1], np.nan)
    ours = float(np.sqrt(np.mean(var)) / np.mean(mean))
    theirs_var = float(np.mean((corsika_counts - scale * mean) ** 2) - scale**2 * np.mean(var) / repeat)
    return ours, (float(np.sqrt(theirs_var) / np.mean(corsika_counts)) if theirs_var > 0.0 else float("nan"))


def _rel_fluct_ratio(counts: np.ndarray, corsika_counts: np.ndarray, repeat: int) -> float:
    """The ``rel_fluct`` ratio ours / CORSIKA of :func:`_rel_fluct` (NaN where undefined)."""
    ours, theirs = _rel_fluct(counts, corsika_counts, repeat)
    return ours / theirs


def _bootstrap_fluct_ratio_se(counts: np.ndarray, corsika_counts: np.ndarray, repeat: int,
                              resamples: int = 400) -> tuple[float, int]:
    """(standard error of the fluctuation ratio ours / CORSIKA from resampling the showers, number
    of resamples left out: no muon on one side, or the ratio undefined (:func:`_rel_fluct_ratio`;
    with few runs K the noise of our mean can exceed CORSIKA's spread in a resample))."""
    if repeat < 2:
        return float("nan"), 0
    ratios = []
    for pick in _resampled_showers(corsika_counts.size, resamples, seed=12345):
        if corsika_counts[pick].sum() > 0 and counts[:, pick].sum() > 0:
            ratios.append(_rel_fluct_ratio(counts[:, pick], corsika_counts[pick], repeat))
    ratios = np.array(ratios)
    finite = ratios[np.isfinite(ratios)]
    se = float(np.std(finite)) if finite.size else float("nan")  # no resample with a defined ratio
    return se, resamples - int(finite.size)


def compare_decade(energy, mass, corsika_muons, config, repeat: int, seed: int) -> dict:
    """Simulate each primary ``repeat`` times and compare with the CORSIKA muons (list of (M, 3))."""
    from mubundle.sim.run import simulate_primaries

    n = energy.size
    counts = np.zeros((repeat, n))
    energies, radii = [], []
    start = time.process_time()
    for k in range(repeat):
        batch = simulate_primaries(energy, np.zeros(n), mass, np.zeros(n), seed=seed + k, config=config)
        counts[k] = batch.counts
        energies.append(batch.flat_muons[:, 0])
        radii.append(np.hypot(batch.flat_muons[:, 1], batch.flat_muons[:, 2]))
    cpu = time.process_time() - start
    corsika_counts = np.array([m.shape[0] for m in corsika_muons], np.float64)
    mean = counts.mean(axis=0)
    var = counts.var(axis=0, ddof=1) if repeat > 1 else np.full(n, np.nan)
    sum_ours, sum_corsika = mean.sum(), corsika_counts.sum()
    # shower-to-shower variance at fixed E0 of one CORSIKA shower, from the spread about our mean
    corsika_var = np.maximum((corsika_counts - mean) ** 2 - var / repeat, 0.0)
    corsika_sum_se = float(np.sqrt(corsika_var.sum()))
    ours_sum_se = float(np.sqrt(np.nansum(var) / repeat))
    with np.errstate(divide="ignore", invalid="ignore"):  # a decade without muons: ratios are reported as null
        ratio = sum_ours / sum_corsika
        ratio_se = ratio * float(np.hypot(ours_sum_se / sum_ours, corsika_sum_se / sum_corsika))
        scale = sum_corsika / sum_ours
        rel_ours, rel_corsika = _rel_fluct(counts, corsika_counts, repeat)
        rel_corsika_scaled = _rel_fluct(counts, corsika_counts, repeat, scale)[1]
        fluct_ratio_se, fluct_left_out = _bootstrap_fluct_ratio_se(counts, corsika_counts, repeat)
        tolerance = max(0.05, 2.0 * corsika_sum_se / sum_corsika)
    row = {
        "showers": int(n),
        "repeat": repeat,
        "n_mu_sum": {"ours": round(float(sum_ours), 2), "ours_se": round(ours_sum_se, 2), "corsika": float(sum_corsika),
                     "corsika_sum_se": round(corsika_sum_se, 2), "ratio": round(float(ratio), 4), "ratio_se": round(ratio_se, 4),
                     "tolerance": round(tolerance, 4), "within_target": bool(abs(ratio - 1.0) <= tolerance) if np.isfinite(ratio) else None},
        "rel_fluct": {"ours": round(rel_ours, 4), "corsika": round(rel_corsika, 4), "ratio": round(rel_ours / rel_corsika, 4),
                      "corsika_scaled": round(rel_corsika_scaled, 4),
                      "ratio_scaled": round(rel_ours / rel_corsika_scaled, 4),
                      "ratio_se_bootstrap": round(fluct_ratio_se, 4), "bootstrap_left_out": fluct_left_out},
        "energy_quantiles_gev": _ratio_quantiles(np.concatenate(energies), [m[:, 0] for m in corsika_muons]),
        "radius_quantiles_m": _ratio_quantiles(np.concatenate(radii), [np.hypot(m[:, 1], m[:, 2]) for m in corsika_muons]),
        "cpu_s": round(cpu, 1),
        "cpu_s_per_shower": round(cpu / (n * repeat), 4),
        "cpu_s_timing": "process CPU time of the K runs of this decade, after one warm-up simulation "
                        "(interaction-model start-up excluded)",
    }
    if not (sum_corsika > 0 and sum_ours > 0):
        row["note"] = f"no muons above the cut ({sum_corsika:g} CORSIKA, {sum_ours:g} ours): ratios undefined"
    return _nulls_for_undefined(row)


def first_interaction_ratio(energy: np.ndarray, height_m: np.ndarray, interaction_model: str) -> dict | None:
    """Proton showers (energy (S,) GeV, first-interaction height (S,) m): mean and standard error of
    their first-interaction depth over ``interaction_model``'s proton-air production interaction
    length; None for S = 0."""
    from mubundle.sim.atmosphere import vertical_depth
    from mubundle.sim.interactions import get_model

    if energy.size == 0:
        return None
    length = get_model(interaction_model).interaction_length(np.full(energy.size, 2212), energy)
    ratio = vertical_depth(height_m) / length
    se = float(ratio.std(ddof=1) / np.sqrt(ratio.size)) if ratio.size > 1 else float("nan")
    return {"protons": int(ratio.size), "depth_over_length": round(float(ratio.mean()), 3), "se": round(se, 3)}


def _nulls_for_undefined(value):
    """``value`` with every non-finite float (an undefined ratio) as None, so the line is strict JSON."""
    if isinstance(value, dict):
        return {key: _nulls_for_undefined(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nulls_for_undefined(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def main(argv: list[str] | None = None) -> None:
    from mubundle import __version__
    from mubundle.benchmark_cli import integer

    parser = make_parser(__doc__, epilog="Output: JSON Lines (one JSON object per line, one line per decade that has "
                                         "CORSIKA showers); a decade without showers is named on stderr. Exit 1 when "
                                         "no decade has any.")
    parser.add_argument("--corsika", nargs="+", required=True, type=input_file,
                        help="CORSIKA particle files (vertical showers)")
    parser.add_argument("--repeat", type=positive_int, default=2, help="K: simulations per CORSIKA primary (>= 2 for fluctuations)")
    parser.add_argument("--decades", type=integer(0, 11), nargs="+", default=[5, 6, 7, 8],
                        help="log10(E0 / GeV) of each decade's lower edge")
    parser.add_argument("--max-showers", type=positive_int, default=None,
                        help="first N showers of each decade only (default: all)")
    parser.add_argument("--seed", type=seed_int, default=0, help="first seed of the K simulations")
    parser.add_argument("--primary-ids", type=positive_int, nargs="+", default=None,
                        help="CORSIKA primary ids to keep (14 = proton, 1206 = C12, 2814 = Si28; default all)")
    args = parser.parse_args(argv)
    from mubundle.sim.config import SimConfig

    data = read_corsika(args.corsika)
    config = replace(SimConfig(), surface_altitude_m=data["level_m"], min_energy=data["cut_gev"])
    mass = np.array([mass_of_corsika_id(p) for p in data["primary"]])
    from mubundle.sim.run import simulate_primaries

    # one warm-up simulation: the interaction model's start-up is not charged to the first decade
    simulate_primaries(np.array([1e4]), np.zeros(1), np.ones(1), np.zeros(1), seed=0, config=config)
    printed = 0
    for decade in args.decades:
        in_decade = (data["energy"] >= 10.0**decade) & (data["energy"] < 10.0 ** (decade + 1))
        if args.primary_ids is not None:
            in_decade &= np.isin(data["primary"], args.primary_ids)
        chosen = np.flatnonzero(in_decade)
        if args.max_showers is not None:
            chosen = chosen[: args.max_showers]
        if chosen.size == 0:
            print(f"vs_corsika: warning: no CORSIKA shower in decade 1e{decade}", file=sys.stderr)
            continue
        row = compare_decade(data["energy"][chosen], mass[chosen], [data["muons"][i] for i in chosen], config, args.repeat, args.seed)
        protons = chosen[data["primary"][chosen] == 14]
        row["corsika_first_interaction"] = _nulls_for_undefined(first_interaction_ratio(
            data["energy"][protons], data["first_interaction_m"][protons], config.interaction_model))
        ids, counts = np.unique(data["primary"][chosen], return_counts=True)
        print_json_line({"benchmark": "vs_corsika", "mubundle_version": __version__, "decade": f"1e{decade}-1e{decade + 1}",
                         "surface_altitude_m": config.surface_altitude_m, "min_energy_gev": config.min_energy,
                         "primaries": {str(i): int(c) for i, c in zip(ids, counts)}, **row})
        printed += 1
    if not printed:
        kept = "" if args.primary_ids is None else f" with primary ids {args.primary_ids}"
        raise NothingToReport(f"no CORSIKA shower{kept} in decades {args.decades} of {len(args.corsika)} file(s) "
                              f"(their E0: {data['energy'].min():.3g}-{data['energy'].max():.3g} GeV)"
                              if data["energy"].size else f"no CORSIKA shower in {' '.join(args.corsika)}")


if __name__ == "__main__":
    run(main)
