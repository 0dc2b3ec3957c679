"""The worker protocol, written once: requests, responses, events, results and error codes.

One JSON object per line (``docs/protocol.md``). A client sends a :class:`Request`; the worker
answers each with exactly one :class:`Response` and, for long operations, zero or more
:class:`Event` lines before it. Requests and results are typed values (:class:`SearchRequest`,
...; :class:`Hit`, :class:`SearchResult`, :class:`IndexSummary`, ...) read and written by one
field-driven codec.

This package is the contract that both sides import: the runtime (worker, CLI ``--json``) and the
QGIS plugin, which loads it inside QGIS's own Python as ``cach_for_qgis.model_runtime.protocol``.
So it uses the standard library only, imports its one sibling (``errors``) relatively, and has
no side effects on import. A test holds all three.

Modules by job: ``defaults`` (product defaults and limits), ``codes`` (error codes and types),
``codec`` (dataclasses to JSON and back), ``kinds`` (the kinds of request value and their
checks), ``requests`` (one typed request per op), ``envelope`` (Request, Response, Event, ErrorInfo
and the line codec), ``results`` (typed results), ``footprints`` (the footprint layer schema).
This ``__init__`` re-exports every name, so ``from model_runtime.protocol import X`` keeps working.
"""

from __future__ import annotations

from ..errors import CachError, ProtocolError, missing_extra  # noqa: F401  (importers use them)
from .codes import (  # noqa: F401
    ERROR_CODES,
    ERROR_TYPES,
    error_type_of,
)
from .defaults import (  # noqa: F401
    _SHOWN_CHARS,
    CONFIRM_ABOVE_TILES,
    DEFAULT_BACKBONE,
    DEFAULT_BITS,
    DEFAULT_CAPTIONS,
    DEFAULT_K,
    DEFAULT_METHOD,
    DEFAULT_SIMILAR,
    DEFAULT_WEIGHTS,
    IMMEDIATE_OPS,
    LONG_OPS,
    MAX_K,
    MAX_OFFSET,
    MAX_REQUEST_BYTES,
    MAX_TILE_ID,
    OPS,
    PROTOCOL_VERSION,
    RequestId,
)
from .envelope import (  # noqa: F401
    ErrorInfo,
    Event,
    Message,
    Request,
    Response,
    _default,
    _fallback_code,
    _jsonable,
    dumps,
    line_too_long_message,
    parse_message,
    parse_request,
)
from .footprints import (  # noqa: F401
    FOOTPRINT_FIELDS,
    NOT_GEOREFERENCED_NOTE,
    display_text,
    footprint_row,
)
from .kinds import (  # noqa: F401
    _KIND_TEXT,
    _is_finite,
    _is_int,
    _is_path,
    _is_text,
    bad_value_message,
    check_value,
    shown,
)
from .requests import (  # noqa: F401
    REQUESTS,
    TILING_FIELDS,
    AdaptRequest,
    CancelRequest,
    CaptionRequest,
    IndexRequest,
    LoadRequest,
    LocateRequest,
    OpRequest,
    SearchRequest,
    ShutdownRequest,
    StatusRequest,
    decode_request,
    validate_params,
)
from .results import (  # noqa: F401
    Caption,
    CaptionResult,
    Estimate,
    Hit,
    IndexSummary,
    ModelInfo,
    Progress,
    ReadyInfo,
    SearchResult,
    Skipped,
)

__all__ = [  # the public names; private ones stay importable for existing callers
    "PROTOCOL_VERSION",
    "DEFAULT_BACKBONE",
    "DEFAULT_BITS",
    "DEFAULT_METHOD",
    "DEFAULT_K",
    "DEFAULT_CAPTIONS",
    "DEFAULT_SIMILAR",
    "MAX_K",
    "MAX_OFFSET",
    "DEFAULT_WEIGHTS",
    "CONFIRM_ABOVE_TILES",
    "MAX_TILE_ID",
    "MAX_REQUEST_BYTES",
    "IMMEDIATE_OPS",
    "LONG_OPS",
    "OPS",
    "RequestId",
    "ERROR_TYPES",
    "ERROR_CODES",
    "error_type_of",
    "validate_params",
    "decode_request",
    "OpRequest",
    "SearchRequest",
    "CaptionRequest",
    "LocateRequest",
    "IndexRequest",
    "AdaptRequest",
    "LoadRequest",
    "CancelRequest",
    "StatusRequest",
    "ShutdownRequest",
    "REQUESTS",
    "TILING_FIELDS",
    "Request",
    "ErrorInfo",
    "Response",
    "Event",
    "Message",
    "dumps",
    "parse_request",
    "line_too_long_message",
    "parse_message",
    "ModelInfo",
    "Hit",
    "SearchResult",
    "Caption",
    "CaptionResult",
    "Skipped",
    "IndexSummary",
    "Estimate",
    "Progress",
    "ReadyInfo",
    "FOOTPRINT_FIELDS",
    "NOT_GEOREFERENCED_NOTE",
    "display_text",
    "footprint_row",
]
