"""Native Parquet shards: exact round trips, metadata, sharded writing in range folders."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_synthetic_batch

from mubundle.data import native, schema
from mubundle.data.batch import RaggedBatch
from mubundle.data.sources import expand_paths, read_events


def test_write_then_read_shard_is_identical_including_zero_muon_events(tmp_path):
    batch = make_synthetic_batch(500, seed=1)
    assert (batch.counts == 0).any()
    native.write_shard(batch, tmp_path / "a.parquet", {"producer": "test"})
    assert native.read_shard(tmp_path / "a.parquet").equals(batch)


def test_weights_round_trip_as_float64(tmp_path):
    batch = make_synthetic_batch(50, seed=2, with_weights=True)
    native.write_shard(batch, tmp_path / "w.parquet")
    back = native.read_shard(tmp_path / "w.parquet")
    assert back.weights is not None and back.weights.dtype == np.float64
    assert back.equals(batch)


def test_empty_batch_round_trips(tmp_path):
    native.write_shard(RaggedBatch.empty(), tmp_path / "e.parquet")
    assert native.read_shard(tmp_path / "e.parquet").equals(RaggedBatch.empty())


def test_schema_uses_scalar_columns_and_fixed_size_muon_lists(tmp_path):
    native.write_shard(make_synthetic_batch(10, seed=3), tmp_path / "s.parquet")
    arrow_schema = pq.read_schema(tmp_path / "s.parquet")
    for name in schema.CONDITION_FIELDS:
        assert arrow_schema.field(name).type == pa.float32()
    assert arrow_schema.field("muons").type == pa.list_(pa.list_(pa.float32(), 3))


def test_metadata_records_format_version_units_producer_and_config(tmp_path):
    metadata = native.default_metadata("unit-test", config={"seed": 7})
    native.write_shard(make_synthetic_batch(5, seed=4), tmp_path / "m.parquet", metadata)
    read = native.read_metadata(tmp_path / "m.parquet")
    assert read["format_version"] == schema.FORMAT_VERSION
    assert read["producer"] == "unit-test" and read["config"] == {"seed": 7}
    assert read["units"]["conditions"]["depth"] == "km" and read["units"]["muons"]["x"] == "m"


def test_decoding_a_sliced_multi_chunk_table_keeps_event_boundaries():
    batch = make_synthetic_batch(300, seed=5)
    table = native.batch_to_table(batch)
    chunked = pa.concat_tables([table.slice(0, 100), table.slice(100, 200)]).slice(37, 150)
    decoded, nulls = native.decode_table(chunked)
    assert not nulls.any()
    assert decoded.equals(batch.slice(37, 187))


def test_shard_writer_splits_into_range_folders_and_preserves_order(tmp_path):
    batches = [make_synthetic_batch(n, seed=s) for s, n in enumerate([130, 7, 250])]
    with native.ShardWriter(tmp_path / "ds", {"producer": "test"}, events_per_shard=100) as writer:
        for batch in batches:
            writer.write(batch)
    paths = writer.close()
    assert [p.relative_to(tmp_path / "ds").as_posix() for p in paths] == [
        f"0000000-0000999/part-{i:05d}.parquet" for i in range(4)
    ]
    assert [len(native.read_shard(p)) for p in paths] == [100, 100, 100, 87]
    assert read_events(tmp_path / "ds").batch.equals(RaggedBatch.concat(batches))
    assert not list((tmp_path / "ds").rglob(".*tmp*"))


def test_shard_index_1000_starts_the_next_range_folder(tmp_path):
    assert native.shard_path(tmp_path, 999).parent.name == "0000000-0000999"
    assert native.shard_path(tmp_path, 1000).as_posix().endswith("0001000-0001999/part-01000.parquet")


def test_directory_expansion_finds_nested_range_folders_sorted(tmp_path):
    for k in (1001, 3, 0):
        native.write_shard(make_synthetic_batch(3, seed=k), native.shard_path(tmp_path, k))
    found = expand_paths([tmp_path])
    assert [p.name for p in found] == ["part-00000.parquet", "part-00003.parquet", "part-01001.parquet"]


def test_read_shard_rejects_a_parquet_file_without_native_columns(tmp_path):
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "x.parquet")
    with pytest.raises(native.NativeFormatError, match="x.parquet"):
        native.read_shard(tmp_path / "x.parquet")


def test_shard_writer_rejects_non_positive_shard_size(tmp_path):
    with pytest.raises(ValueError):
        native.ShardWriter(tmp_path, events_per_shard=0)
