"""Write a RaggedBatch in any supported layout.

- ``parquet``: the native shard format (:mod:`mubundle.data.native`).
- ``hdf5`` and ``legacy-parquet``: the layouts of the original pipeline's writers
  (briedel/cr_muons ``utils/data_converters/dump_muonitron_data.py``), so its own reader and
  normaliser get the right conditions: mass = the primary's rest mass in GeV (nuclear masses from the
  ``particle`` package: N14 and Al27 3 and 7 MeV below the original's table, read back as the same A), depth = the
  vertical depth in m below the surface of the medium (the slant depth converted back through
  Muonitron's spherical overburden, :mod:`mubundle.geometry`, with the sphere of the site the
  ``metadata`` records: :func:`mubundle.data.conventions.overburden_radius_m`; no site: IceCube's
  ice, as the original pipeline's files), ids ``(major, minor)``.
  HDF5: ``primaries`` (N, 7) ``[major, minor, E, zenith, mass, time = 0, depth]``, ``muons``
  (M, 6) ``[major, minor, E, x, y, time = 0]``, ``counts`` int32, and an event without muons
  written as one row ``[major, minor, 0, 0, 0, 0]`` with count 1 (the original's placeholder).
  Parquet: uint64 ``primary_major_id``/``primary_minor_id``, ``primary`` list<float32>
  ``[E, zenith, mass, depth]``, ``muons`` list<list<float32>> ``[E, x, y]``, in this order.
  Ids are the batch's own (``RaggedBatch.ids``) or, without them, ``event // 1_000_000`` and
  ``event % 1_000_000`` (exact in float32). Both carry the ``mubundle`` metadata with
  ``legacy_units = "original"`` so mubundle reads them back in the right convention, and the
  site's depth keys in the depth column's vertical metres (``depth_unit`` "m of ice",
  ``depths_sorted_m``; :func:`mubundle.data.conventions.original_metadata`).

All writers are atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pyarrow as pa

from mubundle.data.atomic import atomic_output
from mubundle.data import conventions, legacy, native
from mubundle.data.batch import RaggedBatch
from mubundle.data.sites import metadata_site

FORMATS = ("parquet", "hdf5", "legacy-parquet")
_ID_BASE = 1_000_000


def _event_ids(n_events: int, first_event: int = 0) -> tuple[np.ndarray, np.ndarray]:
    index = first_event + np.arange(n_events, dtype=np.int64)
    return (index // _ID_BASE).astype(np.uint64), (index % _ID_BASE).astype(np.uint64)


def batch_ids(batch: RaggedBatch, first_event: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(major, minor) uint64 ids of the events: the batch's own, else from the event index."""
    if batch.ids is not None:
        return batch.ids[:, 0], batch.ids[:, 1]
    return _event_ids(len(batch), first_event)


def legacy_parquet_table(batch: RaggedBatch, metadata: dict[str, Any] | None = None, first_event: int = 0) -> pa.Table:
    """Arrow table in the original Parquet layout and units (see module docstring); depths converted
    through the overburden of the site ``metadata`` records (``ValueError`` for an unknown site)."""
    n_events, n_muons = len(batch), batch.n_muons
    original = conventions.to_original_units(batch.conditions, metadata_site(metadata or {}))
    primary = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 4 * n_events + 1, 4, dtype=np.int32)),
        pa.array(original.reshape(-1), type=pa.float32()),
    )
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 3 * n_muons + 1, 3, dtype=np.int32)),
        pa.array(batch.flat_muons.reshape(-1), type=pa.float32()),
    )
    muons = pa.ListArray.from_arrays(pa.array(batch.offsets.astype(np.int32)), inner)
    major, minor = batch_ids(batch, first_event)
    table = pa.table(
        {
            legacy.ID_COLUMNS[0]: pa.array(major, type=pa.uint64()),
            legacy.ID_COLUMNS[1]: pa.array(minor, type=pa.uint64()),
            legacy.PRIMARY_COLUMN: primary,
            legacy.MUONS_COLUMN: muons,
        }
    )
    encoded = json.dumps(conventions.original_metadata(metadata), sort_keys=True).encode()
    return table.replace_schema_metadata({legacy.METADATA_KEY.encode(): encoded})


def _hdf5_arrays(
    batch: RaggedBatch, first_event: int = 0, metadata: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(primaries (N,7), muons (M',6), counts (N,) int32) in the original units, with one
    ``[major, minor, 0, 0, 0, 0]`` row per muon-less event; depths converted through the
    overburden of the site ``metadata`` records (none: IceCube; ``ValueError`` for an unknown one)."""
    n_events = len(batch)
    major, minor = batch_ids(batch, first_event)
    primaries = np.zeros((n_events, 7), dtype=np.float32)
    primaries[:, 0], primaries[:, 1] = major, minor
    columns = [legacy.H5_PRIMARY_ENERGY, legacy.H5_PRIMARY_ZENITH, legacy.H5_PRIMARY_MASS, legacy.H5_PRIMARY_DEPTH]
    primaries[:, columns] = conventions.to_original_units(batch.conditions, metadata_site(metadata or {}))
    rows_per_event = np.maximum(batch.counts, 1)
    muons = np.zeros((int(rows_per_event.sum()), 6), dtype=np.float32)
    row_event = np.repeat(np.arange(n_events), rows_per_event)
    muons[:, 0], muons[:, 1] = primaries[row_event, 0], primaries[row_event, 1]
    real = np.repeat(batch.counts > 0, rows_per_event)
    muons[real, legacy.H5_MUON_ENERGY : legacy.H5_MUON_Y + 1] = batch.flat_muons
    return primaries, muons, rows_per_event.astype(np.int32)


def write_hdf5(batch: RaggedBatch, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> None:
    """Legacy HDF5 layout (see module docstring); ``metadata`` as JSON in the file attribute ``mubundle``."""
    import h5py

    primaries, muons, counts = _hdf5_arrays(batch, metadata=metadata)
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("primaries", data=primaries)
            handle.create_dataset("muons", data=muons)
            handle.create_dataset("counts", data=counts)
            handle.attrs[legacy.METADATA_KEY] = json.dumps(conventions.original_metadata(metadata), sort_keys=True)


def write_batch(
    batch: RaggedBatch, path: str | os.PathLike, format: str = "parquet", metadata: dict[str, Any] | None = None
) -> None:
    """Write ``batch`` to ``path`` in ``format`` (one of ``FORMATS``); atomic."""
    if format == "parquet":
        native.write_shard(batch, path, metadata)
    elif format == "hdf5":
        write_hdf5(batch, path, metadata)
    elif format == "legacy-parquet":
        native.write_table_atomic(legacy_parquet_table(batch, metadata), path)
    else:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
