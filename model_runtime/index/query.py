"""Open an index and search it: Hamming top-k, optional float re-rank, bbox filter, collapse.

``open_index(dir, expect=model_info)`` checks the model and the complete flag, then loads the
faiss file of the store's generation (rebuilding it from the store's codes when it is missing).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_runtime.codes import pack, unpack_signs
from model_runtime.errors import ConfigError, DataError, DiskFullError, IndexStateError
from model_runtime.fsutil import file_signature
from model_runtime.index.binary import BinaryIndex
from model_runtime.index.collapse import collapse_hits, same_place
from model_runtime.index.store import Store, TileRow, check_model
from model_runtime.index.writer import codes_path
from model_runtime.protocol import Hit
from model_runtime.raster.geo import bbox_to_4326, check_point
from model_runtime.raster.refs import is_remote_uri
from model_runtime.raster.tiling import TilingOptions, read_window

LOG = logging.getLogger(__name__)

#: the Hamming candidates re-ranked per query: max(RERANK_POOL, 10 k) (docs/indexing.md)
RERANK_POOL = 100
#: image re-ranking centres projections on the archive's own mean, estimated from a fixed random
#: sample of this many tiles and shrunk towards the heads' training mean (the projection's
#: origin) by n / (n + CENTRE_PRIOR_TILES) (docs/unseen.md, "The archive's own centre")
CENTRE_SAMPLE = 2000
CENTRE_PRIOR_TILES = 20


@dataclass(frozen=True)
class Query:
    """What ``Index.search`` ranks by: a packed code and/or float vectors.

    ``tanh`` (text, combined queries) re-ranks the Hamming pool by the cosine of the stored tanh
    outputs; ``proj`` (image and tile queries, heads with a feature projection) re-ranks it by
    the cosine of the stored projections of the frozen image features, centred on the archive's
    own mean (``proj_centre``), which keep what the encoder knows about scenes the heads never
    saw."""

    code: np.ndarray  # uint8 [1, bits // 8]
    tanh: np.ndarray | None = None
    proj: np.ndarray | None = None
    #: per-dimension factors applied to the query's and the tiles' projections before their
    #: cosine (:func:`rerank_scale`: the whitening undone); None: the stored projection as is
    proj_scale: np.ndarray | None = None
    #: subtracted from the tiles' stored projections before their cosine (``Index.proj_centre``:
    #: the archive's own mean); ``proj`` must have been centred on it before it was normalised
    #: (``QueryParts.shifted``). None: the heads' training mean, the projection's origin
    proj_centre: np.ndarray | None = None

    @classmethod
    def of(cls, vector: np.ndarray, bits: int, proj: np.ndarray | None = None) -> Query:
        """From a packed code [bits // 8] uint8 or a float vector [bits]."""
        vector = np.asarray(vector)
        if vector.dtype == np.uint8 and vector.size == bits // 8:
            return cls(vector.reshape(1, -1), None, proj)
        if np.issubdtype(vector.dtype, np.floating) and vector.size == bits:
            floats = vector.reshape(-1).astype(np.float32)
            return cls(pack(floats), floats, proj)
        raise ConfigError(
            f"query must be a packed code of {bits // 8} bytes (uint8) or {bits} floats; "
            f"got {vector.dtype} with {vector.size} values"
        )


def _hit(row: TileRow, rank: int, hamming: int, score: float) -> Hit:
    return Hit(rank=rank, tile_id=row.id, source=row.source, window=row.window, crs=row.crs,
               footprint=row.footprint, footprint_src=row.footprint_src, hamming=int(hamming),
               score=round(float(score), 4))


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


def unwhiten_scale(matrix: np.ndarray, temper: float = 1.0) -> np.ndarray:
    """Per-dimension factors ``[proj_dim]`` that undo (``temper`` 1) or soften (0 < t < 1) the
    partial whitening of a stored projection (``model_runtime.hashing.projection``).

    The projection's matrix holds orthogonal principal axes, each scaled by its whitening factor
    (times one global factor), so a column's norm IS that axis's scale: dividing each projected
    coordinate by it gives plain PCA coordinates, whose cosine approximates the cosine of the
    (centred) frozen features up to the truncation to ``proj_dim`` axes. Mean 1 (float16-safe)."""
    norms = np.linalg.norm(np.asarray(matrix, np.float64), axis=0)
    scale = np.maximum(norms, 1e-12) ** -float(temper)
    return (scale / scale.mean()).astype(np.float32)


#: how far image re-ranking undoes the projection's whitening (0: the stored projection as is,
#: 1: fully, plain PCA cosine). 0.75 was the value that made no unseen set worse through the
#: product (research/unseen_scenes.py; docs/unseen.md "Re-rank space on unseen scene sets")
RERANK_UNWHITEN = 0.75


@functools.lru_cache(maxsize=8)
def rerank_scale(heads_path: str, temper: float = RERANK_UNWHITEN) -> np.ndarray | None:
    """:func:`unwhiten_scale` of the projection in a heads file (None: heads without one)."""
    from safetensors import safe_open

    with safe_open(str(heads_path), framework="numpy") as f:
        if "image_proj.matrix" not in f.keys():
            return None
        return unwhiten_scale(f.get_tensor("image_proj.matrix"), temper)


def cosine(mats: np.ndarray, vec: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``mats`` with ``vec``."""
    return mats @ vec / (np.linalg.norm(mats, axis=1) * np.linalg.norm(vec) + 1e-12)


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
        self.generation = int(meta.get("generation", 0))
        self._lock = threading.Lock()
        self._blocks: FeatureBlocks | None = None
        self._centre: tuple[np.ndarray | None] | None = None

    @property
    def tiles(self) -> int:
        return self.codes.ntotal

    def info(self) -> dict:
        """``{"path", "bits", "tiles", "complete", "pending_files", "model"}`` for responses."""
        return {"path": str(self.path), "bits": self.bits, "tiles": self.tiles,
                "complete": self.complete, "pending_files": self.pending_files,
                "model": self.model}

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queries -----------------------------------------------------------------------------
    def search(self, query: Query | np.ndarray, k: int = 20, bbox: Sequence[float] | None = None,
               bbox_crs: str = "EPSG:4326", collapse: bool = True,
               exclude_ids: Iterable[int] = (), rerank: bool | None = None,
               near_ids: Iterable[int] = (), page: int | None = None) -> list[Hit]:
        """Top-k hits for a :class:`Query` (or a packed code / float vector); with ``page``,
        collapsed page by page (``collapse.collapse_hits``: the next page of a paged search).

        ``near_ids`` (the tile of a tile query): tiles showing its place again are dropped
        (``same_place``), so the hits are other places.

        The Hamming top pool (:data:`RERANK_POOL`) is re-ranked by the query's projection or
        tanh vector when the index stores them (``rerank=None``: when possible). ``bbox`` keeps
        tiles whose EPSG:4326 footprint box meets the box; tiles without a CRS never match."""
        k = int(k)
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        query = query if isinstance(query, Query) else Query.of(query, self.bits)
        rerank = (query.tanh is not None or query.proj is not None) and rerank is not False
        exclude = {int(i) for i in exclude_ids}
        near = self._near(near_ids) if collapse else []
        subset = self._subset(bbox, bbox_crs, exclude)
        available = self.tiles if subset is None else len(subset)
        if available == 0:
            return []
        pool = k + len(exclude)
        if rerank:
            pool = max(pool, k * 10, RERANK_POOL)
        if collapse:
            pool = max(pool, 4 * k + 32)
        with self._lock:
            while True:
                pool = min(pool, available + len(exclude))
                dist, ids = self._hamming(query.code, pool, subset)
                keep = (ids >= 0) & ~np.isin(ids, list(exclude))
                hits = self._rank(ids[keep], dist[keep], query if rerank else None, collapse,
                                  (k, page), near)
                if len(hits) >= k or pool >= available + len(exclude):
                    return hits
                pool *= 4

    def _subset(self, bbox, bbox_crs: str, exclude: set[int]) -> np.ndarray | None:
        if bbox is None:
            return None
        subset = self.store.ids_in_bbox(*bbox_to_4326(bbox, bbox_crs))
        return subset[~np.isin(subset, list(exclude))] if exclude else subset

    def _hamming(self, code: np.ndarray, pool: int, subset: np.ndarray | None):
        if subset is None:
            dist, ids = self.codes.search(code, pool)
            return dist[0], ids[0]
        return self.codes.search_subset(code[0], pool, subset)

    def _scores(self, ids: np.ndarray, dist: np.ndarray, query: Query | None,
                vectors: dict) -> np.ndarray:
        """1 - hamming/bits; re-ranked: 1 - angle/pi of the projection or tanh cosine."""
        if query is None:
            return 1.0 - dist.astype(np.float64) / self.bits
        use_proj = query.proj is not None and all(vectors[i][2] is not None for i in ids)
        if use_proj:
            mats, vec = np.stack([vectors[i][2] for i in ids]).astype(np.float32), query.proj
            if query.proj_centre is not None:
                mats = mats - np.asarray(query.proj_centre, np.float32).reshape(-1)
            if query.proj_scale is not None:
                scale = np.asarray(query.proj_scale, np.float32).reshape(-1)
                mats, vec = mats * scale, np.asarray(vec, np.float32).reshape(-1) * scale
        else:
            mats = np.stack([v[1] if v[1] is not None else
                             unpack_signs(np.frombuffer(v[0], np.uint8), self.bits)[0]
                             for v in (vectors[i] for i in ids)])
            vec = query.tanh if query.tanh is not None else unpack_signs(query.code, self.bits)[0]
        return angular_score(cosine(mats, np.asarray(vec, np.float32).reshape(-1)))

    def _near(self, near_ids: Iterable[int]) -> list[tuple[TileRow, bytes]]:
        ids = [int(i) for i in near_ids]
        if not ids:
            return []
        rows, vectors = self.store.tiles(ids, geometry=False), self.store.vectors(ids)
        return [(rows[i], vectors[i][0]) for i in ids if i in rows and i in vectors]

    def _rank(self, ids, dist, query: Query | None, collapse: bool, size: tuple[int, int | None],
              near: Sequence[tuple[TileRow, bytes]] = ()) -> list[Hit]:
        k, page = size
        rows = self.store.tiles(ids, geometry=False)
        vectors = self.store.vectors(ids) if (query is not None or collapse) else {}
        scores = self._scores(ids, dist, query, vectors) if len(ids) else np.zeros(0)
        cands = [(rows[int(i)], int(d), float(s), vectors.get(int(i), (b"",))[0])
                 for i, d, s in zip(ids, dist, scores, strict=True) if int(i) in rows]
        cands = [c for c in cands if not any(same_place(n, nc, c[0], c[3]) for n, nc in near)]
        cands.sort(key=lambda c: (-c[2], c[1], c[0].id))
        if collapse:
            cands = collapse_hits(cands, k, page)
        cands = cands[:k]
        full = self.store.tiles([c[0].id for c in cands])  # footprints for the hits only
        return [_hit(full[row.id], rank, d, s) for rank, (row, d, s, _) in enumerate(cands, 1)]

    # -- scoring every tile (refined searches: model_runtime/feedback.py) ----------------------
    def feature_blocks(self) -> FeatureBlocks:
        """Every tile's stored tanh outputs and projection, rows L2-normalised, read once per
        open index (1M tiles x (64 + 256) float32 values: 1.3 GB) and kept for later refines."""
        with self._lock:
            if self._blocks is None:
                self._blocks = load_blocks(self.store, self.bits, self._proj_dim())
            return self._blocks

    def _proj_dim(self) -> int:
        """Length of the stored projection (0 when tiles store none), from one tile."""
        rows = self.store._rows("SELECT proj FROM tiles WHERE proj IS NOT NULL LIMIT 1")
        return len(rows[0][0]) // 2 if rows else 0

    def search_scored(self, score: Callable[[FeatureBlocks], np.ndarray], k: int = 20,
                      bbox: Sequence[float] | None = None, bbox_crs: str = "EPSG:4326",
                      collapse: bool = True, exclude_ids: Iterable[int] = (),
                      query_code: np.ndarray | None = None, page: int | None = None
                      ) -> tuple[list[Hit], np.ndarray]:
        """Top-k hits of a score computed for every tile (``score(blocks)`` -> float [N],
        higher first), with the same bbox filter, exclusions and collapse as :meth:`search`.
        Returns the hits (``score`` = sigmoid of the decision) and their raw decisions.
        ``hamming`` is the distance to ``query_code`` (0 without one); ``page`` as in
        :meth:`search`."""
        k = int(k)
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        blocks = self.feature_blocks()
        decision = np.asarray(score(blocks), np.float64)
        keep = np.ones(len(blocks.ids), bool)
        exclude = [int(i) for i in exclude_ids]
        if exclude:
            keep &= ~np.isin(blocks.ids, exclude)
        if bbox is not None:
            keep &= np.isin(blocks.ids, self.store.ids_in_bbox(*bbox_to_4326(bbox, bbox_crs)))
        rows = np.flatnonzero(keep)
        pool = min(len(rows), max(4 * k + 32, k) if collapse else k)
        while True:
            top = rows[np.argpartition(-decision[rows], pool - 1)[:pool]] if pool else rows[:0]
            hits, dec = self._rank_scored(blocks.ids[top], decision[top], collapse, (k, page),
                                          query_code)
            if len(hits) >= k or pool >= len(rows):
                return hits, dec
            pool = min(len(rows), pool * 4)

    def _rank_scored(self, ids, decision, collapse: bool, size: tuple[int, int | None],
                     query_code):
        k, page = size
        rows = self.store.tiles(ids, geometry=False)
        vectors = self.store.vectors(ids)
        qbits = None if query_code is None else np.unpackbits(np.asarray(query_code, np.uint8))
        cands = []
        for i, d in zip(ids, decision, strict=True):
            if int(i) not in rows:
                continue
            code = vectors[int(i)][0]
            ham = 0 if qbits is None else int(
                np.count_nonzero(np.unpackbits(np.frombuffer(code, np.uint8)) != qbits))
            cands.append((rows[int(i)], ham, float(d), code))
        cands.sort(key=lambda c: (-c[2], c[1], c[0].id))
        if collapse:
            cands = collapse_hits(cands, k, page)
        cands = cands[:k]
        full = self.store.tiles([c[0].id for c in cands])
        hits = [_hit(full[row.id], rank, h, 1.0 / (1.0 + math.exp(-max(min(d, 40.0), -40.0))))
                for rank, (row, h, d, _) in enumerate(cands, 1)]
        return hits, np.asarray([c[2] for c in cands], np.float64)

    # -- single tiles ------------------------------------------------------------------------
    def _row(self, tile_id: int) -> TileRow:
        row = self.store.tiles([int(tile_id)]).get(int(tile_id))
        if row is None:
            raise DataError(f"There is no tile {tile_id} in the index at {self.path}.",
                            code="tile_not_found")
        return row

    def get_tile(self, tile_id: int) -> Hit:
        """The tile as a Hit (rank 0, hamming 0, score 1.0: it matches itself)."""
        return _hit(self._row(tile_id), 0, 0, 1.0)

    def tile_code(self, tile_id: int) -> np.ndarray:
        """Packed code uint8 [bits // 8] of a tile."""
        self._row(tile_id)
        return np.frombuffer(self.store.vectors([int(tile_id)])[int(tile_id)][0], np.uint8).copy()

    def tile_vector(self, tile_id: int) -> np.ndarray:
        """Float32 [bits] query vector of a tile: its stored tanh outputs, else its +-1 code."""
        self._row(tile_id)
        code, tanh, _ = self.store.vectors([int(tile_id)])[int(tile_id)]
        if tanh is not None:
            return tanh
        return unpack_signs(np.frombuffer(code, dtype=np.uint8), self.bits)[0]

    def tile_proj(self, tile_id: int) -> np.ndarray | None:
        """The stored projection of a tile's frozen image features (None when not stored)."""
        self._row(tile_id)
        return self.store.vectors([int(tile_id)])[int(tile_id)][2]

    def _sample_ids(self, size: int, seed: int = 0) -> np.ndarray:
        """A fixed random sample of ``size`` tile ids (all when fewer), sorted."""
        ids = self.codes.ids
        if len(ids) > size:
            ids = np.sort(np.random.default_rng(seed).choice(ids, size, replace=False))
        return ids

    def proj_centre(self) -> np.ndarray | None:
        """The archive's own centre in the projection space, float32 [proj_dim]: the mean
        stored projection of :data:`CENTRE_SAMPLE` random tiles, times n / (n + 20) (a small
        archive stays near the heads' training mean, the origin). Image queries re-rank by the
        cosine of projections centred on it: centring on the archive, not on the imagery the
        heads were fitted on, keeps what tells this archive's scenes apart. None when the tiles
        store no projection. Computed once per open index."""
        with self._lock:
            if self._centre is None:
                vectors = self.store.vectors(self._sample_ids(CENTRE_SAMPLE))
                projs = [v[2] for v in vectors.values() if v[2] is not None]
                centre = None
                if projs:
                    n = len(projs)
                    mean = np.mean(np.stack(projs).astype(np.float64), axis=0)
                    centre = (mean * n / (n + CENTRE_PRIOR_TILES)).astype(np.float32)
                self._centre = (centre,)
            return self._centre[0]

    def background(self, size: int = 2000, seed: int = 0) -> np.ndarray:
        """Stored tanh outputs of a fixed random sample of tiles (all when fewer): the index's
        own score background for the weak-match signal."""
        vectors = self.store.vectors(self._sample_ids(size, seed))
        rows = [v[1] if v[1] is not None else unpack_signs(np.frombuffer(v[0], np.uint8),
                                                           self.bits)[0] for v in vectors.values()]
        return np.stack(rows) if rows else np.zeros((0, self.bits), np.float32)

    def locate(self, x: float, y: float, crs: str = "EPSG:4326") -> Hit | None:
        """The georeferenced tile whose footprint contains the point (smallest tile first)."""
        lon, lat = check_point(x, y, crs)
        ids = self.store.ids_in_bbox(lon, lat, lon, lat)
        rows = [r for r in self.store.tiles(ids).values()
                if r.footprint is not None and point_in_polygon(lon, lat, r.footprint)]
        if not rows:
            return None
        best = min(rows, key=lambda r: (_ring_area(r.footprint), r.id))
        return _hit(best, 0, 0, 1.0)

    def read_tile_pixels(self, tile_id: int) -> np.ndarray:
        """HxWx3 uint8 pixels of a tile as the encoder saw them (same bands and stretch)."""
        row = self._row(tile_id)
        if not is_remote_uri(row.source) and not os.path.exists(row.source):
            raise DataError(f"{row.source}: the source of tile {tile_id} is gone; index the "
                            "folder again.", code="source_gone")
        options = self.options or TilingOptions()
        info = self.store.source_info(row.source) or {}
        if info.get("bands"):
            options = TilingOptions(**{**options.to_json(), "bands": tuple(info["bands"])})
        return read_window(row.source, row.window, options)


@dataclass(frozen=True)
class FeatureBlocks:
    """Every tile's stored features in id order, rows L2-normalised, in one float32 matrix
    ``[N, bits + proj_dim]`` (tanh outputs, then the projection): a linear score of every tile
    is one matrix-vector product. Float32 because converting float16 costs more than the
    product itself (1M tiles x 256: 1.3-2.5 s vs 0.17 s on the 2 shared cores)."""

    ids: np.ndarray  # int64 [N]
    mat: np.ndarray  # float32 [N, bits + proj_dim]
    bits: int

    @property
    def tanh(self) -> np.ndarray:
        return self.mat[:, : self.bits]

    @property
    def proj(self) -> np.ndarray | None:
        return self.mat[:, self.bits :] if self.mat.shape[1] > self.bits else None

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.mat.nbytes)

    def linear(self, bias: float, w_tanh: np.ndarray | None,
               w_proj: np.ndarray | None) -> np.ndarray:
        """``bias + tanh . w_tanh + proj . w_proj`` for every tile (float32 [N])."""
        w = np.zeros(self.mat.shape[1], np.float32)
        if w_tanh is not None:
            w[: self.bits] = w_tanh
        if w_proj is not None:
            if self.proj is None:
                raise ConfigError("this refined search scores the stored feature projection, "
                                  "which the index does not have")
            w[self.bits :] = w_proj
        return self.mat @ w + np.float32(bias)


def _unit(blobs: list, width: int, out: np.ndarray) -> bool:
    """Float16 blobs -> L2-normalised rows written into ``out``; False when any is missing."""
    if any(b is None for b in blobs):
        return False
    mat = np.frombuffer(b"".join(blobs), np.float16)
    if mat.size != len(blobs) * width:
        raise IndexStateError("stored tile outputs have the wrong length", code="index_corrupt")
    out[:] = mat.reshape(len(blobs), width)
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
    return True


def load_blocks(store: Store, bits: int, proj_dim: int, batch: int = 50_000) -> FeatureBlocks:
    """Read every tile's tanh outputs (its +-1 code where none are stored) and projection
    (dropped when any tile lacks one) in one pass over the store."""
    n = store.count_tiles()
    ids = np.zeros(n, np.int64)
    mat = np.zeros((n, bits + proj_dim), np.float32)
    have_proj, at, last = proj_dim > 0, 0, -1
    while at < n:
        rows = store._rows("SELECT id, code, feats, proj FROM tiles WHERE id > ? ORDER BY id "
                           "LIMIT ?", (last, batch))
        if not rows:
            break
        stop = min(at + len(rows), n)
        rows = rows[: stop - at]
        ids[at:stop] = [r[0] for r in rows]
        if not _unit([r[2] for r in rows], bits, mat[at:stop, :bits]):
            signs = unpack_signs(np.frombuffer(b"".join(r[1] for r in rows), np.uint8)
                                 .reshape(len(rows), -1), bits)
            mat[at:stop, :bits] = signs / math.sqrt(bits)
        if have_proj:
            have_proj = _unit([r[3] for r in rows], proj_dim, mat[at:stop, bits:])
        at, last = stop, rows[-1][0]
    ids, mat = ids[:at], mat[:at]
    return FeatureBlocks(ids, mat if have_proj else np.ascontiguousarray(mat[:, :bits]), bits)


def _load_codes(store: Store, meta: dict, index_dir: Path) -> BinaryIndex | None:
    """The faiss file of the store's generation when it is there and intact, else None."""
    bits = int(meta["model"]["bits"])
    path = codes_path(index_dir, int(meta.get("generation", 0)))
    if not path.exists():
        return None
    recorded = (meta.get("codes_file") or {}).get("signature")
    try:
        if recorded and file_signature(path) != recorded:
            raise IndexStateError(f"{path} does not match what was written")
        codes = BinaryIndex.load(path, bits)
    except (IndexStateError, OSError) as err:
        LOG.warning("%s is damaged (%s); rebuilding it from the store", path, err)
        return None
    if codes.ntotal != store.count_tiles():
        LOG.warning("%s does not match the store; rebuilding it", path)
        return None
    return codes


def _rebuild_codes(store: Store, meta: dict, index_dir: Path) -> BinaryIndex:
    bits = int(meta["model"]["bits"])
    LOG.info("%s: rebuilding the code index from the store", index_dir)
    ids, packed = store.all_codes(bits // 8)
    codes = BinaryIndex.from_codes(packed, ids, bits)
    if meta.get("complete") and not store.readonly:  # a read-only index searches from memory
        path = codes_path(index_dir, int(meta.get("generation", 0)))
        try:
            codes.save(path)
            store.set_meta(codes_file={"name": path.name, "signature": file_signature(path)})
        except (OSError, IndexStateError, DiskFullError) as err:  # read-only or full: search
            # from memory
            LOG.warning("cannot cache %s (%s)", path, err)
    return codes


def open_index(index_dir: str | os.PathLike, expect: dict | None = None,
               allow_incomplete: bool = False) -> Index:
    """Open an index for search. ``expect`` = the searching model's info (backbone, bits,
    heads_sha): another model raises ``ModelMismatchError``. An interrupted build raises
    ``IndexStateError`` unless ``allow_incomplete`` (then search sees the committed units).
    A missing or damaged faiss file is rebuilt from the store."""
    index_dir = Path(index_dir)
    store = Store(index_dir)
    try:
        meta = store.meta()
        if "model" not in meta:
            raise IndexStateError(f"The index at {index_dir} holds nothing yet: index a folder "
                                  "into it first.", code="index_empty")
        check_model(meta["model"], expect, index_dir)
        if not meta.get("complete") and not allow_incomplete:
            raise IndexStateError(
                f"An indexing run into {index_dir} was interrupted: index the same folders "
                "again to finish it.", code="index_incomplete")
        codes = _load_codes(store, meta, index_dir) or _rebuild_codes(store, meta, index_dir)
        return Index(store, codes, meta)
    except BaseException:
        store.close()
        raise
