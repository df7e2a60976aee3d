"""Property-based specification of RaggedBatch invariants (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mubundle.data.batch import RaggedBatch


@st.composite
def ragged_batches(draw, max_events: int = 12, max_count: int = 6) -> RaggedBatch:
    counts = np.array(draw(st.lists(st.integers(0, max_count), max_size=max_events)), dtype=np.int64)
    n_events, n_muons = counts.shape[0], int(counts.sum())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    conditions = rng.normal(size=(n_events, 4)).astype(np.float32)
    flat_muons = rng.normal(size=(n_muons, 3)).astype(np.float32)
    weights = rng.uniform(size=n_events) if draw(st.booleans()) else None
    return RaggedBatch(conditions, counts, flat_muons, weights)


@settings(max_examples=60, deadline=None)
@given(ragged_batches())
def test_offsets_start_at_zero_end_at_muon_count_and_difference_to_counts(batch):
    offsets = batch.offsets
    assert offsets[0] == 0 and offsets[-1] == batch.n_muons
    assert np.array_equal(np.diff(offsets), batch.counts)
    assert np.array_equal(np.bincount(batch.event_index, minlength=len(batch)), batch.counts)


@settings(max_examples=60, deadline=None)
@given(ragged_batches(), st.integers(-3, 15), st.integers(-3, 15))
def test_slice_equals_take_of_the_same_range(batch, start, stop):
    sliced = batch.slice(start, stop)
    lo, hi, _ = slice(start, stop).indices(len(batch))
    assert sliced.equals(batch.take(np.arange(lo, max(lo, hi))))


@settings(max_examples=60, deadline=None)
@given(ragged_batches(), st.data())
def test_take_gathers_each_selected_events_own_muons(batch, data):
    if len(batch) == 0:
        return
    indices = np.array(data.draw(st.lists(st.integers(0, len(batch) - 1), max_size=20)), dtype=np.int64)
    taken = batch.take(indices)
    assert np.array_equal(taken.counts, batch.counts[indices])
    for position, event in enumerate(indices):
        assert np.array_equal(taken.muons_of(position), batch.muons_of(int(event)))
        assert np.array_equal(taken.conditions[position], batch.conditions[event])


@settings(max_examples=60, deadline=None)
@given(ragged_batches(), st.integers(0, 12))
def test_concat_of_a_split_restores_the_batch(batch, cut):
    cut = min(cut, len(batch))
    assert RaggedBatch.concat([batch.slice(0, cut), batch.slice(cut, len(batch))]).equals(batch)


@settings(max_examples=30, deadline=None)
@given(ragged_batches())
def test_torch_view_shares_memory_with_numpy(batch):
    view = batch.to_torch()
    assert np.array_equal(view.counts.numpy(), batch.counts)
    if batch.n_muons:
        assert view.flat_muons.data_ptr() == batch.flat_muons.ctypes.data
    assert np.array_equal(view.event_index.numpy(), batch.event_index)
