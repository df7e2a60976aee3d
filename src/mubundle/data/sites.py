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

#: Site of files that carry no ``site`` key (older native shards, legacy IceCube files).
LEGACY_SITE = "icecube"


def site_of(path: str | os.PathLike, layout: str, unrecorded: str | None = LEGACY_SITE) -> str | None:
    """Site name of one file: the native metadata's ``site`` (or ``config.site``), else ``unrecorded``
    (:data:`LEGACY_SITE`; None where a file without the key belongs to no site, e.g. primaries only)."""
    if layout == "legacy-parquet" or layout == "legacy-hdf5":  # the original pipeline's: South Pole ice
        return LEGACY_SITE
    if layout != "native":
        return unrecorded
    from mubundle.data.native import read_metadata

    try:
        metadata = read_metadata(path)
    except (ValueError, OSError) as error:  # unreadable metadata: the rows are still validated when read
        logging.getLogger(__name__).warning("%s: metadata unreadable (%s); counted as site %s", path, error, unrecorded)
        return unrecorded
    if not isinstance(metadata, dict):
        return unrecorded
    site = metadata.get("site") or (metadata.get("config") or {}).get("site")
    return str(site) if site else unrecorded


def require_one_site(files: Iterable[tuple[str, str]], what: str = "the training data mixes",
                     unrecorded: str | None = LEGACY_SITE) -> str | None:
    """The one site of ``files`` ((path, layout) pairs); ValueError naming each site and a file of it
    when they differ (``what`` starts the message). Files without a recorded site count as
    ``unrecorded`` (:func:`site_of`; None: they are left out). Returns ``unrecorded`` when no file
    has a site."""
    first_file: dict[str, str] = {}
    for path, layout in files:
        site = site_of(path, layout, unrecorded)
        if site is not None:
            first_file.setdefault(site, str(path))
    if len(first_file) > 1:
        listing = "; ".join(f"{site} (e.g. {path})" for site, path in sorted(first_file.items()))
        raise ValueError(
            f"{what} observation sites: {listing}. Depths and muons of different sites "
            "are in different media; train on one site's files (see `mubundle simulate --site`)"
        )
    return next(iter(first_file), unrecorded)


def site_of_paths(paths: Iterable[str | os.PathLike], what: str = "the training data mixes",
                  primaries: bool = False) -> str | None:
    """The one site of the files behind ``paths`` (files, globs, directories; unreadable files are
    left to the readers to report); ValueError as :func:`require_one_site` when they differ.

    ``primaries``: the files are read for their primaries only (``generate --primaries``), which
    also reads Parquet files of primaries and CORSIKA files; a file that records no site then
    counts for none (None when no file records one), since a list of primaries is of no site.
    """
    from mubundle.data.sources import DataFileError, detect_layout, expand_paths

    files = []
    for path in expand_paths(list(paths)):
        try:
            files.append((str(path), detect_layout(path, primaries=primaries)))
        except DataFileError:
            continue
    return require_one_site(files, what, None if primaries else LEGACY_SITE)


__all__ = ["LEGACY_SITE", "require_one_site", "site_of", "site_of_paths"]
