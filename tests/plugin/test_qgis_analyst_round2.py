"""Issue 20 in real QGIS: what an analyst meets (no runtime, cancel on short runs, the layer
tree after many queries, similar tiles from a map click, confidence in the list)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import link_folder, wait_until
from qgis.core import Qgis, QgsProject


@pytest.fixture
def plugin(qgis_iface, runtime_python, own_shared_client, qgis_new_project):  # noqa: ANN001
    import cach_for_qgis
    from qgis.core import QgsSettings

    QgsSettings().setValue("cach/runtime_python", runtime_python)
    plugin = cach_for_qgis.classFactory(qgis_iface)
    plugin.initGui()
    yield plugin
    plugin.unload()


def test_no_runtime_is_shown_in_the_panel_with_the_button_that_fixes_it(
    qgis_iface, message_bar, no_exception_dialogs, monkeypatch, own_shared_client
):
    import cach_for_qgis
    from cach_for_qgis.cach_qgis import dialogs, settings
    from qgis.core import QgsSettings

    QgsSettings().remove("cach/runtime_python")
    monkeypatch.setattr(settings, "resolve_runtime_python", lambda: None)
    plugin = cach_for_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.search_action.trigger()  # the analyst opens the panel
        dock = plugin.dock
        wait_until(lambda: bool(dock.client.last_error), 10, "the failed start")
        assert dock.runtime_box.problem.isVisibleTo(dock), "the problem must be in the panel"
        assert "No CACH runtime found" in dock.runtime_box.problem_label.text()
        assert "starts when this panel opens" not in dock.runtime_box.label.text()
        assert dock.runtime_box.button.isVisibleTo(dock)
        # Search with no index names the runtime, not "choose an index folder"
        dock.bar.index_combo.setCurrentText("")
        dock.bar.query_edit.setText("forest")
        dock.search()
        texts = message_bar.get_messages(Qgis.Warning) + message_bar.get_messages(Qgis.Info)
        assert texts and not any("Choose an index folder" in t for t in texts), texts
        dock.runtime_box.button.click()
        shown = [d for d in plugin.dialogs if isinstance(d, dialogs.RuntimeDialog)]
        assert shown and shown[0].isVisible(), "the button opens the Runtime dialog"
    finally:
        plugin.unload()


def _messages(bar) -> list[str]:  # noqa: ANN001
    return [m for level in (Qgis.Info, Qgis.Success, Qgis.Warning) for m in bar.get_messages(level)]


def test_a_cancel_that_came_after_the_last_tile_reports_a_complete_index(
    plugin, rasters, tmp_path, message_bar, no_exception_dialogs
):
    """The worker answers "cancelled" whenever a cancel was acknowledged, even when the run had
    already written every tile (short runs): the plugin reports the complete index and selects
    it, instead of "index the folder again to finish"."""
    from cach_for_qgis.cach_qgis.runtime_client import cancelled
    from cach_for_qgis.model_runtime.protocol import IndexRequest

    folder = link_folder(rasters[:1], tmp_path / "rasters")
    index = str(tmp_path / "index")
    call = IndexRequest(index, paths=(str(folder),))
    plugin.client.call(call, timeout_s=600)  # every tile written
    plugin.dock.set_index_path("")
    plugin.jobs.index_failed(call, cancelled("Cancelled."))  # what the task reports
    wait_until(lambda: _messages(message_bar), 120, "the outcome message")
    texts = _messages(message_bar)
    assert any("complete" in t for t in texts), texts
    assert not any("index the folder again" in t for t in texts), texts
    assert plugin.dock.index_path() == index, "the finished index is chosen in the panel"


def test_cancel_early_in_a_short_run_reports_what_happened(
    plugin, rasters, tmp_path, message_bar, no_exception_dialogs
):
    """Cancel pressed at the first tiles of a short run: the batches in flight may still finish
    every tile. Whatever happened, the message says it (checked against a dry run of the same
    run afterwards), and a complete index is selected."""
    from cach_for_qgis.model_runtime.protocol import IndexRequest

    folder = link_folder(rasters[:2], tmp_path / "rasters")
    index = str(tmp_path / "index")
    call = IndexRequest(index, paths=(str(folder),))
    plugin.dock.set_index_path("")
    task = plugin.jobs.start_index(call)

    def on_progress(progress) -> None:  # noqa: ANN001
        if progress.stage != "scan" and progress.done > 0:
            task.cancel()

    task.progressEvent.connect(on_progress)
    ended = []
    task.ended.connect(lambda: ended.append(True))
    wait_until(lambda: ended, 600, "the indexing task")
    wait_until(lambda: _messages(message_bar), 120, "the outcome message")
    texts = _messages(message_bar)
    todo = plugin.client.call(replace(call, dry_run=True), timeout_s=120)["new_tiles"]
    if todo == 0:
        assert any("complete" in t or "Index ready" in t for t in texts), texts
        assert not any("again to finish" in t for t in texts), texts
        assert plugin.dock.index_path() == index
    else:
        assert any(f"{todo:,} tiles" in t and "still to do" in t for t in texts), texts


@pytest.fixture(scope="module")
def photo_index(shared, tmp_path_factory) -> str:  # noqa: ANN001
    """An index of a few UC Merced photos only: no hit has a place on the map."""
    from conftest import UCM_IMAGES

    photos = [UCM_IMAGES / "forest" / f"forest{i:02d}.jpg" for i in range(4)]
    folder = link_folder(photos, tmp_path_factory.mktemp("photos") / "p")
    index = tmp_path_factory.mktemp("photo-index") / "idx"
    shared.call("index", {"index": str(index), "paths": [str(folder)]}, timeout_s=600)
    return str(index)


def _search(dock, text: str, k: int = 5):  # noqa: ANN001
    dock.bar.query_edit.setText(text)
    dock.bar.k_spin.setValue(k)
    req = dock.search()
    wait_until(lambda: req.done and dock.result_map.pending() == 0, 300, f"search {text!r}")
    assert req.error is None, req.error
    return req


def test_the_layer_tree_after_several_queries(
    plugin, sample_index, photo_index, no_exception_dialogs
):
    """One parent group "CACH results", layers named by their query, no empty layer for a
    query whose hits have no place on the map, one expanded state rule, and a clear action."""
    from cach_for_qgis.cach_qgis import layers

    dock = plugin.dock
    dock.set_index_path(sample_index)
    queries = ("a river", "a parking lot", "dense forest")
    for text in queries:
        _search(dock, text)
    project = QgsProject.instance()
    root = project.layerTreeRoot()
    tops = [node.name() for node in root.children()]
    assert tops.count("CACH results") == 1 and tops[0] == "CACH results", tops
    assert not any(name.startswith("CACH: ") for name in tops), "query groups go inside"
    parent = layers.results_root()
    groups = parent.findGroups(False)
    assert [g.name() for g in groups] == [f"CACH: “{t}”" for t in reversed(queries)]
    assert [g.isExpanded() for g in groups] == [True, False, False], "newest open, rest closed"
    names = [layer.name() for layer in project.mapLayers().values()]
    assert "Footprints" not in names
    for text in queries:
        assert any(text in name and "footprints" in name for name in names), names

    before = set(project.mapLayers())
    dock.set_index_path(photo_index)
    _search(dock, "a forest")
    assert dock.results.count() > 0 and not any(h.georeferenced for h in dock.results.hits())
    assert set(project.mapLayers()) == before, "no empty layer for photos with no place"
    assert len(layers.results_root().findGroups(False)) == len(queries)

    plugin.clear_action.trigger()
    assert layers.results_root() is None
    assert not project.mapLayers(), "every result layer went with the group"
    assert dock.results.count() == 0


@pytest.fixture(scope="module")
def overlap_index(shared, rasters, tmp_path_factory) -> tuple[str, str]:  # noqa: ANN001
    """One sample raster indexed with half-overlapping tiles: every tile has neighbours that
    share its pixels."""
    folder = link_folder(rasters[:1], tmp_path_factory.mktemp("overlap") / "r")
    index = tmp_path_factory.mktemp("overlap-index") / "idx"
    params = {"index": str(index), "paths": [str(folder)], "overlap": 0.5}
    assert shared.call("index", params, timeout_s=600)["tiles"] > 8
    return str(index), str(folder / rasters[0].name)


def _overlap(a, b) -> bool:  # noqa: ANN001
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return w > 0 and h > 0


def test_similar_tiles_from_a_map_click_are_other_places(
    plugin, overlap_index, no_exception_dialogs
):
    """A click's similar tiles never start with the clicked tile's overlapping neighbours:
    tiles of the same source sharing its pixels are collapsed, as in text search."""
    from cach_for_qgis.cach_qgis import layers
    from qgis.core import QgsCoordinateReferenceSystem, QgsPointXY

    index, raster = overlap_index
    dock = plugin.dock
    dock.set_index_path(index)
    dock.bar.k_spin.setValue(5)
    canvas = plugin.iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    extent = layers.raster_extent_4326(raster)
    shown = []
    dock.captionsShown.connect(lambda hit, result: shown.append((hit, result)))
    import re
    import time

    start = time.monotonic()
    req = plugin.tool.identify(QgsPointXY(extent.center()))
    assert req is not None
    wait_until(lambda: shown, 300, "the clicked tile's captions and similar tiles")
    waited_ms = (time.monotonic() - start) * 1000
    status_ms = float(re.search(r" in (\d+) ms", dock.status_label.text()).group(1))
    assert 0.7 * waited_ms - 20 <= status_ms <= waited_ms + 5, (status_ms, waited_ms)
    clicked, result = shown[-1]
    assert result.similar, "similar tiles expected"
    same_place = [
        h.tile_id
        for h in dock.results.hits()
        if h.source == clicked.source and _overlap(h.window, clicked.window)
    ]
    assert not same_place, f"tiles overlapping the clicked one {clicked.window}: {same_place}"


def test_result_list_confidence_never_rises_as_rank_falls(qgis_iface, no_exception_dialogs):
    from cach_for_qgis.cach_qgis.dock import SearchDock
    from cach_for_qgis.model_runtime.protocol import Hit, SearchResult
    from conftest import fake_client

    def hit(rank: int, confidence: float) -> Hit:
        return Hit(
            rank,
            rank,
            f"/photos/p{rank}.jpg",
            (0, 0, 64, 64),
            None,
            None,
            None,
            10,
            0.9 - rank / 100,
            confidence,
        )

    dock = SearchDock(qgis_iface, fake_client())
    result = SearchResult(
        results=[hit(1, 0.50), hit(2, 0.47), hit(3, 0.53), hit(4, 0.20)],
        query={"text": "a harbour"},
        model={},
        index={},
        timing_ms={"total": 5.0},
    )
    dock.show_result(result, "text:a harbour", "CACH: a harbour", "a harbour", "for a harbour")
    shown = [dock.results.item(i).text().split("\n")[0] for i in range(dock.results.count())]
    percents = [int(line.split("confidence ")[1].split(" %")[0]) for line in shown]
    assert percents == sorted(percents, reverse=True), shown
    assert percents[0] == 50
    dock.cleanup()
    dock.deleteLater()


def test_test_runtime_shows_the_resolved_device(plugin, no_exception_dialogs):
    dialog = plugin.show_runtime_dialog()
    req = dialog.test()
    wait_until(lambda: req.done, 300, "the runtime test")
    assert req.error is None, req.error
    device = dialog.device.text().split(" ")[0]
    assert device in ("cpu", "cuda") or device.startswith("cuda:"), dialog.device.text()
    assert "auto" not in dialog.device.text()


def test_first_search_after_adapt_is_fast_and_its_time_is_real(
    plugin, sample_index, tmp_path, message_bar, no_exception_dialogs
):
    """Adapt builds the adapted model's graphs (its own step); the first search after it
    builds nothing, and the status line's time is the time the analyst waited."""
    import re
    import shutil
    import time

    index = str(tmp_path / "adapted")
    shutil.copytree(sample_index, index)
    dock = plugin.dock
    dock.set_index_path(index)
    task = plugin.jobs.adapt_index(index, steps=5)
    wait_until(lambda: task.result is not None or task.error is not None, 600, "adapt")
    assert task.error is None, task.error
    assert "graphs" in {p.stage for p in task.progress_events}, "graph build is its own step"
    assert task.result.get("graph_seconds") is not None
    dock.bar.query_edit.setText("a parking lot")
    start = time.monotonic()
    req = dock.search()
    wait_until(lambda: req.done and dock.session.result is not None, 300, "the first search")
    waited_ms = (time.monotonic() - start) * 1000
    assert req.error is None, req.error
    assert "load" not in req.result.get("timing_ms", {}), req.result.get("timing_ms")
    shown = float(re.search(r" in (\d+) ms", dock.status_label.text()).group(1))
    assert shown <= waited_ms + 5 and shown >= 0.7 * waited_ms - 20, (shown, waited_ms)


def _estimate_and_run(client, folder, index) -> tuple[float, float]:  # noqa: ANN001
    import time

    params = {"index": str(index), "paths": [str(folder)]}
    estimate = client.call("index", {**params, "dry_run": True}, timeout_s=120)["seconds"]
    start = time.monotonic()
    client.call("index", params, timeout_s=900)
    return float(estimate), time.monotonic() - start


def test_index_estimates_are_within_one_and_a_half_times_the_real_time(shared, rasters, tmp_path):
    """After one run has measured this machine (rate without the model load and the run's
    overhead), estimates hold within 1.5x on the sample rasters and on 300 scene photos."""
    from conftest import UCM_IMAGES

    link_folder(rasters, tmp_path / "calibrate")
    _estimate_and_run(shared, tmp_path / "calibrate", tmp_path / "i0")
    classes = sorted(p for p in UCM_IMAGES.iterdir() if p.is_dir())[:15]
    photos = [p for c in classes for p in sorted(c.glob("*.jpg"))[:20]]
    assert len(photos) == 300
    scenes = link_folder(photos, tmp_path / "scenes")
    samples = link_folder(rasters, tmp_path / "samples")
    # the CPU is shared (other jobs change the real time by 2-3x within minutes): a folder
    # passes when one of three estimate-and-run pairs is within 1.5x
    for name, folder in (("scenes", scenes), ("samples", samples)):
        seen = []
        for attempt in range(3):
            estimate, real = _estimate_and_run(shared, folder, tmp_path / f"{name}{attempt}")
            seen.append((round(estimate, 1), round(real, 1)))
            if real / 1.5 <= estimate <= real * 1.5:
                break
        else:
            raise AssertionError(f"{name}: (estimate s, real s) {seen}")
