"""One field-driven JSON codec for the contract's dataclasses (results and requests).

A dataclass field says how it travels through its type annotation and, where the wire differs
from the field, its metadata (:func:`wire`): another key, rounding, a value for a missing entry,
a field to send in place of None. :func:`encode` turns an instance into a JSON object;
:func:`decode` reads one back leniently (a missing or null entry takes the field's default, else
its type's empty value), so a newer peer's extra keys and an older peer's missing ones both read.
Validation of untrusted input is not done here: requests check their fields first
(``requests.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

_MISSING = dataclasses.MISSING


def wire(*, key: str | None = None, digits: int | None = None, missing: Any = _MISSING,
         fallback: str | None = None, **extra: Any) -> dict[str, Any]:
    """Field metadata for the codec: the JSON ``key`` (default: the field's name), ``digits``
    to round a float (or a dict of floats) to, the value a ``missing`` entry decodes to, and the
    field to encode in place of None (``fallback``). Other keys pass through (``kind`` for
    request validation)."""
    meta = dict(extra)
    for name, value in (("key", key), ("digits", digits), ("fallback", fallback)):
        if value is not None:
            meta[name] = value
    if missing is not _MISSING:
        meta["missing"] = missing
    return meta


def encode(obj: Any) -> dict[str, Any]:
    """The JSON object of a dataclass instance (nested dataclasses, tuples and dicts included).
    Its ``WIRE_PROPERTIES`` ({property: field it follows}) add computed values a reader may want."""
    after = {field_name: name for name, field_name in getattr(obj, "WIRE_PROPERTIES", {}).items()}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None and "fallback" in f.metadata:
            value = getattr(obj, f.metadata["fallback"])
        out[f.metadata.get("key", f.name)] = _out(value, f.metadata.get("digits"))
        if f.name in after:
            out[after[f.name]] = getattr(obj, after[f.name])
    return out


def _out(value: Any, digits: int | None = None) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        method = getattr(value, "to_json", None)
        return method() if callable(method) else encode(value)
    if isinstance(value, (tuple, list)):
        return [_out(v) for v in value]
    if isinstance(value, dict):
        return {k: _out(v, digits) for k, v in value.items()}
    if digits is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(float(value), digits)
    return value


def decode(cls: type, obj: Any) -> Any:
    """An instance of dataclass ``cls`` from a JSON object (anything else reads as ``{}``)."""
    obj = obj if isinstance(obj, dict) else {}
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.init:
            raw = obj.get(f.metadata.get("key", f.name))
            kwargs[f.name] = _field_in(f, hints[f.name], raw)
    return cls(**kwargs)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field_in(f: dataclasses.Field, tp: Any, raw: Any) -> Any:
    if raw is None:
        if "missing" in f.metadata:
            return f.metadata["missing"]
        if f.default is not _MISSING:
            return f.default
        if f.default_factory is not _MISSING:
            return f.default_factory()
        return _empty(tp)
    return _in(tp, raw)


def _empty(tp: Any) -> Any:
    """The value a missing required entry of type ``tp`` reads as."""
    args, origin = typing.get_args(tp), typing.get_origin(tp)
    if type(None) in args:
        return None
    if origin is tuple and args and args[-1] is not Ellipsis:
        return tuple(_empty(a) for a in args)
    base = origin or tp
    return base() if base in (int, float, str, bool, tuple, list, dict) else None


def _in(tp: Any, raw: Any) -> Any:
    """``raw`` (not None) converted to ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _in(inner[0], raw) if len(inner) == 1 else raw
    if origin in (tuple, list):
        return _sequence_in(origin, args, raw)
    if tp is dict or origin is dict:
        return dict(raw) if isinstance(raw, dict) else {}
    if dataclasses.is_dataclass(tp):
        reader = getattr(tp, "from_json", None)
        return reader(raw) if callable(reader) else decode(tp, raw)
    if tp in (int, float, str, bool):
        return tp(raw)
    return raw


def _sequence_in(origin: type, args: tuple, raw: Any) -> Any:
    items = list(raw) if isinstance(raw, (list, tuple)) else []
    if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: tuple[int, int]
        return tuple(_in(a, v) for a, v in zip(args, items, strict=False))
    item = args[0] if args else Any
    if item is dict:
        items = [v for v in items if isinstance(v, dict)]
    return origin(_in(item, v) for v in items if v is not None)
