"""Contract: what the REAL worker writes, read by the plugin's own parser.

The plugin's runtime client drives ``cach serve --stdio`` (the runtime in .venv) through its
QProcess; every line it receives is recorded at ``RuntimeClient.handle_line`` and must parse into
the protocol's typed values without losing a field the worker sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cach_for_qgis.model_runtime import protocol
from cach_for_qgis.model_runtime.protocol import (
    ERROR_CODES,
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
from conftest import SAMPLES, UCM_IMAGES, link_folder


@pytest.fixture(scope="module")
def recorded(runtime_python, tmp_path_factory):
    """Run a session of real requests; return (lines, messages, outcomes by name)."""
    from cach_for_qgis.cach_qgis.runtime_client import RuntimeClient, WorkerError

    client = RuntimeClient(python=runtime_python)
    lines: list[bytes] = []
    messages: list = []
    parse = client.handle_line

    def record(raw):  # noqa: ANN001
        lines.append(bytes(raw))
        message = parse(raw)
        messages.append(message)
        return message

    client.handle_line = record
    folder = link_folder(
        [SAMPLES / "cogeo.tif", UCM_IMAGES / "harbor" / "harbor05.jpg"],
        tmp_path_factory.mktemp("contract") / "rasters",
    )
    index = str(tmp_path_factory.mktemp("contract-index") / "idx")
    outcomes: dict[str, object] = {}

    def run(name: str, op: str, params: dict, **kw) -> None:
        progress: list[Progress] = []
        try:
            outcomes[name] = client.call(op, params, progress=progress.append, timeout_s=900, **kw)
        except WorkerError as err:
            outcomes[name] = err
        outcomes[name + ":progress"] = progress

    run("status", "status", {})
    run("estimate", "index", {"index": index, "paths": [str(folder)], "dry_run": True})
    run("index", "index", {"index": index, "paths": [str(folder)]})
    run("search", "search", {"index": index, "text": "a harbour with ships", "k": 50})
    tile = (
        outcomes["search"]["results"][0]["tile_id"] if isinstance(outcomes["search"], dict) else 1
    )
    run("tile", "search", {"index": index, "tile": tile, "k": 3})
    run("caption", "caption", {"index": index, "tile": tile, "k": 2, "similar": 2})
    run("locate", "locate", {"index": index, "x": 0.0, "y": 0.0})
    run("missing", "search", {"index": str(folder / "nothing"), "text": "x"})
    run("bad_k", "search", {"index": index, "text": "x", "k": 0})
    run("unknown", "no_such_op", {})
    client.shutdown()
    outcomes["index_path"] = index
    return lines, messages, outcomes


def ok(outcomes: dict, name: str) -> dict:
    value = outcomes[name]
    assert isinstance(value, dict), f"{name} failed: {value!r}"
    return value


def test_every_line_is_protocol(recorded):
    lines, messages, _ = recorded
    assert lines
    unparsed = [line for line, msg in zip(lines, messages, strict=True) if msg is None]
    assert not unparsed, unparsed
    ready = next(m for m in messages if isinstance(m, Event) and m.event == "ready")
    assert ReadyInfo.from_json(ready.data).protocol == protocol.PROTOCOL_VERSION
    for msg in messages:
        if isinstance(msg, Response) and not msg.ok:
            assert msg.error.code in ERROR_CODES, msg.error
            assert msg.error.type == ERROR_CODES[msg.error.code][0], msg.error


def _no_field_lost(raw: dict, typed: dict, what: str) -> None:
    lost = sorted(set(raw) - set(typed))
    assert not lost, f"{what}: the worker sends {lost}, which the protocol types drop"


def test_results_parse_into_typed_values_without_loss(recorded):
    _, _, outcomes = recorded
    estimate = ok(outcomes, "estimate")
    _no_field_lost(estimate, Estimate.from_json(estimate).to_json(), "estimate")
    summary = ok(outcomes, "index")
    _no_field_lost(summary, IndexSummary.from_json(summary).to_json(), "index summary")
    assert IndexSummary.from_json(summary).tiles > 0
    assert outcomes["index:progress"], "indexing sent no progress events"
    assert all(isinstance(p, Progress) for p in outcomes["index:progress"])

    result = ok(outcomes, "search")
    typed = SearchResult.from_json(result)
    _no_field_lost(result, typed.to_json(), "search result")
    assert "weak_match" in result, "weak_match belongs at the top level of every search result"
    for raw_hit, hit in zip(result["results"], typed.results, strict=True):
        _no_field_lost(raw_hit, hit.to_json(), "hit")
        assert Hit.from_json(hit.to_json()) == hit
    caption = ok(outcomes, "caption")
    _no_field_lost(caption, CaptionResult.from_json(caption).to_json(), "caption result")
    assert CaptionResult.from_json(caption).captions
    assert CaptionResult.from_json(caption).model, "caption results name their model"
    assert "tile" in ok(outcomes, "locate")


def test_jpeg_hits_come_without_a_map_footprint(recorded):
    _, _, outcomes = recorded
    hits = SearchResult.from_json(ok(outcomes, "search")).results
    jpeg = [h for h in hits if h.source.endswith(".jpg")]
    tiff = [h for h in hits if h.source.endswith(".tif")]
    assert jpeg and tiff, [h.source for h in hits]
    assert all(not h.georeferenced and h.footprint is None for h in jpeg)
    assert all(h.georeferenced for h in tiff)


def test_errors_carry_codes_the_plugin_words(recorded):
    from cach_for_qgis.cach_qgis import wording

    _, _, outcomes = recorded
    expected = {"missing": "index_missing", "bad_k": "bad_param", "unknown": "unknown_op"}
    for name, code in expected.items():
        err = outcomes[name]
        assert getattr(err, "code", None) == code, (name, err)
        assert "cach " not in wording.error_text(err.info)


def test_recorded_lines_replay_through_a_fresh_client(recorded, qgis_app):
    """The same bytes, fed to a client with no process, parse the same (no hidden state)."""
    from cach_for_qgis.cach_qgis.runtime_client import RuntimeClient

    lines, messages, _ = recorded
    client = RuntimeClient(python="/nonexistent")
    replayed = [client.handle_line(line) for line in lines]
    assert replayed == messages
    assert Path(client._cwd).exists()


def _gpkg_fields(path: Path) -> list[tuple[str, str]]:
    from osgeo import ogr

    ds = ogr.Open(str(path))
    layer = next(
        ds.GetLayer(i)
        for i in range(ds.GetLayerCount())
        if ds.GetLayer(i).GetGeomType() != ogr.wkbNone
    )
    defn = layer.GetLayerDefn()
    out = []
    for i in range(defn.GetFieldCount()):
        field = defn.GetFieldDefn(i)
        out.append((field.GetName(), f"{field.GetTypeName()}/{field.GetSubType()}"))
    return out


def test_saved_footprints_have_the_cli_geopackage_schema(recorded, runtime_python, tmp_path):
    """Footprints saved from the plugin and from ``cach search --gpkg``: one schema."""
    import subprocess

    from cach_for_qgis.cach_qgis import layers

    _, _, outcomes = recorded
    result = SearchResult.from_json(ok(outcomes, "search"))
    layer = layers.create_footprint_layer(result.results, "a harbour with ships", "m", "i")
    plugin_gpkg = layers.save_footprints(layer, str(tmp_path / "plugin.gpkg"))
    cach = Path(runtime_python).parent / "cach"
    cli_gpkg = tmp_path / "cli.gpkg"
    subprocess.run(
        [
            str(cach),
            "search",
            "--index",
            outcomes["index_path"],
            "--text",
            "a harbour with ships",
            "-k",
            "5",
            "--gpkg",
            str(cli_gpkg),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    fields = _gpkg_fields(Path(plugin_gpkg))
    assert [name for name, _ in fields] == [name for name, _ in protocol.FOOTPRINT_FIELDS]
    assert fields == _gpkg_fields(cli_gpkg)
