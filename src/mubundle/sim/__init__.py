"""Reference air-shower muon simulator: chromo cascade, atmosphere, decays, ice propagation."""

from mubundle.sim.ice import propagate_muons

__all__ = ["propagate_muons"]
