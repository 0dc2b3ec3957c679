"""The worker protocol, written once: requests, responses, events, results and error codes.

One JSON object per line (``docs/protocol.md``). A client sends a :class:`Request`; the worker
answers each with exactly one :class:`Response` and, for long operations, zero or more
:class:`Event` lines before it. Results are typed values (:class:`Hit`, :class:`SearchResult`,
:class:`CaptionResult`, :class:`IndexSummary`, ...) with ``to_json()`` / ``from_json()``.

This module is the contract that both sides import: the runtime (worker, CLI ``--json``) and the
QGIS plugin, which loads it inside QGIS's own Python as ``cach_for_qgis.model_runtime.protocol``.
So it uses the standard library only, imports its one sibling (``errors``) relatively, and has
no side effects on import. A test holds all three.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import CachError, ProtocolError, missing_extra

PROTOCOL_VERSION = 2

# --- defaults, defined once ----------------------------------------------------------------------
DEFAULT_BACKBONE = "effnetlite0-minilm"
DEFAULT_BITS = 64
DEFAULT_METHOD = "cach"
DEFAULT_K = 20
DEFAULT_CAPTIONS = 5
DEFAULT_SIMILAR = 5
MAX_K = 10_000
#: default weights of a combined query (each part is L2-normalised before weighting)
DEFAULT_WEIGHTS = {"text": 1.0, "image": 1.0, "tile": 1.0, "positive": 1.0, "negative": 0.5}
#: an index run that would encode more new tiles than this waits for an explicit confirmation
CONFIRM_ABOVE_TILES = 100_000
#: largest tile id a request may name (SQLite's signed 64-bit integer)
MAX_TILE_ID = 2**63 - 1
#: longest request line the worker reads, in bytes (newline excluded): a longer line is answered
#: ``bad_json`` without being kept or echoed (docs/protocol.md, "Limits")
MAX_REQUEST_BYTES = 1 << 20
#: longest value an error message quotes from a request
_SHOWN_CHARS = 80

#: ops answered at once, even while a long request runs
IMMEDIATE_OPS = frozenset({"status", "cancel", "shutdown"})
#: ops run one at a time, away from the line reader
LONG_OPS = frozenset({"search", "caption", "locate", "index", "load", "adapt"})
OPS = IMMEDIATE_OPS | LONG_OPS

RequestId = str | int | None

# --- errors --------------------------------------------------------------------------------------
#: every ``error.type`` a response may carry; ``runtime`` is the client's own (no worker)
ERROR_TYPES = (
    "protocol",
    "data",
    "config",
    "model_mismatch",
    "index",
    "cancelled",
    "disk_full",
    "confirm",
    "internal",
    "runtime",
)

#: every ``error.code``: code -> (type, what it means). Clients word errors from the code.
ERROR_CODES: dict[str, tuple[str, str]] = {
    # protocol: the request itself is malformed
    "bad_json": ("protocol", "the line is not a JSON object"),
    "bad_request": ("protocol", "id, op or params are missing or of the wrong kind"),
    "unknown_op": ("protocol", "the op is not one the worker knows"),
    "bad_param": ("protocol", "a parameter is missing, unknown, of the wrong type or out of range"),
    "duplicate_id": ("protocol", "a request with this id is already in flight"),
    # data: an input is missing or unreadable
    "data_unreadable": ("data", "an input file cannot be read"),
    "file_not_found": ("data", "a file or folder does not exist"),
    "not_a_raster": ("data", "a file is not a raster GDAL can read"),
    "source_refused": ("data", "a raster refers to a network or outside source (refused)"),
    "source_gone": ("data", "the raster a tile came from is gone"),
    "tile_not_found": ("data", "no tile with this id in the index"),
    "bad_coordinates": ("data", "a point or box is outside what its CRS can express"),
    "heads_unreadable": ("data", "a hash-heads file is missing or not a heads file"),
    "image_unreadable": ("data", "a query image cannot be read"),
    "no_tiles": ("data", "nothing in the given folders could be indexed"),
    "remote_denied": ("data", "object storage refused the credentials (or they are missing)"),
    "remote_unreachable": ("data", "the object-storage endpoint cannot be reached"),
    # config: an option is wrong
    "bad_value": ("config", "an option has an invalid value"),
    "unknown_crs": ("config", "a CRS is not known"),
    "unknown_backbone": ("config", "no backbone config of this name"),
    "no_heads": ("config", "no shipped heads for this backbone and bit length"),
    "backend_unavailable": ("config", "the inference backend or device is not available"),
    "extra_missing": ("config", "an optional part is not installed (torch in the lean runtime, "
                      "openvino, boto3 for s3://, ray, a weights package)"),
    "cluster_unreachable": ("config", "the Ray cluster at --ray-address cannot be reached"),
    # model_mismatch: an index or heads file belongs to another model
    "model_mismatch": ("model_mismatch", "the index or heads were made for another model"),
    # index: an index is missing or not usable now
    "index_missing": ("index", "no index in this folder"),
    "index_empty": ("index", "the index holds no model yet (nothing was indexed)"),
    "index_incomplete": ("index", "an indexing run was interrupted; run it again to finish"),
    "index_corrupt": ("index", "the index database is damaged"),
    "index_newer": ("index", "the index was written by a newer version"),
    "index_locked": ("index", "another indexing run is writing this index"),
    "index_readonly": ("index", "the index is read-only: it can be searched, not changed"),
    "index_needs_rebuild": ("index", "the index lacks what this op needs; re-index with rebuild"),
    # refined searches kept as files (saved_search.py)
    "saved_search_invalid": ("data", "a saved search file is damaged or not one"),
    "saved_search_mismatch": ("model_mismatch", "a saved search was made with another backbone "
                              "or heads whose feature projection this index does not share"),
    # the rest
    "cancelled": ("cancelled", "the user cancelled"),
    "disk_full": ("disk_full", "the disk is full; nothing half-written was kept"),
    "confirm_large_run": ("confirm", "the run is large; send it again with confirm"),
    "confirm_retile": ("confirm", "another tiling re-tiles every folder of the index; send it "
                       "again with confirm, or leave the tiling options out"),
    "internal": ("internal", "a bug: the message names the exception"),
    "worker_unavailable": ("runtime", "the runtime process is not running or stopped"),
}


def error_type_of(code: str) -> str:
    """The ``error.type`` of a code (``internal`` for an unknown one)."""
    return ERROR_CODES.get(code, ("internal", ""))[0]


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
            f"unknown op '{_shown(op)}'; known ops: {', '.join(sorted(OPS))}", request_id,
            "unknown_op",
        )
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError("request 'params' must be a JSON object", request_id)
    validate_params(op, params, request_id)
    return Request(request_id, op, params)


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


# --- typed values --------------------------------------------------------------------------------
def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class ModelInfo:
    """The model that made (or searches) codes: what an index records and results carry.

    ``heads_sha`` is the SHA-256 of the heads file; ``backend``/``precision``/``device`` say how
    it runs now (not recorded in an index: every backend gives the same codes)."""

    backbone: str
    bits: int
    heads_sha: str
    method: str = DEFAULT_METHOD
    heads: str = ""
    backend: str | None = None
    precision: str | None = None
    device: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_json(cls, obj: dict[str, Any] | None) -> ModelInfo | None:
        if not obj or obj.get("backbone") is None or obj.get("bits") is None:
            return None
        return cls(
            backbone=str(obj["backbone"]),
            bits=int(obj["bits"]),
            heads_sha=str(obj.get("heads_sha") or ""),
            method=str(obj.get("method") or DEFAULT_METHOD),
            heads=str(obj.get("heads") or ""),
            backend=obj.get("backend"),
            precision=obj.get("precision"),
            device=obj.get("device"),
        )

    @property
    def identity(self) -> dict[str, Any]:
        """The part that must match between an index and the model searching it."""
        return {"backbone": self.backbone, "bits": self.bits, "heads_sha": self.heads_sha}


@dataclass(frozen=True)
class Hit:
    """One result tile; fields map one-to-one onto the footprint layer's attributes.

    ``window`` = (col_off, row_off, width, height) in source pixels. ``footprint`` is a GeoJSON
    polygon in EPSG:4326, None when the source has no CRS (``georeferenced`` is then False and
    the tile must never be drawn on a map). ``footprint_src`` is in the source CRS, in pixel
    coordinates (col, row) when there is none. ``score`` in [0, 1] ranks; ``confidence`` in
    [0, 1] is the calibrated probability that the tile shows what was asked for (docs/search.md),
    None where no calibration applies (tile-to-tile queries, locate)."""

    rank: int
    tile_id: int
    source: str
    window: tuple[int, int, int, int]
    crs: str | None
    footprint: dict[str, Any] | None
    footprint_src: dict[str, Any] | None
    hamming: int | None
    score: float
    confidence: float | None = None

    @property
    def georeferenced(self) -> bool:
        return self.footprint is not None

    @property
    def name(self) -> str:
        """Short label: file name and window offset."""
        base = self.source.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{base} [{self.window[0]},{self.window[1]}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "tile_id": self.tile_id,
            "source": self.source,
            "window": list(self.window),
            "crs": self.crs,
            "georeferenced": self.georeferenced,
            "footprint": self.footprint,
            "footprint_src": self.footprint_src,
            "hamming": self.hamming,
            "score": self.score,
            "confidence": self.confidence,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Hit:
        window = obj.get("window") or (0, 0, 0, 0)
        return cls(
            rank=int(obj.get("rank") or 0),
            tile_id=int(obj["tile_id"]),
            source=str(obj.get("source") or ""),
            window=tuple(int(v) for v in window),  # type: ignore[arg-type]
            crs=obj.get("crs"),
            footprint=obj.get("footprint"),
            footprint_src=obj.get("footprint_src"),
            hamming=_opt_int(obj.get("hamming")),
            score=float(obj.get("score") or 0.0),
            confidence=_opt_float(obj.get("confidence")),
        )


def _timing(timing: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 2) for k, v in timing.items()}


@dataclass(frozen=True)
class SearchResult:
    """Result of ``search`` (and ``cach search --json``).

    ``weak_match`` is True when even the best tiles are unlikely to show what was asked for
    (their calibrated confidence is low): the client should say so in plain words. None when the
    query kind has no calibration (tile and example queries)."""

    results: list[Hit]
    query: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    timing_ms: dict[str, float] = field(default_factory=dict)
    weak_match: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "model": self.model,
            "index": self.index,
            "weak_match": self.weak_match,
            "timing_ms": _timing(self.timing_ms),
            "results": [h.to_json() for h in self.results],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SearchResult:
        weak = obj.get("weak_match")
        return cls(
            results=[Hit.from_json(h) for h in obj.get("results") or []],
            query=dict(obj.get("query") or {}),
            model=dict(obj.get("model") or {}),
            index=dict(obj.get("index") or {}),
            timing_ms=dict(obj.get("timing_ms") or {}),
            weak_match=None if weak is None else bool(weak),
        )


@dataclass(frozen=True)
class Caption:
    """One caption of the bank that describes a tile or image."""

    rank: int
    text: str
    hamming: int | None
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "text": self.text, "hamming": self.hamming, "score": self.score}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Caption:
        return cls(
            int(obj.get("rank") or 0),
            str(obj.get("text") or ""),
            _opt_int(obj.get("hamming")),
            float(obj.get("score") or 0.0),
        )


@dataclass(frozen=True)
class CaptionResult:
    """Result of ``caption``: bank captions nearest the tile or image, and similar tiles."""

    captions: list[Caption]
    similar: list[Hit] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    timing_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "captions": [c.to_json() for c in self.captions],
            "similar": [h.to_json() for h in self.similar],
            "model": self.model,
            "index": self.index,
            "timing_ms": _timing(self.timing_ms),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> CaptionResult:
        return cls(
            [Caption.from_json(c) for c in obj.get("captions") or []],
            [Hit.from_json(h) for h in obj.get("similar") or []],
            dict(obj.get("model") or {}),
            dict(obj.get("index") or {}),
            dict(obj.get("timing_ms") or {}),
        )


@dataclass(frozen=True)
class Skipped:
    """A file an index run did not index, with why (``code`` from :data:`ERROR_CODES`)."""

    path: str
    reason: str
    code: str = "data_unreadable"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason, "code": self.code}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Skipped:
        return cls(str(obj.get("path") or ""), str(obj.get("reason") or ""),
                   str(obj.get("code") or "data_unreadable"))


@dataclass(frozen=True)
class IndexSummary:
    """What an ``index`` run did. ``tiles`` is the index's total after the run; ``pending_files``
    counts files a cancelled run did not reach; ``vrt_sources`` lists the files each VRT read."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: tuple[Skipped, ...] = ()
    tiles: int = 0
    encoded: int = 0
    seconds: float = 0.0
    pending_files: int = 0
    vrt_sources: dict[str, list[str]] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    #: folders (or prefixes) this run added to the index, and every one it holds after the run
    #: (docs/indexing.md, "What an index holds"); ``roots_removed`` by ``remove``
    roots_added: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()
    roots_removed: tuple[str, ...] = ()

    @property
    def indexed_nothing(self) -> bool:
        """True when the run leaves no tile to search (an empty folder, or every file skipped)."""
        return self.tiles == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": [s.to_json() for s in self.skipped],
            "tiles": self.tiles,
            "encoded": self.encoded,
            "seconds": round(self.seconds, 2),
            "pending_files": self.pending_files,
            "vrt_sources": self.vrt_sources,
            "timing_s": {k: round(float(v), 3) for k, v in self.timing.items()},
            "roots_added": list(self.roots_added),
            "roots": list(self.roots),
            "roots_removed": list(self.roots_removed),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> IndexSummary:
        return cls(
            added=int(obj.get("added") or 0),
            updated=int(obj.get("updated") or 0),
            removed=int(obj.get("removed") or 0),
            unchanged=int(obj.get("unchanged") or 0),
            skipped=tuple(Skipped.from_json(s) for s in obj.get("skipped") or []),
            tiles=int(obj.get("tiles") or 0),
            encoded=int(obj.get("encoded") or 0),
            seconds=float(obj.get("seconds") or 0.0),
            pending_files=int(obj.get("pending_files") or 0),
            vrt_sources=dict(obj.get("vrt_sources") or {}),
            timing=dict(obj.get("timing_s") or {}),
            roots_added=tuple(str(r) for r in obj.get("roots_added") or ()),
            roots=tuple(str(r) for r in obj.get("roots") or ()),
            roots_removed=tuple(str(r) for r in obj.get("roots_removed") or ()),
        )


@dataclass(frozen=True)
class Estimate:
    """A dry run: the work and disk an index run would take. ``new_tiles`` counts the tiles of
    files not yet indexed (what the run would encode), ``tiles`` those of every file given."""

    files: int
    tiles: int
    bytes: int
    seconds: float
    new_tiles: int | None = None
    skipped: tuple[Skipped, ...] = ()
    #: what the index holds before the run, per root: {"path", "files", "tiles"}; the roots
    #: the run would add; the tiles it would re-tile (another tiling asked for); the tiling the
    #: run would use (docs/indexing.md, "What an index holds")
    roots_held: tuple[dict, ...] = ()
    roots_added: tuple[str, ...] = ()
    retile_tiles: int = 0
    tiling: dict | None = None
    #: seconds of ``seconds`` spent before the first tile: loading the model (its graphs are
    #: built the first time) when the worker has not loaded it yet; its own step
    setup_seconds: float = 0.0

    @property
    def index_tiles(self) -> int:
        """Tiles the index holds before the run (0 for a new index)."""
        return sum(int(r.get("tiles") or 0) for r in self.roots_held)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "tiles": self.tiles,
            "new_tiles": self.tiles if self.new_tiles is None else self.new_tiles,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 1),
            "skipped": [s.to_json() for s in self.skipped],
            "roots_held": [dict(r) for r in self.roots_held],
            "roots_added": list(self.roots_added),
            "retile_tiles": self.retile_tiles,
            "tiling": self.tiling,
            "setup_seconds": round(self.setup_seconds, 1),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Estimate:
        return cls(
            files=int(obj.get("files") or 0),
            tiles=int(obj.get("tiles") or 0),
            bytes=int(obj.get("bytes") or 0),
            seconds=float(obj.get("seconds") or 0.0),
            new_tiles=_opt_int(obj.get("new_tiles")),
            skipped=tuple(Skipped.from_json(s) for s in obj.get("skipped") or []),
            roots_held=tuple(dict(r) for r in obj.get("roots_held") or () if isinstance(r, dict)),
            roots_added=tuple(str(r) for r in obj.get("roots_added") or ()),
            retile_tiles=int(obj.get("retile_tiles") or 0),
            tiling=obj.get("tiling") if isinstance(obj.get("tiling"), dict) else None,
            setup_seconds=float(obj.get("setup_seconds") or 0.0),
        )


@dataclass(frozen=True)
class Progress:
    """A ``progress`` event: ``done`` of ``total`` (None when unknown) in ``stage``."""

    done: int
    total: int | None
    stage: str = ""
    message: str = ""

    @property
    def percent(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(100.0, 100.0 * self.done / self.total))

    def to_json(self) -> dict[str, Any]:
        return {"done": self.done, "total": self.total, "stage": self.stage, "message": self.message}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Progress:
        return cls(
            int(obj.get("done") or 0),
            _opt_int(obj.get("total")),
            str(obj.get("stage") or ""),
            str(obj.get("message") or ""),
        )


@dataclass(frozen=True)
class ReadyInfo:
    """The worker's first line (``ready``): printed before any model code is imported."""

    version: str
    protocol: int
    device: str
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "protocol": self.protocol, "device": self.device,
                "pid": self.pid}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ReadyInfo:
        return cls(
            str(obj.get("version") or "?"),
            int(obj.get("protocol") or 0),
            str(obj.get("device") or "?"),
            _opt_int(obj.get("pid")),
        )


# --- the footprint layer, as the CLI's GeoPackage and the plugin's layers both write it ---------
#: (field name, type) of every hit feature, in order; type is one of int, real, text, bool.
#: ``georeferenced`` false rows have no geometry: ``note`` then says why.
FOOTPRINT_FIELDS: tuple[tuple[str, str], ...] = (
    ("rank", "int"),
    ("tile_id", "int"),
    ("source", "text"),
    ("col_off", "int"),
    ("row_off", "int"),
    ("width", "int"),
    ("height", "int"),
    ("crs", "text"),
    ("georeferenced", "bool"),
    ("hamming", "int"),
    ("score", "real"),
    ("confidence", "real"),
    ("footprint_src", "text"),
    ("query", "text"),
    ("model", "text"),
    ("index", "text"),
    ("note", "text"),
)
#: ``note`` of a hit without geometry
NOT_GEOREFERENCED_NOTE = "not georeferenced: the source image has no CRS, so it has no place on a map"


def display_text(text: str) -> str:
    """``text`` as valid Unicode: a file name that is not UTF-8 (its bytes held as surrogate
    escapes) shows its undecodable bytes as ``\\xNN``; layers and GeoPackages need UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def footprint_row(hit: Hit, query: str = "", model: str = "", index: str = "") -> dict[str, Any]:
    """The attribute values of one hit feature, keyed by :data:`FOOTPRINT_FIELDS` names."""
    col, row, width, height = hit.window
    return {
        "rank": hit.rank,
        "tile_id": hit.tile_id,
        "source": display_text(hit.source),
        "col_off": col,
        "row_off": row,
        "width": width,
        "height": height,
        "crs": hit.crs,
        "georeferenced": hit.georeferenced,
        "hamming": hit.hamming,
        "score": hit.score,
        "confidence": hit.confidence,
        "footprint_src": dumps(hit.footprint_src),
        "query": query,
        "model": model,
        "index": index,
        "note": "" if hit.georeferenced else NOT_GEOREFERENCED_NOTE,
    }
