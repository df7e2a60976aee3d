"""What the ``benchmarks/`` scripts share: their argument parser, JSON output and error handling.

The benchmarks are scripts (``python benchmarks/NAME.py ...``), not a package, and the tests load
them from their file path, so what they share lives here. They follow the rules of the
``mubundle`` command (docs/data_format.md, "Errors and exit codes"): bad input ends a script
with ONE line on stderr, ``NAME: error: MESSAGE``, naming the file, flag or value, and the exit
code of :func:`mubundle.errors.exit_code_and_message` (2 for a bad flag, value or input file,
1 when the script ran but had nothing to report, 5 for what the system refused, 6 for a missing
device, 70 for a bug, 130 for Ctrl-C); never a traceback (``MUBUNDLE_DEBUG=1`` adds it) and
never exit 0 with an empty result. Stdout carries the figures as ONE JSON document
(:func:`print_json`; vs_corsika.py prints JSON Lines, one object per line, :func:`print_json_line`).

Imports only :mod:`mubundle.errors`, :mod:`mubundle.argtypes` and the standard library, so
that a script's ``--help`` and its argument errors do not wait for torch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from mubundle.argtypes import finite_float, integer, non_negative_int, positive_int, seed_int
from mubundle.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_NOTHING,
    InvalidValueError,
    OneLineWarningFormat,
    UserError,
    debug_enabled,
    exit_code_and_message,
)

__all__ = [
    "NothingToReport", "HelpFormatter", "make_parser", "description", "json_safe", "print_json", "print_json_line",
    "run", "require_events", "input_file", "output_file", "refuse_unless", "positive_int", "non_negative_int",
    "seed_int", "finite_float", "integer", "positive_float", "BenchmarkParser", "script_name", "model_fields",
]


class NothingToReport(UserError):
    """The script ran but found nothing to report (no event in the asked range, ...): exit 1."""

    exit_code = EXIT_NOTHING


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` with every option's default ("(default: ...)") and the description as written.
    A default of None or False (an option that is off unless given) is not shown: the help text
    says what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def description(doc: str | None) -> str:
    """The first paragraph of a module docstring (up to its first blank line), whole."""
    text = (doc or "").strip()
    return text.split("\n\n", 1)[0].strip()


def script_name(argv0: str | None = None) -> str:
    """``NAME`` of ``benchmarks/NAME.py`` (the script being run), for the messages."""
    return Path(argv0 if argv0 is not None else (sys.argv[0] or "benchmark")).stem or "benchmark"


class BenchmarkParser(argparse.ArgumentParser):
    """argparse with its usage errors on ONE line, ``NAME: error: MESSAGE`` (exit 2), like every
    other error of the scripts (``--help`` still shows the usage)."""

    def error(self, message: str):  # type: ignore[override]
        _exit(2, message, self.prog)


def make_parser(doc: str | None, epilog: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser (:class:`BenchmarkParser`) whose description is ``doc``'s first paragraph
    and whose ``--help`` shows each option's default (:class:`HelpFormatter`)."""
    return BenchmarkParser(prog=prog or script_name(), description=description(doc), epilog=epilog,
                           formatter_class=HelpFormatter)


#: argparse type: a finite number > 0 (seconds, energies, scales)
positive_float = finite_float(0.0, min_inclusive=False)


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into Python numbers and lists, tuples into
    lists, and every non-finite float (NaN, +-Infinity, which strict JSON has no spelling for)
    turned into ``None``. Dictionary keys become strings as ``json`` writes them."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {(k if isinstance(k, str) else str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy scalar or array, torch tensor
        return json_safe(value.tolist())
    if isinstance(value, (set, frozenset)):
        return [json_safe(v) for v in sorted(value, key=str)]
    if hasattr(value, "__float__"):
        return json_safe(float(value))
    raise TypeError(f"cannot write a {type(value).__name__} as JSON: {value!r}")


def print_json(obj: Any, indent: int | None = 1, file=None) -> None:
    """Write ``obj`` as ONE JSON document (plus a newline) on stdout and flush.

    Strict JSON (``allow_nan=False``): a non-finite float (a NaN from an empty bin, an Infinity
    from a zero time) becomes ``null``. Where the script knows why a figure has no value it
    says so next to the ``null`` in a ``reason`` field (``"reason": "fewer than 20 muons"``);
    a ``null`` without a reason means only "not finite".
    """
    stream = sys.stdout if file is None else file
    stream.write(json.dumps(json_safe(obj), indent=indent, allow_nan=False) + "\n")
    stream.flush()


def print_json_line(obj: Any, file=None) -> None:
    """One line of JSON Lines (one object per line, strict JSON, as :func:`print_json`)."""
    print_json(obj, indent=None, file=file)


def model_fields(model: Any, requested: str | None) -> dict[str, Any]:
    """The JSON fields naming the model a benchmark used: ``model`` (its name), ``model_path``
    (the directory or shipped name asked for; None: the shipped default) and ``mubundle_version``."""
    from mubundle import __version__  # the package is loaded already: this module lives in it

    name = getattr(model, "name", None)
    return {"model": name or requested or "shipped default", "model_path": requested,
            "mubundle_version": __version__}


def _exit(code: int, message: str | None, name: str) -> None:
    if message is not None:
        sys.stderr.write(f"{name}: error: {message}\n")
        sys.stderr.flush()
    raise SystemExit(code)


def run(main: Callable[[], Any], name: str | None = None) -> None:
    """Call ``main()`` as a script's entry point and exit (with ``main``'s return value where it
    is an int, the exit code it chose; else 0).

    An exception becomes ONE line ``NAME: error: MESSAGE`` on stderr and the exit code of
    :func:`mubundle.errors.exit_code_and_message` (Ctrl-C: 130, nothing but the line); a closed
    stdout (``| head``) ends the script quietly with 141. Python warnings are shown as one line
    each, ``NAME: warning: MESSAGE``. ``MUBUNDLE_DEBUG=1`` prints the traceback as well.
    ``SystemExit`` (argparse's usage errors, exit 2) passes through.
    """
    name = name or script_name()
    warnings.formatwarning = OneLineWarningFormat(name)
    try:
        result = main()
    except SystemExit:
        raise
    except BrokenPipeError:
        try:  # stdout is gone: nothing more can be written there, and nothing is said on stderr
            sys.stdout = open(os.devnull, "w")
        except OSError:  # pragma: no cover - /dev/null unavailable: the exit below is all that is left
            pass
        raise SystemExit(EXIT_BROKEN_PIPE) from None
    except (KeyboardInterrupt, Exception) as error:  # noqa: BLE001 - each becomes its documented code
        if debug_enabled():
            traceback.print_exc()
        code, message = exit_code_and_message(error)
        _exit(code, message, name)
    if type(result) is int:
        raise SystemExit(result)


def _describe_failed(failed: Sequence[Mapping[str, str]]) -> str:
    first = failed[0]
    more = f" (and {len(failed) - 1} more file{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
    return f"{first.get('path', '?')}: {first.get('error', 'unreadable')}{more}"


def require_events(n_events: int, failed_files: Sequence[Mapping[str, str]] = (), rejected: Mapping[str, int] | None = None,
                   paths: Iterable[str] = ()) -> None:
    """Refuse (exit 2) a reference or dataset from which no event was read: the message names the
    first file that failed and why, or the paths and the rejected rows when every file was read
    but held no valid event. When some events were read, failed files are the caller's to report
    in its JSON (``failed_files``)."""
    if n_events > 0:
        return
    if failed_files:
        raise InvalidValueError(f"no event could be read: {_describe_failed(failed_files)}")
    where = ", ".join(str(p) for p in paths) or "the input"
    rejected = {k: int(v) for k, v in (rejected or {}).items() if int(v)}
    why = f" ({sum(rejected.values())} rows rejected: {', '.join(f'{k} {v}' for k, v in rejected.items())})" if rejected else ""
    raise InvalidValueError(f"{where}: no valid event{why}")


def input_file(text: str) -> str:
    """argparse type: the path of an existing regular file (a directory, a missing file or a
    special file is refused at parse time with the path named)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory (a file is expected)")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a regular file")
    return text


def output_file(text: str) -> str:
    """argparse type: a file path whose folder exists (the file itself may be created)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory (a file path is expected)")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: folder {folder} does not exist")
    return text


def refuse_unless(condition: bool, message: str) -> None:
    """Refuse (:class:`~mubundle.errors.InvalidValueError`, exit 2, one line) unless ``condition``."""
    if not condition:
        raise InvalidValueError(message)
