"""Index on a Ray cluster: the same work units as the local executor, run as Ray Data batches
over an actor pool that holds the model.

    cach index s3://bucket/ortho --index out/idx --executor ray [--ray-address HOST:PORT]

* The driver (this process) scans and plans exactly as the local run does (``scan.py``,
  ``units.plan_source``), so incremental runs behave the same: new or changed sources are
  encoded, gone ones dropped, finished units skipped.
* Units go to ``map_batches(EncodeUnits, batch_size=1)`` over an ``ActorPoolStrategy``: each
  actor loads the model once (the compiled CPU engine, or CUDA with ``num_gpus`` where the
  cluster has GPUs), reads its unit's windows (``/vsis3/`` for object storage, with the AWS/GDAL
  environment passed explicitly) and encodes them. A per-file failure comes back as a row, never
  as an exception that would abort the dataset.
* Every finished unit comes back as an immutable shard (``shards.py``), is written atomically
  under ``<index>/shards`` and listed in the manifest, then merged through the one
  ``IndexWriter`` (global tile ids, same store format). A killed driver loses no finished unit;
  the next run (Ray or local) merges the shards left and skips every committed unit.
* A watchdog: actors report each encoded batch to a small progress actor; when neither a
  batch nor a unit arrives for ``CACH_RAY_STALL_S`` seconds (an actor killed and never
  restarted, ray-project/ray#62746) the run stops with a clear message instead of waiting.

Settings (environment, all optional): ``CACH_RAY_ACTORS`` (pool size), ``CACH_RAY_CPUS``
(logical CPUs and encoder threads per actor, default 1), ``CACH_RAY_GPUS`` (GPUs per actor,
default 1 when the cluster has GPUs), ``CACH_RAY_STALL_S`` (600), ``CACH_RAY_NUM_CPUS`` (CPUs of
a local Ray started here, default all), ``CACH_RAY_OBJECT_STORE_MB`` (512 for a local Ray),
``CACH_RAY_START_WARN_S`` (60: a local Ray slower to start is reported).

A local Ray (no address) is private to the run: loopback only, its own token, gone with the
driver (``ray_local.py``). Shards left in an index folder are untrusted (``shards.py``).
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_runtime.errors import CancelledError, ConfigError, IndexStateError
from model_runtime.index.build import BuildOptions, clear_index, start_run
from model_runtime.index.ledger import RunLedger
from model_runtime.index.lock import IndexLock
from model_runtime.index.ray_local import joining, local_cluster
from model_runtime.index.scan import Todo
from model_runtime.index.shards import (
    ShardSet,
    decode_shard,
    encode_shard,
    run_identity,
)
from model_runtime.index.store import Store
from model_runtime.index.units import WorkUnit, encode_unit, failure, plan_source
from model_runtime.index.writer import IndexWriter
from model_runtime.protocol import IndexSummary, Skipped
from model_runtime.raster import remote
from model_runtime.settings import current

LOG = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "pip install -r requirements/ray.txt"
Progress = Callable[[dict], None]


# --------------------------------------------------------------------------- settings


def _int(value: str, default: int | None) -> int | None:
    return int(value) if value else default


@dataclass(frozen=True)
class RaySettings:
    """How the run uses Ray (``from_env`` reads the ``CACH_RAY_*`` variables)."""

    address: str | None = None
    actors: int | None = None  # default: the cluster's CPUs / cpus_per_actor, less a reserve
    cpus_per_actor: int = 1
    gpus_per_actor: float | None = None  # default: 1 when the cluster has GPUs
    stall_s: float = 600.0
    local_cpus: int | None = None
    object_store_mb: int = 512

    @classmethod
    def from_env(cls, address: str | None = None) -> RaySettings:
        env = current()
        return cls(address=address or env.ray_address or None,
                   actors=_int(env.ray_actors, None),
                   cpus_per_actor=_int(env.ray_cpus, 1) or 1,
                   gpus_per_actor=float(env.ray_gpus) if env.ray_gpus else None,
                   stall_s=float(env.ray_stall_s),
                   local_cpus=_int(env.ray_num_cpus, None),
                   object_store_mb=_int(env.ray_object_store_mb, 512) or 512)


def import_ray() -> Any:
    """The ``ray`` module, or one clear message when the extra is not installed."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT} "
                          "(or use --executor local).", code="extra_missing") from err
    return ray


@dataclass(frozen=True)
class ModelSpec:
    """How an actor builds the model (picklable; heads by path, so every node loads the same
    file)."""

    backbone: str
    heads: str
    device: str | None = None
    backend: str | None = None
    precision: str | None = None

    def __call__(self) -> Any:
        from model_runtime.model import load_model

        return load_model(self.backbone, heads=self.heads, device=self.device,
                          backend=self.backend, precision=self.precision)


# --------------------------------------------------------------------------- the cluster


def check_reachable(address: str) -> None:
    """One clear message when ``--ray-address`` (``HOST:PORT``, ``ray://HOST:PORT``) does not
    answer within 5 s; ``auto`` is left to Ray."""
    if address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: expected HOST:PORT, ray://HOST:PORT or "
                          "auto.", code="bad_value")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise ConfigError(
            f"Cannot reach the Ray cluster at {address} ({err.strerror or err}). Check the "
            "address ('ray status' on the head node) and the network, or leave out "
            "--ray-address to run a local Ray.", code="cluster_unreachable") from err


def _quiet_ray_data(ray: Any) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


@contextmanager
def ray_session(settings: RaySettings) -> Iterator[Any]:
    """Ray, started here (local: ``ray_local.py``, loopback only, its own token) or joined
    (``settings.address``); shut down afterwards when this call connected it. Ray's usage
    statistics stay off: indexing sends nothing anywhere."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if settings.address and "RAY_AUTH_MODE" not in os.environ and (
            os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"  # Ray sends a token to a named address only so
    ray = import_ray()
    if ray.is_initialized():  # a caller (bench, test) holds the session
        _quiet_ray_data(ray)
        yield ray
        return
    common = {"include_dashboard": False, "log_to_driver": False,
              "logging_level": logging.WARNING}
    if settings.address:
        with joining(settings.address):
            _join(ray, settings.address, common)
            _quiet_ray_data(ray)
            try:
                yield ray
            finally:
                ray.shutdown()
        return
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    # Ray starts its workers at niceness 15; the encoding actors are the run's main work and
    # would then lose every core to any other busy process (measured: 4 tiles/s against the
    # local executor's 40 on a loaded 2-core machine). The raylet reads this at start.
    os.environ.setdefault("RAY_worker_niceness", "0")
    with local_cluster(ray, num_cpus=settings.local_cpus,
                       object_store_memory=settings.object_store_mb * 2**20,
                       runtime_env={"env_vars": {"PYTHONPATH": path}}, **common):
        _quiet_ray_data(ray)
        yield ray


def _join(ray: Any, address: str, common: dict) -> None:
    check_reachable(address)
    try:
        ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(
            f"Cannot join the Ray cluster at {address} ({err}). If the cluster uses token "
            "authentication (Ray's default), set RAY_AUTH_TOKEN (or copy the head node's "
            "~/.ray/auth_token here).", code="cluster_unreachable") from err


def pool_shape(ray: Any, settings: RaySettings) -> tuple[int, int, float, int]:
    """(actors, CPUs reserved per actor, GPUs per actor, encoder threads per actor).

    With no count given, the actors reserve every CPU of the cluster but one (Ray Data hangs
    or stalls when actors reserve every CPU, ray-project/ray#44687), at least one actor; the
    cluster's cores are then shared out as encoder threads, so the spare logical CPU is not an
    idle core."""
    res = ray.cluster_resources()
    cpus, gpus = max(1, int(res.get("CPU", 1))), float(res.get("GPU", 0))
    per = max(1, settings.cpus_per_actor)
    gpu_each = settings.gpus_per_actor if settings.gpus_per_actor is not None else (
        1.0 if gpus >= 1 else 0.0)
    actors = settings.actors or max(1, (cpus - 1) // per)
    if gpu_each and not settings.actors:
        actors = max(1, min(actors, int(gpus // gpu_each)))
    return actors, per, gpu_each, max(per, cpus // actors)


# --------------------------------------------------------------------------- the actors


class ProgressBoard:
    """A tiny actor that encoding actors tell about every batch: live progress for the driver
    and the heartbeat its watchdog reads."""

    def __init__(self) -> None:
        self.actors: dict[int, list] = {}  # pid -> [last seen (monotonic), tiles, state]

    def tick(self, pid: int, tiles: int, state: str = "encoding") -> None:
        entry = self.actors.setdefault(pid, [0.0, 0, state])
        entry[0], entry[1], entry[2] = time.monotonic(), entry[1] + tiles, state

    def snapshot(self) -> dict[int, list]:
        now = time.monotonic()
        return {pid: [now - seen, tiles, state] for pid, (seen, tiles, state) in
                self.actors.items()}


class _Ticking:
    """The model, telling the progress board about every encoded batch."""

    def __init__(self, model: Any, tick: Callable[[int], None]) -> None:
        self._model, self._tick = model, tick

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode_images(self, images: Any) -> Any:
        out = self._model.encode_images(images)
        self._tick(len(out))
        return out


class EncodeUnits:
    """The Ray Data UDF: an actor that holds the model and turns units into shards. The
    environment (AWS credentials, GDAL options, threads) arrives explicitly: workers do not
    inherit the driver's."""

    def __init__(self, factory: Callable[[], Any], env: dict[str, str], batch_size: int,
                 board: Any, threads: int) -> None:
        from model_runtime.env import configure_process

        remote.apply_environment({**env, "CACH_ENCODER_THREADS": str(threads)})
        configure_process()
        self.pid, self.board, self.batch_size = os.getpid(), board, batch_size
        self._tick(0, "loading the model")
        self.model = _Ticking(factory(), self._tick)
        self.plans: dict[tuple, Any] = {}
        self._tick(0, "ready")

    def _tick(self, tiles: int, state: str = "encoding") -> None:
        if self.board is not None:
            self.board.tick.remote(self.pid, tiles, state)

    def _plan(self, unit: WorkUnit, signature: str, extra: dict) -> Any:
        key = (unit.source.uri, str(unit.source.version), repr(unit.options))
        if key not in self.plans:
            if len(self.plans) > 16:
                self.plans.clear()
            self.plans[key] = plan_source(unit.source, unit.options, signature=signature,
                                          extra=extra)
        return self.plans[key]

    def encode(self, payload: bytes) -> tuple[str, str, bytes, str, int]:
        """One unit -> (key, uri, shard bytes, error JSON, tiles); never raises."""
        import json

        unit, signature, extra = pickle.loads(payload)
        try:
            result = encode_unit(unit, self.model, self.batch_size,
                                 plan=self._plan(unit, signature, extra))
            if result.ok:
                return unit.key, unit.source.uri, encode_shard(result), "", len(result.rows)
            why = result.error
        except Exception as err:  # noqa: BLE001 - any failure of one file is that file's row
            why = failure(unit, err)
        return unit.key, unit.source.uri, b"", json.dumps(why.to_json()), 0

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        rows = [self.encode(bytes(p)) for p in batch["unit"]]
        return {"key": np.array([r[0] for r in rows]), "uri": np.array([r[1] for r in rows]),
                "shard": np.array([r[2] for r in rows], dtype=object),
                "error": np.array([r[3] for r in rows]),
                "tiles": np.array([r[4] for r in rows], dtype=np.int64)}


# --------------------------------------------------------------------------- the driver


def build_index_ray(index_dir: str | os.PathLike, paths: Sequence[str], heads: Any,
                    options: BuildOptions | None = None, backbone: str | None = None,
                    device: str | None = None, backend: str | None = None,
                    address: str | None = None, progress: Progress | None = None,
                    cancel: threading.Event | None = None, precision: str | None = None,
                    model_factory: Callable[[], Any] | None = None,
                    settings: RaySettings | None = None, images_per_s: float = 50.0
                    ) -> IndexSummary:
    """Index ``paths`` (folders, files, ``s3://`` prefixes) into ``index_dir`` on Ray with
    the model of ``heads`` (a ``HeadsRef``), or what ``model_factory`` builds in each actor.
    Same store, resume and incremental rules as ``build.build_index``."""
    options = options or BuildOptions()
    settings = settings or RaySettings.from_env(address)
    import_ray()  # one clear message before the index is touched
    if settings.address:
        check_reachable(settings.address)
    factory = model_factory or ModelSpec(  # the driver's choices travel with the spec
        backbone or heads.backbone, str(heads.path), device or current().device,
        backend or current().backend or None,
        precision or current().precision or None)
    started = time.perf_counter()
    os.makedirs(index_dir, exist_ok=True)
    with IndexLock(index_dir):
        if options.rebuild:
            clear_index(index_dir)
            ShardSet(index_dir, {}).discard()
        store = Store(index_dir, create=True)
        try:
            run = RayRun(Path(index_dir), store, heads, options, settings, factory, progress,
                         cancel)
            return run.execute([str(p) for p in paths], started, images_per_s)
        finally:
            store.close()


class RayRun:
    """One run of the Ray executor: scan and plan here, encode on the cluster, merge here."""

    def __init__(self, index_dir: Path, store: Store, heads: Any, options: BuildOptions,
                 settings: RaySettings, factory: Callable[[], Any], progress: Progress | None,
                 cancel: threading.Event | None) -> None:
        self.index_dir, self.store, self.heads = index_dir, store, heads
        self.options, self.settings, self.factory = options, settings, factory
        self.progress, self.cancel = progress, cancel
        self.info = heads.info().to_json()
        self.writer = IndexWriter(store, self.info)
        self.tiling = options.tiling.to_json()
        self.shards = ShardSet(index_dir, run_identity(self.info, self.tiling))
        self.ledger: RunLedger | None = None  # made once the scan is known
        self.seen: set[str] = set()
        self.total = self.live = 0
        self.timing = {"merge_s": 0.0, "plan_s": 0.0, "cluster_s": 0.0}

    def report(self, stage: str, done: int, total: int | None, message: str = "") -> None:
        if self.progress is not None:
            self.progress({"stage": stage, "done": done, "total": total, "message": message})

    def execute(self, paths: list[str], started: float, images_per_s: float) -> IndexSummary:
        scan = start_run(self.store, self.writer, paths, self.options, self.heads, self.report,
                         images_per_s)
        ledger = self.ledger = RunLedger(scan, self.writer)
        try:
            self.run_units(self.plan(scan.todo))
        except CancelledError:
            self.writer.finalize(pending_files=ledger.pending_files())
            raise
        tiles = self.writer.finalize()
        self.shards.clear()
        self.report("done", ledger.encoded, ledger.encoded, f"{tiles} tiles")
        return ledger.summary(tiles, time.perf_counter() - started, self.timing)

    # -- planning (here: one header read per source, a few at a time) ----------------------
    def _plan_one(self, todo: Todo) -> tuple[Todo, list[WorkUnit], Skipped | None]:
        opts = self.options
        try:
            plan = plan_source(todo.source, opts.tiling, opts.unit_tiles, todo.signature,
                               todo.extra)
        except Exception as err:  # noqa: BLE001 - a bad file is skipped, whatever GDAL raised
            return todo, [], failure(WorkUnit(todo.source, 0, 0, opts.tiling), err)
        return todo, [u for u in plan.units if u.key not in todo.done], None

    def plan(self, todo: list[Todo]) -> list[bytes]:
        """Payloads of the units to encode; sources already complete are counted done."""
        t0, payloads = time.perf_counter(), []
        with ThreadPoolExecutor(max_workers=8) as pool:
            for item, units, error in pool.map(self._plan_one, todo):
                if error is not None:
                    self.ledger.fail(item.source.uri, error)
                    continue
                self.ledger.planned(item.source.uri, len(units))
                payloads += [pickle.dumps((u, item.signature, item.extra)) for u in units]
                self.total += sum(u.stop - u.start for u in units)
        self.timing["plan_s"] = time.perf_counter() - t0
        return payloads

    # -- results ----------------------------------------------------------------------------
    def handle(self, row: dict) -> None:
        """One unit back from the cluster: a shard to write and merge, or a file's failure."""
        import json

        key, uri, ledger = str(row["key"]), str(row["uri"]), self.ledger
        if key in self.seen or uri in ledger.failed:
            return  # a retried task delivered it twice, or its source already failed
        self.seen.add(key)
        if row["error"]:
            ledger.fail(uri, Skipped.from_json(json.loads(str(row["error"]))))
            return
        t0 = time.perf_counter()
        data, tiles = bytes(row["shard"]), int(row["tiles"])
        self.shards.add(key, uri, data, tiles)
        self.writer.commit(decode_shard(data))
        self.shards.remove(key)
        self.timing["merge_s"] += time.perf_counter() - t0
        ledger.encoded += tiles
        ledger.committed(uri)
        self.report("encode", max(ledger.encoded, self.live),
                    max(self.total, ledger.encoded, self.live), os.path.basename(uri))


    # -- the cluster ------------------------------------------------------------------------
    def run_units(self, payloads: list[bytes]) -> None:
        if not payloads:
            return
        self.shards.open()
        uris = sorted({pickle.loads(p)[0].source.uri for p in payloads})
        t0 = time.perf_counter()
        with ray_session(self.settings) as ray:
            actors, cpus, gpus, threads = pool_shape(ray, self.settings)
            LOG.info("ray: %d unit(s) on %d actor(s) x %d CPU (%d encoder threads), %s GPU",
                     len(payloads), actors, cpus, threads, gpus)
            board = ray.remote(num_cpus=0)(ProgressBoard).remote()
            ds = ray.data.from_items([{"unit": p} for p in payloads],
                                     override_num_blocks=len(payloads))
            ds = ds.map_batches(
                EncodeUnits, batch_size=1, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus,
                **({"num_gpus": gpus} if gpus else {}),
                fn_constructor_kwargs={"factory": self.factory, "batch_size":
                                       self.options.batch_size, "board": board,
                                       "threads": threads,
                                       "env": remote.worker_environment(uris)})
            self.consume(ray, ds, board)
        self.timing["cluster_s"] = time.perf_counter() - t0

    def consume(self, ray: Any, ds: Any, board: Any) -> None:
        """Merge units as they arrive; stop on cancel, on a crash, or when nothing moved for
        ``stall_s`` (ray-project/ray#62746: a dead actor that is never replaced)."""
        results: queue.Queue = queue.Queue(maxsize=16)
        stop = threading.Event()
        pump = threading.Thread(target=_pump, args=(ds, results, stop), daemon=True,
                                name="cach-ray-results")
        pump.start()
        last = next_poll = time.monotonic()
        try:
            while True:
                if self.cancel is not None and self.cancel.is_set():
                    raise self.ledger.cancelled()
                try:
                    kind, item = results.get(timeout=1.0)
                except queue.Empty:
                    kind, item = "wait", None
                now = time.monotonic()
                if kind == "row":
                    self.handle(item)
                    last = now
                elif kind == "end":
                    return
                elif kind == "crash":
                    raise _crashed(item) from item
                if now >= next_poll:
                    last, next_poll = max(last, self._heartbeat(ray, board)), now + 5.0
                if now - last > self.settings.stall_s:
                    raise self._stalled(ray, board, now - last)
        finally:
            stop.set()

    def _heartbeat(self, ray: Any, board: Any) -> float:
        """When an actor last encoded a batch (driver's monotonic clock); 0 if unknown."""
        try:
            snap = ray.get(board.snapshot.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - the board is only a hint
            return 0.0
        if not snap:
            return 0.0
        self.live = max(self.live, sum(v[1] for v in snap.values()))
        done = max(self.ledger.encoded, self.live)
        self.report("encode", done, max(self.total, self.live), "")
        return time.monotonic() - min(v[0] for v in snap.values())

    def _stalled(self, ray: Any, board: Any, idle: float) -> IndexStateError:
        try:
            snap = ray.get(board.snapshot.remote(), timeout=10)
        except Exception:  # noqa: BLE001
            snap = {}
        who = "; ".join(f"actor pid {pid}: {state}, last heard {age:.0f} s ago"
                        for pid, (age, _tiles, state) in sorted(snap.items())) or "no actor "\
            "ever started"
        return IndexStateError(
            f"The Ray run made no progress for {idle:.0f} s ({who}): an encoding actor died "
            "or hangs and Ray did not replace it (ray-project/ray#62746). The units finished "
            "so far are kept; run the same command again to resume.", code="index_incomplete")


def _pump(ds: Any, results: queue.Queue, stop: threading.Event) -> None:
    """Feed the dataset's rows to the driver's loop (a thread, so the loop can time out)."""
    try:
        for row in ds.iter_rows():
            while not stop.is_set():
                try:
                    results.put(("row", row), timeout=0.5)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        results.put(("end", None))
    except BaseException as err:  # noqa: BLE001 - handed to the driver's loop
        if not stop.is_set():
            results.put(("crash", err))


def _crashed(err: BaseException) -> Exception:
    """A Ray failure as one message (the cause's first line, not Ray's traceback)."""
    cause = getattr(err, "cause", None) or err
    if isinstance(cause, (ConfigError, IndexStateError)):
        return cause
    text = (str(cause).strip().splitlines() or [type(cause).__name__])[-1][:400]
    return IndexStateError(f"The Ray run failed ({type(cause).__name__}: {text}). The units "
                           "finished so far are kept; run the same command again to resume.",
                           code="index_incomplete")

