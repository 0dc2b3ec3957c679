"""Request schemas and parameter validation (``validate_params``)."""

from __future__ import annotations

import math
from typing import Any

from ..errors import ProtocolError
from .defaults import _SHOWN_CHARS, DEFAULT_WEIGHTS, MAX_K, MAX_TILE_ID, RequestId

# --- parameter validation ------------------------------------------------------------------------
# A schema entry: (kind, required). Kinds are checked by _check_value below.
_SCHEMAS: dict[str, dict[str, tuple[str, bool]]] = {
    "status": {},
    "shutdown": {},
    "cancel": {"target": ("id", True)},
    "load": {"bits": ("bits", False), "backbone": ("str", False), "heads": ("path", False)},
    "search": {
        "index": ("path", True),
        "text": ("str", False),
        "tile": ("tile_id", False),
        "image": ("path", False),
        "positive": ("tile_ids", False),
        "negative": ("tile_ids", False),
        "weights": ("weights", False),
        "k": ("k", False),
        "bbox": ("bbox", False),
        "bbox_crs": ("str", False),
        "collapse": ("bool", False),
        # marked tiles fit a model (docs/search.md "Refining with marks"); false: weighted sum
        "learn": ("bool", False),
        "save": ("path", False),  # keep the refined search in this file
        "saved": ("path", False),  # run a saved refined search (no other query parts)
    },
    "caption": {
        "index": ("path", False),
        "tile": ("tile_id", False),
        "image": ("path", False),
        "k": ("k", False),
        "similar": ("count", False),
    },
    "locate": {
        "index": ("path", True),
        "x": ("finite", True),
        "y": ("finite", True),
        "crs": ("str", False),
    },
    "index": {
        "index": ("path", True),
        "paths": ("path_list", False),  # required unless "remove" (validate_params)
        "tile_size": ("int", False),
        "tile_metres": ("finite", False),
        "overlap": ("finite", False),
        "scales": ("int_list", False),
        "bands": ("int_list", False),
        "dry_run": ("bool", False),
        "rebuild": ("bool", False),
        "bits": ("bits", False),
        "confirm": ("bool", False),
        "allow_outside_sources": ("bool", False),
        "remove": ("str_list", False),
    },
    "adapt": {"index": ("path", True), "steps": ("steps", False)},
}

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


def _check_value(kind: str, value: Any) -> bool:
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
    if kind == "tile_id":
        return _is_int(value) and 0 <= value <= MAX_TILE_ID
    if kind == "tile_ids":
        return isinstance(value, list) and all(_check_value("tile_id", v) for v in value)
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
        return isinstance(value, list) and all(_check_value("int", v) for v in value)
    raise AssertionError(f"unknown schema kind {kind}")


def _shown(value: Any) -> str:
    """``repr(value)`` cut to a length an error message may quote (never the whole request)."""
    if _is_int(value) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"
    shown = repr(value) if not isinstance(value, str) or not _is_text(value) else value
    if len(shown) > _SHOWN_CHARS:
        shown = shown[: _SHOWN_CHARS - 3] + "..."
    return shown


def _bad_value_message(op: str, name: str, kind: str, value: Any) -> str:
    if kind == "k" and _is_int(value) and value < 1:
        return f"k must be at least 1, got {_shown(value)}"  # the CLI's words for the mistake
    shown = repr(value)
    if len(shown) > _SHOWN_CHARS:
        shown = shown[: _SHOWN_CHARS - 3] + "..."
    return f"op '{op}': param '{name}' must be {_KIND_TEXT[kind]}, got {shown}"


def validate_params(op: str, params: dict[str, Any], request_id: RequestId = None) -> None:
    """Check ``params`` against the op's schema; raise :class:`ProtocolError` naming the field."""
    schema = _SCHEMAS[op]
    unknown = sorted(set(params) - set(schema))
    if unknown:
        shown = ", ".join(_shown(name) for name in unknown[:5])
        raise ProtocolError(f"op '{op}': unknown param(s) {shown}", request_id, "bad_param")
    for name, (kind, required) in schema.items():
        value = params.get(name)
        if value is None:
            if required:
                raise ProtocolError(f"op '{op}' needs param '{name}'", request_id, "bad_param")
            continue
        if not _check_value(kind, value):
            raise ProtocolError(_bad_value_message(op, name, kind, value), request_id, "bad_param")
    if op == "search":
        given = [q for q in ("text", "tile", "image") if params.get(q) is not None]
        if not given and not params.get("positive") and params.get("saved") is None:
            raise ProtocolError(
                "op 'search' needs a query: 'text', 'tile', 'image', 'positive' or 'saved'",
                request_id,
                "bad_param",
            )
    if op == "index" and not params.get("paths") and not params.get("remove"):
        raise ProtocolError("op 'index' needs 'paths' (files or folders to index) or 'remove'",
                            request_id, "bad_param")
    if op == "caption" and params.get("tile") is None and params.get("image") is None:
        raise ProtocolError(
            "op 'caption' needs 'tile' (with 'index') or 'image'", request_id, "bad_param"
        )
    if op == "caption" and params.get("tile") is not None and not params.get("index"):
        raise ProtocolError("op 'caption' with 'tile' needs 'index'", request_id, "bad_param")
