"""Write a RaggedBatch in any supported layout.

- ``parquet``: the native shard format (:mod:`mubundle.data.native`).
- ``hdf5``: the legacy HDF5 layout (PHYSICS.md), including the quirk that an event
  without muons is written as one all-zero muon row with count 1, so the old pipeline
  reads it unchanged. ``major_id``/``minor_id`` = ``event // 1_000_000``, ``event % 1_000_000``
  (exact in float32); ``time`` columns are 0.
- ``legacy-parquet``: ``primary`` list<float32> and ``muons`` list<list<float32>>, plus
  int64 ``primary_major_id``/``primary_minor_id`` (same ids as the HDF5 writer).

All writers are atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from mubundle.data.atomic import atomic_output
from mubundle.data import legacy, native
from mubundle.data.batch import RaggedBatch

FORMATS = ("parquet", "hdf5", "legacy-parquet")
_ID_BASE = 1_000_000


def _event_ids(n_events: int) -> tuple[np.ndarray, np.ndarray]:
    index = np.arange(n_events, dtype=np.int64)
    return index // _ID_BASE, index % _ID_BASE


def legacy_parquet_table(batch: RaggedBatch) -> pa.Table:
    """Arrow table in the legacy Parquet layout."""
    n_events, n_muons = len(batch), batch.n_muons
    primary = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 4 * n_events + 1, 4, dtype=np.int32)),
        pa.array(batch.conditions.reshape(-1), type=pa.float32()),
    )
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 3 * n_muons + 1, 3, dtype=np.int32)),
        pa.array(batch.flat_muons.reshape(-1), type=pa.float32()),
    )
    muons = pa.ListArray.from_arrays(pa.array(batch.offsets.astype(np.int32)), inner)
    major, minor = _event_ids(n_events)
    return pa.table(
        {
            legacy.PRIMARY_COLUMN: primary,
            legacy.MUONS_COLUMN: muons,
            "primary_major_id": pa.array(major, type=pa.int64()),
            "primary_minor_id": pa.array(minor, type=pa.int64()),
        }
    )


def _hdf5_arrays(batch: RaggedBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(primaries (N,7), muons (M',6), counts (N,) int32) with one zero row per muon-less event."""
    n_events = len(batch)
    major, minor = _event_ids(n_events)
    primaries = np.zeros((n_events, 7), dtype=np.float32)
    primaries[:, 0], primaries[:, 1] = major, minor
    columns = [legacy.H5_PRIMARY_ENERGY, legacy.H5_PRIMARY_ZENITH, legacy.H5_PRIMARY_MASS, legacy.H5_PRIMARY_DEPTH]
    primaries[:, columns] = batch.conditions
    rows_per_event = np.maximum(batch.counts, 1)
    muons = np.zeros((int(rows_per_event.sum()), 6), dtype=np.float32)
    row_event = np.repeat(np.arange(n_events), rows_per_event)
    real = np.repeat(batch.counts > 0, rows_per_event)
    muons[real, 0], muons[real, 1] = primaries[row_event[real], 0], primaries[row_event[real], 1]
    muons[real, legacy.H5_MUON_ENERGY : legacy.H5_MUON_Y + 1] = batch.flat_muons
    return primaries, muons, rows_per_event.astype(np.int32)


def write_hdf5(batch: RaggedBatch, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> None:
    """Legacy HDF5 layout (see module docstring); ``metadata`` as JSON in the file attribute ``mubundle``."""
    import json

    import h5py

    primaries, muons, counts = _hdf5_arrays(batch)
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("primaries", data=primaries)
            handle.create_dataset("muons", data=muons)
            handle.create_dataset("counts", data=counts)
            if metadata:
                handle.attrs["mubundle"] = json.dumps(metadata, sort_keys=True)


def write_batch(
    batch: RaggedBatch, path: str | os.PathLike, format: str = "parquet", metadata: dict[str, Any] | None = None
) -> None:
    """Write ``batch`` to ``path`` in ``format`` (one of ``FORMATS``); atomic."""
    if format == "parquet":
        native.write_shard(batch, path, metadata)
    elif format == "hdf5":
        write_hdf5(batch, path, metadata)
    elif format == "legacy-parquet":
        native.write_table_atomic(legacy_parquet_table(batch), path)
    else:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
