"""Import of the two layouts of the original pipeline (see ../shared/docs/PHYSICS.md).

1. Parquet: ``primary`` = list<float32> ``[E GeV, zenith rad, mass, depth km]`` and
   ``muons`` = list<list<float32>>, inner lists ``[E GeV, x m, y m]``; optional int64
   ``primary_major_id`` / ``primary_minor_id`` (ignored).
2. HDF5: ``primaries`` (N, 7) float32 ``[major_id, minor_id, energy, zenith, mass, time, depth]``,
   ``muons`` (M, 6) float32 ``[major_id, minor_id, energy, x, y, time]``, ``counts`` (N,) int32.
   Quirk: an event without muons was written as ONE all-zero muon row with count 1; such an
   event is decoded as N = 0.

Both decoders are vectorised over Arrow offsets / numpy slices and return
:class:`~mubundle.data.validate.DecodedRows` with structural problems flagged per row:
wrong list lengths (``bad_list_length``), nulls (``null_value``), and in HDF5 muon rows
that do not belong to the event they are counted for (``count_mismatch``: negative count,
muon rows missing at the end of the file, muon ids that differ from the primary's ids, or
muon rows left over after the last event, which rejects the last event).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from mubundle.data.batch import RaggedBatch
from mubundle.data.validate import REASON_CODE, DecodedRows

PRIMARY_COLUMN = "primary"
MUONS_COLUMN = "muons"

# HDF5 column layout (PHYSICS.md)
H5_PRIMARY_ENERGY, H5_PRIMARY_ZENITH, H5_PRIMARY_MASS, H5_PRIMARY_DEPTH = 2, 3, 4, 6
H5_MUON_ENERGY, H5_MUON_X, H5_MUON_Y, H5_MUON_TIME = 2, 3, 4, 5


def _list_parts(array: pa.Array) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """(offsets (n+1,) int64 into ``values``, values, null mask (n,)) of a (large_)list array."""
    if isinstance(array, pa.ChunkedArray):
        array = array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        raise ValueError(f"expected a list column, got {array.type}")
    offset_type = np.int32 if pa.types.is_list(array.type) else np.int64
    offsets = np.frombuffer(array.buffers()[1], dtype=offset_type)[array.offset : array.offset + len(array) + 1]
    nulls = np.zeros(len(array), dtype=bool)
    if array.null_count:
        nulls = array.is_null().to_numpy(zero_copy_only=False)
    return offsets.astype(np.int64), array.values, nulls


def _leaf_values(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """float32 values (nulls -> NaN) and their null mask."""
    nulls = np.zeros(len(values), dtype=bool)
    if values.null_count:
        nulls = values.is_null().to_numpy(zero_copy_only=False)
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False), nulls


def decode_parquet_table(table: pa.Table, file: str, first_row: int = 0) -> DecodedRows:
    """Legacy Parquet table -> DecodedRows (rows numbered from ``first_row``)."""
    for name in (PRIMARY_COLUMN, MUONS_COLUMN):
        if name not in table.column_names:
            raise ValueError(f"missing column '{name}'")
    n_events = table.num_rows
    structural = np.zeros(n_events, dtype=np.int8)

    def flag(reason: str, mask: np.ndarray) -> None:
        structural[(structural == 0) & mask] = REASON_CODE[reason]

    # primary: list<float> of length 4
    p_offsets, p_values, p_nulls = _list_parts(table.column(PRIMARY_COLUMN))
    p_leaf, p_leaf_nulls = _leaf_values(p_values)
    p_lengths = np.diff(p_offsets)
    flag("null_value", p_nulls)
    flag("bad_list_length", p_lengths != 4)
    good_primary = (p_lengths == 4) & ~p_nulls
    conditions = np.full((n_events, 4), np.nan, dtype=np.float32)
    gather = p_offsets[:-1][good_primary, None] + np.arange(4)
    conditions[good_primary] = p_leaf[gather]
    if p_leaf_nulls.any():
        primary_has_null = np.zeros(n_events, dtype=bool)
        primary_has_null[good_primary] = p_leaf_nulls[gather].any(axis=1)
        flag("null_value", primary_has_null)

    # muons: list<list<float>>, inner length 3
    m_offsets, inner, m_nulls = _list_parts(table.column(MUONS_COLUMN))
    i_offsets, leaves, i_nulls = _list_parts(inner)
    leaf, leaf_nulls = _leaf_values(leaves)
    flag("null_value", m_nulls)
    muon_start, muon_stop = m_offsets[0], m_offsets[-1]
    inner_lengths = np.diff(i_offsets)[muon_start:muon_stop]
    inner_bad = (inner_lengths != 3) | i_nulls[muon_start:muon_stop]
    raw_counts = np.diff(m_offsets)
    event_of_muon = np.repeat(np.arange(n_events), raw_counts)
    if inner_bad.any():
        flag("bad_list_length", np.bincount(event_of_muon[inner_bad], minlength=n_events) > 0)
    if leaf_nulls.any():
        starts = i_offsets[muon_start:muon_stop]
        null_in_muon = np.zeros(inner_lengths.shape[0], dtype=bool)
        ok = ~inner_bad
        null_in_muon[ok] = leaf_nulls[starts[ok, None] + np.arange(3)].any(axis=1)
        flag("null_value", np.bincount(event_of_muon[null_in_muon], minlength=n_events) > 0)

    keep_event = structural == 0
    keep_muon = np.repeat(keep_event, raw_counts)
    starts = i_offsets[muon_start:muon_stop][keep_muon]
    if keep_muon.all() and not inner_bad.any():
        # the common case: every inner list holds 3 values back to back -> a plain reshape (no gather)
        first = i_offsets[muon_start]
        flat_muons = leaf[first : first + 3 * (muon_stop - muon_start)].reshape(-1, 3)
    else:
        flat_muons = leaf[starts[:, None] + np.arange(3)] if starts.size else np.zeros((0, 3), np.float32)
    counts = np.where(keep_event, raw_counts, 0)
    batch = RaggedBatch(conditions, counts, flat_muons)
    return DecodedRows(file, batch, structural, first_row + np.arange(n_events, dtype=np.int64))


def hdf5_shapes(handle) -> tuple[int, int]:
    """(N events, M muon rows) after checking the three datasets' shapes (reads no data)."""
    for name in ("primaries", "muons", "counts"):
        if name not in handle:
            raise ValueError(f"missing dataset '{name}'")
        if not hasattr(handle[name], "shape"):  # an HDF5 group (or named datatype) where the dataset belongs
            raise ValueError(f"'{name}' is an HDF5 {type(handle[name]).__name__.lower()}, expected a dataset")
    primaries, muons, counts = handle["primaries"], handle["muons"], handle["counts"]
    if primaries.ndim != 2 or primaries.shape[1] != 7:
        raise ValueError(f"dataset 'primaries' has shape {primaries.shape}, expected (N, 7)")
    if muons.ndim != 2 or muons.shape[1] != 6:
        raise ValueError(f"dataset 'muons' has shape {muons.shape}, expected (M, 6)")
    if counts.ndim != 1 or counts.shape[0] != primaries.shape[0]:
        raise ValueError(f"dataset 'counts' has shape {counts.shape}, expected ({primaries.shape[0]},)")
    return int(primaries.shape[0]), int(muons.shape[0])


def hdf5_chunk_muon_starts(handle, chunk_events: int) -> np.ndarray:
    """First muon row of every chunk of ``chunk_events`` events, read chunk by chunk.

    Returns (n_chunks + 1,) int64; negative counts occupy no rows.
    """
    n_events, _ = hdf5_shapes(handle)
    bounds = list(range(0, n_events, chunk_events)) + [n_events]
    starts = np.zeros(len(bounds), dtype=np.int64)
    for i in range(len(bounds) - 1):
        counts = handle["counts"][bounds[i] : bounds[i + 1]].astype(np.int64)
        starts[i + 1] = starts[i] + int(np.maximum(counts, 0).sum())
    return starts


def decode_hdf5_chunk(handle, start: int, stop: int, muon_first_row: int, file: str) -> DecodedRows:
    """Decode events ``start:stop`` of an open legacy HDF5 file whose muon rows begin at
    ``muon_first_row`` (see :func:`hdf5_chunk_muon_starts`); reads only those rows."""
    n_total_events, n_muon_rows = hdf5_shapes(handle)
    primaries = np.asarray(handle["primaries"][start:stop], dtype=np.float32)
    counts = handle["counts"][start:stop].astype(np.int64)
    starts = np.full(counts.shape[0] + 1, muon_first_row, dtype=np.int64)
    np.cumsum(np.maximum(counts, 0), out=starts[1:])
    starts[1:] += muon_first_row
    muon_lo = int(starts[0])
    muon_hi = min(int(starts[-1]), n_muon_rows)
    if muon_hi > muon_lo:
        muons = np.asarray(handle["muons"][muon_lo:muon_hi], dtype=np.float32)
    else:
        muons = np.zeros((0, 6), np.float32)
    n_events = stop - start
    structural = np.zeros(n_events, dtype=np.int8)

    # count_mismatch: negative count, rows beyond the end of 'muons', or rows of another event
    lengths = np.maximum(counts, 0)
    beyond = starts[1:] > n_muon_rows
    mismatch = (counts < 0) | beyond
    within = np.where(beyond, 0, lengths)  # rows of this event that exist in the file
    event_of_row = np.repeat(np.arange(n_events), within)
    # 'beyond' is a suffix of the chunk (starts grow), so the rows that exist are a prefix of 'muons'
    rows = muons[: event_of_row.shape[0]]
    id_differs = (rows[:, 0] != np.repeat(primaries[:, 0], within)) | (rows[:, 1] != np.repeat(primaries[:, 1], within))
    zero_row = (rows[:, H5_MUON_ENERGY:] == 0).all(axis=1)
    # the quirk: count 1 and one all-zero muon row (ids may be anything) = no muons
    quirk = (counts == 1) & ~beyond
    quirk_rows = np.repeat(quirk, within)
    quirk_event_is_zero = np.zeros(n_events, dtype=bool)
    quirk_event_is_zero[event_of_row[quirk_rows & zero_row]] = True
    no_muons = quirk & quirk_event_is_zero
    id_check = id_differs & ~np.repeat(no_muons, within)
    if id_check.any():
        mismatch |= np.bincount(event_of_row[id_check], minlength=n_events) > 0
    if stop == n_total_events and n_events and starts[-1] < n_muon_rows:
        # muon rows left after the last counted one: the counts disagree with the data at the
        # end of the file; the last event is the one they would extend, so it is rejected
        mismatch[-1] = True
    structural[mismatch] = REASON_CODE["count_mismatch"]

    keep_event = ~mismatch & ~no_muons
    keep_row = np.repeat(keep_event, within)
    muon_columns = slice(H5_MUON_ENERGY, H5_MUON_Y + 1)
    flat_muons = rows[:, muon_columns] if keep_row.all() else rows[keep_row, muon_columns]
    conditions = primaries[:, [H5_PRIMARY_ENERGY, H5_PRIMARY_ZENITH, H5_PRIMARY_MASS, H5_PRIMARY_DEPTH]]
    out_counts = np.where(keep_event, within, 0)
    batch = RaggedBatch(conditions, out_counts, flat_muons)
    return DecodedRows(file, batch, structural, np.arange(start, stop, dtype=np.int64))


def read_hdf5(path: str | os.PathLike) -> DecodedRows:
    """Decode a whole legacy HDF5 file (use :mod:`mubundle.data.sources` for chunked reads)."""
    import h5py

    with h5py.File(path, "r") as handle:
        n_events, _ = hdf5_shapes(handle)
        return decode_hdf5_chunk(handle, 0, n_events, 0, str(path))
