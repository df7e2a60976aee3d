"""Streaming reader for training: shuffled, sharded, resumable ragged batches.

How it works (docs/data_format.md, "Reader cursor"):

1. At construction every file is listed into *pieces* (Parquet row groups, HDF5 chunks)
   from metadata only. Files that cannot be listed are recorded in ``report``.
2. Each epoch the pieces are put in a random order (``rng([seed, epoch])``) and grouped
   into consecutive *windows* of at least ``shuffle_buffer_events`` rows. Windows depend only
   on file metadata, so every rank computes the same windows.
3. A window is read and validated, then permuted (``rng([seed, epoch, window])``): this is
   the shuffle buffer; it mixes events of all files in the window. Memory is one window
   (``shuffle_buffer_events`` + one piece) regardless of the dataset size.
4. Sharding: the permuted events of the epoch are dealt round-robin to the ranks by their
   position in the epoch, so each accepted event is seen by exactly one rank per epoch and
   ranks' event counts differ by at most one. (Every rank reads every window; only its
   share is kept.)
5. Batches of ``batch_size`` events are cut from the concatenated windows; a batch never
   spans two epochs (the last one of an epoch may be short unless ``drop_last``).

The cursor (``state_dict``) is ``(epoch, window, offset in window, epoch position)`` plus
the report; restoring it re-reads only the current window and re-derives its permutation,
so a resumed stream yields exactly the batches the original would have yielded next.

Bad rows are counted in ``report["rejected"]`` and, on rank 0, written to
``quarantine_dir/rejected-w<window>.parquet`` during the first epoch only (later epochs
see the same rows). A file that fails to read is recorded in ``report["failed_files"]``,
logged, and skipped from then on; the stream goes on.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mubundle.data.batch import RaggedBatch
from mubundle.data.sites import InputFile, require_one_site
from mubundle.data.sources import DataFileError, Piece, expand_paths, list_pieces, read_piece
from mubundle.data.validate import RejectedRows, add_counts, write_quarantine

logger = logging.getLogger(__name__)

STATE_VERSION = 1


class EventStream:
    """Iterable of :class:`RaggedBatch` over files/globs/directories (see module docstring).

    Parameters: ``batch_size`` events per batch (B); ``epochs`` = number of passes
    (``None``: infinite); after each yielded batch ``epoch`` holds the epoch it came from
    and ``end_of_epoch`` whether it was the epoch's last batch.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike] | str | os.PathLike,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer_events: int = 65_536,
        rank: int = 0,
        world_size: int = 1,
        quarantine_dir: str | os.PathLike | None = None,
        epochs: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.shuffle_buffer_events = max(1, int(shuffle_buffer_events))
        self.rank, self.world_size = int(rank), int(world_size)
        self.quarantine_dir = Path(quarantine_dir) if quarantine_dir is not None else None
        self.epochs = epochs
        self.drop_last = drop_last

        self._rejected: dict[str, int] = {}
        self._failed_files: list[dict[str, str]] = []
        self._quarantine_files: list[str] = []
        self.pieces: list[Piece] = []
        listed: list[InputFile] = []  # files with pieces, their metadata read once for the site
        for path in expand_paths(paths):
            try:
                pieces = list_pieces(path)
            except DataFileError as error:
                self._record_failure(str(path), error.reason)
                continue
            self.pieces.extend(pieces)
            if pieces:
                listed.append(InputFile.read(pieces[0].path, pieces[0].layout))
        # one observation site per training set (data/sites.py); raises naming the sites
        self.site = require_one_site(listed)
        self.fingerprint = self._fingerprint()

        # cursor
        self.epoch = 0
        self.end_of_epoch = False
        self._epoch = 0
        self._window = 0
        self._offset = 0
        self._epoch_position = 0  # accepted events of this epoch (all ranks) before the current window
        self._epoch_yielded = 0
        self._counted_windows = 0  # windows of epoch 0 whose rejections are already in the report
        self._windows_cache: tuple[int, list[list[Piece]]] | None = None
        self._current: RaggedBatch | None = None
        self._current_total = 0

    # ------------------------------------------------------------------ bookkeeping
    @property
    def report(self) -> dict[str, Any]:
        """``{"rejected": {reason: n}, "failed_files": [{"path", "error"}], "quarantine_files": [...]}``."""
        return {
            "rejected": dict(self._rejected),
            "failed_files": [dict(f) for f in self._failed_files],
            "quarantine_files": list(self._quarantine_files),
        }

    @property
    def n_rows(self) -> int:
        """Rows per epoch in all listed files (all ranks, before validation)."""
        return sum(piece.n_rows for piece in self.pieces)

    def _record_failure(self, path: str, reason: str) -> None:
        if any(f["path"] == path for f in self._failed_files):
            return
        logger.warning("skipping unreadable data file %s: %s", path, reason)
        self._failed_files.append({"path": path, "error": reason})

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for piece in self.pieces:
            digest.update(f"{piece.path}|{piece.index}|{piece.n_rows}\n".encode())
        return digest.hexdigest()

    # ------------------------------------------------------------------ windows
    def _windows(self, epoch: int) -> list[list[Piece]]:
        if self._windows_cache is not None and self._windows_cache[0] == epoch:
            return self._windows_cache[1]
        order = np.arange(len(self.pieces))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.pieces))
        windows: list[list[Piece]] = []
        current: list[Piece] = []
        rows = 0
        for i in order:
            current.append(self.pieces[int(i)])
            rows += self.pieces[int(i)].n_rows
            if rows >= self.shuffle_buffer_events:
                windows.append(current)
                current, rows = [], 0
        if current:
            windows.append(current)
        self._windows_cache = (epoch, windows)
        return windows

    def _read_window(self, epoch: int, window: int) -> RaggedBatch:
        """All accepted events of a window, permuted; rejections counted once (epoch 0)."""
        failed = {f["path"] for f in self._failed_files}
        accepted: list[RaggedBatch] = []
        rejected: list[RejectedRows] = []
        for piece in self._windows(epoch)[window]:
            if piece.path in failed:
                continue
            try:
                good, bad = read_piece(piece)
            except DataFileError as error:
                self._record_failure(piece.path, error.reason)
                failed.add(piece.path)
                continue
            accepted.append(good)
            rejected.append(bad)
        if epoch == 0 and window >= self._counted_windows:
            bad_rows = RejectedRows.concat(rejected)
            add_counts(self._rejected, bad_rows.counts_by_reason())
            if len(bad_rows) and self.quarantine_dir is not None and self.rank == 0:
                path = write_quarantine(bad_rows, self.quarantine_dir / f"rejected-w{window:06d}.parquet")
                self._quarantine_files.append(str(path))
            self._counted_windows = window + 1
        events = RaggedBatch.concat(accepted)
        if self.shuffle and len(events) > 1:
            events = events.take(np.random.default_rng([self.seed, epoch, window]).permutation(len(events)))
        return events

    def _load_current(self) -> None:
        events = self._read_window(self._epoch, self._window)
        self._current_total = len(events)
        # deal by position in the epoch: event at epoch position p goes to rank p % world_size
        first = (self.rank - self._epoch_position) % self.world_size
        share = events if self.world_size == 1 else events.take(np.arange(first, len(events), self.world_size))
        self._current = share

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[RaggedBatch]:
        while self.epochs is None or self._epoch < self.epochs:
            windows = self._windows(self._epoch)
            parts: list[RaggedBatch] = []
            n_parts = 0
            while self._window < len(windows):
                if self._current is None:
                    self._load_current()
                current = self._current
                take = min(len(current) - self._offset, self.batch_size - n_parts)
                if take:
                    parts.append(current.slice(self._offset, self._offset + take))
                    n_parts += take
                    self._offset += take
                if self._offset >= len(current):
                    self._epoch_position += self._current_total
                    self._window += 1
                    self._offset = 0
                    self._current = None
                if n_parts == self.batch_size:
                    yield self._emit(parts, end=self._window >= len(windows))
                    parts, n_parts = [], 0
            if n_parts and not self.drop_last:
                yield self._emit(parts, end=True)
            if self._epoch_yielded == 0 and (self._epoch_position == 0 or self.epochs is None):
                # an infinite stream that yields nothing would spin forever: say why instead
                raise ValueError(
                    f"no batch in epoch {self._epoch} for rank {self.rank}/{self.world_size}: "
                    f"{self._epoch_position} valid events in total, batch_size {self.batch_size}, "
                    f"drop_last {self.drop_last}, failed files {len(self._failed_files)}, "
                    f"rejected rows {sum(self._rejected.values())}"
                )
            self._epoch += 1
            self._window = 0
            self._offset = 0
            self._epoch_position = 0
            self._epoch_yielded = 0

    def _emit(self, parts: list[RaggedBatch], end: bool) -> RaggedBatch:
        batch = RaggedBatch.concat(parts)
        self.epoch = self._epoch
        self.end_of_epoch = end
        self._epoch_yielded += len(batch)
        return batch

    # ------------------------------------------------------------------ cursor
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable cursor: the next batch after restoring is the next batch now."""
        return {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "shuffle_buffer_events": self.shuffle_buffer_events,
            "batch_size": self.batch_size,
            "rank": self.rank,
            "world_size": self.world_size,
            "epoch": self._epoch,
            "window": self._window,
            "offset": self._offset,
            "epoch_position": self._epoch_position,
            "epoch_yielded": self._epoch_yielded,
            "counted_windows": self._counted_windows,
            "last_epoch": self.epoch,
            "end_of_epoch": self.end_of_epoch,
            "report": self.report,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a cursor saved by :meth:`state_dict` with the same data and settings."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported EventStream state version {state.get('version')!r}")
        if state["fingerprint"] != self.fingerprint:
            raise ValueError("the data files (or their row groups) changed since this EventStream state was saved")
        for key in ("seed", "shuffle", "shuffle_buffer_events", "rank", "world_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"EventStream state has {key}={state[key]!r} but this stream has {getattr(self, key)!r}")
        self._epoch = int(state["epoch"])
        self._window = int(state["window"])
        self._offset = int(state["offset"])
        self._epoch_position = int(state["epoch_position"])
        self._epoch_yielded = int(state["epoch_yielded"])
        self._counted_windows = int(state["counted_windows"])
        self.epoch = int(state["last_epoch"])
        self.end_of_epoch = bool(state["end_of_epoch"])
        report = state["report"]
        self._rejected = dict(report["rejected"])
        self._failed_files = [dict(f) for f in report["failed_files"]]
        self._quarantine_files = list(report["quarantine_files"])
        self._current = None
        self._windows_cache = None
