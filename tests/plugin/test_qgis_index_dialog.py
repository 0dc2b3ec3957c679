"""The Index dialog and what an index holds (issue 20 defect 1, issue 16 item 1), in real QGIS
with the real worker: a new folder gets its own index next to it, never silently the last index
used; "add to an existing index" says which index and how many tiles of which folders it holds,
takes that index's tiling, and the run adds the folder without dropping the others."""

from __future__ import annotations

from pathlib import Path

from conftest import link_folder, wait_until


def test_the_index_follows_the_folder_unless_adding_to_an_existing_index(
        shared, rasters, tmp_path, qgis_iface, message_bar):  # noqa: ANN001
    from cach_for_qgis.cach_qgis import settings
    from cach_for_qgis.cach_qgis.dialogs import IndexDialog

    a = link_folder(rasters[:1], tmp_path / "a")
    b = link_folder(rasters[1:2], tmp_path / "b")
    first = tmp_path / "first_index"
    made = shared.call("index", {"index": str(first), "paths": [str(a)], "tile_size": 128},
                       timeout_s=900)
    held = made["tiles"]
    assert held > 0
    settings.set_index_path(str(first))  # the index the analyst used last

    dialog = IndexDialog(shared)
    dialog.folder.setFilePath(str(b))
    # the index follows the chosen folder, not the last index used (which held other files)
    assert dialog.index.filePath() == str(b / "cach_index")
    assert "new index" in dialog.holds_label.text()
    other = link_folder(rasters[:1], tmp_path / "other")
    dialog.folder.setFilePath(str(other))
    assert dialog.index.filePath() == str(other / "cach_index")  # and follows it again
    dialog.folder.setFilePath(str(b))

    dialog.add_existing.setChecked(True)  # "add to an existing index": the last one is offered
    assert dialog.index.filePath() == str(first)
    wait_until(lambda: dialog.holdings is not None, 300, "what the index holds")
    text = dialog.holds_label.text()
    assert "Add to this index" in text and str(first) in text
    assert f"which holds {held:,} tiles" in text and str(a) in text
    assert f"{b} is new to it" in text
    assert dialog.tile_size.value() == 128  # the index's own tiling, so nothing is re-tiled

    started = []
    dialog.taskStarted.connect(started.append)
    dialog.start()
    task = started[0]
    assert task.params["index"] == str(first) and task.params["paths"] == [str(b)]
    done = []
    task.indexed.connect(lambda path, summary: done.append(summary))
    task.failed.connect(done.append)
    wait_until(lambda: done, 600, "indexing task")
    summary = done[0]
    assert not isinstance(summary, Exception), summary
    assert summary.roots_added == (str(b),) and summary.removed == 0
    assert set(summary.roots) == {str(a), str(b)} and summary.tiles > held
    assert Path(first, "index.sqlite").is_file() and not (b / "cach_index").exists()


def test_another_tiling_asks_before_retiling_every_folder(shared, rasters, tmp_path,
                                                          qgis_iface, message_bar):  # noqa: ANN001
    from cach_for_qgis.cach_qgis.dialogs import IndexDialog, confirm_retile_dialog

    a = link_folder(rasters[:1], tmp_path / "a")
    idx = tmp_path / "idx"
    made = shared.call("index", {"index": str(idx), "paths": [str(a)], "tile_size": 128},
                       timeout_s=900)
    dialog = IndexDialog(shared)
    dialog.preset(str(idx), [str(a)])
    wait_until(lambda: dialog.holdings is not None, 300, "what the index holds")
    assert "is one of them" in dialog.holds_label.text()
    dialog.tile_size.setValue(96)  # not the index's tiling
    call = dialog.index_request()
    from cach_for_qgis.cach_qgis.runtime_client import WorkerError

    try:
        shared.call(call, timeout_s=600)
        raise AssertionError("another tiling must not be indexed without confirmation")
    except WorkerError as err:
        assert err.code == "confirm_retile"
        question = confirm_retile_dialog(dict(err.info.details))
    assert f"{made['tiles']:,} tiles" in question.text.text() and str(a) in question.text.text()
