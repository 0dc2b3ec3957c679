"""The JSON-lines worker: ``python -m model_runtime.worker`` or ``cach serve --stdio``.

It prints a ``ready`` event at once (before torch is imported), then reads one request per line
from stdin. Long requests (search, caption, locate, index, load) run one at a time in a background
thread; ``status``, ``cancel`` and ``shutdown`` are answered at once. Every request gets exactly one
response; malformed lines get a ``protocol`` error and the worker keeps serving. stdout carries
only protocol lines: at start-up file descriptor 1 is re-pointed to stderr, so stray prints from
libraries (C or Python) cannot corrupt the stream. See ``docs/protocol.md``.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from model_runtime import __version__
from model_runtime.errors import CancelledError
from model_runtime.protocol import (
    PROTOCOL_VERSION,
    Event,
    ProtocolError,
    Request,
    Response,
    parse_request,
)

LOG = logging.getLogger(__name__)

#: a background task is given this long to notice a cancel before the process exits anyway
SHUTDOWN_GRACE_S = 10.0


@dataclass
class _Job:
    request: Request
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float | None = None


class Worker:
    """Serves requests from ``stdin`` on ``stdout`` with one :class:`~model_runtime.pipeline.Runtime`.

    ``runtime`` may be any object with the pipeline's methods (tests pass a fake one); by default
    a Runtime is built lazily from ``runtime_kwargs`` so ``ready`` goes out before torch loads.
    """

    def __init__(
        self,
        out: IO[str],
        runtime: Any = None,
        runtime_kwargs: dict[str, Any] | None = None,
        preload: bool = True,
    ) -> None:
        self._out = out
        self._out_lock = threading.Lock()
        self._runtime = runtime
        self._runtime_kwargs = runtime_kwargs or {}
        self._runtime_lock = threading.Lock()
        self._preload = preload
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._current: _Job | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run_jobs, name="cach-worker", daemon=True)
        self._handlers: dict[str, Callable[[_Job], dict[str, Any]]] = {
            "search": self._op_search,
            "caption": self._op_caption,
            "locate": self._op_locate,
            "index": self._op_index,
            "load": self._op_load,
        }

    # --- output ----------------------------------------------------------------------------------
    def send(self, message: Response | Event) -> None:
        """Write one protocol line; safe from any thread."""
        try:
            line = message.to_json()
        except (TypeError, ValueError) as err:  # a result that is not JSON: still answer
            LOG.exception("cannot serialise response")
            line = Response.failure(
                getattr(message, "id", None), "internal", f"unserialisable result: {err}"
            ).to_json()
        with self._out_lock:
            self._out.write(line + "\n")
            self._out.flush()

    # --- runtime ---------------------------------------------------------------------------------
    @property
    def runtime(self) -> Any:
        """The pipeline, created on first need (imports stay out of start-up)."""
        with self._runtime_lock:
            if self._runtime is None:
                from model_runtime.pipeline import Runtime

                self._runtime = Runtime(**self._runtime_kwargs)
            return self._runtime

    def _device_hint(self) -> str:
        if self._runtime is not None:
            return str(getattr(self._runtime, "device_name", "auto"))
        return self._runtime_kwargs.get("device") or os.environ.get("CACH_DEVICE") or "auto"

    # --- main loop -------------------------------------------------------------------------------
    def serve(self, stdin: IO[str]) -> int:
        """Print ``ready``, answer requests until ``shutdown`` or end of input; returns exit code."""
        self._thread.start()
        self.send(
            Event(
                None,
                "ready",
                {
                    "version": __version__,
                    "protocol": PROTOCOL_VERSION,
                    "device": self._device_hint(),
                    "pid": os.getpid(),
                },
            )
        )
        if self._preload:
            # queued like a request with id None: later requests wait for it instead of racing it
            self._enqueue(_Job(Request(None, "load", {"_preload": True})))
        for raw in stdin:
            line = raw.strip()
            if not line:
                continue
            if not self._dispatch(line):
                break
        else:
            LOG.info("stdin closed; shutting down")
        self._stop()
        return 0

    def _dispatch(self, line: str) -> bool:
        """Handle one line; returns False when the worker must stop."""
        try:
            request = parse_request(line)
        except ProtocolError as err:
            LOG.warning("protocol error: %s", err)
            self.send(Response.failure(err.request_id, "protocol", str(err)))
            return True
        if request.op == "status":
            self.send(Response.success(request.id, self.status()))
        elif request.op == "cancel":
            target = request.params["target"]
            cancelled, dropped = self.cancel(target)
            self.send(Response.success(request.id, {"cancelled": cancelled}))
            if dropped:  # the protocol promises: cancel's answer first, then the target's end
                self.send(Response.failure(target, "cancelled", "Cancelled before it started."))
        elif request.op == "shutdown":
            self._cancel_all()
            self.send(Response.success(request.id, {"bye": True}))
            return False
        else:
            if self._is_in_flight(request.id):
                self.send(
                    Response.failure(
                        request.id, "protocol", f"request id {request.id!r} is already in flight"
                    )
                )
                return True
            self._enqueue(_Job(request))
        return True

    def _enqueue(self, job: _Job) -> None:
        with self._cond:
            self._queue.append(job)
            self._cond.notify()

    def _is_in_flight(self, request_id: Any) -> bool:
        if request_id is None:
            return False
        with self._cond:
            jobs = list(self._queue) + ([self._current] if self._current else [])
        return any(j.request.id == request_id for j in jobs)

    def _cancel_all(self) -> None:
        """Stop taking work: queued requests end ``cancelled`` now, the running one is told to."""
        with self._cond:
            self._stopping = True
            dropped = list(self._queue)
            self._queue.clear()
            if self._current is not None:
                self._current.cancel.set()
            self._cond.notify_all()
        for job in dropped:
            if job.request.id is not None:
                self.send(Response.failure(job.request.id, "cancelled", "The worker shut down."))

    def _stop(self) -> None:
        self._cancel_all()
        self._thread.join(SHUTDOWN_GRACE_S)
        if self._thread.is_alive():
            LOG.warning(
                "background task did not stop within %.0f s; exiting anyway", SHUTDOWN_GRACE_S
            )

    # --- immediate ops ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self._cond:
            current = self._current
            queued = [j.request.id for j in self._queue if j.request.id is not None]
        rt = self._runtime
        info: dict[str, Any] = {
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "device": self._device_hint(),
            "backbone": self._runtime_kwargs.get("backbone") or "effnetlite0-minilm",
            "bits": self._runtime_kwargs.get("bits") or 64,
            "busy": current.request.id if current else None,
            "busy_op": current.request.op if current else None,
            "busy_s": round(time.monotonic() - current.started, 3)
            if current and current.started
            else None,
            "queued": queued,
            "models_loaded": [],
        }
        if rt is not None:
            # the Runtime's own status never blocks on a model load
            info.update(rt.status())
        return info

    def cancel(self, target: Any) -> tuple[bool, bool]:
        """Cancel a queued or running request: ``(cancelled, dropped from the queue)``.

        A running request notices at its next checkpoint and ends with error type ``cancelled``;
        the caller answers a dropped one.
        """
        with self._cond:
            for job in list(self._queue):
                if job.request.id == target:
                    self._queue.remove(job)
                    return True, True
            running = self._current
            if running is not None and running.request.id == target:
                running.cancel.set()
                return True, False
        return False, False

    # --- background thread -----------------------------------------------------------------------
    def _run_jobs(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                job.started = time.monotonic()
                self._current = job
            response = self._run_one(job)
            with self._cond:
                # decided under the lock that cancel() takes: a cancel acknowledged with
                # {"cancelled": true} always wins over a result, and once the job is no longer
                # current a cancel answers false, so a client never gets both
                if job.cancel.is_set() and response.ok and job.request.op != "load":
                    response = Response.failure(job.request.id, "cancelled", "Cancelled.")
                self._current = None
            LOG.debug(
                "done %s %r in %.3f s",
                job.request.op,
                job.request.id,
                time.monotonic() - (job.started or 0.0),
            )
            if job.request.id is not None:
                self.send(response)
            elif job.request.params.get("_preload"):  # the start-up preload answers nobody
                self._announce_loaded(response)

    def _run_one(self, job: _Job) -> Response:
        """Run one long request; every outcome becomes exactly one response."""
        request = job.request
        LOG.debug("start %s %r", request.op, request.id)
        try:
            if job.cancel.is_set():
                raise CancelledError("Cancelled.")
            return Response.success(request.id, self._handlers[request.op](job))
        except BaseException as err:  # the client must get an answer, whatever happened
            if not isinstance(err, Exception):
                LOG.error("%s %r interrupted: %r", request.op, request.id, err)
            elif not getattr(err, "kind", None):
                LOG.exception("%s %r failed", request.op, request.id)
            else:
                LOG.info("%s %r: %s", request.op, request.id, err)
            return Response.from_exception(request.id, err)

    def _announce_loaded(self, response: Response) -> None:
        if response.ok:
            self.send(Event(None, "loaded", dict(response.result or {})))
        else:
            assert response.error is not None
            LOG.warning("model preload failed: %s", response.error.message)
            self.send(Event(None, "load_failed", response.error.to_dict()))

    def _progress(self, job: _Job) -> Callable[[dict], None]:
        """A pipeline progress callback (``{"stage", "done", "total", "message"}``) that emits
        ``progress`` events: every stage change, otherwise at most ~10 per second."""
        last = {"t": 0.0, "stage": None}

        def progress(info: dict) -> None:
            now = time.monotonic()
            stage = str(info.get("stage") or "")
            if now - last["t"] < 0.1 and stage == last["stage"]:
                return
            last.update(t=now, stage=stage)
            total = info.get("total")
            self.send(
                Event(
                    job.request.id,
                    "progress",
                    {
                        "done": int(info.get("done") or 0),
                        "total": None if total is None else int(total),
                        "stage": stage,
                        "message": str(info.get("message") or ""),
                    },
                )
            )

        return progress

    # --- long ops: translate params -> pipeline call -> JSON -------------------------------------
    def _op_load(self, job: _Job) -> dict[str, Any]:
        params = {k: v for k, v in job.request.params.items() if not k.startswith("_")}
        return self.runtime.load(**params)

    def _op_search(self, job: _Job) -> dict[str, Any]:
        p = dict(job.request.params)
        result = self.runtime.search(
            p.pop("index"),
            text=p.get("text"),
            tile=p.get("tile"),
            image=p.get("image"),
            positive=p.get("positive") or (),
            negative=p.get("negative") or (),
            weights=p.get("weights"),
            k=p.get("k") or 20,
            bbox=p.get("bbox"),
            bbox_crs=p.get("bbox_crs") or "EPSG:4326",
            collapse=True if p.get("collapse") is None else p["collapse"],
            cancel=job.cancel,
        )
        return result.to_json()

    def _op_caption(self, job: _Job) -> dict[str, Any]:
        p = job.request.params
        result = self.runtime.caption(
            index_dir=p.get("index"),
            tile=p.get("tile"),
            image=p.get("image"),
            k=p.get("k") or 5,
            similar=5 if p.get("similar") is None else p["similar"],
            progress=self._progress(job),
            cancel=job.cancel,
        )
        return result.to_json()

    def _op_locate(self, job: _Job) -> dict[str, Any]:
        p = job.request.params
        hit = self.runtime.locate(p["index"], p["x"], p["y"], crs=p.get("crs") or "EPSG:4326")
        return {"tile": hit.to_json() if hit is not None else None}

    def _op_index(self, job: _Job) -> dict[str, Any]:
        p = dict(job.request.params)
        index_dir = p.pop("index")
        paths = p.pop("paths")
        dry_run = bool(p.pop("dry_run", False))
        rebuild = bool(p.pop("rebuild", False))
        bits = p.pop("bits", None)
        options = {k: v for k, v in p.items() if v is not None}
        return self.runtime.index(
            index_dir,
            paths,
            options,
            dry_run=dry_run,
            rebuild=rebuild,
            bits=bits,
            progress=self._progress(job),
            cancel=job.cancel,
        ).to_json()


def _protocol_stdout() -> IO[str]:
    """A private stream on the original stdout; fd 1 then points at stderr.

    Libraries that print (tqdm, warnings from C code, a stray ``print``) land on stderr and can
    never break a protocol line.
    """
    proto_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "w", encoding="utf-8", buffering=1)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Model options shared by every front end that builds a Runtime (CLI commands, worker)."""
    parser.add_argument("--backbone", default=None, help="backbone id (default effnetlite0-minilm)")
    parser.add_argument(
        "--bits",
        type=int,
        default=None,
        help="hash bits: for a new index (default 64); an existing index keeps its own",
    )
    parser.add_argument(
        "--heads", default=None, help="a heads .safetensors file instead of shipped"
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: $CACH_DEVICE, else auto)"
    )


def runtime_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``Runtime(**kwargs)`` from parsed :func:`add_model_arguments` options."""
    return {
        k: getattr(args, k)
        for k in ("backbone", "bits", "heads", "device")
        if getattr(args, k, None) is not None
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Worker options shared by ``python -m model_runtime.worker`` and ``cach serve``."""
    add_model_arguments(parser)
    parser.add_argument(
        "--no-preload",
        dest="preload",
        action="store_false",
        help="load the model on the first request instead of right after 'ready'",
    )


def serve_stdio(args: argparse.Namespace) -> int:
    """Run the worker on this process's stdin/stdout until shutdown."""
    out = _protocol_stdout()
    kwargs = runtime_kwargs(args)
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    worker = Worker(out, runtime_kwargs=kwargs, preload=args.preload)
    return worker.serve(stdin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_runtime.worker", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return serve_stdio(args)


if __name__ == "__main__":
    sys.exit(main())
