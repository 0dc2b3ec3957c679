"""Product defaults and limits, defined once: what a request may omit, and what it may not exceed."""

from __future__ import annotations

PROTOCOL_VERSION = 2

# --- defaults, defined once ----------------------------------------------------------------------
DEFAULT_BACKBONE = "effnetlite0-minilm"
DEFAULT_BITS = 64
DEFAULT_METHOD = "cach"
DEFAULT_K = 20
DEFAULT_CAPTIONS = 5
DEFAULT_SIMILAR = 5
MAX_K = 10_000
#: deepest page a search may ask for: ``offset`` skips at most this many tiles
MAX_OFFSET = 1_000
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
