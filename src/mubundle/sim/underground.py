"""Observation-level muon bundles -> bundles at slant depths in ice, with mubundle's propagator.

What MuonGun's ``Muonitron`` does with PROPOSAL for the original pipeline, done with
:func:`mubundle.sim.ice.propagate_muons`: every muon of a shower is propagated from the
observation level (taken as the ice surface) along the shower axis; at each requested slant
depth the surviving muons form one event. Depths are visited in increasing order and each
step continues from the energies of the previous one (a muon's energies at 1 and 2 km belong
to one track), as Muonitron does. All muons of a shower travel the same slant distance (the
lateral offsets, at most a few hundred metres, are neglected, as in Muonitron); positions in
the shower plane are kept.

Randomness: the step from depth k-1 to k of the shower with ids ``(major, minor)`` uses the
seed ``SeedSequence([seed, major, minor, k])``: the result does not depend on how the input is
split into pieces or on the other showers, and the same ``--seed`` reproduces it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mubundle.data import schema
from mubundle.data.batch import RaggedBatch
from mubundle.sim.ice import propagate_muons


def _step_seed(seed: int, major: int, minor: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, major, minor, step]).generate_state(1, dtype=np.uint64)[0])


@dataclass(frozen=True)
class DepthPropagation:
    """Callable ``batch -> batch`` turning depth-0 events into one event per (event, depth).

    ``depths_km``: slant depths in km of ice below the observation level (0 keeps the
    observation-level muons); ``seed``: see module docstring. Output order: for each input
    event, its events at ``depths_km`` in the order given. Conditions keep energy, zenith and
    mass; ``depth`` becomes the requested depth; ids are kept.
    """

    depths_km: tuple[float, ...]
    seed: int = 0

    def __post_init__(self) -> None:
        depths = np.asarray(self.depths_km, dtype=np.float64)
        if depths.size == 0 or not np.isfinite(depths).all() or (depths < 0).any():
            raise ValueError(f"--depths must be finite slant depths in km >= 0, got {list(self.depths_km)}")
        if np.unique(depths).size != depths.size:
            raise ValueError(f"--depths holds a depth twice: {list(self.depths_km)}")

    @property
    def config(self) -> dict[str, Any]:
        """What the shard metadata records about this step."""
        return {
            "depths_km": [float(d) for d in self.depths_km],
            "seed": int(self.seed),
            "propagator": "mubundle.sim.ice.propagate_muons (continuous + stochastic losses in ice)",
            "depth": "slant depth in km of ice along the shower axis below the observation level",
        }

    def __call__(self, batch: RaggedBatch) -> RaggedBatch:
        depths = np.asarray(self.depths_km, dtype=np.float64)
        order = np.argsort(depths)
        n_depths = depths.size
        ids = batch.ids
        if ids is None:
            ids = np.stack([np.zeros(len(batch), np.uint64), np.arange(len(batch), dtype=np.uint64)], axis=1)
        offsets = batch.offsets
        out_conditions = np.repeat(batch.conditions, n_depths, axis=0)
        out_conditions[:, schema.DEPTH] = np.tile(depths, len(batch)).astype(np.float32)
        out_counts = np.zeros(len(batch) * n_depths, dtype=np.int64)
        muon_parts: list[np.ndarray] = []
        for event in range(len(batch)):
            muons = batch.flat_muons[offsets[event] : offsets[event + 1]]
            at_depth: list[np.ndarray] = [np.zeros((0, 3), np.float32)] * n_depths
            energy = muons[:, schema.MU_ENERGY].astype(np.float64)
            alive = np.ones(muons.shape[0], dtype=bool)
            previous = 0.0
            for step, k in enumerate(order):
                distance_m = (depths[k] - previous) * 1000.0
                previous = depths[k]
                if distance_m > 0 and alive.any():
                    seed = _step_seed(self.seed, int(ids[event, 0]), int(ids[event, 1]), step)
                    energy[alive] = propagate_muons(energy[alive], distance_m, seed)
                    alive &= energy > 0
                kept = muons[alive].copy()
                kept[:, schema.MU_ENERGY] = energy[alive]
                at_depth[k] = kept
            for k in range(n_depths):
                out_counts[event * n_depths + k] = at_depth[k].shape[0]
                muon_parts.append(at_depth[k])
        flat = np.concatenate(muon_parts) if muon_parts else np.zeros((0, 3), np.float32)
        out_ids = np.repeat(ids, n_depths, axis=0)
        weights = None if batch.weights is None else np.repeat(batch.weights, n_depths)
        return RaggedBatch(out_conditions, out_counts, flat, weights, out_ids)
