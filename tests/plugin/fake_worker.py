"""A tiny stand-in worker for crash/restart tests only (acceptance tests use the real one).

Speaks docs/protocol.md: prints ``ready``; ``search`` with text "crash" exits with code 3 (a crash),
any other search returns no results; ``status``/``shutdown`` as documented.
"""

import json
import os
import sys


def send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


send(
    {
        "id": None,
        "event": "ready",
        "data": {"version": "fake", "protocol": 1, "device": "cpu", "pid": os.getpid()},
    }
)
for line in sys.stdin:
    req = json.loads(line)
    rid, op, params = req.get("id"), req.get("op"), req.get("params") or {}
    if op == "search" and params.get("text") == "crash":
        print("Fatal Python error: Segmentation fault (simulated)", file=sys.stderr, flush=True)
        os._exit(3)
    if op == "search":
        send(
            {
                "id": rid,
                "ok": True,
                "result": {
                    "query": params,
                    "model": {},
                    "index": {},
                    "timing_ms": {},
                    "results": [],
                },
            }
        )
    elif op == "status":
        send(
            {
                "id": rid,
                "ok": True,
                "result": {
                    "version": "fake",
                    "protocol": 1,
                    "device": "cpu",
                    "busy": None,
                    "models_loaded": [],
                },
            }
        )
    elif op == "shutdown":
        send({"id": rid, "ok": True, "result": {"bye": True}})
        sys.exit(0)
    else:
        send({"id": rid, "ok": False, "error": {"type": "protocol", "message": f"unknown op {op}"}})
