"""Build or update an index on this machine: scan, plan units, read (threads) while encoding,
commit unit by unit, finalise.

Reader threads take work from one queue: a source (opened once to plan its units) or a unit
(its windows read at the model's input size). Tiles from every reader meet in a bounded queue;
the calling thread gathers them in batches that span units and sources (so folders of small
images still encode in full batches), hands each batch to the model's encoder lanes (up to
``lanes + 1`` batches in flight, results taken in order) and commits each unit once all its
tiles are encoded. rasterio/GDAL and the inference engines release the GIL, so reading,
encoding on every lane and committing overlap.

Safety: one writer per index (``lock.py``); each unit is one transaction; ``complete`` is set
only after the faiss file of the final generation is written. A kill loses at most the units in
flight; a cancel keeps what was committed and says how many files are pending.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_runtime.errors import CancelledError, ConfirmationNeeded, DiskFullError
from model_runtime.index.ledger import RunLedger
from model_runtime.index.lock import IndexLock, refuse_system_folder
from model_runtime.index.roots import holdings, normalize_root, plan_run
from model_runtime.index.scan import Scan, Todo, apply_scan, scan_sources
from model_runtime.index.shards import ShardSet, merge_leftovers
from model_runtime.index.store import DB_NAME, Store
from model_runtime.index.units import (
    UNIT_TILES,
    SourcePlan,
    UnitResult,
    WorkUnit,
    assemble,
    failure,
    plan_from,
    read_unit,
)
from model_runtime.index.writer import CODES_PREFIX, IndexWriter
from model_runtime.protocol import CONFIRM_ABOVE_TILES, Estimate, IndexSummary, Skipped
from model_runtime.raster.tiling import TilingOptions, opened, tiles_of

LOG = logging.getLogger(__name__)

Progress = Callable[[dict], None]
#: stored bytes per tile besides codes, floats and projection (sqlite row, footprints, rtree)
META_BYTES_PER_TILE = 650


@dataclass(frozen=True)
class BuildOptions:
    """How an index run behaves (the tiling options are part of the index)."""

    tiling: TilingOptions = field(default_factory=TilingOptions)
    rebuild: bool = False
    confirm: bool = False
    allow_outside_sources: bool = False
    #: tiles per encoder call; None: the model's preferred batch (32 on the CPU, 512 on CUDA)
    batch_size: int | None = None
    readers: int = 1
    unit_tiles: int = UNIT_TILES
    queue_tiles: int = 256


def _reporter(progress: Progress | None) -> Callable[..., None]:
    def report(stage: str, done: int, total: int | None, message: str = "") -> None:
        if progress is not None:
            progress({"stage": stage, "done": done, "total": total, "message": message})

    return report


def clear_index(index_dir: str | os.PathLike) -> None:
    """Remove an index's database and code files (``--rebuild``); other files stay."""
    for name in os.listdir(index_dir):
        if name.startswith(DB_NAME) or name.startswith(CODES_PREFIX):
            target = os.path.join(index_dir, name)
            shutil.rmtree(target) if os.path.isdir(target) else os.unlink(target)


def estimate(scan: Scan, bits: int, proj_dim: int, images_per_s: float) -> Estimate:
    """What the run would do: files, tiles to encode, bytes added, seconds."""
    per_tile = bits // 8 + 2 * bits + 2 * proj_dim + META_BYTES_PER_TILE
    tiles = scan.new_tiles
    return Estimate(files=len(scan.todo), tiles=tiles, new_tiles=tiles, bytes=tiles * per_tile,
                    seconds=tiles / max(images_per_s, 1e-9), skipped=tuple(scan.skipped))


def check_confirmation(scan: Scan, options: BuildOptions, est: Estimate) -> None:
    """Above :data:`CONFIRM_ABOVE_TILES` new tiles a run waits for an explicit go-ahead."""
    if options.confirm or scan.new_tiles <= CONFIRM_ABOVE_TILES:
        return
    hours = est.seconds / 3600
    raise ConfirmationNeeded(
        f"This run would encode about {scan.new_tiles:,} new tiles from {len(scan.todo)} "
        f"file(s) (about {hours:.1f} h on this machine, {est.bytes / 1e9:.1f} GB). Confirm to go "
        "ahead (cach index --yes), or index fewer or smaller files.",
        estimate=est.to_json(),
    )


def build_index(index_dir: str | os.PathLike, paths: Sequence[str], model: Any,
                options: BuildOptions | None = None, progress: Progress | None = None,
                cancel: threading.Event | None = None, images_per_s: float = 50.0
                ) -> IndexSummary:
    """Index ``paths`` (files, folders) into ``index_dir`` with ``model`` (a ``HashModel``):
    incremental (new and changed files encoded, gone files dropped) and resumable (finished
    units are skipped). Files that cannot be read are skipped and named in the summary."""
    options = options or BuildOptions()
    started = time.perf_counter()
    refuse_system_folder(index_dir)
    os.makedirs(index_dir, exist_ok=True)
    with IndexLock(index_dir):
        if options.rebuild:
            clear_index(index_dir)
            ShardSet(index_dir, {}).discard()
        store = Store(index_dir, create=True)
        try:
            return _build(store, paths, model, options, _reporter(progress), cancel,
                          images_per_s, started)
        finally:
            store.close()


def start_run(store: Store, writer: IndexWriter, paths: Sequence[str], options: BuildOptions,
              heads: Any, report: Callable[..., None], images_per_s: float,
              load: Callable[[], Any] | None = None) -> Scan:
    """What every executor does before encoding: scan the sources against the store, wait for
    confirmation of a large run (nothing written yet), load the model when there is work
    (``load``: a model that cannot load fails here, and the index is not left marked as being
    built), then mark the run begun and record the scan. Returns the scan, whose ``todo`` is the
    work."""
    tiling = options.tiling.to_json()
    roots = store.roots()
    # the rules of docs/indexing.md, "What an index holds", checked again under the lock
    plan = plan_run(store.meta().get("tiling"), roots, holdings(roots, store.sources().values()),
                    [str(p) for p in paths], tiling, options.confirm, rebuild=False)
    if plan.retile:
        LOG.info("tiling options changed: every root of %s is tiled again", store.dir)
    scan = scan_sources(store, plan.paths, options.tiling, plan.retile,
                        options.allow_outside_sources, roots)
    check_confirmation(scan, options, estimate(scan, heads.bits, heads.proj_dim, images_per_s))
    if scan.todo and load is not None:
        load()
    scan.roots_added = writer.begin(tiling, [normalize_root(p) for p in paths])
    apply_scan(store, scan)
    merge_leftovers(writer, writer.model, tiling, scan)  # shards a killed Ray run left
    report("scan", 0, len(scan.todo), f"{len(scan.todo)} file(s) to index, "
           f"{scan.unchanged} unchanged, {scan.removed} removed")
    return scan


def _build(store: Store, paths: Sequence[str], model: Any, options: BuildOptions,
           report: Callable[..., None], cancel: threading.Event | None, images_per_s: float,
           started: float) -> IndexSummary:
    writer = IndexWriter(store, model.info.to_json())  # model identity: nothing loads yet
    scan = start_run(store, writer, paths, options, model.heads, report, images_per_s,
                     load=getattr(model, "load", None))
    ledger = RunLedger(scan, writer)
    run = LocalRun(scan, model, ledger, options, report, cancel)
    try:
        run.execute()
    except CancelledError:
        writer.finalize(pending_files=ledger.pending_files())
        raise
    except DiskFullError:  # what was committed stays searchable, as after a cancel
        writer.keep_searchable(max(1, ledger.pending_files()))
        raise
    report("finalize", ledger.encoded, ledger.encoded, "writing the code index")
    try:
        tiles = writer.finalize()
    except DiskFullError:
        writer.keep_searchable(0)
        raise
    report("done", ledger.encoded, ledger.encoded, f"{tiles} tiles")
    return ledger.summary(tiles, time.perf_counter() - started, run.timing)


class _UnitTiles:
    """Tiles of one unit between reading and commit."""

    __slots__ = ("unit", "plan", "tiles", "tanh", "proj", "queued", "ended")

    def __init__(self, unit: WorkUnit, plan: SourcePlan) -> None:
        self.unit, self.plan = unit, plan
        self.tiles: list = []
        self.tanh: list[np.ndarray] = []
        self.proj: list[np.ndarray] = []
        self.queued = 0
        self.ended = False

    def result(self, bits: int) -> UnitResult:
        tanh = np.stack(self.tanh) if self.tanh else np.zeros((0, bits), np.float32)
        proj = np.stack(self.proj) if self.proj else None
        return UnitResult(self.unit, self.plan.meta, assemble(self.tiles, tanh, proj))


class _Work:
    """The readers' shared work: sources to plan, then their units (put at the front, so a
    file's units are read together). ``take`` waits while another reader is still planning a
    source whose units may follow, so one large file is read by every reader."""

    def __init__(self, todo: list[Todo]) -> None:
        self._items: deque = deque(("source", t) for t in todo)
        self._cond = threading.Condition()
        self._planning = 0

    def take(self, stop: threading.Event) -> tuple | None:
        with self._cond:
            while not self._items and self._planning and not stop.is_set():
                self._cond.wait(0.2)
            if not self._items or stop.is_set():
                return None
            item = self._items.popleft()
            self._planning += item[0] == "source"
            return item

    def planned(self, units: list[tuple]) -> None:
        """A source's plan is done: its units (maybe none) join the front of the queue."""
        with self._cond:
            self._items.extendleft(reversed(units))
            self._planning -= 1
            self._cond.notify_all()


class LocalRun:
    """One run of the local executor over a scan's sources; what it did goes to ``ledger``."""

    def __init__(self, scan: Scan, model: Any, ledger: RunLedger, options: BuildOptions,
                 report: Callable[..., None], cancel: threading.Event | None) -> None:
        self.scan, self.model, self.ledger, self.options = scan, model, ledger, options
        self.writer = ledger.writer
        self.report, self.cancel = report, cancel
        self.total = max(scan.new_tiles, 1)
        self.stop = threading.Event()
        self._batch_size = options.batch_size
        self.tiles_q: queue.Queue = queue.Queue(maxsize=max(options.queue_tiles,
                                                            options.batch_size or 0))
        self.work = _Work(scan.todo)
        self.units: dict[str, _UnitTiles] = {}
        self.batch: list[tuple[str, np.ndarray, Any]] = []
        #: batches handed to the encoder, oldest first: (its tiles, future of its outputs)
        self.inflight: deque[tuple[list, Future]] = deque()
        #: encode_s: wall time with a batch in the encoder; wait_s: waiting for tiles;
        #: encoder_wait_s: waiting for the oldest batch's result
        self.timing = {"encode_s": 0.0, "wait_s": 0.0, "encoder_wait_s": 0.0}
        self._busy_lock = threading.Lock()
        self._running, self._busy_from = 0, 0.0

    @property
    def batch_size(self) -> int:
        """The option, else the model's preferred batch (asked when the first tile arrives, so
        a run that encodes nothing loads no model)."""
        if self._batch_size is None:
            self._batch_size = int(getattr(self.model, "preferred_batch", 32) or 32)
        return self._batch_size

    # -- readers ---------------------------------------------------------------------------
    def _put(self, item: tuple) -> bool:
        while not self.stop.is_set():
            try:
                self.tiles_q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _plan(self, todo: Todo) -> None:
        """Open the source once: plan its units and, when it is a single unit (a folder of
        scenes: most sources), read it right away from the same open raster."""
        try:
            with opened(todo.source.gdal_path, self.options.tiling) as (src, info):
                plan = plan_from(todo.source, info, self.options.tiling, self.options.unit_tiles,
                                 todo.signature, todo.extra)
                units = [u for u in plan.units if u.key not in todo.done]
                # announced before any of its units can be read by another reader
                self._put(("source", todo.source.uri, len(units)))
                if len(units) == 1:
                    self.work.planned([])
                    self._read(units[0], plan, src)
                    return
                self.work.planned([("unit", u, plan) for u in units])
        except Exception as err:  # noqa: BLE001 - a bad file is skipped, whatever GDAL raised
            self.work.planned([])
            self._put(("error", todo.source.uri, failure(WorkUnit(todo.source, 0, 0,
                                                                  self.options.tiling), err)))

    def _read(self, unit: WorkUnit, plan: SourcePlan, src: Any = None) -> None:
        """Queue the tiles of one unit (from ``src`` when the raster is open already)."""
        if not self._put(("begin", unit, plan)):
            return
        try:
            tiles = (read_unit(unit, plan.info, self.stop) if src is None
                     else tiles_of(src, plan.info, unit.options, self.stop, unit.span))
            for rgb, tile in tiles:
                if not self._put(("tile", unit.key, rgb, tile)):
                    return
        except CancelledError:
            return
        except Exception as err:  # noqa: BLE001 - the file is skipped with its reason
            self._put(("error", unit.source.uri, failure(unit, err)))
            return
        self._put(("end", unit.key))

    def _reader(self) -> None:
        try:
            while (item := self.work.take(self.stop)) is not None:
                if item[0] == "source":
                    self._plan(item[1])
                else:
                    self._read(item[1], item[2])
        except BaseException as err:  # a bug in tiling must reach the caller, not vanish
            self._put(("crash", err))
        finally:
            self._put(("finished",))

    # -- the encoding thread ---------------------------------------------------------------
    def execute(self) -> None:
        """Run the readers and encode until every unit is committed (or cancel/crash)."""
        count = max(1, min(self.options.readers, len(self.scan.todo) or 1))
        threads = [threading.Thread(target=self._reader, name=f"cach-reader-{i}", daemon=True)
                   for i in range(count)]
        for thread in threads:
            thread.start()
        try:
            finished = 0
            while finished < count:
                if self.cancel is not None and self.cancel.is_set():
                    raise self.ledger.cancelled()
                item = self._next()
                if item is not None:
                    finished += self._handle(item)
                self._collect(keep=len(self.inflight))
            self._encode()
            self._collect(keep=0)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=10)
            for _, future in self.inflight:  # a cancel or crash: let running batches end
                future.cancel() or future.exception()

    def _next(self) -> tuple | None:
        t0 = time.perf_counter()
        try:
            return self.tiles_q.get(timeout=0.2)
        except queue.Empty:
            return None
        finally:
            self.timing["wait_s"] += time.perf_counter() - t0

    def _handle(self, item: tuple) -> int:
        """Act on one reader message; returns 1 when a reader finished."""
        kind = item[0]
        if kind == "tile":
            _, key, rgb, tile = item
            if key in self.units:
                self.units[key].queued += 1
                self.batch.append((key, rgb, tile))
                if len(self.batch) >= self.batch_size:
                    self._encode()
        elif kind == "begin":
            self.units[item[1].key] = _UnitTiles(item[1], item[2])
        elif kind == "end":
            if item[1] in self.units:
                self.units[item[1]].ended = True
                self._commit_ready()
        elif kind == "source":
            self.ledger.planned(item[1], item[2])
        elif kind == "error":
            self._source_failed(item[1], item[2])
        elif kind == "crash":
            raise item[1]
        return int(kind == "finished")

    def _source_failed(self, uri: str, why: Skipped) -> None:
        """Skip the source and forget its units being gathered (their tiles are not kept)."""
        if self.ledger.fail(uri, why):
            for key in [k for k, u in self.units.items() if u.unit.source.uri == uri]:
                del self.units[key]

    def _encode(self) -> None:
        """Hand the gathered batch to the encoder; keeps at most ``lanes + 1`` in flight."""
        if not self.batch:
            return
        items, self.batch = self.batch, []
        self.inflight.append((items, self._submit(np.stack([rgb for _, rgb, _ in items]))))
        self._collect(keep=getattr(self.model, "lanes", 1))

    def _submit(self, pixels: np.ndarray) -> Future:
        """The model's future for ``pixels``; the encoder's busy time (some batch in flight)
        is counted from its callbacks."""
        with self._busy_lock:
            if self._running == 0:
                self._busy_from = time.perf_counter()
            self._running += 1
        future = self.model.submit_images(pixels)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _future: Future) -> None:
        with self._busy_lock:
            self._running -= 1
            if self._running == 0:
                self.timing["encode_s"] += time.perf_counter() - self._busy_from

    def _collect(self, keep: int) -> None:
        """Take the finished batches in order; wait for the oldest while more than ``keep``
        are in flight."""
        while self.inflight and (len(self.inflight) > keep or self.inflight[0][1].done()):
            items, future = self.inflight.popleft()
            t0 = time.perf_counter()
            out = future.result()
            self.timing["encoder_wait_s"] += time.perf_counter() - t0
            self._apply(items, out)
            self._commit_ready()

    def _apply(self, items: list, out: Any) -> None:
        for i, (key, _, tile) in enumerate(items):
            acc = self.units.get(key)
            if acc is None:  # its source failed after this tile was read
                continue
            acc.queued -= 1
            acc.tiles.append(tile)
            acc.tanh.append(out.tanh[i])
            if out.proj is not None:
                acc.proj.append(out.proj[i])
        self.ledger.encoded += len(items)
        encoded, name = self.ledger.encoded, os.path.basename(items[-1][2].source)
        self.report("encode", encoded, max(self.total, encoded), name)

    def _commit_ready(self) -> None:
        ready = [k for k, u in self.units.items() if u.ended and u.queued == 0]
        for key in ready:
            acc = self.units.pop(key)
            self.writer.commit(acc.result(self.model.bits))
            self.ledger.committed(acc.unit.source.uri)
