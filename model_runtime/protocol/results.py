"""Typed results with ``to_json()`` / ``from_json()``: Hit, SearchResult, CaptionResult, ..."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .defaults import DEFAULT_METHOD


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
