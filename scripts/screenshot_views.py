"""Run inside QGIS (``qgis --code``, through scripts/screenshot.sh with
CACH_SCREENSHOT_SCRIPT=scripts/screenshot_views.py): the user guide's other pictures.

CACH_SCREENSHOT_VIEW chooses one:
  no-runtime   the search panel when no runtime is found (the problem and its button)
  layer-tree   the window after several queries: one "CACH results" group in the layer tree
  dialog-help  the Index dialog with its Help button and a field's tooltip
  index-add    the Index dialog adding a new folder ($CACH_SCREENSHOT_FOLDER, default: a copy
               of one sample in flight_2021/ next to the index) to the existing demo index, with
               what the index holds from the real worker's dry run
  page2        the search panel on the second page of "a forest with trees" (top 6: ranks
               7-12, "‹ Previous" on) with a tile marked on that page
  similar      the window after "Similar tiles" on the best hit of "a forest with trees": the
               tile query's results (re-ranked around the archive's own centre), not the tile
CACH_SCREENSHOT_OUT is the PNG written. Each view checks that it shows what it is meant to, and
exits non-zero otherwise.
"""

import os
import shutil
import sys
from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer, QgsSettings
from qgis.PyQt.QtCore import QPoint, QRect, QTimer
from qgis.PyQt.QtWidgets import QApplication, QToolTip
from qgis.utils import iface, plugins

sys.path.insert(0, str(Path("scripts").resolve()))  # qgis --code runs from the repository
from screenshot_kit import finish, guarded, say  # noqa: E402

OUT = Path(os.environ.get("CACH_SCREENSHOT_OUT", "docs/img/screenshot-view.png")).resolve()
VIEW = os.environ.get("CACH_SCREENSHOT_VIEW", "layer-tree")
QUERIES = ("a river", "a parking lot next to a road", "a forest with trees")
PAGE = 6  # top k of the page2 view
SAMPLES = Path(os.environ.get("CACH_DEMO_SAMPLES", "resources/samples")).resolve()
STATE = {"done": False, "queries": list(QUERIES)}








def save(image, what: str) -> None:  # noqa: ANN001
    OUT.parent.mkdir(parents=True, exist_ok=True)
    ok = image.save(str(OUT))
    say(f"saved {what} to {OUT} ({image.width()}x{image.height()}): {ok}")
    finish(0 if ok else 5)


def no_runtime(plugin) -> None:  # noqa: ANN001
    from cach_for_qgis.cach_qgis import settings

    QgsSettings().remove("cach/runtime_python")
    settings.resolve_runtime_python = lambda: None  # as on a machine with no runtime
    plugin.client.set_python(None)
    plugin.search_action.trigger()
    dock = plugin.dock

    def shoot() -> None:
        if not dock.runtime_box.problem.isVisible():
            say("the runtime problem is not shown")
            finish(8)
            return
        save(dock.grab(), "the search panel")

    QTimer.singleShot(1500, lambda: guarded(shoot))


def add_samples() -> None:
    """The georeferenced sample rasters as collapsed layers under the results."""
    for path in sorted(SAMPLES.glob("*.tif")):
        layer = QgsRasterLayer(str(path), path.stem, "gdal")
        if layer.isValid() and layer.crs().isValid():
            QgsProject.instance().addMapLayer(layer)
            QgsProject.instance().layerTreeRoot().findLayer(layer.id()).setExpanded(False)


def layer_tree(plugin) -> None:  # noqa: ANN001
    add_samples()
    plugin.search_action.trigger()
    dock = plugin.dock
    dock.bar.k_spin.setValue(6)
    dock.resultsShown.connect(lambda _r: QTimer.singleShot(300, lambda: guarded(next_query)))
    dock.searchFailed.connect(lambda err: (say(f"search failed: {err}"), finish(4)))
    next_query()


def next_query() -> None:
    dock = plugins["cach_for_qgis"].dock
    if dock.result_map.pending() or dock.results.thumbnails_pending():
        QTimer.singleShot(200, lambda: guarded(next_query))
        return
    if not STATE["queries"]:
        from cach_for_qgis.cach_qgis import layers

        parent = layers.results_root()
        groups = parent.findGroups(False) if parent is not None else []
        if len(groups) != len(QUERIES):
            say(f"expected {len(QUERIES)} query groups in CACH results, got {len(groups)}")
            finish(8)
            return
        show_tree_and_newest(dock)
        QTimer.singleShot(2000, lambda: guarded(when_rendered, 0))
        return
    text = STATE["queries"].pop(0)
    say(f"searching {text!r}")
    dock.bar.query_edit.setText(text)
    dock.search()


def when_rendered(quiet: int) -> None:
    """Grab once the canvas has not been drawing for a second (or after ~20 s)."""
    quiet = 0 if iface.mapCanvas().isDrawing() else quiet + 1
    STATE["polls"] = STATE.get("polls", 0) + 1
    if quiet >= 5 or STATE["polls"] > 100:
        save(iface.mainWindow().grab(), "the window")
        return
    QTimer.singleShot(200, lambda: guarded(when_rendered, quiet))


def show_tree_and_newest(dock) -> None:  # noqa: ANN001
    """A wide layer tree (group and layer names readable), the map on the newest result."""
    from qgis.core import QgsCoordinateReferenceSystem
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QDockWidget

    window = iface.mainWindow()
    tree = window.findChild(QDockWidget, "Layers")
    browser = window.findChild(QDockWidget, "Browser")
    if browser is not None:
        browser.hide()
    if tree is not None:
        window.resizeDocks([tree], [440], Qt.Orientation.Horizontal)
    canvas = iface.mapCanvas()
    hits = dock.session.result.results
    best = next(h for h in hits if h.georeferenced)
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem(best.crs))
    dock.results.setCurrentRow(hits.index(best))  # zooms to the best tile
    extent = canvas.extent()
    extent.scale(4.0)  # ... and shows its neighbourhood
    canvas.setExtent(extent)
    canvas.refresh()


def dialog_help(plugin) -> None:  # noqa: ANN001
    dialog = plugin.show_index_dialog()
    dialog.resize(620, 380)
    dialog.move(200, 150)

    def tip() -> None:
        widget = dialog.tile_size
        QToolTip.showText(widget.mapToGlobal(QPoint(10, widget.height())), widget.toolTip(), widget)
        QTimer.singleShot(800, lambda: guarded(shoot))

    def shoot() -> None:
        from qgis.PyQt.QtWidgets import QDialogButtonBox

        box = dialog.findChild(QDialogButtonBox)
        if box.button(QDialogButtonBox.StandardButton.Help) is None:
            say("the dialog has no Help button")
            finish(8)
            return
        frame = dialog.frameGeometry()
        area = QRect(frame.x(), frame.y(), frame.width(), frame.height())
        screen = QApplication.primaryScreen().grabWindow(0)
        save(screen.copy(area), "the Index dialog")

    QTimer.singleShot(1000, lambda: guarded(tip))


def index_add(plugin) -> None:  # noqa: ANN001
    from cach_for_qgis.cach_qgis import settings

    index = settings.index_path()
    folder = Path(os.environ.get("CACH_SCREENSHOT_FOLDER") or Path(index).parent / "flight_2021")
    if not any(folder.glob("*.tif")):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / "cogeo.tif", folder / "cogeo.tif")  # a copy: a folder of its own
    dialog = plugin.show_index_dialog()
    dialog.resize(760, 470)
    dialog.move(200, 100)
    dialog.folder.setFilePath(str(folder))
    dialog.add_existing.setChecked(True)  # "add to an existing index": the one last used
    STATE["want"] = (index, f"{folder} is new to it and is added")
    QTimer.singleShot(500, lambda: guarded(when_held, dialog, 0))


def when_held(dialog, polls: int) -> None:  # noqa: ANN001
    index, added = STATE["want"]
    if dialog.holdings is None and polls < 600:
        QTimer.singleShot(200, lambda: guarded(when_held, dialog, polls + 1))
        return
    text = dialog.holds_label.text()
    say(f"holdings: {text}")
    if dialog.index.filePath() != index or "which holds" not in text or added not in text:
        say(f"the dialog does not say that the folder is added to {index}")
        finish(8)
        return
    QTimer.singleShot(500, lambda: guarded(save, dialog.grab(), "the Index dialog"))


def page_two(plugin) -> None:  # noqa: ANN001
    search_then(plugin, on_page)


def search_then(plugin, then) -> None:  # noqa: ANN001
    """Search the top ``PAGE`` of "a forest with trees"; ``then(dock)`` after each result shown."""
    plugin.search_action.trigger()
    dock = plugin.dock
    dock.bar.k_spin.setValue(PAGE)
    dock.bar.query_edit.setText(QUERIES[-1])
    dock.resultsShown.connect(lambda _r: QTimer.singleShot(300, lambda: guarded(then, dock)))
    dock.searchFailed.connect(lambda err: (say(f"search failed: {err}"), finish(4)))
    dock.search()


def on_page(dock) -> None:  # noqa: ANN001
    """Page 1: press Next ›. Page 2: check it shows ranks 7-12, mark one tile, grab."""
    if not dock.session.has_previous_page():
        if not dock.actions.next_button.isEnabled():
            say("Next › is off after the first page")
            finish(8)
            return
        say("page 1 shown; pressing Next ›")
        dock.actions.next_button.click()
        return
    hits = dock.results.hits()
    want = f"Results {PAGE + 1}–{2 * PAGE}"
    ranks = [h.rank for h in hits]
    if ranks != list(range(PAGE + 1, 2 * PAGE + 1)) or want not in dock.status_label.text():
        say(f"page 2 shows ranks {ranks}, status {dock.status_label.text()!r}")
        finish(8)
        return
    dock.mark(hits[1], True)
    dock.results.setCurrentRow(1)
    QTimer.singleShot(500, lambda: guarded(when_thumbnails, dock, 0))


def when_thumbnails(dock, polls: int) -> None:  # noqa: ANN001
    if (dock.results.thumbnails_pending() or dock.result_map.pending()) and polls < 100:
        QTimer.singleShot(200, lambda: guarded(when_thumbnails, dock, polls + 1))
        return
    save(dock.grab(), "the search panel on page 2")


def similar(plugin) -> None:  # noqa: ANN001
    add_samples()
    search_then(plugin, on_similar)


def on_similar(dock) -> None:  # noqa: ANN001
    """The text search: ask for tiles like its best hit. The tile search: check and grab."""
    if dock.result_map.pending() or dock.results.thumbnails_pending():
        QTimer.singleShot(200, lambda: guarded(on_similar, dock))
        return
    hits = dock.session.result.results
    if "seed" not in STATE:
        STATE["seed"] = next(h for h in hits if h.georeferenced)
        say(f"text search shown; similar tiles of tile {STATE['seed'].tile_id}")
        dock.search_similar(STATE["seed"])
        return
    seed = STATE["seed"]
    if not hits or any(h.tile_id == seed.tile_id for h in hits):
        say(f"similar tiles of {seed.tile_id}: {[h.tile_id for h in hits]}")
        finish(8)
        return
    say(f"similar tiles of {seed.tile_id}: {[(h.tile_id, h.score) for h in hits]}")
    show_tree_and_newest(dock)
    QTimer.singleShot(2000, lambda: guarded(when_rendered, 0))


def start() -> None:
    plugin = plugins.get("cach_for_qgis")
    if plugin is None or plugin.dock is None:
        say("plugin cach_for_qgis is not loaded; is it enabled in the profile?")
        finish(3)
        return
    QgsSettings().setValue("Projections/showDatumTransformDialog", False)
    iface.mainWindow().resize(1600, 1000)
    iface.mainWindow().showMaximized()
    views = {"no-runtime": no_runtime, "layer-tree": layer_tree, "dialog-help": dialog_help,
             "index-add": index_add, "page2": page_two, "similar": similar}
    guarded(views[VIEW], plugin)


QTimer.singleShot(
    int(os.environ.get("CACH_SCREENSHOT_TIMEOUT", "600")) * 1000,
    lambda: (say("timed out"), finish(6)),
)
QTimer.singleShot(3000, start)
