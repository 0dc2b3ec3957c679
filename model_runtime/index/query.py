"""Open an index and search it: Hamming top-k, optional float re-rank, bbox filter, collapse.

``open_index(dir, expect=model_info)`` checks the model and the complete flag, then loads the
faiss file of the store's generation (rebuilding it from the store's codes when it is missing).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds

from model_runtime.errors import ConfigError, DataError, IndexStateError
from model_runtime.index.binary import BinaryIndex, pack, unpack_signs
from model_runtime.index.builder import codes_path
from model_runtime.index.store import Store, TileRow, bbox_of, check_model
from model_runtime.tiling import TilingOptions, read_window

LOG = logging.getLogger(__name__)

#: re-rank this many Hamming candidates per requested hit (see docs/indexing.md for why)
RERANK_POOL = 10
#: overlapping tiles of one source with window IoU above this are collapsed into the best one
COLLAPSE_IOU = 0.5


@dataclass(frozen=True)
class Hit:
    """One result; fields map one-to-one onto the protocol's JSON and the footprint layer."""

    rank: int
    tile_id: int
    source: str
    window: tuple[int, int, int, int]
    crs: str | None
    footprint: dict | None
    footprint_src: dict
    hamming: int
    score: float

    def to_json(self) -> dict:
        return {
            "rank": self.rank,
            "tile_id": self.tile_id,
            "source": self.source,
            "window": list(self.window),
            "crs": self.crs,
            "footprint": self.footprint,
            "footprint_src": self.footprint_src,
            "hamming": self.hamming,
            "score": self.score,
        }

    @classmethod
    def from_json(cls, data: dict) -> Hit:
        return cls(
            rank=int(data["rank"]),
            tile_id=int(data["tile_id"]),
            source=data["source"],
            window=tuple(int(v) for v in data["window"]),
            crs=data.get("crs"),
            footprint=data.get("footprint"),
            footprint_src=data["footprint_src"],
            hamming=int(data["hamming"]),
            score=float(data["score"]),
        )


def _hit(row: TileRow, rank: int, hamming: int, score: float) -> Hit:
    return Hit(
        rank=rank,
        tile_id=row.id,
        source=row.source,
        window=row.window,
        crs=row.crs,
        footprint=row.footprint,
        footprint_src=row.footprint_src,
        hamming=int(hamming),
        score=round(float(score), 4),
    )


def window_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two (col, row, width, height) windows."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def angular_score(cosine: np.ndarray) -> np.ndarray:
    """Cosine -> 1 - angle/pi in [0, 1]: the quantity 1 - hamming/bits estimates for sign codes,
    so re-ranked and plain Hamming scores read on the same scale."""
    return 1.0 - np.arccos(np.clip(cosine, -1.0, 1.0)) / math.pi


def point_in_polygon(x: float, y: float, geometry: dict) -> bool:
    """Even-odd rule on the exterior ring of a GeoJSON polygon."""
    ring = geometry["coordinates"][0]
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _ring_area(geometry: dict) -> float:
    ring = geometry["coordinates"][0]
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False)))


def _box_iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    if a is None or b is None:
        return 0.0
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a, b
    w, h = min(ax1, bx1) - max(ax0, bx0), min(ay1, by1) - max(ay0, by0)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter)


def is_duplicate(a: TileRow, a_code: bytes, b: TileRow, b_code: bytes) -> bool:
    """Same source and (window IoU > 0.5 or identical code); or another source holding the
    same place with the same code (a copy of the raster, e.g. recompressed)."""
    if a.source == b.source:
        return a_code == b_code or window_iou(a.window, b.window) > COLLAPSE_IOU
    box_a = a.bbox or bbox_of(a.footprint)
    box_b = b.bbox or bbox_of(b.footprint)
    return a_code == b_code and _box_iou(box_a, box_b) > COLLAPSE_IOU


def collapse_hits(
    candidates: list[tuple[TileRow, int, float, bytes]],
    k: int,
) -> list[tuple[TileRow, int, float, bytes]]:
    """Keep the best of duplicate tiles (see ``is_duplicate``), and spread results across
    sources: no source fills more than half of k while other sources still have candidates;
    leftover slots are then filled in score order."""
    kept: list[tuple[TileRow, int, float, bytes]] = []
    deferred = []
    per_source: dict[str, int] = {}
    cap = max(1, math.ceil(k / 2))
    for cand in candidates:
        row, _, _, code = cand
        dup = any(
            is_duplicate(other, other_code, row, code)
            for other, _, _, other_code in kept + deferred
        )
        if dup:
            continue
        if per_source.get(row.source, 0) >= cap:
            deferred.append(cand)
            continue
        per_source[row.source] = per_source.get(row.source, 0) + 1
        kept.append(cand)
        if len(kept) >= k:
            break
    if len(kept) < k:
        kept += deferred[: k - len(kept)]
    kept.sort(key=lambda c: (-c[2], c[1], c[0].id))
    return kept[:k]


def bbox_to_4326(bbox: Sequence[float], crs: str = "EPSG:4326") -> tuple[float, ...]:
    """(minx, miny, maxx, maxy) in ``crs`` -> lon/lat bounds (edges densified)."""
    if len(bbox) != 4 or bbox[0] > bbox[2] or bbox[1] > bbox[3]:
        raise ConfigError(f"bbox must be [minx, miny, maxx, maxy], got {list(bbox)}")
    try:
        src = CRS.from_user_input(crs)
    except Exception as err:
        raise ConfigError(f"unknown bbox CRS {crs!r} ({err})") from err
    if src.to_epsg() == 4326:
        return tuple(float(v) for v in bbox)
    return transform_bounds(src, "EPSG:4326", *bbox, densify_pts=21)


class Index:
    """A searchable index. Thread-safe for the worker's one-request-at-a-time use."""

    def __init__(self, store: Store, codes: BinaryIndex, meta: dict) -> None:
        self.store = store
        self.codes = codes
        self.meta = meta
        self.path = store.dir
        self.model: dict = meta.get("model", {})
        self.bits: int = int(self.model.get("bits", codes.bits))
        self.options = TilingOptions.from_json(meta["tiling"]) if "tiling" in meta else None
        self.complete = bool(meta.get("complete"))
        #: files a cancelled run did not reach (searchable, but not yet covering every file)
        self.pending_files = int((meta.get("partial") or {}).get("pending_files", 0))
        self._lock = threading.Lock()

    @property
    def tiles(self) -> int:
        return self.codes.ntotal

    def info(self) -> dict:
        """``{"path", "bits", "tiles", "complete", "model"}`` for responses."""
        return {
            "path": str(self.path),
            "bits": self.bits,
            "tiles": self.tiles,
            "complete": self.complete,
            "pending_files": self.pending_files,
            "model": self.model,
        }

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queries -----------------------------------------------------------------------------
    def _query(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        query = np.asarray(query)
        if query.dtype == np.uint8 and query.size == self.bits // 8:
            return query.reshape(1, -1), None
        if np.issubdtype(query.dtype, np.floating) and query.size == self.bits:
            floats = query.reshape(-1).astype(np.float32)
            return pack(floats), floats
        raise ConfigError(
            f"query must be a packed code of {self.bits // 8} bytes (uint8) or {self.bits} floats; "
            f"got {query.dtype} with {query.size} values"
        )

    def search(
        self,
        query: np.ndarray,
        k: int = 20,
        bbox: Sequence[float] | None = None,
        bbox_crs: str = "EPSG:4326",
        collapse: bool = True,
        exclude_ids: Iterable[int] = (),
        rerank: bool | None = None,
    ) -> list[Hit]:
        """Top-k hits for a packed code [bits // 8] uint8 or a float query [bits].

        A float query (tanh outputs, or ``combine(...)`` of several) is re-ranked by cosine
        against the stored floats when the index has them (``rerank=None`` means "when
        possible"). ``bbox`` keeps tiles whose EPSG:4326 footprint box meets the box; tiles
        without a CRS never match a bbox."""
        k = int(k)
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        code, floats = self._query(query)
        rerank = (
            floats is not None and bool(self.meta.get("store_floats", True))
            if rerank is None
            else bool(rerank) and floats is not None
        )
        exclude = {int(i) for i in exclude_ids}
        subset = None
        if bbox is not None:
            subset = self.store.ids_in_bbox(*bbox_to_4326(bbox, bbox_crs))
            if exclude:
                subset = subset[~np.isin(subset, list(exclude))]
        available = self.tiles if subset is None else len(subset)
        if available == 0:
            return []
        pool = k + len(exclude)
        if rerank:
            pool = max(pool, k * RERANK_POOL, 100)
        if collapse:
            pool = max(pool, 4 * k + 32)
        with self._lock:
            while True:
                pool = min(pool, available + len(exclude))
                if subset is None:
                    dist, ids = self.codes.search(code, pool)
                    dist, ids = dist[0], ids[0]
                else:
                    dist, ids = self.codes.search_subset(code[0], pool, subset)
                keep = (ids >= 0) & ~np.isin(ids, list(exclude))
                dist, ids = dist[keep], ids[keep]
                hits = self._rank(ids, dist, floats, rerank, collapse, k)
                if len(hits) >= k or pool >= available + len(exclude):
                    return hits
                pool *= 4

    def _rank(self, ids, dist, floats, rerank, collapse, k) -> list[Hit]:
        rows = self.store.tiles(ids, geometry=False)
        vectors = self.store.vectors(ids, self.bits) if (rerank or collapse) else {}
        scores = 1.0 - dist.astype(np.float64) / self.bits
        if rerank:
            mats = np.stack(
                [
                    vectors[i][1]
                    if vectors[i][1] is not None
                    else unpack_signs(np.frombuffer(vectors[i][0], np.uint8), self.bits)[0]
                    for i in ids
                ]
            )
            cos = mats @ floats / (np.linalg.norm(mats, axis=1) * np.linalg.norm(floats) + 1e-12)
            scores = angular_score(cos)
        cands = [
            (rows[int(i)], int(d), float(s), vectors.get(int(i), (b"",))[0])
            for i, d, s in zip(ids, dist, scores, strict=True)
            if int(i) in rows
        ]
        cands.sort(key=lambda c: (-c[2], c[1], c[0].id))
        if collapse:
            cands = collapse_hits(cands, k)
        cands = cands[:k]
        full = self.store.tiles([c[0].id for c in cands])  # footprints for the hits only
        return [
            _hit(full[row.id], rank, d, s) for rank, (row, d, s, _) in enumerate(cands, start=1)
        ]

    # -- single tiles ------------------------------------------------------------------------
    def _row(self, tile_id: int) -> TileRow:
        row = self.store.tiles([int(tile_id)]).get(int(tile_id))
        if row is None:
            raise DataError(f"No tile {tile_id} in the index at {self.path}.")
        return row

    def get_tile(self, tile_id: int) -> Hit:
        """The tile as a Hit (rank 0, hamming 0, score 1.0: it matches itself)."""
        return _hit(self._row(tile_id), 0, 0, 1.0)

    def tile_code(self, tile_id: int) -> np.ndarray:
        """Packed code uint8 [bits // 8] of a tile."""
        self._row(tile_id)
        code, _ = self.store.vectors([int(tile_id)], self.bits)[int(tile_id)]
        return np.frombuffer(code, dtype=np.uint8).copy()

    def tile_vector(self, tile_id: int) -> np.ndarray:
        """Float32 [bits] query vector of a tile: its stored tanh outputs, else its +-1 code."""
        self._row(tile_id)
        code, feats = self.store.vectors([int(tile_id)], self.bits)[int(tile_id)]
        if feats is not None:
            return feats
        return unpack_signs(np.frombuffer(code, dtype=np.uint8), self.bits)[0]

    def locate(self, x: float, y: float, crs: str = "EPSG:4326") -> Hit | None:
        """The georeferenced tile whose footprint contains the point (smallest tile first)."""
        try:
            src = CRS.from_user_input(crs)
        except Exception as err:
            raise ConfigError(f"unknown point CRS {crs!r} ({err})") from err
        if src.to_epsg() != 4326:
            (x,), (y,) = warp_transform(src, "EPSG:4326", [x], [y])
        ids = self.store.ids_in_bbox(x, y, x, y)
        rows = [
            r
            for r in self.store.tiles(ids).values()
            if r.footprint is not None and point_in_polygon(x, y, r.footprint)
        ]
        if not rows:
            return None
        best = min(rows, key=lambda r: (_ring_area(r.footprint), r.id))
        return _hit(best, 0, 0, 1.0)

    def read_tile_pixels(self, tile_id: int) -> np.ndarray:
        """HxWx3 uint8 pixels of a tile as the encoder saw them (same bands and stretch)."""
        row = self._row(tile_id)
        if not os.path.exists(row.source):
            raise DataError(f"{row.source}: the source of tile {tile_id} is gone; re-index.")
        options = self.options or TilingOptions()
        info = self.store.source_info(row.source) or {}
        if info.get("bands"):
            bands = tuple(info["bands"])
            options = TilingOptions(
                **{
                    **options.to_json(),
                    "bands": bands,
                    "scales": options.scales,
                    "stretch": options.stretch,
                }
            )
        return read_window(row.source, row.window, options)


def open_index(
    index_dir: str | os.PathLike,
    expect: dict | None = None,
    allow_incomplete: bool = False,
) -> Index:
    """Open an index for search. ``expect`` = the searching model's info (backbone, bits,
    heads_sha): another model raises ``ModelMismatchError``. An interrupted build raises
    ``IndexStateError`` unless ``allow_incomplete`` (then search sees the committed sources)."""
    index_dir = Path(index_dir)
    store = Store(index_dir)
    try:
        meta = store.meta()
        if "model" not in meta:
            raise IndexStateError(f"The index at {index_dir} is empty: run 'cach index' first.")
        check_model(meta["model"], expect, index_dir)
        if not meta.get("complete") and not allow_incomplete:
            raise IndexStateError(
                f"The index at {index_dir} is incomplete (an indexing run was interrupted): "
                "run 'cach index' again on the same folders to finish it."
            )
        bits = int(meta["model"]["bits"])
        path = codes_path(index_dir, int(meta.get("generation", 0)))
        codes = BinaryIndex.load(path, bits) if path.exists() else None
        if codes is not None and codes.ntotal != store.count_tiles():
            LOG.warning("%s does not match the store; rebuilding it", path)
            path.unlink(missing_ok=True)
            codes = None
        if codes is None:
            LOG.info(
                "%s: code index missing for this generation, rebuilding from the store", index_dir
            )
            ids, packed = store.all_codes(bits // 8)
            codes = BinaryIndex.from_codes(packed, ids, bits)
            if meta.get("complete"):
                try:
                    codes.save(path)
                except OSError as err:  # read-only index folder: search from memory
                    LOG.warning("cannot cache %s (%s)", path, err)
        return Index(store, codes, meta)
    except BaseException:
        store.close()
        raise
