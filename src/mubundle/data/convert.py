"""``mubundle convert``: any supported input layout -> native Parquet shards.

Rows are validated on the way; rejected rows go to ``OUT/_quarantine/rejected.parquet``
(the leading underscore keeps the quarantine out of the dataset when ``OUT`` is read back).
Memory is bounded by one input piece plus one output shard.

CORSIKA particle files come in as one event per shower at the observation level; with
``depth_propagation`` (a callable ``RaggedBatch -> RaggedBatch`` such as
:class:`mubundle.sim.underground.DepthPropagation`, chosen by the CLI so that ``data`` does not
import ``sim``) each shower becomes one event per requested depth. Their run headers
(version, observation level, energy cuts, interaction models, atmosphere) go into the
shards' metadata under ``corsika``; the propagation settings under ``depth_propagation``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from mubundle.data import corsika
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import ShardWriter, default_metadata
from mubundle.data.sources import DataFileError, corsika_scan, detect_layout, expand_paths, iter_file_pieces
from mubundle.data.validate import QuarantineWriter, add_counts

QUARANTINE_NAME = Path("_quarantine") / "rejected.parquet"


def _corsika_runs(files: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Run headers of the CORSIKA inputs ({path: scan}); unreadable files are reported later by the reader."""
    runs: dict[str, dict[str, Any]] = {}
    for path in files:
        try:
            if detect_layout(path) == corsika.LAYOUT:
                runs[path] = corsika_scan(path).to_dict()
        except DataFileError:
            continue
    return runs


def convert(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    events_per_shard: int = 100_000,
    depth_propagation: Callable[[RaggedBatch], RaggedBatch] | None = None,
) -> dict[str, Any]:
    """Convert ``inputs`` (files, globs, directories) into shards under ``out_dir``.

    ``depth_propagation`` is applied to the accepted events of CORSIKA inputs only (see module
    docstring); its ``config`` attribute, if any, is recorded in the metadata.

    Returns a summary: ``inputs`` (files found), ``layouts`` ({layout: files}), ``events``,
    ``muons``, ``zero_muon_events`` (accepted), ``rejected`` ({reason: rows}),
    ``failed_files`` ([{path, error}]), ``shards`` (paths), ``quarantine`` (path or None).
    """
    out_dir = Path(out_dir)
    files = [str(p) for p in expand_paths(inputs)]
    extra: dict[str, Any] = {}
    runs = _corsika_runs(files)
    if depth_propagation is not None and not runs:
        raise ValueError("--depths applies to CORSIKA particle files only, and none of the inputs is one")
    if runs:
        extra["corsika"] = runs
        extra["depth_propagation"] = getattr(depth_propagation, "config", None) if depth_propagation else {
            "depths_km": [0.0], "depth": "observation level (no propagation)"
        }
    metadata = default_metadata(
        producer="mubundle convert", config={"inputs": files, "events_per_shard": int(events_per_shard)}, **extra
    )
    failed: list[dict[str, str]] = []
    rejected: dict[str, int] = {}
    layouts: dict[str, set[str]] = {}
    zero_muon_events = 0
    quarantine = QuarantineWriter(out_dir / QUARANTINE_NAME)
    with ShardWriter(out_dir, metadata, events_per_shard) as writer:
        for piece, accepted, bad_rows in iter_file_pieces(files, failed):
            layouts.setdefault(piece.layout, set()).add(piece.path)
            if piece.layout == corsika.LAYOUT and depth_propagation is not None:
                accepted = depth_propagation(accepted)
            writer.write(accepted)
            zero_muon_events += int((accepted.counts == 0).sum())
            add_counts(rejected, bad_rows.counts_by_reason())
            quarantine.write(bad_rows)
    quarantine_path = quarantine.close()
    return {
        "inputs": files,
        "layouts": {layout: len(paths) for layout, paths in sorted(layouts.items())},
        "events": writer.events_written,
        "muons": writer.muons_written,
        "zero_muon_events": zero_muon_events,
        "rejected": rejected,
        "failed_files": failed,
        "shards": [str(p) for p in writer.paths],
        "quarantine": None if quarantine_path is None else str(quarantine_path),
        "out_dir": str(out_dir),
        "depth_propagation": extra.get("depth_propagation"),
    }


def print_convert_summary(summary: dict[str, Any], stream: TextIO | None = None) -> None:
    """Human-readable summary of :func:`convert` (failures and rejections listed by name)."""
    out = stream or sys.stdout
    print(f"converted {len(summary['inputs'])} input file(s) -> {summary['out_dir']}", file=out)
    for layout, n in summary["layouts"].items():
        print(f"  {layout:<15} {n} file(s)", file=out)
    print(
        f"  events {summary['events']}  muons {summary['muons']}  zero-muon events {summary['zero_muon_events']}"
        f"  shards {len(summary['shards'])}",
        file=out,
    )
    propagation = summary.get("depth_propagation")
    if propagation:
        print(f"  CORSIKA showers at depths {propagation['depths_km']} km ({propagation['depth']})", file=out)
    if summary["rejected"]:
        print(f"  rejected rows (quarantine: {summary['quarantine']}):", file=out)
        for reason, n in summary["rejected"].items():
            print(f"    {reason:<26} {n}", file=out)
    for failure in summary["failed_files"]:
        print(f"  FAILED {failure['path']}: {failure['error']}", file=out)
