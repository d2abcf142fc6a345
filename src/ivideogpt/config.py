"""Typed dataclass configs: YAML presets in, resolved config dicts out.

Every component keeps its own config dataclass next to its module; this file composes them for the
commands, loads presets (a name from `ivideogpt/configs/` or a path) and turns configs to plain dicts
for checkpoints. Unknown keys and wrong types fail loudly with the dotted key at fault.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

PRESET_DIR = Path(__file__).parent / "configs"

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit its dataclass."""


def preset_path(name_or_path: str | Path) -> Path:
    """Resolve a preset name (`tiny`, `metaworld64`) or a YAML path to an existing file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    available = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
    raise ConfigError(f"config {str(name_or_path)!r} is neither a YAML file nor a preset ({available})")


def read_json(path: str | Path, error: type[Exception] = ValueError, hint: str = "") -> Any:
    """The JSON in `path`; a file that is not JSON raises `error` naming it, then `hint` (what to do)."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})" + (f"; {hint}" if hint else "")) from e


def load_yaml(name_or_path: str | Path) -> dict[str, Any]:
    path = preset_path(name_or_path)
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a nested dict, checking keys and value types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where.rstrip('.') or cls.__name__}: unknown key(s) {sorted(unknown)}; "
                          f"known: {sorted(fields)}")
    kwargs = {name: _coerce(hints[name], value, f"{where}{name}") for name, value in data.items()}
    return cls(**kwargs)


def merge(base: T, data: dict[str, Any], where: str = "") -> T:
    """Return a copy of dataclass `base` with the (nested) values of `data` applied on top."""
    hints = typing.get_type_hints(type(base))
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = set(data) - fields
    if unknown:
        raise ConfigError(f"{where.rstrip('.') or type(base).__name__}: unknown key(s) {sorted(unknown)}; "
                          f"known: {sorted(fields)}")
    updates = {}
    for name, value in data.items():
        current = getattr(base, name)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            updates[name] = merge(current, value, f"{where}{name}.")
        else:
            updates[name] = _coerce(hints[name], value, f"{where}{name}")
    return dataclasses.replace(base, **updates)


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain YAML/JSON-safe values (paths as strings, tuples as lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} fits none of {hint}")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, f"{where}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(hint) is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if isinstance(hint, type) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
    return value
