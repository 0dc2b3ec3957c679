"""Typed values of the worker protocol (docs/protocol.md) as the plugin sees them.

Plain Python, no Qt: each class maps one-to-one onto the worker's JSON and onto layer fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: error.type values the worker may send, plus ``runtime`` for a worker that cannot start or died
ERROR_TYPES = (
    "protocol",
    "data",
    "config",
    "model_mismatch",
    "index",
    "cancelled",
    "disk_full",
    "internal",
    "runtime",
)


class WorkerError(Exception):
    """A failed request; ``str(err)`` is a message meant for the user as is."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_ if type_ in ERROR_TYPES else "internal"
        self.message = message

    @classmethod
    def from_json(cls, obj: dict[str, Any] | None) -> WorkerError:
        obj = obj or {}
        return cls(str(obj.get("type") or "internal"), str(obj.get("message") or "unknown error"))

    @property
    def cancelled(self) -> bool:
        return self.type == "cancelled"


@dataclass(frozen=True)
class Progress:
    """A ``progress`` event: ``done`` of ``total`` (total may be unknown)."""

    done: int
    total: int | None
    stage: str = ""
    message: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        total = data.get("total")
        return cls(
            int(data.get("done") or 0),
            int(total) if total is not None else None,
            str(data.get("stage") or ""),
            str(data.get("message") or ""),
        )

    @property
    def percent(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(100.0, 100.0 * self.done / self.total))


@dataclass(frozen=True)
class ReadyInfo:
    """The worker's unsolicited ``ready`` line (or a ``status`` result)."""

    version: str
    protocol: int
    device: str
    pid: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReadyInfo:
        return cls(
            str(data.get("version") or "?"),
            int(data.get("protocol") or 0),
            str(data.get("device") or "?"),
            data.get("pid"),
        )


@dataclass(frozen=True)
class Hit:
    """One search result: a tile of a source raster (see ``Hit`` in docs/protocol.md)."""

    rank: int
    tile_id: int
    source: str
    window: tuple[int, int, int, int]
    crs: str | None
    footprint: dict[str, Any] | None
    footprint_src: dict[str, Any] | None
    hamming: int | None
    score: float

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Hit:
        window = obj.get("window") or (0, 0, 0, 0)
        hamming = obj.get("hamming")
        return cls(
            rank=int(obj.get("rank") or 0),
            tile_id=int(obj["tile_id"]),
            source=str(obj.get("source") or ""),
            window=tuple(int(v) for v in window),  # type: ignore[arg-type]
            crs=obj.get("crs"),
            footprint=obj.get("footprint"),
            footprint_src=obj.get("footprint_src"),
            hamming=int(hamming) if hamming is not None else None,
            score=float(obj.get("score") or 0.0),
        )

    @property
    def name(self) -> str:
        """Short label: file name and window offset."""
        base = self.source.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{base} [{self.window[0]},{self.window[1]}]"


@dataclass(frozen=True)
class Caption:
    """One caption of the ``caption`` op."""

    rank: int
    text: str
    hamming: int | None
    score: float

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Caption:
        hamming = obj.get("hamming")
        return cls(
            int(obj.get("rank") or 0),
            str(obj.get("text") or ""),
            int(hamming) if hamming is not None else None,
            float(obj.get("score") or 0.0),
        )


def describe_model(model: dict[str, Any] | None) -> str:
    """A one-line provenance string for the ``model`` object of a search result."""
    if not model:
        return ""
    parts = [
        str(model[key])
        for key in ("method", "backbone", "bits", "heads")
        if model.get(key) not in (None, "")
    ]
    if parts:
        return " / ".join(parts)
    return json.dumps(model, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class SearchResult:
    """Result of the ``search`` op."""

    hits: list[Hit]
    query: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    timing_ms: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SearchResult:
        return cls(
            hits=[Hit.from_json(h) for h in obj.get("results") or []],
            query=dict(obj.get("query") or {}),
            model=dict(obj.get("model") or {}),
            index=dict(obj.get("index") or {}),
            timing_ms=dict(obj.get("timing_ms") or {}),
        )

    @property
    def model_label(self) -> str:
        return describe_model(self.model)


@dataclass(frozen=True)
class CaptionResult:
    """Result of the ``caption`` op."""

    captions: list[Caption]
    similar: list[Hit]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> CaptionResult:
        return cls(
            [Caption.from_json(c) for c in obj.get("captions") or []],
            [Hit.from_json(h) for h in obj.get("similar") or []],
        )


@dataclass(frozen=True)
class IndexSummary:
    """Result of the ``index`` op (or of a dry run)."""

    raw: dict[str, Any]

    @property
    def dry_run(self) -> bool:
        return "files" in self.raw and "added" not in self.raw

    def describe(self) -> str:
        r = self.raw
        if self.dry_run:
            size_mb = (r.get("bytes") or 0) / 1e6
            return (
                f"{r.get('files', 0)} files, {r.get('tiles', 0)} tiles, {size_mb:.1f} MB to read, "
                f"about {float(r.get('seconds') or 0):.0f} s"
            )
        skipped = r.get("skipped") or []
        text = (
            f"{r.get('tiles', 0)} tiles indexed ({r.get('added', 0)} files added, "
            f"{r.get('updated', 0)} updated, {r.get('removed', 0)} removed, "
            f"{r.get('unchanged', 0)} unchanged)"
        )
        if skipped:
            text += f"; {len(skipped)} skipped"
        return text
