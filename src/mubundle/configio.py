"""Dataclass configs that round-trip to YAML.

Every configurable part of mubundle (simulation, model, training) is a dataclass whose
defaults are the single source of truth. ``to_yaml``/``from_yaml`` round-trip them;
nested dataclasses, tuples and lists are supported; unknown keys are an error that names
the key (a typo in a config file must not be silently ignored).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mubundle.errors import InvalidValueError

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain dict (tuples become lists) suitable for YAML/JSON."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build ``cls`` from a (possibly partial) dict; missing keys take the defaults.

    Every value is checked against the field's type annotation (int, float, bool, str, Path,
    Optional, tuples, lists, dicts, nested dataclasses): a wrong type is an
    :class:`~mubundle.errors.InvalidValueError` naming the field (``where`` prefixes it, e.g.
    ``model.``), the expected type and the value. Integral floats (``2.0``) become ints and
    numeric strings (PyYAML reads ``1e-4`` as a string) become floats; floats must be finite.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidValueError(f"{where.rstrip('.') or cls.__name__} must be a mapping of {cls.__name__} fields, "
                                f"got {type(data).__name__} {_short(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in set(data) - known)
    if unknown:
        raise InvalidValueError(f"unknown {cls.__name__} option(s): {', '.join(where + u for u in unknown)} "
                                f"(known: {', '.join(sorted(known))})")
    kwargs = {name: _coerce(f"{where}{name}", hints[name], value) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:  # the dataclass's own range checks (__post_init__)
        prefix = f"{where.rstrip('.')}: " if where else ""
        raise InvalidValueError(f"{prefix}{error}") from error


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """``value`` checked (and converted where lossless) against the annotation ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    wrong = InvalidValueError(f"{name} must be {_type_name(hint)}, got {type(value).__name__} {_short(value)}")
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise wrong
        errors = []
        for member in (a for a in args if a is not type(None)):
            try:
                return _coerce(name, member, value)
            except InvalidValueError as error:
                errors.append(error)
        raise errors[0] if len(errors) == 1 else wrong
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where=f"{name}.")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise wrong
    if hint is int:
        if isinstance(value, bool):
            raise wrong
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise wrong from None
            if number.is_integer():
                return int(number)
        raise wrong
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise wrong from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        if not math.isfinite(value):
            raise InvalidValueError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise wrong
    if hint is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise wrong
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{name}[{i}]", args[0], v) for i, v in enumerate(value))
        if args and len(value) != len(args):
            raise InvalidValueError(f"{name} must have {len(args)} values ({_type_name(hint)}), got {len(value)}: {_short(value)}")
        return tuple(_coerce(f"{name}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value))) if args else tuple(value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise wrong
        return [_coerce(f"{name}[{i}]", args[0], v) for i, v in enumerate(value)] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong
        if not args:
            return dict(value)
        return {_coerce(f"{name} key", args[0], k): _coerce(f"{name}[{k!r}]", args[1], v) for k, v in value.items()}
    if origin is typing.Literal:
        if value in args:
            return value
        raise InvalidValueError(f"{name} must be one of {', '.join(map(repr, args))}, got {_short(value)}")
    return value  # an annotation this checker does not know: the dataclass checks it


def to_yaml(config: Any, path: str | Path | None = None) -> str:
    """YAML text of ``config``; also written to ``path`` when given."""
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text


def from_yaml(cls: type[T], source: str | Path) -> T:
    """Load ``cls`` from a YAML file path or YAML text.

    Invalid YAML, a document that is not a mapping, an unknown key or a wrongly typed value
    is an :class:`~mubundle.errors.InvalidValueError` naming the file (and line, or field).
    """
    is_file = isinstance(source, Path) or "\n" not in str(source) and Path(str(source)).exists()
    where = f"{source}: " if is_file else ""
    try:
        text = Path(source).read_text() if is_file else str(source)
    except UnicodeDecodeError as error:
        raise InvalidValueError(f"{where}not a YAML text file (byte {error.start} is not UTF-8)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidValueError(f"{where}invalid YAML{line}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidValueError(f"{where}must hold a YAML mapping of {cls.__name__} fields (name: value), "
                                f"got {type(data).__name__} {_short(data)}")
    try:
        return from_dict(cls, data)
    except InvalidValueError as error:
        raise InvalidValueError(f"{where}{error}") from None
