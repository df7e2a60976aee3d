"""Legacy layouts of the original pipeline: Parquet nested lists and HDF5 with the zero-row quirk."""

from __future__ import annotations

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from helpers import make_synthetic_batch

from mubundle.data import legacy
from mubundle.data.batch import RaggedBatch
from mubundle.data.sources import detect_layout, read_events
from mubundle.data.writers import write_batch


def _write_h5(path, primaries, muons, counts):
    with h5py.File(path, "w") as handle:
        handle["primaries"] = np.asarray(primaries, np.float32)
        handle["muons"] = np.asarray(muons, np.float32).reshape(-1, 6)
        handle["counts"] = np.asarray(counts, np.int32)


def test_legacy_parquet_written_then_imported_is_identical(tmp_path):
    batch = make_synthetic_batch(400, seed=1)
    write_batch(batch, tmp_path / "old.parquet", format="legacy-parquet")
    assert detect_layout(tmp_path / "old.parquet") == "legacy-parquet"
    result = read_events(tmp_path / "old.parquet")
    assert result.batch.equals(batch) and not result.rejected and not result.failed_files


def test_legacy_hdf5_written_then_imported_is_identical(tmp_path):
    batch = make_synthetic_batch(400, seed=2)
    write_batch(batch, tmp_path / "old.h5", format="hdf5")
    assert detect_layout(tmp_path / "old.h5") == "legacy-hdf5"
    result = read_events(tmp_path / "old.h5")
    assert result.batch.equals(batch) and not result.rejected and not result.failed_files


def test_hdf5_writer_uses_one_zero_row_with_count_one_for_events_without_muons(tmp_path):
    batch = make_synthetic_batch(100, seed=3)
    write_batch(batch, tmp_path / "old.h5", format="hdf5")
    with h5py.File(tmp_path / "old.h5", "r") as handle:
        counts, muons = handle["counts"][()], handle["muons"][()]
    assert np.array_equal(counts, np.maximum(batch.counts, 1))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    assert (muons[starts[batch.counts == 0]] == 0).all()


def test_one_zero_muon_row_with_count_one_means_no_muons(tmp_path):
    primaries = [[1, 0, 1e6, 0.1, 1, 0, 1.5], [2, 0, 2e6, 0.2, 4, 0, 2.0], [3, 0, 3e6, 0.3, 56, 0, 2.5]]
    muons = [
        [0, 0, 0, 0, 0, 0],  # event 1: the quirk (count 1, all zero) -> N = 0
        [2, 0, 50.0, 1.0, -2.0, 1e-6],  # event 2: one real muon
        [3, 0, 10.0, 3.0, 4.0, 2e-6],  # event 3: two real muons
        [3, 0, 20.0, -3.0, 0.5, 3e-6],
    ]
    _write_h5(tmp_path / "q.h5", primaries, muons, [1, 1, 2])
    result = read_events(tmp_path / "q.h5")
    assert np.array_equal(result.batch.counts, [0, 1, 2])
    assert np.array_equal(result.batch.flat_muons, np.array([[50, 1, -2], [10, 3, 4], [20, -3, 0.5]], np.float32))
    assert np.allclose(result.batch.conditions[:, 0], [1e6, 2e6, 3e6])
    assert np.allclose(result.batch.conditions[:, 3], [1.5, 2.0, 2.5])
    assert result.rejected == {}


def test_muon_rows_of_another_event_are_a_count_mismatch(tmp_path):
    primaries = [[1, 0, 1e6, 0.1, 1, 0, 1.5], [2, 0, 2e6, 0.2, 4, 0, 2.0]]
    muons = [[1, 0, 5.0, 1, 1, 0], [2, 0, 6.0, 1, 1, 0], [2, 0, 7.0, 1, 1, 0]]
    _write_h5(tmp_path / "m.h5", primaries, muons, [2, 1])  # event 1 claims a muon of event 2
    result = read_events(tmp_path / "m.h5")
    assert result.rejected == {"count_mismatch": 1}
    assert np.array_equal(result.rejected_rows.rows, [0])
    assert np.array_equal(result.batch.flat_muons, [[7.0, 1, 1]])  # event 2's own row is still consistent


def test_counts_beyond_the_muon_dataset_are_a_count_mismatch_for_those_events_only(tmp_path):
    primaries = [[1, 0, 1e6, 0.1, 1, 0, 1.5], [2, 0, 2e6, 0.2, 4, 0, 2.0]]
    muons = [[1, 0, 5.0, 1, 1, 0], [2, 0, 6.0, 1, 1, 0]]
    _write_h5(tmp_path / "t.h5", primaries, muons, [1, 3])
    result = read_events(tmp_path / "t.h5")
    assert result.rejected == {"count_mismatch": 1}
    assert np.array_equal(result.batch.counts, [1])


def test_legacy_parquet_wrong_list_lengths_are_rejected_per_row(tmp_path):
    table = pa.table(
        {
            "primary": pa.array([[1e6, 0.1, 1, 2.0], [1e6, 0.1, 1], [2e6, 0.2, 4, 1.5]], pa.list_(pa.float32())),
            "muons": pa.array([[[10, 1, 2]], [[10, 1, 2]], [[10, 1]]], pa.list_(pa.list_(pa.float32()))),
        }
    )
    pq.write_table(table, tmp_path / "l.parquet")
    result = read_events(tmp_path / "l.parquet")
    assert result.rejected == {"bad_list_length": 2}
    assert np.array_equal(result.rejected_rows.rows, [1, 2])
    assert np.array_equal(result.batch.flat_muons, [[10, 1, 2]])


def test_legacy_parquet_null_values_are_rejected_as_null_value(tmp_path):
    table = pa.table(
        {
            "primary": pa.array([[1e6, 0.1, 1, 2.0], None, [1e6, None, 1, 2.0]], pa.list_(pa.float32())),
            "muons": pa.array([[[10, 1, 2]], [], None], pa.list_(pa.list_(pa.float32()))),
        }
    )
    pq.write_table(table, tmp_path / "n.parquet")
    result = read_events(tmp_path / "n.parquet")
    assert result.rejected == {"null_value": 2}
    assert len(result.batch) == 1


def test_legacy_parquet_decoder_handles_float64_and_large_lists(tmp_path):
    table = pa.table(
        {
            "primary": pa.array([[1e6, 0.1, 1, 2.0]], pa.large_list(pa.float64())),
            "muons": pa.array([[[10, 1, 2], [20, 3, 4]]], pa.large_list(pa.large_list(pa.float64()))),
        }
    )
    decoded = legacy.decode_parquet_table(table, "mem")
    assert np.array_equal(decoded.batch.counts, [2])
    assert decoded.batch.flat_muons.dtype == np.float32


def test_muon_rows_left_after_the_last_event_reject_the_last_event(tmp_path):
    primaries = [[1, 0, 1e6, 0.1, 1, 0, 1.5], [2, 0, 2e6, 0.2, 4, 0, 2.0]]
    muons = [[1, 0, 5.0, 1, 1, 0], [2, 0, 6.0, 1, 1, 0], [2, 0, 7.0, 1, 1, 0]]
    _write_h5(tmp_path / "o.h5", primaries, muons, [1, 1])
    result = read_events(tmp_path / "o.h5")
    assert result.rejected == {"count_mismatch": 1}
    assert np.array_equal(result.rejected_rows.rows, [1])


def test_negative_count_is_a_count_mismatch(tmp_path):
    primaries = [[1, 0, 1e6, 0.1, 1, 0, 1.5], [2, 0, 2e6, 0.2, 4, 0, 2.0]]
    _write_h5(tmp_path / "n.h5", primaries, [[2, 0, 6.0, 1, 1, 0]], [-1, 1])
    result = read_events(tmp_path / "n.h5")
    assert result.rejected == {"count_mismatch": 1}
    assert np.array_equal(result.batch.flat_muons, [[6.0, 1, 1]])


def test_hdf5_read_in_small_chunks_equals_the_whole_file(tmp_path, monkeypatch):
    from mubundle.data import sources

    batch = make_synthetic_batch(100, seed=9)
    write_batch(batch, tmp_path / "c.h5", format="hdf5")
    monkeypatch.setattr(sources, "HDF5_CHUNK_EVENTS", 7)
    assert len(sources.list_pieces(tmp_path / "c.h5")) == 15
    assert read_events(tmp_path / "c.h5").batch.equals(batch)


def test_legacy_parquet_with_many_row_groups_keeps_row_numbers(tmp_path):
    from mubundle.data.writers import legacy_parquet_table

    batch = make_synthetic_batch(50, seed=10)
    conditions = batch.conditions.copy()
    conditions[33, 2] = 0.0  # mass below one, in the 4th row group
    table = legacy_parquet_table(RaggedBatch(conditions, batch.counts, batch.flat_muons))
    pq.write_table(table, tmp_path / "rg.parquet", row_group_size=10)
    result = read_events(tmp_path / "rg.parquet")
    assert list(result.rejected_rows.rows) == [33]
    assert len(result.batch) == 49
