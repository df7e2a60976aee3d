"""Checks of a single-file output path before anything is written.

- the format follows the suffix (``.parquet``/``.pq`` -> ``parquet``, ``.h5``/``.hdf5``/``.hdf``
  -> ``hdf5``) unless given; a given format that contradicts the suffix is refused
  (``--out x.h5 --format parquet`` would write Parquet bytes into a file named .h5);
- a directory (an existing one, or a path ending in ``/``) is refused where a file belongs, and
  so is a device or FIFO (``/dev/null``: the atomic rename would replace the node itself);
- an existing file is replaced only when it is an earlier mubundle output (its Parquet
  schema or HDF5 attributes carry the ``mubundle`` metadata key) or with ``overwrite=True``;
  an input of the same run (same file through any path or link) is never replaced silently.

Refusals are :class:`~mubundle.errors.OutputRefusedError` (exit code 4) naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from mubundle.data import schema
from mubundle.data.sources import expand_paths
from mubundle.errors import OutputRefusedError

#: suffix -> the formats that may be written under it (the first is the one inferred)
SUFFIX_FORMATS: dict[str, tuple[str, ...]] = {
    ".parquet": ("parquet", "legacy-parquet"),
    ".pq": ("parquet", "legacy-parquet"),
    ".h5": ("hdf5",),
    ".hdf5": ("hdf5",),
    ".hdf": ("hdf5",),
}
DEFAULT_FORMAT = "parquet"


def output_format(out: str | os.PathLike, format: str | None, formats: Iterable[str]) -> str:
    """The format to write ``out`` in: ``format`` when given (checked against the suffix),
    else inferred from the suffix, else :data:`DEFAULT_FORMAT` for a suffix that names none."""
    formats = tuple(formats)
    if format is not None and format not in formats:
        raise OutputRefusedError(f"unknown output format {format!r}; choose one of {', '.join(formats)}")
    suffix = Path(out).suffix.lower()
    allowed = SUFFIX_FORMATS.get(suffix)
    if allowed is None:
        return format or DEFAULT_FORMAT
    if format is None:
        return allowed[0]
    if format not in allowed:
        raise OutputRefusedError(
            f"{out}: the suffix {suffix} is for {' or '.join(allowed)} files, but --format {format} was given; "
            f"drop --format to write {allowed[0]}, or name the file {Path(out).with_suffix(_suffix_for(format))}"
        )
    return format


def _suffix_for(format: str) -> str:
    return ".h5" if format == "hdf5" else ".parquet"


def is_mubundle_file(path: Path) -> bool:
    """True when ``path`` is a Parquet or HDF5 file that mubundle wrote (its metadata key is present)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return False
    if head[:4] == b"PAR1":
        import pyarrow.parquet as pq

        try:
            metadata = pq.read_schema(path).metadata or {}
        except Exception:  # noqa: BLE001 - an unreadable Parquet file is simply not one of ours
            return False
        return schema.METADATA_KEY in metadata
    if head == b"\x89HDF\r\n\x1a\n":
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                return schema.METADATA_KEY.decode() in handle.attrs
        except Exception:  # noqa: BLE001 - an unreadable HDF5 file is simply not one of ours
            return False
    return False


def check_output_file(
    out: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    flag: str = "--out",
) -> Path:
    """``out`` as a Path after the checks of this module's docstring (nothing is written).

    ``inputs``: what this run reads (files, globs, directories); ``overwrite``: allow replacing
    an existing file that is an input or not a mubundle output.
    """
    text = os.fspath(out)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise OutputRefusedError(f"{flag} {text} is a directory; a file is expected here (e.g. {path / 'events.parquet'})")
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputRefusedError(f"{flag} {text}: {path.parent} is a file, not a directory")
    if path.exists() and not path.is_file():  # /dev/null, a FIFO: the atomic rename would replace the node itself
        raise OutputRefusedError(f"{flag} {text} is not a regular file (a device, FIFO or socket); name a file")
    if not path.exists() or overwrite:
        return path
    resolved = path.resolve()
    for source_path in expand_paths(list(inputs)) if inputs else ():
        if source_path.is_file() and source_path.resolve() == resolved:
            raise OutputRefusedError(f"{flag} {text} is also an input ({source_path}); write to another file "
                                     "(or pass --overwrite to replace it once it has been read)")
    if not is_mubundle_file(path):
        raise OutputRefusedError(f"{flag} {text} exists and is not a mubundle output; choose another name "
                                 "or pass --overwrite to replace it")
    return path
