"""Atomic file output: a file appears complete under its name or not at all.

Every writer of mubundle (shards, HDF5/legacy outputs, checkpoints, generated files) goes
through here: write to a temporary file in the same folder, fsync it, ``os.replace`` it onto
the final name, fsync the folder. A crash at any moment leaves either the old file or the
new one, never half a file.
"""

from __future__ import annotations

import glob
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def temporary_path(path: Path) -> Path:
    """Hidden temporary name next to ``path`` (same filesystem, so the rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def create_temporary(path: Path) -> Path:
    """Create ``path``'s empty temporary file (:func:`temporary_path`) and return its name.

    A folder that refuses the file (read-only, full, ``/proc``) fails here, before any work is
    done, with an ``OSError`` that names ``path``, not the hidden temporary name the user never gave.
    """
    tmp = temporary_path(path)
    try:
        tmp.open("wb").close()
    except OSError as error:
        raise type(error)(error.errno, error.strerror, str(path)) from None
    return tmp


def fsync_directory(directory: Path) -> None:
    """Persist a rename in ``directory`` (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening directories; rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """fsync the finished ``tmp``, rename it onto ``path`` and fsync the folder."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temporary(path)
    try:
        yield tmp
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def _temporary_owner(name: str) -> int | None:
    """PID in a temporary name ``.NAME.tmp-PID`` (None for any other name)."""
    if not name.startswith("."):
        return None
    head, sep, pid = name.rpartition(".tmp-")
    return int(pid) if sep and head and pid.isdigit() else None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike, recursive: bool = True, name: str | None = None) -> list[Path]:
    """Delete temporary files (``.NAME.tmp-PID``) in ``directory`` whose writer PID is dead.

    A writer killed with SIGKILL (or a crashed machine) cannot remove its temporary file;
    the next mubundle run on the same directory does. Files of live processes (including
    this one) are kept; ``name`` restricts the search to the temporaries of the output file
    of that exact name. Returns the removed paths.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    pattern = f".{'*' if name is None else glob.escape(name)}.tmp-*"
    candidates = directory.rglob(pattern) if recursive else directory.glob(pattern)
    removed = []
    for path in candidates:
        pid = _temporary_owner(path.name)
        if pid is None or pid == os.getpid() or process_alive(pid) or not path.is_file():
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
