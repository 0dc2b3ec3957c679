"""Typed requests and the field-driven codec (``model_runtime/protocol``): one declaration per
parameter gives its default, its wire form and its validation."""

from __future__ import annotations

import dataclasses

import pytest

from model_runtime.protocol import (
    REQUESTS,
    Caption,
    CaptionRequest,
    CaptionResult,
    Estimate,
    Hit,
    IndexRequest,
    IndexSummary,
    LocateRequest,
    ModelInfo,
    ProtocolError,
    SearchRequest,
    SearchResult,
    Skipped,
    decode_request,
    parse_request,
)
from model_runtime.protocol.kinds import _KIND_TEXT


def test_every_op_has_a_request_and_every_field_a_known_kind():
    from model_runtime.protocol import OPS

    assert set(REQUESTS) == set(OPS)
    for cls in REQUESTS.values():
        for f in dataclasses.fields(cls):
            assert f.metadata["kind"] in _KIND_TEXT, f"{cls.__name__}.{f.name}"


def test_defaults_are_left_out_of_the_wire_form():
    assert SearchRequest(index="/i", text="a farm").to_params() == {"index": "/i", "text": "a farm"}
    req = SearchRequest(index="/i", positive=(3, 4), bbox=(0.0, 1.0, 2.0, 3.0), k=7, learn=False)
    assert req.to_params() == {"index": "/i", "positive": [3, 4], "bbox": [0.0, 1.0, 2.0, 3.0],
                               "k": 7, "learn": False}


@pytest.mark.parametrize("req", [
    SearchRequest(index="/i", text="x", tile=5, positive=(1,), negative=(2, 3),
                  weights={"text": 2.0}, bbox=(1.0, 2.0, 3.0, 4.0), bbox_crs="EPSG:3857",
                  collapse=False, learn=False),
    SearchRequest(index="/i", saved="/s.json", k=3),
    CaptionRequest(index="/i", tile=9, k=2, similar=0),
    CaptionRequest(image="/a.png"),
    LocateRequest(index="/i", x=1.5, y=-2.0, crs="EPSG:32633"),
    IndexRequest(index="/i", paths=("/a", "/b"), tile_size=128, scales=(1, 2), dry_run=True),
    IndexRequest(index="/i", remove=("/a",)),
])
def test_a_request_survives_the_wire(req):
    line = dataclasses.replace(req)  # frozen: equal copies
    params = req.to_params()
    assert decode_request(req.OP, params) == line
    parsed = parse_request(f'{{"id": 1, "op": "{req.OP}", "params": {_json(params)}}}')
    assert parsed.call == req and parsed.params == params


def _json(obj) -> str:
    import json

    return json.dumps(obj)


@pytest.mark.parametrize("op, params, words", [
    ("search", {"index": "/i", "text": "x", "colour": 1}, "unknown param(s) colour"),
    ("search", {"text": "x"}, "needs param 'index'"),
    ("search", {"index": "/i"}, "needs a query"),
    ("search", {"index": "/i", "text": "x", "k": 0}, "k must be at least 1"),
    ("search", {"index": "/i", "text": "x", "bbox": [3, 0, 1, 1]}, "param 'bbox' must be"),
    ("search", {"index": "/i", "positive": [1, "2"]}, "param 'positive' must be a list of tile"),
    ("caption", {"tile": 3}, "with 'tile' needs 'index'"),
    ("locate", {"index": "/i", "x": 1.0}, "needs param 'y'"),
    ("index", {"index": "/i"}, "needs 'paths'"),
    ("index", {"index": "/i", "paths": ["/a\x00b"]}, "param 'paths' must be a list of paths"),
    ("adapt", {"index": "/i", "steps": 0}, "param 'steps' must be"),
    ("search", {"index": "/i", "text": "x", "offset": 1001},
     "param 'offset' must be an integer from 0 to 1000"),
    ("load", {"bits": 12}, "param 'bits' must be a multiple of 8"),
])
def test_bad_params_name_the_field(op, params, words):
    with pytest.raises(ProtocolError) as err:
        decode_request(op, params, request_id=4)
    assert words in str(err.value) and err.value.code == "bad_param"
    assert err.value.request_id == 4


def test_a_decoded_request_holds_tuples_and_its_defaults():
    req = decode_request("search", {"index": "/i", "positive": [1, 2], "bbox": [0, 0, 1, 1]})
    assert req.positive == (1, 2) and req.bbox == (0, 0, 1, 1)
    assert req.k == 20 and req.collapse is True and req.learn is True
    assert req.excluded == [1, 2] and req.marked and not req.typed


def test_index_request_tiling_lists_only_the_options_given():
    req = IndexRequest(index="/i", paths=("/a",), tile_metres=100.0, bands=(3, 2, 1))
    assert req.tiling() == {"tile_metres": 100.0, "bands": [3, 2, 1]}


HIT = Hit(rank=1, tile_id=7, source="/a/b.tif", window=(0, 256, 256, 256), crs="EPSG:32633",
          footprint={"type": "Polygon", "coordinates": []}, footprint_src=None, hamming=3,
          score=0.75, confidence=0.4)


@pytest.mark.parametrize("value", [
    HIT,
    SearchResult([HIT], {"text": "x"}, {"bits": 64}, {"tiles": 3}, {"search": 1.5}, True),
    CaptionResult([Caption(1, "a farm", 2, 0.9)], [HIT], {}, {}, {"total": 3.0}),
    IndexSummary(added=2, skipped=(Skipped("/x", "bad", "data_unreadable"),), tiles=9,
                 seconds=1.25, vrt_sources={"/v.vrt": ["/a.tif"]}, timing={"scan": 0.5},
                 roots=("/a",)),
    Estimate(files=1, tiles=4, bytes=10, seconds=2.0, new_tiles=3,
             roots_held=({"path": "/a", "files": 1, "tiles": 2},), tiling={"tile_size": 256}),
    ModelInfo("effnetlite0-minilm", 64, "abc", backend="onnxruntime"),
])
def test_results_survive_the_codec(value):
    assert type(value).from_json(value.to_json()) == value


def test_the_codec_keeps_the_wire_names_and_rounding():
    wire = IndexSummary(seconds=1.23456, timing={"scan": 0.12345}).to_json()
    assert wire["seconds"] == 1.23 and wire["timing_s"] == {"scan": 0.123}
    assert list(HIT.to_json())[:6] == ["rank", "tile_id", "source", "window", "crs",
                                       "georeferenced"]
    assert Estimate(files=1, tiles=4, bytes=1, seconds=1.0).to_json()["new_tiles"] == 4


def test_the_codec_reads_leniently():
    assert Hit.from_json({"tile_id": 3}).window == (0, 0, 0, 0)
    assert SearchResult.from_json({}).results == []
    assert ModelInfo.from_json({"backbone": "x"}) is None
    assert IndexSummary.from_json({"skipped": [{"path": "/a"}], "extra": 1}).skipped[0].path == "/a"
