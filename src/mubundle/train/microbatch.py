"""Host-side preparation of a training batch: drop zero-muon events from the set networks,
split by the muon budget, move each micro-batch to the device once per step.

Zero-muon events have no muons, so selecting the N > 0 events needs no muon copy: the
flat muon array is already exactly the muons of the non-empty events, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mubundle.data.batch import RaggedBatch
from mubundle.model.chunking import muon_budget_chunks
from mubundle.model.transforms import FeatureTransform


@dataclass(frozen=True)
class MicroBatch:
    """One device-resident slice of the non-empty events of a batch.

    cond_features (b, C) float32, counts (b,) int64, event_index (m,) int64 (local, 0..b-1),
    real_features (m, F) float32; ``events`` and ``muons`` are the [start, stop) ranges of
    this slice within the non-empty events and their muons (to slice batch-wide noise).
    """

    cond_features: Tensor
    counts: Tensor
    event_index: Tensor
    real_features: Tensor
    events: tuple[int, int]
    muons: tuple[int, int]

    @property
    def n_events(self) -> int:
        return self.events[1] - self.events[0]


def non_empty_events(batch: RaggedBatch) -> RaggedBatch:
    """The events with N > 0 (muons shared, not copied)."""
    keep = batch.counts > 0
    if keep.all():
        return batch
    return RaggedBatch(batch.conditions[keep], batch.counts[keep], batch.flat_muons)


@torch.no_grad()
def prepare_micro_batches(
    batch: RaggedBatch, transform: FeatureTransform, max_muons: int, device: torch.device
) -> list[MicroBatch]:
    """Split ``batch`` (only events with N > 0 expected) into device micro-batches of at most
    ``max_muons`` muons (an event above the budget gets a micro-batch of its own)."""
    offsets = batch.offsets
    micro_batches = []
    for start, stop in muon_budget_chunks(batch.counts, max_muons):
        muon_start, muon_stop = int(offsets[start]), int(offsets[stop])
        part = batch.slice(start, stop).to_torch(device)
        micro_batches.append(
            MicroBatch(
                cond_features=transform.condition_features(part.conditions),
                counts=part.counts,
                event_index=part.event_index,
                real_features=transform.muon_features(part.flat_muons),
                events=(start, stop),
                muons=(muon_start, muon_stop),
            )
        )
    return micro_batches


def non_finite_inputs(batch: RaggedBatch) -> list[str]:
    """Names of input arrays holding NaN/inf (checked on the host, before any device work)."""
    bad = []
    if not np.isfinite(batch.conditions).all():
        bad.append("input:conditions")
    if not np.isfinite(batch.flat_muons).all():
        bad.append("input:muons")
    return bad
