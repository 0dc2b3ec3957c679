"""Build or update an index: find rasters, tile them, encode, commit per source.

A reader thread tiles rasters into a bounded queue while the caller's ``encoder`` runs on
batches in this thread (rasterio and torch both release the GIL), so reading overlaps encoding.
Batches span sources, so folders of small images still encode in full batches.

Safety: each source's tiles are committed in one SQLite transaction once all of them are
encoded; the ``complete`` flag is set only after the faiss file for the store's generation is
written. A killed or cancelled run resumes: committed sources are unchanged, the rest are redone.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model_runtime.errors import CancelledError, ConfigError, DataError
from model_runtime.index.binary import BinaryIndex, pack
from model_runtime.index.store import DB_NAME, Store, check_model, content_hash
from model_runtime.tiling import (
    TilingOptions,
    count_windows,
    find_rasters,
    iter_tiles,
    raster_info,
)

LOG = logging.getLogger(__name__)

#: ``encoder(list of HxWx3 uint8) -> (packed codes uint8 [N, bits//8], tanh floats [N, bits] or None)``
Encoder = Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray | None]]
Progress = Callable[[dict], None]

CODES_PREFIX = "codes-g"


def codes_path(index_dir: str | os.PathLike, generation: int) -> Path:
    """The faiss file that mirrors the store at ``generation``."""
    return Path(index_dir) / f"{CODES_PREFIX}{generation}.faiss"


@dataclass(frozen=True)
class IndexSummary:
    """What an index run did. ``tiles`` is the index's total after the run."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: tuple[tuple[str, str], ...] = ()
    tiles: int = 0
    encoded: int = 0
    seconds: float = 0.0
    timing: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "tiles": self.tiles,
            "encoded": self.encoded,
            "seconds": round(self.seconds, 2),
        }


def _model_info(model_info: dict) -> dict:
    missing = [k for k in ("backbone", "bits") if k not in model_info]
    if missing:
        raise ConfigError(f"model_info lacks {missing}: give backbone, bits and heads_sha")
    info = dict(model_info)
    info["bits"] = int(info["bits"])
    if info["bits"] % 8:
        raise ConfigError(f"bits must be a multiple of 8, got {info['bits']}")
    return info


def finalize(store: Store, bits: int, pending: int = 0) -> int:
    """Write the faiss file for the store's current generation, then mark the index complete.

    ``complete`` means the code index and the store agree, so search is safe. ``pending`` counts
    the files a cancelled run did not reach: the index says so (``partial``) and the next run
    indexes them. Returns the tile count. Older faiss files are removed after the new one is in
    place."""
    meta = store.meta()
    generation = int(meta.get("generation", 0))
    path = codes_path(store.dir, generation)
    ids, codes = store.all_codes(bits // 8)
    if not path.exists():
        BinaryIndex.from_codes(codes, ids, bits).save(path)
    for old in store.dir.glob(f"{CODES_PREFIX}*.faiss"):
        if old != path:
            old.unlink(missing_ok=True)
    store.set_meta(complete=True, tiles=len(ids), generation=generation,
                   partial={"pending_files": pending} if pending else None)
    return len(ids)


class _Pending:
    """Tiles of one source between tiling and commit."""

    __slots__ = (
        "source",
        "windows",
        "valid",
        "fp",
        "fp_src",
        "codes",
        "feats",
        "queued",
        "ended",
        "status",
    )

    def __init__(self, source: dict, status: str) -> None:
        self.source = source
        self.status = status
        self.windows: list[tuple] = []
        self.valid: list[float] = []
        self.fp: list = []
        self.fp_src: list = []
        self.codes: list[np.ndarray] = []
        self.feats: list[np.ndarray] = []
        self.queued = 0  # tiles waiting in the current batch
        self.ended = False


def _reader(todo, options, out: queue.Queue, stop: threading.Event) -> None:
    """Tile every source of ``todo`` into ``out``; never raises (errors are queued)."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    try:
        for path, status in todo:
            if stop.is_set():
                return
            try:
                stat = os.stat(path)
                sha1 = content_hash(path)
                info = raster_info(path, options)
                source = {
                    "path": str(path),
                    "size": stat.st_size,
                    "mtime": stat.st_mtime,
                    "sha1": sha1,
                    "crs": info.crs,
                    "width": info.width,
                    "height": info.height,
                    "info": {
                        "bands": list(info.bands),
                        "dtype": info.dtype,
                        "stretch": info.stretch and [list(s) for s in info.stretch],
                        "tile_px": info.tile_px,
                    },
                }
                if not put(("begin", str(path), source, status)):
                    return
                for rgb, tile in iter_tiles(path, options, stop, info=info):
                    if not put(("tile", str(path), rgb, tile)):
                        return
                if not put(("end", str(path))):
                    return
            except CancelledError:
                return
            except (DataError, OSError) as err:
                reason = str(err) if isinstance(err, DataError) else f"{path}: {err}"
                if not put(("error", str(path), reason)):
                    return
    except BaseException as err:  # a bug in tiling must reach the caller, not vanish
        put(("crash", err))
    finally:
        put(("finished",))


def build_index(
    index_dir: str | os.PathLike,
    paths: Iterable[str | os.PathLike],
    options: TilingOptions | None,
    encoder: Encoder,
    model_info: dict,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    batch_size: int = 32,
    store_floats: bool = True,
    rebuild: bool = False,
    queue_tiles: int = 128,
) -> IndexSummary:
    """Index ``paths`` (files or folders) into ``index_dir``; incremental and resumable.

    ``model_info`` = {"backbone", "bits", "heads_sha"}; an existing index built with another
    model raises ``ModelMismatchError`` (``rebuild=True`` starts over instead). Files that cannot
    be read are skipped and listed in the summary; ``cancel`` raises ``CancelledError`` after
    the sources committed so far are kept."""
    started = time.perf_counter()
    options = options or TilingOptions()
    info = _model_info(model_info)
    index_dir = Path(index_dir)
    if rebuild and (index_dir / DB_NAME).exists():
        LOG.info("rebuilding %s from scratch", index_dir)
        for name in os.listdir(index_dir):
            if name.startswith(DB_NAME) or name.startswith(CODES_PREFIX):
                target = index_dir / name
                shutil.rmtree(target) if target.is_dir() else target.unlink()
    store = Store(index_dir, create=True)
    try:
        return _build(
            store,
            paths,
            options,
            encoder,
            info,
            progress,
            cancel,
            batch_size,
            store_floats,
            queue_tiles,
            started,
        )
    finally:
        store.close()


def _classify(store: Store, files: Sequence[Path], retile: bool, skipped: list):
    """Split files into (todo [(path, 'added'|'updated')], unchanged count)."""
    known = store.sources()
    todo, unchanged = [], 0
    for path in files:
        key = str(path)
        try:
            stat = path.stat()
            row = known.get(key)
            if row is None or row.status != "done":
                todo.append((key, "added" if row is None else "updated"))
            elif retile:
                todo.append((key, "updated"))
            elif row.size == stat.st_size and row.mtime == stat.st_mtime:
                unchanged += 1
            elif row.size == stat.st_size and content_hash(path) == row.sha1:
                store.touch_source(key, stat.st_size, stat.st_mtime)  # touched, same content
                unchanged += 1
            else:
                todo.append((key, "updated"))
        except OSError as err:
            skipped.append((key, f"{key}: {err.strerror or err}"))
    return todo, unchanged


def _build(
    store,
    paths,
    options,
    encoder,
    info,
    progress,
    cancel,
    batch_size,
    store_floats,
    queue_tiles,
    started,
) -> IndexSummary:
    bits = info["bits"]
    meta = store.meta()
    check_model(meta.get("model"), info, store.dir)
    tiling = json.loads(json.dumps(options.to_json()))  # tuples -> lists, as stored
    retile = "tiling" in meta and meta["tiling"] != tiling
    if retile:
        LOG.info("tiling options changed: every source of %s is tiled again", store.dir)
    store.set_meta(
        model=info,
        tiling=options.to_json(),
        complete=False,
        created=meta.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
        store_floats=store_floats,
    )

    def report(stage: str, done: int, total: int, message: str = "") -> None:
        if progress is not None:
            progress({"stage": stage, "done": done, "total": total, "message": message})

    skipped: list[tuple[str, str]] = []
    files: list[Path] = []
    for raw in paths:
        try:
            files.extend(find_rasters([raw]))
        except DataError as err:
            skipped.append((str(raw), str(err)))
    files = sorted(set(files))
    report("scan", 0, len(files), f"{len(files)} raster file(s)")

    gone = [p for p in store.sources() if not os.path.exists(p)]
    removed = store.delete_sources(gone) if gone else 0
    todo, unchanged = _classify(store, files, retile, skipped)
    total = 0
    for path, _ in todo:  # headers only: the progress bar's total, an upper bound
        try:
            total += count_windows(path, options)
        except DataError:
            pass
    LOG.info("%s: %d to encode, %d unchanged, %d removed", store.dir, len(todo), unchanged, removed)

    status_of = dict(todo)
    counts = {"added": 0, "updated": 0}
    encoded = 0
    timing = {"encode_s": 0.0, "commit_s": 0.0, "wait_s": 0.0}
    pending: dict[str, _Pending] = {}
    batch: list[tuple[str, np.ndarray, object]] = []
    stop = threading.Event()
    tiles_q: queue.Queue = queue.Queue(maxsize=max(queue_tiles, batch_size))
    thread = threading.Thread(
        target=_reader, args=(todo, options, tiles_q, stop), name="cach-tiler", daemon=True
    )

    def encode_batch() -> None:
        nonlocal encoded
        if not batch:
            return
        t0 = time.perf_counter()
        codes, feats = encoder([rgb for _, rgb, _ in batch])
        timing["encode_s"] += time.perf_counter() - t0
        codes = np.asarray(codes, dtype=np.uint8).reshape(len(batch), -1)
        if codes.shape[1] != bits // 8:
            raise ConfigError(f"encoder returned {codes.shape[1] * 8}-bit codes, index has {bits}")
        if feats is not None:
            feats = np.asarray(feats, dtype=np.float32).reshape(len(batch), bits)
            if not np.array_equal(pack(feats), codes):
                raise ConfigError(
                    "encoder codes are not np.packbits(tanh > 0) of its floats; "
                    "see model_runtime/index/binary.py for the bit convention"
                )
        for i, (key, _, tile) in enumerate(batch):
            item = pending.get(key)
            if item is None:  # its source failed after this tile was read
                continue
            item.queued -= 1
            item.windows.append((*tile.window, tile.scale))
            item.valid.append(tile.valid)
            item.fp.append(tile.footprint)
            item.fp_src.append(tile.footprint_src)
            item.codes.append(codes[i])
            if store_floats and feats is not None:
                item.feats.append(feats[i])
        encoded += len(batch)
        batch.clear()
        report("encode", encoded, max(total, encoded), Path(key).name)

    def commit_ready() -> None:
        ready = [k for k, p in pending.items() if p.ended and p.queued == 0]
        if not ready:
            return
        t0 = time.perf_counter()
        with store.transaction() as tx:
            for key in ready:
                item = pending[key]
                codes = np.stack(item.codes) if item.codes else np.zeros((0, bits // 8), np.uint8)
                feats = np.stack(item.feats) if item.feats else None
                if feats is not None and len(feats) != len(codes):
                    feats = None
                store.replace_source(
                    tx, item.source, item.windows, item.valid, item.fp, item.fp_src, codes, feats
                )
        for key in ready:
            counts[pending.pop(key).status] += 1
        timing["commit_s"] += time.perf_counter() - t0

    thread.start()
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise CancelledError(
                    f"Indexing cancelled; {sum(counts.values())} file(s) were committed and are "
                    "searchable, the next 'cach index' run resumes from there."
                )
            t0 = time.perf_counter()
            try:
                item = tiles_q.get(timeout=0.2)
            except queue.Empty:
                timing["wait_s"] += time.perf_counter() - t0
                continue
            timing["wait_s"] += time.perf_counter() - t0
            kind = item[0]
            if kind == "tile":
                _, key, rgb, tile = item
                pending[key].queued += 1
                batch.append((key, rgb, tile))
                if len(batch) >= batch_size:
                    encode_batch()
                    commit_ready()
            elif kind == "begin":
                _, key, source, status = item
                pending[key] = _Pending(source, status)
            elif kind == "end":
                pending[item[1]].ended = True
                commit_ready()
            elif kind == "error":
                _, key, reason = item
                pending.pop(key, None)
                skipped.append((key, reason))
                LOG.warning("skipped %s", reason)
                if status_of.get(key) == "updated":  # its old tiles describe old content
                    removed += store.delete_sources([key])
            elif kind == "crash":
                raise item[1]
            elif kind == "finished":
                encode_batch()
                commit_ready()
                break
    except CancelledError:
        # A cancel is a user's choice, not a crash: what was committed stays searchable (the
        # previous index plus whole new files), the rest is marked pending for the next run.
        stop.set()
        thread.join(timeout=10)
        finalize(store, bits, pending=max(len(todo) - sum(counts.values()), 0))
        raise
    finally:
        stop.set()
        thread.join(timeout=10)

    report("finalize", encoded, max(total, encoded), "writing the code index")
    tiles = finalize(store, bits)
    seconds = time.perf_counter() - started
    report("done", encoded, max(total, encoded), f"{tiles} tiles")
    return IndexSummary(
        added=counts["added"],
        updated=counts["updated"],
        removed=removed,
        unchanged=unchanged,
        skipped=tuple(skipped),
        tiles=tiles,
        encoded=encoded,
        seconds=seconds,
        timing={k: round(v, 3) for k, v in timing.items()},
    )
