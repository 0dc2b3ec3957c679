"""The JSON-lines worker: ``cach serve --stdio`` (or ``python -m model_runtime.worker``).

Two processes. This one, the front, imports only the standard library and the protocol: it
prints ``ready`` at once, reads one request per line, answers ``status``, ``cancel`` and
``shutdown`` immediately, and hands long requests one at a time to a job process
(``worker_child.py``, which loads the model). Nothing a request does in the job process, a
C library holding its GIL in a loop included, can delay this one: ``status`` and ``cancel`` are
answered within milliseconds whatever a job is doing. A job that does not stop within
:data:`CANCEL_GRACE_S` of a cancel, or a job process that dies, is answered with an error and
the job process is restarted (the model reloads). Every request gets exactly one response.

stdout carries only protocol lines: at start-up file descriptor 1 is re-pointed to stderr (the
job process inherits that), so stray prints from libraries cannot corrupt the stream.
See ``docs/protocol.md``.
"""

from __future__ import annotations

import argparse
import collections
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from model_runtime import __version__
from model_runtime.protocol import (
    DEFAULT_BACKBONE,
    DEFAULT_BITS,
    MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    ErrorInfo,
    Event,
    ProtocolError,
    Request,
    Response,
    decode_request,
    line_too_long_message,
    parse_request,
)
from model_runtime.settings import current

LOG = logging.getLogger(__name__)

#: a running job is given this long to notice a cancel before its process is killed (a batch
#: in flight finishes first: seconds on a busy CPU)
CANCEL_GRACE_S = 15.0
#: at shutdown, a running job is given this long before the job process is killed
SHUTDOWN_GRACE_S = 10.0


#: bytes read at a time from stdin: a line longer than MAX_REQUEST_BYTES is skipped in chunks of
#: this size, never held whole
READ_CHUNK = 64 * 1024


class LineTooLong:
    """What :func:`read_lines` yields for a line over the cap: its size, never its text."""

    def __init__(self, size: int) -> None:
        self.size = size


def read_lines(stream: IO[bytes], max_bytes: int = MAX_REQUEST_BYTES
               ) -> Iterator[bytes | LineTooLong]:
    """The lines of a binary stream, newline stripped; a line longer than ``max_bytes`` is read
    through in :data:`READ_CHUNK` pieces and discarded, and a :class:`LineTooLong` stands for it,
    so memory stays bounded whatever arrives."""
    while True:
        parts: list[bytes] = []
        size, ended = 0, False
        while not ended:
            chunk = stream.readline(READ_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            ended = chunk.endswith(b"\n")
            if size <= max_bytes + 1:  # + 1: the newline does not count
                parts.append(chunk)
            else:
                parts.clear()  # over the cap: keep nothing, only count
        if not size:
            return
        text_size = size - 1 if ended else size
        yield LineTooLong(text_size) if text_size > max_bytes else b"".join(parts).rstrip(b"\n")


class JobProcessDied(Exception):
    """The job process exited while a job was running."""


class JobProcess:
    """The child that runs jobs: started on first need, killed and restarted when stuck."""

    def __init__(self, runtime_kwargs: dict[str, Any], log_level: int) -> None:
        self._kwargs = runtime_kwargs
        self._log_level = log_level
        self._ctx = multiprocessing.get_context("spawn")
        self.cancel = self._ctx.Event()
        self._proc: Any = None
        self._conn: Any = None
        self.status: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def start(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        from model_runtime.worker_child import run

        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=run, name="cach-jobs", daemon=True,
                                       args=(child, self.cancel, self._kwargs, self._log_level))
        self._proc.start()
        child.close()
        self._conn = parent

    def send(self, request: Request) -> None:
        self.start()
        self.cancel.clear()
        call = request.call or decode_request(request.op, request.params, request.id)
        self._conn.send(("job", request.id, call))

    def poll(self, timeout: float) -> tuple | None:
        """The next message of the job process, None on timeout; raises JobProcessDied."""
        try:
            if self._conn.poll(timeout):
                return self._conn.recv()
        except (EOFError, OSError) as err:
            raise JobProcessDied(str(err)) from None
        if not self._proc.is_alive():
            raise JobProcessDied(f"exit code {self._proc.exitcode}")
        return None

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self.status = {}

    def stop(self, grace: float) -> None:
        if self._proc is None:
            return
        try:
            self._conn.send(("stop",))
        except OSError:
            pass
        self._proc.join(grace)
        self.kill()


@dataclass
class _Job:
    request: Request
    cancelled: bool = False
    started: float | None = None
    preload: bool = False
    cancel_at: float | None = field(default=None, repr=False)


class Worker:
    """Serves requests from ``stdin`` on ``out``; long requests run in a :class:`JobProcess`."""

    def __init__(self, out: IO[str], runtime_kwargs: dict[str, Any] | None = None,
                 preload: bool = True, log_level: int = logging.INFO) -> None:
        self._out = out
        self._out_lock = threading.Lock()
        self._kwargs = runtime_kwargs or {}
        self._preload = preload
        self.jobs = JobProcess(self._kwargs, log_level)
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._current: _Job | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run_jobs, name="cach-dispatch", daemon=True)

    # --- output ----------------------------------------------------------------------------------
    def send(self, message: Response | Event) -> None:
        """Write one protocol line; safe from any thread."""
        try:
            line = message.to_json()
        except (TypeError, ValueError) as err:  # a result that is not JSON: still answer
            LOG.exception("cannot serialise response")
            line = Response.failure(getattr(message, "id", None), "internal",
                                    f"unserialisable result: {err}").to_json()
        with self._out_lock:
            self._out.write(line + "\n")
            self._out.flush()

    # --- main loop -------------------------------------------------------------------------------
    def serve(self, stdin: IO[bytes]) -> int:
        """Print ``ready``, answer requests until ``shutdown`` or end of input.

        ``stdin`` is binary: lines are read bounded (:func:`read_lines`) and decoded strictly, so
        a line that is not UTF-8 is ``bad_json``, not text with replacement characters."""
        self._thread.start()
        self.send(Event(None, "ready", {"version": __version__, "protocol": PROTOCOL_VERSION,
                                        "device": self._device_hint(), "pid": os.getpid()}))
        if self._preload:  # queued like a request: later requests wait behind it
            self._enqueue(_Job(Request(None, "load", {}), preload=True))
        for raw in read_lines(stdin):
            if isinstance(raw, LineTooLong):
                LOG.warning("protocol error: a request line of %d bytes was discarded", raw.size)
                self.send(Response.failure(None, "bad_json", line_too_long_message(raw.size)))
                continue
            line = raw.strip()
            if line and not self._dispatch(line):
                break
        else:
            LOG.info("stdin closed; shutting down")
        self._stop()
        return 0

    def _dispatch(self, line: bytes | str) -> bool:
        """Handle one line; returns False when the worker must stop."""
        try:
            request = parse_request(line)
        except ProtocolError as err:
            LOG.warning("protocol error: %s", err)
            self.send(Response.failure(err.request_id, err.code, str(err)))
            return True
        if request.op == "status":
            self.send(Response.success(request.id, self.status()))
        elif request.op == "cancel":
            self._cancel_request(request)
        elif request.op == "shutdown":
            self._cancel_all()
            self.send(Response.success(request.id, {"bye": True}))
            return False
        elif self._is_in_flight(request.id):
            self.send(Response.failure(request.id, "duplicate_id",
                                       f"request id {request.id!r} is already in flight"))
        else:
            self._enqueue(_Job(request))
        return True

    def _enqueue(self, job: _Job, front: bool = False) -> None:
        with self._cond:
            self._queue.appendleft(job) if front else self._queue.append(job)
            self._cond.notify()

    def _is_in_flight(self, request_id: Any) -> bool:
        if request_id is None:
            return False
        with self._cond:
            jobs = list(self._queue) + ([self._current] if self._current else [])
        return any(j.request.id == request_id for j in jobs)

    # --- immediate ops ---------------------------------------------------------------------------
    def _device_hint(self) -> str:
        return self._kwargs.get("device") or current().device

    def status(self) -> dict[str, Any]:
        with self._cond:
            current = self._current
            queued = [j.request.id for j in self._queue if j.request.id is not None]
        busy = current if current is not None and not current.preload else None
        info: dict[str, Any] = {
            "version": __version__, "protocol": PROTOCOL_VERSION, "pid": os.getpid(),
            "job_pid": self.jobs.pid, "device": self._device_hint(),
            "backbone": self._kwargs.get("backbone") or DEFAULT_BACKBONE,
            "bits": self._kwargs.get("bits") or DEFAULT_BITS,
            "busy": busy.request.id if busy else None,
            "busy_op": busy.request.op if busy else None,
            "busy_s": round(time.monotonic() - busy.started, 3) if busy and busy.started else None,
            "loading": bool(current is not None and current.preload),
            "queued": queued, "models_loaded": [], "indexes_open": [], "load_seconds": None,
        }
        info.update({k: v for k, v in self.jobs.status.items() if k not in ("version",)})
        return info

    def _cancel_request(self, request: Request) -> None:
        target = request.params["target"]
        dropped = None
        with self._cond:
            for job in list(self._queue):
                if job.request.id == target:
                    self._queue.remove(job)
                    dropped = job
                    break
            running = self._current if self._current is not None and not dropped else None
            hit = running is not None and running.request.id == target
            if hit:
                running.cancelled = True
                running.cancel_at = time.monotonic()
                self.jobs.cancel.set()
        self.send(Response.success(request.id, {"cancelled": bool(dropped or hit)}))
        if dropped:  # the protocol promises: cancel's answer first, then the target's end
            self.send(Response.failure(target, "cancelled", "Cancelled before it started."))

    def _cancel_all(self) -> None:
        """Stop taking work: queued requests end ``cancelled`` now, the running one is told to."""
        with self._cond:
            self._stopping = True
            dropped = list(self._queue)
            self._queue.clear()
            if self._current is not None:
                self._current.cancelled = True
                self._current.cancel_at = time.monotonic()
                self.jobs.cancel.set()
            self._cond.notify_all()
        for job in dropped:
            if job.request.id is not None:
                self.send(Response.failure(job.request.id, "cancelled", "The worker shut down."))

    def _stop(self) -> None:
        self._cancel_all()
        self._thread.join(SHUTDOWN_GRACE_S)
        self.jobs.stop(1.0)

    # --- the dispatch thread ---------------------------------------------------------------------
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
                # decided under the lock that cancel takes: a cancel acknowledged with
                # {"cancelled": true} always wins over a result
                if job.cancelled and response.ok and job.request.op != "load":
                    response = Response.failure(job.request.id, "cancelled", "Cancelled.")
                self._current = None
            self._answer(job, response)

    def _answer(self, job: _Job, response: Response) -> None:
        if not job.preload:
            self.send(response)
        elif response.ok:
            self.send(Event(None, "loaded", dict(response.result or {})))
        else:
            assert response.error is not None
            LOG.warning("model preload failed: %s", response.error.message)
            self.send(Event(None, "load_failed", response.error.to_dict()))

    def _run_one(self, job: _Job) -> Response:
        """Run one long request in the job process; every outcome is exactly one response."""
        request = job.request
        try:
            self.jobs.send(request)
            while True:
                message = self.jobs.poll(0.05)
                if message is not None:
                    done = self._on_message(request, message)
                    if done is not None:
                        return done
                elif job.cancel_at and time.monotonic() - job.cancel_at > CANCEL_GRACE_S:
                    return self._restart(request, "cancelled", "Cancelled; the request did not "
                                         "stop in time, so the model process was restarted.")
        except JobProcessDied as err:
            return self._restart(request, "internal", f"The model process stopped unexpectedly "
                                 f"({err}) while running '{request.op}'; it has been restarted.")

    def _on_message(self, request: Request, message: tuple) -> Response | None:
        kind = message[0]
        if kind == "status":
            self.jobs.status = dict(message[1])
        elif kind == "event" and message[1] == request.id and request.id is not None:
            self.send(Event(request.id, message[2], message[3]))
        elif kind == "done":
            if message[2]:
                return Response.success(request.id, message[3])
            return Response(request.id, False, error=ErrorInfo.from_dict(message[3]))
        return None

    def _restart(self, request: Request, code: str, message: str) -> Response:
        LOG.warning("%s %r: %s", request.op, request.id, message)
        self.jobs.kill()
        with self._cond:
            # reload the model before the next job (unless the load itself was what failed)
            if self._preload and not self._stopping and request.id is not None:
                self._queue.appendleft(_Job(Request(None, "load", {}), preload=True))
        return Response.failure(request.id, code, message)


def _protocol_stdout() -> IO[str]:
    """A private stream on the original stdout; fd 1 then points at stderr."""
    proto_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    # a file name that is not UTF-8 reaches a result as lone surrogates (inside a JSON string):
    # backslashreplace writes them as the JSON escape \udcXX instead of failing the write
    return os.fdopen(proto_fd, "w", encoding="utf-8", errors="backslashreplace", buffering=1)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Model options shared by every front end that builds a Pipeline (CLI commands, worker)."""
    parser.add_argument("--backbone", default=None, help=f"backbone id (default {DEFAULT_BACKBONE})")
    parser.add_argument("--bits", type=int, default=None,
                        help=f"hash bits: for a new index (default {DEFAULT_BITS}); an existing "
                        "index keeps its own")
    parser.add_argument("--heads", default=None, help="a heads .safetensors file instead of shipped")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: $CACH_DEVICE, else auto)")
    parser.add_argument("--backend", default=None,
                        help="inference backend: torch, onnx or openvino (default: $CACH_BACKEND, "
                        "else the fastest installed for the device)")
    parser.add_argument("--precision", default=None,
                        help="fp32, bf16 or int8 where the backend runs it (default: "
                        "$CACH_PRECISION, else fp32; docs/engines.md says where codes agree)")


def runtime_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``Pipeline(**kwargs)`` from parsed :func:`add_model_arguments` options."""
    return {k: getattr(args, k)
            for k in ("backbone", "bits", "heads", "device", "backend", "precision")
            if getattr(args, k, None) is not None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Worker options shared by ``python -m model_runtime.worker`` and ``cach serve``."""
    add_model_arguments(parser)
    parser.add_argument("--no-preload", dest="preload", action="store_false",
                        help="load the model on the first request instead of right after 'ready'")


def serve_stdio(args: argparse.Namespace) -> int:
    """Run the worker on this process's stdin/stdout until shutdown."""
    out = _protocol_stdout()
    stdin = open(sys.stdin.fileno(), "rb", closefd=False)  # noqa: SIM115
    level = logging.getLogger().getEffectiveLevel()
    worker = Worker(out, runtime_kwargs(args), preload=args.preload, log_level=level)
    return worker.serve(stdin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_runtime.worker",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return serve_stdio(args)


if __name__ == "__main__":
    sys.exit(main())
