"""``mubundle inspect``: what is in these files, and what is wrong with them.

Streams the files piece by piece (bounded memory) and reports accepted events and muons,
zero-muon events, multiplicity quantiles, per-field ranges, rejected rows by reason and
failed files. Exact multiplicity quantiles come from a running histogram of counts.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Sequence, TextIO

import numpy as np

from mubundle.data import conventions, corsika, schema
from mubundle.data.sources import DataFileError, corsika_scan, expand_paths, iter_file_pieces
from mubundle.data.validate import add_counts

#: Multiplicity quantiles reported (N = muons per accepted event).
QUANTILES = (0.5, 0.9, 0.99, 0.999)


def _quantiles_from_histogram(histogram: np.ndarray) -> dict[str, int]:
    """Exact lower quantiles of N from ``histogram[n] = events with n muons``."""
    total = int(histogram.sum())
    if total == 0:
        return {}
    cumulative = np.cumsum(histogram)
    result = {str(q): int(np.searchsorted(cumulative, math.ceil(q * total))) for q in QUANTILES}
    result["max"] = int(np.flatnonzero(histogram)[-1])
    return result


def _update_range(ranges: dict[str, list[float]], name: str, values: np.ndarray) -> None:
    if values.size == 0:
        return
    low, high = float(values.min()), float(values.max())
    if name in ranges:
        ranges[name] = [min(ranges[name][0], low), max(ranges[name][1], high)]
    else:
        ranges[name] = [low, high]


def inspect_paths(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> dict[str, Any]:
    """Summary of the files (JSON-serialisable).

    Keys: ``files`` (number found), ``layouts`` ({layout: files}), ``events``, ``muons``,
    ``zero_muon_events``, ``zero_muon_fraction`` (accepted only), ``multiplicity_quantiles``
    ({"0.5": n, ..., "max": n}), ``ranges`` ({field: [min, max]} of accepted events, units of
    ``schema``), ``muon_ranges``, ``rejected`` ({reason: rows}), ``failed_files`` ([{path, error}]),
    ``conventions`` ({unit convention read: files}: ``original`` = rest mass GeV and vertical
    depth m converted to A and slant km, ``mubundle`` = A and slant km as stored, ``corsika``),
    ``corsika`` ({path: run headers and record counts} of CORSIKA files) and ``notes``
    ([{path, note}], e.g. a CORSIKA file without any muon record).
    """
    files = expand_paths(paths)
    failed: list[dict[str, str]] = []
    rejected: dict[str, int] = {}
    layouts: dict[str, set[str]] = {}
    units: dict[str, set[str]] = {}
    corsika_files: dict[str, dict[str, Any]] = {}
    notes: list[dict[str, str]] = []
    histogram = np.zeros(1, dtype=np.int64)
    ranges: dict[str, list[float]] = {}
    muon_ranges: dict[str, list[float]] = {}
    events = muons = 0
    for piece, accepted, bad_rows in iter_file_pieces(files, failed):
        layouts.setdefault(piece.layout, set()).add(piece.path)
        units.setdefault(piece.units, set()).add(piece.path)
        if piece.layout == corsika.LAYOUT and piece.path not in corsika_files:
            try:
                found = corsika_scan(piece.path)
            except DataFileError as error:  # the file changed since it was listed
                failed.append({"path": piece.path, "error": error.reason})
            else:
                corsika_files[piece.path] = found.to_dict()
                if found.note():
                    notes.append({"path": piece.path, "note": found.note()})
        add_counts(rejected, bad_rows.counts_by_reason())
        events += len(accepted)
        muons += accepted.n_muons
        piece_histogram = np.bincount(accepted.counts)
        if piece_histogram.shape[0] > histogram.shape[0]:
            histogram = np.pad(histogram, (0, piece_histogram.shape[0] - histogram.shape[0]))
        histogram[: piece_histogram.shape[0]] += piece_histogram
        for i, name in enumerate(schema.CONDITION_FIELDS):
            _update_range(ranges, name, accepted.conditions[:, i])
        for i, name in enumerate(schema.MUON_FIELDS):
            _update_range(muon_ranges, name, accepted.flat_muons[:, i])
    zero = int(histogram[0])
    return {
        "files": len(files),
        "layouts": {layout: len(p) for layout, p in sorted(layouts.items())},
        "events": events,
        "muons": muons,
        "zero_muon_events": zero,
        "zero_muon_fraction": zero / events if events else None,
        "multiplicity_quantiles": _quantiles_from_histogram(histogram),
        "ranges": ranges,
        "muon_ranges": muon_ranges,
        "rejected": rejected,
        "failed_files": failed,
        "conventions": {name: len(p) for name, p in sorted(units.items())},
        "corsika": corsika_files,
        "notes": notes,
    }


def print_inspection(report: dict[str, Any], as_json: bool = False, stream: TextIO | None = None) -> None:
    """Print ``report`` as exactly one JSON object (``as_json``) or as a human-readable table."""
    out = stream or sys.stdout
    if as_json:
        out.write(json.dumps(report, sort_keys=True) + "\n")
        for note in report.get("notes", []):
            print(f"mubundle inspect: note: {note['path']}: {note['note']}", file=sys.stderr)
        return
    layouts = ", ".join(f"{layout} x{n}" for layout, n in report["layouts"].items()) or "none readable"
    print(f"files              {report['files']}  ({layouts})", file=out)
    for name, n in report.get("conventions", {}).items():
        meaning = conventions.DESCRIPTIONS.get(name, "CORSIKA particle file: one event per shower at the observation level")
        print(f"units              {name} x{n}: {meaning}", file=out)
    print(f"events (accepted)  {report['events']}", file=out)
    print(f"muons (accepted)   {report['muons']}", file=out)
    fraction = report["zero_muon_fraction"]
    fraction_text = "n/a" if fraction is None else f"{fraction:.4f}"
    print(f"zero-muon events   {report['zero_muon_events']}  (fraction {fraction_text})", file=out)
    quantiles = "  ".join(f"q{q}={n}" for q, n in report["multiplicity_quantiles"].items())
    print(f"multiplicity       {quantiles or 'n/a'}", file=out)
    units = {**schema.CONDITION_UNITS}
    print(f"{'field':<14}{'min':>14}{'max':>14}  unit", file=out)
    for name, (low, high) in report["ranges"].items():
        print(f"{name:<14}{low:>14.6g}{high:>14.6g}  {units[name]}", file=out)
    for name, (low, high) in report["muon_ranges"].items():
        print(f"{'muon ' + name:<14}{low:>14.6g}{high:>14.6g}  {schema.MUON_UNITS[name]}", file=out)
    if report["rejected"]:
        print("rejected rows:", file=out)
        for reason, n in report["rejected"].items():
            print(f"  {reason:<26} {n}", file=out)
    else:
        print("rejected rows      0", file=out)
    for failure in report["failed_files"]:
        print(f"FAILED {failure['path']}: {failure['error']}", file=out)
    for note in report.get("notes", []):
        print(f"NOTE {note['path']}: {note['note']}", file=out)
