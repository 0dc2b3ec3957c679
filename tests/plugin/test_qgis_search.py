"""Acceptance tests against the REAL worker and an index of the sample rasters (real QGIS)."""

from __future__ import annotations

import shutil
import time

import pytest
from cach_for_qgis.cach_qgis import layers
from conftest import TickMonitor, link_folder, wait_until
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt

#: longest the UI thread may go without running its event loop while the worker searches/indexes
MAX_UI_GAP_S = 0.5


@pytest.fixture
def dock(qgis_iface, shared, sample_index, qgis_new_project):  # noqa: ANN001
    from cach_for_qgis.cach_qgis.dock import SearchDock

    dock = SearchDock(qgis_iface, shared)
    dock.set_index_path(sample_index)
    yield dock
    dock.cleanup()  # stops tile layers still being added, as the plugin's unload does
    dock.deleteLater()


def raster_extents(rasters) -> list[QgsRectangle]:  # noqa: ANN001
    from cach_for_qgis.cach_qgis.layers import raster_extent_4326

    extents = [raster_extent_4326(str(p)) for p in rasters]
    return [e for e in extents if e is not None]


def inside_some(rect: QgsRectangle, extents: list[QgsRectangle]) -> bool:
    for extent in extents:
        grown = QgsRectangle(extent)
        grown.grow(max(extent.width(), extent.height()) * 0.02)  # reprojection wobble
        if grown.contains(rect):
            return True
    return False


def run_search(dock, text: str, k: int):  # noqa: ANN001
    shown = []
    dock.resultsShown.connect(shown.append)
    dock.bar.query_edit.setText(text)
    dock.bar.k_spin.setValue(k)
    req = dock.search()
    wait_until(lambda: shown or req.done and req.error, 300, "search results")
    assert req.error is None, req.error
    wait_until(lambda: shown, 30, "result layers")
    wait_until(lambda: dock.result_map.pending() == 0, 30, "the tile layers")
    return req, shown[-1]


def test_text_search_adds_group_with_k_footprints(dock, rasters, tmp_path, message_bar):
    k = 5
    req, result = run_search(dock, "a parking lot next to a road", k)
    group = result.group
    group_name = group.name()
    assert group.name() == "CACH: “a parking lot next to a road”"
    footprints: QgsVectorLayer = result.footprints
    assert footprints.featureCount() == k
    names = footprints.fields().names()
    from cach_for_qgis.model_runtime.protocol import FOOTPRINT_FIELDS

    assert names == [name for name, _kind in FOOTPRINT_FIELDS]  # the CLI's GeoPackage schema
    extents = raster_extents(rasters)
    ranks = []
    for feat in footprints.getFeatures():
        ranks.append(feat["rank"])
        assert feat["query"] == "a parking lot next to a road"
        assert 0.0 <= feat["score"] <= 1.0
        if not feat["georeferenced"]:  # a raster without CRS has no map footprint
            assert not feat.hasGeometry() and feat["note"]
            continue
        assert inside_some(feat.geometry().boundingBox(), extents), feat.geometry().asWkt()
    assert sorted(ranks) == list(range(1, k + 1))
    assert footprints.labelsEnabled() and footprints.renderer().type() == "graduatedSymbol"

    # matching tiles are VRT windows of the sources, not copies, added one per event-loop turn
    wait_until(lambda: result.tiles_pending == 0, 30, "the tile layers")
    assert result.tiles and all(isinstance(t, QgsRasterLayer) for t in result.tiles)
    for tile in result.tiles:
        assert tile.isValid() and tile.source().endswith(".vrt")
        assert tile.width() <= 4096
    assert dock.results.count() == k
    wait_until(lambda: dock.results.thumbnails_pending() == 0, 30, "thumbnails")
    assert not dock.results.item(0).icon().isNull()

    # selecting a result zooms to it
    canvas = dock.iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    dock.results.setCurrentRow(0)
    first = footprints.getFeature(1).geometry().boundingBox()
    assert canvas.extent().contains(first)
    # zoomed in: the footprint fills the canvas in at least one direction
    extent = canvas.extent()
    assert extent.width() < first.width() * 3 or extent.height() < first.height() * 3

    # saving the footprints to GeoPackage keeps every attribute
    from cach_for_qgis.cach_qgis.layers import save_footprints

    gpkg = save_footprints(footprints, str(tmp_path / "results.gpkg"))
    saved = QgsVectorLayer(gpkg, "saved", "ogr")
    assert saved.isValid() and saved.featureCount() == k
    assert set(names) <= set(saved.fields().names())

    # tile layers are collapsed (no band legends), the Tiles group too
    tiles_group = group.findGroup("Tiles")
    assert tiles_group is not None and not tiles_group.isExpanded()
    assert not any(node.isExpanded() for node in tiles_group.findLayers())

    # re-running a query replaces its group (no pile of layers) and moves it to the top
    run_search(dock, "trees", k)
    layers_before = len(QgsProject.instance().mapLayers())
    run_search(dock, "a parking lot next to a road", k)
    root = layers.results_root()  # the parent group "CACH results"
    assert sum(1 for g in root.children() if g.name() == group_name) == 1
    assert root.children()[0].name() == group_name
    assert len(QgsProject.instance().mapLayers()) == layers_before
    assert not message_bar.get_messages(Qgis.Critical)

    # the device in use (from the worker's ready/loaded events) is reported in the panel
    assert dock.client.device in ("cpu", "mps") or dock.client.device.startswith("cuda")
    assert dock.client.device in dock.runtime_box.label.text()


def test_refine_with_examples_and_extent(dock, message_bar):
    req, result = run_search(dock, "trees", 6)
    hits = [dock.results.item(i).data(Qt.UserRole + 1) for i in range(dock.results.count())]
    dock.mark(hits[1], positive=True)
    dock.mark(hits[0], positive=False)
    req = dock.refine()
    assert req.params["positive"] == [hits[1].tile_id]
    assert req.params["negative"] == [hits[0].tile_id]
    wait_until(lambda: req.done, 300, "refined search")
    assert req.error is None, req.error
    assert "(+1/−1)" in dock.result_map.layers.group.name()

    # "current map extent only" sends the canvas extent and CRS
    canvas = dock.iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    canvas.setExtent(dock.result_map.layers.footprints.extent())
    dock.clear_examples()
    dock.bar.extent_check.setChecked(True)
    req = dock.search()
    assert req.call.bbox_crs == "EPSG:4326" and len(req.params["bbox"]) == 4
    wait_until(lambda: req.done, 300, "extent search")
    assert req.error is None, req.error
    dock.bar.extent_check.setChecked(False)


def turn_page(dock, button):  # noqa: ANN001
    """Press ‹ Previous or Next › and wait for the page (its layers included)."""
    shown = []
    dock.resultsShown.connect(shown.append)
    button.click()
    req = dock.request
    wait_until(lambda: shown or req.done and req.error, 300, "the page")
    assert req.error is None, req.error
    wait_until(lambda: dock.result_map.pending() == 0, 30, "the tile layers")
    return req, shown[-1]


def test_next_and_previous_page(dock, message_bar):
    k = 4
    _req, _shown = run_search(dock, "houses along a road", k)
    actions = dock.actions
    first = dock.results.hits()
    assert [h.rank for h in first] == list(range(1, k + 1))
    assert not actions.previous_button.isEnabled() and actions.next_button.isEnabled()
    dock.mark(first[0], True)

    # Next ›: the same query k tiles on, ranked k+1..2k; the mark made on page 1 is kept
    req, page2 = turn_page(dock, actions.next_button)
    assert req.params["offset"] == k and req.params["k"] == k and not req.call.positive
    second = dock.results.hits()
    assert [h.rank for h in second] == list(range(k + 1, 2 * k + 1))
    assert [h.tile_id for h in second] != [h.tile_id for h in first]
    assert sorted(f["rank"] for f in page2.footprints.getFeatures()) == [h.rank for h in second]
    assert page2.group.name() == f"CACH: “houses along a road”, results {k + 1}–{2 * k}"
    assert dock.status_label.text().startswith(f"Results {k + 1}–{2 * k} for ")
    assert actions.previous_button.isEnabled() and actions.next_button.isEnabled()
    dock.mark(second[1], False)  # marks made on page 2 are kept too
    assert len(dock.session.marks) == 2

    # ‹ Previous: page 1 again, the same tiles, its mark still shown
    req, _page1 = turn_page(dock, actions.previous_button)
    assert "offset" not in req.params
    assert [h.tile_id for h in dock.results.hits()] == [h.tile_id for h in first]
    assert "  ✓" in dock.results.item(0).text() and len(dock.session.marks) == 2
    assert not actions.previous_button.isEnabled()
    assert dock.result_map.layers.group.name() == "CACH: “houses along a road”"

    # Refine learns from the marks of both pages and starts again at page 1
    req = dock.refine()
    assert "offset" not in req.params
    assert req.params["positive"] == [first[0].tile_id]
    assert req.params["negative"] == [second[1].tile_id]
    wait_until(lambda: req.done, 300, "refined search")
    assert req.error is None, req.error
    assert dock.results.hits()[0].rank == 1 and not actions.previous_button.isEnabled()
    assert not message_bar.get_messages(Qgis.Critical)


def test_the_next_page_shows_no_tile_of_the_first(dock):
    """Pages are collapsed page by page (index/collapse.py): page 2 repeats no tile of page 1."""
    k = 4
    run_search(dock, "houses along a road", k)
    first = {h.tile_id for h in dock.results.hits()}
    turn_page(dock, dock.actions.next_button)
    assert not first & {h.tile_id for h in dock.results.hits()}


def test_ui_thread_not_blocked_by_search(dock):
    # a query text not used before, so the worker has to encode it (no cached answer)
    dock.bar.query_edit.setText(f"a baseball field next to a parking lot {time.time_ns()}")
    dock.bar.k_spin.setValue(10)
    with TickMonitor() as ticks:
        start = time.monotonic()
        req = dock.search()
        # a synchronous call would return only when the answer is there
        returned = time.monotonic()
        answered_in_search = req.done
        wait_until(lambda: req.done, 300, "search")
        end = time.monotonic()
    assert req.error is None, req.error
    # search() handed the work to the worker and returned before the answer came (answers are
    # only read by the event loop, after search() returned) ...
    assert not answered_in_search
    assert returned - start < 0.2, returned - start
    # ... and the UI-thread timer kept firing while the worker answered, with no long stall
    during = [t for t in ticks.ticks if returned < t < end]
    assert len(during) >= 1 or end - returned < 3 * ticks.interval, (end - returned, ticks.ticks)
    assert ticks.max_gap < MAX_UI_GAP_S, f"UI thread blocked for {ticks.max_gap:.3f} s"


def test_map_tool_click_returns_captions_and_similar(dock, qgis_iface, shared, message_bar):
    from cach_for_qgis.cach_qgis.maptool import TileTool

    _req, result = run_search(dock, "buildings", 5)
    # a tile with a map footprint (rasters without a CRS cannot be clicked on the map)
    feature = next(f for f in result.footprints.getFeatures() if not f.geometry().isEmpty())
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    canvas.setExtent(feature.geometry().boundingBox())
    canvas.refresh()
    point = feature.geometry().centroid().asPoint()

    tool = TileTool(canvas, shared, dock.index_path)
    tool.captioned.connect(dock.show_captions)
    got = []
    tool.captioned.connect(lambda hit, res: got.append((hit, res)))
    tool.failed.connect(lambda err: got.append(err))
    canvas.setMapTool(tool)
    pixel = canvas.getCoordinateTransform().transform(QgsPointXY(point))
    event = QgsMapMouseEvent(
        canvas,
        QEvent.MouseButtonRelease,
        QPoint(round(pixel.x()), round(pixel.y())),
        Qt.LeftButton,
        Qt.LeftButton,
        Qt.NoModifier,
    )
    with TickMonitor() as ticks:
        tool.canvasReleaseEvent(event)
        wait_until(lambda: got, 900, "captions")  # first run may build the caption codes
    assert ticks.max_gap < MAX_UI_GAP_S
    hit, captions = got[0]
    assert hit.tile_id is not None
    assert hit.footprint is not None
    assert captions.captions and all(c.text for c in captions.captions)
    assert captions.similar
    assert dock.captions.toPlainText().strip()
    # one naming scheme for similar tiles, whether from the map tool or the context menu
    assert dock.result_map.layers.group.name() == f"CACH: similar to tile {hit.tile_id}"
    assert "model ?" not in dock.status_label.text() and "?" not in dock.status_label.text()
    assert "Model:" in dock.status_label.toolTip()
    dock.search_similar(hit)
    wait_until(lambda: dock.request.done, 300, "similar search")
    assert dock.result_map.layers.group.name() == f"CACH: similar to tile {hit.tile_id}"
    canvas.unsetMapTool(tool)
    assert not message_bar.get_messages(Qgis.Critical)


def test_index_task_progress_complete_and_cancel(shared, rasters, tmp_path, message_bar):
    from cach_for_qgis.cach_qgis.tasks import IndexTask
    from cach_for_qgis.model_runtime.protocol import IndexRequest

    small = link_folder(rasters[:1], tmp_path / "a")
    index = str(tmp_path / "index")
    manager = QgsApplication.taskManager()

    task = IndexTask(shared, IndexRequest(index, paths=(str(small),), tile_size=128))
    outcome = []
    task.indexed.connect(lambda path, summary: outcome.append(summary))
    task.failed.connect(outcome.append)
    with TickMonitor() as ticks:
        manager.addTask(task)
        wait_until(lambda: outcome, 600, "indexing task")
    assert ticks.max_gap < MAX_UI_GAP_S, f"UI thread blocked for {ticks.max_gap:.3f} s"
    summary = outcome[0]
    assert not isinstance(summary, Exception), summary
    assert summary.tiles > 0
    assert task.progress_events, "the task reported no progress"
    assert task.progress() == pytest.approx(100, abs=1) or task.progress_events[-1].total
    first = shared.call("search", {"index": index, "text": "roads", "k": 3}, timeout_s=300)
    assert len(first["results"]) == 3
    tiles_before = first["index"]["tiles"]

    # a second, bigger run is cancelled at its first progress event
    more = tmp_path / "b"
    shutil.copytree(small, more)
    link_folder(rasters, more)
    link_folder(rasters, more / "again")  # enough work to still be running when cancelled
    task2 = IndexTask(shared, IndexRequest(index, paths=(str(more),), tile_size=128))
    outcome2 = []
    task2.indexed.connect(lambda path, summary: outcome2.append(summary))
    task2.failed.connect(outcome2.append)
    task2.progressEvent.connect(lambda p: task2.cancel())
    manager.addTask(task2)
    wait_until(lambda: outcome2, 600, "cancelled task")
    err = outcome2[0]
    assert isinstance(err, Exception) and err.type == "cancelled", err

    # the previous index is still usable (files committed before the cancel may have been added)
    after = shared.call("search", {"index": index, "text": "roads", "k": 3}, timeout_s=300)
    assert len(after["results"]) == 3
    assert after["index"]["tiles"] >= tiles_before


def test_processing_algorithms(qgis_processing, shared, sample_index, tmp_path, rasters):
    import processing
    from cach_for_qgis.cach_qgis.processing.provider import CachProvider

    registry = QgsApplication.processingRegistry()
    added = registry.providerById("cach") is None and registry.addProvider(CachProvider())
    try:
        _run_algorithms(processing, sample_index, tmp_path, rasters)
    finally:
        if added:
            registry.removeProvider("cach")


def _run_algorithms(processing, sample_index, tmp_path, rasters):  # noqa: ANN001
    out = processing.run(
        "cach:textsearch",
        {"INDEX": sample_index, "TEXT": "a river", "K": 4, "OUTPUT": "memory:"},
    )
    layer = out["OUTPUT"]
    if isinstance(layer, str):
        layer = QgsProcessingUtils_mapLayerFromString(layer)
    assert layer.featureCount() == 4
    assert layer.fields().indexOf("score") >= 0

    folder = link_folder(rasters[:1], tmp_path / "p")
    out = processing.run(
        "cach:indexrasterfolder",
        {"INPUT": str(folder), "INDEX": str(tmp_path / "pidx"), "DRY_RUN": True},
    )
    assert out["TILES"] > 0 and "tiles" in out["SUMMARY"]
    _index_into_an_existing_tiling(processing, tmp_path, rasters)


def _index_into_an_existing_tiling(processing, tmp_path, rasters):  # noqa: ANN001
    """Issue 20: a second folder indexed through the algorithm with no tile size keeps the
    index's 128-px tiling (no confirm_retile, nothing re-tiled)."""
    import json
    import sqlite3

    from cach_for_qgis.cach_qgis.runtime_client import shared_client

    a = link_folder(rasters[:1], tmp_path / "ta")
    b = link_folder(rasters[1:2], tmp_path / "tb")
    idx = tmp_path / "tidx"
    made = shared_client().call("index", {"index": str(idx), "paths": [str(a)], "tile_size": 128},
                                timeout_s=900)
    out = processing.run("cach:indexrasterfolder", {"INPUT": str(b), "INDEX": str(idx)})
    assert out["TILES"] > made["tiles"], out  # the folder was added (refused before the fix)
    assert "re-tile" not in out["SUMMARY"], out["SUMMARY"]
    held = shared_client().call("index", {"index": str(idx), "paths": [str(a)], "dry_run": True})
    assert held["tiling"]["tile_size"] == 128, held
    assert not held.get("retile_tiles"), held
    kept = {r["path"]: r["tiles"] for r in held["roots_held"]}
    assert kept[str(a)] == made["tiles"] and kept[str(b)] > 0, kept  # a's tiles as they were
    with sqlite3.connect(idx / "index.sqlite") as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    assert json.loads(meta["tiling"])["tile_size"] == 128, meta


def QgsProcessingUtils_mapLayerFromString(layer_id: str):  # noqa: N802
    from qgis.core import QgsProcessingContext, QgsProcessingUtils

    return QgsProcessingUtils.mapLayerFromString(layer_id, QgsProcessingContext())


def test_index_dialog_estimate_then_index(shared, rasters, tmp_path, qgis_iface, message_bar):
    from cach_for_qgis.cach_qgis.dialogs import IndexDialog

    folder = link_folder(rasters[:1], tmp_path / "rasters")
    dialog = IndexDialog(shared)
    dialog.index.setFilePath("")  # (pre-filled with the index in use)
    dialog.folder.setFilePath(str(folder))
    assert dialog.index.filePath() == str(folder / "cach_index")  # a default next to the data
    dialog.bands.setText("1,2,3")
    req = dialog.estimate()
    wait_until(lambda: req.done, 300, "dry run")
    assert req.error is None, req.error
    assert "1 file," in dialog.estimate_label.text() and "tiles" in dialog.estimate_label.text()
    assert not (folder / "cach_index" / "codes").exists()

    started = []
    dialog.taskStarted.connect(started.append)
    dialog.start()
    task = started[0]
    assert task.params["bands"] == [1, 2, 3] and task.call.dry_run is False
    done = []
    task.indexed.connect(lambda path, summary: done.append(summary))
    task.failed.connect(done.append)
    wait_until(lambda: done, 600, "indexing task")
    assert not isinstance(done[0], Exception), done[0]
    result = shared.call("search", {"index": str(folder / "cach_index"), "text": "fields", "k": 2})
    assert len(result["results"]) == 2


def test_runtime_dialog_reports_device(shared, runtime_python):
    from cach_for_qgis.cach_qgis import settings
    from cach_for_qgis.cach_qgis.dialogs import RuntimeDialog

    dialog = RuntimeDialog(shared)
    assert dialog.python.filePath() == runtime_python
    req = dialog.test()
    wait_until(lambda: req.done, 120, "status")
    assert req.error is None, req.error
    assert req.result["device"] in dialog.device.text()
    dialog.save()  # "tile layers per query" is set in the search panel now (test_help.py)
    assert settings.runtime_python() == runtime_python
