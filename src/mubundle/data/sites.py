"""Which observation site a data file belongs to, and the rule that a training set has one.

``mubundle simulate --site NAME`` writes the site's name under ``site`` in every native
shard's metadata (``sim/site.py``). An event's ``depth`` is in km of that site's medium
(ice, sea water, km w.e. of rock) and its muons have crossed that medium, so events of two
sites are different physics under the same column names: a training set mixing them is
refused. Files without the key count as :data:`LEGACY_SITE` (``icecube``): every file
written before sites existed, and the original pipeline's Muonitron files, are South Pole ice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from mubundle.data.sources import DataFileError

#: Site of files that carry no ``site`` key (older native shards, legacy IceCube files).
LEGACY_SITE = "icecube"


#: Layouts of the original pipeline: their files count as :data:`LEGACY_SITE` unless the
#: ``mubundle`` metadata of our legacy writers records another site.
LEGACY_LAYOUTS = ("legacy-parquet", "legacy-hdf5")


def file_metadata(path: str | os.PathLike, layout: str) -> dict:
    """The mubundle metadata of a native file, or of a legacy file (its ``mubundle`` JSON, written by
    :mod:`mubundle.data.writers`; {} for the original pipeline's files and other layouts).
    Raises ``ValueError`` / ``OSError`` when it cannot be read."""
    if layout == "native":
        from mubundle.data.native import read_metadata

        metadata = read_metadata(path)
        return metadata if isinstance(metadata, dict) else {}
    if layout not in LEGACY_LAYOUTS:
        return {}
    from mubundle.data import legacy, remote

    with remote.opened(remote.as_path(path)) as source:
        if layout == "legacy-hdf5":
            import h5py

            with h5py.File(source, "r") as handle:
                return legacy.hdf5_metadata(handle)
        import pyarrow.parquet as pq

        return legacy.parquet_metadata(pq.read_schema(source).metadata)


def metadata_site(metadata: dict) -> str | None:
    """The ``site`` (or ``config.site``) a file's metadata records, None when none."""
    config = metadata.get("config")
    site = metadata.get("site") or (config.get("site") if isinstance(config, dict) else None)
    return str(site) if site else None


@dataclass(frozen=True)
class InputFile:
    """One data file as inspected before its events are read: ``path`` (a local path or URL),
    ``layout`` (:func:`~mubundle.data.sources.detect_layout`), ``metadata`` (:func:`file_metadata`;
    {} for layouts without any, and when it cannot be read) and ``unreadable`` (why not, else None)."""

    path: str
    layout: str
    metadata: dict[str, Any]
    unreadable: str | None = None

    @classmethod
    def read(cls, path: str | os.PathLike, layout: str) -> "InputFile":
        """``path`` of ``layout`` with its metadata read (never raises for an unreadable one)."""
        try:
            return cls(str(path), layout, file_metadata(path, layout))
        except (ValueError, OSError) as error:  # the rows are still validated when read
            return cls(str(path), layout, {}, str(error))

    def site(self, unrecorded: str | None = LEGACY_SITE) -> str | None:
        """Site name of the file: its metadata's ``site`` (or ``config.site``), else ``unrecorded``
        (:data:`LEGACY_SITE`; None where a file without the key belongs to no site, e.g. primaries
        only). A legacy file without the key is :data:`LEGACY_SITE` (the original pipeline's:
        South Pole ice)."""
        if self.layout in LEGACY_LAYOUTS:
            unrecorded = LEGACY_SITE
        elif self.layout != "native":
            return unrecorded
        if self.unreadable is not None:
            logging.getLogger(__name__).warning("%s: metadata unreadable (%s); counted as site %s",
                                                self.path, self.unreadable, unrecorded)
            return unrecorded
        return metadata_site(self.metadata) or unrecorded


def inspect_files(files: Iterable[str | os.PathLike], primaries: bool = False,
                  skipped: list[DataFileError] | None = None) -> list[InputFile]:
    """Each of ``files`` (expanded: :func:`~mubundle.data.sources.expand_paths`) with its layout and
    metadata, each read once (for a URL, every read is a request). Files without a layout (missing,
    unknown signature, ...) are left out: the readers report them; ``skipped`` (a list) receives the
    :class:`~mubundle.data.sources.DataFileError` saying why. ``primaries``: files of primaries
    only are kept too (:func:`~mubundle.data.sources.detect_layout`)."""
    from mubundle.data.sources import DataFileError, detect_layout

    inspected = []
    for path in files:
        try:
            layout = detect_layout(path, primaries=primaries)
        except DataFileError as error:
            if skipped is not None:
                skipped.append(error)
            continue
        inspected.append(InputFile.read(path, layout))
    return inspected


def site_of(path: str | os.PathLike, layout: str, unrecorded: str | None = LEGACY_SITE) -> str | None:
    """Site name of one file of ``layout`` (:meth:`InputFile.site`)."""
    return InputFile.read(path, layout).site(unrecorded)


def require_one_site(files: Iterable[InputFile], what: str = "the training data mixes",
                     unrecorded: str | None = LEGACY_SITE,
                     advice: str = "train on one site's files (see `mubundle simulate --site`)") -> str | None:
    """The one site of ``files`` (:func:`inspect_files`); ValueError naming each site and a file of it
    when they differ (``what`` starts the message). Files without a recorded site count as
    ``unrecorded`` (:meth:`InputFile.site`; None: they are left out). Returns ``unrecorded`` when no
    file has a site. ``advice`` ends the message."""
    first_file: dict[str, str] = {}
    for file in files:
        site = file.site(unrecorded)
        if site is not None:
            first_file.setdefault(site, file.path)
    if len(first_file) > 1:
        listing = "; ".join(f"{site} (e.g. {path})" for site, path in sorted(first_file.items()))
        raise ValueError(
            f"{what} observation sites: {listing}. Depths and muons of different sites "
            f"are in different media; {advice}"
        )
    return next(iter(first_file), unrecorded)


def site_of_paths(paths: Iterable[str | os.PathLike], what: str = "the training data mixes",
                  primaries: bool = False, **advice: str) -> str | None:
    """The one site of the files behind ``paths`` (files, globs, directories; unreadable files are
    left to the readers to report); ValueError as :func:`require_one_site` when they differ.

    ``primaries``: the files are read for their primaries only (``generate --primaries``), which
    also reads Parquet files of primaries and CORSIKA files; a file that records no site then
    counts for none (None when no file records one), since a list of primaries is of no site.
    """
    from mubundle.data.sources import expand_paths

    files = inspect_files(expand_paths(list(paths)), primaries)
    return require_one_site(files, what, None if primaries else LEGACY_SITE, **advice)


__all__ = ["LEGACY_LAYOUTS", "LEGACY_SITE", "InputFile", "file_metadata", "inspect_files", "metadata_site",
           "require_one_site", "site_of", "site_of_paths"]
