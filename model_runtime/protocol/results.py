"""Typed results: Hit, SearchResult, CaptionResult, IndexSummary, Estimate, ...

Each travels through the field-driven codec (``codec.py``): ``to_json()`` / ``from_json()`` come
from :class:`Wire`; a field's metadata says where its JSON differs from the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .codec import decode, encode, wire
from .defaults import DEFAULT_METHOD


class Wire:
    """``to_json()`` / ``from_json()`` of a contract dataclass, by the codec."""

    def to_json(self) -> dict[str, Any]:
        return encode(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any] | None) -> Any:
        return decode(cls, obj)


def _timing_ms() -> Any:
    """A ``timing_ms`` field: milliseconds by step, sent to 2 decimals."""
    return field(default_factory=dict, metadata=wire(digits=2))


@dataclass(frozen=True)
class ModelInfo(Wire):
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

    @property
    def identity(self) -> dict[str, Any]:
        """The part that must match between an index and the model searching it."""
        return {"backbone": self.backbone, "bits": self.bits, "heads_sha": self.heads_sha}

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in encode(self).items() if v is not None}

    @classmethod
    def from_json(cls, obj: dict[str, Any] | None) -> ModelInfo | None:
        """None unless ``obj`` names a backbone and a bit length."""
        if not obj or obj.get("backbone") is None or obj.get("bits") is None:
            return None
        return decode(cls, obj)


@dataclass(frozen=True)
class Hit(Wire):
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

    WIRE_PROPERTIES = {"georeferenced": "crs"}  # sent after ``crs``

    @property
    def georeferenced(self) -> bool:
        return self.footprint is not None

    @property
    def name(self) -> str:
        """Short label: file name and window offset."""
        base = self.source.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{base} [{self.window[0]},{self.window[1]}]"

@dataclass(frozen=True)
class SearchResult(Wire):
    """Result of ``search`` (and ``cach search --json``).

    ``weak_match`` is True when even the best tiles are unlikely to show what was asked for
    (their calibrated confidence is low): the client should say so in plain words. None when the
    query kind has no calibration (tile and example queries)."""

    results: list[Hit]
    query: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    timing_ms: dict[str, float] = _timing_ms()
    weak_match: bool | None = None


@dataclass(frozen=True)
class Caption(Wire):
    """One caption of the bank that describes a tile or image."""

    rank: int
    text: str
    hamming: int | None
    score: float


@dataclass(frozen=True)
class CaptionResult(Wire):
    """Result of ``caption``: bank captions nearest the tile or image, and similar tiles."""

    captions: list[Caption]
    similar: list[Hit] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    timing_ms: dict[str, float] = _timing_ms()


@dataclass(frozen=True)
class Skipped(Wire):
    """A file an index run did not index, with why (``code`` from :data:`ERROR_CODES`)."""

    path: str
    reason: str
    code: str = "data_unreadable"


@dataclass(frozen=True)
class IndexSummary(Wire):
    """What an ``index`` run did. ``tiles`` is the index's total after the run; ``pending_files``
    counts files a cancelled run did not reach; ``vrt_sources`` lists the files each VRT read."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: tuple[Skipped, ...] = ()
    tiles: int = 0
    encoded: int = 0
    seconds: float = field(default=0.0, metadata=wire(digits=2))
    pending_files: int = 0
    vrt_sources: dict[str, list[str]] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict, metadata=wire(key="timing_s", digits=3))
    #: folders (or prefixes) this run added to the index, and every one it holds after the run
    #: (docs/indexing.md, "What an index holds"); ``roots_removed`` by ``remove``
    roots_added: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()
    roots_removed: tuple[str, ...] = ()

    @property
    def indexed_nothing(self) -> bool:
        """True when the run leaves no tile to search (an empty folder, or every file skipped)."""
        return self.tiles == 0


@dataclass(frozen=True)
class Estimate(Wire):
    """A dry run: the work and disk an index run would take. ``new_tiles`` counts the tiles of
    files not yet indexed (what the run would encode), ``tiles`` those of every file given."""

    files: int
    tiles: int
    bytes: int
    seconds: float = field(metadata=wire(digits=1))
    new_tiles: int | None = field(default=None, metadata=wire(fallback="tiles"))
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
    setup_seconds: float = field(default=0.0, metadata=wire(digits=1))

    @property
    def index_tiles(self) -> int:
        """Tiles the index holds before the run (0 for a new index)."""
        return sum(int(r.get("tiles") or 0) for r in self.roots_held)


@dataclass(frozen=True)
class Progress(Wire):
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


@dataclass(frozen=True)
class ReadyInfo(Wire):
    """The worker's first line (``ready``): printed before any model code is imported."""

    version: str = field(metadata=wire(missing="?"))
    protocol: int
    device: str = field(metadata=wire(missing="?"))
    pid: int | None = None

