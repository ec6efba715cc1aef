"""Typed, validated construction of dataclasses from plain dicts (parsed YAML).

``build(cls, data, path)`` checks every key against the dataclass fields and every value against
the field's type hint, and fails with the key path (``optim.lr``), what was wrong and a hint
(closest valid key, expected type, allowed values). This is the single place recipes are checked,
so every config section gets the same behaviour for free.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from tunesmith.errors import ConfigError


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against type hint ``tp``; return it (ints widen to float, lists to tuples)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _coerce_union(tp, value, path)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"choose one of {list(allowed)}"
            raise ConfigError(path, f"invalid value {value!r}", hint)
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(path, f"expected null, got {value!r}")
        return None
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and hasattr(tp, "from_string"):  # shorthand, e.g. a bare path
            return tp.from_string(value)
        return build(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(path, f"expected a list, got {type(value).__name__} {value!r}")
        (arg, *_) = get_args(tp) or (Any,)
        items = [_coerce(arg, v, _join(path, i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {type(value).__name__} {value!r}")
        _, vt = get_args(tp) or (Any, Any)
        return {k: _coerce(vt, v, _join(path, k)) for k, v in value.items()}
    if tp is float:
        return _coerce_float(value, path)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
        return value
    raise TypeError(
        f"unsupported config type {tp!r} at {path}"
    )  # a bug in tunesmith, not user input


def _coerce_float(value: Any, path: str) -> float:
    """A finite number: ``.nan`` / ``.inf`` are never meaningful settings (and NaN passes every
    ``<`` / ``>`` check a section would make)."""
    number = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise ConfigError(path, f"expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError(path, f"must be a finite number, got {value!r}")
    return number


def _coerce_union(tp: Any, value: Any, path: str) -> Any:
    """``X | Y | None``: the first option that accepts ``value``."""
    if value is None and type(None) in get_args(tp):
        return None
    options = [a for a in get_args(tp) if a is not type(None)]
    nested = [a for a in options if dataclasses.is_dataclass(a)]
    if len(options) == 1 or (isinstance(value, dict) and len(nested) == 1):
        # Optional[X], or a mapping for the one dataclass option: X's own, precise error
        return _coerce(nested[0] if isinstance(value, dict) and nested else options[0], value, path)
    for arg in get_args(tp):
        try:
            return _coerce(arg, value, path)
        except ConfigError:
            pass  # the next option may accept it
    raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")


def fld(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field with help text (shown by ``tunesmith validate`` and in docs); mutable
    defaults (lists, dicts, dataclass instances) go through ``default_factory``."""
    if dataclasses.is_dataclass(default):
        kw["default_factory"] = type(default)
        return dataclasses.field(metadata={"help": help}, **kw)
    if isinstance(default, list | dict):
        value = default
        kw["default_factory"] = lambda: type(value)(value)
        return dataclasses.field(metadata={"help": help}, **kw)
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


def field_help(cls: type) -> dict[str, str]:
    """Help text of each field (``metadata={"help": ...}``), for docs and ``tunesmith validate``."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def build(cls: type, data: Any, path: str = "") -> Any:
    """Construct dataclass ``cls`` from a dict, checking keys and types recursively."""
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping, got {type(data).__name__} {data!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(names)}"
            raise ConfigError(_join(path, key), "unknown key", hint)
        kwargs[key] = _coerce(hints[key], value, _join(path, key))
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init
        and f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(_join(path, missing[0]), "required key is missing")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(path)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict/list structure suitable for YAML."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override`` merged in: mappings merge key by key, other values replace.
    Neither input is modified."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "an override must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else None
        node = data
        parts = key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[: i + 1]), "cannot override inside a non-mapping")
            node = child
        node[parts[-1]] = value
    return data


__all__ = ["build", "to_dict", "apply_overrides", "deep_merge", "field_help", "fld"]
