"""Dataclass configs that round-trip to YAML.

Every configurable part of mubundle (simulation, model, training) is a dataclass whose
defaults are the single source of truth. ``to_yaml``/``from_yaml`` round-trip them;
nested dataclasses, tuples and lists are supported; unknown keys are an error that names
the key (a typo in a config file must not be silently ignored).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

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


def from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
    """Build ``cls`` from a (possibly partial) dict; missing keys take the defaults."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def to_yaml(config: Any, path: str | Path | None = None) -> str:
    """YAML text of ``config``; also written to ``path`` when given."""
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text


def from_yaml(cls: type[T], source: str | Path) -> T:
    """Load ``cls`` from a YAML file path or YAML text."""
    text = Path(source).read_text() if isinstance(source, Path) or "\n" not in str(source) and Path(str(source)).exists() else str(source)
    return from_dict(cls, yaml.safe_load(text) or {})
