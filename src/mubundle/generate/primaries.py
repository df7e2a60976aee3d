"""Primaries of existing event files (any layout), piece by piece, muons ignored.

``mubundle generate --primaries FILE`` generates one event per primary of FILE. Only the
primary (energy, zenith, mass, depth) is validated: a row whose *muons* are bad still has a
usable primary. Rows whose primary is bad are returned as
:class:`~mubundle.data.validate.RejectedRows` (reported and quarantined by the caller),
files that cannot be read are listed in ``failed_files``.
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


def iter_primaries(
    paths: Sequence[str | os.PathLike] | str | os.PathLike, report: PrimaryReadReport
) -> Iterator[tuple[np.ndarray, RejectedRows]]:
    """Yield ``(conditions (B, 4) float32 [GeV, rad, A, km], rejected rows)`` per file piece, in file order.

    ``report`` is updated in place. Memory is bounded by one piece (a Parquet row group or
    an HDF5 chunk).
    """
    for path in expand_paths(paths):
        try:
            for piece in list_pieces(path):
                accepted, rejected = validate(primaries_only(decode_piece(piece)))
                report.accepted += len(accepted)
                add_counts(report.rejected, rejected.counts_by_reason())
                yield accepted.conditions, rejected
        except DataFileError as error:
            report.failed_files.append({"path": str(path), "error": error.reason})
