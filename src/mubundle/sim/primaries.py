"""Sampling of primaries for ``mubundle simulate`` (energy, zenith, mass)."""

from __future__ import annotations

import numpy as np

from mubundle.sim.config import MIX_MASSES, PRIMARY_MASSES, SimConfig


def sample_energy(n: int, low: float, high: float, spectral_index: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) energies in GeV from dN/dE ~ E^-spectral_index on [low, high] (inverse CDF)."""
    u = rng.random(n)
    if low == high:
        return np.full(n, low)
    if abs(spectral_index - 1.0) < 1e-12:
        return low * (high / low) ** u
    power = 1.0 - spectral_index
    return (low**power + u * (high**power - low**power)) ** (1.0 / power)


def sample_zenith(n: int, low_deg: float, high_deg: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) zenith angles in rad, uniform in cos(zenith) between the two angles in degrees."""
    cos_low, cos_high = np.cos(np.radians(low_deg)), np.cos(np.radians(high_deg))
    return np.arccos(cos_high + rng.random(n) * (cos_low - cos_high))


def sample_mass(n: int, primary: str, rng: np.random.Generator) -> np.ndarray:
    """(n,) mass numbers A: the named primary, or uniform over ``MIX_MASSES`` for ``mix``."""
    if primary == "mix":
        return rng.choice(np.array(MIX_MASSES, dtype=np.float64), size=n)
    return np.full(n, float(PRIMARY_MASSES[primary]))


def sample_primaries(config: SimConfig, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(energy GeV, zenith rad, mass A), each (n,), following ``config``."""
    energy = sample_energy(n, *config.energy_range, config.spectral_index, rng)
    zenith = sample_zenith(n, *config.zenith_range_deg, rng)
    mass = sample_mass(n, config.primary, rng)
    return energy, zenith, mass


def sample_primaries_at_one_depth(
    config: SimConfig, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(energy GeV, zenith rad, mass A, slant depth km), each (n,): :func:`sample_primaries`,
    then one of ``config.depths_km`` (vertical) per primary, drawn uniformly, converted to the
    slant depth through the site's spherical overburden (``Site.slant_km``, as ``simulate``).
    One event per primary (the demo's and distillation's primaries), where a simulated shower
    is seen at every depth."""
    energy, zenith, mass = sample_primaries(config, n, rng)
    vertical = rng.choice(np.asarray(config.depths_km, dtype=np.float64), size=n)
    return energy, zenith, mass, config.site_spec.slant_km(vertical, np.cos(zenith))
