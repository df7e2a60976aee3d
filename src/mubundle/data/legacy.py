"""Import of the layouts of the original pipeline (see ../shared/docs/PHYSICS.md), written by
briedel/cr_muons ``utils/data_converters/dump_muonitron_data.py`` and ``convert_to_parquet.py``.

1. Parquet (``convert_muonitron_parquet``): ``primary`` = list<float32>
   ``[E GeV, zenith rad, mass, depth]`` and ``muons`` = list<list<float32>>, inner lists
   ``[E GeV, x m, y m]``; uint64 ``primary_major_id`` / ``primary_minor_id``.
2. HDF5 (``convert_muonitron_hdf5``): ``primaries`` (N, 7) float32
   ``[major_id, minor_id, energy, zenith, mass, time, depth]``, ``muons`` (M, 6) float32
   ``[major_id, minor_id, energy, x, y, time]``, ``counts`` (N,) int32.
   Quirk: an event without muons was written as ONE muon row ``[major, minor, 0, 0, 0, 0]``
   with count 1; such an event is decoded as N = 0.
3. Parquet from ``convert_to_parquet.py`` (made from 2.): ``primary`` = the 7 values of 2.,
   ``muons`` = rows of the 6 values of 2. (placeholder rows included), no id columns.

``mass`` and ``depth`` are read in the file's unit convention (:mod:`mubundle.data.conventions`:
rest mass GeV and vertical depth m for the original writers) and converted to A and slant km,
through the overburden of the site the file's ``mubundle`` metadata records (none: IceCube);
event ids ``(major, minor)`` are kept in ``RaggedBatch.ids``.

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

from mubundle.data import conventions
from mubundle.data.batch import RaggedBatch
from mubundle.data.sites import metadata_site
from mubundle.data.validate import REASON_CODE, DecodedRows

PRIMARY_COLUMN = "primary"
MUONS_COLUMN = "muons"
#: Id columns of the dump_muonitron_data.py Parquet layout (uint64).
ID_COLUMNS = ("primary_major_id", "primary_minor_id")
#: Key of the JSON metadata mubundle writes into legacy files (Parquet key-value / HDF5 attribute).
METADATA_KEY = "mubundle"

# HDF5 column layout (PHYSICS.md); the 7/6-value Parquet rows of convert_to_parquet.py are the same
H5_PRIMARY_ENERGY, H5_PRIMARY_ZENITH, H5_PRIMARY_MASS, H5_PRIMARY_DEPTH = 2, 3, 4, 6
H5_MUON_ENERGY, H5_MUON_X, H5_MUON_Y, H5_MUON_TIME = 2, 3, 4, 5
_CONDITION_COLUMNS = {
    4: (0, 1, 2, 3),  # dump_muonitron_data.py Parquet: [E, zenith, mass, depth]
    7: (H5_PRIMARY_ENERGY, H5_PRIMARY_ZENITH, H5_PRIMARY_MASS, H5_PRIMARY_DEPTH),
}
_MUON_WIDTH = {4: 3, 7: 6}


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


def _file_metadata(raw: bytes | str | None) -> dict:
    """The JSON ``mubundle`` metadata of a legacy file ({} when absent or unreadable), its site's
    ``depth_unit`` in km as the events are read (:func:`mubundle.data.conventions.imported_metadata`)."""
    import json

    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return conventions.imported_metadata(value) if isinstance(value, dict) else {}


def parquet_metadata(schema_metadata: dict | None) -> dict:
    """The ``mubundle`` metadata dict of a Parquet schema's key-value metadata ({} if none)."""
    return _file_metadata((schema_metadata or {}).get(METADATA_KEY.encode()))


def _require_known_site(metadata: dict, convention: str) -> None:
    """Raise ``ValueError`` (one line) when a file in the original convention records a site whose
    overburden, which converts its vertical depths, is unknown (a file without a site is IceCube's)."""
    if convention == conventions.ORIGINAL:
        conventions.overburden_radius_m(metadata_site(metadata))


def scan_parquet(parquet_file) -> tuple[int, str]:
    """``(primary width 4 or 7, unit convention)`` of a legacy Parquet file.

    Reads only the ``primary`` column, row group by row group. The width is the list length
    most rows have (4: dump_muonitron_data.py, 7: convert_to_parquet.py); the convention
    comes from the file's metadata, else from all mass and depth values
    (:func:`mubundle.data.conventions.detect_convention`, which raises ``ValueError``). A file in
    the original convention recording a site of unknown overburden raises ``ValueError`` too.
    """
    lengths = np.zeros(8, dtype=np.int64)
    values: dict[int, list[np.ndarray]] = {4: [], 7: []}
    for index in range(parquet_file.metadata.num_row_groups):
        column = parquet_file.read_row_group(index, columns=[PRIMARY_COLUMN], use_threads=False).column(0)
        offsets, leaves, nulls = _list_parts(column)
        leaf, leaf_nulls = _leaf_values(leaves)
        leaf = np.where(leaf_nulls, np.nan, leaf)
        row_lengths = np.where(nulls, 0, np.diff(offsets))
        lengths += np.bincount(np.minimum(row_lengths, 7), minlength=8)
        for width, columns in _CONDITION_COLUMNS.items():
            mass_depth = np.full((row_lengths.shape[0], 2), np.nan)
            rows = row_lengths == width
            gather = offsets[:-1][rows, None] + np.array([columns[2], columns[3]])
            mass_depth[rows] = leaf[gather]
            values[width].append(mass_depth)
    width = 7 if lengths[7] > lengths[4] else 4
    metadata = parquet_metadata(parquet_file.schema_arrow.metadata)
    declared = conventions.convention_from_metadata(metadata)
    if declared is not None:
        _require_known_site(metadata, declared)
        return width, declared
    mass_depth = np.concatenate(values[width]) if values[width] else np.zeros((0, 2))
    mass_index, depth_index = _CONDITION_COLUMNS[width][2], _CONDITION_COLUMNS[width][3]
    convention = conventions.detect_convention(
        mass_depth[:, 0], mass_depth[:, 1], f"primary[{mass_index}]", f"primary[{depth_index}]"
    )
    _require_known_site(metadata, convention)
    return width, convention


def _ids_from_columns(table: pa.Table, n_events: int) -> np.ndarray | None:
    """(B, 2) uint64 ids from the ``primary_major_id`` / ``primary_minor_id`` columns, or None."""
    if not all(name in table.column_names for name in ID_COLUMNS):
        return None
    ids = np.zeros((n_events, 2), dtype=np.uint64)
    for i, name in enumerate(ID_COLUMNS):
        column = table.column(name)
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            ids[:, i] = column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.uint64)
    return ids


def _float_ids(values: np.ndarray) -> np.ndarray:
    """Ids stored as float32 (HDF5, 7-value rows) -> uint64 (non-finite or negative -> 0)."""
    values = np.asarray(values, dtype=np.float64)
    clean = np.where(np.isfinite(values) & (values >= 0) & (values < 2.0**64), values, 0.0)
    return clean.astype(np.uint64)


#: flux weights [Hz] that ``mubundle generate --flux`` adds to the original layouts (not part of them)
WEIGHT_COLUMN = "weight"
WEIGHTS_DATASET = "weights"


def decode_parquet_table(
    table: pa.Table, file: str, first_row: int = 0, convention: str = conventions.ORIGINAL, primary_width: int = 4
) -> DecodedRows:
    """Legacy Parquet table -> DecodedRows (rows numbered from ``first_row``).

    ``primary_width`` 4 (dump_muonitron_data.py: muons of 3 values) or 7 (convert_to_parquet.py:
    muons of 6 values incl. ids, HDF5 placeholder rows); ``convention`` of mass and depth
    (see :func:`scan_parquet`). Values are converted to mubundle's units, depths through the
    overburden of the site recorded in the table's ``mubundle`` schema metadata (none: IceCube);
    the stored ones are kept in ``raw_conditions`` for the quarantine.
    """
    for name in (PRIMARY_COLUMN, MUONS_COLUMN):
        if name not in table.column_names:
            raise ValueError(f"missing column '{name}'")
    if primary_width not in _CONDITION_COLUMNS:
        raise ValueError(f"primary lists of {primary_width} values are no legacy layout (4 or 7)")
    muon_width = _MUON_WIDTH[primary_width]
    n_events = table.num_rows
    structural = np.zeros(n_events, dtype=np.int8)

    def flag(reason: str, mask: np.ndarray) -> None:
        structural[(structural == 0) & mask] = REASON_CODE[reason]

    # primary: list<float> of length primary_width
    p_offsets, p_values, p_nulls = _list_parts(table.column(PRIMARY_COLUMN))
    p_leaf, p_leaf_nulls = _leaf_values(p_values)
    p_lengths = np.diff(p_offsets)
    flag("null_value", p_nulls)
    flag("bad_list_length", p_lengths != primary_width)
    good_primary = (p_lengths == primary_width) & ~p_nulls
    primary = np.full((n_events, primary_width), np.nan, dtype=np.float32)
    gather = p_offsets[:-1][good_primary, None] + np.arange(primary_width)
    primary[good_primary] = p_leaf[gather]
    if p_leaf_nulls.any():
        primary_has_null = np.zeros(n_events, dtype=bool)
        primary_has_null[good_primary] = p_leaf_nulls[gather].any(axis=1)
        flag("null_value", primary_has_null)
    raw_conditions = primary[:, list(_CONDITION_COLUMNS[primary_width])]
    if primary_width == 7:
        ids = np.stack([_float_ids(primary[:, 0]), _float_ids(primary[:, 1])], axis=1)
    else:
        ids = _ids_from_columns(table, n_events)

    # muons: list<list<float>>, inner length muon_width
    m_offsets, inner, m_nulls = _list_parts(table.column(MUONS_COLUMN))
    i_offsets, leaves, i_nulls = _list_parts(inner)
    leaf, leaf_nulls = _leaf_values(leaves)
    flag("null_value", m_nulls)
    muon_start, muon_stop = m_offsets[0], m_offsets[-1]
    inner_lengths = np.diff(i_offsets)[muon_start:muon_stop]
    inner_bad = (inner_lengths != muon_width) | i_nulls[muon_start:muon_stop]
    raw_counts = np.diff(m_offsets)
    event_of_muon = np.repeat(np.arange(n_events), raw_counts)
    if inner_bad.any():
        flag("bad_list_length", np.bincount(event_of_muon[inner_bad], minlength=n_events) > 0)
    starts = i_offsets[muon_start:muon_stop]
    if leaf_nulls.any():
        null_in_muon = np.zeros(inner_lengths.shape[0], dtype=bool)
        ok = ~inner_bad
        null_in_muon[ok] = leaf_nulls[starts[ok, None] + np.arange(muon_width)].any(axis=1)
        flag("null_value", np.bincount(event_of_muon[null_in_muon], minlength=n_events) > 0)

    rows = np.zeros((inner_lengths.shape[0], muon_width), dtype=np.float32)
    readable = ~inner_bad
    if readable.all() and inner_lengths.shape[0]:
        # the common case: every inner list holds its values back to back -> a plain reshape (no gather)
        first = i_offsets[muon_start]
        rows = leaf[first : first + muon_width * (muon_stop - muon_start)].reshape(-1, muon_width)
    elif readable.any():
        rows[readable] = leaf[starts[readable, None] + np.arange(muon_width)]
    no_muons = np.zeros(n_events, dtype=bool)
    if muon_width == 6:
        # convert_to_parquet.py copies the HDF5 rows: one [major, minor, 0, 0, 0, 0] row = no muons,
        # and the other rows must carry their event's ids (as in the HDF5 layout)
        zero_row = (rows[:, H5_MUON_ENERGY:] == 0).all(axis=1) & readable
        single = raw_counts == 1
        no_muons = single & (np.bincount(event_of_muon[zero_row], minlength=n_events) > 0)
        id_differs = readable & (
            (rows[:, 0] != np.repeat(primary[:, 0], raw_counts)) | (rows[:, 1] != np.repeat(primary[:, 1], raw_counts))
        )
        id_differs &= ~np.repeat(no_muons | ~good_primary, raw_counts)
        if id_differs.any():
            flag("count_mismatch", np.bincount(event_of_muon[id_differs], minlength=n_events) > 0)
        rows = rows[:, H5_MUON_ENERGY : H5_MUON_Y + 1]

    keep_event = (structural == 0) & ~no_muons
    keep_muon = np.repeat(keep_event, raw_counts)
    flat_muons = rows if keep_muon.all() else rows[keep_muon]
    counts = np.where(keep_event, raw_counts, 0)
    site = metadata_site(parquet_metadata(table.schema.metadata)) if convention == conventions.ORIGINAL else None
    conditions, unit_codes = conventions.to_mubundle_units(raw_conditions, convention, site)
    flag_codes = (structural == 0) & (unit_codes != 0)
    structural[flag_codes] = unit_codes[flag_codes]
    weights = None
    if WEIGHT_COLUMN in table.column_names:  # mubundle generate --flux in this layout: flux weights [Hz]
        weights = table.column(WEIGHT_COLUMN).to_numpy(zero_copy_only=False).astype(np.float64)
    batch = RaggedBatch(conditions, counts, np.ascontiguousarray(flat_muons), weights=weights, ids=ids)
    raw = None if convention == conventions.MUBUNDLE else raw_conditions
    return DecodedRows(file, batch, structural, first_row + np.arange(n_events, dtype=np.int64), raw)


def hdf5_shapes(handle) -> tuple[int, int]:
    """(N events, M muon rows) after checking the three datasets' shapes (reads no data)."""
    missing = [name for name in ("primaries", "muons", "counts") if name not in handle]
    if missing:
        found = ", ".join(sorted(handle.keys())[:8]) or "nothing"
        raise ValueError(f"HDF5 file without the dataset(s) {', '.join(repr(m) for m in missing)} of the original "
                         f"pipeline's layout (primaries, muons, counts; docs/data_format.md): it holds {found}")
    for name in ("primaries", "muons", "counts"):
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


def hdf5_counts(handle, start: int, stop: int) -> np.ndarray:
    """Muon rows declared for events ``start:stop`` as int64, safe to sum.

    ``counts`` must hold whole numbers (the original writes int32; a float dataset is accepted
    when every value is whole): a fractional or non-finite count leaves the muon rows of every
    later event unlocatable, so it raises ``ValueError`` naming the event instead of being
    truncated. Counts larger than the ``muons`` dataset are clipped to its length + 1 (they
    are a ``count_mismatch`` either way) so that sums of counts cannot overflow int64.
    """
    counts = handle["counts"]
    values = counts[start:stop]
    n_muon_rows = int(handle["muons"].shape[0])
    if np.issubdtype(values.dtype, np.floating):
        whole = np.isfinite(values) & (values == np.round(values))
        if not whole.all():
            first = int(np.flatnonzero(~whole)[0])
            raise ValueError(
                f"dataset 'counts' holds {float(values[first])!r} for event {start + first}, not a whole number of "
                "muon rows: the muon rows of that event and all later ones cannot be located"
            )
        values = np.clip(values, -1.0, n_muon_rows + 1.0)
    elif not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"dataset 'counts' has dtype {values.dtype}, expected integers")
    if values.dtype == np.uint64:  # beyond int64: clip before the cast wraps it negative
        values = np.minimum(values, np.uint64(n_muon_rows + 1))
    return np.clip(values.astype(np.int64), -1, n_muon_rows + 1)


def hdf5_metadata(handle) -> dict:
    """The ``mubundle`` metadata attribute of a legacy HDF5 file ({} if none)."""
    raw = handle.attrs.get(METADATA_KEY)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return _file_metadata(raw if isinstance(raw, str) else None)


def scan_hdf5(handle, chunk_events: int) -> str:
    """Unit convention of a legacy HDF5 file: its metadata, else all mass and depth values
    (read ``chunk_events`` rows at a time); raises ``ValueError`` when none fits, or when a file in
    the original convention records a site of unknown overburden."""
    metadata = hdf5_metadata(handle)
    declared = conventions.convention_from_metadata(metadata)
    if declared is not None:
        _require_known_site(metadata, declared)
        return declared
    n_events, _ = hdf5_shapes(handle)
    parts = []
    for lo in range(0, n_events, chunk_events):
        rows = np.asarray(handle["primaries"][lo : lo + chunk_events], dtype=np.float64)
        parts.append(rows[:, [H5_PRIMARY_MASS, H5_PRIMARY_DEPTH]])
    values = np.concatenate(parts) if parts else np.zeros((0, 2))
    convention = conventions.detect_convention(
        values[:, 0], values[:, 1], f"primaries[:, {H5_PRIMARY_MASS}]", f"primaries[:, {H5_PRIMARY_DEPTH}]"
    )
    _require_known_site(metadata, convention)
    return convention


def hdf5_chunk_muon_starts(handle, chunk_events: int) -> np.ndarray:
    """First muon row of every chunk of ``chunk_events`` events, read chunk by chunk.

    Returns (n_chunks + 1,) int64; negative counts occupy no rows. Raises ``ValueError`` for
    counts that are not whole numbers (:func:`hdf5_counts`).
    """
    n_events, _ = hdf5_shapes(handle)
    bounds = list(range(0, n_events, chunk_events)) + [n_events]
    starts = np.zeros(len(bounds), dtype=np.int64)
    for i in range(len(bounds) - 1):
        counts = hdf5_counts(handle, bounds[i], bounds[i + 1])
        starts[i + 1] = starts[i] + int(np.maximum(counts, 0).sum())
    return starts


def decode_hdf5_chunk(
    handle, start: int, stop: int, muon_first_row: int, file: str, convention: str = conventions.ORIGINAL
) -> DecodedRows:
    """Decode events ``start:stop`` of an open legacy HDF5 file whose muon rows begin at
    ``muon_first_row`` (see :func:`hdf5_chunk_muon_starts`); reads only those rows.
    Mass and depth are read in ``convention`` (:func:`scan_hdf5`) and converted, depths through the
    overburden of the site the file's metadata records (none: IceCube)."""
    n_total_events, n_muon_rows = hdf5_shapes(handle)
    primaries = np.asarray(handle["primaries"][start:stop], dtype=np.float32)
    counts = hdf5_counts(handle, start, stop)
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
    raw_conditions = primaries[:, [H5_PRIMARY_ENERGY, H5_PRIMARY_ZENITH, H5_PRIMARY_MASS, H5_PRIMARY_DEPTH]]
    site = metadata_site(hdf5_metadata(handle)) if convention == conventions.ORIGINAL else None
    conditions, unit_codes = conventions.to_mubundle_units(raw_conditions, convention, site)
    unit_rows = (structural == 0) & (unit_codes != 0)
    structural[unit_rows] = unit_codes[unit_rows]
    ids = np.stack([_float_ids(primaries[:, 0]), _float_ids(primaries[:, 1])], axis=1)
    out_counts = np.where(keep_event, within, 0)
    weights = None
    if WEIGHTS_DATASET in handle:  # mubundle generate --flux in this layout: flux weights [Hz], one per event
        if handle[WEIGHTS_DATASET].shape != (n_total_events,):
            raise ValueError(f"dataset '{WEIGHTS_DATASET}' has shape {handle[WEIGHTS_DATASET].shape}, expected "
                             f"({n_total_events},): one weight per event")
        weights = np.asarray(handle[WEIGHTS_DATASET][start:stop], dtype=np.float64)
    batch = RaggedBatch(conditions, out_counts, flat_muons, weights=weights, ids=ids)
    raw = None if convention == conventions.MUBUNDLE else raw_conditions
    return DecodedRows(file, batch, structural, np.arange(start, stop, dtype=np.int64), raw)


def read_hdf5(path: str | os.PathLike) -> DecodedRows:
    """Decode a whole legacy HDF5 file (use :mod:`mubundle.data.sources` for chunked reads)."""
    import h5py

    with h5py.File(path, "r") as handle:
        n_events, _ = hdf5_shapes(handle)
        convention = scan_hdf5(handle, max(n_events, 1))
        return decode_hdf5_chunk(handle, 0, n_events, 0, str(path), convention)
