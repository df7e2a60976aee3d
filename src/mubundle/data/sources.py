"""Input discovery and decoding of any supported layout, piece by piece.

A *piece* is the unit read at once: one Parquet row group, or a chunk of
``HDF5_CHUNK_EVENTS`` events of a legacy HDF5 file. Memory is bounded by one piece.

Layouts (:func:`detect_layout`): ``native`` (mubundle Parquet shards), ``legacy-parquet``
and ``legacy-hdf5`` (PHYSICS.md), ``corsika`` (CORSIKA 7 particle files, one piece per file,
one depth-0 event per shower: :mod:`mubundle.data.corsika`). Every problem with a file (missing, truncated, corrupt,
unknown layout) raises :class:`DataFileError` whose message names the file; callers record
it and go on.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mubundle.data import conventions, corsika, legacy, native, remote, schema
from mubundle.data.batch import RaggedBatch
from mubundle.data.dataset import DatasetIncomplete, dataset_files, enclosing_incomplete_dataset
from mubundle.data.validate import DecodedRows, RejectedRows, add_counts, validate

#: Suffixes picked up when a directory is expanded.
DATA_SUFFIXES = (".parquet", ".pq", ".h5", ".hdf5", ".hdf")
#: Names of CORSIKA particle files picked up when a directory is expanded (DATnnnnnn[.zst|.gz]).
CORSIKA_NAME = re.compile(r"^DAT\d+(\.(zst|gz))?$")
#: Events per piece of a legacy HDF5 file.
HDF5_CHUNK_EVENTS = 65_536

_PARQUET_MAGIC = b"PAR1"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# Errors the readers raise on bad files; anything else is a bug and must surface.
_FILE_ERRORS = (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, pa.ArrowException)


class DataFileError(Exception):
    """A data file cannot be read; ``str(error)`` starts with the file path."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@contextlib.contextmanager
def file_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn any reader error inside the block into a :class:`DataFileError` naming ``path``."""
    try:
        yield
    except DataFileError:
        raise
    except _FILE_ERRORS + remote.network_errors() as error:
        message = remote.scrub(str(error).replace(str(path) + ": ", "")) or type(error).__name__
        raise DataFileError(path, f"{type(error).__name__}: {message}") from None


# --------------------------------------------------------------------------- discovery
def _safe_stat(path: Path) -> os.stat_result | None:
    """``os.stat`` or None when the path cannot be examined (missing, name too long, loop, ...)."""
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _walk_data_files(root: Path) -> list[Path]:
    """Data files under directory ``root``, recursively, following directory symlinks once.

    A directory reached twice (a ``self -> .`` link, two links to one folder) is walked only
    the first time; entries whose name starts with ``_`` or ``.`` are skipped. Non-regular
    entries with a data suffix (FIFOs, sockets, devices) are kept so that reading them
    reports them by name instead of hanging or vanishing.
    """
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        info = _safe_stat(Path(folder))
        if info is None or (info.st_dev, info.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((info.st_dev, info.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        for name in files:
            if not name.startswith(("_", ".")) and (Path(name).suffix.lower() in DATA_SUFFIXES or CORSIKA_NAME.match(name)):
                found.append(Path(folder) / name)
    return sorted(found)


def _file_key(path: Path) -> tuple[int, int] | str:
    """Identity of the file ``path`` resolves to (device, inode); the path text if it has none."""
    info = _safe_stat(path)
    return (info.st_dev, info.st_ino) if info is not None else os.fspath(path)


def expand_paths(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """Files, globs and directories -> a sorted list with every file once.

    Directories are searched recursively (range folders and directory symlinks included,
    each directory once) for ``DATA_SUFFIXES``; entries whose name starts with ``_`` or ``.``
    are skipped. A directory is a dataset: an incomplete one (being written, or interrupted)
    raises :class:`~mubundle.data.dataset.DatasetIncomplete`; one with a manifest gives
    exactly its listed shards; one without is read whole with a warning
    (:func:`mubundle.data.dataset.dataset_files`). A file inside an incomplete dataset is
    refused the same way. Each argument's matches are sorted; arguments keep their order.
    Files are de-duplicated by the file they resolve to (absolute or relative path,
    symlink, hard link: the first spelling is kept). A path or glob that matches nothing is
    returned as given so that reading it reports a clear "not found" error instead of vanishing.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for entry in paths:
        text = os.fspath(entry)
        if remote.is_url(text):  # s3://, https://, root://, osdf://, ...: see data/remote.py
            found.extend(remote.expand_url(text, DATA_SUFFIXES))
            continue
        path = Path(text)
        info = _safe_stat(path)
        if info is None and any(len(os.fsencode(part)) > 255 for part in path.parts):
            # a mistyped argument, not a bad file: one line from the CLI (mubundle.errors)
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), text)
        if info is not None and stat.S_ISDIR(info.st_mode):
            # an empty directory is returned as given: reading it reports it instead of nothing
            matches = dataset_files(path, _walk_data_files(path)) or [path]
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if not os.path.isdir(p))
            matches = matches or [path]
        else:
            matches = [path]
        for match in matches:
            message = enclosing_incomplete_dataset(match)
            if message is not None:
                raise DatasetIncomplete(message)
        found.extend(matches)
    seen: set[tuple[int, int] | str] = set()
    unique = []
    for path in found:
        key = _file_key(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _file_kind(mode: int) -> str:
    """'directory', 'FIFO', 'socket', 'character device', 'block device' or 'special file'."""
    kinds = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


#: Parquet files of primaries only: the native condition columns without ``muons`` (read by
#: ``generate --primaries`` and ``simulate --primaries``, refused as events).
PRIMARIES_LAYOUT = "primaries"


def detect_layout(path: str | os.PathLike, primaries: bool = False) -> str:
    """``native``, ``legacy-parquet``, ``legacy-hdf5`` or ``corsika`` (raises DataFileError otherwise);
    with ``primaries`` (a reader of primaries only) also :data:`PRIMARIES_LAYOUT`, which a reader of
    events refuses with a message saying what the file is."""
    path = remote.as_path(path)
    with file_errors(path):
        missing = remote.why_missing(path)
        if missing is not None:
            raise DataFileError(path, missing)
        if not remote.is_url(path):
            mode = os.stat(path).st_mode
            if stat.S_ISDIR(mode):
                raise DataFileError(path, f"directory without data files ({', '.join('*' + x for x in DATA_SUFFIXES)}, DATnnnnnn)")
            if not stat.S_ISREG(mode):  # opening a FIFO would block forever, a device read forever
                raise DataFileError(path, f"not a regular file ({_file_kind(mode)}); only regular files are read")
        with remote.open_binary(path) as handle:
            head = handle.read(8)
        if head[:4] == _PARQUET_MAGIC:
            with remote.opened(path) as source:
                names = set(pq.read_schema(source).names)
            if {*schema.CONDITION_FIELDS, schema.MUONS_COLUMN} <= names:
                return "native"
            if {legacy.PRIMARY_COLUMN, legacy.MUONS_COLUMN} <= names:
                return "legacy-parquet"
            if set(schema.CONDITION_FIELDS) <= names:
                if primaries:
                    return PRIMARIES_LAYOUT
                raise DataFileError(path, f"Parquet file of primaries only ({', '.join(schema.CONDITION_FIELDS)}; no "
                                          f"'{schema.MUONS_COLUMN}' column): events need their muons; primaries are read "
                                          "by generate --primaries and simulate --primaries")
            missing = [name for name in (*schema.CONDITION_FIELDS, schema.MUONS_COLUMN) if name not in names]
            raise DataFileError(path, f"Parquet file with unknown columns {sorted(names)}: neither the native layout "
                                      f"(missing {', '.join(missing)}) nor the original pipeline's")
        if head == _HDF5_MAGIC:
            return "legacy-hdf5"
        if corsika.looks_like_corsika(path):
            return corsika.LAYOUT
        raise DataFileError(path, "neither Parquet, HDF5 nor a CORSIKA particle file (unknown file signature)")


# --------------------------------------------------------------------------- pieces
@dataclass(frozen=True)
class Piece:
    """One unit of reading: ``index``-th row group (Parquet) or event chunk (HDF5) of ``path``."""

    path: str
    layout: str
    index: int
    first_row: int
    n_rows: int
    muon_first_row: int = 0  # legacy HDF5 only: first row of this chunk in the 'muons' dataset
    units: str = conventions.MUBUNDLE  # unit convention of mass/depth (conventions.ORIGINAL, ..., "corsika")
    primary_width: int = 4  # legacy Parquet only: 4 (dump_muonitron_data.py) or 7 (convert_to_parquet.py)
    thinning: bool = False  # CORSIKA only: thinned block format


def list_pieces(path: str | os.PathLike, primaries: bool = False) -> list[Piece]:
    """Pieces of one file from its metadata only (no event data is read); ``primaries``: a file of
    primaries only is accepted too (:func:`detect_layout`)."""
    path = remote.as_path(path)
    layout = detect_layout(path, primaries)
    with file_errors(path), remote.opened(path) as source:
        if layout == "legacy-hdf5":
            import h5py

            with h5py.File(source, "r") as handle:
                n_events, _ = legacy.hdf5_shapes(handle)
                muon_starts = legacy.hdf5_chunk_muon_starts(handle, HDF5_CHUNK_EVENTS)
                units = legacy.scan_hdf5(handle, HDF5_CHUNK_EVENTS)
            bounds = range(0, n_events, HDF5_CHUNK_EVENTS)
            return [
                Piece(str(path), layout, i, lo, min(HDF5_CHUNK_EVENTS, n_events - lo), int(muon_starts[i]), units)
                for i, lo in enumerate(bounds)
            ]
        if layout == corsika.LAYOUT:
            found = corsika.scan(path)
            return [Piece(str(path), layout, 0, 0, found.showers, units=corsika.LAYOUT, thinning=found.thinning)]
        parquet = pq.ParquetFile(source)
        metadata = parquet.metadata
        width, units = legacy.scan_parquet(parquet) if layout == "legacy-parquet" else (4, conventions.MUBUNDLE)
        pieces, first = [], 0
        for i in range(metadata.num_row_groups):
            n_rows = metadata.row_group(i).num_rows
            pieces.append(Piece(str(path), layout, i, first, n_rows, units=units, primary_width=width))
            first += n_rows
        return pieces


def decode_piece(piece: Piece) -> DecodedRows:
    """Read and decode one piece (values not yet validated)."""
    with file_errors(piece.path), remote.opened(piece.path) as source:
        if piece.layout == "legacy-hdf5":
            import h5py

            with h5py.File(source, "r") as handle:
                stop = piece.first_row + piece.n_rows
                return legacy.decode_hdf5_chunk(
                    handle, piece.first_row, stop, piece.muon_first_row, piece.path, piece.units
                )
        if piece.layout == corsika.LAYOUT:
            return corsika.read_file(piece.path, piece.thinning)
        parquet = pq.ParquetFile(source, page_checksum_verification=True)
        table = parquet.read_row_group(piece.index, use_threads=False)
        if piece.layout == "legacy-parquet":
            return legacy.decode_parquet_table(table, piece.path, piece.first_row, piece.units, piece.primary_width)
        decode = native.decode_primaries_table if piece.layout == PRIMARIES_LAYOUT else native.decode_table
        batch, null_rows = decode(table)
        structural = np.where(null_rows, np.int8(1), np.int8(0)).astype(np.int8)  # code 1 = null_value
        rows = piece.first_row + np.arange(len(batch), dtype=np.int64)
        return DecodedRows(piece.path, batch, structural, rows)


def read_piece(piece: Piece) -> tuple[RaggedBatch, RejectedRows]:
    """Decode and validate one piece: (accepted events, rejected rows)."""
    return validate(decode_piece(piece))


# --------------------------------------------------------------------------- whole datasets
@dataclass
class LoadResult:
    """Events loaded from many files; ``rejected`` counts rows by reason, ``failed_files``
    lists ``{"path", "error"}`` of files that could not be read (their events are absent)."""

    batch: RaggedBatch
    rejected: dict[str, int] = field(default_factory=dict)
    failed_files: list[dict[str, str]] = field(default_factory=list)
    rejected_rows: RejectedRows = field(default_factory=RejectedRows.empty)
    layouts: dict[str, str] = field(default_factory=dict)


def iter_file_pieces(
    paths: Sequence[str | os.PathLike] | str | os.PathLike, failed_files: list[dict[str, str]]
) -> Iterator[tuple[Piece, RaggedBatch, RejectedRows]]:
    """Every readable piece of every file in order with its (accepted, rejected) rows.

    A file that fails (at listing or at any piece) is appended to ``failed_files`` and the
    rest of it is skipped; pieces of it already yielded stay yielded.
    """
    for path in expand_paths(paths):
        try:
            pieces = list_pieces(path)
            for piece in pieces:
                accepted, rejected = read_piece(piece)
                yield piece, accepted, rejected
        except DataFileError as error:
            failed_files.append({"path": str(path), "error": error.reason})


def read_events(paths: Sequence[str | os.PathLike] | str | os.PathLike, max_events: int | None = None) -> LoadResult:
    """Load and validate all events of ``paths`` (any layout) into one batch.

    ``max_events`` stops reading once that many accepted events were collected (the batch
    is cut to exactly ``max_events``). Bad rows and files are counted, never raised.
    """
    failed: list[dict[str, str]] = []
    accepted_parts: list[RaggedBatch] = []
    rejected_parts: list[RejectedRows] = []
    rejected_counts: dict[str, int] = {}
    layouts: dict[str, str] = {}
    n_accepted = 0
    for piece, accepted, rejected in iter_file_pieces(paths, failed):
        layouts[piece.path] = piece.layout
        accepted_parts.append(accepted)
        rejected_parts.append(rejected)
        add_counts(rejected_counts, rejected.counts_by_reason())
        n_accepted += len(accepted)
        if max_events is not None and n_accepted >= max_events:
            break
    batch = RaggedBatch.concat(accepted_parts)
    if max_events is not None and len(batch) > max_events:
        batch = batch.slice(0, max_events)
    return LoadResult(batch, rejected_counts, failed, RejectedRows.concat(rejected_parts), layouts)


def corsika_scan(path: str | os.PathLike) -> corsika.CorsikaScan:
    """Headers and record counts of a CORSIKA particle file (:func:`mubundle.data.corsika.scan`);
    raises :class:`DataFileError` naming the file."""
    with file_errors(path):
        return corsika.scan(path)
