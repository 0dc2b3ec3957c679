"""The worker's job process: runs long requests on a :class:`~model_runtime.pipeline.Pipeline`.

Started by ``worker.py`` with multiprocessing (spawn). It receives ``("job", id, op, params)``
on a pipe and sends back ``("event", id, name, data)`` and exactly one ``("done", id, ok,
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
from typing import Any

from model_runtime.errors import CancelledError, missing_extra
from model_runtime.protocol import DEFAULT_CAPTIONS, DEFAULT_K, DEFAULT_SIMILAR, ErrorInfo

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


def _search(rt: Any, p: dict, cancel: threading.Event, progress: Callable) -> dict:
    return rt.search(p["index"], text=p.get("text"), tile=p.get("tile"), image=p.get("image"),
                     positive=p.get("positive") or (), negative=p.get("negative") or (),
                     weights=p.get("weights"), k=p.get("k") or DEFAULT_K, bbox=p.get("bbox"),
                     bbox_crs=p.get("bbox_crs") or "EPSG:4326",
                     collapse=True if p.get("collapse") is None else p["collapse"],
                     cancel=cancel, learn=True if p.get("learn") is None else p["learn"],
                     save=p.get("save"), saved=p.get("saved")).to_json()


def _caption(rt: Any, p: dict, cancel: threading.Event, progress: Callable) -> dict:
    similar = DEFAULT_SIMILAR if p.get("similar") is None else p["similar"]
    return rt.caption(index_dir=p.get("index"), tile=p.get("tile"), image=p.get("image"),
                      k=p.get("k") or DEFAULT_CAPTIONS, similar=similar, progress=progress,
                      cancel=cancel).to_json()


def _locate(rt: Any, p: dict, cancel: threading.Event, progress: Callable) -> dict:
    hit = rt.locate(p["index"], p["x"], p["y"], crs=p.get("crs") or "EPSG:4326")
    return {"tile": None if hit is None else hit.to_json()}


_INDEX_FLAGS = ("dry_run", "rebuild", "confirm", "allow_outside_sources")


def _index(rt: Any, p: dict, cancel: threading.Event, progress: Callable) -> dict:
    p = dict(p)
    index_dir, paths, bits = p.pop("index"), p.pop("paths", None) or [], p.pop("bits", None)
    remove = list(p.pop("remove", None) or [])  # roots to forget (docs/indexing.md)
    flags = {k: bool(p.pop(k, False)) for k in _INDEX_FLAGS}
    options = {k: v for k, v in p.items() if v is not None}
    return rt.index(index_dir, paths, options, bits=bits, progress=progress, cancel=cancel,
                    remove=remove, **flags).to_json()


def _load(rt: Any, p: dict, cancel: threading.Event, progress: Callable) -> dict:
    return rt.load(**{k: v for k, v in p.items() if not k.startswith("_")})


def _adapt(rt: Any, p: dict, cancel: threading.Event, progress: Callable) -> dict:
    return rt.adapt(p["index"], steps=p.get("steps"), progress=progress, cancel=cancel)


HANDLERS: dict[str, Callable[..., dict]] = {
    "search": _search, "caption": _caption, "locate": _locate, "index": _index,
    "load": _load, "adapt": _adapt,
}


def _run_job(rt: Any, send: _Sender, job: tuple, cancel: Any) -> None:
    """Run one job; the status after it (models now loaded) is sent before its ``done``, which
    ends the front's wait, so a ``status`` right after the answer already shows it."""
    _, request_id, op, params = job
    try:
        if cancel.is_set():
            raise CancelledError("Cancelled.")
        outcome = (True, HANDLERS[op](rt, params, cancel, _progress(send, request_id)))
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
