"""Native Parquet shards: columnar events decodable without per-row Python.

Schema of one shard (see docs/data_format.md):

- ``energy``, ``zenith``, ``mass``, ``depth``: float32 scalars (GeV, rad, A, km)
- ``weight``: optional float64 (Hz)
- ``major_id``, ``minor_id``: optional uint64 event ids of the source (I3 particle ids of the
  original pipeline's primary, or CORSIKA run and event number), so a user can go back to it
- ``muons``: ``list<fixed_size_list<float32, 3>>`` = per event ``[[E GeV, x m, y m], ...]``

File-level metadata is one JSON object stored under ``schema.METADATA_KEY`` in the Parquet
key-value metadata: ``format_version``, ``units``, ``producer``, ``config`` and anything the
producer adds.

Decoding uses the Arrow list offsets and the flattened float32 value buffer directly
(zero-copy views when the column is a single chunk), so its cost is the Parquet page
decode, not Python.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mubundle.data import schema
from mubundle.data.atomic import atomic_output
from mubundle.data.batch import RaggedBatch

#: Events per Parquet row group: the unit the streaming reader loads at once.
ROW_GROUP_EVENTS = 65_536
#: Shards per range folder: shard k lives in folder ``{1000*(k//1000):07d}-{1000*(k//1000)+999:07d}``.
SHARDS_PER_FOLDER = 1000

_MUON_TYPE = pa.list_(pa.list_(pa.float32(), 3))


class NativeFormatError(ValueError):
    """A Parquet file is not a readable native shard (message names the file)."""


def default_metadata(producer: str, config: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """File-level metadata with format version, units and the mubundle version that wrote it filled in."""
    from mubundle import __version__

    metadata: dict[str, Any] = {
        "format_version": schema.FORMAT_VERSION,
        "mubundle_version": __version__,
        "units": {
            "conditions": dict(schema.CONDITION_UNITS),
            "muons": dict(schema.MUON_UNITS),
            "weight": "Hz",
        },
        "producer": producer,
        "config": config or {},
    }
    metadata.update(extra)
    return metadata


def _complete_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    full = default_metadata(producer="unknown")
    full.update(metadata or {})
    full["format_version"] = schema.FORMAT_VERSION
    return full


def muon_array(counts: np.ndarray, flat_muons: np.ndarray) -> pa.ListArray:
    """``list<fixed_size_list<float32,3>>`` array from (B,) counts and (M, 3) muons (no copy of values)."""
    offsets = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if offsets[-1] >= np.iinfo(np.int32).max:
        raise ValueError(f"too many muons for one shard ({offsets[-1]}); write smaller shards")
    values = pa.array(np.ascontiguousarray(flat_muons, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.FixedSizeListArray.from_arrays(values, 3))


def batch_to_table(batch: RaggedBatch, metadata: dict[str, Any] | None = None) -> pa.Table:
    """Arrow table of the native schema; ``metadata`` goes under ``schema.METADATA_KEY``."""
    columns: dict[str, pa.Array] = {
        name: pa.array(batch.conditions[:, i], type=pa.float32()) for i, name in enumerate(schema.CONDITION_FIELDS)
    }
    if batch.weights is not None:
        columns[schema.WEIGHT_COLUMN] = pa.array(batch.weights, type=pa.float64())
    if batch.ids is not None:
        for i, name in enumerate(schema.ID_COLUMNS):
            columns[name] = pa.array(batch.ids[:, i], type=pa.uint64())
    columns[schema.MUONS_COLUMN] = muon_array(batch.counts, batch.flat_muons)
    table = pa.table(columns)
    encoded = json.dumps(_complete_metadata(metadata), sort_keys=True).encode()
    return table.replace_schema_metadata({schema.METADATA_KEY: encoded})


#: How every native Parquet file is written (shards, ``generate`` output): measured
#: (benchmarks/io_decode.py), float data gains < 10 % from zstd but decodes ~1.5x slower, and
#: dictionary encoding never pays off for continuous values -> snappy, no dictionary; page CRCs
#: turn silent bit rot into a read error that names the file.
PARQUET_WRITE_OPTIONS: dict[str, Any] = {"compression": "snappy", "use_dictionary": False, "write_page_checksum": True}


def write_table_atomic(table: pa.Table, path: str | os.PathLike, row_group_size: int = ROW_GROUP_EVENTS) -> None:
    """Write a Parquet file atomically: temporary file, fsync, rename, fsync the folder."""
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size, **PARQUET_WRITE_OPTIONS)


def write_shard(batch: RaggedBatch, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> None:
    """Write one native shard atomically (tmp + fsync + rename)."""
    write_table_atomic(batch_to_table(batch, metadata), path)


def _single_chunk(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _float_values(array: pa.Array, dtype: type) -> np.ndarray:
    """numpy view of a primitive Arrow array (zero-copy unless it holds nulls, which become NaN)."""
    return array.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def decode_muons(muons: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode a ``list<fixed_size_list<float32,3>>`` array.

    Returns ``(offsets (B+1,) int64 starting at 0, flat_muons (M, 3) float32, null_rows (B,) bool)``.
    Null event lists, and events with a null muon or a null value inside a muon, are returned
    with zero muons and flagged in ``null_rows`` (the other events of the file are unaffected).
    """
    if isinstance(muons, pa.ChunkedArray):
        muons = _single_chunk(muons)
    if not (pa.types.is_list(muons.type) or pa.types.is_large_list(muons.type)):
        raise NativeFormatError(f"column 'muons' has type {muons.type}, expected {_MUON_TYPE}")
    inner = muons.values  # ignores the list array's own offset; the offsets below index into it
    if not pa.types.is_fixed_size_list(inner.type) or inner.type.list_size != 3:
        raise NativeFormatError(f"column 'muons' has type {muons.type}, expected {_MUON_TYPE}")
    null_rows = np.zeros(len(muons), dtype=bool)
    if muons.null_count:
        null_rows = muons.is_null().to_numpy(zero_copy_only=False)
    offsets = np.frombuffer(muons.buffers()[1], dtype=np.int32 if pa.types.is_list(muons.type) else np.int64)
    offsets = offsets[muons.offset : muons.offset + len(muons) + 1].astype(np.int64)
    leaves = _float_values(inner.values, np.float32)
    start = inner.offset * 3
    flat = leaves[start : start + 3 * len(inner)].reshape(-1, 3)
    if inner.values.null_count or inner.null_count:
        # a null muon or a null value inside one: that event is a null_value row, not a broken file
        bad_muon = np.zeros(len(inner), dtype=bool)
        if inner.null_count:
            bad_muon |= inner.is_null().to_numpy(zero_copy_only=False)
        if inner.values.null_count:
            leaf_nulls = inner.values.is_null().to_numpy(zero_copy_only=False)[start : start + 3 * len(inner)]
            bad_muon |= leaf_nulls.reshape(-1, 3).any(axis=1)
        bad_muon = bad_muon[offsets[0] : offsets[-1]]
        event_of_muon = np.repeat(np.arange(len(muons)), np.diff(offsets))
        null_rows = null_rows | (np.bincount(event_of_muon[bad_muon], minlength=len(muons)) > 0)
    flat = flat[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    if null_rows.any():  # a null list may still span values in some writers; drop them
        counts = np.diff(offsets)
        keep = np.repeat(~null_rows, counts)
        flat = flat[keep]
        counts[null_rows] = 0
        offsets = np.concatenate([[0], np.cumsum(counts)])
    return offsets, flat, null_rows


def decode_table(table: pa.Table) -> tuple[RaggedBatch, np.ndarray]:
    """Native table -> (RaggedBatch of raw values, (B,) bool rows with a null value).

    Values are not validated here (see :mod:`mubundle.data.validate`).
    """
    names = set(table.column_names)
    missing = [name for name in (*schema.CONDITION_FIELDS, schema.MUONS_COLUMN) if name not in names]
    if missing:
        raise NativeFormatError(f"missing column(s) {', '.join(missing)}")
    conditions, weights, ids, null_rows = _decode_conditions(table)
    offsets, flat_muons, null_muons = decode_muons(table.column(schema.MUONS_COLUMN))
    return RaggedBatch.from_offsets(conditions, offsets, flat_muons, weights, ids), null_rows | null_muons


def decode_primaries_table(table: pa.Table) -> tuple[RaggedBatch, np.ndarray]:
    """A table of primaries (the native condition columns, optional weight and id columns, no
    ``muons`` column) -> (RaggedBatch of raw values without muons, (B,) bool rows with a null value)."""
    conditions, weights, ids, null_rows = _decode_conditions(table)
    n_events = conditions.shape[0]
    return RaggedBatch.from_offsets(conditions, np.zeros(n_events + 1, np.int64), np.zeros((0, 3), np.float32),
                                    weights, ids), null_rows


def _decode_conditions(table: pa.Table) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """(conditions (B, 4) float32 [GeV, rad, A, km], weights (B,) float64 [Hz] or None, ids (B, 2)
    uint64 or None, (B,) bool rows with a null value) of a native table; raises
    :class:`NativeFormatError` naming missing condition columns."""
    names = set(table.column_names)
    missing = [name for name in schema.CONDITION_FIELDS if name not in names]
    if missing:
        raise NativeFormatError(f"missing column(s) {', '.join(missing)}")
    n_events = table.num_rows
    conditions = np.empty((n_events, 4), dtype=np.float32)
    null_rows = np.zeros(n_events, dtype=bool)
    for i, name in enumerate(schema.CONDITION_FIELDS):
        column = _single_chunk(table.column(name))
        conditions[:, i] = _float_values(column, np.float32)
        if column.null_count:
            null_rows |= column.is_null().to_numpy(zero_copy_only=False)
    weights = None
    if schema.WEIGHT_COLUMN in names:
        column = _single_chunk(table.column(schema.WEIGHT_COLUMN))
        weights = _float_values(column, np.float64)
        if column.null_count:
            null_rows |= column.is_null().to_numpy(zero_copy_only=False)
    ids = None
    if all(name in names for name in schema.ID_COLUMNS):
        ids = np.zeros((n_events, 2), dtype=np.uint64)
        for i, name in enumerate(schema.ID_COLUMNS):
            column = _single_chunk(table.column(name))
            ids[:, i] = column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.uint64)
    return conditions, weights, ids, null_rows


def read_table(path: str | os.PathLike) -> pa.Table:
    """The whole shard as an Arrow table (single-threaded decode)."""
    return pq.read_table(path, use_threads=False, page_checksum_verification=True)


def read_shard(path: str | os.PathLike) -> RaggedBatch:
    """Read a native shard into one RaggedBatch (values exactly as stored, not validated).

    Raises :class:`NativeFormatError` (naming the file) when the file is not a native shard
    or holds null values; use :func:`mubundle.data.sources.read_events` for validated input.
    """
    try:
        batch, null_rows = decode_table(read_table(path))
    except NativeFormatError as error:
        raise NativeFormatError(f"{path}: {error}") from None
    if null_rows.any():
        raise NativeFormatError(f"{path}: {int(null_rows.sum())} row(s) hold null values")
    return batch


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON file-level metadata of a native shard (``{}`` if absent)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(schema.METADATA_KEY)
    if raw is None:
        return {}
    return json.loads(raw)


def shard_path(out_dir: str | os.PathLike, shard_index: int) -> Path:
    """Path of shard ``k``: ``out_dir/0000000-0000999/part-00000.parquet`` (1000 shards per folder)."""
    first = (shard_index // SHARDS_PER_FOLDER) * SHARDS_PER_FOLDER
    folder = f"{first:07d}-{first + SHARDS_PER_FOLDER - 1:07d}"
    return Path(out_dir) / folder / f"part-{shard_index:05d}.parquet"


class ShardWriter:
    """Writes a stream of batches as native shards of ``events_per_shard`` events.

    Memory is bounded by one shard worth of events plus the batch being written. Shards
    go to range folders (:func:`shard_path`); every shard is written atomically, so a
    crash leaves only complete shards behind. Use as a context manager or call
    :meth:`close` to flush the last (possibly short) shard; a ``with`` block left by an
    exception (Ctrl-C, SIGTERM, an error) does not write the pending partial shard.
    """

    def __init__(
        self, out_dir: str | os.PathLike, metadata: dict[str, Any] | None = None, events_per_shard: int = 100_000
    ) -> None:
        if events_per_shard <= 0:
            raise ValueError(f"events_per_shard must be positive, got {events_per_shard}")
        self.out_dir = Path(out_dir)
        self.metadata = dict(metadata or {})
        self.events_per_shard = int(events_per_shard)
        self.paths: list[Path] = []
        self.events_written = 0
        self.muons_written = 0
        self._pending: list[RaggedBatch] = []
        self._pending_events = 0
        self._closed = False

    def write(self, batch: RaggedBatch) -> None:
        """Queue ``batch``; full shards are written as soon as they are complete."""
        if self._closed:
            raise ValueError("ShardWriter is closed")
        start = 0
        while start < len(batch):
            take = min(len(batch) - start, self.events_per_shard - self._pending_events)
            self._pending.append(batch.slice(start, start + take))
            self._pending_events += take
            start += take
            if self._pending_events == self.events_per_shard:
                self._flush()

    def _flush(self) -> None:
        if not self._pending_events:
            return
        shard = RaggedBatch.concat(self._pending)
        path = shard_path(self.out_dir, len(self.paths))
        write_shard(shard, path, self.metadata)
        self.paths.append(path)
        self.events_written += len(shard)
        self.muons_written += shard.n_muons
        self._pending = []
        self._pending_events = 0

    def close(self) -> list[Path]:
        """Write the last shard; returns all shard paths in order."""
        if not self._closed:
            self._flush()
            self._closed = True
        return list(self.paths)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:  # interrupted or failed: no short last shard from a partial stream
            self._pending, self._pending_events, self._closed = [], 0, True
