"""Protocol messages: parsing, validation and JSON round trips (no worker, no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_runtime.errors import CancelledError, DataError
from model_runtime.protocol import (
    ERROR_CODES,
    IMMEDIATE_OPS,
    LONG_OPS,
    PROTOCOL_VERSION,
    ErrorInfo,
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
            "four finite numbers",
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
        # values no worker may turn into a crash, a hang or a silent default
        ('{"id": 18, "op": "search", "params": {"index": "/i", "text": "\\ud800abc"}}',
         "valid Unicode", 18),
        ('{"id": 19, "op": "search", "params": {"index": "/i", "text": "x", "k": 0}}',
         "k must be at least 1, got 0", 19),
        ('{"id": 20, "op": "search", "params": {"index": "/i", "tile": 1180591620717411303424}}',
         "'tile'", 20),
        ('{"id": 21, "op": "locate", "params": {"index": "/i", "x": NaN, "y": 2}}', "'x'", 21),
        ('{"id": 22, "op": "search", "params": {"index": "/i", "text": "x", '
         '"bbox": [0, 0, Infinity, 1]}}', "'bbox'", 22),
        ('{"id": 23, "op": "search", "params": {"index": "/i", "text": "x", '
         '"bbox": [2, 0, 1, 1]}}', "min <= max", 23),
        ('{"id": 24, "op": "search", "params": {"index": "/i", "positive": [-1]}}',
         "'positive'", 24),
        ('{"id": 25, "op": "search", "params": {"index": "/i", "text": "x", '
         '"weights": {"text": 1e999}}}', "'weights'", 25),
        ('{"id": 26, "op": "index", "params": {"index": "/i", "paths": ["/r"], "bits": 12}}',
         "'bits'", 26),
        ("[" * 100_000, "not JSON", None),
    ],
)
def test_malformed_requests(line, fragment: str, request_id) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(line)
    assert fragment in str(info.value)
    assert info.value.request_id == request_id
    assert info.value.kind == "protocol" and info.value.code in ERROR_CODES


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
        "adapt": {"index": "/i"},
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
        "error": {"type": "data", "code": "data_unreadable",
                  "message": "/a.tif: cannot be opened"},
    }
    coded = Response.from_exception(1, DataError("gone", code="source_gone", path="/a.tif"))
    assert coded.error.to_dict() == {"type": "data", "code": "source_gone", "message": "gone",
                                     "details": {"path": "/a.tif"}}
    assert ErrorInfo.from_dict(coded.error.to_dict()) == coded.error
    assert Response.from_exception(1, CancelledError("stop")).error.type == "cancelled"
    internal = Response.from_exception(1, ZeroDivisionError("boom"))
    assert internal.error.type == "internal" and "ZeroDivisionError" in internal.error.message
    assert Response.failure(1, "nonsense", "m").error.type == "internal"
    assert Response.failure(1, "index_locked", "m").error.type == "index"
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


def test_every_error_class_and_code_is_in_the_contract() -> None:
    import model_runtime.errors as errors
    from model_runtime.protocol import ERROR_TYPES

    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.CachError) and cls.kind != "error":
            assert cls.kind in ERROR_TYPES, cls
            assert ERROR_CODES[cls.default_code][0] == cls.kind, cls
    assert {t for t, _ in ERROR_CODES.values()} <= set(ERROR_TYPES)


def test_codes_raised_in_the_runtime_are_registered() -> None:
    """Every ``code="..."`` literal in model_runtime names a code of the contract."""
    import re

    from model_runtime.paths import PLUGIN_ROOT

    used = set()
    for path in (PLUGIN_ROOT / "model_runtime").rglob("*.py"):
        used |= set(re.findall(r'\bcode="([a-z_]+)"', path.read_text(encoding="utf-8")))
    assert used and used <= set(ERROR_CODES), used - set(ERROR_CODES)


def test_typed_results_round_trip() -> None:
    from model_runtime.protocol import (
        Caption,
        CaptionResult,
        Estimate,
        Hit,
        IndexSummary,
        SearchResult,
        Skipped,
    )

    hit = Hit(1, 42, "/a.jpg", (0, 0, 256, 256), None, None, {"type": "Polygon",
              "coordinates": []}, 3, 0.9, 0.7)
    assert not hit.georeferenced and Hit.from_json(json.loads(json.dumps(hit.to_json()))) == hit
    result = SearchResult([hit], {"text": "x"}, {"bits": 64}, {"tiles": 1}, {"total": 1.0}, True)
    assert SearchResult.from_json(json.loads(json.dumps(result.to_json()))) == result
    cap = CaptionResult([Caption(1, "a farm", 2, 0.9)], [hit], {"bits": 64}, {}, {})
    assert CaptionResult.from_json(json.loads(json.dumps(cap.to_json()))) == cap
    summary = IndexSummary(added=1, skipped=(Skipped("/b.vrt", "refused", "source_refused"),),
                           tiles=0, vrt_sources={"/c.vrt": ["/c.tif"]})
    back = IndexSummary.from_json(json.loads(json.dumps(summary.to_json())))
    assert back == summary and back.indexed_nothing
    est = Estimate(2, 10, 100, 1.5, 8)
    assert Estimate.from_json(est.to_json()) == est
