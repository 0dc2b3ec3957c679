"""Issue 9's "Must show", in real QGIS against the REAL worker (the runtime in .venv).

(Unload after a completed index task is in test_qgis_plugin.py.) The archive here mixes a
GeoTIFF with UC Merced scene photos (JPEGs without coordinates) of three land-use classes, so a
query for a fourth class asks for a scene type the index lacks.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cach_for_qgis.cach_qgis import layers
from cach_for_qgis.model_runtime.protocol import NOT_GEOREFERENCED_NOTE, IndexRequest
from conftest import SAMPLES, UCM_IMAGES, link_folder, wait_until
from qgis.core import Qgis, QgsProject

#: scene classes in the archive; "harbor" is not among them
PRESENT = ("agricultural", "forest", "chaparral")
PER_CLASS = 8
ABSENT_QUERY = "a harbour with many boats moored at the docks"
PRESENT_QUERY = "rows of green crops on farmland"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """A GeoTIFF and 24 UCM photos (3 classes) in one folder."""
    photos = [UCM_IMAGES / c / f"{c}{i:02d}.jpg" for c in PRESENT for i in range(PER_CLASS)]
    return link_folder([SAMPLES / "cogeo.tif", *photos], tmp_path_factory.mktemp("archive") / "a")


@pytest.fixture(scope="module")
def archive_index(shared, archive, tmp_path_factory) -> str:
    index = tmp_path_factory.mktemp("archive-index") / "idx"
    result = shared.call("index", {"index": str(index), "paths": [str(archive)]}, timeout_s=900)
    assert result.get("tiles", 0) > PER_CLASS * len(PRESENT), result
    return str(index)


@pytest.fixture
def dock(qgis_iface, shared, archive_index, qgis_new_project):  # noqa: ANN001
    from cach_for_qgis.cach_qgis.dock import SearchDock

    dock = SearchDock(qgis_iface, shared)
    dock.set_index_path(archive_index)
    yield dock
    dock.cleanup()
    dock.deleteLater()


def search(dock, text: str, k: int = 10):  # noqa: ANN001
    dock.bar.query_edit.setText(text)
    dock.bar.k_spin.setValue(k)
    req = dock.search()
    wait_until(lambda: req.done, 300, f"search {text!r}")
    assert req.error is None, req.error
    return req


def test_jpeg_hits_never_on_the_map_and_marked(dock, message_bar, no_exception_dialogs):
    search(dock, "a forest with dense trees", k=60)
    hits = dock.results.hits()
    jpeg = [h for h in hits if h.source.endswith(".jpg")]
    assert jpeg, "the archive's photos should be among the results"
    assert all(not h.georeferenced for h in jpeg)
    # no layer anywhere has a photo as its source (no fake 0..256 coordinates)
    sources = [layer.source() for layer in QgsProject.instance().mapLayers().values()]
    assert not any(s.endswith(".jpg") or "forest" in Path(s).name for s in sources), sources
    rows = {f["tile_id"]: f for f in dock.result_map.layers.footprints.getFeatures()}
    for hit in jpeg:
        assert not rows[hit.tile_id].hasGeometry()
        assert rows[hit.tile_id]["note"] == NOT_GEOREFERENCED_NOTE
    extent = dock.result_map.layers.footprints.extent()
    assert -180 <= extent.xMinimum() and extent.xMaximum() <= 180
    row = hits.index(jpeg[0])
    assert "not georeferenced" in dock.results.item(row).text()
    before = dock.iface.mapCanvas().extent()
    dock.results.setCurrentRow(row)
    assert dock.result_map.viewer is not None and dock.result_map.viewer.isVisible()
    assert dock.iface.mapCanvas().extent() == before


def test_weak_match_message_when_the_scene_type_is_absent(dock, no_exception_dialogs):
    req = search(dock, ABSENT_QUERY)
    assert req.result.get("weak_match") is True, (
        f"weak_match={req.result.get('weak_match')!r} for a scene type the index lacks"
    )
    assert dock.weak_label.isVisibleTo(dock)
    assert "Weak matches" in dock.weak_label.text()
    req = search(dock, PRESENT_QUERY)
    assert req.result.get("weak_match") is False
    assert not dock.weak_label.isVisibleTo(dock)


def test_two_quick_searches_the_second_is_on_the_map(dock, no_exception_dialogs):
    dock.bar.k_spin.setValue(60)  # the GeoTIFF's tiles too: photos alone add no layer group
    dock.bar.query_edit.setText(f"a dense forest {time.time_ns()}")
    first = dock.search()
    dock.bar.query_edit.setText("farmland with crops")
    second = dock.search()
    wait_until(lambda: first.done and second.done, 300, "both searches")
    assert second.error is None, second.error
    settle = time.monotonic() + 1.0
    wait_until(lambda: time.monotonic() > settle, 5)
    root = layers.results_root()  # the parent group "CACH results"
    assert root.children()[0].name() == "CACH: “farmland with crops”"
    assert not any("dense forest" in g.name() for g in root.findGroups())
    assert dock.session.result.query.get("text") == "farmland with crops"
    assert dock.bar.query_edit.text() == "farmland with crops"


def test_non_index_folder_clears_old_results(dock, tmp_path, message_bar, no_exception_dialogs):
    search(dock, "farmland")
    assert dock.results.count() > 0
    dock.set_index_path(str(tmp_path))  # an ordinary folder
    assert dock.results.count() == 0
    dock.bar.query_edit.setText("farmland")
    req = dock.search()
    wait_until(lambda: req.done, 120, "the failed search")
    assert req.error is not None and req.error.type == "index", req.error
    assert dock.results.count() == 0 and dock.session.result is None
    text = dock.status_label.text()
    assert "Index raster folder" in text and "cach index" not in text
    assert not message_bar.get_messages(Qgis.Critical)


def test_indexing_an_empty_folder_warns(
    qgis_iface, shared, tmp_path, message_bar, no_exception_dialogs, own_shared_client
):
    import cach_for_qgis

    own_shared_client._SHARED = shared  # the session's worker; unload must not stop it
    plugin = cach_for_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        empty = tmp_path / "empty"
        empty.mkdir()
        task = plugin.jobs.start_index(IndexRequest(str(tmp_path / "idx"), paths=(str(empty),)))
        ended = []
        task.ended.connect(lambda: ended.append(True))
        wait_until(lambda: ended, 300, "the index task")
        warnings = message_bar.get_messages(Qgis.Warning)
        assert any("Nothing" in m and "index" in m.lower() for m in warnings), (
            warnings,
            message_bar.get_messages(Qgis.Critical),
        )
        assert not message_bar.get_messages(Qgis.Success)
        assert not message_bar.get_messages(Qgis.Critical)
    finally:
        own_shared_client._SHARED = None
        plugin.unload()


def test_a_very_large_run_waits_for_confirmation(
    qgis_iface, shared, tmp_path, message_bar, no_exception_dialogs, own_shared_client
):
    """A 200,000 x 200,000 VRT (about 600,000 tiles) is not started: the estimate is shown."""
    import shutil

    import cach_for_qgis
    from cach_for_qgis.cach_qgis.dialogs import QuestionDialog
    from osgeo import gdal

    folder = tmp_path / "huge"
    folder.mkdir()
    source = folder / "cogeo.tif"
    shutil.copy(SAMPLES / "cogeo.tif", source)
    gdal.Translate(
        str(folder / "huge.vrt"), str(source), format="VRT", width=200_000, height=200_000
    )
    own_shared_client._SHARED = shared  # the session's worker; unload must not stop it
    plugin = cach_for_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        task = plugin.jobs.start_index(IndexRequest(str(tmp_path / "idx"), paths=(str(folder),)))
        wait_until(
            lambda: any(isinstance(d, QuestionDialog) for d in plugin.dialogs),
            300,
            "the confirmation dialog",
        )
        assert task.error is not None and task.error.code == "confirm_large_run"
        dialog = plugin.dialogs[-1]
        assert "new tiles" in dialog.text.text() and "Index anyway" in dialog.text.text()
        dialog.reject()  # nothing is started
        assert not plugin.jobs.tasks
    finally:
        own_shared_client._SHARED = None
        plugin.unload()
