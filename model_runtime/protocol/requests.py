"""Typed requests: one frozen dataclass per op, validated from its fields' metadata.

A client builds a :class:`SearchRequest` (or another op's request) and sends ``to_params()``;
the worker reads a line's params back with :func:`decode_request`, which checks every field
against its ``kind`` (``kinds.py``) and the request's own rules (``check``), and hands the typed
request to the pipeline. The CLI, the dock, the dialogs and Processing build the same objects,
so a parameter is declared once, here, with its default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import ProtocolError
from .codec import decode, encode
from .defaults import DEFAULT_CAPTIONS, DEFAULT_K, DEFAULT_SIMILAR, RequestId
from .kinds import bad_value_message, check_value, shown


def param(kind: str, default: Any = None, *, required: bool = False) -> Any:
    """A request field holding a value of ``kind``; ``required`` fields have no default."""
    meta = {"kind": kind, "required": required}
    if required:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class OpRequest:
    """What every typed request shares: its op, its wire form and its validation."""

    OP: ClassVar[str] = ""

    def to_params(self) -> dict[str, Any]:
        """The ``params`` object of a request line: fields left at their default are omitted."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        wire = encode(self)
        return {k: v for k, v in wire.items()
                if v is not None and not _same(v, defaults.get(k, dataclasses.MISSING))}

    @classmethod
    def from_params(cls, params: dict[str, Any], request_id: RequestId = None) -> Any:
        """The request of untrusted ``params``; :class:`ProtocolError` (``bad_param``) names the
        first field that is unknown, missing or of the wrong kind."""
        _check_fields(cls, params, request_id)
        request = decode(cls, params)
        request.check(request_id)
        return request

    def check(self, request_id: RequestId = None) -> None:
        """Rules across fields (one query part at least, ...); none by default."""

    def _refuse(self, message: str, request_id: RequestId) -> None:
        raise ProtocolError(f"op '{self.OP}' {message}", request_id, "bad_param")


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        return list(value) == list(default) if isinstance(value, list) else value == default
    return value == default


def _check_fields(cls: type[OpRequest], params: dict[str, Any], request_id: RequestId) -> None:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(known))
    if unknown:
        names = ", ".join(shown(name) for name in unknown[:5])
        raise ProtocolError(f"op '{cls.OP}': unknown param(s) {names}", request_id, "bad_param")
    for name, f in known.items():
        value = params.get(name)
        if value is None:
            if f.metadata["required"]:
                raise ProtocolError(f"op '{cls.OP}' needs param '{name}'", request_id,
                                    "bad_param")
            continue
        if not check_value(f.metadata["kind"], value):
            raise ProtocolError(bad_value_message(cls.OP, name, f.metadata["kind"], value),
                                request_id, "bad_param")


@dataclass(frozen=True)
class SearchRequest(OpRequest):
    """Top-k tiles of an index for a typed text, an image file, a tile and/or marked tiles
    (combined); ``saved`` runs a refined search kept by ``save`` (docs/search.md)."""

    OP: ClassVar[str] = "search"
    index: str = param("path", required=True)
    text: str | None = param("str")
    tile: int | None = param("tile_id")
    image: str | None = param("path")
    positive: tuple[int, ...] = param("tile_ids", ())
    negative: tuple[int, ...] = param("tile_ids", ())
    weights: dict[str, float] | None = param("weights")
    k: int = param("k", DEFAULT_K)
    offset: int = param("offset", 0)  # skip this many of the best tiles: the next page
    bbox: tuple[float, float, float, float] | None = param("bbox")
    bbox_crs: str = param("str", "EPSG:4326")
    collapse: bool = param("bool", True)
    #: marked tiles fit a model (docs/search.md "Refining with marks"); False: weighted sum
    learn: bool = param("bool", True)
    save: str | None = param("path")  # keep the refined search in this file
    saved: str | None = param("path")  # run a saved refined search (no other query parts)

    @property
    def marked(self) -> bool:
        return bool(self.positive or self.negative)

    @property
    def typed(self) -> bool:
        """True when the query has a text, an image or a tile part."""
        return bool(self.text) or bool(self.image) or self.tile is not None

    @property
    def excluded(self) -> list[int]:
        """Tiles left out of the results: the query tile and the marked ones."""
        return [*([self.tile] if self.tile is not None else []), *self.positive, *self.negative]

    def check(self, request_id: RequestId = None) -> None:
        if not (self.typed or self.positive or self.saved is not None):
            self._refuse("needs a query: 'text', 'tile', 'image', 'positive' or 'saved'",
                         request_id)


@dataclass(frozen=True)
class CaptionRequest(OpRequest):
    """Bank captions of a tile (of ``index``) or of an image file, and similar tiles."""

    OP: ClassVar[str] = "caption"
    index: str | None = param("path")
    tile: int | None = param("tile_id")
    image: str | None = param("path")
    k: int = param("k", DEFAULT_CAPTIONS)
    similar: int = param("count", DEFAULT_SIMILAR)

    def check(self, request_id: RequestId = None) -> None:
        if self.tile is None and self.image is None:
            self._refuse("needs 'tile' (with 'index') or 'image'", request_id)
        if self.tile is not None and not self.index:
            self._refuse("with 'tile' needs 'index'", request_id)


@dataclass(frozen=True)
class LocateRequest(OpRequest):
    """The indexed tile under a map point ``x``, ``y`` in ``crs``."""

    OP: ClassVar[str] = "locate"
    index: str = param("path", required=True)
    x: float = param("finite", required=True)
    y: float = param("finite", required=True)
    crs: str = param("str", "EPSG:4326")


#: the fields of an IndexRequest that ask for a tiling (docs/indexing.md)
TILING_FIELDS = ("tile_size", "tile_metres", "overlap", "scales", "bands")


@dataclass(frozen=True)
class IndexRequest(OpRequest):
    """Index files and folders into ``index`` (incremental), or ``remove`` roots from it."""

    OP: ClassVar[str] = "index"
    index: str = param("path", required=True)
    paths: tuple[str, ...] = param("path_list", ())
    tile_size: int | None = param("int")
    tile_metres: float | None = param("finite")
    overlap: float | None = param("finite")
    scales: tuple[int, ...] | None = param("int_list")
    bands: tuple[int, ...] | None = param("int_list")
    dry_run: bool = param("bool", False)
    rebuild: bool = param("bool", False)
    bits: int | None = param("bits")
    confirm: bool = param("bool", False)
    allow_outside_sources: bool = param("bool", False)
    remove: tuple[str, ...] = param("str_list", ())

    def tiling(self) -> dict[str, Any]:
        """The tiling options this run asks for (those given)."""
        wire = encode(self)
        return {name: wire[name] for name in TILING_FIELDS if wire[name] is not None}

    def check(self, request_id: RequestId = None) -> None:
        if not self.paths and not self.remove:
            self._refuse("needs 'paths' (files or folders to index) or 'remove'", request_id)


@dataclass(frozen=True)
class AdaptRequest(OpRequest):
    """Fine-tune the image head to an index's own tiles and re-hash it."""

    OP: ClassVar[str] = "adapt"
    index: str = param("path", required=True)
    steps: int | None = param("steps")


@dataclass(frozen=True)
class LoadRequest(OpRequest):
    """Load a model now (``heads`` swaps in another heads file)."""

    OP: ClassVar[str] = "load"
    bits: int | None = param("bits")
    backbone: str | None = param("str")
    heads: str | None = param("path")


@dataclass(frozen=True)
class CancelRequest(OpRequest):
    """Cancel the request ``target`` (queued or running)."""

    OP: ClassVar[str] = "cancel"
    target: RequestId = param("id", required=True)


@dataclass(frozen=True)
class StatusRequest(OpRequest):
    OP: ClassVar[str] = "status"


@dataclass(frozen=True)
class ShutdownRequest(OpRequest):
    OP: ClassVar[str] = "shutdown"


#: op -> its request class
REQUESTS: dict[str, type[OpRequest]] = {cls.OP: cls for cls in (
    SearchRequest, CaptionRequest, LocateRequest, IndexRequest, AdaptRequest, LoadRequest,
    CancelRequest, StatusRequest, ShutdownRequest)}


def decode_request(op: str, params: dict[str, Any], request_id: RequestId = None) -> OpRequest:
    """The typed request of ``op`` with untrusted ``params`` (raises :class:`ProtocolError`)."""
    return REQUESTS[op].from_params(params, request_id)


def validate_params(op: str, params: dict[str, Any], request_id: RequestId = None) -> None:
    """Check ``params`` of ``op``; raise :class:`ProtocolError` naming the field."""
    decode_request(op, params, request_id)
