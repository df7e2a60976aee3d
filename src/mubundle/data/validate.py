"""Row validation: every decoded row is accepted or rejected with a stable reason string.

Decoders (:mod:`mubundle.data.native`, :mod:`mubundle.data.legacy`) produce
:class:`DecodedRows`: the values as found in the file plus a *structural* reason for rows
that could not even be decoded (null value, wrong list length, muon count that disagrees
with the muon data). :func:`validate` adds the value checks and splits the rows into an
accepted :class:`~mubundle.data.batch.RaggedBatch` and :class:`RejectedRows`.

Reasons (stable strings, checked in this order, the first that applies is reported):

===========================  ===============================================================
``null_value``               a required value is null/missing
``bad_list_length``          ``primary`` list not of length 4 or a muon not of length 3
``count_mismatch``           declared muon count disagrees with the muon rows (HDF5)
``mass_no_nucleus``          legacy file in the original units: the rest mass (GeV) is no nucleus'
``vertical_depth_out_of_range`` original units: vertical depth outside [0, 20000] m
``primary_not_nucleus``      CORSIKA file: the primary is not a nucleon or nucleus (gamma, e, mu, ...)
``muon_thinned``             CORSIKA thinned file: a muon record carries a thinning weight != 1
``non_finite``               energy, zenith, mass or depth is NaN or +-Inf
``energy_non_positive``      primary energy <= 0 GeV
``zenith_out_of_range``      zenith outside [0, pi/2] rad
``mass_below_one``           mass number A < 1
``depth_negative``           slant depth < 0 km
``muon_non_finite``          a muon energy/x/y is NaN or +-Inf
``muon_energy_non_positive`` a muon energy <= 0 GeV
``weight_invalid``           event weight NaN, +-Inf or negative
``energy_implausible``       primary energy outside [1 GeV, 1e12 GeV]
``mass_implausible``         A above 60 or more than 0.1 from an integer
``depth_implausible``        slant depth above 12 742 km (the Earth's diameter)
``muon_position_implausible`` a muon with abs(x) or abs(y) above 10 km
``muon_energy_above_primary`` a muon with more energy than its primary
===========================  ===============================================================

The last five are *plausibility* checks on finite values (bounds and their sources:
:data:`PLAUSIBLE` and docs/data_format.md, "Plausibility bounds"). Their codes come after
the older reasons so stored codes keep their meaning; they are checked right after the
matching sign/range check (``energy_implausible`` after ``energy_non_positive``, ...).

Rejected rows are written to a quarantine Parquet file by :class:`QuarantineWriter`
(columns ``file``, ``row``, ``reason``, the raw ``energy``/``zenith``/``mass``/``depth``
and the raw ``muons`` as decoded; see docs/data_format.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mubundle.data import schema
from mubundle.data.atomic import remove_stale_temporaries, temporary_path
from mubundle.data.batch import RaggedBatch

#: All reasons in check order; index + 1 is the integer code used in ``DecodedRows.structural``.
REASONS: tuple[str, ...] = (
    "null_value",
    "bad_list_length",
    "count_mismatch",
    "mass_no_nucleus",
    "vertical_depth_out_of_range",
    "primary_not_nucleus",
    "muon_thinned",
    "non_finite",
    "energy_non_positive",
    "zenith_out_of_range",
    "mass_below_one",
    "depth_negative",
    "muon_non_finite",
    "muon_energy_non_positive",
    "weight_invalid",
    "energy_implausible",
    "mass_implausible",
    "depth_implausible",
    "muon_position_implausible",
    "muon_energy_above_primary",
)
#: Integer codes (0 = accepted) so per-row reasons stay a numpy array, not Python strings.
REASON_CODE: dict[str, int] = {reason: code for code, reason in enumerate(REASONS, start=1)}

#: Plausibility bounds on finite values, in the schema's units (docs/data_format.md,
#: "Plausibility bounds", gives each bound's reason and source):
#: - primary energy [GeV]: 1 GeV .. 1e12 GeV. Above: the most energetic cosmic ray ever
#:   observed had 3.2e11 GeV (Fly's Eye, Bird et al., ApJ 441 (1995) 144); 1e12 GeV leaves
#:   a factor 3. Below 1 GeV total energy no primary reaches the atmosphere through the
#:   geomagnetic rigidity cutoff anywhere but near the poles, and none makes a muon that
#:   reaches any depth: a value below is a unit error (TeV or PeV stored as GeV).
#: - mass number A: <= 60 and within 0.1 of an integer. Iron-56 is the heaviest abundant
#:   cosmic-ray nucleus; the iron peak ends with Ni-58/60, and ultra-heavy nuclei (Z > 30) are
#:   ~1e-4..1e-5 of iron (Binns et al., ApJ 346 (1989) 997, HEAO-3); nothing mubundle makes
#:   goes beyond A = 56 (simulate's masses; flux mode's Fe group takes Z >= 21). Integer A;
#:   0.1 admits a mass converted from GeV with the atomic mass unit (Fe-56: 52.09 GeV /
#:   0.9315 GeV = 55.92) and rejects 1.5 or a mass in GeV (e.g. proton 0.938 -> below 1).
#: - slant depth [km]: <= 12 742 km, the Earth's mean diameter (2 x 6371 km, IUGG mean
#:   radius): the longest straight path through the Earth.
#: - muon |x|, |y| [m]: <= 1e6 m, farther than any muon can be from its shower's axis: the
#:   longest path through the atmosphere (from 30 km altitude at 90 deg, sqrt(2 R h) = 620 km).
#:   Bundles deep underground have radii of metres to a few hundred metres (`mubundle simulate
#:   --showers 100 --seed 1`: median offset 6.0 m, 99 % within 46 m, largest 141 m), but at the
#:   surface GeV muons of inclined showers lie kilometres away (`simulate --depths 0`: Fe 1e6 GeV at
#:   60 deg, 1-4 GeV muons at 11.7-15.9 km; the geomagnetic radius of a 1 GeV muon is ~66 km), so a
#:   bound of 10 km rejected simulated surface events. Catches garbage (1e30) and unit slips of
#:   large factors, not cm stored as m.
#: - muon energy <= primary energy (energy conservation), with a float32 margin of 1e-5.
PLAUSIBLE: dict[str, float] = {
    "energy_min_gev": 1.0,
    "energy_max_gev": 1e12,
    "mass_max": 60.0,
    "mass_integer_tolerance": 0.1,
    "depth_max_km": 12_742.0,
    "muon_position_max_m": 1e6,
    "muon_energy_margin": 1e-5,
}

# float32 pi/2 rounds up; comparing float32 zeniths against it keeps exact pi/2 inside the range
_HALF_PI_F32 = np.float32(np.pi / 2)


@dataclass
class DecodedRows:
    """Rows of one file piece as decoded, before value validation.

    ``batch``: values as found (NaN allowed); rows with a structural problem have
    ``counts == 0`` and NaN conditions where the value was unreadable.
    ``structural``: (B,) int8 reason code (0 = structurally fine, else ``REASON_CODE``).
    ``rows``: (B,) int64 row number of each event inside ``file`` (0-based).
    ``raw_conditions``: (B, 4) conditions as stored in the file when ``batch`` holds them
    converted to mubundle's units (legacy files in the original units); None = the same.
    Rejected rows are quarantined with these raw values.
    """

    file: str
    batch: RaggedBatch
    structural: np.ndarray
    rows: np.ndarray
    raw_conditions: np.ndarray | None = None


@dataclass
class RejectedRows:
    """Rejected rows with their raw values (``raw`` may hold NaN/Inf).

    ``files``: (R,) object array of file paths; ``rows``: (R,) int64 row in the file;
    ``reasons``: (R,) object array of reason strings; ``raw``: RaggedBatch of R events.
    """

    files: np.ndarray
    rows: np.ndarray
    reasons: np.ndarray
    raw: RaggedBatch

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @classmethod
    def empty(cls) -> "RejectedRows":
        return cls(np.zeros(0, object), np.zeros(0, np.int64), np.zeros(0, object), RaggedBatch.empty())

    @classmethod
    def concat(cls, parts: Sequence["RejectedRows"]) -> "RejectedRows":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        raws = [RaggedBatch(p.raw.conditions, p.raw.counts, p.raw.flat_muons) for p in parts]
        return cls(
            np.concatenate([p.files for p in parts]),
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.reasons for p in parts]),
            RaggedBatch.concat(raws),
        )

    def counts_by_reason(self) -> dict[str, int]:
        """``{reason: number of rows}`` for the reasons that occur, in ``REASONS`` order."""
        found = {reason: int(np.count_nonzero(self.reasons == reason)) for reason in REASONS}
        return {reason: n for reason, n in found.items() if n}

    def to_table(self) -> pa.Table:
        """Arrow table of the quarantine layout (see module docstring)."""
        offsets = self.raw.offsets.astype(np.int32)
        muon_values = pa.array(self.raw.flat_muons.reshape(-1), type=pa.float32())
        muons = pa.ListArray.from_arrays(pa.array(offsets), pa.FixedSizeListArray.from_arrays(muon_values, 3))
        columns = {
            "file": pa.array(self.files.astype(str), type=pa.string()),
            "row": pa.array(self.rows, type=pa.int64()),
            "reason": pa.array(self.reasons.astype(str), type=pa.string()),
        }
        for i, name in enumerate(schema.CONDITION_FIELDS):
            columns[name] = pa.array(self.raw.conditions[:, i], type=pa.float32())
        columns[schema.MUONS_COLUMN] = muons
        return pa.table(columns)


def add_counts(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Add reason counts ``more`` into ``total`` in place and return it."""
    for reason, n in more.items():
        total[reason] = total.get(reason, 0) + int(n)
    return total


def counts_text(counts: dict[str, int]) -> str:
    """Reason counts as the commands print them: ``"non_finite: 1, zenith_out_of_range: 4"``."""
    return ", ".join(f"{reason}: {n}" for reason, n in counts.items())


def _events_with(mask_per_muon: np.ndarray, batch: RaggedBatch) -> np.ndarray:
    """(B,) bool: events having at least one muon where ``mask_per_muon`` is true."""
    if not mask_per_muon.any():
        return np.zeros(len(batch), dtype=bool)
    hits = np.bincount(batch.event_index[mask_per_muon], minlength=len(batch))
    return hits > 0


def above_primary_energy(muon_energy: np.ndarray, primary_energy: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(M,) bool: which muons carry more energy than their event's primary (beyond the rounding
    margin ``PLAUSIBLE["muon_energy_margin"]``), the reader's ``muon_energy_above_primary``.

    ``muon_energy`` (M,) GeV, the muons of B events in order; ``primary_energy`` (B,) GeV;
    ``counts`` (B,) muons per event (summing to M). Compared in the muons' precision (float32 in files).
    """
    primary = np.repeat(np.asarray(primary_energy, dtype=muon_energy.dtype), counts)
    return muon_energy > primary * muon_energy.dtype.type(1.0 + PLAUSIBLE["muon_energy_margin"])


def row_reasons(decoded: DecodedRows) -> np.ndarray:
    """(B,) int8 reason code of every row (0 = accepted), first failing check wins."""
    batch = decoded.batch
    codes = decoded.structural.astype(np.int8, copy=True)
    conditions = batch.conditions
    muons = batch.flat_muons

    def mark(reason: str, mask: np.ndarray) -> None:
        codes[(codes == 0) & mask] = REASON_CODE[reason]

    finite = np.isfinite(conditions)
    mark("non_finite", ~(finite[:, 0] & finite[:, 1] & finite[:, 2] & finite[:, 3]))
    with np.errstate(invalid="ignore"):
        energy = conditions[:, schema.ENERGY]
        mark("energy_non_positive", ~(energy > 0))
        mark("energy_implausible", ~((energy >= PLAUSIBLE["energy_min_gev"]) & (energy <= PLAUSIBLE["energy_max_gev"])))
        zenith = conditions[:, schema.ZENITH]
        mark("zenith_out_of_range", ~((zenith >= 0) & (zenith <= _HALF_PI_F32)))
        mass = conditions[:, schema.MASS]
        mark("mass_below_one", ~(mass >= 1))
        near_integer = np.abs(mass - np.rint(mass)) <= PLAUSIBLE["mass_integer_tolerance"]
        mark("mass_implausible", ~((mass <= PLAUSIBLE["mass_max"]) & near_integer))
        depth = conditions[:, schema.DEPTH]
        mark("depth_negative", ~(depth >= 0))
        mark("depth_implausible", ~(depth <= PLAUSIBLE["depth_max_km"]))
        # per-muon masks only when something is wrong: the whole-array reductions are ~10x
        # cheaper than a reduction along the length-3 axis, and clean data is the common case
        if not np.isfinite(muons).all():
            finite = np.isfinite(muons)
            muon_finite = finite[:, 0] & finite[:, 1] & finite[:, 2]
            mark("muon_non_finite", _events_with(~muon_finite, batch))
        else:
            muon_finite = None
        energy_ok = muons[:, schema.MU_ENERGY] > 0
        if not energy_ok.all():
            bad_energy = ~energy_ok if muon_finite is None else muon_finite & ~energy_ok
            mark("muon_energy_non_positive", _events_with(bad_energy, batch))
        if muons.shape[0]:
            limit = np.float32(PLAUSIBLE["muon_position_max_m"])
            x, y = muons[:, schema.MU_X], muons[:, schema.MU_Y]
            # fast path for clean data: four reductions instead of per-muon masks
            if max(x.max(), y.max(), -x.min(), -y.min()) > limit:
                far = (np.abs(x) > limit) | (np.abs(y) > limit)
                mark("muon_position_implausible", _events_with(far, batch))
            above = above_primary_energy(muons[:, schema.MU_ENERGY], energy, batch.counts)
            if above.any():
                mark("muon_energy_above_primary", _events_with(above, batch))
        if batch.weights is not None:
            mark("weight_invalid", ~(np.isfinite(batch.weights) & (batch.weights >= 0)))
    return codes


def validate(decoded: DecodedRows) -> tuple[RaggedBatch, RejectedRows]:
    """Split decoded rows into the accepted batch and the rejected rows (vectorised).

    The accepted batch keeps the file order; when every row passes it is returned
    without a copy.
    """
    codes = row_reasons(decoded)
    bad = codes != 0
    batch = decoded.batch
    if not bad.any():
        return batch, RejectedRows.empty()
    good_index = np.flatnonzero(~bad)
    bad_index = np.flatnonzero(bad)
    raw = batch.take(bad_index)
    raw_conditions = raw.conditions if decoded.raw_conditions is None else decoded.raw_conditions[bad_index]
    reason_names = np.asarray(REASONS, dtype=object)[codes[bad_index].astype(np.int64) - 1]
    rejected = RejectedRows(
        np.full(bad_index.shape[0], decoded.file, dtype=object),
        decoded.rows[bad_index].astype(np.int64),
        reason_names,
        RaggedBatch(raw_conditions, raw.counts, raw.flat_muons),
    )
    return batch.take(good_index), rejected


class QuarantineWriter:
    """Appends rejected rows to one quarantine Parquet file, written atomically on close.

    A quarantine file belongs to the run that wrote it: when this run rejects nothing, a
    file already at ``path`` (left by an earlier run on the same output) is removed on
    :meth:`close`; a ``with`` block left by an exception (Ctrl-C, SIGTERM, an error) commits
    nothing and removes its temporary file (:meth:`abort`). Memory: rows are written per
    call (one row group each), never accumulated.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        remove_stale_temporaries(self.path.parent, recursive=False, name=self.path.name)  # of killed runs
        self._tmp = temporary_path(self.path)
        self._writer: pq.ParquetWriter | None = None
        self.rows_written = 0

    def write(self, rejected: RejectedRows) -> None:
        if not len(rejected):
            return
        table = rejected.to_table()
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        self._writer.write_table(table)
        self.rows_written += len(rejected)

    def close(self) -> Path | None:
        """Finish the file; returns its path, or None when there was nothing to quarantine
        (then a stale file of an earlier run at ``path`` is removed)."""
        if self._writer is None:
            if self.rows_written == 0:
                self.path.unlink(missing_ok=True)
            return None
        self._writer.close()
        self._writer = None
        with open(self._tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop what was written so far (nothing is committed under ``path``)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "QuarantineWriter":
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_quarantine(rejected: RejectedRows, path: str | os.PathLike) -> Path | None:
    """Write ``rejected`` to ``path`` in one go; returns the path or None if there is nothing."""
    with QuarantineWriter(path) as writer:
        writer.write(rejected)
        return writer.close()
