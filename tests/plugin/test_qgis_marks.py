"""Search that learns from the analyst's marks, through the dock (issue 18), against the REAL
worker and an index of the sample rasters (real QGIS): marks listed with right/wrong, a mark
from the map tool's right-click, Refine, undo one mark, clear, save the refined search to a
file and run it again through the dock on a second index."""

from __future__ import annotations

import json

import pytest
from conftest import link_folder, wait_until
from qgis.core import Qgis, QgsCoordinateReferenceSystem


@pytest.fixture
def dock(qgis_iface, shared, sample_index, qgis_new_project):  # noqa: ANN001
    from cach_for_qgis.cach_qgis.dock import SearchDock

    dock = SearchDock(qgis_iface, shared)
    dock.set_index_path(sample_index)
    yield dock
    dock.cleanup()
    dock.deleteLater()


@pytest.fixture(scope="module")
def second_index(shared, rasters, tmp_path_factory) -> str:  # noqa: ANN001
    """Another index: one of the sample rasters, indexed on its own."""
    folder = link_folder(rasters[:1], tmp_path_factory.mktemp("second"))
    index = tmp_path_factory.mktemp("second_index") / "cach_index"
    made = shared.call("index", {"index": str(index), "paths": [str(folder)]}, timeout_s=900)
    assert made.get("tiles", 0) > 0, made
    return str(index)


def wait_done(dock, req, what: str):  # noqa: ANN001
    assert req is not None
    wait_until(lambda: req.done, 300, what)
    assert req.error is None, req.error
    wait_until(
        lambda: dock.session.result is not None and dock.result_map.pending() == 0, 30, "layers"
    )
    return dock.session.result


def mark_on_map(dock, qgis_iface, shared, hit, right: bool):  # noqa: ANN001
    """The map tool's right-click menu: its "mark right" action on ``hit``'s footprint."""
    from cach_for_qgis.cach_qgis import layers
    from cach_for_qgis.cach_qgis.maptool import TileTool

    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    point = layers.footprint_geometry(hit).centroid().asPoint()
    tool = TileTool(canvas, shared, dock.index_path)
    got = []
    tool.marked.connect(dock.mark)
    tool.marked.connect(lambda h, r: got.append((h, r)))
    tool.failed.connect(got.append)
    menu = tool.mark_menu(point)
    texts = [a.text() for a in menu.actions() if a.text()]
    assert any("right" in t for t in texts) and any("wrong" in t for t in texts), texts
    action = next(a for a in menu.actions() if ("right" if right else "wrong") in a.text())
    action.trigger()
    wait_until(lambda: got, 120, "the tile under the right-click")
    assert got[0] == (got[0][0], right), got
    return got[0][0]


def test_marks_refine_undo_save_and_run_saved(
    dock,
    qgis_iface,
    shared,
    second_index,
    tmp_path,
    message_bar,  # noqa: ANN001
):
    dock.bar.query_edit.setText("a river")
    dock.bar.k_spin.setValue(8)
    first = wait_done(dock, dock.search(), "first search")
    hits = [h for h in first.results]
    assert len(hits) >= 4
    assert not dock.marks_box.list.isVisibleTo(dock) and "none" in dock.marks_box.label.text()

    # two marks in the panel, one from the map tool's right-click
    dock.mark(hits[0], positive=True)
    dock.mark(hits[1], positive=False)
    on_map = next(h for h in hits[2:] if h.georeferenced)
    marked = mark_on_map(dock, qgis_iface, shared, on_map, right=True)
    assert marked.tile_id == on_map.tile_id
    rows = dock.marks_box.rows()
    assert len(rows) == 3
    assert "right" in rows[0] and f"tile {on_map.tile_id}" in rows[0]  # latest first
    assert "wrong" in rows[1] and f"tile {hits[1].tile_id}" in rows[1]
    assert "right" in rows[2] and f"tile {hits[0].tile_id}" in rows[2]
    assert "2 right, 1 wrong" in dock.marks_box.label.text()
    assert "✓" in dock.results.item(0).text() and "✗" in dock.results.item(1).text()

    # Refine learns from the marks
    dock.marks_box.refine_button.click()
    req = dock.request
    assert req.params["positive"] == sorted([hits[0].tile_id, on_map.tile_id])
    assert req.params["negative"] == [hits[1].tile_id]
    refined = wait_done(dock, req, "refined search")
    assert refined.query["learner"] == "logistic-prior" and refined.results
    assert "(+2/−1)" in dock.result_map.layers.group.name()

    # undo one mark: the one selected in the list, else the latest
    dock.marks_box.list.setCurrentRow(1)  # the wrong mark
    dock.marks_box.undo_button.click()
    assert dock.session.marks.params() == {"positive": sorted([hits[0].tile_id, on_map.tile_id])}
    dock.marks_box.list.clearSelection()
    assert dock.undo_mark() and dock.session.marks.params() == {"positive": [hits[0].tile_id]}
    dock.mark(hits[2] if hits[2].tile_id != hits[0].tile_id else hits[3], positive=True)
    assert len(dock.marks_box.rows()) == 2

    # save the refined search to a file (the results are shown as usual)
    path = tmp_path / "river.json"
    saved_req = dock.save_refined_search(str(path))
    assert saved_req.params["save"] == str(path) and saved_req.params["text"] == "a river"
    kept = wait_done(dock, saved_req, "save refined search")
    assert path.is_file() and kept.results
    assert json.loads(path.read_text())  # a JSON file
    wait_until(lambda: message_bar.get_messages(Qgis.Success), 10, "the saved message")
    assert any(str(path) in m for m in message_bar.get_messages(Qgis.Success))

    # clear all marks
    dock.marks_box.clear_button.click()
    assert not dock.session.marks and dock.marks_box.rows() == []
    assert not dock.marks_box.save_button.isEnabled()

    # run it again on the same index, then on a second index, through the dock
    again = wait_done(dock, dock.run_saved_search(str(path)), "saved search, same index")
    assert again.query.get("scorer") == "full"
    assert len(again.results) == len(kept.results) == 8
    assert "positive" not in dock.request.params and dock.request.params["saved"] == str(path)
    dock.set_index_path(second_index)
    other = wait_done(dock, dock.run_saved_search(str(path)), "saved search, second index")
    assert other.results and other.query.get("scorer") == "full"
    assert all("/second" in h.source for h in other.results)  # the second index's tiles
    assert "river.json" in dock.result_map.layers.group.name()
    assert "(+" not in dock.result_map.layers.group.name()
    assert "saved search" in dock.status_label.text()
    assert not message_bar.get_messages(Qgis.Critical)


def fake_hit(tile_id: int):  # noqa: ANN201
    from types import SimpleNamespace

    return SimpleNamespace(
        tile_id=tile_id,
        rank=0,
        name=f"t{tile_id}",
        source="x",
        window=(0, 0, 1, 1),
        score=0.5,
        hamming=None,
        confidence=None,
        georeferenced=True,
        footprint=None,
    )


def test_plugin_wires_the_map_tools_marks_into_the_panel(
    qgis_iface,  # noqa: ANN001
    runtime_python,  # noqa: ANN001
    own_shared_client,  # noqa: ANN001
    no_exception_dialogs,  # noqa: ANN001
):
    import cach_for_qgis

    plugin = cach_for_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.tool.marked.emit(fake_hit(5), True)
        plugin.tool.marked.emit(fake_hit(9), False)
        assert plugin.dock.session.marks.params() == {"positive": [5], "negative": [9]}
        rows = plugin.dock.marks_box.rows()
        assert "wrong" in rows[0] and "tile 9" in rows[0] and "right" in rows[1]
    finally:
        plugin.unload()


def test_marks_are_cleared_when_the_index_changes(dock, second_index):  # noqa: ANN001
    dock.mark(fake_hit(1), True)
    assert len(dock.marks_box.rows()) == 1
    dock.set_index_path(second_index)
    assert not dock.session.marks and dock.marks_box.rows() == []
