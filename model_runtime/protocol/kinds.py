"""The kinds of value a request field may hold (``path``, ``k``, ``bbox``, ...), their checks
and the messages that name a bad value without quoting more than a few dozen characters."""

from __future__ import annotations

import math
from typing import Any

from .defaults import _SHOWN_CHARS, DEFAULT_WEIGHTS, MAX_K, MAX_OFFSET, MAX_TILE_ID

_KIND_TEXT = {
    "str": "a string of valid Unicode text",
    "path": "a path: a non-empty string of valid Unicode text without NUL bytes",
    "path_list": "a list of paths (non-empty strings without NUL bytes)",
    "steps": f"an integer from 1 to {MAX_K}",
    "id": "a string or an integer",
    "bool": "true or false",
    "int": "an integer",
    "bits": "a multiple of 8 from 8 to 1024",
    "k": f"an integer from 1 to {MAX_K}",
    "count": f"an integer from 0 to {MAX_K}",
    "offset": f"an integer from 0 to {MAX_OFFSET}",
    "tile_id": f"a tile id (an integer from 0 to {MAX_TILE_ID})",
    "tile_ids": "a list of tile ids",
    "finite": "a finite number",
    "bbox": "[minx, miny, maxx, maxy]: four finite numbers with min <= max",
    "weights": f"an object of finite numbers keyed by {sorted(DEFAULT_WEIGHTS)}",
    "str_list": "a list of strings",
    "int_list": "a list of integers",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _is_text(value: Any) -> bool:
    """A string that is valid Unicode (JSON allows lone surrogates, which nothing can write)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_path(value: Any) -> bool:
    """Text a file system can take as a path: NUL ends a C string, so no OS path holds one."""
    return _is_text(value) and bool(value) and "\x00" not in value


def check_value(kind: str, value: Any) -> bool:
    if kind == "str":
        return _is_text(value)
    if kind == "path":
        return _is_path(value)
    if kind == "path_list":
        return isinstance(value, list) and bool(value) and all(_is_path(v) for v in value)
    if kind == "steps":
        return _is_int(value) and 1 <= value <= MAX_K
    if kind == "id":
        return _is_int(value) or _is_text(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return _is_int(value) and abs(value) <= MAX_TILE_ID
    if kind == "bits":
        return _is_int(value) and 8 <= value <= 1024 and value % 8 == 0
    if kind == "k":
        return _is_int(value) and 1 <= value <= MAX_K
    if kind == "count":
        return _is_int(value) and 0 <= value <= MAX_K
    if kind == "offset":
        return _is_int(value) and 0 <= value <= MAX_OFFSET
    if kind == "tile_id":
        return _is_int(value) and 0 <= value <= MAX_TILE_ID
    if kind == "tile_ids":
        return isinstance(value, list) and all(check_value("tile_id", v) for v in value)
    if kind == "finite":
        return _is_finite(value)
    if kind == "bbox":
        return (
            isinstance(value, list)
            and len(value) == 4
            and all(_is_finite(v) for v in value)
            and value[0] <= value[2]
            and value[1] <= value[3]
        )
    if kind == "weights":
        return isinstance(value, dict) and all(
            k in DEFAULT_WEIGHTS and _is_finite(v) for k, v in value.items()
        )
    if kind == "str_list":
        return isinstance(value, list) and bool(value) and all(_is_text(v) for v in value)
    if kind == "int_list":
        return isinstance(value, list) and all(check_value("int", v) for v in value)
    raise AssertionError(f"unknown schema kind {kind}")


def shown(value: Any) -> str:
    """``repr(value)`` cut to a length an error message may quote (never the whole request)."""
    if _is_int(value) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value) if not isinstance(value, str) or not _is_text(value) else value
    return _cut(text)


def _cut(text: str) -> str:
    return text[: _SHOWN_CHARS - 3] + "..." if len(text) > _SHOWN_CHARS else text


def bad_value_message(op: str, name: str, kind: str, value: Any) -> str:
    if kind == "k" and _is_int(value) and value < 1:
        return f"k must be at least 1, got {shown(value)}"  # the CLI's words for the mistake
    """The message naming a field whose value is not of its kind."""
    return f"op '{op}': param '{name}' must be {_KIND_TEXT[kind]}, got {_cut(repr(value))}"


