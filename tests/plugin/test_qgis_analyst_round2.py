"""Issue 20 in real QGIS: what an analyst meets (no runtime, cancel on short runs, the layer
tree after many queries, similar tiles from a map click, confidence in the list)."""

from __future__ import annotations

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
        assert dock.runtime_problem.isVisibleTo(dock), "the problem must be in the panel"
        assert "No CACH runtime found" in dock.runtime_problem_label.text()
        assert "starts when this panel opens" not in dock.runtime_label.text()
        assert dock.runtime_button.isVisibleTo(dock)
        # Search with no index names the runtime, not "choose an index folder"
        dock.index_combo.setCurrentText("")
        dock.query_edit.setText("forest")
        dock.search()
        texts = message_bar.get_messages(Qgis.Warning) + message_bar.get_messages(Qgis.Info)
        assert texts and not any("Choose an index folder" in t for t in texts), texts
        dock.runtime_button.click()
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

    folder = link_folder(rasters[:1], tmp_path / "rasters")
    index = str(tmp_path / "index")
    params = {"index": index, "paths": [str(folder)]}
    plugin.client.call("index", params, timeout_s=600)  # every tile written
    plugin.dock.set_index_path("")
    plugin._index_failed(params, cancelled("Cancelled."))  # what the task reports
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
    folder = link_folder(rasters[:2], tmp_path / "rasters")
    index = str(tmp_path / "index")
    params = {"index": index, "paths": [str(folder)]}
    plugin.dock.set_index_path("")
    task = plugin.start_index(params)

    def on_progress(progress) -> None:  # noqa: ANN001
        if progress.stage != "scan" and progress.done > 0:
            task.cancel()

    task.progressEvent.connect(on_progress)
    ended = []
    task.ended.connect(lambda: ended.append(True))
    wait_until(lambda: ended, 600, "the indexing task")
    wait_until(lambda: _messages(message_bar), 120, "the outcome message")
    texts = _messages(message_bar)
    todo = plugin.client.call("index", {**params, "dry_run": True}, timeout_s=120)["new_tiles"]
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
    dock.query_edit.setText(text)
    dock.k_spin.setValue(k)
    req = dock.search()
    wait_until(lambda: req.done and dock.layers_pending() == 0, 300, f"search {text!r}")
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
    assert dock.results.count() > 0 and not any(h.georeferenced for h in dock.hits())
    assert set(project.mapLayers()) == before, "no empty layer for photos with no place"
    assert len(layers.results_root().findGroups(False)) == len(queries)

    plugin.clear_action.trigger()
    assert layers.results_root() is None
    assert not project.mapLayers(), "every result layer went with the group"
    assert dock.results.count() == 0
