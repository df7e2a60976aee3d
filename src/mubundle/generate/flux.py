"""Flux-weighted primaries for ``mubundle generate --flux``.

The weight computation lives in :mod:`mubundle.flux` (a top-level module importing nothing
of the package) because ``mubundle simulate --flux`` needs the same weights and the simulator
sits to the left of ``generate`` in the import order; this module re-exports it unchanged.
"""

from mubundle.flux import (
    FLUX_MODELS,
    GROUP_MASSES,
    MASS_GROUPS,
    FluxPrimaries,
    GroupFlux,
    integrated_rate,
    make_flux_model,
    power_law_density,
    sample_flux_primaries,
    solid_angle,
)

__all__ = [
    "FLUX_MODELS",
    "GROUP_MASSES",
    "MASS_GROUPS",
    "FluxPrimaries",
    "GroupFlux",
    "integrated_rate",
    "make_flux_model",
    "power_law_density",
    "sample_flux_primaries",
    "solid_angle",
]
