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

``OUT`` is a dataset directory (:mod:`mubundle.data.dataset`): locked against a second
writer (:mod:`mubundle.data.lock`), marked incomplete until ``OUT/_manifest.json`` is
written last, and cleared of an earlier conversion's shards and quarantine file before
the first new shard. An ``OUT`` that holds one of the inputs is refused before anything
is written.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import pyarrow as pa

from mubundle.data import corsika
from mubundle.data.atomic import remove_stale_temporaries
from mubundle.data.batch import RaggedBatch
from mubundle.data.dataset import INCOMPLETE_NAME, MANIFEST_NAME, QUARANTINE_NAME, begin_dataset, finish_dataset
from mubundle.data.lock import directory_lock
from mubundle.data.native import ShardWriter, default_metadata, read_metadata
from mubundle.data.sites import InputFile, inspect_files, metadata_site, require_one_site
from mubundle.data.sources import DataFileError, corsika_scan, expand_paths, iter_file_pieces
from mubundle.data.validate import QuarantineWriter, add_counts, counts_text

PRODUCER = "mubundle convert"


def refuse_overlap(arguments: Sequence[str | os.PathLike], files: Sequence[str], out_dir: Path) -> None:
    """Raise ``ValueError`` (before anything is written) if ``out_dir`` is an existing
    non-directory, holds one of the input ``files`` (converting in place would replace shards
    before they are read), lies inside an input directory argument (a later conversion would
    read its own output), or holds a dataset another producer wrote."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a directory; choose a directory for the dataset")
    root = out_dir.resolve()
    for argument in arguments:
        folder = Path(argument)
        if folder.is_dir() and (root == folder.resolve() or folder.resolve() in root.parents):
            raise ValueError(
                f"the output directory {out_dir} lies inside the input directory {folder}; write the converted "
                f"dataset to another --out (a conversion must not read or overwrite its own output)"
            )
    producer = _existing_producer(out_dir)
    if producer not in (None, PRODUCER):
        raise ValueError(f"--out {out_dir} holds a dataset written by {producer}; choose another --out")
    for name in files:
        resolved = Path(name).resolve()
        if resolved == root or root in resolved.parents:
            raise ValueError(
                f"input {name} lies inside the output directory {out_dir}; write the converted dataset "
                f"to another --out (converting in place would overwrite inputs before reading them)"
            )


def _existing_producer(out_dir: Path) -> str | None:
    """Producer of the dataset already in ``out_dir`` (manifest, marker or first shard), or None."""
    for name in (MANIFEST_NAME, INCOMPLETE_NAME):
        try:
            recorded = json.loads((out_dir / name).read_text()).get("producer")
        except (OSError, ValueError, AttributeError):
            continue
        if recorded:
            return str(recorded)
    shards = sorted(out_dir.glob("[0-9]*-[0-9]*/part-*.parquet"))
    if shards:
        try:
            return str(read_metadata(shards[0]).get("producer", "an unknown producer"))
        except (OSError, ValueError, pa.ArrowException):
            return "an unknown producer (unreadable shard metadata)"
    return None


def clear_previous_output(out_dir: Path) -> list[Path]:
    """Remove the shards and quarantine file of an earlier conversion into ``out_dir``
    (range folders ``NNNNNNN-NNNNNNN/part-NNNNN.parquet``, ``_quarantine/rejected.parquet``);
    other files are left alone. Returns the removed paths."""
    removed = [p for p in out_dir.glob("[0-9]*-[0-9]*/part-*.parquet") if p.is_file()]
    quarantine = out_dir / QUARANTINE_NAME
    if quarantine.is_file():
        removed.append(quarantine)
    for path in removed:
        path.unlink()
    for folder in out_dir.glob("[0-9]*-[0-9]*"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def no_particle_output(found: corsika.CorsikaScan) -> str | None:
    """One line when a CORSIKA file has no particle output (no muon and no other particle record:
    only Cherenkov bunches of id 0, or no record at all): its showers' muon number is unknown,
    not 0, so :func:`convert` refuses it as FAILED. None when it has particle records (a shower
    without muons among them is N = 0)."""
    records = found.records
    if records["muons"] or records["muon_information"] or records["other_particles"] or records["history"]:
        return None
    return f"no particle output: {found.note()}; the muon number is unknown, not 0 (run CORSIKA with particle output)"


def _corsika_runs(inputs: Sequence[InputFile]) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, str]]:
    """(the ``inputs`` that are CORSIKA files by their signature, run headers of those that scan
    ({path: scan}), the refused ones without particle output ({path: reason}, :func:`no_particle_output`));
    a file that fails its scan (truncated, ...) is reported later by the reader."""
    corsika_files = [file.path for file in inputs if file.layout == corsika.LAYOUT]
    runs: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    for path in corsika_files:
        try:
            found = corsika_scan(path)
        except DataFileError:
            continue
        reason = no_particle_output(found)
        if reason is None:
            runs[path] = found.to_dict()
        else:
            refused[path] = reason
    return corsika_files, runs, refused


#: Metadata of the site the events belong to, carried when the inputs agree (files without them
#: are of the legacy site, which :func:`convert` has checked to be the same).
SITE_KEYS = ("site", "medium", "depth_unit")
#: Metadata of the flux the events' weights follow, carried when every input records the same.
FLUX_KEYS = ("flux", "area_m2")


def carried_metadata(inputs: Sequence[InputFile]) -> tuple[dict[str, Any], str | None]:
    """(the site and flux metadata of the ``inputs`` that the output carries, one line naming the flux
    keys dropped because the inputs disagree, or None). The inputs' sites must already agree
    (:func:`convert` checks them); files whose layout is unknown are not among ``inputs``
    (:func:`~mubundle.data.sites.inspect_files`): the reader reports them."""
    for file in inputs:
        if file.unreadable is not None:
            logging.getLogger(__name__).warning("%s: metadata unreadable (%s); its site and flux are not carried",
                                                file.path, file.unreadable)
    recorded = [(file.path, file.metadata) for file in inputs]
    carried: dict[str, Any] = {}
    site = next((metadata_site(m) for _, m in recorded if metadata_site(m)), None)
    if site is not None:
        carried["site"] = site
        for key in SITE_KEYS[1:]:
            values = {json.dumps(m[key]): m[key] for _, m in recorded if m.get(key) is not None}
            if len(values) == 1:
                carried[key] = next(iter(values.values()))
    first_file: dict[str, str] = {}
    for path, metadata in recorded:
        first_file.setdefault(json.dumps([metadata.get(key) for key in FLUX_KEYS]), path)
    if len(first_file) == 1:
        carried.update({key: value for key, value in zip(FLUX_KEYS, json.loads(next(iter(first_file))))
                        if value is not None})
        return carried, None
    if not first_file:
        return carried, None
    listing = "; ".join(f"{', '.join(f'{k}={v}' for k, v in zip(FLUX_KEYS, json.loads(values)))} (e.g. {path})"
                        for values, path in first_file.items())
    return carried, f"flux and area_m2 dropped from the metadata: the inputs record different ones: {listing}"


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
    if events_per_shard <= 0:
        raise ValueError(f"--events-per-shard must be positive, got {events_per_shard}")
    files = [str(p) for p in expand_paths(inputs)]
    refuse_overlap([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs), files, out_dir)
    inspected = inspect_files(files)  # each input's layout and metadata, read once for every use below
    # depths and muons of two sites are in two media: one dataset holds one site's events
    require_one_site(inspected, "the inputs of one conversion mix",
                     advice="convert each site's files into its own --out")
    with directory_lock(out_dir, PRODUCER):
        remove_stale_temporaries(out_dir)
        begin_dataset(out_dir, PRODUCER, f"run `mubundle convert` again with the same inputs and --out {out_dir}")
        clear_previous_output(out_dir)
        summary = _convert_files(files, inspected, out_dir, events_per_shard, depth_propagation)
        finish_dataset(
            out_dir, summary["shards"], PRODUCER,
            quarantine=[] if summary["quarantine"] is None else [summary["quarantine"]],
            muons=summary["muons"], inputs=files, rejected=summary["rejected"], failed_files=summary["failed_files"],
        )
    return summary


def _convert_files(
    files: list[str],
    inspected: list[InputFile],
    out_dir: Path,
    events_per_shard: int,
    depth_propagation: Callable[[RaggedBatch], RaggedBatch] | None,
) -> dict[str, Any]:
    """The conversion itself of ``files`` (``inspected``: those with a layout; ``out_dir`` locked and
    marked incomplete by :func:`convert`)."""
    extra: dict[str, Any] = {}
    corsika_files, runs, refused = _corsika_runs(inspected)
    if depth_propagation is not None and not corsika_files:
        raise ValueError("--depths applies to CORSIKA particle files only, and none of the inputs is one")
    if runs:
        extra["corsika"] = runs
        extra["depth_propagation"] = getattr(depth_propagation, "config", None) if depth_propagation else {
            "depths_km": [0.0], "depth": "observation level (no propagation)"
        }
    carried, dropped = carried_metadata(inspected)
    metadata = default_metadata(
        producer=PRODUCER, config={"inputs": files, "events_per_shard": int(events_per_shard)}, **carried, **extra
    )
    failed: list[dict[str, str]] = [{"path": path, "error": reason} for path, reason in refused.items()]
    readable = [path for path in files if path not in refused]
    rejected: dict[str, int] = {}
    layouts: dict[str, set[str]] = {}
    zero_muon_events = 0
    with QuarantineWriter(out_dir / QUARANTINE_NAME) as quarantine:
        with ShardWriter(out_dir, metadata, events_per_shard) as writer:
            for piece, accepted, bad_rows in iter_file_pieces(readable, failed):
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
        "site": carried.get("site"),
        "dropped_metadata": dropped,
    }


def nothing_converted_reason(summary: dict[str, Any]) -> str | None:
    """Why a :func:`convert` ``summary`` holds no event (one line), or None if it converted some.

    The reasons, combined where several apply: input files that could not be read (the summary
    lists each as FAILED), rows that were all rejected (counted by reason, kept in the quarantine
    file) and files that were read but hold no event.
    """
    if summary["events"] > 0:
        return None
    failed = len(summary["failed_files"])
    rejected = sum(summary["rejected"].values())
    read = len(summary["inputs"]) - failed
    reasons: list[str] = []
    if failed:
        reasons.append(f"no input file could be read ({failed} FAILED above)" if read == 0
                       else f"{failed} input file{'' if failed == 1 else 's'} could not be read (FAILED above)")
    if rejected:
        by_reason = counts_text(summary["rejected"])
        reasons.append(f"all {rejected} row{'' if rejected == 1 else 's'} read were rejected ({by_reason}; "
                       f"kept in {summary['quarantine']})")
    elif read:
        reasons.append(f"{read} readable file{'' if read == 1 else 's'} held no event")
    return "nothing converted: " + "; ".join(reasons)


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
    if summary.get("dropped_metadata"):
        print(f"  {summary['dropped_metadata']}", file=out)
    for failure in summary["failed_files"]:
        print(f"  FAILED {failure['path']}: {failure['error']}", file=out)
