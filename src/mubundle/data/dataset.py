"""Dataset directories that are complete or visibly incomplete, never a valid-looking subset.

Every shard is written atomically (:mod:`mubundle.data.atomic`), but a dataset is many
shards: a run stopped half-way would leave complete shards that read like a smaller,
valid dataset. The writers (``mubundle convert``, ``mubundle simulate``) therefore

1. write ``DIR/_INCOMPLETE.json`` (who writes, how to resume) **before** the first shard and
   remove an older ``DIR/_manifest.json``;
2. write the shards (and the quarantine file);
3. write ``DIR/_manifest.json`` **last** -- every shard's relative path, size in bytes and
   events, the totals, the quarantine files of this run -- and only then remove the marker.

Readers (:func:`mubundle.data.sources.expand_paths`, hence ``read_events``, ``inspect``,
``EventStream``, generation's primaries) call :func:`dataset_files` on every directory:

- marker present: :class:`DatasetIncomplete` (one line: which command to re-run);
- manifest present: exactly the listed shards, each checked to exist with its recorded size
  and event count (:class:`DatasetIncomplete` naming the first that does not); data files in
  the directory that the manifest does not list are not read and are named in a warning;
- neither (directories written by mubundle before manifests existed, or any plain folder of
  files): every data file found, with the warning "no manifest: legacy dataset,
  completeness unknown".

The file names start with ``_`` so that no reader takes them for data.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from mubundle.data.atomic import atomic_write_bytes, fsync_directory

logger = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"
INCOMPLETE_NAME = "_INCOMPLETE.json"
#: where a command that writes a dataset directory (or an output directory) puts the rows it rejected;
#: the leading underscore keeps it out of the data when the directory is read back
QUARANTINE_FOLDER = "_quarantine"
#: the quarantine file of ``convert`` and ``simulate --primaries`` inside their dataset directory
QUARANTINE_NAME = Path(QUARANTINE_FOLDER) / "rejected.parquet"
MANIFEST_FORMAT = "mubundle-dataset"
MANIFEST_VERSION = 1


class DatasetIncomplete(ValueError):
    """A dataset directory is being written, was interrupted, or lost shards (message says how to fix)."""


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode()


def begin_dataset(directory: str | os.PathLike, producer: str, resume: str) -> None:
    """Mark ``directory`` as being written (before any shard) and drop an older manifest.

    ``resume`` is the user-facing instruction printed by readers that meet the marker
    (e.g. "re-run `mubundle convert ... --out DIR`").
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    marker = {"producer": producer, "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "resume": resume}
    atomic_write_bytes(directory / INCOMPLETE_NAME, _json_bytes(marker))
    manifest = directory / MANIFEST_NAME
    if manifest.exists():
        manifest.unlink()
        fsync_directory(directory)


def shard_entry(directory: Path, path: Path) -> dict[str, Any]:
    """Manifest entry of one shard: path relative to ``directory``, size in bytes, events (footer)."""
    return {
        "path": path.relative_to(directory).as_posix(),
        "bytes": path.stat().st_size,
        "events": pq.ParquetFile(path).metadata.num_rows,
    }


def finish_dataset(
    directory: str | os.PathLike,
    shards: Sequence[str | os.PathLike],
    producer: str,
    quarantine: Sequence[str | os.PathLike] = (),
    **extra: Any,
) -> Path:
    """Write ``DIR/_manifest.json`` naming ``shards`` (and ``quarantine`` files), then remove
    the incomplete marker. Call only after every shard is written. Returns the manifest path."""
    directory = Path(directory)
    entries = [shard_entry(directory, Path(p)) for p in shards]
    manifest = {
        "format": MANIFEST_FORMAT,
        "manifest_version": MANIFEST_VERSION,
        "producer": producer,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "events": sum(e["events"] for e in entries),
        "shards": entries,
        "quarantine": [Path(q).relative_to(directory).as_posix() for q in quarantine],
        **extra,
    }
    path = directory / MANIFEST_NAME
    atomic_write_bytes(path, _json_bytes(manifest))
    (directory / INCOMPLETE_NAME).unlink(missing_ok=True)
    fsync_directory(directory)
    return path


def read_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of ``directory`` (None without one); a manifest that is not valid JSON of
    the expected format raises :class:`DatasetIncomplete`."""
    path = Path(directory) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise DatasetIncomplete(f"{path}: unreadable dataset manifest ({error}); re-create the dataset") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not isinstance(
        manifest.get("shards"), list
    ):
        raise DatasetIncomplete(f"{path}: not a mubundle dataset manifest; re-create the dataset")
    return manifest


def incomplete_message(directory: Path) -> str | None:
    """The refusal line for a directory holding the incomplete marker (None if it has none)."""
    marker = directory / INCOMPLETE_NAME
    if not marker.exists():
        return None
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        info = {}
    resume = info.get("resume") if isinstance(info, dict) else None
    producer = info.get("producer", "mubundle") if isinstance(info, dict) else "mubundle"
    return (
        f"{directory} is an incomplete dataset ({producer} is writing it or was interrupted); "
        f"{resume or 're-run the command that wrote it'}"
    )


#: legacy dataset directories already warned about in this process
_WARNED_LEGACY: set[Path] = set()


def dataset_files(directory: Path, found: Sequence[Path]) -> list[Path]:
    """The data files of dataset directory ``directory`` to read (see module docstring).

    ``found``: the data files discovered under ``directory`` (used for legacy directories and
    to warn about files a manifest does not list). Raises :class:`DatasetIncomplete`.
    """
    message = incomplete_message(directory)
    if message is not None:
        raise DatasetIncomplete(message)
    manifest = read_manifest(directory)
    if manifest is None:
        if found and directory.resolve() not in _WARNED_LEGACY:  # once per directory and process, however often listed
            _WARNED_LEGACY.add(directory.resolve())
            logger.warning("%s: no manifest: legacy dataset, completeness unknown (reading the %d data file(s) found)",
                           directory, len(found))
        return list(found)
    listed = []
    for entry in manifest["shards"]:
        path = directory / entry["path"]
        try:
            size = path.stat().st_size
        except OSError:
            raise DatasetIncomplete(
                f"{directory}: shard {entry['path']} named by {MANIFEST_NAME} is missing; the dataset is incomplete"
            ) from None
        if size != entry["bytes"]:
            raise DatasetIncomplete(
                f"{directory}: shard {entry['path']} has {size} bytes, {MANIFEST_NAME} says {entry['bytes']}; "
                f"the dataset was modified after it was written"
            )
        try:
            events = pq.ParquetFile(path).metadata.num_rows
        except (OSError, ValueError, pa.ArrowException):  # an unreadable footer is reported by name when the shard is read
            events = entry["events"]
        if events != entry["events"]:
            raise DatasetIncomplete(
                f"{directory}: shard {entry['path']} has {events} events, {MANIFEST_NAME} says {entry['events']}"
            )
        listed.append(path)
    unlisted = sorted({Path(p) for p in found} - set(listed))
    if unlisted:
        logger.warning("%s: %d data file(s) not named by %s are not read (first: %s)",
                       directory, len(unlisted), MANIFEST_NAME, unlisted[0])
    return listed


def enclosing_incomplete_dataset(path: Path) -> str | None:
    """Refusal line if file ``path`` lies in an incomplete dataset (its folder or the one above
    its range folder holds the marker); None otherwise."""
    for folder in (path.parent, path.parent.parent):
        message = incomplete_message(folder)
        if message is not None:
            return message
    return None
