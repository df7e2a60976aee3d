"""Primaries of existing event files (any layout, or Parquet files of primaries only), piece by
piece, muons ignored.

``mubundle generate --primaries FILE`` and ``mubundle simulate --primaries FILE`` take one primary
per row of FILE. Only the primary (energy, zenith, mass, depth) is validated: a row whose *muons*
are bad still has a usable primary. Rows whose primary is bad are returned as
:class:`~mubundle.data.validate.RejectedRows` (reported and quarantined by the caller), files that
cannot be read are listed in ``failed_files``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from mubundle.data.batch import RaggedBatch
from mubundle.data.sources import DataFileError, decode_piece, expand_paths, list_pieces
from mubundle.data.validate import DecodedRows, RejectedRows, add_counts, validate


def primaries_only(decoded: DecodedRows) -> DecodedRows:
    """The same rows with their muons (and weights) removed, so validation checks only primaries."""
    batch = decoded.batch
    empty = RaggedBatch(batch.conditions, np.zeros(len(batch), np.int64), np.zeros((0, 3), np.float32))
    return DecodedRows(decoded.file, empty, decoded.structural, decoded.rows)


@dataclass
class PrimaryReadReport:
    """What reading the primaries found: accepted count, rejections by reason, failed files."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    failed_files: list[dict[str, str]] = field(default_factory=list)

    @property
    def n_rejected(self) -> int:
        return int(sum(self.rejected.values()))


@dataclass(frozen=True)
class PrimaryPiece:
    """The primaries of one file piece: ``conditions`` (B, 4) float32 [GeV, rad, A, km] of the accepted
    rows, their ``rows`` (B,) int64 in ``file`` (0-based), and the ``rejected`` rows."""

    file: str
    conditions: np.ndarray
    rows: np.ndarray
    rejected: RejectedRows


def iter_primaries(
    paths: Sequence[str | os.PathLike] | str | os.PathLike, report: PrimaryReadReport
) -> Iterator[PrimaryPiece]:
    """Yield the :class:`PrimaryPiece` of every file piece, in file order.

    ``report`` is updated in place. Memory is bounded by one piece (a Parquet row group or
    an HDF5 chunk).
    """
    for path in expand_paths(paths):
        try:
            for piece in list_pieces(path, primaries=True):
                decoded = primaries_only(decode_piece(piece))
                accepted, rejected = validate(decoded)
                rows = decoded.rows[~np.isin(decoded.rows, rejected.rows)] if len(rejected) else decoded.rows
                report.accepted += len(accepted)
                add_counts(report.rejected, rejected.counts_by_reason())
                yield PrimaryPiece(decoded.file, accepted.conditions, rows.astype(np.int64), rejected)
        except DataFileError as error:
            report.failed_files.append({"path": str(path), "error": error.reason})
