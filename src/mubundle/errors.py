"""User-facing errors and the exit codes of the ``mubundle`` command.

A failure the user caused (a bad flag, config value, input file or output path, a full or
read-only disk, a device that is not there) ends the command with ONE line on stderr,
``mubundle COMMAND: error: MESSAGE``, naming the file, flag, field or value and what would be
valid, and a documented non-zero exit code (docs/data_format.md, "Errors and exit codes").
``--debug`` or ``MUBUNDLE_DEBUG=1`` adds the Python traceback for bug reports.

This module imports nothing of the package, so every layer (data ... evaluate) may raise
these errors. An exception ends a command with its own exit code when it derives from
:class:`CommandError` and sets ``exit_code`` (:class:`UserError` and its subclasses here,
``mubundle.executors.DaskConnectionError``). :class:`UserError` subclasses also derive from
``ValueError`` where the package's functions documented ``ValueError`` before, so existing
``except ValueError`` callers keep working.
"""

from __future__ import annotations

import errno
import math
import numbers
import os
from typing import Any

#: the command finished.
EXIT_OK = 0
#: the command ran but produced nothing (``generate``: no event could be generated).
EXIT_NOTHING = 1
#: a flag, argument, config value or input file is invalid (argparse uses 2 as well).
EXIT_USAGE = 2
#: training diverged and the divergence guard gave up (a restart would diverge the same way).
EXIT_DIVERGED = 3
#: an output was refused: it would replace an input or a non-mubundle file, it is a
#: directory where a file belongs (or the reverse), or its suffix contradicts ``--format``.
EXIT_OUTPUT = 4
#: the operating system refused: permission denied, read-only file system, disk full or
#: quota exceeded, file name too long, a path component that is not a directory, out of memory.
EXIT_FILESYSTEM = 5
#: the requested device (``--device cuda`` / ``mps``) is not available to this torch.
EXIT_DEVICE = 6
#: a distributed run could not form or keep its connections: a torchrun rank lost the others (one
#: failed) or MASTER_PORT is in use; a Dask scheduler (``--dask``) is unreachable or was lost
#: mid-run. An environment failure that the same command, run again, resumes from (the
#: supervisor retries it).
EXIT_DISTRIBUTED = 7
#: an unexpected internal error (a bug): please report it with the ``--debug`` output.
EXIT_INTERNAL = 70
#: interrupted by Ctrl-C (SIGINT), 128 + 2 as in the shell.
EXIT_INTERRUPTED = 130
#: the reader of stdout quit before the output was written (``mubundle inspect ... | head``):
#: the command stops quietly, nothing on stderr, 128 + 13 (SIGPIPE) as a shell reports a
#: process that SIGPIPE ended (not Python's suggested 1, which here means "produced nothing").
EXIT_BROKEN_PIPE = 141
#: stopped by SIGTERM (batch schedulers), 128 + 15, where the command turns SIGTERM into an
#: interrupt carrying ``signum`` (a ``KeyboardInterrupt`` subclass).
EXIT_TERMINATED = 143

#: environment variable that turns on tracebacks like ``--debug``.
DEBUG_ENV = "MUBUNDLE_DEBUG"


class CommandError(Exception):
    """An exception that ends a ``mubundle`` command with its own ``exit_code``; its message is the
    one line the command prints. A subclass sets ``exit_code`` and may also derive from the built-in
    exception its callers catch (``ValueError``, ``ConnectionError``, ...)."""

    exit_code: int = EXIT_INTERNAL


class UserError(CommandError):
    """A failure the user can fix; its message is the one line the command prints."""

    exit_code = EXIT_USAGE


class InvalidValueError(UserError, ValueError):
    """A flag, argument, config field or file content has an invalid value (exit 2)."""


class InvalidTypeError(UserError, TypeError):
    """An API argument or config field has the wrong type (exit 2)."""


class OutputRefusedError(UserError, ValueError):
    """An output path was refused before anything was written (exit 4)."""

    exit_code = EXIT_OUTPUT


class DeviceUnavailableError(UserError, ValueError):
    """The requested torch device is not available (exit 6)."""

    exit_code = EXIT_DEVICE


class DistributedRunError(UserError, RuntimeError):
    """A distributed run lost contact with its other processes or could not form its group (exit 7)."""

    exit_code = EXIT_DISTRIBUTED


def debug_enabled(flag: bool = False) -> bool:
    """True when ``--debug`` was given or ``MUBUNDLE_DEBUG`` is set to a non-empty value other than 0."""
    return bool(flag) or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


# ---------------------------------------------------------------------------- OS errors
_OS_ERROR_TEXT = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device (free space or choose another --out)",
    errno.EDQUOT: "disk quota exceeded (free space or choose another --out)",
    errno.ENAMETOOLONG: "file name too long (most file systems allow 255 bytes per path component)",
    errno.EISDIR: "is a directory (a file path is expected here)",
    errno.ENOTDIR: "a component of the path is not a directory",
    errno.EEXIST: "exists and is not a directory (a directory is expected here)",
    errno.ENOTEMPTY: "directory not empty",
    errno.EMFILE: "too many open files (raise `ulimit -n`)",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EIO: "input/output error (failing disk or network file system)",
}


def describe_os_error(error: OSError) -> str:
    """One line for an ``OSError``: what the system refused and the path(s) it names."""
    what = _OS_ERROR_TEXT.get(error.errno or -1) or (error.strerror or str(error))
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    if not paths:
        return what if error.strerror is None else f"{what} ({error})"
    return f"{' -> '.join(paths)}: {what}"


def exit_code_and_message(error: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message for an exception that ended a command.

    A :class:`CommandError` gets its own ``exit_code`` (before the built-in classes it may also
    derive from: a lost Dask scheduler is a ``ConnectionError`` but exits 7, not 5); ``ValueError``
    and ``OSError`` get their documented code; anything else is a bug (:data:`EXIT_INTERNAL`).
    """
    if isinstance(error, KeyboardInterrupt):  # 128 + the signal: 130 Ctrl-C, 143 SIGTERM
        return 128 + int(getattr(error, "signum", EXIT_INTERRUPTED - 128)), "interrupted"
    if isinstance(error, CommandError):
        return error.exit_code, _one_line(str(error))
    if isinstance(error, FileNotFoundError):
        if error.filename is not None:
            return EXIT_USAGE, f"{error.filename}: no such file or directory"
        return EXIT_USAGE, _one_line(str(error))
    if isinstance(error, OSError):
        return EXIT_FILESYSTEM, _one_line(describe_os_error(error))
    if isinstance(error, MemoryError):  # the system refused memory: smaller chunks/batches fit
        return EXIT_FILESYSTEM, "out of memory (use smaller --events-per-chunk / --batch-size, or fewer --workers)"
    if isinstance(error, ValueError):  # the package's documented error for a bad value
        return EXIT_USAGE, _one_line(str(error))
    name = type(error).__name__
    return EXIT_INTERNAL, _one_line(
        f"internal error {name}: {error} (a bug: rerun with --debug and report the traceback)"
    )


def warning_text(message: Warning | str, category: type[Warning]) -> str:
    """One line for a Python warning shown to a command-line user: its message, without the
    file path and source line Python adds. The category name is kept where it says what kind of
    problem this is (``RuntimeWarning: overflow encountered in exp``, ``DeprecationWarning: ...``)
    and left out for plain ``UserWarning`` and the package's own categories, whose messages say it
    (``ExtrapolationWarning``: "extrapolating 2 of 4 events outside the domain of model ...")."""
    text = _one_line(str(message))
    if category is UserWarning or category.__module__.split(".")[0] == "mubundle":
        return text
    return f"{category.__name__}: {text}"


class OneLineWarningFormat:
    """A ``warnings.formatwarning`` giving ``PREFIX: warning: MESSAGE`` as one line, without the file
    path and source line Python shows (meant for the package's developers, not its users).

    A class, not a closure, so that it pickles: the executors hand the command's format to their
    worker processes (:mod:`mubundle.executors`), whose warnings then read like the command's own.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 line: str | None = None) -> str:
        return f"{self.prefix}: warning: {warning_text(message, category)}\n"

    def __repr__(self) -> str:
        return f"OneLineWarningFormat({self.prefix!r})"


def _one_line(text: str) -> str:
    """``text`` on one line (multi-line messages of libraries joined with '; ')."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip()) or "(no message)"


# ---------------------------------------------------------------------------- value checks
def check_finite_number(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    unit: str = "",
) -> float:
    """``value`` as a float after checking it is a finite real number within the bounds.

    Raises :class:`InvalidTypeError` for non-numbers (strings, None, bool) and
    :class:`InvalidValueError` naming ``name``, the value and the valid range otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{name} must be a number{range_text(minimum, maximum, min_inclusive, max_inclusive, unit)}, "
                               f"got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number) or not _within(number, minimum, maximum, min_inclusive, max_inclusive):
        raise InvalidValueError(f"{name} must be a finite number{range_text(minimum, maximum, min_inclusive, max_inclusive, unit)}, "
                                f"got {value!r}")
    return number


def check_integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int after checking it is an integer (not 1.7, not True) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
            value = int(value)  # 3.0 is the integer 3; 1.7 is refused below, never truncated
        else:
            raise InvalidTypeError(f"{name} must be an integer{range_text(minimum, maximum, True, True, '')}, "
                                   f"got {type(value).__name__} {value!r}")
    number = int(value)
    if not _within(number, minimum, maximum, True, True):
        raise InvalidValueError(f"{name} must be an integer{range_text(minimum, maximum, True, True, '')}, got {number}")
    return number


def _within(value: float, minimum: float | None, maximum: float | None, min_inclusive: bool, max_inclusive: bool) -> bool:
    if minimum is not None and (value < minimum or (not min_inclusive and value == minimum)):
        return False
    if maximum is not None and (value > maximum or (not max_inclusive and value == maximum)):
        return False
    return True


def _number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.10g}"


def range_text(minimum: float | None, maximum: float | None, min_inclusive: bool, max_inclusive: bool, unit: str = "") -> str:
    """' in [lo, hi] unit', ' >= lo unit', ... for messages about a number's valid range ('' if unbounded)."""
    unit = f" {unit}" if unit else ""
    minimum_text = None if minimum is None else _number_text(minimum)
    maximum_text = None if maximum is None else _number_text(maximum)
    if minimum is not None and maximum is not None:
        return f" in {'[' if min_inclusive else '('}{minimum_text}, {maximum_text}{']' if max_inclusive else ')'}{unit}"
    if minimum is not None:
        return f" {'>=' if min_inclusive else '>'} {minimum_text}{unit}"
    if maximum is not None:
        return f" {'<=' if max_inclusive else '<'} {maximum_text}{unit}"
    return ""
