"""Data behind URLs: fsspec filesystems for ``s3://``, ``https://``, ``root://``, ``osdf://``, ...

``sources.py`` calls in here for every path that looks like a URL (``scheme://...``);
local paths never touch fsspec. What this module provides:

* expansion of a URL into data files: globs (``s3://bucket/run*/*.parquet``) and, except
  for HTTP, directories (searched recursively for the data suffixes, ``_``/``.`` names skipped);
* opening a URL as a seekable binary file object with a bounded read-ahead cache
  (:data:`BLOCK_SIZE`), so Parquet row groups (pyarrow) and HDF5 chunks (h5py) are read
  piece by piece with HTTP range requests / S3 ranged GETs -- never a full download;
* credential hygiene: credentials come from where each filesystem looks for them (for S3
  the ``AWS_*`` environment variables, ``~/.aws``; for HTTP a ``~/.netrc``; for Pelican
  its token discovery). A URL that carries them itself (``https://user:pw@host/...``,
  ``...?authz=TOKEN``) is replaced everywhere downstream (messages, failed-file lists,
  metadata, logs) by its redacted form (:func:`redact`); only this module maps the
  redacted form back to the original when opening the file.

A scheme whose filesystem package is not installed is reported as a one-line error naming
the package to install (:data:`SCHEME_PACKAGES`), counted as a failed file like any other.
"""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

#: Read-ahead block of a remote file [bytes]: the most a file object buffers beyond the
#: bytes asked for (pyarrow asks for one column chunk at a time, h5py for small blocks).
BLOCK_SIZE = 4 * 1024 * 1024

#: The package that provides each scheme's fsspec filesystem (what to ``pip install``).
SCHEME_PACKAGES = {
    "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
    "http": "aiohttp", "https": "aiohttp", "root": "fsspec-xrootd", "osdf": "pelicanfs", "pelican": "pelicanfs",
}

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# query parameters that carry secrets (S3 pre-signed URLs, Pelican/SciTokens, SAS tokens, ...)
_SECRET_PARAMETER = re.compile(r"(?i)(token|authz|auth|sig|signature|secret|password|passwd|key|credential|x-amz-|sas|^se$|^sp$|^sv$)")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_ORIGINALS: dict[str, str] = {}  # redacted URL -> URL as given (with its credentials)


class MissingFilesystemError(ValueError):
    """The URL's scheme needs a package that is not installed (or is unknown to fsspec)."""


def is_url(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (any scheme but a Windows drive letter)."""
    return isinstance(path, str) and _URL.match(path) is not None


def scheme(url: str) -> str:
    """Lower-case scheme of ``url`` (``"s3"``, ``"https"``, ...)."""
    return url.split("://", 1)[0].lower()


def redact(url: str) -> str:
    """``url`` without ``user:password@`` and with the values of secret-looking query
    parameters replaced by ``***`` (the form that may be printed and stored)."""
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:  # edit in place: urlunsplit would turn osdf:///path into osdf:/path
        url = url.replace(parts.netloc, parts.netloc.rsplit("@", 1)[-1], 1)
    if parts.query:
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query = "&".join(f"{k}={'***' if _SECRET_PARAMETER.search(k) else v}" for k, v in pairs)
        url = url.replace("?" + parts.query, "?" + query, 1)
    return url


def scrub(text: str) -> str:
    """``text`` (an error message) with every URL credential in it redacted."""
    for redacted, original in _ORIGINALS.items():
        text = text.replace(original, redacted)
    return _USERINFO.sub("", text)


def register(url: str) -> str:
    """Remember ``url`` under its redacted form and return that form."""
    redacted = redact(url)
    if redacted != url:
        _ORIGINALS[redacted] = url
    return redacted


def redact_paths(paths: Any) -> list[str]:
    """``paths`` (one path/URL or a sequence) as strings fit for messages and metadata."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return [redact(str(p)) if is_url(str(p)) else str(p) for p in items]


def as_path(path: str | os.PathLike) -> Path | str:
    """A local path as :class:`Path`; a URL as its redacted string (see module docstring)."""
    return register(path) if is_url(path) else Path(path)


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` for ``url`` (redacted or original form).

    Storage options come from fsspec's configuration (``~/.config/fsspec``, ``FSSPEC_*``
    environment variables) and each filesystem's own credential lookup. Raises
    :class:`MissingFilesystemError` naming the package a scheme needs.
    """
    try:
        import fsspec
    except ImportError:
        raise MissingFilesystemError("URLs need the package fsspec (pip install 'mubundle[scale]')") from None
    original = _ORIGINALS.get(url, url)
    name = scheme(original)
    try:
        fsspec.get_filesystem_class(name)
    except (ImportError, ValueError) as error:
        package = SCHEME_PACKAGES.get(name)
        if package is None:
            raise MissingFilesystemError(f"no fsspec filesystem is installed for the {name}:// scheme ({error})") from None
        raise MissingFilesystemError(f"the {name}:// scheme needs the package {package} (pip install {package})") from None
    return fsspec.core.url_to_fs(original)


def why_missing(path: Path | str) -> str | None:
    """None when a local path or a URL can be opened, else why not, in a few words.

    For a URL the filesystem's own reason is kept: fsspec's HTTP filesystem turns every failure
    of its metadata request into ``FileNotFoundError``, so a host that does not resolve, a refused
    connection or a refused login would otherwise all read as a missing file. An HTTP status gives
    ``"file not found (HTTP 404 Not Found)"`` or ``"refused by the server (HTTP 401 Unauthorized)"``,
    a connection failure ``"could not reach the server: ..."`` (credentials redacted, :func:`scrub`).
    """
    if not is_url(path):
        return None if Path(path).exists() else "file not found"
    fs, inner = filesystem(str(path))
    try:
        fs.info(inner)
        return None
    except FileNotFoundError as error:
        cause = error.__cause__
        status = getattr(cause, "status", None)  # aiohttp.ClientResponseError
        if isinstance(status, int):
            text = f"HTTP {status}{' ' + cause.message if getattr(cause, 'message', '') else ''}"
            return f"file not found ({text})" if status in (404, 410) else f"refused by the server ({text})"
        if isinstance(cause, OSError):  # aiohttp's connection errors are OSErrors
            return scrub(f"could not reach the server: {_one_line(str(cause))}")
        return "file not found"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def open_binary(path: Path | str) -> IO[bytes]:
    """A local file, or a URL as a seekable read-only file object with a read-ahead cache
    of :data:`BLOCK_SIZE` bytes."""
    if not is_url(path):
        return open(path, "rb")
    fs, inner = filesystem(path)
    return fs.open(inner, "rb", block_size=BLOCK_SIZE, cache_type="readahead")


@contextlib.contextmanager
def opened(path: Path | str) -> Iterator[Path | str | IO[bytes]]:
    """What pyarrow / h5py should open: a local path as it is, a URL as an open file object
    (closed on exit)."""
    if not is_url(path):
        yield path
        return
    handle = open_binary(path)
    try:
        yield handle
    finally:
        handle.close()


def _hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def expand_url(url: str, suffixes: Sequence[str]) -> list[str]:
    """Data files of ``url`` (redacted strings, sorted): a glob's matching files; a
    directory's files with one of ``suffixes`` (not for http(s), whose "directories" are
    HTML pages); otherwise ``url`` itself. Anything that cannot be listed (missing
    package, network, permissions) is returned as given, so that reading it reports the
    error naming the URL instead of the URL vanishing."""
    redacted = register(url)
    try:
        fs, inner = filesystem(redacted)
        if any(char in inner for char in "*?["):
            found = fs.glob(inner, detail=True)
            matches = sorted(path for path, info in found.items() if info.get("type") != "directory")
        elif scheme(url) not in ("http", "https") and fs.isdir(inner):
            root = inner.rstrip("/")
            matches = sorted(
                path for path in fs.find(root)
                if path.lower().endswith(tuple(suffixes)) and not _hidden(path[len(root):])
            )
        else:
            return [redacted]
    except (OSError, ValueError, *network_errors()):  # reported when the URL is read
        return [redacted]
    if not matches:
        return [redacted]
    return [redact(path if is_url(path) else fs.unstrip_protocol(path)) for path in matches]


def network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of the remote filesystems that mean "this file cannot be read" (besides
    ``OSError``/``ValueError``, which ``sources.file_errors`` catches already)."""
    errors: list[type[BaseException]] = [MissingFilesystemError, TimeoutError]
    with contextlib.suppress(ImportError):
        import aiohttp

        errors.append(aiohttp.ClientError)
    with contextlib.suppress(ImportError):
        from fsspec.exceptions import FSTimeoutError

        errors.append(FSTimeoutError)
    with contextlib.suppress(ImportError):
        import botocore.exceptions

        errors.extend([botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError])
    return tuple(errors)


__all__ = [
    "BLOCK_SIZE", "SCHEME_PACKAGES", "MissingFilesystemError", "is_url", "redact", "redact_paths", "scrub", "register", "as_path",
    "filesystem", "why_missing", "open_binary", "opened", "expand_url", "network_errors",
]
