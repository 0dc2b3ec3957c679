"""Indexing as small work units: the one thing every executor (local threads, Ray) runs.

A :class:`WorkUnit` is one source and a range of its planned windows, with the tiling options.
Its key is derived from the source's identity (URI, size, mtime or ETag), the options and the
range, so a finished unit recorded in the store (or in a Ray shard manifest) is recognised by any
later run. Units are small frozen dataclasses: picklable, executor-agnostic, no open handles.

``encode_unit(unit, model)`` is the pure function (read, encode, return rows); a per-file failure
comes back inside the :class:`UnitResult`, never as an exception, so one bad file cannot abort a
run on any executor. ``index/writer.py`` commits results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from model_runtime.codes import pack
from model_runtime.errors import CachError, CancelledError
from model_runtime.index.store import SourceMeta, TileRows
from model_runtime.protocol import Skipped
from model_runtime.raster.tiling import RasterInfo, Tile, TilingOptions, iter_tiles, raster_info

if TYPE_CHECKING:
    from model_runtime.model import HashModel
    from model_runtime.raster.refs import SourceRef

LOG = logging.getLogger(__name__)

#: windows per unit: a killed run loses at most this much work per reader (well under a minute
#: at compiled-engine speed), and a large raster commits every UNIT_TILES tiles
UNIT_TILES = 2048


@dataclass(frozen=True)
class WorkUnit:
    """Windows ``[start, stop)`` of one source's plan (``tiling.plan_windows`` order)."""

    source: SourceRef
    start: int
    stop: int
    options: TilingOptions
    #: how many units the source was cut into (the store marks it done when all are in)
    total: int = 1

    @property
    def key(self) -> str:
        return unit_key(self.source, self.options, self.start, self.stop)

    @property
    def span(self) -> tuple[int, int]:
        return self.start, self.stop


def unit_key(source: Any, options: TilingOptions, start: int, stop: int) -> str:
    """Stable identity of a unit: source URI, size and version, tiling options, window range."""
    text = json.dumps([source.uri, int(source.size), str(source.version), options.to_json(),
                       int(start), int(stop)], sort_keys=True)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SourcePlan:
    """A source opened once: what the store records about it and its units."""

    meta: SourceMeta
    info: RasterInfo
    units: tuple[WorkUnit, ...]


def source_meta(source: Any, info: RasterInfo, signature: str = "",
                extra: dict | None = None) -> SourceMeta:
    """The store's row for a source (``extra``: e.g. the files a VRT reads)."""
    details = {
        "bands": list(info.bands),
        "dtype": info.dtype,
        "stretch": info.stretch and [list(s) for s in info.stretch],
        "tile_px": info.tile_px,
        **(extra or {}),
    }
    mtime = float(getattr(source, "mtime", 0.0) or 0.0)
    return SourceMeta(source.uri, int(source.size), str(source.version), mtime, signature,
                      info.crs, info.width, info.height, details)


def plan_source(source: Any, options: TilingOptions, unit_tiles: int = UNIT_TILES,
                signature: str = "", extra: dict | None = None) -> SourcePlan:
    """Open a source's header (band choice, stretch, windows) and cut it into units."""
    return plan_from(source, raster_info(source.gdal_path, options), options, unit_tiles,
                     signature, extra)


def plan_from(source: Any, info: RasterInfo, options: TilingOptions,
              unit_tiles: int = UNIT_TILES, signature: str = "", extra: dict | None = None
              ) -> SourcePlan:
    """Cut a source whose header is read into units. The content signature is taken here (in
    an executor's reader, not in the scan) when not given."""
    signature = signature or _signature(source)
    n = len(info.windows)
    spans = [(s, min(s + unit_tiles, n)) for s in range(0, max(n, 1), unit_tiles)]
    units = tuple(WorkUnit(source, a, b, options, len(spans)) for a, b in spans)
    return SourcePlan(source_meta(source, info, signature, extra), info, units)


def _signature(source: Any) -> str:
    from model_runtime.raster.refs import quick_signature

    try:
        return quick_signature(source)
    except (OSError, CachError):
        return ""


def read_unit(unit: WorkUnit, info: RasterInfo | None = None,
              cancel: threading.Event | None = None) -> Iterator[tuple[np.ndarray, Tile]]:
    """Pixels (HxWx3 uint8 at the model's size) and provenance of the unit's non-empty tiles."""
    return iter_tiles(unit.source.gdal_path, unit.options, cancel, info=info, span=unit.span)


@dataclass
class UnitResult:
    """Rows of one unit, or why its source failed (``error``; ``rows`` is then None)."""

    unit: WorkUnit
    meta: SourceMeta | None = None
    rows: TileRows | None = None
    error: Skipped | None = None
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def assemble(tiles: Sequence[Tile], tanh: np.ndarray, proj: np.ndarray | None) -> TileRows:
    """Rows to store from a unit's tiles and their model outputs (aligned)."""
    tanh = np.asarray(tanh, np.float32)
    if tanh.ndim == 1:
        tanh = tanh.reshape(len(tiles), -1)
    if proj is not None:
        proj = np.asarray(proj, np.float16)
        proj = proj.reshape(len(tiles), -1) if proj.ndim == 1 else proj
    return TileRows(
        windows=[(*t.window, t.scale) for t in tiles],
        valid=[t.valid for t in tiles],
        footprints=[t.footprint for t in tiles],
        footprints_src=[t.footprint_src for t in tiles],
        codes=pack(tanh) if len(tiles) else np.zeros((0, tanh.shape[1] // 8), np.uint8),
        tanh=tanh.astype(np.float16),
        proj=proj,
    )


def failure(unit: WorkUnit, err: BaseException) -> Skipped:
    """A per-file failure as a skipped row: a CachError keeps its words and code; anything
    else (a GDAL or PROJ error on a hostile file) is named with its type."""
    if isinstance(err, CachError):
        return Skipped(unit.source.uri, str(err), err.code)
    text = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    return Skipped(unit.source.uri, f"{unit.source.uri}: cannot be indexed ({text})",
                   "data_unreadable")


def encode_unit(unit: WorkUnit, model: HashModel, batch_size: int | None = None,
                plan: SourcePlan | None = None,
                cancel: threading.Event | None = None) -> UnitResult:
    """Read and encode one unit: the pure function an executor maps over units. ``batch_size``
    defaults to the model's preferred batch.

    Never raises for a bad file (the result carries the error); a cancel raises
    ``CancelledError``."""
    t0 = time.perf_counter()
    batch_size = batch_size or int(getattr(model, "preferred_batch", 32) or 32)
    try:
        plan = plan or plan_source(unit.source, unit.options)
        tiles, outs, rgbs = [], [], []
        for rgb, tile in read_unit(unit, plan.info, cancel):
            rgbs.append(rgb)
            tiles.append(tile)
            if len(rgbs) == batch_size:
                outs.append(model.encode_images(np.stack(rgbs)))
                rgbs = []
        if rgbs:
            outs.append(model.encode_images(np.stack(rgbs)))
    except CancelledError:
        raise
    except Exception as err:  # one bad file must not stop an executor
        return UnitResult(unit, error=failure(unit, err))
    tanh = np.concatenate([o.tanh for o in outs]) if outs else np.zeros((0, model.bits), np.float32)
    proj = None
    if outs and outs[0].proj is not None:
        proj = np.concatenate([o.proj for o in outs])
    rows = assemble(tiles, tanh, proj)
    return UnitResult(unit, plan.meta, rows, timing={"unit_s": time.perf_counter() - t0})
