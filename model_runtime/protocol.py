"""Typed messages of the JSON-lines worker protocol (see ``docs/protocol.md``).

One JSON object per line. A client sends :class:`Request`; the worker answers each with exactly one
:class:`Response` and, for long operations, zero or more :class:`Event` lines before it. Parsing and
validation live here so the worker, the tests and any Python client share one definition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from model_runtime.errors import CachError

PROTOCOL_VERSION = 1

#: ops answered at once, even while a long request runs
IMMEDIATE_OPS = frozenset({"status", "cancel", "shutdown"})
#: ops run one at a time in the worker's background thread
LONG_OPS = frozenset({"search", "caption", "locate", "index", "load"})
OPS = IMMEDIATE_OPS | LONG_OPS

RequestId = str | int | None

#: every error.type a response may carry
ERROR_TYPES = (
    "protocol",
    "data",
    "config",
    "model_mismatch",
    "index",
    "cancelled",
    "disk_full",
    "internal",
)


class ProtocolError(CachError):
    """A request line is malformed: not JSON, not an object, unknown op or bad params."""

    kind = "protocol"

    def __init__(self, message: str, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.request_id = request_id


# --- parameter schemas ---------------------------------------------------------------------------
# name -> (accepted python types, required). bool is checked before int (bool is an int subclass).
_STR = (str,)
_INT = (int,)
_NUM = (int, float)
_BOOL = (bool,)
_LIST = (list,)
_NUM_LIST = ("num_list",)

_SCHEMAS: dict[str, dict[str, tuple[tuple, bool]]] = {
    "status": {},
    "shutdown": {},
    "cancel": {"target": ((str, int), True)},
    "load": {"bits": (_INT, False), "backbone": (_STR, False), "heads": (_STR, False)},
    "search": {
        "index": (_STR, True),
        "text": (_STR, False),
        "tile": (_INT, False),
        "image": (_STR, False),
        "positive": (_LIST, False),
        "negative": (_LIST, False),
        "weights": ((dict,), False),
        "k": (_INT, False),
        "bbox": (_NUM_LIST, False),
        "bbox_crs": (_STR, False),
        "collapse": (_BOOL, False),
    },
    "caption": {
        "index": (_STR, False),
        "tile": (_INT, False),
        "image": (_STR, False),
        "k": (_INT, False),
        "similar": (_INT, False),
    },
    "locate": {
        "index": (_STR, True),
        "x": (_NUM, True),
        "y": (_NUM, True),
        "crs": (_STR, False),
    },
    "index": {
        "index": (_STR, True),
        "paths": (_LIST, True),
        "tile_size": (_INT, False),
        "tile_metres": (_NUM, False),
        "overlap": (_NUM, False),
        "scales": (_LIST, False),
        "bands": (_LIST, False),
        "dry_run": (_BOOL, False),
        "rebuild": (_BOOL, False),
        "bits": (_INT, False),
    },
}


def _type_ok(value: Any, types: tuple) -> bool:
    if value is None:
        return True  # optional params may be given as null
    if types == _NUM_LIST:
        return (
            isinstance(value, list)
            and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _type_name(types: tuple) -> str:
    if types == _NUM_LIST:
        return "a list of 4 numbers"
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true/false",
        list: "a list",
        dict: "an object",
    }
    return " or ".join(names.get(t, t.__name__) for t in types)


def validate_params(op: str, params: dict[str, Any], request_id: RequestId = None) -> None:
    """Check ``params`` against the op's schema; raise :class:`ProtocolError` naming the field."""
    schema = _SCHEMAS[op]
    for name, (types, required) in schema.items():
        if required and params.get(name) is None:
            raise ProtocolError(f"op '{op}' needs param '{name}'", request_id)
        if name in params and not _type_ok(params[name], types):
            raise ProtocolError(
                f"op '{op}': param '{name}' must be {_type_name(types)}, got {params[name]!r}",
                request_id,
            )
    unknown = sorted(set(params) - set(schema))
    if unknown:
        raise ProtocolError(f"op '{op}': unknown param(s) {', '.join(unknown)}", request_id)
    if op == "search":
        given = [q for q in ("text", "tile", "image") if params.get(q) is not None]
        if not given and not params.get("positive"):
            raise ProtocolError(
                "op 'search' needs a query: 'text', 'tile', 'image' or 'positive'", request_id
            )
    if op == "caption" and params.get("tile") is None and params.get("image") is None:
        raise ProtocolError("op 'caption' needs 'tile' (with 'index') or 'image'", request_id)
    if op == "caption" and params.get("tile") is not None and not params.get("index"):
        raise ProtocolError("op 'caption' with 'tile' needs 'index'", request_id)


# --- messages ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """Client -> worker: ``{"id": 7, "op": "search", "params": {...}}``."""

    id: RequestId
    op: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def immediate(self) -> bool:
        """True for ops answered at once (``status``, ``cancel``, ``shutdown``)."""
        return self.op in IMMEDIATE_OPS

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "op": self.op, "params": self.params})

    @classmethod
    def from_json(cls, line: str | bytes) -> Request:
        """Parse and validate one request line; raise :class:`ProtocolError` when malformed."""
        return parse_request(line)


@dataclass(frozen=True)
class ErrorInfo:
    """``error`` of a failed response: ``type`` is one of :data:`ERROR_TYPES`."""

    type: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


@dataclass(frozen=True)
class Response:
    """Worker -> client, exactly one per request: a ``result`` or an ``error``."""

    id: RequestId
    ok: bool
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None

    @classmethod
    def success(cls, request_id: RequestId, result: dict[str, Any]) -> Response:
        return cls(request_id, True, result=result)

    @classmethod
    def failure(cls, request_id: RequestId, kind: str, message: str) -> Response:
        if kind not in ERROR_TYPES:
            kind = "internal"
        return cls(request_id, False, error=ErrorInfo(kind, message))

    @classmethod
    def from_exception(cls, request_id: RequestId, err: BaseException) -> Response:
        """Map a :class:`CachError` onto its ``kind``; anything else is ``internal``."""
        if isinstance(err, CachError):
            return cls.failure(request_id, err.kind, str(err))
        return cls.failure(request_id, "internal", f"{type(err).__name__}: {err}")

    def to_dict(self) -> dict[str, Any]:
        if self.ok:
            return {"id": self.id, "ok": True, "result": self.result or {}}
        assert self.error is not None
        return {"id": self.id, "ok": False, "error": self.error.to_dict()}

    def to_json(self) -> str:
        return _dumps(self.to_dict())


@dataclass(frozen=True)
class Event:
    """Worker -> client before the final response: ``progress`` of a request, or ``ready``."""

    id: RequestId
    event: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "data": self.data}

    def to_json(self) -> str:
        return _dumps(self.to_dict())


Message = Response | Event


def _dumps(obj: dict[str, Any]) -> str:
    # allow_nan=False: NaN is not JSON; a client in another language would choke on it.
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_default)


def _default(obj: Any) -> Any:
    """Serialise NumPy scalars/arrays, paths and objects with ``to_json``/``to_dict``."""
    for attr in ("to_json", "to_dict"):
        method = getattr(obj, attr, None)
        if callable(method):
            value = method()
            return json.loads(value) if isinstance(value, str) else value
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def parse_request(line: str | bytes) -> Request:
    """Parse one line into a validated :class:`Request`.

    Raises :class:`ProtocolError` carrying the request id when one could be read, so the error
    response can still be matched to its request.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProtocolError(f"request is not UTF-8: {err}") from None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise ProtocolError(f"request is not JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"request must be a JSON object, got {type(obj).__name__}")
    request_id = obj.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, (str, int, type(None))):
        raise ProtocolError("request 'id' must be a string or an integer")
    op = obj.get("op")
    if not isinstance(op, str) or not op:
        raise ProtocolError("request needs an 'op' string", request_id)
    if op not in OPS:
        raise ProtocolError(f"unknown op '{op}'; known ops: {', '.join(sorted(OPS))}", request_id)
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError("request 'params' must be a JSON object", request_id)
    validate_params(op, params, request_id)
    return Request(request_id, op, params)


def parse_message(line: str | bytes) -> Message:
    """Parse one worker output line into a :class:`Response` or :class:`Event` (client side)."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ProtocolError(f"worker line is not an object: {line!r}")
    if "event" in obj:
        return Event(obj.get("id"), str(obj["event"]), dict(obj.get("data") or {}))
    if "ok" not in obj:
        raise ProtocolError(f"worker line is neither a response nor an event: {line!r}")
    if obj["ok"]:
        return Response(obj.get("id"), True, result=dict(obj.get("result") or {}))
    err = obj.get("error") or {}
    return Response(
        obj.get("id"), False, error=ErrorInfo(str(err.get("type")), str(err.get("message")))
    )
