"""EventStream: shuffling, determinism, exact resume, DDP sharding, bad data in training."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_synthetic_batch

from mubundle.data import native
from mubundle.data.batch import RaggedBatch
from mubundle.data.reader import EventStream
from mubundle.data.writers import write_batch


def _dataset(root, n_files=4, events=150):
    """Native shards in a range folder; each event's energy is unique so events can be identified."""
    batches = []
    for k in range(n_files):
        batch = make_synthetic_batch(events, seed=100 + k)
        batches.append(batch)
        native.write_shard(batch, native.shard_path(root, k))
    return RaggedBatch.concat(batches)


def _keys(batch):
    return batch.conditions[:, 0].tobytes()


def _event_set(batch):
    return sorted(batch.conditions[:, 0].tolist())


def test_one_epoch_yields_every_event_once_in_batches_of_b(tmp_path):
    everything = _dataset(tmp_path)
    stream = EventStream(tmp_path, batch_size=64, seed=3, shuffle_buffer_events=200, epochs=1)
    batches = list(stream)
    assert [len(b) for b in batches[:-1]] == [64] * (len(batches) - 1)
    assert _event_set(RaggedBatch.concat(batches)) == _event_set(everything)
    assert stream.end_of_epoch and stream.epoch == 0


def test_events_keep_their_own_muons_through_the_shuffle(tmp_path):
    everything = _dataset(tmp_path, n_files=2)
    streamed = RaggedBatch.concat(list(EventStream(tmp_path, 50, seed=1, shuffle_buffer_events=100, epochs=1)))
    order = np.argsort(everything.conditions[:, 0])
    back = np.argsort(streamed.conditions[:, 0])
    assert everything.take(order).equals(streamed.take(back))


def test_shuffle_mixes_events_across_files(tmp_path):
    _dataset(tmp_path, n_files=4, events=100)
    first = next(iter(EventStream(tmp_path, 100, seed=0, shuffle_buffer_events=400, epochs=1)))
    files_in_first_batch = {
        k for k in range(4) if np.isin(first.conditions[:, 0], make_synthetic_batch(100, seed=100 + k).conditions[:, 0]).any()
    }
    assert len(files_in_first_batch) > 1


def test_same_seed_same_batches_other_seed_or_epoch_other_order(tmp_path):
    _dataset(tmp_path)
    run = lambda seed: [_keys(b) for b in EventStream(tmp_path, 64, seed=seed, shuffle_buffer_events=200, epochs=2)]
    first, again, other = run(5), run(5), run(6)
    assert first == again
    assert first != other
    per_epoch = len(first) // 2
    assert first[:per_epoch] != first[per_epoch:]


def test_unshuffled_stream_follows_file_order(tmp_path):
    everything = _dataset(tmp_path, n_files=2)
    streamed = RaggedBatch.concat(list(EventStream(tmp_path, 70, shuffle=False, epochs=1)))
    assert streamed.equals(everything)


@pytest.mark.parametrize("stop_after", [1, 4, 7, 9])
def test_resumed_stream_continues_with_exactly_the_next_batch(tmp_path, stop_after):
    _dataset(tmp_path)
    settings = dict(batch_size=64, seed=11, shuffle_buffer_events=200, epochs=3)
    original = EventStream(tmp_path, **settings)
    iterator = iter(original)
    for _ in range(stop_after):
        next(iterator)
    state = json.loads(json.dumps(original.state_dict()))  # must survive a JSON checkpoint
    expected = [(_keys(b), b.flat_muons.tobytes(), original.epoch) for b in iterator]

    resumed = EventStream(tmp_path, **settings)
    resumed.load_state_dict(state)
    got = [(_keys(b), b.flat_muons.tobytes(), resumed.epoch) for b in resumed]
    assert got == expected and len(got) > 0


def test_resume_refuses_a_state_from_different_data_or_settings(tmp_path):
    _dataset(tmp_path / "a", n_files=2)
    _dataset(tmp_path / "b", n_files=3)
    state = EventStream(tmp_path / "a", 10).state_dict()
    with pytest.raises(ValueError, match="changed"):
        EventStream(tmp_path / "b", 10).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        EventStream(tmp_path / "a", 10, seed=1).load_state_dict(state)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_together_cover_every_event_exactly_once_per_epoch(tmp_path, world_size):
    everything = _dataset(tmp_path, n_files=3, events=101)
    per_rank = [
        RaggedBatch.concat(list(EventStream(tmp_path, 32, seed=4, shuffle_buffer_events=150,
                                            rank=r, world_size=world_size, epochs=1)))
        for r in range(world_size)
    ]
    sizes = [len(b) for b in per_rank]
    assert max(sizes) - min(sizes) <= 1
    assert _event_set(RaggedBatch.concat(per_rank)) == _event_set(everything)


def test_corrupt_file_is_skipped_recorded_and_the_stream_goes_on(tmp_path):
    everything = _dataset(tmp_path, n_files=3)
    good = native.shard_path(tmp_path, 0).read_bytes()
    broken = tmp_path / "0000000-0000999" / "part-00005.parquet"
    broken.write_bytes(good[: len(good) // 3])
    stream = EventStream(tmp_path, 64, seed=0, epochs=2)
    streamed = list(stream)
    assert len(RaggedBatch.concat(streamed)) == 2 * len(everything)
    assert [f["path"] for f in stream.report["failed_files"]] == [str(broken)]


def test_file_failing_while_streaming_is_recorded_and_skipped(tmp_path):
    everything = _dataset(tmp_path, n_files=2)
    stream = EventStream(tmp_path, 64, seed=0, epochs=1)
    native.shard_path(tmp_path, 1).write_bytes(b"PAR1 truncated after listing")
    streamed = RaggedBatch.concat(list(stream))
    assert len(streamed) == len(everything) // 2
    assert stream.report["failed_files"][0]["path"] == str(native.shard_path(tmp_path, 1))


def test_bad_rows_are_quarantined_once_and_counted_in_the_report(tmp_path):
    batch = make_synthetic_batch(60, seed=1)
    conditions = batch.conditions.copy()
    conditions[[3, 17], 0] = -1.0
    write_batch(RaggedBatch(conditions, batch.counts, batch.flat_muons), tmp_path / "data" / "x.h5", format="hdf5")
    stream = EventStream(tmp_path / "data", 16, seed=0, epochs=3, quarantine_dir=tmp_path / "run" / "quarantine")
    total = sum(len(b) for b in stream)
    assert total == 3 * 58
    assert stream.report["rejected"] == {"energy_non_positive": 2}
    quarantined = list((tmp_path / "run" / "quarantine").glob("*.parquet"))
    assert [str(p) for p in quarantined] == stream.report["quarantine_files"]


def test_window_holds_at_most_the_shuffle_buffer_plus_one_piece(tmp_path):
    _dataset(tmp_path, n_files=6, events=100)
    stream = EventStream(tmp_path, 10, seed=0, shuffle_buffer_events=250)
    assert max(sum(p.n_rows for p in w) for w in stream._windows(0)) < 250 + 100


def test_stream_without_any_valid_event_raises_a_clear_error(tmp_path):
    (tmp_path / "junk.parquet").write_text("junk")
    with pytest.raises(ValueError, match="no batch"):
        next(iter(EventStream(tmp_path, 8)))


def test_batches_never_span_epochs_and_epoch_attribute_marks_the_boundary(tmp_path):
    everything = _dataset(tmp_path, n_files=2, events=100)
    stream = EventStream(tmp_path, 64, seed=2, shuffle_buffer_events=120, epochs=2)
    by_epoch: dict[int, list[RaggedBatch]] = {0: [], 1: []}
    ends = []
    for batch in stream:
        by_epoch[stream.epoch].append(batch)
        ends.append(stream.end_of_epoch)
    for batches in by_epoch.values():
        assert _event_set(RaggedBatch.concat(batches)) == _event_set(everything)
    assert ends.count(True) == 2 and ends[-1]
    assert stream.n_rows == 200


def test_drop_last_yields_only_full_batches(tmp_path):
    _dataset(tmp_path, n_files=1, events=100)
    sizes = [len(b) for b in EventStream(tmp_path, 30, seed=0, epochs=2, drop_last=True)]
    assert sizes == [30] * 6


def test_resume_on_a_non_zero_rank_continues_that_ranks_sequence(tmp_path):
    _dataset(tmp_path, n_files=3, events=90)
    settings = dict(batch_size=16, seed=8, shuffle_buffer_events=100, rank=1, world_size=2, epochs=2)
    original = EventStream(tmp_path, **settings)
    iterator = iter(original)
    for _ in range(5):
        next(iterator)
    state = original.state_dict()
    expected = [_keys(b) for b in iterator]
    resumed = EventStream(tmp_path, **settings)
    resumed.load_state_dict(state)
    assert [_keys(b) for b in resumed] == expected
