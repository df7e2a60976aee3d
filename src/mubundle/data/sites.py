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


def site_of(path: str | os.PathLike, layout: str) -> str:
    """Site name of one file: the native metadata's ``site`` (or ``config.site``), else :data:`LEGACY_SITE`."""
    if layout != "native":
        return LEGACY_SITE
    from mubundle.data.native import read_metadata

    try:
        metadata = read_metadata(path)
    except (ValueError, OSError) as error:  # unreadable metadata: the rows are still validated when read
        logging.getLogger(__name__).warning("%s: metadata unreadable (%s); counted as site %s", path, error, LEGACY_SITE)
        return LEGACY_SITE
    if not isinstance(metadata, dict):
        return LEGACY_SITE
    site = metadata.get("site") or (metadata.get("config") or {}).get("site")
    return str(site) if site else LEGACY_SITE


def require_one_site(files: Iterable[tuple[str, str]], what: str = "the training data mixes") -> str:
    """The one site of ``files`` ((path, layout) pairs); ValueError naming each site and a file of it
    when they differ (``what`` starts the message). Returns :data:`LEGACY_SITE` for an empty input."""
    first_file: dict[str, str] = {}
    for path, layout in files:
        first_file.setdefault(site_of(path, layout), str(path))
    if len(first_file) > 1:
        listing = "; ".join(f"{site} (e.g. {path})" for site, path in sorted(first_file.items()))
        raise ValueError(
            f"{what} observation sites: {listing}. Depths and muons of different sites "
            "are in different media; train on one site's files (see `mubundle simulate --site`)"
        )
    return next(iter(first_file), LEGACY_SITE)


def site_of_paths(paths: Iterable[str | os.PathLike], what: str = "the training data mixes") -> str:
    """The one site of the files behind ``paths`` (files, globs, directories; unreadable files are
    left to the readers to report); ValueError as :func:`require_one_site` when they differ."""
    from mubundle.data.sources import DataFileError, detect_layout, expand_paths

    files = []
    for path in expand_paths(list(paths)):
        try:
            files.append((str(path), detect_layout(path)))
        except DataFileError:
            continue
    return require_one_site(files, what)


__all__ = ["LEGACY_SITE", "require_one_site", "site_of", "site_of_paths"]
