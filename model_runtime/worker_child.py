"""The worker's job process: runs long requests on a :class:`~model_runtime.pipeline.Pipeline`.

Started by ``worker.py`` with multiprocessing (spawn). It receives ``("job", id, request)``
(a typed request of ``model_runtime.protocol``) on a pipe and sends back ``("event", id, name, data)`` and exactly one ``("done", id, ok,
payload)`` per job, where payload is the result JSON or an ``ErrorInfo`` dict. It is the only
process that imports the model stack; the front process can kill and restart it when a job is
stuck, so no request can wedge the worker.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from model_runtime.errors import CancelledError, missing_extra
from model_runtime.protocol import (
    AdaptRequest,
    CaptionRequest,
    ErrorInfo,
    IndexRequest,
    LoadRequest,
    LocateRequest,
    SearchRequest,
)

if TYPE_CHECKING:
    from model_runtime.pipeline import Pipeline

LOG = logging.getLogger(__name__)


class _Sender:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def __call__(self, *message: Any) -> None:
        with self.lock:
            self.conn.send(message)


def _progress(send: _Sender, request_id: Any) -> Callable[[dict], None]:
    """Pipeline progress dicts -> ``progress`` events: each stage change, else <= 10 per s."""
    last = {"t": 0.0, "stage": None}

    def progress(info: dict) -> None:
        now = time.monotonic()
        stage = str(info.get("stage") or "")
        if now - last["t"] < 0.1 and stage == last["stage"]:
            return
        last.update(t=now, stage=stage)
        total = info.get("total")
        send("event", request_id, "progress", {
            "done": int(info.get("done") or 0), "total": None if total is None else int(total),
            "stage": stage, "message": str(info.get("message") or "")})

    return progress


def _search(rt: Pipeline, req: SearchRequest, cancel: threading.Event,
            progress: Callable) -> dict:
    return rt.search(req, cancel).to_json()


def _caption(rt: Pipeline, req: CaptionRequest, cancel: threading.Event,
             progress: Callable) -> dict:
    return rt.caption(req, progress, cancel).to_json()


def _locate(rt: Pipeline, req: LocateRequest, cancel: threading.Event,
            progress: Callable) -> dict:
    hit = rt.locate(req)
    return {"tile": None if hit is None else hit.to_json()}


def _index(rt: Pipeline, req: IndexRequest, cancel: threading.Event,
           progress: Callable) -> dict:
    return rt.index(req, progress, cancel).to_json()


def _load(rt: Pipeline, req: LoadRequest, cancel: threading.Event, progress: Callable) -> dict:
    return rt.load(req)


def _adapt(rt: Pipeline, req: AdaptRequest, cancel: threading.Event,
           progress: Callable) -> dict:
    return rt.adapt(req, progress, cancel)


#: op -> the pipeline call that answers its typed request
HANDLERS: dict[str, Callable[..., dict]] = {
    "search": _search, "caption": _caption, "locate": _locate, "index": _index,
    "load": _load, "adapt": _adapt,
}


def _run_job(rt: Any, send: _Sender, job: tuple, cancel: Any) -> None:
    """Run one job; the status after it (models now loaded) is sent before its ``done``, which
    ends the front's wait, so a ``status`` right after the answer already shows it."""
    _, request_id, req = job
    op = req.OP
    try:
        if cancel.is_set():
            raise CancelledError("Cancelled.")
        outcome = (True, HANDLERS[op](rt, req, cancel, _progress(send, request_id)))
    except BaseException as err:  # every outcome is one answer; the loop survives everything
        err = missing_extra(err) or err  # torch absent (the lean runtime): a coded answer
        if not getattr(err, "kind", None):
            LOG.exception("%s %r failed", op, request_id)
        else:
            LOG.info("%s %r: %s", op, request_id, err)
        outcome = (False, ErrorInfo.from_exception(err).to_dict())
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            send("done", request_id, *outcome)
            raise
    try:
        send("status", rt.status())
    except Exception:  # noqa: BLE001 - the answer below must go out whatever status does
        LOG.exception("status after %s %r failed", op, request_id)
    send("done", request_id, *outcome)


def run(conn: Any, cancel: Any, runtime_kwargs: dict, log_level: int) -> None:
    """The job process's main loop (target of the spawn)."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    from model_runtime.env import configure_process

    configure_process()
    from model_runtime.pipeline import Pipeline

    rt = Pipeline(**runtime_kwargs)
    send = _Sender(conn)
    send("status", rt.status())
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job[0] == "stop":
            return
        _run_job(rt, send, job, cancel)
