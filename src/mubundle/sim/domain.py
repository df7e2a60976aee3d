"""Where the simulator's physics holds: a warning for settings outside it.

Hadrons below ``interactions.MIN_LAB_ENERGY_GEV`` (60 GeV, sqrt(s) < 10 GeV, below the
hadronic models' range) do not interact here, they decay or reach the ground. That is
harmless as long as no particle below 60 GeV is followed at all, i.e. as long as the
threshold energy at the surface for a muon to reach the shallowest requested depth
(``run.muon_threshold_gev``) is above 60 GeV: from ~0.25 km of ice (0.2 km of sea water,
0.3 km w.e. of rock) down, whatever E0 (so primaries from 3e2 GeV are simulated correctly
at detector depths). At the surface or shallow depths with a low ``--min-energy`` the
muons of sub-60-GeV hadrons are over-produced (no interaction competes with the decay).
"""

from __future__ import annotations

import numpy as np

from mubundle.sim.config import SimConfig


def low_energy_warning(config: SimConfig) -> str | None:
    """A one-line warning when followed hadrons can fall below the interaction range, else None."""
    from mubundle.sim.earth import CurvedAxes
    from mubundle.sim.interactions import MIN_LAB_ENERGY_GEV
    from mubundle.sim.run import muon_threshold_gev

    site = config.site_spec
    medium = site.medium
    axes = CurvedAxes(np.array([1.0]), config.altitude_m)  # vertical: the lowest threshold
    threshold = float(muon_threshold_gev(np.array([min(config.depths_km) * 1000.0]), config.min_energy,
                                         config.ice_v_cut, axes.ground_depth, medium.a_per_m, medium.b_per_m)[0])
    if threshold >= MIN_LAB_ENERGY_GEV:
        return None
    return (f"mubundle simulate: warning: at the shallowest depth ({min(config.depths_km):g} km) muons above "
            f"{config.min_energy:g} GeV come from hadrons down to {threshold:.0f} GeV, but hadrons below "
            f"{MIN_LAB_ENERGY_GEV:g} GeV do not interact in this simulator (they decay or are absorbed): "
            "low-energy muon numbers there are overestimated (docs/simulator.md, 'Domain')")


__all__ = ["low_energy_warning"]
