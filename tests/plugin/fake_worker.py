"""A stand-in worker for what the real one cannot be made to do on demand in a test: crash, answer
slowly, ask to confirm a run of 250,000 tiles, report an outdated index, or adapt in a few steps.

Acceptance tests use the real worker. This one speaks the same protocol through the same module,
``model_runtime.protocol`` (parsing, validation, typed results), so it cannot drift from it.

Usage: ``python fake_worker.py [SCENARIO.json]``. The scenario (all keys optional):
``hits`` (Hit JSON list for ``search``), ``weak_match``, ``index`` and ``model`` (the result's
objects), ``delays`` ({word: seconds}: a search whose text holds the word answers that late),
``new_tiles`` (what an ``index`` run would encode; above ``CONFIRM_ABOVE_TILES`` it needs
``confirm``), ``summary`` (IndexSummary JSON), ``adapt_steps``, ``step_s``, ``locate`` (Hit JSON),
``captions`` (list of texts), ``missing_indexes`` (paths a search answers ``index_missing``).
A search for "crash" exits with code 3, as a crash would.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from model_runtime import protocol  # noqa: E402 - after the path set-up
from model_runtime.protocol import (  # noqa: E402
    Caption,
    CaptionResult,
    Estimate,
    Event,
    Hit,
    IndexSummary,
    Progress,
    ReadyInfo,
    Response,
    SearchResult,
)

SCENARIO: dict = json.loads(Path(sys.argv[1]).read_text()) if len(sys.argv) > 1 else {}
MODEL = SCENARIO.get("model") or {
    "backbone": "fake",
    "bits": 64,
    "heads_sha": "0" * 64,
    "method": "cach",
    "heads": "fake.safetensors",
}


@dataclass
class Job:
    """A long request: lines to send at given delays, then the final response."""

    rid: protocol.RequestId
    steps: list[tuple[float, str]] = field(default_factory=list)
    due: float | None = None


QUEUE: list[Job] = []


def send(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def progress(rid: protocol.RequestId, done: int, total: int, stage: str) -> str:
    return Event(rid, "progress", Progress(done, total, stage, "").to_json()).to_json()


def search(rid: protocol.RequestId, params: dict) -> Job:
    text = params.get("text") or ""
    if text == "crash":
        print("Fatal Python error: Segmentation fault (simulated)", file=sys.stderr, flush=True)
        os._exit(3)
    if params["index"] in (SCENARIO.get("missing_indexes") or []):
        message = f"No index at {params['index']}: run 'cach index' first."
        return Job(rid, [(0, Response.failure(rid, "index_missing", message).to_json())])
    delay = max([s for word, s in (SCENARIO.get("delays") or {}).items() if word in text] or [0])
    hits = [Hit.from_json(h) for h in SCENARIO.get("hits") or []][: params.get("k") or 20]
    index = {"path": params["index"], "tiles": len(hits), **(SCENARIO.get("index") or {})}
    result = SearchResult(
        hits, dict(params), MODEL, index, {"total": 1.0}, SCENARIO.get("weak_match")
    )
    return Job(rid, [(delay, Response.success(rid, result.to_json()).to_json())])


def index(rid: protocol.RequestId, params: dict) -> Job:
    new_tiles = int(SCENARIO.get("new_tiles") or 10)
    estimate = Estimate(
        files=1,
        tiles=new_tiles,
        bytes=new_tiles * 196_608,
        seconds=new_tiles / 40,
        new_tiles=new_tiles,
    )
    if params.get("dry_run"):
        return Job(rid, [(0, Response.success(rid, estimate.to_json()).to_json())])
    if new_tiles > protocol.CONFIRM_ABOVE_TILES and not params.get("confirm"):
        failure = Response.failure(
            rid, "confirm_large_run", "the run is large", {"estimate": estimate.to_json()}
        )
        return Job(rid, [(0, failure.to_json())])
    summary = IndexSummary.from_json(SCENARIO.get("summary") or {"added": 1, "tiles": new_tiles})
    steps = [(0.05, progress(rid, i, 3, "encode")) for i in range(3)]
    return Job(rid, [*steps, (0.05, Response.success(rid, summary.to_json()).to_json())])


def adapt(rid: protocol.RequestId, params: dict) -> Job:
    n = int(SCENARIO.get("adapt_steps") or 5)
    step_s = float(SCENARIO.get("step_s") or 0.1)
    steps = [(step_s, progress(rid, i + 1, n, "adapt")) for i in range(n)]
    done = {"index": params["index"], "steps": n, "tiles": 12, "seconds": n * step_s}
    return Job(rid, [*steps, (0.01, Response.success(rid, done).to_json())])


def caption(rid: protocol.RequestId, params: dict) -> Job:
    captions = [Caption(i + 1, t, 3, 0.9) for i, t in enumerate(SCENARIO.get("captions") or [])]
    similar = [Hit.from_json(h) for h in SCENARIO.get("hits") or []][: params.get("similar") or 5]
    index = {"path": params.get("index"), "tiles": 12}
    result = CaptionResult(captions, similar, MODEL, index, {"total": 1.0})
    return Job(rid, [(0, Response.success(rid, result.to_json()).to_json())])


def locate(rid: protocol.RequestId, params: dict) -> Job:
    tile = SCENARIO.get("locate")
    return Job(rid, [(0, Response.success(rid, {"tile": tile}).to_json())])


LONG = {"search": search, "index": index, "adapt": adapt, "caption": caption, "locate": locate}


def immediate(request: protocol.Request) -> None:
    rid = request.id
    if request.op == "status":
        busy = QUEUE[0].rid if QUEUE else None
        send(
            Response.success(
                rid,
                {
                    "version": "fake",
                    "protocol": protocol.PROTOCOL_VERSION,
                    "device": "cpu",
                    "busy": busy,
                },
            ).to_json()
        )
    elif request.op == "cancel":
        target = next((j for j in QUEUE if j.rid == request.params["target"]), None)
        send(Response.success(rid, {"cancelled": target is not None}).to_json())
        if target is not None:
            QUEUE.remove(target)
            send(Response.failure(target.rid, "cancelled", "Cancelled.").to_json())
    elif request.op == "shutdown":
        send(Response.success(rid, {"bye": True}).to_json())
        sys.exit(0)


def handle(line: bytes) -> None:
    try:
        request = protocol.parse_request(line)
    except protocol.ProtocolError as err:
        send(Response.from_exception(err.request_id, err).to_json())
        return
    if request.immediate:
        immediate(request)
    elif request.op in LONG:
        QUEUE.append(LONG[request.op](request.id, request.params))
    else:
        send(Response.failure(request.id, "unknown_op", f"fake: no {request.op}").to_json())


def advance() -> None:
    """Send the head job's lines that are due; start the next job when one ends."""
    while QUEUE:
        job = QUEUE[0]
        if job.due is None:
            job.due = time.monotonic() + job.steps[0][0]
        if time.monotonic() < job.due:
            return
        send(job.steps.pop(0)[1])
        if job.steps:
            job.due = time.monotonic() + job.steps[0][0]
        else:
            QUEUE.pop(0)


def main() -> None:
    send(
        Event(
            None,
            "ready",
            ReadyInfo("fake", protocol.PROTOCOL_VERSION, "cpu", os.getpid()).to_json(),
        ).to_json()
    )
    buffer = b""
    while True:
        timeout = max(0.0, QUEUE[0].due - time.monotonic()) if QUEUE and QUEUE[0].due else 0.05
        readable, _, _ = select.select([0], [], [], timeout if QUEUE else None)
        if readable:
            chunk = os.read(0, 65536)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    handle(line)
        advance()


if __name__ == "__main__":
    main()
