"""``mubundle simulate --flux``: primaries drawn and weighted exactly as ``mubundle generate --flux``.

Chunk k of a dataset of N showers draws its primaries with
:func:`mubundle.flux.sample_flux_primaries` (E^-G on the energy range, cos(zenith) uniform
in the zenith band, mass group uniform over the flux model's groups) from the chunk's
primary seed, with ``normalisation_events = N``: the weights of all chunks together sum to
the rate R = area * Omega * sum_g int Phi_g dE (Hz) through a disc of ``area`` m^2
perpendicular to the axis (docs/generation.md). Every event of a shower (one per depth)
carries the shower's weight, so the events at ONE depth sum to R.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from mubundle.flux import GroupFlux, make_flux_model, sample_flux_primaries
from mubundle.sim.config import SimConfig


@lru_cache(maxsize=4)
def group_flux(name: str) -> GroupFlux:
    """The (cached) five-group flux of the crflux model ``name``."""
    return GroupFlux(make_flux_model(name))


def sample_weighted_primaries(
    config: SimConfig, n: int, seed: np.random.SeedSequence
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(energy GeV, zenith rad, mass A, weight Hz), each (n,), for ``n`` showers of a flux-mode
    dataset (``config.flux`` set); ``seed`` the chunk's primary seed."""
    if config.flux is None:
        raise ValueError("sample_weighted_primaries needs a config with a flux model")
    drawn = sample_flux_primaries(
        group_flux(config.flux),
        n,
        tuple(float(e) for e in config.energy_range),
        tuple(float(np.radians(z)) for z in config.zenith_range_deg),
        config.area_m2,
        seed,
        generation_gamma=config.spectral_index,
        normalisation_events=config.showers,
    )
    return drawn.energy, drawn.zenith, drawn.mass, drawn.weight


__all__ = ["sample_weighted_primaries", "group_flux"]
