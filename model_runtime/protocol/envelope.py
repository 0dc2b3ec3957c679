"""The message envelope: Request, Response, Event and ErrorInfo, and line (de)serialisation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import CachError, ProtocolError, missing_extra
from .codes import ERROR_CODES, ERROR_TYPES, error_type_of
from .defaults import IMMEDIATE_OPS, MAX_REQUEST_BYTES, OPS, RequestId
from .kinds import _is_int, _is_text, shown
from .requests import OpRequest, decode_request


# --- messages ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """Client -> worker: ``{"id": 7, "op": "search", "params": {...}}``."""

    id: RequestId
    op: str
    params: dict[str, Any] = field(default_factory=dict)
    #: the typed request of ``op`` decoded from ``params`` (set by :func:`parse_request`)
    call: OpRequest | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, request_id: RequestId, call: OpRequest) -> Request:
        """The envelope of a typed request."""
        return cls(request_id, call.OP, call.to_params(), call)

    @property
    def immediate(self) -> bool:
        """True for ops answered at once (``status``, ``cancel``, ``shutdown``)."""
        return self.op in IMMEDIATE_OPS

    def to_json(self) -> str:
        return dumps({"id": self.id, "op": self.op, "params": self.params})

    @classmethod
    def from_json(cls, line: str | bytes) -> Request:
        """Parse and validate one request line; raise :class:`ProtocolError` when malformed."""
        return parse_request(line)


@dataclass(frozen=True)
class ErrorInfo:
    """``error`` of a failed response. ``type`` is one of :data:`ERROR_TYPES`, ``code`` a key of
    :data:`ERROR_CODES`; ``message`` is for people, ``details`` for programs."""

    type: str
    message: str
    code: str = "internal"
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_dict(cls, obj: dict[str, Any] | None) -> ErrorInfo:
        obj = obj if isinstance(obj, dict) else {}
        code = str(obj.get("code") or "")
        kind = str(obj.get("type") or error_type_of(code))
        if kind not in ERROR_TYPES:
            kind = "internal"
        if code not in ERROR_CODES:
            code = _fallback_code(kind)
        details = obj.get("details")
        return cls(
            kind,
            str(obj.get("message") or "unknown error"),
            code,
            dict(details) if isinstance(details, dict) else {},
        )

    @classmethod
    def from_exception(cls, err: BaseException) -> ErrorInfo:
        """A :class:`CachError` keeps its kind, code and details; anything else is ``internal``."""
        if isinstance(err, CachError):
            code = err.code if err.code in ERROR_CODES else _fallback_code(err.kind)
            kind = err.kind if err.kind in ERROR_TYPES else error_type_of(code)
            return cls(kind, str(err), code, _jsonable(err.details))
        extra = missing_extra(err)  # an optional package (torch in the lean runtime) is absent
        if extra is not None:
            return cls.from_exception(extra)
        return cls("internal", f"{type(err).__name__}: {err}", "internal")


def _fallback_code(kind: str) -> str:
    """The first code of a type: what an unregistered code of that type is reported as."""
    return next((code for code, (t, _) in ERROR_CODES.items() if t == kind), "internal")


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(dumps(details))
    except (TypeError, ValueError):
        return {}


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
    def failure(
        cls, request_id: RequestId, code: str, message: str, details: dict | None = None
    ) -> Response:
        """An error response; ``code`` is a key of :data:`ERROR_CODES` (its type follows)."""
        if code not in ERROR_CODES:
            code = "internal"
        return cls(request_id, False, error=ErrorInfo(error_type_of(code), message, code, details or {}))

    @classmethod
    def from_exception(cls, request_id: RequestId, err: BaseException) -> Response:
        return cls(request_id, False, error=ErrorInfo.from_exception(err))

    def to_dict(self) -> dict[str, Any]:
        if self.ok:
            return {"id": self.id, "ok": True, "result": self.result or {}}
        assert self.error is not None
        return {"id": self.id, "ok": False, "error": self.error.to_dict()}

    def to_json(self) -> str:
        return dumps(self.to_dict())


@dataclass(frozen=True)
class Event:
    """Worker -> client before the final response (``progress``), or unsolicited (``ready``,
    ``loaded``, ``load_failed``) with id null."""

    id: RequestId
    event: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "data": self.data}

    def to_json(self) -> str:
        return dumps(self.to_dict())


Message = Response | Event


def dumps(obj: Any) -> str:
    """One protocol line. NaN is not JSON (``allow_nan=False``); NumPy values, paths and objects
    with ``to_json``/``to_dict`` are converted."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_default)


def _default(obj: Any) -> Any:
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
    response can still be matched to its request. No message quotes more than a few dozen
    characters of the line.
    """
    if len(line) > MAX_REQUEST_BYTES:
        raise ProtocolError(line_too_long_message(len(line)), None, "bad_json")
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProtocolError(f"request is not UTF-8: byte {err.start} is invalid", None,
                                "bad_json") from None
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as err:
        where = f": {err.msg} at column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        raise ProtocolError(f"request is not JSON{where}", None, "bad_json") from None
    except ValueError:  # an integer longer than Python reads (sys.get_int_max_str_digits)
        raise ProtocolError("request is not JSON this worker reads: a number in it has too many "
                            "digits", None, "bad_json") from None
    if not isinstance(obj, dict):
        raise ProtocolError(
            f"request must be a JSON object, got {type(obj).__name__}", None, "bad_json"
        )
    request_id = obj.get("id")
    if not (request_id is None or _is_int(request_id) or _is_text(request_id)):
        raise ProtocolError("request 'id' must be a string or an integer")
    op = obj.get("op")
    if not _is_text(op) or not op:
        raise ProtocolError("request needs an 'op' string", request_id)
    if op not in OPS:
        raise ProtocolError(
            f"unknown op '{shown(op)}'; known ops: {', '.join(sorted(OPS))}", request_id,
            "unknown_op",
        )
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError("request 'params' must be a JSON object", request_id)
    return Request(request_id, op, params, decode_request(op, params, request_id))


def line_too_long_message(size: int | None = None) -> str:
    """The message of a request line over :data:`MAX_REQUEST_BYTES` (its text is not quoted)."""
    got = f" ({size:,} bytes)" if size is not None else ""
    return (f"request line too long{got}: the worker reads lines of at most "
            f"{MAX_REQUEST_BYTES:,} bytes; the line was discarded unread")


def parse_message(line: str | bytes) -> Message:
    """Parse one worker output line into a :class:`Response` or :class:`Event` (client side)."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ProtocolError(f"worker line is not JSON: {line[:200]!r} ({err})", None, "bad_json") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"worker line is not an object: {line[:200]!r}", None, "bad_json")
    if "event" in obj:
        data = obj.get("data")
        return Event(obj.get("id"), str(obj["event"]), dict(data) if isinstance(data, dict) else {})
    if "ok" not in obj:
        raise ProtocolError(f"worker line is neither a response nor an event: {line[:200]!r}")
    if obj["ok"]:
        result = obj.get("result")
        return Response(obj.get("id"), True, result=dict(result) if isinstance(result, dict) else {})
    return Response(obj.get("id"), False, error=ErrorInfo.from_dict(obj.get("error")))
