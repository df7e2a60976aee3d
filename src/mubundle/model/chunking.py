"""Splitting ragged batches by a muon budget (host side, numpy)."""

from __future__ import annotations

import numpy as np


def muon_budget_chunks(counts: np.ndarray, max_muons: int) -> list[tuple[int, int]]:
    """Split events into consecutive ranges [start, stop) with at most ``max_muons`` muons each.

    counts (B,) int64. Events are never split; an event above the budget gets a range of
    its own. Every event is in exactly one range (none dropped). Runs on the host.
    """
    n_events = int(counts.shape[0])
    cumulative = np.cumsum(counts, dtype=np.int64)
    chunks: list[tuple[int, int]] = []
    start = 0
    while start < n_events:
        before = int(cumulative[start - 1]) if start else 0
        stop = int(np.searchsorted(cumulative, before + max_muons, side="right"))
        stop = max(stop, start + 1)
        chunks.append((start, stop))
        start = stop
    return chunks
