"""Protocol messages: parsing, validation and JSON round trips (no worker, no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_runtime.errors import CancelledError, DataError
from model_runtime.protocol import (
    IMMEDIATE_OPS,
    LONG_OPS,
    PROTOCOL_VERSION,
    Event,
    ProtocolError,
    Request,
    Response,
    parse_message,
    parse_request,
)


def test_valid_search_request_round_trips() -> None:
    line = json.dumps(
        {
            "id": 7,
            "op": "search",
            "params": {
                "index": "/x",
                "text": "a harbour",
                "k": 5,
                "bbox": [1, 2, 3.5, 4],
                "bbox_crs": "EPSG:3857",
            },
        }
    )
    req = parse_request(line)
    assert req == Request(7, "search", json.loads(line)["params"])
    assert not req.immediate
    assert parse_request(req.to_json()) == req
    assert Request.from_json(line.encode()) == req


@pytest.mark.parametrize("op", sorted(IMMEDIATE_OPS))
def test_immediate_ops(op: str) -> None:
    params = {"target": 3} if op == "cancel" else {}
    req = parse_request(json.dumps({"id": "a", "op": op, "params": params}))
    assert req.immediate and req.id == "a"


def test_params_may_be_missing_or_null() -> None:
    assert parse_request('{"id": 1, "op": "status"}').params == {}
    assert parse_request('{"id": 1, "op": "status", "params": null}').params == {}
    # optional params may be null (clients often send every field)
    req = parse_request(
        '{"id": 1, "op": "search", "params": {"index": "/i", "text": "x", "k": null}}'
    )
    assert req.params["k"] is None


@pytest.mark.parametrize(
    ("line", "fragment", "request_id"),
    [
        ("not json", "not JSON", None),
        ("[1, 2]", "JSON object", None),
        ('"search"', "JSON object", None),
        ('{"id": 3}', "'op'", 3),
        ('{"id": 3, "op": ""}', "'op'", 3),
        ('{"id": 4, "op": "fly"}', "unknown op 'fly'", 4),
        ('{"id": true, "op": "status"}', "'id'", None),
        ('{"id": [1], "op": "status"}', "'id'", None),
        ('{"id": 5, "op": "search", "params": []}', "'params'", 5),
        ('{"id": 6, "op": "search", "params": {"text": "x"}}', "'index'", 6),
        ('{"id": 7, "op": "search", "params": {"index": "/i"}}', "needs a query", 7),
        ('{"id": 8, "op": "search", "params": {"index": "/i", "text": 3}}', "'text'", 8),
        ('{"id": 9, "op": "search", "params": {"index": "/i", "text": "x", "k": "5"}}', "'k'", 9),
        ('{"id": 10, "op": "search", "params": {"index": "/i", "tile": true}}', "'tile'", 10),
        (
            '{"id": 11, "op": "search", "params": {"index": "/i", "text": "x", "bbox": [1, 2]}}',
            "4 numbers",
            11,
        ),
        (
            '{"id": 12, "op": "search", "params": {"index": "/i", "text": "x", "colour": 1}}',
            "unknown param",
            12,
        ),
        ('{"id": 13, "op": "cancel", "params": {}}', "'target'", 13),
        ('{"id": 14, "op": "index", "params": {"index": "/i"}}', "'paths'", 14),
        ('{"id": 15, "op": "caption", "params": {"tile": 3}}', "needs 'index'", 15),
        ('{"id": 16, "op": "caption", "params": {"index": "/i"}}', "'tile'", 16),
        ('{"id": 17, "op": "locate", "params": {"index": "/i", "x": "1", "y": 2}}', "'x'", 17),
        (b"\xff\xfe", "UTF-8", None),
    ],
)
def test_malformed_requests(line, fragment: str, request_id) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(line)
    assert fragment in str(info.value)
    assert info.value.request_id == request_id
    assert info.value.kind == "protocol"


def test_every_op_has_a_schema() -> None:
    minimal = {
        "status": {},
        "shutdown": {},
        "cancel": {"target": 1},
        "load": {},
        "search": {"index": "/i", "text": "x"},
        "caption": {"image": "/a.png"},
        "locate": {"index": "/i", "x": 1, "y": 2.5},
        "index": {"index": "/i", "paths": ["/r"]},
    }
    assert set(minimal) == IMMEDIATE_OPS | LONG_OPS
    for op, params in minimal.items():
        assert parse_request(json.dumps({"id": 1, "op": op, "params": params})).op == op


def test_response_and_event_json() -> None:
    ok = Response.success(7, {"results": [], "n": np.int64(3), "v": np.float32(0.5)})
    assert json.loads(ok.to_json()) == {
        "id": 7,
        "ok": True,
        "result": {"results": [], "n": 3, "v": 0.5},
    }
    err = Response.from_exception("x", DataError("/a.tif: cannot be opened"))
    assert json.loads(err.to_json()) == {
        "id": "x",
        "ok": False,
        "error": {"type": "data", "message": "/a.tif: cannot be opened"},
    }
    assert Response.from_exception(1, CancelledError("stop")).error.type == "cancelled"
    internal = Response.from_exception(1, ZeroDivisionError("boom"))
    assert internal.error.type == "internal" and "ZeroDivisionError" in internal.error.message
    assert Response.failure(1, "nonsense", "m").error.type == "internal"
    ev = Event(None, "ready", {"version": "0.1.0", "protocol": PROTOCOL_VERSION})
    assert json.loads(ev.to_json()) == {"id": None, "event": "ready", "data": ev.data}


def test_objects_with_to_json_serialise() -> None:
    class Hitish:
        def to_json(self) -> dict:
            return {"tile_id": 1}

    line = Response.success(1, {"results": [Hitish()]}).to_json()
    assert json.loads(line)["result"]["results"] == [{"tile_id": 1}]
    with pytest.raises(ValueError):  # NaN is not JSON
        Response.success(1, {"x": float("nan")}).to_json()


def test_parse_message_client_side() -> None:
    assert parse_message('{"id": 1, "event": "progress", "data": {"done": 1}}') == Event(
        1, "progress", {"done": 1}
    )
    ok = parse_message('{"id": 1, "ok": true, "result": {"bye": true}}')
    assert isinstance(ok, Response) and ok.ok and ok.result == {"bye": True}
    bad = parse_message('{"id": 2, "ok": false, "error": {"type": "index", "message": "m"}}')
    assert not bad.ok and bad.error.type == "index"
    with pytest.raises(ProtocolError):
        parse_message('{"id": 3}')
