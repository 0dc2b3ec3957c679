"""Plugin flows in real QGIS for answers the real worker cannot be made to give on demand: a
slow search, a weak match, a 250,000-tile run to confirm, an outdated index, a quick adaptation,
a JPEG hit. The worker here is tests/plugin/fake_worker.py, which speaks the protocol through
``model_runtime.protocol`` itself; test_qgis_analyst.py runs the same flows on the real worker.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cach_for_qgis.cach_qgis import layers
from cach_for_qgis.model_runtime.protocol import NOT_GEOREFERENCED_NOTE, Hit, IndexRequest
from conftest import SAMPLES, fake_client, wait_until
from osgeo import gdal
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

GEOTIFF = SAMPLES / "cogeo.tif"


def window_footprint(path: Path, window: tuple[int, int, int, int]) -> dict:
    """The EPSG:4326 GeoJSON polygon of a pixel window of a georeferenced raster."""
    layer = QgsRasterLayer(str(path), "src", "gdal")
    ds = gdal.Open(str(path))
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    col, row, width, height = window
    corners = [(col, row), (col + width, row), (col + width, row + height), (col, row + height)]
    transform = QgsCoordinateTransform(
        layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance()
    )
    ring = []
    for c, r in corners:
        point = transform.transform(QgsPointXY(x0 + c * dx, y0 + r * dy))
        ring.append([point.x(), point.y()])
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def write_jpeg(path: Path) -> Path:
    """A photo-like JPEG with no CRS and no geotransform (no sidecar files either)."""
    src = gdal.Open(str(GEOTIFF))
    mem = gdal.GetDriverByName("MEM").Create("", 256, 256, 3, gdal.GDT_Byte)
    for band in (1, 2, 3):
        data = src.GetRasterBand(min(band, src.RasterCount)).ReadRaster(0, 0, 256, 256)
        mem.GetRasterBand(band).WriteRaster(0, 0, 256, 256, data)
    gdal.GetDriverByName("JPEG").CreateCopy(str(path), mem)
    for sidecar in path.parent.glob(path.name + ".*"):
        sidecar.unlink()
    return path


def scenario_hits(tmp_path: Path) -> list[dict]:
    """Three hits: a GeoTIFF tile, a JPEG (not georeferenced), another GeoTIFF tile."""
    jpeg = write_jpeg(tmp_path / "photo.jpg")
    pixel_square = {
        "type": "Polygon",
        "coordinates": [[[0, 0], [256, 0], [256, 256], [0, 256], [0, 0]]],
    }
    hits = [
        Hit(
            1,
            11,
            str(GEOTIFF),
            (0, 0, 256, 256),
            "EPSG:3857",
            window_footprint(GEOTIFF, (0, 0, 256, 256)),
            None,
            10,
            0.84,
            0.81,
        ),
        Hit(2, 12, str(jpeg), (0, 0, 256, 256), None, None, pixel_square, 12, 0.81, 0.40),
        Hit(
            3,
            13,
            str(GEOTIFF),
            (256, 0, 256, 256),
            "EPSG:3857",
            window_footprint(GEOTIFF, (256, 0, 256, 256)),
            None,
            14,
            0.78,
            0.22,
        ),
    ]
    return [h.to_json() for h in hits]


@pytest.fixture
def make_plugin(qgis_iface, own_shared_client, monkeypatch, tmp_path, qgis_new_project):
    """A plugin loaded through classFactory whose shared worker is the fake one."""
    import cach_for_qgis

    made = []

    def make(scenario: dict):
        monkeypatch.setattr(own_shared_client, "_SHARED", fake_client(scenario, tmp_path))
        plugin = cach_for_qgis.classFactory(qgis_iface)
        plugin.initGui()
        plugin.search_action.trigger()
        plugin.dock.set_index_path(str(tmp_path / "index"))
        made.append(plugin)
        return plugin

    yield make
    for plugin in made:
        plugin.unload()


def search(dock, text: str):  # noqa: ANN001
    dock.bar.query_edit.setText(text)
    req = dock.search()
    wait_until(lambda: req.done, 30, f"search {text!r}")
    return req


def test_jpeg_hit_stays_off_the_map_and_is_shown_as_not_georeferenced(
    make_plugin, tmp_path, message_bar, no_exception_dialogs
):
    plugin = make_plugin({"hits": scenario_hits(tmp_path)})
    dock = plugin.dock
    search(dock, "a farm field")
    footprints: QgsVectorLayer = dock.result_map.layers.footprints
    rows = {f["rank"]: f for f in footprints.getFeatures()}
    assert len(rows) == 3
    assert not rows[2].hasGeometry() and rows[2]["georeferenced"] is False
    assert rows[2]["note"] == NOT_GEOREFERENCED_NOTE
    assert rows[1].hasGeometry() and rows[1]["georeferenced"] is True
    # no layer anywhere shows the JPEG with made-up coordinates
    sources = [layer.source() for layer in QgsProject.instance().mapLayers().values()]
    wait_until(lambda: dock.result_map.pending() == 0, 30, "the tile layers")
    assert len(dock.result_map.layers.tiles) == 2
    assert not any("photo" in s for s in sources), sources
    assert footprints.extent().xMaximum() < 180 and footprints.extent().yMinimum() > -90
    # the list marks it and shows the calibrated confidence of each tile
    item = dock.results.item(1)
    assert "not georeferenced" in item.text() and "confidence 40 %" in item.text()
    assert NOT_GEOREFERENCED_NOTE in item.toolTip()
    assert "not georeferenced" in dock.status_label.text()

    # selecting it opens the enlarged view (with "Open image"), and the map stays where it was
    canvas = dock.iface.mapCanvas()
    before = canvas.extent()
    dock.results.setCurrentRow(1)
    assert dock.result_map.viewer is not None and dock.result_map.viewer.isVisible()
    assert "not georeferenced" in dock.result_map.viewer.note.text().lower()
    assert dock.result_map.viewer.open_button.text() == "Open image"
    assert not dock.result_map.viewer.image.pixmap().isNull()
    assert canvas.extent() == before

    # an export says which rows have no geometry and why
    text = dock.save_footprints(str(tmp_path / "hits.gpkg"))
    assert "1 rows have no geometry (#2)" in text and "not georeferenced" in text
    saved = QgsVectorLayer(str(tmp_path / "hits.gpkg"), "saved", "ogr")
    notes = {f["rank"]: f["note"] for f in saved.getFeatures()}
    assert notes[2] == NOT_GEOREFERENCED_NOTE and not notes[1]
    assert message_bar.get_messages(Qgis.Warning)


def test_selected_tile_is_outlined_not_filled(make_plugin, tmp_path, no_exception_dialogs):
    plugin = make_plugin({"hits": scenario_hits(tmp_path)})
    search(plugin.dock, "a farm field")
    plugin.dock.results.setCurrentRow(0)
    band = plugin.dock.result_map.band
    assert band is not None and not plugin.dock.result_map.highlight_geometry().isEmpty()
    assert band.fillColor().alpha() == 0 and band.strokeColor().alpha() > 0
    # footprints are outlines only: no fill washes the imagery out
    for item in plugin.dock.result_map.layers.footprints.renderer().legendSymbolItems():
        for layer in item.symbol().symbolLayers():
            assert layer.fillColor().alpha() == 0 or layer.brushStyle() == 0


def test_weak_match_is_said_in_plain_words(make_plugin, tmp_path, no_exception_dialogs):
    plugin = make_plugin({"hits": scenario_hits(tmp_path), "weak_match": True})
    dock = plugin.dock
    search(dock, "a harbour with ships")
    assert dock.weak_label.isVisibleTo(dock)
    text = dock.weak_label.text()
    assert "Weak matches" in text and "a harbour with ships" in text
    assert "Try other words" in text


def test_latest_query_wins(make_plugin, tmp_path, no_exception_dialogs):
    plugin = make_plugin({"hits": scenario_hits(tmp_path), "delays": {"slow": 2.0}})
    dock = plugin.dock
    dock.bar.query_edit.setText("slow harbour")
    first = dock.search()
    assert dock.bar.search_button.isEnabled(), "Search stays enabled while a search runs"
    dock.bar.query_edit.setText("fields")
    second = dock.search()
    wait_until(lambda: first.done and second.done, 30, "both searches")
    assert first.error is not None and first.error.cancelled
    assert second.error is None
    settle = time.monotonic() + 0.5  # nothing of the replaced search arrives later
    wait_until(lambda: time.monotonic() > settle, 5)
    root = layers.results_root()  # the parent group "CACH results"
    assert root.children()[0].name() == "CACH: “fields”"
    assert not any("slow harbour" in g.name() for g in root.findGroups())
    assert dock.session.result.query["text"] == "fields"


def test_choosing_another_index_clears_old_results(
    make_plugin, tmp_path, message_bar, no_exception_dialogs
):
    not_an_index = str(tmp_path / "holiday-photos")
    plugin = make_plugin({"hits": scenario_hits(tmp_path), "missing_indexes": [not_an_index]})
    dock = plugin.dock
    search(dock, "a farm field")
    assert dock.results.count() == 3
    dock.set_index_path(not_an_index)
    assert dock.results.count() == 0 and dock.session.result is None
    assert "Index changed" in dock.status_label.text()
    req = search(dock, "a farm field")
    assert req.error is not None and req.error.code == "index_missing"
    assert dock.results.count() == 0
    status = dock.status_label.text()
    assert "not a CACH index" in status and "Index raster folder" in status
    assert "cach index" not in status  # never the command line's words
    warnings = message_bar.get_messages(Qgis.Warning)
    assert any("Choose an index folder made with Raster ▸ CACH ▸ Index raster folder" in m for m in warnings)


def test_indexing_that_indexes_nothing_is_a_warning(
    make_plugin, tmp_path, message_bar, no_exception_dialogs
):
    skipped = [
        {"path": f"/data/{name}", "reason": "not a raster GDAL can read", "code": "not_a_raster"}
        for name in ("a.txt", "b.doc", "c.pdf")
    ]
    plugin = make_plugin({"summary": {"tiles": 0, "skipped": skipped}})
    task = plugin.jobs.start_index(IndexRequest(str(tmp_path / "idx"), paths=(str(tmp_path),)))
    wait_until(lambda: task.summary is not None, 30, "the index task")
    warnings = message_bar.get_messages(Qgis.Warning)
    assert any("Nothing was indexed: 3 files skipped: a.txt (not a raster)" in m for m in warnings)
    assert not message_bar.get_messages(Qgis.Success)


def test_large_run_waits_for_confirmation(make_plugin, tmp_path, message_bar, no_exception_dialogs):
    from cach_for_qgis.cach_qgis.dialogs import QuestionDialog

    plugin = make_plugin({"new_tiles": 250_000})
    task = plugin.jobs.start_index(IndexRequest(str(tmp_path / "idx"), paths=(str(tmp_path),)))
    wait_until(lambda: any(isinstance(d, QuestionDialog) for d in plugin.dialogs), 30, "dialog")
    dialog = plugin.dialogs[-1]
    assert dialog.isVisible() and "250,000 new tiles" in dialog.text.text()
    assert task.error is not None and task.error.code == "confirm_large_run"
    dialog.accept()  # "Index anyway": the same run again, with confirm
    resent = plugin.jobs.tasks[-1]
    assert resent is not task and resent.params["confirm"] is True
    wait_until(lambda: resent.summary is not None, 30, "the confirmed run")
    assert resent.summary.tiles == 250_000
    assert any("Index ready" in m for m in message_bar.get_messages(Qgis.Success))


def test_adapt_to_this_archive_runs_as_a_task(
    make_plugin, tmp_path, message_bar, no_exception_dialogs
):
    plugin = make_plugin({"adapt_steps": 4, "step_s": 0.1})
    dialog = plugin.show_adapt_dialog()
    assert "Adapt the model" in dialog.text.text()
    dialog.accept()
    task = plugin.jobs.tasks[-1]
    assert task.op == "adapt" and task.params["index"] == plugin.dock.index_path()
    wait_until(lambda: task.result is not None or task.error is not None, 30, "adapt")
    assert [p.done for p in task.progress_events] == [1, 2, 3, 4]
    wait_until(lambda: message_bar.get_messages(Qgis.Success), 10, "the success message")
    assert "Adapted the model to this archive" in message_bar.get_messages(Qgis.Success)[-1]

    # Cancel in the task manager stops it; the user is told nothing changed
    slow = plugin.jobs.adapt_index(plugin.dock.index_path(), steps=50)
    slow.progressEvent.connect(lambda _p: slow.cancel())
    wait_until(lambda: slow.error is not None, 30, "the cancelled adapt")
    assert slow.error.cancelled
    wait_until(
        lambda: any("Adapting cancelled" in m for m in message_bar.get_messages(Qgis.Info)),
        10,
        "the cancel message",
    )


def test_outdated_index_offers_reindex(make_plugin, tmp_path, no_exception_dialogs):
    rasters = str(tmp_path / "rasters")
    plugin = make_plugin(
        {"hits": scenario_hits(tmp_path), "index": {"outdated_model": True, "roots": [rasters]}}
    )
    dock = plugin.dock
    search(dock, "a farm field")
    index = dock.index_path()
    assert index in plugin.reindex_offers
    offer = plugin.reindex_offers[index]
    assert offer.button.text() == "Re-index with the new model"
    search(dock, "trees")  # offered once per index, not at every search
    assert len(plugin.reindex_offers) == 1
    offer.button.click()
    dialog = plugin.dialogs[-1]
    assert dialog.index.filePath() == index and dialog.folder.filePath() == rasters
    assert dialog.rebuild.isChecked()


def test_map_tool_route_names_the_model(make_plugin, tmp_path, no_exception_dialogs):
    hits = scenario_hits(tmp_path)
    plugin = make_plugin({"hits": hits, "locate": hits[0], "captions": ["a farm", "fields"]})
    tool = plugin.tool
    got = []
    tool.captioned.connect(lambda hit, res: got.append(res))
    tool.identify(QgsPointXY(0, 0))
    wait_until(lambda: got, 30, "captions")
    dock = plugin.dock
    assert dock.result_map.layers.group.name() == "CACH: similar to tile 11"
    assert "?" not in dock.status_label.text()
    assert "Model: CACH hashing, fake encoders, 64-bit codes" in dock.status_label.toolTip()
    assert all(f["model"] for f in dock.result_map.layers.footprints.getFeatures())
