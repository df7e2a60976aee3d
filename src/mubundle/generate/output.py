"""Streaming output of generated events to ONE file in any supported format.

:func:`mubundle.data.writers.write_batch` writes a whole batch at once; generation produces
events chunk by chunk, so :class:`EventFileWriter` appends each chunk (a Parquet row group,
or a resize of the HDF5 datasets) and never holds more than one chunk. The column layouts
are the ones of :mod:`mubundle.data.writers` (built with its table/array helpers: the legacy
layouts in the original pipeline's units, rest mass GeV and vertical depth m); only the event
ids of the legacy layouts are shifted so they stay unique across chunks.
The file appears atomically: everything goes to a temporary file renamed on :meth:`close`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mubundle.data import conventions, legacy, native, writers
from mubundle.data.atomic import commit, create_temporary, remove_stale_temporaries
from mubundle.data.batch import RaggedBatch

FORMATS = writers.FORMATS


class EventFileWriter:
    """Append :class:`RaggedBatch` chunks to ``path`` in ``format`` (``parquet``, ``hdf5``,
    ``legacy-parquet``); ``metadata`` (JSON-able dict) is stored in the file.

    Use as a context manager: a clean exit renames the temporary file to ``path``, an
    exception removes it (no half-written output is ever left under ``path``).
    """

    def __init__(self, path: str | os.PathLike, format: str = "parquet", metadata: dict[str, Any] | None = None):
        if format not in FORMATS:
            raise ValueError(f"unknown output format {format!r}; choose one of {', '.join(FORMATS)}")
        self.path = Path(path)
        self.format = format
        self.metadata = dict(metadata or {})
        self.events_written = 0
        self.muons_written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.path.parent, recursive=False, name=self.path.name)  # of killed runs
        self._tmp = create_temporary(self.path)  # a refused --out fails now, naming it
        self._parquet: pq.ParquetWriter | None = None
        self._hdf5 = None
        self._closed = False

    # ------------------------------------------------------------------ formats
    def _parquet_table(self, batch: RaggedBatch) -> pa.Table:
        if self.format == "parquet":
            return native.batch_to_table(batch, self.metadata)
        table = writers.legacy_parquet_table(batch, self.metadata, first_event=self.events_written)
        if batch.weights is not None:  # not part of the legacy layout; kept so flux weights survive
            metadata = table.schema.metadata
            table = table.append_column(legacy.WEIGHT_COLUMN, pa.array(batch.weights, type=pa.float64()))
            table = table.replace_schema_metadata(metadata)
        return table

    def _write_parquet(self, batch: RaggedBatch) -> None:
        table = self._parquet_table(batch)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._tmp, table.schema, **native.PARQUET_WRITE_OPTIONS)
        self._parquet.write_table(table, row_group_size=native.ROW_GROUP_EVENTS)

    def _write_hdf5(self, batch: RaggedBatch) -> None:
        import h5py

        primaries, muons, counts = writers._hdf5_arrays(batch, first_event=self.events_written, metadata=self.metadata)
        if self._hdf5 is None:
            self._hdf5 = h5py.File(self._tmp, "w")
            self._hdf5.create_dataset("primaries", shape=(0, 7), maxshape=(None, 7), dtype=np.float32, chunks=True)
            self._hdf5.create_dataset("muons", shape=(0, 6), maxshape=(None, 6), dtype=np.float32, chunks=True)
            self._hdf5.create_dataset("counts", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=True)
            self._hdf5.attrs["mubundle"] = json.dumps(conventions.original_metadata(self.metadata), sort_keys=True)
            if batch.weights is not None:
                self._hdf5.create_dataset(legacy.WEIGHTS_DATASET, shape=(0,), maxshape=(None,), dtype=np.float64,
                                          chunks=True)
        for name, values in (("primaries", primaries), ("muons", muons), ("counts", counts)):
            dataset = self._hdf5[name]
            start = dataset.shape[0]
            dataset.resize(start + values.shape[0], axis=0)
            dataset[start:] = values
        if batch.weights is not None and legacy.WEIGHTS_DATASET in self._hdf5:
            dataset = self._hdf5[legacy.WEIGHTS_DATASET]
            start = dataset.shape[0]
            dataset.resize(start + len(batch), axis=0)
            dataset[start:] = batch.weights

    # ------------------------------------------------------------------ public
    def write(self, batch: RaggedBatch) -> None:
        """Append the events of ``batch`` (in order)."""
        if self._closed:
            raise ValueError(f"writer for {self.path} is closed")
        if self.format == "hdf5":
            self._write_hdf5(batch)
        else:
            self._write_parquet(batch)
        self.events_written += len(batch)
        self.muons_written += batch.n_muons

    def close(self) -> Path:
        """Finish the file (an empty file with the right layout when nothing was written)."""
        if self._closed:
            return self.path
        if self._parquet is None and self._hdf5 is None:
            self.write(RaggedBatch.empty())
        if self._parquet is not None:
            self._parquet.close()
        if self._hdf5 is not None:
            self._hdf5.close()
        commit(self._tmp, self.path)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop the partial output (called on errors)."""
        for handle in (self._parquet, self._hdf5):
            if handle is not None:
                handle.close()
        self._parquet = self._hdf5 = None
        self._closed = True
        if self._tmp.exists():
            self._tmp.unlink()

    def __enter__(self) -> "EventFileWriter":
        return self

    def __exit__(self, exc_type, *exc_info: object) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:  # a full disk at the last write or rename: no partial temporary file stays
                self.abort()
                raise
        else:
            self.abort()
